#!/usr/bin/env bash
# install-deps.sh [--data] [--fuzz]: installs the Debian 12 packages the trainer builds and runs with, when
# missing. --data also installs dataset-fashion-mnist (the quickstart's data); --fuzz clang and its runtime
# libraries (libFuzzer, the sanitizers), for the fuzz stage of jobs/test.sh. Uses sudo when not root.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libdnnl-dev
      ocl-icd-opencl-dev opencl-c-headers libcmocka-dev libjansson-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev)
# Debian's dnnl CMake package config looks for OpenCL (its GPU runtime), hence the two OpenCL packages.
for arg in "$@"; do
  case $arg in
    --data) pkgs+=(dataset-fashion-mnist) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

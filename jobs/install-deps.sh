#!/usr/bin/env bash
# install-deps.sh [--data] [--fuzz] [--onnx]: installs the Debian 12 packages the trainer builds and runs with,
# when missing. --data also installs dataset-fashion-mnist (the quickstart's data); --fuzz clang and its runtime
# libraries (libFuzzer, the sanitizers), for the fuzz stage of jobs/test.sh; --onnx the runtimes test_onnx runs
# the exported models in (python3-onnx's checker, OpenCV's dnn module). Uses sudo when not root.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libdnnl-dev
      ocl-icd-opencl-dev opencl-c-headers libcmocka-dev libjansson-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev
      libonnx-dev protobuf-c-compiler libprotobuf-c-dev)
# Debian's dnnl CMake package config looks for OpenCL (its GPU runtime), hence the two OpenCL packages. The ONNX
# export generates its protobuf code from libonnx-dev's onnx.proto with protoc-c (protobuf-c-compiler).
for arg in "$@"; do
  case $arg in
    --data) pkgs+=(dataset-fashion-mnist) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    --onnx) pkgs+=(python3-onnx python3-opencv python3-numpy python3-h5py) ;;
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

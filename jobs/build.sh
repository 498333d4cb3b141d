#!/usr/bin/env bash
# build.sh: configures and builds the trainer in build/ (Release with debug info). Prints the binary's path.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "$build/trainer/trainer"

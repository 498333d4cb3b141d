#!/usr/bin/env bash
# bench-images.sh: decoding and `import images` speed, in images/s on 1 and 2 threads, for 28x28 gray PNGs
# (kept at their size) and 256x256 RGB JPEGs resized to 64x64 (bilinear), printed as a Markdown table for
# BENCHMARKS.md. "decode" is bench_decode (decoding and resizing from memory, the files read first);
# "import" is the whole command: listing, reading, decoding, resizing and writing the HDF5 file. Best of
# ROUNDS runs each, files in the page cache. Not part of ctest: timings are not tests.
#
# Environment: ROUNDS (default 3), N_PNG (default 10000), N_JPEG (default 1000), BUILD (a build directory with
# the trainer and the test tools; default: jobs/build.sh builds build/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
n_png=${N_PNG:-10000}
n_jpeg=${N_JPEG:-1000}
if [ -n "${BUILD:-}" ]; then build=$(cd "$BUILD" && pwd); else build=$(dirname "$(dirname "$("$top/jobs/build.sh")")"); fi
trainer=$build/trainer/trainer make_images=$build/tests/make_images bench_decode=$build/tests/bench_decode
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$make_images" png "$n_png" 10 28 28 png 1
"$make_images" jpg "$n_jpeg" 10 256 256 jpg 3

# import_rate DIR THREADS ARGS...: the best images/s of ROUNDS imports.
import_rate() {
  local dir=$1 threads=$2 best=0 t0 t1 rate; shift 2
  for _ in $(seq "$rounds"); do
    rm -f out.h5
    t0=$(date +%s.%N)
    "$trainer" import images "$dir" -o out.h5 --threads "$threads" "$@" >/dev/null
    t1=$(date +%s.%N)
    rate=$(awk -v n="$(find "$dir" -type f | wc -l)" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
    [ "$rate" -gt "$best" ] && best=$rate
  done
  echo "$best"
}

echo "| input | threads | decode (images/s) | import (images/s) |"
echo "|---|---:|---:|---:|"
for t in 1 2; do
  echo "| $n_png PNG 28x28 gray | $t | $("$bench_decode" png 1 0 0 "$t" "$rounds") |" \
       "$(import_rate png "$t" --color-mode grayscale) |"
done
for t in 1 2; do
  echo "| $n_jpeg JPEG 256x256 RGB -> 64x64 | $t | $("$bench_decode" jpg 3 64 64 "$t" "$rounds") |" \
       "$(import_rate jpg "$t" --size 64 64) |"
done

#!/usr/bin/env bash
# leaks.sh ASAN_BUILD_DIR: every command of the trainer built with -DTRAINER_SANITIZE=ON, run as a user runs it
# (a short training run on 1 and on 2 ranks with validation, checkpoints and metrics, a resume, eval, predict,
# info, export and import of images, predict on image files; and runs that fail), must end without a
# LeakSanitizer, AddressSanitizer or UBSan report.
# Open MPI's own leaks are suppressed (lsan.supp); the caller sets ASAN_OPTIONS/LSAN_OPTIONS (jobs/test.sh):
#   ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0
#   LSAN_OPTIONS=suppressions=tests/sanitizers/lsan.supp
# oneDNN's JIT-generated kernels need nothing special: they are code without frames of their own in these
# stacks, and allocate through the (intercepted) malloc. Prints "N passed, N failed".
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
trainer=$build/trainer/trainer
model=$here/../data/small.model
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1
: "${ASAN_OPTIONS:=detect_leaks=1:fast_unwind_on_malloc=0}"
: "${LSAN_OPTIONS:=suppressions=$here/lsan.supp:print_suppressions=0}"
export ASAN_OPTIONS LSAN_OPTIONS
passed=0 failed=0

# clean WHAT CODE CMD...: CMD exits with CODE and no sanitizer said anything.
clean() {
  local what=$1 code=$2; shift 2
  timeout -k 5 300 "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" -eq "$code" ] && ! grep -q -E 'Sanitizer|runtime error' err.txt out.txt; then
    passed=$((passed + 1)); echo "ok - $what"
  else
    failed=$((failed + 1)); echo "FAIL - $what: exit $rc (want $code)"; head -60 err.txt
  fi
}
np2=(mpirun -q -np 2 --oversubscribe --bind-to none)

"$build/tests/make_dataset" train.h5 256 12 4 1 && "$build/tests/make_dataset" test.h5 64 12 4 2 || exit 1
clean "train, 1 rank" 0 "$trainer" train --model "$model" --data train.h5 --val test.h5 --epochs 2 --batch-size 16 \
  --checkpoint c1.h5 --save-best --metrics m.csv --quiet
clean "train, 2 ranks, --val-split, --checkpoint-every" 0 "${np2[@]}" "$trainer" train --model "$model" --data train.h5 \
  --val-split 0.25 --epochs 2 --batch-size 16 --checkpoint c2.h5 --checkpoint-every 5 --optimizer adam --quiet
clean "resume, 2 ranks" 0 "${np2[@]}" "$trainer" train --resume c2.h5 --data train.h5 --epochs 3 --quiet
clean "eval, 2 ranks" 0 "${np2[@]}" "$trainer" eval --checkpoint c1.h5 --data test.h5
clean "predict" 0 "$trainer" predict --checkpoint c1.h5 --data test.h5 -o p.h5
clean "info on a checkpoint" 0 "$trainer" info c1.h5
clean "info on a dataset" 0 "$trainer" info train.h5
clean "a failing run: missing --val file on 2 ranks" 3 "${np2[@]}" "$trainer" train --model "$model" --data train.h5 \
  --val missing.h5
clean "a failing run: bad model file" 3 "$trainer" train --model train.h5 --data train.h5
clean "export onnx" 0 "$trainer" export onnx c1.h5 -o m.onnx --input uint8
clean "info on an ONNX file" 0 "$trainer" info m.onnx
clean "a failing export: not a checkpoint" 3 "$trainer" export onnx train.h5 -o bad.onnx
clean "export images" 0 "$trainer" export images test.h5 -o tree
clean "import images, 2 threads, resized, a split" 0 "$trainer" import images tree -o imp.h5 --color-mode grayscale \
  --size 10 14 --crop-to-aspect-ratio --val-split 0.25 --seed 1 --val-out impv.h5 --threads 2
clean "predict on image files" 0 "$trainer" predict --checkpoint c1.h5 --json tree
echo "not an image" >tree/n/bad.png
clean "a failing run: import of a file that is not an image" 3 "$trainer" import images tree -o bad.h5 --threads 2
echo "leaks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

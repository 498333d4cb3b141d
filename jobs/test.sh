#!/usr/bin/env bash
# test.sh [CTEST_ARGS...]: installs what is missing, builds, and runs every test through ctest; then the same
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer (a second build), LeakSanitizer on the unit
# tests and on a short training run, and the fuzzers for a bounded time (a third build, with clang).
# TEST_STAGES picks stages (default "tests sanitize fuzz"); with CTEST_ARGS (say -R test_faults) only the
# normal suite runs, with those arguments. Prints each stage's time.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
stages=${TEST_STAGES:-tests sanitize fuzz}
[ $# -gt 0 ] && stages=tests
if [ "$(id -u)" -eq 0 ]; then
  # Open MPI refuses to run as root without these; the tests' mpirun calls need them in CI.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# --onnx: the runtimes test_onnx checks the exported models in (python3-onnx, OpenCV).
case " $stages " in *" fuzz "*) "$top/jobs/install-deps.sh" --onnx --fuzz ;; *) "$top/jobs/install-deps.sh" --onnx ;; esac

t0=$SECONDS
times=()
stage_done() { times+=("$1 $((SECONDS - t0))s"); echo "== $1: $((SECONDS - t0))s"; t0=$SECONDS; }

# ---- the suite as users build it ----------------------------------------------------------------------------
if [[ " $stages " == *" tests "* ]]; then
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$build" -j "$(nproc)"
  # Two at a time: most end-to-end tests wait on MPI start-up and on each other's ranks, as in the sanitizer stage.
  (cd "$build" && ctest --output-on-failure -j "$(nproc)" "$@")
  stage_done tests
fi

# ---- ASan + UBSan: the whole suite, then LeakSanitizer ------------------------------------------------------
if [[ " $stages " == *" sanitize "* ]]; then
  asan_build=${build}-asan
  cmake -S "$top" -B "$asan_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAINER_SANITIZE=ON >/dev/null
  cmake --build "$asan_build" -j "$(nproc)" >/dev/null
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # The unit tests are single programs run as they are; the rest go through mpirun or a script.
  units=$(cd "$asan_build" && ctest -N -V | awk -v b="$asan_build/" '
    /Test command:/ { direct = index($4, b) == 1 } /Test +#/ && direct { printf "%s%s", sep, $3; sep = "|" }')
  # The scripts and mpirun tests: memory errors and UB, not leaks (Open MPI's own, in MPI_Init, would need
  # full stacks to be told from ours: fast_unwind_on_malloc=0, which makes every malloc several times
  # slower). They mostly wait on MPI start-up, so two at a time take half as long.
  (cd "$asan_build" && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j "$(nproc)" -E "^($units)$")
  stage_done "sanitize (ASan+UBSan: the suite but the unit tests)"
  # The unit tests with leak checking (no MPI in them: fast stacks do); then a short run of every command on
  # 1 and 2 ranks, where tests/sanitizers/lsan.supp suppresses Open MPI's leaks, with the full stacks it needs.
  (cd "$asan_build" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -R "^($units)$")
  export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0
  export LSAN_OPTIONS=suppressions=$top/tests/sanitizers/lsan.supp:print_suppressions=0
  bash "$top/tests/sanitizers/leaks.sh" "$asan_build"
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
  stage_done "leaks (ASan+UBSan+LeakSanitizer: unit tests, every command)"
fi

# ---- fuzzing: every target for a bounded time, from its committed corpus ----------------------------------------
if [[ " $stages " == *" fuzz "* ]]; then
  fuzz_build=${build}-fuzz
  # Only the fuzz targets: the rest of the project is built as their libraries need.
  CC=clang cmake -S "$top" -B "$fuzz_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRAINER_FUZZ=ON \
    -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$fuzz_build" -j "$(nproc)" --target fuzz_model_parse fuzz_keras_config fuzz_dataset \
    fuzz_checkpoint fuzz_onnx fuzz_callback \
    fuzz_image >/dev/null
  bash "$top/tests/fuzz/run_fuzz.sh" "$fuzz_build" "${FUZZ_SECONDS:-15}"
  stage_done fuzz
fi

echo "stage times: ${times[*]}"

#!/usr/bin/env bash
# run_fuzz.sh BUILD_DIR SECONDS: runs each libFuzzer target of BUILD_DIR (configured with -DTRAINER_FUZZ=ON)
# for SECONDS from its committed seed corpus (tests/fuzz/corpus/<target>/, never written to: new inputs go to
# a scratch directory). Exits non-zero when a target finds a crash, a leak or undefined behaviour in the
# trainer's code; prints "N passed, N failed" over the targets.
#
# The dataset and checkpoint readers run HDF5 (Debian's 1.10) on damaged files, and HDF5 has bugs of its own
# there: out-of-bounds reads, wild pointers and huge allocations when decoding damaged object headers and
# global heaps, endless loops (HDFGroup/hdf5 issue #1707), leaks on every failed open. Those cannot be fixed
# here, so these two targets run in fork mode, which goes on after a crash, a timeout or an out-of-memory;
# each crash is run again alone and counts as a failure unless its stack reaches libhdf5 before any of the
# trainer's own source files (tests/fuzz/lsan-hdf5.supp lets through leaks of memory HDF5 allocated). The
# artifacts of a failed run stay in its scratch directory (named in the messages), for a closer look.
set -u
build=$(cd "$1" && pwd)
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
passed=0 failed=0
# HDF5 copes with a failed malloc (allocator_may_return_null), as it would outside ASan; UBSan stops at the
# first finding.
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
root=$(cd "$here/../.." && pwd)

# in_hdf5 REPORT: whether the first frame of the report that is in libhdf5 or in the trainer's sources is
# in libhdf5 (the frames above it are the sanitizer's, libc's or libFuzzer's).
in_hdf5() {
  grep -E '^ +#[0-9]+ ' "$1" | grep -E "libhdf5|$root/" | head -1 | grep -q 'libhdf5'
}

for target in model_parse keras_config dataset checkpoint; do
  bin=$build/tests/fuzz/fuzz_$target
  out=$work/$target
  mkdir -p "$out/corpus"
  opts=(-max_total_time="$seconds" -rss_limit_mb=2048 -artifact_prefix="$out/" -print_final_stats=1)
  hdf5=0
  unset LSAN_OPTIONS
  case $target in dataset | checkpoint)
    hdf5=1
    export LSAN_OPTIONS=suppressions=$here/lsan-hdf5.supp:print_suppressions=0
    # A short timeout: an input that loops in HDF5 costs 3 s of the budget, not 10.
    opts+=(-timeout=3 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1) ;;
  *) opts+=(-timeout=10) ;;
  esac
  "$bin" "${opts[@]}" "$out/corpus" "$here/corpus/$target" >"$out/log.txt" 2>&1
  rc=$?
  bad=0
  # In fork mode the exit code is the last job's (a timeout in HDF5, say): what counts is that it ran to the
  # end, and the crashes it kept.
  if [ "$rc" -ne 0 ] && ! { [ "$hdf5" -eq 1 ] && grep -q '^INFO: exiting:' "$out/log.txt"; }; then
    echo "fuzz_$target: exit $rc"
    bad=1
  fi
  for artifact in "$out"/crash-* "$out"/leak-*; do
    [ -e "$artifact" ] || continue
    "$bin" -timeout=10 "$artifact" >"$artifact.report" 2>&1
    if ! grep -q 'LeakSanitizer' "$artifact.report" && in_hdf5 "$artifact.report"; then
      echo "fuzz_$target: HDF5's own bug, not ours: $(grep -m1 SUMMARY "$artifact.report") ($artifact)"
    else
      echo "fuzz_$target: $(grep -m1 -E 'SUMMARY|ERROR' "$artifact.report") ($artifact)"
      bad=1
    fi
  done
  # Hangs: a few, run again alone, must be stuck in HDF5 too (the stack printed at the timeout).
  for artifact in $(ls "$out"/timeout-* 2>/dev/null | head -3); do
    "$bin" -timeout=3 "$artifact" >"$artifact.report" 2>&1
    if ! grep -q 'ERROR: libFuzzer: timeout' "$artifact.report" || in_hdf5 "$artifact.report"; then
      echo "fuzz_$target: HDF5's own hang, not ours ($artifact)"
    else
      echo "fuzz_$target: a hang in the trainer's code ($artifact)"
      bad=1
    fi
  done
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log.txt" | awk '{s += $1} END {print s + 0}')
  hangs=$(ls "$out" | grep -c -E '^(timeout|oom)-')
  if [ "$bad" -eq 0 ]; then
    passed=$((passed + 1))
    note="${seconds}s"
    [ "$runs" -gt 0 ] && note+=", $runs inputs"
    [ "$hangs" -gt 0 ] && note+=", $hangs timeouts or out-of-memory in HDF5 let through"
    echo "ok - fuzz_$target: $note"
  else
    failed=$((failed + 1))
    echo "FAIL - fuzz_$target (log: $out/log.txt)"
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && rm -rf "$work"
[ "$failed" -eq 0 ]

# triage.sh: sourced by run_fuzz.sh and test_fuzz_triage.sh. Sets nothing but the function below.
#
# fuzz_in_hdf5 REPORT ROOT: whether the sanitizer REPORT (a crash re-run alone) blames libhdf5 rather than the
# trainer, whose sources are under ROOT. It does when the first stack frame that is in libhdf5 or in one of the
# trainer's source files is in libhdf5; the frames above it are the sanitizer's, libc's or libFuzzer's. A frame
# of ours names a source file and line under one of the source directories: the sanitizer's interceptors
# (memcpy, strdup) are linked into the fuzz binary, which may itself sit under the repository (build-fuzz/ in
# CI), and must not count as ours. Only the first stack counts: the one where the fault happened, not the
# "allocated by" or "freed by" stacks after it.
fuzz_in_hdf5() {
  local report=$1 root=$2
  awk '/^ +#[0-9]+ / { print; seen = 1; next } seen { exit }' "$report" |
    grep -E "libhdf5|$root/(kernels|datasets|trainer|tests)/[^ ]+\\.[ch]:[0-9]+" | head -1 | grep -q 'libhdf5'
}

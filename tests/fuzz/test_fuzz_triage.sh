#!/usr/bin/env bash
# test_fuzz_triage.sh: the fuzz runner lets through crashes inside libhdf5 (HDF5 1.10's own bugs on damaged
# files) and must fail on every crash in the trainer's code. This checks its attribution on sanitizer reports
# in triage/: real ones from the fuzzers (hdf5-*: HDF5 1.10.8's out-of-bounds reads, overlapping memcpy in
# H5HG_read, strdup past a name), and ones of the shapes a bug of ours would give (ours-*: a memcpy
# interceptor above our callback called from HDF5, a use after free of memory HDF5 freed, a loop of our own).
# Reports name the repository as ROOT and the fuzz binary under ROOT/build-fuzz, as a CI checkout does.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/triage.sh"
fails=0
for report in "$here"/triage/*.txt; do
  name=$(basename "$report" .txt)
  want=ours
  case $name in hdf5-*) want=hdf5 ;; esac
  got=ours
  fuzz_in_hdf5 "$report" ROOT && got=hdf5
  if [ "$got" = "$want" ]; then
    echo "ok - $name: blamed on $got"
  else
    echo "not ok - $name: blamed on $got, should be $want"
    fails=$((fails + 1))
  fi
done
[ "$fails" -eq 0 ]

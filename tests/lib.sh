# lib.sh: what the shell tests share (sourced, not run): the ok/bad/check counters and the closing summary,
# mpirun with a hard timeout, and Open MPI's consent to run as root.
# shellcheck shell=bash
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
# check WHAT CMD...: ok when CMD succeeds.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# mpi N CMD...: CMD on N ranks sharing the node's cores, killed after MPI_TIMEOUT seconds (default 120).
mpi() { local n=$1; shift; timeout -k 5 "${MPI_TIMEOUT:-120}" mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
# The test's last line: "N passed, N failed", and its exit status.
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

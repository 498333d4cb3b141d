# shellcheck shell=bash
# lib.sh: shared by the multinode tests (sourced). A test calls mn_begin SECONDS NHOSTS [slurm]: a private
# work directory, a simulated cluster (and a Slurm on it), torn down on exit, on a signal, or by a deadline
# that ends the test itself before ctest's TIMEOUT would kill it without a teardown.
# Then: mn_mpirun HOST... -- PROGRAM ARGS (through jobs/multinode/mpirun-nodes.sh), on HOST CMD, ok/bad,
# mn_end (prints "N passed, N failed" and exits non-zero when a check failed).
mn_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mn_top=$(cd "$mn_here/../.." && pwd)
export PATH=$PATH:/usr/sbin:/sbin
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
say() { echo "# [+$(($(date +%s) - mn_t0))s] $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# Open MPI refuses root without these (exported: the ranks on the other hosts inherit them).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

mn_teardown() {
  trap - EXIT INT TERM
  [ -n "${mn_deadline_pid:-}" ] && kill "$mn_deadline_pid" 2>/dev/null
  if [ -n "${MN_KEEP:-}" ]; then echo "# MN_KEEP: kept $mn_work (remove with tests/multinode/cluster-down.sh)"; return; fi
  [ -f "$mn_work/slurm.pids" ] && "$mn_here/slurm-down.sh" "$mn_work" | sed 's/^/# /'
  "$mn_here/cluster-down.sh" "$mn_work" | sed 's/^/# /'
  rm -rf "$mn_work"
}

# mn_begin SECONDS NHOSTS [slurm]
mn_begin() {
  local limit=$1 n=$2
  mn_t0=$(date +%s)
  [ "$(id -u)" -eq 0 ] || { echo "skipped: the multinode tests need root (network namespaces)"; exit 77; }
  # A short path: munge's socket lives under it.
  mn_work=$(mktemp -d /tmp/mn.XXXXXX)
  trap 'mn_teardown' EXIT
  trap 'echo "# interrupted"; exit 130' INT TERM
  # The deadline: tear the cluster down (which ends every process in it, so whatever the test waits on
  # returns), then end the test. ctest's TIMEOUT is set above SECONDS, as a last resort.
  # (sleep must not hold the test's stdout, which ctest waits on; and it goes when the deadline is called off.)
  ( trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$limit" >/dev/null 2>&1 &
    s=$!
    wait "$s"
    echo "FAIL - the test did not finish within $limit s: tearing down"
    [ -f "$mn_work/slurm.pids" ] && "$mn_here/slurm-down.sh" "$mn_work" >/dev/null 2>&1
    "$mn_here/cluster-down.sh" "$mn_work" >/dev/null 2>&1
    kill -TERM $$ ) &
  mn_deadline_pid=$!
  "$mn_here/cluster-up.sh" "$mn_work" "$n" | sed 's/^/# /' || { echo "FAIL - cannot make the cluster"; exit 1; }
  # shellcheck source=/dev/null
  . "$mn_work/cluster.env"
  read -ra MN_HOST <<<"$MN_HOSTS"
  if [ "${3:-}" = slurm ]; then
    "$mn_here/slurm-up.sh" "$mn_work" 2>&1 | sed 's/^/# /'
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL - cannot start Slurm"; exit 1; }
    # shellcheck source=/dev/null
    . "$mn_work/slurm.env"
  fi
  # Open MPI reaches the simulated hosts through nsexec, its "ssh".
  export OMPI_MCA_plm_rsh_agent=$MN_NSEXEC
  cd "$mn_work" || exit 1
}

mn_end() {
  echo "$passed passed, $failed failed ($(($(date +%s) - mn_t0)) s)"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

# on HOST CMD: shell text CMD on a simulated host, in the work directory.
on() { "$MN_NSEXEC" "$1" "cd '$mn_work' && $2"; }

# mn_mpirun SECONDS RANKS_PER_HOST HOST... -- PROGRAM ARGS: the project's multi-node launcher, started on
# the first HOST (as a user starts mpirun on a login or first node), under a time limit.
mn_mpirun() {
  local limit=$1 per=$2 hosts=() h
  shift 2
  while [ "$1" != -- ]; do hosts+=("$1"); shift; done
  shift
  : >"$mn_work/hostfile"
  for h in "${hosts[@]}"; do echo "$h slots=$per" >>"$mn_work/hostfile"; done
  timeout -k 5 "$limit" "$MN_NSEXEC" "${hosts[0]}" \
    "cd '$mn_work' && exec '$mn_top/jobs/multinode/mpirun-nodes.sh' '$mn_work/hostfile' '$MN_NET' $(printf "'%s' " "$@")"
}

# rx_bytes HOST: bytes received on the host's eth0.
rx_bytes() { ip netns exec "$1" cat /sys/class/net/eth0/statistics/rx_bytes; }

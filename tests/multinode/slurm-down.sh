#!/usr/bin/env bash
# slurm-down.sh DIR: stops the Slurm that slurm-up.sh DIR started: cancels its jobs while the daemons are
# still up, then stops the daemons recorded in DIR/slurm.pids by PID (TERM, KILL after 5 s). Whatever
# else is left (a slurmstepd, a job's rank) lives in the cluster's namespaces: cluster-down.sh ends it.
# Safe to run twice, or after a failed slurm-up.sh.
set -uo pipefail
dir=${1:?usage: slurm-down.sh DIR}
pids=$dir/slurm.pids
[ -s "$pids" ] || exit 0
# shellcheck source=/dev/null
. "$dir/cluster.env"
# shellcheck source=/dev/null
. "$dir/slurm.env"
on() { timeout 10 "$MN_NSEXEC" "$MN_HEAD" "export SLURM_CONF=$SLURM_CONF PATH=$PATH:/usr/sbin; $1"; }

running() {  # running PID NAME: the process exists, is not a zombie, and is called NAME
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
if grep -q '^slurmctld ' "$pids" && jobs=$(on "squeue -h -o %i" 2>/dev/null) && [ -n "$jobs" ]; then
  on "scancel ${jobs//$'\n'/ }" >/dev/null 2>&1
  for _ in $(seq 20); do [ -z "$(on "squeue -h -o %i" 2>/dev/null)" ] && break; sleep 0.5; done
fi
for name in slurmd slurmctld munged; do
  grep "^$name " "$pids" | while read -r _ pid; do
    running "$pid" "$name" || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do running "$pid" "$name" || break; sleep 0.1; done
    running "$pid" "$name" && kill -KILL "$pid" 2>/dev/null
    echo "[slurm-down] stopped $name (pid $pid)"
  done
done
: >"$pids"

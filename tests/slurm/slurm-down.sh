#!/usr/bin/env bash
# slurm-down.sh DIR [--keep]: stops the cluster that tests/slurm/slurm-up.sh DIR started, and only it:
# cancels its jobs, stops the daemons recorded in DIR/started.pids by PID (TERM, then KILL after 10 s),
# ends any process still left from its jobs (recognised by this cluster's SLURM_CONF in its environment),
# and removes DIR unless --keep is given. Safe to run twice, or after a failed slurm-up.sh.
set -uo pipefail
dir=${1:?usage: slurm-down.sh DIR [--keep]}
keep=${2:-}
[ -d "$dir" ] || exit 0
dir=$(cd "$dir" && pwd)
pids=$dir/started.pids
export SLURM_CONF=$dir/slurm.conf PATH=$PATH:/usr/sbin

running() {  # running PID NAME: the process exists, is not a zombie, and is called NAME
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
stop() {  # stop NAME PID
  local name=$1 pid=$2
  running "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do running "$pid" "$name" || break; sleep 0.1; done
  running "$pid" "$name" && kill -KILL "$pid" 2>/dev/null
  echo "[slurm-down] stopped $name (pid $pid)"
}

if [ -s "$pids" ]; then
  # Let Slurm end its jobs (and their slurmstepd) while its daemons are still up.
  if grep -q '^slurmctld ' "$pids" && jobs=$(timeout 10 squeue -h -o %i 2>/dev/null) && [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null
    for _ in $(seq 30); do [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for name in slurmd slurmctld munged; do
    grep "^$name " "$pids" | while read -r _ pid; do stop "$name" "$pid"; done
  done
  : >"$pids"
fi

# Whatever is left of this cluster's jobs: a slurmstepd carries the mark slurm-up.sh gave the daemons, a
# job's process (a trainer rank) this cluster's SLURM_CONF and a SLURM_JOB_ID. This shell and its callers
# are never touched, whatever their environment.
ancestors=" "; a=$$
while [ -n "$a" ] && [ "$a" -gt 1 ]; do ancestors+="$a "; a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null); done
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  case "$ancestors" in *" $pid "*) continue ;; esac
  env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
  if grep -qxF "TRAINER_SLURM_TEST_DIR=$dir" <<<"$env" ||
     { grep -qxF "SLURM_CONF=$SLURM_CONF" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env"; }; then
    echo "[slurm-down] killing leftover $(cat "$p/comm" 2>/dev/null) (pid $pid)"
    kill -KILL "$pid" 2>/dev/null
  fi
done

[ "$keep" = --keep ] || rm -rf "$dir"
exit 0

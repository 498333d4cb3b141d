#!/usr/bin/env bash
# run.sh COMMAND [options]: runs `trainer COMMAND [options]` on this machine, without Slurm: one rank
# directly, or RANKS ranks under mpirun with the flags a workstation needs.
#
#   jobs/run.sh train --model fashion-cnn --data train.h5 --checkpoint model.h5
#   RANKS=4 jobs/run.sh train --model fashion-cnn --data train.h5 --checkpoint model.h5
#   RANKS=2 jobs/run.sh eval --checkpoint model.h5 --data test.h5
#
# Environment: RANKS (default 1), TRAINER (the binary; default build/trainer/trainer, built with
# jobs/build.sh when missing), MPIRUN_ARGS (more mpirun options).
# mpirun gets --bind-to none (each rank then runs cores/RANKS threads), --oversubscribe when RANKS is
# more than the cores, and --allow-run-as-root as root. This script becomes the launcher (exec): a
# `kill -USR1 PID` of it makes training write its checkpoint and exit 75 (mpirun forwards USR1 to the
# ranks), and `jobs/run.sh train --resume model.h5 --data train.h5` goes on from there.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ranks=${RANKS:-1}
trainer=${TRAINER:-$top/build/trainer/trainer}
[ $# -gt 0 ] || { sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case $ranks in '' | *[!0-9]* | 0) echo "run.sh: RANKS must be a positive number, not '$ranks'" >&2; exit 2 ;; esac
if [ ! -x "$trainer" ]; then
  [ -z "${TRAINER:-}" ] || { echo "run.sh: TRAINER=$trainer is not an executable" >&2; exit 2; }
  trainer=$("$top/jobs/build.sh")
fi

if [ "$ranks" -eq 1 ]; then
  exec "$trainer" "$@"
fi
mpi=(mpirun -np "$ranks" --bind-to none)
[ "$ranks" -gt "$(nproc)" ] && mpi+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
# shellcheck disable=SC2206  # MPIRUN_ARGS is a list of options, split on spaces
mpi+=(${MPIRUN_ARGS:-})
exec "${mpi[@]}" "$trainer" "$@"

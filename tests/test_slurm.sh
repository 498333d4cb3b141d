#!/usr/bin/env bash
# test_slurm.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: the Slurm job scripts (jobs/slurm/) against a
# real single-node Slurm, brought up by tests/slurm/slurm-up.sh and torn down by slurm-down.sh.
#   1. train-mpirun.sbatch (mpirun inside the allocation) gets its warning from Slurm's own time limit
#      (--time=1 --signal=B:USR1@30): it checkpoints, exits 75, requeues itself, resumes and completes, and
#      its final weights equal an uninterrupted run's (jobs/run.sh, same ranks and seed) bit for bit.
#   2. train.sbatch (srun --mpi=pmix) is stopped by `scancel --signal=USR1 --batch` (run 0) and by
#      preemption from a job in a higher partition (run 1); run 2 completes, bit-identical too.
#   3. eval.sbatch evaluates the result.
#   4. scancel ends a training job for good: the checkpoint is written, the job is not requeued.
# So that no race can decide the outcome, the trainer's ranks are frozen (SIGSTOP) once they catch USR1 and
# thawed once Slurm's signal is pending in every rank: the signal then arrives mid-training on any machine,
# however fast. A requeued job waits cred_expire seconds before it may run again: the test starts it at once
# (scontrol update StartTime=now). Needs root (the daemons run as root); installs Slurm when missing.
# Prints "N passed, N failed" and exits non-zero when a check fails. KEEP=1 keeps the work directory.
set -u
trainer=$1 make_dataset=$2 compare=$3 data=$4
top=$(cd "$(dirname "$0")/.." && pwd)
t0=$(date +%s)
if [ "$(id -u)" -ne 0 ]; then
  echo "test_slurm: SKIPPED: a private Slurm cluster needs root (slurmd runs jobs as their users)"
  exit 77
fi

work=$(mktemp -d /tmp/trainer-slurm.XXXXXX) # a short path: munge's socket lives under it,
chmod 755 "$work"                           # in a directory everyone may traverse
cluster=$work/cluster
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
note() { echo "# +$(($(date +%s) - t0))s $*"; }
dump() {
  for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; grep -v '^Epoch' "$f"; }; done
  [ -f "$cluster/env.sh" ] && squeue 2>&1
  for f in "$cluster"/log/slurmctld.log "$cluster"/log/slurmd.log; do
    [ -f "$f" ] && { echo "--- $f"; grep -v 'debug2: Testing job time' "$f" | tail -n 25; }
  done
}
finish() {
  [ "$failed" -eq 0 ] || dump
  bash "$top/tests/slurm/slurm-down.sh" "$cluster"
  [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
  note "done"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
trap 'finish; exit $?' EXIT
trap 'bad "interrupted"; exit 1' INT TERM

# SlurmctldDebug=debug2 logs each time-limit check, so the test can tell when the next one comes.
if ! SLURM_TEST_CTLD_DEBUG=debug2 bash "$top/tests/slurm/slurm-up.sh" "$cluster"; then
  bad "a Slurm cluster comes up (see the error above)"
  exit 1
fi
ok "a Slurm cluster comes up"
. "$cluster/env.sh"

# ---- helpers ------------------------------------------------------------------------------------
# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds (0) or SECONDS pass (1).
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.1; done
}
# busy_wait SECONDS CMD...: the same without the pause, for the moments that count.
busy_wait() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$end" ] || return 1; done
}
field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
state_is() { [ "$(field "$1" JobState)" = "$2" ]; }
gone() { [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; }
# The trainer's ranks in job $1 of this cluster: processes called trainer with SLURM_JOB_ID=$1 and this
# cluster's SLURM_CONF in their environment (other clusters may run on this machine too).
ranks() {
  local p c
  for p in /proc/[0-9]*; do
    read -r c 2>/dev/null <"$p/comm" && [ "$c" = trainer ] || continue
    [ "$(tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -cx -e "SLURM_JOB_ID=$1" -e "SLURM_CONF=$SLURM_CONF")" -eq 2 ] &&
      echo "${p#/proc/}"
  done
}
two_ranks() { [ "$(ranks "$1" | grep -c .)" -eq 2 ]; }
# has_usr1 PID FIELD...: USR1 (signal 10, bit 0x200) is set in one of the FIELDs of /proc/PID/status
# (SigCgt: caught, the handler is installed; ShdPnd, SigPnd: pending). Builtins only: it runs in tight loops.
has_usr1() {
  local pid=$1 k v f; shift
  while read -r k v; do
    for f in "$@"; do [ "$k" = "$f:" ] && (((0x$v & 0x200) != 0)) && return 0; done
  done 2>/dev/null <"/proc/$pid/status"
  return 1
}
# freeze JOB: stops each of the job's two ranks the moment it has installed its USR1 handler (it is in
# the training loop). A stopped rank holds the other at the next all-reduce, so training cannot run ahead.
freeze() {
  local pid left end=$((SECONDS + 60))
  busy_wait 60 two_ranks "$1" || return 1
  left=" $(ranks "$1" | tr '\n' ' ')"
  while [ -n "${left// /}" ]; do
    [ "$SECONDS" -lt "$end" ] || return 1
    for pid in $left; do
      if has_usr1 "$pid" SigCgt; then kill -STOP "$pid"; left=${left/ $pid / }
      elif [ ! -d "/proc/$pid" ]; then echo "# rank $pid of job $1 ended before it caught USR1"; return 1; fi
    done
  done
  frozen=$(ranks "$1")
}
# advance SECONDS: lets the frozen ranks train that long (far from the end), so runs stop at varied steps.
advance() {
  kill -CONT $frozen 2>/dev/null
  sleep "$1"
  kill -STOP $frozen 2>/dev/null
}
# thaw: once USR1 is pending in both stopped ranks, lets them go on (then they stop after the current step).
pending() {
  local pid
  for pid in $frozen; do has_usr1 "$pid" ShdPnd SigPnd || return 1; done
}
thaw() {
  local rc=0
  wait_for 90 pending || rc=1
  kill -CONT $frozen 2>/dev/null
  return $rc
}
# start_now JOB: a requeued job waits cred_expire seconds (Reason=BeginTime) because slurmd revokes the
# credential of the run it ended; a run launched within the same second would be refused ("Job credential
# revoked") and the job would fail. Two seconds after the requeue it may start at once.
start_now() {
  sleep 2
  scontrol update jobid="$1" StartTime=now
}
# requeued JOB K: the job has been requeued K times and waits; start it now, not cred_expire seconds later.
restarted() { [ "$(field "$1" Restarts)" -ge "$2" ] && state_is "$1" PENDING; }
requeued() {
  wait_for 60 restarted "$1" "$2" && start_now "$1"
}
# resume_steps FILE: the steps the runs in a job's log resumed at, in order.
resume_steps() { sed -n 's/^[Rr]esuming.*[^a-z]step \([0-9][0-9]*\).*/\1/p' "$1" | tr '\n' ' '; }
# supervise JOB: until the job ends, starts it again at once whenever it has been requeued. Prints its state.
supervise() {
  local end=$(($(date +%s) + 240)) s
  while [ "$(date +%s)" -lt "$end" ]; do
    s=$(field "$1" JobState)
    case $s in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) echo "$s"; return ;;
      PENDING) [ "$(field "$1" Reason)" = BeginTime ] && start_now "$1" 2>/dev/null ;;
    esac
    sleep 0.2
  done
  echo "still $(field "$1" JobState) after 240 s"
}
# log_has FILE PATTERN DESCRIPTION
log_has() { if grep -q -E -- "$2" "$1"; then ok "$3"; else bad "$3 (no /$2/ in $(basename "$1"))"; fi; }

# ---- data -----------------------------------------------------------------------------------------
cd "$work" || exit 1
"$make_dataset" train.h5 2048 12 4 1 >/dev/null && "$make_dataset" test.h5 512 12 4 2 >/dev/null ||
  { bad "make the datasets"; exit 1; }
# 2 ranks x 1 thread, global batch 16: 128 steps an epoch, 5120 in all (about 2 s here): long enough that
# the ranks are frozen well before the end.
export MODEL=$data/small.model DATA=$work/train.h5 EPOCHS=40 BATCH=16 TRAINER=$trainer
total=5120
# A schedule and a callback ride along (TRAINER_ARGS, CALLBACKS): every requeued run passes them again, and
# the resumed runs continue them from the checkpoint.
export TRAINER_ARGS="--threads 1 --seed 5 --optimizer adam --lr-schedule cosine --warmup-epochs 2"
export CALLBACKS="ReduceLROnPlateau(monitor='loss', factor=0.5, patience=1, min_delta=10)"

# ---- 1. train-mpirun.sbatch: the warning from Slurm's time limit --------------------------------------
# slurmctld checks time limits every 30 s, the first time 30 s after it starts. With --time=1 and @30 the
# warning is due at once, so it comes at the first check after the start: submitted now, the job has some
# 25 s to start its ranks (they must have caught USR1 first), and they wait for it frozen while the
# reference runs outside Slurm. Should the next check be less than 10 s away, it is let pass first.
next_check() {
  local last
  last=$(grep 'Testing job time limits' "$cluster/log/slurmctld.log" | tail -n 1 | sed 's/^\[\([^]]*\)\].*/\1/')
  [ -n "$last" ] || last=$(head -n 1 "$cluster/log/slurmctld.log" | sed 's/^\[\([^]]*\)\].*/\1/')
  echo $(($(date -d "$last" +%s) + 30))
}
wait_s=$(($(next_check) - $(date +%s)))
if [ "$wait_s" -lt 10 ] && [ "$wait_s" -gt -3 ]; then
  note "next time-limit check in ${wait_s}s: waiting for it to pass"
  sleep $((wait_s + 2))
fi
mout=$work/mpirun.out
mjob=$(CHECKPOINT=$work/mpirun.h5 sbatch --parsable --time=1 --signal=B:USR1@30 --output="$mout" \
  "$top/jobs/slurm/train-mpirun.sbatch") || bad "sbatch train-mpirun.sbatch"
note "submitted train-mpirun.sbatch as job $mjob (--time=1 --signal=B:USR1@30); waiting for the time-limit check"
freeze "$mjob" && advance 0.3
mjob_frozen=$?

# The uninterrupted reference, meanwhile, in the background: the frozen ranks are let go as soon as the
# warning is pending in both, whatever the reference's time. (Under the sanitizers, beside another test, the
# reference took 33 s; waiting for it first left the job too little of the 30 s between the warning and the
# time limit, and it was killed there.)
( RANKS=2 "$top/jobs/run.sh" train --model "$MODEL" --data "$DATA" --epochs "$EPOCHS" --batch-size "$BATCH" \
    $TRAINER_ARGS --callback "$CALLBACKS" --quiet --checkpoint "$work/reference.h5" >reference.txt 2>&1
  echo $? >reference.rc ) &
reference=$!

if [ "$mjob_frozen" = 0 ] && thaw "$mjob"; then
  ok "time limit: Slurm's warning reaches both ranks through mpirun"
else
  bad "time limit: Slurm's warning reaches both ranks through mpirun"
fi
wait "$reference"
if [ "$(cat reference.rc 2>/dev/null)" = 0 ]; then
  ok "jobs/run.sh trains on 2 ranks without Slurm (the reference)"
else
  bad "jobs/run.sh: $(tail -n 5 reference.txt)"
fi
note "reference done"
state=$(supervise "$mjob")
[ "$state" = COMPLETED ] && ok "train-mpirun.sbatch completes (job $mjob $state)" ||
  bad "train-mpirun.sbatch completes (job $mjob $state)"
log_has "$mout" 'got SIGUSR1: the trainer writes its checkpoint' "time limit: the batch script got USR1"
log_has "$mout" 'requeueing job' "time limit: the job requeued itself"
log_has "$mout" 'SLURM_RESTART_COUNT=1' "time limit: SLURM_RESTART_COUNT=1 in the log"
steps=$(resume_steps "$mout")
[ -n "$steps" ] && [ "${steps%% *}" -gt 0 ] && ok "time limit: resumed mid-training at step ${steps%% *} of $total" ||
  bad "time limit: resumed at steps '$steps'"
"$compare" "$work/reference.h5" "$work/mpirun.h5" 0 &&
  ok "mpirun variant, stopped by the time limit: bit-identical to the uninterrupted run" ||
  bad "train-mpirun.sbatch's weights equal the uninterrupted run's"
note "train-mpirun.sbatch done"

# ---- 2. train.sbatch: scancel --signal=USR1 --batch, then preemption, then to the end ---------------
out=$work/train.out
job=$(CHECKPOINT=$work/srun.h5 sbatch --parsable --time=10 --output="$out" "$top/jobs/slurm/train.sbatch") ||
  { bad "sbatch train.sbatch"; exit 1; }
note "submitted train.sbatch as job $job"

# Run 0: the warning as a user (or a site's script) sends it.
if freeze "$job" && advance 0.3 && scancel --signal=USR1 --batch "$job" && thaw "$job"; then
  ok "run 0: USR1 from scancel --signal=USR1 --batch reaches both ranks"
else
  bad "run 0: USR1 from scancel reaches both ranks"
fi
requeued "$job" 1 && ok "run 0: the job requeued itself" || bad "run 0: the job requeued itself"
log_has "$out" 'got SIGUSR1: the trainer writes its checkpoint' "run 0: the batch script got USR1 and passed it on"
log_has "$out" 'trainer exited with 75' "run 0: the trainer checkpointed and exited 75"
note "run 0 done"

# Run 1: preempted by a job in the higher partition "urgent": Slurm sends the job's --signal (B:USR1).
if freeze "$job" && advance 0.3; then
  urgent=$(sbatch --parsable -p urgent -n 1 --time=1 --output="$work/urgent.out" --wrap 'echo urgent job ran')
  thaw "$job" && ok "run 1: preemption brings USR1 to both ranks" || bad "run 1: preemption brings USR1 to both ranks"
  wait_for 60 gone "$urgent" && grep -q 'urgent job ran' "$work/urgent.out" &&
    ok "run 1: the preempting job ran" || bad "run 1: the preempting job ran"
else
  bad "run 1: the ranks of the resumed run start training"
fi
log_has "$out" 'SLURM_RESTART_COUNT=1' "run 1: SLURM_RESTART_COUNT=1 in the log"
log_has "$out" '^[Rr]esuming.*srun.h5.*step [1-9]' "run 1: resumed from the checkpoint of run 0"
note "run 1 done"

# Run 2: no more signals; it resumes and completes.
state=$(supervise "$job")
[ "$state" = COMPLETED ] && ok "train.sbatch completes (job $job $state)" || bad "train.sbatch completes (job $job $state)"
log_has "$out" 'SLURM_RESTART_COUNT=2' "run 2: SLURM_RESTART_COUNT=2 in the log"
steps=$(resume_steps "$out")
set -- $steps
[ $# -eq 2 ] && [ "$1" -gt 0 ] && [ "$2" -gt "$1" ] && [ "$2" -lt "$total" ] &&
  ok "runs 1 and 2 resumed mid-training, at steps $1 and $2 of $total" || bad "resumed at steps '$steps'"
log_has "$out" 'training complete' "run 2: the batch script saw the training complete"
[ "$(grep -c 'got SIGUSR1' "$out")" -eq 2 ] && ok "two warnings, two requeues" || bad "two warnings: $(grep -c 'got SIGUSR1' "$out")"
"$compare" "$work/reference.h5" "$work/srun.h5" 0 &&
  ok "stopped twice and requeued: bit-identical to the uninterrupted run" ||
  bad "train.sbatch's weights equal the uninterrupted run's"
note "train.sbatch done"

# ---- 3. eval.sbatch ------------------------------------------------------------------------------
eout=$work/eval.out
ejob=$(CHECKPOINT=$work/srun.h5 DATA=$work/test.h5 sbatch --parsable --output="$eout" \
  "$top/jobs/slurm/eval.sbatch" --json) || bad "sbatch eval.sbatch"
state=$(supervise "$ejob")
expected=$(OMP_NUM_THREADS=1 "$trainer" eval --checkpoint "$work/srun.h5" --data "$work/test.h5" --json |
  grep -o '"accuracy": [0-9.]*')
[ "$state" = COMPLETED ] && [ -n "$expected" ] && grep -q "$expected" "$eout" &&
  ok "eval.sbatch on 2 ranks: $expected, as on one rank" || bad "eval.sbatch ($state): $(head -c 300 "$eout")"
note "eval.sbatch done"

# ---- 4. scancel ends the job: the trainer saves its checkpoint, and the job does not requeue itself -----
cout=$work/cancel.out
cjob=$(CHECKPOINT=$work/cancel.h5 EPOCHS=100000 sbatch --parsable --time=10 --output="$cout" "$top/jobs/slurm/train.sbatch") ||
  bad "sbatch train.sbatch"
# It trains for ever: no race. The ranks are frozen only to know they are in the training loop.
if freeze "$cjob" && kill -CONT $frozen && scancel "$cjob"; then
  state=$(supervise "$cjob")
  [ "$state" = CANCELLED ] && [ "$(field "$cjob" Restarts)" = 0 ] &&
    ok "scancel: the job ends CANCELLED and is not requeued" || bad "scancel: job $cjob $state, $(field "$cjob" Restarts) restarts"
  log_has "$cout" 'trainer exited with 75' "scancel: the trainer saved its checkpoint and exited 75"
  log_has "$cout" 'not requeued: the job is being cancelled' "scancel: the batch script says why it did not requeue"
else
  bad "scancel: the job's ranks start training"
fi
note "scancel done"

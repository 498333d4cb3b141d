#!/usr/bin/env bash
# test_slurm.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: training through a 2-node Slurm on simulated
# hosts (cluster-up.sh + slurm-up.sh: slurmd on two hosts, slurmctld on a third). The job is the project's
# jobs/slurm/train.sbatch, submitted with `sbatch -N 2 --ntasks-per-node=1` (srun --mpi=pmix inside), TCP
# between the nodes.
#  - it ends with the weights of the same run with 2 ranks on one host (1e-6);
#  - a node whose link is cut mid-job: Slurm ends the run within 30 s (node failure: SlurmdTimeout is 8 s
#    here) and requeues the job;
#    the checkpoint is whole, and the job resubmitted on the one node left resumes from it with 1 rank.
# Needs root (installs Slurm and munge when missing). Prints "N passed, N failed"; exits non-zero when a
# check fails.
set -u
trainer=$1 make_dataset=$2 compare=$3 data=$4
. "$(dirname "$0")/lib.sh"
mn_begin 150 3 slurm
read -ra nodes <<<"$MN_NODES"
sbatch_script=$mn_top/jobs/slurm/train.sbatch
[ -r "$sbatch_script" ] || { bad "no $sbatch_script"; mn_end; }
slurm() { timeout -k 5 20 "$MN_NSEXEC" "$MN_HEAD" "export SLURM_CONF=$SLURM_CONF PATH=$PATH; cd '$mn_work' && $1"; }
# steps_in CHECKPOINT: the optimizer steps it holds, as `trainer info` tells them (empty: unreadable).
steps_in() { "$trainer" info "$1" 2>/dev/null | grep -i 'trained' | grep -o '[0-9,]* steps' | head -1 | cut -d' ' -f1 | tr -d ,; }

# submit OUT CHECKPOINT TRAINER_ARGS SBATCH_OPTIONS: prints the job id. The submission's environment goes
# with the job (sbatch's --export=ALL): train.sbatch's settings, and Open MPI's transport and network.
submit() {
  slurm "export DATA=train.h5 MODEL='$data/small.model' EPOCHS=100000 BATCH=16 CHECKPOINT='$mn_work/$2' \
    TRAINER='$trainer' TRAINER_ARGS='$3 --seed 9 --threads 1 --quiet' TRAINER_WATCHDOG_S=20 \
    OMPI_MCA_btl=tcp,self OMPI_MCA_btl_tcp_if_include=$MN_NET OMPI_MCA_oob_tcp_if_include=$MN_NET
    sbatch --parsable $4 --time=5 -o '$mn_work/$1' '$sbatch_script'" 2>>sbatch.err
}
# wait_job ID SECONDS STATE...: polls until the job is in one of STATEs; sets $info and $state.
wait_job() {
  local id=$1 limit=$2 i s
  shift 2
  for i in $(seq $((limit * 4))); do
    info=$(slurm "scontrol show job -o $id" 2>/dev/null)
    state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info")
    for s in "$@"; do [ "$state" = "$s" ] && return 0; done
    sleep 0.25
  done
  return 1
}
field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<"$info"; }
done_states=(COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL)

"$make_dataset" train.h5 768 12 4 1 >/dev/null || { bad "make_dataset"; mn_end; }
timeout -k 5 60 mpirun -np 2 --oversubscribe --bind-to none "$trainer" train --model "$data/small.model" \
  --data train.h5 --epochs 100000 --batch-size 16 --max-steps 60 --seed 9 --threads 1 --quiet \
  --checkpoint one-host.h5 >one-host.log 2>&1 || bad "2 ranks on one host: $(tail -3 one-host.log)"

# 1. Two nodes, one rank each: the weights of 2 ranks on one host.
rx0=$(rx_bytes "${nodes[1]}")
t=$(now)
job=$(submit job.out slurm.h5 "--max-steps 60" "-N 2 --ntasks-per-node=1")
[ -n "$job" ] || { bad "sbatch: $(cat sbatch.err)"; mn_end; }
wait_job "$job" 60 "${done_states[@]}"
if [ "$state" = COMPLETED ] && [ "$(field ExitCode)" = 0:0 ] && [ "$(field NumNodes)" = 2 ]; then
  ok "sbatch -N 2 --ntasks-per-node=1 train.sbatch: job $job COMPLETED on $(field NodeList) ($(since "$t") s)"
else
  bad "job $job: state '$state', exit $(field ExitCode), nodes $(field NodeList): $(tail -5 job.out 2>/dev/null)"
fi
rx=$(($(rx_bytes "${nodes[1]}") - rx0))
[ "$rx" -gt $((60 * 2812 * 2)) ] && ok "the gradients crossed the link ($rx bytes into ${nodes[1]})" \
  || bad "only $rx bytes reached ${nodes[1]}"
"$compare" one-host.h5 slurm.h5 1e-6 && ok "2 Slurm nodes x 1 rank = 1 host x 2 ranks (1e-6)" \
  || bad "the Slurm run differs from 2 ranks on one host: $(tail -5 job.out 2>/dev/null)"

# 2. A node is lost mid-job: its link is cut for good.
job=$(submit lost.out lost.h5 "--checkpoint-every 20" "-N 2 --ntasks-per-node=1")
[ -n "$job" ] || { bad "sbatch: $(cat sbatch.err)"; mn_end; }
wait_job "$job" 30 RUNNING || bad "job $job not running: $state"
for _ in $(seq 150); do [ -s lost.h5 ] && break; sleep 0.1; done
sleep 1
t0=$(now)
ip -n "${nodes[1]}" link set eth0 down
# wait_end ID SECONDS: polls until the job is no longer RUNNING (Slurm has ended the run: the job completes,
# is requeued, fails...); sets $info and $state.
wait_end() {
  local i
  for i in $(seq $(($2 * 4))); do
    info=$(slurm "scontrol show job -o $1" 2>/dev/null)
    state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info")
    [ -n "$state" ] && [ "$state" != RUNNING ] && return 0
    sleep 0.25
  done
  return 1
}
if wait_end "$job" 30; then
  msg=$(grep -m1 -E 'DUE TO NODE FAILURE|Node failure|waited [0-9]+ s for the other ranks' lost.out)
  if [ -n "$msg" ]; then ok "${nodes[1]} cut off: the run ended after $(since "$t0") s (job $state): $msg"
  else bad "${nodes[1]} cut off: job $state, but no message: $(tail -5 lost.out)"; fi
  # The batch script ends its srun (KillWait), then Slurm puts the job back in the queue.
  wait_job "$job" 30 PENDING "${done_states[@]}"
  [ "$state" = PENDING ] && [ "$(field Restarts)" -ge 1 ] && ok "the job was requeued" \
    || bad "job not requeued: state $state, restarts $(field Restarts)"
else
  bad "${nodes[1]} cut off: job $job still $state after 30 s"
fi
steps=$(steps_in lost.h5)
[ -n "$steps" ] && [ "$steps" -gt 0 ] && ok "the last checkpoint is whole ($steps steps)" \
  || bad "checkpoint: $("$trainer" info lost.h5 2>&1 | tail -1)"

# The requeued job waits for two nodes; resubmitted on the one left, train.sbatch resumes with 1 rank.
slurm "scancel $job" >/dev/null 2>&1
t=$(now)
job=$(submit resume.out lost.h5 "--max-steps $((steps + 30))" "-N 1 --ntasks=1")
if [ -n "$job" ] && wait_job "$job" 60 "${done_states[@]}" && [ "$state" = COMPLETED ] &&
   [ "$(steps_in lost.h5)" = $((steps + 30)) ] && "$trainer" info lost.h5 | grep -qiE 'written by:? *1 rank'; then
  ok "resubmitted with -N 1 -n 1: resumed on $(field NodeList), step $steps -> $((steps + 30)) ($(since "$t") s)"
else
  bad "resume on one node: job $job $state: $(tail -5 resume.out 2>/dev/null) / $("$trainer" info lost.h5 2>&1 | tail -1)"
fi
mn_end

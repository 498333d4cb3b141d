#!/usr/bin/env bash
# test_e2e.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR COMPARE_ARRAYS FIXTURES: the trainer as a user runs it.
# Prints "N passed, N failed" and exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_dataset=$2 compare=$3 data=$4 compare_arrays=$5 fixtures=$6
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# Open MPI refuses root without these.

# expect CODE PATTERN DESCRIPTION CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect() {
  local code=$1 pattern=$2 what=$3; shift 3
  "$@" >out.txt 2>err.txt; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -E -- "$pattern" err.txt; then ok "$what"
  else bad "$what (exit $rc, stderr: $(head -c 300 err.txt))"; fi
}

"$make_dataset" train.h5 768 12 4 1 && "$make_dataset" test.h5 256 12 4 2 || { echo "cannot make data"; exit 1; }

"$trainer" info train.h5 >info.txt 2>&1 && grep -q 'dataset' info.txt && grep -q '768 x 12 x 12 x 1' info.txt \
  && ok "info describes a dataset" || bad "info describes a dataset: $(cat info.txt)"

# One rank: the loss falls and the model learns.
if OMP_NUM_THREADS=2 "$trainer" train --model "$data/small.model" --data train.h5 --val test.h5 --epochs 4 \
     --batch-size 16 --optimizer adam --seed 3 --metrics m.csv --checkpoint c1.h5 >train.txt 2>&1; then
  ok "train on one rank"
else
  bad "train on one rank: $(tail -5 train.txt)"
fi
[ "$(grep -c '^Epoch [0-9]*/' train.txt)" -eq 4 ] && ok "four epoch lines" || bad "four epoch lines: $(cat train.txt)"
rows=$(tail -n +2 m.csv | wc -l)
first=$(sed -n 2p m.csv | cut -d, -f3) last=$(tail -1 m.csv | cut -d, -f3)
[ "$rows" -eq 4 ] && awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.7 * a) }' \
  && ok "loss falls ($first -> $last)" || bad "loss falls: $(cat m.csv)"
head -1 m.csv | grep -q '^epoch,step,loss,acc,val_loss,val_acc,lr,img_per_s,wall_s$' && ok "metrics header" \
  || bad "metrics header"

"$trainer" eval --checkpoint c1.h5 --data test.h5 >eval.txt 2>&1
acc=$(sed -n 's/^loss: [0-9.]* - accuracy: \([0-9.]*\)$/\1/p' eval.txt)
awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.9) }' && ok "eval accuracy $acc >= 0.9" || bad "eval: $(cat eval.txt)"
grep -q 'confusion matrix' eval.txt && grep -q '^  nw ' eval.txt && ok "confusion matrix with class names" \
  || bad "confusion matrix: $(cat eval.txt)"
mpi 2 "$trainer" eval --checkpoint c1.h5 --data test.h5 --json >eval2.txt 2>&1
acc2=$(sed -n 's/.*"samples": [0-9]*, "loss": [0-9.e-]*, "accuracy": \([0-9.e-]*\).*/\1/p' eval2.txt)
awk -v a="${acc:-0}" -v b="${acc2:--1}" 'BEGIN { exit !((a - b) ^ 2 < 1e-8) }' && ok "eval on 2 ranks agrees" \
  || bad "eval on 2 ranks: $(cat eval2.txt) vs $acc"

mpi 2 "$trainer" predict --checkpoint c1.h5 --data test.h5 -o p.h5 >/dev/null 2>&1 \
  && h5dump -H p.h5 | grep -q 'probabilities' && h5dump -H -d predictions p.h5 | grep -q '( 256 )' \
  && ok "predict writes probabilities and predictions" || bad "predict"

"$trainer" info c1.h5 >info2.txt 2>&1 && grep -q 'checkpoint' info2.txt && grep -q 'conv2d_1' info2.txt \
  && ok "info describes a checkpoint" || bad "info on a checkpoint: $(cat info2.txt)"

# 1, 2 and 4 ranks, same seed and global batch: the same weights after 50 steps (summation order aside).
for n in 1 2 4; do
  mpi "$n" "$trainer" train --model "$data/small.model" --data train.h5 --epochs 2 --batch-size 16 \
    --max-steps 50 --seed 9 --threads 1 --quiet --checkpoint "np$n.h5" >"np$n.txt" 2>&1 \
    || bad "train on $n ranks: $(tail -3 "np$n.txt")"
done
"$compare" np1.h5 np2.h5 1e-4 && ok "1 and 2 ranks agree" || bad "1 and 2 ranks agree"
"$compare" np1.h5 np4.h5 1e-4 && ok "1 and 4 ranks agree" || bad "1 and 4 ranks agree"
mpi 2 "$trainer" train --model "$data/small.model" --data train.h5 --epochs 2 --batch-size 16 --max-steps 50 \
  --seed 9 --threads 1 --quiet --checkpoint np2b.h5 >/dev/null 2>&1
"$compare" np2.h5 np2b.h5 0 >/dev/null && ok "same ranks, same seed: bit-identical" || bad "bit-identical rerun"

# The two gradient exchanges (exchange.h): node-shared memory (the default on one node) and messages. On two
# ranks the same sums: the same weights and optimizer slots, bit for bit. The set-up line names the one taken.
for n in 2 4; do
  TRAINER_EXCHANGE=messages mpi "$n" -x TRAINER_EXCHANGE "$trainer" train --model "$data/small.model"     --data train.h5 --epochs 2 --batch-size 16 --max-steps 50 --seed 9 --threads 1 --checkpoint "msg$n.h5"     >"msg$n.txt" 2>&1 || bad "train on $n ranks with messages: $(tail -3 "msg$n.txt")"
done
grep -q 'gradients through messages' msg2.txt && ok "TRAINER_EXCHANGE=messages is taken" \
  || bad "exchange line: $(grep Ranks msg2.txt)"
mpi 2 "$trainer" train --model "$data/small.model" --data train.h5 --epochs 2 --batch-size 16 --max-steps 1 \
  --seed 9 --threads 1 >shm.txt 2>&1
grep -q 'gradients through node-shared memory' shm.txt && ok "2 ranks on one node share memory" \
  || bad "exchange line: $(grep Ranks shm.txt)"
"$compare" np2.h5 msg2.h5 0 >/dev/null && h5diff np2.h5 msg2.h5 /trainer/optimizer_slots >/dev/null \
  && ok "2 ranks: shared memory = messages, weights and slots bit-identical" || bad "2 ranks: shared vs messages"
# On 4 ranks the node-shared sum is a pairwise tree, the reduce-scatter a ring: other roundings, which 50
# steps carry as far as 1 rank against 4 (above).
"$compare" np4.h5 msg4.h5 1e-4 && ok "4 ranks: shared memory = messages (1e-4, the sums' order aside)" \
  || bad "4 ranks: shared vs messages"

# A real Keras 2.1.3 model file: predict reproduces probabilities computed independently (float64 PyTorch).
keras=$fixtures/keras
mpi 2 "$trainer" predict --checkpoint "$keras/cifar10_cnn_keras2.1.3.h5" --data "$keras/images.h5" -o kp.h5 \
  >/dev/null 2>kp.txt
"$compare_arrays" kp.h5 probabilities "$keras/reference.h5" probabilities_f64 1e-5 >kp.txt 2>&1 \
  && ok "Keras file predicts its reference probabilities to 1e-5 ($(cat kp.txt))" || bad "Keras fixture: $(cat kp.txt)"
"$trainer" info "$keras/cifar10_cnn_keras2.1.3.h5" >ki.txt 2>&1 && grep -q 'Keras' ki.txt && grep -q 'conv2d_41' ki.txt \
  && ok "info on a Keras file" || bad "info on a Keras file: $(head -3 ki.txt)"

# Resume: 768 samples / 16 = 48 steps per epoch; stop at step 60 (mid-epoch 2), resume to step 100.
train2() { local n=$1; shift; mpi "$n" "$trainer" train --data train.h5 --threads 1 --quiet "$@"; }
train2 2 --model "$data/small.model" --epochs 3 --batch-size 16 --seed 4 --max-steps 100 --checkpoint straight.h5 \
  >/dev/null 2>&1
train2 2 --model "$data/small.model" --epochs 3 --batch-size 16 --seed 4 --max-steps 60 --checkpoint part.h5 \
  --metrics resumed.csv >/dev/null 2>&1
cp part.h5 part1.h5 && cp part.h5 part4.h5
train2 2 --resume part.h5 --epochs 3 --max-steps 100 --metrics resumed.csv >resume.txt 2>&1
"$compare" straight.h5 part.h5 0 >/dev/null && ok "stopped at step 60 and resumed to 100: bit-identical" \
  || bad "bit-identical resume: $(cat resume.txt)"
[ "$(cut -d, -f1 resumed.csv | tr '\n' ' ')" = "epoch 1 2 " ] && ok "metrics appended across the resume" \
  || bad "metrics across resume: $(cat resumed.csv)"
# With messages each rank updates the optimizer slots of its own shard: a checkpoint gathers them first.
msg2() { TRAINER_EXCHANGE=messages mpi 2 -x TRAINER_EXCHANGE "$trainer" train --data train.h5 --threads 1 --quiet "$@"; }
msg2 --model "$data/small.model" --epochs 3 --batch-size 16 --seed 4 --max-steps 60 --checkpoint partm.h5 \
  >/dev/null 2>&1
msg2 --resume partm.h5 --epochs 3 --max-steps 100 >/dev/null 2>&1
"$compare" straight.h5 partm.h5 0 >/dev/null && ok "messages: stopped at 60, resumed to 100: bit-identical" \
  || bad "bit-identical resume with messages"
train2 1 --resume part1.h5 --max-steps 100 --epochs 3 >/dev/null 2>&1
"$compare" straight.h5 part1.h5 1e-4 >/dev/null && ok "2-rank checkpoint resumes on 1 rank" || bad "resume on 1 rank"
train2 4 --resume part4.h5 --max-steps 100 --epochs 3 >/dev/null 2>&1
"$compare" straight.h5 part4.h5 1e-4 >/dev/null && ok "2-rank checkpoint resumes on 4 ranks" || bad "resume on 4 ranks"
mpi 1 "$trainer" train --data train.h5 --resume straight.h5 --max-steps 100 --epochs 3 >done.txt 2>&1 \
  && grep -q 'nothing to do' done.txt \
  && ok "resuming a finished run does nothing" || bad "finished resume: $(cat done.txt)"

"$trainer" train --model "$data/small.model" --data train.h5 --val-split 0.25 --epochs 3 --batch-size 32 \
  --checkpoint sb.h5 --save-best --quiet >/dev/null 2>&1
[ -f sb.best.h5 ] && "$trainer" info sb.best.h5 >/dev/null 2>&1 && ok "--save-best keeps sb.best.h5" \
  || bad "--save-best"
"$trainer" train --model "$data/small.model" --data train.h5 --init-weights c1.h5 --optimizer sgd --lr 0 \
  --max-steps 1 --checkpoint init.h5 --quiet >/dev/null 2>&1
"$compare" c1.h5 init.h5 0 >/dev/null && ok "--init-weights starts from the given weights" || bad "--init-weights"

expect 3 "part.h5: trained with global batch 16" "resume with another batch size: exit 3" \
  "$trainer" train --resume part.h5 --data train.h5 --batch-size 32
expect 3 "part.h5: the checkpoint holds another model than fashion-cnn" "resume another model: exit 3" \
  "$trainer" train --resume part.h5 --model fashion-cnn --data train.h5
head -c 3000 part.h5 >damaged.h5
expect 3 "^trainer: error: damaged.h5: " "resume a damaged checkpoint: exit 3" \
  "$trainer" train --resume damaged.h5 --data train.h5

# Errors: one line, the documented code.
expect 3 "^trainer: error: missing.h5: " "missing dataset: exit 3" \
  "$trainer" train --model "$data/small.model" --data missing.h5
printf 'Input(shape=(12, 12, 1))\nConv2D(8, 3, paddin="same")\n' >typo.model
expect 3 "typo.model:2:[0-9]+: .*paddin" "misspelled argument: exit 3 with line and column" \
  "$trainer" train --model typo.model --data train.h5
expect 3 "images are 12x12x1 but the model expects 28x28x1" "wrong image shape: exit 3" \
  "$trainer" train --model fashion-cnn --data train.h5
expect 2 "did you mean '--epochs'" "misspelled option: exit 2 with a suggestion" \
  "$trainer" train --model fashion-cnn --data train.h5 --epocs 3
expect 2 "did you mean 'train'" "misspelled command: exit 2" "$trainer" trian
expect 5 "diverged" "diverging learning rate: exit 5" \
  "$trainer" train --model "$data/small.model" --data train.h5 --optimizer sgd --lr 1e5 --epochs 1 --quiet
expect 3 "^trainer: error: missing.h5: " "two ranks, missing file on both: exit 3 once" \
  mpi 2 "$trainer" train --model "$data/small.model" --data train.h5 --val missing.h5
[ "$(grep -c 'trainer: error' err.txt)" -eq 1 ] && ok "the error shows once" || bad "error shown $(grep -c 'trainer: error' err.txt) times"

# A frozen rank (SIGSTOP, as a hung node) must not leave its peer waiting: the watchdog ends the job.
"$make_dataset" big.h5 4000 12 4 5 >/dev/null
start=$(date +%s)
TRAINER_WATCHDOG_S=4 mpi 2 -x TRAINER_WATCHDOG_S "$trainer" train --model "$data/small.model" --data big.h5 \
  --epochs 1000 --batch-size 16 --threads 1 --quiet >/dev/null 2>wd.txt &
job=$!
# The ranks' command lines start with the trainer (mpirun's and timeout's do not).
ranks_of() { pgrep -f "^$trainer train --model $data/small.model --data big.h5"; }
for _ in $(seq 50); do
  [ "$(ranks_of | wc -l)" -eq 2 ] && break
  sleep 0.2
done
pid=$(ranks_of | tail -1)
sleep 2
kill -STOP "$pid"
wait "$job"; rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" -ne 0 ] && [ "$took" -lt 30 ] && grep -q 'waited 4 s for the other ranks' wd.txt \
   && [ -z "$(ranks_of)" ]; then
  ok "a frozen rank ends the job in ${took}s"
else
  bad "frozen rank: exit $rc after ${took}s: $(grep trainer wd.txt | head -2)"
  pkill -KILL -f "^$trainer train --model $data/small.model --data big.h5"
fi

# BatchNormalization normalises with the global batch's statistics (summed over the ranks within the step), so
# 1, 2 and 4 ranks agree as without it; both exchanges carry the moving averages the same way.
bn=$data/bn.model
for n in 1 2 4; do
  mpi "$n" "$trainer" train --model "$bn" --data train.h5 --epochs 2 --batch-size 16 --max-steps 50 --seed 9 \
    --threads 1 --quiet --checkpoint "bn$n.h5" >"bn$n.txt" 2>&1 || bad "BatchNormalization on $n ranks: $(tail -3 "bn$n.txt")"
done
"$compare" bn1.h5 bn2.h5 1e-4 && ok "BatchNormalization: 1 and 2 ranks agree" || bad "BatchNormalization: 1 and 2 ranks"
"$compare" bn1.h5 bn4.h5 1e-4 && ok "BatchNormalization: 1 and 4 ranks agree" || bad "BatchNormalization: 1 and 4 ranks"
TRAINER_EXCHANGE=messages mpi 2 -x TRAINER_EXCHANGE "$trainer" train --model "$bn" --data train.h5 --epochs 2 \
  --batch-size 16 --max-steps 50 --seed 9 --threads 1 --quiet --checkpoint bnm2.h5 >bnm2.txt 2>&1
"$compare" bn2.h5 bnm2.h5 0 >/dev/null && ok "BatchNormalization: shared memory = messages, bit-identical" \
  || bad "BatchNormalization: shared vs messages: $(tail -3 bnm2.txt)"
# A global batch of 3 on 4 ranks: one rank has no sample in each step and adds zeros to the sums.
mpi 4 "$trainer" train --model "$bn" --data train.h5 --epochs 1 --batch-size 3 --max-steps 20 --seed 9 --threads 1 \
  --quiet --checkpoint bn4s.h5 >bn4s.txt 2>&1 && mpi 1 "$trainer" train --model "$bn" --data train.h5 --epochs 1 \
  --batch-size 3 --max-steps 20 --seed 9 --threads 1 --quiet --checkpoint bn1s.h5 >bn1s.txt 2>&1 \
  && "$compare" bn1s.h5 bn4s.h5 1e-4 >/dev/null && ok "BatchNormalization: batch 3 on 4 ranks = 1 rank" \
  || bad "BatchNormalization, batch 3 on 4 ranks: $(tail -3 bn4s.txt bn1s.txt)"
# Stopped and resumed: the moving averages are in the checkpoint, the run ends bit-identical.
train2 2 --model "$bn" --epochs 3 --batch-size 16 --seed 4 --max-steps 100 --checkpoint bnstraight.h5 >/dev/null 2>&1
train2 2 --model "$bn" --epochs 3 --batch-size 16 --seed 4 --max-steps 60 --checkpoint bnpart.h5 >/dev/null 2>&1
train2 2 --resume bnpart.h5 --epochs 3 --max-steps 100 >/dev/null 2>&1
"$compare" bnstraight.h5 bnpart.h5 0 >/dev/null && ok "BatchNormalization: stopped at 60, resumed to 100: bit-identical" \
  || bad "BatchNormalization: resume"
# Keras's layout: the weights in Keras's order, the moving averages among them, and the layer in model_config.
h5dump -a /model_weights/batch_normalization_1/weight_names bnstraight.h5 \
  | grep -o 'batch_normalization_1/[a-z_]*:0' | tr '\n' ' ' >bnnames.txt
[ "$(cat bnnames.txt)" = "batch_normalization_1/gamma:0 batch_normalization_1/beta:0 batch_normalization_1/moving_mean:0 batch_normalization_1/moving_variance:0 " ] \
  && h5dump -a model_config bnstraight.h5 | grep -q 'BatchNormalization' \
  && ok "BatchNormalization: Keras weight names and model_config" || bad "BatchNormalization names: $(cat bnnames.txt)"
"$trainer" info bnstraight.h5 >bninfo.txt 2>&1 && grep -q '^Non-trainable params: 96$' bninfo.txt \
  && ok "BatchNormalization: the moving averages are non-trainable params" || bad "bn info: $(cat bninfo.txt)"
# Inference uses the moving averages: with a fast average (momentum 0.5) they track the batches, and the model
# evaluates as well as it trained.
sed 's/BatchNormalization(momentum=0.9)/BatchNormalization(momentum=0.5)/; s/BatchNormalization()/BatchNormalization(momentum=0.5)/' \
  "$bn" >bnfast.model
mpi 2 "$trainer" train --model bnfast.model --data train.h5 --epochs 3 --threads 1 --quiet --checkpoint bnfast.h5 \
  >/dev/null 2>&1
bnacc=$(mpi 2 "$trainer" eval --checkpoint bnfast.h5 --data train.h5 2>/dev/null \
  | sed -n 's/^loss: [0-9.]* - accuracy: \([0-9.]*\)$/\1/p')
awk -v a="${bnacc:-0}" 'BEGIN { exit !(a >= 0.9) }' && ok "BatchNormalization: eval with the moving averages, accuracy $bnacc" \
  || bad "BatchNormalization eval accuracy '${bnacc}'"

summary

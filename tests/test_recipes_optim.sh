#!/usr/bin/env bash
# test_recipes_optim.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: the training recipes of issue 14 as a user runs
# them (kernel regularizers, AdamW, LARS, clipping, label smoothing, accumulation): 1/2/4 ranks agree, batch B
# with --accumulate 4 is batch 4B, resumes are bit-identical, a changed recipe and bad values are refused.
# Prints "N passed, N failed" and exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_dataset=$2 compare=$3 data=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1
train() { local n=$1; shift; mpi "$n" "$trainer" train --data train.h5 --quiet "$@"; }

# expect CODE PATTERN DESCRIPTION CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect() {
  local code=$1 pattern=$2 what=$3; shift 3
  "$@" >out.txt 2>err.txt; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -E -- "$pattern" err.txt; then ok "$what"
  else bad "$what (exit $rc, stderr: $(head -c 300 err.txt))"; fi
}

"$make_dataset" train.h5 384 12 4 1 >/dev/null || { echo "cannot make data"; exit 1; }
# small.model with Keras regularizers on the first Conv2D and the hidden Dense.
sed -e "s/^Conv2D(8, 3, padding='same', activation='relu')$/Conv2D(8, 3, padding='same', activation='relu', kernel_regularizer=regularizers.l2(1e-3))/" \
    -e "s/^Dense(32, activation='relu')$/Dense(32, activation='relu', kernel_regularizer=l1_l2(l1=1e-4, l2=5e-4))/" \
    "$data/small.model" >reg.model
grep -q 'regularizers.l2' reg.model && grep -q 'l1_l2' reg.model || { echo "cannot make reg.model"; exit 1; }

# Every recipe at once, on 1, 2 and 4 ranks, node-shared memory and messages.
recipe=(--model reg.model --epochs 2 --batch-size 32 --optimizer lars --lr 2 --weight-decay 1e-4 --clipnorm 1
        --label-smoothing 0.1)
train 1 "${recipe[@]}" --checkpoint n1.h5 >/dev/null 2>&1
train 2 "${recipe[@]}" --checkpoint n2.h5 >/dev/null 2>&1
train 4 "${recipe[@]}" --checkpoint n4.h5 >/dev/null 2>&1
TRAINER_EXCHANGE=messages mpi 4 -x TRAINER_EXCHANGE "$trainer" train --data train.h5 --quiet "${recipe[@]}" \
  --checkpoint m4.h5 >/dev/null 2>&1
"$compare" n1.h5 n2.h5 1e-4 >/dev/null && ok "LARS + clipnorm + regularizers + smoothing: 1 and 2 ranks agree" \
  || bad "1 and 2 ranks: $("$compare" n1.h5 n2.h5 1e-4 2>&1)"
"$compare" n1.h5 n4.h5 1e-4 >/dev/null && ok "... 1 and 4 ranks agree" || bad "1 and 4 ranks"
"$compare" n4.h5 m4.h5 1e-4 >/dev/null && ok "... 4 ranks: node-shared memory = messages" || bad "shared vs messages"
recipe_g=(--model reg.model --epochs 2 --batch-size 32 --optimizer adamw --global-clipnorm 0.5)
train 1 "${recipe_g[@]}" --checkpoint g1.h5 >/dev/null 2>&1
train 4 "${recipe_g[@]}" --checkpoint g4.h5 >/dev/null 2>&1
"$compare" g1.h5 g4.h5 1e-4 >/dev/null && ok "AdamW + global_clipnorm: 1 and 4 ranks agree" || bad "adamw 1 vs 4"
"$compare" n1.h5 g1.h5 1e-3 >/dev/null 2>&1 && bad "the recipes change nothing" || ok "the recipes change the weights"

"$trainer" info n2.h5 >info.txt 2>&1
grep -q 'Optimizer:  lars, lr 2 (momentum 0.9, weight_decay 0.0001, eta 0.001), clipnorm 1' info.txt \
  && grep -q -- '--label-smoothing 0.1' info.txt && ok "info shows the recipe" || bad "info: $(cat info.txt)"
h5dump -w 0 -a /training_config n2.h5 2>/dev/null | grep -q '"label_smoothing": 0.1' \
  && h5dump -w 0 -a /training_config g1.h5 2>/dev/null | grep -q '"class_name": "AdamW"' \
  && ok "training_config: AdamW, label_smoothing" || bad "training_config"
h5dump -w 0 -a /model_config n2.h5 2>/dev/null | grep -q '"kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.001}}' \
  && ok "model_config: Keras 2's L1L2" || bad "model_config regularizer"

# The penalty is in the loss: with --lr 0 the weights stay put, so the regularized model's training and
# validation losses exceed the plain model's by the same penalty (Keras reports it in both).
lr0=(--epochs 1 --batch-size 32 --optimizer sgd --lr 0 --val-split 0.25)
train 1 --model "$data/small.model" "${lr0[@]}" --metrics plain.csv >/dev/null 2>&1
train 1 --model reg.model "${lr0[@]}" --metrics reg.csv >/dev/null 2>&1
paste -d, <(tail -1 plain.csv) <(tail -1 reg.csv) | awk -F, '{ d = $12 - $3; v = $14 - $5;
  exit !(d > 1e-4 && (d - v) ^ 2 < 1e-10) }' \
  && ok "the penalty is added to loss and val_loss alike" || bad "penalty: $(cat plain.csv reg.csv)"

# --accumulate 4 of batch 10 = batch 40, up to summation order (no BatchNormalization in small.model);
# 384 samples: 9 full updates and one of 24.
base=(--model "$data/small.model" --epochs 2 --optimizer adam --seed 5)
train 1 "${base[@]}" --batch-size 40 --checkpoint b40.h5 >/dev/null 2>&1
train 2 "${base[@]}" --batch-size 10 --accumulate 4 --checkpoint a4.h5 >acc.txt 2>&1
"$compare" b40.h5 a4.h5 1e-5 >/dev/null && ok "--batch-size 10 --accumulate 4 on 2 ranks = --batch-size 40" \
  || bad "accumulate: $("$compare" b40.h5 a4.h5 1e-5 2>&1) $(cat acc.txt)"
"$trainer" info a4.h5 | grep -q 'Trained:    2 epochs, 20 steps' \
  && h5dump -w 0 -a /training_config a4.h5 2>/dev/null | grep -q '"gradient_accumulation_steps": 4' \
  && ok "steps count optimizer steps; training_config has gradient_accumulation_steps" \
  || bad "accumulate steps: $("$trainer" info a4.h5)"
printf "Input(shape=(12, 12, 1))\nConv2D(4, 3)\nBatchNormalization()\nFlatten()\nDense(4, activation='softmax')\n" >bn.model
expect 2 "--accumulate 4: not supported with BatchNormalization" "--accumulate with BatchNormalization: exit 2" \
  train 2 --model bn.model --accumulate 4

# Resume: stopped mid-epoch and resumed, bit-identical on 2 ranks, within 1e-4 on 1 rank.
full=(--model reg.model --epochs 2 --batch-size 8 --accumulate 2 --optimizer lars --lr 1 --weight-decay 1e-4
      --global-clipnorm 5 --label-smoothing 0.2 --seed 7)
train 2 "${full[@]}" --checkpoint straight.h5 >/dev/null 2>&1
train 2 "${full[@]}" --max-steps 17 --checkpoint part.h5 >/dev/null 2>&1
cp part.h5 part1.h5
# As a requeued Slurm job resumes: its whole command line again, plus --resume.
train 2 "${full[@]}" --checkpoint part.h5 --resume part.h5 >resume.txt 2>&1
"$compare" straight.h5 part.h5 0 >/dev/null && ok "the recipe resumed mid-epoch (same command line): bit-identical" \
  || bad "resume: $("$compare" straight.h5 part.h5 0 2>&1) $(cat resume.txt)"
train 1 --resume part1.h5 --epochs 2 --weight-decay 1e-4 --accumulate 2 >/dev/null 2>&1
"$compare" straight.h5 part1.h5 1e-4 >/dev/null && ok "a 2-rank checkpoint resumes on 1 rank (repeated options ok)" \
  || bad "resume on 1 rank"
for change in "--weight-decay 1e-3" "--clipnorm 1" "--global-clipnorm 4" "--label-smoothing 0" "--accumulate 4" \
              "--lars-eta 0.01"; do
  expect 2 "part.h5: trained with ${change%% *} .*a resumed run keeps its recipe" "resume with $change: exit 2" \
    train 2 --resume part.h5 --epochs 3 $change
done

# Bad values: one line, exit 2, on every rank.
for bad_opt in "--weight-decay -1" "--clipnorm nan" "--global-clipnorm 0" "--label-smoothing 1.5" "--accumulate 0" \
               "--lars-eta inf"; do
  expect 2 "${bad_opt%% *}: '.*' is not" "$bad_opt: exit 2" train 2 --model reg.model $bad_opt
done
expect 2 "exclude each other" "--clipnorm with --global-clipnorm: exit 2" \
  train 2 --model reg.model --clipnorm 1 --global-clipnorm 1
expect 2 "--lars-eta applies to --optimizer lars only" "--lars-eta with adam: exit 2" \
  train 2 --model reg.model --optimizer adam --lars-eta 0.01
expect 2 "--nesterov applies to --optimizer sgd only" "--nesterov with lars: exit 2" \
  train 2 --model reg.model --optimizer lars --nesterov
printf "Input(shape=(12, 12, 1))\nConv2D(4, 3, kernel_regularizer=l2(-1))\nFlatten()\nDense(4, activation='softmax')\n" \
  >neg.model
expect 3 "neg.model:2:36: Conv2D: l2: 'l2' must be a finite number >= 0" "a negative regularizer: exit 3" \
  train 2 --model neg.model

summary

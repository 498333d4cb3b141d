#!/usr/bin/env bash
# test_recipes.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: learning-rate schedules and callbacks end to end.
# Resumed in the middle of a warmup, at a step schedule's boundary and after a plateau reduction: bit-identical
# to a run never stopped on 2 ranks, and the same learning rates when continued on 1; EarlyStopping stops at
# the right epoch and restores the best weights; bad options stop every rank with one line and exit 2.
# Prints "N passed, N failed" and exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_dataset=$2 compare=$3 data=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# train N ARGS...: on N ranks, one thread each, small.model's data.
train() { local n=$1; shift; mpi "$n" "$trainer" train --data train.h5 --val test.h5 --threads 1 --quiet "$@"; }
# expect CODE PATTERN DESCRIPTION CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect() {
  local code=$1 pattern=$2 what=$3; shift 3
  "$@" >out.txt 2>err.txt; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -E -- "$pattern" err.txt; then ok "$what"
  else bad "$what (exit $rc, stderr: $(head -c 300 err.txt))"; fi
}
# lr column (7th) of a metrics file, one line.
lrs() { tail -n +2 "$1" | cut -d, -f7 | tr '\n' ' '; }

# 768 samples / 16 = 48 steps per epoch.
"$make_dataset" train.h5 768 12 4 1 >/dev/null && "$make_dataset" test.h5 256 12 4 2 >/dev/null \
  || { echo "cannot make data"; exit 1; }
model="$data/small.model"

# resumed NAME STOP ARGS...: the training ARGS on 2 ranks never stopped (NAME.h5, NAME.csv), and stopped after STOP
# steps then resumed on 2 ranks (NAME2.h5) and on 1 (NAME1.h5), with no option but --resume.
resumed() {
  local name=$1 stop=$2; shift 2
  train 2 --model "$model" --seed 5 --checkpoint "$name.h5" --metrics "$name.csv" "$@" >/dev/null 2>&1 \
    || bad "$name: the straight run: $(train 2 --model "$model" "$@" 2>&1 | tail -2)"
  train 2 --model "$model" --seed 5 --checkpoint "${name}2.h5" --metrics "${name}2.csv" --max-steps "$stop" "$@" \
    >/dev/null 2>&1
  cp "${name}2.h5" "${name}1.h5" && cp "${name}2.csv" "${name}1.csv"
  train 2 --resume "${name}2.h5" --metrics "${name}2.csv" >"${name}2.txt" 2>&1
  train 1 --resume "${name}1.h5" --metrics "${name}1.csv" >"${name}1.txt" 2>&1
  "$compare" "$name.h5" "${name}2.h5" 0 >/dev/null && ok "$name: stopped at step $stop, resumed on 2 ranks: bit-identical" \
    || bad "$name: resumed on 2 ranks: $(cat "${name}2.txt")"
  cmp -s <(cut -d, -f1-7 "$name.csv") <(cut -d, -f1-7 "${name}2.csv") \
    && ok "$name: the same metrics rows and learning rates" || bad "$name: metrics $(cat "$name.csv" "${name}2.csv")"
  "$compare" "$name.h5" "${name}1.h5" 1e-4 >/dev/null && [ "$(lrs "$name.csv")" = "$(lrs "${name}1.csv")" ] \
    && ok "$name: continued on 1 rank: the same learning rates, weights within 1e-4" \
    || bad "$name: continued on 1 rank: $(cat "${name}1.txt") $(lrs "$name.csv") / $(lrs "${name}1.csv")"
}

# A cosine schedule after a warmup of 1.5 epochs (72 steps): stopped at step 50, within the warmup.
resumed warm 50 --epochs 3 --batch-size 16 --optimizer adam --lr 0.002 --lr-schedule cosine --min-lr 1e-4 \
  --warmup-epochs 1.5
# The epoch-end lr: epoch 1 is in the warmup (step 47: 0.002 * 47/72), epoch 3 ends near min_lr.
awk -F, 'NR == 2 { exit !($7 > 0.001305 && $7 < 0.001306) }' warm.csv && ok "warmup: epoch 1 ends at 0.002*47/72" \
  || bad "warmup lr: $(cat warm.csv)"
# A step schedule: epochs 1 and 2 (steps 48 and 96); Keras's PiecewiseConstantDecay keeps the lr through step 48.
resumed step48 48 --epochs 3 --batch-size 16 --optimizer sgd --momentum 0.9 --lr 0.05 --lr-schedule step \
  --step-epochs 1,2 --step-factor 0.5
resumed step49 49 --epochs 3 --batch-size 16 --optimizer sgd --momentum 0.9 --lr 0.05 --lr-schedule step \
  --step-epochs 1,2 --step-factor 0.5
[ "$(lrs step48.csv)" = "0.05 0.025 0.0125 " ] && ok "step: 0.05, 0.025, 0.0125 at the epochs' last steps" \
  || bad "step lrs: $(lrs step48.csv)"
# ReduceLROnPlateau that reduces at every epoch's end from the second (min_delta larger than any loss):
# stopped at step 110, within epoch 3, after the reduction at the end of epoch 2.
resumed plateau 110 --epochs 4 --batch-size 16 --optimizer rmsprop --lr 0.001 \
  --callback "ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=1, min_delta=10)"
[ "$(lrs plateau.csv)" = "0.001 0.001 0.0005 0.00025 " ] && ok "plateau: halved after epochs 2 and 3" \
  || bad "plateau lrs: $(lrs plateau.csv)"
"$trainer" info plateau2.h5 >info.txt 2>&1 && grep -q "lr factor 0.125" info.txt && grep -q "^Callback:   ReduceLROnPlateau(monitor='val_loss', factor=0.5" info.txt \
  && ok "info shows the callback and its state" || bad "info: $(cat info.txt)"
# The same plateau composes with a schedule: the factor multiplies the scheduled lr.
resumed cosplateau 70 --epochs 3 --batch-size 16 --optimizer sgd --lr 0.05 --lr-schedule exponential \
  --decay-rate 0.5 --callback "ReduceLROnPlateau(monitor='loss', factor=0.1, patience=1, min_delta=10)"
awk -F, 'NR == 3 { a = $7 } NR == 4 { b = $7 } END { exit !(a > 0.012681 && a < 0.012683 && b > 0.00063409 && b < 0.00063411) }' \
  cosplateau.csv \
  && ok "plateau x exponential: 0.05*0.5^(95/48), then 0.05*0.5^(143/48)*0.1" || bad "plateau x schedule: $(cat cosplateau.csv)"

# EarlyStopping: min_delta larger than any loss, patience 2: the best is epoch 1, training stops after epoch 3
# and ends with epoch 1's weights (those of a run of one epoch).
es=(--batch-size 16 --optimizer adam --seed 5
    --callback "EarlyStopping(monitor='val_loss', min_delta=10, patience=2, restore_best_weights=True, verbose=1)")
train 2 --model "$model" --epochs 1 --batch-size 16 --optimizer adam --seed 5 --checkpoint one.h5 >/dev/null 2>&1
mpi 2 "$trainer" train --data train.h5 --val test.h5 --threads 1 --model "$model" --epochs 10 "${es[@]}" \
  --checkpoint es.h5 --metrics es.csv >es.txt 2>&1
[ "$(tail -n +2 es.csv | wc -l)" -eq 3 ] && grep -q "Epoch 3: early stopping" es.txt \
  && ok "EarlyStopping stops after epoch 3" || bad "EarlyStopping: $(cat es.txt)"
grep -q "^Epoch 1/10 - .* - lr: 0.001 - " es.txt && ok "the epoch line shows the lr" || bad "epoch line: $(head -30 es.txt)"
grep -q "restored the weights of epoch 1" es.txt && "$compare" one.h5 es.h5 0 >/dev/null \
  && ok "EarlyStopping restores the best (epoch 1) weights" || bad "restore_best_weights: $(tail -3 es.txt)"
# Stopped in epoch 3 and resumed (the best weights travel in the checkpoint), on 1 rank.
train 2 --model "$model" --epochs 10 "${es[@]}" --checkpoint esp.h5 --max-steps 120 >/dev/null 2>&1
train 1 --resume esp.h5 >esp.txt 2>&1
"$compare" one.h5 esp.h5 0 >/dev/null && ok "EarlyStopping resumed in epoch 3: stops, restores epoch 1's weights" \
  || bad "EarlyStopping resumed: $(cat esp.txt)"
mpi 1 "$trainer" train --data train.h5 --val test.h5 --resume es.h5 >esd.txt 2>&1
grep -q "nothing to do" esd.txt && "$compare" one.h5 es.h5 0 >/dev/null && ok "a stopped run resumes to nothing" \
  || bad "resume after EarlyStopping: $(cat esd.txt)"

# Bad input: one line with the reason, exit 2, every rank.
base=(--model "$model" --data train.h5 --epochs 3 --batch-size 16)
expect 2 "^trainer: error: --callback:1:31: EarlyStopping: unknown argument 'patiense'" "a misspelt argument: column" \
  "$trainer" train "${base[@]}" --callback "EarlyStopping(monitor='loss', patiense=3)"
expect 2 "^trainer: error: --callback:2:1: unknown callback 'ModelCheckpoint'" "the second --callback: line 2" \
  "$trainer" train "${base[@]}" --callback "EarlyStopping()" --callback "ModelCheckpoint()" --val test.h5
expect 2 "^trainer: error: --callback:1:" "a malformed call" "$trainer" train "${base[@]}" --callback "EarlyStopping(patience=2"
expect 2 "a val_ monitor needs validation data" "val_loss without validation data" \
  "$trainer" train "${base[@]}" --callback "ReduceLROnPlateau(factor=0.5)"
expect 2 "longer than the training" "a warmup longer than the training" \
  "$trainer" train "${base[@]}" --warmup-epochs 3.5
expect 2 "--warmup-epochs: '-1' is not a number" "a negative warmup" "$trainer" train "${base[@]}" --warmup-epochs -1
expect 2 "--min-lr: 'nan' is not a number" "a non-finite min-lr" "$trainer" train "${base[@]}" --lr-schedule cosine --min-lr nan
expect 2 "unknown schedule 'linear'" "an unknown schedule" "$trainer" train "${base[@]}" --lr-schedule linear
expect 2 "needs --step-epochs" "step without boundaries" "$trainer" train "${base[@]}" --lr-schedule step
expect 2 "--step-epochs: .* must increase" "decreasing boundaries" "$trainer" train "${base[@]}" --lr-schedule step --step-epochs 2,1
expect 2 "--decay-rate applies to --lr-schedule exponential only" "an option of another schedule" \
  "$trainer" train "${base[@]}" --lr-schedule cosine --decay-rate 0.5
expect 2 "factor >= 1.0" "a plateau factor of 2" "$trainer" train "${base[@]}" --callback "ReduceLROnPlateau(monitor='loss', factor=2)"
expect 2 "warm2.h5: trained with the schedule 'cosine from 0.002 to 0.0001, after a linear warmup of 1.5 epochs', not" \
  "resume with another schedule" "$trainer" train --data train.h5 --resume warm2.h5 --lr-schedule step --step-epochs 1
expect 2 "warm2.h5: trained with the schedule" "resume with another warmup" \
  "$trainer" train --data train.h5 --resume warm2.h5 --warmup-epochs 1
expect 2 "warm2.h5: trained with the schedule" "resume with another --lr under a schedule" \
  "$trainer" train --data train.h5 --resume warm2.h5 --lr 0.01
expect 2 "warm2.h5: its cosine schedule spans 3 epochs" "resume a cosine schedule with other --epochs" \
  "$trainer" train --data train.h5 --resume warm2.h5 --epochs 5
expect 2 "plateau2.h5: trained with the callbacks" "resume with other callbacks" \
  "$trainer" train --data train.h5 --val test.h5 --resume plateau2.h5 --callback "EarlyStopping(monitor='loss')"
expect 2 "plateau2.h5: its callbacks watch a val_ metric" "resume a val_ callback without validation data" \
  "$trainer" train --data train.h5 --resume plateau2.h5 --epochs 5
# The same options again (as a requeued batch job passes them) are accepted, without --lr-schedule too.
"$trainer" train --data train.h5 --resume step49.h5 --lr-schedule step --step-epochs 1,2 --step-factor 0.5 --lr 0.05 \
  --epochs 3 >same.txt 2>&1 && "$trainer" train --data train.h5 --resume step49.h5 --step-epochs 1,2 >>same.txt 2>&1 \
  && grep -q "nothing to do" same.txt && ok "resume with the same schedule options" || bad "same options: $(cat same.txt)"
# Every rank stops, the message shows once.
mpi 2 "$trainer" train "${base[@]}" --callback "EarlyStopping(patience=-1)" >out.txt 2>err.txt; rc=$?
[ "$rc" -eq 2 ] && [ "$(grep -c 'trainer: error: --callback:1:' err.txt)" -eq 1 ] \
  && ok "2 ranks: exit 2, one message" || bad "2 ranks bad callback: exit $rc $(cat err.txt)"

summary

#!/usr/bin/env bash
# test_augment_e2e.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: a model with augmentation layers as a user
# trains it: the same weights on 1 and 2 ranks (summation order aside), a bit-identical resume across an epoch
# boundary, draws that change with the layer's seed, eval/info, and the shipped recipes' model files. Prints
# "N passed, N failed"; exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_dataset=$2 compare=$3 data=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
train() { local n=$1; shift; mpi "$n" "$trainer" train --data train.h5 --threads 1 --quiet --batch-size 16 "$@"; }

"$make_dataset" train.h5 768 12 4 1 >/dev/null && "$make_dataset" test.h5 256 12 4 2 >/dev/null \
  || { echo "cannot make data"; exit 1; }
model=$data/augment.model

# 768 samples / 16 = 48 steps per epoch: 100 steps cross two epoch boundaries. SGD: RMSprop and Adam divide by
# the root of a second moment, which for a weight that rarely gets a gradient is so small that a rounding
# difference of 1e-7 in its gradient moves it by 1e-4 (measured with this model and seed 5: 1 vs 2 ranks agree to
# 2e-7 for 38 steps, then 3e-4 after step 39); SGD keeps the summation-order differences at their size.
for n in 1 2; do
  train "$n" --model "$model" --epochs 3 --seed 9 --max-steps 100 --optimizer sgd --checkpoint "np$n.h5" \
    >"np$n.txt" 2>&1 || bad "train on $n ranks: $(tail -3 "np$n.txt")"
done
"$compare" np1.h5 np2.h5 1e-4 && ok "augmented training: 1 and 2 ranks agree" || bad "1 and 2 ranks agree"

# Stopped at step 60 (mid-epoch 2) and resumed to 100: the same bits as the straight run.
train 2 --model "$model" --epochs 3 --seed 9 --max-steps 60 --optimizer sgd --checkpoint part.h5 >/dev/null 2>&1
cp part.h5 part1.h5
train 2 --resume part.h5 --epochs 3 --max-steps 100 >resume.txt 2>&1
"$compare" np2.h5 part.h5 0 >/dev/null && ok "augmented training: stopped at 60, resumed to 100: bit-identical" \
  || bad "bit-identical resume: $(cat resume.txt)"
train 1 --resume part1.h5 --epochs 3 --max-steps 100 >/dev/null 2>&1
"$compare" np2.h5 part1.h5 1e-4 >/dev/null && ok "2-rank checkpoint resumes on 1 rank" || bad "resume on 1 rank"

# The layers act: another seed= for the flip gives other weights.
sed "s/RandomFlip('horizontal')/RandomFlip('horizontal', seed=5)/" "$model" >seeded.model
train 2 --model seeded.model --epochs 3 --seed 9 --max-steps 100 --optimizer sgd --checkpoint seeded.h5 \
  >/dev/null 2>&1
"$compare" np2.h5 seeded.h5 1e-3 >/dev/null 2>&1 && bad "the flip's seed changes nothing" \
  || ok "the flip's seed changes the training"

"$trainer" info np2.h5 >info.txt 2>&1 && grep -Eq '^random_flip_1 \(RandomFlip\) +\(None, 12, 12, 1\) +0$' info.txt \
  && grep -Eq '^random_translation_1 \(RandomTranslation\) +\(None, 12, 12, 1\) +0$' info.txt \
  && ok "info shows the augmentation layers with 0 parameters" || bad "info: $(cat info.txt)"
mpi 2 "$trainer" eval --checkpoint np2.h5 --data test.h5 >eval.txt 2>&1 \
  && grep -Eq '^loss: [0-9.]+ - accuracy: [0-9.]+$' eval.txt && ok "eval of an augmented model" \
  || bad "eval: $(cat eval.txt)"

# Test-time augmentation: the same on 1 and 2 ranks; predict takes it too; another value is a usage error.
json() { sed -n 's/.*"loss": \([0-9.e-]*\), "accuracy": \([0-9.e-]*\).*/\1 \2/p' "$1"; }
"$trainer" eval --checkpoint np2.h5 --data test.h5 --tta flip --json >tta1.txt 2>&1
mpi 2 "$trainer" eval --checkpoint np2.h5 --data test.h5 --tta flip --json >tta2.txt 2>&1
"$trainer" eval --checkpoint np2.h5 --data test.h5 --json >plain.txt 2>&1
[ -n "$(json tta1.txt)" ] && [ "$(json tta1.txt)" = "$(json tta2.txt)" ] && [ "$(json tta1.txt)" != "$(json plain.txt)" ] \
  && ok "eval --tta flip: 1 and 2 ranks agree ($(json tta1.txt)), and differ from plain eval ($(json plain.txt))" \
  || bad "eval --tta flip: $(cat tta1.txt tta2.txt plain.txt)"
mpi 2 "$trainer" predict --checkpoint np2.h5 --data test.h5 --tta flip -o tta.h5 >/dev/null 2>&1 && [ -s tta.h5 ] \
  && ok "predict --tta flip" || bad "predict --tta flip"
"$trainer" eval --checkpoint np2.h5 --data test.h5 --tta rotate >/dev/null 2>err.txt
[ $? -eq 2 ] && grep -q "unknown augmentation 'rotate'" err.txt && ok "--tta rotate: exit 2" || bad "--tta rotate"

# The shipped recipes' model files (jobs/recipes/*.model) build and take a training step on 28x28x1 images.
recipes=$(cd "$(dirname "$0")/../jobs/recipes" && pwd)
"$make_dataset" fm.h5 32 28 8 3 1 >/dev/null || bad "cannot make 28x28x1 data" # 8 classes: labels the 10 outputs take
for f in "$recipes"/*.model; do
  "$trainer" train --data fm.h5 --model "$f" --epochs 1 --batch-size 16 --max-steps 2 --threads 1 --quiet \
    --checkpoint "recipe.h5" >recipe.txt 2>&1 && [ -s recipe.h5 ] \
    && ok "recipe model $(basename "$f") trains" || bad "recipe model $f: $(tail -3 recipe.txt)"
  rm -f recipe.h5
done

summary

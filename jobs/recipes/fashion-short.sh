#!/usr/bin/env bash
# fashion-short.sh: issue #15's time-to-0.93 recipe (goal: 0.93 in <= 3 minutes on 2 cores): the fashion-resnet
# preset (ResNet v1 depth 14, BatchNormalization, he_normal, l2(1e-4)) behind horizontal flips alone
# (fashion-resnet-flip.model); SGD with Nesterov momentum 0.9 at batch 128, a one-epoch warmup to lr 0.1 and a
# cosine decay to 0 over 7 epochs (about 160 s of training on 2 quiet cores), label smoothing 0.1; flip
# test-time augmentation at evaluation. fashion-best.sh is the same network trained longer, behind shifts too.
# Runs from a clean clone like jobs/quickstart.sh. Environment: EPOCHS (default 7), RANKS, OUT, SEED, TTA,
# THREADS, TRAIN_ARGS; PEER=1 (or `peer.sh fashion-short`) runs the PyTorch peer on the same model and recipe
# (see common.sh). Ends with the `time to P: S s` lines and `test accuracy: X`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
epochs=${EPOCHS:-7}

recipe_setup
recipe_run fashion-short "$here/fashion-resnet-flip.model" --epochs "$epochs" --batch-size 128 \
  --optimizer sgd --momentum 0.9 --nesterov --lr 0.1 --lr-schedule cosine --min-lr 0 \
  --warmup-epochs "$(recipe_warmup 1 "$epochs")" --label-smoothing 0.1

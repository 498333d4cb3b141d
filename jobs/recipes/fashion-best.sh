#!/usr/bin/env bash
# fashion-best.sh: issue #15's best recipe (>= 0.94 required, 0.95 the aim, in at most 30 minutes of training on
# 2 ranks x 1 thread): the fashion-resnet preset (ResNet v1 depth 14, BatchNormalization, he_normal, l2(1e-4))
# behind horizontal flips and shifts of up to 2 pixels (fashion-resnet-aug.model); SGD with Nesterov momentum 0.9
# at batch 128, a two-epoch warmup to lr 0.1 and a cosine decay, label smoothing 0.1; flip test-time augmentation
# at evaluation. Runs from a clean clone like jobs/quickstart.sh. Environment: EPOCHS (default 25, about 25
# minutes on 2 quiet cores), RANKS, OUT, SEED, TTA, THREADS, TRAIN_ARGS; PEER=1 (or `peer.sh fashion-best`)
# runs the PyTorch peer on the same model and recipe (see common.sh). Ends with the `time to P: S s` lines and
# `test accuracy: X`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
epochs=${EPOCHS:-25}

recipe_setup
recipe_run fashion-best "$here/fashion-resnet-aug.model" --epochs "$epochs" --batch-size 128 \
  --optimizer sgd --momentum 0.9 --nesterov --lr 0.1 --lr-schedule cosine --min-lr 1e-4 \
  --warmup-epochs "$(recipe_warmup 2 "$epochs")" --label-smoothing 0.1

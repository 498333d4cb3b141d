#!/usr/bin/env bash
# fashion-cnn.sh: issue #15's first recipe: the seed's fashion-cnn layers, unchanged, behind horizontal flips
# (fashion-cnn-aug.model, which says why not shifts too), Adam at batch 128 with a one-epoch warmup to lr 2e-3 and
# a cosine decay, label smoothing 0.1; flip test-time augmentation at evaluation. Target: >= 0.93 test accuracy.
# Runs from a clean clone like jobs/quickstart.sh. Environment: EPOCHS (default 40), RANKS, OUT, SEED, TTA,
# THREADS, TRAIN_ARGS; PEER=1 (or `peer.sh fashion-cnn`) runs the PyTorch peer on the same model and recipe
# (see common.sh). Ends with the `time to P: S s` lines and `test accuracy: X`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
epochs=${EPOCHS:-40}

recipe_setup
recipe_run fashion-cnn "$here/fashion-cnn-aug.model" --epochs "$epochs" --batch-size 128 \
  --optimizer adam --lr 2e-3 --lr-schedule cosine --min-lr 1e-5 --warmup-epochs "$(recipe_warmup 1 "$epochs")" \
  --label-smoothing 0.1

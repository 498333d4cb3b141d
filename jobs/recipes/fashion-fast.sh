#!/usr/bin/env bash
# fashion-fast.sh: issue #15's time-to-0.91 recipe: the fashion-cnn preset as it is (no augmentation: in 10 epochs
# the network has not yet seen enough to need it), Adam at batch 128 with a one-epoch warmup to lr 2e-3 and a
# cosine decay to 1e-5 over 10 epochs (about 20 s of training on 2 quiet cores); evaluated without test-time
# augmentation (a model never trained on mirrored images is not helped by them). Goal: 0.91 in <= 20 s. Runs
# from a clean clone like jobs/quickstart.sh. Environment: EPOCHS (default 10), RANKS, OUT, SEED, TTA (default
# none here), THREADS, TRAIN_ARGS; PEER=1 (or `peer.sh fashion-fast`) runs the PyTorch peer on the same model and
# recipe (see common.sh). Ends with the `time to P: S s` lines and `test accuracy: X`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${TTA=}"
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
epochs=${EPOCHS:-10}

recipe_setup
recipe_run fashion-fast fashion-cnn --epochs "$epochs" --batch-size 128 \
  --optimizer adam --lr 2e-3 --lr-schedule cosine --min-lr 1e-5 --warmup-epochs "$(recipe_warmup 1 "$epochs")"

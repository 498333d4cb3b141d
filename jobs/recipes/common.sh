# common.sh: what the recipe scripts share (sourced, not run): settings from the environment, dependencies,
# build, the Fashion-MNIST import, training with the metrics CSV, evaluation and the time-to-accuracy lines.
# Environment: RANKS (default 2), OUT (default ./recipes), SEED (default 1), EPOCHS (the recipe's default),
# THREADS (threads per rank, default 1), TTA (eval's --tta, default flip; empty for none), TRAIN_ARGS (more
# `trainer train` options, e.g. --max-steps). PEER=1 runs the PyTorch peer on the same model and recipe instead
# (recipe_peer below), with PEER_DDP and PEER_ARGS.
# shellcheck shell=bash

recipe_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ranks=${RANKS:-2}
seed=${SEED:-1}
out=${OUT:-$PWD/recipes}
tta=${TTA-flip}
# The accuracies of issue #15's goals, in the order the lines are printed.
recipe_thresholds=(0.91 0.93 0.94 0.95)

# Installs what is missing, builds, imports Fashion-MNIST into $out; sets trainer, train_h5, test_h5 and mpi.
recipe_setup() {
  "$recipe_top/jobs/install-deps.sh" --data
  trainer=$("$recipe_top/jobs/build.sh")
  mkdir -p "$out"
  local src=/usr/share/datasets/fashion-mnist
  train_h5=$out/fashion-train.h5
  test_h5=$out/fashion-test.h5
  [ -f "$train_h5" ] ||
    "$trainer" import idx --images $src/train-images-idx3-ubyte.gz --labels $src/train-labels-idx1-ubyte.gz \
      -o "$train_h5"
  [ -f "$test_h5" ] ||
    "$trainer" import idx --images $src/t10k-images-idx3-ubyte.gz --labels $src/t10k-labels-idx1-ubyte.gz -o "$test_h5"
  mpi=(mpirun -np "$ranks")
  if [ "$(id -u)" -eq 0 ]; then mpi+=(--allow-run-as-root); fi
  if [ "$ranks" -gt "$(nproc)" ]; then mpi+=(--oversubscribe); fi
}

# recipe_warmup W E: the warmup W, or E/5 when the run is too short for it (a warmup must end before training
# does), so that a shortened smoke run keeps the recipe's shape.
recipe_warmup() {
  awk -v w="$1" -v e="$2" 'BEGIN { print (w < e ? w : e / 5) }'
}

# recipe_train NAME TRAIN-OPTIONS...: trains into $out/NAME.h5 with the 10,000 test images as validation and a
# fresh $out/NAME-metrics.csv (a resumed run would append to an old one), THREADS threads per rank.
recipe_train() {
  local name=$1
  shift
  rm -f "$out/$name-metrics.csv"
  # shellcheck disable=SC2086 # TRAIN_ARGS is a list of options
  TRAINER_PROGRESS=lines "${mpi[@]}" "$trainer" train --data "$train_h5" --val "$test_h5" --threads "${THREADS:-1}" \
    --seed "$seed" --checkpoint "$out/$name.h5" --metrics "$out/$name-metrics.csv" "$@" ${TRAIN_ARGS:-} |
    tee "$out/$name-train.txt"
}

# recipe_time_to CSV: `time to P: S s` for each threshold P: the training time (the metrics' wall_s is each epoch's
# training alone, validation and checkpoint writing excluded, so the rows are summed) up to the end of the first
# epoch whose val_acc reaches P; `never` when none does.
recipe_time_to() {
  awk -F, -v list="${recipe_thresholds[*]}" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; n = split(list, p, " "); next }
    { total += $col["wall_s"]
      for (k = 1; k <= n; k++) if (!(k in at) && $col["val_acc"] + 0 >= p[k] + 0) at[k] = total }
    END { for (k = 1; k <= n; k++)
            if (k in at) printf "time to %s: %.1f s\n", p[k], at[k]; else printf "time to %s: never\n", p[k] }' "$1"
}

# recipe_finish NAME: evaluates $out/NAME.h5 on the test images (with --tta $tta unless TTA is empty), then prints
# the time-to lines and, last, `test accuracy: X`.
recipe_finish() {
  local name=$1
  local eval_args=(eval --checkpoint "$out/$name.h5" --data "$test_h5")
  if [ -n "$tta" ]; then eval_args+=(--tta "$tta"); fi
  "${mpi[@]}" "$trainer" "${eval_args[@]}" | tee "$out/$name-eval.txt"
  local acc
  acc=$(sed -n 's/^loss: [0-9.]* - accuracy: \([0-9.]*\)$/\1/p' "$out/$name-eval.txt")
  recipe_time_to "$out/$name-metrics.csv"
  echo "test accuracy: $acc"
}

# recipe_peer NAME MODEL OPTIONS...: the PyTorch peer (../shared/peers, or $PEER_DIR) on the same model and recipe:
# MODEL goes to it as a Keras model_config (a one-step checkpoint of MODEL: the peer builds the model from the
# config with Keras's initializers, augmentation layers included, and applies them itself in training), OPTIONS
# unchanged (the peer takes the trainer's names for the recipes' options). One process with RANKS threads, or
# with PEER_DDP=1 RANKS processes of THREADS threads (gloo; BatchNormalization then uses each rank's batch);
# PEER_ARGS adds peer options (e.g. --train-limit 6000 for a smoke run). Prints the same time-to lines and the
# peer's final test accuracy (no test-time augmentation).
recipe_peer() {
  local name=$1 model=$2
  shift 2
  local peer_dir=${PEER_DIR:-$recipe_top/../shared/peers}
  local config=$out/$name-peer-model.h5
  "$trainer" train --model "$model" --data "$test_h5" --epochs 1 --max-steps 1 --batch-size 32 --threads 1 \
    --checkpoint "$config" --quiet
  local par=(--threads "$ranks")
  if [ -n "${PEER_DDP:-}" ]; then par=(--ddp --nproc "$ranks" --threads "${THREADS:-1}"); fi
  # shellcheck disable=SC2086 # PEER_ARGS is a list of options
  "$peer_dir/run-peer.sh" --keras-model "$config" --data "h5:$train_h5" --test "h5:$test_h5" --seed "$seed" \
    --acc-thresholds "$(IFS=,; echo "${recipe_thresholds[*]}")" "${par[@]}" "$@" ${PEER_ARGS:-} |
    tee "$out/$name-peer.txt"
  sed -n 's/^time_to_acc_\([0-9.]*\)=not_reached.*/time to \1: never/p
          s/^time_to_acc_\([0-9.]*\)=\([0-9.]*\) .*/\1 \2/p' "$out/$name-peer.txt" |
    awk '/never/ { print; next } { printf "time to %s: %.1f s\n", $1, $2 }'
  echo "test accuracy: $(sed -n 's/^final_test_acc=\([0-9.]*\) .*/\1/p' "$out/$name-peer.txt")"
}

# recipe_run NAME MODEL OPTIONS...: the recipe: trains MODEL with OPTIONS and evaluates it, or hands both to the
# peer when PEER is set.
recipe_run() {
  local name=$1 model=$2
  shift 2
  if [ -n "${PEER:-}" ]; then
    recipe_peer "$name" "$model" "$@"
  else
    recipe_train "$name" --model "$model" "$@"
    recipe_finish "$name"
  fi
}

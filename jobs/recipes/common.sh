# common.sh: what the recipe scripts share (sourced, not run): settings from the environment, dependencies,
# build, the Fashion-MNIST import, training with the metrics CSV, evaluation and the time-to-accuracy lines.
# Environment: RANKS (default 2), OUT (default ./recipes), SEED (default 1), EPOCHS (the recipe's default),
# THREADS (threads per rank, default 1), TTA (eval's --tta, default flip; empty for none), TRAIN_ARGS (more
# `trainer train` options, e.g. --max-steps).
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
    "$trainer" import idx --images $src/train-images-idx3-ubyte.gz --labels $src/train-labels-idx1-ubyte.gz -o "$train_h5"
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
    --seed "$seed" --checkpoint "$out/$name.h5" --metrics "$out/$name-metrics.csv" "$@" ${TRAIN_ARGS:-} | tee "$out/$name-train.txt"
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

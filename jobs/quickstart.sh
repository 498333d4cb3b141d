#!/usr/bin/env bash
# quickstart.sh: from a fresh Debian 12 machine to a trained Fashion-MNIST classifier:
# installs what is missing, builds, imports Fashion-MNIST (Debian's dataset-fashion-mnist) to HDF5,
# trains fashion-cnn on 2 MPI ranks and evaluates it on the 10,000 test images.
# Environment: EPOCHS (default 3), RANKS (default 2), OUT (default ./quickstart).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
epochs=${EPOCHS:-3}
ranks=${RANKS:-2}
out=${OUT:-$PWD/quickstart}

"$top/jobs/install-deps.sh" --data
trainer=$("$top/jobs/build.sh")
mkdir -p "$out"

src=/usr/share/datasets/fashion-mnist
[ -f "$out/fashion-train.h5" ] ||
  "$trainer" import idx --images $src/train-images-idx3-ubyte.gz --labels $src/train-labels-idx1-ubyte.gz \
    -o "$out/fashion-train.h5"
[ -f "$out/fashion-test.h5" ] ||
  "$trainer" import idx --images $src/t10k-images-idx3-ubyte.gz --labels $src/t10k-labels-idx1-ubyte.gz \
    -o "$out/fashion-test.h5"

mpi=(mpirun -np "$ranks")
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
[ "$ranks" -gt "$(nproc)" ] && mpi+=(--oversubscribe)

"${mpi[@]}" "$trainer" train --model fashion-cnn --data "$out/fashion-train.h5" --val "$out/fashion-test.h5" \
  --epochs "$epochs" --batch-size 32 --optimizer adam --seed 1 --checkpoint "$out/fashion-cnn.h5" --metrics "$out/metrics.csv"
"${mpi[@]}" "$trainer" eval --checkpoint "$out/fashion-cnn.h5" --data "$out/fashion-test.h5" | tee "$out/eval.txt"
acc=$(sed -n 's/^loss: [0-9.]* - accuracy: \([0-9.]*\)$/\1/p' "$out/eval.txt")
echo "test accuracy: $acc"

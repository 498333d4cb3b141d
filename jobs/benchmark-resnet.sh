#!/usr/bin/env bash
# benchmark-resnet.sh: the graph presets against the PyTorch peer building the same graph from one of our
# checkpoints (run-peer.sh --keras-model), side by side: resnet20 (32x32x3) and fashion-resnet (28x28x1) at global
# batch 128 by default, 1 rank x 2 threads against 1 process x 2 threads (NCHW and NHWC, the faster taken each
# round), and the trainer also as 2 ranks x 1 thread (mpirun -np 2). Rounds alternate who goes first; the table
# gives medians and the median of the per-round ratios (on a shared machine absolute numbers drift from minute to
# minute, ratios of neighbouring runs much less). Then the compute time per image of one rank with one thread, the
# number BENCHMARKS.md's weak-scaling projection takes.
# Not part of ctest: timings are not tests.
#
# Environment: ROUNDS (default 3), BATCH (default 128), STEPS (timed steps per run, default 20), TRAINER (a built
# trainer; default: jobs/build.sh builds build/), PEER (default ../shared/peers/run-peer.sh). Prints a Markdown
# table on stdout; progress on stderr.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
batch=${BATCH:-128}
steps=${STEPS:-20}
peer=${PEER:-$top/../shared/peers/run-peer.sh}
trainer=${TRAINER:-$("$top/jobs/build.sh")}
[ -x "$peer" ] || { echo "benchmark-resnet.sh: no peer at $peer" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "benchmark-resnet: $*" >&2; }

# A checkpoint of each preset for the peer to build its graph from: one step on a few random images.
python3 - "$work" <<'PY'
import random, sys
random.seed(1)
for name, side, ch in (("r32", 32, 3), ("r28", 28, 1)):
    with open(f"{sys.argv[1]}/{name}.bin", "wb") as f:
        for i in range(32):
            f.write(bytes([i % 10]) + bytes(random.getrandbits(8) for _ in range(side * side * ch)))
PY
"$trainer" import cifar10 "$work/r32.bin" -o "$work/r32.h5" >/dev/null
"$trainer" train --model resnet20 --data "$work/r32.h5" --batch-size 16 --max-steps 1 --quiet \
  --checkpoint "$work/resnet20.h5"
make_dataset=$(dirname "$trainer")/../tests/make_dataset
"$make_dataset" "$work/r28.h5" 32 28 8 1 >/dev/null ||
  { echo "benchmark-resnet.sh: needs the tests' make_dataset beside the trainer's build ($make_dataset)" >&2; exit 2; }
"$trainer" train --model fashion-resnet --data "$work/r28.h5" --batch-size 16 --max-steps 1 --quiet \
  --checkpoint "$work/fashion-resnet.h5"

trainer_ips() { # MODEL [THREADS]: bench's images/s, the median of its 3 repeats
  OMP_NUM_THREADS=${2:-2} "$trainer" bench --model "$1" --batch-size "$batch" --steps "$steps" --repeats 3 \
    --no-peak >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt" >&2; exit 1; }
  sed -n 's/^images\/s: //p' "$work/bench.txt"
}
mpi=(mpirun -np 2 --bind-to none)
if [ "$(id -u)" -eq 0 ]; then mpi+=(--allow-run-as-root); fi
trainer_ips_2x1() { # MODEL: the same on 2 ranks x 1 thread (mpirun -np 2), the way the README runs 2 cores
  "${mpi[@]}" "$trainer" bench --model "$1" --batch-size "$batch" --steps "$steps" --repeats 3 --threads 1 \
    --no-peak >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt" >&2; exit 1; }
  sed -n 's/^images\/s: //p' "$work/bench.txt"
}
peer_ips() { # CHECKPOINT [--channels-last]
  local c=$1; shift
  "$peer" --keras-model "$c" --data synthetic --batch-size "$batch" --threads 2 --time-only-steps "$steps" "$@" \
    >"$work/peer.txt" 2>&1 || { cat "$work/peer.txt" >&2; exit 1; }
  sed -n 's/^throughput_img_per_s=//p' "$work/peer.txt"
}
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
fmt() { awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
if grep -q -w avx512f /proc/cpuinfo; then isa="AVX-512"; elif grep -q -w avx2 /proc/cpuinfo; then isa="AVX2"; else isa="no AVX2"; fi
echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`jobs/benchmark-resnet.sh\` (ROUNDS=$rounds, batch $batch, $steps timed steps"
echo "a run) on $cpu ($isa), $(nproc) cores."
echo
echo "| model | trainer, images/s | peer NCHW | peer NHWC | trainer / best peer, median (each round) | trainer 2 ranks x 1 thread | its ratio, median (each round) | 1 rank x 1 thread: ms per image |"
echo "|---|---:|---:|---:|---|---:|---|---:|"
for model in resnet20 fashion-resnet; do
  t=() u=() p1=() p2=() r=() r2=()
  for i in $(seq "$rounds"); do
    if [ $((i % 2)) -eq 1 ]; then
      x=$(trainer_ips "$model"); w=$(trainer_ips_2x1 "$model")
      y=$(peer_ips "$work/$model.h5"); z=$(peer_ips "$work/$model.h5" --channels-last)
    else
      y=$(peer_ips "$work/$model.h5"); z=$(peer_ips "$work/$model.h5" --channels-last)
      w=$(trainer_ips_2x1 "$model"); x=$(trainer_ips "$model")
    fi
    best=$(awk -v a="$y" -v b="$z" 'BEGIN {print (a > b ? a : b)}')
    t+=("$x") u+=("$w") p1+=("$y") p2+=("$z") r+=("$(ratio "$x" "$best")") r2+=("$(ratio "$w" "$best")")
    log "$model round $i: trainer $x (2 x 1: $w), peer NCHW $y, NHWC $z, ratio ${r[-1]} (2 x 1: ${r2[-1]})"
  done
  one=$(trainer_ips "$model" 1)
  echo "| $model | $(fmt "$(median "${t[@]}")") | $(fmt "$(median "${p1[@]}")") | $(fmt "$(median "${p2[@]}")") | **$(median "${r[@]}")** (${r[*]}) | $(fmt "$(median "${u[@]}")") | **$(median "${r2[@]}")** (${r2[*]}) | $(awk -v x="$one" 'BEGIN {printf "%.2f", 1000 / x}') |"
done

#!/usr/bin/env bash
# benchmark.sh: the trainer against the PyTorch peer on this machine, side by side, written into BENCHMARKS.md.
#
# For each row (cifar10-cnn and fashion-cnn at global batch 32 and 256) it runs, ROUNDS times and alternately,
# `trainer bench` (1 rank x 2 threads) and the peer (../shared/peers/run-peer.sh, 1 process x 2 threads, NCHW
# and NHWC), and reports medians and the median of the per-round ratios trainer / faster peer layout: on a
# shared machine absolute numbers drift from minute to minute, ratios of neighbouring runs much less. Then
# `mpirun -np 2` x 1 thread against 1 rank x 2 threads (ratio, same alternation), and the data share and peak
# memory of `trainer bench --data` on Fashion-MNIST from HDF5, held in memory and streamed. Not part of
# ctest: timings are not tests.
#
# Environment: ROUNDS (default 5), TRAINER (a built trainer; default: jobs/build.sh builds build/), PEER
# (default: ../shared/peers/run-peer.sh from the repository root, where CI has shared/), OUT (default
# BENCHMARKS.md). Only the part of OUT between the two "benchmark.sh" markers is replaced; the notes stay.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-5}
out=${OUT:-$top/BENCHMARKS.md}
peer=${PEER:-$top/../shared/peers/run-peer.sh}
trainer=${TRAINER:-$("$top/jobs/build.sh")}
fashion_dir=/usr/share/datasets/fashion-mnist
[ -x "$peer" ] || { echo "benchmark.sh: no peer at $peer" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "benchmark: $*" >&2; }

# Timed steps per run: about two seconds of work each, whatever the batch.
steps_for() { if [ "$1" -ge 256 ]; then echo 40; else echo 200; fi; }
peer_steps_for() { if [ "$1" -ge 256 ]; then echo 60; else echo 400; fi; }

# trainer_ips MODEL BATCH [LAUNCH...]: the bench's images/s (median of its 3 repeats).
trainer_ips() {
  local m=$1 b=$2; shift 2
  "$@" "$trainer" bench --model "$m" --batch-size "$b" --steps "$(steps_for "$b")" --repeats 3 --no-peak \
    >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt" >&2; exit 1; }
  sed -n 's/^images\/s: //p' "$work/bench.txt"
}

# peer_ips MODEL BATCH [--channels-last]: the peer's throughput_img_per_s.
peer_ips() {
  local m=$1 b=$2; shift 2
  "$peer" --model "$m" --data synthetic --batch-size "$b" --threads 2 --time-only-steps "$(peer_steps_for "$b")" \
    "$@" >"$work/peer.txt" 2>&1 || { cat "$work/peer.txt" >&2; exit 1; }
  sed -n 's/^throughput_img_per_s=//p' "$work/peer.txt"
}

maxof() { printf '%s\n' "$@" | sort -g | tail -1; }
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
fmt() { awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }

# ---- trainer against the peer ----
rows=""
for row in "cifar10-cnn seed 32" "cifar10-cnn seed 256" "fashion-cnn fashion 32" "fashion-cnn fashion 256"; do
  set -- $row
  model=$1 pmodel=$2 batch=$3
  t=() p1=() p2=() r=()
  for i in $(seq "$rounds"); do
    # Alternate who goes first, so a slow minute does not always fall on the same side.
    if [ $((i % 2)) -eq 1 ]; then
      x=$(trainer_ips "$model" "$batch"); y=$(peer_ips "$pmodel" "$batch"); z=$(peer_ips "$pmodel" "$batch" --channels-last)
    else
      y=$(peer_ips "$pmodel" "$batch"); z=$(peer_ips "$pmodel" "$batch" --channels-last); x=$(trainer_ips "$model" "$batch")
    fi
    best=$(awk -v a="$y" -v b="$z" 'BEGIN {print (a > b ? a : b)}')
    t+=("$x") p1+=("$y") p2+=("$z") r+=("$(ratio "$x" "$best")")
    log "$model $batch round $i: trainer $x, peer NCHW $y, NHWC $z, ratio ${r[-1]}"
  done
  rmed=$(median "${r[@]}")
  verdict=$(awk -v x="$rmed" 'BEGIN {print (x >= 2 ? "yes" : "no")}')
  # The best round of each side: what each does in the machine's quietest minute.
  tbest=$(maxof "${t[@]}") pbest=$(maxof "${p1[@]}" "${p2[@]}")
  rows+="| $model | $batch | $(fmt "$(median "${t[@]}")") | $(fmt "$(median "${p1[@]}")") | $(fmt "$(median "${p2[@]}")") | **$rmed** (${r[*]}) | $verdict | $(fmt "$tbest") / $(fmt "$pbest") = $(ratio "$tbest" "$pbest") |"$'\n'
  [ "$model $batch" = "cifar10-cnn 32" ] && cp "$work/bench.txt" "$work/profile.txt"
done

# ---- two ranks x 1 thread against one rank x 2 threads ----
np_rows=""
for row in "cifar10-cnn 32" "fashion-cnn 32" "cifar10-cnn 256"; do
  set -- $row
  r=() a=() b=()
  for i in $(seq "$rounds"); do
    x=$(trainer_ips "$1" "$2" mpirun -np 2 --bind-to core)
    y=$(trainer_ips "$1" "$2" env OMP_NUM_THREADS=2)
    a+=("$x") b+=("$y") r+=("$(ratio "$x" "$y")")
    log "$1 $2 round $i: 2x1 $x, 1x2 $y"
  done
  rmed=$(median "${r[@]}")
  abest=$(maxof "${a[@]}") bbest=$(maxof "${b[@]}")
  np_rows+="| $1 | $2 | $(fmt "$(median "${a[@]}")") | $(fmt "$(median "${b[@]}")") | **$rmed** (${r[*]}) | $(awk -v x="$rmed" 'BEGIN {print (x >= 0.95 ? "yes" : "no")}') | $(fmt "$abest") / $(fmt "$bbest") = $(ratio "$abest" "$bbest") |"$'\n'
done

# ---- the data path on real HDF5, and memory ----
data_rows=""
if [ -f "$fashion_dir/train-images-idx3-ubyte.gz" ]; then
  "$trainer" import idx --images "$fashion_dir/train-images-idx3-ubyte.gz" \
    --labels "$fashion_dir/train-labels-idx1-ubyte.gz" -o "$work/fm.h5" >/dev/null
  # The dataset held in memory (the default for one this size) and streamed from the file (as a dataset
  # too large to hold is), each launch and batch alternating the two.
  for launch in "env OMP_NUM_THREADS=2" "mpirun -np 2 --bind-to core -x TRAINER_DATA_CACHE"; do
    for batch in 32 256; do
      for cache in auto off; do
        # 600 timed steps: more than one epoch at batch 256, so the memory line covers epochs.
        TRAINER_DATA_CACHE=$cache $launch "$trainer" bench --model fashion-cnn --data "$work/fm.h5" \
          --batch-size "$batch" --steps $((batch >= 256 ? 120 : 300)) --repeats 5 --no-peak >"$work/data.txt" 2>&1
        share=$(sed -n 's/^data share: //p' "$work/data.txt")
        rss=$(sed -n "s/^peak RSS per rank (MiB): //p" "$work/data.txt" | sed "s/after warm-up: //")
        ips=$(sed -n 's/^images\/s: //p' "$work/data.txt")
        ranks=$(case "$launch" in mpirun*) echo "2 x 1" ;; *) echo "1 x 2" ;; esac)
        how=$(case "$cache" in auto) echo "held in memory" ;; *) echo "streamed, read ahead" ;; esac)
        data_rows+="| $ranks | $batch | $how | $(fmt "$ips") | $share | $rss |"$'\n'
        log "data $ranks $batch $how: share $share, rss $rss"
      done
    done
  done
else
  data_rows="| (no $fashion_dir: install dataset-fashion-mnist) | | | | | |"$'\n'
fi

# ---- BENCHMARKS.md ----
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
# The vector width decides which kernels run (oneDNN's and the trainer's own): name it.
if grep -q -w avx512f /proc/cpuinfo; then isa="AVX-512"; elif grep -q -w avx2 /proc/cpuinfo; then isa="AVX2, no AVX-512"
else isa="no AVX2"; fi
versions=$("$trainer" --version | tr '\n' ';' | sed 's/;$//; s/;/, /g')
torch=$(sed -n 's/^\(torch=[^ ]*\).*/\1/p' "$work/peer.txt" | head -1)
blas=$(sed -n 's/^blas=//p' "$work/peer.txt" | head -1)
{
  echo "<!-- benchmark.sh: begin (generated by jobs/benchmark.sh; edit the notes below the end marker) -->"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`jobs/benchmark.sh\` (ROUNDS=$rounds)."
  echo
  echo "- Machine: $cpu ($isa), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr); shared with other work, so"
  echo "  absolute numbers move from minute to minute: compare the ratios."
  echo "- Versions: $versions; peer $torch with ${blas:-OpenBLAS} (run-peer.sh)."
  echo "- Method: training throughput, forward + backward + all-reduce + RMSprop update, synthetic data in memory,"
  echo "  same model, global batch and float32 arithmetic on both sides; \`trainer bench\` (median of 3 repeats after"
  echo "  20 warm-up steps) and the peer's \`--time-only-steps\` (after 20 warm-up steps) run alternately, $rounds rounds"
  echo "  per row; the peer in both layouts (NCHW, NHWC) and the ratio taken against the faster one of each round."
  echo "  Images/s columns are medians over the rounds; the last column compares each side's best round (the"
  echo "  machine's quietest minute for each), which is closer to what an idle machine gives."
  echo
  echo "### Trainer (1 rank x 2 threads) against PyTorch (1 process x 2 threads), images/s"
  echo
  echo "| model | global batch | trainer | peer NCHW | peer NHWC | trainer / best peer, median (each round) | >= 2x | best rounds: trainer / peer |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows"
  echo
  echo "### The two ways of using the 2 cores: \`mpirun -np 2\` x 1 thread against 1 rank x 2 threads"
  echo
  echo "| model | global batch | 2 x 1, images/s | 1 x 2, images/s | ratio, median (each round) | >= 0.95 | best rounds: 2 x 1 / 1 x 2 |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s' "$np_rows"
  echo
  echo "### Data from HDF5 (Fashion-MNIST, shuffled; held in memory, or streamed and read ahead) and memory"
  echo
  echo "| ranks x threads | global batch | dataset | images/s | data share of the step | peak RSS per rank, MiB (after warm-up) |"
  echo "|---|---|---|---|---|---|"
  printf '%s' "$data_rows"
  echo
  echo "### Where the time goes: \`trainer bench --model cifar10-cnn --batch-size 32\` (last round)"
  echo
  echo '```'
  cat "$work/profile.txt"
  echo '```'
  echo "<!-- benchmark.sh: end -->"
} >"$work/generated.md"

if [ -f "$out" ] && grep -q '<!-- benchmark.sh: begin' "$out"; then
  awk -v gen="$work/generated.md" '
    /<!-- benchmark.sh: begin/ { while ((getline line < gen) > 0) print line; skip = 1; next }
    /<!-- benchmark.sh: end -->/ { skip = 0; next }
    !skip { print }' "$out" >"$work/out.md"
else
  { echo "# Benchmarks"; echo; cat "$work/generated.md"; echo; echo "## Notes"; echo; } >"$work/out.md"
fi
cp "$work/out.md" "$out"
log "wrote $out"

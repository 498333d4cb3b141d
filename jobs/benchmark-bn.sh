#!/usr/bin/env bash
# benchmark-bn.sh: what BatchNormalization costs: cifar10-cnn with Conv2D(use_bias=False) +
# BatchNormalization() + Activation('relu') in place of each ReLU'd Conv2D (jobs/models/cifar10-cnn-bn.model)
# against the plain preset, and against the PyTorch peer running the same BatchNormalization model (built by
# run-peer.sh --keras-model from one of our checkpoints), at global batch 256 and 32.
#
# Each round runs, in an order that rotates from round to round so that a slow minute does not always fall on
# the same side: `trainer bench` on the plain and on the BN model (1 rank x 2 threads), BASE (when set: another
# trainer build, e.g. the one before the fusion) on the BN model, and the peer on the BN model (1 process x 2
# threads, NCHW and NHWC). It reports medians and the medians of the per-round ratios (on a shared machine
# absolute numbers drift from minute to minute; ratios of neighbouring runs much less), then the per-layer table
# of the last BN round at each batch. Not part of ctest: timings are not tests.
#
# Environment: ROUNDS (default 5), SHORTEN (divide the timed steps by this; default 1, 2 for a busy machine),
# TRAINER (a built trainer; default: jobs/build.sh builds build/), BASE (a second trainer, optional), PEER
# (default ../shared/peers/run-peer.sh), OUT (default: print to stdout only; a file: the part between the two
# "benchmark-bn.sh" markers is replaced, or the section appended).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-5}
peer=${PEER:-$top/../shared/peers/run-peer.sh}
trainer=${TRAINER:-$("$top/jobs/build.sh")}
base=${BASE:-}
bn_model=$top/jobs/models/cifar10-cnn-bn.model
[ -x "$peer" ] || { echo "benchmark-bn.sh: no peer at $peer" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "benchmark-bn: $*" >&2; }

# A checkpoint of the BN model for the peer: one step on 64 random CIFAR-10 records (label byte + 3072 pixels).
python3 -c "
import random
random.seed(1)
with open('$work/rand.bin', 'wb') as f:
    for i in range(64):
        f.write(bytes([i % 10]) + bytes(random.getrandbits(8) for _ in range(3072)))"
"$trainer" import cifar10 "$work/rand.bin" -o "$work/rand.h5" >/dev/null
"$trainer" train --model "$bn_model" --data "$work/rand.h5" --batch-size 32 --max-steps 1 --quiet \
  --checkpoint "$work/bn.h5"

# Timed steps per run (benchmark.sh's, about two seconds of work each on a quiet machine), divided by SHORTEN.
shorten=${SHORTEN:-1}
steps_for() { if [ "$1" -ge 256 ]; then echo $((40 / shorten)); else echo $((200 / shorten)); fi; }
peer_steps_for() { if [ "$1" -ge 256 ]; then echo $((60 / shorten)); else echo $((400 / shorten)); fi; }

# trainer_ips BINARY MODEL BATCH: the bench's images/s (median of its 3 repeats); the table in $work/bench.txt.
trainer_ips() {
  OMP_NUM_THREADS=2 "$1" bench --model "$2" --batch-size "$3" --steps "$(steps_for "$3")" --repeats 3 --no-peak \
    >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt" >&2; exit 1; }
  sed -n 's/^images\/s: //p' "$work/bench.txt"
}

# peer_ips BATCH [--channels-last]: the peer's throughput_img_per_s on the BN model.
peer_ips() {
  local b=$1; shift
  "$peer" --keras-model "$work/bn.h5" --data synthetic --batch-size "$b" --threads 2 \
    --time-only-steps "$(peer_steps_for "$b")" "$@" >"$work/peer.txt" 2>&1 || { cat "$work/peer.txt" >&2; exit 1; }
  sed -n 's/^throughput_img_per_s=//p' "$work/peer.txt"
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
fmt() { awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }
max2() { awk -v a="$1" -v b="$2" 'BEGIN {print (a > b ? a : b)}'; }

rows=""
profiles=""
for batch in 256 32; do
  plain=() bn=() old=() nchw=() nhwc=() r_plain=() r_peer=() r_old=()
  for i in $(seq "$rounds"); do
    # The runs of a round, rotated by the round number.
    order=(plain bn peer old)
    k=$(( (i - 1) % 4 ))
    order=("${order[@]:k}" "${order[@]:0:k}")
    for what in "${order[@]}"; do
      case $what in
        plain) a=$(trainer_ips "$trainer" cifar10-cnn "$batch") ;;
        bn) b=$(trainer_ips "$trainer" "$bn_model" "$batch"); cp "$work/bench.txt" "$work/bn-$batch.txt" ;;
        peer) y=$(peer_ips "$batch"); z=$(peer_ips "$batch" --channels-last) ;;
        old) o=""; [ -z "$base" ] || o=$(trainer_ips "$base" "$bn_model" "$batch") ;;
      esac
    done
    best=$(max2 "$y" "$z")
    plain+=("$a") bn+=("$b") nchw+=("$y") nhwc+=("$z")
    r_plain+=("$(ratio "$b" "$a")") r_peer+=("$(ratio "$b" "$best")")
    [ -z "$o" ] || { old+=("$o"); r_old+=("$(ratio "$b" "$o")"); }
    log "batch $batch round $i: plain $a, BN $b${o:+, BN before the fusion $o}, peer BN NCHW $y NHWC $z"
  done
  rp=$(median "${r_plain[@]}") rq=$(median "${r_peer[@]}")
  before="-"
  [ -z "$base" ] || before="$(fmt "$(median "${old[@]}")") (x$(median "${r_old[@]}"))"
  rows+="| $batch | $(fmt "$(median "${plain[@]}")") | $(fmt "$(median "${bn[@]}")") | $before | $(fmt "$(median "${nchw[@]}")") / $(fmt "$(median "${nhwc[@]}")") | **$rp** (${r_plain[*]}) | $(awk -v x="$rp" 'BEGIN {print (x >= 0.8 ? "yes" : "no")}') | **$rq** (${r_peer[*]}) | $(awk -v x="$rq" 'BEGIN {print (x >= 2.5 ? "yes" : "no")}') |"$'\n'
  profiles+="\`trainer bench --model jobs/models/cifar10-cnn-bn.model --batch-size $batch\` (last round):"$'\n\n```\n'"$(cat "$work/bn-$batch.txt")"$'\n```\n\n'
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
if grep -q -w avx512f /proc/cpuinfo; then isa="AVX-512"; elif grep -q -w avx2 /proc/cpuinfo; then isa="AVX2, no AVX-512"
else isa="no AVX2"; fi
{
  echo "<!-- benchmark-bn.sh: begin (generated by jobs/benchmark-bn.sh) -->"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`jobs/benchmark-bn.sh\` (ROUNDS=$rounds, SHORTEN=$shorten) on $cpu ($isa), $(nproc) cores,"
  echo "shared with other work (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)). 1 rank x 2 threads; the peer 1 process"
  echo "x 2 threads on the same BN model (\`run-peer.sh --keras-model\`), ratio against its faster layout of each round."
  echo
  echo "| global batch | plain cifar10-cnn | BN model | BN model, BASE build | peer BN NCHW / NHWC | BN / plain, median (rounds) | >= 0.8 | BN / best peer, median (rounds) | >= 2.5 |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows"
  echo
  printf '%s' "$profiles"
  echo "<!-- benchmark-bn.sh: end -->"
} >"$work/generated.md"

if [ -n "${OUT:-}" ]; then
  if [ -f "$OUT" ] && grep -q '<!-- benchmark-bn.sh: begin' "$OUT"; then
    awk -v gen="$work/generated.md" '
      /<!-- benchmark-bn.sh: begin/ { while ((getline line < gen) > 0) print line; skip = 1; next }
      /<!-- benchmark-bn.sh: end -->/ { skip = 0; next }
      !skip { print }' "$OUT" >"$work/out.md"
  else
    { [ -f "$OUT" ] && cat "$OUT"; echo; cat "$work/generated.md"; } >"$work/out.md"
  fi
  cp "$work/out.md" "$OUT"
  log "wrote $OUT"
fi
cat "$work/generated.md"

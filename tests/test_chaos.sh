#!/usr/bin/env bash
# test_chaos.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: a 2-rank training with a schedule, callbacks and
# --checkpoint-every whose ranks are killed with SIGKILL at 20 random moments (during steps and during checkpoint
# writes), each time resumed from its checkpoint: it ends with the weights of the same training never
# interrupted, bit for bit, and `trainer info` reads the checkpoint after every kill.
# CHAOS_SEED=N replays a run (the seed is printed). Prints "N passed, N failed"; exits non-zero on a failure.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
abs() { readlink -f "$1"; }
trainer_bin=$(abs "$1") make_dataset=$(abs "$2") compare=$(abs "$3") data=$(abs "$4")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# A link with a name unique to this run: pgrep finds this run's ranks and no one else's.
ln -s "$trainer_bin" "$work/trainer"
trainer=$work/trainer
export OMP_NUM_THREADS=1
seed=${CHAOS_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$seed
echo "# CHAOS_SEED=$seed"

"$make_dataset" train.h5 768 12 4 1 >/dev/null && "$make_dataset" test.h5 128 12 4 2 >/dev/null \
  || { echo "cannot make data"; exit 1; }
# 48 steps per epoch, 40 epochs (long enough that 20 kills land before the end on a fast machine too); a checkpoint
# every 4 steps. A warmup into a cosine schedule, a plateau that
# halves the lr at every epoch's end from the second, and an EarlyStopping that keeps the best weights and puts
# them back at the end: every piece of state a resume must carry.
recipe=(--model "$data/small.model" --data train.h5 --val test.h5 --epochs 40 --batch-size 16 --optimizer adam
        --lr 0.002 --seed 7 --threads 1 --quiet --lr-schedule cosine --min-lr 1e-5 --warmup-epochs 1.5
        --callback "ReduceLROnPlateau(monitor='loss', factor=0.5, patience=1, min_delta=10)"
        --callback "EarlyStopping(monitor='val_loss', patience=50, restore_best_weights=True)")
launch() { timeout -k 5 60 mpirun -q -np 2 --oversubscribe --bind-to none "$trainer" train "$@"; }

t0=$(date +%s%N)
launch "${recipe[@]}" --checkpoint ref.h5 >ref.txt 2>&1 || { bad "the reference run: $(cat ref.txt)"; }
# The kills come at most a hundredth of the reference run's time after a launch starts training, so that 20 of them
# land before the training ends on a fast machine as on a loaded one (20 launches cover a fraction of it).
window_ms=$(( ($(date +%s%N) - t0) / 100000000 ))
[ "$window_ms" -ge 5 ] || window_ms=5

# ranks: this run's rank pids.
ranks() { pgrep -f "^$trainer train" | tr '\n' ' '; }
gone() { for _ in $(seq 100); do [ -z "$(ranks)" ] && return 0; sleep 0.1; done; return 1; }

# stamp: a checkpoint is renamed over the last one, so each write gives the file a new inode and change time (the
# inode alone is not enough: the file system hands the freed number of one write to the next).
inode() { stat -c '%i %z' ck.h5 2>/dev/null || echo none; }
kills=0 torn=0 unreadable=0 launches=0
while [ "$kills" -lt 20 ] && [ "$launches" -lt 30 ]; do
  launches=$((launches + 1))
  before=$(inode)
  if [ -f ck.h5 ]; then
    launch --resume ck.h5 --data train.h5 --val test.h5 --threads 1 --quiet --checkpoint-every 4 >run.txt 2>&1 &
  else
    launch "${recipe[@]}" --checkpoint ck.h5 --checkpoint-every 4 >run.txt 2>&1 &
  fi
  bg=$!
  # Once this run has written a checkpoint (it is training), 0 to window_ms later: within a step or a write.
  for _ in $(seq 750); do [ "$(inode)" != "$before" ] && break; kill -0 "$bg" 2>/dev/null || break; sleep 0.02; done
  sleep "$(awk -v ms=$((RANDOM % window_ms)) 'BEGIN {printf "%.3f", ms / 1000}')"
  r=($(ranks))
  if [ ${#r[@]} -lt 2 ]; then
    wait "$bg"
    grep -q "nothing to do" run.txt && break
    [ -f ck.h5 ] && "$trainer" info ck.h5 2>/dev/null | grep -q "^Trained:    40 epochs" && break
    continue
  fi
  case $((RANDOM % 3)) in
    0) kill -KILL "${r[0]}" ;;
    1) kill -KILL "${r[1]}" ;;
    2) kill -KILL "${r[@]}" ;;
  esac
  kills=$((kills + 1))
  wait "$bg"
  gone || { bad "kill $kills: ranks left: $(ranks)"; for p in $(ranks); do kill -9 "$p"; done; }
  # A write cut short leaves its temporary file (never a damaged checkpoint).
  ls ck.h5.tmp.* >/dev/null 2>&1 && torn=$((torn + 1)) && rm -f ck.h5.tmp.*
  if [ -f ck.h5 ] && ! "$trainer" info ck.h5 >info.txt 2>&1; then
    unreadable=$((unreadable + 1))
    echo "# kill $kills: $(head -c 300 info.txt)"
  fi
done
echo "# before the last resume: $(grep '^Trained' info.txt)"
[ "$unreadable" -eq 0 ] && ok "$kills kills ($torn during a checkpoint write): the checkpoint always readable" \
  || bad "$unreadable of $kills kills left an unreadable checkpoint"
[ "$kills" -eq 20 ] && ok "20 kills landed while training ran ($launches launches)" \
  || bad "only $kills kills landed in $launches launches (the training ended first)"

# The rest, never interrupted.
launch --resume ck.h5 --data train.h5 --val test.h5 --threads 1 --quiet >last.txt 2>&1 \
  || bad "the last resume: $(cat last.txt)"
"$compare" ref.h5 ck.h5 0 >cmp.txt 2>&1 && ok "after $kills kills: bit-identical to the run never interrupted" \
  || bad "weights differ: $(cat cmp.txt)"
h5dump -a /trainer/lr_factor ref.h5 >a.txt 2>&1; h5dump -a /trainer/lr_factor ck.h5 >b.txt 2>&1
cmp -s <(grep -A3 DATA a.txt) <(grep -A3 DATA b.txt) && ok "the same plateau factor" || bad "plateau factor differs"

summary

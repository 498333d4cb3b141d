#!/usr/bin/env bash
# test_faults.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS BAD_DATASET CHECK_FINITE DATA_DIR: every failure a user can
# cause or meet ends with one line `trainer: error: FILE: what is wrong`, the documented exit code (2 usage,
# 3 bad input, 4 I/O, 5 diverged, 75 stopped by a signal), no process left behind, and nothing on disk lost.
# Prints "N passed, N failed" and exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
# Absolute paths: the script works in a directory of its own.
abs() { readlink -f "$1"; }
trainer_bin=$(abs "$1") make_dataset=$(abs "$2") compare=$(abs "$3") bad_dataset=$(abs "$4")
check_finite=$(abs "$5") data=$(abs "$6")
work=$(mktemp -d)
disk=$work/disk
cleanup() {
  mountpoint -q "$disk" 2>/dev/null && umount "$disk"
  rm -rf "$work"
}
trap cleanup EXIT
# Readable by the unprivileged user of the permission test.
chmod 755 "$work"
cd "$work"
# The trainer runs through a link with a name unique to this run, so that pgrep finds this run's processes
# (mpirun and every rank) and no one else's.
ln -s "$trainer_bin" "$work/trainer"
trainer=$work/trainer
model=$data/small.model
# One thread per rank: two ranks on two cores; and -q: mpirun's own notes would hide whether the trainer
# printed one line.
export OMP_NUM_THREADS=1

# run NP CMD...: CMD on NP ranks (0: no launcher, as on a laptop) under a hard time limit, so that a hang fails;
# stdout in out.txt, stderr in err.txt, exit code in $rc.
run() {
  local np=$1; shift
  if [ "$np" -eq 0 ]; then
    timeout -k 5 60 "$@" >out.txt 2>err.txt
  else
    timeout -k 5 60 mpirun -q -np "$np" --oversubscribe --bind-to none "$@" >out.txt 2>err.txt
  fi
  rc=$?
}

# no_leftovers WHAT: no process of this run is left (a rank that outlives mpirun, or a zombie). Waits up to 10 s
# for them to go, then kills what is left, by pid, and fails.
no_leftovers() {
  local left
  for _ in $(seq 50); do
    left=$(pgrep -f "$trainer" | tr '\n' ' ')
    [ -z "$left" ] && return 0
    sleep 0.2
  done
  bad "$1: processes left behind: $(ps -o pid,stat,args -p "${left// /,}" 2>/dev/null | tail -n +2)"
  for p in $left; do kill -9 "$p" 2>/dev/null; done
  return 1
}

# expect NP CODE PATTERN WHAT CMD...: CMD exits with CODE, its stderr is one line `trainer: error: ...`
# matching PATTERN (a usage error adds "Try 'trainer CMD --help'."), and no process is left.
expect() {
  local np=$1 code=$2 pattern=$3 what=$4; shift 4
  run "$np" "$@"
  local lines
  lines=$(grep -v -c "^Try 'trainer [a-z ]*--help'\.$" err.txt)
  if [ "$rc" -ne "$code" ]; then
    bad "$what: exit $rc, want $code (stderr: $(head -c 1500 err.txt))"
  elif [ "$lines" -ne 1 ] || ! grep -q -E -- "^trainer: error: $pattern" err.txt; then
    bad "$what: want one line 'trainer: error: $pattern', got $lines: $(head -c 400 err.txt)"
  else
    no_leftovers "$what" && ok "$what"
  fi
}

train() { echo "$trainer" train --model "$model" --quiet "$@"; }

"$make_dataset" train.h5 768 12 4 1 >/dev/null || { echo "cannot make data"; exit 1; }

# ---- the command line ---------------------------------------------------------------------------------------
expect 2 2 "unknown option '--epoks' \(did you mean '--epochs'\?\)" "unknown option on 2 ranks: exit 2" \
  $(train --data train.h5 --epoks 3)
expect 0 2 "--batch-size: '0' is not an integer" "bad option value: exit 2" $(train --data train.h5 --batch-size 0)
expect 0 2 "--data is required" "missing --data: exit 2" "$trainer" train --model "$model"
export TRAINER_EXCHANGE=mesages
expect 2 2 "TRAINER_EXCHANGE must be auto or messages, not 'mesages'" "misspelled TRAINER_EXCHANGE: exit 2" \
  -x TRAINER_EXCHANGE $(train --data train.h5)
unset TRAINER_EXCHANGE
export TRAINER_DATA_CACHE=of
expect 2 2 "TRAINER_DATA_CACHE must be auto or off, not 'of'" "misspelled TRAINER_DATA_CACHE: exit 2" \
  -x TRAINER_DATA_CACHE $(train --data train.h5)
unset TRAINER_DATA_CACHE

# ---- datasets -----------------------------------------------------------------------------------------------
expect 2 3 "missing.h5: No such file or directory" "missing dataset on 2 ranks: exit 3" \
  $(train --data missing.h5)
printf 'not HDF5 at all\n' >text.h5
expect 2 3 "text.h5: not an HDF5 file" "non-HDF5 file on 2 ranks: exit 3" $(train --data text.h5)
head -c 20000 train.h5 >cut.h5
expect 2 3 "cut.h5: damaged or truncated HDF5 file" "truncated dataset on 2 ranks: exit 3" $(train --data cut.h5)
mkfifo pipe.h5
expect 2 3 "pipe.h5: not a regular file" "a named pipe as dataset: exit 3, no hang" $(train --data pipe.h5)
expect 0 3 "pipe.h5: not a regular file" "info on a named pipe: exit 3, no hang" "$trainer" info pipe.h5
expect 0 3 "$work: is a directory" "a directory as dataset: exit 3" $(train --data "$work")
for kind in no-images no-labels images-rank3 images-float labels-2d count-mismatch empty; do
  "$bad_dataset" layout "$kind.h5" "$kind" || bad "bad_dataset layout $kind"
done
expect 2 3 "no-images.h5: no /images dataset" "dataset without /images on 2 ranks: exit 3" \
  $(train --data no-images.h5)
expect 0 3 "no-labels.h5: no /labels dataset" "dataset without /labels: exit 3" $(train --data no-labels.h5)
expect 0 3 "images-rank3.h5: /images has rank 3, expected 4" "images of rank 3: exit 3" \
  $(train --data images-rank3.h5)
expect 0 3 "images-float.h5: /images is not an integer array" "float images: exit 3" \
  $(train --data images-float.h5)
expect 0 3 "labels-2d.h5: /labels has rank 2, expected 1" "labels of rank 2: exit 3" $(train --data labels-2d.h5)
expect 0 3 "count-mismatch.h5: /labels has 7 samples but /images has 8" "7 labels for 8 images: exit 3" \
  $(train --data count-mismatch.h5)
expect 2 3 "empty.h5: /images has no samples" "empty dataset on 2 ranks: exit 3" $(train --data empty.h5)
expect 2 3 "train.h5: images are 12x12x1 but the model expects 28x28x1" "images that do not fit the model: exit 3" \
  "$trainer" train --model fashion-cnn --data train.h5 --quiet
expect 2 3 "missing.h5: No such file or directory" "missing validation file on 2 ranks: exit 3" \
  $(train --data train.h5 --val missing.h5)

# A label out of range in the share of rank 1 only, in the third batch: global batch 16 on 2 ranks, so batch 3
# covers positions 32..47 of the epoch's shuffle and rank 1 reads 40..47. Rank 0 never sees it, yet both stop.
cp train.h5 badlabel.h5
sample=$("$bad_dataset" label badlabel.h5 5 41 9)
expect 2 3 "badlabel.h5: sample $sample has label 9, outside \[0, 4\)" \
  "label out of range in rank 1's share only: both ranks exit 3" \
  $(train --data badlabel.h5 --batch-size 16 --seed 5 --epochs 1 --checkpoint badlabel-ck.h5)
[ ! -e badlabel-ck.h5 ] && ok "no checkpoint of the failed epoch" || bad "a checkpoint was written"
# With BatchNormalization the ranks sum statistics inside each step: rank 1, which cannot read its share,
# must still take part in them (net_train_skip), or rank 0 would wait in the first one.
expect 2 3 "badlabel.h5: sample $sample has label 9, outside \[0, 4\)" \
  "BatchNormalization, label out of range in rank 1's share only: both ranks exit 3" \
  "$trainer" train --model "$data/bn.model" --quiet --data badlabel.h5 --batch-size 16 --seed 5 --epochs 1

# An unreadable file: permissions do not stop root, so as an unprivileged user when there is one.
cp train.h5 secret.h5 && chmod 000 secret.h5
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
   setpriv --reuid=65534 --regid=65534 --clear-groups "$trainer" --version >/dev/null 2>&1; then
  expect 0 4 "secret.h5: cannot open: Permission denied" "unreadable dataset: exit 4" \
    setpriv --reuid=65534 --regid=65534 --clear-groups $(train --data secret.h5)
elif [ "$(id -u)" -ne 0 ]; then
  expect 0 4 "secret.h5: cannot open: Permission denied" "unreadable dataset: exit 4" $(train --data secret.h5)
else
  echo "skip - unreadable dataset: no unprivileged user to run as"
fi

# ---- model files --------------------------------------------------------------------------------------------
bad_model() { # NAME LINE2: a model whose second line is LINE2
  printf 'Input(shape=(12, 12, 1))\n%s\nFlatten()\nDense(4, activation="softmax")\n' "$2" >"$1"
}
bad_model unknown.model "Conv3D(8, 3)"
expect 2 3 "unknown.model:2:1: unknown layer 'Conv3D' \(did you mean 'Conv2D'\?\)" \
  "unknown layer on 2 ranks: exit 3, line and column" "$trainer" train --model unknown.model --data train.h5
bad_model typo.model "Conv2D(8, 3, paddin='same')"
expect 0 3 "typo.model:2:14: Conv2D: unknown argument 'paddin'" "misspelled argument: line and column" \
  "$trainer" train --model typo.model --data train.h5
bad_model value.model "Conv2D(8, 3, padding='sme')"
expect 0 3 "value.model:2:14: Conv2D: unknown value 'sme' for 'padding'" "bad value: line and column" \
  "$trainer" train --model value.model --data train.h5
bad_model syntax.model "Conv2D(8, 3"
expect 0 3 "syntax.model:2:[0-9]+: expected '\)'" "unclosed call: line and column" \
  "$trainer" train --model syntax.model --data train.h5
bad_model kernel.model "Conv2D(8, 13)"
expect 0 3 "kernel.model:2: conv2d_1: kernel 13x13 is larger than its 12x12 input" "kernel larger than its input" \
  "$trainer" train --model kernel.model --data train.h5
bad_model zero.model "Conv2D(0, 3)"
expect 0 3 "zero.model:2:8: Conv2D: 'filters' must be between 1 and" "zero filters: line and column" \
  "$trainer" train --model zero.model --data train.h5
bad_model dropout.model "Dropout(1.0)"
expect 0 3 "dropout.model:2:9: Dropout: rate must be in \[0, 1\)" "dropout rate 1.0: line and column" \
  "$trainer" train --model dropout.model --data train.h5
printf 'Input(shape=(12, 12, 1))\nFlatten()\nDense(4)\n' >nosoftmax.model
expect 0 3 "nosoftmax.model:3: dense_1: the model must end in softmax" "no softmax at the end" \
  "$trainer" train --model nosoftmax.model --data train.h5
expect 0 3 "missing.model: cannot read: No such file or directory" "missing model file: exit 3" \
  "$trainer" train --model missing.model --data train.h5
expect 0 3 "train.h5: no model in this file" "a dataset given as --model: exit 3" \
  "$trainer" train --model train.h5 --data train.h5

# ---- checkpoints ------------------------------------------------------------------------------------------
# SGD, so that a resume with a huge --lr diverges below (RMSprop and Adam bound the step).
run 2 $(train --data train.h5 --batch-size 32 --max-steps 30 --optimizer sgd --lr 0.05 --checkpoint good.h5)
[ "$rc" -eq 0 ] && [ -f good.h5 ] && ok "a checkpoint to start from" || bad "train good.h5: $(cat err.txt)"
cp good.h5 good.orig
expect 2 3 "good.h5: the checkpoint holds another model than gap-cnn" "resume with another model: exit 3" \
  "$trainer" train --resume good.h5 --model gap-cnn --data train.h5 --quiet
expect 0 3 "good.h5: trained with global batch 32" "resume with another batch size: exit 3" \
  "$trainer" train --resume good.h5 --data train.h5 --batch-size 16 --quiet
head -c 5000 good.h5 >cut-ck.h5
expect 2 3 "cut-ck.h5: damaged or truncated HDF5 file" "resume a truncated checkpoint: exit 3" \
  "$trainer" train --resume cut-ck.h5 --data train.h5 --quiet
expect 0 3 "train.h5: no model in this file" "eval with a dataset as checkpoint: exit 3" \
  "$trainer" eval --checkpoint train.h5 --data train.h5
expect 0 3 "pipe.h5: not a regular file" "resume from a named pipe: exit 3, no hang" \
  "$trainer" train --resume pipe.h5 --data train.h5
cmp -s good.h5 good.orig && ok "the checkpoint is untouched by the failed resumes" || bad "good.h5 changed"

# A checkpoint path whose directory is a regular file: exit 4 at start-up, not after the first epoch.
expect 2 4 "good.h5/c.h5: cannot write checkpoint: Not a directory" "checkpoint under a regular file: exit 4" \
  $(train --data train.h5 --max-steps 5 --checkpoint good.h5/c.h5)

# A full disk: a small tmpfs (as root), filled up to less than a checkpoint. The write fails with ENOSPC and
# the checkpoint already there stays as it was, byte for byte, with no temporary file beside it.
mkdir -p "$disk"
if mount -t tmpfs -o size=512k tmpfs "$disk" 2>/dev/null; then
  cp good.h5 "$disk/c.h5"
  dd if=/dev/zero of="$disk/fill" bs=1k count=$(($(df -k --output=avail "$disk" | tail -1) - 8)) 2>/dev/null
  expect 2 4 "$disk/c.h5: cannot write checkpoint: No space left on device" "full disk on 2 ranks: exit 4" \
    "$trainer" train --resume "$disk/c.h5" --data train.h5 --max-steps 40 --quiet
  cmp -s "$disk/c.h5" good.orig && ok "full disk: the old checkpoint survives bit for bit" \
    || bad "full disk: the old checkpoint changed"
  [ -z "$(ls "$disk" | grep tmp)" ] && ok "full disk: no temporary file left" || bad "left: $(ls "$disk")"
  dd if=/dev/zero of="$disk/fill2" bs=1k count=$(($(df -k --output=avail "$disk" | tail -1))) 2>/dev/null
  expect 2 4 "$disk/m.csv: cannot write: No space left on device" "metrics on a full disk: exit 4" \
    $(train --data train.h5 --epochs 1 --metrics "$disk/m.csv" --checkpoint mck.h5)
  [ -f mck.h5 ] && ok "metrics on a full disk: the epoch's checkpoint is still written" || bad "no mck.h5"
  rm "$disk/fill" "$disk/fill2" && printf 'old\n' >old.txt && cp old.txt "$disk/p.h5"
  dd if=/dev/zero of="$disk/fill" bs=1k count=$(($(df -k --output=avail "$disk" | tail -1) - 8)) 2>/dev/null
  expect 2 4 "$disk/p.h5: cannot write predictions: No space left on device" "predict on a full disk: exit 4" \
    "$trainer" predict --checkpoint good.h5 --data train.h5 -o "$disk/p.h5"
  cmp -s "$disk/p.h5" old.txt && ok "full disk: the old predictions file survives" || bad "p.h5 changed"
  umount "$disk"
else
  echo "skip - full disk: cannot mount a tmpfs here (not root); test_checkpoint and test_datasets cover a full" \
       "disk with RLIMIT_FSIZE"
fi

# ---- divergence ---------------------------------------------------------------------------------------------
# SGD at lr 1e5 gives a non-finite loss at step 3: exit 5 before the update, and the checkpoint written at
# step 2 holds only finite numbers.
expect 2 5 "train.h5: training diverged at step [0-9]+: the (loss|gradient) is not finite" \
  "diverging learning rate on 2 ranks: exit 5" \
  $(train --data train.h5 --optimizer sgd --lr 1e5 --epochs 3 --checkpoint div.h5 --checkpoint-every 1)
if [ -f div.h5 ] && "$check_finite" div.h5 >finite.txt; then ok "after divergence: $(cat finite.txt)"
else bad "after divergence the checkpoint is not finite: $(cat finite.txt 2>/dev/null)"; fi
expect 0 5 "train.h5: training diverged" "resume with a diverging lr: exit 5" \
  "$trainer" train --resume good.h5 --data train.h5 --lr 1e5 --max-steps 100 --quiet
cmp -s good.h5 good.orig && ok "after divergence the resumed checkpoint is untouched" || bad "good.h5 changed"

# ---- a rank killed ------------------------------------------------------------------------------------------
# background NP ARGS...: starts a long 2-rank training in the background; $bg is mpirun's pid.
background() {
  local np=$1; shift
  timeout -k 5 90 mpirun -q -np "$np" --oversubscribe --bind-to none "$@" >bg-out.txt 2>bg-err.txt &
  bg=$!
}
# ranks: the pids of this run's ranks (not mpirun, not timeout).
ranks() { pgrep -f "^$trainer train" | tr '\n' ' '; }
wait_for_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

# signal_rank SIGNAL RANK CHECKPOINT WHAT: a long 2-rank training, RANK sent SIGNAL once CHECKPOINT is on disk;
# the job must end within 30 s, leave no process, and CHECKPOINT must stay readable.
signal_rank() {
  local sig=$1 which=$2 ck=$3 what=$4
  rm -f "$ck"
  background 2 $(train --data train.h5 --epochs 1000 --checkpoint "$ck" --checkpoint-every 5)
  wait_for_file "$ck" && sleep 0.3
  r=($(ranks))
  start=$(date +%s)
  [ ${#r[@]} -eq 2 ] && kill -"$sig" "${r[$which]}"
  wait "$bg"; code=$?
  took=$(($(date +%s) - start))
  if [ ${#r[@]} -eq 2 ] && [ "$code" -ne 0 ] && [ "$took" -le 30 ]; then
    ok "$what: the job ends in ${took}s (exit $code)"
  else
    bad "$what: ranks '${r[*]}', exit $code after ${took}s"
  fi
  no_leftovers "$what" && ok "$what: no process left"
  "$trainer" info "$ck" >info.txt 2>&1 && grep -q 'steps' info.txt && ok "$what: the last checkpoint stays readable" \
    || bad "$what: $ck unreadable: $(cat info.txt)"
}
# steps CHECKPOINT: its optimizer step count; info prints it with thousands separators ("1,020 steps").
steps() { "$trainer" info "$1" 2>/dev/null | sed -n 's/.* \([0-9][0-9,]*\) steps .*/\1/p' | tr -d ,; }

signal_rank KILL 1 killed.h5 "rank 1 killed"
at=$(steps killed.h5)
if [ -n "$at" ]; then
  run 2 "$trainer" train --resume killed.h5 --data train.h5 --epochs 1000 --max-steps $((at + 40)) --quiet
  after=$(steps killed.h5)
  [ "$rc" -eq 0 ] && [ "$after" = "$((at + 40))" ] && ok "--resume from it (step $at) continues to step $((at + 40))" \
    || bad "resume after kill from step $at: exit $rc, at step '$after' (want $((at + 40))): $(cat out.txt err.txt)"
else
  bad "resume after kill: no step count in: $("$trainer" info killed.h5 2>&1 | grep Trained)"
fi
no_leftovers "resume after kill"
# A rank that aborts (an assertion in a library, SIGABRT): the same end as a kill.
signal_rank ABRT 0 aborted.h5 "rank 0 aborted"

# An error that one rank meets alone, mid-run: each rank reads its own copy of the dataset (MPMD, as if rank 1
# were on a node whose file system fails), and rank 1's copy is cut short while the job runs. Rank 0 reads on
# without a fault, yet must not wait for rank 1: both end with rank 1's message and exit 3. The data sets are
# read from the file each step (TRAINER_DATA_CACHE=off): held in memory, they would not be read again.
cp train.h5 own0.h5 && cp train.h5 own1.h5
TRAINER_DATA_CACHE=off timeout -k 5 90 mpirun -q --oversubscribe --bind-to none \
  -np 1 -x TRAINER_DATA_CACHE $(train --data "$work/own0.h5" --epochs 1000 --checkpoint own.h5 --checkpoint-every 5) \
  : -np 1 -x TRAINER_DATA_CACHE $(train --data "$work/own1.h5" --epochs 1000 \
  --checkpoint own.h5 --checkpoint-every 5) >bg-out.txt 2>bg-err.txt &
bg=$!
wait_for_file own.h5
start=$(date +%s)
truncate -s 4096 own1.h5
wait "$bg"; code=$?
took=$(($(date +%s) - start))
if [ "$code" -eq 3 ] && [ "$took" -le 60 ] && [ "$(wc -l <bg-err.txt)" -eq 1 ] &&
   grep -q -E "^trainer: error: $work/own1.h5: cannot read /(images|labels): damaged or truncated file" bg-err.txt; then
  ok "rank 1's dataset cut short mid-run: both ranks end in ${took}s, exit 3, one line"
else
  bad "rank 1's dataset cut short: exit $code after ${took}s: $(head -c 600 bg-err.txt)"
fi
no_leftovers "rank 1's dataset cut short"
"$trainer" info own.h5 >info.txt 2>&1 && grep -q 'steps' info.txt && ok "and the last checkpoint is readable" \
  || bad "own.h5 unreadable: $(cat info.txt)"
# Held in memory (the default for a data set this small), a copy cut short mid-run is not read again: the
# job runs to its end. Enough steps that the cut comes mid-run on a fast machine too (checked: the checkpoint
# on disk at the cut is from an earlier step).
cp train.h5 own1.h5 && rm -f own.h5
timeout -k 5 90 mpirun -q --oversubscribe --bind-to none -np 1 $(train --data "$work/own0.h5" --epochs 1000 \
  --max-steps 3000 --checkpoint own.h5 --checkpoint-every 5) : -np 1 $(train --data "$work/own1.h5" \
  --epochs 1000 --max-steps 3000 --checkpoint own.h5 --checkpoint-every 5) >bg-out.txt 2>bg-err.txt &
bg=$!
wait_for_file own.h5
truncate -s 4096 own1.h5
cut_at=$(steps own.h5)
wait "$bg"; code=$?
[ "$code" -eq 0 ] && [ "${cut_at:-3000}" -lt 3000 ] && [ "$(steps own.h5)" = 3000 ] \
  && ok "held in memory, a dataset cut short mid-run (step $cut_at) is not read again: the job ends at step 3000" \
  || bad "held in memory, cut short at step '$cut_at': exit $code, $(head -c 600 bg-err.txt)"
no_leftovers "held in memory, cut short"

# ---- SIGUSR1: stop, checkpoint, exit 75; the resumed run ends bit-identical to an uninterrupted one --------------
run 2 $(train --data train.h5 --epochs 1000 --max-steps 800 --checkpoint straight.h5)
[ "$rc" -eq 0 ] || bad "uninterrupted run: exit $rc, $(cat err.txt)"
background 2 $(train --data train.h5 --epochs 1000 --max-steps 800 --checkpoint stopped.h5 --checkpoint-every 7)
wait_for_file stopped.h5
r=($(ranks))
[ ${#r[@]} -eq 2 ] && kill -USR1 "${r[@]}"
wait "$bg"; code=$?
if [ "$code" -eq 75 ] && grep -q 'stopped by a signal at step' bg-err.txt; then ok "SIGUSR1: exit 75"
else bad "SIGUSR1: ranks '${r[*]}', exit $code, $(cat bg-err.txt)"; fi
no_leftovers "SIGUSR1"
at=$(steps stopped.h5)
[ -n "$at" ] && [ "$at" -gt 0 ] && [ "$at" -lt 800 ] && ok "SIGUSR1: checkpoint written at step $at" \
  || bad "SIGUSR1: checkpoint at step '$at'"
run 2 "$trainer" train --resume stopped.h5 --data train.h5 --epochs 1000 --max-steps 800 --quiet
[ "$rc" -eq 0 ] || bad "resume after SIGUSR1: exit $rc, $(cat err.txt)"
"$compare" straight.h5 stopped.h5 0 >cmp.txt && ok "stopped at step $at, resumed to 800: bit-identical" \
  || bad "resumed run differs: $(cat cmp.txt)"
no_leftovers "the end"

summary

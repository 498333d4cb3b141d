#!/usr/bin/env bash
# test_cli.sh TRAINER MAKE_DATASET JSON_CHECK DATA_DIR SOURCE_DIR [FIXTURES]: what a user sees. Help and
# suggestions, the progress bar on a terminal and never in a log (also under mpirun, whose ranks always get a
# pseudo-terminal), the metrics CSV and its plot, eval's tables and JSON, info on each kind of file.
# Terminals are made with util-linux's `script`. Prints "N passed, N failed"; exits non-zero on a failure.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_dataset=$2 json_check=$3 data=$4 src=$5 fixtures=${6:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1
unset TRAINER_PROGRESS
# in_pty CMD: runs CMD (a shell command line) on a fresh pseudo-terminal, its controlling terminal.
in_pty() { SHELL=/bin/bash TERM=xterm timeout -k 5 120 script -qec "$1" /dev/null; }
esc=$'\033'
has_bar() { grep -q "${esc}\[K" "$1"; }

"$make_dataset" train.h5 256 12 4 1 >/dev/null && "$make_dataset" val.h5 64 12 4 2 >/dev/null \
  || { echo "cannot make data"; exit 1; }
model=$data/small.model
train_cmd() { echo "$trainer train --model $model --data train.h5 --val val.h5 --epochs 2 --batch-size 16 $*"; }

# ---- help, usage errors, suggestions, version ----
"$trainer" --help >help.txt 2>&1; rc=$?
commands=$(sed -n 's/^ *{"\([a-z]*\)", cmd_[a-z]*,.*/\1/p' "$src/trainer/main.c")
lists_commands() {
  [ "$rc" -eq 0 ] && [ -n "$commands" ] && grep -q 'TRAINER_PROGRESS' help.txt || return 1
  for c in $commands; do grep -q "^  $c " help.txt || { echo "  --help misses $c"; return 1; }; done
}
check "trainer --help exits 0 and lists every command ($(echo $commands))" lists_commands
# Every long option a command accepts (read from its source) is in its --help.
options_of() { grep -o '{"[a-z-]*", *\(no\|required\)_argument' "$1" | sed 's/{"\([a-z-]*\)".*/\1/' | sort -u; }
help_lists_all() {
  local cmd=$1 file=$2 skip=${3:-} missing=""
  "$trainer" $cmd --help >h.txt 2>&1 || return 1
  for o in $(options_of "$file"); do
    [ "$o" = "$skip" ] && continue
    grep -q -- "--$o" h.txt || missing="$missing --$o"
  done
  [ -z "$missing" ] || { echo "  $cmd --help misses:$missing"; return 1; }
}
check "train --help lists every option" help_lists_all train "$src/trainer/cmd_train.c"
check "eval --help lists every option" help_lists_all eval "$src/trainer/cmd_eval.c" output
check "predict --help lists every option" help_lists_all predict "$src/trainer/cmd_eval.c" json
check "import idx --help lists every option" help_lists_all "import idx" "$src/trainer/cmd_import.c"
check "info --help lists every option" help_lists_all info "$src/trainer/cmd_info.c"
[ -f "$src/trainer/cmd_bench.c" ] && check "bench --help lists every option" help_lists_all bench "$src/trainer/cmd_bench.c"
"$trainer" train --help >h.txt
check "train --help gives the defaults" bash -c "grep -q 'default 10)' h.txt && grep -q 'default 32)' h.txt \
  && grep -q 'default rmsprop' h.txt && grep -q 'default 1)' h.txt"
"$trainer" help eval >h2.txt 2>&1 && "$trainer" eval --help >h3.txt
check "trainer help eval is eval --help" cmp -s h2.txt h3.txt

# usage CODE PATTERN ARGS...: exit CODE and stderr matching PATTERN.
usage() {
  local code=$1 pattern=$2; shift 2
  "$trainer" "$@" >out.txt 2>err.txt; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -E -- "$pattern" err.txt; then ok "trainer $* -> $code"
  else bad "trainer $* -> exit $rc, stderr: $(head -c 300 err.txt)"; fi
}
usage 2 "unknown command 'trian' \(did you mean 'train'\?\)" trian
usage 2 "did you mean 'trainer train'" --train
usage 2 "did you mean '--version'" --verison
usage 2 "did you mean '--epochs'" train --epoks 3
usage 2 "unknown option '-epochs' \(did you mean '--epochs'\?\)" train -epochs 3
usage 2 "ambiguous option '--checkpoint-e?' \(--checkpoint, --checkpoint-every\)|ambiguous option '--check'" \
  train --check c.h5
usage 2 "option '--quiet' takes no value" train --quiet=1
usage 2 "option '--model' needs a value" train --model
usage 2 "did you mean '--json'" eval --jsn
usage 2 "files go after their options" eval c.h5 val.h5
usage 2 "unknown format 'idc' \(did you mean 'idx'\?\)" import idc
usage 2 "the format comes first" import --images x
usage 2 "did you mean '--images'" import idx --imgs x
usage 2 "did you mean '--help'" info --hlp
usage 2 "info takes one file" info a.h5 b.h5
usage 2 "unknown command 'evl' \(did you mean 'eval'\?\)" help evl
usage 2 "Try 'trainer train --help'" train --data train.h5
"$trainer" >out.txt 2>err.txt; rc=$?
check "trainer alone is a usage error with the usage" bash -c "[ $rc -eq 2 ] && grep -q '^usage: trainer' err.txt"
"$trainer" --version >v.txt 2>&1; rc=$?
check "--version names the trainer, oneDNN, HDF5 and MPI" bash -c "[ $rc -eq 0 ] && grep -q '^trainer [0-9]' v.txt \
  && grep -q '^oneDNN [0-9]*\.[0-9]*\.[0-9]' v.txt && grep -q '^HDF5 [0-9]*\.[0-9]*\.[0-9]' v.txt \
  && grep -q -i 'MPI' v.txt"

# ---- training output: not a terminal ----
$(train_cmd --metrics m.csv --checkpoint c.h5) >plain.txt 2>&1
check "a log gets the model summary" bash -c "grep -q '^Layer (type) *Output Shape *Param #' plain.txt \
  && grep -q '^conv2d_1 (Conv2D) *(None, 12, 12, 8) *80$' plain.txt && grep -q '^Total params: 2,812' plain.txt \
  && grep -q '^Trainable params: 2,812' plain.txt"
check "a log gets the set-up" bash -c "grep -q '^Ranks: *1 x 1 thread$' plain.txt \
  && grep -q '^Batch: *16 global, 16 per rank; 16 steps per epoch' plain.txt \
  && grep -q '^Train data: train.h5, 256 samples' plain.txt && grep -q '^Validation: val.h5, 64 samples' plain.txt"
check "a log gets two epoch lines, Keras-like" \
  bash -c "[ \$(grep -c -E '^Epoch [12]/2 - [0-9.]+s - loss: [0-9.]+ - acc: [0-9.]+ - val_loss: [0-9.]+ - val_acc: [0-9.]+ - [0-9]+ img/s$' plain.txt) -eq 2 ]"
check "a log gets no carriage return and no escape" bash -c "! grep -q \$'[\r\033]' plain.txt"

# ---- the metrics CSV, appended by a resumed run ----
$(train_cmd --epochs 3 --resume c.h5 --metrics m.csv) >resumed.txt 2>&1
check "metrics: one header, one row per epoch, appended across a resume" \
  bash -c "[ \"\$(cut -d, -f1 m.csv | paste -sd' ')\" = 'epoch 1 2 3' ] \
  && head -1 m.csv | grep -q '^epoch,step,loss,acc,val_loss,val_acc,lr,img_per_s,wall_s$'"
check "a resumed run says where it resumes" grep -q '^Resuming: *c.h5 at the start of epoch 3 (step 32)' resumed.txt

# ---- the progress bar on a terminal ----
# On a terminal the epoch line follows the bar's clear-line sequence, so it is not at a line's start.
no_esc() { ! grep -q "$esc" "$1"; }
epochs_in() { [ "$(grep -c 'Epoch [0-9]*/2 - ' "$1")" -eq "$2" ]; }
bar_ok() { grep -q "${esc}\[K *16/16 \[=*\] - ETA: " "$1" && grep -q 'loss: [0-9.]* - acc: [0-9.]*' "$1" && epochs_in "$1" 2; }
in_pty "$(train_cmd)" >pty.txt 2>&1
check "a terminal gets the live bar, redrawn in place, and the epoch lines" bar_ok pty.txt
in_pty "TRAINER_PROGRESS=lines $(train_cmd)" >lines.txt 2>&1
check "TRAINER_PROGRESS=lines: no bar on a terminal" eval 'no_esc lines.txt && epochs_in lines.txt 2'
in_pty "TERM=dumb $(train_cmd)" >dumb.txt 2>&1
check "TERM=dumb: no bar" eval 'no_esc dumb.txt && epochs_in dumb.txt 2'
in_pty "$(train_cmd --quiet)" >quiet.txt 2>&1
check "--quiet: neither bar nor epoch lines" eval 'no_esc quiet.txt && epochs_in quiet.txt 0 && ! grep -q "Total params" quiet.txt'
# A run that diverges at step 3 (absurd learning rate): the error starts a line of its own, below the bar.
in_pty "$trainer train --model $model --data train.h5 --epochs 1 --batch-size 16 --optimizer sgd --lr 1e6" \
  >interrupted.txt 2>&1
check "an error during an epoch ends the bar's line first" \
  eval 'has_bar interrupted.txt && grep -a -q "^trainer: error: train.h5: training diverged" interrupted.txt'
TRAINER_PROGRESS=bar $(train_cmd) >forced.txt 2>&1
check "TRAINER_PROGRESS=bar: the bar even into a file" has_bar forced.txt
TRAINER_PROGRESS=sometimes $(train_cmd --epochs 1) >warn.txt 2>&1
check "an unknown TRAINER_PROGRESS is a warning" grep -q "TRAINER_PROGRESS='sometimes' is not bar, lines or auto" warn.txt
# More threads than the cores the rank may run on (as under `mpirun -np 1`, which binds the rank to one core).
taskset -c 0 $(train_cmd --epochs 1 --threads 2) >bound.txt 2>&1
check "more threads than the rank's cores: a warning" \
  grep -q "^trainer: warning: 2 threads per rank but this rank may run on 1 core (mpirun binds" bound.txt
taskset -c 0 $(train_cmd --epochs 1 --threads 1) >fits.txt 2>&1
check "threads within the rank's cores: no warning" eval '! grep -q "threads per rank but" fits.txt && grep -q "^Epoch 1/1" fits.txt'

# Under mpirun the ranks' stdout is always a pty of mpirun's: the bar must follow mpirun's own stdout.
in_pty "$(declare -f mpi); mpi 2 $(train_cmd)" >mpi_tty.txt 2>&1
check "mpirun on a terminal: the bar" bar_ok mpi_tty.txt
in_pty "$(declare -f mpi); mpi 2 $(train_cmd) | cat" >mpi_pipe.txt 2>&1
check "mpirun into a pipe: no bar, epoch lines" eval 'no_esc mpi_pipe.txt && epochs_in mpi_pipe.txt 2'
in_pty "$(declare -f mpi); mpi 2 sh -c '$(train_cmd) --checkpoint c2.h5' >mpi_log.txt" >/dev/null 2>&1
check "mpirun into a file, through a wrapper script: no bar" \
  eval '! grep -q $'"'"'[\r\033]'"'"' mpi_log.txt && epochs_in mpi_log.txt 2 && grep -q "^Ranks: *2 x 1 thread" mpi_log.txt'

# ---- the plot (needs gnuplot; the script would install it, which a test must not do) ----
if command -v gnuplot >/dev/null; then
  bash "$src/jobs/plot_metrics.sh" m.csv m.png >plot.txt 2>&1
  check "plot_metrics.sh draws a PNG" [ "$(head -c 4 m.png | od -An -tx1 | tr -d ' \n')" = 89504e47 ]
  printf 'epoch,step,loss,acc,val_loss,val_acc,lr,img_per_s,wall_s\n1,10,1.0,0.5,nan,nan,0.001,100,1\n' >nv.csv
  check "plot_metrics.sh without validation" bash "$src/jobs/plot_metrics.sh" nv.csv nv.png
else
  echo "skip - plot_metrics.sh: gnuplot is not installed"
fi
bash "$src/jobs/plot_metrics.sh" plain.txt x.png >/dev/null 2>&1; rc=$?
check "plot_metrics.sh refuses a file that is not metrics (exit 3)" [ "$rc" -eq 3 ]

# ---- eval: tables with long class names, aligned; JSON ----
# 64 random 12x12 images, labels 0..3, as IDX files; class names long, with a slash, a space and quotes.
{ printf '\x00\x00\x08\x03\x00\x00\x00\x40\x00\x00\x00\x0c\x00\x00\x00\x0c'; head -c 9216 /dev/urandom; } >img.idx
{ printf '\x00\x00\x08\x01\x00\x00\x00\x40'; for _ in $(seq 16); do printf '\x00\x01\x02\x03'; done; } >lab.idx
"$trainer" import idx --images img.idx --labels lab.idx -o names.h5 \
  --class-names 'T-shirt/top,Ankle boot,A rather long class name that goes on,say "hi"' >/dev/null 2>&1
"$trainer" eval --checkpoint c.h5 --data names.h5 >eval.txt 2>&1; rc=$?
check "eval prints loss and accuracy" bash -c "[ $rc -eq 0 ] && grep -q -E '^loss: [0-9.]+ - accuracy: [0-9.]+$' eval.txt"
check "eval: per-class accuracy with the class names" bash -c "grep -q -E '^  T-shirt/top +[0-9.]+ +[0-9]+/16' eval.txt \
  && grep -q -E '^  A rather long class name that goes on +[0-9.]+ +[0-9]+/16' eval.txt"
# Matrix rows and their header: the same length, every count right-aligned under its column's index.
sed -n '/^confusion matrix/,$p' eval.txt | tail -n +2 >matrix.txt
check "eval: the confusion matrix is aligned" bash -c "[ \$(wc -l <matrix.txt) -eq 5 ] \
  && [ \$(awk '{ print length(\$0) }' matrix.txt | sort -u | wc -l) -eq 1 ] \
  && grep -q '^  0 T-shirt/top ' matrix.txt && grep -q '^  2 A rather long class na\.\. ' matrix.txt"
"$trainer" eval --checkpoint c.h5 --data names.h5 --json >eval.json 2>&1
check "eval --json is valid JSON" "$json_check" eval.json
acc_t=$(sed -n 's/^loss: [0-9.]* - accuracy: \([0-9.]*\)$/\1/p' eval.txt)
acc_j=$("$json_check" eval.json accuracy)
check "eval --json: the same accuracy as the table" awk -v a="${acc_t:-x}" -v b="${acc_j:-y}" 'BEGIN { exit !((a - b) ^ 2 < 1e-8) }'
printf '%s\n' '"say \"hi\""' >want.txt
"$json_check" eval.json classes.3 >got.txt 2>&1
check "eval --json: a class name with quotes is escaped" cmp -s want.txt got.txt
total=$("$json_check" eval.json confusion | tr -c '0-9' ' ' | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s }')
check "eval --json: the confusion matrix sums to the samples" test "$total" = 64 -a "$("$json_check" eval.json samples)" = 64
check "eval --json: per-class accuracy" eval '"$json_check" eval.json per_class.1.accuracy per_class.1.correct >/dev/null'
mpi 2 "$trainer" eval --checkpoint c.h5 --data names.h5 --json >eval2.json 2>&1
check "eval --json on 2 ranks: one object, the same confusion" \
  bash -c "'$json_check' eval2.json >/dev/null && [ \"\$('$json_check' eval2.json confusion)\" = \"\$('$json_check' eval.json confusion)\" ]"

# ---- info on each kind ----
"$trainer" info train.h5 >i1.txt 2>&1; rc=$?
check "info on a dataset: kind, shape, classes and counts" bash -c "[ $rc -eq 0 ] && grep -q '^train.h5: dataset' i1.txt \
  && grep -q '256 x 12 x 12 x 1 uint8' i1.txt && grep -q -E '^ +0  nw +[0-9]+ +[0-9.]+%' i1.txt \
  && grep -q -E '^ +total +256$' i1.txt"
"$trainer" info c2.h5 >i2.txt 2>&1; rc=$?
check "info on a checkpoint: kind, summary, optimizer, progress, who wrote it" bash -c "[ $rc -eq 0 ] \
  && grep -q '^c2.h5: trainer checkpoint' i2.txt && grep -q '^dense_2 (Dense) *(None, 4) *132$' i2.txt \
  && grep -q '^Optimizer: *rmsprop, lr 0.001' i2.txt && grep -q '^Trained: *2 epochs, 32 steps (global batch 16, seed 1)' i2.txt \
  && grep -q '^Written by: 2 ranks' i2.txt"
keras=${fixtures:+$fixtures/keras/cifar10_cnn_keras2.1.3.h5}
if [ -n "$keras" ] && [ -f "$keras" ]; then
  "$trainer" info "$keras" >i3.txt 2>&1; rc=$?
  check "info on a Keras file: kind, version, summary, optimizer" bash -c "[ $rc -eq 0 ] && grep -q ': Keras model file' i3.txt \
    && grep -q '^Keras: *version 2.1.3' i3.txt && grep -q '^Total params: 304,950' i3.txt && grep -q '^Optimizer: *Adam (lr 0.001' i3.txt"
else
  echo "skip - info on a Keras file: no fixture"
fi
echo "not HDF5" >junk.h5
"$trainer" info junk.h5 >/dev/null 2>err.txt; rc=$?
check "info on something else: one error line, exit 3" bash -c "[ $rc -eq 3 ] && [ \$(wc -l <err.txt) -eq 1 ] \
  && grep -q '^trainer: error: junk.h5' err.txt"

summary

#!/usr/bin/env bash
# test_images.sh TRAINER MAKE_IMAGES MAKE_DATASET DATA_DIR SOURCE_DIR: your own images, as a user runs them.
# Import of a PNG/JPEG tree (sizes, color modes, the split, threads), the export/import round trip of
# Fashion-MNIST's test set byte for byte (/usr/share/datasets/fashion-mnist; a synthetic set when it is not
# installed), predict on PNG files against predict on the dataset, the class names a checkpoint carries, and
# bad input: exit 3, one line naming the file, no output file; --skip-invalid counts.
# Prints "N passed, N failed"; exits non-zero on a failure.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 make_images=$2 make_dataset=$3 data=$4 src=$5
fashion=${FASHION_DIR:-/usr/share/datasets/fashion-mnist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1
unset TRAINER_PROGRESS

# ---- help: every option of the new commands is documented ----
options_of() { grep -o '{"[a-z-]*", *\(no\|required\)_argument' "$1" | sed 's/{"\([a-z-]*\)".*/\1/' | sort -u; }
help_lists_all() {
  local missing=""
  $trainer $1 --help >h.txt 2>&1 || return 1
  for o in $(options_of "$2"); do grep -q -- "--$o" h.txt || missing="$missing --$o"; done
  [ -z "$missing" ] || { echo "  $1 --help misses:$missing"; return 1; }
}
check "import images --help lists every option" help_lists_all "import images" "$src/trainer/cmd_import_images.c"
check "export --help lists every option" help_lists_all "export" "$src/trainer/cmd_export.c"
check "predict --help lists every option (images and datasets)" bash -c \
  "$(declare -f options_of help_lists_all); trainer='$trainer'; help_lists_all predict '$src/trainer/predict_images.c' \
   && help_lists_all predict '$src/trainer/cmd_eval.c'"
$trainer --help >h.txt
check "trainer --help lists export" grep -q '^  export ' h.txt

# ---- import: PNG and JPEG trees ----
"$make_images" png 40 4 12 12 png 1 && "$make_images" jpg 30 3 37 23 jpg 3 || { echo "cannot make images"; exit 1; }
$trainer import images png -o png.h5 --color-mode grayscale >out.txt 2>err.txt; rc=$?
check "import images of 12x12 PNGs (exit $rc: $(cat out.txt err.txt))" \
  bash -c "[ $rc -eq 0 ] && grep -q 'wrote png.h5: 40 images of 12x12x1, 4 classes' out.txt && [ ! -s err.txt ]"
# The progress bar: on a terminal (made with util-linux's script), never in a log.
SHELL=/bin/bash TERM=xterm timeout -k 5 60 script -qec "$trainer import images png -o bar.h5 --color-mode grayscale" \
  /dev/null >pty.txt 2>&1
check "a progress bar on a terminal" grep -q "$(printf '\033')\[K" pty.txt
$trainer import images png -o bar.h5 --color-mode grayscale >log.txt 2>&1
check "no progress bar in a log" bash -c "! grep -q \"\$(printf '\\033')\" log.txt && [ \$(wc -l <log.txt) -eq 1 ]"
$trainer info png.h5 >info.txt
check "info shows the folders as classes" bash -c "grep -q 'c0' info.txt && grep -q 'c3' info.txt"
$trainer import images jpg -o jpg1.h5 --size 16 16 --crop-to-aspect-ratio --threads 1 >/dev/null &&
  $trainer import images jpg -o jpg2.h5 --size 16 16 --crop-to-aspect-ratio --threads 2 >/dev/null
check "JPEGs resized on 1 and 2 threads give the same file contents" \
  bash -c "[ -n \"\$(h5dump -d /images jpg1.h5 | tail -n +2)\" ] && diff <(h5dump -d /images -d /labels jpg1.h5 | tail -n +2) \
  <(h5dump -d /images -d /labels jpg2.h5 | tail -n +2) >/dev/null"
$trainer import images jpg -o jpg.h5 >err.txt 2>&1; rc=$?
check "JPEGs of one size need no --size (exit $rc)" test $rc -eq 0
for mode in grayscale rgb rgba; do
  $trainer import images png -o m.h5 --color-mode $mode --size 8 8 --interpolation area >/dev/null 2>err.txt
  rc=$?
  case $mode in grayscale) c=1 ;; rgb) c=3 ;; rgba) c=4 ;; esac
  check "--color-mode $mode gives $c channels" bash -c "[ $rc -eq 0 ] && h5dump -H m.h5 | grep -q '( 40, 8, 8, $c )'"
done
$trainer import images png -o tr.h5 --val-split 0.25 --seed 7 --val-out va.h5 --color-mode grayscale >out.txt
check "--val-split 0.25 puts 10 of 40 in --val-out" grep -q 'tr.h5: 30 images.*va.h5: 10 images' out.txt

# ---- bad input: exit 3, one line naming the file, no output ----
# expect_error WHAT PATTERN ARGS...: exit 3, one stderr line matching PATTERN, no out.h5 nor temporary file.
expect_error() {
  local what=$1 pattern=$2; shift 2
  rm -f out.h5
  $trainer "$@" >out.txt 2>err.txt; local rc=$?
  if [ $rc -eq 3 ] && [ "$(wc -l <err.txt)" -eq 1 ] && grep -q -E -- "$pattern" err.txt && [ ! -e out.h5 ] &&
     [ -z "$(ls | grep 'out.h5.tmp')" ]; then ok "$what"
  else bad "$what: exit $rc, stderr: $(head -c 300 err.txt)"; fi
}
cp -r png broken
head -c 60 png/c1/00001.png >broken/c1/00001.png
expect_error "a truncated PNG" "broken/c1/00001.png: truncated or corrupt PNG" import images broken -o out.h5
cp png/c0/00000.png broken/c1/00001.png
head -c 300 jpg/c0/00000.jpg >broken/c2/cut.jpg
expect_error "a truncated JPEG" "broken/c2/cut.jpg: truncated" import images broken -o out.h5 --size 12 12
rm broken/c2/cut.jpg
echo "hello" >broken/c3/text.png
expect_error "a file that is not an image" "broken/c3/text.png: not a PNG or JPEG image" import images broken -o out.h5
$trainer import images broken -o out.h5 --skip-invalid --color-mode grayscale >out.txt 2>err.txt; rc=$?
check "--skip-invalid skips and counts it (exit $rc)" \
  bash -c "[ $rc -eq 0 ] && grep -q 'skipped 1 invalid file (the first: broken/c3/text.png' out.txt && [ -e out.h5 ]"
rm broken/c3/text.png
ln -s loop.png broken/c3/loop.png 2>/dev/null || ln -sf loop.png broken/c3/loop.png
expect_error "a symlink loop" "broken/c3/loop.png: cannot open: Too many levels of symbolic links" \
  import images broken -o out.h5
rm broken/c3/loop.png
cp jpg/c0/00000.jpg broken/c3/big.jpg
expect_error "an image of another size without --size" "broken/c3/big.jpg: 23x37, not the 12x12 of the first image" \
  import images broken -o out.h5
rm broken/c3/big.jpg
mkdir broken/c4
expect_error "an empty class folder" "broken/c4: no .png or .jpg image in this class folder" \
  import images broken -o out.h5
rmdir broken/c4
mkdir "broken/$(printf 'bad\377')"
cp png/c0/00000.png "broken/$(printf 'bad\377')/"
expect_error "a folder name that is not UTF-8" "not valid UTF-8" import images broken -o out.h5
rm -r "broken/$(printf 'bad\377')"
mkdir flat && cp png/c0/00000.png flat/
expect_error "a folder with no class folders" "flat: no class folders" import images flat -o out.h5
expect_error "a missing folder" "nothere: No such file" import images nothere -o out.h5
expect_error "JPEGs in rgba" "a JPEG has no alpha channel" import images jpg -o out.h5 --color-mode rgba
$trainer import images png -o out.h5 --val-split 0.2 --val-out v.h5 >/dev/null 2>err.txt; rc=$?
check "--val-split without --seed is a usage error (exit $rc)" bash -c "[ $rc -eq 2 ] && grep -q 'needs --seed' err.txt"
if [ "$(id -u)" -ne 0 ]; then
  chmod 000 broken/c0/00000.png
  $trainer import images broken -o out.h5 >/dev/null 2>err.txt; rc=$?
  check "an unreadable file (exit $rc)" bash -c "[ $rc -ne 0 ] && grep -q 'broken/c0/00000.png: cannot open' err.txt"
  chmod 644 broken/c0/00000.png
fi

# ---- export/import round trip: Fashion-MNIST's test set, byte for byte ----
if [ -f "$fashion/t10k-images-idx3-ubyte.gz" ]; then
  $trainer import idx --images "$fashion/t10k-images-idx3-ubyte.gz" --labels "$fashion/t10k-labels-idx1-ubyte.gz" \
    -o orig.h5 >/dev/null
  what="Fashion-MNIST's test set"
else
  echo "# $fashion not installed (jobs/install-deps.sh --data): round trip on a synthetic set"
  "$make_dataset" orig.h5 2000 28 4 3 >/dev/null
  what="a synthetic set"
fi
$trainer export images orig.h5 -o tree1 >/dev/null && $trainer import images tree1 -o back1.h5 --color-mode grayscale \
  --threads 2 >/dev/null && $trainer export images back1.h5 -o tree2 >/dev/null &&
  $trainer import images tree2 -o back2.h5 --color-mode grayscale >/dev/null
check "export then import of $what: the same /images, /labels and class_names, byte for byte" \
  bash -c "h5diff back1.h5 back2.h5 /images /images && h5diff back1.h5 back2.h5 /labels /labels && \
  diff <(h5dump -a /class_names back1.h5 | tail -n +2) <(h5dump -a /class_names back2.h5 | tail -n +2) >/dev/null && \
  [ \$(h5dump -H back1.h5 | grep -c '( 10000, 28, 28, 1 )\\|( 2000, 28, 28, 1 )') -eq 1 ]"
check "the class names survive (also one with a '/')" \
  bash -c "diff <(h5dump -a /class_names orig.h5 | tail -n +2) <(h5dump -a /class_names back1.h5 | tail -n +2) >/dev/null"
check "each class's samples keep their order and count" \
  bash -c "[ \$(ls tree1/*/ | grep -c png) -eq \$(ls tree2/*/ | grep -c png) ]"
mkdir -p notempty/x
expect_error "export into a folder that is not empty" "notempty: not empty" export images orig.h5 -o notempty

# ---- predict on PNG files: the class predict on the dataset gives, by the checkpoint's names ----
# The model wants 12x12: a 12x12 copy of the data, as PNG files and as a dataset; its last layer one unit a class.
$trainer import images tree1 -o small.h5 --size 12 12 --color-mode grayscale >/dev/null
n_classes=$(ls -d tree1/*/ | wc -l)
sed "s/Dense(4, /Dense($n_classes, /" "$src/tests/data/small.model" >small.model
$trainer train --model small.model --data small.h5 --epochs 1 --max-steps 30 --batch-size 32 --checkpoint c.h5 \
  --quiet >/dev/null 2>err.txt; rc=$?
check "training on the imported images writes a checkpoint (exit $rc: $(head -c 200 err.txt))" test $rc -eq 0
$trainer info c.h5 >info.txt
check "info shows the checkpoint's class names" grep -q "^Classes: *$n_classes: " info.txt
$trainer export images small.h5 -o small_tree >/dev/null
files=$(ls small_tree/*/*.png | sort -t/ -k3 | head -12)
$trainer predict --checkpoint c.h5 --data small.h5 -o p.h5 >/dev/null
$trainer predict --checkpoint c.h5 --top 1 $files >pred.txt 2>err.txt; rc=$?
same_class() {
  local names=() i=0 line f idx want got
  mapfile -t names <small_tree/class_names.txt 2>/dev/null
  for f in $files; do
    idx=$((10#$(basename "$f" .png)))
    want=$(h5dump -d /predictions -s $idx -c 1 p.h5 | sed -n 's/^ *(\([0-9]*\)): \([0-9]*\)/\2/p')
    line=$(grep -F "$f:" pred.txt)
    got=${line#*: }
    got=${got% *}
    [ "${names[$want]:-$want}" = "$got" ] || { echo "  $f: predict on the file says '$got', on the dataset ${names[$want]:-$want}"; return 1; }
  done
}
check "predict on PNG files gives the class predict on the dataset gives (exit $rc)" same_class
$trainer predict --checkpoint c.h5 --json $files >pred.json 2>err.txt; rc=$?
check "predict --json is one JSON object with 3 classes per file" \
  bash -c "[ $rc -eq 0 ] && [ \$(grep -o '\"probability\"' pred.json | wc -l) -eq 36 ]"
cp "$(echo $files | cut -d' ' -f1)" rgb.png
echo "x" >broken.png
expect_error "predict on a file that is not an image" "broken.png: not a PNG or JPEG image" \
  predict --checkpoint c.h5 rgb.png broken.png

summary

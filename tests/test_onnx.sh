#!/usr/bin/env bash
# test_onnx.sh TRAINER DATA_DIR FIXTURES TOOLS_DIR INSTALL_DEPS [TEST_ONNX_GRAPH [MAKE_DATASET]]: `trainer export onnx` checked
# outside the trainer: python3-onnx's checker and shape inference, then OpenCV's dnn module and a numpy evaluator
# of the ONNX operators (tests/tools/onnx_check.py) give `trainer predict`'s probabilities to 1e-5, for the
# presets, a model with BatchNormalization, every chain layer kind and the real Keras fixture (also against its
# reference outputs); float and uint8 inputs, batch 1, a fixed batch and a dynamic one, opsets 11 to 17. Then the
# graph kinds (Add, Concatenate, ZeroPadding2D, augmentation) from TEST_ONNX_GRAPH; RandomCrop at inference
# (smart_resize: a resize after ZeroPadding2D, a non-square window, an enlargement); a checkpoint trained on
# MAKE_DATASET's named classes keeps them in the metadata; and bad input: one line, the documented exit code, no
# file left. Prints "N passed, N failed"; exits non-zero when a check fails.
set -u
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
trainer=$1 data=$2 fixtures=$3 tools=$4 install_deps=$5 graph_test=${6:-} make_dataset=${7:-}
py=/usr/bin/python3 check="$tools/onnx_check.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1

# The runtimes come from Debian (jobs/install-deps.sh --onnx); a machine without them fails here, loudly.
if ! "$py" -c 'import onnx, cv2, numpy, h5py' 2>/dev/null; then
  "$install_deps" --onnx >/dev/null 2>&1
  "$py" -c 'import onnx, cv2, numpy, h5py' 2>/dev/null || { echo "FAIL - python3-onnx, python3-opencv, python3-numpy," \
    "python3-h5py missing: run jobs/install-deps.sh --onnx"; exit 1; }
fi

# pycheck DESCRIPTION ARGS...: an onnx_check.py job (check or same), run with the others at the end, in one
# process: onnx and OpenCV take a second to import.
: >jobs.tsv
pycheck() {
  local IFS=$'\t'
  echo "$*" >>jobs.tsv
}

# expect CODE PATTERN DESCRIPTION CMD...: CMD exits with CODE and its stderr is one line matching PATTERN.
expect() {
  local code=$1 pattern=$2 what=$3; shift 3
  "$@" >out.txt 2>err.txt; local rc=$?
  if [ "$rc" -eq "$code" ] && [ "$(wc -l <err.txt)" -le 2 ] && grep -q -E -- "$pattern" err.txt; then ok "$what"
  else bad "$what (exit $rc, stderr: $(head -c 300 err.txt))"; fi
}

# model NAME MODEL DATA.h5: NAME.h5 from a short training run of MODEL (preset or file) on DATA.h5, and
# pNAME.h5 its predictions on DATA.h5.
model() {
  local name=$1 m=$2 d=$3
  if "$trainer" train --model "$m" --data "$d" --epochs 2 --batch-size 16 --seed 5 --quiet --checkpoint "$name.h5" \
       >train.txt 2>&1 && "$trainer" predict --checkpoint "$name.h5" --data "$d" -o "p$name.h5" >/dev/null 2>&1; then
    return 0
  fi
  bad "train and predict $name: $(tail -3 train.txt)"
  return 1
}

# export_check NAME DATA.h5 ARGS...: exports NAME.h5 with ARGS and checks it against predict's probabilities.
export_check() {
  local name=$1 d=$2; shift 2
  local out="$name$(echo "$*" | tr -d ' -').onnx"
  if "$trainer" export onnx "$name.h5" -o "$out" "$@" >export.txt 2>&1; then
    pycheck "$name $*" check "$out" "$d" "p$name.h5"
  else
    bad "export $name $*: $(cat export.txt)"
  fi
}

"$py" "$check" data d28.h5 40 28 28 1 10 1 d32.h5 40 32 32 3 10 2 d12.h5 40 12 12 1 4 3 d15.h5 40 15 14 2 5 4 \
  d10.h5 24 10 10 2 4 6 || { echo "cannot make data"; exit 1; }

# ---- the presets and the chain kinds: every option at least once ------------------------------------------------
model fashion fashion-cnn d28.h5 && {
  export_check fashion d28.h5
  export_check fashion d28.h5 --input uint8 --batch 1
  export_check fashion d28.h5 --batch 8 --opset 11
}
model cifar cifar10-cnn d32.h5 && {
  export_check cifar d32.h5 --opset 17
  export_check cifar d32.h5 --input uint8 --batch dynamic --opset 12
}
model gap gap-cnn d28.h5 && export_check gap d28.h5 --opset 14 --batch 40
model bn "$data/bn.model" d12.h5 && {
  export_check bn d12.h5
  export_check bn d12.h5 --input uint8 --opset 15 --batch 1
}
model kinds "$data/onnx_kinds.model" d15.h5 && {
  export_check kinds d15.h5 --opset 16
  export_check kinds d15.h5 --input uint8 --batch 7 --opset 11
}

# ---- RandomCrop at inference: Keras's smart_resize as Slice and Resize (linear, half-pixel centres) -------------------
model crop "$data/onnx_crop.model" d28.h5 && {
  export_check crop d28.h5
  export_check crop d28.h5 --input uint8 --batch 1 --opset 11
}
model cropwide "$data/onnx_crop_wide.model" d28.h5 && export_check cropwide d28.h5 --opset 17 --batch 8
model cropup "$data/onnx_crop_up.model" d32.h5 && export_check cropup d32.h5 --input uint8 --opset 12

# ---- the class names: a dataset's names go into the checkpoint and from it into the metadata (onnx_check.py
# compares them with the dataset's own) ----------------------------------------------------------------------------------
if [ -z "$make_dataset" ]; then
  bad "no MAKE_DATASET given: the class names are not checked"
elif "$make_dataset" dnamed.h5 48 12 4 9 && model named "$data/small.model" dnamed.h5; then
  export_check named dnamed.h5
  # make_dataset's first four names, written here: not read back through the code under test.
  "$py" -c 'import json, sys, onnx
meta = {p.key: p.value for p in onnx.load(sys.argv[1]).metadata_props}
sys.exit(json.loads(meta.get("class_names", "null")) != ["nw", "n", "ne", "w"])' named.onnx &&
    ok "class_names in the ONNX metadata: [\"nw\", \"n\", \"ne\", \"w\"]" ||
    bad "class_names in the ONNX metadata: $("$trainer" info named.onnx 2>&1 | grep class_names)"
else
  bad "make_dataset dnamed.h5"
fi

# keras_check NAME FILE.h5 IMAGES.h5 REFERENCE.h5 [ARGS...]: a Keras model file exported with each ARGS (default:
# three ways), each giving predict's probabilities and the file's independently computed REFERENCE.h5.
keras_check() {
  local name=$1 file=$2 images=$3 reference=$4 args
  shift 4
  [ $# -gt 0 ] || set -- "--input uint8" "--batch 64" "--batch 1 --opset 11"
  if ! "$trainer" predict --checkpoint "$file" --data "$images" -o "p$name.h5" >/dev/null 2>&1; then
    bad "predict on $file"
    return
  fi
  for args in "$@"; do
    local out="$name$(echo "$args" | tr -d ' -').onnx"
    # shellcheck disable=SC2086
    if "$trainer" export onnx "$file" -o "$out" $args >export.txt 2>&1; then
      pycheck "$name $args" check "$out" "$images" "p$name.h5" "$reference"
    else
      bad "export $name $args: $(cat export.txt)"
    fi
  done
}

# ---- the real Keras 2.1.3 file (Sequential) ---------------------------------------------------------------------------
keras_check keras "$fixtures/keras/cifar10_cnn_keras2.1.3.h5" "$fixtures/keras/images.h5" "$fixtures/keras/reference.h5"

# ---- graph models: the ResNet presets, the graph kinds and the real tf.keras functional fixture -------------------------
model graph "$data/onnx_graph.model" d15.h5 && export_check graph d15.h5 --opset 11
model resnet20 resnet20 d32.h5 && export_check resnet20 d32.h5 --input uint8 --batch 1 --opset 17
model fresnet fashion-resnet d28.h5 && export_check fresnet d28.h5
f=$fixtures/keras-functional
keras_check functional "$f/resnet20v1_cifar10_tfkeras2.2.4.h5" "$f/images.h5" "$f/reference.h5" "--input uint8"

# ---- what info says ------------------------------------------------------------------------------------------------
"$trainer" export onnx bn.h5 -o info.onnx --input uint8 --batch 3 --opset 12 >/dev/null 2>&1
"$trainer" info info.onnx >info.txt 2>&1
grep -q '^info.onnx: ONNX model (IR version 7)' info.txt && grep -q 'opset  *ai.onnx 12' info.txt &&
  grep -q 'input  *images uint8 (3, 12, 12, 1)' info.txt && grep -q 'output  *probabilities float (3, 4)' info.txt &&
  grep -q 'BatchNormalization 3' info.txt && grep -q 'Cast 1' info.txt &&
  grep -q 'metadata  *trainer_version: ' info.txt && ok "info describes an ONNX file" || bad "info: $(cat info.txt)"
cp info.onnx noext && "$trainer" info noext | grep -q 'ONNX model' && ok "info knows ONNX without the extension" ||
  bad "info on an ONNX file without .onnx"

# ---- graph kinds (Add, Concatenate, ZeroPadding2D, augmentation), built by test_onnx_graph: the same numbers as an
# equivalent chain of plain kinds -------------------------------------------------------------------------------------
if [ -n "$graph_test" ]; then
  if TEST_ONNX_OUT=$work "$graph_test" >graph.txt 2>&1; then
    ok "test_onnx_graph"
    pycheck "graph kinds as ONNX = the equivalent chain" same graph.onnx chain.onnx d10.h5 8 10
  else
    bad "test_onnx_graph: $(tail -20 graph.txt)"
  fi
fi

# ---- bad input: one line, the documented code, no file left -----------------------------------------------------------
expect 2 'opsets 11 to 17' "opset 10 refused" "$trainer" export onnx bn.h5 -o bad.onnx --opset 10
expect 2 'opsets 11 to 17' "opset 18 refused" "$trainer" export onnx bn.h5 -o bad.onnx --opset 18
expect 2 'float or uint8' "--input int8 refused" "$trainer" export onnx bn.h5 -o bad.onnx --input int8
expect 2 'batch' "--batch 0 refused" "$trainer" export onnx bn.h5 -o bad.onnx --batch 0
expect 2 'required' "no -o" "$trainer" export onnx bn.h5
expect 2 "unknown kind 'tflite'" "export tflite refused" "$trainer" export tflite bn.h5 -o bad.onnx
expect 3 'd12.h5: ' "a dataset is not a checkpoint" "$trainer" export onnx d12.h5 -o bad.onnx
echo 'not hdf5' >text.h5
expect 3 'text.h5: ' "a text file is not a checkpoint" "$trainer" export onnx text.h5 -o bad.onnx
expect 3 'missing.h5: ' "a missing checkpoint" "$trainer" export onnx missing.h5 -o bad.onnx
expect 4 'nodir/m.onnx: cannot create' "an output directory that does not exist" \
  "$trainer" export onnx bn.h5 -o nodir/m.onnx
# Never a rename over a device or a pipe (as root, -o /dev/null would replace /dev/null).
mkfifo fifo
expect 4 'fifo: not a regular file' "a pipe is not replaced" "$trainer" export onnx bn.h5 -o fifo
[ -p fifo ] && ok "the pipe is still a pipe" || bad "the pipe was replaced"
rm -f fifo
mkdir ro && chmod 555 ro
if [ "$(id -u)" -ne 0 ]; then
  expect 4 'ro/m.onnx: cannot create' "a read-only directory" "$trainer" export onnx bn.h5 -o ro/m.onnx
fi
[ -z "$(ls -d bad.onnx* nodir 2>/dev/null; ls -A ro)" ] && ok "nothing left behind by the failures" ||
  bad "files left: $(ls -d bad.onnx* nodir 2>/dev/null; ls -A ro)"
# A failed export keeps the file that was there.
cp info.onnx keep.onnx && before=$(md5sum <keep.onnx)
"$trainer" export onnx text.h5 -o keep.onnx >/dev/null 2>&1
[ "$(md5sum <keep.onnx)" = "$before" ] && [ -z "$(ls keep.onnx.tmp* 2>/dev/null)" ] &&
  ok "a failed export leaves the old file whole" || bad "the old file changed"
echo 'garbage' >bad2.onnx
expect 3 'bad2.onnx: not an ONNX model' "info on a damaged .onnx" "$trainer" info bad2.onnx
"$py" "$check" deep deep.onnx 300000
expect 3 'deep.onnx: not an ONNX model this reader takes' "info on 4 MB of nested subgraphs (no stack overflow)" \
  "$trainer" info deep.onnx

# ---- the runtimes: every job queued above ----------------------------------------------------------------------------
"$py" "$check" batch jobs.tsv >py.txt 2>&1
while IFS= read -r line; do
  case $line in
    "ok - "*) ok "${line#ok - }" ;;
    *) bad "${line#FAIL - }" ;;
  esac
done <py.txt
[ "$(wc -l <py.txt)" -eq "$(wc -l <jobs.tsv)" ] && ok "every runtime job reported" || bad "runtime jobs: $(tail -5 py.txt)"

summary

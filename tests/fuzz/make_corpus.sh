#!/usr/bin/env bash
# make_corpus.sh BUILD_DIR [FIXTURES_DIR]: rebuilds the seed corpus in tests/fuzz/corpus/ from a normal build
# (its trainer, make_dataset and bad_dataset) and the Keras fixture of shared/fixtures. The corpus is committed;
# run this only to change it. Kept small (a few KB a file): the fuzzers mutate it, they do not need it large.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
fixtures=${2:-$here/../../../shared/fixtures}
trainer=$build/trainer/trainer make_dataset=$build/tests/make_dataset bad_dataset=$build/tests/bad_dataset
make_images=$build/tests/make_images
corpus=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
rm -rf "$corpus"
mkdir -p "$corpus"/{model_parse,keras_config,dataset,checkpoint,onnx,callback,image}

# ---- model files: the test model, every layer kind, Keras's argument forms, and a few mistakes -------------
cp "$here/../data/small.model" "$corpus/model_parse/small.model"
# functional statements: every graph layer, a tensor read three times, name=, Model(...)
cp "$here/../data/graph.model" "$corpus/model_parse/functional.model"
cp "$here/../data/augment.model" "$corpus/model_parse/augment.model"
cat >"$corpus/model_parse/every_layer.model" <<'EOF'
# every layer kind, positional and keyword arguments, tuples
Input(shape=(16, 16, 1))
Conv2D(filters=4, kernel_size=(3, 2), strides=(1, 2), padding='same', activation='relu', use_bias=False)
BatchNormalization(momentum=0.9, epsilon=1e-5)
AveragePooling2D(pool_size=(2, 2), strides=None, padding='same')
Activation('tanh')
MaxPooling2D(2, 1, 'valid')
Conv2D(4, 1, activation="sigmoid")
GlobalMaxPooling2D()
Dense(units=8, activation='linear')
BatchNormalization(-1, 0.99, 0.001, False, True)
Dropout(rate=0.5)
Dense(3)
Activation('softmax')
EOF
cat >"$corpus/model_parse/cifar10_cnn.model" <<'EOF'
Input(shape=(32, 32, 3))
Conv2D(filters=16, kernel_size=2, strides=1, padding='same', activation='relu')
MaxPooling2D(pool_size=2)
Conv2D(filters=32, kernel_size=2, strides=1, padding='same', activation='relu')
MaxPooling2D(pool_size=2)
Conv2D(filters=64, kernel_size=2, strides=1, padding='same', activation='relu')
MaxPooling2D(pool_size=2)
Dropout(0.3)
Flatten()
Dense(500, activation='relu')
Dropout(0.4)
Dense(10, activation='softmax')
EOF
printf 'Input(shape=(28, 28, 1))\nConv2D(16, 2, padding="same", activation="relu")\nGlobalAveragePooling2D()\nDense(10, activation="softmax")  # gap\n' \
  >"$corpus/model_parse/gap.model"
printf 'Input(shape=(12, 12, 1))\nConv2D(8, 3, paddin="same")\nBatchNormalization()\nDense(4, activation=softmax)\nDropout(1.0)\n' \
  >"$corpus/model_parse/mistakes.model"
printf 'Input(shape=(4, 4, 1))\nFlatten()\nDense(2, activation=\x27softmax\x27)\n' >"$corpus/model_parse/tiny.model"
printf 'Input(shape=(8, 8, 1))\nConv2D(4, 2, kernel_regularizer=regularizers.l2(1e-4))\nFlatten()\nDense(3, activation="softmax", kernel_regularizer=l1_l2(l1=0.0, l2=5e-4))\n' \
  >"$corpus/model_parse/regularizer.model"

# ---- checkpoints: a tiny model trained a few steps with each optimizer; one without /trainer (a Keras file) ---
cp "$corpus/model_parse/tiny.model" "$work/tiny.model"
printf 'Input(shape=(8, 8, 1))\nConv2D(2, 2, activation="relu")\nMaxPooling2D(2)\nFlatten()\nDense(3, activation="softmax")\n' \
  >"$work/conv.model"
"$make_dataset" "$work/d8.h5" 16 8 3 1
for opt in sgd rmsprop adam; do
  "$trainer" train --model "$work/conv.model" --data "$work/d8.h5" --optimizer "$opt" --max-steps 2 --batch-size 8 \
    --quiet --checkpoint "$corpus/checkpoint/conv_$opt.h5"
done
cp "$corpus/checkpoint/conv_adam.h5" "$corpus/checkpoint/keras_only.h5"
# A schedule and both callbacks with their state (and EarlyStopping's best weights) in /trainer.
"$trainer" train --model "$work/conv.model" --data "$work/d8.h5" --val "$work/d8.h5" --optimizer sgd --epochs 3 \
  --batch-size 8 --lr-schedule cosine --warmup-epochs 1 --quiet --checkpoint "$corpus/checkpoint/conv_sched.h5" \
  --callback "ReduceLROnPlateau(monitor='loss', factor=0.5, patience=1, min_delta=10)" \
  --callback "EarlyStopping(monitor='val_acc', patience=5, restore_best_weights=True)"
"$bad_dataset" unlink "$corpus/checkpoint/keras_only.h5" trainer

# ---- Keras model_config JSON: the real Keras 2.1.3 file's, and what the trainer writes -------------------------
config() { h5dump -w 0 -a /model_config "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }
config "$fixtures/keras/cifar10_cnn_keras2.1.3.h5" >"$corpus/keras_config/cifar10_cnn_keras2.1.3.json"
config "$corpus/checkpoint/conv_sgd.h5" >"$corpus/keras_config/conv.json"
"$trainer" train --model "$corpus/model_parse/regularizer.model" --data "$work/d8.h5" --max-steps 1 --batch-size 8 \
  --quiet --checkpoint "$work/regularizer.h5"
config "$work/regularizer.h5" >"$corpus/keras_config/regularizer.json"
"$make_dataset" "$work/d16.h5" 8 16 3 1
"$trainer" train --model "$corpus/model_parse/every_layer.model" --data "$work/d16.h5" --max-steps 1 --quiet \
  --checkpoint "$work/every.h5"
config "$work/every.h5" >"$corpus/keras_config/every_layer.json"
"$make_dataset" "$work/d8g.h5" 8 8 3 1
"$trainer" train --model "$here/../data/graph.model" --data "$work/d8g.h5" --max-steps 1 --quiet --checkpoint "$work/graph.h5"
config "$work/graph.h5" >"$corpus/keras_config/functional.json"

# ---- ONNX files as the export writes them: a small conv net (float, dynamic batch; uint8, batch 2, opset 11) and
# every layer kind --------------------------------------------------------------------------------------------------
"$trainer" train --model "$work/conv.model" --data "$work/d8.h5" --max-steps 2 --batch-size 8 --quiet \
  --checkpoint "$work/conv8.h5"
"$trainer" export onnx "$work/conv8.h5" -o "$corpus/onnx/conv.onnx" >/dev/null
"$trainer" export onnx "$work/conv8.h5" -o "$corpus/onnx/conv_uint8_opset11.onnx" --input uint8 --batch 2 \
  --opset 11 >/dev/null
"$trainer" export onnx "$work/every.h5" -o "$corpus/onnx/every_layer.onnx" >/dev/null
# subgraphs nested past the reader's depth limit (protobuf-c itself recurses without one)
/usr/bin/python3 "$here/../tools/onnx_check.py" deep "$corpus/onnx/nested_subgraphs.onnx" 40
"$make_dataset" "$work/d12.h5" 8 12 4 1
"$trainer" train --model "$here/../data/augment.model" --data "$work/d12.h5" --max-steps 1 --quiet \
  --checkpoint "$work/augment.h5"
config "$work/augment.h5" >"$corpus/keras_config/augment.json"

# ---- --callback texts: both callbacks, every argument, positional forms, a few mistakes --------------------------
printf "ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2, min_delta=1e-4, cooldown=1, min_lr=1e-6)" \
  >"$corpus/callback/plateau"
printf "EarlyStopping(monitor='val_accuracy', min_delta=0, patience=5, verbose=1, mode='max', baseline=0.9, restore_best_weights=True, start_from_epoch=2)" \
  >"$corpus/callback/early"
printf "EarlyStopping('loss', 0.01, 3, 0, 'auto', None, False)" >"$corpus/callback/positional"
printf "ReduceLROnPlateau(factor=1.5, patiense=2" >"$corpus/callback/mistakes"
# ---- datasets: tiny ones as the writer makes them, and a few broken layouts -----------------------------------
"$make_dataset" "$corpus/dataset/d4.h5" 4 8 2 1
"$make_dataset" "$corpus/dataset/d12.h5" 12 8 4 2
for kind in labels-2d count-mismatch empty; do "$bad_dataset" layout "$corpus/dataset/$kind.h5" "$kind"; done

# ---- images: small PNGs and JPEGs (gray, RGB) and a PNG cut short ------------------------------------------------
"$make_images" "$work/png1" 1 1 6 5 png 1 && "$make_images" "$work/png3" 1 1 9 4 png 3
"$make_images" "$work/jpg1" 1 1 8 8 jpg 1 && "$make_images" "$work/jpg3" 1 1 17 9 jpg 3
cp "$work/png1/c0/00000.png" "$corpus/image/gray.png"
cp "$work/png3/c0/00000.png" "$corpus/image/rgb.png"
cp "$work/jpg1/c0/00000.jpg" "$corpus/image/gray.jpg"
cp "$work/jpg3/c0/00000.jpg" "$corpus/image/rgb.jpg"
head -c 40 "$corpus/image/rgb.png" >"$corpus/image/cut.png"
du -sh "$corpus"

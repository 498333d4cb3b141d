/* onnx_export.h: a model and its weights as an ONNX file that other runtimes (OpenCV, onnxruntime, ...) run. */
#ifndef TRAINER_ONNX_EXPORT_H
#define TRAINER_ONNX_EXPORT_H

#include "error.h"
#include "model.h"

/* The opsets written: every op emitted has its current form from 11 on; 17 is the newest one the checker of
 * Debian's python3-onnx (1.12) knows, so the newest that the tests can check. */
#define ONNX_OPSET_MIN 11
#define ONNX_OPSET_MAX 17
#define ONNX_OPSET_DEFAULT 13

struct onnx_export_opts {
    int opset;          /* ONNX_OPSET_MIN..ONNX_OPSET_MAX */
    int batch;          /* > 0: a fixed batch size; 0: dynamic (the symbolic dim "N") */
    int uint8_input;    /* 1: `images` are the raw bytes, scaled by 1/255 inside the graph; 0: float in [0, 1] */
};

/* Writes m with its parameters (params: the slab, Keras layout, m->n_params floats) to `path` as an ONNX model:
 * input `images` (N, H, W, C) as in Keras, output `probabilities` (N, classes) after the softmax. Layers are
 * walked by their input edges. names[0..n_names) are the class names for the metadata (NULL, 0: none).
 * `source` names the model in messages. Written whole or not at all (temporary file, fsync, rename).
 * ERR_USAGE: opset out of range; ERR_INPUT "SOURCE: layer NAME (Kind): ..." for a layer with no ONNX form;
 * ERR_IO "PATH: ..." when it cannot be written. */
int onnx_export(const char *path, const struct model *m, const float *params, const struct onnx_export_opts *o,
                const char *const *names, int n_names, const char *source, struct error *err);

#endif

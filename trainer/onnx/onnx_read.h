/* onnx_read.h: what an ONNX model file holds (for `trainer info`): opsets, inputs and outputs, nodes by op
 * type, weights, metadata. */
#ifndef TRAINER_ONNX_READ_H
#define TRAINER_ONNX_READ_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define ONNX_INFO_MAX_IO 4
#define ONNX_INFO_MAX_DIMS 8
#define ONNX_INFO_MAX_OPS 48
#define ONNX_INFO_MAX_META 8
#define ONNX_INFO_MAX_OPSETS 4

/* Strings from the file are cut to fit; counts are whole. */
struct onnx_value {
    char name[64];
    char elem_type[16]; /* "float", "uint8", ... or "type N" */
    int rank;           /* -1: no shape recorded */
    char dims[ONNX_INFO_MAX_DIMS][24]; /* a number or a symbolic name ("N"); "?" when unset */
};

struct onnx_info {
    int64_t ir_version;
    char producer[64], producer_version[32];
    int n_opsets;                  /* all of them; the first ONNX_INFO_MAX_OPSETS kept */
    struct { char domain[32]; int64_t version; } opsets[ONNX_INFO_MAX_OPSETS];
    int n_inputs, n_outputs;       /* graph inputs that are not initializers; outputs */
    struct onnx_value inputs[ONNX_INFO_MAX_IO], outputs[ONNX_INFO_MAX_IO];
    int n_nodes;
    int n_op_types;                /* distinct op types, first ONNX_INFO_MAX_OPS kept in order of appearance */
    struct { char op[32]; int count; } ops[ONNX_INFO_MAX_OPS];
    int n_initializers;
    int64_t n_weights;             /* elements of all initializers */
    int n_meta;
    struct { char key[48]; char value[1024]; } meta[ONNX_INFO_MAX_META];
};

/* Parses an ONNX ModelProto from bytes. ERR_INPUT "FILE: not an ONNX model: why" when the bytes are not a
 * protobuf ModelProto with an IR version and a graph. */
int onnx_info_parse(const uint8_t *bytes, size_t len, const char *file, struct onnx_info *info, struct error *err);

/* Reads and parses PATH (at most 2 GiB, protobuf's limit). ERR_INPUT as above or when PATH cannot be read. */
int onnx_info_read(const char *path, struct onnx_info *info, struct error *err);

#endif

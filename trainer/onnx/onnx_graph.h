/* onnx_graph.h (private to trainer_onnx): an ONNX graph built node by node into protobuf-c messages, all of
 * it in one arena, then packed and written atomically. */
#ifndef TRAINER_ONNX_GRAPH_H
#define TRAINER_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "onnx.pb-c.h"

/* Every allocation of a graph comes from its arena and goes with onnx_graph_destroy. A helper that cannot
 * allocate marks the graph failed and returns NULL; the others accept that NULL, so a builder checks once,
 * at the end (onnx_graph_write says "out of memory"). */
struct onnx_graph;

struct onnx_graph *onnx_graph_create(const char *name);
void onnx_graph_destroy(struct onnx_graph *g);

/* A string of the arena, printf-style (tensor and node names). */
char *onnx_graph_strf(struct onnx_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a node `op` reading ins[0..n_in) and writing `out`, named after its output. */
Onnx__NodeProto *onnx_graph_node(struct onnx_graph *g, const char *op, const char *const *ins, int n_in,
                                 const char *out);
void onnx_graph_attr_int(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, int64_t v);
void onnx_graph_attr_ints(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, const int64_t *v,
                          int n);
void onnx_graph_attr_float(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, float v);
void onnx_graph_attr_string(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, const char *v);

/* An initializer float32 tensor of these dims, stored as raw little-endian bytes: returns its (zeroed)
 * values for the caller to fill, or NULL. */
float *onnx_graph_init_f32(struct onnx_graph *g, const char *name, const int64_t *dims, int rank);
/* A 1-D int64 initializer (Pad's pads, Slice's starts/ends/axes). */
void onnx_graph_init_i64(struct onnx_graph *g, const char *name, const int64_t *v, int n);

/* A graph input or output: a tensor of elem_type (ONNX__TENSOR_PROTO__DATA_TYPE__*); a dim < 0 is the
 * symbolic dim "N". */
void onnx_graph_io(struct onnx_graph *g, int output, const char *name, int elem_type, const int64_t *dims,
                   int rank);

/* The model's header: opset of the default domain, IR version, producer, metadata (n pairs of key, value). */
struct onnx_model_info {
    int opset;
    int ir_version;
    const char *producer_name, *producer_version, *doc;
    int n_meta;
    const char *const *meta_keys;
    const char *const *meta_values;
};

/* Packs the model and writes `path` whole or not at all: PATH.tmp.<pid> beside it, written, fsynced, renamed
 * over PATH, the directory fsynced. ERR_IO "PATH: cannot ...: reason"; ERR_INTERNAL when out of memory. */
int onnx_graph_write(struct onnx_graph *g, const struct onnx_model_info *info, const char *path,
                     struct error *err);

#endif

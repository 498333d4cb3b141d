/* dnn.h: the oneDNN engine and stream, the call-checking macro, and memory helpers shared by the layers. */
#ifndef TRAINER_DNN_H
#define TRAINER_DNN_H

#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

#include "error.h"

/* One CPU engine and one in-order stream per process; every primitive runs on them. */
struct dnn {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
};

int dnn_init(struct dnn *d, struct error *err);
void dnn_release(struct dnn *d);

/* Wraps every oneDNN call: on failure records the call, file, line and oneDNN's status string in `err`
 * (which must be in scope) and jumps to the function's `fail` label. */
#define DNN_CHECK(call)                                                                             \
    do {                                                                                            \
        dnnl_status_t dnn_s_ = (call);                                                              \
        if (dnn_s_ != dnnl_success) {                                                               \
            dnn_fail(err, #call, __FILE__, __LINE__, dnn_s_);                                       \
            goto fail;                                                                              \
        }                                                                                           \
    } while (0)

void dnn_fail(struct error *err, const char *call, const char *file, int line, dnnl_status_t s);

/* Plain descriptors in Keras order. 4-D tensors are logical (N, C, H, W) in oneDNN; NHWC is how Keras
 * (and our datasets and Flatten) lay them out in memory. */
int dnn_md_nhwc(dnnl_memory_desc_t *md, int n, int h, int w, int c, struct error *err);
int dnn_md_nc(dnnl_memory_desc_t *md, int n, int c, struct error *err);

/* Creates memory for md. With handle NULL oneDNN allocates (and the memory owns it); otherwise the
 * memory wraps the caller's buffer (e.g. a slice of the parameter slab). */
int dnn_mem(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, const struct dnn *d, void *handle,
            struct error *err);

/* The float data behind mem (NULL on failure). */
float *dnn_ptr(dnnl_memory_t mem);

const dnnl_memory_desc_t *dnn_md_of(dnnl_memory_t mem);

/* A reorder from one layout to another, created once and executed every step. When the two
 * descriptors are equal the reorder is empty and run() does nothing: callers need no special case. */
struct dnn_reorder {
    dnnl_primitive_t prim; /* NULL: the layouts are equal */
    dnnl_memory_t dst;     /* owned, NULL when prim is NULL */
};

/* Prepares converting memory of layout `from` to layout `to`. When they differ, allocates the
 * destination memory (reorder->dst). */
int dnn_reorder_init(struct dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                     const struct dnn *d, struct error *err);
/* Runs the reorder and returns what to use downstream: r->dst, or src itself when nothing was needed. */
dnnl_memory_t dnn_reorder_run(struct dnn_reorder *r, dnnl_memory_t src, const struct dnn *d,
                              struct error *err);
/* Reorders src into an existing dst memory (used where the destination is not owned, e.g. a slab). */
int dnn_reorder_into(struct dnn_reorder *r, dnnl_memory_t src, dnnl_memory_t dst, const struct dnn *d,
                     struct error *err);
void dnn_reorder_release(struct dnn_reorder *r);

/* Destroys the primitives and memories of the two arrays that are not NULL (a layer's runtime, at destroy). */
void dnn_destroy_all(const dnnl_primitive_t *prims, size_t n_prims, const dnnl_memory_t *mems, size_t n_mems);

/* Runs one primitive with its (arg, memory) pairs on d's stream and waits. */
int dnn_exec(dnnl_primitive_t prim, const struct dnn *d, int nargs, const dnnl_exec_arg_t *args,
             struct error *err);

/* Copies between a memory of any layout and a plain buffer laid out as `plain_md` (used by tests and
 * at the network's edges). Creates a throw-away reorder: not for the training step. */
int dnn_read_plain(dnnl_memory_t mem, const dnnl_memory_desc_t *plain_md, float *out, const struct dnn *d,
                   struct error *err);
int dnn_write_plain(dnnl_memory_t mem, const dnnl_memory_desc_t *plain_md, const float *in,
                    const struct dnn *d, struct error *err);

#endif

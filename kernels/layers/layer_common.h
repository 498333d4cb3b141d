/* layer_common.h: what several layer kinds share beyond layer.h: messages about a layer, argument lookup and
 * the `activation=` choice, parameter shapes and their Keras init, the trivial parse/infer, the release of a
 * layer's outputs, and reorders into memory a layer already has. Internal to kernels/. */
#ifndef TRAINER_LAYER_COMMON_H
#define TRAINER_LAYER_COMMON_H

#include "layer.h"

/* ---- parsing, shapes, init ---- */

/* ERR_INPUT "line L: NAME: what" about one layer of the model (no "line L: " when it did not come from a
 * text file); the model reader puts the file name in front. */
int layer_spec_error(const struct layer_spec *spec, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The argument the accessors read for keyword `key` or position `pos` (pos < 0: keyword only), so that a
 * value error can point at its column; NULL when the call does not have it. */
const struct arg *layer_find_arg(const struct args *a, const char *key, int pos);

/* Conv2D's and Dense's `activation=`: one of activation_names or None, which like absence means linear
 * (Keras's default). Softmax is accepted: where it is allowed is the caller's question. */
int layer_args_activation(struct args *a, int pos, enum activation *out, struct error *err);

/* `, KEY=l2(x)` (or l1(x), or l1_l2(l1=x, l2=y)) for a regularizer that is set, with the shortest digits that
 * read back as the same doubles; "" for none, so that models without one keep their text. */
void layer_regularizer_text(const struct regularizer *r, const char *key, char *buf, size_t size);

/* For a kind that takes no argument (Keras's optional ones are not supported): anything given is left
 * unused, which the model reader reports as an error. */
int layer_parse_nothing(struct layer_spec *spec, struct args *a, struct error *err);

/* For a kind without parameters whose output has its input's shape (Dropout, Activation). */
int layer_infer_same_shape(struct layer_spec *spec, struct error *err);

/* Fills p with the name, the Keras dims and their product (p->offset is left 0: the network sets it). */
void layer_set_param(struct param_info *p, const char *name, int rank, const long *dims);

/* The initializers of a Conv2D or Dense (kernel, optional bias): params[0] by its kernel_initializer with the given
 * fans, params[1] zeros. w points at params[0]: the offsets in spec are slab offsets, used relative to it. */
void layer_init_kernel_bias(const struct layer_spec *spec, float *w, long fan_in, long fan_out,
                            double (*rnd)(void *), void *state);

/* ---- runtime ---- */

/* Destroys l->dst and l->diff_src when set and clears them: every kind owns both. Memories that only view
 * another's buffer free nothing else, so the order against the kind's own memories does not matter. */
void layer_release_outputs(struct layer *l);

/* A bare reorder primitive from `from` to `to`; *prim is NULL when the layouts are equal (nothing to do).
 * Unlike dnn_reorder_init it allocates no destination: the caller reorders into memory it already has. */
int layer_reorder_prim(dnnl_primitive_t *prim, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                       const struct dnn *d, struct error *err);

/* dnn_reorder_init for a reorder run with dnn_reorder_into, towards memory the layer does not own (the
 * gradient slab, l->diff_src, l->dst's buffer): its own destination would never be used, so it is freed at
 * once. */
int layer_reorder_into_init(struct dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                            const struct dnn *d, struct error *err);

/* A layer that computes on a plain (n, h, w, c) / (n, c) copy of its input, whatever layout it is handed
 * (Dropout; BatchNormalization on other layouts than its own): dst is plain, forward copies src into it, and
 * backward writes the input gradient plain, reordered to src's layout when that differs. */
struct plain_io {
    dnnl_primitive_t to_plain;   /* src layout -> plain dst; NULL when src is already plain */
    dnnl_primitive_t from_plain; /* plain dx -> diff_src in the src layout; NULL when plain or no diff_src */
    dnnl_memory_t dx_plain;      /* backward scratch, only when from_plain is used */
};
/* Sets l->dst_md (plain, spec->in's shape), l->dst, and l->diff_src when need_diff_src. */
int plain_io_create(struct plain_io *io, struct layer *l, const struct dnn *d, int need_diff_src,
                    struct error *err);
/* l->dst = src, plain. */
int plain_io_forward(const struct plain_io *io, struct layer *l, dnnl_memory_t src, const struct dnn *d,
                     struct error *err);
/* Where backward writes the plain input gradient; then plain_io_backward puts it in l->diff_src. */
float *plain_io_dx(const struct plain_io *io, const struct layer *l);
int plain_io_backward(const struct plain_io *io, struct layer *l, const struct dnn *d, struct error *err);
/* Safe on a zeroed or half-created io. */
void plain_io_release(struct plain_io *io);

/* One input of a layer that computes on plain (n, h, w, c) / (n, c) data (Concatenate, ZeroPadding2D): seen plain
 * whatever layout it comes in, and its gradient, computed plain, put back in that layout. */
struct plain_edge {
    dnnl_memory_desc_t md;        /* plain, with the input's logical dims */
    dnnl_primitive_t to_plain;    /* input layout -> md; NULL when the input is plain */
    dnnl_memory_t x;              /* the plain copy, when to_plain */
    dnnl_primitive_t from_plain;  /* md -> input layout for the gradient; NULL when plain or no gradient */
    dnnl_memory_t dx;             /* the plain gradient, when from_plain */
};
/* For an input of shape s (batch n) in layout src_md; the gradient part only when need_diff. */
int plain_edge_init(struct plain_edge *e, const dnnl_memory_desc_t *src_md, const struct shape *s, int n,
                    int need_diff, const struct dnn *d, struct error *err);
/* The input's data, plain (a reorder into e->x, or src's own buffer); NULL on error. */
const float *plain_edge_in(struct plain_edge *e, dnnl_memory_t src, const struct dnn *d, struct error *err);
/* Where to write the plain gradient of the input whose gradient memory is diff_src; then plain_edge_out. */
float *plain_edge_dx(const struct plain_edge *e, dnnl_memory_t diff_src);
int plain_edge_out(const struct plain_edge *e, dnnl_memory_t diff_src, const struct dnn *d, struct error *err);
void plain_edge_release(struct plain_edge *e);

/* The eltwise backward `alg` (an *_use_dst_for_bwd kind: the derivative from the forward output) on md for
 * src, dst and their gradients. */
int layer_eltwise_bwd_create(dnnl_primitive_t *prim, dnnl_alg_kind_t alg, const dnnl_memory_desc_t *md,
                             const struct dnn *d, struct error *err);

#endif

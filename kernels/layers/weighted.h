/* weighted.h: the runtime Conv2D and Dense share, layers with weights and a fused activation: the kernel (and
 * bias) stay in the parameter slab in Keras layout and are reordered to oneDNN's layout every step, the
 * activation is a post-op of forward and its derivative is taken from forward's output in backward. A kind
 * describes its three oneDNN operations; this module does the rest. Internal to kernels/. */
#ifndef TRAINER_WEIGHTED_H
#define TRAINER_WEIGHTED_H

#include "layer.h"

/* What a kind hands to weighted_create. The op descriptors are on format_any tensors, so that oneDNN picks
 * its fastest layouts; they must stay valid during the call only. */
struct weighted_desc {
    const_dnnl_op_desc_t fwd;   /* forward_training, with bias_md as bias when the layer has one */
    const_dnnl_op_desc_t bwd_w; /* backward_weights (and bias) */
    const_dnnl_op_desc_t bwd_d; /* backward_data; NULL when no diff_src is wanted */
    dnnl_memory_desc_t wei_md;  /* the kernel as the slab holds it: Keras order (Conv2D hwio, Dense io or hwio) */
    dnnl_memory_desc_t bias_md; /* (O) x, as the slab holds the bias */
    enum activation act;        /* what forward applies; must be weighted_act_fusable */
};

/* Linear, or an activation whose derivative oneDNN computes from the forward *output* (relu, sigmoid,
 * tanh), so that backward needs no copy of the pre-activation. */
int weighted_act_fusable(enum activation act);

/* ops->create of such a kind, after it set l->priv, l->dst and l->diff_src to NULL: makes the primitives and
 * memories for batch l->n on l->src_md, l->dst_md (oneDNN's choice) and l->dst, and l->diff_src when
 * wd->bwd_d is set. The layer has a bias when l->spec->n_params > 1. On failure everything made is
 * released. */
int weighted_create(struct layer *l, const struct dnn *d, const struct weighted_desc *wd, struct error *err);

/* The ops of such a kind, as layer_ops wants them. */
int weighted_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err);
int weighted_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                      struct error *err);
/* Safe on a layer whose create() failed half way. */
void weighted_destroy(struct layer *l);

#endif

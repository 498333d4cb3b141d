/* pooling.h: the oneDNN pooling primitive pair (forward, backward and max pooling's workspace) shared by
 * the windowed (pooling.c) and the global (global_pooling.c) pooling layers. Internal to those two files. */
#ifndef TRAINER_POOLING_H
#define TRAINER_POOLING_H

#include "dnn.h"
#include "error.h"
#include "layer.h"

/* Window geometry in oneDNN's spatial order (h, w). */
struct pool_geom {
    dnnl_alg_kind_t alg; /* dnnl_pooling_max or dnnl_pooling_avg_exclude_padding */
    dnnl_dims_t kernel, strides, pad_l, pad_r;
};

struct pool_prims {
    dnnl_primitive_t fwd;
    dnnl_primitive_t bwd; /* NULL when created without backward */
    dnnl_memory_t ws;     /* max pooling with backward: where each maximum was found; forward writes it,
                             backward reads it, so backward never searches the windows again */
};

/* Creates forward from src_md (any layout, used as is) to dst_md (a concrete layout or format `any`; the
 * layout oneDNN chose is stored in *dst_md_out). With with_bwd the forward is a training one and the
 * backward produces diff_src in src_md from diff_dst in *dst_md_out; otherwise forward is inference only.
 * On failure everything made so far is released and p is zeroed. */
int pool_prims_create(struct pool_prims *p, const struct pool_geom *g, const dnnl_memory_desc_t *src_md,
                      const dnnl_memory_desc_t *dst_md, dnnl_memory_desc_t *dst_md_out, int with_bwd,
                      const struct dnn *d, struct error *err);
int pool_prims_forward(const struct pool_prims *p, dnnl_memory_t src, dnnl_memory_t dst, const struct dnn *d,
                       struct error *err);
/* Needs the forward of the same batch to have run first (max pooling reads its workspace). */
int pool_prims_backward(const struct pool_prims *p, dnnl_memory_t diff_dst, dnnl_memory_t diff_src,
                        const struct dnn *d, struct error *err);
/* Safe on a zeroed or partially created p. */
void pool_prims_release(struct pool_prims *p);

/* Tests: 1 makes MaxPooling2D layers created from now on run oneDNN's pooling where they would run the 2x2
 * kernel of pooling.c (the two must give the same bits). */
extern int pooling_onednn_only;
/* The channel block (8 or 16) with which a MaxPooling2D `spec` on a batch of n in layout `tag` runs the 2x2
 * kernel, or 0 when it runs oneDNN's pooling (tests). */
int pooling_2x2_block_for(const struct layer_spec *spec, int n, dnnl_format_tag_t tag);

#endif

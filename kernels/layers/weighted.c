/* weighted.c: the runtime of the layers with weights and a fused activation, Conv2D and Dense (weighted.h). */
#include "weighted.h"

#include <stdlib.h>

#include "layer_common.h"

/* Primitives and memories of one such layer for one batch size, all made in weighted_create. Data is
 * logical (N, C[, H, W]) and weights (O, I[, KH, KW]) as oneDNN sees them; layouts are what oneDNN chose
 * unless said. */
struct weighted_rt {
    dnnl_primitive_t fwd;      /* forward_training with the activation as a post-op */
    dnnl_primitive_t act_bwd;  /* eltwise backward from the forward dst; NULL for linear (and logits), and
                                  for a ReLU whose derivative the next layer applies (relu_bwd_in_next) */
    dnnl_primitive_t bwd_w;    /* backward_weights (and bias) */
    dnnl_primitive_t bwd_d;    /* backward_data; NULL when no diff_src is wanted */
    dnnl_memory_t w_slab;      /* the kernel in Keras layout (wei_md), over l->w (not owned data) */
    dnnl_memory_t dw_slab;     /* same over l->dw */
    dnnl_memory_t b_slab;      /* (O) x over the bias in l->w; NULL without bias */
    dnnl_memory_t db_slab;     /* same in l->dw */
    struct dnn_reorder src_fwd; /* l->src_md -> fwd's src layout */
    struct dnn_reorder w_fwd;   /* slab -> fwd's weights layout, every step (the optimizer moved them) */
    struct dnn_reorder src_bwd; /* l->src_md -> bwd_w's src layout, when not fwd's (else src_shared) */
    int src_shared;
    struct dnn_reorder w_bwd;   /* slab -> bwd_d's weights layout, when not fwd's (else w_shared) */
    int w_shared;
    dnnl_memory_t ddst_act;     /* in l->dst_md: diff_dst through the activation's derivative */
    struct dnn_reorder ddst_w;  /* l->dst_md -> bwd_w's diff_dst layout */
    struct dnn_reorder ddst_d;  /* l->dst_md -> bwd_d's diff_dst layout */
    dnnl_memory_t dw_prim;      /* the kernel gradient in bwd_w's layout; NULL when that is the slab's */
    struct dnn_reorder dw_out;  /* dw_prim -> dw_slab (own dst dropped: we reorder into the slab) */
    dnnl_memory_t dsrc_prim;    /* in bwd_d's diff_src layout; NULL when that is l->src_md */
    struct dnn_reorder dsrc_out; /* dsrc_prim -> l->diff_src (own dst dropped) */
};

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, int arg)
{
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

/* The eltwise algorithm that computes the activation's derivative from the forward *output*, so backward
 * needs no copy of the pre-activation. */
static dnnl_alg_kind_t act_bwd_alg(enum activation act)
{
    switch (act) {
    case ACT_RELU: return dnnl_eltwise_relu_use_dst_for_bwd;
    case ACT_SIGMOID: return dnnl_eltwise_logistic_use_dst_for_bwd;
    case ACT_TANH: return dnnl_eltwise_tanh_use_dst_for_bwd;
    default: return dnnl_alg_kind_undef;
    }
}

int weighted_act_fusable(enum activation act)
{
    return act == ACT_LINEAR || act_bwd_alg(act) != dnnl_alg_kind_undef;
}

/* A post-op attribute applying the activation to the primitive's output (*attr NULL when linear). */
static int act_attr(enum activation act, dnnl_primitive_attr_t *attr, struct error *err)
{
    static const dnnl_alg_kind_t fwd_alg[] = {[ACT_RELU] = dnnl_eltwise_relu, [ACT_SIGMOID] = dnnl_eltwise_logistic,
                                              [ACT_TANH] = dnnl_eltwise_tanh};
    dnnl_post_ops_t po = NULL;
    *attr = NULL;
    if (act == ACT_LINEAR)
        return ERR_OK;
    DNN_CHECK(dnnl_post_ops_create(&po));
    DNN_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, fwd_alg[act], 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_attr_create(attr));
    DNN_CHECK(dnnl_primitive_attr_set_post_ops(*attr, po));
    dnnl_post_ops_destroy(po);
    return ERR_OK;
fail:
    if (po)
        dnnl_post_ops_destroy(po);
    if (*attr)
        dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return err ? err->code : ERR_INTERNAL;
}

/* Memories over the slabs in Keras layout. Their handles are set again every step (set_handles). */
static int wrap_slabs(struct layer *l, const struct dnn *d, const struct weighted_desc *wd, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    DNN_CHECK(dnnl_memory_create(&rt->w_slab, &wd->wei_md, d->engine, l->w));
    DNN_CHECK(dnnl_memory_create(&rt->dw_slab, &wd->wei_md, d->engine, l->dw));
    if (l->spec->n_params > 1) {
        size_t off = l->spec->params[1].offset - l->spec->params[0].offset;
        DNN_CHECK(dnnl_memory_create(&rt->b_slab, &wd->bias_md, d->engine, l->w + off));
        DNN_CHECK(dnnl_memory_create(&rt->db_slab, &wd->bias_md, d->engine, l->dw + off));
    }
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* The slabs may have been reallocated (a network loading a checkpoint): point the views at l->w, l->dw. */
static int set_handles(struct layer *l, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    size_t off = l->spec->n_params > 1 ? l->spec->params[1].offset - l->spec->params[0].offset : 0;
    DNN_CHECK(dnnl_memory_set_data_handle(rt->w_slab, l->w));
    DNN_CHECK(dnnl_memory_set_data_handle(rt->dw_slab, l->dw));
    if (rt->b_slab) {
        DNN_CHECK(dnnl_memory_set_data_handle(rt->b_slab, l->w + off));
        DNN_CHECK(dnnl_memory_set_data_handle(rt->db_slab, l->dw + off));
    }
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* Forward: layouts left to oneDNN; l->dst_md becomes what it chose for dst. */
static int create_fwd(struct layer *l, const struct dnn *d, const struct weighted_desc *wd,
                      dnnl_primitive_desc_t *pd, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    dnnl_primitive_attr_t attr = NULL;
    if (act_attr(wd->act, &attr, err) != ERR_OK)
        goto fail;
    DNN_CHECK(dnnl_primitive_desc_create(pd, wd->fwd, attr, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(&rt->fwd, *pd));
    l->dst_md = *pd_md(*pd, DNNL_ARG_DST);
    DNN_CHECK(dnnl_memory_create(&l->dst, &l->dst_md, d->engine, DNNL_MEMORY_ALLOCATE));
    if (dnn_reorder_init(&rt->src_fwd, &l->src_md, pd_md(*pd, DNNL_ARG_SRC), d, err) != ERR_OK ||
        dnn_reorder_init(&rt->w_fwd, dnn_md_of(rt->w_slab), pd_md(*pd, DNNL_ARG_WEIGHTS), d, err) != ERR_OK)
        goto fail;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return ERR_OK;
fail:
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return err ? err->code : ERR_INTERNAL;
}

/* The activation's derivative, applied to diff_dst in place of a separate eltwise layer; nothing when the next
 * layer applies it (relu_bwd_in_next). */
static int create_act_bwd(struct layer *l, const struct dnn *d, enum activation act, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    dnnl_alg_kind_t alg = act_bwd_alg(act);
    if (alg == dnnl_alg_kind_undef || (act == ACT_RELU && l->relu_bwd_in_next))
        return ERR_OK;
    if (layer_eltwise_bwd_create(&rt->act_bwd, alg, &l->dst_md, d, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    DNN_CHECK(dnnl_memory_create(&rt->ddst_act, &l->dst_md, d->engine, DNNL_MEMORY_ALLOCATE));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* A gradient the primitive writes in its own layout `prim_md` and the layer delivers in `to` (the gradient
 * slab, l->diff_src), memory it does not own: when the layouts differ, *prim_mem is the primitive's own
 * buffer and r reorders it into `to` after each run; otherwise both stay empty and the primitive writes
 * `to` directly. */
static int grad_out_init(struct dnn_reorder *r, dnnl_memory_t *prim_mem, const dnnl_memory_desc_t *prim_md,
                         const dnnl_memory_desc_t *to, const struct dnn *d, struct error *err)
{
    if (layer_reorder_into_init(r, prim_md, to, d, err) != ERR_OK)
        goto fail;
    if (r->prim)
        DNN_CHECK(dnnl_memory_create(prim_mem, prim_md, d->engine, DNNL_MEMORY_ALLOCATE));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* Weights (and bias) gradient. The bias gradient is written straight into the slab (x layout). */
static int create_bwd_weights(struct layer *l, const struct dnn *d, const struct weighted_desc *wd,
                              const_dnnl_primitive_desc_t fwd_pd, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    dnnl_primitive_desc_t pd = NULL;
    DNN_CHECK(dnnl_primitive_desc_create(&pd, wd->bwd_w, NULL, d->engine, fwd_pd));
    DNN_CHECK(dnnl_primitive_create(&rt->bwd_w, pd));
    rt->src_shared = dnnl_memory_desc_equal(pd_md(pd, DNNL_ARG_SRC), pd_md(fwd_pd, DNNL_ARG_SRC));
    if (!rt->src_shared && dnn_reorder_init(&rt->src_bwd, &l->src_md, pd_md(pd, DNNL_ARG_SRC), d, err) != ERR_OK)
        goto fail;
    if (dnn_reorder_init(&rt->ddst_w, &l->dst_md, pd_md(pd, DNNL_ARG_DIFF_DST), d, err) != ERR_OK ||
        grad_out_init(&rt->dw_out, &rt->dw_prim, pd_md(pd, DNNL_ARG_DIFF_WEIGHTS), dnn_md_of(rt->dw_slab), d, err))
        goto fail;
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

/* Input gradient, delivered in l->src_md (the previous layer's dst layout) in l->diff_src. */
static int create_bwd_data(struct layer *l, const struct dnn *d, const struct weighted_desc *wd,
                           const_dnnl_primitive_desc_t fwd_pd, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    dnnl_primitive_desc_t pd = NULL;
    DNN_CHECK(dnnl_primitive_desc_create(&pd, wd->bwd_d, NULL, d->engine, fwd_pd));
    DNN_CHECK(dnnl_primitive_create(&rt->bwd_d, pd));
    rt->w_shared = dnnl_memory_desc_equal(pd_md(pd, DNNL_ARG_WEIGHTS), pd_md(fwd_pd, DNNL_ARG_WEIGHTS));
    if (!rt->w_shared &&
        dnn_reorder_init(&rt->w_bwd, dnn_md_of(rt->w_slab), pd_md(pd, DNNL_ARG_WEIGHTS), d, err) != ERR_OK)
        goto fail;
    if (dnn_reorder_init(&rt->ddst_d, &l->dst_md, pd_md(pd, DNNL_ARG_DIFF_DST), d, err) != ERR_OK ||
        grad_out_init(&rt->dsrc_out, &rt->dsrc_prim, pd_md(pd, DNNL_ARG_DIFF_SRC), &l->src_md, d, err))
        goto fail;
    DNN_CHECK(dnnl_memory_create(&l->diff_src, &l->src_md, d->engine, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

static void release_rt(struct weighted_rt *rt)
{
    dnnl_primitive_t prims[] = {rt->fwd, rt->act_bwd, rt->bwd_w, rt->bwd_d};
    dnnl_memory_t mems[] = {rt->w_slab, rt->dw_slab, rt->b_slab, rt->db_slab, rt->ddst_act, rt->dw_prim, rt->dsrc_prim};
    struct dnn_reorder *rs[] = {&rt->src_fwd, &rt->w_fwd, &rt->src_bwd, &rt->w_bwd,
                                &rt->ddst_w,  &rt->ddst_d, &rt->dw_out, &rt->dsrc_out};
    dnn_destroy_all(prims, sizeof prims / sizeof prims[0], mems, sizeof mems / sizeof mems[0]);
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        dnn_reorder_release(rs[i]);
}

void weighted_destroy(struct layer *l)
{
    if (l->priv) {
        release_rt(l->priv);
        free(l->priv);
    }
    l->priv = NULL;
    layer_release_outputs(l);
}

int weighted_create(struct layer *l, const struct dnn *d, const struct weighted_desc *wd, struct error *err)
{
    dnnl_primitive_desc_t fwd_pd = NULL;
    int rc;
    l->priv = calloc(1, sizeof(struct weighted_rt));
    if (!l->priv)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    if ((rc = wrap_slabs(l, d, wd, err)) || (rc = create_fwd(l, d, wd, &fwd_pd, err)) ||
        (rc = create_act_bwd(l, d, wd->act, err)) || (rc = create_bwd_weights(l, d, wd, fwd_pd, err)) ||
        (wd->bwd_d && (rc = create_bwd_data(l, d, wd, fwd_pd, err))))
        goto fail;
    dnnl_primitive_desc_destroy(fwd_pd);
    return ERR_OK;
fail:
    if (fwd_pd)
        dnnl_primitive_desc_destroy(fwd_pd);
    weighted_destroy(l);
    return rc;
}

/* dst in l->dst_md = act(op(src in l->src_md, slab weights) + bias). */
int weighted_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    const struct dnn *d = ctx->dnn;
    if (set_handles(l, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t s = dnn_reorder_run(&rt->src_fwd, src, d, err);
    dnnl_memory_t w = s ? dnn_reorder_run(&rt->w_fwd, rt->w_slab, d, err) : NULL;
    if (!w)
        return err ? err->code : ERR_INTERNAL;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, l->dst},
                              {DNNL_ARG_BIAS, rt->b_slab}};
    return dnn_exec(rt->fwd, d, rt->b_slab ? 4 : 3, args, err);
}

/* The previous run's output of a reorder, or its input when the reorder is empty. */
static dnnl_memory_t reordered(const struct dnn_reorder *r, dnnl_memory_t input)
{
    return r->prim ? r->dst : input;
}

/* dW (Keras layout, into l->dw) and db from src and the pre-activation gradient g (l->dst_md). */
static int backward_weights(struct layer *l, const struct dnn *d, dnnl_memory_t src, dnnl_memory_t g,
                            struct error *err)
{
    struct weighted_rt *rt = l->priv;
    /* forward left its reordered src in src_fwd when the layouts match: src is the same memory. */
    dnnl_memory_t s = rt->src_shared ? reordered(&rt->src_fwd, src) : dnn_reorder_run(&rt->src_bwd, src, d, err);
    dnnl_memory_t dd = s ? dnn_reorder_run(&rt->ddst_w, g, d, err) : NULL;
    if (!dd)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t dw = rt->dw_prim ? rt->dw_prim : rt->dw_slab;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                              {DNNL_ARG_DIFF_BIAS, rt->db_slab}};
    int rc = dnn_exec(rt->bwd_w, d, rt->db_slab ? 4 : 3, args, err);
    if (rc == ERR_OK)
        rc = dnn_reorder_into(&rt->dw_out, rt->dw_prim, rt->dw_slab, d, err);
    return rc;
}

/* l->diff_src (l->src_md) from the pre-activation gradient g and the weights forward used. */
static int backward_data(struct layer *l, const struct dnn *d, dnnl_memory_t g, struct error *err)
{
    struct weighted_rt *rt = l->priv;
    dnnl_memory_t w =
        rt->w_shared ? reordered(&rt->w_fwd, rt->w_slab) : dnn_reorder_run(&rt->w_bwd, rt->w_slab, d, err);
    dnnl_memory_t dd = w ? dnn_reorder_run(&rt->ddst_d, g, d, err) : NULL;
    if (!dd)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t ds = rt->dsrc_prim ? rt->dsrc_prim : l->diff_src;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, ds}};
    int rc = dnn_exec(rt->bwd_d, d, 3, args, err);
    if (rc == ERR_OK)
        rc = dnn_reorder_into(&rt->dsrc_out, rt->dsrc_prim, l->diff_src, d, err);
    return rc;
}

int weighted_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                      struct error *err)
{
    struct weighted_rt *rt = l->priv;
    const struct dnn *d = ctx->dnn;
    dnnl_memory_t g = diff_dst; /* l->dst_md: gradient before the activation */
    int rc = set_handles(l, err);
    if (rc == ERR_OK && rt->act_bwd) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_DST, l->dst}, {DNNL_ARG_DIFF_DST, diff_dst},
                                  {DNNL_ARG_DIFF_SRC, rt->ddst_act}};
        rc = dnn_exec(rt->act_bwd, d, 3, args, err);
        g = rt->ddst_act;
    }
    if (rc == ERR_OK)
        rc = backward_weights(l, d, src, g, err);
    if (rc == ERR_OK && rt->bwd_d)
        rc = backward_data(l, d, g, err);
    return rc;
}

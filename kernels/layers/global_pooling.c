/* global_pooling.c: GlobalAveragePooling2D and GlobalMaxPooling2D: one pooling window over the whole
 * (h, w) plane, giving (c) features per sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"
#include "pooling.h"

struct gpool_priv {
    struct pool_prims prims;
    /* Pooling's fast kernels want dst in src's layout (nhwc, nChw16c ...), and (N, C, 1, 1) in such a
     * layout is not always the (N, C) matrix the next layer reads: then the result goes through a small
     * (N * C elements) reorder to nchw, which is. */
    dnnl_primitive_t to_nchw;   /* pooled -> dst4; NULL when pooling chose nchw itself */
    dnnl_primitive_t from_nchw; /* diff_dst4 -> pooled, for backward; NULL likewise */
    dnnl_memory_t pooled;       /* (N, C, 1, 1) in pooling's layout, then backward's diff_dst in it; or NULL */
    dnnl_memory_t dst4;         /* (N, C, 1, 1) nchw: owns the data that l->dst views as (N, C) nc */
    dnnl_memory_t diff_dst4;    /* (N, C, 1, 1) nchw view of backward's (N, C) diff_dst; handle set per call */
};

static int gpool_infer(struct layer_spec *s, struct error *err)
{
    if (s->in.rank != 3)
        return layer_spec_error(s, err, "needs an (h, w, c) input, not rank %d", s->in.rank);
    s->out.rank = 1;
    s->out.h = s->out.w = 1;
    s->out.c = s->in.c;
    s->n_params = 0;
    return ERR_OK;
}

static void gpool_destroy(struct layer *l)
{
    struct gpool_priv *p = l->priv;
    /* l->dst only views dst4's data: destroy order does not matter, neither frees the other's. */
    layer_release_outputs(l);
    if (p) {
        pool_prims_release(&p->prims);
        if (p->to_nchw)
            dnnl_primitive_destroy(p->to_nchw);
        if (p->from_nchw)
            dnnl_primitive_destroy(p->from_nchw);
        if (p->pooled)
            dnnl_memory_destroy(p->pooled);
        if (p->dst4)
            dnnl_memory_destroy(p->dst4);
        if (p->diff_dst4)
            dnnl_memory_destroy(p->diff_dst4);
        free(p);
    }
    l->priv = NULL;
}

/* The layer's dst is plain nchw (N, C, 1, 1), byte for byte the (N, C) nc matrix Dense and the loss
 * expect, so it hands out that 2-D view of the same buffer. */
static int gpool_create(struct layer *l, const struct dnn *d, int need_diff_src, dnnl_alg_kind_t alg,
                        struct error *err)
{
    const struct shape *in = &l->spec->in;
    dnnl_dims_t dims4 = {l->n, in->c, 1, 1};
    dnnl_memory_desc_t any, md4, pooled_md;
    struct pool_geom g;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    struct gpool_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    memset(&g, 0, sizeof g);
    g.alg = alg;
    g.kernel[0] = in->h;
    g.kernel[1] = in->w;
    g.strides[0] = g.strides[1] = 1;
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&any, 4, dims4, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&md4, 4, dims4, dnnl_f32, dnnl_nchw));
    if (pool_prims_create(&p->prims, &g, &l->src_md, &any, &pooled_md, need_diff_src, d, err) != ERR_OK ||
        layer_reorder_prim(&p->to_nchw, &pooled_md, &md4, d, err) != ERR_OK ||
        (p->to_nchw && dnn_mem(&p->pooled, &pooled_md, d, NULL, err) != ERR_OK) ||
        dnn_md_nc(&l->dst_md, l->n, in->c, err) != ERR_OK || dnn_mem(&p->dst4, &md4, d, NULL, err) != ERR_OK ||
        dnn_mem(&l->dst, &l->dst_md, d, dnn_ptr(p->dst4), err) != ERR_OK)
        goto fail;
    if (need_diff_src && (dnn_mem(&p->diff_dst4, &md4, d, dnn_ptr(p->dst4), err) != ERR_OK ||
                          (p->to_nchw && layer_reorder_prim(&p->from_nchw, &md4, &pooled_md, d, err) != ERR_OK) ||
                          dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    gpool_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

static int gmax_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    return gpool_create(l, d, need_diff_src, dnnl_pooling_max, err);
}

static int gavg_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    return gpool_create(l, d, need_diff_src, dnnl_pooling_avg_exclude_padding, err);
}

static int gpool_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct gpool_priv *p = l->priv;
    int rc = pool_prims_forward(&p->prims, src, p->to_nchw ? p->pooled : p->dst4, ctx->dnn, err);
    if (rc != ERR_OK || !p->to_nchw)
        return rc;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->pooled}, {DNNL_ARG_TO, p->dst4}};
    return dnn_exec(p->to_nchw, ctx->dnn, 2, args, err);
}

/* Pooling backward does not read dst, so `pooled` is free to hold diff_dst in pooling's layout. */
static int gpool_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src,
                          dnnl_memory_t diff_dst, struct error *err)
{
    struct gpool_priv *p = l->priv;
    (void)src;
    if (!l->diff_src)
        return ERR_OK;
    DNN_CHECK(dnnl_memory_set_data_handle(p->diff_dst4, dnn_ptr(diff_dst)));
    if (p->from_nchw) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->diff_dst4}, {DNNL_ARG_TO, p->pooled}};
        int rc = dnn_exec(p->from_nchw, ctx->dnn, 2, args, err);
        if (rc != ERR_OK)
            return rc;
    }
    return pool_prims_backward(&p->prims, p->from_nchw ? p->pooled : p->diff_dst4, l->diff_src, ctx->dnn, err);
fail:
    return err ? err->code : ERR_INTERNAL;
}

static int gpool_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    return snprintf(buf, size, "%s()", s->ops->name);
}

const struct layer_ops layer_global_average_pooling2d = {
    .name = "GlobalAveragePooling2D",
    .keras_prefix = "global_average_pooling2d",
    .parse = layer_parse_nothing, /* Keras's data_format and keepdims are not supported */
    .infer = gpool_infer,
    .create = gavg_create,
    .forward = gpool_forward,
    .backward = gpool_backward,
    .destroy = gpool_destroy,
    .init_params = NULL,
    .to_text = gpool_to_text,
};

const struct layer_ops layer_global_max_pooling2d = {
    .name = "GlobalMaxPooling2D",
    .keras_prefix = "global_max_pooling2d",
    .parse = layer_parse_nothing, /* Keras's data_format and keepdims are not supported */
    .infer = gpool_infer,
    .create = gmax_create,
    .forward = gpool_forward,
    .backward = gpool_backward,
    .destroy = gpool_destroy,
    .init_params = NULL,
    .to_text = gpool_to_text,
};

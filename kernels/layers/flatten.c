/* flatten.c: Flatten, channels-last as in Keras: (h, w, c) per sample becomes h*w*c features in H, W, C order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

static int flatten_infer(struct layer_spec *spec, struct error *err)
{
    (void)err;
    spec->out = (struct shape){1, 1, 1, (int)shape_size(&spec->in)};
    spec->n_params = 0;
    return ERR_OK;
}

static int flatten_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    (void)spec;
    return snprintf(buf, size, "Flatten()");
}

/* Flatten is a layout change: the previous layer may have left a blocked layout (nChw16c from a convolution
 * or pooling), and Keras's feature order is that of a plain NHWC buffer. So forward reorders whatever comes
 * into NHWC, and the (N, H*W*C) nc destination is the same buffer seen as 2-D. */
struct flatten_rt {
    dnnl_memory_t plain;     /* (N, C, H, W) logical, nhwc (or (N, C) nc for a flat input), over l->dst's data */
    dnnl_memory_t ddst_view; /* same descriptor over the diff_dst of the current backward call */
    struct dnn_reorder fwd;  /* l->src_md -> plain; its own dst dropped (we reorder into l->dst's buffer) */
    struct dnn_reorder bwd;  /* plain -> l->src_md, into l->diff_src; own dst dropped */
};

/* The plain channels-last descriptor with src's logical dims. */
static int plain_md(const struct layer *l, dnnl_memory_desc_t *md, struct error *err)
{
    const dnnl_memory_desc_t *s = &l->src_md;
    long per_sample = 1;
    for (int i = 1; i < s->ndims; i++)
        per_sample *= (long)s->dims[i];
    if ((s->ndims != 2 && s->ndims != 4) || s->dims[0] != l->n || per_sample != shape_size(&l->spec->in))
        return error_set(err, ERR_INTERNAL, "%s: Flatten got a %d-D input that does not match its shape",
                         l->spec->name, s->ndims);
    DNN_CHECK(dnnl_memory_desc_init_by_tag(md, s->ndims, s->dims, dnnl_f32, s->ndims == 4 ? dnnl_nhwc : dnnl_nc));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

static void flatten_destroy(struct layer *l)
{
    struct flatten_rt *rt = l->priv;
    if (rt) {
        if (rt->plain)
            dnnl_memory_destroy(rt->plain);
        if (rt->ddst_view)
            dnnl_memory_destroy(rt->ddst_view);
        dnn_reorder_release(&rt->fwd);
        dnn_reorder_release(&rt->bwd);
        free(rt);
    }
    l->priv = NULL;
    layer_release_outputs(l);
}

static int flatten_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    struct flatten_rt *rt;
    dnnl_memory_desc_t pmd;
    int rc;
    l->dst = l->diff_src = NULL;
    l->priv = NULL;
    if ((rc = plain_md(l, &pmd, err)) != ERR_OK)
        return rc;
    if (!(rt = l->priv = calloc(1, sizeof *rt)))
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    if ((rc = dnn_md_nc(&l->dst_md, l->n, (int)shape_size(&l->spec->in), err)) != ERR_OK ||
        (rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)) != ERR_OK ||
        (rc = dnn_mem(&rt->plain, &pmd, d, dnn_ptr(l->dst), err)) != ERR_OK ||
        (rc = layer_reorder_into_init(&rt->fwd, &l->src_md, &pmd, d, err)) != ERR_OK)
        goto fail;
    if (need_diff_src &&
        ((rc = dnn_mem(&l->diff_src, &l->src_md, d, NULL, err)) != ERR_OK ||
         (rc = dnn_mem(&rt->ddst_view, &pmd, d, dnn_ptr(l->dst) /* replaced per call */, err)) != ERR_OK ||
         (rc = layer_reorder_into_init(&rt->bwd, &pmd, &l->src_md, d, err)) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    flatten_destroy(l);
    return rc;
}

/* dst (N, H*W*C) nc = src (N, C, H, W) in l->src_md, laid out channels-last. */
static int flatten_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct flatten_rt *rt = l->priv;
    if (rt->fwd.prim)
        return dnn_reorder_into(&rt->fwd, src, rt->plain, ctx->dnn, err);
    /* src is already plain channels-last: its bytes are the answer. */
    memcpy(dnn_ptr(l->dst), dnn_ptr(src), dnnl_memory_desc_get_size(dnn_md_of(rt->plain)));
    return ERR_OK;
}

/* diff_src (N, C, H, W) in l->src_md = diff_dst (N, H*W*C) nc seen as NHWC. No parameters. */
static int flatten_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                            struct error *err)
{
    struct flatten_rt *rt = l->priv;
    (void)src;
    if (!l->diff_src)
        return ERR_OK;
    if (!rt->bwd.prim) {
        memcpy(dnn_ptr(l->diff_src), dnn_ptr(diff_dst), dnnl_memory_desc_get_size(&l->src_md));
        return ERR_OK;
    }
    DNN_CHECK(dnnl_memory_set_data_handle(rt->ddst_view, dnn_ptr(diff_dst)));
    return dnn_reorder_into(&rt->bwd, rt->ddst_view, l->diff_src, ctx->dnn, err);
fail:
    return err ? err->code : ERR_INTERNAL;
}

const struct layer_ops layer_flatten = {
    .name = "Flatten",
    .keras_prefix = "flatten",
    .parse = layer_parse_nothing, /* Keras's data_format: only channels-last exists here */
    .infer = flatten_infer,
    .create = flatten_create,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .destroy = flatten_destroy,
    .init_params = NULL,
    .to_text = flatten_to_text,
};

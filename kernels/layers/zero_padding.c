/* zero_padding.c: ZeroPadding2D, rows and columns of zeros around each image, on plain channels-last data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

/* padding=1, (h, w) for both sides, or ((top, bottom), (left, right)), as Keras takes it. */
static int pad_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    const struct arg *x = layer_find_arg(a, "padding", 0);
    struct zero_pad_cfg *c = &spec->u.pad;
    long p[2];
    int rc;
    if (x && x->type == ARG_TUPLE && x->nested && x->n_tuple == 4) {
        ((struct arg *)x)->used = 1;
        c->top = (int)x->tuple[0], c->bottom = (int)x->tuple[1], c->left = (int)x->tuple[2], c->right = (int)x->tuple[3];
    } else {
        if ((rc = args_pair(a, "padding", 0, 0, 1, p, err)))
            return rc;
        c->top = c->bottom = (int)p[0];
        c->left = c->right = (int)p[1];
    }
    if (c->top < 0 || c->bottom < 0 || c->left < 0 || c->right < 0 || c->top > 4096 || c->bottom > 4096 ||
        c->left > 4096 || c->right > 4096)
        return args_error(a, x, err, "padding must be between 0 and 4096");
    return ERR_OK;
}

static int pad_infer(struct layer_spec *spec, struct error *err)
{
    const struct zero_pad_cfg *c = &spec->u.pad;
    if (spec->in.rank != 3)
        return layer_spec_error(spec, err, "needs an (h, w, c) input, not rank %d", spec->in.rank);
    spec->out = spec->in;
    spec->out.h += c->top + c->bottom;
    spec->out.w += c->left + c->right;
    spec->n_params = 0;
    return ERR_OK;
}

static int pad_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    const struct zero_pad_cfg *c = &spec->u.pad;
    return snprintf(buf, size, "ZeroPadding2D(padding=((%d, %d), (%d, %d)))", c->top, c->bottom, c->left, c->right);
}

struct pad_rt {
    struct plain_edge in;
};

static void pad_destroy(struct layer *l)
{
    struct pad_rt *rt = l->priv;
    if (rt)
        plain_edge_release(&rt->in);
    free(rt);
    l->priv = NULL;
    layer_release_outputs(l);
}

static int pad_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct shape *o = &l->spec->out;
    struct pad_rt *rt = l->priv = calloc(1, sizeof *rt);
    int rc;
    l->dst = l->diff_src = NULL;
    if (!rt)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    if ((rc = dnn_md_nhwc(&l->dst_md, l->n, o->h, o->w, o->c, err)) ||
        (rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)) ||
        (rc = plain_edge_init(&rt->in, &l->src_md, &l->spec->in, l->n, need_diff_src, d, err)) ||
        (need_diff_src && (rc = dnn_mem(&l->diff_src, &l->src_md, d, NULL, err)))) {
        pad_destroy(l);
        return rc;
    }
    /* The border is written once: forward only ever writes the interior. */
    memset(dnn_ptr(l->dst), 0, dnnl_memory_desc_get_size(&l->dst_md));
    return ERR_OK;
}

static int pad_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct pad_rt *rt = l->priv;
    const struct shape *i = &l->spec->in, *o = &l->spec->out;
    const struct zero_pad_cfg *c = &l->spec->u.pad;
    const float *x = plain_edge_in(&rt->in, src, ctx->dnn, err);
    float *y = dnn_ptr(l->dst);
    const long rows = (long)l->n * i->h, row = (long)i->w * i->c;
    if (!x)
        return err->code;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        long n = r / i->h, h = r % i->h;
        memcpy(y + ((n * o->h + h + c->top) * o->w + c->left) * o->c, x + r * row, sizeof(float) * (size_t)row);
    }
    return ERR_OK;
}

/* The input's gradient is the interior of the output's. No parameters. */
static int pad_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                        struct error *err)
{
    struct pad_rt *rt = l->priv;
    const struct shape *i = &l->spec->in, *o = &l->spec->out;
    const struct zero_pad_cfg *c = &l->spec->u.pad;
    const long rows = (long)l->n * i->h, row = (long)i->w * i->c;
    (void)src;
    if (!l->diff_src)
        return ERR_OK;
    const float *dy = dnn_ptr(diff_dst);
    float *dx = plain_edge_dx(&rt->in, l->diff_src);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        long n = r / i->h, h = r % i->h;
        memcpy(dx + r * row, dy + ((n * o->h + h + c->top) * o->w + c->left) * o->c, sizeof(float) * (size_t)row);
    }
    return plain_edge_out(&rt->in, l->diff_src, ctx->dnn, err);
}

const struct layer_ops layer_zero_padding2d = {
    .name = "ZeroPadding2D",
    .keras_prefix = "zero_padding2d",
    .parse = pad_parse,
    .infer = pad_infer,
    .create = pad_create,
    .forward = pad_forward,
    .backward = pad_backward,
    .destroy = pad_destroy,
    .init_params = NULL,
    .to_text = pad_to_text,
};

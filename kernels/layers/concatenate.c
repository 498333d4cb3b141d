/* concatenate.c: Concatenate along the channels (Keras's axis=-1, the default): inputs of one height and width
 * side by side, in input order. Computed on plain channels-last data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

static int concat_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    long axis;
    int rc = args_int(a, "axis", 0, 0, -1, &axis, err);
    if (rc)
        return rc;
    if (axis != -1 && axis != 3 && axis != 1)
        return args_error(a, layer_find_arg(a, "axis", 0), err,
                          "axis=%ld: only the channel axis (-1) is supported", axis);
    spec->u.concat.axis = (int)axis;
    return ERR_OK;
}

static int concat_infer(struct layer_spec *spec, struct error *err)
{
    const struct shape *a = &spec->ins[0];
    int c = 0;
    /* axis 3 names the channels of an image, 1 those of a vector; -1 either */
    if (spec->u.concat.axis != -1 && spec->u.concat.axis != (a->rank == 3 ? 3 : 1))
        return layer_spec_error(spec, err, "axis=%d is not the channel axis of a rank-%d input", spec->u.concat.axis,
                                a->rank);
    for (int k = 0; k < spec->n_inputs; k++) {
        const struct shape *b = &spec->ins[k];
        if (b->rank != a->rank || b->h != a->h || b->w != a->w)
            return layer_spec_error(spec, err, "Concatenate of different heights or widths: %dx%dx%d and %dx%dx%d "
                                    "(input %d)", a->h, a->w, a->c, b->h, b->w, b->c, k + 1);
        c += b->c;
    }
    spec->out = *a;
    spec->out.c = c;
    spec->n_params = 0;
    return ERR_OK;
}

static int concat_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    return snprintf(buf, size, "Concatenate(axis=%d)", spec->u.concat.axis);
}

struct concat_rt {
    struct plain_edge in[LAYER_MAX_INPUTS];
};

static void concat_destroy(struct layer *l)
{
    struct concat_rt *rt = l->priv;
    for (int k = 0; rt && k < LAYER_MAX_INPUTS; k++)
        plain_edge_release(&rt->in[k]);
    for (int k = 1; k < LAYER_MAX_INPUTS; k++)
        if (l->diff_srcs[k]) {
            dnnl_memory_destroy(l->diff_srcs[k]);
            l->diff_srcs[k] = NULL;
        }
    l->diff_srcs[0] = NULL;
    free(rt);
    l->priv = NULL;
    layer_release_outputs(l);
}

static int concat_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct layer_spec *s = l->spec;
    struct concat_rt *rt = l->priv = calloc(1, sizeof *rt);
    int rc;
    l->dst = l->diff_src = NULL;
    if (!rt)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", s->name);
    if ((rc = s->out.rank == 3 ? dnn_md_nhwc(&l->dst_md, l->n, s->out.h, s->out.w, s->out.c, err)
                               : dnn_md_nc(&l->dst_md, l->n, s->out.c, err)) ||
        (rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)))
        goto fail;
    for (int k = 0; k < s->n_inputs; k++)
        if ((rc = plain_edge_init(&rt->in[k], &l->src_mds[k], &s->ins[k], l->n, need_diff_src, d, err)) ||
            (need_diff_src && (rc = dnn_mem(&l->diff_srcs[k], &l->src_mds[k], d, NULL, err))))
            goto fail;
    l->diff_src = l->diff_srcs[0];
    return ERR_OK;
fail:
    concat_destroy(l);
    return rc;
}

/* Per pixel (or sample), the channels of input 0, then of input 1, ... */
static int concat_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct concat_rt *rt = l->priv;
    const struct layer_spec *s = l->spec;
    const long pixels = (long)l->n * s->out.h * s->out.w, C = s->out.c;
    float *y = dnn_ptr(l->dst);
    long off = 0;
    (void)src;
    for (int k = 0; k < s->n_inputs; k++) {
        const float *x = plain_edge_in(&rt->in[k], l->srcs[k], ctx->dnn, err);
        const long ck = s->ins[k].c;
        if (!x)
            return err->code;
#pragma omp parallel for schedule(static)
        for (long p = 0; p < pixels; p++)
            memcpy(y + p * C + off, x + p * ck, sizeof(float) * (size_t)ck);
        off += ck;
    }
    return ERR_OK;
}

/* Each input's gradient is its channels of the output's gradient (plain, as dst). No parameters. */
static int concat_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                           struct error *err)
{
    struct concat_rt *rt = l->priv;
    const struct layer_spec *s = l->spec;
    const long pixels = (long)l->n * s->out.h * s->out.w, C = s->out.c;
    const float *dy = dnn_ptr(diff_dst);
    long off = 0;
    int rc;
    (void)src;
    for (int k = 0; k < s->n_inputs; k++) {
        const long ck = s->ins[k].c;
        if (l->diff_srcs[k]) {
            float *dx = plain_edge_dx(&rt->in[k], l->diff_srcs[k]);
#pragma omp parallel for schedule(static)
            for (long p = 0; p < pixels; p++)
                memcpy(dx + p * ck, dy + p * C + off, sizeof(float) * (size_t)ck);
            if ((rc = plain_edge_out(&rt->in[k], l->diff_srcs[k], ctx->dnn, err)))
                return rc;
        }
        off += ck;
    }
    return ERR_OK;
}

const struct layer_ops layer_concatenate = {
    .name = "Concatenate",
    .keras_prefix = "concatenate",
    .parse = concat_parse,
    .infer = concat_infer,
    .create = concat_create,
    .forward = concat_forward,
    .backward = concat_backward,
    .destroy = concat_destroy,
    .init_params = NULL,
    .to_text = concat_to_text,
    .multi_input = 1,
};

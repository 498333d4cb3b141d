/* add.c: Add, Keras's elementwise sum of two or more tensors of one shape (the residual connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

static int add_infer(struct layer_spec *spec, struct error *err)
{
    const struct shape *a = &spec->ins[0];
    for (int k = 1; k < spec->n_inputs; k++) {
        const struct shape *b = &spec->ins[k];
        if (a->rank != b->rank || a->h != b->h || a->w != b->w || a->c != b->c)
            return layer_spec_error(spec, err, "Add of tensors of different shapes: %dx%dx%d and %dx%dx%d (input %d)",
                                    a->h, a->w, a->c, b->h, b->w, b->c, k + 1);
    }
    spec->out = *a;
    spec->n_params = 0;
    return ERR_OK;
}

static int add_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    (void)spec;
    return snprintf(buf, size, "Add()");
}

/* The sum is taken in the first input's layout; an input in another layout is reordered into it first, and
 * each input's gradient (the output's gradient itself) is reordered back into its layout. */
struct add_rt {
    dnnl_primitive_t to_dst[LAYER_MAX_INPUTS]; /* src_mds[k] -> dst_md; NULL when equal */
    dnnl_memory_t conv[LAYER_MAX_INPUTS];      /* input k in dst_md, when to_dst[k] */
    dnnl_primitive_t to_src[LAYER_MAX_INPUTS]; /* dst_md -> src_mds[k] for the gradient; NULL when equal */
};

static void add_destroy(struct layer *l)
{
    struct add_rt *rt = l->priv;
    for (int k = 0; rt && k < LAYER_MAX_INPUTS; k++) {
        if (rt->to_dst[k])
            dnnl_primitive_destroy(rt->to_dst[k]);
        if (rt->conv[k])
            dnnl_memory_destroy(rt->conv[k]);
        if (rt->to_src[k])
            dnnl_primitive_destroy(rt->to_src[k]);
    }
    for (int k = 1; k < LAYER_MAX_INPUTS; k++)
        if (l->diff_srcs[k]) {
            dnnl_memory_destroy(l->diff_srcs[k]);
            l->diff_srcs[k] = NULL;
        }
    l->diff_srcs[0] = NULL;
    memset(l->diff_passes, 0, sizeof l->diff_passes);
    free(rt);
    l->priv = NULL;
    layer_release_outputs(l);
}

static int add_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const int K = l->spec->n_inputs;
    struct add_rt *rt = l->priv = calloc(1, sizeof *rt);
    int rc = ERR_OK;
    l->dst = l->diff_src = NULL;
    if (!rt)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->dst_md = l->src_mds[0];
    if ((rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)))
        goto fail;
    for (int k = 1; k < K; k++)
        if ((rc = layer_reorder_prim(&rt->to_dst[k], &l->src_mds[k], &l->dst_md, d, err)) ||
            (rt->to_dst[k] && (rc = dnn_mem(&rt->conv[k], &l->dst_md, d, NULL, err))))
            goto fail;
    for (int k = 0; need_diff_src && k < K; k++) {
        if ((rc = layer_reorder_prim(&rt->to_src[k], &l->dst_md, &l->src_mds[k], d, err)))
            goto fail;
        /* In the output's layout the input's gradient is the output's, as it is: passed on, not copied. */
        l->diff_passes[k] = !rt->to_src[k];
        if (rt->to_src[k] && (rc = dnn_mem(&l->diff_srcs[k], &l->src_mds[k], d, NULL, err)))
            goto fail;
    }
    l->diff_src = l->diff_srcs[0];
    return ERR_OK;
fail:
    add_destroy(l);
    return rc;
}

/* dst = srcs[0] + srcs[1] + ..., in input order (the same sum on every rank and every run). */
static int add_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct add_rt *rt = l->priv;
    const float *x[LAYER_MAX_INPUTS];
    (void)src;
    for (int k = 0; k < l->spec->n_inputs; k++) {
        if (rt->to_dst[k]) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, l->srcs[k]}, {DNNL_ARG_TO, rt->conv[k]}};
            int rc = dnn_exec(rt->to_dst[k], ctx->dnn, 2, args, err);
            if (rc)
                return rc;
        }
        x[k] = dnn_ptr(rt->to_dst[k] ? rt->conv[k] : l->srcs[k]);
    }
    float *y = dnn_ptr(l->dst);
    const size_t n = dnnl_memory_desc_get_size(&l->dst_md) / sizeof(float);
    const float *a = x[0], *b = x[1];
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    for (int k = 2; k < l->spec->n_inputs; k++) {
        const float *c = x[k];
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++)
            y[i] += c[i];
    }
    return ERR_OK;
}

/* Every input's gradient is the output's: passed on as it is (diff_passes) or reordered into the input's
 * layout. No parameters. */
static int add_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                        struct error *err)
{
    struct add_rt *rt = l->priv;
    (void)src;
    for (int k = 0; k < l->spec->n_inputs; k++) {
        if (!l->diff_srcs[k])
            continue;
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, diff_dst}, {DNNL_ARG_TO, l->diff_srcs[k]}};
        int rc = dnn_exec(rt->to_src[k], ctx->dnn, 2, args, err);
        if (rc)
            return rc;
    }
    return ERR_OK;
}

const struct layer_ops layer_add = {
    .name = "Add",
    .keras_prefix = "add",
    .parse = layer_parse_nothing,
    .infer = add_infer,
    .create = add_create,
    .forward = add_forward,
    .backward = add_backward,
    .destroy = add_destroy,
    .init_params = NULL,
    .to_text = add_to_text,
    .multi_input = 1,
};

/* dropout.c: Dropout (Keras inverted dropout) with masks that are a pure function of (seed, step, global
 * sample id, element), so that a sample is masked the same way whatever rank and batch slot it lands in. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"
#include "rng.h"

struct dropout_priv {
    struct plain_io io;          /* dst and the input gradient are plain channels-last */
    float *mask;                 /* (n, h * w * c) channels-last, 0 or 1/(1-rate): the last training forward's */
    long sample_size;            /* h * w * c elements */
};

static int dropout_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    double rate;
    int rc = args_float(a, "rate", 0, 1, 0.0, &rate, err);
    if (rc != ERR_OK)
        return rc;
    if (!(rate >= 0.0 && rate < 1.0)) {
        const struct arg *at = NULL; /* rate is the only argument read, so the only one marked used */
        for (int i = 0; i < a->n && !at; i++)
            if (a->a[i].used)
                at = &a->a[i];
        return args_error(a, at, err, "rate must be in [0, 1), not %g", rate);
    }
    spec->u.dropout.rate = rate;
    return ERR_OK;
}

static void dropout_destroy(struct layer *l)
{
    struct dropout_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        plain_io_release(&p->io);
        free(p->mask);
        free(p);
    }
    l->priv = NULL;
}

/* dst is plain channels-last whatever src is: the mask is defined on (h, w, c) element indices, and a
 * plain buffer makes "element e of sample i" a plain offset. */
static int dropout_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct shape *s = &l->spec->in;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    struct dropout_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    p->sample_size = shape_size(s);
    p->mask = malloc(sizeof(float) * (size_t)l->n * (size_t)p->sample_size + 1);
    if (!p->mask) {
        error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
        goto fail;
    }
    if (plain_io_create(&p->io, l, d, need_diff_src, err) != ERR_OK)
        goto fail;
    return ERR_OK;
fail:
    dropout_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

/* One sample's draws: element e is kept iff U(h, e) >= rate, i.e. iff u = the hash's top 24 bits satisfies
 * u * 2^-24 >= rate, i.e. u >= thr = ceil(rate * 2^24) (the scaling by 2^24 is exact): the same masks as
 * rng_unit_f(rng_hash4(...)) >= rate, with integer compares and no branch, so the loop vectorizes. Compiled
 * also for AVX-512 (64-bit multiplies in vectors: vpmullq), picked by the CPU at load time.
 * m (size,) gets 0 or scale, y (size,) is multiplied by it. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
static void mask_sample(uint64_t h, uint32_t thr, float scale, long size, float *restrict m, float *restrict y)
{
#pragma omp simd
    for (long e = 0; e < size; e++) {
        uint32_t u = (uint32_t)(rng_hash_last(h, (uint64_t)e) >> 40);
        m[e] = u >= thr ? scale : 0.0f;
        y[e] *= m[e];
    }
}

/* y (n, size) *= mask, filling the mask: element e of the sample with global id s is kept iff
 * U(seed, step, layer ^ s, e) >= rate. The layer index in the top bits keeps two Dropout layers apart. */
static void mask_apply(struct dropout_priv *p, const struct layer *l, const struct step_ctx *ctx, float *y)
{
    const double rate = l->spec->u.dropout.rate;
    const float scale = (float)(1.0 / (1.0 - rate));
    const uint32_t thr = (uint32_t)ceil(rate * 16777216.0);
    const long size = p->sample_size;
    const uint64_t layer = (uint64_t)l->spec->index << 48;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < l->n; i++) {
        /* rng_hash4(seed, step, stream, e), with the part shared by the sample's elements done once. */
        const uint64_t h = rng_hash_first3(ctx->seed, ctx->step, layer ^ (uint64_t)ctx->sample_ids[i]);
        mask_sample(h, thr, scale, size, p->mask + (size_t)i * size, y + (size_t)i * size);
    }
}

static int dropout_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct dropout_priv *p = l->priv;
    float *y = dnn_ptr(l->dst); /* (n, h, w, c) */
    int rc = plain_io_forward(&p->io, l, src, ctx->dnn, err);
    if (rc != ERR_OK)
        return rc;
    if (!ctx->training)
        return ERR_OK;
    if (!ctx->sample_ids)
        return error_set(err, ERR_INTERNAL, "%s: training step without sample ids", l->spec->name);
    mask_apply(p, l, ctx, y);
    return ERR_OK;
}

/* dx = dy * mask with the mask of the training forward just run (dx = dy when not training). */
static int dropout_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src,
                            dnnl_memory_t diff_dst, struct error *err)
{
    struct dropout_priv *p = l->priv;
    (void)src;
    if (!l->diff_src)
        return ERR_OK;
    const float *dy = dnn_ptr(diff_dst);                                     /* (n, h, w, c) */
    float *dx = plain_io_dx(&p->io, l);                                      /* (n, h, w, c) */
    const long total = (long)l->n * p->sample_size;
    if (ctx->training) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < total; i++)
            dx[i] = dy[i] * p->mask[i];
    } else {
        memcpy(dx, dy, sizeof(float) * (size_t)total);
    }
    return plain_io_backward(&p->io, l, ctx->dnn, err);
}

/* The shortest %g that reads back as the same double, so that a saved model reloads exactly. */
static int dropout_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    char num[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, s->u.dropout.rate);
        if (strtod(num, NULL) == s->u.dropout.rate)
            break;
    }
    return snprintf(buf, size, "%s(rate=%s)", s->ops->name, num);
}

const struct layer_ops layer_dropout = {
    .name = "Dropout",
    .keras_prefix = "dropout",
    .parse = dropout_parse,
    .infer = layer_infer_same_shape,
    .create = dropout_create,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .destroy = dropout_destroy,
    .init_params = NULL,
    .to_text = dropout_to_text,
};

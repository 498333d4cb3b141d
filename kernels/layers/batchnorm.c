/* batchnorm.c: BatchNormalization (Keras semantics, channels-last) with the statistics of the global batch.
 *
 * Training normalises with the mean and the (biased) variance of the whole global batch, over every rank: the
 * layer sums per-channel moments through ctx->sum once in forward and once in backward, as PyTorch's
 * SyncBatchNorm does. Per-rank statistics would make the updates depend on the number of ranks, which SPEC.md
 * rules out. Inference uses the moving averages, as Keras does.
 *
 * The moving averages are parameters marked `moving` (layer.h): backward writes this rank's share of the global
 * batch's mean and unbiased variance into their gradient slots, the exchange sums the shares, and the
 * optimizer folds the sums in with the momentum. So each average is updated once, by whichever rank owns that
 * part of the slab, in every exchange mode, and a checkpoint holds them as Keras's non-trainable weights.
 *
 * The layer runs on its input's own layout when that is nhwc, (n, c), nChw8c or nChw16c (bn_native_block), and
 * on a plain copy otherwise. Sums are in double, in fixed per-thread chunks added in thread order, so that a
 * run is bit-identical to the next with the same ranks and threads. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "layer_common.h"

struct bn_priv {
    struct plain_io io;          /* a layout not taken as is: through a plain copy (zeroed otherwise) */
    float *xhat;                 /* (rows, c) the last training forward's normalised input */
    float *inv_std;              /* (c,) 1 / sqrt(var + eps) of that forward */
    float *fa, *fb, *fc;         /* (c,) per-channel factors of the loop at hand */
    double *part;                /* (threads, 2c) per-thread partial sums */
    double *sums;                /* (2c,) this rank's sums, then (after ctx->sum) the global ones */
    double *local;               /* (2c,) this rank's sum x and sum x^2 of the last training forward */
    double *mean;                /* (c,) the global batch's, of that forward */
    long c;                      /* channels */
    long planes, R, B, CB;       /* the layout's view (bn_native_block): planes of R rows of B channels, CB
                                    blocks per sample */
    int copied;                  /* 1: the input is copied to plain dst first (a layout not taken as is) */
    int threads;
};

struct bn_parts bn_parts_of(const struct layer_spec *s)
{
    struct bn_parts p = {-1, -1, -1, -1};
    for (int i = 0; i < s->n_params; i++) {
        long off = (long)(s->params[i].offset - s->params[0].offset);
        const char *name = s->params[i].name;
        if (strcmp(name, "gamma") == 0)
            p.gamma = off;
        else if (strcmp(name, "beta") == 0)
            p.beta = off;
        else if (strcmp(name, "moving_mean") == 0)
            p.mean = off;
        else
            p.var = off;
    }
    return p;
}

/* ---- parsing, shapes, text ---------------------------------------------------------------------------- */

/* Keras: BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True, ...). The
 * initializers, regularizers and constraints are not supported: Keras's defaults (ones, zeros) are used. */
static int bn_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct batchnorm_cfg *c = &spec->u.bn;
    long axis;
    int rc;
    if ((rc = args_int(a, "axis", 0, 0, -1, &axis, err)) ||
        (rc = args_float(a, "momentum", 1, 0, 0.99, &c->momentum, err)) ||
        (rc = args_float(a, "epsilon", 2, 0, 1e-3, &c->epsilon, err)) ||
        (rc = args_bool(a, "center", 3, 1, &c->center, err)) || (rc = args_bool(a, "scale", 4, 1, &c->scale, err)))
        return rc;
    if (axis != -1 && axis != 1 && axis != 3)
        return args_error(a, layer_find_arg(a, "axis", 0), err,
                          "axis must be the channel axis (-1, channels-last), not %ld", axis);
    if (!(c->momentum >= 0.0 && c->momentum <= 1.0))
        return args_error(a, layer_find_arg(a, "momentum", 1), err, "momentum must be in [0, 1], not %g",
                          c->momentum);
    if (!(c->epsilon > 0.0 && c->epsilon < 1e10))
        return args_error(a, layer_find_arg(a, "epsilon", 2), err, "epsilon must be positive, not %g", c->epsilon);
    c->axis = (int)axis;
    return ERR_OK;
}

static int bn_infer(struct layer_spec *spec, struct error *err)
{
    const struct batchnorm_cfg *c = &spec->u.bn;
    int last = spec->in.rank == 3 ? 3 : 1;
    if (c->axis != -1 && c->axis != last)
        return layer_spec_error(spec, err, "axis=%d is not the channel axis of a %s input (use -1 or %d)", c->axis,
                                spec->in.rank == 3 ? "(h, w, c)" : "flat", last);
    spec->out = spec->in;
    long dims[1] = {spec->in.c};
    int n = 0;
    if (c->scale)
        layer_set_param(&spec->params[n++], "gamma", 1, dims);
    if (c->center)
        layer_set_param(&spec->params[n++], "beta", 1, dims);
    layer_set_param(&spec->params[n], "moving_mean", 1, dims);
    spec->params[n].moving = 1;
    spec->params[n++].momentum = c->momentum;
    layer_set_param(&spec->params[n], "moving_variance", 1, dims);
    spec->params[n].moving = 1;
    spec->params[n++].momentum = c->momentum;
    spec->n_params = n;
    return ERR_OK;
}

/* The shortest %g that reads back as the same double, so that a saved model reloads exactly. */
static const char *exact(double v, char *buf, size_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static int bn_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    const struct batchnorm_cfg *c = &s->u.bn;
    char m[32], e[32];
    return snprintf(buf, size, "%s(axis=%d, momentum=%s, epsilon=%s, center=%s, scale=%s)", s->ops->name, c->axis,
                    exact(c->momentum, m, sizeof m), exact(c->epsilon, e, sizeof e), c->center ? "True" : "False",
                    c->scale ? "True" : "False");
}

/* Keras defaults: gamma ones, beta zeros, moving_mean zeros, moving_variance ones. */
static void bn_init_params(const struct layer_spec *spec, float *w, double (*rnd)(void *), void *state)
{
    (void)rnd;
    (void)state;
    const struct bn_parts p = bn_parts_of(spec);
    const long c = spec->in.c;
    for (long i = 0; i < c; i++) {
        if (p.gamma >= 0)
            w[p.gamma + i] = 1.0f;
        if (p.beta >= 0)
            w[p.beta + i] = 0.0f;
        w[p.mean + i] = 0.0f;
        w[p.var + i] = 1.0f;
    }
}

/* ---- runtime ---------------------------------------------------------------------------------------- */

/* The layer sees its activations as planes of R rows of B channels: element (pl, r, e) is at (pl * R + r) * B
 * + e and is channel (pl % CB) * B + e. nhwc and (n, c) are one block of all C channels (CB = 1, a plane per
 * sample); nChw8c / nChw16c, what a Conv2D hands over, are blocks of 8 or 16 (channels past C in the last
 * block are padding, kept 0). On those layouts the layer reads and writes its input's layout as it is; any
 * other goes through a plain copy. */
int bn_native_block(const struct layer *l, dnnl_format_tag_t *tag)
{
    const struct shape *s = &l->spec->in;
    dnnl_memory_desc_t md;
    struct error ignored = {0};
    if (s->rank == 1) {
        if (tag)
            *tag = dnnl_nc;
        return dnn_md_nc(&md, l->n, s->c, &ignored) == ERR_OK && dnnl_memory_desc_equal(&md, &l->src_md) ? s->c : 0;
    }
    dnnl_dims_t dims = {l->n, s->c, s->h, s->w};
    static const struct {
        dnnl_format_tag_t tag;
        int block;
    } tags[] = {{dnnl_acdb, 0}, {dnnl_aBcd8b, 8}, {dnnl_aBcd16b, 16}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tags[i].tag) == dnnl_success &&
            dnnl_memory_desc_equal(&md, &l->src_md)) {
            if (tag)
                *tag = tags[i].tag;
            return tags[i].block ? tags[i].block : s->c;
        }
    return 0;
}

static void bn_destroy(struct layer *l)
{
    struct bn_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        plain_io_release(&p->io);
        free(p->xhat);
        free(p->inv_std);
        free(p->fa);
        free(p->fb);
        free(p->fc);
        free(p->part);
        free(p->sums);
        free(p->local);
        free(p->mean);
        free(p);
    }
    l->priv = NULL;
}

static int bn_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct shape *s = &l->spec->in;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    struct bn_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    p->c = s->c;
    int native = bn_native_block(l, NULL);
    p->B = native ? native : s->c;
    p->CB = (s->c + p->B - 1) / p->B;
    p->R = (long)s->h * s->w;
    p->planes = (long)l->n * p->CB;
    p->threads = omp_get_max_threads();
    /* Channels with the last block's padding; the per-channel factors are zeroed here and only [0, c) is
     * ever written, so padding stays 0 in every output. */
    size_t c = (size_t)p->c, cp = (size_t)p->CB * p->B;
    p->xhat = malloc(sizeof(float) * (size_t)p->planes * p->R * p->B + 1);
    p->inv_std = calloc(cp, sizeof(float));
    p->fa = calloc(cp, sizeof(float));
    p->fb = calloc(cp, sizeof(float));
    p->fc = calloc(cp, sizeof(float));
    p->part = malloc(sizeof(double) * 2 * cp * (size_t)p->threads);
    p->sums = malloc(sizeof(double) * 2 * cp);
    p->local = malloc(sizeof(double) * 2 * c);
    p->mean = malloc(sizeof(double) * c);
    if (!p->xhat || !p->inv_std || !p->fa || !p->fb || !p->fc || !p->part || !p->sums || !p->local || !p->mean) {
        error_set(err, ERR_INTERNAL, "%s: out of memory for a batch of %d", l->spec->name, l->n);
        goto fail;
    }
    if (native) {
        l->dst_md = l->src_md;
        if (dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK ||
            (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
            goto fail;
        return ERR_OK;
    }
    p->copied = 1;
    if (plain_io_create(&p->io, l, d, need_diff_src, err) != ERR_OK)
        goto fail;
    return ERR_OK;
fail:
    bn_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

/* sums[0..C) = sum over the batch of a per channel, sums[C..2C) = sum of a*b (b NULL: a*a), in double:
 * per-thread partials over fixed chunks of planes, added in thread order (the same bits every run with the
 * same threads). */
static void column_sums(struct bn_priv *p, const float *a, const float *b, double *sums)
{
    const long planes = p->planes, R = p->R, B = p->B, CB = p->CB, cp = CB * B;
    int used = 1;
#pragma omp parallel num_threads(p->threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long per = (planes + nt - 1) / nt, lo = per * t < planes ? per * t : planes;
        long hi = lo + per < planes ? lo + per : planes;
        double *s1 = p->part + (size_t)t * 2 * cp, *s2 = s1 + cp;
        memset(s1, 0, sizeof(double) * 2 * (size_t)cp);
        for (long pl = lo; pl < hi; pl++) {
            double *q1 = s1 + (pl % CB) * B, *q2 = s2 + (pl % CB) * B;
            for (long r = 0; r < R; r++) {
                const float *x = a + ((size_t)pl * R + r) * B, *y = b ? b + ((size_t)pl * R + r) * B : x;
#pragma omp simd
                for (long e = 0; e < B; e++) {
                    q1[e] += x[e];
                    q2[e] += (double)x[e] * y[e];
                }
            }
        }
#pragma omp single
        used = nt;
    }
    const long c = p->c;
    memset(sums, 0, sizeof(double) * 2 * (size_t)c);
    for (int t = 0; t < used; t++) {
        const double *s1 = p->part + (size_t)t * 2 * cp, *s2 = s1 + cp;
        for (long k = 0; k < c; k++) {
            sums[k] += s1[k];
            sums[c + k] += s2[k];
        }
    }
}

int bn_global_sums(const struct step_ctx *ctx, double *v, int n, struct error *err)
{
    return ctx->sum ? ctx->sum(v, n, ctx->sum_arg, err) : ERR_OK;
}

double bn_global_count(const struct layer *l, const struct step_ctx *ctx)
{
    const struct shape *s = &l->spec->in;
    int gb = ctx->global_batch > 0 ? ctx->global_batch : l->n;
    return (double)gb * s->h * s->w;
}

void bn_inference_coeffs(const struct layer *l, float *fa, float *fb, long c)
{
    const struct bn_parts q = bn_parts_of(l->spec);
    const double eps = l->spec->u.bn.epsilon;
    const float *w = l->w;
    for (long k = 0; k < c; k++) {
        double a = (q.gamma >= 0 ? w[q.gamma + k] : 1.0) / sqrt((double)w[q.var + k] + eps);
        fa[k] = (float)a;
        fb[k] = (float)((q.beta >= 0 ? w[q.beta + k] : 0.0) - (double)w[q.mean + k] * a);
    }
}

void bn_param_grads(const struct layer *l, const double *sums, const double *local, const double *mean, long c,
                    double m)
{
    const struct bn_parts q = bn_parts_of(l->spec);
    const double n_local = (double)l->n * l->spec->in.h * l->spec->in.w; /* this rank's elements per channel */
    float *dw = l->dw;
    for (long k = 0; k < c; k++) {
        if (q.beta >= 0)
            dw[q.beta + k] = (float)sums[k];
        if (q.gamma >= 0)
            dw[q.gamma + k] = (float)sums[c + k];
        /* sum over this rank of (x - mean)^2 = sum x^2 - 2 mean sum x + n mean^2. */
        double sq = local[c + k] - 2.0 * mean[k] * local[k] + n_local * mean[k] * mean[k];
        dw[q.mean + k] = (float)(local[k] / m);
        dw[q.var + k] = (float)((sq > 0 ? sq : 0) / (m > 1 ? m - 1 : 1));
    }
}

static int bn_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct bn_priv *p = l->priv;
    const struct bn_parts q = bn_parts_of(l->spec);
    const double eps = l->spec->u.bn.epsilon;
    const long planes = p->planes, R = p->R, B = p->B, CB = p->CB, c = p->c;
    float *y = dnn_ptr(l->dst);
    const float *x = dnn_ptr(src);
    int rc;
    if (p->copied) {
        if ((rc = plain_io_forward(&p->io, l, src, ctx->dnn, err)) != ERR_OK)
            return rc;
        x = y; /* normalised in place */
    }
    const float *w = l->w;
    float *fa = p->fa, *fb = p->fb, *fc = p->fc, *inv = p->inv_std;
    if (ctx->training) {
        column_sums(p, x, NULL, p->sums);
        memcpy(p->local, p->sums, sizeof(double) * 2 * (size_t)c);
        if ((rc = bn_global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
            return rc;
        const double m = bn_global_count(l, ctx);
        for (long k = 0; k < c; k++) {
            double mean = p->sums[k] / m, var = p->sums[c + k] / m - mean * mean;
            p->mean[k] = mean;
            inv[k] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
            fa[k] = (float)mean;
            fb[k] = q.gamma >= 0 ? w[q.gamma + k] : 1.0f;
            fc[k] = q.beta >= 0 ? w[q.beta + k] : 0.0f;
        }
        /* xhat = (x - mean) * inv_std is kept for backward; y = gamma * xhat + beta. */
#pragma omp parallel for schedule(static)
        for (long pl = 0; pl < planes; pl++) {
            const long k0 = (pl % CB) * B;
            for (long r = 0; r < R; r++) {
                const size_t o = ((size_t)pl * R + r) * B;
#pragma omp simd
                for (long e = 0; e < B; e++) {
                    float v = (x[o + e] - fa[k0 + e]) * inv[k0 + e];
                    p->xhat[o + e] = v;
                    y[o + e] = fb[k0 + e] * v + fc[k0 + e];
                }
            }
        }
        return ERR_OK;
    }
    /* Inference, with the moving averages: y = x * a + b, a = gamma / sqrt(var + eps), b = beta - mean * a. */
    bn_inference_coeffs(l, fa, fb, c);
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        const long k0 = (pl % CB) * B;
        for (long r = 0; r < R; r++) {
            const size_t o = ((size_t)pl * R + r) * B;
#pragma omp simd
            for (long e = 0; e < B; e++)
                y[o + e] = x[o + e] * fa[k0 + e] + fb[k0 + e];
        }
    }
    return ERR_OK;
}

/* With M the global batch's elements per channel and sums over the global batch:
 *   dbeta = sum dy, dgamma = sum dy * xhat (this rank's part; the exchange adds the ranks'),
 *   dx = gamma * inv_std * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M),
 * and the moving averages' slots get this rank's part of the batch mean (sum x / M) and of its unbiased
 * variance (sum (x - mean)^2 / (M - 1)). */
static int bn_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                       struct error *err)
{
    struct bn_priv *p = l->priv;
    const struct bn_parts q = bn_parts_of(l->spec);
    const long planes = p->planes, R = p->R, B = p->B, CB = p->CB, c = p->c;
    const float *dy = dnn_ptr(diff_dst); /* in dst_md */
    const float *w = l->w;
    int rc;
    (void)src;
    if (!ctx->training)
        return error_set(err, ERR_INTERNAL, "%s: backward after an inference forward", l->spec->name);
    column_sums(p, dy, p->xhat, p->sums);
    const double m = bn_global_count(l, ctx);
    bn_param_grads(l, p->sums, p->local, p->mean, c, m);
    if (!l->diff_src)
        return ERR_OK;
    if ((rc = bn_global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
        return rc;
    float *dx = plain_io_dx(&p->io, l); /* l->diff_src itself unless through a plain copy */
    float *a = p->fa, *mdy = p->fb, *mdyx = p->fc;
    for (long k = 0; k < c; k++) {
        a[k] = (q.gamma >= 0 ? w[q.gamma + k] : 1.0f) * p->inv_std[k];
        mdy[k] = (float)(p->sums[k] / m);
        mdyx[k] = (float)(p->sums[c + k] / m);
    }
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        const long k0 = (pl % CB) * B;
        for (long r = 0; r < R; r++) {
            const size_t o = ((size_t)pl * R + r) * B;
            const float *g = dy + o, *xh = p->xhat + o;
            float *out = dx + o;
#pragma omp simd
            for (long e = 0; e < B; e++)
                out[e] = a[k0 + e] * (g[e] - mdy[k0 + e] - xh[e] * mdyx[k0 + e]);
        }
    }
    return plain_io_backward(&p->io, l, ctx->dnn, err);
}

/* One call in forward (mean and mean square) and one in backward when there is an input gradient. */
static int bn_step_sums(const struct layer_spec *s, int forward, int need_diff_src)
{
    return forward || need_diff_src ? 2 * s->in.c : 0;
}

const struct layer_ops layer_batchnorm = {
    .name = "BatchNormalization",
    .keras_prefix = "batch_normalization",
    .parse = bn_parse,
    .infer = bn_infer,
    .create = bn_create,
    .forward = bn_forward,
    .backward = bn_backward,
    .destroy = bn_destroy,
    .init_params = bn_init_params,
    .to_text = bn_to_text,
    .step_sums = bn_step_sums,
};

/* bn_relu.c: BatchNormalization + ReLU (+ 2x2 MaxPooling2D), and BatchNormalization + Add + ReLU (a residual
 * block's end), as one kernel (bn_relu.h); its loops are in bn_relu_loops.c.
 *
 * Why: between two convolutions, BatchNormalization, Activation('relu') and the pooling each read and write the
 * convolution's output (the largest tensor of the block) once or twice per direction. Here forward reads it
 * twice (the moments, then normalise + ReLU (+ pool) in one pass) and writes only the block's output; backward
 * never writes anything of that size but the input gradient: the ReLU mask comes from the kernel's own output,
 * the normalised input is recomputed from the convolution's output instead of being kept, and with the pooling
 * the gradient sums run over the pooled positions only (a gradient is 0 wherever a window's maximum is not).
 * At a residual block's end the Add's shortcut is added before the ReLU in the same pass, and backward writes the
 * gradient before the ReLU once: it is the shortcut's gradient as well as what dx is made of.
 *
 * The formulas are batchnorm.c's (Keras's, with the global batch's statistics over every rank, summed through
 * ctx->sum with the same calls and sizes: once in forward, once in backward when there is an input gradient),
 * computed in another order, so results agree with the three layers run apart to within float rounding. The
 * pooling is the first largest of each window, as pooling.c's. Sums are in double, in fixed per-thread chunks
 * of planes added in thread order: a run is bit-identical to the next with the same ranks and threads. */
#include "bn_relu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "bn_relu_loops.h"
#include "layer_common.h"


/* The activations as planes of rows of B channels (batchnorm.c's view): plane pl is sample pl / CB, channel
 * block pl % CB; its H x W rows are the positions, its QH x QW pooled rows the windows. */
struct br_priv {
    dnnl_primitive_t to_plain;   /* a layout the loops do not take as is: src -> x_plain ... */
    dnnl_primitive_t from_plain; /* ... and dx_plain -> diff_src; NULL otherwise */
    dnnl_memory_t x_plain, dx_plain;
    uint8_t *where;              /* pooling: (planes, QH, QW, B) which of the window's four held the maximum */
    float *xmax;                 /* pooling: (planes, QH, QW, B) the input at that position (training) */
    float *mean, *inv;           /* (cp) the last training forward's global mean and 1 / sqrt(var + eps) */
    float *fa, *fb, *fc;         /* (cp) per-channel factors of the loop at hand; padding stays 0 */
    double *part;                /* (threads, 2 cp) per-thread partial sums */
    double *sums;                /* (2 c) this rank's sums, then (after ctx->sum) the global ones */
    double *local;               /* (2 c) this rank's sum x and sum x^2 of the last training forward */
    double *dmean;               /* (c) the global mean of that forward, in double */
    /* The Add variant: the shortcut s in the kernel's layout (through s_to when it comes in another) and the
     * gradient before the ReLU g, which is also the shortcut's (delivered through g_from into l->diff_srcs[1]
     * when that layout differs, else g is diff_srcs[1] itself). */
    dnnl_primitive_t s_to, g_from;
    dnnl_memory_t s_plain, g;
    long c, cp, planes, B, CB, H, W, R;
    int pool, add, QH, QW;
    int threads;
};

/* ---- which layers fuse ------------------------------------------------------------------------------- */

/* The one layer that reads layer i's output, or -1 when none or several (or one, twice) do. */
static int only_reader(const struct model *m, int i)
{
    int found = -1;
    for (int j = i + 1; j < m->n_layers; j++)
        for (int k = 0; k < m->layers[j].n_inputs; k++)
            if (m->layers[j].inputs[k] == i) {
                if (found >= 0)
                    return -1;
                found = j;
            }
    return found;
}

static int pool_2x2(const struct layer_spec *p)
{
    const struct pool_cfg *c = &p->u.pool;
    return p->ops == &layer_max_pooling2d && p->n_inputs == 1 && p->in.rank == 3 && c->ph == 2 && c->pw == 2 &&
           c->sh == 2 && c->sw == 2 && (!c->same || (p->in.h % 2 == 0 && p->in.w % 2 == 0)) && p->out.h >= 1 &&
           p->out.w >= 1;
}

static int is_relu(const struct layer_spec *a)
{
    return a->ops == &layer_activation && a->u.act.act == ACT_RELU && a->n_inputs == 1 && !a->softmax_in_loss;
}

/* The Add that layer i + 1 is when it joins layer i's output to another tensor and only a ReLU at i + 2 reads
 * its sum (the end of a residual block): the index of that other input, else -1. */
static int add_relu_shortcut(const struct model *m, int i)
{
    if (i + 2 >= m->n_layers)
        return -1;
    const struct layer_spec *a = &m->layers[i + 1];
    if (a->ops != &layer_add || a->n_inputs != 2 || !is_relu(&m->layers[i + 2]) || only_reader(m, i + 1) != i + 2 ||
        m->layers[i + 2].inputs[0] != i + 1)
        return -1;
    int k = a->inputs[0] == i ? 1 : 0; /* only_reader(m, i) == i + 1: layer i is exactly one of the two */
    return a->inputs[1 - k] == i ? a->inputs[k] : -1;
}

int bn_relu_fusable(const struct model *m, int i)
{
    if (i < 1 || i + 1 >= m->n_layers)
        return 0;
    const struct layer_spec *b = &m->layers[i], *a = &m->layers[i + 1];
    if (b->ops != &layer_batchnorm || b->n_inputs != 1 || only_reader(m, i) != i + 1)
        return 0;
    if (add_relu_shortcut(m, i) >= 0)
        return 2;
    if (!is_relu(a) || a->inputs[0] != i)
        return 0;
    return i + 2 < m->n_layers && only_reader(m, i + 1) == i + 2 && pool_2x2(&m->layers[i + 2]) ? 2 : 1;
}

const struct layer_ops *bn_relu_ops(const struct model *m, int i)
{
    switch (bn_relu_fusable(m, i)) {
    case 1:
        return &layer_bn_relu;
    case 2:
        return add_relu_shortcut(m, i) >= 0 ? &layer_bn_add_relu : &layer_bn_relu_pool;
    default:
        return NULL;
    }
}

int bn_relu_shortcut(const struct model *m, int i)
{
    return bn_relu_fusable(m, i) ? add_relu_shortcut(m, i) : -1;
}

/* ---- runtime ---------------------------------------------------------------------------------------- */

static void br_destroy(struct layer *l)
{
    struct br_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        dnnl_primitive_t prims[] = {p->to_plain, p->from_plain, p->s_to, p->g_from};
        dnnl_memory_t mems[] = {p->x_plain, p->dx_plain, p->s_plain, p->g,
                                l->diff_srcs[1] != p->g ? l->diff_srcs[1] : NULL};
        void *bufs[] = {p->where, p->xmax, p->mean, p->inv, p->fa, p->fb, p->fc, p->part, p->sums, p->local, p->dmean};
        dnn_destroy_all(prims, sizeof prims / sizeof prims[0], mems, sizeof mems / sizeof mems[0]);
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            free(bufs[i]);
        free(p);
    }
    l->priv = NULL;
    l->diff_srcs[1] = NULL;
}

/* A layout the loops do not take as is (bn_native_block): they run on a plain copy, and the input gradient
 * is reordered back. */
static int plain_copy_create(struct br_priv *p, struct layer *l, const dnnl_memory_desc_t *plain, const struct dnn *d,
                             int need_diff_src, struct error *err)
{
    if (dnn_mem(&p->x_plain, plain, d, NULL, err) != ERR_OK ||
        layer_reorder_prim(&p->to_plain, &l->src_md, plain, d, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    if (need_diff_src && (dnn_mem(&p->dx_plain, plain, d, NULL, err) != ERR_OK ||
                          layer_reorder_prim(&p->from_plain, plain, &l->src_md, d, err) != ERR_OK))
        return err ? err->code : ERR_INTERNAL;
    return ERR_OK;
}

/* The Add variant's shortcut (l->srcs[1] in l->src_mds[1], set by the network) and its gradient: in the kernel's
 * layout (l->dst_md, the shape of the shortcut too), through copies when the shortcut comes in another. */
static int shortcut_create(struct br_priv *p, struct layer *l, const struct dnn *d, struct error *err)
{
    if (dnn_mem(&p->g, &l->dst_md, d, NULL, err) != ERR_OK ||
        layer_reorder_prim(&p->s_to, &l->src_mds[1], &l->dst_md, d, err) != ERR_OK ||
        layer_reorder_prim(&p->g_from, &l->dst_md, &l->src_mds[1], d, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    if (!p->s_to) {
        l->diff_srcs[1] = p->g;
        return ERR_OK;
    }
    if (dnn_mem(&p->s_plain, &l->dst_md, d, NULL, err) != ERR_OK ||
        dnn_mem(&l->diff_srcs[1], &l->src_mds[1], d, NULL, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    return ERR_OK;
}

static int br_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct shape *s = &l->spec->in;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    struct br_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    p->pool = l->ops == &layer_bn_relu_pool;
    p->add = l->ops == &layer_bn_add_relu;
    l->diff_srcs[1] = NULL;
    p->c = s->c;
    dnnl_format_tag_t tag = s->rank == 3 ? dnnl_acdb : dnnl_nc;
    int native = bn_native_block(l, &tag);
    p->B = native ? native : s->c;
    p->CB = (s->c + p->B - 1) / p->B;
    p->cp = p->CB * p->B;
    p->H = s->h, p->W = s->w, p->R = (long)s->h * s->w;
    p->planes = (long)l->n * p->CB;
    p->threads = omp_get_max_threads();
    struct shape out = *s;
    if (p->pool) {
        out = l->spec[2].out;
        p->QH = out.h, p->QW = out.w;
    }
    size_t cp = (size_t)p->cp, c = (size_t)p->c, pooled = (size_t)p->planes * p->QH * p->QW * p->B;
    /* Per-channel factors zeroed here and only [0, c) ever written: the padding of a last block stays 0. */
    p->mean = calloc(cp, sizeof(float));
    p->inv = calloc(cp, sizeof(float));
    p->fa = calloc(cp, sizeof(float));
    p->fb = calloc(cp, sizeof(float));
    p->fc = calloc(cp, sizeof(float));
    p->part = malloc(sizeof(double) * 2 * cp * (size_t)p->threads);
    p->sums = malloc(sizeof(double) * 2 * c);
    p->local = malloc(sizeof(double) * 2 * c);
    p->dmean = malloc(sizeof(double) * c);
    if (p->pool) {
        p->where = malloc(pooled + 1);
        p->xmax = malloc(sizeof(float) * pooled + 1);
    }
    if (!p->mean || !p->inv || !p->fa || !p->fb || !p->fc || !p->part || !p->sums || !p->local || !p->dmean ||
        (p->pool && (!p->where || !p->xmax))) {
        error_set(err, ERR_INTERNAL, "%s: out of memory for a batch of %d", l->spec->name, l->n);
        goto fail;
    }
    dnnl_memory_desc_t in_md;
    if (s->rank == 3) {
        dnnl_dims_t in_dims = {l->n, s->c, s->h, s->w}, out_dims = {l->n, out.c, out.h, out.w};
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&in_md, 4, in_dims, dnnl_f32, tag));
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&l->dst_md, 4, out_dims, dnnl_f32, tag));
    } else {
        if (dnn_md_nc(&in_md, l->n, s->c, err) != ERR_OK)
            goto fail;
        l->dst_md = in_md;
    }
    if (!native && plain_copy_create(p, l, &in_md, d, need_diff_src, err) != ERR_OK)
        goto fail;
    if (dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK ||
        (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK) ||
        (p->add && shortcut_create(p, l, d, err) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    br_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

/* Adds the threads' partials (p->part, `used` of them, 2 cp each) into sums (2 c) in thread order. */
static void add_partials(const struct br_priv *p, int used, double *sums)
{
    const long c = p->c, cp = p->cp;
    memset(sums, 0, sizeof(double) * 2 * (size_t)c);
    for (int t = 0; t < used; t++) {
        const double *s1 = p->part + (size_t)t * 2 * cp, *s2 = s1 + cp;
        for (long k = 0; k < c; k++) {
            sums[k] += s1[k];
            sums[c + k] += s2[k];
        }
    }
}

/* This thread's planes [*lo, *hi): fixed chunks, so that the partial sums are the same every run. */
static void thread_planes(long planes, long *lo, long *hi)
{
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    long per = (planes + nt - 1) / nt;
    *lo = per * t < planes ? per * t : planes;
    *hi = *lo + per < planes ? *lo + per : planes;
}

/* y = relu(x * fa + fb) (+ the pooling, or + the shortcut sc) over every plane; training also keeps where and
 * xmax. */
static void norm_relu(const struct br_priv *p, const float *x, const float *sc, float *y, int training)
{
    const long planes = p->planes, B = p->B, CB = p->CB, R = p->R, Q = (long)p->QH * p->QW;
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (long pl = 0; pl < planes; pl++) {
        const long k0 = (pl % CB) * B;
        if (sc)
            plane_norm_add_relu(R, B, x + pl * R * B, p->fa + k0, p->fb + k0, sc + pl * R * B, y + pl * R * B);
        else if (p->pool)
            plane_norm_relu_pool(B, p->W, p->QH, p->QW, x + pl * R * B, p->fa + k0, p->fb + k0, y + pl * Q * B,
                                 training ? p->where + pl * Q * B : NULL, training ? p->xmax + pl * Q * B : NULL);
        else
            plane_norm_relu(R, B, x + pl * R * B, p->fa + k0, p->fb + k0, y + pl * R * B);
    }
}

static int br_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct br_priv *p = l->priv;
    const struct bn_parts q = bn_parts_of(l->spec);
    const double eps = l->spec->u.bn.epsilon;
    const long c = p->c, cp = p->cp, B = p->B, CB = p->CB, R = p->R;
    const float *w = l->w;
    int rc;
    if (p->to_plain) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, p->x_plain}};
        if ((rc = dnn_exec(p->to_plain, ctx->dnn, 2, args, err)) != ERR_OK)
            return rc;
    }
    const float *x = dnn_ptr(p->to_plain ? p->x_plain : src), *sc = NULL;
    if (p->add) {
        if (p->s_to) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, l->srcs[1]}, {DNNL_ARG_TO, p->s_plain}};
            if ((rc = dnn_exec(p->s_to, ctx->dnn, 2, args, err)) != ERR_OK)
                return rc;
        }
        sc = dnn_ptr(p->s_to ? p->s_plain : l->srcs[1]);
    }
    if (!ctx->training) {
        /* The moving averages: y = relu(x * a + b), a = gamma / sqrt(var + eps), b = beta - mean * a. */
        bn_inference_coeffs(l, p->fa, p->fb, c);
        norm_relu(p, x, sc, dnn_ptr(l->dst), 0);
        return ERR_OK;
    }
    int used = 1;
#pragma omp parallel num_threads(p->threads)
    {
        long lo, hi;
        thread_planes(p->planes, &lo, &hi);
        double *s1 = p->part + (size_t)omp_get_thread_num() * 2 * cp, *s2 = s1 + cp;
        memset(s1, 0, sizeof(double) * 2 * (size_t)cp);
        for (long pl = lo; pl < hi; pl++)
            plane_moments(R, B, x + pl * R * B, s1 + (pl % CB) * B, s2 + (pl % CB) * B);
#pragma omp single
        used = omp_get_num_threads();
    }
    add_partials(p, used, p->sums);
    memcpy(p->local, p->sums, sizeof(double) * 2 * (size_t)c);
    if ((rc = bn_global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
        return rc;
    const double m = bn_global_count(l, ctx);
    /* y = gamma * (x - mean) * inv + beta, as x * a + b: one multiply-add a value. */
    for (long k = 0; k < c; k++) {
        double mean = p->sums[k] / m, var = p->sums[c + k] / m - mean * mean;
        double inv = 1.0 / sqrt((var > 0 ? var : 0) + eps), a = (q.gamma >= 0 ? w[q.gamma + k] : 1.0) * inv;
        p->dmean[k] = mean;
        p->mean[k] = (float)mean;
        p->inv[k] = (float)inv;
        p->fa[k] = (float)a;
        p->fb[k] = (float)((q.beta >= 0 ? w[q.beta + k] : 0.0) - mean * a);
    }
    norm_relu(p, x, sc, dnn_ptr(l->dst), 1);
    return ERR_OK;
}

/* batchnorm.c's backward through the ReLU (and the pooling): with M the global batch's elements per channel,
 * g the gradient before the ReLU and sums over the global batch,
 *   dbeta = sum g, dgamma = sum g * xhat (this rank's part),
 *   dx = gamma * inv * (g - sum(g) / M - xhat * sum(g * xhat) / M),
 * and the moving averages' slots get this rank's part of the batch mean and unbiased variance. */
static int br_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                       struct error *err)
{
    struct br_priv *p = l->priv;
    const struct bn_parts q = bn_parts_of(l->spec);
    const long c = p->c, cp = p->cp, B = p->B, CB = p->CB, R = p->R, Q = (long)p->QH * p->QW;
    const float *dy = dnn_ptr(diff_dst), *y = dnn_ptr(l->dst);
    const float *x = dnn_ptr(p->to_plain ? p->x_plain : src); /* forward's plain copy, or src itself */
    const float *w = l->w;
    float *g = p->add ? dnn_ptr(p->g) : NULL;
    int rc, used = 1;
    if (!ctx->training)
        return error_set(err, ERR_INTERNAL, "%s: backward after an inference forward", l->spec->name);
#pragma omp parallel num_threads(p->threads)
    {
        long lo, hi;
        thread_planes(p->planes, &lo, &hi);
        double *s1 = p->part + (size_t)omp_get_thread_num() * 2 * cp, *s2 = s1 + cp;
        memset(s1, 0, sizeof(double) * 2 * (size_t)cp);
        for (long pl = lo; pl < hi; pl++) {
            const long k0 = (pl % CB) * B;
            if (g)
                plane_grad_sums_out(R, B, x + pl * R * B, y + pl * R * B, dy + pl * R * B, p->mean + k0,
                                    p->inv + k0, s1 + k0, s2 + k0, g + pl * R * B);
            else if (p->pool)
                plane_grad_sums(Q, B, p->xmax + pl * Q * B, y + pl * Q * B, dy + pl * Q * B, p->mean + k0,
                                p->inv + k0, s1 + k0, s2 + k0);
            else
                plane_grad_sums(R, B, x + pl * R * B, y + pl * R * B, dy + pl * R * B, p->mean + k0, p->inv + k0,
                                s1 + k0, s2 + k0);
        }
#pragma omp single
        used = omp_get_num_threads();
    }
    add_partials(p, used, p->sums);
    const double m = bn_global_count(l, ctx);
    bn_param_grads(l, p->sums, p->local, p->dmean, c, m);
    if (p->g_from) { /* the shortcut's gradient, in its layout */
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->g}, {DNNL_ARG_TO, l->diff_srcs[1]}};
        if ((rc = dnn_exec(p->g_from, ctx->dnn, 2, args, err)) != ERR_OK)
            return rc;
    }
    if (!l->diff_src)
        return ERR_OK;
    if ((rc = bn_global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
        return rc;
    float *a = p->fa, *mdy = p->fb, *mdyx = p->fc;
    for (long k = 0; k < c; k++) {
        a[k] = (q.gamma >= 0 ? w[q.gamma + k] : 1.0f) * p->inv[k];
        mdy[k] = (float)(p->sums[k] / m);
        mdyx[k] = (float)(p->sums[c + k] / m);
    }
    float *dx = dnn_ptr(p->from_plain ? p->dx_plain : l->diff_src);
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (long pl = 0; pl < p->planes; pl++) {
        const long k0 = (pl % CB) * B;
        if (g)
            plane_dx_of_g(R, B, x + pl * R * B, g + pl * R * B, p->mean + k0, p->inv + k0, a + k0, mdy + k0, mdyx + k0,
                          dx + pl * R * B);
        else if (p->pool)
            plane_dx_pool(B, p->H, p->W, p->QH, p->QW, x + pl * R * B, y + pl * Q * B, dy + pl * Q * B,
                          p->where + pl * Q * B, p->mean + k0, p->inv + k0, a + k0, mdy + k0, mdyx + k0,
                          dx + pl * R * B);
        else
            plane_dx(R, B, x + pl * R * B, y + pl * R * B, dy + pl * R * B, p->mean + k0, p->inv + k0, a + k0,
                     mdy + k0, mdyx + k0, dx + pl * R * B);
    }
    if (p->from_plain) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->dx_plain}, {DNNL_ARG_TO, l->diff_src}};
        return dnn_exec(p->from_plain, ctx->dnn, 2, args, err);
    }
    return ERR_OK;
}

/* Run by the network only (bn_relu_fusable): no parsing, shapes or parameters of their own. step_sums is
 * the BatchNormalization spec's (the network asks the spec's kind). */
const struct layer_ops layer_bn_relu = {
    .name = "BatchNormalization+ReLU",
    .create = br_create,
    .forward = br_forward,
    .backward = br_backward,
    .destroy = br_destroy,
};

const struct layer_ops layer_bn_add_relu = {
    .name = "BatchNormalization+Add+ReLU",
    .create = br_create,
    .forward = br_forward,
    .backward = br_backward,
    .destroy = br_destroy,
};

const struct layer_ops layer_bn_relu_pool = {
    .name = "BatchNormalization+ReLU+MaxPooling2D",
    .create = br_create,
    .forward = br_forward,
    .backward = br_backward,
    .destroy = br_destroy,
};

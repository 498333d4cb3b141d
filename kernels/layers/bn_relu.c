/* bn_relu.c: BatchNormalization + ReLU (+ 2x2 MaxPooling2D) as one kernel (bn_relu.h).
 *
 * Why: between two convolutions, BatchNormalization, Activation('relu') and the pooling each read and write the
 * convolution's output (the largest tensor of the block) once or twice per direction. Here forward reads it
 * twice (the moments, then normalise + ReLU (+ pool) in one pass) and writes only the block's output; backward
 * never writes anything of that size but the input gradient: the ReLU mask comes from the kernel's own output,
 * the normalised input is recomputed from the convolution's output instead of being kept, and with the pooling
 * the gradient sums run over the pooled positions only (a gradient is 0 wherever a window's maximum is not).
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
#include "layer_common.h"

/* The loops are compiled for AVX-512, AVX2 and baseline x86-64; the CPU picks. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BR_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BR_KERNEL
#endif
/* Each loop is written once on a channel block B and inlined into a clone-dispatched wrapper for B = 16, 8 (the
 * blocked layouts, and nhwc with that many channels) and any: with a variable B, GCC guards the vector loop with
 * run-time overlap checks that B = 16 failed, and the loops ran scalar (4x slower backward). */
#define BR_BODY static inline __attribute__((always_inline))

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
    long c, cp, planes, B, CB, H, W, R;
    int pool, QH, QW;
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

int bn_relu_fusable(const struct model *m, int i)
{
    if (i < 1 || i + 1 >= m->n_layers)
        return 0;
    const struct layer_spec *b = &m->layers[i], *a = &m->layers[i + 1];
    if (b->ops != &layer_batchnorm || b->n_inputs != 1 || only_reader(m, i) != i + 1 || a->ops != &layer_activation ||
        a->u.act.act != ACT_RELU || a->n_inputs != 1 || a->softmax_in_loss)
        return 0;
    return i + 2 < m->n_layers && only_reader(m, i + 1) == i + 2 && pool_2x2(&m->layers[i + 2]) ? 2 : 1;
}

const struct layer_ops *bn_relu_ops(int absorbed)
{
    return absorbed == 2 ? &layer_bn_relu_pool : &layer_bn_relu;
}

/* ---- the loops, one plane at a time ------------------------------------------------------------------- */

/* s1 += sum over the plane's rows of x, s2 += of x * x (per channel of the block). */
BR_BODY void plane_moments_body(long R, long B, const float *restrict x, double *restrict s1,
                                    double *restrict s2)
{
    for (long r = 0; r < R; r++) {
        const float *v = x + r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            s1[e] += v[e];
            s2[e] += (double)v[e] * v[e];
        }
    }
}

/* y = relu(x * a + b) over the plane. */
BR_BODY void plane_norm_relu_body(long R, long B, const float *restrict x, const float *restrict a,
                                      const float *restrict b, float *restrict y)
{
    for (long r = 0; r < R; r++) {
        const float *v = x + r * B;
        float *o = y + r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float t = v[e] * a[e] + b[e];
            o[e] = t > 0.0f ? t : 0.0f;
        }
    }
}

/* The same, then the maximum of each 2x2 window (the first largest, as pooling.c), and with `where` which
 * position it was and in xmax the input there. Rows and columns no window covers (odd sizes) are not read. */
BR_BODY void plane_norm_relu_pool_body(long B, long W, long QH, long QW, const float *restrict x,
                                           const float *restrict a, const float *restrict b, float *restrict y,
                                           uint8_t *restrict where, float *restrict xmax)
{
    for (long oh = 0; oh < QH; oh++)
        for (long ow = 0; ow < QW; ow++) {
            const float *p0 = x + (2 * oh * W + 2 * ow) * B, *p1 = p0 + B, *p2 = p0 + W * B, *p3 = p2 + B;
            const long o = (oh * QW + ow) * B;
            float pos[16];
            for (long e0 = 0; e0 < B; e0 += 16) {
                const long e1 = e0 + 16 < B ? e0 + 16 : B;
#pragma omp simd
                for (long e = e0; e < e1; e++) {
                    float v0 = p0[e] * a[e] + b[e], v1 = p1[e] * a[e] + b[e];
                    float v2 = p2[e] * a[e] + b[e], v3 = p3[e] * a[e] + b[e];
                    v0 = v0 > 0.0f ? v0 : 0.0f, v1 = v1 > 0.0f ? v1 : 0.0f;
                    v2 = v2 > 0.0f ? v2 : 0.0f, v3 = v3 > 0.0f ? v3 : 0.0f;
                    /* Positions as float lanes beside the maximum, so that selects of one width vectorize. */
                    float m = v0, at = 0.0f, xm = p0[e];
                    if (v1 > m)
                        m = v1, at = 1.0f, xm = p1[e];
                    if (v2 > m)
                        m = v2, at = 2.0f, xm = p2[e];
                    if (v3 > m)
                        m = v3, at = 3.0f, xm = p3[e];
                    y[o + e] = m;
                    pos[e - e0] = at;
                    if (xmax)
                        xmax[o + e] = xm;
                }
                if (where)
                    for (long e = e0; e < e1; e++)
                        where[o + e] = (uint8_t)pos[e - e0];
            }
        }
}

/* Backward's sums over the plane: s1 += g, s2 += g * xhat, where g is dy through the ReLU (0 where y is not
 * > 0) and xhat = (x - mean) * inv. Without pooling x, y, dy are the plane's R rows; with it they are its
 * pooled rows, x being xmax (the input where each maximum was: the gradient is 0 everywhere else). */
BR_BODY void plane_grad_sums_body(long R, long B, const float *restrict x, const float *restrict y,
                                      const float *restrict dy, const float *restrict mean,
                                      const float *restrict inv, double *restrict s1, double *restrict s2)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            /* dy loaded unconditionally: a select, not a branch, so that the loop vectorizes (with
             * -fno-trapping-math, CMakeLists.txt). */
            float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
            float xh = (x[o + e] - mean[e]) * inv[e];
            s1[e] += g;
            s2[e] += (double)g * xh;
        }
    }
}

/* dx = a * (g - mdy - xhat * mdyx) over the plane (batchnorm.c's formula), g as in plane_grad_sums. */
BR_BODY void plane_dx_body(long R, long B, const float *restrict x, const float *restrict y,
                               const float *restrict dy, const float *restrict mean, const float *restrict inv,
                               const float *restrict a, const float *restrict mdy, const float *restrict mdyx,
                               float *restrict dx)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
            float xh = (x[o + e] - mean[e]) * inv[e];
            dx[o + e] = a[e] * (g - mdy[e] - xh * mdyx[e]);
        }
    }
}

/* dx where the gradient g is 0: the rows and columns no pooling window covers. */
BR_BODY void plane_dx_uncovered_body(long R, long B, const float *restrict x, const float *restrict mean,
                                         const float *restrict inv, const float *restrict a,
                                         const float *restrict mdy, const float *restrict mdyx, float *restrict dx)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float xh = (x[o + e] - mean[e]) * inv[e];
            dx[o + e] = a[e] * (0.0f - mdy[e] - xh * mdyx[e]);
        }
    }
}

/* The same through the pooling: g is the pooled gradient (through the ReLU of the pooled output) at the
 * position `where` names and 0 at the window's three others and at the rows and columns no window covers. */
BR_BODY void plane_dx_pool_body(long B, long H, long W, long QH, long QW, const float *restrict x,
                                    const float *restrict y, const float *restrict dy,
                                    const uint8_t *restrict where, const float *restrict mean,
                                    const float *restrict inv, const float *restrict a, const float *restrict mdy,
                                    const float *restrict mdyx, float *restrict dx)
{
    for (long oh = 0; oh < QH; oh++) {
        for (long ow = 0; ow < QW; ow++) {
            const long o = (oh * QW + ow) * B, i0 = (2 * oh * W + 2 * ow) * B, i1 = i0 + B, i2 = i0 + W * B,
                       i3 = i2 + B;
#pragma omp simd
            for (long e = 0; e < B; e++) {
                float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
                int k = where[o + e];
                float m = mdy[e], s = mdyx[e], mu = mean[e], iv = inv[e], f = a[e];
                dx[i0 + e] = f * ((k == 0 ? g : 0.0f) - m - (x[i0 + e] - mu) * iv * s);
                dx[i1 + e] = f * ((k == 1 ? g : 0.0f) - m - (x[i1 + e] - mu) * iv * s);
                dx[i2 + e] = f * ((k == 2 ? g : 0.0f) - m - (x[i2 + e] - mu) * iv * s);
                dx[i3 + e] = f * ((k == 3 ? g : 0.0f) - m - (x[i3 + e] - mu) * iv * s);
            }
        }
        if (W % 2)
            for (long r = 2 * oh; r < 2 * oh + 2; r++)
                plane_dx_uncovered_body(1, B, x + (r * W + W - 1) * B, mean, inv, a, mdy, mdyx,
                                        dx + (r * W + W - 1) * B);
    }
    if (H % 2)
        plane_dx_uncovered_body(W, B, x + (H - 1) * W * B, mean, inv, a, mdy, mdyx, dx + (H - 1) * W * B);
}

/* The loops above for the block at hand (BR_BODY). */
BR_KERNEL static void plane_moments(long R, long B, const float *restrict x, double *restrict s1,
                                    double *restrict s2)
{
    if (B == 16)
        plane_moments_body(R, 16, x, s1, s2);
    else if (B == 8)
        plane_moments_body(R, 8, x, s1, s2);
    else
        plane_moments_body(R, B, x, s1, s2);
}

BR_KERNEL static void plane_norm_relu(long R, long B, const float *restrict x, const float *restrict a,
                                      const float *restrict b, float *restrict y)
{
    if (B == 16)
        plane_norm_relu_body(R, 16, x, a, b, y);
    else if (B == 8)
        plane_norm_relu_body(R, 8, x, a, b, y);
    else
        plane_norm_relu_body(R, B, x, a, b, y);
}

BR_KERNEL static void plane_norm_relu_pool(long B, long W, long QH, long QW, const float *restrict x,
                                           const float *restrict a, const float *restrict b, float *restrict y,
                                           uint8_t *restrict where, float *restrict xmax)
{
    if (B == 16)
        plane_norm_relu_pool_body(16, W, QH, QW, x, a, b, y, where, xmax);
    else if (B == 8)
        plane_norm_relu_pool_body(8, W, QH, QW, x, a, b, y, where, xmax);
    else
        plane_norm_relu_pool_body(B, W, QH, QW, x, a, b, y, where, xmax);
}

BR_KERNEL static void plane_grad_sums(long R, long B, const float *restrict x, const float *restrict y,
                                      const float *restrict dy, const float *restrict mean,
                                      const float *restrict inv, double *restrict s1, double *restrict s2)
{
    if (B == 16)
        plane_grad_sums_body(R, 16, x, y, dy, mean, inv, s1, s2);
    else if (B == 8)
        plane_grad_sums_body(R, 8, x, y, dy, mean, inv, s1, s2);
    else
        plane_grad_sums_body(R, B, x, y, dy, mean, inv, s1, s2);
}

BR_KERNEL static void plane_dx(long R, long B, const float *restrict x, const float *restrict y,
                               const float *restrict dy, const float *restrict mean, const float *restrict inv,
                               const float *restrict a, const float *restrict mdy, const float *restrict mdyx,
                               float *restrict dx)
{
    if (B == 16)
        plane_dx_body(R, 16, x, y, dy, mean, inv, a, mdy, mdyx, dx);
    else if (B == 8)
        plane_dx_body(R, 8, x, y, dy, mean, inv, a, mdy, mdyx, dx);
    else
        plane_dx_body(R, B, x, y, dy, mean, inv, a, mdy, mdyx, dx);
}

BR_KERNEL static void plane_dx_pool(long B, long H, long W, long QH, long QW, const float *restrict x,
                                    const float *restrict y, const float *restrict dy,
                                    const uint8_t *restrict where, const float *restrict mean,
                                    const float *restrict inv, const float *restrict a, const float *restrict mdy,
                                    const float *restrict mdyx, float *restrict dx)
{
    if (B == 16)
        plane_dx_pool_body(16, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
    else if (B == 8)
        plane_dx_pool_body(8, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
    else
        plane_dx_pool_body(B, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
}

/* ---- runtime ---------------------------------------------------------------------------------------- */

static void br_destroy(struct layer *l)
{
    struct br_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        if (p->to_plain)
            dnnl_primitive_destroy(p->to_plain);
        if (p->from_plain)
            dnnl_primitive_destroy(p->from_plain);
        if (p->x_plain)
            dnnl_memory_destroy(p->x_plain);
        if (p->dx_plain)
            dnnl_memory_destroy(p->dx_plain);
        free(p->where);
        free(p->xmax);
        free(p->mean);
        free(p->inv);
        free(p->fa);
        free(p->fb);
        free(p->fc);
        free(p->part);
        free(p->sums);
        free(p->local);
        free(p->dmean);
        free(p);
    }
    l->priv = NULL;
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
        (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    br_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

static int global_sums(const struct step_ctx *ctx, double *v, int n, struct error *err)
{
    return ctx->sum ? ctx->sum(v, n, ctx->sum_arg, err) : ERR_OK;
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

/* y = relu(x * fa + fb) (+ the pooling) over every plane; training also keeps where and xmax. */
static void norm_relu(const struct br_priv *p, const float *x, float *y, int training)
{
    const long planes = p->planes, B = p->B, CB = p->CB, R = p->R, Q = (long)p->QH * p->QW;
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (long pl = 0; pl < planes; pl++) {
        const long k0 = (pl % CB) * B;
        if (p->pool)
            plane_norm_relu_pool(B, p->W, p->QH, p->QW, x + pl * R * B, p->fa + k0, p->fb + k0, y + pl * Q * B,
                                 training ? p->where + pl * Q * B : NULL, training ? p->xmax + pl * Q * B : NULL);
        else
            plane_norm_relu(R, B, x + pl * R * B, p->fa + k0, p->fb + k0, y + pl * R * B);
    }
}

/* Elements per channel in the global batch. */
static double global_count(const struct layer *l, const struct step_ctx *ctx)
{
    int gb = ctx->global_batch > 0 ? ctx->global_batch : l->n;
    return (double)gb * l->spec->in.h * l->spec->in.w;
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
    const float *x = dnn_ptr(p->to_plain ? p->x_plain : src);
    if (!ctx->training) {
        /* The moving averages: y = relu(x * a + b), a = gamma / sqrt(var + eps), b = beta - mean * a. */
        for (long k = 0; k < c; k++) {
            double a = (q.gamma >= 0 ? w[q.gamma + k] : 1.0) / sqrt((double)w[q.var + k] + eps);
            p->fa[k] = (float)a;
            p->fb[k] = (float)((q.beta >= 0 ? w[q.beta + k] : 0.0) - (double)w[q.mean + k] * a);
        }
        norm_relu(p, x, dnn_ptr(l->dst), 0);
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
    if ((rc = global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
        return rc;
    const double m = global_count(l, ctx);
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
    norm_relu(p, x, dnn_ptr(l->dst), 1);
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
    float *dw = l->dw;
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
            if (p->pool)
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
    const double m = global_count(l, ctx);
    const double n_local = (double)l->n * R; /* this rank's elements per channel */
    for (long k = 0; k < c; k++) {
        if (q.beta >= 0)
            dw[q.beta + k] = (float)p->sums[k];
        if (q.gamma >= 0)
            dw[q.gamma + k] = (float)p->sums[c + k];
        /* sum over this rank of (x - mean)^2 = sum x^2 - 2 mean sum x + n mean^2. */
        double mean = p->dmean[k];
        double sq = p->local[c + k] - 2.0 * mean * p->local[k] + n_local * mean * mean;
        dw[q.mean + k] = (float)(p->local[k] / m);
        dw[q.var + k] = (float)((sq > 0 ? sq : 0) / (m > 1 ? m - 1 : 1));
    }
    if (!l->diff_src)
        return ERR_OK;
    if ((rc = global_sums(ctx, p->sums, (int)(2 * c), err)) != ERR_OK)
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
        if (p->pool)
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

const struct layer_ops layer_bn_relu_pool = {
    .name = "BatchNormalization+ReLU+MaxPooling2D",
    .create = br_create,
    .forward = br_forward,
    .backward = br_backward,
    .destroy = br_destroy,
};

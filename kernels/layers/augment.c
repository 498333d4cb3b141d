/* augment.c: the augmentation layers' shared parts (see augment.h): draws, TF's projective sampler and fill
 * modes, Keras's smart_resize, argument parsing and text, and the training-only runtime. */
#include "augment.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "rng.h"

const char *const augment_fill_names[] = {"reflect", "wrap", "constant", "nearest", NULL};
const char *const augment_interp_names[] = {"nearest", "bilinear", NULL};

int layer_is_augmentation(const struct layer_ops *ops)
{
    return ops == &layer_random_flip || ops == &layer_random_translation || ops == &layer_random_rotation ||
           ops == &layer_random_zoom || ops == &layer_random_crop;
}

/* ------------------------------------------------------------------------------------------ draws */

uint64_t augment_key(const struct layer_spec *s, const struct step_ctx *ctx, int64_t id)
{
    const struct augment_cfg *c = &s->u.aug;
    uint64_t stream = c->has_seed ? (1ULL << 63) | (uint64_t)c->seed : (uint64_t)s->index;
    return rng_hash4(ctx->seed, ctx->epoch, stream, (uint64_t)id);
}

float augment_unit(uint64_t key, uint64_t k) { return rng_unit_f(rng_hash_last(key, k)); }

float augment_uniform(uint64_t key, uint64_t k, float lo, float hi)
{
    return augment_unit(key, k) * (hi - lo) + lo;
}

/* ------------------------------------------------------------------------------------------ sampling */

/* TF's MapCoordinate for each fill mode (scipy's conventions), in float as TF computes it: a coordinate outside
 * [0, len - 1] is brought back inside, except in constant mode, where the caller then fills. */
static inline __attribute__((always_inline)) float map_coord(float c, long len, enum augment_fill fill)
{
    switch (fill) {
    case AUG_FILL_REFLECT: /* d c b a | a b c d | d c b a */
        if (c < 0) {
            if (len <= 1) {
                c = 0;
            } else {
                long sz2 = 2 * len;
                if (c < (float)sz2) /* always, as in TF */
                    c = (float)(sz2 * (long)(-c / (float)sz2)) + c;
                c = c < (float)-len ? c + (float)sz2 : -c - 1;
            }
        } else if (c > (float)(len - 1)) {
            if (len <= 1) {
                c = 0;
            } else {
                long sz2 = 2 * len;
                c -= (float)(sz2 * (long)(c / (float)sz2));
                if (c >= (float)len)
                    c = (float)sz2 - c - 1;
            }
        }
        break;
    case AUG_FILL_WRAP: /* a b c d | a b c d | a b c d */
        if (c < 0) {
            if (len <= 1)
                c = 0;
            else
                c += (float)(len * ((long)(-c / (float)(len - 1)) + 1));
        } else if (c > (float)(len - 1)) {
            if (len <= 1)
                c = 0;
            else
                c -= (float)(len * (long)(c / (float)(len - 1)));
        }
        break;
    case AUG_FILL_CONSTANT:
        return c;
    case AUG_FILL_NEAREST:
        break;
    }
    /* The clamp keeps rounding (3.5 in a length of 4) inside. */
    return c < 0 ? 0 : c > (float)(len - 1) ? (float)(len - 1) : c;
}

/* floorf and roundf (half away from zero) of a point already known to be in [0, len - 1], without a library call
 * per pixel: truncation is the floor there, and f - floor(f) is exact. */
static inline float floor_nonneg(float f) { return (float)(long)f; }
static inline long round_nonneg(float f)
{
    float fl = floor_nonneg(f);
    return (long)fl + (f - fl >= 0.5f);
}

/* Why a padded copy: after the fill mode, a point that is not filled whole lies in [0, len - 1] on each axis, so
 * its neighbours are within [0, len]; index len (weight 0, or never read by nearest) reads fill_value, as TF's
 * read_with_fill_value does. The copy (h + 1, w + 1, c) with a last row and column of fill_value spares every
 * read its bounds check. */
static float *pad_image(const float *x, struct augment_image im, float fill_value, float *pad)
{
    const size_t pw = (size_t)im.w + 1, c = (size_t)im.c;
    for (int r = 0; r < im.h; r++) {
        memcpy(pad + (size_t)r * pw * c, x + (size_t)r * im.w * c, sizeof(float) * im.w * c);
        for (size_t ch = 0; ch < c; ch++)
            pad[((size_t)r * pw + im.w) * c + ch] = fill_value;
    }
    for (size_t k = 0; k < pw * c; k++)
        pad[(size_t)im.h * pw * c + k] = fill_value;
    return pad;
}

/* Where the output columns (or rows) of a separable transform read along their axis: neighbours at element
 * offsets i0, i1 (index times the stride) with weights w0, w1 (nearest: i1 = i0, weights 1 and 0, which gives the
 * pixel itself), and inside = 0 where the point is filled whole. */
struct axis_taps {
    int32_t *i0, *i1;
    float *w0, *w1;
    int32_t *inside;
};

size_t augment_scratch_bytes(struct augment_image im)
{
    return sizeof(float) * ((size_t)im.h + 1) * ((size_t)im.w + 1) * im.c + 5 * 4 * ((size_t)im.h + im.w) + 64;
}

/* Carves n taps out of *mem. */
static struct axis_taps taps_at(char **mem, int n)
{
    struct axis_taps t;
    t.i0 = (int32_t *)*mem;
    t.i1 = t.i0 + n;
    t.w0 = (float *)(t.i1 + n);
    t.w1 = t.w0 + n;
    t.inside = (int32_t *)(t.w1 + n);
    *mem = (char *)(t.inside + n);
    return t;
}

static void axis_taps(struct axis_taps *t, int n, float scale, float offset, long len, long stride,
                      enum augment_fill fill, enum augment_interp interp)
{
    for (int o = 0; o < n; o++) {
        float f = map_coord(scale * (float)o + offset, len, fill);
        t->inside[o] = !(f < 0 || f > (float)(len - 1));
        if (!t->inside[o]) {
            t->i0[o] = t->i1[o] = 0;
            t->w0[o] = t->w1[o] = 0;
        } else if (interp == AUG_INTERP_NEAREST) {
            t->i0[o] = t->i1[o] = (int32_t)(round_nonneg(f) * stride);
            t->w0[o] = 1;
            t->w1[o] = 0;
        } else {
            float f0 = floor_nonneg(f), f1 = f0 + 1;
            t->i0[o] = (int32_t)((long)f0 * stride);
            t->i1[o] = (int32_t)((long)f1 * stride);
            t->w0[o] = f1 - f;
            t->w1[o] = f - f0;
        }
    }
}

/* One output row of a single-channel image from padded rows p0 and p1 with row weights rw0, rw1: TF's bilinear
 * formula, a select for the filled points, no branch, so that it vectorizes (gathers on AVX-512, picked by the
 * CPU at load time as dropout's masks are). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
static void row_c1(const float *p0, const float *p1, float rw0, float rw1, const struct axis_taps *k, int w,
                   float fill_value, float *restrict out)
{
#pragma omp simd
    for (int ox = 0; ox < w; ox++) {
        float top = k->w0[ox] * p0[k->i0[ox]] + k->w1[ox] * p0[k->i1[ox]];
        float bottom = k->w0[ox] * p1[k->i0[ox]] + k->w1[ox] * p1[k->i1[ox]];
        float v = rw0 * top + rw1 * bottom;
        out[ox] = k->inside[ox] ? v : fill_value;
    }
}

/* augment_affine for t[1] = t[3] = 0 (translation, zoom): each column's and each row's taps worked out once.
 * p is the padded image. */
static void affine_separable(const float *p, float *y, struct augment_image im, const struct axis_taps *cols,
                             const struct axis_taps *rows, float fill_value)
{
    const size_t c = (size_t)im.c, pr = ((size_t)im.w + 1) * c; /* padded row */
    for (int oy = 0; oy < im.h; oy++) {
        float *out = y + (size_t)oy * im.w * c;
        if (!rows->inside[oy]) {
            for (size_t e = 0; e < (size_t)im.w * c; e++)
                out[e] = fill_value;
            continue;
        }
        const float *p0 = p + rows->i0[oy] * pr, *p1 = p + rows->i1[oy] * pr;
        const float rw0 = rows->w0[oy], rw1 = rows->w1[oy];
        if (c == 1) {
            row_c1(p0, p1, rw0, rw1, cols, im.w, fill_value, out);
            continue;
        }
        for (int ox = 0; ox < im.w; ox++, out += c) {
            const size_t a = (size_t)cols->i0[ox], b = (size_t)cols->i1[ox];
            const float w0 = cols->w0[ox], w1 = cols->w1[ox];
            for (size_t ch = 0; ch < c; ch++) {
                float v = rw0 * (w0 * p0[a + ch] + w1 * p0[b + ch]) + rw1 * (w0 * p1[a + ch] + w1 * p1[b + ch]);
                out[ch] = cols->inside[ox] ? v : fill_value;
            }
        }
    }
}

/* The points (fx, fy) (w,) that output row oy reads, after the fill mode. */
static inline __attribute__((always_inline)) void row_points(float *fx, float *fy, const float t[6], int oy,
                                                             struct augment_image im, enum augment_fill fill)
{
    for (int ox = 0; ox < im.w; ox++) {
        fx[ox] = map_coord(t[0] * (float)ox + t[1] * (float)oy + t[2], im.w, fill);
        fy[ox] = map_coord(t[3] * (float)ox + t[4] * (float)oy + t[5], im.h, fill);
    }
}

/* One output row of a single-channel image under a general transform, from its points (fx, fy) after the fill
 * mode: the same arithmetic as the per-pixel code below, written without branches so that it vectorizes. A point
 * outside (constant mode) is read at (0, 0) and then replaced by fill_value. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
static void row_general_c1(const float *p, int pr, const float *fx, const float *fy, struct augment_image im,
                           enum augment_interp interp, float fill_value, float *restrict out)
{
    const float xmax = (float)(im.w - 1), ymax = (float)(im.h - 1);
    if (interp == AUG_INTERP_NEAREST) {
#pragma omp simd
        for (int ox = 0; ox < im.w; ox++) {
            float X = fx[ox], Y = fy[ox];
            int in = X >= 0 && X <= xmax && Y >= 0 && Y <= ymax;
            X = in ? X : 0;
            Y = in ? Y : 0;
            int x0 = (int)X, y0 = (int)Y;
            int xi = x0 + (X - (float)x0 >= 0.5f), yi = y0 + (Y - (float)y0 >= 0.5f);
            float v = p[yi * pr + xi];
            out[ox] = in ? v : fill_value;
        }
        return;
    }
#pragma omp simd
    for (int ox = 0; ox < im.w; ox++) {
        float X = fx[ox], Y = fy[ox];
        int in = X >= 0 && X <= xmax && Y >= 0 && Y <= ymax;
        X = in ? X : 0;
        Y = in ? Y : 0;
        float x0 = (float)(int)X, y0 = (float)(int)Y, x1 = x0 + 1, y1 = y0 + 1;
        int o = (int)y0 * pr + (int)x0;
        float top = (x1 - X) * p[o] + (X - x0) * p[o + 1];
        float bottom = (x1 - X) * p[o + pr] + (X - x0) * p[o + pr + 1];
        float v = (y1 - Y) * top + (Y - y0) * bottom;
        out[ox] = in ? v : fill_value;
    }
}

void augment_affine(const float *x, float *y, struct augment_image im, const float t[6], enum augment_fill fill,
                    enum augment_interp interp, float fill_value, void *scratch)
{
    float *p = pad_image(x, im, fill_value, scratch);
    const size_t c = (size_t)im.c, pr = ((size_t)im.w + 1) * c;
    if (t[1] == 0 && t[3] == 0) {
        char *mem = (char *)scratch + sizeof(float) * ((size_t)im.h + 1) * pr;
        struct axis_taps cols = taps_at(&mem, im.w), rows = taps_at(&mem, im.h);
        axis_taps(&cols, im.w, t[0], t[2], im.w, (long)c, fill, interp);
        axis_taps(&rows, im.h, t[4], t[5], im.h, 1, fill, interp);
        affine_separable(p, y, im, &cols, &rows, fill_value);
        return;
    }
    if (c == 1) {
        float *fx = (float *)((char *)scratch + sizeof(float) * ((size_t)im.h + 1) * pr), *fy = fx + im.w;
        for (int oy = 0; oy < im.h; oy++) {
            switch (fill) { /* one loop per mode, so that map_coord's switch leaves the loop */
            case AUG_FILL_REFLECT: row_points(fx, fy, t, oy, im, AUG_FILL_REFLECT); break;
            case AUG_FILL_WRAP: row_points(fx, fy, t, oy, im, AUG_FILL_WRAP); break;
            case AUG_FILL_CONSTANT: row_points(fx, fy, t, oy, im, AUG_FILL_CONSTANT); break;
            case AUG_FILL_NEAREST: row_points(fx, fy, t, oy, im, AUG_FILL_NEAREST); break;
            }
            row_general_c1(p, (int)pr, fx, fy, im, interp, fill_value, y + (size_t)oy * im.w);
        }
        return;
    }
    for (int oy = 0; oy < im.h; oy++)
        for (int ox = 0; ox < im.w; ox++) {
            float *out = y + ((size_t)oy * im.w + ox) * c;
            float in_x = t[0] * (float)ox + t[1] * (float)oy + t[2];
            float in_y = t[3] * (float)ox + t[4] * (float)oy + t[5];
            float fx = map_coord(in_x, im.w, fill), fy = map_coord(in_y, im.h, fill);
            /* Only constant mode leaves points outside: TF fills them whole (no blend with the edge). */
            if (fx < 0 || fx > (float)(im.w - 1) || fy < 0 || fy > (float)(im.h - 1)) {
                for (size_t ch = 0; ch < c; ch++)
                    out[ch] = fill_value;
                continue;
            }
            if (interp == AUG_INTERP_NEAREST) {
                const float *q = p + (size_t)round_nonneg(fy) * pr + (size_t)round_nonneg(fx) * c;
                for (size_t ch = 0; ch < c; ch++)
                    out[ch] = q[ch];
                continue;
            }
            float y0 = floor_nonneg(fy), x0 = floor_nonneg(fx), y1 = y0 + 1, x1 = x0 + 1;
            const float *q0 = p + (size_t)y0 * pr, *q1 = p + (size_t)y1 * pr;
            const size_t a = (size_t)x0 * c, b = (size_t)x1 * c;
            for (size_t ch = 0; ch < c; ch++) {
                float top = (x1 - fx) * q0[a + ch] + (fx - x0) * q0[b + ch];
                float bottom = (x1 - fx) * q1[a + ch] + (fx - x0) * q1[b + ch];
                out[ch] = (y1 - fy) * top + (fy - y0) * bottom;
            }
        }
}

/* TF's resize_bilinear weights with half-pixel centres: output index i of `out` reads input (of `in` elements)
 * at (i + 0.5) * in / out - 0.5, between lo and hi (clamped) with weight lerp on hi. */
static void resize_weights(long in, long out, long i, long *lo, long *hi, float *lerp)
{
    float scale = (float)in / (float)out;
    float c = ((float)i + 0.5f) * scale - 0.5f;
    float f = floorf(c);
    *lo = (long)f > 0 ? (long)f : 0;
    *hi = (long)ceilf(c) < in - 1 ? (long)ceilf(c) : in - 1;
    *lerp = c - f;
}

void augment_smart_window(int h, int w, int oh, int ow, long *y_start, long *x_start, long *ch, long *cw)
{
    /* Keras's crop to the target's aspect ratio, with its float32 casts. */
    long wh = (long)((float)((long)w * oh) / (float)ow), ww = (long)((float)((long)h * ow) / (float)oh);
    *ch = wh < h ? wh : h;
    *cw = ww < w ? ww : w;
    *y_start = (long)((float)(h - *ch) / 2);
    *x_start = (long)((float)(w - *cw) / 2);
}

void augment_smart_resize(const float *x, struct augment_image in, float *y, int oh, int ow)
{
    long y_start, x_start, ch, cw;
    augment_smart_window(in.h, in.w, oh, ow, &y_start, &x_start, &ch, &cw);
    for (int oy = 0; oy < oh; oy++) {
        long ya, yb;
        float ly;
        resize_weights(ch, oh, oy, &ya, &yb, &ly);
        const float *ra = x + ((size_t)(y_start + ya) * in.w + x_start) * in.c;
        const float *rb = x + ((size_t)(y_start + yb) * in.w + x_start) * in.c;
        for (int ox = 0; ox < ow; ox++) {
            long xa, xb;
            float lx;
            resize_weights(cw, ow, ox, &xa, &xb, &lx);
            float *out = y + ((size_t)oy * ow + ox) * in.c;
            for (int k = 0; k < in.c; k++) {
                float tl = ra[xa * in.c + k], tr = ra[xb * in.c + k];
                float bl = rb[xa * in.c + k], br = rb[xb * in.c + k];
                float top = tl + (tr - tl) * lx, bottom = bl + (br - bl) * lx;
                out[k] = top + (bottom - top) * ly;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ parsing and text */

int augment_arg_error(struct args *a, const char *key, int pos, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return args_error(a, layer_find_arg(a, key, pos), err, "%s", what);
}

int augment_parse_factor(struct args *a, const char *key, int pos, int required, double *lo, double *hi,
                         int *form, struct error *err)
{
    double v[2] = {0, 0};
    int rc = args_float_pair(a, key, pos, required, !required, v, form, err);
    if (rc)
        return rc;
    *lo = *form == 1 ? -v[0] : v[0];
    *hi = v[1];
    return ERR_OK;
}

int augment_parse_seed(struct augment_cfg *c, struct args *a, int pos, struct error *err)
{
    c->seed = 0;
    return args_int_or_none(a, "seed", pos, &c->seed, &c->has_seed, err);
}

int augment_parse_transform_opts(struct augment_cfg *c, struct args *a, int pos, struct error *err)
{
    int fill, interp, rc;
    if ((rc = args_choice(a, "fill_mode", pos, augment_fill_names, AUG_FILL_REFLECT, &fill, err)) ||
        (rc = args_choice(a, "interpolation", pos + 1, augment_interp_names, AUG_INTERP_BILINEAR, &interp, err)) ||
        (rc = augment_parse_seed(c, a, pos + 2, err)) ||
        (rc = args_float(a, "fill_value", pos + 3, 0, 0.0, &c->fill_value, err)))
        return rc;
    c->fill = (enum augment_fill)fill;
    c->interp = (enum augment_interp)interp;
    return ERR_OK;
}

void augment_num_text(double v, char *buf, size_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eni")) /* 1 -> 1.0; not after an exponent, inf or nan */
        snprintf(buf + strlen(buf), size - strlen(buf), ".0");
}

void augment_factor_text(double lo, double hi, int form, char *buf, size_t size)
{
    char a[40], b[40];
    if (form == 0) {
        snprintf(buf, size, "None");
    } else if (form == 1) {
        augment_num_text(hi, buf, size);
    } else {
        augment_num_text(lo, a, sizeof a);
        augment_num_text(hi, b, sizeof b);
        snprintf(buf, size, "(%s, %s)", a, b);
    }
}

void augment_seed_text(const struct augment_cfg *c, char *buf, size_t size)
{
    if (c->has_seed)
        snprintf(buf, size, "%ld", c->seed);
    else
        snprintf(buf, size, "None");
}

int augment_opts_text(const struct augment_cfg *c, char *buf, size_t size)
{
    char seed[32], fill[40];
    augment_seed_text(c, seed, sizeof seed);
    augment_num_text(c->fill_value, fill, sizeof fill);
    return snprintf(buf, size, ", fill_mode='%s', interpolation='%s', seed=%s, fill_value=%s",
                    augment_fill_names[c->fill], augment_interp_names[c->interp], seed, fill);
}

int augment_factors_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    const struct augment_cfg *c = &s->u.aug;
    char hf[96], wf[96], opts[160];
    augment_factor_text(c->h_lo, c->h_hi, c->h_form, hf, sizeof hf);
    augment_factor_text(c->w_lo, c->w_hi, c->w_form, wf, sizeof wf);
    augment_opts_text(c, opts, sizeof opts);
    return snprintf(buf, size, "%s(height_factor=%s, width_factor=%s%s)", s->ops->name, hf, wf, opts);
}

/* ------------------------------------------------------------------------------------------ runtime */

struct augment_priv {
    dnnl_primitive_t to_plain;   /* src layout -> plain; NULL when src is plain already */
    dnnl_memory_t plain;         /* its destination */
    int threads;                 /* the forward's threads, fixed at create so that the scratch suffices */
    size_t scratch_bytes;        /* per thread */
    char *scratch;               /* (threads, scratch_bytes) */
};

int augment_infer_image(struct layer_spec *spec, struct error *err)
{
    if (spec->in.rank != 3)
        return layer_spec_error(spec, err, "needs images (height, width, channels), not a vector of %d",
                                spec->in.c);
    spec->out = spec->in;
    spec->n_params = 0;
    return ERR_OK;
}

void augment_destroy(struct layer *l)
{
    struct augment_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        if (p->to_plain)
            dnnl_primitive_destroy(p->to_plain);
        if (p->plain)
            dnnl_memory_destroy(p->plain);
        free(p->scratch);
        free(p);
    }
    l->priv = NULL;
}

int augment_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    const struct shape *in = &l->spec->in, *out = &l->spec->out;
    dnnl_memory_desc_t in_md;
    int rc;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    if (need_diff_src)
        return layer_spec_error(l->spec, err,
                                "%s has no gradient: put it before any layer with weights (right after the Input)",
                                l->spec->ops->name);
    struct augment_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    if ((rc = dnn_md_nhwc(&l->dst_md, l->n, out->h, out->w, out->c, err)) ||
        (rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)) ||
        (rc = dnn_md_nhwc(&in_md, l->n, in->h, in->w, in->c, err)) ||
        (rc = layer_reorder_prim(&p->to_plain, &l->src_md, &in_md, d, err)))
        goto fail;
    if (p->to_plain && (rc = dnn_mem(&p->plain, &in_md, d, NULL, err)))
        goto fail;
    p->threads = omp_get_max_threads();
    p->scratch_bytes = (augment_scratch_bytes((struct augment_image){in->h, in->w, in->c}) + 63) / 64 * 64;
    if (!(p->scratch = aligned_alloc(64, p->scratch_bytes * (size_t)p->threads))) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
        goto fail;
    }
    return ERR_OK;
fail:
    augment_destroy(l);
    return rc;
}

int augment_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                     struct error *err)
{
    (void)l, (void)ctx, (void)src, (void)diff_dst, (void)err;
    return ERR_OK;
}

int augment_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, augment_sample_fn fn,
                    augment_sample_fn infer, struct error *err)
{
    struct augment_priv *p = l->priv;
    const struct layer_spec *s = l->spec;
    if (p->to_plain) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, p->plain}};
        int rc = dnn_exec(p->to_plain, ctx->dnn, 2, args, err);
        if (rc)
            return rc;
        src = p->plain;
    }
    const float *x = dnn_ptr(src);   /* (n, h, w, c) */
    float *y = dnn_ptr(l->dst);      /* (n, oh, ow, c) */
    const long in_size = shape_size(&s->in), out_size = shape_size(&s->out);
    if (ctx->training && !ctx->sample_ids)
        return error_set(err, ERR_INTERNAL, "%s: training step without sample ids", s->name);
    if (!ctx->training && !infer) {
        memcpy(y, x, sizeof(float) * (size_t)l->n * (size_t)in_size);
        return ERR_OK;
    }
    augment_sample_fn f = ctx->training ? fn : infer;
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (int i = 0; i < l->n; i++) {
        uint64_t key = ctx->training ? augment_key(s, ctx, ctx->sample_ids[i]) : 0;
        f(s, key, x + (size_t)i * in_size, y + (size_t)i * out_size,
          p->scratch + (size_t)omp_get_thread_num() * p->scratch_bytes);
    }
    return ERR_OK;
}

/* augment.c: the augmentation layers' shared parts (see augment.h): draws, TF's projective sampler and fill
 * modes, Keras's smart_resize, argument parsing and text, and the training-only runtime. */
#include "augment.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

const char *const augment_fill_names[] = {"reflect", "wrap", "constant", "nearest", NULL};
const char *const augment_interp_names[] = {"nearest", "bilinear", NULL};

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
static float map_coord(float c, long len, enum augment_fill fill)
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

/* Pixel (iy, ix) channel ch, or the fill value outside the image. */
static inline float read_fill(const float *x, struct augment_image im, long iy, long ix, int ch, float fill_value)
{
    if (iy < 0 || iy >= im.h || ix < 0 || ix >= im.w)
        return fill_value;
    return x[((size_t)iy * im.w + ix) * im.c + ch];
}

void augment_affine(const float *x, float *y, struct augment_image im, const float t[6], enum augment_fill fill,
                    enum augment_interp interp, float fill_value)
{
    for (int oy = 0; oy < im.h; oy++)
        for (int ox = 0; ox < im.w; ox++) {
            float *out = y + ((size_t)oy * im.w + ox) * im.c;
            float in_x = t[0] * (float)ox + t[1] * (float)oy + t[2];
            float in_y = t[3] * (float)ox + t[4] * (float)oy + t[5];
            float fx = map_coord(in_x, im.w, fill), fy = map_coord(in_y, im.h, fill);
            /* Only constant mode leaves points outside: TF fills them whole (no blend with the edge). */
            if (fx < 0 || fx > (float)(im.w - 1) || fy < 0 || fy > (float)(im.h - 1)) {
                for (int ch = 0; ch < im.c; ch++)
                    out[ch] = fill_value;
                continue;
            }
            if (interp == AUG_INTERP_NEAREST) {
                long iy = (long)roundf(fy), ix = (long)roundf(fx);
                for (int ch = 0; ch < im.c; ch++)
                    out[ch] = read_fill(x, im, iy, ix, ch, fill_value);
                continue;
            }
            float y0 = floorf(fy), x0 = floorf(fx), y1 = y0 + 1, x1 = x0 + 1;
            long iy0 = (long)y0, ix0 = (long)x0, iy1 = (long)y1, ix1 = (long)x1;
            for (int ch = 0; ch < im.c; ch++) {
                float top = (x1 - fx) * read_fill(x, im, iy0, ix0, ch, fill_value) +
                            (fx - x0) * read_fill(x, im, iy0, ix1, ch, fill_value);
                float bottom = (x1 - fx) * read_fill(x, im, iy1, ix0, ch, fill_value) +
                               (fx - x0) * read_fill(x, im, iy1, ix1, ch, fill_value);
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

void augment_smart_resize(const float *x, struct augment_image in, float *y, int oh, int ow)
{
    /* Keras's crop to the target's aspect ratio, with its float32 casts. */
    long ch = (long)((float)((long)in.w * oh) / (float)ow), cw = (long)((float)((long)in.h * ow) / (float)oh);
    ch = ch < in.h ? ch : in.h;
    cw = cw < in.w ? cw : in.w;
    long y_start = (long)((float)(in.h - ch) / 2), x_start = (long)((float)(in.w - cw) / 2);
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

/* ------------------------------------------------------------------------------------------ runtime */

struct augment_priv {
    dnnl_primitive_t to_plain;   /* src layout -> plain; NULL when src is plain already */
    dnnl_memory_t plain;         /* its destination */
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
#pragma omp parallel for schedule(static)
    for (int i = 0; i < l->n; i++) {
        uint64_t key = ctx->training ? augment_key(s, ctx, ctx->sample_ids[i]) : 0;
        f(s, key, x + (size_t)i * in_size, y + (size_t)i * out_size);
    }
    return ERR_OK;
}

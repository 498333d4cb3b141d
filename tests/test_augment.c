/* test_augment.c: the augmentation layers against naive double-precision references of Keras's and TF's formulas
 * (each fill mode and interpolation, odd, 1x1 and non-square images), the same draws for a sample wherever it
 * sits in a batch or in which rank's share, the identity outside training, the refusal to pass a gradient, the
 * model-file errors with their column, and the model text and Keras model_config round trips. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "dnn.h"
#include "evaluate.h"
#include "layer.h"
#include "model.h"
#include "net.h"
#include "rng.h"

/* ------------------------------------------------------------------------------------------ harness */

struct at {
    struct dnn dnn;
    struct layer_spec spec;
    struct layer l;
    dnnl_memory_desc_t in_md, out_md;
    dnnl_memory_t src;
    size_t in_size, out_size; /* per sample */
};

/* The spec of one model-file call (e.g. "RandomFlip('vertical')") on images in, at position index. */
static struct layer_spec spec_of(const char *call, struct shape in, int index)
{
    struct args a = {.file = "t.txt", .line = 2};
    struct error e = {0};
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    if (model_parse_call(call, &a, &e) != ERR_OK)
        fail_msg("%s: %s", call, e.msg);
    s.ops = layer_find(a.layer);
    assert_non_null(s.ops);
    snprintf(s.name, sizeof s.name, "%s_1", s.ops->keras_prefix);
    s.index = index;
    if (s.ops->parse(&s, &a, &e) != ERR_OK || args_check_unused(&a, &e) != ERR_OK)
        fail_msg("%s: %s", call, e.msg);
    s.in = in;
    if (s.ops->infer(&s, &e) != ERR_OK)
        fail_msg("%s: infer: %s", call, e.msg);
    return s;
}

static void at_setup(struct at *t, const struct layer_spec *spec, int n)
{
    struct error e = {0};
    memset(t, 0, sizeof *t);
    t->spec = *spec;
    const struct shape *in = &t->spec.in, *out = &t->spec.out;
    t->in_size = (size_t)shape_size(in);
    t->out_size = (size_t)shape_size(out);
    if (dnn_init(&t->dnn, &e) || dnn_md_nhwc(&t->in_md, n, in->h, in->w, in->c, &e) ||
        dnn_md_nhwc(&t->out_md, n, out->h, out->w, out->c, &e))
        fail_msg("setup: %s", e.msg);
    t->l.spec = &t->spec;
    t->l.ops = t->spec.ops;
    t->l.n = n;
    t->l.src_md = t->in_md;
    if (t->spec.ops->create(&t->l, &t->dnn, 0, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
    static float dummy;
    if (dnn_mem(&t->src, &t->in_md, &t->dnn, &dummy, &e))
        fail_msg("src: %s", e.msg);
}

static void at_teardown(struct at *t)
{
    t->spec.ops->destroy(&t->l);
    dnnl_memory_destroy(t->src);
    dnn_release(&t->dnn);
}

/* y (n, out) = the layer on x (n, in) for samples ids, in training or not. */
static void at_forward(struct at *t, const float *x, float *y, const int64_t *ids, int training, uint64_t seed,
                       uint64_t epoch)
{
    struct error e = {0};
    struct step_ctx c = {&t->dnn, training, seed, 7, ids, t->l.n, NULL, NULL, epoch};
    dnnl_memory_set_data_handle(t->src, (void *)x);
    if (t->spec.ops->forward(&t->l, &c, t->src, &e) != ERR_OK)
        fail_msg("forward: %s", e.msg);
    memcpy(y, dnn_ptr(t->l.dst), sizeof(float) * t->out_size * t->l.n);
}

static float *floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n + 1));
    assert_non_null(p);
    return p;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed, 5);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_uniform(&r);
}

/* ------------------------------------------------------------------------------------------ reference */

/* The draws as augment.h defines them, written out again. */
static uint64_t ref_key(const struct layer_spec *s, uint64_t seed, uint64_t epoch, int64_t id)
{
    uint64_t stream = s->u.aug.has_seed ? (1ULL << 63) | (uint64_t)s->u.aug.seed : (uint64_t)s->index;
    return rng_hash4(seed, epoch, stream, (uint64_t)id);
}
static double ref_unit(uint64_t key, int k) { return (double)(rng_hash_last(key, (uint64_t)k) >> 40) / 16777216.0; }
static double ref_uniform(uint64_t key, int k, double lo, double hi) { return lo + (hi - lo) * ref_unit(key, k); }

/* Keras's fill modes on one axis of length len, as TF computes them: reflect is the half-sample symmetric
 * extension (period 2 len), wrap TF's own arithmetic (it divides by len - 1: only shifts under len - 1 wrap as
 * "a b c d | a b c d"), then a clamp into [0, len - 1]; constant leaves the point where it is. */
static double ref_map(double c, int len, enum augment_fill fill)
{
    if (fill == AUG_FILL_CONSTANT)
        return c;
    if (fill == AUG_FILL_REFLECT && (c < 0 || c > len - 1)) {
        double m = c - 2.0 * len * floor(c / (2.0 * len));
        c = len <= 1 ? 0 : m < len ? m : 2.0 * len - 1 - m;
    } else if (fill == AUG_FILL_WRAP && len <= 1) {
        c = 0;
    } else if (fill == AUG_FILL_WRAP && c < 0) {
        c += len * (trunc(-c / (len - 1)) + 1);
    } else if (fill == AUG_FILL_WRAP && c > len - 1) {
        c -= len * trunc(c / (len - 1));
    }
    return c < 0 ? 0 : c > len - 1 ? len - 1 : c;
}

static double ref_pixel(const float *x, int h, int w, int c, long iy, long ix, int ch, double fill_value)
{
    return iy < 0 || iy >= h || ix < 0 || ix >= w ? fill_value : x[((size_t)iy * w + ix) * c + ch];
}

/* TF's ImageProjectiveTransformV3 with c0 = c1 = 0: output (x, y) reads (a0 x + a1 y + a2, b0 x + b1 y + b2). */
static void ref_transform(const float *x, double *y, int h, int w, int c, const double t[6], enum augment_fill fill,
                          enum augment_interp interp, double fv)
{
    for (int oy = 0; oy < h; oy++)
        for (int ox = 0; ox < w; ox++)
            for (int ch = 0; ch < c; ch++) {
                double fx = ref_map(t[0] * ox + t[1] * oy + t[2], w, fill);
                double fy = ref_map(t[3] * ox + t[4] * oy + t[5], h, fill);
                double v;
                if (fx < 0 || fx > w - 1 || fy < 0 || fy > h - 1) {
                    v = fv;
                } else if (interp == AUG_INTERP_NEAREST) {
                    v = ref_pixel(x, h, w, c, lround(fy), lround(fx), ch, fv);
                } else {
                    long x0 = (long)floor(fx), y0 = (long)floor(fy);
                    double ax = fx - x0, ay = fy - y0;
                    v = (1 - ay) * ((1 - ax) * ref_pixel(x, h, w, c, y0, x0, ch, fv) +
                                    ax * ref_pixel(x, h, w, c, y0, x0 + 1, ch, fv)) +
                        ay * ((1 - ax) * ref_pixel(x, h, w, c, y0 + 1, x0, ch, fv) +
                              ax * ref_pixel(x, h, w, c, y0 + 1, x0 + 1, ch, fv));
                }
                y[((size_t)oy * w + ox) * c + ch] = v;
            }
}

/* Keras's smart_resize: the largest centred crop with the target's aspect ratio, then a bilinear resize with
 * half-pixel centres (tf.image.resize). */
static void ref_smart_resize(const float *x, int h, int w, int c, double *y, int oh, int ow)
{
    int ch = (int)((double)w * oh / ow), cw = (int)((double)h * ow / oh);
    ch = ch < h ? ch : h;
    cw = cw < w ? cw : w;
    int y0 = (h - ch) / 2, x0 = (w - cw) / 2;
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
            for (int k = 0; k < c; k++) {
                double sy = (i + 0.5) * ch / oh - 0.5, sx = (j + 0.5) * cw / ow - 0.5;
                double fy = floor(sy), fx = floor(sx), ly = sy - fy, lx = sx - fx;
                long ya = fy < 0 ? 0 : (long)fy, yb = (long)ceil(sy) > ch - 1 ? ch - 1 : (long)ceil(sy);
                long xa = fx < 0 ? 0 : (long)fx, xb = (long)ceil(sx) > cw - 1 ? cw - 1 : (long)ceil(sx);
#define PX(r, q) (double)x[((size_t)(y0 + (r)) * w + x0 + (q)) * c + k]
                double top = PX(ya, xa) + (PX(ya, xb) - PX(ya, xa)) * lx;
                double bottom = PX(yb, xa) + (PX(yb, xb) - PX(yb, xa)) * lx;
#undef PX
                y[((size_t)i * ow + j) * c + k] = top + (bottom - top) * ly;
            }
}

/* The reference of one training sample of any kind. */
static void ref_sample(const struct layer_spec *s, uint64_t key, const float *x, double *y)
{
    const struct augment_cfg *c = &s->u.aug;
    const int h = s->in.h, w = s->in.w, ch = s->in.c;
    const double pi = 3.14159265358979323846;
    double t[6] = {1, 0, 0, 0, 1, 0};
    if (s->ops == &layer_random_flip) {
        int fh = c->flip_h && ref_unit(key, 0) < 0.5, fv = c->flip_v && ref_unit(key, 1) < 0.5;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int k = 0; k < ch; k++)
                    y[((size_t)i * w + j) * ch + k] =
                        x[((size_t)(fv ? h - 1 - i : i) * w + (fh ? w - 1 - j : j)) * ch + k];
        return;
    }
    if (s->ops == &layer_random_crop) {
        const int oh = s->out.h, ow = s->out.w;
        if (h < oh || w < ow) {
            ref_smart_resize(x, h, w, ch, y, oh, ow);
            return;
        }
        long h0 = (long)(((rng_hash_last(key, 0) >> 32) * (uint64_t)(h - oh + 1)) >> 32);
        long w0 = (long)(((rng_hash_last(key, 1) >> 32) * (uint64_t)(w - ow + 1)) >> 32);
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int k = 0; k < ch; k++)
                    y[((size_t)i * ow + j) * ch + k] = x[((size_t)(h0 + i) * w + w0 + j) * ch + k];
        return;
    }
    if (s->ops == &layer_random_translation) {
        t[5] = -ref_uniform(key, 0, c->h_lo, c->h_hi) * h; /* output (x, y) reads (x - dx, y - dy) */
        t[2] = -ref_uniform(key, 1, c->w_lo, c->w_hi) * w;
    } else if (s->ops == &layer_random_rotation) {
        double a = ref_uniform(key, 0, c->h_lo * 2 * pi, c->h_hi * 2 * pi), cs = cos(a), sn = sin(a);
        double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0; /* about the centre, counter-clockwise */
        t[0] = cs, t[1] = -sn, t[2] = cx - cs * cx + sn * cy;
        t[3] = sn, t[4] = cs, t[5] = cy - sn * cx - cs * cy;
    } else if (s->ops == &layer_random_zoom) {
        double zy = ref_uniform(key, 0, 1 + c->h_lo, 1 + c->h_hi);
        double zx = c->w_form ? ref_uniform(key, 1, 1 + c->w_lo, 1 + c->w_hi) : zy;
        t[0] = zx, t[2] = (w - 1) / 2.0 * (1 - zx);
        t[4] = zy, t[5] = (h - 1) / 2.0 * (1 - zy);
    }
    ref_transform(x, y, h, w, ch, t, c->fill, c->interp, c->fill_value);
}

/* The layer on a batch of n against the reference, within tol. */
static void check_against_reference(const char *call, struct shape in, int n, double tol)
{
    struct layer_spec s = spec_of(call, in, 3);
    struct at t;
    at_setup(&t, &s, n);
    float *x = floats(t.in_size * n), *y = floats(t.out_size * n);
    double *r = malloc(sizeof(double) * (t.out_size + 1));
    int64_t ids[16];
    for (int i = 0; i < n; i++)
        ids[i] = 1000 + 37 * i;
    fill(x, t.in_size * n, 11);
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        at_forward(&t, x, y, ids, 1, 42, epoch);
        for (int i = 0; i < n; i++) {
            ref_sample(&t.spec, ref_key(&t.spec, 42, epoch, ids[i]), x + t.in_size * i, r);
            for (size_t e = 0; e < t.out_size; e++)
                if (fabs(y[t.out_size * i + e] - r[e]) > tol)
                    fail_msg("%s on %dx%dx%d, epoch %d, sample %d, element %zu: %.7g, reference %.7g", call, in.h,
                             in.w, in.c, (int)epoch, i, e, y[t.out_size * i + e], r[e]);
        }
    }
    free(x);
    free(y);
    free(r);
    at_teardown(&t);
}

static const struct shape shapes[] = {{3, 7, 5, 2}, {3, 1, 1, 1}, {3, 6, 9, 1}, {3, 11, 4, 3}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* ------------------------------------------------------------------------------------------ against the reference */

static void test_flip(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        check_against_reference("RandomFlip()", shapes[k], 8, 0);
        check_against_reference("RandomFlip('horizontal')", shapes[k], 8, 0);
        check_against_reference("RandomFlip(mode='vertical', seed=5)", shapes[k], 8, 0);
    }
}

static const char *const fills[] = {"reflect", "wrap", "constant", "nearest"};
static const char *const interps[] = {"bilinear", "nearest"};

static void test_translation(void **state)
{
    (void)state;
    char call[256];
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int f = 0; f < 4; f++)
            for (int i = 0; i < 2; i++) {
                snprintf(call, sizeof call, "RandomTranslation(0.4, (-0.9, 0.7), fill_mode='%s', interpolation='%s', "
                         "fill_value=0.25)", fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-5);
                snprintf(call, sizeof call, "RandomTranslation((0.05, 0.3), 0.12, '%s', '%s')", fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-5);
            }
}

static void test_rotation(void **state)
{
    (void)state;
    char call[256];
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int f = 0; f < 4; f++)
            for (int i = 0; i < 2; i++) {
                snprintf(call, sizeof call, "RandomRotation(0.5, fill_mode='%s', interpolation='%s', fill_value=-1.0)",
                         fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-4);
                snprintf(call, sizeof call, "RandomRotation((-0.05, 0.1), '%s', '%s')", fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-4);
            }
}

static void test_zoom(void **state)
{
    (void)state;
    char call[256];
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int f = 0; f < 4; f++)
            for (int i = 0; i < 2; i++) {
                snprintf(call, sizeof call, "RandomZoom(0.5, fill_mode='%s', interpolation='%s', fill_value=0.5)",
                         fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-5);
                snprintf(call, sizeof call, "RandomZoom((-0.3, 0.4), (0.2, 0.9), '%s', '%s')", fills[f], interps[i]);
                check_against_reference(call, shapes[k], 6, 2e-5);
            }
}

static void test_crop(void **state)
{
    (void)state;
    check_against_reference("RandomCrop(5, 3)", (struct shape){3, 9, 7, 2}, 8, 0);
    check_against_reference("RandomCrop(4, 4, seed=3)", (struct shape){3, 4, 9, 1}, 8, 0);
    check_against_reference("RandomCrop(1, 1)", (struct shape){3, 1, 1, 1}, 4, 0);
    /* Smaller than the target in one direction: resized, as Keras does. */
    check_against_reference("RandomCrop(8, 3)", (struct shape){3, 5, 7, 2}, 4, 1e-5);
}

/* Outside training: Keras's smart_resize (here against the reference), the identity at the same size. */
static void test_crop_inference(void **state)
{
    (void)state;
    static const struct {
        struct shape in;
        int oh, ow;
    } cases[] = {{{3, 9, 11, 2}, 5, 7}, {{3, 32, 32, 3}, 28, 28}, {{3, 5, 7, 1}, 8, 3}, {{3, 6, 6, 1}, 6, 6}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char call[64];
        snprintf(call, sizeof call, "RandomCrop(%d, %d)", cases[k].oh, cases[k].ow);
        struct layer_spec s = spec_of(call, cases[k].in, 1);
        struct at t;
        at_setup(&t, &s, 3);
        float *x = floats(t.in_size * 3), *y = floats(t.out_size * 3);
        double *r = malloc(sizeof(double) * t.out_size);
        fill(x, t.in_size * 3, 5);
        at_forward(&t, x, y, NULL, 0, 0, 0);
        for (int i = 0; i < 3; i++) {
            ref_smart_resize(x + t.in_size * i, cases[k].in.h, cases[k].in.w, cases[k].in.c, r, cases[k].oh,
                             cases[k].ow);
            for (size_t e = 0; e < t.out_size; e++)
                if (fabs(y[t.out_size * i + e] - r[e]) > 1e-5)
                    fail_msg("%s inference, sample %d, element %zu: %g, reference %g", call, i, e,
                             y[t.out_size * i + e], r[e]);
        }
        if (cases[k].in.h == cases[k].oh && cases[k].in.w == cases[k].ow)
            assert_memory_equal(x, y, sizeof(float) * t.in_size * 3);
        free(x);
        free(y);
        free(r);
        at_teardown(&t);
    }
}

/* The fill modes' patterns as Keras documents them, on a 1x6 row shifted by whole pixels (nearest): reflect
 * "d c b a | a b c d | d c b a", wrap "a b c d | a b c d", nearest "a a a a | a b c d", constant "k k | a b". */
static void test_fill_patterns(void **state)
{
    (void)state;
    const float row[6] = {1, 2, 3, 4, 5, 6};
    static const struct {
        const char *fill;
        float shifted_right_2[6], shifted_left_3[6];
    } cases[] = {
        {"reflect", {2, 1, 1, 2, 3, 4}, {4, 5, 6, 6, 5, 4}},
        {"wrap", {5, 6, 1, 2, 3, 4}, {4, 5, 6, 1, 2, 3}},
        {"nearest", {1, 1, 1, 2, 3, 4}, {4, 5, 6, 6, 6, 6}},
        {"constant", {9, 9, 1, 2, 3, 4}, {4, 5, 6, 9, 9, 9}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int dir = 0; dir < 2; dir++) {
            /* A width factor pair (f, f) draws f itself: 2/6 right, 3/6 left. */
            char call[160];
            snprintf(call, sizeof call, "RandomTranslation(0.0, (%s, %s), '%s', 'nearest', fill_value=9.0)",
                     dir ? "-0.5" : "0.3333333333333333", dir ? "-0.5" : "0.3333333333333333", cases[k].fill);
            struct layer_spec s = spec_of(call, (struct shape){3, 1, 6, 1}, 1);
            struct at t;
            at_setup(&t, &s, 1);
            float y[6];
            int64_t id = 3;
            at_forward(&t, row, y, &id, 1, 1, 0);
            const float *want = dir ? cases[k].shifted_left_3 : cases[k].shifted_right_2;
            for (int e = 0; e < 6; e++)
                if (y[e] != want[e])
                    fail_msg("%s, %s: element %d is %g, not %g", cases[k].fill, dir ? "left 3" : "right 2", e, y[e],
                             want[e]);
            at_teardown(&t);
        }
}

/* ------------------------------------------------------------------------------------------ draws */

static const char *const all_kinds[] = {
    "RandomFlip()",
    "RandomTranslation(0.2, 0.3)",
    "RandomRotation(0.1, fill_mode='constant')",
    "RandomZoom(0.3, interpolation='nearest')",
    "RandomCrop(5, 6)",
};
#define N_KINDS (sizeof all_kinds / sizeof all_kinds[0])

/* A global batch of 8 split in 1, 2 or 4 ranks' shares, and in another order: each sample comes out the same,
 * bit for bit, whatever share and position it had. */
static void test_same_draws_any_split(void **state)
{
    (void)state;
    const struct shape in = {3, 9, 7, 2};
    for (size_t k = 0; k < N_KINDS; k++) {
        struct layer_spec s = spec_of(all_kinds[k], in, 2);
        struct at whole;
        at_setup(&whole, &s, 8);
        size_t is = whole.in_size, os = whole.out_size;
        float *x = floats(is * 8), *y = floats(os * 8), *part = floats(os * 8), *xp = floats(is * 8);
        int64_t ids[8], pids[8];
        for (int i = 0; i < 8; i++)
            ids[i] = 500 + 3 * i;
        fill(x, is * 8, 21);
        at_forward(&whole, x, y, ids, 1, 9, 4);
        for (int ranks = 1; ranks <= 4; ranks *= 2) {
            int share = 8 / ranks;
            struct at t;
            at_setup(&t, &s, share);
            for (int r = 0; r < ranks; r++) {
                at_forward(&t, x + is * share * r, part, ids + share * r, 1, 9, 4);
                assert_memory_equal(part, y + os * share * r, sizeof(float) * os * share);
            }
            at_teardown(&t);
        }
        /* Reversed order within the batch. */
        for (int i = 0; i < 8; i++) {
            pids[i] = ids[7 - i];
            memcpy(xp + is * i, x + is * (7 - i), sizeof(float) * is);
        }
        at_forward(&whole, xp, part, pids, 1, 9, 4);
        for (int i = 0; i < 8; i++)
            assert_memory_equal(part + os * i, y + os * (7 - i), sizeof(float) * os);
        /* Another epoch draws anew (the odds that 8 samples all come out the same are negligible). */
        at_forward(&whole, x, part, ids, 1, 9, 5);
        assert_memory_not_equal(part, y, sizeof(float) * os * 8);
        free(x);
        free(y);
        free(part);
        free(xp);
        at_teardown(&whole);
    }
}

/* seed=N replaces the layer's position in the draws: the same layer elsewhere in the model draws the same. */
static void test_seed_argument(void **state)
{
    (void)state;
    const struct shape in = {3, 8, 8, 1};
    struct layer_spec a = spec_of("RandomTranslation(0.3, 0.3, seed=17)", in, 1);
    struct layer_spec b = spec_of("RandomTranslation(0.3, 0.3, seed=17)", in, 4);
    struct layer_spec c = spec_of("RandomTranslation(0.3, 0.3)", in, 1);
    struct at ta, tb, tc;
    at_setup(&ta, &a, 4);
    at_setup(&tb, &b, 4);
    at_setup(&tc, &c, 4);
    float *x = floats(64 * 4), *ya = floats(64 * 4), *yb = floats(64 * 4), *yc = floats(64 * 4);
    int64_t ids[4] = {1, 2, 3, 4};
    fill(x, 64 * 4, 2);
    at_forward(&ta, x, ya, ids, 1, 1, 0);
    at_forward(&tb, x, yb, ids, 1, 1, 0);
    at_forward(&tc, x, yc, ids, 1, 1, 0);
    assert_memory_equal(ya, yb, sizeof(float) * 64 * 4);
    assert_memory_not_equal(ya, yc, sizeof(float) * 64 * 4);
    free(x);
    free(ya);
    free(yb);
    free(yc);
    at_teardown(&ta);
    at_teardown(&tb);
    at_teardown(&tc);
}

/* Eval and predict: the identity, even right after a training step. */
static void test_identity_outside_training(void **state)
{
    (void)state;
    const struct shape in = {3, 5, 6, 3};
    for (size_t k = 0; k + 1 < N_KINDS; k++) { /* RandomCrop resizes: test_crop_inference */
        struct layer_spec s = spec_of(all_kinds[k], in, 1);
        struct at t;
        at_setup(&t, &s, 4);
        float *x = floats(t.in_size * 4), *y = floats(t.in_size * 4);
        int64_t ids[4] = {0, 1, 2, 3};
        fill(x, t.in_size * 4, 8);
        at_forward(&t, x, y, ids, 1, 1, 0);
        at_forward(&t, x, y, ids, 0, 1, 0);
        assert_memory_equal(x, y, sizeof(float) * t.in_size * 4);
        at_forward(&t, x, y, NULL, 0, 0, 0); /* predict has no ids */
        assert_memory_equal(x, y, sizeof(float) * t.in_size * 4);
        free(x);
        free(y);
        at_teardown(&t);
    }
}

/* ------------------------------------------------------------------------------------------ structure */

/* No gradient goes through: created for a place where one is needed, the layer says where it belongs. */
static void test_refuses_gradient(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_KINDS; k++) {
        struct layer_spec s = spec_of(all_kinds[k], (struct shape){3, 8, 8, 1}, 3);
        s.line = 4;
        struct dnn d;
        struct layer l;
        struct error e = {0};
        assert_int_equal(dnn_init(&d, &e), ERR_OK);
        memset(&l, 0, sizeof l);
        l.spec = &s;
        l.n = 2;
        assert_int_equal(dnn_md_nhwc(&l.src_md, 2, 8, 8, 1, &e), ERR_OK);
        assert_int_equal(s.ops->create(&l, &d, 1, &e), ERR_INPUT);
        if (!strstr(e.msg, "line 4: ") || !strstr(e.msg, "put it before any layer with weights"))
            fail_msg("message: %s", e.msg);
        dnn_release(&d);
    }
    /* In a model file: refused when read, with the file and line (also through a parameter-free layer). */
    struct model m;
    struct error e = {0};
    assert_int_equal(model_parse(&m,
                                 "Input(shape=(8, 8, 1))\nConv2D(4, 3)\nDropout(0.1)\nRandomFlip()\nFlatten()\n"
                                 "Dense(2, activation='softmax')\n",
                                 "m.txt", &e),
                     ERR_INPUT);
    assert_string_equal(e.msg, "m.txt:4: random_flip_1: RandomFlip has no gradient: put it before any layer with "
                               "weights (right after the Input)");
    /* Behind parameter-free layers only, it is fine. */
    if (model_parse(&m, "Input(shape=(8, 8, 1))\nDropout(0.1)\nRandomFlip()\nRandomCrop(6, 6)\nFlatten()\n"
                        "Dense(2, activation='softmax')\n", "m.txt", &e) != ERR_OK)
        fail_msg("%s", e.msg);
}

/* "FILE:LINE:COL: what" for each kind's bad arguments, at the argument's column. */
static void parse_fails(const char *line, const char *want_prefix, const char *want_part)
{
    char text[512];
    struct model m;
    struct error e = {0};
    snprintf(text, sizeof text, "Input(shape=(8, 8, 1))\n%s\nFlatten()\nDense(2, activation='softmax')\n", line);
    assert_int_equal(model_parse(&m, text, "m.txt", &e), ERR_INPUT);
    if (strncmp(e.msg, want_prefix, strlen(want_prefix)) != 0 || !strstr(e.msg, want_part))
        fail_msg("%s: got \"%s\", want \"%s...%s...\"", line, e.msg, want_prefix, want_part);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_fails("RandomFlip('diagonal')", "m.txt:2:12: RandomFlip: unknown value 'diagonal' for 'mode'", "");
    parse_fails("RandomTranslation(0.2, (0.3, 0.1))", "m.txt:2:24: RandomTranslation:", "less than lower bound");
    parse_fails("RandomTranslation(0.2)", "m.txt:2:1: RandomTranslation:", "missing required argument 'width_factor'");
    parse_fails("RandomTranslation(1.5, 0.1)", "m.txt:2:19: RandomTranslation:", "between -1 and 1");
    parse_fails("RandomTranslation(0.1, 0.1, fill_mode='mirror')", "m.txt:2:29: RandomTranslation:",
                "unknown value 'mirror' for 'fill_mode'");
    parse_fails("RandomTranslation(0.1, 0.1, interpolation='bicubic')", "m.txt:2:29:", "'interpolation'");
    parse_fails("RandomTranslation(0.1, 'a')", "m.txt:2:24:", "must be a number or a pair of numbers");
    parse_fails("RandomTranslation(0.1, (0.1, 0.2, 0.3))", "m.txt:2:24:", "must be a number or a pair");
    parse_fails("RandomRotation((0.2, 0.1))", "m.txt:2:16: RandomRotation:", "less than lower bound");
    parse_fails("RandomRotation(0.1, seed=1.5)", "m.txt:2:21: RandomRotation:", "'seed' must be an integer or None");
    parse_fails("RandomZoom(1.5)", "m.txt:2:12: RandomZoom:", "between -1 and 1");
    parse_fails("RandomZoom(0.2, (-1.5, 0.2))", "m.txt:2:17: RandomZoom:", "larger than -1");
    parse_fails("RandomZoom(None)", "m.txt:2:12:", "not None");
    parse_fails("RandomCrop(0, 5)", "m.txt:2:12: RandomCrop:", "positive size");
    parse_fails("RandomCrop(5)", "m.txt:2:1: RandomCrop:", "missing required argument 'width'");
    parse_fails("RandomCrop((5, 2.5), 4)", "m.txt:2:16: RandomCrop:", "takes integers");
    parse_fails("RandomFlip(factor=0.2)", "m.txt:2:12: RandomFlip:", "unknown argument 'factor'");
    parse_fails("RandomTranslation(0.1, (0.1, ))", "m.txt:2:24:", "must be a number or a pair");
}

/* Behind a Dense the input is a vector: refused by shape inference. */
static void test_needs_images(void **state)
{
    (void)state;
    struct model m;
    struct error e = {0};
    assert_int_equal(model_parse(&m,
                                 "Input(shape=(8, 8, 1))\nFlatten()\nRandomFlip()\nDense(2, activation='softmax')\n",
                                 "m.txt", &e),
                     ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:3: random_flip_1: needs images"));
}

static const char model_all[] = "Input(shape=(12, 10, 3))\n"
                                "RandomFlip('vertical', seed=4)\n"
                                "RandomTranslation((-0.1, 0.25), 0.125, 'wrap', 'nearest', 7, 0.5)\n"
                                "RandomRotation(0.3, fill_mode='nearest')\n"
                                "RandomZoom(height_factor=(0.1, 0.2), width_factor=None, fill_value=1.0)\n"
                                "RandomZoom(0.1, -0.2)\n"
                                "RandomCrop(8, 9)\n"
                                "Conv2D(4, 3)\n"
                                "Flatten()\n"
                                "Dense(3, activation='softmax')\n";

/* The canonical text reads back as the same model, and so does the Keras model_config. */
static void test_round_trips(void **state)
{
    (void)state;
    struct model m, m2, m3;
    struct error e = {0};
    if (model_parse(&m, model_all, "m.txt", &e) != ERR_OK)
        fail_msg("%s", e.msg);
    assert_non_null(strstr(m.text, "RandomTranslation(height_factor=(-0.1, 0.25), width_factor=0.125, "
                                   "fill_mode='wrap', interpolation='nearest', seed=7, fill_value=0.5)\n"));
    assert_non_null(strstr(m.text, "RandomZoom(height_factor=(0.1, 0.2), width_factor=None, fill_mode='reflect', "
                                   "interpolation='bilinear', seed=None, fill_value=1.0)\n"));
    assert_non_null(strstr(m.text, "RandomCrop(height=8, width=9, seed=None)\n"));
    assert_int_equal(m.layers[7].in.h, 8);
    assert_int_equal(m.layers[7].in.w, 9);
    if (model_parse(&m2, m.text, "again.txt", &e) != ERR_OK)
        fail_msg("%s", e.msg);
    assert_string_equal(m.text, m2.text);
    for (int i = 1; i <= 6; i++)
        assert_memory_equal(&m.layers[i].u.aug, &m2.layers[i].u.aug, sizeof m.layers[i].u.aug);

    char *json = keras_config_from_model(&m);
    assert_non_null(json);
    assert_non_null(strstr(json, "{\"class_name\": \"RandomFlip\", \"config\": {\"name\": \"random_flip_1\", "
                                 "\"trainable\": true, \"batch_input_shape\": [null, 12, 10, 3], \"dtype\": "
                                 "\"float32\", \"mode\": \"vertical\", \"seed\": 4}}"));
    assert_non_null(strstr(json, "\"height_factor\": [-0.1, 0.25], \"width_factor\": 0.125, \"fill_mode\": \"wrap\", "
                                 "\"fill_value\": 0.5, \"interpolation\": \"nearest\", \"seed\": 7}"));
    assert_non_null(strstr(json, "{\"name\": \"random_zoom_1\", \"trainable\": true, \"dtype\": \"float32\", "
                                 "\"height_factor\": [0.1, 0.2], \"width_factor\": null, "));
    assert_non_null(strstr(json, "\"class_name\": \"RandomCrop\", \"config\": {\"name\": \"random_crop_1\", "
                                 "\"trainable\": true, \"dtype\": \"float32\", \"height\": 8, \"width\": 9, "
                                 "\"seed\": null}"));
    if (keras_config_to_model(json, "k.h5", &m3, &e) != ERR_OK)
        fail_msg("%s", e.msg);
    assert_string_equal(m.text, m3.text);
    free(json);
}

/* What tf.keras 2.x writes (an InputLayer first, ints where Python had ints), and Keras 2.3's RandomTranslation
 * without fill_value. */
static void test_keras_files(void **state)
{
    (void)state;
    static const char json[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 28, 28, 1], \"dtype\": "
        "\"float32\", \"sparse\": false, \"ragged\": false, \"name\": \"input_1\"}},"
        "{\"class_name\": \"RandomFlip\", \"config\": {\"name\": \"random_flip\", \"trainable\": true, \"dtype\": "
        "\"float32\", \"mode\": \"horizontal\", \"seed\": null}},"
        "{\"class_name\": \"RandomTranslation\", \"config\": {\"name\": \"random_translation\", \"trainable\": true, "
        "\"dtype\": \"float32\", \"height_factor\": 0.1, \"width_factor\": [-0.1, 0], \"fill_mode\": \"constant\", "
        "\"interpolation\": \"bilinear\", \"seed\": 3}},"
        "{\"class_name\": \"RandomRotation\", \"config\": {\"name\": \"random_rotation\", \"trainable\": true, "
        "\"dtype\": \"float32\", \"factor\": 0.05, \"fill_mode\": \"reflect\", \"fill_value\": 0.0, "
        "\"interpolation\": \"bilinear\", \"seed\": null}},"
        "{\"class_name\": \"RandomCrop\", \"config\": {\"name\": \"random_crop\", \"trainable\": true, \"dtype\": "
        "\"float32\", \"height\": 24, \"width\": 24, \"seed\": null}},"
        "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}}"
        "]}}";
    struct model m;
    struct error e = {0};
    if (keras_config_to_model(json, "k.h5", &m, &e) != ERR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(m.n_layers, 7);
    assert_string_equal(m.layers[1].name, "random_flip");
    assert_non_null(strstr(m.text, "RandomTranslation(height_factor=0.1, width_factor=(-0.1, 0.0), "
                                   "fill_mode='constant', interpolation='bilinear', seed=3, fill_value=0.0, "
                                   "name='random_translation')"));
    assert_int_equal(m.layers[5].in.h * m.layers[5].in.w, 24 * 24);
}

/* eval/predict --tta flip: the mean of the probabilities of the images and of their mirrors (made here), the
 * loss of that mean clipped as Keras clips, and its hits. */
static void test_tta_flip(void **state)
{
    (void)state;
    enum { N = 5, H = 6, W = 7, C = 2, K = 3 };
    struct model m;
    struct error e = {0};
    struct net *net;
    if (model_parse(&m,
                    "Input(shape=(6, 7, 2))\nRandomFlip()\nConv2D(4, 3)\nFlatten()\nDense(3, activation='softmax')\n",
                    "m.txt", &e) != ERR_OK || net_create(&net, &m, &e) != ERR_OK)
        fail_msg("%s", e.msg);
    net_init_params(net, 3);
    uint8_t images[N * H * W * C], mirror[N * H * W * C];
    int32_t labels[N] = {0, 1, 2, 1, 0};
    int64_t ids[N] = {0, 1, 2, 3, 4};
    for (int i = 0; i < N * H * W * C; i++)
        images[i] = (uint8_t)((i * 37 + i / 5) % 256);
    for (int i = 0; i < N * H; i++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++)
                mirror[(i * W + x) * C + c] = images[(i * W + W - 1 - x) * C + c];
    float pa[N * K], pb[N * K], pt[N * K];
    struct net_batch a = {N, images, labels, ids, 0}, b = {N, mirror, labels, ids, 0};
    struct net_stats st;
    assert_int_equal(net_infer_batch(net, &a, pa, NULL, &e), ERR_OK);
    assert_int_equal(net_infer_batch(net, &b, pb, NULL, &e), ERR_OK);
    assert_memory_not_equal(pa, pb, sizeof pa);
    assert_int_equal(evaluate_infer(net, &a, 1, pt, &st, &e), ERR_OK);
    double loss = 0;
    long hits = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 0; j < K; j++) {
            double mean = 0.5 * ((double)pa[i * K + j] + pb[i * K + j]);
            assert_true(fabs(pt[i * K + j] - mean) < 1e-7);
            if (pt[i * K + j] > pt[i * K + best])
                best = j;
        }
        loss -= log(fmax(1e-7, fmin(1 - 1e-7, 0.5 * ((double)pa[i * K + labels[i]] + pb[i * K + labels[i]]))));
        hits += best == labels[i];
    }
    assert_true(fabs(st.loss_sum - loss) < 1e-5);
    assert_int_equal(st.correct, hits);
    /* Without --tta: the network's own probabilities. */
    assert_int_equal(evaluate_infer(net, &a, 0, pt, NULL, &e), ERR_OK);
    assert_memory_equal(pt, pa, sizeof pa);
    net_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flip),
        cmocka_unit_test(test_translation),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_zoom),
        cmocka_unit_test(test_crop),
        cmocka_unit_test(test_crop_inference),
        cmocka_unit_test(test_fill_patterns),
        cmocka_unit_test(test_same_draws_any_split),
        cmocka_unit_test(test_seed_argument),
        cmocka_unit_test(test_identity_outside_training),
        cmocka_unit_test(test_refuses_gradient),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_needs_images),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_keras_files),
        cmocka_unit_test(test_tta_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

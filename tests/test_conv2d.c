/* test_conv2d.c: Conv2D against a naive NHWC convolution (Keras padding), central differences, blocked inputs,
 * argument and shape errors, Keras parameter shapes and init; Input's parsing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layer_check.h"
#include "rng.h"

/* One convolution to test: input (h, w, c), then the layer's configuration. */
struct conv_case {
    int h, w, c;
    int filters, kh, kw, sh, sw, same, use_bias;
    enum activation act;
};

static struct layer_spec conv_spec(const struct conv_case *k)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_conv2d;
    snprintf(s.name, sizeof s.name, "conv2d_1");
    s.line = 3;
    s.index = 1;
    s.u.conv = (struct conv_cfg){k->filters, k->kh, k->kw, k->sh, k->sw, k->same, k->use_bias, k->act, {0, 0}, INIT_GLOROT_UNIFORM};
    s.in = (struct shape){3, k->h, k->w, k->c};
    return s;
}

/* ---- the reference, written from Keras/TF's definition, independent of kernels/ ---------------------- */

/* TF's rule: 'same' gives ceil(in / s) outputs and pads (out - 1) * s + k - in, the smaller half on top/left. */
static void ref_geometry(int in, int k, int s, int same, int *out, int *before)
{
    if (!same) {
        *out = (in - k) / s + 1;
        *before = 0;
        return;
    }
    *out = (in + s - 1) / s;
    int total = (*out - 1) * s + k - in;
    *before = total > 0 ? total / 2 : 0;
}

/* y (n, oh, ow, f) = act(conv(x (n, h, w, c), kern (kh, kw, c, f)) + bias (f)), all NHWC / Keras layouts,
 * zeros outside the input, accumulated in double. */
static void naive_conv(const struct conv_case *k, int n, const float *x, const float *kern, const float *bias,
                       float *y)
{
    int oh, ow, pt, pl;
    ref_geometry(k->h, k->kh, k->sh, k->same, &oh, &pt);
    ref_geometry(k->w, k->kw, k->sw, k->same, &ow, &pl);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int f = 0; f < k->filters; f++) {
                    double acc = bias ? bias[f] : 0.0;
                    for (int di = 0; di < k->kh; di++)
                        for (int dj = 0; dj < k->kw; dj++) {
                            int yi = i * k->sh + di - pt, xj = j * k->sw + dj - pl;
                            if (yi < 0 || yi >= k->h || xj < 0 || xj >= k->w)
                                continue;
                            for (int ch = 0; ch < k->c; ch++)
                                acc += (double)x[((size_t)(b * k->h + yi) * k->w + xj) * k->c + ch] *
                                       kern[((size_t)(di * k->kw + dj) * k->c + ch) * k->filters + f];
                        }
                    y[((size_t)(b * oh + i) * ow + j) * k->filters + f] = (float)lc_ref_act(k->act, acc);
                }
}

static size_t ref_out_size(const struct conv_case *k, int n)
{
    int oh, ow, p;
    ref_geometry(k->h, k->kh, k->sh, k->same, &oh, &p);
    ref_geometry(k->w, k->kw, k->sw, k->same, &ow, &p);
    return (size_t)n * oh * ow * k->filters;
}

/* The kernel and the bias (NULL without) inside a harness's weights. */
static const float *bias_of(const struct lc *t, const struct conv_case *k)
{
    return k->use_bias ? t->w + (size_t)k->kh * k->kw * k->c * k->filters : NULL;
}

static void check_forward(const struct conv_case *k, int n)
{
    struct layer_spec s = conv_spec(k);
    struct lc t;
    lc_setup(&t, &s, n, 11);
    size_t out = ref_out_size(k, n);
    assert_int_equal(t.out_size, out);
    float *x = malloc(sizeof(float) * t.in_size), *y = malloc(sizeof(float) * out), *r = malloc(sizeof(float) * out);
    lc_fill(x, t.in_size, -1, 1, 5);
    lc_forward(&t, x, y, 1);
    naive_conv(k, n, x, t.w, bias_of(&t, k), r);
    double diff = lc_max_rel_diff(y, r, out);
    if (diff > 1e-4)
        fail_msg("conv %dx%dx%d k%dx%d s%dx%d same=%d bias=%d act=%d: max diff %g", k->h, k->w, k->c, k->kh, k->kw,
                 k->sh, k->sw, k->same, k->use_bias, (int)k->act, diff);
    /* A second step with changed weights must see them (weights are reordered from the slab every step). */
    for (size_t i = 0; i < t.n_w; i++)
        t.w[i] *= -0.5f;
    lc_forward(&t, x, y, 1);
    naive_conv(k, n, x, t.w, bias_of(&t, k), r);
    assert_true(lc_max_rel_diff(y, r, out) <= 1e-4);
    free(x);
    free(y);
    free(r);
    lc_teardown(&t);
}

static void test_forward_matches_naive(void **state)
{
    (void)state;
    static const struct conv_case cases[] = {
        {5, 5, 1, 2, 3, 3, 1, 1, 0, 1, ACT_LINEAR},  /* valid, odd kernel, one channel */
        {6, 6, 3, 4, 2, 2, 1, 1, 1, 1, ACT_RELU},    /* same, even kernel: one extra row/col bottom/right */
        {7, 7, 3, 4, 3, 3, 2, 2, 1, 0, ACT_TANH},    /* same, stride 2, no bias */
        {6, 6, 3, 4, 3, 3, 2, 2, 1, 1, ACT_LINEAR},  /* same, odd kernel, stride 2: padding 0 top, 1 bottom */
        {7, 6, 3, 5, 2, 3, 2, 1, 0, 1, ACT_SIGMOID}, /* valid, rectangular kernel and strides */
        {8, 8, 1, 3, 2, 2, 2, 2, 0, 0, ACT_RELU},    /* valid, even kernel, stride 2 */
        {9, 9, 3, 6, 2, 2, 2, 2, 1, 1, ACT_TANH},    /* same, even kernel, stride 2 */
        {5, 5, 3, 2, 5, 5, 1, 1, 0, 1, ACT_LINEAR},  /* kernel as large as the input */
        {3, 3, 1, 2, 5, 5, 1, 1, 1, 1, ACT_RELU},    /* same with a kernel larger than the input */
        {6, 6, 16, 32, 3, 3, 1, 1, 1, 1, ACT_RELU},  /* wide enough for blocked weight layouts */
        /* Linear 3x3 on 32 and 64 channels: Winograd where oneDNN has it (conv2d.c), odd sizes and 'valid' too. */
        {6, 6, 32, 32, 3, 3, 1, 1, 1, 1, ACT_LINEAR},
        {7, 5, 64, 64, 3, 3, 1, 1, 1, 0, ACT_LINEAR},
        {9, 9, 64, 48, 3, 3, 1, 1, 0, 1, ACT_LINEAR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_forward(&cases[i], 3);
}

static void check_gradient(const struct conv_case *k)
{
    struct layer_spec s = conv_spec(k);
    lc_check_gradient(&s, 2, 21, 2e-2, 400);
}

static void test_backward_linear_valid(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){5, 5, 3, 4, 3, 3, 1, 1, 0, 1, ACT_LINEAR});
}

static void test_backward_relu_same_even(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){5, 5, 3, 4, 2, 2, 1, 1, 1, 1, ACT_RELU});
}

static void test_backward_tanh_stride2_nobias(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){6, 6, 3, 4, 3, 3, 2, 2, 1, 0, ACT_TANH});
}

static void test_backward_sigmoid_valid_stride2(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){5, 5, 1, 3, 2, 2, 2, 2, 0, 1, ACT_SIGMOID});
}

static void test_backward_wide(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){4, 4, 16, 16, 3, 3, 1, 1, 1, 1, ACT_RELU});
}

/* 64 channels in and out, linear, 3x3, stride 1: Winograd forward and backward where oneDNN has it. */
static void test_backward_winograd(void **state)
{
    (void)state;
    check_gradient(&(struct conv_case){6, 5, 64, 64, 3, 3, 1, 1, 1, 1, ACT_LINEAR});
    check_gradient(&(struct conv_case){5, 5, 64, 64, 3, 3, 1, 1, 0, 0, ACT_LINEAR});
}

/* The gradient slab is overwritten by each backward, never accumulated into. */
static void test_backward_overwrites(void **state)
{
    (void)state;
    struct conv_case k = {5, 5, 3, 4, 3, 3, 1, 1, 1, 1, ACT_TANH};
    struct layer_spec s = conv_spec(&k);
    struct lc t;
    lc_setup(&t, &s, 2, 3);
    float *x = malloc(sizeof(float) * t.in_size), *dy = malloc(sizeof(float) * t.out_size);
    float *dx = malloc(sizeof(float) * t.in_size), *dw = malloc(sizeof(float) * t.n_w);
    lc_fill(x, t.in_size, -1, 1, 1);
    lc_fill(dy, t.out_size, -1, 1, 2);
    lc_backward(&t, x, dy, dx, 1);
    memcpy(dw, t.dw, sizeof(float) * t.n_w);
    for (size_t i = 0; i < t.n_w; i++)
        t.dw[i] = 1e6f;
    lc_backward(&t, x, dy, dx, 1);
    assert_true(lc_max_rel_diff(t.dw, dw, t.n_w) < 1e-6);
    free(x);
    free(dy);
    free(dx);
    free(dw);
    lc_teardown(&t);
}

/* ---- blocked inputs: how the network chains layers ----------------------------------------------------- */

/* A Conv2D layer made by hand, for a given source layout, with weights U(-0.5, 0.5). */
struct manual {
    struct layer_spec spec;
    struct layer l;
    float *w, *dw;
    size_t n_w;
};

static void manual_create(struct manual *m, const struct layer_spec *spec, int n, const dnnl_memory_desc_t *src_md,
                          const struct dnn *d, uint64_t seed)
{
    struct error e = {0};
    memset(m, 0, sizeof *m);
    m->spec = *spec;
    if (m->spec.ops->infer(&m->spec, &e) != ERR_OK)
        fail_msg("infer: %s", e.msg);
    for (int i = 0; i < m->spec.n_params; i++) {
        m->spec.params[i].offset = m->n_w;
        m->n_w += m->spec.params[i].size;
    }
    m->w = calloc(m->n_w, sizeof(float));
    m->dw = calloc(m->n_w, sizeof(float));
    lc_fill(m->w, m->n_w, -0.5, 0.5, seed);
    m->l.spec = &m->spec;
    m->l.n = n;
    m->l.src_md = *src_md;
    m->l.w = m->w;
    m->l.dw = m->dw;
    if (m->spec.ops->create(&m->l, d, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
}

static void manual_destroy(struct manual *m)
{
    m->spec.ops->destroy(&m->l);
    free(m->w);
    free(m->dw);
}

static void read_nhwc(dnnl_memory_t mem, int n, int h, int w, int c, float *out, const struct dnn *d)
{
    dnnl_memory_desc_t md;
    LC_OK(dnn_md_nhwc(&md, n, h, w, c, err));
    LC_OK(dnn_read_plain(mem, &md, out, d, err));
}

/* Runs `b` forward and backward on src (its layout b->l.src_md), and compares with a plain-input copy of the
 * same layer (whose gradient the finite-difference tests check): output, input gradient and weight gradient.
 * x_plain is src's content in NHWC. */
static void compare_with_plain(struct manual *b, const struct conv_case *kb, dnnl_memory_t src, const float *x_plain,
                               const struct dnn *d)
{
    int n = b->l.n;
    struct layer_spec s = conv_spec(kb);
    struct lc p;
    lc_setup(&p, &s, n, 1);
    memcpy(p.w, b->w, sizeof(float) * b->n_w);
    float *y = malloc(sizeof(float) * p.out_size), *r = malloc(sizeof(float) * p.out_size);
    float *dy = malloc(sizeof(float) * p.out_size), *dx = malloc(sizeof(float) * p.in_size);
    float *dx_ref = malloc(sizeof(float) * p.in_size);
    struct step_ctx ctx = {.dnn = d, .training = 1, .seed = 1};
    dnnl_memory_t ddst;

    /* forward: the naive reference on the plain content */
    LC_OK(b->spec.ops->forward(&b->l, &ctx, src, err));
    read_nhwc(b->l.dst, n, b->spec.out.h, b->spec.out.w, b->spec.out.c, y, d);
    naive_conv(kb, n, x_plain, b->w, kb->use_bias ? b->w + b->spec.params[1].offset : NULL, r);
    assert_true(lc_max_rel_diff(y, r, p.out_size) <= 1e-4);

    /* backward: same gradients as the plain-layout layer */
    lc_fill(dy, p.out_size, -1, 1, 9);
    lc_backward(&p, x_plain, dy, dx_ref, 1);
    LC_OK(dnn_mem(&ddst, &b->l.dst_md, d, NULL, err));
    LC_OK(dnn_write_plain(ddst, &p.out_plain, dy, d, err));
    LC_OK(b->spec.ops->backward(&b->l, &ctx, src, ddst, err));
    read_nhwc(b->l.diff_src, n, b->spec.in.h, b->spec.in.w, b->spec.in.c, dx, d);
    assert_true(lc_max_rel_diff(dx, dx_ref, p.in_size) <= 1e-4);
    assert_true(lc_max_rel_diff(b->dw, p.dw, b->n_w) <= 1e-4);

    dnnl_memory_destroy(ddst);
    free(y);
    free(r);
    free(dy);
    free(dx);
    free(dx_ref);
    lc_teardown(&p);
}

/* conv A (plain input) -> conv B fed A's dst as is, in whatever (blocked) layout A's primitive chose. */
static void test_chain_through_blocked_layout(void **state)
{
    (void)state;
    const int n = 2;
    struct conv_case ka = {6, 6, 3, 16, 3, 3, 1, 1, 1, 1, ACT_RELU};
    struct conv_case kb = {6, 6, 16, 8, 2, 2, 2, 2, 1, 1, ACT_TANH};
    struct layer_spec sa = conv_spec(&ka), sb = conv_spec(&kb);
    struct lc a;
    struct manual b;
    lc_setup(&a, &sa, n, 31);
    if (!lc_is_blocked(&a.l.dst_md)) {
        lc_teardown(&a);
        skip(); /* this CPU's oneDNN keeps plain layouts; test_explicit_blocked_input still covers them */
    }
    manual_create(&b, &sb, n, &a.l.dst_md, &a.dnn, 32);
    float *x = malloc(sizeof(float) * a.in_size), *ya = malloc(sizeof(float) * a.out_size);
    float *ya_ref = malloc(sizeof(float) * a.out_size);
    lc_fill(x, a.in_size, -1, 1, 33);
    lc_forward(&a, x, ya, 1);
    naive_conv(&ka, n, x, a.w, bias_of(&a, &ka), ya_ref);
    assert_true(lc_max_rel_diff(ya, ya_ref, a.out_size) <= 1e-4);
    /* B's reference input is the naive A output: the naive reference applied twice. */
    compare_with_plain(&b, &kb, a.l.dst, ya_ref, &a.dnn);
    free(x);
    free(ya);
    free(ya_ref);
    manual_destroy(&b);
    lc_teardown(&a);
}

/* An input we put in nChw16c ourselves (3 channels padded to 16), whatever the CPU. */
static void test_explicit_blocked_input(void **state)
{
    (void)state;
    const int n = 2;
    struct conv_case k = {5, 5, 3, 4, 3, 3, 2, 2, 1, 1, ACT_SIGMOID};
    struct layer_spec s = conv_spec(&k);
    struct dnn d;
    struct manual m;
    dnnl_memory_desc_t bmd, pmd;
    dnnl_memory_t src;
    dnnl_dims_t dims = {n, k.c, k.h, k.w};
    LC_OK(dnn_init(&d, err));
    assert_int_equal(dnnl_memory_desc_init_by_tag(&bmd, 4, dims, dnnl_f32, dnnl_nChw16c), dnnl_success);
    assert_true(lc_is_blocked(&bmd));
    LC_OK(dnn_md_nhwc(&pmd, n, k.h, k.w, k.c, err));
    float *x = malloc(sizeof(float) * n * k.h * k.w * k.c);
    lc_fill(x, (size_t)n * k.h * k.w * k.c, -1, 1, 41);
    LC_OK(dnn_mem(&src, &bmd, &d, NULL, err));
    LC_OK(dnn_write_plain(src, &pmd, x, &d, err));
    manual_create(&m, &s, n, &bmd, &d, 42);
    assert_true(dnnl_memory_desc_equal(dnn_md_of(m.l.diff_src), &bmd));
    compare_with_plain(&m, &k, src, x, &d);
    manual_destroy(&m);
    dnnl_memory_destroy(src);
    free(x);
    dnn_release(&d);
}

/* ---- parsing, shapes, init ----------------------------------------------------------------------------- */

static void test_parse_positional_and_keywords(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e;
    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 16, 14);
    lc_arg_tuple(&a, NULL, 2, (long[]){2, 3}, 20);
    lc_arg_int(&a, NULL, 2, 26);
    lc_arg_str(&a, NULL, "same", 32);
    lc_arg_str(&a, "activation", "relu", 38);
    lc_arg(&a, "use_bias", ARG_BOOL, 44)->num = 0;
    assert_int_equal(lc_parse(&layer_conv2d, &a, &s, &e), ERR_OK);
    const struct conv_cfg *c = &s.u.conv;
    assert_int_equal(c->filters, 16);
    assert_int_equal(c->kh, 2);
    assert_int_equal(c->kw, 3);
    assert_int_equal(c->sh, 2);
    assert_int_equal(c->sw, 2);
    assert_int_equal(c->same, 1);
    assert_int_equal(c->act, ACT_RELU);
    assert_int_equal(c->use_bias, 0);
}

static void test_parse_defaults(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e;
    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, "kernel_size", 3, 14);
    lc_arg_int(&a, "filters", 8, 20);
    lc_arg(&a, "activation", ARG_NONE, 26);
    assert_int_equal(lc_parse(&layer_conv2d, &a, &s, &e), ERR_OK);
    const struct conv_cfg *c = &s.u.conv;
    assert_int_equal(c->filters, 8);
    assert_int_equal(c->kh, 3);
    assert_int_equal(c->kw, 3);
    assert_int_equal(c->sh, 1);
    assert_int_equal(c->sw, 1);
    assert_int_equal(c->same, 0);
    assert_int_equal(c->act, ACT_LINEAR);
    assert_int_equal(c->use_bias, 1);
    const char *names[] = {"linear", "sigmoid", "tanh"};
    const enum activation acts[] = {ACT_LINEAR, ACT_SIGMOID, ACT_TANH};
    for (int i = 0; i < 3; i++) {
        struct args b;
        lc_args_init(&b, "Conv2D", 4);
        lc_arg_int(&b, NULL, 4, 14);
        lc_arg_int(&b, NULL, 2, 20);
        lc_arg_str(&b, "activation", names[i], 26);
        assert_int_equal(lc_parse(&layer_conv2d, &b, &s, &e), ERR_OK);
        assert_int_equal(s.u.conv.act, acts[i]);
    }
}

static void expect_parse_error(struct args *a, const char *needle)
{
    struct layer_spec s;
    struct error e;
    assert_int_equal(lc_parse(&layer_conv2d, a, &s, &e), ERR_INPUT);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "m.txt:4:"))
        fail_msg("message '%s' lacks '%s' or the position", e.msg, needle);
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct args a;
    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 0, 14);
    lc_arg_int(&a, NULL, 3, 20);
    expect_parse_error(&a, "'filters' must be between 1");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_int(&a, NULL, 3, 20);
    lc_arg_str(&a, "activation", "gelu", 26);
    expect_parse_error(&a, "unknown value 'gelu'");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_int(&a, NULL, 3, 20);
    lc_arg_str(&a, "activation", "softmax", 26);
    expect_parse_error(&a, "softmax is only supported on the last Dense layer or as a final Activation");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_tuple(&a, NULL, 2, (long[]){3, 0}, 20);
    expect_parse_error(&a, "'kernel_size'");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_int(&a, NULL, 3, 20);
    lc_arg_int(&a, "strides", -1, 26);
    expect_parse_error(&a, "'strides'");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_int(&a, NULL, 3, 20);
    lc_arg_str(&a, "padding", "causal", 26);
    expect_parse_error(&a, "'causal'");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    expect_parse_error(&a, "kernel_size");

    lc_args_init(&a, "Conv2D", 4);
    lc_arg_int(&a, NULL, 4, 14);
    lc_arg_int(&a, NULL, 3, 20);
    lc_arg_str(&a, "data_format", "channels_first", 26);
    expect_parse_error(&a, "unknown argument 'data_format'");
}

static void test_infer_shapes_and_params(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = conv_spec(&(struct conv_case){32, 32, 3, 16, 2, 2, 1, 1, 1, 1, ACT_RELU});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.rank, 3);
    assert_int_equal(s.out.h, 32);
    assert_int_equal(s.out.w, 32);
    assert_int_equal(s.out.c, 16);
    assert_int_equal(s.n_params, 2);
    assert_string_equal(s.params[0].name, "kernel");
    assert_int_equal(s.params[0].rank, 4);
    long kd[4] = {2, 2, 3, 16};
    for (int i = 0; i < 4; i++)
        assert_int_equal(s.params[0].dims[i], kd[i]);
    assert_int_equal(s.params[0].size, 192);
    assert_string_equal(s.params[1].name, "bias");
    assert_int_equal(s.params[1].rank, 1);
    assert_int_equal(s.params[1].dims[0], 16);
    assert_int_equal(s.params[1].size, 16);

    s = conv_spec(&(struct conv_case){28, 28, 1, 8, 3, 3, 2, 2, 0, 0, ACT_LINEAR});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.h, 13);
    assert_int_equal(s.out.w, 13);
    assert_int_equal(s.n_params, 1);

    s = conv_spec(&(struct conv_case){7, 7, 1, 8, 2, 2, 2, 2, 1, 1, ACT_LINEAR});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.h, 4);
}

static void test_infer_errors(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = conv_spec(&(struct conv_case){3, 3, 1, 4, 5, 5, 1, 1, 0, 1, ACT_LINEAR});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_INPUT);
    assert_string_equal(e.msg, "line 3: conv2d_1: kernel 5x5 is larger than its 3x3 input");
    s = conv_spec(&(struct conv_case){8, 3, 1, 4, 2, 4, 1, 1, 0, 1, ACT_LINEAR});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "kernel 2x4 is larger than its 8x3 input"));
    s = conv_spec(&(struct conv_case){3, 3, 1, 4, 2, 2, 1, 1, 0, 1, ACT_LINEAR});
    s.in = (struct shape){1, 1, 1, 10};
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "conv2d_1"));
}

static void test_to_text(void **state)
{
    (void)state;
    char buf[256];
    struct layer_spec s = conv_spec(&(struct conv_case){32, 32, 3, 16, 2, 3, 1, 2, 1, 1, ACT_RELU});
    layer_conv2d.to_text(&s, buf, sizeof buf);
    assert_string_equal(buf, "Conv2D(filters=16, kernel_size=(2, 3), strides=(1, 2), padding='same', "
                             "activation='relu', use_bias=True)");
    s = conv_spec(&(struct conv_case){32, 32, 3, 4, 3, 3, 1, 1, 0, 0, ACT_LINEAR});
    layer_conv2d.to_text(&s, buf, sizeof buf);
    assert_string_equal(buf, "Conv2D(filters=4, kernel_size=(3, 3), strides=(1, 1), padding='valid', "
                             "activation='linear', use_bias=False)");
}

static void test_glorot_init(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = conv_spec(&(struct conv_case){8, 8, 16, 32, 3, 3, 1, 1, 1, 1, ACT_RELU});
    assert_int_equal(layer_conv2d.infer(&s, &e), ERR_OK);
    s.params[0].offset = 100; /* offsets are relative to the layer's first parameter */
    s.params[1].offset = 100 + s.params[0].size;
    size_t nk = s.params[0].size, n = nk + s.params[1].size;
    float *w = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        w[i] = 7.0f;
    struct rng r;
    rng_seed(&r, 5, 0);
    layer_conv2d.init_params(&s, w, rng_uniform, &r);
    double limit = sqrt(6.0 / (9.0 * 16 + 9.0 * 32)), sum = 0, sq = 0, max = 0;
    for (size_t i = 0; i < nk; i++) {
        assert_true(fabs(w[i]) <= limit);
        sum += w[i];
        sq += (double)w[i] * w[i];
        max = fmax(max, fabs(w[i]));
    }
    assert_true(fabs(sum / nk) < 0.05 * limit);
    assert_true(fabs(sq / nk - limit * limit / 3) < 0.1 * limit * limit / 3); /* variance of U(-l, l) */
    assert_true(max > 0.95 * limit);
    for (size_t i = nk; i < n; i++)
        assert_true(w[i] == 0.0f);
    free(w);
}

/* ---- Input ------------------------------------------------------------------------------------------- */

static void test_input(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e;
    char buf[64];
    lc_args_init(&a, "Input", 4);
    lc_arg_tuple(&a, "shape", 3, (long[]){28, 28, 1}, 14);
    assert_int_equal(lc_parse(&layer_input, &a, &s, &e), ERR_OK);
    assert_int_equal(layer_input.infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.rank, 3);
    assert_int_equal(s.out.h, 28);
    assert_int_equal(s.out.w, 28);
    assert_int_equal(s.out.c, 1);
    assert_int_equal(s.n_params, 0);
    layer_input.to_text(&s, buf, sizeof buf);
    assert_string_equal(buf, "Input(shape=(28, 28, 1))");
    assert_null(layer_input.create);

    lc_args_init(&a, "Input", 4);
    lc_arg_tuple(&a, NULL, 3, (long[]){32, 30, 3}, 14);
    assert_int_equal(lc_parse(&layer_input, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.input.w, 30);

    lc_args_init(&a, "Input", 4);
    lc_arg_tuple(&a, "shape", 2, (long[]){28, 28}, 14);
    assert_int_equal(lc_parse(&layer_input, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:4:"));

    lc_args_init(&a, "Input", 4);
    lc_arg_tuple(&a, "shape", 3, (long[]){28, 0, 1}, 14);
    assert_int_equal(lc_parse(&layer_input, &a, &s, &e), ERR_INPUT);

    lc_args_init(&a, "Input", 4);
    lc_arg_tuple(&a, "batch_shape", 4, (long[]){1, 28, 28, 1}, 14);
    assert_int_equal(lc_parse(&layer_input, &a, &s, &e), ERR_INPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_naive),
        cmocka_unit_test(test_backward_linear_valid),
        cmocka_unit_test(test_backward_relu_same_even),
        cmocka_unit_test(test_backward_tanh_stride2_nobias),
        cmocka_unit_test(test_backward_sigmoid_valid_stride2),
        cmocka_unit_test(test_backward_wide),
        cmocka_unit_test(test_backward_winograd),
        cmocka_unit_test(test_backward_overwrites),
        cmocka_unit_test(test_chain_through_blocked_layout),
        cmocka_unit_test(test_explicit_blocked_input),
        cmocka_unit_test(test_parse_positional_and_keywords),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_infer_shapes_and_params),
        cmocka_unit_test(test_infer_errors),
        cmocka_unit_test(test_to_text),
        cmocka_unit_test(test_glorot_init),
        cmocka_unit_test(test_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_dense.c: Dense against a naive matmul, central differences, logits for a loss-fused softmax, errors;
 * Flatten's channels-last order for plain and blocked inputs, and its gradient. */
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

static struct layer_spec dense_spec(int in, int units, int use_bias, enum activation act)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_dense;
    snprintf(s.name, sizeof s.name, "dense_1");
    s.line = 7;
    s.index = 2;
    s.u.dense = (struct dense_cfg){units, use_bias, act, {0, 0}, INIT_GLOROT_UNIFORM};
    s.in = (struct shape){1, 1, 1, in};
    return s;
}

/* y (n, units) = act(x (n, in) . kern (in, units) + bias (units)), Keras layouts, accumulated in double. */
static void naive_dense(int n, int in, int units, enum activation act, const float *x, const float *kern,
                        const float *bias, float *y)
{
    for (int b = 0; b < n; b++)
        for (int u = 0; u < units; u++) {
            double acc = bias ? bias[u] : 0.0;
            for (int i = 0; i < in; i++)
                acc += (double)x[(size_t)b * in + i] * kern[(size_t)i * units + u];
            y[(size_t)b * units + u] = (float)lc_ref_act(act, acc);
        }
}

static void check_dense_forward(int n, int in, int units, int use_bias, enum activation act)
{
    struct layer_spec s = dense_spec(in, units, use_bias, act);
    struct lc t;
    lc_setup(&t, &s, n, 3);
    float *x = malloc(sizeof(float) * t.in_size), *y = malloc(sizeof(float) * t.out_size);
    float *r = malloc(sizeof(float) * t.out_size);
    lc_fill(x, t.in_size, -1, 1, 4);
    for (int step = 0; step < 2; step++) {
        lc_forward(&t, x, y, 1);
        naive_dense(n, in, units, act, x, t.w, use_bias ? t.w + (size_t)in * units : NULL, r);
        double diff = lc_max_rel_diff(y, r, t.out_size);
        if (diff > 1e-4)
            fail_msg("dense %d->%d bias=%d act=%d step %d: max diff %g", in, units, use_bias, (int)act, step, diff);
        for (size_t i = 0; i < t.n_w; i++) /* the next step must see updated weights */
            t.w[i] = 0.25f - t.w[i];
    }
    free(x);
    free(y);
    free(r);
    lc_teardown(&t);
}

static void test_dense_forward(void **state)
{
    (void)state;
    check_dense_forward(3, 7, 5, 1, ACT_LINEAR);
    check_dense_forward(4, 12, 3, 1, ACT_RELU);
    check_dense_forward(2, 20, 4, 0, ACT_TANH);
    check_dense_forward(5, 33, 17, 1, ACT_SIGMOID);
    check_dense_forward(8, 64, 48, 1, ACT_RELU);
}

static void check_dense_gradient(int in, int units, int use_bias, enum activation act)
{
    struct layer_spec s = dense_spec(in, units, use_bias, act);
    lc_check_gradient(&s, 3, 8, 2e-2, 400);
}

static void test_dense_backward(void **state)
{
    (void)state;
    check_dense_gradient(10, 6, 1, ACT_LINEAR);
    check_dense_gradient(8, 5, 1, ACT_RELU);
    check_dense_gradient(9, 4, 0, ACT_TANH);
    check_dense_gradient(6, 3, 1, ACT_SIGMOID);
    check_dense_gradient(40, 20, 1, ACT_RELU);
}

/* The model's softmax is applied by the loss: the layer must hand out logits, and the gradient is that of
 * the logits. */
static void test_softmax_in_loss_gives_logits(void **state)
{
    (void)state;
    const int n = 4, in = 6, units = 5;
    struct layer_spec s = dense_spec(in, units, 1, ACT_SOFTMAX);
    s.softmax_in_loss = 1;
    struct lc t;
    lc_setup(&t, &s, n, 12);
    float *x = malloc(sizeof(float) * t.in_size), *y = malloc(sizeof(float) * t.out_size);
    float *r = malloc(sizeof(float) * t.out_size);
    lc_fill(x, t.in_size, -1, 1, 13);
    lc_forward(&t, x, y, 1);
    naive_dense(n, in, units, ACT_LINEAR, x, t.w, t.w + in * units, r);
    assert_true(lc_max_rel_diff(y, r, t.out_size) <= 1e-4);
    int negative = 0;
    for (size_t i = 0; i < t.out_size; i++)
        negative += y[i] < 0;
    assert_true(negative > 0); /* not probabilities */
    lc_gradcheck(&t, 1, 2e-2, 400);
    free(x);
    free(y);
    free(r);
    lc_teardown(&t);
}

static void test_softmax_without_loss_is_refused(void **state)
{
    (void)state;
    struct layer_spec s = dense_spec(6, 5, 1, ACT_SOFTMAX);
    struct error e = {0};
    struct dnn d;
    struct layer l;
    float w[64] = {0}, dw[64] = {0};
    assert_int_equal(layer_dense.infer(&s, &e), ERR_OK);
    s.params[1].offset = s.params[0].size;
    LC_OK(dnn_init(&d, err));
    memset(&l, 0, sizeof l);
    l.spec = &s;
    l.n = 2;
    l.w = w;
    l.dw = dw;
    LC_OK(dnn_md_nc(&l.src_md, 2, 6, err));
    assert_int_not_equal(layer_dense.create(&l, &d, 1, &e), ERR_OK);
    assert_non_null(strstr(e.msg, "dense_1"));
    assert_null(l.dst);
    assert_null(l.priv);
    dnn_release(&d);
}

/* A global pooling may hand Dense a 4-D (N, C, 1, 1) source: same result as flat. */
static void test_dense_on_4d_source(void **state)
{
    (void)state;
    const int n = 3, in = 16, units = 7;
    struct layer_spec s = dense_spec(in, units, 1, ACT_TANH);
    struct error e = {0};
    struct dnn d;
    struct layer l;
    dnnl_memory_desc_t md4, pmd;
    dnnl_memory_t src;
    dnnl_dims_t dims = {n, in, 1, 1};
    float w[16 * 7 + 7], dw[16 * 7 + 7], x[3 * 16], y[3 * 7], r[3 * 7];
    assert_int_equal(layer_dense.infer(&s, &e), ERR_OK);
    s.params[1].offset = s.params[0].size;
    lc_fill(w, sizeof w / sizeof w[0], -0.5, 0.5, 1);
    lc_fill(x, sizeof x / sizeof x[0], -1, 1, 2);
    LC_OK(dnn_init(&d, err));
    assert_int_equal(dnnl_memory_desc_init_by_tag(&md4, 4, dims, dnnl_f32, dnnl_nChw16c), dnnl_success);
    LC_OK(dnn_md_nhwc(&pmd, n, 1, 1, in, err));
    LC_OK(dnn_mem(&src, &md4, &d, NULL, err));
    LC_OK(dnn_write_plain(src, &pmd, x, &d, err));
    memset(&l, 0, sizeof l);
    l.spec = &s;
    l.n = n;
    l.w = w;
    l.dw = dw;
    l.src_md = md4;
    if (layer_dense.create(&l, &d, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
    struct step_ctx ctx = {.dnn = &d, .training = 1, .seed = 1};
    LC_OK(layer_dense.forward(&l, &ctx, src, err));
    LC_OK(dnn_md_nc(&pmd, n, units, err));
    LC_OK(dnn_read_plain(l.dst, &pmd, y, &d, err));
    naive_dense(n, in, units, ACT_TANH, x, w, w + in * units, r);
    assert_true(lc_max_rel_diff(y, r, n * units) <= 1e-4);
    assert_true(dnnl_memory_desc_equal(dnn_md_of(l.diff_src), &md4));
    layer_dense.destroy(&l);
    dnnl_memory_destroy(src);
    dnn_release(&d);
}

static void test_dense_infer(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = dense_spec(576, 500, 1, ACT_RELU);
    assert_int_equal(layer_dense.infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.rank, 1);
    assert_int_equal(s.out.c, 500);
    assert_int_equal(s.n_params, 2);
    assert_string_equal(s.params[0].name, "kernel");
    assert_int_equal(s.params[0].rank, 2);
    assert_int_equal(s.params[0].dims[0], 576);
    assert_int_equal(s.params[0].dims[1], 500);
    assert_int_equal(s.params[0].size, 576 * 500);
    assert_string_equal(s.params[1].name, "bias");
    assert_int_equal(s.params[1].dims[0], 500);

    s = dense_spec(10, 3, 1, ACT_LINEAR);
    s.in = (struct shape){3, 4, 4, 8};
    assert_int_equal(layer_dense.infer(&s, &e), ERR_INPUT);
    assert_string_equal(e.msg,
                        "line 7: dense_1: Dense needs a flat input: add Flatten() or a global pooling before it");
}

/* ---- parsing ----------------------------------------------------------------------------------------- */

static void test_dense_parse(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e;
    char buf[128];
    lc_args_init(&a, "Dense", 9);
    lc_arg_int(&a, NULL, 10, 12);
    lc_arg_str(&a, NULL, "softmax", 17);
    assert_int_equal(lc_parse(&layer_dense, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.dense.units, 10);
    assert_int_equal(s.u.dense.act, ACT_SOFTMAX);
    assert_int_equal(s.u.dense.use_bias, 1);
    layer_dense.to_text(&s, buf, sizeof buf);
    assert_string_equal(buf, "Dense(units=10, activation='softmax', use_bias=True)");

    lc_args_init(&a, "Dense", 9);
    lc_arg_int(&a, "units", 500, 12);
    assert_int_equal(lc_parse(&layer_dense, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.dense.act, ACT_LINEAR);

    lc_args_init(&a, "Dense", 9);
    lc_arg_int(&a, NULL, 0, 12);
    assert_int_equal(lc_parse(&layer_dense, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:9:12"));
    assert_non_null(strstr(e.msg, "'units'"));

    lc_args_init(&a, "Dense", 9);
    lc_arg_int(&a, NULL, 4, 12);
    lc_arg_str(&a, "activation", "swish", 17);
    assert_int_equal(lc_parse(&layer_dense, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "'swish'"));

    lc_args_init(&a, "Dense", 9);
    lc_arg_int(&a, NULL, 4, 12);
    lc_arg(&a, "kernel_initializer", ARG_STRING, 17);
    assert_int_equal(lc_parse(&layer_dense, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "kernel_initializer"));
}

static void test_dense_glorot_init(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = dense_spec(300, 200, 1, ACT_RELU);
    assert_int_equal(layer_dense.infer(&s, &e), ERR_OK);
    s.params[0].offset = 40;
    s.params[1].offset = 40 + s.params[0].size;
    size_t nk = s.params[0].size, n = nk + s.params[1].size;
    float *w = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        w[i] = -3.0f;
    struct rng r;
    rng_seed(&r, 9, 1);
    layer_dense.init_params(&s, w, rng_uniform, &r);
    double limit = sqrt(6.0 / (300.0 + 200.0)), sum = 0, max = 0;
    for (size_t i = 0; i < nk; i++) {
        assert_true(fabs(w[i]) <= limit);
        sum += w[i];
        max = fmax(max, fabs(w[i]));
    }
    assert_true(fabs(sum / nk) < 0.02 * limit);
    assert_true(max > 0.99 * limit);
    for (size_t i = nk; i < n; i++)
        assert_true(w[i] == 0.0f);
    free(w);
}

/* ---- Flatten ----------------------------------------------------------------------------------------- */

static struct layer_spec flatten_spec(int h, int w, int c)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_flatten;
    snprintf(s.name, sizeof s.name, "flatten_1");
    s.in = h ? (struct shape){3, h, w, c} : (struct shape){1, 1, 1, c};
    return s;
}

/* Keras's order: feature (i * w + j) * c + ch of sample b is x[b, i, j, ch]. x is given as (n, c, h, w)
 * NCHW here on purpose, so that a flatten in any other order would not match. */
static void expected_flatten_from_nchw(int n, int h, int w, int c, const float *x_nchw, float *y)
{
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int ch = 0; ch < c; ch++)
                    y[(size_t)b * h * w * c + (size_t)(i * w + j) * c + ch] =
                        x_nchw[(((size_t)b * c + ch) * h + i) * w + j];
}

static void test_flatten_plain_order(void **state)
{
    (void)state;
    const int n = 2, h = 3, w = 4, c = 5;
    struct layer_spec s = flatten_spec(h, w, c);
    struct lc t;
    lc_setup(&t, &s, n, 1);
    assert_int_equal(t.spec.out.rank, 1);
    assert_int_equal(t.spec.out.c, h * w * c);
    assert_int_equal(t.n_w, 0);
    float x[2 * 3 * 4 * 5], y[2 * 3 * 4 * 5], r[2 * 3 * 4 * 5];
    for (int b = 0; b < n; b++) /* x (n, h, w, c) NHWC: value encodes its position */
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int ch = 0; ch < c; ch++)
                    x[((b * h + i) * w + j) * c + ch] = (float)(1000 * b + 100 * i + 10 * j + ch);
    lc_forward(&t, x, y, 1);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int ch = 0; ch < c; ch++)
                    r[b * h * w * c + (i * w + j) * c + ch] = (float)(1000 * b + 100 * i + 10 * j + ch);
    assert_memory_equal(y, r, sizeof y);
    lc_teardown(&t);
}

/* A Flatten made by hand on a given source layout. */
static void flatten_create(struct layer *l, struct layer_spec *s, int n, const dnnl_memory_desc_t *src_md,
                           const struct dnn *d)
{
    struct error e = {0};
    assert_int_equal(layer_flatten.infer(s, &e), ERR_OK);
    memset(l, 0, sizeof *l);
    l->spec = s;
    l->n = n;
    l->src_md = *src_md;
    if (layer_flatten.create(l, d, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
}

/* Input in nChw16c (5 channels padded to 16): forward gives HWC order, backward gives back the layout. */
static void test_flatten_blocked_input(void **state)
{
    (void)state;
    enum { n = 2, h = 3, w = 4, c = 5, size = n * h * w * c };
    struct layer_spec s = flatten_spec(h, w, c);
    struct dnn d;
    struct layer l;
    dnnl_memory_desc_t bmd, nchw, nc;
    dnnl_memory_t src, ddst;
    dnnl_dims_t dims = {n, c, h, w};
    float x[size], y[size], r[size], dy[size], dx[size];
    LC_OK(dnn_init(&d, err));
    assert_int_equal(dnnl_memory_desc_init_by_tag(&bmd, 4, dims, dnnl_f32, dnnl_nChw16c), dnnl_success);
    assert_int_equal(dnnl_memory_desc_init_by_tag(&nchw, 4, dims, dnnl_f32, dnnl_nchw), dnnl_success);
    assert_true(lc_is_blocked(&bmd));
    lc_fill(x, size, -1, 1, 5);
    LC_OK(dnn_mem(&src, &bmd, &d, NULL, err));
    LC_OK(dnn_write_plain(src, &nchw, x, &d, err));
    flatten_create(&l, &s, n, &bmd, &d);
    struct step_ctx ctx = {.dnn = &d, .training = 1, .seed = 1};
    LC_OK(layer_flatten.forward(&l, &ctx, src, err));
    LC_OK(dnn_md_nc(&nc, n, h * w * c, err));
    assert_true(dnnl_memory_desc_equal(&l.dst_md, &nc));
    LC_OK(dnn_read_plain(l.dst, &nc, y, &d, err));
    expected_flatten_from_nchw(n, h, w, c, x, r);
    assert_memory_equal(y, r, sizeof y);

    /* backward: dy[b, (i*w + j)*c + ch] must land at diff_src[b, ch, i, j] */
    lc_fill(dy, size, -1, 1, 6);
    LC_OK(dnn_mem(&ddst, &l.dst_md, &d, NULL, err));
    LC_OK(dnn_write_plain(ddst, &nc, dy, &d, err));
    LC_OK(layer_flatten.backward(&l, &ctx, src, ddst, err));
    assert_true(dnnl_memory_desc_equal(dnn_md_of(l.diff_src), &bmd));
    LC_OK(dnn_read_plain(l.diff_src, &nchw, dx, &d, err));
    expected_flatten_from_nchw(n, h, w, c, dx, r);
    assert_memory_equal(r, dy, sizeof dy);

    layer_flatten.destroy(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
    dnn_release(&d);
}

/* The network's case: Flatten fed a convolution's output in the layout the convolution chose. */
static void test_flatten_after_conv(void **state)
{
    (void)state;
    enum { n = 2, h = 4, w = 3, c = 16, size = n * h * w * c };
    struct layer_spec cs;
    memset(&cs, 0, sizeof cs);
    cs.ops = &layer_conv2d;
    snprintf(cs.name, sizeof cs.name, "conv2d_1");
    cs.u.conv = (struct conv_cfg){c, 2, 2, 1, 1, 1, 1, ACT_RELU, {0, 0}, INIT_GLOROT_UNIFORM};
    cs.in = (struct shape){3, h, w, 3};
    struct lc conv;
    lc_setup(&conv, &cs, n, 2);
    if (!lc_is_blocked(&conv.l.dst_md)) {
        lc_teardown(&conv);
        skip(); /* this CPU's oneDNN chose a plain layout; test_flatten_blocked_input covers blocked ones */
    }
    struct layer_spec s = flatten_spec(h, w, c);
    struct layer l;
    float x[n * h * w * 3], yc[size], y[size];
    dnnl_memory_desc_t nc;
    lc_fill(x, sizeof x / sizeof x[0], -1, 1, 3);
    lc_forward(&conv, x, yc, 1); /* conv output read as NHWC by the harness */
    flatten_create(&l, &s, n, &conv.l.dst_md, &conv.dnn);
    struct step_ctx ctx = {.dnn = &conv.dnn, .training = 1, .seed = 1};
    LC_OK(layer_flatten.forward(&l, &ctx, conv.l.dst, err));
    LC_OK(dnn_md_nc(&nc, n, h * w * c, err));
    LC_OK(dnn_read_plain(l.dst, &nc, y, &conv.dnn, err));
    assert_memory_equal(y, yc, sizeof y); /* NHWC bytes are Keras's flat order */
    layer_flatten.destroy(&l);
    lc_teardown(&conv);
}

static void test_flatten_gradient(void **state)
{
    (void)state;
    struct layer_spec s = flatten_spec(3, 2, 4);
    lc_check_gradient(&s, 2, 7, 2e-2, 400);
}

static void test_flatten_flat_input_is_identity(void **state)
{
    (void)state;
    enum { n = 3, c = 7 };
    struct layer_spec s = flatten_spec(0, 0, c);
    struct lc t;
    char buf[32];
    lc_setup(&t, &s, n, 7);
    assert_int_equal(t.spec.out.rank, 1);
    assert_int_equal(t.spec.out.c, c);
    float x[n * c], y[n * c], dy[n * c], dx[n * c];
    lc_fill(x, n * c, -1, 1, 1);
    lc_fill(dy, n * c, -1, 1, 2);
    lc_backward(&t, x, dy, dx, 1);
    lc_forward(&t, x, y, 1);
    assert_memory_equal(y, x, sizeof x);
    assert_memory_equal(dx, dy, sizeof dy);
    layer_flatten.to_text(&t.spec, buf, sizeof buf);
    assert_string_equal(buf, "Flatten()");
    lc_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_forward),
        cmocka_unit_test(test_dense_backward),
        cmocka_unit_test(test_softmax_in_loss_gives_logits),
        cmocka_unit_test(test_softmax_without_loss_is_refused),
        cmocka_unit_test(test_dense_on_4d_source),
        cmocka_unit_test(test_dense_infer),
        cmocka_unit_test(test_dense_parse),
        cmocka_unit_test(test_dense_glorot_init),
        cmocka_unit_test(test_flatten_plain_order),
        cmocka_unit_test(test_flatten_blocked_input),
        cmocka_unit_test(test_flatten_after_conv),
        cmocka_unit_test(test_flatten_gradient),
        cmocka_unit_test(test_flatten_flat_input_is_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

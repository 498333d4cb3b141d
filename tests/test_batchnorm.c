/* test_batchnorm.c: BatchNormalization against Keras's formulas written out here in double (training with the
 * batch's statistics, inference with the moving averages), its backward against finite differences, the
 * moving averages' slots, a batch split over two "ranks" (threads whose sum is the layer's ctx->sum) against
 * the same batch whole, other input layouts, and the model-file syntax with its errors. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layer_check.h"
#include "model.h"

static struct layer_spec bn_spec(struct shape in, int center, int scale)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_batchnorm;
    snprintf(s.name, sizeof s.name, "batch_normalization_1");
    s.line = 3;
    s.index = 2;
    s.u.bn = (struct batchnorm_cfg){-1, 0.99, 1e-3, center, scale};
    s.in = in;
    return s;
}

/* The offset of the named tensor in t->w, or -1. */
static long part(const struct lc *t, const char *name)
{
    for (int i = 0; i < t->spec.n_params; i++)
        if (strcmp(t->spec.params[i].name, name) == 0)
            return (long)t->spec.params[i].offset;
    return -1;
}

/* lc_setup, then a positive moving variance (lc_setup fills every tensor with U(-0.5, 0.5)). */
static void setup(struct lc *t, const struct layer_spec *s, int n, uint64_t seed)
{
    lc_setup(t, s, n, seed);
    long v = part(t, "moving_variance");
    for (long k = 0; k < t->spec.in.c; k++)
        t->w[v + k] = 0.25f + 0.5f * (float)k / (float)t->spec.in.c;
}

/* Keras, in double: per channel k over the batch's n*h*w rows, mean and biased variance; training
 * y = gamma (x - mean) / sqrt(var + eps) + beta; inference the same with the moving averages. The moving
 * averages' slots: the mean and the unbiased variance. */
static void reference(const struct lc *t, const float *x, int training, double *y, double *mean, double *uvar)
{
    const long c = t->spec.in.c, rows = (long)(t->in_size / (size_t)c);
    const double eps = t->spec.u.bn.epsilon;
    long g = part(t, "gamma"), b = part(t, "beta"), mm = part(t, "moving_mean"), mv = part(t, "moving_variance");
    for (long k = 0; k < c; k++) {
        double s = 0, q = 0;
        for (long r = 0; r < rows; r++)
            s += x[r * c + k];
        double mu = s / rows;
        for (long r = 0; r < rows; r++)
            q += (x[r * c + k] - mu) * (x[r * c + k] - mu);
        double var = q / rows;
        mean[k] = mu;
        uvar[k] = q / (rows - 1);
        double m = training ? mu : t->w[mm + k], v = training ? var : t->w[mv + k];
        double gamma = g >= 0 ? t->w[g + k] : 1.0, beta = b >= 0 ? t->w[b + k] : 0.0;
        for (long r = 0; r < rows; r++)
            y[r * c + k] = gamma * (x[r * c + k] - m) / sqrt(v + eps) + beta;
    }
}

static void check_forward(struct shape in, int n, int center, int scale)
{
    struct lc t;
    struct layer_spec s = bn_spec(in, center, scale);
    setup(&t, &s, n, 7);
    const long c = in.c;
    float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size), *dy = lc_floats(t.out_size);
    double *ref = malloc(sizeof(double) * t.out_size), *mean = malloc(sizeof(double) * c);
    double *uvar = malloc(sizeof(double) * c);
    /* An offset and a spread per channel, as a conv's output has. */
    lc_fill(x, t.in_size, -1.0, 1.0, 3);
    for (size_t i = 0; i < t.in_size; i++)
        x[i] = x[i] * (1.0f + (float)(i % c)) + 0.5f * (float)(i % c);
    for (int training = 0; training <= 1; training++) {
        lc_forward(&t, x, y, training);
        reference(&t, x, training, ref, mean, uvar);
        for (size_t i = 0; i < t.out_size; i++)
            if (fabs(y[i] - ref[i]) > 2e-5 * fmax(1.0, fabs(ref[i])))
                fail_msg("%s y[%zu] = %.7g, Keras %.7g", training ? "training" : "inference", i, y[i], ref[i]);
    }
    /* Backward writes the statistics into the moving averages' slots (the gradient of a single rank). */
    lc_fill(dy, t.out_size, -1.0, 1.0, 4);
    lc_backward(&t, x, dy, NULL, 1);
    long mm = part(&t, "moving_mean"), mv = part(&t, "moving_variance");
    for (long k = 0; k < c; k++) {
        assert_float_equal(t.dw[mm + k], mean[k], 1e-5 * fmax(1.0, fabs(mean[k])));
        assert_float_equal(t.dw[mv + k], uvar[k], 1e-5 * fmax(1.0, uvar[k]));
    }
    free(x);
    free(y);
    free(dy);
    free(ref);
    free(mean);
    free(uvar);
    lc_teardown(&t);
}

static void test_forward_matches_keras(void **state)
{
    (void)state;
    check_forward((struct shape){3, 5, 4, 6}, 3, 1, 1);  /* after a Conv2D */
    check_forward((struct shape){3, 3, 3, 17}, 2, 1, 0); /* no gamma; channels not a multiple of the vectors */
    check_forward((struct shape){1, 1, 1, 9}, 16, 0, 1); /* after a Dense; no beta */
    check_forward((struct shape){1, 1, 1, 4}, 5, 0, 0);
}

static void test_gradient(void **state)
{
    (void)state;
    struct layer_spec s = bn_spec((struct shape){3, 3, 4, 5}, 1, 1);
    lc_check_gradient(&s, 3, 11, 2e-2, 400);
    s = bn_spec((struct shape){1, 1, 1, 7}, 1, 1);
    lc_check_gradient(&s, 6, 12, 2e-2, 400);
    s = bn_spec((struct shape){3, 2, 2, 3}, 0, 0);
    lc_check_gradient(&s, 4, 13, 2e-2, 400);
}

static void test_keras_params(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = bn_spec((struct shape){3, 4, 4, 8}, 1, 1);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    /* Keras's weights, in its order: gamma, beta, then the non-trainable moving_mean, moving_variance. */
    assert_int_equal(s.n_params, 4);
    const char *names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(s.params[i].name, names[i]);
        assert_int_equal(s.params[i].rank, 1);
        assert_int_equal(s.params[i].dims[0], 8);
        assert_int_equal(s.params[i].moving, i >= 2);
    }
    s = bn_spec((struct shape){3, 4, 4, 8}, 0, 1);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    assert_int_equal(s.n_params, 3);
    assert_string_equal(s.params[0].name, "gamma");
    /* Keras's initial values: ones, zeros, zeros, ones. */
    s = bn_spec((struct shape){1, 1, 1, 3}, 1, 1);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    float w[12];
    for (int i = 0; i < 4; i++)
        s.params[i].offset = (size_t)(3 * i);
    s.ops->init_params(&s, w, NULL, NULL);
    const float want[12] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1};
    assert_memory_equal(w, want, sizeof want);
}

/* ---- a batch over two "ranks" --------------------------------------------------------------------------- */

/* Two threads' ctx->sum: both buffers are added in the same order, so both get the same bits, as from
 * MPI_Allreduce. */
struct pair {
    pthread_barrier_t barrier;
    const double *slot[2];
};
struct member {
    struct pair *pair;
    int id;
    double tmp[256];
};

static int pair_sum(double *v, int n, void *arg, struct error *err)
{
    struct member *m = arg;
    (void)err;
    if (n > 256)
        return ERR_INTERNAL;
    m->pair->slot[m->id] = v;
    pthread_barrier_wait(&m->pair->barrier);
    for (int i = 0; i < n; i++)
        m->tmp[i] = m->pair->slot[0][i] + m->pair->slot[1][i];
    pthread_barrier_wait(&m->pair->barrier);
    memcpy(v, m->tmp, sizeof(double) * (size_t)n);
    return ERR_OK;
}

struct half {
    struct lc *t;
    const float *x, *dy;
    float *y, *dx;
};

static void *run_half(void *arg)
{
    struct half *h = arg;
    lc_forward(h->t, h->x, h->y, 1);
    lc_backward(h->t, h->x, h->dy, h->dx, 1);
    return NULL;
}

/* The batch's two halves on two ranks give the whole batch's output, input gradient, and (added up) its
 * gamma/beta gradients and statistics: the layer normalises with the global batch, as SPEC's N-independence
 * needs. */
static void test_two_ranks_are_one_batch(void **state)
{
    (void)state;
    const int n = 6, h0 = 4; /* uneven shares */
    struct shape in = {3, 3, 2, 5};
    struct layer_spec s = bn_spec(in, 1, 1);
    struct lc whole, part0, part1;
    setup(&whole, &s, n, 21);
    setup(&part0, &s, h0, 21);
    setup(&part1, &s, n - h0, 21);
    memcpy(part0.w, whole.w, sizeof(float) * whole.n_w);
    memcpy(part1.w, whole.w, sizeof(float) * whole.n_w);
    const size_t per = (size_t)shape_size(&in);
    float *x = lc_floats(whole.in_size), *dy = lc_floats(whole.out_size);
    float *y = lc_floats(whole.out_size), *dx = lc_floats(whole.in_size);
    float *ys = lc_floats(whole.out_size), *dxs = lc_floats(whole.in_size);
    lc_fill(x, whole.in_size, -2.0, 3.0, 5);
    lc_fill(dy, whole.out_size, -1.0, 1.0, 6);
    lc_forward(&whole, x, y, 1);
    lc_backward(&whole, x, dy, dx, 1);

    struct pair pair;
    pthread_barrier_init(&pair.barrier, NULL, 2);
    struct member m0 = {&pair, 0, {0}}, m1 = {&pair, 1, {0}};
    part0.global_batch = part1.global_batch = n;
    part0.sum = part1.sum = pair_sum;
    part0.sum_arg = &m0;
    part1.sum_arg = &m1;
    struct half a = {&part0, x, dy, ys, dxs};
    struct half b = {&part1, x + h0 * per, dy + h0 * per, ys + h0 * per, dxs + h0 * per};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, run_half, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, run_half, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&pair.barrier);

    assert_true(lc_max_rel_diff(ys, y, whole.out_size) < 1e-5);
    assert_true(lc_max_rel_diff(dxs, dx, whole.in_size) < 1e-5);
    for (size_t i = 0; i < whole.n_w; i++) {
        double sum = (double)part0.dw[i] + part1.dw[i];
        if (fabs(sum - whole.dw[i]) > 1e-5 * fmax(1.0, fabs(whole.dw[i])))
            fail_msg("dw[%zu]: two ranks %.7g, one batch %.7g", i, sum, whole.dw[i]);
    }
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(ys);
    free(dxs);
    lc_teardown(&whole);
    lc_teardown(&part0);
    lc_teardown(&part1);
}

/* A blocked input (what a Conv2D hands over: nChw16c, nChw8c, here with a padded last block) gives the plain
 * input's results, and the layer keeps that layout for its output (no reorder); another layout (nchw) goes
 * through a plain copy. */
static void test_layouts(void **state)
{
    (void)state;
    struct lc t;
    struct layer_spec s = bn_spec((struct shape){3, 4, 3, 20}, 1, 1);
    setup(&t, &s, 2, 31);
    dnnl_memory_desc_t md;
    lc_check_layout(&t, dnnl_nChw16c, 2.0, 32, 1e-6, &md);
    assert_true(lc_is_blocked(&md) && md.format_desc.blocking.inner_blks[0] == 16);
    lc_check_layout(&t, dnnl_nChw8c, 2.0, 34, 1e-6, &md);
    assert_true(lc_is_blocked(&md) && md.format_desc.blocking.inner_blks[0] == 8);
    lc_check_layout(&t, dnnl_nchw, 2.0, 33, 1e-6, &md);
    assert_true(dnnl_memory_desc_equal(&md, &t.out_plain));
    lc_teardown(&t);
}

/* ---- the model-file syntax ------------------------------------------------------------------------------ */

static void expect_error(const char *line, const char *want)
{
    static struct model m;
    struct error e = {0};
    char text[512];
    snprintf(text, sizeof text, "Input(shape=(8, 8, 3))\nConv2D(4, 3)\n%s\nFlatten()\nDense(2, activation='softmax')\n",
             line);
    assert_int_equal(model_parse(&m, text, "m.txt", &e), ERR_INPUT);
    if (!strstr(e.msg, want))
        fail_msg("%s: got '%s', want '%s'", line, e.msg, want);
}

static void test_model_file(void **state)
{
    (void)state;
    static struct model m;
    struct error e = {0};
    const char *text = "Input(shape=(8, 8, 3))\nConv2D(4, 3)\nBatchNormalization(momentum=0.9, epsilon=1e-5)\n"
                       "Activation('relu')\nFlatten()\nDense(6)\nBatchNormalization(-1, 0.5, 0.01, False)\n"
                       "Dense(2, activation='softmax')\n";
    assert_int_equal(model_parse(&m, text, "m.txt", &e), ERR_OK);
    const struct layer_spec *b = &m.layers[2];
    assert_ptr_equal(b->ops, &layer_batchnorm);
    assert_string_equal(b->name, "batch_normalization_1");
    assert_true(b->u.bn.momentum == 0.9 && b->u.bn.epsilon == 1e-5 && b->u.bn.center && b->u.bn.scale);
    assert_int_equal(b->n_params, 4);
    assert_true(m.layers[6].u.bn.momentum == 0.5 && m.layers[6].u.bn.epsilon == 0.01 && !m.layers[6].u.bn.center);
    assert_int_equal(m.layers[6].n_params, 3);
    /* Keras's counts: 4 * 4 + 3 * 6 weights in the two layers, 2 * 4 + 2 * 6 of them non-trainable. */
    assert_int_equal(model_moving_params(&m), 20);
    /* The canonical text reads back as the same model. */
    static struct model again;
    assert_int_equal(model_parse(&again, m.text, "again.txt", &e), ERR_OK);
    assert_string_equal(again.text, m.text);
    assert_true(again.layers[2].u.bn.epsilon == 1e-5);

    expect_error("BatchNormalization(axis=1)", "m.txt:3: batch_normalization_1: axis=1 is not the channel axis");
    expect_error("BatchNormalization(axis=2)", "m.txt:3:20: BatchNormalization: axis must be the channel axis");
    expect_error("BatchNormalization(momentum=1.5)", "m.txt:3:20: BatchNormalization: momentum must be in [0, 1]");
    expect_error("BatchNormalization(epsilon=0)", "m.txt:3:20: BatchNormalization: epsilon must be positive");
    expect_error("BatchNormalization(centre=False)", "m.txt:3:20");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_keras), cmocka_unit_test(test_gradient),
        cmocka_unit_test(test_keras_params),          cmocka_unit_test(test_two_ranks_are_one_batch),
        cmocka_unit_test(test_layouts),               cmocka_unit_test(test_model_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

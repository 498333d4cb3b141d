/* test_dropout.c: Dropout is the identity in inference, and in training an inverted dropout whose mask
 * depends only on (seed, step, global sample id, element): checked against the formula, for the kept
 * fraction, across batches that hold a sample at different positions, and across input layouts. */
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

static struct layer_spec dropout_spec(double rate, struct shape in, int index)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_dropout;
    snprintf(s.name, sizeof s.name, "dropout_%d", index);
    s.line = 5;
    s.index = index;
    s.u.dropout.rate = rate;
    s.in = in;
    return s;
}

static float *ones(size_t n)
{
    float *p = lc_floats(n);
    for (size_t i = 0; i < n; i++)
        p[i] = 1.0f;
    return p;
}

/* SPEC's rule, written out here: element e (channels-last) of sample `id` is kept iff
 * U(seed, step, (index << 48) ^ id, e) >= rate. */
static int kept(uint64_t seed, uint64_t step, int index, int64_t id, long e, double rate)
{
    return rng_unit_f(rng_hash4(seed, step, ((uint64_t)index << 48) ^ (uint64_t)id, (uint64_t)e)) >= rate;
}

static void test_inference_is_identity(void **state)
{
    (void)state;
    struct lc t;
    struct layer_spec s = dropout_spec(0.5, (struct shape){3, 4, 5, 6}, 3);
    lc_setup(&t, &s, 3, 1);
    float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size), *dy = lc_floats(t.out_size);
    float *dx = lc_floats(t.in_size);
    lc_fill(x, t.in_size, -2.0, 2.0, 2);
    lc_fill(dy, t.out_size, -2.0, 2.0, 3);
    lc_forward(&t, x, y, 1); /* a training step first: its mask must not leak into inference */
    lc_forward(&t, x, y, 0);
    assert_memory_equal(y, x, sizeof(float) * t.in_size);
    lc_backward(&t, x, dy, dx, 0);
    assert_memory_equal(dx, dy, sizeof(float) * t.in_size);
    free(x);
    free(y);
    free(dy);
    free(dx);
    lc_teardown(&t);
}

/* Forward of ones gives the mask itself: every value is 0 or 1/(1-rate), exactly where the rule says. */
static void check_mask_rule(struct shape in, int n, double rate)
{
    struct lc t;
    struct layer_spec s = dropout_spec(rate, in, 6);
    lc_setup(&t, &s, n, 77);
    float *x = ones(t.in_size), *y = lc_floats(t.out_size);
    lc_forward(&t, x, y, 1);
    long per = (long)shape_size(&in);
    for (int i = 0; i < n; i++)
        for (long e = 0; e < per; e++) {
            float v = y[(size_t)i * per + e];
            if (kept(t.seed, t.step, 6, t.ids[i], e, rate))
                assert_true(fabs(v - 1.0 / (1.0 - rate)) <= 1e-6 / (1.0 - rate));
            else
                assert_true(v == 0.0f);
        }
    free(x);
    free(y);
    lc_teardown(&t);
}

static void test_mask_values_follow_rule(void **state)
{
    (void)state;
    check_mask_rule((struct shape){3, 4, 5, 6}, 3, 0.3);
    check_mask_rule((struct shape){1, 1, 1, 50}, 4, 0.4);
    check_mask_rule((struct shape){1, 1, 1, 10}, 2, 0.0);
}

/* Over 8 * 32 * 32 * 16 = 131072 elements the kept fraction's standard deviation is about 0.0013: a bound
 * of 0.01 only fails when the mask is wrong. */
static void test_kept_fraction(void **state)
{
    (void)state;
    double rates[3] = {0.3, 0.5, 0.9};
    for (int r = 0; r < 3; r++) {
        struct lc t;
        struct layer_spec s = dropout_spec(rates[r], (struct shape){3, 32, 32, 16}, 2);
        lc_setup(&t, &s, 8, 5);
        float *x = ones(t.in_size), *y = lc_floats(t.out_size);
        lc_forward(&t, x, y, 1);
        size_t nkept = 0;
        double sum = 0;
        for (size_t i = 0; i < t.out_size; i++) {
            nkept += y[i] != 0.0f;
            sum += y[i];
        }
        double frac = (double)nkept / (double)t.out_size;
        assert_true(fabs(frac - (1.0 - rates[r])) < 0.01);
        /* inverted dropout keeps the mean: E[y] = x */
        assert_true(fabs(sum / (double)t.out_size - 1.0) < 0.01 / (1.0 - rates[r]));
        free(x);
        free(y);
        lc_teardown(&t);
    }
}

static double fraction_differing(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += a[i] != b[i];
    return (double)d / (double)n;
}

/* Same (seed, step, ids): same mask. Another step, seed or layer index: another mask (about 2 * 0.3 * 0.7
 * = 42% of the elements differ between two independent masks). */
static void test_mask_determinism(void **state)
{
    (void)state;
    struct shape in = {3, 8, 8, 4};
    struct lc t, u;
    struct layer_spec s = dropout_spec(0.3, in, 4), s2 = dropout_spec(0.3, in, 5);
    lc_setup(&t, &s, 4, 9);
    lc_setup(&u, &s2, 4, 9);
    float *x = ones(t.in_size), *y1 = lc_floats(t.out_size), *y2 = lc_floats(t.out_size);
    lc_forward(&t, x, y1, 1);
    lc_forward(&t, x, y2, 1);
    assert_memory_equal(y1, y2, sizeof(float) * t.out_size);

    t.step++;
    lc_forward(&t, x, y2, 1);
    assert_true(fraction_differing(y1, y2, t.out_size) > 0.3);
    t.step--;
    t.seed++;
    lc_forward(&t, x, y2, 1);
    assert_true(fraction_differing(y1, y2, t.out_size) > 0.3);
    t.seed--;
    lc_forward(&u, x, y2, 1); /* another Dropout layer of the same model */
    assert_true(fraction_differing(y1, y2, t.out_size) > 0.3);

    /* two samples of one batch get different masks */
    size_t per = (size_t)shape_size(&in);
    assert_true(fraction_differing(y1, y1 + per, per) > 0.3);
    free(x);
    free(y1);
    free(y2);
    lc_teardown(&t);
    lc_teardown(&u);
}

/* What makes N ranks agree with one: samples 12 and 13 are masked the same at positions 2, 3 of a batch
 * of 4 (one rank) and at positions 0, 1 of a batch of 2 (the second of two ranks). */
static void test_mask_independent_of_batch_position(void **state)
{
    (void)state;
    struct shape in = {3, 6, 5, 3};
    struct lc big, small;
    struct layer_spec s = dropout_spec(0.4, in, 7);
    lc_setup(&big, &s, 4, 31);
    lc_setup(&small, &s, 2, 31);
    for (int i = 0; i < 4; i++)
        big.ids[i] = 10 + i;
    small.ids[0] = 12;
    small.ids[1] = 13;
    float *xb = lc_floats(big.in_size), *yb = lc_floats(big.out_size), *ys = lc_floats(small.out_size);
    lc_fill(xb, big.in_size, -1.0, 1.0, 4);
    size_t per = (size_t)shape_size(&in);
    lc_forward(&big, xb, yb, 1);
    lc_forward(&small, xb + 2 * per, ys, 1);
    assert_memory_equal(yb + 2 * per, ys, sizeof(float) * 2 * per);
    assert_true(fraction_differing(yb, yb + 2 * per, per) > 0.3); /* the test can tell masks apart */
    free(xb);
    free(yb);
    free(ys);
    lc_teardown(&big);
    lc_teardown(&small);
}

/* Backward is exactly dy * mask, the mask read off a forward of ones. */
static void test_backward_is_dy_times_mask(void **state)
{
    (void)state;
    struct lc t;
    struct layer_spec s = dropout_spec(0.25, (struct shape){3, 5, 4, 3}, 2);
    lc_setup(&t, &s, 3, 12);
    float *x = ones(t.in_size), *mask = lc_floats(t.out_size), *dy = lc_floats(t.out_size);
    float *dx = lc_floats(t.in_size);
    lc_forward(&t, x, mask, 1);
    lc_fill(dy, t.out_size, -3.0, 3.0, 13);
    lc_backward(&t, x, dy, dx, 1);
    for (size_t i = 0; i < t.in_size; i++)
        assert_true(dx[i] == dy[i] * mask[i]);
    free(x);
    free(mask);
    free(dy);
    free(dx);
    lc_teardown(&t);
}

static void test_gradcheck(void **state)
{
    (void)state;
    struct layer_spec s = dropout_spec(0.3, (struct shape){3, 4, 4, 3}, 2);
    lc_check_gradient(&s, 2, 14, 1e-2, 200);
    s = dropout_spec(0.5, (struct shape){1, 1, 1, 40}, 2);
    lc_check_gradient(&s, 3, 15, 1e-2, 200);
}

/* The mask follows (h, w, c) element indices, not memory offsets: nChw16c (20 channels, padded) and
 * nchw inputs give exactly what plain nhwc gives. */
static void test_layout_independent(void **state)
{
    (void)state;
    struct lc t;
    struct layer_spec s = dropout_spec(0.3, (struct shape){3, 5, 3, 20}, 2);
    lc_setup(&t, &s, 2, 16);
    lc_check_layout(&t, dnnl_nChw16c, 1.0, 17, 0, NULL);
    lc_check_layout(&t, dnnl_nchw, 1.0, 17, 0, NULL);
    lc_teardown(&t);
}

/* ---- parsing and text ---- */

static void test_parse(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e = {0};
    char text[128];

    lc_args_init(&a, "Dropout", 8); /* Dropout(0.3) */
    lc_arg(&a, NULL, ARG_FLOAT, 9)->num = 0.3;
    assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_OK);
    assert_true(s.u.dropout.rate == 0.3);
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "Dropout(rate=0.3)");

    lc_args_init(&a, "Dropout", 8); /* Dropout(rate=0.125) */
    lc_arg(&a, "rate", ARG_FLOAT, 9)->num = 0.125;
    assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_OK);
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "Dropout(rate=0.125)");

    lc_args_init(&a, "Dropout", 8); /* Dropout(0) */
    lc_arg(&a, NULL, ARG_INT, 9)->num = 0;
    assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_OK);
    assert_true(s.u.dropout.rate == 0.0);

    double bad[3] = {1.0, -0.1, 1.5};
    for (int i = 0; i < 3; i++) {
        lc_args_init(&a, "Dropout", 8);
        lc_arg(&a, "rate", ARG_FLOAT, 9)->num = bad[i];
        assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_INPUT);
        assert_non_null(strstr(e.msg, "m.txt:8:9:"));
        assert_non_null(strstr(e.msg, "rate must be in [0, 1)"));
    }

    lc_args_init(&a, "Dropout", 8); /* Dropout() */
    assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_INPUT);
    lc_args_init(&a, "Dropout", 8); /* Dropout(0.3, 0.4) */
    lc_arg(&a, NULL, ARG_FLOAT, 9)->num = 0.3;
    lc_arg(&a, NULL, ARG_FLOAT, 14)->num = 0.4;
    assert_int_equal(lc_parse(&layer_dropout, &a, &s, &e), ERR_INPUT);
}

static void test_shapes(void **state)
{
    (void)state;
    struct error e = {0};
    struct layer_spec s = dropout_spec(0.3, (struct shape){3, 7, 6, 5}, 2);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.rank, 3);
    assert_int_equal(s.out.h, 7);
    assert_int_equal(s.out.w, 6);
    assert_int_equal(s.out.c, 5);
    assert_int_equal(s.n_params, 0);
    s = dropout_spec(0.3, (struct shape){1, 1, 1, 500}, 2);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.rank, 1);
    assert_int_equal(s.out.c, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_is_identity),
        cmocka_unit_test(test_mask_values_follow_rule),
        cmocka_unit_test(test_kept_fraction),
        cmocka_unit_test(test_mask_determinism),
        cmocka_unit_test(test_mask_independent_of_batch_position),
        cmocka_unit_test(test_backward_is_dy_times_mask),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_layout_independent),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

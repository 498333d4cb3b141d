/* test_loss.c: fused softmax + cross-entropy against a naive double-precision reference, finite
 * differences, extreme logits, accuracy counting and ties. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dnn.h"
#include "loss.h"

#define B 4
#define C 5

/* oneDNN's jit log-softmax uses polynomial exp/log: a few 1e-6 from exact, far below what training sees. */
#define TOL 1e-5

static struct dnn dnn;

static int setup(void **state)
{
    (void)state;
    struct error err = {0};
    return dnn_init(&dnn, &err) == ERR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    dnn_release(&dnn);
    return 0;
}

/* Reproducible logits in [-4, 4) from a small LCG (no dependency on the code under test). */
static void fill_logits(float *x, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) * (1.0 / 16777216.0) * 8.0 - 4.0);
    }
}

/* Naive reference for one row x (c,): probs p (c,) and the loss -log p[label], in double. */
static double ref_row(const float *x, int c, int label, double *p)
{
    double max = x[0], sum = 0.0;
    for (int j = 1; j < c; j++)
        max = fmax(max, x[j]);
    for (int j = 0; j < c; j++)
        sum += exp((double)x[j] - max);
    for (int j = 0; j < c; j++)
        p[j] = exp((double)x[j] - max) / sum;
    return -(((double)x[label] - max) - log(sum));
}

static void run(struct loss *l, const float *x, const int32_t *y, float scale, float *probs, float *dx,
                double *loss_sum, long *correct)
{
    struct error err = {0};
    int rc = loss_softmax_xent(l, x, y, scale, probs, dx, loss_sum, correct, &dnn, &err);
    if (rc != ERR_OK)
        fail_msg("loss_softmax_xent: %s", err.msg);
}

static void test_matches_reference(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    float x[B * C], probs[B * C], dx[B * C];
    const int32_t y[B] = {0, 3, 4, 2};
    const float scale = 1.0f / B;
    double loss_sum = 0.5; /* accumulates onto what is there */
    long correct = 7;
    fill_logits(x, B * C, 12345);
    assert_int_equal(loss_init(&l, B, C, &dnn, &err), ERR_OK);
    run(&l, x, y, scale, probs, dx, &loss_sum, &correct);

    double want_sum = 0.5, p[C];
    long want_correct = 7;
    for (int i = 0; i < B; i++) {
        want_sum += ref_row(x + i * C, C, y[i], p);
        int best = 0;
        for (int j = 0; j < C; j++) {
            assert_true(fabs(probs[i * C + j] - p[j]) < TOL);
            double g = (p[j] - (j == y[i])) * scale;
            assert_true(fabs(dx[i * C + j] - g) < TOL);
            if (x[i * C + j] > x[i * C + best])
                best = j;
        }
        want_correct += best == y[i];
    }
    assert_true(fabs(loss_sum - want_sum) < TOL * want_sum);
    assert_int_equal(correct, want_correct);
    loss_release(&l);
}

/* Mean loss of the batch, through the code under test. */
static double mean_loss(struct loss *l, const float *x, const int32_t *y)
{
    double sum = 0.0;
    long correct = 0;
    run(l, x, y, 1.0f, NULL, NULL, &sum, &correct);
    return sum / B;
}

/* dlogits with scale 1/B is the gradient of the mean loss: compare with central differences. */
static void test_gradient_finite_differences(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    float x[B * C], dx[B * C];
    const int32_t y[B] = {1, 1, 0, 4};
    const float h = 1e-2f;
    double sum = 0.0;
    long correct = 0;
    fill_logits(x, B * C, 777);
    assert_int_equal(loss_init(&l, B, C, &dnn, &err), ERR_OK);
    run(&l, x, y, 1.0f / B, NULL, dx, &sum, &correct);
    for (int k = 0; k < B * C; k++) {
        float keep = x[k];
        x[k] = keep + h;
        double up = mean_loss(&l, x, y);
        x[k] = keep - h;
        double down = mean_loss(&l, x, y);
        x[k] = keep;
        double fd = (up - down) / (2.0 * h);
        if (fabs(fd - dx[k]) > 1e-3)
            fail_msg("logit %d: analytic %.6g, finite differences %.6g", k, dx[k], fd);
    }
    loss_release(&l);
}

/* Logits of +-1e4 overflow a naive exp: the loss must stay finite and exact. */
static void test_extreme_logits(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    const float x[2 * 3] = {1e4f, -1e4f, 0.0f, 1e4f, 1e4f, 1e4f};
    const int32_t y[2] = {1, 2};
    float probs[6], dx[6];
    double sum = 0.0;
    long correct = 0;
    assert_int_equal(loss_init(&l, 2, 3, &dnn, &err), ERR_OK);
    run(&l, x, y, 1.0f, probs, dx, &sum, &correct);
    /* Row 0: -log p[1] = 1e4 - (-1e4) + log(1 + e^-1e4 + e^-2e4) = 2e4. Row 1: uniform, log 3. */
    assert_true(isfinite(sum));
    assert_true(fabs(sum - (2e4 + log(3.0))) < 1e-2);
    for (int k = 0; k < 6; k++) {
        assert_true(isfinite(probs[k]));
        assert_true(isfinite(dx[k]));
    }
    assert_true(fabs(probs[0] - 1.0) < TOL && probs[1] == 0.0f && probs[2] == 0.0f);
    assert_true(fabs(dx[1] + 1.0) < TOL);
    for (int j = 0; j < 3; j++)
        assert_true(fabs(probs[3 + j] - 1.0 / 3.0) < TOL);
    /* Row 1 is a three-way tie: the lowest index (0) is the prediction, label 2 misses. */
    assert_int_equal(correct, 0);
    loss_release(&l);
}

/* argmax ties go to the lowest index, as numpy's (and so Keras's accuracy). */
static void test_correct_and_ties(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    const float x[B * 3] = {
        2, 2, 1,  /* tie between 0 and 1: predicts 0 */
        2, 2, 1,
        0, 1, 3,  /* predicts 2 */
        -1, -1, -1,
    };
    const int32_t hit[B] = {0, 0, 2, 0};
    const int32_t miss[B] = {1, 1, 0, 2};
    const int32_t mixed[B] = {0, 1, 2, 1};
    double sum = 0.0;
    long correct = 0;
    assert_int_equal(loss_init(&l, B, 3, &dnn, &err), ERR_OK);
    run(&l, x, hit, 1.0f, NULL, NULL, &sum, &correct);
    assert_int_equal(correct, 4);
    correct = 0;
    run(&l, x, miss, 1.0f, NULL, NULL, &sum, &correct);
    assert_int_equal(correct, 0);
    correct = 0;
    run(&l, x, mixed, 1.0f, NULL, NULL, &sum, &correct);
    assert_int_equal(correct, 2);
    loss_release(&l);
}

/* Without labels only probabilities are produced (predict): the rest is left alone. */
static void test_probs_only(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    float x[B * C], probs[B * C], dx[B * C];
    double sum = 1.25, p[C];
    long correct = 3;
    fill_logits(x, B * C, 99);
    for (int k = 0; k < B * C; k++)
        dx[k] = 42.0f;
    assert_int_equal(loss_init(&l, B, C, &dnn, &err), ERR_OK);
    run(&l, x, NULL, 1.0f, probs, dx, &sum, &correct);
    assert_true(sum == 1.25);
    assert_int_equal(correct, 3);
    for (int i = 0; i < B; i++) {
        ref_row(x + i * C, C, 0, p);
        for (int j = 0; j < C; j++) {
            assert_true(fabs(probs[i * C + j] - p[j]) < TOL);
            assert_true(dx[i * C + j] == 42.0f);
        }
    }
    loss_release(&l);
}

/* The logits pointer is re-wrapped on every call: a second buffer gives its own answer. */
static void test_new_buffer_each_call(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    float a[2 * 2] = {0, 0, 0, 0}, b[2 * 2] = {0, 5, 0, 5};
    const int32_t y[2] = {1, 1};
    double sum_a = 0.0, sum_b = 0.0;
    long correct = 0;
    assert_int_equal(loss_init(&l, 2, 2, &dnn, &err), ERR_OK);
    run(&l, a, y, 1.0f, NULL, NULL, &sum_a, &correct);
    run(&l, b, y, 1.0f, NULL, NULL, &sum_b, &correct);
    assert_true(fabs(sum_a - 2.0 * log(2.0)) < TOL);
    assert_true(fabs(sum_b - 2.0 * log(1.0 + exp(-5.0))) < TOL);
    loss_release(&l);
}

static void test_bad_label(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    const float x[2 * 2] = {0, 1, 1, 0};
    const int32_t y[2] = {0, 2};
    double sum = 0.0;
    long correct = 0;
    assert_int_equal(loss_init(&l, 2, 2, &dnn, &err), ERR_OK);
    assert_int_equal(loss_softmax_xent(&l, x, y, 1.0f, NULL, NULL, &sum, &correct, &dnn, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "label 2"));
    loss_release(&l);
}

/* Keras's CategoricalCrossentropy(label_smoothing=s): y = onehot*(1-s) + s/C, loss -sum y log p, gradient
 * (p - y) * scale, training only. By hand with s = 0.3 and C = 3:
 *   logits (0, 0, 0), label 0: p = 1/3 each, y = (0.8, 0.1, 0.1): loss ln 3, gradient (1/3-0.8, 1/3-0.1, 1/3-0.1)
 *   logits (0, ln 2, 0), label 1: p = (0.25, 0.5, 0.25), y = (0.1, 0.8, 0.1):
 *     loss 0.2 ln 4 + 0.8 ln 2 = 0.831776617, gradient (0.15, -0.3, 0.15). */
static void test_label_smoothing_by_hand(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    const float x[6] = {0.0f, 0.0f, 0.0f, 0.0f, (float)log(2.0), 0.0f};
    const int32_t y[2] = {0, 1};
    float dx[6];
    double sum = 0;
    long correct = 0;
    assert_int_equal(loss_init(&l, 2, 3, &dnn, &err), ERR_OK);
    l.smoothing = 0.3f;
    run(&l, x, y, 1.0f, NULL, dx, &sum, &correct);
    assert_true(fabs(sum - (log(3.0) + 0.831776617)) < TOL);
    const double want[6] = {1.0 / 3 - 0.8, 1.0 / 3 - 0.1, 1.0 / 3 - 0.1, 0.15, -0.3, 0.15};
    for (int k = 0; k < 6; k++)
        if (fabs(dx[k] - want[k]) > TOL)
            fail_msg("dlogits[%d] %.7g, want %.7g", k, dx[k], want[k]);
    /* Without dlogits (evaluation) the loss is the plain one: ln 3 + ln 2. */
    sum = 0;
    run(&l, x, y, 1.0f, NULL, NULL, &sum, &correct);
    assert_true(fabs(sum - (log(3.0) + log(2.0))) < TOL);
    loss_release(&l);
}

/* The smoothed mean loss of the batch (a dlogits buffer makes it the training loss). */
static double mean_smoothed_loss(struct loss *l, const float *x, const int32_t *y)
{
    float scratch[B * C];
    double sum = 0.0;
    long correct = 0;
    run(l, x, y, 1.0f, NULL, scratch, &sum, &correct);
    return sum / B;
}

static void test_label_smoothing_finite_differences(void **state)
{
    (void)state;
    struct loss l;
    struct error err = {0};
    float x[B * C], dx[B * C];
    const int32_t y[B] = {2, 0, 4, 4};
    const float h = 1e-2f;
    double sum = 0.0, p[C];
    long correct = 0;
    fill_logits(x, B * C, 4242);
    assert_int_equal(loss_init(&l, B, C, &dnn, &err), ERR_OK);
    l.smoothing = 0.1f;
    run(&l, x, y, 1.0f / B, NULL, dx, &sum, &correct);
    /* The reference: -sum_j y_j log p_j per row, in double. */
    double want = 0.0;
    for (int i = 0; i < B; i++) {
        ref_row(x + i * C, C, y[i], p);
        for (int j = 0; j < C; j++)
            want -= ((j == y[i] ? 0.9 : 0.0) + 0.1 / C) * log(p[j]);
    }
    assert_true(fabs(sum - want) < TOL * want);
    for (int k = 0; k < B * C; k++) {
        float keep = x[k];
        x[k] = keep + h;
        double up = mean_smoothed_loss(&l, x, y);
        x[k] = keep - h;
        double down = mean_smoothed_loss(&l, x, y);
        x[k] = keep;
        double fd = (up - down) / (2.0 * h);
        if (fabs(fd - dx[k]) > 1e-3)
            fail_msg("logit %d: analytic %.6g, finite differences %.6g", k, dx[k], fd);
    }
    loss_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_gradient_finite_differences),
        cmocka_unit_test(test_extreme_logits),
        cmocka_unit_test(test_correct_and_ties),
        cmocka_unit_test(test_probs_only),
        cmocka_unit_test(test_new_buffer_each_call),
        cmocka_unit_test(test_bad_label),
        cmocka_unit_test(test_label_smoothing_by_hand),
        cmocka_unit_test(test_label_smoothing_finite_differences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

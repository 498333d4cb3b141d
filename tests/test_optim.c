/* test_optim.c: SGD, RMSprop and Adam against the Keras 2 update rules worked out in double in this file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

#define N 3
#define STEPS 3

/* The same three gradients for every optimizer; one element is 0 at step 3 to exercise eps. */
static const double p0[N] = {1.0, -2.0, 0.5};
static const double grads[STEPS][N] = {
    {0.5, -1.0, 2.0},
    {0.1, 0.2, -0.3},
    {-1.5, 0.0, 0.25},
};

/* |got - want| within a float's relative precision over a few operations. */
static void assert_close(double got, double want, double rel)
{
    double tol = rel * fmax(1.0, fabs(want));
    if (fabs(got - want) > tol)
        fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

/* Runs STEPS updates of the optimizer `c` and compares the parameters after each step with want[step]. */
static void run_and_compare(const struct optim_conf *c, double want[STEPS][N])
{
    struct optim o;
    struct error err = {0};
    float p[N], g[N];
    assert_int_equal(optim_init(&o, c, N, &err), ERR_OK);
    for (int i = 0; i < N; i++)
        p[i] = (float)p0[i];
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)grads[s][i];
        optim_step(&o, p, g);
        assert_int_equal(o.iterations, s + 1);
        for (int i = 0; i < N; i++)
            assert_close(p[i], want[s][i], 2e-6);
    }
    optim_release(&o);
}

static void test_defaults_match_keras(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    assert_int_equal(c.kind, OPTIM_SGD);
    assert_true(c.lr == 0.01 && c.momentum == 0.0 && c.nesterov == 0);
    optim_defaults(&c, OPTIM_RMSPROP);
    assert_int_equal(c.kind, OPTIM_RMSPROP);
    assert_true(c.lr == 0.001 && c.rho == 0.9 && c.eps == 1e-7);
    optim_defaults(&c, OPTIM_ADAM);
    assert_int_equal(c.kind, OPTIM_ADAM);
    assert_true(c.lr == 0.001 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-7);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(optim_kind_from_name("sgd"), OPTIM_SGD);
    assert_int_equal(optim_kind_from_name("rmsprop"), OPTIM_RMSPROP);
    assert_int_equal(optim_kind_from_name("adam"), OPTIM_ADAM);
    /* Keras accepts its class names as well. */
    assert_int_equal(optim_kind_from_name("SGD"), OPTIM_SGD);
    assert_int_equal(optim_kind_from_name("RMSprop"), OPTIM_RMSPROP);
    assert_int_equal(optim_kind_from_name("Adam"), OPTIM_ADAM);
    assert_int_equal(optim_kind_from_name("adagrad"), -1);
    assert_int_equal(optim_kind_from_name("adamw"), OPTIM_ADAMW);
    assert_int_equal(optim_kind_from_name("AdamW"), OPTIM_ADAMW);
    assert_int_equal(optim_kind_from_name("LARS"), OPTIM_LARS);
    assert_int_equal(optim_kind_from_name("adamx"), -1);
    assert_int_equal(optim_kind_from_name("ada"), -1);
    assert_int_equal(optim_kind_from_name(""), -1);
    assert_int_equal(optim_kind_from_name(NULL), -1);
    assert_string_equal(optim_kind_name(OPTIM_SGD), "sgd");
    assert_string_equal(optim_kind_name(OPTIM_RMSPROP), "rmsprop");
    assert_string_equal(optim_kind_name(OPTIM_ADAM), "adam");
}

/* Plain SGD: p -= 0.01 g. By hand, element by element:
 *   step 1: 1 - 0.005 = 0.995;  -2 + 0.01 = -1.99;   0.5 - 0.02 = 0.48
 *   step 2: 0.995 - 0.001 = 0.994;  -1.99 - 0.002 = -1.992;  0.48 + 0.003 = 0.483
 *   step 3: 0.994 + 0.015 = 1.009;  -1.992;  0.483 - 0.0025 = 0.4805 */
static void test_sgd_plain(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    double want[STEPS][N] = {
        {0.995, -1.99, 0.48},
        {0.994, -1.992, 0.483},
        {1.009, -1.992, 0.4805},
    };
    run_and_compare(&c, want);
}

/* SGD with momentum 0.9, lr 0.01: v = 0.9 v - 0.01 g; p += v. By hand:
 *   step 1: v = (-0.005, 0.01, -0.02);  p = (0.995, -1.99, 0.48)
 *   step 2: v = (-0.0045 - 0.001, 0.009 - 0.002, -0.018 + 0.003) = (-0.0055, 0.007, -0.015)
 *           p = (0.9895, -1.983, 0.465)
 *   step 3: v = (-0.00495 + 0.015, 0.0063, -0.0135 - 0.0025) = (0.01005, 0.0063, -0.016)
 *           p = (0.99955, -1.9767, 0.449) */
static void test_sgd_momentum(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    c.momentum = 0.9;
    double want[STEPS][N] = {
        {0.995, -1.99, 0.48},
        {0.9895, -1.983, 0.465},
        {0.99955, -1.9767, 0.449},
    };
    run_and_compare(&c, want);
}

/* Nesterov, momentum 0.9, lr 0.01 (Keras 2): v as above; p += 0.9 v - 0.01 g. By hand:
 *   step 1: v = (-0.005, 0.01, -0.02);  p += (-0.0045 - 0.005, 0.009 + 0.01, -0.018 - 0.02)
 *           p = (0.9905, -1.981, 0.462)
 *   step 2: v = (-0.0055, 0.007, -0.015);  p += (-0.00495 - 0.001, 0.0063 - 0.002, -0.0135 + 0.003)
 *           p = (0.98455, -1.9767, 0.4515)
 *   step 3: v = (0.01005, 0.0063, -0.016);  p += (0.009045 + 0.015, 0.00567, -0.0144 - 0.0025)
 *           p = (1.008595, -1.97103, 0.4346) */
static void test_sgd_nesterov(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    c.momentum = 0.9;
    c.nesterov = 1;
    double want[STEPS][N] = {
        {0.9905, -1.981, 0.462},
        {0.98455, -1.9767, 0.4515},
        {1.008595, -1.97103, 0.4346},
    };
    run_and_compare(&c, want);
}

/* RMSprop (Keras 2): a = 0.9 a + 0.1 g^2; p -= 0.001 g / (sqrt(a) + 1e-7), written out in double. */
static void test_rmsprop(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_RMSPROP);
    double want[STEPS][N], a[N] = {0, 0, 0}, p[N] = {p0[0], p0[1], p0[2]};
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < N; i++) {
            double g = grads[s][i];
            a[i] = 0.9 * a[i] + 0.1 * g * g;
            p[i] = p[i] - 0.001 * g / (sqrt(a[i]) + 1e-7);
            want[s][i] = p[i];
        }
    /* By hand for step 1: a = 0.1 g^2, so the step is 0.001 sign(g) / sqrt(0.1) = 0.00316227... */
    assert_close(want[0][0], 1.0 - 0.001 / sqrt(0.1), 1e-6);
    assert_close(want[0][1], -2.0 + 0.001 / sqrt(0.1), 1e-6);
    run_and_compare(&c, want);
}

/* Adam (Keras 2): t = step; lr_t = 0.001 sqrt(1 - 0.999^t) / (1 - 0.9^t);
 * m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2; p -= lr_t m / (sqrt(v) + 1e-7), written out in double. */
static void test_adam(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_ADAM);
    double want[STEPS][N], m[N] = {0, 0, 0}, v[N] = {0, 0, 0}, p[N] = {p0[0], p0[1], p0[2]};
    for (int s = 0; s < STEPS; s++) {
        double t = s + 1;
        double lr_t = 0.001 * sqrt(1.0 - pow(0.999, t)) / (1.0 - pow(0.9, t));
        for (int i = 0; i < N; i++) {
            double g = grads[s][i];
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            p[i] = p[i] - lr_t * m[i] / (sqrt(v[i]) + 1e-7);
            want[s][i] = p[i];
        }
    }
    /* By hand for step 1: the bias-corrected step is lr * sign(g), eps aside. */
    assert_close(want[0][0], 1.0 - 0.001, 1e-6);
    assert_close(want[0][1], -2.0 + 0.001, 1e-6);
    assert_close(want[0][2], 0.5 - 0.001, 1e-6);
    run_and_compare(&c, want);
}

/* Tiny gradients make eps matter: Keras 2 adds it outside the square root. One step from p = 0. */
static void test_eps_placement(void **state)
{
    (void)state;
    struct optim o;
    struct optim_conf c;
    struct error err = {0};
    float p = 0.0f, g = 1e-5f;
    /* RMSprop: a = 0.1 * 1e-10 = 1e-11; step = 0.001 * 1e-5 / (sqrt(1e-11) + 1e-7) */
    optim_defaults(&c, OPTIM_RMSPROP);
    assert_int_equal(optim_init(&o, &c, 1, &err), ERR_OK);
    optim_step(&o, &p, &g);
    double want = -0.001 * 1e-5 / (sqrt(1e-11) + 1e-7);
    assert_true(fabs(p - want) < 1e-4 * fabs(want));
    optim_release(&o);
    /* Adam: m = 1e-6, v = 1e-13, lr_t = 0.001 sqrt(0.001) / 0.1; step = lr_t m / (sqrt(1e-13) + 1e-7) */
    p = 0.0f;
    optim_defaults(&c, OPTIM_ADAM);
    assert_int_equal(optim_init(&o, &c, 1, &err), ERR_OK);
    optim_step(&o, &p, &g);
    want = -0.001 * sqrt(0.001) / 0.1 * 1e-6 / (sqrt(1e-13) + 1e-7);
    assert_true(fabs(p - want) < 1e-4 * fabs(want));
    optim_release(&o);
}

static void test_slots(void **state)
{
    (void)state;
    struct optim o;
    struct optim_conf c;
    struct error err = {0};
    const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_RMSPROP, OPTIM_ADAM};
    const int want_slots[] = {1, 1, 2};
    for (int k = 0; k < 3; k++) {
        optim_defaults(&c, kinds[k]);
        assert_int_equal(optim_init(&o, &c, 5, &err), ERR_OK);
        assert_int_equal(o.n, 5);
        assert_int_equal(o.n_slots, want_slots[k]);
        assert_int_equal(o.iterations, 0);
        for (int i = 0; i < o.n_slots * 5; i++)
            assert_true(o.slots[i] == 0.0f);
        optim_release(&o);
        assert_null(o.slots);
    }
    /* Adam's slots hold m then v: after one step with g = 2, m = 0.2 and v = 0.004. */
    optim_defaults(&c, OPTIM_ADAM);
    assert_int_equal(optim_init(&o, &c, 1, &err), ERR_OK);
    float p = 0.0f, g = 2.0f;
    optim_step(&o, &p, &g);
    assert_close(o.slots[0], 0.2, 1e-6);
    assert_close(o.slots[1], 0.004, 1e-6);
    optim_release(&o);
}

static void test_bad_conf(void **state)
{
    (void)state;
    struct optim o;
    struct optim_conf c;
    struct error err = {0};
    optim_defaults(&c, OPTIM_SGD);
    c.lr = -0.1;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    assert_non_null(strstr(err.msg, "learning rate"));
    optim_defaults(&c, OPTIM_SGD);
    c.lr = NAN;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_ADAM);
    c.beta2 = 1.0;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_RMSPROP);
    c.rho = 1.5;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
}

/* A vector long enough to take the parallel path: every element must get the same update as a lone one. */
static void test_long_vector(void **state)
{
    (void)state;
    enum { BIG = 200003 };
    struct optim o;
    struct optim_conf c;
    struct error err = {0};
    float *p = malloc(BIG * sizeof *p), *g = malloc(BIG * sizeof *g);
    assert_non_null(p);
    assert_non_null(g);
    for (int i = 0; i < BIG; i++) {
        p[i] = 1.0f;
        g[i] = (i % 2) ? 0.5f : -0.25f;
    }
    optim_defaults(&c, OPTIM_ADAM);
    assert_int_equal(optim_init(&o, &c, BIG, &err), ERR_OK);
    optim_step(&o, p, g);
    /* Step 1 of Adam moves every element by lr against the sign of its gradient. */
    for (int i = 0; i < BIG; i++)
        assert_close(p[i], (i % 2) ? 0.999 : 1.001, 1e-6);
    optim_release(&o);
    free(p);
    free(g);
}

/* What the ranks of a job do between them (exchange.c): each updates its own shard [lo, hi) with its own
 * optimizer, the gradients of that shard given from index lo. The parameters must come out bit for bit as
 * one full update gives them, every optimizer, over several steps (Adam's bias correction counts them). */
static void test_step_range_shards(void **state)
{
    (void)state;
    enum { BIG = 100003, RANKS = 3, STEPS_R = 4 };
    static const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_RMSPROP, OPTIM_ADAM};
    for (size_t k = 0; k < 3; k++) {
        struct optim_conf c;
        struct error err = {0};
        struct optim whole, part[RANKS];
        optim_defaults(&c, kinds[k]);
        c.momentum = 0.5; /* SGD: a slot to keep per shard */
        float *p = malloc(BIG * sizeof *p), *q = malloc(BIG * sizeof *q), *g = malloc(BIG * sizeof *g);
        assert_true(p && q && g);
        assert_int_equal(optim_init(&whole, &c, BIG, &err), ERR_OK);
        for (int r = 0; r < RANKS; r++)
            assert_int_equal(optim_init(&part[r], &c, BIG, &err), ERR_OK);
        for (int i = 0; i < BIG; i++)
            p[i] = q[i] = 0.001f * (float)(i % 1000) - 0.5f;
        for (int step = 0; step < STEPS_R; step++) {
            for (int i = 0; i < BIG; i++)
                g[i] = sinf(0.37f * (float)i + (float)step);
            optim_step(&whole, p, g);
            for (int r = 0; r < RANKS; r++) {
                size_t lo = (size_t)BIG * r / RANKS, hi = (size_t)BIG * (r + 1) / RANKS;
                optim_step_range(&part[r], q, g + lo, lo, hi);
            }
        }
        if (memcmp(p, q, BIG * sizeof *p) != 0)
            fail_msg("%s: the shards' update differs from the whole one", optim_kind_name(kinds[k]));
        for (int r = 0; r < RANKS; r++) {
            assert_int_equal(part[r].iterations, STEPS_R);
            optim_release(&part[r]);
        }
        optim_release(&whole);
        free(p);
        free(q);
        free(g);
    }
}

/* The divergence check: any NaN or infinity anywhere (both ends, the middle, past the threshold where it
 * runs threaded), and nothing else: the largest floats, subnormals and -0 are finite. */
/* Moving averages (BatchNormalization's) inside the slab: their elements get p -= (p - g) * (1 - momentum) and
 * keep zero slots; the elements around them get the optimizer's update exactly as without them, also when a
 * shard boundary cuts a range; Adam counts one step per update however the ranges split it. */
static void test_moving_averages(void **state)
{
    (void)state;
    enum { M = 40 };
    struct optim_conf c;
    optim_defaults(&c, OPTIM_ADAM);
    struct optim with, without;
    struct error err = {0};
    float p[M], q[M], g[M];
    assert_int_equal(optim_init(&with, &c, M, &err), ERR_OK);
    assert_int_equal(optim_init(&without, &c, M, &err), ERR_OK);
    /* [5, 9) and [9, 13) are one layer's moving_mean and moving_variance (one range), [30, 34) another's. */
    assert_int_equal(optim_add_moving(&with, 5, 9, 0.9, &err), ERR_OK);
    assert_int_equal(optim_add_moving(&with, 9, 13, 0.9, &err), ERR_OK);
    assert_int_equal(optim_add_moving(&with, 30, 34, 0.5, &err), ERR_OK);
    assert_int_equal(with.n_moving, 2);
    assert_int_equal(optim_add_moving(&with, 20, 22, 0.5, &err), ERR_INTERNAL); /* out of order */
    for (int i = 0; i < M; i++)
        p[i] = q[i] = (float)(0.1 * i - 1.0);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < M; i++)
            g[i] = (float)(0.3 * sin(i + 7.0 * step));
        float before[M];
        memcpy(before, p, sizeof p);
        /* Two shards, the boundary inside the first range. */
        optim_step_range(&with, p, g, 0, 7);
        with.iterations--; /* one update in two shards (two ranks' in the exchange, each counting it once) */
        optim_step_range(&with, p, g + 7, 7, M);
        optim_step(&without, q, g);
        for (int i = 0; i < M; i++) {
            int moving = (i >= 5 && i < 13) || (i >= 30 && i < 34);
            if (moving) {
                double m = i < 13 ? 0.9 : 0.5;
                assert_close(p[i], before[i] - (before[i] - g[i]) * (1.0 - m), 1e-6);
                assert_true(with.slots[i] == 0.0f && with.slots[M + i] == 0.0f);
            } else if (p[i] != q[i]) {
                fail_msg("step %d: element %d %.9g, without moving averages %.9g", step, i, p[i], q[i]);
            }
        }
    }
    optim_release(&with);
    optim_release(&without);
}

static void test_all_finite(void **state)
{
    (void)state;
    enum { BIG = 300007 };
    float *x = malloc(BIG * sizeof *x);
    assert_non_null(x);
    static const size_t sizes[] = {1, 7, 64, 1001, BIG};
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        for (size_t i = 0; i < n; i++)
            x[i] = (i % 4 == 0) ? 3.4028235e38f : (i % 4 == 1) ? -1e-45f : (i % 4 == 2) ? -0.0f : 1.0f;
        assert_true(optim_all_finite(x, n));
        const size_t at[] = {0, n / 2, n - 1};
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++) {
                float keep = x[at[a]];
                x[at[a]] = bad[b];
                if (optim_all_finite(x, n))
                    fail_msg("n %zu: %g at %zu not seen", n, (double)bad[b], at[a]);
                x[at[a]] = keep;
            }
    }
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_keras),
        cmocka_unit_test(test_step_range_shards),
        cmocka_unit_test(test_all_finite),
        cmocka_unit_test(test_moving_averages),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_rmsprop),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_eps_placement),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_long_vector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

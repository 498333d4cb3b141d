/* test_optim_recipes.c: AdamW, LARS, clipping, decoupled weight decay and the kernel regularizers against values
 * worked out by hand (double) in this file, and the sharded update against the whole one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

static void assert_close(double got, double want, double rel)
{
    double tol = rel * fmax(1.0, fabs(want));
    if (fabs(got - want) > tol)
        fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

static void init(struct optim *o, const struct optim_conf *c, size_t n)
{
    struct error err = {0};
    if (optim_init(o, c, n, &err) != ERR_OK)
        fail_msg("optim_init: %s", err.msg);
}

static void add_tensor(struct optim *o, size_t lo, size_t hi, double l1, double l2, int adapt)
{
    struct error err = {0};
    if (optim_add_tensor(o, lo, hi, l1, l2, adapt, &err) != ERR_OK)
        fail_msg("optim_add_tensor: %s", err.msg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_ADAMW);
    /* Keras 3 AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7). */
    assert_true(c.lr == 0.001 && c.weight_decay == 0.004 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-7);
    optim_defaults(&c, OPTIM_LARS);
    assert_true(c.lr == 0.01 && c.momentum == 0.9 && c.weight_decay == 0 && c.lars_eta == 0.001);
    const enum optim_kind others[] = {OPTIM_SGD, OPTIM_RMSPROP, OPTIM_ADAM};
    for (int k = 0; k < 3; k++) {
        optim_defaults(&c, others[k]);
        assert_true(c.weight_decay == 0 && c.clipnorm == 0 && c.global_clipnorm == 0);
    }
    struct optim o;
    optim_defaults(&c, OPTIM_ADAMW);
    init(&o, &c, 4);
    assert_int_equal(o.n_slots, 2);
    optim_release(&o);
    optim_defaults(&c, OPTIM_LARS);
    init(&o, &c, 4);
    assert_int_equal(o.n_slots, 1);
    optim_release(&o);
}

/* AdamW, Keras 3: p -= p*wd*lr; m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= m*alpha/(sqrt(v)+eps),
 * alpha = lr*sqrt(1-b2^t)/(1-b1^t). Step 1 of p = 1, g = 0.5 by hand:
 *   decay 1 - 0.004*0.001 = 0.999996; m = 0.05; v = 0.00025; alpha = 0.001*sqrt(0.001)/0.1 = 3.16227766e-4;
 *   0.05 * 3.16227766e-4 / (0.0158113883 + 1e-7) = 9.99993675e-4; p = 0.998996006. */
static void test_adamw(void **state)
{
    (void)state;
    enum { N = 3, STEPS = 3 };
    static const double p0[N] = {1.0, -2.0, 0.5};
    static const double g[STEPS][N] = {{0.5, -1.0, 2.0}, {0.1, 0.2, -0.3}, {-1.5, 0.0, 0.25}};
    struct optim_conf c;
    optim_defaults(&c, OPTIM_ADAMW);
    struct optim o;
    init(&o, &c, N);
    float p[N], gf[N];
    double want[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++)
        p[i] = (float)(want[i] = p0[i]);
    for (int s = 0; s < STEPS; s++) {
        double t = s + 1, alpha = 0.001 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        for (int i = 0; i < N; i++) {
            gf[i] = (float)g[s][i];
            want[i] -= want[i] * 0.004 * 0.001;
            m[i] += (g[s][i] - m[i]) * 0.1;
            v[i] += (g[s][i] * g[s][i] - v[i]) * 0.001;
            want[i] -= m[i] * alpha / (sqrt(v[i]) + 1e-7);
        }
        optim_step(&o, p, gf);
        if (s == 0)
            assert_close(p[0], 0.998996006, 1e-7);
        for (int i = 0; i < N; i++)
            assert_close(p[i], want[i], 2e-6);
    }
    optim_release(&o);
}

/* Keras 3's decoupled decay on any optimizer: SGD with lr 0.1, wd 0.5: p = 2 - 2*0.5*0.1 = 1.9, then
 * p -= 0.1*g with g = 1: 1.8. */
static void test_decay_sgd(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    c.lr = 0.1;
    c.weight_decay = 0.5;
    struct optim o;
    init(&o, &c, 1);
    float p = 2.0f, g = 1.0f;
    optim_step(&o, &p, &g);
    assert_close(p, 1.8, 1e-7);
    optim_release(&o);
}

/* LARS on a kernel [0, 2) = (3, 4) (||w|| = 5) with g = (0.3, 0.4) (||g|| = 0.5) and a bias [2, 3) = 0.5 with
 * g = 0.1; lr 0.1, eta 0.001, wd 0.01, momentum 0.9. Step 1 by hand:
 *   ratio = 0.001*5 / (0.5 + 0.01*5) = 0.005/0.55; kernel v = 0.1*ratio*(g + 0.01 w) = (0.0003, 0.0004)
 *   -> p = (2.9997, 3.9996); bias (ratio 1, no decay): v = 0.01 -> 0.49.
 * Step 2, the same g: ||w|| = 5*0.9999 = 4.9995; ratio = 0.0049995/0.549995;
 *   v0 = 0.9*0.0003 + 0.1*ratio*(0.3 + 0.01*2.9997); bias v = 0.9*0.01 + 0.01 = 0.019 -> 0.471. */
static void test_lars(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_LARS);
    c.lr = 0.1;
    c.weight_decay = 0.01;
    struct optim o;
    init(&o, &c, 3);
    add_tensor(&o, 0, 2, 0, 0, 1);
    add_tensor(&o, 2, 3, 0, 0, 0);
    float p[3] = {3.0f, 4.0f, 0.5f}, g[3];
    const float g0[3] = {0.3f, 0.4f, 0.1f};
    memcpy(g, g0, sizeof g);
    optim_step(&o, p, g);
    assert_close(p[0], 2.9997, 1e-7);
    assert_close(p[1], 3.9996, 1e-7);
    assert_close(p[2], 0.49, 1e-7);
    memcpy(g, g0, sizeof g);
    optim_step(&o, p, g);
    double ratio = 0.0049995 / 0.549995;
    double v0 = 0.9 * 0.0003 + 0.1 * ratio * (0.3 + 0.01 * 2.9997);
    double v1 = 0.9 * 0.0004 + 0.1 * ratio * (0.4 + 0.01 * 3.9996);
    assert_close(p[0], 2.9997 - v0, 2e-7);
    assert_close(p[1], 3.9996 - v1, 2e-7);
    assert_close(p[2], 0.471, 1e-7);
    assert_int_equal(o.iterations, 2);
    optim_release(&o);
    /* A zero tensor (or gradient) is not adapted: ratio 1, plain momentum SGD plus the decay. */
    init(&o, &c, 2);
    add_tensor(&o, 0, 2, 0, 0, 1);
    float z[2] = {0.0f, 0.0f}, gz[2] = {1.0f, -2.0f};
    optim_step(&o, z, gz);
    assert_close(z[0], -0.1, 1e-7);
    assert_close(z[1], 0.2, 1e-7);
    optim_release(&o);
}

/* SGD with lr 1: tensors [0, 2) with g = (3, 4) (norm 5) and [2, 3) with g = 0.5.
 *   clipnorm 1: the first becomes (0.6, 0.8), the second stays 0.5.
 *   global_clipnorm 2: ||G|| = sqrt(25.25); every g times 2/sqrt(25.25). */
static void test_clipping(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    c.lr = 1.0;
    c.clipnorm = 1.0;
    struct optim o;
    init(&o, &c, 3);
    add_tensor(&o, 0, 2, 0, 0, 1);
    add_tensor(&o, 2, 3, 0, 0, 0);
    assert_true(optim_needs_sums(&o));
    float p[3] = {0, 0, 0}, g[3] = {3.0f, 4.0f, 0.5f};
    optim_step(&o, p, g);
    assert_close(p[0], -0.6, 1e-7);
    assert_close(p[1], -0.8, 1e-7);
    assert_close(p[2], -0.5, 1e-7);
    optim_release(&o);

    c.clipnorm = 0;
    c.global_clipnorm = 2.0;
    init(&o, &c, 3);
    add_tensor(&o, 0, 2, 0, 0, 1);
    add_tensor(&o, 2, 3, 0, 0, 0);
    float q[3] = {0, 0, 0}, h[3] = {3.0f, 4.0f, 0.5f};
    optim_step(&o, q, h);
    double f = 2.0 / sqrt(25.25);
    assert_close(q[0], -3 * f, 1e-7);
    assert_close(q[1], -4 * f, 1e-7);
    assert_close(q[2], -0.5 * f, 1e-7);
    optim_release(&o);

    /* Below the threshold nothing changes. */
    c.global_clipnorm = 10.0;
    init(&o, &c, 3);
    add_tensor(&o, 0, 3, 0, 0, 1);
    float r[3] = {0, 0, 0}, k[3] = {3.0f, 4.0f, 0.5f};
    optim_step(&o, r, k);
    assert_true(r[0] == -3.0f && r[1] == -4.0f && r[2] == -0.5f);
    optim_release(&o);
}

/* L1L2(l1=0.1, l2=0.5) on w = (2, -1, 0) with a zero loss gradient and SGD lr 1: the gradient is
 * l1*sign(w) + 2*l2*w = (2.1, -1.1, 0) (sign(0) = 0), so w becomes (-0.1, 0.1, 0); the penalty at the start
 * is 0.1*3 + 0.5*5 = 2.8. A tensor without a regularizer is untouched. */
static void test_regularizer(void **state)
{
    (void)state;
    struct optim_conf c;
    optim_defaults(&c, OPTIM_SGD);
    c.lr = 1.0;
    struct optim o;
    init(&o, &c, 4);
    add_tensor(&o, 0, 3, 0.1, 0.5, 1);
    add_tensor(&o, 3, 4, 0, 0, 0);
    assert_true(optim_needs_sums(&o));
    float p[4] = {2.0f, -1.0f, 0.0f, 7.0f}, g[4] = {0, 0, 0, 0};
    optim_step(&o, p, g);
    assert_close(optim_penalty(&o), 2.8, 1e-12);
    assert_close(g[0], 2.1, 1e-7);
    assert_close(g[1], -1.1, 1e-7);
    assert_true(g[2] == 0.0f && g[3] == 0.0f);
    assert_close(p[0], -0.1, 1e-6);
    assert_close(p[1], 0.1, 1e-6);
    assert_true(p[2] == 0.0f && p[3] == 7.0f);
    optim_release(&o);
    /* Nothing to sum without a regularizer, clipping or LARS: the step is the plain one. */
    init(&o, &c, 4);
    add_tensor(&o, 0, 4, 0, 0, 1);
    assert_false(optim_needs_sums(&o));
    optim_release(&o);
}

/* What the ranks do (step.c with exchange.c): each prepares its shard, the parts are added in shard order, and
 * each updates its shard with the whole sums. Within float rounding of the sums' order, the whole update. */
static void test_shards(void **state)
{
    (void)state;
    enum { BIG = 30011, RANKS = 3, STEPS = 3 };
    static const enum optim_kind kinds[] = {OPTIM_LARS, OPTIM_ADAMW, OPTIM_SGD};
    for (int k = 0; k < 3; k++) {
        struct optim_conf c;
        optim_defaults(&c, kinds[k]);
        c.lr = kinds[k] == OPTIM_LARS ? 1.0 : 0.01;
        c.weight_decay = 1e-3;
        if (k == 2)
            c.clipnorm = 0.5;
        else
            c.global_clipnorm = 1.0;
        struct optim whole, part[RANKS];
        init(&whole, &c, BIG);
        for (int r = 0; r < RANKS; r++)
            init(&part[r], &c, BIG);
        /* Three tensors cut across the shard boundaries, one regularized. */
        const size_t cuts[4] = {0, 7000, 7100, BIG};
        for (int t = 0; t < 3; t++) {
            add_tensor(&whole, cuts[t], cuts[t + 1], t == 0 ? 1e-3 : 0, t == 0 ? 1e-2 : 0, t != 1);
            for (int r = 0; r < RANKS; r++)
                add_tensor(&part[r], cuts[t], cuts[t + 1], t == 0 ? 1e-3 : 0, t == 0 ? 1e-2 : 0, t != 1);
        }
        float *p = malloc(BIG * sizeof *p), *q = malloc(BIG * sizeof *q), *g = malloc(BIG * sizeof *g),
              *h = malloc(BIG * sizeof *h);
        assert_true(p && q && g && h);
        for (int i = 0; i < BIG; i++)
            p[i] = q[i] = 0.001f * (float)(i % 1000) - 0.5f;
        for (int s = 0; s < STEPS; s++) {
            for (int i = 0; i < BIG; i++)
                g[i] = h[i] = 0.05f * sinf(0.37f * (float)i + (float)s);
            optim_step(&whole, p, g);
            double sums[3 * OPTIM_SUMS] = {0};
            size_t lo[RANKS], hi[RANKS];
            for (int r = 0; r < RANKS; r++) {
                lo[r] = (size_t)BIG * r / RANKS;
                hi[r] = (size_t)BIG * (r + 1) / RANKS;
                optim_prepare(&part[r], q, h + lo[r], lo[r], hi[r]);
                for (int x = 0; x < 3 * OPTIM_SUMS; x++)
                    sums[x] += part[r].part[x];
            }
            for (int r = 0; r < RANKS; r++) {
                memcpy(part[r].sums, sums, sizeof sums);
                optim_step_range(&part[r], q, h + lo[r], lo[r], hi[r]);
            }
            assert_close(optim_penalty(&part[0]), optim_penalty(&whole), 1e-12);
        }
        for (int i = 0; i < BIG; i++)
            if (fabsf(p[i] - q[i]) > 1e-6f)
                fail_msg("%s: element %d: %.9g whole, %.9g by shards", optim_kind_name(kinds[k]), i, p[i], q[i]);
        for (int r = 0; r < RANKS; r++)
            optim_release(&part[r]);
        optim_release(&whole);
        free(p);
        free(q);
        free(g);
        free(h);
    }
}

static void test_bad_conf(void **state)
{
    (void)state;
    struct optim o;
    struct optim_conf c;
    struct error err = {0};
    optim_defaults(&c, OPTIM_ADAMW);
    c.weight_decay = -1e-3;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    assert_non_null(strstr(err.msg, "weight decay"));
    optim_defaults(&c, OPTIM_ADAMW);
    c.weight_decay = INFINITY;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_LARS);
    c.lars_eta = 0;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_LARS);
    c.nesterov = 1;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_SGD);
    c.clipnorm = 1;
    c.global_clipnorm = 1;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    assert_non_null(strstr(err.msg, "exclude each other"));
    optim_defaults(&c, OPTIM_SGD);
    c.clipnorm = NAN;
    assert_int_equal(optim_init(&o, &c, 3, &err), ERR_USAGE);
    optim_defaults(&c, OPTIM_SGD);
    init(&o, &c, 4);
    assert_int_equal(optim_add_tensor(&o, 0, 2, -1, 0, 1, &err), ERR_USAGE);
    assert_int_equal(optim_add_tensor(&o, 0, 2, 0, NAN, 1, &err), ERR_USAGE);
    add_tensor(&o, 2, 4, 0, 0, 1);
    assert_int_equal(optim_add_tensor(&o, 0, 2, 0, 0, 1, &err), ERR_INTERNAL); /* out of order */
    assert_int_equal(optim_add_tensor(&o, 4, 5, 0, 0, 1, &err), ERR_INTERNAL); /* past the slab */
    optim_release(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),   cmocka_unit_test(test_adamw),     cmocka_unit_test(test_decay_sgd),
        cmocka_unit_test(test_lars),       cmocka_unit_test(test_clipping),  cmocka_unit_test(test_regularizer),
        cmocka_unit_test(test_shards),     cmocka_unit_test(test_bad_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

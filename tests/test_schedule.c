/* test_schedule.c: every learning-rate schedule against values worked out by hand (double precision) at
 * chosen steps, the warmup's first and last steps included; the checks on options and lengths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "schedule.h"

/* 10 steps per epoch, 5 epochs: T = 50 steps. */
#define SPE 10
#define TOTAL 50

static void assert_close(double got, double want)
{
    double tol = 1e-15 * (fabs(want) > 1e-300 ? fabs(want) : 1);
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g", got, want);
}

static struct sched_conf conf(enum sched_kind kind, double lr)
{
    struct sched_conf c;
    sched_defaults(&c);
    c.kind = kind;
    c.lr = lr;
    return c;
}

static void test_constant_is_lr_exactly(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_CONSTANT, 0.001);
    assert_true(sched_is_constant(&c));
    for (int64_t t = 0; t < 200; t++)
        assert_true(sched_lr(&c, t, SPE, TOTAL) == 0.001); /* bit for bit: the optimizer sees --lr */
}

static void test_warmup(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_CONSTANT, 0.1);
    c.warmup_epochs = 1.5; /* 15 steps */
    assert_false(sched_is_constant(&c));
    assert_int_equal(sched_warmup_steps(&c, SPE), 15);
    assert_true(sched_lr(&c, 0, SPE, TOTAL) == 0.0);               /* first step: 0 (Keras 3, the peer) */
    assert_close(sched_lr(&c, 1, SPE, TOTAL), 0.1 * (1.0 / 15));   /* 0.00666... */
    assert_close(sched_lr(&c, 14, SPE, TOTAL), 0.1 * (14.0 / 15)); /* last warmup step: 0.09333... */
    assert_true(sched_lr(&c, 15, SPE, TOTAL) == 0.1);              /* then the schedule, from its start */
    assert_true(sched_lr(&c, 49, SPE, TOTAL) == 0.1);
    /* 0.25 * 10 = 2.5 rounds to even, as Python's round() in the peer. */
    c.warmup_epochs = 0.25;
    assert_int_equal(sched_warmup_steps(&c, SPE), 2);
    c.warmup_epochs = 0.35;
    assert_int_equal(sched_warmup_steps(&c, SPE), 4);
}

static void test_cosine(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_COSINE, 0.1);
    c.min_lr = 0.001; /* alpha = 0.01 */
    c.warmup_epochs = 1; /* W = 10, decay over T - W = 40 steps */
    assert_close(sched_lr(&c, 9, SPE, TOTAL), 0.09);
    assert_true(sched_lr(&c, 10, SPE, TOTAL) == 0.1);                /* cos(0) = 1: lr */
    assert_close(sched_lr(&c, 30, SPE, TOTAL), 0.1 * (0.99 * 0.5 + 0.01)); /* half-way: 0.0505 */
    assert_close(sched_lr(&c, 50, SPE, TOTAL), 0.001);               /* the end: min_lr */
    assert_close(sched_lr(&c, 70, SPE, TOTAL), 0.001);               /* Keras clamps past decay_steps */
    /* No warmup, D = 50: step 25 is half-way too. */
    c.warmup_epochs = 0;
    assert_close(sched_lr(&c, 25, SPE, TOTAL), 0.0505);
    assert_true(sched_lr(&c, 0, SPE, TOTAL) == 0.1);
    /* W = 15, D = 35, step 49: 0.1 * (0.99 * 0.5 * (1 + cos(34 pi / 35)) + 0.01) = 0.0011992724472356662 */
    c.warmup_epochs = 1.5;
    assert_close(sched_lr(&c, 49, SPE, TOTAL), 0.0011992724472356662);
    /* step 16: 0.1 * (0.99 * 0.5 * (1 + cos(pi / 35)) + 0.01) = 0.09980072755276434 */
    assert_close(sched_lr(&c, 16, SPE, TOTAL), 0.09980072755276434);
    /* min_lr 0: plain cosine to 0. */
    c.min_lr = 0;
    c.warmup_epochs = 0;
    assert_close(sched_lr(&c, 25, SPE, TOTAL), 0.05);
    assert_true(sched_lr(&c, 50, SPE, TOTAL) == 0.0 || fabs(sched_lr(&c, 50, SPE, TOTAL)) < 1e-18);
}

static void test_step(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_STEP, 0.1);
    struct error err = {0};
    assert_int_equal(sched_parse_epochs("2,4", &c, &err), ERR_OK);
    assert_int_equal(c.n_boundaries, 2);
    /* Boundaries at steps 20 and 40; PiecewiseConstantDecay: lr while t <= 20, lr*f while t <= 40. */
    assert_true(sched_lr(&c, 0, SPE, TOTAL) == 0.1);
    assert_true(sched_lr(&c, 20, SPE, TOTAL) == 0.1);
    assert_close(sched_lr(&c, 21, SPE, TOTAL), 0.1 * 0.1);
    assert_close(sched_lr(&c, 40, SPE, TOTAL), 0.1 * 0.1);
    assert_close(sched_lr(&c, 41, SPE, TOTAL), 0.0010000000000000002); /* 0.1 * 0.1^2 */
    /* Fractional epochs and a warmup: the warmup first, the boundaries counted from the start. */
    assert_int_equal(sched_parse_epochs("0.55", &c, &err), ERR_OK);
    c.warmup_epochs = 0.3;
    c.step_factor = 0.5;
    assert_int_equal(sched_boundary_step(&c, 0, SPE), 6); /* 5.5 rounds to even */
    assert_close(sched_lr(&c, 2, SPE, TOTAL), 0.1 * (2.0 / 3));
    assert_true(sched_lr(&c, 3, SPE, TOTAL) == 0.1);
    assert_true(sched_lr(&c, 6, SPE, TOTAL) == 0.1);
    assert_true(sched_lr(&c, 7, SPE, TOTAL) == 0.05);
}

static void test_exponential(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_EXPONENTIAL, 0.1);
    c.decay_rate = 0.5;
    assert_true(sched_lr(&c, 0, SPE, TOTAL) == 0.1);
    assert_close(sched_lr(&c, 5, SPE, TOTAL), 0.07071067811865477); /* 0.1 * 0.5^0.5: not a staircase */
    assert_close(sched_lr(&c, 10, SPE, TOTAL), 0.05);
    assert_close(sched_lr(&c, 30, SPE, TOTAL), 0.0125);
    c.warmup_epochs = 1; /* the decay starts after the warmup */
    assert_close(sched_lr(&c, 9, SPE, TOTAL), 0.09);
    assert_true(sched_lr(&c, 10, SPE, TOTAL) == 0.1);
    assert_close(sched_lr(&c, 20, SPE, TOTAL), 0.05);
}

static void test_checks(void **state)
{
    (void)state;
    struct sched_conf c = conf(SCHED_CONSTANT, 0.1);
    struct error err = {0};
    c.warmup_epochs = 5;
    assert_int_equal(sched_check(&c, SPE, TOTAL, &err), ERR_OK); /* the whole training: allowed */
    c.warmup_epochs = 5.1;
    assert_int_equal(sched_check(&c, SPE, TOTAL, &err), ERR_USAGE);
    assert_non_null(strstr(err.msg, "longer than the training"));
    c = conf(SCHED_COSINE, 0.1);
    c.min_lr = 0.2;
    assert_int_equal(sched_check(&c, SPE, TOTAL, &err), ERR_USAGE);
    c = conf(SCHED_STEP, 0.1);
    assert_int_equal(sched_parse_epochs("2,5", &c, &err), ERR_OK);
    assert_int_equal(sched_check(&c, SPE, TOTAL, &err), ERR_USAGE); /* step 50 is past the last (49) */
    const char *bad[] = {"", "30,,60", "60,30", "-1", "abc", "30,", "1e999", "0", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sched_conf d = conf(SCHED_STEP, 0.1);
        assert_int_equal(sched_parse_epochs(bad[i], &d, &err), ERR_USAGE);
        assert_non_null(strstr(err.msg, "--step-epochs"));
    }
}

static void test_same_and_names(void **state)
{
    (void)state;
    struct sched_conf a = conf(SCHED_COSINE, 0.1), b = a;
    assert_true(sched_same(&a, &b));
    b.min_lr = 1e-5;
    assert_false(sched_same(&a, &b));
    b = a;
    b.decay_rate = 0.5; /* not used by a cosine schedule */
    assert_true(sched_same(&a, &b));
    b.warmup_epochs = 1;
    assert_false(sched_same(&a, &b));
    for (int k = SCHED_CONSTANT; k <= SCHED_EXPONENTIAL; k++)
        assert_int_equal(sched_kind_from_name(sched_kind_name((enum sched_kind)k)), k);
    assert_int_equal(sched_kind_from_name("linear"), -1);
    char buf[256];
    a.warmup_epochs = 2;
    a.min_lr = 1e-5;
    assert_string_equal(sched_describe(buf, sizeof buf, &a),
                        "cosine from 0.1 to 1e-05, after a linear warmup of 2 epochs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_is_lr_exactly),
        cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_same_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

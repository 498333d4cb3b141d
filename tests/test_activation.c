/* test_activation.c: Activation layers against naive C, finite differences, blocked input layouts, the
 * final softmax left to the loss, and argument parsing. */
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

/* oneDNN's jit tanh/logistic are polynomial approximations a few 1e-7 from libm. */
#define TOL 1e-5

static struct layer_spec act_spec(enum activation act, struct shape in)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = &layer_activation;
    snprintf(s.name, sizeof s.name, "activation_1");
    s.line = 6;
    s.index = 4;
    s.u.act.act = act;
    s.in = in;
    return s;
}

static const enum activation acts[4] = {ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_LINEAR};

static void test_forward_vs_naive(void **state)
{
    (void)state;
    struct shape shapes[2] = {{3, 5, 4, 3}, {1, 1, 1, 37}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) {
            struct lc t;
            struct layer_spec s = act_spec(acts[i], shapes[k]);
            lc_setup(&t, &s, 3, 1 + i);
            assert_int_equal(t.spec.out.rank, shapes[k].rank);
            assert_int_equal(shape_size(&t.spec.out), shape_size(&shapes[k]));
            float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size);
            lc_fill(x, t.in_size, -4.0, 4.0, 10 + i);
            for (int inference = 0; inference < 2; inference++) {
                lc_forward(&t, x, y, !inference);
                for (size_t j = 0; j < t.out_size; j++) {
                    float ref = (float)lc_ref_act(acts[i], x[j]);
                    if (fabsf(y[j] - ref) > TOL * fmaxf(1.0f, fabsf(ref)))
                        fail_msg("%s(%g): %g, expected %g", activation_names[acts[i]], x[j], y[j], ref);
                }
            }
            free(x);
            free(y);
            lc_teardown(&t);
        }
}

static void test_gradcheck(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        struct layer_spec s = act_spec(acts[i], (struct shape){3, 4, 3, 5});
        lc_check_gradient(&s, 2, 20 + i, 1e-2, 200);
    }
}

/* The model's last softmax is the loss module's: the layer passes logits through, and gradients back. */
static void test_softmax_in_loss_is_identity(void **state)
{
    (void)state;
    struct lc t;
    struct layer_spec s = act_spec(ACT_SOFTMAX, (struct shape){1, 1, 1, 10});
    s.softmax_in_loss = 1;
    lc_setup(&t, &s, 4, 3);
    float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size), *dy = lc_floats(t.out_size);
    float *dx = lc_floats(t.in_size);
    lc_fill(x, t.in_size, -5.0, 5.0, 4);
    lc_fill(dy, t.out_size, -1.0, 1.0, 5);
    lc_forward(&t, x, y, 1);
    assert_memory_equal(y, x, sizeof(float) * t.in_size);
    lc_backward(&t, x, dy, dx, 1);
    assert_memory_equal(dx, dy, sizeof(float) * t.in_size);
    free(x);
    free(y);
    free(dy);
    free(dx);
    lc_teardown(&t);
}

static void test_softmax_elsewhere_rejected(void **state)
{
    (void)state;
    struct dnn d;
    struct error e = {0};
    struct layer_spec s = act_spec(ACT_SOFTMAX, (struct shape){1, 1, 1, 10});
    struct layer l;
    assert_int_equal(dnn_init(&d, &e), ERR_OK);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    memset(&l, 0, sizeof l);
    l.spec = &s;
    l.n = 2;
    assert_int_equal(dnn_md_nc(&l.src_md, 2, 10, &e), ERR_OK);
    assert_int_equal(s.ops->create(&l, &d, 1, &e), ERR_INPUT);
    assert_string_equal(e.msg, "line 6: activation_1: softmax is only supported as the last layer");
    s.ops->destroy(&l); /* what the network does after a failed create: must be harmless */
    dnn_release(&d);
}

/* On nChw16c input (20 channels, padded) each activation agrees with the plain run. */
static void test_blocked_input(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        struct lc t;
        struct layer_spec s = act_spec(acts[i], (struct shape){3, 3, 4, 20});
        lc_setup(&t, &s, 2, 30 + i);
        lc_check_layout(&t, dnnl_nChw16c, 3.0, 40 + 2 * i, 1e-6, NULL);
        lc_teardown(&t);
    }
}

/* ---- parsing and text ---- */

static void test_parse(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e = {0};
    char text[128];
    const char *names[5] = {"relu", "sigmoid", "tanh", "linear", "softmax"};
    const enum activation want[5] = {ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_LINEAR, ACT_SOFTMAX};
    for (int i = 0; i < 5; i++) {
        char expect[64];
        lc_args_init(&a, "Activation", 2);
        lc_arg_str(&a, i % 2 ? "activation" : NULL, names[i], 12);
        assert_int_equal(lc_parse(&layer_activation, &a, &s, &e), ERR_OK);
        assert_int_equal(s.u.act.act, want[i]);
        s.ops->to_text(&s, text, sizeof text);
        snprintf(expect, sizeof expect, "Activation('%s')", names[i]);
        assert_string_equal(text, expect);
    }
    lc_args_init(&a, "Activation", 2); /* Activation('gelu') */
    lc_arg_str(&a, NULL, "gelu", 12);
    assert_int_equal(lc_parse(&layer_activation, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:2:12:"));
    lc_args_init(&a, "Activation", 2); /* Activation() */
    assert_int_equal(lc_parse(&layer_activation, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "activation"));
    lc_args_init(&a, "Activation", 2); /* Activation('relu', alpha='x') */
    lc_arg_str(&a, NULL, "relu", 12);
    lc_arg_str(&a, "alpha", "x", 20);
    assert_int_equal(lc_parse(&layer_activation, &a, &s, &e), ERR_INPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_vs_naive),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_softmax_in_loss_is_identity),
        cmocka_unit_test(test_softmax_elsewhere_rejected),
        cmocka_unit_test(test_blocked_input),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

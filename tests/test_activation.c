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

static float *xmalloc_f(size_t n)
{
    float *p = malloc(sizeof(float) * (n + 1));
    assert_non_null(p);
    return p;
}

static float naive(enum activation act, float x)
{
    switch (act) {
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_SIGMOID: return (float)(1.0 / (1.0 + exp(-(double)x)));
    case ACT_TANH: return (float)tanh((double)x);
    case ACT_LINEAR:
    case ACT_SOFTMAX: break;
    }
    return x;
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
            float *x = xmalloc_f(t.in_size), *y = xmalloc_f(t.out_size);
            lc_fill(x, t.in_size, -4.0, 4.0, 10 + i);
            for (int inference = 0; inference < 2; inference++) {
                lc_forward(&t, x, y, !inference);
                for (size_t j = 0; j < t.out_size; j++) {
                    float ref = naive(acts[i], x[j]);
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
        struct lc t;
        struct layer_spec s = act_spec(acts[i], (struct shape){3, 4, 3, 5});
        lc_setup(&t, &s, 2, 20 + i);
        lc_gradcheck(&t, 1, 1e-2, 200);
        lc_teardown(&t);
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
    float *x = xmalloc_f(t.in_size), *y = xmalloc_f(t.out_size), *dy = xmalloc_f(t.out_size);
    float *dx = xmalloc_f(t.in_size);
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

/* A copy of t's layer created on src in layout `tag`: y and dx (plain) for x and dy (plain); diff_src
 * must come back in that layout. */
static void run_in_layout(struct lc *t, dnnl_format_tag_t tag, const float *x, const float *dy, float *y,
                          float *dx)
{
    struct error e = {0};
    struct layer l;
    dnnl_memory_desc_t md;
    dnnl_memory_t src = NULL, ddst = NULL;
    dnnl_dims_t dims = {t->n, t->spec.in.c, t->spec.in.h, t->spec.in.w};
    assert_int_equal(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag), dnnl_success);
    memset(&l, 0, sizeof l);
    l.spec = &t->spec;
    l.n = t->n;
    l.src_md = md;
    if (t->spec.ops->create(&l, &t->dnn, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
    assert_true(dnnl_memory_desc_equal(dnn_md_of(l.diff_src), &md));
    struct step_ctx c = {&t->dnn, 1, t->seed, t->step, t->ids};
    assert_int_equal(dnn_mem(&src, &md, &t->dnn, NULL, &e), ERR_OK);
    assert_int_equal(dnn_write_plain(src, &t->in_plain, x, &t->dnn, &e), ERR_OK);
    assert_int_equal(t->spec.ops->forward(&l, &c, src, &e), ERR_OK);
    assert_int_equal(dnn_read_plain(l.dst, &t->out_plain, y, &t->dnn, &e), ERR_OK);
    assert_int_equal(dnn_mem(&ddst, &l.dst_md, &t->dnn, NULL, &e), ERR_OK);
    assert_int_equal(dnn_write_plain(ddst, &t->out_plain, dy, &t->dnn, &e), ERR_OK);
    assert_int_equal(t->spec.ops->backward(&l, &c, src, ddst, &e), ERR_OK);
    assert_int_equal(dnn_read_plain(l.diff_src, &t->in_plain, dx, &t->dnn, &e), ERR_OK);
    t->spec.ops->destroy(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
}

/* On nChw16c input (20 channels, padded) each activation agrees with the plain run. */
static void test_blocked_input(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        struct lc t;
        struct layer_spec s = act_spec(acts[i], (struct shape){3, 3, 4, 20});
        lc_setup(&t, &s, 2, 30 + i);
        float *x = xmalloc_f(t.in_size), *dy = xmalloc_f(t.out_size), *y = xmalloc_f(t.out_size);
        float *dx = xmalloc_f(t.in_size), *yb = xmalloc_f(t.out_size), *dxb = xmalloc_f(t.in_size);
        lc_fill(x, t.in_size, -3.0, 3.0, 40 + i);
        lc_fill(dy, t.out_size, -1.0, 1.0, 50 + i);
        lc_backward(&t, x, dy, dx, 1);
        lc_forward(&t, x, y, 1);
        run_in_layout(&t, dnnl_nChw16c, x, dy, yb, dxb);
        assert_true(lc_max_rel_diff(yb, y, t.out_size) <= 1e-6);
        assert_true(lc_max_rel_diff(dxb, dx, t.in_size) <= 1e-6);
        free(x);
        free(dy);
        free(y);
        free(dx);
        free(yb);
        free(dxb);
        lc_teardown(&t);
    }
}

/* ---- parsing and text ---- */

static void args_init(struct args *a)
{
    memset(a, 0, sizeof *a);
    a->file = "m.txt";
    a->line = 2;
    a->col = 1;
    snprintf(a->layer, sizeof a->layer, "Activation");
}

static void add_str(struct args *a, const char *key, const char *v, int col)
{
    struct arg *x = &a->a[a->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "%s", key ? key : "");
    x->col = col;
    x->type = ARG_STRING;
    snprintf(x->str, sizeof x->str, "%s", v);
}

static int parse(struct layer_spec *s, struct args *a, struct error *e)
{
    memset(s, 0, sizeof *s);
    s->ops = &layer_activation;
    int rc = s->ops->parse(s, a, e);
    return rc != ERR_OK ? rc : args_check_unused(a, e);
}

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
        args_init(&a);
        add_str(&a, i % 2 ? "activation" : NULL, names[i], 12);
        assert_int_equal(parse(&s, &a, &e), ERR_OK);
        assert_int_equal(s.u.act.act, want[i]);
        s.ops->to_text(&s, text, sizeof text);
        snprintf(expect, sizeof expect, "Activation('%s')", names[i]);
        assert_string_equal(text, expect);
    }
    args_init(&a); /* Activation('gelu') */
    add_str(&a, NULL, "gelu", 12);
    assert_int_equal(parse(&s, &a, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:2:12:"));
    args_init(&a); /* Activation() */
    assert_int_equal(parse(&s, &a, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "activation"));
    args_init(&a); /* Activation('relu', alpha='x') */
    add_str(&a, NULL, "relu", 12);
    add_str(&a, "alpha", "x", 20);
    assert_int_equal(parse(&s, &a, &e), ERR_INPUT);
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

/* test_pooling.c: MaxPooling2D, AveragePooling2D and the global poolings against naive NHWC loops, finite
 * differences, blocked input layouts, max pooling's workspace, argument parsing and shape errors. */
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
#include "pooling.h"

/* Keras pooling geometry, computed here independently of layer.c. */
struct geom {
    int h, w, c, ph, pw, sh, sw, same;
    int oh, ow, top, left; /* output size; padding before the first row/column ('same': the smaller half) */
};

static void geom_init(struct geom *g)
{
    if (g->same) {
        g->oh = (g->h + g->sh - 1) / g->sh;
        g->ow = (g->w + g->sw - 1) / g->sw;
        int th = (g->oh - 1) * g->sh + g->ph - g->h, tw = (g->ow - 1) * g->sw + g->pw - g->w;
        g->top = th > 0 ? th / 2 : 0;
        g->left = tw > 0 ? tw / 2 : 0;
    } else {
        g->oh = (g->h - g->ph) / g->sh + 1;
        g->ow = (g->w - g->pw) / g->sw + 1;
        g->top = g->left = 0;
    }
}

/* y (n, oh, ow, c) from x (n, h, w, c): max, or the mean of the real (non-padding) inputs of each window.
 * With dy (n, oh, ow, c) and dx (n, h, w, c) also the backward: max sends dy to the window's argmax,
 * average spreads it evenly. */
static void naive_pool(const struct geom *g, int n, int is_max, const float *x, float *y, const float *dy,
                       float *dx)
{
    if (dx)
        memset(dx, 0, sizeof(float) * (size_t)n * g->h * g->w * g->c);
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ch = 0; ch < g->c; ch++) {
                    double acc = is_max ? -INFINITY : 0.0;
                    int count = 0, arg = -1;
                    for (int ky = 0; ky < g->ph; ky++)
                        for (int kx = 0; kx < g->pw; kx++) {
                            int iy = oy * g->sh + ky - g->top, ix = ox * g->sw + kx - g->left;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            int idx = ((b * g->h + iy) * g->w + ix) * g->c + ch;
                            count++;
                            if (!is_max)
                                acc += x[idx];
                            else if (x[idx] > acc) {
                                acc = x[idx];
                                arg = idx;
                            }
                        }
                    int o = ((b * g->oh + oy) * g->ow + ox) * g->c + ch;
                    y[o] = (float)(is_max ? acc : acc / count);
                    if (!dx)
                        continue;
                    if (is_max)
                        dx[arg] += dy[o];
                    else
                        for (int ky = 0; ky < g->ph; ky++)
                            for (int kx = 0; kx < g->pw; kx++) {
                                int iy = oy * g->sh + ky - g->top, ix = ox * g->sw + kx - g->left;
                                if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                                    dx[((b * g->h + iy) * g->w + ix) * g->c + ch] += dy[o] / count;
                            }
                }
}

static struct layer_spec pool_spec(const struct layer_ops *ops, const struct geom *g)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = ops;
    snprintf(s.name, sizeof s.name, "%s_1", ops->keras_prefix);
    s.line = 3;
    s.index = 2;
    s.u.pool = (struct pool_cfg){g->ph, g->pw, g->sh, g->sw, g->same};
    s.in = (struct shape){3, g->h, g->w, g->c};
    return s;
}

/* Forward of the layer against naive_pool on random input; the shape infer gave must be Keras's. */
static void check_forward(const struct layer_ops *ops, struct geom g, int n)
{
    struct lc t;
    geom_init(&g);
    struct layer_spec s = pool_spec(ops, &g);
    lc_setup(&t, &s, n, 11);
    assert_int_equal(t.spec.out.rank, 3);
    assert_int_equal(t.spec.out.h, g.oh);
    assert_int_equal(t.spec.out.w, g.ow);
    assert_int_equal(t.spec.out.c, g.c);
    assert_int_equal(t.spec.n_params, 0);
    float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size), *ref = lc_floats(t.out_size);
    lc_fill(x, t.in_size, -1.0, 1.0, 5);
    lc_forward(&t, x, y, 1);
    naive_pool(&g, n, ops == &layer_max_pooling2d, x, ref, NULL, NULL);
    assert_true(lc_max_rel_diff(y, ref, t.out_size) <= 1e-6);
    free(x);
    free(y);
    free(ref);
    lc_teardown(&t);
}

static void test_max_valid(void **state)
{
    (void)state;
    check_forward(&layer_max_pooling2d, (struct geom){.h = 28, .w = 28, .c = 3, .ph = 2, .pw = 2, .sh = 2, .sw = 2},
                  2);
    check_forward(&layer_max_pooling2d, (struct geom){.h = 7, .w = 7, .c = 4, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, 3);
}

static void test_avg_valid(void **state)
{
    (void)state;
    check_forward(&layer_average_pooling2d,
                  (struct geom){.h = 28, .w = 28, .c = 3, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, 2);
    check_forward(&layer_average_pooling2d,
                  (struct geom){.h = 9, .w = 7, .c = 5, .ph = 3, .pw = 3, .sh = 3, .sw = 3}, 2);
}

static void test_strides_differ_from_pool(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        const struct layer_ops *ops = m ? &layer_average_pooling2d : &layer_max_pooling2d;
        check_forward(ops, (struct geom){.h = 9, .w = 9, .c = 3, .ph = 3, .pw = 3, .sh = 2, .sw = 2}, 2);
        check_forward(ops, (struct geom){.h = 8, .w = 10, .c = 2, .ph = 2, .pw = 2, .sh = 3, .sw = 3}, 2);
        check_forward(ops, (struct geom){.h = 6, .w = 9, .c = 3, .ph = 2, .pw = 3, .sh = 1, .sw = 2}, 2);
        check_forward(ops, (struct geom){.h = 7, .w = 8, .c = 3, .ph = 3, .pw = 2, .sh = 2, .sw = 3, .same = 1}, 2);
    }
}

static void test_same_odd_sizes(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        const struct layer_ops *ops = m ? &layer_average_pooling2d : &layer_max_pooling2d;
        check_forward(ops, (struct geom){.h = 7, .w = 7, .c = 3, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1}, 2);
        check_forward(ops, (struct geom){.h = 7, .w = 7, .c = 3, .ph = 3, .pw = 3, .sh = 2, .sw = 2, .same = 1}, 2);
        check_forward(ops, (struct geom){.h = 5, .w = 6, .c = 2, .ph = 2, .pw = 2, .sh = 1, .sw = 1, .same = 1}, 2);
        /* A window larger than the input is fine with 'same'. */
        check_forward(ops, (struct geom){.h = 2, .w = 3, .c = 2, .ph = 4, .pw = 4, .sh = 1, .sw = 1, .same = 1}, 1);
    }
}

/* 7x7, pool 2, 'same': 4x4 whose last row/column sees the single real input x[6][6] (the padding row is
 * at the bottom/right, and the average does not count it). */
static void test_same_pads_bottom_right(void **state)
{
    (void)state;
    struct geom g = {.h = 7, .w = 7, .c = 1, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1};
    geom_init(&g);
    float x[49], y[16];
    for (int i = 0; i < 49; i++)
        x[i] = (float)((i * 37) % 49) - 20.0f; /* distinct values */
    for (int m = 0; m < 2; m++) {
        struct lc t;
        struct layer_spec s = pool_spec(m ? &layer_average_pooling2d : &layer_max_pooling2d, &g);
        lc_setup(&t, &s, 1, 1);
        assert_int_equal(t.spec.out.h, 4);
        assert_int_equal(t.spec.out.w, 4);
        lc_forward(&t, x, y, 0);
        assert_true(y[15] == x[48]);
        assert_true(y[3] == (m ? (x[6] + x[13]) / 2 : fmaxf(x[6], x[13])));
        float first = m ? (x[0] + x[1] + x[7] + x[8]) / 4 : fmaxf(fmaxf(x[0], x[1]), fmaxf(x[7], x[8]));
        assert_true(fabsf(y[0] - first) <= 1e-6f);
        lc_teardown(&t);
    }
}

/* fashion-cnn's pools: 28 -> 14 -> 7 -> 3 with 'valid' (floor). */
static void test_valid_chain(void **state)
{
    (void)state;
    int sizes[4] = {28, 14, 7, 3};
    for (int i = 0; i < 3; i++) {
        struct geom g = {.h = sizes[i], .w = sizes[i], .c = 4, .ph = 2, .pw = 2, .sh = 2, .sw = 2};
        check_forward(&layer_max_pooling2d, g, 2);
        struct layer_spec s = pool_spec(&layer_max_pooling2d, &g);
        struct error e = {0};
        assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
        assert_int_equal(s.out.h, sizes[i + 1]);
        assert_int_equal(s.out.w, sizes[i + 1]);
    }
}

static void test_gradcheck(void **state)
{
    (void)state;
    struct geom gs[3] = {
        {.h = 6, .w = 6, .c = 3, .ph = 2, .pw = 2, .sh = 2, .sw = 2},
        {.h = 7, .w = 7, .c = 2, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1},
        {.h = 7, .w = 6, .c = 2, .ph = 3, .pw = 3, .sh = 2, .sw = 1, .same = 1},
    };
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 3; i++) {
            geom_init(&gs[i]);
            struct layer_spec s = pool_spec(m ? &layer_average_pooling2d : &layer_max_pooling2d, &gs[i]);
            lc_check_gradient(&s, 2, 21 + i, 1e-2, 400);
        }
}

/* Backward against the naive one: max sends each dy to its window's argmax, average spreads it. Run twice
 * with different inputs: the second backward must follow the second forward's maxima. */
static void test_backward_vs_naive(void **state)
{
    (void)state;
    struct geom g = {.h = 7, .w = 7, .c = 3, .ph = 3, .pw = 3, .sh = 2, .sw = 2, .same = 1};
    geom_init(&g);
    for (int m = 0; m < 2; m++) {
        struct lc t;
        struct layer_spec s = pool_spec(m ? &layer_average_pooling2d : &layer_max_pooling2d, &g);
        lc_setup(&t, &s, 2, 3);
        float *x = lc_floats(t.in_size), *dy = lc_floats(t.out_size), *dx = lc_floats(t.in_size);
        float *y = lc_floats(t.out_size), *ref = lc_floats(t.in_size);
        lc_fill(dy, t.out_size, -1.0, 1.0, 8);
        for (int round = 0; round < 2; round++) {
            lc_fill(x, t.in_size, -1.0, 1.0, 40 + round);
            lc_backward(&t, x, dy, dx, 1);
            naive_pool(&g, 2, !m, x, y, dy, ref);
            assert_true(lc_max_rel_diff(dx, ref, t.in_size) <= 1e-5);
        }
        free(x);
        free(dy);
        free(dx);
        free(y);
        free(ref);
        lc_teardown(&t);
    }
}

/* Max pooling's backward reads where the maxima were from the workspace forward wrote: given a different
 * src afterwards, it still routes the gradient by the forward's maxima. */
static void test_max_workspace(void **state)
{
    (void)state;
    struct geom g = {.h = 6, .w = 6, .c = 2, .ph = 2, .pw = 2, .sh = 2, .sw = 2};
    geom_init(&g);
    struct lc t;
    struct layer_spec s = pool_spec(&layer_max_pooling2d, &g);
    lc_setup(&t, &s, 2, 4);
    float *x = lc_floats(t.in_size), *other = lc_floats(t.in_size), *dy = lc_floats(t.out_size);
    float *dx = lc_floats(t.in_size), *y = lc_floats(t.out_size), *ref = lc_floats(t.in_size);
    lc_fill(x, t.in_size, -1.0, 1.0, 50);
    lc_fill(other, t.in_size, -1.0, 1.0, 51);
    lc_fill(dy, t.out_size, -1.0, 1.0, 52);
    lc_forward(&t, x, y, 1);

    struct error e = {0};
    struct step_ctx c = {.dnn = &t.dnn, .training = 1, .seed = t.seed, .step = t.step, .sample_ids = t.ids};
    dnnl_memory_t ddst = NULL;
    assert_int_equal(dnn_mem(&ddst, &t.l.dst_md, &t.dnn, NULL, &e), ERR_OK);
    assert_int_equal(dnn_write_plain(ddst, &t.out_plain, dy, &t.dnn, &e), ERR_OK);
    dnnl_memory_set_data_handle(t.src, other);
    assert_int_equal(t.spec.ops->backward(&t.l, &c, t.src, ddst, &e), ERR_OK);
    assert_int_equal(dnn_read_plain(t.l.diff_src, &t.in_plain, dx, &t.dnn, &e), ERR_OK);
    naive_pool(&g, 2, 1, x, y, dy, ref);
    assert_true(lc_max_rel_diff(dx, ref, t.in_size) == 0.0);

    dnnl_memory_destroy(ddst);
    free(x);
    free(other);
    free(dy);
    free(dx);
    free(y);
    free(ref);
    lc_teardown(&t);
}

/* The same layer on nChw16c input (20 channels: the second block is padded) agrees with the plain one. */
static void check_blocked(const struct layer_ops *ops, struct geom g, int blocked_dst)
{
    struct lc t;
    geom_init(&g);
    struct layer_spec s = pool_spec(ops, &g);
    lc_setup(&t, &s, 2, 9);
    dnnl_memory_desc_t dst_md;
    lc_check_layout(&t, dnnl_nChw16c, 1.0, 60, 1e-6, &dst_md);
    /* pooling keeps the blocked layout for dst: no reorder on the way out */
    if (blocked_dst)
        assert_false(dnnl_memory_desc_equal(&dst_md, &t.out_plain));
    lc_teardown(&t);
}

static void test_blocked_input(void **state)
{
    (void)state;
    check_blocked(&layer_max_pooling2d, (struct geom){.h = 9, .w = 9, .c = 20, .ph = 2, .pw = 2, .sh = 2, .sw = 2,
                                                      .same = 1}, 1);
    check_blocked(&layer_average_pooling2d,
                  (struct geom){.h = 9, .w = 8, .c = 20, .ph = 3, .pw = 3, .sh = 2, .sw = 2}, 1);
    check_blocked(&layer_average_pooling2d,
                  (struct geom){.h = 7, .w = 7, .c = 20, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1}, 1);
}

/* The 2x2 kernel of pooling.c (channel-blocked or nhwc inputs, 2x2 windows, stride 2) gives oneDNN's bits,
 * forward and backward, on nChw8c, nChw16c and nhwc (more than 16 channels too), with odd sizes (a row and a
 * column no window covers), a padded channel block, and 'same' on even sizes; and the naive loops'. */
static void check_2x2_kernel(struct geom g, dnnl_format_tag_t tag, int block)
{
    struct lc t;
    geom_init(&g);
    struct layer_spec s = pool_spec(&layer_max_pooling2d, &g);
    lc_setup(&t, &s, 3, 13);
    float *x = lc_floats(t.in_size), *dy = lc_floats(t.out_size);
    float *y[2], *dx[2];
    /* Ties in every window of some rows: the first largest must win in both. */
    lc_fill(x, t.in_size, -1.0, 1.0, 70);
    for (size_t i = 0; i < t.in_size; i += 7)
        x[i] = 0.25f;
    lc_fill(dy, t.out_size, -1.0, 1.0, 71);
    for (int onednn = 0; onednn <= 1; onednn++) {
        y[onednn] = lc_floats(t.out_size);
        dx[onednn] = lc_floats(t.in_size);
        pooling_onednn_only = onednn;
        lc_run_in_layout(&t, tag, x, dy, y[onednn], dx[onednn], NULL);
        assert_int_equal(pooling_2x2_block_for(&t.l.spec[0], t.n, tag), onednn ? 0 : block);
    }
    pooling_onednn_only = 0;
    assert_memory_equal(y[0], y[1], sizeof(float) * t.out_size);
    assert_memory_equal(dx[0], dx[1], sizeof(float) * t.in_size);
    float *ref_y = lc_floats(t.out_size), *ref_dx = lc_floats(t.in_size);
    naive_pool(&g, 3, 1, x, ref_y, dy, ref_dx);
    assert_memory_equal(y[0], ref_y, sizeof(float) * t.out_size);
    assert_memory_equal(dx[0], ref_dx, sizeof(float) * t.in_size);
    for (int i = 0; i < 2; i++) {
        free(y[i]);
        free(dx[i]);
    }
    free(x);
    free(dy);
    free(ref_y);
    free(ref_dx);
    lc_teardown(&t);
}

static void test_2x2_kernel(void **state)
{
    (void)state;
    check_2x2_kernel((struct geom){.h = 8, .w = 8, .c = 16, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nChw8c, 8);
    check_2x2_kernel((struct geom){.h = 9, .w = 7, .c = 20, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nChw8c, 8);
    check_2x2_kernel((struct geom){.h = 9, .w = 7, .c = 20, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nChw16c, 16);
    check_2x2_kernel((struct geom){.h = 6, .w = 4, .c = 32, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1},
                     dnnl_nChw16c, 16);
    /* nhwc (after BatchNormalization, Activation or Dropout): one block of all the channels */
    check_2x2_kernel((struct geom){.h = 9, .w = 8, .c = 20, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nhwc, 20);
    check_2x2_kernel((struct geom){.h = 4, .w = 5, .c = 8, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nhwc, 8);
    check_2x2_kernel((struct geom){.h = 4, .w = 4, .c = 40, .ph = 2, .pw = 2, .sh = 2, .sw = 2}, dnnl_nhwc, 40);
    /* 'same' on an odd size pads: oneDNN's */
    check_2x2_kernel((struct geom){.h = 5, .w = 6, .c = 8, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .same = 1},
                     dnnl_nChw8c, 0);
}

/* ---- global pooling ---- */

static struct layer_spec global_spec(const struct layer_ops *ops, int h, int w, int c)
{
    struct layer_spec s;
    memset(&s, 0, sizeof s);
    s.ops = ops;
    snprintf(s.name, sizeof s.name, "%s_1", ops->keras_prefix);
    s.line = 9;
    s.index = 8;
    s.in = (struct shape){3, h, w, c};
    return s;
}

/* y (n, c) = max or mean of x (n, h, w, c) over (h, w). */
static void naive_global(const float *x, int n, int h, int w, int c, int is_max, float *y)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            double acc = is_max ? -INFINITY : 0.0;
            for (int i = 0; i < h * w; i++) {
                double v = x[((size_t)b * h * w + i) * c + ch];
                acc = is_max ? fmax(acc, v) : acc + v;
            }
            y[b * c + ch] = (float)(is_max ? acc : acc / (h * w));
        }
}

static void test_global_forward(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        const struct layer_ops *ops = m ? &layer_global_max_pooling2d : &layer_global_average_pooling2d;
        struct lc t;
        struct layer_spec s = global_spec(ops, 5, 6, 7);
        lc_setup(&t, &s, 3, 2);
        assert_int_equal(t.spec.out.rank, 1);
        assert_int_equal(t.spec.out.c, 7);
        assert_int_equal(shape_size(&t.spec.out), 7);
        assert_int_equal(t.spec.n_params, 0);
        assert_int_equal(t.l.dst_md.ndims, 2);
        assert_true(dnnl_memory_desc_equal(&t.l.dst_md, &t.out_plain));
        float *x = lc_floats(t.in_size), *y = lc_floats(t.out_size), *ref = lc_floats(t.out_size);
        lc_fill(x, t.in_size, -1.0, 1.0, 70 + m);
        lc_forward(&t, x, y, 1);
        naive_global(x, 3, 5, 6, 7, m, ref);
        assert_true(lc_max_rel_diff(y, ref, t.out_size) <= 1e-6);
        free(x);
        free(y);
        free(ref);
        lc_teardown(&t);
    }
}

static void test_global_gradcheck(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        struct layer_spec s = global_spec(m ? &layer_global_max_pooling2d : &layer_global_average_pooling2d, 4, 3, 5);
        lc_check_gradient(&s, 2, 30 + m, 1e-2, 400);
    }
}

static void test_global_blocked(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        struct lc t;
        struct layer_spec s = global_spec(m ? &layer_global_max_pooling2d : &layer_global_average_pooling2d, 5, 4, 20);
        lc_setup(&t, &s, 2, 40);
        lc_check_layout(&t, dnnl_nChw16c, 1.0, 80, 1e-6, NULL);
        lc_teardown(&t);
    }
}

/* ---- parsing, text, shape errors ---- */

static void test_parse(void **state)
{
    (void)state;
    struct args a;
    struct layer_spec s;
    struct error e = {0};
    char text[256];

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D() */
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.pool.ph, 2);
    assert_int_equal(s.u.pool.pw, 2);
    assert_int_equal(s.u.pool.sh, 2);
    assert_int_equal(s.u.pool.sw, 2);
    assert_int_equal(s.u.pool.same, 0);
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "MaxPooling2D(pool_size=(2, 2), strides=(2, 2), padding='valid')");

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D(3, padding='same'): strides default to the pool */
    lc_arg_int(&a, NULL, 3, 14);
    lc_arg_str(&a, "padding", "same", 17);
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.pool.sh, 3);
    assert_int_equal(s.u.pool.sw, 3);
    assert_int_equal(s.u.pool.same, 1);

    lc_args_init(&a, "AveragePooling2D", 4); /* AveragePooling2D((2, 3), (1, 2), 'same') */
    lc_arg_tuple(&a, NULL, 2, (long[]){2, 3}, 18);
    lc_arg_tuple(&a, NULL, 2, (long[]){1, 2}, 26);
    lc_arg_str(&a, NULL, "same", 34);
    assert_int_equal(lc_parse(&layer_average_pooling2d, &a, &s, &e), ERR_OK);
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "AveragePooling2D(pool_size=(2, 3), strides=(1, 2), padding='same')");

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D(pool_size=2, strides=None) */
    lc_arg_int(&a, "pool_size", 2, 14);
    lc_arg(&a, "strides", ARG_NONE, 27);
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_OK);
    assert_int_equal(s.u.pool.sh, 2);

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D(pool_size=0) */
    lc_arg_int(&a, "pool_size", 0, 14);
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:4:14:"));

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D(2, (1, -1)) */
    lc_arg_int(&a, NULL, 2, 14);
    lc_arg_tuple(&a, NULL, 2, (long[]){1, -1}, 17);
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:4:17:"));

    lc_args_init(&a, "MaxPooling2D", 4); /* MaxPooling2D(padding='full') */
    lc_arg_str(&a, "padding", "full", 14);
    assert_int_equal(lc_parse(&layer_max_pooling2d, &a, &s, &e), ERR_INPUT);
    assert_non_null(strstr(e.msg, "m.txt:4:14:"));

    lc_args_init(&a, "GlobalAveragePooling2D", 4);
    assert_int_equal(lc_parse(&layer_global_average_pooling2d, &a, &s, &e), ERR_OK);
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "GlobalAveragePooling2D()");
    lc_arg_int(&a, NULL, 1, 24); /* GlobalAveragePooling2D(1): left unused, so the parser reports it */
    assert_int_equal(lc_parse(&layer_global_average_pooling2d, &a, &s, &e), ERR_INPUT);
    s.ops = &layer_global_max_pooling2d;
    s.ops->to_text(&s, text, sizeof text);
    assert_string_equal(text, "GlobalMaxPooling2D()");
}

static void test_shape_errors(void **state)
{
    (void)state;
    struct error e = {0};
    struct geom g = {.h = 2, .w = 2, .c = 1, .ph = 3, .pw = 3, .sh = 3, .sw = 3};
    struct layer_spec s = pool_spec(&layer_max_pooling2d, &g);
    s.line = 7;
    assert_int_equal(s.ops->infer(&s, &e), ERR_INPUT);
    assert_string_equal(e.msg, "line 7: max_pooling2d_1: pool 3x3 is larger than its 2x2 input");

    g = (struct geom){.h = 5, .w = 2, .c = 1, .ph = 2, .pw = 3, .sh = 1, .sw = 1};
    s = pool_spec(&layer_average_pooling2d, &g);
    assert_int_equal(s.ops->infer(&s, &e), ERR_INPUT);

    g.same = 1; /* 'same' pads instead */
    s = pool_spec(&layer_average_pooling2d, &g);
    assert_int_equal(s.ops->infer(&s, &e), ERR_OK);
    assert_int_equal(s.out.h, 5);
    assert_int_equal(s.out.w, 2);

    s.in = (struct shape){1, 1, 1, 10};
    assert_int_equal(s.ops->infer(&s, &e), ERR_INPUT);
    s = global_spec(&layer_global_max_pooling2d, 1, 1, 10);
    s.in.rank = 1;
    assert_int_equal(s.ops->infer(&s, &e), ERR_INPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_valid),
        cmocka_unit_test(test_avg_valid),
        cmocka_unit_test(test_strides_differ_from_pool),
        cmocka_unit_test(test_same_odd_sizes),
        cmocka_unit_test(test_same_pads_bottom_right),
        cmocka_unit_test(test_valid_chain),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_vs_naive),
        cmocka_unit_test(test_max_workspace),
        cmocka_unit_test(test_blocked_input),
        cmocka_unit_test(test_2x2_kernel),
        cmocka_unit_test(test_global_forward),
        cmocka_unit_test(test_global_gradcheck),
        cmocka_unit_test(test_global_blocked),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

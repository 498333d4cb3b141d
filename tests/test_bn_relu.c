/* test_bn_relu.c: the fused BatchNormalization + ReLU (+ 2x2 MaxPooling2D) kernel (bn_relu.h) against the
 * three layers run apart: outputs, input gradients, gamma / beta gradients and the moving averages' slots, in
 * training and inference, on nChw16c, nChw8c, nhwc and (n, c) inputs, on another layout through a copy, with
 * channels that leave a block half padded and sizes the pooling does not tile; a batch split over two "ranks"
 * (threads summing through ctx->sum) against the whole batch; which layers the planner fuses, from the graph's
 * edges; and whole networks, residual ones too (BatchNormalization + Add + ReLU): training with the fusion gives
 * the weights of training without it, and two ranks give one rank's gradients. */
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

#include "bn_relu.h"
#include "layer_check.h"
#include "model.h"
#include "net.h"
#include "rng.h"

/* ---- two "ranks": threads whose ctx->sum adds both buffers in the same order (as MPI_Allreduce) ---- */

struct pair {
    pthread_barrier_t barrier;
    const double *slot[2];
};
struct member {
    struct pair *pair;
    int id;
    double tmp[512];
};

static int pair_sum(double *v, int n, void *arg, struct error *err)
{
    struct member *m = arg;
    (void)err;
    if (n > 512)
        return ERR_INTERNAL;
    m->pair->slot[m->id] = v;
    pthread_barrier_wait(&m->pair->barrier);
    for (int i = 0; i < n; i++)
        m->tmp[i] = m->pair->slot[0][i] + m->pair->slot[1][i];
    pthread_barrier_wait(&m->pair->barrier);
    memcpy(v, m->tmp, sizeof(double) * (size_t)n);
    return ERR_OK;
}

/* ---- one BatchNormalization and the layers after it, fused or apart ---- */

/* A model on input (h, w, c), or on c features when h is 0 (through a Flatten); returns the index of its first
 * BatchNormalization. */
static int parse(struct model *m, const char *tail, int h, int w, int c)
{
    char text[1024];
    struct error e = {0};
    if (h)
        snprintf(text, sizeof text, "Input(shape=(%d, %d, %d))\n%s", h, w, c, tail);
    else
        snprintf(text, sizeof text, "Input(shape=(1, 1, %d))\nFlatten()\n%s", c, tail);
    if (model_parse(m, text, "m.txt", &e) != ERR_OK)
        fail_msg("model: %s", e.msg);
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i].ops == &layer_batchnorm)
            return i;
    fail_msg("no BatchNormalization in %s", text);
    return -1;
}

/* The run of layers bi..bi+k of m on a batch of n: either the fused kernel (fused) or the k + 1 layers apart.
 * src is made in layout md from plain x; dy (plain, the last layer's output shape) is given in its dst
 * layout. */
struct run {
    struct dnn *dnn;
    const struct layer_spec *in, *out; /* the BatchNormalization, the last layer run */
    struct layer l[3];
    int count;               /* layers created */
    dnnl_memory_t src, dy;
    float *grads;            /* the run's gradient slab */
};

static dnnl_memory_desc_t plain_md(const struct shape *s, int n)
{
    dnnl_memory_desc_t md;
    struct error e = {0};
    if (s->rank == 3)
        dnn_md_nhwc(&md, n, s->h, s->w, s->c, &e);
    else
        dnn_md_nc(&md, n, s->c, &e);
    return md;
}

static void run_create(struct run *r, struct dnn *d, const struct model *m, int bi, int k, int fused, int n,
                       const dnnl_memory_desc_t *src_md, const float *x, float *params, size_t n_params)
{
    memset(r, 0, sizeof *r);
    r->dnn = d;
    r->grads = calloc(n_params + 1, sizeof(float));
    const struct layer_spec *bn = &m->layers[bi];
    r->in = bn;
    r->out = &m->layers[bi + k];
    dnnl_memory_desc_t px = plain_md(&bn->in, n);
    LC_OK(dnn_mem(&r->src, src_md, d, NULL, err));
    LC_OK(dnn_write_plain(r->src, &px, x, d, err));
    r->count = fused ? 1 : k + 1;
    for (int j = 0; j < r->count; j++) {
        struct layer *l = &r->l[j];
        l->spec = &m->layers[bi + j];
        l->ops = fused ? bn_relu_ops(m, bi) : l->spec->ops;
        l->n = n;
        l->src_md = j ? r->l[j - 1].dst_md : *src_md;
        if (l->spec->n_params) {
            l->w = params + l->spec->params[0].offset;
            l->dw = r->grads + l->spec->params[0].offset;
        }
        LC_OK(l->ops->create(l, d, 1, err));
    }
}

static struct layer *run_last(struct run *r) { return &r->l[r->count - 1]; }

static void run_destroy(struct run *r)
{
    for (int j = r->count - 1; j >= 0; j--)
        r->l[j].ops->destroy(&r->l[j]);
    if (r->src)
        dnnl_memory_destroy(r->src);
    if (r->dy)
        dnnl_memory_destroy(r->dy);
    free(r->grads);
}

static void run_forward(struct run *r, const struct step_ctx *ctx)
{
    dnnl_memory_t src = r->src;
    for (int j = 0; j < r->count; j++) {
        LC_OK(r->l[j].ops->forward(&r->l[j], ctx, src, err));
        src = r->l[j].dst;
    }
}

/* Backward from plain dy (the last layer's output shape). */
static void run_backward(struct run *r, const struct step_ctx *ctx, const float *dy)
{
    struct layer *last = run_last(r);
    dnnl_memory_desc_t pd = plain_md(&r->out->out, last->n);
    if (!r->dy)
        LC_OK(dnn_mem(&r->dy, &last->dst_md, r->dnn, NULL, err));
    LC_OK(dnn_write_plain(r->dy, &pd, dy, r->dnn, err));
    dnnl_memory_t diff = r->dy;
    for (int j = r->count - 1; j >= 0; j--) {
        LC_OK(r->l[j].ops->backward(&r->l[j], ctx, j ? r->l[j - 1].dst : r->src, diff, err));
        diff = r->l[j].diff_src;
    }
}

static void read_out(struct run *r, float *y)
{
    struct layer *last = run_last(r);
    dnnl_memory_desc_t pd = plain_md(&r->out->out, last->n);
    LC_OK(dnn_read_plain(last->dst, &pd, y, r->dnn, err));
}

static void read_dx(struct run *r, float *dx)
{
    dnnl_memory_desc_t pd = plain_md(&r->in->in, r->l[0].n);
    LC_OK(dnn_read_plain(r->l[0].diff_src, &pd, dx, r->dnn, err));
}

static void expect_close(const char *what, const float *got, const float *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs((double)want[i]))))
            fail_msg("%s[%zu]: fused %.8g, apart %.8g", what, i, got[i], want[i]);
}

/* BatchNormalization parameters: gamma of both signs (a negative one turns a window's maximum into its
 * minimum), some beta, moving averages with a positive variance. */
static void fill_params(const struct model *m, int bi, float *params, uint64_t seed)
{
    const struct layer_spec *bn = &m->layers[bi];
    lc_fill(params, m->n_params, -0.5, 0.5, seed);
    for (int i = 0; i < bn->n_params; i++) {
        const struct param_info *p = &bn->params[i];
        float *v = params + p->offset;
        if (strcmp(p->name, "gamma") == 0)
            lc_fill(v, p->size, -1.5, 1.5, seed + 1);
        else if (strcmp(p->name, "moving_variance") == 0)
            lc_fill(v, p->size, 0.2, 2.0, seed + 2);
    }
}

/* Inputs with an offset and a spread per channel, as a convolution's output; one sample in three quantised
 * to a few values, so that pooling windows hold ties. */
static void fill_input(float *x, size_t size, long c, long per_sample, uint64_t seed)
{
    lc_fill(x, size, -1.0, 1.0, seed);
    for (size_t i = 0; i < size; i++) {
        long k = (long)(i % (size_t)c);
        if ((i / (size_t)per_sample) % 3 == 2)
            x[i] = roundf(x[i] * 2.0f) * 0.5f;
        x[i] = x[i] * (1.0f + 0.3f * (float)(k % 5)) + 0.2f * (float)(k % 7) - 0.5f;
    }
}

/* The fused kernel against the k + 1 layers apart on one input layout: y and dx and the BatchNormalization's
 * gradient slots in training, y in inference. */
static void check_case(const char *tail, int h, int w, int c, int k, dnnl_format_tag_t tag, int n, uint64_t seed)
{
    static struct model m;
    struct dnn d;
    const int bi = parse(&m, tail, h, w, c);
    assert_int_equal(bn_relu_fusable(&m, bi), k);
    LC_OK(dnn_init(&d, err));
    const struct layer_spec *bn = &m.layers[bi], *out = &m.layers[bi + k];
    const long per_in = (long)shape_size(&bn->in), per_out = (long)shape_size(&out->out);
    const size_t in_size = (size_t)n * per_in, out_size = (size_t)n * per_out;
    float *params = lc_floats(m.n_params), *x = lc_floats(in_size), *dy = lc_floats(out_size);
    float *y0 = lc_floats(out_size), *y1 = lc_floats(out_size), *dx0 = lc_floats(in_size), *dx1 = lc_floats(in_size);
    fill_params(&m, bi, params, seed);
    fill_input(x, in_size, c, per_in, seed + 3);
    lc_fill(dy, out_size, -1.0, 1.0, seed + 4);
    dnnl_memory_desc_t md;
    if (h) {
        dnnl_dims_t dims = {n, c, h, w};
        assert_int_equal(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag), dnnl_success);
    } else {
        LC_OK(dnn_md_nc(&md, n, c, err));
    }
    struct run apart, fused;
    run_create(&apart, &d, &m, bi, k, 0, n, &md, x, params, m.n_params);
    run_create(&fused, &d, &m, bi, k, 1, n, &md, x, params, m.n_params);
    /* The fused kernel keeps its input's layout (a copy's only for a layout it does not take). */
    if (tag != dnnl_nchw)
        assert_true(run_last(&fused)->dst_md.format_desc.blocking.inner_nblks == md.format_desc.blocking.inner_nblks);
    struct step_ctx ctx = {&d, 1, 1, 0, NULL, n, NULL, NULL, 0};
    run_forward(&apart, &ctx);
    run_forward(&fused, &ctx);
    read_out(&apart, y0);
    read_out(&fused, y1);
    expect_close("training y", y1, y0, out_size, 2e-5);
    run_backward(&apart, &ctx, dy);
    run_backward(&fused, &ctx, dy);
    read_dx(&apart, dx0);
    read_dx(&fused, dx1);
    expect_close("dx", dx1, dx0, in_size, 1e-4);
    const size_t off = bn->params[0].offset, np = bn->params[bn->n_params - 1].offset + (size_t)c - off;
    expect_close("BatchNormalization gradient slots", fused.grads + off, apart.grads + off, np, 1e-4);
    /* Inference, with the moving averages. */
    ctx.training = 0;
    run_forward(&apart, &ctx);
    run_forward(&fused, &ctx);
    read_out(&apart, y0);
    read_out(&fused, y1);
    expect_close("inference y", y1, y0, out_size, 2e-5);
    run_destroy(&apart);
    run_destroy(&fused);
    dnn_release(&d);
    free(params), free(x), free(dy), free(y0), free(y1), free(dx0), free(dx1);
}

static const char relu_pool[] = "BatchNormalization()\nActivation('relu')\nMaxPooling2D(2)\nFlatten()\n"
                                "Dense(3, activation='softmax')\n";
static const char relu_only[] = "BatchNormalization(momentum=0.9, epsilon=0.01)\nActivation('relu')\nFlatten()\n"
                                "Dense(3, activation='softmax')\n";

static void test_with_pooling(void **state)
{
    (void)state;
    static const dnnl_format_tag_t tags[] = {dnnl_nChw16c, dnnl_nChw8c, dnnl_nhwc, dnnl_nchw};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        check_case(relu_pool, 6, 4, 32, 2, tags[t], 3, 10 + t); /* full blocks, sizes the windows tile */
        check_case(relu_pool, 7, 5, 20, 2, tags[t], 2, 20 + t); /* a padded block; a row and a column dropped */
        check_case(relu_pool, 4, 6, 3, 2, tags[t], 4, 30 + t);  /* fewer channels than a block */
    }
    /* 'same' on even sizes pads nothing: the same windows. */
    check_case("BatchNormalization(center=False)\nActivation('relu')\nMaxPooling2D(2, padding='same')\nFlatten()\n"
               "Dense(3, activation='softmax')\n",
               4, 4, 16, 2, dnnl_nChw16c, 3, 40);
}

static void test_without_pooling(void **state)
{
    (void)state;
    static const dnnl_format_tag_t tags[] = {dnnl_nChw16c, dnnl_nChw8c, dnnl_nhwc, dnnl_nchw};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        check_case(relu_only, 5, 3, 20, 1, tags[t], 3, 50 + t);
        check_case(relu_only, 2, 2, 16, 1, tags[t], 5, 60 + t);
    }
    /* After a Dense: (n, c); without gamma. */
    check_case("BatchNormalization(scale=False)\nActivation('relu')\nDense(3, activation='softmax')\n", 0, 0, 13, 1,
               dnnl_nc, 7, 70);
    /* A pooling the kernel does not take (3x3 windows) stays a layer of its own. */
    check_case("BatchNormalization()\nActivation('relu')\nMaxPooling2D(3)\nFlatten()\nDense(3, activation='softmax')\n",
               6, 6, 16, 1, dnnl_nChw16c, 2, 80);
}

/* ---- a batch over two ranks ---- */

struct half {
    struct run *r;
    const float *dy;
    struct step_ctx ctx;
};

static void *run_half(void *arg)
{
    struct half *h = arg;
    run_forward(h->r, &h->ctx);
    run_backward(h->r, &h->ctx, h->dy);
    return NULL;
}

/* The batch's two uneven halves on two ranks give the whole batch's output and input gradient, and (added
 * up) its gradient slots: the statistics are the global batch's. */
static void test_two_ranks_are_one_batch(void **state)
{
    (void)state;
    static struct model m;
    struct dnn d;
    const int n = 7, n0 = 4, h = 6, w = 6, c = 20;
    const int bi = parse(&m, relu_pool, h, w, c);
    LC_OK(dnn_init(&d, err));
    const long per_in = (long)h * w * c, per_out = (long)(h / 2) * (w / 2) * c;
    float *params = lc_floats(m.n_params), *x = lc_floats((size_t)n * per_in), *dy = lc_floats((size_t)n * per_out);
    float *y = lc_floats((size_t)n * per_out), *ys = lc_floats((size_t)n * per_out);
    float *dx = lc_floats((size_t)n * per_in), *dxs = lc_floats((size_t)n * per_in);
    fill_params(&m, bi, params, 90);
    fill_input(x, (size_t)n * per_in, c, per_in, 91);
    lc_fill(dy, (size_t)n * per_out, -1.0, 1.0, 92);
    dnnl_memory_desc_t md[3];
    const int sizes[3] = {n, n0, n - n0};
    for (int i = 0; i < 3; i++) {
        dnnl_dims_t dims = {sizes[i], c, h, w};
        assert_int_equal(dnnl_memory_desc_init_by_tag(&md[i], 4, dims, dnnl_f32, dnnl_nChw16c), dnnl_success);
    }
    struct run whole, r0, r1;
    run_create(&whole, &d, &m, bi, 2, 1, n, &md[0], x, params, m.n_params);
    run_create(&r0, &d, &m, bi, 2, 1, n0, &md[1], x, params, m.n_params);
    run_create(&r1, &d, &m, bi, 2, 1, n - n0, &md[2], x + n0 * per_in, params, m.n_params);
    struct step_ctx ctx = {&d, 1, 1, 0, NULL, n, NULL, NULL, 0};
    run_forward(&whole, &ctx);
    run_backward(&whole, &ctx, dy);
    read_out(&whole, y);
    read_dx(&whole, dx);

    struct pair pair;
    pthread_barrier_init(&pair.barrier, NULL, 2);
    struct member m0 = {&pair, 0, {0}}, m1 = {&pair, 1, {0}};
    struct half a = {&r0, dy, {&d, 1, 1, 0, NULL, n, pair_sum, &m0, 0}};
    struct half b = {&r1, dy + n0 * per_out, {&d, 1, 1, 0, NULL, n, pair_sum, &m1, 0}};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, run_half, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, run_half, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&pair.barrier);
    read_out(&r0, ys);
    read_out(&r1, ys + n0 * per_out);
    read_dx(&r0, dxs);
    read_dx(&r1, dxs + n0 * per_in);
    expect_close("two ranks' y", ys, y, (size_t)n * per_out, 1e-5);
    expect_close("two ranks' dx", dxs, dx, (size_t)n * per_in, 1e-5);
    for (size_t i = 0; i < m.n_params; i++) {
        float sum = r0.grads[i] + r1.grads[i];
        expect_close("two ranks' gradient slots", &sum, &whole.grads[i], 1, 1e-5);
    }
    run_destroy(&whole);
    run_destroy(&r0);
    run_destroy(&r1);
    dnn_release(&d);
    free(params), free(x), free(dy), free(y), free(ys), free(dx), free(dxs);
}

/* ---- which layers fuse: from the readers of each layer, not from the order ---- */

/* Residual blocks on the same input: the first two end in BatchNormalization + Add + ReLU, which fuse (the first
 * one's shortcut comes from a ZeroPadding2D, in a layout of its own, and is also read by a Conv2D; the second
 * Add lists its inputs the other way round); the third's projection shortcut, a Conv2D between the
 * BatchNormalization and the Add, keeps them apart. */
static const char res_text[] = "inputs = Input(shape=(11, 11, 3))\n"
                               "x = Conv2D(16, 3, use_bias=False)(inputs)\n"
                               "x = ZeroPadding2D(1)(x)\n"
                               "y = Conv2D(16, 3, padding='same')(x)\n"
                               "y = BatchNormalization()(y)\n"
                               "x = Add()([x, y])\n"
                               "x = Activation('relu')(x)\n"
                               "y = Conv2D(16, 3, padding='same', use_bias=False)(x)\n"
                               "y = BatchNormalization(momentum=0.9, center=False)(y)\n"
                               "x = Add()([y, x])\n"
                               "x = Activation('relu')(x)\n"
                               "y = Conv2D(32, 3, strides=2, padding='same')(x)\n"
                               "y = BatchNormalization()(y)\n"
                               "s = Conv2D(32, 1, strides=2)(x)\n"
                               "x = Add()([s, y])\n"
                               "x = Activation('relu')(x)\n"
                               "x = GlobalAveragePooling2D()(x)\n"
                               "outputs = Dense(4, activation='softmax')(x)\n";


static void test_fusable(void **state)
{
    (void)state;
    static struct model m;
    parse(&m, "Conv2D(8, 3, use_bias=False)\nBatchNormalization()\nActivation('relu')\nMaxPooling2D(2)\n"
              "BatchNormalization()\nActivation('tanh')\nBatchNormalization()\nDropout(0.1)\nActivation('relu')\n"
              "Flatten()\nDense(4)\nBatchNormalization()\nActivation('relu')\nDense(3, activation='softmax')\n",
          9, 9, 3);
    assert_int_equal(bn_relu_fusable(&m, 1), 0); /* a Conv2D */
    assert_int_equal(bn_relu_fusable(&m, 2), 2); /* + ReLU + 2x2 pooling */
    assert_int_equal(bn_relu_fusable(&m, 5), 0); /* tanh */
    assert_int_equal(bn_relu_fusable(&m, 7), 0); /* read by a Dropout */
    assert_int_equal(bn_relu_fusable(&m, 12), 1); /* after a Dense: no pooling follows */
    /* Edges decide: a second reader of the BatchNormalization's output (as a residual connection has) keeps it
     * a layer of its own; a second reader of the ReLU's output keeps the pooling apart. */
    m.layers[4].n_inputs = 2;
    m.layers[4].inputs[1] = 2;
    assert_int_equal(bn_relu_fusable(&m, 2), 0);
    m.layers[4].inputs[1] = 3;
    assert_int_equal(bn_relu_fusable(&m, 2), 1);
    m.layers[4].n_inputs = 1;
    /* The next layer in the array that does not read the BatchNormalization: no fusion. */
    m.layers[3].inputs[0] = 1;
    assert_int_equal(bn_relu_fusable(&m, 2), 0);
    assert_int_equal(bn_relu_shortcut(&m, 2), -1);
}

/* The residual network's blocks (res_text below): a BatchNormalization, an Add of it and one other tensor (the
 * shortcut), a ReLU that alone reads the sum. */
static void test_fusable_add(void **state)
{
    (void)state;
    static struct model m;
    struct error err = {0};
    if (model_parse(&m, res_text, "res", &err) != ERR_OK)
        fail_msg("model: %s", err.msg);
    assert_int_equal(bn_relu_fusable(&m, 4), 2);
    assert_int_equal(bn_relu_shortcut(&m, 4), 2); /* the ZeroPadding2D */
    assert_ptr_equal(bn_relu_ops(&m, 4), &layer_bn_add_relu);
    assert_int_equal(bn_relu_fusable(&m, 8), 2);
    assert_int_equal(bn_relu_shortcut(&m, 8), 6); /* Add()([y, x]) */
    assert_int_equal(bn_relu_fusable(&m, 12), 0); /* the projection Conv2D sits between it and the Add */
    assert_null(bn_relu_ops(&m, 12));
    /* A second reader of the sum (the Add's output) keeps the ReLU, and so the Add, apart. */
    m.layers[7].inputs[0] = 5;
    assert_int_equal(bn_relu_fusable(&m, 4), 0);
    m.layers[7].inputs[0] = 6;
    /* An Add of the BatchNormalization with itself has no shortcut. */
    m.layers[5].inputs[0] = 4;
    assert_int_equal(bn_relu_fusable(&m, 4), 0);
    m.layers[5].inputs[0] = 2;
    /* A ReLU that is the model's softmax-free output or a tanh does not fuse. */
    m.layers[6].u.act.act = ACT_TANH;
    assert_int_equal(bn_relu_fusable(&m, 4), 0);
}

/* ---- whole networks ---- */

static const char net_text[] = "Input(shape=(11, 11, 3))\n"
                               "Conv2D(16, 3, padding='same', use_bias=False)\n"
                               "BatchNormalization()\n"
                               "Activation('relu')\n"
                               "MaxPooling2D(2)\n"
                               "Conv2D(20, 2, padding='same')\n"
                               "BatchNormalization(momentum=0.9)\n"
                               "Activation('relu')\n"
                               "MaxPooling2D(2)\n"
                               "Conv2D(8, 2, use_bias=False)\n"
                               "BatchNormalization()\n"
                               "Activation('relu')\n"
                               "Dropout(0.2)\n"
                               "Flatten()\n"
                               "Dense(12, use_bias=False)\n"
                               "BatchNormalization(scale=False)\n"
                               "Activation('relu')\n"
                               "Dense(4, activation='softmax')\n";

enum { NB = 10, SAMPLE = 11 * 11 * 3, CLASSES = 4 };

static struct net *make_net_of(const char *text, int no_fusion)
{
    static struct model m; /* large for the stack; net_create copies it */
    struct model *mp = &m;
    struct error err = {0};
    struct net *net = NULL;
    if (model_parse(mp, text, "bn-net", &err) != ERR_OK)
        fail_msg("model: %s", err.msg);
    if (net_create(&net, mp, &err) != ERR_OK)
        fail_msg("net: %s", err.msg);
    net->no_fusion = no_fusion;
    net_init_params(net, 5);
    return net;
}


static void make_batch(uint8_t *images, int32_t *labels, int64_t *ids)
{
    struct rng r;
    rng_seed(&r, 17, 0);
    for (int i = 0; i < NB * SAMPLE; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < NB; i++) {
        labels[i] = (int32_t)rng_below(&r, CLASSES);
        ids[i] = 200 + i;
    }
}

/* A step of plain SGD with the gradient slab g, and the moving averages folded in as the optimizer does. */
static void apply(struct net *net, const float *g)
{
    const struct model *m = &net->model;
    for (int i = 1; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i].n_params; k++) {
            const struct param_info *p = &m->layers[i].params[k];
            float *w = net->params + p->offset;
            for (size_t j = 0; j < p->size; j++)
                w[j] = p->moving ? (float)(w[j] * p->momentum + g[p->offset + j] * (1.0 - p->momentum))
                                 : w[j] - 0.1f * g[p->offset + j];
        }
}

/* Five training steps of text with and without the fusion: the same losses and weights up to float rounding.
 * The layers in `absorbed` (a -1 ends the list) must have run inside a fused kernel, those in `apart` not. */
static void train_fused_and_apart(const char *text, const int *absorbed, const int *apart)
{
    struct error err = {0};
    uint8_t images[NB * SAMPLE];
    int32_t labels[NB];
    int64_t ids[NB];
    make_batch(images, labels, ids);
    struct net *fused = make_net_of(text, 0), *plain = make_net_of(text, 1);
    struct net_batch b = {NB, images, labels, ids, 0};
    /* The timing marks the layers the kernels ran. */
    static struct net_timing timing;
    memset(&timing, 0, sizeof timing);
    fused->timing = &timing;
    for (int step = 0; step < 5; step++) {
        struct net_stats s1, s2;
        if (net_train_batch(fused, &b, NB, 3, (uint64_t)step, &s1, &err) != ERR_OK ||
            net_train_batch(plain, &b, NB, 3, (uint64_t)step, &s2, &err) != ERR_OK)
            fail_msg("train: %s", err.msg);
        assert_true(fabs(s1.loss_sum - s2.loss_sum) <= 1e-4 * fabs(s2.loss_sum));
        expect_close("gradient", fused->grads, plain->grads, fused->n_params, 2e-3);
        apply(fused, fused->grads);
        apply(plain, plain->grads);
    }
    for (int i = 0; absorbed[i] >= 0; i++)
        if (!timing.absorbed[absorbed[i]])
            fail_msg("layer %d was not absorbed", absorbed[i]);
    for (int i = 0; apart[i] >= 0; i++)
        if (timing.absorbed[apart[i]])
            fail_msg("layer %d was absorbed", apart[i]);
    expect_close("weights after 5 steps", fused->params, plain->params, fused->n_params, 1e-4);
    /* Inference on the trained weights (the moving averages). */
    float p1[NB * CLASSES], p2[NB * CLASSES];
    if (net_infer_batch(fused, &b, p1, NULL, &err) != ERR_OK || net_infer_batch(plain, &b, p2, NULL, &err) != ERR_OK)
        fail_msg("infer: %s", err.msg);
    expect_close("inference probabilities", p1, p2, NB * CLASSES, 1e-4);
    net_destroy(fused);
    net_destroy(plain);
}

static void test_training_matches_unfused(void **state)
{
    (void)state;
    /* Every BatchNormalization fuses here; the Dropout after the third block's ReLU stays a layer. */
    train_fused_and_apart(net_text, (const int[]){3, 4, 7, 8, 11, 16, -1}, (const int[]){12, -1});
}

/* The residual network: the two blocks' Add and ReLU run in the BatchNormalization's kernel, and the
 * shortcuts get their gradients from it (a dropped or unmasked shortcut gradient changes the first conv's). */
static void test_residual_matches_unfused(void **state)
{
    (void)state;
    train_fused_and_apart(res_text, (const int[]){5, 6, 9, 10, -1}, (const int[]){12, 14, 15, -1});
}

struct net_half {
    struct net *net;
    struct net_batch b;
    int step;
    int rc;
};

static void *train_half(void *arg)
{
    struct net_half *h = arg;
    struct net_stats s;
    struct error err = {0};
    h->rc = net_train_batch(h->net, &h->b, NB, 3, (uint64_t)h->step, &s, &err);
    return NULL;
}

/* One rank with the whole batch against two with its halves (the gradients added, as the exchange does),
 * three steps, all with the fusion. */
static void two_ranks_train_as_one(const char *text)
{
    struct error err = {0};
    uint8_t images[NB * SAMPLE];
    int32_t labels[NB];
    int64_t ids[NB];
    make_batch(images, labels, ids);
    struct net *one = make_net_of(text, 0), *r0 = make_net_of(text, 0), *r1 = make_net_of(text, 0);
    struct pair pair;
    pthread_barrier_init(&pair.barrier, NULL, 2);
    struct member m0 = {&pair, 0, {0}}, m1 = {&pair, 1, {0}};
    r0->sum = r1->sum = pair_sum;
    r0->sum_arg = &m0;
    r1->sum_arg = &m1;
    const int n0 = 6;
    float *g = lc_floats(one->n_params);
    for (int step = 0; step < 3; step++) {
        struct net_stats s;
        struct net_batch whole = {NB, images, labels, ids, 0};
        if (net_train_batch(one, &whole, NB, 3, (uint64_t)step, &s, &err) != ERR_OK)
            fail_msg("train: %s", err.msg);
        struct net_half a = {r0, {n0, images, labels, ids, 0}, step, 0};
        struct net_half b = {r1, {NB - n0, images + n0 * SAMPLE, labels + n0, ids + n0, 0}, step, 0};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, train_half, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, train_half, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        assert_int_equal(a.rc, ERR_OK);
        assert_int_equal(b.rc, ERR_OK);
        for (size_t i = 0; i < one->n_params; i++)
            g[i] = r0->grads[i] + r1->grads[i];
        expect_close("two ranks' gradient", g, one->grads, one->n_params, 1e-3);
        apply(one, one->grads);
        apply(r0, g);
        apply(r1, g);
    }
    expect_close("two ranks' weights", r0->params, one->params, one->n_params, 1e-4);
    pthread_barrier_destroy(&pair.barrier);
    free(g);
    net_destroy(one);
    net_destroy(r0);
    net_destroy(r1);
}

static void test_two_ranks_train_as_one(void **state)
{
    (void)state;
    two_ranks_train_as_one(net_text);
    two_ranks_train_as_one(res_text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_with_pooling),
        cmocka_unit_test(test_without_pooling),
        cmocka_unit_test(test_two_ranks_are_one_batch),
        cmocka_unit_test(test_fusable),
        cmocka_unit_test(test_fusable_add),
        cmocka_unit_test(test_training_matches_unfused),
        cmocka_unit_test(test_residual_matches_unfused),
        cmocka_unit_test(test_two_ranks_train_as_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

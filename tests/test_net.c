/* test_net.c: the network's own optimisations change nothing it computes: plans that move a ReLU's derivative
 * into the MaxPooling2D after it give the gradients of plans that do not, bit for bit; the fused first
 * Conv2D + MaxPooling2D kernel gives them up to float rounding; per-layer timing changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conv_pool.h"
#include "model.h"
#include "net.h"
#include "rng.h"

/* Windows that overlap (3, stride 2, 'same') and ones that do not, after a ReLU each; a tanh that must keep
 * its own derivative. */
static const char model_text[] = "Input(shape=(12, 12, 3))\n"
                                 "Conv2D(16, 2, padding='same', activation='relu')\n"
                                 "MaxPooling2D(3, strides=2, padding='same')\n"
                                 "Conv2D(16, 3, padding='same', activation='relu')\n"
                                 "MaxPooling2D(2)\n"
                                 "Conv2D(8, 2, activation='tanh')\n"
                                 "Dropout(0.3)\n"
                                 "Flatten()\n"
                                 "Dense(20, activation='relu')\n"
                                 "Dense(5, activation='softmax')\n";

enum { B = 9, CLASSES = 5, SAMPLE = 12 * 12 * 3 };

static struct net *make_net(int no_fusion)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    if (model_parse(&m, model_text, "test-model", &err) != ERR_OK)
        fail_msg("model: %s", err.msg);
    if (net_create(&net, &m, &err) != ERR_OK)
        fail_msg("net: %s", err.msg);
    net->no_fusion = no_fusion;
    net_init_params(net, 5);
    return net;
}

/* Half the images are dark (pixels 0 or 1): many ReLU outputs are 0, so pooling windows hold ties. */
static void make_batch(uint8_t *images, int32_t *labels, int64_t *ids)
{
    struct rng r;
    rng_seed(&r, 11, 0);
    for (int i = 0; i < B * SAMPLE; i++)
        images[i] = (uint8_t)rng_below(&r, (i / SAMPLE) % 2 ? 256 : 2);
    for (int i = 0; i < B; i++) {
        labels[i] = (int32_t)rng_below(&r, CLASSES);
        ids[i] = 100 + i;
    }
}

/* Three steps (weights move between them, as in training) on both nets; gradients compared every step. */
static void test_fused_relu_backward_is_bit_identical(void **state)
{
    (void)state;
    struct error err = {0};
    uint8_t images[B * SAMPLE];
    int32_t labels[B];
    int64_t ids[B];
    make_batch(images, labels, ids);
    struct net *fused = make_net(0), *plain = make_net(1);
    struct net_batch b = {B, images, labels, ids, 0};
    for (int step = 0; step < 3; step++) {
        struct net_stats s1, s2;
        if (net_train_batch(fused, &b, B, 3, (uint64_t)step, &s1, &err) != ERR_OK ||
            net_train_batch(plain, &b, B, 3, (uint64_t)step, &s2, &err) != ERR_OK)
            fail_msg("train: %s", err.msg);
        assert_memory_equal(fused->grads, plain->grads, sizeof(float) * fused->n_params);
        assert_true(s1.loss_sum == s2.loss_sum);
        for (size_t i = 0; i < fused->n_params; i++) {
            fused->params[i] -= 0.05f * fused->grads[i];
            plain->params[i] -= 0.05f * plain->grads[i];
        }
    }
    net_destroy(fused);
    net_destroy(plain);
}

/* First layers the fused Conv2D + MaxPooling2D kernel takes (conv_pool.h), with 'same' padding at the image's
 * edge, a pooling that drops the last row and column (13 -> 6), 32 filters (two blocks of 16), 3x3x3 taps. */
static const char *const fused_models[] = {
    "Input(shape=(13, 13, 3))\n"
    "Conv2D(32, 3, padding='same', activation='relu')\n"
    "MaxPooling2D(2)\n"
    "Conv2D(16, 2, activation='relu')\n"
    "Flatten()\n"
    "Dense(5, activation='softmax')\n",
    "Input(shape=(12, 12, 1))\n"
    "Conv2D(16, 2, padding='same', activation='relu')\n"
    "MaxPooling2D(2)\n"
    "Dropout(0.2)\n"
    "Flatten()\n"
    "Dense(5, activation='softmax')\n",
    "Input(shape=(12, 12, 3))\n"
    "Conv2D(16, 2, activation='relu', use_bias=False)\n"
    "MaxPooling2D(3)\n"
    "Flatten()\n"
    "Dense(5, activation='softmax')\n",
    /* 2x2 windows and 12 taps: a taps-specific kernel, here with two blocks of 16 filters and a dropped edge */
    "Input(shape=(13, 13, 3))\n"
    "Conv2D(32, 2, padding='same', activation='relu')\n"
    "MaxPooling2D(2)\n"
    "Flatten()\n"
    "Dense(5, activation='softmax')\n",
    /* 2x2 windows and 9 taps (3x3 on one channel), no bias */
    "Input(shape=(12, 12, 1))\n"
    "Conv2D(16, 3, padding='same', activation='relu', use_bias=False)\n"
    "MaxPooling2D(2)\n"
    "Flatten()\n"
    "Dense(5, activation='softmax')\n",
};

static struct net *make_net_from(const char *text, int no_fusion)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    if (model_parse(&m, text, "test-model", &err) != ERR_OK)
        fail_msg("model: %s", err.msg);
    if (net_create(&net, &m, &err) != ERR_OK)
        fail_msg("net: %s", err.msg);
    net->no_fusion = no_fusion;
    net_init_params(net, 5);
    return net;
}

/* Pixels in runs of `run` bytes, alternately any value and dark (below `dark`: many ReLU outputs 0, so
 * pooling windows hold ties); labels at random, ids 0..n-1. */
static void random_batch(uint64_t seed, size_t run, uint64_t dark, uint8_t *images, size_t bytes, int32_t *labels,
                         int64_t *ids, int n)
{
    struct rng r;
    rng_seed(&r, seed, 0);
    for (size_t i = 0; i < bytes; i++)
        images[i] = (uint8_t)rng_below(&r, (i / run) % 2 ? 256 : dark);
    for (int i = 0; i < n; i++) {
        labels[i] = (int32_t)rng_below(&r, CLASSES);
        ids[i] = i;
    }
}

/* The fused first layers compute what the separate ones do, in another summation order: gradients and loss
 * agree to float rounding; predictions too. */
static void test_fused_first_layers_match(void **state)
{
    (void)state;
    struct error err = {0};
    enum { N = 7 };
    uint8_t images[N * 13 * 13 * 3];
    int32_t labels[N];
    int64_t ids[N];
    float p1[N * CLASSES], p2[N * CLASSES];
    random_batch(17, 300, 3, images, sizeof images, labels, ids, N);
    for (size_t k = 0; k < sizeof fused_models / sizeof fused_models[0]; k++) {
        struct net *fused = make_net_from(fused_models[k], 0), *plain = make_net_from(fused_models[k], 1);
        struct net_batch b = {N, images, labels, ids, 0};
        struct net_stats s1, s2;
        if (net_train_batch(fused, &b, N, 3, 0, &s1, &err) != ERR_OK ||
            net_train_batch(plain, &b, N, 3, 0, &s2, &err) != ERR_OK)
            fail_msg("train: %s", err.msg);
        assert_true(s1.loss_sum - s2.loss_sum < 1e-4 && s2.loss_sum - s1.loss_sum < 1e-4);
        float scale = 0;
        for (size_t i = 0; i < plain->n_params; i++)
            scale = plain->grads[i] > scale ? plain->grads[i] : -plain->grads[i] > scale ? -plain->grads[i] : scale;
        for (size_t i = 0; i < plain->n_params; i++)
            if (fused->grads[i] - plain->grads[i] > 1e-5f * scale || plain->grads[i] - fused->grads[i] > 1e-5f * scale)
                fail_msg("model %zu: gradient %zu is %g fused, %g not (largest %g)", k, i, fused->grads[i],
                         plain->grads[i], scale);
        if (net_infer_batch(fused, &b, p1, NULL, &err) != ERR_OK ||
            net_infer_batch(plain, &b, p2, NULL, &err) != ERR_OK)
            fail_msg("infer: %s", err.msg);
        for (int i = 0; i < N * CLASSES; i++)
            assert_true(p1[i] - p2[i] < 1e-5f && p2[i] - p1[i] < 1e-5f);
        net_destroy(fused);
        net_destroy(plain);
    }
}

/* The kernels for a fixed kernel shape (2x2 windows: models 1, 3 and 4 above, counted from 0) give the generic
 * kernel's bits: gradients, loss and predictions, over steps that move the weights. */
static void test_fixed_shape_kernels_are_bit_identical(void **state)
{
    (void)state;
    struct error err = {0};
    enum { N = 5 };
    uint8_t images[N * 13 * 13 * 3];
    int32_t labels[N];
    int64_t ids[N];
    float p1[N * CLASSES], p2[N * CLASSES];
    random_batch(23, 200, 2, images, sizeof images, labels, ids, N);
    for (size_t k = 0; k < sizeof fused_models / sizeof fused_models[0]; k++) {
        struct net *fixed = make_net_from(fused_models[k], 0);
        conv_pool_generic = 1;
        struct net *generic = make_net_from(fused_models[k], 0);
        struct net_batch b = {N, images, labels, ids, 0};
        struct net_stats s1, s2;
        for (int step = 0; step < 3; step++) {
            if (net_train_batch(generic, &b, N, 3, (uint64_t)step, &s2, &err) != ERR_OK)
                fail_msg("train: %s", err.msg);
            conv_pool_generic = 0;
            if (net_train_batch(fixed, &b, N, 3, (uint64_t)step, &s1, &err) != ERR_OK)
                fail_msg("train: %s", err.msg);
            conv_pool_generic = 1;
            assert_memory_equal(fixed->grads, generic->grads, sizeof(float) * fixed->n_params);
            assert_true(s1.loss_sum == s2.loss_sum);
            for (size_t i = 0; i < fixed->n_params; i++) {
                fixed->params[i] -= 0.5f * fixed->grads[i];
                generic->params[i] -= 0.5f * generic->grads[i];
            }
        }
        /* Inference plans are made on first use: each with its own setting. */
        if (net_infer_batch(generic, &b, p2, NULL, &err) != ERR_OK)
            fail_msg("infer: %s", err.msg);
        conv_pool_generic = 0;
        if (net_infer_batch(fixed, &b, p1, NULL, &err) != ERR_OK)
            fail_msg("infer: %s", err.msg);
        assert_memory_equal(p1, p2, sizeof p1);
        net_destroy(fixed);
        net_destroy(generic);
    }
}

/* The AVX2 compilation of the fused kernels gives the AVX-512 one's bits (the same operations per lane), for
 * every fused model above. Only where the CPU has AVX-512 (else both would be AVX2). */
static void test_avx2_kernels_are_the_avx512_bits(void **state)
{
    (void)state;
    if (!conv_pool_has_avx512())
        skip();
    struct error err = {0};
    enum { N = 5 };
    uint8_t images[N * 13 * 13 * 3];
    int32_t labels[N];
    int64_t ids[N];
    float p1[N * CLASSES], p2[N * CLASSES];
    random_batch(29, 150, 4, images, sizeof images, labels, ids, N);
    for (int generic = 0; generic <= 1; generic++)
        for (size_t k = 0; k < sizeof fused_models / sizeof fused_models[0]; k++) {
            conv_pool_generic = generic;
            struct net *wide = make_net_from(fused_models[k], 0);
            conv_pool_avx2_only = 1;
            struct net *narrow = make_net_from(fused_models[k], 0);
            struct net_batch b = {N, images, labels, ids, 0};
            struct net_stats s1, s2;
            for (int step = 0; step < 2; step++) {
                conv_pool_avx2_only = 0;
                if (net_train_batch(wide, &b, N, 3, (uint64_t)step, &s1, &err) != ERR_OK)
                    fail_msg("train: %s", err.msg);
                conv_pool_avx2_only = 1;
                if (net_train_batch(narrow, &b, N, 3, (uint64_t)step, &s2, &err) != ERR_OK)
                    fail_msg("train: %s", err.msg);
                assert_memory_equal(wide->grads, narrow->grads, sizeof(float) * wide->n_params);
                assert_true(s1.loss_sum == s2.loss_sum);
                for (size_t i = 0; i < wide->n_params; i++) {
                    wide->params[i] -= 0.5f * wide->grads[i];
                    narrow->params[i] -= 0.5f * narrow->grads[i];
                }
            }
            conv_pool_avx2_only = 0;
            if (net_infer_batch(wide, &b, p1, NULL, &err) != ERR_OK)
                fail_msg("infer: %s", err.msg);
            conv_pool_avx2_only = 1;
            if (net_infer_batch(narrow, &b, p2, NULL, &err) != ERR_OK)
                fail_msg("infer: %s", err.msg);
            conv_pool_avx2_only = 0;
            assert_memory_equal(p1, p2, sizeof p1);
            net_destroy(wide);
            net_destroy(narrow);
        }
    conv_pool_generic = 0;
}

static void test_timing_changes_nothing(void **state)
{
    (void)state;
    struct error err = {0};
    uint8_t images[B * SAMPLE];
    int32_t labels[B];
    int64_t ids[B];
    make_batch(images, labels, ids);
    struct net *timed = make_net(0), *untimed = make_net(0);
    struct net_timing t;
    memset(&t, 0, sizeof t);
    timed->timing = &t;
    struct net_batch b = {B, images, labels, ids, 0};
    struct net_stats s1, s2;
    if (net_train_batch(timed, &b, B, 3, 0, &s1, &err) != ERR_OK ||
        net_train_batch(untimed, &b, B, 3, 0, &s2, &err) != ERR_OK)
        fail_msg("train: %s", err.msg);
    assert_memory_equal(timed->grads, untimed->grads, sizeof(float) * timed->n_params);
    assert_int_equal(t.steps, 1);
    assert_true(t.fwd[1] > 0 && t.bwd[1] > 0);
    net_destroy(timed);
    net_destroy(untimed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_relu_backward_is_bit_identical),
        cmocka_unit_test(test_fused_first_layers_match),
        cmocka_unit_test(test_fixed_shape_kernels_are_bit_identical),
        cmocka_unit_test(test_avx2_kernels_are_the_avx512_bits),
        cmocka_unit_test(test_timing_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

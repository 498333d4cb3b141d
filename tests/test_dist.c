/* test_dist.c: run under `mpirun -np 2`: the all-reduced gradient of the ranks' shares of a global batch
 * equals the gradient of the whole batch computed by one rank (Dropout on, uneven shares). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dist.h"
#include "model.h"
#include "net.h"
#include "rng.h"

static const char model_text[] = "Input(shape=(8, 8, 2))\n"
                                 "Conv2D(4, 3, padding='same', activation='relu')\n"
                                 "MaxPooling2D(2)\n"
                                 "Conv2D(6, 2, padding='same', activation='tanh')\n"
                                 "Dropout(0.3)\n"
                                 "Flatten()\n"
                                 "Dense(5, activation='softmax')\n";

enum { B = 7, CLASSES = 5, SAMPLE = 8 * 8 * 2 };

static struct net *make_net(void)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    if (model_parse(&m, model_text, "test-model", &err) != ERR_OK)
        fail_msg("model: %s", err.msg);
    if (net_create(&net, &m, &err) != ERR_OK)
        fail_msg("net: %s", err.msg);
    net_init_params(net, 42);
    return net;
}

static void make_batch(uint8_t *images, int32_t *labels, int64_t *ids)
{
    struct rng r;
    rng_seed(&r, 7, 0);
    for (int i = 0; i < B * SAMPLE; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < B; i++) {
        labels[i] = (int32_t)rng_below(&r, CLASSES);
        ids[i] = 1000 + 3 * i; /* global sample indices, not positions */
    }
}

static void test_allreduced_gradient_equals_single_rank(void **state)
{
    (void)state;
    int rank = dist_rank(), size = dist_size();
    assert_int_equal(size, 2);
    struct error err = {0};
    uint8_t images[B * SAMPLE];
    int32_t labels[B];
    int64_t ids[B];
    make_batch(images, labels, ids);
    struct net *net = make_net();
    size_t n = net->n_params;
    const uint64_t seed = 5, step = 11;

    /* The whole batch on this rank alone. */
    struct net_batch all = {B, images, labels, ids, 0};
    struct net_stats st_all;
    if (net_train_batch(net, &all, B, seed, step, &st_all, &err) != ERR_OK)
        fail_msg("full batch: %s", err.msg);
    float *full = malloc(sizeof(float) * n);
    memcpy(full, net->grads, sizeof(float) * n);

    /* This rank's share (3 or 4 samples), summed over ranks. */
    int lo = B * rank / size, hi = B * (rank + 1) / size;
    struct net_batch mine = {hi - lo, images + lo * SAMPLE, labels + lo, ids + lo, 0};
    struct net_stats st;
    if (net_train_batch(net, &mine, B, seed, step, &st, &err) != ERR_OK)
        fail_msg("share: %s", err.msg);
    double loss = st.loss_sum;
    dist_allreduce_sum_f32(net->grads, n);
    dist_allreduce_sum_f64(&loss, 1);

    double worst = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)net->grads[i] - full[i]);
        worst = d > worst ? d : worst;
        norm = fabs(full[i]) > norm ? fabs(full[i]) : norm;
    }
    assert_true(norm > 1e-4); /* a gradient that is all zeros would prove nothing */
    if (worst > 1e-5 * norm)
        fail_msg("rank %d: all-reduced gradient differs from the single-rank one by %g (max |g| %g)", rank,
                 worst, norm);
    assert_true(fabs(loss - st_all.loss_sum) < 1e-4 * fabs(st_all.loss_sum));
    free(full);
    net_destroy(net);
}

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduced_gradient_equals_single_rank),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* A rank that failed must not leave its peer waiting: agree on the result. */
    int worst = dist_agree(failed, NULL);
    dist_finalize();
    return worst ? 1 : 0;
}

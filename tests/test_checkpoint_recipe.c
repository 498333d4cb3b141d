/* test_checkpoint_recipe.c: the training recipe in checkpoints (issue 14): the optimizers' new hyper-parameters
 * and /trainer's accumulate and label_smoothing round-trip exactly, training_config carries Keras's fields, and a
 * file from before the recipes (without those attributes) reads as "no recipe". */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "checkpoint.h"

static const char *const text = "Input(shape=(6, 6, 1))\n"
                                "Conv2D(2, 3, kernel_regularizer=l2(0.0001))\n"
                                "Flatten()\n"
                                "Dense(3, activation='softmax', kernel_regularizer=l1_l2(l1=1e-05, l2=0.0003))\n";

static void assert_ok(int rc, const struct error *err)
{
    if (rc != ERR_OK)
        fail_msg("rc %d: %s", rc, err->msg);
}

/* A string attribute of the file's root (caller frees). */
static char *root_attr(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
    char *s = NULL, *copy;
    assert_true(H5Aread(a, t, &s) >= 0);
    copy = strdup(s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
    return copy;
}

/* Writes a checkpoint of the model with optimizer conf c and the recipe's state; reads it back into *st2. */
static void round_trip(const char *path, const struct optim_conf *c, int64_t accumulate, double smoothing,
                       struct checkpoint_state *st2)
{
    struct model m;
    struct error err = {0};
    struct optim opt, opt2;
    assert_ok(model_parse(&m, text, "m.txt", &err), &err);
    struct net *net = NULL;
    assert_ok(net_create(&net, &m, &err), &err);
    net_init_params(net, 3);
    assert_ok(optim_init(&opt, c, net->n_params, &err), &err);
    struct checkpoint_state st = {.step = 5, .epoch = 1, .epoch_step = 2, .seed = 9, .global_batch = 8,
                                  .world_size = 2, .best_val_loss = 1.5, .accumulate = accumulate,
                                  .label_smoothing = smoothing};
    assert_ok(checkpoint_write(path, net, &opt, &st, &err), &err);
    assert_ok(checkpoint_read_state(path, NULL, st2, &err), &err);
    assert_ok(optim_init(&opt2, &st2->optim, net->n_params, &err), &err);
    assert_ok(checkpoint_read_state(path, &opt2, st2, &err), &err);
    optim_release(&opt2);
    optim_release(&opt);
    net_destroy(net);
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/recipe_ckpt_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct optim_conf c;
    struct checkpoint_state st;
    optim_defaults(&c, OPTIM_LARS);
    c.lr = 2.5;
    c.momentum = 0.8;
    c.weight_decay = 1.25e-4;
    c.lars_eta = 0.002;
    c.clipnorm = 0.75;
    round_trip(path, &c, 4, 0.1, &st);
    assert_int_equal(st.optim.kind, OPTIM_LARS);
    assert_true(st.optim.lr == 2.5 && st.optim.momentum == 0.8 && st.optim.weight_decay == 1.25e-4 &&
                st.optim.lars_eta == 0.002 && st.optim.clipnorm == 0.75 && st.optim.global_clipnorm == 0);
    assert_int_equal(st.accumulate, 4);
    assert_true(st.label_smoothing == 0.1);
    char *tc = root_attr(path, "training_config");
    if (!strstr(tc, "\"class_name\": \"LARS\"") || !strstr(tc, "\"clipnorm\": 0.75") ||
        !strstr(tc, "\"gradient_accumulation_steps\": 4") || !strstr(tc, "\"label_smoothing\": 0.1"))
        fail_msg("training_config: %s", tc);
    free(tc);
    char *mc = root_attr(path, "model_config");
    /* jansson writes 1e-05 as 1e-5: the same double to any JSON reader. */
    if (!strstr(mc, "\"kernel_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 1e-5, \"l2\": 0.0003}}") &&
        !strstr(mc, "\"kernel_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 1e-05, \"l2\": 0.0003}}"))
        fail_msg("model_config: %s", strstr(mc, "dense_1"));
    free(mc);

    optim_defaults(&c, OPTIM_ADAMW);
    c.global_clipnorm = 3;
    round_trip(path, &c, 1, 0, &st);
    assert_int_equal(st.optim.kind, OPTIM_ADAMW);
    assert_true(st.optim.weight_decay == 0.004 && st.optim.global_clipnorm == 3 && st.optim.beta2 == 0.999);
    assert_true(st.accumulate == 1 && st.label_smoothing == 0);
    tc = root_attr(path, "training_config");
    if (!strstr(tc, "{\"class_name\": \"AdamW\", \"config\": {\"name\": \"AdamW\", \"learning_rate\": 0.001, "
                    "\"weight_decay\": 0.004") ||
        !strstr(tc, "\"loss\": \"categorical_crossentropy\"") || strstr(tc, "gradient_accumulation_steps"))
        fail_msg("training_config: %s", tc);
    free(tc);

    /* A file from before the recipes: none of the new attributes. */
    optim_defaults(&c, OPTIM_SGD);
    round_trip(path, &c, 1, 0, &st);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    static const char *const added[] = {"weight_decay", "clipnorm", "global_clipnorm", "accumulate",
                                        "label_smoothing"};
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++)
        assert_true(H5Adelete(g, added[i]) >= 0);
    H5Gclose(g);
    H5Fclose(f);
    struct error err = {0};
    memset(&st, 0xff, sizeof st);
    assert_ok(checkpoint_read_state(path, NULL, &st, &err), &err);
    assert_true(st.accumulate == 1 && st.label_smoothing == 0 && st.optim.weight_decay == 0 &&
                st.optim.clipnorm == 0 && st.optim.global_clipnorm == 0);

    /* A damaged value is refused, naming the file. */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(g, "accumulate", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t zero = 0;
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &zero) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
    assert_int_equal(checkpoint_read_state(path, NULL, &st, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "accumulate or label_smoothing is invalid"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

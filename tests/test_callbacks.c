/* test_callbacks.c: ReduceLROnPlateau and EarlyStopping on scripted metric sequences (Keras's logic worked
 * through by hand, epoch by epoch), their parsing, defaults and errors with the column, and the state's round
 * trip. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "callbacks.h"
#include "checkpoint.h"
#include "net.h"

static void add(struct callbacks *c, const char *text)
{
    struct error err = {0};
    if (callbacks_add(c, text, c->n + 1, &err) != ERR_OK)
        fail_msg("%s: %s", text, err.msg);
}

/* Runs one epoch with `value` as every monitor's value. */
static struct cb_events epoch(struct callbacks *c, long e, double value, double base_lr)
{
    double logs[CB_N_LOGS] = {value, value, value, value};
    struct cb_events ev;
    callbacks_epoch_end(c, e, logs, base_lr, &ev);
    return ev;
}

static void test_defaults(void **state)
{
    (void)state;
    struct callbacks c;
    callbacks_init(&c);
    add(&c, "ReduceLROnPlateau()");
    add(&c, "EarlyStopping()");
    assert_string_equal(c.cb[0].text, "ReduceLROnPlateau(monitor='val_loss', factor=0.10000000000000001, patience=10, "
                                      "verbose=0, mode='auto', min_delta=0.0001, cooldown=0, min_lr=0)");
    assert_string_equal(c.cb[1].text, "EarlyStopping(monitor='val_loss', min_delta=0, patience=0, verbose=0, "
                                      "mode='auto', baseline=None, restore_best_weights=False, start_from_epoch=0)");
    assert_true(c.cb[0].best == INFINITY);
    assert_true(callbacks_need_val(&c));
    assert_int_equal(callbacks_restoring(&c), -1);
    /* Positional arguments in Keras's order; the accuracy monitors maximise in auto mode. */
    callbacks_init(&c);
    add(&c, "ReduceLROnPlateau('val_accuracy', 0.5, 3)");
    add(&c, "EarlyStopping('acc', 0.01, 4, 0, 'auto', None, True)");
    assert_int_equal(c.cb[0].monitor, CB_VAL_ACC);
    assert_true(c.cb[0].maximize);
    assert_true(c.cb[0].factor == 0.5 && c.cb[0].patience == 3);
    assert_int_equal(c.cb[1].monitor, CB_ACC);
    assert_true(c.cb[1].maximize && c.cb[1].best == -INFINITY);
    assert_int_equal(callbacks_restoring(&c), 1);
    assert_false(callbacks_need_val(&c) && c.cb[1].monitor != CB_ACC);
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='loss', mode='max')");
    assert_true(c.cb[0].maximize);
    assert_false(callbacks_need_val(&c));
}

static void expect_error(const char *text, int ordinal, const char *want)
{
    struct callbacks c;
    struct error err = {0};
    callbacks_init(&c);
    assert_int_equal(callbacks_add(&c, text, ordinal, &err), ERR_USAGE);
    assert_int_equal(err.code, ERR_USAGE);
    if (!strstr(err.msg, want))
        fail_msg("%s: '%s' does not hold '%s'", text, err.msg, want);
    assert_int_equal(c.n, 0);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("ReduceLROnPlateau(factor=1.5)", 1, "--callback:1:19: ReduceLROnPlateau: does not support a factor >= 1.0");
    expect_error("ReduceLROnPlateau(factor=-0.5)", 1, "--callback:1:19: ReduceLROnPlateau: 'factor' must not be negative");
    expect_error("EarlyStopping(patiense=3)", 1, "--callback:1:15: EarlyStopping: unknown argument 'patiense'");
    expect_error("ModelCheckpoint()", 2, "--callback:2:1: unknown callback 'ModelCheckpoint'");
    expect_error("EarlyStopping(monitor='val_f1')", 1, "--callback:1:15: EarlyStopping: unknown value 'val_f1'");
    expect_error("EarlyStopping(patience=-2)", 1, "--callback:1:15: EarlyStopping: 'patience' must not be negative");
    expect_error("EarlyStopping(patience=3", 1, "--callback:1:");
    expect_error("EarlyStopping(patience=1.5)", 1, "--callback:1:15: EarlyStopping: 'patience' must be an integer");
    expect_error("ReduceLROnPlateau(min_lr=-1)", 1, "'min_lr' must not be negative");
    expect_error("ReduceLROnPlateau(cooldown=-1)", 1, "'cooldown' must not be negative");
    expect_error("ReduceLROnPlateau(min_delta=inf)", 1, "--callback:1:");
    expect_error("EarlyStopping(mode='up')", 1, "unknown value 'up' for 'mode'");
    expect_error("EarlyStopping(baseline='x')", 1, "'baseline' must be a number");
    expect_error("EarlyStopping(restore_best_weights=1, patience=2, patience=3)", 1, "repeated");
    /* Only one EarlyStopping keeps weights. */
    struct callbacks c;
    struct error err = {0};
    callbacks_init(&c);
    add(&c, "EarlyStopping(restore_best_weights=True)");
    assert_int_equal(callbacks_add(&c, "EarlyStopping(restore_best_weights=True)", 2, &err), ERR_USAGE);
    assert_non_null(strstr(err.msg, "--callback:2:1: only one EarlyStopping"));
}

static void test_plateau(void **state)
{
    (void)state;
    struct callbacks c;
    callbacks_init(&c);
    add(&c, "ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=2, min_delta=0, cooldown=1, min_lr=0.02)");
    /* base lr 0.1, floor 0.02 / 0.1 = 0.2.
     * e0 1.0 best; e1 0.9 best; e2 wait 1; e3 wait 2: x0.5, cooldown 1; e4 cooldown ends (wait 0), then wait 1;
     * e5 wait 2: x0.5 -> 0.25; e6 wait 1; e7 wait 2: 0.125 clamped to 0.2; e8 wait 1; e9, e10: at the floor,
     * nothing more (and the wait is not reset, as Keras). */
    const double seq[] = {1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95};
    const double fl = 0.02 / 0.1; /* 0.19999999999999998: the floor as the code must compute it */
    const double factor[] = {1, 1, 1, 0.5, 0.5, 0.25, 0.25, fl, fl, fl, fl};
    const int reduced[] = {0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0};
    const long wait[] = {0, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3};
    for (long e = 0; e < 11; e++) {
        struct cb_events ev = epoch(&c, e, seq[e], 0.1);
        if (c.lr_factor != factor[e] || ev.reduced != reduced[e] || c.cb[0].wait != wait[e])
            fail_msg("epoch %ld: factor %g reduced %d wait %ld", e, c.lr_factor, ev.reduced, c.cb[0].wait);
        assert_false(ev.stop);
    }
    assert_true(c.cb[0].best == 0.9 && c.cb[0].best_epoch == 1);
    /* min_delta: an improvement smaller than it is none; max mode on accuracy. */
    callbacks_init(&c);
    add(&c, "ReduceLROnPlateau(monitor='val_acc', factor=0.1, patience=1, min_delta=0.01, verbose=1)");
    epoch(&c, 0, 0.80, 0.01);
    struct cb_events ev = epoch(&c, 1, 0.805, 0.01); /* 0.805 > 0.80 + 0.01? no: wait 1 = patience */
    assert_true(ev.reduced);
    assert_true(fabs(c.lr_factor - 0.1) < 1e-17);
    assert_non_null(strstr(ev.msg, "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.001"));
    ev = epoch(&c, 2, 0.82, 0.01); /* 0.82 > 0.81 */
    assert_false(ev.reduced);
    assert_true(c.cb[0].best == 0.82);
    /* NaN never improves. */
    ev = epoch(&c, 3, NAN, 0.01);
    assert_true(ev.reduced);
}

static void test_early_stopping(void **state)
{
    (void)state;
    struct callbacks c;
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='val_loss', patience=2, restore_best_weights=True)");
    /* e0: first epoch seen, snapshot; best 0.5. e1: 0.4 best, snapshot. e2: wait 1. e3: wait 2 = patience: stop. */
    const double seq[] = {0.5, 0.4, 0.45, 0.41};
    const int snap[] = {1, 1, 0, 0}, stop[] = {0, 0, 0, 1};
    for (long e = 0; e < 4; e++) {
        struct cb_events ev = epoch(&c, e, seq[e], 0.1);
        if (ev.snapshot != snap[e] || ev.stop != stop[e])
            fail_msg("epoch %ld: snapshot %d stop %d", e, ev.snapshot, ev.stop);
        if (stop[e])
            assert_non_null(strstr(ev.msg, "Epoch 4: early stopping (best val_loss 0.4 at epoch 2)"));
    }
    assert_true(c.stopped);
    assert_int_equal(c.cb[0].stopped_epoch, 3);
    assert_int_equal(c.cb[0].best_epoch, 1);
    assert_true(c.lr_factor == 1);

    /* min_delta 0.05 (its sign does not matter, as Keras takes |min_delta|), patience 1: 0.46 is no
     * improvement on 0.5; stop at epoch 1. */
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='loss', min_delta=-0.05, patience=1)");
    assert_false(epoch(&c, 0, 0.5, 0.1).stop);
    assert_true(epoch(&c, 1, 0.46, 0.1).stop);

    /* patience 0 (the default): never at epoch 0, and not on an improvement. */
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='loss')");
    assert_false(epoch(&c, 0, 0.5, 0.1).stop);
    assert_false(epoch(&c, 1, 0.4, 0.1).stop);
    assert_true(epoch(&c, 2, 0.4, 0.1).stop);

    /* A baseline never beaten: improvements do not reset the wait. */
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='val_acc', baseline=0.9, patience=2)");
    assert_false(epoch(&c, 0, 0.5, 0.1).stop); /* wait 1 */
    assert_false(epoch(&c, 1, 0.6, 0.1).stop); /* wait 2, but an improvement returns */
    assert_true(epoch(&c, 2, 0.6, 0.1).stop);  /* wait 3 */
    assert_true(c.cb[0].best == 0.6);

    /* start_from_epoch: epochs before it are not looked at. */
    callbacks_init(&c);
    add(&c, "EarlyStopping(monitor='val_loss', patience=1, start_from_epoch=2, restore_best_weights=True)");
    assert_false(epoch(&c, 0, 0.1, 0.1).snapshot);
    assert_false(epoch(&c, 1, 0.9, 0.1).stop);
    assert_true(epoch(&c, 2, 0.8, 0.1).snapshot);
    assert_true(c.cb[0].best == 0.8 && c.cb[0].best_epoch == 2);
    assert_true(epoch(&c, 3, 0.85, 0.1).stop);
}

static void test_state_round_trip(void **state)
{
    (void)state;
    struct callbacks a, b;
    struct error err = {0};
    char text[CALLBACKS_MAX * 320], text2[CALLBACKS_MAX * 320];
    double st[CALLBACKS_MAX * CALLBACK_STATE_FIELDS];
    callbacks_init(&a);
    add(&a, "ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_lr=1e-5)");
    add(&a, "EarlyStopping(monitor='val_accuracy', patience=3, baseline=0.75, restore_best_weights=True)");
    const double seq[] = {0.3, 0.2, 0.25, 0.26};
    for (long e = 0; e < 4; e++)
        epoch(&a, e, seq[e], 0.01);
    callbacks_text(&a, text, sizeof text);
    assert_int_equal(callbacks_from_text(&b, text, &err), ERR_OK);
    callbacks_text(&b, text2, sizeof text2);
    assert_string_equal(text, text2);
    callbacks_get_state(&a, st);
    assert_int_equal(callbacks_set_state(&b, st), 0);
    b.lr_factor = a.lr_factor;
    /* Both continue the same way from here. */
    for (long e = 4; e < 9; e++) {
        struct cb_events ea = epoch(&a, e, 0.27, 0.01), eb = epoch(&b, e, 0.27, 0.01);
        assert_int_equal(ea.reduced, eb.reduced);
        assert_int_equal(ea.stop, eb.stop);
        assert_true(a.lr_factor == b.lr_factor);
        for (int i = 0; i < 2; i++) {
            assert_true(a.cb[i].best == b.cb[i].best);
            assert_int_equal(a.cb[i].wait, b.cb[i].wait);
            assert_int_equal(a.cb[i].cooldown_counter, b.cb[i].cooldown_counter);
        }
    }
    /* A damaged file's counters are refused, not converted. */
    const double bad[] = {1e300, -2, 0.5, NAN};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        double copy[CALLBACKS_MAX * CALLBACK_STATE_FIELDS];
        memcpy(copy, st, sizeof copy);
        copy[CALLBACK_STATE_FIELDS + 1 + (k == 3 ? -1 : 0)] = bad[k]; /* wait of the second, or its best */
        assert_int_equal(callbacks_set_state(&b, copy), -1);
    }
    assert_int_equal(callbacks_from_text(&b, "", &err), ERR_OK);
    assert_int_equal(b.n, 0);
    /* Whole numbers past the reader's integers are written as floats, so that they read back (fuzz_callback found
     * min_delta=7e16 stored as "70000000000000000", refused on resume as an integer too large). */
    callbacks_init(&a);
    add(&a, "ReduceLROnPlateau(min_delta=7e16, min_lr=3e9)");
    add(&a, "EarlyStopping(min_delta=-5e15, baseline=2147483648.0)");
    assert_non_null(strstr(a.cb[0].text, "min_delta=70000000000000000.0,"));
    assert_non_null(strstr(a.cb[0].text, "min_lr=3000000000.0)"));
    assert_non_null(strstr(a.cb[1].text, "min_delta=-5000000000000000.0,"));
    assert_non_null(strstr(a.cb[1].text, "baseline=2147483648.0,"));
    callbacks_text(&a, text, sizeof text);
    assert_int_equal(callbacks_from_text(&b, text, &err), ERR_OK);
    callbacks_text(&b, text2, sizeof text2);
    assert_string_equal(text, text2);
    assert_true(b.cb[0].min_delta == 7e16 && b.cb[0].min_lr == 3e9 && b.cb[1].baseline == 2147483648.0);
}

/* The schedule, the callbacks' configs and state and the best weights through a checkpoint, exactly; a
 * checkpoint without them reads as a constant schedule at its lr with no callbacks. */
static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    static struct model m;
    struct net *net = NULL;
    struct optim opt;
    struct optim_conf oc;
    struct error err = {0};
    char path[] = "/tmp/test_callbacks_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(model_parse(&m, "Input(shape=(4, 4, 1))\nFlatten()\nDense(3, activation='softmax')\n", "t",
                                 &err), ERR_OK);
    assert_int_equal(net_create(&net, &m, &err), ERR_OK);
    for (size_t i = 0; i < net->n_params; i++)
        net->params[i] = (float)i * 0.25f - 3;
    optim_defaults(&oc, OPTIM_SGD);
    oc.lr = 0.05;
    assert_int_equal(optim_init(&opt, &oc, net->n_params, &err), ERR_OK);
    struct checkpoint_state st = {.step = 70, .epoch = 2, .global_batch = 8, .world_size = 2, .best_val_loss = INFINITY};
    st.optim = oc;
    sched_defaults(&st.sched);
    st.sched.kind = SCHED_STEP;
    st.sched.lr = 0.05;
    st.sched.warmup_epochs = 0.3;
    assert_int_equal(sched_parse_epochs("1.5,3", &st.sched, &err), ERR_OK);
    st.sched.step_factor = 0.25;
    st.sched_epochs = 4;
    st.sched_steps_per_epoch = 35;
    callbacks_init(&st.callbacks);
    add(&st.callbacks, "ReduceLROnPlateau(monitor='loss', factor=0.3, patience=1, cooldown=2)");
    add(&st.callbacks, "EarlyStopping(patience=4, baseline=0.5, restore_best_weights=True)");
    epoch(&st.callbacks, 0, 0.9, 0.05);
    epoch(&st.callbacks, 1, 0.95, 0.05);
    st.callbacks.best_weights = malloc(sizeof(float) * net->n_params);
    for (size_t i = 0; i < net->n_params; i++)
        st.callbacks.best_weights[i] = (float)i / 7;
    assert_int_equal(checkpoint_write(path, net, &opt, &st, &err), ERR_OK);

    struct checkpoint_state got;
    assert_int_equal(checkpoint_read_state(path, NULL, &got, &err), ERR_OK);
    assert_true(sched_same(&got.sched, &st.sched));
    assert_int_equal(got.sched_epochs, 4);
    assert_int_equal(got.sched_steps_per_epoch, 35);
    assert_int_equal(got.callbacks.n, 2);
    assert_true(got.callbacks.lr_factor == st.callbacks.lr_factor && st.callbacks.lr_factor == 0.3);
    assert_null(got.callbacks.best_weights);
    for (int i = 0; i < 2; i++) {
        const struct callback *a = &st.callbacks.cb[i], *b = &got.callbacks.cb[i];
        assert_string_equal(a->text, b->text);
        assert_true(a->best == b->best);
        assert_int_equal(a->wait, b->wait);
        assert_int_equal(a->cooldown_counter, b->cooldown_counter);
        assert_int_equal(a->best_epoch, b->best_epoch);
        assert_int_equal(a->stopped_epoch, b->stopped_epoch);
        assert_int_equal(a->started, b->started);
    }
    float *w = malloc(sizeof(float) * net->n_params);
    assert_int_equal(checkpoint_read_best_weights(path, w, net->n_params, &err), ERR_OK);
    assert_memory_equal(w, st.callbacks.best_weights, sizeof(float) * net->n_params);
    assert_int_equal(checkpoint_read_best_weights(path, w, net->n_params + 1, &err), ERR_INPUT);

    /* Without the schedule (sched_steps_per_epoch 0, as before schedules existed). */
    st.sched_steps_per_epoch = 0;
    assert_int_equal(checkpoint_write(path, net, &opt, &st, &err), ERR_OK);
    assert_int_equal(checkpoint_read_state(path, NULL, &got, &err), ERR_OK);
    assert_true(got.sched.kind == SCHED_CONSTANT && got.sched.lr == 0.05 && got.callbacks.n == 0);
    assert_true(got.callbacks.lr_factor == 1);
    assert_int_equal(checkpoint_read_best_weights(path, w, net->n_params, &err), ERR_INPUT);
    free(w);
    callbacks_free(&st.callbacks);
    optim_release(&opt);
    net_destroy(net);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_plateau),
        cmocka_unit_test(test_early_stopping),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_checkpoint_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

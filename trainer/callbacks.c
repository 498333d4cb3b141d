/* callbacks.c: ReduceLROnPlateau and EarlyStopping with Keras 2's arguments, defaults and on_epoch_end logic
 * (EarlyStopping's weights put back at the end of training, as Keras 3 does). */
#include "callbacks.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "model.h"

static const char *const monitor_names[] = {"loss", "acc", "val_loss", "val_acc", "accuracy", "val_accuracy", NULL};
static const enum cb_monitor monitor_of[] = {CB_LOSS, CB_ACC, CB_VAL_LOSS, CB_VAL_ACC, CB_ACC, CB_VAL_ACC};
static const char *const mode_names[] = {"auto", "min", "max", NULL};

void callbacks_init(struct callbacks *c)
{
    memset(c, 0, sizeof *c);
    c->lr_factor = 1.0;
}

void callbacks_free(struct callbacks *c)
{
    free(c->best_weights);
    c->best_weights = NULL;
}

/* The argument an accessor would take (keyword, else the pos-th positional), for a message's column. */
static const struct arg *arg_at(const struct args *a, const char *key, int pos)
{
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->a[i].key[0] == '\0' && npos++ == pos)
            return &a->a[i];
        if (strcmp(a->a[i].key, key) == 0)
            return &a->a[i];
    }
    return NULL;
}

static int nonneg(struct args *a, const char *key, int pos, double v, struct error *err)
{
    if (v < 0)
        return args_error(a, arg_at(a, key, pos), err, "'%s' must not be negative, not %g", key, v);
    return ERR_OK;
}

/* monitor and mode, shared by both; the direction as Keras's auto mode infers it. */
static int take_monitor(struct args *a, struct callback *cb, int mode_pos, struct error *err)
{
    int m, mode, rc;
    if ((rc = args_choice(a, "monitor", 0, monitor_names, 2, &m, err)) ||
        (rc = args_choice(a, "mode", mode_pos, mode_names, 0, &mode, err)))
        return rc;
    snprintf(cb->monitor_name, sizeof cb->monitor_name, "%s", monitor_names[m]);
    cb->monitor = monitor_of[m];
    cb->mode = mode;
    cb->maximize = mode == 2 || (mode == 0 && strstr(cb->monitor_name, "acc") != NULL);
    return ERR_OK;
}

/* A float argument as the callback's text stores it (read back on resume): %.17g, which round-trips the double,
 * but with ".0" after a whole number too large for the reader's integers (|v| > INT_MAX), so that it reads back
 * as the float it is ("min_delta=70000000000000000" would be an integer out of range). */
static const char *float_text(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.17g", v);
    if (fabs(v) > INT_MAX && isfinite(v) && !strpbrk(buf, ".eE"))
        snprintf(buf + strlen(buf), size - strlen(buf), ".0");
    return buf;
}

/* ReduceLROnPlateau(monitor='val_loss', factor=0.1, patience=10, verbose=0, mode='auto', min_delta=1e-4,
 * cooldown=0, min_lr=0) */
static int take_plateau(struct args *a, struct callback *cb, struct error *err)
{
    int rc;
    long verbose;
    if ((rc = take_monitor(a, cb, 4, err)) || (rc = args_float(a, "factor", 1, 0, 0.1, &cb->factor, err)) ||
        (rc = args_int(a, "patience", 2, 0, 10, &cb->patience, err)) ||
        (rc = args_int(a, "verbose", 3, 0, 0, &verbose, err)) ||
        (rc = args_float(a, "min_delta", 5, 0, 1e-4, &cb->min_delta, err)) ||
        (rc = args_int(a, "cooldown", 6, 0, 0, &cb->cooldown, err)) ||
        (rc = args_float(a, "min_lr", 7, 0, 0, &cb->min_lr, err)))
        return rc;
    cb->verbose = (int)verbose;
    if (cb->factor >= 1.0)
        return args_error(a, arg_at(a, "factor", 1), err, "does not support a factor >= 1.0 (Keras), not %g",
                          cb->factor);
    if ((rc = nonneg(a, "factor", 1, cb->factor, err)) || (rc = nonneg(a, "patience", 2, (double)cb->patience, err)) ||
        (rc = nonneg(a, "min_delta", 5, cb->min_delta, err)) ||
        (rc = nonneg(a, "cooldown", 6, (double)cb->cooldown, err)) || (rc = nonneg(a, "min_lr", 7, cb->min_lr, err)))
        return rc;
    char factor[40], min_delta[40], min_lr[40];
    snprintf(cb->text, sizeof cb->text,
             "ReduceLROnPlateau(monitor='%s', factor=%s, patience=%ld, verbose=%d, mode='%s', min_delta=%s, "
             "cooldown=%ld, min_lr=%s)",
             cb->monitor_name, float_text(cb->factor, factor, sizeof factor), cb->patience, cb->verbose,
             mode_names[cb->mode], float_text(cb->min_delta, min_delta, sizeof min_delta), cb->cooldown,
             float_text(cb->min_lr, min_lr, sizeof min_lr));
    return ERR_OK;
}

/* baseline: a number or None (the default). */
static int take_baseline(struct args *a, struct callback *cb, struct error *err)
{
    const struct arg *x = arg_at(a, "baseline", 5);
    if (x && x->type == ARG_NONE) {
        ((struct arg *)x)->used = 1;
        return ERR_OK;
    }
    cb->has_baseline = x != NULL;
    return args_float(a, "baseline", 5, 0, 0, &cb->baseline, err);
}

/* EarlyStopping(monitor='val_loss', min_delta=0, patience=0, verbose=0, mode='auto', baseline=None,
 * restore_best_weights=False, start_from_epoch=0) */
static int take_early(struct args *a, struct callback *cb, struct error *err)
{
    int rc;
    long verbose;
    char base[64] = "None";
    if ((rc = take_monitor(a, cb, 4, err)) || (rc = args_float(a, "min_delta", 1, 0, 0, &cb->min_delta, err)) ||
        (rc = args_int(a, "patience", 2, 0, 0, &cb->patience, err)) ||
        (rc = args_int(a, "verbose", 3, 0, 0, &verbose, err)) || (rc = take_baseline(a, cb, err)) ||
        (rc = args_bool(a, "restore_best_weights", 6, 0, &cb->restore_best_weights, err)) ||
        (rc = args_int(a, "start_from_epoch", 7, 0, 0, &cb->start_from_epoch, err)))
        return rc;
    cb->verbose = (int)verbose;
    if ((rc = nonneg(a, "patience", 2, (double)cb->patience, err)) ||
        (rc = nonneg(a, "start_from_epoch", 7, (double)cb->start_from_epoch, err)))
        return rc;
    char min_delta[40];
    if (cb->has_baseline)
        float_text(cb->baseline, base, sizeof base);
    snprintf(cb->text, sizeof cb->text,
             "EarlyStopping(monitor='%s', min_delta=%s, patience=%ld, verbose=%d, mode='%s', baseline=%s, "
             "restore_best_weights=%s, start_from_epoch=%ld)",
             cb->monitor_name, float_text(cb->min_delta, min_delta, sizeof min_delta), cb->patience, cb->verbose,
             mode_names[cb->mode], base,
             cb->restore_best_weights ? "True" : "False", cb->start_from_epoch);
    return ERR_OK;
}

static void reset_state(struct callback *cb)
{
    cb->best = cb->maximize ? -INFINITY : INFINITY;
    cb->wait = cb->cooldown_counter = cb->best_epoch = 0;
    cb->stopped_epoch = -1;
    cb->started = 0;
}

int callbacks_add(struct callbacks *c, const char *text, int ordinal, struct error *err)
{
    struct args a;
    struct callback cb;
    int rc;
    memset(&a, 0, sizeof a);
    memset(&cb, 0, sizeof cb);
    a.file = "--callback";
    a.line = ordinal;
    if (c->n == CALLBACKS_MAX)
        return error_set(err, ERR_USAGE, "--callback: at most %d callbacks", CALLBACKS_MAX);
    rc = model_parse_call(text, &a, err);
    if (rc == ERR_OK) {
        if (strcmp(a.layer, "ReduceLROnPlateau") == 0) {
            cb.kind = CB_REDUCE_LR_ON_PLATEAU;
            rc = take_plateau(&a, &cb, err);
        } else if (strcmp(a.layer, "EarlyStopping") == 0) {
            cb.kind = CB_EARLY_STOPPING;
            rc = take_early(&a, &cb, err);
        } else {
            rc = error_set(err, ERR_USAGE, "--callback:%d:%d: unknown callback '%s' (ReduceLROnPlateau or "
                                           "EarlyStopping)", ordinal, a.col, a.layer);
        }
    }
    if (rc == ERR_OK)
        rc = args_check_unused(&a, err);
    if (rc == ERR_OK && cb.kind == CB_EARLY_STOPPING && cb.restore_best_weights && callbacks_restoring(c) >= 0)
        rc = error_set(err, ERR_USAGE, "--callback:%d:%d: only one EarlyStopping may restore_best_weights", ordinal,
                       a.col);
    if (rc != ERR_OK) {
        err->code = ERR_USAGE; /* a command-line option: exit 2 */
        return ERR_USAGE;
    }
    reset_state(&cb);
    c->cb[c->n++] = cb;
    return ERR_OK;
}

int callbacks_need_val(const struct callbacks *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->cb[i].monitor == CB_VAL_LOSS || c->cb[i].monitor == CB_VAL_ACC)
            return 1;
    return 0;
}

int callbacks_restoring(const struct callbacks *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->cb[i].kind == CB_EARLY_STOPPING && c->cb[i].restore_best_weights)
            return i;
    return -1;
}

void callbacks_text(const struct callbacks *c, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "\n" : "", c->cb[i].text);
}

int callbacks_from_text(struct callbacks *c, const char *text, struct error *err)
{
    char line[sizeof c->cb[0].text];
    const char *p = text;
    int ordinal = 1, rc;
    callbacks_init(c);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= sizeof line)
            return error_set(err, ERR_USAGE, "callback %d: too long", ordinal);
        memcpy(line, p, len);
        line[len] = '\0';
        if ((rc = callbacks_add(c, line, ordinal++, err)))
            return rc;
        p += len + (nl != NULL);
    }
    return ERR_OK;
}

/* Keras's monitor_op with min_delta folded in the way each callback does it. */
static int plateau_better(const struct callback *cb, double current, double best)
{
    return cb->maximize ? current > best + cb->min_delta : current < best - cb->min_delta;
}

/* EarlyStopping: min_delta = |min_delta| signed by the direction; improvement is op(current - min_delta, ref). */
static int early_better(const struct callback *cb, double current, double ref)
{
    double d = fabs(cb->min_delta) * (cb->maximize ? 1 : -1);
    return cb->maximize ? current - d > ref : current - d < ref;
}

static void add_msg(struct cb_events *ev, const char *fmt, double a, double b)
{
    size_t len = strlen(ev->msg);
    snprintf(ev->msg + len, sizeof ev->msg - len, fmt, a, b);
}

static void plateau_epoch_end(struct callbacks *c, struct callback *cb, long epoch, double current, double base_lr,
                              struct cb_events *ev)
{
    if (cb->cooldown_counter > 0) {
        cb->cooldown_counter--;
        cb->wait = 0;
    }
    if (plateau_better(cb, current, cb->best)) {
        cb->best = current;
        cb->best_epoch = epoch;
        cb->wait = 0;
        return;
    }
    /* Keras tests in_cooldown() again here, after the decrement. */
    if (cb->cooldown_counter > 0 || ++cb->wait < cb->patience)
        return;
    /* old_lr > min_lr, with the lr as base_lr * factor: compared as factors, so that a factor clamped to
     * min_lr / base_lr is not "reduced" again. */
    double floor = base_lr > 0 ? cb->min_lr / base_lr : INFINITY;
    if (c->lr_factor > floor) {
        double f = c->lr_factor * cb->factor;
        c->lr_factor = f > floor ? f : floor;
        cb->cooldown_counter = cb->cooldown;
        cb->wait = 0;
        ev->reduced = 1;
        if (cb->verbose)
            add_msg(ev, "Epoch %.0f: ReduceLROnPlateau reducing learning rate to %g.\n", (double)epoch + 1,
                    base_lr * c->lr_factor);
    }
}

static void early_epoch_end(struct callbacks *c, struct callback *cb, long epoch, double current,
                            struct cb_events *ev)
{
    if (epoch < cb->start_from_epoch)
        return;
    if (cb->restore_best_weights && !cb->started)
        ev->snapshot = 1; /* Keras: the weights after the first epoch, if no progress is ever made */
    cb->started = 1;
    cb->wait++;
    if (early_better(cb, current, cb->best)) {
        cb->best = current;
        cb->best_epoch = epoch;
        if (cb->restore_best_weights)
            ev->snapshot = 1;
        if (!cb->has_baseline || early_better(cb, current, cb->baseline))
            cb->wait = 0;
        return;
    }
    if (cb->wait >= cb->patience && epoch > 0) {
        cb->stopped_epoch = epoch;
        c->stopped = 1;
        ev->stop = 1;
        size_t len = strlen(ev->msg);
        snprintf(ev->msg + len, sizeof ev->msg - len, "Epoch %ld: early stopping (best %s %.6g at epoch %ld)\n",
                 epoch + 1, cb->monitor_name, cb->best, cb->best_epoch + 1);
    }
}

void callbacks_epoch_end(struct callbacks *c, long epoch, const double logs[CB_N_LOGS], double base_lr,
                         struct cb_events *ev)
{
    memset(ev, 0, sizeof *ev);
    for (int i = 0; i < c->n; i++) {
        struct callback *cb = &c->cb[i];
        double current = logs[cb->monitor];
        if (cb->kind == CB_REDUCE_LR_ON_PLATEAU)
            plateau_epoch_end(c, cb, epoch, current, base_lr, ev);
        else
            early_epoch_end(c, cb, epoch, current, ev);
    }
}

void callbacks_get_state(const struct callbacks *c, double *out)
{
    for (int i = 0; i < c->n; i++) {
        const struct callback *cb = &c->cb[i];
        double *o = out + (size_t)i * CALLBACK_STATE_FIELDS;
        o[0] = cb->best;
        o[1] = (double)cb->wait;
        o[2] = (double)cb->cooldown_counter;
        o[3] = (double)cb->best_epoch;
        o[4] = (double)cb->stopped_epoch;
        o[5] = cb->started;
    }
}

/* A counter or an epoch as stored: a whole number in [lo, 1e9]. */
static int counter_ok(double v, double lo) { return v >= lo && v <= 1e9 && v == floor(v); }

int callbacks_set_state(struct callbacks *c, const double *in)
{
    for (int i = 0; i < c->n; i++) {
        const double *v = in + (size_t)i * CALLBACK_STATE_FIELDS;
        if (isnan(v[0]) || !counter_ok(v[1], 0) || !counter_ok(v[2], 0) || !counter_ok(v[3], 0) ||
            !counter_ok(v[4], -1) || !counter_ok(v[5], 0) || v[5] > 1)
            return -1;
    }
    for (int i = 0; i < c->n; i++) {
        struct callback *cb = &c->cb[i];
        const double *v = in + (size_t)i * CALLBACK_STATE_FIELDS;
        cb->best = v[0];
        cb->wait = (long)v[1];
        cb->cooldown_counter = (long)v[2];
        cb->best_epoch = (long)v[3];
        cb->stopped_epoch = (long)v[4];
        cb->started = v[5] != 0;
    }
    return 0;
}

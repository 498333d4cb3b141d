/* schedule.c: learning-rate schedules per optimizer step (see schedule.h for the formulas). */
#include "schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"constant", "cosine", "step", "exponential"};

void sched_defaults(struct sched_conf *c)
{
    memset(c, 0, sizeof *c);
    c->kind = SCHED_CONSTANT;
    c->step_factor = 0.1;
    c->decay_rate = 0.96;
}

int sched_kind_from_name(const char *name)
{
    for (int i = 0; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    return -1;
}

const char *sched_kind_name(enum sched_kind kind) { return kind_names[kind]; }

int sched_is_constant(const struct sched_conf *c) { return c->kind == SCHED_CONSTANT && c->warmup_epochs == 0; }

int sched_parse_epochs(const char *s, struct sched_conf *c, struct error *err)
{
    const char *p = s;
    int n = 0;
    double prev = 0;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v <= 0 || (*end && *end != ','))
            return error_set(err, ERR_USAGE, "--step-epochs: '%s' is not a list of positive epochs such as 30,60",
                             s);
        if (n > 0 && v <= prev)
            return error_set(err, ERR_USAGE, "--step-epochs: '%s': the epochs must increase", s);
        if (n == SCHED_MAX_BOUNDARIES)
            return error_set(err, ERR_USAGE, "--step-epochs: at most %d epochs", SCHED_MAX_BOUNDARIES);
        c->step_epochs[n++] = prev = v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return error_set(err, ERR_USAGE, "--step-epochs: '%s' ends with a comma", s);
    }
    if (n == 0)
        return error_set(err, ERR_USAGE, "--step-epochs: empty list");
    c->n_boundaries = n;
    return ERR_OK;
}

int64_t sched_warmup_steps(const struct sched_conf *c, int64_t steps_per_epoch)
{
    return (int64_t)rint(c->warmup_epochs * (double)steps_per_epoch);
}

int64_t sched_boundary_step(const struct sched_conf *c, int i, int64_t steps_per_epoch)
{
    return (int64_t)rint(c->step_epochs[i] * (double)steps_per_epoch);
}

double sched_lr(const struct sched_conf *c, int64_t t, int64_t steps_per_epoch, int64_t total_steps)
{
    const double lr = c->lr;
    const int64_t W = sched_warmup_steps(c, steps_per_epoch);
    if (t < W)
        return lr * ((double)t / (double)W);
    switch (c->kind) {
    case SCHED_CONSTANT: break;
    case SCHED_COSINE: {
        if (lr == 0)
            return 0;
        const double alpha = c->min_lr / lr;
        const int64_t decay_steps = total_steps - W;
        int64_t s = t - W < decay_steps ? t - W : decay_steps;
        const double done = decay_steps > 0 ? (double)s / (double)decay_steps : 1.0;
        const double cosine = 0.5 * (1.0 + cos(3.14159265358979323846 * done));
        return lr * ((1.0 - alpha) * cosine + alpha);
    }
    case SCHED_STEP: {
        double v = lr;
        for (int i = 0; i < c->n_boundaries; i++)
            if (t > sched_boundary_step(c, i, steps_per_epoch))
                v = lr * pow(c->step_factor, (double)(i + 1));
        return v;
    }
    case SCHED_EXPONENTIAL:
        return lr * pow(c->decay_rate, (double)(t - W) / (double)steps_per_epoch);
    }
    return lr;
}

int sched_check(const struct sched_conf *c, int64_t steps_per_epoch, int64_t total_steps, struct error *err)
{
    int64_t W = sched_warmup_steps(c, steps_per_epoch);
    if (W > total_steps)
        return error_set(err, ERR_USAGE,
                         "--warmup-epochs %g is longer than the training (%lld warmup steps, %lld in all)",
                         c->warmup_epochs, (long long)W, (long long)total_steps);
    if (c->kind == SCHED_COSINE && c->min_lr > c->lr)
        return error_set(err, ERR_USAGE, "--min-lr %g is above --lr %g: a cosine schedule decays", c->min_lr, c->lr);
    if (c->kind == SCHED_STEP)
        for (int i = 0; i < c->n_boundaries; i++)
            if (sched_boundary_step(c, i, steps_per_epoch) >= total_steps)
                return error_set(err, ERR_USAGE, "--step-epochs: epoch %g is not within the training's %lld steps",
                                 c->step_epochs[i], (long long)total_steps);
    return ERR_OK;
}

int sched_same(const struct sched_conf *a, const struct sched_conf *b)
{
    if (a->kind != b->kind || a->lr != b->lr || a->warmup_epochs != b->warmup_epochs)
        return 0;
    switch (a->kind) {
    case SCHED_CONSTANT: return 1;
    case SCHED_COSINE: return a->min_lr == b->min_lr;
    case SCHED_STEP:
        if (a->n_boundaries != b->n_boundaries || a->step_factor != b->step_factor)
            return 0;
        for (int i = 0; i < a->n_boundaries; i++)
            if (a->step_epochs[i] != b->step_epochs[i])
                return 0;
        return 1;
    case SCHED_EXPONENTIAL: return a->decay_rate == b->decay_rate;
    }
    return 0;
}

char *sched_epochs_text(char *buf, size_t size, const struct sched_conf *c)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->n_boundaries && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%g", i ? "," : "", c->step_epochs[i]);
    return buf;
}

char *sched_describe(char *buf, size_t size, const struct sched_conf *c)
{
    char e[256];
    int len = 0;
    switch (c->kind) {
    case SCHED_CONSTANT: len = snprintf(buf, size, "constant %g", c->lr); break;
    case SCHED_COSINE: len = snprintf(buf, size, "cosine from %g to %g", c->lr, c->min_lr); break;
    case SCHED_STEP:
        len = snprintf(buf, size, "step from %g, x%g after epochs %s", c->lr, c->step_factor,
                       sched_epochs_text(e, sizeof e, c));
        break;
    case SCHED_EXPONENTIAL: len = snprintf(buf, size, "exponential from %g, x%g per epoch", c->lr, c->decay_rate); break;
    }
    if (c->warmup_epochs > 0 && len >= 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ", after a linear warmup of %g epoch%s", c->warmup_epochs,
                 c->warmup_epochs == 1 ? "" : "s");
    return buf;
}

/* train_sched.c: the learning-rate schedule and the callbacks as `trainer train` runs them (train_sched.h). */
#include "train_sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "exchange.h"
#include "train.h"

#define SET(opt) (1 << ((opt) - OPT_LR_SCHEDULE))

int train_sched_take_opt(int c, const char *arg, struct train_opts *o)
{
    struct sched_conf *s = &o->sched;
    struct error err = {0};
    if (c >= OPT_LR_SCHEDULE && c <= OPT_WARMUP_EPOCHS)
        o->set_sched |= SET(c);
    switch (c) {
    case OPT_LR_SCHEDULE: {
        int k = sched_kind_from_name(arg);
        if (k < 0)
            return cli_usage("train", "--lr-schedule: unknown schedule '%s' (constant, cosine, step or exponential)",
                             arg);
        s->kind = (enum sched_kind)k;
        return 0;
    }
    case OPT_MIN_LR: return cli_double("train", "--min-lr", arg, 0, 1e6, &s->min_lr);
    case OPT_STEP_EPOCHS:
        if (sched_parse_epochs(arg, s, &err))
            return cli_usage("train", "%s", err.msg);
        return 0;
    case OPT_STEP_FACTOR: return cli_double("train", "--step-factor", arg, 0, 1e6, &s->step_factor);
    case OPT_DECAY_RATE: return cli_double("train", "--decay-rate", arg, 0, 1e6, &s->decay_rate);
    case OPT_WARMUP_EPOCHS: return cli_double("train", "--warmup-epochs", arg, 0, 1e6, &s->warmup_epochs);
    case OPT_CALLBACK:
        if (o->n_callbacks == CALLBACKS_MAX)
            return cli_usage("train", "--callback: at most %d callbacks", CALLBACKS_MAX);
        o->callback_text[o->n_callbacks++] = arg;
        return 0;
    default: return ERR_USAGE;
    }
}

int train_sched_check_opts(struct train_opts *o)
{
    struct sched_conf *s = &o->sched;
    struct error err = {0};
    s->lr = o->optim.lr;
    /* Resumed without --lr-schedule: the options apply to the checkpoint's schedule (train_sched_resume). */
    int kind_known = !o->resume || (o->set_sched & SET(OPT_LR_SCHEDULE));
    if ((o->set_sched & SET(OPT_MIN_LR)) && s->kind != SCHED_COSINE && kind_known)
        return cli_usage("train", "--min-lr applies to --lr-schedule cosine only");
    if ((o->set_sched & (SET(OPT_STEP_EPOCHS) | SET(OPT_STEP_FACTOR))) && s->kind != SCHED_STEP && kind_known)
        return cli_usage("train", "--step-epochs and --step-factor apply to --lr-schedule step only");
    if ((o->set_sched & SET(OPT_DECAY_RATE)) && s->kind != SCHED_EXPONENTIAL && kind_known)
        return cli_usage("train", "--decay-rate applies to --lr-schedule exponential only");
    if (s->kind == SCHED_STEP && !(o->set_sched & SET(OPT_STEP_EPOCHS)) && !o->resume)
        return cli_usage("train", "--lr-schedule step needs --step-epochs (such as 30,60)");
    if ((s->kind == SCHED_STEP && s->step_factor <= 0) || (s->kind == SCHED_EXPONENTIAL && s->decay_rate <= 0))
        return cli_usage("train", "--step-factor and --decay-rate must be above 0");
    if (s->kind == SCHED_COSINE && s->min_lr > s->lr && !o->resume) /* a resumed run's lr: sched_check */
        return cli_usage("train", "--min-lr %g is above --lr %g: a cosine schedule decays", s->min_lr, s->lr);
    callbacks_init(&o->callbacks);
    for (int i = 0; i < o->n_callbacks; i++)
        if (callbacks_add(&o->callbacks, o->callback_text[i], i + 1, &err))
            return cli_usage("train", "%s", err.msg);
    if (callbacks_need_val(&o->callbacks) && !o->val && o->val_split <= 0 && !o->resume)
        return cli_usage("train", "--callback: a val_ monitor needs validation data (--val or --val-split)");
    return 0;
}

/* The schedule the command line asks of a resumed run: the checkpoint's, with the options given on top. */
static struct sched_conf wanted_schedule(const struct train_opts *o, const struct sched_conf *ck)
{
    struct sched_conf w = *ck;
    const struct sched_conf *s = &o->sched;
    if (o->set_sched & SET(OPT_LR_SCHEDULE)) {
        w = *s;
        w.lr = ck->lr;
    }
    if (o->set_sched & SET(OPT_MIN_LR))
        w.min_lr = s->min_lr;
    if (o->set_sched & SET(OPT_STEP_EPOCHS)) {
        w.n_boundaries = s->n_boundaries;
        memcpy(w.step_epochs, s->step_epochs, sizeof w.step_epochs);
    }
    if (o->set_sched & SET(OPT_STEP_FACTOR))
        w.step_factor = s->step_factor;
    if (o->set_sched & SET(OPT_DECAY_RATE))
        w.decay_rate = s->decay_rate;
    if (o->set_sched & SET(OPT_WARMUP_EPOCHS))
        w.warmup_epochs = s->warmup_epochs;
    if (o->set_lr)
        w.lr = o->optim.lr;
    return w;
}

int train_sched_resume(struct run *r, struct error *err)
{
    struct train_opts *o = &r->o;
    const struct checkpoint_state *at = &r->at;
    char a[256], b[256];
    struct sched_conf w = wanted_schedule(o, &at->sched);
    /* A constant lr could always change on resume (--lr); anything else would make another schedule. */
    if (!sched_same(&w, &at->sched) && !(sched_is_constant(&w) && sched_is_constant(&at->sched)))
        return error_set(err, ERR_USAGE, "%s: trained with the schedule '%s', not '%s': resume it without schedule "
                                         "options or with the same ones", o->resume,
                         sched_describe(a, sizeof a, &at->sched), sched_describe(b, sizeof b, &w));
    if (at->sched_steps_per_epoch > 0) {
        if (!o->set_epochs)
            o->epochs = (long)at->sched_epochs;
        else if (at->sched.kind == SCHED_COSINE && o->epochs != at->sched_epochs)
            return error_set(err, ERR_USAGE, "%s: its cosine schedule spans %lld epochs; --epochs %ld would make "
                                             "another schedule", o->resume, (long long)at->sched_epochs, o->epochs);
    }
    if (o->n_callbacks > 0) {
        char mine[CALLBACKS_MAX * 320], theirs[CALLBACKS_MAX * 320];
        callbacks_text(&o->callbacks, mine, sizeof mine);
        callbacks_text(&at->callbacks, theirs, sizeof theirs);
        if (strcmp(mine, theirs) != 0)
            return error_set(err, ERR_USAGE, "%s: trained with the callbacks [%s]; resume it without --callback or "
                                             "with the same ones", o->resume, at->callbacks.n ? theirs : "none");
    }
    o->sched = w;
    return ERR_OK;
}

int train_sched_setup(struct run *r, struct error *err)
{
    struct checkpoint_state *at = &r->at;
    const int64_t spe = (r->n_train + r->o.batch - 1) / r->o.batch;
    struct callbacks *c = &at->callbacks;
    int rc;
    if (r->o.resume && at->sched_steps_per_epoch > 0 && !sched_is_constant(&at->sched) &&
        at->sched_steps_per_epoch != spe)
        return error_set(err, ERR_USAGE, "%s: its schedule was set for %lld steps per epoch, this data gives %lld",
                         r->o.resume, (long long)at->sched_steps_per_epoch, (long long)spe);
    if (!r->o.resume)
        at->callbacks = r->o.callbacks;
    at->sched = r->o.sched;
    at->sched_epochs = r->o.epochs;
    at->sched_steps_per_epoch = spe;
    if ((rc = sched_check(&at->sched, spe, (int64_t)r->o.epochs * spe, err)))
        return rc;
    if (callbacks_need_val(c) && !r->has_val)
        return error_set(err, ERR_USAGE, "%s: its callbacks watch a val_ metric: resume with validation data "
                                         "(--val or --val-split)", r->o.resume ? r->o.resume : "--callback");
    c->best_weights = NULL;
    c->n_params = r->net->n_params;
    int k = callbacks_restoring(c);
    if (k < 0)
        return ERR_OK;
    if (!(c->best_weights = calloc(c->n_params ? c->n_params : 1, sizeof(float))))
        return error_set(err, ERR_INTERNAL, "out of memory for EarlyStopping's best weights");
    if (r->o.resume && c->cb[k].started)
        return checkpoint_read_best_weights(r->o.resume, c->best_weights, c->n_params, err);
    return ERR_OK;
}

void train_sched_step_lr(struct run *r, int64_t steps_per_epoch)
{
    const struct checkpoint_state *at = &r->at;
    double lr = sched_lr(&at->sched, at->step, steps_per_epoch, at->sched_epochs * steps_per_epoch);
    /* A constant schedule with no reduction gives --lr itself: the optimizer's steps stay bit for bit. */
    r->lr_now = lr * at->callbacks.lr_factor;
    r->opt.conf.lr = r->lr_now;
}

void train_sched_base_lr(struct run *r) { r->opt.conf.lr = r->o.optim.lr; }

int train_sched_epoch_end(struct run *r, const struct eval_result *v, struct error *err)
{
    struct callbacks *c = &r->at.callbacks;
    const struct checkpoint_state *at = &r->at;
    struct cb_events ev;
    (void)err;
    if (c->n == 0)
        return ERR_OK;
    double seen = (double)at->epoch_seen;
    double logs[CB_N_LOGS] = {at->epoch_loss_sum / seen, at->epoch_correct / seen, v->loss, v->acc};
    /* Rank 0's values everywhere (x + 0 is x), so that every rank takes the same decision. */
    if (dist_rank() != 0)
        memset(logs, 0, sizeof logs);
    dist_allreduce_sum_f64(logs, CB_N_LOGS);
    callbacks_epoch_end(c, (long)at->epoch, logs, at->sched.lr, &ev);
    if (ev.snapshot && c->best_weights)
        memcpy(c->best_weights, r->net->params, sizeof(float) * c->n_params);
    if (ev.msg[0] && dist_rank() == 0 && !r->o.quiet) {
        fputs(ev.msg, stdout);
        fflush(stdout);
    }
    return ERR_OK;
}

int train_sched_stopped(const struct run *r) { return r->at.callbacks.stopped; }

int train_sched_varies(const struct run *r)
{
    return !sched_is_constant(&r->at.sched) || r->at.callbacks.n > 0;
}

int train_sched_finish(struct run *r)
{
    struct callbacks *c = &r->at.callbacks;
    int k = callbacks_restoring(c);
    int ended = r->at.epoch_step == 0 && (r->at.epoch >= r->o.epochs || c->stopped);
    if (k < 0 || !ended || c->restored || !c->best_weights || !c->cb[k].started)
        return 0;
    exchange_set_params(r->net, c->best_weights);
    c->restored = 1;
    if (dist_rank() == 0 && !r->o.quiet) {
        printf("EarlyStopping: restored the weights of epoch %ld (%s %.4f)\n", c->cb[k].best_epoch + 1,
               c->cb[k].monitor_name, c->cb[k].best);
        fflush(stdout);
    }
    return 1;
}

void train_sched_print(const struct run *r)
{
    char s[256];
    const struct checkpoint_state *at = &r->at;
    if (!sched_is_constant(&at->sched))
        printf("Schedule:   %s\n", sched_describe(s, sizeof s, &at->sched));
    for (int i = 0; i < at->callbacks.n; i++)
        printf("Callback:   %s\n", at->callbacks.cb[i].text);
    if (at->callbacks.lr_factor != 1)
        printf("Plateau:    lr reduced by %g so far\n", at->callbacks.lr_factor);
}

/* schedule.h: learning-rate schedules per optimizer step (Keras's CosineDecay, PiecewiseConstantDecay and
 * ExponentialDecay, with Keras 3's linear warmup), as pure functions of the step in double precision. */
#ifndef TRAINER_SCHEDULE_H
#define TRAINER_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum sched_kind { SCHED_CONSTANT, SCHED_COSINE, SCHED_STEP, SCHED_EXPONENTIAL };

#define SCHED_MAX_BOUNDARIES 16

struct sched_conf {
    enum sched_kind kind;
    double lr;            /* --lr: the schedule's peak (the warmup's target) */
    double warmup_epochs; /* W, fractional allowed; W_steps = rint(W * steps_per_epoch) */
    double min_lr;        /* cosine: the last step's lr (Keras alpha = min_lr / lr) */
    int n_boundaries;     /* step: --step-epochs, increasing */
    double step_epochs[SCHED_MAX_BOUNDARIES];
    double step_factor;   /* step: lr * factor^k after k boundaries (default 0.1) */
    double decay_rate;    /* exponential: per epoch (default 0.96, the peer's) */
};

/* Constant, no warmup, lr 0 (the caller sets lr); step_factor 0.1, decay_rate 0.96. */
void sched_defaults(struct sched_conf *c);
/* "constant" | "cosine" | "step" | "exponential" -> kind; -1 when unknown. */
int sched_kind_from_name(const char *name);
const char *sched_kind_name(enum sched_kind kind);
/* Whether lr(t) is --lr at every step (constant, no warmup): the optimizer sees exactly conf.lr. */
int sched_is_constant(const struct sched_conf *c);

/* "30,60" or "0.5,2.5" -> c->step_epochs. ERR_USAGE "--step-epochs: ..." when not increasing positive
 * finite numbers, or more than SCHED_MAX_BOUNDARIES. */
int sched_parse_epochs(const char *s, struct sched_conf *c, struct error *err);

/* Steps of the warmup: rint(W * steps_per_epoch) (ties to even, as Python's round in the peer). */
int64_t sched_warmup_steps(const struct sched_conf *c, int64_t steps_per_epoch);
/* Boundary i in steps: rint(step_epochs[i] * steps_per_epoch). */
int64_t sched_boundary_step(const struct sched_conf *c, int i, int64_t steps_per_epoch);

/* The learning rate of the update at 0-based step t (Keras's optimizer.iterations before it), with
 * W = warmup steps, T = total steps (epochs * steps_per_epoch):
 *   t < W:        lr * (t / W)                               (Keras 3 warmup from 0 to lr)
 *   constant:     lr
 *   cosine:       lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(t - W, T - W) / (T - W))) + alpha),
 *                 alpha = min_lr / lr                         (Keras CosineDecay, decay_steps = T - W)
 *   step:         lr * factor^k, k = #{i : t > b_i}, b_i = rint(step_epochs[i] * spe)  (PiecewiseConstantDecay)
 *   exponential:  lr * rate^((t - W) / spe)                   (ExponentialDecay, decay_steps = spe) */
double sched_lr(const struct sched_conf *c, int64_t t, int64_t steps_per_epoch, int64_t total_steps);

/* The combination against the training's length: ERR_USAGE when the warmup is longer than the training,
 * min_lr exceeds lr, or a boundary lies past the end. */
int sched_check(const struct sched_conf *c, int64_t steps_per_epoch, int64_t total_steps, struct error *err);

/* Whether a and b give the same lr at every step (the fields their kind uses). */
int sched_same(const struct sched_conf *a, const struct sched_conf *b);

/* "cosine to 1e-05, warmup 2 epochs" and the like, for the set-up line and `info`. */
char *sched_describe(char *buf, size_t size, const struct sched_conf *c);
/* "30,60" */
char *sched_epochs_text(char *buf, size_t size, const struct sched_conf *c);

#endif

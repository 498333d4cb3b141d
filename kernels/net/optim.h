/* optim.h: SGD (momentum, Nesterov), RMSprop and Adam exactly as standalone Keras 2 updates them,
 * walking the parameter slab and the gradient slab as flat arrays. */
#ifndef TRAINER_OPTIM_H
#define TRAINER_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum optim_kind { OPTIM_SGD, OPTIM_RMSPROP, OPTIM_ADAM };

/* Hyper-parameters; optim_defaults() fills Keras's. */
struct optim_conf {
    enum optim_kind kind;
    double lr;       /* SGD 0.01, RMSprop 0.001, Adam 0.001 */
    double momentum; /* SGD: 0 */
    int nesterov;    /* SGD: 0 */
    double rho;      /* RMSprop: 0.9 */
    double beta1;    /* Adam: 0.9 */
    double beta2;    /* Adam: 0.999 */
    double eps;      /* RMSprop, Adam: 1e-7 */
};

/* Elements [lo, hi) of the slab that are moving averages (layer.h: BatchNormalization's moving_mean and
 * moving_variance): their "gradient" is the global batch's statistic, folded in as Keras's
 * moving_average_update does, p -= (p - g) * (1 - momentum), instead of an optimizer step; their slots stay 0. */
struct optim_moving {
    size_t lo, hi;
    float momentum;
};
#define OPTIM_MAX_MOVING 64

struct optim {
    struct optim_conf conf;
    int n_moving;
    struct optim_moving moving[OPTIM_MAX_MOVING]; /* sorted, disjoint */
    size_t n;          /* parameters */
    int n_slots;       /* per-parameter state arrays: SGD 1 (velocity), RMSprop 1 (mean square), Adam 2 (m, v) */
    float *slots;      /* (n_slots, n), zero at start; checkpointed as is */
    int64_t iterations; /* updates done (Keras `iterations`); Adam's bias correction uses it */
};

void optim_defaults(struct optim_conf *c, enum optim_kind kind);
/* "sgd" | "rmsprop" | "adam" -> kind; -1 when unknown. */
int optim_kind_from_name(const char *name);
const char *optim_kind_name(enum optim_kind kind);

int optim_init(struct optim *o, const struct optim_conf *c, size_t n, struct error *err);
void optim_release(struct optim *o);
/* Marks [lo, hi) as a moving average (after optim_init; ranges in increasing order). ERR_INTERNAL past
 * OPTIM_MAX_MOVING ranges. */
int optim_add_moving(struct optim *o, size_t lo, size_t hi, double momentum, struct error *err);

/* One update of params (n,) from grads (n,). Keras 2:
 *   SGD:     v = momentum*v - lr*g;  p += v   (Nesterov: p += momentum*v - lr*g)
 *   RMSprop: a = rho*a + (1-rho)*g^2;  p -= lr*g / (sqrt(a) + eps)
 *   Adam:    t += 1; lr_t = lr*sqrt(1-beta2^t)/(1-beta1^t); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *            p -= lr_t*m / (sqrt(v) + eps) */
void optim_step(struct optim *o, float *params, const float *grads);
/* The same step on elements [lo, hi) only, with their gradients in shard_grads (hi - lo,): the update of one
 * rank's shard (the slots outside [lo, hi) are left as they were; iterations counts the step). */
void optim_step_range(struct optim *o, float *params, const float *shard_grads, size_t lo, size_t hi);

/* Whether every x (n,) is finite: the check that keeps a diverged step away from the weights. */
int optim_all_finite(const float *x, size_t n);

#endif

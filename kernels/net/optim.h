/* optim.h: SGD (momentum, Nesterov), RMSprop and Adam exactly as standalone Keras 2 updates them, Keras 3's
 * AdamW, and LARS (You et al. 2017), walking the parameter slab and the gradient slab as flat arrays; with
 * Keras's kernel regularizers, decoupled weight decay and gradient clipping per parameter tensor. */
#ifndef TRAINER_OPTIM_H
#define TRAINER_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum optim_kind { OPTIM_SGD, OPTIM_RMSPROP, OPTIM_ADAM, OPTIM_ADAMW, OPTIM_LARS };

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
    /* Recipes (issue 14). Decoupled weight decay, Keras 3's p -= lr * wd * p before the update, on every
     * trained tensor (Keras excludes none by default): AdamW 0.004, others 0. LARS: its own decay wd * p in the
     * update and the trust ratio, on kernels only. */
    double weight_decay;
    double lars_eta;        /* LARS trust coefficient: 0.001 */
    double clipnorm;        /* > 0: each tensor's gradient g * X / max(||g||, X) (Keras clipnorm) */
    double global_clipnorm; /* > 0: every gradient g * X / max(||G||, X), G all tensors (Keras global_clipnorm) */
};

/* Elements [lo, hi) of the slab that are moving averages (layer.h: BatchNormalization's moving_mean and
 * moving_variance): their "gradient" is the global batch's statistic, folded in as Keras's
 * moving_average_update does, p -= (p - g) * (1 - momentum), instead of an optimizer step; their slots stay 0. */
struct optim_moving {
    size_t lo, hi;
    float momentum;
};
#define OPTIM_MAX_MOVING 64

/* One trained parameter tensor [lo, hi) of the slab (a kernel, a bias, a BatchNormalization gamma or beta):
 * what the regularizers, clipping and LARS act on. */
struct optim_tensor {
    size_t lo, hi;
    double l1, l2; /* the kernel_regularizer: penalty l1 * sum|w| + l2 * sum w^2 */
    int adapt;     /* LARS adapts and decays it: kernels (biases and BatchNormalization's weights are not) */
};
#define OPTIM_MAX_TENSORS 512

/* Per tensor, the sums over a shard (part) and then over the whole slab (sums) that the step needs. */
enum { OPTIM_SUM_ABS_W, OPTIM_SUM_W2, OPTIM_SUM_G2, OPTIM_SUMS };

struct optim {
    struct optim_conf conf;
    int n_moving;
    struct optim_moving moving[OPTIM_MAX_MOVING]; /* sorted, disjoint */
    size_t n;          /* parameters */
    int n_slots;       /* per-parameter state arrays: SGD 1 (velocity), RMSprop 1 (mean square), Adam 2 (m, v) */
    float *slots;      /* (n_slots, n), zero at start; checkpointed as is */
    int64_t iterations; /* updates done (Keras `iterations`); Adam's bias correction uses it */
    int n_tensors;
    struct optim_tensor tensors[OPTIM_MAX_TENSORS]; /* sorted, disjoint, none a moving average */
    double part[OPTIM_MAX_TENSORS * OPTIM_SUMS];    /* optim_prepare: this shard's sums */
    double sums[OPTIM_MAX_TENSORS * OPTIM_SUMS];    /* the whole slab's: the caller adds the shards' parts */
};

void optim_defaults(struct optim_conf *c, enum optim_kind kind);
/* "sgd" | "rmsprop" | "adam" | "adamw" | "lars" -> kind; -1 when unknown. */
int optim_kind_from_name(const char *name);
const char *optim_kind_name(enum optim_kind kind);

int optim_init(struct optim *o, const struct optim_conf *c, size_t n, struct error *err);
void optim_release(struct optim *o);
/* Marks [lo, hi) as a moving average (after optim_init; ranges in increasing order). ERR_INTERNAL past
 * OPTIM_MAX_MOVING ranges. */
int optim_add_moving(struct optim *o, size_t lo, size_t hi, double momentum, struct error *err);

/* Registers a trained tensor [lo, hi) (after optim_init; in increasing order, outside the moving averages).
 * ERR_INTERNAL past OPTIM_MAX_TENSORS or out of order; ERR_USAGE for a negative or non-finite l1, l2. */
int optim_add_tensor(struct optim *o, size_t lo, size_t hi, double l1, double l2, int adapt, struct error *err);

/* Whether a step needs the tensors' sums over the whole slab (a regularizer, clipping, LARS): then the
 * caller sums optim_prepare's parts of every shard into o->sums before optim_step_range. */
int optim_needs_sums(const struct optim *o);

/* Before the update of shard [lo, hi): adds the kernel regularizers' gradient l1 * sign(w) + 2 * l2 * w to
 * shard_grads (hi - lo,), and when optim_needs_sums, writes this shard's sums into o->part (n_tensors *
 * OPTIM_SUMS): sum |w|, sum w^2 and sum g^2 (g with the regularizers' gradient) over each tensor's part of it. */
void optim_prepare(struct optim *o, const float *params, float *shard_grads, size_t lo, size_t hi);

/* The regularizers' penalty sum over tensors of l1 * sum|w| + l2 * sum w^2, from o->sums. */
double optim_penalty(const struct optim *o);

/* One update of params (n,) from grads (n,): optim_prepare, then optim_step_range, on the whole slab. Keras 2:
 *   SGD:     v = momentum*v - lr*g;  p += v   (Nesterov: p += momentum*v - lr*g)
 *   RMSprop: a = rho*a + (1-rho)*g^2;  p -= lr*g / (sqrt(a) + eps)
 *   Adam:    t += 1; lr_t = lr*sqrt(1-beta2^t)/(1-beta1^t); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *            p -= lr_t*m / (sqrt(v) + eps)
 * Keras 3 (tf.keras 2.11+):
 *   AdamW:   p -= p*wd*lr; then t += 1; alpha = lr*sqrt(1-b2^t)/(1-b1^t); m += (g-m)*(1-b1);
 *            v += (g^2-v)*(1-b2); p -= m*alpha / (sqrt(v) + eps)
 *   any other with weight_decay > 0: p -= p*wd*lr before its update
 * You et al. 2017, per tensor (kernels; others with ratio 1 and no decay):
 *   LARS:    ratio = eta*||w|| / (||g|| + wd*||w||) (1 when a norm is 0); v = mu*v + lr*ratio*(g + wd*w); p -= v
 * Clipping first (Keras): clipnorm scales each tensor's g by X / max(||g||, X), global_clipnorm all of them by
 * X / max(||G||, X). grads gets the regularizers' gradient added (see optim_prepare) and is clipped in place. */
void optim_step(struct optim *o, float *params, float *grads);
/* The same step on elements [lo, hi) only, with their gradients in shard_grads (hi - lo,): the update of one
 * rank's shard (the slots outside [lo, hi) are left as they were; iterations counts the step). After
 * optim_prepare, and with o->sums the whole slab's when optim_needs_sums. */
void optim_step_range(struct optim *o, float *params, float *shard_grads, size_t lo, size_t hi);

/* Whether every x (n,) is finite: the check that keeps a diverged step away from the weights. */
int optim_all_finite(const float *x, size_t n);

#endif

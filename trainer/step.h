/* step.h: one training step as `train` and `bench` both run it: this rank's share of the update's global
 * batch (in K micro-batches with --accumulate), the exchange of gradients and statistics, the checks every
 * rank agrees on (an error, a loss or gradient that is not finite), the regularizers, clipping and the
 * optimizer's update of this rank's shard. */
#ifndef TRAINER_STEP_H
#define TRAINER_STEP_H

#include <stdint.h>

#include "error.h"
#include "feed.h"
#include "model.h"
#include "net.h"
#include "optim.h"

/* This rank's share of micro-batch `micro` (0-based within the update) into *fb (fb->n = 0: none). ERR_OK
 * or the read's error. */
typedef int (*step_take_fn)(void *arg, int micro, struct feed_batch *fb, struct error *err);

struct step {
    struct net *net;
    struct optim *opt;
    const char *what; /* names the run in messages: the training file, or "bench" */
    float *acc;       /* (n_params,) the sum of the micro-batches before the last, with accumulate > 1 */
};

struct step_in {
    int micro;           /* micro-batches in this update: 1 without --accumulate */
    int64_t samples;     /* the update's global batch: the samples of all its micro-batches, on all ranks */
    uint64_t seed, step; /* for net_train_batch (dropout masks) */
    int (*stopping)(void); /* whether this rank was asked to stop after the step (read after its share; NULL: no) */
    step_take_fn take;
    void *take_arg;
    uint64_t epoch;      /* for the augmentation layers' draws (seed, epoch, sample) */
};

struct step_out {
    double loss_sum; /* the per-sample losses of the update, summed over all ranks, plus samples x penalty */
    double correct;  /* samples whose argmax was right, all ranks */
    double penalty;  /* the kernel regularizers' penalty at the weights the step started from */
    int stop;        /* some rank was asked to stop */
    /* This rank's seconds: reading its shares, computing their gradients, the exchange (the sums over ranks
     * and the all-gather of the update), the update itself. */
    double t_data, t_compute, t_exchange, t_update;
};

/* Tells the optimizer the model's trained tensors (optim_add_tensor), after model_mark_moving: each
 * Conv2D and Dense kernel with its kernel_regularizer and LARS's adaptation, every other trained tensor
 * (biases, BatchNormalization's gamma and beta) without either. */
int step_mark_tensors(const struct model *m, struct optim *o, struct error *err);

/* The kernel regularizers' penalty at `params` (the whole slab): sum of l1 * sum|w| + l2 * sum w^2 over the
 * Conv2D and Dense kernels, in double, in slab order. What Keras adds to the loss, in fit and in evaluate. */
double step_penalty(const struct model *m, const float *params);

/* accumulate: the largest number of micro-batches an update will have (a buffer is kept when above 1). */
int step_init(struct step *s, struct net *net, struct optim *opt, const char *what, int accumulate,
              struct error *err);
void step_release(struct step *s);

/* Collective. Runs the update. Returns a code every rank agrees on: ERR_OK (the weights are updated), the
 * error of a rank whose share failed (that rank has the message), or ERR_DIVERGED ("WHAT: training diverged
 * at step S: the loss|gradient is not finite"), in which case no weight has changed. */
int step_run(struct step *s, const struct step_in *in, struct step_out *out, struct error *err);

#endif

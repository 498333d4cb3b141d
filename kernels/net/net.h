/* net.h: a model made runnable: one slab of parameters, one of gradients, and per batch size a plan of
 * oneDNN primitives created once and reused every step. */
#ifndef TRAINER_NET_H
#define TRAINER_NET_H

#include <stddef.h>
#include <stdint.h>

#include "dnn.h"
#include "layer.h"
#include "model.h"

#define NET_MAX_PLANS 8
/* The gradient slab has this many floats after the gradients: the trainer folds its per-step statistics
 * (loss, hits, an error flag) into them so that one all-reduce per step carries everything. */
#define NET_GRAD_TAIL 8

struct net_plan;

/* Wall time spent per layer, summed over the steps run while a network's `timing` points here (the bench).
 * Indexed like model.layers; [0] (the Input) holds the scaling of the images. Seconds. */
struct net_timing {
    double fwd[MODEL_MAX_LAYERS];
    double bwd[MODEL_MAX_LAYERS];
    double loss;  /* softmax + cross-entropy and its gradient, with the reorders at the logits */
    long steps;   /* training batches timed */
    char absorbed[MODEL_MAX_LAYERS]; /* 1: the layer ran inside the one before it (a fused kernel) */
};

struct net {
    struct model model;
    struct dnn dnn;
    size_t n_params;
    float *params;  /* (n_params,) every layer's weights, Keras layout, back to back */
    float *grads;   /* (n_params + NET_GRAD_TAIL,) same layout, then the tail */
    struct net_plan *plans[NET_MAX_PLANS]; /* one per batch size seen, created on first use */
    struct net_timing *timing; /* NULL (the default): no clock is read; else net_train_batch adds to it */
    int no_fusion;             /* tests: plans made from now on apply every derivative where the layer is
                                  (the reference the fused plans must match bit for bit) */
    step_sum_fn sum;           /* the sum over ranks of a training step (layer.h); NULL: one process */
    void *sum_arg;
    double *sum_zeros;         /* what a rank with nothing to add sums (net_train_skip) */
    float label_smoothing;     /* of the training loss (loss.h); 0: none. Inference is never smoothed */
};

/* Builds the network for m (copied). Parameters are zero until net_init_params or a load. */
int net_create(struct net **out, const struct model *m, struct error *err);
void net_destroy(struct net *net);

/* Points the network at other slabs (the same sizes; the caller owns them and copies the values): the
 * gradient exchange puts the parameters in node-shared memory. The plans made so far are dropped. */
void net_set_slabs(struct net *net, float *params, float *grads);

/* Keras initial values from `seed`: the same on every rank. */
void net_init_params(struct net *net, uint64_t seed);

/* One batch of n images, uint8 (n, H, W, C) as stored; scaled by 1/255 inside. */
struct net_batch {
    int n;
    const uint8_t *images;     /* (n, H, W, C) */
    const int32_t *labels;     /* (n,) in [0, classes); NULL for inference */
    const int64_t *sample_ids; /* (n,) global dataset index of each sample (dropout masks) */
    uint64_t epoch;            /* training: 0-based epoch of the step (augmentation draws) */
};

/* Per-batch results, summed over the batch's samples (so ranks can add them up). */
struct net_stats {
    double loss_sum;   /* sum of per-sample cross-entropy */
    long correct;      /* samples whose argmax is the label */
};

/* Forward + loss + backward in training mode. Overwrites net->grads with
 * (1 / global_batch) * sum over this batch of d loss / d params, so adding the grads of all ranks' shares
 * of a global batch gives the mean gradient of that batch (a moving average's slot gets this share's part of
 * the global batch's statistic: layer.h). On an error it still makes the step's sums over ranks (with
 * zeros), so the other ranks finish the step and learn of the error from the exchange. */
int net_train_batch(struct net *net, const struct net_batch *b, int global_batch, uint64_t seed,
                    uint64_t step, struct net_stats *stats, struct error *err);

/* Whether a training step of this model sums anything over the ranks inside forward or backward
 * (BatchNormalization's statistics of the global batch): then every rank must call net_train_batch or
 * net_train_skip for every step, in step order. */
int net_step_sums(const struct net *net);

/* For a rank that has no sample of this step (a global batch smaller than the ranks) or could not read them:
 * makes the sums over ranks net_train_batch would have made, adding zeros, so that no other rank waits.
 * Writes nothing else. A no-op when net_step_sums is 0. */
int net_train_skip(struct net *net, struct error *err);

/* Inference (Dropout off). probs (n, classes) may be NULL; with labels, stats gets loss and correct. */
int net_infer_batch(struct net *net, const struct net_batch *b, float *probs, struct net_stats *stats,
                    struct error *err);

/* Plans are cached per batch size; beyond NET_MAX_PLANS sizes the oldest plan is replaced. */

#endif

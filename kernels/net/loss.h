/* loss.h: softmax with categorical cross-entropy from integer labels, fused (the gradient with respect to
 * the logits is simply (p - onehot) / B), on oneDNN's log-softmax primitive. */
#ifndef TRAINER_LOSS_H
#define TRAINER_LOSS_H

#include <stdint.h>

#include "dnn.h"
#include "error.h"

struct loss {
    int n, classes;
    dnnl_primitive_t logsoftmax; /* (n, classes) plain */
    dnnl_memory_t logits_mem;    /* wraps the caller's logits at run time */
    dnnl_memory_t logp;          /* (n, classes) log-probabilities, owned */
    float smoothing;             /* label smoothing of the training loss (with dlogits), 0 after loss_init */
};

int loss_init(struct loss *l, int n, int classes, const struct dnn *d, struct error *err);
void loss_release(struct loss *l);

/* logits (n, classes) plain. Writes probs (n, classes) when not NULL. With labels (n,): adds the summed
 * loss to *loss_sum and the number of argmax hits (ties: the lowest index) to *correct (either may be
 * NULL), and when dlogits is not NULL writes dlogits = (softmax - onehot) * scale. Without labels only
 * probs is written (predict). Labels must be in [0, classes): checked by the caller, and again here
 * (ERR_INPUT) rather than reading out of bounds. Stable for any finite logits (log-softmax subtracts the
 * row maximum).
 * With dlogits (training) and l->smoothing = s > 0, Keras's CategoricalCrossentropy(label_smoothing=s): the
 * target is y = onehot*(1-s) + s/classes, the loss -sum_j y_j log p_j and dlogits = (softmax - y) * scale;
 * without dlogits (evaluation) the loss stays the plain one. */
int loss_softmax_xent(struct loss *l, const float *logits, const int32_t *labels, float scale, float *probs,
                      float *dlogits, double *loss_sum, long *correct, const struct dnn *d, struct error *err);

#endif

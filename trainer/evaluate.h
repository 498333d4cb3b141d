/* evaluate.h: loss, accuracy and confusion matrix of a network over a range of a dataset, split across
 * the ranks (each reads and runs its own contiguous part) and summed. */
#ifndef TRAINER_EVALUATE_H
#define TRAINER_EVALUATE_H

#include <stdint.h>

#include "dataset.h"
#include "net.h"

struct eval_result {
    int64_t count;
    double loss;      /* mean cross-entropy, plus the kernel regularizers' penalty (as Keras reports it) */
    double acc;
    int64_t *confusion; /* (classes, classes) row = true class, column = predicted; NULL if not wanted */
};

/* Probabilities probs (n, classes) of a batch for eval and predict: net_infer_batch's, or with tta_flip (test-time
 * augmentation, as airbench does) the mean of those of the images and of their left-right mirrors. stats (may be
 * NULL, and needs labels) then get the cross-entropy of the mean, clipped to [1e-7, 1 - 1e-7] as Keras clips, and
 * its hits. */
int evaluate_infer(struct net *net, const struct net_batch *b, int tta_flip, float *probs, struct net_stats *stats,
                   struct error *err);

/* evaluate with evaluate_infer's tta_flip. */
int evaluate_tta(struct net *net, struct dataset *ds, int64_t start, int64_t end, int chunk, int tta_flip,
                 struct eval_result *r, struct error *err);

/* Collective. Samples [start, end) of ds in chunks of `chunk` per rank. confusion (if r->confusion is set)
 * must have classes*classes zeroed slots. Returns an error code agreed by all ranks, whose message the rank
 * that found it has already printed (cli_agree). */
int evaluate(struct net *net, struct dataset *ds, int64_t start, int64_t end, int chunk,
             struct eval_result *r, struct error *err);

#endif

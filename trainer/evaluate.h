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

/* Collective. Samples [start, end) of ds in chunks of `chunk` per rank. confusion (if r->confusion is set)
 * must have classes*classes zeroed slots. Returns an error code agreed by all ranks, whose message the rank
 * that found it has already printed (cli_agree). */
int evaluate(struct net *net, struct dataset *ds, int64_t start, int64_t end, int chunk,
             struct eval_result *r, struct error *err);

#endif

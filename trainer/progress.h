/* progress.h: the live progress bar of an epoch on a terminal (rank 0); nothing when stdout is not one. */
#ifndef TRAINER_PROGRESS_H
#define TRAINER_PROGRESS_H

#include <stdint.h>

struct progress {
    int live;          /* stdout is a terminal and not --quiet */
    int64_t steps;     /* in the epoch */
    double t0, last;   /* start of the epoch, last redraw (s) */
};

void progress_start(struct progress *p, int64_t steps, int quiet, double now);
/* Redraws at most ten times a second: "  120/1875 [===>......] ETA 31s - loss: 0.5123 - acc: 0.8101 - 5321 img/s". */
void progress_update(struct progress *p, int64_t done, double loss, double acc, double img_s, double now);
/* Clears the bar so the epoch line takes its place. */
void progress_end(struct progress *p);

#endif

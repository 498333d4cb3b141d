/* progress.h: rank 0's live progress bar within an epoch, drawn in place on a terminal; nothing when
 * stdout is a file or a pipe (batch logs then get only the epoch lines). */
#ifndef TRAINER_PROGRESS_H
#define TRAINER_PROGRESS_H

#include <stdint.h>

struct progress {
    int live;          /* the bar is drawn: a terminal (see progress_bar_wanted) and not --quiet */
    int64_t steps;     /* in the epoch */
    double t0, last;   /* start of the epoch, last redraw (s) */
    double lr;         /* the current step's learning rate, shown when set (progress_set_lr); NAN: not shown */
};

/* Whether a bar suits stdout, decided once per process:
 *   - TRAINER_PROGRESS=bar or =lines forces it on or off (=auto or unset: decide);
 *   - stdout must be a terminal, and TERM not "dumb";
 *   - when that terminal is not our controlling terminal, a launcher made it: Open MPI's mpirun gives its
 *     local ranks a pseudo-terminal of its own even when its output goes to a file or a pipe. The bar is
 *     then drawn only if the launcher's own stdout (the first ancestor whose stdout is another file) is a
 *     terminal; anything unreadable counts as "not a terminal", so logs stay clean. */
int progress_bar_wanted(void);

void progress_start(struct progress *p, int64_t steps, int quiet, double now);
/* Redraws at most ten times a second, fitted to the terminal's width:
 *   "  120/1875 [=>............................] - ETA: 31s - loss: 0.5123 - acc: 0.8101 - 5321 img/s"
 * A NaN loss leaves out the loss and the accuracy (a bar for work that is not training). */
void progress_update(struct progress *p, int64_t done, double loss, double acc, double img_s, double now);
/* The learning rate the next redraws show (" - lr: 0.00095"). */
void progress_set_lr(struct progress *p, double lr);
/* Clears the bar so the epoch line takes its place. */
void progress_end(struct progress *p);

/* Before printing anything else (an error) while a bar may be on the screen: ends its line, so the bar
 * stays visible and the message starts on a line of its own. Does nothing when no bar is drawn. */
void progress_interrupt(void);

#endif

/* train_sched.h: the learning-rate schedule and the callbacks in `trainer train`: their options, a resumed
 * run's checks, the lr of each step, the callbacks at each epoch's end and EarlyStopping's restore. */
#ifndef TRAINER_TRAIN_SCHED_H
#define TRAINER_TRAIN_SCHED_H

#include <stdint.h>

#include "error.h"
#include "evaluate.h"

struct run;
struct train_opts;

/* getopt values of the options (cmd_train.c lists them in its long_opts). */
enum {
    OPT_LR_SCHEDULE = 600, OPT_MIN_LR, OPT_STEP_EPOCHS, OPT_STEP_FACTOR, OPT_DECAY_RATE, OPT_WARMUP_EPOCHS,
    OPT_CALLBACK
};

/* One of the options above into o: 0, or ERR_USAGE (printed); ERR_USAGE also for a value it does not know. */
int train_sched_take_opt(int c, const char *arg, struct train_opts *o);
/* After all options (o->optim final): per-kind options, the callbacks parsed. 0 or ERR_USAGE (printed). */
int train_sched_check_opts(struct train_opts *o);
/* --resume: the checkpoint's schedule and callbacks unless the command line gives the same; a change is
 * ERR_USAGE naming the checkpoint and the difference. --epochs defaults to the checkpoint's. */
int train_sched_resume(struct run *r, struct error *err);
/* After the network, the data and (with --resume) the state are loaded: the schedule against the training's
 * length, the callbacks against the data, EarlyStopping's best weights. */
int train_sched_setup(struct run *r, struct error *err);
/* Before each step: sets the optimizer's lr to lr(step) times ReduceLROnPlateau's factor. */
void train_sched_step_lr(struct run *r, int64_t steps_per_epoch);
/* Before a checkpoint: the optimizer's conf as given (its lr is --lr, the schedule's base). */
void train_sched_base_lr(struct run *r);
/* Collective, at an epoch's end (before the state moves on): the callbacks on the epoch's metrics, the same
 * decision on every rank (rank 0's values). */
int train_sched_epoch_end(struct run *r, const struct eval_result *v, struct error *err);
/* Whether training ended for good (--epochs done, or an EarlyStopping stopped it). */
int train_sched_stopped(const struct run *r);
/* Whether the lr may change during the run (a schedule or callbacks): the epoch line then shows it. */
int train_sched_varies(const struct run *r);
/* Collective, when training ends for good: EarlyStopping's best weights put back (Keras 3's on_train_end).
 * Returns 1 when it did so (a checkpoint is then due), else 0. */
int train_sched_finish(struct run *r);
/* For the set-up lines (rank 0). */
void train_sched_print(const struct run *r);

#endif

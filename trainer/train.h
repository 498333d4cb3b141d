/* train.h: what `trainer train` sets up (options, model, data, network, optimizer, where training stands)
 * and the loop that runs it. */
#ifndef TRAINER_TRAIN_H
#define TRAINER_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "callbacks.h"
#include "checkpoint.h"
#include "dataset.h"
#include "feed.h"
#include "model.h"
#include "net.h"
#include "optim.h"
#include "schedule.h"
#include "step.h"

struct train_opts {
    const char *model, *data, *val, *checkpoint, *metrics, *resume, *init_weights;
    double val_split;
    long epochs, batch, seed, threads, max_steps, checkpoint_every;
    struct optim_conf optim;
    int quiet, save_best;
    /* Which options the command line set (a resumed run takes the others from its checkpoint). */
    int set_batch, set_seed, set_optimizer, set_lr, set_momentum, set_nesterov;
    /* The learning-rate schedule and the callbacks (train_sched.c). set_sched: bits of the schedule options
     * given, 1 << (OPT_x - OPT_LR_SCHEDULE). */
    struct sched_conf sched;
    int set_sched, set_epochs, n_callbacks;
    const char *callback_text[CALLBACKS_MAX];
    struct callbacks callbacks;
    /* Recipes (issue 14): micro-batches per update (--accumulate, 1: none), label smoothing, and which of
     * the recipe options the command line set. */
    long accumulate;
    double label_smoothing;
    int set_accumulate, set_label_smoothing, set_weight_decay, set_lars_eta, set_clipnorm, set_global_clipnorm;
};

struct run {
    struct train_opts o;
    const char *exchange;                /* how the ranks exchange gradients (exchange_attach) */
    struct model model;
    struct dataset train, val;
    int train_in_memory, val_in_memory;  /* held in memory (feed_hold_in_memory), else read from the file */
    int has_val;
    int64_t n_train;                     /* training samples are [0, n_train) of `train` */
    int64_t val_start, val_end;          /* validation samples of `val` (or of `train` with --val-split) */
    struct net *net;
    struct optim opt;
    struct checkpoint_state at;          /* where training stands: zero, or read from --resume */
    int64_t *perm;                       /* (n_train,) the epoch's global order */
    int share_max;                       /* largest per-rank share of a global batch */
    uint8_t *images;                     /* (share_max, H, W, C) this rank's share */
    int32_t *labels;                     /* (share_max,) */
    int64_t *ids;                        /* (share_max,) their indices in the dataset */
    struct feed *feed;                   /* the data path: reads the next share while a step computes */
    FILE *metrics;                       /* rank 0 only */
    int threads;
    int stop_requested;                  /* a rank caught SIGTERM/SIGUSR1: stop after this step */
    double lr_now;                       /* the lr of the last step (schedule times plateau factor) */
    struct step step;                    /* the training step (step.c), set up by train_loop */
};

/* SIGTERM and SIGUSR1 set a flag that stops training after the current step (checkpoint, exit 75).
 * Installed first thing, so that a signal during start-up stops the run after its first step instead of
 * killing it with no checkpoint. */
void train_catch_stop_signals(void);

/* Collective. Trains from r->at until --epochs or --max-steps, writing checkpoints as asked. Returns an
 * exit code agreed by all ranks; the rank that found an error has printed it. */
int train_loop(struct run *r);

/* Optimizer steps per epoch: ceil(training samples / (--batch-size x --accumulate)). */
int64_t train_steps_per_epoch(const struct run *r);

#endif

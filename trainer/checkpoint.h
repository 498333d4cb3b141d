/* checkpoint.h: checkpoints as Keras 2 full-model HDF5 files (model_config, training_config,
 * /model_weights) plus /trainer with the state to continue; and reading models and weights back from
 * them or from files Keras wrote. */
#ifndef TRAINER_CHECKPOINT_H
#define TRAINER_CHECKPOINT_H

#include <stdint.h>

#include "callbacks.h"
#include "error.h"
#include "keras_config.h"
#include "model.h"
#include "net.h"
#include "optim.h"
#include "schedule.h"

#define CHECKPOINT_FORMAT_VERSION 1

/* Where training stands, saved in /trainer. */
struct checkpoint_state {
    int64_t step;          /* optimizer steps done */
    int64_t epoch;         /* epochs completed */
    int64_t epoch_step;    /* steps done within the current epoch */
    uint64_t seed;
    int64_t global_batch;
    int world_size;        /* ranks that wrote it */
    double best_val_loss;  /* for --save-best; +inf when none */
    /* The current epoch's running totals, so that the line and metrics row of an epoch interrupted and
     * resumed cover the whole epoch. */
    double epoch_loss_sum; /* summed per-sample loss over the epoch's steps done */
    double epoch_correct;  /* samples whose argmax was right */
    int64_t epoch_seen;    /* samples trained on */
    double epoch_wall_s;   /* seconds spent on them */
    /* Read only (checkpoint_write takes the optimizer's own conf): the optimizer and its hyper-parameters,
     * so that a resumed run continues with them unless the command line overrides them. */
    struct optim_conf optim;
    /* The learning-rate schedule and the callbacks' configs and state (schedule.h, callbacks.h), written when
     * sched_steps_per_epoch > 0. A checkpoint without them reads as a constant schedule at optim.lr and no
     * callbacks. callbacks.best_weights is written when set, never read here: see checkpoint_read_best_weights. */
    struct sched_conf sched;
    int64_t sched_epochs;          /* the --epochs the schedule spans (cosine's end) */
    int64_t sched_steps_per_epoch; /* the steps per epoch it was set for */
    struct callbacks callbacks;
    /* Written only: the training dataset's class names (/trainer attribute class_names), so that the model
     * names its classes wherever it goes; read back with checkpoint_read_class_names. NULL/0: none. */
    const char *const *class_names;
    int n_class_names;
    /* Recipes (issue 14): micro-batches per optimizer step (1: none) and the label smoothing of the loss;
     * absent from older checkpoints: 1 and 0. */
    int64_t accumulate;
    double label_smoothing;
};

/* Writes path atomically: PATH.tmp.<pid> in the same directory, flushed, fsynced, renamed over path (and
 * the directory fsynced), so a crash at any moment leaves the previous file whole. opt and st may be NULL
 * (a weights-only file: no optimizer slots). ERR_IO "PATH: ..." when it cannot be written. */
int checkpoint_write(const char *path, const struct net *net, const struct optim *opt,
                     const struct checkpoint_state *st, struct error *err);

/* The model of a checkpoint or of a Keras full-model file: from /trainer's model text when present, else
 * from the Keras `model_config` JSON. ERR_INPUT naming the file and the unsupported layer or option. */
int checkpoint_read_model(const char *path, struct model *m, struct error *err);

/* Loads /model_weights into net->params (shapes checked against the model: ERR_INPUT on mismatch). */
int checkpoint_read_weights(const char *path, struct net *net, struct error *err);

/* Loads /trainer's state and optimizer slots (opt must be initialised with the same kind and size). */
int checkpoint_read_state(const char *path, struct optim *opt, struct checkpoint_state *st, struct error *err);

/* /trainer/best_weights (n,): EarlyStopping's copy of the parameter slab, into dst. ERR_INPUT when absent or of
 * another size. */
int checkpoint_read_best_weights(const char *path, float *dst, size_t n, struct error *err);
/* The class names a checkpoint carries (/trainer attribute class_names, variable-length UTF-8 strings):
 * *names malloc'd (each string too; free with checkpoint_free_class_names), *n 0 when the file has none (a
 * Keras file, a checkpoint of a dataset without names). ERR_INPUT for an unreadable file or attribute. */
int checkpoint_read_class_names(const char *path, char ***names, int *n, struct error *err);
void checkpoint_free_class_names(char **names, int n);

#endif

/* checkpoint.h: checkpoints as Keras 2 full-model HDF5 files (model_config, training_config,
 * /model_weights) plus /trainer with the state to continue; and reading models and weights back from
 * them or from files Keras wrote. */
#ifndef TRAINER_CHECKPOINT_H
#define TRAINER_CHECKPOINT_H

#include <stdint.h>

#include "error.h"
#include "model.h"
#include "net.h"
#include "optim.h"

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

/* Builds a model from Keras model_config JSON text (Sequential). `file` names it in messages. */
int keras_config_to_model(const char *json, const char *file, struct model *m, struct error *err);
/* The Keras Sequential model_config JSON of m (malloc'd string). */
char *keras_config_from_model(const struct model *m);

#endif

/* callbacks.h: Keras's ReduceLROnPlateau and EarlyStopping, parsed from their Keras call text
 * (`--callback "EarlyStopping(patience=5)"`), run at each epoch's end on the epoch's metrics; their state
 * travels in checkpoints so that a resumed run continues them. */
#ifndef TRAINER_CALLBACKS_H
#define TRAINER_CALLBACKS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum cb_kind { CB_REDUCE_LR_ON_PLATEAU, CB_EARLY_STOPPING };
/* The epoch's logs, in this order (Keras's names; "accuracy" and "val_accuracy" are the same values). */
enum cb_monitor { CB_LOSS, CB_ACC, CB_VAL_LOSS, CB_VAL_ACC, CB_N_LOGS };

#define CALLBACKS_MAX 8
/* Per callback in the checkpoint: best, wait, cooldown_counter, best_epoch, stopped_epoch, started. */
#define CALLBACK_STATE_FIELDS 6

struct callback {
    enum cb_kind kind;
    char text[320];         /* the call with every argument, canonical: what the checkpoint keeps */
    char monitor_name[16];  /* as given: 'val_loss', 'val_accuracy' ... */
    enum cb_monitor monitor;
    int maximize;           /* mode 'max', or 'auto' on a monitor with "acc" in its name (Keras) */
    int mode;               /* 0 auto, 1 min, 2 max: as given */
    int verbose;
    double min_delta;       /* as given (EarlyStopping uses |min_delta|, as Keras) */
    long patience;
    /* ReduceLROnPlateau */
    double factor, min_lr;
    long cooldown;
    /* EarlyStopping */
    int has_baseline, restore_best_weights;
    double baseline;
    long start_from_epoch;
    /* State */
    double best;            /* +inf (min) or -inf (max) at the start */
    long wait, cooldown_counter;
    long best_epoch;        /* 0-based epoch of `best` */
    long stopped_epoch;     /* EarlyStopping: 0-based epoch it stopped at, else -1 */
    int started;            /* EarlyStopping: saw an epoch (from start_from_epoch on) */
};

struct callbacks {
    int n;
    struct callback cb[CALLBACKS_MAX];
    /* The product of ReduceLROnPlateau's reductions: the optimizer's lr is the schedule's lr(t) times it. */
    double lr_factor;
    int stopped;            /* an EarlyStopping ended training */
    int restored;           /* the best weights were put back at the end of training */
    /* The restoring EarlyStopping's copy of the parameter slab (n_params, malloc'd), or NULL. */
    float *best_weights;
    size_t n_params;
};

/* What an epoch's end asks of the caller. */
struct cb_events {
    int snapshot;           /* copy the current weights into best_weights */
    int stop;               /* end training after this epoch */
    int reduced;            /* lr_factor changed */
    char msg[512];          /* lines for the log (verbose callbacks and stops), "" when none */
};

void callbacks_init(struct callbacks *c);
void callbacks_free(struct callbacks *c);
/* Appends one callback from its Keras call text; `ordinal` (1-based, the option's position) and "--callback"
 * name it in messages: "--callback:1:COL: what". ERR_USAGE on any problem. */
int callbacks_add(struct callbacks *c, const char *text, int ordinal, struct error *err);
/* Whether a callback watches a val_ metric (then the training needs validation data). */
int callbacks_need_val(const struct callbacks *c);
/* The index of the EarlyStopping that restores weights, or -1. */
int callbacks_restoring(const struct callbacks *c);
/* All callbacks' texts joined by newlines (for the checkpoint); "" when none. */
void callbacks_text(const struct callbacks *c, char *buf, size_t size);
/* The reverse: callbacks from newline-separated texts (fresh state). ERR_USAGE as callbacks_add. */
int callbacks_from_text(struct callbacks *c, const char *text, struct error *err);

/* Keras's on_epoch_end for each callback in order, epoch 0-based, logs by enum cb_monitor. base_lr is
 * the schedule's --lr: ReduceLROnPlateau's "current lr" is base_lr * lr_factor (the schedule scaled) and
 * min_lr bounds that product, so the factor never goes below min_lr / base_lr. */
void callbacks_epoch_end(struct callbacks *c, long epoch, const double logs[CB_N_LOGS], double base_lr,
                         struct cb_events *ev);

/* The state as numbers (CALLBACK_STATE_FIELDS per callback) and back; callbacks_set_state returns -1 (and
 * changes nothing) when a counter is not a whole number in range or best is NaN. */
void callbacks_get_state(const struct callbacks *c, double *out);
int callbacks_set_state(struct callbacks *c, const double *in);

#endif

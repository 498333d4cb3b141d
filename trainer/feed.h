/* feed.h: the training step's data path. This rank's share of each global batch of an epoch is read from the
 * HDF5 dataset by a helper thread while earlier batches compute (three buffers: one in use, two read ahead),
 * so the step does not wait for the file. Same samples in the same order as a plain read: reading ahead
 * changes when a batch is read, never what it holds. */
#ifndef TRAINER_FEED_H
#define TRAINER_FEED_H

#include <stdint.h>

#include "dataset.h"
#include "error.h"

/* One rank's share of one step: n samples; the arrays belong to the feed and stay valid until the next
 * feed_take. */
struct feed_batch {
    int n;
    const uint8_t *images; /* (n, h, w, c) as stored */
    const int32_t *labels; /* (n,) checked against [0, n_classes) */
    const int64_t *ids;    /* (n,) dataset index of each sample (the dropout masks use them) */
};

struct feed;

/* A feed over `ds` for global batches of `batch` samples taken in the order perm (n_train,), which the caller
 * owns and changes only between epochs (after feed_idle). This rank's share of a batch is as train_loop
 * splits it (dist_rank/dist_size). With threaded 0, or when the HDF5 library is not thread-safe, every
 * read happens in feed_take. */
int feed_create(struct feed **out, struct dataset *ds, const int64_t *perm, int64_t n_train, int64_t batch,
                int n_classes, int threaded, struct error *err);
/* Waits for a read in flight, then frees everything. NULL is fine. */
void feed_destroy(struct feed *f);

/* Starts reading this rank's share of step `step` of the epoch (0-based) in the background, and of the step
 * after it, into buffers the last feed_take did not return. Nothing past the epoch's end or when not
 * threaded. */
void feed_start(struct feed *f, int64_t step);

/* This rank's share of step `step`: the prefetched one when feed_start asked for it (waiting for a read
 * under way; reading it now when the helper has not started it), else read now. Returns ERR_OK or dataset_read's error (a bad label: ERR_INPUT naming the file and
 * sample), with b->n set either way. The previous batch's arrays may be reused from here on. */
int feed_take(struct feed *f, int64_t step, struct feed_batch *b, struct error *err);

/* Batches feed_take has returned, and how many of them the caller read itself: not read ahead (the first of
 * an epoch, unthreaded) or not yet started by the helper when the step wanted it. Only the caller's thread may
 * ask. */
void feed_counts(const struct feed *f, long *taken, long *by_step);

/* The training set (and a validation set) are held in memory (dataset_hold_in_memory) when they fit an
 * eighth of the machine's memory divided among the node's ranks, unless TRAINER_DATA_CACHE=off. A feed over
 * a dataset held in memory needs no helper thread: a batch is a copy (~2 us), cheaper than waking one.
 * *budget: bytes left, -1 on the first call (it is then computed). *held: whether ds is now in memory.
 * feed_check_env: ERR_USAGE when TRAINER_DATA_CACHE is neither auto nor off. */
int feed_check_env(struct error *err);
int feed_hold_in_memory(struct dataset *ds, int64_t *budget, int *held, struct error *err);

/* Tests: while hold is 1 the helper starts no read, so the step reads every batch itself. */
void feed_pause_helper(struct feed *f, int hold);

/* Waits until no read is in flight and drops what was prefetched: call before changing perm (a new epoch)
 * and before this thread uses the dataset itself (validation on --val-split data). */
void feed_idle(struct feed *f);

#endif

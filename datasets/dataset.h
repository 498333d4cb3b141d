/* dataset.h: the HDF5 dataset of SPEC.md (/images uint8 (N, H, W, C), /labels integer (N,), attribute
 * class_names), read a batch at a time: a rank reads only the samples it trains on. */
#ifndef TRAINER_DATASET_H
#define TRAINER_DATASET_H

#include <stdint.h>

#include <hdf5.h>

#include "error.h"

#define DATASET_MAX_CLASSES 1000

struct dataset {
    char path[1024];
    hid_t file, images, labels;
    int64_t n;                /* samples */
    int h, w, c;              /* per-sample image shape */
    int n_class_names;        /* 0 when the file has no class_names attribute */
    char **class_names;       /* (n_class_names,) owned */
    /* dataset_read's scratch, grown on demand and kept, so a training loop does not allocate per batch. */
    int scratch_cap;              /* samples per request the arrays below have room for */
    struct dataset_slot *slots;   /* (scratch_cap,) a request's indices, sorted */
    uint8_t *scratch_images;      /* (scratch_cap, h, w, c) its distinct samples, in file order */
    int32_t *scratch_labels;      /* (scratch_cap,) */
    hsize_t *scratch_coords;      /* (scratch_cap,) its distinct indices, ascending */
    /* Raw reads of /images (see dataset.c, "raw reads"): when its samples lie whole and unfiltered in the
     * file, dataset_read takes their bytes with pread at offsets HDF5 reported at open, not through
     * H5Dread (~3 us a call). raw_offset NULL: every read goes through HDF5 (dataset_no_raw). */
    int raw_fd;
    int64_t raw_per_chunk;        /* samples per stored block: the chunk's first dimension, or n (contiguous) */
    int64_t raw_blocks;           /* (n + raw_per_chunk - 1) / raw_per_chunk */
    int64_t *raw_offset;          /* (raw_blocks,) file offset of each block's first sample */
    /* /labels, all of them, read once at the first dataset_read when small (4 bytes a sample, up to
     * DATASET_CACHED_LABELS samples): a batch's labels are then a look-up, not a point selection read. */
    int32_t *all_labels;
    /* /images, all of it, when dataset_hold_in_memory took it: a batch is then memcpy, no file access. */
    uint8_t *all_images;
};

#define DATASET_CACHED_LABELS ((int64_t)1 << 24)

/* Opens and validates the layout (ranks, types, matching N, N > 0) without reading the data.
 * ERR_INPUT "PATH: what is wrong" for a missing file, a non-HDF5 or damaged file, missing or malformed
 * /images or /labels; ERR_IO when the file exists but cannot be read. The HDF5 library's own error printing
 * is switched off. On failure nothing stays open; dataset_close is safe on a failed or closed dataset. */
int dataset_open(struct dataset *ds, const char *path, struct error *err);
void dataset_close(struct dataset *ds);

/* Turns raw reads off: every later read goes through H5Dread (tests compare the two paths). */
void dataset_no_raw(struct dataset *ds);

/* Reads all of /images (and /labels) into memory when it takes at most max_bytes, so that every later
 * dataset_read copies from memory: 60,000 Fashion-MNIST samples are 47 MB, read once in ~50 ms, and a
 * batch of 32 then costs ~2 us instead of 32 reads from the file. *held is 1 when it did, 0 when the data
 * is larger or memory is short (reads then stay with the file). ERR_INPUT when the file cannot be read. */
int dataset_hold_in_memory(struct dataset *ds, int64_t max_bytes, int *held, struct error *err);

/* Reads samples idx[0..n) (any order, repeats allowed, each in [0, ds->n)) into images (n, h, w, c) and
 * labels (n,), in the order given. Only those samples are read from the file. Labels are checked against
 * [0, n_classes) when n_classes > 0: ERR_INPUT naming the file, the sample index and the value. An index
 * outside [0, ds->n) is the caller's bug: ERR_INTERNAL. Uses ds's scratch buffers: one thread per dataset. */
int dataset_read(struct dataset *ds, const int64_t *idx, int n, uint8_t *images, int32_t *labels,
                 int n_classes, struct error *err);

/* Counts per class over the whole file (for `info`); counts has n_classes slots (may be NULL when
 * n_classes is 0). Labels >= n_classes are not counted, but *max_label (when not NULL) gets the largest
 * label seen, so the caller can tell. A negative label is ERR_INPUT naming the sample. */
int dataset_label_counts(struct dataset *ds, int64_t *counts, int n_classes, int *max_label, struct error *err);

/* Writes a dataset file from memory: images (n, h, w, c) uint8, labels (n,) uint8..int32, class names
 * (may be NULL). Written to PATH.tmp.<pid> in the same directory, fsync'ed, then renamed over PATH, so a
 * failure never leaves a half-written PATH (and removes the temporary file). Chunked along N, uncompressed,
 * so random reads stay fast. /labels is uint8 when every label is in [0, 256), int32 otherwise; class_names
 * is an array of variable-length UTF-8 strings. The file is built in memory first (about the size of the
 * data), then written with plain write(). ERR_IO "PATH: cannot create: ..." / "cannot write: ..." when the
 * file system refuses; ERR_INPUT for n <= 0 or an empty sample shape. */
int dataset_write(const char *path, const uint8_t *images, const int32_t *labels, int64_t n, int h, int w,
                  int c, const char *const *class_names, int n_class_names, struct error *err);

/* A dataset file written as its samples arrive, for inputs larger than memory (import images): /images and
 * /labels are chunked and extended at each append, in PATH.tmp.<pid> on disk, renamed over PATH by commit. */
struct dataset_stream {
    hid_t file, images, labels;
    char *path, *tmp;
    int fd;       /* the temporary file, for its reservation, fsync and removal */
    int h, w, c;
    int64_t n;    /* samples written so far */
};

/* Creates the temporary file and reserves about `expected` samples' bytes on disk (so a full disk fails
 * before any work). Labels are stored uint8 when n_classes <= 256, int32 otherwise. ERR_IO when the
 * directory or the disk refuses. On failure nothing is left on disk. */
int dataset_stream_open(struct dataset_stream *s, const char *path, int h, int w, int c, int n_classes,
                        int64_t expected, struct error *err);
/* Appends n samples (n, h, w, c) and their labels. On failure the stream is discarded (ERR_IO). */
int dataset_stream_append(struct dataset_stream *s, const uint8_t *images, const int32_t *labels, int64_t n,
                          struct error *err);
/* Writes class_names (may be NULL), closes, fsyncs and renames into place; no samples is ERR_INPUT.
 * Releases s either way. */
int dataset_stream_commit(struct dataset_stream *s, const char *const *class_names, int n_class_names,
                          struct error *err);
/* Gives up: removes the temporary file. Safe after a failure or a commit. */
void dataset_stream_discard(struct dataset_stream *s);

#endif

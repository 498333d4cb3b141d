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
};

/* Opens and validates the layout (ranks, types, matching N, N > 0) without reading the data.
 * ERR_INPUT "PATH: what is wrong" for a missing file, a non-HDF5 or damaged file, missing or malformed
 * /images or /labels. The HDF5 library's own error printing is switched off. */
int dataset_open(struct dataset *ds, const char *path, struct error *err);
void dataset_close(struct dataset *ds);

/* Reads samples idx[0..n) (any order, repeats allowed, each in [0, ds->n)) into images (n, h, w, c) and
 * labels (n,), in the order given. Only those samples are read from the file. Labels are checked against
 * [0, n_classes) when n_classes > 0: ERR_INPUT naming the file, the sample index and the value. */
int dataset_read(struct dataset *ds, const int64_t *idx, int n, uint8_t *images, int32_t *labels,
                 int n_classes, struct error *err);

/* Counts per class over the whole file (for `info`); counts has n_classes slots. */
int dataset_label_counts(struct dataset *ds, int64_t *counts, int n_classes, int *max_label, struct error *err);

/* Writes a dataset file from memory: images (n, h, w, c) uint8, labels (n,) uint8..int32, class names
 * (may be NULL). Written to PATH.tmp.<pid> in the same directory, then renamed over PATH, so a failure
 * never leaves a half-written PATH. Chunked along N. */
int dataset_write(const char *path, const uint8_t *images, const int32_t *labels, int64_t n, int h, int w,
                  int c, const char *const *class_names, int n_class_names, struct error *err);

#endif

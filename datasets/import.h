/* import.h: converters from the distribution formats of MNIST-like (IDX) and CIFAR-10 (binary batches)
 * datasets to the HDF5 dataset layout. */
#ifndef TRAINER_IMPORT_H
#define TRAINER_IMPORT_H

#include <stdint.h>

#include "error.h"

/* The class names of the known datasets (10 each). */
extern const char *const import_fashion_mnist_names[10];
extern const char *const import_mnist_names[10];
extern const char *const import_cifar10_names[10];

/* IDX images (magic 0x00000803, N x rows x cols uint8) and labels (0x00000801, N uint8), plain or gzip
 * (detected from the content, not the name). Written with the given class names (may be NULL/0).
 * *n_out gets the sample count. */
int import_idx(const char *images_path, const char *labels_path, const char *out_path,
               const char *const *class_names, int n_class_names, int64_t *n_out, struct error *err);

/* CIFAR-10 binary batches: records of 1 label byte + 3072 bytes (1024 R, 1024 G, 1024 B, row-major 32x32),
 * converted to HWC. The ten CIFAR-10 class names. */
int import_cifar10(const char *const *paths, int n_paths, const char *out_path, int64_t *n_out,
                   struct error *err);

#endif

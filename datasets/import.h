/* import.h: converters from the distribution formats of MNIST-like (IDX) and CIFAR-10 (binary batches)
 * datasets to the HDF5 dataset layout. */
#ifndef TRAINER_IMPORT_H
#define TRAINER_IMPORT_H

#include <stdint.h>

#include "error.h"
#include "image.h"

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

/* import images: a class-folder tree of PNG and JPEG files, as Keras's image_dataset_from_directory. */
struct import_images_opts {
    const char *dir;
    const char *out;              /* the (training) dataset */
    const char *val_out;          /* the validation dataset when val_split > 0 */
    int size_h, size_w;           /* 0, 0: keep the files' own size (all must share it) */
    int channels;                 /* 1 grayscale, 3 rgb, 4 rgba */
    enum image_interpolation interpolation;
    int crop_to_aspect_ratio;     /* Keras's smart-resize window before resizing (needs a size) */
    double val_split;             /* 0: no split */
    uint32_t seed;                /* the split's shuffle (numpy RandomState(seed)) */
    const char *const *class_names; /* NULL: from class_names.txt or the folders (image_index.h) */
    int n_class_names;
    int threads;                  /* decoding threads (>= 1) */
    int skip_invalid;             /* a file that cannot be read is skipped and counted, not an error */
    /* Called after every batch with the files done so far (may be NULL). */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
};

struct import_images_report {
    int64_t n_train, n_val;       /* samples written to out and val_out */
    int64_t skipped;              /* files skipped (skip_invalid) */
    char first_skipped[512];      /* the first one's message */
    int64_t not_read;             /* .bmp and .gif files, not read */
    int n_classes, h, w, c;
};

/* Writes out (and val_out) as their samples are decoded: nothing on disk on failure. The files are decoded
 * on opts->threads threads and written in file order. ERR_INPUT "FILE: what is wrong" for the first file
 * (in file order) that cannot be decoded or has another size (without skip_invalid), and for the tree
 * errors of image_index_build; ERR_IO when out cannot be written. */
int import_images(const struct import_images_opts *opts, struct import_images_report *report,
                  struct error *err);

/* export images: writes every sample of the dataset at data_path as DIR/CLASS/NNNNN.png (CLASS: its class
 * name's folder, or the label number with leading zeros when the file has no class names; NNNNN: the
 * sample's index, zero-padded so that names sort in file order), and DIR/class_names.txt when the file has
 * class names. DIR may exist, but must hold no class folder of the same name. *n_out gets the count. */
int export_images(const char *data_path, const char *dir, int64_t *n_out, struct error *err);

#endif

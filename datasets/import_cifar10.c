/* import_cifar10.c: CIFAR-10 binary batches (label byte + channel-planar 32x32 RGB) to the HDF5 dataset. */
#define _POSIX_C_SOURCE 200809L

#include "import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "dataset.h"

#define CIFAR_SIDE 32
#define CIFAR_CHANNELS 3
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)           /* pixels per channel */
#define CIFAR_PIXELS (CIFAR_PLANE * CIFAR_CHANNELS)     /* bytes of one image */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)                 /* 3073: the label byte, then the image */
#define CIFAR_CLASSES 10
#define CIFAR_FIRST_CAP 10000                           /* one distribution batch */

const char *const import_cifar10_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

/* The growing output of the import: every file's records, in order. */
struct cifar_out {
    uint8_t *images; /* (cap, 32, 32, 3) */
    int32_t *labels; /* (cap,) */
    int64_t n, cap;
};

/* zlib reads plain files as they are (and a gzipped batch too). A missing input is bad input (the user
 * named it); any other failure to open is an I/O failure. */
static int open_input(const char *path, gzFile *f, struct error *err)
{
    errno = 0;
    *f = gzopen(path, "rb");
    if (!*f)
        return error_set(err, errno == ENOENT || errno == ENOTDIR ? ERR_INPUT : ERR_IO, "%s: cannot open: %s",
                         path, errno ? strerror(errno) : "out of memory");
    return ERR_OK;
}

/* Reads one record, or less at the end of the file. */
static int read_record(gzFile f, const char *path, uint8_t *rec, size_t *got, struct error *err)
{
    int zerr, r;

    for (*got = 0; *got < CIFAR_RECORD; *got += (size_t)r) {
        r = gzread(f, rec + *got, (unsigned)(CIFAR_RECORD - *got));
        if (r < 0) {
            const char *msg = gzerror(f, &zerr);
            return error_set(err, zerr == Z_ERRNO ? ERR_IO : ERR_INPUT, "%s: cannot read: %s", path,
                             zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (r == 0)
            break;
    }
    return ERR_OK;
}

static int make_room(struct cifar_out *out, struct error *err)
{
    int64_t cap = out->cap ? out->cap * 2 : CIFAR_FIRST_CAP;
    uint8_t *images;
    int32_t *labels;

    if (out->n < out->cap)
        return ERR_OK;
    images = realloc(out->images, (size_t)cap * CIFAR_PIXELS);
    if (images)
        out->images = images;
    labels = realloc(out->labels, (size_t)cap * sizeof *labels);
    if (labels)
        out->labels = labels;
    if (!images || !labels)
        return error_set(err, ERR_INTERNAL, "out of memory for %lld CIFAR-10 images", (long long)cap);
    out->cap = cap;
    return ERR_OK;
}

/* rec: label, then (3, 32, 32) planar; hwc: (32, 32, 3) interleaved, as the network reads it. */
static void planar_to_hwc(const uint8_t *rec, uint8_t *hwc)
{
    const uint8_t *planes = rec + 1;

    for (int p = 0; p < CIFAR_PLANE; p++)
        for (int ch = 0; ch < CIFAR_CHANNELS; ch++)
            hwc[p * CIFAR_CHANNELS + ch] = planes[ch * CIFAR_PLANE + p];
}

static int check_record(const char *path, int64_t k, const uint8_t *rec, size_t got, struct error *err)
{
    if (got < CIFAR_RECORD)
        return error_set(err, ERR_INPUT, "%s: size %lld is not a multiple of the %d-byte record (1 label byte "
                         "+ 3072 pixels)", path, (long long)(k * CIFAR_RECORD + (int64_t)got), CIFAR_RECORD);
    if (rec[0] >= CIFAR_CLASSES)
        return error_set(err, ERR_INPUT, "%s: record %lld has label %u, outside [0, %d)", path, (long long)k,
                         rec[0], CIFAR_CLASSES);
    return ERR_OK;
}

/* Appends every record of one file to out. */
static int read_batch(const char *path, struct cifar_out *out, struct error *err)
{
    uint8_t rec[CIFAR_RECORD];
    gzFile f = NULL;
    int64_t k;
    size_t got;
    int rc = open_input(path, &f, err);

    for (k = 0; rc == ERR_OK; k++) {
        if ((rc = read_record(f, path, rec, &got, err)) || got == 0)
            break;
        if ((rc = check_record(path, k, rec, got, err)) || (rc = make_room(out, err)))
            break;
        planar_to_hwc(rec, out->images + (size_t)out->n * CIFAR_PIXELS);
        out->labels[out->n++] = rec[0];
    }
    if (rc == ERR_OK && k == 0)
        rc = error_set(err, ERR_INPUT, "%s: empty file, no CIFAR-10 records", path);
    if (f)
        gzclose(f);
    return rc;
}

int import_cifar10(const char *const *paths, int n_paths, const char *out_path, int64_t *n_out,
                   struct error *err)
{
    struct cifar_out out = {0};
    int rc = ERR_OK;

    if (n_paths <= 0)
        return error_set(err, ERR_USAGE, "import cifar10: no input files");
    for (int i = 0; i < n_paths && rc == ERR_OK; i++)
        rc = read_batch(paths[i], &out, err);
    if (rc == ERR_OK)
        rc = dataset_write(out_path, out.images, out.labels, out.n, CIFAR_SIDE, CIFAR_SIDE, CIFAR_CHANNELS,
                           import_cifar10_names, CIFAR_CLASSES, err);
    if (rc == ERR_OK && n_out)
        *n_out = out.n;
    free(out.images);
    free(out.labels);
    return rc;
}

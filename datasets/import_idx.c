/* import_idx.c: IDX image and label files (MNIST, Fashion-MNIST), plain or gzip, to the HDF5 dataset. */
#define _POSIX_C_SOURCE 200809L

#include "import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "dataset.h"

#define IDX_IMAGES_MAGIC 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_LABELS_MAGIC 0x00000801u /* unsigned bytes, 1 dimension */
#define IDX_MAX_SIDE 65535u          /* keeps rows * cols * N inside 64 bits */
/* Grow the buffer while reading rather than trust a header's N: a damaged header must not cost gigabytes. */
#define FIRST_ALLOC ((size_t)64 << 20)

const char *const import_fashion_mnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
const char *const import_mnist_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

struct idx_images {
    uint32_t n, rows, cols;
    uint8_t *pixels; /* (n, rows, cols) */
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* zlib reads gzip and plain files alike, so the content decides, not the name. A missing input is bad input
 * (the user named it); any other failure to open is an I/O failure. */
static int open_input(const char *path, gzFile *f, struct error *err)
{
    errno = 0;
    *f = gzopen(path, "rb");
    if (!*f)
        return error_set(err, errno == ENOENT || errno == ENOTDIR ? ERR_INPUT : ERR_IO, "%s: cannot open: %s",
                         path, errno ? strerror(errno) : "out of memory");
    return ERR_OK;
}

/* Reads up to len bytes; *got < len only at the end of the file (a gzip stream cut short included). */
static int read_up_to(gzFile f, const char *path, uint8_t *buf, size_t len, size_t *got, struct error *err)
{
    int zerr, r;

    for (*got = 0; *got < len; *got += (size_t)r) {
        size_t want = len - *got < (1u << 30) ? len - *got : (1u << 30); /* gzread takes an unsigned int */
        r = gzread(f, buf + *got, (unsigned)want);
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

/* Reads up to want bytes into a buffer grown as data arrives; *got tells how many came. */
static int read_body(gzFile f, const char *path, size_t want, uint8_t **out, size_t *got, struct error *err)
{
    size_t cap = 0, n;
    uint8_t *buf = NULL;
    int rc = ERR_OK;

    for (*got = 0; *got < want && rc == ERR_OK; *got += n) {
        size_t next = cap == 0 ? FIRST_ALLOC : cap * 2;
        uint8_t *grown = realloc(buf, next < want ? next : want);
        if (!grown) {
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory reading %zu bytes", path, want);
            break;
        }
        buf = grown;
        cap = next < want ? next : want;
        rc = read_up_to(f, path, buf + *got, cap - *got, &n, err);
        if (n < cap - *got) {
            *got += n;
            break;
        }
    }
    *out = buf;
    return rc;
}

/* The IDX header promises a size: anything after it means the header is not what it seems. */
static int expect_end(gzFile f, const char *path, uint32_t n, const char *what, struct error *err)
{
    uint8_t extra;
    size_t got;
    int rc = read_up_to(f, path, &extra, 1, &got, err);

    if (rc == ERR_OK && got)
        rc = error_set(err, ERR_INPUT, "%s: data after the %u %s the header declares", path, n, what);
    return rc;
}

static int read_header(gzFile f, const char *path, uint8_t *hdr, size_t len, uint32_t magic, const char *kind,
                       struct error *err)
{
    size_t got;
    int rc = read_up_to(f, path, hdr, len, &got, err);

    if (rc)
        return rc;
    if (got < 4 || be32(hdr) != magic)
        return error_set(err, ERR_INPUT, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path, kind,
                         got < 4 ? 0u : be32(hdr), magic);
    if (got < len)
        return error_set(err, ERR_INPUT, "%s: truncated IDX header (%zu of %zu bytes)", path, got, len);
    return ERR_OK;
}

static int read_images(const char *path, struct idx_images *im, struct error *err)
{
    gzFile f = NULL;
    uint8_t hdr[16];
    size_t bytes, got;
    int rc;

    if ((rc = open_input(path, &f, err)) || (rc = read_header(f, path, hdr, sizeof hdr, IDX_IMAGES_MAGIC,
                                                              "image", err)))
        goto fail;
    im->n = be32(hdr + 4);
    im->rows = be32(hdr + 8);
    im->cols = be32(hdr + 12);
    if (im->n == 0 || im->rows == 0 || im->cols == 0 || im->rows > IDX_MAX_SIDE || im->cols > IDX_MAX_SIDE) {
        rc = error_set(err, ERR_INPUT, "%s: unusable IDX shape %u x %u x %u", path, im->n, im->rows, im->cols);
        goto fail;
    }
    bytes = (size_t)im->n * im->rows * im->cols;
    if ((rc = read_body(f, path, bytes, &im->pixels, &got, err)))
        goto fail;
    if (got < bytes) {
        rc = error_set(err, ERR_INPUT, "%s: truncated: the header declares %u images of %ux%u (%zu bytes), "
                       "the file has %zu", path, im->n, im->rows, im->cols, bytes, got);
        goto fail;
    }
    rc = expect_end(f, path, im->n, "images", err);
fail:
    if (f)
        gzclose(f);
    return rc;
}

static int read_labels(const char *path, uint8_t **labels, uint32_t *n, struct error *err)
{
    gzFile f = NULL;
    uint8_t hdr[8];
    size_t got;
    int rc;

    if ((rc = open_input(path, &f, err)) || (rc = read_header(f, path, hdr, sizeof hdr, IDX_LABELS_MAGIC,
                                                              "label", err)))
        goto fail;
    *n = be32(hdr + 4);
    if ((rc = read_body(f, path, *n, labels, &got, err)))
        goto fail;
    if (got < *n) {
        rc = error_set(err, ERR_INPUT, "%s: truncated: the header declares %u labels, the file has %zu", path,
                       *n, got);
        goto fail;
    }
    rc = expect_end(f, path, *n, "labels", err);
fail:
    if (f)
        gzclose(f);
    return rc;
}

/* Widens the labels to the int32 of dataset_write, checking them against the class names when known. */
static int widen_labels(const char *path, const uint8_t *in, uint32_t n, int n_classes, int32_t **out,
                        struct error *err)
{
    *out = malloc((size_t)n * sizeof **out);
    if (!*out)
        return error_set(err, ERR_INTERNAL, "%s: out of memory for %u labels", path, n);
    for (uint32_t i = 0; i < n; i++) {
        if (n_classes > 0 && in[i] >= n_classes)
            return error_set(err, ERR_INPUT, "%s: sample %u has label %u, outside [0, %d)", path, i, in[i],
                             n_classes);
        (*out)[i] = in[i];
    }
    return ERR_OK;
}

int import_idx(const char *images_path, const char *labels_path, const char *out_path,
               const char *const *class_names, int n_class_names, int64_t *n_out, struct error *err)
{
    struct idx_images im = {0};
    uint8_t *raw_labels = NULL;
    int32_t *labels = NULL;
    uint32_t n_labels = 0;
    int rc;

    if ((rc = read_images(images_path, &im, err)) || (rc = read_labels(labels_path, &raw_labels, &n_labels, err)))
        goto fail;
    if (n_labels != im.n) {
        rc = error_set(err, ERR_INPUT, "%s: has %u labels but %s has %u images", labels_path, n_labels,
                       images_path, im.n);
        goto fail;
    }
    if ((rc = widen_labels(labels_path, raw_labels, im.n, class_names ? n_class_names : 0, &labels, err)) ||
        (rc = dataset_write(out_path, im.pixels, labels, im.n, (int)im.rows, (int)im.cols, 1, class_names,
                            class_names ? n_class_names : 0, err)))
        goto fail;
    if (n_out)
        *n_out = im.n;
fail:
    free(im.pixels);
    free(raw_labels);
    free(labels);
    return rc;
}

/* import_images.c: a class-folder tree of PNG and JPEG files to the HDF5 dataset, decoded in parallel and
 * written in file order as it goes. */
#include "import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "dataset.h"
#include "image_index.h"

#define BATCH_PER_THREAD 64
/* A batch holds each sample three times (decoded, then sorted into its subset): large images get fewer. */
#define BATCH_BYTES ((size_t)256 << 20)

/* One file of a batch, decoded by any thread; read back in file order. */
struct slot {
    struct error err; /* err.code != 0: this file failed */
};

struct batch {
    int cap;
    uint8_t *pixels;   /* (cap, h, w, c) one sample per file of the batch */
    struct slot *slots;
    uint8_t *train;    /* (cap, h, w, c) the batch's good samples of each subset, compacted */
    uint8_t *val;
    int32_t *train_labels, *val_labels;
};

struct importer {
    const struct import_images_opts *o;
    struct image_index ix;
    uint8_t *is_val;          /* (ix.n,) */
    int h, w, c;              /* the samples' shape */
    size_t sample;            /* h * w * c */
    struct dataset_stream train, val;
    struct batch b;
};

/* Decodes file i into out (h, w, c): resized to the target size, or checked against the first file's. */
static int decode_one(const struct importer *im, int64_t i, uint8_t *out, struct error *err)
{
    const struct import_images_opts *o = im->o;
    const char *path = im->ix.files[i].path;
    struct image pic;
    int rc = image_read_file(path, o->channels, &pic, err);

    if (rc == ERR_OK && !image_utf8_valid(path))
        rc = error_set(err, ERR_INPUT, "%s: file name is not valid UTF-8", path);
    if (rc)
        goto done;
    if (o->size_h > 0) {
        int y0 = 0, x0 = 0, ch = pic.h, cw = pic.w;
        float *scratch = malloc(sizeof *scratch * im->sample);
        if (!scratch) {
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory", path);
            goto done;
        }
        if (o->crop_to_aspect_ratio)
            image_crop_box(pic.h, pic.w, im->h, im->w, &y0, &x0, &ch, &cw);
        image_resize(pic.pixels, pic.w, y0, x0, ch, cw, pic.c, im->h, im->w, o->interpolation, scratch, out);
        free(scratch);
    } else if (pic.h != im->h || pic.w != im->w) {
        rc = error_set(err, ERR_INPUT, "%s: %dx%d, not the %dx%d of the first image (give --size H W to resize "
                       "all to one size)", path, pic.w, pic.h, im->w, im->h);
    } else {
        memcpy(out, pic.pixels, im->sample);
    }
done:
    image_release(&pic);
    return rc;
}

/* Without a size, the first readable file (in file order) gives it. */
static int find_shape(struct importer *im, struct error *err)
{
    const struct import_images_opts *o = im->o;

    im->c = o->channels;
    if (o->size_h > 0) {
        im->h = o->size_h;
        im->w = o->size_w;
        return ERR_OK;
    }
    for (int64_t i = 0; i < im->ix.n; i++) {
        struct image pic;
        int rc = image_read_file(im->ix.files[i].path, o->channels, &pic, err);
        if (rc == ERR_OK) {
            im->h = pic.h;
            im->w = pic.w;
            image_release(&pic);
            return ERR_OK;
        }
        if (!o->skip_invalid || rc == ERR_INTERNAL)
            return rc;
    }
    return error_set(err, ERR_INPUT, "%s: no readable image", o->dir);
}

static int batch_size(int threads, size_t sample)
{
    size_t cap = (size_t)BATCH_PER_THREAD * (threads > 0 ? threads : 1), fit = BATCH_BYTES / (3 * sample);

    cap = cap < fit ? cap : fit;
    return cap > 0 ? (int)cap : 1;
}

static int batch_alloc(struct batch *b, int cap, size_t sample)
{
    b->cap = cap;
    b->pixels = malloc(sample * cap);
    b->train = malloc(sample * cap);
    b->val = malloc(sample * cap);
    b->slots = calloc((size_t)cap, sizeof *b->slots);
    b->train_labels = malloc(sizeof *b->train_labels * cap);
    b->val_labels = malloc(sizeof *b->val_labels * cap);
    return b->pixels && b->train && b->val && b->slots && b->train_labels && b->val_labels ? 0 : -1;
}

static void batch_release(struct batch *b)
{
    free(b->pixels);
    free(b->train);
    free(b->val);
    free(b->slots);
    free(b->train_labels);
    free(b->val_labels);
    *b = (struct batch){0};
}

/* Files [first, first + n): decoded in parallel, then sorted into the two subsets in file order. */
static int run_batch(struct importer *im, int64_t first, int n, struct import_images_report *r, struct error *err)
{
    struct batch *b = &im->b;
    int n_train = 0, n_val = 0, rc;

#pragma omp parallel for schedule(dynamic, 1) num_threads(im->o->threads)
    for (int k = 0; k < n; k++) {
        error_clear(&b->slots[k].err);
        decode_one(im, first + k, b->pixels + (size_t)k * im->sample, &b->slots[k].err);
    }
    for (int k = 0; k < n; k++) {
        const struct error *e = &b->slots[k].err;
        int64_t i = first + k;
        if (e->code) {
            if (!im->o->skip_invalid || e->code == ERR_INTERNAL) {
                *err = *e;
                return e->code;
            }
            if (r->skipped++ == 0)
                snprintf(r->first_skipped, sizeof r->first_skipped, "%s", e->msg);
            continue;
        }
        int to_val = im->is_val && im->is_val[i];
        uint8_t *dst = to_val ? b->val + (size_t)n_val * im->sample : b->train + (size_t)n_train * im->sample;
        memcpy(dst, b->pixels + (size_t)k * im->sample, im->sample);
        if (to_val)
            b->val_labels[n_val++] = im->ix.files[i].label;
        else
            b->train_labels[n_train++] = im->ix.files[i].label;
    }
    if ((rc = dataset_stream_append(&im->train, b->train, b->train_labels, n_train, err)))
        return rc;
    if (im->is_val && (rc = dataset_stream_append(&im->val, b->val, b->val_labels, n_val, err)))
        return rc;
    return ERR_OK;
}

static int open_outputs(struct importer *im, int64_t n_val, struct error *err)
{
    int rc = dataset_stream_open(&im->train, im->o->out, im->h, im->w, im->c, im->ix.n_classes, im->ix.n - n_val,
                                 err);

    if (rc == ERR_OK && im->is_val &&
        (rc = dataset_stream_open(&im->val, im->o->val_out, im->h, im->w, im->c, im->ix.n_classes, n_val, err)))
        dataset_stream_discard(&im->train);
    return rc;
}

/* Both files renamed into place, or neither left on disk (a failed second rename removes the first). */
static int commit_outputs(struct importer *im, struct error *err)
{
    const char *const *names = (const char *const *)im->ix.class_names;
    int rc;

    if (im->is_val) {
        if ((rc = dataset_stream_commit(&im->val, names, im->ix.n_classes, err))) {
            dataset_stream_discard(&im->train);
            return rc;
        }
    }
    if ((rc = dataset_stream_commit(&im->train, names, im->ix.n_classes, err)) && im->is_val)
        remove(im->o->val_out);
    return rc;
}

static int split(struct importer *im, int64_t *n_val, struct error *err)
{
    const struct import_images_opts *o = im->o;

    *n_val = 0;
    if (o->val_split <= 0)
        return ERR_OK;
    if (!(im->is_val = malloc((size_t)im->ix.n)))
        return error_set(err, ERR_INTERNAL, "out of memory");
    *n_val = image_split(im->ix.n, o->val_split, o->seed, im->is_val);
    if (*n_val <= 0)
        return error_set(err, ERR_INPUT, "%s: --val-split %g of %lld files leaves no validation sample", o->dir,
                         o->val_split, (long long)im->ix.n);
    return ERR_OK;
}

int import_images(const struct import_images_opts *o, struct import_images_report *r, struct error *err)
{
    struct importer im = {.o = o};
    int64_t n_val = 0;
    int rc, streams = 0;

    memset(r, 0, sizeof *r);
    if ((rc = image_index_build(o->dir, o->class_names, o->n_class_names, &im.ix, err)))
        return rc;
    r->not_read = im.ix.not_read;
    r->n_classes = im.ix.n_classes;
    if ((rc = split(&im, &n_val, err)) || (rc = find_shape(&im, err)))
        goto done;
    im.sample = (size_t)im.h * im.w * im.c;
    if (batch_alloc(&im.b, batch_size(o->threads, im.sample), im.sample)) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory for a batch of %dx%d images", o->dir, im.w, im.h);
        goto done;
    }
    if ((rc = open_outputs(&im, n_val, err)))
        goto done;
    streams = 1;
    for (int64_t first = 0; first < im.ix.n && rc == ERR_OK; first += im.b.cap) {
        int n = im.ix.n - first < im.b.cap ? (int)(im.ix.n - first) : im.b.cap;
        rc = run_batch(&im, first, n, r, err);
        if (rc == ERR_OK && o->progress)
            o->progress(o->progress_ctx, first + n, im.ix.n);
    }
    if (rc == ERR_OK) {
        r->n_train = im.train.n;
        r->n_val = im.is_val ? im.val.n : 0;
        if (r->n_train == 0 || (im.is_val && r->n_val == 0))
            rc = error_set(err, ERR_INPUT, "%s: no readable image %s", o->dir,
                           r->n_train == 0 ? "for training" : "for validation");
    }
    if (rc == ERR_OK) {
        streams = 0;
        rc = commit_outputs(&im, err);
    }
    r->h = im.h;
    r->w = im.w;
    r->c = im.c;
done:
    if (streams) {
        dataset_stream_discard(&im.train);
        if (im.is_val)
            dataset_stream_discard(&im.val);
    }
    batch_release(&im.b);
    free(im.is_val);
    image_index_release(&im.ix);
    return rc;
}

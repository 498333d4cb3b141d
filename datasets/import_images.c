/* import_images.c: a class-folder tree of PNG and JPEG files to the HDF5 dataset, decoded on a pool of threads
 * and written in file order as it goes. */
#include "import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "dataset.h"
#include "image_index.h"

#define BATCH_PER_THREAD 64
/* The ring and the two subsets' buffers hold each sample four times: large images get fewer slots. */
#define BATCH_BYTES ((size_t)256 << 20)

/* Decoded files on their way to the file: a ring of slots that the decoding threads fill in any order and the
 * calling thread empties in file order, writing as it goes. A thread claims the next file only while it is
 * fewer than `size` files ahead of the writer, so memory stays bounded and the order costs no sort. */
struct ring {
    pthread_mutex_t mu;
    pthread_cond_t filled, freed;
    int64_t next;        /* the next file to claim */
    int64_t consumed;    /* files [0, consumed) are written or skipped: their slots are free */
    int size;
    int stop;            /* the writer gave up: the decoders leave */
    uint8_t *pixels;     /* (size, h, w, c) */
    struct error *errs;  /* (size,) a slot's file failed when code != 0 */
    uint8_t *done;       /* (size,) the slot holds its file's result */
};

/* The samples since the last write, sorted into their subsets. */
struct batch {
    int cap, n_train, n_val;
    uint8_t *train, *val;  /* (cap, h, w, c) */
    int32_t *train_labels, *val_labels;
};

struct importer {
    const struct import_images_opts *o;
    struct image_index ix;
    uint8_t *is_val;          /* (ix.n,) */
    int h, w, c;              /* the samples' shape */
    size_t sample;            /* h * w * c */
    struct dataset_stream train, val;
    struct ring q;
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
    size_t cap = (size_t)BATCH_PER_THREAD * (threads > 0 ? threads : 1), fit = BATCH_BYTES / (4 * sample);

    cap = cap < fit ? cap : fit;
    return cap > 0 ? (int)cap : 1;
}

static int buffers_alloc(struct importer *im, int cap)
{
    struct ring *q = &im->q;
    struct batch *b = &im->b;

    b->cap = cap;
    b->train = malloc(im->sample * cap);
    b->val = malloc(im->sample * cap);
    b->train_labels = malloc(sizeof *b->train_labels * cap);
    b->val_labels = malloc(sizeof *b->val_labels * cap);
    q->size = 2 * cap;
    q->pixels = malloc(im->sample * q->size);
    q->errs = calloc((size_t)q->size, sizeof *q->errs);
    q->done = calloc((size_t)q->size, 1);
    return b->train && b->val && b->train_labels && b->val_labels && q->pixels && q->errs && q->done ? 0 : -1;
}

static void buffers_release(struct importer *im)
{
    free(im->b.train);
    free(im->b.val);
    free(im->b.train_labels);
    free(im->b.val_labels);
    free(im->q.pixels);
    free(im->q.errs);
    free(im->q.done);
}

/* A decoding thread: claims files in order, decodes each into its slot, until none is left or the writer
 * stops. */
static void *decoder(void *arg)
{
    struct importer *im = arg;
    struct ring *q = &im->q;

    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->stop && q->next < im->ix.n && q->next - q->consumed >= q->size)
            pthread_cond_wait(&q->freed, &q->mu);
        if (q->stop || q->next >= im->ix.n) {
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        int64_t i = q->next++;
        pthread_mutex_unlock(&q->mu);
        int slot = (int)(i % q->size);
        error_clear(&q->errs[slot]);
        decode_one(im, i, q->pixels + (size_t)slot * im->sample, &q->errs[slot]);
        pthread_mutex_lock(&q->mu);
        q->done[slot] = 1;
        pthread_cond_broadcast(&q->filled);
        pthread_mutex_unlock(&q->mu);
    }
}

/* File i's result (in its slot) into its subset's buffer, or skipped and counted, or the error. */
static int take(struct importer *im, int64_t i, int slot, struct import_images_report *r, struct error *err)
{
    const struct error *e = &im->q.errs[slot];
    struct batch *b = &im->b;

    if (e->code) {
        if (!im->o->skip_invalid || e->code == ERR_INTERNAL) {
            *err = *e;
            return e->code;
        }
        if (r->skipped++ == 0)
            snprintf(r->first_skipped, sizeof r->first_skipped, "%s", e->msg);
        return ERR_OK;
    }
    int to_val = im->is_val && im->is_val[i];
    uint8_t *dst = to_val ? b->val + (size_t)b->n_val * im->sample : b->train + (size_t)b->n_train * im->sample;
    memcpy(dst, im->q.pixels + (size_t)slot * im->sample, im->sample);
    if (to_val)
        b->val_labels[b->n_val++] = im->ix.files[i].label;
    else
        b->train_labels[b->n_train++] = im->ix.files[i].label;
    return ERR_OK;
}

static int flush(struct importer *im, struct error *err)
{
    struct batch *b = &im->b;
    int rc = dataset_stream_append(&im->train, b->train, b->train_labels, b->n_train, err);

    if (rc == ERR_OK && im->is_val)
        rc = dataset_stream_append(&im->val, b->val, b->val_labels, b->n_val, err);
    b->n_train = b->n_val = 0;
    return rc;
}

/* The writer's side: waits for each file in order, writes a batch every b.cap files. */
static int consume(struct importer *im, struct import_images_report *r, struct error *err)
{
    struct ring *q = &im->q;
    int rc = ERR_OK;

    for (int64_t i = 0; i < im->ix.n && rc == ERR_OK; i++) {
        int slot = (int)(i % q->size);
        pthread_mutex_lock(&q->mu);
        while (!q->done[slot])
            pthread_cond_wait(&q->filled, &q->mu);
        pthread_mutex_unlock(&q->mu);
        rc = take(im, i, slot, r, err);
        pthread_mutex_lock(&q->mu);
        q->done[slot] = 0;
        q->consumed = i + 1;
        pthread_cond_broadcast(&q->freed);
        pthread_mutex_unlock(&q->mu);
        if (rc == ERR_OK && ((i + 1) % im->b.cap == 0 || i + 1 == im->ix.n)) {
            rc = flush(im, err);
            if (rc == ERR_OK && im->o->progress)
                im->o->progress(im->o->progress_ctx, i + 1, im->ix.n);
        }
    }
    return rc;
}

/* Decodes on opts->threads threads while this one writes. */
static int run_pipeline(struct importer *im, struct import_images_report *r, struct error *err)
{
    struct ring *q = &im->q;
    int threads = im->o->threads > 0 ? im->o->threads : 1, started = 0, rc;
    pthread_t *tids = malloc(sizeof *tids * threads);

    if (!tids)
        return error_set(err, ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->filled, NULL);
    pthread_cond_init(&q->freed, NULL);
    while (started < threads && pthread_create(&tids[started], NULL, decoder, im) == 0)
        started++;
    rc = started ? consume(im, r, err) : error_set(err, ERR_INTERNAL, "cannot start a decoding thread");
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->freed);
    pthread_mutex_unlock(&q->mu);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    pthread_cond_destroy(&q->freed);
    pthread_cond_destroy(&q->filled);
    pthread_mutex_destroy(&q->mu);
    free(tids);
    return rc;
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
    if (buffers_alloc(&im, batch_size(o->threads, im.sample))) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory for a batch of %dx%d images", o->dir, im.w, im.h);
        goto done;
    }
    if ((rc = open_outputs(&im, n_val, err)))
        goto done;
    streams = 1;
    rc = run_pipeline(&im, r, err);
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
    buffers_release(&im);
    free(im.is_val);
    image_index_release(&im.ix);
    return rc;
}

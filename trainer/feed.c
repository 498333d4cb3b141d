/* feed.c: this rank's share of each global batch, read ahead on a helper thread (feed.h). */
#include "feed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"

/* Three buffers: the batch the step uses, and up to two read ahead, so that a read the scheduler delays (the
 * helper shares the cores with the compute threads) has two steps to finish instead of one. */
#define FEED_SLOTS 3

enum slot_state { SLOT_EMPTY, SLOT_PENDING, SLOT_READY, SLOT_IN_USE };

/* One buffer of a batch share and what it holds. */
struct slot {
    enum slot_state state;
    int64_t step;       /* which step of the epoch it holds (or will hold) */
    int n;              /* samples in this rank's share */
    int rc;             /* dataset_read's result once READY */
    struct error err;
    uint8_t *images;    /* (share_max, h, w, c) */
    int32_t *labels;    /* (share_max,) */
    int64_t *ids;       /* (share_max,) */
};

struct feed {
    struct dataset *ds;
    const int64_t *perm;   /* (n_train,) the epoch's global order, the caller's */
    int64_t n_train, batch;
    int n_classes;
    struct slot slot[FEED_SLOTS];
    int threaded;
    pthread_t thread;
    pthread_mutex_t mu;    /* guards the slots' state and step, `reading` and `quit` */
    pthread_cond_t cv;     /* signalled when a read is asked for, finished, or the helper should quit */
    int reading;           /* slot the helper is reading into, -1 when none */
    int quit;
    int hold;              /* tests: the helper starts no read (feed_pause_helper) */
    /* Held around every read that may overlap another: the dataset's buffers serve one reader at a time. */
    pthread_mutex_t read_mu;
    long taken, by_step;   /* batches feed_take returned; of them, read by the step itself */
};

/* The samples [lo, hi) of the epoch's order that this rank computes at `step`: the global batch starting at
 * step * batch (shorter at the epoch's end), split evenly, the first gb % N ranks taking one more. */
static void share_of(const struct feed *f, int64_t step, int64_t *lo, int64_t *hi)
{
    int64_t first = step * f->batch, gb = f->n_train - first < f->batch ? f->n_train - first : f->batch;
    int rank = dist_rank(), size = dist_size();
    *lo = first + gb * rank / size;
    *hi = first + gb * (rank + 1) / size;
}

/* Reads step s->step's share into s. Runs on the helper thread, or on the caller's when not read ahead. */
static void read_slot(struct feed *f, struct slot *s)
{
    int64_t lo, hi;
    share_of(f, s->step, &lo, &hi);
    s->n = (int)(hi - lo);
    memcpy(s->ids, f->perm + lo, sizeof(int64_t) * (size_t)s->n);
    error_clear(&s->err);
    s->rc = dataset_read(f->ds, s->ids, s->n, s->images, s->labels, f->n_classes, &s->err);
}

/* The slot in `state` with the lowest step, -1 when none. With the lock held (or unthreaded). */
static int first_in(const struct feed *f, enum slot_state state)
{
    int best = -1;
    for (int i = 0; i < FEED_SLOTS; i++)
        if (f->slot[i].state == state && (best < 0 || f->slot[i].step < f->slot[best].step))
            best = i;
    return best;
}

/* Reads the pending slots in step order until told to quit. */
static void *helper(void *arg)
{
    struct feed *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        int i = -1; /* set by first_in whenever the wait ends without quit */
        while ((f->hold || (i = first_in(f, SLOT_PENDING)) < 0) && !f->quit)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->quit)
            break;
        f->reading = i;
        pthread_mutex_unlock(&f->mu);
        pthread_mutex_lock(&f->read_mu);
        read_slot(f, &f->slot[i]);
        pthread_mutex_unlock(&f->read_mu);
        pthread_mutex_lock(&f->mu);
        f->slot[i].state = SLOT_READY;
        f->reading = -1;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int feed_create(struct feed **out, struct dataset *ds, const int64_t *perm, int64_t n_train, int64_t batch,
                int n_classes, int threaded, struct error *err)
{
    struct feed *f = calloc(1, sizeof *f);
    *out = NULL;
    if (!f)
        return error_set(err, ERR_INTERNAL, "out of memory");
    f->ds = ds;
    f->perm = perm;
    f->n_train = n_train;
    f->batch = batch;
    f->n_classes = n_classes;
    f->reading = -1;
    int size = dist_size();
    size_t share_max = (size_t)((batch + size - 1) / size), sample = (size_t)ds->h * ds->w * ds->c;
    for (int i = 0; i < FEED_SLOTS; i++) {
        struct slot *s = &f->slot[i];
        s->images = malloc(sample * share_max);
        s->labels = malloc(sizeof(int32_t) * share_max);
        s->ids = malloc(sizeof(int64_t) * share_max);
        if (!s->images || !s->labels || !s->ids) {
            feed_destroy(f);
            return error_set(err, ERR_INTERNAL, "out of memory for %d batches of %zu samples", FEED_SLOTS,
                             share_max);
        }
    }
    /* Without HDF5's global lock, a read on the helper could meet a checkpoint write on this thread. */
    hbool_t safe = 0;
    H5is_library_threadsafe(&safe);
    if (threaded && safe) {
        pthread_mutex_init(&f->mu, NULL);
        pthread_mutex_init(&f->read_mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        f->threaded = pthread_create(&f->thread, NULL, helper, f) == 0;
        if (!f->threaded) {
            pthread_cond_destroy(&f->cv);
            pthread_mutex_destroy(&f->read_mu);
            pthread_mutex_destroy(&f->mu);
        }
    }
    *out = f;
    return ERR_OK;
}

/* Drops the reads asked for and not started, and waits for the one under way. With the lock held. */
static void cancel_and_wait(struct feed *f)
{
    for (int i = 0; i < FEED_SLOTS; i++)
        if (f->slot[i].state == SLOT_PENDING && i != f->reading)
            f->slot[i].state = SLOT_EMPTY;
    while (f->reading >= 0)
        pthread_cond_wait(&f->cv, &f->mu);
}

void feed_destroy(struct feed *f)
{
    if (!f)
        return;
    if (f->threaded) {
        pthread_mutex_lock(&f->mu);
        cancel_and_wait(f);
        f->quit = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->read_mu);
        pthread_mutex_destroy(&f->mu);
    }
    for (int i = 0; i < FEED_SLOTS; i++) {
        free(f->slot[i].images);
        free(f->slot[i].labels);
        free(f->slot[i].ids);
    }
    free(f);
}

/* The slot holding, being read for or asked to read `step`, -1 when none. */
static int find(const struct feed *f, int64_t step)
{
    for (int i = 0; i < FEED_SLOTS; i++)
        if ((f->slot[i].state == SLOT_PENDING || f->slot[i].state == SLOT_READY) && f->slot[i].step == step)
            return i;
    return -1;
}

void feed_start(struct feed *f, int64_t step)
{
    if (!f->threaded)
        return;
    pthread_mutex_lock(&f->mu);
    /* This step and the next, as far as free buffers and the epoch go. */
    for (int64_t s = step; s < step + FEED_SLOTS - 1 && s >= 0 && s * f->batch < f->n_train; s++) {
        if (find(f, s) >= 0)
            continue;
        int i = first_in(f, SLOT_EMPTY);
        if (i < 0)
            break;
        f->slot[i].state = SLOT_PENDING;
        f->slot[i].step = s;
    }
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

int feed_take(struct feed *f, int64_t step, struct feed_batch *b, struct error *err)
{
    int i;
    if (f->threaded)
        pthread_mutex_lock(&f->mu);
    /* The batch the step used last is done with. */
    for (int k = 0; k < FEED_SLOTS; k++)
        if (f->slot[k].state == SLOT_IN_USE)
            f->slot[k].state = SLOT_EMPTY;
    if ((i = find(f, step)) >= 0 && f->slot[i].state == SLOT_PENDING && f->reading != i) {
        /* Asked for, but the helper has not started it: the compute threads held both cores and the scheduler
         * has not run it yet. Reading it here (~1 us a sample from an unfiltered file) beats waiting for the
         * scheduler; IN_USE keeps the helper off it. */
        f->slot[i].state = SLOT_IN_USE;
        pthread_mutex_unlock(&f->mu);
        pthread_mutex_lock(&f->read_mu);
        read_slot(f, &f->slot[i]);
        pthread_mutex_unlock(&f->read_mu);
        pthread_mutex_lock(&f->mu);
        f->by_step++;
    } else if (i >= 0) {
        while (f->slot[i].state != SLOT_READY)
            pthread_cond_wait(&f->cv, &f->mu);
    } else {
        /* Not asked for (the first step of an epoch, a resumed run): what was read ahead is not wanted either. */
        if (f->threaded)
            cancel_and_wait(f);
        for (int k = 0; k < FEED_SLOTS; k++)
            f->slot[k].state = SLOT_EMPTY;
        i = 0;
        f->slot[i].step = step;
        read_slot(f, &f->slot[i]);
        f->by_step++;
    }
    f->taken++;
    struct slot *s = &f->slot[i];
    s->state = SLOT_IN_USE;
    if (f->threaded)
        pthread_mutex_unlock(&f->mu);
    *b = (struct feed_batch){s->n, s->images, s->labels, s->ids};
    if (s->rc != ERR_OK && err)
        *err = s->err;
    return s->rc;
}

void feed_idle(struct feed *f)
{
    if (f->threaded) {
        pthread_mutex_lock(&f->mu);
        cancel_and_wait(f);
    }
    for (int i = 0; i < FEED_SLOTS; i++)
        if (f->slot[i].state == SLOT_READY)
            f->slot[i].state = SLOT_EMPTY;
    if (f->threaded)
        pthread_mutex_unlock(&f->mu);
}

void feed_counts(const struct feed *f, long *taken, long *by_step)
{
    *taken = f->taken;
    *by_step = f->by_step;
}

void feed_pause_helper(struct feed *f, int hold)
{
    if (!f->threaded)
        return;
    pthread_mutex_lock(&f->mu);
    f->hold = hold;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

int feed_check_env(struct error *err)
{
    const char *want = getenv("TRAINER_DATA_CACHE");
    if (!want || strcmp(want, "auto") == 0 || strcmp(want, "off") == 0)
        return ERR_OK;
    return error_set(err, ERR_USAGE, "TRAINER_DATA_CACHE must be auto or off, not '%s'", want);
}

int feed_hold_in_memory(struct dataset *ds, int64_t *budget, int *held, struct error *err)
{
    const char *want = getenv("TRAINER_DATA_CACHE");
    *held = 0;
    if (want && strcmp(want, "off") == 0)
        return ERR_OK;
    if (*budget < 0) {
        /* An eighth of the machine's memory, shared by the ranks on it: small data sets (the classic ones
         * are 50-200 MB) are held; large ones stream from the file as before. */
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        double phys = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
        *budget = (int64_t)(phys / 8 / (dist_local_size() > 0 ? dist_local_size() : 1));
    }
    int rc = dataset_hold_in_memory(ds, *budget, held, err);
    if (rc == ERR_OK && *held)
        *budget -= (int64_t)ds->n * ds->h * ds->w * ds->c;
    return rc;
}

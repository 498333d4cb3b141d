/* test_feed.c: the training step's data path (trainer/feed.c). Whatever reads a batch (the helper thread ahead
 * of the step, or the step itself when the helper has not started it) and however the steps interleave with
 * it, every step gets exactly its share of the epoch's order: the samples, their labels and their ids. One
 * rank (dist_rank 0 of 1 without MPI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataset.h"
#include "feed.h"
#include "rng.h"

enum { N = 203, H = 5, W = 4, C = 1, CLASSES = 7, SAMPLE = H * W * C };

static char path[64];

static uint8_t pixel(int64_t i, int p) { return (uint8_t)(i * 37 + p * 11 + 3); }
static int32_t label_of(int64_t i) { return (int32_t)((i * 5 + 1) % CLASSES); }

static int setup(void **state)
{
    (void)state;
    uint8_t *images = malloc((size_t)N * SAMPLE);
    int32_t labels[N];
    struct error err = {0};
    if (!images)
        return -1;
    for (int64_t i = 0; i < N; i++) {
        labels[i] = label_of(i);
        for (int p = 0; p < SAMPLE; p++)
            images[i * SAMPLE + p] = pixel(i, p);
    }
    snprintf(path, sizeof path, "/tmp/test_feed.%d.h5", (int)getpid());
    int rc = dataset_write(path, images, labels, N, H, W, C, NULL, 0, &err);
    free(images);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

/* Checks that b is samples perm[step * batch ..) of the epoch, as many as the step has. */
static void check_batch(const struct feed_batch *b, const int64_t *perm, int64_t step, int64_t batch)
{
    int64_t first = step * batch, want = N - first < batch ? N - first : batch;
    assert_int_equal(b->n, want);
    for (int k = 0; k < b->n; k++) {
        int64_t i = perm[first + k];
        assert_int_equal(b->ids[k], i);
        assert_int_equal(b->labels[k], label_of(i));
        for (int p = 0; p < SAMPLE; p++)
            if (b->images[(size_t)k * SAMPLE + p] != pixel(i, p))
                fail_msg("step %lld sample %d (index %lld) pixel %d differs", (long long)step, k, (long long)i, p);
    }
}

/* A few microseconds of work or none: shifts when the step asks, so that over many steps the helper is
 * sometimes done, sometimes reading, and sometimes not yet started. */
static void jitter(struct rng *r)
{
    long spins = (long)rng_below(r, 4) * 20000;
    volatile long sink = 0;
    for (long i = 0; i < spins; i++)
        sink += i;
}

static void run_epochs(int threaded, int64_t batch, long *taken, long *by_step)
{
    struct dataset ds;
    struct feed *f;
    struct error err = {0};
    int64_t perm[N];
    struct rng r;
    rng_seed(&r, 5, 0);
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(feed_create(&f, &ds, perm, N, batch, CLASSES, threaded, &err), ERR_OK);
    int64_t steps = (N + batch - 1) / batch;
    for (int epoch = 0; epoch < 6; epoch++) {
        feed_idle(f);
        rng_shuffle_epoch(perm, N, 9, (uint64_t)epoch);
        for (int64_t s = 0; s < steps; s++) {
            struct feed_batch b;
            assert_int_equal(feed_take(f, s, &b, &err), ERR_OK);
            /* As train_loop does: ask for what comes next, then compute on this batch. */
            feed_start(f, s + 1);
            if (epoch % 2)
                jitter(&r);
            check_batch(&b, perm, s, batch);
        }
    }
    feed_counts(f, taken, by_step);
    feed_destroy(f);
    dataset_close(&ds);
}

static void test_every_step_gets_its_share(void **state)
{
    (void)state;
    long taken, by_step;
    for (int64_t batch = 1; batch <= 64; batch = batch * 3 + 1) {
        int64_t steps = (N + batch - 1) / batch;
        run_epochs(1, batch, &taken, &by_step);
        assert_int_equal(taken, 6 * steps);
        /* At least the first step of every epoch is read by the step: nothing asks for it earlier. */
        assert_true(by_step >= 6 && by_step <= taken);
        run_epochs(0, batch, &taken, &by_step);
        assert_int_equal(taken, 6 * steps);
        assert_int_equal(by_step, taken); /* unthreaded: every read is the step's own */
    }
}

/* With the helper held, every batch asked for is read by the step instead of waited for (the test would hang
 * otherwise: ctest's timeout); released, the helper reads ahead again. Every batch holds its samples. */
static void test_the_step_reads_what_the_helper_has_not_started(void **state)
{
    (void)state;
    struct dataset ds;
    struct feed *f;
    struct error err = {0};
    int64_t perm[N];
    const int64_t batch = 4, steps = (N + batch - 1) / batch;
    long taken, by_step;
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(feed_create(&f, &ds, perm, N, batch, CLASSES, 1, &err), ERR_OK);
    for (int epoch = 0; epoch < 4; epoch++) {
        feed_idle(f);
        rng_shuffle_epoch(perm, N, 3, (uint64_t)epoch);
        feed_pause_helper(f, epoch % 2 == 0);
        long t0, b0;
        feed_counts(f, &t0, &b0);
        for (int64_t s = 0; s < steps; s++) {
            struct feed_batch b;
            assert_int_equal(feed_take(f, s, &b, &err), ERR_OK);
            feed_start(f, s + 1);
            if (epoch % 2) {
                /* Released: give the helper time to finish the next batch before it is taken. */
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
            }
            check_batch(&b, perm, s, batch);
        }
        feed_counts(f, &taken, &by_step);
        if (epoch % 2 == 0)
            assert_int_equal(by_step - b0, steps);       /* held: all read by the step */
        else
            assert_true(by_step - b0 < steps / 2);        /* released: most read ahead */
        assert_int_equal(taken - t0, steps);
    }
    feed_destroy(f);
    dataset_close(&ds);
}

/* A bad label in a batch read ahead reaches feed_take as that step's error, naming the file and sample. */
static void test_bad_label_reaches_the_step(void **state)
{
    (void)state;
    struct dataset ds;
    struct feed *f;
    struct error err = {0};
    int64_t perm[N];
    for (int64_t i = 0; i < N; i++)
        perm[i] = i;
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    /* Labels go up to CLASSES - 1: with one class fewer, samples of the last class are out of range. */
    assert_int_equal(feed_create(&f, &ds, perm, N, 8, CLASSES - 1, 1, &err), ERR_OK);
    int64_t bad = -1;
    for (int64_t i = 0; i < N && bad < 0; i++)
        if (label_of(i) == CLASSES - 1)
            bad = i;
    int rc = ERR_OK;
    int64_t s = 0;
    for (; s * 8 < N && rc == ERR_OK; s++) {
        struct feed_batch b;
        rc = feed_take(f, s, &b, &err);
        feed_start(f, s + 1);
    }
    assert_int_equal(rc, ERR_INPUT);
    assert_int_equal(s - 1, bad / 8);
    assert_non_null(strstr(err.msg, path));
    char want[64];
    snprintf(want, sizeof want, "sample %lld", (long long)bad);
    assert_non_null(strstr(err.msg, want));
    feed_destroy(f);
    dataset_close(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_step_gets_its_share),
        cmocka_unit_test(test_the_step_reads_what_the_helper_has_not_started),
        cmocka_unit_test(test_bad_label_reaches_the_step),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_datasets.c: the HDF5 dataset reader and writer, on files made here (test_import.c: the importers). */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "dataset.h"
#include "dataset_fixtures.h"
#include "import.h"

/* Raw HDF5 files with exactly the flaw a test wants. rank 0 means "no such dataset". */
struct h5_spec {
    int image_rank;
    hsize_t image_dims[5];
    hid_t image_type;
    int label_rank;
    hsize_t label_dims[2];
    int fixed_names_on_labels; /* class_names as a fixed-length string array on /labels */
};

static void make_h5(const char *path, const struct h5_spec *s)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    if (s->image_rank) {
        hid_t space = H5Screate_simple(s->image_rank, s->image_dims, NULL);
        hid_t d = H5Dcreate2(file, "images", s->image_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(d >= 0);
        H5Dclose(d);
        H5Sclose(space);
    }
    if (s->label_rank) {
        hid_t space = H5Screate_simple(s->label_rank, s->label_dims, NULL);
        hid_t d = H5Dcreate2(file, "labels", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(d >= 0);
        if (s->fixed_names_on_labels) {
            static const char names[3][6] = {"cat", "dog  ", "emu"}; /* "dog  " is space padded */
            hsize_t three = 3;
            hid_t t = H5Tcopy(H5T_C_S1), as = H5Screate_simple(1, &three, NULL);
            H5Tset_size(t, 6);
            H5Tset_strpad(t, H5T_STR_NULLPAD);
            hid_t a = H5Acreate2(d, "class_names", t, as, H5P_DEFAULT, H5P_DEFAULT);
            assert_true(a >= 0);
            assert_true(H5Awrite(a, t, names) >= 0);
            H5Aclose(a);
            H5Sclose(as);
            H5Tclose(t);
        }
        H5Dclose(d);
        H5Sclose(space);
    }
    assert_true(H5Fclose(file) >= 0);
}

static void expect_open_error(const char *path, const char *part)
{
    struct dataset ds;
    struct error err = {0};
    int rc;
    capture_stderr();
    rc = dataset_open(&ds, path, &err);
    long printed = release_stderr();
    expect_error(rc, &err, ERR_INPUT, path, part);
    assert_int_equal(printed, 0);
    dataset_close(&ds); /* safe after a failed open */
}

/* ---- reading -------------------------------------------------------------------------------------------- */

static void test_read_shuffled_repeated(void **state)
{
    (void)state;
    enum { N = 50, H = 64, W = 64, C = 3 }; /* 12 KiB samples: chunks of 10, so reads cross chunks */
    const char *path = tpath("shuffle.h5");
    int32_t labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = i % 7;
    write_synthetic(path, N, H, W, C, labels, NULL, 0);

    struct dataset ds;
    struct error err = {0};
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(ds.n_class_names, 0);
    const size_t sample = (size_t)H * W * C;
    static uint8_t px[16 * H * W * C];
    int32_t lab[16];
    const int64_t shuffled[] = {17, 3, 49, 3, 0, 17, 25, 26, 24, 9, 10, 11, 48, 0, 30, 29};
    const int64_t ascending[] = {2, 3, 4, 7, 40};
    const int64_t one[] = {49};
    const struct {
        const int64_t *idx;
        int n;
    } cases[] = {{shuffled, 16}, {ascending, 5}, {one, 1}, {shuffled + 3, 4}};

    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        memset(px, 0xAA, sizeof px);
        memset(lab, 0xFF, sizeof lab);
        assert_int_equal(dataset_read(&ds, cases[t].idx, cases[t].n, px, lab, 7, &err), ERR_OK);
        for (int i = 0; i < cases[t].n; i++) {
            assert_int_equal(lab[i], cases[t].idx[i] % 7);
            check_sample(px + (size_t)i * sample, cases[t].idx[i], sample);
        }
    }
    dataset_close(&ds);
}

/* Many random reads, repeats included, against the formula: exercises the run building and the scatter. */
static void test_read_random_batches(void **state)
{
    (void)state;
    enum { N = 1000, H = 4, W = 5, C = 2, B = 97 };
    const char *path = tpath("random.h5");
    static int32_t labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = (i * 13) % 1000; /* over 255: stored as int32 */
    write_synthetic(path, N, H, W, C, labels, NULL, 0);

    struct dataset ds;
    struct error err = {0};
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    uint64_t state_rng = 12345;
    int64_t idx[B];
    uint8_t px[B * H * W * C];
    int32_t lab[B];
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < B; i++) {
            state_rng = state_rng * 6364136223846793005ull + 1442695040888963407ull;
            /* a narrow range every other round, so runs and repeats are common */
            idx[i] = (int64_t)((state_rng >> 33) % (round % 2 ? N : 60));
        }
        int n = 1 + round % B;
        assert_int_equal(dataset_read(&ds, idx, n, px, lab, 1000, &err), ERR_OK);
        for (int i = 0; i < n; i++) {
            assert_int_equal(lab[i], (idx[i] * 13) % 1000);
            check_sample(px + (size_t)i * H * W * C, idx[i], (size_t)H * W * C);
        }
    }
    dataset_close(&ds);
}

/* /images laid out as a writer other than `trainer import` may have left it, the same samples every time. */
enum raw_layout { RAW_CHUNKED, RAW_CONTIGUOUS, RAW_SPLIT_CHUNKS, RAW_GZIP, RAW_USERBLOCK };

static void make_layout(const char *path, enum raw_layout layout, int64_t n, int h, int w, int c)
{
    size_t sample = (size_t)h * w * c;
    uint8_t *images = malloc((size_t)n * sample);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    assert_true(images && labels);
    for (int64_t i = 0; i < n; i++) {
        labels[i] = (int32_t)(i % 10);
        for (size_t p = 0; p < sample; p++)
            images[(size_t)i * sample + p] = sample_pixel(i, p);
    }
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (layout == RAW_USERBLOCK)
        assert_true(H5Pset_userblock(fcpl, 512) >= 0);
    hsize_t whole[4] = {7, (hsize_t)h, (hsize_t)w, (hsize_t)c}, split[4] = {5, (hsize_t)h, 1, (hsize_t)c};
    if (layout == RAW_SPLIT_CHUNKS)
        assert_true(H5Pset_chunk(dcpl, 4, split) >= 0);
    else if (layout != RAW_CONTIGUOUS)
        assert_true(H5Pset_chunk(dcpl, 4, whole) >= 0);
    if (layout == RAW_GZIP)
        assert_true(H5Pset_deflate(dcpl, 4) >= 0);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    hsize_t dims[4] = {(hsize_t)n, (hsize_t)h, (hsize_t)w, (hsize_t)c}, ldims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(4, dims, NULL), lspace = H5Screate_simple(1, ldims, NULL);
    hid_t d = H5Dcreate2(file, "images", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    hid_t l = H5Dcreate2(file, "labels", H5T_STD_I32LE, lspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0 && d >= 0 && l >= 0);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, images) >= 0);
    assert_true(H5Dwrite(l, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) >= 0);
    H5Dclose(d);
    H5Dclose(l);
    H5Sclose(space);
    H5Sclose(lspace);
    H5Pclose(fcpl);
    H5Pclose(dcpl);
    assert_true(H5Fclose(file) >= 0);
    free(images);
    free(labels);
}

/* dataset_read takes /images with pread where the layout allows it (whole unfiltered samples, no user block)
 * and through HDF5 otherwise; either way a shuffled batch with runs, repeats and chunk boundaries gives the
 * samples that were written. The raw path is also compared with HDF5's reading of the same file. */
static void test_read_layouts(void **state)
{
    (void)state;
    enum { N = 100, H = 3, W = 4, C = 3, B = 41 };
    static const struct { enum raw_layout layout; const char *name; int raw; } cases[] = {
        {RAW_CHUNKED, "chunked", 1},          {RAW_CONTIGUOUS, "contiguous", 1},
        {RAW_SPLIT_CHUNKS, "split chunks", 0}, {RAW_GZIP, "gzip", 0},
        {RAW_USERBLOCK, "user block", 0},
    };
    const char *path = tpath("layout.h5");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        make_layout(path, cases[k].layout, N, H, W, C);
        struct dataset ds, slow;
        struct error err = {0};
        assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
        assert_int_equal(dataset_open(&slow, path, &err), ERR_OK);
        dataset_no_raw(&slow);
        if ((ds.raw_offset != NULL) != cases[k].raw)
            fail_msg("%s: raw reads %s, expected %s", cases[k].name, ds.raw_offset ? "on" : "off",
                     cases[k].raw ? "on" : "off");
        uint64_t rng = 99 + k;
        int64_t idx[B];
        static uint8_t px[B * H * W * C], px_slow[B * H * W * C];
        int32_t lab[B], lab_slow[B];
        for (int round = 0; round < 40; round++) {
            for (int i = 0; i < B; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                idx[i] = (int64_t)((rng >> 33) % (round % 2 ? N : 16)); /* runs across the 7-sample chunks */
            }
            idx[0] = N - 1; /* the last, partly used chunk */
            assert_int_equal(dataset_read(&ds, idx, B, px, lab, 10, &err), ERR_OK);
            assert_int_equal(dataset_read(&slow, idx, B, px_slow, lab_slow, 10, &err), ERR_OK);
            for (int i = 0; i < B; i++) {
                assert_int_equal(lab[i], idx[i] % 10);
                check_sample(px + (size_t)i * H * W * C, idx[i], (size_t)H * W * C);
            }
            assert_memory_equal(px, px_slow, sizeof px);
            assert_memory_equal(lab, lab_slow, sizeof lab);
        }
        dataset_close(&ds);
        dataset_close(&slow);
    }
}

/* A file cut short after it was opened (raw reads on): the read fails with the file named, no crash. */
static void test_read_file_shrunk(void **state)
{
    (void)state;
    enum { N = 100, H = 3, W = 4, C = 3 };
    const char *path = tpath("shrunk.h5");
    make_layout(path, RAW_CHUNKED, N, H, W, C);
    struct dataset ds;
    struct error err = {0};
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_non_null(ds.raw_offset);
    int64_t idx[2] = {3, N - 1};
    uint8_t px[2 * H * W * C];
    int32_t lab[2];
    assert_int_equal(dataset_read(&ds, idx, 2, px, lab, 10, &err), ERR_OK);
    assert_int_equal(truncate(path, ds.raw_offset[(N - 1) / ds.raw_per_chunk]), 0);
    int rc = dataset_read(&ds, idx, 2, px, lab, 10, &err);
    expect_error(rc, &err, ERR_INPUT, path, "damaged or truncated");
    dataset_close(&ds);
}

/* Held in memory, every layout gives the samples HDF5 reads from the file, bit for bit, and later reads need
 * no file: cut short after the hold, the file is not read again. Too large for the budget, nothing is held. */
static void test_hold_in_memory(void **state)
{
    (void)state;
    enum { N = 100, H = 3, W = 4, C = 3, B = 37 };
    static const enum raw_layout layouts[] = {RAW_CHUNKED, RAW_CONTIGUOUS, RAW_SPLIT_CHUNKS, RAW_GZIP,
                                              RAW_USERBLOCK};
    const char *path = tpath("hold.h5");
    for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++) {
        make_layout(path, layouts[k], N, H, W, C);
        struct dataset ds, slow;
        struct error err = {0};
        int held = -1;
        assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
        assert_int_equal(dataset_open(&slow, path, &err), ERR_OK);
        dataset_no_raw(&slow);
        assert_int_equal(dataset_hold_in_memory(&ds, N * H * W * C - 1, &held, &err), ERR_OK);
        assert_int_equal(held, 0); /* one byte short */
        assert_null(ds.all_images);
        assert_int_equal(dataset_hold_in_memory(&ds, N * H * W * C, &held, &err), ERR_OK);
        assert_int_equal(held, 1);
        assert_int_equal(truncate(path, 0), 0);
        uint64_t rng = 7 + k;
        int64_t idx[B];
        static uint8_t px[B * H * W * C];
        int32_t lab[B];
        for (int round = 0; round < 20; round++) {
            for (int i = 0; i < B; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                idx[i] = (int64_t)((rng >> 33) % N);
            }
            assert_int_equal(dataset_read(&ds, idx, B, px, lab, 10, &err), ERR_OK);
            for (int i = 0; i < B; i++) {
                assert_int_equal(lab[i], idx[i] % 10);
                check_sample(px + (size_t)i * H * W * C, idx[i], (size_t)H * W * C);
            }
        }
        /* A label out of range and an index outside the data are still found in memory. */
        int64_t outside[1] = {N};
        expect_error(dataset_read(&ds, outside, 1, px, lab, 10, &err), &err, ERR_INTERNAL, path, "100");
        error_clear(&err);
        int64_t nine[1] = {9};
        expect_error(dataset_read(&ds, nine, 1, px, lab, 9, &err), &err, ERR_INPUT, path,
                     "sample 9 has label 9, outside [0, 9)");
        dataset_close(&ds);
        dataset_close(&slow);
    }
}

/* A file cut short after open but before the hold: the hold fails with the file named, and holds nothing. */
static void test_hold_file_shrunk(void **state)
{
    (void)state;
    enum { N = 100, H = 3, W = 4, C = 3 };
    const char *path = tpath("hold-shrunk.h5");
    make_layout(path, RAW_CHUNKED, N, H, W, C);
    struct dataset ds;
    struct error err = {0};
    int held = -1;
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(truncate(path, ds.raw_offset[(N - 1) / ds.raw_per_chunk]), 0);
    expect_error(dataset_hold_in_memory(&ds, 1 << 20, &held, &err), &err, ERR_INPUT, path,
                 "damaged or truncated");
    assert_int_equal(held, 0);
    assert_null(ds.all_images);
    dataset_close(&ds);
}

static void test_read_label_out_of_range(void **state)
{
    (void)state;
    const char *path = tpath("badlabel.h5");
    int32_t labels[10] = {0, 1, 2, 3, 12, 5, 6, 7, 8, 9};
    write_synthetic(path, 10, 2, 2, 1, labels, import_mnist_names, 10);

    struct dataset ds;
    struct error err = {0};
    uint8_t px[3 * 4];
    int32_t lab[3];
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    int64_t fine[2] = {9, 0}, bad[3] = {1, 4, 2};
    assert_int_equal(dataset_read(&ds, fine, 2, px, lab, 10, &err), ERR_OK);
    expect_error(dataset_read(&ds, bad, 3, px, lab, 10, &err), &err, ERR_INPUT, path,
                 "sample 4 has label 12, outside [0, 10)");
    error_clear(&err);
    assert_int_equal(dataset_read(&ds, bad, 3, px, lab, 0, &err), ERR_OK); /* unchecked when no class count */
    assert_int_equal(lab[1], 12);
    int64_t outside[1] = {10};
    expect_error(dataset_read(&ds, outside, 1, px, lab, 10, &err), &err, ERR_INTERNAL, path, "10");
    dataset_close(&ds);
}

static void test_label_counts(void **state)
{
    (void)state;
    const char *path = tpath("counts.h5");
    enum { N = 70000 }; /* more than one block of labels */
    static int32_t labels[N];
    int64_t expect[4] = {0};
    for (int i = 0; i < N; i++) {
        labels[i] = (i * 7) % 5; /* label 4 is beyond n_classes = 4 */
        if (labels[i] < 4)
            expect[labels[i]]++;
    }
    write_synthetic(path, N, 1, 1, 1, labels, NULL, 0);

    struct dataset ds;
    struct error err = {0};
    int64_t counts[4];
    int max = -7;
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(dataset_label_counts(&ds, counts, 4, &max, &err), ERR_OK);
    assert_int_equal(max, 4);
    for (int k = 0; k < 4; k++)
        assert_int_equal(counts[k], expect[k]);
    dataset_close(&ds);

    labels[66666] = -3;
    write_synthetic(path, N, 1, 1, 1, labels, NULL, 0);
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    expect_error(dataset_label_counts(&ds, counts, 4, NULL, &err), &err, ERR_INPUT, path, "sample 66666");
    dataset_close(&ds);
}

/* The layout other tools see: types, chunking, attribute type. */
static void test_written_layout(void **state)
{
    (void)state;
    const char *small = tpath("u8.h5"), *big = tpath("i32.h5");
    int32_t l8[3] = {0, 255, 7}, l32[3] = {0, 256, 7};
    write_synthetic(small, 3, 300, 300, 3, l8, import_cifar10_names, 10);
    write_synthetic(big, 3, 2, 2, 1, l32, NULL, 0);

    hid_t f = H5Fopen(small, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT), t = H5Dget_type(d);
    assert_int_equal(H5Tget_size(t), 1);
    H5Tclose(t);
    H5Dclose(d);
    d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t chunk[4];
    assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
    assert_int_equal(H5Pget_chunk(dcpl, 4, chunk), 4);
    assert_int_equal(chunk[0], 1); /* one 270 KB sample is more than a chunk's worth */
    assert_int_equal(H5Pget_nfilters(dcpl), 0);
    H5Pclose(dcpl);
    H5Dclose(d);
    hid_t a = H5Aopen(f, "class_names", H5P_DEFAULT);
    t = H5Aget_type(a);
    assert_true(H5Tis_variable_str(t) > 0);
    assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);

    f = H5Fopen(big, H5F_ACC_RDONLY, H5P_DEFAULT);
    d = H5Dopen2(f, "labels", H5P_DEFAULT);
    t = H5Dget_type(d);
    assert_int_equal(H5Tget_size(t), 4);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);

    struct dataset ds;
    struct error err = {0};
    int64_t idx[1] = {1};
    uint8_t px[4];
    int32_t lab[1];
    assert_int_equal(dataset_open(&ds, big, &err), ERR_OK);
    assert_int_equal(dataset_read(&ds, idx, 1, px, lab, 0, &err), ERR_OK);
    assert_int_equal(lab[0], 256);
    dataset_close(&ds);
}

/* Fixed-length names on /labels (as numpy 'S' arrays come out of h5py), and int64 labels. */
static void test_fixed_length_names(void **state)
{
    (void)state;
    const char *path = tpath("fixed.h5");
    struct h5_spec s = {.image_rank = 4, .image_dims = {5, 2, 2, 1}, .image_type = H5T_STD_U8LE,
                        .label_rank = 1, .label_dims = {5}, .fixed_names_on_labels = 1};
    make_h5(path, &s);
    struct dataset ds;
    struct error err = {0};
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(ds.n_class_names, 3);
    assert_string_equal(ds.class_names[0], "cat");
    assert_string_equal(ds.class_names[1], "dog");
    assert_string_equal(ds.class_names[2], "emu");
    dataset_close(&ds);
}

/* ---- errors --------------------------------------------------------------------------------------------- */

static void test_open_missing_file(void **state)
{
    (void)state;
    expect_open_error(tpath("nothere.h5"), "No such file");
}

static void test_open_not_hdf5(void **state)
{
    (void)state;
    const char *path = tpath("garbage.h5");
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 97 + 13);
    write_bytes(path, 0, junk, sizeof junk);
    expect_open_error(path, "not an HDF5 file");
    write_bytes(path, 0, junk, 0); /* empty */
    expect_open_error(path, "not an HDF5 file");
}

static void test_open_truncated(void **state)
{
    (void)state;
    const char *path = tpath("cut.h5");
    int32_t labels[40] = {0};
    write_synthetic(path, 40, 32, 32, 3, labels, import_cifar10_names, 10);
    long size = file_size(path);
    assert_int_equal(truncate(path, size / 2), 0);
    expect_open_error(path, NULL);
    assert_int_equal(truncate(path, 600), 0); /* superblock and little else */
    expect_open_error(path, NULL);
}

static void test_open_bad_layout(void **state)
{
    (void)state;
    const char *path = tpath("layout.h5");
    struct h5_spec ok = {.image_rank = 4, .image_dims = {99, 3, 3, 1}, .image_type = H5T_STD_U8LE,
                         .label_rank = 1, .label_dims = {99}};
    struct h5_spec s;

    s = ok;
    s.label_rank = 0;
    make_h5(path, &s);
    expect_open_error(path, "/labels");

    s = ok;
    s.image_rank = 0;
    make_h5(path, &s);
    expect_open_error(path, "/images");

    s = ok;
    s.image_rank = 3;
    make_h5(path, &s);
    expect_open_error(path, "rank 3");

    s = ok;
    s.label_rank = 2;
    s.label_dims[1] = 1;
    make_h5(path, &s);
    expect_open_error(path, "/labels has rank 2");

    s = ok;
    s.label_dims[0] = 100;
    make_h5(path, &s);
    expect_open_error(path, "/labels has 100 samples but /images has 99");

    s = ok;
    s.image_dims[0] = 0;
    s.label_dims[0] = 0;
    make_h5(path, &s);
    expect_open_error(path, "no samples");

    s = ok;
    s.image_type = H5T_IEEE_F32LE;
    make_h5(path, &s);
    expect_open_error(path, "/images");

    s = ok;
    s.image_type = H5T_STD_I16LE;
    make_h5(path, &s);
    expect_open_error(path, "not uint8");

    make_h5(path, &ok); /* the same file without a flaw opens */
    struct dataset ds;
    struct error err = {0};
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    dataset_close(&ds);
}

/* ---- writing failures ----------------------------------------------------------------------------------- */

/* Content of the file a failed write must leave alone. */
static void check_intact(const char *path)
{
    struct dataset ds;
    struct error err = {0};
    int64_t idx[2] = {1, 0};
    uint8_t px[2 * 8];
    int32_t lab[2];
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(dataset_read(&ds, idx, 2, px, lab, 10, &err), ERR_OK);
    assert_int_equal(lab[0], 9);
    check_sample(px, 1, 8);
    dataset_close(&ds);
}

static void test_write_failures(void **state)
{
    (void)state;
    const char *path = tpath("keep.h5");
    int32_t old_labels[2] = {3, 9}, labels[3] = {1, 2, 3};
    uint8_t images[3 * 8] = {0};
    struct error err = {0};
    char tmp[600];
    write_synthetic(path, 2, 2, 2, 2, old_labels, NULL, 0);

    /* a directory that does not exist */
    const char *nodir = tpath("no/such/dir/out.h5");
    expect_error(dataset_write(nodir, images, labels, 3, 2, 2, 2, NULL, 0, &err), &err, ERR_IO, nodir,
                 "cannot create");

    /* the temporary name is taken (by a directory): works as root too, where permissions do not stop us */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    expect_error(dataset_write(path, images, labels, 3, 2, 2, 2, NULL, 0, &err), &err, ERR_IO, path,
                 "cannot create");
    assert_int_equal(rmdir(tmp), 0);
    check_intact(path);

    /* an unwritable directory, where permissions apply */
    const char *ro_dir = tpath("readonly"), *ro_path = tpath("readonly/keep.h5");
    assert_int_equal(mkdir(ro_dir, 0700), 0);
    write_synthetic(ro_path, 2, 2, 2, 2, old_labels, NULL, 0);
    assert_int_equal(chmod(ro_dir, 0500), 0);
    if (access(ro_dir, W_OK) != 0) {
        expect_error(dataset_write(ro_path, images, labels, 3, 2, 2, 2, NULL, 0, &err), &err, ERR_IO, ro_path,
                     "Permission denied");
        check_intact(ro_path);
    }
    assert_int_equal(chmod(ro_dir, 0700), 0);

    /* rename fails (a non-empty directory in the way): ERR_IO, and the temporary file is gone */
    const char *blocked = tpath("blocked.h5"), *inside = tpath("blocked.h5/x");
    assert_int_equal(mkdir(blocked, 0700), 0);
    write_bytes(inside, 0, (const uint8_t *)"x", 1);
    expect_error(dataset_write(blocked, images, labels, 3, 2, 2, 2, NULL, 0, &err), &err, ERR_IO, blocked, NULL);
    assert_int_equal(count_tmp_files(), 0);

    /* nothing to write is bad input, and leaves the old file */
    expect_error(dataset_write(path, images, labels, 0, 2, 2, 2, NULL, 0, &err), &err, ERR_INPUT, path, NULL);
    check_intact(path);

    /* a successful overwrite replaces the file whole */
    write_synthetic(path, 3, 2, 2, 2, labels, NULL, 0);
    struct dataset ds;
    assert_int_equal(dataset_open(&ds, path, &err), ERR_OK);
    assert_int_equal(ds.n, 3);
    dataset_close(&ds);
    assert_int_equal(count_tmp_files(), 0);
}

/* A full disk, without privileges: a file size limit makes write() fail (EFBIG) part way, as ENOSPC would. */
static void test_write_disk_full(void **state)
{
    (void)state;
    const char *path = tpath("full.h5");
    int32_t old_labels[2] = {3, 9};
    static int32_t labels[300];
    static uint8_t images[300 * 28 * 28];
    struct error err = {0};
    struct rlimit saved, small;
    write_synthetic(path, 2, 2, 2, 2, old_labels, NULL, 0);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* the error, not the signal, is what we test */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = dataset_write(path, images, labels, 300, 28, 28, 1, import_mnist_names, 10, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);

    expect_error(rc, &err, ERR_IO, path, "cannot write");
    check_intact(path);
    assert_int_equal(count_tmp_files(), 0);
}

/* Runs last. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_shuffled_repeated),
        cmocka_unit_test(test_read_random_batches),
        cmocka_unit_test(test_read_layouts),
        cmocka_unit_test(test_read_file_shrunk),
        cmocka_unit_test(test_read_label_out_of_range),
        cmocka_unit_test(test_hold_in_memory),
        cmocka_unit_test(test_hold_file_shrunk),
        cmocka_unit_test(test_label_counts),
        cmocka_unit_test(test_written_layout),
        cmocka_unit_test(test_fixed_length_names),
        cmocka_unit_test(test_open_missing_file),
        cmocka_unit_test(test_open_not_hdf5),
        cmocka_unit_test(test_open_truncated),
        cmocka_unit_test(test_open_bad_layout),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_write_disk_full),
        cmocka_unit_test(fixtures_no_hdf5_ids_left_open),
    };
    return cmocka_run_group_tests(tests, fixtures_setup, fixtures_teardown);
}

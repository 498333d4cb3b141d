/* test_import.c: the IDX and CIFAR-10 importers (datasets/import_*.c), on files made here. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dataset.h"
#include "dataset_fixtures.h"
#include "import.h"

/* ---- known contents ------------------------------------------------------------------------------------- */

static uint8_t idx_pixel(uint32_t i, uint32_t r, uint32_t c)
{
    return (uint8_t)(i * 37 + r * 11 + c * 3 + 1);
}

static uint8_t idx_label(uint32_t i)
{
    return (uint8_t)((i * 3 + 1) % 10);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX image file in memory; *len is its full size. */
static uint8_t *make_idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t *len)
{
    uint8_t *b;
    *len = 16 + (size_t)n * rows * cols;
    b = malloc(*len);
    assert_non_null(b);
    put_be32(b, magic);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t c = 0; c < cols; c++)
                b[16 + ((size_t)i * rows + r) * cols + c] = idx_pixel(i, r, c);
    return b;
}

static uint8_t *make_idx_labels(uint32_t magic, uint32_t n, size_t *len)
{
    uint8_t *b;
    *len = 8 + n;
    b = malloc(*len);
    assert_non_null(b);
    put_be32(b, magic);
    put_be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++)
        b[8 + i] = idx_label(i);
    return b;
}

/* Writes IDX image and label files, the image file cut to keep bytes when keep > 0. */
static void write_idx_pair(const char *images, const char *labels, int gz, uint32_t n_images, uint32_t n_labels,
                           uint32_t rows, uint32_t cols, size_t keep)
{
    size_t ilen, llen;
    uint8_t *ib = make_idx_images(0x803, n_images, rows, cols, &ilen);
    uint8_t *lb = make_idx_labels(0x801, n_labels, &llen);
    write_bytes(images, gz, ib, keep ? keep : ilen);
    write_bytes(labels, gz, lb, llen);
    free(ib);
    free(lb);
}

/* Value of channel ch at (y, x) of CIFAR record k: differs along every axis, so a transposition shows. */
static uint8_t cifar_value(int k, int ch, int y, int x)
{
    return (uint8_t)(k * 53 + ch * 101 + y * 7 + x * 13 + (y * x) / 5);
}

static void write_cifar(const char *path, int first, int records, size_t extra_bytes, int bad_label_at)
{
    size_t len = (size_t)records * 3073 + extra_bytes;
    uint8_t *b = calloc(len, 1);
    assert_non_null(b);
    for (int r = 0; r < records; r++) {
        uint8_t *rec = b + (size_t)r * 3073;
        rec[0] = r == bad_label_at ? 10 : (uint8_t)((first + r) * 7 % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[1 + ch * 1024 + y * 32 + x] = cifar_value(first + r, ch, y, x);
    }
    write_bytes(path, 0, b, len);
    free(b);
}

/* ---- importers ------------------------------------------------------------------------------------------ */

static void check_idx_import(int gz_images, int gz_labels, const char *const *names, uint32_t n, uint32_t rows,
                             uint32_t cols)
{
    const char *images = tpath("img.idx"), *labels = tpath("lab.idx"), *out = tpath("idx.h5");
    size_t ilen, llen;
    uint8_t *ib = make_idx_images(0x803, n, rows, cols, &ilen), *lb = make_idx_labels(0x801, n, &llen);
    write_bytes(images, gz_images, ib, ilen);
    write_bytes(labels, gz_labels, lb, llen);
    free(ib);
    free(lb);

    struct error err = {0};
    int64_t n_out = -1;
    int rc = import_idx(images, labels, out, names, 10, &n_out, &err);
    if (rc)
        fail_msg("import_idx: %s", err.msg);
    assert_int_equal(n_out, n);

    struct dataset ds;
    assert_int_equal(dataset_open(&ds, out, &err), ERR_OK);
    assert_int_equal(ds.n, n);
    assert_int_equal(ds.h, rows);
    assert_int_equal(ds.w, cols);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.n_class_names, 10);
    for (int k = 0; k < 10; k++)
        assert_string_equal(ds.class_names[k], names[k]);

    int64_t *idx = malloc(n * sizeof *idx);
    uint8_t *px = malloc((size_t)n * rows * cols);
    int32_t *lab = malloc(n * sizeof *lab);
    for (uint32_t i = 0; i < n; i++)
        idx[i] = i;
    assert_int_equal(dataset_read(&ds, idx, (int)n, px, lab, 10, &err), ERR_OK);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(lab[i], idx_label(i));
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t c = 0; c < cols; c++)
                assert_int_equal(px[((size_t)i * rows + r) * cols + c], idx_pixel(i, r, c));
    }
    free(idx);
    free(px);
    free(lab);
    dataset_close(&ds);
    assert_int_equal(count_tmp_files(), 0);
}

static void test_import_idx_plain(void **state)
{
    (void)state;
    check_idx_import(0, 0, import_fashion_mnist_names, 7, 5, 4);
}

static void test_import_idx_gzip(void **state)
{
    (void)state;
    check_idx_import(1, 1, import_mnist_names, 12, 6, 3);
    check_idx_import(1, 0, import_mnist_names, 3, 28, 28); /* detected per file, from the content */
}

static void test_import_cifar10(void **state)
{
    (void)state;
    const char *a = tpath("data_batch_1.bin"), *b = tpath("data_batch_2.bin"), *out = tpath("cifar.h5");
    const char *paths[2] = {a, b};
    struct error err = {0};
    int64_t n_out = 0;
    write_cifar(a, 0, 2, 0, -1);
    write_cifar(b, 2, 3, 0, -1);
    int rc = import_cifar10(paths, 2, out, &n_out, &err);
    if (rc)
        fail_msg("import_cifar10: %s", err.msg);
    assert_int_equal(n_out, 5);

    struct dataset ds;
    assert_int_equal(dataset_open(&ds, out, &err), ERR_OK);
    assert_int_equal(ds.n, 5);
    assert_int_equal(ds.h, 32);
    assert_int_equal(ds.w, 32);
    assert_int_equal(ds.c, 3);
    assert_int_equal(ds.n_class_names, 10);
    assert_string_equal(ds.class_names[0], "airplane");
    assert_string_equal(ds.class_names[9], "truck");

    int64_t idx[5] = {4, 0, 3, 1, 2};
    static uint8_t px[5 * 32 * 32 * 3];
    int32_t lab[5];
    assert_int_equal(dataset_read(&ds, idx, 5, px, lab, 10, &err), ERR_OK);
    for (int i = 0; i < 5; i++) {
        int k = (int)idx[i];
        assert_int_equal(lab[i], k * 7 % 10);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                for (int ch = 0; ch < 3; ch++)
                    assert_int_equal(px[(size_t)i * 3072 + ((size_t)y * 32 + x) * 3 + ch], cifar_value(k, ch, y, x));
    }
    dataset_close(&ds);
}

static void test_import_idx_errors(void **state)
{
    (void)state;
    const char *images = tpath("e_img.idx"), *labels = tpath("e_lab.idx"), *out = tpath("e_out.h5");
    struct error err = {0};
    int64_t n = 0;

    /* the two files swapped: the labels file is not an image file */
    write_idx_pair(images, labels, 0, 4, 4, 3, 3, 0);
    expect_error(import_idx(labels, images, out, NULL, 0, &n, &err), &err, ERR_INPUT, labels, "magic");
    /* truncated pixels, plain and gzip */
    write_idx_pair(images, labels, 0, 4, 4, 3, 3, 16 + 30);
    expect_error(import_idx(images, labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, images, "truncated");
    write_idx_pair(images, labels, 1, 4, 4, 3, 3, 16 + 30);
    expect_error(import_idx(images, labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, images, "truncated");
    /* truncated header */
    write_idx_pair(images, labels, 0, 4, 4, 3, 3, 10);
    expect_error(import_idx(images, labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, images, "header");
    /* truncated labels */
    size_t llen;
    uint8_t *lb = make_idx_labels(0x801, 4, &llen);
    write_idx_pair(images, labels, 0, 4, 4, 3, 3, 0);
    write_bytes(labels, 1, lb, llen - 1);
    free(lb);
    expect_error(import_idx(images, labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, labels, "truncated");
    /* counts differ */
    write_idx_pair(images, labels, 0, 4, 5, 3, 3, 0);
    expect_error(import_idx(images, labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, labels, "5 labels");
    /* a label beyond the class names */
    write_idx_pair(images, labels, 0, 12, 12, 3, 3, 0);
    const char *const two[2] = {"a", "b"};
    expect_error(import_idx(images, labels, out, two, 2, &n, &err), &err, ERR_INPUT, labels, "outside [0, 2)");
    /* missing input */
    expect_error(import_idx(tpath("none.idx"), labels, out, NULL, 0, &n, &err), &err, ERR_INPUT, "none.idx",
                 "No such file");
    assert_false(file_exists(out));
    assert_int_equal(count_tmp_files(), 0);
}

static void test_import_cifar10_errors(void **state)
{
    (void)state;
    const char *good = tpath("c_good.bin"), *bad = tpath("c_bad.bin"), *out = tpath("c_out.h5");
    const char *paths[2] = {good, bad};
    struct error err = {0};
    int64_t n = 0;

    write_cifar(good, 0, 2, 0, -1);
    write_cifar(bad, 0, 2, 100, -1);
    expect_error(import_cifar10(paths, 2, out, &n, &err), &err, ERR_INPUT, bad, "3073");
    write_cifar(bad, 0, 3, 0, 1);
    expect_error(import_cifar10(paths, 2, out, &n, &err), &err, ERR_INPUT, bad, "record 1 has label 10");
    write_bytes(bad, 0, (const uint8_t *)"", 0);
    expect_error(import_cifar10(paths, 2, out, &n, &err), &err, ERR_INPUT, bad, "empty");
    paths[1] = tpath("c_none.bin");
    expect_error(import_cifar10(paths, 2, out, &n, &err), &err, ERR_INPUT, "c_none.bin", "No such file");
    assert_false(file_exists(out));
    assert_int_equal(count_tmp_files(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_idx_plain),
        cmocka_unit_test(test_import_idx_gzip),
        cmocka_unit_test(test_import_cifar10),
        cmocka_unit_test(test_import_idx_errors),
        cmocka_unit_test(test_import_cifar10_errors),
        cmocka_unit_test(fixtures_no_hdf5_ids_left_open),
    };
    return cmocka_run_group_tests(tests, fixtures_setup, fixtures_teardown);
}

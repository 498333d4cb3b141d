/* test_datasets.c: the HDF5 dataset reader and writer and the IDX / CIFAR-10 importers, on files made here. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
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
#include <zlib.h>

#include "dataset.h"
#include "import.h"

static char tmpdir[] = "/tmp/test_datasets.XXXXXX";

/* ---- helpers -------------------------------------------------------------------------------------------- */

/* A path inside the test's directory; a few rotating buffers so one call can take several. */
static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        chmod(path, 0700);
        while (d && (e = readdir(d))) {
            char child[1024];
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Leaked HDF5 ids, error paths included, are invisible to valgrind (the library frees them at exit). Ids of
 * one kind are numbered in sequence, so every id still valid between a sentinel made before the tests and
 * one made after them is one somebody forgot to close. */
struct id_sentinels {
    hid_t space, type, plist;
};
static struct id_sentinels before;

static struct id_sentinels make_sentinels(void)
{
    hsize_t one = 1;
    struct id_sentinels s = {H5Screate_simple(1, &one, NULL), H5Tcopy(H5T_NATIVE_INT), H5Pcreate(H5P_FILE_ACCESS)};
    return s;
}

static int valid_between(hid_t first, hid_t last)
{
    int n = 0;
    for (hid_t id = first + 1; id < last; id++)
        n += H5Iis_valid(id) > 0;
    return n;
}

static int setup_dir(void **state)
{
    (void)state;
    before = make_sentinels();
    if (before.space < 0 || before.type < 0 || before.plist < 0)
        return -1;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Fails unless rc and err carry code and the one-line message names every given part (the file first).
 * Then spoils err, so the next check cannot pass on a message left over from this one. */
static void expect_error(int rc, struct error *err, int code, const char *part1, const char *part2)
{
    if (rc != code || err->code != code)
        fail_msg("expected code %d, got rc %d err.code %d (\"%s\")", code, rc, err->code, err->msg);
    if (!strstr(err->msg, part1))
        fail_msg("message \"%s\" does not contain \"%s\"", err->msg, part1);
    if (part2 && !strstr(err->msg, part2))
        fail_msg("message \"%s\" does not contain \"%s\"", err->msg, part2);
    if (strchr(err->msg, '\n'))
        fail_msg("message \"%s\" is not one line", err->msg);
    err->code = -1;
    snprintf(err->msg, sizeof err->msg, "(stale)");
}

static void write_bytes(const char *path, int gz, const uint8_t *data, size_t len)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
}

static long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static int count_tmp_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* HDF5's own error stack must not reach the user: runs nothing, just tells whether stderr got any bytes. */
static int stderr_fd_saved = -1;
static const char *stderr_capture_path(void)
{
    static char path[512]; /* its own buffer: tpath's rotate, and the caller's path must survive */
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    return path;
}
static void capture_stderr(void)
{
    int fd = open(stderr_capture_path(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    stderr_fd_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}
static long release_stderr(void)
{
    fflush(stderr);
    dup2(stderr_fd_saved, 2);
    close(stderr_fd_saved);
    return file_size(stderr_capture_path());
}

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

/* Synthetic samples for the reader tests: pixel p of sample i. */
static uint8_t sample_pixel(int64_t i, size_t p)
{
    return (uint8_t)(i * 131 + (int64_t)p * 7 + (int64_t)(p >> 8));
}

static void write_synthetic(const char *path, int64_t n, int h, int w, int c, const int32_t *labels,
                            const char *const *names, int n_names)
{
    size_t sample = (size_t)h * w * c;
    uint8_t *images = malloc((size_t)n * sample);
    struct error err = {0};
    assert_non_null(images);
    for (int64_t i = 0; i < n; i++)
        for (size_t p = 0; p < sample; p++)
            images[(size_t)i * sample + p] = sample_pixel(i, p);
    int rc = dataset_write(path, images, labels, n, h, w, c, names, n_names, &err);
    if (rc)
        fail_msg("dataset_write: %s", err.msg);
    free(images);
}

static void check_sample(const uint8_t *got, int64_t i, size_t sample)
{
    for (size_t p = 0; p < sample; p++)
        if (got[p] != sample_pixel(i, p))
            fail_msg("sample %lld pixel %zu: got %u, expected %u", (long long)i, p, got[p], sample_pixel(i, p));
}

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
static void test_no_hdf5_ids_left_open(void **state)
{
    (void)state;
    struct id_sentinels after = make_sentinels();
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_ATTR), 0);
    assert_int_equal(valid_between(before.space, after.space), 0);
    assert_int_equal(valid_between(before.type, after.type), 0);
    assert_int_equal(valid_between(before.plist, after.plist), 0);
    H5Sclose(after.space);
    H5Tclose(after.type);
    H5Pclose(after.plist);
    H5Sclose(before.space);
    H5Tclose(before.type);
    H5Pclose(before.plist);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_idx_plain),
        cmocka_unit_test(test_import_idx_gzip),
        cmocka_unit_test(test_import_cifar10),
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
        cmocka_unit_test(test_import_idx_errors),
        cmocka_unit_test(test_import_cifar10_errors),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_write_disk_full),
        cmocka_unit_test(test_no_hdf5_ids_left_open),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

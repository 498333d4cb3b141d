/* dataset_fixtures.c: what the dataset and importer tests share (dataset_fixtures.h). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>
#include <zlib.h>

#include "dataset.h"
#include "dataset_fixtures.h"

static char tmpdir[] = "/tmp/test_datasets.XXXXXX";

/* ---- helpers -------------------------------------------------------------------------------------------- */

/* A path inside the test's directory; a few rotating buffers so one call can take several. */
const char *tpath(const char *name)
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

int fixtures_setup(void **state)
{
    (void)state;
    before = make_sentinels();
    if (before.space < 0 || before.type < 0 || before.plist < 0)
        return -1;
    return mkdtemp(tmpdir) ? 0 : -1;
}

int fixtures_teardown(void **state)
{
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Fails unless rc and err carry code and the one-line message names every given part (the file first).
 * Then spoils err, so the next check cannot pass on a message left over from this one. */
void expect_error(int rc, struct error *err, int code, const char *part1, const char *part2)
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

void write_bytes(const char *path, int gz, const uint8_t *data, size_t len)
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

long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

int count_tmp_files(void)
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
void capture_stderr(void)
{
    int fd = open(stderr_capture_path(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    stderr_fd_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}
long release_stderr(void)
{
    fflush(stderr);
    dup2(stderr_fd_saved, 2);
    close(stderr_fd_saved);
    return file_size(stderr_capture_path());
}

/* Synthetic samples for the reader tests: pixel p of sample i. */
uint8_t sample_pixel(int64_t i, size_t p)
{
    return (uint8_t)(i * 131 + (int64_t)p * 7 + (int64_t)(p >> 8));
}

void write_synthetic(const char *path, int64_t n, int h, int w, int c, const int32_t *labels,
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

void check_sample(const uint8_t *got, int64_t i, size_t sample)
{
    for (size_t p = 0; p < sample; p++)
        if (got[p] != sample_pixel(i, p))
            fail_msg("sample %lld pixel %zu: got %u, expected %u", (long long)i, p, got[p], sample_pixel(i, p));
}

void fixtures_no_hdf5_ids_left_open(void **state)
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


/* test_image_import.c: the class-folder index (Keras's order), numpy's shuffle and Keras's split, import
 * images (threads, sizes, skip-invalid, every bad-input case) and the export/import round trip. */
#define _GNU_SOURCE /* mkdtemp, symlink */

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

#include "dataset.h"
#include "image.h"
#include "image_index.h"
#include "import.h"

static char root[64];

static void path_of(char *buf, size_t size, const char *rel)
{
    snprintf(buf, size, "%s/%s", root, rel);
}

static void make_dirs(const char *rel)
{
    char p[512], *s;
    path_of(p, sizeof p, rel);
    for (s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(p, 0777);
        *s = '/';
    }
    mkdir(p, 0777);
}

/* A w x h gray PNG whose pixels are all `v` (plus a gradient, so sizes differ in content too). */
static void put_png(const char *rel, int h, int w, int v)
{
    char p[512];
    uint8_t *px = malloc((size_t)h * w);
    struct error err;
    for (int i = 0; i < h * w; i++)
        px[i] = (uint8_t)(v + i);
    path_of(p, sizeof p, rel);
    assert_int_equal(image_write_png(p, px, h, w, 1, &err), 0);
    free(px);
}

static void put_text(const char *rel, const char *text)
{
    char p[512];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/test_image_import_XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

/* ---- numpy's shuffle ------------------------------------------------------------------------------------ */

/* np.random.seed(0); np.random.permutation(10) is [2 8 4 9 1 6 7 3 0 5] and seed 42 gives
 * [8 1 5 0 7 2 9 4 3 6] (numpy's legacy stream, as tutorials everywhere print it). */
static void test_numpy_shuffle(void **state)
{
    (void)state;
    static const int64_t seed0[10] = {2, 8, 4, 9, 1, 6, 7, 3, 0, 5}, seed42[10] = {8, 1, 5, 0, 7, 2, 9, 4, 3, 6};
    int64_t perm[10];
    image_shuffle(10, 0, perm);
    assert_memory_equal(perm, seed0, sizeof perm);
    image_shuffle(10, 42, perm);
    assert_memory_equal(perm, seed42, sizeof perm);
}

/* Keras: int(fraction * n) files, the last ones of the shuffled list. */
static void test_split(void **state)
{
    (void)state;
    uint8_t is_val[10];
    int64_t perm[10], n_val = image_split(10, 0.25, 0, is_val);
    assert_int_equal(n_val, 2);
    image_shuffle(10, 0, perm);
    int count = 0;
    for (int i = 0; i < 10; i++)
        count += is_val[i];
    assert_int_equal(count, 2);
    assert_true(is_val[perm[8]] && is_val[perm[9]]); /* files 0 and 5 */
    assert_int_equal(image_split(10, 0.05, 0, is_val), 0);
}

/* ---- the index ------------------------------------------------------------------------------------------ */

static void test_index_order(void **state)
{
    (void)state;
    make_dirs("tree/b/x/y");
    make_dirs("tree/b/x-y");
    make_dirs("tree/a");
    make_dirs("tree/.hidden");
    make_dirs("tree/elsewhere");
    put_png("tree/b/z.png", 2, 2, 0);
    put_png("tree/b/A.PNG", 2, 2, 0);
    put_png("tree/b/x/y/deep.jpg", 2, 2, 0); /* the content decides later; listed by name */
    put_png("tree/b/x-y/mid.jpeg", 2, 2, 0);
    put_png("tree/b/x/top.png", 2, 2, 0);
    put_png("tree/a/1.png", 2, 2, 0);
    put_png("tree/.hidden/h.png", 2, 2, 0);
    put_png("tree/elsewhere/e.png", 2, 2, 0);
    put_text("tree/a/notes.txt", "not an image");
    put_text("tree/a/old.bmp", "BM");
    put_text("tree/loose.png", "a file beside the classes");
    char target[512], link[512];
    path_of(target, sizeof target, "tree/elsewhere");
    path_of(link, sizeof link, "tree/b/linked");
    assert_int_equal(symlink(target, link), 0); /* a symlinked folder inside a class: not entered */

    char dir[512];
    struct image_index ix;
    struct error err;
    path_of(dir, sizeof dir, "tree");
    assert_int_equal(image_index_build(dir, NULL, 0, &ix, &err), 0);
    assert_int_equal(ix.n_classes, 3);
    assert_string_equal(ix.class_names[0], "a");
    assert_string_equal(ix.class_names[1], "b");
    assert_string_equal(ix.class_names[2], "elsewhere");
    /* Keras sorts the walk by folder path: "b" < "b/x" < "b/x-y" < "b/x/y" ('-' sorts before '/'). */
    static const char *const want[] = {"a/1.png", "b/A.PNG", "b/z.png", "b/x/top.png", "b/x-y/mid.jpeg",
                                       "b/x/y/deep.jpg", "elsewhere/e.png"};
    static const int labels[] = {0, 1, 1, 1, 1, 1, 2};
    assert_int_equal(ix.n, 7);
    for (int i = 0; i < 7; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, want[i]);
        assert_string_equal(ix.files[i].path, p);
        assert_int_equal(ix.files[i].label, labels[i]);
    }
    assert_int_equal(ix.not_read, 1);
    image_index_release(&ix);

    /* Given classes: that order, a subset; a class without a folder is an error. */
    const char *names[] = {"elsewhere", "a"};
    assert_int_equal(image_index_build(dir, names, 2, &ix, &err), 0);
    assert_int_equal(ix.n, 2);
    assert_int_equal(ix.files[0].label, 0);
    assert_string_equal(ix.class_names[1], "a");
    image_index_release(&ix);
    const char *missing[] = {"a", "nope"};
    assert_int_equal(image_index_build(dir, missing, 2, &ix, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "class 'nope' has no folder"));

    /* class_names.txt gives the classes and their order; '/' in a name is "%2F" in its folder. */
    make_dirs("tree/s%2Fl");
    put_png("tree/s%2Fl/q.png", 2, 2, 0);
    put_text("tree/class_names.txt", "s/l\nb\n");
    assert_int_equal(image_index_build(dir, NULL, 0, &ix, &err), 0);
    assert_int_equal(ix.n_classes, 2);
    assert_string_equal(ix.class_names[0], "s/l");
    assert_int_equal(ix.n, 6);
    image_index_release(&ix);
}

static void expect_index_error(const char *rel, const char *what)
{
    char dir[512];
    struct image_index ix;
    struct error err = {0};
    path_of(dir, sizeof dir, rel);
    assert_int_equal(image_index_build(dir, NULL, 0, &ix, &err), ERR_INPUT);
    if (!strstr(err.msg, what))
        fail_msg("'%s' does not say '%s'", err.msg, what);
}

static void test_index_errors(void **state)
{
    (void)state;
    make_dirs("flat");
    put_png("flat/a.png", 2, 2, 0);
    expect_index_error("flat", "no class folders");
    expect_index_error("nothere", "No such file");
    expect_index_error("flat/a.png", "not a folder");
    make_dirs("empty/a");
    make_dirs("empty/b");
    put_png("empty/a/1.png", 2, 2, 0);
    expect_index_error("empty", "empty/b: no .png or .jpg image in this class folder");
    make_dirs("badname/ok");
    put_png("badname/ok/1.png", 2, 2, 0);
    make_dirs("badname/\xff\xfe");
    expect_index_error("badname", "not valid UTF-8");
}

/* ---- import and export ---------------------------------------------------------------------------------- */

static struct import_images_opts opts_for(const char *dir, const char *out, int threads)
{
    static char d[512], o[512];
    path_of(d, sizeof d, dir);
    path_of(o, sizeof o, out);
    return (struct import_images_opts){.dir = d, .out = o, .channels = 1, .interpolation = IMAGE_BILINEAR,
                                       .threads = threads};
}

/* The whole of a dataset file into memory. */
static void read_all(const char *path, struct dataset *ds, uint8_t **images, int32_t **labels)
{
    struct error err;
    if (dataset_open(ds, path, &err))
        fail_msg("%s", err.msg);
    int64_t *idx = malloc(sizeof *idx * ds->n);
    for (int64_t i = 0; i < ds->n; i++)
        idx[i] = i;
    *images = malloc((size_t)ds->n * ds->h * ds->w * ds->c);
    *labels = malloc(sizeof **labels * ds->n);
    assert_int_equal(dataset_read(ds, idx, (int)ds->n, *images, *labels, 0, &err), 0);
    free(idx);
}

static void test_import_threads_and_split(void **state)
{
    (void)state;
    char name[64];
    make_dirs("imp/c0");
    make_dirs("imp/c1");
    make_dirs("imp/c2");
    for (int i = 0; i < 150; i++) {
        snprintf(name, sizeof name, "imp/c%d/%03d.png", i % 3, i);
        put_png(name, 5, 4, i);
    }
    struct import_images_report r;
    struct error err;
    uint8_t *img[2];
    int32_t *lab[2];
    struct dataset ds[2];
    for (int t = 0; t < 2; t++) {
        struct import_images_opts o = opts_for("imp", t ? "imp2.h5" : "imp1.h5", t + 1);
        if (import_images(&o, &r, &err))
            fail_msg("%s", err.msg);
        assert_int_equal(r.n_train, 150);
        assert_int_equal(r.n_classes, 3);
        read_all(o.out, &ds[t], &img[t], &lab[t]);
        assert_int_equal(ds[t].h, 5);
        assert_int_equal(ds[t].w, 4);
    }
    /* One thread and two write the same file order; class 0 first, its files sorted. */
    assert_memory_equal(img[0], img[1], 150 * 20);
    assert_memory_equal(lab[0], lab[1], 150 * sizeof(int32_t));
    assert_int_equal(lab[0][0], 0);
    assert_int_equal(lab[0][50], 1);
    assert_int_equal(img[0][20], 3); /* the second file of class 0 is 003.png */
    assert_string_equal(ds[0].class_names[2], "c2");
    for (int t = 0; t < 2; t++) {
        dataset_close(&ds[t]);
        free(img[t]);
        free(lab[t]);
    }

    /* Keras's split: 30 of 150 to validation, the rest to training, each in file order. */
    char val[512];
    struct import_images_opts o = opts_for("imp", "tr.h5", 2);
    path_of(val, sizeof val, "va.h5");
    o.val_out = val;
    o.val_split = 0.2;
    o.seed = 123;
    o.size_h = 3;
    o.size_w = 3;
    assert_int_equal(import_images(&o, &r, &err), 0);
    assert_int_equal(r.n_train, 120);
    assert_int_equal(r.n_val, 30);
    uint8_t is_val[150];
    image_split(150, 0.2, 123, is_val);
    read_all(val, &ds[0], &img[0], &lab[0]);
    int64_t k = 0;
    for (int64_t f = 0; f < 150; f++)
        if (is_val[f])
            assert_int_equal(lab[0][k++], f / 50); /* files are listed class by class, 50 each */
    assert_int_equal(ds[0].h, 3);
    dataset_close(&ds[0]);
    free(img[0]);
    free(lab[0]);
}

static int exists(const char *rel)
{
    char p[512];
    struct stat st;
    path_of(p, sizeof p, rel);
    return stat(p, &st) == 0;
}

static void test_import_bad_input(void **state)
{
    (void)state;
    make_dirs("bad/a");
    make_dirs("bad/b");
    put_png("bad/a/1.png", 4, 4, 0);
    put_png("bad/a/2.png", 4, 6, 0);
    put_text("bad/b/3.png", "not a png");
    struct import_images_report r;
    struct error err = {0};
    struct import_images_opts o = opts_for("bad", "bad.h5", 2);

    /* Sizes differ without --size: the first that differs is named. */
    assert_int_equal(import_images(&o, &r, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "bad/a/2.png: 6x4, not the 4x4 of the first image"));
    assert_false(exists("bad.h5"));
    /* With a size, the next bad file is. */
    o.size_h = o.size_w = 4;
    assert_int_equal(import_images(&o, &r, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "bad/b/3.png: not a PNG or JPEG image"));
    assert_false(exists("bad.h5"));
    /* A symlink loop: unreadable, named. */
    char loop[512];
    path_of(loop, sizeof loop, "bad/b/loop.png");
    assert_int_equal(symlink(loop, loop), 0);
    o.skip_invalid = 1;
    assert_int_equal(import_images(&o, &r, &err), 0);
    assert_int_equal(r.n_train, 2);
    assert_int_equal(r.skipped, 2);
    assert_non_null(strstr(r.first_skipped, "bad/b/3.png"));
    assert_true(exists("bad.h5"));
    o.skip_invalid = 0;
    remove(o.out);
    assert_int_equal(import_images(&o, &r, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "bad/b/3.png"));
    char three[512];
    path_of(three, sizeof three, "bad/b/3.png");
    unlink(three);
    assert_int_equal(import_images(&o, &r, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "loop.png: cannot open"));
    assert_false(exists("bad.h5"));
    unlink(loop);
    /* Nothing readable at all: an error even when skipping, and no file. */
    make_dirs("allbad/x");
    put_text("allbad/x/1.png", "x");
    o = opts_for("allbad", "allbad.h5", 1);
    o.skip_invalid = 1;
    assert_int_equal(import_images(&o, &r, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "no readable image"));
    assert_false(exists("allbad.h5"));
    /* An unreadable file (as root every file is readable: not testable there). */
    if (geteuid() != 0) {
        char one[512];
        path_of(one, sizeof one, "bad/a/1.png");
        chmod(one, 0);
        o = opts_for("bad", "bad.h5", 1);
        o.size_h = o.size_w = 4;
        assert_int_equal(import_images(&o, &r, &err), ERR_IO);
        assert_non_null(strstr(err.msg, "bad/a/1.png: cannot open"));
        chmod(one, 0644);
    }
    /* An unwritable output: ERR_IO, nothing left. */
    o = opts_for("imp", "nodir/x.h5", 1);
    assert_int_equal(import_images(&o, &r, &err), ERR_IO);
    assert_non_null(strstr(err.msg, "nodir/x.h5: cannot create"));
}

/* export, then import: the same images, labels and class names, byte for byte (the data in class order). */
static void test_export_import_roundtrip(void **state)
{
    (void)state;
    enum { N = 37, H = 5, W = 3, C = 3 };
    uint8_t images[N * H * W * C];
    int32_t labels[N];
    const char *names[] = {"zeta", "T-shirt/top", "alpha"}; /* not in alphabetical order, a '/' */
    for (int i = 0; i < N; i++)
        labels[i] = i < 10 ? 0 : i < 30 ? 1 : 2;
    for (size_t i = 0; i < sizeof images; i++)
        images[i] = (uint8_t)(i * 7 + i / 45);
    char src[512], dir[512], back[512];
    struct error err;
    path_of(src, sizeof src, "src.h5");
    path_of(dir, sizeof dir, "exported");
    path_of(back, sizeof back, "back.h5");
    assert_int_equal(dataset_write(src, images, labels, N, H, W, C, names, 3, &err), 0);
    int64_t n = 0;
    if (export_images(src, dir, &n, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(n, N);
    assert_true(exists("exported/T-shirt%2Ftop/10.png"));
    assert_true(exists("exported/class_names.txt"));
    /* A second export into a folder that is not empty is refused, the folder untouched. */
    assert_int_equal(export_images(src, dir, &n, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "not empty"));

    struct import_images_opts o = opts_for("exported", "back.h5", 2);
    o.channels = 3;
    struct import_images_report r;
    if (import_images(&o, &r, &err))
        fail_msg("%s", err.msg);
    struct dataset ds;
    uint8_t *img;
    int32_t *lab;
    read_all(back, &ds, &img, &lab);
    assert_int_equal(ds.n, N);
    assert_memory_equal(img, images, sizeof images);
    assert_memory_equal(lab, labels, sizeof labels);
    assert_int_equal(ds.n_class_names, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(ds.class_names[i], names[i]);
    dataset_close(&ds);
    free(img);
    free(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numpy_shuffle),         cmocka_unit_test(test_split),
        cmocka_unit_test(test_index_order),           cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_import_threads_and_split), cmocka_unit_test(test_import_bad_input),
        cmocka_unit_test(test_export_import_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* export_images.c: a dataset written back as a class-folder tree of PNG files (export_images in import.h). */
#define _XOPEN_SOURCE 700 /* nftw */

#include "import.h"

#include <errno.h>
#include <ftw.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "image_index.h"

#define EXPORT_BATCH 256

static int make_dir(const char *path, struct error *err)
{
    if (mkdir(path, 0777) == 0)
        return ERR_OK;
    if (errno == EEXIST)
        return error_set(err, ERR_INPUT, "%s: two classes have this folder", path);
    return error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
}

/* DIR may be missing or an empty folder: the tree is built beside it and renamed into place. */
static int check_target(const char *dir, int *exists, struct error *err)
{
    struct stat st;

    *exists = stat(dir, &st) == 0;
    if (!*exists)
        return errno == ENOENT ? ERR_OK : error_set(err, ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return error_set(err, ERR_INPUT, "%s: exists and is not a folder", dir);
    if (rmdir(dir) == 0) {  /* empty: made again by the rename */
        *exists = 0;
        return mkdir(dir, 0777) == 0 ? ERR_OK : error_set(err, ERR_IO, "%s: %s", dir, strerror(errno));
    }
    return error_set(err, ERR_INPUT, "%s: not empty (export images writes a new folder)", dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The class folders' paths: class names' folders, else label numbers of equal width (so they sort). */
static int class_dirs(const struct dataset *ds, const char *dir, int n_classes, char ***out, struct error *err)
{
    int width = snprintf(NULL, 0, "%d", n_classes - 1);
    char **dirs = calloc((size_t)n_classes, sizeof *dirs);

    *out = dirs;
    if (!dirs)
        return error_set(err, ERR_INTERNAL, "out of memory");
    for (int i = 0; i < n_classes; i++) {
        char num[16], *folder;
        snprintf(num, sizeof num, "%0*d", width, i);
        folder = image_class_folder(ds->n_class_names ? ds->class_names[i] : num);
        if (!folder)
            return error_set(err, ERR_INTERNAL, "out of memory");
        if (!folder[0] || folder[0] == '.')
            return free(folder), error_set(err, ERR_INPUT, "%s: class name '%s' cannot be a folder name", ds->path,
                                           ds->class_names[i]);
        size_t len = strlen(dir) + strlen(folder) + 2;
        if ((dirs[i] = malloc(len)))
            snprintf(dirs[i], len, "%s/%s", dir, folder);
        free(folder);
        if (!dirs[i])
            return error_set(err, ERR_INTERNAL, "out of memory");
    }
    return ERR_OK;
}

static int write_class_list(const struct dataset *ds, const char *dir, struct error *err)
{
    size_t len = strlen(dir) + sizeof IMAGE_CLASS_LIST + 1;
    char *path = malloc(len);
    FILE *f;
    int bad = 0;

    if (!path)
        return error_set(err, ERR_INTERNAL, "out of memory");
    snprintf(path, len, "%s/%s", dir, IMAGE_CLASS_LIST);
    if (!(f = fopen(path, "w"))) {
        int rc = error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    for (int i = 0; i < ds->n_class_names; i++)
        bad |= fprintf(f, "%s\n", ds->class_names[i]) < 0;
    bad |= fclose(f) != 0;
    int rc = bad ? error_set(err, ERR_IO, "%s: cannot write: %s", path, strerror(errno)) : ERR_OK;
    free(path);
    return rc;
}

/* The class count: the names', else one more than the largest label. */
static int count_classes(struct dataset *ds, int *n_classes, struct error *err)
{
    int max_label = -1, rc;

    if (ds->n_class_names > 0) {
        *n_classes = ds->n_class_names;
        for (int i = 0; i < ds->n_class_names; i++)
            if (strchr(ds->class_names[i], '\n') || !image_utf8_valid(ds->class_names[i]))
                return error_set(err, ERR_INPUT, "%s: class name %d holds a line break or is not UTF-8", ds->path, i);
        return ERR_OK;
    }
    if ((rc = dataset_label_counts(ds, NULL, 0, &max_label, err)))
        return rc;
    if (max_label >= DATASET_MAX_CLASSES)
        return error_set(err, ERR_INPUT, "%s: label %d, more than %d classes", ds->path, max_label,
                         DATASET_MAX_CLASSES);
    *n_classes = max_label + 1;
    return ERR_OK;
}

static int write_samples(struct dataset *ds, char **dirs, int n_classes, struct error *err)
{
    size_t sample = (size_t)ds->h * ds->w * ds->c;
    uint8_t *pixels = malloc(sample * EXPORT_BATCH);
    int32_t labels[EXPORT_BATCH];
    int64_t idx[EXPORT_BATCH];
    int width = snprintf(NULL, 0, "%lld", (long long)(ds->n - 1)), rc = ERR_OK;

    if (!pixels)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", ds->path);
    for (int64_t first = 0; first < ds->n && rc == ERR_OK; first += EXPORT_BATCH) {
        int n = ds->n - first < EXPORT_BATCH ? (int)(ds->n - first) : EXPORT_BATCH;
        for (int k = 0; k < n; k++)
            idx[k] = first + k;
        if ((rc = dataset_read(ds, idx, n, pixels, labels, n_classes, err)))
            break;
        for (int k = 0; k < n && rc == ERR_OK; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%0*lld.png", dirs[labels[k]], width, (long long)(first + k));
            rc = image_write_png(path, pixels + k * sample, ds->h, ds->w, ds->c, err);
        }
    }
    free(pixels);
    return rc;
}

static int export_into(struct dataset *ds, const char *dir, struct error *err)
{
    char **dirs = NULL;
    int n_classes = 0, rc;

    if ((rc = count_classes(ds, &n_classes, err)) || (rc = class_dirs(ds, dir, n_classes, &dirs, err)))
        goto done;
    for (int i = 0; i < n_classes && rc == ERR_OK; i++)
        rc = make_dir(dirs[i], err);
    if (rc == ERR_OK && ds->n_class_names > 0)
        rc = write_class_list(ds, dir, err);
    if (rc == ERR_OK)
        rc = write_samples(ds, dirs, n_classes, err);
done:
    for (int i = 0; dirs && i < n_classes; i++)
        free(dirs[i]);
    free(dirs);
    return rc;
}

/* Written whole or not at all: into DIR.tmp.<pid>, renamed to DIR at the end, removed on failure. */
int export_images(const char *data_path, const char *dir, int64_t *n_out, struct error *err)
{
    struct dataset ds = {0};
    size_t len = strlen(dir) + 32, d = strlen(dir);
    char *tmp = malloc(len);
    int rc, exists = 0;

    if (!tmp)
        return error_set(err, ERR_INTERNAL, "out of memory");
    while (d > 1 && dir[d - 1] == '/') /* "fashion/": the temporary is fashion.tmp.PID beside it */
        d--;
    snprintf(tmp, len, "%.*s.tmp.%ld", (int)d, dir, (long)getpid());
    if ((rc = dataset_open(&ds, data_path, err)))
        goto done;
    if (ds.c != 1 && ds.c != 3 && ds.c != 4) {
        rc = error_set(err, ERR_INPUT, "%s: %d channels per pixel: a PNG holds 1, 3 or 4", data_path, ds.c);
        goto done;
    }
    if ((rc = check_target(dir, &exists, err)))
        goto done;
    if (mkdir(tmp, 0777) != 0) {
        rc = error_set(err, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    rc = export_into(&ds, tmp, err);
    if (rc == ERR_OK && rename(tmp, dir) != 0)
        rc = error_set(err, ERR_IO, "%s: cannot rename %s to it: %s", dir, tmp, strerror(errno));
    if (rc)
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    else if (n_out)
        *n_out = ds.n;
done:
    dataset_close(&ds);
    free(tmp);
    return rc;
}

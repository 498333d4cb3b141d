/* bad_dataset.c: broken datasets for tests/test_faults.sh, made with the HDF5 C API.
 *   bad_dataset layout OUT.h5 KIND   a small file whose layout is wrong in one way (KIND below)
 *   bad_dataset label FILE.h5 SEED POS VALUE
 *                                    sets to VALUE the label of the sample at position POS of epoch 1's shuffle
 *                                    (seed SEED, the whole file trained on), in place; prints that sample's index
 *   bad_dataset unlink FILE.h5 NAME  removes the link NAME (/trainer of a checkpoint: what Keras would write)
 * Exit 0 on success, 2 on a usage error, 1 when HDF5 fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "rng.h"

/* Writes /NAME: rank dims of type ftype, zero-filled. */
static int put(hid_t file, const char *name, int rank, const hsize_t *dims, hid_t ftype)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= dims[i];
    void *zeros = calloc(count ? count : 1, 8);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = d < 0 || (count && H5Dwrite(d, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) < 0);
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(space);
    free(zeros);
    return bad ? -1 : 0;
}

static const char *const kinds[] = {"no-images", "no-labels", "images-rank3", "images-float", "labels-2d",
                                    "count-mismatch", "empty", NULL};

/* 8 samples of 12x12x1 (what tests/data/small.model takes), broken as KIND says. */
static int layout(const char *path, const char *kind)
{
    hsize_t images[4] = {8, 12, 12, 1}, labels[2] = {8, 1};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int bad = f < 0;
    if (!bad && strcmp(kind, "images-rank3") == 0)
        bad = put(f, "images", 3, images, H5T_STD_U8LE) || put(f, "labels", 1, labels, H5T_STD_U8LE);
    else if (!bad && strcmp(kind, "images-float") == 0)
        bad = put(f, "images", 4, images, H5T_IEEE_F32LE) || put(f, "labels", 1, labels, H5T_STD_U8LE);
    else if (!bad && strcmp(kind, "labels-2d") == 0)
        bad = put(f, "images", 4, images, H5T_STD_U8LE) || put(f, "labels", 2, labels, H5T_STD_I32LE);
    else if (!bad && strcmp(kind, "count-mismatch") == 0) {
        labels[0] = 7;
        bad = put(f, "images", 4, images, H5T_STD_U8LE) || put(f, "labels", 1, labels, H5T_STD_U8LE);
    } else if (!bad && strcmp(kind, "empty") == 0) {
        images[0] = labels[0] = 0;
        bad = put(f, "images", 4, images, H5T_STD_U8LE) || put(f, "labels", 1, labels, H5T_STD_U8LE);
    } else if (!bad) {
        int no_images = strcmp(kind, "no-images") == 0;
        bad = (no_images ? 0 : put(f, "images", 4, images, H5T_STD_U8LE)) ||
              (no_images ? put(f, "labels", 1, labels, H5T_STD_U8LE) : 0);
    }
    if (f >= 0 && H5Fclose(f) < 0)
        bad = 1;
    return bad ? 1 : 0;
}

static int set_label(const char *path, uint64_t seed, int64_t pos, int value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f < 0 ? H5I_INVALID_HID : H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t fspace = d < 0 ? H5I_INVALID_HID : H5Dget_space(d);
    hsize_t n = 0, one = 1;
    int bad = fspace < 0 || H5Sget_simple_extent_dims(fspace, &n, NULL) != 1 || pos < 0 || (hsize_t)pos >= n;
    if (!bad) {
        int64_t *perm = malloc(sizeof *perm * n);
        rng_shuffle_epoch(perm, (int64_t)n, seed, 0);
        hsize_t at = (hsize_t)perm[pos];
        hid_t mspace = H5Screate_simple(1, &one, NULL);
        bad = H5Sselect_elements(fspace, H5S_SELECT_SET, 1, &at) < 0 ||
              H5Dwrite(d, H5T_NATIVE_INT, mspace, fspace, H5P_DEFAULT, &value) < 0;
        H5Sclose(mspace);
        if (!bad)
            printf("%lld\n", (long long)at);
        free(perm);
    }
    if (fspace >= 0)
        H5Sclose(fspace);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0 && H5Fclose(f) < 0)
        bad = 1;
    return bad ? 1 : 0;
}

static int unlink_name(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    int bad = f < 0 || H5Ldelete(f, name, H5P_DEFAULT) < 0;
    if (f >= 0 && H5Fclose(f) < 0)
        bad = 1;
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "layout") == 0) {
        for (int i = 0; kinds[i]; i++)
            if (strcmp(argv[3], kinds[i]) == 0)
                return layout(argv[2], argv[3]);
    }
    if (argc == 6 && strcmp(argv[1], "label") == 0)
        return set_label(argv[2], strtoull(argv[3], NULL, 10), atoll(argv[4]), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "unlink") == 0)
        return unlink_name(argv[2], argv[3]);
    fprintf(stderr, "usage: bad_dataset layout OUT.h5 no-images|no-labels|images-rank3|images-float|labels-2d|"
                    "count-mismatch|empty\n       bad_dataset label FILE.h5 SEED POS VALUE\n"
                    "       bad_dataset unlink FILE.h5 NAME\n");
    return 2;
}

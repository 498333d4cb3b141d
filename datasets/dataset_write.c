/* dataset_write.c: a dataset file written whole or not at all (dataset_write in dataset.h). */
#include "dataset.h"
#include "dataset_layout.h"
#include "h5file.h"

#include <stdint.h>
#include <string.h>

/* What dataset_write was given, in one place. */
struct write_job {
    const uint8_t *images;
    const int32_t *labels;
    int64_t n;
    int h, w, c;
    const char *const *class_names;
    int n_class_names;
};

/* Writes a whole chunked, uncompressed array /NAME of type ftype from buf (mtype). */
static int write_array(hid_t file, const char *name, int rank, const hsize_t *dims, const hsize_t *chunk,
                       hid_t ftype, hid_t mtype, const void *buf)
{
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dset = H5I_INVALID_HID;
    int rc = -1;

    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 &&
        (dset = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) >= 0 &&
        H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (dset >= 0 && H5Dclose(dset) < 0) /* cached chunks are written out here */
        rc = -1;
    close_id(&dcpl, H5Pclose);
    close_id(&space, H5Sclose);
    return rc;
}

static int write_images(hid_t file, const uint8_t *images, int64_t n, int h, int w, int c)
{
    hsize_t sample = (hsize_t)h * w * c, rows = sample < CHUNK_BYTES ? CHUNK_BYTES / sample : 1;
    hsize_t dims[4] = {(hsize_t)n, h, w, c};
    hsize_t chunk[4] = {rows < (hsize_t)n ? rows : (hsize_t)n, h, w, c};

    return write_array(file, "images", 4, dims, chunk, H5T_STD_U8LE, H5T_NATIVE_UINT8, images);
}

/* uint8 when every label fits, as the IDX and CIFAR files store them; int32 otherwise. */
static int write_labels(hid_t file, const int32_t *labels, int64_t n)
{
    hsize_t dims[1] = {(hsize_t)n}, chunk[1] = {n < LABEL_CHUNK ? (hsize_t)n : LABEL_CHUNK};
    int small = 1;

    for (int64_t i = 0; i < n && small; i++)
        small = labels[i] >= 0 && labels[i] < 256;
    return write_array(file, "labels", 1, dims, chunk, small ? H5T_STD_U8LE : H5T_STD_I32LE, H5T_NATIVE_INT32,
                       labels);
}

/* Variable-length UTF-8 strings: h5py reads them as a list of str. Shared with dataset_stream.c. */
int dataset_write_class_names(hid_t file, const char *const *names, int count)
{
    hsize_t dims[1] = {(hsize_t)count};
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    int rc = -1;

    if (!names || count <= 0)
        return 0;
    if ((type = H5Tcopy(H5T_C_S1)) >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(type, H5T_CSET_UTF8) >= 0 && (space = H5Screate_simple(1, dims, NULL)) >= 0 &&
        (attr = H5Acreate2(file, "class_names", type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(attr, type, names) >= 0)
        rc = 0;
    close_id(&attr, H5Aclose);
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    return rc;
}

/* The datasets and the attribute, into the in-memory file. */
static int fill_file(hid_t file, const struct write_job *job)
{
    if (write_images(file, job->images, job->n, job->h, job->w, job->c) < 0 ||
        write_labels(file, job->labels, job->n) < 0 ||
        dataset_write_class_names(file, job->class_names, job->n_class_names) < 0)
        return -1;
    return 0;
}

static int check_write_args(const char *path, int64_t n, int h, int w, int c, int n_class_names,
                            struct error *err)
{
    if (n <= 0)
        return error_set(err, ERR_INPUT, "%s: no samples to write", path);
    if (h <= 0 || w <= 0 || c <= 0 || (int64_t)h * w * c > MAX_SAMPLE_BYTES)
        return error_set(err, ERR_INPUT, "%s: unusable sample shape (%d, %d, %d)", path, h, w, c);
    if (n_class_names > DATASET_MAX_CLASSES)
        return error_set(err, ERR_INPUT, "%s: %d class names, more than %d", path, n_class_names,
                         DATASET_MAX_CLASSES);
    return ERR_OK;
}

/* Written whole or not at all (h5file.h): built in memory, then a temporary file, fsync, rename. */
int dataset_write(const char *path, const uint8_t *images, const int32_t *labels, int64_t n, int h, int w,
                  int c, const char *const *class_names, int n_class_names, struct error *err)
{
    struct write_job job = {images, labels, n, h, w, c, class_names, n_class_names};
    struct h5file_writer out;
    int rc;

    if ((rc = check_write_args(path, n, h, w, c, n_class_names, err)))
        return rc;
    /* One increment about the size of the data: the buffer grows once or twice, not thousands of times. */
    if ((rc = h5file_create(&out, path, (size_t)n * ((size_t)h * w * c + sizeof *labels) + (1 << 20), NULL,
                            err)))
        return rc;
    if (fill_file(out.file, &job) < 0) {
        h5file_discard(&out);
        return error_set(err, ERR_INTERNAL, "%s: cannot build the file in memory (out of memory?)", path);
    }
    return h5file_commit(&out, err);
}

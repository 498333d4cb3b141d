/* dataset_stream.c: a dataset file written as its samples arrive (larger than memory), under a temporary
 * name renamed into place at the end (dataset_stream_* in dataset.h). */
#define _GNU_SOURCE /* fallocate */

#include "dataset.h"
#include "dataset_layout.h"
#include "h5file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An extendable chunked array /NAME of ftype, (0, dims[1..]) now, unlimited along N. */
static hid_t create_growing(hid_t file, const char *name, int rank, const hsize_t *dims, const hsize_t *chunk,
                            hid_t ftype)
{
    hsize_t zero[4] = {0, 0, 0, 0}, max[4] = {H5S_UNLIMITED, 0, 0, 0};
    hid_t space, dcpl = H5Pcreate(H5P_DATASET_CREATE), dset = H5I_INVALID_HID;

    for (int i = 1; i < rank; i++)
        zero[i] = max[i] = dims[i];
    space = H5Screate_simple(rank, zero, max);
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0)
        dset = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    close_id(&dcpl, H5Pclose);
    close_id(&space, H5Sclose);
    return dset;
}

/* Appends n rows of buf (mtype) to a growing array. */
static int append_rows(hid_t dset, int rank, int64_t at, int64_t n, hid_t mtype, const void *buf)
{
    hsize_t dims[4], start[4] = {(hsize_t)at, 0, 0, 0}, count[4];
    hid_t space = H5I_INVALID_HID, mem = H5I_INVALID_HID, fspace = H5Dget_space(dset);
    int rc = -1;

    if (fspace < 0 || H5Sget_simple_extent_dims(fspace, dims, NULL) != rank) {
        close_id(&fspace, H5Sclose);
        return -1;
    }
    close_id(&fspace, H5Sclose);
    memcpy(count, dims, sizeof dims);
    count[0] = (hsize_t)n;
    dims[0] = (hsize_t)(at + n);
    if (H5Dset_extent(dset, dims) >= 0 && (space = H5Dget_space(dset)) >= 0 &&
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        (mem = H5Screate_simple(rank, count, NULL)) >= 0 && H5Dwrite(dset, mtype, mem, space, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    close_id(&mem, H5Sclose);
    close_id(&space, H5Sclose);
    return rc;
}

/* Reserves the expected bytes on disk (beyond the file's end, its size unchanged), so that a full disk
 * fails here, before any work, and not inside HDF5 (HDF5 1.10, writing to disk itself, can crash at exit
 * after a failed flush: see h5file.c). File systems without fallocate get no reservation. */
static int reserve(struct dataset_stream *s, int64_t bytes, struct error *err)
{
    if (fallocate(s->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) != 0 && errno == ENOSPC)
        return error_set(err, ERR_IO, "%s: cannot write: %s (%lld MB needed)", s->path, strerror(errno),
                         (long long)(bytes >> 20));
    return ERR_OK;
}

void dataset_stream_discard(struct dataset_stream *s)
{
    close_id(&s->images, H5Dclose);
    close_id(&s->labels, H5Dclose);
    close_id(&s->file, H5Fclose);
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->tmp);
    }
    s->fd = -1;
    free(s->path);
    free(s->tmp);
    s->path = s->tmp = NULL;
}

static int stream_fail(struct dataset_stream *s, struct error *err, const char *what)
{
    int rc = error_set(err, ERR_IO, "%s: cannot write: %s", s->path, what);
    dataset_stream_discard(s);
    return rc;
}

int dataset_stream_open(struct dataset_stream *s, const char *path, int h, int w, int c, int n_classes,
                        int64_t expected, struct error *err)
{
    size_t len = strlen(path) + 32;
    hsize_t sample = (hsize_t)h * w * c, rows = sample < CHUNK_BYTES ? CHUNK_BYTES / sample : 1;
    hsize_t idims[4] = {0, h, w, c}, ichunk[4] = {rows, h, w, c}, ldims[1] = {0}, lchunk[1] = {LABEL_CHUNK};

    *s = (struct dataset_stream){.file = H5I_INVALID_HID, .images = H5I_INVALID_HID,
                                 .labels = H5I_INVALID_HID, .fd = -1, .h = h, .w = w, .c = c};
    if (h <= 0 || w <= 0 || c <= 0 || (int64_t)sample > MAX_SAMPLE_BYTES)
        return error_set(err, ERR_INPUT, "%s: unusable sample shape (%d, %d, %d)", path, h, w, c);
    s->path = strdup(path);
    s->tmp = malloc(len);
    if (!s->path || !s->tmp) {
        dataset_stream_discard(s);
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    }
    snprintf(s->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    if ((s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666)) < 0) {
        int rc = error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        dataset_stream_discard(s);
        return rc;
    }
    if (reserve(s, expected * (int64_t)(sample + 4) + (1 << 20), err)) {
        dataset_stream_discard(s);
        return err->code;
    }
    h5file_quiet();
    s->file = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (s->file < 0)
        return stream_fail(s, err, "HDF5 cannot create the file");
    s->images = create_growing(s->file, "images", 4, idims, ichunk, H5T_STD_U8LE);
    s->labels = create_growing(s->file, "labels", 1, ldims, lchunk, n_classes <= 256 ? H5T_STD_U8LE : H5T_STD_I32LE);
    if (s->images < 0 || s->labels < 0)
        return stream_fail(s, err, "HDF5 cannot create /images and /labels");
    return ERR_OK;
}

int dataset_stream_append(struct dataset_stream *s, const uint8_t *images, const int32_t *labels, int64_t n,
                          struct error *err)
{
    if (n <= 0)
        return ERR_OK;
    if (append_rows(s->images, 4, s->n, n, H5T_NATIVE_UINT8, images) < 0 ||
        append_rows(s->labels, 1, s->n, n, H5T_NATIVE_INT32, labels) < 0)
        return stream_fail(s, err, errno ? strerror(errno) : "HDF5 write failed");
    s->n += n;
    return ERR_OK;
}

/* The file's bytes are fsync'ed before the rename, as h5file_commit does. */
int dataset_stream_commit(struct dataset_stream *s, const char *const *class_names, int n_class_names,
                          struct error *err)
{
    struct stat st;
    int rc;

    if (s->n <= 0) {
        rc = error_set(err, ERR_INPUT, "%s: no samples to write", s->path);
        dataset_stream_discard(s);
        return rc;
    }
    if (dataset_write_class_names(s->file, class_names, n_class_names) < 0)
        return stream_fail(s, err, "HDF5 cannot write class_names");
    close_id(&s->images, H5Dclose);
    close_id(&s->labels, H5Dclose);
    if (H5Fclose(s->file) < 0) {
        s->file = H5I_INVALID_HID;
        return stream_fail(s, err, "HDF5 cannot close the file (disk full?)");
    }
    s->file = H5I_INVALID_HID;
    /* Truncating to its own size gives back what the reservation held beyond the end. */
    if (fstat(s->fd, &st) == 0)
        (void)!ftruncate(s->fd, st.st_size);
    if (fsync(s->fd) != 0 || close(s->fd) != 0) {
        s->fd = -1;
        unlink(s->tmp);
        return stream_fail(s, err, strerror(errno));
    }
    s->fd = -1;
    if (rename(s->tmp, s->path) != 0) {
        rc = error_set(err, ERR_IO, "%s: cannot replace: %s", s->path, strerror(errno));
        unlink(s->tmp);
        dataset_stream_discard(s);
        return rc;
    }
    h5file_sync_parent_dir(s->path);
    dataset_stream_discard(s);
    return ERR_OK;
}

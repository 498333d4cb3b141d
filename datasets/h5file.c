/* h5file.c: opening HDF5 files with one clear error; writing them whole or not at all (in memory first, then
 * a temporary file, fsync, rename). */
#define _POSIX_C_SOURCE 200809L

#include "h5file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void h5file_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

hid_t h5file_access_list(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    if (fapl >= 0)
        H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

/* ---- reading -------------------------------------------------------------------------------------------- */

/* Tells "no such file", "not a file" and "cannot read" apart before HDF5 turns them all into "not an HDF5
 * file" (or, for a pipe, waits forever in open()). */
static int check_readable(const char *path, struct error *err)
{
    struct stat st;
    int fd;

    if (stat(path, &st) != 0)
        return error_set(err, errno == ENOENT || errno == ENOTDIR ? ERR_INPUT : ERR_IO, "%s: %s", path,
                         strerror(errno));
    if (S_ISDIR(st.st_mode))
        return error_set(err, ERR_INPUT, "%s: is a directory, not an HDF5 file", path);
    if (!S_ISREG(st.st_mode))
        return error_set(err, ERR_INPUT, "%s: not a regular file (HDF5 cannot read a pipe or a device)", path);
    /* O_NONBLOCK: should the path have become a pipe since the stat, the open still returns. */
    fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    return ERR_OK;
}

int h5file_open_read(const char *path, hid_t *file, struct error *err)
{
    hid_t fapl;
    int rc;

    *file = H5I_INVALID_HID;
    h5file_quiet();
    if ((rc = check_readable(path, err)))
        return rc;
    if (H5Fis_hdf5(path) <= 0)
        return error_set(err, ERR_INPUT, "%s: not an HDF5 file", path);
    fapl = h5file_access_list();
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0)
        H5Pclose(fapl);
    /* The signature was there, so the rest is damaged: most often a copy cut short. */
    if (*file < 0) {
        *file = H5I_INVALID_HID;
        return error_set(err, ERR_INPUT, "%s: damaged or truncated HDF5 file", path);
    }
    return ERR_OK;
}

/* ---- writing -------------------------------------------------------------------------------------------- */

/* The innermost HDF5 message, where the problem was found (the outer ones only say "unable to ..."). */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0)
        snprintf(data, 256, "%s", e->desc ? e->desc : "HDF5 error");
    return 0;
}

/* The message for a failure at one stage (`verb`: "cannot create", ...), in the caller's chosen style. */
static int writer_error(const struct h5file_writer *w, struct error *err, int code, const char *verb,
                        const char *reason)
{
    if (w->what)
        return error_set(err, code, "%s: cannot write %s: %s", w->path, w->what, reason);
    return error_set(err, code, "%s: %s: %s", w->path, verb, reason);
}

/* An HDF5 failure while the file is only in memory: nothing touched the disk, so not an I/O error. */
static int hdf5_error(const struct h5file_writer *w, struct error *err)
{
    char why[256] = "";

    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, why);
    return writer_error(w, err, ERR_INTERNAL, "cannot build the file in memory", why[0] ? why : "out of memory?");
}

static void writer_release(struct h5file_writer *w)
{
    if (w->file >= 0)
        H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    w->fd = -1;
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
}

void h5file_discard(struct h5file_writer *w)
{
    writer_release(w);
}

/* Names the temporary file PATH.tmp.<pid> and creates it. On failure w is released. */
static int open_tmp(struct h5file_writer *w, const char *path, const char *what, struct error *err)
{
    size_t len = strlen(path) + 32;

    *w = (struct h5file_writer){.file = H5I_INVALID_HID, .what = what, .fd = -1};
    w->path = strdup(path);
    w->tmp = malloc(len);
    if (!w->path || !w->tmp) {
        writer_release(w);
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    }
    snprintf(w->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    /* O_TRUNC, not O_EXCL: a temporary left by a killed run with the same pid (usual in containers) must not
     * block every later write. */
    if ((w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666)) < 0) {
        int rc = writer_error(w, err, ERR_IO, "cannot create", strerror(errno));
        writer_release(w);
        return rc;
    }
    return ERR_OK;
}

int h5file_check_writable(const char *path, const char *what, struct error *err)
{
    struct h5file_writer w;
    int rc = open_tmp(&w, path, what, err);

    if (rc == ERR_OK)
        writer_release(&w); /* closes and removes it */
    return rc;
}

int h5file_create(struct h5file_writer *w, const char *path, size_t increment, const char *what,
                  struct error *err)
{
    hid_t fapl;
    int rc = open_tmp(w, path, what, err);

    if (rc)
        return rc;
    h5file_quiet();
    /* No backing store: every byte reaches the disk through our own write(), with its errno. HDF5 1.10
     * writing to disk itself is worse at failing: after a flush that hits a full disk, the library crashes at
     * process exit (and `predict`, written that way, once reported success and left a file with holes). The
     * cost is one more copy of the file in memory while writing. */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, increment, 0) >= 0)
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (w->file < 0) {
        rc = hdf5_error(w, err);
        writer_release(w);
    }
    return rc;
}

/* The finished file's bytes (malloc'd into *image); closes the in-memory file. */
static int take_image(struct h5file_writer *w, void **image, size_t *size, struct error *err)
{
    ssize_t n = -1;

    *image = NULL;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0 || (n = H5Fget_file_image(w->file, NULL, 0)) <= 0)
        return hdf5_error(w, err);
    if (!(*image = malloc((size_t)n)))
        return writer_error(w, err, ERR_INTERNAL, "cannot build the file in memory", "out of memory");
    *size = (size_t)n;
    if (H5Fget_file_image(w->file, *image, (size_t)n) != n || H5Fclose(w->file) < 0)
        return hdf5_error(w, err);
    w->file = H5I_INVALID_HID;
    return ERR_OK;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO; /* not expected from a regular file; errno would be stale */
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

void h5file_sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY) : -1;

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* The bytes are fsync'ed before the rename: otherwise a crash just after could leave PATH naming blocks that
 * never arrived. close() is checked too: NFS reports some write errors only there. */
int h5file_commit(struct h5file_writer *w, struct error *err)
{
    void *image = NULL;
    size_t size = 0;
    int rc = take_image(w, &image, &size, err), closed;

    if (rc)
        goto fail;
    if (write_all(w->fd, image, size) < 0 || fsync(w->fd) < 0) {
        rc = writer_error(w, err, ERR_IO, "cannot write", strerror(errno));
        goto fail;
    }
    closed = close(w->fd);
    w->fd = -1;
    if (closed < 0) {
        rc = writer_error(w, err, ERR_IO, "cannot write", strerror(errno));
        unlink(w->tmp);
        goto fail;
    }
    if (rename(w->tmp, w->path) != 0) {
        rc = writer_error(w, err, ERR_IO, "cannot replace", strerror(errno));
        unlink(w->tmp);
        goto fail;
    }
    h5file_sync_parent_dir(w->path);
fail:
    free(image);
    writer_release(w);
    return rc;
}

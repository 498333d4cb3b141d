/* h5file.h: HDF5 files opened with one clear error, and written whole or not at all. Shared by the dataset
 * (datasets/) and checkpoint (trainer/) readers and writers. */
#ifndef TRAINER_H5FILE_H
#define TRAINER_H5FILE_H

#include <stddef.h>

#include <hdf5.h>

#include "error.h"

/* HDF5 prints its error stack to stderr by default; the user must see only our one line. */
void h5file_quiet(void);

/* A file access list that still locks, but does not fail on file systems (NFS, Lustre) where locking is
 * disabled: every rank opens the same file. The caller closes it (H5Pclose). */
hid_t h5file_access_list(void);

/* Opens an existing HDF5 file read-only into *file. ERR_INPUT "PATH: what is wrong" for a missing file, a
 * directory, something that is not a regular file (a pipe: HDF5 must seek, and opening one would wait for a
 * writer forever), a file without HDF5's signature, or one damaged or cut short; ERR_IO when the file exists
 * but cannot be opened (permissions). On failure *file is H5I_INVALID_HID. */
int h5file_open_read(const char *path, hid_t *file, struct error *err);

/* A file being written: an in-memory HDF5 file (HDF5's core driver) that the caller fills through `file`,
 * and the temporary file PATH.tmp.<pid> beside PATH that will receive its bytes. */
struct h5file_writer {
    hid_t file;       /* the in-memory HDF5 file to fill */
    char *path, *tmp; /* malloc'd */
    const char *what; /* names the file in messages ("checkpoint"), or NULL */
    int fd;           /* the temporary file */
};

/* Creates the temporary file first (so that an unwritable directory fails before any work) and the in-memory
 * file, grown `increment` bytes at a time (about the size of the data: it grows once or twice). `what` picks
 * the messages: NULL gives "PATH: cannot create|write|replace: reason", a noun gives
 * "PATH: cannot write WHAT: reason" for every failure. ERR_IO when the file system refuses; ERR_INTERNAL when
 * HDF5 cannot make the in-memory file (out of memory). On failure nothing is left on disk and w needs no
 * further call. */
int h5file_create(struct h5file_writer *w, const char *path, size_t increment, const char *what,
                  struct error *err);

/* Whether PATH can be written: creates and removes the temporary file a write would use, so that a wrong
 * directory fails at start-up rather than at the first write, maybe hours later. Messages as h5file_create. */
int h5file_check_writable(const char *path, const char *what, struct error *err);

/* Writes the filled in-memory file to the temporary file with plain write() calls, fsyncs it, renames it over
 * PATH and fsyncs the directory: PATH is then the new file, or, on any failure, still the old one (and the
 * temporary file is gone). Releases w either way. */
int h5file_commit(struct h5file_writer *w, struct error *err);

/* Gives up a write: closes the in-memory file, removes the temporary file, releases w. Safe after a failed
 * h5file_create or a commit. */
void h5file_discard(struct h5file_writer *w);

/* Makes a rename in PATH's directory durable (fsync of the directory). Best effort: some file systems refuse
 * fsync on a directory. */
void h5file_sync_parent_dir(const char *path);

#endif

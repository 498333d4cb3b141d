/* fuzz_util.c: the fuzz input as a string or as a file. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static char path_[64];

static void remove_file(void) { unlink(path_); }

const char *fuzz_file(const uint8_t *data, size_t size)
{
    if (!path_[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path_, sizeof path_, "%.30s/fuzz-%ld.h5", dir ? dir : "/tmp", (long)getpid());
        atexit(remove_file);
        /* HDF5's own stack dumps would flood the fuzzer's output; the readers switch them off too. */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    }
    FILE *f = fopen(path_, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    return path_;
}

void fuzz_check_hdf5_closed(void)
{
    ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_objects != 0) {
        fprintf(stderr, "fuzz: %zd HDF5 objects left open\n", open_objects);
        abort();
    }
}

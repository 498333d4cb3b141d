/* dataset_layout.h: what the dataset reader (dataset.c) and writer (dataset_write.c) share: the file layout's
 * limits and chunk sizes, and closing HDF5 ids. Internal to datasets/. */
#ifndef TRAINER_DATASET_LAYOUT_H
#define TRAINER_DATASET_LAYOUT_H

#include <stdint.h>

#include <hdf5.h>

/* A sample image may not exceed this (bytes): keeps every size product far from overflow and one chunk row
 * well under HDF5's 4 GiB chunk limit. */
#define MAX_SAMPLE_BYTES ((int64_t)1 << 30)
/* ~128 KiB chunks: few enough that the chunk index stays small; random reads fetch only their own bytes
 * anyway (see uncache_images), and a compressed copy (h5repack) still inflates little besides the sample. */
#define CHUNK_BYTES 131072
#define LABEL_CHUNK 65536

/* Closes an id if it is open and marks it closed, so every cleanup path can call it unconditionally. */
static inline void close_id(hid_t *id, herr_t (*closer)(hid_t))
{
    if (*id > 0)
        closer(*id);
    *id = H5I_INVALID_HID;
}

/* Writes the root attribute class_names (variable-length UTF-8 strings); nothing when count is 0. */
int dataset_write_class_names(hid_t file, const char *const *names, int count);

#endif

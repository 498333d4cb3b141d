/* checkpoint_hdf5.h: what the checkpoint writer (checkpoint_write.c) and reader (checkpoint_read.c) share.
 * Internal to trainer/. */
#ifndef TRAINER_CHECKPOINT_HDF5_H
#define TRAINER_CHECKPOINT_HDF5_H

#include <hdf5.h>

/* Closes *id when it is open and marks it closed, so that cleanup paths can call it on every id. */
static inline void close_id(hid_t *id, herr_t (*close)(hid_t))
{
    if (*id >= 0)
        close(*id);
    *id = H5I_INVALID_HID;
}

#endif

/* fuzz_util.h: what the libFuzzer targets share: the input as a C string, or as a file on disk for the
 * readers that take a path (HDF5 reads files, not buffers). */
#ifndef TRAINER_FUZZ_UTIL_H
#define TRAINER_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* data as a NUL-terminated string (malloc'd; the caller frees). NULs inside stay: the parsers see a shorter
 * text, as they would from a file. */
char *fuzz_string(const uint8_t *data, size_t size);

/* Writes data to this process's scratch file and returns its path (the same path every call; removed at exit). */
const char *fuzz_file(const uint8_t *data, size_t size);

/* Aborts when an HDF5 object (file, group, dataset, attribute, type, space, property list) is still open: a
 * reader that leaves one open leaks it (LeakSanitizer cannot see it: HDF5 keeps a reference), and a file left
 * open is what HDF5 hands back, stale, to the next open of the same path. */
void fuzz_check_hdf5_closed(void);

#endif

/* dataset_fixtures.h: what the dataset (test_datasets.c) and importer (test_import.c) tests share: a
 * temporary directory per run, files of known content, one-line error checks, and a check that no HDF5 id
 * is left open. */
#ifndef TRAINER_DATASET_FIXTURES_H
#define TRAINER_DATASET_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* cmocka group set-up and tear-down: a fresh temporary directory, removed at the end. */
int fixtures_setup(void **state);
int fixtures_teardown(void **state);
/* A path inside that directory; a few rotating buffers so one call can take several. */
const char *tpath(const char *name);
int file_exists(const char *path);
long file_size(const char *path);
/* Files named *.tmp.* left in the directory (a failed write must leave none). */
int count_tmp_files(void);
/* Writes bytes to path, gzip-compressed when gz. */
void write_bytes(const char *path, int gz, const uint8_t *data, size_t len);
/* Fails unless rc and err carry code and the one-line message names every given part (the file first);
 * then spoils err, so the next check cannot pass on a message left over from this one. */
void expect_error(int rc, struct error *err, int code, const char *part1, const char *part2);
/* stderr to a file until release_stderr, which returns how many bytes it got. */
void capture_stderr(void);
long release_stderr(void);
/* Synthetic samples: pixel p of sample i; a dataset file of n of them; a check of one read back. */
uint8_t sample_pixel(int64_t i, size_t p);
void write_synthetic(const char *path, int64_t n, int h, int w, int c, const int32_t *labels,
                     const char *const *names, int n_names);
void check_sample(const uint8_t *got, int64_t i, size_t sample);
/* The last test of a program: no HDF5 file, dataset, space, type or property list is left open. */
void fixtures_no_hdf5_ids_left_open(void **state);

#endif

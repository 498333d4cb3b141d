/* fuzz_dataset.c: the HDF5 dataset reader (datasets/dataset.c) on any file: open, read a few samples (first,
 * last, middle, a repeat, out of order), count the labels. */
#include <stdlib.h>

#include "dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A file may claim samples of up to 1 GiB, which the reader accepts and a batch would then allocate: real
 * for a real file, but only noise here. */
#define MAX_FUZZ_SAMPLE 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int64_t counts[DATASET_MAX_CLASSES];
    struct dataset ds;
    struct error err = {0};
    if (dataset_open(&ds, fuzz_file(data, size), &err) != ERR_OK) {
        fuzz_check_hdf5_closed();
        return 0;
    }
    size_t sample = (size_t)ds.h * ds.w * ds.c;
    if (sample <= MAX_FUZZ_SAMPLE) {
        int64_t idx[5] = {ds.n - 1, 0, ds.n / 2, ds.n - 1, ds.n / 3};
        uint8_t *images = malloc(sample * 5);
        int32_t labels[5];
        if (!images)
            abort();
        dataset_read(&ds, idx, 5, images, labels, 10, &err);
        dataset_read(&ds, idx + 1, 1, images, labels, 0, &err);
        free(images);
    }
    int max_label;
    dataset_label_counts(&ds, counts, DATASET_MAX_CLASSES, &max_label, &err);
    dataset_close(&ds);
    fuzz_check_hdf5_closed();
    return 0;
}

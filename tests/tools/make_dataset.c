/* make_dataset.c: `make_dataset OUT.h5 N SIDE CLASSES SEED [CHANNELS]` writes a small learnable dataset for the
 * tests: noise, with a bright square whose position tells the class (in every channel; 1 channel by default). */
#include <stdio.h>
#include <stdlib.h>

#include "dataset.h"
#include "rng.h"

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: make_dataset OUT.h5 N SIDE CLASSES SEED [CHANNELS]\n");
        return 2;
    }
    long n = atol(argv[2]), side = atol(argv[3]), classes = atol(argv[4]), ch = argc == 7 ? atol(argv[6]) : 1;
    struct rng r;
    rng_seed(&r, (uint64_t)atol(argv[5]), 0);
    if (n < 1 || side < 8 || classes < 2 || classes > 8 || ch < 1 || ch > 4)
        return 2;
    uint8_t *images = malloc((size_t)(n * side * side * ch));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    long sq = side / 4;
    for (long i = 0; i < n; i++) {
        int k = (int)rng_below(&r, (uint64_t)classes);
        labels[i] = k;
        /* Class k puts its square at one of 8 positions around the border. */
        long y0 = (k < 3) ? 0 : (k < 5) ? side / 2 - sq / 2 : side - sq;
        long x0 = (k == 0 || k == 3 || k == 5) ? 0 : (k == 1 || k == 6) ? side / 2 - sq / 2 : side - sq;
        for (long y = 0; y < side; y++)
            for (long x = 0; x < side; x++)
                for (long c = 0; c < ch; c++) {
                    int in = y >= y0 && y < y0 + sq && x >= x0 && x < x0 + sq;
                    images[((i * side + y) * side + x) * ch + c] =
                        (uint8_t)(in ? 180 + rng_below(&r, 76) : rng_below(&r, 90));
                }
    }
    const char *names[8] = {"nw", "n", "ne", "w", "e", "sw", "s", "se"};
    struct error err = {0};
    int rc = dataset_write(argv[1], images, labels, n, (int)side, (int)side, (int)ch, names, (int)classes, &err);
    if (rc)
        fprintf(stderr, "make_dataset: %s\n", err.msg);
    free(images);
    free(labels);
    return rc;
}

/* bench_decode.c: `bench_decode DIR CHANNELS H W THREADS ROUNDS`: images/s of decoding (and resizing to H x W,
 * 0 0 to keep the size) every .png/.jpg under DIR, from memory (the files are read first), on THREADS threads:
 * the decoding share of `import images`, without the file reads and the HDF5 writes. Best of ROUNDS. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "image.h"
#include "image_index.h"

struct blob {
    uint8_t *data;
    size_t len;
};

static struct blob slurp(const char *path)
{
    struct blob b = {0};
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) || (long)(b.len = (size_t)ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
        !(b.data = malloc(b.len + 1)) || fread(b.data, 1, b.len, f) != b.len) {
        fprintf(stderr, "bench_decode: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench_decode DIR CHANNELS H W THREADS ROUNDS\n");
        return 2;
    }
    int c = atoi(argv[2]), h = atoi(argv[3]), w = atoi(argv[4]), threads = atoi(argv[5]), rounds = atoi(argv[6]);
    char **paths;
    int64_t n;
    struct error err;
    if (image_list_folder(argv[1], &paths, &n, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    struct blob *files = malloc(sizeof *files * n);
    for (int64_t i = 0; i < n; i++)
        files[i] = slurp(paths[i]);
    double best = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = omp_get_wtime();
        int bad = 0;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) reduction(+ : bad)
        for (int64_t i = 0; i < n; i++) {
            struct image im;
            struct error e;
            if (image_decode(files[i].data, files[i].len, paths[i], c, IMAGE_MAX_BYTES, &im, &e)) {
                bad++;
                continue;
            }
            if (h > 0) {
                uint8_t *out = malloc((size_t)h * w * c);
                float *scratch = malloc(sizeof *scratch * h * w * c);
                image_resize(im.pixels, im.w, 0, 0, im.h, im.w, c, h, w, IMAGE_BILINEAR, scratch, out);
                free(out);
                free(scratch);
            }
            image_release(&im);
        }
        double rate = (double)n / (omp_get_wtime() - t0);
        if (bad) {
            fprintf(stderr, "bench_decode: %d files did not decode\n", bad);
            return 1;
        }
        best = rate > best ? rate : best;
    }
    printf("%.0f\n", best);
    return 0;
}

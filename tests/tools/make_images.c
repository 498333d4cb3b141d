/* make_images.c: `make_images DIR N CLASSES H W png|jpg CHANNELS` writes DIR/cK/NNNNN.EXT, N images in
 * CLASSES class folders (smooth gradients and a square per class), with libpng's and libjpeg's encoders: test
 * and benchmark input for `import images`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "image.h"

static int write_jpeg(const char *path, const uint8_t *px, int h, int w, int c)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: make_images DIR N CLASSES H W png|jpg CHANNELS\n");
        return 2;
    }
    const char *dir = argv[1], *ext = argv[6];
    long n = atol(argv[2]), classes = atol(argv[3]), h = atol(argv[4]), w = atol(argv[5]), c = atol(argv[7]);
    int jpeg = strcmp(ext, "jpg") == 0;
    if (n < 1 || classes < 1 || h < 1 || w < 1 || (c != 1 && c != 3) || (!jpeg && strcmp(ext, "png") != 0))
        return 2;
    uint8_t *px = malloc((size_t)h * w * c);
    char path[4096];
    struct error err;
    mkdir(dir, 0777);
    for (long k = 0; k < classes; k++) {
        snprintf(path, sizeof path, "%s/c%ld", dir, k);
        mkdir(path, 0777);
    }
    for (long i = 0; i < n; i++) {
        long k = i % classes;
        for (long y = 0; y < h; y++)
            for (long x = 0; x < w; x++)
                for (long ch = 0; ch < c; ch++) {
                    int in_square = y / (h / 4 + 1) == k % 4 && x / (w / 4 + 1) == (k / 4) % 4;
                    px[(y * w + x) * c + ch] = (uint8_t)(in_square ? 250 : (x * 3 + y * 2 + i * 7 + ch * 40) % 160);
                }
        snprintf(path, sizeof path, "%s/c%ld/%05ld.%s", dir, k, i, ext);
        if (jpeg ? write_jpeg(path, px, (int)h, (int)w, (int)c) : image_write_png(path, px, (int)h, (int)w, (int)c, &err)) {
            fprintf(stderr, "make_images: cannot write %s\n", path);
            return 1;
        }
    }
    free(px);
    return 0;
}

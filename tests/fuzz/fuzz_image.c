/* fuzz_image.c: the image decoding path of `import images` and `predict` (datasets/image_decode.c, libpng and
 * libjpeg underneath) on any bytes, in each color mode, and the resizes of what decodes. */
#include <stdlib.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A 40-byte header may declare gigapixels, which the decoder accepts up to IMAGE_MAX_BYTES for a real file:
 * kept small here so that the fuzzer spends its time on the decoding, not on allocations. */
#define MAX_FUZZ_BYTES ((int64_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int modes[3] = {1, 3, 4};
    static const enum image_interpolation hows[3] = {IMAGE_BILINEAR, IMAGE_NEAREST, IMAGE_AREA};
    uint8_t out[7 * 5 * 4];
    float scratch[7 * 5 * 4];

    for (int m = 0; m < 3; m++) {
        struct image im;
        struct error err;
        if (image_decode(data, size, "fuzz", modes[m], MAX_FUZZ_BYTES, &im, &err) != ERR_OK)
            continue;
        int y0, x0, ch, cw;
        image_crop_box(im.h, im.w, 7, 5, &y0, &x0, &ch, &cw);
        image_resize(im.pixels, im.w, y0, x0, ch, cw, im.c, 7, 5, hows[m], scratch, out);
        image_resize(im.pixels, im.w, 0, 0, im.h, im.w, im.c, 7, 5, hows[(m + 1) % 3], scratch, out);
        image_release(&im);
    }
    return 0;
}

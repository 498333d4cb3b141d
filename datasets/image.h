/* image.h: PNG and JPEG files decoded to 8-bit grayscale, RGB or RGBA as TensorFlow's decode_image gives
 * them to Keras, resized as tf.image.resize does, and PNG files written (for `export images`). */
#ifndef TRAINER_IMAGE_H
#define TRAINER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* A decoded image larger than this (bytes) is refused: a 30-byte header can declare gigapixels. */
#define IMAGE_MAX_BYTES ((int64_t)1 << 30)

enum image_format { IMAGE_UNKNOWN, IMAGE_PNG, IMAGE_JPEG };

enum image_interpolation { IMAGE_BILINEAR, IMAGE_NEAREST, IMAGE_AREA };

struct image {
    int h, w, c;
    uint8_t *pixels; /* (h, w, c) malloc'd */
};

/* The format from the first bytes (the content decides, not the file's extension, as decode_image). */
enum image_format image_sniff(const uint8_t *data, size_t len);

/* Decodes a PNG or JPEG held in memory to `channels` (1 gray, 3 RGB, 4 RGBA) 8-bit channels, with
 * TensorFlow's conversions: 16-bit samples keep their high byte, palettes and 1/2/4-bit grays are expanded,
 * tRNS becomes alpha, alpha is dropped (not composited) when not wanted and added opaque when wanted,
 * RGB to gray is libpng's 0.299/0.587/0.114; JPEG through libjpeg's own color conversion (CMYK/YCCK: see
 * image_decode.c). A JPEG with channels 4 is refused, as decode_image refuses it. `name` names the file in
 * messages. ERR_INPUT "NAME: what is wrong" (not an image, truncated or corrupt, larger than max_bytes).
 * On failure im holds nothing. */
int image_decode(const uint8_t *data, size_t len, const char *name, int channels, int64_t max_bytes,
                 struct image *im, struct error *err);

/* Reads a whole file and decodes it. ERR_INPUT for a missing file, a directory, a symlink loop or bad
 * content; ERR_IO when the file exists but cannot be read. */
int image_read_file(const char *path, int channels, struct image *im, struct error *err);

void image_release(struct image *im);

/* Keras's crop_to_aspect_ratio (smart_resize): the centred window of (h, w) with the aspect ratio of
 * (out_h, out_w), as the largest such window that fits: *y0, *x0 its corner, *ch, *cw its size. */
void image_crop_box(int h, int w, int out_h, int out_w, int *y0, int *x0, int *ch, int *cw);

/* tf.image.resize of the window (y0, x0, ch, cw) of src (h, w, c) to out (out_h, out_w, c), in float32 as
 * TensorFlow computes it: bilinear with half-pixel centres and no antialiasing, nearest with half-pixel
 * centres, area as ResizeArea. `stride` is src's row length in pixels (its full w). */
void image_resize_float(const uint8_t *src, int stride, int y0, int x0, int ch, int cw, int c, int out_h,
                        int out_w, enum image_interpolation how, float *out);

/* image_resize_float rounded to the nearest integer and clamped to [0, 255] (Keras keeps the floats; the
 * dataset stores uint8). `scratch` holds out_h * out_w * c floats. A window the size of the output is
 * copied as is (the resize is then the identity). */
void image_resize(const uint8_t *src, int stride, int y0, int x0, int ch, int cw, int c, int out_h, int out_w,
                  enum image_interpolation how, float *scratch, uint8_t *out);

/* Writes pixels (h, w, c) (c = 1, 3, 4) as an 8-bit PNG to path (created or truncated). ERR_IO naming the
 * file when it cannot be written. */
int image_write_png(const char *path, const uint8_t *pixels, int h, int w, int c, struct error *err);

#endif

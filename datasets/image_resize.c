/* image_resize.c: tf.image.resize (bilinear, nearest, area) and Keras's crop_to_aspect_ratio window, in
 * float32 as TensorFlow computes them; and 8-bit PNG files written with libpng. */
#include "image.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

/* smart_resize: the window is computed in float32 and truncated, as Keras's ops.cast does. */
void image_crop_box(int h, int w, int out_h, int out_w, int *y0, int *x0, int *ch, int *cw)
{
    int crop_h = (int)((float)((int64_t)w * out_h) / (float)out_w);
    int crop_w = (int)((float)((int64_t)h * out_w) / (float)out_h);

    crop_h = crop_h < h ? crop_h : h;
    crop_w = crop_w < w ? crop_w : w;
    *ch = crop_h > 1 ? crop_h : 1;
    *cw = crop_w > 1 ? crop_w : 1;
    *y0 = (int)((float)(h - *ch) / 2);
    *x0 = (int)((float)(w - *cw) / 2);
}

/* ---- bilinear: ResizeBilinear with half_pixel_centers --------------------------------------------------- */

struct lerp_at {
    int lower, upper;
    float lerp;
};

static void bilinear_weights(int in, int out, struct lerp_at *at)
{
    float scale = (float)in / (float)out;

    for (int i = 0; i < out; i++) {
        float pos = ((float)i + 0.5f) * scale - 0.5f, below = floorf(pos);
        at[i].lower = below > 0 ? (int)below : 0;
        at[i].upper = (int)ceilf(pos) < in - 1 ? (int)ceilf(pos) : in - 1;
        at[i].lerp = pos - below;
    }
}

static void resize_bilinear(const uint8_t *src, int stride, int c, int in_h, int in_w, int out_h, int out_w,
                            float *out)
{
    struct lerp_at *ys = malloc(sizeof *ys * out_h), *xs = malloc(sizeof *xs * out_w);

    if (!ys || !xs)
        abort(); /* a few KB: not worth an error path */
    bilinear_weights(in_h, out_h, ys);
    bilinear_weights(in_w, out_w, xs);
    for (int y = 0; y < out_h; y++) {
        const uint8_t *top = src + (size_t)ys[y].lower * stride * c, *bottom = src + (size_t)ys[y].upper * stride * c;
        for (int x = 0; x < out_w; x++)
            for (int k = 0; k < c; k++) {
                float tl = top[xs[x].lower * c + k], tr = top[xs[x].upper * c + k];
                float bl = bottom[xs[x].lower * c + k], br = bottom[xs[x].upper * c + k];
                float t = tl + (tr - tl) * xs[x].lerp, b = bl + (br - bl) * xs[x].lerp;
                out[((size_t)y * out_w + x) * c + k] = t + (b - t) * ys[y].lerp;
            }
    }
    free(ys);
    free(xs);
}

/* ---- nearest: ResizeNearestNeighbor with half_pixel_centers --------------------------------------------- */

static int nearest_index(int i, int in, int out)
{
    float scale = (float)in / (float)out;
    int at = (int)floorf(((float)i + 0.5f) * scale);

    at = at < in - 1 ? at : in - 1;
    return at > 0 ? at : 0;
}

static void resize_nearest(const uint8_t *src, int stride, int c, int in_h, int in_w, int out_h, int out_w,
                           float *out)
{
    for (int y = 0; y < out_h; y++) {
        const uint8_t *row = src + (size_t)nearest_index(y, in_h, out_h) * stride * c;
        for (int x = 0; x < out_w; x++) {
            const uint8_t *p = row + (size_t)nearest_index(x, in_w, out_w) * c;
            for (int k = 0; k < c; k++)
                out[((size_t)y * out_w + x) * c + k] = p[k];
        }
    }
}

/* ---- area: ResizeArea ----------------------------------------------------------------------------------- */

/* The input cells [start, end) under output cell i, and the share of the first and last one. */
struct area_span {
    int start, end;
    float first, last;
};

/* How much of input cell v lies in [lo, hi) (TensorFlow's formula, in float32). */
static float area_share(int64_t v, float lo, float hi, float scale)
{
    if ((float)v < lo)
        return (float)(v + 1) > hi ? scale : (float)(v + 1) - lo;
    return (float)(v + 1) > hi ? hi - (float)v : 1.0f;
}

static void area_spans(int in, int out, struct area_span *sp)
{
    float scale = (float)in / (float)out;

    for (int i = 0; i < out; i++) {
        float lo = (float)i * scale, hi = (float)(i + 1) * scale;
        sp[i].start = (int)floorf(lo);
        sp[i].end = (int)ceilf(hi);
        sp[i].first = area_share(sp[i].start, lo, hi, scale);
        sp[i].last = area_share(sp[i].end - 1, lo, hi, scale);
    }
}

static int bound(int i, int n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* One input row's weighted sum over an output column's span (first, middle cells at weight 1, last). */
static float area_row_sum(const uint8_t *row, int c, int k, int in_w, const struct area_span *sx)
{
    float sum = (float)row[bound(sx->start, in_w) * c + k] * sx->first;

    if (sx->start + 1 != sx->end) {
        for (int x = sx->start + 1; x < sx->end - 1; x++)
            sum += (float)row[bound(x, in_w) * c + k];
        sum += (float)row[bound(sx->end - 1, in_w) * c + k] * sx->last;
    }
    return sum;
}

static void resize_area(const uint8_t *src, int stride, int c, int in_h, int in_w, int out_h, int out_w,
                        float *out)
{
    struct area_span *xs = malloc(sizeof *xs * out_w);
    float sy = (float)in_h / (float)out_h, sx = (float)in_w / (float)out_w, norm = 1.0f / (sy * sx);

    if (!xs)
        abort();
    area_spans(in_w, out_w, xs);
    for (int y = 0; y < out_h; y++) {
        float lo = (float)y * sy, hi = (float)(y + 1) * sy;
        int y_start = (int)floorf(lo), y_end = (int)ceilf(hi);
        for (int x = 0; x < out_w; x++)
            for (int k = 0; k < c; k++) {
                float sum = 0;
                for (int i = y_start; i < y_end; i++) {
                    const uint8_t *row = src + (size_t)bound(i, in_h) * stride * c;
                    sum += area_row_sum(row, c, k, in_w, &xs[x]) * area_share(i, lo, hi, sy);
                }
                out[((size_t)y * out_w + x) * c + k] = sum * norm;
            }
    }
    free(xs);
}

void image_resize_float(const uint8_t *src, int stride, int y0, int x0, int ch, int cw, int c, int out_h,
                        int out_w, enum image_interpolation how, float *out)
{
    const uint8_t *win = src + ((size_t)y0 * stride + x0) * c;

    switch (how) {
    case IMAGE_NEAREST: resize_nearest(win, stride, c, ch, cw, out_h, out_w, out); break;
    case IMAGE_AREA: resize_area(win, stride, c, ch, cw, out_h, out_w, out); break;
    default: resize_bilinear(win, stride, c, ch, cw, out_h, out_w, out); break;
    }
}

void image_resize(const uint8_t *src, int stride, int y0, int x0, int ch, int cw, int c, int out_h, int out_w,
                  enum image_interpolation how, float *scratch, uint8_t *out)
{
    size_t n = (size_t)out_h * out_w * c;

    if (ch == out_h && cw == out_w) {
        for (int y = 0; y < out_h; y++)
            memcpy(out + (size_t)y * out_w * c, src + ((size_t)(y0 + y) * stride + x0) * c, (size_t)out_w * c);
        return;
    }
    image_resize_float(src, stride, y0, x0, ch, cw, c, out_h, out_w, how, scratch);
    for (size_t i = 0; i < n; i++) {
        float v = floorf(scratch[i] + 0.5f);
        out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/* ---- PNG writing ---------------------------------------------------------------------------------------- */

static void png_write_failed(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

int image_write_png(const char *path, const uint8_t *pixels, int h, int w, int c, struct error *err)
{
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    FILE *volatile f = fopen(path, "wb");
    png_structp png = NULL;
    png_infop info = NULL;
    int rc = ERR_OK;

    if (c < 1 || c > 4)
        return error_set(err, ERR_INPUT, "%s: %d channels cannot be a PNG", path, c);
    if (!f)
        return error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_write_failed, NULL);
    if (png)
        info = png_create_info_struct(png);
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        rc = error_set(err, ERR_IO, "%s: cannot write: %s", path, errno ? strerror(errno) : "libpng failed");
        goto done;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[c], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, pixels + (size_t)y * w * c);
    png_write_end(png, NULL);
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    if (fclose(f) != 0 && rc == ERR_OK)
        rc = error_set(err, ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return rc;
}

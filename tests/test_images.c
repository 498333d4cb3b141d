/* test_images.c: PNG decoding pixel for pixel against images written here with libpng's encoder, JPEG against
 * libjpeg's own output, tf.image.resize against naive double-precision references, and bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>

#include "image.h"

/* ---- encoders (the libraries' own) ---------------------------------------------------------------------- */

struct mem {
    uint8_t *data;
    size_t len, cap;
};

static void mem_write(png_structp png, png_bytep p, png_size_t n)
{
    struct mem *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->data = realloc(m->data, m->cap);
        assert_non_null(m->data);
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
}

static void mem_flush(png_structp png) { (void)png; }

/* A PNG of the given type and depth from rows of raw samples (big-endian for 16 bits, packed below 8). */
struct png_spec {
    int w, h, type, depth, interlace;
    const png_color *palette;
    int n_palette;
    const uint8_t *trns; /* palette alpha, n_palette entries */
};

static struct mem encode_png(const struct png_spec *s, const uint8_t *raw, size_t row_bytes)
{
    struct mem m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_int_equal(setjmp(png_jmpbuf(png)), 0);
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, s->w, s->h, s->depth, s->type, s->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette)
        png_set_PLTE(png, info, s->palette, s->n_palette);
    if (s->trns)
        png_set_tRNS(png, info, s->trns, s->n_palette, NULL);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < s->h; y++)
            png_write_row(png, raw + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return m;
}

static uint8_t val(int x, int y, int k) { return (uint8_t)(x * 37 + y * 11 + k * 71 + (x * y) % 13); }

static void decode_ok(const struct mem *m, int channels, struct image *im)
{
    struct error err = {0};
    int rc = image_decode(m->data, m->len, "t.png", channels, IMAGE_MAX_BYTES, im, &err);
    if (rc)
        fail_msg("decode: %s", err.msg);
}

/* 8-bit RGB, RGBA, gray, gray+alpha, interlaced or not, read in every color mode. */
static void test_png_8bit(void **state)
{
    (void)state;
    static const int types[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
    static const int chans[] = {1, 2, 3, 4};
    for (int t = 0; t < 4; t++)
        for (int interlace = 0; interlace < 2; interlace++) {
            int w = 13, h = 7, c = chans[t];
            uint8_t *raw = malloc((size_t)w * h * c);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int k = 0; k < c; k++)
                        raw[(y * w + x) * c + k] = val(x, y, k);
            struct png_spec s = {w, h, types[t], 8, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                                 NULL, 0, NULL};
            struct mem m = encode_png(&s, raw, (size_t)w * c);
            int color = c >= 3, alpha = c % 2 == 0;
            for (int want = 1; want <= 4; want++) {
                if (want == 2)
                    continue;
                struct image im;
                decode_ok(&m, want, &im);
                assert_int_equal(im.h, h);
                assert_int_equal(im.w, w);
                assert_int_equal(im.c, want);
                for (int i = 0; i < w * h; i++) {
                    const uint8_t *src = raw + (size_t)i * c, *got = im.pixels + (size_t)i * want;
                    uint8_t r = src[0], g = color ? src[1] : src[0], b = color ? src[2] : src[0];
                    if (want == 1 && color) {
                        /* libpng's weights 0.299 / 0.587 / 0.114, in fixed point: within one level. */
                        double ref = 0.299 * r + 0.587 * g + 0.114 * b;
                        assert_true(fabs(got[0] - ref) <= 1.0);
                    } else if (want == 1) {
                        assert_int_equal(got[0], r);
                    } else {
                        assert_int_equal(got[0], r);
                        assert_int_equal(got[1], g);
                        assert_int_equal(got[2], b);
                    }
                    if (want == 4)
                        assert_int_equal(got[3], alpha ? src[c - 1] : 255); /* kept, or added opaque */
                }
                image_release(&im);
            }
            free(m.data);
            free(raw);
        }
}

/* 16-bit samples keep their high byte (TensorFlow's png_set_strip_16), gray and RGB. */
static void test_png_16bit(void **state)
{
    (void)state;
    for (int color = 0; color < 2; color++) {
        int w = 9, h = 5, c = color ? 3 : 1;
        uint8_t *raw = malloc((size_t)w * h * c * 2);
        for (int i = 0; i < w * h * c; i++) {
            raw[2 * i] = (uint8_t)(i * 7);        /* high */
            raw[2 * i + 1] = (uint8_t)(255 - i);  /* low: must not round the high byte up */
        }
        struct png_spec s = {w, h, color ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, 16, 0, NULL, 0, NULL};
        struct mem m = encode_png(&s, raw, (size_t)w * c * 2);
        struct image im;
        decode_ok(&m, c, &im);
        for (int i = 0; i < w * h * c; i++)
            assert_int_equal(im.pixels[i], raw[2 * i]);
        image_release(&im);
        free(m.data);
        free(raw);
    }
}

/* A palette (with and without tRNS) becomes RGB(A); 1-, 2- and 4-bit grays are scaled to 8 bits. */
static void test_png_palette_and_low_bits(void **state)
{
    (void)state;
    png_color pal[4] = {{10, 20, 30}, {200, 100, 50}, {0, 255, 0}, {255, 255, 255}};
    uint8_t trns[4] = {0, 128, 255, 64};
    int w = 11, h = 3;
    uint8_t raw[3 * 3]; /* 2-bit indices, 11 per row -> 3 bytes a row */
    for (int y = 0; y < h; y++)
        for (int b = 0; b < 3; b++)
            raw[y * 3 + b] = (uint8_t)(0x1b + 0x24 * y + b * 0x55);
    for (int with_trns = 0; with_trns < 2; with_trns++) {
        struct png_spec s = {w, h, PNG_COLOR_TYPE_PALETTE, 2, 0, pal, 4, with_trns ? trns : NULL};
        struct mem m = encode_png(&s, raw, 3);
        struct image im;
        decode_ok(&m, 4, &im);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int idx = raw[y * 3 + x / 4] >> (6 - 2 * (x % 4)) & 3;
                const uint8_t *p = im.pixels + (size_t)(y * w + x) * 4;
                assert_int_equal(p[0], pal[idx].red);
                assert_int_equal(p[1], pal[idx].green);
                assert_int_equal(p[2], pal[idx].blue);
                assert_int_equal(p[3], with_trns ? trns[idx] : 255);
            }
        image_release(&im);
        free(m.data);
    }
    for (int depth = 1; depth <= 4; depth *= 2) {
        uint8_t bits[2 * 4];
        int levels = (1 << depth) - 1;
        for (int i = 0; i < 8; i++)
            bits[i] = (uint8_t)(0x93 + 0x3d * i);
        struct png_spec s = {7, 2, PNG_COLOR_TYPE_GRAY, depth, 0, NULL, 0, NULL};
        struct mem m = encode_png(&s, bits, 4);
        struct image im;
        decode_ok(&m, 3, &im);
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 7; x++) {
                int per = 8 / depth, v = bits[y * 4 + x / per] >> (8 - depth * (x % per + 1)) & levels;
                for (int k = 0; k < 3; k++)
                    assert_int_equal(im.pixels[(y * 7 + x) * 3 + k], v * 255 / levels);
            }
        image_release(&im);
        free(m.data);
    }
}

/* ---- JPEG ----------------------------------------------------------------------------------------------- */

static struct mem encode_jpeg(int w, int h, int comps, J_COLOR_SPACE space, int progressive)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long len = 0;
    uint8_t *row = malloc((size_t)w * comps);
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &out, &len);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = comps;
    ci.in_color_space = space;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    if (progressive)
        jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++)
            for (int k = 0; k < comps; k++)
                row[x * comps + k] = val(x, y, k);
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(row);
    return (struct mem){out, len, len};
}

/* What libjpeg itself gives in out_space (the reference). */
static uint8_t *libjpeg_decode(const struct mem *m, J_COLOR_SPACE out_space, int *comps)
{
    struct jpeg_decompress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, m->data, m->len);
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = out_space;
    jpeg_start_decompress(&ci);
    *comps = ci.output_components;
    uint8_t *px = malloc((size_t)ci.output_width * ci.output_height * *comps);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW r = px + (size_t)ci.output_scanline * ci.output_width * *comps;
        jpeg_read_scanlines(&ci, &r, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    return px;
}

static void test_jpeg_matches_libjpeg(void **state)
{
    (void)state;
    struct {
        int comps;
        J_COLOR_SPACE space;
        int progressive;
    } cases[] = {{3, JCS_RGB, 0}, {3, JCS_RGB, 1}, {1, JCS_GRAYSCALE, 0}, {1, JCS_GRAYSCALE, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        struct mem m = encode_jpeg(19, 11, cases[t].comps, cases[t].space, cases[t].progressive);
        for (int want = 1; want <= 3; want += 2) {
            int comps;
            uint8_t *ref = libjpeg_decode(&m, want == 1 ? JCS_GRAYSCALE : JCS_RGB, &comps);
            struct image im;
            struct error err;
            assert_int_equal(image_decode(m.data, m.len, "t.jpg", want, IMAGE_MAX_BYTES, &im, &err), 0);
            assert_int_equal(comps, want);
            assert_int_equal(im.w, 19);
            assert_int_equal(im.h, 11);
            assert_memory_equal(im.pixels, ref, (size_t)19 * 11 * want);
            image_release(&im);
            free(ref);
        }
        struct image im;
        struct error err;
        assert_int_equal(image_decode(m.data, m.len, "t.jpg", 4, IMAGE_MAX_BYTES, &im, &err), ERR_INPUT);
        assert_non_null(strstr(err.msg, "t.jpg: a JPEG has no alpha"));
        free(m.data);
    }
}

/* CMYK (stored as Adobe's inverted ink): R = C * K / 255 of libjpeg's CMYK output. */
static void test_jpeg_cmyk(void **state)
{
    (void)state;
    struct mem m = encode_jpeg(8, 6, 4, JCS_CMYK, 0);
    int comps;
    uint8_t *ref = libjpeg_decode(&m, JCS_CMYK, &comps);
    struct image im;
    struct error err;
    assert_int_equal(comps, 4);
    assert_int_equal(image_decode(m.data, m.len, "c.jpg", 3, IMAGE_MAX_BYTES, &im, &err), 0);
    for (int i = 0; i < 8 * 6; i++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(im.pixels[i * 3 + k], (int)lround(ref[i * 4 + k] * ref[i * 4 + 3] / 255.0));
    image_release(&im);
    free(ref);
    free(m.data);
}

/* ---- bad files ------------------------------------------------------------------------------------------ */

static void expect_bad(const uint8_t *data, size_t len, const char *name, const char *what)
{
    struct image im;
    struct error err = {0};
    assert_int_equal(image_decode(data, len, name, 3, IMAGE_MAX_BYTES, &im, &err), ERR_INPUT);
    assert_null(im.pixels);
    assert_int_equal(strncmp(err.msg, name, strlen(name)), 0);
    if (!strstr(err.msg, what))
        fail_msg("'%s' does not say '%s'", err.msg, what);
    assert_null(strchr(err.msg, '\n'));
}

static void test_bad_files(void **state)
{
    (void)state;
    uint8_t raw[16 * 16 * 3];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 31);
    struct png_spec s = {16, 16, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL};
    struct mem png = encode_png(&s, raw, 48), jpg = encode_jpeg(32, 32, 3, JCS_RGB, 0);
    struct mem prog = encode_jpeg(32, 32, 3, JCS_RGB, 1);

    for (size_t cut = 8; cut < png.len; cut += png.len / 7)
        expect_bad(png.data, cut, "cut.png", "truncated or corrupt PNG");
    expect_bad(jpg.data, jpg.len / 2, "cut.jpg", "truncated");
    expect_bad(prog.data, prog.len / 2, "prog.jpg", "truncated");
    expect_bad(jpg.data, 3, "head.jpg", "JPEG");
    png.data[40] ^= 0x55; /* inside IHDR/IDAT: a CRC error */
    expect_bad(png.data, png.len, "crc.png", "corrupt PNG");
    expect_bad((const uint8_t *)"GIF89a......", 12, "a.png", "not a PNG or JPEG image");
    expect_bad((const uint8_t *)"", 0, "empty.png", "empty file");

    struct image im;
    struct error err;
    assert_int_equal(image_read_file("/nonexistent/x.png", 3, &im, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "/nonexistent/x.png: cannot open"));
    assert_int_equal(image_read_file("/tmp", 3, &im, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "not a regular file"));
    free(png.data);
    free(jpg.data);
    free(prog.data);
}

/* ---- resizing ------------------------------------------------------------------------------------------- */

/* TensorFlow's half-pixel bilinear, written from its definition in double precision. */
static double ref_bilinear(const uint8_t *src, int in_h, int in_w, int c, int out_h, int out_w, int y, int x, int k)
{
    double fy = (y + 0.5) * in_h / out_h - 0.5, fx = (x + 0.5) * in_w / out_w - 0.5;
    int y0 = (int)floor(fy), x0 = (int)floor(fx);
    double ly = fy - y0, lx = fx - x0;
    int ya = y0 < 0 ? 0 : y0, yb = (int)ceil(fy) > in_h - 1 ? in_h - 1 : (int)ceil(fy);
    int xa = x0 < 0 ? 0 : x0, xb = (int)ceil(fx) > in_w - 1 ? in_w - 1 : (int)ceil(fx);
#define P(yy, xx) ((double)src[((size_t)(yy) * in_w + (xx)) * c + k])
    double top = P(ya, xa) + (P(ya, xb) - P(ya, xa)) * lx, bot = P(yb, xa) + (P(yb, xb) - P(yb, xa)) * lx;
#undef P
    return top + (bot - top) * ly;
}

static double ref_nearest(const uint8_t *src, int in_h, int in_w, int c, int out_h, int out_w, int y, int x, int k)
{
    int sy = (int)floor((y + 0.5) * in_h / out_h), sx = (int)floor((x + 0.5) * in_w / out_w);
    sy = sy > in_h - 1 ? in_h - 1 : sy;
    sx = sx > in_w - 1 ? in_w - 1 : sx;
    return src[((size_t)sy * in_w + sx) * c + k];
}

/* Area: the mean of the input, taken as constant cells, over the output cell's box (exact integral). */
static double overlap(double a0, double a1, double b0, double b1)
{
    double lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

static double ref_area(const uint8_t *src, int in_h, int in_w, int c, int out_h, int out_w, int y, int x, int k)
{
    double sy = (double)in_h / out_h, sx = (double)in_w / out_w, sum = 0;
    for (int i = 0; i < in_h; i++)
        for (int j = 0; j < in_w; j++)
            sum += src[((size_t)i * in_w + j) * c + k] * overlap(i, i + 1, y * sy, (y + 1) * sy) *
                   overlap(j, j + 1, x * sx, (x + 1) * sx);
    return sum / (sy * sx);
}

typedef double (*ref_fn)(const uint8_t *, int, int, int, int, int, int, int, int);

/* Resizes a window of a random image and compares with the reference: the floats within 2e-3, the bytes
 * equal to the rounded reference where it is not within 1e-2 of a half. */
static void check_resize(enum image_interpolation how, ref_fn ref, int h, int w, int c, int out_h, int out_w,
                         int crop)
{
    uint8_t *src = malloc((size_t)h * w * c), *win, *out = malloc((size_t)out_h * out_w * c);
    float *got = malloc(sizeof *got * out_h * out_w * c), *scratch = malloc(sizeof *scratch * out_h * out_w * c);
    int y0 = 0, x0 = 0, ch = h, cw = w;
    srand(h * 1000 + w * 10 + c + crop);
    for (int i = 0; i < h * w * c; i++)
        src[i] = (uint8_t)(rand() & 255);
    if (crop)
        image_crop_box(h, w, out_h, out_w, &y0, &x0, &ch, &cw);
    /* The window as an image of its own, for the reference. */
    win = malloc((size_t)ch * cw * c);
    for (int y = 0; y < ch; y++)
        memcpy(win + (size_t)y * cw * c, src + ((size_t)(y0 + y) * w + x0) * c, (size_t)cw * c);
    image_resize_float(src, w, y0, x0, ch, cw, c, out_h, out_w, how, got);
    image_resize(src, w, y0, x0, ch, cw, c, out_h, out_w, how, scratch, out);
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < out_w; x++)
            for (int k = 0; k < c; k++) {
                size_t i = ((size_t)y * out_w + x) * c + k;
                double r = ref(win, ch, cw, c, out_h, out_w, y, x, k);
                if (fabs(got[i] - r) > 2e-3)
                    fail_msg("%dx%d -> %dx%d (%d): (%d,%d,%d) %.6f, reference %.6f", h, w, out_h, out_w, how, y, x, k,
                             got[i], r);
                if (fabs(r - floor(r) - 0.5) > 1e-2)
                    assert_int_equal(out[i], (int)floor(r + 0.5));
            }
    free(src);
    free(win);
    free(out);
    free(got);
    free(scratch);
}

static void test_resize(void **state)
{
    (void)state;
    static const int sizes[][4] = {{28, 28, 64, 64}, {7, 5, 3, 4}, {5, 3, 11, 8}, {9, 13, 9, 13}, {1, 1, 3, 2},
                                   {17, 1, 4, 3}, {31, 29, 7, 7}, {6, 10, 6, 5}, {3, 3, 1, 1}};
    static const ref_fn refs[] = {ref_bilinear, ref_nearest, ref_area};
    static const enum image_interpolation hows[] = {IMAGE_BILINEAR, IMAGE_NEAREST, IMAGE_AREA};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int m = 0; m < 3; m++)
            for (int c = 1; c <= 4; c += 2)
                for (int crop = 0; crop < 2; crop++)
                    check_resize(hows[m], refs[m], sizes[s][0], sizes[s][1], c, sizes[s][2], sizes[s][3], crop);
}

/* Keras's smart_resize window: the largest centred box with the target's aspect ratio. */
static void test_crop_box(void **state)
{
    (void)state;
    static const int cases[][4] = {{100, 60, 32, 32}, {60, 100, 32, 32}, {30, 40, 3, 4}, {31, 47, 64, 48},
                                   {1, 9, 5, 5}, {9, 1, 2, 7}, {256, 256, 64, 64}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int h = cases[i][0], w = cases[i][1], oh = cases[i][2], ow = cases[i][3], y0, x0, ch, cw;
        image_crop_box(h, w, oh, ow, &y0, &x0, &ch, &cw);
        int rh = (int)((double)w * oh / ow), rw = (int)((double)h * ow / oh);
        rh = rh < h ? rh : h;
        rw = rw < w ? rw : w;
        rh = rh > 1 ? rh : 1;
        rw = rw > 1 ? rw : 1;
        assert_int_equal(ch, rh);
        assert_int_equal(cw, rw);
        assert_int_equal(y0, (h - rh) / 2);
        assert_int_equal(x0, (w - rw) / 2);
    }
}

/* export writes PNGs that decode to the same bytes. */
static void test_png_write_roundtrip(void **state)
{
    (void)state;
    char path[] = "/tmp/test_images_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    for (int c = 1; c <= 4; c++) {
        if (c == 2)
            continue;
        uint8_t px[5 * 7 * 4];
        struct image im;
        struct error err;
        for (int i = 0; i < 5 * 7 * c; i++)
            px[i] = (uint8_t)(i * 53 + c);
        assert_int_equal(image_write_png(path, px, 5, 7, c, &err), 0);
        assert_int_equal(image_read_file(path, c, &im, &err), 0);
        assert_int_equal(im.h, 5);
        assert_int_equal(im.w, 7);
        assert_memory_equal(im.pixels, px, (size_t)5 * 7 * c);
        image_release(&im);
    }
    struct error err;
    assert_int_equal(image_write_png("/nonexistent/dir/x.png", (const uint8_t *)"", 1, 1, 1, &err), ERR_IO);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_8bit),          cmocka_unit_test(test_png_16bit),
        cmocka_unit_test(test_png_palette_and_low_bits), cmocka_unit_test(test_jpeg_matches_libjpeg),
        cmocka_unit_test(test_jpeg_cmyk),         cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_resize),            cmocka_unit_test(test_crop_box),
        cmocka_unit_test(test_png_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* image_decode.c: PNG (libpng) and JPEG (libjpeg-turbo) files decoded to 8-bit gray, RGB or RGBA with the
 * conversions TensorFlow's decode_image applies for Keras's image_dataset_from_directory. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

enum image_format image_sniff(const uint8_t *data, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

    if (len >= 8 && memcmp(data, png_sig, 8) == 0)
        return IMAGE_PNG;
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return IMAGE_JPEG;
    return IMAGE_UNKNOWN;
}

void image_release(struct image *im)
{
    free(im->pixels);
    *im = (struct image){0};
}

/* Allocates im for (h, w, c) once the header is known, refusing what max_bytes does not allow. */
static int image_alloc(struct image *im, const char *name, long h, long w, int c, int64_t max_bytes,
                       struct error *err)
{
    if (h <= 0 || w <= 0)
        return error_set(err, ERR_INPUT, "%s: corrupt image: size %ldx%ld", name, w, h);
    if ((int64_t)h * w * c > max_bytes)
        return error_set(err, ERR_INPUT, "%s: image too large (%ldx%ld, over %lld MB decoded)", name, w, h,
                         (long long)(max_bytes >> 20));
    im->pixels = malloc((size_t)h * w * c);
    if (!im->pixels)
        return error_set(err, ERR_INTERNAL, "%s: out of memory for a %ldx%ld image", name, w, h);
    im->h = (int)h;
    im->w = (int)w;
    im->c = c;
    return ERR_OK;
}

/* ---- PNG ------------------------------------------------------------------------------------------------ */

struct png_src {
    const uint8_t *data;
    size_t len, pos;
    char msg[200]; /* libpng's error message */
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    struct png_src *src = png_get_io_ptr(png);

    if (src->len - src->pos < n)
        png_error(png, "unexpected end of file");
    memcpy(out, src->data + src->pos, n);
    src->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_src *src = png_get_error_ptr(png);

    snprintf(src->msg, sizeof src->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* TensorFlow's CommonInitDecode transformations for an 8-bit output of `channels` channels. */
static void png_set_transforms(png_structp png, png_infop info, int channels)
{
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0, has_alpha = (type & PNG_COLOR_MASK_ALPHA) != 0;
    int is_gray = !(type & PNG_COLOR_MASK_COLOR);

    if (channels % 2 == 0) {
        if (!has_alpha && has_trns)
            png_set_tRNS_to_alpha(png);
        else if (!has_alpha)
            /* Opaque. TensorFlow passes (1 << depth) - 1, which libpng applies to the 8-bit output: a
             * 1-, 2- or 4-bit palette or gray PNG would get alpha 1, 3 or 15 (nearly transparent). */
            png_set_add_alpha(png, 0xffff, PNG_FILLER_AFTER);
    } else if (has_alpha || has_trns) {
        png_set_strip_alpha(png); /* dropped, not composited over a background */
    }
    if (depth > 8)
        png_set_strip_16(png); /* the high byte, as TensorFlow (not a rounded scale) */
    png_set_packing(png);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (is_gray && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (channels < 3 && !is_gray)
        png_set_rgb_to_gray(png, 1, 0.299, 0.587);
    else if (channels >= 3 && is_gray)
        png_set_gray_to_rgb(png);
}

/* The volatile state a longjmp must find intact. */
struct png_job {
    png_structp png;
    png_infop info;
    png_bytep *rows;
};

static int png_decode(const uint8_t *data, size_t len, const char *name, int channels, int64_t max_bytes,
                      struct image *im, struct error *err)
{
    struct png_src src = {data, len, 0, ""};
    volatile struct png_job job = {0};
    int rc = ERR_OK;

    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (job.png)
        job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory for the PNG decoder", name);
        goto done;
    }
    if (setjmp(png_jmpbuf(job.png))) {
        image_release(im);
        rc = error_set(err, ERR_INPUT, "%s: truncated or corrupt PNG (%s)", name, src.msg);
        goto done;
    }
    png_set_read_fn(job.png, &src, png_read_mem);
    png_read_info(job.png, job.info);
    png_set_transforms(job.png, job.info, channels);
    png_set_interlace_handling(job.png);
    png_read_update_info(job.png, job.info);
    if ((int)png_get_channels(job.png, job.info) != channels || png_get_bit_depth(job.png, job.info) != 8)
        png_error(job.png, "unexpected channel layout after conversion");
    if ((rc = image_alloc(im, name, (long)png_get_image_height(job.png, job.info),
                          (long)png_get_image_width(job.png, job.info), channels, max_bytes, err)))
        goto done;
    if (!(job.rows = malloc(sizeof *job.rows * im->h))) {
        image_release(im);
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", name);
        goto done;
    }
    for (int y = 0; y < im->h; y++)
        job.rows[y] = im->pixels + (size_t)y * im->w * channels;
    png_read_image(job.png, job.rows);
    png_read_end(job.png, NULL);
done:
    free(job.rows);
    if (job.png) {
        png_structp png = job.png;
        png_infop info = job.info;
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    }
    return rc;
}

/* ---- JPEG ----------------------------------------------------------------------------------------------- */

struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    int truncated; /* libjpeg warns (and pads with gray) where TensorFlow fails: the data ended early */
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    longjmp(((struct jpeg_fail *)cinfo->err)->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    struct jpeg_fail *f = (struct jpeg_fail *)cinfo->err;

    if (level < 0 && f->mgr.msg_code == JWRN_JPEG_EOF)
        f->truncated = 1;
}

/* Adobe's CMYK and YCCK JPEGs store inverted ink: libjpeg's CMYK output c, k give R = c * k / 255 (as
 * TensorFlow reads CMYK "in as RGB"); gray is then the 0.299/0.587/0.114 luma of that RGB. */
static void cmyk_row(const uint8_t *in, int w, int channels, uint8_t *out)
{
    for (int x = 0; x < w; x++, in += 4) {
        int k = in[3], r = (in[0] * k + 127) / 255, g = (in[1] * k + 127) / 255, b = (in[2] * k + 127) / 255;
        if (channels == 1) {
            out[x] = (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16);
        } else {
            out[3 * x] = (uint8_t)r;
            out[3 * x + 1] = (uint8_t)g;
            out[3 * x + 2] = (uint8_t)b;
        }
    }
}

struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_fail fail;
    uint8_t *row; /* one CMYK row */
};

static int jpeg_decode(const uint8_t *data, size_t len, const char *name, int channels, int64_t max_bytes,
                       struct image *im, struct error *err)
{
    struct jpeg_job *job = calloc(1, sizeof *job);
    int rc = ERR_OK, cmyk;

    if (channels == 4)
        return free(job), error_set(err, ERR_INPUT, "%s: a JPEG has no alpha channel (rgba reads PNG only, as "
                                    "TensorFlow's decode_image)", name);
    if (!job)
        return error_set(err, ERR_INTERNAL, "%s: out of memory for the JPEG decoder", name);
    job->cinfo.err = jpeg_std_error(&job->fail.mgr);
    job->fail.mgr.error_exit = jpeg_on_error;
    job->fail.mgr.emit_message = jpeg_on_message;
    if (setjmp(job->fail.jump)) {
        char msg[JMSG_LENGTH_MAX];
        job->fail.mgr.format_message((j_common_ptr)&job->cinfo, msg);
        image_release(im);
        rc = error_set(err, ERR_INPUT, "%s: truncated or corrupt JPEG (%s)", name, msg);
        goto done;
    }
    jpeg_create_decompress(&job->cinfo);
    /* Progressive files keep every coefficient: bounded, so a damaged header cannot ask for gigabytes. */
    job->cinfo.mem->max_memory_to_use = (long)(max_bytes < ((int64_t)1 << 30) ? max_bytes : (int64_t)1 << 30);
    jpeg_mem_src(&job->cinfo, data, (unsigned long)len);
    jpeg_read_header(&job->cinfo, TRUE);
    cmyk = job->cinfo.jpeg_color_space == JCS_CMYK || job->cinfo.jpeg_color_space == JCS_YCCK;
    job->cinfo.out_color_space = cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&job->cinfo);
    if ((rc = image_alloc(im, name, (long)job->cinfo.output_height, (long)job->cinfo.output_width, channels,
                          max_bytes, err)))
        goto done;
    if (cmyk && !(job->row = malloc((size_t)im->w * 4))) {
        image_release(im);
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", name);
        goto done;
    }
    while (job->cinfo.output_scanline < job->cinfo.output_height && !job->fail.truncated) {
        uint8_t *dst = im->pixels + (size_t)job->cinfo.output_scanline * im->w * channels;
        JSAMPROW row = cmyk ? job->row : dst;
        jpeg_read_scanlines(&job->cinfo, &row, 1);
        if (cmyk)
            cmyk_row(job->row, im->w, channels, dst);
    }
    if (!job->fail.truncated)
        jpeg_finish_decompress(&job->cinfo);
    if (job->fail.truncated) {
        image_release(im);
        rc = error_set(err, ERR_INPUT, "%s: truncated JPEG (the data ends before the image does)", name);
    }
done:
    jpeg_destroy_decompress(&job->cinfo);
    free(job->row);
    free(job);
    return rc;
}

/* ---- files ---------------------------------------------------------------------------------------------- */

int image_decode(const uint8_t *data, size_t len, const char *name, int channels, int64_t max_bytes,
                 struct image *im, struct error *err)
{
    *im = (struct image){0};
    switch (image_sniff(data, len)) {
    case IMAGE_PNG: return png_decode(data, len, name, channels, max_bytes, im, err);
    case IMAGE_JPEG: return jpeg_decode(data, len, name, channels, max_bytes, im, err);
    default: break;
    }
    if (len == 0)
        return error_set(err, ERR_INPUT, "%s: empty file, not an image", name);
    return error_set(err, ERR_INPUT, "%s: not a PNG or JPEG image", name);
}

/* The whole file into a malloc'd buffer. A file that is not regular (a directory, a pipe) is bad input. */
static int read_whole(const char *path, uint8_t **buf, size_t *len, struct error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    size_t got = 0;

    *buf = NULL;
    if (fd < 0)
        return error_set(err, errno == EACCES || errno == EIO ? ERR_IO : ERR_INPUT, "%s: cannot open: %s", path,
                         strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return error_set(err, ERR_INPUT, "%s: not a regular file", path);
    }
    if (st.st_size > IMAGE_MAX_BYTES) {
        close(fd);
        return error_set(err, ERR_INPUT, "%s: file too large for an image (%lld bytes)", path,
                         (long long)st.st_size);
    }
    *buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    while (*buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    int saved = errno;
    close(fd);
    if (!*buf)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    if (got < (size_t)st.st_size) {
        free(*buf);
        *buf = NULL;
        return error_set(err, ERR_IO, "%s: cannot read: %s", path, strerror(saved ? saved : EIO));
    }
    *len = got;
    return ERR_OK;
}

int image_read_file(const char *path, int channels, struct image *im, struct error *err)
{
    uint8_t *buf;
    size_t len = 0;
    int rc = read_whole(path, &buf, &len, err);

    *im = (struct image){0};
    if (rc)
        return rc;
    rc = image_decode(buf, len, path, channels, IMAGE_MAX_BYTES, im, err);
    free(buf);
    return rc;
}

/* random_crop.c: RandomCrop (Keras): in training each image larger than (height, width) in both directions
 * gives a crop of that size at row h0 = floor(D_0 / 2^32 * (H - height + 1) / 2^32) and column w0 likewise from
 * D_1 (augment.h, the draws' high 32 bits scaled to the range); any other image, and every image outside
 * training, goes through Keras's smart_resize to (height, width): the largest centred crop with that aspect
 * ratio, resized bilinearly (an image of that very size is unchanged). Keras crops a whole batch at one place;
 * here each image has its own place, so that a sample's crop does not depend on its batch. */
#include <stdio.h>
#include <string.h>

#include "augment.h"
#include "rng.h"

static int crop_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct augment_cfg *c = &spec->u.aug;
    long h, w;
    int rc;
    if ((rc = args_int(a, "height", 0, 1, 0, &h, err)) || (rc = args_int(a, "width", 1, 1, 0, &w, err)) ||
        (rc = augment_parse_seed(c, a, 2, err)))
        return rc;
    if (h < 1 || h > 65536)
        return augment_arg_error(a, "height", 0, err, "'height' must be a positive size, not %ld", h);
    if (w < 1 || w > 65536)
        return augment_arg_error(a, "width", 1, err, "'width' must be a positive size, not %ld", w);
    c->height = (int)h;
    c->width = (int)w;
    return ERR_OK;
}

static int crop_infer(struct layer_spec *spec, struct error *err)
{
    int rc = augment_infer_image(spec, err);
    if (rc)
        return rc;
    spec->out.h = spec->u.aug.height;
    spec->out.w = spec->u.aug.width;
    return ERR_OK;
}

static void crop_resize(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                        void *scratch)
{
    const struct shape *in = &s->in, *out = &s->out;
    (void)key, (void)scratch;
    if (in->h == out->h && in->w == out->w)
        memcpy(y, x, sizeof(float) * (size_t)shape_size(in));
    else
        augment_smart_resize(x, (struct augment_image){in->h, in->w, in->c}, y, out->h, out->w);
}

/* An integer in [0, n) from a draw's high 32 bits. */
static long below(uint64_t draw, long n) { return (long)(((draw >> 32) * (uint64_t)n) >> 32); }

static void crop_sample(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                        void *scratch)
{
    const struct shape *in = &s->in, *out = &s->out;
    if (in->h < out->h || in->w < out->w) {
        crop_resize(s, key, x, y, scratch);
        return;
    }
    long h0 = below(rng_hash_last(key, 0), in->h - out->h + 1), w0 = below(rng_hash_last(key, 1), in->w - out->w + 1);
    const size_t row = (size_t)out->w * out->c;
    for (int r = 0; r < out->h; r++)
        memcpy(y + (size_t)r * row, x + (((size_t)(h0 + r) * in->w) + (size_t)w0) * in->c, sizeof(float) * row);
}

static int crop_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    return augment_forward(l, ctx, src, crop_sample, crop_resize, err);
}

static int crop_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    char seed[32];
    augment_seed_text(&s->u.aug, seed, sizeof seed);
    return snprintf(buf, size, "%s(height=%d, width=%d, seed=%s)", s->ops->name, s->u.aug.height, s->u.aug.width,
                    seed);
}

const struct layer_ops layer_random_crop = {
    .name = "RandomCrop",
    .keras_prefix = "random_crop",
    .parse = crop_parse,
    .infer = crop_infer,
    .create = augment_create,
    .forward = crop_forward,
    .backward = augment_backward,
    .destroy = augment_destroy,
    .init_params = NULL,
    .to_text = crop_to_text,
};

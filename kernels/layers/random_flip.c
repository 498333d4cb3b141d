/* random_flip.c: RandomFlip (Keras): in training each image is mirrored left-right and/or top-bottom, each with
 * probability 1/2 from its own draw (U_0 < 0.5: left-right, U_1 < 0.5: top-bottom; augment.h); the identity
 * otherwise. */
#include <stdio.h>
#include <string.h>

#include "augment.h"

static const char *const flip_modes[] = {"horizontal", "vertical", "horizontal_and_vertical", NULL};

static int flip_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct augment_cfg *c = &spec->u.aug;
    int mode, rc;
    if ((rc = args_choice(a, "mode", 0, flip_modes, 2, &mode, err)) || (rc = augment_parse_seed(c, a, 1, err)))
        return rc;
    c->flip_h = mode != 1;
    c->flip_v = mode != 0;
    return ERR_OK;
}

static void flip_sample(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                        void *scratch)
{
    const struct shape *in = &s->in;
    (void)scratch;
    int fh = s->u.aug.flip_h && augment_unit(key, 0) < 0.5f;
    int fv = s->u.aug.flip_v && augment_unit(key, 1) < 0.5f;
    const size_t row = (size_t)in->w * in->c;
    for (int r = 0; r < in->h; r++) {
        const float *src = x + (size_t)(fv ? in->h - 1 - r : r) * row;
        float *dst = y + (size_t)r * row;
        if (!fh) {
            memcpy(dst, src, sizeof(float) * row);
            continue;
        }
        if (in->c == 1) /* grey images: a plain loop, not a copy call per pixel */
            for (int col = 0; col < in->w; col++)
                dst[col] = src[in->w - 1 - col];
        else
            for (int col = 0; col < in->w; col++)
                memcpy(dst + (size_t)col * in->c, src + (size_t)(in->w - 1 - col) * in->c, sizeof(float) * in->c);
    }
}

static int flip_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    return augment_forward(l, ctx, src, flip_sample, NULL, err);
}

static int flip_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    const struct augment_cfg *c = &s->u.aug;
    char seed[32];
    augment_seed_text(c, seed, sizeof seed);
    const char *mode = flip_modes[c->flip_h && c->flip_v ? 2 : c->flip_v];
    return snprintf(buf, size, "%s(mode='%s', seed=%s)", s->ops->name, mode, seed);
}

const struct layer_ops layer_random_flip = {
    .name = "RandomFlip",
    .keras_prefix = "random_flip",
    .parse = flip_parse,
    .infer = augment_infer_image,
    .create = augment_create,
    .forward = flip_forward,
    .backward = augment_backward,
    .destroy = augment_destroy,
    .init_params = NULL,
    .to_text = flip_to_text,
};

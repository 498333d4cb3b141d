/* random_translation.c: RandomTranslation (Keras): in training each image is shifted by dy = f_h * height rows
 * down and dx = f_w * width columns right, f_h = uniform(lo_h, hi_h) from U_0 and f_w from U_1 (augment.h), the
 * uncovered part filled by fill_mode; the identity otherwise. */
#include <stdio.h>

#include "augment.h"

/* Keras's checks: lower <= upper, both within [-1, 1]. */
static int check_factor(struct args *a, const char *key, int pos, double lo, double hi, struct error *err)
{
    if (hi < lo)
        return augment_arg_error(a, key, pos, err, "'%s' cannot have upper bound %g less than lower bound %g", key,
                                 hi, lo);
    if (lo < -1 || lo > 1 || hi < -1 || hi > 1)
        return augment_arg_error(a, key, pos, err, "'%s' must have values between -1 and 1", key);
    return ERR_OK;
}

static int translation_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct augment_cfg *c = &spec->u.aug;
    int rc;
    if ((rc = augment_parse_factor(a, "height_factor", 0, 1, &c->h_lo, &c->h_hi, &c->h_form, err)) ||
        (rc = augment_parse_factor(a, "width_factor", 1, 1, &c->w_lo, &c->w_hi, &c->w_form, err)) ||
        (rc = augment_parse_transform_opts(c, a, 2, err)) ||
        (rc = check_factor(a, "height_factor", 0, c->h_lo, c->h_hi, err)) ||
        (rc = check_factor(a, "width_factor", 1, c->w_lo, c->w_hi, err)))
        return rc;
    return ERR_OK;
}

/* Keras's translation matrix [1 0 -dx; 0 1 -dy]: the output at (x, y) reads the input at (x - dx, y - dy). */
static void translation_sample(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                               void *scratch)
{
    const struct augment_cfg *c = &s->u.aug;
    const struct shape *in = &s->in;
    float dy = augment_uniform(key, 0, (float)c->h_lo, (float)c->h_hi) * (float)in->h;
    float dx = augment_uniform(key, 1, (float)c->w_lo, (float)c->w_hi) * (float)in->w;
    const float t[6] = {1, 0, -dx, 0, 1, -dy};
    augment_affine(x, y, (struct augment_image){in->h, in->w, in->c}, t, c->fill, c->interp, (float)c->fill_value,
                   scratch);
}

static int translation_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    return augment_forward(l, ctx, src, translation_sample, NULL, err);
}

const struct layer_ops layer_random_translation = {
    .name = "RandomTranslation",
    .keras_prefix = "random_translation",
    .parse = translation_parse,
    .infer = augment_infer_image,
    .create = augment_create,
    .forward = translation_forward,
    .backward = augment_backward,
    .destroy = augment_destroy,
    .init_params = NULL,
    .to_text = augment_factors_to_text,
};

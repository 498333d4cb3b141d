/* random_rotation.c: RandomRotation (Keras): in training each image is turned about its centre by an angle
 * uniform in [lo * 2 pi, hi * 2 pi] from U_0 (augment.h), positive counter-clockwise, the uncovered part filled
 * by fill_mode; the identity otherwise. */
#include <math.h>
#include <stdio.h>

#include "augment.h"

static int rotation_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct augment_cfg *c = &spec->u.aug;
    int rc;
    if ((rc = augment_parse_factor(a, "factor", 0, 1, &c->h_lo, &c->h_hi, &c->h_form, err)) ||
        (rc = augment_parse_transform_opts(c, a, 1, err)))
        return rc;
    if (c->h_hi < c->h_lo)
        return augment_arg_error(a, "factor", 0, err, "'factor' cannot have upper bound %g less than lower bound %g",
                                 c->h_hi, c->h_lo);
    return ERR_OK;
}

/* Keras's get_rotation_matrix, in float as TF computes it. */
static void rotation_sample(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                            void *scratch)
{
    const struct augment_cfg *c = &s->u.aug;
    const struct shape *in = &s->in;
    const double two_pi = 2.0 * 3.14159265358979323846;
    float angle = augment_uniform(key, 0, (float)(c->h_lo * two_pi), (float)(c->h_hi * two_pi));
    float cs = cosf(angle), sn = sinf(angle), w1 = (float)(in->w - 1), h1 = (float)(in->h - 1);
    float x_off = (w1 - (cs * w1 - sn * h1)) / 2.0f;
    float y_off = (h1 - (sn * w1 + cs * h1)) / 2.0f;
    const float t[6] = {cs, -sn, x_off, sn, cs, y_off};
    augment_affine(x, y, (struct augment_image){in->h, in->w, in->c}, t, c->fill, c->interp, (float)c->fill_value,
                   scratch);
}

static int rotation_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    return augment_forward(l, ctx, src, rotation_sample, NULL, err);
}

static int rotation_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    const struct augment_cfg *c = &s->u.aug;
    char f[96], opts[160];
    augment_factor_text(c->h_lo, c->h_hi, c->h_form, f, sizeof f);
    augment_opts_text(c, opts, sizeof opts);
    return snprintf(buf, size, "%s(factor=%s%s)", s->ops->name, f, opts);
}

const struct layer_ops layer_random_rotation = {
    .name = "RandomRotation",
    .keras_prefix = "random_rotation",
    .parse = rotation_parse,
    .infer = augment_infer_image,
    .create = augment_create,
    .forward = rotation_forward,
    .backward = augment_backward,
    .destroy = augment_destroy,
    .init_params = NULL,
    .to_text = rotation_to_text,
};

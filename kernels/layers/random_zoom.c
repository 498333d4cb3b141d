/* random_zoom.c: RandomZoom (Keras): in training each image is scaled about its centre, zy = uniform(1 + lo_h,
 * 1 + hi_h) from U_0 and zx = uniform(1 + lo_w, 1 + hi_w) from U_1, or zx = zy when width_factor is None
 * (augment.h). The output at (x, y) reads the input at zx, zy times its distance from the centre: a factor above
 * 1 zooms out (a positive height_factor), below 1 zooms in. The uncovered part is filled by fill_mode; the
 * identity outside training. */
#include <stdio.h>

#include "augment.h"

static int zoom_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct augment_cfg *c = &spec->u.aug;
    int rc;
    if ((rc = augment_parse_factor(a, "height_factor", 0, 1, &c->h_lo, &c->h_hi, &c->h_form, err)) ||
        (rc = augment_parse_factor(a, "width_factor", 1, 0, &c->w_lo, &c->w_hi, &c->w_form, err)) ||
        (rc = augment_parse_transform_opts(c, a, 2, err)))
        return rc;
    /* Keras's checks, as they are (the width's upper bound only from below). */
    if (c->h_lo < -1 || c->h_lo > 1 || c->h_hi < -1 || c->h_hi > 1)
        return augment_arg_error(a, "height_factor", 0, err, "'height_factor' must have values between -1 and 1");
    if (c->w_form && (c->w_lo < -1 || c->w_hi < -1))
        return augment_arg_error(a, "width_factor", 1, err, "'width_factor' must have values larger than -1");
    return ERR_OK;
}

/* Keras's get_zoom_matrix, in float as TF computes it. */
static void zoom_sample(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                        void *scratch)
{
    const struct augment_cfg *c = &s->u.aug;
    const struct shape *in = &s->in;
    float zy = augment_uniform(key, 0, (float)(1.0 + c->h_lo), (float)(1.0 + c->h_hi));
    float zx = c->w_form ? augment_uniform(key, 1, (float)(1.0 + c->w_lo), (float)(1.0 + c->w_hi)) : zy;
    float x_off = ((float)(in->w - 1) / 2.0f) * (1.0f - zx);
    float y_off = ((float)(in->h - 1) / 2.0f) * (1.0f - zy);
    const float t[6] = {zx, 0, x_off, 0, zy, y_off};
    augment_affine(x, y, (struct augment_image){in->h, in->w, in->c}, t, c->fill, c->interp, (float)c->fill_value,
                   scratch);
}

static int zoom_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    return augment_forward(l, ctx, src, zoom_sample, NULL, err);
}

const struct layer_ops layer_random_zoom = {
    .name = "RandomZoom",
    .keras_prefix = "random_zoom",
    .parse = zoom_parse,
    .infer = augment_infer_image,
    .create = augment_create,
    .forward = zoom_forward,
    .backward = augment_backward,
    .destroy = augment_destroy,
    .init_params = NULL,
    .to_text = augment_factors_to_text,
};

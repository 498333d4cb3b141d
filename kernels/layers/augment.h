/* augment.h: what the augmentation layers (Keras's RandomFlip, RandomTranslation, RandomRotation, RandomZoom,
 * RandomCrop) share: their draws, the projective sampler of TF's ImageProjectiveTransformV3 with its fill modes
 * and interpolations, the argument parsing and text forms, and a runtime that is the identity outside training.
 * Internal to kernels/.
 *
 * Draws: sample `id` of the global dataset, in training epoch `epoch` of a run seeded `seed`, gets for the layer
 * the 64-bit key K = rng_hash4(seed, epoch, L, id), where L is the layer's position in the model (its index) or,
 * when the layer was given seed=N, (1 << 63) | N. Its k-th draw is D_k = rng_hash_last(K, k) and the uniform
 * number U_k = rng_unit_f(D_k) in [0, 1). Nothing depends on the batch, its order or the number of ranks. */
#ifndef TRAINER_AUGMENT_H
#define TRAINER_AUGMENT_H

#include "layer_common.h"

/* K above for sample id. */
uint64_t augment_key(const struct layer_spec *s, const struct step_ctx *ctx, int64_t id);
/* U_k above: uniform in [0, 1), 24 bits. */
float augment_unit(uint64_t key, uint64_t k);
/* lo + (hi - lo) * U_k in float, as TF's random_uniform(minval=lo, maxval=hi) computes it. */
float augment_uniform(uint64_t key, uint64_t k, float lo, float hi);

/* One image (h, w, c) channels-last. */
struct augment_image {
    int h, w, c;
};

/* y (h, w, c) = x (h, w, c) sampled through the projective transform t = [a0 a1 a2 b0 b1 b2] (c0 = c1 = 0): output
 * pixel (x, y) reads input point (a0 x + a1 y + a2, b0 x + b1 y + b2), mapped by the fill mode and interpolated,
 * as TF's ImageProjectiveTransformV3 does (float arithmetic in its order). */
void augment_affine(const float *x, float *y, struct augment_image im, const float t[6], enum augment_fill fill,
                    enum augment_interp interp, float fill_value, void *scratch);
/* The scratch augment_affine needs for an image of that size (64-byte aligned). */
size_t augment_scratch_bytes(struct augment_image im);

/* y (oh, ow, c) = x (h, w, c) resized as Keras's smart_resize does it: the largest centred crop with the target's
 * aspect ratio, then tf.image.resize bilinear (half-pixel centres, no antialiasing). */
void augment_smart_resize(const float *x, struct augment_image in, float *y, int oh, int ow);
/* smart_resize's window in an h x w image for an oh x ow target: ch x cw from (y_start, x_start) (the ONNX
 * export writes the same window). */
void augment_smart_window(int h, int w, int oh, int ow, long *y_start, long *x_start, long *ch, long *cw);

/* ---- parsing and text ---- */

/* A factor argument into [lo, hi]: one number v gives (-v, v), a pair (lo, hi) itself. `required`: it must be
 * given (RandomZoom's width_factor may be None). */
int augment_parse_factor(struct args *a, const char *key, int pos, int required, double *lo, double *hi,
                         int *form, struct error *err);
/* fill_mode, interpolation, seed and fill_value at positions pos, pos + 1, pos + 2, pos + 3 (Keras's order). */
int augment_parse_transform_opts(struct augment_cfg *c, struct args *a, int pos, struct error *err);
/* seed=None or an integer, at position pos. */
int augment_parse_seed(struct augment_cfg *c, struct args *a, int pos, struct error *err);
/* ERR_INPUT pointing at the argument `key` (or the layer when it is absent): "what". */
int augment_arg_error(struct args *a, const char *key, int pos, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The shortest text that reads back as the same double, with a '.' so that it reads as a float: "0.1", "1.0". */
void augment_num_text(double v, char *buf, size_t size);
/* The factor as it was written: "0.2", "(-0.2, 0.3)" or "None". */
void augment_factor_text(double lo, double hi, int form, char *buf, size_t size);
/* ", fill_mode='reflect', interpolation='bilinear', seed=None, fill_value=0.0". */
int augment_opts_text(const struct augment_cfg *c, char *buf, size_t size);
/* The text of a layer whose arguments are height_factor, width_factor and the transform options (RandomTranslation,
 * RandomZoom): "Name(height_factor=..., width_factor=..., fill_mode=..., ...)"; a layer_ops to_text. */
int augment_factors_to_text(const struct layer_spec *s, char *buf, size_t size);
/* "None" or the seed. */
void augment_seed_text(const struct augment_cfg *c, char *buf, size_t size);

extern const char *const augment_fill_names[];   /* by enum augment_fill, NULL-terminated */
extern const char *const augment_interp_names[]; /* by enum augment_interp, NULL-terminated */

/* ---- runtime ---- */

/* Applies the layer to one sample: x (in shape) -> y (out shape), with the sample's key (augment_key) and the
 * thread's scratch (augment_scratch_bytes of the input's size). */
typedef void (*augment_sample_fn)(const struct layer_spec *s, uint64_t key, const float *x, float *y,
                                  void *scratch);

/* Rank-3 input required; out = in. */
int augment_infer_image(struct layer_spec *spec, struct error *err);
/* dst plain (n, out.h, out.w, out.c); refuses need_diff_src (no gradient goes through an augmentation layer). */
int augment_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err);
void augment_destroy(struct layer *l);
/* Nothing to compute: the layer has no weights and no layer before it needs a gradient (augment_create). */
int augment_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                     struct error *err);
/* The forward of a kind: in training each sample through `fn` (OpenMP over samples), else `infer` over the whole
 * batch (NULL: a copy, for the kinds whose output has their input's shape). */
int augment_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, augment_sample_fn fn,
                    augment_sample_fn infer, struct error *err);

#endif

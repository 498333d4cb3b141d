/* batchnorm.h: what BatchNormalization (batchnorm.c) shares with the kernel that runs it fused with the ReLU
 * after it (bn_relu.c). Internal to kernels/. */
#ifndef TRAINER_BATCHNORM_H
#define TRAINER_BATCHNORM_H

#include "layer.h"

/* Offsets of the layer's tensors relative to params[0] (l->w): gamma and beta when present, then the two
 * moving averages. */
struct bn_parts {
    long gamma, beta, mean, var; /* -1: absent */
};
struct bn_parts bn_parts_of(const struct layer_spec *s);

/* The channel block B of l->src_md when the layer can run on it as it is: C for nhwc and (n, c), 8 or 16 for
 * nChw8c / nChw16c; 0 for any other layout. *tag (when not NULL) receives that layout's tag. */
int bn_native_block(const struct layer *l, dnnl_format_tag_t *tag);

/* Elements per channel in the global batch (ctx->global_batch images, or this rank's l->n outside training). */
double bn_global_count(const struct layer *l, const struct step_ctx *ctx);
/* Sums v (n doubles) over the ranks in place (ctx->sum), or nothing on one. */
int bn_global_sums(const struct step_ctx *ctx, double *v, int n, struct error *err);
/* Inference with the moving averages as y = x * fa + fb: fa = gamma / sqrt(var + eps), fb = beta - mean * fa,
 * for the c channels. */
void bn_inference_coeffs(const struct layer *l, float *fa, float *fb, long c);
/* The weight-gradient slots after a training backward: dbeta and dgamma from the global sums (sum g, sum g *
 * xhat: 2c), and the moving averages' slots this rank's part of the batch mean and unbiased variance, from its
 * local sums (sum x, sum x^2) and the global mean; m elements per channel in the global batch. */
void bn_param_grads(const struct layer *l, const double *sums, const double *local, const double *mean, long c,
                    double m);

#endif

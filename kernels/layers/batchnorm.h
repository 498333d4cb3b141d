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

#endif

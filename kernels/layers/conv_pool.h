/* conv_pool.h: the model's first Conv2D (ReLU, a few input channels) and the MaxPooling2D after it, run as one
 * kernel. Internal to kernels/ (the network picks it when conv_pool_fusable says so). */
#ifndef TRAINER_CONV_POOL_H
#define TRAINER_CONV_POOL_H

#include "layer.h"
#include "model.h"

/* Whether layers i (a Conv2D) and i + 1 (a MaxPooling2D) of m can run as layer_conv_pool on this CPU: i is the
 * first layer or has only augmentation layers before it (its input gradient is never needed), the convolution has a ReLU, stride 1, at most
 * CONV_POOL_MAX_TAPS kh * kw * in_channels and a multiple of 16 filters, and the pooling's windows tile its
 * input ('valid', strides = pool size). */
int conv_pool_fusable(const struct model *m, int i);

#define CONV_POOL_MAX_TAPS 64
/* Kernel shapes with kernels of their own for 2x2 pooling have at most this many taps (conv_pool.c). */
#define CONV_POOL_FIXED_MAX 16

/* Tests: 1 makes layers created from now on run the generic kernels (the reference the taps-specific ones
 * must match bit for bit). */
extern int conv_pool_generic;
/* Tests: 1 makes layers created from now on run the AVX2 kernels where the CPU also has AVX-512 (the two must
 * give the same bits). conv_pool_has_avx512 says whether it does. */
extern int conv_pool_avx2_only;
int conv_pool_has_avx512(void);

/* Runs the pair: create/forward/backward/destroy of the layer whose spec is the Conv2D's; the pooling's spec
 * is the next one in the model (spec + 1). Its dst is the pooling's output (nChw16c), its weights and
 * gradients the Conv2D's, in the slab's Keras layout. */
extern const struct layer_ops layer_conv_pool;

#endif

/* bn_relu.h: BatchNormalization, the ReLU after it and, when it follows, a 2x2 MaxPooling2D, run as one kernel
 * in the layout the layer before hands over. Internal to kernels/ (the network picks it when bn_relu_fusable
 * says so). */
#ifndef TRAINER_BN_RELU_H
#define TRAINER_BN_RELU_H

#include "layer.h"
#include "model.h"

/* How many layers after layer i of m the fused kernel runs too (they are then `absorbed`): 0 when layer i is
 * not a BatchNormalization whose only reader is the next layer, an Activation('relu'); 1 for that pair; 2 when
 * the ReLU's only reader is in turn the layer after it, a MaxPooling2D with 2x2 windows, strides 2 and nothing
 * padded. Readers are found from the layers' input edges, not from their order. */
int bn_relu_fusable(const struct model *m, int i);

/* The kernel that runs layer i and the `absorbed` (1 or 2, from bn_relu_fusable) layers after it. Its spec is
 * the BatchNormalization's (the others are spec + 1 and spec + 2: layers in a model are stored in one array);
 * its weights, gradients and sums over ranks are the BatchNormalization's; its dst is the ReLU's (absorbed 1)
 * or the pooling's (2), in the layout of its input. */
const struct layer_ops *bn_relu_ops(int absorbed);

extern const struct layer_ops layer_bn_relu, layer_bn_relu_pool;

#endif

/* bn_relu.h: BatchNormalization and the layers after it that only read it, run as one kernel in the layout the
 * layer before hands over: the ReLU (and, when it follows, a 2x2 MaxPooling2D), or an Add of a shortcut and the
 * ReLU after it (a residual block's end). Internal to kernels/ (the network picks it when bn_relu_fusable says
 * so). */
#ifndef TRAINER_BN_RELU_H
#define TRAINER_BN_RELU_H

#include "layer.h"
#include "model.h"

/* How many layers after layer i of m the fused kernel runs too (they are then `absorbed`): 0 when layer i is
 * not a BatchNormalization whose only reader is the next layer; 1 when that is an Activation('relu'); 2 when
 * the ReLU's only reader is in turn the layer after it, a MaxPooling2D with 2x2 windows, strides 2 and nothing
 * padded, or when the next layer is an Add of layer i and one other tensor whose only reader is an
 * Activation('relu') after it. Readers are found from the layers' input edges, not from their order. */
int bn_relu_fusable(const struct model *m, int i);

/* The kernel that runs layer i and the layers bn_relu_fusable counts (NULL when there are none). Its spec is
 * the BatchNormalization's (the others are spec + 1 and spec + 2: layers in a model are stored in one array);
 * its weights, gradients and sums over ranks are the BatchNormalization's; its dst is the ReLU's or the
 * pooling's, in the layout of its input. */
const struct layer_ops *bn_relu_ops(const struct model *m, int i);

/* For the Add kernel, the Add's other input (the shortcut; -1 for the others). The network sets the kernel's
 * srcs[1] and src_mds[1] to that layer's output before create; backward writes the shortcut's gradient in
 * diff_srcs[1], in src_mds[1], which the network hands on as the absorbed Add's gradient of that input. */
int bn_relu_shortcut(const struct model *m, int i);

extern const struct layer_ops layer_bn_relu, layer_bn_relu_pool, layer_bn_add_relu;

#endif

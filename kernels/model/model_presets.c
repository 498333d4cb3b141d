/* model_presets.c: the presets, model-file text by name: the seed's Keras CNNs and the Keras example's ResNet v1. */
#include <stdio.h>
#include <string.h>

#include "model.h"

/* The ResNets' kernel_regularizer (Keras's cifar10_resnet.py: l2(1e-4) on every Conv2D). */
#define RESNET_REGULARIZER ", kernel_regularizer=l2(1e-4)"

/* ------------------------------------------------------------------------------------------ presets */

/* The classic Keras CIFAR-10 tutorial network: SPEC.md's text, byte for byte. */
static const char preset_cifar10_cnn[] =
    "Input(shape=(32, 32, 3))\n"
    "Conv2D(filters=16, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=32, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=64, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Dropout(0.3)\n"
    "Flatten()\n"
    "Dense(500, activation='relu')\n"
    "Dropout(0.4)\n"
    "Dense(10, activation='softmax')\n";

/* The same stack on Fashion-MNIST: pools floor 28 -> 14 -> 7 -> 3, so Flatten gives 3*3*64 = 576. */
static const char preset_fashion_cnn[] =
    "Input(shape=(28, 28, 1))\n"
    "Conv2D(filters=16, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=32, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=64, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Dropout(0.3)\n"
    "Flatten()\n"
    "Dense(500, activation='relu')\n"
    "Dropout(0.4)\n"
    "Dense(10, activation='softmax')\n";

/* The PyTorch peer's `fashion-gap` (shared/peers/pytorch_cnn.py), so the two can be compared: Fashion-MNIST
 * input, the same three same-padded 2x2 ReLU convolutions with pooling after the first two only, then global
 * average pooling of the 7x7x64 map straight into Dense(10). No dropout and no Dense(500): 11,066 weights. */
static const char preset_gap_cnn[] =
    "Input(shape=(28, 28, 1))\n"
    "Conv2D(filters=16, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=32, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=64, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "GlobalAveragePooling2D()\n"
    "Dense(10, activation='softmax')\n";

/* ResNet v1 as Keras's example cifar10_resnet.py builds it (resnet_v1): a 3x3 Conv2D-BN-ReLU stem, then 3 stages
 * of `blocks` residual blocks (Conv-BN-ReLU, Conv-BN, Add, ReLU) with 16, 32, 64 filters; the first block of
 * stages 2 and 3 halves the size with stride 2 and a 1x1 stride-2 Conv2D on the shortcut. Kernels he_normal with
 * an L2 regularizer of 1e-4, as there. `head` ends it: the example's AveragePooling2D(8) + Flatten on 32x32
 * inputs, global average pooling elsewhere. Written as functional model-file text into buf. */
static void resnet_v1_text(char *buf, size_t size, int h, int w, int c, int blocks, int classes, const char *head)
{
    static const char conv[] = "Conv2D(%d, %d, strides=%d, padding='same', kernel_initializer='he_normal'%s)";
    const char *reg = RESNET_REGULARIZER;
    size_t n = 0;
    char call[256];
#define EMIT(...) (n += (size_t)snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__))
    EMIT("inputs = Input(shape=(%d, %d, %d))\n", h, w, c);
    snprintf(call, sizeof call, conv, 16, 3, 1, reg);
    EMIT("x = %s(inputs)\nx = BatchNormalization()(x)\nx = Activation('relu')(x)\n", call);
    for (int stage = 0, filters = 16; stage < 3; stage++, filters *= 2)
        for (int b = 0; b < blocks; b++) {
            int stride = stage > 0 && b == 0 ? 2 : 1;
            snprintf(call, sizeof call, conv, filters, 3, stride, reg);
            EMIT("y = %s(x)\ny = BatchNormalization()(y)\ny = Activation('relu')(y)\n", call);
            snprintf(call, sizeof call, conv, filters, 3, 1, reg);
            EMIT("y = %s(y)\ny = BatchNormalization()(y)\n", call);
            if (stride == 2) {
                snprintf(call, sizeof call, conv, filters, 1, 2, reg);
                EMIT("x = %s(x)\n", call);
            }
            EMIT("x = Add()([x, y])\nx = Activation('relu')(x)\n");
        }
    EMIT("%s", head);
    EMIT("outputs = Dense(%d, activation='softmax', kernel_initializer='he_normal')(x)\n", classes);
#undef EMIT
}

/* `resnet20`: the Keras example's ResNet-20 v1 for CIFAR-10, 274,442 weights counting the moving averages. */
static const char *preset_resnet20(void)
{
    static char text[8192];
    if (!text[0])
        resnet_v1_text(text, sizeof text, 32, 32, 3, 3, 10,
                       "x = AveragePooling2D(pool_size=8)(x)\nx = Flatten()(x)\n");
    return text;
}

/* `fashion-resnet`: the same design at depth 14 (2 blocks a stage) for 28x28x1 Fashion-MNIST, so that an epoch
 * takes tens of seconds on two cores: stages at 28x28, 14x14 and 7x7, then global average pooling (7 is not a
 * multiple of the example's pool of 8). */
static const char *preset_fashion_resnet(void)
{
    static char text[8192];
    if (!text[0])
        resnet_v1_text(text, sizeof text, 28, 28, 1, 2, 10, "x = GlobalAveragePooling2D()(x)\n");
    return text;
}

const char *const model_preset_names[] = {"cifar10-cnn", "fashion-cnn", "gap-cnn", "resnet20", "fashion-resnet", NULL};

const char *model_preset_text(const char *name)
{
    static const char *const fixed[] = {preset_cifar10_cnn, preset_fashion_cnn, preset_gap_cnn};
    for (int i = 0; name && model_preset_names[i]; i++)
        if (strcmp(name, model_preset_names[i]) == 0)
            return i < 3 ? fixed[i] : i == 3 ? preset_resnet20() : preset_fashion_resnet();
    return NULL;
}


/* layer.c: the table of layer kinds and what several kinds share (init, Keras output sizes). */
#include "layer.h"

#include <math.h>
#include <string.h>

const char *const activation_names[] = {"linear", "relu", "softmax", "sigmoid", "tanh", NULL};

const struct layer_ops *const layer_kinds[] = {
    &layer_input,   &layer_conv2d,  &layer_max_pooling2d,
    &layer_average_pooling2d,       &layer_global_average_pooling2d,
    &layer_global_max_pooling2d,    &layer_flatten,
    &layer_dense,   &layer_dropout, &layer_activation,
    &layer_batchnorm,
    &layer_random_flip, &layer_random_translation, &layer_random_rotation, &layer_random_zoom,
    &layer_random_crop,
    NULL,
};

const struct layer_ops *layer_find(const char *name)
{
    for (int i = 0; layer_kinds[i]; i++)
        if (strcmp(layer_kinds[i]->name, name) == 0)
            return layer_kinds[i];
    return NULL;
}

void layer_glorot_uniform(float *w, size_t n, long fan_in, long fan_out, double (*rnd)(void *), void *state)
{
    double limit = sqrt(6.0 / (double)(fan_in + fan_out));
    for (size_t i = 0; i < n; i++)
        w[i] = (float)((2.0 * rnd(state) - 1.0) * limit);
}

int layer_out_size(int in, int k, int s, int same)
{
    if (same)
        return (in + s - 1) / s;
    if (in < k)
        return 0;
    return (in - k) / s + 1;
}

void layer_same_padding(int in, int k, int s, int *pad_l, int *pad_r)
{
    int out = (in + s - 1) / s;
    int total = (out - 1) * s + k - in;
    if (total < 0)
        total = 0;
    *pad_l = total / 2;
    *pad_r = total - *pad_l;
}

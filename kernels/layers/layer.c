/* layer.c: the table of layer kinds and what several kinds share (init, Keras output sizes). */
#include "layer.h"

#include <math.h>
#include <string.h>

const char *const activation_names[] = {"linear", "relu", "softmax", "sigmoid", "tanh", NULL};
const char *const initializer_names[] = {"glorot_uniform", "glorot_normal", "he_normal", "he_uniform", NULL};

const struct layer_ops *const layer_kinds[] = {
    &layer_input,   &layer_conv2d,  &layer_max_pooling2d,
    &layer_average_pooling2d,       &layer_global_average_pooling2d,
    &layer_global_max_pooling2d,    &layer_flatten,
    &layer_dense,   &layer_dropout, &layer_activation,
    &layer_batchnorm,
    &layer_add,     &layer_concatenate, &layer_zero_padding2d,
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

/* A standard normal from two uniforms (Box-Muller: one draw each, so the stream is a function of the seed). */
static double normal(double (*rnd)(void *), void *state)
{
    double u = rnd(state), v = rnd(state);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

void layer_init_weights(float *w, size_t n, enum initializer init, long fan_in, long fan_out, double (*rnd)(void *),
                        void *state)
{
    int he = init == INIT_HE_NORMAL || init == INIT_HE_UNIFORM;
    double fan = he ? (double)fan_in : 0.5 * (double)(fan_in + fan_out), scale = he ? 2.0 : 1.0;
    if (init == INIT_GLOROT_UNIFORM) {
        layer_glorot_uniform(w, n, fan_in, fan_out, rnd, state);
        return;
    }
    if (init == INIT_HE_UNIFORM) {
        double limit = sqrt(3.0 * scale / fan);
        for (size_t i = 0; i < n; i++)
            w[i] = (float)((2.0 * rnd(state) - 1.0) * limit);
        return;
    }
    double stddev = sqrt(scale / fan) / 0.87962566103423978;
    for (size_t i = 0; i < n; i++) {
        double z;
        do
            z = normal(rnd, state);
        while (z < -2.0 || z > 2.0);
        w[i] = (float)(z * stddev);
    }
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

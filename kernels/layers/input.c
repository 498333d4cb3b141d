/* input.c: the Input layer, `Input(shape=(H, W, C))`: declares the per-sample image shape; it never runs. */
#include "layer.h"

#include <stdio.h>
#include <string.h>

/* The argument given as keyword `key` or at position `pos`, for its column. */
static const struct arg *find_arg(const struct args *a, const char *key, int pos)
{
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        const struct arg *x = &a->a[i];
        if (x->key[0] == '\0' ? npos++ == pos : strcmp(x->key, key) == 0)
            return x;
    }
    return NULL;
}

/* Keras: Input(shape=None, batch_size=None, ...): shape is the first positional argument. Only images
 * (h, w, c) are accepted: the datasets are (N, H, W, C). */
static int input_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    long dims[ARG_TUPLE_MAX];
    int n = 0;
    int rc = args_tuple(a, "shape", 0, dims, &n, err);
    if (rc)
        return rc;
    const struct arg *x = find_arg(a, "shape", 0);
    if (n != 3)
        return args_error(a, x, err, "'shape' must be (height, width, channels), e.g. (28, 28, 1)");
    for (int i = 0; i < 3; i++)
        if (dims[i] <= 0 || dims[i] > 65536)
            return args_error(a, x, err, "'shape' sizes must be positive, got (%ld, %ld, %ld)", dims[0],
                              dims[1], dims[2]);
    spec->u.input.h = (int)dims[0];
    spec->u.input.w = (int)dims[1];
    spec->u.input.c = (int)dims[2];
    return ERR_OK;
}

/* The Input's output is its declared shape; `in` is set too, so every spec has a meaningful `in`. */
static int input_infer(struct layer_spec *spec, struct error *err)
{
    const struct input_cfg *c = &spec->u.input;
    if (c->h <= 0 || c->w <= 0 || c->c <= 0)
        return error_set(err, ERR_INPUT, "%s: Input shape (%d, %d, %d) must be positive", spec->name, c->h,
                         c->w, c->c);
    spec->out = (struct shape){3, c->h, c->w, c->c};
    spec->in = spec->out;
    spec->n_params = 0;
    return ERR_OK;
}

static int input_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    const struct input_cfg *c = &spec->u.input;
    return snprintf(buf, size, "Input(shape=(%d, %d, %d))", c->h, c->w, c->c);
}

/* The network feeds the Input's output itself (the scaled images): no runtime ops. */
const struct layer_ops layer_input = {
    .name = "Input",
    .keras_prefix = "input",
    .parse = input_parse,
    .infer = input_infer,
    .create = NULL,
    .forward = NULL,
    .backward = NULL,
    .destroy = NULL,
    .init_params = NULL,
    .to_text = input_to_text,
};

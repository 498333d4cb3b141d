/* onnx_export.c: a model as an ONNX graph: the layers walked by their input edges, one small emitter per
 * layer kind (found by the kind's name), activations in NCHW between the NHWC input and the (N, classes)
 * output. */
#include "onnx_export.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "augment.h"
#include "onnx_graph.h"

/* How a layer's output is laid out in the graph: images in NCHW (ONNX's Conv and pools), vectors (N, C). */
enum onnx_layout { LAYOUT_NCHW, LAYOUT_FLAT };

struct tensor {
    const char *name;
    enum onnx_layout layout;
};

struct exporter {
    struct onnx_graph *g;
    const struct model *m;
    const float *params;
    const char *source;
    struct tensor *t; /* (n_layers,) each layer's output */
};

/* ------------------------------------------------------------------------------------------ helpers */

static const struct tensor *input(const struct exporter *x, const struct layer_spec *s, int k)
{
    return &x->t[s->inputs[k]];
}

/* A layer's output tensor is named after the layer; the model's last one is `probabilities`. A layer that a
 * user named like the graph's input or output gets "/out" added: a tensor has one producer. */
static const char *out_name(struct exporter *x, const struct layer_spec *s)
{
    if (s->index == x->m->n_layers - 1)
        return "probabilities";
    if (strcmp(s->name, "images") == 0 || strcmp(s->name, "probabilities") == 0)
        return onnx_graph_strf(x->g, "%s/out", s->name);
    return onnx_graph_strf(x->g, "%s", s->name);
}

static const char *sub_name(struct exporter *x, const struct layer_spec *s, const char *part)
{
    return onnx_graph_strf(x->g, "%s/%s", s->name, part);
}

static const float *weights(const struct exporter *x, const struct layer_spec *s, int j)
{
    return x->params + s->params[j].offset;
}

/* The parameter named `name` of s, or -1 (BatchNormalization's gamma and beta are optional). */
static int param_index(const struct layer_spec *s, const char *name)
{
    for (int j = 0; j < s->n_params; j++)
        if (strcmp(s->params[j].name, name) == 0)
            return j;
    return -1;
}

static int refuse(const struct exporter *x, const struct layer_spec *s, struct error *err, const char *why)
{
    return error_set(err, ERR_INPUT, "%s: layer %s (%s): %s", x->source, s->name, s->ops->name, why);
}

static const char *transpose(struct exporter *x, const char *in, const char *out, const int64_t perm[4])
{
    onnx_graph_attr_ints(x->g, onnx_graph_node(x->g, "Transpose", &in, 1, out), "perm", perm, 4);
    return out;
}

static const int64_t to_nhwc[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2};

/* in -> activation -> out. Keras's softmax is over the last axis, the channels: on NCHW the tensor goes to
 * NHWC and back, where Softmax's axis 3 means the same in every opset (before 13 it flattened from the axis
 * on). `linear` is not called with in != out. */
static void activation(struct exporter *x, const struct layer_spec *s, enum activation act, const char *in,
                       const char *out, enum onnx_layout layout)
{
    static const char *const ops[] = {[ACT_RELU] = "Relu", [ACT_SIGMOID] = "Sigmoid", [ACT_TANH] = "Tanh"};
    struct onnx_graph *g = x->g;
    if (act == ACT_SOFTMAX && layout == LAYOUT_NCHW) {
        const char *nhwc = transpose(x, in, sub_name(x, s, "softmax_in"), to_nhwc);
        const char *sm = sub_name(x, s, "softmax");
        onnx_graph_attr_int(g, onnx_graph_node(g, "Softmax", &nhwc, 1, sm), "axis", 3);
        transpose(x, sm, out, to_nchw);
    } else if (act == ACT_SOFTMAX) {
        onnx_graph_attr_int(g, onnx_graph_node(g, "Softmax", &in, 1, out), "axis", 1);
    } else if (act != ACT_LINEAR) {
        onnx_graph_node(g, ops[act], &in, 1, out);
    }
}

/* The layer's own op writes `name/pre` when an activation follows it, else the layer's output. */
static const char *pre_activation(struct exporter *x, const struct layer_spec *s, enum activation act)
{
    return act == ACT_LINEAR ? out_name(x, s) : sub_name(x, s, "pre");
}

/* Keras padding as ONNX pads (top, left, bottom, right): 'same' puts the odd row or column at the bottom and
 * right, as TensorFlow does; written out, never auto_pad, so that every runtime reads the same thing. */
static void pads(const struct layer_spec *s, int kh, int kw, int sh, int sw, int same, int64_t p[4])
{
    int t = 0, b = 0, l = 0, r = 0;
    if (same) {
        layer_same_padding(s->in.h, kh, sh, &t, &b);
        layer_same_padding(s->in.w, kw, sw, &l, &r);
    }
    p[0] = t, p[1] = l, p[2] = b, p[3] = r;
}

/* ------------------------------------------------------------------------------------------ layer kinds */

static int emit_identity(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    (void)err;
    *out = *input(x, s, 0);
    return ERR_OK;
}

static int emit_conv2d(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct conv_cfg *c = &s->u.conv;
    const struct tensor *in = input(x, s, 0);
    if (in->layout != LAYOUT_NCHW)
        return refuse(x, s, err, "its input is not an image");
    long cin = s->in.c, f = c->filters, kh = c->kh, kw = c->kw;
    const char *ins[3] = {in->name, sub_name(x, s, "kernel"), NULL};
    int64_t kdims[4] = {f, cin, kh, kw};
    float *k = onnx_graph_init_f32(x->g, ins[1], kdims, 4);
    const float *w = weights(x, s, 0); /* (kh, kw, cin, filters) -> (filters, cin, kh, kw) */
    for (long o = 0; k && o < f; o++)
        for (long i = 0; i < cin; i++)
            for (long y = 0; y < kh; y++)
                for (long z = 0; z < kw; z++)
                    k[((o * cin + i) * kh + y) * kw + z] = w[((y * kw + z) * cin + i) * f + o];
    if (c->use_bias) {
        int64_t bdims[1] = {f};
        ins[2] = sub_name(x, s, "bias");
        float *b = onnx_graph_init_f32(x->g, ins[2], bdims, 1);
        if (b)
            memcpy(b, weights(x, s, 1), sizeof *b * (size_t)f);
    }
    int64_t p[4], ks[2] = {kh, kw}, st[2] = {c->sh, c->sw}, dil[2] = {1, 1};
    pads(s, c->kh, c->kw, c->sh, c->sw, c->same, p);
    const char *pre = pre_activation(x, s, c->act);
    Onnx__NodeProto *n = onnx_graph_node(x->g, "Conv", ins, c->use_bias ? 3 : 2, pre);
    onnx_graph_attr_ints(x->g, n, "kernel_shape", ks, 2);
    onnx_graph_attr_ints(x->g, n, "strides", st, 2);
    onnx_graph_attr_ints(x->g, n, "pads", p, 4);
    onnx_graph_attr_ints(x->g, n, "dilations", dil, 2);
    onnx_graph_attr_int(x->g, n, "group", 1);
    activation(x, s, c->act, pre, out_name(x, s), LAYOUT_NCHW);
    *out = (struct tensor){out_name(x, s), LAYOUT_NCHW};
    return ERR_OK;
}

static int emit_pool(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err,
                     int max)
{
    const struct pool_cfg *c = &s->u.pool;
    const struct tensor *in = input(x, s, 0);
    if (in->layout != LAYOUT_NCHW)
        return refuse(x, s, err, "its input is not an image");
    int64_t p[4], ks[2] = {c->ph, c->pw}, st[2] = {c->sh, c->sw};
    pads(s, c->ph, c->pw, c->sh, c->sw, c->same, p);
    out->name = out_name(x, s);
    out->layout = LAYOUT_NCHW;
    Onnx__NodeProto *n = onnx_graph_node(x->g, max ? "MaxPool" : "AveragePool", &in->name, 1, out->name);
    onnx_graph_attr_ints(x->g, n, "kernel_shape", ks, 2);
    onnx_graph_attr_ints(x->g, n, "strides", st, 2);
    onnx_graph_attr_ints(x->g, n, "pads", p, 4);
    /* Keras (TensorFlow) averages over the window's part inside the image. */
    if (!max)
        onnx_graph_attr_int(x->g, n, "count_include_pad", 0);
    return ERR_OK;
}

static int emit_max_pool(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    return emit_pool(x, s, out, err, 1);
}

static int emit_avg_pool(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    return emit_pool(x, s, out, err, 0);
}

static int emit_global_pool(struct exporter *x, const struct layer_spec *s, struct tensor *out,
                            struct error *err, const char *op)
{
    const struct tensor *in = input(x, s, 0);
    if (in->layout != LAYOUT_NCHW)
        return refuse(x, s, err, "its input is not an image");
    const char *pooled = sub_name(x, s, "pool"); /* (N, C, 1, 1) */
    onnx_graph_node(x->g, op, &in->name, 1, pooled);
    out->name = out_name(x, s);
    out->layout = LAYOUT_FLAT;
    onnx_graph_attr_int(x->g, onnx_graph_node(x->g, "Flatten", &pooled, 1, out->name), "axis", 1);
    return ERR_OK;
}

static int emit_global_avg(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    return emit_global_pool(x, s, out, err, "GlobalAveragePool");
}

static int emit_global_max(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    return emit_global_pool(x, s, out, err, "GlobalMaxPool");
}

/* Keras flattens (H, W, C) with C fastest: back to NHWC first, or Dense's weights would meet the wrong pixels. */
static int emit_flatten(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct tensor *in = input(x, s, 0);
    if (in->layout == LAYOUT_FLAT)
        return emit_identity(x, s, out, err);
    const char *nhwc = transpose(x, in->name, sub_name(x, s, "nhwc"), to_nhwc);
    out->name = out_name(x, s);
    out->layout = LAYOUT_FLAT;
    onnx_graph_attr_int(x->g, onnx_graph_node(x->g, "Flatten", &nhwc, 1, out->name), "axis", 1);
    return ERR_OK;
}

/* Gemm: (N, in) x kernel^T + bias with the kernel as (units, in), transB = 1: the form torch.onnx and tf2onnx
 * write, the one every importer reads (OpenCV 4.6 misreads transB = 0). */
static int emit_dense(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct dense_cfg *c = &s->u.dense;
    const struct tensor *in = input(x, s, 0);
    if (in->layout != LAYOUT_FLAT)
        return refuse(x, s, err, "its input is not a vector");
    const char *ins[3] = {in->name, sub_name(x, s, "kernel"), sub_name(x, s, "bias")};
    long n_in = s->in.c, units = c->units;
    int64_t kdims[2] = {units, n_in}, bdims[1] = {units};
    float *k = onnx_graph_init_f32(x->g, ins[1], kdims, 2);
    const float *w = weights(x, s, 0); /* (in, units) */
    for (long u = 0; k && u < units; u++)
        for (long i = 0; i < n_in; i++)
            k[u * n_in + i] = w[i * units + u];
    /* Without a bias, zeros: Gemm's C is optional, but not in every runtime's importer. */
    float *b = onnx_graph_init_f32(x->g, ins[2], bdims, 1);
    if (b && c->use_bias)
        memcpy(b, weights(x, s, 1), sizeof *b * (size_t)c->units);
    const char *pre = pre_activation(x, s, c->act);
    onnx_graph_attr_int(x->g, onnx_graph_node(x->g, "Gemm", ins, 3, pre), "transB", 1);
    activation(x, s, c->act, pre, out_name(x, s), LAYOUT_FLAT);
    *out = (struct tensor){out_name(x, s), LAYOUT_FLAT};
    return ERR_OK;
}

static int emit_activation(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct tensor *in = input(x, s, 0);
    if (s->u.act.act == ACT_LINEAR)
        return emit_identity(x, s, out, err);
    *out = (struct tensor){out_name(x, s), in->layout};
    activation(x, s, s->u.act.act, in->name, out->name, in->layout);
    return ERR_OK;
}

/* Inference form with the moving averages (not folded into the layer before: the graph keeps Keras's layers,
 * and a runtime folds it itself when it wants). On (N, C) and on NCHW alike, the channels are axis 1. */
static int emit_batchnorm(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct tensor *in = input(x, s, 0);
    static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const char *ins[5] = {in->name};
    int64_t dims[1] = {s->in.c};
    (void)err;
    for (int i = 0; i < 4; i++) {
        int j = param_index(s, names[i]);
        ins[i + 1] = sub_name(x, s, names[i]);
        float *v = onnx_graph_init_f32(x->g, ins[i + 1], dims, 1);
        for (long c = 0; v && c < s->in.c; c++)
            v[c] = j >= 0 ? weights(x, s, j)[c] : i == 0 ? 1.0f : 0.0f; /* no gamma: 1; no beta: 0 */
    }
    *out = (struct tensor){out_name(x, s), in->layout};
    onnx_graph_attr_float(x->g, onnx_graph_node(x->g, "BatchNormalization", ins, 5, out->name), "epsilon",
                          (float)s->u.bn.epsilon);
    return ERR_OK;
}

/* Add of two tensors, Sum of more (Keras's Add takes any number of equal shapes). */
static int emit_add(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const char *ins[LAYER_MAX_INPUTS];
    for (int k = 0; k < s->n_inputs; k++) {
        ins[k] = input(x, s, k)->name;
        if (input(x, s, k)->layout != input(x, s, 0)->layout)
            return refuse(x, s, err, "its inputs are not all images or all vectors");
    }
    *out = (struct tensor){out_name(x, s), input(x, s, 0)->layout};
    onnx_graph_node(x->g, s->n_inputs == 2 ? "Add" : "Sum", ins, s->n_inputs, out->name);
    return ERR_OK;
}

/* Keras's axis counts the batch: on (N, H, W, C) 1, 2, 3 = -3, -2, -1 are H, W, C, in NCHW 2, 3, 1. */
static int emit_concatenate(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const char *ins[LAYER_MAX_INPUTS];
    enum onnx_layout layout = input(x, s, 0)->layout;
    for (int k = 0; k < s->n_inputs; k++) {
        ins[k] = input(x, s, k)->name;
        if (input(x, s, k)->layout != layout)
            return refuse(x, s, err, "its inputs are not all images or all vectors");
    }
    int a = s->u.concat.axis, axis;
    if (layout == LAYOUT_FLAT) {
        if (a != -1 && a != 1)
            return refuse(x, s, err, "axis must be -1 or 1 on vectors");
        axis = 1;
    } else {
        static const int nchw[4] = {0, 2, 3, 1};
        if (a < 0)
            a += 4;
        if (a < 1 || a > 3)
            return refuse(x, s, err, "axis must be 1, 2, 3 (or -3, -2, -1) on images");
        axis = nchw[a];
    }
    *out = (struct tensor){out_name(x, s), layout};
    onnx_graph_attr_int(x->g, onnx_graph_node(x->g, "Concat", ins, s->n_inputs, out->name), "axis", axis);
    return ERR_OK;
}

/* Pad (opset 11 on: pads as an input, begins then ends of N, C, H, W). */
static int emit_zero_padding(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct zero_pad_cfg *c = &s->u.pad;
    const struct tensor *in = input(x, s, 0);
    if (in->layout != LAYOUT_NCHW)
        return refuse(x, s, err, "its input is not an image");
    int64_t p[8] = {0, 0, c->top, c->left, 0, 0, c->bottom, c->right};
    const char *ins[2] = {in->name, sub_name(x, s, "pads")};
    onnx_graph_init_i64(x->g, ins[1], p, 8);
    *out = (struct tensor){out_name(x, s), LAYOUT_NCHW};
    onnx_graph_node(x->g, "Pad", ins, 2, out->name); /* mode 'constant', value 0: the defaults */
    return ERR_OK;
}

/* Resize's scale for in -> out: out / in as a float32, raised to the next float while in x scale < out, so that
 * floor(in x scale), the output size runtimes compute (in float or double), is out. */
static float resize_scale(long in, long out)
{
    float s = (float)out / (float)in;
    while ((double)s * (double)in < (double)out)
        s = nextafterf(s, INFINITY);
    return s;
}

/* RandomCrop at inference is Keras's smart_resize (kernels/random_crop.c): `Slice` to the centred window with the
 * target's aspect ratio (augment_smart_window, the trainer's own rounding) when it is not the whole image, then
 * `Resize` linear with half-pixel centres, tf.image.resize's bilinear without antialiasing, when the window is not
 * the target's size. The activations are NCHW already: H and W are axes 2 and 3. Resize takes scales, not sizes:
 * sizes would fix the batch. An image of the target's size is unchanged: nothing is written. */
static int emit_random_crop(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err)
{
    const struct tensor *in = input(x, s, 0);
    if (s->out.h == s->in.h && s->out.w == s->in.w)
        return emit_identity(x, s, out, err);
    if (in->layout != LAYOUT_NCHW)
        return refuse(x, s, err, "its input is not an image");
    long top, left, ch, cw;
    augment_smart_window(s->in.h, s->in.w, s->out.h, s->out.w, &top, &left, &ch, &cw);
    int resize = ch != s->out.h || cw != s->out.w;
    *out = (struct tensor){out_name(x, s), LAYOUT_NCHW};
    const char *window = in->name;
    if (ch != s->in.h || cw != s->in.w) {
        int64_t starts[2] = {top, left}, ends[2] = {top + ch, left + cw}, axes[2] = {2, 3};
        const char *ins[4] = {in->name, sub_name(x, s, "starts"), sub_name(x, s, "ends"), sub_name(x, s, "axes")};
        onnx_graph_init_i64(x->g, ins[1], starts, 2);
        onnx_graph_init_i64(x->g, ins[2], ends, 2);
        onnx_graph_init_i64(x->g, ins[3], axes, 2);
        window = resize ? sub_name(x, s, "window") : out->name;
        onnx_graph_node(x->g, "Slice", ins, 4, window);
    }
    if (resize) {
        /* roi is an input before opset 13 and unused by half_pixel: empty, as it may be in every opset. */
        const char *ins[3] = {window, sub_name(x, s, "roi"), sub_name(x, s, "scales")};
        int64_t none[1] = {0}, four[1] = {4};
        onnx_graph_init_f32(x->g, ins[1], none, 1);
        float *scales = onnx_graph_init_f32(x->g, ins[2], four, 1);
        if (scales) {
            scales[0] = scales[1] = 1.0f;
            scales[2] = resize_scale(ch, s->out.h);
            scales[3] = resize_scale(cw, s->out.w);
        }
        Onnx__NodeProto *n = onnx_graph_node(x->g, "Resize", ins, 3, out->name);
        onnx_graph_attr_string(x->g, n, "mode", "linear");
        onnx_graph_attr_string(x->g, n, "coordinate_transformation_mode", "half_pixel");
    }
    return ERR_OK;
}

/* Every kind the export knows, by the model-file (Keras class) name, so that kinds added to kernels/ later
 * need one line here and nothing in kernels/. Dropout and the augmentation layers are the identity at
 * inference. */
static const struct onnx_kind {
    const char *name;
    int (*emit)(struct exporter *x, const struct layer_spec *s, struct tensor *out, struct error *err);
} onnx_kinds[] = {
    {"Conv2D", emit_conv2d},
    {"MaxPooling2D", emit_max_pool},
    {"AveragePooling2D", emit_avg_pool},
    {"GlobalAveragePooling2D", emit_global_avg},
    {"GlobalMaxPooling2D", emit_global_max},
    {"Flatten", emit_flatten},
    {"Dense", emit_dense},
    {"Dropout", emit_identity},
    {"Activation", emit_activation},
    {"BatchNormalization", emit_batchnorm},
    {"Add", emit_add},
    {"Concatenate", emit_concatenate},
    {"ZeroPadding2D", emit_zero_padding},
    {"RandomFlip", emit_identity},
    {"RandomTranslation", emit_identity},
    {"RandomRotation", emit_identity},
    {"RandomZoom", emit_identity},
    {"RandomCrop", emit_random_crop},
};

static const struct onnx_kind *find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof onnx_kinds / sizeof onnx_kinds[0]; i++)
        if (strcmp(onnx_kinds[i].name, name) == 0)
            return &onnx_kinds[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ the model */

/* `images` (N, H, W, C) -> [uint8: Cast, x 1/255 as the trainer scales] -> NCHW, the Input layer's tensor. */
static void emit_input(struct exporter *x, const struct onnx_export_opts *o)
{
    const struct layer_spec *s = &x->m->layers[0];
    struct onnx_graph *g = x->g;
    int64_t dims[4] = {o->batch > 0 ? o->batch : -1, s->out.h, s->out.w, s->out.c};
    onnx_graph_io(g, 0, "images", o->uint8_input ? ONNX__TENSOR_PROTO__DATA_TYPE__UINT8
                                                 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, 4);
    const char *pixels = "images";
    if (o->uint8_input) {
        const char *ins[2] = {sub_name(x, s, "float"), sub_name(x, s, "scale")};
        onnx_graph_attr_int(g, onnx_graph_node(g, "Cast", &pixels, 1, ins[0]), "to",
                            ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        int64_t one[1] = {1};
        float *scale = onnx_graph_init_f32(g, ins[1], one, 1);
        if (scale)
            scale[0] = 1.0f / 255.0f;
        pixels = sub_name(x, s, "scaled");
        onnx_graph_node(g, "Mul", ins, 2, pixels);
    }
    x->t[0] = (struct tensor){transpose(x, pixels, out_name(x, s), to_nchw), LAYOUT_NCHW};
}

/* The metadata: the trainer's version, what the input is, and the class names as a JSON array when known. */
static int write_model(struct exporter *x, const struct onnx_export_opts *o, const char *const *names,
                       int n_names, const char *path, struct error *err)
{
    const char *keys[4], *values[4];
    int n = 0;
    char *json_names = NULL;
    keys[n] = "trainer_version", values[n++] = TRAINER_VERSION;
    keys[n] = "images", values[n++] = o->uint8_input ? "uint8 (N, H, W, C), the raw pixels"
                                                     : "float32 (N, H, W, C), the pixels / 255";
    if (names && n_names > 0) {
        json_t *a = json_array();
        for (int i = 0; a && i < n_names; i++)
            json_array_append_new(a, json_string(names[i] ? names[i] : ""));
        json_names = a ? json_dumps(a, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(a);
        if (!json_names)
            return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
        keys[n] = "class_names", values[n++] = json_names;
    }
    static const int ir_of_opset[] = {[11] = 6, [12] = 7, [13] = 7, [14] = 7, [15] = 8, [16] = 8, [17] = 8};
    struct onnx_model_info info = {
        .opset = o->opset,
        .ir_version = ir_of_opset[o->opset], /* the oldest IR that has the opset: older runtimes read it */
        .producer_name = "trainer",
        .producer_version = TRAINER_VERSION,
        .doc = "Exported by trainer from a Keras model: input `images` NHWC, output `probabilities` (softmax).",
        .n_meta = n,
        .meta_keys = keys,
        .meta_values = values,
    };
    int rc = onnx_graph_write(x->g, &info, path, err);
    free(json_names);
    return rc;
}

int onnx_export(const char *path, const struct model *m, const float *params, const struct onnx_export_opts *o,
                const char *const *names, int n_names, const char *source, struct error *err)
{
    if (o->opset < ONNX_OPSET_MIN || o->opset > ONNX_OPSET_MAX)
        return error_set(err, ERR_USAGE, "opset %d: the export writes opsets %d to %d", o->opset, ONNX_OPSET_MIN,
                         ONNX_OPSET_MAX);
    struct exporter x = {.m = m, .params = params, .source = source ? source : "model"};
    int rc = ERR_OK;
    /* Refuse before anything is built or written. */
    for (int i = 1; i < m->n_layers; i++)
        if (!find_kind(m->layers[i].ops->name))
            return refuse(&x, &m->layers[i], err, "no ONNX form in this export");
    x.g = onnx_graph_create("trainer");
    x.t = calloc((size_t)m->n_layers, sizeof *x.t);
    if (!x.g || !x.t) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", path);
        goto done;
    }
    emit_input(&x, o);
    /* Layers are stored in topological order (every input edge points back), so one pass meets each layer
     * after all the layers it reads; it reads them through their edges, never as "the layer before". */
    for (int i = 1; i < m->n_layers && rc == ERR_OK; i++) {
        const struct layer_spec *s = &m->layers[i];
        rc = find_kind(s->ops->name)->emit(&x, s, &x.t[i], err);
    }
    if (rc)
        goto done;
    const struct tensor *last = &x.t[m->n_layers - 1];
    if (!last->name || strcmp(last->name, "probabilities") != 0)
        onnx_graph_node(x.g, "Identity", &last->name, 1, "probabilities");
    int64_t odims[2] = {o->batch > 0 ? o->batch : -1, m->n_classes};
    onnx_graph_io(x.g, 1, "probabilities", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, odims, 2);
    rc = write_model(&x, o, names, n_names, path, err);
done:
    onnx_graph_destroy(x.g);
    free(x.t);
    return rc;
}

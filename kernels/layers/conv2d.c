/* conv2d.c: Conv2D (Keras semantics) over oneDNN convolution primitives, activation fused as a post-op. */
#include <stdio.h>
#include <string.h>

#include "layer_common.h"
#include "weighted.h"

static const char *const padding_choices[] = {"valid", "same", NULL};

#define CONV_MAX_FILTERS 65536
#define CONV_MAX_KERNEL 4096

/* ---- parsing, shapes, text ---------------------------------------------------------------------------- */

/* An int or a pair of ints in [1, max] (`kernel_size`, `strides`). */
static int positive_pair(struct args *a, const char *key, int pos, int required, long dflt, long max, int out[2],
                         struct error *err)
{
    long v[2];
    int rc = args_pair(a, key, pos, required, dflt, v, err);
    if (rc)
        return rc;
    if (v[0] <= 0 || v[1] <= 0 || v[0] > max || v[1] > max)
        return args_error(a, layer_find_arg(a, key, pos), err, "'%s' must be between 1 and %ld, got (%ld, %ld)",
                          key, max, v[0], v[1]);
    out[0] = (int)v[0];
    out[1] = (int)v[1];
    return ERR_OK;
}

/* Keras: Conv2D(filters, kernel_size, strides=(1, 1), padding='valid', data_format=None, dilation_rate=(1, 1),
 * groups=1, activation=None, use_bias=True, ...). Only the first four are taken by position: Keras's fifth
 * is data_format, which is not supported (channels-last only), so activation and use_bias are keyword-only
 * here rather than meaning something else than in Keras. */
static int conv_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct conv_cfg *c = &spec->u.conv;
    long filters;
    int k[2], s[2];
    int rc = args_int(a, "filters", 0, 1, 0, &filters, err);
    if (rc)
        return rc;
    if (filters <= 0 || filters > CONV_MAX_FILTERS)
        return args_error(a, layer_find_arg(a, "filters", 0), err, "'filters' must be between 1 and %d, got %ld",
                          CONV_MAX_FILTERS, filters);
    if ((rc = positive_pair(a, "kernel_size", 1, 1, 0, CONV_MAX_KERNEL, k, err)) ||
        (rc = positive_pair(a, "strides", 2, 0, 1, CONV_MAX_KERNEL, s, err)) ||
        (rc = args_choice(a, "padding", 3, padding_choices, 0, &c->same, err)) ||
        (rc = layer_args_activation(a, -1, &c->act, err)) ||
        (rc = args_bool(a, "use_bias", -1, 1, &c->use_bias, err)) ||
        (rc = args_choice(a, "kernel_initializer", -1, initializer_names, INIT_GLOROT_UNIFORM, &c->kernel_init, err)) ||
        (rc = args_regularizer(a, "kernel_regularizer", &c->kernel_reg, err)))
        return rc;
    if (c->act == ACT_SOFTMAX)
        return args_error(a, layer_find_arg(a, "activation", -1), err,
                          "softmax is only supported on the last Dense layer or as a final Activation");
    c->filters = (int)filters;
    c->kh = k[0];
    c->kw = k[1];
    c->sh = s[0];
    c->sw = s[1];
    return ERR_OK;
}

static int conv_infer(struct layer_spec *spec, struct error *err)
{
    const struct conv_cfg *c = &spec->u.conv;
    const struct shape *in = &spec->in;
    if (in->rank != 3)
        return layer_spec_error(spec, err,
                                "Conv2D needs an (height, width, channels) input, not %d flat features", in->c);
    if (c->filters <= 0 || c->kh <= 0 || c->kw <= 0 || c->sh <= 0 || c->sw <= 0)
        return layer_spec_error(spec, err, "filters, kernel size and strides must be positive");
    if (c->act == ACT_SOFTMAX)
        return layer_spec_error(spec, err,
                                "softmax is only supported on the last Dense layer or as a final Activation");
    if (!c->same && (c->kh > in->h || c->kw > in->w))
        return layer_spec_error(spec, err, "kernel %dx%d is larger than its %dx%d input", c->kh, c->kw, in->h,
                                in->w);
    spec->out = (struct shape){3, layer_out_size(in->h, c->kh, c->sh, c->same),
                               layer_out_size(in->w, c->kw, c->sw, c->same), c->filters};
    long kdims[4] = {c->kh, c->kw, in->c, c->filters}, bdims[1] = {c->filters};
    layer_set_param(&spec->params[0], "kernel", 4, kdims);
    if (c->use_bias)
        layer_set_param(&spec->params[1], "bias", 1, bdims);
    spec->n_params = c->use_bias ? 2 : 1;
    return ERR_OK;
}

static int conv_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    const struct conv_cfg *c = &spec->u.conv;
    char init[64] = "";
    if (c->kernel_init != INIT_GLOROT_UNIFORM) /* written only when set: older files keep their text */
        snprintf(init, sizeof init, ", kernel_initializer='%s'", initializer_names[c->kernel_init]);
    char reg[96];
    layer_regularizer_text(&c->kernel_reg, "kernel_regularizer", reg, sizeof reg);
    return snprintf(buf, size,
                    "Conv2D(filters=%d, kernel_size=(%d, %d), strides=(%d, %d), padding='%s', activation='%s', "
                    "use_bias=%s%s%s)",
                    c->filters, c->kh, c->kw, c->sh, c->sw, padding_choices[c->same != 0], activation_names[c->act],
                    c->use_bias ? "True" : "False", init, reg);
}

/* Keras defaults: kernel glorot_uniform over (kh, kw, in, out) with fan_in = kh*kw*in, fan_out = kh*kw*out;
 * bias zeros. */
static void conv_init_params(const struct layer_spec *spec, float *w, double (*rnd)(void *), void *state)
{
    const struct param_info *k = &spec->params[0];
    long field = k->dims[0] * k->dims[1];
    layer_init_kernel_bias(spec, w, field * k->dims[2], field * k->dims[3], rnd, state);
}

static double conv_forward_macs(const struct layer_spec *s)
{
    return (double)shape_size(&s->out) * s->u.conv.kh * s->u.conv.kw * s->in.c;
}

/* ---- runtime ---------------------------------------------------------------------------------------- */

/* oneDNN's shapes of this convolution, with Keras's 'same' padding (extra row/column bottom/right). Data is
 * logical (N, C, H, W), weights (O, I, KH, KW). */
struct conv_geom {
    dnnl_dims_t src, wei, bias, dst, strides, pad_l, pad_r;
};

static void conv_geom(const struct layer *l, struct conv_geom *g)
{
    const struct layer_spec *s = l->spec;
    const struct conv_cfg *c = &s->u.conv;
    int pt = 0, pb = 0, pl = 0, pr = 0;
    if (c->same) {
        layer_same_padding(s->in.h, c->kh, c->sh, &pt, &pb);
        layer_same_padding(s->in.w, c->kw, c->sw, &pl, &pr);
    }
    memset(g, 0, sizeof *g);
    g->src[0] = l->n, g->src[1] = s->in.c, g->src[2] = s->in.h, g->src[3] = s->in.w;
    g->wei[0] = c->filters, g->wei[1] = s->in.c, g->wei[2] = c->kh, g->wei[3] = c->kw;
    g->bias[0] = c->filters;
    g->dst[0] = l->n, g->dst[1] = c->filters, g->dst[2] = s->out.h, g->dst[3] = s->out.w;
    g->strides[0] = c->sh, g->strides[1] = c->sw;
    g->pad_l[0] = pt, g->pad_l[1] = pl;
    g->pad_r[0] = pb, g->pad_r[1] = pr;
}

/* The three convolutions weighted_create makes primitives of; they live in the caller's frame. */
struct conv_descs {
    dnnl_convolution_desc_t fwd, bwd_w, bwd_d;
};

/* Winograd's F(4x4, 3x3) does a 3x3 convolution with a quarter of the multiplications, at the price of its
 * transforms, which only wide layers repay: measured on resnet20 (AVX-512, 2 threads, batch 128), forward is
 * faster from 32 channels in and out (1.49 -> 1.22 ms at 16x16x32) and slower at 16 (2.0 -> 2.7 ms at
 * 32x32x16), the backward pair faster from 64 (3.2 -> 2.0 ms at 8x8x64) and even at 32; the input gradient
 * takes it from 64, the weight gradient never (below). oneDNN has it for
 * AVX-512 f32 only, on stride 1 and channels in blocks of 16; elsewhere, or when oneDNN declines a shape, the
 * direct algorithm runs. Only linear convolutions (a BatchNormalization follows, as in ResNets) take it: the
 * seed's Conv2D + ReLU models keep the direct kernels they were measured with. The results differ from the
 * direct algorithm's by float rounding, as another summation order would. */
#define WINOGRAD_MIN_FWD 32
#define WINOGRAD_MIN_BWD_DATA 64

static int winograd_shape(const struct layer *l, const struct conv_geom *g, int min_channels)
{
    return l->spec->u.conv.act == ACT_LINEAR && g->wei[2] == 3 && g->wei[3] == 3 && g->strides[0] == 1 && g->strides[1] == 1 && g->wei[0] % 16 == 0 &&
           g->wei[1] % 16 == 0 && g->wei[0] >= min_channels && g->wei[1] >= min_channels;
}

/* Whether oneDNN implements the descriptor (with the forward hint for a backward one). */
static int implemented(const void *desc, const struct dnn *d, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, desc, NULL, d->engine, hint) != dnnl_success)
        return 0;
    dnnl_primitive_desc_destroy(pd);
    return 1;
}

/* Describes this Conv2D to weighted_create: the slab holds the kernel as Keras's (kh, kw, in, out), which
 * is oneDNN's hwio; src, weights and dst are left to oneDNN (format_any). */
static int conv_describe(const struct layer *l, const struct conv_geom *g, const struct dnn *d, int need_diff_src,
                         struct conv_descs *cd, struct weighted_desc *wd, struct error *err)
{
    const dnnl_memory_desc_t *bias = l->spec->u.conv.use_bias ? &wd->bias_md : NULL;
    dnnl_memory_desc_t src, wei, dst;
    dnnl_primitive_desc_t hint = NULL;
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&src, 4, g->src, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wei, 4, g->wei, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&dst, 4, g->dst, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wd->wei_md, 4, g->wei, dnnl_f32, dnnl_hwio));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wd->bias_md, 1, g->bias, dnnl_f32, dnnl_x));
    int wf = winograd_shape(l, g, WINOGRAD_MIN_FWD), wd_data = winograd_shape(l, g, WINOGRAD_MIN_BWD_DATA);
    if (wf) {
        DNN_CHECK(dnnl_convolution_forward_desc_init(&cd->fwd, dnnl_forward_training, dnnl_convolution_winograd,
                                                     &src, &wei, bias, &dst, g->strides, g->pad_l, g->pad_r));
        wf = implemented(&cd->fwd, d, NULL);
    }
    if (!wf)
        DNN_CHECK(dnnl_convolution_forward_desc_init(&cd->fwd, dnnl_forward_training, dnnl_convolution_direct, &src,
                                                     &wei, bias, &dst, g->strides, g->pad_l, g->pad_r));
    /* The weight gradient, a sum over the batch, stays direct: Winograd's larger rounding in that sum grew, over
     * 30 steps of resnet20, into 1.2e-4 between 1 and 2 ranks (1.6e-5 direct), past what "the same training on
     * any number of ranks" allows. Forward and the input gradient are per image: the same on any rank count. */
    DNN_CHECK(dnnl_convolution_backward_weights_desc_init(&cd->bwd_w, dnnl_convolution_direct, &src, &wei, bias, &dst,
                                                          g->strides, g->pad_l, g->pad_r));
    if (wd_data) {
        DNN_CHECK(dnnl_primitive_desc_create(&hint, &cd->fwd, NULL, d->engine, NULL));
        DNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd->bwd_d, dnnl_convolution_winograd, &src, &wei, &dst,
                                                           g->strides, g->pad_l, g->pad_r));
        wd_data = implemented(&cd->bwd_d, d, hint);
        dnnl_primitive_desc_destroy(hint);
        hint = NULL;
    }
    if (!wd_data)
        DNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd->bwd_d, dnnl_convolution_direct, &src, &wei, &dst,
                                                           g->strides, g->pad_l, g->pad_r));
    wd->fwd = &cd->fwd;
    wd->bwd_w = &cd->bwd_w;
    wd->bwd_d = need_diff_src ? &cd->bwd_d : NULL;
    wd->act = l->spec->u.conv.act;
    return ERR_OK;
fail:
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    return err ? err->code : ERR_INTERNAL;
}

static int conv_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    struct conv_geom g;
    struct conv_descs cd;
    struct weighted_desc wd;
    int rc;
    l->dst = l->diff_src = NULL;
    l->priv = NULL;
    if (!weighted_act_fusable(l->spec->u.conv.act))
        return error_set(err, ERR_INPUT, "%s: Conv2D supports linear, relu, sigmoid and tanh activations",
                         l->spec->name);
    conv_geom(l, &g);
    if ((rc = conv_describe(l, &g, d, need_diff_src, &cd, &wd, err)))
        return rc;
    return weighted_create(l, d, &wd, err);
}

const struct layer_ops layer_conv2d = {
    .name = "Conv2D",
    .keras_prefix = "conv2d",
    .parse = conv_parse,
    .infer = conv_infer,
    .create = conv_create,
    .forward = weighted_forward,
    .backward = weighted_backward,
    .destroy = weighted_destroy,
    .init_params = conv_init_params,
    .to_text = conv_to_text,
    .forward_macs = conv_forward_macs,
};

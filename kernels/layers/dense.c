/* dense.c: Dense (Keras semantics) over oneDNN inner-product primitives, activation fused as a post-op. */
#include <stdio.h>
#include <string.h>

#include "layer_common.h"
#include "weighted.h"

#define DENSE_MAX_UNITS (1L << 24)

/* ---- parsing, shapes, text ---------------------------------------------------------------------------- */

/* Keras: Dense(units, activation=None, use_bias=True, ...). softmax is accepted here; that it is the model's
 * last layer is checked by the model reader. */
static int dense_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    struct dense_cfg *c = &spec->u.dense;
    long units;
    int rc = args_int(a, "units", 0, 1, 0, &units, err);
    if (rc)
        return rc;
    if (units <= 0 || units > DENSE_MAX_UNITS)
        return args_error(a, layer_find_arg(a, "units", 0), err, "'units' must be between 1 and %ld, got %ld",
                          DENSE_MAX_UNITS, units);
    if ((rc = layer_args_activation(a, 1, &c->act, err)) ||
        (rc = args_bool(a, "use_bias", 2, 1, &c->use_bias, err)) ||
        (rc = args_choice(a, "kernel_initializer", -1, initializer_names, INIT_GLOROT_UNIFORM, &c->kernel_init, err)) ||
        (rc = args_regularizer(a, "kernel_regularizer", &c->kernel_reg, err)))
        return rc;
    c->units = (int)units;
    return ERR_OK;
}

static int dense_infer(struct layer_spec *spec, struct error *err)
{
    const struct dense_cfg *c = &spec->u.dense;
    if (spec->in.rank != 1)
        return layer_spec_error(spec, err, "Dense needs a flat input: add Flatten() or a global pooling before it");
    if (c->units <= 0)
        return layer_spec_error(spec, err, "units must be positive");
    spec->out = (struct shape){1, 1, 1, c->units};
    long kdims[2] = {spec->in.c, c->units}, bdims[1] = {c->units};
    layer_set_param(&spec->params[0], "kernel", 2, kdims);
    if (c->use_bias)
        layer_set_param(&spec->params[1], "bias", 1, bdims);
    spec->n_params = c->use_bias ? 2 : 1;
    return ERR_OK;
}

static int dense_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    const struct dense_cfg *c = &spec->u.dense;
    char init[64] = "";
    if (c->kernel_init != INIT_GLOROT_UNIFORM)
        snprintf(init, sizeof init, ", kernel_initializer='%s'", initializer_names[c->kernel_init]);
    char reg[96];
    layer_regularizer_text(&c->kernel_reg, "kernel_regularizer", reg, sizeof reg);
    return snprintf(buf, size, "Dense(units=%d, activation='%s', use_bias=%s%s%s)", c->units, activation_names[c->act],
                    c->use_bias ? "True" : "False", init, reg);
}

/* Keras defaults: kernel (in, units) glorot_uniform with fan_in = in, fan_out = units; bias zeros. */
static void dense_init_params(const struct layer_spec *spec, float *w, double (*rnd)(void *), void *state)
{
    const struct param_info *k = &spec->params[0];
    layer_init_kernel_bias(spec, w, k->dims[0], k->dims[1], rnd, state);
}

static double dense_forward_macs(const struct layer_spec *s) { return (double)s->in.c * s->u.dense.units; }

/* ---- runtime ---------------------------------------------------------------------------------------- */

/* oneDNN's shapes of this inner product. The source keeps the rank the previous layer gave it (a global
 * pooling may leave (N, C, 1, 1)); the weights then get as many dims, with 1x1 spatial. */
struct dense_geom {
    int ndims;
    dnnl_dims_t src, wei, bias, dst;
    dnnl_format_tag_t wei_tag; /* Keras (in, units) order: io, or hwio when 4-D */
};

static int dense_geom(const struct layer *l, struct dense_geom *g, struct error *err)
{
    const dnnl_memory_desc_t *s = &l->src_md;
    const struct dense_cfg *c = &l->spec->u.dense;
    memset(g, 0, sizeof *g);
    g->ndims = s->ndims;
    if ((s->ndims != 2 && s->ndims != 4) || s->dims[0] != l->n || s->dims[1] != l->spec->in.c ||
        (s->ndims == 4 && (s->dims[2] != 1 || s->dims[3] != 1)))
        return error_set(err, ERR_INTERNAL, "%s: Dense got a %d-D input that is not (%d, %d)", l->spec->name,
                         s->ndims, l->n, l->spec->in.c);
    for (int i = 0; i < s->ndims; i++) {
        g->src[i] = s->dims[i];
        g->wei[i] = s->dims[i];
    }
    g->wei[0] = c->units;
    g->bias[0] = c->units;
    g->dst[0] = l->n;
    g->dst[1] = c->units;
    g->wei_tag = s->ndims == 2 ? dnnl_io : dnnl_hwio;
    return ERR_OK;
}

/* The activation the layer computes: the model's final softmax is left to the loss (logits here). */
static enum activation layer_act(const struct layer_spec *spec)
{
    enum activation a = spec->u.dense.act;
    return a == ACT_SOFTMAX && spec->softmax_in_loss ? ACT_LINEAR : a;
}

/* The three inner products weighted_create makes primitives of; they live in the caller's frame. */
struct dense_descs {
    dnnl_inner_product_desc_t fwd, bwd_w, bwd_d;
};

/* Describes this Dense to weighted_create: the slab holds the kernel as Keras's (in, units), oneDNN's io (or
 * hwio with 1x1 spatial); src is left to oneDNN (format_any), dst is (N, OC). The weights are asked for in
 * the slab's own layout when `slab_layout` (oneDNN then runs its gemm implementation on the slab directly:
 * no weight reorder forward or backward, and the weight gradient lands in the gradient slab as computed),
 * else left to oneDNN. */
static int dense_describe(const struct layer *l, const struct dense_geom *g, int need_diff_src, int slab_layout,
                          struct dense_descs *dd, struct weighted_desc *wd, struct error *err)
{
    const dnnl_memory_desc_t *bias = l->spec->u.dense.use_bias ? &wd->bias_md : NULL;
    dnnl_memory_desc_t src, wei, dst;
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&src, g->ndims, g->src, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wei, g->ndims, g->wei, dnnl_f32,
                                           slab_layout ? g->wei_tag : dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&dst, 2, g->dst, dnnl_f32, dnnl_format_tag_any));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wd->wei_md, g->ndims, g->wei, dnnl_f32, g->wei_tag));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wd->bias_md, 1, g->bias, dnnl_f32, dnnl_x));
    DNN_CHECK(dnnl_inner_product_forward_desc_init(&dd->fwd, dnnl_forward_training, &src, &wei, bias, &dst));
    DNN_CHECK(dnnl_inner_product_backward_weights_desc_init(&dd->bwd_w, &src, &wei, bias, &dst));
    if (need_diff_src)
        DNN_CHECK(dnnl_inner_product_backward_data_desc_init(&dd->bwd_d, &src, &wei, &dst));
    wd->fwd = &dd->fwd;
    wd->bwd_w = &dd->bwd_w;
    wd->bwd_d = need_diff_src ? &dd->bwd_d : NULL;
    wd->act = layer_act(l->spec);
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

static int dense_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    struct dense_geom g;
    struct dense_descs dd;
    struct weighted_desc wd;
    enum activation act = layer_act(l->spec);
    int rc;
    l->dst = l->diff_src = NULL;
    l->priv = NULL;
    if (act == ACT_SOFTMAX)
        return error_set(err, ERR_INPUT, "%s: a softmax Dense must be the model's last layer (its softmax is "
                         "computed with the loss)", l->spec->name);
    if (!weighted_act_fusable(act))
        return error_set(err, ERR_INPUT, "%s: unsupported activation", l->spec->name);
    if ((rc = dense_geom(l, &g, err)))
        return rc;
    /* The per-step reorder of a 576x500 kernel to oneDNN's blocked layout and of its gradient back cost more
     * (0.2 ms at batch 32) than the blocked brgemm kernel saves: use the slab's layout when oneDNN can. */
    if ((rc = dense_describe(l, &g, need_diff_src, 1, &dd, &wd, err)) == ERR_OK &&
        weighted_create(l, d, &wd, NULL) == ERR_OK)
        return ERR_OK;
    if ((rc = dense_describe(l, &g, need_diff_src, 0, &dd, &wd, err)))
        return rc;
    return weighted_create(l, d, &wd, err);
}

const struct layer_ops layer_dense = {
    .name = "Dense",
    .keras_prefix = "dense",
    .parse = dense_parse,
    .infer = dense_infer,
    .create = dense_create,
    .forward = weighted_forward,
    .backward = weighted_backward,
    .destroy = weighted_destroy,
    .init_params = dense_init_params,
    .forward_macs = dense_forward_macs,
    .to_text = dense_to_text,
};

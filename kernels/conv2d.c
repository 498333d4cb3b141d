/* conv2d.c: Conv2D (Keras semantics) over oneDNN convolution primitives, activation fused as a post-op. */
#include "layer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What `activation=` accepts: activation_names in enum order, then None (= linear). */
static const char *const act_choices[] = {"linear", "relu", "softmax", "sigmoid", "tanh", "None", NULL};
#define ACT_CHOICE_NONE 5
static const char *const padding_choices[] = {"valid", "same", NULL};

#define CONV_MAX_FILTERS 65536
#define CONV_MAX_KERNEL 4096

/* ---- parsing, shapes, text ---------------------------------------------------------------------------- */

/* The argument given as keyword `key` or at position `pos` (pos < 0: keyword only), for its column. */
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

/* An int or a pair of ints in [1, max] (`kernel_size`, `strides`). */
static int positive_pair(struct args *a, const char *key, int pos, int required, long dflt, long max, int out[2],
                         struct error *err)
{
    long v[2];
    int rc = args_pair(a, key, pos, required, dflt, v, err);
    if (rc)
        return rc;
    if (v[0] <= 0 || v[1] <= 0 || v[0] > max || v[1] > max)
        return args_error(a, find_arg(a, key, pos), err, "'%s' must be between 1 and %ld, got (%ld, %ld)", key,
                          max, v[0], v[1]);
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
    int k[2], s[2], act;
    int rc = args_int(a, "filters", 0, 1, 0, &filters, err);
    if (rc)
        return rc;
    if (filters <= 0 || filters > CONV_MAX_FILTERS)
        return args_error(a, find_arg(a, "filters", 0), err, "'filters' must be between 1 and %d, got %ld",
                          CONV_MAX_FILTERS, filters);
    if ((rc = positive_pair(a, "kernel_size", 1, 1, 0, CONV_MAX_KERNEL, k, err)) ||
        (rc = positive_pair(a, "strides", 2, 0, 1, CONV_MAX_KERNEL, s, err)) ||
        (rc = args_choice(a, "padding", 3, padding_choices, 0, &c->same, err)) ||
        (rc = args_choice(a, "activation", -1, act_choices, ACT_CHOICE_NONE, &act, err)) ||
        (rc = args_bool(a, "use_bias", -1, 1, &c->use_bias, err)))
        return rc;
    if (act == ACT_SOFTMAX)
        return args_error(a, find_arg(a, "activation", -1), err,
                          "softmax is only supported on the last Dense layer or as a final Activation");
    c->filters = (int)filters;
    c->kh = k[0];
    c->kw = k[1];
    c->sh = s[0];
    c->sw = s[1];
    c->act = act == ACT_CHOICE_NONE ? ACT_LINEAR : (enum activation)act;
    return ERR_OK;
}

/* ERR_INPUT "line L: NAME: what"; the model reader puts the file name in front. */
static int spec_error(const struct layer_spec *spec, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int spec_error(const struct layer_spec *spec, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (spec->line > 0)
        return error_set(err, ERR_INPUT, "line %d: %s: %s", spec->line, spec->name, what);
    return error_set(err, ERR_INPUT, "%s: %s", spec->name, what);
}

static void set_param(struct param_info *p, const char *name, int rank, const long *dims)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->rank = rank;
    p->size = 1;
    for (int i = 0; i < rank; i++) {
        p->dims[i] = dims[i];
        p->size *= (size_t)dims[i];
    }
}

static int conv_infer(struct layer_spec *spec, struct error *err)
{
    const struct conv_cfg *c = &spec->u.conv;
    const struct shape *in = &spec->in;
    if (in->rank != 3)
        return spec_error(spec, err, "Conv2D needs an (height, width, channels) input, not %d flat features",
                          in->c);
    if (c->filters <= 0 || c->kh <= 0 || c->kw <= 0 || c->sh <= 0 || c->sw <= 0)
        return spec_error(spec, err, "filters, kernel size and strides must be positive");
    if (c->act == ACT_SOFTMAX)
        return spec_error(spec, err, "softmax is only supported on the last Dense layer or as a final Activation");
    if (!c->same && (c->kh > in->h || c->kw > in->w))
        return spec_error(spec, err, "kernel %dx%d is larger than its %dx%d input", c->kh, c->kw, in->h, in->w);
    spec->out = (struct shape){3, layer_out_size(in->h, c->kh, c->sh, c->same),
                               layer_out_size(in->w, c->kw, c->sw, c->same), c->filters};
    long kdims[4] = {c->kh, c->kw, in->c, c->filters}, bdims[1] = {c->filters};
    set_param(&spec->params[0], "kernel", 4, kdims);
    if (c->use_bias)
        set_param(&spec->params[1], "bias", 1, bdims);
    spec->n_params = c->use_bias ? 2 : 1;
    return ERR_OK;
}

static int conv_to_text(const struct layer_spec *spec, char *buf, size_t size)
{
    const struct conv_cfg *c = &spec->u.conv;
    return snprintf(buf, size,
                    "Conv2D(filters=%d, kernel_size=(%d, %d), strides=(%d, %d), padding='%s', activation='%s', "
                    "use_bias=%s)",
                    c->filters, c->kh, c->kw, c->sh, c->sw, padding_choices[c->same != 0], activation_names[c->act],
                    c->use_bias ? "True" : "False");
}

/* Keras defaults: kernel glorot_uniform over (kh, kw, in, out) with fan_in = kh*kw*in, fan_out = kh*kw*out;
 * bias zeros. */
static void conv_init_params(const struct layer_spec *spec, float *w, double (*rnd)(void *), void *state)
{
    const struct param_info *k = &spec->params[0];
    long field = k->dims[0] * k->dims[1];
    layer_glorot_uniform(w, k->size, field * k->dims[2], field * k->dims[3], rnd, state);
    if (spec->n_params > 1) {
        float *b = w + (spec->params[1].offset - k->offset);
        memset(b, 0, sizeof(float) * spec->params[1].size);
    }
}

/* ---- runtime ---------------------------------------------------------------------------------------- */

/* Primitives and memories of one Conv2D for one batch size, all made in create(). Tensors are logical
 * (N, C, H, W) for data and (O, I, KH, KW) for weights; their layouts are what oneDNN chose unless said. */
struct conv_rt {
    dnnl_primitive_t fwd;      /* convolution forward_training with the activation as a post-op */
    dnnl_primitive_t act_bwd;  /* eltwise backward from the forward dst; NULL for linear */
    dnnl_primitive_t bwd_w;    /* convolution backward_weights (and bias) */
    dnnl_primitive_t bwd_d;    /* convolution backward_data; NULL when no diff_src is wanted */
    dnnl_memory_t w_slab;      /* (O, I, KH, KW) hwio = Keras (kh, kw, in, out), over l->w (not owned data) */
    dnnl_memory_t dw_slab;     /* same over l->dw */
    dnnl_memory_t b_slab;      /* (O) x over the bias in l->w; NULL without bias */
    dnnl_memory_t db_slab;     /* same in l->dw */
    struct dnn_reorder src_fwd; /* l->src_md -> fwd's src layout */
    struct dnn_reorder w_fwd;   /* hwio slab -> fwd's weights layout, every step (the optimizer moved them) */
    struct dnn_reorder src_bwd; /* l->src_md -> bwd_w's src layout, when not fwd's (else src_shared) */
    int src_shared;
    struct dnn_reorder w_bwd;   /* hwio slab -> bwd_d's weights layout, when not fwd's (else w_shared) */
    int w_shared;
    dnnl_memory_t ddst_act;     /* (N, F, OH, OW) in l->dst_md: diff_dst through the activation's derivative */
    struct dnn_reorder ddst_w;  /* l->dst_md -> bwd_w's diff_dst layout */
    struct dnn_reorder ddst_d;  /* l->dst_md -> bwd_d's diff_dst layout */
    dnnl_memory_t dw_prim;      /* (O, I, KH, KW) in bwd_w's layout; NULL when that is hwio (writes the slab) */
    struct dnn_reorder dw_out;  /* dw_prim -> dw_slab (its own dst dropped: we reorder into the slab) */
    dnnl_memory_t dsrc_prim;    /* (N, C, H, W) in bwd_d's diff_src layout; NULL when that is l->src_md */
    struct dnn_reorder dsrc_out; /* dsrc_prim -> l->diff_src (own dst dropped) */
};

/* oneDNN's shapes of this convolution, with Keras's 'same' padding (extra row/column bottom/right). */
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

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, int arg)
{
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

static dnnl_status_t md_any(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims)
{
    return dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, dnnl_format_tag_any);
}

/* The eltwise algorithm that computes the activation's derivative from the forward *output*, so backward
 * needs no copy of the pre-activation. */
static dnnl_alg_kind_t act_bwd_alg(enum activation act)
{
    switch (act) {
    case ACT_RELU: return dnnl_eltwise_relu_use_dst_for_bwd;
    case ACT_SIGMOID: return dnnl_eltwise_logistic_use_dst_for_bwd;
    case ACT_TANH: return dnnl_eltwise_tanh_use_dst_for_bwd;
    default: return dnnl_alg_kind_undef;
    }
}

/* A post-op attribute applying the activation to the convolution's output (*attr NULL when linear). */
static int act_attr(enum activation act, dnnl_primitive_attr_t *attr, struct error *err)
{
    static const dnnl_alg_kind_t fwd_alg[] = {[ACT_RELU] = dnnl_eltwise_relu, [ACT_SIGMOID] = dnnl_eltwise_logistic,
                                              [ACT_TANH] = dnnl_eltwise_tanh};
    dnnl_post_ops_t po = NULL;
    *attr = NULL;
    if (act == ACT_LINEAR)
        return ERR_OK;
    DNN_CHECK(dnnl_post_ops_create(&po));
    DNN_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, fwd_alg[act], 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_attr_create(attr));
    DNN_CHECK(dnnl_primitive_attr_set_post_ops(*attr, po));
    dnnl_post_ops_destroy(po);
    return ERR_OK;
fail:
    if (po)
        dnnl_post_ops_destroy(po);
    if (*attr)
        dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return err ? err->code : ERR_INTERNAL;
}

/* A reorder that writes into memory we do not own (the gradient slab, l->diff_src): its own destination
 * buffer is never used, so it is freed at once. */
static int reorder_into_init(struct dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                             const struct dnn *d, struct error *err)
{
    int rc = dnn_reorder_init(r, from, to, d, err);
    if (rc == ERR_OK && r->dst) {
        dnnl_memory_destroy(r->dst);
        r->dst = NULL;
    }
    return rc;
}

/* Memories over the slabs in Keras layout. Their handles are set again every step (set_handles). */
static int wrap_slabs(struct layer *l, const struct dnn *d, const struct conv_geom *g, struct error *err)
{
    struct conv_rt *rt = l->priv;
    dnnl_memory_desc_t wmd, bmd;
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 4, g->wei, dnnl_f32, dnnl_hwio));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 1, g->bias, dnnl_f32, dnnl_x));
    DNN_CHECK(dnnl_memory_create(&rt->w_slab, &wmd, d->engine, l->w));
    DNN_CHECK(dnnl_memory_create(&rt->dw_slab, &wmd, d->engine, l->dw));
    if (l->spec->u.conv.use_bias) {
        size_t off = l->spec->params[1].offset - l->spec->params[0].offset;
        DNN_CHECK(dnnl_memory_create(&rt->b_slab, &bmd, d->engine, l->w + off));
        DNN_CHECK(dnnl_memory_create(&rt->db_slab, &bmd, d->engine, l->dw + off));
    }
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* The slabs may have been reallocated (a network loading a checkpoint): point the views at l->w, l->dw. */
static int set_handles(struct layer *l, struct error *err)
{
    struct conv_rt *rt = l->priv;
    size_t off = l->spec->n_params > 1 ? l->spec->params[1].offset - l->spec->params[0].offset : 0;
    DNN_CHECK(dnnl_memory_set_data_handle(rt->w_slab, l->w));
    DNN_CHECK(dnnl_memory_set_data_handle(rt->dw_slab, l->dw));
    if (rt->b_slab) {
        DNN_CHECK(dnnl_memory_set_data_handle(rt->b_slab, l->w + off));
        DNN_CHECK(dnnl_memory_set_data_handle(rt->db_slab, l->dw + off));
    }
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* Forward: layouts left to oneDNN; l->dst_md becomes what it chose for dst. */
static int create_fwd(struct layer *l, const struct dnn *d, const struct conv_geom *g, dnnl_primitive_desc_t *pd,
                      struct error *err)
{
    struct conv_rt *rt = l->priv;
    const struct conv_cfg *c = &l->spec->u.conv;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    DNN_CHECK(md_any(&src, 4, g->src));
    DNN_CHECK(md_any(&wei, 4, g->wei));
    DNN_CHECK(md_any(&dst, 4, g->dst));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&bias, 1, g->bias, dnnl_f32, dnnl_x));
    DNN_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
                                                 c->use_bias ? &bias : NULL, &dst, g->strides, g->pad_l, g->pad_r));
    if (act_attr(c->act, &attr, err) != ERR_OK)
        goto fail;
    DNN_CHECK(dnnl_primitive_desc_create(pd, &cd, attr, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(&rt->fwd, *pd));
    l->dst_md = *pd_md(*pd, DNNL_ARG_DST);
    DNN_CHECK(dnnl_memory_create(&l->dst, &l->dst_md, d->engine, DNNL_MEMORY_ALLOCATE));
    if (dnn_reorder_init(&rt->src_fwd, &l->src_md, pd_md(*pd, DNNL_ARG_SRC), d, err) != ERR_OK ||
        dnn_reorder_init(&rt->w_fwd, dnn_md_of(rt->w_slab), pd_md(*pd, DNNL_ARG_WEIGHTS), d, err) != ERR_OK)
        goto fail;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return ERR_OK;
fail:
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return err ? err->code : ERR_INTERNAL;
}

/* The activation's derivative, applied to diff_dst in place of a separate eltwise layer. */
static int create_act_bwd(struct layer *l, const struct dnn *d, struct error *err)
{
    struct conv_rt *rt = l->priv;
    dnnl_alg_kind_t alg = act_bwd_alg(l->spec->u.conv.act);
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    if (alg == dnnl_alg_kind_undef)
        return ERR_OK;
    /* oneDNN wants a forward descriptor of the same algorithm as a hint for the backward one. */
    DNN_CHECK(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, alg, &l->dst_md, 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_desc_create(&hint, &fd, NULL, d->engine, NULL));
    DNN_CHECK(dnnl_eltwise_backward_desc_init(&bd, alg, &l->dst_md, &l->dst_md, 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_desc_create(&pd, &bd, NULL, d->engine, hint));
    DNN_CHECK(dnnl_primitive_create(&rt->act_bwd, pd));
    DNN_CHECK(dnnl_memory_create(&rt->ddst_act, &l->dst_md, d->engine, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(hint);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    return err ? err->code : ERR_INTERNAL;
}

/* Weights (and bias) gradient. The bias gradient is written straight into the slab (x layout). */
static int create_bwd_weights(struct layer *l, const struct dnn *d, const struct conv_geom *g,
                              const_dnnl_primitive_desc_t fwd_pd, struct error *err)
{
    struct conv_rt *rt = l->priv;
    dnnl_memory_desc_t src, dwei, dbias, ddst;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    DNN_CHECK(md_any(&src, 4, g->src));
    DNN_CHECK(md_any(&dwei, 4, g->wei));
    DNN_CHECK(md_any(&ddst, 4, g->dst));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&dbias, 1, g->bias, dnnl_f32, dnnl_x));
    DNN_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src, &dwei,
                                                          rt->b_slab ? &dbias : NULL, &ddst, g->strides, g->pad_l,
                                                          g->pad_r));
    DNN_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, d->engine, fwd_pd));
    DNN_CHECK(dnnl_primitive_create(&rt->bwd_w, pd));
    rt->src_shared = dnnl_memory_desc_equal(pd_md(pd, DNNL_ARG_SRC), pd_md(fwd_pd, DNNL_ARG_SRC));
    if (!rt->src_shared && dnn_reorder_init(&rt->src_bwd, &l->src_md, pd_md(pd, DNNL_ARG_SRC), d, err) != ERR_OK)
        goto fail;
    if (dnn_reorder_init(&rt->ddst_w, &l->dst_md, pd_md(pd, DNNL_ARG_DIFF_DST), d, err) != ERR_OK ||
        reorder_into_init(&rt->dw_out, pd_md(pd, DNNL_ARG_DIFF_WEIGHTS), dnn_md_of(rt->dw_slab), d, err) != ERR_OK)
        goto fail;
    if (rt->dw_out.prim)
        DNN_CHECK(dnnl_memory_create(&rt->dw_prim, pd_md(pd, DNNL_ARG_DIFF_WEIGHTS), d->engine, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

/* Input gradient, delivered in l->src_md (the previous layer's dst layout) in l->diff_src. */
static int create_bwd_data(struct layer *l, const struct dnn *d, const struct conv_geom *g,
                           const_dnnl_primitive_desc_t fwd_pd, struct error *err)
{
    struct conv_rt *rt = l->priv;
    dnnl_memory_desc_t dsrc, wei, ddst;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    DNN_CHECK(md_any(&dsrc, 4, g->src));
    DNN_CHECK(md_any(&wei, 4, g->wei));
    DNN_CHECK(md_any(&ddst, 4, g->dst));
    DNN_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &dsrc, &wei, &ddst, g->strides,
                                                       g->pad_l, g->pad_r));
    DNN_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, d->engine, fwd_pd));
    DNN_CHECK(dnnl_primitive_create(&rt->bwd_d, pd));
    rt->w_shared = dnnl_memory_desc_equal(pd_md(pd, DNNL_ARG_WEIGHTS), pd_md(fwd_pd, DNNL_ARG_WEIGHTS));
    if (!rt->w_shared &&
        dnn_reorder_init(&rt->w_bwd, dnn_md_of(rt->w_slab), pd_md(pd, DNNL_ARG_WEIGHTS), d, err) != ERR_OK)
        goto fail;
    if (dnn_reorder_init(&rt->ddst_d, &l->dst_md, pd_md(pd, DNNL_ARG_DIFF_DST), d, err) != ERR_OK ||
        reorder_into_init(&rt->dsrc_out, pd_md(pd, DNNL_ARG_DIFF_SRC), &l->src_md, d, err) != ERR_OK)
        goto fail;
    DNN_CHECK(dnnl_memory_create(&l->diff_src, &l->src_md, d->engine, DNNL_MEMORY_ALLOCATE));
    if (rt->dsrc_out.prim)
        DNN_CHECK(dnnl_memory_create(&rt->dsrc_prim, pd_md(pd, DNNL_ARG_DIFF_SRC), d->engine, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

static void release_rt(struct conv_rt *rt)
{
    dnnl_primitive_t prims[] = {rt->fwd, rt->act_bwd, rt->bwd_w, rt->bwd_d};
    dnnl_memory_t mems[] = {rt->w_slab, rt->dw_slab, rt->b_slab, rt->db_slab, rt->ddst_act, rt->dw_prim, rt->dsrc_prim};
    struct dnn_reorder *rs[] = {&rt->src_fwd, &rt->w_fwd, &rt->src_bwd, &rt->w_bwd,
                                &rt->ddst_w,  &rt->ddst_d, &rt->dw_out, &rt->dsrc_out};
    for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        dnn_reorder_release(rs[i]);
}

/* Safe on a layer whose create() failed half way. */
static void conv_destroy(struct layer *l)
{
    if (l->priv) {
        release_rt(l->priv);
        free(l->priv);
    }
    if (l->dst)
        dnnl_memory_destroy(l->dst);
    if (l->diff_src)
        dnnl_memory_destroy(l->diff_src);
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
}

static int conv_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    struct conv_geom g;
    dnnl_primitive_desc_t fwd_pd = NULL;
    int rc;
    l->dst = l->diff_src = NULL;
    l->priv = NULL;
    if (act_bwd_alg(l->spec->u.conv.act) == dnnl_alg_kind_undef && l->spec->u.conv.act != ACT_LINEAR)
        return error_set(err, ERR_INPUT, "%s: Conv2D supports linear, relu, sigmoid and tanh activations",
                         l->spec->name);
    l->priv = calloc(1, sizeof(struct conv_rt));
    if (!l->priv)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    conv_geom(l, &g);
    if ((rc = wrap_slabs(l, d, &g, err)) || (rc = create_fwd(l, d, &g, &fwd_pd, err)) ||
        (rc = create_act_bwd(l, d, err)) || (rc = create_bwd_weights(l, d, &g, fwd_pd, err)) ||
        (need_diff_src && (rc = create_bwd_data(l, d, &g, fwd_pd, err))))
        goto fail;
    dnnl_primitive_desc_destroy(fwd_pd);
    return ERR_OK;
fail:
    if (fwd_pd)
        dnnl_primitive_desc_destroy(fwd_pd);
    conv_destroy(l);
    return rc;
}

/* dst (N, F, OH, OW) in l->dst_md = act(conv(src (N, C, H, W) in l->src_md, slab weights) + bias). */
static int conv_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct conv_rt *rt = l->priv;
    const struct dnn *d = ctx->dnn;
    if (set_handles(l, err) != ERR_OK)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t s = dnn_reorder_run(&rt->src_fwd, src, d, err);
    dnnl_memory_t w = s ? dnn_reorder_run(&rt->w_fwd, rt->w_slab, d, err) : NULL;
    if (!w)
        return err ? err->code : ERR_INTERNAL;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, l->dst},
                              {DNNL_ARG_BIAS, rt->b_slab}};
    return dnn_exec(rt->fwd, d, rt->b_slab ? 4 : 3, args, err);
}

/* The previous run's output of a reorder, or its input when the reorder is empty. */
static dnnl_memory_t reordered(const struct dnn_reorder *r, dnnl_memory_t input)
{
    return r->prim ? r->dst : input;
}

/* dW (hwio, into l->dw) and db from src and the pre-activation gradient g (l->dst_md). */
static int backward_weights(struct layer *l, const struct dnn *d, dnnl_memory_t src, dnnl_memory_t g,
                            struct error *err)
{
    struct conv_rt *rt = l->priv;
    /* forward left its reordered src in src_fwd when the layouts match: src is the same memory. */
    dnnl_memory_t s = rt->src_shared ? reordered(&rt->src_fwd, src) : dnn_reorder_run(&rt->src_bwd, src, d, err);
    dnnl_memory_t dd = s ? dnn_reorder_run(&rt->ddst_w, g, d, err) : NULL;
    if (!dd)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t dw = rt->dw_prim ? rt->dw_prim : rt->dw_slab;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                              {DNNL_ARG_DIFF_BIAS, rt->db_slab}};
    int rc = dnn_exec(rt->bwd_w, d, rt->db_slab ? 4 : 3, args, err);
    if (rc == ERR_OK)
        rc = dnn_reorder_into(&rt->dw_out, rt->dw_prim, rt->dw_slab, d, err);
    return rc;
}

/* l->diff_src (l->src_md) from the pre-activation gradient g and the weights forward used. */
static int backward_data(struct layer *l, const struct dnn *d, dnnl_memory_t g, struct error *err)
{
    struct conv_rt *rt = l->priv;
    dnnl_memory_t w =
        rt->w_shared ? reordered(&rt->w_fwd, rt->w_slab) : dnn_reorder_run(&rt->w_bwd, rt->w_slab, d, err);
    dnnl_memory_t dd = w ? dnn_reorder_run(&rt->ddst_d, g, d, err) : NULL;
    if (!dd)
        return err ? err->code : ERR_INTERNAL;
    dnnl_memory_t ds = rt->dsrc_prim ? rt->dsrc_prim : l->diff_src;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, ds}};
    int rc = dnn_exec(rt->bwd_d, d, 3, args, err);
    if (rc == ERR_OK)
        rc = dnn_reorder_into(&rt->dsrc_out, rt->dsrc_prim, l->diff_src, d, err);
    return rc;
}

static int conv_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                         struct error *err)
{
    struct conv_rt *rt = l->priv;
    const struct dnn *d = ctx->dnn;
    dnnl_memory_t g = diff_dst; /* (N, F, OH, OW) l->dst_md: gradient before the activation */
    int rc = set_handles(l, err);
    if (rc == ERR_OK && rt->act_bwd) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_DST, l->dst}, {DNNL_ARG_DIFF_DST, diff_dst},
                                  {DNNL_ARG_DIFF_SRC, rt->ddst_act}};
        rc = dnn_exec(rt->act_bwd, d, 3, args, err);
        g = rt->ddst_act;
    }
    if (rc == ERR_OK)
        rc = backward_weights(l, d, src, g, err);
    if (rc == ERR_OK && rt->bwd_d)
        rc = backward_data(l, d, g, err);
    return rc;
}

const struct layer_ops layer_conv2d = {
    .name = "Conv2D",
    .keras_prefix = "conv2d",
    .parse = conv_parse,
    .infer = conv_infer,
    .create = conv_create,
    .forward = conv_forward,
    .backward = conv_backward,
    .destroy = conv_destroy,
    .init_params = conv_init_params,
    .to_text = conv_to_text,
};

/* activation.c: Activation('relu'|'sigmoid'|'tanh'|'linear'|'softmax') over oneDNN eltwise, in whatever
 * layout the previous layer produced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

struct act_priv {
    dnnl_primitive_t fwd;
    dnnl_primitive_t bwd; /* NULL without diff_src */
    int use_dst;          /* backward reads forward's dst (relu, tanh, sigmoid), not src */
};

static int act_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    int act;
    int rc = args_choice(a, "activation", 0, activation_names, -1, &act, err);
    if (rc != ERR_OK)
        return rc;
    if (act < 0)
        return args_error(a, NULL, err, "missing required argument 'activation'");
    spec->u.act.act = (enum activation)act;
    return ERR_OK;
}

static void act_destroy(struct layer *l)
{
    struct act_priv *p = l->priv;
    layer_release_outputs(l);
    if (p) {
        if (p->fwd)
            dnnl_primitive_destroy(p->fwd);
        if (p->bwd)
            dnnl_primitive_destroy(p->bwd);
        free(p);
    }
    l->priv = NULL;
}

/* The eltwise algorithm for an activation. The use_dst_for_bwd variants let backward read dst, which
 * forward keeps anyway. Linear, and a softmax the loss computes, are the identity: y = 1 * x + 0. */
static dnnl_alg_kind_t act_alg(enum activation act, float *alpha, int *use_dst)
{
    *alpha = 0.0f;
    *use_dst = 1;
    switch (act) {
    case ACT_RELU: return dnnl_eltwise_relu_use_dst_for_bwd; /* alpha: slope for x < 0 */
    case ACT_TANH: return dnnl_eltwise_tanh_use_dst_for_bwd;
    case ACT_SIGMOID: return dnnl_eltwise_logistic_use_dst_for_bwd;
    case ACT_LINEAR:
    case ACT_SOFTMAX: break;
    }
    *alpha = 1.0f;
    *use_dst = 0;
    return dnnl_eltwise_linear;
}

/* Forward and backward primitives on the layout as given; dst and diff_src share that layout. */
static int act_prims(struct act_priv *p, const struct layer *l, dnnl_alg_kind_t alg, float alpha,
                     int need_diff_src, const struct dnn *d, struct error *err)
{
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_prop_kind_t prop = need_diff_src ? dnnl_forward_training : dnnl_forward_inference;
    DNN_CHECK(dnnl_eltwise_forward_desc_init(&fd, prop, alg, &l->src_md, alpha, 0.0f));
    DNN_CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(&p->fwd, fpd));
    if (need_diff_src) {
        DNN_CHECK(dnnl_eltwise_backward_desc_init(&bd, alg, &l->src_md, &l->src_md, alpha, 0.0f));
        DNN_CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, d->engine, fpd));
        DNN_CHECK(dnnl_primitive_create(&p->bwd, bpd));
        dnnl_primitive_desc_destroy(bpd);
    }
    dnnl_primitive_desc_destroy(fpd);
    return ERR_OK;
fail:
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    return err ? err->code : ERR_INTERNAL;
}

static int act_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    enum activation act = l->spec->u.act.act;
    float alpha;
    int use_dst;
    dnnl_alg_kind_t alg = act_alg(act, &alpha, &use_dst);
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    if (act == ACT_SOFTMAX && !l->spec->softmax_in_loss)
        return layer_spec_error(l->spec, err, "softmax is only supported as the last layer");
    struct act_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    p->use_dst = use_dst;
    l->dst_md = l->src_md;
    if (act_prims(p, l, alg, alpha, need_diff_src, d, err) != ERR_OK ||
        dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK ||
        (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    act_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

static int act_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct act_priv *p = l->priv;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, l->dst}};
    return dnn_exec(p->fwd, ctx->dnn, 2, args, err);
}

static int act_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                        struct error *err)
{
    struct act_priv *p = l->priv;
    if (!l->diff_src)
        return ERR_OK;
    dnnl_exec_arg_t args[3] = {
        {p->use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, p->use_dst ? l->dst : src},
        {DNNL_ARG_DIFF_DST, diff_dst},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
    };
    return dnn_exec(p->bwd, ctx->dnn, 3, args, err);
}

static int act_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    return snprintf(buf, size, "%s('%s')", s->ops->name, activation_names[s->u.act.act]);
}

const struct layer_ops layer_activation = {
    .name = "Activation",
    .keras_prefix = "activation",
    .parse = act_parse,
    .infer = layer_infer_same_shape,
    .create = act_create,
    .forward = act_forward,
    .backward = act_backward,
    .destroy = act_destroy,
    .init_params = NULL,
    .to_text = act_to_text,
};

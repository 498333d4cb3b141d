/* layer_common.c: helpers shared by the layer kinds (see layer_common.h). */
#include "layer_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What `activation=` accepts: activation_names in enum order, then None (= linear). */
static const char *const act_choices[] = {"linear", "relu", "softmax", "sigmoid", "tanh", "None", NULL};
#define ACT_CHOICE_NONE 5

/* ---- parsing, shapes, init ---- */

int layer_spec_error(const struct layer_spec *spec, struct error *err, const char *fmt, ...)
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

const struct arg *layer_find_arg(const struct args *a, const char *key, int pos)
{
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        const struct arg *x = &a->a[i];
        if (x->key[0] == '\0' ? npos++ == pos : strcmp(x->key, key) == 0)
            return x;
    }
    return NULL;
}

int layer_args_activation(struct args *a, int pos, enum activation *out, struct error *err)
{
    int act;
    int rc = args_choice(a, "activation", pos, act_choices, ACT_CHOICE_NONE, &act, err);
    if (rc)
        return rc;
    *out = act == ACT_CHOICE_NONE ? ACT_LINEAR : (enum activation)act;
    return ERR_OK;
}

/* The shortest %g that reads back as the same double. */
static const char *exact_text(double v, char *buf, size_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

void layer_regularizer_text(const struct regularizer *r, const char *key, char *buf, size_t size)
{
    char x[32], y[32];
    if (r->l1 != 0 && r->l2 != 0)
        snprintf(buf, size, ", %s=l1_l2(l1=%s, l2=%s)", key, exact_text(r->l1, x, sizeof x),
                 exact_text(r->l2, y, sizeof y));
    else if (r->l1 != 0)
        snprintf(buf, size, ", %s=l1(%s)", key, exact_text(r->l1, x, sizeof x));
    else if (r->l2 != 0)
        snprintf(buf, size, ", %s=l2(%s)", key, exact_text(r->l2, y, sizeof y));
    else
        snprintf(buf, size, "%s", "");
}

int layer_parse_nothing(struct layer_spec *spec, struct args *a, struct error *err)
{
    (void)spec;
    (void)a;
    (void)err;
    return ERR_OK;
}

int layer_infer_same_shape(struct layer_spec *spec, struct error *err)
{
    (void)err;
    spec->out = spec->in;
    spec->n_params = 0;
    return ERR_OK;
}

void layer_set_param(struct param_info *p, const char *name, int rank, const long *dims)
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

void layer_init_kernel_bias(const struct layer_spec *spec, float *w, long fan_in, long fan_out,
                            double (*rnd)(void *), void *state)
{
    const struct param_info *k = &spec->params[0];
    int init = spec->ops == &layer_conv2d ? spec->u.conv.kernel_init : spec->u.dense.kernel_init;
    layer_init_weights(w, k->size, (enum initializer)init, fan_in, fan_out, rnd, state);
    if (spec->n_params > 1) {
        float *b = w + (spec->params[1].offset - k->offset);
        memset(b, 0, sizeof(float) * spec->params[1].size);
    }
}

/* ---- runtime ---- */

void layer_release_outputs(struct layer *l)
{
    if (l->dst)
        dnnl_memory_destroy(l->dst);
    if (l->diff_src)
        dnnl_memory_destroy(l->diff_src);
    l->dst = l->diff_src = NULL;
}

int layer_reorder_prim(dnnl_primitive_t *prim, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                       const struct dnn *d, struct error *err)
{
    dnnl_primitive_desc_t pd = NULL;
    *prim = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return ERR_OK;
    DNN_CHECK(dnnl_reorder_primitive_desc_create(&pd, from, d->engine, to, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(prim, pd));
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

int plain_io_create(struct plain_io *io, struct layer *l, const struct dnn *d, int need_diff_src,
                    struct error *err)
{
    const struct shape *s = &l->spec->in;
    int rc;
    memset(io, 0, sizeof *io);
    if ((rc = s->rank == 3 ? dnn_md_nhwc(&l->dst_md, l->n, s->h, s->w, s->c, err)
                           : dnn_md_nc(&l->dst_md, l->n, s->c, err)) != ERR_OK ||
        (rc = dnn_mem(&l->dst, &l->dst_md, d, NULL, err)) != ERR_OK ||
        (rc = layer_reorder_prim(&io->to_plain, &l->src_md, &l->dst_md, d, err)) != ERR_OK || !need_diff_src)
        return rc;
    if ((rc = dnn_mem(&l->diff_src, &l->src_md, d, NULL, err)) != ERR_OK ||
        (rc = layer_reorder_prim(&io->from_plain, &l->dst_md, &l->src_md, d, err)) != ERR_OK)
        return rc;
    return io->from_plain ? dnn_mem(&io->dx_plain, &l->dst_md, d, NULL, err) : ERR_OK;
}

int plain_io_forward(const struct plain_io *io, struct layer *l, dnnl_memory_t src, const struct dnn *d,
                     struct error *err)
{
    if (!io->to_plain) {
        memcpy(dnn_ptr(l->dst), dnn_ptr(src), dnnl_memory_desc_get_size(&l->dst_md));
        return ERR_OK;
    }
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, l->dst}};
    return dnn_exec(io->to_plain, d, 2, args, err);
}

float *plain_io_dx(const struct plain_io *io, const struct layer *l)
{
    return dnn_ptr(io->from_plain ? io->dx_plain : l->diff_src);
}

int plain_io_backward(const struct plain_io *io, struct layer *l, const struct dnn *d, struct error *err)
{
    if (!io->from_plain)
        return ERR_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, io->dx_plain}, {DNNL_ARG_TO, l->diff_src}};
    return dnn_exec(io->from_plain, d, 2, args, err);
}

void plain_io_release(struct plain_io *io)
{
    if (io->to_plain)
        dnnl_primitive_destroy(io->to_plain);
    if (io->from_plain)
        dnnl_primitive_destroy(io->from_plain);
    if (io->dx_plain)
        dnnl_memory_destroy(io->dx_plain);
    memset(io, 0, sizeof *io);
}

int layer_reorder_into_init(struct dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                            const struct dnn *d, struct error *err)
{
    int rc = dnn_reorder_init(r, from, to, d, err);
    if (rc == ERR_OK && r->dst) {
        dnnl_memory_destroy(r->dst);
        r->dst = NULL;
    }
    return rc;
}

int layer_eltwise_bwd_create(dnnl_primitive_t *prim, dnnl_alg_kind_t alg, const dnnl_memory_desc_t *md,
                             const struct dnn *d, struct error *err)
{
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    *prim = NULL;
    /* oneDNN wants a forward descriptor of the same algorithm as a hint for the backward one. */
    DNN_CHECK(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, alg, md, 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_desc_create(&hint, &fd, NULL, d->engine, NULL));
    DNN_CHECK(dnnl_eltwise_backward_desc_init(&bd, alg, md, md, 0.0f, 0.0f));
    DNN_CHECK(dnnl_primitive_desc_create(&pd, &bd, NULL, d->engine, hint));
    DNN_CHECK(dnnl_primitive_create(prim, pd));
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

int plain_edge_init(struct plain_edge *e, const dnnl_memory_desc_t *src_md, const struct shape *s, int n,
                    int need_diff, const struct dnn *d, struct error *err)
{
    int rc;
    memset(e, 0, sizeof *e);
    if ((rc = s->rank == 3 ? dnn_md_nhwc(&e->md, n, s->h, s->w, s->c, err) : dnn_md_nc(&e->md, n, s->c, err)) ||
        (rc = layer_reorder_prim(&e->to_plain, src_md, &e->md, d, err)) ||
        (e->to_plain && (rc = dnn_mem(&e->x, &e->md, d, NULL, err))) || !need_diff ||
        (rc = layer_reorder_prim(&e->from_plain, &e->md, src_md, d, err)))
        return rc;
    return e->from_plain ? dnn_mem(&e->dx, &e->md, d, NULL, err) : ERR_OK;
}

const float *plain_edge_in(struct plain_edge *e, dnnl_memory_t src, const struct dnn *d, struct error *err)
{
    if (!e->to_plain)
        return dnn_ptr(src);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, e->x}};
    return dnn_exec(e->to_plain, d, 2, args, err) ? NULL : dnn_ptr(e->x);
}

float *plain_edge_dx(const struct plain_edge *e, dnnl_memory_t diff_src)
{
    return dnn_ptr(e->from_plain ? e->dx : diff_src);
}

int plain_edge_out(const struct plain_edge *e, dnnl_memory_t diff_src, const struct dnn *d, struct error *err)
{
    if (!e->from_plain)
        return ERR_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, e->dx}, {DNNL_ARG_TO, diff_src}};
    return dnn_exec(e->from_plain, d, 2, args, err);
}

void plain_edge_release(struct plain_edge *e)
{
    if (e->to_plain)
        dnnl_primitive_destroy(e->to_plain);
    if (e->x)
        dnnl_memory_destroy(e->x);
    if (e->from_plain)
        dnnl_primitive_destroy(e->from_plain);
    if (e->dx)
        dnnl_memory_destroy(e->dx);
    memset(e, 0, sizeof *e);
}

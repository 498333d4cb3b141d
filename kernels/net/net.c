/* net.c: runs a model: parameter and gradient slabs, and per batch size a plan of layers whose oneDNN
 * primitives and activations are created once and reused every step. */
#include "net.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bn_relu.h"
#include "conv_pool.h"
#include "loss.h"
#include "rng.h"

struct net_plan {
    int n;                      /* batch size of this plan */
    uint64_t created;           /* creation order, to replace the oldest plan */
    struct layer *layers;       /* (n_layers,) layers[0] is the Input and is never run */
    dnnl_memory_t *acc;         /* (n_layers,) for a layer read by several: the sum of their gradients of its
                                   output, in its dst layout (owned); NULL for the others */
    dnnl_memory_t *dy;          /* (n_layers,) backward: the gradient of each layer's output (not owned) */
    float *x;                   /* (n, H, W, C) the batch as floats, scaled by 1/255 */
    dnnl_memory_t x_mem;        /* wraps x, plain nhwc */
    struct loss loss;           /* softmax + cross-entropy on (n, classes) */
    dnnl_memory_desc_t nc_md;   /* (n, classes) plain */
    struct dnn_reorder to_logits;   /* last layer's dst layout -> plain */
    struct dnn_reorder from_dlogits; /* plain -> last layer's dst layout */
    float *dlogits;             /* (n, classes) */
    dnnl_memory_t dlogits_mem;  /* wraps dlogits, plain */
    float *probs;               /* (n, classes) */
};

static uint64_t plan_counter;

static void plan_destroy(struct net *net, struct net_plan *p)
{
    if (!p)
        return;
    if (p->layers)
        for (int i = net->model.n_layers - 1; i >= 1; i--)
            if (p->layers[i].ops && !p->layers[i].absorbed && p->layers[i].ops->destroy)
                p->layers[i].ops->destroy(&p->layers[i]);
    free(p->layers);
    for (int i = 0; p->acc && i < net->model.n_layers; i++)
        if (p->acc[i])
            dnnl_memory_destroy(p->acc[i]);
    free(p->acc);
    free(p->dy);
    if (p->x_mem)
        dnnl_memory_destroy(p->x_mem);
    free(p->x);
    loss_release(&p->loss);
    dnn_reorder_release(&p->to_logits);
    dnn_reorder_release(&p->from_dlogits);
    if (p->dlogits_mem)
        dnnl_memory_destroy(p->dlogits_mem);
    free(p->dlogits);
    free(p->probs);
    free(p);
}

/* Whether layer i's only reader is layer i + 1, reading it as its first input: what the fused kernels, which
 * run a layer together with the next one, need of the graph. */
static int sole_reader_is_next(const struct model *m, int i)
{
    return i + 1 < m->n_layers && m->layers[i].n_readers == 1 && m->layers[i + 1].n_inputs == 1 &&
           m->layers[i + 1].inputs[0] == i;
}

/* Whether layer i's ReLU derivative can move to layer i + 1 (layer.h, relu_bwd_in_next): a Conv2D with a
 * ReLU whose output only a MaxPooling2D reads, and that pooling computes its input's gradient. */
static int relu_bwd_moves(const struct model *m, int i, int fuse)
{
    const struct layer_spec *s = &m->layers[i];
    return fuse && i >= 1 && sole_reader_is_next(m, i) && s->ops == &layer_conv2d && s->u.conv.act == ACT_RELU &&
           m->layers[i + 1].ops == &layer_max_pooling2d && m->layers[i + 1].need_diff_src;
}

/* Whether layer i runs backward at all: it has weights, or a layer before it has (its input's gradient). */
static int runs_backward(const struct layer_spec *s) { return s->n_params > 0 || s->need_diff_src; }

/* The memory that holds layer j's output in this plan (the Input's: the scaled batch). */
static dnnl_memory_t output_of(const struct net_plan *p, int j) { return j == 0 ? p->x_mem : p->layers[j].dst; }

/* Creates every layer of the plan in model order: each layer's src layouts are its inputs' dst layouts. The first
 * Conv2D and its MaxPooling2D may run as one kernel (conv_pool.h): the pooling is then `absorbed`; so may a
 * BatchNormalization and the ReLU (and 2x2 pooling, or an Add of a shortcut and the ReLU) after it (bn_relu.h). A
 * layer whose output several layers read gets a buffer where backward sums their gradients. */
static int plan_layers(struct net *net, struct net_plan *p, struct error *err)
{
    const struct model *m = &net->model;
    const struct shape *in = &m->layers[0].out;
    int fuse = !net->no_fusion;
    int rc = dnn_md_nhwc(&p->layers[0].dst_md, p->n, in->h, in->w, in->c, err);
    if (rc)
        return rc;
    if ((rc = dnn_mem(&p->x_mem, &p->layers[0].dst_md, &net->dnn, p->x, err)))
        return rc;
    for (int i = 1; i < m->n_layers; i++) {
        struct layer *l = &p->layers[i];
        const struct layer_spec *s = &m->layers[i];
        int pair = fuse && sole_reader_is_next(m, i) && conv_pool_fusable(m, i);
        int bn = !pair && fuse ? bn_relu_fusable(m, i) : 0; /* bn_relu.h: layers the BN kernel absorbs */
        int shortcut = bn ? bn_relu_shortcut(m, i) : -1;    /* and the Add's other input it reads */
        l->spec = s;
        l->ops = pair ? &layer_conv_pool : bn ? bn_relu_ops(m, i) : s->ops;
        l->n = p->n;
        for (int k = 0; k < s->n_inputs; k++) {
            l->src_mds[k] = p->layers[s->inputs[k]].dst_md;
            l->srcs[k] = output_of(p, s->inputs[k]);
        }
        l->src_md = l->src_mds[0];
        if (shortcut >= 0) {
            l->src_mds[1] = p->layers[shortcut].dst_md;
            l->srcs[1] = output_of(p, shortcut);
        }
        if (s->n_params > 0) {
            l->w = net->params + s->params[0].offset;
            l->dw = net->grads + s->params[0].offset;
        }
        l->relu_bwd_in_next = !pair && relu_bwd_moves(m, i, fuse);
        l->relu_bwd_of_prev = s->n_inputs == 1 && s->inputs[0] == i - 1 && relu_bwd_moves(m, i - 1, fuse);
        if ((rc = l->ops->create(l, &net->dnn, s->need_diff_src, err)))
            return rc;
        if (s->n_readers > 1 && runs_backward(s) && (rc = dnn_mem(&p->acc[i], &l->dst_md, &net->dnn, NULL, err)))
            return rc;
        for (int k = 0; k < (pair ? 1 : bn); k++) {
            struct layer *next = &p->layers[++i];
            *next = (struct layer){.spec = &m->layers[i], .ops = m->layers[i].ops, .absorbed = 1, .n = p->n,
                                   .src_md = l->dst_md, .dst_md = l->dst_md, .dst = l->dst};
            next->src_mds[0] = l->dst_md;
            next->srcs[0] = l->dst;
            /* An absorbed layer's output read by several layers (a ReLU feeding a block and its shortcut) gets its
             * gradients summed too: the kernel's backward wants the sum. */
            if (m->layers[i].n_readers > 1 && runs_backward(&m->layers[i]) &&
                (rc = dnn_mem(&p->acc[i], &next->dst_md, &net->dnn, NULL, err)))
                return rc;
            /* The absorbed Add's shortcut: its gradient is the one the kernel writes (output_gradient). */
            for (int j = 0; shortcut >= 0 && j < next->spec->n_inputs; j++) {
                if (next->spec->inputs[j] != shortcut)
                    continue;
                if (j == 0) /* diff_of_input's slot for input 0 */
                    next->diff_src = l->diff_srcs[1];
                else
                    next->diff_srcs[j] = l->diff_srcs[1];
            }
        }
    }
    return ERR_OK;
}

static int plan_create(struct net *net, int n, struct net_plan **out, struct error *err)
{
    const struct model *m = &net->model;
    const struct shape *in = &m->layers[0].out;
    int classes = m->n_classes;
    struct net_plan *p = calloc(1, sizeof *p);
    int rc = ERR_INTERNAL;
    if (!p)
        return error_set(err, ERR_INTERNAL, "out of memory");
    p->n = n;
    p->created = ++plan_counter;
    p->layers = calloc((size_t)m->n_layers, sizeof *p->layers);
    p->acc = calloc((size_t)m->n_layers, sizeof *p->acc);
    p->dy = calloc((size_t)m->n_layers, sizeof *p->dy);
    p->x = malloc(sizeof(float) * (size_t)n * shape_size(in));
    p->dlogits = malloc(sizeof(float) * (size_t)n * classes);
    p->probs = malloc(sizeof(float) * (size_t)n * classes);
    if (!p->layers || !p->acc || !p->dy || !p->x || !p->dlogits || !p->probs) {
        rc = error_set(err, ERR_INTERNAL, "out of memory for a batch of %d", n);
        goto fail;
    }
    if ((rc = plan_layers(net, p, err)))
        goto fail;
    if ((rc = dnn_md_nc(&p->nc_md, n, classes, err)))
        goto fail;
    const dnnl_memory_desc_t *last = &p->layers[m->n_layers - 1].dst_md;
    if ((rc = dnn_reorder_init(&p->to_logits, last, &p->nc_md, &net->dnn, err)))
        goto fail;
    if ((rc = dnn_reorder_init(&p->from_dlogits, &p->nc_md, last, &net->dnn, err)))
        goto fail;
    if ((rc = dnn_mem(&p->dlogits_mem, &p->nc_md, &net->dnn, p->dlogits, err)))
        goto fail;
    if ((rc = loss_init(&p->loss, n, classes, &net->dnn, err)))
        goto fail;
    *out = p;
    return ERR_OK;
fail:
    plan_destroy(net, p);
    return rc;
}

/* The plan for batch size n, created on first use; the oldest one makes room when all slots are taken. */
static int plan_get(struct net *net, int n, struct net_plan **out, struct error *err)
{
    int slot = -1;
    for (int i = 0; i < NET_MAX_PLANS; i++) {
        if (net->plans[i] && net->plans[i]->n == n) {
            *out = net->plans[i];
            return ERR_OK;
        }
        if (!net->plans[i] && slot < 0)
            slot = i;
    }
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < NET_MAX_PLANS; i++)
            if (net->plans[i]->created < net->plans[slot]->created)
                slot = i;
        plan_destroy(net, net->plans[slot]);
        net->plans[slot] = NULL;
    }
    int rc = plan_create(net, n, &net->plans[slot], err);
    *out = net->plans[slot];
    return rc;
}

int net_create(struct net **out, const struct model *m, struct error *err)
{
    struct net *net = calloc(1, sizeof *net);
    int rc;
    *out = NULL;
    if (!net)
        return error_set(err, ERR_INTERNAL, "out of memory");
    net->model = *m;
    /* Layer specs point into net->model from here on: the plans keep pointers to them. */
    net->n_params = m->n_params;
    size_t bytes = ((sizeof(float) * (net->n_params + NET_GRAD_TAIL) + 63) / 64) * 64;
    net->params = aligned_alloc(64, bytes);
    net->grads = aligned_alloc(64, bytes);
    if (!net->params || !net->grads) {
        rc = error_set(err, ERR_INTERNAL, "out of memory for %zu parameters", net->n_params);
        goto fail;
    }
    memset(net->params, 0, bytes);
    memset(net->grads, 0, bytes);
    int sums = net_step_sums(net);
    if (sums > 0 && !(net->sum_zeros = calloc((size_t)sums, sizeof(double)))) {
        rc = error_set(err, ERR_INTERNAL, "out of memory");
        goto fail;
    }
    if ((rc = dnn_init(&net->dnn, err)))
        goto fail;
    *out = net;
    return ERR_OK;
fail:
    net_destroy(net);
    return rc;
}

void net_destroy(struct net *net)
{
    if (!net)
        return;
    for (int i = 0; i < NET_MAX_PLANS; i++)
        plan_destroy(net, net->plans[i]);
    if (net->dnn.engine)
        dnn_release(&net->dnn);
    free(net->params);
    free(net->grads);
    free(net->sum_zeros);
    free(net);
}

void net_set_slabs(struct net *net, float *params, float *grads)
{
    /* The plans' oneDNN memories wrap the old slabs (layer.w, layer.dw): made again on next use. */
    for (int i = 0; i < NET_MAX_PLANS; i++) {
        plan_destroy(net, net->plans[i]);
        net->plans[i] = NULL;
    }
    net->params = params;
    net->grads = grads;
}

void net_init_params(struct net *net, uint64_t seed)
{
    /* One generator walked in layer order: the initial weights are a function of the seed alone. */
    struct rng r;
    rng_seed(&r, seed, 0);
    for (int i = 1; i < net->model.n_layers; i++) {
        const struct layer_spec *s = &net->model.layers[i];
        if (s->n_params > 0 && s->ops->init_params)
            s->ops->init_params(s, net->params + s->params[0].offset, rng_uniform, &r);
    }
}

static void load_images(struct net_plan *p, const uint8_t *images, size_t count)
{
    float *x = p->x;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; i++)
        x[i] = (float)images[i] * (1.0f / 255.0f);
}

/* Seconds on a monotonic clock: only read when the network is being timed. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Adds the time since *t0 to *slot and restarts the clock. Called only when the network is timed, so an
 * untimed step pays one branch per layer. */
static void lap(double *slot, double *t0)
{
    double t1 = now_s();
    *slot += t1 - *t0;
    *t0 = t1;
}

/* Runs every layer forward; returns the logits (n, classes) plain, or NULL on error. */
static const float *forward(struct net *net, struct net_plan *p, const struct net_batch *b,
                            const struct step_ctx *ctx, struct error *err)
{
    const struct model *m = &net->model;
    struct net_timing *t = ctx->training ? net->timing : NULL;
    double t0 = t ? now_s() : 0;
    load_images(p, b->images, (size_t)b->n * shape_size(&m->layers[0].out));
    if (t)
        lap(&t->fwd[0], &t0);
    for (int i = 1; i < m->n_layers; i++) {
        struct layer *l = &p->layers[i];
        if (!l->absorbed && l->ops->forward(l, ctx, l->srcs[0], err))
            return NULL;
        if (t) {
            lap(&t->fwd[i], &t0);
            t->absorbed[i] = (char)l->absorbed;
        }
    }
    dnnl_memory_t logits = dnn_reorder_run(&p->to_logits, output_of(p, m->n_layers - 1), &net->dnn, err);
    if (t)
        lap(&t->loss, &t0);
    return logits ? dnn_ptr(logits) : NULL;
}

/* The gradient of input k of layer r that r's backward wrote. */
static dnnl_memory_t diff_of_input(const struct layer *r, int k) { return k == 0 ? r->diff_src : r->diff_srcs[k]; }

/* Sets p->dy[j], the gradient of layer j's output, from the layers that read it (all later, so done): a single
 * reader's input gradient as it is (an absorbed reader passes on its own output's, unless the kernel that ran it
 * wrote one for that input: an absorbed Add's shortcut), else their sum in p->acc[j],
 * in reader order (the same sum on every rank). */
static int output_gradient(const struct model *m, struct net_plan *p, int j)
{
    float *acc = p->acc[j] ? dnn_ptr(p->acc[j]) : NULL;
    const size_t n = acc ? dnnl_memory_desc_get_size(&p->layers[j].dst_md) / sizeof(float) : 0;
    int seen = 0;
    for (int r = j + 1; r < m->n_layers; r++)
        for (int k = 0; k < m->layers[r].n_inputs; k++) {
            if (m->layers[r].inputs[k] != j)
                continue;
            const struct layer *rl = &p->layers[r];
            dnnl_memory_t d = rl->diff_passes[k] || (rl->absorbed && !diff_of_input(rl, k)) ? p->dy[r]
                                                                                           : diff_of_input(rl, k);
            if (!acc) {
                p->dy[j] = d;
                return ERR_OK;
            }
            const float *g = dnn_ptr(d);
            if (seen++ == 0)
                memcpy(acc, g, sizeof(float) * n);
            else {
#pragma omp parallel for simd schedule(static)
                for (size_t i = 0; i < n; i++)
                    acc[i] += g[i];
            }
        }
    p->dy[j] = p->acc[j];
    return ERR_OK;
}

static int backward(struct net *net, struct net_plan *p, const struct step_ctx *ctx, struct error *err)
{
    const struct model *m = &net->model;
    struct net_timing *t = net->timing;
    double t0 = t ? now_s() : 0;
    int last = m->n_layers - 1;
    p->dy[last] = p->dlogits_mem;
    if (p->from_dlogits.prim) {
        p->dy[last] = dnn_reorder_run(&p->from_dlogits, p->dlogits_mem, &net->dnn, err);
        if (!p->dy[last])
            return err->code;
    }
    if (t)
        lap(&t->loss, &t0);
    for (int i = last; i >= 1; i--) {
        struct layer *l = &p->layers[i];
        if (!runs_backward(l->spec))
            continue; /* nothing before it learns: no gradient to make */
        if (i < last)
            output_gradient(m, p, i);
        if (l->absorbed)
            continue; /* dy[i] is its output's gradient, which the kernel that ran it wants */
        int rc = l->ops->backward(l, ctx, l->srcs[0], p->dy[i], err);
        if (rc)
            return rc;
        if (t)
            lap(&t->bwd[i], &t0);
    }
    return ERR_OK;
}

/* The sums over ranks a training step makes, in order: each layer's forward one, first to last, then each
 * layer's backward one, last to first (the first layer computes no input gradient). Calls `each` with the
 * call's index and size until it returns non-zero. */
static int each_step_sum(const struct model *m, int (*each)(int k, int count, void *arg), void *arg)
{
    int k = 0, rc;
    for (int pass = 0; pass < 2; pass++)
        for (int j = 1; j < m->n_layers; j++) {
            int i = pass == 0 ? j : m->n_layers - j;
            const struct layer_spec *s = &m->layers[i];
            int count = s->ops->step_sums ? s->ops->step_sums(s, pass == 0, s->need_diff_src) : 0;
            if (count > 0 && (rc = each(k++, count, arg)))
                return rc;
        }
    return 0;
}

static int count_sum(int k, int count, void *arg)
{
    int *max = arg;
    (void)k;
    if (count > *max)
        *max = count;
    return 0;
}

int net_step_sums(const struct net *net)
{
    int max = 0;
    each_step_sum(&net->model, count_sum, &max);
    return max;
}

/* What a step's ctx->sum goes through: the network's sum, counted, so that a step that fails half way can
 * make the calls it has not made yet. */
struct counted_sum {
    struct net *net;
    int done;
    struct error *err;
    int rc;
};

static int counted_sum(double *v, int n, void *arg, struct error *err)
{
    struct counted_sum *c = arg;
    c->done++;
    return c->net->sum(v, n, c->net->sum_arg, err);
}

static int replay_sum(int k, int count, void *arg)
{
    struct counted_sum *c = arg;
    if (k < c->done)
        return 0;
    memset(c->net->sum_zeros, 0, sizeof(double) * (size_t)count);
    c->done++;
    c->rc = c->net->sum(c->net->sum_zeros, count, c->net->sum_arg, c->err);
    return c->rc;
}

/* Makes the calls of this step's sequence from c->done on, adding zeros. */
static int finish_sums(struct counted_sum *c)
{
    if (!c->net->sum || !c->net->sum_zeros)
        return ERR_OK;
    c->rc = ERR_OK;
    each_step_sum(&c->net->model, replay_sum, c);
    return c->rc;
}

int net_train_skip(struct net *net, struct error *err)
{
    struct counted_sum c = {net, 0, err, ERR_OK};
    return finish_sums(&c);
}

static int train_batch(struct net *net, const struct net_batch *b, int global_batch, uint64_t seed,
                       uint64_t step, struct net_stats *stats, struct counted_sum *sums, struct error *err)
{
    struct net_plan *p;
    int rc = plan_get(net, b->n, &p, err);
    if (rc)
        return rc;
    struct step_ctx ctx = {&net->dnn, 1, seed, step, b->sample_ids, global_batch, NULL, NULL, b->epoch};
    if (net->sum) {
        ctx.sum = counted_sum;
        ctx.sum_arg = sums;
    }
    const float *logits = forward(net, p, b, &ctx, err);
    if (!logits)
        return err->code;
    stats->loss_sum = 0;
    stats->correct = 0;
    double t0 = net->timing ? now_s() : 0;
    p->loss.smoothing = net->label_smoothing;
    rc = loss_softmax_xent(&p->loss, logits, b->labels, 1.0f / (float)global_batch, p->probs, p->dlogits,
                           &stats->loss_sum, &stats->correct, &net->dnn, err);
    if (rc)
        return rc;
    if (net->timing)
        lap(&net->timing->loss, &t0);
    if ((rc = backward(net, p, &ctx, err)) == ERR_OK && net->timing)
        net->timing->steps++;
    return rc;
}

int net_train_batch(struct net *net, const struct net_batch *b, int global_batch, uint64_t seed,
                    uint64_t step, struct net_stats *stats, struct error *err)
{
    struct counted_sum sums = {net, 0, err, ERR_OK};
    int rc = train_batch(net, b, global_batch, seed, step, stats, &sums, err);
    if (rc != ERR_OK) {
        /* The others are in (or on their way to) the sums this rank has not made: make them, adding
         * nothing, and report the first error. */
        struct error ignored = {0};
        sums.err = &ignored;
        finish_sums(&sums);
    }
    return rc;
}

int net_infer_batch(struct net *net, const struct net_batch *b, float *probs, struct net_stats *stats,
                    struct error *err)
{
    struct net_plan *p;
    int rc = plan_get(net, b->n, &p, err);
    if (rc)
        return rc;
    struct step_ctx ctx = {&net->dnn, 0, 0, 0, b->sample_ids, 0, NULL, NULL, 0};
    const float *logits = forward(net, p, b, &ctx, err);
    if (!logits)
        return err->code;
    double loss_sum = 0;
    long correct = 0;
    rc = loss_softmax_xent(&p->loss, logits, b->labels, 0.0f, probs ? probs : p->probs, NULL, &loss_sum,
                           &correct, &net->dnn, err);
    if (rc == ERR_OK && stats) {
        stats->loss_sum = loss_sum;
        stats->correct = correct;
    }
    return rc;
}

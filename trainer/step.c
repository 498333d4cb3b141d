/* step.c: one training step, shared by `train` and `bench` (see step.h). */
#include "step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "exchange.h"

int step_mark_tensors(const struct model *m, struct optim *o, struct error *err)
{
    int rc;
    for (int i = 0; i < m->n_layers; i++) {
        const struct layer_spec *s = &m->layers[i];
        const struct regularizer *reg = s->ops == &layer_conv2d  ? &s->u.conv.kernel_reg
                                        : s->ops == &layer_dense ? &s->u.dense.kernel_reg
                                                                 : NULL;
        for (int j = 0; j < s->n_params; j++) {
            const struct param_info *p = &s->params[j];
            int kernel = reg && strcmp(p->name, "kernel") == 0;
            if (!p->moving && (rc = optim_add_tensor(o, p->offset, p->offset + p->size, kernel ? reg->l1 : 0,
                                                     kernel ? reg->l2 : 0, kernel, err)))
                return rc;
        }
    }
    return ERR_OK;
}

double step_penalty(const struct model *m, const float *params)
{
    double penalty = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct layer_spec *s = &m->layers[i];
        const struct regularizer *reg = s->ops == &layer_conv2d  ? &s->u.conv.kernel_reg
                                        : s->ops == &layer_dense ? &s->u.dense.kernel_reg
                                                                 : NULL;
        if (!reg || (reg->l1 == 0 && reg->l2 == 0))
            continue;
        const struct param_info *k = &s->params[0];
        double a = 0, w2 = 0;
        for (size_t j = 0; j < k->size; j++) {
            double v = params[k->offset + j];
            a += fabs(v);
            w2 += v * v;
        }
        penalty += reg->l1 * a + reg->l2 * w2;
    }
    return penalty;
}

int step_init(struct step *s, struct net *net, struct optim *opt, const char *what, int accumulate,
              struct error *err)
{
    *s = (struct step){net, opt, what, NULL};
    if (accumulate > 1 && !(s->acc = malloc(sizeof(float) * (net->n_params ? net->n_params : 1))))
        return error_set(err, ERR_INTERNAL, "out of memory for the accumulated gradients");
    return ERR_OK;
}

void step_release(struct step *s)
{
    free(s->acc);
    s->acc = NULL;
}

/* acc (+)= g over n floats. */
static void add_into(float *restrict acc, const float *restrict g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += g[i];
}

/* This rank's gradient of the update into net->grads (zeros when it had no samples or failed), with loss
 * and hits in *loss and *correct. Micro-batch k's gradient is scaled by 1 / samples like the others, so their
 * sum is the gradient of the whole update's batch: ((g0 + g1) + g2) + ... kept in s->acc, the last one added
 * into net->grads. */
static int local_gradient(struct step *s, const struct step_in *in, double *loss, double *correct,
                          struct step_out *out, struct error *err)
{
    struct net *net = s->net;
    size_t n = net->n_params;
    int rc = ERR_OK;
    for (int k = 0; k < in->micro; k++) {
        struct feed_batch fb = {0, NULL, NULL, NULL};
        double t0 = dist_wtime();
        if (rc == ERR_OK)
            rc = in->take(in->take_arg, k, &fb, err);
        double t1 = dist_wtime();
        int ran = 0;
        if (rc == ERR_OK && fb.n > 0) {
            struct net_stats st = {0, 0};
            struct net_batch b = {fb.n, fb.images, fb.labels, fb.ids, in->epoch};
            rc = net_train_batch(net, &b, (int)in->samples, in->seed, in->step, &st, err);
            ran = 1;
            *loss += st.loss_sum;
            *correct += (double)st.correct;
        }
        if (!ran) {
            /* The other ranks' BatchNormalization layers sum over every rank within the step: take part. */
            struct error ignored = {0};
            net_train_skip(net, &ignored);
        }
        if (!ran || rc != ERR_OK)
            /* A rank with nothing to add (a batch smaller than the ranks) or that failed adds zeros. */
            memset(net->grads, 0, sizeof(float) * n);
        if (in->micro > 1) {
            if (k == 0)
                memcpy(s->acc, net->grads, sizeof(float) * n);
            else if (k < in->micro - 1)
                add_into(s->acc, net->grads, n);
            else
                add_into(net->grads, s->acc, n);
        }
        out->t_data += t1 - t0;
        out->t_compute += dist_wtime() - t1;
    }
    if (rc != ERR_OK)
        memset(net->grads, 0, sizeof(float) * n);
    return rc;
}

int step_run(struct step *s, const struct step_in *in, struct step_out *out, struct error *err)
{
    struct net *net = s->net;
    double loss = 0, correct = 0;
    memset(out, 0, sizeof *out);
    int rc = local_gradient(s, in, &loss, &correct, out, err);
    float *tail = net->grads + net->n_params;
    memset(tail, 0, sizeof(float) * NET_GRAD_TAIL);
    tail[TAIL_LOSS] = (float)loss;
    tail[TAIL_CORRECT] = (float)correct;
    tail[TAIL_ERROR] = rc != ERR_OK;
    tail[TAIL_STOP] = in->stopping && in->stopping();
    double t0 = dist_wtime();
    struct exchange x;
    exchange_gradients(net, &x);
    tail = net->grads + net->n_params;
    if (tail[TAIL_ERROR] != 0)
        return cli_agree(rc, err);
    if (!isfinite(tail[TAIL_LOSS]) || tail[TAIL_NONFINITE] != 0) {
        /* The same tail on every rank after the exchange: all stop here, before the update, so nothing
         * non-finite ever reaches the weights or a checkpoint. */
        error_set(err, ERR_DIVERGED, "%s: training diverged at step %lld: the %s is not finite (try a lower --lr)",
                  s->what, (long long)in->step + 1, isfinite(tail[TAIL_LOSS]) ? "gradient" : "loss");
        return cli_agree(ERR_DIVERGED, err);
    }
    out->loss_sum = tail[TAIL_LOSS];
    out->correct = tail[TAIL_CORRECT];
    out->stop = tail[TAIL_STOP] != 0;
    double t1 = dist_wtime();
    /* The regularizers' gradient, then (when a regularizer, clipping or LARS needs them) the tensors' sums
     * over the whole slab: the same numbers on every rank, so every rank clips and adapts alike. */
    optim_prepare(s->opt, net->params, x.shard, x.lo, x.hi);
    double t_sums = 0;
    if (optim_needs_sums(s->opt)) {
        double a = dist_wtime();
        exchange_sum_shards(&x, s->opt->part, s->opt->sums, s->opt->n_tensors * OPTIM_SUMS);
        t_sums = dist_wtime() - a;
        out->penalty = optim_penalty(s->opt);
    }
    out->loss_sum += (double)in->samples * out->penalty;
    double gather = exchange_update(net, s->opt, &x);
    double t2 = dist_wtime();
    out->t_exchange = (t1 - t0) + t_sums + gather;
    out->t_update = (t2 - t1) - t_sums - gather;
    return ERR_OK;
}

/* evaluate.c: distributed evaluation (see evaluate.h). */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "step.h"

static int argmax(const float *p, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (p[j] > p[best])
            best = j;
    return best;
}

int evaluate_infer(struct net *net, const struct net_batch *b, int tta_flip, float *probs, struct net_stats *stats,
                   struct error *err)
{
    if (!tta_flip)
        return net_infer_batch(net, b, probs, stats, err);
    const struct shape *s = &net->model.layers[0].out;
    const int k = net->model.n_classes;
    const size_t row = (size_t)s->w * s->c;
    uint8_t *mirror = malloc(row * s->h * (size_t)b->n + 1);
    float *p2 = malloc(sizeof(float) * (size_t)b->n * k + 1);
    int rc = ERR_OK;
    if (!mirror || !p2) {
        rc = error_set(err, ERR_INTERNAL, "out of memory for a batch of %d", b->n);
        goto done;
    }
    for (size_t r = 0; r < (size_t)b->n * s->h; r++)
        for (int x = 0; x < s->w; x++)
            memcpy(mirror + r * row + (size_t)x * s->c, b->images + r * row + (size_t)(s->w - 1 - x) * s->c,
                   (size_t)s->c);
    struct net_batch mb = *b;
    mb.images = mirror;
    if ((rc = net_infer_batch(net, b, probs, NULL, err)) || (rc = net_infer_batch(net, &mb, p2, NULL, err)))
        goto done;
    for (size_t i = 0; i < (size_t)b->n * k; i++)
        probs[i] = 0.5f * (probs[i] + p2[i]);
    if (stats && b->labels) {
        stats->loss_sum = 0;
        stats->correct = 0;
        for (int i = 0; i < b->n; i++) {
            const float *p = probs + (size_t)i * k;
            double q = p[b->labels[i]];
            q = q < 1e-7 ? 1e-7 : q > 1 - 1e-7 ? 1 - 1e-7 : q;
            stats->loss_sum -= log(q);
            stats->correct += argmax(p, k) == b->labels[i];
        }
    }
done:
    free(mirror);
    free(p2);
    return rc;
}

/* This rank's part of the range, evaluated chunk by chunk; sums into sums[0] (loss), sums[1] (hits). */
static int run_local(struct net *net, struct dataset *ds, int64_t lo, int64_t hi, int chunk, int tta_flip,
                     double *sums, int64_t *confusion, struct error *err)
{
    int classes = net->model.n_classes;
    size_t sample = (size_t)ds->h * ds->w * ds->c;
    uint8_t *images = malloc(sample * (size_t)chunk);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)chunk);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)chunk);
    float *probs = malloc(sizeof(float) * (size_t)chunk * classes);
    int rc = ERR_OK;
    if (!images || !labels || !ids || !probs) {
        rc = error_set(err, ERR_INTERNAL, "out of memory for an evaluation batch of %d", chunk);
        goto done;
    }
    for (int64_t at = lo; at < hi; at += chunk) {
        int n = (int)(hi - at < chunk ? hi - at : chunk);
        for (int i = 0; i < n; i++)
            ids[i] = at + i;
        if ((rc = dataset_read(ds, ids, n, images, labels, classes, err)))
            break;
        struct net_batch b = {n, images, labels, ids, 0};
        struct net_stats st;
        if ((rc = evaluate_infer(net, &b, tta_flip, probs, &st, err)))
            break;
        sums[0] += st.loss_sum;
        sums[1] += (double)st.correct;
        if (confusion)
            for (int i = 0; i < n; i++)
                confusion[(int64_t)labels[i] * classes + argmax(probs + (size_t)i * classes, classes)]++;
    }
done:
    free(images);
    free(labels);
    free(ids);
    free(probs);
    return rc;
}

int evaluate(struct net *net, struct dataset *ds, int64_t start, int64_t end, int chunk,
             struct eval_result *r, struct error *err)
{
    return evaluate_tta(net, ds, start, end, chunk, 0, r, err);
}

int evaluate_tta(struct net *net, struct dataset *ds, int64_t start, int64_t end, int chunk, int tta_flip,
                 struct eval_result *r, struct error *err)
{
    int rank = dist_rank(), size = dist_size();
    int64_t count = end - start;
    int64_t lo = start + count * rank / size, hi = start + count * (rank + 1) / size;
    double sums[2] = {0, 0};
    int classes = net->model.n_classes;
    int rc = run_local(net, ds, lo, hi, chunk, tta_flip, sums, r->confusion, err);
    /* Agree before the sums: a rank that failed must not leave the others in the all-reduce alone. */
    rc = cli_agree(rc, err);
    if (rc)
        return rc;
    dist_allreduce_sum_f64(sums, 2);
    if (r->confusion) {
        /* int64 counts travel as doubles: exact below 2^53. */
        size_t k = (size_t)classes * classes;
        double *tmp = malloc(sizeof(double) * k);
        if (!tmp)
            return error_set(err, ERR_INTERNAL, "out of memory");
        for (size_t i = 0; i < k; i++)
            tmp[i] = (double)r->confusion[i];
        dist_allreduce_sum_f64(tmp, k);
        for (size_t i = 0; i < k; i++)
            r->confusion[i] = (int64_t)tmp[i];
        free(tmp);
    }
    r->count = count;
    /* Keras's evaluate reports the kernel regularizers' penalty in the loss, as fit does. */
    r->loss = count ? sums[0] / (double)count + step_penalty(&net->model, net->params) : 0;
    r->acc = count ? sums[1] / (double)count : 0;
    return ERR_OK;
}

/* evaluate.c: distributed evaluation (see evaluate.h). */
#include "evaluate.h"

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

/* This rank's part of the range, evaluated chunk by chunk; sums into sums[0] (loss), sums[1] (hits). */
static int run_local(struct net *net, struct dataset *ds, int64_t lo, int64_t hi, int chunk, double *sums,
                     int64_t *confusion, struct error *err)
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
        struct net_batch b = {n, images, labels, ids};
        struct net_stats st;
        if ((rc = net_infer_batch(net, &b, probs, &st, err)))
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
    int rank = dist_rank(), size = dist_size();
    int64_t count = end - start;
    int64_t lo = start + count * rank / size, hi = start + count * (rank + 1) / size;
    double sums[2] = {0, 0};
    int classes = net->model.n_classes;
    int rc = run_local(net, ds, lo, hi, chunk, sums, r->confusion, err);
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

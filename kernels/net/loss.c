/* loss.c: softmax + categorical cross-entropy from integer labels, on oneDNN's log-softmax primitive. */
#include "loss.h"

#include <math.h>
#include <string.h>

/* The log-softmax forward primitive on plain (n, classes) data, softmax over the classes (axis 1). */
static int create_logsoftmax(struct loss *l, const dnnl_memory_desc_t *md, const struct dnn *d,
                             struct error *err)
{
    dnnl_logsoftmax_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    DNN_CHECK(dnnl_logsoftmax_forward_desc_init(&desc, dnnl_forward_inference, md, 1));
    DNN_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(&l->logsoftmax, pd));
    dnnl_primitive_desc_destroy(pd);
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return err ? err->code : ERR_INTERNAL;
}

int loss_init(struct loss *l, int n, int classes, const struct dnn *d, struct error *err)
{
    dnnl_memory_desc_t md;
    memset(l, 0, sizeof *l);
    if (n < 1 || classes < 2)
        return error_set(err, ERR_INTERNAL, "loss: bad shape (%d, %d)", n, classes);
    l->n = n;
    l->classes = classes;
    if (dnn_md_nc(&md, n, classes, err) != ERR_OK)
        goto fail;
    if (create_logsoftmax(l, &md, d, err) != ERR_OK)
        goto fail;
    /* No buffer of its own: loss_softmax_xent points it at the caller's logits every call. */
    DNN_CHECK(dnnl_memory_create(&l->logits_mem, &md, d->engine, DNNL_MEMORY_NONE));
    if (dnn_mem(&l->logp, &md, d, NULL, err) != ERR_OK)
        goto fail;
    return ERR_OK;
fail:
    loss_release(l);
    return err ? err->code : ERR_INTERNAL;
}

void loss_release(struct loss *l)
{
    if (l->logsoftmax)
        dnnl_primitive_destroy(l->logsoftmax);
    if (l->logits_mem)
        dnnl_memory_destroy(l->logits_mem);
    if (l->logp)
        dnnl_memory_destroy(l->logp);
    memset(l, 0, sizeof *l);
}

/* Index of the largest logit of a row (classes,); the lowest index wins a tie, as numpy's argmax. */
static int row_argmax(const float *row, int classes)
{
    int best = 0;
    for (int j = 1; j < classes; j++)
        if (row[j] > row[best])
            best = j;
    return best;
}

/* One training sample with label smoothing s: target y_j = s/classes, plus 1-s at the label. */
static void row_loss_smoothed(const float *logits, const float *logp, int classes, int label, float scale, float s,
                              float *probs, float *dlogits, double *loss_sum, long *correct)
{
    const double off = (double)s / classes, on = 1.0 - (double)s + off;
    double loss = 0;
    for (int j = 0; j < classes; j++) {
        double lp = logp[j] < 0 ? (double)logp[j] : 0.0; /* see row_loss */
        loss -= (j == label ? on : off) * lp;
        float p = expf(logp[j]);
        if (probs)
            probs[j] = p;
        dlogits[j] = (p - (float)(j == label ? on : off)) * scale;
    }
    if (loss_sum)
        *loss_sum += loss;
    if (correct)
        *correct += row_argmax(logits, classes) == label;
}

/* One sample: logits (classes,), logp (classes,). probs and dlogits (classes,) may be NULL. */
static void row_loss(const float *logits, const float *logp, int classes, int label, float scale,
                     float *probs, float *dlogits, double *loss_sum, long *correct)
{
    if (probs)
        for (int j = 0; j < classes; j++)
            probs[j] = expf(logp[j]);
    if (label < 0)
        return;
    if (loss_sum)
        /* -log p >= 0; oneDNN's approximate log-softmax can return a log p a hair above 0 for a sure
         * prediction, which would otherwise show as a loss of -0.0000. */
        *loss_sum += logp[label] < 0 ? -(double)logp[label] : 0.0;
    if (correct)
        *correct += row_argmax(logits, classes) == label;
    if (dlogits)
        for (int j = 0; j < classes; j++)
            dlogits[j] = (expf(logp[j]) - (j == label ? 1.0f : 0.0f)) * scale;
}

int loss_softmax_xent(struct loss *l, const float *logits, const int32_t *labels, float scale, float *probs,
                      float *dlogits, double *loss_sum, long *correct, const struct dnn *d, struct error *err)
{
    const int n = l->n, c = l->classes;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, l->logits_mem}, {DNNL_ARG_DST, l->logp}};
    /* oneDNN only reads through the handle; the cast drops a const it has no way to express. */
    DNN_CHECK(dnnl_memory_set_data_handle(l->logits_mem, (void *)logits));
    if (dnn_exec(l->logsoftmax, d, 2, args, err) != ERR_OK)
        goto fail;
    const float *logp = dnn_ptr(l->logp);
    for (int i = 0; i < n; i++) {
        int label = labels ? labels[i] : -1;
        if (labels && (label < 0 || label >= c))
            return error_set(err, ERR_INPUT, "label %d of sample %d is not in [0, %d)", label, i, c);
        if (labels && dlogits && l->smoothing > 0)
            row_loss_smoothed(logits + (size_t)i * c, logp + (size_t)i * c, c, label, scale, l->smoothing,
                              probs ? probs + (size_t)i * c : NULL, dlogits + (size_t)i * c, loss_sum, correct);
        else
            row_loss(logits + (size_t)i * c, logp + (size_t)i * c, c, label, scale,
                     probs ? probs + (size_t)i * c : NULL, labels && dlogits ? dlogits + (size_t)i * c : NULL,
                     loss_sum, correct);
    }
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

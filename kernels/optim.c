/* optim.c: standalone Keras 2 SGD, RMSprop and Adam over the flat parameter and gradient slabs. */
#include "optim.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>

/* Below this many parameters a parallel region costs more than the loop itself. */
#define OPTIM_PARALLEL_MIN 32768

static const char *const kind_names[] = {"sgd", "rmsprop", "adam"};

void optim_defaults(struct optim_conf *c, enum optim_kind kind)
{
    *c = (struct optim_conf){
        .kind = kind,
        .lr = kind == OPTIM_SGD ? 0.01 : 0.001,
        .momentum = 0.0,
        .nesterov = 0,
        .rho = 0.9,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .eps = 1e-7,
    };
}

/* Keras looks optimizer names up case-insensitively ('Adam' and 'adam' both work). */
static int same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

int optim_kind_from_name(const char *name)
{
    for (int k = 0; k < (int)(sizeof kind_names / sizeof kind_names[0]); k++)
        if (name && same_name(name, kind_names[k]))
            return k;
    return -1;
}

const char *optim_kind_name(enum optim_kind kind)
{
    if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0])
        return kind_names[kind];
    return "?";
}

static int in_range(double x, double lo, double hi) { return isfinite(x) && x >= lo && x <= hi; }

/* Hyper-parameters come from the command line: reject what would silently train nonsense. */
static int check_conf(const struct optim_conf *c, struct error *err)
{
    const char *name = optim_kind_name(c->kind);
    if (optim_kind_from_name(name) < 0)
        return error_set(err, ERR_USAGE, "unknown optimizer kind %d", (int)c->kind);
    if (!in_range(c->lr, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "%s: learning rate must be >= 0, not %g", name, c->lr);
    if (c->kind == OPTIM_SGD && !in_range(c->momentum, 0.0, 1.0))
        return error_set(err, ERR_USAGE, "sgd: momentum must be in [0, 1], not %g", c->momentum);
    if (c->kind == OPTIM_RMSPROP && !in_range(c->rho, 0.0, 1.0))
        return error_set(err, ERR_USAGE, "rmsprop: rho must be in [0, 1], not %g", c->rho);
    if (c->kind == OPTIM_ADAM && (!in_range(c->beta1, 0.0, 1.0) || c->beta1 == 1.0 ||
                                  !in_range(c->beta2, 0.0, 1.0) || c->beta2 == 1.0))
        return error_set(err, ERR_USAGE, "adam: beta_1 and beta_2 must be in [0, 1), not %g and %g", c->beta1,
                         c->beta2);
    if (c->kind != OPTIM_SGD && !in_range(c->eps, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "%s: epsilon must be >= 0, not %g", name, c->eps);
    return ERR_OK;
}

int optim_init(struct optim *o, const struct optim_conf *c, size_t n, struct error *err)
{
    *o = (struct optim){0};
    int rc = check_conf(c, err);
    if (rc != ERR_OK)
        return rc;
    o->conf = *c;
    o->n = n;
    o->n_slots = c->kind == OPTIM_ADAM ? 2 : 1;
    /* At least one element so that a parameter-free model still gets a valid (freeable) pointer. */
    o->slots = calloc(n ? (size_t)o->n_slots * n : 1, sizeof *o->slots);
    if (!o->slots)
        return error_set(err, ERR_INTERNAL, "optimizer: out of memory for %d x %zu slots", o->n_slots, n);
    return ERR_OK;
}

void optim_release(struct optim *o)
{
    free(o->slots);
    *o = (struct optim){0};
}

/* p (n,), g (n,), v (n,) velocity. */
static void sgd_step(const struct optim_conf *c, size_t n, float *restrict p, const float *restrict g,
                     float *restrict v)
{
    const float lr = (float)c->lr, mu = (float)c->momentum;
    if (c->nesterov) {
#pragma omp parallel for simd if (n >= OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            float vi = mu * v[i] - lr * g[i];
            v[i] = vi;
            p[i] += mu * vi - lr * g[i];
        }
    } else {
#pragma omp parallel for simd if (n >= OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            float vi = mu * v[i] - lr * g[i];
            v[i] = vi;
            p[i] += vi;
        }
    }
}

/* p (n,), g (n,), a (n,) running mean of g^2. eps is added outside the square root, as Keras 2 does. */
static void rmsprop_step(const struct optim_conf *c, size_t n, float *restrict p, const float *restrict g,
                         float *restrict a)
{
    const float lr = (float)c->lr, rho = (float)c->rho, one_rho = (float)(1.0 - c->rho), eps = (float)c->eps;
#pragma omp parallel for simd if (n >= OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        float ai = rho * a[i] + one_rho * g[i] * g[i];
        a[i] = ai;
        p[i] -= lr * g[i] / (sqrtf(ai) + eps);
    }
}

/* p (n,), g (n,), m (n,) first moment, v (n,) second moment; t is the 1-based update number. Keras 2
 * folds both bias corrections into the step size lr_t and adds eps to the uncorrected sqrt(v). */
static void adam_step(const struct optim_conf *c, int64_t t, size_t n, float *restrict p,
                      const float *restrict g, float *restrict m, float *restrict v)
{
    double lr_t = c->lr * sqrt(1.0 - pow(c->beta2, (double)t)) / (1.0 - pow(c->beta1, (double)t));
    const float lr = (float)lr_t, eps = (float)c->eps;
    const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
    const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
#pragma omp parallel for simd if (n >= OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i] + one_b1 * g[i];
        float vi = b2 * v[i] + one_b2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * mi / (sqrtf(vi) + eps);
    }
}

void optim_step(struct optim *o, float *params, const float *grads)
{
    o->iterations++;
    switch (o->conf.kind) {
    case OPTIM_SGD:
        sgd_step(&o->conf, o->n, params, grads, o->slots);
        break;
    case OPTIM_RMSPROP:
        rmsprop_step(&o->conf, o->n, params, grads, o->slots);
        break;
    case OPTIM_ADAM:
        adam_step(&o->conf, o->iterations, o->n, params, grads, o->slots, o->slots + o->n);
        break;
    }
}

/* optim.c: standalone Keras 2 SGD, RMSprop and Adam over the flat parameter and gradient slabs. */
#include "optim.h"

#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

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

int optim_add_moving(struct optim *o, size_t lo, size_t hi, double momentum, struct error *err)
{
    if (o->n_moving > 0 && o->moving[o->n_moving - 1].hi == lo &&
        o->moving[o->n_moving - 1].momentum == (float)momentum) {
        o->moving[o->n_moving - 1].hi = hi; /* moving_mean then moving_variance: one range */
        return ERR_OK;
    }
    if (o->n_moving == OPTIM_MAX_MOVING)
        return error_set(err, ERR_INTERNAL, "optimizer: more than %d moving averages", OPTIM_MAX_MOVING);
    if (lo > hi || hi > o->n || (o->n_moving > 0 && lo < o->moving[o->n_moving - 1].hi))
        return error_set(err, ERR_INTERNAL, "optimizer: moving average [%zu, %zu) out of order", lo, hi);
    o->moving[o->n_moving++] = (struct optim_moving){lo, hi, (float)momentum};
    return ERR_OK;
}

void optim_release(struct optim *o)
{
    free(o->slots);
    *o = (struct optim){0};
}

/* The update of elements [lo, hi) of one optimizer: p the parameters, g the gradients, s0 and s1 the slots,
 * k the step's constants. */
struct update {
    float *p;
    const float *g;
    float *s0, *s1;
    float k[6];
};

/* Elementwise loops are compiled for AVX-512 and for baseline x86-64 and picked by the CPU at load time:
 * 16 lanes instead of 4 for the same IEEE operations element by element (no FMA: ISO C mode leaves
 * contraction off), so both give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define OPTIM_KERNEL __attribute__((target_clones("avx512f", "default")))
#else
#define OPTIM_KERNEL
#endif

/* Runs kernel(u, lo, hi) over [0, n) in one chunk per thread (chunks of whole cache lines). */
static void run_parallel(void (*kernel)(const struct update *, size_t, size_t), const struct update *u, size_t n)
{
#pragma omp parallel if (n >= OPTIM_PARALLEL_MIN)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t per = (n / nt + 15) & ~(size_t)15, lo = per * t < n ? per * t : n, hi = lo + per < n ? lo + per : n;
        if (lo < hi)
            kernel(u, lo, hi);
    }
}

/* v = mu*v - lr*g; p += v (Nesterov: p += mu*v - lr*g). k = {lr, mu}. */
OPTIM_KERNEL static void sgd_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict v = u->s0;
    const float *restrict g = u->g;
    const float lr = u->k[0], mu = u->k[1];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float vi = mu * v[i] - lr * g[i];
        v[i] = vi;
        p[i] += vi;
    }
}

OPTIM_KERNEL static void nesterov_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict v = u->s0;
    const float *restrict g = u->g;
    const float lr = u->k[0], mu = u->k[1];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float vi = mu * v[i] - lr * g[i];
        v[i] = vi;
        p[i] += mu * vi - lr * g[i];
    }
}

/* a running mean of g^2; eps is added outside the square root, as Keras 2 does. k = {lr, rho, 1-rho, eps}. */
OPTIM_KERNEL static void rmsprop_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict a = u->s0;
    const float *restrict g = u->g;
    const float lr = u->k[0], rho = u->k[1], one_rho = u->k[2], eps = u->k[3];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float ai = rho * a[i] + one_rho * g[i] * g[i];
        a[i] = ai;
        p[i] -= lr * g[i] / (sqrtf(ai) + eps);
    }
}

/* m first moment, v second moment. k = {lr_t, eps, b1, 1-b1, b2, 1-b2}. */
OPTIM_KERNEL static void adam_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict m = u->s0, *restrict v = u->s1;
    const float *restrict g = u->g;
    const float lr = u->k[0], eps = u->k[1], b1 = u->k[2], one_b1 = u->k[3], b2 = u->k[4], one_b2 = u->k[5];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float mi = b1 * m[i] + one_b1 * g[i];
        float vi = b2 * v[i] + one_b2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * mi / (sqrtf(vi) + eps);
    }
}

/* Keras 2 Adam folds both bias corrections into the step size lr_t (t is the 1-based update number) and adds
 * eps to the uncorrected sqrt(v). */
static float adam_lr_t(const struct optim_conf *c, int64_t t)
{
    return (float)(c->lr * sqrt(1.0 - pow(c->beta2, (double)t)) / (1.0 - pow(c->beta1, (double)t)));
}

void optim_step(struct optim *o, float *params, const float *grads)
{
    optim_step_range(o, params, grads, 0, o->n);
}

/* The optimizer's update of [lo, hi), none of it a moving average. */
static void step_trained(struct optim *o, float *params, const float *grads, size_t lo, size_t hi)
{
    const struct optim_conf *c = &o->conf;
    struct update u = {params + lo, grads, o->slots + lo, o->slots + o->n + lo, {0}};
    size_t n = hi - lo;
    if (n == 0)
        return;
    switch (c->kind) {
    case OPTIM_SGD:
        u.k[0] = (float)c->lr;
        u.k[1] = (float)c->momentum;
        run_parallel(c->nesterov ? nesterov_kernel : sgd_kernel, &u, n);
        break;
    case OPTIM_RMSPROP:
        u.k[0] = (float)c->lr;
        u.k[1] = (float)c->rho;
        u.k[2] = (float)(1.0 - c->rho);
        u.k[3] = (float)c->eps;
        run_parallel(rmsprop_kernel, &u, n);
        break;
    case OPTIM_ADAM:
        u.k[0] = adam_lr_t(c, o->iterations);
        u.k[1] = (float)c->eps;
        u.k[2] = (float)c->beta1;
        u.k[3] = (float)(1.0 - c->beta1);
        u.k[4] = (float)c->beta2;
        u.k[5] = (float)(1.0 - c->beta2);
        run_parallel(adam_kernel, &u, n);
        break;
    }
}

/* TensorFlow's assign_moving_average (Keras 2's moving_average_update without the zero-debiasing): the
 * statistic g of the global batch is folded into p. */
static void step_moving(float *p, const float *g, size_t n, float momentum)
{
    const float one_m = 1.0f - momentum;
    for (size_t i = 0; i < n; i++)
        p[i] -= (p[i] - g[i]) * one_m;
}

void optim_step_range(struct optim *o, float *params, const float *shard_grads, size_t lo, size_t hi)
{
    /* Adam's bias correction counts the step once, whatever the moving averages split the range into. */
    o->iterations++;
    size_t at = lo;
    for (int k = 0; k < o->n_moving && at < hi; k++) {
        const struct optim_moving *m = &o->moving[k];
        size_t a = m->lo > at ? m->lo : at, b = m->hi < hi ? m->hi : hi;
        if (a >= b)
            continue;
        step_trained(o, params, shard_grads + (at - lo), at, a);
        step_moving(params + a, shard_grads + (a - lo), b - a, m->momentum);
        at = b;
    }
    step_trained(o, params, shard_grads + (at - lo), at, hi);
}

/* A float is an infinity or a NaN when its exponent bits are all ones. Testing the bits is an integer
 * compare and an OR, which vectorize with no chain of dependent additions (a sum of x * 0 did, and cost 57 us
 * on the 264k floats of a shard: the latency of one vector add per element group). Runs every step. */
OPTIM_KERNEL static int all_finite_range(const float *x, size_t lo, size_t hi)
{
    unsigned bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t i = lo; i < hi; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

int optim_all_finite(const float *x, size_t n)
{
    int ok = 1;
#pragma omp parallel reduction(& : ok) if (n >= OPTIM_PARALLEL_MIN)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t per = (n + nt - 1) / nt, lo = per * t < n ? per * t : n, hi = lo + per < n ? lo + per : n;
        ok = all_finite_range(x, lo, hi);
    }
    return ok;
}

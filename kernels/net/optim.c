/* optim.c: standalone Keras 2 SGD, RMSprop and Adam, Keras 3 AdamW and LARS over the flat parameter and
 * gradient slabs, with the per-tensor regularizers, decay and clipping. */
#include "optim.h"

#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Below this many parameters a parallel region costs more than the loop itself. */
#define OPTIM_PARALLEL_MIN 32768

static const char *const kind_names[] = {"sgd", "rmsprop", "adam", "adamw", "lars"};

void optim_defaults(struct optim_conf *c, enum optim_kind kind)
{
    *c = (struct optim_conf){
        .kind = kind,
        .lr = kind == OPTIM_SGD || kind == OPTIM_LARS ? 0.01 : 0.001,
        /* LARS: the TensorFlow Model Garden's defaults (Keras has no LARS). */
        .momentum = kind == OPTIM_LARS ? 0.9 : 0.0,
        .nesterov = 0,
        .rho = 0.9,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .eps = 1e-7,
        .weight_decay = kind == OPTIM_ADAMW ? 0.004 : 0.0,
        .lars_eta = 0.001,
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
    if ((c->kind == OPTIM_SGD || c->kind == OPTIM_LARS) && !in_range(c->momentum, 0.0, 1.0))
        return error_set(err, ERR_USAGE, "%s: momentum must be in [0, 1], not %g", name, c->momentum);
    if (c->nesterov && c->kind != OPTIM_SGD)
        return error_set(err, ERR_USAGE, "%s: Nesterov momentum is for sgd only", name);
    if (c->kind == OPTIM_RMSPROP && !in_range(c->rho, 0.0, 1.0))
        return error_set(err, ERR_USAGE, "rmsprop: rho must be in [0, 1], not %g", c->rho);
    if ((c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW) && (!in_range(c->beta1, 0.0, 1.0) || c->beta1 == 1.0 ||
                                  !in_range(c->beta2, 0.0, 1.0) || c->beta2 == 1.0))
        return error_set(err, ERR_USAGE, "adam: beta_1 and beta_2 must be in [0, 1), not %g and %g", c->beta1,
                         c->beta2);
    if (c->kind != OPTIM_SGD && !in_range(c->eps, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "%s: epsilon must be >= 0, not %g", name, c->eps);
    if (!in_range(c->weight_decay, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "%s: weight decay must be >= 0, not %g", name, c->weight_decay);
    if (c->kind == OPTIM_LARS && !(in_range(c->lars_eta, 0.0, INFINITY) && c->lars_eta > 0))
        return error_set(err, ERR_USAGE, "lars: eta must be > 0, not %g", c->lars_eta);
    if (!in_range(c->clipnorm, 0.0, INFINITY) || !in_range(c->global_clipnorm, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "%s: clipnorm and global_clipnorm must be >= 0, not %g and %g", name,
                         c->clipnorm, c->global_clipnorm);
    if (c->clipnorm > 0 && c->global_clipnorm > 0)
        return error_set(err, ERR_USAGE, "%s: clipnorm and global_clipnorm exclude each other (as in Keras)", name);
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
    o->n_slots = c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW ? 2 : 1;
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

int optim_add_tensor(struct optim *o, size_t lo, size_t hi, double l1, double l2, int adapt, struct error *err)
{
    if (!in_range(l1, 0.0, INFINITY) || !in_range(l2, 0.0, INFINITY))
        return error_set(err, ERR_USAGE, "regularizer factors must be finite and >= 0, not l1 %g, l2 %g", l1, l2);
    if (o->n_tensors == OPTIM_MAX_TENSORS)
        return error_set(err, ERR_INTERNAL, "optimizer: more than %d parameter tensors", OPTIM_MAX_TENSORS);
    if (lo > hi || hi > o->n || (o->n_tensors > 0 && lo < o->tensors[o->n_tensors - 1].hi))
        return error_set(err, ERR_INTERNAL, "optimizer: tensor [%zu, %zu) out of order", lo, hi);
    o->tensors[o->n_tensors++] = (struct optim_tensor){lo, hi, l1, l2, adapt != 0};
    return ERR_OK;
}

static int has_regularizer(const struct optim *o)
{
    for (int t = 0; t < o->n_tensors; t++)
        if (o->tensors[t].l1 != 0 || o->tensors[t].l2 != 0)
            return 1;
    return 0;
}

int optim_needs_sums(const struct optim *o)
{
    const struct optim_conf *c = &o->conf;
    return o->n_tensors > 0 &&
           (has_regularizer(o) || c->clipnorm > 0 || c->global_clipnorm > 0 || c->kind == OPTIM_LARS);
}

/* The sums over x[0, n) of |x|, x^2 (and of y^2), in double with four running sums: the same order for the
 * same range on every machine (no reassociation is allowed without it being written so). */
static void sums_of(const float *x, const float *y, size_t n, double out[OPTIM_SUMS])
{
    double a[4] = {0}, w[4] = {0}, g[4] = {0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            double v = x[i + k], d = y[i + k];
            a[k] += fabs(v);
            w[k] += v * v;
            g[k] += d * d;
        }
    for (int k = 0; i < n; i++, k++) {
        double v = x[i], d = y[i];
        a[k] += fabs(v);
        w[k] += v * v;
        g[k] += d * d;
    }
    out[OPTIM_SUM_ABS_W] = (a[0] + a[1]) + (a[2] + a[3]);
    out[OPTIM_SUM_W2] = (w[0] + w[1]) + (w[2] + w[3]);
    out[OPTIM_SUM_G2] = (g[0] + g[1]) + (g[2] + g[3]);
}

/* g += l1 * sign(w) + 2 * l2 * w: the gradient of Keras's L1L2 penalty (sign(0) = 0, as TensorFlow's). */
static void add_regularizer_grad(const float *w, float *g, size_t n, double l1, double l2)
{
    const float a = (float)l1, b = (float)(2.0 * l2);
    for (size_t i = 0; i < n; i++) {
        float sign = (float)((w[i] > 0) - (w[i] < 0));
        g[i] += a * sign + b * w[i];
    }
}

void optim_prepare(struct optim *o, const float *params, float *shard_grads, size_t lo, size_t hi)
{
    int sums = optim_needs_sums(o);
    for (int t = 0; t < o->n_tensors; t++) {
        const struct optim_tensor *x = &o->tensors[t];
        size_t a = x->lo > lo ? x->lo : lo, b = x->hi < hi ? x->hi : hi;
        double *part = o->part + (size_t)t * OPTIM_SUMS;
        memset(part, 0, sizeof(double) * OPTIM_SUMS);
        if (a >= b)
            continue;
        if (x->l1 != 0 || x->l2 != 0)
            add_regularizer_grad(params + a, shard_grads + (a - lo), b - a, x->l1, x->l2);
        if (sums)
            sums_of(params + a, shard_grads + (a - lo), b - a, part);
    }
}

double optim_penalty(const struct optim *o)
{
    double p = 0;
    for (int t = 0; t < o->n_tensors; t++) {
        const double *s = o->sums + (size_t)t * OPTIM_SUMS;
        if (o->tensors[t].l1 != 0)
            p += o->tensors[t].l1 * s[OPTIM_SUM_ABS_W];
        if (o->tensors[t].l2 != 0)
            p += o->tensors[t].l2 * s[OPTIM_SUM_W2];
    }
    return p;
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

/* Keras 3's Adam arithmetic (AdamW): m += (g - m)*(1-b1); v += (g^2 - v)*(1-b2); p -= m*alpha / (sqrt(v) + eps).
 * k = {alpha, eps, 1-b1, 1-b2}. */
OPTIM_KERNEL static void adamw_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict m = u->s0, *restrict v = u->s1;
    const float *restrict g = u->g;
    const float alpha = u->k[0], eps = u->k[1], one_b1 = u->k[2], one_b2 = u->k[3];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float mi = m[i] + (g[i] - m[i]) * one_b1;
        float vi = v[i] + (g[i] * g[i] - v[i]) * one_b2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= mi * alpha / (sqrtf(vi) + eps);
    }
}

/* Keras 3's decoupled weight decay, before the update: p -= p*wd*lr. k = {wd, lr}. */
OPTIM_KERNEL static void decay_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p;
    const float wd = u->k[0], lr = u->k[1];
#pragma omp simd
    for (size_t i = lo; i < hi; i++)
        p[i] -= p[i] * wd * lr;
}

/* LARS with momentum: v = mu*v + lr*(g + wd*p); p -= v, lr already times the tensor's trust ratio.
 * k = {lr, mu, wd}. */
OPTIM_KERNEL static void lars_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict p = u->p, *restrict v = u->s0;
    const float *restrict g = u->g;
    const float lr = u->k[0], mu = u->k[1], wd = u->k[2];
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float vi = mu * v[i] + lr * (g[i] + wd * p[i]);
        v[i] = vi;
        p[i] -= vi;
    }
}

/* g *= f. k = {f}. */
OPTIM_KERNEL static void scale_kernel(const struct update *u, size_t lo, size_t hi)
{
    float *restrict g = u->p;
    const float f = u->k[0];
#pragma omp simd
    for (size_t i = lo; i < hi; i++)
        g[i] *= f;
}

/* Keras 2 Adam folds both bias corrections into the step size lr_t (t is the 1-based update number) and adds
 * eps to the uncorrected sqrt(v). */
static float adam_lr_t(const struct optim_conf *c, int64_t t)
{
    return (float)(c->lr * sqrt(1.0 - pow(c->beta2, (double)t)) / (1.0 - pow(c->beta1, (double)t)));
}

void optim_step(struct optim *o, float *params, float *grads)
{
    optim_prepare(o, params, grads, 0, o->n);
    memcpy(o->sums, o->part, sizeof(double) * OPTIM_SUMS * (size_t)o->n_tensors);
    optim_step_range(o, params, grads, 0, o->n);
}

/* Tensor t's clipping factor (Keras: clipnorm per tensor, global_clipnorm over all), from o->sums. */
static double clip_factor(const struct optim *o, int t, double global_norm)
{
    const struct optim_conf *c = &o->conf;
    if (c->global_clipnorm > 0)
        return global_norm > c->global_clipnorm ? c->global_clipnorm / global_norm : 1.0;
    if (c->clipnorm > 0) {
        double norm = sqrt(o->sums[(size_t)t * OPTIM_SUMS + OPTIM_SUM_G2]);
        return norm > c->clipnorm ? c->clipnorm / norm : 1.0;
    }
    return 1.0;
}

static double global_grad_norm(const struct optim *o)
{
    double g2 = 0;
    for (int t = 0; t < o->n_tensors; t++)
        g2 += o->sums[(size_t)t * OPTIM_SUMS + OPTIM_SUM_G2];
    return sqrt(g2);
}

/* Scales the shard's gradients of each tensor by its clipping factor (before any use of them). */
static void clip_shard(const struct optim *o, float *shard_grads, size_t lo, size_t hi)
{
    if (!(o->conf.clipnorm > 0 || o->conf.global_clipnorm > 0))
        return;
    double global_norm = global_grad_norm(o);
    for (int t = 0; t < o->n_tensors; t++) {
        const struct optim_tensor *x = &o->tensors[t];
        size_t a = x->lo > lo ? x->lo : lo, b = x->hi < hi ? x->hi : hi;
        double f = clip_factor(o, t, global_norm);
        if (a >= b || f == 1.0)
            continue;
        struct update u = {shard_grads + (a - lo), NULL, NULL, NULL, {(float)f}};
        run_parallel(scale_kernel, &u, b - a);
    }
}

/* LARS's trust ratio of tensor t: eta*||w|| / (||g|| + wd*||w||) with the clipped gradient; 1 for a tensor
 * it does not adapt, or when either norm is 0 (a fresh zero tensor, a gradient-free step). */
static double lars_ratio(const struct optim *o, int t, double global_norm)
{
    const struct optim_conf *c = &o->conf;
    const double *s = o->sums + (size_t)t * OPTIM_SUMS;
    if (!o->tensors[t].adapt)
        return 1.0;
    double w = sqrt(s[OPTIM_SUM_W2]), g = sqrt(s[OPTIM_SUM_G2]) * clip_factor(o, t, global_norm);
    if (!(w > 0) || !(g > 0))
        return 1.0;
    return c->lars_eta * w / (g + c->weight_decay * w);
}

/* LARS on [lo, hi): each tensor's piece with its ratio and decay, anything else as plain momentum SGD. */
static void step_lars(struct optim *o, float *params, const float *grads, size_t lo, size_t hi)
{
    const struct optim_conf *c = &o->conf;
    double global_norm = c->global_clipnorm > 0 ? global_grad_norm(o) : 0;
    size_t at = lo;
    for (int t = 0; t <= o->n_tensors && at < hi; t++) {
        const struct optim_tensor *x = t < o->n_tensors ? &o->tensors[t] : NULL;
        size_t a = x ? (x->lo > at ? x->lo : at) : hi, b = x ? (x->hi < hi ? x->hi : hi) : hi;
        if (a > hi)
            a = hi;
        /* [at, a): not a tensor (ratio 1, no decay); [a, b): tensor t's piece. */
        for (int piece = 0; piece < 2; piece++) {
            size_t p0 = piece ? a : at, p1 = piece ? b : a;
            if (p0 >= p1)
                continue;
            double ratio = piece ? lars_ratio(o, t, global_norm) : 1.0;
            double wd = piece && x->adapt ? c->weight_decay : 0.0;
            struct update u = {params + p0, grads + (p0 - lo), o->slots + p0, NULL,
                               {(float)(c->lr * ratio), (float)c->momentum, (float)wd}};
            run_parallel(lars_kernel, &u, p1 - p0);
        }
        if (b > at)
            at = b;
    }
}

/* The optimizer's update of [lo, hi), none of it a moving average. */
static void step_trained(struct optim *o, float *params, const float *grads, size_t lo, size_t hi)
{
    const struct optim_conf *c = &o->conf;
    struct update u = {params + lo, grads, o->slots + lo, o->slots + o->n + lo, {0}};
    size_t n = hi - lo;
    if (n == 0)
        return;
    if (c->kind == OPTIM_LARS) {
        step_lars(o, params, grads, lo, hi);
        return;
    }
    if (c->weight_decay > 0) {
        struct update d = {params + lo, NULL, NULL, NULL, {(float)c->weight_decay, (float)c->lr}};
        run_parallel(decay_kernel, &d, n);
    }
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
    case OPTIM_ADAMW:
        u.k[0] = (float)(c->lr * sqrt(1.0 - pow(c->beta2, (double)o->iterations)) /
                         (1.0 - pow(c->beta1, (double)o->iterations)));
        u.k[1] = (float)c->eps;
        u.k[2] = (float)(1.0 - c->beta1);
        u.k[3] = (float)(1.0 - c->beta2);
        run_parallel(adamw_kernel, &u, n);
        break;
    case OPTIM_LARS:
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

void optim_step_range(struct optim *o, float *params, float *shard_grads, size_t lo, size_t hi)
{
    /* Adam's bias correction counts the step once, whatever the moving averages split the range into. */
    o->iterations++;
    clip_shard(o, shard_grads, lo, hi);
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

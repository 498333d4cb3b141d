/* layer_check.c: the per-layer test harness (see layer_check.h). */
#include "layer_check.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"

void lc_fill(float *x, size_t n, double lo, double hi, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed, 77);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * rng_uniform(&r));
}

double lc_max_rel_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

float *lc_floats(size_t n)
{
    float *p = malloc(sizeof(float) * (n + 1));
    assert_non_null(p);
    return p;
}

double lc_ref_act(enum activation a, double v)
{
    switch (a) {
    case ACT_RELU: return v > 0 ? v : 0;
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case ACT_TANH: return tanh(v);
    default: return v;
    }
}

int lc_is_blocked(const dnnl_memory_desc_t *md)
{
    return md->format_kind == dnnl_blocked && md->format_desc.blocking.inner_nblks > 0;
}

static void plain_md(dnnl_memory_desc_t *md, int n, const struct shape *s)
{
    struct error e = {0};
    int rc = s->rank == 3 ? dnn_md_nhwc(md, n, s->h, s->w, s->c, &e) : dnn_md_nc(md, n, s->c, &e);
    if (rc != ERR_OK)
        fail_msg("descriptor: %s", e.msg);
}

void lc_setup(struct lc *t, const struct layer_spec *spec, int n, uint64_t seed)
{
    struct error e = {0};
    memset(t, 0, sizeof *t);
    t->spec = *spec;
    t->n = n;
    t->seed = seed;
    t->step = 3;
    LC_OK(dnn_init(&t->dnn, err));
    if (t->spec.ops->infer(&t->spec, &e) != ERR_OK)
        fail_msg("infer: %s", e.msg);
    for (int i = 0; i < t->spec.n_params; i++) {
        t->spec.params[i].offset = t->n_w;
        t->n_w += t->spec.params[i].size;
    }
    t->w = calloc(t->n_w + 1, sizeof(float));
    t->dw = calloc(t->n_w + 1, sizeof(float));
    lc_fill(t->w, t->n_w, -0.5, 0.5, seed);
    t->in_size = (size_t)n * shape_size(&t->spec.in);
    t->out_size = (size_t)n * shape_size(&t->spec.out);
    t->ids = malloc(sizeof(int64_t) * n);
    for (int i = 0; i < n; i++)
        t->ids[i] = 100 + i;
    plain_md(&t->in_plain, n, &t->spec.in);
    plain_md(&t->out_plain, n, &t->spec.out);
    t->l.spec = &t->spec;
    t->l.n = n;
    t->l.src_md = t->in_plain;
    t->l.w = t->w;
    t->l.dw = t->dw;
    if (t->spec.ops->create(&t->l, &t->dnn, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
    LC_OK(dnn_mem(&t->src, &t->in_plain, &t->dnn, t->w /* any non-NULL handle; replaced per call */, err));
}

void lc_teardown(struct lc *t)
{
    t->spec.ops->destroy(&t->l);
    dnnl_memory_destroy(t->src);
    dnn_release(&t->dnn);
    free(t->w);
    free(t->dw);
    free(t->ids);
}

static struct step_ctx ctx_of(struct lc *t, int training)
{
    struct step_ctx c = {&t->dnn, training, t->seed, t->step, t->ids,
                         t->global_batch > 0 ? t->global_batch : t->n, t->sum, t->sum_arg, 0};
    return c;
}

void lc_forward(struct lc *t, const float *x, float *y, int training)
{
    struct error e = {0};
    struct step_ctx c = ctx_of(t, training);
    dnnl_memory_set_data_handle(t->src, (void *)x);
    if (t->spec.ops->forward(&t->l, &c, t->src, &e) != ERR_OK)
        fail_msg("forward: %s", e.msg);
    if (dnn_read_plain(t->l.dst, &t->out_plain, y, &t->dnn, &e) != ERR_OK)
        fail_msg("read dst: %s", e.msg);
}

void lc_backward(struct lc *t, const float *x, const float *dy, float *dx, int training)
{
    struct error e = {0};
    struct step_ctx c = ctx_of(t, training);
    float *y = malloc(sizeof(float) * (t->out_size + 1));
    dnnl_memory_t ddst = NULL;
    lc_forward(t, x, y, training);
    if (dnn_mem(&ddst, &t->l.dst_md, &t->dnn, NULL, &e) != ERR_OK ||
        dnn_write_plain(ddst, &t->out_plain, dy, &t->dnn, &e) != ERR_OK)
        fail_msg("diff_dst: %s", e.msg);
    dnnl_memory_set_data_handle(t->src, (void *)x);
    if (t->spec.ops->backward(&t->l, &c, t->src, ddst, &e) != ERR_OK)
        fail_msg("backward: %s", e.msg);
    if (dx && dnn_read_plain(t->l.diff_src, &t->in_plain, dx, &t->dnn, &e) != ERR_OK)
        fail_msg("read diff_src: %s", e.msg);
    dnnl_memory_destroy(ddst);
    free(y);
}

/* L = sum(forward(x) * R), in double. */
static double objective(struct lc *t, const float *x, const float *r, float *y, int training)
{
    lc_forward(t, x, y, training);
    double s = 0;
    for (size_t i = 0; i < t->out_size; i++)
        s += (double)y[i] * r[i];
    return s;
}

/* Central difference at *p, or NAN when the one-sided slopes disagree (a kink within +-h). */
static double numeric(struct lc *t, float *p, const float *x, const float *r, float *y, int training)
{
    const float h = 1e-2f;
    float saved = *p;
    double f0 = objective(t, x, r, y, training);
    *p = saved + h;
    double fp = objective(t, x, r, y, training);
    *p = saved - h;
    double fm = objective(t, x, r, y, training);
    *p = saved;
    double right = (fp - f0) / h, left = (f0 - fm) / h;
    if (fabs(right - left) > 1e-2 * fmax(1.0, fabs(right) + fabs(left)))
        return NAN;
    return (fp - fm) / (2.0 * h);
}

static void check_points(struct lc *t, float *vals, const float *grad, size_t count, const char *what,
                         const float *x, const float *r, float *y, int training, double tol, int max_points)
{
    struct rng g;
    rng_seed(&g, 1234, count);
    int checked = 0, tried = 0;
    size_t points = count <= (size_t)max_points ? count : (size_t)max_points;
    for (size_t k = 0; k < points; k++) {
        size_t i = count <= (size_t)max_points ? k : (size_t)rng_below(&g, count);
        double num = numeric(t, &vals[i], x, r, y, training);
        tried++;
        if (isnan(num))
            continue;
        checked++;
        double diff = fabs(grad[i] - num);
        if (diff > tol * fmax(1.0, fabs(num)))
            fail_msg("%s: %s[%zu]: analytic %.6g, numeric %.6g", t->spec.ops->name, what, i, grad[i], num);
    }
    if (tried > 0 && checked * 2 < tried)
        fail_msg("%s: %s: only %d of %d points were away from kinks", t->spec.ops->name, what, checked, tried);
}

void lc_gradcheck(struct lc *t, int training, double tol, int max_points)
{
    float *x = malloc(sizeof(float) * (t->in_size + 1));
    float *r = malloc(sizeof(float) * (t->out_size + 1));
    float *y = malloc(sizeof(float) * (t->out_size + 1));
    float *dx = malloc(sizeof(float) * (t->in_size + 1));
    float *dw = malloc(sizeof(float) * (t->n_w + 1));
    lc_fill(x, t->in_size, -1.0, 1.0, t->seed + 1);
    lc_fill(r, t->out_size, -1.0, 1.0, t->seed + 2);
    lc_backward(t, x, r, dx, training);
    memcpy(dw, t->dw, sizeof(float) * t->n_w);
    check_points(t, x, dx, t->in_size, "input", x, r, y, training, tol, max_points);
    /* Each trained tensor; a moving average's slot holds a batch statistic, not a derivative (layer.h). */
    for (int i = 0; i < t->spec.n_params; i++) {
        const struct param_info *p = &t->spec.params[i];
        if (!p->moving)
            check_points(t, t->w + p->offset, dw + p->offset, p->size, p->name, x, r, y, training, tol, max_points);
    }
    free(x);
    free(r);
    free(y);
    free(dx);
    free(dw);
}

void lc_check_gradient(const struct layer_spec *spec, int n, uint64_t seed, double tol, int max_points)
{
    struct lc t;
    lc_setup(&t, spec, n, seed);
    lc_gradcheck(&t, 1, tol, max_points);
    lc_teardown(&t);
}

/* ---- other input layouts ---- */

void lc_run_in_layout(struct lc *t, dnnl_format_tag_t tag, const float *x, const float *dy, float *y, float *dx,
                      dnnl_memory_desc_t *dst_md)
{
    struct error e = {0};
    struct layer l;
    dnnl_memory_desc_t md;
    dnnl_memory_t src = NULL, ddst = NULL;
    dnnl_dims_t dims = {t->n, t->spec.in.c, t->spec.in.h, t->spec.in.w};
    assert_int_equal(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag), dnnl_success);
    memset(&l, 0, sizeof l);
    l.spec = &t->spec;
    l.n = t->n;
    l.src_md = md;
    l.w = t->w;
    l.dw = t->dw;
    if (t->spec.ops->create(&l, &t->dnn, 1, &e) != ERR_OK)
        fail_msg("create: %s", e.msg);
    if (dst_md)
        *dst_md = l.dst_md;
    assert_true(dnnl_memory_desc_equal(dnn_md_of(l.diff_src), &md));
    struct step_ctx c = ctx_of(t, 1);
    assert_int_equal(dnn_mem(&src, &md, &t->dnn, NULL, &e), ERR_OK);
    assert_int_equal(dnn_write_plain(src, &t->in_plain, x, &t->dnn, &e), ERR_OK);
    assert_int_equal(t->spec.ops->forward(&l, &c, src, &e), ERR_OK);
    assert_int_equal(dnn_read_plain(l.dst, &t->out_plain, y, &t->dnn, &e), ERR_OK);
    assert_int_equal(dnn_mem(&ddst, &l.dst_md, &t->dnn, NULL, &e), ERR_OK);
    assert_int_equal(dnn_write_plain(ddst, &t->out_plain, dy, &t->dnn, &e), ERR_OK);
    assert_int_equal(t->spec.ops->backward(&l, &c, src, ddst, &e), ERR_OK);
    assert_int_equal(dnn_read_plain(l.diff_src, &t->in_plain, dx, &t->dnn, &e), ERR_OK);
    t->spec.ops->destroy(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
}

/* Bit for bit with tol 0: a layer that only moves or masks values must not change one. */
static void assert_close(const float *a, const float *b, size_t n, double tol)
{
    if (tol == 0)
        assert_memory_equal(a, b, sizeof(float) * n);
    else
        assert_true(lc_max_rel_diff(a, b, n) <= tol);
}

void lc_check_layout(struct lc *t, dnnl_format_tag_t tag, double x_range, uint64_t seed, double tol,
                     dnnl_memory_desc_t *dst_md)
{
    float *x = lc_floats(t->in_size), *dy = lc_floats(t->out_size);
    float *y = lc_floats(t->out_size), *dx = lc_floats(t->in_size);
    float *yb = lc_floats(t->out_size), *dxb = lc_floats(t->in_size);
    lc_fill(x, t->in_size, -x_range, x_range, seed);
    lc_fill(dy, t->out_size, -1.0, 1.0, seed + 1);
    lc_backward(t, x, dy, dx, 1);
    lc_forward(t, x, y, 1);
    lc_run_in_layout(t, tag, x, dy, yb, dxb, dst_md);
    assert_close(yb, y, t->out_size, tol);
    assert_close(dxb, dx, t->in_size, tol);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(yb);
    free(dxb);
}

/* ---- calls for the parsers ---- */

void lc_args_init(struct args *a, const char *layer, int line)
{
    memset(a, 0, sizeof *a);
    a->file = "m.txt";
    a->line = line;
    a->col = 1;
    snprintf(a->layer, sizeof a->layer, "%s", layer);
}

struct arg *lc_arg(struct args *a, const char *key, enum arg_type type, int col)
{
    assert_true(a->n < ARGS_MAX);
    struct arg *x = &a->a[a->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "%s", key ? key : "");
    x->col = col;
    x->type = type;
    return x;
}

void lc_arg_int(struct args *a, const char *key, long v, int col)
{
    lc_arg(a, key, ARG_INT, col)->num = (double)v;
}

void lc_arg_str(struct args *a, const char *key, const char *v, int col)
{
    struct arg *x = lc_arg(a, key, ARG_STRING, col);
    snprintf(x->str, sizeof x->str, "%s", v);
}

void lc_arg_tuple(struct args *a, const char *key, int n, const long *v, int col)
{
    struct arg *x = lc_arg(a, key, ARG_TUPLE, col);
    x->n_tuple = n;
    for (int i = 0; i < n; i++)
        x->tuple[i] = v[i];
}

int lc_parse(const struct layer_ops *ops, struct args *a, struct layer_spec *s, struct error *e)
{
    memset(s, 0, sizeof *s);
    s->ops = ops;
    memset(e, 0, sizeof *e);
    int rc = ops->parse(s, a, e);
    return rc != ERR_OK ? rc : args_check_unused(a, e);
}

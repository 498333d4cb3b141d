/* layer_check.h: a harness that runs one layer kind alone on plain (NHWC / NC) buffers, for the
 * per-layer tests: forward against a naive reference, backward against central finite differences, the
 * same layer on other input layouts; and what those tests share to build calls for the parsers. */
#ifndef TRAINER_LAYER_CHECK_H
#define TRAINER_LAYER_CHECK_H

#include <stdint.h>

#include "args.h"
#include "dnn.h"
#include "layer.h"

/* Fails the test, naming the call and its message, unless `call` returns ERR_OK; `call` may use `err`. */
#define LC_OK(call)                                                                                 \
    do {                                                                                            \
        struct error e_ = {0};                                                                      \
        struct error *err = &e_;                                                                    \
        if ((call) != ERR_OK)                                                                       \
            fail_msg("%s failed: %s", #call, err->msg);                                             \
    } while (0)

struct lc {
    struct dnn dnn;
    struct layer_spec spec;
    struct layer l;
    int n;
    size_t in_size, out_size;   /* elements per batch: n * shape_size(in/out) */
    size_t n_w;                 /* parameters of the layer */
    float *w, *dw;              /* (n_w,) Keras layout, as in the slab */
    dnnl_memory_desc_t in_plain, out_plain;
    dnnl_memory_t src;          /* wraps the caller's input (layout in_plain) */
    int64_t *ids;               /* (n,) sample ids 100, 101, ... for dropout */
    uint64_t seed, step;
    /* A training step's global batch and its sum over "ranks" (layer.h); 0 and NULL (lc_setup): the batch is
     * all there is. */
    int global_batch;
    step_sum_fn sum;
    void *sum_arg;
};

/* spec: ops, u.<kind> config and `in` set by the caller. Infers shapes, allocates and fills w with
 * U(-0.5, 0.5) from `seed`, creates the layer for batch n with plain src layout. Fails the test on error. */
void lc_setup(struct lc *t, const struct layer_spec *spec, int n, uint64_t seed);
void lc_teardown(struct lc *t);

/* y (out_size,) plain = forward(x (in_size,) plain). */
void lc_forward(struct lc *t, const float *x, float *y, int training);
/* Forward then backward with diff_dst dy (out_size,): dx (in_size,) plain, gradient in t->dw. */
void lc_backward(struct lc *t, const float *x, const float *dy, float *dx, int training);

/* Checks backward against central differences of L = sum(forward(x) * R) for random x and R:
 * every input element and every parameter when there are at most `max_points` of them, else a random
 * subset of that many. Points where the function has a kink within +-h (the one-sided slopes
 * disagree: ReLU at 0, a max changing its argmax) are skipped, as ggml does. Asserts
 * |analytic - numeric| <= tol * max(1, |numeric|) and that at least half of the points were checked. */
void lc_gradcheck(struct lc *t, int training, double tol, int max_points);
/* lc_gradcheck in training on a harness of its own: lc_setup(spec, n, seed), check, lc_teardown. */
void lc_check_gradient(const struct layer_spec *spec, int n, uint64_t seed, double tol, int max_points);

/* Random fill U(lo, hi) from a seed (deterministic). */
void lc_fill(float *x, size_t n, double lo, double hi, uint64_t seed);

/* Max |a - b| / max(1, |b|) over n. */
double lc_max_rel_diff(const float *a, const float *b, size_t n);

/* n floats from malloc (one spare, so that n = 0 is fine); fails the test when there is no memory. */
float *lc_floats(size_t n);

/* Keras's activations, in double: the reference of every layer that applies one. Linear and softmax (the
 * loss's, never the layer's) are the identity. */
double lc_ref_act(enum activation a, double v);

/* A blocked layout (nChw16c ...): what oneDNN picks for wide channels on some CPUs, and what the network
 * then hands the next layer as is. */
int lc_is_blocked(const dnnl_memory_desc_t *md);

/* ---- other input layouts (4-D inputs only) ---- */

/* A second copy of t's layer, created on a source in layout `tag`: forward on x, backward on dy (both plain,
 * as t takes them) give y and dx, plain. Asserts diff_src comes back in `tag`; *dst_md (when not NULL)
 * receives the layout the copy chose for dst. */
void lc_run_in_layout(struct lc *t, dnnl_format_tag_t tag, const float *x, const float *dy, float *y, float *dx,
                      dnnl_memory_desc_t *dst_md);

/* Asserts that the copy on layout `tag` gives the y and dx of t itself (plain input, training) for
 * x = U(-x_range, x_range) from `seed` and dy = U(-1, 1) from seed + 1: to within tol by lc_max_rel_diff, or
 * bit for bit when tol is 0. *dst_md as for lc_run_in_layout. */
void lc_check_layout(struct lc *t, dnnl_format_tag_t tag, double x_range, uint64_t seed, double tol,
                     dnnl_memory_desc_t *dst_md);

/* ---- calls for the parsers ---- */

/* A call of `layer` on line `line` of "m.txt", as the model reader hands it over, with no arguments yet. */
void lc_args_init(struct args *a, const char *layer, int line);
/* Appends an argument (key NULL: positional) of the given type at column col; the caller sets its value. */
struct arg *lc_arg(struct args *a, const char *key, enum arg_type type, int col);
void lc_arg_int(struct args *a, const char *key, long v, int col);
void lc_arg_str(struct args *a, const char *key, const char *v, int col);
void lc_arg_tuple(struct args *a, const char *key, int n, const long *v, int col);
/* ops->parse into a zeroed spec (e zeroed too), then the model reader's check for unused arguments. */
int lc_parse(const struct layer_ops *ops, struct args *a, struct layer_spec *s, struct error *e);

#endif

/* layer_check.h: a harness that runs one layer kind alone on plain (NHWC / NC) buffers, for the
 * per-layer tests: forward against a naive reference, backward against central finite differences. */
#ifndef TRAINER_LAYER_CHECK_H
#define TRAINER_LAYER_CHECK_H

#include <stdint.h>

#include "dnn.h"
#include "layer.h"

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

/* Random fill U(lo, hi) from a seed (deterministic). */
void lc_fill(float *x, size_t n, double lo, double hi, uint64_t seed);

/* Max |a - b| / max(1, |b|) over n. */
double lc_max_rel_diff(const float *a, const float *b, size_t n);

#endif

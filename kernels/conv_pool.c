/* conv_pool.c: the first Conv2D (ReLU) and its MaxPooling2D as one AVX-512 kernel (conv_pool.h).
 *
 * Why: with 1 or 3 input channels the convolution does 4 to 12 multiply-adds per output, so oneDNN's kernel
 * and the pooling after it are bound by memory, not arithmetic: the convolution writes a (N, 16, H, W) tensor
 * 4x larger than anything after it (16 MiB at batch 256 on 32x32 images), the pooling reads it back, and
 * backward writes and reads a gradient of the same size. Here each pooling window's convolution outputs live
 * in registers only: forward writes the pooled maximum and which window position it came from; backward
 * sends each pooled gradient, masked by the ReLU (pooled output > 0), to that position and accumulates the
 * weight gradient at once. Same arithmetic as the separate layers (a ReLU'd convolution, then the first
 * largest of each window), in another summation order. */
#include "conv_pool.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "layer_common.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CONV_POOL_AVX512 1
#include <immintrin.h>
#else
#define CONV_POOL_AVX512 0
#endif

/* Shapes, all per sample: input (H, W, C) nhwc; convolution (OH, OW, F) with kernel (KH, KW) and top/left
 * padding (PT, PL); pooling windows (PY, PX), pooled output (QH, QW) stored nChw16c: (F/16, QH, QW, 16). */
struct cp_geom {
    int H, W, C, KH, KW, PT, PL, OH, OW, F, PY, PX, QH, QW;
    int taps;      /* KH * KW * C: weights per filter */
    long bias_off; /* of the bias in the slab, from the kernel's start; -1 without bias */
};

/* Where the input of each weight (tap) and each window position (pos) is, from a window's origin: in the
 * sample (x_*) and in a patch (patch_*, see window_at). */
struct cp_offsets {
    int x_tap[CONV_POOL_MAX_TAPS], patch_tap[CONV_POOL_MAX_TAPS];
    int x_pos[256], patch_pos[256];
};

struct cp_priv {
    struct cp_geom g;
    struct cp_offsets off;       /* where each weight's input and each window position are */
    uint8_t *where;    /* (n, F/16, QH, QW, 16) window position of each maximum, like the pooled output */
    float *partial;    /* (threads, 2, taps * F + F) each thread's weight and bias gradient: its sum, and the
                          current sample's (summed per sample first, as the layers it replaces do, so that a
                          batch split across ranks adds up the same way to within a rounding) */
    float *patches;    /* (threads, patch) each thread's window_patch */
    long patch;        /* floats in a patch: (PY + KH - 1) * (PX + KW - 1) * C */
    int threads;       /* threads the kernels run with, fixed at create so that the buffers suffice */
    int fixed;         /* kernels for this kernel shape and 2x2 windows (forward_fixed), else 0: the generic ones */
};

int conv_pool_generic;

static int is_relu_conv(const struct layer_spec *s)
{
    return s->ops == &layer_conv2d && s->u.conv.act == ACT_RELU && s->u.conv.sh == 1 && s->u.conv.sw == 1;
}

int conv_pool_fusable(const struct model *m, int i)
{
    if (!CONV_POOL_AVX512 || i != 1 || i + 1 >= m->n_layers)
        return 0;
    const struct layer_spec *c = &m->layers[i], *p = &m->layers[i + 1];
    if (!is_relu_conv(c) || p->ops != &layer_max_pooling2d)
        return 0;
    const struct pool_cfg *pc = &p->u.pool;
    long taps = (long)c->u.conv.kh * c->u.conv.kw * c->in.c;
    if (taps > CONV_POOL_MAX_TAPS || c->u.conv.filters % 16 || pc->same || pc->sh != pc->ph || pc->sw != pc->pw ||
        pc->ph * pc->pw > 255 || p->out.h < 1 || p->out.w < 1)
        return 0;
#if CONV_POOL_AVX512
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static void cp_geometry(const struct layer_spec *s, struct cp_geom *g)
{
    const struct conv_cfg *c = &s->u.conv;
    const struct pool_cfg *p = &s[1].u.pool;
    int pb = 0, pr = 0;
    memset(g, 0, sizeof *g);
    g->H = s->in.h, g->W = s->in.w, g->C = s->in.c;
    g->KH = c->kh, g->KW = c->kw, g->F = c->filters;
    if (c->same) {
        layer_same_padding(g->H, c->kh, 1, &g->PT, &pb);
        layer_same_padding(g->W, c->kw, 1, &g->PL, &pr);
    }
    g->OH = s->out.h, g->OW = s->out.w;
    g->PY = p->ph, g->PX = p->pw;
    g->QH = s[1].out.h, g->QW = s[1].out.w;
    g->taps = g->KH * g->KW * g->C;
    g->bias_off = s->n_params > 1 ? (long)(s->params[1].offset - s->params[0].offset) : -1;
}

#if CONV_POOL_AVX512

/* Where a pooling window's convolutions read their input: straight from the sample when the window and its
 * kernel taps lie inside the image (then `tap` and `pos` are the x_* offsets), else from `patch`, a copy with
 * zeros where the padding is, (PY + KH - 1, PX + KW - 1, C) (then the patch_* offsets). */
struct window {
    const float *base;
    const int *tap, *pos;
};

static inline struct window window_at(const struct cp_geom *g, const struct cp_offsets *off, const float *x, int qh,
                               int qw, float *patch)
{
    const int rows = g->PY + g->KH - 1, cols = g->PX + g->KW - 1;
    const int h0 = qh * g->PY - g->PT, w0 = qw * g->PX - g->PL;
    if (h0 >= 0 && w0 >= 0 && h0 + rows <= g->H && w0 + cols <= g->W)
        return (struct window){x + ((long)h0 * g->W + w0) * g->C, off->x_tap, off->x_pos};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int ih = h0 + r, iw = w0 + c;
            float *d = patch + ((long)r * cols + c) * g->C;
            if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
                for (int ci = 0; ci < g->C; ci++)
                    d[ci] = x[((long)ih * g->W + iw) * g->C + ci];
            else
                for (int ci = 0; ci < g->C; ci++)
                    d[ci] = 0.0f;
        }
    return (struct window){patch, off->patch_tap, off->patch_pos};
}

/* One sample forward: y (F/16, QH, QW, 16) the pooled ReLU'd convolution, where (same shape) the window
 * position of each maximum (the first one on ties, as max pooling). The window's positions are computed four
 * at a time: four independent multiply-add chains keep the FMA unit busy. `tap` (taps,) is where each weight's
 * input is in a patch, `pos` (PY * PX,) where each window position starts. */
__attribute__((target("avx512f"))) static void forward_sample(const struct cp_geom *g,
                                                              const struct cp_offsets *off, const float *x,
                                                              const float *w, const float *b, float *y,
                                                              uint8_t *where, float *patch)
{
    const __m512 zero = _mm512_setzero_ps();
    const int npos = g->PY * g->PX;
    for (int qh = 0; qh < g->QH; qh++)
        for (int qw = 0; qw < g->QW; qw++) {
            const struct window win = window_at(g, off, x, qh, qw, patch);
            const int *tap = win.tap, *pos = win.pos;
            for (int cb = 0; cb < g->F / 16; cb++) {
                const __m512 bias = b ? _mm512_loadu_ps(b + cb * 16) : zero;
                const float *wc = w + cb * 16;
                __m512 best = zero;
                __m512i at = _mm512_setzero_si512();
                for (int k0 = 0; k0 < npos; k0 += 4) {
                    /* Past the last position the chains recompute it and are ignored. */
                    const float *p0 = win.base + pos[k0], *p1 = win.base + pos[k0 + 1 < npos ? k0 + 1 : k0],
                                *p2 = win.base + pos[k0 + 2 < npos ? k0 + 2 : k0],
                                *p3 = win.base + pos[k0 + 3 < npos ? k0 + 3 : k0];
                    __m512 a[4] = {bias, bias, bias, bias};
                    for (int t = 0; t < g->taps; t++) {
                        const __m512 wv = _mm512_loadu_ps(wc + (long)t * g->F);
                        a[0] = _mm512_fmadd_ps(_mm512_set1_ps(p0[tap[t]]), wv, a[0]);
                        a[1] = _mm512_fmadd_ps(_mm512_set1_ps(p1[tap[t]]), wv, a[1]);
                        a[2] = _mm512_fmadd_ps(_mm512_set1_ps(p2[tap[t]]), wv, a[2]);
                        a[3] = _mm512_fmadd_ps(_mm512_set1_ps(p3[tap[t]]), wv, a[3]);
                    }
                    for (int j = 0; j < 4 && k0 + j < npos; j++) {
                        __m512 v = _mm512_max_ps(a[j], zero); /* ReLU */
                        if (k0 + j == 0) {
                            best = v;
                            continue;
                        }
                        __mmask16 more = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                        best = _mm512_mask_blend_ps(more, best, v);
                        at = _mm512_mask_blend_epi32(more, at, _mm512_set1_epi32(k0 + j));
                    }
                }
                long o = (((long)cb * g->QH + qh) * g->QW + qw) * 16;
                _mm512_storeu_ps(y + o, best);
                _mm_storeu_si128((__m128i *)(where + o), _mm512_cvtepi32_epi8(at));
            }
        }
}

/* One sample backward: dw (taps, F) and db (F) accumulate the gradient from dy (the pooled gradient, like y),
 * masked where the pooled output y is not > 0 (the ReLU's derivative) and sent to the window position of
 * the maximum: each position's share is the gradient where it was the maximum and 0 elsewhere. */
__attribute__((target("avx512f"))) static void backward_sample(const struct cp_geom *g,
                                                               const struct cp_offsets *off, const float *x,
                                                               const float *dy, const float *y,
                                                               const uint8_t *where, float *dw, float *db,
                                                               float *patch)
{
    const __m512 zero = _mm512_setzero_ps();
    const int npos = g->PY * g->PX;
    for (int qh = 0; qh < g->QH; qh++)
        for (int qw = 0; qw < g->QW; qw++) {
            struct window win = {NULL, NULL, NULL};
            for (int cb = 0; cb < g->F / 16; cb++) {
                long o = (((long)cb * g->QH + qh) * g->QW + qw) * 16;
                __mmask16 live = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + o), zero, _CMP_GT_OQ);
                if (!live)
                    continue;
                if (!win.base)
                    win = window_at(g, off, x, qh, qw, patch);
                const int *tap = win.tap, *pos = win.pos;
                __m512 grad = _mm512_maskz_mov_ps(live, _mm512_loadu_ps(dy + o));
                __m512i at = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(where + o)));
                _mm512_storeu_ps(db + cb * 16, _mm512_add_ps(_mm512_loadu_ps(db + cb * 16), grad));
                float *dwc = dw + cb * 16;
                for (int k0 = 0; k0 < npos; k0 += 4) {
                    __m512 gk[4];
                    const float *pk[4];
                    for (int j = 0; j < 4; j++) {
                        int k = k0 + j < npos ? k0 + j : -1; /* -1: no position, a zero gradient */
                        gk[j] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(k)), grad);
                        pk[j] = win.base + pos[k >= 0 ? k : k0];
                    }
                    for (int t = 0; t < g->taps; t++) {
                        float *d = dwc + (long)t * g->F;
                        __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(pk[0][tap[t]]), gk[0], _mm512_loadu_ps(d));
                        s = _mm512_fmadd_ps(_mm512_set1_ps(pk[1][tap[t]]), gk[1], s);
                        s = _mm512_fmadd_ps(_mm512_set1_ps(pk[2][tap[t]]), gk[2], s);
                        _mm512_storeu_ps(d, _mm512_fmadd_ps(_mm512_set1_ps(pk[3][tap[t]]), gk[3], s));
                    }
                }
            }
        }
}

/* The same two kernels for 2x2 pooling windows and a kernel shape (KH, KW, C) known when compiling
 * (FIXED_SHAPES below: the presets' first layers). The generic ones spend more time on their loops than on
 * arithmetic: a window's four positions of one 16-filter block are only 4 x taps multiply-adds. Here one
 * 16-filter block at a time keeps its weights (forward) or its weight-gradient sums (backward) in registers
 * over the whole sample, the four positions' chains are unrolled, and every input is read at a constant
 * offset from one of KH + 1 row pointers: no offset table, no address arithmetic per multiply-add. Every sum
 * is taken in the generic kernels' order (taps in (kh, kw, c) order, positions row by row), so the bits are
 * theirs (test_net checks it). */

/* Row stride of a window's input: the image's, or the patch's when window_at had to copy (an edge). */
static inline long window_stride(const struct cp_geom *g, const struct window *win, const float *patch)
{
    return win->base == patch ? (long)(g->PX + g->KW - 1) * g->C : (long)g->W * g->C;
}

__attribute__((target("avx512f"), always_inline)) static inline void
forward_fixed(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *w,
              const float *b, float *y, uint8_t *where, float *patch, const int KH, const int KW, const int C)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
    for (int cb = 0; cb < g->F / 16; cb++) {
        __m512 wv[CONV_POOL_FIXED_MAX];
#pragma GCC unroll 16
        for (int t = 0; t < KH * KW * C; t++)
            wv[t] = _mm512_loadu_ps(w + (long)t * g->F + cb * 16);
        const __m512 bias = b ? _mm512_loadu_ps(b + cb * 16) : zero;
        float *yc = y + (long)cb * g->QH * g->QW * 16;
        uint8_t *wc = where + (long)cb * g->QH * g->QW * 16;
        for (int qh = 0; qh < g->QH; qh++)
            for (int qw = 0; qw < g->QW; qw++) {
                const struct window win = window_at(g, off, x, qh, qw, patch);
                const long rs = window_stride(g, &win, patch);
                __m512 a0 = bias, a1 = bias, a2 = bias, a3 = bias;
#pragma GCC unroll 4
                for (int kh = 0; kh < KH; kh++) {
                    /* Positions (0, 0) and (0, 1) read row kh of the window, (1, 0) and (1, 1) row kh + 1. */
                    const float *r0 = win.base + kh * rs, *r1 = r0 + rs;
#pragma GCC unroll 4
                    for (int kw = 0; kw < KW; kw++)
#pragma GCC unroll 4
                        for (int c = 0; c < C; c++) {
                            const __m512 wt = wv[(kh * KW + kw) * C + c];
                            a0 = _mm512_fmadd_ps(_mm512_set1_ps(r0[kw * C + c]), wt, a0);
                            a1 = _mm512_fmadd_ps(_mm512_set1_ps(r0[(kw + 1) * C + c]), wt, a1);
                            a2 = _mm512_fmadd_ps(_mm512_set1_ps(r1[kw * C + c]), wt, a2);
                            a3 = _mm512_fmadd_ps(_mm512_set1_ps(r1[(kw + 1) * C + c]), wt, a3);
                        }
                }
                /* ReLU, then the first largest of the four, as the generic kernel takes it. */
                __m512 best = _mm512_max_ps(a0, zero), v;
                __m512i at = _mm512_setzero_si512();
                __mmask16 more;
                v = _mm512_max_ps(a1, zero), more = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                best = _mm512_mask_blend_ps(more, best, v), at = _mm512_mask_blend_epi32(more, at, one);
                v = _mm512_max_ps(a2, zero), more = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                best = _mm512_mask_blend_ps(more, best, v), at = _mm512_mask_blend_epi32(more, at, two);
                v = _mm512_max_ps(a3, zero), more = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                best = _mm512_mask_blend_ps(more, best, v), at = _mm512_mask_blend_epi32(more, at, three);
                long o = ((long)qh * g->QW + qw) * 16;
                _mm512_storeu_ps(yc + o, best);
                _mm_storeu_si128((__m128i *)(wc + o), _mm512_cvtepi32_epi8(at));
            }
    }
}

__attribute__((target("avx512f"), always_inline)) static inline void
backward_fixed(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *dy,
               const float *y, const uint8_t *where, float *dw, float *db, float *patch, const int KH,
               const int KW, const int C)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
    for (int cb = 0; cb < g->F / 16; cb++) {
        __m512 acc[CONV_POOL_FIXED_MAX], dbacc = zero;
#pragma GCC unroll 16
        for (int t = 0; t < KH * KW * C; t++)
            acc[t] = zero;
        const long plane = (long)cb * g->QH * g->QW * 16;
        for (int qh = 0; qh < g->QH; qh++)
            for (int qw = 0; qw < g->QW; qw++) {
                long o = plane + ((long)qh * g->QW + qw) * 16;
                /* The pooled output and its gradient come from memory (4 MiB each at batch 256): asked for
                 * 16 windows ahead, backward ran 1.7x faster (the hardware prefetcher alone left it waiting). */
                _mm_prefetch((const char *)(y + o + 256), _MM_HINT_T0);
                _mm_prefetch((const char *)(dy + o + 256), _MM_HINT_T0);
                __mmask16 live = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + o), zero, _CMP_GT_OQ);
                if (!live)
                    continue;
                const struct window win = window_at(g, off, x, qh, qw, patch);
                const long rs = window_stride(g, &win, patch);
                __m512 grad = _mm512_maskz_mov_ps(live, _mm512_loadu_ps(dy + o));
                __m512i at = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(where + o)));
                dbacc = _mm512_add_ps(dbacc, grad);
                __m512 g0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_setzero_si512()), grad),
                       g1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, one), grad),
                       g2 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, two), grad),
                       g3 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, three), grad);
#pragma GCC unroll 4
                for (int kh = 0; kh < KH; kh++) {
                    const float *r0 = win.base + kh * rs, *r1 = r0 + rs;
#pragma GCC unroll 4
                    for (int kw = 0; kw < KW; kw++)
#pragma GCC unroll 4
                        for (int c = 0; c < C; c++) {
                            const int t = (kh * KW + kw) * C + c;
                            __m512 s = _mm512_fmadd_ps(_mm512_set1_ps(r0[kw * C + c]), g0, acc[t]);
                            s = _mm512_fmadd_ps(_mm512_set1_ps(r0[(kw + 1) * C + c]), g1, s);
                            s = _mm512_fmadd_ps(_mm512_set1_ps(r1[kw * C + c]), g2, s);
                            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(r1[(kw + 1) * C + c]), g3, s);
                        }
                }
            }
#pragma GCC unroll 16
        for (int t = 0; t < KH * KW * C; t++)
            _mm512_storeu_ps(dw + (long)t * g->F + cb * 16, acc[t]);
        _mm512_storeu_ps(db + cb * 16, dbacc);
    }
}

/* FIXED_SHAPES(X): X(id, KH, KW, C) for each kernel shape with kernels of their own; id is not 0. */
#define FIXED_SHAPES(X) X(1, 2, 2, 1) X(2, 2, 2, 3) X(3, 3, 3, 1)
#define FIXED_FN(id, kh, kw, c)                                                                                \
    __attribute__((target("avx512f"))) static void forward_##id(const struct cp_geom *g,                      \
                                                                  const struct cp_offsets *off, const float *x, \
                                                                  const float *w, const float *b, float *y,    \
                                                                  uint8_t *where, float *patch)                \
    {                                                                                                          \
        forward_fixed(g, off, x, w, b, y, where, patch, kh, kw, c);                                            \
    }                                                                                                          \
    __attribute__((target("avx512f"))) static void backward_##id(                                            \
        const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *dy, const float *y, \
        const uint8_t *where, float *dw, float *db, float *patch)                                              \
    {                                                                                                          \
        backward_fixed(g, off, x, dy, y, where, dw, db, patch, kh, kw, c);                                     \
    }
FIXED_SHAPES(FIXED_FN)

static int fixed_for(const struct cp_geom *g)
{
    if (conv_pool_generic || g->PY != 2 || g->PX != 2)
        return 0;
#define FIXED_CASE(id, kh, kw, c)                                                                              \
    if (g->KH == kh && g->KW == kw && g->C == c)                                                               \
        return id;
    FIXED_SHAPES(FIXED_CASE)
#undef FIXED_CASE
    return 0;
}

static void run_forward(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                        const float *w, const float *b, float *y, uint8_t *where, float *patch)
{
    switch (fixed) {
#define FIXED_CASE(id, kh, kw, c)                                                                              \
    case id:                                                                                                   \
        forward_##id(g, off, x, w, b, y, where, patch);                                                        \
        return;
        FIXED_SHAPES(FIXED_CASE)
#undef FIXED_CASE
    default:
        forward_sample(g, off, x, w, b, y, where, patch);
    }
}

/* The generic kernel adds to dw and db (zeroed by the caller); the fixed ones write their sums, which start
 * from zero: the same values. */
static void run_backward(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                         const float *dy, const float *y, const uint8_t *where, float *dw, float *db, float *patch)
{
    switch (fixed) {
#define FIXED_CASE(id, kh, kw, c)                                                                              \
    case id:                                                                                                   \
        backward_##id(g, off, x, dy, y, where, dw, db, patch);                                                 \
        return;
        FIXED_SHAPES(FIXED_CASE)
#undef FIXED_CASE
    default:
        backward_sample(g, off, x, dy, y, where, dw, db, patch);
    }
}

#else

/* Never called: conv_pool_fusable is false without AVX-512. */
static void forward_sample(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *w,
                           const float *b, float *y, uint8_t *where, float *patch)
{
    (void)g, (void)off, (void)x, (void)w, (void)b, (void)y, (void)where, (void)patch;
}

static void backward_sample(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *dy,
                            const float *y, const uint8_t *where, float *dw, float *db, float *patch)
{
    (void)g, (void)off, (void)x, (void)dy, (void)y, (void)where, (void)dw, (void)db, (void)patch;
}

static int fixed_for(const struct cp_geom *g)
{
    (void)g;
    return 0;
}

static void run_forward(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                        const float *w, const float *b, float *y, uint8_t *where, float *patch)
{
    (void)fixed;
    forward_sample(g, off, x, w, b, y, where, patch);
}

static void run_backward(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                         const float *dy, const float *y, const uint8_t *where, float *dw, float *db, float *patch)
{
    (void)fixed;
    backward_sample(g, off, x, dy, y, where, dw, db, patch);
}

#endif

static void cp_destroy(struct layer *l)
{
    struct cp_priv *p = l->priv;
    if (p) {
        free(p->where);
        free(p->partial);
        free(p->patches);
        free(p);
    }
    l->priv = NULL;
    layer_release_outputs(l);
}

static int cp_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    struct cp_priv *p;
    l->dst = l->diff_src = NULL;
    if (need_diff_src)
        return error_set(err, ERR_INTERNAL, "%s: the fused first layer computes no input gradient", l->spec->name);
    if (!(p = l->priv = calloc(1, sizeof *p)))
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    cp_geometry(l->spec, &p->g);
    const struct cp_geom *g = &p->g;
    size_t pooled = (size_t)l->n * g->F * g->QH * g->QW;
    const int cols = g->PX + g->KW - 1;
    for (int kh = 0, t = 0; kh < g->KH; kh++)
        for (int kw = 0; kw < g->KW; kw++)
            for (int ci = 0; ci < g->C; ci++, t++) {
                p->off.patch_tap[t] = (kh * cols + kw) * g->C + ci;
                p->off.x_tap[t] = (kh * g->W + kw) * g->C + ci;
            }
    for (int k = 0; k < g->PY * g->PX; k++) {
        p->off.patch_pos[k] = ((k / g->PX) * cols + k % g->PX) * g->C;
        p->off.x_pos[k] = ((k / g->PX) * g->W + k % g->PX) * g->C;
    }
    p->patch = (long)(g->PY + g->KH - 1) * cols * g->C;
    p->threads = omp_get_max_threads();
    p->fixed = fixed_for(g);
    p->where = malloc(pooled);
    p->partial = malloc(sizeof(float) * (size_t)p->threads * 2 * (size_t)(g->taps + 1) * g->F);
    p->patches = malloc(sizeof(float) * (size_t)p->threads * (size_t)p->patch);
    if (!p->where || !p->partial || !p->patches) {
        cp_destroy(l);
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    }
    dnnl_dims_t dims = {l->n, g->F, g->QH, g->QW};
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&l->dst_md, 4, dims, dnnl_f32, dnnl_aBcd16b));
    if (dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK)
        goto fail;
    return ERR_OK;
fail:
    cp_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

/* dst = maxpool(relu(conv(src))). src (n, H, W, C) plain: the network's scaled images. */
static int cp_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct cp_priv *p = l->priv;
    const struct cp_geom *g = &p->g;
    const float *x = dnn_ptr(src), *w = l->w, *b = g->bias_off >= 0 ? l->w + g->bias_off : NULL;
    float *y = dnn_ptr(l->dst);
    const long in = (long)g->H * g->W * g->C, out = (long)g->F * g->QH * g->QW;
    (void)ctx;
    if (!x || !y)
        return error_set(err, ERR_INTERNAL, "%s: no data behind a memory", l->spec->name);
#pragma omp parallel num_threads(p->threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *patch = p->patches + (size_t)t * (size_t)p->patch;
        for (int i = l->n * t / nt; i < l->n * (t + 1) / nt; i++)
            run_forward(p->fixed, g, &p->off, x + i * in, w, b, y + i * out, p->where + i * out, patch);
    }
    return ERR_OK;
}

/* The kernel (and bias) gradient into l->dw, Keras layout; no input gradient (this is the first layer).
 * Each thread sums its own samples' gradients, each computed on its own, then the threads' sums are added in
 * thread order: the same bits on every run with the same thread count, and 2 threads give what 2 ranks of 1
 * thread do. */
static int cp_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                       struct error *err)
{
    struct cp_priv *p = l->priv;
    const struct cp_geom *g = &p->g;
    const float *x = dnn_ptr(src), *dy = dnn_ptr(diff_dst), *y = dnn_ptr(l->dst);
    const long in = (long)g->H * g->W * g->C, out = (long)g->F * g->QH * g->QW;
    const size_t per = (size_t)(g->taps + 1) * g->F;
    int used = 1;
    (void)ctx;
    if (!x || !dy || !y)
        return error_set(err, ERR_INTERNAL, "%s: no data behind a memory", l->spec->name);
#pragma omp parallel num_threads(p->threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *sum = p->partial + (size_t)t * 2 * per, *one = sum + per;
        float *patch = p->patches + (size_t)t * (size_t)p->patch;
        memset(sum, 0, sizeof(float) * per);
        for (int i = l->n * t / nt; i < l->n * (t + 1) / nt; i++) {
            memset(one, 0, sizeof(float) * per);
            run_backward(p->fixed, g, &p->off, x + i * in, dy + i * out, y + i * out, p->where + i * out, one,
                         one + (size_t)g->taps * g->F, patch);
            for (size_t k = 0; k < per; k++)
                sum[k] += one[k];
        }
        if (t == 0)
            used = nt;
    }
    float *dw = l->dw;
    for (size_t k = 0; k < per; k++) {
        float s = p->partial[k];
        for (int t = 1; t < used; t++)
            s += p->partial[(size_t)t * 2 * per + k];
        if (k < (size_t)g->taps * g->F)
            dw[k] = s;
        else if (g->bias_off >= 0)
            dw[g->bias_off + (long)(k - (size_t)g->taps * g->F)] = s;
    }
    return ERR_OK;
}

const struct layer_ops layer_conv_pool = {
    .name = "Conv2D+MaxPooling2D",
    .keras_prefix = NULL,
    .parse = NULL,
    .infer = NULL,
    .create = cp_create,
    .forward = cp_forward,
    .backward = cp_backward,
    .destroy = cp_destroy,
    .init_params = NULL,
    .to_text = NULL,
};

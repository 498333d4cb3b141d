/* conv_pool_simd.h: the fused first layer's kernels (conv_pool.c), written once on 16-float vectors and
 * included by conv_pool.c once per instruction set: AVX-512 (one register per 16 filters) and AVX2 + FMA (two).
 * The includer defines CP_TARGET (the function attribute), CP_FN(name) (the name for this instruction set) and
 * these types and operations, all on 16 lanes:
 *   vf          16 floats;  vm a lane mask;  vi 16 small integers (window positions, 0..255)
 *   vf_zero() vf_load(p) vf_store(p, v) vf_set1(x) vf_fmadd(a, b, c) = a * b + c, vf_max(a, b), vf_add(a, b)
 *   vf_gt(a, b)     a > b (ordered), a mask;  vm_any(m) whether any lane is set
 *   vf_blend(m, a, b) b where m, else a;  vf_maskz(m, a) a where m, else 0
 *   vi_zero() vi_set(k) vi_blend(m, a, b) vi_eq(a, b) vi_store8(p, v) vi_load8(p)  (16 bytes at p)
 * Every lane computes the same IEEE operations in the same order under both, so both give the same bits. */

/* One sample forward: y (F/16, QH, QW, 16) the pooled ReLU'd convolution, where (same shape) the window
 * position of each maximum (the first one on ties, as max pooling). The window's positions are computed four
 * at a time: four independent multiply-add chains keep the FMA unit busy. `tap` (taps,) is where each weight's
 * input is in a patch, `pos` (PY * PX,) where each window position starts. */
CP_TARGET static void CP_FN(forward_sample)(const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                                            const float *w, const float *b, float *y, uint8_t *where,
                                            float *patch)
{
    const vf zero = vf_zero();
    const int npos = g->PY * g->PX;
    for (int qh = 0; qh < g->QH; qh++)
        for (int qw = 0; qw < g->QW; qw++) {
            const struct window win = window_at(g, off, x, qh, qw, patch);
            const int *tap = win.tap, *pos = win.pos;
            for (int cb = 0; cb < g->F / 16; cb++) {
                const vf bias = b ? vf_load(b + cb * 16) : zero;
                const float *wc = w + cb * 16;
                vf best = zero;
                vi at = vi_zero();
                for (int k0 = 0; k0 < npos; k0 += 4) {
                    /* Past the last position the chains recompute it and are ignored. */
                    const float *p0 = win.base + pos[k0], *p1 = win.base + pos[k0 + 1 < npos ? k0 + 1 : k0],
                                *p2 = win.base + pos[k0 + 2 < npos ? k0 + 2 : k0],
                                *p3 = win.base + pos[k0 + 3 < npos ? k0 + 3 : k0];
                    vf a[4] = {bias, bias, bias, bias};
                    for (int t = 0; t < g->taps; t++) {
                        const vf wv = vf_load(wc + (long)t * g->F);
                        a[0] = vf_fmadd(vf_set1(p0[tap[t]]), wv, a[0]);
                        a[1] = vf_fmadd(vf_set1(p1[tap[t]]), wv, a[1]);
                        a[2] = vf_fmadd(vf_set1(p2[tap[t]]), wv, a[2]);
                        a[3] = vf_fmadd(vf_set1(p3[tap[t]]), wv, a[3]);
                    }
                    for (int j = 0; j < 4 && k0 + j < npos; j++) {
                        vf v = vf_max(a[j], zero); /* ReLU */
                        if (k0 + j == 0) {
                            best = v;
                            continue;
                        }
                        vm more = vf_gt(v, best);
                        best = vf_blend(more, best, v);
                        at = vi_blend(more, at, vi_set(k0 + j));
                    }
                }
                long o = (((long)cb * g->QH + qh) * g->QW + qw) * 16;
                vf_store(y + o, best);
                vi_store8(where + o, at);
            }
        }
}

/* One sample backward: dw (taps, F) and db (F) accumulate the gradient from dy (the pooled gradient, like y),
 * masked where the pooled output y is not > 0 (the ReLU's derivative) and sent to the window position of
 * the maximum: each position's share is the gradient where it was the maximum and 0 elsewhere. */
CP_TARGET static void CP_FN(backward_sample)(const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                                             const float *dy, const float *y, const uint8_t *where, float *dw,
                                             float *db, float *patch)
{
    const vf zero = vf_zero();
    const int npos = g->PY * g->PX;
    for (int qh = 0; qh < g->QH; qh++)
        for (int qw = 0; qw < g->QW; qw++) {
            struct window win = {NULL, NULL, NULL};
            for (int cb = 0; cb < g->F / 16; cb++) {
                long o = (((long)cb * g->QH + qh) * g->QW + qw) * 16;
                vm live = vf_gt(vf_load(y + o), zero);
                if (!vm_any(live))
                    continue;
                if (!win.base)
                    win = window_at(g, off, x, qh, qw, patch);
                const int *tap = win.tap, *pos = win.pos;
                vf grad = vf_maskz(live, vf_load(dy + o));
                vi at = vi_load8(where + o);
                vf_store(db + cb * 16, vf_add(vf_load(db + cb * 16), grad));
                float *dwc = dw + cb * 16;
                for (int k0 = 0; k0 < npos; k0 += 4) {
                    vf gk[4];
                    const float *pk[4];
                    for (int j = 0; j < 4; j++) {
                        int k = k0 + j < npos ? k0 + j : -1; /* -1: no position, a zero gradient */
                        gk[j] = k >= 0 ? vf_maskz(vi_eq(at, vi_set(k)), grad) : zero;
                        pk[j] = win.base + pos[k >= 0 ? k : k0];
                    }
                    for (int t = 0; t < g->taps; t++) {
                        float *d = dwc + (long)t * g->F;
                        vf s = vf_fmadd(vf_set1(pk[0][tap[t]]), gk[0], vf_load(d));
                        s = vf_fmadd(vf_set1(pk[1][tap[t]]), gk[1], s);
                        s = vf_fmadd(vf_set1(pk[2][tap[t]]), gk[2], s);
                        vf_store(d, vf_fmadd(vf_set1(pk[3][tap[t]]), gk[3], s));
                    }
                }
            }
        }
}

/* The same two kernels for 2x2 pooling windows and a kernel shape (KH, KW, C) known when compiling
 * (FIXED_SHAPES: the presets' first layers). The generic ones spend more time on their loops than on
 * arithmetic: a window's four positions of one 16-filter block are only 4 x taps multiply-adds. Here one
 * 16-filter block at a time keeps its weights (forward) or its weight-gradient sums (backward) in registers
 * over the whole sample, the four positions' chains are unrolled, and every input is read at a constant
 * offset from one of KH + 1 row pointers: no offset table, no address arithmetic per multiply-add. Every sum
 * is taken in the generic kernels' order (taps in (kh, kw, c) order, positions row by row), so the bits are
 * theirs (test_net checks it). With AVX2 a block's weights take twice the registers: past the 16 ymm
 * registers some stay in L1, and the multiply-adds read them from there. */
CP_TARGET __attribute__((always_inline)) static inline void
CP_FN(forward_fixed)(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *w,
                     const float *b, float *y, uint8_t *where, float *patch, const int KH, const int KW, const int C)
{
    const vf zero = vf_zero();
    const vi one = vi_set(1), two = vi_set(2), three = vi_set(3);
    for (int cb = 0; cb < g->F / 16; cb++) {
        vf wv[CONV_POOL_FIXED_MAX];
#pragma GCC unroll 16
        for (int t = 0; t < KH * KW * C; t++)
            wv[t] = vf_load(w + (long)t * g->F + cb * 16);
        const vf bias = b ? vf_load(b + cb * 16) : zero;
        float *yc = y + (long)cb * g->QH * g->QW * 16;
        uint8_t *wc = where + (long)cb * g->QH * g->QW * 16;
        for (int qh = 0; qh < g->QH; qh++)
            for (int qw = 0; qw < g->QW; qw++) {
                const struct window win = window_at(g, off, x, qh, qw, patch);
                const long rs = window_stride(g, &win, patch);
                vf a0 = bias, a1 = bias, a2 = bias, a3 = bias;
#pragma GCC unroll 4
                for (int kh = 0; kh < KH; kh++) {
                    /* Positions (0, 0) and (0, 1) read row kh of the window, (1, 0) and (1, 1) row kh + 1. */
                    const float *r0 = win.base + kh * rs, *r1 = r0 + rs;
#pragma GCC unroll 4
                    for (int kw = 0; kw < KW; kw++)
#pragma GCC unroll 4
                        for (int c = 0; c < C; c++) {
                            const vf wt = wv[(kh * KW + kw) * C + c];
                            a0 = vf_fmadd(vf_set1(r0[kw * C + c]), wt, a0);
                            a1 = vf_fmadd(vf_set1(r0[(kw + 1) * C + c]), wt, a1);
                            a2 = vf_fmadd(vf_set1(r1[kw * C + c]), wt, a2);
                            a3 = vf_fmadd(vf_set1(r1[(kw + 1) * C + c]), wt, a3);
                        }
                }
                /* ReLU, then the first largest of the four, as the generic kernel takes it. */
                vf best = vf_max(a0, zero), v;
                vi at = vi_zero();
                vm more;
                v = vf_max(a1, zero), more = vf_gt(v, best);
                best = vf_blend(more, best, v), at = vi_blend(more, at, one);
                v = vf_max(a2, zero), more = vf_gt(v, best);
                best = vf_blend(more, best, v), at = vi_blend(more, at, two);
                v = vf_max(a3, zero), more = vf_gt(v, best);
                best = vf_blend(more, best, v), at = vi_blend(more, at, three);
                long o = ((long)qh * g->QW + qw) * 16;
                vf_store(yc + o, best);
                vi_store8(wc + o, at);
            }
    }
}

CP_TARGET __attribute__((always_inline)) static inline void
CP_FN(backward_fixed)(const struct cp_geom *g, const struct cp_offsets *off, const float *x, const float *dy,
                      const float *y, const uint8_t *where, float *dw, float *db, float *patch, const int KH,
                      const int KW, const int C)
{
    const vf zero = vf_zero();
    const vi zero_i = vi_zero(), one = vi_set(1), two = vi_set(2), three = vi_set(3);
    for (int cb = 0; cb < g->F / 16; cb++) {
        vf acc[CONV_POOL_FIXED_MAX], dbacc = zero;
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
                vm live = vf_gt(vf_load(y + o), zero);
                if (!vm_any(live))
                    continue;
                const struct window win = window_at(g, off, x, qh, qw, patch);
                const long rs = window_stride(g, &win, patch);
                vf grad = vf_maskz(live, vf_load(dy + o));
                vi at = vi_load8(where + o);
                dbacc = vf_add(dbacc, grad);
                vf g0 = vf_maskz(vi_eq(at, zero_i), grad), g1 = vf_maskz(vi_eq(at, one), grad),
                   g2 = vf_maskz(vi_eq(at, two), grad), g3 = vf_maskz(vi_eq(at, three), grad);
#pragma GCC unroll 4
                for (int kh = 0; kh < KH; kh++) {
                    const float *r0 = win.base + kh * rs, *r1 = r0 + rs;
#pragma GCC unroll 4
                    for (int kw = 0; kw < KW; kw++)
#pragma GCC unroll 4
                        for (int c = 0; c < C; c++) {
                            const int t = (kh * KW + kw) * C + c;
                            vf s = vf_fmadd(vf_set1(r0[kw * C + c]), g0, acc[t]);
                            s = vf_fmadd(vf_set1(r0[(kw + 1) * C + c]), g1, s);
                            s = vf_fmadd(vf_set1(r1[kw * C + c]), g2, s);
                            acc[t] = vf_fmadd(vf_set1(r1[(kw + 1) * C + c]), g3, s);
                        }
                }
            }
#pragma GCC unroll 16
        for (int t = 0; t < KH * KW * C; t++)
            vf_store(dw + (long)t * g->F + cb * 16, acc[t]);
        vf_store(db + cb * 16, dbacc);
    }
}

#define CP_FIXED_FN(id, kh, kw, c)                                                                             \
    CP_TARGET static void CP_FN(forward_##id)(const struct cp_geom *g, const struct cp_offsets *off,          \
                                              const float *x, const float *w, const float *b, float *y,       \
                                              uint8_t *where, float *patch)                                   \
    {                                                                                                          \
        CP_FN(forward_fixed)(g, off, x, w, b, y, where, patch, kh, kw, c);                                     \
    }                                                                                                          \
    CP_TARGET static void CP_FN(backward_##id)(const struct cp_geom *g, const struct cp_offsets *off,         \
                                               const float *x, const float *dy, const float *y,               \
                                               const uint8_t *where, float *dw, float *db, float *patch)      \
    {                                                                                                          \
        CP_FN(backward_fixed)(g, off, x, dy, y, where, dw, db, patch, kh, kw, c);                              \
    }
FIXED_SHAPES(CP_FIXED_FN)
#undef CP_FIXED_FN

/* The kernels of this instruction set: the generic ones, or those of kernel shape `fixed` (fixed_for). */
static void CP_FN(run_forward)(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                               const float *w, const float *b, float *y, uint8_t *where, float *patch)
{
    switch (fixed) {
#define CP_CASE(id, kh, kw, c)                                                                                 \
    case id:                                                                                                   \
        CP_FN(forward_##id)(g, off, x, w, b, y, where, patch);                                                 \
        return;
        FIXED_SHAPES(CP_CASE)
#undef CP_CASE
    default:
        CP_FN(forward_sample)(g, off, x, w, b, y, where, patch);
    }
}

/* The generic kernel adds to dw and db (zeroed by the caller); the fixed ones write their sums, which start
 * from zero: the same values. */
static void CP_FN(run_backward)(int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                                const float *dy, const float *y, const uint8_t *where, float *dw, float *db,
                                float *patch)
{
    switch (fixed) {
#define CP_CASE(id, kh, kw, c)                                                                                 \
    case id:                                                                                                   \
        CP_FN(backward_##id)(g, off, x, dy, y, where, dw, db, patch);                                          \
        return;
        FIXED_SHAPES(CP_CASE)
#undef CP_CASE
    default:
        CP_FN(backward_sample)(g, off, x, dy, y, where, dw, db, patch);
    }
}

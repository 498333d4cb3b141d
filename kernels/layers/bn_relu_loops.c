/* bn_relu_loops.c: the loops of the fused BatchNormalization kernels (bn_relu.c), one plane of rows of B channels
 * at a time (bn_relu_loops.h). Kept apart from the runtime so that this file alone gets the compile options the
 * vectorizer needs (kernels/CMakeLists.txt). */
#include "bn_relu_loops.h"

/* The loops are compiled for AVX-512, AVX2 and baseline x86-64; the CPU picks. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BR_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BR_KERNEL
#endif
/* Each loop is written once on a channel block B and inlined into a clone-dispatched wrapper for B = 16, 8 (the
 * blocked layouts, and nhwc with that many channels) and any: with a variable B, GCC guards the vector loop with
 * run-time overlap checks that B = 16 failed, and the loops ran scalar (4x slower backward). */
#define BR_BODY static inline __attribute__((always_inline))

/* s1 += sum over the plane's rows of x, s2 += of x * x (per channel of the block). */
BR_BODY void plane_moments_body(long R, long B, const float *restrict x, double *restrict s1,
                                    double *restrict s2)
{
    for (long r = 0; r < R; r++) {
        const float *v = x + r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            s1[e] += v[e];
            s2[e] += (double)v[e] * v[e];
        }
    }
}

/* y = relu(x * a + b) over the plane. */
BR_BODY void plane_norm_relu_body(long R, long B, const float *restrict x, const float *restrict a,
                                      const float *restrict b, float *restrict y)
{
    for (long r = 0; r < R; r++) {
        const float *v = x + r * B;
        float *o = y + r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float t = v[e] * a[e] + b[e];
            o[e] = t > 0.0f ? t : 0.0f;
        }
    }
}

/* The same, then the maximum of each 2x2 window (the first largest, as pooling.c), and with `where` which
 * position it was and in xmax the input there. Rows and columns no window covers (odd sizes) are not read. */
BR_BODY void plane_norm_relu_pool_body(long B, long W, long QH, long QW, const float *restrict x,
                                           const float *restrict a, const float *restrict b, float *restrict y,
                                           uint8_t *restrict where, float *restrict xmax)
{
    for (long oh = 0; oh < QH; oh++)
        for (long ow = 0; ow < QW; ow++) {
            const float *p0 = x + (2 * oh * W + 2 * ow) * B, *p1 = p0 + B, *p2 = p0 + W * B, *p3 = p2 + B;
            const long o = (oh * QW + ow) * B;
            float pos[16];
            for (long e0 = 0; e0 < B; e0 += 16) {
                const long e1 = e0 + 16 < B ? e0 + 16 : B;
#pragma omp simd
                for (long e = e0; e < e1; e++) {
                    float v0 = p0[e] * a[e] + b[e], v1 = p1[e] * a[e] + b[e];
                    float v2 = p2[e] * a[e] + b[e], v3 = p3[e] * a[e] + b[e];
                    v0 = v0 > 0.0f ? v0 : 0.0f, v1 = v1 > 0.0f ? v1 : 0.0f;
                    v2 = v2 > 0.0f ? v2 : 0.0f, v3 = v3 > 0.0f ? v3 : 0.0f;
                    /* Positions as float lanes beside the maximum, so that selects of one width vectorize. */
                    float m = v0, at = 0.0f, xm = p0[e];
                    if (v1 > m)
                        m = v1, at = 1.0f, xm = p1[e];
                    if (v2 > m)
                        m = v2, at = 2.0f, xm = p2[e];
                    if (v3 > m)
                        m = v3, at = 3.0f, xm = p3[e];
                    y[o + e] = m;
                    pos[e - e0] = at;
                    if (xmax)
                        xmax[o + e] = xm;
                }
                if (where)
                    for (long e = e0; e < e1; e++)
                        where[o + e] = (uint8_t)pos[e - e0];
            }
        }
}

/* Backward's sums over the plane: s1 += g, s2 += g * xhat, where g is dy through the ReLU (0 where y is not
 * > 0) and xhat = (x - mean) * inv. Without pooling x, y, dy are the plane's R rows; with it they are its
 * pooled rows, x being xmax (the input where each maximum was: the gradient is 0 everywhere else). */
BR_BODY void plane_grad_sums_body(long R, long B, const float *restrict x, const float *restrict y,
                                      const float *restrict dy, const float *restrict mean,
                                      const float *restrict inv, double *restrict s1, double *restrict s2)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            /* dy loaded unconditionally: a select, not a branch, so that the loop vectorizes (with
             * -fno-trapping-math, CMakeLists.txt). */
            float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
            float xh = (x[o + e] - mean[e]) * inv[e];
            s1[e] += g;
            s2[e] += (double)g * xh;
        }
    }
}

/* dx = a * (g - mdy - xhat * mdyx) over the plane (batchnorm.c's formula), g as in plane_grad_sums. */
BR_BODY void plane_dx_body(long R, long B, const float *restrict x, const float *restrict y,
                               const float *restrict dy, const float *restrict mean, const float *restrict inv,
                               const float *restrict a, const float *restrict mdy, const float *restrict mdyx,
                               float *restrict dx)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
            float xh = (x[o + e] - mean[e]) * inv[e];
            dx[o + e] = a[e] * (g - mdy[e] - xh * mdyx[e]);
        }
    }
}

/* dx where the gradient g is 0: the rows and columns no pooling window covers. */
BR_BODY void plane_dx_uncovered_body(long R, long B, const float *restrict x, const float *restrict mean,
                                         const float *restrict inv, const float *restrict a,
                                         const float *restrict mdy, const float *restrict mdyx, float *restrict dx)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float xh = (x[o + e] - mean[e]) * inv[e];
            dx[o + e] = a[e] * (0.0f - mdy[e] - xh * mdyx[e]);
        }
    }
}

/* The same through the pooling: g is the pooled gradient (through the ReLU of the pooled output) at the
 * position `where` names and 0 at the window's three others and at the rows and columns no window covers. */
BR_BODY void plane_dx_pool_body(long B, long H, long W, long QH, long QW, const float *restrict x,
                                    const float *restrict y, const float *restrict dy,
                                    const uint8_t *restrict where, const float *restrict mean,
                                    const float *restrict inv, const float *restrict a, const float *restrict mdy,
                                    const float *restrict mdyx, float *restrict dx)
{
    for (long oh = 0; oh < QH; oh++) {
        for (long ow = 0; ow < QW; ow++) {
            const long o = (oh * QW + ow) * B, i0 = (2 * oh * W + 2 * ow) * B, i1 = i0 + B, i2 = i0 + W * B,
                       i3 = i2 + B;
#pragma omp simd
            for (long e = 0; e < B; e++) {
                float d = dy[o + e], g = y[o + e] > 0.0f ? d : 0.0f;
                int k = where[o + e];
                float m = mdy[e], s = mdyx[e], mu = mean[e], iv = inv[e], f = a[e];
                dx[i0 + e] = f * ((k == 0 ? g : 0.0f) - m - (x[i0 + e] - mu) * iv * s);
                dx[i1 + e] = f * ((k == 1 ? g : 0.0f) - m - (x[i1 + e] - mu) * iv * s);
                dx[i2 + e] = f * ((k == 2 ? g : 0.0f) - m - (x[i2 + e] - mu) * iv * s);
                dx[i3 + e] = f * ((k == 3 ? g : 0.0f) - m - (x[i3 + e] - mu) * iv * s);
            }
        }
        if (W % 2)
            for (long r = 2 * oh; r < 2 * oh + 2; r++)
                plane_dx_uncovered_body(1, B, x + (r * W + W - 1) * B, mean, inv, a, mdy, mdyx,
                                        dx + (r * W + W - 1) * B);
    }
    if (H % 2)
        plane_dx_uncovered_body(W, B, x + (H - 1) * W * B, mean, inv, a, mdy, mdyx, dx + (H - 1) * W * B);
}

/* The Add kernel's loops below are near copies of the ones above rather than the same loops with a NULL test on
 * g inside: GCC takes such a test out of a vector loop only at -O3 (-funswitch-loops). */

/* y = relu(x * a + b + s) over the plane: the residual block's end (BatchNormalization, Add of the shortcut s,
 * ReLU). */
BR_BODY void plane_norm_add_relu_body(long R, long B, const float *restrict x, const float *restrict a,
                                      const float *restrict b, const float *restrict s, float *restrict y)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float t = x[o + e] * a[e] + b[e] + s[o + e];
            y[o + e] = t > 0.0f ? t : 0.0f;
        }
    }
}

/* plane_grad_sums, also writing g (the gradient before the ReLU: the shortcut's, and the one dx is made of). */
BR_BODY void plane_grad_sums_out_body(long R, long B, const float *restrict x, const float *restrict y,
                                      const float *restrict dy, const float *restrict mean,
                                      const float *restrict inv, double *restrict s1, double *restrict s2,
                                      float *restrict g)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float d = dy[o + e], v = y[o + e] > 0.0f ? d : 0.0f;
            float xh = (x[o + e] - mean[e]) * inv[e];
            g[o + e] = v;
            s1[e] += v;
            s2[e] += (double)v * xh;
        }
    }
}

/* dx = a * (g - mdy - xhat * mdyx) over the plane from a written g. */
BR_BODY void plane_dx_of_g_body(long R, long B, const float *restrict x, const float *restrict g,
                                const float *restrict mean, const float *restrict inv, const float *restrict a,
                                const float *restrict mdy, const float *restrict mdyx, float *restrict dx)
{
    for (long r = 0; r < R; r++) {
        const long o = r * B;
#pragma omp simd
        for (long e = 0; e < B; e++) {
            float xh = (x[o + e] - mean[e]) * inv[e];
            dx[o + e] = a[e] * (g[o + e] - mdy[e] - xh * mdyx[e]);
        }
    }
}

/* The loops above for the block at hand (BR_BODY). */
BR_KERNEL void plane_moments(long R, long B, const float *restrict x, double *restrict s1,
                                    double *restrict s2)
{
    if (B == 16)
        plane_moments_body(R, 16, x, s1, s2);
    else if (B == 8)
        plane_moments_body(R, 8, x, s1, s2);
    else
        plane_moments_body(R, B, x, s1, s2);
}

BR_KERNEL void plane_norm_relu(long R, long B, const float *restrict x, const float *restrict a,
                                      const float *restrict b, float *restrict y)
{
    if (B == 16)
        plane_norm_relu_body(R, 16, x, a, b, y);
    else if (B == 8)
        plane_norm_relu_body(R, 8, x, a, b, y);
    else
        plane_norm_relu_body(R, B, x, a, b, y);
}

BR_KERNEL void plane_norm_relu_pool(long B, long W, long QH, long QW, const float *restrict x,
                                           const float *restrict a, const float *restrict b, float *restrict y,
                                           uint8_t *restrict where, float *restrict xmax)
{
    if (B == 16)
        plane_norm_relu_pool_body(16, W, QH, QW, x, a, b, y, where, xmax);
    else if (B == 8)
        plane_norm_relu_pool_body(8, W, QH, QW, x, a, b, y, where, xmax);
    else
        plane_norm_relu_pool_body(B, W, QH, QW, x, a, b, y, where, xmax);
}

BR_KERNEL void plane_grad_sums(long R, long B, const float *restrict x, const float *restrict y,
                                      const float *restrict dy, const float *restrict mean,
                                      const float *restrict inv, double *restrict s1, double *restrict s2)
{
    if (B == 16)
        plane_grad_sums_body(R, 16, x, y, dy, mean, inv, s1, s2);
    else if (B == 8)
        plane_grad_sums_body(R, 8, x, y, dy, mean, inv, s1, s2);
    else
        plane_grad_sums_body(R, B, x, y, dy, mean, inv, s1, s2);
}

BR_KERNEL void plane_dx(long R, long B, const float *restrict x, const float *restrict y,
                               const float *restrict dy, const float *restrict mean, const float *restrict inv,
                               const float *restrict a, const float *restrict mdy, const float *restrict mdyx,
                               float *restrict dx)
{
    if (B == 16)
        plane_dx_body(R, 16, x, y, dy, mean, inv, a, mdy, mdyx, dx);
    else if (B == 8)
        plane_dx_body(R, 8, x, y, dy, mean, inv, a, mdy, mdyx, dx);
    else
        plane_dx_body(R, B, x, y, dy, mean, inv, a, mdy, mdyx, dx);
}

BR_KERNEL void plane_dx_pool(long B, long H, long W, long QH, long QW, const float *restrict x,
                                    const float *restrict y, const float *restrict dy,
                                    const uint8_t *restrict where, const float *restrict mean,
                                    const float *restrict inv, const float *restrict a, const float *restrict mdy,
                                    const float *restrict mdyx, float *restrict dx)
{
    if (B == 16)
        plane_dx_pool_body(16, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
    else if (B == 8)
        plane_dx_pool_body(8, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
    else
        plane_dx_pool_body(B, H, W, QH, QW, x, y, dy, where, mean, inv, a, mdy, mdyx, dx);
}

BR_KERNEL void plane_norm_add_relu(long R, long B, const float *restrict x, const float *restrict a,
                                   const float *restrict b, const float *restrict s, float *restrict y)
{
    if (B == 16)
        plane_norm_add_relu_body(R, 16, x, a, b, s, y);
    else if (B == 8)
        plane_norm_add_relu_body(R, 8, x, a, b, s, y);
    else
        plane_norm_add_relu_body(R, B, x, a, b, s, y);
}

BR_KERNEL void plane_grad_sums_out(long R, long B, const float *restrict x, const float *restrict y,
                                   const float *restrict dy, const float *restrict mean, const float *restrict inv,
                                   double *restrict s1, double *restrict s2, float *restrict g)
{
    if (B == 16)
        plane_grad_sums_out_body(R, 16, x, y, dy, mean, inv, s1, s2, g);
    else if (B == 8)
        plane_grad_sums_out_body(R, 8, x, y, dy, mean, inv, s1, s2, g);
    else
        plane_grad_sums_out_body(R, B, x, y, dy, mean, inv, s1, s2, g);
}

BR_KERNEL void plane_dx_of_g(long R, long B, const float *restrict x, const float *restrict g,
                             const float *restrict mean, const float *restrict inv, const float *restrict a,
                             const float *restrict mdy, const float *restrict mdyx, float *restrict dx)
{
    if (B == 16)
        plane_dx_of_g_body(R, 16, x, g, mean, inv, a, mdy, mdyx, dx);
    else if (B == 8)
        plane_dx_of_g_body(R, 8, x, g, mean, inv, a, mdy, mdyx, dx);
    else
        plane_dx_of_g_body(R, B, x, g, mean, inv, a, mdy, mdyx, dx);
}

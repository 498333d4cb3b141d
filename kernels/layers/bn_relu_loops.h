/* bn_relu_loops.h: the fused BatchNormalization kernels' loops over one plane (bn_relu.c's view of a layout: a
 * plane is one sample's block of B channels, R = H x W rows of B floats; with pooling, QH x QW pooled rows).
 * Per-channel arrays (a, b, mean, inv, mdy, mdyx, s1, s2) are the block's B entries. Internal to kernels/. */
#ifndef TRAINER_BN_RELU_LOOPS_H
#define TRAINER_BN_RELU_LOOPS_H

#include <stdint.h>

/* s1 += sum over the rows of x, s2 += of x * x. */
void plane_moments(long R, long B, const float *restrict x, double *restrict s1, double *restrict s2);

/* y = relu(x * a + b). */
void plane_norm_relu(long R, long B, const float *restrict x, const float *restrict a, const float *restrict b,
                     float *restrict y);

/* The same, then each 2x2 window's maximum (the first largest); with `where` which of the four it was and in
 * xmax the input there (training; NULL otherwise). */
void plane_norm_relu_pool(long B, long W, long QH, long QW, const float *restrict x, const float *restrict a,
                          const float *restrict b, float *restrict y, uint8_t *restrict where,
                          float *restrict xmax);

/* y = relu(x * a + b + s): s is the shortcut an Add brings in. */
void plane_norm_add_relu(long R, long B, const float *restrict x, const float *restrict a, const float *restrict b,
                         const float *restrict s, float *restrict y);

/* s1 += g, s2 += g * xhat, with g = dy where y > 0 (else 0) and xhat = (x - mean) * inv. */
void plane_grad_sums(long R, long B, const float *restrict x, const float *restrict y, const float *restrict dy,
                     const float *restrict mean, const float *restrict inv, double *restrict s1,
                     double *restrict s2);

/* The same, also writing g. */
void plane_grad_sums_out(long R, long B, const float *restrict x, const float *restrict y, const float *restrict dy,
                         const float *restrict mean, const float *restrict inv, double *restrict s1,
                         double *restrict s2, float *restrict g);

/* dx = a * (g - mdy - xhat * mdyx), g from y and dy as in plane_grad_sums. */
void plane_dx(long R, long B, const float *restrict x, const float *restrict y, const float *restrict dy,
              const float *restrict mean, const float *restrict inv, const float *restrict a,
              const float *restrict mdy, const float *restrict mdyx, float *restrict dx);

/* The same from a written g. */
void plane_dx_of_g(long R, long B, const float *restrict x, const float *restrict g, const float *restrict mean,
                   const float *restrict inv, const float *restrict a, const float *restrict mdy,
                   const float *restrict mdyx, float *restrict dx);

/* dx through the pooling: g (the pooled gradient through the ReLU) at the position `where` names, 0 at the
 * window's others and at the rows and columns no window covers; x the plane's H x W rows, y and dy its pooled
 * rows. */
void plane_dx_pool(long B, long H, long W, long QH, long QW, const float *restrict x, const float *restrict y,
                   const float *restrict dy, const uint8_t *restrict where, const float *restrict mean,
                   const float *restrict inv, const float *restrict a, const float *restrict mdy,
                   const float *restrict mdyx, float *restrict dx);

#endif

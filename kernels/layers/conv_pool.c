/* conv_pool.c: the first Conv2D (ReLU) and its MaxPooling2D as one kernel (conv_pool.h), for AVX-512 and for
 * AVX2 + FMA (conv_pool_simd.h, compiled for each; the CPU picks at run time).
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
#define CONV_POOL_SIMD 1
#include <immintrin.h>
#else
#define CONV_POOL_SIMD 0
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
    int isa;           /* cpu_isa(): which compilation of the kernels runs */
};

int conv_pool_generic;

static int is_relu_conv(const struct layer_spec *s)
{
    return s->ops == &layer_conv2d && s->u.conv.act == ACT_RELU && s->u.conv.sh == 1 && s->u.conv.sw == 1;
}

int conv_pool_avx2_only;

int conv_pool_has_avx512(void)
{
#if CONV_POOL_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* 2: AVX-512, 1: AVX2 and FMA, 0: neither (the layers then run apart, on oneDNN). */
static int cpu_isa(void)
{
#if CONV_POOL_SIMD
    if (conv_pool_has_avx512() && !conv_pool_avx2_only)
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

int conv_pool_fusable(const struct model *m, int i)
{
    if (!CONV_POOL_SIMD || i < 1 || i + 1 >= m->n_layers)
        return 0;
    for (int j = 1; j < i; j++) /* augmentation layers hand on plain images and need no gradient */
        if (!layer_is_augmentation(m->layers[j].ops))
            return 0;
    const struct layer_spec *c = &m->layers[i], *p = &m->layers[i + 1];
    if (!is_relu_conv(c) || p->ops != &layer_max_pooling2d)
        return 0;
    const struct pool_cfg *pc = &p->u.pool;
    long taps = (long)c->u.conv.kh * c->u.conv.kw * c->in.c;
    if (taps > CONV_POOL_MAX_TAPS || c->u.conv.filters % 16 || pc->same || pc->sh != pc->ph || pc->sw != pc->pw ||
        pc->ph * pc->pw > 255 || p->out.h < 1 || p->out.w < 1)
        return 0;
    return cpu_isa() > 0;
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

#if CONV_POOL_SIMD

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

/* Row stride of a window's input: the image's, or the patch's when window_at had to copy (an edge). */
static inline long window_stride(const struct cp_geom *g, const struct window *win, const float *patch)
{
    return win->base == patch ? (long)(g->PX + g->KW - 1) * g->C : (long)g->W * g->C;
}

/* FIXED_SHAPES(X): X(id, KH, KW, C) for each kernel shape with kernels of their own; id is not 0. */
#define FIXED_SHAPES(X) X(1, 2, 2, 1) X(2, 2, 2, 3) X(3, 3, 3, 1)

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

/* ---- AVX-512: a vector of 16 filters is one register, a mask is a __mmask16 ---- */
#define CP_TARGET __attribute__((target("avx512f")))
#define CP_FN(name) name##_avx512
#define vf __m512
#define vm __mmask16
#define vi __m512i
#define vf_zero() _mm512_setzero_ps()
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_store(p, v) _mm512_storeu_ps(p, v)
#define vf_set1(x) _mm512_set1_ps(x)
#define vf_fmadd(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_max(a, b) _mm512_max_ps(a, b)
#define vf_add(a, b) _mm512_add_ps(a, b)
#define vf_gt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define vm_any(m) ((m) != 0)
#define vf_blend(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define vf_maskz(m, a) _mm512_maskz_mov_ps(m, a)
#define vi_zero() _mm512_setzero_si512()
#define vi_set(k) _mm512_set1_epi32(k)
#define vi_blend(m, a, b) _mm512_mask_blend_epi32(m, a, b)
#define vi_eq(a, b) _mm512_cmpeq_epi32_mask(a, b)
#define vi_store8(p, v) _mm_storeu_si128((__m128i *)(p), _mm512_cvtepi32_epi8(v))
#define vi_load8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#include "conv_pool_simd.h"
#undef CP_TARGET
#undef CP_FN
#undef vf
#undef vm
#undef vi
#undef vf_zero
#undef vf_load
#undef vf_store
#undef vf_set1
#undef vf_fmadd
#undef vf_max
#undef vf_add
#undef vf_gt
#undef vm_any
#undef vf_blend
#undef vf_maskz
#undef vi_zero
#undef vi_set
#undef vi_blend
#undef vi_eq
#undef vi_store8
#undef vi_load8

/* ---- AVX2 + FMA: a vector of 16 filters is two registers; masks are all-ones lanes, and window positions
 * are held as floats (0..255, exact), so that one compare-and-blend serves both ---- */
#define CP_TARGET __attribute__((target("avx2,fma")))
#define CP_FN(name) name##_avx2
#define CP2 __attribute__((target("avx2,fma"), always_inline)) static inline
struct cp_f2 {
    __m256 lo, hi;
};
#define vf struct cp_f2
#define vm struct cp_f2
#define vi struct cp_f2
CP2 vf vf_zero(void) { return (vf){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
CP2 vf vf_load(const float *p) { return (vf){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
CP2 void vf_store(float *p, vf v)
{
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
CP2 vf vf_set1(float x) { return (vf){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
CP2 vf vf_fmadd(vf a, vf b, vf c) { return (vf){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
CP2 vf vf_max(vf a, vf b) { return (vf){_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
CP2 vf vf_add(vf a, vf b) { return (vf){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
CP2 vm vf_gt(vf a, vf b)
{
    return (vm){_mm256_cmp_ps(a.lo, b.lo, _CMP_GT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_GT_OQ)};
}
CP2 int vm_any(vm m) { return (_mm256_movemask_ps(m.lo) | _mm256_movemask_ps(m.hi)) != 0; }
CP2 vf vf_blend(vm m, vf a, vf b) { return (vf){_mm256_blendv_ps(a.lo, b.lo, m.lo), _mm256_blendv_ps(a.hi, b.hi, m.hi)}; }
CP2 vf vf_maskz(vm m, vf a) { return (vf){_mm256_and_ps(m.lo, a.lo), _mm256_and_ps(m.hi, a.hi)}; }
CP2 vi vi_zero(void) { return vf_zero(); }
CP2 vi vi_set(int k) { return vf_set1((float)k); }
CP2 vi vi_blend(vm m, vi a, vi b) { return vf_blend(m, a, b); }
CP2 vm vi_eq(vi a, vi b)
{
    return (vm){_mm256_cmp_ps(a.lo, b.lo, _CMP_EQ_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_EQ_OQ)};
}
/* 16 floats 0..255 -> 16 bytes in order: packs works within 128-bit lanes, the permute puts them back. */
CP2 void vi_store8(uint8_t *p, vi v)
{
    __m256i w = _mm256_packs_epi32(_mm256_cvttps_epi32(v.lo), _mm256_cvttps_epi32(v.hi));
    w = _mm256_permute4x64_epi64(w, 0xD8);
    _mm_storeu_si128((__m128i *)p, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}
CP2 vi vi_load8(const uint8_t *p)
{
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    return (vi){_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)))};
}
#include "conv_pool_simd.h"
#undef CP_TARGET
#undef CP_FN
#undef CP2
#undef vf
#undef vm
#undef vi

/* The kernels of the CPU's instruction set (cpu_isa). */
static void run_forward(int isa, int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                        const float *w, const float *b, float *y, uint8_t *where, float *patch)
{
    (isa == 2 ? run_forward_avx512 : run_forward_avx2)(fixed, g, off, x, w, b, y, where, patch);
}

static void run_backward(int isa, int fixed, const struct cp_geom *g, const struct cp_offsets *off,
                         const float *x, const float *dy, const float *y, const uint8_t *where, float *dw,
                         float *db, float *patch)
{
    (isa == 2 ? run_backward_avx512 : run_backward_avx2)(fixed, g, off, x, dy, y, where, dw, db, patch);
}

#else

/* Never called: conv_pool_fusable is false without x86-64 vectors. */
static int fixed_for(const struct cp_geom *g)
{
    (void)g;
    return 0;
}

static void run_forward(int isa, int fixed, const struct cp_geom *g, const struct cp_offsets *off, const float *x,
                        const float *w, const float *b, float *y, uint8_t *where, float *patch)
{
    (void)isa, (void)fixed, (void)g, (void)off, (void)x, (void)w, (void)b, (void)y, (void)where, (void)patch;
}

static void run_backward(int isa, int fixed, const struct cp_geom *g, const struct cp_offsets *off,
                         const float *x, const float *dy, const float *y, const uint8_t *where, float *dw,
                         float *db, float *patch)
{
    (void)isa, (void)fixed, (void)g, (void)off, (void)x, (void)dy, (void)y, (void)where, (void)dw, (void)db,
        (void)patch;
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
    p->isa = cpu_isa();
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
            run_forward(p->isa, p->fixed, g, &p->off, x + i * in, w, b, y + i * out, p->where + i * out, patch);
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
            run_backward(p->isa, p->fixed, g, &p->off, x + i * in, dy + i * out, y + i * out, p->where + i * out, one,
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

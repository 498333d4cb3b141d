/* pooling.c: MaxPooling2D and AveragePooling2D over oneDNN pooling, and the pooling primitive pair that
 * the global pooling layers share (pooling.h). */
#include "pooling.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_common.h"

/* ---- the primitive pair (pooling.h) ---- */

int pool_prims_create(struct pool_prims *p, const struct pool_geom *g, const dnnl_memory_desc_t *src_md,
                      const dnnl_memory_desc_t *dst_md, dnnl_memory_desc_t *dst_md_out, int with_bwd,
                      const struct dnn *d, struct error *err)
{
    dnnl_pooling_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    /* Inference pooling keeps no workspace: only ask for training when a backward will read it. */
    dnnl_prop_kind_t prop = with_bwd ? dnnl_forward_training : dnnl_forward_inference;
    memset(p, 0, sizeof *p);
    DNN_CHECK(dnnl_pooling_forward_desc_init(&fd, prop, g->alg, src_md, dst_md, g->strides, g->kernel,
                                             g->pad_l, g->pad_r));
    DNN_CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, d->engine, NULL));
    *dst_md_out = *dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
    DNN_CHECK(dnnl_primitive_create(&p->fwd, fpd));
    if (with_bwd) {
        const dnnl_memory_desc_t *ws_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
        if (ws_md && ws_md->ndims > 0)
            DNN_CHECK(dnnl_memory_create(&p->ws, ws_md, d->engine, DNNL_MEMORY_ALLOCATE));
        /* diff_src in the layout the previous layer produces: no reorder on the way back. */
        DNN_CHECK(dnnl_pooling_backward_desc_init(&bd, g->alg, src_md, dst_md_out, g->strides, g->kernel,
                                                  g->pad_l, g->pad_r));
        DNN_CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, d->engine, fpd));
        DNN_CHECK(dnnl_primitive_create(&p->bwd, bpd));
        dnnl_primitive_desc_destroy(bpd);
    }
    dnnl_primitive_desc_destroy(fpd);
    return ERR_OK;
fail:
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    pool_prims_release(p);
    return err ? err->code : ERR_INTERNAL;
}

int pool_prims_forward(const struct pool_prims *p, dnnl_memory_t src, dnnl_memory_t dst, const struct dnn *d,
                       struct error *err)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_WORKSPACE, p->ws}};
    return dnn_exec(p->fwd, d, p->ws ? 3 : 2, args, err);
}

int pool_prims_backward(const struct pool_prims *p, dnnl_memory_t diff_dst, dnnl_memory_t diff_src,
                        const struct dnn *d, struct error *err)
{
    if (!p->bwd)
        return error_set(err, ERR_INTERNAL, "pooling: backward run on a layer created without it");
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, diff_src}, {DNNL_ARG_WORKSPACE, p->ws}};
    return dnn_exec(p->bwd, d, p->ws ? 3 : 2, args, err);
}

void pool_prims_release(struct pool_prims *p)
{
    if (p->fwd)
        dnnl_primitive_destroy(p->fwd);
    if (p->bwd)
        dnnl_primitive_destroy(p->bwd);
    if (p->ws)
        dnnl_memory_destroy(p->ws);
    memset(p, 0, sizeof *p);
}

/* ---- MaxPooling2D / AveragePooling2D ---- */

static const char *const paddings[] = {"valid", "same", NULL};

static int check_positive(struct args *a, const char *key, int pos, const long v[2], struct error *err)
{
    if (v[0] >= 1 && v[1] >= 1 && v[0] <= INT_MAX && v[1] <= INT_MAX)
        return ERR_OK;
    return args_error(a, layer_find_arg(a, key, pos), err, "'%s' must be positive, not (%ld, %ld)", key, v[0], v[1]);
}

/* Keras: (pool_size=(2, 2), strides=None, padding='valid'); strides None means strides = pool_size. */
static int pool_parse(struct layer_spec *spec, struct args *a, struct error *err)
{
    long pool[2], strides[2];
    int given, same, rc;
    if ((rc = args_pair(a, "pool_size", 0, 0, 2, pool, err)) != ERR_OK ||
        (rc = check_positive(a, "pool_size", 0, pool, err)) != ERR_OK ||
        (rc = args_pair_or_none(a, "strides", 1, strides, &given, err)) != ERR_OK)
        return rc;
    if (!given) {
        strides[0] = pool[0];
        strides[1] = pool[1];
    } else if ((rc = check_positive(a, "strides", 1, strides, err)) != ERR_OK) {
        return rc;
    }
    if ((rc = args_choice(a, "padding", 2, paddings, 0, &same, err)) != ERR_OK)
        return rc;
    struct pool_cfg *c = &spec->u.pool;
    c->ph = (int)pool[0];
    c->pw = (int)pool[1];
    c->sh = (int)strides[0];
    c->sw = (int)strides[1];
    c->same = same;
    return ERR_OK;
}

static int pool_infer(struct layer_spec *s, struct error *err)
{
    const struct pool_cfg *c = &s->u.pool;
    if (s->in.rank != 3)
        return layer_spec_error(s, err, "needs an (h, w, c) input, not rank %d", s->in.rank);
    if (!c->same && (c->ph > s->in.h || c->pw > s->in.w))
        return layer_spec_error(s, err, "pool %dx%d is larger than its %dx%d input", c->ph, c->pw, s->in.h, s->in.w);
    s->out.rank = 3;
    s->out.h = layer_out_size(s->in.h, c->ph, c->sh, c->same);
    s->out.w = layer_out_size(s->in.w, c->pw, c->sw, c->same);
    s->out.c = s->in.c;
    s->n_params = 0;
    return ERR_OK;
}

/* A windowed pooling layer's primitives, or the 2x2 kernel below. */
struct wpool_priv {
    struct pool_prims prims;
    dnnl_primitive_t relu_bwd; /* with relu_bwd_of_prev: diff_dst where dst > 0, else 0; NULL otherwise */
    dnnl_memory_t masked;      /* its output, in l->dst_md */
    int block;                 /* 8 or 16: the 2x2 kernel runs on that channel-blocked layout; 0: oneDNN */
    uint8_t *where;            /* 2x2 kernel: (n, C/block, OH, OW, block) which of the four had the maximum */
};

int pooling_onednn_only;

/* ---- 2x2 max pooling, stride 2, on channel-blocked or nhwc activations ----
 * The Conv2D before a MaxPooling2D hands over nChw8c (AVX2) or nChw16c (AVX-512). oneDNN 2.6's pooling takes
 * 3.5 ms per step on cifar10-cnn's second one at batch 256 on an AVX2 host (~3 GB/s, a third of a memcpy);
 * for the Keras default window this loop reads each input once, writes the maximum and a byte saying which
 * of the four it was, and backward writes each input gradient once (no zero fill, no scatter). Maxima are
 * exact and the first largest wins, as in oneDNN: the same bits. */

/* Whether the layer can run the 2x2 kernel on src: `valid` 2x2 windows with stride 2 (or `same` on even
 * sizes, which pads nothing), src nChw8c or nChw16c as oneDNN lays it out, or nhwc (after a layer that
 * writes plain activations: BatchNormalization, Activation, Dropout). Returns the block, or 0. */
static int fast_block(const struct layer *l)
{
    const struct pool_cfg *c = &l->spec->u.pool;
    const struct shape *in = &l->spec->in;
    if (pooling_onednn_only || c->ph != 2 || c->pw != 2 || c->sh != 2 || c->sw != 2 ||
        (c->same && (in->h % 2 || in->w % 2)))
        return 0;
    dnnl_dims_t dims = {l->n, in->c, in->h, in->w};
    /* nhwc is the blocked layout with one block of all C channels. */
    static const struct {
        dnnl_format_tag_t tag;
        int block;
    } tags[] = {{dnnl_aBcd8b, 8}, {dnnl_aBcd16b, 16}, {dnnl_acdb, 0}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        dnnl_memory_desc_t md;
        if (dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tags[i].tag) == dnnl_success &&
            dnnl_memory_desc_equal(&md, &l->src_md))
            return tags[i].block ? tags[i].block : in->c;
    }
    return 0;
}

int pooling_2x2_block_for(const struct layer_spec *spec, int n, dnnl_format_tag_t tag)
{
    struct layer l = {.spec = spec, .n = n};
    dnnl_dims_t dims = {n, spec->in.c, spec->in.h, spec->in.w};
    if (dnnl_memory_desc_init_by_tag(&l.src_md, 4, dims, dnnl_f32, tag) != dnnl_success)
        return 0;
    return fast_block(&l);
}

/* The layout the 2x2 kernel runs on for `block` (fast_block): nChw8c, nChw16c, or nhwc (one block of C). */
static dnnl_format_tag_t fast_tag(const struct layer *l, int block)
{
    if (block == l->spec->in.c && block != 8 && block != 16)
        return dnnl_acdb;
    /* 8 or 16 channels in nhwc and in one block of nChw8c / nChw16c are the same bytes; the source's tag
     * decides which one the next layer is told. */
    dnnl_dims_t dims = {l->n, l->spec->in.c, l->spec->in.h, l->spec->in.w};
    dnnl_memory_desc_t md;
    if (dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_acdb) == dnnl_success &&
        dnnl_memory_desc_equal(&md, &l->src_md))
        return dnnl_acdb;
    return block == 8 ? dnnl_aBcd8b : dnnl_aBcd16b;
}

/* Planes of one block of channels: (n, padded C / B). */
static long fast_planes(const struct layer *l, int B)
{
    return (long)l->n * ((l->spec->in.c + B - 1) / B);
}

/* The loops are compiled for AVX2 and AVX-512 too, and the CPU picks (compares, selects and maxima: the same
 * bits under each). One plane (n, channel block) at a time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define POOL_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define POOL_KERNEL
#endif

POOL_KERNEL static void fast_forward_plane(int B, int W, int OH, int OW, const float *restrict x,
                                           float *restrict y, uint8_t *restrict where)
{
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            const float *a = x + ((long)2 * oh * W + 2 * ow) * B, *b = a + B, *c = a + (long)W * B, *d = c + B;
            float *o = y + ((long)oh * OW + ow) * B;
            if (where) {
                uint8_t *k = where + ((long)oh * OW + ow) * B;
                float pos[16];
                for (int e0 = 0; e0 < B; e0 += 16) {
                    const int e1 = e0 + 16 < B ? e0 + 16 : B;
#pragma omp simd
                for (int e = e0; e < e1; e++) {
                    /* The position as a float lane beside the maximum (selects of one width vectorize),
                     * narrowed to a byte after. */
                    float m = a[e], at = 0.0f, gt;
                    gt = b[e] > m, at = gt != 0.0f ? 1.0f : at, m = gt != 0.0f ? b[e] : m;
                    gt = c[e] > m, at = gt != 0.0f ? 2.0f : at, m = gt != 0.0f ? c[e] : m;
                    gt = d[e] > m, at = gt != 0.0f ? 3.0f : at, m = gt != 0.0f ? d[e] : m;
                    o[e] = m;
                    pos[e - e0] = at;
                }
                for (int e = e0; e < e1; e++)
                    k[e] = (uint8_t)pos[e - e0];
                }
            } else {
#pragma omp simd
                for (int e = 0; e < B; e++) {
                    float m = a[e];
                    m = b[e] > m ? b[e] : m;
                    m = c[e] > m ? c[e] : m;
                    o[e] = d[e] > m ? d[e] : m;
                }
            }
        }
}

static void fast_forward(const struct layer *l, int B, const float *x, float *y, uint8_t *where)
{
    const int H = l->spec->in.h, W = l->spec->in.w, OH = l->spec->out.h, OW = l->spec->out.w;
    const long planes = fast_planes(l, B), in = (long)H * W * B, out = (long)OH * OW * B;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++)
        fast_forward_plane(B, W, OH, OW, x + pl * in, y + pl * out, where ? where + pl * out : NULL);
}

/* One plane's dx from dy by `where`, with `relu_y` only where the pooled output is > 0. */
POOL_KERNEL static void fast_backward_plane(int B, int H, int W, int OH, int OW, const float *restrict dy,
                                            const float *restrict relu_y, const uint8_t *restrict where,
                                            float *restrict dx)
{
    for (int oh = 0; oh < OH; oh++) {
        for (int ow = 0; ow < OW; ow++) {
            const long o = ((long)oh * OW + ow) * B;
            float *a = dx + ((long)2 * oh * W + 2 * ow) * B, *b = a + B, *c = a + (long)W * B, *d = c + B;
            const uint8_t *k = where + o;
            const float *g = dy + o;
            if (relu_y) {
                const float *yy = relu_y + o;
#pragma omp simd
                for (int e = 0; e < B; e++) {
                    float v = yy[e] > 0.0f ? g[e] : 0.0f;
                    a[e] = k[e] == 0 ? v : 0.0f;
                    b[e] = k[e] == 1 ? v : 0.0f;
                    c[e] = k[e] == 2 ? v : 0.0f;
                    d[e] = k[e] == 3 ? v : 0.0f;
                }
            } else {
#pragma omp simd
                for (int e = 0; e < B; e++) {
                    a[e] = k[e] == 0 ? g[e] : 0.0f;
                    b[e] = k[e] == 1 ? g[e] : 0.0f;
                    c[e] = k[e] == 2 ? g[e] : 0.0f;
                    d[e] = k[e] == 3 ? g[e] : 0.0f;
                }
            }
        }
        if (W % 2) {
            memset(dx + ((long)2 * oh * W + W - 1) * B, 0, sizeof(float) * B);
            memset(dx + ((long)(2 * oh + 1) * W + W - 1) * B, 0, sizeof(float) * B);
        }
    }
    if (H % 2)
        memset(dx + (long)(H - 1) * W * B, 0, sizeof(float) * (size_t)W * B);
}

/* dx from dy by `where`; with `relu_y` (relu_bwd_of_prev) only where the pooled output is > 0. A row or column
 * the windows do not cover (odd sizes) gets 0. */
static void fast_backward(const struct layer *l, int B, const float *dy, const float *relu_y, const uint8_t *where,
                          float *dx)
{
    const int H = l->spec->in.h, W = l->spec->in.w, OH = l->spec->out.h, OW = l->spec->out.w;
    const long planes = fast_planes(l, B), in = (long)H * W * B, out = (long)OH * OW * B;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++)
        fast_backward_plane(B, H, W, OH, OW, dy + pl * out, relu_y ? relu_y + pl * out : NULL, where + pl * out,
                            dx + pl * in);
}

static void pool_destroy(struct layer *l)
{
    struct wpool_priv *p = l->priv;
    if (p) {
        pool_prims_release(&p->prims);
        if (p->relu_bwd)
            dnnl_primitive_destroy(p->relu_bwd);
        if (p->masked)
            dnnl_memory_destroy(p->masked);
        free(p->where);
        free(p);
    }
    l->priv = NULL;
    layer_release_outputs(l);
}

/* The window of spec->u.pool; Keras 'same' puts the odd padding row/column at the bottom/right. */
static void pool_geometry(const struct layer_spec *s, dnnl_alg_kind_t alg, struct pool_geom *g)
{
    const struct pool_cfg *c = &s->u.pool;
    int pt = 0, pb = 0, pl = 0, pr = 0;
    if (c->same) {
        layer_same_padding(s->in.h, c->ph, c->sh, &pt, &pb);
        layer_same_padding(s->in.w, c->pw, c->sw, &pl, &pr);
    }
    memset(g, 0, sizeof *g);
    g->alg = alg;
    g->kernel[0] = c->ph;
    g->kernel[1] = c->pw;
    g->strides[0] = c->sh;
    g->strides[1] = c->sw;
    g->pad_l[0] = pt;
    g->pad_l[1] = pl;
    g->pad_r[0] = pb;
    g->pad_r[1] = pr;
}

/* src is used in whatever layout the previous layer chose (pooling runs on blocked layouts); dst is left
 * to oneDNN, which picks src's format, so no reorder happens on either side. */
static int pool_create(struct layer *l, const struct dnn *d, int need_diff_src, dnnl_alg_kind_t alg,
                       struct error *err)
{
    const struct shape *out = &l->spec->out;
    dnnl_dims_t dims = {l->n, out->c, out->h, out->w}; /* (N, C, OH, OW) logical */
    dnnl_memory_desc_t any;
    struct pool_geom g;
    l->priv = NULL;
    l->dst = l->diff_src = NULL;
    struct wpool_priv *p = calloc(1, sizeof *p);
    if (!p)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
    l->priv = p;
    if (alg == dnnl_pooling_max && (p->block = fast_block(l))) {
        dnnl_dims_t out_dims = {l->n, out->c, out->h, out->w};
        size_t pooled = (size_t)fast_planes(l, p->block) * out->h * out->w * p->block;
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&l->dst_md, 4, out_dims, dnnl_f32, fast_tag(l, p->block)));
        if (dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK ||
            (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
            goto fail;
        if (need_diff_src && !(p->where = malloc(pooled + 1))) {
            error_set(err, ERR_INTERNAL, "%s: out of memory", l->spec->name);
            goto fail;
        }
        return ERR_OK;
    }
    pool_geometry(l->spec, alg, &g);
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&any, 4, dims, dnnl_f32, dnnl_format_tag_any));
    if (pool_prims_create(&p->prims, &g, &l->src_md, &any, &l->dst_md, need_diff_src, d, err) != ERR_OK ||
        dnn_mem(&l->dst, &l->dst_md, d, NULL, err) != ERR_OK ||
        (need_diff_src && dnn_mem(&l->diff_src, &l->src_md, d, NULL, err) != ERR_OK))
        goto fail;
    if (l->relu_bwd_of_prev && alg != dnnl_pooling_max) {
        error_set(err, ERR_INTERNAL, "%s: only max pooling commutes with the ReLU before it", l->spec->name);
        goto fail;
    }
    if (l->relu_bwd_of_prev &&
        (layer_eltwise_bwd_create(&p->relu_bwd, dnnl_eltwise_relu_use_dst_for_bwd, &l->dst_md, d, err) != ERR_OK ||
         dnn_mem(&p->masked, &l->dst_md, d, NULL, err) != ERR_OK))
        goto fail;
    return ERR_OK;
fail:
    pool_destroy(l);
    return err ? err->code : ERR_INTERNAL;
}

static int max_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    return pool_create(l, d, need_diff_src, dnnl_pooling_max, err);
}

/* Keras 'same' average pooling divides by the number of real (non-padding) inputs in the window. */
static int avg_create(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err)
{
    return pool_create(l, d, need_diff_src, dnnl_pooling_avg_exclude_padding, err);
}

static int pool_forward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err)
{
    struct wpool_priv *p = l->priv;
    if (p->block) {
        /* Inference needs no record of the maxima (and a layer without backward has none). */
        fast_forward(l, p->block, dnn_ptr(src), dnn_ptr(l->dst), ctx->training ? p->where : NULL);
        return ERR_OK;
    }
    return pool_prims_forward(&p->prims, src, l->dst, ctx->dnn, err);
}

/* No parameters: only diff_src, and nothing at all for a layer created without it. With relu_bwd_of_prev the
 * previous layer's ReLU derivative comes first: a pooled output is > 0 exactly when the input it was taken
 * from is, so masking here gives what masking the 4x larger diff_src would. */
static int pool_backward(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                         struct error *err)
{
    struct wpool_priv *p = l->priv;
    (void)src;
    if (!l->diff_src)
        return ERR_OK;
    if (p->block) {
        fast_backward(l, p->block, dnn_ptr(diff_dst), l->relu_bwd_of_prev ? dnn_ptr(l->dst) : NULL, p->where,
                      dnn_ptr(l->diff_src));
        return ERR_OK;
    }
    if (p->relu_bwd) {
        dnnl_exec_arg_t args[] = {
            {DNNL_ARG_DST, l->dst}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, p->masked}};
        int rc = dnn_exec(p->relu_bwd, ctx->dnn, 3, args, err);
        if (rc != ERR_OK)
            return rc;
        diff_dst = p->masked;
    }
    return pool_prims_backward(&p->prims, diff_dst, l->diff_src, ctx->dnn, err);
}

static int pool_to_text(const struct layer_spec *s, char *buf, size_t size)
{
    const struct pool_cfg *c = &s->u.pool;
    return snprintf(buf, size, "%s(pool_size=(%d, %d), strides=(%d, %d), padding='%s')", s->ops->name, c->ph,
                    c->pw, c->sh, c->sw, paddings[c->same ? 1 : 0]);
}

const struct layer_ops layer_max_pooling2d = {
    .name = "MaxPooling2D",
    .keras_prefix = "max_pooling2d",
    .parse = pool_parse,
    .infer = pool_infer,
    .create = max_create,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
    .init_params = NULL,
    .to_text = pool_to_text,
};

const struct layer_ops layer_average_pooling2d = {
    .name = "AveragePooling2D",
    .keras_prefix = "average_pooling2d",
    .parse = pool_parse,
    .infer = pool_infer,
    .create = avg_create,
    .forward = pool_forward,
    .backward = pool_backward,
    .destroy = pool_destroy,
    .init_params = NULL,
    .to_text = pool_to_text,
};

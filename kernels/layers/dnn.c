/* dnn.c: engine/stream lifetime, memory and reorder helpers over the oneDNN C API. */
#include "dnn.h"

#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

void dnn_fail(struct error *err, const char *call, const char *file, int line, dnnl_status_t s)
{
    error_set(err, ERR_INTERNAL, "oneDNN: %s failed (%s:%d): %s", call, file, line, dnnl_status2str(s));
}

int dnn_init(struct dnn *d, struct error *err)
{
    memset(d, 0, sizeof *d);
    DNN_CHECK(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
    DNN_CHECK(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
    return ERR_OK;
fail:
    dnn_release(d);
    return err ? err->code : ERR_INTERNAL;
}

void dnn_release(struct dnn *d)
{
    if (d->stream)
        dnnl_stream_destroy(d->stream);
    if (d->engine)
        dnnl_engine_destroy(d->engine);
    memset(d, 0, sizeof *d);
}

int dnn_md_nhwc(dnnl_memory_desc_t *md, int n, int h, int w, int c, struct error *err)
{
    dnnl_dims_t dims = {n, c, h, w};
    DNN_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

int dnn_md_nc(dnnl_memory_desc_t *md, int n, int c, struct error *err)
{
    dnnl_dims_t dims = {n, c};
    DNN_CHECK(dnnl_memory_desc_init_by_tag(md, 2, dims, dnnl_f32, dnnl_nc));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

int dnn_mem(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, const struct dnn *d, void *handle,
            struct error *err)
{
    *mem = NULL;
    DNN_CHECK(dnnl_memory_create(mem, md, d->engine, handle ? handle : DNNL_MEMORY_ALLOCATE));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

float *dnn_ptr(dnnl_memory_t mem)
{
    void *p = NULL;
    if (!mem || dnnl_memory_get_data_handle(mem, &p) != dnnl_success)
        return NULL;
    return p;
}

const dnnl_memory_desc_t *dnn_md_of(dnnl_memory_t mem)
{
    const dnnl_memory_desc_t *md = NULL;
    if (dnnl_memory_get_memory_desc(mem, &md) != dnnl_success)
        return NULL;
    return md;
}

int dnn_reorder_init(struct dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                     const struct dnn *d, struct error *err)
{
    dnnl_primitive_desc_t pd = NULL;
    memset(r, 0, sizeof *r);
    if (dnnl_memory_desc_equal(from, to))
        return ERR_OK;
    DNN_CHECK(dnnl_reorder_primitive_desc_create(&pd, from, d->engine, to, d->engine, NULL));
    DNN_CHECK(dnnl_primitive_create(&r->prim, pd));
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    DNN_CHECK(dnnl_memory_create(&r->dst, to, d->engine, DNNL_MEMORY_ALLOCATE));
    return ERR_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    dnn_reorder_release(r);
    return err ? err->code : ERR_INTERNAL;
}

int dnn_reorder_into(struct dnn_reorder *r, dnnl_memory_t src, dnnl_memory_t dst, const struct dnn *d,
                     struct error *err)
{
    if (!r->prim)
        return ERR_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    return dnn_exec(r->prim, d, 2, args, err);
}

dnnl_memory_t dnn_reorder_run(struct dnn_reorder *r, dnnl_memory_t src, const struct dnn *d,
                              struct error *err)
{
    if (!r->prim)
        return src;
    if (dnn_reorder_into(r, src, r->dst, d, err) != ERR_OK)
        return NULL;
    return r->dst;
}

void dnn_reorder_release(struct dnn_reorder *r)
{
    if (r->prim)
        dnnl_primitive_destroy(r->prim);
    if (r->dst)
        dnnl_memory_destroy(r->dst);
    memset(r, 0, sizeof *r);
}

void dnn_destroy_all(const dnnl_primitive_t *prims, size_t n_prims, const dnnl_memory_t *mems, size_t n_mems)
{
    for (size_t i = 0; i < n_prims; i++)
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    for (size_t i = 0; i < n_mems; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
}

int dnn_exec(dnnl_primitive_t prim, const struct dnn *d, int nargs, const dnnl_exec_arg_t *args,
             struct error *err)
{
    DNN_CHECK(dnnl_primitive_execute(prim, d->stream, nargs, args));
    DNN_CHECK(dnnl_stream_wait(d->stream));
    return ERR_OK;
fail:
    return err ? err->code : ERR_INTERNAL;
}

/* Copies between mem and a plain buffer through a temporary reorder. */
static int copy_plain(dnnl_memory_t mem, const dnnl_memory_desc_t *plain_md, void *buf, int to_plain,
                      const struct dnn *d, struct error *err)
{
    dnnl_memory_t plain = NULL;
    struct dnn_reorder r = {0};
    const dnnl_memory_desc_t *md = dnn_md_of(mem);
    int rc = dnn_mem(&plain, plain_md, d, buf, err);
    if (rc != ERR_OK)
        return rc;
    if (to_plain) {
        rc = dnn_reorder_init(&r, md, plain_md, d, err);
        if (rc == ERR_OK && r.prim)
            rc = dnn_reorder_into(&r, mem, plain, d, err);
        else if (rc == ERR_OK)
            memcpy(buf, dnn_ptr(mem), dnnl_memory_desc_get_size(md));
    } else {
        rc = dnn_reorder_init(&r, plain_md, md, d, err);
        if (rc == ERR_OK && r.prim)
            rc = dnn_reorder_into(&r, plain, mem, d, err);
        else if (rc == ERR_OK)
            memcpy(dnn_ptr(mem), buf, dnnl_memory_desc_get_size(md));
    }
    dnn_reorder_release(&r);
    dnnl_memory_destroy(plain);
    return rc;
}

int dnn_read_plain(dnnl_memory_t mem, const dnnl_memory_desc_t *plain_md, float *out, const struct dnn *d,
                   struct error *err)
{
    return copy_plain(mem, plain_md, out, 1, d, err);
}

int dnn_write_plain(dnnl_memory_t mem, const dnnl_memory_desc_t *plain_md, const float *in,
                    const struct dnn *d, struct error *err)
{
    return copy_plain(mem, plain_md, (void *)in, 0, d, err);
}

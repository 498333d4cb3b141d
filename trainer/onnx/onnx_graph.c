/* onnx_graph.c: ONNX graphs built in an arena of protobuf-c messages, packed and written atomically. */
#include "onnx_graph.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_BLOCK ((size_t)64 << 10)
#define NODE_MAX_ATTRS 8

struct arena_block {
    struct arena_block *next;
    size_t used, size;
    max_align_t data[];
};

/* A growable array of message pointers inside the arena (the graph's nodes, initializers, inputs, outputs). */
struct ptr_list {
    void **items;
    size_t n, cap;
};

struct onnx_graph {
    struct arena_block *arena;
    int failed;
    Onnx__GraphProto proto;
    struct ptr_list nodes, inits, inputs, outputs;
};

static void *arena_alloc(struct onnx_graph *g, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    struct arena_block *b = g->arena;
    if (!b || b->size - b->used < size) {
        /* Big tensors get a block of their own; the current block stays the one small things go to. */
        size_t cap = size > ARENA_BLOCK / 4 ? size : ARENA_BLOCK;
        struct arena_block *nb = calloc(1, sizeof *nb + cap);
        if (!nb) {
            g->failed = 1;
            return NULL;
        }
        nb->size = cap;
        if (b && size > ARENA_BLOCK / 4) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            g->arena = nb;
        }
        b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

static char *arena_strdup(struct onnx_graph *g, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(g, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *onnx_graph_strf(struct onnx_graph *g, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        g->failed = 1;
        return NULL;
    }
    return arena_strdup(g, buf);
}

static void list_push(struct onnx_graph *g, struct ptr_list *l, void *item)
{
    if (!item)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void **items = arena_alloc(g, cap * sizeof *items);
        if (!items)
            return;
        if (l->n)
            memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = item;
}

struct onnx_graph *onnx_graph_create(const char *name)
{
    struct onnx_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->proto = (Onnx__GraphProto)ONNX__GRAPH_PROTO__INIT;
    g->proto.name = arena_strdup(g, name);
    return g;
}

void onnx_graph_destroy(struct onnx_graph *g)
{
    if (!g)
        return;
    for (struct arena_block *b = g->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(g);
}

Onnx__NodeProto *onnx_graph_node(struct onnx_graph *g, const char *op, const char *const *ins, int n_in,
                                 const char *out)
{
    Onnx__NodeProto *node = arena_alloc(g, sizeof *node);
    char **in_names = arena_alloc(g, sizeof(char *) * (size_t)(n_in > 0 ? n_in : 1));
    char **out_names = arena_alloc(g, sizeof(char *));
    Onnx__AttributeProto **attrs = arena_alloc(g, sizeof(*attrs) * NODE_MAX_ATTRS);
    if (!node || !in_names || !out_names || !attrs || !out)
        return NULL;
    *node = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    for (int i = 0; i < n_in; i++) {
        if (!ins[i]) {
            g->failed = 1;
            return NULL;
        }
        in_names[i] = (char *)ins[i];
    }
    out_names[0] = (char *)out;
    node->n_input = (size_t)n_in;
    node->input = in_names;
    node->n_output = 1;
    node->output = out_names;
    node->name = (char *)out;
    node->op_type = arena_strdup(g, op);
    node->attribute = attrs;
    list_push(g, &g->nodes, node);
    return node;
}

static Onnx__AttributeProto *new_attr(struct onnx_graph *g, Onnx__NodeProto *node, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (!node)
        return NULL;
    if (node->n_attribute == NODE_MAX_ATTRS) {
        g->failed = 1;
        return NULL;
    }
    Onnx__AttributeProto *a = arena_alloc(g, sizeof *a);
    if (!a)
        return NULL;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = arena_strdup(g, name);
    a->has_type = 1;
    a->type = type;
    node->attribute[node->n_attribute++] = a;
    return a;
}

void onnx_graph_attr_int(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = new_attr(g, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void onnx_graph_attr_ints(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, const int64_t *v, int n)
{
    Onnx__AttributeProto *a = new_attr(g, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = a ? arena_alloc(g, sizeof *copy * (size_t)n) : NULL;
    if (copy) {
        memcpy(copy, v, sizeof *copy * (size_t)n);
        a->n_ints = (size_t)n;
        a->ints = copy;
    }
}

void onnx_graph_attr_float(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, float v)
{
    Onnx__AttributeProto *a = new_attr(g, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

void onnx_graph_attr_string(struct onnx_graph *g, Onnx__NodeProto *node, const char *name, const char *v)
{
    Onnx__AttributeProto *a = new_attr(g, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    char *copy = a ? arena_strdup(g, v) : NULL;
    if (copy) {
        a->has_s = 1;
        a->s.len = strlen(copy);
        a->s.data = (uint8_t *)copy;
    }
}

/* A tensor header with its dims; the data is the caller's. */
static Onnx__TensorProto *new_tensor(struct onnx_graph *g, const char *name, int type, const int64_t *dims,
                                     int rank)
{
    Onnx__TensorProto *t = arena_alloc(g, sizeof *t);
    int64_t *d = arena_alloc(g, sizeof *d * (size_t)(rank > 0 ? rank : 1));
    if (!t || !d || !name)
        return NULL;
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    memcpy(d, dims, sizeof *d * (size_t)rank);
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->name = (char *)name;
    return t;
}

float *onnx_graph_init_f32(struct onnx_graph *g, const char *name, const int64_t *dims, int rank)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    Onnx__TensorProto *t = new_tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank);
    float *v = t ? arena_alloc(g, sizeof *v * (n ? n : 1)) : NULL;
    if (!v)
        return NULL;
    /* raw_data is little-endian by the ONNX spec, as the floats of the hosts this trainer runs on. */
    t->has_raw_data = 1;
    t->raw_data.len = sizeof *v * n;
    t->raw_data.data = (uint8_t *)v;
    list_push(g, &g->inits, t);
    return v;
}

void onnx_graph_init_i64(struct onnx_graph *g, const char *name, const int64_t *v, int n)
{
    int64_t dims[1] = {n};
    Onnx__TensorProto *t = new_tensor(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, 1);
    int64_t *data = t ? arena_alloc(g, sizeof *data * (size_t)n) : NULL;
    if (!data)
        return;
    memcpy(data, v, sizeof *data * (size_t)n);
    t->n_int64_data = (size_t)n;
    t->int64_data = data;
    list_push(g, &g->inits, t);
}

void onnx_graph_io(struct onnx_graph *g, int output, const char *name, int elem_type, const int64_t *dims, int rank)
{
    Onnx__ValueInfoProto *vi = arena_alloc(g, sizeof *vi);
    Onnx__TypeProto *tp = arena_alloc(g, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = arena_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *shape = arena_alloc(g, sizeof *shape);
    Onnx__TensorShapeProto__Dimension **dim = arena_alloc(g, sizeof *dim * (size_t)rank);
    if (!vi || !tp || !tt || !shape || !dim)
        return;
    *shape = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    for (int i = 0; i < rank; i++) {
        if (!(dim[i] = arena_alloc(g, sizeof *dim[i])))
            return;
        *dim[i] = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (dims[i] < 0) {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[i]->dim_param = "N";
        } else {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[i]->dim_value = dims[i];
        }
    }
    shape->n_dim = (size_t)rank;
    shape->dim = dim;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    tt->has_elem_type = 1;
    tt->elem_type = elem_type;
    tt->shape = shape;
    *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    vi->name = arena_strdup(g, name);
    vi->type = tp;
    list_push(g, output ? &g->outputs : &g->inputs, vi);
}

/* The ModelProto around the graph, in the arena. */
static Onnx__ModelProto *make_model(struct onnx_graph *g, const struct onnx_model_info *info)
{
    Onnx__ModelProto *m = arena_alloc(g, sizeof *m);
    Onnx__OperatorSetIdProto *op = arena_alloc(g, sizeof *op);
    Onnx__OperatorSetIdProto **ops = arena_alloc(g, sizeof *ops);
    Onnx__StringStringEntryProto **meta = arena_alloc(g, sizeof *meta * (size_t)(info->n_meta + 1));
    if (!m || !op || !ops || !meta)
        return NULL;
    *op = (Onnx__OperatorSetIdProto)ONNX__OPERATOR_SET_ID_PROTO__INIT;
    op->domain = "";
    op->has_version = 1;
    op->version = info->opset;
    ops[0] = op;
    for (int i = 0; i < info->n_meta; i++) {
        if (!(meta[i] = arena_alloc(g, sizeof *meta[i])))
            return NULL;
        *meta[i] = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
        meta[i]->key = (char *)info->meta_keys[i];
        meta[i]->value = (char *)info->meta_values[i];
    }
    g->proto.n_node = g->nodes.n;
    g->proto.node = (Onnx__NodeProto **)g->nodes.items;
    g->proto.n_initializer = g->inits.n;
    g->proto.initializer = (Onnx__TensorProto **)g->inits.items;
    g->proto.n_input = g->inputs.n;
    g->proto.input = (Onnx__ValueInfoProto **)g->inputs.items;
    g->proto.n_output = g->outputs.n;
    g->proto.output = (Onnx__ValueInfoProto **)g->outputs.items;
    *m = (Onnx__ModelProto)ONNX__MODEL_PROTO__INIT;
    m->has_ir_version = 1;
    m->ir_version = info->ir_version;
    m->n_opset_import = 1;
    m->opset_import = ops;
    m->producer_name = (char *)info->producer_name;
    m->producer_version = (char *)info->producer_version;
    m->doc_string = (char *)info->doc;
    m->graph = &g->proto;
    m->n_metadata_props = (size_t)info->n_meta;
    m->metadata_props = meta;
    return m;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Makes the rename durable; best effort (some file systems refuse fsync on a directory). */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* bytes to PATH.tmp.<pid>, fsync, close (NFS reports some errors only there), rename over PATH. */
static int write_atomic(const char *path, const uint8_t *bytes, size_t len, struct error *err)
{
    char tmp[4096];
    struct stat st;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return error_set(err, ERR_IO, "%s: cannot create: path too long", path);
    /* The rename would put a file in place of a device or a pipe (-o /dev/null, as root, replaces /dev/null). */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return error_set(err, ERR_IO, "%s: not a regular file: the export writes a new file and renames it there",
                         path);
    /* O_TRUNC, not O_EXCL: a temporary left by a killed run with the same pid must not block later writes. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const char *what = NULL;
    if (write_all(fd, bytes, len) < 0 || fsync(fd) < 0)
        what = "cannot write";
    int saved = errno;
    if (close(fd) < 0 && !what) {
        what = "cannot write";
        saved = errno;
    }
    if (!what && rename(tmp, path) != 0) {
        what = "cannot replace";
        saved = errno;
    }
    if (what) {
        unlink(tmp);
        return error_set(err, ERR_IO, "%s: %s: %s", path, what, strerror(saved));
    }
    sync_parent_dir(path);
    return ERR_OK;
}

int onnx_graph_write(struct onnx_graph *g, const struct onnx_model_info *info, const char *path,
                     struct error *err)
{
    Onnx__ModelProto *m = g->failed ? NULL : make_model(g, info);
    if (!m || g->failed)
        return error_set(err, ERR_INTERNAL, "%s: out of memory building the ONNX model", path);
    size_t len = onnx__model_proto__get_packed_size(m);
    /* A protobuf message cannot exceed 2 GiB: runtimes refuse it (the weights would go to external data). */
    if (len >= ((size_t)2 << 30))
        return error_set(err, ERR_INPUT, "%s: the model is %zu MiB, over protobuf's 2 GiB limit", path, len >> 20);
    uint8_t *bytes = malloc(len ? len : 1);
    if (!bytes)
        return error_set(err, ERR_INTERNAL, "%s: out of memory packing the ONNX model", path);
    onnx__model_proto__pack(m, bytes);
    int rc = write_atomic(path, bytes, len, err);
    free(bytes);
    return rc;
}

/* onnx_read.c: an ONNX file's summary (opsets, inputs, outputs, op types, weights, metadata) from protobuf-c. */
#include "onnx_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx.pb-c.h"

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static const char *elem_type_name(int t, char *buf, size_t size)
{
    static const char *const names[] = {
        [1] = "float",  [2] = "uint8",   [3] = "int8",    [4] = "uint16", [5] = "int16",   [6] = "int32",
        [7] = "int64",  [8] = "string",  [9] = "bool",    [10] = "float16", [11] = "double", [12] = "uint32",
        [13] = "uint64", [16] = "bfloat16",
    };
    if (t > 0 && t < (int)(sizeof names / sizeof names[0]) && names[t])
        return names[t];
    snprintf(buf, size, "type %d", t);
    return buf;
}

static void read_value(const Onnx__ValueInfoProto *vi, struct onnx_value *v)
{
    char buf[16];
    copy(v->name, sizeof v->name, vi->name);
    v->rank = -1;
    copy(v->elem_type, sizeof v->elem_type, "?");
    if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !vi->type->tensor_type)
        return;
    const Onnx__TypeProto__Tensor *t = vi->type->tensor_type;
    if (t->has_elem_type)
        copy(v->elem_type, sizeof v->elem_type, elem_type_name(t->elem_type, buf, sizeof buf));
    if (!t->shape)
        return;
    v->rank = (int)(t->shape->n_dim < INT32_MAX ? t->shape->n_dim : INT32_MAX);
    for (size_t i = 0; i < t->shape->n_dim && i < ONNX_INFO_MAX_DIMS; i++) {
        const Onnx__TensorShapeProto__Dimension *d = t->shape->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
            snprintf(v->dims[i], sizeof v->dims[i], "%lld", (long long)d->dim_value);
        else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param)
            copy(v->dims[i], sizeof v->dims[i], d->dim_param);
        else
            copy(v->dims[i], sizeof v->dims[i], "?");
    }
}

static int is_initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (name && g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
            return 1;
    return 0;
}

static void count_op(struct onnx_info *info, const char *op)
{
    char name[sizeof info->ops[0].op];
    copy(name, sizeof name, op); /* compared as kept */
    for (int i = 0; i < info->n_op_types && i < ONNX_INFO_MAX_OPS; i++)
        if (strcmp(info->ops[i].op, name) == 0) {
            info->ops[i].count++;
            return;
        }
    if (info->n_op_types < ONNX_INFO_MAX_OPS) {
        memcpy(info->ops[info->n_op_types].op, name, sizeof name);
        info->ops[info->n_op_types].count = 1;
    }
    info->n_op_types++;
}

/* Elements of a tensor, saturated (a hostile file may claim anything). */
static int64_t tensor_elements(const Onnx__TensorProto *t)
{
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0)
            return 0;
        if (t->dims[i] && n > INT64_MAX / t->dims[i])
            return INT64_MAX;
        n *= t->dims[i];
    }
    return n;
}

static void read_graph(const Onnx__GraphProto *g, struct onnx_info *info)
{
    for (size_t i = 0; i < g->n_input; i++) {
        /* Before IR 4, initializers were listed among the inputs too: they are weights, not inputs. */
        if (is_initializer(g, g->input[i]->name))
            continue;
        if (info->n_inputs < ONNX_INFO_MAX_IO)
            read_value(g->input[i], &info->inputs[info->n_inputs]);
        info->n_inputs++;
    }
    for (size_t i = 0; i < g->n_output; i++) {
        if (info->n_outputs < ONNX_INFO_MAX_IO)
            read_value(g->output[i], &info->outputs[info->n_outputs]);
        info->n_outputs++;
    }
    info->n_nodes = g->n_node < INT32_MAX ? (int)g->n_node : INT32_MAX;
    for (size_t i = 0; i < g->n_node; i++)
        count_op(info, g->node[i]->op_type);
    info->n_initializers = g->n_initializer < INT32_MAX ? (int)g->n_initializer : INT32_MAX;
    for (size_t i = 0; i < g->n_initializer; i++) {
        int64_t n = tensor_elements(g->initializer[i]);
        info->n_weights = n > INT64_MAX - info->n_weights ? INT64_MAX : info->n_weights + n;
    }
}

/* protobuf-c unpacks nested messages by recursion, with no depth limit: a few MB of nested subgraphs would
 * overflow the stack. Real models nest a few levels (a subgraph is graph > node > attribute > graph). */
#define ONNX_MAX_DEPTH 96

static int read_varint(const uint8_t *b, size_t end, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *pos < end; shift += 7) {
        uint8_t byte = b[(*pos)++];
        *v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return 0;
    }
    return -1;
}

/* Walks the wire format with the messages' descriptors and an explicit stack, without unpacking: 0 when the
 * messages nest at most ONNX_MAX_DEPTH deep (malformed bytes are left to the unpacker to refuse), -1 beyond. */
static int depth_ok(const uint8_t *b, size_t len)
{
    struct frame {
        const ProtobufCMessageDescriptor *desc;
        size_t end;
    } stack[ONNX_MAX_DEPTH];
    int top = 0;
    size_t pos = 0;
    stack[0] = (struct frame){&onnx__model_proto__descriptor, len};
    while (top >= 0) {
        if (pos == stack[top].end) {
            top--;
            continue;
        }
        uint64_t key, n;
        if (read_varint(b, stack[top].end, &pos, &key))
            return 0;
        switch (key & 7) {
        case 0: if (read_varint(b, stack[top].end, &pos, &n)) return 0; break;
        case 1: if (stack[top].end - pos < 8) return 0; pos += 8; break;
        case 5: if (stack[top].end - pos < 4) return 0; pos += 4; break;
        case 2: {
            if (read_varint(b, stack[top].end, &pos, &n) || n > stack[top].end - pos)
                return 0;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(stack[top].desc, (unsigned)(key >> 3))
                                       : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (top + 1 == ONNX_MAX_DEPTH)
                    return -1;
                stack[++top] = (struct frame){f->descriptor, pos + (size_t)n};
            } else {
                pos += (size_t)n;
            }
            break;
        }
        default: return 0; /* groups or junk: the unpacker refuses them */
        }
    }
    return 0;
}

int onnx_info_parse(const uint8_t *bytes, size_t len, const char *file, struct onnx_info *info, struct error *err)
{
    memset(info, 0, sizeof *info);
    if (depth_ok(bytes, len))
        return error_set(err, ERR_INPUT, "%s: not an ONNX model this reader takes (messages nested over %d deep)",
                         file, ONNX_MAX_DEPTH);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, bytes);
    if (!m)
        return error_set(err, ERR_INPUT, "%s: not an ONNX model (not a protobuf ModelProto)", file);
    if (!m->has_ir_version || !m->graph) {
        const char *missing = m->has_ir_version ? "graph" : "IR version";
        onnx__model_proto__free_unpacked(m, NULL);
        return error_set(err, ERR_INPUT, "%s: not an ONNX model (no %s)", file, missing);
    }
    info->ir_version = m->ir_version;
    copy(info->producer, sizeof info->producer, m->producer_name);
    copy(info->producer_version, sizeof info->producer_version, m->producer_version);
    info->n_opsets = m->n_opset_import < INT32_MAX ? (int)m->n_opset_import : INT32_MAX;
    for (size_t i = 0; i < m->n_opset_import && i < ONNX_INFO_MAX_OPSETS; i++) {
        copy(info->opsets[i].domain, sizeof info->opsets[i].domain, m->opset_import[i]->domain);
        info->opsets[i].version = m->opset_import[i]->version;
    }
    info->n_meta = m->n_metadata_props < INT32_MAX ? (int)m->n_metadata_props : INT32_MAX;
    for (size_t i = 0; i < m->n_metadata_props && i < ONNX_INFO_MAX_META; i++) {
        copy(info->meta[i].key, sizeof info->meta[i].key, m->metadata_props[i]->key);
        copy(info->meta[i].value, sizeof info->meta[i].value, m->metadata_props[i]->value);
    }
    read_graph(m->graph, info);
    onnx__model_proto__free_unpacked(m, NULL);
    return ERR_OK;
}

int onnx_info_read(const char *path, struct onnx_info *info, struct error *err)
{
    struct stat st;
    /* stat before open: opening a pipe would wait for a writer. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return error_set(err, ERR_INPUT, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(err, ERR_INPUT, "%s: cannot read: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return error_set(err, ERR_INPUT, "%s: not a regular file", path);
    }
    if (st.st_size >= ((off_t)2 << 30)) {
        fclose(f);
        return error_set(err, ERR_INPUT, "%s: not an ONNX model (over protobuf's 2 GiB limit)", path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    }
    int rc = fread(buf, 1, len, f) == len ? onnx_info_parse(buf, len, path, info, err)
                                          : error_set(err, ERR_INPUT, "%s: cannot read: %s", path,
                                                      ferror(f) ? strerror(errno) : "file shrank while read");
    free(buf);
    fclose(f);
    return rc;
}

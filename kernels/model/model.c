/* model.c: a model as a graph of layer specs: shape inference in topological order, the edges' checks, the layers
 * that reach the output, names, the canonical text, and loading a model by preset name or file. */
#include "model.h"
#include "model_syntax.h"
#include "optim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A model file is a few lines; anything bigger is almost certainly not one (a dataset passed by mistake). */
#define MODEL_FILE_MAX (64 * 1024)

/* ------------------------------------------------------------------------------------------ model_infer */

/* "FILE:LINE: NAME: what" for a whole layer (no column: the problem is the layer, not one token). */
static int layer_error(const char *file, const struct layer_spec *spec, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int layer_error(const char *file, const struct layer_spec *spec, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (spec->line > 0)
        return error_set(err, ERR_INPUT, "%s:%d: %s: %s", file, spec->line, spec->name, what);
    return error_set(err, ERR_INPUT, "%s: %s: %s", file, spec->name, what);
}

static int is_softmax(const struct layer_spec *spec)
{
    if (spec->ops == &layer_dense)
        return spec->u.dense.act == ACT_SOFTMAX;
    if (spec->ops == &layer_activation)
        return spec->u.act.act == ACT_SOFTMAX;
    if (spec->ops == &layer_conv2d)
        return spec->u.conv.act == ACT_SOFTMAX;
    return 0;
}

/* The Input's shape comes from its configuration (for an Input kind without an infer of its own). */
static int infer_input(const char *file, struct layer_spec *spec, struct error *err)
{
    const struct input_cfg *c = &spec->u.input;
    if (c->h < 1 || c->w < 1 || c->c < 1)
        return layer_error(file, spec, err, "bad input shape (%d, %d, %d)", c->h, c->w, c->c);
    spec->out = (struct shape){.rank = 3, .h = c->h, .w = c->w, .c = c->c};
    spec->in = spec->out;
    spec->n_params = 0;
    return ERR_OK;
}

/* What a kind's message says after the "line L: NAME: " it starts with (the kinds cannot know the file). */
static const char *strip_layer_prefix(const struct layer_spec *spec, const char *msg)
{
    int used = 0;
    if (sscanf(msg, "line %*d: %n", &used) == 0 && used > 0)
        msg += used;
    size_t len = strlen(spec->name);
    if (len && strncmp(msg, spec->name, len) == 0 && msg[len] == ':' && msg[len + 1] == ' ')
        msg += len + 2;
    return msg;
}

/* Runs the kind's infer and restates its message as "FILE:LINE: NAME: what". */
static int infer_layer(const char *file, struct layer_spec *spec, struct error *err)
{
    struct error inner = {0};
    spec->n_params = 0;
    if (!spec->ops->infer) {
        spec->out = spec->in;
        return ERR_OK;
    }
    int rc = spec->ops->infer(spec, &inner);
    if (rc == ERR_OK)
        return ERR_OK;
    layer_error(file, spec, err, "%s", strip_layer_prefix(spec, inner.msg));
    if (err)
        err->code = rc;
    return rc;
}

/* An augmentation layer passes no gradient: no layer with weights may feed it, directly or through others (its
 * need_diff_src, which model_infer sets from exactly that). */
static int check_augmentation(const char *file, const struct model *m, struct error *err)
{
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i].need_diff_src && layer_is_augmentation(m->layers[i].ops))
            return layer_error(file, &m->layers[i], err, "%s has no gradient: put it before any layer with weights "
                               "(right after the Input)", m->layers[i].ops->name);
    return ERR_OK;
}

/* The network fuses the final softmax with the loss: it must be last, and the output a vector of classes. */
static int check_output(const char *file, struct model *m, struct error *err)
{
    for (int i = 0; i < m->n_layers - 1; i++)
        if (is_softmax(&m->layers[i]))
            return layer_error(file, &m->layers[i], err, "softmax is only supported as the last layer");
    struct layer_spec *last = &m->layers[m->n_layers - 1];
    if (!is_softmax(last))
        return layer_error(file, last, err,
                           "the model must end in softmax (Dense(N, activation='softmax') or "
                           "Activation('softmax')): the loss is categorical cross-entropy");
    if (last->out.rank != 1)
        return layer_error(file, last, err,
                           "the output must be a vector of class scores, not %dx%dx%d: add Flatten() or "
                           "GlobalAveragePooling2D(), then Dense(classes, activation='softmax')",
                           last->out.h, last->out.w, last->out.c);
    if (last->out.c < 2)
        return layer_error(file, last, err, "softmax over %d class: at least 2 are needed", last->out.c);
    last->softmax_in_loss = 1;
    m->n_classes = last->out.c;
    return ERR_OK;
}

/* Parameter tensors take consecutive places in the slab, in layer order then params[] order. */
static void assign_offsets(struct model *m)
{
    size_t offset = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i].n_params; j++) {
            m->layers[i].params[j].offset = offset;
            offset += m->layers[i].params[j].size;
        }
    m->n_params = offset;
}

/* A layer's name as a tensor name in functional text: itself when it is a Python identifier, else t<index>. */
static void tensor_name(const struct layer_spec *spec, char *buf, size_t size)
{
    const char *n = spec->name;
    int ident = syntax_ident_start(n[0]);
    for (const char *c = n; *c && ident; c++)
        ident = syntax_ident_char(*c);
    if (ident && strcmp(n, "Model") != 0)
        snprintf(buf, size, "%s", n);
    else
        snprintf(buf, size, "t%d", spec->index);
}

/* One statement of the canonical text into buf: the kind's call with every argument explicit, name='...' when
 * the file named the layer, and in functional form the assignment and the inputs. Returns what snprintf does. */
static int statement_text(const struct model *m, const struct layer_spec *spec, char *buf, size_t size)
{
    char call[1024], var[64];
    int n = spec->ops->to_text(spec, call, sizeof call);
    if (n < 0 || (size_t)n + 64 + sizeof spec->name >= sizeof call || n < 2)
        return -1;
    if (spec->explicit_name)
        snprintf(call + n - 1, sizeof call - (size_t)n + 1, "%sname='%s')", call[n - 2] == '(' ? "" : ", ", spec->name);
    if (!m->functional)
        return snprintf(buf, size, "%s", call);
    tensor_name(spec, var, sizeof var);
    int used = snprintf(buf, size, "%s = %s", var, call);
    for (int k = 0; k < spec->n_inputs && used >= 0 && (size_t)used < size; k++) {
        tensor_name(&m->layers[spec->inputs[k]], var, sizeof var);
        used += snprintf(buf + used, size - (size_t)used, "%s%s", k == 0 ? (spec->n_inputs > 1 ? "([" : "(") : ", ", var);
    }
    if (spec->n_inputs > 0 && used >= 0 && (size_t)used < size)
        used += snprintf(buf + used, size - (size_t)used, "%s", spec->n_inputs > 1 ? "])" : ")");
    return used;
}

/* m->text: every layer's canonical statement, so that model_parse(m->text) rebuilds the same model. */
static int model_text(struct model *m, const char *file, struct error *err)
{
    size_t used = 0;
    m->text[0] = '\0';
    for (int i = 0; i < m->n_layers; i++) {
        size_t room = sizeof m->text - used;
        int n = statement_text(m, &m->layers[i], m->text + used, room);
        if (n < 0 || (size_t)n + 2 > room)
            return error_set(err, ERR_INPUT, "%s: model text longer than %zu bytes", file, sizeof m->text - 1);
        used += (size_t)n;
        m->text[used++] = '\n';
        m->text[used] = '\0';
    }
    return ERR_OK;
}

int model_keep_ancestors(struct model *m, int output, const char *file, struct error *err)
{
    char keep[MODEL_MAX_LAYERS] = {0};
    int renum[MODEL_MAX_LAYERS], n = 0, dropped = 0;
    if (output < 0 || output >= m->n_layers)
        return error_set(err, ERR_INPUT, "%s: the model's output is not one of its layers", file);
    keep[output] = 1;
    for (int i = output; i >= 0; i--)
        for (int k = 0; keep[i] && k < m->layers[i].n_inputs; k++)
            if (m->layers[i].inputs[k] >= 0 && m->layers[i].inputs[k] < i)
                keep[m->layers[i].inputs[k]] = 1;
    m->warning[0] = '\0';
    for (int i = 0; i < m->n_layers; i++) {
        if (!keep[i]) {
            size_t used = strlen(m->warning);
            if (dropped++ == 0)
                snprintf(m->warning, sizeof m->warning, "%s: nothing reads the output of %s", file, m->layers[i].name);
            else if (used + 40 < sizeof m->warning)
                snprintf(m->warning + used, sizeof m->warning - used, ", %s", m->layers[i].name);
            continue;
        }
        renum[i] = n;
        if (n != i)
            m->layers[n] = m->layers[i];
        for (int k = 0; k < m->layers[n].n_inputs; k++)
            m->layers[n].inputs[k] = renum[m->layers[n].inputs[k]];
        m->layers[n].index = n;
        n++;
    }
    if (dropped) {
        size_t used = strlen(m->warning);
        snprintf(m->warning + used, sizeof m->warning - used, ": %s dropped (Keras drops %s too)",
                 dropped > 1 ? "they are" : "it is", dropped > 1 ? "them" : "it");
    }
    m->n_layers = n;
    if (!keep[0])
        return error_set(err, ERR_INPUT, "%s: the output does not depend on the Input", file);
    return ERR_OK;
}

/* Index of a layer's kind in layer_kinds (for per-kind counters). */
static int kind_index(const struct layer_spec *spec)
{
    int k = 0;
    while (layer_kinds[k] && layer_kinds[k] != spec->ops && k < 63)
        k++;
    return k;
}

/* Keras 2 names a layer it is not given a name for by its kind and a per-kind counter that only such layers
 * advance: conv2d_1, conv2d_2, dense_1 ... in model order. */
void model_auto_names(struct model *m)
{
    int counts[64] = {0};
    for (int i = 0; i < m->n_layers; i++) {
        struct layer_spec *spec = &m->layers[i];
        if (!spec->explicit_name)
            snprintf(spec->name, sizeof spec->name, "%s_%d", spec->ops->keras_prefix, ++counts[kind_index(spec)]);
    }
}

void model_mark_explicit_names(struct model *m)
{
    int counts[64] = {0};
    char name[sizeof m->layers[0].name + 16];
    for (int i = 0; i < m->n_layers; i++) {
        struct layer_spec *spec = &m->layers[i];
        int k = kind_index(spec);
        snprintf(name, sizeof name, "%s_%d", spec->ops->keras_prefix, counts[k] + 1);
        spec->explicit_name = strcmp(name, spec->name) != 0;
        counts[k] += !spec->explicit_name;
    }
}

int model_is_chain(const struct model *m)
{
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i].n_inputs > 1 || (m->layers[i].n_inputs == 1 && m->layers[i].inputs[0] != i - 1))
            return 0;
    return 1;
}

/* The input shapes of spec from its edges; a spec without edges reads the layer before it (a chain). */
static int link_inputs(const char *file, struct model *m, struct layer_spec *spec, struct error *err)
{
    if (spec->n_inputs == 0) {
        spec->n_inputs = 1;
        spec->inputs[0] = spec->index - 1;
    }
    if (spec->n_inputs > LAYER_MAX_INPUTS)
        return layer_error(file, spec, err, "more than %d inputs", LAYER_MAX_INPUTS);
    if (!spec->ops->multi_input && spec->n_inputs != 1)
        return layer_error(file, spec, err, "%s takes one input, not %d", spec->ops->name, spec->n_inputs);
    if (spec->ops->multi_input && spec->n_inputs < 2)
        return layer_error(file, spec, err, "%s needs at least two inputs, not %d", spec->ops->name, spec->n_inputs);
    for (int k = 0; k < spec->n_inputs; k++) {
        if (spec->inputs[k] < 0 || spec->inputs[k] >= spec->index)
            return layer_error(file, spec, err, "input %d is not a layer before it", k + 1);
        spec->ins[k] = m->layers[spec->inputs[k]].out;
        m->layers[spec->inputs[k]].n_readers++;
        if (m->layers[spec->inputs[k]].need_diff_src || m->layers[spec->inputs[k]].n_params > 0)
            spec->need_diff_src = 1;
    }
    spec->in = spec->ins[0];
    return ERR_OK;
}

int model_infer(struct model *m, const char *file, struct error *err)
{
    file = file ? file : "model";
    if (m->n_layers < 1 || m->n_layers > MODEL_MAX_LAYERS)
        return error_set(err, ERR_INPUT, "%s: a model has 1 to %d layers, not %d", file, MODEL_MAX_LAYERS,
                         m->n_layers);
    if (m->layers[0].ops != &layer_input)
        return layer_error(file, &m->layers[0], err, "the first layer must be Input(shape=(H, W, C))");
    int rc;
    m->n_classes = 0;
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].n_readers = 0;
        m->layers[i].need_diff_src = 0;
    }
    for (int i = 0; i < m->n_layers; i++) {
        struct layer_spec *spec = &m->layers[i];
        spec->index = i;
        spec->softmax_in_loss = 0;
        if (i > 0 && spec->ops == &layer_input)
            return layer_error(file, spec, err, "Input is only allowed as the first layer");
        if (i > 0 && (rc = link_inputs(file, m, spec, err)))
            return rc;
        rc = i == 0 && !spec->ops->infer ? infer_input(file, spec, err) : infer_layer(file, spec, err);
        if (rc)
            return rc;
    }
    for (int i = 0; i < m->n_layers - 1; i++)
        if (m->layers[i].n_readers == 0)
            return layer_error(file, &m->layers[i], err, "nothing reads its output: a model has one output, the "
                                                         "last layer");
    if ((rc = check_augmentation(file, m, err)))
        return rc;
    if ((rc = check_output(file, m, err)))
        return rc;
    if (!model_is_chain(m))
        m->functional = 1;
    assign_offsets(m);
    return model_text(m, file, err);
}

/* ------------------------------------------------------------------------------------------ model_load */

/* A bare word that is neither a preset nor a file was probably meant as a preset. */
static int looks_like_preset(const char *name) { return !strchr(name, '/') && !strchr(name, '.'); }

/* Refuses what cannot be a model file: too big, HDF5 (a Keras model goes elsewhere), binary. */
static int check_model_bytes(const char *path, const char *buf, size_t n, struct error *err)
{
    static const char hdf5_magic[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    if (n > MODEL_FILE_MAX)
        return error_set(err, ERR_INPUT, "%s: larger than %d KiB: not a model file", path, MODEL_FILE_MAX / 1024);
    if (n >= sizeof hdf5_magic && memcmp(buf, hdf5_magic, sizeof hdf5_magic) == 0)
        return error_set(err, ERR_INPUT, "%s: an HDF5 file, not a model text file", path);
    if (memchr(buf, '\0', n))
        return error_set(err, ERR_INPUT, "%s: a binary file, not a model text file", path);
    return ERR_OK;
}

/* The whole file as a NUL-terminated string (*text, caller frees). */
static int read_model_file(const char *path, char **text, struct error *err)
{
    int rc;
    size_t n = 0;
    char *buf = malloc(MODEL_FILE_MAX + 2);
    FILE *f = fopen(path, "rb");
    *text = NULL;
    if (!buf || !f)
        goto fail;
    n = fread(buf, 1, MODEL_FILE_MAX + 1, f);
    if (ferror(f))
        goto fail;
    fclose(f);
    buf[n] = '\0';
    if ((rc = check_model_bytes(path, buf, n, err))) {
        free(buf);
        return rc;
    }
    *text = buf;
    return ERR_OK;
fail:
    rc = errno;
    if (f)
        fclose(f);
    free(buf);
    return error_set(err, ERR_INPUT, "%s: cannot read: %s%s", path, strerror(rc),
                     rc == ENOENT && looks_like_preset(path) ? " (presets: cifar10-cnn, fashion-cnn, gap-cnn, resnet20, fashion-resnet)" : "");
}

int model_load(struct model *m, const char *name_or_path, struct error *err)
{
    const char *preset = model_preset_text(name_or_path);
    if (preset)
        return model_parse(m, preset, name_or_path, err);
    char *text;
    int rc = read_model_file(name_or_path, &text, err);
    if (rc != ERR_OK)
        return rc;
    rc = model_parse(m, text, name_or_path, err);
    free(text);
    return rc;
}

size_t model_moving_params(const struct model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i].n_params; j++)
            if (m->layers[i].params[j].moving)
                n += m->layers[i].params[j].size;
    return n;
}

int model_mark_moving(const struct model *m, struct optim *o, struct error *err)
{
    int rc;
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i].n_params; j++) {
            const struct param_info *p = &m->layers[i].params[j];
            if (p->moving && (rc = optim_add_moving(o, p->offset, p->offset + p->size, p->momentum, err)))
                return rc;
        }
    return ERR_OK;
}

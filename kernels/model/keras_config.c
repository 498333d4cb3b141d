/* keras_config.c: a whole model as Keras 2 `model_config` JSON, both ways: Sequential for a chain, Model/Functional
 * with inbound_nodes for a graph; each layer's config through its row in keras_layers.c. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keras_config.h"
#include "keras_layers.h"

/* ---- model -> JSON, whole model ------------------------------------------------------------------------- */

/* batch_input_shape: [null, H, W, C] for images, [null, C] for feature vectors. */
static json_t *batch_input_shape(const struct shape *in)
{
    if (in->rank == 1)
        return json_pack("[nI]", (json_int_t)in->c);
    return json_pack("[nIII]", (json_int_t)in->h, (json_int_t)in->w, (json_int_t)in->c);
}

static json_t *layer_to_json(const struct model *m, int i)
{
    const struct layer_spec *s = &m->layers[i];
    const struct keras_kind *k = keras_kind_by_ops(s->ops);
    json_t *cfg = json_object();
    if (!k || !cfg)
        goto fail;
    int bad = keras_set(cfg, "name", json_string(s->name));
    bad |= keras_set(cfg, "trainable", json_true());
    /* Keras 2.1 Sequential keeps the input shape on the first layer, not on a separate InputLayer. */
    if (i == 1 && !m->functional) {
        bad |= keras_set(cfg, "batch_input_shape", batch_input_shape(&m->layers[0].out));
        bad |= keras_set(cfg, "dtype", json_string("float32"));
    }
    if (bad || k->to_json(s, cfg))
        goto fail;
    return json_pack("{s:s, s:o}", "class_name", s->ops->name, "config", cfg);
fail:
    json_decref(cfg);
    return NULL;
}

/* Reals as Python writes them where possible: 15 significant digits give "0.3" rather than
 * "0.29999999999999999", and are exact for every value typed in decimal with up to 15 digits; any other
 * value gets 17 digits, so the JSON always reads back to the same double. */
static int needs_17_digits(json_t *v)
{
    if (json_is_real(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.15g", json_real_value(v));
        return strtod(buf, NULL) != json_real_value(v);
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (needs_17_digits(json_array_get(v, i)))
                return 1;
        return 0;
    }
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x) {
        if (needs_17_digits(x))
            return 1;
    }
    return 0;
}

/* A functional model's layer entry: the layer as in a Sequential list, plus its name and the one node that
 * calls it on its inputs ([[name, 0, 0, {}], ...]). layers[0] is the InputLayer. */
static json_t *graph_layer_to_json(const struct model *m, int i)
{
    const struct layer_spec *s = &m->layers[i];
    json_t *e, *node = json_array();
    if (i == 0)
        e = json_pack("{s:s, s:{s:o, s:s, s:b, s:b, s:s}, s:s, s:[]}", "class_name", "InputLayer", "config",
                      "batch_input_shape", batch_input_shape(&s->out), "dtype", "float32", "sparse", 0, "ragged", 0,
                      "name", s->name, "name", s->name, "inbound_nodes");
    else
        e = layer_to_json(m, i);
    if (!e || !node)
        goto fail;
    for (int k = 0; k < s->n_inputs; k++)
        if (json_array_append_new(node, json_pack("[si i{}]", m->layers[s->inputs[k]].name, 0, 0)))
            goto fail;
    if (keras_set(e, "name", json_string(s->name)) ||
        keras_set(e, "inbound_nodes", i == 0 ? json_array() : json_pack("[o]", node)))
        goto fail;
    if (i == 0)
        json_decref(node);
    return e;
fail:
    json_decref(node);
    json_decref(e);
    return NULL;
}

/* Class "Functional" (tf.keras 2.4 and later; Keras 2.2 wrote "Model" for the same layout). */
static json_t *graph_to_json(const struct model *m)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    for (int i = 0; i < m->n_layers; i++)
        if (json_array_append_new(list, graph_layer_to_json(m, i))) {
            json_decref(list);
            return NULL;
        }
    return json_pack("{s:s, s:{s:s, s:o, s:[[sii]], s:[[sii]]}}", "class_name", "Functional", "config", "name", "model",
                     "layers", list, "input_layers", m->layers[0].name, 0, 0, "output_layers",
                     m->layers[m->n_layers - 1].name, 0, 0);
}

char *keras_config_from_model(const struct model *m)
{
    json_t *list = json_array(), *root = NULL;
    char *out = NULL;
    if (!list)
        return NULL;
    if (m->functional) {
        root = graph_to_json(m);
        goto dump;
    }
    for (int i = 1; i < m->n_layers; i++)
        if (json_array_append_new(list, layer_to_json(m, i)))
            goto done;
    /* "Sequential" with a list as config: what Keras 2.1 and 2.2.0-2.2.2 write and every Keras 2 reads. */
    root = json_pack("{s:s, s:O}", "class_name", "Sequential", "config", list);
dump:
    if (root) {
        int digits = needs_17_digits(root) ? 17 : 15;
        out = json_dumps(root, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(digits));
        json_decref(root);
    }
done:
    json_decref(list);
    return out;
}

/* ---- JSON -> model -------------------------------------------------------------------------------------- */

/* The layer list of the Keras 2.1-2.2.2 form (config is the list) or of 2.2.3+ ({"name", "layers"}). */
static int layer_list(json_t *root, json_t **out, const char *file, struct error *err)
{
    const char *cls = json_string_value(json_object_get(root, "class_name"));
    json_t *cfg = json_object_get(root, "config");
    if (!cls)
        return error_set(err, ERR_INPUT, "%s: model_config: no class_name", file);
    if (strcmp(cls, "Sequential") != 0)
        return error_set(err, ERR_INPUT, "%s: model_config: model class '%s' is not supported (Sequential, Model "
                         "and Functional are)", file, cls);
    if (json_is_object(cfg))
        cfg = json_object_get(cfg, "layers");
    if (!json_is_array(cfg) || json_array_size(cfg) == 0)
        return error_set(err, ERR_INPUT, "%s: model_config: no layers", file);
    *out = cfg;
    return ERR_OK;
}

/* Names index the weights in /model_weights: they must be usable as one HDF5 path component. */
static int take_name(struct layer_spec *s, json_t *cfg, int index, const char *file, struct error *err)
{
    const char *name = json_string_value(json_object_get(cfg, "name"));
    if (!name) {
        snprintf(s->name, sizeof s->name, "%s_%d", s->ops->keras_prefix, index);
        return ERR_OK;
    }
    if (!*name || strlen(name) >= sizeof s->name || strchr(name, '/') || strcmp(name, ".") == 0)
        return error_set(err, ERR_INPUT, "%s: model_config: layer name '%s' is not supported", file, name);
    snprintf(s->name, sizeof s->name, "%s", name);
    return ERR_OK;
}

/* Builds layers[0] (the Input) from a batch_input_shape [null, dims...], through Input's own parse(). */
static int make_input(struct model *m, json_t *bis, const char *name, const char *file, struct error *err)
{
    struct layer_spec *s = &m->layers[0];
    char where[512];
    snprintf(where, sizeof where, "%s: model_config", file);
    struct args a = {.file = where, .layer = "Input", .n = 1};
    size_t n = json_array_size(bis);
    char text[128];
    int rc;
    keras_value_text(bis, text, sizeof text);
    if (n < 2 || n > 4)
        return error_set(err, ERR_INPUT, "%s: model_config: input shape %s is not supported", file, text);
    a.a[0] = (struct arg){.key = "shape", .type = ARG_TUPLE, .n_tuple = (int)n - 1};
    for (size_t i = 1; i < n; i++) {
        json_t *d = json_array_get(bis, i);
        if (!json_is_integer(d) || json_integer_value(d) <= 0)
            return error_set(err, ERR_INPUT,
                             "%s: model_config: input shape %s is not supported (needs fixed sizes)", file, text);
        a.a[0].tuple[i - 1] = (long)json_integer_value(d);
    }
    memset(s, 0, sizeof *s);
    s->ops = &layer_input;
    snprintf(s->name, sizeof s->name, "%s", name && *name && strlen(name) < sizeof s->name ? name : "input_1");
    if ((rc = layer_input.parse(s, &a, err)) || (rc = args_check_unused(&a, err)))
        return rc;
    m->n_layers = 1;
    return ERR_OK;
}

/* Appends one layer from its {"class_name", "config"} entry. */
static int add_layer(struct model *m, json_t *entry, const char *file, struct error *err)
{
    json_t *cfg = json_object_get(entry, "config");
    const char *cls = json_string_value(json_object_get(entry, "class_name"));
    const char *name = json_string_value(json_object_get(cfg, "name"));
    const struct keras_kind *k = keras_kind_by_class(cls);
    if (!k || !json_is_object(cfg))
        return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' (%s) is not supported", file,
                         name ? name : "?", cls ? cls : "no class_name");
    if (m->n_layers >= MODEL_MAX_LAYERS)
        return error_set(err, ERR_INPUT, "%s: model_config: more than %d layers", file, MODEL_MAX_LAYERS - 1);
    struct layer_spec *s = &m->layers[m->n_layers];
    memset(s, 0, sizeof *s);
    s->ops = k->ops;
    s->index = m->n_layers;
    int rc = take_name(s, cfg, m->n_layers, file, err);
    if (rc)
        return rc;
    char where[sizeof s->name + 512];
    snprintf(where, sizeof where, "%s: model_config: %s", file, s->name);
    /* Messages from parse() read "FILE: model_config: conv2d_3: Conv2D: ...": the layer is named. */
    struct args a = {.file = where};
    snprintf(a.layer, sizeof a.layer, "%s", k->ops->name);
    if ((rc = k->from_json(cfg, &a, where, err)) || (rc = k->ops->parse(s, &a, err)) ||
        (rc = args_check_unused(&a, err)))
        return rc;
    m->n_layers++;
    return ERR_OK;
}

/* The input comes from a leading InputLayer or from the first layer's batch_input_shape. */
static int add_layers(struct model *m, json_t *list, const char *file, struct error *err)
{
    size_t first = 0;
    json_t *e0 = json_array_get(list, 0), *c0 = json_object_get(e0, "config");
    const char *cls0 = json_string_value(json_object_get(e0, "class_name"));
    json_t *bis = json_object_get(c0, "batch_input_shape");
    const char *input_name = NULL;
    int rc;
    if (cls0 && strcmp(cls0, "InputLayer") == 0) {
        input_name = json_string_value(json_object_get(c0, "name"));
        first = 1;
    }
    if (!json_is_array(bis))
        return error_set(err, ERR_INPUT, "%s: model_config: the first layer has no batch_input_shape", file);
    if ((rc = make_input(m, bis, input_name, file, err)))
        return rc;
    for (size_t i = first; i < json_array_size(list); i++)
        if ((rc = add_layer(m, json_array_get(list, i), file, err)))
            return rc;
    if (m->n_layers < 2)
        return error_set(err, ERR_INPUT, "%s: model_config: no layers after the input", file);
    return ERR_OK;
}

/* ---- JSON -> model, functional ------------------------------------------------------------------------- */

/* The name of a functional layer entry (its own, else its config's). */
static const char *entry_name(json_t *e)
{
    const char *n = json_string_value(json_object_get(e, "name"));
    return n ? n : json_string_value(json_object_get(json_object_get(e, "config"), "name"));
}

static int entry_index(json_t *list, const char *name)
{
    for (size_t i = 0; name && i < json_array_size(list); i++) {
        const char *n = entry_name(json_array_get(list, i));
        if (n && strcmp(n, name) == 0)
            return (int)i;
    }
    return -1;
}

/* The layers that entry e is called on: Keras 2's inbound_nodes, one node of [name, node, tensor(, kwargs)]
 * entries. A layer called on several nodes (a shared layer) or on another layer's second output is refused. */
static int entry_inputs(json_t *list, json_t *e, int *in, int *n, const char *file, struct error *err)
{
    json_t *nodes = json_object_get(e, "inbound_nodes"), *node;
    const char *name = entry_name(e);
    *n = 0;
    if (!json_is_array(nodes) || json_array_size(nodes) == 0)
        return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' is not connected (no inbound_nodes)", file,
                         name ? name : "?");
    if (json_array_size(nodes) > 1)
        return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' is called %zu times (shared layers are not "
                         "supported)", file, name, json_array_size(nodes));
    node = json_array_get(nodes, 0);
    if (json_is_object(node))
        return error_set(err, ERR_INPUT, "%s: model_config: layer '%s': Keras 3 inbound_nodes are not supported "
                         "(save with Keras 2 or tf.keras)", file, name);
    if (!json_is_array(node) || json_array_size(node) == 0 || json_array_size(node) > LAYER_MAX_INPUTS)
        return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' has malformed inbound_nodes", file, name);
    for (size_t k = 0; k < json_array_size(node); k++) {
        json_t *t = json_array_get(node, k);
        const char *from = json_string_value(json_array_get(t, 0));
        json_t *ni = json_array_get(t, 1), *ti = json_array_get(t, 2);
        if (!from || !json_is_integer(ni) || !json_is_integer(ti))
            return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' has malformed inbound_nodes", file, name);
        if (json_integer_value(ni) != 0 || json_integer_value(ti) != 0)
            return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' reads node %lld, tensor %lld of '%s' "
                             "(shared layers and layers of several outputs are not supported)", file, name,
                             (long long)json_integer_value(ni), (long long)json_integer_value(ti), from);
        if ((in[k] = entry_index(list, from)) < 0)
            return error_set(err, ERR_INPUT, "%s: model_config: layer '%s' reads '%s', which is not a layer of the "
                             "model", file, name, from);
        (*n)++;
    }
    return ERR_OK;
}

/* The index of the one [name, 0, 0] of input_layers or output_layers; -1 (err set) if it is not that. */
static int end_layer(json_t *cfg, const char *key, json_t *list, const char *file, struct error *err)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_array(json_array_get(v, 0)))
        v = json_array_get(v, 0);
    if (!json_is_array(v) || !json_is_string(json_array_get(v, 0))) {
        error_set(err, ERR_INPUT, "%s: model_config: %s must name one layer (a model with %zu %s is not supported)",
                  file, key, json_is_array(v) ? json_array_size(v) : 0,
                  strcmp(key, "output_layers") == 0 ? "outputs" : "inputs");
        return -1;
    }
    int i = entry_index(list, json_string_value(json_array_get(v, 0)));
    if (i < 0) {
        error_set(err, ERR_INPUT, "%s: model_config: %s names '%s', which is not a layer of the model", file, key,
                  json_string_value(json_array_get(v, 0)));
        return -1;
    }
    return i;
}

/* Visits entry i after its inputs (depth first), appending it to order[]; state: 0 new, 1 on the path, 2 done. */
static int visit(json_t *list, int i, char *state, int *order, int *n, const char *file, struct error *err)
{
    int in[LAYER_MAX_INPUTS], n_in = 0, rc;
    if (state[i] == 2)
        return ERR_OK;
    if (state[i] == 1)
        return error_set(err, ERR_INPUT, "%s: model_config: a cycle through layer '%s'", file,
                         entry_name(json_array_get(list, (size_t)i)));
    state[i] = 1;
    json_t *e = json_array_get(list, (size_t)i);
    const char *cls = json_string_value(json_object_get(e, "class_name"));
    if (!(cls && strcmp(cls, "InputLayer") == 0) && (rc = entry_inputs(list, e, in, &n_in, file, err)))
        return rc;
    for (int k = 0; k < n_in; k++)
        if ((rc = visit(list, in[k], state, order, n, file, err)))
            return rc;
    state[i] = 2;
    order[(*n)++] = i;
    return ERR_OK;
}

/* A Keras 2.2 "Model" or tf.keras "Functional" config: its layers in an order where inputs come first (Keras
 * lists them so; a file that does not is sorted, and a cycle refused), edges from inbound_nodes. Layers whose
 * output does not reach the output layer are dropped with a warning, as Keras drops them. */
static int add_graph(struct model *m, json_t *cfg, const char *file, struct error *err)
{
    json_t *list = json_object_get(cfg, "layers");
    size_t n = json_array_size(list);
    int input, output, rc, order_n = 0;
    if (!json_is_array(list) || n < 2)
        return error_set(err, ERR_INPUT, "%s: model_config: no layers", file);
    if (n > MODEL_MAX_LAYERS)
        return error_set(err, ERR_INPUT, "%s: model_config: more than %d layers", file, MODEL_MAX_LAYERS);
    if ((input = end_layer(cfg, "input_layers", list, file, err)) < 0 ||
        (output = end_layer(cfg, "output_layers", list, file, err)) < 0)
        return err->code;
    json_t *in_entry = json_array_get(list, (size_t)input), *in_cfg = json_object_get(in_entry, "config");
    const char *in_cls = json_string_value(json_object_get(in_entry, "class_name"));
    json_t *bis = json_object_get(in_cfg, "batch_input_shape");
    if (!bis)
        bis = json_object_get(in_cfg, "batch_shape");
    if (!in_cls || strcmp(in_cls, "InputLayer") != 0 || !json_is_array(bis))
        return error_set(err, ERR_INPUT, "%s: model_config: input_layers does not name an InputLayer with a shape", file);
    for (size_t i = 0; i < n; i++) {
        const char *cls = json_string_value(json_object_get(json_array_get(list, i), "class_name"));
        if (cls && strcmp(cls, "InputLayer") == 0 && (int)i != input)
            return error_set(err, ERR_INPUT, "%s: model_config: a model with several inputs is not supported", file);
    }
    char state[MODEL_MAX_LAYERS] = {0};
    int order[MODEL_MAX_LAYERS], pos[MODEL_MAX_LAYERS];
    /* Every layer is placed (an unread one is then dropped by model_keep_ancestors, with its warning). */
    for (size_t i = 0; i < n; i++)
        if ((rc = visit(list, (int)i, state, order, &order_n, file, err)))
            return rc;
    if (order[0] != input) {
        /* the Input first: it reads nothing, so moving it to the front keeps inputs before readers */
        int at = 0;
        while (order[at] != input)
            at++;
        memmove(order + 1, order, sizeof(int) * (size_t)at);
        order[0] = input;
    }
    if ((rc = make_input(m, bis, entry_name(in_entry), file, err)))
        return rc;
    pos[input] = 0;
    for (int j = 1; j < order_n; j++) {
        json_t *e = json_array_get(list, (size_t)order[j]);
        int in[LAYER_MAX_INPUTS], n_in;
        if ((rc = entry_inputs(list, e, in, &n_in, file, err)) || (rc = add_layer(m, e, file, err)))
            return rc;
        struct layer_spec *s = &m->layers[m->n_layers - 1];
        s->n_inputs = n_in;
        for (int k = 0; k < n_in; k++)
            s->inputs[k] = pos[in[k]];
        pos[order[j]] = m->n_layers - 1;
    }
    m->functional = 1;
    return model_keep_ancestors(m, pos[output], file, err);
}

int keras_config_to_model(const char *json, const char *file, struct model *m, struct error *err)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr), *list = NULL;
    int rc;
    memset(m, 0, sizeof *m);
    if (!root)
        return error_set(err, ERR_INPUT, "%s: model_config: invalid JSON at line %d, column %d: %s", file,
                         jerr.line, jerr.column, jerr.text);
    const char *cls = json_string_value(json_object_get(root, "class_name"));
    json_t *cfg = json_object_get(root, "config");
    if (cls && (strcmp(cls, "Model") == 0 || strcmp(cls, "Functional") == 0))
        rc = json_is_object(cfg) ? add_graph(m, cfg, file, err)
                                 : error_set(err, ERR_INPUT, "%s: model_config: %s without a config", file, cls);
    else if ((rc = layer_list(root, &list, file, err)) == ERR_OK)
        rc = add_layers(m, list, file, err);
    /* model_infer also writes m->text, the canonical model file of what was read. */
    if (rc == ERR_OK) {
        model_mark_explicit_names(m);
        rc = model_infer(m, file, err);
    }
    json_decref(root);
    return rc;
}

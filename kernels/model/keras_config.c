/* keras_config.c: a model as Keras 2 `model_config` JSON, both ways (Sequential, Model/Functional), one table row per
 * layer kind. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keras_config.h"

/* Keras model_config JSON for one kind: to_json adds the kind's keys after name/trainable; from_json rejects
 * options the trainer cannot honour and fills `a` with the arguments the kind's parse() reads, so a Keras
 * file and a model file go through the same parser. `where` is "FILE: model_config: LAYER" for messages. */
struct keras_kind {
    const struct layer_ops *ops;
    int (*to_json)(const struct layer_spec *s, json_t *cfg);
    int (*from_json)(json_t *cfg, struct args *a, const char *where, struct error *err);
};

/* ---- model -> JSON -------------------------------------------------------------------------------------- */

/* json_object_set_new takes ownership even on failure, so a chain of calls needs only one check. */
static int set(json_t *obj, const char *key, json_t *value)
{
    return json_object_set_new(obj, key, value) ? -1 : 0;
}

static json_t *pair(long a, long b)
{
    return json_pack("[II]", (json_int_t)a, (json_int_t)b);
}

static json_t *activation(enum activation act)
{
    return json_string(activation_names[act]);
}

/* The VarianceScaling settings of each initializer (Keras 2 serialises glorot_* and he_* as VarianceScaling). */
static const struct {
    double scale;
    const char *mode, *distribution;
} variance_scaling[] = {
    [INIT_GLOROT_UNIFORM] = {1.0, "fan_avg", "uniform"},
    [INIT_GLOROT_NORMAL] = {1.0, "fan_avg", "truncated_normal"},
    [INIT_HE_NORMAL] = {2.0, "fan_in", "truncated_normal"},
    [INIT_HE_UNIFORM] = {2.0, "fan_in", "uniform"},
};

/* Keras 2.1's form of a regularizer, which every later Keras reads: L1L2 with both factors; null for none. */
static json_t *regularizer(const struct regularizer *r)
{
    if (r->l1 == 0 && r->l2 == 0)
        return json_null();
    return json_pack("{s:s, s:{s:f, s:f}}", "class_name", "L1L2", "config", "l1", r->l1, "l2", r->l2);
}

static int initializers_and_nulls(json_t *c, int init, const struct regularizer *kernel_reg)
{
    int bad = set(c, "kernel_initializer",
                  json_pack("{s:s, s:{s:f, s:s, s:s, s:n}}", "class_name", "VarianceScaling", "config", "scale",
                            variance_scaling[init].scale, "mode", variance_scaling[init].mode, "distribution",
                            variance_scaling[init].distribution, "seed"));
    bad |= set(c, "bias_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= set(c, "kernel_regularizer", regularizer(kernel_reg));
    static const char *const nulls[] = {"bias_regularizer", "activity_regularizer", "kernel_constraint",
                                        "bias_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        bad |= set(c, nulls[i], json_null());
    return bad;
}

static int conv_to_json(const struct layer_spec *s, json_t *c)
{
    const struct conv_cfg *k = &s->u.conv;
    int bad = set(c, "filters", json_integer(k->filters));
    bad |= set(c, "kernel_size", pair(k->kh, k->kw));
    bad |= set(c, "strides", pair(k->sh, k->sw));
    bad |= set(c, "padding", json_string(k->same ? "same" : "valid"));
    bad |= set(c, "data_format", json_string("channels_last"));
    bad |= set(c, "dilation_rate", pair(1, 1));
    bad |= set(c, "activation", activation(k->act));
    bad |= set(c, "use_bias", json_boolean(k->use_bias));
    return bad | initializers_and_nulls(c, k->kernel_init, &k->kernel_reg);
}

static int pool_to_json(const struct layer_spec *s, json_t *c)
{
    const struct pool_cfg *p = &s->u.pool;
    int bad = set(c, "pool_size", pair(p->ph, p->pw));
    bad |= set(c, "padding", json_string(p->same ? "same" : "valid"));
    bad |= set(c, "strides", pair(p->sh, p->sw));
    return bad | set(c, "data_format", json_string("channels_last"));
}

static int global_pool_to_json(const struct layer_spec *s, json_t *c)
{
    (void)s;
    return set(c, "data_format", json_string("channels_last"));
}

/* Keras before 2.1.6 has no data_format on Flatten and would refuse the key: leave it out (the default is
 * channels_last). */
static int flatten_to_json(const struct layer_spec *s, json_t *c)
{
    (void)s;
    (void)c;
    return 0;
}

static int dense_to_json(const struct layer_spec *s, json_t *c)
{
    const struct dense_cfg *d = &s->u.dense;
    int bad = set(c, "units", json_integer(d->units));
    bad |= set(c, "activation", activation(d->act));
    bad |= set(c, "use_bias", json_boolean(d->use_bias));
    return bad | initializers_and_nulls(c, d->kernel_init, &d->kernel_reg);
}

static int dropout_to_json(const struct layer_spec *s, json_t *c)
{
    int bad = set(c, "rate", json_real(s->u.dropout.rate));
    bad |= set(c, "noise_shape", json_null());
    return bad | set(c, "seed", json_null());
}

static int activation_to_json(const struct layer_spec *s, json_t *c)
{
    return set(c, "activation", activation(s->u.act.act));
}

static int bn_to_json(const struct layer_spec *s, json_t *c)
{
    const struct batchnorm_cfg *b = &s->u.bn;
    int bad = set(c, "axis", json_integer(b->axis));
    bad |= set(c, "momentum", json_real(b->momentum));
    bad |= set(c, "epsilon", json_real(b->epsilon));
    bad |= set(c, "center", json_boolean(b->center));
    bad |= set(c, "scale", json_boolean(b->scale));
    bad |= set(c, "beta_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= set(c, "gamma_initializer", json_pack("{s:s, s:{}}", "class_name", "Ones", "config"));
    bad |= set(c, "moving_mean_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= set(c, "moving_variance_initializer", json_pack("{s:s, s:{}}", "class_name", "Ones", "config"));
    static const char *const nulls[] = {"beta_regularizer", "gamma_regularizer", "beta_constraint",
                                        "gamma_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        bad |= set(c, nulls[i], json_null());
    return bad;
}

static int merge_to_json(const struct layer_spec *s, json_t *c)
{
    (void)s;
    (void)c;
    return 0;
}

static int concat_to_json(const struct layer_spec *s, json_t *c)
{
    return set(c, "axis", json_integer(s->u.concat.axis));
}

static int zero_pad_to_json(const struct layer_spec *s, json_t *c)
{
    const struct zero_pad_cfg *p = &s->u.pad;
    int bad = set(c, "padding", json_pack("[[ii][ii]]", p->top, p->bottom, p->left, p->right));
    return bad | set(c, "data_format", json_string("channels_last"));
}

/* The augmentation layers write what tf.keras 2.x writes: dtype after name/trainable, then their own keys in
 * get_config's order; a factor as it was given (a number, or a pair as a list). */
static json_t *aug_factor(double lo, double hi, int form)
{
    if (form == 0)
        return json_null();
    if (form == 1)
        return json_real(hi);
    return json_pack("[ff]", lo, hi);
}

static int aug_common(json_t *cfg)
{
    return json_object_get(cfg, "dtype") ? 0 : set(cfg, "dtype", json_string("float32"));
}

static json_t *aug_seed(const struct augment_cfg *c)
{
    return c->has_seed ? json_integer(c->seed) : json_null();
}

static int aug_fill_to_json(const struct augment_cfg *c, json_t *cfg)
{
    static const char *const fills[] = {"reflect", "wrap", "constant", "nearest"};
    int bad = set(cfg, "fill_mode", json_string(fills[c->fill]));
    bad |= set(cfg, "fill_value", json_real(c->fill_value));
    bad |= set(cfg, "interpolation", json_string(c->interp == AUG_INTERP_NEAREST ? "nearest" : "bilinear"));
    return bad | set(cfg, "seed", aug_seed(c));
}

static int random_flip_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    const char *mode = c->flip_h && c->flip_v ? "horizontal_and_vertical" : c->flip_h ? "horizontal" : "vertical";
    int bad = aug_common(cfg);
    bad |= set(cfg, "mode", json_string(mode));
    return bad | set(cfg, "seed", aug_seed(c));
}

/* RandomTranslation and RandomZoom write the same keys. */
static int aug_two_factors_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= set(cfg, "height_factor", aug_factor(c->h_lo, c->h_hi, c->h_form));
    bad |= set(cfg, "width_factor", aug_factor(c->w_lo, c->w_hi, c->w_form));
    return bad | aug_fill_to_json(c, cfg);
}

static int random_rotation_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= set(cfg, "factor", aug_factor(c->h_lo, c->h_hi, c->h_form));
    return bad | aug_fill_to_json(c, cfg);
}

static int random_crop_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= set(cfg, "height", json_integer(c->height));
    bad |= set(cfg, "width", json_integer(c->width));
    return bad | set(cfg, "seed", aug_seed(c));
}

/* ---- JSON -> layer arguments ---------------------------------------------------------------------------- */

/* A JSON value as a Keras user wrote it: [2, 2] as (2, 2), strings quoted, null as None. */
static void value_text(json_t *v, char *buf, size_t size)
{
    if (json_is_array(v)) {
        size_t len = snprintf(buf, size, "(");
        for (size_t i = 0; i < json_array_size(v) && len < size; i++) {
            json_t *x = json_array_get(v, i);
            if (json_is_real(x))
                len += snprintf(buf + len, size - len, "%s%g", i ? ", " : "", json_real_value(x));
            else
                len += snprintf(buf + len, size - len, "%s%lld", i ? ", " : "",
                                json_is_integer(x) ? (long long)json_integer_value(x) : -1LL);
        }
        if (len < size)
            snprintf(buf + len, size - len, ")");
    } else if (json_is_string(v)) {
        snprintf(buf, size, "'%s'", json_string_value(v));
    } else if (json_is_null(v)) {
        snprintf(buf, size, "None");
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(buf, size, "%s", s ? s : "?");
        free(s);
    }
}

/* "FILE: model_config: LAYER: KEY VALUE is not supported". */
static int unsupported(struct error *err, const char *where, const char *key, json_t *value)
{
    char text[128];
    value_text(value, text, sizeof text);
    return error_set(err, ERR_INPUT, "%s: %s %s is not supported", where, key, text);
}

/* Converts one JSON value into a keyword argument of the model-file syntax. */
static int json_to_arg(const char *key, json_t *v, struct arg *x, const char *where, struct error *err)
{
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "%s", key);
    if (json_is_integer(v)) {
        x->type = ARG_INT;
        x->num = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        x->type = ARG_FLOAT;
        x->num = json_real_value(v);
    } else if (json_is_boolean(v)) {
        x->type = ARG_BOOL;
        x->num = json_is_true(v);
    } else if (json_is_null(v)) {
        x->type = ARG_NONE;
    } else if (json_is_string(v) && strlen(json_string_value(v)) < sizeof x->str) {
        x->type = ARG_STRING;
        snprintf(x->str, sizeof x->str, "%s", json_string_value(v));
    } else if (json_is_array(v) && json_array_size(v) >= 1 && json_array_size(v) <= ARG_TUPLE_MAX) {
        x->type = ARG_TUPLE;
        x->n_tuple = (int)json_array_size(v);
        for (int i = 0; i < x->n_tuple; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_number(e))
                goto bad;
            x->tuple_float |= json_is_real(e); /* a factor pair of the augmentation layers */
            x->tuple_num[i] = json_number_value(e);
            x->tuple[i] = json_is_integer(e) ? (long)json_integer_value(e) : 0;
        }
    } else {
        goto bad;
    }
    return ERR_OK;
bad:
    return unsupported(err, where, key, v);
}

/* Passes the listed keys that the config has on to the layer's parse(). */
static int copy_args(json_t *cfg, const char *const *keys, struct args *a, const char *where, struct error *err)
{
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(cfg, keys[i]);
        if (!v)
            continue;
        int rc = json_to_arg(keys[i], v, &a->a[a->n], where, err);
        if (rc)
            return rc;
        a->n++;
    }
    return ERR_OK;
}

/* A key that may be absent or equal to `ok` (a JSON value) and nothing else. */
static int require(json_t *cfg, const char *key, json_t *ok, const char *where, struct error *err)
{
    json_t *v = json_object_get(cfg, key);
    int same = !v || json_is_null(v) || json_equal(v, ok);
    json_decref(ok);
    return same ? ERR_OK : unsupported(err, where, key, v);
}

static int check_channels_last(json_t *cfg, const char *where, struct error *err)
{
    return require(cfg, "data_format", json_string("channels_last"), where, err);
}

/* The activations the layers implement; anything else (elu, selu, a custom object) is refused here, with
 * the layer named, rather than by parse() with only the class name. */
static int check_activation(json_t *cfg, const char *where, struct error *err)
{
    json_t *v = json_object_get(cfg, "activation");
    if (!v)
        return ERR_OK;
    for (int i = 0; json_is_string(v) && activation_names[i]; i++)
        if (strcmp(json_string_value(v), activation_names[i]) == 0)
            return ERR_OK;
    return unsupported(err, where, "activation", v);
}

/* kernel_initializer as one of the names the layers take: VarianceScaling by its settings, or the class names
 * Keras also writes (GlorotUniform, he_normal ...). Others (RandomNormal, Orthogonal ...) only matter when training
 * from scratch; they are read as Keras's default, glorot_uniform. */
static int initializer_from_json(json_t *cfg, struct args *a)
{
    json_t *v = json_object_get(cfg, "kernel_initializer"), *c = json_object_get(v, "config");
    const char *cls = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "class_name"));
    static const char *const aliases[][2] = {{"GlorotUniform", "glorot_uniform"}, {"GlorotNormal", "glorot_normal"},
                                             {"HeNormal", "he_normal"}, {"HeUniform", "he_uniform"}};
    const char *name = NULL;
    if (!cls)
        return ERR_OK;
    for (int i = 0; initializer_names[i]; i++)
        if (strcmp(cls, initializer_names[i]) == 0)
            name = initializer_names[i];
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(cls, aliases[i][0]) == 0)
            name = aliases[i][1];
    if (strcmp(cls, "VarianceScaling") == 0) {
        const char *mode = json_string_value(json_object_get(c, "mode"));
        const char *dist = json_string_value(json_object_get(c, "distribution"));
        double scale = json_number_value(json_object_get(c, "scale"));
        for (int i = 0; mode && dist && i <= INIT_HE_UNIFORM; i++)
            if (scale == variance_scaling[i].scale && strcmp(mode, variance_scaling[i].mode) == 0 &&
                (strcmp(dist, variance_scaling[i].distribution) == 0 ||
                 (strcmp(dist, "normal") == 0 && strcmp(variance_scaling[i].distribution, "truncated_normal") == 0)))
                name = initializer_names[i];
    }
    if (!name || strcmp(name, "glorot_uniform") == 0)
        return ERR_OK;
    struct arg *x = &a->a[a->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "kernel_initializer");
    x->type = ARG_STRING;
    snprintf(x->str, sizeof x->str, "%s", name);
    return ERR_OK;
}

/* kernel_regularizer as the call the layer's parse() reads: {"class_name": "L1L2", "config": {"l1": .., "l2": ..}}
 * (Keras 2), "L2"/"L1"/"L1L2" (tf.keras 2, Keras 3, which may add "module" and "registered_name") become
 * L1L2(l1=.., l2=..), L2(l2=..), L1(l1=..). Bias and activity regularizers are refused: the trainer applies
 * kernel penalties only. */
static int regularizer_args(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    int rc = require(cfg, "bias_regularizer", json_null(), where, err);
    if (!rc)
        rc = require(cfg, "activity_regularizer", json_null(), where, err);
    json_t *v = json_object_get(cfg, "kernel_regularizer");
    if (rc || !v || json_is_null(v))
        return rc;
    const char *cls = json_string_value(json_object_get(v, "class_name"));
    json_t *rcfg = json_object_get(v, "config");
    static const char *const classes[] = {"L1L2", "L1", "L2", NULL};
    int k = -1;
    for (int i = 0; cls && classes[i]; i++)
        if (strcmp(cls, classes[i]) == 0)
            k = i;
    if (k < 0 || !json_is_object(rcfg) || a->n == ARGS_MAX)
        return unsupported(err, where, "kernel_regularizer", v);
    struct arg *x = &a->a[a->n];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "kernel_regularizer");
    snprintf(x->str, sizeof x->str, "%s", cls);
    x->type = ARG_CALL;
    const char *key;
    json_t *f;
    json_object_foreach(rcfg, key, f) {
        if (x->n_call == ARG_CALL_MAX || !json_is_number(f) || strlen(key) >= sizeof x->call[0].key)
            return unsupported(err, where, "kernel_regularizer", v);
        snprintf(x->call[x->n_call].key, sizeof x->call[0].key, "%s", key);
        x->call[x->n_call++].num = json_number_value(f);
    }
    a->n++;
    return ERR_OK;
}

static int conv_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"filters", "kernel_size", "strides", "padding", "activation",
                                       "use_bias", NULL};
    json_t *dilation = json_object_get(cfg, "dilation_rate");
    int rc = check_channels_last(cfg, where, err);
    if (!rc && json_is_integer(dilation))
        rc = require(cfg, "dilation_rate", json_integer(1), where, err);
    else if (!rc)
        rc = require(cfg, "dilation_rate", pair(1, 1), where, err);
    if (!rc)
        rc = check_activation(cfg, where, err);
    if (!rc)
        rc = copy_args(cfg, keys, a, where, err);
    if (!rc)
        rc = initializer_from_json(cfg, a);
    return rc ? rc : regularizer_args(cfg, a, where, err);
}

static int pool_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"pool_size", "strides", "padding", NULL};
    int rc = check_channels_last(cfg, where, err);
    return rc ? rc : copy_args(cfg, keys, a, where, err);
}

/* Later Keras versions added keepdims: only its default (False) has the shape the trainer produces. */
static int global_pool_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    (void)a;
    int rc = check_channels_last(cfg, where, err);
    return rc ? rc : require(cfg, "keepdims", json_false(), where, err);
}

static int flatten_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    (void)a;
    return check_channels_last(cfg, where, err);
}

static int dense_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"units", "activation", "use_bias", NULL};
    int rc = check_activation(cfg, where, err);
    if (!rc)
        rc = copy_args(cfg, keys, a, where, err);
    if (!rc)
        rc = initializer_from_json(cfg, a);
    return rc ? rc : regularizer_args(cfg, a, where, err);
}

static int dropout_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"rate", NULL};
    int rc = require(cfg, "noise_shape", json_null(), where, err);
    return rc ? rc : copy_args(cfg, keys, a, where, err);
}

static int activation_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"activation", NULL};
    int rc = check_activation(cfg, where, err);
    return rc ? rc : copy_args(cfg, keys, a, where, err);
}

/* tf.keras writes axis as a list ([3]); standalone Keras as an integer. A renormalized or virtual-batch
 * BatchNormalization (tf.keras options) computes something else: refused. Keras 3's `synchronized` needs no
 * check: the trainer's statistics are always the global batch's. */
static int bn_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"momentum", "epsilon", "center", "scale", NULL};
    json_t *axis = json_object_get(cfg, "axis");
    int rc = require(cfg, "renorm", json_false(), where, err);
    if (!rc)
        rc = require(cfg, "virtual_batch_size", json_null(), where, err);
    if (rc)
        return rc;
    if (json_is_array(axis) && json_array_size(axis) == 1)
        axis = json_array_get(axis, 0);
    if (axis) {
        if ((rc = json_to_arg("axis", axis, &a->a[a->n], where, err)))
            return rc;
        a->n++;
    }
    return copy_args(cfg, keys, a, where, err);
}

static int merge_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    (void)cfg, (void)a, (void)where, (void)err;
    return ERR_OK;
}

static int concat_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"axis", NULL};
    return copy_args(cfg, keys, a, where, err);
}

/* padding: 1, [1, 2] or [[top, bottom], [left, right]] (what Keras writes). */
static int zero_pad_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    json_t *p = json_object_get(cfg, "padding");
    int rc = check_channels_last(cfg, where, err);
    if (rc || !p)
        return rc;
    if (json_is_array(p) && json_array_size(p) == 2 && json_is_array(json_array_get(p, 0))) {
        struct arg *x = &a->a[a->n];
        memset(x, 0, sizeof *x);
        snprintf(x->key, sizeof x->key, "padding");
        x->type = ARG_TUPLE;
        x->nested = 1;
        for (int i = 0; i < 2; i++) {
            json_t *pr = json_array_get(p, i);
            if (!json_is_array(pr) || json_array_size(pr) != 2 || !json_is_integer(json_array_get(pr, 0)) ||
                !json_is_integer(json_array_get(pr, 1)))
                return unsupported(err, where, "padding", p);
            x->tuple[x->n_tuple++] = (long)json_integer_value(json_array_get(pr, 0));
            x->tuple[x->n_tuple++] = (long)json_integer_value(json_array_get(pr, 1));
        }
        a->n++;
        return ERR_OK;
    }
    static const char *const keys[] = {"padding", NULL};
    return copy_args(cfg, keys, a, where, err);
}

/* The augmentation layers' keys are their model-file keywords; Keras 2.2-2.3 wrote no fill_value (0 then). */
static int aug_from_json(json_t *cfg, struct args *a, const char *where, struct error *err)
{
    static const char *const keys[] = {"mode", "height_factor", "width_factor", "factor", "fill_mode", "fill_value",
                                       "interpolation", "height", "width", "seed", NULL};
    return copy_args(cfg, keys, a, where, err);
}

static const struct keras_kind kinds[] = {
    {&layer_add, merge_to_json, merge_from_json},
    {&layer_concatenate, concat_to_json, concat_from_json},
    {&layer_zero_padding2d, zero_pad_to_json, zero_pad_from_json},
    {&layer_conv2d, conv_to_json, conv_from_json},
    {&layer_max_pooling2d, pool_to_json, pool_from_json},
    {&layer_average_pooling2d, pool_to_json, pool_from_json},
    {&layer_global_average_pooling2d, global_pool_to_json, global_pool_from_json},
    {&layer_global_max_pooling2d, global_pool_to_json, global_pool_from_json},
    {&layer_flatten, flatten_to_json, flatten_from_json},
    {&layer_dense, dense_to_json, dense_from_json},
    {&layer_dropout, dropout_to_json, dropout_from_json},
    {&layer_activation, activation_to_json, activation_from_json},
    {&layer_batchnorm, bn_to_json, bn_from_json},
    {&layer_random_flip, random_flip_to_json, aug_from_json},
    {&layer_random_translation, aug_two_factors_to_json, aug_from_json},
    {&layer_random_rotation, random_rotation_to_json, aug_from_json},
    {&layer_random_zoom, aug_two_factors_to_json, aug_from_json},
    {&layer_random_crop, random_crop_to_json, aug_from_json},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

static const struct keras_kind *kind_by_ops(const struct layer_ops *ops)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].ops == ops)
            return &kinds[i];
    return NULL;
}

/* Keras class names are the model-file names (layer_ops.name). */
static const struct keras_kind *kind_by_class(const char *class_name)
{
    for (size_t i = 0; class_name && i < N_KINDS; i++)
        if (strcmp(kinds[i].ops->name, class_name) == 0)
            return &kinds[i];
    return NULL;
}

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
    const struct keras_kind *k = kind_by_ops(s->ops);
    json_t *cfg = json_object();
    if (!k || !cfg)
        goto fail;
    int bad = set(cfg, "name", json_string(s->name));
    bad |= set(cfg, "trainable", json_true());
    /* Keras 2.1 Sequential keeps the input shape on the first layer, not on a separate InputLayer. */
    if (i == 1 && !m->functional) {
        bad |= set(cfg, "batch_input_shape", batch_input_shape(&m->layers[0].out));
        bad |= set(cfg, "dtype", json_string("float32"));
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
    if (set(e, "name", json_string(s->name)) ||
        set(e, "inbound_nodes", i == 0 ? json_array() : json_pack("[o]", node)))
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
    value_text(bis, text, sizeof text);
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
    const struct keras_kind *k = kind_by_class(cls);
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

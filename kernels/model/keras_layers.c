/* keras_layers.c: each layer kind's Keras `config` both ways: what Keras 2 writes for it, and what the kind's
 * parse() takes from it (options the trainer cannot honour are refused with the layer named). One table row a kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keras_layers.h"

/* ---- model -> JSON -------------------------------------------------------------------------------------- */

/* json_object_set_new takes ownership even on failure, so a chain of calls needs only one check. */
int keras_set(json_t *obj, const char *key, json_t *value)
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
    int bad = keras_set(c, "kernel_initializer",
                  json_pack("{s:s, s:{s:f, s:s, s:s, s:n}}", "class_name", "VarianceScaling", "config", "scale",
                            variance_scaling[init].scale, "mode", variance_scaling[init].mode, "distribution",
                            variance_scaling[init].distribution, "seed"));
    bad |= keras_set(c, "bias_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= keras_set(c, "kernel_regularizer", regularizer(kernel_reg));
    static const char *const nulls[] = {"bias_regularizer", "activity_regularizer", "kernel_constraint",
                                        "bias_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        bad |= keras_set(c, nulls[i], json_null());
    return bad;
}

static int conv_to_json(const struct layer_spec *s, json_t *c)
{
    const struct conv_cfg *k = &s->u.conv;
    int bad = keras_set(c, "filters", json_integer(k->filters));
    bad |= keras_set(c, "kernel_size", pair(k->kh, k->kw));
    bad |= keras_set(c, "strides", pair(k->sh, k->sw));
    bad |= keras_set(c, "padding", json_string(k->same ? "same" : "valid"));
    bad |= keras_set(c, "data_format", json_string("channels_last"));
    bad |= keras_set(c, "dilation_rate", pair(1, 1));
    bad |= keras_set(c, "activation", activation(k->act));
    bad |= keras_set(c, "use_bias", json_boolean(k->use_bias));
    return bad | initializers_and_nulls(c, k->kernel_init, &k->kernel_reg);
}

static int pool_to_json(const struct layer_spec *s, json_t *c)
{
    const struct pool_cfg *p = &s->u.pool;
    int bad = keras_set(c, "pool_size", pair(p->ph, p->pw));
    bad |= keras_set(c, "padding", json_string(p->same ? "same" : "valid"));
    bad |= keras_set(c, "strides", pair(p->sh, p->sw));
    return bad | keras_set(c, "data_format", json_string("channels_last"));
}

static int global_pool_to_json(const struct layer_spec *s, json_t *c)
{
    (void)s;
    return keras_set(c, "data_format", json_string("channels_last"));
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
    int bad = keras_set(c, "units", json_integer(d->units));
    bad |= keras_set(c, "activation", activation(d->act));
    bad |= keras_set(c, "use_bias", json_boolean(d->use_bias));
    return bad | initializers_and_nulls(c, d->kernel_init, &d->kernel_reg);
}

static int dropout_to_json(const struct layer_spec *s, json_t *c)
{
    int bad = keras_set(c, "rate", json_real(s->u.dropout.rate));
    bad |= keras_set(c, "noise_shape", json_null());
    return bad | keras_set(c, "seed", json_null());
}

static int activation_to_json(const struct layer_spec *s, json_t *c)
{
    return keras_set(c, "activation", activation(s->u.act.act));
}

static int bn_to_json(const struct layer_spec *s, json_t *c)
{
    const struct batchnorm_cfg *b = &s->u.bn;
    int bad = keras_set(c, "axis", json_integer(b->axis));
    bad |= keras_set(c, "momentum", json_real(b->momentum));
    bad |= keras_set(c, "epsilon", json_real(b->epsilon));
    bad |= keras_set(c, "center", json_boolean(b->center));
    bad |= keras_set(c, "scale", json_boolean(b->scale));
    bad |= keras_set(c, "beta_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= keras_set(c, "gamma_initializer", json_pack("{s:s, s:{}}", "class_name", "Ones", "config"));
    bad |= keras_set(c, "moving_mean_initializer", json_pack("{s:s, s:{}}", "class_name", "Zeros", "config"));
    bad |= keras_set(c, "moving_variance_initializer", json_pack("{s:s, s:{}}", "class_name", "Ones", "config"));
    static const char *const nulls[] = {"beta_regularizer", "gamma_regularizer", "beta_constraint",
                                        "gamma_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        bad |= keras_set(c, nulls[i], json_null());
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
    return keras_set(c, "axis", json_integer(s->u.concat.axis));
}

static int zero_pad_to_json(const struct layer_spec *s, json_t *c)
{
    const struct zero_pad_cfg *p = &s->u.pad;
    int bad = keras_set(c, "padding", json_pack("[[ii][ii]]", p->top, p->bottom, p->left, p->right));
    return bad | keras_set(c, "data_format", json_string("channels_last"));
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
    return json_object_get(cfg, "dtype") ? 0 : keras_set(cfg, "dtype", json_string("float32"));
}

static json_t *aug_seed(const struct augment_cfg *c)
{
    return c->has_seed ? json_integer(c->seed) : json_null();
}

static int aug_fill_to_json(const struct augment_cfg *c, json_t *cfg)
{
    static const char *const fills[] = {"reflect", "wrap", "constant", "nearest"};
    int bad = keras_set(cfg, "fill_mode", json_string(fills[c->fill]));
    bad |= keras_set(cfg, "fill_value", json_real(c->fill_value));
    bad |= keras_set(cfg, "interpolation", json_string(c->interp == AUG_INTERP_NEAREST ? "nearest" : "bilinear"));
    return bad | keras_set(cfg, "seed", aug_seed(c));
}

static int random_flip_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    const char *mode = c->flip_h && c->flip_v ? "horizontal_and_vertical" : c->flip_h ? "horizontal" : "vertical";
    int bad = aug_common(cfg);
    bad |= keras_set(cfg, "mode", json_string(mode));
    return bad | keras_set(cfg, "seed", aug_seed(c));
}

/* RandomTranslation and RandomZoom write the same keys. */
static int aug_two_factors_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= keras_set(cfg, "height_factor", aug_factor(c->h_lo, c->h_hi, c->h_form));
    bad |= keras_set(cfg, "width_factor", aug_factor(c->w_lo, c->w_hi, c->w_form));
    return bad | aug_fill_to_json(c, cfg);
}

static int random_rotation_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= keras_set(cfg, "factor", aug_factor(c->h_lo, c->h_hi, c->h_form));
    return bad | aug_fill_to_json(c, cfg);
}

static int random_crop_to_json(const struct layer_spec *s, json_t *cfg)
{
    const struct augment_cfg *c = &s->u.aug;
    int bad = aug_common(cfg);
    bad |= keras_set(cfg, "height", json_integer(c->height));
    bad |= keras_set(cfg, "width", json_integer(c->width));
    return bad | keras_set(cfg, "seed", aug_seed(c));
}

/* ---- JSON -> layer arguments ---------------------------------------------------------------------------- */

/* A JSON value as a Keras user wrote it: [2, 2] as (2, 2), strings quoted, null as None. */
void keras_value_text(json_t *v, char *buf, size_t size)
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
    keras_value_text(value, text, sizeof text);
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

const struct keras_kind *keras_kind_by_ops(const struct layer_ops *ops)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].ops == ops)
            return &kinds[i];
    return NULL;
}

/* Keras class names are the model-file names (layer_ops.name). */
const struct keras_kind *keras_kind_by_class(const char *class_name)
{
    for (size_t i = 0; class_name && i < N_KINDS; i++)
        if (strcmp(kinds[i].ops->name, class_name) == 0)
            return &kinds[i];
    return NULL;
}

/* args.c: typed access to a layer call's arguments, with Keras's keyword/positional rules and errors that
 * point at the line and column. */
#include "args.h"
#include "layer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *type_name(enum arg_type t)
{
    switch (t) {
    case ARG_INT: return "an integer";
    case ARG_FLOAT: return "a number";
    case ARG_STRING: return "a string";
    case ARG_TUPLE: return "a tuple";
    case ARG_NONE: return "None";
    case ARG_BOOL: return "True/False";
    case ARG_CALL: return "a call";
    }
    return "?";
}

int args_error(const struct args *a, const struct arg *arg, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int col = arg ? arg->col : a->col;
    if (a->line > 0)
        return error_set(err, ERR_INPUT, "%s:%d:%d: %s: %s", a->file ? a->file : "model", a->line, col,
                         a->layer, what);
    return error_set(err, ERR_INPUT, "%s: %s: %s", a->file ? a->file : "model", a->layer, what);
}

/* The keyword argument `key`, else the positional one at index pos. A keyword given twice, or given both
 * by position and by keyword, is an error (as in Python). */
static int find(struct args *a, const char *key, int pos, struct arg **out, struct error *err)
{
    struct arg *by_key = NULL, *by_pos = NULL;
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        struct arg *x = &a->a[i];
        if (x->key[0] == '\0') {
            if (npos == pos)
                by_pos = x;
            npos++;
        } else if (strcmp(x->key, key) == 0) {
            if (by_key)
                return args_error(a, x, err, "argument '%s' given twice", key);
            by_key = x;
        }
    }
    if (by_key && by_pos)
        return args_error(a, by_key, err, "argument '%s' given by position and by keyword", key);
    *out = by_key ? by_key : by_pos;
    if (*out)
        (*out)->used = 1;
    return ERR_OK;
}

/* An integer accessor handed a tuple with a float in it: the error points at that element. */
static int float_in_tuple(const struct args *a, const struct arg *x, const char *key, struct error *err)
{
    struct arg at = *x;
    if (at.float_col > 0)
        at.col = at.float_col;
    return args_error(a, &at, err, "'%s' takes integers, not a float", key);
}

static int missing(struct args *a, const char *key, struct error *err)
{
    return args_error(a, NULL, err, "missing required argument '%s'", key);
}

int args_int(struct args *a, const char *key, int pos, int required, long dflt, long *out, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x) {
        if (required)
            return missing(a, key, err);
        *out = dflt;
        return ERR_OK;
    }
    if (x->type == ARG_TUPLE && x->tuple_float)
        return float_in_tuple(a, x, key, err);
    if (x->type == ARG_TUPLE && x->n_tuple == 1) {
        *out = x->tuple[0];
        return ERR_OK;
    }
    if (x->type != ARG_INT)
        return args_error(a, x, err, "'%s' must be an integer, not %s", key, type_name(x->type));
    *out = (long)x->num;
    return ERR_OK;
}

int args_pair(struct args *a, const char *key, int pos, int required, long dflt, long out[2],
              struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x) {
        if (required)
            return missing(a, key, err);
        out[0] = out[1] = dflt;
        return ERR_OK;
    }
    if (x->type == ARG_INT) {
        out[0] = out[1] = (long)x->num;
        return ERR_OK;
    }
    if (x->type == ARG_TUPLE && x->tuple_float)
        return float_in_tuple(a, x, key, err);
    if (x->type == ARG_TUPLE && x->n_tuple == 2) {
        out[0] = x->tuple[0];
        out[1] = x->tuple[1];
        return ERR_OK;
    }
    return args_error(a, x, err, "'%s' must be an integer or a pair of integers", key);
}

int args_pair_or_none(struct args *a, const char *key, int pos, long out[2], int *given, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    *given = 0;
    if (rc)
        return rc;
    if (!x || x->type == ARG_NONE)
        return ERR_OK;
    x->used = 0; /* let args_pair find and convert it */
    *given = 1;
    return args_pair(a, key, pos, 1, 0, out, err);
}

int args_float(struct args *a, const char *key, int pos, int required, double dflt, double *out,
               struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x) {
        if (required)
            return missing(a, key, err);
        *out = dflt;
        return ERR_OK;
    }
    if (x->type != ARG_INT && x->type != ARG_FLOAT)
        return args_error(a, x, err, "'%s' must be a number, not %s", key, type_name(x->type));
    if (!isfinite(x->num))
        return args_error(a, x, err, "'%s' must be finite", key);
    *out = x->num;
    return ERR_OK;
}

int args_bool(struct args *a, const char *key, int pos, int dflt, int *out, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x) {
        *out = dflt;
        return ERR_OK;
    }
    if (x->type != ARG_BOOL)
        return args_error(a, x, err, "'%s' must be True or False, not %s", key, type_name(x->type));
    *out = x->num != 0;
    return ERR_OK;
}

int args_choice(struct args *a, const char *key, int pos, const char *const *choices, int dflt, int *out,
                struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x) {
        *out = dflt;
        return ERR_OK;
    }
    const char *s = x->type == ARG_NONE ? "None" : x->type == ARG_STRING ? x->str : NULL;
    if (s)
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], s) == 0) {
                *out = i;
                return ERR_OK;
            }
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "", choices[i]);
    }
    if (s)
        return args_error(a, x, err, "unknown value '%s' for '%s' (expected one of %s)", s, key, list);
    return args_error(a, x, err, "'%s' must be one of %s, not %s", key, list, type_name(x->type));
}

int args_float_pair(struct args *a, const char *key, int pos, int required, int allow_none, double out[2],
                    int *form, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    *form = 0;
    if (rc)
        return rc;
    if (!x)
        return required ? missing(a, key, err) : ERR_OK;
    if (x->type == ARG_NONE)
        return allow_none ? ERR_OK : args_error(a, x, err, "'%s' must be a number or a pair of numbers, not None", key);
    double v[2];
    int n = 0;
    if (x->type == ARG_INT || x->type == ARG_FLOAT) {
        v[0] = v[1] = x->num;
        n = 1;
    } else if (x->type == ARG_TUPLE && x->n_tuple == 2) {
        v[0] = x->tuple_float ? x->tuple_num[0] : (double)x->tuple[0];
        v[1] = x->tuple_float ? x->tuple_num[1] : (double)x->tuple[1];
        n = 2;
    }
    if (!n)
        return args_error(a, x, err, "'%s' must be a number or a pair of numbers such as (-0.2, 0.3)", key);
    if (!isfinite(v[0]) || !isfinite(v[1]))
        return args_error(a, x, err, "'%s' must be finite", key);
    out[0] = v[0];
    out[1] = v[1];
    *form = n;
    return ERR_OK;
}

int args_int_or_none(struct args *a, const char *key, int pos, long *out, int *given, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    *given = 0;
    if (rc || !x || x->type == ARG_NONE)
        return rc;
    if (x->type != ARG_INT)
        return args_error(a, x, err, "'%s' must be an integer or None, not %s", key, type_name(x->type));
    *out = (long)x->num;
    *given = 1;
    return ERR_OK;
}

int args_tuple(struct args *a, const char *key, int pos, long *out, int *n, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, pos, &x, err);
    if (rc)
        return rc;
    if (!x)
        return missing(a, key, err);
    if (x->type == ARG_TUPLE && x->tuple_float)
        return float_in_tuple(a, x, key, err);
    if (x->type != ARG_TUPLE)
        return args_error(a, x, err, "'%s' must be a tuple such as (28, 28, 1)", key);
    for (int i = 0; i < x->n_tuple; i++)
        out[i] = x->tuple[i];
    *n = x->n_tuple;
    return ERR_OK;
}

/* Keras's regularizer callables. Positional arguments take keys[] in order; `l` is Keras 2's name for the
 * single factor of l1() and l2(), still accepted by tf.keras. l1_l2 has no defaults here: Keras 2 and tf.keras
 * default both factors to 0.01, Keras 3 (where it is L1L2) to 0, so a call that omits one is ambiguous. */
enum { REG_L1, REG_L2, REG_L1L2 };
static const struct {
    const char *name;
    int kind;
    int explicit_args; /* both l1 and l2 must be given */
    double dflt;       /* the default of the single factor, or of both (L1L2) */
} reg_kinds[] = {
    {"l1", REG_L1, 0, 0.01},   {"L1", REG_L1, 0, 0.01},     {"l2", REG_L2, 0, 0.01},
    {"L2", REG_L2, 0, 0.01},   {"l1_l2", REG_L1L2, 1, 0.0}, {"L1L2", REG_L1L2, 0, 0.0},
};

/* The callee without one of the module prefixes a Keras user writes; NULL for another module. */
static const char *reg_callee(const char *name)
{
    static const char *const prefixes[] = {"", "regularizers.", "keras.regularizers.", "tf.keras.regularizers.",
                                           "tensorflow.keras.regularizers.", NULL};
    const char *dot = strrchr(name, '.');
    size_t plen = dot ? (size_t)(dot - name) + 1 : 0;
    for (int i = 0; prefixes[i]; i++)
        if (strlen(prefixes[i]) == plen && strncmp(prefixes[i], name, plen) == 0)
            return name + plen;
    return NULL;
}

int args_regularizer(struct args *a, const char *key, struct regularizer *out, struct error *err)
{
    struct arg *x;
    int rc = find(a, key, -1, &x, err);
    out->l1 = out->l2 = 0;
    if (rc || !x || x->type == ARG_NONE)
        return rc;
    if (x->type != ARG_CALL)
        return args_error(a, x, err, "'%s' must be a regularizer such as l2(1e-4) or None, not %s", key,
                          type_name(x->type));
    const char *callee = reg_callee(x->str);
    int k = -1;
    for (size_t i = 0; callee && i < sizeof reg_kinds / sizeof reg_kinds[0]; i++)
        if (strcmp(callee, reg_kinds[i].name) == 0)
            k = (int)i;
    if (k < 0)
        return args_error(a, x, err, "unknown regularizer '%s' for '%s' (expected l1, l2, l1_l2, L1, L2 or L1L2)",
                          x->str, key);
    int kind = reg_kinds[k].kind;
    /* The factors by slot: [0] l1, [1] l2. */
    const char *slot_names[2][2] = {{"l1", kind == REG_L1L2 ? "l1" : "l"}, {"l2", kind == REG_L1L2 ? "l2" : "l"}};
    int allowed[2] = {kind != REG_L2, kind != REG_L1}, given[2] = {0, 0}, npos = 0;
    double v[2] = {kind == REG_L2 ? 0 : reg_kinds[k].dflt, kind == REG_L1 ? 0 : reg_kinds[k].dflt};
    for (int i = 0; i < x->n_call; i++) {
        const char *ck = x->call[i].key;
        struct arg at = *x; /* for messages: the column of this argument of the call */
        at.col = x->call[i].col;
        int slot = -1;
        if (!ck[0]) {
            /* l1(x) and l2(x) take their one factor first; L1L2(l1, l2) in that order. */
            for (int s = 0, seen = 0; s < 2; s++)
                if (allowed[s] && seen++ == npos)
                    slot = s;
            npos++;
            if (slot < 0)
                return args_error(a, &at, err, "%s: too many positional arguments", x->str);
        } else {
            for (int s = 0; s < 2; s++)
                if (allowed[s] && (strcmp(ck, slot_names[s][0]) == 0 || strcmp(ck, slot_names[s][1]) == 0))
                    slot = s;
            if (slot < 0)
                return args_error(a, &at, err, "%s: unknown argument '%s'", x->str, ck);
        }
        if (given[slot])
            return args_error(a, &at, err, "%s: argument '%s' given twice", x->str, slot_names[slot][0]);
        if (!isfinite(x->call[i].num) || x->call[i].num < 0)
            return args_error(a, &at, err, "%s: '%s' must be a finite number >= 0", x->str, slot_names[slot][0]);
        given[slot] = 1;
        v[slot] = x->call[i].num;
    }
    if (reg_kinds[k].explicit_args && !(given[0] && given[1]))
        return args_error(a, x, err,
                          "%s: give both l1= and l2= (Keras versions differ on their defaults: 0.01 or 0)", x->str);
    out->l1 = v[0];
    out->l2 = v[1];
    return ERR_OK;
}

int args_check_unused(const struct args *a, struct error *err)
{
    for (int i = 0; i < a->n; i++) {
        const struct arg *x = &a->a[i];
        if (x->used)
            continue;
        if (x->key[0])
            return args_error(a, x, err, "unknown argument '%s'", x->key);
        return args_error(a, x, err, "too many positional arguments");
    }
    return ERR_OK;
}

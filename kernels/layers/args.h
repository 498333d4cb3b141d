/* args.h: the arguments of one layer call, `Conv2D(16, 2, padding='same')`, as parsed from a model
 * file line (or built from a Keras model_config), and typed accessors that report errors by line and column. */
#ifndef TRAINER_ARGS_H
#define TRAINER_ARGS_H

#include "error.h"

enum arg_type { ARG_INT, ARG_FLOAT, ARG_STRING, ARG_TUPLE, ARG_NONE, ARG_BOOL, ARG_CALL };

#define ARGS_MAX 16
#define ARG_TUPLE_MAX 4
#define ARG_CALL_MAX 4

struct arg {
    char key[32];     /* empty for a positional argument */
    int col;          /* 1-based column of the argument in its line, for messages */
    enum arg_type type;
    double num;       /* ARG_INT, ARG_FLOAT, ARG_BOOL (0/1) */
    char str[64];     /* ARG_STRING */
    int n_tuple;      /* ARG_TUPLE: its elements */
    long tuple[ARG_TUPLE_MAX];
    int nested;       /* ARG_TUPLE: written as pairs ((a, b), (c, d)), flattened into tuple[] */
    double tuple_num[ARG_TUPLE_MAX]; /* the same as numbers; a float element only here (tuple_float set) */
    int tuple_float;  /* some element is a float: only args_float_pair takes such a tuple */
    int float_col;    /* the column of the first float element, for the integer accessors' message */
    /* ARG_CALL: a call with numeric arguments as a value, `l2(1e-4)`, `regularizers.l1_l2(l1=0, l2=1e-4)`:
     * str holds the (dotted) callee, call[] its arguments (key empty when positional). */
    int n_call;
    struct {
        char key[16];
        int col;
        double num;
    } call[ARG_CALL_MAX];
    int used;         /* set by the accessors: an argument nobody used is an error (a typo) */
};

struct args {
    const char *file; /* for messages */
    int line;         /* 1-based; 0 when not from a text file */
    int col;          /* column of the layer name */
    char layer[32];   /* e.g. "Conv2D" */
    int n;
    struct arg a[ARGS_MAX];
};

/* Each accessor looks for keyword `key`, else for the positional argument at index `pos` (pos < 0: keyword
 * only). Found: converts it, marks it used, stores it in *out. Not found: stores `dflt` (a required
 * argument without a value is an error). Wrong type or value: ERR_INPUT naming file:line:col. */
int args_int(struct args *a, const char *key, int pos, int required, long dflt, long *out, struct error *err);
/* An int or a tuple of 2 ints (kernel_size=2 or kernel_size=(2, 3)); dflt used for both when absent. */
int args_pair(struct args *a, const char *key, int pos, int required, long dflt, long out[2],
              struct error *err);
/* Like args_pair, but `None` (or absence) leaves out unchanged and returns ERR_OK with *given = 0. */
int args_pair_or_none(struct args *a, const char *key, int pos, long out[2], int *given, struct error *err);
int args_float(struct args *a, const char *key, int pos, int required, double dflt, double *out,
               struct error *err);
int args_bool(struct args *a, const char *key, int pos, int dflt, int *out, struct error *err);
/* A string that must be one of `choices` (NULL-terminated); *out is its index. `None` matches a choice
 * spelled "None" when one is listed. */
int args_choice(struct args *a, const char *key, int pos, const char *const *choices, int dflt, int *out,
                struct error *err);
/* A number or a tuple of 2 numbers (RandomTranslation's height_factor=0.2 or (-0.2, 0.3)). *form: 0 when
 * absent or None (out unchanged; a required argument must be there, and None is refused unless allow_none),
 * 1 for one number (out[0] = out[1] = it), 2 for a pair. */
int args_float_pair(struct args *a, const char *key, int pos, int required, int allow_none, double out[2],
                    int *form, struct error *err);
/* An integer or None (a Keras seed): *given is 0 when absent or None. */
int args_int_or_none(struct args *a, const char *key, int pos, long *out, int *given, struct error *err);
/* A tuple of 1 to ARG_TUPLE_MAX ints (Input shape). */
int args_tuple(struct args *a, const char *key, int pos, long *out, int *n, struct error *err);

/* A Keras weight regularizer (`kernel_regularizer=`): None or absent (no penalty), l2(x), l1(x),
 * l1_l2(l1=x, l2=y), L1(x), L2(x), L1L2(l1=x, l2=y), with or without a `regularizers.`, `keras.regularizers.`
 * or `tf.keras.regularizers.` prefix. Values must be finite and >= 0. */
struct regularizer;
int args_regularizer(struct args *a, const char *key, struct regularizer *out, struct error *err);

/* After a layer took its arguments: ERR_INPUT for the first one it did not use (unknown keyword,
 * too many positionals). */
int args_check_unused(const struct args *a, struct error *err);

/* Error at the argument's position: "FILE:LINE:COL: MESSAGE". */
int args_error(const struct args *a, const struct arg *arg, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

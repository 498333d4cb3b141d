/* model.c: the model-file reader (Keras call syntax: one layer a line, or functional statements) and shape
 * inference. */
#include "model.h"
#include "optim.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A model file is a few lines; anything bigger is almost certainly not one (a dataset passed by mistake). */
#define MODEL_FILE_MAX (64 * 1024)

/* ------------------------------------------------------------------------------------------ lexer */

enum tok_kind {
    TOK_END, TOK_IDENT, TOK_INT, TOK_FLOAT, TOK_STRING, TOK_LPAREN, TOK_RPAREN, TOK_COMMA, TOK_EQUALS, TOK_LBRACKET,
    TOK_RBRACKET
};

struct tok {
    enum tok_kind kind;
    int col;           /* 1-based */
    const char *start; /* the token's text in the line (for strings: inside the quotes) */
    int len;
    double num;        /* TOK_INT, TOK_FLOAT */
};

/* One line of the model file; `a` supplies file and line for messages and receives the call. */
struct lexer {
    const char *s;
    int len, pos;
    struct args *a;
    struct tok t; /* the current token */
};

/* "FILE:LINE:COL: what": a syntax error, before any layer is involved. */
static int syntax_error(const struct lexer *lx, int col, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int syntax_error(const struct lexer *lx, int col, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return error_set(err, ERR_INPUT, "%s:%d:%d: %s", lx->a->file, lx->a->line, col, what);
}

static int is_ident_start(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }
static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* How a token reads in a message. */
static const char *tok_text(const struct tok *t, char *buf, size_t size)
{
    if (t->kind == TOK_END)
        return "end of line";
    snprintf(buf, size, "'%.*s'", t->len > 40 ? 40 : t->len, t->start);
    return buf;
}

/* Digits with an optional fraction and exponent, as Python writes them: 3, -2, 0.3, .5, 5., 1e-3. */
static int lex_number(struct lexer *lx, struct error *err)
{
    const char *s = lx->s;
    int p = lx->pos, digits = 0, is_float = 0;
    if (s[p] == '+' || s[p] == '-')
        p++;
    for (; p < lx->len && is_digit(s[p]); p++)
        digits++;
    if (p < lx->len && s[p] == '.') {
        is_float = 1;
        for (p++; p < lx->len && is_digit(s[p]); p++)
            digits++;
    }
    if (digits && p < lx->len && (s[p] == 'e' || s[p] == 'E')) {
        int q = p + 1;
        if (q < lx->len && (s[q] == '+' || s[q] == '-'))
            q++;
        if (q < lx->len && is_digit(s[q])) {
            for (p = q; p < lx->len && is_digit(s[p]); p++)
                ;
            is_float = 1;
        }
    }
    while (p < lx->len && (is_ident_char(s[p]) || s[p] == '.'))
        p++, digits = 0; /* 2x, 1.2.3, 1e: glued to something that is not a number */
    lx->t.len = p - lx->pos;
    if (!digits)
        return syntax_error(lx, lx->t.col, err, "invalid number '%.*s'", lx->t.len, lx->t.start);
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", lx->t.len, lx->t.start);
    lx->t.num = strtod(buf, NULL);
    lx->t.kind = is_float ? TOK_FLOAT : TOK_INT;
    if (!is_float && (lx->t.num > INT_MAX || lx->t.num < -INT_MAX))
        return syntax_error(lx, lx->t.col, err, "integer %s is too large", buf);
    lx->pos = p;
    return ERR_OK;
}

/* '...' or "...", no escapes (no model-file value needs one). */
static int lex_string(struct lexer *lx, struct error *err)
{
    char quote = lx->s[lx->pos];
    int p = lx->pos + 1;
    while (p < lx->len && lx->s[p] != quote)
        p++;
    if (p >= lx->len)
        return syntax_error(lx, lx->t.col, err, "unterminated string: missing closing %c", quote);
    lx->t.kind = TOK_STRING;
    lx->t.start = lx->s + lx->pos + 1;
    lx->t.len = p - lx->pos - 1;
    lx->pos = p + 1;
    return ERR_OK;
}

static int lex_next(struct lexer *lx, struct error *err)
{
    while (lx->pos < lx->len && is_space(lx->s[lx->pos]))
        lx->pos++;
    struct tok *t = &lx->t;
    *t = (struct tok){.col = lx->pos + 1, .start = lx->s + lx->pos, .len = 1};
    if (lx->pos >= lx->len || lx->s[lx->pos] == '#') {
        t->kind = TOK_END;
        t->len = 0;
        return ERR_OK;
    }
    char c = lx->s[lx->pos];
    const char *punct = "(),=[]";
    const char *hit = c ? strchr(punct, c) : NULL;
    if (hit) {
        static const enum tok_kind kinds[] = {TOK_LPAREN, TOK_RPAREN, TOK_COMMA, TOK_EQUALS, TOK_LBRACKET,
                                              TOK_RBRACKET};
        t->kind = kinds[hit - punct];
        lx->pos++;
        return ERR_OK;
    }
    if (c == '\'' || c == '"')
        return lex_string(lx, err);
    if (is_digit(c) || c == '.' || c == '-' || c == '+')
        return lex_number(lx, err);
    if (is_ident_start(c)) {
        int p = lx->pos;
        while (p < lx->len && is_ident_char(lx->s[p]))
            p++;
        t->kind = TOK_IDENT;
        t->len = p - lx->pos;
        lx->pos = p;
        return ERR_OK;
    }
    if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
        return syntax_error(lx, t->col, err, "unexpected byte 0x%02x", (unsigned char)c);
    return syntax_error(lx, t->col, err, "unexpected character '%c'", c);
}

/* The kind of the token after the current one, without consuming anything (errors surface later). */
static enum tok_kind lex_peek(const struct lexer *lx)
{
    struct lexer copy = *lx;
    if (lex_next(&copy, NULL) != ERR_OK)
        return TOK_END;
    return copy.t.kind;
}

static int tok_is(const struct tok *t, const char *word)
{
    return t->kind == TOK_IDENT && (int)strlen(word) == t->len && strncmp(t->start, word, t->len) == 0;
}

/* ------------------------------------------------------------------------------------------ parser */

/* `(a, b)`, `(a,)` of numbers; `(a)` is just a, as in Python; at depth 0 also a tuple of pairs of integers
 * ((top, bottom), (left, right)), flattened. The current token is '('. Integers go to tuple[] and tuple_num[]; a
 * float element sets tuple_float (only float-pair arguments take those). */
static int parse_tuple_at(struct lexer *lx, struct arg *x, int depth, struct error *err)
{
    char buf[64];
    int col = lx->t.col, comma = 0, rc;
    x->type = ARG_TUPLE;
    x->n_tuple = 0;
    x->nested = 0;
    x->tuple_float = 0;
    if ((rc = lex_next(lx, err)))
        return rc;
    while (lx->t.kind != TOK_RPAREN) {
        if (lx->t.kind == TOK_LPAREN && depth == 0) {
            /* ((top, bottom), (left, right)): the inner pairs' elements in order (ZeroPadding2D) */
            struct arg inner;
            if ((rc = parse_tuple_at(lx, &inner, 1, err)))
                return rc;
            if (inner.type != ARG_TUPLE || inner.n_tuple != 2 || inner.tuple_float || x->n_tuple + 2 > ARG_TUPLE_MAX)
                return syntax_error(lx, col, err, "nested tuples hold pairs of integers");
            for (int k = 0; k < 2; k++) {
                x->tuple_num[x->n_tuple] = (double)inner.tuple[k];
                x->tuple[x->n_tuple++] = inner.tuple[k];
            }
            x->nested = 1;
            comma = comma || lx->t.kind == TOK_COMMA;
            if (lx->t.kind == TOK_COMMA && (rc = lex_next(lx, err)))
                return rc;
            continue;
        }
        if (lx->t.kind != TOK_INT && lx->t.kind != TOK_FLOAT)
            return syntax_error(lx, lx->t.col, err, "tuples hold numbers: expected a number, found %s",
                                tok_text(&lx->t, buf, sizeof buf));
        if (x->n_tuple == ARG_TUPLE_MAX)
            return syntax_error(lx, lx->t.col, err, "tuple with more than %d elements", ARG_TUPLE_MAX);
        if (lx->t.kind == TOK_FLOAT && !x->tuple_float) {
            x->tuple_float = 1;
            x->float_col = lx->t.col;
        }
        x->tuple_num[x->n_tuple] = lx->t.num;
        x->tuple[x->n_tuple++] = lx->t.kind == TOK_INT ? (long)lx->t.num : 0;
        if ((rc = lex_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            comma = 1;
            if ((rc = lex_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')' in tuple, found %s",
                                tok_text(&lx->t, buf, sizeof buf));
        }
    }
    if (x->n_tuple == 0)
        return syntax_error(lx, col, err, "empty tuple");
    if (x->n_tuple == 1 && !comma && !x->nested) {
        x->type = x->tuple_float ? ARG_FLOAT : ARG_INT;
        x->num = x->tuple_num[0];
        x->n_tuple = 0;
        x->tuple_float = 0;
    }
    return lex_next(lx, err);
}

/* After the identifier that is the current token: `.name` parts then '(' (a call such as regularizers.l2(1e-4)).
 * Nothing is consumed. */
static int lex_call_follows(const struct lexer *lx)
{
    int p = lx->pos;
    while (p + 1 < lx->len && lx->s[p] == '.' && is_ident_start(lx->s[p + 1]))
        for (p++; p < lx->len && is_ident_char(lx->s[p]); p++)
            ;
    while (p < lx->len && is_space(lx->s[p]))
        p++;
    return p < lx->len && lx->s[p] == '(';
}

/* A call with numeric arguments as a value, `l2(1e-4)`, `keras.regularizers.L1L2(l1=0.0, l2=1e-4)`, into x
 * (ARG_CALL); which callees and arguments mean something is the accessor's business (args_regularizer). The
 * current token is the callee's first identifier and lex_call_follows holds. */
static int parse_call_value(struct lexer *lx, struct arg *x, struct error *err)
{
    char buf[64];
    const char *start = lx->t.start;
    int col = lx->t.col, rc, seen_kw = 0;
    while (lx->pos < lx->len && lx->s[lx->pos] == '.')
        for (lx->pos++; lx->pos < lx->len && is_ident_char(lx->s[lx->pos]); lx->pos++)
            ;
    int len = (int)(lx->s + lx->pos - start);
    if (len >= (int)sizeof x->str)
        return syntax_error(lx, col, err, "name longer than %zu characters", sizeof x->str - 1);
    x->type = ARG_CALL;
    memcpy(x->str, start, (size_t)len);
    x->str[len] = '\0';
    x->n_call = 0;
    if ((rc = lex_next(lx, err)) || (rc = lex_next(lx, err))) /* '(' and the token after it */
        return rc;
    while (lx->t.kind != TOK_RPAREN) {
        if (x->n_call == ARG_CALL_MAX)
            return syntax_error(lx, lx->t.col, err, "%s: more than %d arguments", x->str, ARG_CALL_MAX);
        int i = x->n_call;
        x->call[i].col = lx->t.col;
        x->call[i].key[0] = '\0';
        if (lx->t.kind == TOK_IDENT && lex_peek(lx) == TOK_EQUALS) {
            snprintf(x->call[i].key, sizeof x->call[i].key, "%.*s", lx->t.len, lx->t.start);
            seen_kw = 1;
            if ((rc = lex_next(lx, err)) || (rc = lex_next(lx, err)))
                return rc;
        } else if (seen_kw) {
            return syntax_error(lx, lx->t.col, err, "positional argument follows keyword argument");
        }
        if (lx->t.kind != TOK_INT && lx->t.kind != TOK_FLOAT)
            return syntax_error(lx, lx->t.col, err, "%s: expected a number, found %s", x->str,
                                tok_text(&lx->t, buf, sizeof buf));
        x->call[x->n_call++].num = lx->t.num;
        if ((rc = lex_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = lex_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')' after an argument of %s, found %s", x->str,
                                tok_text(&lx->t, buf, sizeof buf));
        }
    }
    return lex_next(lx, err);
}

static int parse_tuple(struct lexer *lx, struct arg *x, struct error *err) { return parse_tuple_at(lx, x, 0, err); }

/* One value into x; on return the current token is the one after it. */
static int parse_value(struct lexer *lx, struct arg *x, struct error *err)
{
    char buf[64];
    struct tok *t = &lx->t;
    switch (t->kind) {
    case TOK_INT:
    case TOK_FLOAT:
        x->type = t->kind == TOK_INT ? ARG_INT : ARG_FLOAT;
        x->num = t->num;
        return lex_next(lx, err);
    case TOK_STRING:
        if (t->len >= (int)sizeof x->str)
            return syntax_error(lx, t->col, err, "string longer than %zu characters", sizeof x->str - 1);
        x->type = ARG_STRING;
        memcpy(x->str, t->start, (size_t)t->len);
        x->str[t->len] = '\0';
        return lex_next(lx, err);
    case TOK_LPAREN:
        return parse_tuple(lx, x, err);
    case TOK_IDENT:
        if (tok_is(t, "None") || tok_is(t, "True") || tok_is(t, "False")) {
            x->type = tok_is(t, "None") ? ARG_NONE : ARG_BOOL;
            x->num = tok_is(t, "True");
            return lex_next(lx, err);
        }
        if (lex_call_follows(lx))
            return parse_call_value(lx, x, err);
        return syntax_error(lx, t->col, err, "expected a value, found '%.*s' (strings need quotes: '%.*s')",
                            t->len, t->start, t->len, t->start);
    default:
        return syntax_error(lx, t->col, err, "expected a value, found %s", tok_text(t, buf, sizeof buf));
    }
}

/* `key=value` or `value`; *seen_kw tracks Python's rule that positionals come first. */
static int parse_arg(struct lexer *lx, int *seen_kw, struct error *err)
{
    struct args *a = lx->a;
    int rc;
    if (a->n == ARGS_MAX)
        return syntax_error(lx, lx->t.col, err, "more than %d arguments", ARGS_MAX);
    struct arg *x = &a->a[a->n];
    memset(x, 0, sizeof *x);
    x->col = lx->t.col;
    if (lx->t.kind == TOK_IDENT && lex_peek(lx) == TOK_EQUALS) {
        if (lx->t.len >= (int)sizeof x->key)
            return syntax_error(lx, x->col, err, "unknown argument '%.*s'", lx->t.len, lx->t.start);
        memcpy(x->key, lx->t.start, (size_t)lx->t.len);
        x->key[lx->t.len] = '\0';
        for (int i = 0; i < a->n; i++)
            if (strcmp(a->a[i].key, x->key) == 0)
                return syntax_error(lx, x->col, err, "keyword argument '%s' repeated", x->key);
        *seen_kw = 1;
        if ((rc = lex_next(lx, err)) || (rc = lex_next(lx, err)))
            return rc;
    } else if (*seen_kw) {
        return syntax_error(lx, x->col, err, "positional argument follows keyword argument");
    }
    rc = parse_value(lx, x, err);
    if (rc == ERR_OK)
        a->n++;
    return rc;
}

/* The arguments up to and including ')'; the current token is the first one after '('. */
static int parse_arglist(struct lexer *lx, struct error *err)
{
    char buf[64];
    int seen_kw = 0, rc;
    for (;;) {
        if (lx->t.kind == TOK_RPAREN)
            return lex_next(lx, err);
        if (lx->t.kind == TOK_END)
            return syntax_error(lx, lx->t.col, err, "expected ')', found end of line");
        if ((rc = parse_arg(lx, &seen_kw, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = lex_next(lx, err)))
                return rc;
        } else if (lx->t.kind == TOK_END) {
            return syntax_error(lx, lx->t.col, err, "expected ')', found end of line");
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')', found %s",
                                tok_text(&lx->t, buf, sizeof buf));
        }
    }
}

/* `Name(args)` from the current token into lx->a; on return the current token is the one after ')'. */
static int parse_call_tokens(struct lexer *lx, struct error *err)
{
    char buf[64];
    struct args *a = lx->a;
    int rc;
    if (lx->t.kind != TOK_IDENT)
        return syntax_error(lx, lx->t.col, err, "expected a layer such as Conv2D(...), found %s",
                            tok_text(&lx->t, buf, sizeof buf));
    a->col = lx->t.col;
    snprintf(a->layer, sizeof a->layer, "%.*s", lx->t.len, lx->t.start);
    if (lx->t.len >= (int)sizeof a->layer)
        return syntax_error(lx, a->col, err, "unknown layer '%.*s'", lx->t.len, lx->t.start);
    if ((rc = lex_next(lx, err)))
        return rc;
    if (lx->t.kind != TOK_LPAREN)
        return syntax_error(lx, lx->t.col, err, "expected '(' after '%s', found %s", a->layer,
                            tok_text(&lx->t, buf, sizeof buf));
    return (rc = lex_next(lx, err)) ? rc : parse_arglist(lx, err);
}

/* `Name(args)` on one line (already known not to be blank) into lx->a, nothing after it. */
static int parse_call(struct lexer *lx, struct error *err)
{
    char buf[64];
    int rc;
    if ((rc = lex_next(lx, err)) || (rc = parse_call_tokens(lx, err)))
        return rc;
    if (lx->t.kind != TOK_END)
        return syntax_error(lx, lx->t.col, err, "unexpected %s after ')': one layer per line",
                            tok_text(&lx->t, buf, sizeof buf));
    return ERR_OK;
}

int model_parse_call(const char *text, struct args *a, struct error *err)
{
    struct lexer lx = {.s = text, .len = (int)strlen(text), .a = a};
    a->n = 0;
    return parse_call(&lx, err);
}

/* A line that holds nothing but blanks and perhaps a comment. */
static int is_blank(const char *s, int len)
{
    for (int i = 0; i < len && s[i] != '#'; i++)
        if (!is_space(s[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------ layer kinds */

/* Keras's own aliases, accepted and written back under the main name. */
static const struct {
    const char *alias, *name;
} kind_aliases[] = {
    {"Convolution2D", "Conv2D"},
    {"MaxPool2D", "MaxPooling2D"},
    {"AvgPool2D", "AveragePooling2D"},
    {"GlobalAvgPool2D", "GlobalAveragePooling2D"},
    {"GlobalMaxPool2D", "GlobalMaxPooling2D"},
};

static const struct layer_ops *find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof kind_aliases / sizeof kind_aliases[0]; i++)
        if (strcmp(name, kind_aliases[i].alias) == 0)
            return layer_find(kind_aliases[i].name);
    return layer_find(name);
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* Levenshtein distance, ignoring case (names are under 32 characters). */
static int edit_distance(const char *a, const char *b)
{
    int row[64], la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 62 || lb > 62)
        return INT_MAX;
    for (int j = 0; j <= lb; j++)
        row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int sub = diag + (lower(a[i - 1]) != lower(b[j - 1]));
            int best = sub < up + 1 ? sub : up + 1;
            row[j] = best < row[j - 1] + 1 ? best : row[j - 1] + 1;
            diag = up;
        }
    }
    return row[lb];
}

/* "unknown layer 'Conv3D' (did you mean 'Conv2D'?)", or the list of layers when nothing is close. */
static int unknown_layer(const struct lexer *lx, struct error *err)
{
    const char *name = lx->a->layer, *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; layer_kinds[i]; i++) {
        int d = edit_distance(name, layer_kinds[i]->name);
        if (d < best_d) {
            best_d = d;
            best = layer_kinds[i]->name;
        }
    }
    if (best && (best_d <= 2 || best_d * 3 <= (int)strlen(name)))
        return syntax_error(lx, lx->a->col, err, "unknown layer '%s' (did you mean '%s'?)", name, best);
    char list[400] = "";
    for (int i = 0; layer_kinds[i]; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", layer_kinds[i]->name);
    }
    return syntax_error(lx, lx->a->col, err, "unknown layer '%s' (layers: %s)", name, list);
}

/* ------------------------------------------------------------------------------------------ model_parse */

/* A name bound by `x = ...` in a functional file: Python's rules, so a name may be bound again. */
struct binding {
    char name[48];
    int layer;
};

/* What model_parse keeps while it reads a file. */
struct parse_state {
    struct model *m;
    const char *file;
    int functional;             /* the first statement decided: `x = Layer(...)(...)` or `Layer(...)` */
    int n_bound;
    struct binding bound[2 * MODEL_MAX_LAYERS];
    int output;                 /* Model(outputs=...) named it; -1: the last statement's tensor */
    int model_line;             /* line of the Model(...) statement, 0 if none */
    char explicit_name[MODEL_MAX_LAYERS]; /* 1: the layer's name came from name='...' */
};

static int find_binding(const struct parse_state *ps, const struct tok *t)
{
    for (int i = ps->n_bound - 1; i >= 0; i--)
        if ((int)strlen(ps->bound[i].name) == t->len && strncmp(ps->bound[i].name, t->start, t->len) == 0)
            return ps->bound[i].layer;
    return -1;
}

static int bind(struct parse_state *ps, const struct lexer *lx, const struct tok *t, int layer, struct error *err)
{
    for (int i = 0; i < ps->n_bound; i++)
        if ((int)strlen(ps->bound[i].name) == t->len && strncmp(ps->bound[i].name, t->start, t->len) == 0) {
            ps->bound[i].layer = layer;
            return ERR_OK;
        }
    if (t->len >= (int)sizeof ps->bound[0].name || ps->n_bound == (int)(sizeof ps->bound / sizeof ps->bound[0]))
        return syntax_error(lx, t->col, err, "name '%.*s' is too long or one name too many", t->len, t->start);
    struct binding *b = &ps->bound[ps->n_bound++];
    snprintf(b->name, sizeof b->name, "%.*s", t->len, t->start);
    b->layer = layer;
    return ERR_OK;
}

/* A tensor name in a call's inputs: it must be bound already (this is also what rules out cycles). */
static int use_name(const struct parse_state *ps, const struct lexer *lx, int *layer, struct error *err)
{
    char buf[64];
    if (lx->t.kind != TOK_IDENT)
        return syntax_error(lx, lx->t.col, err, "expected a tensor name, found %s", tok_text(&lx->t, buf, sizeof buf));
    *layer = find_binding(ps, &lx->t);
    if (*layer < 0)
        return syntax_error(lx, lx->t.col, err, "name '%.*s' is not defined", lx->t.len, lx->t.start);
    return ERR_OK;
}

/* `(x)` or `([x, y, ...])` after a layer call: the layer's inputs. The current token is '('. */
static int parse_inputs(struct parse_state *ps, struct lexer *lx, struct layer_spec *spec, struct error *err)
{
    char buf[64];
    int rc, list;
    if ((rc = lex_next(lx, err)))
        return rc;
    list = lx->t.kind == TOK_LBRACKET;
    if (list && (rc = lex_next(lx, err)))
        return rc;
    for (;;) {
        if (spec->n_inputs == LAYER_MAX_INPUTS)
            return syntax_error(lx, lx->t.col, err, "more than %d inputs", LAYER_MAX_INPUTS);
        if ((rc = use_name(ps, lx, &spec->inputs[spec->n_inputs], err)))
            return rc;
        spec->n_inputs++;
        if ((rc = lex_next(lx, err)))
            return rc;
        if (!list || lx->t.kind != TOK_COMMA)
            break;
        if ((rc = lex_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_RBRACKET)
            break;
    }
    if (list) {
        if (lx->t.kind != TOK_RBRACKET)
            return syntax_error(lx, lx->t.col, err, "expected ',' or ']', found %s", tok_text(&lx->t, buf, sizeof buf));
        if ((rc = lex_next(lx, err)))
            return rc;
    }
    if (lx->t.kind != TOK_RPAREN)
        return syntax_error(lx, lx->t.col, err, "expected ')', found %s", tok_text(&lx->t, buf, sizeof buf));
    return lex_next(lx, err);
}

/* `Model(inputs=a, outputs=b)` (keywords or positions, a name or a list of one): checks that the inputs are
 * the Input and records the output. The current token is the one after 'Model'. */
static int parse_model_stmt(struct parse_state *ps, struct lexer *lx, struct error *err)
{
    char buf[64];
    int rc, pos = 0;
    if (lx->t.kind != TOK_LPAREN)
        return syntax_error(lx, lx->t.col, err, "expected '(' after 'Model', found %s", tok_text(&lx->t, buf, sizeof buf));
    if ((rc = lex_next(lx, err)))
        return rc;
    while (lx->t.kind != TOK_RPAREN) {
        int outputs = pos == 1, col = lx->t.col;
        if (lx->t.kind == TOK_IDENT && lex_peek(lx) == TOK_EQUALS) {
            if (tok_is(&lx->t, "outputs"))
                outputs = 1;
            else if (tok_is(&lx->t, "inputs"))
                outputs = 0;
            else if (tok_is(&lx->t, "name")) {
                /* The model's name: accepted and not kept (Keras files carry their own). */
                struct arg ignored;
                if ((rc = lex_next(lx, err)) || (rc = lex_next(lx, err)) || (rc = parse_value(lx, &ignored, err)))
                    return rc;
                goto next;
            } else
                return syntax_error(lx, col, err, "Model() takes inputs= and outputs=, not '%.*s'", lx->t.len, lx->t.start);
            if ((rc = lex_next(lx, err)) || (rc = lex_next(lx, err)))
                return rc;
        }
        int list = lx->t.kind == TOK_LBRACKET, layer, n = 0;
        if (list && (rc = lex_next(lx, err)))
            return rc;
        do {
            if (n > 0 && (rc = lex_next(lx, err)))
                return rc;
            if (list && lx->t.kind == TOK_RBRACKET)
                break;
            if ((rc = use_name(ps, lx, &layer, err)))
                return rc;
            if (n++ > 0)
                return syntax_error(lx, lx->t.col, err, "a model has one %s here, not several",
                                    outputs ? "output" : "input");
            if (outputs)
                ps->output = layer;
            else if (ps->m->layers[layer].ops != &layer_input)
                return syntax_error(lx, lx->t.col, err, "Model inputs must be the Input, not '%.*s'", lx->t.len,
                                    lx->t.start);
            if ((rc = lex_next(lx, err)))
                return rc;
        } while (list && lx->t.kind == TOK_COMMA);
        if (list) {
            if (lx->t.kind != TOK_RBRACKET)
                return syntax_error(lx, lx->t.col, err, "expected ']', found %s", tok_text(&lx->t, buf, sizeof buf));
            if ((rc = lex_next(lx, err)))
                return rc;
        }
    next:
        pos++;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = lex_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')', found %s", tok_text(&lx->t, buf, sizeof buf));
        }
    }
    if ((rc = lex_next(lx, err)))
        return rc;
    if (lx->t.kind != TOK_END)
        return syntax_error(lx, lx->t.col, err, "unexpected %s after ')'", tok_text(&lx->t, buf, sizeof buf));
    ps->model_line = lx->a->line;
    return ERR_OK;
}

/* name='...' is every layer's: taken here, before the kind reads its own arguments. Names index the weights
 * in HDF5 files and are written back as Python identifiers' neighbours, so they are kept to [A-Za-z0-9_.-]. */
static int take_name_arg(struct args *a, struct layer_spec *spec, int *explicit_name, struct error *err)
{
    for (int i = 0; i < a->n; i++) {
        struct arg *x = &a->a[i];
        if (strcmp(x->key, "name") != 0)
            continue;
        x->used = 1;
        if (x->type == ARG_NONE)
            return ERR_OK;
        if (x->type != ARG_STRING || !x->str[0] || strlen(x->str) >= sizeof spec->name || strcmp(x->str, ".") == 0 ||
            strspn(x->str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(x->str))
            return args_error(a, x, err, "name must be a string of letters, digits, '_', '.' or '-' (at most %zu)",
                              sizeof spec->name - 1);
        snprintf(spec->name, sizeof spec->name, "%s", x->str);
        *explicit_name = 1;
    }
    return ERR_OK;
}

/* Parses one non-blank line: `Layer(args)` in a chain file, `x = Layer(args)(inputs)` in a functional one,
 * or the closing `Model(inputs=..., outputs=...)`. */
static int add_statement(struct parse_state *ps, const char *line, int len, int lineno, struct error *err)
{
    struct model *m = ps->m;
    struct args a = {.file = ps->file, .line = lineno};
    struct lexer lx = {.s = line, .len = len, .a = &a};
    struct tok target = {0};
    char buf[64];
    int rc, explicit_name = 0;
    if ((rc = lex_next(&lx, err)))
        return rc;
    int assign = lx.t.kind == TOK_IDENT && lex_peek(&lx) == TOK_EQUALS;
    if (ps->model_line)
        return syntax_error(&lx, 1, err, "nothing may follow Model(...)");
    if (m->n_layers == 0)
        ps->functional = assign;
    if (tok_is(&lx.t, "Model") && ps->functional)
        return lex_next(&lx, err) ? err->code : parse_model_stmt(ps, &lx, err);
    if (assign) {
        if (!ps->functional)
            return syntax_error(&lx, lx.t.col, err, "'%.*s = ...' in a file of one layer a line: write the whole model "
                                "in functional form (inputs = Input(...) first)", lx.t.len, lx.t.start);
        target = lx.t;
        if ((rc = lex_next(&lx, err)) || (rc = lex_next(&lx, err)))
            return rc;
        if (tok_is(&lx.t, "Model"))
            return lex_next(&lx, err) ? err->code : parse_model_stmt(ps, &lx, err);
    } else if (ps->functional) {
        return syntax_error(&lx, lx.t.col, err, "expected 'name = Layer(...)(inputs)': this file is functional");
    }
    if (m->n_layers == MODEL_MAX_LAYERS)
        return syntax_error(&lx, 1, err, "more than %d layers", MODEL_MAX_LAYERS);
    if ((rc = parse_call_tokens(&lx, err)))
        return rc;
    const struct layer_ops *ops = find_kind(a.layer);
    if (!ops)
        return unknown_layer(&lx, err);
    if (m->n_layers == 0 && ops != &layer_input)
        return syntax_error(&lx, a.col, err, "the first layer must be Input(shape=(H, W, C)), not %s", a.layer);
    if (m->n_layers > 0 && ops == &layer_input)
        return syntax_error(&lx, a.col, err, "Input is only allowed as the first layer%s",
                            ps->functional ? ": a model has one input" : "");
    struct layer_spec *spec = &m->layers[m->n_layers];
    memset(spec, 0, sizeof *spec);
    spec->ops = ops;
    spec->line = lineno;
    spec->index = m->n_layers;
    if (ps->functional && ops != &layer_input) {
        if (lx.t.kind != TOK_LPAREN)
            return syntax_error(&lx, lx.t.col, err, "expected '(' and the layer's input after '%s(...)', found %s",
                                a.layer, tok_text(&lx.t, buf, sizeof buf));
        if ((rc = parse_inputs(ps, &lx, spec, err)))
            return rc;
    }
    if (lx.t.kind != TOK_END)
        return syntax_error(&lx, lx.t.col, err, "unexpected %s after ')': one layer per line",
                            tok_text(&lx.t, buf, sizeof buf));
    if ((rc = take_name_arg(&a, spec, &explicit_name, err)) || (rc = ops->parse(spec, &a, err)) ||
        (rc = args_check_unused(&a, err)))
        return rc;
    if (ps->functional && (rc = bind(ps, &lx, &target, m->n_layers, err)))
        return rc;
    ps->explicit_name[m->n_layers] = (char)explicit_name;
    m->n_layers++;
    return ERR_OK;
}

/* Keras's names for the layers not named in the file (model_auto_names); two layers of one name: an error, as in
 * Keras. */
static int assign_names(struct model *m, const struct parse_state *ps, struct error *err)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i].explicit_name = ps->explicit_name[i];
    model_auto_names(m);
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(m->layers[i].name, m->layers[j].name) == 0)
                return error_set(err, ERR_INPUT, "%s:%d: two layers are named '%s' (lines %d and %d)", ps->file,
                                 m->layers[i].line, m->layers[i].name, m->layers[j].line, m->layers[i].line);
    /* name='conv2d_1' where the reader would have said conv2d_1 anyway is not written back: one canonical text */
    model_mark_explicit_names(m);
    return ERR_OK;
}

int model_parse(struct model *m, const char *text, const char *file, struct error *err)
{
    struct parse_state *ps = calloc(1, sizeof *ps);
    file = file ? file : "model";
    memset(m, 0, sizeof *m);
    if (!ps)
        return error_set(err, ERR_INTERNAL, "out of memory");
    *ps = (struct parse_state){.m = m, .file = file, .output = -1};
    const char *p = text;
    int rc = ERR_OK;
    for (int lineno = 1; *p && rc == ERR_OK; lineno++) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        if (!is_blank(p, len))
            rc = add_statement(ps, p, len, lineno, err);
        p += len + (nl != NULL);
    }
    if (rc == ERR_OK && m->n_layers == 0)
        rc = error_set(err, ERR_INPUT, "%s: empty model: the first line must be Input(shape=(H, W, C))", file);
    if (rc == ERR_OK)
        rc = assign_names(m, ps, err);
    if (rc == ERR_OK && ps->functional) {
        m->functional = 1;
        rc = model_keep_ancestors(m, ps->output < 0 ? m->n_layers - 1 : ps->output, file, err);
    }
    free(ps);
    return rc ? rc : model_infer(m, file, err);
}

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
    int ident = is_ident_start(n[0]);
    for (const char *c = n; *c && ident; c++)
        ident = is_ident_char(*c);
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

/* model_syntax.c: the Keras call syntax of model files and --callback options: the lexer (numbers, strings, names,
 * punctuation), values (tuples, nested pairs, calls such as l2(1e-4)), argument lists, and the layer kinds by name
 * with "did you mean" suggestions. */
#include "model_syntax.h"
#include "model.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ lexer */

int syntax_error(const struct lexer *lx, int col, struct error *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return error_set(err, ERR_INPUT, "%s:%d:%d: %s", lx->a->file, lx->a->line, col, what);
}

int syntax_ident_start(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
int syntax_ident_char(int c) { return syntax_ident_start(c) || is_digit(c); }
static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* How a token reads in a message. */
const char *syntax_tok_text(const struct tok *t, char *buf, size_t size)
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
    while (p < lx->len && (syntax_ident_char(s[p]) || s[p] == '.'))
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

int syntax_next(struct lexer *lx, struct error *err)
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
    if (syntax_ident_start(c)) {
        int p = lx->pos;
        while (p < lx->len && syntax_ident_char(lx->s[p]))
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
enum tok_kind syntax_peek(const struct lexer *lx)
{
    struct lexer copy = *lx;
    if (syntax_next(&copy, NULL) != ERR_OK)
        return TOK_END;
    return copy.t.kind;
}

int syntax_is(const struct tok *t, const char *word)
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
    if ((rc = syntax_next(lx, err)))
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
            if (lx->t.kind == TOK_COMMA && (rc = syntax_next(lx, err)))
                return rc;
            continue;
        }
        if (lx->t.kind != TOK_INT && lx->t.kind != TOK_FLOAT)
            return syntax_error(lx, lx->t.col, err, "tuples hold numbers: expected a number, found %s",
                                syntax_tok_text(&lx->t, buf, sizeof buf));
        if (x->n_tuple == ARG_TUPLE_MAX)
            return syntax_error(lx, lx->t.col, err, "tuple with more than %d elements", ARG_TUPLE_MAX);
        if (lx->t.kind == TOK_FLOAT && !x->tuple_float) {
            x->tuple_float = 1;
            x->float_col = lx->t.col;
        }
        x->tuple_num[x->n_tuple] = lx->t.num;
        x->tuple[x->n_tuple++] = lx->t.kind == TOK_INT ? (long)lx->t.num : 0;
        if ((rc = syntax_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            comma = 1;
            if ((rc = syntax_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')' in tuple, found %s",
                                syntax_tok_text(&lx->t, buf, sizeof buf));
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
    return syntax_next(lx, err);
}

/* After the identifier that is the current token: `.name` parts then '(' (a call such as regularizers.l2(1e-4)).
 * Nothing is consumed. */
static int lex_call_follows(const struct lexer *lx)
{
    int p = lx->pos;
    while (p + 1 < lx->len && lx->s[p] == '.' && syntax_ident_start(lx->s[p + 1]))
        for (p++; p < lx->len && syntax_ident_char(lx->s[p]); p++)
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
        for (lx->pos++; lx->pos < lx->len && syntax_ident_char(lx->s[lx->pos]); lx->pos++)
            ;
    int len = (int)(lx->s + lx->pos - start);
    if (len >= (int)sizeof x->str)
        return syntax_error(lx, col, err, "name longer than %zu characters", sizeof x->str - 1);
    x->type = ARG_CALL;
    memcpy(x->str, start, (size_t)len);
    x->str[len] = '\0';
    x->n_call = 0;
    if ((rc = syntax_next(lx, err)) || (rc = syntax_next(lx, err))) /* '(' and the token after it */
        return rc;
    while (lx->t.kind != TOK_RPAREN) {
        if (x->n_call == ARG_CALL_MAX)
            return syntax_error(lx, lx->t.col, err, "%s: more than %d arguments", x->str, ARG_CALL_MAX);
        int i = x->n_call;
        x->call[i].col = lx->t.col;
        x->call[i].key[0] = '\0';
        if (lx->t.kind == TOK_IDENT && syntax_peek(lx) == TOK_EQUALS) {
            snprintf(x->call[i].key, sizeof x->call[i].key, "%.*s", lx->t.len, lx->t.start);
            seen_kw = 1;
            if ((rc = syntax_next(lx, err)) || (rc = syntax_next(lx, err)))
                return rc;
        } else if (seen_kw) {
            return syntax_error(lx, lx->t.col, err, "positional argument follows keyword argument");
        }
        if (lx->t.kind != TOK_INT && lx->t.kind != TOK_FLOAT)
            return syntax_error(lx, lx->t.col, err, "%s: expected a number, found %s", x->str,
                                syntax_tok_text(&lx->t, buf, sizeof buf));
        x->call[x->n_call++].num = lx->t.num;
        if ((rc = syntax_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = syntax_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')' after an argument of %s, found %s", x->str,
                                syntax_tok_text(&lx->t, buf, sizeof buf));
        }
    }
    return syntax_next(lx, err);
}

static int parse_tuple(struct lexer *lx, struct arg *x, struct error *err) { return parse_tuple_at(lx, x, 0, err); }

/* One value into x; on return the current token is the one after it. */
int syntax_value(struct lexer *lx, struct arg *x, struct error *err)
{
    char buf[64];
    struct tok *t = &lx->t;
    switch (t->kind) {
    case TOK_INT:
    case TOK_FLOAT:
        x->type = t->kind == TOK_INT ? ARG_INT : ARG_FLOAT;
        x->num = t->num;
        return syntax_next(lx, err);
    case TOK_STRING:
        if (t->len >= (int)sizeof x->str)
            return syntax_error(lx, t->col, err, "string longer than %zu characters", sizeof x->str - 1);
        x->type = ARG_STRING;
        memcpy(x->str, t->start, (size_t)t->len);
        x->str[t->len] = '\0';
        return syntax_next(lx, err);
    case TOK_LPAREN:
        return parse_tuple(lx, x, err);
    case TOK_IDENT:
        if (syntax_is(t, "None") || syntax_is(t, "True") || syntax_is(t, "False")) {
            x->type = syntax_is(t, "None") ? ARG_NONE : ARG_BOOL;
            x->num = syntax_is(t, "True");
            return syntax_next(lx, err);
        }
        if (lex_call_follows(lx))
            return parse_call_value(lx, x, err);
        return syntax_error(lx, t->col, err, "expected a value, found '%.*s' (strings need quotes: '%.*s')",
                            t->len, t->start, t->len, t->start);
    default:
        return syntax_error(lx, t->col, err, "expected a value, found %s", syntax_tok_text(t, buf, sizeof buf));
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
    if (lx->t.kind == TOK_IDENT && syntax_peek(lx) == TOK_EQUALS) {
        if (lx->t.len >= (int)sizeof x->key)
            return syntax_error(lx, x->col, err, "unknown argument '%.*s'", lx->t.len, lx->t.start);
        memcpy(x->key, lx->t.start, (size_t)lx->t.len);
        x->key[lx->t.len] = '\0';
        for (int i = 0; i < a->n; i++)
            if (strcmp(a->a[i].key, x->key) == 0)
                return syntax_error(lx, x->col, err, "keyword argument '%s' repeated", x->key);
        *seen_kw = 1;
        if ((rc = syntax_next(lx, err)) || (rc = syntax_next(lx, err)))
            return rc;
    } else if (*seen_kw) {
        return syntax_error(lx, x->col, err, "positional argument follows keyword argument");
    }
    rc = syntax_value(lx, x, err);
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
            return syntax_next(lx, err);
        if (lx->t.kind == TOK_END)
            return syntax_error(lx, lx->t.col, err, "expected ')', found end of line");
        if ((rc = parse_arg(lx, &seen_kw, err)))
            return rc;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = syntax_next(lx, err)))
                return rc;
        } else if (lx->t.kind == TOK_END) {
            return syntax_error(lx, lx->t.col, err, "expected ')', found end of line");
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')', found %s",
                                syntax_tok_text(&lx->t, buf, sizeof buf));
        }
    }
}

/* `Name(args)` from the current token into lx->a; on return the current token is the one after ')'. */
int syntax_call(struct lexer *lx, struct error *err)
{
    char buf[64];
    struct args *a = lx->a;
    int rc;
    if (lx->t.kind != TOK_IDENT)
        return syntax_error(lx, lx->t.col, err, "expected a layer such as Conv2D(...), found %s",
                            syntax_tok_text(&lx->t, buf, sizeof buf));
    a->col = lx->t.col;
    snprintf(a->layer, sizeof a->layer, "%.*s", lx->t.len, lx->t.start);
    if (lx->t.len >= (int)sizeof a->layer)
        return syntax_error(lx, a->col, err, "unknown layer '%.*s'", lx->t.len, lx->t.start);
    if ((rc = syntax_next(lx, err)))
        return rc;
    if (lx->t.kind != TOK_LPAREN)
        return syntax_error(lx, lx->t.col, err, "expected '(' after '%s', found %s", a->layer,
                            syntax_tok_text(&lx->t, buf, sizeof buf));
    return (rc = syntax_next(lx, err)) ? rc : parse_arglist(lx, err);
}

/* `Name(args)` on one line (already known not to be blank) into lx->a, nothing after it. */
static int parse_call(struct lexer *lx, struct error *err)
{
    char buf[64];
    int rc;
    if ((rc = syntax_next(lx, err)) || (rc = syntax_call(lx, err)))
        return rc;
    if (lx->t.kind != TOK_END)
        return syntax_error(lx, lx->t.col, err, "unexpected %s after ')': one layer per line",
                            syntax_tok_text(&lx->t, buf, sizeof buf));
    return ERR_OK;
}

int model_parse_call(const char *text, struct args *a, struct error *err)
{
    struct lexer lx = {.s = text, .len = (int)strlen(text), .a = a};
    a->n = 0;
    return parse_call(&lx, err);
}

/* A line that holds nothing but blanks and perhaps a comment. */
int syntax_blank(const char *s, int len)
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

const struct layer_ops *syntax_kind(const char *name)
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
int syntax_unknown_layer(const struct lexer *lx, struct error *err)
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

/* model_syntax.h: the Keras call syntax shared by the model-file reader (model_parse.c), model_parse_call (--callback)
 * and the canonical text (model.c): tokens, one line's lexer, values and calls. Internal to kernels/model/. */
#ifndef TRAINER_MODEL_SYNTAX_H
#define TRAINER_MODEL_SYNTAX_H

#include "args.h"
#include "error.h"
#include "layer.h"

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
int syntax_error(const struct lexer *lx, int col, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Python's identifier characters (ASCII). */
int syntax_ident_start(int c);
int syntax_ident_char(int c);
/* How a token reads in a message: 'text' or "end of line". */
const char *syntax_tok_text(const struct tok *t, char *buf, size_t size);
/* The next token into lx->t; ERR_INPUT with the column for a malformed one. */
int syntax_next(struct lexer *lx, struct error *err);
/* The kind of the token after the current one, without consuming anything. */
enum tok_kind syntax_peek(const struct lexer *lx);
/* Whether t is the identifier `word`. */
int syntax_is(const struct tok *t, const char *word);
/* One value (number, string, tuple, None/True/False, a call such as l2(1e-4)) into x; on return the current token
 * is the one after it. */
int syntax_value(struct lexer *lx, struct arg *x, struct error *err);
/* `Name(args)` from the current token into lx->a; on return the current token is the one after ')'. */
int syntax_call(struct lexer *lx, struct error *err);
/* A line that holds nothing but blanks and perhaps a comment. */
int syntax_blank(const char *s, int len);
/* The layer kind of a name or of one of Keras's aliases (Convolution2D ...); NULL when unknown. */
const struct layer_ops *syntax_kind(const char *name);
/* "unknown layer 'Conv3D' (did you mean 'Conv2D'?)" at the call's column. */
int syntax_unknown_layer(const struct lexer *lx, struct error *err);

#endif

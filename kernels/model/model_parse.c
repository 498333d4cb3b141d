/* model_parse.c: the model-file reader: one layer a line (a chain), or Keras's functional statements (`x =
 * Layer(...)(inputs)`, names bound again as in Python, `Model(inputs=..., outputs=...)`); layer names as Keras gives
 * them; then model_infer. */
#include "model.h"
#include "model_syntax.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        return syntax_error(lx, lx->t.col, err, "expected a tensor name, found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
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
    if ((rc = syntax_next(lx, err)))
        return rc;
    list = lx->t.kind == TOK_LBRACKET;
    if (list && (rc = syntax_next(lx, err)))
        return rc;
    for (;;) {
        if (spec->n_inputs == LAYER_MAX_INPUTS)
            return syntax_error(lx, lx->t.col, err, "more than %d inputs", LAYER_MAX_INPUTS);
        if ((rc = use_name(ps, lx, &spec->inputs[spec->n_inputs], err)))
            return rc;
        spec->n_inputs++;
        if ((rc = syntax_next(lx, err)))
            return rc;
        if (!list || lx->t.kind != TOK_COMMA)
            break;
        if ((rc = syntax_next(lx, err)))
            return rc;
        if (lx->t.kind == TOK_RBRACKET)
            break;
    }
    if (list) {
        if (lx->t.kind != TOK_RBRACKET)
            return syntax_error(lx, lx->t.col, err, "expected ',' or ']', found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
        if ((rc = syntax_next(lx, err)))
            return rc;
    }
    if (lx->t.kind != TOK_RPAREN)
        return syntax_error(lx, lx->t.col, err, "expected ')', found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
    return syntax_next(lx, err);
}

/* `Model(inputs=a, outputs=b)` (keywords or positions, a name or a list of one): checks that the inputs are
 * the Input and records the output. The current token is the one after 'Model'. */
static int parse_model_stmt(struct parse_state *ps, struct lexer *lx, struct error *err)
{
    char buf[64];
    int rc, pos = 0;
    if (lx->t.kind != TOK_LPAREN)
        return syntax_error(lx, lx->t.col, err, "expected '(' after 'Model', found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
    if ((rc = syntax_next(lx, err)))
        return rc;
    while (lx->t.kind != TOK_RPAREN) {
        int outputs = pos == 1, col = lx->t.col;
        if (lx->t.kind == TOK_IDENT && syntax_peek(lx) == TOK_EQUALS) {
            if (syntax_is(&lx->t, "outputs"))
                outputs = 1;
            else if (syntax_is(&lx->t, "inputs"))
                outputs = 0;
            else if (syntax_is(&lx->t, "name")) {
                /* The model's name: accepted and not kept (Keras files carry their own). */
                struct arg ignored;
                if ((rc = syntax_next(lx, err)) || (rc = syntax_next(lx, err)) || (rc = syntax_value(lx, &ignored, err)))
                    return rc;
                goto next;
            } else
                return syntax_error(lx, col, err, "Model() takes inputs= and outputs=, not '%.*s'", lx->t.len, lx->t.start);
            if ((rc = syntax_next(lx, err)) || (rc = syntax_next(lx, err)))
                return rc;
        }
        int list = lx->t.kind == TOK_LBRACKET, layer, n = 0;
        if (list && (rc = syntax_next(lx, err)))
            return rc;
        do {
            if (n > 0 && (rc = syntax_next(lx, err)))
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
            if ((rc = syntax_next(lx, err)))
                return rc;
        } while (list && lx->t.kind == TOK_COMMA);
        if (list) {
            if (lx->t.kind != TOK_RBRACKET)
                return syntax_error(lx, lx->t.col, err, "expected ']', found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
            if ((rc = syntax_next(lx, err)))
                return rc;
        }
    next:
        pos++;
        if (lx->t.kind == TOK_COMMA) {
            if ((rc = syntax_next(lx, err)))
                return rc;
        } else if (lx->t.kind != TOK_RPAREN) {
            return syntax_error(lx, lx->t.col, err, "expected ',' or ')', found %s", syntax_tok_text(&lx->t, buf, sizeof buf));
        }
    }
    if ((rc = syntax_next(lx, err)))
        return rc;
    if (lx->t.kind != TOK_END)
        return syntax_error(lx, lx->t.col, err, "unexpected %s after ')'", syntax_tok_text(&lx->t, buf, sizeof buf));
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
    if ((rc = syntax_next(&lx, err)))
        return rc;
    int assign = lx.t.kind == TOK_IDENT && syntax_peek(&lx) == TOK_EQUALS;
    if (ps->model_line)
        return syntax_error(&lx, 1, err, "nothing may follow Model(...)");
    if (m->n_layers == 0)
        ps->functional = assign;
    if (syntax_is(&lx.t, "Model") && ps->functional)
        return syntax_next(&lx, err) ? err->code : parse_model_stmt(ps, &lx, err);
    if (assign) {
        if (!ps->functional)
            return syntax_error(&lx, lx.t.col, err, "'%.*s = ...' in a file of one layer a line: write the whole model "
                                "in functional form (inputs = Input(...) first)", lx.t.len, lx.t.start);
        target = lx.t;
        if ((rc = syntax_next(&lx, err)) || (rc = syntax_next(&lx, err)))
            return rc;
        if (syntax_is(&lx.t, "Model"))
            return syntax_next(&lx, err) ? err->code : parse_model_stmt(ps, &lx, err);
    } else if (ps->functional) {
        return syntax_error(&lx, lx.t.col, err, "expected 'name = Layer(...)(inputs)': this file is functional");
    }
    if (m->n_layers == MODEL_MAX_LAYERS)
        return syntax_error(&lx, 1, err, "more than %d layers", MODEL_MAX_LAYERS);
    if ((rc = syntax_call(&lx, err)))
        return rc;
    const struct layer_ops *ops = syntax_kind(a.layer);
    if (!ops)
        return syntax_unknown_layer(&lx, err);
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
                                a.layer, syntax_tok_text(&lx.t, buf, sizeof buf));
        if ((rc = parse_inputs(ps, &lx, spec, err)))
            return rc;
    }
    if (lx.t.kind != TOK_END)
        return syntax_error(&lx, lx.t.col, err, "unexpected %s after ')': one layer per line",
                            syntax_tok_text(&lx.t, buf, sizeof buf));
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
        if (!syntax_blank(p, len))
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


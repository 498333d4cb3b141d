/* model.h: a model as a list of layer specs, read from the Keras-call model-file syntax or a preset name,
 * with shapes and parameter counts inferred. */
#ifndef TRAINER_MODEL_H
#define TRAINER_MODEL_H

#include <stddef.h>

#include "layer.h"

#define MODEL_MAX_LAYERS 256

struct model {
    int n_layers;                 /* layers[0] is the Input, the last is the output; topological order */
    struct layer_spec layers[MODEL_MAX_LAYERS];
    size_t n_params;              /* total parameter count (slab size) */
    int n_classes;                /* units of the final softmax */
    int functional;               /* written in functional form (`x = Layer(...)(inputs)`), or a graph: the
                                     text and Keras config keep that form (class Functional) */
    char warning[512];            /* what the reader dropped (layers whose output nothing reads), for the
                                     caller to show; empty if nothing */
    char text[65536];             /* the model file text, canonical (one statement per line), as reloadable */
};

/* Parses model-file text. `file` names it in messages. Assigns Keras-style unique names, infers shapes and
 * parameter offsets (model_infer). ERR_INPUT with "FILE:LINE:COL: what" on any problem. */
int model_parse(struct model *m, const char *text, const char *file, struct error *err);

/* One Keras call `Name(args)` on one line of text (a model-file line, or a `--callback` option) into *a
 * (a->file and a->line name it in messages; a->layer is the name). ERR_INPUT "FILE:LINE:COL: what". */
int model_parse_call(const char *text, struct args *a, struct error *err);

/* `name_or_path` is a preset name (cifar10-cnn, fashion-cnn, gap-cnn) or a model file (at most 64 KiB;
 * unreadable: ERR_INPUT "PATH: cannot read: reason"). */
int model_load(struct model *m, const char *name_or_path, struct error *err);

/* The text of a preset, or NULL. */
const char *model_preset_text(const char *name);
/* NULL-terminated list of preset names. */
extern const char *const model_preset_names[];

/* From the Input down: shapes, parameter infos and slab offsets, the final softmax (softmax_in_loss on the
 * last layer) and n_classes, then m->text. Also used after building specs from a Keras model_config (each
 * spec needs ops, u, name; line 0 when not from a text file). Errors are "FILE:LINE: NAME: what". */
int model_infer(struct model *m, const char *file, struct error *err);

/* Keeps the layers whose output reaches layer `output` (which becomes the last) and drops the rest, saying so
 * in m->warning (Keras drops them silently). Indices in inputs[] are renumbered. Before model_infer. */
int model_keep_ancestors(struct model *m, int output, const char *file, struct error *err);

/* Names the layers that were not named explicitly as Keras 2 does: the kind's prefix and a per-kind counter that
 * only such layers advance (conv2d_1, conv2d_2, dense_1 ...). */
void model_auto_names(struct model *m);

/* For a model whose names came from elsewhere (a Keras file): marks the names that differ from the ones the
 * model-file reader would give (conv2d_1 ...) as explicit, so that the model text keeps them. */
void model_mark_explicit_names(struct model *m);

/* Whether every layer reads the one before it (a chain: the one-layer-a-line form can write it). */
int model_is_chain(const struct model *m);

/* Elements of the slab that are moving averages (Keras's non-trainable weights). */
size_t model_moving_params(const struct model *m);

struct optim;
/* Tells the optimizer which parts of the slab are moving averages (optim_add_moving), after optim_init. */
int model_mark_moving(const struct model *m, struct optim *o, struct error *err);

#endif

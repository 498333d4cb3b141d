/* keras_layers.h: each layer kind's Keras config, both ways, one table row a kind (keras_layers.c), for the whole-model
 * reader and writer (keras_config.c). Internal to kernels/model/. */
#ifndef TRAINER_KERAS_LAYERS_H
#define TRAINER_KERAS_LAYERS_H

#include <jansson.h>

#include "args.h"
#include "layer.h"

/* Keras model_config JSON for one kind: to_json adds the kind's keys after name/trainable; from_json rejects
 * options the trainer cannot honour and fills `a` with the arguments the kind's parse() reads, so a Keras
 * file and a model file go through the same parser. `where` is "FILE: model_config: LAYER" for messages. */
struct keras_kind {
    const struct layer_ops *ops;
    int (*to_json)(const struct layer_spec *s, json_t *cfg);
    int (*from_json)(json_t *cfg, struct args *a, const char *where, struct error *err);
};

/* The row of a kind, by its ops or by its Keras class name (the model-file name); NULL when Keras has no row. */
const struct keras_kind *keras_kind_by_ops(const struct layer_ops *ops);
const struct keras_kind *keras_kind_by_class(const char *class_name);

/* json_object_set_new, which takes ownership even on failure, as 0 or -1: a chain of calls needs one check. */
int keras_set(json_t *obj, const char *key, json_t *value);
/* A JSON value as a Keras user wrote it: [2, 2] as (2, 2), strings quoted, null as None. */
void keras_value_text(json_t *v, char *buf, size_t size);

#endif

/* keras_config.h: a model as Keras `model_config` JSON, both ways: Sequential for chains, Model/Functional with
 * inbound_nodes for graphs. The model in another syntax, beside the model-file reader; jansson stays inside. */
#ifndef TRAINER_KERAS_CONFIG_H
#define TRAINER_KERAS_CONFIG_H

#include "error.h"
#include "model.h"

/* Builds a model from Keras model_config JSON text (Sequential, Model or Functional). `file` names it in
 * messages: ERR_INPUT "FILE: model_config: ..." naming the layer and what is not supported. */
int keras_config_to_model(const char *json, const char *file, struct model *m, struct error *err);
/* The Keras model_config JSON of m (malloc'd string): Sequential for a chain written a layer a line, Functional
 * otherwise. NULL when out of memory. */
char *keras_config_from_model(const struct model *m);

#endif

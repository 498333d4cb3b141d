/* test_keras_config.c: Keras 2 Sequential model_config JSON that the reader must refuse (with the layer and
 * the option named) and the forms it takes: Keras 2.2.3+'s InputLayer, tf.keras's BatchNormalization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint.h"

static void assert_ok(int rc, const struct error *err)
{
    if (rc != ERR_OK)
        fail_msg("rc %d: %s", rc, err->msg);
}

/* ---- model_config that cannot be honoured, and the forms that can ----------------------------------- */

#define CONV_FIRST                                                                                              \
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", \"batch_input_shape\": [null, 8, 8, 3], " \
    "\"filters\": 2, \"kernel_size\": [3, 3], \"activation\": \"relu\"}}"
#define DENSE_LAST \
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": 4, \"activation\": \"softmax\"}}"
#define FLATTEN "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten_1\"}}"
#define SEQ(...) "{\"class_name\": \"Sequential\", \"config\": [" __VA_ARGS__ "]}"

static void assert_refused(const char *json, const char *want)
{
    struct model m;
    struct error err = {0};
    assert_int_equal(keras_config_to_model(json, "k.h5", &m, &err), ERR_INPUT);
    if (strcmp(err.msg, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", err.msg, want);
}

static void test_unsupported_config(void **state)
{
    (void)state;
    assert_refused(SEQ(CONV_FIRST ", {\"class_name\": \"BatchNormalization\", \"config\": {\"name\": "
                                  "\"batch_normalization_1\", \"axis\": -1, \"renorm\": true}}, " FLATTEN ", " DENSE_LAST),
                   "k.h5: model_config: batch_normalization_1: renorm true is not supported");
    assert_refused(SEQ(CONV_FIRST ", {\"class_name\": \"BatchNormalization\", \"config\": {\"name\": "
                                  "\"batch_normalization_1\", \"axis\": 1}}, " FLATTEN ", " DENSE_LAST),
                   "k.h5: batch_normalization_1: axis=1 is not the channel axis of a (h, w, c) input "
                   "(use -1 or 3)");
    assert_refused(SEQ(CONV_FIRST ", {\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_3\", "
                                  "\"filters\": 2, \"kernel_size\": [3, 3], \"dilation_rate\": [2, 2]}}, " FLATTEN
                                  ", " DENSE_LAST),
                   "k.h5: model_config: conv2d_3: dilation_rate (2, 2) is not supported");
    assert_refused(SEQ(CONV_FIRST ", {\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"mp\", "
                                  "\"pool_size\": [2, 2], \"data_format\": \"channels_first\"}}, " FLATTEN
                                  ", " DENSE_LAST),
                   "k.h5: model_config: mp: data_format 'channels_first' is not supported");
    assert_refused(SEQ(CONV_FIRST ", " FLATTEN ", {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
                                  "\"units\": 4, \"activation\": \"elu\"}}"),
                   "k.h5: model_config: d: activation 'elu' is not supported");
    assert_refused(SEQ(CONV_FIRST ", {\"class_name\": \"Dropout\", \"config\": {\"name\": \"dropout_1\", "
                                  "\"rate\": 0.5, \"noise_shape\": [1, 1, 1, 2]}}, " FLATTEN ", " DENSE_LAST),
                   "k.h5: model_config: dropout_1: noise_shape (1, 1, 1, 2) is not supported");
    assert_refused("{\"class_name\": \"Model\", \"config\": {\"layers\": []}}", "k.h5: model_config: no layers");
    assert_refused("{\"class_name\": \"Subclassed\", \"config\": {\"layers\": []}}",
                   "k.h5: model_config: model class 'Subclassed' is not supported (Sequential, Model and Functional "
                   "are)");
    assert_refused(SEQ("{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": 4}}"),
                   "k.h5: model_config: the first layer has no batch_input_shape");

    /* Keras 2.2.3+ form: config is {"name", "layers"} and the input is an InputLayer. */
    struct model m;
    struct error err = {0};
    assert_ok(keras_config_to_model("{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential_1\", "
                                    "\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
                                    "{\"batch_input_shape\": [null, 8, 8, 3], \"dtype\": \"float32\", "
                                    "\"sparse\": false, \"name\": \"input_1\"}}, "
                                    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", "
                                    "\"filters\": 2, \"kernel_size\": [3, 3]}}, " FLATTEN ", " DENSE_LAST "]}}",
                                    "k.h5", &m, &err),
              &err);
    assert_int_equal(m.n_layers, 4);
    assert_int_equal(m.layers[0].out.h, 8);
    assert_int_equal(m.layers[2].out.c, 6 * 6 * 2);
    assert_int_equal(m.n_params, 3 * 3 * 3 * 2 + 2 + 72 * 4 + 4);

    /* tf.keras 2.x's BatchNormalization: axis as a list, its extra options at their defaults. */
    assert_ok(keras_config_to_model(SEQ(CONV_FIRST ", {\"class_name\": \"BatchNormalization\", \"config\": "
                                        "{\"name\": \"batch_normalization\", \"trainable\": true, \"dtype\": "
                                        "\"float32\", \"axis\": [3], \"momentum\": 0.9, \"epsilon\": 0.0001, "
                                        "\"center\": true, \"scale\": false, \"beta_initializer\": {\"class_name\": "
                                        "\"Zeros\", \"config\": {}}, \"renorm\": false, \"virtual_batch_size\": "
                                        "null, \"adjustment\": null}}, " FLATTEN ", " DENSE_LAST),
                                    "k.h5", &m, &err),
              &err);
    const struct layer_spec *bn = &m.layers[2];
    assert_ptr_equal(bn->ops, &layer_batchnorm);
    assert_string_equal(bn->name, "batch_normalization");
    assert_true(bn->u.bn.axis == 3 && bn->u.bn.momentum == 0.9 && bn->u.bn.epsilon == 1e-4);
    assert_true(bn->u.bn.center && !bn->u.bn.scale);
    assert_int_equal(bn->n_params, 3); /* beta, moving_mean, moving_variance */
    assert_int_equal(model_moving_params(&m), 2 * 2);
}

/* ---- kernel_regularizer ----------------------------------------------------------------------------------- */

#define CONV_REG(reg)                                                                                           \
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", \"batch_input_shape\": [null, 8, 8, 3], " \
    "\"filters\": 2, \"kernel_size\": [3, 3], \"kernel_regularizer\": " reg "}}"
#define DENSE_REG(reg)                                                                                           \
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": 4, \"activation\": \"softmax\", " \
    "\"kernel_regularizer\": " reg "}}"

static void assert_regularizers(const char *json, double l1, double l2)
{
    struct model m;
    struct error err = {0};
    assert_ok(keras_config_to_model(json, "k.h5", &m, &err), &err);
    const struct regularizer *c = &m.layers[1].u.conv.kernel_reg, *d = &m.layers[3].u.dense.kernel_reg;
    if (c->l1 != l1 || c->l2 != l2 || d->l1 != l1 || d->l2 != l2)
        fail_msg("conv (%.17g, %.17g) dense (%.17g, %.17g), want (%.17g, %.17g)\n%s", c->l1, c->l2, d->l1, d->l2, l1,
                 l2, json);
}

static void test_kernel_regularizer(void **state)
{
    (void)state;
    /* Keras 2.1-2.2: L1L2 with both factors, float32 values as Python prints them. */
#define K2 "{\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.0, \"l2\": 9.999999747378752e-05}}"
    assert_regularizers(SEQ(CONV_REG(K2) ", " FLATTEN ", " DENSE_REG(K2)), 0, 9.999999747378752e-05);
    /* tf.keras 2.x and Keras 3 (with module and registered_name). */
#define TF2 "{\"class_name\": \"L2\", \"config\": {\"l2\": 0.0005000000237487257}}"
    assert_regularizers(SEQ(CONV_REG(TF2) ", " FLATTEN ", " DENSE_REG(TF2)), 0, 0.0005000000237487257);
#define K3 "{\"module\": \"keras.regularizers\", \"class_name\": \"L1\", \"config\": {\"l1\": 0.25}, " \
           "\"registered_name\": null}"
    assert_regularizers(SEQ(CONV_REG(K3) ", " FLATTEN ", " DENSE_REG(K3)), 0.25, 0);
#define BOTH "{\"class_name\": \"L1L2\", \"config\": {\"l1\": 1e-05, \"l2\": 0.0001}}"
    assert_regularizers(SEQ(CONV_REG(BOTH) ", " FLATTEN ", " DENSE_REG(BOTH)), 1e-5, 1e-4);
    assert_regularizers(SEQ(CONV_REG("null") ", " FLATTEN ", " DENSE_REG("null")), 0, 0);

    /* Written back in Keras 2.1's form; none stays null. */
    struct model m, m2;
    struct error err = {0};
    assert_ok(model_parse(&m, "Input(shape=(8, 8, 3))\nConv2D(2, 3, kernel_regularizer=l2(1e-4))\nFlatten()\n"
                              "Dense(4, activation='softmax', kernel_regularizer=l1_l2(l1=0.5, l2=0.25))\n",
                          "m.txt", &err),
              &err);
    char *json = keras_config_from_model(&m);
    assert_non_null(json);
    if (!strstr(json, "\"kernel_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.0, \"l2\": "
                      "0.0001}}, \"bias_regularizer\": null") ||
        !strstr(json, "\"kernel_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": 0.5, \"l2\": 0.25}}"))
        fail_msg("%s", json);
    assert_ok(keras_config_to_model(json, "k.h5", &m2, &err), &err);
    assert_string_equal(m2.text, m.text);
    free(json);
    assert_ok(model_parse(&m, "Input(shape=(8, 8, 3))\nConv2D(2, 3)\nFlatten()\nDense(4, activation='softmax')\n",
                          "m.txt", &err),
              &err);
    json = keras_config_from_model(&m);
    assert_non_null(json);
    if (strstr(json, "L1L2") || !strstr(json, "\"kernel_regularizer\": null"))
        fail_msg("%s", json);
    free(json);

    assert_refused(SEQ(CONV_REG("{\"class_name\": \"OrthogonalRegularizer\", \"config\": {\"factor\": 0.01}}")
                       ", " FLATTEN ", " DENSE_LAST),
                   "k.h5: model_config: conv2d_1: kernel_regularizer "
                   "{\"class_name\":\"OrthogonalRegularizer\",\"config\":{\"factor\":0.01}} is not supported");
    assert_refused(SEQ(CONV_REG("{\"class_name\": \"L2\", \"config\": {\"l2\": -0.5}}") ", " FLATTEN ", " DENSE_LAST),
                   "k.h5: model_config: conv2d_1: Conv2D: L2: 'l2' must be a finite number >= 0");
    assert_refused(SEQ(CONV_REG("{\"class_name\": \"L2\", \"config\": {\"l1\": 0.5}}") ", " FLATTEN ", " DENSE_LAST),
                   "k.h5: model_config: conv2d_1: Conv2D: L2: unknown argument 'l1'");
    assert_refused(SEQ(CONV_FIRST ", " FLATTEN ", {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
                                  "\"units\": 4, \"activation\": \"softmax\", \"bias_regularizer\": {\"class_name\": "
                                  "\"L2\", \"config\": {\"l2\": 0.01}}}}"),
                   "k.h5: model_config: d: bias_regularizer {\"class_name\":\"L2\",\"config\":{\"l2\":0.01}} is not "
                   "supported");
    assert_refused(SEQ(CONV_FIRST ", " FLATTEN ", {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
                                  "\"units\": 4, \"activation\": \"softmax\", "
                                  "\"activity_regularizer\": {\"class_name\": \"L1\", \"config\": {\"l1\": 0.01}}}}"),
                   "k.h5: model_config: d: activity_regularizer {\"class_name\":\"L1\",\"config\":{\"l1\":0.01}} is "
                   "not supported");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported_config),
        cmocka_unit_test(test_kernel_regularizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

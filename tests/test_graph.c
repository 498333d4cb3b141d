/* test_graph.c: models as graphs. Gradients through Add, Concatenate and ZeroPadding2D of a tensor read three
 * times against central differences; a functional file of a chain trains to the bits of the same chain written
 * one layer a line; the functional syntax and its errors; Keras Model/Functional configs both ways and their
 * errors; the ResNet presets. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "model.h"
#include "net.h"
#include "rng.h"

static struct model m1, m2;

static void parse_ok(struct model *m, const char *text)
{
    struct error err = {0};
    if (model_parse(m, text, "graph.model", &err) != ERR_OK)
        fail_msg("model_parse: %s\n--- text:\n%s", err.msg, text);
}

static void parse_fails(const char *text, const char *prefix, const char *what)
{
    struct error err = {0};
    int rc = model_parse(&m1, text, "graph.model", &err);
    if (rc != ERR_INPUT)
        fail_msg("expected ERR_INPUT, got %d (%s)\n--- text:\n%s", rc, err.msg, text);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || (what && !strstr(err.msg, what)))
        fail_msg("message \"%s\"\nwanted it to start with \"%s\" and contain \"%s\"", err.msg, prefix, what ? what : "");
}

/* `a` is read by b, by the Add and by the Concatenate: its gradient is the sum of three. Smooth activations
 * (no kinks for the differences to straddle); a stride-2 'same' Conv2D with an even kernel after an asymmetric
 * ZeroPadding2D; the Add and the Concatenate see inputs in the layouts the convolutions chose. */
static const char grad_model[] = "inputs = Input(shape=(6, 6, 2))\n"
                                 "a = Conv2D(4, 3, padding='same', activation='tanh')(inputs)\n"
                                 "b = Conv2D(4, 3, padding='same', activation='tanh')(a)\n"
                                 "s = Add()([a, b])\n"
                                 "c = Concatenate()([s, a])\n"
                                 "p = ZeroPadding2D(((1, 0), (0, 2)))(c)\n"
                                 "d = Conv2D(3, 2, strides=2, padding='same', activation='tanh')(p)\n"
                                 "e = Add()([d, d])\n"
                                 "f = Flatten()(e)\n"
                                 "outputs = Dense(3, activation='softmax')(f)\n";

enum { GB = 4, GSIDE = 6, GCH = 2, GCLASSES = 3 };

static struct net *make_net(const char *text, uint64_t seed)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    parse_ok(&m, text);
    if (net_create(&net, &m, &err) != ERR_OK)
        fail_msg("net_create: %s", err.msg);
    net_init_params(net, seed);
    return net;
}

static void batch(uint8_t *images, int32_t *labels, int64_t *ids, int n, int sample, int classes, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed, 0);
    for (int i = 0; i < n * sample; i++)
        images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < n; i++) {
        labels[i] = (int32_t)rng_below(&r, (uint64_t)classes);
        ids[i] = i;
    }
}

/* The batch's mean loss with the current weights. */
static double mean_loss(struct net *net, const struct net_batch *b)
{
    struct error err = {0};
    struct net_stats st = {0, 0};
    if (net_infer_batch(net, b, NULL, &st, &err) != ERR_OK)
        fail_msg("net_infer_batch: %s", err.msg);
    return st.loss_sum / b->n;
}

static void test_gradients_through_add_and_concatenate(void **state)
{
    (void)state;
    uint8_t images[GB * GSIDE * GSIDE * GCH];
    int32_t labels[GB];
    int64_t ids[GB];
    struct error err = {0};
    struct net_stats st;
    struct net *net = make_net(grad_model, 3);
    batch(images, labels, ids, GB, GSIDE * GSIDE * GCH, GCLASSES, 7);
    struct net_batch b = {GB, images, labels, ids, 0};
    assert_int_equal(net_train_batch(net, &b, GB, 1, 0, &st, &err), ERR_OK);
    float *grad = malloc(sizeof(float) * net->n_params);
    memcpy(grad, net->grads, sizeof(float) * net->n_params);
    int checked = 0;
    for (size_t i = 0; i < net->n_params; i += 3) {
        const float eps = 1e-2f, keep = net->params[i];
        net->params[i] = keep + eps;
        double up = mean_loss(net, &b);
        net->params[i] = keep - eps;
        double down = mean_loss(net, &b);
        net->params[i] = keep;
        double numeric = (up - down) / (2.0 * eps);
        if (fabs(grad[i] - numeric) > 2e-3 + 2e-2 * fabs(numeric))
            fail_msg("parameter %zu: backward %.6g, central difference %.6g", i, grad[i], numeric);
        checked++;
    }
    assert_true(checked > 100);
    free(grad);
    net_destroy(net);
}

/* The same three layers a line and as functional statements: the same weights after three SGD steps, bit for bit. */
static const char chain_text[] = "Input(shape=(6, 6, 2))\n"
                                 "Conv2D(8, 3, padding='same', activation='relu')\n"
                                 "MaxPooling2D(2)\n"
                                 "Flatten()\n"
                                 "Dense(3, activation='softmax')\n";
static const char chain_functional[] = "inputs = Input(shape=(6, 6, 2))\n"
                                       "x = Conv2D(8, 3, padding='same', activation='relu')(inputs)\n"
                                       "x = MaxPooling2D(2)(x)\n"
                                       "x = Flatten()(x)\n"
                                       "outputs = Dense(3, activation='softmax')(x)\n"
                                       "Model(inputs=inputs, outputs=outputs)\n";

static void train_three_steps(struct net *net)
{
    uint8_t images[GB * GSIDE * GSIDE * GCH];
    int32_t labels[GB];
    int64_t ids[GB];
    struct error err = {0};
    struct net_stats st;
    for (int step = 0; step < 3; step++) {
        batch(images, labels, ids, GB, GSIDE * GSIDE * GCH, GCLASSES, 20 + (uint64_t)step);
        struct net_batch b = {GB, images, labels, ids, 0};
        assert_int_equal(net_train_batch(net, &b, GB, 1, (uint64_t)step, &st, &err), ERR_OK);
        for (size_t i = 0; i < net->n_params; i++)
            net->params[i] -= 0.1f * net->grads[i];
    }
}

static void test_functional_chain_is_the_chain(void **state)
{
    (void)state;
    struct net *a = make_net(chain_text, 9), *b = make_net(chain_functional, 9);
    assert_int_equal(a->n_params, b->n_params);
    assert_int_equal(b->model.functional, 1);
    train_three_steps(a);
    train_three_steps(b);
    assert_memory_equal(a->params, b->params, sizeof(float) * a->n_params);
    net_destroy(a);
    net_destroy(b);
}

#define IN "inputs = Input(shape=(8, 8, 3))\n"
#define OUT "x = GlobalAveragePooling2D()(x)\noutputs = Dense(2, activation='softmax')(x)\n"

static void test_syntax(void **state)
{
    (void)state;
    /* names are rebound as in Python; name= names a layer; inputs in a list with a trailing comma */
    parse_ok(&m1, IN "x = Conv2D(4, 1, name='stem')(inputs)\ny = Conv2D(4, 1)(x)\nx = Add()([x, y,])\n" OUT);
    assert_int_equal(m1.n_layers, 6);
    assert_string_equal(m1.layers[1].name, "stem");
    assert_string_equal(m1.layers[2].name, "conv2d_1");
    assert_int_equal(m1.layers[3].n_inputs, 2);
    assert_int_equal(m1.layers[3].inputs[0], 1);
    assert_int_equal(m1.layers[3].inputs[1], 2);
    assert_int_equal(m1.layers[1].n_readers, 2);
    /* the canonical text parses back to itself */
    parse_ok(&m2, m1.text);
    assert_string_equal(m1.text, m2.text);
    assert_string_equal(m2.layers[1].name, "stem");
    /* ZeroPadding2D's three forms; Conv2D 'same' with stride 2 on an odd size */
    parse_ok(&m1, IN "x = ZeroPadding2D(2)(inputs)\nx = ZeroPadding2D((1, 0))(x)\nx = ZeroPadding2D(((0, 1), (2, 3)))(x)\n"
                     "x = Conv2D(4, 3, strides=2, padding='same')(x)\n" OUT);
    assert_int_equal(m1.layers[3].out.h, 8 + 4 + 2 + 1);
    assert_int_equal(m1.layers[3].out.w, 8 + 4 + 0 + 5);
    assert_int_equal(m1.layers[4].out.h, 8);
    assert_int_equal(m1.layers[4].out.w, 9);
    /* an unread layer is dropped, with a warning */
    parse_ok(&m1, IN "x = Conv2D(4, 1)(inputs)\nunused = Conv2D(4, 1, name='lost')(x)\n" OUT);
    assert_int_equal(m1.n_layers, 4);
    assert_non_null(strstr(m1.warning, "lost"));
    assert_non_null(strstr(m1.warning, "dropped"));
    /* Model(outputs=) names the output: what follows it in the graph is dropped */
    parse_ok(&m1, IN "x = Conv2D(4, 1)(inputs)\n" OUT "more = Dense(2, activation='softmax')(outputs)\n"
                     "Model(inputs=inputs, outputs=outputs)\n");
    assert_int_equal(m1.n_layers, 4);
    assert_non_null(strstr(m1.warning, "dense_2"));
}

static void test_syntax_errors(void **state)
{
    (void)state;
    parse_fails(IN "x = Conv2D(4, 1)(y)\n" OUT, "graph.model:2:18: name 'y' is not defined", NULL);
    parse_fails(IN "x = Conv2D(4, 1)(inputs)\ny = Conv2D(5, 1)(inputs)\nx = Add()([x, y])\n" OUT,
                "graph.model:4: add_1: Add of tensors of different shapes", "8x8x4 and 8x8x5");
    parse_fails(IN "x = MaxPooling2D(2)(inputs)\nx = Concatenate()([x, inputs])\n" OUT,
                "graph.model:3: concatenate_1: Concatenate of different heights or widths", NULL);
    parse_fails(IN "x = Conv2D(4, 1)(inputs)\n" OUT "Model(inputs=inputs, outputs=[outputs, x])\n", "graph.model:5:",
                "one output here");
    parse_fails(IN "x = Conv2D(4, 1)(inputs)\nConv2D(4, 1)\n" OUT, "graph.model:3:1:", "this file is functional");
    parse_fails("Input(shape=(8, 8, 3))\nx = Conv2D(4, 1)(inputs)\n", "graph.model:2:1:", "one layer a line");
    parse_fails(IN "x = Conv2D(4, 1)\n" OUT, "graph.model:2:17:", "the layer's input");
    parse_fails(IN "x = Conv2D(4, 1, name='a')(inputs)\nx = Conv2D(4, 1, name='a')(x)\n" OUT, "graph.model:3:",
                "two layers are named 'a'");
    parse_fails(IN "x = Add()(inputs)\n" OUT, "graph.model:2: add_1:", "at least two inputs");
    parse_fails(IN "x = Conv2D(4, 1)([inputs, inputs])\n" OUT, "graph.model:2: conv2d_1:", "one input");
    parse_fails(IN "x = Conv2D(4, 1, name='a/b')(inputs)\n" OUT, "graph.model:2:18:", "name must be");
    parse_fails(IN "i2 = Input(shape=(8, 8, 3))\n" OUT, "graph.model:2:6:", "a model has one input");
    parse_fails(IN "x = Concatenate(axis=1)([inputs, inputs])\n" OUT, "graph.model:2:", "channel axis");
}

/* A functional model through Keras's JSON and back: the same text, names and edges. */
static void test_keras_functional_round_trip(void **state)
{
    (void)state;
    struct error err = {0};
    parse_ok(&m1, grad_model);
    char *json = keras_config_from_model(&m1);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"class_name\": \"Functional\""));
    assert_non_null(strstr(json, "\"inbound_nodes\": [[[\"conv2d_1\", 0, 0, {}], [\"conv2d_2\", 0, 0, {}]]]"));
    if (keras_config_to_model(json, "k.json", &m2, &err) != ERR_OK)
        fail_msg("keras_config_to_model: %s\n%s", err.msg, json);
    assert_string_equal(m1.text, m2.text);
    free(json);
}

static void keras_fails(const char *json, const char *what)
{
    struct error err = {0};
    if (keras_config_to_model(json, "k.h5", &m1, &err) != ERR_INPUT)
        fail_msg("expected ERR_INPUT for %s (%s)", json, err.msg);
    if (strncmp(err.msg, "k.h5: model_config: ", 20) != 0 || !strstr(err.msg, what))
        fail_msg("message \"%s\" wanted \"%s\"", err.msg, what);
}

#define KIN "{\"class_name\": \"InputLayer\", \"name\": \"in\", \"config\": {\"batch_input_shape\": [null, 4, 4, 1], " \
            "\"name\": \"in\"}, \"inbound_nodes\": []}"
#define KLAYER(cls, name, cfg, nodes) \
    "{\"class_name\": \"" cls "\", \"name\": \"" name "\", \"config\": {\"name\": \"" name "\"" cfg "}, " \
    "\"inbound_nodes\": " nodes "}"
#define KFLAT(from) KLAYER("Flatten", "f", "", "[[[\"" from "\", 0, 0, {}]]]")
#define KOUT KLAYER("Dense", "out", ", \"units\": 2, \"activation\": \"softmax\"", "[[[\"f\", 0, 0, {}]]]")
#define KMODEL(cls, layers) \
    "{\"class_name\": \"" cls "\", \"config\": {\"name\": \"m\", \"layers\": [" layers "], \"input_layers\": " \
    "[[\"in\", 0, 0]], \"output_layers\": [[\"out\", 0, 0]]}}"

static void test_keras_functional_forms_and_errors(void **state)
{
    (void)state;
    struct error err = {0};
    /* Keras 2.2's "Model", layers out of order (sorted), nodes of 3 elements (Keras 2.0) */
    const char *ok = KMODEL("Model", KOUT "," KIN "," KLAYER("Flatten", "f", "", "[[[\"in\", 0, 0]]]"));
    if (keras_config_to_model(ok, "k.h5", &m1, &err) != ERR_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(m1.n_layers, 3);
    assert_string_equal(m1.layers[2].name, "out");
    keras_fails(KMODEL("Functional", KIN "," KLAYER("Flatten", "f", "", "[[[\"g\", 0, 0, {}]]]") "," KLAYER(
                           "Flatten", "g", "", "[[[\"f\", 0, 0, {}]]]") "," KOUT),
                "a cycle through layer");
    keras_fails(KMODEL("Functional", KIN "," KFLAT("in") "," KLAYER("Dense", "out", ", \"units\": 2, \"activation\": "
                                                                                    "\"softmax\"",
                                                                    "[[[\"f\", 0, 0, {}]], [[\"f\", 0, 0, {}]]]")),
                "shared layers");
    keras_fails(KMODEL("Functional", KIN "," KLAYER("Conv3D", "f", "", "[[[\"in\", 0, 0, {}]]]") "," KOUT),
                "layer 'f' (Conv3D) is not supported");
    keras_fails(KMODEL("Functional", KIN "," KFLAT("nowhere") "," KOUT), "reads 'nowhere'");
    keras_fails("{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": [" KIN "," KFLAT("in") "," KOUT
                "], \"input_layers\": [[\"in\", 0, 0]], \"output_layers\": [[\"out\", 0, 0], [\"f\", 0, 0]]}}",
                "a model with 2 outputs");
    keras_fails(KMODEL("Functional", KIN "," KFLAT("in") "," KOUT "," KLAYER("InputLayer", "in2",
                                                                             ", \"batch_input_shape\": [null, 4, 4, 1]",
                                                                             "[]")),
                "several inputs");
}

static void test_presets(void **state)
{
    (void)state;
    struct error err = {0};
    assert_int_equal(model_load(&m1, "resnet20", &err), ERR_OK);
    /* Keras's count_params for cifar10_resnet.py's ResNet-20 v1 (moving averages included) */
    assert_int_equal(m1.n_params, 274442);
    assert_int_equal(m1.n_layers, 72);
    assert_int_equal(m1.functional, 1);
    parse_ok(&m2, m1.text);
    assert_string_equal(m1.text, m2.text);
    assert_int_equal(model_load(&m1, "fashion-resnet", &err), ERR_OK);
    assert_int_equal(m1.layers[0].out.h, 28);
    assert_int_equal(m1.n_classes, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_through_add_and_concatenate),
        cmocka_unit_test(test_functional_chain_is_the_chain),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_keras_functional_round_trip),
        cmocka_unit_test(test_keras_functional_forms_and_errors),
        cmocka_unit_test(test_presets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_model.c: the model-file reader: presets, Keras names, shapes, parameter counts, the canonical text,
 * the syntax, and error messages that point at line and column. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, write, unlink */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model.h"

/* Models are ~25 KiB: kept out of the stack. */
static struct model m1, m2;

/* SPEC.md's cifar10-cnn, copied here so that the preset is checked against the contract, not itself. */
static const char spec_cifar10[] =
    "Input(shape=(32, 32, 3))\n"
    "Conv2D(filters=16, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=32, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=64, kernel_size=2, strides=1, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Dropout(0.3)\n"
    "Flatten()\n"
    "Dense(500, activation='relu')\n"
    "Dropout(0.4)\n"
    "Dense(10, activation='softmax')\n";

static void parse_ok(struct model *m, const char *text)
{
    struct error err = {0};
    if (model_parse(m, text, "model.txt", &err) != ERR_OK)
        fail_msg("model_parse failed: %s\n--- text:\n%s", err.msg, text);
}

/* The parse must fail with ERR_INPUT and a message that starts with `prefix` and contains `what`. */
static void parse_fails(const char *text, const char *prefix, const char *what)
{
    struct error err = {0};
    int rc = model_parse(&m1, text, "model.txt", &err);
    if (rc != ERR_INPUT)
        fail_msg("expected ERR_INPUT, got %d (%s)\n--- text:\n%s", rc, err.msg, text);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || (what && !strstr(err.msg, what)))
        fail_msg("message \"%s\"\nwanted it to start with \"%s\" and contain \"%s\"", err.msg, prefix,
                 what ? what : "");
}

static void assert_shape(const struct shape *s, int rank, int h, int w, int c)
{
    if (s->rank != rank || s->h != h || s->w != w || s->c != c)
        fail_msg("shape rank %d %dx%dx%d, want rank %d %dx%dx%d", s->rank, s->h, s->w, s->c, rank, h, w, c);
}

/* ------------------------------------------------------------------------------------------ presets */

static void test_preset_list(void **state)
{
    (void)state;
    const char *want[] = {"cifar10-cnn", "fashion-cnn", "gap-cnn", "resnet20", "fashion-resnet"};
    int n = 0;
    while (model_preset_names[n])
        n++;
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(model_preset_names[i], want[i]);
        assert_non_null(model_preset_text(want[i]));
    }
    assert_null(model_preset_text("cifar10"));
    assert_null(model_preset_text(""));
    assert_string_equal(model_preset_text("cifar10-cnn"), spec_cifar10);
}

static void test_presets_load(void **state)
{
    (void)state;
    struct error err = {0};
    /* resnet20: input, stem (3), 9 blocks of 7, 2 shortcut convolutions, pooling, flatten, dense; fashion-resnet:
     * 6 blocks and global pooling in place of pooling + flatten */
    const int want_layers[] = {12, 12, 8, 72, 50};
    for (int i = 0; model_preset_names[i]; i++) {
        if (model_load(&m1, model_preset_names[i], &err) != ERR_OK)
            fail_msg("%s: %s", model_preset_names[i], err.msg);
        assert_int_equal(m1.n_layers, want_layers[i]);
        assert_int_equal(m1.n_classes, 10);
    }
}

static void test_cifar10_names_and_params(void **state)
{
    (void)state;
    const char *names[] = {"input_1", "conv2d_1", "max_pooling2d_1", "conv2d_2", "max_pooling2d_2", "conv2d_3",
                           "max_pooling2d_3", "dropout_1", "flatten_1", "dense_1", "dropout_2", "dense_2"};
    parse_ok(&m1, spec_cifar10);
    assert_int_equal(m1.n_layers, 12);
    for (int i = 0; i < 12; i++) {
        assert_string_equal(m1.layers[i].name, names[i]);
        assert_int_equal(m1.layers[i].index, i);
        assert_int_equal(m1.layers[i].line, i + 1);
        assert_int_equal(m1.layers[i].softmax_in_loss, i == 11);
    }
    /* By hand: conv 2*2*3*16+16 = 208, 2*2*16*32+32 = 2080, 2*2*32*64+64 = 8256; 32 -> 16 -> 8 -> 4, so
     * Flatten gives 4*4*64 = 1024; dense 1024*500+500 = 512500, 500*10+10 = 5010. Total 528054. */
    assert_int_equal(m1.n_params, 528054);
    assert_int_equal(m1.n_classes, 10);
    assert_shape(&m1.layers[8].out, 1, 1, 1, 1024);
    /* Offsets: consecutive in layer order, kernel then bias. */
    const struct layer_spec *c1 = &m1.layers[1], *c2 = &m1.layers[3], *d2 = &m1.layers[11];
    assert_int_equal(c1->n_params, 2);
    assert_string_equal(c1->params[0].name, "kernel");
    assert_int_equal(c1->params[0].offset, 0);
    assert_int_equal(c1->params[0].size, 192);
    assert_int_equal(c1->params[0].rank, 4);
    assert_true(c1->params[0].dims[0] == 2 && c1->params[0].dims[1] == 2 && c1->params[0].dims[2] == 3 &&
                c1->params[0].dims[3] == 16);
    assert_string_equal(c1->params[1].name, "bias");
    assert_int_equal(c1->params[1].offset, 192);
    assert_int_equal(c2->params[0].offset, 208);
    assert_int_equal(c2->params[1].offset, 208 + 2048);
    assert_int_equal(d2->params[0].offset, 528054 - 5010);
    assert_int_equal(d2->params[1].offset, 528054 - 10);
    assert_int_equal(m1.layers[2].n_params, 0);
    assert_int_equal(m1.layers[7].n_params, 0);
}

static void test_fashion_shapes(void **state)
{
    (void)state;
    struct error err = {0};
    assert_int_equal(model_load(&m1, "fashion-cnn", &err), ERR_OK);
    const struct layer_spec *l = m1.layers;
    assert_shape(&l[0].out, 3, 28, 28, 1);
    assert_shape(&l[1].out, 3, 28, 28, 16);
    assert_shape(&l[2].out, 3, 14, 14, 16);
    assert_shape(&l[3].out, 3, 14, 14, 32);
    assert_shape(&l[4].out, 3, 7, 7, 32);
    assert_shape(&l[5].out, 3, 7, 7, 64);
    assert_shape(&l[6].out, 3, 3, 3, 64);
    assert_shape(&l[7].out, 3, 3, 3, 64); /* Dropout */
    assert_shape(&l[8].out, 1, 1, 1, 576);
    assert_shape(&l[9].out, 1, 1, 1, 500);
    assert_shape(&l[10].out, 1, 1, 1, 500);
    assert_shape(&l[11].out, 1, 1, 1, 10);
    /* Each layer's input is the previous output. */
    for (int i = 1; i < m1.n_layers; i++)
        assert_memory_equal(&l[i].in, &l[i - 1].out, sizeof l[i].in);
    /* conv 2*2*1*16+16 = 80, 2080, 8256; dense 576*500+500 = 288500, 5010: 303926. */
    assert_int_equal(m1.n_params, 303926);
}

/* gap-cnn is the PyTorch peer's fashion-gap: conv16-pool-conv32-pool-conv64-GAP-Dense(10). */
static void test_gap_shapes(void **state)
{
    (void)state;
    struct error err = {0};
    const char *names[] = {"input_1", "conv2d_1", "max_pooling2d_1", "conv2d_2", "max_pooling2d_2", "conv2d_3",
                           "global_average_pooling2d_1", "dense_1"};
    assert_int_equal(model_load(&m1, "gap-cnn", &err), ERR_OK);
    assert_int_equal(m1.n_layers, 8);
    for (int i = 0; i < 8; i++)
        assert_string_equal(m1.layers[i].name, names[i]);
    assert_shape(&m1.layers[0].out, 3, 28, 28, 1);
    assert_shape(&m1.layers[5].out, 3, 7, 7, 64);
    assert_shape(&m1.layers[6].out, 1, 1, 1, 64);
    assert_shape(&m1.layers[7].out, 1, 1, 1, 10);
    assert_true(m1.layers[1].u.conv.same && m1.layers[1].u.conv.act == ACT_RELU);
    /* 80 + 2080 + 8256 + 64*10+10 = 11066. */
    assert_int_equal(m1.n_params, 11066);
}

/* ------------------------------------------------------------------------------------------ canonical text */

static void assert_same_model(const struct model *a, const struct model *b)
{
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_params, b->n_params);
    assert_int_equal(a->n_classes, b->n_classes);
    for (int i = 0; i < a->n_layers; i++) {
        const struct layer_spec *x = &a->layers[i], *y = &b->layers[i];
        assert_ptr_equal(x->ops, y->ops);
        assert_string_equal(x->name, y->name);
        assert_memory_equal(&x->u, &y->u, sizeof x->u);
        assert_memory_equal(&x->in, &y->in, sizeof x->in);
        assert_memory_equal(&x->out, &y->out, sizeof x->out);
        assert_int_equal(x->n_params, y->n_params);
        assert_int_equal(x->softmax_in_loss, y->softmax_in_loss);
        for (int j = 0; j < x->n_params; j++) {
            assert_string_equal(x->params[j].name, y->params[j].name);
            assert_int_equal(x->params[j].rank, y->params[j].rank);
            assert_memory_equal(x->params[j].dims, y->params[j].dims, sizeof x->params[j].dims);
            assert_int_equal(x->params[j].size, y->params[j].size);
            assert_int_equal(x->params[j].offset, y->params[j].offset);
        }
    }
}

/* Every line of the canonical text is one layer, and reading it back gives the same model and text. */
static void round_trip(const char *text)
{
    parse_ok(&m1, text);
    int lines = 0;
    for (const char *p = m1.text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, m1.n_layers);
    parse_ok(&m2, m1.text);
    assert_same_model(&m1, &m2);
    assert_string_equal(m1.text, m2.text);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int i = 0; model_preset_names[i]; i++)
        round_trip(model_preset_text(model_preset_names[i]));
    round_trip("# a model with every kind\n"
               "Input(shape=(30, 20, 2))\n"
               "Conv2D(8, (3, 2), strides=(2, 1), padding='valid', use_bias=False)\n"
               "Activation('tanh')\n"
               "AveragePooling2D(pool_size=(2, 3), strides=(1, 2), padding='same')\n"
               "MaxPooling2D(3, strides=None)\n"
               "Conv2D(4, 1, activation='sigmoid')\n"
               "GlobalMaxPooling2D()\n"
               "Dropout(rate=0.25)\n"
               "Dense(7, use_bias=False)\n"
               "Activation('softmax')\n");
    round_trip("Input(shape=(8, 8, 1))\nConv2D(3, 2)\nGlobalAveragePooling2D()\nDense(3, activation='softmax')\n");
}

/* ------------------------------------------------------------------------------------------ syntax */

static void test_positional_and_keyword(void **state)
{
    (void)state;
    parse_ok(&m1, "Input(shape=(16, 16, 3))\n"
                  "Conv2D(16, 3, 2, 'same', activation='relu')\n"
                  "Conv2D(filters=16, kernel_size=3, strides=2, padding='same', activation='relu')\n"
                  "Conv2D(activation='relu', padding='same', strides=(2, 2), kernel_size=(3, 3), filters=16)\n"
                  "Dropout(0.5)\nDropout(rate=.5)\nDropout(5e-1)\nDropout(rate=50E-2)\n"
                  "Flatten()\n"
                  "Dense(10, 'softmax')\n");
    const struct conv_cfg *c = &m1.layers[1].u.conv;
    assert_int_equal(c->filters, 16);
    assert_true(c->kh == 3 && c->kw == 3 && c->sh == 2 && c->sw == 2 && c->same && c->act == ACT_RELU);
    assert_true(c->use_bias);
    assert_memory_equal(&m1.layers[1].u.conv, &m1.layers[2].u.conv, sizeof *c);
    assert_memory_equal(&m1.layers[1].u.conv, &m1.layers[3].u.conv, sizeof *c);
    for (int i = 4; i < 8; i++)
        assert_true(m1.layers[i].u.dropout.rate == 0.5);
    assert_true(m1.layers[9].u.dense.units == 10 && m1.layers[9].u.dense.act == ACT_SOFTMAX);
    assert_shape(&m1.layers[1].out, 3, 8, 8, 16);
}

static void test_comments_blank_lines_whitespace(void **state)
{
    (void)state;
    parse_ok(&m1, "# the seed's model\n"
                  "\n"
                  "   \t\n"
                  "Input( shape = ( 28 , 28 , 1 , ) )   # trailing comma in the tuple\r\n"
                  "\tConv2D(16,2,padding=\"same\",activation=None,) # double quotes, None, trailing comma\n"
                  "  # indented comment\n"
                  "MaxPool2D()\n"
                  "Conv2D(4, (3), padding='same')  # (3) is 3, as in Python\n"
                  "Flatten( )\n"
                  "Dense(units=(10), activation='softmax')");
    assert_int_equal(m1.n_layers, 6);
    assert_int_equal(m1.layers[0].line, 4);
    assert_int_equal(m1.layers[1].line, 5);
    assert_int_equal(m1.layers[2].line, 7);
    assert_int_equal(m1.layers[5].line, 10);
    assert_true(m1.layers[3].u.conv.kh == 3 && m1.layers[3].u.conv.kw == 3);
    assert_shape(&m1.layers[0].out, 3, 28, 28, 1);
    assert_true(m1.layers[1].u.conv.same && m1.layers[1].u.conv.act == ACT_LINEAR);
    /* Keras's alias MaxPool2D is MaxPooling2D, and is written back under that name. */
    assert_ptr_equal(m1.layers[2].ops, &layer_max_pooling2d);
    assert_string_equal(m1.layers[2].name, "max_pooling2d_1");
    assert_non_null(strstr(m1.text, "\nMaxPooling2D("));
    assert_null(strstr(m1.text, "MaxPool2D"));
    assert_int_equal(m1.layers[5].u.dense.units, 10);
}

/* ------------------------------------------------------------------------------------------ errors */

#define IN "Input(shape=(28, 28, 1))\n"
#define TAIL "Flatten()\nDense(10, activation='softmax')\n"

/* kernel_regularizer in Keras's spellings; the canonical text writes it back only when it is set. */
static void test_kernel_regularizer(void **state)
{
    (void)state;
    static const struct {
        const char *call;
        double l1, l2;
        const char *canonical;
    } cases[] = {
        {"l2(1e-4)", 0, 1e-4, "l2(0.0001)"},
        {"l2(l2=0.0005)", 0, 0.0005, "l2(0.0005)"},
        {"l2(l=3e-4)", 0, 3e-4, "l2(0.0003)"},
        {"l2()", 0, 0.01, "l2(0.01)"},
        {"l1(0.25)", 0.25, 0, "l1(0.25)"},
        {"L1(l1=2)", 2, 0, "l1(2)"},
        {"regularizers.l2(1e-4)", 0, 1e-4, "l2(0.0001)"},
        {"keras.regularizers.L2(9.999999747378752e-05)", 0, 9.999999747378752e-05, "l2(9.999999747378752e-05)"},
        {"tf.keras.regularizers.l1_l2(l1=1e-5, l2=1e-4)", 1e-5, 1e-4, "l1_l2(l1=1e-05, l2=0.0001)"},
        {"l1_l2(l1=0, l2=0.5)", 0, 0.5, "l2(0.5)"},
        {"L1L2(0.125, 0.5)", 0.125, 0.5, "l1_l2(l1=0.125, l2=0.5)"},
        {"L1L2(l2=0.5)", 0, 0.5, "l2(0.5)"},
        {"L1L2()", 0, 0, NULL},
        {"None", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], want[512];
        snprintf(text, sizeof text,
                 IN "Conv2D(4, 2, kernel_regularizer=%s)\nFlatten()\n"
                    "Dense( 10,activation='softmax', kernel_regularizer = %s )\n",
                 cases[i].call, cases[i].call);
        parse_ok(&m1, text);
        const struct regularizer *c = &m1.layers[1].u.conv.kernel_reg, *d = &m1.layers[3].u.dense.kernel_reg;
        if (c->l1 != cases[i].l1 || c->l2 != cases[i].l2 || d->l1 != cases[i].l1 || d->l2 != cases[i].l2)
            fail_msg("%s: conv (%g, %g) dense (%g, %g), want (%g, %g)", cases[i].call, c->l1, c->l2, d->l1, d->l2,
                     cases[i].l1, cases[i].l2);
        if (cases[i].canonical) {
            snprintf(want, sizeof want,
                     "Input(shape=(28, 28, 1))\n"
                     "Conv2D(filters=4, kernel_size=(2, 2), strides=(1, 1), padding='valid', activation='linear', "
                     "use_bias=True, kernel_regularizer=%s)\nFlatten()\n"
                     "Dense(units=10, activation='softmax', use_bias=True, kernel_regularizer=%s)\n",
                     cases[i].canonical, cases[i].canonical);
        } else {
            snprintf(want, sizeof want,
                     "Input(shape=(28, 28, 1))\n"
                     "Conv2D(filters=4, kernel_size=(2, 2), strides=(1, 1), padding='valid', activation='linear', "
                     "use_bias=True)\nFlatten()\nDense(units=10, activation='softmax', use_bias=True)\n");
        }
        assert_string_equal(m1.text, want);
        round_trip(text);
    }
    /* The printed value reads back as the same double, whatever its digits. */
    round_trip(IN "Conv2D(4, 2, kernel_regularizer=l1_l2(l1=0.1, l2=0.30000000000000004))\n" TAIL);
    assert_true(m2.layers[1].u.conv.kernel_reg.l2 == 0.30000000000000004);

    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l3(1e-4))\n" TAIL, "model.txt:2:14:", "unknown regularizer 'l3'");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=torch.l2(1e-4))\n" TAIL, "model.txt:2:14:",
                "unknown regularizer 'torch.l2'");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(-1e-4))\n" TAIL, "model.txt:2:36:",
                "must be a finite number >= 0");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(l1=1e-4))\n" TAIL, "model.txt:2:36:", "unknown argument 'l1'");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(1e-4, 2e-4))\n" TAIL, "model.txt:2:42:",
                "too many positional arguments");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l1_l2(l1=1e-4))\n" TAIL, "model.txt:2:14:",
                "give both l1= and l2=");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=L1L2(1e-4, l1=1e-4))\n" TAIL, "model.txt:2:44:", "given twice");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2('a'))\n" TAIL, "model.txt:2:36:", "expected a number");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(l2=1e-4, 3))\n" TAIL, "model.txt:2:45:",
                "positional argument follows keyword argument");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(1e-4)\n" TAIL, "model.txt:2:41:", "expected ')'");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=l2(1e-4 2))\n" TAIL, "model.txt:2:41:", "expected ',' or ')'");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer='l2')\n" TAIL, "model.txt:2:14:", "must be a regularizer");
    parse_fails(IN "Conv2D(4, 2, kernel_regularizer=0.01)\n" TAIL, "model.txt:2:14:", "must be a regularizer");
    /* A call is a value for kernel_regularizer only. */
    parse_fails(IN "Conv2D(4, 2, padding=l2(1))\n" TAIL, "model.txt:2:14:", "'padding' must be one of");
    parse_fails(IN "Conv2D(4, 2, bias_regularizer=l2(1e-4))\n" TAIL, "model.txt:2:14:",
                "unknown argument 'bias_regularizer'");
    parse_fails(IN "Dropout(0.5, kernel_regularizer=l2(1e-4))\n" TAIL, "model.txt:2:14:",
                "unknown argument 'kernel_regularizer'");
}

static void test_error_unknown_layer(void **state)
{
    (void)state;
    struct error err = {0};
    assert_int_equal(model_parse(&m1, IN "Conv2D(16, 2)\n# comment\nConv3D(16, 2)\n" TAIL, "model.txt", &err),
                     ERR_INPUT);
    assert_string_equal(err.msg, "model.txt:4:1: unknown layer 'Conv3D' (did you mean 'Conv2D'?)");
    parse_fails(IN "   maxpooling2d()\n" TAIL, "model.txt:2:4: unknown layer 'maxpooling2d'",
                "did you mean 'MaxPooling2D'?");
    parse_fails(IN "Dens(10)\n" TAIL, "model.txt:2:1: unknown layer 'Dens'", "did you mean 'Dense'?");
    parse_fails(IN "LSTM(10)\n" TAIL, "model.txt:2:1: unknown layer 'LSTM'", "Conv2D");
    struct error e2 = {0};
    model_parse(&m1, IN "LSTM(10)\n" TAIL, "model.txt", &e2);
    assert_null(strstr(e2.msg, "did you mean"));
}

static void test_error_unknown_argument(void **state)
{
    (void)state;
    parse_fails(IN "Conv2D(16, 2, filter=3)\n" TAIL, "model.txt:2:15:", "unknown argument 'filter'");
    parse_fails(IN "Conv2D(16, 2, paddin='same')\n" TAIL, "model.txt:2:15:", "unknown argument 'paddin'");
    parse_fails(IN "Flatten(1)\n" TAIL, "model.txt:2:9:", NULL);
}

static void test_error_bad_value(void **state)
{
    (void)state;
    parse_fails(IN "Conv2D(16, 2, padding='samee')\n" TAIL, "model.txt:2:15:", "samee");
    parse_fails(IN "Conv2D(16, 2, activation='rleu')\n" TAIL, "model.txt:2:15:", "rleu");
    parse_fails(IN "Conv2D(16, 2, padding=same)\n" TAIL, "model.txt:2:23:", "strings need quotes");
    parse_fails(IN "Conv2D('16', 2)\n" TAIL, "model.txt:2:8:", "filters");
    parse_fails(IN "Conv2D(16, 2x)\n" TAIL, "model.txt:2:12: invalid number '2x'", NULL);
    parse_fails(IN "Dropout(0.3.1)\n" TAIL, "model.txt:2:9: invalid number", NULL);
    parse_fails(IN "Conv2D(16, 99999999999)\n" TAIL, "model.txt:2:12:", "too large");
    parse_fails(IN "Conv2D(16, (2, 2.5))\n" TAIL, "model.txt:2:16:", "integer");
    parse_fails(IN "Conv2D(16, ())\n" TAIL, "model.txt:2:12: empty tuple", NULL);
    parse_fails(IN "Conv2D(16, 2, padding='same)\n" TAIL, "model.txt:2:23: unterminated string", NULL);
    parse_fails(IN "Conv2D(16, 2 @)\n" TAIL, "model.txt:2:14: unexpected character '@'", NULL);
}

static void test_error_syntax(void **state)
{
    (void)state;
    parse_fails(IN "Conv2D(16, 2\n" TAIL, "model.txt:2:13: expected ')'", NULL);
    parse_fails(IN "Conv2D(16, 2,   # no closing parenthesis\n" TAIL, "model.txt:2:17: expected ')'", NULL);
    parse_fails(IN "Conv2D(16 2)\n" TAIL, "model.txt:2:11: expected ',' or ')'", "'2'");
    parse_fails(IN "Flatten\n" TAIL, "model.txt:2:8: expected '(' after 'Flatten'", NULL);
    parse_fails(IN "Flatten() Flatten()\n" TAIL, "model.txt:2:11:", "one layer per line");
    parse_fails(IN "(16, 2)\n" TAIL, "model.txt:2:1: expected a layer", NULL);
    parse_fails(IN "Conv2D(16, kernel_size=2, 'same')\n" TAIL,
                "model.txt:2:27: positional argument follows keyword argument", NULL);
    parse_fails(IN "Dense(units=10, 'softmax')\n", "model.txt:2:17: positional argument follows keyword argument",
                NULL);
    parse_fails(IN "Conv2D(16, 2, padding='same', padding='valid')\n" TAIL, "model.txt:2:31:", "repeated");
    parse_fails(IN "Conv2D(16, kernel_size=)\n" TAIL, "model.txt:2:24: expected a value", NULL);
}

static void test_error_structure(void **state)
{
    (void)state;
    parse_fails("# comment\nConv2D(16, 2)\n" TAIL, "model.txt:2:1: the first layer must be Input", NULL);
    parse_fails(IN "Conv2D(16, 2)\nInput(shape=(28, 28, 1))\n" TAIL, "model.txt:3:1:", "first layer");
    parse_fails("", "model.txt:", "empty model");
    parse_fails("# only a comment\n\n", "model.txt:", "empty model");
    parse_fails(IN, "model.txt:1: input_1:", "must end in softmax");
    parse_fails(IN "Conv2D(16, 2)\nFlatten()\nDense(500, activation='softmax')\nDense(10, activation='softmax')\n",
                "model.txt:4: dense_1:", "softmax is only supported as the last layer");
    parse_fails(IN "Flatten()\nDense(10, activation='softmax')\nDropout(0.2)\n", "model.txt:3: dense_1:",
                "softmax is only supported as the last layer");
    parse_fails(IN "Activation('softmax')\nFlatten()\nDense(10)\nActivation('softmax')\n",
                "model.txt:2: activation_1:", "softmax is only supported as the last layer");
    parse_fails(IN "Flatten()\nDense(10, activation='relu')\n", "model.txt:3: dense_1:", "must end in softmax");
    parse_fails(IN "Conv2D(10, 2)\nActivation('softmax')\n", "model.txt:3: activation_1:", "Flatten()");
    parse_fails(IN "Conv2D(10, 2, activation='softmax')\n", "model.txt:2:", "softmax");
    parse_fails(IN "Flatten()\nDense(1, activation='softmax')\n", "model.txt:3: dense_1:", "at least 2");
}

/* Problems the layers find themselves (their parse and infer): still reported at the line. */
static void test_error_from_layers(void **state)
{
    (void)state;
    parse_fails("Input(shape=(4, 4, 1))\nConv2D(8, 5)\n" TAIL, "model.txt:2:", NULL);
    parse_fails(IN "Conv2D(0, 2)\n" TAIL, "model.txt:2:", NULL);
    parse_fails(IN "Conv2D(filters=0, kernel_size=2)\n" TAIL, "model.txt:2:", NULL);
    parse_fails(IN "Dropout(1.0)\n" TAIL, "model.txt:2:", NULL);
    parse_fails(IN "Dropout(rate=1.0)\n" TAIL, "model.txt:2:", NULL);
    parse_fails(IN "Conv2D(kernel_size=2)\n" TAIL, "model.txt:2:", "filters");
}

static void test_error_limits(void **state)
{
    (void)state;
    /* MODEL_MAX_LAYERS + 1 layers: one too many. */
    static char text[(MODEL_MAX_LAYERS + 1) * 16];
    char where[32], what[32];
    strcpy(text, IN);
    for (int i = 1; i < MODEL_MAX_LAYERS + 1; i++)
        strcat(text, "Dropout(0.1)\n");
    snprintf(where, sizeof where, "model.txt:%d:1:", MODEL_MAX_LAYERS + 1);
    snprintf(what, sizeof what, "more than %d layers", MODEL_MAX_LAYERS);
    parse_fails(text, where, what);
    /* MODEL_MAX_LAYERS layers, the most allowed, with long canonical lines: either it fits or it is refused
     * cleanly; never truncated silently. */
    strcpy(text, IN);
    for (int i = 0; i < MODEL_MAX_LAYERS - 3; i++)
        strcat(text, "Conv2D(1, 1)\n");
    strcat(text, TAIL);
    struct error err = {0};
    int rc = model_parse(&m1, text, "model.txt", &err);
    if (rc == ERR_OK)
        round_trip(text);
    else
        assert_non_null(strstr(err.msg, "longer than"));
}

/* model_infer on specs that did not come from text (Keras model_config): line 0 leaves the line out. */
static void test_infer_without_lines(void **state)
{
    (void)state;
    struct error err = {0};
    parse_ok(&m1, spec_cifar10);
    m1.layers[11].u.dense.act = ACT_RELU;
    assert_int_equal(model_infer(&m1, "keras.h5", &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "keras.h5:12: dense_2: "));
    for (int i = 0; i < m1.n_layers; i++)
        m1.layers[i].line = 0;
    assert_int_equal(model_infer(&m1, "keras.h5", &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "keras.h5: dense_2: "));
    m1.layers[11].u.dense.act = ACT_SOFTMAX;
    assert_int_equal(model_infer(&m1, "keras.h5", &err), ERR_OK);
    assert_int_equal(m1.n_params, 528054);
    assert_int_equal(m1.layers[11].softmax_in_loss, 1);
}

/* ------------------------------------------------------------------------------------------ model_load */

/* Writes `len` bytes of `data` to a fresh temporary file; its path goes to `path` (PATH_MAX-sized). */
static void write_temp(char *path, const void *data, size_t len)
{
    strcpy(path, "/tmp/test_model_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_load_file(void **state)
{
    (void)state;
    struct error err = {0};
    char path[64], msg[128];
    write_temp(path, spec_cifar10, strlen(spec_cifar10));
    assert_int_equal(model_load(&m1, path, &err), ERR_OK);
    assert_int_equal(m1.n_params, 528054);
    unlink(path);

    const char *bad = IN "Conv3D(16, 2)\n";
    write_temp(path, bad, strlen(bad));
    assert_int_equal(model_load(&m1, path, &err), ERR_INPUT);
    snprintf(msg, sizeof msg, "%s:2:1: unknown layer 'Conv3D'", path);
    assert_non_null(strstr(err.msg, msg));
    unlink(path);
}

static void test_load_errors(void **state)
{
    (void)state;
    struct error err = {0};
    char path[64], msg[128];
    assert_int_equal(model_load(&m1, "/nonexistent/model.txt", &err), ERR_INPUT);
    assert_string_equal(err.msg, "/nonexistent/model.txt: cannot read: No such file or directory");
    /* A bare word was probably meant as a preset: say which exist. */
    assert_int_equal(model_load(&m1, "cifar10_cnn", &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "cifar10_cnn: cannot read: "));
    assert_non_null(strstr(err.msg, "cifar10-cnn"));
    assert_int_equal(model_load(&m1, "/tmp", &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "/tmp: cannot read: "));

    /* Over 64 KiB: a comment-only file, so only the size can be the problem. */
    size_t big = 64 * 1024 + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    write_temp(path, text, big);
    assert_int_equal(model_load(&m1, path, &err), ERR_INPUT);
    snprintf(msg, sizeof msg, "%s: ", path);
    assert_non_null(strstr(err.msg, msg));
    assert_non_null(strstr(err.msg, "64 KiB"));
    unlink(path);
    /* Exactly 64 KiB is allowed (and here empty of layers). */
    write_temp(path, text, big - 1);
    assert_int_equal(model_load(&m1, path, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "empty model"));
    unlink(path);
    free(text);

    const char hdf5[] = "\x89HDF\r\n\x1a\n\0\0\0";
    write_temp(path, hdf5, sizeof hdf5 - 1);
    assert_int_equal(model_load(&m1, path, &err), ERR_INPUT);
    assert_non_null(strstr(err.msg, "HDF5"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preset_list),
        cmocka_unit_test(test_presets_load),
        cmocka_unit_test(test_cifar10_names_and_params),
        cmocka_unit_test(test_fashion_shapes),
        cmocka_unit_test(test_gap_shapes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_kernel_regularizer),
        cmocka_unit_test(test_positional_and_keyword),
        cmocka_unit_test(test_comments_blank_lines_whitespace),
        cmocka_unit_test(test_error_unknown_layer),
        cmocka_unit_test(test_error_unknown_argument),
        cmocka_unit_test(test_error_bad_value),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_structure),
        cmocka_unit_test(test_error_from_layers),
        cmocka_unit_test(test_error_limits),
        cmocka_unit_test(test_infer_without_lines),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

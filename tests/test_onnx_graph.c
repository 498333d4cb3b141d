/* test_onnx_graph.c: the ONNX export of graph models, walked by their edges: the kinds that graph models and
 * augmentation bring (Add, Concatenate, ZeroPadding2D, RandomFlip, RandomCrop), the real kinds where the layer
 * table has them and else stand-ins with only a name and a shape (the export knows kinds by name), in a model that
 * computes what a plain chain computes (test_onnx.sh runs both files); the nodes RandomCrop becomes for each
 * shape (smart_resize: Slice to the window, Resize, both or none); and the refusals: a kind with no ONNX form, an
 * opset out of range, an unwritable path, each leaving no file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model.h"
#include "onnx_export.h"
#include "onnx_read.h"

/* ---- a kind the export does not know: a name, the input's shape, a line of text -------------------------------- */

static int unknown_text(const struct layer_spec *spec, char *buf, size_t size)
{
    return snprintf(buf, size, "%s()", spec->ops->name);
}

static const struct layer_ops layer_lstm = {.name = "LSTM", .keras_prefix = "lstm", .to_text = unknown_text};

static struct layer_spec *add_layer(struct model *m, const struct layer_ops *ops, const char *name, int n_in, ...)
{
    struct layer_spec *s = &m->layers[m->n_layers];
    memset(s, 0, sizeof *s);
    s->ops = ops;
    s->index = m->n_layers++;
    snprintf(s->name, sizeof s->name, "%s", name);
    va_list ap;
    va_start(ap, n_in);
    for (int k = 0; k < n_in; k++)
        s->inputs[k] = va_arg(ap, int);
    va_end(ap);
    s->n_inputs = n_in;
    return s;
}

static void conv(struct layer_spec *s, int filters, int k, int same, enum activation act)
{
    s->u.conv = (struct conv_cfg){.filters = filters, .kh = k, .kw = k, .sh = 1, .sw = 1, .same = same,
                                  .use_bias = 1, .act = act};
}

/* Named as users may name layers: the Input `images` and the Add `probabilities`, the graph's own names.
 * 10x10x2 -> RandomCrop(8, 10) -> RandomFlip -> ZeroPadding2D(1) -> conv a, conv b (3x3 valid, linear, both on
 * the padded image) -> Add(a, b) -> Concatenate(add, a) -> relu -> GlobalAveragePooling2D -> Dense(4, softmax).
 * At inference RandomCrop(8, 10) on 10 x 10 is smart_resize's 8 x 10 window at row 1 and no resize: the centre
 * crop that the chain's images get (onnx_check.py same ... 8 10).
 * The edges skip back (conv b and the Concatenate do not read the layer before them). */
static void graph_model(struct model *m, const struct layer_ops *extra)
{
    memset(m, 0, sizeof *m);
    add_layer(m, &layer_input, "images", 0)->u.input = (struct input_cfg){10, 10, 2};
    struct layer_spec *crop = add_layer(m, &layer_random_crop, "random_crop_1", 1, 0);
    crop->u.aug.height = 8;
    crop->u.aug.width = 10;
    add_layer(m, &layer_random_flip, "random_flip_1", 1, 1);
    add_layer(m, &layer_zero_padding2d, "zero_padding2d_1", 1, 2)->u.pad = (struct zero_pad_cfg){1, 1, 1, 1};
    conv(add_layer(m, &layer_conv2d, "conv2d_a", 1, 3), 3, 3, 0, ACT_LINEAR);
    conv(add_layer(m, &layer_conv2d, "conv2d_b", 1, 3), 3, 3, 0, ACT_LINEAR);
    add_layer(m, &layer_add, "probabilities", 2, 4, 5);
    add_layer(m, &layer_concatenate, "concatenate_1", 2, 6, 4)->u.concat.axis = -1;
    if (extra)
        add_layer(m, extra, "lstm_1", 1, 7);
    add_layer(m, &layer_activation, "activation_1", 1, m->n_layers - 1)->u.act.act = ACT_RELU;
    add_layer(m, &layer_global_average_pooling2d, "gap_1", 1, m->n_layers - 1);
    add_layer(m, &layer_dense, "dense_1", 1, m->n_layers - 1)->u.dense =
        (struct dense_cfg){.units = 4, .use_bias = 1, .act = ACT_SOFTMAX};
}

static const char chain_text[] = "Input(shape=(8, 10, 2))\n"
                                 "Conv2D(6, 3, padding='same', activation='relu')\n"
                                 "GlobalAveragePooling2D()\n"
                                 "Dense(4, activation='softmax')\n";

static float rnd(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*state >> 11) / 9007199254740992.0 - 0.5);
}

static const float *param(const struct model *m, const float *slab, int layer, int j)
{
    return slab + m->layers[layer].params[j].offset;
}

/* The chain's weights from the graph's: its conv is [a + b, a] along the filters, its Dense the same. */
static void chain_weights(const struct model *g, const float *gw, const struct model *c, float *cw)
{
    const float *ka = param(g, gw, 4, 0), *kb = param(g, gw, 5, 0), *ba = param(g, gw, 4, 1),
                *bb = param(g, gw, 5, 1);
    float *k = cw + c->layers[1].params[0].offset, *b = cw + c->layers[1].params[1].offset;
    for (int i = 0; i < 3 * 3 * 2; i++) /* (kh, kw, cin) */
        for (int o = 0; o < 3; o++) {
            k[i * 6 + o] = ka[i * 3 + o] + kb[i * 3 + o];
            k[i * 6 + 3 + o] = ka[i * 3 + o];
        }
    for (int o = 0; o < 3; o++) {
        b[o] = ba[o] + bb[o];
        b[3 + o] = ba[o];
    }
    int dense = g->n_layers - 1;
    memcpy(cw + c->layers[3].params[0].offset, param(g, gw, dense, 0), sizeof(float) * 6 * 4);
    memcpy(cw + c->layers[3].params[1].offset, param(g, gw, dense, 1), sizeof(float) * 4);
}

static char dir[4096];

static const char *path(const char *name)
{
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void assert_no_file(const char *p)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static int op_count(const struct onnx_info *info, const char *op)
{
    for (int i = 0; i < info->n_op_types && i < ONNX_INFO_MAX_OPS; i++)
        if (strcmp(info->ops[i].op, op) == 0)
            return info->ops[i].count;
    return 0;
}

static void infer_ok(struct model *m)
{
    struct error err = {0};
    int rc = model_infer(m, "graph", &err);
    if (rc)
        print_message("model_infer: %s\n", err.msg);
    assert_int_equal(rc, ERR_OK);
}

static void test_graph_and_chain(void **state)
{
    (void)state;
    static struct model g, c;
    struct error err = {0};
    graph_model(&g, NULL);
    infer_ok(&g);
    assert_int_equal(model_parse(&c, chain_text, "chain", &err), ERR_OK);
    float *gw = malloc(sizeof(float) * g.n_params), *cw = calloc(c.n_params, sizeof(float));
    assert_non_null(gw);
    assert_non_null(cw);
    uint64_t seed = 7;
    for (size_t i = 0; i < g.n_params; i++)
        gw[i] = rnd(&seed);
    chain_weights(&g, gw, &c, cw);
    struct onnx_export_opts o = {.opset = 13, .batch = 0, .uint8_input = 0};
    static const char *const names[] = {"north", "east", "south", "west"};
    assert_int_equal(onnx_export(path("graph.onnx"), &g, gw, &o, names, 4, "graph", &err), ERR_OK);
    assert_int_equal(onnx_export(path("chain.onnx"), &c, cw, &o, NULL, 0, "chain", &err), ERR_OK);

    static struct onnx_info info;
    assert_int_equal(onnx_info_read(path("graph.onnx"), &info, &err), ERR_OK);
    assert_int_equal(op_count(&info, "Slice"), 1);  /* the window, at the target's size: no Resize */
    assert_int_equal(op_count(&info, "Resize"), 0);
    assert_int_equal(op_count(&info, "Pad"), 1);
    assert_int_equal(op_count(&info, "Conv"), 2);
    assert_int_equal(op_count(&info, "Add"), 1);
    assert_int_equal(op_count(&info, "Concat"), 1);
    assert_int_equal(info.n_nodes, 1 + 1 + 1 + 2 + 1 + 1 + 1 + 2 + 2); /* RandomFlip: none */
    assert_string_equal(info.inputs[0].dims[1], "10");
    assert_string_equal(info.outputs[0].name, "probabilities");
    int found = 0;
    for (int i = 0; i < info.n_meta; i++)
        found |= strcmp(info.meta[i].key, "class_names") == 0 &&
                 strcmp(info.meta[i].value, "[\"north\",\"east\",\"south\",\"west\"]") == 0;
    assert_true(found);
    free(gw);
    free(cw);
}

/* Input (h, w, 1) -> [ZeroPadding2D(pad)] -> RandomCrop(oh, ow) -> GlobalAveragePooling2D -> Dense(2): the
 * Slice and Resize nodes RandomCrop becomes. */
static void crop_case(int h, int w, int pad, int oh, int ow, int slices, int resizes)
{
    static struct model m;
    static struct onnx_info info;
    struct error err = {0};
    memset(&m, 0, sizeof m);
    add_layer(&m, &layer_input, "images", 0)->u.input = (struct input_cfg){h, w, 1};
    if (pad)
        add_layer(&m, &layer_zero_padding2d, "zero_padding2d_1", 1, 0)->u.pad = (struct zero_pad_cfg){pad, pad, pad, pad};
    struct layer_spec *crop = add_layer(&m, &layer_random_crop, "random_crop_1", 1, m.n_layers - 1);
    crop->u.aug.height = oh;
    crop->u.aug.width = ow;
    add_layer(&m, &layer_global_average_pooling2d, "gap_1", 1, m.n_layers - 1);
    add_layer(&m, &layer_dense, "dense_1", 1, m.n_layers - 1)->u.dense =
        (struct dense_cfg){.units = 2, .use_bias = 1, .act = ACT_SOFTMAX};
    infer_ok(&m);
    float *params = calloc(m.n_params, sizeof(float));
    assert_non_null(params);
    struct onnx_export_opts o = {.opset = 11};
    assert_int_equal(onnx_export(path("crop_forms.onnx"), &m, params, &o, NULL, 0, "crop", &err), ERR_OK);
    assert_int_equal(onnx_info_read(path("crop_forms.onnx"), &info, &err), ERR_OK);
    assert_int_equal(op_count(&info, "Slice"), slices);
    assert_int_equal(op_count(&info, "Resize"), resizes);
    assert_int_equal(info.n_nodes, 1 + !!pad + slices + resizes + 2 + 2); /* Transpose; GAP, Flatten; Gemm, Softmax */
    remove(path("crop_forms.onnx"));
    free(params);
}

static void test_random_crop_forms(void **state)
{
    (void)state;
    crop_case(28, 28, 0, 28, 28, 0, 0); /* the target's size: unchanged */
    crop_case(28, 28, 2, 28, 28, 0, 1); /* 32 x 32 padded -> 28 x 28: the whole image is the window */
    crop_case(28, 28, 0, 20, 24, 1, 1); /* the 23 x 28 window, resized */
    crop_case(10, 10, 0, 8, 10, 1, 0);  /* an 8 x 10 window is the target: no resize */
    crop_case(32, 32, 0, 40, 30, 1, 1); /* larger than the image: the 32 x 24 window, resized up */
}

static void test_refusals(void **state)
{
    (void)state;
    static struct model g;
    struct error err = {0};
    graph_model(&g, &layer_lstm);
    infer_ok(&g);
    float *w = calloc(g.n_params, sizeof(float));
    struct onnx_export_opts o = {.opset = 13};
    assert_int_equal(onnx_export(path("lstm.onnx"), &g, w, &o, NULL, 0, "graph.h5", &err), ERR_INPUT);
    assert_string_equal(err.msg, "graph.h5: layer lstm_1 (LSTM): no ONNX form in this export");
    assert_no_file(path("lstm.onnx"));

    graph_model(&g, NULL);
    infer_ok(&g);
    for (int opset = 10; opset <= 18; opset += 8) {
        o.opset = opset;
        assert_int_equal(onnx_export(path("opset.onnx"), &g, w, &o, NULL, 0, "graph.h5", &err), ERR_USAGE);
        assert_non_null(strstr(err.msg, "opsets 11 to 17"));
        assert_no_file(path("opset.onnx"));
    }
    o.opset = 13;
    assert_int_equal(onnx_export(path("no/such/dir.onnx"), &g, w, &o, NULL, 0, "graph.h5", &err), ERR_IO);
    assert_non_null(strstr(err.msg, "no/such/dir.onnx: cannot create: "));
    free(w);
}

int main(void)
{
    /* test_onnx.sh names a directory to keep the files in; alone, a scratch one. */
    const char *keep = getenv("TEST_ONNX_OUT");
    if (keep)
        snprintf(dir, sizeof dir, "%s", keep);
    else if (!mkdtemp(strcpy(dir, "/tmp/test_onnx_graph.XXXXXX")))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_and_chain),
        cmocka_unit_test(test_random_crop_forms),
        cmocka_unit_test(test_refusals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (!keep) {
        remove(path("graph.onnx"));
        remove(path("chain.onnx"));
        rmdir(dir);
    }
    return rc;
}

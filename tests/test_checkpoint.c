/* test_checkpoint.c: checkpoints against the real Keras 2.1.3 file, write/read round trips checked with the raw
 * HDF5 API, and the files and failures that must be refused. Keras model_config forms the reader refuses or
 * takes are in test_keras_config.c. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "checkpoint.h"

#define DEFAULT_FIXTURE "/work/shared/fixtures/keras/cifar10_cnn_keras2.1.3.h5"

/* Every layer kind but the global pools, odd sizes, a layer without bias, positional arguments. */
static const char *const small_text =
    "Input(shape=(9, 8, 3))\n"
    "Conv2D(4, 3, padding='same', activation='relu')\n"
    "MaxPooling2D(pool_size=2)\n"
    "Conv2D(filters=5, kernel_size=(2, 3), strides=(1, 2), use_bias=False)\n"
    "AveragePooling2D(pool_size=2, strides=1, padding='same')\n"
    "Dropout(0.3)\n"
    "Flatten()\n"
    "Dense(6, activation='tanh')\n"
    "Activation('sigmoid')\n"
    "Dense(3, activation='softmax')\n";
/* Shapes: (9, 8, 3) -> same conv (9, 8, 4) -> pool (4, 4, 4) -> valid conv 2x3 stride (1, 2) (3, 1, 5)
 * -> same avg pool stride 1 (3, 1, 5) -> flatten 15 -> 6 -> 3.
 * Parameters: 3*3*3*4 + 4 = 112, 2*3*4*5 = 120 (no bias), 15*6 + 6 = 96, 6*3 + 3 = 21: 349. */
#define SMALL_PARAMS 349

static const char *const gap_text = "Input(shape=(6, 6, 2))\n"
                                    "Conv2D(3, 2, activation='linear')\n"
                                    "GlobalAveragePooling2D()\n"
                                    "Dense(4, activation='softmax')\n";
static const char *const gmp_text = "Input(shape=(5, 7, 1))\n"
                                    "Conv2D(2, (1, 2), strides=2, padding='valid')\n"
                                    "GlobalMaxPooling2D()\n"
                                    "Dense(2, activation='softmax', use_bias=False)\n";

/* A rate that 15 significant digits do not reproduce: the JSON must still give back the same double. */
static const char *const odd_rate_text = "Input(shape=(4, 4, 1))\n"
                                         "Flatten()\n"
                                         "Dropout(0.123456789012345678)\n"
                                         "Dense(2, activation='softmax')\n";
/* BatchNormalization with every argument off its default, after a Conv2D and after a Dense. */
static const char *const bn_text = "Input(shape=(6, 6, 2))\n"
                                   "Conv2D(3, 3, use_bias=False)\n"
                                   "BatchNormalization(momentum=0.875, epsilon=1e-05, center=False)\n"
                                   "Flatten()\n"
                                   "Dense(5)\n"
                                   "BatchNormalization(axis=1, scale=False)\n"
                                   "Dense(2, activation='softmax')\n";

static char tmpdir[256];

/* ---- helpers -------------------------------------------------------------------------------------------- */

static void assert_ok(int rc, const struct error *err)
{
    if (rc != ERR_OK)
        fail_msg("rc %d: %s", rc, err->msg);
}

static void assert_msg(const struct error *err, const char *want)
{
    if (!strstr(err->msg, want))
        fail_msg("message \"%s\" does not contain \"%s\"", err->msg, want);
}

static void path_in_tmp(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static void parse(struct model *m, const char *text)
{
    struct error err = {0};
    assert_ok(model_parse(m, text, "test", &err), &err);
}

static struct net *make_net(const struct model *m)
{
    struct net *net;
    struct error err = {0};
    assert_ok(net_create(&net, m, &err), &err);
    return net;
}

/* Distinct, irregular floats, some negative, some tiny: a transposed or shifted copy cannot match. */
static void fill(float *x, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 1e-3f : 3.0f);
    }
}

/* Two models are the same when every layer has the same kind, name, shapes, parameters and model-file
 * line (which spells out every argument). */
static void assert_same_specs(const struct model *a, const struct model *b)
{
    char ta[256], tb[256];
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_params, b->n_params);
    assert_int_equal(a->n_classes, b->n_classes);
    for (int i = 0; i < a->n_layers; i++) {
        const struct layer_spec *x = &a->layers[i], *y = &b->layers[i];
        assert_ptr_equal(x->ops, y->ops);
        if (i > 0)
            assert_string_equal(x->name, y->name);
        assert_memory_equal(&x->in, &y->in, sizeof x->in);
        assert_memory_equal(&x->out, &y->out, sizeof x->out);
        assert_int_equal(x->n_params, y->n_params);
        for (int p = 0; p < x->n_params; p++) {
            assert_string_equal(x->params[p].name, y->params[p].name);
            assert_int_equal(x->params[p].rank, y->params[p].rank);
            assert_memory_equal(x->params[p].dims, y->params[p].dims, sizeof(long) * x->params[p].rank);
            assert_int_equal(x->params[p].offset, y->params[p].offset);
        }
        x->ops->to_text(x, ta, sizeof ta);
        y->ops->to_text(y, tb, sizeof tb);
        assert_string_equal(ta, tb);
        if (x->ops == &layer_dropout)
            assert_true(x->u.dropout.rate == y->u.dropout.rate);
    }
}

/* A string attribute read with the raw HDF5 API (variable length, as Keras writes them). */
static char *attr_string(hid_t obj, const char *name)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tget_class(t), H5T_STRING);
    assert_true(H5Tis_variable_str(t) > 0);
    char *s = NULL;
    assert_true(H5Aread(a, t, &s) >= 0);
    char *out = strdup(s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static char *file_attr_string(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char *s = attr_string(f, name);
    H5Fclose(f);
    return s;
}

/* A fixed-length, null-padded string array attribute as Keras writes layer_names and weight_names. */
static void assert_names_attr(hid_t obj, const char *name, const char *const *want, int n)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    size_t longest = 0;
    assert_true(a >= 0);
    assert_int_equal(H5Sget_simple_extent_ndims(s), 1);
    assert_int_equal(H5Sget_simple_extent_npoints(s), n);
    if (n == 0) {
        assert_int_equal(H5Tget_class(t), H5T_FLOAT); /* numpy's empty array, as in the Keras fixture */
    } else {
        for (int i = 0; i < n; i++)
            longest = strlen(want[i]) > longest ? strlen(want[i]) : longest;
        assert_int_equal(H5Tget_class(t), H5T_STRING);
        assert_false(H5Tis_variable_str(t) > 0);
        assert_int_equal(H5Tget_strpad(t), H5T_STR_NULLPAD);
        assert_int_equal(H5Tget_size(t), longest);
        char *buf = calloc((size_t)n, longest + 1);
        assert_true(H5Aread(a, t, buf) >= 0);
        for (int i = 0; i < n; i++) {
            char one[128] = "";
            memcpy(one, buf + (size_t)i * longest, longest);
            assert_string_equal(one, want[i]);
        }
        free(buf);
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
}

/* Dataset `name` is float32 of the given shape and holds exactly `want`. */
static void assert_dataset(hid_t f, const char *name, int rank, const hsize_t *dims, const float *want)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        fail_msg("no dataset %s", name);
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    hsize_t got[8];
    assert_true(H5Tequal(t, H5T_IEEE_F32LE) > 0);
    assert_int_equal(H5Sget_simple_extent_ndims(s), rank);
    H5Sget_simple_extent_dims(s, got, NULL);
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        assert_int_equal(got[i], dims[i]);
        n *= dims[i];
    }
    float *buf = malloc(sizeof *buf * (n + 1));
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    assert_memory_equal(buf, want, sizeof *buf * n);
    free(buf);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
}

static int64_t attr_i64(hid_t obj, const char *name)
{
    int64_t v = -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    return v;
}

/* The whole file, to prove it was not touched. */
static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*size + 1);
    assert_int_equal(fread(buf, 1, *size, f), *size);
    fclose(f);
    return buf;
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* An Adam state with every slot and scalar set to something recognisable. */
static void make_state(struct optim *opt, struct checkpoint_state *st, size_t n)
{
    struct optim_conf c;
    struct error err = {0};
    optim_defaults(&c, OPTIM_ADAM);
    c.lr = 0.0025;
    assert_ok(optim_init(opt, &c, n, &err), &err);
    fill(opt->slots, (size_t)opt->n_slots * n, 77);
    opt->iterations = 1234;
    *st = (struct checkpoint_state){.step = 1234, .epoch = 3, .epoch_step = 17, .seed = 0xfedcba9876543210ull,
                                    .global_batch = 96, .world_size = 4, .best_val_loss = 0.4321};
}

/* Writes the small model with weights from `seed` and an Adam state to `path`. */
static void write_small(const char *path, uint32_t seed, struct model *m, struct net **net_out)
{
    struct optim opt;
    struct checkpoint_state st;
    struct error err = {0};
    parse(m, small_text);
    struct net *net = make_net(m);
    fill(net->params, net->n_params, seed);
    make_state(&opt, &st, net->n_params);
    assert_ok(checkpoint_write(path, net, &opt, &st, &err), &err);
    optim_release(&opt);
    if (net_out)
        *net_out = net;
    else
        net_destroy(net);
}

/* ---- (1) the real Keras 2.1.3 file ---------------------------------------------------------------------- */

static const char *fixture(void)
{
    const char *p = getenv("TRAINER_KERAS_FIXTURE");
    return p ? p : DEFAULT_FIXTURE;
}

static void test_keras_fixture(void **state)
{
    (void)state;
    const char *path = fixture();
    struct error err = {0};
    struct model m, m2;
    /* The fixture ships in shared/ beside the repository (CMake passes its path); without it this test
     * would prove nothing, so a missing file fails. */
    if (access(path, R_OK) != 0)
        fail_msg("Keras fixture %s not found (set TRAINER_KERAS_FIXTURE)", path);
    char *json = file_attr_string(path, "model_config");
    assert_ok(keras_config_to_model(json, path, &m, &err), &err);
    free(json);

    /* Input + Conv2D(16, 32, 64, 128) each followed by MaxPooling2D, Dropout(0.2), Flatten, Dense(500), Dense(10). */
    const struct layer_ops *kinds[] = {&layer_input, &layer_conv2d, &layer_max_pooling2d, &layer_conv2d,
                                       &layer_max_pooling2d, &layer_conv2d, &layer_max_pooling2d, &layer_conv2d,
                                       &layer_max_pooling2d, &layer_dropout, &layer_flatten, &layer_dense,
                                       &layer_dense};
    const int out_c[] = {3, 16, 16, 32, 32, 64, 64, 128, 128, 128, 512, 500, 10};
    const int out_h[] = {32, 32, 16, 16, 8, 8, 4, 4, 2, 2, 1, 1, 1};
    assert_int_equal(m.n_layers, 13);
    for (int i = 0; i < 13; i++) {
        assert_ptr_equal(m.layers[i].ops, kinds[i]);
        assert_int_equal(m.layers[i].out.c, out_c[i]);
        assert_int_equal(m.layers[i].out.h, out_h[i]);
        assert_int_equal(m.layers[i].out.w, out_h[i]);
    }
    assert_string_equal(m.layers[1].name, "conv2d_41");
    assert_string_equal(m.layers[9].name, "dropout_15");
    assert_string_equal(m.layers[12].name, "dense_22");
    assert_true(m.layers[1].u.conv.same && m.layers[1].u.conv.kh == 2 && m.layers[1].u.conv.act == ACT_RELU);
    assert_true(m.layers[2].u.pool.ph == 2 && m.layers[2].u.pool.sh == 2 && !m.layers[2].u.pool.same);
    assert_true(m.layers[9].u.dropout.rate == 0.2);
    assert_int_equal(m.layers[11].u.dense.units, 500);
    assert_int_equal(m.layers[12].u.dense.act, ACT_SOFTMAX);
    /* Conv2D: 2*2*3*16+16 = 208, 2*2*16*32+32 = 2080, 2*2*32*64+64 = 8256, 2*2*64*128+128 = 32896;
     * Dense: 512*500+500 = 256500, 500*10+10 = 5010. Total 304950. */
    assert_int_equal(m.n_params, 304950);
    assert_int_equal(m.n_classes, 10);

    /* checkpoint_read_model takes the same road for a file without /trainer. */
    assert_ok(checkpoint_read_model(path, &m2, &err), &err);
    assert_same_specs(&m, &m2);

    struct net *net = make_net(&m);
    assert_ok(checkpoint_read_weights(path, net, &err), &err);
    /* From `h5dump -m '%.9g' -d '/model_weights/conv2d_41/conv2d_41/kernel:0' -s 0,0,0,0 -c 1,1,1,4` on the
     * fixture (9 digits identify a float32 exactly): */
    const float *k41 = net->params + m.layers[1].params[0].offset;
    assert_true(k41[0] == -0.226026639f && k41[1] == 0.205972224f && k41[2] == -0.0964898989f &&
                k41[3] == 0.229369521f);
    /* `h5dump -m '%.9g' -d '/model_weights/dense_21/dense_21/kernel:0' -s 0,0 -c 1,3` and
     * `... -d '/model_weights/dense_22/dense_22/bias:0'`: */
    const float *k21 = net->params + m.layers[11].params[0].offset;
    assert_true(k21[0] == 0.0697512627f && k21[1] == 0.000444039702f && k21[2] == 0.0664052069f);
    const float *b22 = net->params + m.layers[12].params[1].offset;
    assert_true(b22[0] == -0.0436966568f && b22[1] == -0.121644028f && b22[9] != 0.0f);
    assert_int_equal(m.layers[12].params[1].offset + 10, m.n_params);

    /* The canonical text of the imported model keeps Keras's names (name='conv2d_41'): it reparses to the same
     * layers, which take the same weights. */
    parse(&m2, m.text);
    assert_string_equal(m2.layers[1].name, "conv2d_41");
    assert_non_null(strstr(m.text, "name='conv2d_41'"));
    assert_int_equal(m2.n_params, m.n_params);
    struct net *net2 = make_net(&m2);
    assert_ok(checkpoint_read_weights(path, net2, &err), &err);
    assert_memory_equal(net2->params, net->params, sizeof(float) * m.n_params);
    net_destroy(net2);

    /* Saved as a checkpoint, the imported model keeps its Keras names (conv2d_41 ...) and its weights. */
    char ck[512];
    path_in_tmp(ck, sizeof ck, "from_keras.h5");
    assert_ok(checkpoint_write(ck, net, NULL, NULL, &err), &err);
    assert_ok(checkpoint_read_model(ck, &m2, &err), &err);
    assert_same_specs(&m, &m2);
    net2 = make_net(&m2);
    assert_ok(checkpoint_read_weights(ck, net2, &err), &err);
    assert_memory_equal(net2->params, net->params, sizeof(float) * m.n_params);
    net_destroy(net2);
    net_destroy(net);
}

/* ---- (2) round trip ------------------------------------------------------------------------------------- */

/* The file as Keras and h5py users see it, checked with HDF5 directly. */
static void check_keras_layout(const char *path, const struct net *net, const struct optim *opt)
{
    const struct model *m = &net->model;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char *s = attr_string(f, "keras_version");
    assert_string_equal(s, "2.1.6");
    free(s);
    s = attr_string(f, "backend");
    assert_string_equal(s, "tensorflow");
    free(s);
    s = attr_string(f, "training_config");
    /* jansson writes 1e-7 where Python writes 1e-07: the same number to every JSON reader. */
    assert_non_null(strstr(s, "{\"optimizer_config\": {\"class_name\": \"Adam\", \"config\": {\"lr\": 0.0025, "
                              "\"beta_1\": 0.9, \"beta_2\": 0.999, \"decay\": 0.0, \"epsilon\": 1e-"));
    assert_non_null(strstr(s, "7, \"amsgrad\": false}}, \"loss\": \"categorical_crossentropy\", \"metrics\": "
                              "[\"accuracy\"], \"sample_weight_mode\": null, \"loss_weights\": null}"));
    free(s);
    s = attr_string(f, "model_config");
    assert_non_null(strstr(s, "{\"class_name\": \"Sequential\", \"config\": [{\"class_name\": \"Conv2D\", "
                              "\"config\": {\"name\": \"conv2d_1\", \"trainable\": true, \"batch_input_shape\": "
                              "[null, 9, 8, 3], \"dtype\": \"float32\", \"filters\": 4"));
    assert_non_null(strstr(s, "\"rate\": 0.3,"));
    free(s);

    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    assert_true(g >= 0);
    const char *names[] = {"conv2d_1",  "max_pooling2d_1", "conv2d_2", "average_pooling2d_1", "dropout_1",
                           "flatten_1", "dense_1",         "activation_1", "dense_2"};
    assert_names_attr(g, "layer_names", names, 9);
    assert_false(H5Lexists(g, "input_1", H5P_DEFAULT) > 0);
    for (int i = 0; i < 9; i++)
        assert_string_equal(m->layers[i + 1].name, names[i]);
    hid_t c1 = H5Gopen2(g, "conv2d_1", H5P_DEFAULT), c2 = H5Gopen2(g, "conv2d_2", H5P_DEFAULT);
    hid_t mp = H5Gopen2(g, "max_pooling2d_1", H5P_DEFAULT);
    assert_names_attr(c1, "weight_names", (const char *[]){"conv2d_1/kernel:0", "conv2d_1/bias:0"}, 2);
    assert_names_attr(c2, "weight_names", (const char *[]){"conv2d_2/kernel:0"}, 1);
    assert_names_attr(mp, "weight_names", NULL, 0);
    H5Gclose(mp);
    H5Gclose(c2);
    H5Gclose(c1);
    H5Gclose(g);

    const float *p = net->params;
    assert_dataset(f, "/model_weights/conv2d_1/conv2d_1/kernel:0", 4, (hsize_t[]){3, 3, 3, 4}, p);
    assert_dataset(f, "/model_weights/conv2d_1/conv2d_1/bias:0", 1, (hsize_t[]){4}, p + 108);
    assert_dataset(f, "/model_weights/conv2d_2/conv2d_2/kernel:0", 4, (hsize_t[]){2, 3, 4, 5}, p + 112);
    assert_dataset(f, "/model_weights/dense_1/dense_1/kernel:0", 2, (hsize_t[]){15, 6}, p + 232);
    assert_dataset(f, "/model_weights/dense_1/dense_1/bias:0", 1, (hsize_t[]){6}, p + 322);
    assert_dataset(f, "/model_weights/dense_2/dense_2/kernel:0", 2, (hsize_t[]){6, 3}, p + 328);
    assert_dataset(f, "/model_weights/dense_2/dense_2/bias:0", 1, (hsize_t[]){3}, p + 346);

    g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    assert_int_equal(attr_i64(g, "format_version"), CHECKPOINT_FORMAT_VERSION);
    assert_int_equal(attr_i64(g, "world_size"), 4);
    assert_int_equal(attr_i64(g, "iterations"), 1234);
    s = attr_string(g, "optimizer");
    assert_string_equal(s, "adam");
    free(s);
    s = attr_string(g, "model_text");
    assert_string_equal(s, m->text);
    free(s);
    assert_dataset(g, "optimizer_slots", 2, (hsize_t[]){2, SMALL_PARAMS}, opt->slots);
    H5Gclose(g);
    H5Fclose(f);
}

/* model_config -> model gives the layers back, for every kind. */
static void test_config_round_trip(void **state)
{
    (void)state;
    const char *const texts[] = {small_text, gap_text, gmp_text, odd_rate_text, bn_text};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct model a, b;
        struct error err = {0};
        parse(&a, texts[i]);
        char *json = keras_config_from_model(&a);
        assert_non_null(json);
        assert_ok(keras_config_to_model(json, "json", &b, &err), &err);
        assert_same_specs(&a, &b);
        /* And the canonical text made from the Keras config is a model file for the same model. */
        struct model c;
        parse(&c, b.text);
        assert_same_specs(&a, &c);
        free(json);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[512];
    struct model m, m2;
    struct error err = {0};
    struct optim opt, opt2;
    struct checkpoint_state st, st2;
    path_in_tmp(path, sizeof path, "round.h5");
    parse(&m, small_text);
    assert_int_equal(m.n_params, SMALL_PARAMS);
    struct net *net = make_net(&m);
    fill(net->params, net->n_params, 5);
    make_state(&opt, &st, net->n_params);
    static const char *const names[] = {"cat", "d\xc3\xb6g", "T-shirt/top"};
    st.class_names = names;
    st.n_class_names = 3;
    assert_ok(checkpoint_write(path, net, &opt, &st, &err), &err);
    check_keras_layout(path, net, &opt);
    char **got;
    int n_got;
    assert_ok(checkpoint_read_class_names(path, &got, &n_got, &err), &err);
    assert_int_equal(n_got, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(got[i], names[i]);
    checkpoint_free_class_names(got, n_got);

    assert_ok(checkpoint_read_model(path, &m2, &err), &err);
    assert_same_specs(&m, &m2);
    assert_string_equal(m2.text, m.text);
    char *json = file_attr_string(path, "model_config");
    assert_ok(keras_config_to_model(json, path, &m2, &err), &err);
    free(json);
    assert_same_specs(&m, &m2);

    struct net *net2 = make_net(&m2);
    assert_ok(checkpoint_read_weights(path, net2, &err), &err);
    assert_memory_equal(net2->params, net->params, sizeof(float) * SMALL_PARAMS);

    assert_ok(optim_init(&opt2, &opt.conf, SMALL_PARAMS, &err), &err);
    assert_ok(checkpoint_read_state(path, &opt2, &st2, &err), &err);
    assert_memory_equal(opt2.slots, opt.slots, sizeof(float) * 2 * SMALL_PARAMS);
    assert_int_equal(opt2.iterations, 1234);
    assert_int_equal(st2.step, st.step);
    assert_int_equal(st2.epoch, st.epoch);
    assert_int_equal(st2.epoch_step, st.epoch_step);
    assert_true(st2.seed == st.seed);
    assert_int_equal(st2.global_batch, st.global_batch);
    assert_int_equal(st2.world_size, st.world_size);
    assert_true(st2.best_val_loss == st.best_val_loss);

    /* A weights-only file (no optimizer, no state) still loads as a model with weights. */
    path_in_tmp(path, sizeof path, "weights_only.h5");
    assert_ok(checkpoint_write(path, net, NULL, NULL, &err), &err);
    memset(net2->params, 0, sizeof(float) * SMALL_PARAMS);
    assert_ok(checkpoint_read_weights(path, net2, &err), &err);
    assert_memory_equal(net2->params, net->params, sizeof(float) * SMALL_PARAMS);
    assert_int_equal(checkpoint_read_state(path, &opt2, &st2, &err), ERR_INPUT);
    assert_ok(checkpoint_read_class_names(path, &got, &n_got, &err), &err);
    assert_int_equal(n_got, 0); /* none written: none read, no error */

    optim_release(&opt2);
    optim_release(&opt);
    net_destroy(net2);
    net_destroy(net);
}

/* ---- (3) files that are not checkpoints, or from a newer trainer ---------------------------------------- */

static void test_rejected_files(void **state)
{
    (void)state;
    char path[512];
    struct model m;
    struct error err = {0};
    path_in_tmp(path, sizeof path, "v99.h5");
    write_small(path, 1, &m, NULL);
    /* (H5Aopen_by_name would do, but HDF5 1.10 cannot write through it unless the group is open.) */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "trainer", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "format_version", H5P_DEFAULT);
    int v = 99;
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
    char want[600];
    snprintf(want, sizeof want, "%s: checkpoint format version 99 is newer than this trainer supports (1)", path);
    assert_int_equal(checkpoint_read_model(path, &m, &err), ERR_INPUT);
    assert_string_equal(err.msg, want);
    struct net *net = make_net(&m);
    err = (struct error){0};
    assert_int_equal(checkpoint_read_weights(path, net, &err), ERR_INPUT);
    assert_string_equal(err.msg, want);
    net_destroy(net);

    /* Not HDF5 at all; HDF5 without a model; no such file. */
    path_in_tmp(path, sizeof path, "text.h5");
    FILE *t = fopen(path, "w");
    fputs("this is not a checkpoint\n", t);
    fclose(t);
    assert_int_equal(checkpoint_read_model(path, &m, &err), ERR_INPUT);
    assert_msg(&err, "not an HDF5 file");
    path_in_tmp(path, sizeof path, "empty.h5");
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    assert_int_equal(checkpoint_read_model(path, &m, &err), ERR_INPUT);
    assert_msg(&err, "no model in this file");
    path_in_tmp(path, sizeof path, "missing.h5");
    assert_int_equal(checkpoint_read_model(path, &m, &err), ERR_INPUT);
    assert_msg(&err, "missing.h5: No such file or directory");
}

/* ---- (4) weights of another shape ----------------------------------------------------------------------- */

static void test_shape_mismatch(void **state)
{
    (void)state;
    char path[512], want[700];
    struct model a, b;
    struct error err = {0};
    path_in_tmp(path, sizeof path, "shape.h5");
    parse(&a, "Input(shape=(8, 8, 3))\nConv2D(4, 2, padding='same')\nFlatten()\nDense(2, activation='softmax')\n");
    parse(&b, "Input(shape=(8, 8, 3))\nConv2D(4, 3, padding='same')\nFlatten()\nDense(2, activation='softmax')\n");
    struct net *na = make_net(&a), *nb = make_net(&b);
    fill(na->params, na->n_params, 9);
    fill(nb->params, nb->n_params, 10);
    float *before = malloc(sizeof(float) * nb->n_params);
    memcpy(before, nb->params, sizeof(float) * nb->n_params);
    assert_ok(checkpoint_write(path, na, NULL, NULL, &err), &err);
    assert_int_equal(checkpoint_read_weights(path, nb, &err), ERR_INPUT);
    snprintf(want, sizeof want, "%s: conv2d_1/kernel:0 has shape (2, 2, 3, 4), the model expects (3, 3, 3, 4)",
             path);
    assert_string_equal(err.msg, want);
    /* Nothing was half loaded. */
    assert_memory_equal(nb->params, before, sizeof(float) * nb->n_params);

    /* Another optimizer than the one in the file. */
    struct model m;
    struct optim sgd;
    struct optim_conf c;
    path_in_tmp(path, sizeof path, "adam.h5");
    write_small(path, 2, &m, NULL);
    optim_defaults(&c, OPTIM_SGD);
    assert_ok(optim_init(&sgd, &c, SMALL_PARAMS, &err), &err);
    struct checkpoint_state st;
    assert_int_equal(checkpoint_read_state(path, &sgd, &st, &err), ERR_INPUT);
    assert_msg(&err, "optimizer is adam, not sgd");
    optim_release(&sgd);
    free(before);
    net_destroy(nb);
    net_destroy(na);
}

/* ---- (5) failed writes leave the previous checkpoint whole ---------------------------------------------- */

static void assert_write_fails(const char *path, const struct net *net, const char *want)
{
    struct error err = {0};
    assert_int_equal(checkpoint_write(path, net, NULL, NULL, &err), ERR_IO);
    if (strncmp(err.msg, path, strlen(path)) != 0 || !strstr(err.msg, "cannot write checkpoint: ") ||
        !strstr(err.msg, want))
        fail_msg("got \"%s\", want \"%s: cannot write checkpoint: ...%s...\"", err.msg, path, want);
}

static void test_failed_writes(void **state)
{
    (void)state;
    char path[512], bad[600], squat[600];
    struct model m;
    struct net *net;
    size_t size0, size1;
    path_in_tmp(path, sizeof path, "keep.h5");
    write_small(path, 3, &m, &net);
    char *before = slurp(path, &size0);
    fill(net->params, net->n_params, 4); /* what a failed write must not leave behind */

    snprintf(bad, sizeof bad, "%s/no-such-dir/c.h5", tmpdir);
    assert_write_fails(bad, net, "No such file or directory");
    snprintf(bad, sizeof bad, "%s/keep.h5/c.h5", tmpdir); /* a file where a directory should be */
    assert_write_fails(bad, net, "Not a directory");

    /* The temporary name taken by a directory: the file cannot even be created. */
    snprintf(squat, sizeof squat, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(squat, 0700), 0);
    assert_write_fails(path, net, "Is a directory");
    assert_int_equal(rmdir(squat), 0);

    /* A disk that fills up in the middle of the write (a file size limit works even as root). */
    struct rlimit old, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct error err = {0};
    int rc = checkpoint_write(path, net, NULL, NULL, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, ERR_IO);
    assert_msg(&err, "cannot write checkpoint: File too large");

    /* An unwritable directory (permissions do not stop root). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(tmpdir, 0500), 0);
        assert_write_fails(path, net, "Permission denied");
        assert_int_equal(chmod(tmpdir, 0700), 0);
    }

    /* Non-finite weights (a diverged run) are never written, and leave the file as it was. */
    float kept = net->params[1];
    net->params[1] = NAN;
    assert_int_equal(checkpoint_write(path, net, NULL, NULL, &err), ERR_DIVERGED);
    assert_msg(&err, "not written: the weights are not finite");
    net->params[1] = kept;

    char *after = slurp(path, &size1);
    assert_int_equal(size1, size0);
    assert_memory_equal(after, before, size0);
    assert_int_equal(count_tmp_files(tmpdir), 0);

    /* And a write that succeeds replaces it. */
    assert_ok(checkpoint_write(path, net, NULL, NULL, &err), &err);
    struct net *back = make_net(&m);
    assert_ok(checkpoint_read_weights(path, back, &err), &err);
    assert_memory_equal(back->params, net->params, sizeof(float) * net->n_params);
    assert_int_equal(count_tmp_files(tmpdir), 0);
    net_destroy(back);
    free(after);
    free(before);
    net_destroy(net);
}

/* ---- main ----------------------------------------------------------------------------------------------- */

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_checkpoint.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* The directory holds only files written by these tests. */
static int remove_tmpdir(void **state)
{
    (void)state;
    char p[600];
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    return rmdir(tmpdir);
}

int main(void)
{
    /* The tests use raw HDF5 calls that are expected to fail (no such attribute): no stack dumps. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keras_fixture),     cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_rejected_files),
        cmocka_unit_test(test_shape_mismatch),    cmocka_unit_test(test_failed_writes),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}

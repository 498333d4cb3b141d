/* cmd_info.c: `trainer info FILE.h5`: what a dataset, a checkpoint or a Keras model file holds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>
#include <jansson.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "h5file.h"
#include "model.h"
#include "onnx_read.h"
#include "summary.h"

static const char usage_text[] =
    "usage: trainer info FILE\n\n"
    "Says which kind of file FILE.h5 is and describes it:\n"
    "  a dataset            image shape, sample count, class names and samples per class\n"
    "  a trainer checkpoint the model (Keras-like summary), optimizer, epochs and steps done, global batch,\n"
    "                       seed and the number of ranks that wrote it\n"
    "  a Keras model file   the model, the Keras version and the optimizer it was compiled with\n"
    "  an ONNX model        opset, producer, input and output shapes, nodes by op type, weights, metadata\n\n"
    "  -h, --help           this help\n";

enum kind { KIND_UNKNOWN, KIND_DATASET, KIND_CHECKPOINT, KIND_KERAS };

static enum kind detect(const char *path)
{
    /* h5file_open_read, not H5Fis_hdf5: that would wait forever on a pipe. Its error is said again below. */
    struct error ignored;
    hid_t f;
    if (h5file_open_read(path, &f, &ignored))
        return KIND_UNKNOWN;
    enum kind k = KIND_UNKNOWN;
    if (H5Lexists(f, "trainer", H5P_DEFAULT) > 0)
        k = KIND_CHECKPOINT;
    else if (H5Aexists(f, "model_config") > 0)
        k = KIND_KERAS;
    else if (H5Lexists(f, "images", H5P_DEFAULT) > 0)
        k = KIND_DATASET;
    H5Fclose(f);
    return k;
}

static int info_dataset(const char *path, struct error *err)
{
    struct dataset ds;
    int rc = dataset_open(&ds, path, err);
    if (rc)
        return rc;
    int classes = ds.n_class_names, max_label = -1;
    int slots = classes > 0 ? classes : DATASET_MAX_CLASSES;
    int64_t *counts = calloc((size_t)slots, sizeof(int64_t));
    if (!counts) {
        dataset_close(&ds);
        return error_set(err, ERR_INTERNAL, "out of memory");
    }
    rc = dataset_label_counts(&ds, counts, slots, &max_label, err);
    if (rc == ERR_OK) {
        char n[32];
        int width = 5; /* "class" */
        if (!classes)
            classes = max_label + 1 < slots ? max_label + 1 : slots;
        for (int k = 0; k < ds.n_class_names; k++)
            width = (int)strlen(ds.class_names[k]) > width ? (int)strlen(ds.class_names[k]) : width;
        printf("%s: dataset\n", path);
        printf("  images:  %lld x %d x %d x %d uint8 (N, H, W, C)\n", (long long)ds.n, ds.h, ds.w, ds.c);
        printf("  classes: %d%s\n\n", classes, ds.n_class_names ? "" : " (no class_names attribute: labels only)");
        printf("  %5s  %-*s %10s %7s\n", "label", width, "class", "samples", "share");
        for (int k = 0; k < classes; k++)
            printf("  %5d  %-*s %10s %6.1f%%\n", k, width, k < ds.n_class_names ? ds.class_names[k] : "",
                   summary_count(n, sizeof n, counts[k]), 100.0 * (double)counts[k] / (double)ds.n);
        printf("  %5s  %-*s %10s\n", "", width, "total", summary_count(n, sizeof n, ds.n));
        /* The trainer rejects such labels when it reads them: say so before a run does. */
        if (ds.n_class_names && max_label >= ds.n_class_names)
            printf("  warning: labels go up to %d but there are only %d class names\n", max_label,
                   ds.n_class_names);
    }
    free(counts);
    dataset_close(&ds);
    return rc;
}

/* A root string attribute (variable or fixed length, as h5py writes either), malloc'd; NULL if absent. */
static char *root_string(const char *path, const char *name)
{
    char *out = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), a = -1, t = -1, mt = -1;
    if (f < 0)
        return NULL;
    if (H5Aexists(f, name) <= 0 || (a = H5Aopen(f, name, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 ||
        H5Tget_class(t) != H5T_STRING || (mt = H5Tcopy(H5T_C_S1)) < 0)
        goto done;
    if (H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        if (H5Aread(a, mt, &v) >= 0 && v) {
            out = malloc(strlen(v) + 1);
            if (out)
                strcpy(out, v);
            H5free_memory(v);
        }
    } else {
        size_t n = H5Tget_size(t);
        H5Tset_size(mt, n);
        out = calloc(n + 1, 1);
        if (out && H5Aread(a, mt, out) < 0) {
            free(out);
            out = NULL;
        }
    }
done:
    if (mt >= 0)
        H5Tclose(mt);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    H5Fclose(f);
    return out;
}

/* "Adam (lr 0.001, beta_1 0.9, ...)" from a Keras training_config, as far as it says. */
static void print_keras_optimizer(const char *training_config)
{
    json_t *root = training_config ? json_loads(training_config, 0, NULL) : NULL;
    json_t *oc = json_object_get(root, "optimizer_config");
    const char *cls = json_string_value(json_object_get(oc, "class_name"));
    json_t *conf = json_object_get(oc, "config");
    if (!cls) {
        printf("Optimizer:  none recorded (the model was saved uncompiled)\n");
        json_decref(root);
        return;
    }
    printf("Optimizer:  %s", cls);
    const char *key, *sep = " (";
    json_t *v;
    json_object_foreach(conf, key, v)
    {
        /* Keras stores float32 values in doubles (0.0010000000474974513): %g shows what was meant. */
        if (json_is_number(v))
            printf("%s%s %g", sep, key, json_number_value(v));
        else if (json_is_boolean(v))
            printf("%s%s %s", sep, key, json_is_true(v) ? "true" : "false");
        else if (json_is_string(v))
            printf("%s%s %s", sep, key, json_string_value(v));
        else
            continue;
        sep = ", ";
    }
    printf("%s\n", *sep == ',' ? ")" : "");
    const char *loss = json_string_value(json_object_get(root, "loss"));
    if (loss)
        printf("Loss:       %s\n", loss);
    json_decref(root);
}

/* The learning-rate schedule and the callbacks with their state. */
static void print_schedule(const struct checkpoint_state *st)
{
    char s[256];
    const struct callbacks *c = &st->callbacks;
    printf("Schedule:   %s", sched_describe(s, sizeof s, &st->sched));
    if (st->sched_steps_per_epoch > 0)
        printf(" (%lld epochs of %lld steps)", (long long)st->sched_epochs, (long long)st->sched_steps_per_epoch);
    putchar('\n');
    for (int i = 0; i < c->n; i++) {
        const struct callback *cb = &c->cb[i];
        printf("Callback:   %s\n            best %s %.6g at epoch %ld, wait %ld", cb->text, cb->monitor_name,
               cb->best, cb->best_epoch + 1, cb->wait);
        if (cb->kind == CB_REDUCE_LR_ON_PLATEAU)
            printf(", cooldown %ld, lr factor %g\n", cb->cooldown_counter, c->lr_factor);
        else if (cb->stopped_epoch >= 0)
            printf(", stopped training after epoch %ld%s\n", cb->stopped_epoch + 1,
                   c->restored ? " (best weights restored)" : "");
        else
            printf("\n");
    }
}

static void print_state(const struct checkpoint_state *st)
{
    char a[32], b[32], opt[256];
    printf("Optimizer:  %s\n", summary_optimizer(opt, sizeof opt, &st->optim));
    printf("Trained:    %lld epoch%s", (long long)st->epoch, st->epoch == 1 ? "" : "s");
    if (st->epoch_step)
        printf(" and %lld batch%s of epoch %lld", (long long)st->epoch_step, st->epoch_step == 1 ? "" : "es",
               (long long)st->epoch + 1);
    printf(", %s steps (global batch %s, seed %llu)\n", summary_count(a, sizeof a, st->step),
           summary_count(b, sizeof b, st->global_batch), (unsigned long long)st->seed);
    printf("Written by: %d rank%s (world size %d); it resumes on any number of ranks\n", st->world_size,
           st->world_size == 1 ? "" : "s", st->world_size);
    if (isfinite(st->best_val_loss))
        printf("Best:       val_loss %.4f\n", st->best_val_loss);
    if (st->accumulate > 1 || st->label_smoothing > 0) {
        printf("Recipe:    ");
        if (st->accumulate > 1)
            printf(" --accumulate %lld (optimizer steps of %lld samples)", (long long)st->accumulate,
                   (long long)(st->accumulate * st->global_batch));
        if (st->label_smoothing > 0)
            printf(" --label-smoothing %g", st->label_smoothing);
        putchar('\n');
    }
    print_schedule(st);
}

/* The classes training stored: "Classes:    10: T-shirt/top, Trouser, ..." */
static int print_class_names(const char *path, struct error *err)
{
    char **names;
    int n, rc = checkpoint_read_class_names(path, &names, &n, err);

    if (rc || n == 0)
        return rc;
    printf("Classes:    %d: ", n);
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? ", " : "", names[i]);
    printf("\n");
    checkpoint_free_class_names(names, n);
    return ERR_OK;
}

static int info_model(const char *path, enum kind kind, struct error *err)
{
    struct model *m = malloc(sizeof *m);
    if (!m)
        return error_set(err, ERR_INTERNAL, "out of memory");
    int rc = checkpoint_read_model(path, m, err);
    if (rc == ERR_OK) {
        char *version = root_string(path, "keras_version"), *backend = root_string(path, "backend");
        printf("%s: %s\n\n", path,
               kind == KIND_CHECKPOINT ? "trainer checkpoint (a Keras 2 full-model file plus the training state)"
                                       : "Keras model file (no trainer state)");
        summary_print(stdout, m, NULL);
        printf("Keras:      version %s, backend %s\n", version ? version : "?", backend ? backend : "?");
        free(version);
        free(backend);
        if (kind == KIND_CHECKPOINT) {
            struct checkpoint_state st;
            rc = checkpoint_read_state(path, NULL, &st, err);
            if (rc == ERR_OK)
                rc = print_class_names(path, err);
            if (rc == ERR_OK) {
                print_state(&st);
                printf("Continue:   trainer train --resume %s --data TRAIN.h5 --epochs E\n", path);
            }
        } else {
            char *tc = root_string(path, "training_config");
            print_keras_optimizer(tc);
            free(tc);
            printf("Use it with eval, predict, or train --init-weights (the weights only).\n");
        }
    }
    free(m);
    return rc;
}

static void print_onnx_value(const char *what, const struct onnx_value *v)
{
    printf("  %-13s %s %s (", what, v->name, v->elem_type);
    for (int i = 0; i < v->rank && i < ONNX_INFO_MAX_DIMS; i++)
        printf("%s%s", i ? ", " : "", v->dims[i]);
    printf("%s)\n", v->rank > ONNX_INFO_MAX_DIMS ? ", ..." : v->rank < 0 ? "shape not recorded" : "");
}

static int info_onnx(const char *path, struct error *err)
{
    struct onnx_info *in = malloc(sizeof *in);
    if (!in)
        return error_set(err, ERR_INTERNAL, "out of memory");
    int rc = onnx_info_read(path, in, err);
    if (rc == ERR_OK) {
        char n[32];
        printf("%s: ONNX model (IR version %lld)\n\n", path, (long long)in->ir_version);
        printf("  producer      %s %s\n", in->producer[0] ? in->producer : "?", in->producer_version);
        for (int i = 0; i < in->n_opsets && i < ONNX_INFO_MAX_OPSETS; i++)
            printf("  opset         %s %lld\n", in->opsets[i].domain[0] ? in->opsets[i].domain : "ai.onnx",
                   (long long)in->opsets[i].version);
        for (int i = 0; i < in->n_inputs && i < ONNX_INFO_MAX_IO; i++)
            print_onnx_value("input", &in->inputs[i]);
        for (int i = 0; i < in->n_outputs && i < ONNX_INFO_MAX_IO; i++)
            print_onnx_value("output", &in->outputs[i]);
        printf("  weights       %s in %d tensors\n", summary_count(n, sizeof n, in->n_weights), in->n_initializers);
        printf("  nodes         %d:", in->n_nodes);
        for (int i = 0; i < in->n_op_types && i < ONNX_INFO_MAX_OPS; i++)
            printf("%s %s %d", i ? "," : "", in->ops[i].op, in->ops[i].count);
        printf("%s\n", in->n_op_types > ONNX_INFO_MAX_OPS ? ", ..." : "");
        for (int i = 0; i < in->n_meta && i < ONNX_INFO_MAX_META; i++)
            printf("  metadata      %s: %s\n", in->meta[i].key, in->meta[i].value);
    }
    free(in);
    return rc;
}

/* ONNX files are protobuf, with no signature: a file that is not HDF5 is tried as one when it is named
 * *.onnx or parses as a model. */
static int looks_onnx(const char *path)
{
    size_t n = strlen(path);
    struct onnx_info *in;
    struct stat st;
    if (n > 5 && strcmp(path + n - 5, ".onnx") == 0)
        return 1;
    /* Only a regular file: opening a pipe would wait for a writer. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || cli_is_hdf5(path) || !(in = malloc(sizeof *in)))
        return 0;
    struct error ignored;
    int ok = onnx_info_read(path, in, &ignored) == ERR_OK;
    free(in);
    return ok;
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct error err = {0};
    int c;
    while ((c = cli_getopt("info", argc, argv, "h", opts)) != -1) {
        if (c != 'h')
            return ERR_USAGE;
        fputs(usage_text, stdout);
        return 0;
    }
    if (optind == argc)
        return cli_usage("info", "info needs a file: trainer info FILE");
    if (argc - optind > 1)
        return cli_usage("info", "info takes one file, not %d", argc - optind);
    const char *path = argv[optind];
    enum kind k = detect(path);
    int rc;
    switch (k) {
    case KIND_DATASET: rc = info_dataset(path, &err); break;
    case KIND_CHECKPOINT:
    case KIND_KERAS: rc = info_model(path, k, &err); break;
    default: {
        if (looks_onnx(path)) {
            rc = info_onnx(path, &err);
            break;
        }
        /* Let the dataset reader say what is wrong (missing, not HDF5, damaged, no /images). */
        struct dataset ds;
        rc = dataset_open(&ds, path, &err);
        if (rc == ERR_OK) {
            dataset_close(&ds);
            rc = error_set(&err, ERR_INPUT, "%s: neither a dataset nor a model file", path);
        }
        break;
    }
    }
    if (rc)
        cli_print_error(&err);
    return rc;
}

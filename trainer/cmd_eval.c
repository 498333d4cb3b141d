/* cmd_eval.c: `trainer eval` (loss, accuracy, per-class accuracy, confusion matrix) and `trainer predict`
 * (probabilities and predicted classes to HDF5), on one rank or split across many. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <jansson.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "dist.h"
#include "evaluate.h"
#include "h5file.h"
#include "net.h"

static const char eval_usage[] =
    "usage: trainer eval --checkpoint C.h5 --data TEST.h5 [options]\n\n"
    "Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint (or a Keras model file).\n\n"
    "  --checkpoint F    checkpoint or Keras full-model HDF5 file (required)\n"
    "  --data F          dataset, HDF5 (required)\n"
    "  --batch-size B    samples per rank per forward pass (default 256)\n"
    "  --threads T       threads per rank (default: cores / ranks on the node)\n"
    "  --tta flip        test-time augmentation: the mean of the probabilities of each image and its mirror\n"
    "  --json            one JSON object instead of the tables\n"
    "  -h, --help        this help\n";

static const char predict_usage[] =
    "usage: trainer predict --checkpoint C.h5 --data D.h5 -o P.h5 [options]\n\n"
    "Writes /probabilities float32 (N, classes) and /predictions int32 (N,) to P.h5.\n\n"
    "  --checkpoint F    checkpoint or Keras full-model HDF5 file (required)\n"
    "  --data F          dataset, HDF5 (required; /labels is read but not used)\n"
    "  -o, --output F    output HDF5 file (required; replaced atomically)\n"
    "  --batch-size B    samples per rank per forward pass (default 256)\n"
    "  --threads T       threads per rank (default: cores / ranks on the node)\n"
    "  --tta flip        test-time augmentation: the mean of the probabilities of each image and its mirror\n"
    "  -h, --help        this help\n";

struct eval_opts {
    const char *checkpoint, *data, *output;
    long batch, threads;
    int json;
    int tta_flip; /* --tta flip */
};

enum { OPT_CHECKPOINT = 256, OPT_DATA, OPT_BATCH, OPT_THREADS, OPT_JSON, OPT_TTA };

static int parse(const char *cmd, const char *usage, int predict, int argc, char **argv, struct eval_opts *o)
{
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, OPT_CHECKPOINT}, {"data", required_argument, 0, OPT_DATA},
        {"batch-size", required_argument, 0, OPT_BATCH},      {"threads", required_argument, 0, OPT_THREADS},
        {"json", no_argument, 0, OPT_JSON},                   {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},                        {"tta", required_argument, 0, OPT_TTA},
        {0, 0, 0, 0},
    };
    int c, rc = 0;
    memset(o, 0, sizeof *o);
    o->batch = 256;
    while (rc == 0 && (c = cli_getopt(cmd, argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case OPT_CHECKPOINT: o->checkpoint = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_BATCH: rc = cli_long(cmd, "--batch-size", optarg, 1, 1 << 16, &o->batch); break;
        case OPT_THREADS: rc = cli_long(cmd, "--threads", optarg, 1, 4096, &o->threads); break;
        case OPT_TTA:
            if (strcmp(optarg, "flip") != 0)
                return cli_usage(cmd, "--tta: unknown augmentation '%s' (only 'flip')", optarg);
            o->tta_flip = 1;
            break;
        case OPT_JSON:
            if (predict)
                return cli_usage(cmd, "unknown option '--json'");
            o->json = 1;
            break;
        case 'o':
            if (!predict)
                return cli_usage(cmd, "unknown option '-o' (eval prints its results; see trainer predict)");
            o->output = optarg;
            break;
        case 'h':
            if (cli_is_root())
                fputs(usage, stdout);
            return -1;
        default: return ERR_USAGE;
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s' (files go after their options: --checkpoint C.h5 "
                              "--data D.h5%s)", argv[optind], predict ? " -o P.h5" : "");
    if (!o->checkpoint || !o->data || (predict && !o->output))
        return cli_usage(cmd, predict ? "--checkpoint, --data and -o are required"
                                      : "--checkpoint and --data are required");
    return 0;
}

/* A dataset without class names takes the checkpoint's (training stores them), for the tables. */
static int adopt_class_names(const char *checkpoint, struct dataset *ds, int n_classes, struct error *err)
{
    char **names;
    int n, rc;

    if (ds->n_class_names)
        return ERR_OK;
    if ((rc = checkpoint_read_class_names(checkpoint, &names, &n, err)))
        return rc;
    if (n != n_classes) {
        checkpoint_free_class_names(names, n);
        return ERR_OK;
    }
    ds->class_names = names; /* dataset_close frees them */
    ds->n_class_names = n;
    return ERR_OK;
}

/* The checkpoint's model with its weights, and the dataset, checked against each other. */
static int load(const struct eval_opts *o, struct net **net, struct dataset *ds, struct error *err)
{
    struct model *m = malloc(sizeof *m);
    int rc;
    if (!m)
        return error_set(err, ERR_INTERNAL, "out of memory");
    rc = checkpoint_read_model(o->checkpoint, m, err);
    if (!rc)
        rc = net_create(net, m, err);
    free(m);
    if (rc)
        return rc;
    if ((rc = checkpoint_read_weights(o->checkpoint, *net, err)))
        return rc;
    if ((rc = dataset_open(ds, o->data, err)))
        return rc;
    const struct shape *s = &(*net)->model.layers[0].out;
    if (ds->h != s->h || ds->w != s->w || ds->c != s->c)
        return error_set(err, ERR_INPUT, "%s: images are %dx%dx%d but the model expects %dx%dx%d", o->data,
                         ds->h, ds->w, ds->c, s->h, s->w, s->c);
    if (ds->n_class_names && ds->n_class_names != (*net)->model.n_classes)
        return error_set(err, ERR_INPUT, "%s: the dataset has %d classes but the model predicts %d", o->data,
                         ds->n_class_names, (*net)->model.n_classes);
    return adopt_class_names(o->checkpoint, ds, (*net)->model.n_classes, err);
}

static const char *class_name(const struct dataset *ds, int k, char *buf, size_t size)
{
    if (k < ds->n_class_names)
        return ds->class_names[k];
    snprintf(buf, size, "%d", k);
    return buf;
}

/* Samples of true class i. */
static int64_t row_total(const struct eval_result *r, int k, int i)
{
    int64_t t = 0;
    for (int j = 0; j < k; j++)
        t += r->confusion[i * k + j];
    return t;
}

/* The class that samples of class i are most often wrongly predicted as; -1 when none is wrong. */
static int most_confused(const struct eval_result *r, int k, int i)
{
    const int64_t *row = r->confusion + (size_t)i * k;
    int worst = -1;
    for (int j = 0; j < k; j++)
        if (j != i && row[j] > 0 && (worst < 0 || row[j] > row[worst]))
            worst = j;
    return worst;
}

/* One JSON object on one line, for scripts (`jq .accuracy`). A class without samples has accuracy null. */
static void print_json(const struct eval_opts *o, const struct dataset *ds, const struct eval_result *r, int k)
{
    char buf[32];
    json_t *root = json_object(), *names = json_array(), *per = json_array(), *conf = json_array();
    json_object_set_new(root, "checkpoint", json_string(o->checkpoint));
    json_object_set_new(root, "data", json_string(o->data));
    json_object_set_new(root, "samples", json_integer(r->count));
    json_object_set_new(root, "loss", json_real(r->loss));
    json_object_set_new(root, "accuracy", json_real(r->acc));
    for (int i = 0; i < k; i++) {
        int64_t total = row_total(r, k, i), right = r->confusion[i * k + i];
        json_t *row = json_array();
        json_array_append_new(names, json_string(class_name(ds, i, buf, sizeof buf)));
        json_array_append_new(per, json_pack("{s:s, s:o, s:I, s:I}", "class", class_name(ds, i, buf, sizeof buf),
                                             "accuracy", total ? json_real((double)right / (double)total)
                                                               : json_null(),
                                             "correct", (json_int_t)right, "samples", (json_int_t)total));
        for (int j = 0; j < k; j++)
            json_array_append_new(row, json_integer(r->confusion[i * k + j]));
        json_array_append_new(conf, row);
    }
    json_object_set_new(root, "classes", names);
    json_object_set_new(root, "per_class", per);
    json_object_set_new(root, "confusion", conf);
    /* Ten significant digits: the float32 sums carry no more, and 0.8876 stays 0.8876. */
    json_dumpf(root, stdout, JSON_REAL_PRECISION(10));
    putchar('\n');
    json_decref(root);
}

static int digits(int64_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

static void print_per_class(const struct dataset *ds, const struct eval_result *r, int k, int width)
{
    char buf[32], pct[32];
    printf("\nper-class accuracy:\n  %-*s %8s %15s   %s\n", width, "class", "accuracy", "correct/samples",
           "most often mistaken for");
    for (int i = 0; i < k; i++) {
        int64_t total = row_total(r, k, i), right = r->confusion[i * k + i];
        int worst = most_confused(r, k, i);
        char counts[48];
        snprintf(counts, sizeof counts, "%lld/%lld", (long long)right, (long long)total);
        if (total)
            snprintf(pct, sizeof pct, "%.4f", (double)right / (double)total);
        else
            snprintf(pct, sizeof pct, "-");
        printf("  %-*s %8s %15s", width, class_name(ds, i, buf, sizeof buf), pct, counts);
        if (worst >= 0)
            printf("   %s (%lld)", class_name(ds, worst, buf, sizeof buf), (long long)r->confusion[i * k + worst]);
        printf("\n");
    }
}

/* Rows are labelled "index name", columns by index only, so that ten long names still fit in 80 columns;
 * names past 24 characters are cut there (the per-class table above shows them whole). */
static void print_confusion(const struct dataset *ds, const struct eval_result *r, int k, int width)
{
    enum { MAX_NAME = 24 };
    char buf[32], name[MAX_NAME + 1];
    width = width < MAX_NAME ? width : MAX_NAME;
    int64_t max = 0;
    for (int i = 0; i < k * k; i++)
        max = r->confusion[i] > max ? r->confusion[i] : max;
    int cell = (digits(max) > digits(k - 1) ? digits(max) : digits(k - 1)) + 2, idx = digits(k - 1);
    printf("\nconfusion matrix (rows: true class, columns: predicted class):\n  %*s %-*s", idx, "", width, "");
    for (int j = 0; j < k; j++)
        printf("%*d", cell, j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        const char *full = class_name(ds, i, buf, sizeof buf);
        size_t len = strlen(full);
        if (len > MAX_NAME) {
            memcpy(name, full, MAX_NAME - 2);
            memcpy(name + MAX_NAME - 2, "..", 3);
        } else
            memcpy(name, full, len + 1);
        printf("  %*d %-*s", idx, i, width, name);
        for (int j = 0; j < k; j++)
            printf("%*lld", cell, (long long)r->confusion[i * k + j]);
        printf("\n");
    }
}

static void print_tables(const struct eval_opts *o, const struct dataset *ds, const struct eval_result *r, int k)
{
    char buf[32];
    int width = 5; /* "class" */
    for (int i = 0; i < k; i++) {
        int len = (int)strlen(class_name(ds, i, buf, sizeof buf));
        width = len > width ? len : width;
    }
    printf("%s on %s: %lld samples\nloss: %.4f - accuracy: %.4f\n", o->checkpoint, o->data, (long long)r->count,
           r->loss, r->acc);
    print_per_class(ds, r, k, width);
    print_confusion(ds, r, k, width);
}

int cmd_eval(int argc, char **argv)
{
    struct eval_opts o;
    struct error err = {0};
    struct net *net = NULL;
    struct dataset ds;
    memset(&ds, 0, sizeof ds);
    if (dist_init(&argc, &argv))
        return ERR_INTERNAL;
    cli_set_rank(dist_rank());
    int rc = parse("eval", eval_usage, 0, argc, argv, &o);
    if (rc) {
        dist_finalize();
        return rc < 0 ? 0 : rc;
    }
    cli_threads(o.threads);
    rc = cli_agree(load(&o, &net, &ds, &err), &err);
    if (rc == ERR_OK) {
        int k = net->model.n_classes;
        struct eval_result r = {0, 0, 0, calloc((size_t)k * k, sizeof(int64_t))};
        rc = evaluate_tta(net, &ds, 0, ds.n, (int)o.batch, o.tta_flip, &r, &err);
        if (rc == ERR_OK && dist_rank() == 0) {
            (o.json ? print_json : print_tables)(&o, &ds, &r, k);
            /* A full disk or a closed pipe must not look like success to a script. */
            if (fflush(stdout) != 0 || ferror(stdout)) {
                rc = error_set(&err, ERR_IO, "cannot write the results to stdout");
                cli_print_error(&err);
            }
        }
        free(r.confusion);
    }
    net_destroy(net);
    if (ds.file > 0)
        dataset_close(&ds);
    dist_finalize();
    return rc;
}

/* A float32 or int32 array /NAME of the given shape, written whole. */
static int put_array(hid_t file, const char *name, int rank, const hsize_t *dims, hid_t ftype, hid_t mtype,
                     const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL), d = H5I_INVALID_HID;
    int bad = sp < 0 || (d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    return bad ? -1 : 0;
}

/* Writes /probabilities and /predictions whole or not at all (h5file.h): HDF5 writing to the disk itself
 * reported success on a full disk and left a file with holes. */
static int write_predictions(const char *path, const float *probs, int64_t n, int k, struct error *err)
{
    struct h5file_writer out;
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    int rc;
    if (!pred)
        return error_set(err, ERR_INTERNAL, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int j = 1; j < k; j++)
            if (probs[i * k + j] > probs[i * k + best])
                best = j;
        pred[i] = best;
    }
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)k};
    size_t bytes = (size_t)n * ((size_t)k * sizeof(float) + sizeof(int32_t));
    if ((rc = h5file_create(&out, path, bytes + (1 << 16), "predictions", err)) == ERR_OK) {
        if (put_array(out.file, "probabilities", 2, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, probs) ||
            put_array(out.file, "predictions", 1, dims, H5T_STD_I32LE, H5T_NATIVE_INT32, pred)) {
            h5file_discard(&out);
            rc = error_set(err, ERR_INTERNAL, "%s: cannot build the file in memory (out of memory?)", path);
        } else {
            rc = h5file_commit(&out, err);
        }
    }
    free(pred);
    return rc;
}

/* This rank's contiguous part of the dataset, probabilities into probs (hi-lo, k). */
static int predict_local(struct net *net, struct dataset *ds, int64_t lo, int64_t hi, int chunk, int tta_flip,
                         float *probs, struct error *err)
{
    size_t sample = (size_t)ds->h * ds->w * ds->c;
    int k = net->model.n_classes, rc = ERR_OK;
    uint8_t *images = malloc(sample * (size_t)chunk);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)chunk);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)chunk);
    if (!images || !labels || !ids)
        rc = error_set(err, ERR_INTERNAL, "out of memory");
    for (int64_t at = lo; rc == ERR_OK && at < hi; at += chunk) {
        int n = (int)(hi - at < chunk ? hi - at : chunk);
        for (int i = 0; i < n; i++)
            ids[i] = at + i;
        /* Labels are not checked against the model (0 classes): predict needs none. */
        rc = dataset_read(ds, ids, n, images, labels, 0, err);
        struct net_batch b = {n, images, NULL, ids, 0};
        if (rc == ERR_OK)
            rc = evaluate_infer(net, &b, tta_flip, probs + (size_t)(at - lo) * k, NULL, err);
    }
    free(images);
    free(labels);
    free(ids);
    return rc;
}

/* Whether the command line names a dataset (--data): else predict reads image files (predict_images.c). */
static int names_dataset(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--data") == 0 || strncmp(argv[i], "--data=", 7) == 0 || strcmp(argv[i], "-o") == 0 ||
            strncmp(argv[i], "--output", 8) == 0)
            return 1;
    return 0;
}

int cmd_predict(int argc, char **argv)
{
    if (!names_dataset(argc, argv))
        return cmd_predict_images(argc, argv);
    struct eval_opts o;
    struct error err = {0};
    struct net *net = NULL;
    struct dataset ds;
    float *mine = NULL, *all = NULL;
    memset(&ds, 0, sizeof ds);
    if (dist_init(&argc, &argv))
        return ERR_INTERNAL;
    cli_set_rank(dist_rank());
    int rc = parse("predict", predict_usage, 1, argc, argv, &o);
    if (rc) {
        dist_finalize();
        return rc < 0 ? 0 : rc;
    }
    cli_threads(o.threads);
    rc = cli_agree(load(&o, &net, &ds, &err), &err);
    if (rc == ERR_OK) {
        int k = net->model.n_classes, rank = dist_rank(), size = dist_size();
        int64_t lo = ds.n * rank / size, hi = ds.n * (rank + 1) / size;
        mine = malloc(sizeof(float) * (size_t)((hi - lo) * k + 1));
        if (rank == 0)
            all = malloc(sizeof(float) * (size_t)(ds.n * k));
        rc = (!mine || (rank == 0 && !all)) ? error_set(&err, ERR_INTERNAL, "out of memory") : ERR_OK;
        if (rc == ERR_OK)
            rc = predict_local(net, &ds, lo, hi, (int)o.batch, o.tta_flip, mine, &err);
        rc = cli_agree(rc, &err);
        if (rc == ERR_OK) {
            dist_gather_f32(mine, (int)((hi - lo) * k), all);
            if (rank == 0)
                rc = write_predictions(o.output, all, ds.n, k, &err);
            rc = cli_agree(rc, &err);
        }
        if (rc == ERR_OK && rank == 0)
            printf("wrote %s: %lld predictions of %d classes\n", o.output, (long long)ds.n, k);
    }
    free(mine);
    free(all);
    net_destroy(net);
    if (ds.file > 0)
        dataset_close(&ds);
    dist_finalize();
    return rc;
}

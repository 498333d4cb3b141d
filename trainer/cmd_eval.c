/* cmd_eval.c: `trainer eval` (loss, accuracy, per-class accuracy, confusion matrix) and `trainer predict`
 * (probabilities and predicted classes to HDF5), on one rank or split across many. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "dist.h"
#include "evaluate.h"
#include "net.h"

static const char eval_usage[] =
    "usage: trainer eval --checkpoint C.h5 --data TEST.h5 [options]\n\n"
    "Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint (or a Keras model file).\n\n"
    "  --checkpoint F    checkpoint or Keras full-model HDF5 file (required)\n"
    "  --data F          dataset, HDF5 (required)\n"
    "  --batch-size B    samples per rank per forward pass (default 256)\n"
    "  --threads T       threads per rank (default: cores / ranks on the node)\n"
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
    "  -h, --help        this help\n";

struct eval_opts {
    const char *checkpoint, *data, *output;
    long batch, threads;
    int json;
};

enum { OPT_CHECKPOINT = 256, OPT_DATA, OPT_BATCH, OPT_THREADS, OPT_JSON };

static int parse(const char *cmd, const char *usage, int predict, int argc, char **argv, struct eval_opts *o)
{
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, OPT_CHECKPOINT}, {"data", required_argument, 0, OPT_DATA},
        {"batch-size", required_argument, 0, OPT_BATCH},      {"threads", required_argument, 0, OPT_THREADS},
        {"json", no_argument, 0, OPT_JSON},                   {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},                        {0, 0, 0, 0},
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
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->checkpoint || !o->data || (predict && !o->output))
        return cli_usage(cmd, predict ? "--checkpoint, --data and -o are required"
                                      : "--checkpoint and --data are required");
    return 0;
}

static void set_threads(long threads)
{
    if (threads > 0)
        omp_set_num_threads((int)threads);
    else if (!getenv("OMP_NUM_THREADS")) {
        int procs = omp_get_num_procs();
        int t = procs < sysconf(_SC_NPROCESSORS_ONLN) ? procs : procs / dist_local_size();
        omp_set_num_threads(t < 1 ? 1 : t);
    }
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
    return ERR_OK;
}

static const char *class_name(const struct dataset *ds, int k, char *buf, size_t size)
{
    if (k < ds->n_class_names)
        return ds->class_names[k];
    snprintf(buf, size, "%d", k);
    return buf;
}

static void print_json(const struct eval_opts *o, const struct dataset *ds, const struct eval_result *r, int k)
{
    char buf[32];
    printf("{\"checkpoint\": \"%s\", \"data\": \"%s\", \"samples\": %lld, \"loss\": %.6f, \"accuracy\": %.6f, "
           "\"classes\": [",
           o->checkpoint, o->data, (long long)r->count, r->loss, r->acc);
    for (int i = 0; i < k; i++)
        printf("%s\"%s\"", i ? ", " : "", class_name(ds, i, buf, sizeof buf));
    printf("], \"confusion\": [");
    for (int i = 0; i < k; i++) {
        printf("%s[", i ? ", " : "");
        for (int j = 0; j < k; j++)
            printf("%s%lld", j ? ", " : "", (long long)r->confusion[i * k + j]);
        printf("]");
    }
    printf("]}\n");
}

static void print_tables(const struct eval_opts *o, const struct dataset *ds, const struct eval_result *r, int k)
{
    char buf[32];
    int width = 5;
    for (int i = 0; i < k; i++) {
        int len = (int)strlen(class_name(ds, i, buf, sizeof buf));
        width = len > width ? len : width;
    }
    printf("%s on %s: %lld samples\nloss: %.4f - accuracy: %.4f\n\nper-class accuracy:\n", o->checkpoint,
           o->data, (long long)r->count, r->loss, r->acc);
    for (int i = 0; i < k; i++) {
        int64_t total = 0;
        for (int j = 0; j < k; j++)
            total += r->confusion[i * k + j];
        printf("  %-*s %6.4f  (%lld)\n", width, class_name(ds, i, buf, sizeof buf),
               total ? (double)r->confusion[i * k + i] / (double)total : 0.0, (long long)total);
    }
    printf("\nconfusion matrix (rows: true class, columns: predicted):\n  %-*s", width, "");
    for (int j = 0; j < k; j++)
        printf(" %6d", j);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("  %-*s", width, class_name(ds, i, buf, sizeof buf));
        for (int j = 0; j < k; j++)
            printf(" %6lld", (long long)r->confusion[i * k + j]);
        printf("\n");
    }
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
    set_threads(o.threads);
    rc = cli_agree(load(&o, &net, &ds, &err), &err);
    if (rc == ERR_OK) {
        int k = net->model.n_classes;
        struct eval_result r = {0, 0, 0, calloc((size_t)k * k, sizeof(int64_t))};
        rc = evaluate(net, &ds, 0, ds.n, (int)o.batch, &r, &err);
        if (rc == ERR_OK && dist_rank() == 0)
            (o.json ? print_json : print_tables)(&o, &ds, &r, k);
        free(r.confusion);
    }
    net_destroy(net);
    if (ds.file > 0)
        dataset_close(&ds);
    dist_finalize();
    return rc;
}

/* Writes /probabilities and /predictions to a temporary file beside path, then renames it over path. */
static int write_predictions(const char *path, const float *probs, int64_t n, int k, struct error *err)
{
    char tmp[1100];
    int rc = ERR_OK;
    hid_t f = -1, sp = -1, d = -1;
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
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
    if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        rc = error_set(err, ERR_IO, "%s: cannot create", path);
        goto done;
    }
    if ((sp = H5Screate_simple(2, dims, NULL)) < 0 ||
        (d = H5Dcreate2(f, "probabilities", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, probs) < 0)
        goto io_fail;
    H5Dclose(d);
    H5Sclose(sp);
    d = sp = -1;
    if ((sp = H5Screate_simple(1, dims, NULL)) < 0 ||
        (d = H5Dcreate2(f, "predictions", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, pred) < 0)
        goto io_fail;
    H5Dclose(d);
    H5Sclose(sp);
    d = sp = -1;
    if (H5Fclose(f) < 0) {
        f = -1;
        goto io_fail;
    }
    f = -1;
    if (rename(tmp, path) != 0)
        goto io_fail;
    goto done;
io_fail:
    rc = error_set(err, ERR_IO, "%s: cannot write predictions", path);
    remove(tmp);
done:
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    if (f >= 0) {
        H5Fclose(f);
        remove(tmp);
    }
    free(pred);
    return rc;
}

/* This rank's contiguous part of the dataset, probabilities into probs (hi-lo, k). */
static int predict_local(struct net *net, struct dataset *ds, int64_t lo, int64_t hi, int chunk, float *probs,
                         struct error *err)
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
        struct net_batch b = {n, images, NULL, ids};
        if (rc == ERR_OK)
            rc = net_infer_batch(net, &b, probs + (size_t)(at - lo) * k, NULL, err);
    }
    free(images);
    free(labels);
    free(ids);
    return rc;
}

int cmd_predict(int argc, char **argv)
{
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
    set_threads(o.threads);
    rc = cli_agree(load(&o, &net, &ds, &err), &err);
    if (rc == ERR_OK) {
        int k = net->model.n_classes, rank = dist_rank(), size = dist_size();
        int64_t lo = ds.n * rank / size, hi = ds.n * (rank + 1) / size;
        mine = malloc(sizeof(float) * (size_t)((hi - lo) * k + 1));
        if (rank == 0)
            all = malloc(sizeof(float) * (size_t)(ds.n * k));
        rc = (!mine || (rank == 0 && !all)) ? error_set(&err, ERR_INTERNAL, "out of memory") : ERR_OK;
        if (rc == ERR_OK)
            rc = predict_local(net, &ds, lo, hi, (int)o.batch, mine, &err);
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

/* cmd_train.c: `trainer train`: data-parallel training. Every rank holds the model, runs its share of each
 * global batch, and the gradients (with the step's statistics folded in) are summed by one all-reduce. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "dist.h"
#include "evaluate.h"
#include "model.h"
#include "net.h"
#include "optim.h"
#include "progress.h"
#include "rng.h"

static const char usage_text[] =
    "usage: trainer train --model M --data TRAIN.h5 [options]\n\n"
    "Trains M (a preset: cifar10-cnn, fashion-cnn, gap-cnn; or a model file) on TRAIN.h5.\n"
    "Under `mpirun -np N` each rank computes its share of every global batch.\n\n"
    "  --model M             preset name or model file (required)\n"
    "  --data F              training dataset, HDF5 (required)\n"
    "  --val F               validation dataset, HDF5\n"
    "  --val-split X         use the last fraction X of the training data for validation (Keras)\n"
    "  --epochs E            epochs to train (default 10)\n"
    "  --batch-size B        GLOBAL batch, split across ranks (default 32)\n"
    "  --optimizer O         sgd | rmsprop | adam (default rmsprop)\n"
    "  --lr X                learning rate (default: sgd 0.01, rmsprop 0.001, adam 0.001)\n"
    "  --momentum X          SGD momentum (default 0)\n"
    "  --nesterov            SGD with Nesterov momentum\n"
    "  --seed S              seed for init, shuffle and dropout (default 1)\n"
    "  --checkpoint F        write the model here (Keras HDF5) at every epoch end and at the end\n"
    "  --metrics F           append one CSV row per epoch\n"
    "  --threads T           threads per rank (default: cores / ranks on the node)\n"
    "  --max-steps S         stop after S optimizer steps\n"
    "  --quiet               no progress bar and no epoch lines\n"
    "  -h, --help            this help\n";

struct train_opts {
    const char *model, *data, *val, *checkpoint, *metrics;
    double val_split;
    long epochs, batch, seed, threads, max_steps;
    struct optim_conf optim;
    int quiet;
};

enum { OPT_MODEL = 256, OPT_DATA, OPT_VAL, OPT_VAL_SPLIT, OPT_EPOCHS, OPT_BATCH, OPT_OPTIMIZER, OPT_LR,
       OPT_MOMENTUM, OPT_NESTEROV, OPT_SEED, OPT_CHECKPOINT, OPT_METRICS, OPT_THREADS, OPT_MAX_STEPS,
       OPT_QUIET };

static const struct option long_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},         {"data", required_argument, 0, OPT_DATA},
    {"val", required_argument, 0, OPT_VAL},             {"val-split", required_argument, 0, OPT_VAL_SPLIT},
    {"epochs", required_argument, 0, OPT_EPOCHS},       {"batch-size", required_argument, 0, OPT_BATCH},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER}, {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},   {"nesterov", no_argument, 0, OPT_NESTEROV},
    {"seed", required_argument, 0, OPT_SEED},           {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
    {"metrics", required_argument, 0, OPT_METRICS},     {"threads", required_argument, 0, OPT_THREADS},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS}, {"quiet", no_argument, 0, OPT_QUIET},
    {"help", no_argument, 0, 'h'},                      {0, 0, 0, 0},
};

/* Returns 0, -1 for --help (done), or ERR_USAGE. */
static int parse_opts(int argc, char **argv, struct train_opts *o)
{
    const char *optimizer = "rmsprop";
    double lr = -1, momentum = -1;
    int nesterov = 0, c, rc = 0;
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 32;
    o->seed = 1;
    while (rc == 0 && (c = cli_getopt("train", argc, argv, "h", long_opts)) != -1) {
        switch (c) {
        case OPT_MODEL: o->model = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_VAL: o->val = optarg; break;
        case OPT_VAL_SPLIT: rc = cli_double("train", "--val-split", optarg, 0, 0.99, &o->val_split); break;
        case OPT_EPOCHS: rc = cli_long("train", "--epochs", optarg, 1, 1000000, &o->epochs); break;
        case OPT_BATCH: rc = cli_long("train", "--batch-size", optarg, 1, 1 << 20, &o->batch); break;
        case OPT_OPTIMIZER: optimizer = optarg; break;
        case OPT_LR: rc = cli_double("train", "--lr", optarg, 0, 1e6, &lr); break;
        case OPT_MOMENTUM: rc = cli_double("train", "--momentum", optarg, 0, 1, &momentum); break;
        case OPT_NESTEROV: nesterov = 1; break;
        case OPT_SEED: rc = cli_long("train", "--seed", optarg, 0, 0x7fffffffL, &o->seed); break;
        case OPT_CHECKPOINT: o->checkpoint = optarg; break;
        case OPT_METRICS: o->metrics = optarg; break;
        case OPT_THREADS: rc = cli_long("train", "--threads", optarg, 1, 4096, &o->threads); break;
        case OPT_MAX_STEPS: rc = cli_long("train", "--max-steps", optarg, 1, 1L << 40, &o->max_steps); break;
        case OPT_QUIET: o->quiet = 1; break;
        case 'h':
            if (cli_is_root())
                fputs(usage_text, stdout);
            return -1;
        default: return ERR_USAGE;
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        return cli_usage("train", "unexpected argument '%s'", argv[optind]);
    if (!o->model || !o->data)
        return cli_usage("train", "--model and --data are required");
    if (o->val && o->val_split > 0)
        return cli_usage("train", "--val and --val-split exclude each other");
    int kind = optim_kind_from_name(optimizer);
    if (kind < 0)
        return cli_usage("train", "--optimizer: unknown optimizer '%s' (sgd, rmsprop or adam)", optimizer);
    optim_defaults(&o->optim, kind);
    if (lr >= 0)
        o->optim.lr = lr;
    if ((momentum >= 0 || nesterov) && kind != OPTIM_SGD)
        return cli_usage("train", "--momentum and --nesterov apply to --optimizer sgd only");
    if (momentum >= 0)
        o->optim.momentum = momentum;
    o->optim.nesterov = nesterov;
    return 0;
}

/* Threads per rank: --threads, else OMP_NUM_THREADS, else the cores this process may run on shared by
 * the ranks on this node (so that N ranks on N cores do not oversubscribe). */
static int setup_threads(const struct train_opts *o)
{
    int t = (int)o->threads;
    if (t <= 0 && getenv("OMP_NUM_THREADS"))
        t = omp_get_max_threads();
    if (t <= 0) {
        int procs = omp_get_num_procs();
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        /* A rank bound to some cores (mpirun binds each rank to a core for np <= 2) uses those; an unbound
         * rank shares the node's cores with the other ranks there. */
        t = procs < online ? procs : procs / dist_local_size();
        if (t < 1)
            t = 1;
    }
    omp_set_num_threads(t);
    return t;
}

struct run {
    struct train_opts o;
    struct model model;
    struct dataset train, val;
    int has_val;
    int64_t n_train, val_start, val_end; /* train samples are [0, n_train); val is [val_start, val_end) of
                                            `val` (or of `train` with --val-split) */
    struct net *net;
    struct optim opt;
    int64_t *perm;                       /* (n_train,) the epoch's global order */
    int share_max;                       /* largest per-rank share of a global batch */
    uint8_t *images;                     /* (share_max, H, W, C) */
    int32_t *labels;
    int64_t *ids;
    FILE *metrics;
    int threads;
};

static int check_shape(const struct dataset *ds, const struct model *m, struct error *err)
{
    const struct shape *s = &m->layers[0].out;
    if (ds->h != s->h || ds->w != s->w || ds->c != s->c)
        return error_set(err, ERR_INPUT, "%s: images are %dx%dx%d but the model expects %dx%dx%d", ds->path,
                         ds->h, ds->w, ds->c, s->h, s->w, s->c);
    return ERR_OK;
}

/* Everything before the first step; any rank's failure is agreed before the training loop starts. */
static int setup(struct run *r, struct error *err)
{
    int rc;
    const struct train_opts *o = &r->o;
    if ((rc = model_load(&r->model, o->model, err)))
        return rc;
    if ((rc = dataset_open(&r->train, o->data, err)) || (rc = check_shape(&r->train, &r->model, err)))
        return rc;
    r->n_train = r->train.n;
    if (o->val) {
        if ((rc = dataset_open(&r->val, o->val, err)) || (rc = check_shape(&r->val, &r->model, err)))
            return rc;
        r->has_val = 1;
        r->val_start = 0;
        r->val_end = r->val.n;
    } else if (o->val_split > 0) {
        /* Keras's validation_split: the last fraction, taken before any shuffling. */
        r->n_train = (int64_t)((double)r->train.n * (1.0 - o->val_split));
        r->has_val = r->n_train < r->train.n;
        r->val_start = r->n_train;
        r->val_end = r->train.n;
    }
    if (r->n_train < 1)
        return error_set(err, ERR_INPUT, "%s: no training samples left after --val-split", o->data);
    if ((rc = net_create(&r->net, &r->model, err)))
        return rc;
    net_init_params(r->net, (uint64_t)o->seed);
    if ((rc = optim_init(&r->opt, &o->optim, r->net->n_params, err)))
        return rc;
    int size = dist_size();
    r->share_max = (int)((o->batch + size - 1) / size);
    size_t sample = (size_t)shape_size(&r->model.layers[0].out);
    r->perm = malloc(sizeof(int64_t) * (size_t)r->n_train);
    r->images = malloc(sample * (size_t)r->share_max);
    r->labels = malloc(sizeof(int32_t) * (size_t)r->share_max);
    r->ids = malloc(sizeof(int64_t) * (size_t)r->share_max);
    if (!r->perm || !r->images || !r->labels || !r->ids)
        return error_set(err, ERR_INTERNAL, "out of memory");
    if (o->metrics && dist_rank() == 0) {
        r->metrics = fopen(o->metrics, "a");
        if (!r->metrics)
            return error_set(err, ERR_IO, "%s: cannot open for appending", o->metrics);
        if (ftell(r->metrics) == 0)
            fputs("epoch,step,loss,acc,val_loss,val_acc,lr,img_per_s,wall_s\n", r->metrics);
    }
    return ERR_OK;
}

static void teardown(struct run *r)
{
    net_destroy(r->net);
    optim_release(&r->opt);
    if (r->train.file > 0)
        dataset_close(&r->train);
    if (r->has_val && r->o.val)
        dataset_close(&r->val);
    free(r->perm);
    free(r->images);
    free(r->labels);
    free(r->ids);
    if (r->metrics)
        fclose(r->metrics);
}

/* Tail of the gradient slab, summed with the gradients. */
enum { TAIL_LOSS, TAIL_CORRECT, TAIL_ERROR };

/* This rank's part of global batch `b` (samples [b*B, b*B + gb) of the epoch's order): an even split,
 * the first gb % N ranks taking one more. */
static void my_share(int64_t first, int64_t gb, int64_t *lo, int64_t *hi)
{
    int rank = dist_rank(), size = dist_size();
    *lo = first + gb * rank / size;
    *hi = first + gb * (rank + 1) / size;
}

static int all_finite(const float *x, size_t n)
{
    int ok = 1;
#pragma omp parallel for reduction(&& : ok)
    for (size_t i = 0; i < n; i++)
        ok = ok && isfinite(x[i]);
    return ok;
}

/* One optimizer step on global batch starting at `first` of size gb. Returns an agreed code. */
static int train_step(struct run *r, int64_t first, int64_t gb, uint64_t step, double *loss_sum,
                      double *correct, struct error *err)
{
    struct net *net = r->net;
    float *tail = net->grads + net->n_params;
    int64_t lo, hi;
    int rc = ERR_OK;
    my_share(first, gb, &lo, &hi);
    int n = (int)(hi - lo);
    memset(tail, 0, sizeof(float) * NET_GRAD_TAIL);
    if (n > 0) {
        memcpy(r->ids, r->perm + lo, sizeof(int64_t) * (size_t)n);
        rc = dataset_read(&r->train, r->ids, n, r->images, r->labels, r->model.n_classes, err);
        struct net_batch b = {n, r->images, r->labels, r->ids};
        struct net_stats st = {0, 0};
        if (rc == ERR_OK)
            rc = net_train_batch(net, &b, (int)gb, (uint64_t)r->o.seed, step, &st, err);
        tail[TAIL_LOSS] = (float)st.loss_sum;
        tail[TAIL_CORRECT] = (float)st.correct;
    }
    if (n == 0 || rc != ERR_OK)
        /* A rank with nothing to add (a batch smaller than the ranks) or that failed adds zeros. */
        memset(net->grads, 0, sizeof(float) * net->n_params);
    if (rc != ERR_OK)
        tail[TAIL_ERROR] = 1;
    dist_allreduce_sum_f32(net->grads, net->n_params + NET_GRAD_TAIL);
    if (tail[TAIL_ERROR] != 0)
        return cli_agree(rc, err);
    if (!isfinite(tail[TAIL_LOSS]) || !all_finite(net->grads, net->n_params)) {
        /* Same numbers on every rank after the all-reduce: all stop here, before the update, so nothing
         * non-finite ever reaches the weights or a checkpoint. */
        error_set(err, ERR_DIVERGED, "%s: training diverged at step %llu: the loss is %s (try a lower --lr)",
                  r->o.data, (unsigned long long)step + 1, isfinite(tail[TAIL_LOSS]) ? "finite but a gradient is not" : "not finite");
        return cli_agree(ERR_DIVERGED, err);
    }
    optim_step(&r->opt, net->params, net->grads);
    *loss_sum += tail[TAIL_LOSS];
    *correct += tail[TAIL_CORRECT];
    return ERR_OK;
}

static int save(struct run *r, int64_t step, int64_t epoch, int64_t epoch_step, struct error *err)
{
    int rc = ERR_OK;
    if (!r->o.checkpoint)
        return ERR_OK;
    if (dist_rank() == 0) {
        struct checkpoint_state st = {step, epoch, epoch_step, (uint64_t)r->o.seed, r->o.batch, dist_size(),
                                      INFINITY};
        rc = checkpoint_write(r->o.checkpoint, r->net, &r->opt, &st, err);
    }
    return cli_agree(rc, err);
}

static void print_setup(const struct run *r)
{
    int size = dist_size();
    printf("model %s: %d layers, %zu parameters\n", r->o.model, r->model.n_layers - 1, r->net->n_params);
    printf("ranks %d x %d threads; global batch %ld (", size, r->threads, r->o.batch);
    if (r->o.batch % size)
        printf("%ld-", r->o.batch / size);
    printf("%d per rank); train %lld samples", r->share_max, (long long)r->n_train);
    if (r->has_val)
        printf(", validation %lld", (long long)(r->val_end - r->val_start));
    printf("; optimizer %s lr %g\n", optim_kind_name(r->o.optim.kind), r->o.optim.lr);
    fflush(stdout);
}

static int epoch_end(struct run *r, int64_t epoch, uint64_t step, double loss_sum, double correct,
                     int64_t seen, double secs, struct error *err)
{
    struct eval_result v = {0, NAN, NAN, NULL};
    int rc;
    if (r->has_val) {
        struct dataset *ds = r->o.val ? &r->val : &r->train;
        if ((rc = evaluate(r->net, ds, r->val_start, r->val_end, r->share_max, &v, err)))
            return rc;
    }
    double loss = loss_sum / (double)seen, acc = correct / (double)seen, ips = (double)seen / secs;
    if (dist_rank() == 0 && !r->o.quiet) {
        printf("Epoch %lld/%ld - %.1fs - loss: %.4f - acc: %.4f", (long long)epoch + 1, r->o.epochs, secs, loss,
               acc);
        if (r->has_val)
            printf(" - val_loss: %.4f - val_acc: %.4f", v.loss, v.acc);
        printf(" - %.0f img/s\n", ips);
        fflush(stdout);
    }
    if (r->metrics) {
        fprintf(r->metrics, "%lld,%llu,%.6f,%.6f,%.6f,%.6f,%g,%.1f,%.3f\n", (long long)epoch + 1,
                (unsigned long long)step, loss, acc, v.loss, v.acc, r->o.optim.lr, ips, secs);
        fflush(r->metrics);
    }
    return ERR_OK;
}

static int train_loop(struct run *r, struct error *err)
{
    const int64_t B = r->o.batch;
    const int64_t steps_per_epoch = (r->n_train + B - 1) / B;
    uint64_t step = 0;
    int rc = ERR_OK;
    struct progress bar;
    for (int64_t epoch = 0; epoch < r->o.epochs; epoch++) {
        double t0 = dist_wtime(), loss_sum = 0, correct = 0;
        int64_t seen = 0, s;
        rng_shuffle_epoch(r->perm, r->n_train, (uint64_t)r->o.seed, (uint64_t)epoch);
        progress_start(&bar, steps_per_epoch, r->o.quiet || dist_rank() != 0, t0);
        for (s = 0; s < steps_per_epoch; s++) {
            int64_t first = s * B, gb = r->n_train - first < B ? r->n_train - first : B;
            if ((rc = train_step(r, first, gb, step, &loss_sum, &correct, err)))
                return rc;
            step++;
            seen += gb;
            double now = dist_wtime();
            progress_update(&bar, s + 1, loss_sum / seen, correct / seen, seen / (now - t0), now);
            if (r->o.max_steps && (long)step >= r->o.max_steps) {
                s++;
                break;
            }
        }
        progress_end(&bar);
        if ((rc = epoch_end(r, epoch, step, loss_sum, correct, seen, dist_wtime() - t0, err)))
            return rc;
        int finished = s == steps_per_epoch;
        if ((rc = save(r, (int64_t)step, epoch + finished, finished ? 0 : s, err)))
            return rc;
        if (r->o.max_steps && (long)step >= r->o.max_steps)
            break;
    }
    return ERR_OK;
}

int cmd_train(int argc, char **argv)
{
    struct run r;
    struct error err = {0};
    memset(&r, 0, sizeof r);
    if (dist_init(&argc, &argv))
        return ERR_INTERNAL;
    cli_set_rank(dist_rank());
    int rc = parse_opts(argc, argv, &r.o);
    if (rc) {
        dist_finalize();
        return rc < 0 ? 0 : rc;
    }
    r.threads = setup_threads(&r.o);
    rc = cli_agree(setup(&r, &err), &err);
    if (rc == ERR_OK) {
        if (dist_rank() == 0 && !r.o.quiet)
            print_setup(&r);
        rc = train_loop(&r, &err);
    }
    if (rc == ERR_OK && dist_rank() == 0 && r.o.checkpoint && !r.o.quiet)
        printf("saved %s\n", r.o.checkpoint);
    teardown(&r);
    dist_finalize();
    return rc;
}

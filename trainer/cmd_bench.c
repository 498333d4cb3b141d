/* cmd_bench.c: `trainer bench`: training throughput (forward + backward + all-reduce + update) of a model at a
 * global batch, on synthetic data in memory or on an HDF5 dataset through the training data path; with the
 * time per layer, the shares of the all-reduce and of the data, the achieved GFLOP/s against a measured
 * sgemm peak, and the peak memory of every rank. The last line is `images/s: X` (the median of the repeats). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "dist.h"
#include "exchange.h"
#include "feed.h"
#include "net.h"
#include "optim.h"
#include "step.h"
#include "rng.h"

static const char usage_text[] =
    "usage: trainer bench --model M [--batch-size B] [--steps S] [--threads T] [--data F.h5]\n\n"
    "Measures training throughput of M: forward, backward, the gradient all-reduce and the RMSprop update, on\n"
    "synthetic images in memory (or on F.h5, read as `train` reads it). Under `mpirun -np N` the global batch\n"
    "is split across the ranks as in training and images/s counts all ranks. Prints the time per layer, the\n"
    "shares of the all-reduce and of the data, GFLOP/s against a measured sgemm peak, the peak memory per\n"
    "rank; the last line is `images/s: X`, the median of the repeats.\n\n"
    "  --model M          preset name, model file or Keras HDF5 model (required)\n"
    "  --batch-size B     GLOBAL batch, split across ranks (default 32)\n"
    "  --steps S          timed steps per repeat (default 100)\n"
    "  --repeats R        timed repeats; the median is reported (default 5)\n"
    "  --warmup W         untimed steps first (default 20)\n"
    "  --threads T        threads per rank (default: cores / ranks on the node)\n"
    "  --data F           read the batches from this HDF5 dataset, shuffled, through the training data path\n"
    "  --no-peak          skip the sgemm peak measurement (about half a second)\n"
    "  -h, --help         this help\n";

enum { OPT_MODEL = 256, OPT_BATCH, OPT_STEPS, OPT_REPEATS, OPT_WARMUP, OPT_THREADS, OPT_DATA, OPT_NO_PEAK };

static const struct option long_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},     {"batch-size", required_argument, 0, OPT_BATCH},
    {"steps", required_argument, 0, OPT_STEPS},     {"repeats", required_argument, 0, OPT_REPEATS},
    {"warmup", required_argument, 0, OPT_WARMUP},   {"threads", required_argument, 0, OPT_THREADS},
    {"data", required_argument, 0, OPT_DATA},       {"no-peak", no_argument, 0, OPT_NO_PEAK},
    {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0},
};

#define BENCH_MAX_REPEATS 100

struct bench_opts {
    const char *model, *data;
    long batch, steps, repeats, warmup, threads;
    int no_peak;
};

/* Per-step time outside the layers, seconds summed over the timed steps (this rank). */
struct step_parts {
    double data, compute, allreduce, update, total;
    double cpu; /* CPU seconds of the whole process over the timed steps */
};

struct bench {
    struct bench_opts o;
    const char *exchange;   /* how the ranks exchange gradients (exchange_attach) */
    int in_memory;          /* --data held in memory (feed_hold_in_memory) */
    struct model model;
    struct net *net;
    struct optim opt;
    int threads;
    int64_t lo, hi;         /* this rank's share [lo, hi) of every global batch */
    /* Synthetic data: one share of random images, used every step (ids change, so the masks do). */
    uint8_t *images;        /* (share, H, W, C) */
    int32_t *labels;        /* (share,) */
    int64_t *ids;           /* (share,) */
    /* Or a dataset through the training data path. */
    struct dataset ds;
    int64_t *perm;          /* (ds.n,) the current epoch's order */
    int64_t steps_per_epoch;
    struct feed *feed;
    struct net_timing timing;
    struct step_parts parts;
    struct step step;       /* the training step (step.c) */
    int64_t k;              /* the step being run */
};

static int take_opt(int c, struct bench_opts *o)
{
    switch (c) {
    case OPT_MODEL: o->model = optarg; return 0;
    case OPT_DATA: o->data = optarg; return 0;
    case OPT_BATCH: return cli_long("bench", "--batch-size", optarg, 1, 1 << 20, &o->batch);
    case OPT_STEPS: return cli_long("bench", "--steps", optarg, 1, 1 << 24, &o->steps);
    case OPT_REPEATS: return cli_long("bench", "--repeats", optarg, 1, BENCH_MAX_REPEATS, &o->repeats);
    case OPT_WARMUP: return cli_long("bench", "--warmup", optarg, 0, 1 << 24, &o->warmup);
    case OPT_THREADS: return cli_long("bench", "--threads", optarg, 1, 4096, &o->threads);
    case OPT_NO_PEAK: o->no_peak = 1; return 0;
    case 'h':
        if (cli_is_root())
            fputs(usage_text, stdout);
        return -1;
    default: return ERR_USAGE;
    }
}

/* Returns 0, -1 for --help (done), or ERR_USAGE. */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    int c, rc = 0;
    *o = (struct bench_opts){.batch = 32, .steps = 100, .repeats = 5, .warmup = 20};
    while (rc == 0 && (c = cli_getopt("bench", argc, argv, "h", long_opts)) != -1)
        rc = take_opt(c, o);
    if (rc)
        return rc;
    if (optind < argc)
        return cli_usage("bench", "unexpected argument '%s'", argv[optind]);
    if (!o->model)
        return cli_usage("bench", "--model is required");
    return 0;
}

/* Training FLOPs of one image, counted as the peer counts them: 3 x the forward multiply-adds x 2 of the
 * layers that count them (Conv2D and Dense: forward, gradient of the input, gradient of the weights). */
static double train_flops_per_image(const struct model *m)
{
    double macs = 0;
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i].ops->forward_macs)
            macs += m->layers[i].ops->forward_macs(&m->layers[i]);
    return 3.0 * 2.0 * macs;
}

/* This rank's sgemm GFLOP/s with its threads: the best of repeated 1024^3 products over about 0.3 s
 * (the first call warms up). 0 when memory is short. */
static double measure_peak(void)
{
    const dnnl_dim_t n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    double best = 0;
    if (a && b && c) {
        for (dnnl_dim_t i = 0; i < n * n; i++) {
            a[i] = (float)(i % 7) * 0.25f;
            b[i] = (float)(i % 5) * 0.5f;
        }
        double start = dist_wtime();
        for (int k = 0; k < 200 && dist_wtime() - start < 0.3; k++) {
            double t0 = dist_wtime();
            if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success)
                break;
            double gf = 2.0 * (double)n * n * n / (dist_wtime() - t0) / 1e9;
            if (k > 0 && gf > best)
                best = gf;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Random images and labels for this rank's share (the same on every run). */
static int setup_synthetic(struct bench *b, struct error *err)
{
    const struct shape *in = &b->model.layers[0].out;
    size_t n = (size_t)(b->hi - b->lo), sample = (size_t)shape_size(in);
    b->images = malloc(sample * (n ? n : 1));
    b->labels = malloc(sizeof(int32_t) * (n ? n : 1));
    b->ids = malloc(sizeof(int64_t) * (n ? n : 1));
    if (!b->images || !b->labels || !b->ids)
        return error_set(err, ERR_INTERNAL, "out of memory for a batch of %zu", n);
    struct rng r;
    rng_seed(&r, 12345, (uint64_t)b->lo);
    for (size_t i = 0; i < sample * n; i++)
        b->images[i] = (uint8_t)(rng_next(&r) >> 56);
    for (size_t i = 0; i < n; i++)
        b->labels[i] = (int32_t)rng_below(&r, (uint64_t)b->model.n_classes);
    return ERR_OK;
}

static int setup_dataset(struct bench *b, struct error *err)
{
    const struct shape *s = &b->model.layers[0].out;
    int rc = dataset_open(&b->ds, b->o.data, err);
    if (rc)
        return rc;
    if (b->ds.h != s->h || b->ds.w != s->w || b->ds.c != s->c)
        return error_set(err, ERR_INPUT, "%s: images are %dx%dx%d but the model expects %dx%dx%d", b->o.data,
                         b->ds.h, b->ds.w, b->ds.c, s->h, s->w, s->c);
    /* Whole batches only, so that every timed step has the same size. */
    b->steps_per_epoch = b->ds.n / b->o.batch;
    if (b->steps_per_epoch < 1)
        return error_set(err, ERR_INPUT, "%s: %lld samples, fewer than one batch of %ld", b->o.data,
                         (long long)b->ds.n, b->o.batch);
    if (!(b->perm = malloc(sizeof(int64_t) * (size_t)b->ds.n)))
        return error_set(err, ERR_INTERNAL, "out of memory");
    rng_shuffle_epoch(b->perm, b->ds.n, 1, 0);
    /* As train does: held in memory when it fits, and then read without a helper thread. */
    int64_t budget = -1;
    if ((rc = feed_hold_in_memory(&b->ds, &budget, &b->in_memory, err)))
        return rc;
    return feed_create(&b->feed, &b->ds, b->perm, b->steps_per_epoch * b->o.batch, b->o.batch,
                       b->model.n_classes, !b->in_memory, err);
}

static int setup(struct bench *b, struct error *err)
{
    struct optim_conf oc;
    int rc, rank = dist_rank(), size = dist_size();
    if ((rc = exchange_check_env(err)) || (rc = feed_check_env(err)))
        return rc;
    rc = cli_is_hdf5(b->o.model) ? checkpoint_read_model(b->o.model, &b->model, err)
                             : model_load(&b->model, b->o.model, err);
    if (rc == ERR_OK)
        cli_warn_model(&b->model);
    if (rc || (rc = net_create(&b->net, &b->model, err)))
        return rc;
    net_init_params(b->net, 1);
    if (size > 1)
        b->net->sum = dist_step_sum;
    optim_defaults(&oc, OPTIM_RMSPROP);
    if ((rc = optim_init(&b->opt, &oc, b->net->n_params, err)) ||
        (rc = model_mark_moving(&b->model, &b->opt, err)) || (rc = step_mark_tensors(&b->model, &b->opt, err)) ||
        (rc = step_init(&b->step, b->net, &b->opt, "bench", 1, err)))
        return rc;
    b->lo = b->o.batch * rank / size;
    b->hi = b->o.batch * (rank + 1) / size;
    return b->o.data ? setup_dataset(b, err) : setup_synthetic(b, err);
}

static void teardown(struct bench *b)
{
    feed_destroy(b->feed);
    if (b->ds.file > 0)
        dataset_close(&b->ds);
    if (b->net)
        exchange_detach(b->net, &b->opt);
    step_release(&b->step);
    net_destroy(b->net);
    optim_release(&b->opt);
    free(b->images);
    free(b->labels);
    free(b->ids);
    free(b->perm);
}

/* This rank's share of step `step` (counted from the start of the bench). */
static int get_batch(struct bench *b, int64_t step, struct feed_batch *fb, struct error *err)
{
    if (!b->feed) {
        for (int64_t i = b->lo; i < b->hi; i++)
            b->ids[i - b->lo] = step * b->o.batch + i; /* new dropout masks every step */
        *fb = (struct feed_batch){(int)(b->hi - b->lo), b->images, b->labels, b->ids};
        return ERR_OK;
    }
    int64_t s = step % b->steps_per_epoch;
    if (s == 0 && step > 0) {
        feed_idle(b->feed);
        rng_shuffle_epoch(b->perm, b->ds.n, 1, (uint64_t)(step / b->steps_per_epoch));
    }
    int rc = feed_take(b->feed, s, fb, err);
    feed_start(b->feed, s + 1);
    return rc;
}

/* step_take_fn: the bench's share of its current step (one micro-batch per step). */
static int take_share(void *arg, int micro, struct feed_batch *fb, struct error *err)
{
    struct bench *b = arg;
    (void)micro;
    return get_batch(b, b->k, fb, err);
}

/* One training step as train_loop runs it (step.c: this rank's gradient, the exchange of gradients and
 * statistics, finiteness, the update of this rank's shard, all-gather). Adds its parts to b->parts when
 * `timed`. */
static int step(struct bench *b, int64_t k, int timed, struct error *err)
{
    struct step_in in = {1, b->o.batch, 1, (uint64_t)k, NULL, take_share, b,
                         b->feed ? (uint64_t)(k / b->steps_per_epoch) : 0};
    struct step_out out;
    double t0 = dist_wtime();
    b->k = k;
    int rc = step_run(&b->step, &in, &out, err);
    if (rc)
        return rc;
    if (timed) {
        b->parts.data += out.t_data;
        b->parts.compute += out.t_compute;
        b->parts.allreduce += out.t_exchange;
        b->parts.update += out.t_update;
        b->parts.total += dist_wtime() - t0;
    }
    return ERR_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* CPU seconds this process used so far (all its threads): unlike wall time, not inflated while the machine's
 * other work has the cores, so it compares builds on a busy machine. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* The first column of the table: "NAME KIND" of the longest layer, at least 30 characters. */
static int label_width(const struct model *m)
{
    int w = 30;
    for (int i = 1; i < m->n_layers; i++) {
        int len = (int)(strlen(m->layers[i].name) + 1 + strlen(m->layers[i].ops->name));
        w = len > w ? len : w;
    }
    return w;
}

/* Rank 0 prints the per-layer table from times averaged over the ranks (sums: layer fwd, bwd, ...). */
static void print_layers(const struct bench *b, const double *fwd, const double *bwd, double loss, double steps,
                         int w)
{
    const struct model *m = &b->model;
    double total = b->parts.total / steps * 1e3;
    printf("%-*s %12s %12s %8s\n", w, "per step (ms)", "forward", "backward", "share");
    printf("%-*s %12.3f %12s %7.1f%%\n", w, "input (scale 1/255)", fwd[0] / steps * 1e3, "-",
           100.0 * fwd[0] / steps * 1e3 / total);
    for (int i = 1; i < m->n_layers; i++) {
        char name[80];
        snprintf(name, sizeof name, "%s %s", m->layers[i].name, m->layers[i].ops->name);
        double f = fwd[i] / steps * 1e3, g = bwd[i] / steps * 1e3;
        if (b->timing.absorbed[i])
            printf("%-*s %12s %12s %8s\n", w, name, "(in the", "layer above)", "");
        else
            printf("%-*s %12.3f %12.3f %7.1f%%\n", w, name, f, g, 100.0 * (f + g) / total);
    }
    printf("%-*s %12.3f %12s %7.1f%%\n", w, "softmax + cross-entropy", loss / steps * 1e3, "",
           100.0 * loss / steps * 1e3 / total);
}

/* Everything rank 0 prints after the runs. ips (repeats,) per repeat; peak: summed over ranks. */
static void report(struct bench *b, double *ips, int repeats, double peak, const float *rss_warm, const float *rss_end)
{
    int size = dist_size();
    int L = b->model.n_layers;
    /* Means over ranks: layers forward, backward, loss, then the step's parts. */
    double v[2 * MODEL_MAX_LAYERS + 7];
    memcpy(v, b->timing.fwd, sizeof(double) * L);
    memcpy(v + L, b->timing.bwd, sizeof(double) * L);
    v[2 * L] = b->timing.loss;
    v[2 * L + 1] = b->parts.data;
    v[2 * L + 2] = b->parts.compute;
    v[2 * L + 3] = b->parts.allreduce;
    v[2 * L + 4] = b->parts.update;
    v[2 * L + 5] = b->parts.total;
    v[2 * L + 6] = b->parts.cpu;
    dist_allreduce_sum_f64(v, (size_t)(2 * L + 7));
    if (dist_rank() != 0)
        return;
    for (int i = 0; i < 2 * L + 7; i++)
        v[i] /= size;
    b->parts = (struct step_parts){v[2 * L + 1], v[2 * L + 2], v[2 * L + 3], v[2 * L + 4], v[2 * L + 5],
                                   v[2 * L + 6]};
    double steps = (double)b->o.steps * repeats, total = b->parts.total;
    int w = label_width(&b->model);
    print_layers(b, v, v + L, v[2 * L], steps, w);
    printf("%-*s %12.3f %12s %7.1f%%\n", w, "all-reduce (scatter + gather)", b->parts.allreduce / steps * 1e3, "",
           100.0 * b->parts.allreduce / total);
    printf("%-*s %12.3f %12s %7.1f%%\n", w, "update (rmsprop)", b->parts.update / steps * 1e3, "",
           100.0 * b->parts.update / total);
    printf("%-*s %12.3f %12s %7.1f%%\n", w, b->feed ? "data (wait for batch)" : "data (synthetic)",
           b->parts.data / steps * 1e3, "", 100.0 * b->parts.data / total);
    printf("%-*s %12.3f ms (CPU time %.3f ms per rank, all its threads)\n", w, "step", total / steps * 1e3,
           b->parts.cpu / steps * 1e3);
    double sorted[BENCH_MAX_REPEATS];
    memcpy(sorted, ips, sizeof(double) * repeats);
    qsort(sorted, (size_t)repeats, sizeof(double), cmp_double);
    double med = repeats % 2 ? sorted[repeats / 2] : 0.5 * (sorted[repeats / 2 - 1] + sorted[repeats / 2]);
    double gflops = med * train_flops_per_image(&b->model) / 1e9;
    printf("repeats (img/s):");
    for (int i = 0; i < repeats; i++)
        printf(" %.0f", ips[i]);
    printf("\nall-reduce share: %.1f%%\ndata share: %.1f%%\n", 100.0 * b->parts.allreduce / total,
           100.0 * b->parts.data / total);
    if (b->feed && !b->in_memory) {
        /* Rank 0's: a batch the helper thread had not started when the step wanted it is read by the step. */
        long taken, by_step;
        feed_counts(b->feed, &taken, &by_step);
        printf("data read ahead: %ld of %ld batches on rank 0 (the rest read by the step itself)\n",
               taken - by_step, taken);
    }
    if (peak > 0)
        printf("achieved: %.1f GFLOP/s, %.1f%% of the measured sgemm peak %.1f GFLOP/s (%d rank%s)\n", gflops,
               100.0 * gflops / peak, peak, size, size > 1 ? "s" : "");
    else
        printf("achieved: %.1f GFLOP/s\n", gflops);
    printf("peak RSS per rank (MiB):");
    for (int i = 0; i < size; i++)
        printf(" %.1f", rss_end[i]);
    printf(" (after warm-up:");
    for (int i = 0; i < size; i++)
        printf(" %.1f", rss_warm[i]);
    printf(")\nimages/s: %.1f\n", med);
    fflush(stdout);
}

static void print_header(const struct bench *b)
{
    int size = dist_size();
    printf("bench: model %s, %zu parameters, %.2f MFLOP per training image\n", b->o.model, b->net->n_params,
           train_flops_per_image(&b->model) / 1e6);
    printf("ranks %d x %d threads; global batch %ld (", size, b->threads, b->o.batch);
    if (b->o.batch % size)
        printf("%ld-", b->o.batch / size);
    printf("%ld per rank); data %s%s; %ld warm-up steps, then %ld x %ld timed steps\n",
           (b->o.batch + size - 1) / size, b->o.data ? b->o.data : "synthetic (in memory)",
           !b->o.data ? "" : b->in_memory ? " (held in memory)" : " (read from the file each step)", b->o.warmup,
           b->o.repeats, b->o.steps);
    if (size > 1)
        printf("gradient exchange: %s\n", strcmp(b->exchange, "shared") == 0
                                              ? "node-shared memory (reduce in place, update by shards)"
                                              : "messages (reduce-scatter, update by shards, all-gather)");
    fflush(stdout);
}

static int run(struct bench *b, struct error *err)
{
    int size = dist_size(), rc;
    double ips[BENCH_MAX_REPEATS];
    float *rss_warm = calloc((size_t)size, sizeof(float)), *rss_end = calloc((size_t)size, sizeof(float));
    if (!rss_warm || !rss_end) {
        free(rss_warm);
        free(rss_end);
        return ERR_INTERNAL;
    }
    double peak = b->o.no_peak ? 0 : measure_peak();
    dist_allreduce_sum_f64(&peak, 1);
    int64_t k = 0;
    for (; k < b->o.warmup; k++)
        if ((rc = step(b, k, 0, err)))
            goto done;
    float rss = (float)rss_mib();
    dist_gather_f32(&rss, 1, rss_warm);
    b->net->timing = &b->timing;
    double cpu0 = cpu_s();
    for (long r = 0; r < b->o.repeats; r++) {
        /* The previous step's all-reduce lined the ranks up: rank 0's clock stands for all. */
        double t0 = dist_wtime();
        for (long s = 0; s < b->o.steps; s++, k++)
            if ((rc = step(b, k, 1, err)))
                goto done;
        ips[r] = (double)b->o.steps * b->o.batch / (dist_wtime() - t0);
    }
    b->net->timing = NULL;
    b->parts.cpu = cpu_s() - cpu0;
    rss = (float)rss_mib();
    dist_gather_f32(&rss, 1, rss_end);
    report(b, ips, (int)b->o.repeats, peak, rss_warm, rss_end);
    rc = ERR_OK;
done:
    b->net->timing = NULL;
    free(rss_warm);
    free(rss_end);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof *b);
    struct error err = {0};
    if (!b)
        return ERR_INTERNAL;
    if (dist_init(&argc, &argv)) {
        free(b);
        return ERR_INTERNAL;
    }
    cli_set_rank(dist_rank());
    int rc = parse_opts(argc, argv, &b->o);
    if (rc == 0) {
        b->threads = cli_threads(b->o.threads);
        rc = cli_agree(setup(b, &err), &err);
        if (rc == ERR_OK)
            b->exchange = exchange_attach(b->net, &b->opt);
        if (rc == ERR_OK && dist_rank() == 0)
            print_header(b);
        if (rc == ERR_OK)
            rc = run(b, &err);
    }
    teardown(b);
    free(b);
    dist_finalize();
    return rc < 0 ? 0 : rc;
}

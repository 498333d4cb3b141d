/* cmd_train.c: `trainer train`: options, and everything set up before the first step (model, data,
 * network, optimizer; from a checkpoint with --resume). The loop itself is in train_loop.c. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "dist.h"
#include "exchange.h"
#include "h5file.h"
#include "summary.h"
#include "train.h"
#include "train_sched.h"

static const char usage_text[] =
    "usage: trainer train --model M --data TRAIN.h5 [options]\n"
    "       trainer train --resume C.h5 --data TRAIN.h5 [options]\n\n"
    "Trains M (a preset: cifar10-cnn, fashion-cnn, gap-cnn, resnet20, fashion-resnet; a model file; or a Keras model file) on\n"
    "TRAIN.h5. Under `mpirun -np N` each rank computes its share of every global batch.\n\n"
    "  --model M               preset name, model file or Keras HDF5 model (required unless --resume)\n"
    "  --data F                training dataset, HDF5 (required)\n"
    "  --val F                 validation dataset, HDF5\n"
    "  --val-split X           use the last fraction X of the training data for validation (Keras)\n"
    "  --epochs E              train until E epochs are done, counted from the start (default 10)\n"
    "  --batch-size B          GLOBAL batch, split across ranks (default 32)\n"
    "  --optimizer O           sgd | rmsprop | adam (default rmsprop)\n"
    "  --lr X                  learning rate (default: sgd 0.01, rmsprop 0.001, adam 0.001)\n"
    "  --momentum X            SGD and LARS momentum (default: sgd 0, lars 0.9)\n"
    "  --nesterov              SGD with Nesterov momentum\n"
    "  --seed S                seed for init, shuffle and dropout (default 1)\n"
    "  --checkpoint F          write a checkpoint (Keras HDF5) at every epoch end and when training stops\n"
    "                          (default with --resume: the resumed file)\n"
    "  --checkpoint-every S    also write it every S steps\n"
    "  --save-best             also keep F.best.h5: the lowest validation loss so far\n"
    "  --resume C              continue exactly where checkpoint C stopped (model, weights, optimizer,\n"
    "                          position; batch size and seed as it was trained)\n"
    "  --init-weights W        start from the weights of W (a checkpoint or a Keras model file)\n"
    "  --metrics F             append one CSV row per epoch\n"
    "  --threads T             threads per rank (default: cores / ranks on the node)\n"
    "  --max-steps S           stop after S optimizer steps in all, counted from the start\n"
    "  --optimizer adamw|lars  also: Keras 3's AdamW (decoupled weight decay), LARS (You et al. 2017)\n"
    "  --weight-decay X        decoupled weight decay p -= lr*X*p (default: adamw 0.004, others 0);\n"
    "                          lars: its decay of the kernels\n"
    "  --lars-eta X            LARS trust coefficient (default 0.001)\n"
    "  --clipnorm X            clip each gradient tensor to norm X (Keras clipnorm)\n"
    "  --global-clipnorm X     clip the whole gradient to norm X (Keras global_clipnorm)\n"
    "  --label-smoothing X     Keras CategoricalCrossentropy(label_smoothing=X), training loss only\n"
    "  --accumulate K          K micro-batches of --batch-size per optimizer step (Keras 3\n"
    "                          gradient_accumulation_steps); steps and --max-steps count optimizer steps\n"
    "  --quiet                 no summary, progress bar or epoch lines\n"
    "  --lr-schedule S         constant | cosine | step | exponential, per optimizer step (default constant)\n"
    "  --min-lr X              cosine: the last step's lr (default 0; Keras CosineDecay alpha = X / lr)\n"
    "  --step-epochs E1,E2     step: epochs after which lr is multiplied by --step-factor (default 0.1)\n"
    "  --step-factor X\n"
    "  --decay-rate X          exponential: lr * X^(epochs done) (default 0.96)\n"
    "  --warmup-epochs W       a linear ramp from 0 to --lr over the first W epochs (fractional allowed)\n"
    "  --callback \"C(...)\"     ReduceLROnPlateau(...) or EarlyStopping(...) in Keras syntax; repeatable\n"
    "  -h, --help              this help\n\n"
    "environment:\n"
    "  TRAINER_PROGRESS=bar|lines|auto   force the live bar or plain epoch lines (default auto)\n"
    "  TRAINER_WATCHDOG_S=S    a rank that waits S seconds for the others in a collective ends the job\n"
    "                          (default 60; 0 switches the watchdog off)\n"
    "  TRAINER_EXCHANGE=auto|messages   how ranks sum gradients: through node-shared memory where every\n"
    "                          node runs the same number of ranks (auto, the default), or MPI messages\n"
    "  TRAINER_DATA_CACHE=auto|off   hold the data sets in memory when they fit an eighth of the machine's\n"
    "                          memory shared by its ranks (auto, the default), or read every batch from the file\n"
    "  OMP_NUM_THREADS=T       threads per rank, as --threads\n";

enum { OPT_MODEL = 256, OPT_DATA, OPT_VAL, OPT_VAL_SPLIT, OPT_EPOCHS, OPT_BATCH, OPT_OPTIMIZER, OPT_LR,
       OPT_MOMENTUM, OPT_NESTEROV, OPT_SEED, OPT_CHECKPOINT, OPT_CHECKPOINT_EVERY, OPT_SAVE_BEST, OPT_RESUME,
       OPT_INIT_WEIGHTS, OPT_METRICS, OPT_THREADS, OPT_MAX_STEPS, OPT_QUIET };
enum { OPT_WEIGHT_DECAY = 400, OPT_LARS_ETA, OPT_CLIPNORM, OPT_GLOBAL_CLIPNORM, OPT_LABEL_SMOOTHING, OPT_ACCUMULATE };

static const struct option long_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},
    {"data", required_argument, 0, OPT_DATA},
    {"val", required_argument, 0, OPT_VAL},
    {"val-split", required_argument, 0, OPT_VAL_SPLIT},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch-size", required_argument, 0, OPT_BATCH},
    {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"nesterov", no_argument, 0, OPT_NESTEROV},
    {"seed", required_argument, 0, OPT_SEED},
    {"checkpoint", required_argument, 0, OPT_CHECKPOINT},
    {"checkpoint-every", required_argument, 0, OPT_CHECKPOINT_EVERY},
    {"save-best", no_argument, 0, OPT_SAVE_BEST},
    {"resume", required_argument, 0, OPT_RESUME},
    {"init-weights", required_argument, 0, OPT_INIT_WEIGHTS},
    {"metrics", required_argument, 0, OPT_METRICS},
    {"threads", required_argument, 0, OPT_THREADS},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"lr-schedule", required_argument, 0, OPT_LR_SCHEDULE},
    {"min-lr", required_argument, 0, OPT_MIN_LR},
    {"step-epochs", required_argument, 0, OPT_STEP_EPOCHS},
    {"step-factor", required_argument, 0, OPT_STEP_FACTOR},
    {"decay-rate", required_argument, 0, OPT_DECAY_RATE},
    {"warmup-epochs", required_argument, 0, OPT_WARMUP_EPOCHS},
    {"callback", required_argument, 0, OPT_CALLBACK},
    {"weight-decay", required_argument, 0, OPT_WEIGHT_DECAY},
    {"lars-eta", required_argument, 0, OPT_LARS_ETA},
    {"clipnorm", required_argument, 0, OPT_CLIPNORM},
    {"global-clipnorm", required_argument, 0, OPT_GLOBAL_CLIPNORM},
    {"label-smoothing", required_argument, 0, OPT_LABEL_SMOOTHING},
    {"accumulate", required_argument, 0, OPT_ACCUMULATE},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* A number > 0 (and finite) for option `opt`. */
static int positive(const char *opt, double *out)
{
    int rc = cli_double("train", opt, optarg, 0, 1e300, out);
    if (rc == 0 && !(*out > 0))
        rc = cli_usage("train", "%s: '%s' is not a number > 0", opt, optarg);
    return rc;
}

/* A recipe option (issue 14) into o; the optimizer's values go to o->optim and survive optim_defaults
 * (recipe_conf). */
static int take_recipe_opt(int c, struct train_opts *o)
{
    struct optim_conf *q = &o->optim;
    switch (c) {
    case OPT_WEIGHT_DECAY:
        o->set_weight_decay = 1;
        return cli_double("train", "--weight-decay", optarg, 0, 1e6, &q->weight_decay);
    case OPT_LARS_ETA:
        o->set_lars_eta = 1;
        return positive("--lars-eta", &q->lars_eta);
    case OPT_CLIPNORM:
        o->set_clipnorm = 1;
        return positive("--clipnorm", &q->clipnorm);
    case OPT_GLOBAL_CLIPNORM:
        o->set_global_clipnorm = 1;
        return positive("--global-clipnorm", &q->global_clipnorm);
    case OPT_LABEL_SMOOTHING:
        o->set_label_smoothing = 1;
        return cli_double("train", "--label-smoothing", optarg, 0, 1, &o->label_smoothing);
    case OPT_ACCUMULATE:
        o->set_accumulate = 1;
        return cli_long("train", "--accumulate", optarg, 1, 65536, &o->accumulate);
    default: return ERR_USAGE;
    }
}

/* After optim_defaults(&o->optim): the recipe values the command line gave, on top of the kind's defaults;
 * ERR_USAGE for a combination the optimizer does not take. */
static int recipe_conf(struct train_opts *o, const struct optim_conf *given)
{
    struct optim_conf *q = &o->optim;
    if (o->set_weight_decay)
        q->weight_decay = given->weight_decay;
    /* Resumed without --optimizer: the checkpoint's optimizer decides (resume_recipe). */
    if (o->set_lars_eta && q->kind != OPTIM_LARS && !(o->resume && !o->set_optimizer))
        return cli_usage("train", "--lars-eta applies to --optimizer lars only");
    if (o->set_lars_eta)
        q->lars_eta = given->lars_eta;
    if (o->set_clipnorm && o->set_global_clipnorm)
        return cli_usage("train", "--clipnorm and --global-clipnorm exclude each other (as in Keras)");
    q->clipnorm = given->clipnorm;
    q->global_clipnorm = given->global_clipnorm;
    return 0;
}

/* One option into o; returns 0, -1 for --help, or ERR_USAGE. */
static int take_opt(int c, struct train_opts *o, const char **optimizer, double *lr, double *momentum)
{
    switch (c) {
    case OPT_MODEL: o->model = optarg; return 0;
    case OPT_DATA: o->data = optarg; return 0;
    case OPT_VAL: o->val = optarg; return 0;
    case OPT_VAL_SPLIT: return cli_double("train", "--val-split", optarg, 0, 0.99, &o->val_split);
    case OPT_EPOCHS: o->set_epochs = 1; return cli_long("train", "--epochs", optarg, 1, 1000000, &o->epochs);
    case OPT_BATCH: o->set_batch = 1; return cli_long("train", "--batch-size", optarg, 1, 1 << 20, &o->batch);
    case OPT_OPTIMIZER: o->set_optimizer = 1; *optimizer = optarg; return 0;
    case OPT_LR: o->set_lr = 1; return cli_double("train", "--lr", optarg, 0, 1e6, lr);
    case OPT_MOMENTUM: o->set_momentum = 1; return cli_double("train", "--momentum", optarg, 0, 1, momentum);
    case OPT_NESTEROV: o->set_nesterov = 1; return 0;
    case OPT_SEED: o->set_seed = 1; return cli_long("train", "--seed", optarg, 0, 0x7fffffffL, &o->seed);
    case OPT_CHECKPOINT: o->checkpoint = optarg; return 0;
    case OPT_CHECKPOINT_EVERY:
        return cli_long("train", "--checkpoint-every", optarg, 1, 1L << 40, &o->checkpoint_every);
    case OPT_SAVE_BEST: o->save_best = 1; return 0;
    case OPT_RESUME: o->resume = optarg; return 0;
    case OPT_INIT_WEIGHTS: o->init_weights = optarg; return 0;
    case OPT_METRICS: o->metrics = optarg; return 0;
    case OPT_THREADS: return cli_long("train", "--threads", optarg, 1, 4096, &o->threads);
    case OPT_MAX_STEPS: return cli_long("train", "--max-steps", optarg, 1, 1L << 40, &o->max_steps);
    case OPT_QUIET: o->quiet = 1; return 0;
    case 'h':
        if (cli_is_root())
            fputs(usage_text, stdout);
        return -1;
    /* The recipe options (optimizer side) and the schedule's and callbacks' (train_sched.c), each in its own table. */
    case OPT_WEIGHT_DECAY:
    case OPT_LARS_ETA:
    case OPT_CLIPNORM:
    case OPT_GLOBAL_CLIPNORM:
    case OPT_LABEL_SMOOTHING:
    case OPT_ACCUMULATE: return take_recipe_opt(c, o);
    default: return train_sched_take_opt(c, optarg, o);
    }
}

/* Combinations that make no sense, before anything is read. */
static int check_opts(struct train_opts *o)
{
    if (!o->data)
        return cli_usage("train", "--data is required");
    if (!o->model && !o->resume)
        return cli_usage("train", "--model is required (or --resume)");
    if (o->resume && o->init_weights)
        return cli_usage("train", "--resume and --init-weights exclude each other");
    if (o->val && o->val_split > 0)
        return cli_usage("train", "--val and --val-split exclude each other");
    if (o->resume && !o->checkpoint)
        o->checkpoint = o->resume;
    if ((o->checkpoint_every || o->save_best) && !o->checkpoint)
        return cli_usage("train", "--checkpoint-every and --save-best need --checkpoint");
    if (o->batch * o->accumulate > (1L << 30))
        return cli_usage("train", "--batch-size x --accumulate must be at most 2^30 samples per step");
    if (o->save_best && !o->val && o->val_split <= 0)
        return cli_usage("train", "--save-best needs validation data (--val or --val-split)");
    return 0;
}

/* Returns 0, -1 for --help (done), or ERR_USAGE. */
static int parse_opts(int argc, char **argv, struct train_opts *o)
{
    const char *optimizer = "rmsprop";
    double lr = -1, momentum = -1;
    int c, rc = 0;
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 32;
    o->seed = 1;
    sched_defaults(&o->sched);
    o->accumulate = 1;
    while (rc == 0 && (c = cli_getopt("train", argc, argv, "h", long_opts)) != -1)
        rc = take_opt(c, o, &optimizer, &lr, &momentum);
    if (rc)
        return rc;
    if (optind < argc)
        return cli_usage("train", "unexpected argument '%s'", argv[optind]);
    int kind = optim_kind_from_name(optimizer);
    if (kind < 0)
        return cli_usage("train", "--optimizer: unknown optimizer '%s' (sgd, rmsprop, adam, adamw or lars)",
                         optimizer);
    struct optim_conf given = o->optim;
    optim_defaults(&o->optim, kind);
    if ((rc = recipe_conf(o, &given)))
        return rc;
    if (lr >= 0)
        o->optim.lr = lr;
    if (o->set_momentum && kind != OPTIM_SGD && kind != OPTIM_LARS)
        return cli_usage("train", "--momentum applies to --optimizer sgd and lars only");
    if (o->set_nesterov && kind != OPTIM_SGD)
        return cli_usage("train", "--nesterov applies to --optimizer sgd only");
    if (momentum >= 0)
        o->optim.momentum = momentum;
    o->optim.nesterov = o->set_nesterov;
    if ((rc = check_opts(o)))
        return rc;
    return train_sched_check_opts(o);
}

static int check_shape(const struct dataset *ds, const struct model *m, struct error *err)
{
    const struct shape *s = &m->layers[0].out;
    if (ds->h != s->h || ds->w != s->w || ds->c != s->c)
        return error_set(err, ERR_INPUT, "%s: images are %dx%dx%d but the model expects %dx%dx%d", ds->path,
                         ds->h, ds->w, ds->c, s->h, s->w, s->c);
    return ERR_OK;
}

/* The model: from --model (a preset, a model file or a Keras HDF5 file), or the resumed checkpoint's,
 * which must then be the same model. */
static int load_model(struct run *r, struct error *err)
{
    const struct train_opts *o = &r->o;
    struct model *given = NULL;
    int rc;
    if (!o->resume) {
        rc = cli_is_hdf5(o->model) ? checkpoint_read_model(o->model, &r->model, err)
                                   : model_load(&r->model, o->model, err);
        if (rc == ERR_OK)
            cli_warn_model(&r->model);
        return rc;
    }
    if ((rc = checkpoint_read_model(o->resume, &r->model, err)) || !o->model)
        return rc;
    if (!(given = malloc(sizeof *given)))
        return error_set(err, ERR_INTERNAL, "out of memory");
    rc = cli_is_hdf5(o->model) ? checkpoint_read_model(o->model, given, err) : model_load(given, o->model, err);
    if (rc == ERR_OK && strcmp(given->text, r->model.text) != 0)
        rc = error_set(err, ERR_INPUT, "%s: the checkpoint holds another model than %s", o->resume, o->model);
    free(given);
    return rc;
}

/* A recipe option that differs from the resumed run's: "C.h5: trained with --OPT A; resume it with that
 * value (or leave the option out)". ERR_USAGE. */
static int recipe_conflict(const char *path, const char *opt, double was, double given, struct error *err)
{
    return error_set(err, ERR_USAGE,
                     "%s: trained with %s %.15g, not %.15g: a resumed run keeps its recipe (leave %s out)", path, opt,
                     was, given, opt);
}

/* With --resume: the recipe options (issue 14) may be repeated but not changed; the run continues with the
 * checkpoint's. */
static int resume_recipe(struct run *r, struct error *err)
{
    const struct train_opts *o = &r->o;
    const struct checkpoint_state *at = &r->at;
    const struct optim_conf *was = &at->optim, *given = &o->optim;
    if (o->set_weight_decay && given->weight_decay != was->weight_decay)
        return recipe_conflict(o->resume, "--weight-decay", was->weight_decay, given->weight_decay, err);
    if (o->set_lars_eta && given->lars_eta != was->lars_eta)
        return recipe_conflict(o->resume, "--lars-eta", was->lars_eta, given->lars_eta, err);
    if (o->set_clipnorm && given->clipnorm != was->clipnorm)
        return recipe_conflict(o->resume, "--clipnorm", was->clipnorm, given->clipnorm, err);
    if (o->set_global_clipnorm && given->global_clipnorm != was->global_clipnorm)
        return recipe_conflict(o->resume, "--global-clipnorm", was->global_clipnorm, given->global_clipnorm, err);
    if (o->set_label_smoothing && o->label_smoothing != at->label_smoothing)
        return recipe_conflict(o->resume, "--label-smoothing", at->label_smoothing, o->label_smoothing, err);
    if (o->set_accumulate && o->accumulate != at->accumulate)
        return recipe_conflict(o->resume, "--accumulate", (double)at->accumulate, (double)o->accumulate, err);
    return ERR_OK;
}

/* With --resume: batch size, seed and optimizer as the checkpoint was trained, unless the command line
 * says otherwise where that is allowed (learning rate and momentum may change; the rest would break the
 * run's meaning). */
static int resume_settings(struct run *r, struct error *err)
{
    struct train_opts *o = &r->o;
    struct checkpoint_state *at = &r->at;
    int rc = checkpoint_read_state(o->resume, NULL, at, err);
    if (rc)
        return rc;
    if (o->set_batch && o->batch != at->global_batch)
        return error_set(err, ERR_INPUT, "%s: trained with global batch %lld; resume it with that --batch-size",
                         o->resume, (long long)at->global_batch);
    if (o->set_seed && (uint64_t)o->seed != at->seed)
        return error_set(err, ERR_INPUT, "%s: trained with --seed %llu; resume it with that seed", o->resume,
                         (unsigned long long)at->seed);
    if (o->set_optimizer && o->optim.kind != at->optim.kind)
        return error_set(err, ERR_INPUT, "%s: trained with optimizer %s; resume it with that optimizer",
                         o->resume, optim_kind_name(at->optim.kind));
    if ((rc = resume_recipe(r, err)))
        return rc;
    struct optim_conf c = at->optim;
    if (o->set_lr)
        c.lr = o->optim.lr;
    if (o->set_momentum)
        c.momentum = o->optim.momentum;
    if (o->set_nesterov)
        c.nesterov = 1;
    o->optim = c;
    o->batch = at->global_batch;
    o->seed = (long)at->seed;
    o->accumulate = at->accumulate;
    o->label_smoothing = at->label_smoothing;
    return train_sched_resume(r, err);
}

static int open_data(struct run *r, struct error *err)
{
    const struct train_opts *o = &r->o;
    int rc;
    if ((rc = dataset_open(&r->train, o->data, err)) || (rc = check_shape(&r->train, &r->model, err)))
        return rc;
    r->n_train = r->train.n;
    if (o->val) {
        if ((rc = dataset_open(&r->val, o->val, err)) || (rc = check_shape(&r->val, &r->model, err)))
            return rc;
        r->has_val = 1;
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
    int64_t budget = -1;
    if ((rc = feed_hold_in_memory(&r->train, &budget, &r->train_in_memory, err)))
        return rc;
    if (o->val && (rc = feed_hold_in_memory(&r->val, &budget, &r->val_in_memory, err)))
        return rc;
    return ERR_OK;
}

/* Weights and optimizer: fresh from the seed, from --init-weights, or exactly as --resume left them. */
static int setup_net(struct run *r, struct error *err)
{
    const struct train_opts *o = &r->o;
    int rc;
    if ((rc = net_create(&r->net, &r->model, err)))
        return rc;
    net_init_params(r->net, (uint64_t)o->seed);
    if (dist_size() > 1)
        r->net->sum = dist_step_sum;
    if ((rc = optim_init(&r->opt, &o->optim, r->net->n_params, err)) ||
        (rc = model_mark_moving(&r->model, &r->opt, err)) || (rc = step_mark_tensors(&r->model, &r->opt, err)))
        return rc;
    r->net->label_smoothing = (float)o->label_smoothing;
    /* BatchNormalization folds its moving statistics through the optimizer once per update, where Keras 3
     * moves them on every micro-batch: not the same training, so not offered. */
    if (o->accumulate > 1 && model_moving_params(&r->model) > 0)
        return error_set(err, ERR_USAGE, "--accumulate %ld: not supported with BatchNormalization (its moving "
                         "statistics would not follow Keras's)", o->accumulate);
    if (o->init_weights)
        return checkpoint_read_weights(o->init_weights, r->net, err);
    if (o->resume) {
        if ((rc = checkpoint_read_weights(o->resume, r->net, err)))
            return rc;
        return checkpoint_read_state(o->resume, &r->opt, &r->at, err);
    }
    r->at.seed = (uint64_t)o->seed;
    r->at.global_batch = o->batch;
    r->at.accumulate = o->accumulate;
    r->at.label_smoothing = o->label_smoothing;
    r->at.best_val_loss = INFINITY;
    return ERR_OK;
}

static int setup_buffers(struct run *r, struct error *err)
{
    int size = dist_size();
    r->share_max = (int)((r->o.batch + size - 1) / size);
    size_t sample = (size_t)shape_size(&r->model.layers[0].out);
    r->perm = malloc(sizeof(int64_t) * (size_t)r->n_train);
    r->images = malloc(sample * (size_t)r->share_max);
    r->labels = malloc(sizeof(int32_t) * (size_t)r->share_max);
    r->ids = malloc(sizeof(int64_t) * (size_t)r->share_max);
    if (!r->perm || !r->images || !r->labels || !r->ids)
        return error_set(err, ERR_INTERNAL, "out of memory for the training buffers");
    /* A checkpoint that cannot be written fails now, not after the first epoch. */
    int rc = r->o.checkpoint && dist_rank() == 0 ? h5file_check_writable(r->o.checkpoint, "checkpoint", err) : 0;
    if (rc)
        return rc;
    if (r->o.metrics && dist_rank() == 0) {
        r->metrics = fopen(r->o.metrics, "a");
        if (!r->metrics)
            return error_set(err, ERR_IO, "%s: cannot open for appending: %s", r->o.metrics, strerror(errno));
        if (ftell(r->metrics) == 0)
            fputs("epoch,step,loss,acc,val_loss,val_acc,lr,img_per_s,wall_s\n", r->metrics);
    }
    return ERR_OK;
}

/* Everything before the first step; any rank's failure is agreed before the loop starts. */
static int setup(struct run *r, struct error *err)
{
    int rc;
    if ((rc = exchange_check_env(err)) || (rc = feed_check_env(err)) || (rc = load_model(r, err)))
        return rc;
    if (r->o.resume && (rc = resume_settings(r, err)))
        return rc;
    if ((rc = open_data(r, err)) || (rc = setup_net(r, err)) || (rc = train_sched_setup(r, err)))
        return rc;
    return setup_buffers(r, err);
}

static void teardown(struct run *r)
{
    if (r->net)
        exchange_detach(r->net, &r->opt);
    net_destroy(r->net);
    optim_release(&r->opt);
    if (r->train.file > 0)
        dataset_close(&r->train);
    if (r->val.file > 0)
        dataset_close(&r->val);
    free(r->perm);
    free(r->images);
    free(r->labels);
    free(r->ids);
    callbacks_free(&r->at.callbacks);
    if (r->metrics)
        fclose(r->metrics);
}

/* Rank 0, before the first step: the model as Keras summarises it, then how this run is spread out. */
static void print_setup(const struct run *r)
{
    const struct train_opts *o = &r->o;
    int size = dist_size();
    char a[32], b[32], opt[256];
    summary_print(stdout, &r->model, o->model ? o->model : o->resume);
    printf("Ranks:      %d x %d thread%s", size, r->threads, r->threads == 1 ? "" : "s");
    if (size > 1)
        printf(" (gradients through %s)",
               strcmp(r->exchange, "shared") == 0 ? "node-shared memory" : "messages");
    putchar('\n');
    /* An uneven split gives some ranks one sample less. */
    printf("Batch:      %ld global, ", o->batch);
    if (o->batch % size)
        printf("%ld-", o->batch / size);
    printf("%d per rank; %s steps per epoch", r->share_max, summary_count(a, sizeof a, train_steps_per_epoch(r)));
    if (o->accumulate > 1)
        printf(" of %ld micro-batches (%ld samples per step)", o->accumulate, o->accumulate * o->batch);
    putchar('\n');
    if (o->label_smoothing > 0)
        printf("Loss:       categorical cross-entropy, label smoothing %g (training loss only)\n", o->label_smoothing);
    printf("Train data: %s, %s samples (%s)\n", o->data, summary_count(a, sizeof a, r->n_train),
           r->train_in_memory ? "held in memory" : "read from the file each step");
    if (o->val)
        printf("Validation: %s, %s samples (%s)\n", o->val, summary_count(a, sizeof a, r->val_end - r->val_start),
               r->val_in_memory ? "held in memory" : "read from the file");
    else if (r->has_val)
        printf("Validation: the last %s samples of %s (--val-split %g)\n",
               summary_count(a, sizeof a, r->val_end - r->val_start), o->data, o->val_split);
    else
        printf("Validation: none\n");
    printf("Optimizer:  %s\n", summary_optimizer(opt, sizeof opt, &o->optim));
    printf("Epochs:     %ld", o->epochs);
    if (o->max_steps)
        printf(", at most %s steps", summary_count(a, sizeof a, o->max_steps));
    printf(" (seed %ld)\n", o->seed);
    train_sched_print(r);
    if (o->resume && r->at.epoch_step)
        printf("Resuming:   %s in epoch %lld after batch %s of %s (step %lld)\n", o->resume,
               (long long)r->at.epoch + 1, summary_count(a, sizeof a, r->at.epoch_step),
               summary_count(b, sizeof b, train_steps_per_epoch(r)), (long long)r->at.step);
    else if (o->resume)
        printf("Resuming:   %s at the start of epoch %lld (step %lld)\n", o->resume, (long long)r->at.epoch + 1,
               (long long)r->at.step);
    /* A blank line between the set-up and the epochs. */
    putchar('\n');
    fflush(stdout);
}

int cmd_train(int argc, char **argv)
{
    struct run *r = calloc(1, sizeof *r);
    struct error err = {0};
    if (!r)
        return ERR_INTERNAL;
    train_catch_stop_signals();
    if (dist_init(&argc, &argv)) {
        free(r);
        return ERR_INTERNAL;
    }
    cli_set_rank(dist_rank());
    int rc = parse_opts(argc, argv, &r->o);
    if (rc == 0) {
        r->threads = cli_threads(r->o.threads);
        rc = cli_agree(setup(r, &err), &err);
        if (rc == ERR_OK && r->train.n_class_names == r->model.n_classes) {
            /* The checkpoints name the classes the model learnt (after --resume, which resets r->at). */
            r->at.class_names = (const char *const *)r->train.class_names;
            r->at.n_class_names = r->train.n_class_names;
        }
        if (rc == ERR_OK)
            r->exchange = exchange_attach(r->net, &r->opt);
        if (rc == ERR_OK && dist_rank() == 0 && !r->o.quiet)
            print_setup(r);
        if (rc == ERR_OK)
            rc = train_loop(r);
    }
    teardown(r);
    free(r);
    dist_finalize();
    return rc < 0 ? 0 : rc;
}

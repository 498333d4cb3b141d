/* main.c: `trainer COMMAND [options]`: finds the command and runs it. */
#include <stdio.h>
#include <string.h>

#include <hdf5.h>
#include <jansson.h>
#include <oneapi/dnnl/dnnl.h>

#include "cli.h"
#include "commands.h"
#include "dist.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"import", cmd_import, "convert IDX, CIFAR-10 or folders of PNG/JPEG images to an HDF5 dataset"},
    {"train", cmd_train, "train a model, on one rank or on many under mpirun/srun"},
    {"eval", cmd_eval, "loss, accuracy, per-class accuracy and confusion matrix of a checkpoint"},
    {"predict", cmd_predict, "class probabilities and predictions of a checkpoint, to HDF5"},
    {"info", cmd_info, "describe a dataset, a checkpoint, a Keras model file or an ONNX model"},
    {"export", cmd_export, "a checkpoint as ONNX (export onnx), a dataset as folders of PNG files (export images)"},
    {"bench", cmd_bench, "training throughput on synthetic data: images/s, time per layer, all-reduce share"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fputs("usage: trainer COMMAND [options]\n"
          "       trainer COMMAND --help     the options of COMMAND, with their defaults\n"
          "       trainer --version          versions of the trainer and of the libraries it runs on\n\n"
          "A data-parallel trainer for image-classification CNNs: Keras models on oneDNN, MPI, HDF5.\n\n"
          "commands:\n",
          f);
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %-8s %s\n", c->name, c->summary);
    fputs("\noptions:\n"
          "  -h, --help       this help (also: trainer help COMMAND)\n"
          "  -V, --version    versions of the trainer, oneDNN, HDF5, MPI and jansson\n\n"
          "environment:\n"
          "  TRAINER_PROGRESS=auto|bar|lines  train's progress bar: on a terminal only (auto, the default),\n"
          "                                   always, or never (epoch lines only)\n"
          "  OMP_NUM_THREADS=T                threads per rank when --threads is not given\n\n"
          "Several ranks: `mpirun -np N trainer train ...` (--batch-size stays the global batch).\n"
          "See README.md.\n",
          f);
}

/* The versions of the libraries actually loaded, not the headers compiled against. */
static void version(void)
{
    const dnnl_version_t *v = dnnl_version();
    unsigned maj, min, rel;
    char mpi[256];
    H5get_libversion(&maj, &min, &rel);
    dist_library_version(mpi, sizeof mpi);
    printf("trainer %s\noneDNN %d.%d.%d (%s)\nHDF5 %u.%u.%u\n%s\njansson %s\n", TRAINER_VERSION, v->major,
           v->minor, v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other threading", maj, min, rel,
           mpi, jansson_version_str());
}

static const struct command *find_command(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Not a command: the closest command or top-level option, as a usage error. */
static int unknown(const char *name)
{
    enum { MAX = sizeof commands / sizeof commands[0] };
    const char *names[MAX];
    int n = 0;
    for (const struct command *c = commands; c->name; c++)
        names[n++] = c->name;
    names[n] = NULL;
    if (name[0] == '-') {
        const char *bare = name + strspn(name, "-");
        if (*bare && find_command(bare))
            return cli_usage(NULL, "unknown option '%s' (commands take no dashes: did you mean 'trainer %s'?)",
                             name, bare);
        static const char *const options[] = {"--help", "--version", NULL};
        /* -v is --version in many tools; here it is -V, as in GNU tools where -v means verbose. */
        const char *near = strcmp(name, "-v") == 0 ? "--version" : cli_closest(name, options);
        if (near)
            return cli_usage(NULL, "unknown option '%s' (did you mean '%s'?)", name, near);
        return cli_usage(NULL, "unknown option '%s'", name);
    }
    const char *near = cli_closest(name, names);
    if (near)
        return cli_usage(NULL, "unknown command '%s' (did you mean '%s'?)", name, near);
    return cli_usage(NULL, "unknown command '%s'", name);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ERR_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        if (strcmp(name, "help") == 0 && argc > 2) {
            /* `trainer help train` is `trainer train --help`. */
            const struct command *c = find_command(argv[2]);
            if (!c)
                return unknown(argv[2]);
            static char help_opt[] = "--help";
            char *help_argv[] = {argv[2], help_opt, NULL};
            return c->run(2, help_argv);
        }
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        version();
        return 0;
    }
    const struct command *c = find_command(name);
    return c ? c->run(argc - 1, argv + 1) : unknown(name);
}

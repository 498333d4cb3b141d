/* main.c: `trainer COMMAND [options]`: finds the command and runs it. */
#include <stdio.h>
#include <string.h>

#include <hdf5.h>
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
    {"import", cmd_import, "convert IDX (MNIST, Fashion-MNIST) or CIFAR-10 files to an HDF5 dataset"},
    {"train", cmd_train, "train a model, on one rank or on many under mpirun/srun"},
    {"eval", cmd_eval, "loss, accuracy, per-class accuracy and confusion matrix of a checkpoint"},
    {"predict", cmd_predict, "class probabilities and predictions of a checkpoint, to HDF5"},
    {"info", cmd_info, "describe a dataset, a checkpoint or a Keras model file"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fputs("usage: trainer COMMAND [options]\n"
          "       trainer COMMAND --help\n"
          "       trainer --version\n\n"
          "A data-parallel trainer for image-classification CNNs (Keras models, oneDNN, MPI, HDF5).\n\n"
          "commands:\n",
          f);
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %-8s %s\n", c->name, c->summary);
    fputs("\nRun on several ranks with `mpirun -np N trainer train ...`. See README.md.\n", f);
}

static void version(void)
{
    const dnnl_version_t *v = dnnl_version();
    unsigned maj, min, rel;
    char mpi[256];
    H5get_libversion(&maj, &min, &rel);
    dist_library_version(mpi, sizeof mpi);
    printf("trainer %s\noneDNN %d.%d.%d (%s)\nHDF5 %u.%u.%u\n%s\n", TRAINER_VERSION, v->major, v->minor,
           v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other threading", maj, min, rel, mpi);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ERR_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        version();
        return 0;
    }
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c->run(argc - 1, argv + 1);
    const char *names[8];
    int n = 0;
    for (const struct command *c = commands; c->name; c++)
        names[n++] = c->name;
    names[n] = NULL;
    const char *near = cli_closest(name, names);
    if (name[0] == '-')
        return cli_usage(NULL, "unknown option '%s'", name);
    if (near)
        return cli_usage(NULL, "unknown command '%s' (did you mean '%s'?)", name, near);
    return cli_usage(NULL, "unknown command '%s'", name);
}

/* cmd_info.c: `trainer info FILE.h5`: what a dataset, a checkpoint or a Keras model file holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "model.h"

static const char usage_text[] =
    "usage: trainer info FILE.h5\n\n"
    "Describes an HDF5 dataset (shape, count, class names, samples per class), a trainer checkpoint or a\n"
    "Keras full-model file (layers, output shapes, parameters), saying which kind it found.\n";

enum kind { KIND_UNKNOWN, KIND_DATASET, KIND_CHECKPOINT, KIND_KERAS };

static enum kind detect(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (H5Fis_hdf5(path) <= 0)
        return KIND_UNKNOWN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
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
    int classes = ds.n_class_names ? ds.n_class_names : 0, max_label = -1;
    int slots = classes > 0 ? classes : DATASET_MAX_CLASSES;
    int64_t *counts = calloc((size_t)slots, sizeof(int64_t));
    if (!counts) {
        dataset_close(&ds);
        return error_set(err, ERR_INTERNAL, "out of memory");
    }
    rc = dataset_label_counts(&ds, counts, slots, &max_label, err);
    if (rc == ERR_OK) {
        if (!classes)
            classes = max_label + 1;
        printf("%s: dataset\n  images: %lld x %d x %d x %d uint8 (N, H, W, C)\n  classes: %d\n", path,
               (long long)ds.n, ds.h, ds.w, ds.c, classes);
        for (int k = 0; k < classes; k++)
            printf("    %2d  %-20s %8lld\n", k, k < ds.n_class_names ? ds.class_names[k] : "",
                   (long long)counts[k]);
    }
    free(counts);
    dataset_close(&ds);
    return rc;
}

static void print_summary(const struct model *m)
{
    printf("  %-28s %-20s %10s\n", "Layer (type)", "Output Shape", "Param #");
    for (int i = 0; i < m->n_layers; i++) {
        const struct layer_spec *s = &m->layers[i];
        char name[80], shape[48];
        size_t params = 0;
        for (int p = 0; p < s->n_params; p++)
            params += s->params[p].size;
        snprintf(name, sizeof name, "%s (%s)", s->name, s->ops->name);
        if (s->out.rank == 3)
            snprintf(shape, sizeof shape, "(None, %d, %d, %d)", s->out.h, s->out.w, s->out.c);
        else
            snprintf(shape, sizeof shape, "(None, %d)", s->out.c);
        printf("  %-28s %-20s %10zu\n", name, shape, params);
    }
    printf("  Total params: %zu\n", m->n_params);
}

static int info_model(const char *path, enum kind kind, struct error *err)
{
    struct model *m = malloc(sizeof *m);
    if (!m)
        return error_set(err, ERR_INTERNAL, "out of memory");
    int rc = checkpoint_read_model(path, m, err);
    if (rc == ERR_OK) {
        printf("%s: %s\n", path, kind == KIND_CHECKPOINT ? "trainer checkpoint (Keras 2 full-model HDF5)"
                                                         : "Keras full-model file");
        print_summary(m);
        if (kind == KIND_CHECKPOINT) {
            struct checkpoint_state st;
            if (checkpoint_read_state(path, NULL, &st, err) == ERR_OK)
                printf("  trained: %lld steps, %lld epochs; global batch %lld; written by %d ranks; seed %llu\n",
                       (long long)st.step, (long long)st.epoch, (long long)st.global_batch, st.world_size,
                       (unsigned long long)st.seed);
        }
    }
    free(m);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    struct error err = {0};
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc != 2)
        return cli_usage("info", "info takes one file");
    const char *path = argv[1];
    enum kind k = detect(path);
    int rc;
    switch (k) {
    case KIND_DATASET: rc = info_dataset(path, &err); break;
    case KIND_CHECKPOINT:
    case KIND_KERAS: rc = info_model(path, k, &err); break;
    default: {
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

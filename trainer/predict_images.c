/* predict_images.c: `trainer predict --checkpoint C.h5 FILE... | DIR`: the top classes of image files, each
 * decoded and resized to the model's input as `import images` does. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "image.h"
#include "image_index.h"
#include "net.h"

#define PREDICT_BATCH 64

static const char usage_text[] =
    "usage: trainer predict --checkpoint C.h5 FILE|DIR ... [options]\n"
    "       trainer predict --checkpoint C.h5 --data D.h5 -o P.h5   (see below)\n\n"
    "Prints the top classes of each PNG or JPEG file (a folder: its .png/.jpg/.jpeg files, sorted), each\n"
    "decoded and resized to the model's input as `import images` does (color mode from its channels: 1\n"
    "grayscale, 3 rgb, 4 rgba), by the class names training stored in the checkpoint:\n"
    "  shoe.png: Sneaker 0.9312, Sandal 0.0544, Ankle boot 0.0101\n\n"
    "  --checkpoint F           checkpoint or Keras full-model HDF5 file (required)\n"
    "  --top K                  classes per file (default 3)\n"
    "  --interpolation I        bilinear (default), nearest or area\n"
    "  --crop-to-aspect-ratio   crop the centre to the input's aspect ratio before resizing\n"
    "  --threads T              threads (default: the cores, or OMP_NUM_THREADS)\n"
    "  --json                   one JSON object: {\"checkpoint\", \"files\": [{\"file\", \"top\": [{\"class\",\n"
    "                           \"index\", \"probability\"}]}]}\n"
    "  -h, --help               this help\n\n"
    "With --data, predict writes /probabilities float32 (N, classes) and /predictions int32 (N,) of a\n"
    "dataset to P.h5, on one rank or split across many:\n"
    "  --data F                 dataset, HDF5 (/labels is read but not used)\n"
    "  -o, --output F           output HDF5 file (replaced atomically)\n"
    "  --batch-size B           samples per rank per forward pass (default 256)\n"
    "  --tta flip               test-time augmentation: the mean of the probabilities of each image and its\n"
    "                           mirror\n";

struct predict_opts {
    const char *checkpoint;
    long top, threads;
    int json, crop;
    enum image_interpolation interpolation;
};

/* The files to predict: the arguments, folders expanded. */
struct file_list {
    char **v;
    int64_t n;
};

static void files_release(struct file_list *f)
{
    for (int64_t i = 0; i < f->n; i++)
        free(f->v[i]);
    free(f->v);
    *f = (struct file_list){0};
}

static int files_add(struct file_list *f, char **paths, int64_t n)
{
    char **v = realloc(f->v, sizeof *v * (f->n + n));
    if (!v)
        return -1;
    f->v = v;
    memcpy(f->v + f->n, paths, sizeof *paths * n);
    f->n += n;
    return 0;
}

static int collect_files(int argc, char **argv, struct file_list *f, struct error *err)
{
    for (int i = 0; i < argc; i++) {
        struct stat st;
        char **paths = NULL, *one;
        int64_t n = 0;
        int rc;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if ((rc = image_list_folder(argv[i], &paths, &n, err)))
                return rc;
        } else {
            if (!(one = strdup(argv[i])) || !(paths = malloc(sizeof *paths)))
                return free(one), error_set(err, ERR_INTERNAL, "out of memory");
            paths[0] = one;
            n = 1;
        }
        if (files_add(f, paths, n)) {
            for (int64_t k = 0; k < n; k++)
                free(paths[k]);
            free(paths);
            return error_set(err, ERR_INTERNAL, "out of memory");
        }
        free(paths);
    }
    return ERR_OK;
}

static int parse(int argc, char **argv, struct predict_opts *o)
{
    enum { OPT_CHECKPOINT = 256, OPT_TOP, OPT_INTERP, OPT_CROP, OPT_THREADS, OPT_JSON };
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, OPT_CHECKPOINT}, {"top", required_argument, 0, OPT_TOP},
        {"interpolation", required_argument, 0, OPT_INTERP},   {"crop-to-aspect-ratio", no_argument, 0, OPT_CROP},
        {"threads", required_argument, 0, OPT_THREADS},        {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, 'h'},                         {0, 0, 0, 0},
    };
    static const char *const interps[] = {"bilinear", "nearest", "area", NULL};
    int c, rc = 0;

    *o = (struct predict_opts){.top = 3, .interpolation = IMAGE_BILINEAR};
    while (rc == 0 && (c = cli_getopt("predict", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case OPT_CHECKPOINT: o->checkpoint = optarg; break;
        case OPT_TOP: rc = cli_long("predict", "--top", optarg, 1, 1000, &o->top); break;
        case OPT_THREADS: rc = cli_long("predict", "--threads", optarg, 1, 4096, &o->threads); break;
        case OPT_JSON: o->json = 1; break;
        case OPT_CROP: o->crop = 1; break;
        case OPT_INTERP: {
            int k = 0;
            while (interps[k] && strcmp(interps[k], optarg) != 0)
                k++;
            if (!interps[k])
                return cli_usage("predict", "--interpolation: unknown value '%s' (bilinear, nearest or area)",
                                 optarg);
            o->interpolation = k == 0 ? IMAGE_BILINEAR : k == 1 ? IMAGE_NEAREST : IMAGE_AREA;
            break;
        }
        case 'h': fputs(usage_text, stdout); return -1;
        default: return ERR_USAGE;
        }
    }
    if (rc)
        return rc;
    if (!o->checkpoint)
        return cli_usage("predict", "--checkpoint is required");
    if (cli_optind() >= argc)
        return cli_usage("predict", "predict needs image files or folders (or --data D.h5 -o P.h5)");
    return 0;
}

static int load_net(const char *path, struct net **net, struct error *err)
{
    struct model *m = malloc(sizeof *m);
    int rc;

    if (!m)
        return error_set(err, ERR_INTERNAL, "out of memory");
    rc = checkpoint_read_model(path, m, err);
    if (rc == ERR_OK)
        rc = net_create(net, m, err);
    free(m);
    if (rc == ERR_OK)
        rc = checkpoint_read_weights(path, *net, err);
    if (rc == ERR_OK) {
        int c = (*net)->model.layers[0].out.c;
        if (c != 1 && c != 3 && c != 4)
            rc = error_set(err, ERR_INPUT, "%s: the model takes %d channels; images give 1 (grayscale), 3 (rgb) "
                           "or 4 (rgba)", path, c);
    }
    return rc;
}

/* One file into out (h, w, c), resized as the importer does. */
static int prepare(const struct predict_opts *o, const char *path, int h, int w, int c, uint8_t *out,
                   struct error *err)
{
    struct image pic;
    int rc = image_read_file(path, c, &pic, err), y0 = 0, x0 = 0, ch, cw;
    float *scratch = NULL;

    if (rc)
        return rc;
    ch = pic.h;
    cw = pic.w;
    if (o->crop)
        image_crop_box(pic.h, pic.w, h, w, &y0, &x0, &ch, &cw);
    if (!(scratch = malloc(sizeof *scratch * h * w * c)))
        rc = error_set(err, ERR_INTERNAL, "out of memory");
    else
        image_resize(pic.pixels, pic.w, y0, x0, ch, cw, c, h, w, o->interpolation, scratch, out);
    free(scratch);
    image_release(&pic);
    return rc;
}

/* The k best classes of probs (n_classes,), best first (ties: the lower index). */
static void top_k(const float *probs, int n_classes, int k, int *best)
{
    for (int j = 0; j < k; j++) {
        int pick = -1;
        for (int i = 0; i < n_classes; i++) {
            int taken = 0;
            for (int q = 0; q < j; q++)
                taken |= best[q] == i;
            if (!taken && (pick < 0 || probs[i] > probs[pick]))
                pick = i;
        }
        best[j] = pick;
    }
}

struct printer {
    const struct predict_opts *o;
    char **names;
    int n_names, n_classes, k;
    json_t *files; /* --json */
};

static const char *name_of(const struct printer *p, int i, char *buf, size_t size)
{
    if (i < p->n_names)
        return p->names[i];
    snprintf(buf, size, "%d", i);
    return buf;
}

static void print_one(struct printer *p, const char *path, const float *probs)
{
    int best[1000];
    char buf[32];

    top_k(probs, p->n_classes, p->k, best);
    if (p->files) {
        json_t *top = json_array();
        for (int j = 0; j < p->k; j++)
            json_array_append_new(top, json_pack("{s:s, s:i, s:f}", "class", name_of(p, best[j], buf, sizeof buf),
                                                 "index", best[j], "probability", (double)probs[best[j]]));
        json_array_append_new(p->files, json_pack("{s:s, s:o}", "file", path, "top", top));
        return;
    }
    printf("%s:", path);
    for (int j = 0; j < p->k; j++)
        printf("%s %s %.4f", j ? "," : "", name_of(p, best[j], buf, sizeof buf), probs[best[j]]);
    putchar('\n');
}

/* Decodes a batch of files in parallel, runs the network, prints in file order. */
static int run(struct net *net, const struct file_list *files, struct printer *p, struct error *err)
{
    const struct shape *in = &net->model.layers[0].out;
    size_t sample = (size_t)in->h * in->w * in->c;
    uint8_t *images = malloc(sample * PREDICT_BATCH);
    float *probs = malloc(sizeof *probs * PREDICT_BATCH * p->n_classes);
    int64_t ids[PREDICT_BATCH];
    struct error errs[PREDICT_BATCH];
    int rc = images && probs ? ERR_OK : error_set(err, ERR_INTERNAL, "out of memory");

    for (int64_t first = 0; first < files->n && rc == ERR_OK; first += PREDICT_BATCH) {
        int n = files->n - first < PREDICT_BATCH ? (int)(files->n - first) : PREDICT_BATCH;
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            error_clear(&errs[i]);
            prepare(p->o, files->v[first + i], in->h, in->w, in->c, images + i * sample, &errs[i]);
        }
        for (int i = 0; i < n && rc == ERR_OK; i++) {
            ids[i] = first + i;
            if (errs[i].code)
                rc = (*err = errs[i]).code;
        }
        struct net_batch b = {n, images, NULL, ids, 0};
        if (rc == ERR_OK)
            rc = net_infer_batch(net, &b, probs, NULL, err);
        for (int i = 0; i < n && rc == ERR_OK; i++)
            print_one(p, files->v[first + i], probs + (size_t)i * p->n_classes);
    }
    free(images);
    free(probs);
    return rc;
}

int cmd_predict_images(int argc, char **argv)
{
    struct predict_opts o;
    struct file_list files = {0};
    struct printer p = {.o = &o};
    struct net *net = NULL;
    struct error err = {0};
    int rc = parse(argc, argv, &o);

    if (rc)
        return rc < 0 ? 0 : rc;
    cli_threads(o.threads);
    if ((rc = collect_files(argc - cli_optind(), argv + cli_optind(), &files, &err)) ||
        (rc = load_net(o.checkpoint, &net, &err)) ||
        (rc = checkpoint_read_class_names(o.checkpoint, &p.names, &p.n_names, &err)))
        goto done;
    p.n_classes = net->model.n_classes;
    p.k = o.top < p.n_classes ? (int)o.top : p.n_classes;
    if (o.json)
        p.files = json_array();
    rc = run(net, &files, &p, &err);
    if (rc == ERR_OK && o.json) {
        json_t *root = json_pack("{s:s, s:O}", "checkpoint", o.checkpoint, "files", p.files);
        json_dumpf(root, stdout, JSON_REAL_PRECISION(6));
        putchar('\n');
        json_decref(root);
    }
    if (rc == ERR_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = error_set(&err, ERR_IO, "cannot write the results to stdout");
done:
    if (rc)
        cli_print_error(&err);
    json_decref(p.files);
    checkpoint_free_class_names(p.names, p.n_names);
    net_destroy(net);
    files_release(&files);
    return rc;
}

/* cmd_import_images.c: `trainer import images DIR -o OUT.h5 ...`, a class-folder tree of PNG and JPEG files
 * to the HDF5 dataset, with the options and defaults of Keras's image_dataset_from_directory. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "import.h"
#include "progress.h"

static const char usage_text[] =
    "usage: trainer import images DIR -o OUT.h5 [--size H W] [--color-mode rgb|grayscale|rgba]\n"
    "         [--interpolation bilinear|nearest|area] [--crop-to-aspect-ratio]\n"
    "         [--val-split F --seed S --val-out VAL.h5] [--class-names a,b,c] [--threads T] [--skip-invalid]\n\n"
    "Reads DIR/CLASS/**/*.png|jpg|jpeg as Keras's image_dataset_from_directory: one class per sub-folder, in\n"
    "alphanumeric order (or as DIR/class_names.txt or --class-names give them), files sorted.\n\n"
    "  -o, --output F           the dataset to write (replaced atomically)\n"
    "  --size H W               resize every image to H x W (default: keep the size, which all must share)\n"
    "  --color-mode M           rgb (default), grayscale or rgba\n"
    "  --interpolation I        bilinear (default), nearest or area, as tf.image.resize\n"
    "  --crop-to-aspect-ratio   crop the centre to the H:W ratio before resizing (needs --size)\n"
    "  --val-split F            put Keras's validation fraction F of the files in --val-out (needs --seed)\n"
    "  --seed S                 the split's shuffle seed, as Keras's seed (0 to 4294967295)\n"
    "  --val-out F              the validation dataset\n"
    "  --class-names a,b,c      these classes, in this order (each a sub-folder of DIR)\n"
    "  --threads T              decoding threads (default: the cores, or OMP_NUM_THREADS)\n"
    "  --skip-invalid           skip (and count) files that cannot be read instead of stopping\n"
    "  -h, --help               this help\n";

#define MAX_NAMES 1000

struct import_args {
    struct import_images_opts o;
    char *names_buf;
    const char *names[MAX_NAMES];
    int have_seed;
    long threads;
};

static int parse_choice(const char *opt, const char *value, const char *const *choices, int *out)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(value, choices[i]) == 0)
            return *out = i, 0;
    const char *near = cli_closest(value, choices);
    if (near)
        return cli_usage("import", "%s: unknown value '%s' (did you mean '%s'?)", opt, value, near);
    return cli_usage("import", "%s: unknown value '%s'", opt, value);
}

static int parse_size(int argc, char **argv, struct import_args *a)
{
    long h, w;
    int next = cli_optind();

    if (next >= argc)
        return cli_usage("import", "--size takes two numbers: --size H W");
    if (cli_long("import", "--size", optarg, 1, 16384, &h) || cli_long("import", "--size", argv[next], 1, 16384, &w))
        return ERR_USAGE;
    optind = next + 1;
    a->o.size_h = (int)h;
    a->o.size_w = (int)w;
    return 0;
}

static int split_names(struct import_args *a, const char *list)
{
    free(a->names_buf);
    if (!(a->names_buf = strdup(list)))
        return ERR_INTERNAL;
    a->o.n_class_names = 0;
    for (char *tok = strtok(a->names_buf, ","); tok; tok = strtok(NULL, ",")) {
        if (a->o.n_class_names == MAX_NAMES)
            return cli_usage("import", "--class-names: more than %d names", MAX_NAMES);
        a->names[a->o.n_class_names++] = tok;
    }
    if (a->o.n_class_names == 0)
        return cli_usage("import", "--class-names: no name in '%s'", list);
    a->o.class_names = a->names;
    return 0;
}

static int parse_option(int c, int argc, char **argv, struct import_args *a)
{
    static const char *const modes[] = {"grayscale", "rgb", "rgba", NULL};
    static const char *const interps[] = {"bilinear", "nearest", "area", NULL};
    static const int channels[] = {1, 3, 4};
    long seed;
    int k;

    switch (c) {
    case 'o': a->o.out = optarg; return 0;
    case 's': return parse_size(argc, argv, a);
    case 'm': return parse_choice("--color-mode", optarg, modes, &k) ? ERR_USAGE : (a->o.channels = channels[k], 0);
    case 'i':
        if (parse_choice("--interpolation", optarg, interps, &k))
            return ERR_USAGE;
        a->o.interpolation = k == 0 ? IMAGE_BILINEAR : k == 1 ? IMAGE_NEAREST : IMAGE_AREA;
        return 0;
    case 'C': a->o.crop_to_aspect_ratio = 1; return 0;
    case 'v': return cli_double("import", "--val-split", optarg, 1e-9, 1 - 1e-9, &a->o.val_split);
    case 'e':
        if (cli_long("import", "--seed", optarg, 0, 4294967295L, &seed))
            return ERR_USAGE;
        a->o.seed = (uint32_t)seed;
        a->have_seed = 1;
        return 0;
    case 'V': a->o.val_out = optarg; return 0;
    case 'n': return split_names(a, optarg);
    case 't': return cli_long("import", "--threads", optarg, 1, 1024, &a->threads);
    case 'k': a->o.skip_invalid = 1; return 0;
    default: return ERR_USAGE;
    }
}

static int check_args(int argc, char **argv, struct import_args *a)
{
    if (cli_optind() >= argc)
        return cli_usage("import", "import images needs a folder: trainer import images DIR -o OUT.h5");
    if (cli_optind() + 1 < argc)
        return cli_usage("import", "unexpected argument '%s'", argv[cli_optind() + 1]);
    a->o.dir = argv[cli_optind()];
    if (!a->o.out)
        return cli_usage("import", "import images needs -o OUT.h5");
    if (a->o.crop_to_aspect_ratio && a->o.size_h == 0)
        return cli_usage("import", "--crop-to-aspect-ratio needs --size H W");
    if ((a->o.val_split > 0) != (a->o.val_out != NULL))
        return cli_usage("import", "--val-split and --val-out go together");
    if (a->o.val_split > 0 && !a->have_seed)
        return cli_usage("import", "--val-split needs --seed (as Keras: the same seed gives the same split)");
    if (a->o.val_out && strcmp(a->o.val_out, a->o.out) == 0)
        return cli_usage("import", "--val-out must differ from -o");
    return 0;
}

static void show_progress(void *ctx, int64_t done, int64_t total)
{
    struct progress *p = ctx;

    if (p->steps != total)
        progress_start(p, total, 0, omp_get_wtime());
    progress_update(p, done, NAN, 0, done / (omp_get_wtime() - p->t0 + 1e-9), omp_get_wtime());
}

static void print_summary(const struct import_args *a, const struct import_images_report *r, double seconds)
{
    printf("wrote %s: %lld images of %dx%dx%d, %d classes", a->o.out, (long long)r->n_train, r->h, r->w, r->c,
           r->n_classes);
    if (a->o.val_out)
        printf("; %s: %lld images", a->o.val_out, (long long)r->n_val);
    printf(" (%.0f images/s)", (double)(r->n_train + r->n_val + r->skipped) / (seconds > 0 ? seconds : 1e-9));
    if (r->skipped)
        printf("; skipped %lld invalid file%s (the first: %s)", (long long)r->skipped, r->skipped > 1 ? "s" : "",
               r->first_skipped);
    if (r->not_read)
        printf("; %lld .bmp/.gif file%s not read", (long long)r->not_read, r->not_read > 1 ? "s" : "");
    putchar('\n');
}

int cmd_import_images(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"size", required_argument, 0, 's'},
                                         {"color-mode", required_argument, 0, 'm'},
                                         {"interpolation", required_argument, 0, 'i'},
                                         {"crop-to-aspect-ratio", no_argument, 0, 'C'},
                                         {"val-split", required_argument, 0, 'v'},
                                         {"seed", required_argument, 0, 'e'},
                                         {"val-out", required_argument, 0, 'V'},
                                         {"class-names", required_argument, 0, 'n'},
                                         {"threads", required_argument, 0, 't'},
                                         {"skip-invalid", no_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct import_args a = {.o = {.channels = 3, .interpolation = IMAGE_BILINEAR}};
    struct import_images_report r;
    struct progress bar = {0};
    struct error err = {0};
    int c, rc = 0;

    while (rc == 0 && (c = cli_getopt("import", argc, argv, "o:h", opts)) != -1)
        rc = c == 'h' ? (fputs(usage_text, stdout), -1) : parse_option(c, argc, argv, &a);
    if (rc == 0)
        rc = check_args(argc, argv, &a);
    if (rc) {
        free(a.names_buf);
        return rc < 0 ? 0 : rc;
    }
    a.o.threads = cli_threads(a.threads);
    if (progress_bar_wanted()) {
        a.o.progress = show_progress;
        a.o.progress_ctx = &bar;
        bar.steps = -1;
    }
    double t0 = omp_get_wtime();
    rc = import_images(&a.o, &r, &err);
    progress_end(&bar);
    if (rc)
        cli_print_error(&err);
    else
        print_summary(&a, &r, omp_get_wtime() - t0);
    free(a.names_buf);
    return rc;
}

/* cmd_import.c: `trainer import idx|cifar10 ... -o OUT.h5`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "import.h"

static const char usage_text[] =
    "usage: trainer import idx --images IMAGES --labels LABELS -o OUT.h5 [--class-names NAMES]\n"
    "       trainer import cifar10 BATCH.bin [BATCH.bin ...] -o OUT.h5\n"
    "       trainer import images DIR -o OUT.h5 [options]   (see 'trainer import images --help')\n\n"
    "Converts a dataset to the trainer's HDF5 layout (/images uint8 (N, H, W, C), /labels, class_names).\n\n"
    "  --images F        IDX image file (MNIST / Fashion-MNIST format), plain or .gz\n"
    "  --labels F        IDX label file, plain or .gz\n"
    "  -o, --output F    the HDF5 file to write (replaced atomically)\n"
    "  --class-names N   fashion-mnist, mnist, or a comma-separated list\n"
    "                    (default: fashion-mnist when a path contains 'fashion', else mnist)\n"
    "  -h, --help        this help\n";

#define MAX_NAMES 256

/* Whether s contains "fashion", ignoring case (how Fashion-MNIST files are recognised). */
static int mentions_fashion(const char *s)
{
    for (; *s; s++) {
        const char *a = s, *b = "fashion";
        while (*b && (*a | 0x20) == *b)
            a++, b++;
        if (!*b)
            return 1;
    }
    return 0;
}

/* Splits "a,b,c" into names (pointers into buf). */
static int split_names(char *buf, const char **names)
{
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < MAX_NAMES; tok = strtok(NULL, ","))
        names[n++] = tok;
    return n;
}

/* Debian's dataset-fashion-mnist installs the IDX files under /usr/share/datasets/fashion-mnist/: when that
 * directory is missing, the error says which package to install. */
static void missing_package_hint(struct error *err, const char *images, const char *labels)
{
    static const char dir[] = "/usr/share/datasets/fashion-mnist/";
    if ((strncmp(images, dir, sizeof dir - 1) == 0 || strncmp(labels, dir, sizeof dir - 1) == 0) &&
        access(dir, F_OK) != 0) {
        size_t len = strlen(err->msg);
        snprintf(err->msg + len, sizeof err->msg - len, " (install Debian's package dataset-fashion-mnist)");
    }
}

static int import_idx_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"images", required_argument, 0, 'i'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"output", required_argument, 0, 'o'},
                                         {"class-names", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *images = NULL, *labels = NULL, *out = NULL, *classes = NULL;
    int c;
    while ((c = cli_getopt("import", argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case 'i': images = optarg; break;
        case 'l': labels = optarg; break;
        case 'o': out = optarg; break;
        case 'c': classes = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return ERR_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("import", "unexpected argument '%s'", argv[optind]);
    if (!images || !labels || !out)
        return cli_usage("import", "import idx needs --images, --labels and -o");
    const char *const *names = import_mnist_names;
    const char *custom[MAX_NAMES];
    char buf[4096];
    int n_names = 10;
    if (!classes)
        classes = (mentions_fashion(images) || mentions_fashion(labels)) ? "fashion-mnist" : "mnist";
    if (strcmp(classes, "fashion-mnist") == 0)
        names = import_fashion_mnist_names;
    else if (strcmp(classes, "none") == 0)
        n_names = 0;
    else if (strcmp(classes, "mnist") != 0) {
        snprintf(buf, sizeof buf, "%s", classes);
        n_names = split_names(buf, custom);
        names = custom;
    }
    struct error err = {0};
    int64_t n = 0;
    if (import_idx(images, labels, out, names, n_names, &n, &err)) {
        missing_package_hint(&err, images, labels);
        cli_print_error(&err);
        return err.code;
    }
    printf("wrote %s: %lld images\n", out, (long long)n);
    return 0;
}

static int import_cifar_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    int c;
    while ((c = cli_getopt("import", argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return ERR_USAGE;
        }
    }
    if (!out || optind >= argc)
        return cli_usage("import", "import cifar10 needs one or more batch files and -o");
    struct error err = {0};
    int64_t n = 0;
    if (import_cifar10((const char *const *)argv + optind, argc - optind, out, &n, &err)) {
        cli_print_error(&err);
        return err.code;
    }
    printf("wrote %s: %lld images\n", out, (long long)n);
    return 0;
}

int cmd_import(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("import", "import needs a format: idx, cifar10 or images");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(argv[1], "idx") == 0)
        return import_idx_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "cifar10") == 0)
        return import_cifar_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "images") == 0)
        return cmd_import_images(argc - 1, argv + 1);
    static const char *const formats[] = {"idx", "cifar10", "images", NULL};
    const char *near = cli_closest(argv[1], formats);
    if (argv[1][0] == '-')
        return cli_usage("import", "the format comes first: 'trainer import idx --images ...' or "
                                   "'trainer import cifar10 FILE.bin ... -o OUT.h5'");
    if (near)
        return cli_usage("import", "unknown format '%s' (did you mean '%s'?)", argv[1], near);
    return cli_usage("import", "unknown format '%s' (expected idx, cifar10 or images)", argv[1]);
}

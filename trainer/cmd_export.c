/* cmd_export.c: `trainer export KIND ...`: a checkpoint as an ONNX model (onnx: cmd_export_onnx.c), or a dataset
 * written out in another form (images: a class-folder tree of PNG files that `import images` reads back to the same
 * bytes). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "import.h"

static const char usage_text[] =
    "usage: trainer export onnx C.h5 -o MODEL.onnx [options]   (trainer export onnx --help)\n"
    "       trainer export images DATA.h5 -o DIR\n\n"
    "Writes every sample of DATA.h5 as DIR/CLASS/NNNNN.png (CLASS: the class name, with '/' as %2F, or the\n"
    "label number when the file has no class names; NNNNN: the sample's index) and the class names, in order,\n"
    "to DIR/class_names.txt. DIR must not exist or be empty; it is written whole or not at all.\n"
    "`trainer import images DIR -o D.h5` gives back the same /images, /labels and class_names when DATA.h5 is\n"
    "in class order (else the same samples grouped by class, each class in its order).\n\n"
    "  -o, --output DIR   the folder to write\n"
    "  -h, --help         this help\n";

static int export_images_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    int c;

    while ((c = cli_getopt("export", argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return ERR_USAGE;
        }
    }
    if (cli_optind() >= argc || !out)
        return cli_usage("export", "export images needs a dataset and -o DIR");
    if (cli_optind() + 1 < argc)
        return cli_usage("export", "unexpected argument '%s'", argv[cli_optind() + 1]);
    struct error err = {0};
    int64_t n = 0;
    if (export_images(argv[cli_optind()], out, &n, &err)) {
        cli_print_error(&err);
        return err.code;
    }
    printf("wrote %s: %lld PNG files\n", out, (long long)n);
    return 0;
}

int cmd_export(int argc, char **argv)
{
    static const char *const kinds[] = {"onnx", "images", NULL};

    if (argc < 2)
        return cli_usage("export", "export needs a kind: onnx or images");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(argv[1], "images") == 0)
        return export_images_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "onnx") == 0)
        return cmd_export_onnx(argc - 1, argv + 1);
    const char *near = cli_closest(argv[1], kinds);
    if (near)
        return cli_usage("export", "unknown kind '%s' (did you mean '%s'?)", argv[1], near);
    return cli_usage("export", "unknown kind '%s' (expected onnx or images)", argv[1]);
}

/* cmd_export_onnx.c: `trainer export onnx C.h5 -o MODEL.onnx`: a checkpoint or Keras model file as ONNX. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "net.h"
#include "onnx_export.h"

static const char usage_text[] =
    "usage: trainer export onnx C.h5 -o MODEL.onnx [options]\n\n"
    "Writes the model of a checkpoint (or of a Keras model file) with its weights as an ONNX model, for\n"
    "OpenCV's dnn module and other ONNX runtimes: input `images` (N, H, W, C) as in Keras, output\n"
    "`probabilities` (N, classes). Dropout and augmentation layers are left out (the identity at inference).\n\n"
    "  -o, --output F      the ONNX file to write (required; replaced atomically)\n"
    "  --opset N           ONNX opset, 11 to 17 (default 13)\n"
    "  --batch N|dynamic   batch size of the graph: a number, or dynamic (default; the dimension is named N)\n"
    "  --input float|uint8 float: pixels already scaled to [0, 1] (default); uint8: the raw bytes, scaled\n"
    "                      by 1/255 inside the graph\n"
    "  -h, --help          this help\n";

struct export_opts {
    const char *checkpoint, *output;
    struct onnx_export_opts onnx;
};

enum { OPT_OPSET = 256, OPT_BATCH, OPT_INPUT };

static int parse(int argc, char **argv, struct export_opts *o)
{
    static const char cmd[] = "export onnx";
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},  {"opset", required_argument, 0, OPT_OPSET},
        {"batch", required_argument, 0, OPT_BATCH}, {"input", required_argument, 0, OPT_INPUT},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    static const char *const inputs[] = {"float", "uint8", NULL};
    long v;
    int c, rc = 0;
    memset(o, 0, sizeof *o);
    o->onnx.opset = ONNX_OPSET_DEFAULT;
    while (rc == 0 && (c = cli_getopt(cmd, argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case OPT_OPSET:
            if ((rc = cli_long(cmd, "--opset", optarg, 1, 1000, &v)) == 0 &&
                (v < ONNX_OPSET_MIN || v > ONNX_OPSET_MAX))
                return cli_usage(cmd, "--opset %ld: the export writes opsets %d to %d", v, ONNX_OPSET_MIN,
                                 ONNX_OPSET_MAX);
            o->onnx.opset = (int)v;
            break;
        case OPT_BATCH:
            if (strcmp(optarg, "dynamic") == 0)
                o->onnx.batch = 0;
            else if ((rc = cli_long(cmd, "--batch", optarg, 1, 1 << 20, &v)) == 0)
                o->onnx.batch = (int)v;
            break;
        case OPT_INPUT:
            if (strcmp(optarg, "float") != 0 && strcmp(optarg, "uint8") != 0) {
                const char *near = cli_closest(optarg, inputs);
                return cli_usage(cmd, "--input '%s': float or uint8%s%s%s", optarg, near ? " (did you mean '" : "",
                                 near ? near : "", near ? "'?)" : "");
            }
            o->onnx.uint8_input = strcmp(optarg, "uint8") == 0;
            break;
        case 'h': fputs(usage_text, stdout); return -1;
        default: return ERR_USAGE;
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        o->checkpoint = argv[optind++];
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s' (one checkpoint: trainer export onnx C.h5 -o M.onnx)",
                         argv[optind]);
    if (!o->checkpoint || !o->output)
        return cli_usage(cmd, "a checkpoint and -o are required: trainer export onnx C.h5 -o MODEL.onnx");
    return 0;
}

/* The checkpoint's model and weights, as eval and predict read them. */
static int load(const char *path, struct net **net, struct error *err)
{
    struct model *m = malloc(sizeof *m);
    if (!m)
        return error_set(err, ERR_INTERNAL, "out of memory");
    int rc = checkpoint_read_model(path, m, err);
    if (!rc)
        rc = net_create(net, m, err);
    free(m);
    if (!rc)
        rc = checkpoint_read_weights(path, *net, err);
    return rc;
}

int cmd_export_onnx(int argc, char **argv)
{
    struct export_opts o;
    struct error err = {0};
    struct net *net = NULL;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    char **names = NULL;
    int n_names = 0;
    rc = load(o.checkpoint, &net, &err);
    /* The training dataset's class names, when the checkpoint carries them, go to the model's metadata. */
    if (!rc)
        rc = checkpoint_read_class_names(o.checkpoint, &names, &n_names, &err);
    if (!rc)
        rc = onnx_export(o.output, &net->model, net->params, &o.onnx, (const char *const *)names, n_names,
                         o.checkpoint, &err);
    checkpoint_free_class_names(names, n_names);
    if (!rc) {
        const struct shape *in = &net->model.layers[0].out;
        char n[16] = "N";
        if (o.onnx.batch)
            snprintf(n, sizeof n, "%d", o.onnx.batch);
        printf("wrote %s: opset %d, images %s (%s, %d, %d, %d), probabilities (%s, %d)\n", o.output,
               o.onnx.opset, o.onnx.uint8_input ? "uint8" : "float", n, in->h, in->w, in->c, n,
               net->model.n_classes);
    }
    net_destroy(net);
    if (rc)
        cli_print_error(&err);
    return rc;
}

/* test_predict_images.c: `predict` on image files: the probabilities it prints are the network's on the image
 * decoded and resized as the importer does, and a model whose input channels no color mode gives is refused. */
#define _GNU_SOURCE /* mkdtemp */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "commands.h"
#include "image.h"
#include "model.h"
#include "net.h"

static char dir[64];

static void in_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

/* A checkpoint of the model in `text`, weights as initialised from the seed. */
static struct net *write_model(const char *text, const char *path)
{
    struct model m;
    struct net *net;
    struct error err = {0};
    if (model_parse(&m, text, "test", &err) || net_create(&net, &m, &err) ||
        checkpoint_write(path, net, NULL, NULL, &err))
        fail_msg("%s", err.msg);
    return net;
}

/* Runs `trainer predict ARGS` with stdout into out_path; returns its exit code. */
static int run_predict(const char *out_path, int argc, char **argv)
{
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(out_path, "w");
    assert_non_null(f);
    dup2(fileno(f), 1);
    optind = 0; /* getopt_long starts over */
    int rc = cmd_predict(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(f);
    return rc;
}

static void test_probabilities(void **state)
{
    (void)state;
    char ck[128], png[128], out[128];
    uint8_t px[9 * 7 * 3];
    struct error err;
    in_dir(ck, sizeof ck, "rgb.h5");
    in_dir(png, sizeof png, "x.png");
    in_dir(out, sizeof out, "out.txt");
    struct net *net = write_model("Input(shape=(5, 4, 3))\nFlatten()\nDense(3, activation='softmax')\n", ck);
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 29 % 256);
    assert_int_equal(image_write_png(png, px, 9, 7, 3, &err), 0);

    char *argv[] = {"predict", "--checkpoint", ck, "--top", "3", png, NULL};
    assert_int_equal(run_predict(out, 6, argv), 0);

    /* The reference: the same file resized here, through the network directly. */
    uint8_t small[5 * 4 * 3];
    float scratch[5 * 4 * 3], probs[3];
    int64_t id = 0;
    struct image im;
    assert_int_equal(image_read_file(png, 3, &im, &err), 0);
    image_resize(im.pixels, im.w, 0, 0, im.h, im.w, 3, 5, 4, IMAGE_BILINEAR, scratch, small);
    image_release(&im);
    struct net_batch b = {1, small, NULL, &id, 0};
    assert_int_equal(net_infer_batch(net, &b, probs, NULL, &err), 0);

    char line[512], want[512];
    FILE *f = fopen(out, "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    int order[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (probs[order[j]] > probs[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    snprintf(want, sizeof want, "%s: %d %.4f, %d %.4f, %d %.4f\n", png, order[0], probs[order[0]], order[1],
             probs[order[1]], order[2], probs[order[2]]);
    assert_string_equal(line, want);
    net_destroy(net);
}

static void test_channels_refused(void **state)
{
    (void)state;
    char ck[128], png[128], out[128];
    struct error err;
    uint8_t px[16] = {0};
    in_dir(ck, sizeof ck, "two.h5");
    in_dir(png, sizeof png, "g.png");
    in_dir(out, sizeof out, "out2.txt");
    net_destroy(write_model("Input(shape=(4, 4, 2))\nFlatten()\nDense(2, activation='softmax')\n", ck));
    assert_int_equal(image_write_png(png, px, 4, 4, 1, &err), 0);
    char *argv[] = {"predict", "--checkpoint", ck, png, NULL};
    assert_int_equal(run_predict(out, 4, argv), ERR_INPUT);
    /* Nothing printed for the file. */
    FILE *f = fopen(out, "r");
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_predict_images_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probabilities),
        cmocka_unit_test(test_channels_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

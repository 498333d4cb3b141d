/* fuzz_checkpoint.c: the checkpoint readers (trainer/checkpoint_read.c) on any file: the model, then the
 * weights into a network of that model, then the training state and the optimizer slots. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A model of more parameters is legal but only slows the fuzzer down. */
#define MAX_FUZZ_PARAMS (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct model m;
    struct error err = {0};
    struct checkpoint_state st;
    const char *path = fuzz_file(data, size);
    if (checkpoint_read_model(path, &m, &err) == ERR_OK && m.n_params <= MAX_FUZZ_PARAMS) {
        struct net *net = NULL;
        if (net_create(&net, &m, &err) == ERR_OK)
            checkpoint_read_weights(path, net, &err);
        if (net && checkpoint_read_state(path, NULL, &st, &err) == ERR_OK) {
            struct optim opt;
            if (optim_init(&opt, &st.optim, net->n_params, &err) == ERR_OK) {
                checkpoint_read_state(path, &opt, &st, &err);
                optim_release(&opt);
            }
        }
        net_destroy(net);
    }
    /* The state alone, as `info` reads it, whatever the model. */
    checkpoint_read_state(path, NULL, &st, &err);
    fuzz_check_hdf5_closed();
    return 0;
}

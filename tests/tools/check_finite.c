/* check_finite.c: `check_finite C.h5`: exit 0 when every weight of the checkpoint, and every optimizer slot
 * when it has them, is finite; 1 when one is not (NaN or infinity); 2 when the file cannot be read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"

static size_t count_bad(const float *x, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !isfinite(x[i]);
    return bad;
}

int main(int argc, char **argv)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    struct checkpoint_state st;
    struct optim opt = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: check_finite C.h5\n");
        return 2;
    }
    if (checkpoint_read_model(argv[1], &m, &err) || net_create(&net, &m, &err) ||
        checkpoint_read_weights(argv[1], net, &err)) {
        fprintf(stderr, "check_finite: %s\n", err.msg);
        return 2;
    }
    size_t bad = count_bad(net->params, net->n_params), slots = 0;
    /* The optimizer's state, when the file has one (a weights-only file has none). */
    if (checkpoint_read_state(argv[1], NULL, &st, &err) == ERR_OK) {
        if (optim_init(&opt, &st.optim, net->n_params, &err) || checkpoint_read_state(argv[1], &opt, &st, &err)) {
            fprintf(stderr, "check_finite: %s\n", err.msg);
            return 2;
        }
        slots = (size_t)opt.n_slots * opt.n;
        bad += count_bad(opt.slots, slots);
        optim_release(&opt);
    }
    printf("%zu weights, %zu optimizer slots: %zu not finite\n", net->n_params, slots, bad);
    net_destroy(net);
    return bad ? 1 : 0;
}

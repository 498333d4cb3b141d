/* compare_weights.c: `compare_weights A.h5 B.h5 TOL`: exit 0 when the weights of two checkpoints of the same
 * model agree to TOL relative (max |a - b| over max |b|), 1 when not; prints the difference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"

static struct net *load(const char *path)
{
    static struct model m;
    struct error err = {0};
    struct net *net = NULL;
    if (checkpoint_read_model(path, &m, &err) || net_create(&net, &m, &err) ||
        checkpoint_read_weights(path, net, &err)) {
        fprintf(stderr, "compare_weights: %s\n", err.msg);
        exit(2);
    }
    return net;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: compare_weights A.h5 B.h5 TOL\n");
        return 2;
    }
    struct net *a = load(argv[1]), *b = load(argv[2]);
    double tol = atof(argv[3]), diff = 0, norm = 0;
    if (a->n_params != b->n_params) {
        fprintf(stderr, "compare_weights: %zu vs %zu parameters\n", a->n_params, b->n_params);
        return 1;
    }
    for (size_t i = 0; i < a->n_params; i++) {
        double d = fabs((double)a->params[i] - b->params[i]);
        diff = d > diff || isnan(d) ? d : diff;
        norm = fabs(b->params[i]) > norm ? fabs(b->params[i]) : norm;
    }
    double rel = norm > 0 ? diff / norm : diff;
    printf("max |a-b| = %g, max |b| = %g, relative %g (tolerance %g)\n", diff, norm, rel, tol);
    net_destroy(a);
    net_destroy(b);
    return rel <= tol && !isnan(rel) ? 0 : 1;
}

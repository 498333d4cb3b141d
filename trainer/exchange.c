/* exchange.c: the gradient exchange and the sharded update (see exchange.h). */
#include "exchange.h"

#include <stdlib.h>
#include <string.h>

#include "dist.h"

enum mode { MODE_NONE, MODE_MESSAGES, MODE_SHARED };

/* More ranks than this on one node exchange by messages (the node sum keeps a block per rank pair). */
#define NODE_MAX_RANKS 64

/* One training run per process: the exchange's state is the process's. */
static struct {
    enum mode mode;
    /* MODE_SHARED: the node's gradient slabs, this rank's own memory to give back at detach. */
    float **grads_of;                       /* (node ranks,) each rank's gradient slab, then its flag */
    int node_rank, node_size;
    float *own_params, *own_grads, *own_slots;
} ex;

/* The per-rank part of the node-shared memory: the gradient slab with its tail, then one float, the rank's
 * "my shard's sum is not finite" flag, padded to a cache line. */
static size_t grads_floats(const struct net *net) { return net->n_params + NET_GRAD_TAIL + 16; }

int exchange_check_env(struct error *err)
{
    const char *want = getenv("TRAINER_EXCHANGE");
    if (!want || strcmp(want, "auto") == 0 || strcmp(want, "messages") == 0)
        return ERR_OK;
    return error_set(err, ERR_USAGE, "TRAINER_EXCHANGE must be auto or messages, not '%s'", want);
}

const char *exchange_attach(struct net *net, struct optim *opt)
{
    const char *want = getenv("TRAINER_EXCHANGE");
    ex.mode = dist_size() > 1 ? MODE_MESSAGES : MODE_NONE;
    if (ex.mode == MODE_NONE)
        return "none";
    size_t n = net->n_params, slots = (size_t)opt->n_slots * n;
    void *shared, **own;
    /* Every rank asks (the set-up is collective), so the variable must be the same on all of them. */
    int ask = !want || strcmp(want, "messages") != 0;
    if (!ask || dist_local_size() > 2 * NODE_MAX_RANKS ||
        dist_node_share((n + slots) * sizeof(float), grads_floats(net) * sizeof(float), &shared, &own))
        return "messages";
    ex.mode = MODE_SHARED;
    ex.grads_of = (float **)own;
    ex.node_rank = dist_node_rank();
    ex.node_size = dist_local_size();
    float *sp = shared, *ss = sp + n;
    /* Every rank holds the same values (the same seed or file): node rank 0's go into the shared copy. */
    if (ex.node_rank == 0) {
        memcpy(sp, net->params, n * sizeof(float));
        memcpy(ss, opt->slots, slots * sizeof(float));
    }
    dist_node_barrier();
    ex.own_params = net->params;
    ex.own_grads = net->grads;
    ex.own_slots = opt->slots;
    net_set_slabs(net, sp, ex.grads_of[ex.node_rank]);
    opt->slots = ss;
    return "shared";
}

void exchange_detach(struct net *net, struct optim *opt)
{
    if (ex.mode == MODE_SHARED) {
        memcpy(ex.own_params, net->params, net->n_params * sizeof(float));
        memcpy(ex.own_slots, opt->slots, (size_t)opt->n_slots * opt->n * sizeof(float));
        net_set_slabs(net, ex.own_params, ex.own_grads);
        opt->slots = ex.own_slots;
        free(ex.grads_of);
        ex.grads_of = NULL;
    }
    ex.mode = MODE_NONE;
}

/* This rank's shard: node rank k of every node owns shard k of the node's ranks. */
static void node_shard(size_t n, int k, int parts, size_t *lo, size_t *hi)
{
    size_t per = ((n + (size_t)parts - 1) / (size_t)parts + 15) & ~(size_t)15;
    *lo = per * (size_t)k < n ? per * (size_t)k : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* dst[0, len) = the sum over the node's ranks r of grads_of[r][lo, lo + len), as a pairwise tree in node-rank
 * order: ((g0 + g1) + (g2 + g3)) + ..., an odd one out carried up a level. That is the order in which an
 * all-reduce by recursive doubling adds, and the order the node sums then the sum across nodes take when each
 * node holds consecutive ranks: 4 ranks on one node and 2 x 2 on two nodes give the same bits. dst may be one
 * of the slabs (this rank's own): each element is read before it is written. Blocks of NODE_BLOCK elements,
 * so the tree's partial sums stay in the first-level cache. */
#define NODE_BLOCK 512
static void node_sum(float *dst, size_t lo, size_t len)
{
    float part[NODE_MAX_RANKS][NODE_BLOCK];
    for (size_t b = 0; b < len; b += NODE_BLOCK) {
        size_t m = len - b < NODE_BLOCK ? len - b : NODE_BLOCK;
        int k = 0;
        /* Level 1 straight from the slabs. */
        for (int r = 0; r < ex.node_size; r += 2, k++) {
            const float *restrict g0 = ex.grads_of[r] + lo + b;
            float *restrict out = part[k];
            if (r + 1 < ex.node_size) {
                const float *restrict g1 = ex.grads_of[r + 1] + lo + b;
#pragma omp simd
                for (size_t i = 0; i < m; i++)
                    out[i] = g0[i] + g1[i];
            } else {
                memcpy(out, g0, m * sizeof(float));
            }
        }
        for (int have = k; have > 1; have = k) {
            k = 0;
            for (int j = 0; j < have; j += 2, k++) {
                float *out = part[k]; /* may be part[j] itself: element i is read, then written */
                if (j + 1 < have) {
                    const float *a = part[j], *c = part[j + 1];
#pragma omp simd
                    for (size_t i = 0; i < m; i++)
                        out[i] = a[i] + c[i];
                } else if (k != j) {
                    memcpy(out, part[j], m * sizeof(float));
                }
            }
        }
        memcpy(dst + b, part[0], m * sizeof(float));
    }
}

static void shared_gradients(struct net *net, struct exchange *x)
{
    size_t n = net->n_params, len;
    float *mine = ex.grads_of[ex.node_rank], tail[NET_GRAD_TAIL] = {0};
    node_shard(n, ex.node_rank, ex.node_size, &x->lo, &x->hi);
    len = x->hi - x->lo;
    dist_node_barrier(); /* A: every gradient slab of the node is written */
    /* The shard's sum, into this rank's own slab (the others read only their own shards of it). */
    float *acc = mine + x->lo;
    node_sum(acc, x->lo, len);
    /* Every rank sums all the tails in the same order: the same numbers everywhere. */
    for (int r = 0; r < ex.node_size; r++)
        for (int t = 0; t < NET_GRAD_TAIL; t++)
            tail[t] += ex.grads_of[r][n + t];
    dist_cross_allreduce_sum_f32(acc, len);
    dist_cross_allreduce_sum_f32(tail, NET_GRAD_TAIL);
    mine[n + NET_GRAD_TAIL] = !optim_all_finite(acc, len);
    dist_node_barrier(); /* B: every shard summed and its flag set; every tail read */
    tail[TAIL_NONFINITE] = 0;
    for (int r = 0; r < ex.node_size; r++)
        tail[TAIL_NONFINITE] += ex.grads_of[r][n + NET_GRAD_TAIL];
    memcpy(mine + n, tail, sizeof tail);
    x->shard = acc;
}

void exchange_gradients(struct net *net, struct exchange *x)
{
    float *tail = net->grads + net->n_params;
    if (ex.mode == MODE_SHARED) {
        shared_gradients(net, x);
        return;
    }
    const float *shard;
    dist_shard(net->n_params, &x->lo, &x->hi);
    dist_reduce_scatter_sum_f32(net->grads, net->n_params, &shard);
    x->shard = net->grads + x->lo; /* = shard (dist.h), without its const: the step scales it in place */
    tail[TAIL_NONFINITE] = !optim_all_finite(x->shard, x->hi - x->lo);
    dist_allreduce_sum_f32(tail, NET_GRAD_TAIL);
}

double exchange_update(struct net *net, struct optim *opt, const struct exchange *x)
{
    optim_step_range(opt, net->params, x->shard, x->lo, x->hi);
    double t0 = dist_wtime();
    if (ex.mode == MODE_SHARED)
        dist_node_barrier(); /* C: the parameters are whole before anyone's next forward pass */
    else
        dist_allgather_f32(net->params, net->n_params);
    return dist_wtime() - t0;
}

void exchange_sum_shards(const struct exchange *x, const double *part, double *out, int count)
{
    int size = dist_size();
    if (size == 1) {
        memcpy(out, part, sizeof(double) * (size_t)count);
        return;
    }
    /* [lo, part...] of every rank. */
    double *mine = malloc(sizeof(double) * (size_t)(count + 1));
    double *all = malloc(sizeof(double) * (size_t)(count + 1) * (size_t)size);
    int *order = malloc(sizeof(int) * (size_t)size);
    if (!mine || !all || !order)
        dist_abort(1); /* a few KiB: out of memory here leaves no way to agree on anything */
    mine[0] = (double)x->lo;
    memcpy(mine + 1, part, sizeof(double) * (size_t)count);
    dist_allgather_f64(mine, count + 1, all);
    /* Ranks by shard start (insertion sort: a few ranks), ties by rank; a repeated start is the same shard on
     * another node, or an empty shard at the end: counted once. */
    for (int r = 0; r < size; r++) {
        int k = r;
        while (k > 0 && all[(size_t)order[k - 1] * (size_t)(count + 1)] > all[(size_t)r * (size_t)(count + 1)]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = r;
    }
    memset(out, 0, sizeof(double) * (size_t)count);
    for (int i = 0; i < size; i++) {
        const double *p = all + (size_t)order[i] * (size_t)(count + 1);
        if (i > 0 && all[(size_t)order[i - 1] * (size_t)(count + 1)] == p[0])
            continue;
        for (int k = 0; k < count; k++)
            out[k] += p[1 + k];
    }
    free(mine);
    free(all);
    free(order);
}

void exchange_sync_optimizer(struct net *net, struct optim *opt)
{
    if (ex.mode != MODE_MESSAGES)
        return;
    for (int s = 0; s < opt->n_slots; s++)
        dist_allgather_f32(opt->slots + (size_t)s * opt->n, net->n_params);
}

void exchange_set_params(struct net *net, const float *src)
{
    if (ex.mode == MODE_SHARED) {
        dist_node_barrier(); /* nobody still reads the old ones */
        if (ex.node_rank == 0)
            memcpy(net->params, src, net->n_params * sizeof(float));
        dist_node_barrier();
    } else {
        memcpy(net->params, src, net->n_params * sizeof(float));
    }
}

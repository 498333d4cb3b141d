/* exchange.h: the part of a training step that crosses ranks, as `train` and `bench` both run it. Each rank
 * has its share's gradient in net->grads and its statistics in the tail after it; the slab of parameters is
 * cut into one shard per rank (per node rank, across nodes), and each rank updates its own shard only: with
 * one thread per rank, a full update on every rank took as long as the all-reduce itself.
 *
 * Two ways, chosen by exchange_attach:
 *  - node-shared (the default when every node runs the same number of ranks, more than one): the parameters
 *    and the optimizer's slots live once per node in shared memory, and each rank's gradients where its node's
 *    other ranks can read them. A step is three barriers of the node's ranks: each rank sums its shard over the
 *    node's gradient slabs (and over the nodes, by an all-reduce of that shard among the ranks of the same
 *    node rank), updates its shard of the shared parameters, and no message carries a parameter within a node.
 *  - messages (one rank per node, or TRAINER_EXCHANGE=messages): a reduce-scatter of the gradients, the update
 *    of this rank's shard, an all-gather of the parameters.
 * Either way the sums and the elementwise update are the same: the weights are those one all-reduce and a full
 * update on every rank would give (bit for bit on one node or with one rank per node; across nodes the order
 * of the sum follows the nodes, within 1e-6). */
#ifndef TRAINER_EXCHANGE_H
#define TRAINER_EXCHANGE_H

#include <stddef.h>

#include "error.h"
#include "net.h"
#include "optim.h"

/* The tail of the gradient slab (NET_GRAD_TAIL floats), summed over ranks with the gradients. */
enum { TAIL_LOSS, TAIL_CORRECT, TAIL_ERROR, TAIL_STOP, TAIL_NONFINITE };

struct exchange {
    float *shard; /* (hi - lo,) the summed gradients of this rank's shard [lo, hi) of the parameters */
    size_t lo, hi;
};

/* TRAINER_EXCHANGE: unset, "auto" (node-shared memory where possible) or "messages". Anything else is a
 * usage error naming the variable. */
int exchange_check_env(struct error *err);

/* Collective, once the weights and the optimizer are set up (initialised, loaded or resumed) and the same on
 * every rank: moves net's parameters and gradients and opt's slots into node-shared memory when that way is
 * taken (see above). From here until exchange_detach, net->params and opt->slots may be shared with the node's
 * other ranks: read them freely, write them only through exchange_update. Returns "shared" or "messages"
 * (or "none": one rank) for the set-up line. */
const char *exchange_attach(struct net *net, struct optim *opt);

/* Gives net and opt back memory of their own, holding the current values (so they can be freed as usual).
 * Not collective: call it when every rank is done with steps (after the loop, on any exit path). */
void exchange_detach(struct net *net, struct optim *opt);

/* Sums the gradients and the tail of every rank, with tail[TAIL_NONFINITE] counting the shards whose sum has
 * a NaN or an infinity: after it the tail is the same on every rank, so all take the same decision (an error,
 * divergence, a stop) before any update. */
void exchange_gradients(struct net *net, struct exchange *x);

/* The optimizer step on this rank's shard; then every rank has all the new parameters. Returns the seconds
 * spent on making them whole (the all-gather, or the node's barrier), for the bench. */
double exchange_update(struct net *net, struct optim *opt, const struct exchange *x);

/* Collective. out[0, count) = the sum over the slab's shards of the `part` each rank computed over its own
 * shard, with the same bits on every rank: every rank gathers all parts and adds them in shard order, and a
 * shard held on every node (node-shared memory) counts once. For what needs a whole tensor of the summed
 * gradient (its norm, for clipping and LARS). */
void exchange_sum_shards(const struct exchange *x, const double *part, double *out, int count);

/* For a checkpoint: makes the optimizer's slots whole on every rank (with messages each rank updates its
 * shard's only; node-shared slots are whole already). Collective. */
void exchange_sync_optimizer(struct net *net, struct optim *opt);

/* Collective: every rank's net->params become src (n_params,), the same on every rank (EarlyStopping's best
 * weights): written once per node when the parameters are node-shared. */
void exchange_set_params(struct net *net, const float *src);

#endif

/* dist.h: everything the trainer does across ranks. This module is the only one that includes mpi.h. */
#ifndef TRAINER_DIST_H
#define TRAINER_DIST_H

#include <stddef.h>

/* MPI_Init (a singleton without a launcher: a laptop run needs no mpirun). Returns 0 or an exit code. */
int dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* Ranks of this job on this node (for the default thread count). */
int dist_local_size(void);

/* In-place sum over ranks. */
void dist_allreduce_sum_f32(float *buf, size_t n);
void dist_allreduce_sum_f64(double *buf, size_t n);
/* A step's sum over ranks as the network calls it (layer.h step_sum_fn; arg unused): BatchNormalization's
 * statistics of the global batch. */
struct error;
int dist_step_sum(double *v, int n, void *arg, struct error *err);

/* The sharded exchange of a step: a slab of n floats is cut into one shard per rank, [lo, hi) for this rank
 * (dist_shard: contiguous, in rank order, whole 64-byte lines but the last). dist_reduce_scatter_sum_f32 sums
 * every rank's buf (n,) and points *shard at this rank's shard of the sum, buf + lo (the rest of buf is left
 * holding partial sums). dist_allgather_f32 gives every rank buf (n,) made
 * of each rank's own shard: after each rank has updated its shard of the parameters, all hold them all. The
 * two move what one all-reduce moves, and between them each rank updates 1/N of the parameters, not all. */
void dist_shard(size_t n, size_t *lo, size_t *hi);
void dist_reduce_scatter_sum_f32(float *buf, size_t n, const float **shard);
void dist_allgather_f32(float *buf, size_t n);

/* Node-shared memory, for the exchange of ranks on one node through memory rather than messages (exchange.c).
 * Collective over all ranks. Gives every rank of a node the same `shared_bytes` (one copy per node) and, in
 * own[r] (an array this returns; the caller frees it), the `own_bytes` of each of the node's ranks r, its own
 * at own[dist_node_rank()], all readable and writable by all of them; page aligned. Returns -1 on every rank
 * when there is nothing to share (one rank per node), the nodes have different numbers of ranks, or the MPI
 * library cannot give the memory; callable once per run, freed by dist_finalize. */
int dist_node_share(size_t shared_bytes, size_t own_bytes, void **shared, void ***own);
int dist_node_rank(void);
/* After dist_node_share: a barrier of this node's ranks, and the in-place sum over the ranks of the same node
 * rank on every node (nothing on one node). */
void dist_node_barrier(void);
void dist_cross_allreduce_sum_f32(float *buf, size_t n);

/* Collective: every rank receives every rank's `count` doubles, rank after rank, into recv (size * count). */
void dist_allgather_f64(const double *send, int count, double *recv);
/* Collective: rank 0 receives every rank's `count` floats, rank after rank, into recv (ignored elsewhere). */
void dist_gather_f32(const float *send, int count, float *recv);

/* Collective: every rank passes its own error code (0 = fine). Returns the largest code of all ranks, and
 * in *first_rank the lowest rank that had that code (that rank prints the message, so it shows once). */
int dist_agree(int code, int *first_rank);

/* Ends the whole job at once (MPI_Abort), for failures after which collectives cannot continue. */
void dist_abort(int code);

/* "Open MPI v4.1.4": the MPI library's name and version (callable before dist_init). */
void dist_library_version(char *buf, size_t size);

/* Wall time in seconds. */
double dist_wtime(void);

#endif

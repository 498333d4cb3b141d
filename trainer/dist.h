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

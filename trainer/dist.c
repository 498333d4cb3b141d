/* dist.c: MPI for the trainer: start-up, the gradient all-reduce, agreeing on errors. */
#include "dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

static int rank_, size_ = 1, local_size_ = 1;

int dist_init(int *argc, char ***argv)
{
    int provided;
    /* FUNNELED: oneDNN's OpenMP threads never call MPI; only the main thread does. */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    return 0;
}

void dist_finalize(void) { MPI_Finalize(); }
int dist_rank(void) { return rank_; }
int dist_size(void) { return size_; }
int dist_local_size(void) { return local_size_; }

/* MPI counts are int: split buffers larger than INT_MAX elements. */
static void allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem)
{
    char *p = buf;
    while (n > 0) {
        int count = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, MPI_COMM_WORLD);
        p += (size_t)count * elem;
        n -= (size_t)count;
    }
}

void dist_allreduce_sum_f32(float *buf, size_t n) { allreduce(buf, n, MPI_FLOAT, sizeof(float)); }
void dist_allreduce_sum_f64(double *buf, size_t n) { allreduce(buf, n, MPI_DOUBLE, sizeof(double)); }

void dist_gather_f32(const float *send, int count, float *recv)
{
    int *counts = NULL, *displs = NULL;
    if (rank_ == 0) {
        counts = malloc(sizeof(int) * (size_t)size_);
        displs = malloc(sizeof(int) * (size_t)size_);
    }
    MPI_Gather(&count, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank_ == 0)
        for (int i = 0, at = 0; i < size_; i++) {
            displs[i] = at;
            at += counts[i];
        }
    MPI_Gatherv(send, count, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
}

int dist_agree(int code, int *first_rank)
{
    int in[2] = {code, rank_}, out[2];
    /* MAXLOC breaks ties by the lowest rank, which is the one we want to speak. */
    MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    if (first_rank)
        *first_rank = out[1];
    return out[0];
}

void dist_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
double dist_wtime(void) { return MPI_Wtime(); }

void dist_library_version(char *buf, size_t size)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    /* Open MPI's string goes on with build details after the first comma or line. */
    v[strcspn(v, ",\n")] = '\0';
    snprintf(buf, size, "%s", v);
}

/* dist.c: MPI for the trainer: start-up, the gradient all-reduce, agreeing on errors, and a watchdog that
 * ends a rank stuck in a collective whose peers are gone. */
#include "dist.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "error.h"

static int rank_, size_ = 1, local_size_ = 1;

/* The watchdog. MPI has no timeout: a rank whose peer lost its node (a cut link, a frozen host) can wait
 * in an all-reduce for ever, burning the allocation. The main thread stamps the time it enters a
 * collective; a thread checks the stamp every second and, past the limit, prints one line and leaves with
 * _exit (a non-zero exit makes mpirun/srun end the whole job). The limit must exceed any legitimate wait:
 * a slow step of a peer, rank 0 writing a checkpoint, an uneven evaluation. */
#define WATCHDOG_DEFAULT_S 60
static atomic_llong coll_since_ns;   /* 0: not in a collective */
static const char *_Atomic coll_what;
static double watchdog_s;
static atomic_int watchdog_stop;
static pthread_t watchdog_thread;
static int watchdog_running;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watchdog_stop)) {
        sleep(1);
        long long since = atomic_load(&coll_since_ns);
        if (since && (double)(now_ns() - since) * 1e-9 > watchdog_s) {
            fprintf(stderr,
                    "trainer: error: rank %d waited %.0f s for the other ranks in %s: a rank or its node was lost "
                    "(TRAINER_WATCHDOG_S sets this limit)\n",
                    rank_, watchdog_s, atomic_load(&coll_what));
            fflush(stderr);
            _exit(ERR_IO);
        }
    }
    return NULL;
}

static void watchdog_start(void)
{
    const char *env = getenv("TRAINER_WATCHDOG_S");
    watchdog_s = env ? atof(env) : WATCHDOG_DEFAULT_S;
    /* One rank has no one to wait for; 0 switches the watchdog off. */
    if (size_ < 2 || watchdog_s <= 0)
        return;
    watchdog_running = pthread_create(&watchdog_thread, NULL, watchdog, NULL) == 0;
}

static void watchdog_end(void)
{
    if (!watchdog_running)
        return;
    atomic_store(&watchdog_stop, 1);
    pthread_join(watchdog_thread, NULL);
    watchdog_running = 0;
}

/* Brackets every collective. */
static void coll_begin(const char *what)
{
    atomic_store(&coll_what, what);
    atomic_store(&coll_since_ns, now_ns());
}

static void coll_end(void) { atomic_store(&coll_since_ns, 0); }

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
    watchdog_start();
    return 0;
}

void dist_finalize(void)
{
    /* Finalize synchronises with the peers too: watched like any collective. */
    coll_begin("MPI_Finalize");
    MPI_Finalize();
    coll_end();
    watchdog_end();
}
int dist_rank(void) { return rank_; }
int dist_size(void) { return size_; }
int dist_local_size(void) { return local_size_; }

/* MPI counts are int: split buffers larger than INT_MAX elements. */
static void allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem)
{
    char *p = buf;
    while (n > 0) {
        int count = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        coll_begin("an all-reduce");
        MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, MPI_COMM_WORLD);
        coll_end();
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
    coll_begin("a gather");
    MPI_Gather(&count, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank_ == 0)
        for (int i = 0, at = 0; i < size_; i++) {
            displs[i] = at;
            at += counts[i];
        }
    MPI_Gatherv(send, count, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    coll_end();
    free(counts);
    free(displs);
}

int dist_agree(int code, int *first_rank)
{
    int in[2] = {code, rank_}, out[2];
    /* MAXLOC breaks ties by the lowest rank, which is the one we want to speak. */
    coll_begin("agreeing on errors");
    MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    coll_end();
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

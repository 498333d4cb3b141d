/* dist.c: MPI for the trainer: start-up, the gradient all-reduce, agreeing on errors, and a watchdog that
 * ends a rank stuck in a collective whose peers are gone. */
#include "dist.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "error.h"

static int rank_, size_ = 1, local_size_ = 1;
/* This node's ranks; the ranks of the same node rank on every node (set up by dist_node_share); the window
 * of node-shared memory. */
static MPI_Comm node_comm = MPI_COMM_NULL, cross_comm = MPI_COMM_NULL;
static MPI_Win node_win = MPI_WIN_NULL;
static int node_rank_;

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
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_comm);
    MPI_Comm_size(node_comm, &local_size_);
    MPI_Comm_rank(node_comm, &node_rank_);
    watchdog_start();
    return 0;
}

static struct shard_table {
    size_t n;
    int *counts, *displs;
    float *recv; /* a partial sum of one shard, from the previous rank in the ring */
} shards; /* per-rank counts and displacements for a slab of n floats, made once per n (one slab per run) */

void dist_finalize(void)
{
    /* Finalize synchronises with the peers too: watched like any collective. */
    free(shards.counts);
    free(shards.displs);
    free(shards.recv);
    coll_begin("MPI_Finalize");
    if (node_win != MPI_WIN_NULL)
        MPI_Win_free(&node_win);
    if (cross_comm != MPI_COMM_NULL)
        MPI_Comm_free(&cross_comm);
    if (node_comm != MPI_COMM_NULL)
        MPI_Comm_free(&node_comm);
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

int dist_step_sum(double *v, int n, void *arg, struct error *err)
{
    (void)arg;
    (void)err;
    dist_allreduce_sum_f64(v, (size_t)n);
    return 0;
}

/* Shards are multiples of 16 floats (a cache line: no two ranks write one line in the all-gather's buffers)
 * but the last. Open MPI's counts are int: a shard beyond INT_MAX floats (8 GiB) is not supported, and the
 * trainer's models are far below it. */
static void shard_of(size_t n, int r, size_t *lo, size_t *hi)
{
    size_t per = ((n + (size_t)size_ - 1) / (size_t)size_ + 15) & ~(size_t)15;
    *lo = per * (size_t)r < n ? per * (size_t)r : n;
    *hi = *lo + per < n ? *lo + per : n;
}

void dist_shard(size_t n, size_t *lo, size_t *hi) { shard_of(n, rank_, lo, hi); }

static int shards_for(size_t n)
{
    if (shards.counts && shards.n == n)
        return 0;
    free(shards.counts);
    free(shards.displs);
    free(shards.recv);
    shards.counts = malloc((size_t)size_ * sizeof(int));
    shards.displs = malloc((size_t)size_ * sizeof(int));
    size_t lo, hi;
    shard_of(n, 0, &lo, &hi); /* the first shard is the largest */
    shards.recv = malloc((hi - lo ? hi - lo : 1) * sizeof(float));
    if (!shards.counts || !shards.displs || !shards.recv || n > (size_t)INT_MAX) {
        free(shards.counts);
        free(shards.displs);
        free(shards.recv);
        shards.counts = shards.displs = NULL;
        shards.recv = NULL;
        return -1;
    }
    for (int r = 0; r < size_; r++) {
        shard_of(n, r, &lo, &hi);
        shards.counts[r] = (int)(hi - lo);
        shards.displs[r] = (int)lo;
    }
    shards.n = n;
    return 0;
}

/* A ring: in step k (of size - 1), rank r sends its partial sum of shard (r - k - 1) to rank r + 1 and receives
 * rank r - 1's partial sum of shard (r - k - 2), to which it adds its own part, in place in buf. After the
 * last step shard r is summed over all ranks, in an order fixed by the rank count (for two ranks a + b, the
 * same bits as the all-reduce). Open MPI 4.1's MPI_Reduce_scatter took as long as the whole all-reduce here
 * (185 us for 2 MiB on 2 ranks, every algorithm it offers); this moves the same bytes in ~100 us. */
void dist_reduce_scatter_sum_f32(float *buf, size_t n, const float **shard)
{
    if (size_ == 1) {
        *shard = buf;
        return;
    }
    if (shards_for(n) != 0) {
        /* No memory for the bookkeeping, or a slab beyond int counts: the whole sum, this rank's part of it. */
        size_t lo, hi;
        allreduce(buf, n, MPI_FLOAT, sizeof(float));
        shard_of(n, rank_, &lo, &hi);
        *shard = buf + lo;
        return;
    }
    int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    coll_begin("a reduce-scatter");
    for (int k = 0; k < size_ - 1; k++) {
        int out = ((rank_ - k - 1) % size_ + 2 * size_) % size_, in = ((rank_ - k - 2) % size_ + 2 * size_) % size_;
        MPI_Sendrecv(buf + shards.displs[out], shards.counts[out], MPI_FLOAT, next, 0, shards.recv,
                     shards.counts[in], MPI_FLOAT, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        float *restrict acc = buf + shards.displs[in];
        const float *restrict got = shards.recv;
#pragma omp simd
        for (int i = 0; i < shards.counts[in]; i++)
            acc[i] = got[i] + acc[i];
    }
    coll_end();
    *shard = buf + shards.displs[rank_];
}

void dist_allgather_f32(float *buf, size_t n)
{
    if (size_ == 1)
        return;
    if (shards_for(n) != 0) {
        /* Every rank holds the whole sum (the fallback above) and updated only its shard: gather by summing
         * the shards, each rank adding zeros elsewhere. */
        size_t lo, hi;
        shard_of(n, rank_, &lo, &hi);
        memset(buf, 0, lo * sizeof(float));
        memset(buf + hi, 0, (n - hi) * sizeof(float));
        allreduce(buf, n, MPI_FLOAT, sizeof(float));
        return;
    }
    coll_begin("an all-gather");
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, shards.counts, shards.displs, MPI_FLOAT,
                   MPI_COMM_WORLD);
    coll_end();
}

void dist_allgather_f64(const double *send, int count, double *recv)
{
    if (size_ == 1) {
        memcpy(recv, send, sizeof(double) * (size_t)count);
        return;
    }
    coll_begin("an all-gather");
    MPI_Allgather(send, count, MPI_DOUBLE, recv, count, MPI_DOUBLE, MPI_COMM_WORLD);
    coll_end();
}

/* ---- node-shared memory -------------------------------------------------------------------------------- */

int dist_node_rank(void) { return node_rank_; }

int dist_node_share(size_t shared_bytes, size_t own_bytes, void **shared, void ***own)
{
    int lo_hi[2] = {-local_size_, local_size_}, ok;
    *shared = NULL;
    *own = NULL;
    if (size_ < 2 || node_win != MPI_WIN_NULL)
        return -1;
    /* Every node the same number of ranks: node rank k of each node then owns the same shard everywhere. */
    coll_begin("setting up node-shared memory");
    MPI_Allreduce(MPI_IN_PLACE, lo_hi, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    ok = local_size_ > 1 && -lo_hi[0] == lo_hi[1];
    if (ok) {
        /* A refusal (no room in /dev/shm, say) must come back as an error, not end the job. */
        MPI_Comm_set_errhandler(node_comm, MPI_ERRORS_RETURN);
        MPI_Info info;
        MPI_Info_create(&info);
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
        void *base;
        size_t mine = own_bytes + (node_rank_ == 0 ? shared_bytes : 0);
        ok = mine <= (size_t)PTRDIFF_MAX &&
             MPI_Win_allocate_shared((MPI_Aint)mine, 1, info, node_comm, &base, &node_win) == MPI_SUCCESS;
        MPI_Info_free(&info);
        *own = ok ? malloc((size_t)local_size_ * sizeof **own) : NULL;
        for (int r = 0; ok && r < local_size_; r++) {
            MPI_Aint bytes;
            int unit;
            void *p;
            ok = *own && MPI_Win_shared_query(node_win, r, &bytes, &unit, &p) == MPI_SUCCESS;
            if (ok && r == 0) {
                *shared = p;
                p = (char *)p + shared_bytes;
            }
            if (ok)
                (*own)[r] = p;
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (ok)
        MPI_Comm_split(MPI_COMM_WORLD, node_rank_, rank_, &cross_comm);
    coll_end();
    if (!ok) {
        free(*own);
        *own = NULL;
        *shared = NULL;
        return -1;
    }
    return 0;
}

void dist_node_barrier(void)
{
    coll_begin("a barrier of the node's ranks");
    MPI_Barrier(node_comm);
    coll_end();
}

void dist_cross_allreduce_sum_f32(float *buf, size_t n)
{
    int nodes;
    MPI_Comm_size(cross_comm, &nodes);
    if (nodes < 2)
        return;
    float *p = buf;
    while (n > 0) {
        int count = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        coll_begin("an all-reduce across nodes");
        MPI_Allreduce(MPI_IN_PLACE, p, count, MPI_FLOAT, MPI_SUM, cross_comm);
        coll_end();
        p += count;
        n -= (size_t)count;
    }
}

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

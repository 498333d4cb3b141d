/* allreduce_bench.c: `allreduce_bench [MAX_BYTES [SECONDS_PER_SIZE]]` times MPI_Allreduce (float sum, in
 * place, as the trainer's gradient all-reduce) for messages of 4 bytes to MAX_BYTES (default 64 MiB), doubling.
 * Rank 0 prints one line per size: `bytes median_us min_us reps`. Each repetition starts after a barrier, so
 * a time is one all-reduce, not a pipeline of them; the median is over up to 200 repetitions or
 * SECONDS_PER_SIZE (default 0.5) of them. Used by tests/multinode/bench_network.sh (a benchmark, not a test). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t max_bytes = argc > 1 ? (size_t)atoll(argv[1]) : (size_t)64 << 20;
    double budget_s = argc > 2 ? atof(argv[2]) : 0.5;
    enum { MAX_REPS = 200, WARMUP = 3 };
    float *buf = malloc(max_bytes < 4 ? 4 : max_bytes);     /* (max_bytes / 4) floats */
    double times[MAX_REPS];
    if (!buf) {
        fprintf(stderr, "allreduce_bench: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0)
        printf("# %d ranks; bytes median_us min_us reps\n", size);
    for (size_t bytes = 4; bytes <= max_bytes; bytes *= 2) {
        int n = (int)(bytes / sizeof(float));
        for (int i = 0; i < n; i++)
            buf[i] = 1.0f;
        int reps = 0, stop = 0;
        double start = MPI_Wtime();
        for (int r = 0; !stop; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double dt = MPI_Wtime() - t0;
            if (r >= WARMUP)
                times[reps++] = dt;
            /* Every rank must stop at the same repetition: rank 0 decides. */
            stop = reps == MAX_REPS || (reps >= 5 && MPI_Wtime() - start > budget_s);
            MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
        }
        if (rank == 0) {
            qsort(times, (size_t)reps, sizeof(double), cmp_double);
            printf("%zu %.1f %.1f %d\n", bytes, times[reps / 2] * 1e6, times[0] * 1e6, reps);
            fflush(stdout);
        }
    }
    free(buf);
    MPI_Finalize();
    return 0;
}

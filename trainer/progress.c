/* progress.c: the live progress bar (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void progress_start(struct progress *p, int64_t steps, int quiet, double now)
{
    /* Open MPI gives local ranks a pseudo-terminal even when mpirun's own output goes to a file, so inside
     * a Slurm job (whose output is a log file) the bar stays off whatever isatty says. */
    p->live = !quiet && isatty(STDOUT_FILENO) && !getenv("SLURM_JOB_ID");
    p->steps = steps;
    p->t0 = now;
    p->last = 0;
}

void progress_update(struct progress *p, int64_t done, double loss, double acc, double img_s, double now)
{
    if (!p->live || (now - p->last < 0.1 && done < p->steps))
        return;
    p->last = now;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int filled = p->steps ? (int)(WIDTH * done / p->steps) : WIDTH;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '=' : i == filled ? '>' : '.';
    bar[WIDTH] = '\0';
    double eta = done ? (now - p->t0) * (double)(p->steps - done) / (double)done : 0;
    /* \r and clear-to-end redraw in place. */
    printf("\r\033[K%6lld/%lld [%s] ETA %.0fs - loss: %.4f - acc: %.4f - %.0f img/s", (long long)done,
           (long long)p->steps, bar, eta, loss, acc, img_s);
    fflush(stdout);
}

void progress_end(struct progress *p)
{
    if (p->live) {
        printf("\r\033[K");
        fflush(stdout);
    }
}

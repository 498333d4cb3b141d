/* train_loop.c: the data-parallel training loop. Every rank holds the model and runs its share of each
 * global batch; the gradients, with the step's statistics folded in, are summed by one all-reduce; every
 * rank then applies the same update. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "evaluate.h"
#include "progress.h"
#include "rng.h"
#include "train.h"

/* Tail of the gradient slab, summed with the gradients. */
enum { TAIL_LOSS, TAIL_CORRECT, TAIL_ERROR, TAIL_STOP };

/* Set by SIGTERM or SIGUSR1 (Slurm's warning signal, or a time limit): the signal may reach one rank or
 * all; its flag travels in the step's all-reduce, so every rank stops after the same step. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* This rank's part of a global batch of gb samples starting at `first` in the epoch's order: an even
 * split, the first gb % N ranks taking one more. */
static void my_share(int64_t first, int64_t gb, int64_t *lo, int64_t *hi)
{
    int rank = dist_rank(), size = dist_size();
    *lo = first + gb * rank / size;
    *hi = first + gb * (rank + 1) / size;
}

static int all_finite(const float *x, size_t n)
{
    int ok = 1;
#pragma omp parallel for reduction(&& : ok)
    for (size_t i = 0; i < n; i++)
        ok = ok && isfinite(x[i]);
    return ok;
}

/* Reads this rank's share and computes its gradient into the slab (zeros when it has no samples or failed). */
static int local_gradient(struct run *r, int64_t first, int64_t gb, struct error *err)
{
    struct net *net = r->net;
    float *tail = net->grads + net->n_params;
    int64_t lo, hi;
    int rc = ERR_OK;
    my_share(first, gb, &lo, &hi);
    int n = (int)(hi - lo);
    memset(tail, 0, sizeof(float) * NET_GRAD_TAIL);
    if (n > 0) {
        struct net_stats st = {0, 0};
        memcpy(r->ids, r->perm + lo, sizeof(int64_t) * (size_t)n);
        rc = dataset_read(&r->train, r->ids, n, r->images, r->labels, r->model.n_classes, err);
        struct net_batch b = {n, r->images, r->labels, r->ids};
        if (rc == ERR_OK)
            rc = net_train_batch(net, &b, (int)gb, r->at.seed, (uint64_t)r->at.step, &st, err);
        tail[TAIL_LOSS] = (float)st.loss_sum;
        tail[TAIL_CORRECT] = (float)st.correct;
    }
    if (n == 0 || rc != ERR_OK)
        /* A rank with nothing to add (a batch smaller than the ranks) or that failed adds zeros. */
        memset(net->grads, 0, sizeof(float) * net->n_params);
    if (rc != ERR_OK)
        tail[TAIL_ERROR] = 1;
    tail[TAIL_STOP] = stop_signal != 0;
    return rc;
}

/* One optimizer step on the global batch of gb samples starting at `first`. Returns an agreed code. */
static int train_step(struct run *r, int64_t first, int64_t gb, struct error *err)
{
    struct net *net = r->net;
    const float *tail = net->grads + net->n_params;
    int rc = local_gradient(r, first, gb, err);
    dist_allreduce_sum_f32(net->grads, net->n_params + NET_GRAD_TAIL);
    if (tail[TAIL_ERROR] != 0)
        return cli_agree(rc, err);
    if (!isfinite(tail[TAIL_LOSS]) || !all_finite(net->grads, net->n_params)) {
        /* Same numbers on every rank after the all-reduce: all stop here, before the update, so nothing
         * non-finite ever reaches the weights or a checkpoint. */
        error_set(err, ERR_DIVERGED, "%s: training diverged at step %lld: the %s is not finite (try a lower --lr)",
                  r->o.data, (long long)r->at.step + 1, isfinite(tail[TAIL_LOSS]) ? "gradient" : "loss");
        return cli_agree(ERR_DIVERGED, err);
    }
    optim_step(&r->opt, net->params, net->grads);
    r->stop_requested = tail[TAIL_STOP] != 0;
    r->at.step++;
    r->at.epoch_step++;
    r->at.epoch_seen += gb;
    r->at.epoch_loss_sum += tail[TAIL_LOSS];
    r->at.epoch_correct += tail[TAIL_CORRECT];
    return ERR_OK;
}

/* Rank 0 writes `path` with the current state; all ranks agree on the outcome. */
static int save(struct run *r, const char *path, struct error *err)
{
    int rc = ERR_OK;
    if (dist_rank() == 0) {
        r->at.world_size = dist_size();
        rc = checkpoint_write(path, r->net, &r->opt, &r->at, err);
    }
    return cli_agree(rc, err);
}

/* "C.h5" -> "C.best.h5" (Keras ModelCheckpoint(save_best_only=True) keeps one file). */
static void best_path(const char *path, char *out, size_t size)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        snprintf(out, size, "%.*s.best%s", (int)(dot - path), path, dot);
    else
        snprintf(out, size, "%s.best.h5", path);
}

static void report_epoch(struct run *r, const struct eval_result *v, double secs)
{
    const struct checkpoint_state *at = &r->at;
    double seen = (double)at->epoch_seen;
    double loss = at->epoch_loss_sum / seen, acc = at->epoch_correct / seen, ips = seen / secs;
    if (dist_rank() != 0)
        return;
    if (!r->o.quiet) {
        printf("Epoch %lld/%ld - %.1fs - loss: %.4f - acc: %.4f", (long long)at->epoch + 1, r->o.epochs, secs,
               loss, acc);
        if (r->has_val)
            printf(" - val_loss: %.4f - val_acc: %.4f", v->loss, v->acc);
        printf(" - %.0f img/s\n", ips);
        fflush(stdout);
    }
    if (r->metrics) {
        fprintf(r->metrics, "%lld,%lld,%.6f,%.6f,%.6f,%.6f,%g,%.1f,%.3f\n", (long long)at->epoch + 1,
                (long long)at->step, loss, acc, v->loss, v->acc, r->o.optim.lr, ips, secs);
        fflush(r->metrics);
    }
}

/* Validation, the epoch line and metrics row, the checkpoints; then the state moves to the next epoch. */
static int epoch_end(struct run *r, double secs, struct error *err)
{
    struct eval_result v = {0, NAN, NAN, NULL};
    int rc;
    if (r->has_val) {
        struct dataset *ds = r->o.val ? &r->val : &r->train;
        if ((rc = evaluate(r->net, ds, r->val_start, r->val_end, r->share_max, &v, err)))
            return rc;
    }
    report_epoch(r, &v, secs);
    int better = r->has_val && v.loss < r->at.best_val_loss;
    if (better)
        r->at.best_val_loss = v.loss;
    r->at.epoch++;
    r->at.epoch_step = 0;
    r->at.epoch_seen = 0;
    r->at.epoch_loss_sum = r->at.epoch_correct = r->at.epoch_wall_s = 0;
    if (r->o.checkpoint && (rc = save(r, r->o.checkpoint, err)))
        return rc;
    if (r->o.save_best && better) {
        char path[1100];
        best_path(r->o.checkpoint, path, sizeof path);
        if ((rc = save(r, path, err)))
            return rc;
    }
    return ERR_OK;
}

static int done(const struct run *r)
{
    return r->at.epoch >= r->o.epochs || (r->o.max_steps && r->at.step >= r->o.max_steps) || r->stop_requested;
}

/* The rest of the current epoch; returns with r->at.epoch_step == steps_per_epoch when it finished. */
static int run_epoch(struct run *r, int64_t steps_per_epoch, struct error *err)
{
    const int64_t B = r->o.batch;
    struct checkpoint_state *at = &r->at;
    struct progress bar;
    double t0 = dist_wtime() - at->epoch_wall_s;
    int rc;
    rng_shuffle_epoch(r->perm, r->n_train, at->seed, (uint64_t)at->epoch);
    progress_start(&bar, steps_per_epoch, r->o.quiet || dist_rank() != 0, t0);
    while (at->epoch_step < steps_per_epoch && !done(r)) {
        int64_t first = at->epoch_step * B, gb = r->n_train - first < B ? r->n_train - first : B;
        if ((rc = train_step(r, first, gb, err)))
            return rc;
        double now = dist_wtime();
        at->epoch_wall_s = now - t0;
        progress_update(&bar, at->epoch_step, at->epoch_loss_sum / (double)at->epoch_seen,
                        at->epoch_correct / (double)at->epoch_seen, (double)at->epoch_seen / at->epoch_wall_s, now);
        if (r->o.checkpoint_every && at->step % r->o.checkpoint_every == 0 && at->epoch_step < steps_per_epoch &&
            (rc = save(r, r->o.checkpoint, err)))
            return rc;
    }
    progress_end(&bar);
    return ERR_OK;
}

int train_loop(struct run *r)
{
    struct error err = {0};
    const int64_t steps_per_epoch = (r->n_train + r->o.batch - 1) / r->o.batch;
    int rc;
    catch_stop_signals();
    if (done(r)) {
        if (dist_rank() == 0 && !r->o.quiet)
            printf("nothing to do: %lld epochs and %lld steps are done already\n", (long long)r->at.epoch,
                   (long long)r->at.step);
        return ERR_OK;
    }
    while (!done(r)) {
        if ((rc = run_epoch(r, steps_per_epoch, &err)))
            return rc;
        if (r->at.epoch_step < steps_per_epoch)
            break; /* --max-steps stopped it within the epoch */
        if ((rc = epoch_end(r, r->at.epoch_wall_s, &err)))
            return rc;
    }
    if (r->at.epoch_step > 0) {
        /* Stopped within an epoch: its line comes when a resumed run completes it. */
        if (r->o.checkpoint && (rc = save(r, r->o.checkpoint, &err)))
            return rc;
        if (dist_rank() == 0 && !r->o.quiet)
            printf("stopped at step %lld (epoch %lld, batch %lld of %lld)\n", (long long)r->at.step,
                   (long long)r->at.epoch + 1, (long long)r->at.epoch_step, (long long)steps_per_epoch);
    }
    if (dist_rank() == 0 && r->o.checkpoint && !r->o.quiet)
        printf("saved %s\n", r->o.checkpoint);
    if (r->stop_requested) {
        /* Told to stop (Slurm's warning signal, a time limit, a preemption): the checkpoint is written;
         * 75 (EX_TEMPFAIL) tells the batch script to requeue the job. */
        if (dist_rank() == 0)
            fprintf(stderr, "trainer: stopped by a signal at step %lld%s\n", (long long)r->at.step,
                    r->o.checkpoint ? "; resume with --resume" : " (no --checkpoint: nothing was saved)");
        return ERR_STOPPED;
    }
    return ERR_OK;
}

/* train_loop.c: the data-parallel training loop. Every rank holds the model and runs its share of each
 * global batch; the step itself (step.c: the gradients, with the step's statistics folded in, summed over
 * the ranks, then the same update everywhere) is the bench's too. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "exchange.h"
#include "evaluate.h"
#include "feed.h"
#include "progress.h"
#include "rng.h"
#include "step.h"
#include "train.h"
#include "train_sched.h"

/* Set by SIGTERM or SIGUSR1 (Slurm's warning signal, or a time limit): the signal may reach one rank or
 * all; its flag travels in the step's all-reduce, so every rank stops after the same step. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

static int stopping(void) { return stop_signal != 0; }

void train_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* step_take_fn for the training feed: micro-batch k of update epoch_step is the epoch's micro-step
 * epoch_step * K + k (read while the previous one computed); asks for the one after it. */
static int take_share(void *arg, int k, struct feed_batch *fb, struct error *err)
{
    struct run *r = arg;
    int64_t micro = r->at.epoch_step * r->o.accumulate + k;
    int rc = feed_take(r->feed, micro, fb, err);
    feed_start(r->feed, micro + 1);
    return rc;
}

/* One optimizer step on the epoch's current update batch, of gb samples. Returns an agreed code. */
static int train_step(struct run *r, int64_t gb, struct error *err)
{
    struct step_in in = {(int)((gb + r->o.batch - 1) / r->o.batch), gb, r->at.seed, (uint64_t)r->at.step,
                         stopping, take_share, r, (uint64_t)r->at.epoch};
    struct step_out out;
    int rc = step_run(&r->step, &in, &out, err);
    if (rc)
        return rc;
    r->stop_requested = out.stop;
    r->at.step++;
    r->at.epoch_step++;
    r->at.epoch_seen += gb;
    r->at.epoch_loss_sum += out.loss_sum;
    r->at.epoch_correct += out.correct;
    return ERR_OK;
}

/* Rank 0 writes `path` with the current state; all ranks agree on the outcome. */
static int save(struct run *r, const char *path, struct error *err)
{
    int rc = ERR_OK;
    exchange_sync_optimizer(r->net, &r->opt);
    train_sched_base_lr(r);
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

/* The epoch line and metrics row (rank 0). ERR_IO when the metrics row cannot be written (a full disk): a
 * run whose metrics are lost must not end as if all went well. */
static int report_epoch(struct run *r, const struct eval_result *v, double secs, struct error *err)
{
    const struct checkpoint_state *at = &r->at;
    double seen = (double)at->epoch_seen;
    double loss = at->epoch_loss_sum / seen, acc = at->epoch_correct / seen, ips = seen / secs;
    if (dist_rank() != 0)
        return ERR_OK;
    if (!r->o.quiet) {
        printf("Epoch %lld/%ld - %.1fs - loss: %.4f - acc: %.4f", (long long)at->epoch + 1, r->o.epochs, secs,
               loss, acc);
        if (r->has_val)
            printf(" - val_loss: %.4f - val_acc: %.4f", v->loss, v->acc);
        if (train_sched_varies(r))
            printf(" - lr: %.4g", r->lr_now);
        printf(" - %.0f img/s\n", ips);
        fflush(stdout);
    }
    if (r->metrics) {
        fprintf(r->metrics, "%lld,%lld,%.6f,%.6f,%.6f,%.6f,%g,%.1f,%.3f\n", (long long)at->epoch + 1,
                (long long)at->step, loss, acc, v->loss, v->acc, r->lr_now, ips, secs);
        if (fflush(r->metrics) != 0 || ferror(r->metrics))
            return error_set(err, ERR_IO, "%s: cannot write: %s", r->o.metrics, strerror(errno));
    }
    return ERR_OK;
}

/* Validation, the epoch line and metrics row, the checkpoints; then the state moves to the next epoch. */
static int epoch_end(struct run *r, double secs, struct error *err)
{
    struct eval_result v = {0, NAN, NAN, NULL};
    int rc;
    if (r->has_val) {
        struct dataset *ds = r->o.val ? &r->val : &r->train;
        feed_idle(r->feed); /* --val-split reads the training file, whose scratch the feed uses */
        if ((rc = evaluate(r->net, ds, r->val_start, r->val_end, r->share_max, &v, err)))
            return rc;
    }
    int reported = report_epoch(r, &v, secs, err);
    if ((rc = train_sched_epoch_end(r, &v, err)))
        return rc;
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
    /* Agreed after the checkpoints, so that a lost metrics row does not cost the epoch's training too. */
    return cli_agree(reported, err);
}

static int done(const struct run *r)
{
    return r->at.epoch >= r->o.epochs || (r->o.max_steps && r->at.step >= r->o.max_steps) || r->stop_requested ||
           train_sched_stopped(r);
}

/* The rest of the current epoch; returns with r->at.epoch_step == steps_per_epoch when it finished. */
static int run_epoch(struct run *r, int64_t steps_per_epoch, struct error *err)
{
    const int64_t B = r->o.batch * r->o.accumulate; /* samples per update */
    struct checkpoint_state *at = &r->at;
    struct progress bar;
    double t0 = dist_wtime() - at->epoch_wall_s;
    int rc;
    feed_idle(r->feed); /* nothing may be read from the old order while it changes */
    rng_shuffle_epoch(r->perm, r->n_train, at->seed, (uint64_t)at->epoch);
    progress_start(&bar, steps_per_epoch, r->o.quiet || dist_rank() != 0, t0);
    while (at->epoch_step < steps_per_epoch && !done(r)) {
        int64_t first = at->epoch_step * B, gb = r->n_train - first < B ? r->n_train - first : B;
        train_sched_step_lr(r, steps_per_epoch);
        progress_set_lr(&bar, r->lr_now);
        if ((rc = train_step(r, gb, err)))
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

/* train_loop once the feed is set up. */
static int loop(struct run *r, struct error *err)
{
    const int64_t steps_per_epoch = train_steps_per_epoch(r);
    int rc;
    train_catch_stop_signals();
    if (done(r)) {
        /* Killed after its last epoch's checkpoint, before EarlyStopping's restore was saved. */
        if (train_sched_finish(r) && r->o.checkpoint && (rc = save(r, r->o.checkpoint, err)))
            return rc;
        if (dist_rank() == 0 && !r->o.quiet)
            printf("nothing to do: %lld epochs and %lld steps are done already\n", (long long)r->at.epoch,
                   (long long)r->at.step);
        return ERR_OK;
    }
    while (!done(r)) {
        if ((rc = run_epoch(r, steps_per_epoch, err)))
            return rc;
        if (r->at.epoch_step < steps_per_epoch)
            break; /* --max-steps stopped it within the epoch */
        if ((rc = epoch_end(r, r->at.epoch_wall_s, err)))
            return rc;
    }
    if (train_sched_finish(r) && r->o.checkpoint && (rc = save(r, r->o.checkpoint, err)))
        return rc;
    if (r->at.epoch_step > 0) {
        /* Stopped within an epoch: its line comes when a resumed run completes it. */
        if (r->o.checkpoint && (rc = save(r, r->o.checkpoint, err)))
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

int64_t train_steps_per_epoch(const struct run *r)
{
    int64_t per_update = r->o.batch * r->o.accumulate;
    return (r->n_train + per_update - 1) / per_update;
}

int train_loop(struct run *r)
{
    struct error err = {0};
    /* A data set in memory needs no helper: a batch is a copy, cheaper than waking a thread. */
    int rc = feed_create(&r->feed, &r->train, r->perm, r->n_train, r->o.batch, r->model.n_classes,
                         !r->train_in_memory, &err);
    if (rc == ERR_OK)
        rc = step_init(&r->step, r->net, &r->opt, r->o.data, (int)r->o.accumulate, &err);
    if ((rc = cli_agree(rc, &err)) == ERR_OK)
        rc = loop(r, &err);
    step_release(&r->step);
    feed_destroy(r->feed);
    r->feed = NULL;
    return rc;
}

/* progress.c: the live progress bar (see progress.h): when to draw it, and drawing it in place. */
#include "progress.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The terminal the bar ends up on, for its width: stdout, or the launcher's own terminal (-1: none). */
static int size_fd = -1;
/* A bar is on the screen without its newline (progress_interrupt must end its line). */
static int drawn;

/* The parent of pid from /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces and ')'). */
static long parent_of(long pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')'), state;
    long ppid;
    if (!close_paren || sscanf(close_paren + 1, " %c %ld", &state, &ppid) != 2)
        return -1;
    return ppid;
}

/* Under a launcher that forwards output through a pseudo-terminal, our stdout is that pty (`ours`), and
 * so is the stdout of any wrapper between us and the launcher (`mpirun sh -c 'trainer ...'`). Walks up to
 * the first ancestor whose stdout is something else: where the launcher's output really goes. Returns an
 * fd open on it when it is a terminal, else -1 (a file, a pipe, /dev/null, or nothing we may look at). */
static int launcher_terminal(dev_t ours)
{
    long pid = (long)getppid();
    for (int depth = 0; depth < 16 && pid > 1; depth++, pid = parent_of(pid)) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%ld/fd/1", pid);
        if (stat(path, &st) != 0)
            return -1;
        if (S_ISCHR(st.st_mode) && st.st_rdev == ours)
            continue;
        if (!S_ISCHR(st.st_mode))
            return -1;
        /* O_NOCTTY: looking must not make it our controlling terminal. */
        int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 && !isatty(fd)) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    return -1;
}

static int decide(void)
{
    const char *force = getenv("TRAINER_PROGRESS");
    if (force && strcmp(force, "lines") == 0)
        return 0;
    int bar = force && strcmp(force, "bar") == 0;
    if (force && *force && !bar && strcmp(force, "auto") != 0)
        fprintf(stderr, "trainer: warning: TRAINER_PROGRESS='%s' is not bar, lines or auto; using auto\n", force);
    if (!isatty(STDOUT_FILENO)) {
        /* Forced into a file or pipe: there is no terminal to measure. */
        return bar;
    }
    size_fd = STDOUT_FILENO;
    if (bar)
        return 1;
    const char *term = getenv("TERM");
    if (term && strcmp(term, "dumb") == 0)
        return 0;
    /* Our controlling terminal is one a person (or tmux, ssh -t, srun --pty, script) gave us. */
    if (tcgetpgrp(STDOUT_FILENO) >= 0)
        return 1;
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) != 0)
        return 0;
    int fd = launcher_terminal(st.st_rdev);
    if (fd < 0)
        return 0;
    size_fd = fd;
    return 1;
}

int progress_bar_wanted(void)
{
    static int decided = -1;
    if (decided < 0)
        decided = decide();
    return decided;
}

static void end_line_at_exit(void) { progress_interrupt(); }

void progress_start(struct progress *p, int64_t steps, int quiet, double now)
{
    static int registered;
    p->live = !quiet && progress_bar_wanted();
    p->steps = steps;
    p->t0 = now;
    p->lr = NAN;
    /* The first update always draws: the clock may start near 0 (MPI_Wtime counts from MPI_Init). */
    p->last = -1e300;
    /* Whatever ends the process with a bar drawn (an error on another rank), the shell's prompt and any
     * message must not land on the bar's line. */
    if (p->live && !registered)
        registered = atexit(end_line_at_exit) == 0;
}

static int terminal_columns(void)
{
    struct winsize ws;
    if (size_fd >= 0 && ioctl(size_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

/* Keras's ETA: "31s", "1:02", "1:02:03". */
static void format_eta(char *buf, size_t size, double s)
{
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, size, "%lds", t);
    else if (t < 3600)
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void progress_update(struct progress *p, int64_t done, double loss, double acc, double img_s, double now)
{
    if (!p->live || (now - p->last < 0.1 && done < p->steps))
        return;
    p->last = now;
    char count[48], eta[32], stats[96], rate[32], bar[64];
    int digits = snprintf(count, sizeof count, "%lld", (long long)p->steps);
    snprintf(count, sizeof count, "%*lld/%lld", digits, (long long)done, (long long)p->steps);
    if (done > 0)
        format_eta(eta, sizeof eta, (now - p->t0) * (double)(p->steps - done) / (double)done);
    else
        snprintf(eta, sizeof eta, "-");
    if (isnan(loss)) /* a bar without training figures (import images) */
        snprintf(stats, sizeof stats, " - ETA: %s", eta);
    else
        snprintf(stats, sizeof stats, " - ETA: %s - loss: %.4f - acc: %.4f", eta, loss, acc);
    if (!isnan(p->lr)) {
        size_t len = strlen(stats);
        snprintf(stats + len, sizeof stats - len, " - lr: %.3g", p->lr);
    }
    snprintf(rate, sizeof rate, " - %.0f img/s", img_s);
    /* The last column stays empty: writing there makes some terminals wrap, and \r then redraws only the
     * wrapped part. On a narrow terminal the rate goes first, then the bar shrinks, then goes. */
    int cols = terminal_columns() - 1;
    int room = cols - (int)strlen(count) - 3 - (int)strlen(stats);
    if (room - (int)strlen(rate) >= 10)
        room -= (int)strlen(rate);
    else
        rate[0] = '\0';
    int width = room > 30 ? 30 : room;
    if (width >= 10) {
        int filled = p->steps ? (int)((int64_t)width * done / p->steps) : width;
        bar[0] = ' ';
        bar[1] = '[';
        for (int i = 0; i < width; i++)
            bar[2 + i] = i < filled ? '=' : i == filled ? '>' : '.';
        bar[2 + width] = ']';
        bar[3 + width] = '\0';
    } else
        bar[0] = '\0';
    char line[256];
    snprintf(line, sizeof line, "%s%s%s%s", count, bar, stats, rate);
    if (cols > 0 && cols < (int)sizeof line)
        line[cols] = '\0';
    /* \r and clear-to-end: the bar redraws in place. */
    printf("\r\033[K%s", line);
    fflush(stdout);
    drawn = 1;
}

void progress_end(struct progress *p)
{
    if (p->live && drawn) {
        printf("\r\033[K");
        fflush(stdout);
        drawn = 0;
    }
}

void progress_interrupt(void)
{
    if (drawn) {
        putchar('\n');
        fflush(stdout);
        drawn = 0;
    }
}

void progress_set_lr(struct progress *p, double lr) { p->lr = lr; }

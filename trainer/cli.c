/* cli.c: option parsing and error printing shared by the commands. */
#include "cli.h"
#include "model.h"
#include "dist.h"
#include "progress.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int rank_;

void cli_set_rank(int rank) { rank_ = rank; }
int cli_is_root(void) { return rank_ == 0; }

void cli_warn_model(const struct model *m)
{
    if (rank_ == 0 && m->warning[0]) {
        progress_interrupt();
        fprintf(stderr, "trainer: warning: %s\n", m->warning);
    }
}

void cli_print_error(const struct error *e)
{
    progress_interrupt();
    fprintf(stderr, "trainer: error: %s\n", e->msg);
}

int cli_agree(int rc, const struct error *err)
{
    int first = 0;
    int worst = dist_agree(rc, &first);
    /* Rank 0's bar must not share its line with another rank's message. */
    if (worst)
        progress_interrupt();
    if (worst && first == dist_rank()) {
        cli_print_error(err);
        fflush(stderr);
    }
    return worst;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    if (rank_ != 0)
        return ERR_USAGE;
    fputs("trainer: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'trainer %s --help'.\n", cmd);
    else
        fputs("\nTry 'trainer --help'.\n", stderr);
    return ERR_USAGE;
}

int cli_long(const char *cmd, const char *opt, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return cli_usage(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, min, max);
    *out = v;
    return 0;
}

int cli_double(const char *cmd, const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        return cli_usage(cmd, "%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
    *out = v;
    return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

const char *cli_closest(const char *s, const char *const *choices)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; choices[i]; i++) {
        size_t d = edit_distance(s, choices[i]);
        if (d < best_d) {
            best_d = d;
            best = choices[i];
        }
    }
    /* A third of the word wrong is still a typo; more is another word. */
    size_t limit = strlen(s) / 3 + 1;
    return best_d <= limit ? best : NULL;
}

/* How many long option names start with `prefix` (getopt_long takes any unique prefix). */
static int prefix_matches(const char *prefix, const struct option *longopts)
{
    int n = 0;
    for (int i = 0; longopts[i].name; i++)
        n += strncmp(longopts[i].name, prefix, strlen(prefix)) == 0;
    return n;
}

/* An unknown long option: ambiguous prefix, a typo of a real one, or neither. */
static void suggest_option(const char *cmd, const char *arg, const struct option *longopts)
{
    const char *names[64];
    char name[64];
    int n = 0;
    for (; longopts[n].name && n < 63; n++)
        names[n] = longopts[n].name;
    names[n] = NULL;
    snprintf(name, sizeof name, "%s", arg + (arg[0] == '-' && arg[1] == '-' ? 2 : arg[0] == '-'));
    char *eq = strchr(name, '=');
    if (eq)
        *eq = '\0';
    if (*name && prefix_matches(name, longopts) > 1) {
        char list[256];
        size_t at = 0;
        for (int i = 0; longopts[i].name && at < sizeof list; i++)
            if (strncmp(longopts[i].name, name, strlen(name)) == 0)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s--%s", at ? ", " : "", longopts[i].name);
        cli_usage(cmd, "ambiguous option '--%s' (%s)", name, list);
        return;
    }
    const char *near = cli_closest(name, names);
    if (near)
        cli_usage(cmd, "unknown option '%s' (did you mean '--%s'?)", arg, near);
    else
        cli_usage(cmd, "unknown option '%s'", arg);
}

/* A long option that is not one, or a valid one given "=VALUE" although it takes none. */
static void bad_long_option(const char *cmd, const char *word, const struct option *longopts)
{
    const char *eq = strchr(word, '=');
    if (eq)
        for (int i = 0; longopts[i].name; i++)
            if (longopts[i].has_arg == no_argument && strlen(longopts[i].name) == (size_t)(eq - word - 2) &&
                strncmp(longopts[i].name, word + 2, (size_t)(eq - word - 2)) == 0) {
                cli_usage(cmd, "option '--%s' takes no value", longopts[i].name);
                return;
            }
    suggest_option(cmd, word, longopts);
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    char opts[128];
    /* A leading ':' makes getopt report a missing value as ':' instead of printing its own message. */
    snprintf(opts, sizeof opts, ":%s", shortopts);
    opterr = 0;
    int c = getopt_long(argc, argv, opts, longopts, NULL);
    if (c == '?') {
        if (rank_ != 0)
            return '?';
        /* getopt stays on a word of short options ("-epochs" is -e -p -o ...) until its last letter, so the
         * word at fault is argv[optind] while inside one, else the one before. */
        const char *word = argv[optind - 1];
        if (optopt > 0 && optopt < 256 && optind < argc && argv[optind][0] == '-' && argv[optind][1] != '-' &&
            strchr(argv[optind] + 1, optopt))
            word = argv[optind];
        if (word[0] == '-' && word[1] == '-')
            bad_long_option(cmd, word, longopts);
        else if (word[0] == '-' && word[1] && word[2])
            suggest_option(cmd, word, longopts); /* "-epochs": a long option with one dash */
        else
            cli_usage(cmd, "unknown option '-%c'", optopt);
        return '?';
    }
    if (c == ':') {
        cli_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
        return '?';
    }
    return c;
}

int cli_optind(void) { return optind; }

int cli_threads(long requested)
{
    int t = (int)requested;
    if (t <= 0 && getenv("OMP_NUM_THREADS"))
        t = omp_get_max_threads();
    if (t <= 0) {
        int procs = omp_get_num_procs();
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        /* A rank bound to some cores (mpirun binds each rank to a core for np <= 2) uses those; an unbound
         * rank shares the node's cores with the other ranks there. */
        t = procs < online ? procs : procs / dist_local_size();
        if (t < 1)
            t = 1;
    } else if (t > omp_get_num_procs() && rank_ == 0) {
        /* Asked for more threads than the cores this rank may run on: they would take turns on them (under
         * `mpirun -np 1 ... --threads 2`, about half the speed, measured). */
        progress_interrupt();
        fprintf(stderr,
                "trainer: warning: %d threads per rank but this rank may run on %d core%s (mpirun binds each rank "
                "to a core for -np 2 or less: add --bind-to none to share the node's cores)\n",
                t, omp_get_num_procs(), omp_get_num_procs() == 1 ? "" : "s");
    }
    omp_set_num_threads(t);
    return t;
}

int cli_is_hdf5(const char *path)
{
    static const unsigned char magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && memcmp(head, magic, sizeof head) == 0;
}

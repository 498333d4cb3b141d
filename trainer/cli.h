/* cli.h: what every command shares: option parsing with suggestions, and the one-line error format. */
#ifndef TRAINER_CLI_H
#define TRAINER_CLI_H

#include <getopt.h>

#include "error.h"

/* Prints "trainer: error: MSG" to stderr. */
void cli_print_error(const struct error *e);

/* A usage error: prints "trainer: error: ..." and "Try 'trainer CMD --help'." and returns ERR_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Collective: every rank passes its status; all get the worst code of all ranks, and the lowest rank that
 * has it prints its message, so an error seen by one rank alone stops every rank and shows once. */
int cli_agree(int rc, const struct error *err);

struct model;
/* Rank 0 prints "trainer: warning: ..." for what the model reader dropped (model.warning), if anything. */
void cli_warn_model(const struct model *m);

/* Only rank 0 prints usage errors and help (every rank parses the same command line). */
void cli_set_rank(int rank);
int cli_is_root(void);

/* Sets and returns the threads per rank: `requested` (> 0), else OMP_NUM_THREADS, else the cores this
 * process may run on, shared by the ranks of this node (so that N ranks on N cores do not oversubscribe).
 * Rank 0 warns when a requested count is more than the cores it may run on (a rank bound by mpirun). */
int cli_threads(long requested);

/* Whether path starts with HDF5's signature (a checkpoint or Keras file, not a model text file). */
int cli_is_hdf5(const char *path);

/* Numbers from option values, range-checked; on failure a usage error naming the option. */
int cli_long(const char *cmd, const char *opt, const char *s, long min, long max, long *out);
int cli_double(const char *cmd, const char *opt, const char *s, double min, double max, double *out);

/* The choice closest to s by edit distance when it is close enough to be a likely typo, else NULL. */
const char *cli_closest(const char *s, const char *const *choices);

/* Runs getopt_long over argv with our own messages: returns the option's value as getopt_long does,
 * -1 at the end, or '?' after printing a usage error (unknown option, with a suggestion, or a missing
 * value). */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* What a command sees after parsing: the first non-option argument index (optind). */
int cli_optind(void);

#endif

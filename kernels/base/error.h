/* error.h: the status codes every module returns and the one-line message that goes with them. */
#ifndef TRAINER_ERROR_H
#define TRAINER_ERROR_H

/* Codes are the process exit codes of SPEC.md, so trainer/ can exit with err.code as is. */
enum err_code {
    ERR_OK = 0,
    ERR_INTERNAL = 1, /* a library call failed in a way the user could not cause */
    ERR_USAGE = 2,    /* bad command line */
    ERR_INPUT = 3,    /* bad dataset, model file or checkpoint */
    ERR_IO = 4,       /* read/write failure: unwritable directory, full disk */
    ERR_DIVERGED = 5, /* non-finite loss or gradient */
    ERR_STOPPED = 75, /* stopped by a signal after writing a checkpoint */
};

/* msg is "FILE: what is wrong" (or just "what is wrong" when no file is involved);
 * trainer/ prefixes it with "trainer: error: ". */
struct error {
    int code;
    char msg[512];
};

/* Sets err (when err is not NULL) and returns code, so callers can write
 * `return error_set(err, ERR_INPUT, "%s: no /images", path);`. */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets err to ERR_OK with an empty message. */
void error_clear(struct error *err);

#endif

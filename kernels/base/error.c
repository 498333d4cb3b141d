/* error.c: filling a struct error. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int error_set(struct error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void error_clear(struct error *err)
{
    if (err) {
        err->code = ERR_OK;
        err->msg[0] = '\0';
    }
}

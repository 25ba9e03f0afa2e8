/* Error values. Functions return 0 or a negative errno-style code; where a
 * caller needs to know what went wrong in words (a file the user gave us),
 * the function also fills a struct lmp_error with the code and a message
 * that names the offending key, tensor or byte offset. Library code never
 * prints: the caller logs once, at the boundary. */
#pragma once

#include <stddef.h>

#include "common/macros.h"

#define LMP_ERROR_MSG_MAX 512

struct lmp_error {
        int code;                       /* negative errno-style value, 0 if none */
        char msg[LMP_ERROR_MSG_MAX];    /* human-readable, no trailing newline */
};

/* Fills *err (may be NULL) and returns code, so that callers can write
 * `return lmp_error_set(err, -EINVAL, "...")`. */
int lmp_error_set(struct lmp_error *err, int code, const char *fmt, ...) LMP_PRINTF(3, 4);

/* Prepends context to an existing message: "model x.gguf: <old message>". */
void lmp_error_prefix(struct lmp_error *err, const char *fmt, ...) LMP_PRINTF(2, 3);

/* A short name for an errno-style code, e.g. "EINVAL" (never NULL). */
const char *lmp_strerror_name(int code);

/* Writing a file so that it appears whole or not at all: the data goes to
 * PATH.tmp beside it, which is renamed over PATH only when every write and
 * the close succeeded, and removed otherwise. The quantizer and the model
 * generator write multi-GB files this way, so that an interrupted run never
 * leaves a truncated model under the name a configuration points to. */
#pragma once

#include <stdio.h>

#include "common/error.h"

struct lmp_atomic_file {
        FILE *f;                /* write here */
        char *tmp_path;
        const char *path;       /* borrowed */
};

/* Opens PATH.tmp for writing. On failure nothing is left to close. */
int lmp_atomic_open(const char *path, struct lmp_atomic_file *af, struct lmp_error *err);

/* Closes the file, and renames it into place when r >= 0 (the writer's
 * result so far) or removes it when not. Returns r, or the close/rename
 * error. Safe to call on a struct that lmp_atomic_open left empty. */
int lmp_atomic_close(struct lmp_atomic_file *af, int r, struct lmp_error *err);

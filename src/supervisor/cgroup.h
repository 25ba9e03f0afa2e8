/* Per-worker memory cgroups (see cgroup.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct lmp_cgroups {
        bool ready;
        bool v2;
        char base[1024];        /* our cgroup's directory */
};

/* Finds our cgroup and, on v2, moves the supervisor into a leaf so that the
 * workers' cgroups can have the memory controller. */
int lmp_cgroups_prepare(struct lmp_cgroups *cg, struct lmp_error *err);

/* Creates (or reuses) the worker's cgroup with its memory limit; fills in
 * its directory, which the child joins (lmp_cgroups_enter) and the
 * supervisor removes when it is done with it (lmp_cgroups_remove). */
int lmp_cgroups_worker(struct lmp_cgroups *cg, const char *worker, uint64_t limit, char *ret_dir, size_t dir_size,
                       struct lmp_error *err);

/* In the forked child, before exec: joins the cgroup of directory dir. */
int lmp_cgroups_enter(const char *dir);

/* Removes a worker's cgroup once no process is left in it (the kernel
 * refuses before: -EBUSY). Returns 0 or a negative errno-style code. */
int lmp_cgroups_remove(const char *dir);

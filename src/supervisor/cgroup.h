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

/* Creates (or reuses) the worker's cgroup with its memory limit; fills the
 * path of its cgroup.procs, which the child writes itself into. */
int lmp_cgroups_worker(struct lmp_cgroups *cg, const char *worker, uint64_t limit, char *ret_procs,
                       size_t procs_size, struct lmp_error *err);

/* In the forked child, before exec: joins the cgroup. */
int lmp_cgroups_enter(const char *procs);

/* Memory figures from /proc and the cgroup filesystem: a process's RSS and
 * PSS, the resident/proportional/private bytes of one of its mappings (to
 * prove the weight store is shared), MemAvailable, and the memory limit and
 * usage of our cgroup (v2 memory.max/memory.current, or v1
 * memory.limit_in_bytes/memory.usage_in_bytes). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#define LMP_MEM_UNLIMITED UINT64_MAX

struct lmp_mem_usage {
        uint64_t rss;
        uint64_t pss;
        uint64_t shared;        /* Shared_Clean + Shared_Dirty */
        uint64_t private_;      /* Private_Clean + Private_Dirty */
};

/* Whole process (pid 0: ourselves), from smaps_rollup. */
int lmp_proc_mem(pid_t pid, struct lmp_mem_usage *ret);

/* Sum over the mappings whose path/name contains `name` (e.g. the weight
 * store's memfd name), from smaps. -ENOENT when none. */
int lmp_proc_region_mem(pid_t pid, const char *name, struct lmp_mem_usage *ret);

/* MemAvailable in bytes. */
int lmp_mem_available(uint64_t *ret);

/* The memory limit of our cgroup (LMP_MEM_UNLIMITED when none) and its
 * current usage (0 when unknown). */
int lmp_cgroup_memory(uint64_t *ret_limit, uint64_t *ret_usage);

/* Formats bytes as "1.2 GiB" into buf. */
const char *lmp_fmt_bytes(uint64_t bytes, char buf[static 32]);

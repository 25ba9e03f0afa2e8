/* Reading memory figures from /proc and /sys/fs/cgroup (see procmem.h).
 * These run outside hot paths: at load, on a timer, for stats requests. */
#include "common/procmem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int open_proc(pid_t pid, const char *file, FILE **ret) {
        char path[64];
        if (pid)
                snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
        else
                snprintf(path, sizeof(path), "/proc/self/%s", file);
        *ret = fopen(path, "re");
        return *ret ? 0 : -errno;
}

/* Adds an smaps "Key:   123 kB" line's value to the matching field. */
static void add_smaps_line(const char *line, struct lmp_mem_usage *m) {
        unsigned long long kb;
        char key[32];
        if (sscanf(line, "%31[^:]: %llu kB", key, &kb) != 2)
                return;
        uint64_t b = (uint64_t)kb * 1024;
        if (strcmp(key, "Rss") == 0)
                m->rss += b;
        else if (strcmp(key, "Pss") == 0)
                m->pss += b;
        else if (strcmp(key, "Shared_Clean") == 0 || strcmp(key, "Shared_Dirty") == 0)
                m->shared += b;
        else if (strcmp(key, "Private_Clean") == 0 || strcmp(key, "Private_Dirty") == 0)
                m->private_ += b;
}

int lmp_proc_mem(pid_t pid, struct lmp_mem_usage *ret) {
        struct lmp_mem_usage m = { 0 };
        char line[256];
        FILE *f;
        int r = open_proc(pid, "smaps_rollup", &f);
        if (r < 0)
                return r;
        while (fgets(line, sizeof(line), f))
                add_smaps_line(line, &m);
        fclose(f);
        *ret = m;
        return 0;
}

/* A mapping header: "7f..-7f.. r--s 00000000 00:01 1234   /memfd:name (deleted)". */
static bool is_header(const char *line) {
        const char *dash = strchr(line, '-');
        const char *sp = strchr(line, ' ');
        return dash && sp && dash < sp && line[0] != ' ' && strchr(line, ':') > sp;
}

int lmp_proc_region_mem(pid_t pid, const char *name, struct lmp_mem_usage *ret) {
        struct lmp_mem_usage m = { 0 };
        char line[1024];
        bool in = false, found = false;
        FILE *f;
        int r = open_proc(pid, "smaps", &f);
        if (r < 0)
                return r;
        while (fgets(line, sizeof(line), f)) {
                if (is_header(line)) {
                        in = strstr(line, name) != NULL;
                        found |= in;
                } else if (in) {
                        add_smaps_line(line, &m);
                }
        }
        fclose(f);
        if (!found)
                return -ENOENT;
        *ret = m;
        return 0;
}

int lmp_mem_available(uint64_t *ret) {
        char line[256];
        unsigned long long kb;
        FILE *f = fopen("/proc/meminfo", "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                        fclose(f);
                        *ret = (uint64_t)kb * 1024;
                        return 0;
                }
        }
        fclose(f);
        return -ENOENT;
}

static int read_u64_file(const char *path, uint64_t *ret) {
        char buf[64];
        unsigned long long v;
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        if (!fgets(buf, sizeof(buf), f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        if (strncmp(buf, "max", 3) == 0) {
                *ret = LMP_MEM_UNLIMITED;
                return 0;
        }
        if (sscanf(buf, "%llu", &v) != 1)
                return -EINVAL;
        *ret = v;
        return 0;
}

int lmp_cgroup_memory(uint64_t *ret_limit, uint64_t *ret_usage) {
        char line[1024], path[1200];
        uint64_t limit = LMP_MEM_UNLIMITED, usage = 0;
        FILE *f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                if (strncmp(line, "0::", 3) == 0) {
                        /* cgroup v2 */
                        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
                        if (read_u64_file(path, &limit) == 0) {
                                snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.current", line + 3);
                                read_u64_file(path, &usage);
                                break;
                        }
                } else {
                        /* cgroup v1: "N:memory:/path" (controllers may be combined) */
                        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                        if (!c2)
                                continue;
                        *c2 = '\0';
                        if (!strstr(c1 + 1, "memory"))
                                continue;
                        snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", c2 + 1);
                        if (read_u64_file(path, &limit) == 0) {
                                /* v1 says "no limit" with a huge page-rounded number */
                                if (limit >= (UINT64_C(1) << 62))
                                        limit = LMP_MEM_UNLIMITED;
                                snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", c2 + 1);
                                read_u64_file(path, &usage);
                                break;
                        }
                }
        }
        fclose(f);
        *ret_limit = limit;
        *ret_usage = usage;
        return 0;
}

const char *lmp_fmt_bytes(uint64_t bytes, char buf[static 32]) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double)bytes;
        int u = 0;
        if (bytes == LMP_MEM_UNLIMITED) {
                snprintf(buf, 32, "unlimited");
                return buf;
        }
        while (v >= 1024 && u < 4) {
                v /= 1024;
                u++;
        }
        snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
        return buf;
}

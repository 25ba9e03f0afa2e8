/* Per-worker memory cgroups. When a model sets memory_max, each of its
 * workers runs in its own child cgroup of ours with that limit, so that a
 * worker that grows past it is killed by the kernel alone (and respawned),
 * not the whole service.
 *
 * cgroup v2 (systemd's Delegate=memory): a cgroup with processes cannot
 * have children with controllers enabled, so the supervisor first moves
 * itself into a leaf "supervisor" and enables +memory for the children.
 * cgroup v1: children of our memory-controller cgroup, no such rule. */
#include "supervisor/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, text, strlen(text));
        int r = n == (ssize_t)strlen(text) ? 0 : -errno;
        close(fd);
        return r;
}

/* Our own cgroup directory: v2 when the unified hierarchy has the memory
 * controller, else v1's memory hierarchy. */
static int own_cgroup(struct lmp_cgroups *cg) {
        char line[1024];
        FILE *f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return -errno;
        cg->base[0] = '\0';
        while (fgets(line, sizeof(line), f)) {
                char *nl = strchr(line, '\n'), *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (nl)
                        *nl = '\0';
                if (!c2)
                        continue;
                *c2 = '\0';
                if (strcmp(line, "0") == 0 && c1[1] == '\0') {
                        char ctl[1200];
                        snprintf(ctl, sizeof(ctl), "/sys/fs/cgroup%s/cgroup.controllers", c2 + 1);
                        FILE *cf = fopen(ctl, "re");
                        char buf[256] = "";
                        if (cf) {
                                if (!fgets(buf, sizeof(buf), cf))
                                        buf[0] = '\0';
                                fclose(cf);
                        }
                        if (strstr(buf, "memory")) {
                                snprintf(cg->base, sizeof(cg->base), "/sys/fs/cgroup%s", c2 + 1);
                                cg->v2 = true;
                                break;
                        }
                } else if (strstr(c1 + 1, "memory")) {
                        snprintf(cg->base, sizeof(cg->base), "/sys/fs/cgroup/memory%s", c2 + 1);
                        cg->v2 = false;
                }
        }
        fclose(f);
        /* "/sys/fs/cgroup/" + "/" for the root cgroup: drop the double slash */
        size_t n = strlen(cg->base);
        if (n > 1 && cg->base[n - 1] == '/')
                cg->base[n - 1] = '\0';
        return cg->base[0] ? 0 : -ENOENT;
}

int lmp_cgroups_prepare(struct lmp_cgroups *cg, struct lmp_error *err) {
        char path[1200];
        int r;

        if (cg->ready)
                return 0;
        r = own_cgroup(cg);
        if (r < 0)
                return lmp_error_set(err, r, "no memory cgroup controller is available to this process");
        if (cg->v2) {
                snprintf(path, sizeof(path), "%s/supervisor", cg->base);
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return lmp_error_set(err, -errno, "%s: %s (is the memory controller delegated?)", path,
                                             strerror(errno));
                snprintf(path, sizeof(path), "%s/supervisor/cgroup.procs", cg->base);
                char pid[32];
                snprintf(pid, sizeof(pid), "%d", (int)getpid());
                if ((r = write_file(path, pid)) < 0)
                        return lmp_error_set(err, r, "%s: %s", path, strerror(-r));
                snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg->base);
                if ((r = write_file(path, "+memory")) < 0)
                        return lmp_error_set(err, r, "%s: %s", path, strerror(-r));
        }
        cg->ready = true;
        return 0;
}

int lmp_cgroups_worker(struct lmp_cgroups *cg, const char *worker, uint64_t limit, char *ret_dir, size_t dir_size,
                       struct lmp_error *err) {
        char dir[1200], path[1300], value[32];
        int r;

        /* "model/0" -> "worker-model-0" */
        int n = snprintf(dir, sizeof(dir), "%s/worker-", cg->base);
        for (const char *p = worker; *p && (size_t)n < sizeof(dir) - 1; p++)
                dir[n++] = *p == '/' ? '-' : *p;
        dir[n] = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return lmp_error_set(err, -errno, "%s: %s", dir, strerror(errno));
        snprintf(value, sizeof(value), "%" PRIu64, limit);
        snprintf(path, sizeof(path), "%s/%s", dir, cg->v2 ? "memory.max" : "memory.limit_in_bytes");
        if ((r = write_file(path, value)) < 0)
                return lmp_error_set(err, r, "%s: %s", path, strerror(-r));
        if (cg->v2) {
                /* no swapping around the limit */
                snprintf(path, sizeof(path), "%s/memory.swap.max", dir);
                write_file(path, "0");
        }
        if ((size_t)snprintf(ret_dir, dir_size, "%s", dir) >= dir_size)
                return lmp_error_set(err, -ENAMETOOLONG, "%s: cgroup path too long", dir);
        return 0;
}

/* Runs in the forked child before exec: async-signal-safe calls only
 * (open, openat, write, close). */
int lmp_cgroups_enter(const char *dir) {
        char pid[24], *p = pid + sizeof(pid) - 1;
        unsigned v = (unsigned)getpid();
        *p = '\0';
        do {
                *--p = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        int fd = openat(dfd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        close(dfd);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, p, strlen(p));
        close(fd);
        return n > 0 ? 0 : -EIO;
}

int lmp_cgroups_remove(const char *dir) {
        return rmdir(dir) < 0 ? -errno : 0;
}

/* Where lmpoold's ipc sockets live, and why no other local user can get
 * between it and its workers or its clients.
 *
 * The client socket sits in the runtime directory (mode 0750, group
 * router.group) with mode 0660: only the daemon's user and that group may
 * connect (Linux checks write permission on the socket file). The workers'
 * socket sits in a private directory made by mkdtemp inside it (mode 0700):
 * only the daemon's own user can reach it, and the router's ZAP handler
 * takes only connections from its own live worker children (zap.c).
 *
 * A directory is used only after it is checked through descriptors walked
 * from "/" with O_NOFOLLOW (no path is trusted twice): it must be ours, not
 * writable by group or others and not a symlink, and every directory above
 * it must belong to root or to us and be writable by no one else unless
 * sticky. Nothing another user does can then swap a directory or a socket
 * under us between the check and the bind. A directory planted by another
 * user (the /tmp fallback is the classic case) is refused with an error,
 * never used. Known limit: the directories a symlink on the way points to
 * are checked themselves, not their own ancestors. */
#include "common/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lmp_rundir_default_path(char *buf, size_t size) {
        const char *rt = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");
        int n;
        if (rt && *rt)
                /* RuntimeDirectory= may list several, separated by ':' */
                n = snprintf(buf, size, "%.*s", (int)strcspn(rt, ":"), rt);
        else if (xdg && *xdg)
                n = snprintf(buf, size, "%s/lmpool", xdg);
        else
                n = snprintf(buf, size, "/tmp/lmpool-%u", (unsigned)geteuid());
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static bool owner_ok(const struct stat *st) {
        return st->st_uid == 0 || st->st_uid == geteuid();
}

/* A directory above the one we use: root's or ours, and writable by others
 * only with the sticky bit (where they cannot rename or remove our
 * entries). */
static int check_ancestor(int fd, const char *path, struct lmp_error *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!owner_ok(&st))
                return lmp_error_set(err, -EPERM, "%s belongs to uid %u, not to root or to us (uid %u): another "
                                     "user could swap what is below it; refusing to use it", path,
                                     (unsigned)st.st_uid, (unsigned)geteuid());
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
                return lmp_error_set(err, -EPERM, "%s (mode %04o) is writable by other users and not sticky: "
                                     "refusing to use a directory below it", path, (unsigned)(st.st_mode & 07777));
        return 0;
}

static int check_final(int fd, const char *path, struct lmp_error *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return lmp_error_set(err, -ENOTDIR, "%s: not a directory", path);
        if (st.st_uid != geteuid())
                return lmp_error_set(err, -EPERM, "runtime directory %s belongs to uid %u, not to us (uid %u): "
                                     "refusing to use it (someone else created it; remove it, or set "
                                     "RUNTIME_DIRECTORY or router.endpoint elsewhere)", path, (unsigned)st.st_uid,
                                     (unsigned)geteuid());
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return lmp_error_set(err, -EPERM, "runtime directory %s has mode %04o: group or others may write "
                                     "in it and swap our sockets; refusing to use it (chmod 750 it if it is "
                                     "really ours)", path, (unsigned)(st.st_mode & 07777));
        return 0;
}

int lmp_rundir_open(const char *path, bool create, bool manage, gid_t gid, int *ret_fd, bool *ret_created,
                    struct lmp_error *err) {
        char buf[PATH_MAX], sofar[PATH_MAX] = "";
        bool created = false;
        int fd, r;

        if (path[0] != '/')
                return lmp_error_set(err, -EINVAL, "%s: not an absolute path", path);
        if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf))
                return lmp_error_set(err, -ENAMETOOLONG, "%s: path too long", path);
        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return lmp_error_set(err, -errno, "/: %s", strerror(errno));
        char *save = NULL, *name = strtok_r(buf, "/", &save);
        if (!name) {
                close(fd);
                return lmp_error_set(err, -EINVAL, "%s: the root directory cannot be a runtime directory", path);
        }
        while (name) {
                char *next = strtok_r(NULL, "/", &save);
                bool last = next == NULL;
                struct stat st;
                int child;

                if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
                        close(fd);
                        return lmp_error_set(err, -EINVAL, "%s: '.' and '..' are not allowed in the path", path);
                }
                if ((r = check_ancestor(fd, sofar[0] ? sofar : "/", err)) < 0) {
                        close(fd);
                        return r;
                }
                size_t sl = strlen(sofar);
                snprintf(sofar + sl, sizeof(sofar) - sl, "/%s", name);
                if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT || !create) {
                                r = lmp_error_set(err, -errno, "%s: %s", sofar, strerror(errno));
                                close(fd);
                                return r;
                        }
                        /* Ours from birth: 0700 under our umask until set up below. */
                        if (mkdirat(fd, name, 0700) == 0) {
                                created = last;
                        } else if (errno != EEXIST) {
                                r = lmp_error_set(err, -errno, "cannot create %s: %s", sofar, strerror(errno));
                                close(fd);
                                return r;
                        }
                        child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (child >= 0 && !last)
                                fchmod(child, 0755); /* a parent we made: clients must pass through it */
                } else if (S_ISLNK(st.st_mode)) {
                        if (last || !owner_ok(&st)) {
                                r = lmp_error_set(err, -ELOOP, "%s is a symlink%s: refusing to use it", sofar,
                                                  last ? "" : " that belongs to another user");
                                close(fd);
                                return r;
                        }
                        child = openat(fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
                } else {
                        child = openat(fd, name, (last ? O_RDONLY : O_PATH) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (child < 0) {
                        r = lmp_error_set(err, -errno, "%s: %s", sofar, errno == ELOOP ? "is a symlink" : strerror(errno));
                        close(fd);
                        return r;
                }
                close(fd);
                fd = child;
                name = next;
        }
        if ((r = check_final(fd, path, err)) < 0) {
                close(fd);
                return r;
        }
        if (manage || created) {
                if (gid != LMP_RUNDIR_NO_GROUP && fchown(fd, (uid_t)-1, gid) < 0) {
                        r = lmp_error_set(err, -errno, "cannot give %s to group %u (router.group): %s (the daemon's "
                                          "user must be a member of it)", path, (unsigned)gid, strerror(errno));
                        close(fd);
                        return r;
                }
                if (fchmod(fd, 0750) < 0) {
                        r = lmp_error_set(err, -errno, "chmod 750 %s: %s", path, strerror(errno));
                        close(fd);
                        return r;
                }
        }
        *ret_fd = fd;
        if (ret_created)
                *ret_created = created;
        return 0;
}

int lmp_rundir_private(const char *parent, char *buf, size_t size, struct lmp_error *err) {
        struct stat st;
        if ((size_t)snprintf(buf, size, "%s/workers-XXXXXX", parent) >= size)
                return lmp_error_set(err, -ENAMETOOLONG, "%s: path too long", parent);
        if (!mkdtemp(buf))
                return lmp_error_set(err, -errno, "cannot create a private directory in %s: %s", parent,
                                     strerror(errno));
        /* mkdtemp made it 0700 and ours; the parent is checked, so it stays so. */
        if (lstat(buf, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
                return lmp_error_set(err, -EPERM, "%s: not the private directory just made", buf);
        return 0;
}

int lmp_rundir_socket_access(int dirfd, const char *name, gid_t gid, struct lmp_error *err) {
        if (gid != LMP_RUNDIR_NO_GROUP && fchownat(dirfd, name, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return lmp_error_set(err, -errno, "cannot give socket %s to group %u (router.group): %s", name,
                                     (unsigned)gid, strerror(errno));
        if (fchmodat(dirfd, name, 0660, 0) < 0)
                return lmp_error_set(err, -errno, "chmod 660 socket %s: %s", name, strerror(errno));
        return 0;
}

int lmp_rundir_group(const char *group, gid_t *ret, struct lmp_error *err) {
        if (!group[0]) {
                *ret = LMP_RUNDIR_NO_GROUP;
                return 0;
        }
        struct group *g = getgrnam(group);
        if (g) {
                *ret = g->gr_gid;
                return 0;
        }
        char *end;
        errno = 0;
        unsigned long v = strtoul(group, &end, 10);
        if (*end || errno || v > 0x7fffffffUL)
                return lmp_error_set(err, -ENOENT, "router.group: no group named '%s'", group);
        *ret = (gid_t)v;
        return 0;
}

/* The daemon's runtime directory and the directories of its ipc sockets,
 * checked before anything is bound in them (see rundir.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

#define LMP_RUNDIR_NO_GROUP ((gid_t)-1)

/* The runtime directory when the configuration does not name one: the
 * first directory of $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=), else
 * $XDG_RUNTIME_DIR/lmpool, else /tmp/lmpool-$UID. -ENAMETOOLONG if it does
 * not fit buf. */
int lmp_rundir_default_path(char *buf, size_t size);

/* Opens directory `path` (absolute), creating it and missing parents when
 * `create`, and checks it before anything is bound in it:
 *  - it is not a symlink, it belongs to our effective uid, and neither its
 *    group nor others may write in it;
 *  - every directory above it belongs to root or to us and is not writable
 *    by others unless sticky (/tmp), and a symlink on the way belongs to
 *    root or to us;
 * so that no other user can put or swap anything in it afterwards. With
 * `manage` (a directory that is ours to set up: the runtime directory, or
 * one we created), it is then given mode 0750 and group `gid` (unless
 * LMP_RUNDIR_NO_GROUP). Returns 0 and an O_CLOEXEC descriptor of it in
 * *ret_fd, or a negative errno with a message saying what to fix. */
int lmp_rundir_open(const char *path, bool create, bool manage, gid_t gid, int *ret_fd, bool *ret_created,
                    struct lmp_error *err);

/* Creates a private directory `workers-XXXXXX` (mode 0700, ours) in the
 * runtime directory `parent` for the workers' socket; its path goes in buf. */
int lmp_rundir_private(const char *parent, char *buf, size_t size, struct lmp_error *err);

/* After an ipc socket `name` was bound in dirfd (created 0600 under the
 * daemon's umask 0077): gives it group gid (unless LMP_RUNDIR_NO_GROUP) and
 * mode 0660, in that order, so that no one else is ever let in. */
int lmp_rundir_socket_access(int dirfd, const char *name, gid_t gid, struct lmp_error *err);

/* Resolves router.group ("" = LMP_RUNDIR_NO_GROUP): a name or a numeric gid. */
int lmp_rundir_group(const char *group, gid_t *ret, struct lmp_error *err);

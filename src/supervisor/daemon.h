/* lmpoold's state: the models with their weight stores, the process table
 * of workers, and the router (router/router.h), which has its own state
 * and a view of each model and worker. One thread owns all of it: the poll
 * loop in supervisor.c, which calls into the router for the ZeroMQ side. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/log.h"
#include "common/procmem.h"
#include "config/config.h"
#include "router/router.h"
#include "store/store.h"
#include "supervisor/cgroup.h"

/* A row of the process table. Its name, pid and state are in the router's
 * view of it (rw), which the supervisor keeps up to date. */
struct lmp_worker_rt {
        struct lmp_router_worker *rw;
        double spawned_ms, respawn_at_ms;
        int backoff_ms;
        char cgroup[1200];              /* its memory cgroup's directory (cgroup.c), "" if none */
        int report_fd;                  /* read end of its report pipe (worker.h), -1 if none */
};

/* A model that was loaded is serving (its workers are respawned when they
 * die), reloading (store: mmap, its file changed: its workers are stopped
 * and the file is loaded again once it has stopped changing) or failed (its
 * workers cannot load it, or its file no longer loads: nothing is
 * respawned, its requests get model_failed). */
enum lmp_model_state {
        LMP_MODEL_SERVING,
        LMP_MODEL_RELOADING,
        LMP_MODEL_FAILED,
};

/* What a model file was at one time (store: mmap). */
struct lmp_file_id {
        bool exists;
        uint64_t dev, ino, size;
        int64_t mtime_ns;
};

struct lmp_model_rt {
        const struct lmp_model_config *cfg;
        struct lmp_router_model *rm;    /* the router's view, which it keeps up to date */
        bool loaded;                    /* false: refused at load (error logged) */
        enum lmp_model_state state;
        char failed[512];               /* why it cannot serve (state failed, or refused at load) */
        int faults;                     /* workers in a row that could not load it or died of SIGBUS */
        struct lmp_file_id seen;        /* store: mmap: the file when last looked at */
        double changed_ms;              /* ... and when it last changed */
        struct lmp_store *store;
        struct lmp_store *mmproj_store; /* the vision encoder's (cfg->mmproj), NULL without one */
        uint64_t mmproj_bytes;          /* its file's size, for the fit check */
        uint32_t n_embd;                /* the model's width (an mmproj must project to it) */
        char arch[32];
        enum lmp_model_kind kind;
        uint32_t n_ctx;
        uint64_t kv_bytes, scratch_bytes; /* per worker, estimated */
        struct lmp_worker_rt *workers;
        int n_workers;
};

struct lmp_daemon {
        struct lmp_config *cfg;
        const char *config_path;
        char exe[4096];                 /* what workers are exec'd from */

        /* Access (rundir.c, docs/security.md) */
        char rundir[512];               /* the runtime directory */
        int rundir_fd;                  /* -1 when not open */
        char workers_dir[512];          /* private (0700) directory of the workers' socket */

        struct lmp_model_rt *models;
        size_t n_models;

        struct lmp_router router;       /* sockets, queues, requests, and its views of the table */
        int sigfd;
        int inotify_fd;                 /* watches the directories of store: mmap files; -1 if none */

        bool ready_notified;
        bool stopping;
        double stop_deadline_ms;
        double next_hb_ms, next_mem_ms, next_watchdog_ms, next_status_ms;
        uint64_t watchdog_usec;
        struct lmp_cgroups cgroups;
};

/* supervisor.c: what the router tells the supervisor (on_worker_ready). */
void lmp_supervisor_worker_ready(struct lmp_router *rt, struct lmp_router_worker *w, void *userdata);

/* lmpoold's state: the models with their weight stores, the process table
 * of workers, and the requests in flight. One thread owns all of it: the
 * poll loop in supervisor.c, which calls into router.c for the ZeroMQ side.
 *
 * Requests live in one of two places: a model's queue (bounded by
 * limits.queue_length over all models) or a worker's running list (bounded
 * by its slots). Every request has a deadline. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/curvekey.h"
#include "common/log.h"
#include "common/procmem.h"
#include "config/config.h"
#include "proto/proto.h"
#include "router/cache.h"
#include "router/dispatch.h"
#include "store/store.h"
#include "supervisor/cgroup.h"

#define LMP_CLIENT_ID_MAX 256   /* ZeroMQ routing ids are at most 255 bytes */
#define LMP_IDENT_MAX 64        /* "uid:1000", "key:" + a Z85 CURVE key */

enum lmp_worker_state {
        LMP_WORKER_STARTING,    /* spawned, not READY yet */
        LMP_WORKER_READY,
        LMP_WORKER_STOPPING,    /* asked to finish and exit */
        LMP_WORKER_EXITED,      /* reaped; respawn_at says when it comes back */
};

struct lmp_request_rt {
        uint64_t rid;
        uint8_t client[LMP_CLIENT_ID_MAX];
        uint8_t client_len;
        bool delimiter;                 /* the client sent an empty frame first */
        char ident[LMP_IDENT_MAX];      /* who the client is across connections; "" unknown */
        char id[LMP_PROTO_ID_MAX + 1];
        size_t model;
        char *job;                      /* canonical request JSON for the worker */
        size_t job_len;
        double arrival_ms, dispatch_ms, deadline_ms;
        struct lmp_worker_rt *worker;   /* NULL while queued */
        bool streamed;                  /* its worker sent a token: it can no longer be retried */
        uint64_t affinity;              /* its conversation's key (router.c), never 0 */
        /* A deterministic request: its key in the response cache (its
         * canonical JSON, id "-"), the start of its events up to the end
         * of its id, and its events as they stream. NULL key: not cached. */
        char *cache_key;
        size_t cache_key_len;
        char *cache_prefix;
        size_t cache_prefix_len;
        struct lmp_rcache_build cache_build;
        size_t cache_held;              /* of these, counted in held_bytes */
        uint8_t retries;                /* times it was run again (limits.retries) */
        struct lmp_request_rt *prev, *next; /* in the queue or the worker's list */
};

struct lmp_req_list {
        struct lmp_request_rt *head, *tail;
        size_t n;
};

struct lmp_worker_rt {
        char name[96];                  /* "MODEL/INDEX": the ZeroMQ routing id too */
        size_t model;
        int index;
        pid_t pid;
        enum lmp_worker_state state;
        uint32_t slots;
        double spawned_ms, ready_ms, last_seen_ms, respawn_at_ms;
        int backoff_ms;
        uint64_t restarts, served;
        uint64_t rss, pss, store_private;       /* last figures */
        struct lmp_req_list running;
        char cgroup_procs[1200];        /* its memory cgroup's cgroup.procs, "" if none */
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
        bool loaded;                    /* false: refused at load (error logged) */
        enum lmp_model_state state;
        char failed[512];               /* why it cannot serve (state failed, or refused at load) */
        int faults;                     /* workers in a row that could not load it or died of SIGBUS */
        struct lmp_file_id seen;        /* store: mmap: the file when last looked at */
        double changed_ms;              /* ... and when it last changed */
        struct lmp_store *store;
        char arch[32];
        uint32_t n_ctx;
        uint64_t kv_bytes, scratch_bytes; /* per worker, estimated */
        struct lmp_worker_rt *workers;
        int n_workers;
        struct lmp_req_list queue;
};

struct lmp_daemon_stats {
        uint64_t total, ok, errors, busy, timeouts, worker_lost;
        uint64_t retried;               /* requests run again after their worker died before a token */
        uint64_t affinity_hits;         /* went to the worker that served their conversation last */
        uint64_t affinity_misses;       /* that worker was saturated, another idle: moved (recomputed) */
        uint64_t affinity_new;          /* first seen (or forgotten): any worker */
        uint64_t cache_hits, cache_misses; /* deterministic requests answered from the cache, or not */
        uint64_t events_dropped;        /* token events a client did not read in time */
        uint64_t dropped;               /* requests whose terminal event never reached the client */
        uint64_t slow_consumer;         /* requests stopped because their client read too slowly */
        uint64_t client_gone;           /* requests cancelled because their client disconnected */
        uint64_t clients_refused;       /* connections closed at limits.max_clients */
        uint64_t clients_overlong;      /* connections closed while sending a message without end */
};

/* A client connection, known from the client sockets' monitors (ACCEPTED
 * and DISCONNECTED carry its descriptor) and from ZMQ_SRCFD on the
 * messages that come through it. */
struct lmp_conn {
        bool open;
        bool closing;                   /* we shut it down (limit, over-long message) */
        uint8_t sock;                   /* 0: the endpoint, 1: router.tcp */
        uint8_t rid_len;                /* its routing id, once a message has shown it */
        uint8_t rid[LMP_CLIENT_ID_MAX];
        double last_msg_ms;             /* when its last whole message arrived */
};

/* A terminal event its client could not take yet (its queue was full):
 * sent as soon as it can be, or counted dropped at give_up_ms. */
struct lmp_pending {
        struct lmp_pending *next;
        uint8_t client[LMP_CLIENT_ID_MAX];
        uint8_t client_len;
        char ident[LMP_IDENT_MAX];
        bool delimiter;
        bool ok;                        /* a done event: counted ok once delivered */
        double give_up_ms;
        size_t len;
        char data[];                    /* the event JSON */
};

/* Who was kept out (zap.c, router.c): counted, and logged once a second
 * at most so that a flood cannot fill the journal. */
struct lmp_auth_stats {
        uint64_t zap_refused;           /* connections the ZAP handler refused */
        uint64_t worker_frames_refused; /* worker frames dropped by the router */
        uint64_t worker_protocol_errors; /* terminal events forwarded with a header cut short (logged) */
        double last_log_ms;
        uint64_t unlogged;
};

struct lmp_daemon {
        struct lmp_config *cfg;
        const char *config_path;
        char exe[4096];                 /* what workers are exec'd from */
        char backend[512];              /* the private endpoint workers connect to */
        char frontend[512];

        /* Access (rundir.c, zap.c, docs/security.md) */
        char rundir[512];               /* the runtime directory */
        int rundir_fd;                  /* -1 when not open */
        char workers_dir[512];          /* private (0700) directory of the workers' socket */
        int front_dir_fd;               /* directory of the ipc client socket; -1 for tcp */
        gid_t group;                    /* router.group, or (gid_t)-1 */
        void *zap;                      /* the ZAP handler's socket */
        bool curve;                     /* TCP clients speak CURVE */
        struct lmp_curve_key curve_public, curve_secret;
        struct lmp_curve_key *curve_clients; /* the allow-list */
        size_t n_curve_clients;
        struct lmp_auth_stats auth;

        struct lmp_model_rt *models;
        size_t n_models;
        size_t queued;                  /* over all models' queues */

        void *zctx;
        void *front, *front_tcp, *back;
        void *monitor[2];               /* PAIR sockets: events of front and front_tcp */
        int sigfd;
        int inotify_fd;                 /* watches the directories of store: mmap files; -1 if none */

        struct lmp_affinity *affinity;  /* (LMP_AFFINITY_SLOTS) conversation -> worker */
        struct lmp_rcache *rcache;      /* answers to deterministic requests (cache.h) */
        struct lmp_conn *conns;         /* indexed by descriptor */
        size_t n_conns_cap, n_conns_open;
        struct lmp_pending *pending, *pending_tail;
        size_t n_pending;
        double next_tick_ms;            /* pending retries and the receive-memory check */
        uint64_t anon_baseline;         /* the supervisor's anonymous memory at rest */
        uint64_t held_bytes;            /* requests' jobs and kept events, in that memory */
        double last_refused_log_ms, last_overlong_log_ms;
        uint64_t refused_since_log;

        uint64_t next_rid;
        double start_ms;
        bool ready_notified;
        bool stopping;
        double stop_deadline_ms;
        double next_hb_ms, next_mem_ms, next_watchdog_ms, next_status_ms;
        uint64_t watchdog_usec;
        struct lmp_daemon_stats stats;
        double last_overload_ms;        /* overload events: one a second at most */
        uint64_t overload_refused;
        struct lmp_proto_buf out;       /* reused for every event the daemon formats */
        struct lmp_cgroups cgroups;
};

double lmp_now_ms(void);

/* log.level's priority. */
static inline enum lmp_log_priority lmp_log_priority_of(enum lmp_log_level l) {
        switch (l) {
        case LMP_LOG_DEBUG: return LMP_PRI_DEBUG;
        case LMP_LOG_NOTICE: return LMP_PRI_NOTICE;
        case LMP_LOG_WARNING: return LMP_PRI_WARNING;
        case LMP_LOG_ERROR: return LMP_PRI_ERR;
        default: return LMP_PRI_INFO;
        }
}

/* router.c */
int lmp_router_open(struct lmp_daemon *d);
void lmp_router_close(struct lmp_daemon *d);
void lmp_router_on_client(struct lmp_daemon *d, void *sock);
void lmp_router_on_worker(struct lmp_daemon *d);
void lmp_router_dispatch(struct lmp_daemon *d);
void lmp_router_expire(struct lmp_daemon *d, double now);
void lmp_router_heartbeat(struct lmp_daemon *d);
/* Fails every request of a worker that is gone (worker_lost). */
void lmp_router_worker_lost(struct lmp_daemon *d, struct lmp_worker_rt *w, const char *why);
/* Fails every queued request (shutting down). */
void lmp_router_fail_queued(struct lmp_daemon *d, enum lmp_proto_code code, const char *why);
/* Fails the queued requests of one model (it has failed). */
void lmp_router_fail_model_queue(struct lmp_daemon *d, size_t model, enum lmp_proto_code code, const char *why);
/* Forgets the cached answers of a model (its weights changed). */
void lmp_router_cache_drop_model(struct lmp_daemon *d, size_t model);
/* Sends a worker the settings a reload changes (config message). */
void lmp_router_send_config(struct lmp_daemon *d, struct lmp_worker_rt *w);
size_t lmp_router_running(const struct lmp_daemon *d);
void lmp_router_send_stop(struct lmp_daemon *d, struct lmp_worker_rt *w);
/* Raises RLIMIT_NOFILE to what limits.max_clients and the workers need;
 * -EMFILE (logged) when the hard limit cannot hold it. Before any socket. */
int lmp_router_reserve_fds(struct lmp_daemon *d);
/* Reads the client sockets' monitor events (connections come and go). */
void lmp_router_on_monitor(struct lmp_daemon *d, int which);
/* Retries terminal events for slow clients and checks the memory taken by
 * unfinished client messages; returns when it wants to run next. */
double lmp_router_tick(struct lmp_daemon *d, double now);

/* zap.c: the ZAP handler at inproc://zeromq.zap.01, bound before any socket
 * that asks it. Workers' connections pass only from our uid and the pid of
 * one of our live workers (the User-Id of their messages is then that pid);
 * CURVE clients only with a key of the allow-list (User-Id: the key, Z85). */
#define LMP_ZAP_WORKERS "lmpool-workers"
#define LMP_ZAP_CLIENTS "lmpool-clients"
int lmp_zap_open(struct lmp_daemon *d);
void lmp_zap_close(struct lmp_daemon *d);
void lmp_zap_on_request(struct lmp_daemon *d);
/* Counts a refusal and logs it unless one was logged less than a second
 * ago (the log line then says how many went unlogged). */
void lmp_auth_refused(struct lmp_daemon *d, uint64_t *counter, const char *fmt, ...) LMP_PRINTF(3, 4);

/* supervisor.c */
struct lmp_worker_rt *lmp_supervisor_find_worker(struct lmp_daemon *d, const void *name, size_t len);
void lmp_supervisor_worker_ready(struct lmp_daemon *d, struct lmp_worker_rt *w);

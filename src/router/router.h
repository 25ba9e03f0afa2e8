/* The router as a module: its own state (struct lmp_router: sockets,
 * queues, requests, affinity table, response cache, client connections,
 * counters) and what it knows of the models and workers, which is a
 * narrow view the supervisor keeps up to date: a worker's name, pid and
 * state, and what the router itself learns from the worker's messages
 * (slots, requests running, memory figures). The supervisor's process
 * table (supervisor/daemon.h) points at these views and holds the rest
 * (spawn times, back-off, cgroups, report pipes).
 *
 * The router never calls the supervisor: the supervisor calls the
 * functions below from its poll loop and reads the fields it needs; the
 * one thing the router has to tell it, a worker that has become ready,
 * goes through the on_worker_ready hook. Who does what:
 *
 *  - the supervisor sets a worker view's pid and state (starting when it
 *    spawns it, stopping, exited when it reaps it) and a model view's
 *    loaded, failed, why, arch, n_ctx and store_bytes; it sets stopping
 *    and ready (every model ready or failed, for `health`) on the router;
 *  - the router sets a worker ready when its `ready` message passes, and
 *    its slots, last_seen_ms, served and memory figures from its messages.
 *
 * One thread owns all of it: the supervisor's poll loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/curvekey.h"
#include "common/macros.h"
#include "config/config.h"
#include "proto/proto.h"
#include "router/cache.h"
#include "router/semcache.h"
#include "router/dispatch.h"

#define LMP_CLIENT_ID_MAX 256   /* ZeroMQ routing ids are at most 255 bytes */
#define LMP_IDENT_MAX 64        /* "uid:1000", "key:" + a Z85 CURVE key */
#define LMP_WORKER_NAME_MAX 96

enum lmp_worker_state {
        LMP_WORKER_STARTING,    /* spawned, not READY yet */
        LMP_WORKER_READY,
        LMP_WORKER_STOPPING,    /* asked to finish and exit */
        LMP_WORKER_EXITED,      /* reaped; the supervisor respawns it */
};

struct lmp_router_worker;

/* Requests live in one of two places: a model's queue (bounded by
 * limits.queue_length over all models) or a worker's running list
 * (bounded by its slots). Every request has a deadline. */
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
        struct lmp_router_worker *worker; /* NULL while queued */
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
        /* The semantic cache (semcache.h). A request of a model with one
         * waits in rt->sem_waiting (sem_waiting true) while an internal
         * embed request (sem_embed) computes its key's vector; that one
         * (internal true: no client) points back at it (sem_for, NULL once
         * the request is gone). After a miss the request keeps its vector,
         * signature and event prefix, and its events as they stream, to
         * store its answer. NULL sem_sig: not kept. */
        bool internal;
        bool sem_waiting;
        struct lmp_request_rt *sem_embed, *sem_for;
        float *sem_vec;
        size_t sem_dims;
        char *sem_sig;
        size_t sem_sig_len;
        char *sem_prefix;
        size_t sem_prefix_len;
        struct lmp_rcache_build sem_build;
        size_t sem_held;                /* of these, counted in held_bytes */
        uint8_t retries;                /* times it was run again (limits.retries) */
        struct lmp_request_rt *prev, *next; /* in the queue or the worker's list */
};

struct lmp_req_list {
        struct lmp_request_rt *head, *tail;
        size_t n;
};

/* The router's view of a worker. */
struct lmp_router_worker {
        char name[LMP_WORKER_NAME_MAX]; /* "MODEL/INDEX": the ZeroMQ routing id too */
        size_t model;
        int index;
        /* set by the supervisor */
        pid_t pid;                      /* 0 when there is no process */
        enum lmp_worker_state state;    /* but READY, which the router sets */
        uint64_t restarts;              /* for stats */
        /* set by the router from the worker's messages (the supervisor
         * clears slots at a spawn and may refresh the memory figures) */
        uint32_t slots;
        double ready_ms, last_seen_ms;
        uint64_t served;
        uint64_t rss, pss, store_private;
        struct lmp_req_list running;
};

/* What a model serves, from its metadata: text (generate, chat) or one
 * vector per text (embed). An encoder without pooling serves neither. */
enum lmp_model_kind {
        LMP_MODEL_GENERATIVE,
        LMP_MODEL_EMBEDDING,
        LMP_MODEL_NO_POOLING,
};

/* The router's view of a model. */
struct lmp_router_model {
        const struct lmp_model_config *cfg;
        /* set by the supervisor */
        bool loaded;                    /* false: refused at load */
        bool failed;                    /* cannot serve: its requests get model_failed */
        char why[512];                  /* why it was refused or failed */
        char arch[32];
        enum lmp_model_kind kind;
        uint32_t n_ctx;
        uint64_t store_bytes;
        int n_workers;                  /* 0 for a model refused at load */
        /* the router's */
        struct lmp_router_worker *workers; /* (cfg->workers) */
        struct lmp_req_list queue;
        struct lmp_semcache *semcache;  /* NULL: semantic_cache.model is not set */
};

struct lmp_router_stats {
        uint64_t total, ok, errors, busy, timeouts, worker_lost;
        uint64_t retried;               /* requests run again after their worker died before a token */
        uint64_t affinity_hits;         /* went to the worker that served their conversation last */
        uint64_t affinity_misses;       /* that worker was saturated, another idle: moved (recomputed) */
        uint64_t affinity_new;          /* first seen (or forgotten): any worker */
        uint64_t cache_hits, cache_misses; /* deterministic requests answered from the cache, or not */
        /* semantic caches: answered from one, looked up and not found, gone
         * uncached because the embedding model could not give the vector */
        uint64_t semantic_hits, semantic_misses, semantic_unavailable;
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

struct lmp_router {
        struct lmp_config *cfg;         /* the daemon's: a reload changes it, then calls lmp_router_reload() */
        char backend[512];              /* the private endpoint workers connect to */
        char frontend[512];

        /* Access (zap.c, docs/security.md), set before lmp_router_open() */
        int front_dir_fd;               /* directory of the ipc client socket; -1 for tcp */
        gid_t group;                    /* router.group, or (gid_t)-1 */
        void *zap;                      /* the ZAP handler's socket */
        bool curve;                     /* TCP clients speak CURVE */
        struct lmp_curve_key curve_public, curve_secret;
        struct lmp_curve_key *curve_clients; /* the allow-list */
        size_t n_curve_clients;
        struct lmp_auth_stats auth;

        struct lmp_router_model *models;
        size_t n_models;
        size_t queued;                  /* over all models' queues, and sem_waiting */
        struct lmp_req_list sem_waiting; /* requests waiting for their key's vector */

        void *zctx;
        void *front, *front_tcp, *back;
        void *monitor[2];               /* PAIR sockets: events of front and front_tcp */

        struct lmp_affinity *affinity;  /* (LMP_AFFINITY_SLOTS) conversation -> worker */
        struct lmp_rcache *rcache;      /* answers to deterministic requests (cache.h) */
        struct lmp_conn *conns;         /* indexed by descriptor */
        size_t n_conns_cap, n_conns_open;
        struct lmp_pending *pending, *pending_tail;
        size_t n_pending;
        double next_tick_ms;            /* pending retries and the receive-memory check */
        uint64_t anon_baseline;         /* the daemon's anonymous memory at rest */
        uint64_t held_bytes;            /* requests' jobs and kept events, in that memory */
        double last_refused_log_ms, last_overlong_log_ms;
        uint64_t refused_since_log;

        uint64_t next_rid;
        double start_ms;
        bool ready;                     /* every model is ready or failed (health: not "starting") */
        bool stopping;                  /* shutting down: new requests get busy, none is retried */
        struct lmp_router_stats stats;
        double last_overload_ms;        /* overload events: one a second at most */
        uint64_t overload_refused;
        struct lmp_proto_buf out;       /* reused for every event the router formats */

        /* A worker's `ready` message passed: it is ready now, and the
         * router dispatches to it once this returns. */
        void (*on_worker_ready)(struct lmp_router *rt, struct lmp_router_worker *w, void *userdata);
        void *userdata;
};

/* Sets up rt for cfg (which it keeps): a model view per model, a worker
 * view per worker (named, exited, no pid), no sockets yet; -ENOMEM. The
 * caller then fills in endpoints, access and hooks. */
int lmp_router_init(struct lmp_router *rt, struct lmp_config *cfg);
/* Frees what lmp_router_init() and lmp_router_open() made (not cfg). */
void lmp_router_free(struct lmp_router *rt);

/* Raises RLIMIT_NOFILE to what limits.max_clients and the workers need;
 * -EMFILE (logged) when the hard limit cannot hold it. Before any socket. */
int lmp_router_reserve_fds(struct lmp_router *rt);
int lmp_router_open(struct lmp_router *rt);
void lmp_router_close(struct lmp_router *rt);

/* The poll loop's calls: messages on each socket. */
void lmp_router_on_client(struct lmp_router *rt, void *sock);
void lmp_router_on_worker(struct lmp_router *rt);
/* Reads the client sockets' monitor events (connections come and go). */
void lmp_router_on_monitor(struct lmp_router *rt, int which);

/* Sends queued requests to workers with free slots. */
void lmp_router_dispatch(struct lmp_router *rt);
/* Ends requests past their deadline. */
void lmp_router_expire(struct lmp_router *rt, double now);
/* The earliest deadline of a request it holds, 1e300 when none. */
double lmp_router_next_deadline(const struct lmp_router *rt);
/* Sends every ready or stopping worker a heartbeat. */
void lmp_router_heartbeat(struct lmp_router *rt);
/* Retries terminal events for slow clients and checks the memory taken by
 * unfinished client messages; returns when it wants to run next. */
double lmp_router_tick(struct lmp_router *rt, double now);

/* A worker that is gone: its requests that had sent nothing go back to the
 * head of their queue (limits.retries), the others end with worker_lost.
 * Dispatch (after the worker is no longer ready) runs them again. */
void lmp_router_worker_lost(struct lmp_router *rt, struct lmp_router_worker *w, const char *why);
/* Fails every queued request (shutting down). */
void lmp_router_fail_queued(struct lmp_router *rt, enum lmp_proto_code code, const char *why);
/* Fails the queued requests of one model (it has failed). */
void lmp_router_fail_model_queue(struct lmp_router *rt, size_t model, enum lmp_proto_code code, const char *why);
/* Forgets the cached answers of a model (its weights changed). */
void lmp_router_cache_drop_model(struct lmp_router *rt, size_t model);
/* The configuration changed (SIGHUP): applies the cache's limits, forgets
 * answers given under the old settings, sends ready workers theirs. */
void lmp_router_reload(struct lmp_router *rt);
/* Sends a worker the settings a reload changes (config message). */
void lmp_router_send_config(struct lmp_router *rt, struct lmp_router_worker *w);
void lmp_router_send_stop(struct lmp_router *rt, struct lmp_router_worker *w);
/* Requests running on workers, over all models. */
size_t lmp_router_running(const struct lmp_router *rt);

/* zap.c: the ZAP handler at inproc://zeromq.zap.01, bound before any socket
 * that asks it. Workers' connections pass only from our uid and the pid of
 * one of our live workers (the User-Id of their messages is then that pid);
 * CURVE clients only with a key of the allow-list (User-Id: the key, Z85). */
#define LMP_ZAP_WORKERS "lmpool-workers"
#define LMP_ZAP_CLIENTS "lmpool-clients"
int lmp_zap_open(struct lmp_router *rt);
void lmp_zap_close(struct lmp_router *rt);
void lmp_zap_on_request(struct lmp_router *rt);
/* Counts a refusal and logs it unless one was logged less than a second
 * ago (the log line then says how many went unlogged). */
void lmp_auth_refused(struct lmp_router *rt, uint64_t *counter, const char *fmt, ...) LMP_PRINTF(3, 4);

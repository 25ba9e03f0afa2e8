/* The ZeroMQ broker: a ROUTER socket for clients (ipc, and optionally TCP),
 * a ROUTER socket for workers, and the requests between them.
 *
 * A client frame is validated (src/proto) before anything else: a malformed
 * request is answered here and never reaches a worker. A valid generate or
 * chat request gets the model's defaults applied, is re-serialized as the
 * canonical JSON the worker parses, and goes to the least-loaded ready
 * worker of its model with a free slot, or waits in the model's queue. The
 * queue is bounded (limits.queue_length over all models) and so is each
 * client's number of requests in flight (limits.client_requests, per uid
 * or key across its connections): past either, the answer is `busy`.
 * Every request has a deadline.
 *
 * Worker events are forwarded to the client as they come (the worker
 * formats them: the router reads only the small header frame, with the
 * codec both sides share, src/proto/wire.h), which keeps the broker's cost
 * per token to two frame copies. A request whose client has already been
 * answered (timeout, cancel) stays on its worker's list, holding its slot,
 * until the worker confirms it has stopped.
 *
 * Clients are bounded too: connections (limits.max_clients, watched
 * through socket monitors), each connection's queue of events
 * (limits.client_events: a client that does not keep up has its request
 * stopped with `slow_consumer` as its last event), and the memory of
 * messages still arriving (limits.receive_memory). Every request gets
 * exactly one terminal event, or is counted dropped.
 *
 * Its state is its own (router.h): the supervisor calls it from the poll
 * loop and keeps its views of the models and workers up to date, and it
 * never calls the supervisor. Dispatch decisions are dispatch.c's. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "router/router.h"

#include "common/clock.h"
#include "common/grow.h"
#include "common/zparts.h"
#include "common/log.h"
#include "common/procmem.h"
#include "common/rundir.h"
#include "proto/wire.h"
#include "router/dispatch.h"

/* -------------------------------------------------------------- lists */

static void list_push(struct lmp_req_list *l, struct lmp_request_rt *r) {
        r->next = NULL;
        r->prev = l->tail;
        if (l->tail)
                l->tail->next = r;
        else
                l->head = r;
        l->tail = r;
        l->n++;
}

static void list_push_front(struct lmp_req_list *l, struct lmp_request_rt *r) {
        r->prev = NULL;
        r->next = l->head;
        if (l->head)
                l->head->prev = r;
        else
                l->tail = r;
        l->head = r;
        l->n++;
}

static void list_remove(struct lmp_req_list *l, struct lmp_request_rt *r) {
        if (r->prev)
                r->prev->next = r->next;
        else
                l->head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                l->tail = r->prev;
        r->prev = r->next = NULL;
        l->n--;
}

/* Stops collecting r's answer for the cache (it was cancelled, failed, or
 * is stored). */
static void cache_forget(struct lmp_router *rt, struct lmp_request_rt *r) {
        rt->held_bytes -= r->cache_held;
        r->cache_held = 0;
        lmp_rcache_build_clear(&r->cache_build);
        free(r->cache_key);
        free(r->cache_prefix);
        r->cache_key = r->cache_prefix = NULL;
        r->cache_key_len = r->cache_prefix_len = 0;
}

/* Stops keeping r's answer for the semantic cache. */
static void sem_forget(struct lmp_router *rt, struct lmp_request_rt *r) {
        rt->held_bytes -= r->sem_held;
        r->sem_held = 0;
        lmp_rcache_build_clear(&r->sem_build);
        free(r->sem_vec);
        free(r->sem_sig);
        free(r->sem_prefix);
        r->sem_vec = NULL;
        r->sem_sig = r->sem_prefix = NULL;
        r->sem_dims = r->sem_sig_len = r->sem_prefix_len = 0;
}

static void request_free(struct lmp_router *rt, struct lmp_request_rt *r) {
        if (!r)
                return;
        cache_forget(rt, r);
        sem_forget(rt, r);
        if (r->sem_embed)
                r->sem_embed->sem_for = NULL;
        if (r->sem_for)
                r->sem_for->sem_embed = NULL;
        rt->held_bytes -= r->job_len;
        free(r->job);
        free(r);
}

static void semantic_give_up(struct lmp_router *rt, struct lmp_request_rt *e);
static int semantic_caches_new(struct lmp_router *rt);

/* --------------------------------------------------------------- replies */

/* Sends one event to a client without ever blocking the loop: 0, -EAGAIN
 * when the client's queue is full (limits.client_events, ZMQ_SNDHWM), or
 * -EHOSTUNREACH when neither client socket knows it (it is gone). */
static int send_to_client(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter,
                          const char *payload, size_t len) {
        /* Both client sockets share identities' space only within a socket:
         * a TCP client's id is unknown to the ipc socket and vice versa.
         * Try the socket that knows it (ROUTER_MANDATORY says which). */
        void *socks[2] = { rt->front, rt->front_tcp };
        for (int s = 0; s < 2; s++) {
                if (!socks[s])
                        continue;
                /* Once the first frame is queued the rest follow. */
                if (zmq_send(socks[s], client, client_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
                        if (errno == EAGAIN)
                                return -EAGAIN;
                        continue; /* EHOSTUNREACH: not this socket's client */
                }
                if (delimiter)
                        zmq_send(socks[s], "", 0, ZMQ_SNDMORE);
                zmq_send(socks[s], payload, len, 0);
                return 0;
        }
        return -EHOSTUNREACH;
}

static size_t pending_of(struct lmp_router *rt, const uint8_t *client, size_t client_len) {
        size_t n = 0;
        for (struct lmp_pending *p = rt->pending; p; p = p->next)
                n += p->client_len == client_len && memcmp(p->client, client, client_len) == 0;
        return n;
}

/* The last event of a request: sent now, or kept until the client's queue
 * has room (a slow reader still gets exactly one terminal event, after
 * everything queued before it). ok: a done event, counted ok when it is
 * delivered. A request whose terminal event cannot be delivered (the
 * client is gone, or still not reading at give_up_ms) is counted dropped,
 * never ok. */
static void send_terminal(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter,
                          const char *ident, const char *payload, size_t len, bool ok, double give_up_ms) {
        int rc = rt->pending && pending_of(rt, client, client_len) ? -EAGAIN
                                                                 : send_to_client(rt, client, client_len, delimiter,
                                                                                  payload, len);
        if (rc == 0) {
                rt->stats.ok += ok;
                return;
        }
        /* Bounded: a client that does not read holds at most
         * limits.client_requests of these (plus one per answer it asked
         * for while over that), then loses them. */
        struct lmp_pending *p = NULL;
        if (rc == -EAGAIN && pending_of(rt, client, client_len) < (size_t)rt->cfg->client_requests + 8)
                p = malloc(sizeof(*p) + len + 1);
        if (!p) {
                rt->stats.dropped++;
                return;
        }
        memcpy(p->client, client, client_len);
        p->client_len = (uint8_t)client_len;
        snprintf(p->ident, sizeof(p->ident), "%s", ident ? ident : "");
        p->delimiter = delimiter;
        p->ok = ok;
        p->give_up_ms = give_up_ms;
        p->len = len;
        rt->held_bytes += len;
        memcpy(p->data, payload, len);
        p->data[len] = '\0';
        p->next = NULL;
        if (rt->pending_tail)
                rt->pending_tail->next = p;
        else
                rt->pending = p;
        rt->pending_tail = p;
        rt->n_pending++;
}

/* Sends what it can of the terminal events kept for slow clients, in
 * order; gives up on those past their time. */
static void retry_pending(struct lmp_router *rt, double now) {
        struct lmp_pending **pp = &rt->pending, *prev = NULL;
        while (*pp) {
                struct lmp_pending *p = *pp;
                int rc = send_to_client(rt, p->client, p->client_len, p->delimiter, p->data, p->len);
                if (rc == -EAGAIN && now < p->give_up_ms) {
                        prev = p;
                        pp = &p->next;
                        continue;
                }
                if (rc == 0)
                        rt->stats.ok += p->ok;
                else
                        rt->stats.dropped++;
                *pp = p->next;
                if (rt->pending_tail == p)
                        rt->pending_tail = prev;
                rt->n_pending--;
                rt->held_bytes -= p->len;
                free(p);
        }
}

/* Forgets the terminal events kept for a client that is gone. */
static void drop_pending(struct lmp_router *rt, const uint8_t *client, size_t client_len) {
        struct lmp_pending **pp = &rt->pending, *prev = NULL;
        while (*pp) {
                struct lmp_pending *p = *pp;
                if (p->client_len != client_len || memcmp(p->client, client, client_len) != 0) {
                        prev = p;
                        pp = &p->next;
                        continue;
                }
                rt->stats.dropped++;
                *pp = p->next;
                if (rt->pending_tail == p)
                        rt->pending_tail = prev;
                rt->n_pending--;
                rt->held_bytes -= p->len;
                free(p);
        }
}

/* An error event ends a request; counted by its code. ident: who the
 * client is, if known, so that a kept event counts against it. */
static void error_event(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter,
                        const char *ident, const char *id, enum lmp_proto_code code, const char *msg) {
        rt->out.len = 0;
        if (lmp_proto_format_error(&rt->out, id, code, msg) == 0)
                send_terminal(rt, client, client_len, delimiter, ident, rt->out.data, rt->out.len, false,
                              lmp_clock_ms() + rt->cfg->request_timeout_ms);
        rt->stats.errors++;
        if (code == LMP_PROTO_BUSY)
                rt->stats.busy++;
        else if (code == LMP_PROTO_TIMEOUT)
                rt->stats.timeouts++;
        else if (code == LMP_PROTO_WORKER_LOST)
                rt->stats.worker_lost++;
        else if (code == LMP_PROTO_SLOW_CONSUMER)
                rt->stats.slow_consumer++;
}

static void reply_error(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter,
                        const char *id, enum lmp_proto_code code, const char *fmt, ...) LMP_PRINTF(7, 8);

static void reply_error(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter,
                        const char *id, enum lmp_proto_code code, const char *fmt, ...) {
        char msg[LMP_PROTO_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        error_event(rt, client, client_len, delimiter, NULL, id, code, msg);
}

static void request_error(struct lmp_router *rt, struct lmp_request_rt *r, enum lmp_proto_code code,
                          const char *message) {
        error_event(rt, r->client, r->client_len, r->delimiter, r->ident, r->id, code, message);
}

/* An answer (models, stats, health, cancelled) is its request's last event. */
static void send_answer(struct lmp_router *rt, const uint8_t *client, size_t client_len, bool delimiter) {
        send_terminal(rt, client, client_len, delimiter, NULL, rt->out.data, rt->out.len, false,
                      lmp_clock_ms() + rt->cfg->request_timeout_ms);
}

/* ---------------------------------------------------------------- open */

enum socket_kind { FRONT_IPC, FRONT_TCP, BACK };

#define FRONT_LINGER_MS 1000 /* how long a closing front socket sends what it holds */

static void *router_socket(struct lmp_router *rt, const char *endpoint, enum socket_kind kind) {
        int one = 1, zero = 0, hwm = rt->cfg->client_events;
        /* One frame is a whole request: a larger frame closes the connection
         * before it is buffered. */
        int64_t maxsize = LMP_PROTO_FRAME_MAX;
        void *s = zmq_socket(rt->zctx, ZMQ_ROUTER);
        if (!s)
                return NULL;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        if (kind == BACK) {
                /* A second connection claiming a connected worker's routing id
                 * is refused, never handed the worker's jobs; and every
                 * connection must pass the ZAP handler (zap.c). */
                zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &zero, sizeof(zero));
                zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, LMP_ZAP_WORKERS, strlen(LMP_ZAP_WORKERS));
        } else {
                zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsize, sizeof(maxsize));
                /* Each client's queue of events (ROUTER_MANDATORY makes a
                 * full one EAGAIN rather than a silent drop). */
                zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        }
        if (kind == FRONT_TCP && rt->curve &&
            (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
             zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, rt->curve_secret.b, LMP_CURVE_KEY_BYTES) < 0 ||
             zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, LMP_ZAP_CLIENTS, strlen(LMP_ZAP_CLIENTS)) < 0)) {
                lmp_log_msg(LMP_PRI_ERR, "cannot set up CURVE on %s: %s", endpoint, zmq_strerror(errno));
                zmq_close(s);
                return NULL;
        }
        if (zmq_bind(s, endpoint) < 0) {
                lmp_log(LMP_PRI_ERR, NULL, NULL, 0, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
                zmq_close(s);
                return NULL;
        }
        if (kind == FRONT_IPC) {
                /* Bound 0600 under our umask; now the group, then the mode. */
                struct lmp_error err = { 0 };
                const char *slash = strrchr(endpoint, '/');
                if (rt->front_dir_fd < 0 || !slash ||
                    lmp_rundir_socket_access(rt->front_dir_fd, slash + 1, rt->group, &err) < 0) {
                        lmp_log_msg(LMP_PRI_ERR, "%s: %s", endpoint, err.msg[0] ? err.msg : "no checked directory");
                        zmq_close(s);
                        return NULL;
                }
        }
        return s;
}

/* A PAIR socket receiving sock's connection events. */
static void *monitor_socket(struct lmp_router *rt, void *sock, int which) {
        char ep[64];
        snprintf(ep, sizeof(ep), "inproc://lmpool-clients-%d", which);
        if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0)
                return NULL;
        void *m = zmq_socket(rt->zctx, ZMQ_PAIR);
        int zero = 0;
        if (!m)
                return NULL;
        zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof(zero));
        /* No high-water mark: a lost event would miscount connections. */
        zmq_setsockopt(m, ZMQ_RCVHWM, &zero, sizeof(zero));
        if (zmq_connect(m, ep) < 0) {
                zmq_close(m);
                return NULL;
        }
        return m;
}

/* Descriptors the daemon holds besides its client connections: stdio, the
 * signalfd, journal and notify sockets, /proc and cgroup files read in the
 * loop, ZeroMQ's own (the reaper's and the I/O thread's epoll and
 * mailboxes, one mailbox per socket, the monitors' inproc pairs), the
 * three listeners; then one per weight store and one per worker
 * connection. Connections past limits.max_clients still take a descriptor
 * from their accept until their close: a quarter of the limit more is
 * kept for them. */
#define FDS_FIXED 64

int lmp_router_reserve_fds(struct lmp_router *rt) {
        struct rlimit rl;
        uint64_t workers = 0;
        for (size_t i = 0; i < rt->cfg->n_models; i++)
                workers += (uint64_t)rt->cfg->models[i].workers;
        uint64_t clients = (uint64_t)rt->cfg->max_clients;
        uint64_t need = FDS_FIXED + rt->cfg->n_models + workers + clients + clients / 4 + 16;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
                lmp_log_msg(LMP_PRI_ERR,
                            "limits.max_clients %d with %" PRIu64 " workers needs %" PRIu64
                            " file descriptors, but the hard RLIMIT_NOFILE is %" PRIu64
                            ": raise LimitNOFILE= (ulimit -Hn) or lower limits.max_clients",
                            rt->cfg->max_clients, workers, need, (uint64_t)rl.rlim_max);
                return -EMFILE;
        }
        /* As far as the hard limit allows: libzmq asserts on EMFILE in its
         * ipc listener, so the soft limit must never be what stops us. */
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= rl.rlim_max)
                return 0;
        rlim_t cur = rl.rlim_cur;
        /* An unlimited hard limit still stops at fs.nr_open. */
        rl.rlim_cur = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : 1u << 20;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
                return 0;
        rl.rlim_cur = need > cur ? need : cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                int e = errno;
                lmp_log_msg(LMP_PRI_ERR, "cannot raise RLIMIT_NOFILE to %" PRIu64 ": %s", need, strerror(e));
                return -e;
        }
        return 0;
}

int lmp_router_init(struct lmp_router *rt, struct lmp_config *cfg) {
        *rt = (struct lmp_router){ .cfg = cfg, .front_dir_fd = -1, .group = (gid_t)-1 };
        rt->models = calloc(cfg->n_models ? cfg->n_models : 1, sizeof(*rt->models));
        if (!rt->models)
                return -ENOMEM;
        rt->n_models = cfg->n_models;
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_router_model *m = &rt->models[i];
                m->cfg = &cfg->models[i];
                m->n_workers = m->cfg->workers;
                m->workers = calloc((size_t)m->n_workers, sizeof(*m->workers));
                if (!m->workers)
                        return -ENOMEM; /* lmp_router_free() frees what was made */
                for (int j = 0; j < m->n_workers; j++) {
                        struct lmp_router_worker *w = &m->workers[j];
                        snprintf(w->name, sizeof(w->name), "%s/%d", m->cfg->name, j);
                        w->model = i;
                        w->index = j;
                        w->state = LMP_WORKER_EXITED;
                }
        }
        return 0;
}

void lmp_router_free(struct lmp_router *rt) {
        lmp_router_close(rt);
        for (size_t i = 0; rt->models && i < rt->n_models; i++)
                free(rt->models[i].workers);
        free(rt->models);
        rt->models = NULL;
        rt->n_models = 0;
        lmp_proto_buf_free(&rt->out);
}

int lmp_router_open(struct lmp_router *rt) {
        /* Client frames of up to 1 MiB come and go: a fixed mmap threshold
         * gives their memory back to the system when they are freed (a
         * dynamic one would keep it in the heap after the first). */
        mallopt(M_MMAP_THRESHOLD, 256 << 10);
        rt->affinity = calloc(LMP_AFFINITY_SLOTS, sizeof(*rt->affinity));
        if (!rt->affinity || lmp_rcache_new(rt->cfg->cache_bytes, rt->cfg->cache_ttl_s * 1000.0, &rt->rcache) < 0 ||
            semantic_caches_new(rt) < 0)
                return -ENOMEM;
        rt->zctx = zmq_ctx_new();
        if (!rt->zctx)
                return -ENOMEM;
        /* The ZAP handler first: the worker socket must never accept a
         * connection without asking it. */
        if (lmp_zap_open(rt) < 0)
                return -EIO;
        bool ipc = strncmp(rt->frontend, "ipc://", 6) == 0;
        rt->front = router_socket(rt, rt->frontend, ipc ? FRONT_IPC : FRONT_TCP);
        if (!rt->front)
                return -EADDRINUSE;
        if (rt->cfg->tcp[0]) {
                rt->front_tcp = router_socket(rt, rt->cfg->tcp, FRONT_TCP);
                if (!rt->front_tcp)
                        return -EADDRINUSE;
        }
        rt->monitor[0] = monitor_socket(rt, rt->front, 0);
        if (!rt->monitor[0] || (rt->front_tcp && !(rt->monitor[1] = monitor_socket(rt, rt->front_tcp, 1)))) {
                lmp_log_msg(LMP_PRI_ERR, "cannot monitor the client sockets: %s", zmq_strerror(errno));
                return -ENOMEM;
        }
        rt->back = router_socket(rt, rt->backend, BACK);
        if (!rt->back)
                return -EADDRINUSE;
        return 0;
}

void lmp_router_close(struct lmp_router *rt) {
        /* Remove only the sockets we bound, through the checked directory:
         * never a path in a directory that was refused. */
        bool front_ipc = rt->front && strncmp(rt->frontend, "ipc://", 6) == 0 && rt->front_dir_fd >= 0;
        bool back_ipc = rt->back && strncmp(rt->backend, "ipc://", 6) == 0;
        const char *front_name = strrchr(rt->frontend, '/');
        /* Stop the monitors first and read what they still hold: events
         * left in an inproc pipe whose reader is closed are never freed. */
        void *socks[2] = { rt->front, rt->front_tcp };
        for (int i = 0; i < 2; i++) {
                if (!rt->monitor[i])
                        continue;
                if (socks[i])
                        zmq_socket_monitor(socks[i], NULL, 0);
                zmq_msg_t m;
                zmq_msg_init(&m);
                while (zmq_msg_recv(&m, rt->monitor[i], ZMQ_DONTWAIT) >= 0)
                        ;
                zmq_msg_close(&m);
                zmq_close(rt->monitor[i]);
        }
        rt->monitor[0] = rt->monitor[1] = NULL;
        while (rt->pending) {
                struct lmp_pending *p = rt->pending;
                rt->pending = p->next;
                free(p);
        }
        rt->pending_tail = NULL;
        free(rt->affinity);
        rt->affinity = NULL;
        lmp_rcache_free(rt->rcache);
        rt->rcache = NULL;
        for (size_t i = 0; i < rt->n_models; i++) {
                lmp_semcache_free(rt->models[i].semcache);
                rt->models[i].semcache = NULL;
        }
        free(rt->conns);
        rt->conns = NULL;
        rt->n_conns_cap = rt->n_conns_open = 0;
        /* The last events of a drain (the done of a request that finished
         * just before the workers exited) may still be queued for their
         * clients: they get a moment to leave, not the daemon's exit. */
        int linger = FRONT_LINGER_MS;
        if (rt->front) {
                zmq_setsockopt(rt->front, ZMQ_LINGER, &linger, sizeof(linger));
                zmq_close(rt->front);
        }
        if (rt->front_tcp) {
                zmq_setsockopt(rt->front_tcp, ZMQ_LINGER, &linger, sizeof(linger));
                zmq_close(rt->front_tcp);
        }
        if (rt->back)
                zmq_close(rt->back);
        lmp_zap_close(rt);
        if (rt->zctx)
                zmq_ctx_term(rt->zctx);
        rt->front = rt->front_tcp = rt->back = rt->zctx = NULL;
        if (front_ipc && front_name)
                unlinkat(rt->front_dir_fd, front_name + 1, 0);
        if (back_ipc)
                unlink(rt->backend + 6);
}

/* ------------------------------------------------------------- dispatch */

/* Sends w a message: its verb, then its header and body when it has them.
 * A worker whose connection is gone is dying: SIGCHLD fails its requests. */
static void send_to_worker(struct lmp_router *rt, const struct lmp_router_worker *w, enum lmp_wire_verb verb,
                           const char *head, const void *body, size_t body_len) {
        const char *name = lmp_wire_verb_name(verb);
        if (zmq_send(rt->back, w->name, strlen(w->name), ZMQ_SNDMORE) < 0)
                return;
        zmq_send(rt->back, name, strlen(name), head ? ZMQ_SNDMORE : 0);
        if (head)
                zmq_send(rt->back, head, strlen(head), body ? ZMQ_SNDMORE : 0);
        if (body)
                zmq_send(rt->back, body, body_len, 0);
}

static void send_job(struct lmp_router *rt, struct lmp_router_worker *w, struct lmp_request_rt *r, double now) {
        char head[LMP_WIRE_HEADER_MAX];
        struct lmp_wire_job h = { .rid = r->rid, .queued_ms = now - r->arrival_ms };
        if (lmp_wire_format_job(&h, head, sizeof(head)) >= 0)
                send_to_worker(rt, w, LMP_WIRE_JOB, head, r->job, r->job_len);
}

/* What dispatch sees of m's workers (dispatch.h), into v; their number. */
static int view_of(const struct lmp_router_model *m, struct lmp_dispatch_worker v[LMP_CONFIG_MAX_WORKERS]) {
        int n = LMP_MIN(m->n_workers, LMP_CONFIG_MAX_WORKERS);
        for (int i = 0; i < n; i++) {
                const struct lmp_router_worker *w = &m->workers[i];
                v[i] = (struct lmp_dispatch_worker){ .ready = w->state == LMP_WORKER_READY, .slots = w->slots,
                                                     .active = (uint32_t)w->running.n, .served = w->served };
        }
        return n;
}

/* Whether a ready worker of m has a free slot. */
static bool has_free_slot(const struct lmp_router_model *m) {
        struct lmp_dispatch_worker v[LMP_CONFIG_MAX_WORKERS];
        int n = view_of(m, v);
        return lmp_dispatch_least_loaded(v, n) >= 0;
}

/* ------------------------------------------------------------ affinity */

/* FNV-1a, 64 bits, continued from h. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
        const uint8_t *p = data;
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
        }
        return h;
}

/* A conversation's key: its session when the client names one; else what
 * stays the same from one turn to the next: for chat the messages up to
 * and including the first user message (a bot's shared system prompt
 * alone would put every user on one worker), for generate the prompt's
 * first 256 bytes. Never 0. */
static uint64_t affinity_key(size_t model, const struct lmp_request *req) {
        uint64_t h = fnv1a(0xcbf29ce484222325ull, &model, sizeof(model));
        if (req->session[0]) {
                h = fnv1a(h, "S", 1);
                h = fnv1a(h, req->session, strlen(req->session));
        } else if (req->type == LMP_REQ_CHAT) {
                h = fnv1a(h, "C", 1);
                for (size_t i = 0; i < req->n_messages; i++) {
                        const struct lmp_message *msg = &req->messages[i];
                        h = fnv1a(h, &msg->role, sizeof(msg->role));
                        h = fnv1a(h, msg->content, LMP_MIN(msg->content_len, (size_t)2048));
                        if (msg->role == LMP_ROLE_USER)
                                break;
                }
        } else if (req->type == LMP_REQ_EMBED) {
                h = fnv1a(h, "E", 1);
                h = fnv1a(h, req->inputs[0], LMP_MIN(req->input_len[0], (size_t)256));
        } else {
                h = fnv1a(h, "G", 1);
                h = fnv1a(h, req->prompt, LMP_MIN(req->prompt_len, (size_t)256));
        }
        return h ? h : 1;
}

/* Sends queued requests to workers as dispatch.h decides, in queue order,
 * a chunk at a time (one pass in effect: the view and the affinity table
 * carry over from one chunk to the next). */
void lmp_router_dispatch(struct lmp_router *rt) {
        enum { CHUNK = 64 };
        double now = lmp_clock_ms();
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_router_model *m = &rt->models[i];
                struct lmp_dispatch_worker view[LMP_CONFIG_MAX_WORKERS];
                int nw = view_of(m, view);
                struct lmp_request_rt *r = m->queue.head;
                while (r && lmp_dispatch_least_loaded(view, nw) >= 0) {
                        struct lmp_request_rt *chunk[CHUNK];
                        uint64_t keys[CHUNK];
                        int assign[CHUNK];
                        size_t n = 0;
                        for (; r && n < CHUNK; r = r->next) {
                                chunk[n] = r;
                                keys[n++] = r->affinity;
                        }
                        struct lmp_dispatch_counts c = { 0 };
                        lmp_dispatch_pass(view, nw, (uint32_t)i, rt->affinity, keys, n, assign, &c);
                        rt->stats.affinity_hits += c.hits;
                        rt->stats.affinity_misses += c.misses;
                        rt->stats.affinity_new += c.new_;
                        for (size_t k = 0; k < n; k++) {
                                if (assign[k] < 0)
                                        continue;
                                struct lmp_router_worker *w = &m->workers[assign[k]];
                                list_remove(&m->queue, chunk[k]);
                                rt->queued--;
                                chunk[k]->worker = w;
                                chunk[k]->dispatch_ms = now;
                                list_push(&w->running, chunk[k]);
                                send_job(rt, w, chunk[k], now);
                        }
                }
        }
}

size_t lmp_router_running(const struct lmp_router *rt) {
        size_t n = 0;
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++)
                        n += rt->models[i].workers[j].running.n;
        return n;
}

/* ------------------------------------------------------- client requests */

/* The client's live requests, in every queue and on every worker, and
 * the terminal events still kept for it: counted per identity (the peer's
 * uid on ipc, its ZAP User-Id, e.g. a CURVE key, on TCP) across all its
 * connections, else per connection. An id is unique per connection, so
 * *ret_same_id looks at this connection's requests only. */
static size_t client_in_flight(struct lmp_router *rt, const uint8_t *client, size_t len, const char *ident,
                               const char *id, struct lmp_request_rt **ret_same_id) {
        size_t n = 0;
        *ret_same_id = NULL;
        for (size_t i = 0; i <= rt->n_models; i++) {
                struct lmp_req_list *lists[1 + 256];
                int nl = 0;
                if (i == rt->n_models) {
                        lists[nl++] = &rt->sem_waiting; /* and those waiting for their key's vector */
                        goto walk;
                }
                struct lmp_router_model *m = &rt->models[i];
                lists[nl++] = &m->queue;
                for (int j = 0; j < m->n_workers && nl < (int)LMP_ARRAY_SIZE(lists); j++)
                        lists[nl++] = &m->workers[j].running;
        walk:
                for (int l = 0; l < nl; l++)
                        for (struct lmp_request_rt *r = lists[l]->head; r; r = r->next) {
                                if (!r->id[0])
                                        continue;
                                bool same_conn = r->client_len == len && memcmp(r->client, client, len) == 0;
                                if (!same_conn && !(ident && ident[0] && strcmp(r->ident, ident) == 0))
                                        continue;
                                n++;
                                if (same_conn && id && strcmp(r->id, id) == 0)
                                        *ret_same_id = r;
                        }
        }
        for (struct lmp_pending *p = rt->pending; p; p = p->next)
                if ((p->client_len == len && memcmp(p->client, client, len) == 0) ||
                    (ident && ident[0] && strcmp(p->ident, ident) == 0))
                        n++;
        return n;
}

static int find_model(struct lmp_router *rt, const char *name) {
        for (size_t i = 0; i < rt->n_models; i++)
                if (strcmp(rt->models[i].cfg->name, name) == 0)
                        return (int)i;
        return -1;
}

/* Fills the fields the request left out from the model's defaults. */
static void apply_defaults(const struct lmp_model_config *mc, struct lmp_request *req) {
        struct lmp_sampling *s = &req->sampling;
        const struct lmp_sampling_defaults *def = &mc->defaults;
#define DEFAULT(bit, field)                     \
        do {                                    \
                if (!(s->set & (bit))) {        \
                        s->field = def->field;  \
                        s->set |= (bit);        \
                }                               \
        } while (0)
        DEFAULT(LMP_SET_MAX_TOKENS, max_tokens);
        DEFAULT(LMP_SET_TEMPERATURE, temperature);
        DEFAULT(LMP_SET_TOP_K, top_k);
        DEFAULT(LMP_SET_TOP_P, top_p);
        DEFAULT(LMP_SET_MIN_P, min_p);
        DEFAULT(LMP_SET_REPEAT_PENALTY, repeat_penalty);
        DEFAULT(LMP_SET_PRESENCE_PENALTY, presence_penalty);
        DEFAULT(LMP_SET_FREQUENCY_PENALTY, frequency_penalty);
#undef DEFAULT
        if (!(s->set & LMP_SET_SEED) && def->seed >= 0) { /* -1: random */
                s->seed = (uint64_t)def->seed;
                s->set |= LMP_SET_SEED;
        }
}

static void answer_models(struct lmp_router *rt, const uint8_t *client, size_t len, bool delim, const char *id) {
        struct lmp_model_info info[LMP_CONFIG_MAX_MODELS];
        for (size_t i = 0; i < rt->n_models; i++) {
                const struct lmp_router_model *m = &rt->models[i];
                int ready = 0;
                for (int j = 0; j < m->n_workers; j++)
                        ready += m->workers[j].state == LMP_WORKER_READY;
                info[i] = (struct lmp_model_info){
                        .name = m->cfg->name, .path = m->cfg->path, .arch = m->arch,
                        .kind = m->kind == LMP_MODEL_GENERATIVE ? "generative" : "embedding", .ctx = m->n_ctx,
                        .workers = m->cfg->workers, .ready = ready, .slots = m->cfg->slots,
                        .store_bytes = (int64_t)m->store_bytes,
                };
        }
        rt->out.len = 0;
        if (lmp_proto_format_models(&rt->out, id, info, rt->n_models) == 0)
                send_answer(rt, client, len, delim);
}

static const char *state_name(enum lmp_worker_state s) {
        switch (s) {
        case LMP_WORKER_STARTING: return "starting";
        case LMP_WORKER_READY: return "ready";
        case LMP_WORKER_STOPPING: return "stopping";
        default: return "exited";
        }
}

static void answer_stats(struct lmp_router *rt, const uint8_t *client, size_t len, bool delim, const char *id) {
        size_t nw = 0, k = 0;
        for (size_t i = 0; i < rt->n_models; i++)
                nw += (size_t)rt->models[i].n_workers;
        struct lmp_worker_info *wi = calloc(nw ? nw : 1, sizeof(*wi));
        if (!wi) {
                reply_error(rt, client, len, delim, id, LMP_PROTO_INTERNAL, "out of memory");
                return;
        }
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++) {
                        const struct lmp_router_worker *w = &rt->models[i].workers[j];
                        wi[k++] = (struct lmp_worker_info){
                                .name = w->name, .model = rt->models[i].cfg->name, .pid = w->pid,
                                .state = state_name(w->state), .slots = w->slots, .active = (int64_t)w->running.n,
                                .rss_bytes = (int64_t)w->rss, .pss_bytes = (int64_t)w->pss,
                                .served = (int64_t)w->served, .restarts = (int64_t)w->restarts,
                        };
                }
        struct lmp_stats st = {
                .uptime_s = (lmp_clock_ms() - rt->start_ms) / 1e3,
                .queue_length = (int64_t)rt->queued, .queue_limit = rt->cfg->queue_length,
                .total = (int64_t)rt->stats.total, .ok = (int64_t)rt->stats.ok, .errors = (int64_t)rt->stats.errors,
                .busy = (int64_t)rt->stats.busy, .timeouts = (int64_t)rt->stats.timeouts,
                .worker_lost = (int64_t)rt->stats.worker_lost, .workers = wi, .n_workers = k,
                .dropped = (int64_t)rt->stats.dropped, .client_gone = (int64_t)rt->stats.client_gone,
                .slow_consumer = (int64_t)rt->stats.slow_consumer,
                .events_dropped = (int64_t)rt->stats.events_dropped, .clients = (int64_t)rt->n_conns_open,
                .clients_limit = rt->cfg->max_clients, .clients_refused = (int64_t)rt->stats.clients_refused,
                .clients_overlong = (int64_t)rt->stats.clients_overlong,
                .zap_refused = (int64_t)rt->auth.zap_refused,
                .worker_frames_refused = (int64_t)rt->auth.worker_frames_refused,
                .retried = (int64_t)rt->stats.retried,
                .affinity_hits = (int64_t)rt->stats.affinity_hits,
                .affinity_misses = (int64_t)rt->stats.affinity_misses,
                .affinity_new = (int64_t)rt->stats.affinity_new,
                .cache_hits = (int64_t)rt->stats.cache_hits, .cache_misses = (int64_t)rt->stats.cache_misses,
                .cache_entries = rt->rcache ? (int64_t)lmp_rcache_entries(rt->rcache) : 0,
                .cache_bytes = rt->rcache ? (int64_t)lmp_rcache_bytes(rt->rcache) : 0,
                .semantic_hits = (int64_t)rt->stats.semantic_hits,
                .semantic_misses = (int64_t)rt->stats.semantic_misses,
                .semantic_unavailable = (int64_t)rt->stats.semantic_unavailable,
        };
        for (size_t i = 0; i < rt->n_models; i++) {
                const struct lmp_semcache *c = rt->models[i].semcache;
                if (!c)
                        continue;
                st.semantic_evictions += (int64_t)lmp_semcache_evictions(c);
                st.semantic_expirations += (int64_t)lmp_semcache_expirations(c);
                st.semantic_entries += (int64_t)lmp_semcache_entries(c);
                st.semantic_bytes += (int64_t)lmp_semcache_bytes(c);
        }
        rt->out.len = 0;
        if (lmp_proto_format_stats(&rt->out, id, &st) == 0)
                send_answer(rt, client, len, delim);
        free(wi);
}

static void answer_health(struct lmp_router *rt, const uint8_t *client, size_t len, bool delim, const char *id) {
        struct lmp_health_model hm[LMP_CONFIG_MAX_MODELS];
        bool all = true, any_missing = false;
        for (size_t i = 0; i < rt->n_models; i++) {
                const struct lmp_router_model *m = &rt->models[i];
                int ready = 0;
                for (int j = 0; j < m->n_workers; j++)
                        ready += m->workers[j].state == LMP_WORKER_READY;
                bool failed = !m->loaded || m->failed;
                hm[i] = (struct lmp_health_model){ .name = m->cfg->name, .ready = ready,
                                                   .workers = m->cfg->workers, .failed = failed ? m->why : NULL };
                all &= ready == m->cfg->workers;
                any_missing |= ready == 0 || failed;
        }
        const char *status = !rt->ready ? "starting" : any_missing ? "degraded" : "ok";
        (void)all;
        rt->out.len = 0;
        if (lmp_proto_format_health(&rt->out, id, status, hm, rt->n_models) == 0)
                send_answer(rt, client, len, delim);
}

/* Stops a request: its client gets an error (unless code is OK: the client
 * is gone), its worker a cancel. */
static void cancel_request(struct lmp_router *rt, struct lmp_request_rt *r, enum lmp_proto_code code,
                           const char *why) {
        if (r->internal) {
                /* An embed job of the semantic cache has no client: its
                 * request goes on uncached. */
                code = LMP_PROTO_OK;
                semantic_give_up(rt, r);
        }
        if (code != LMP_PROTO_OK)
                request_error(rt, r, code, why);
        cache_forget(rt, r);
        sem_forget(rt, r);
        if (r->sem_waiting) {
                struct lmp_request_rt *e = r->sem_embed;
                if (e) {
                        r->sem_embed = NULL;
                        e->sem_for = NULL;
                        cancel_request(rt, e, LMP_PROTO_OK, NULL);
                }
                list_remove(&rt->sem_waiting, r);
                rt->queued--;
                request_free(rt, r);
                return;
        }
        if (!r->worker) {
                list_remove(&rt->models[r->model].queue, r);
                rt->queued--;
                request_free(rt, r);
                return;
        }
        /* Running: tell the worker, keep the slot until it confirms. */
        char head[LMP_WIRE_HEADER_MAX];
        if (lmp_wire_format_cancel(&(struct lmp_wire_cancel){ .rid = r->rid }, head, sizeof(head)) >= 0)
                send_to_worker(rt, r->worker, LMP_WIRE_CANCEL, head, NULL, 0);
        r->id[0] = '\0'; /* answered: later events are dropped */
}

/* The request's client has disconnected: nobody will read its events. */
static void client_gone(struct lmp_router *rt, struct lmp_request_rt *r) {
        rt->stats.client_gone++;
        cancel_request(rt, r, LMP_PROTO_OK, NULL);
}

/* Once a second at most, so that an overload does not flood the journal. */
static void log_overload(struct lmp_router *rt, const struct lmp_router_model *m) {
        double now = lmp_clock_ms();
        rt->overload_refused++;
        if (now - rt->last_overload_ms < 1000)
                return;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FU64("QUEUE_LENGTH", rt->queued),
                LMP_FU64("QUEUE_LIMIT", (uint64_t)rt->cfg->queue_length),
                LMP_FU64("RUNNING", lmp_router_running(rt)),
                LMP_FU64("REFUSED", rt->overload_refused),
        };
        lmp_log_event(LMP_PRI_WARNING, "overload", f, "queue full (%zu requests): %" PRIu64
                      " requests refused with busy since the last report", rt->queued, rt->overload_refused);
        rt->last_overload_ms = now;
        rt->overload_refused = 0;
}

/* ------------------------------------------------------- response cache */

/* Whether req's answer is a function of the request alone: greedy, or
 * sampled from a seed it gives. */
static bool cacheable(const struct lmp_router *rt, const struct lmp_request *req) {
        return rt->rcache && rt->cfg->cache_bytes > 0 && !req->no_cache &&
               (req->sampling.temperature == 0 || (req->sampling.set & LMP_SET_SEED));
}

/* `{"v":1,"id":"<id>"` as every event of the request begins. */
static char *event_prefix(const char *id, size_t *len) {
        struct lmp_proto_buf b = { 0 };
        static const char head[] = "{\"v\":1,\"id\":";
        if (lmp_proto_buf_append(&b, head, sizeof(head) - 1) < 0 ||
            lmp_proto_append_json_string(&b, id, strlen(id)) < 0) {
                lmp_proto_buf_free(&b);
                return NULL;
        }
        *len = b.len;
        return b.data;
}

/* Sends a cached answer under this request's id: its events as stored,
 * the last one (done) marked (mark: ',"cached":true' and the like). A client that does not read
 * them in time gets slow_consumer, one that is gone nothing. */
static void replay(struct lmp_router *rt, const uint8_t *client, size_t clen, bool delim, const char *ident,
                   const char *id, const uint8_t *data, size_t data_len, const char *mark) {
        size_t pos = 0, len, plen, mark_len = strlen(mark);
        const uint8_t *ev;
        char *prefix = event_prefix(id, &plen);
        if (!prefix) {
                error_event(rt, client, clen, delim, ident, id, LMP_PROTO_INTERNAL, "out of memory");
                return;
        }
        while (lmp_rcache_next_event_in(data, data_len, &pos, &ev, &len)) {
                size_t p2 = pos, l2;
                const uint8_t *e2;
                bool last = !lmp_rcache_next_event_in(data, data_len, &p2, &e2, &l2);
                rt->out.len = 0;
                if (lmp_proto_buf_append(&rt->out, prefix, plen) < 0 ||
                    (last && lmp_proto_buf_append(&rt->out, mark, mark_len) < 0) ||
                    lmp_proto_buf_append(&rt->out, ev, len) < 0) {
                        error_event(rt, client, clen, delim, ident, id, LMP_PROTO_INTERNAL, "out of memory");
                        break;
                }
                if (last) {
                        send_terminal(rt, client, clen, delim, ident, rt->out.data, rt->out.len, true,
                                      lmp_clock_ms() + rt->cfg->request_timeout_ms);
                        break;
                }
                int rc = send_to_client(rt, client, clen, delim, rt->out.data, rt->out.len);
                if (rc == -EAGAIN) {
                        rt->stats.events_dropped++;
                        rt->stats.slow_consumer++;
                        error_event(rt, client, clen, delim, ident, id, LMP_PROTO_SLOW_CONSUMER,
                                    "the client did not read its events in time (limits.client_events)");
                        break;
                }
                if (rc < 0) {
                        rt->stats.client_gone++;
                        break;
                }
        }
        free(prefix);
}

/* Looks a deterministic request up: true when it was answered from the
 * cache; otherwise its key and event prefix, for storing its answer. */
static bool cache_lookup(struct lmp_router *rt, const uint8_t *client, size_t clen, bool delim, const char *ident,
                         size_t model, const struct lmp_request *req, char **ret_key, size_t *ret_key_len,
                         char **ret_prefix, size_t *ret_prefix_len) {
        struct lmp_proto_buf key = { 0 };
        /* The request as a worker would get it, but for its id (and its
         * session, which does not change the answer). */
        struct lmp_request tmp = *req;
        snprintf(tmp.id, sizeof(tmp.id), "-");
        tmp.session[0] = '\0';
        if (lmp_proto_format_request(&key, &tmp) < 0) {
                lmp_proto_buf_free(&key);
                return false;
        }
        const struct lmp_rcache_entry *e = lmp_rcache_get(rt->rcache, (uint32_t)model, key.data, key.len, lmp_clock_ms());
        if (e) {
                lmp_proto_buf_free(&key);
                const uint8_t *data;
                size_t data_len;
                lmp_rcache_entry_events(e, &data, &data_len);
                rt->stats.cache_hits++;
                replay(rt, client, clen, delim, ident, req->id, data, data_len, ",\"cached\":true");
                return true;
        }
        rt->stats.cache_misses++;
        *ret_prefix = event_prefix(req->id, ret_prefix_len);
        if (!*ret_prefix) {
                lmp_proto_buf_free(&key);
                return false;
        }
        *ret_key = key.data;
        *ret_key_len = key.len;
        return false;
}

/* Collects one event of r's answer; on its done, stores the answer. An
 * event that does not begin with r's own prefix (never expected) stops
 * the collection. */
static void cache_collect(struct lmp_router *rt, struct lmp_request_rt *r, const void *ev, size_t len, bool done) {
        if (!r->cache_key)
                return;
        if (len < r->cache_prefix_len || memcmp(ev, r->cache_prefix, r->cache_prefix_len) != 0) {
                cache_forget(rt, r);
                return;
        }
        size_t grown = lmp_rcache_build_add(rt->rcache, &r->cache_build, (const uint8_t *)ev + r->cache_prefix_len,
                                            len - r->cache_prefix_len);
        r->cache_held += grown;
        rt->held_bytes += grown;
        if (r->cache_build.invalid) {
                cache_forget(rt, r);
                return;
        }
        if (done) {
                lmp_rcache_put(rt->rcache, (uint32_t)r->model, r->cache_key, r->cache_key_len, &r->cache_build,
                               lmp_clock_ms());
                cache_forget(rt, r);
        }
}

void lmp_router_cache_drop_model(struct lmp_router *rt, size_t model) {
        if (rt->rcache)
                lmp_rcache_drop_model(rt->rcache, (uint32_t)model);
        if (model < rt->n_models && rt->models[model].semcache)
                lmp_semcache_clear(rt->models[model].semcache);
}

/* ------------------------------------------------------- semantic cache */

/* Whether req may be answered from (and stored in) m's semantic cache:
 * it has one, the request does not opt out, and its answer is a function
 * of the request (greedy, or seeded) unless the configuration takes
 * sampled answers too. */
static bool semantic_wanted(const struct lmp_router_model *m, const struct lmp_request *req) {
        /* Its key is text: a question about an image is not one about another. */
        return m->semcache && !req->no_cache && !req->n_images &&
               (req->sampling.temperature == 0 || (req->sampling.set & LMP_SET_SEED) || m->cfg->semantic.sampled);
}

/* The text whose meaning keys the answer: the last user message of a
 * chat, the prompt of a generate; false when a chat has no user message. */
static bool key_text(const struct lmp_request *req, size_t *ret_msg, const char **ret, size_t *ret_len) {
        if (req->type == LMP_REQ_GENERATE) {
                *ret = req->prompt;
                *ret_len = req->prompt_len;
                return true;
        }
        for (size_t i = req->n_messages; i-- > 0;)
                if (req->messages[i].role == LMP_ROLE_USER) {
                        *ret_msg = i;
                        *ret = req->messages[i].content;
                        *ret_len = req->messages[i].content_len;
                        return true;
                }
        return false;
}

/* What else must be equal for an answer to be reused: the request's
 * canonical form with its key text empty, without its id and session. */
static char *semantic_signature(const struct lmp_request *req, size_t key_msg, size_t *ret_len) {
        struct lmp_request tmp = *req;
        struct lmp_message *msgs = NULL;
        struct lmp_proto_buf b = { 0 };
        snprintf(tmp.id, sizeof(tmp.id), "-");
        tmp.session[0] = '\0';
        if (req->type == LMP_REQ_GENERATE) {
                tmp.prompt = (char *)"";
                tmp.prompt_len = 0;
        } else {
                msgs = malloc(req->n_messages * sizeof(*msgs));
                if (!msgs)
                        return NULL;
                memcpy(msgs, req->messages, req->n_messages * sizeof(*msgs));
                msgs[key_msg].content = (char *)"";
                msgs[key_msg].content_len = 0;
                tmp.messages = msgs;
        }
        int rc = lmp_proto_format_request(&b, &tmp);
        free(msgs);
        if (rc < 0) {
                lmp_proto_buf_free(&b);
                return NULL;
        }
        *ret_len = b.len;
        return b.data;
}

/* Starts r's wait for its key's vector: an internal embed job (the key,
 * truncated to the embedding model's context) sent at once to a worker
 * of the embedding model with a free slot, and r kept in sem_waiting
 * (counted in the queue's bound) until it answers or its deadline
 * (semantic_cache.embed_timeout_ms) passes. false when r is not to wait:
 * no key, or no such worker now (counted unavailable), or no memory. */
static bool semantic_start(struct lmp_router *rt, struct lmp_request_rt *r, const struct lmp_request *req) {
        struct lmp_router_model *m = &rt->models[r->model];
        const char *key;
        size_t key_len, key_msg = 0;
        if (!key_text(req, &key_msg, &key, &key_len))
                return false;
        int ei = find_model(rt, m->cfg->semantic.model);
        struct lmp_router_model *em = ei >= 0 ? &rt->models[ei] : NULL;
        struct lmp_dispatch_worker v[LMP_CONFIG_MAX_WORKERS];
        int wi = -1;
        if (em && em->loaded && !em->failed && em->kind == LMP_MODEL_EMBEDDING)
                wi = lmp_dispatch_least_loaded(v, view_of(em, v));
        if (wi < 0) {
                rt->stats.semantic_unavailable++;
                return false;
        }
        struct lmp_request ej = { .type = LMP_REQ_EMBED, .normalize = true, .truncate = true, .n_inputs = 1 };
        char *input = (char *)key;
        size_t input_len = key_len;
        ej.inputs = &input;
        ej.input_len = &input_len;
        snprintf(ej.id, sizeof(ej.id), "semantic-%" PRIu64, r->rid);
        snprintf(ej.model, sizeof(ej.model), "%s", em->cfg->name);
        struct lmp_proto_buf job = { 0 };
        struct lmp_request_rt *e = calloc(1, sizeof(*e));
        r->sem_sig = semantic_signature(req, key_msg, &r->sem_sig_len);
        r->sem_prefix = event_prefix(r->id, &r->sem_prefix_len);
        if (!e || !r->sem_sig || !r->sem_prefix || lmp_proto_format_request(&job, &ej) < 0 ||
            job.len > LMP_PROTO_JOB_MAX) {
                free(e);
                lmp_proto_buf_free(&job);
                sem_forget(rt, r);
                return false;
        }
        r->sem_held = r->sem_sig_len + r->sem_prefix_len;
        rt->held_bytes += r->sem_held;
        double now = lmp_clock_ms();
        e->rid = ++rt->next_rid;
        e->internal = true;
        snprintf(e->id, sizeof(e->id), "%s", ej.id);
        e->model = (size_t)ei;
        e->affinity = 1;
        e->job = job.data;
        e->job_len = job.len;
        rt->held_bytes += job.len;
        e->arrival_ms = e->dispatch_ms = now;
        e->deadline_ms = LMP_MIN(r->deadline_ms, now + m->cfg->semantic.embed_timeout_ms);
        e->sem_for = r;
        r->sem_embed = e;
        r->sem_waiting = true;
        list_push(&rt->sem_waiting, r);
        rt->queued++;
        struct lmp_router_worker *w = &em->workers[wi];
        e->worker = w;
        list_push(&w->running, e);
        send_job(rt, w, e, now);
        return true;
}

/* r stops waiting and goes to its model's queue, its answer not kept. */
static void semantic_proceed(struct lmp_router *rt, struct lmp_request_rt *r) {
        list_remove(&rt->sem_waiting, r);
        r->sem_waiting = false;
        sem_forget(rt, r);
        list_push(&rt->models[r->model].queue, r);
}

/* The internal embed job e ends without a vector (an error, its deadline,
 * its worker lost): its request, if still there, goes on uncached. */
static void semantic_give_up(struct lmp_router *rt, struct lmp_request_rt *e) {
        struct lmp_request_rt *r = e->sem_for;
        if (!r)
                return;
        e->sem_for = NULL;
        r->sem_embed = NULL;
        rt->stats.semantic_unavailable++;
        semantic_proceed(rt, r);
}

/* The internal embed job e answered (its terminal event ev): the request
 * is answered from the cache, or goes to its queue keeping its vector. */
static void semantic_answer(struct lmp_router *rt, struct lmp_request_rt *e, const void *ev, size_t len, bool done) {
        struct lmp_request_rt *r = e->sem_for;
        struct lmp_event pe = { 0 };
        if (!r)
                return;
        if (!done || lmp_proto_parse_event(ev, len, &pe) < 0 || pe.type != LMP_EVENT_EMBEDDING ||
            pe.n_vectors != 1 || pe.n_embd == 0 || pe.n_embd > LMP_SEMCACHE_DIMS_MAX) {
                lmp_event_clear(&pe);
                semantic_give_up(rt, e);
                return;
        }
        e->sem_for = NULL;
        r->sem_embed = NULL;
        struct lmp_router_model *m = &rt->models[r->model];
        float sim = 0;
        const struct lmp_semcache_entry *hit =
                m->semcache ? lmp_semcache_get(m->semcache, pe.vectors, pe.n_embd, r->sem_sig, r->sem_sig_len,
                                               lmp_clock_ms(), &sim)
                            : NULL;
        if (hit) {
                const uint8_t *data;
                size_t data_len;
                char mark[64];
                lmp_semcache_entry_events(hit, &data, &data_len);
                snprintf(mark, sizeof(mark), ",\"cached\":\"semantic\",\"similarity\":%.4f", (double)sim);
                rt->stats.semantic_hits++;
                list_remove(&rt->sem_waiting, r);
                rt->queued--;
                r->sem_waiting = false;
                replay(rt, r->client, r->client_len, r->delimiter, r->ident, r->id, data, data_len, mark);
                request_free(rt, r);
                lmp_event_clear(&pe);
                return;
        }
        rt->stats.semantic_misses++;
        list_remove(&rt->sem_waiting, r);
        r->sem_waiting = false;
        if (m->semcache) {
                /* Its answer is stored under this vector once it is done. */
                r->sem_vec = pe.vectors;
                r->sem_dims = pe.n_embd;
                pe.vectors = NULL;
                r->sem_held += r->sem_dims * sizeof(float);
                rt->held_bytes += r->sem_dims * sizeof(float);
        } else {
                sem_forget(rt, r);
        }
        list_push(&m->queue, r);
        lmp_event_clear(&pe);
}

/* As cache_collect(), for the semantic cache of r's model. */
static void sem_collect(struct lmp_router *rt, struct lmp_request_rt *r, const void *ev, size_t len, bool done) {
        struct lmp_semcache *c = rt->models[r->model].semcache;
        if (!r->sem_vec)
                return;
        if (!c || len < r->sem_prefix_len || memcmp(ev, r->sem_prefix, r->sem_prefix_len) != 0) {
                sem_forget(rt, r);
                return;
        }
        size_t grown = lmp_rcache_build_append(&r->sem_build, lmp_semcache_entry_max(c),
                                               (const uint8_t *)ev + r->sem_prefix_len, len - r->sem_prefix_len);
        r->sem_held += grown;
        rt->held_bytes += grown;
        if (r->sem_build.invalid) {
                sem_forget(rt, r);
                return;
        }
        if (done) {
                lmp_semcache_put(c, r->sem_vec, r->sem_dims, r->sem_sig, r->sem_sig_len, &r->sem_build,
                                 lmp_clock_ms());
                sem_forget(rt, r);
        }
}

/* Each model's semantic cache as its settings say (a reload starts them
 * empty, as the exact cache's entries are dropped). */
static int semantic_caches_new(struct lmp_router *rt) {
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_router_model *m = &rt->models[i];
                const struct lmp_semantic_config *sc = &m->cfg->semantic;
                lmp_semcache_free(m->semcache);
                m->semcache = NULL;
                if (!sc->model[0])
                        continue;
                struct lmp_semcache_limits lim = {
                        .max_entries = (size_t)sc->max_entries, .max_bytes = sc->max_bytes,
                        .ttl_ms = sc->ttl_s * 1000.0, .threshold = (float)sc->threshold,
                };
                int rc = lmp_semcache_new(&lim, &m->semcache);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static void handle_request(struct lmp_router *rt, const uint8_t *client, size_t clen, bool delim,
                           const char *ident, struct lmp_request *req) {
        struct lmp_request_rt *same = NULL, *r;
        int mi;

        switch (req->type) {
        case LMP_REQ_MODELS:
                answer_models(rt, client, clen, delim, req->id);
                return;
        case LMP_REQ_STATS:
                answer_stats(rt, client, clen, delim, req->id);
                return;
        case LMP_REQ_HEALTH:
                answer_health(rt, client, clen, delim, req->id);
                return;
        case LMP_REQ_CANCEL:
                client_in_flight(rt, client, clen, NULL, req->target, &same);
                if (same)
                        cancel_request(rt, same, LMP_PROTO_CANCELLED, "cancelled by the client");
                rt->out.len = 0;
                if (lmp_proto_format_cancelled(&rt->out, req->id, req->target, same != NULL) == 0)
                        send_answer(rt, client, clen, delim);
                return;
        default:
                break;
        }

        rt->stats.total++;
        if (rt->stopping) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BUSY, "the daemon is shutting down");
                return;
        }
        mi = find_model(rt, req->model);
        if (mi < 0) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_UNKNOWN_MODEL, "no model named '%s'",
                            req->model);
                return;
        }
        struct lmp_router_model *m = &rt->models[mi];
        if (!m->loaded) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_UNKNOWN_MODEL,
                            "model '%s' was refused at load (see the daemon's log)", req->model);
                return;
        }
        /* The request must be of the kind the model serves. */
        if (req->type == LMP_REQ_EMBED && m->kind != LMP_MODEL_EMBEDDING) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST, "model '%s' %s", req->model,
                            m->kind == LMP_MODEL_GENERATIVE
                                    ? "is generative: it has no embeddings (embed needs an embedding model)"
                                    : "has no pooling (pooling_type none): it gives no embedding per text");
                return;
        }
        if (req->type != LMP_REQ_EMBED && m->kind != LMP_MODEL_GENERATIVE) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST,
                            "model '%s' is an embedding model: it does not generate text (%s needs a generative "
                            "model; use embed)", req->model, lmp_request_type_name(req->type));
                return;
        }
        if (m->failed) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_MODEL_FAILED, "model '%s' cannot serve: %s",
                            req->model, m->why);
                return;
        }
        size_t n = client_in_flight(rt, client, clen, ident, req->id, &same);
        if (same) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST,
                            "id '%s' is already in flight", req->id);
                return;
        }
        if (n >= (size_t)rt->cfg->client_requests) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BUSY,
                            "this client has %zu requests in flight (limits.client_requests%s)", n,
                            ident && ident[0] ? ", over all its connections" : "");
                return;
        }
        if ((req->sampling.set & LMP_SET_MAX_TOKENS) && req->sampling.max_tokens > rt->cfg->max_tokens) {
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST,
                            "field 'max_tokens': %d is above the limit %d (limits.max_tokens)",
                            req->sampling.max_tokens, rt->cfg->max_tokens);
                return;
        }
        if (req->type == LMP_REQ_GENERATE && req->prompt_len > (size_t)rt->cfg->max_prompt_tokens * 64) {
                /* No token is longer than 64 bytes in any vocabulary we know:
                 * such a prompt has more tokens than the limit. */
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_TOO_LONG,
                            "the prompt's %zu bytes exceed limits.max_prompt_tokens (%d)", req->prompt_len,
                            rt->cfg->max_prompt_tokens);
                return;
        }
        for (size_t i = 0; i < req->n_inputs; i++) {
                /* As for a prompt: more bytes than 64 per token allowed. */
                if (req->input_len[i] > (size_t)rt->cfg->max_prompt_tokens * 64) {
                        reply_error(rt, client, clen, delim, req->id, LMP_PROTO_TOO_LONG,
                                    "input %zu: %zu bytes exceed limits.max_prompt_tokens (%d)", i,
                                    req->input_len[i], rt->cfg->max_prompt_tokens);
                        return;
                }
        }
        if (req->type != LMP_REQ_EMBED)
                apply_defaults(m->cfg, req);
        /* A deterministic request asked before is answered from the cache,
         * without a queue or a worker. Embeddings are not kept there. */
        char *cache_key = NULL, *cache_prefix = NULL;
        size_t cache_key_len = 0, cache_prefix_len = 0;
        if (req->type != LMP_REQ_EMBED && cacheable(rt, req)) {
                if (cache_lookup(rt, client, clen, delim, ident, (size_t)mi, req, &cache_key, &cache_key_len,
                                 &cache_prefix, &cache_prefix_len))
                        return;
        }
        if (!has_free_slot(m) && rt->queued >= (size_t)rt->cfg->queue_length) {
                free(cache_key);
                free(cache_prefix);
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_BUSY, "queue full (%d requests)",
                            rt->cfg->queue_length);
                log_overload(rt, m);
                return;
        }
        uint32_t timeout = (uint32_t)rt->cfg->request_timeout_ms;
        if ((req->sampling.set & LMP_SET_TIMEOUT_MS) && req->timeout_ms < timeout)
                timeout = req->timeout_ms;

        r = calloc(1, sizeof(*r));
        struct lmp_proto_buf job = { 0 };
        if (!r || lmp_proto_format_request(&job, req) < 0) {
                free(r);
                free(cache_key);
                free(cache_prefix);
                lmp_proto_buf_free(&job);
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_INTERNAL, "out of memory");
                return;
        }
        if (job.len > LMP_PROTO_JOB_MAX) {
                /* Cannot happen for a frame within LMP_PROTO_FRAME_MAX (at
                 * most 6 bytes out per byte in); said rather than sent. */
                free(r);
                free(cache_key);
                free(cache_prefix);
                lmp_proto_buf_free(&job);
                reply_error(rt, client, clen, delim, req->id, LMP_PROTO_TOO_LONG,
                            "the request is too long once escaped for the worker");
                return;
        }
        r->rid = ++rt->next_rid;
        memcpy(r->client, client, clen);
        r->client_len = (uint8_t)clen;
        snprintf(r->ident, sizeof(r->ident), "%s", ident ? ident : "");
        r->delimiter = delim;
        snprintf(r->id, sizeof(r->id), "%s", req->id);
        r->model = (size_t)mi;
        r->affinity = affinity_key((size_t)mi, req);
        r->job = job.data;
        r->job_len = job.len;
        rt->held_bytes += job.len;
        r->cache_key = cache_key;
        r->cache_key_len = cache_key_len;
        r->cache_prefix = cache_prefix;
        r->cache_prefix_len = cache_prefix_len;
        r->cache_held = cache_key_len + cache_prefix_len;
        rt->held_bytes += r->cache_held;
        r->arrival_ms = lmp_clock_ms();
        r->deadline_ms = r->arrival_ms + timeout;
        /* A request its model's semantic cache may answer waits for its
         * key's vector first (or goes on at once when none can come). */
        if (req->type != LMP_REQ_EMBED && semantic_wanted(m, req) && semantic_start(rt, r, req))
                return;
        list_push(&m->queue, r);
        rt->queued++;
        lmp_router_dispatch(rt);
}

/* Who sent msg, beyond its connection: the ZAP User-Id when a ZAP handler
 * gave one (a CURVE client's key), else on ipc the peer's uid, which libzmq
 * appends to the Peer-Address property from SO_PEERCRED
 * ("HOST:UID:GID:PID"); "" when the transport says nothing (plain TCP). */
static void identity_of(zmq_msg_t *msg, bool ipc, char *buf, size_t size) {
        const char *user = zmq_msg_gets(msg, "User-Id");
        buf[0] = '\0';
        if (user && *user) {
                snprintf(buf, size, "key:%s", user);
                return;
        }
        const char *peer = ipc ? zmq_msg_gets(msg, "Peer-Address") : NULL;
        if (!peer)
                return;
        /* The uid follows the third colon from the end. */
        int colons = 0;
        const char *uid = NULL;
        for (const char *c = peer + strlen(peer); c > peer; c--)
                if (c[-1] == ':' && ++colons == 3) {
                        uid = c;
                        break;
                }
        if (!uid)
                return;
        char *end;
        unsigned long v = strtoul(uid, &end, 10);
        if (end != uid && *end == ':')
                snprintf(buf, size, "uid:%lu", v);
}

static struct lmp_conn *conn_at(struct lmp_router *rt, int fd) {
        if (fd < 0)
                return NULL;
        size_t old = rt->n_conns_cap;
        if (lmp_grow(&rt->conns, &rt->n_conns_cap, (size_t)fd + 1, sizeof(*rt->conns), 256) < 0)
                return NULL;
        memset(rt->conns + old, 0, (rt->n_conns_cap - old) * sizeof(*rt->conns));
        return &rt->conns[fd];
}

void lmp_router_on_client(struct lmp_router *rt, void *sock) {
        struct lmp_zparts p;
        struct lmp_request req;
        struct lmp_proto_error perr;
        bool ipc = sock == rt->front && strncmp(rt->frontend, "ipc://", 6) == 0;

        /* Connections first: a request from a client that has just gone
         * must find it gone. */
        lmp_router_on_monitor(rt, 0);
        lmp_router_on_monitor(rt, 1);
        while (lmp_zparts_recv(sock, &p, ZMQ_DONTWAIT) > 0) {
                const uint8_t *client = zmq_msg_data(&p.m[0]);
                size_t clen = zmq_msg_size(&p.m[0]);
                bool delim = p.n >= 3 && zmq_msg_size(&p.m[1]) == 0;
                zmq_msg_t *body = &p.m[delim ? 2 : 1];
                char ident[LMP_IDENT_MAX] = "";

                if (p.n >= 2) {
                        int fd = zmq_msg_get(body, ZMQ_SRCFD);
                        struct lmp_conn *c = conn_at(rt, fd);
                        if (c && c->open && c->rid_len &&
                            (c->rid_len != clen || memcmp(c->rid, client, clen) != 0)) {
                                /* A connection keeps its routing id: this is
                                 * a new connection on a reused descriptor,
                                 * and the old one's DISCONNECTED is still
                                 * queued. Read it now, or it would be taken
                                 * for this connection's and cancel its
                                 * requests. */
                                lmp_router_on_monitor(rt, 0);
                                lmp_router_on_monitor(rt, 1);
                                c = conn_at(rt, fd);
                        }
                        if (c && !c->open) {
                                /* A connection's ACCEPTED is queued before
                                 * its first message: look again. */
                                lmp_router_on_monitor(rt, 0);
                                lmp_router_on_monitor(rt, 1);
                                c = conn_at(rt, fd); /* the table may have moved */
                        }
                        if (c && !c->open) {
                                /* Its DISCONNECTED came first: nobody to answer. */
                                lmp_zparts_close(&p);
                                continue;
                        }
                        if (c && clen < LMP_CLIENT_ID_MAX) {
                                /* A connection keeps its routing id; a message
                                 * left by the previous owner of the
                                 * descriptor is overruled by the next. */
                                memcpy(c->rid, client, clen);
                                c->rid_len = (uint8_t)clen;
                                c->last_msg_ms = lmp_clock_ms();
                        }
                        identity_of(body, ipc, ident, sizeof(ident));
                }
                if (p.n < 2 || clen == 0 || clen >= LMP_CLIENT_ID_MAX || p.total > (delim ? 3 : 2)) {
                        if (p.n >= 2 && clen > 0 && clen < LMP_CLIENT_ID_MAX)
                                reply_error(rt, client, clen, delim, NULL, LMP_PROTO_BAD_REQUEST,
                                            "a request is one frame of JSON (optionally after an empty frame)");
                        lmp_zparts_close(&p);
                        continue;
                }
                memset(&req, 0, sizeof(req));
                memset(&perr, 0, sizeof(perr));
                if (lmp_proto_parse_request(zmq_msg_data(body), zmq_msg_size(body), &req, &perr) < 0) {
                        reply_error(rt, client, clen, delim, perr.has_id ? perr.id : NULL, perr.code, "%s",
                                    perr.message);
                } else {
                        handle_request(rt, client, clen, delim, ident, &req);
                }
                lmp_request_clear(&req);
                lmp_zparts_close(&p);
        }
}

/* ---------------------------------------------------------- connections */

/* Is fd (a descriptor the monitor named) still one of our client
 * connections on endpoint? It may have been closed and reused by the time
 * we look; only then would shutting it down hit something else. */
static bool fd_is_ours(int fd, const char *endpoint) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return false;
        if (strncmp(endpoint, "ipc://", 6) == 0) {
                const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
                return ss.ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
                       strncmp(un->sun_path, endpoint + 6, sizeof(un->sun_path)) == 0;
        }
        const char *colon = strrchr(endpoint, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : -1;
        if (ss.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)&ss)->sin_port) == port;
        if (ss.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port) == port;
        return false;
}

static const char *endpoint_of(struct lmp_router *rt, int which) {
        return which == 0 ? rt->frontend : rt->cfg->tcp;
}

/* Closes a connection under libzmq's feet without closing its descriptor
 * (which libzmq owns): the engine reads end-of-file, drops the connection
 * with whatever it had half-received, and the monitor says DISCONNECTED. */
static bool shut_down(struct lmp_router *rt, struct lmp_conn *c, int fd) {
        if (c->closing || !fd_is_ours(fd, endpoint_of(rt, c->sock)))
                return false;
        c->closing = true;
        return shutdown(fd, SHUT_RDWR) == 0;
}

static void log_refused(struct lmp_router *rt) {
        double now = lmp_clock_ms();
        rt->refused_since_log++;
        if (now - rt->last_refused_log_ms < 1000)
                return;
        struct lmp_log_field f[] = {
                LMP_FU64("CLIENTS", rt->n_conns_open),
                LMP_FU64("CLIENTS_LIMIT", (uint64_t)rt->cfg->max_clients),
                LMP_FU64("REFUSED", rt->refused_since_log),
        };
        lmp_log_event(LMP_PRI_WARNING, "clients_refused", f,
                      "%zu client connections open (limits.max_clients %d): %" PRIu64
                      " connections refused since the last report", rt->n_conns_open, rt->cfg->max_clients,
                      rt->refused_since_log);
        rt->last_refused_log_ms = now;
        rt->refused_since_log = 0;
}

/* Every request of the client on connection c: nobody reads their events. */
static void cancel_connection(struct lmp_router *rt, struct lmp_conn *c) {
        if (c->rid_len == 0)
                return;
        for (struct lmp_request_rt *r = rt->sem_waiting.head, *next; r; r = next) {
                next = r->next;
                if (r->client_len == c->rid_len && memcmp(r->client, c->rid, c->rid_len) == 0)
                        client_gone(rt, r);
        }
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_router_model *m = &rt->models[i];
                struct lmp_request_rt *r, *next;
                for (r = m->queue.head; r; r = next) {
                        next = r->next;
                        if (r->client_len == c->rid_len && memcmp(r->client, c->rid, c->rid_len) == 0)
                                client_gone(rt, r);
                }
                for (int j = 0; j < m->n_workers; j++)
                        for (r = m->workers[j].running.head; r; r = r->next)
                                if (r->id[0] && r->client_len == c->rid_len &&
                                    memcmp(r->client, c->rid, c->rid_len) == 0)
                                        client_gone(rt, r);
        }
        drop_pending(rt, c->rid, c->rid_len);
}

void lmp_router_on_monitor(struct lmp_router *rt, int which) {
        void *mon = rt->monitor[which];
        if (!mon)
                return;
        for (;;) {
                zmq_msg_t ev, addr;
                zmq_msg_init(&ev);
                if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&ev);
                        return;
                }
                uint16_t event = 0;
                uint32_t value = 0;
                if (zmq_msg_size(&ev) >= 6) {
                        memcpy(&event, zmq_msg_data(&ev), 2);
                        memcpy(&value, (const uint8_t *)zmq_msg_data(&ev) + 2, 4);
                }
                bool more = zmq_msg_more(&ev);
                zmq_msg_close(&ev);
                while (more) { /* the endpoint */
                        zmq_msg_init(&addr);
                        if (zmq_msg_recv(&addr, mon, 0) < 0)
                                more = false;
                        else
                                more = zmq_msg_more(&addr);
                        zmq_msg_close(&addr);
                }
                int fd = (int)value;
                struct lmp_conn *c;
                if (event == ZMQ_EVENT_ACCEPTED && (c = conn_at(rt, fd))) {
                        if (c->open) /* its DISCONNECTED never came: count it once */
                                rt->n_conns_open--;
                        *c = (struct lmp_conn){ .open = true, .sock = (uint8_t)which };
                        rt->n_conns_open++;
                        if (rt->n_conns_open > (size_t)rt->cfg->max_clients && shut_down(rt, c, fd)) {
                                rt->stats.clients_refused++;
                                log_refused(rt);
                        }
                } else if (event == ZMQ_EVENT_DISCONNECTED && (c = conn_at(rt, fd)) && c->open) {
                        c->open = false;
                        rt->n_conns_open--;
                        cancel_connection(rt, c);
                }
        }
}

/* Anonymous resident memory of this process, in bytes (statm: resident
 * minus file-backed and shared pages). */
static uint64_t anon_bytes(void) {
        char buf[128];
        unsigned long size, resident, shared;
        FILE *f = fopen("/proc/self/statm", "re");
        if (!f)
                return 0;
        int n = fgets(buf, sizeof(buf), f) ? sscanf(buf, "%lu %lu %lu", &size, &resident, &shared) : 0;
        fclose(f);
        if (n != 3 || resident < shared)
                return 0;
        return (uint64_t)(resident - shared) * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* libzmq holds a multipart message whole, out of the router's sight, until
 * its last frame; RCVHWM counts whole messages and MAXMSGSIZE one frame, so
 * nothing in ZeroMQ bounds a message that never ends. What we can see is
 * our memory: past limits.receive_memory above the level at rest, the
 * connections that have bytes waiting in the kernel but have delivered no
 * whole message for a while are sending one that does not end, and are
 * closed (libzmq then frees what it held). */
static bool check_receive_memory(struct lmp_router *rt, double now) {
        uint64_t anon = anon_bytes();
        if (!anon)
                return false;
        /* What the router holds itself (jobs, kept events) is not what
         * libzmq holds for senders. */
        uint64_t held = rt->held_bytes + (rt->rcache ? lmp_rcache_bytes(rt->rcache) : 0);
        for (size_t i = 0; i < rt->n_models; i++)
                held += rt->models[i].semcache ? lmp_semcache_bytes(rt->models[i].semcache) : 0;
        anon = anon > held ? anon - held : 0;
        if (!rt->anon_baseline || anon < rt->anon_baseline)
                rt->anon_baseline = anon;
        if (anon <= rt->anon_baseline + rt->cfg->receive_memory)
                return false;
        lmp_router_on_monitor(rt, 0);
        lmp_router_on_monitor(rt, 1);
        uint64_t closed = 0;
        for (size_t fd = 0; fd < rt->n_conns_cap; fd++) {
                struct lmp_conn *c = &rt->conns[fd];
                int waiting = 0;
                /* One that has just delivered a whole message is not stuck
                 * in an endless one. */
                if (!c->open || c->closing || now - c->last_msg_ms < 20)
                        continue;
                if (ioctl((int)fd, FIONREAD, &waiting) < 0 || waiting <= 0)
                        continue;
                if (shut_down(rt, c, (int)fd)) {
                        closed++;
                        rt->stats.clients_overlong++;
                }
        }
        if (closed && now - rt->last_overlong_log_ms >= 1000) {
                char b1[32], b2[32];
                struct lmp_log_field f[] = {
                        LMP_FU64("ANON_BYTES", anon),
                        LMP_FU64("ANON_BYTES_AT_REST", rt->anon_baseline),
                        LMP_FU64("CLOSED", closed),
                };
                lmp_log_event(LMP_PRI_WARNING, "clients_overlong", f,
                              "memory %s above %s at rest (limits.receive_memory): closed %" PRIu64
                              " client connections sending a message that does not end",
                              lmp_fmt_bytes(anon - rt->anon_baseline, b1), lmp_fmt_bytes(rt->anon_baseline, b2),
                              closed);
                rt->last_overlong_log_ms = now;
        }
        return true;
}

double lmp_router_tick(struct lmp_router *rt, double now) {
        if (now < rt->next_tick_ms)
                return rt->next_tick_ms;
        if (rt->pending)
                retry_pending(rt, now);
        /* Over the bound, look again soon: the sender may not have had
         * bytes waiting at this very moment. */
        rt->next_tick_ms = now + (rt->n_conns_open && check_receive_memory(rt, now) ? 10 : 50);
        return rt->n_conns_open || rt->pending ? rt->next_tick_ms : now + 1000;
}

/* ------------------------------------------------------- worker messages */

static void log_done(struct lmp_router *rt, struct lmp_request_rt *r, const struct lmp_wire_done *done) {
        if (!rt->cfg->log_requests)
                return;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_REQUEST", r->id),
                LMP_FSTR("LMPOOL_MODEL", rt->models[r->model].cfg->name),
                LMP_FSTR("LMPOOL_WORKER", r->worker->name),
                LMP_FU64("PROMPT_TOKENS", done->prompt_tokens),
                LMP_FU64("CACHED_TOKENS", done->cached_tokens),
                LMP_FU64("GENERATED_TOKENS", done->generated_tokens),
                LMP_FF64("QUEUED_MS", done->queued_ms),
                LMP_FF64("TTFT_MS", done->ttft_ms),
                LMP_FF64("TOTAL_MS", done->total_ms),
                LMP_FF64("TOKENS_PER_S", done->tokens_per_s),
                LMP_FSTR("FINISH", lmp_finish_name(done->finish)),
        };
        lmp_log_event(LMP_PRI_INFO, "request_done", f, "request %s on %s: %u+%u tokens, ttft %.0f ms, %.1f tokens/s",
                      r->id, r->worker->name, done->prompt_tokens, done->generated_tokens, done->ttft_ms,
                      done->tokens_per_s);
}

/* A worker frame that does not fit the worker's state is dropped: counted,
 * logged (at most once a second), never forwarded. */
#define refuse_frame(rt, w, ...) \
        lmp_auth_refused((rt), &(rt)->auth.worker_frames_refused, "worker " __VA_ARGS__)

/* `ev`, `<rid> <kind> ...`, event JSON: for a request this worker is
 * running, of a kind it can send. A terminal event whose header names its
 * request but does not parse past that (wire.h) still ends the request,
 * once, for its client: its details are lost, which is logged as the
 * worker's protocol error. */
static void on_event(struct lmp_router *rt, struct lmp_router_worker *w, struct lmp_zparts *p) {
        struct lmp_wire_event ev;
        struct lmp_error err = { 0 };
        struct lmp_request_rt *r;
        bool whole;

        if (w->state != LMP_WORKER_READY && w->state != LMP_WORKER_STOPPING) {
                refuse_frame(rt, w, "%s: an event before it was ready: dropped", w->name);
                return;
        }
        whole = lmp_wire_parse_event(zmq_msg_data(&p->m[2]), zmq_msg_size(&p->m[2]), &ev, &err) == 0;
        if (!whole && (lmp_wire_parse_event_rid(zmq_msg_data(&p->m[2]), zmq_msg_size(&p->m[2]), &ev.rid, &ev.kind) < 0 ||
                       ev.kind == LMP_WIRE_TOKEN)) {
                refuse_frame(rt, w, "%s: %s: dropped", w->name, err.msg);
                return;
        }
        for (r = w->running.head; r && r->rid != ev.rid; r = r->next)
                ;
        if (!r) {
                refuse_frame(rt, w, "%s: an event for request %" PRIu64 ", which it is not running: dropped", w->name,
                             ev.rid);
                return;
        }
        if (!whole) {
                rt->auth.worker_protocol_errors++;
                lmp_log_msg(LMP_PRI_WARNING, "worker %s: protocol error: request %s: %s; the request ends with "
                            "the event as sent%s", w->name, r->id[0] ? r->id : "(answered already)", err.msg,
                            ev.kind == LMP_WIRE_DONE ? ", without its request_done line" : "");
        }
        if (r->internal) {
                /* The semantic cache's embed job: its answer is the router's. */
                if (ev.kind == LMP_WIRE_TOKEN)
                        return;
                if (r->id[0])
                        semantic_answer(rt, r, zmq_msg_data(&p->m[3]), zmq_msg_size(&p->m[3]),
                                        whole && ev.kind == LMP_WIRE_DONE);
                w->served++;
                list_remove(&w->running, r);
                request_free(rt, r);
                lmp_router_dispatch(rt);
                return;
        }
        if (ev.kind == LMP_WIRE_TOKEN) {
                r->streamed = true;
                if (!r->id[0])
                        return; /* answered already (cancel, timeout, slow consumer) */
                cache_collect(rt, r, zmq_msg_data(&p->m[3]), zmq_msg_size(&p->m[3]), false);
                sem_collect(rt, r, zmq_msg_data(&p->m[3]), zmq_msg_size(&p->m[3]), false);
                int rc = send_to_client(rt, r->client, r->client_len, r->delimiter, zmq_msg_data(&p->m[3]),
                                        zmq_msg_size(&p->m[3]));
                if (rc == -EAGAIN) {
                        /* The client does not keep up: stop the work, and its
                         * last event is slow_consumer, after what it has. */
                        rt->stats.events_dropped++;
                        cancel_request(rt, r, LMP_PROTO_SLOW_CONSUMER,
                                       "the client did not read its events in time (limits.client_events)");
                } else if (rc == -EHOSTUNREACH) {
                        client_gone(rt, r);
                }
                return;
        }
        if (r->id[0]) {
                /* The request's terminal event, kept for a slow client. */
                bool done = ev.kind == LMP_WIRE_DONE;
                send_terminal(rt, r->client, r->client_len, r->delimiter, r->ident, zmq_msg_data(&p->m[3]),
                              zmq_msg_size(&p->m[3]), done, lmp_clock_ms() + rt->cfg->request_timeout_ms);
                if (done) {
                        if (whole)
                                log_done(rt, r, &ev.done);
                        cache_collect(rt, r, zmq_msg_data(&p->m[3]), zmq_msg_size(&p->m[3]), true);
                        sem_collect(rt, r, zmq_msg_data(&p->m[3]), zmq_msg_size(&p->m[3]), true);
                } else {
                        rt->stats.errors++;
                }
        }
        w->served++;
        list_remove(&w->running, r);
        request_free(rt, r);
        lmp_router_dispatch(rt);
}

/* Whether this message came over the connection the ZAP handler accepted
 * for w's pid (zap.c): the routing id is the peer's claim, the User-Id is
 * what was checked. Read from a frame that came from the peer (libzmq
 * 4.3.4 leaves the routing-id frame without metadata when zmq_poll
 * prefetched the message). */
static bool from_worker(zmq_msg_t *m, const struct lmp_router_worker *w) {
        const char *uid = zmq_msg_gets(m, "User-Id");
        char pid[24];
        if (!uid || w->pid <= 0)
                return false;
        snprintf(pid, sizeof(pid), "%d", (int)w->pid);
        return strcmp(uid, pid) == 0;
}

static struct lmp_router_worker *find_worker(struct lmp_router *rt, const void *name, size_t len) {
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++) {
                        struct lmp_router_worker *w = &rt->models[i].workers[j];
                        if (strlen(w->name) == len && memcmp(w->name, name, len) == 0)
                                return w;
                }
        return NULL;
}

void lmp_router_on_worker(struct lmp_router *rt) {
        struct lmp_zparts p;

        while (lmp_zparts_recv(rt->back, &p, ZMQ_DONTWAIT) > 0) {
                struct lmp_router_worker *w =
                        p.n >= 2 ? find_worker(rt, zmq_msg_data(&p.m[0]), zmq_msg_size(&p.m[0])) : NULL;
                if (!w || w->state == LMP_WORKER_EXITED || !from_worker(&p.m[1], w)) {
                        const char *uid = p.n >= 2 ? zmq_msg_gets(&p.m[1], "User-Id") : NULL;
                        int idl = p.n >= 1 ? (int)LMP_MIN(zmq_msg_size(&p.m[0]), 96) : 0;
                        const char *idp = p.n >= 1 ? (const char *)zmq_msg_data(&p.m[0]) : "";
                        if (w && uid) {
                                /* Passed the ZAP handler, so one of our children: the
                                 * last frames of a worker that has just died. */
                                rt->auth.worker_frames_refused++;
                                lmp_log_msg(LMP_PRI_DEBUG, "worker socket: a late message from pid %s for %.*s: "
                                            "dropped", uid, idl, idp);
                        } else {
                                lmp_auth_refused(rt, &rt->auth.worker_frames_refused, "worker socket: a message from "
                                                 "pid %s claiming routing id '%.*s' of no worker: dropped",
                                                 uid ? uid : "?", idl, idp);
                        }
                        lmp_zparts_close(&p);
                        continue;
                }
                struct lmp_wire_ready ready;
                struct lmp_wire_heartbeat hb;
                struct lmp_error err = { 0 };
                enum lmp_wire_verb verb;
                const void *head = p.n >= 3 ? zmq_msg_data(&p.m[2]) : NULL;
                size_t head_len = p.n >= 3 ? zmq_msg_size(&p.m[2]) : 0;
                if (lmp_wire_parse_verb(false, zmq_msg_data(&p.m[1]), zmq_msg_size(&p.m[1]), p.total - 1, &verb,
                                        &err) < 0) {
                        refuse_frame(rt, w, "%s: %s: dropped", w->name, err.msg);
                } else if (verb == LMP_WIRE_EVENT) {
                        w->last_seen_ms = lmp_clock_ms();
                        on_event(rt, w, &p);
                } else if (verb == LMP_WIRE_HEARTBEAT) {
                        w->last_seen_ms = lmp_clock_ms();
                        if (lmp_wire_parse_heartbeat(head, head_len, &hb, &err) < 0) {
                                refuse_frame(rt, w, "%s: %s: dropped", w->name, err.msg);
                        } else {
                                w->rss = hb.rss;
                                w->pss = hb.pss;
                                w->store_private = hb.store_private;
                        }
                } else if (verb == LMP_WIRE_READY) {
                        if (w->state != LMP_WORKER_STARTING) {
                                refuse_frame(rt, w, "%s: 'ready' while %s: dropped", w->name,
                                             w->state == LMP_WORKER_READY ? "ready" : "stopping");
                        } else if (lmp_wire_parse_ready(head, head_len, &ready, &err) < 0) {
                                refuse_frame(rt, w, "%s: a bad 'ready': %s: dropped", w->name, err.msg);
                        } else if (ready.slots > (unsigned)rt->models[w->model].cfg->slots ||
                                   ready.pid != (int)w->pid) {
                                refuse_frame(rt, w, "%s: a bad 'ready' (%u slots of %d, pid %d of %d): dropped",
                                             w->name, ready.slots, rt->models[w->model].cfg->slots, (int)ready.pid,
                                             (int)w->pid);
                        } else {
                                w->state = LMP_WORKER_READY;
                                w->ready_ms = w->last_seen_ms = lmp_clock_ms();
                                w->slots = ready.slots;
                                if (rt->on_worker_ready)
                                        rt->on_worker_ready(rt, w, rt->userdata);
                                lmp_router_dispatch(rt);
                        }
                }
                lmp_zparts_close(&p);
        }
}

/* ------------------------------------------------------------- timers */

void lmp_router_expire(struct lmp_router *rt, double now) {
        size_t waiting = rt->sem_waiting.n;
        for (struct lmp_request_rt *r = rt->sem_waiting.head, *next; r; r = next) {
                next = r->next;
                if (now >= r->deadline_ms)
                        cancel_request(rt, r, LMP_PROTO_TIMEOUT, "the request's deadline passed in the queue");
        }
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_router_model *m = &rt->models[i];
                struct lmp_request_rt *r, *next;
                for (r = m->queue.head; r; r = next) {
                        next = r->next;
                        if (now >= r->deadline_ms)
                                cancel_request(rt, r, LMP_PROTO_TIMEOUT, "the request's deadline passed in the queue");
                }
                for (int j = 0; j < m->n_workers; j++)
                        for (r = m->workers[j].running.head; r; r = r->next)
                                if (r->id[0] && now >= r->deadline_ms)
                                        cancel_request(rt, r, LMP_PROTO_TIMEOUT, "the request's deadline passed");
        }
        /* Requests whose key's vector did not come in time went to their queue. */
        if (rt->sem_waiting.n != waiting)
                lmp_router_dispatch(rt);
}

double lmp_router_next_deadline(const struct lmp_router *rt) {
        double t = 1e300;
        for (const struct lmp_request_rt *r = rt->sem_waiting.head; r; r = r->next)
                t = LMP_MIN(t, r->deadline_ms);
        for (size_t i = 0; i < rt->n_models; i++) {
                for (const struct lmp_request_rt *r = rt->models[i].queue.head; r; r = r->next)
                        t = LMP_MIN(t, r->deadline_ms);
                for (int j = 0; j < rt->models[i].n_workers; j++)
                        for (const struct lmp_request_rt *r = rt->models[i].workers[j].running.head; r; r = r->next)
                                if (r->id[0])
                                        t = LMP_MIN(t, r->deadline_ms);
        }
        return t;
}

void lmp_router_heartbeat(struct lmp_router *rt) {
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++) {
                        struct lmp_router_worker *w = &rt->models[i].workers[j];
                        if (w->state != LMP_WORKER_READY && w->state != LMP_WORKER_STOPPING)
                                continue;
                        send_to_worker(rt, w, LMP_WIRE_PING, NULL, NULL, 0);
                }
}

void lmp_router_send_stop(struct lmp_router *rt, struct lmp_router_worker *w) {
        send_to_worker(rt, w, LMP_WIRE_STOP, NULL, NULL, 0);
}

/* The requests of a worker that died: one that has sent nothing yet goes
 * back to the head of its model's queue (limits.retries times), so that
 * the crash is invisible to its client; the others end with worker_lost.
 * Dispatch runs after, when the dead worker is no longer ready. */
void lmp_router_worker_lost(struct lmp_router *rt, struct lmp_router_worker *w, const char *why) {
        struct lmp_request_rt *r;
        double now = lmp_clock_ms();
        while ((r = w->running.tail)) {
                list_remove(&w->running, r);
                if (r->internal) {
                        /* Not run again: its request goes on uncached. */
                        semantic_give_up(rt, r);
                        request_free(rt, r);
                        continue;
                }
                struct lmp_router_model *m = &rt->models[r->model];
                struct lmp_retry_facts facts = {
                        .answered = !r->id[0], .streamed = r->streamed, .retries = r->retries,
                        .retries_max = (unsigned)rt->cfg->retries, .now_ms = now, .deadline_ms = r->deadline_ms,
                        .model_failed = m->failed, .stopping = rt->stopping,
                };
                if (lmp_dispatch_retry(&facts)) {
                        r->retries++;
                        r->worker = NULL;
                        list_push_front(&m->queue, r);
                        rt->queued++;
                        rt->stats.retried++;
                        lmp_log_msg(LMP_PRI_NOTICE, "request %s: %s died before its first token (%s): run again",
                                    r->id, w->name, why);
                        continue;
                }
                if (r->id[0])
                        request_error(rt, r, LMP_PROTO_WORKER_LOST, why);
                request_free(rt, r);
        }
}

void lmp_router_fail_queued(struct lmp_router *rt, enum lmp_proto_code code, const char *why) {
        while (rt->sem_waiting.head)
                cancel_request(rt, rt->sem_waiting.head, code, why);
        for (size_t i = 0; i < rt->n_models; i++) {
                struct lmp_request_rt *r;
                while ((r = rt->models[i].queue.head)) {
                        list_remove(&rt->models[i].queue, r);
                        rt->queued--;
                        request_error(rt, r, code, why);
                        request_free(rt, r);
                }
        }
}

void lmp_router_fail_model_queue(struct lmp_router *rt, size_t model, enum lmp_proto_code code, const char *why) {
        struct lmp_request_rt *r, *next;
        for (r = rt->sem_waiting.head; r; r = next) {
                next = r->next;
                if (r->model == model)
                        cancel_request(rt, r, code, why);
        }
        while ((r = rt->models[model].queue.head)) {
                list_remove(&rt->models[model].queue, r);
                rt->queued--;
                request_error(rt, r, code, why);
                request_free(rt, r);
        }
}

void lmp_router_reload(struct lmp_router *rt) {
        if (rt->rcache) {
                /* Answers given under the old settings (limits, defaults,
                 * a prompt now too long) are not served again. */
                lmp_rcache_set_limits(rt->rcache, rt->cfg->cache_bytes, rt->cfg->cache_ttl_s * 1000.0);
                for (size_t i = 0; i < rt->n_models; i++)
                        lmp_rcache_drop_model(rt->rcache, (uint32_t)i);
        }
        if (semantic_caches_new(rt) < 0)
                lmp_log_msg(LMP_PRI_ERR, "reload: out of memory for the semantic caches: they are off until the "
                            "next reload");
        /* Running workers get theirs now; starting ones when they are ready. */
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++)
                        if (rt->models[i].workers[j].state == LMP_WORKER_READY)
                                lmp_router_send_config(rt, &rt->models[i].workers[j]);
}

void lmp_router_send_config(struct lmp_router *rt, struct lmp_router_worker *w) {
        char head[LMP_WIRE_HEADER_MAX];
        struct lmp_wire_config h = {
                .max_prompt_tokens = (uint32_t)rt->cfg->max_prompt_tokens,
                .repeat_last_n = (uint32_t)rt->models[w->model].cfg->defaults.repeat_last_n,
                .log_priority = (int)lmp_log_priority_of(rt->cfg->log_level),
                .log_sink = (int)lmp_log_sink_of(rt->cfg->log_target),
        };
        if (lmp_wire_format_config(&h, head, sizeof(head)) >= 0)
                send_to_worker(rt, w, LMP_WIRE_CONFIG, head, NULL, 0);
}

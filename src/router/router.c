/* The ZeroMQ broker: a ROUTER socket for clients (ipc, and optionally TCP),
 * a ROUTER socket for workers, and the requests between them.
 *
 * A client frame is validated (src/proto) before anything else: a malformed
 * request is answered here and never reaches a worker. A valid generate or
 * chat request gets the model's defaults applied, is re-serialized as the
 * canonical JSON the worker parses, and goes to the least-loaded ready
 * worker of its model with a free slot, or waits in the model's queue. The
 * queue is bounded (limits.queue_length over all models) and so is each
 * client's number of requests in flight (limits.client_requests): past
 * either, the answer is `busy`. Every request has a deadline.
 *
 * Worker events are forwarded to the client as they come (the worker
 * formats them: the router reads only the small header frame), which keeps
 * the broker's cost per token to two frame copies. A request whose client
 * has already been answered (timeout, cancel) stays on its worker's list,
 * holding its slot, until the worker confirms it has stopped. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "supervisor/daemon.h"

#define MAX_PARTS 5
#define HARD_FRAME_MAX (4u << 20) /* larger frames drop the connection */

struct parts {
        zmq_msg_t m[MAX_PARTS];
        int n;          /* parts kept */
        int total;      /* parts received */
};

static int recv_parts(void *sock, struct parts *p) {
        int more = 1;
        p->n = p->total = 0;
        while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, sock, p->total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                        int e = errno;
                        zmq_msg_close(&m);
                        for (int i = 0; i < p->n; i++)
                                zmq_msg_close(&p->m[i]);
                        p->n = 0;
                        return -e;
                }
                more = zmq_msg_more(&m);
                if (p->n < MAX_PARTS)
                        p->m[p->n++] = m;
                else
                        zmq_msg_close(&m);
                p->total++;
        }
        return p->n;
}

static void close_parts(struct parts *p) {
        for (int i = 0; i < p->n; i++)
                zmq_msg_close(&p->m[i]);
        p->n = 0;
}

static bool part_eq(zmq_msg_t *m, const char *s) {
        size_t n = strlen(s);
        return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

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

static void request_free(struct lmp_request_rt *r) {
        if (!r)
                return;
        free(r->job);
        free(r);
}

/* --------------------------------------------------------------- replies */

static void send_to_client(struct lmp_daemon *d, const uint8_t *client, size_t client_len, bool delimiter,
                           const char *payload, size_t len) {
        /* Both client sockets share identities' space only within a socket:
         * a TCP client's id is unknown to the ipc socket and vice versa.
         * Try the socket that knows it (ROUTER_MANDATORY says which). */
        void *socks[2] = { d->front, d->front_tcp };
        for (int s = 0; s < 2; s++) {
                if (!socks[s])
                        continue;
                /* Never block the loop on a client: one that has let a
                 * thousand events pile up (its high-water mark) loses this
                 * one. Once the first frame is queued the rest follow. */
                if (zmq_send(socks[s], client, client_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
                        if (errno == EAGAIN) {
                                d->stats.dropped++;
                                return;
                        }
                        continue; /* EHOSTUNREACH: not this socket's client */
                }
                if (delimiter)
                        zmq_send(socks[s], "", 0, ZMQ_SNDMORE);
                zmq_send(socks[s], payload, len, 0);
                return;
        }
}

static void reply_error(struct lmp_daemon *d, const uint8_t *client, size_t client_len, bool delimiter,
                        const char *id, enum lmp_proto_code code, const char *fmt, ...) LMP_PRINTF(7, 8);

static void reply_error(struct lmp_daemon *d, const uint8_t *client, size_t client_len, bool delimiter,
                        const char *id, enum lmp_proto_code code, const char *fmt, ...) {
        char msg[LMP_PROTO_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        d->out.len = 0;
        if (lmp_proto_format_error(&d->out, id, code, msg) == 0)
                send_to_client(d, client, client_len, delimiter, d->out.data, d->out.len);
        d->stats.errors++;
        if (code == LMP_PROTO_BUSY)
                d->stats.busy++;
        else if (code == LMP_PROTO_TIMEOUT)
                d->stats.timeouts++;
        else if (code == LMP_PROTO_WORKER_LOST)
                d->stats.worker_lost++;
}

static void request_error(struct lmp_daemon *d, struct lmp_request_rt *r, enum lmp_proto_code code,
                          const char *message) {
        reply_error(d, r->client, r->client_len, r->delimiter, r->id, code, "%s", message);
}

/* ---------------------------------------------------------------- open */

static int mkdir_parents(const char *endpoint) {
        char path[512], *slash;
        if (strncmp(endpoint, "ipc://", 6) != 0)
                return 0;
        snprintf(path, sizeof(path), "%s", endpoint + 6);
        for (slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *slash = '/';
        }
        return 0;
}

static void *router_socket(struct lmp_daemon *d, const char *endpoint, bool workers) {
        int one = 1, zero = 0;
        int64_t maxsize = HARD_FRAME_MAX;
        void *s = zmq_socket(d->zctx, ZMQ_ROUTER);
        if (!s)
                return NULL;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        if (workers)
                zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
        else
                zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsize, sizeof(maxsize));
        if (mkdir_parents(endpoint) < 0 || zmq_bind(s, endpoint) < 0) {
                lmp_log(LMP_PRI_ERR, NULL, NULL, 0, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
                zmq_close(s);
                return NULL;
        }
        return s;
}

int lmp_router_open(struct lmp_daemon *d) {
        d->zctx = zmq_ctx_new();
        if (!d->zctx)
                return -ENOMEM;
        d->front = router_socket(d, d->frontend, false);
        if (!d->front)
                return -EADDRINUSE;
        if (d->cfg->tcp[0]) {
                d->front_tcp = router_socket(d, d->cfg->tcp, false);
                if (!d->front_tcp)
                        return -EADDRINUSE;
        }
        d->back = router_socket(d, d->backend, true);
        if (!d->back)
                return -EADDRINUSE;
        return 0;
}

void lmp_router_close(struct lmp_daemon *d) {
        if (d->front)
                zmq_close(d->front);
        if (d->front_tcp)
                zmq_close(d->front_tcp);
        if (d->back)
                zmq_close(d->back);
        if (d->zctx)
                zmq_ctx_term(d->zctx);
        d->front = d->front_tcp = d->back = d->zctx = NULL;
        if (strncmp(d->frontend, "ipc://", 6) == 0)
                unlink(d->frontend + 6);
        if (strncmp(d->backend, "ipc://", 6) == 0)
                unlink(d->backend + 6);
}

/* ------------------------------------------------------------- dispatch */

static void send_job(struct lmp_daemon *d, struct lmp_worker_rt *w, struct lmp_request_rt *r, double now) {
        char head[64];
        snprintf(head, sizeof(head), "%" PRIu64 " %.3f", r->rid, now - r->arrival_ms);
        if (zmq_send(d->back, w->name, strlen(w->name), ZMQ_SNDMORE) < 0) {
                /* The worker's connection is gone: it is dying; SIGCHLD will
                 * fail this request with the others. */
                return;
        }
        zmq_send(d->back, "job", 3, ZMQ_SNDMORE);
        zmq_send(d->back, head, strlen(head), ZMQ_SNDMORE);
        zmq_send(d->back, r->job, r->job_len, 0);
}

static struct lmp_worker_rt *least_loaded(struct lmp_model_rt *m) {
        struct lmp_worker_rt *best = NULL;
        for (int i = 0; i < m->n_workers; i++) {
                struct lmp_worker_rt *w = &m->workers[i];
                if (w->state != LMP_WORKER_READY || w->running.n >= w->slots)
                        continue;
                if (!best || w->running.n < best->running.n ||
                    (w->running.n == best->running.n && w->served < best->served))
                        best = w;
        }
        return best;
}

void lmp_router_dispatch(struct lmp_daemon *d) {
        double now = lmp_now_ms();
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                while (m->queue.head) {
                        struct lmp_worker_rt *w = least_loaded(m);
                        struct lmp_request_rt *r = m->queue.head;
                        if (!w)
                                break;
                        list_remove(&m->queue, r);
                        d->queued--;
                        r->worker = w;
                        r->dispatch_ms = now;
                        list_push(&w->running, r);
                        send_job(d, w, r, now);
                }
        }
}

size_t lmp_router_running(const struct lmp_daemon *d) {
        size_t n = 0;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++)
                        n += d->models[i].workers[j].running.n;
        return n;
}

/* ------------------------------------------------------- client requests */

/* The client's live requests: in every queue and on every worker. */
static size_t client_in_flight(struct lmp_daemon *d, const uint8_t *client, size_t len, const char *id,
                               struct lmp_request_rt **ret_same_id) {
        size_t n = 0;
        *ret_same_id = NULL;
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                struct lmp_req_list *lists[1 + 256];
                int nl = 0;
                lists[nl++] = &m->queue;
                for (int j = 0; j < m->n_workers && nl < (int)LMP_ARRAY_SIZE(lists); j++)
                        lists[nl++] = &m->workers[j].running;
                for (int l = 0; l < nl; l++)
                        for (struct lmp_request_rt *r = lists[l]->head; r; r = r->next) {
                                if (r->client_len != len || memcmp(r->client, client, len) != 0 || !r->id[0])
                                        continue;
                                n++;
                                if (id && strcmp(r->id, id) == 0)
                                        *ret_same_id = r;
                        }
        }
        return n;
}

static int find_model(struct lmp_daemon *d, const char *name) {
        for (size_t i = 0; i < d->n_models; i++)
                if (strcmp(d->models[i].cfg->name, name) == 0)
                        return (int)i;
        return -1;
}

/* Fills the fields the request left out from the model's defaults. */
static void apply_defaults(const struct lmp_model_config *mc, struct lmp_request *req) {
        struct lmp_sampling *s = &req->sampling;
        const struct lmp_sampling_defaults *def = &mc->defaults;
        if (!(s->set & LMP_SET_MAX_TOKENS)) {
                s->max_tokens = def->max_tokens;
                s->set |= LMP_SET_MAX_TOKENS;
        }
        if (!(s->set & LMP_SET_TEMPERATURE)) {
                s->temperature = def->temperature;
                s->set |= LMP_SET_TEMPERATURE;
        }
        if (!(s->set & LMP_SET_TOP_K)) {
                s->top_k = def->top_k;
                s->set |= LMP_SET_TOP_K;
        }
        if (!(s->set & LMP_SET_TOP_P)) {
                s->top_p = def->top_p;
                s->set |= LMP_SET_TOP_P;
        }
        if (!(s->set & LMP_SET_MIN_P)) {
                s->min_p = def->min_p;
                s->set |= LMP_SET_MIN_P;
        }
        if (!(s->set & LMP_SET_REPEAT_PENALTY)) {
                s->repeat_penalty = def->repeat_penalty;
                s->set |= LMP_SET_REPEAT_PENALTY;
        }
        if (!(s->set & LMP_SET_PRESENCE_PENALTY)) {
                s->presence_penalty = def->presence_penalty;
                s->set |= LMP_SET_PRESENCE_PENALTY;
        }
        if (!(s->set & LMP_SET_FREQUENCY_PENALTY)) {
                s->frequency_penalty = def->frequency_penalty;
                s->set |= LMP_SET_FREQUENCY_PENALTY;
        }
        if (!(s->set & LMP_SET_SEED) && def->seed >= 0) {
                s->seed = (uint64_t)def->seed;
                s->set |= LMP_SET_SEED;
        }
}

static void answer_models(struct lmp_daemon *d, const uint8_t *client, size_t len, bool delim, const char *id) {
        struct lmp_model_info info[LMP_CONFIG_MAX_MODELS];
        for (size_t i = 0; i < d->n_models; i++) {
                const struct lmp_model_rt *m = &d->models[i];
                int ready = 0;
                for (int j = 0; j < m->n_workers; j++)
                        ready += m->workers[j].state == LMP_WORKER_READY;
                info[i] = (struct lmp_model_info){
                        .name = m->cfg->name, .path = m->cfg->path, .arch = m->arch, .ctx = m->n_ctx,
                        .workers = m->cfg->workers, .ready = ready, .slots = m->cfg->slots,
                        .store_bytes = m->store ? (int64_t)m->store->size : 0,
                };
        }
        d->out.len = 0;
        if (lmp_proto_format_models(&d->out, id, info, d->n_models) == 0)
                send_to_client(d, client, len, delim, d->out.data, d->out.len);
}

static const char *state_name(enum lmp_worker_state s) {
        switch (s) {
        case LMP_WORKER_STARTING: return "starting";
        case LMP_WORKER_READY: return "ready";
        case LMP_WORKER_STOPPING: return "stopping";
        default: return "exited";
        }
}

static void answer_stats(struct lmp_daemon *d, const uint8_t *client, size_t len, bool delim, const char *id) {
        size_t nw = 0, k = 0;
        for (size_t i = 0; i < d->n_models; i++)
                nw += (size_t)d->models[i].n_workers;
        struct lmp_worker_info *wi = calloc(nw ? nw : 1, sizeof(*wi));
        if (!wi) {
                reply_error(d, client, len, delim, id, LMP_PROTO_INTERNAL, "out of memory");
                return;
        }
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        const struct lmp_worker_rt *w = &d->models[i].workers[j];
                        wi[k++] = (struct lmp_worker_info){
                                .name = w->name, .model = d->models[i].cfg->name, .pid = w->pid,
                                .state = state_name(w->state), .slots = w->slots, .active = (int64_t)w->running.n,
                                .rss_bytes = (int64_t)w->rss, .pss_bytes = (int64_t)w->pss,
                                .served = (int64_t)w->served, .restarts = (int64_t)w->restarts,
                        };
                }
        struct lmp_stats st = {
                .uptime_s = (lmp_now_ms() - d->start_ms) / 1e3,
                .queue_length = (int64_t)d->queued, .queue_limit = d->cfg->queue_length,
                .total = (int64_t)d->stats.total, .ok = (int64_t)d->stats.ok, .errors = (int64_t)d->stats.errors,
                .busy = (int64_t)d->stats.busy, .timeouts = (int64_t)d->stats.timeouts,
                .worker_lost = (int64_t)d->stats.worker_lost, .workers = wi, .n_workers = k,
        };
        d->out.len = 0;
        if (lmp_proto_format_stats(&d->out, id, &st) == 0)
                send_to_client(d, client, len, delim, d->out.data, d->out.len);
        free(wi);
}

static void answer_health(struct lmp_daemon *d, const uint8_t *client, size_t len, bool delim, const char *id) {
        struct lmp_health_model hm[LMP_CONFIG_MAX_MODELS];
        bool all = true, any_missing = false;
        for (size_t i = 0; i < d->n_models; i++) {
                const struct lmp_model_rt *m = &d->models[i];
                int ready = 0;
                for (int j = 0; j < m->n_workers; j++)
                        ready += m->workers[j].state == LMP_WORKER_READY;
                bool failed = !m->loaded || m->state == LMP_MODEL_FAILED;
                hm[i] = (struct lmp_health_model){ .name = m->cfg->name, .ready = ready,
                                                   .workers = m->cfg->workers, .failed = failed ? m->failed : NULL };
                all &= ready == m->cfg->workers;
                any_missing |= ready == 0 || failed;
        }
        const char *status = !d->ready_notified ? "starting" : any_missing ? "degraded" : "ok";
        (void)all;
        d->out.len = 0;
        if (lmp_proto_format_health(&d->out, id, status, hm, d->n_models) == 0)
                send_to_client(d, client, len, delim, d->out.data, d->out.len);
}

static void cancel_request(struct lmp_daemon *d, struct lmp_request_rt *r, enum lmp_proto_code code,
                           const char *why) {
        request_error(d, r, code, why);
        if (!r->worker) {
                list_remove(&d->models[r->model].queue, r);
                d->queued--;
                request_free(r);
                return;
        }
        /* Running: tell the worker, keep the slot until it confirms. */
        char rid[32];
        snprintf(rid, sizeof(rid), "%" PRIu64, r->rid);
        if (zmq_send(d->back, r->worker->name, strlen(r->worker->name), ZMQ_SNDMORE) >= 0) {
                zmq_send(d->back, "cancel", 6, ZMQ_SNDMORE);
                zmq_send(d->back, rid, strlen(rid), 0);
        }
        r->id[0] = '\0'; /* answered: later events are dropped */
}

/* Once a second at most, so that an overload does not flood the journal. */
static void log_overload(struct lmp_daemon *d, const struct lmp_model_rt *m) {
        double now = lmp_now_ms();
        d->overload_refused++;
        if (now - d->last_overload_ms < 1000)
                return;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FU64("QUEUE_LENGTH", d->queued),
                LMP_FU64("QUEUE_LIMIT", (uint64_t)d->cfg->queue_length),
                LMP_FU64("RUNNING", lmp_router_running(d)),
                LMP_FU64("REFUSED", d->overload_refused),
        };
        lmp_log_event(LMP_PRI_WARNING, "overload", f, "queue full (%zu requests): %" PRIu64
                      " requests refused with busy since the last report", d->queued, d->overload_refused);
        d->last_overload_ms = now;
        d->overload_refused = 0;
}

static void handle_request(struct lmp_daemon *d, const uint8_t *client, size_t clen, bool delim,
                           struct lmp_request *req) {
        struct lmp_request_rt *same = NULL, *r;
        int mi;

        switch (req->type) {
        case LMP_REQ_MODELS:
                answer_models(d, client, clen, delim, req->id);
                return;
        case LMP_REQ_STATS:
                answer_stats(d, client, clen, delim, req->id);
                return;
        case LMP_REQ_HEALTH:
                answer_health(d, client, clen, delim, req->id);
                return;
        case LMP_REQ_CANCEL:
                client_in_flight(d, client, clen, req->target, &same);
                if (same)
                        cancel_request(d, same, LMP_PROTO_CANCELLED, "cancelled by the client");
                d->out.len = 0;
                if (lmp_proto_format_cancelled(&d->out, req->id, req->target, same != NULL) == 0)
                        send_to_client(d, client, clen, delim, d->out.data, d->out.len);
                return;
        default:
                break;
        }

        d->stats.total++;
        if (d->stopping) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_BUSY, "the daemon is shutting down");
                return;
        }
        mi = find_model(d, req->model);
        if (mi < 0) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_UNKNOWN_MODEL, "no model named '%s'",
                            req->model);
                return;
        }
        struct lmp_model_rt *m = &d->models[mi];
        if (!m->loaded) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_UNKNOWN_MODEL,
                            "model '%s' was refused at load (see the daemon's log)", req->model);
                return;
        }
        if (m->state == LMP_MODEL_FAILED) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_MODEL_FAILED, "model '%s' cannot serve: %s",
                            req->model, m->failed);
                return;
        }
        size_t n = client_in_flight(d, client, clen, req->id, &same);
        if (same) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST,
                            "id '%s' is already in flight", req->id);
                return;
        }
        if (n >= (size_t)d->cfg->client_requests) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_BUSY,
                            "this client has %zu requests in flight (limits.client_requests)", n);
                return;
        }
        if ((req->sampling.set & LMP_SET_MAX_TOKENS) && req->sampling.max_tokens > d->cfg->max_tokens) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_BAD_REQUEST,
                            "field 'max_tokens': %d is above the limit %d (limits.max_tokens)",
                            req->sampling.max_tokens, d->cfg->max_tokens);
                return;
        }
        if (req->type == LMP_REQ_GENERATE && req->prompt_len > (size_t)d->cfg->max_prompt_tokens * 64) {
                /* No token is longer than 64 bytes in any vocabulary we know:
                 * such a prompt has more tokens than the limit. */
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_TOO_LONG,
                            "the prompt's %zu bytes exceed limits.max_prompt_tokens (%d)", req->prompt_len,
                            d->cfg->max_prompt_tokens);
                return;
        }
        if (!least_loaded(m) && d->queued >= (size_t)d->cfg->queue_length) {
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_BUSY, "queue full (%d requests)",
                            d->cfg->queue_length);
                log_overload(d, m);
                return;
        }
        uint32_t timeout = (uint32_t)d->cfg->request_timeout_ms;
        if ((req->sampling.set & LMP_SET_TIMEOUT_MS) && req->timeout_ms < timeout)
                timeout = req->timeout_ms;
        apply_defaults(m->cfg, req);

        r = calloc(1, sizeof(*r));
        struct lmp_proto_buf job = { 0 };
        if (!r || lmp_proto_format_request(&job, req) < 0) {
                free(r);
                lmp_proto_buf_free(&job);
                reply_error(d, client, clen, delim, req->id, LMP_PROTO_INTERNAL, "out of memory");
                return;
        }
        r->rid = ++d->next_rid;
        memcpy(r->client, client, clen);
        r->client_len = (uint8_t)clen;
        r->delimiter = delim;
        snprintf(r->id, sizeof(r->id), "%s", req->id);
        r->model = (size_t)mi;
        r->job = job.data;
        r->job_len = job.len;
        r->arrival_ms = lmp_now_ms();
        r->deadline_ms = r->arrival_ms + timeout;
        list_push(&m->queue, r);
        d->queued++;
        lmp_router_dispatch(d);
}

void lmp_router_on_client(struct lmp_daemon *d, void *sock) {
        struct parts p;
        struct lmp_request req;
        struct lmp_proto_error perr;

        while (recv_parts(sock, &p) > 0) {
                const uint8_t *client = zmq_msg_data(&p.m[0]);
                size_t clen = zmq_msg_size(&p.m[0]);
                bool delim = p.n >= 3 && zmq_msg_size(&p.m[1]) == 0;
                zmq_msg_t *body = &p.m[delim ? 2 : 1];

                if (p.n < 2 || clen == 0 || clen >= LMP_CLIENT_ID_MAX || p.total > (delim ? 3 : 2)) {
                        if (p.n >= 2 && clen > 0 && clen < LMP_CLIENT_ID_MAX)
                                reply_error(d, client, clen, delim, NULL, LMP_PROTO_BAD_REQUEST,
                                            "a request is one frame of JSON (optionally after an empty frame)");
                        close_parts(&p);
                        continue;
                }
                memset(&req, 0, sizeof(req));
                memset(&perr, 0, sizeof(perr));
                if (lmp_proto_parse_request(zmq_msg_data(body), zmq_msg_size(body), &req, &perr) < 0) {
                        reply_error(d, client, clen, delim, perr.has_id ? perr.id : NULL, perr.code, "%s",
                                    perr.message);
                } else {
                        handle_request(d, client, clen, delim, &req);
                }
                lmp_request_clear(&req);
                close_parts(&p);
        }
}

/* ------------------------------------------------------- worker messages */

static void log_done(struct lmp_daemon *d, struct lmp_request_rt *r, const char *head) {
        unsigned prompt = 0, gen = 0, cached = 0;
        double queued = 0, ttft = 0, total = 0, tps = 0;
        char finish[16] = "";
        uint64_t rid;
        char kind;

        if (sscanf(head, "%" SCNu64 " %c %u %u %u %lf %lf %lf %lf %15s", &rid, &kind, &prompt, &gen, &cached,
                   &queued, &ttft, &total, &tps, finish) < 10)
                return;
        if (!d->cfg->log_requests)
                return;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_REQUEST", r->id),
                LMP_FSTR("LMPOOL_MODEL", d->models[r->model].cfg->name),
                LMP_FSTR("LMPOOL_WORKER", r->worker->name),
                LMP_FU64("PROMPT_TOKENS", prompt),
                LMP_FU64("CACHED_TOKENS", cached),
                LMP_FU64("GENERATED_TOKENS", gen),
                LMP_FF64("QUEUED_MS", queued),
                LMP_FF64("TTFT_MS", ttft),
                LMP_FF64("TOTAL_MS", total),
                LMP_FF64("TOKENS_PER_S", tps),
                LMP_FSTR("FINISH", finish),
        };
        lmp_log_event(LMP_PRI_INFO, "request_done", f, "request %s on %s: %u+%u tokens, ttft %.0f ms, %.1f tokens/s",
                      r->id, r->worker->name, prompt, gen, ttft, tps);
}

static void on_event(struct lmp_daemon *d, struct lmp_worker_rt *w, struct parts *p) {
        char head[256];
        uint64_t rid;
        char kind = 0;
        size_t hl;
        struct lmp_request_rt *r;

        if (p->n < 4)
                return;
        hl = LMP_MIN(zmq_msg_size(&p->m[2]), sizeof(head) - 1);
        memcpy(head, zmq_msg_data(&p->m[2]), hl);
        head[hl] = '\0';
        if (sscanf(head, "%" SCNu64 " %c", &rid, &kind) != 2)
                return;
        for (r = w->running.head; r && r->rid != rid; r = r->next)
                ;
        if (!r)
                return;
        if (r->id[0])
                send_to_client(d, r->client, r->client_len, r->delimiter, zmq_msg_data(&p->m[3]),
                               zmq_msg_size(&p->m[3]));
        if (kind == 't')
                return;
        if (r->id[0]) {
                if (kind == 'd') {
                        d->stats.ok++;
                        log_done(d, r, head);
                } else {
                        d->stats.errors++;
                }
        }
        w->served++;
        list_remove(&w->running, r);
        request_free(r);
        lmp_router_dispatch(d);
}

void lmp_router_on_worker(struct lmp_daemon *d) {
        struct parts p;

        while (recv_parts(d->back, &p) > 0) {
                struct lmp_worker_rt *w =
                        p.n >= 2 ? lmp_supervisor_find_worker(d, zmq_msg_data(&p.m[0]), zmq_msg_size(&p.m[0])) : NULL;
                if (!w || w->state == LMP_WORKER_EXITED) {
                        close_parts(&p);
                        continue;
                }
                w->last_seen_ms = lmp_now_ms();
                if (part_eq(&p.m[1], "ev")) {
                        on_event(d, w, &p);
                } else if (part_eq(&p.m[1], "hb") && p.n >= 3) {
                        char body[160];
                        unsigned active;
                        size_t bl = LMP_MIN(zmq_msg_size(&p.m[2]), sizeof(body) - 1);
                        memcpy(body, zmq_msg_data(&p.m[2]), bl);
                        body[bl] = '\0';
                        sscanf(body, "%u %" SCNu64 " %" SCNu64 " %" SCNu64, &active, &w->rss, &w->pss,
                               &w->store_private);
                } else if (part_eq(&p.m[1], "ready") && p.n >= 3) {
                        char body[64];
                        unsigned slots = 0;
                        size_t bl = LMP_MIN(zmq_msg_size(&p.m[2]), sizeof(body) - 1);
                        memcpy(body, zmq_msg_data(&p.m[2]), bl);
                        body[bl] = '\0';
                        if (sscanf(body, "%u", &slots) == 1 && slots > 0) {
                                w->slots = slots;
                                lmp_supervisor_worker_ready(d, w);
                                lmp_router_dispatch(d);
                        }
                }
                close_parts(&p);
        }
}

/* ------------------------------------------------------------- timers */

void lmp_router_expire(struct lmp_daemon *d, double now) {
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                struct lmp_request_rt *r, *next;
                for (r = m->queue.head; r; r = next) {
                        next = r->next;
                        if (now >= r->deadline_ms)
                                cancel_request(d, r, LMP_PROTO_TIMEOUT, "the request's deadline passed in the queue");
                }
                for (int j = 0; j < m->n_workers; j++)
                        for (r = m->workers[j].running.head; r; r = r->next)
                                if (r->id[0] && now >= r->deadline_ms)
                                        cancel_request(d, r, LMP_PROTO_TIMEOUT, "the request's deadline passed");
        }
}

void lmp_router_heartbeat(struct lmp_daemon *d) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->state != LMP_WORKER_READY && w->state != LMP_WORKER_STOPPING)
                                continue;
                        if (zmq_send(d->back, w->name, strlen(w->name), ZMQ_SNDMORE) >= 0)
                                zmq_send(d->back, "hb", 2, 0);
                }
}

void lmp_router_send_stop(struct lmp_daemon *d, struct lmp_worker_rt *w) {
        if (zmq_send(d->back, w->name, strlen(w->name), ZMQ_SNDMORE) >= 0)
                zmq_send(d->back, "stop", 4, 0);
}

void lmp_router_worker_lost(struct lmp_daemon *d, struct lmp_worker_rt *w, const char *why) {
        struct lmp_request_rt *r;
        while ((r = w->running.head)) {
                list_remove(&w->running, r);
                if (r->id[0])
                        request_error(d, r, LMP_PROTO_WORKER_LOST, why);
                request_free(r);
        }
}

void lmp_router_fail_queued(struct lmp_daemon *d, enum lmp_proto_code code, const char *why) {
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_request_rt *r;
                while ((r = d->models[i].queue.head)) {
                        list_remove(&d->models[i].queue, r);
                        d->queued--;
                        request_error(d, r, code, why);
                        request_free(r);
                }
        }
}

void lmp_router_fail_model_queue(struct lmp_daemon *d, size_t model, enum lmp_proto_code code, const char *why) {
        struct lmp_request_rt *r;
        while ((r = d->models[model].queue.head)) {
                list_remove(&d->models[model].queue, r);
                d->queued--;
                request_error(d, r, code, why);
                request_free(r);
        }
}

void lmp_router_send_config(struct lmp_daemon *d, struct lmp_worker_rt *w) {
        char body[64];
        snprintf(body, sizeof(body), "%d %d %d", d->cfg->max_prompt_tokens,
                 d->models[w->model].cfg->defaults.repeat_last_n, (int)lmp_log_priority_of(d->cfg->log_level));
        if (zmq_send(d->back, w->name, strlen(w->name), ZMQ_SNDMORE) >= 0) {
                zmq_send(d->back, "config", 6, ZMQ_SNDMORE);
                zmq_send(d->back, body, strlen(body), 0);
        }
}

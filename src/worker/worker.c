/* A worker process: `lmpoold --worker ...`, started by the supervisor with
 * the weight store's descriptor inherited.
 *
 * Two threads. The I/O thread owns the DEALER socket to the router: it
 * forwards jobs and cancels to the engine thread, forwards the engine's
 * events to the router, and sends a heartbeat every interval whatever the
 * engine is doing, so that a long prompt never looks like a dead worker.
 * It also watches the router's heartbeats and exits when the router is
 * gone. The engine thread owns the model context and runs batches while any
 * job is active. They talk over an inproc PAIR socket. The router's socket
 * is in a private directory of the supervisor's, which the worker checks
 * before connecting; the router takes the connection only from the pid it
 * spawned (src/router/zap.c).
 *
 * Messages with the router (multipart, first frame the verb) are written
 * and read by src/proto/wire.h:
 *   router -> worker: job <rid> <queued_ms> <request JSON> | cancel <rid> | hb | stop
 *                     | config <max_prompt_tokens> <repeat_last_n> <log priority>
 *   worker -> router: ready <slots> <pid> <n_ctx> | hb <active> <rss> <pss> <store_private>
 *                     | ev <rid> <t|d|e> <client event JSON>
 * A message from the router that does not parse is logged and dropped.
 *
 * A worker of an embedding model (an encoder with pooling) has no
 * generation engine: its engine thread runs each `embed` job when it
 * arrives, all its texts at once (worker/embed.h), and answers with one
 * `embedding` event (wire kind d). Jobs of the other kind (the router
 * refuses them first) are answered with bad_request.
 *
 * A worker that cannot load its model exits with LMP_WORKER_EXIT_LOAD and
 * writes why on its report descriptor (worker.h). With `store: mmap` the
 * weights are a file that someone may change while we serve it: every job
 * checks the file before it starts and before its `done` is sent (one
 * fstat each), so that an answer computed from weights that changed ends
 * with an error rather than a `done`; a read past the end of a truncated
 * file (SIGBUS) is reported on the descriptor before the signal kills us.
 */
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/zparts.h"
#include "common/log.h"
#include "common/procmem.h"
#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/vision.h"
#include "proto/proto.h"
#include "proto/wire.h"
#include "store/store.h"
#include "tokenizer/chat_setup.h"
#include "tokenizer/tokenizer.h"
#include "worker/embed.h"
#include "worker/engine.h"

#define PAIR_ENDPOINT "inproc://engine"
#define ARRIVAL_FRAME "arrival"   /* I/O thread -> engine: a job's receive time */
#define MEM_INTERVAL_MS 2000      /* between reads of the memory figures */

struct worker {
        /* settings */
        char name[96];
        int store_fd;
        int mmproj_fd;                  /* the vision encoder's store; -1: none */
        const char *backend;
        int threads;
        uint32_t slots, n_ctx, n_batch, prompt_chunk, max_prompt_tokens, cache_reuse;
        int heartbeat_ms, liveness;
        int repeat_last_n;
        int report_fd;                  /* -1: none */
        int log_priority;               /* enum lmp_log_priority */
        int log_sink;                   /* enum lmp_log_sink */
        const char *chat_template;

        /* engine */
        struct lmp_store *store;
        struct lmp_gguf *gguf;
        struct lmp_model *model;
        struct lmp_store *mmproj_store;
        struct lmp_gguf *mmproj_gguf;
        struct lmp_vision *vision;      /* NULL: the model takes no images */
        struct lmp_vocab *vocab;
        struct lmp_threadpool *pool;
        struct lmp_engine *engine;      /* generative models */
        struct lmp_embedder *embedder;  /* embedding models */
        struct lmp_chat_setup chat;

        void *zctx;
        void *pair_engine;              /* the engine thread's end */
        atomic_uint active;
        atomic_bool stop;
        struct lmp_proto_buf event_buf; /* the engine thread's, reused for every event */
        double job_arrival_ms;          /* engine thread: when the I/O thread took the next job */
};

static int send_frames(void *sock, const char *const *frames, const size_t *lens, int n) {
        for (int i = 0; i < n; i++)
                if (zmq_send(sock, frames[i], lens[i], i < n - 1 ? ZMQ_SNDMORE : 0) < 0)
                        return -errno;
        return 0;
}

static bool part_is(zmq_msg_t *m, const char *s) {
        size_t n = strlen(s);
        return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Sends a verb, its header (NULL: none) and a body (NULL: none). */
static int send_message(void *sock, enum lmp_wire_verb verb, const char *head, const void *body, size_t body_len) {
        const char *frames[3] = { lmp_wire_verb_name(verb) };
        size_t lens[3] = { strlen(frames[0]) };
        int n = 1;
        if (head) {
                frames[n] = head;
                lens[n++] = strlen(head);
        }
        if (body) {
                frames[n] = body;
                lens[n++] = body_len;
        }
        return send_frames(sock, frames, lens, n);
}

/* ------------------------------------------------------------ engine side */

static void engine_sink(void *userdata, const struct lmp_engine_event *ev) {
        struct worker *w = userdata;
        struct lmp_proto_buf *b = &w->event_buf;
        struct lmp_wire_event h = { .rid = ev->rid };
        char head[LMP_WIRE_HEADER_MAX];
        int r;

        b->len = 0;
        switch (ev->kind) {
        case LMP_EV_TOKEN:
                r = lmp_proto_format_token(b, ev->id, ev->text, ev->text_len, ev->return_ids ? ev->ids : NULL,
                                           ev->return_ids ? ev->n_ids : 0);
                h.kind = LMP_WIRE_TOKEN;
                break;
        case LMP_EV_DONE: {
                char why[160];
                if (lmp_store_check(w->store, why, sizeof(why)) == -ESTALE) {
                        char msg[256];
                        snprintf(msg, sizeof(msg), "the model file changed while this request ran (%s)", why);
                        r = lmp_proto_format_error(b, ev->id, LMP_PROTO_MODEL_FAILED, msg);
                        h.kind = LMP_WIRE_ERROR;
                        h.code = LMP_PROTO_MODEL_FAILED;
                        break;
                }
                enum lmp_finish finish = strcmp(ev->finish, "eos") == 0 ? LMP_FINISH_EOS :
                                         strcmp(ev->finish, "stop") == 0 ? LMP_FINISH_STOP :
                                         strcmp(ev->finish, "tool_calls") == 0 ? LMP_FINISH_TOOL_CALLS :
                                                                                 LMP_FINISH_LENGTH;
                struct lmp_done d = {
                        .finish = finish,
                        .text = ev->full_text, .text_len = ev->full_text_len,
                        .tool_calls = ev->tool_calls, .tool_calls_len = ev->tool_calls_len,
                        .usage = { .prompt_tokens = ev->prompt_tokens, .generated_tokens = ev->generated_tokens,
                                   .cached_tokens = ev->cached_tokens, .images = ev->images,
                                   .images_cached = ev->images_cached },
                        .timings = { .queued_ms = ev->queued_ms, .prompt_ms = ev->prompt_ms, .ttft_ms = ev->ttft_ms,
                                     .total_ms = ev->total_ms, .tokens_per_s = ev->tokens_per_s },
                        .worker = w->name,
                };
                r = lmp_proto_format_done(b, ev->id, &d);
                h.kind = LMP_WIRE_DONE;
                h.done = (struct lmp_wire_done){
                        .prompt_tokens = ev->prompt_tokens, .generated_tokens = ev->generated_tokens,
                        .cached_tokens = ev->cached_tokens, .queued_ms = ev->queued_ms, .ttft_ms = ev->ttft_ms,
                        .total_ms = ev->total_ms, .tokens_per_s = ev->tokens_per_s, .finish = finish,
                };
                break;
        }
        default: {
                enum lmp_proto_code code = LMP_PROTO_INTERNAL;
                if (lmp_proto_code_from_name(ev->code, &code) < 0 || code == LMP_PROTO_OK)
                        code = LMP_PROTO_INTERNAL;
                r = lmp_proto_format_error(b, ev->id, code, ev->message);
                h.kind = LMP_WIRE_ERROR;
                h.code = code;
                break;
        }
        }
        if (r < 0 || lmp_wire_format_event(&h, head, sizeof(head)) < 0)
                return;
        send_message(w->pair_engine, LMP_WIRE_EVENT, head, b->data, b->len);
}

/* Runs an embed job at once and sends its one event: the embedding, or an
 * error (too_long names the input over the limit). */
static void run_embed(struct worker *w, struct lmp_job *job) {
        const struct lmp_request *q = &job->req;
        struct lmp_engine_event fail = { .kind = LMP_EV_ERROR, .rid = job->rid, .id = q->id };
        struct lmp_error err = { 0 };
        char msg[sizeof(err.msg) + 96];

        if (!w->embedder) {
                fail.code = "bad_request";
                fail.message = w->model->arch->encoder
                                       ? "this model has no pooling (pooling_type none): it gives no embedding per text"
                                       : "this model is generative: it has no embeddings";
                engine_sink(w, &fail);
                return;
        }
        int r = lmp_embedder_run(w->embedder, (const char *const *)q->inputs, q->input_len, q->n_inputs, q->normalize,
                                 q->truncate, w->max_prompt_tokens, &err);
        if (r < 0) {
                fail.code = r == -E2BIG ? "too_long" : r == -EINVAL ? "bad_request" : "internal";
                snprintf(msg, sizeof(msg), "%s%s", err.msg,
                         r == -E2BIG ? " (the model's context or limits.max_prompt_tokens; \"truncate\": true cuts it)"
                                     : "");
                fail.message = msg;
                engine_sink(w, &fail);
                return;
        }
        char why[160];
        if (lmp_store_check(w->store, why, sizeof(why)) == -ESTALE) {
                snprintf(msg, sizeof(msg), "the model file changed while this request ran (%s)", why);
                fail.code = "model_failed";
                fail.message = msg;
                engine_sink(w, &fail);
                return;
        }

        /* Each text's ids, one after another, when asked for. */
        int32_t *ids = NULL;
        size_t *off = NULL;
        if (q->return_ids) {
                size_t total = (size_t)lmp_embedder_tokens(w->embedder);
                ids = malloc((total ? total : 1) * sizeof(*ids));
                off = malloc((q->n_inputs + 1) * sizeof(*off));
                if (!ids || !off) {
                        free(ids);
                        free(off);
                        fail.code = "internal";
                        fail.message = "out of memory";
                        engine_sink(w, &fail);
                        return;
                }
                off[0] = 0;
                for (size_t i = 0; i < q->n_inputs; i++) {
                        uint32_t n;
                        const int32_t *row = lmp_embedder_ids(w->embedder, i, &n);
                        memcpy(ids + off[i], row, n * sizeof(*ids));
                        off[i + 1] = off[i] + n;
                }
        }
        double total_ms = lmp_clock_ms() - job->arrival_ms;
        struct lmp_embedding em = {
                .vectors = lmp_embedder_vector(w->embedder, 0), .n = q->n_inputs,
                .n_embd = lmp_embedder_n_embd(w->embedder), .ids = ids, .ids_off = off,
                .prompt_tokens = (int64_t)lmp_embedder_tokens(w->embedder),
                .queued_ms = job->queued_ms, .total_ms = total_ms, .worker = w->name,
        };
        struct lmp_wire_event h = {
                .rid = job->rid, .kind = LMP_WIRE_DONE,
                .done = { .prompt_tokens = (uint32_t)LMP_MIN(em.prompt_tokens, (int64_t)UINT32_MAX),
                          .queued_ms = job->queued_ms, .total_ms = total_ms, .finish = LMP_FINISH_STOP },
        };
        char head[LMP_WIRE_HEADER_MAX];
        struct lmp_proto_buf *b = &w->event_buf;
        b->len = 0;
        if (lmp_proto_format_embedding(b, q->id, &em) == 0 && lmp_wire_format_event(&h, head, sizeof(head)) >= 0)
                send_message(w->pair_engine, LMP_WIRE_EVENT, head, b->data, b->len);
        else
                lmp_log_msg(LMP_PRI_ERR, "worker %s: request %s: out of memory for its embedding event", w->name, q->id);
        free(ids);
        free(off);
}

/* A job from the router's canonical request JSON. */
static int job_from_json(const struct worker *w, const void *buf, size_t len, struct lmp_job **ret, char *msg,
                         size_t msg_size) {
        struct lmp_proto_error perr = { 0 };
        struct lmp_job *j = calloc(1, sizeof(*j));
        if (!j) {
                snprintf(msg, msg_size, "out of memory");
                return -ENOMEM;
        }
        if (lmp_proto_parse_job(buf, len, &j->req, &perr) < 0) {
                snprintf(msg, msg_size, "bad job from the router: %s", perr.message);
                free(j);
                return -EINVAL;
        }
        const struct lmp_sampling *s = &j->req.sampling;
        j->sampling = (struct lmp_sampler_params){
                .temperature = (float)s->temperature,
                .top_k = s->top_k,
                .top_p = (float)s->top_p,
                .min_p = (float)s->min_p,
                .repeat_penalty = (float)s->repeat_penalty,
                .presence_penalty = (float)s->presence_penalty,
                .frequency_penalty = (float)s->frequency_penalty,
                .penalty_last_n = w->repeat_last_n,
                .seed = s->seed,
        };
        if (!(s->set & LMP_SET_SEED) && getrandom(&j->sampling.seed, sizeof(j->sampling.seed), 0) < 0)
                j->sampling.seed = (uint64_t)lmp_clock_ms() ^ (uint64_t)getpid();
        *ret = j;
        return 0;
}

/* A message from the router, forwarded by the I/O thread (which has taken
 * the pings and checked the verbs). */
static void handle_control(struct worker *w, zmq_msg_t *parts, int n) {
        struct lmp_error err = { 0 };
        enum lmp_wire_verb verb;
        const void *head = n >= 2 ? zmq_msg_data(&parts[1]) : NULL;
        size_t head_len = n >= 2 ? zmq_msg_size(&parts[1]) : 0;

        if (lmp_wire_parse_verb(true, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), n, &verb, &err) < 0) {
                lmp_log_msg(LMP_PRI_WARNING, "worker %s: from the router: %s: dropped", w->name, err.msg);
                return;
        }
        switch (verb) {
        case LMP_WIRE_JOB: {
                /* From when the I/O thread took it: a job that waited for
                 * the step in progress counts that wait in its ttft. */
                double arrival_ms = w->job_arrival_ms > 0 ? w->job_arrival_ms : lmp_clock_ms();
                w->job_arrival_ms = 0;
                struct lmp_wire_job h;
                struct lmp_job *job = NULL;
                char errmsg[512];
                if (lmp_wire_parse_job(head, head_len, &h, &err) < 0) {
                        /* No request number to answer: the router's
                         * deadline ends the request. */
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: from the router: %s: dropped", w->name, err.msg);
                        return;
                }
                if (job_from_json(w, zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), &job, errmsg,
                                  sizeof(errmsg)) < 0) {
                        struct lmp_engine_event ev = { .kind = LMP_EV_ERROR, .rid = h.rid, .id = NULL,
                                                       .code = "internal", .message = errmsg };
                        engine_sink(w, &ev);
                        return;
                }
                char why[160];
                if (lmp_store_check(w->store, why, sizeof(why)) == -ESTALE) {
                        snprintf(errmsg, sizeof(errmsg), "the model file changed under this worker (%s)", why);
                        struct lmp_engine_event ev = { .kind = LMP_EV_ERROR, .rid = h.rid, .id = job->req.id,
                                                       .code = "model_failed", .message = errmsg };
                        engine_sink(w, &ev);
                        lmp_job_free(job);
                        return;
                }
                job->rid = h.rid;
                job->queued_ms = h.queued_ms;
                job->arrival_ms = arrival_ms;
                if (job->req.type == LMP_REQ_EMBED) {
                        run_embed(w, job);
                        lmp_job_free(job);
                } else if (!w->engine) {
                        struct lmp_engine_event ev = {
                                .kind = LMP_EV_ERROR, .rid = h.rid, .id = job->req.id, .code = "bad_request",
                                .message = "this model is an embedding model: it does not generate text (use embed)"
                        };
                        engine_sink(w, &ev);
                        lmp_job_free(job);
                } else {
                        lmp_engine_submit(w->engine, job);
                }
                return;
        }
        case LMP_WIRE_CANCEL: {
                struct lmp_wire_cancel h;
                if (lmp_wire_parse_cancel(head, head_len, &h, &err) < 0) {
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: from the router: %s: dropped", w->name, err.msg);
                        return;
                }
                /* An embed job runs to its end when it arrives: nothing to cancel. */
                if (w->engine)
                        lmp_engine_cancel(w->engine, h.rid);
                return;
        }
        case LMP_WIRE_STOP:
                atomic_store(&w->stop, true);
                return;
        case LMP_WIRE_CONFIG: {
                /* SIGHUP in the supervisor: the settings it applies to
                 * running workers. The I/O thread has taken the logging. */
                struct lmp_wire_config h;
                if (lmp_wire_parse_config(head, head_len, &h, &err) < 0) {
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: from the router: %s: dropped", w->name, err.msg);
                        return;
                }
                w->max_prompt_tokens = h.max_prompt_tokens;
                w->repeat_last_n = (int)LMP_MIN(h.repeat_last_n, (uint32_t)INT32_MAX);
                if (w->engine)
                        lmp_engine_set_max_prompt_tokens(w->engine, h.max_prompt_tokens);
                return;
        }
        default:
                return;
        }
}

static void *engine_thread(void *arg) {
        struct worker *w = arg;

        for (;;) {
                bool idle = !w->engine || lmp_engine_active(w->engine) == 0;
                zmq_pollitem_t item = { .socket = w->pair_engine, .events = ZMQ_POLLIN };

                if (idle && atomic_load(&w->stop))
                        break;
                /* Block only when there is nothing to compute. */
                if (zmq_poll(&item, 1, idle ? 200 : 0) < 0 && errno != EINTR)
                        break;
                while (item.revents & ZMQ_POLLIN) {
                        struct lmp_zparts p;
                        if (lmp_zparts_recv(w->pair_engine, &p, ZMQ_DONTWAIT) < 0)
                                break;
                        if (p.n == 2 && part_is(&p.m[0], ARRIVAL_FRAME) && zmq_msg_size(&p.m[1]) == sizeof(double))
                                memcpy(&w->job_arrival_ms, zmq_msg_data(&p.m[1]), sizeof(double));
                        else
                                handle_control(w, p.m, p.n);
                        lmp_zparts_close(&p);
                }
                if (w->engine) {
                        lmp_engine_step(w->engine);
                        atomic_store(&w->active, lmp_engine_active(w->engine));
                }
        }
        const char *frames[1] = { "exit" };
        size_t lens[1] = { 4 };
        send_frames(w->pair_engine, frames, lens, 1);
        return NULL;
}

/* --------------------------------------------------------------- I/O side */

/* What the heartbeats report of memory, and when it was read. */
struct mem_figures {
        struct lmp_mem_usage mem;       /* the whole process */
        struct lmp_mem_usage region;    /* the weight store's mapping */
        double read_ms;
};

static void send_heartbeat(struct worker *w, void *dealer, struct mem_figures *f) {
        char head[LMP_WIRE_HEADER_MAX];
        double t = lmp_clock_ms();

        /* Memory figures cost reads of smaps_rollup and smaps, which walk
         * the page tables of the store, the KV cache and the scratch under
         * the mmap lock, on one of the cores the engine computes on:
         * milliseconds that stall both threads of a decode step. Every few
         * seconds is plenty. */
        if (f->read_ms == 0 || t - f->read_ms > MEM_INTERVAL_MS) {
                lmp_proc_mem(0, &f->mem);
                struct lmp_mem_usage region = { 0 };
                if (lmp_proc_region_mem(0, w->store->name, &region) == 0)
                        f->region = region;
                f->read_ms = t;
        }
        struct lmp_wire_heartbeat h = { .active = atomic_load(&w->active), .rss = f->mem.rss, .pss = f->mem.pss,
                                        .store_private = f->region.private_ };
        if (lmp_wire_format_heartbeat(&h, head, sizeof(head)) >= 0)
                send_message(dealer, LMP_WIRE_HEARTBEAT, head, NULL, 0);
}

/* The logging settings of a config message, log.level and log.target as
 * the supervisor has them (the engine thread takes the rest, and logs a
 * header that does not parse). */
static void apply_logging(struct worker *w, zmq_msg_t *head) {
        struct lmp_wire_config h;
        if (lmp_wire_parse_config(zmq_msg_data(head), zmq_msg_size(head), &h, NULL) < 0 ||
            (h.log_priority == w->log_priority && h.log_sink == w->log_sink))
                return;
        w->log_priority = h.log_priority;
        w->log_sink = h.log_sink;
        lmp_log_setup("lmpoold", (enum lmp_log_sink)h.log_sink, (enum lmp_log_priority)h.log_priority);
        lmp_log_msg(LMP_PRI_DEBUG, "worker %s: logging at priority %d, sink %d", w->name, w->log_priority,
                    w->log_sink);
}

static int io_loop(struct worker *w, void *dealer, void *pair_io) {
        struct mem_figures mem = { 0 };
        double next_hb = lmp_clock_ms(), last_router = lmp_clock_ms();
        double dead_after = (double)w->heartbeat_ms * w->liveness;

        for (;;) {
                zmq_pollitem_t items[2] = {
                        { .socket = dealer, .events = ZMQ_POLLIN },
                        { .socket = pair_io, .events = ZMQ_POLLIN },
                };
                double t = lmp_clock_ms();
                long timeout = next_hb > t ? (long)(next_hb - t) + 1 : 0;

                if (zmq_poll(items, 2, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (items[0].revents & ZMQ_POLLIN) {
                        struct lmp_zparts p;
                        enum lmp_wire_verb verb = LMP_WIRE_PING;
                        struct lmp_error err = { 0 };
                        if (lmp_zparts_recv(dealer, &p, 0) > 0) {
                                last_router = lmp_clock_ms();
                                if (lmp_wire_parse_verb(true, zmq_msg_data(&p.m[0]), zmq_msg_size(&p.m[0]), p.total,
                                                        &verb, &err) < 0) {
                                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: from the router: %s: dropped",
                                                    w->name, err.msg);
                                        verb = LMP_WIRE_PING; /* nothing to forward */
                                }
                                if (verb == LMP_WIRE_CONFIG)
                                        apply_logging(w, &p.m[1]);
                                if (verb == LMP_WIRE_JOB) {
                                        /* When it came, ahead of it: the engine
                                         * takes it only between two steps. */
                                        double now = lmp_clock_ms();
                                        const char *frames[2] = { ARRIVAL_FRAME, (const char *)&now };
                                        size_t lens[2] = { strlen(ARRIVAL_FRAME), sizeof(now) };
                                        send_frames(pair_io, frames, lens, 2);
                                }
                                if (verb != LMP_WIRE_PING) {
                                        /* Forward to the engine as is. */
                                        for (int i = 0; i < p.n; i++)
                                                zmq_msg_send(&p.m[i], pair_io, i < p.n - 1 ? ZMQ_SNDMORE : 0);
                                        p.n = 0;
                                }
                                lmp_zparts_close(&p);
                        }
                }
                if (items[1].revents & ZMQ_POLLIN) {
                        struct lmp_zparts p;
                        int n = lmp_zparts_recv(pair_io, &p, 0);
                        if (n > 0 && part_is(&p.m[0], "exit")) {
                                lmp_zparts_close(&p);
                                return 0;
                        }
                        for (int i = 0; i < n; i++)
                                zmq_msg_send(&p.m[i], dealer, i < n - 1 ? ZMQ_SNDMORE : 0);
                }
                t = lmp_clock_ms();
                if (t >= next_hb) {
                        send_heartbeat(w, dealer, &mem);
                        next_hb = t + w->heartbeat_ms;
                }
                if (t - last_router > dead_after) {
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: no word from the router for %.0f ms: exiting",
                                    w->name, t - last_router);
                        return -ETIMEDOUT;
                }
        }
}

/* ---------------------------------------------------------------- set-up */

/* Copies a message, cut short to fit. */
static void copy_reason(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

/* Loads the model, its vocabulary and the engine; on failure why says what
 * went wrong (it is also logged). */
static int load_engine(struct worker *w, char *why, size_t why_size) {
        struct lmp_error err = { 0 };
        int r;

        if ((r = lmp_store_attach(w->store_fd, &w->store, &err)) < 0 ||
            (r = lmp_gguf_open_store(w->store->base, w->store->size, &w->gguf, &err)) < 0 ||
            (r = lmp_model_load(w->gguf, lmp_cpu_isa(), &w->model, &err)) < 0 ||
            (r = lmp_vocab_load(w->gguf, &w->vocab, &err)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: %s", w->name, err.msg);
                copy_reason(why, why_size, err.msg);
                return r;
        }
        if (w->mmproj_fd >= 0 &&
            ((r = lmp_store_attach(w->mmproj_fd, &w->mmproj_store, &err)) < 0 ||
             (r = lmp_gguf_open_mem(w->mmproj_store->base, w->mmproj_store->size, &w->mmproj_gguf, &err)) < 0 ||
             (r = lmp_vision_load(w->mmproj_gguf, lmp_cpu_isa(), &w->vision, &err)) < 0)) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: mmproj: %s", w->name, err.msg);
                size_t k = (size_t)snprintf(why, why_size, "mmproj: ");
                if (k < why_size)
                        copy_reason(why + k, why_size - k, err.msg);
                return r;
        }
        if ((r = lmp_threadpool_new(w->threads, &w->pool)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: thread pool: %s", w->name, strerror(-r));
                snprintf(why, why_size, "thread pool of %d threads: %s", w->threads, strerror(-r));
                return r;
        }
        if (w->model->arch->encoder) {
                /* An embedding model. Without pooling it serves nothing, and
                 * says so to every request (the router refuses them first). */
                if (!lmp_model_pools(w->model))
                        return 0;
                struct lmp_embedder_params pp = { .model = w->model, .vocab = w->vocab, .n_ctx = w->n_ctx,
                                                  .n_batch = w->n_batch, .pool = w->pool };
                if ((r = lmp_embedder_new(&pp, &w->embedder, &err)) < 0) {
                        lmp_log_msg(LMP_PRI_ERR, "worker %s: %s", w->name, err.msg);
                        copy_reason(why, why_size, err.msg);
                }
                return r;
        }
        /* The same set-up as `lmpool chat-template MODEL` (chat_setup.h). A
         * chat_template the configuration names but lmpool does not know
         * (the loader checks only its spelling) costs the chat requests,
         * not the model: it is logged and the model's own template used. */
        r = lmp_chat_setup_init(&w->chat, w->gguf, w->vocab, w->chat_template, NULL, &err);
        if (r == -EINVAL) {
                lmp_log_msg(LMP_PRI_WARNING, "worker %s: chat_template: %s; using the model's own template instead",
                            w->name, err.msg);
                r = lmp_chat_setup_init(&w->chat, w->gguf, w->vocab, NULL, NULL, &err);
        }
        if (r < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: chat template: %s", w->name, err.msg);
                copy_reason(why, why_size, err.msg);
                return r;
        }
        struct lmp_engine_params ep = {
                .model = w->model, .vocab = w->vocab, .chat = &w->chat,
                .slots = w->slots, .n_ctx = w->n_ctx, .n_batch = w->n_batch, .prompt_chunk = w->prompt_chunk,
                .max_prompt_tokens = w->max_prompt_tokens, .cache_reuse = w->cache_reuse, .pool = w->pool,
                .vision = w->vision,
                .sink = engine_sink, .sink_userdata = w,
        };
        if ((r = lmp_engine_new(&ep, &w->engine, &err)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: %s", w->name, err.msg);
                copy_reason(why, why_size, err.msg);
                return r;
        }
        return 0;
}

static void free_worker(struct worker *w) {
        lmp_engine_free(w->engine);
        lmp_embedder_free(w->embedder);
        lmp_threadpool_free(w->pool);
        lmp_vocab_free(w->vocab);
        lmp_model_free(w->model);
        lmp_gguf_free(w->gguf);
        lmp_store_free(w->store);
        lmp_vision_free(w->vision);
        lmp_gguf_free(w->mmproj_gguf);
        lmp_store_free(w->mmproj_store);
        lmp_chat_setup_clear(&w->chat);
        lmp_proto_buf_free(&w->event_buf);
}

static int parse_args(struct worker *w, int argc, char **argv) {
        static const struct option opts[] = {
                { "worker", no_argument, NULL, 'W' },
                { "name", required_argument, NULL, 'n' },
                { "store-fd", required_argument, NULL, 'f' },
                { "backend", required_argument, NULL, 'b' },
                { "threads", required_argument, NULL, 't' },
                { "slots", required_argument, NULL, 's' },
                { "ctx", required_argument, NULL, 'c' },
                { "batch", required_argument, NULL, 'B' },
                { "prompt-chunk", required_argument, NULL, 'C' },
                { "max-prompt-tokens", required_argument, NULL, 'P' },
                { "heartbeat-ms", required_argument, NULL, 'h' },
                { "liveness", required_argument, NULL, 'l' },
                { "chat-template", required_argument, NULL, 'T' },
                { "log-level", required_argument, NULL, 'L' },
                { "log-sink", required_argument, NULL, 'S' },
                { "repeat-last-n", required_argument, NULL, 'R' },
                { "report-fd", required_argument, NULL, 'r' },
                { "cache-reuse", required_argument, NULL, 'U' },
                { "mmproj-fd", required_argument, NULL, 'M' },
                { 0 },
        };
        int c;

        w->store_fd = -1;
        w->mmproj_fd = -1;
        w->threads = 1;
        w->slots = 1;
        w->n_ctx = 2048;
        w->n_batch = 512;
        w->prompt_chunk = 32;
        w->heartbeat_ms = 500;
        w->liveness = 3;
        w->repeat_last_n = 64;
        w->report_fd = -1;
        w->log_priority = LMP_PRI_INFO;
        w->log_sink = LMP_LOGTO_AUTO;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'W': break;
                case 'n': snprintf(w->name, sizeof(w->name), "%s", optarg); break;
                case 'f': w->store_fd = atoi(optarg); break;
                case 'b': w->backend = optarg; break;
                case 't': w->threads = atoi(optarg); break;
                case 's': w->slots = (uint32_t)atoi(optarg); break;
                case 'c': w->n_ctx = (uint32_t)atoi(optarg); break;
                case 'B': w->n_batch = (uint32_t)atoi(optarg); break;
                case 'C': w->prompt_chunk = (uint32_t)atoi(optarg); break;
                case 'P': w->max_prompt_tokens = (uint32_t)atoi(optarg); break;
                case 'h': w->heartbeat_ms = atoi(optarg); break;
                case 'l': w->liveness = atoi(optarg); break;
                case 'T': w->chat_template = optarg; break;
                case 'L': w->log_priority = atoi(optarg); break;
                case 'S': w->log_sink = atoi(optarg); break;
                case 'R': w->repeat_last_n = atoi(optarg); break;
                case 'r': w->report_fd = atoi(optarg); break;
                case 'U': w->cache_reuse = (uint32_t)atoi(optarg); break;
                case 'M': w->mmproj_fd = atoi(optarg); break;
                default: return -EINVAL;
                }
        }
        if (!w->name[0] || w->store_fd < 0 || !w->backend || w->threads < 1 || w->slots < 1 || w->prompt_chunk < 1 || w->heartbeat_ms < 1 ||
            w->liveness < 1 || w->log_priority < LMP_PRI_ERR || w->log_priority > LMP_PRI_DEBUG ||
            w->log_sink < LMP_LOGTO_AUTO || w->log_sink > LMP_LOGTO_STDERR)
                return -EINVAL;
        if (w->n_batch < w->slots)
                w->n_batch = w->slots;
        return 0;
}

/* The router's socket must be in the private directory the supervisor made
 * for it (ours, 0700): a worker hands client prompts and answers to
 * whatever it connects to. */
static int check_backend(const char *backend) {
        char dir[512];
        struct stat st;
        if (strncmp(backend, "ipc://", 6) != 0 || (size_t)snprintf(dir, sizeof(dir), "%s", backend + 6) >= sizeof(dir))
                return -EINVAL;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return -EINVAL;
        *slash = '\0';
        if (lstat(dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
                return -EPERM;
        return 0;
}

/* Writes one line on the report descriptor, for the supervisor. */
static void report(const struct worker *w, const char *line) {
        char buf[LMP_WORKER_REPORT_MAX];
        int n = snprintf(buf, sizeof(buf), "%s\n", line);
        if (w->report_fd >= 0 && n > 0)
                (void)!write(w->report_fd, buf, LMP_MIN((size_t)n, sizeof(buf) - 1));
}

/* What the SIGBUS handler needs: where the store is mapped and where to
 * report. A handler gets no argument of ours, so this is the worker's one
 * piece of process-wide state; it is written once, before the handler is
 * installed. */
static struct {
        const uint8_t *base;
        size_t size;
        int fd;
} bus_watch = { NULL, 0, -1 };

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
        static const char msg[] = "SIGBUS reading the model's weights: the model file was truncated or "
                                  "changed under the worker\n";
        const uint8_t *a = si->si_addr;
        (void)sig;
        (void)uc;
        if (bus_watch.fd >= 0 && a >= bus_watch.base && a < bus_watch.base + bus_watch.size)
                (void)!write(bus_watch.fd, msg, sizeof(msg) - 1);
        /* SA_RESETHAND: the faulting read runs again and the default
         * action kills us with SIGBUS, which the supervisor sees. */
}

int lmp_worker_main(int argc, char **argv) {
        struct worker w = { 0 };
        void *dealer = NULL, *pair_io = NULL;
        pthread_t thread;
        bool thread_started = false;
        int r, linger = 0;

        /* The supervisor handles signals; a worker just dies on SIGTERM. */
        signal(SIGPIPE, SIG_IGN);
        if (parse_args(&w, argc, argv) < 0) {
                fprintf(stderr, "lmpoold --worker: bad arguments (this mode is started by lmpoold itself)\n");
                return LMP_WORKER_EXIT_USAGE;
        }
        if (w.report_fd >= 0)
                fcntl(w.report_fd, F_SETFD, FD_CLOEXEC);
        lmp_log_setup("lmpoold", (enum lmp_log_sink)w.log_sink, (enum lmp_log_priority)w.log_priority);
        if ((r = check_backend(w.backend)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: %s is not in a private directory of ours: %s", w.name, w.backend,
                            strerror(-r));
                return 1;
        }
        {
                char why[LMP_WORKER_REPORT_MAX - 1] = "";
                if ((r = load_engine(&w, why, sizeof(why))) < 0) {
                        report(&w, why[0] ? why : strerror(-r));
                        free_worker(&w);
                        return LMP_WORKER_EXIT_LOAD;
                }
        }
        if (w.store->mode == LMP_STORE_MODE_MMAP) {
                struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_RESETHAND };
                bus_watch.base = w.store->base;
                bus_watch.size = w.store->size;
                bus_watch.fd = w.report_fd;
                sigemptyset(&sa.sa_mask);
                sigaction(SIGBUS, &sa, NULL);
        }
        w.zctx = zmq_ctx_new();
        dealer = zmq_socket(w.zctx, ZMQ_DEALER);
        pair_io = zmq_socket(w.zctx, ZMQ_PAIR);
        w.pair_engine = zmq_socket(w.zctx, ZMQ_PAIR);
        if (!w.zctx || !dealer || !pair_io || !w.pair_engine ||
            zmq_setsockopt(dealer, ZMQ_ROUTING_ID, w.name, strlen(w.name)) < 0 ||
            zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_connect(dealer, w.backend) < 0 || zmq_bind(pair_io, PAIR_ENDPOINT) < 0 ||
            zmq_connect(w.pair_engine, PAIR_ENDPOINT) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "worker %s: zmq set-up: %s", w.name, zmq_strerror(errno));
                r = -EIO;
                goto out;
        }
        if (pthread_create(&thread, NULL, engine_thread, &w) != 0) {
                r = -EAGAIN;
                goto out;
        }
        thread_started = true;
        {
                char head[LMP_WIRE_HEADER_MAX];
                struct lmp_wire_ready h = { .slots = w.engine ? lmp_engine_slots(w.engine) : w.slots,
                                            .pid = (int32_t)getpid(),
                                            .n_ctx = w.n_ctx };
                if (lmp_wire_format_ready(&h, head, sizeof(head)) >= 0)
                        send_message(dealer, LMP_WIRE_READY, head, NULL, 0);
        }
        r = io_loop(&w, dealer, pair_io);
out:
        atomic_store(&w.stop, true);
        if (thread_started) {
                if (r < 0) {
                        /* The router is gone: no one is waiting for the jobs. */
                        _exit(1);
                }
                pthread_join(thread, NULL);
        }
        if (dealer) {
                /* A stop asked for: the last events of the requests it
                 * finished may still sit in the dealer's queue, and closing
                 * it with no linger would drop them (their clients would
                 * read worker_lost for answers that were whole). They get
                 * as long as the router waits for a silent worker. */
                if (r == 0 && thread_started) {
                        double wait = (double)w.heartbeat_ms * w.liveness;
                        linger = (int)LMP_MIN(wait, 60000.0);
                        zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger));
                }
                zmq_close(dealer);
        }
        if (pair_io)
                zmq_close(pair_io);
        if (w.pair_engine)
                zmq_close(w.pair_engine);
        if (w.zctx)
                zmq_ctx_term(w.zctx);
        free_worker(&w);
        return r < 0 ? 1 : 0;
}

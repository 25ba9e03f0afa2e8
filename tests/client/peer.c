/* A protocol peer for testing the client side: a ZeroMQ ROUTER that speaks
 * docs/protocol.md with canned behaviour, so that liblmpool, the CLI and
 * the Python example can be checked without a daemon or a model. It is
 * not the daemon: it parses requests with src/proto (refusing bad ones the
 * same way) and answers by model name:
 *   tiny    streams "Echo: " + the prompt (generate), or "Echo(N): " + the
 *           last user message, N being the number of messages (chat), in chunks of up to 4 bytes, never splitting a UTF-8
 *           character; max_tokens cuts it (finish "length"), a stop string
 *           ends it before the match ("stop"), else "eos". Chunk k has
 *           token id 100 + k.
 *   slow    one token "." every 50 ms, 100 of them (sent only when
 *           streaming), and honours cancel
 *   silent  never answers
 *   busy    error busy
 *   other   error unknown_model
 * tiny also sends an event of a type version 1 does not have before its
 * done event, as a later daemon might. models, stats and health have
 * fixed answers listing tiny and slow. */
#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/macros.h"
#include "proto/proto.h"

#define CHUNK_MAX 4
#define SLOW_JOBS_MAX 16
#define SLOW_TOKENS 100
#define SLOW_PERIOD_MS 50
#define IDENTITY_MAX 256

struct job {
        bool active;
        unsigned char identity[IDENTITY_MAX];
        size_t identity_len;
        bool delimiter;
        bool stream;
        char id[LMP_PROTO_ID_MAX + 1];
        int sent;
        int max;
        long long next_ms;
};

struct peer {
        void *sock;
        struct lmp_proto_buf out;
        struct job jobs[SLOW_JOBS_MAX];
        /* the envelope of the request being answered */
        unsigned char identity[IDENTITY_MAX];
        size_t identity_len;
        bool delimiter;
};

static long long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_to(struct peer *p, const unsigned char *identity, size_t identity_len, bool delimiter) {
        zmq_send(p->sock, identity, identity_len, ZMQ_SNDMORE);
        if (delimiter)
                zmq_send(p->sock, "", 0, ZMQ_SNDMORE);
        zmq_send(p->sock, p->out.data, p->out.len, 0);
        p->out.len = 0;
}

static void reply(struct peer *p) {
        send_to(p, p->identity, p->identity_len, p->delimiter);
}

static void reply_error(struct peer *p, const char *id, enum lmp_proto_code code, const char *msg) {
        p->out.len = 0;
        lmp_proto_format_error(&p->out, id, code, msg);
        reply(p);
}

/* The text tiny answers with. */
static void echo_text(const struct lmp_request *r, char *buf, size_t cap) {
        const char *src = "";
        if (r->type == LMP_REQ_GENERATE) {
                snprintf(buf, cap, "Echo: %s", r->prompt);
                return;
        }
        for (size_t i = 0; i < r->n_messages; i++)
                if (r->messages[i].role == LMP_ROLE_USER)
                        src = r->messages[i].content;
        snprintf(buf, cap, "Echo(%zu): %s", r->n_messages, src);
}

static void serve_tiny(struct peer *p, const struct lmp_request *r) {
        static char text[1 << 16];
        int32_t ids[1];
        size_t len, pos = 0, total_len = 0;
        int n = 0;
        enum lmp_finish finish = LMP_FINISH_EOS;

        echo_text(r, text, sizeof(text));
        len = strlen(text);
        for (size_t i = 0; i < r->n_stop; i++) {
                char *hit = strstr(text, r->stop[i]);
                if (hit && (size_t)(hit - text) < len) {
                        len = (size_t)(hit - text);
                        finish = LMP_FINISH_STOP;
                }
        }
        while (pos < len) {
                if ((r->sampling.set & LMP_SET_MAX_TOKENS) && n == r->sampling.max_tokens) {
                        finish = LMP_FINISH_LENGTH;
                        break;
                }
                /* A character is at most 4 bytes, so a chunk always holds one. */
                size_t k = LMP_MIN(len - pos, (size_t)CHUNK_MAX);
                size_t whole = lmp_proto_utf8_complete(text + pos, k);
                if (whole == 0)
                        whole = k;
                ids[0] = 100 + n;
                if (r->stream) {
                        p->out.len = 0;
                        lmp_proto_format_token(&p->out, r->id, text + pos, whole, r->return_ids ? ids : NULL, 1);
                        reply(p);
                }
                pos += whole;
                total_len = pos;
                n++;
        }
        struct lmp_done d = {
                .finish = finish,
                .text = r->stream ? NULL : text,
                .text_len = total_len,
                .usage = { .prompt_tokens = 3, .generated_tokens = n },
                .timings = { .queued_ms = 0.5, .prompt_ms = 1.5, .ttft_ms = 2.0, .total_ms = 3.0 + n,
                             .tokens_per_s = 1000.0 },
                .worker = "tiny/0",
        };
        /* An event a later protocol version might add: clients skip it. */
        struct lmp_proto_buf quoted_id = { 0 };
        if (lmp_proto_append_json_string(&quoted_id, r->id, strlen(r->id)) == 0) {
                char frame[512];
                int fn = snprintf(frame, sizeof(frame), "{\"v\":1,\"id\":%s,\"event\":\"future\",\"x\":[1,{}]}",
                                 quoted_id.data);
                zmq_send(p->sock, p->identity, p->identity_len, ZMQ_SNDMORE);
                if (p->delimiter)
                        zmq_send(p->sock, "", 0, ZMQ_SNDMORE);
                zmq_send(p->sock, frame, (size_t)fn, 0);
        }
        lmp_proto_buf_free(&quoted_id);
        p->out.len = 0;
        lmp_proto_format_done(&p->out, r->id, &d);
        reply(p);
}

static void start_slow(struct peer *p, const struct lmp_request *r) {
        for (int i = 0; i < SLOW_JOBS_MAX; i++) {
                struct job *j = &p->jobs[i];
                if (j->active)
                        continue;
                j->active = true;
                memcpy(j->identity, p->identity, p->identity_len);
                j->identity_len = p->identity_len;
                j->delimiter = p->delimiter;
                memcpy(j->id, r->id, sizeof(j->id));
                j->sent = 0;
                j->stream = r->stream;
                j->max = (r->sampling.set & LMP_SET_MAX_TOKENS) && r->sampling.max_tokens < SLOW_TOKENS
                                 ? r->sampling.max_tokens
                                 : SLOW_TOKENS;
                j->next_ms = now_ms();
                return;
        }
        reply_error(p, r->id, LMP_PROTO_BUSY, "all slow slots taken");
}

static void step_slow(struct peer *p) {
        long long t = now_ms();
        for (int i = 0; i < SLOW_JOBS_MAX; i++) {
                struct job *j = &p->jobs[i];
                if (!j->active || j->next_ms > t)
                        continue;
                p->out.len = 0;
                if (j->sent < j->max) {
                        j->sent++;
                        j->next_ms = t + SLOW_PERIOD_MS;
                        if (!j->stream)
                                continue;
                        lmp_proto_format_token(&p->out, j->id, ".", 1, NULL, 0);
                } else {
                        struct lmp_done d = { .finish = LMP_FINISH_LENGTH,
                                              .usage = { 1, j->sent },
                                              .worker = "slow/0" };
                        lmp_proto_format_done(&p->out, j->id, &d);
                        j->active = false;
                }
                send_to(p, j->identity, j->identity_len, j->delimiter);
        }
}

static void cancel(struct peer *p, const struct lmp_request *r) {
        bool found = false;
        for (int i = 0; i < SLOW_JOBS_MAX; i++) {
                struct job *j = &p->jobs[i];
                if (j->active && j->identity_len == p->identity_len &&
                    memcmp(j->identity, p->identity, p->identity_len) == 0 && strcmp(j->id, r->target) == 0) {
                        j->active = false;
                        found = true;
                        reply_error(p, j->id, LMP_PROTO_CANCELLED, "cancelled by the client");
                }
        }
        p->out.len = 0;
        lmp_proto_format_cancelled(&p->out, r->id, r->target, found);
        reply(p);
}

static void handle(struct peer *p, const void *frame, size_t len) {
        struct lmp_request r;
        struct lmp_proto_error e;

        if (lmp_proto_parse_request(frame, len, &r, &e) < 0) {
                reply_error(p, e.has_id ? e.id : NULL, e.code, e.message);
                return;
        }
        switch (r.type) {
        case LMP_REQ_MODELS: {
                struct lmp_model_info m[2] = {
                        { "tiny", "models/tiny.gguf", "llama", 256, 1, 1, 4, 1048576 },
                        { "slow", "models/slow.gguf", "qwen2", 512, 2, 2, 1, 2097152 },
                };
                p->out.len = 0;
                lmp_proto_format_models(&p->out, r.id, m, 2);
                reply(p);
                break;
        }
        case LMP_REQ_STATS: {
                struct lmp_worker_info w[1] = { { "tiny/0", "tiny", 4242, "ready", 4, 0, 8 << 20, 4 << 20, 7, 0 } };
                struct lmp_stats s = { 1.5, 0, 64, 9, 7, 2, 1, 0, 0, w, 1 };
                p->out.len = 0;
                lmp_proto_format_stats(&p->out, r.id, &s);
                reply(p);
                break;
        }
        case LMP_REQ_HEALTH: {
                struct lmp_health_model h[2] = { { "tiny", 1, 1 }, { "slow", 2, 2 } };
                p->out.len = 0;
                lmp_proto_format_health(&p->out, r.id, "ok", h, 2);
                reply(p);
                break;
        }
        case LMP_REQ_CANCEL:
                cancel(p, &r);
                break;
        default:
                if (strcmp(r.model, "tiny") == 0)
                        serve_tiny(p, &r);
                else if (strcmp(r.model, "slow") == 0)
                        start_slow(p, &r);
                else if (strcmp(r.model, "silent") == 0)
                        ;
                else if (strcmp(r.model, "busy") == 0)
                        reply_error(p, r.id, LMP_PROTO_BUSY, "queue full (0 requests)");
                else if (strcmp(r.model, "failed") == 0)
                        reply_error(p, r.id, LMP_PROTO_MODEL_FAILED, "its workers cannot load it");
                else if (strcmp(r.model, "long") == 0)
                        reply_error(p, r.id, LMP_PROTO_TOO_LONG, "the prompt does not fit");
                else {
                        char msg[256];
                        snprintf(msg, sizeof(msg), "no model named \"%s\"", r.model);
                        reply_error(p, r.id, LMP_PROTO_UNKNOWN_MODEL, msg);
                }
                break;
        }
        lmp_request_clear(&r);
}

int peer_bind(struct peer_handle *h, const char *endpoint) {
        int linger = 0;
        h->ctx = zmq_ctx_new();
        h->sock = h->ctx ? zmq_socket(h->ctx, ZMQ_ROUTER) : NULL;
        if (!h->sock || zmq_setsockopt(h->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_bind(h->sock, endpoint) < 0) {
                int rc = -errno;
                if (h->sock)
                        zmq_close(h->sock);
                if (h->ctx)
                        zmq_ctx_term(h->ctx);
                return rc;
        }
        return 0;
}

int peer_serve(struct peer_handle *h, int max_ms, volatile int *stop) {
        struct peer p = { .sock = h->sock };
        long long end = now_ms() + max_ms;
        zmq_msg_t parts[3];

        while (!(stop && *stop) && now_ms() < end) {
                zmq_pollitem_t item = { .socket = p.sock, .events = ZMQ_POLLIN };
                if (zmq_poll(&item, 1, 10) <= 0) {
                        step_slow(&p);
                        continue;
                }
                /* [identity][optional empty][json]; anything longer is dropped */
                int n = 0;
                bool more = true;
                while (more) {
                        zmq_msg_t m;
                        zmq_msg_init(&m);
                        if (zmq_msg_recv(&m, p.sock, 0) < 0) {
                                zmq_msg_close(&m);
                                break;
                        }
                        more = zmq_msg_more(&m);
                        if (n < 3)
                                parts[n++] = m;
                        else
                                zmq_msg_close(&m), n = 4;
                }
                int last = n == 4 ? -1 : n - 1;
                if (last >= 1 && zmq_msg_size(&parts[0]) <= IDENTITY_MAX) {
                        p.identity_len = zmq_msg_size(&parts[0]);
                        memcpy(p.identity, zmq_msg_data(&parts[0]), p.identity_len);
                        p.delimiter = last == 2 && zmq_msg_size(&parts[1]) == 0;
                        if (last == 1 || p.delimiter)
                                handle(&p, zmq_msg_data(&parts[last]), zmq_msg_size(&parts[last]));
                }
                for (int i = 0; i < LMP_MIN(n, 3); i++)
                        zmq_msg_close(&parts[i]);
                step_slow(&p);
        }
        lmp_proto_buf_free(&p.out);
        return 0;
}

void peer_close(struct peer_handle *h) {
        zmq_close(h->sock);
        zmq_ctx_term(h->ctx);
}

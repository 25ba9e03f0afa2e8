/* liblmpool: the client side of the wire protocol over a ZeroMQ DEALER
 * socket (include/lmpool/client.h). Requests are built as a struct
 * lmp_request, written by the protocol's canonical formatter and parsed
 * back before sending, so that a bad argument is refused here with the
 * same message the daemon would give. Each call then reads events until
 * its request is over, discarding events of earlier requests (an answer
 * that arrives after its call gave up on it), with the receive timeout
 * bounding every wait. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/grow.h"
#include "lmpool/client.h"
#include "proto/proto.h"

_Static_assert((int)LMP_CLIENT_INTERNAL == (int)LMP_PROTO_INTERNAL, "client and protocol codes differ");
_Static_assert((int)LMP_CLIENT_BAD_REQUEST == (int)LMP_PROTO_BAD_REQUEST, "client and protocol codes differ");
_Static_assert((int)LMP_CLIENT_MODEL_FAILED == (int)LMP_PROTO_MODEL_FAILED, "client and protocol codes differ");
_Static_assert((int)LMP_CLIENT_CANCELLED == (int)LMP_PROTO_CANCELLED, "client and protocol codes differ");
_Static_assert((int)LMP_CLIENT_SLOW_CONSUMER == (int)LMP_PROTO_SLOW_CONSUMER, "client and protocol codes differ");

struct lmp_client {
        void *ctx;
        void *sock;
        int timeout_ms;
        unsigned long long seq;
        char last_id[LMP_PROTO_ID_MAX + 1];
        struct lmp_proto_buf out;       /* the request being sent */
};

const char *lmp_client_code_name(enum lmp_client_code code) {
        const char *s = lmp_proto_code_name((enum lmp_proto_code)code);
        return s ? s : "?";
}

/* The system daemon's socket (units/lmpoold.service: RuntimeDirectory=lmpool). */
#define SYSTEM_SOCKET "/run/lmpool/lmpool.sock"

static bool is_socket(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int lmp_client_default_endpoint(char *buf, size_t cap) {
        const char *env = getenv("LMPOOL_ENDPOINT"), *dir;
        char own[4096];
        int n;
        if (env && *env) {
                n = snprintf(buf, cap, "%s", env);
                return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
        }
        if ((dir = getenv("RUNTIME_DIRECTORY")) && *dir)
                n = snprintf(own, sizeof(own), "%s/lmpool.sock", dir);
        else if ((dir = getenv("XDG_RUNTIME_DIR")) && *dir)
                n = snprintf(own, sizeof(own), "%s/lmpool/lmpool.sock", dir);
        else
                n = snprintf(own, sizeof(own), "/tmp/lmpool-%u/lmpool.sock", (unsigned)getuid());
        if (n < 0 || (size_t)n >= sizeof(own))
                return -ENAMETOOLONG;
        /* A daemon of one's own first; else the system daemon's, when it
         * runs; else one's own path, for the error message. */
        const char *path = !is_socket(own) && is_socket(SYSTEM_SOCKET) ? SYSTEM_SOCKET : own;
        n = snprintf(buf, cap, "ipc://%s", path);
        return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static bool z85_key(const char *k) {
        static const char chars[] =
                "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
        if (!k || strlen(k) != LMP_CLIENT_KEY_Z85_LEN)
                return false;
        for (const char *p = k; *p; p++)
                if (!strchr(chars, *p))
                        return false;
        return true;
}

static int client_new(const char *endpoint, const struct lmp_client_curve *curve, struct lmp_client **ret_client) {
        char def[4096];
        int linger = 0, rc;
        struct lmp_client *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        if (!endpoint) {
                if ((rc = lmp_client_default_endpoint(def, sizeof(def))) < 0)
                        goto fail;
                endpoint = def;
        }
        c->timeout_ms = LMP_CLIENT_DEFAULT_TIMEOUT_MS;
        if (!(c->ctx = zmq_ctx_new()) || !(c->sock = zmq_socket(c->ctx, ZMQ_DEALER)) ||
            zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0) {
                rc = -(errno ? errno : EINVAL);
                goto fail;
        }
        /* Z85 keys are given to ZeroMQ as 41 bytes: the text and its NUL. */
        if (curve && (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, curve->server_public, LMP_CLIENT_KEY_Z85_LEN + 1) < 0 ||
                      zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, curve->public_key, LMP_CLIENT_KEY_Z85_LEN + 1) < 0 ||
                      zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, curve->secret_key, LMP_CLIENT_KEY_Z85_LEN + 1) < 0)) {
                rc = -(errno ? errno : EINVAL);
                goto fail;
        }
        if (zmq_connect(c->sock, endpoint) < 0) {
                rc = -(errno ? errno : EINVAL);
                goto fail;
        }
        *ret_client = c;
        return 0;
fail:
        lmp_client_free(c);
        return rc;
}

int lmp_client_new(const char *endpoint, struct lmp_client **ret_client) {
        return client_new(endpoint, NULL, ret_client);
}

int lmp_client_new_curve(const char *endpoint, const struct lmp_client_curve *curve, struct lmp_client **ret_client) {
        if (!curve || !z85_key(curve->server_public) || !z85_key(curve->public_key) || !z85_key(curve->secret_key))
                return -EINVAL;
        return client_new(endpoint, curve, ret_client);
}

void lmp_client_free(struct lmp_client *c) {
        if (!c)
                return;
        if (c->sock)
                zmq_close(c->sock);
        if (c->ctx)
                zmq_ctx_term(c->ctx);
        lmp_proto_buf_free(&c->out);
        free(c);
}

void lmp_client_set_timeout(struct lmp_client *c, int timeout_ms) {
        if (timeout_ms > 0)
                c->timeout_ms = timeout_ms;
}

const char *lmp_client_last_id(const struct lmp_client *c) {
        return c->last_id;
}

void lmp_client_params_init(struct lmp_client_params *p) {
        memset(p, 0, sizeof(*p));
        p->temperature = -1;
        p->top_k = -1;
        p->min_p = -1;
        p->seed = -1;
        p->stream = true;
}

void lmp_client_result_clear(struct lmp_client_result *r) {
        if (!r)
                return;
        free(r->text);
        memset(r, 0, sizeof(*r));
}

static void set_message(struct lmp_client_result *r, enum lmp_client_code code, const char *msg) {
        if (r) {
                r->code = code;
                snprintf(r->message, sizeof(r->message), "%s", msg);
        }
}

static void next_id(struct lmp_client *c, char *id) {
        snprintf(id, LMP_PROTO_ID_MAX + 1, "r%llu", ++c->seq);
        memcpy(c->last_id, id, strlen(id) + 1);
}

/* Formats req, checks it with the parser the daemon uses, sends it. */
static int send_request(struct lmp_client *c, const struct lmp_request *req, struct lmp_client_result *res) {
        struct lmp_request check;
        struct lmp_proto_error perr;
        int rc;

        c->out.len = 0;
        if ((rc = lmp_proto_format_request(&c->out, req)) < 0)
                return rc;
        if ((rc = lmp_proto_parse_request(c->out.data, c->out.len, &check, &perr)) < 0) {
                set_message(res, (enum lmp_client_code)perr.code, perr.message);
                return rc == -ENOMEM ? rc : -EINVAL;
        }
        lmp_request_clear(&check);
        while (zmq_send(c->sock, c->out.data, c->out.len, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* Receives the next event (the JSON frame after an optional empty
 * delimiter) within the timeout. *ret_raw (may be NULL) gets the frame's
 * text, malloc'd. */
static int recv_event(struct lmp_client *c, struct lmp_event *ev, char **ret_raw) {
        long long deadline = (long long)lmp_clock_ms() + c->timeout_ms;
        zmq_msg_t msg;
        int rc;

        for (;;) {
                long long left = deadline - (long long)lmp_clock_ms();
                zmq_pollitem_t item = { .socket = c->sock, .events = ZMQ_POLLIN };
                if (left <= 0)
                        return -ETIMEDOUT;
                rc = zmq_poll(&item, 1, (long)left);
                if (rc < 0 && errno == EINTR)
                        continue;
                if (rc < 0)
                        return -errno;
                if (rc == 0)
                        return -ETIMEDOUT;
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, c->sock, 0) < 0) {
                        rc = -errno;
                        zmq_msg_close(&msg);
                        if (rc == -EINTR || rc == -EAGAIN)
                                continue;
                        return rc;
                }
                if (zmq_msg_size(&msg) == 0 && zmq_msg_more(&msg)) {
                        zmq_msg_close(&msg); /* the delimiter of a REQ-style envelope */
                        continue;
                }
                bool more = zmq_msg_more(&msg);
                rc = lmp_proto_parse_event(zmq_msg_data(&msg), zmq_msg_size(&msg), ev);
                if (rc == 0 && ret_raw) {
                        *ret_raw = malloc(zmq_msg_size(&msg) + 1);
                        if (!*ret_raw) {
                                lmp_event_clear(ev);
                                rc = -ENOMEM;
                        } else {
                                memcpy(*ret_raw, zmq_msg_data(&msg), zmq_msg_size(&msg));
                                (*ret_raw)[zmq_msg_size(&msg)] = '\0';
                        }
                }
                zmq_msg_close(&msg);
                while (more) { /* one JSON frame per message: drop any extra parts */
                        zmq_msg_init(&msg);
                        if (zmq_msg_recv(&msg, c->sock, 0) < 0) {
                                zmq_msg_close(&msg);
                                break;
                        }
                        more = zmq_msg_more(&msg);
                        zmq_msg_close(&msg);
                }
                if (rc == -ENOMSG)
                        continue; /* an event added after version 1: ignored */
                return rc == -EINVAL ? -EBADMSG : rc;
        }
}

/* Is ev about the request id? An error without id answers a frame the
 * daemon could not read, which can only be the one in flight. */
static bool is_for(const struct lmp_event *ev, const char *id) {
        if (!ev->has_id)
                return ev->type == LMP_EVENT_ERROR;
        return strcmp(ev->id, id) == 0;
}

static void send_cancel(struct lmp_client *c, const char *target) {
        struct lmp_request req = { .type = LMP_REQ_CANCEL };
        next_id(c, req.id);
        snprintf(req.target, sizeof(req.target), "%s", target);
        (void)send_request(c, &req, NULL);
}

static int append_text(struct lmp_client_result *r, size_t *cap, const char *s, size_t n) {
        if (lmp_grow(&r->text, cap, r->text_len + n + 1, 1, 256) < 0)
                return -ENOMEM;
        memcpy(r->text + r->text_len, s, n);
        r->text_len += n;
        r->text[r->text_len] = '\0';
        return 0;
}

/* Reads the events of a generate or chat request until it is over. */
static int run_generation(struct lmp_client *c, const char *id, lmp_client_token_fn on_token, void *userdata,
                          struct lmp_client_result *res) {
        size_t cap = 0;
        bool cancelling = false;
        int rc;

        if (append_text(res, &cap, "", 0) < 0)
                return -ENOMEM;
        for (;;) {
                struct lmp_event ev;
                if ((rc = recv_event(c, &ev, NULL)) < 0) {
                        if (rc == -ETIMEDOUT) {
                                /* Tell the daemon to stop working for nobody. */
                                send_cancel(c, id);
                                set_message(res, LMP_CLIENT_TIMEOUT, "no answer from the daemon in time");
                        }
                        return rc;
                }
                if (!is_for(&ev, id)) {
                        lmp_event_clear(&ev);
                        continue;
                }
                switch (ev.type) {
                case LMP_EVENT_TOKEN:
                        /* After a cancel, the tokens still on their way are
                         * not the caller's: the text is what it was given. */
                        rc = cancelling ? 0 : append_text(res, &cap, ev.text, ev.text_len);
                        if (rc == 0 && on_token && !cancelling &&
                            on_token(userdata, ev.text, ev.text_len, ev.ids, ev.n_ids) != 0) {
                                cancelling = true;
                                send_cancel(c, id);
                        }
                        lmp_event_clear(&ev);
                        if (rc < 0)
                                return rc;
                        continue;
                case LMP_EVENT_DONE:
                        if (ev.text) {
                                res->text_len = 0;
                                rc = append_text(res, &cap, ev.text, ev.text_len);
                        }
                        snprintf(res->finish, sizeof(res->finish), "%s", lmp_finish_name(ev.finish));
                        res->prompt_tokens = ev.usage.prompt_tokens;
                        res->generated_tokens = ev.usage.generated_tokens;
                        res->cached_tokens = ev.usage.cached_tokens;
                        res->queued_ms = ev.timings.queued_ms;
                        res->prompt_ms = ev.timings.prompt_ms;
                        res->ttft_ms = ev.timings.ttft_ms;
                        res->total_ms = ev.timings.total_ms;
                        res->tokens_per_s = ev.timings.tokens_per_s;
                        snprintf(res->worker, sizeof(res->worker), "%s", ev.worker);
                        lmp_event_clear(&ev);
                        return rc;
                case LMP_EVENT_ERROR:
                        set_message(res, (enum lmp_client_code)ev.code, ev.message);
                        rc = cancelling && ev.code == LMP_PROTO_CANCELLED ? -ECANCELED : -EPROTO;
                        lmp_event_clear(&ev);
                        return rc;
                default:
                        lmp_event_clear(&ev);
                        set_message(res, LMP_CLIENT_INTERNAL, "unexpected event for a generation");
                        return -EBADMSG;
                }
        }
}

static int fill_generation(struct lmp_request *req, const struct lmp_client_params *p) {
        struct lmp_sampling *s = &req->sampling;
        if (!p->model || strlen(p->model) > LMP_PROTO_MODEL_MAX || p->n_stop > LMP_PROTO_STOP_MAX)
                return -EINVAL;
        memcpy(req->model, p->model, strlen(p->model) + 1);
        if (!lmp_proto_utf8_valid(p->model, strlen(p->model)))
                return -EILSEQ;
        if (p->max_tokens != 0)
                s->max_tokens = p->max_tokens, s->set |= LMP_SET_MAX_TOKENS;
        if (p->temperature >= 0)
                s->temperature = p->temperature, s->set |= LMP_SET_TEMPERATURE;
        if (p->top_k >= 0)
                s->top_k = p->top_k, s->set |= LMP_SET_TOP_K;
        if (p->top_p > 0)
                s->top_p = p->top_p, s->set |= LMP_SET_TOP_P;
        if (p->min_p >= 0)
                s->min_p = p->min_p, s->set |= LMP_SET_MIN_P;
        if (p->repeat_penalty > 0)
                s->repeat_penalty = p->repeat_penalty, s->set |= LMP_SET_REPEAT_PENALTY;
        if (p->seed >= 0)
                s->seed = (uint64_t)p->seed, s->set |= LMP_SET_SEED;
        for (size_t i = 0; i < p->n_stop; i++) {
                if (!p->stop[i])
                        return -EINVAL;
                if (!lmp_proto_utf8_valid(p->stop[i], strlen(p->stop[i])))
                        return -EILSEQ;
                req->stop[i] = (char *)p->stop[i]; /* borrowed: never freed here */
                req->stop_len[i] = strlen(p->stop[i]);
        }
        req->n_stop = p->n_stop;
        req->ignore_eos = p->ignore_eos;
        req->stream = p->stream;
        req->return_ids = p->return_ids;
        if (p->timeout_ms > 0)
                req->timeout_ms = (uint32_t)p->timeout_ms, s->set |= LMP_SET_TIMEOUT_MS;
        if (p->session) {
                size_t n = strlen(p->session);
                if (n == 0 || n > LMP_PROTO_SESSION_MAX || !lmp_proto_utf8_valid(p->session, n))
                        return -EINVAL;
                memcpy(req->session, p->session, n + 1);
        }
        return 0;
}

int lmp_client_generate(struct lmp_client *c, const struct lmp_client_params *p, const char *prompt,
                        lmp_client_token_fn on_token, void *userdata, struct lmp_client_result *res) {
        struct lmp_request req = { .type = LMP_REQ_GENERATE };
        int rc = 0;

        memset(res, 0, sizeof(*res));
        if (!p || !prompt || (rc = fill_generation(&req, p)) < 0) {
                set_message(res, LMP_CLIENT_BAD_REQUEST, p && prompt && rc == -EILSEQ
                                                                 ? "model or stop string: invalid UTF-8"
                                                                 : "missing model or prompt, or too many stop strings");
                return -EINVAL;
        }
        if (!lmp_proto_utf8_valid(prompt, strlen(prompt))) {
                set_message(res, LMP_CLIENT_BAD_REQUEST, "prompt: invalid UTF-8");
                return -EINVAL;
        }
        req.prompt = (char *)prompt; /* borrowed */
        req.prompt_len = strlen(prompt);
        next_id(c, req.id);
        if ((rc = send_request(c, &req, res)) < 0)
                return rc;
        return run_generation(c, req.id, on_token, userdata, res);
}

int lmp_client_chat(struct lmp_client *c, const struct lmp_client_params *p, const struct lmp_client_message *m,
                    size_t n, lmp_client_token_fn on_token, void *userdata, struct lmp_client_result *res) {
        struct lmp_request req = { .type = LMP_REQ_CHAT };
        int rc = 0;

        memset(res, 0, sizeof(*res));
        if (!p || !m || n == 0 || (rc = fill_generation(&req, p)) < 0) {
                set_message(res, LMP_CLIENT_BAD_REQUEST, p && m && n && rc == -EILSEQ
                                                                 ? "model or stop string: invalid UTF-8"
                                                                 : "missing model or messages, or too many stop strings");
                return -EINVAL;
        }
        if (!(req.messages = calloc(n, sizeof(*req.messages))))
                return -ENOMEM;
        req.n_messages = n;
        for (size_t i = 0; i < n; i++) {
                int role = -1;
                for (int k = 0; k < LMP_ROLE_COUNT; k++)
                        if (m[i].role && strcmp(m[i].role, lmp_role_name((enum lmp_role)k)) == 0)
                                role = k;
                if (role < 0 || !m[i].content) {
                        free(req.messages);
                        set_message(res, LMP_CLIENT_BAD_REQUEST, "a message needs a role (system, user, "
                                                                 "assistant) and a content");
                        return -EINVAL;
                }
                if (!lmp_proto_utf8_valid(m[i].content, strlen(m[i].content))) {
                        free(req.messages);
                        snprintf(res->message, sizeof(res->message), "messages[%zu].content: invalid UTF-8", i);
                        res->code = LMP_CLIENT_BAD_REQUEST;
                        return -EINVAL;
                }
                req.messages[i].role = (enum lmp_role)role;
                req.messages[i].content = (char *)m[i].content; /* borrowed */
                req.messages[i].content_len = strlen(m[i].content);
        }
        next_id(c, req.id);
        rc = send_request(c, &req, res);
        free(req.messages);
        if (rc < 0)
                return rc;
        return run_generation(c, req.id, on_token, userdata, res);
}

void lmp_client_embed_params_init(struct lmp_client_embed_params *p) {
        *p = (struct lmp_client_embed_params){ .normalize = true };
}

void lmp_client_embeddings_clear(struct lmp_client_embeddings *e) {
        if (!e)
                return;
        free(e->vectors);
        free(e->ids);
        free(e->ids_off);
        memset(e, 0, sizeof(*e));
}

int lmp_client_embed(struct lmp_client *c, const struct lmp_client_embed_params *p, const char *const *texts,
                     size_t n, struct lmp_client_embeddings *ret, struct lmp_client_result *res) {
        struct lmp_request req = { .type = LMP_REQ_EMBED };
        int rc;

        memset(res, 0, sizeof(*res));
        if (!p || !p->model || !*p->model || strlen(p->model) > LMP_PROTO_MODEL_MAX ||
            !lmp_proto_utf8_valid(p->model, strlen(p->model)) || !texts || n == 0 ||
            n > LMP_PROTO_EMBED_INPUTS_MAX || !ret) {
                set_message(res, LMP_CLIENT_BAD_REQUEST, "a model name and 1 to 256 texts are needed");
                return -EINVAL;
        }
        memcpy(req.model, p->model, strlen(p->model) + 1);
        req.inputs = calloc(n, sizeof(*req.inputs));
        req.input_len = calloc(n, sizeof(*req.input_len));
        if (!req.inputs || !req.input_len) {
                free(req.inputs);
                free(req.input_len);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (!texts[i] || !lmp_proto_utf8_valid(texts[i], strlen(texts[i]))) {
                        free(req.inputs);
                        free(req.input_len);
                        snprintf(res->message, sizeof(res->message), "text %zu: missing or invalid UTF-8", i);
                        res->code = LMP_CLIENT_BAD_REQUEST;
                        return -EINVAL;
                }
                req.inputs[i] = (char *)texts[i]; /* borrowed */
                req.input_len[i] = strlen(texts[i]);
        }
        req.n_inputs = n;
        req.input_is_array = true;
        req.normalize = p->normalize;
        req.truncate = p->truncate;
        req.return_ids = p->return_ids;
        if (p->timeout_ms > 0)
                req.timeout_ms = (uint32_t)p->timeout_ms, req.sampling.set |= LMP_SET_TIMEOUT_MS;
        next_id(c, req.id);
        rc = send_request(c, &req, res);
        free(req.inputs);
        free(req.input_len);
        if (rc < 0)
                return rc;

        for (;;) {
                struct lmp_event ev;
                if ((rc = recv_event(c, &ev, NULL)) < 0) {
                        if (rc == -ETIMEDOUT) {
                                send_cancel(c, req.id);
                                set_message(res, LMP_CLIENT_TIMEOUT, "no answer from the daemon in time");
                        }
                        return rc;
                }
                if (!is_for(&ev, req.id)) {
                        lmp_event_clear(&ev);
                        continue;
                }
                if (ev.type == LMP_EVENT_ERROR) {
                        set_message(res, (enum lmp_client_code)ev.code, ev.message);
                        lmp_event_clear(&ev);
                        return -EPROTO;
                }
                if (ev.type != LMP_EVENT_EMBEDDING || ev.n_vectors != n) {
                        lmp_event_clear(&ev);
                        set_message(res, LMP_CLIENT_INTERNAL, "unexpected event for an embed request");
                        return -EBADMSG;
                }
                /* The vectors and ids move from the event to the caller. */
                *ret = (struct lmp_client_embeddings){ .n = ev.n_vectors, .n_embd = ev.n_embd, .vectors = ev.vectors,
                                                       .ids = ev.ids, .ids_off = ev.ids_off };
                ev.vectors = NULL;
                ev.ids = NULL;
                ev.ids_off = NULL;
                res->prompt_tokens = ev.usage.prompt_tokens;
                res->queued_ms = ev.timings.queued_ms;
                res->total_ms = ev.timings.total_ms;
                snprintf(res->worker, sizeof(res->worker), "%s", ev.worker);
                lmp_event_clear(&ev);
                return 0;
        }
}

/* A request whose answer is one event of type want (or an error). */
static int simple_request(struct lmp_client *c, struct lmp_request *req, enum lmp_event_type want,
                          struct lmp_event *ret_ev, char **ret_raw, struct lmp_client_result *res) {
        int rc;

        next_id(c, req->id);
        if ((rc = send_request(c, req, res)) < 0)
                return rc;
        for (;;) {
                struct lmp_event ev;
                char *raw = NULL;
                if ((rc = recv_event(c, &ev, &raw)) < 0) {
                        if (rc == -ETIMEDOUT)
                                set_message(res, LMP_CLIENT_TIMEOUT, "no answer from the daemon in time");
                        return rc;
                }
                if (!is_for(&ev, req->id)) {
                        lmp_event_clear(&ev);
                        free(raw);
                        continue;
                }
                if (ev.type == LMP_EVENT_ERROR) {
                        set_message(res, (enum lmp_client_code)ev.code, ev.message);
                        rc = -EPROTO;
                } else if (ev.type != want) {
                        set_message(res, LMP_CLIENT_INTERNAL, "unexpected event");
                        rc = -EBADMSG;
                } else {
                        if (ret_ev)
                                *ret_ev = ev, ev = (struct lmp_event){ 0 };
                        if (ret_raw)
                                *ret_raw = raw, raw = NULL;
                        rc = 0;
                }
                lmp_event_clear(&ev);
                free(raw);
                return rc;
        }
}

int lmp_client_cancel(struct lmp_client *c, const char *target, bool *ret_found) {
        struct lmp_request req = { .type = LMP_REQ_CANCEL };
        struct lmp_event ev;
        int rc;

        if (!target || !*target || strlen(target) > LMP_PROTO_ID_MAX)
                return -EINVAL;
        memcpy(req.target, target, strlen(target) + 1);
        if ((rc = simple_request(c, &req, LMP_EVENT_CANCELLED, &ev, NULL, NULL)) < 0)
                return rc;
        if (ret_found)
                *ret_found = ev.found;
        lmp_event_clear(&ev);
        return 0;
}

static int json_request(struct lmp_client *c, enum lmp_request_type type, enum lmp_event_type want, char **ret_json,
                        struct lmp_client_result *res) {
        struct lmp_request req = { .type = type };
        if (res)
                memset(res, 0, sizeof(*res));
        return simple_request(c, &req, want, NULL, ret_json, res);
}

int lmp_client_models(struct lmp_client *c, char **ret_json, struct lmp_client_result *res) {
        return json_request(c, LMP_REQ_MODELS, LMP_EVENT_MODELS, ret_json, res);
}

int lmp_client_stats(struct lmp_client *c, char **ret_json, struct lmp_client_result *res) {
        return json_request(c, LMP_REQ_STATS, LMP_EVENT_STATS, ret_json, res);
}

int lmp_client_health(struct lmp_client *c, char **ret_json, struct lmp_client_result *res) {
        return json_request(c, LMP_REQ_HEALTH, LMP_EVENT_HEALTH, ret_json, res);
}

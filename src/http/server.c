/* The gateway (gateway.h): HTTP requests in, protocol requests out, events
 * back into OpenAI's and Ollama's answers. One thread: MHD runs in
 * "external" mode on its epoll descriptor, which sits in our zmq_poll()
 * beside the DEALER socket. A request that waits for the daemon is
 * suspended (MHD_suspend_connection) and resumed when its events come; a
 * streamed answer is a content-reader response that hands MHD what is
 * buffered and suspends the connection when nothing is (the library's
 * documented way to stream without busy waiting). MHD does not watch a
 * suspended connection, so we watch its socket for a hang-up ourselves
 * (EPOLLRDHUP in a second epoll set): a client that goes away has its
 * request cancelled in the pool at once. */
#include "http/gateway.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/macros.h"
#include "http/keys.h"
#include "http/translate.h"
#include "proto/proto.h"

#ifndef LMPOOL_VERSION
#define LMPOOL_VERSION "0"
#endif

#define AUX_TIMEOUT_S 5.0               /* models, stats, health: the daemon answers at once */
#define DEADLINE_SLACK_S 10.0           /* past the daemon's own deadline, before we give up on it */
#define MODEL_LABELS_MAX 32             /* distinct model labels in /metrics; the rest are "other" */
#define HUP_EVENTS 64

/* ------------------------------------------------------------------ routes */

enum route {
        RT_ROOT,
        RT_HEALTH,
        RT_METRICS,
        RT_MODELS,
        RT_MODEL,               /* /v1/models/NAME */
        RT_CHAT,
        RT_COMPLETIONS,
        RT_OLLAMA_CHAT,
        RT_OLLAMA_GENERATE,
        RT_OLLAMA_TAGS,
        RT_OLLAMA_PS,
        RT_OLLAMA_VERSION,
        RT_OLLAMA_SHOW,
        RT_EMBEDDINGS,
        RT_OLLAMA_EMBED,
        RT_NOT_FOUND,
        RT_COUNT,
};

static const struct {
        const char *path;
        const char *method;     /* GET answers HEAD too */
        bool auth;
        bool ollama;            /* errors as {"error": "..."} */
} routes[RT_COUNT] = {
        [RT_ROOT] = { "/", "GET", false, true },
        [RT_HEALTH] = { "/health", "GET", false, false },
        [RT_METRICS] = { "/metrics", "GET", true, false },
        [RT_MODELS] = { "/v1/models", "GET", true, false },
        [RT_MODEL] = { "/v1/models/", "GET", true, false },
        [RT_CHAT] = { "/v1/chat/completions", "POST", true, false },
        [RT_COMPLETIONS] = { "/v1/completions", "POST", true, false },
        [RT_OLLAMA_CHAT] = { "/api/chat", "POST", true, true },
        [RT_OLLAMA_GENERATE] = { "/api/generate", "POST", true, true },
        [RT_OLLAMA_TAGS] = { "/api/tags", "GET", true, true },
        [RT_OLLAMA_PS] = { "/api/ps", "GET", true, true },
        [RT_OLLAMA_VERSION] = { "/api/version", "GET", true, true },
        [RT_OLLAMA_SHOW] = { "/api/show", "POST", true, true },
        [RT_EMBEDDINGS] = { "/v1/embeddings", "POST", true, false },
        [RT_OLLAMA_EMBED] = { "/api/embed", "POST", true, true },
        [RT_NOT_FOUND] = { "(other)", "", false, false },
};

static enum route find_route(const char *url) {
        for (int i = 0; i < RT_NOT_FOUND; i++) {
                if (i == RT_MODEL)
                        continue;
                if (strcmp(url, routes[i].path) == 0)
                        return (enum route)i;
        }
        if (strncmp(url, "/v1/models/", 11) == 0 && url[11])
                return RT_MODEL;
        return RT_NOT_FOUND;
}

static bool is_embed(enum route rt) {
        return rt == RT_EMBEDDINGS || rt == RT_OLLAMA_EMBED;
}

/* A request whose body is translated and sent to a model (a generation or
 * an embedding): admitted against the keys' limits, answered from its
 * events. */
static bool is_generation(enum route rt) {
        return rt == RT_CHAT || rt == RT_COMPLETIONS || rt == RT_OLLAMA_CHAT || rt == RT_OLLAMA_GENERATE ||
               is_embed(rt);
}

/* ----------------------------------------------------------------- metrics */

static const int status_list[] = { 200, 400, 401, 404, 405, 413, 429, 431, 499, 500, 502, 503, 504 };
#define N_STATUS (LMP_ARRAY_SIZE(status_list) + 1) /* + "other" */

static const double buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };
#define N_BUCKETS LMP_ARRAY_SIZE(buckets)

struct histogram {
        uint64_t count[N_BUCKETS + 1]; /* the last: above every bucket */
        uint64_t n;
        double sum;
};

struct metrics {
        char models[MODEL_LABELS_MAX][LMP_PROTO_MODEL_MAX + 1];
        size_t n_models;                /* label index n_models.. is "other"; MODEL_LABELS_MAX is "" */
        uint64_t requests[RT_COUNT][MODEL_LABELS_MAX + 2][N_STATUS];
        uint64_t prompt_tokens[MODEL_LABELS_MAX + 2], generated_tokens[MODEL_LABELS_MAX + 2],
                cached_tokens[MODEL_LABELS_MAX + 2];
        struct histogram ttft, latency;
        uint64_t client_gone, stream_overflow, daemon_timeouts, daemon_disconnects;
};

#define LABEL_OTHER MODEL_LABELS_MAX
#define LABEL_NONE (MODEL_LABELS_MAX + 1)

static void observe(struct histogram *h, double v) {
        size_t i = 0;
        while (i < N_BUCKETS && v > buckets[i])
                i++;
        h->count[i]++;
        h->n++;
        h->sum += v;
}

static int status_index(int status) {
        for (size_t i = 0; i < LMP_ARRAY_SIZE(status_list); i++)
                if (status_list[i] == status)
                        return (int)i;
        return (int)LMP_ARRAY_SIZE(status_list);
}

/* A model's label: known once it has served a request; new names join the
 * table while there is room, so that a client cannot grow it at will. */
static int model_label(struct metrics *m, const char *model, bool served) {
        if (!model || !*model)
                return LABEL_NONE;
        for (size_t i = 0; i < m->n_models; i++)
                if (strcmp(m->models[i], model) == 0)
                        return (int)i;
        if (!served || m->n_models == MODEL_LABELS_MAX)
                return LABEL_OTHER;
        snprintf(m->models[m->n_models], sizeof(m->models[0]), "%s", model);
        return (int)m->n_models++;
}

/* ---------------------------------------------------------------- buffers */

/* The protocol's growable buffer (proto.h), under the short names used on
 * almost every line below. */
#define put lmp_proto_buf_append
#define puts_ lmp_proto_buf_puts
#define putf lmp_proto_buf_printf

static int put_json(struct lmp_proto_buf *b, const char *s) {
        return lmp_proto_append_json_string(b, s, strlen(s));
}

/* ---------------------------------------------------------------- requests */

enum phase {
        PH_HEADERS,             /* first call seen, the body may follow */
        PH_WAIT,                /* sent to the daemon, suspended until its first event */
        PH_STREAM,              /* a streamed answer is being sent */
        PH_ANSWERED,            /* a response is queued */
};

struct hreq {
        struct lmp_gateway *gw;
        struct hreq *prev, *next;       /* gw->live: every request not yet completed */
        struct MHD_Connection *conn;
        enum route route;
        enum phase phase;
        int key;                        /* the caller's entry in gw->keys, -1 when none */
        bool admitted;                  /* counted in the key's in_flight and gw->gen_in_flight */
        bool suspended, watching;       /* MHD suspended; its socket in gw->hup_ep */
        bool client_gone;
        bool loopback;
        int fd;
        char peer[64];
        char path_arg[LMP_PROTO_MODEL_MAX + 1]; /* /v1/models/NAME */

        char *body;                     /* bounded by http.max_body */
        size_t body_len;
        bool body_over;

        /* the daemon side */
        int slot;                       /* -1: none held */
        char id[32];
        bool finished;                  /* its terminal event came (or we gave up on it) */
        double deadline_s;
        struct lmp_http_call call;
        char *aux_json;                 /* the models, stats or health answer */

        /* the answer */
        int status;
        enum lmp_proto_code err_code;   /* LMP_PROTO_OK while none */
        char err_msg[LMP_PROTO_MESSAGE_MAX];
        int err_status;
        bool headers_sent;
        bool first_token;
        struct lmp_proto_buf out;       /* bytes for the client, not yet handed to MHD */
        size_t out_pos;
        struct lmp_proto_buf text;      /* the whole text of an answer that is not streamed */
        char finish[16];
        char *tool_calls;               /* the done event's calls: [{"id", "name", "arguments"}], or NULL */
        struct lmp_usage usage;
        char resp_id[48];
        long long created;
        double t_start, t_first;
        char model[LMP_PROTO_MODEL_MAX + 1];
        /* an embedding answer, moved from its event */
        float *vectors;                 /* (n_vectors, n_embd) */
        size_t n_vectors, n_embd;
};

struct slot {
        struct hreq *r;
        uint32_t gen;
};

struct lmp_gateway {
        const struct lmp_config *cfg;
        struct MHD_Daemon *mhd;
        int mhd_fd;
        int hup_ep;
        uint16_t port;
        void *zctx, *zsock;
        void *zmon;                     /* PAIR: the DEALER's connect/disconnect events */
        bool daemon_connected;
        struct lmp_http_keys *keys;
        struct slot *slots;
        size_t n_slots;
        size_t gen_in_flight;           /* admitted generation requests */
        uint64_t seq;
        struct lmp_proto_buf zbuf;      /* the request being sent */
        struct metrics m;
        bool stopping;
        struct hreq *live;
        char keys_path[LMP_CONFIG_PATH_MAX];
        char endpoint[LMP_CONFIG_ENDPOINT_MAX];
};

static void suspend(struct hreq *r) {
        if (r->suspended)
                return;
        MHD_suspend_connection(r->conn);
        r->suspended = true;
        if (r->fd >= 0 && !r->client_gone) {
                struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLHUP | EPOLLERR, .data.ptr = r };
                r->watching = epoll_ctl(r->gw->hup_ep, EPOLL_CTL_ADD, r->fd, &ev) == 0;
        }
}

static void resume(struct hreq *r) {
        if (!r->suspended)
                return;
        if (r->watching)
                epoll_ctl(r->gw->hup_ep, EPOLL_CTL_DEL, r->fd, NULL);
        r->watching = false;
        r->suspended = false;
        MHD_resume_connection(r->conn);
}

/* ------------------------------------------------------------ the daemon */

static int zsend(struct lmp_gateway *gw) {
        if (zmq_send(gw->zsock, gw->zbuf.data, gw->zbuf.len, ZMQ_DONTWAIT) < 0)
                return -errno;
        return 0;
}

static void release_slot(struct hreq *r) {
        if (r->slot < 0)
                return;
        struct slot *s = &r->gw->slots[r->slot];
        s->r = NULL;
        s->gen++;
        r->slot = -1;
}

static void send_cancel(struct hreq *r) {
        struct lmp_gateway *gw = r->gw;
        struct lmp_request req = { .type = LMP_REQ_CANCEL };
        snprintf(req.id, sizeof(req.id), "c%" PRIu64, ++gw->seq);
        snprintf(req.target, sizeof(req.target), "%s", r->id);
        gw->zbuf.len = 0;
        if (lmp_proto_format_request(&gw->zbuf, &req) == 0)
                (void)zsend(gw);
}

/* Takes a slot and sends req with its id. -EBUSY when every slot is held,
 * -EAGAIN when ZeroMQ's queue to the daemon is full. */
static int send_to_daemon(struct hreq *r, struct lmp_request *req, double timeout_s) {
        struct lmp_gateway *gw = r->gw;
        size_t i;
        int rc;

        for (i = 0; i < gw->n_slots && gw->slots[i].r; i++)
                ;
        if (i == gw->n_slots)
                return -EBUSY;
        snprintf(r->id, sizeof(r->id), "h%zu.%" PRIu32, i, gw->slots[i].gen);
        snprintf(req->id, sizeof(req->id), "%s", r->id);
        gw->zbuf.len = 0;
        if ((rc = lmp_proto_format_request(&gw->zbuf, req)) < 0)
                return rc;
        if ((rc = zsend(gw)) < 0)
                return rc;
        gw->slots[i].r = r;
        r->slot = (int)i;
        r->finished = false;
        r->deadline_s = lmp_clock_s() + timeout_s;
        return 0;
}

static struct hreq *find_slot(struct lmp_gateway *gw, const char *id) {
        char *end;
        if (id[0] != 'h')
                return NULL;
        unsigned long i = strtoul(id + 1, &end, 10);
        if (*end != '.' || i >= gw->n_slots)
                return NULL;
        unsigned long g = strtoul(end + 1, &end, 10);
        if (*end || !gw->slots[i].r || gw->slots[i].gen != (uint32_t)g)
                return NULL;
        return gw->slots[i].r;
}

/* -------------------------------------------------------- answer formats */

/* OpenAI's finish_reason; Ollama's done_reason is "stop" after tool calls. */
static const char *finish_reason(const char *finish) {
        return strcmp(finish, "length") == 0 ? "length" : strcmp(finish, "tool_calls") == 0 ? "tool_calls" : "stop";
}

static const char *done_reason(const char *finish) {
        return strcmp(finish, "length") == 0 ? "length" : "stop";
}

enum calls_shape { CALLS_OPENAI, CALLS_OPENAI_DELTA, CALLS_OLLAMA };

/* The done event's calls in an API's shape: OpenAI's arguments are a JSON
 * string, Ollama's an object; a stream's delta numbers them. The
 * arguments are copied as the event's bytes (a parser would round long
 * numbers); the worker wrote them compact. */
static void put_tool_calls(struct hreq *r, struct lmp_proto_buf *b, enum calls_shape shape) {
        const char *t = r->tool_calls;
        size_t n = strlen(t), i = 1;
        int k = 0;
        puts_(b, "[");
        while (i < n && t[i] == '{') {
                size_t el = lmp_json_value_len(t + i, n - i), off = 0, al = 0;
                if (!el)
                        break;
                cJSON *c = cJSON_ParseWithLength(t + i, el);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
                bool has_args = lmp_json_member(t + i, el, "arguments", &off, &al);
                puts_(b, k ? ",{" : "{");
                if (shape == CALLS_OPENAI_DELTA)
                        putf(b, "\"index\":%d,", k);
                if (shape != CALLS_OLLAMA) {
                        puts_(b, "\"id\":");
                        put_json(b, cJSON_IsString(id) ? id->valuestring : "");
                        puts_(b, ",\"type\":\"function\",");
                }
                puts_(b, "\"function\":{\"name\":");
                put_json(b, cJSON_IsString(name) ? name->valuestring : "");
                puts_(b, ",\"arguments\":");
                if (shape == CALLS_OLLAMA)
                        put(b, has_args ? t + i + off : "{}", has_args ? al : 2);
                else
                        lmp_proto_append_json_string(b, has_args ? t + i + off : "{}", has_args ? al : 2);
                puts_(b, "}}");
                cJSON_Delete(c);
                k++;
                i += el;
                if (i < n && t[i] == ',')
                        i++;
        }
        puts_(b, "]");
}

static void created_at(struct lmp_proto_buf *b) {
        struct timespec ts;
        struct tm tm;
        char t[64];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
        putf(b, "\"created_at\":\"%s.%09ldZ\"", t, ts.tv_nsec);
}

static bool is_chat(const struct hreq *r) {
        return r->route == RT_CHAT || r->route == RT_OLLAMA_CHAT;
}

static void openai_head(struct hreq *r, struct lmp_proto_buf *b, bool chunk) {
        putf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->resp_id,
             is_chat(r) ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion", r->created);
        put_json(b, r->model);
        if (is_chat(r))
                puts_(b, ",\"system_fingerprint\":null");
}

static void openai_usage(struct hreq *r, struct lmp_proto_buf *b) {
        putf(b,
             ",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
             ",\"total_tokens\":%" PRId64 ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 "}}",
             r->usage.prompt_tokens, r->usage.generated_tokens, r->usage.prompt_tokens + r->usage.generated_tokens,
             r->usage.cached_tokens);
}

/* One piece of a streamed answer: text (may be empty) or, with finish,
 * the end. */
static void stream_piece(struct hreq *r, const char *text, size_t len, const char *finish) {
        struct lmp_proto_buf *b = &r->out;
        bool first = !r->first_token;
        r->first_token = true;
        if (r->route == RT_OLLAMA_CHAT || r->route == RT_OLLAMA_GENERATE) {
                puts_(b, "{\"model\":");
                put_json(b, r->model);
                puts_(b, ",");
                created_at(b);
                if (r->route == RT_OLLAMA_CHAT) {
                        puts_(b, ",\"message\":{\"role\":\"assistant\",\"content\":");
                        lmp_proto_append_json_string(b, text, len);
                        if (finish && r->tool_calls) {
                                puts_(b, ",\"tool_calls\":");
                                put_tool_calls(r, b, CALLS_OLLAMA);
                        }
                        puts_(b, "}");
                } else {
                        puts_(b, ",\"response\":");
                        lmp_proto_append_json_string(b, text, len);
                }
                if (!finish) {
                        puts_(b, ",\"done\":false}\n");
                        return;
                }
                double total = lmp_clock_s() - r->t_start, first_s = r->t_first > 0 ? r->t_first - r->t_start : total;
                putf(b,
                     ",\"done\":true,\"done_reason\":\"%s\",\"total_duration\":%.0f,\"load_duration\":0,"
                     "\"prompt_eval_count\":%" PRId64 ",\"prompt_eval_duration\":%.0f,\"eval_count\":%" PRId64
                     ",\"eval_duration\":%.0f}\n",
                     done_reason(finish), total * 1e9, r->usage.prompt_tokens, first_s * 1e9,
                     r->usage.generated_tokens, (total - first_s) * 1e9);
                return;
        }
        if (finish && r->tool_calls && r->route == RT_CHAT) {
                /* The calls in a chunk of their own, whole, before the end. */
                puts_(b, "data: ");
                openai_head(r, b, true);
                puts_(b, ",\"choices\":[{\"index\":0,\"delta\":{");
                if (first)
                        puts_(b, "\"role\":\"assistant\",\"content\":null,");
                puts_(b, "\"tool_calls\":");
                put_tool_calls(r, b, CALLS_OPENAI_DELTA);
                puts_(b, "},\"logprobs\":null,\"finish_reason\":null}]");
                if (r->call.include_usage)
                        puts_(b, ",\"usage\":null");
                puts_(b, "}\n\n");
                first = false;
        }
        puts_(b, "data: ");
        openai_head(r, b, true);
        if (r->route == RT_CHAT) {
                puts_(b, ",\"choices\":[{\"index\":0,\"delta\":{");
                if (first)
                        puts_(b, "\"role\":\"assistant\",");
                if (!finish) {
                        puts_(b, "\"content\":");
                        lmp_proto_append_json_string(b, text, len);
                } else if (b->data[b->len - 1] == ',') {
                        b->len--; /* the role alone */
                }
                puts_(b, "},\"logprobs\":null,\"finish_reason\":");
        } else {
                puts_(b, ",\"choices\":[{\"text\":");
                lmp_proto_append_json_string(b, text, len);
                puts_(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":");
        }
        if (finish)
                putf(b, "\"%s\"", finish_reason(finish));
        else
                puts_(b, "null");
        puts_(b, "}]");
        if (r->call.include_usage)
                puts_(b, ",\"usage\":null");
        puts_(b, "}\n\n");
        if (finish) {
                if (r->call.include_usage) {
                        puts_(b, "data: ");
                        openai_head(r, b, true);
                        puts_(b, ",\"choices\":[]");
                        openai_usage(r, b);
                        puts_(b, "}\n\n");
                }
                puts_(b, "data: [DONE]\n\n");
        }
}

/* The whole answer of a request that was not streamed. */
static void whole_answer(struct hreq *r, struct lmp_proto_buf *b) {
        const char *text = r->text.data ? r->text.data : "";
        if (r->route == RT_OLLAMA_CHAT || r->route == RT_OLLAMA_GENERATE) {
                r->first_token = true;
                struct lmp_proto_buf save = r->out;
                r->out = *b;
                stream_piece(r, text, r->text.len, r->finish);
                *b = r->out;
                r->out = save;
                return;
        }
        openai_head(r, b, false);
        if (r->route == RT_CHAT) {
                puts_(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
                if (r->tool_calls && r->text.len == 0)
                        puts_(b, "null"); /* as OpenAI answers a turn that only calls tools */
                else
                        lmp_proto_append_json_string(b, text, r->text.len);
                if (r->tool_calls) {
                        puts_(b, ",\"tool_calls\":");
                        put_tool_calls(r, b, CALLS_OPENAI);
                }
                puts_(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
        } else {
                puts_(b, ",\"choices\":[{\"text\":");
                lmp_proto_append_json_string(b, text, r->text.len);
                puts_(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":");
        }
        putf(b, "\"%s\"}]", finish_reason(r->finish));
        openai_usage(r, b);
        puts_(b, "}");
}

/* Standard base64 of n bytes. */
static void put_base64(struct lmp_proto_buf *b, const uint8_t *p, size_t n) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char q[4];
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                             (i + 2 < n ? p[i + 2] : 0);
                q[0] = tab[v >> 18];
                q[1] = tab[(v >> 12) & 63];
                q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
                q[3] = i + 2 < n ? tab[v & 63] : '=';
                put(b, q, 4);
        }
}

/* An embedding answer: OpenAI's list of embedding objects (floats, or
 * base64 of the little-endian f32 values), or Ollama's "embeddings". */
static void embed_answer(struct hreq *r, struct lmp_proto_buf *b) {
        bool ollama = r->route == RT_OLLAMA_EMBED;
        puts_(b, ollama ? "{\"model\":" : "{\"object\":\"list\",\"data\":[");
        if (ollama) {
                put_json(b, r->model);
                puts_(b, ",\"embeddings\":[");
        }
        for (size_t i = 0; i < r->n_vectors; i++) {
                const float *v = r->vectors + i * r->n_embd;
                if (i)
                        puts_(b, ",");
                if (!ollama)
                        putf(b, "{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i);
                if (!ollama && r->call.base64) {
                        /* The wire's floats are exact f32; x86 is little-endian. */
                        puts_(b, "\"");
                        put_base64(b, (const uint8_t *)v, r->n_embd * sizeof(float));
                        puts_(b, "\"}");
                        continue;
                }
                puts_(b, "[");
                for (size_t k = 0; k < r->n_embd; k++)
                        putf(b, k ? ",%.9g" : "%.9g", (double)v[k]);
                puts_(b, ollama ? "]" : "]}");
        }
        if (ollama) {
                putf(b, "],\"total_duration\":%lld,\"load_duration\":0,\"prompt_eval_count\":%" PRId64 "}",
                     (long long)((lmp_clock_s() - r->t_start) * 1e9), r->usage.prompt_tokens);
                return;
        }
        puts_(b, "],\"model\":");
        put_json(b, r->model);
        putf(b, ",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "}}", r->usage.prompt_tokens,
             r->usage.prompt_tokens);
}

static void error_body(bool ollama, struct lmp_proto_buf *b, const char *type, const char *code,
                       const char *param, const char *message) {
        if (ollama) {
                puts_(b, "{\"error\":");
                put_json(b, message);
                puts_(b, "}");
                return;
        }
        puts_(b, "{\"error\":{\"message\":");
        put_json(b, message);
        puts_(b, ",\"type\":");
        put_json(b, type);
        puts_(b, ",\"param\":");
        if (param && *param)
                put_json(b, param);
        else
                puts_(b, "null");
        puts_(b, ",\"code\":");
        if (code && *code)
                put_json(b, code);
        else
                puts_(b, "null");
        puts_(b, "}}");
}

/* -------------------------------------------------------------- responses */

static enum MHD_Result queue(struct hreq *r, int status, const char *ctype, const char *data, size_t len,
                             int retry_after) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        if (retry_after > 0) {
                char v[16];
                snprintf(v, sizeof(v), "%d", retry_after);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
        }
        if (status == 401)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        if (status == 405)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, routes[r->route].method);
        enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
        MHD_destroy_response(resp);
        r->status = status;
        r->phase = PH_ANSWERED;
        return ok;
}

static enum MHD_Result queue_json(struct hreq *r, int status, struct lmp_proto_buf *b, int retry_after) {
        return queue(r, status, "application/json", b->data ? b->data : "", b->len, retry_after);
}

static enum MHD_Result queue_error(struct hreq *r, int status, const char *type, const char *code,
                                   const char *param, int retry_after, const char *fmt, ...) LMP_PRINTF(7, 8);
static enum MHD_Result queue_error(struct hreq *r, int status, const char *type, const char *code,
                                   const char *param, int retry_after, const char *fmt, ...) {
        char msg[512];
        struct lmp_proto_buf b = { 0 };
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        memcpy(r->err_msg, msg, sizeof(r->err_msg) - 1);
        r->err_msg[sizeof(r->err_msg) - 1] = '\0';
        error_body(routes[r->route].ollama, &b, type, code, param, msg);
        enum MHD_Result ok = queue_json(r, status, &b, retry_after);
        lmp_proto_buf_free(&b);
        return ok;
}

/* The content reader of a streamed answer: what is buffered, else the end,
 * else suspend until the next event (returning 0 without suspending would
 * make MHD ask again at once: busy waiting). */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
        struct hreq *r = cls;
        (void)pos;
        if (r->client_gone)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        size_t avail = r->out.len - r->out_pos;
        if (avail) {
                size_t n = avail < max ? avail : max;
                memcpy(buf, r->out.data + r->out_pos, n);
                r->out_pos += n;
                if (r->out_pos == r->out.len)
                        r->out.len = r->out_pos = 0;
                return (ssize_t)n;
        }
        if (r->finished)
                return MHD_CONTENT_READER_END_OF_STREAM;
        suspend(r);
        return 0;
}

static enum MHD_Result queue_stream(struct hreq *r) {
        bool ollama = routes[r->route].ollama;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, r, NULL);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                ollama ? "application/x-ndjson" : "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: pass the events on at once */
        enum MHD_Result ok = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        r->headers_sent = true;
        r->phase = PH_STREAM;
        return ok;
}

/* --------------------------------------------------------- daemon events */

/* Ends a generation that has an error: before the headers, the error is
 * the response; after them, the stream's last piece. */
static void gen_error(struct hreq *r, enum lmp_proto_code code, const char *msg) {
        r->err_code = code;
        snprintf(r->err_msg, sizeof(r->err_msg), "%s", msg);
        r->finished = true;
        if (r->headers_sent) {
                int status;
                const char *type, *c;
                lmp_http_error_from_code(code, &status, &type, &c);
                if (!routes[r->route].ollama)
                        puts_(&r->out, "data: ");
                error_body(routes[r->route].ollama, &r->out, type, c, NULL, msg);
                puts_(&r->out, routes[r->route].ollama ? "\n" : "\n\n");
        }
}

static void on_token(struct hreq *r, const struct lmp_event *ev) {
        struct lmp_gateway *gw = r->gw;
        if (r->t_first == 0) {
                r->t_first = lmp_clock_s();
                observe(&gw->m.ttft, r->t_first - r->t_start);
        }
        if (!r->call.stream) {
                if (r->text.len + ev->text_len > gw->cfg->http_stream_buffer) {
                        gw->m.stream_overflow++;
                        send_cancel(r);
                        release_slot(r);
                        gen_error(r, LMP_PROTO_INTERNAL, "the answer is longer than the gateway holds "
                                                         "(http.stream_buffer)");
                        return;
                }
                put(&r->text, ev->text, ev->text_len);
                return;
        }
        if (r->out.len - r->out_pos > gw->cfg->http_stream_buffer) {
                gw->m.stream_overflow++;
                send_cancel(r);
                release_slot(r);
                gen_error(r, LMP_PROTO_SLOW_CONSUMER,
                          "the client did not read the stream in time (http.stream_buffer)");
                return;
        }
        if (ev->text_len)
                stream_piece(r, ev->text, ev->text_len, NULL);
}

/* ev is the caller's, which clears it after: an embedding's vectors move
 * out of it. */
static void on_event(struct lmp_gateway *gw, struct lmp_event *ev, const char *raw, size_t raw_len) {
        struct hreq *r;
        if (!ev->has_id || !(r = find_slot(gw, ev->id)))
                return; /* an answer to a cancel, or to a request that is gone */
        if (!is_generation(r->route)) {
                if (ev->type == LMP_EVENT_ERROR) {
                        r->err_code = ev->code;
                        snprintf(r->err_msg, sizeof(r->err_msg), "%s", ev->message);
                } else if ((r->aux_json = malloc(raw_len + 1))) {
                        memcpy(r->aux_json, raw, raw_len);
                        r->aux_json[raw_len] = '\0';
                }
                r->finished = true;
                release_slot(r);
                resume(r);
                return;
        }
        switch (ev->type) {
        case LMP_EVENT_TOKEN:
                on_token(r, ev);
                if (!r->call.stream && !r->finished)
                        return; /* a whole answer wakes its connection once, at the end */
                break;
        case LMP_EVENT_DONE:
                r->usage = ev->usage;
                snprintf(r->finish, sizeof(r->finish), "%s", lmp_finish_name(ev->finish));
                free(r->tool_calls);
                r->tool_calls = ev->tool_calls; /* moved: ev is cleared after */
                ev->tool_calls = NULL;
                r->finished = true;
                release_slot(r);
                if (r->call.stream)
                        stream_piece(r, "", 0, r->finish);
                break;
        case LMP_EVENT_EMBEDDING:
                if (!is_embed(r->route))
                        return;
                r->usage = ev->usage;
                r->vectors = ev->vectors;
                r->n_vectors = ev->n_vectors;
                r->n_embd = ev->n_embd;
                ev->vectors = NULL;
                r->finished = true;
                release_slot(r);
                break;
        case LMP_EVENT_ERROR:
                release_slot(r);
                gen_error(r, ev->code, ev->message);
                break;
        default:
                return;
        }
        resume(r);
}

static void drain_daemon(struct lmp_gateway *gw) {
        for (int budget = 0; budget < 4096; budget++) {
                zmq_msg_t msg;
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, gw->zsock, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&msg);
                        return;
                }
                bool more = zmq_msg_more(&msg);
                if (!(zmq_msg_size(&msg) == 0 && more)) {
                        struct lmp_event ev;
                        if (lmp_proto_parse_event(zmq_msg_data(&msg), zmq_msg_size(&msg), &ev) == 0) {
                                on_event(gw, &ev, zmq_msg_data(&msg), zmq_msg_size(&msg));
                                lmp_event_clear(&ev);
                        }
                }
                zmq_msg_close(&msg);
        }
}

/* Requests whose answer is overdue: the daemon is gone or stuck. */
static void check_deadlines(struct lmp_gateway *gw) {
        double now = lmp_clock_s();
        for (size_t i = 0; i < gw->n_slots; i++) {
                struct hreq *r = gw->slots[i].r;
                if (!r || now < r->deadline_s)
                        continue;
                gw->m.daemon_timeouts++;
                if (is_generation(r->route)) {
                        send_cancel(r);
                        release_slot(r);
                        gen_error(r, LMP_PROTO_TIMEOUT, "lmpoold did not finish the request in time");
                } else {
                        r->err_code = LMP_PROTO_TIMEOUT;
                        snprintf(r->err_msg, sizeof(r->err_msg), "lmpoold did not answer within %.0f s (%.180s)",
                                 AUX_TIMEOUT_S, gw->endpoint);
                        r->finished = true;
                        release_slot(r);
                }
                resume(r);
        }
}

/* The daemon's connection dropped (lmpoold stopped or restarted): the
 * requests it had are gone with it, so they end now, with 502, instead of
 * at their deadline. ZeroMQ reconnects by itself. */
static void check_monitor(struct lmp_gateway *gw) {
        for (;;) {
                zmq_msg_t head, addr;
                zmq_msg_init(&head);
                if (zmq_msg_recv(&head, gw->zmon, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&head);
                        return;
                }
                uint16_t event = 0;
                if (zmq_msg_size(&head) >= 2)
                        memcpy(&event, zmq_msg_data(&head), 2);
                bool more = zmq_msg_more(&head);
                zmq_msg_close(&head);
                if (more) {
                        zmq_msg_init(&addr);
                        zmq_msg_recv(&addr, gw->zmon, 0);
                        zmq_msg_close(&addr);
                }
                lmp_log_msg(LMP_PRI_DEBUG, "daemon connection event %u", (unsigned)event);
                if (event == ZMQ_EVENT_CONNECTED) {
                        gw->daemon_connected = true;
                        continue;
                }
                if (event != ZMQ_EVENT_DISCONNECTED)
                        continue;
                gw->daemon_connected = false;
                gw->m.daemon_disconnects++;
                size_t n = 0;
                for (size_t i = 0; i < gw->n_slots; i++) {
                        struct hreq *r = gw->slots[i].r;
                        if (!r)
                                continue;
                        n++;
                        release_slot(r);
                        if (is_generation(r->route)) {
                                gen_error(r, LMP_PROTO_WORKER_LOST, "the connection to lmpoold was lost");
                        } else {
                                r->err_code = LMP_PROTO_WORKER_LOST;
                                snprintf(r->err_msg, sizeof(r->err_msg), "the connection to lmpoold was lost");
                                r->finished = true;
                        }
                        resume(r);
                }
                struct lmp_log_field f[] = { LMP_FSTR("LMPOOL_ENDPOINT", gw->endpoint), LMP_FU64("REQUESTS", n) };
                lmp_log_event(LMP_PRI_WARNING, "daemon_disconnected", f,
                              "the connection to lmpoold at %s was lost; %zu requests in flight ended", gw->endpoint,
                              n);
        }
}

static void check_hangups(struct lmp_gateway *gw) {
        struct epoll_event evs[HUP_EVENTS];
        int n = epoll_wait(gw->hup_ep, evs, HUP_EVENTS, 0);
        for (int i = 0; i < n; i++) {
                struct hreq *r = evs[i].data.ptr;
                r->client_gone = true;
                if (r->slot >= 0) {
                        send_cancel(r);
                        release_slot(r);
                        r->finished = true;
                }
                resume(r);
        }
}

/* ------------------------------------------------------------ endpoints */

static int peer_info(struct hreq *r) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = fi ? fi->connect_fd : -1;
        snprintf(r->peer, sizeof(r->peer), "?");
        if (!ci || !ci->client_addr)
                return 0;
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const void *)sa;
                inet_ntop(AF_INET, &in->sin_addr, r->peer, sizeof(r->peer));
                r->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const void *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, r->peer, sizeof(r->peer));
                r->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                              (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
        }
        return 0;
}

/* -1 and a queued 401 when the caller has no valid key. */
static int authenticate(struct hreq *r) {
        struct lmp_gateway *gw = r->gw;
        const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
                const char *t = h + 7;
                while (*t == ' ')
                        t++;
                int k = lmp_http_keys_find(gw->keys, t, strlen(t));
                if (k >= 0) {
                        r->key = k;
                        return 0;
                }
                queue_error(r, 401, "invalid_request_error", "invalid_api_key", NULL, 0, "invalid API key");
                return -1;
        }
        if (r->loopback && gw->cfg->http_loopback_without_key) {
                r->key = lmp_http_keys_loopback(gw->keys);
                return 0;
        }
        queue_error(r, 401, "invalid_request_error", "invalid_api_key", NULL, 0,
                    "an API key is required (Authorization: Bearer KEY)");
        return -1;
}

static enum MHD_Result start_aux(struct hreq *r, enum lmp_request_type type) {
        struct lmp_request req = { .type = type };
        int rc = send_to_daemon(r, &req, AUX_TIMEOUT_S);
        if (rc == -EBUSY)
                return queue_error(r, 503, "server_error", "gateway_busy", NULL, 1,
                                   "the gateway has %zu requests to lmpoold in flight (http.max_requests)",
                                   r->gw->n_slots);
        if (rc < 0)
                return queue_error(r, 503, "server_error", "daemon_unreachable", NULL, 1,
                                   "cannot send to lmpoold at %s: %s", r->gw->endpoint, strerror(-rc));
        r->phase = PH_WAIT;
        suspend(r);
        return MHD_YES;
}

static enum MHD_Result start_generation(struct hreq *r) {
        struct lmp_gateway *gw = r->gw;
        enum lmp_http_api api = r->route == RT_CHAT          ? LMP_HTTP_OPENAI_CHAT :
                                r->route == RT_COMPLETIONS   ? LMP_HTTP_OPENAI_COMPLETION :
                                r->route == RT_OLLAMA_CHAT   ? LMP_HTTP_OLLAMA_CHAT :
                                r->route == RT_EMBEDDINGS    ? LMP_HTTP_OPENAI_EMBEDDINGS :
                                r->route == RT_OLLAMA_EMBED  ? LMP_HTTP_OLLAMA_EMBED :
                                                               LMP_HTTP_OLLAMA_GENERATE;
        struct lmp_http_error err;
        int rc;

        if (!r->body_len)
                return queue_error(r, 400, "invalid_request_error", "invalid_request", NULL, 0,
                                   "the request needs a JSON body");
        if ((rc = lmp_http_translate(api, r->body, r->body_len, &r->call, &err)) < 0)
                return queue_error(r, err.status, err.type, err.code, err.param, 0, "%s", err.message);
        snprintf(r->model, sizeof(r->model), "%s", r->call.req.model);
        const char *sess = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Session-Id");
        if (sess && !r->call.req.session[0]) {
                size_t n = strlen(sess);
                if (n == 0 || n > LMP_PROTO_SESSION_MAX || !lmp_proto_utf8_valid(sess, n))
                        return queue_error(r, 400, "invalid_request_error", "invalid_request", "X-Session-Id", 0,
                                           "the X-Session-Id header must be 1 to %d bytes of UTF-8",
                                           LMP_PROTO_SESSION_MAX);
                memcpy(r->call.req.session, sess, n + 1);
        }
        r->created = (long long)time(NULL);
        snprintf(r->resp_id, sizeof(r->resp_id), "%s%" PRIx64 "%06" PRIx64,
                 r->route == RT_CHAT ? "chatcmpl-" : "cmpl-", (uint64_t)r->created, ++gw->seq);
        if (r->call.load_only) {
                struct lmp_proto_buf b = { 0 };
                puts_(&b, "{\"model\":");
                put_json(&b, r->model);
                puts_(&b, ",");
                created_at(&b);
                puts_(&b, ",\"response\":\"\",\"done\":true,\"done_reason\":\"load\"}");
                enum MHD_Result ok = queue(r, 200, r->call.stream ? "application/x-ndjson" : "application/json",
                                           b.data, b.len, 0);
                lmp_proto_buf_free(&b);
                return ok;
        }
        r->call.req.stream = true;
        r->call.req.timeout_ms = (uint32_t)gw->cfg->http_request_timeout_ms;
        r->call.req.sampling.set |= LMP_SET_TIMEOUT_MS;
        rc = send_to_daemon(r, &r->call.req, gw->cfg->http_request_timeout_ms / 1000.0 + DEADLINE_SLACK_S);
        if (rc == -EBUSY)
                return queue_error(r, 503, "server_error", "gateway_busy", NULL, 1,
                                   "the gateway has %zu requests in flight (http.max_requests)", gw->n_slots);
        if (rc < 0)
                return queue_error(r, 503, "server_error", "daemon_unreachable", NULL, 1,
                                   "cannot send to lmpoold at %s: %s", gw->endpoint, strerror(-rc));
        r->phase = PH_WAIT;
        suspend(r);
        return MHD_YES;
}

/* POST /api/show: {"model": NAME} (or Ollama's older "name"). */
static enum MHD_Result start_show(struct hreq *r) {
        cJSON *root = r->body_len ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (!cJSON_IsString(m))
                m = cJSON_GetObjectItemCaseSensitive(root, "name");
        bool ok = cJSON_IsString(m) && m->valuestring[0] && strlen(m->valuestring) <= LMP_PROTO_MODEL_MAX;
        if (ok)
                snprintf(r->path_arg, sizeof(r->path_arg), "%s", m->valuestring);
        cJSON_Delete(root);
        if (!ok)
                return queue_error(r, 400, "invalid_request_error", "invalid_request", "model", 0,
                                   "the body must be {\"model\": NAME} (1 to %d bytes)", LMP_PROTO_MODEL_MAX);
        return start_aux(r, LMP_REQ_MODELS);
}

/* ------------------------------------------------------ aux answers */

static enum MHD_Result aux_failed(struct hreq *r) {
        int status;
        const char *type, *code;
        if (r->err_code == LMP_PROTO_TIMEOUT)
                return queue_error(r, 503, "server_error", "daemon_unreachable", NULL, 1, "%s", r->err_msg);
        lmp_http_error_from_code(r->err_code ? r->err_code : LMP_PROTO_INTERNAL, &status, &type, &code);
        return queue_error(r, status, type, code, NULL, 0, "%s", r->err_msg[0] ? r->err_msg : "no answer");
}

static enum MHD_Result answer_models(struct hreq *r) {
        cJSON *root = cJSON_Parse(r->aux_json), *m;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "models");
        struct lmp_proto_buf b = { 0 };
        bool ollama = routes[r->route].ollama, found = false;
        long long now = (long long)time(NULL);
        int n = 0;

        if (!cJSON_IsArray(list)) {
                cJSON_Delete(root);
                return queue_error(r, 502, "server_error", "bad_answer", NULL, 0, "lmpoold's models answer is malformed");
        }
        bool one = r->route == RT_MODEL || r->route == RT_OLLAMA_SHOW;
        puts_(&b, one ? "" : ollama ? "{\"models\":[" : "{\"object\":\"list\",\"data\":[");
        cJSON_ArrayForEach(m, list) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
                const cJSON *arch = cJSON_GetObjectItemCaseSensitive(m, "arch");
                const cJSON *ready = cJSON_GetObjectItemCaseSensitive(m, "ready");
                const cJSON *size = cJSON_GetObjectItemCaseSensitive(m, "store_bytes");
                if (!cJSON_IsString(name))
                        continue;
                if (one && strcmp(name->valuestring, r->path_arg) != 0)
                        continue;
                if (r->route == RT_OLLAMA_PS && !(cJSON_IsNumber(ready) && ready->valuedouble > 0))
                        continue;
                found = true;
                if (n++)
                        puts_(&b, ",");
                if (!ollama) {
                        puts_(&b, "{\"id\":");
                        put_json(&b, name->valuestring);
                        putf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"lmpool\"}", now);
                        continue;
                }
                const char *a = cJSON_IsString(arch) ? arch->valuestring : "";
                if (r->route == RT_OLLAMA_SHOW) {
                        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(m, "ctx");
                        puts_(&b, "{\"modelfile\":\"\",\"parameters\":\"\",\"template\":\"\",\"details\":{"
                                  "\"parent_model\":\"\",\"format\":\"gguf\",\"family\":");
                        put_json(&b, a);
                        puts_(&b, ",\"families\":[");
                        put_json(&b, a);
                        puts_(&b, "],\"parameter_size\":\"\",\"quantization_level\":\"\"},\"model_info\":{"
                                  "\"general.architecture\":");
                        put_json(&b, a);
                        putf(&b, ",\"lmpool.context_length\":%.0f},\"capabilities\":[\"completion\"]}",
                             cJSON_IsNumber(ctx) ? ctx->valuedouble : 0);
                        continue;
                }
                puts_(&b, "{\"name\":");
                put_json(&b, name->valuestring);
                puts_(&b, ",\"model\":");
                put_json(&b, name->valuestring);
                if (r->route == RT_OLLAMA_TAGS)
                        puts_(&b, ",\"modified_at\":\"1970-01-01T00:00:00Z\"");
                putf(&b, ",\"size\":%.0f,\"digest\":\"\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":",
                     cJSON_IsNumber(size) ? size->valuedouble : 0);
                put_json(&b, a);
                puts_(&b, ",\"families\":[");
                put_json(&b, a);
                puts_(&b, "],\"parameter_size\":\"\",\"quantization_level\":\"\"}");
                if (r->route == RT_OLLAMA_PS)
                        puts_(&b, ",\"expires_at\":\"2999-01-01T00:00:00Z\",\"size_vram\":0");
                puts_(&b, "}");
        }
        cJSON_Delete(root);
        if (one && !found) {
                lmp_proto_buf_free(&b);
                if (ollama)
                        return queue_error(r, 404, "invalid_request_error", "model_not_found", "model", 0,
                                           "model '%s' not found", r->path_arg);
                return queue_error(r, 404, "invalid_request_error", "model_not_found", "model", 0,
                                   "the model '%s' does not exist", r->path_arg);
        }
        if (!one)
                puts_(&b, "]}");
        enum MHD_Result ok = queue_json(r, 200, &b, 0);
        lmp_proto_buf_free(&b);
        return ok;
}

/* The daemon's health answer without the protocol's fields (v, id, event):
 * 200 only when its status is "ok". */
static enum MHD_Result answer_health(struct hreq *r) {
        cJSON *root = cJSON_Parse(r->aux_json);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
        bool ok = cJSON_IsString(st) && strcmp(st->valuestring, "ok") == 0;
        char *text = NULL;
        if (root) {
                cJSON_DeleteItemFromObjectCaseSensitive(root, "v");
                cJSON_DeleteItemFromObjectCaseSensitive(root, "id");
                cJSON_DeleteItemFromObjectCaseSensitive(root, "event");
                text = cJSON_PrintUnformatted(root);
        }
        enum MHD_Result res = text ? queue(r, ok ? 200 : 503, "application/json", text, strlen(text), 0)
                                   : queue_error(r, 502, "server_error", "bad_answer", NULL, 0,
                                                 "lmpoold's health answer is malformed");
        free(text);
        cJSON_Delete(root);
        return res;
}

static void metric_header(struct lmp_proto_buf *b, const char *name, const char *type, const char *help) {
        putf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label_value(struct lmp_proto_buf *b, const char *v) {
        /* Prometheus label values: \ " and newline escaped */
        for (const char *p = v; *p; p++) {
                if (*p == '\\' || *p == '"')
                        put(b, "\\", 1), put(b, p, 1);
                else if (*p == '\n')
                        puts_(b, "\\n");
                else
                        put(b, p, 1);
        }
}

static const char *label_name(const struct metrics *m, size_t i) {
        return i < m->n_models ? m->models[i] : i == LABEL_OTHER ? "other" : "";
}

static void histogram_out(struct lmp_proto_buf *b, const char *name, const char *help, const struct histogram *h) {
        uint64_t cum = 0;
        metric_header(b, name, "histogram", help);
        for (size_t i = 0; i < N_BUCKETS; i++) {
                cum += h->count[i];
                putf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, buckets[i], cum);
        }
        putf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, h->n, name, h->sum,
             name, h->n);
}

static void daemon_metrics(struct lmp_proto_buf *b, const char *json) {
        cJSON *root = json ? cJSON_Parse(json) : NULL;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "queue");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "requests");
        const cJSON *workers = cJSON_GetObjectItemCaseSensitive(root, "workers"), *w, *f;

        metric_header(b, "lmpool_daemon_up", "gauge", "Whether lmpoold answered the stats request of this scrape.");
        putf(b, "lmpool_daemon_up %d\n", root ? 1 : 0);
        if (!root)
                return;
        metric_header(b, "lmpool_queue_length", "gauge", "Requests waiting for a worker in lmpoold.");
        putf(b, "lmpool_queue_length %.0f\n", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "length")));
        metric_header(b, "lmpool_queue_limit", "gauge", "lmpoold's queue bound (limits.queue_length).");
        putf(b, "lmpool_queue_limit %.0f\n", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "limit")));
        metric_header(b, "lmpool_daemon_uptime_seconds", "gauge", "lmpoold's uptime.");
        putf(b, "lmpool_daemon_uptime_seconds %.3f\n",
             cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "uptime_s")));
        metric_header(b, "lmpool_daemon_requests_total", "counter", "Requests lmpoold ended, by result (all clients).");
        cJSON_ArrayForEach(f, req) {
                if (cJSON_IsNumber(f))
                        putf(b, "lmpool_daemon_requests_total{result=\"%s\"} %.0f\n", f->string, f->valuedouble);
        }
        const cJSON *aff = cJSON_GetObjectItemCaseSensitive(root, "affinity");
        const cJSON *cache = cJSON_GetObjectItemCaseSensitive(root, "cache");
        if (aff) {
                metric_header(b, "lmpool_daemon_affinity_total", "counter",
                              "Conversations placed: on the worker that served them last (hits), moved (misses), "
                              "seen first (new).");
                cJSON_ArrayForEach(f, aff) {
                        if (cJSON_IsNumber(f))
                                putf(b, "lmpool_daemon_affinity_total{result=\"%s\"} %.0f\n", f->string,
                                     f->valuedouble);
                }
        }
        if (cache) {
                metric_header(b, "lmpool_daemon_cache_requests_total", "counter",
                              "Deterministic requests answered from lmpoold's response cache (hits) or not (misses).");
                cJSON_ArrayForEach(f, cache) {
                        if (cJSON_IsNumber(f) && (strcmp(f->string, "hits") == 0 || strcmp(f->string, "misses") == 0))
                                putf(b, "lmpool_daemon_cache_requests_total{result=\"%s\"} %.0f\n", f->string,
                                     f->valuedouble);
                }
                metric_header(b, "lmpool_daemon_cache_entries", "gauge", "Answers lmpoold's response cache holds.");
                putf(b, "lmpool_daemon_cache_entries %.0f\n",
                     cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cache, "entries")));
                metric_header(b, "lmpool_daemon_cache_bytes", "gauge", "Memory of lmpoold's response cache.");
                putf(b, "lmpool_daemon_cache_bytes %.0f\n",
                     cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cache, "bytes")));
        }
        static const struct {
                const char *field, *name, *type, *help;
        } wm[] = {
                { "rss_bytes", "lmpool_worker_rss_bytes", "gauge", "Resident memory of a worker process." },
                { "pss_bytes", "lmpool_worker_pss_bytes", "gauge",
                  "Proportional set size of a worker (shared weights divided among the workers)." },
                { "restarts", "lmpool_worker_restarts_total", "counter", "Times this worker slot was respawned." },
                { "served", "lmpool_worker_served_total", "counter", "Requests this worker served." },
                { "active", "lmpool_worker_active", "gauge", "Requests this worker is running." },
                { "slots", "lmpool_worker_slots", "gauge", "Sequences this worker runs at once." },
        };
        for (size_t k = 0; k < LMP_ARRAY_SIZE(wm); k++) {
                metric_header(b, wm[k].name, wm[k].type, wm[k].help);
                cJSON_ArrayForEach(w, workers) {
                        const cJSON *name = cJSON_GetObjectItemCaseSensitive(w, "name");
                        const cJSON *model = cJSON_GetObjectItemCaseSensitive(w, "model");
                        const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, wm[k].field);
                        if (!cJSON_IsString(name) || !cJSON_IsString(model) || !cJSON_IsNumber(v))
                                continue;
                        putf(b, "%s{worker=\"", wm[k].name);
                        label_value(b, name->valuestring);
                        puts_(b, "\",model=\"");
                        label_value(b, model->valuestring);
                        putf(b, "\"} %.0f\n", v->valuedouble);
                }
        }
        cJSON_Delete(root);
}

static enum MHD_Result answer_metrics(struct hreq *r) {
        struct lmp_gateway *gw = r->gw;
        struct metrics *m = &gw->m;
        struct lmp_proto_buf b = { 0 };

        metric_header(&b, "lmpool_http_requests_total", "counter",
                      "HTTP requests the gateway answered, by endpoint, model and status code.");
        for (size_t rt = 0; rt < RT_COUNT; rt++)
                for (size_t l = 0; l < MODEL_LABELS_MAX + 2; l++)
                        for (size_t s = 0; s < N_STATUS; s++) {
                                if (!m->requests[rt][l][s])
                                        continue;
                                puts_(&b, "lmpool_http_requests_total{endpoint=\"");
                                label_value(&b, routes[rt].path);
                                puts_(&b, "\",model=\"");
                                label_value(&b, label_name(m, l));
                                if (s < LMP_ARRAY_SIZE(status_list))
                                        putf(&b, "\",code=\"%d\"} %" PRIu64 "\n", status_list[s], m->requests[rt][l][s]);
                                else
                                        putf(&b, "\",code=\"other\"} %" PRIu64 "\n", m->requests[rt][l][s]);
                        }
        static const char *const tok_names[3] = { "lmpool_http_prompt_tokens_total",
                                                   "lmpool_http_generated_tokens_total",
                                                   "lmpool_http_cached_tokens_total" };
        static const char *const tok_help[3] = { "Prompt tokens of the requests served.", "Tokens generated.",
                                                 "Prompt tokens reused from a worker's KV cache." };
        const uint64_t *tok[3] = { m->prompt_tokens, m->generated_tokens, m->cached_tokens };
        for (int t = 0; t < 3; t++) {
                metric_header(&b, tok_names[t], "counter", tok_help[t]);
                for (size_t l = 0; l < MODEL_LABELS_MAX + 2; l++) {
                        if (!tok[t][l])
                                continue;
                        putf(&b, "%s{model=\"", tok_names[t]);
                        label_value(&b, label_name(m, l));
                        putf(&b, "\"} %" PRIu64 "\n", tok[t][l]);
                }
        }
        histogram_out(&b, "lmpool_http_ttft_seconds", "Time from a generation request's arrival at the gateway to "
                                                      "its first token.", &m->ttft);
        histogram_out(&b, "lmpool_http_request_duration_seconds",
                      "Time from a served generation request's arrival at the gateway to its last byte.", &m->latency);
        metric_header(&b, "lmpool_http_requests_in_flight", "gauge", "Generation requests the gateway is serving.");
        putf(&b, "lmpool_http_requests_in_flight %zu\n", gw->gen_in_flight);
        metric_header(&b, "lmpool_http_client_gone_total", "counter",
                      "Requests cancelled because their HTTP client went away.");
        putf(&b, "lmpool_http_client_gone_total %" PRIu64 "\n", m->client_gone);
        metric_header(&b, "lmpool_http_stream_overflow_total", "counter",
                      "Requests ended because their answer outgrew http.stream_buffer.");
        putf(&b, "lmpool_http_stream_overflow_total %" PRIu64 "\n", m->stream_overflow);
        metric_header(&b, "lmpool_http_daemon_timeouts_total", "counter",
                      "Requests lmpoold did not answer in time.");
        putf(&b, "lmpool_http_daemon_timeouts_total %" PRIu64 "\n", m->daemon_timeouts);
        metric_header(&b, "lmpool_http_daemon_disconnects_total", "counter",
                      "Times the connection to lmpoold dropped (its requests in flight ended with 502).");
        putf(&b, "lmpool_http_daemon_disconnects_total %" PRIu64 "\n", m->daemon_disconnects);
        metric_header(&b, "lmpool_http_key_requests_total", "counter", "Generation requests admitted, by API key.");
        for (size_t k = 0; k <= gw->keys->n; k++) {
                const struct lmp_http_key *e = &gw->keys->v[k];
                if (k == gw->keys->n && !gw->cfg->http_loopback_without_key)
                        continue;
                puts_(&b, "lmpool_http_key_requests_total{key=\"");
                label_value(&b, e->name);
                putf(&b, "\"} %" PRIu64 "\n", e->requests);
        }
        metric_header(&b, "lmpool_http_key_limited_total", "counter",
                      "Generation requests refused with 429, by API key and limit.");
        for (size_t k = 0; k <= gw->keys->n; k++) {
                const struct lmp_http_key *e = &gw->keys->v[k];
                if (k == gw->keys->n && !gw->cfg->http_loopback_without_key)
                        continue;
                puts_(&b, "lmpool_http_key_limited_total{key=\"");
                label_value(&b, e->name);
                putf(&b, "\",limit=\"rate\"} %" PRIu64 "\n", e->rate_limited);
                puts_(&b, "lmpool_http_key_limited_total{key=\"");
                label_value(&b, e->name);
                putf(&b, "\",limit=\"concurrency\"} %" PRIu64 "\n", e->concurrency_limited);
        }
        daemon_metrics(&b, r->aux_json);
        enum MHD_Result ok = queue(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len, 0);
        lmp_proto_buf_free(&b);
        return ok;
}

/* A request that waited for the daemon, now resumed. */
static enum MHD_Result answer(struct hreq *r) {
        if (!is_generation(r->route)) {
                if (r->route == RT_METRICS)
                        return answer_metrics(r); /* without the daemon's part when it did not answer */
                if (!r->aux_json) {
                        if (r->route == RT_HEALTH) {
                                struct lmp_proto_buf b = { 0 };
                                puts_(&b, "{\"status\":\"unavailable\",\"reason\":");
                                put_json(&b, r->err_msg[0] ? r->err_msg : "lmpoold did not answer");
                                puts_(&b, "}");
                                enum MHD_Result ok = queue_json(r, 503, &b, 0);
                                lmp_proto_buf_free(&b);
                                return ok;
                        }
                        return aux_failed(r);
                }
                return r->route == RT_HEALTH ? answer_health(r) : answer_models(r);
        }
        if (r->err_code != LMP_PROTO_OK) {
                int status;
                const char *type, *code;
                lmp_http_error_from_code(r->err_code, &status, &type, &code);
                if (r->route == RT_OLLAMA_CHAT || r->route == RT_OLLAMA_GENERATE || r->route == RT_OLLAMA_EMBED) {
                        if (r->err_code == LMP_PROTO_UNKNOWN_MODEL)
                                return queue_error(r, 404, type, code, NULL, 0,
                                                   "model \"%s\" not found, try pulling it first", r->model);
                }
                return queue_error(r, status, type, code, r->err_code == LMP_PROTO_BAD_REQUEST ? "" : NULL,
                                   r->err_code == LMP_PROTO_BUSY ? 1 : 0, "%s", r->err_msg);
        }
        if (is_embed(r->route)) {
                if (!r->finished || !r->vectors) {
                        suspend(r); /* resumed by its one event */
                        return MHD_YES;
                }
                struct lmp_proto_buf b = { 0 };
                embed_answer(r, &b);
                enum MHD_Result ok = queue_json(r, 200, &b, 0);
                lmp_proto_buf_free(&b);
                return ok;
        }
        if (r->call.stream)
                return queue_stream(r);
        if (!r->finished) {
                suspend(r); /* resumed by a token: the whole answer comes with done */
                return MHD_YES;
        }
        struct lmp_proto_buf b = { 0 };
        whole_answer(r, &b);
        enum MHD_Result ok = queue_json(r, 200, &b, 0);
        lmp_proto_buf_free(&b);
        return ok;
}

/* ------------------------------------------------------ MHD callbacks */

static enum MHD_Result first_call(struct hreq *r, const char *method) {
        struct lmp_gateway *gw = r->gw;
        bool head = strcmp(method, "HEAD") == 0;

        if (r->route == RT_NOT_FOUND)
                return queue_error(r, 404, "invalid_request_error", "not_found", NULL, 0, "no endpoint %s",
                                   "at this path (docs/http.md lists them)");
        if (strcmp(method, routes[r->route].method) != 0 && !(head && strcmp(routes[r->route].method, "GET") == 0))
                return queue_error(r, 405, "invalid_request_error", "method_not_allowed", NULL, 0,
                                   "%s takes %s only", routes[r->route].path, routes[r->route].method);
        if (routes[r->route].auth && authenticate(r) < 0)
                return MHD_YES;
        const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > gw->cfg->http_max_body)
                return queue_error(r, 413, "invalid_request_error", "request_too_large", NULL, 0,
                                   "the body is %s bytes, over the limit of %" PRIu64 " (http.max_body)", cl,
                                   gw->cfg->http_max_body);
        if (is_generation(r->route)) {
                int retry = 1;
                if (gw->gen_in_flight >= (size_t)gw->cfg->http_max_requests)
                        return queue_error(r, 503, "server_error", "gateway_busy", NULL, 1,
                                           "the gateway has %d requests in flight (http.max_requests)",
                                           gw->cfg->http_max_requests);
                int rc = lmp_http_keys_admit(gw->keys, r->key, lmp_clock_s(), &retry);
                if (rc == -EBUSY)
                        return queue_error(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL, retry,
                                           "this key has %d requests in flight (http.key_requests)",
                                           gw->cfg->http_key_requests);
                if (rc < 0)
                        return queue_error(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL, retry,
                                           "this key made more than %g requests per second (http.key_rate, "
                                           "burst http.key_burst %d)",
                                           gw->cfg->http_key_rate, gw->cfg->http_key_burst);
                r->admitted = true;
                gw->gen_in_flight++;
        }
        return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        struct lmp_gateway *gw = cls;
        struct hreq *r = *con_cls;
        (void)version;

        if (!r) {
                if (!(r = calloc(1, sizeof(*r))))
                        return MHD_NO;
                r->gw = gw;
                r->conn = conn;
                r->slot = -1;
                r->key = -1;
                r->t_start = lmp_clock_s();
                r->next = gw->live;
                if (gw->live)
                        gw->live->prev = r;
                gw->live = r;
                r->route = find_route(url);
                if (r->route == RT_MODEL)
                        snprintf(r->path_arg, sizeof(r->path_arg), "%s", url + 11);
                *con_cls = r;
                peer_info(r);
                if (gw->stopping)
                        return queue_error(r, 503, "server_error", "shutting_down", NULL, 1, "the gateway is stopping");
                return first_call(r, method);
        }
        if (*upload_data_size) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (r->phase != PH_HEADERS)
                        return MHD_YES; /* answered already: the rest is dropped */
                if (r->body_len + n > gw->cfg->http_max_body) {
                        /* A chunked body, whose size was not announced, over the
                         * limit: MHD takes a response only once the body is in,
                         * and we do not read on; the connection is closed. */
                        r->body_over = true;
                        return MHD_NO;
                }
                char *p = realloc(r->body, r->body_len + n + 1);
                if (!p)
                        return MHD_NO;
                r->body = p;
                memcpy(r->body + r->body_len, upload_data, n);
                r->body_len += n;
                return MHD_YES;
        }
        if (r->client_gone)
                return MHD_NO;
        switch (r->phase) {
        case PH_HEADERS:
                switch (r->route) {
                case RT_ROOT:
                        return queue(r, 200, "text/plain", "lmpool-http is running", 22, 0);
                case RT_OLLAMA_VERSION:
                        return queue(r, 200, "application/json", "{\"version\":\"" LMPOOL_VERSION "\"}",
                                     strlen("{\"version\":\"" LMPOOL_VERSION "\"}"), 0);
                case RT_HEALTH:
                        return start_aux(r, LMP_REQ_HEALTH);
                case RT_METRICS:
                        return start_aux(r, LMP_REQ_STATS);
                case RT_MODELS:
                case RT_MODEL:
                case RT_OLLAMA_TAGS:
                case RT_OLLAMA_PS:
                        return start_aux(r, LMP_REQ_MODELS);
                case RT_OLLAMA_SHOW:
                        return start_show(r);
                default:
                        return start_generation(r);
                }
        case PH_WAIT:
                return answer(r);
        case PH_STREAM:
        case PH_ANSWERED:
                return MHD_YES;
        }
        return MHD_YES;
}

static void log_request(struct hreq *r, double total_s, enum MHD_RequestTerminationCode toe) {
        struct lmp_gateway *gw = r->gw;
        const char *key = r->key >= 0 ? gw->keys->v[r->key].name : r->key == -2 ? "(revoked)" : "";
        struct lmp_log_field f[] = {
                LMP_FSTR("HTTP_PATH", routes[r->route].path),
                LMP_FI64("HTTP_STATUS", r->status),
                LMP_FSTR("HTTP_PEER", r->peer),
                LMP_FSTR("LMPOOL_KEY", key),
                LMP_FSTR("LMPOOL_MODEL", r->model),
                LMP_FU64("PROMPT_TOKENS", (uint64_t)r->usage.prompt_tokens),
                LMP_FU64("CACHED_TOKENS", (uint64_t)r->usage.cached_tokens),
                LMP_FU64("GENERATED_TOKENS", (uint64_t)r->usage.generated_tokens),
                LMP_FF64("TTFT_MS", r->t_first > 0 ? (r->t_first - r->t_start) * 1e3 : 0),
                LMP_FF64("TOTAL_MS", total_s * 1e3),
                LMP_FSTR("ERROR", r->err_msg),
                LMP_FSTR("STREAM", r->call.stream ? "true" : "false"),
        };
        lmp_log_event(r->status >= 500 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? LMP_PRI_WARNING : LMP_PRI_INFO,
                      "http_request", f, "%s %s %d key=%s model=%s %.1f ms%s%s", r->peer, routes[r->route].path,
                      r->status, key, r->model, total_s * 1e3, r->err_msg[0] ? ": " : "", r->err_msg);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        struct lmp_gateway *gw = cls;
        struct hreq *r = *con_cls;
        (void)conn;
        if (!r)
                return;
        double total = lmp_clock_s() - r->t_start;
        if (r->slot >= 0) {
                send_cancel(r); /* the client went away before the end */
                release_slot(r);
        }
        /* An answer not delivered whole: the client went away (or MHD
         * gave up on it), whatever the status line said. */
        if (r->body_over) {
                r->status = 413; /* its connection was closed on purpose */
        } else {
                if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && is_generation(r->route))
                        r->client_gone = true;
                if (r->client_gone && is_generation(r->route)) {
                        gw->m.client_gone++;
                        r->status = 499;
                }
        }
        if (r->admitted) {
                if (r->key >= 0)
                        lmp_http_keys_release(gw->keys, r->key);
                gw->gen_in_flight--;
        }
        bool served = is_generation(r->route) && r->status == 200;
        int label = is_generation(r->route) || r->route == RT_MODEL ? model_label(&gw->m, r->model, served)
                                                                     : LABEL_NONE;
        gw->m.requests[r->route][label][status_index(r->status)]++;
        if (served) {
                gw->m.prompt_tokens[label] += (uint64_t)r->usage.prompt_tokens;
                gw->m.generated_tokens[label] += (uint64_t)r->usage.generated_tokens;
                gw->m.cached_tokens[label] += (uint64_t)r->usage.cached_tokens;
        }
        if (served && !r->call.load_only)
                observe(&gw->m.latency, total);
        if (gw->cfg->log_requests && r->route != RT_HEALTH && r->route != RT_METRICS)
                log_request(r, total, toe);
        if (r->prev)
                r->prev->next = r->next;
        else
                gw->live = r->next;
        if (r->next)
                r->next->prev = r->prev;
        lmp_http_call_clear(&r->call);
        lmp_proto_buf_free(&r->out);
        lmp_proto_buf_free(&r->text);
        free(r->tool_calls);
        free(r->aux_json);
        free(r->vectors);
        free(r->body);
        free(r);
        *con_cls = NULL;
}

/* libmicrohttpd's messages: fmt is its own printf format. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) LMP_PRINTF(2, 0);
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char msg[512];
        (void)cls;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n && msg[n - 1] == '\n')
                msg[--n] = '\0';
        lmp_log_msg(LMP_PRI_INFO, "http: %s", msg);
}

/* ----------------------------------------------------------- lifecycle */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, bool *ret_v6, char *msg, size_t msg_size) {
        char host[256];
        const char *colon = strrchr(listen, ':');
        char *end;
        if (!colon || (size_t)(colon - listen) >= sizeof(host))
                goto bad;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 0 || port > 65535 || end == colon + 1)
                goto bad;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        memset(ss, 0, sizeof(*ss));
        if (strcmp(host, "*") == 0 || (host[0] == '[' && host[strlen(host) - 1] == ']')) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                if (host[0] == '[') {
                        host[strlen(host) - 1] = '\0';
                        if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
                                goto bad;
                } else {
                        in6->sin6_addr = in6addr_any;
                }
                *ret_v6 = true;
                return 0;
        }
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                goto bad;
        *ret_v6 = false;
        return 0;
bad:
        snprintf(msg, msg_size, "listen address '%s': must be ADDR:PORT (an IPv4 address, [IPv6] or *)", listen);
        return -EINVAL;
}

int lmp_gateway_new(const struct lmp_gateway_options *opt, struct lmp_gateway **ret, char *msg, size_t msg_size) {
        const struct lmp_config *cfg = opt->cfg;
        struct lmp_gateway *gw = calloc(1, sizeof(*gw));
        struct sockaddr_storage ss;
        bool v6 = false;
        int rc, linger = 0;
        int64_t maxmsg = LMP_PROTO_EVENT_MAX;

        if (!gw)
                return -ENOMEM;
        gw->cfg = cfg;
        gw->hup_ep = -1;
        snprintf(gw->endpoint, sizeof(gw->endpoint), "%s", opt->endpoint);
        snprintf(gw->keys_path, sizeof(gw->keys_path), "%s", opt->api_keys ? opt->api_keys : "");
        if ((rc = parse_listen(opt->listen, &ss, &v6, msg, msg_size)) < 0)
                goto fail;
        if ((rc = lmp_http_keys_load(opt->api_keys, cfg->http_key_rate, cfg->http_key_burst, cfg->http_key_requests,
                                     &gw->keys, msg, msg_size)) < 0)
                goto fail;
        if (gw->keys->n == 0 && !cfg->http_loopback_without_key) {
                snprintf(msg, msg_size, "no API keys: give http.api_keys (or --api-keys), or set "
                                        "http.loopback_without_key: true to serve local clients without one");
                rc = -EINVAL;
                goto fail;
        }
        /* One slot per request to the daemon: the generations, and a few
         * for the models, stats and health of /v1/models, /metrics and
         * /health. */
        gw->n_slots = (size_t)cfg->http_max_requests + 16;
        if (!(gw->slots = calloc(gw->n_slots, sizeof(*gw->slots)))) {
                rc = -ENOMEM;
                goto fail;
        }
        if ((gw->hup_ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
                rc = -errno;
                snprintf(msg, msg_size, "epoll_create1: %s", strerror(errno));
                goto fail;
        }
        if (!(gw->zctx = zmq_ctx_new()) || !(gw->zsock = zmq_socket(gw->zctx, ZMQ_DEALER)) ||
            zmq_setsockopt(gw->zsock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_setsockopt(gw->zsock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0 ||
            zmq_socket_monitor(gw->zsock, "inproc://lmpool-http-monitor",
                               ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) < 0 ||
            !(gw->zmon = zmq_socket(gw->zctx, ZMQ_PAIR)) ||
            zmq_setsockopt(gw->zmon, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_connect(gw->zmon, "inproc://lmpool-http-monitor") < 0 ||
            zmq_connect(gw->zsock, opt->endpoint) < 0) {
                rc = -(errno ? errno : EINVAL);
                snprintf(msg, msg_size, "ZeroMQ endpoint %s: %s", opt->endpoint, zmq_strerror(-rc));
                goto fail;
        }
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        if (v6)
                flags |= IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr) ? MHD_USE_DUAL_STACK
                                                                                            : MHD_USE_IPv6;
        gw->mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, gw, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, gw,
                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->http_max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned)cfg->http_idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->http_max_header,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw,
                MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
        if (!gw->mhd) {
                rc = -(errno ? errno : EADDRINUSE);
                snprintf(msg, msg_size, "cannot listen on %s: %s", opt->listen, strerror(-rc));
                goto fail;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        const union MHD_DaemonInfo *pi = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_BIND_PORT);
        if (!di) {
                rc = -EINVAL;
                snprintf(msg, msg_size, "libmicrohttpd gives no epoll descriptor");
                goto fail;
        }
        gw->mhd_fd = di->epoll_fd;
        gw->port = pi ? pi->port : 0;
        *ret = gw;
        return 0;
fail:
        lmp_gateway_free(gw);
        return rc;
}

uint16_t lmp_gateway_port(const struct lmp_gateway *gw) {
        return gw->port;
}

/* SIGHUP: the key file again. A key still in it keeps its bucket, its
 * counters and its requests in flight; a request of a key that is gone
 * runs to its end. A file that does not load leaves the keys as they were. */
static void reload_keys(struct lmp_gateway *gw) {
        struct lmp_http_keys *nk = NULL, *ok = gw->keys;
        char msg[512] = "";
        int rc = lmp_http_keys_load(gw->keys_path, gw->cfg->http_key_rate, gw->cfg->http_key_burst,
                                    gw->cfg->http_key_requests, &nk, msg, sizeof(msg));
        if (rc == 0 && nk->n == 0 && !gw->cfg->http_loopback_without_key) {
                snprintf(msg, sizeof(msg), "%.400s: no keys left", gw->keys_path);
                lmp_http_keys_free(nk);
                rc = -EINVAL;
        }
        if (rc < 0) {
                struct lmp_log_field f[] = { LMP_FSTR("ERROR", msg) };
                lmp_log_event(LMP_PRI_ERR, "keys_reload_failed", f, "API keys not reloaded, the old ones stay: %s",
                              msg);
                return;
        }
        /* where each old entry went (-2: revoked) */
        int *map = calloc(ok->n + 1, sizeof(*map));
        if (!map) {
                lmp_http_keys_free(nk);
                return;
        }
        for (size_t i = 0; i <= ok->n; i++) {
                map[i] = -2;
                if (i == ok->n) {
                        map[i] = lmp_http_keys_loopback(nk);
                } else {
                        int j = lmp_http_keys_find(nk, ok->v[i].key, ok->v[i].key_len);
                        if (j >= 0)
                                map[i] = j;
                }
                if (map[i] >= 0) {
                        struct lmp_http_key *to = &nk->v[map[i]], *from = &ok->v[i];
                        to->tokens = from->tokens;
                        to->last_s = from->last_s;
                        to->in_flight = from->in_flight;
                        to->requests = from->requests;
                        to->rate_limited = from->rate_limited;
                        to->concurrency_limited = from->concurrency_limited;
                }
        }
        for (struct hreq *r = gw->live; r; r = r->next)
                if (r->key >= 0)
                        r->key = map[r->key];
        free(map);
        gw->keys = nk;
        struct lmp_log_field f[] = { LMP_FU64("KEYS", nk->n), LMP_FU64("KEYS_BEFORE", ok->n) };
        lmp_log_event(LMP_PRI_NOTICE, "keys_reloaded", f, "API keys reloaded: %zu (were %zu)", nk->n, ok->n);
        lmp_http_keys_free(ok);
}

static void run_once(struct lmp_gateway *gw, long max_wait_ms, int sigfd, bool *ret_signal) {
        MHD_UNSIGNED_LONG_LONG mto = 0;
        long wait = max_wait_ms;
        if (MHD_get_timeout(gw->mhd, &mto) == MHD_YES && (long long)mto < wait)
                wait = (long)mto;
        zmq_pollitem_t items[5] = {
                { .socket = gw->zsock, .events = ZMQ_POLLIN },
                { .fd = gw->mhd_fd, .events = ZMQ_POLLIN },
                { .fd = gw->hup_ep, .events = ZMQ_POLLIN },
                { .socket = gw->zmon, .events = ZMQ_POLLIN },
                { .fd = sigfd, .events = ZMQ_POLLIN },
        };
        int n = zmq_poll(items, sigfd >= 0 ? 5 : 4, wait);
        if (n > 0 && sigfd >= 0 && (items[4].revents & ZMQ_POLLIN)) {
                struct signalfd_siginfo si;
                while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
                        if (si.ssi_signo == SIGHUP)
                                reload_keys(gw);
                        else
                                *ret_signal = true;
                }
        }
        MHD_run(gw->mhd);
        drain_daemon(gw);
        check_monitor(gw);
        check_hangups(gw);
        check_deadlines(gw);
        MHD_run(gw->mhd); /* the connections resumed above */
}

int lmp_gateway_run(struct lmp_gateway *gw, int sigfd) {
        bool sig = false;
        while (!sig)
                run_once(gw, 250, sigfd, &sig);
        /* Stop: new requests get 503, those in flight are cancelled in the
         * pool and their clients told so; then MHD stops (which it must
         * not do with suspended connections). */
        gw->stopping = true;
        MHD_quiesce_daemon(gw->mhd);
        for (size_t i = 0; i < gw->n_slots; i++) {
                struct hreq *r = gw->slots[i].r;
                if (!r)
                        continue;
                send_cancel(r);
                release_slot(r);
                if (is_generation(r->route))
                        gen_error(r, LMP_PROTO_INTERNAL, "the gateway is stopping");
                else
                        r->finished = true;
                resume(r);
        }
        for (int i = 0; i < 20; i++)
                run_once(gw, 50, -1, &sig);
        return 0;
}

void lmp_gateway_free(struct lmp_gateway *gw) {
        if (!gw)
                return;
        if (gw->mhd) {
                /* any connection still suspended must be resumed first */
                for (size_t i = 0; i < gw->n_slots; i++)
                        if (gw->slots[i].r)
                                resume(gw->slots[i].r);
                MHD_stop_daemon(gw->mhd);
        }
        if (gw->zsock) {
                zmq_socket_monitor(gw->zsock, NULL, 0);
                zmq_close(gw->zsock);
        }
        if (gw->zmon)
                zmq_close(gw->zmon);
        if (gw->zctx)
                zmq_ctx_term(gw->zctx);
        if (gw->hup_ep >= 0)
                close(gw->hup_ep);
        lmp_http_keys_free(gw->keys);
        lmp_proto_buf_free(&gw->zbuf);
        free(gw->slots);
        free(gw);
}

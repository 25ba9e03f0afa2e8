/* `lmpool bench --server`: a chat-bot load against a running server.
 *
 * U users talk at once, each for M turns, each waiting for its answer
 * before it asks again (what people in a chat do). A turn is a 12-word
 * question; the request carries the user's last H messages (questions and
 * the answers the server gave) and the new question, as chat messages,
 * streamed, with N tokens generated whatever the model says
 * (ignore_eos). The same load goes to lmpoold over ZeroMQ (liblmpool, one
 * connection per user, a session name per user) or to any OpenAI-style
 * HTTP server (`--http URL`: POST URL/v1/chat/completions with
 * "stream": true, as llama-server and lmpool-http take it), so one
 * command measures both.
 *
 * It prints answers/s, generated tokens/s, latency and time to first
 * token percentiles, the median rate of an answer's stream after its first
 * token (what a reader sees; the turn's prompt is in the first token), the share of prompt tokens the server had cached,
 * and the largest PSS of the server's processes seen during the run
 * (the process --pid names and its descendants; for lmpoold without
 * --pid, the supervisor found from its workers' pids). */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <dirent.h>

#include "client/cli.h"
#include "client/commands.h"
#include "common/args.h"
#include "common/clock.h"
#include "common/grow.h"

#define MAX_USERS 256
#define MAX_MESSAGES 10000
#define MAX_HISTORY 256
#define MAX_NGEN 8192
#define QUESTION_WORDS 12
#define PSS_INTERVAL_MS 1000   /* between samples of the server's memory */

struct srv_opts {
        const char *endpoint;           /* ZeroMQ; NULL: the default */
        const char *http;               /* base URL, or NULL */
        const char *model;
        const char *api_key;            /* --api-key, else $OPENAI_API_KEY; HTTP only */
        struct cli_curve curve;
        int users, messages, n_gen, history, timeout_ms, pid;
        double temperature;
        bool session, json;
};

struct turn {
        double latency_ms, ttft_ms;
        long long prompt_tokens, generated, cached;
        bool ok;
};

struct user {
        const struct srv_opts *o;
        int idx;
        pthread_t thread;
        bool joined;
        struct turn *turns;
        int n_turns;
        char *history[MAX_HISTORY];     /* oldest first: question, answer, question, ... */
        int n_history;
        char error[512];
        /* the current turn */
        double t0, t_first;
        size_t n_chunks;
        char *answer;
        size_t answer_len, answer_cap;
};

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool bench --server --model M [-u USERS] [-m MESSAGES] [-n N] [--history H]\n"
                   "                    [--temp T] [--no-session] [--endpoint E | --http URL [--api-key K]]\n"
                   "                    [--pid PID] [--timeout-ms MS] [--json]\n"
                   "A chat-bot load: USERS (4) people talk at once, MESSAGES (10) turns each, each\n"
                   "waiting for its answer; a turn sends the last H (12) messages of that user's\n"
                   "conversation and a new 12-word question, and N (100) tokens come back, streamed,\n"
                   "at temperature T (0.8), whatever the model says (ignore_eos).\n"
                   "To lmpoold over ZeroMQ (--endpoint, else the default; each user names its\n"
                   "conversation with a session unless --no-session), or to an OpenAI-style HTTP\n"
                   "server (--http http://HOST:PORT: llama-server, lmpool-http).\n"
                   "Prints answers/s, generated tokens/s, latency and time-to-first-token\n"
                   "percentiles, the median stream rate of an answer after its first token,\n"
                   "cached prompt tokens, and the largest PSS of the server's processes\n"
                   "during the run: PID and its descendants (for lmpoold, found from its workers\n"
                   "when --pid is not given).\n");
}

static int parse_args(int argc, char **argv, struct srv_opts *o) {
        bool server = false, no_session = false;
        *o = (struct srv_opts){ .users = 4, .messages = 10, .n_gen = 100, .history = 12, .temperature = 0.8,
                                .timeout_ms = 300000, .session = true };
        const struct lmp_opt opts[] = {
                { "server", 0, LMP_OPT_FLAG, &server }, /* how we got here */
                { "model", 0, LMP_OPT_STRING, &o->model },
                { "users", 'u', LMP_OPT_INT, &o->users, 1, MAX_USERS },
                { "messages", 'm', LMP_OPT_INT, &o->messages, 1, MAX_MESSAGES },
                { "n-gen", 'n', LMP_OPT_INT, &o->n_gen, 1, MAX_NGEN },
                { "history", 0, LMP_OPT_INT, &o->history, 0, MAX_HISTORY },
                { "temp", 0, LMP_OPT_DOUBLE, &o->temperature, 0, 100 },
                { "no-session", 0, LMP_OPT_FLAG, &no_session },
                { "endpoint", 0, LMP_OPT_STRING, &o->endpoint },
                { "http", 0, LMP_OPT_STRING, &o->http },
                { "api-key", 0, LMP_OPT_STRING, &o->api_key },
                { "pid", 0, LMP_OPT_INT, &o->pid, 1, 1 << 30 },
                { "timeout-ms", 0, LMP_OPT_INT, &o->timeout_ms, 1, 3600000 },
                { "json", 0, LMP_OPT_FLAG, &o->json },
                { "server-key", 0, LMP_OPT_STRING, &o->curve.server_key },
                { "key", 0, LMP_OPT_STRING, &o->curve.key },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpool bench", argc, argv, opts, usage);
        if (parsed != LMP_ARGS_GO)
                return parsed == 0 ? -1 : parsed; /* -1: --help */
        o->session = !no_session;
        if (optind < argc) {
                lmp_args_unexpected(&a, argv[optind]);
                fprintf(stderr, "lmpool bench: with --server, the model is --model NAME\n");
                return LMP_EXIT_USAGE;
        }
        if (!o->model) {
                fprintf(stderr, "lmpool bench: --server needs --model NAME (the server's name for the model)\n");
                return LMP_EXIT_USAGE;
        }
        if (o->http && o->endpoint) {
                fprintf(stderr, "lmpool bench: --http and --endpoint name two servers: give one\n");
                return LMP_EXIT_USAGE;
        }
        if (o->http && strncmp(o->http, "http://", 7) != 0) {
                fprintf(stderr, "lmpool bench: --http takes http://HOST:PORT[/PREFIX], not '%s'\n", o->http);
                return LMP_EXIT_USAGE;
        }
        if (!o->api_key)
                o->api_key = getenv("OPENAI_API_KEY");
        return 0;
}

/* Questions: 12 words drawn from a fixed list with a per-user generator,
 * so that every run asks the same things. */
static const char *const words[] = {
        "when",    "does",    "the",     "library", "open",     "on",      "sunday",  "and",     "how",
        "many",    "books",   "can",     "I",       "borrow",   "for",     "a",       "week",    "what",
        "is",      "best",    "way",     "to",      "learn",    "about",   "history", "of",      "this",
        "city",    "near",    "river",   "station", "museum",   "ticket",  "price",   "child",   "student",
        "evening", "course",  "language", "garden", "bicycle",  "parking", "weather", "tomorrow", "recipe",
        "bread",   "coffee",  "train",   "delay",   "exam",     "holiday", "invoice", "account", "password",
        "reset",   "printer", "network", "slow",    "why",      "should",  "we",      "choose",  "plan",
};

static uint64_t splitmix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static char *question(int user, int turn) {
        uint64_t s = ((uint64_t)user << 32) ^ (uint64_t)turn ^ 0x6c6d706f6f6cull;
        size_t cap = QUESTION_WORDS * 12 + 2, n = 0;
        char *q = malloc(cap);
        if (!q)
                return NULL;
        for (int i = 0; i < QUESTION_WORDS; i++) {
                const char *w = words[splitmix(&s) % (sizeof(words) / sizeof(words[0]))];
                n += (size_t)snprintf(q + n, cap - n, "%s%s", i ? " " : "", w);
        }
        if (q[0] >= 'a' && q[0] <= 'z')
                q[0] = (char)(q[0] - 'a' + 'A');
        snprintf(q + n, cap - n, "?");
        return q;
}

static void history_push(struct user *u, char *msg) {
        if (u->n_history == MAX_HISTORY) {
                free(u->history[0]);
                memmove(u->history, u->history + 1, (MAX_HISTORY - 1) * sizeof(u->history[0]));
                u->n_history--;
        }
        u->history[u->n_history++] = msg;
}

static int answer_append(struct user *u, const char *text, size_t len) {
        if (lmp_grow(&u->answer, &u->answer_cap, u->answer_len + len + 1, 1, 1024) < 0)
                return -ENOMEM;
        memcpy(u->answer + u->answer_len, text, len);
        u->answer_len += len;
        u->answer[u->answer_len] = '\0';
        return 0;
}

static void first_chunk(struct user *u) {
        if (u->n_chunks++ == 0)
                u->t_first = lmp_clock_ms();
}

/* ---- over ZeroMQ ---- */

static int zmq_on_token(void *userdata, const char *text, size_t len, const int32_t *ids, size_t n_ids) {
        struct user *u = userdata;
        (void)ids;
        (void)n_ids;
        first_chunk(u);
        return answer_append(u, text, len) < 0;
}

static int zmq_turn(struct user *u, struct lmp_client *client, const struct lmp_client_message *msgs, size_t n,
                    struct turn *t) {
        const struct srv_opts *o = u->o;
        struct lmp_client_params p;
        struct lmp_client_result res;
        char session[64];
        lmp_client_params_init(&p);
        p.model = o->model;
        p.max_tokens = o->n_gen;
        p.temperature = o->temperature;
        p.ignore_eos = true;
        p.stream = true;
        p.timeout_ms = o->timeout_ms;
        if (o->session) {
                snprintf(session, sizeof(session), "bench-%d-%d", (int)getpid(), u->idx);
                p.session = session;
        }
        int rc = lmp_client_chat(client, &p, msgs, n, zmq_on_token, u, &res);
        if (rc < 0) {
                snprintf(u->error, sizeof(u->error), "%s: %s",
                         rc == -EPROTO ? lmp_client_code_name(res.code) : strerror(-rc),
                         rc == -EPROTO ? res.message : "");
                lmp_client_result_clear(&res);
                return -1;
        }
        t->prompt_tokens = res.prompt_tokens;
        t->generated = res.generated_tokens;
        t->cached = res.cached_tokens;
        lmp_client_result_clear(&res);
        return 0;
}

/* ---- over HTTP ---- */

struct url {
        char host[256], port[16], prefix[512];
};

static int parse_url(const char *s, struct url *u) {
        const char *h = s + 7, *slash = strchr(h, '/'), *end = slash ? slash : h + strlen(h);
        const char *colon = memchr(h, ':', (size_t)(end - h));
        size_t hl = (size_t)((colon ? colon : end) - h);
        if (hl == 0 || hl >= sizeof(u->host))
                return -1;
        memcpy(u->host, h, hl);
        u->host[hl] = '\0';
        if (colon) {
                size_t pl = (size_t)(end - colon - 1);
                if (pl == 0 || pl >= sizeof(u->port))
                        return -1;
                memcpy(u->port, colon + 1, pl);
                u->port[pl] = '\0';
        } else
                snprintf(u->port, sizeof(u->port), "80");
        snprintf(u->prefix, sizeof(u->prefix), "%s", slash ? slash : "");
        size_t pl = strlen(u->prefix);
        if (pl && u->prefix[pl - 1] == '/')
                u->prefix[pl - 1] = '\0';
        return 0;
}

static int http_connect(const struct url *url, int timeout_ms, char *err, size_t errlen) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
        int rc = getaddrinfo(url->host, url->port, &hints, &res), fd = -1;
        if (rc != 0) {
                snprintf(err, errlen, "%s:%s: %s", url->host, url->port, gai_strerror(rc));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0)
                        continue;
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                        break;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
                snprintf(err, errlen, "cannot connect to %s:%s: %s", url->host, url->port, strerror(errno));
                return -1;
        }
        struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        return fd;
}

/* The response body, de-chunked, is fed line by line to the SSE reader. */
struct http_rd {
        struct user *u;
        struct turn *t;
        int status;
        bool chunked, headers_done, done;
        long long chunk_left;           /* -1: reading a chunk-size line */
        char line[1 << 16];             /* the body's current line */
        size_t line_len;
        char hline[4096];               /* the header's or chunk-size's current line */
        size_t hline_len;
        char body[1024];                /* the start of a non-200 body, for the message */
        size_t body_len;
};

static void sse_line(struct http_rd *r) {
        r->line[r->line_len] = '\0';
        if (r->status != 200) {
                size_t n = r->line_len < sizeof(r->body) - 1 - r->body_len ? r->line_len
                                                                         : sizeof(r->body) - 1 - r->body_len;
                memcpy(r->body + r->body_len, r->line, n);
                r->body_len += n;
                r->body[r->body_len] = '\0';
                return;
        }
        if (strncmp(r->line, "data:", 5) != 0)
                return;
        const char *data = r->line + 5;
        while (*data == ' ')
                data++;
        if (strcmp(data, "[DONE]") == 0) {
                r->done = true;
                return;
        }
        cJSON *doc = cJSON_Parse(data);
        if (!doc)
                return;
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(doc, "choices");
        const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
        const cJSON *delta = c0 ? cJSON_GetObjectItemCaseSensitive(c0, "delta") : NULL;
        const cJSON *content = delta ? cJSON_GetObjectItemCaseSensitive(delta, "content") : NULL;
        if (cJSON_IsString(content) && content->valuestring[0]) {
                first_chunk(r->u);
                answer_append(r->u, content->valuestring, strlen(content->valuestring));
        }
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
        if (cJSON_IsObject(usage)) {
                const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
                const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
                const cJSON *det = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
                const cJSON *cached = det ? cJSON_GetObjectItemCaseSensitive(det, "cached_tokens") : NULL;
                if (cJSON_IsNumber(pt))
                        r->t->prompt_tokens = (long long)pt->valuedouble;
                if (cJSON_IsNumber(ct))
                        r->t->generated = (long long)ct->valuedouble;
                if (cJSON_IsNumber(cached))
                        r->t->cached = (long long)cached->valuedouble;
        }
        /* llama-server's own figures, when usage has no cached count. */
        const cJSON *timings = cJSON_GetObjectItemCaseSensitive(doc, "timings");
        const cJSON *cache_n = timings ? cJSON_GetObjectItemCaseSensitive(timings, "cache_n") : NULL;
        if (cJSON_IsNumber(cache_n) && r->t->cached < 0)
                r->t->cached = (long long)cache_n->valuedouble;
        cJSON_Delete(doc);
}

static void body_bytes(struct http_rd *r, const char *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\n') {
                        if (r->line_len && r->line[r->line_len - 1] == '\r')
                                r->line_len--;
                        sse_line(r);
                        r->line_len = 0;
                } else if (r->line_len < sizeof(r->line) - 1)
                        r->line[r->line_len++] = p[i];
        }
}

/* Returns -1 on a malformed response. */
static int http_bytes(struct http_rd *r, const char *p, size_t n) {
        size_t i = 0;
        while (i < n) {
                if (!r->headers_done || (r->chunked && r->chunk_left < 0)) {
                        char ch = p[i++];
                        if (ch != '\n') {
                                if (r->hline_len < sizeof(r->hline) - 1)
                                        r->hline[r->hline_len++] = ch;
                                continue;
                        }
                        if (r->hline_len && r->hline[r->hline_len - 1] == '\r')
                                r->hline_len--;
                        r->hline[r->hline_len] = '\0';
                        size_t len = r->hline_len;
                        r->hline_len = 0;
                        if (!r->headers_done) {
                                if (r->status == 0) {
                                        if (sscanf(r->hline, "HTTP/%*d.%*d %d", &r->status) != 1)
                                                return -1;
                                } else if (len == 0) {
                                        r->headers_done = true;
                                } else if (strncasecmp(r->hline, "transfer-encoding:", 18) == 0 &&
                                           strstr(r->hline + 18, "chunked")) {
                                        r->chunked = true;
                                }
                                continue;
                        }
                        if (len == 0)
                                continue; /* the CRLF after a chunk's data */
                        char *end;
                        long long size = strtoll(r->hline, &end, 16);
                        if (end == r->hline || size < 0)
                                return -1;
                        if (size == 0) {
                                r->done = true;
                                return 0;
                        }
                        r->chunk_left = size;
                        continue;
                }
                size_t take = n - i;
                if (r->chunked && (long long)take > r->chunk_left)
                        take = (size_t)r->chunk_left;
                body_bytes(r, p + i, take);
                i += take;
                if (r->chunked && (r->chunk_left -= (long long)take) == 0)
                        r->chunk_left = -1;
        }
        return 0;
}

static int json_add_str(cJSON *o, const char *k, const char *v) {
        return cJSON_AddStringToObject(o, k, v) ? 0 : -1;
}

static int http_turn(struct user *u, const struct url *url, const struct lmp_client_message *msgs, size_t n,
                     struct turn *t) {
        const struct srv_opts *o = u->o;
        cJSON *req = cJSON_CreateObject(), *arr = req ? cJSON_AddArrayToObject(req, "messages") : NULL;
        int rc = req && arr && json_add_str(req, "model", o->model) == 0 ? 0 : -1;
        for (size_t i = 0; i < n && rc == 0; i++) {
                cJSON *m = cJSON_CreateObject();
                if (!m || !cJSON_AddItemToArray(arr, m) || json_add_str(m, "role", msgs[i].role) < 0 ||
                    json_add_str(m, "content", msgs[i].content) < 0)
                        rc = -1;
        }
        cJSON *so = NULL;
        if (rc == 0 && (!cJSON_AddNumberToObject(req, "max_tokens", o->n_gen) ||
                        !cJSON_AddNumberToObject(req, "temperature", o->temperature) ||
                        !cJSON_AddTrueToObject(req, "stream") || !cJSON_AddTrueToObject(req, "ignore_eos") ||
                        !(so = cJSON_AddObjectToObject(req, "stream_options")) ||
                        !cJSON_AddTrueToObject(so, "include_usage")))
                rc = -1;
        char *body = rc == 0 ? cJSON_PrintUnformatted(req) : NULL;
        cJSON_Delete(req);
        if (!body) {
                snprintf(u->error, sizeof(u->error), "out of memory");
                return -1;
        }
        size_t blen = strlen(body), hcap = 1024 + strlen(url->prefix) + (o->api_key ? strlen(o->api_key) : 0);
        char *head = malloc(hcap);
        if (!head) {
                free(body);
                snprintf(u->error, sizeof(u->error), "out of memory");
                return -1;
        }
        int hl = snprintf(head, hcap,
                          "POST %s/v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                          "Accept: text/event-stream\r\nConnection: close\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                          url->prefix, url->host, url->port, o->api_key ? "Authorization: Bearer " : "",
                          o->api_key ? o->api_key : "", o->api_key ? "\r\n" : "", blen);
        int fd = http_connect(url, o->timeout_ms, u->error, sizeof(u->error));
        if (fd < 0) {
                free(head);
                free(body);
                return -1;
        }
        struct http_rd *r = calloc(1, sizeof(*r));
        rc = r ? 0 : -1;
        const char *parts[2] = { head, body };
        size_t lens[2] = { (size_t)hl, blen };
        for (int k = 0; k < 2 && rc == 0; k++)
                for (size_t off = 0; off < lens[k] && rc == 0;) {
                        ssize_t w = send(fd, parts[k] + off, lens[k] - off, MSG_NOSIGNAL);
                        if (w <= 0) {
                                snprintf(u->error, sizeof(u->error), "sending the request: %s", strerror(errno));
                                rc = -1;
                        } else
                                off += (size_t)w;
                }
        free(head);
        free(body);
        if (r) {
                r->u = u;
                r->t = t;
                r->chunk_left = -1;
        }
        char buf[16384];
        while (rc == 0 && !r->done) {
                ssize_t got = recv(fd, buf, sizeof(buf), 0);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        snprintf(u->error, sizeof(u->error), "reading the answer: %s",
                                 errno == EAGAIN ? "timed out" : strerror(errno));
                        rc = -1;
                } else if (got == 0) {
                        if (r->line_len)
                                body_bytes(r, "\n", 1);
                        break;
                } else if (http_bytes(r, buf, (size_t)got) < 0) {
                        snprintf(u->error, sizeof(u->error), "a malformed HTTP answer");
                        rc = -1;
                }
        }
        close(fd);
        if (rc == 0 && r->status != 200) {
                snprintf(u->error, sizeof(u->error), "HTTP %d: %.400s", r->status, r->body);
                rc = -1;
        }
        if (rc == 0 && t->generated < 0)
                t->generated = (long long)u->n_chunks; /* no usage: one token per chunk */
        free(r);
        return rc;
}

/* ---- the users ---- */

static void *user_main(void *arg) {
        struct user *u = arg;
        const struct srv_opts *o = u->o;
        struct lmp_client *client = NULL;
        struct url url;
        struct lmp_client_message *msgs = calloc((size_t)o->history + 1, sizeof(*msgs));
        if (!msgs) {
                snprintf(u->error, sizeof(u->error), "out of memory");
                return NULL;
        }
        if (o->http) {
                if (parse_url(o->http, &url) < 0) {
                        snprintf(u->error, sizeof(u->error), "cannot read the URL '%s'", o->http);
                        free(msgs);
                        return NULL;
                }
        } else {
                int rc = o->curve.server_key || o->curve.key
                                 ? cli_connect("bench", o->endpoint, &o->curve, o->timeout_ms, &client)
                                 : (lmp_client_new(o->endpoint, &client) < 0 ? 1 : 0);
                if (rc != 0) {
                        snprintf(u->error, sizeof(u->error), "cannot connect to the daemon");
                        free(msgs);
                        return NULL;
                }
                lmp_client_set_timeout(client, o->timeout_ms + 5000);
        }
        for (int k = 0; k < o->messages; k++) {
                char *q = question(u->idx, k);
                if (!q) {
                        snprintf(u->error, sizeof(u->error), "out of memory");
                        break;
                }
                history_push(u, q);
                int first = u->n_history - 1 - o->history;
                if (first < 0)
                        first = 0;
                size_t n = 0;
                for (int i = first; i < u->n_history; i++, n++) {
                        /* Questions at even places counted from the end. */
                        msgs[n].role = (u->n_history - 1 - i) % 2 == 0 ? "user" : "assistant";
                        msgs[n].content = u->history[i];
                }
                struct turn *t = &u->turns[k];
                *t = (struct turn){ .prompt_tokens = -1, .generated = -1, .cached = -1 };
                u->answer_len = 0;
                u->n_chunks = 0;
                if (u->answer)
                        u->answer[0] = '\0';
                u->t0 = lmp_clock_ms();
                int rc = o->http ? http_turn(u, &url, msgs, n, t) : zmq_turn(u, client, msgs, n, t);
                double t1 = lmp_clock_ms();
                if (rc < 0)
                        break;
                t->ok = true;
                t->latency_ms = t1 - u->t0;
                t->ttft_ms = (u->n_chunks ? u->t_first : t1) - u->t0;
                u->n_turns = k + 1;
                char *a = strdup(u->answer ? u->answer : "");
                if (!a) {
                        snprintf(u->error, sizeof(u->error), "out of memory");
                        break;
                }
                history_push(u, a);
        }
        lmp_client_free(client);
        free(msgs);
        return NULL;
}

/* ---- the server's memory ---- */

static long long read_pss_kib(int pid) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
        FILE *f = fopen(path, "re");
        long long kib = -1;
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pss: %lld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static int parent_of(int pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        int ppid;
        return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? ppid : -1;
}

/* PSS of root and every descendant, in KiB; *ret_n processes. */
static long long tree_pss_kib(int root, int *ret_n) {
        DIR *dir = opendir("/proc");
        int pids[4096], parents[4096], n = 0;
        struct dirent *de;
        if (!dir)
                return -1;
        while ((de = readdir(dir)) && n < 4096) {
                char *end;
                long v = strtol(de->d_name, &end, 10);
                if (*end || v <= 0)
                        continue;
                pids[n] = (int)v;
                parents[n++] = parent_of((int)v);
        }
        closedir(dir);
        /* Mark descendants: repeat until nothing changes (trees are shallow). */
        bool in[4096] = { false };
        bool changed = true;
        for (int i = 0; i < n; i++)
                in[i] = pids[i] == root;
        while (changed) {
                changed = false;
                for (int i = 0; i < n; i++) {
                        if (in[i])
                                continue;
                        for (int j = 0; j < n; j++)
                                if (in[j] && parents[i] == pids[j]) {
                                        in[i] = changed = true;
                                        break;
                                }
                }
        }
        long long total = 0;
        int count = 0;
        for (int i = 0; i < n; i++)
                if (in[i]) {
                        long long k = read_pss_kib(pids[i]);
                        if (k >= 0) {
                                total += k;
                                count++;
                        }
                }
        *ret_n = count;
        return count ? total : -1;
}

/* lmpoold's pid: the parent of a worker named in its stats. */
static int daemon_pid(const struct srv_opts *o) {
        struct lmp_client *client = NULL;
        char *json = NULL;
        int pid = -1;
        if (lmp_client_new(o->endpoint, &client) < 0)
                return -1;
        lmp_client_set_timeout(client, 5000);
        if (lmp_client_stats(client, &json, NULL) == 0) {
                cJSON *doc = cJSON_Parse(json);
                const cJSON *ws = doc ? cJSON_GetObjectItemCaseSensitive(doc, "workers") : NULL, *w;
                cJSON_ArrayForEach(w, ws) {
                        const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "pid");
                        if (cJSON_IsNumber(p) && p->valuedouble > 0) {
                                pid = parent_of((int)p->valuedouble);
                                break;
                        }
                }
                cJSON_Delete(doc);
        }
        free(json);
        lmp_client_free(client);
        return pid;
}

/* ---- figures ---- */

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Nearest rank. */
static double pct(const double *sorted, size_t n, double p) {
        if (n == 0)
                return NAN;
        size_t k = (size_t)ceil(p / 100.0 * (double)n);
        return sorted[k ? k - 1 : 0];
}

int lmp_cmd_bench_server(int argc, char **argv) {
        struct srv_opts o;
        int rc = parse_args(argc, argv, &o);
        if (rc != 0)
                return rc < 0 ? 0 : rc;
        struct user *users = calloc((size_t)o.users, sizeof(*users));
        if (!users) {
                fprintf(stderr, "lmpool bench: out of memory\n");
                return 1;
        }
        for (int i = 0; i < o.users; i++) {
                users[i].o = &o;
                users[i].idx = i;
                if (!(users[i].turns = calloc((size_t)o.messages, sizeof(struct turn)))) {
                        fprintf(stderr, "lmpool bench: out of memory\n");
                        return 1;
                }
        }
        int root = o.pid ? o.pid : (o.http ? -1 : daemon_pid(&o));
        double t0 = lmp_clock_ms();
        int started = 0;
        for (; started < o.users; started++)
                if ((rc = pthread_create(&users[started].thread, NULL, user_main, &users[started])) != 0) {
                        fprintf(stderr, "lmpool bench: cannot start user %d: %s\n", started, strerror(rc));
                        break;
                }
        /* Sample the server's memory while the users talk, once a second:
         * each sample reads smaps_rollup, a walk of the server's page tables
         * that takes milliseconds of a core the server computes on. Whether
         * the users are done is looked at more often, so that the wall time
         * ends with the last answer. */
        long long pss_max = -1;
        int pss_procs = 0;
        double pss_last = 0, wall = 0;
        for (;;) {
                int running = 0;
                for (int i = 0; i < started; i++)
                        if (!users[i].joined) {
                                if (pthread_tryjoin_np(users[i].thread, NULL) == EBUSY)
                                        running++;
                                else
                                        users[i].joined = true;
                        }
                if (!running)
                        wall = lmp_clock_ms() - t0;     /* before the last sample */
                if (root > 0 && (!running || pss_last == 0 || lmp_clock_ms() - pss_last >= PSS_INTERVAL_MS)) {
                        int np;
                        pss_last = lmp_clock_ms();
                        long long k = tree_pss_kib(root, &np);
                        if (k > pss_max) {
                                pss_max = k;
                                pss_procs = np;
                        }
                }
                if (!running)
                        break;
                usleep(50000);
        }

        size_t cap = (size_t)o.users * (size_t)o.messages, n = 0;
        double *lat = malloc(cap * sizeof(double)), *ttft = malloc(cap * sizeof(double));
        double *stream = malloc(cap * sizeof(double));  /* tokens/s after the first, per answer */
        size_t n_stream = 0;
        long long gen = 0, prompt = 0, cached = 0;
        bool have_cached = false;
        int failed_users = 0;
        if (!lat || !ttft || !stream) {
                fprintf(stderr, "lmpool bench: out of memory\n");
                return 1;
        }
        for (int i = 0; i < o.users; i++) {
                for (int k = 0; k < users[i].n_turns; k++) {
                        const struct turn *t = &users[i].turns[k];
                        lat[n] = t->latency_ms;
                        ttft[n++] = t->ttft_ms;
                        if (t->generated > 1 && t->latency_ms > t->ttft_ms)
                                stream[n_stream++] = (double)(t->generated - 1) * 1e3 /
                                                     (t->latency_ms - t->ttft_ms);
                        gen += t->generated > 0 ? t->generated : 0;
                        prompt += t->prompt_tokens > 0 ? t->prompt_tokens : 0;
                        if (t->cached >= 0) {
                                cached += t->cached;
                                have_cached = true;
                        }
                }
                if (users[i].error[0]) {
                        failed_users++;
                        fprintf(stderr, "lmpool bench: user %d stopped after %d of %d answers: %s\n", i,
                                users[i].n_turns, o.messages, users[i].error);
                }
        }
        qsort(lat, n, sizeof(double), cmp_double);
        qsort(ttft, n, sizeof(double), cmp_double);
        qsort(stream, n_stream, sizeof(double), cmp_double);
        double secs = wall / 1000.0;
        const char *target = o.http ? o.http : "lmpoold";
        char ep[4096];
        if (!o.http)
                target = cli_endpoint_name(o.endpoint, ep, (int)sizeof(ep));
        char stream_p50[32] = "null";   /* no answer of two tokens or more */
        if (n_stream)
                snprintf(stream_p50, sizeof(stream_p50), "%.3f", pct(stream, n_stream, 50));
        if (o.json) {
                printf("{\"server\":\"%s\",\"users\":%d,\"messages\":%d,\"history\":%d,\"n_gen\":%d,"
                       "\"temperature\":%g,\"answers\":%zu,\"seconds\":%.3f,\"answers_per_s\":%.4f,"
                       "\"tokens_per_s\":%.3f,\"generated\":%lld,\"prompt_tokens\":%lld,\"cached_tokens\":%lld,"
                       "\"latency_ms\":{\"p50\":%.1f,\"p95\":%.1f,\"max\":%.1f},"
                       "\"ttft_ms\":{\"p50\":%.1f,\"p95\":%.1f},\"stream_tokens_per_s\":{\"p50\":%s},"
                       "\"pss_bytes\":%lld,\"pss_processes\":%d,\"failed_users\":%d}\n",
                       o.http ? "http" : "zmq", o.users, o.messages, o.history, o.n_gen, o.temperature, n, secs,
                       n / secs, gen / secs, gen, prompt, have_cached ? cached : -1LL, pct(lat, n, 50),
                       pct(lat, n, 95), n ? lat[n - 1] : NAN, pct(ttft, n, 50), pct(ttft, n, 95),
                       stream_p50, pss_max >= 0 ? pss_max * 1024 : -1LL, pss_procs, failed_users);
        } else {
                printf("%d users x %d messages, history %d, %d tokens, temperature %g, %s\n", o.users, o.messages,
                       o.history, o.n_gen, o.temperature, target);
                printf("answers         %zu in %.1f s: %.3f answers/s\n", n, secs, n / secs);
                if (n == 0)
                        goto done;
                printf("generated       %lld tokens: %.1f tokens/s\n", gen, gen / secs);
                printf("latency         p50 %.0f ms, p95 %.0f ms, max %.0f ms\n", pct(lat, n, 50), pct(lat, n, 95),
                       n ? lat[n - 1] : NAN);
                printf("first token     p50 %.0f ms, p95 %.0f ms\n", pct(ttft, n, 50), pct(ttft, n, 95));
                if (n_stream)
                        printf("stream          p50 %.1f tokens/s after the first token\n", pct(stream, n_stream, 50));
                if (have_cached)
                        printf("prompt tokens   %lld, of which cached %lld (%.0f%%)\n", prompt, cached,
                               prompt ? 100.0 * (double)cached / (double)prompt : 0.0);
                else
                        printf("prompt tokens   %lld (the server does not report cached tokens)\n", prompt);
                if (pss_max >= 0)
                        printf("server PSS      %.1f MiB at most (pid %d and its descendants: %d processes)\n",
                               pss_max / 1024.0, root, pss_procs);
                else
                        printf("server PSS      not measured (--pid PID names the server's process)\n");
        }
done:
        for (int i = 0; i < o.users; i++) {
                for (int k = 0; k < users[i].n_history; k++)
                        free(users[i].history[k]);
                free(users[i].answer);
                free(users[i].turns);
        }
        free(users);
        free(lat);
        free(ttft);
        free(stream);
        return failed_users ? 1 : 0;
}

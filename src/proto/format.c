/* struct -> JSON text for the wire: requests in canonical form (for the
 * router to forward) and every event the daemon sends. Written by hand
 * into a reusable buffer rather than through a cJSON tree, so that a token
 * event costs one pass over its text and no allocation once the buffer has
 * grown. Strings are escaped for JSON and repaired to valid UTF-8 (U+FFFD
 * for each byte that does not start a valid sequence); numbers that JSON
 * cannot carry (NaN, infinities) are written as 0. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "proto/proto.h"

void lmp_proto_buf_free(struct lmp_proto_buf *b) {
        if (!b)
                return;
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

static int reserve(struct lmp_proto_buf *b, size_t extra) {
        size_t need;
        if (lmp_add_overflow(b->len, extra + 1, &need))
                return -ENOMEM;
        if (need <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
                if (lmp_mul_overflow(cap, (size_t)2, &cap))
                        return -ENOMEM;
        char *p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

static int put(struct lmp_proto_buf *b, const char *s, size_t n) {
        if (reserve(b, n) < 0)
                return -ENOMEM;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int lmp_proto_buf_append(struct lmp_proto_buf *b, const void *s, size_t n) {
        return put(b, s, n);
}

static int puts_(struct lmp_proto_buf *b, const char *s) {
        return put(b, s, strlen(s));
}

static int putf(struct lmp_proto_buf *b, const char *fmt, ...) LMP_PRINTF(2, 3);
static int putf(struct lmp_proto_buf *b, const char *fmt, ...) {
        char tmp[64];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(tmp))
                return -EINVAL;
        return put(b, tmp, (size_t)n);
}

int lmp_proto_append_json_string(struct lmp_proto_buf *b, const char *s, size_t n) {
        size_t worst = lmp_json_escaped_max(n);
        if (worst == 0 || reserve(b, worst) < 0)
                return -ENOMEM;
        b->len += lmp_json_escape(b->data + b->len, s, n, true);
        b->data[b->len] = '\0';
        return 0;
}

static int put_str(struct lmp_proto_buf *b, const char *s) {
        return lmp_proto_append_json_string(b, s ? s : "", s ? strlen(s) : 0);
}

/* The shortest %g form that reads back as the same double. */
static int put_double(struct lmp_proto_buf *b, double v) {
        char tmp[40];
        if (!isfinite(v))
                v = 0;
        snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
                snprintf(tmp, sizeof(tmp), "%.17g", v);
        return puts_(b, tmp);
}

static int put_i64(struct lmp_proto_buf *b, int64_t v) {
        return putf(b, "%" PRId64, v);
}

/* Starts {"v":1,"id":...,"event":"NAME" */
static int begin_event(struct lmp_proto_buf *b, const char *id, const char *event) {
        int rc = puts_(b, "{\"v\":1,\"id\":");
        if (rc == 0)
                rc = id ? put_str(b, id) : puts_(b, "null");
        if (rc == 0)
                rc = puts_(b, ",\"event\":");
        if (rc == 0)
                rc = put_str(b, event);
        return rc;
}

/* Appends ,"key": */
static int key(struct lmp_proto_buf *b, const char *k) {
        int rc = puts_(b, ",\"");
        if (rc == 0)
                rc = puts_(b, k);
        if (rc == 0)
                rc = puts_(b, "\":");
        return rc;
}

#define TRY(expr)                     \
        do {                          \
                int rc_ = (expr);     \
                if (rc_ < 0)          \
                        return rc_;   \
        } while (0)

int lmp_proto_format_token(struct lmp_proto_buf *b, const char *id, const char *text, size_t text_len,
                           const int32_t *ids, size_t n_ids) {
        TRY(begin_event(b, id, "token"));
        TRY(key(b, "text"));
        TRY(lmp_proto_append_json_string(b, text ? text : "", text ? text_len : 0));
        if (ids) {
                TRY(key(b, "ids"));
                TRY(puts_(b, "["));
                for (size_t i = 0; i < n_ids; i++)
                        TRY(putf(b, i ? ",%" PRId32 : "%" PRId32, ids[i]));
                TRY(puts_(b, "]"));
        }
        return puts_(b, "}");
}

int lmp_proto_format_done(struct lmp_proto_buf *b, const char *id, const struct lmp_done *d) {
        const char *fin = lmp_finish_name(d->finish);
        if (!fin)
                return -EINVAL;
        TRY(begin_event(b, id, "done"));
        TRY(key(b, "finish"));
        TRY(put_str(b, fin));
        if (d->text) {
                TRY(key(b, "text"));
                TRY(lmp_proto_append_json_string(b, d->text, d->text_len));
        }
        if (d->tool_calls) {    /* compact JSON, from the worker's extraction */
                TRY(key(b, "tool_calls"));
                TRY(put(b, d->tool_calls, d->tool_calls_len));
        }
        TRY(puts_(b, ",\"usage\":{\"prompt_tokens\":"));
        TRY(put_i64(b, d->usage.prompt_tokens));
        TRY(puts_(b, ",\"generated_tokens\":"));
        TRY(put_i64(b, d->usage.generated_tokens));
        TRY(puts_(b, ",\"cached_tokens\":"));
        TRY(put_i64(b, d->usage.cached_tokens));
        TRY(puts_(b, "},\"timings\":{\"queued_ms\":"));
        TRY(put_double(b, d->timings.queued_ms));
        TRY(puts_(b, ",\"prompt_ms\":"));
        TRY(put_double(b, d->timings.prompt_ms));
        TRY(puts_(b, ",\"ttft_ms\":"));
        TRY(put_double(b, d->timings.ttft_ms));
        TRY(puts_(b, ",\"total_ms\":"));
        TRY(put_double(b, d->timings.total_ms));
        TRY(puts_(b, ",\"tokens_per_s\":"));
        TRY(put_double(b, d->timings.tokens_per_s));
        TRY(puts_(b, "}"));
        TRY(key(b, "worker"));
        TRY(put_str(b, d->worker));
        return puts_(b, "}");
}

/* A float with the 9 significant digits that read back as the same f32. */
static int put_float(struct lmp_proto_buf *b, float v) {
        return putf(b, "%.9g", isfinite(v) ? (double)v : 0.0);
}

int lmp_proto_format_embedding(struct lmp_proto_buf *b, const char *id, const struct lmp_embedding *e) {
        if (e->n == 0 || e->n_embd == 0)
                return -EINVAL;
        TRY(begin_event(b, id, "embedding"));
        TRY(key(b, "embeddings"));
        TRY(puts_(b, "["));
        for (size_t i = 0; i < e->n; i++) {
                const float *v = e->vectors + i * e->n_embd;
                TRY(puts_(b, i ? ",[" : "["));
                for (size_t k = 0; k < e->n_embd; k++) {
                        if (k)
                                TRY(puts_(b, ","));
                        TRY(put_float(b, v[k]));
                }
                TRY(puts_(b, "]"));
        }
        TRY(puts_(b, "]"));
        if (e->ids) {
                TRY(key(b, "ids"));
                TRY(puts_(b, "["));
                for (size_t i = 0; i < e->n; i++) {
                        TRY(puts_(b, i ? ",[" : "["));
                        for (size_t k = e->ids_off[i]; k < e->ids_off[i + 1]; k++)
                                TRY(putf(b, k > e->ids_off[i] ? ",%" PRId32 : "%" PRId32, e->ids[k]));
                        TRY(puts_(b, "]"));
                }
                TRY(puts_(b, "]"));
        }
        TRY(puts_(b, ",\"usage\":{\"prompt_tokens\":"));
        TRY(put_i64(b, e->prompt_tokens));
        TRY(puts_(b, "},\"timings\":{\"queued_ms\":"));
        TRY(put_double(b, e->queued_ms));
        TRY(puts_(b, ",\"total_ms\":"));
        TRY(put_double(b, e->total_ms));
        TRY(puts_(b, "}"));
        TRY(key(b, "worker"));
        TRY(put_str(b, e->worker));
        return puts_(b, "}");
}

int lmp_proto_format_error(struct lmp_proto_buf *b, const char *id, enum lmp_proto_code code, const char *message) {
        const char *name = lmp_proto_code_name(code);
        if (!name || code == LMP_PROTO_OK)
                return -EINVAL;
        TRY(begin_event(b, id, "error"));
        TRY(key(b, "code"));
        TRY(put_str(b, name));
        TRY(key(b, "message"));
        TRY(put_str(b, message));
        return puts_(b, "}");
}

int lmp_proto_format_cancelled(struct lmp_proto_buf *b, const char *id, const char *target, bool found) {
        TRY(begin_event(b, id, "cancelled"));
        TRY(key(b, "target"));
        TRY(put_str(b, target));
        TRY(key(b, "found"));
        TRY(puts_(b, found ? "true" : "false"));
        return puts_(b, "}");
}

int lmp_proto_format_models(struct lmp_proto_buf *b, const char *id, const struct lmp_model_info *m, size_t n) {
        TRY(begin_event(b, id, "models"));
        TRY(key(b, "models"));
        TRY(puts_(b, "["));
        for (size_t i = 0; i < n; i++) {
                TRY(puts_(b, i ? ",{\"name\":" : "{\"name\":"));
                TRY(put_str(b, m[i].name));
                TRY(key(b, "path"));
                TRY(put_str(b, m[i].path));
                TRY(key(b, "arch"));
                TRY(put_str(b, m[i].arch));
                if (m[i].kind) {
                        TRY(key(b, "kind"));
                        TRY(put_str(b, m[i].kind));
                }
                TRY(key(b, "ctx"));
                TRY(put_i64(b, m[i].ctx));
                TRY(key(b, "workers"));
                TRY(put_i64(b, m[i].workers));
                TRY(key(b, "ready"));
                TRY(put_i64(b, m[i].ready));
                TRY(key(b, "slots"));
                TRY(put_i64(b, m[i].slots));
                TRY(key(b, "store_bytes"));
                TRY(put_i64(b, m[i].store_bytes));
                TRY(puts_(b, "}"));
        }
        return puts_(b, "]}");
}

int lmp_proto_format_stats(struct lmp_proto_buf *b, const char *id, const struct lmp_stats *s) {
        TRY(begin_event(b, id, "stats"));
        TRY(key(b, "uptime_s"));
        TRY(put_double(b, s->uptime_s));
        TRY(puts_(b, ",\"queue\":{\"length\":"));
        TRY(put_i64(b, s->queue_length));
        TRY(puts_(b, ",\"limit\":"));
        TRY(put_i64(b, s->queue_limit));
        TRY(puts_(b, "},\"requests\":{\"total\":"));
        TRY(put_i64(b, s->total));
        TRY(puts_(b, ",\"ok\":"));
        TRY(put_i64(b, s->ok));
        TRY(puts_(b, ",\"errors\":"));
        TRY(put_i64(b, s->errors));
        TRY(puts_(b, ",\"busy\":"));
        TRY(put_i64(b, s->busy));
        TRY(puts_(b, ",\"timeouts\":"));
        TRY(put_i64(b, s->timeouts));
        TRY(puts_(b, ",\"worker_lost\":"));
        TRY(put_i64(b, s->worker_lost));
        TRY(puts_(b, ",\"retried\":"));
        TRY(put_i64(b, s->retried));
        TRY(puts_(b, ",\"slow_consumer\":"));
        TRY(put_i64(b, s->slow_consumer));
        TRY(puts_(b, ",\"client_gone\":"));
        TRY(put_i64(b, s->client_gone));
        TRY(puts_(b, ",\"dropped\":"));
        TRY(put_i64(b, s->dropped));
        TRY(puts_(b, "},\"events_dropped\":"));
        TRY(put_i64(b, s->events_dropped));
        TRY(puts_(b, ",\"clients\":{\"connected\":"));
        TRY(put_i64(b, s->clients));
        TRY(puts_(b, ",\"limit\":"));
        TRY(put_i64(b, s->clients_limit));
        TRY(puts_(b, ",\"refused\":"));
        TRY(put_i64(b, s->clients_refused));
        TRY(puts_(b, ",\"overlong_closed\":"));
        TRY(put_i64(b, s->clients_overlong));
        TRY(puts_(b, "},\"affinity\":{\"hits\":"));
        TRY(put_i64(b, s->affinity_hits));
        TRY(puts_(b, ",\"misses\":"));
        TRY(put_i64(b, s->affinity_misses));
        TRY(puts_(b, ",\"new\":"));
        TRY(put_i64(b, s->affinity_new));
        TRY(puts_(b, "},\"cache\":{\"hits\":"));
        TRY(put_i64(b, s->cache_hits));
        TRY(puts_(b, ",\"misses\":"));
        TRY(put_i64(b, s->cache_misses));
        TRY(puts_(b, ",\"entries\":"));
        TRY(put_i64(b, s->cache_entries));
        TRY(puts_(b, ",\"bytes\":"));
        TRY(put_i64(b, s->cache_bytes));
        TRY(puts_(b, "},\"semantic_cache\":{\"hits\":"));
        TRY(put_i64(b, s->semantic_hits));
        TRY(puts_(b, ",\"misses\":"));
        TRY(put_i64(b, s->semantic_misses));
        TRY(puts_(b, ",\"unavailable\":"));
        TRY(put_i64(b, s->semantic_unavailable));
        TRY(puts_(b, ",\"evictions\":"));
        TRY(put_i64(b, s->semantic_evictions));
        TRY(puts_(b, ",\"expirations\":"));
        TRY(put_i64(b, s->semantic_expirations));
        TRY(puts_(b, ",\"entries\":"));
        TRY(put_i64(b, s->semantic_entries));
        TRY(puts_(b, ",\"bytes\":"));
        TRY(put_i64(b, s->semantic_bytes));
        TRY(puts_(b, "},\"refused\":{\"connections\":"));
        TRY(put_i64(b, s->zap_refused));
        TRY(puts_(b, ",\"worker_frames\":"));
        TRY(put_i64(b, s->worker_frames_refused));
        TRY(puts_(b, "},\"workers\":["));
        for (size_t i = 0; i < s->n_workers; i++) {
                const struct lmp_worker_info *w = &s->workers[i];
                TRY(puts_(b, i ? ",{\"name\":" : "{\"name\":"));
                TRY(put_str(b, w->name));
                TRY(key(b, "model"));
                TRY(put_str(b, w->model));
                TRY(key(b, "pid"));
                TRY(put_i64(b, w->pid));
                TRY(key(b, "state"));
                TRY(put_str(b, w->state));
                TRY(key(b, "slots"));
                TRY(put_i64(b, w->slots));
                TRY(key(b, "active"));
                TRY(put_i64(b, w->active));
                TRY(key(b, "rss_bytes"));
                TRY(put_i64(b, w->rss_bytes));
                TRY(key(b, "pss_bytes"));
                TRY(put_i64(b, w->pss_bytes));
                TRY(key(b, "served"));
                TRY(put_i64(b, w->served));
                TRY(key(b, "restarts"));
                TRY(put_i64(b, w->restarts));
                TRY(puts_(b, "}"));
        }
        return puts_(b, "]}");
}

int lmp_proto_format_health(struct lmp_proto_buf *b, const char *id, const char *status,
                            const struct lmp_health_model *m, size_t n) {
        TRY(begin_event(b, id, "health"));
        TRY(key(b, "status"));
        TRY(put_str(b, status));
        TRY(key(b, "models"));
        TRY(puts_(b, "{"));
        for (size_t i = 0; i < n; i++) {
                if (i)
                        TRY(puts_(b, ","));
                TRY(put_str(b, m[i].name));
                TRY(puts_(b, ":{\"ready\":"));
                TRY(put_i64(b, m[i].ready));
                TRY(puts_(b, ",\"workers\":"));
                TRY(put_i64(b, m[i].workers));
                if (m[i].failed) {
                        TRY(key(b, "failed"));
                        TRY(put_str(b, m[i].failed));
                }
                TRY(puts_(b, "}"));
        }
        return puts_(b, "}}");
}

/* The rest of an embed request after its type. */
static int format_embed_request(struct lmp_proto_buf *b, const struct lmp_request *r) {
        TRY(key(b, "model"));
        TRY(put_str(b, r->model));
        TRY(key(b, "input"));
        if (r->input_is_array)
                TRY(puts_(b, "["));
        for (size_t i = 0; i < r->n_inputs; i++) {
                if (i)
                        TRY(puts_(b, ","));
                TRY(lmp_proto_append_json_string(b, r->inputs[i], r->input_len[i]));
        }
        if (r->input_is_array)
                TRY(puts_(b, "]"));
        TRY(puts_(b, r->normalize ? ",\"normalize\":true" : ",\"normalize\":false"));
        TRY(puts_(b, r->truncate ? ",\"truncate\":true" : ",\"truncate\":false"));
        TRY(puts_(b, r->return_ids ? ",\"return_ids\":true" : ",\"return_ids\":false"));
        if (r->sampling.set & LMP_SET_TIMEOUT_MS) {
                TRY(key(b, "timeout_ms"));
                TRY(put_i64(b, r->timeout_ms));
        }
        return puts_(b, "}");
}

int lmp_proto_format_request(struct lmp_proto_buf *b, const struct lmp_request *r) {
        const struct lmp_sampling *s = &r->sampling;
        const char *type = lmp_request_type_name(r->type);
        if (!type)
                return -EINVAL;
        TRY(puts_(b, "{\"v\":1,\"id\":"));
        TRY(put_str(b, r->id));
        TRY(key(b, "type"));
        TRY(put_str(b, type));
        if (r->type == LMP_REQ_CANCEL) {
                TRY(key(b, "target"));
                TRY(put_str(b, r->target));
        }
        if (r->type == LMP_REQ_EMBED)
                return format_embed_request(b, r);
        if (r->type != LMP_REQ_GENERATE && r->type != LMP_REQ_CHAT)
                return puts_(b, "}");
        TRY(key(b, "model"));
        TRY(put_str(b, r->model));
        if (r->type == LMP_REQ_GENERATE) {
                TRY(key(b, "prompt"));
                TRY(lmp_proto_append_json_string(b, r->prompt ? r->prompt : "", r->prompt ? r->prompt_len : 0));
        } else {
                TRY(key(b, "messages"));
                TRY(puts_(b, "["));
                for (size_t i = 0; i < r->n_messages; i++) {
                        const char *role = lmp_role_name(r->messages[i].role);
                        if (!role)
                                return -EINVAL;
                        TRY(puts_(b, i ? ",{\"role\":" : "{\"role\":"));
                        TRY(put_str(b, role));
                        TRY(key(b, "content"));
                        TRY(lmp_proto_append_json_string(b, r->messages[i].content, r->messages[i].content_len));
                        if (r->messages[i].tool_calls) {  /* canonical JSON already */
                                TRY(key(b, "tool_calls"));
                                TRY(puts_(b, r->messages[i].tool_calls));
                        }
                        if (r->messages[i].tool_call_id) {
                                TRY(key(b, "tool_call_id"));
                                TRY(put_str(b, r->messages[i].tool_call_id));
                        }
                        if (r->messages[i].name) {
                                TRY(key(b, "name"));
                                TRY(put_str(b, r->messages[i].name));
                        }
                        TRY(puts_(b, "}"));
                }
                TRY(puts_(b, "]"));
        }
        if (s->set & LMP_SET_MAX_TOKENS) {
                TRY(key(b, "max_tokens"));
                TRY(put_i64(b, s->max_tokens));
        }
        if (s->set & LMP_SET_TEMPERATURE) {
                TRY(key(b, "temperature"));
                TRY(put_double(b, s->temperature));
        }
        if (s->set & LMP_SET_TOP_K) {
                TRY(key(b, "top_k"));
                TRY(put_i64(b, s->top_k));
        }
        if (s->set & LMP_SET_TOP_P) {
                TRY(key(b, "top_p"));
                TRY(put_double(b, s->top_p));
        }
        if (s->set & LMP_SET_MIN_P) {
                TRY(key(b, "min_p"));
                TRY(put_double(b, s->min_p));
        }
        if (s->set & LMP_SET_REPEAT_PENALTY) {
                TRY(key(b, "repeat_penalty"));
                TRY(put_double(b, s->repeat_penalty));
        }
        if (s->set & LMP_SET_PRESENCE_PENALTY) {
                TRY(key(b, "presence_penalty"));
                TRY(put_double(b, s->presence_penalty));
        }
        if (s->set & LMP_SET_FREQUENCY_PENALTY) {
                TRY(key(b, "frequency_penalty"));
                TRY(put_double(b, s->frequency_penalty));
        }
        if (s->set & LMP_SET_SEED) {
                TRY(key(b, "seed"));
                TRY(putf(b, "%" PRIu64, s->seed));
        }
        if (r->n_stop) {
                TRY(key(b, "stop"));
                TRY(puts_(b, "["));
                for (size_t i = 0; i < r->n_stop; i++) {
                        if (i)
                                TRY(puts_(b, ","));
                        TRY(lmp_proto_append_json_string(b, r->stop[i], r->stop_len[i]));
                }
                TRY(puts_(b, "]"));
        }
        if (r->format) {        /* canonical JSON already, from the parser */
                TRY(key(b, "format"));
                TRY(puts_(b, r->format));
        }
        if (r->tools) {         /* compact JSON, from the parser */
                TRY(key(b, "tools"));
                TRY(puts_(b, r->tools));
        }
        switch (r->tool_choice) {
        case LMP_TOOL_CHOICE_AUTO:
                break;
        case LMP_TOOL_CHOICE_NONE:
                TRY(puts_(b, ",\"tool_choice\":\"none\""));
                break;
        case LMP_TOOL_CHOICE_REQUIRED:
                TRY(puts_(b, ",\"tool_choice\":\"required\""));
                break;
        default:
                TRY(puts_(b, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"));
                TRY(put_str(b, r->tool_name));
                TRY(puts_(b, "}}"));
                break;
        }
        TRY(puts_(b, r->ignore_eos ? ",\"ignore_eos\":true" : ",\"ignore_eos\":false"));
        TRY(puts_(b, r->stream ? ",\"stream\":true" : ",\"stream\":false"));
        TRY(puts_(b, r->return_ids ? ",\"return_ids\":true" : ",\"return_ids\":false"));
        if (r->no_cache)
                TRY(puts_(b, ",\"cache\":false"));
        if (s->set & LMP_SET_TIMEOUT_MS) {
                TRY(key(b, "timeout_ms"));
                TRY(put_i64(b, r->timeout_ms));
        }
        if (r->session[0]) {
                TRY(key(b, "session"));
                TRY(put_str(b, r->session));
        }
        return puts_(b, "}");
}

bool lmp_proto_utf8_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *)s;
        for (size_t i = 0; i < n;) {
                size_t k = p[i] ? lmp_utf8_char_len(p + i, n - i) : 0;
                if (k == 0)
                        return false;
                i += k;
        }
        return true;
}

size_t lmp_proto_utf8_complete(const char *s, size_t n) {
        return n - lmp_utf8_incomplete_tail((const uint8_t *)s, n);
}

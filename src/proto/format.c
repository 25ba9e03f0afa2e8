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

#include "common/base64.h"
#include "common/grow.h"
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
        return lmp_grow(&b->data, &b->cap, need, 1, 256);
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

int lmp_proto_buf_puts(struct lmp_proto_buf *b, const char *s) {
        return put(b, s, strlen(s));
}

int lmp_proto_buf_printf(struct lmp_proto_buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if (reserve(b, (size_t)n) < 0)
                return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
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
        return lmp_proto_buf_puts(b, tmp);
}

static int put_i64(struct lmp_proto_buf *b, int64_t v) {
        return lmp_proto_buf_printf(b, "%" PRId64, v);
}

/* Starts {"v":1,"id":...,"event":"NAME" */
static int begin_event(struct lmp_proto_buf *b, const char *id, const char *event) {
        int rc = lmp_proto_buf_puts(b, "{\"v\":1,\"id\":");
        if (rc == 0)
                rc = id ? put_str(b, id) : lmp_proto_buf_puts(b, "null");
        if (rc == 0)
                rc = lmp_proto_buf_puts(b, ",\"event\":");
        if (rc == 0)
                rc = put_str(b, event);
        return rc;
}

/* Appends ,"key": */
static int key(struct lmp_proto_buf *b, const char *k) {
        int rc = lmp_proto_buf_puts(b, ",\"");
        if (rc == 0)
                rc = lmp_proto_buf_puts(b, k);
        if (rc == 0)
                rc = lmp_proto_buf_puts(b, "\":");
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
                TRY(lmp_proto_buf_puts(b, "["));
                for (size_t i = 0; i < n_ids; i++)
                        TRY(lmp_proto_buf_printf(b, i ? ",%" PRId32 : "%" PRId32, ids[i]));
                TRY(lmp_proto_buf_puts(b, "]"));
        }
        return lmp_proto_buf_puts(b, "}");
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
        TRY(lmp_proto_buf_puts(b, ",\"usage\":{\"prompt_tokens\":"));
        TRY(put_i64(b, d->usage.prompt_tokens));
        TRY(lmp_proto_buf_puts(b, ",\"generated_tokens\":"));
        TRY(put_i64(b, d->usage.generated_tokens));
        TRY(lmp_proto_buf_puts(b, ",\"cached_tokens\":"));
        TRY(put_i64(b, d->usage.cached_tokens));
        if (d->usage.images > 0) {
                TRY(lmp_proto_buf_puts(b, ",\"images\":"));
                TRY(put_i64(b, d->usage.images));
                TRY(lmp_proto_buf_puts(b, ",\"images_cached\":"));
                TRY(put_i64(b, d->usage.images_cached));
        }
        TRY(lmp_proto_buf_puts(b, "},\"timings\":{\"queued_ms\":"));
        TRY(put_double(b, d->timings.queued_ms));
        TRY(lmp_proto_buf_puts(b, ",\"prompt_ms\":"));
        TRY(put_double(b, d->timings.prompt_ms));
        TRY(lmp_proto_buf_puts(b, ",\"ttft_ms\":"));
        TRY(put_double(b, d->timings.ttft_ms));
        TRY(lmp_proto_buf_puts(b, ",\"total_ms\":"));
        TRY(put_double(b, d->timings.total_ms));
        TRY(lmp_proto_buf_puts(b, ",\"tokens_per_s\":"));
        TRY(put_double(b, d->timings.tokens_per_s));
        TRY(lmp_proto_buf_puts(b, "}"));
        TRY(key(b, "worker"));
        TRY(put_str(b, d->worker));
        return lmp_proto_buf_puts(b, "}");
}

/* A float with the 9 significant digits that read back as the same f32. */
static int put_float(struct lmp_proto_buf *b, float v) {
        return lmp_proto_buf_printf(b, "%.9g", isfinite(v) ? (double)v : 0.0);
}

int lmp_proto_format_embedding(struct lmp_proto_buf *b, const char *id, const struct lmp_embedding *e) {
        if (e->n == 0 || e->n_embd == 0)
                return -EINVAL;
        TRY(begin_event(b, id, "embedding"));
        TRY(key(b, "embeddings"));
        TRY(lmp_proto_buf_puts(b, "["));
        for (size_t i = 0; i < e->n; i++) {
                const float *v = e->vectors + i * e->n_embd;
                TRY(lmp_proto_buf_puts(b, i ? ",[" : "["));
                for (size_t k = 0; k < e->n_embd; k++) {
                        if (k)
                                TRY(lmp_proto_buf_puts(b, ","));
                        TRY(put_float(b, v[k]));
                }
                TRY(lmp_proto_buf_puts(b, "]"));
        }
        TRY(lmp_proto_buf_puts(b, "]"));
        if (e->ids) {
                TRY(key(b, "ids"));
                TRY(lmp_proto_buf_puts(b, "["));
                for (size_t i = 0; i < e->n; i++) {
                        TRY(lmp_proto_buf_puts(b, i ? ",[" : "["));
                        for (size_t k = e->ids_off[i]; k < e->ids_off[i + 1]; k++)
                                TRY(lmp_proto_buf_printf(b, k > e->ids_off[i] ? ",%" PRId32 : "%" PRId32, e->ids[k]));
                        TRY(lmp_proto_buf_puts(b, "]"));
                }
                TRY(lmp_proto_buf_puts(b, "]"));
        }
        TRY(lmp_proto_buf_puts(b, ",\"usage\":{\"prompt_tokens\":"));
        TRY(put_i64(b, e->prompt_tokens));
        TRY(lmp_proto_buf_puts(b, "},\"timings\":{\"queued_ms\":"));
        TRY(put_double(b, e->queued_ms));
        TRY(lmp_proto_buf_puts(b, ",\"total_ms\":"));
        TRY(put_double(b, e->total_ms));
        TRY(lmp_proto_buf_puts(b, "}"));
        TRY(key(b, "worker"));
        TRY(put_str(b, e->worker));
        return lmp_proto_buf_puts(b, "}");
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
        return lmp_proto_buf_puts(b, "}");
}

int lmp_proto_format_cancelled(struct lmp_proto_buf *b, const char *id, const char *target, bool found) {
        TRY(begin_event(b, id, "cancelled"));
        TRY(key(b, "target"));
        TRY(put_str(b, target));
        TRY(key(b, "found"));
        TRY(lmp_proto_buf_puts(b, found ? "true" : "false"));
        return lmp_proto_buf_puts(b, "}");
}

int lmp_proto_format_models(struct lmp_proto_buf *b, const char *id, const struct lmp_model_info *m, size_t n) {
        TRY(begin_event(b, id, "models"));
        TRY(key(b, "models"));
        TRY(lmp_proto_buf_puts(b, "["));
        for (size_t i = 0; i < n; i++) {
                TRY(lmp_proto_buf_puts(b, i ? ",{\"name\":" : "{\"name\":"));
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
                TRY(lmp_proto_buf_puts(b, "}"));
        }
        return lmp_proto_buf_puts(b, "]}");
}

int lmp_proto_format_stats(struct lmp_proto_buf *b, const char *id, const struct lmp_stats *s) {
        TRY(begin_event(b, id, "stats"));
        TRY(key(b, "uptime_s"));
        TRY(put_double(b, s->uptime_s));
        TRY(lmp_proto_buf_puts(b, ",\"queue\":{\"length\":"));
        TRY(put_i64(b, s->queue_length));
        TRY(lmp_proto_buf_puts(b, ",\"limit\":"));
        TRY(put_i64(b, s->queue_limit));
        TRY(lmp_proto_buf_puts(b, "},\"requests\":{\"total\":"));
        TRY(put_i64(b, s->total));
        TRY(lmp_proto_buf_puts(b, ",\"ok\":"));
        TRY(put_i64(b, s->ok));
        TRY(lmp_proto_buf_puts(b, ",\"errors\":"));
        TRY(put_i64(b, s->errors));
        TRY(lmp_proto_buf_puts(b, ",\"busy\":"));
        TRY(put_i64(b, s->busy));
        TRY(lmp_proto_buf_puts(b, ",\"timeouts\":"));
        TRY(put_i64(b, s->timeouts));
        TRY(lmp_proto_buf_puts(b, ",\"worker_lost\":"));
        TRY(put_i64(b, s->worker_lost));
        TRY(lmp_proto_buf_puts(b, ",\"retried\":"));
        TRY(put_i64(b, s->retried));
        TRY(lmp_proto_buf_puts(b, ",\"slow_consumer\":"));
        TRY(put_i64(b, s->slow_consumer));
        TRY(lmp_proto_buf_puts(b, ",\"client_gone\":"));
        TRY(put_i64(b, s->client_gone));
        TRY(lmp_proto_buf_puts(b, ",\"dropped\":"));
        TRY(put_i64(b, s->dropped));
        TRY(lmp_proto_buf_puts(b, "},\"events_dropped\":"));
        TRY(put_i64(b, s->events_dropped));
        TRY(lmp_proto_buf_puts(b, ",\"clients\":{\"connected\":"));
        TRY(put_i64(b, s->clients));
        TRY(lmp_proto_buf_puts(b, ",\"limit\":"));
        TRY(put_i64(b, s->clients_limit));
        TRY(lmp_proto_buf_puts(b, ",\"refused\":"));
        TRY(put_i64(b, s->clients_refused));
        TRY(lmp_proto_buf_puts(b, ",\"overlong_closed\":"));
        TRY(put_i64(b, s->clients_overlong));
        TRY(lmp_proto_buf_puts(b, "},\"affinity\":{\"hits\":"));
        TRY(put_i64(b, s->affinity_hits));
        TRY(lmp_proto_buf_puts(b, ",\"misses\":"));
        TRY(put_i64(b, s->affinity_misses));
        TRY(lmp_proto_buf_puts(b, ",\"new\":"));
        TRY(put_i64(b, s->affinity_new));
        TRY(lmp_proto_buf_puts(b, "},\"cache\":{\"hits\":"));
        TRY(put_i64(b, s->cache_hits));
        TRY(lmp_proto_buf_puts(b, ",\"misses\":"));
        TRY(put_i64(b, s->cache_misses));
        TRY(lmp_proto_buf_puts(b, ",\"entries\":"));
        TRY(put_i64(b, s->cache_entries));
        TRY(lmp_proto_buf_puts(b, ",\"bytes\":"));
        TRY(put_i64(b, s->cache_bytes));
        TRY(lmp_proto_buf_puts(b, "},\"semantic_cache\":{\"hits\":"));
        TRY(put_i64(b, s->semantic_hits));
        TRY(lmp_proto_buf_puts(b, ",\"misses\":"));
        TRY(put_i64(b, s->semantic_misses));
        TRY(lmp_proto_buf_puts(b, ",\"unavailable\":"));
        TRY(put_i64(b, s->semantic_unavailable));
        TRY(lmp_proto_buf_puts(b, ",\"evictions\":"));
        TRY(put_i64(b, s->semantic_evictions));
        TRY(lmp_proto_buf_puts(b, ",\"expirations\":"));
        TRY(put_i64(b, s->semantic_expirations));
        TRY(lmp_proto_buf_puts(b, ",\"entries\":"));
        TRY(put_i64(b, s->semantic_entries));
        TRY(lmp_proto_buf_puts(b, ",\"bytes\":"));
        TRY(put_i64(b, s->semantic_bytes));
        TRY(lmp_proto_buf_puts(b, "},\"refused\":{\"connections\":"));
        TRY(put_i64(b, s->zap_refused));
        TRY(lmp_proto_buf_puts(b, ",\"worker_frames\":"));
        TRY(put_i64(b, s->worker_frames_refused));
        TRY(lmp_proto_buf_puts(b, "},\"workers\":["));
        for (size_t i = 0; i < s->n_workers; i++) {
                const struct lmp_worker_info *w = &s->workers[i];
                TRY(lmp_proto_buf_puts(b, i ? ",{\"name\":" : "{\"name\":"));
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
                TRY(lmp_proto_buf_puts(b, "}"));
        }
        return lmp_proto_buf_puts(b, "]}");
}

int lmp_proto_format_health(struct lmp_proto_buf *b, const char *id, const char *status,
                            const struct lmp_health_model *m, size_t n) {
        TRY(begin_event(b, id, "health"));
        TRY(key(b, "status"));
        TRY(put_str(b, status));
        TRY(key(b, "models"));
        TRY(lmp_proto_buf_puts(b, "{"));
        for (size_t i = 0; i < n; i++) {
                if (i)
                        TRY(lmp_proto_buf_puts(b, ","));
                TRY(put_str(b, m[i].name));
                TRY(lmp_proto_buf_puts(b, ":{\"ready\":"));
                TRY(put_i64(b, m[i].ready));
                TRY(lmp_proto_buf_puts(b, ",\"workers\":"));
                TRY(put_i64(b, m[i].workers));
                if (m[i].failed) {
                        TRY(key(b, "failed"));
                        TRY(put_str(b, m[i].failed));
                }
                TRY(lmp_proto_buf_puts(b, "}"));
        }
        return lmp_proto_buf_puts(b, "}}");
}

/* The rest of an embed request after its type. */
static int format_embed_request(struct lmp_proto_buf *b, const struct lmp_request *r) {
        TRY(key(b, "model"));
        TRY(put_str(b, r->model));
        TRY(key(b, "input"));
        if (r->input_is_array)
                TRY(lmp_proto_buf_puts(b, "["));
        for (size_t i = 0; i < r->n_inputs; i++) {
                if (i)
                        TRY(lmp_proto_buf_puts(b, ","));
                TRY(lmp_proto_append_json_string(b, r->inputs[i], r->input_len[i]));
        }
        if (r->input_is_array)
                TRY(lmp_proto_buf_puts(b, "]"));
        TRY(lmp_proto_buf_puts(b, r->normalize ? ",\"normalize\":true" : ",\"normalize\":false"));
        TRY(lmp_proto_buf_puts(b, r->truncate ? ",\"truncate\":true" : ",\"truncate\":false"));
        TRY(lmp_proto_buf_puts(b, r->return_ids ? ",\"return_ids\":true" : ",\"return_ids\":false"));
        if (r->sampling.set & LMP_SET_TIMEOUT_MS) {
                TRY(key(b, "timeout_ms"));
                TRY(put_i64(b, r->timeout_ms));
        }
        return lmp_proto_buf_puts(b, "}");
}

/* A sampling field, "key":value, when the request set it. */
static int put_set_i64(struct lmp_proto_buf *b, const struct lmp_sampling *s, uint32_t bit, const char *k, int64_t v) {
        int rc = 0;
        if ((s->set & bit) && (rc = key(b, k)) == 0)
                rc = put_i64(b, v);
        return rc;
}

static int put_set_double(struct lmp_proto_buf *b, const struct lmp_sampling *s, uint32_t bit, const char *k,
                          double v) {
        int rc = 0;
        if ((s->set & bit) && (rc = key(b, k)) == 0)
                rc = put_double(b, v);
        return rc;
}

/* ,"images":["<base64>",...] */
static int put_images(struct lmp_proto_buf *b, const struct lmp_proto_image *im, size_t n) {
        TRY(key(b, "images"));
        TRY(lmp_proto_buf_puts(b, "["));
        for (size_t i = 0; i < n; i++) {
                char *t = malloc(lmp_base64_encoded_len(im[i].len) + 1);
                if (!t)
                        return -ENOMEM;
                lmp_base64_encode(im[i].data, im[i].len, t);
                int rc = lmp_proto_buf_printf(b, "%s\"%s\"", i ? "," : "", t);
                free(t);
                if (rc < 0)
                        return rc;
        }
        return lmp_proto_buf_puts(b, "]");
}

int lmp_proto_format_request(struct lmp_proto_buf *b, const struct lmp_request *r) {
        const struct lmp_sampling *s = &r->sampling;
        const char *type = lmp_request_type_name(r->type);
        if (!type)
                return -EINVAL;
        TRY(lmp_proto_buf_puts(b, "{\"v\":1,\"id\":"));
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
                return lmp_proto_buf_puts(b, "}");
        TRY(key(b, "model"));
        TRY(put_str(b, r->model));
        if (r->type == LMP_REQ_GENERATE) {
                TRY(key(b, "prompt"));
                TRY(lmp_proto_append_json_string(b, r->prompt ? r->prompt : "", r->prompt ? r->prompt_len : 0));
                if (r->n_images)
                        TRY(put_images(b, r->images, r->n_images));
        } else {
                size_t img = 0;
                TRY(key(b, "messages"));
                TRY(lmp_proto_buf_puts(b, "["));
                for (size_t i = 0; i < r->n_messages; i++) {
                        const char *role = lmp_role_name(r->messages[i].role);
                        if (!role)
                                return -EINVAL;
                        TRY(lmp_proto_buf_puts(b, i ? ",{\"role\":" : "{\"role\":"));
                        TRY(put_str(b, role));
                        TRY(key(b, "content"));
                        TRY(lmp_proto_append_json_string(b, r->messages[i].content, r->messages[i].content_len));
                        if (r->messages[i].n_images) {
                                if (r->messages[i].n_images > r->n_images - img)
                                        return -EINVAL;
                                TRY(put_images(b, r->images + img, r->messages[i].n_images));
                                img += r->messages[i].n_images;
                        }
                        if (r->messages[i].tool_calls) {  /* canonical JSON already */
                                TRY(key(b, "tool_calls"));
                                TRY(lmp_proto_buf_puts(b, r->messages[i].tool_calls));
                        }
                        if (r->messages[i].tool_call_id) {
                                TRY(key(b, "tool_call_id"));
                                TRY(put_str(b, r->messages[i].tool_call_id));
                        }
                        if (r->messages[i].name) {
                                TRY(key(b, "name"));
                                TRY(put_str(b, r->messages[i].name));
                        }
                        TRY(lmp_proto_buf_puts(b, "}"));
                }
                TRY(lmp_proto_buf_puts(b, "]"));
        }
        TRY(put_set_i64(b, s, LMP_SET_MAX_TOKENS, "max_tokens", s->max_tokens));
        TRY(put_set_double(b, s, LMP_SET_TEMPERATURE, "temperature", s->temperature));
        TRY(put_set_i64(b, s, LMP_SET_TOP_K, "top_k", s->top_k));
        TRY(put_set_double(b, s, LMP_SET_TOP_P, "top_p", s->top_p));
        TRY(put_set_double(b, s, LMP_SET_MIN_P, "min_p", s->min_p));
        TRY(put_set_double(b, s, LMP_SET_REPEAT_PENALTY, "repeat_penalty", s->repeat_penalty));
        TRY(put_set_double(b, s, LMP_SET_PRESENCE_PENALTY, "presence_penalty", s->presence_penalty));
        TRY(put_set_double(b, s, LMP_SET_FREQUENCY_PENALTY, "frequency_penalty", s->frequency_penalty));
        if (s->set & LMP_SET_SEED) {
                TRY(key(b, "seed"));
                TRY(lmp_proto_buf_printf(b, "%" PRIu64, s->seed));
        }
        if (r->n_stop) {
                TRY(key(b, "stop"));
                TRY(lmp_proto_buf_puts(b, "["));
                for (size_t i = 0; i < r->n_stop; i++) {
                        if (i)
                                TRY(lmp_proto_buf_puts(b, ","));
                        TRY(lmp_proto_append_json_string(b, r->stop[i], r->stop_len[i]));
                }
                TRY(lmp_proto_buf_puts(b, "]"));
        }
        if (r->format) {        /* canonical JSON already, from the parser */
                TRY(key(b, "format"));
                TRY(lmp_proto_buf_puts(b, r->format));
        }
        if (r->tools) {         /* compact JSON, from the parser */
                TRY(key(b, "tools"));
                TRY(lmp_proto_buf_puts(b, r->tools));
        }
        switch (r->tool_choice) {
        case LMP_TOOL_CHOICE_AUTO:
                break;
        case LMP_TOOL_CHOICE_NONE:
                TRY(lmp_proto_buf_puts(b, ",\"tool_choice\":\"none\""));
                break;
        case LMP_TOOL_CHOICE_REQUIRED:
                TRY(lmp_proto_buf_puts(b, ",\"tool_choice\":\"required\""));
                break;
        default:
                TRY(lmp_proto_buf_puts(b, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"));
                TRY(put_str(b, r->tool_name));
                TRY(lmp_proto_buf_puts(b, "}}"));
                break;
        }
        TRY(lmp_proto_buf_puts(b, r->ignore_eos ? ",\"ignore_eos\":true" : ",\"ignore_eos\":false"));
        TRY(lmp_proto_buf_puts(b, r->stream ? ",\"stream\":true" : ",\"stream\":false"));
        TRY(lmp_proto_buf_puts(b, r->return_ids ? ",\"return_ids\":true" : ",\"return_ids\":false"));
        if (r->no_cache)
                TRY(lmp_proto_buf_puts(b, ",\"cache\":false"));
        if (s->set & LMP_SET_TIMEOUT_MS) {
                TRY(key(b, "timeout_ms"));
                TRY(put_i64(b, r->timeout_ms));
        }
        if (r->session[0]) {
                TRY(key(b, "session"));
                TRY(put_str(b, r->session));
        }
        return lmp_proto_buf_puts(b, "}");
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

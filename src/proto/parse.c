/* Client frames -> struct lmp_request, daemon frames -> struct lmp_event.
 * Every bound of docs/protocol.md is enforced here, once: the frame's size,
 * its bytes (valid UTF-8, no NUL, no \u0000 escape, so that every string we
 * hand out is a C string holding exactly what was sent), the JSON syntax,
 * duplicate fields, each field's type and range. A refusal names the field
 * and recovers the request's id when the frame had a valid one. cJSON does
 * the syntax; cJSON's nesting limit bounds recursion on hostile input. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/json.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "proto/proto.h"
#include "sampler/json_grammar.h"

static const char *const code_names[LMP_PROTO_CODE_COUNT] = {
        [LMP_PROTO_OK] = "ok",
        [LMP_PROTO_BAD_REQUEST] = "bad_request",
        [LMP_PROTO_UNKNOWN_MODEL] = "unknown_model",
        [LMP_PROTO_BUSY] = "busy",
        [LMP_PROTO_TOO_LONG] = "too_long",
        [LMP_PROTO_TIMEOUT] = "timeout",
        [LMP_PROTO_WORKER_LOST] = "worker_lost",
        [LMP_PROTO_CANCELLED] = "cancelled",
        [LMP_PROTO_INTERNAL] = "internal",
        [LMP_PROTO_SLOW_CONSUMER] = "slow_consumer",
        [LMP_PROTO_MODEL_FAILED] = "model_failed",
};

static const char *const type_names[LMP_REQ_TYPE_COUNT] = {
        [LMP_REQ_GENERATE] = "generate", [LMP_REQ_CHAT] = "chat",   [LMP_REQ_CANCEL] = "cancel",
        [LMP_REQ_MODELS] = "models",     [LMP_REQ_STATS] = "stats", [LMP_REQ_HEALTH] = "health",
        [LMP_REQ_EMBED] = "embed",
};

static const char *const role_names[LMP_ROLE_COUNT] = {
        [LMP_ROLE_SYSTEM] = "system", [LMP_ROLE_USER] = "user", [LMP_ROLE_ASSISTANT] = "assistant",
        [LMP_ROLE_TOOL] = "tool",
};

static const char *const finish_names[LMP_FINISH_COUNT] = {
        [LMP_FINISH_STOP] = "stop", [LMP_FINISH_LENGTH] = "length", [LMP_FINISH_EOS] = "eos",
        [LMP_FINISH_TOOL_CALLS] = "tool_calls",
};

static const char *const event_names[LMP_EVENT_TYPE_COUNT] = {
        [LMP_EVENT_TOKEN] = "token",         [LMP_EVENT_DONE] = "done",     [LMP_EVENT_ERROR] = "error",
        [LMP_EVENT_CANCELLED] = "cancelled", [LMP_EVENT_MODELS] = "models", [LMP_EVENT_STATS] = "stats",
        [LMP_EVENT_HEALTH] = "health",       [LMP_EVENT_EMBEDDING] = "embedding",
};

const char *lmp_proto_code_name(enum lmp_proto_code code) {
        return (unsigned)code < LMP_PROTO_CODE_COUNT ? code_names[code] : NULL;
}

int lmp_proto_code_from_name(const char *name, enum lmp_proto_code *ret_code) {
        for (unsigned i = 0; i < LMP_PROTO_CODE_COUNT; i++)
                if (name && strcmp(name, code_names[i]) == 0) {
                        *ret_code = (enum lmp_proto_code)i;
                        return 0;
                }
        return -EINVAL;
}

const char *lmp_request_type_name(enum lmp_request_type type) {
        return (unsigned)type < LMP_REQ_TYPE_COUNT ? type_names[type] : NULL;
}

const char *lmp_role_name(enum lmp_role role) {
        return (unsigned)role < LMP_ROLE_COUNT ? role_names[role] : NULL;
}

const char *lmp_finish_name(enum lmp_finish finish) {
        return (unsigned)finish < LMP_FINISH_COUNT ? finish_names[finish] : NULL;
}

const char *lmp_event_type_name(enum lmp_event_type type) {
        return (unsigned)type < LMP_EVENT_TYPE_COUNT ? event_names[type] : NULL;
}

static int lookup(const char *const *names, unsigned n, const char *s) {
        for (unsigned i = 0; i < n; i++)
                if (strcmp(names[i], s) == 0)
                        return (int)i;
        return -1;
}

/* ---- frame bytes ---- */

/* Why the frame's bytes are unacceptable, or NULL. */
static const char *check_bytes(const unsigned char *p, size_t len, size_t *ret_off) {
        for (size_t i = 0; i < len;) {
                if (p[i] == 0) {
                        *ret_off = i;
                        return "a NUL byte";
                }
                if (p[i] == '\\' && i + 1 < len) {
                        if (p[i + 1] == 'u' && i + 5 < len && memcmp(p + i + 2, "0000", 4) == 0) {
                                *ret_off = i;
                                return "a \\u0000 escape";
                        }
                        i += 2; /* the escaped character (ASCII in valid JSON) */
                        continue;
                }
                size_t n = lmp_utf8_char_len(p + i, len - i);
                if (n == 0) {
                        *ret_off = i;
                        return "invalid UTF-8";
                }
                i += n;
        }
        return NULL;
}

/* ---- errors ---- */

static int fail(struct lmp_proto_error *err, enum lmp_proto_code code, const char *field, const char *fmt, ...)
        LMP_PRINTF(4, 5);
static int fail(struct lmp_proto_error *err, enum lmp_proto_code code, const char *field, const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->code = code;
                snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* ---- typed fields ---- */

static int get_string(const cJSON *it, const char *name, size_t min, size_t max, const char **ret, size_t *ret_len,
                      struct lmp_proto_error *err) {
        if (!cJSON_IsString(it) || !it->valuestring)
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be a string", name);
        size_t n = strlen(it->valuestring);
        if (n < min || n > max)
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be %zu to %zu bytes, not %zu", name,
                            min, max, n);
        *ret = it->valuestring;
        if (ret_len)
                *ret_len = n;
        return 0;
}

static bool is_integer(const cJSON *it) {
        return cJSON_IsNumber(it) && isfinite(it->valuedouble) && floor(it->valuedouble) == it->valuedouble;
}

static int get_int(const cJSON *it, const char *name, double min, double max, double *ret,
                   struct lmp_proto_error *err) {
        if (!is_integer(it))
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be an integer", name);
        if (it->valuedouble < min || it->valuedouble > max)
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be %.17g to %.17g, not %.17g", name,
                            min, max, it->valuedouble);
        *ret = it->valuedouble;
        return 0;
}

/* A number in [lo, hi], or (lo, hi] when lo_open. */
static int get_number(const cJSON *it, const char *name, double lo, bool lo_open, double hi, double *ret,
                      struct lmp_proto_error *err) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be a number", name);
        double v = it->valuedouble;
        if (v > hi || v < lo || (lo_open && v == lo))
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be in %c%g, %g], not %g", name,
                            lo_open ? '(' : '[', lo, hi, v);
        *ret = v;
        return 0;
}

static int get_bool(const cJSON *it, const char *name, bool *ret, struct lmp_proto_error *err) {
        if (!cJSON_IsBool(it))
                return fail(err, LMP_PROTO_BAD_REQUEST, name, "field '%s' must be true or false", name);
        *ret = cJSON_IsTrue(it);
        return 0;
}

static char *dup_n(const char *s, size_t n) {
        char *p = malloc(n + 1);
        if (p) {
                memcpy(p, s, n);
                p[n] = '\0';
        }
        return p;
}

/* ---- requests ---- */

enum field {
        F_V, F_ID, F_TYPE, F_MODEL, F_PROMPT, F_MESSAGES, F_MAX_TOKENS, F_TEMPERATURE, F_TOP_K, F_TOP_P,
        F_MIN_P, F_REPEAT_PENALTY, F_PRESENCE_PENALTY, F_FREQUENCY_PENALTY, F_SEED, F_STOP, F_IGNORE_EOS,
        F_STREAM, F_RETURN_IDS, F_TIMEOUT_MS, F_TARGET, F_SESSION, F_INPUT, F_NORMALIZE, F_TRUNCATE, F_CACHE,
        F_FORMAT, F_TOOLS, F_TOOL_CHOICE, F_IMAGES, F_COUNT,
};

static const char *const field_names[F_COUNT] = {
        [F_V] = "v", [F_ID] = "id", [F_TYPE] = "type", [F_MODEL] = "model", [F_PROMPT] = "prompt",
        [F_MESSAGES] = "messages", [F_MAX_TOKENS] = "max_tokens", [F_TEMPERATURE] = "temperature",
        [F_TOP_K] = "top_k", [F_TOP_P] = "top_p", [F_MIN_P] = "min_p", [F_REPEAT_PENALTY] = "repeat_penalty",
        [F_PRESENCE_PENALTY] = "presence_penalty", [F_FREQUENCY_PENALTY] = "frequency_penalty",
        [F_SEED] = "seed", [F_STOP] = "stop", [F_IGNORE_EOS] = "ignore_eos", [F_STREAM] = "stream",
        [F_RETURN_IDS] = "return_ids", [F_TIMEOUT_MS] = "timeout_ms", [F_TARGET] = "target",
        [F_SESSION] = "session",         [F_INPUT] = "input",         [F_NORMALIZE] = "normalize",
        [F_TRUNCATE] = "truncate", [F_CACHE] = "cache", [F_FORMAT] = "format",
        [F_TOOLS] = "tools", [F_TOOL_CHOICE] = "tool_choice", [F_IMAGES] = "images",
};

void lmp_request_clear(struct lmp_request *r) {
        if (!r)
                return;
        free(r->prompt);
        for (size_t i = 0; i < r->n_messages; i++) {
                free(r->messages[i].content);
                free(r->messages[i].tool_calls);
                free(r->messages[i].tool_call_id);
                free(r->messages[i].name);
        }
        free(r->messages);
        for (size_t i = 0; i < r->n_images; i++)
                free(r->images[i].data);
        free(r->images);
        free(r->tools);
        for (size_t i = 0; i < r->n_stop; i++)
                free(r->stop[i]);
        free(r->format);
        for (size_t i = 0; i < r->n_inputs; i++)
                free(r->inputs[i]);
        free(r->inputs);
        free(r->input_len);
        memset(r, 0, sizeof(*r));
}

/* format: "json" (any JSON object), "" (none, as Ollama), or a JSON schema
 * of the subset sampler/json_grammar.h compiles. The schema is compiled
 * here to refuse what the worker could not run, naming the keyword, before
 * the router dispatches; the worker compiles the canonical text again (and
 * caches it). */
static int parse_format(const cJSON *v, struct lmp_request *r, struct lmp_proto_error *err) {
        if (cJSON_IsString(v)) {
                if (!v->valuestring[0])
                        return 0;
                if (strcmp(v->valuestring, "json"))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "format",
                                    "field 'format' must be \"json\" or a JSON schema object");
                r->format = dup_n("\"json\"", 6);
                r->format_len = 6;
                return r->format ? 0 : -ENOMEM;
        }
        if (!cJSON_IsObject(v))
                return fail(err, LMP_PROTO_BAD_REQUEST, "format",
                            "field 'format' must be \"json\" or a JSON schema object");
        char *text = cJSON_PrintUnformatted(v);
        if (!text)
                return -ENOMEM;
        size_t len = strlen(text);
        struct lmp_json_grammar *g = NULL;
        struct lmp_error e = { 0 };
        int rc = lmp_json_grammar_new_schema(text, len, &g, &e);
        lmp_json_grammar_unref(g);
        if (rc == -ENOMEM) {
                free(text);
                return rc;
        }
        if (rc < 0) {
                free(text);
                return fail(err, LMP_PROTO_BAD_REQUEST, "format", "field 'format': %s", e.msg);
        }
        r->format = text;
        r->format_len = len;
        return 0;
}

/* ---- tools ---- */

/* Nesting of a JSON value: 0 for a scalar. cJSON's own nesting limit
 * bounds the recursion. */
static int json_depth(const cJSON *v) {
        int d = 0;
        for (const cJSON *c = v->child; c; c = c->next) {
                int k = json_depth(c);
                if (k > d)
                        d = k;
        }
        return d + (cJSON_IsArray(v) || cJSON_IsObject(v));
}

/* A function name as templates and the constrained call can carry it. */
static bool tool_name_ok(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > LMP_PROTO_TOOL_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '_' || *s == '-' || *s == '.'))
                        return false;
        return true;
}

/* One call of an assistant message -> its canonical form (a new object):
 * {"id"?, "type": "function", "function": {"name", "arguments": {...}}},
 * arguments given as an object or as a string holding one (OpenAI's). */
static int canonical_call(const cJSON *c, size_t i, size_t k, cJSON **ret, struct lmp_proto_error *err) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsObject(fn))
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                            "messages[%zu].tool_calls[%zu] must be an object with an object 'function'", i, k);
        if (id && (!cJSON_IsString(id) || strlen(id->valuestring) > LMP_PROTO_ID_MAX))
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                            "messages[%zu].tool_calls[%zu].id must be a string of at most %d bytes", i, k,
                            LMP_PROTO_ID_MAX);
        if (!cJSON_IsString(name) || !tool_name_ok(name->valuestring))
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                            "messages[%zu].tool_calls[%zu].function.name must be 1 to %d letters, digits, "
                            "'_', '-' or '.'", i, k, LMP_PROTO_TOOL_NAME_MAX);
        cJSON *a = NULL;
        if (!args || (cJSON_IsString(args) && !args->valuestring[0]))
                a = cJSON_CreateObject();
        else if (cJSON_IsObject(args))
                a = cJSON_Duplicate(args, true);
        else if (cJSON_IsString(args) && (a = cJSON_ParseWithOpts(args->valuestring, NULL, true)) &&
                 !cJSON_IsObject(a)) {
                cJSON_Delete(a);
                a = NULL;
        }
        if (!a || json_depth(a) > LMP_PROTO_TOOLS_DEPTH_MAX) {
                cJSON_Delete(a);
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                            "messages[%zu].tool_calls[%zu].function.arguments must be a JSON object (or a string "
                            "holding one) nested at most %d deep", i, k, LMP_PROTO_TOOLS_DEPTH_MAX);
        }
        cJSON *out = cJSON_CreateObject(), *f = cJSON_CreateObject();
        if (!out || !f || (id && !cJSON_AddStringToObject(out, "id", id->valuestring)) ||
            !cJSON_AddStringToObject(out, "type", "function") || !cJSON_AddStringToObject(f, "name", name->valuestring)) {
                cJSON_Delete(out);
                cJSON_Delete(f);
                cJSON_Delete(a);
                return -ENOMEM;
        }
        cJSON_AddItemToObject(f, "arguments", a);
        cJSON_AddItemToObject(out, "function", f);
        *ret = out;
        return 0;
}

static int parse_tool_calls(const cJSON *arr, size_t i, struct lmp_message *m, struct lmp_proto_error *err) {
        if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > LMP_PROTO_TOOL_CALLS_MAX)
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                            "messages[%zu].tool_calls must be an array of at most %d calls", i,
                            LMP_PROTO_TOOL_CALLS_MAX);
        if (!arr->child)
                return 0;
        cJSON *out = cJSON_CreateArray();
        if (!out)
                return -ENOMEM;
        size_t k = 0;
        for (const cJSON *c = arr->child; c; c = c->next, k++) {
                cJSON *call = NULL;
                int rc = canonical_call(c, i, k, &call, err);
                if (rc < 0) {
                        cJSON_Delete(out);
                        return rc;
                }
                cJSON_AddItemToArray(out, call);
        }
        m->tool_calls = cJSON_PrintUnformatted(out);
        cJSON_Delete(out);
        return m->tool_calls ? 0 : -ENOMEM;
}

static int opt_message_string(const cJSON *v, size_t i, const char *what, size_t max, char **ret,
                              struct lmp_proto_error *err) {
        if (!v)
                return 0;
        if (!cJSON_IsString(v) || strlen(v->valuestring) > max)
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "messages[%zu].%s must be a string of at most %zu bytes",
                            i, what, max);
        *ret = dup_n(v->valuestring, strlen(v->valuestring));
        return *ret ? 0 : -ENOMEM;
}

/* ---- images ---- */

static size_t count_markers(const char *s) {
        size_t n = 0;
        for (const char *p = s; (p = strstr(p, LMP_PROTO_MEDIA_MARKER)); p += strlen(LMP_PROTO_MEDIA_MARKER))
                n++;
        return n;
}

/* Decodes one image's base64 (what names it in messages) into r->images. */
static int add_image(struct lmp_request *r, const char *b64, size_t n, const char *field, const char *what,
                     struct lmp_proto_error *err) {
        size_t len = 0, at = 0;
        if (r->n_images == LMP_PROTO_IMAGES_MAX)
                return fail(err, LMP_PROTO_BAD_REQUEST, field, "%s: a request carries at most %d images", what,
                            LMP_PROTO_IMAGES_MAX);
        if (n == 0)
                return fail(err, LMP_PROTO_BAD_REQUEST, field, "%s: the image is empty", what);
        if (!r->images && !(r->images = calloc(LMP_PROTO_IMAGES_MAX, sizeof(*r->images))))
                return -ENOMEM;
        uint8_t *data = malloc(lmp_base64_decoded_max(n));
        if (!data)
                return -ENOMEM;
        if (lmp_base64_decode(b64, n, data, &len, &at) < 0) {
                free(data);
                return fail(err, LMP_PROTO_BAD_REQUEST, field, "%s is not valid base64 (at character %zu)", what, at);
        }
        r->images[r->n_images++] = (struct lmp_proto_image){ .data = data, .len = len };
        return 0;
}

static int add_data_url(struct lmp_request *r, const char *url, const char *what, struct lmp_proto_error *err);

int lmp_proto_add_image(struct lmp_request *r, const char *text, bool data_url, const char *what,
                        struct lmp_proto_error *err) {
        return data_url ? add_data_url(r, text, what, err) : add_image(r, text, strlen(text), "messages", what, err);
}

/* An array of base64 strings (Ollama's "images"). */
static int parse_image_array(const cJSON *arr, struct lmp_request *r, const char *field, const char *where,
                             uint32_t *ret_n, struct lmp_proto_error *err) {
        char what[64];
        uint32_t n = 0;
        int rc;
        if (!cJSON_IsArray(arr))
                return fail(err, LMP_PROTO_BAD_REQUEST, field, "%simages must be an array of base64 strings", where);
        for (const cJSON *it = arr->child; it; it = it->next, n++) {
                snprintf(what, sizeof(what), "%simages[%u]", where, n);
                if (!cJSON_IsString(it))
                        return fail(err, LMP_PROTO_BAD_REQUEST, field, "%s must be a base64 string", what);
                if ((rc = add_image(r, it->valuestring, strlen(it->valuestring), field, what, err)) < 0)
                        return rc;
        }
        *ret_n = n;
        return 0;
}

/* A data URL's base64 (OpenAI's image_url): data:image/TYPE;base64,DATA. */
static int add_data_url(struct lmp_request *r, const char *url, const char *what, struct lmp_proto_error *err) {
        static const char b64[] = ";base64,";
        const char *comma = strstr(url, b64);
        if (strncmp(url, "data:image/", 11) != 0 || !comma)
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "%s must be a data URL "
                            "(data:image/...;base64,...); URLs are not fetched", what);
        comma += strlen(b64);
        return add_image(r, comma, strlen(comma), "messages", what, err);
}

/* content as OpenAI's parts: {"type": "text", "text"} and {"type":
 * "image_url", "image_url": {"url"} or "image_url": "url"}. The text parts
 * are joined, each image part leaving a marker where it was. */
static int parse_content_parts(const cJSON *arr, size_t i, struct lmp_request *r, struct lmp_message *out,
                               struct lmp_proto_error *err) {
        size_t len = 0, k = 0, cap = 0;
        char what[96];
        int rc;
        for (const cJSON *p = arr->child; p; p = p->next)
                cap += cJSON_IsObject(p) ? 0 : 1;
        if (cap)
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "messages[%zu].content must be a string or an "
                            "array of objects", i);
        /* Room: every text plus a marker per part. */
        for (const cJSON *p = arr->child; p; p = p->next) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
                cap += (cJSON_IsString(t) ? strlen(t->valuestring) : 0) + strlen(LMP_PROTO_MEDIA_MARKER);
        }
        char *text = malloc(cap + 1);
        if (!text)
                return -ENOMEM;
        for (const cJSON *p = arr->child; p; p = p->next, k++) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
                snprintf(what, sizeof(what), "messages[%zu].content[%zu]", i, k);
                if (!cJSON_IsString(type)) {
                        rc = fail(err, LMP_PROTO_BAD_REQUEST, "messages", "%s.type must be a string", what);
                        goto fail;
                }
                if (strcmp(type->valuestring, "text") == 0) {
                        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
                        if (!cJSON_IsString(t)) {
                                rc = fail(err, LMP_PROTO_BAD_REQUEST, "messages", "%s.text must be a string", what);
                                goto fail;
                        }
                        size_t n = strlen(t->valuestring);
                        memcpy(text + len, t->valuestring, n);
                        len += n;
                } else if (strcmp(type->valuestring, "image_url") == 0) {
                        const cJSON *u = cJSON_GetObjectItemCaseSensitive(p, "image_url");
                        if (cJSON_IsObject(u))
                                u = cJSON_GetObjectItemCaseSensitive(u, "url");
                        snprintf(what, sizeof(what), "messages[%zu].content[%zu].image_url.url", i, k);
                        if (!cJSON_IsString(u)) {
                                rc = fail(err, LMP_PROTO_BAD_REQUEST, "messages", "%s must be a string", what);
                                goto fail;
                        }
                        if ((rc = add_data_url(r, u->valuestring, what, err)) < 0)
                                goto fail;
                        memcpy(text + len, LMP_PROTO_MEDIA_MARKER, strlen(LMP_PROTO_MEDIA_MARKER));
                        len += strlen(LMP_PROTO_MEDIA_MARKER);
                        out->n_images++;
                } else {
                        rc = fail(err, LMP_PROTO_BAD_REQUEST, "messages", "%s.type must be text or image_url", what);
                        goto fail;
                }
        }
        text[len] = '\0';
        out->content = text;
        out->content_len = len;
        return 0;
fail:
        free(text);
        return rc;
}

/* A text (a message's content or a prompt) with n images: as many markers
 * as images, or none, and then they all go first. */
static int place_images(char **text, size_t *len, uint32_t n, const char *field, const char *what,
                        struct lmp_proto_error *err) {
        size_t k = count_markers(*text), m = strlen(LMP_PROTO_MEDIA_MARKER);
        if (k == n || n == 0)   /* without images a marker is text (but see parse_messages) */
                return 0;
        if (k != 0)
                return fail(err, LMP_PROTO_BAD_REQUEST, field, "%s marks %zu images (%s) but carries %u", what, k,
                            LMP_PROTO_MEDIA_MARKER, n);
        char *t = malloc(*len + n * m + 1);
        if (!t)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++)
                memcpy(t + i * m, LMP_PROTO_MEDIA_MARKER, m);
        memcpy(t + n * m, *text, *len + 1);
        free(*text);
        *text = t;
        *len += n * m;
        return 0;
}

static int parse_messages(const cJSON *arr, struct lmp_request *r, struct lmp_proto_error *err) {
        if (!cJSON_IsArray(arr))
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "field 'messages' must be an array");
        size_t n = (size_t)cJSON_GetArraySize(arr);
        if (n == 0)
                return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "field 'messages' must not be empty");
        r->messages = calloc(n, sizeof(*r->messages));
        if (!r->messages)
                return -ENOMEM;
        size_t i = 0;
        for (const cJSON *m = arr->child; m; m = m->next, i++) {
                static const char *const names[] = { "role", "content", "tool_calls", "tool_call_id", "name",
                                                     "images" };
                const cJSON *fs[LMP_ARRAY_SIZE(names)] = { 0 };
                if (!cJSON_IsObject(m))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "messages[%zu] must be an object", i);
                for (const cJSON *f = m->child; f; f = f->next) {
                        int k = lookup(names, LMP_ARRAY_SIZE(names), f->string);
                        if (k >= 0 && fs[k])
                                return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                            "messages[%zu]: duplicate field '%s'", i, f->string);
                        if (k >= 0)
                                fs[k] = f;
                }
                const cJSON *role = fs[0], *content = fs[1];
                struct lmp_message *out = &r->messages[i];
                r->n_messages = i + 1;
                if (!role || !cJSON_IsString(role))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu].role must be a string", i);
                int k = lookup(role_names, LMP_ROLE_COUNT, role->valuestring);
                if (k < 0)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu].role must be system, user, assistant or tool", i);
                out->role = (enum lmp_role)k;
                int rc;
                if (fs[2] && out->role != LMP_ROLE_ASSISTANT)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu].tool_calls belongs to assistant messages", i);
                if (fs[2] && (rc = parse_tool_calls(fs[2], i, out, err)) < 0)
                        return rc;
                /* A name on another message (OpenAI's participant name) is
                 * ignored, as before tools. */
                if (out->role != LMP_ROLE_TOOL)
                        fs[3] = fs[4] = NULL;
                if ((rc = opt_message_string(fs[3], i, "tool_call_id", LMP_PROTO_ID_MAX, &out->tool_call_id, err)) < 0 ||
                    (rc = opt_message_string(fs[4], i, "name", LMP_PROTO_TOOL_NAME_MAX, &out->name, err)) < 0)
                        return rc;
                /* Images: on a user message, as Ollama's "images" or as
                 * OpenAI's content parts, not both. */
                bool parts = content && cJSON_IsArray(content);
                if ((fs[5] || parts) && out->role != LMP_ROLE_USER)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu]: images belong to user messages", i);
                if (fs[5] && parts)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu]: images go either in 'images' or in the content's parts", i);
                char where[48];
                if (parts) {
                        snprintf(where, sizeof(where), "messages[%zu].content", i);
                        if ((rc = parse_content_parts(content, i, r, out, err)) < 0 ||
                            (rc = place_images(&out->content, &out->content_len, out->n_images, "messages", where,
                                               err)) < 0)
                                return rc;
                        continue;
                }
                snprintf(where, sizeof(where), "messages[%zu].", i);
                if (fs[5] && (rc = parse_image_array(fs[5], r, "messages", where, &out->n_images, err)) < 0)
                        return rc;
                /* An assistant turn that only called tools has no content. */
                bool empty_ok = out->tool_calls && (!content || cJSON_IsNull(content));
                if (!empty_ok && (!content || !cJSON_IsString(content)))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "messages[%zu].content must be a string", i);
                const char *text = cJSON_IsString(content) ? content->valuestring : "";
                size_t len = strlen(text);
                out->content = dup_n(text, len);
                if (!out->content)
                        return -ENOMEM;
                out->content_len = len;
                snprintf(where, sizeof(where), "messages[%zu].content", i);
                if ((rc = place_images(&out->content, &out->content_len, out->n_images, "messages", where, err)) < 0)
                        return rc;
        }
        /* With images, a marker in a message without one would be taken
         * for an image's place. */
        for (size_t k = 0; r->n_images && k < r->n_messages; k++)
                if (!r->messages[k].n_images && count_markers(r->messages[k].content))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "messages[%zu].content has %s but no "
                                    "image", k, LMP_PROTO_MEDIA_MARKER);
        return 0;
}

/* tools: an array of {"type": "function", "function": {"name", "description"?,
 * "parameters"?}}, bounded in count, bytes and depth, names distinct. Kept
 * as its compact text for the template. */
static int parse_tools(const cJSON *arr, struct lmp_request *r, struct lmp_proto_error *err) {
        if (!cJSON_IsArray(arr))
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools", "field 'tools' must be an array");
        size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
        if (n == 0)
                return 0; /* as if absent, as OpenAI's API takes it */
        if (n > LMP_PROTO_TOOLS_MAX)
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools", "field 'tools' holds at most %d functions, not %zu",
                            LMP_PROTO_TOOLS_MAX, n);
        if (json_depth(arr) > LMP_PROTO_TOOLS_DEPTH_MAX + 3)
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                            "field 'tools': a function's parameters nest at most %d deep", LMP_PROTO_TOOLS_DEPTH_MAX);
        for (const cJSON *t = arr->child; t; t = t->next, i++) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
                const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
                const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
                if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
                    !cJSON_IsObject(fn))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                                    "tools[%zu] must be {\"type\": \"function\", \"function\": {...}}", i);
                if (!cJSON_IsString(name) || !tool_name_ok(name->valuestring))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                                    "tools[%zu].function.name must be 1 to %d letters, digits, '_', '-' or '.'", i,
                                    LMP_PROTO_TOOL_NAME_MAX);
                if (desc && !cJSON_IsString(desc))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tools", "tools[%zu].function.description must be a string",
                                    i);
                if (params && !cJSON_IsObject(params))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                                    "tools[%zu].function.parameters must be a JSON schema object", i);
                size_t k = 0;
                for (const cJSON *u = arr->child; u != t; u = u->next, k++)
                        if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(u, "function"),
                                                                      "name")->valuestring,
                                    name->valuestring))
                                return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                                            "tools[%zu].function.name '%s' is also tools[%zu]'s", i, name->valuestring, k);
        }
        char *text = cJSON_PrintUnformatted(arr);
        if (!text)
                return -ENOMEM;
        size_t len = strlen(text);
        if (len > LMP_PROTO_TOOLS_BYTES_MAX) {
                free(text);
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools", "field 'tools' is %zu bytes as JSON, over the limit of %u",
                            len, LMP_PROTO_TOOLS_BYTES_MAX);
        }
        r->tools = text;
        r->tools_len = len;
        return 0;
}

/* Whether tool i's parameters can constrain a call: absent (any object),
 * or an object schema the JSON grammar compiles. */
static int check_forced_tool(const cJSON *t, size_t i, struct lmp_proto_error *err) {
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"),
                                                               "parameters");
        if (!params)
                return 0;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(params, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "object"))
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools",
                            "tools[%zu].function.parameters must have \"type\": \"object\" for a forced tool_choice", i);
        char *text = cJSON_PrintUnformatted(params);
        if (!text)
                return -ENOMEM;
        struct lmp_json_grammar *g = NULL;
        struct lmp_error e = { 0 };
        int rc = lmp_json_grammar_new_schema(text, strlen(text), &g, &e);
        lmp_json_grammar_unref(g);
        free(text);
        if (rc == -ENOMEM)
                return rc;
        if (rc < 0)
                return fail(err, LMP_PROTO_BAD_REQUEST, "tools", "tools[%zu].function.parameters: %s", i, e.msg);
        return 0;
}

/* tool_choice: "auto", "none", "required" or {"type": "function",
 * "function": {"name"}}; a forced choice needs tools whose parameters the
 * JSON grammar can constrain. */
static int parse_tool_choice(const cJSON *v, const cJSON *tools, struct lmp_request *r,
                             struct lmp_proto_error *err) {
        static const char *const choices[] = { "auto", "none", "required" };
        if (cJSON_IsString(v)) {
                int k = lookup(choices, LMP_ARRAY_SIZE(choices), v->valuestring);
                if (k < 0)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tool_choice",
                                    "field 'tool_choice' must be \"auto\", \"none\", \"required\" or "
                                    "{\"type\": \"function\", \"function\": {\"name\": ...}}");
                r->tool_choice = (enum lmp_tool_choice)k;
        } else {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "function"),
                                                                     "name");
                if (!cJSON_IsObject(v) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
                    !cJSON_IsString(name) || !tool_name_ok(name->valuestring))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "tool_choice",
                                    "field 'tool_choice' must be \"auto\", \"none\", \"required\" or "
                                    "{\"type\": \"function\", \"function\": {\"name\": ...}}");
                r->tool_choice = LMP_TOOL_CHOICE_FUNCTION;
                memcpy(r->tool_name, name->valuestring, strlen(name->valuestring) + 1);
        }
        if (r->tool_choice == LMP_TOOL_CHOICE_AUTO || r->tool_choice == LMP_TOOL_CHOICE_NONE)
                return 0;
        if (!r->tools)
                return fail(err, LMP_PROTO_BAD_REQUEST, "tool_choice", "field 'tool_choice' %s needs 'tools'",
                            r->tool_choice == LMP_TOOL_CHOICE_REQUIRED ? "\"required\"" : "naming a function");
        size_t i = 0;
        bool found = false;
        for (const cJSON *t = tools->child; t; t = t->next, i++) {
                const char *nm =
                        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")
                                ->valuestring;
                if (r->tool_choice == LMP_TOOL_CHOICE_FUNCTION && strcmp(nm, r->tool_name))
                        continue;
                found = true;
                int rc = check_forced_tool(t, i, err);
                if (rc < 0)
                        return rc;
        }
        if (!found)
                return fail(err, LMP_PROTO_BAD_REQUEST, "tool_choice",
                            "field 'tool_choice' names the function '%s', which 'tools' does not hold", r->tool_name);
        return 0;
}

static int parse_stop(const cJSON *arr, struct lmp_request *r, struct lmp_proto_error *err) {
        if (!cJSON_IsArray(arr))
                return fail(err, LMP_PROTO_BAD_REQUEST, "stop", "field 'stop' must be an array of strings");
        if (cJSON_GetArraySize(arr) > LMP_PROTO_STOP_MAX)
                return fail(err, LMP_PROTO_BAD_REQUEST, "stop", "field 'stop' holds at most %d strings",
                            LMP_PROTO_STOP_MAX);
        for (const cJSON *s = arr->child; s; s = s->next) {
                size_t i = r->n_stop;
                if (!cJSON_IsString(s))
                        return fail(err, LMP_PROTO_BAD_REQUEST, "stop", "stop[%zu] must be a string", i);
                size_t len = strlen(s->valuestring);
                if (len < 1 || len > LMP_PROTO_STOP_LEN_MAX)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "stop", "stop[%zu] must be 1 to %d bytes, not %zu",
                                    i, LMP_PROTO_STOP_LEN_MAX, len);
                r->stop[i] = dup_n(s->valuestring, len);
                if (!r->stop[i])
                        return -ENOMEM;
                r->stop_len[i] = len;
                r->n_stop = i + 1;
        }
        return 0;
}

/* The numeric sampling fields, one row each: where the value goes in
 * struct lmp_sampling, its range and its LMP_SET_* bit. */
enum num_kind { NUM_I32, NUM_U64, NUM_F64 };

static const struct sampling_field {
        int field;
        const char *name;
        enum num_kind kind;
        double lo, hi;
        bool lo_open;           /* lo itself is refused (numbers) */
        size_t offset;
        uint32_t set;
} sampling_fields[] = {
#define SF(F, name, kind, lo, hi, lo_open, member, bit) \
        { F, name, kind, lo, hi, lo_open, offsetof(struct lmp_sampling, member), bit }
        SF(F_MAX_TOKENS, "max_tokens", NUM_I32, 1, LMP_PROTO_MAX_TOKENS_MAX, false, max_tokens, LMP_SET_MAX_TOKENS),
        SF(F_TEMPERATURE, "temperature", NUM_F64, 0, 10, false, temperature, LMP_SET_TEMPERATURE),
        SF(F_TOP_K, "top_k", NUM_I32, 0, LMP_PROTO_TOP_K_MAX, false, top_k, LMP_SET_TOP_K),
        SF(F_TOP_P, "top_p", NUM_F64, 0, 1, true, top_p, LMP_SET_TOP_P),
        SF(F_MIN_P, "min_p", NUM_F64, 0, 1, false, min_p, LMP_SET_MIN_P),
        SF(F_REPEAT_PENALTY, "repeat_penalty", NUM_F64, 0, 10, true, repeat_penalty, LMP_SET_REPEAT_PENALTY),
        SF(F_PRESENCE_PENALTY, "presence_penalty", NUM_F64, -10, 10, false, presence_penalty,
           LMP_SET_PRESENCE_PENALTY),
        SF(F_FREQUENCY_PENALTY, "frequency_penalty", NUM_F64, -10, 10, false, frequency_penalty,
           LMP_SET_FREQUENCY_PENALTY),
        SF(F_SEED, "seed", NUM_U64, 0, (double)LMP_PROTO_SEED_MAX, false, seed, LMP_SET_SEED),
#undef SF
};

/* generate and chat: the model, the input and every sampling field. */
static int parse_generation(const cJSON *const *f, struct lmp_request *r, struct lmp_proto_error *err) {
        struct lmp_sampling *s = &r->sampling;
        const char *str = NULL;
        size_t len = 0;
        double d;
        int rc;

        if (!f[F_MODEL])
                return fail(err, LMP_PROTO_BAD_REQUEST, "model", "missing field 'model'");
        if ((rc = get_string(f[F_MODEL], "model", 1, LMP_PROTO_MODEL_MAX, &str, &len, err)) < 0)
                return rc;
        memcpy(r->model, str, len + 1);

        if (r->type == LMP_REQ_GENERATE) {
                if (f[F_MESSAGES])
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages",
                                    "field 'messages' belongs to chat requests; generate takes 'prompt'");
                if (!f[F_PROMPT])
                        return fail(err, LMP_PROTO_BAD_REQUEST, "prompt", "missing field 'prompt'");
                if ((rc = get_string(f[F_PROMPT], "prompt", 0, LMP_PROTO_FRAME_MAX, &str, &len, err)) < 0)
                        return rc;
                if (!(r->prompt = dup_n(str, len)))
                        return -ENOMEM;
                r->prompt_len = len;
                uint32_t n = 0;
                if (f[F_IMAGES] && ((rc = parse_image_array(f[F_IMAGES], r, "images", "", &n, err)) < 0 ||
                                    (rc = place_images(&r->prompt, &r->prompt_len, n, "images", "prompt", err)) < 0))
                        return rc;
        } else {
                if (f[F_IMAGES])
                        return fail(err, LMP_PROTO_BAD_REQUEST, "images",
                                    "field 'images' belongs to generate requests; a chat's go in its messages");
                if (f[F_PROMPT])
                        return fail(err, LMP_PROTO_BAD_REQUEST, "prompt",
                                    "field 'prompt' belongs to generate requests; chat takes 'messages'");
                if (!f[F_MESSAGES])
                        return fail(err, LMP_PROTO_BAD_REQUEST, "messages", "missing field 'messages'");
                if ((rc = parse_messages(f[F_MESSAGES], r, err)) < 0)
                        return rc;
        }

        for (size_t i = 0; i < sizeof(sampling_fields) / sizeof(sampling_fields[0]); i++) {
                const struct sampling_field *sf = &sampling_fields[i];
                if (!f[sf->field])
                        continue;
                void *at = (char *)s + sf->offset;
                if (sf->kind == NUM_F64) {
                        rc = get_number(f[sf->field], sf->name, sf->lo, sf->lo_open, sf->hi, (double *)at, err);
                } else if ((rc = get_int(f[sf->field], sf->name, sf->lo, sf->hi, &d, err)) >= 0) {
                        if (sf->kind == NUM_I32)
                                *(int32_t *)at = (int32_t)d;
                        else
                                *(uint64_t *)at = (uint64_t)d;
                }
                if (rc < 0)
                        return rc;
                s->set |= sf->set;
        }
        if (f[F_STOP] && (rc = parse_stop(f[F_STOP], r, err)) < 0)
                return rc;
        if (f[F_FORMAT] && (rc = parse_format(f[F_FORMAT], r, err)) < 0)
                return rc;
        if ((f[F_TOOLS] || f[F_TOOL_CHOICE]) && r->type != LMP_REQ_CHAT)
                return fail(err, LMP_PROTO_BAD_REQUEST, f[F_TOOLS] ? "tools" : "tool_choice",
                            "field '%s' belongs to chat requests", f[F_TOOLS] ? "tools" : "tool_choice");
        if (f[F_TOOLS] && (rc = parse_tools(f[F_TOOLS], r, err)) < 0)
                return rc;
        if (f[F_TOOL_CHOICE] && (rc = parse_tool_choice(f[F_TOOL_CHOICE], f[F_TOOLS], r, err)) < 0)
                return rc;
        if (f[F_IGNORE_EOS] && (rc = get_bool(f[F_IGNORE_EOS], "ignore_eos", &r->ignore_eos, err)) < 0)
                return rc;
        if (f[F_STREAM] && (rc = get_bool(f[F_STREAM], "stream", &r->stream, err)) < 0)
                return rc;
        if (f[F_RETURN_IDS] && (rc = get_bool(f[F_RETURN_IDS], "return_ids", &r->return_ids, err)) < 0)
                return rc;
        if (f[F_CACHE]) {
                bool cache = true;
                if ((rc = get_bool(f[F_CACHE], "cache", &cache, err)) < 0)
                        return rc;
                r->no_cache = !cache;
        }
        if (f[F_SESSION]) {
                if ((rc = get_string(f[F_SESSION], "session", 1, LMP_PROTO_SESSION_MAX, &str, &len, err)) < 0)
                        return rc;
                memcpy(r->session, str, len + 1);
        }
        if (f[F_TIMEOUT_MS]) {
                if ((rc = get_int(f[F_TIMEOUT_MS], "timeout_ms", 1, LMP_PROTO_TIMEOUT_MS_MAX, &d, err)) < 0)
                        return rc;
                r->timeout_ms = (uint32_t)d;
                s->set |= LMP_SET_TIMEOUT_MS;
        }
        /* A document ends generation: a stop string could cut it short and
         * ignore_eos run past it, both passing off what is not one. */
        if (r->format && r->n_stop)
                return fail(err, LMP_PROTO_BAD_REQUEST, "stop",
                            "field 'stop' cannot be used with 'format': the document's end ends generation");
        if (r->format && r->ignore_eos)
                return fail(err, LMP_PROTO_BAD_REQUEST, "ignore_eos",
                            "field 'ignore_eos' cannot be used with 'format': the document's end ends generation");
        /* The same for a forced call, which is a document too. */
        bool forced = r->tool_choice == LMP_TOOL_CHOICE_REQUIRED || r->tool_choice == LMP_TOOL_CHOICE_FUNCTION;
        if (forced && (r->format || r->n_stop || r->ignore_eos)) {
                const char *what = r->format ? "format" : r->n_stop ? "stop" : "ignore_eos";
                return fail(err, LMP_PROTO_BAD_REQUEST, what,
                            "field '%s' cannot be used with a forced 'tool_choice': the call's end ends generation",
                            what);
        }
        return 0;
}

/* embed: the model, one text or an array of 1 to LMP_PROTO_EMBED_INPUTS_MAX
 * texts, and its flags. Generation's fields are refused by name rather
 * than ignored: a client that sends them has the wrong request type. */
int lmp_proto_embed_inputs(const cJSON *in, struct lmp_request *r, enum lmp_proto_input_fault *ret_fault,
                           size_t *ret_n) {
        if (!cJSON_IsString(in) && !cJSON_IsArray(in)) {
                *ret_fault = LMP_INPUT_NOT_TEXT;
                return -EINVAL;
        }
        size_t n = cJSON_IsArray(in) ? (size_t)cJSON_GetArraySize(in) : 1;
        if (n < 1 || n > LMP_PROTO_EMBED_INPUTS_MAX) {
                *ret_fault = LMP_INPUT_COUNT;
                *ret_n = n;
                return -EINVAL;
        }
        r->input_is_array = cJSON_IsArray(in);
        r->inputs = calloc(n, sizeof(*r->inputs));
        r->input_len = calloc(n, sizeof(*r->input_len));
        if (!r->inputs || !r->input_len)
                return -ENOMEM;
        const cJSON *it = r->input_is_array ? in->child : in;
        for (size_t i = 0; i < n; i++, it = it->next) {
                if (!cJSON_IsString(it)) {
                        *ret_fault = LMP_INPUT_ITEM;
                        *ret_n = i;
                        return -EINVAL;
                }
                size_t len = strlen(it->valuestring);
                if (!(r->inputs[i] = dup_n(it->valuestring, len)))
                        return -ENOMEM;
                r->input_len[i] = len;
                r->n_inputs = i + 1;
        }
        return 0;
}

static int parse_embed(const cJSON *const *f, struct lmp_request *r, struct lmp_proto_error *err) {
        static const int not_embed[] = { F_PROMPT, F_MESSAGES, F_MAX_TOKENS, F_TEMPERATURE, F_TOP_K, F_TOP_P,
                                         F_MIN_P, F_REPEAT_PENALTY, F_PRESENCE_PENALTY, F_FREQUENCY_PENALTY,
                                         F_SEED, F_STOP, F_IGNORE_EOS, F_STREAM, F_FORMAT, F_TOOLS,
                                         F_TOOL_CHOICE };
        const char *str = NULL;
        size_t len = 0;
        double d;
        int rc;

        for (size_t i = 0; i < LMP_ARRAY_SIZE(not_embed); i++)
                if (f[not_embed[i]])
                        return fail(err, LMP_PROTO_BAD_REQUEST, field_names[not_embed[i]],
                                    "field '%s' belongs to generate and chat requests, not embed",
                                    field_names[not_embed[i]]);
        if (!f[F_MODEL])
                return fail(err, LMP_PROTO_BAD_REQUEST, "model", "missing field 'model'");
        if ((rc = get_string(f[F_MODEL], "model", 1, LMP_PROTO_MODEL_MAX, &str, &len, err)) < 0)
                return rc;
        memcpy(r->model, str, len + 1);

        enum lmp_proto_input_fault fault;
        size_t k;
        if (!f[F_INPUT])
                return fail(err, LMP_PROTO_BAD_REQUEST, "input", "missing field 'input'");
        if ((rc = lmp_proto_embed_inputs(f[F_INPUT], r, &fault, &k)) == -EINVAL) {
                if (fault == LMP_INPUT_ITEM)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "input", "input[%zu] must be a string", k);
                if (fault == LMP_INPUT_COUNT)
                        return fail(err, LMP_PROTO_BAD_REQUEST, "input", "field 'input' must hold 1 to %d texts, not %zu",
                                    LMP_PROTO_EMBED_INPUTS_MAX, k);
                return fail(err, LMP_PROTO_BAD_REQUEST, "input", "field 'input' must be a string or an array of strings");
        }
        if (rc < 0)
                return rc;
        r->normalize = true;
        if (f[F_NORMALIZE] && (rc = get_bool(f[F_NORMALIZE], "normalize", &r->normalize, err)) < 0)
                return rc;
        if (f[F_TRUNCATE] && (rc = get_bool(f[F_TRUNCATE], "truncate", &r->truncate, err)) < 0)
                return rc;
        if (f[F_RETURN_IDS] && (rc = get_bool(f[F_RETURN_IDS], "return_ids", &r->return_ids, err)) < 0)
                return rc;
        if (f[F_TIMEOUT_MS]) {
                if ((rc = get_int(f[F_TIMEOUT_MS], "timeout_ms", 1, LMP_PROTO_TIMEOUT_MS_MAX, &d, err)) < 0)
                        return rc;
                r->timeout_ms = (uint32_t)d;
                r->sampling.set |= LMP_SET_TIMEOUT_MS;
        }
        return 0;
}

/* Parses buf into a cJSON tree; the frame is copied so that cJSON sees a
 * NUL-terminated string and trailing garbage is refused. */
static cJSON *parse_json(const void *buf, size_t len, size_t *ret_off, int *ret_rc) {
        char *copy = dup_n(buf, len);
        if (!copy) {
                *ret_rc = -ENOMEM;
                return NULL;
        }
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithOpts(copy, &end, 1);
        *ret_off = root ? 0 : end ? (size_t)(end - copy) : 0;
        *ret_rc = root ? 0 : -EINVAL;
        free(copy);
        return root;
}

static int parse_request(const void *buf, size_t len, size_t max, struct lmp_request *ret,
                         struct lmp_proto_error *err);

int lmp_proto_parse_request(const void *buf, size_t len, struct lmp_request *ret, struct lmp_proto_error *err) {
        return parse_request(buf, len, LMP_PROTO_FRAME_MAX, ret, err);
}

int lmp_proto_parse_job(const void *buf, size_t len, struct lmp_request *ret, struct lmp_proto_error *err) {
        return parse_request(buf, len, LMP_PROTO_JOB_MAX, ret, err);
}

static int parse_request(const void *buf, size_t len, size_t max, struct lmp_request *ret,
                         struct lmp_proto_error *err) {
        struct lmp_request r = { .stream = true };
        const cJSON *f[F_COUNT] = { 0 };
        const char *dup = NULL, *bad_bytes;
        bool id_dup = false;
        size_t off = 0;
        int rc;

        if (err)
                memset(err, 0, sizeof(*err));
        if (len > max) {
                fail(err, LMP_PROTO_BAD_REQUEST, "", "frame of %zu bytes is over the limit of %zu bytes", len, max);
                return -EMSGSIZE;
        }
        cJSON *root = parse_json(buf, len, &off, &rc);
        if (!root) {
                if (rc == -ENOMEM)
                        return fail(err, LMP_PROTO_INTERNAL, "", "out of memory"), -ENOMEM;
                return fail(err, LMP_PROTO_BAD_REQUEST, "", "malformed JSON near byte %zu", off);
        }
        if (!cJSON_IsObject(root)) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "", "a request must be a JSON object");
                goto out;
        }
        for (const cJSON *c = root->child; c; c = c->next) {
                int k = lookup(field_names, F_COUNT, c->string);
                if (k < 0)
                        continue; /* unknown fields are ignored */
                if (f[k] || (k == F_ID && id_dup)) {
                        if (!dup)
                                dup = field_names[k];
                        if (k == F_ID) {
                                id_dup = true; /* which one is the id? neither */
                                f[F_ID] = NULL;
                        }
                        continue;
                }
                f[k] = c;
        }
        /* The id first, so that any later refusal can carry it. */
        if (f[F_ID] && cJSON_IsString(f[F_ID])) {
                size_t n = strlen(f[F_ID]->valuestring);
                if (n >= 1 && n <= LMP_PROTO_ID_MAX) {
                        memcpy(r.id, f[F_ID]->valuestring, n + 1);
                        if (err) {
                                err->has_id = true;
                                memcpy(err->id, r.id, n + 1);
                        }
                }
        }
        if ((bad_bytes = check_bytes(buf, len, &off))) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "", "frame holds %s at byte %zu", bad_bytes, off);
                goto out;
        }
        if (dup) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, dup, "duplicate field '%s'", dup);
                goto out;
        }
        if (!f[F_ID]) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "id", "missing field 'id'");
                goto out;
        }
        const char *str = NULL;
        if ((rc = get_string(f[F_ID], "id", 1, LMP_PROTO_ID_MAX, &str, NULL, err)) < 0)
                goto out;
        if (f[F_V]) {
                double v;
                if ((rc = get_int(f[F_V], "v", 0, 1e9, &v, err)) < 0)
                        goto out;
                if (v != LMP_PROTO_VERSION) {
                        rc = fail(err, LMP_PROTO_BAD_REQUEST, "v", "unsupported protocol version %.0f (this is %d)", v,
                                  LMP_PROTO_VERSION);
                        goto out;
                }
        }
        if (!f[F_TYPE]) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "type", "missing field 'type'");
                goto out;
        }
        if (!cJSON_IsString(f[F_TYPE])) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "type", "field 'type' must be a string");
                goto out;
        }
        int t = lookup(type_names, LMP_REQ_TYPE_COUNT, f[F_TYPE]->valuestring);
        if (t < 0) {
                rc = fail(err, LMP_PROTO_BAD_REQUEST, "type",
                          "unknown type (expected generate, chat, embed, cancel, models, stats or health)");
                goto out;
        }
        r.type = (enum lmp_request_type)t;
        switch (r.type) {
        case LMP_REQ_GENERATE:
        case LMP_REQ_CHAT:
                rc = parse_generation(f, &r, err);
                break;
        case LMP_REQ_EMBED:
                rc = parse_embed(f, &r, err);
                break;
        case LMP_REQ_CANCEL: {
                size_t n = 0;
                if (!f[F_TARGET])
                        rc = fail(err, LMP_PROTO_BAD_REQUEST, "target", "missing field 'target'");
                else if ((rc = get_string(f[F_TARGET], "target", 1, LMP_PROTO_ID_MAX, &str, &n, err)) == 0)
                        memcpy(r.target, str, n + 1);
                break;
        }
        default:
                rc = 0;
                break;
        }
        if (rc == -ENOMEM)
                fail(err, LMP_PROTO_INTERNAL, "", "out of memory");
out:
        cJSON_Delete(root);
        if (rc < 0) {
                lmp_request_clear(&r);
                return rc;
        }
        *ret = r;
        return 0;
}

/* ---- events ---- */

void lmp_event_clear(struct lmp_event *e) {
        if (!e)
                return;
        free(e->text);
        free(e->tool_calls);
        free(e->ids);
        free(e->vectors);
        free(e->ids_off);
        memset(e, 0, sizeof(*e));
}

static double num_or_zero(const cJSON *obj, const char *name) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        return cJSON_IsNumber(it) && isfinite(it->valuedouble) ? it->valuedouble : 0;
}

/* A count: a number in [0, 2^53] (whole in a double, and in an int64_t)
 * as the integer it rounds down to, else 0. */
static int64_t count_or_zero(const cJSON *obj, const char *name) {
        double v = num_or_zero(obj, name);
        return v >= 0 && v <= 9007199254740992.0 ? (int64_t)v : 0;
}

static void copy_str(char *dst, size_t cap, const cJSON *it) {
        snprintf(dst, cap, "%s", cJSON_IsString(it) ? it->valuestring : "");
}

/* "embeddings": [[f, ...], ...] all of one length, optional "ids": [[id,
 * ...], ...] one array per vector, usage, timings, worker. */
static int parse_embedding(const cJSON *root, struct lmp_event *e) {
        const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "embeddings");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "ids");
        if (!cJSON_IsArray(vs) || !vs->child || !cJSON_IsArray(vs->child))
                return -EINVAL;
        size_t n = (size_t)cJSON_GetArraySize(vs), dim = (size_t)cJSON_GetArraySize(vs->child), total;
        if (dim == 0 || lmp_mul_overflow(n, dim, &total) || !(e->vectors = malloc(total * sizeof(float))))
                return dim == 0 ? -EINVAL : -ENOMEM;
        size_t k = 0;
        for (const cJSON *v = vs->child; v; v = v->next) {
                if (!cJSON_IsArray(v) || (size_t)cJSON_GetArraySize(v) != dim)
                        return -EINVAL;
                for (const cJSON *x = v->child; x; x = x->next) {
                        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
                                return -EINVAL;
                        e->vectors[k++] = (float)x->valuedouble;
                }
        }
        e->n_vectors = n;
        e->n_embd = dim;
        if (ids) {
                if (!cJSON_IsArray(ids) || (size_t)cJSON_GetArraySize(ids) != n)
                        return -EINVAL;
                size_t all = 0;
                for (const cJSON *v = ids->child; v; v = v->next) {
                        if (!cJSON_IsArray(v))
                                return -EINVAL;
                        all += (size_t)cJSON_GetArraySize(v);
                }
                e->ids_off = malloc((n + 1) * sizeof(*e->ids_off));
                e->ids = malloc((all ? all : 1) * sizeof(*e->ids));
                if (!e->ids_off || !e->ids)
                        return -ENOMEM;
                size_t i = 0;
                for (const cJSON *v = ids->child; v; v = v->next) {
                        e->ids_off[i++] = e->n_ids;
                        for (const cJSON *x = v->child; x; x = x->next) {
                                if (!is_integer(x) || x->valuedouble < INT32_MIN || x->valuedouble > INT32_MAX)
                                        return -EINVAL;
                                e->ids[e->n_ids++] = (int32_t)x->valuedouble;
                        }
                }
                e->ids_off[n] = e->n_ids;
        }
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "timings");
        e->usage.prompt_tokens = count_or_zero(u, "prompt_tokens");
        e->timings.queued_ms = num_or_zero(tm, "queued_ms");
        e->timings.total_ms = num_or_zero(tm, "total_ms");
        copy_str(e->worker, sizeof(e->worker), cJSON_GetObjectItemCaseSensitive(root, "worker"));
        return 0;
}

int lmp_proto_parse_event(const void *buf, size_t len, struct lmp_event *ret) {
        struct lmp_event e = { 0 };
        size_t off;
        int rc;

        /* A done event carries a whole non-streamed text, escaped: allow
         * far more than a request, but not without bound. */
        if (len > LMP_PROTO_EVENT_MAX)
                return -EMSGSIZE;
        cJSON *root = parse_json(buf, len, &off, &rc);
        if (!root)
                return rc;
        rc = -EINVAL;
        if (!cJSON_IsObject(root))
                goto out;
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "event");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
        if (!cJSON_IsString(ev))
                goto out;
        int t = lookup(event_names, LMP_EVENT_TYPE_COUNT, ev->valuestring);
        if (t < 0) {
                rc = -ENOMSG; /* a newer daemon's event: readers skip it */
                goto out;
        }
        e.type = (enum lmp_event_type)t;
        if (cJSON_IsString(id) && strlen(id->valuestring) <= LMP_PROTO_ID_MAX) {
                e.has_id = true;
                memcpy(e.id, id->valuestring, strlen(id->valuestring) + 1);
        } else if (!(e.type == LMP_EVENT_ERROR && cJSON_IsNull(id))) {
                goto out;
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
        if (cJSON_IsString(text)) {
                e.text_len = strlen(text->valuestring);
                if (!(e.text = dup_n(text->valuestring, e.text_len))) {
                        rc = -ENOMEM;
                        goto out;
                }
        }
        switch (e.type) {
        case LMP_EVENT_TOKEN: {
                if (!e.text)
                        goto out;
                const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "ids");
                if (ids) {
                        if (!cJSON_IsArray(ids))
                                goto out;
                        size_t n = (size_t)cJSON_GetArraySize(ids);
                        if (n && !(e.ids = malloc(n * sizeof(*e.ids)))) {
                                rc = -ENOMEM;
                                goto out;
                        }
                        for (const cJSON *x = ids->child; x; x = x->next) {
                                if (!is_integer(x) || x->valuedouble < INT32_MIN || x->valuedouble > INT32_MAX)
                                        goto out;
                                e.ids[e.n_ids++] = (int32_t)x->valuedouble;
                        }
                }
                break;
        }
        case LMP_EVENT_DONE: {
                const cJSON *fin = cJSON_GetObjectItemCaseSensitive(root, "finish");
                int k = cJSON_IsString(fin) ? lookup(finish_names, LMP_FINISH_COUNT, fin->valuestring) : -1;
                if (k < 0)
                        goto out;
                e.finish = (enum lmp_finish)k;
                const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tool_calls");
                if (tc) {
                        size_t at = 0, n = 0;
                        if (!cJSON_IsArray(tc))
                                goto out;
                        /* The calls' own bytes, so that the arguments' numbers
                         * keep the digits the model wrote; reprinted only if
                         * they cannot be found. */
                        if (lmp_json_member(buf, len, "tool_calls", &at, &n))
                                e.tool_calls = dup_n((const char *)buf + at, n);
                        else
                                e.tool_calls = cJSON_PrintUnformatted(tc);
                        if (!e.tool_calls) {
                                rc = -ENOMEM;
                                goto out;
                        }
                        e.tool_calls_len = strlen(e.tool_calls);
                }
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
                const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "timings");
                e.usage.prompt_tokens = count_or_zero(u, "prompt_tokens");
                e.usage.generated_tokens = count_or_zero(u, "generated_tokens");
                e.usage.cached_tokens = count_or_zero(u, "cached_tokens");
                e.usage.images = count_or_zero(u, "images");
                e.usage.images_cached = count_or_zero(u, "images_cached");
                e.timings.queued_ms = num_or_zero(tm, "queued_ms");
                e.timings.prompt_ms = num_or_zero(tm, "prompt_ms");
                e.timings.ttft_ms = num_or_zero(tm, "ttft_ms");
                e.timings.total_ms = num_or_zero(tm, "total_ms");
                e.timings.tokens_per_s = num_or_zero(tm, "tokens_per_s");
                copy_str(e.worker, sizeof(e.worker), cJSON_GetObjectItemCaseSensitive(root, "worker"));
                break;
        }
        case LMP_EVENT_ERROR: {
                const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "code");
                if (!cJSON_IsString(code))
                        goto out;
                /* A code this client does not know yet is still an error. */
                if (lmp_proto_code_from_name(code->valuestring, &e.code) < 0 || e.code == LMP_PROTO_OK)
                        e.code = LMP_PROTO_INTERNAL;
                copy_str(e.message, sizeof(e.message), cJSON_GetObjectItemCaseSensitive(root, "message"));
                break;
        }
        case LMP_EVENT_EMBEDDING:
                if ((rc = parse_embedding(root, &e)) < 0)
                        goto out;
                break;
        case LMP_EVENT_CANCELLED:
                copy_str(e.target, sizeof(e.target), cJSON_GetObjectItemCaseSensitive(root, "target"));
                e.found = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "found"));
                break;
        default:
                break;
        }
        rc = 0;
out:
        cJSON_Delete(root);
        if (rc < 0) {
                lmp_event_clear(&e);
                return rc;
        }
        *ret = e;
        return 0;
}

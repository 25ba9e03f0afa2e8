/* OpenAI and Ollama request bodies -> struct lmp_request (translate.h).
 * Fields map one to one where the protocol has them; `null` is the same as
 * absent, as OpenAI's SDKs send it; fields that would change the answer in
 * a way we cannot honour (n > 1, logprobs, ...) are
 * refused rather than ignored, and fields that change nothing we do
 * (user, metadata, keep_alive, num_ctx, ...) are ignored. The request is
 * finally written by the protocol's formatter and parsed back with the
 * daemon's parser, so every protocol bound (lengths, ranges, UTF-8, the
 * frame's size) is checked exactly once, in one place. */
#include "http/translate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "sampler/json_grammar.h"

#define JSON_INT_MAX 9007199254740992.0 /* 2^53: beyond it a JSON number is not an exact integer */

static int fail(struct lmp_http_error *err, int status, const char *param, const char *code, const char *fmt,
                ...) LMP_PRINTF(5, 6);
static int fail(struct lmp_http_error *err, int status, const char *param, const char *code, const char *fmt,
                ...) {
        va_list ap;
        if (!err)
                return -EINVAL;
        memset(err, 0, sizeof(*err));
        err->status = status;
        snprintf(err->type, sizeof(err->type), "%s", status >= 500 ? "server_error" : "invalid_request_error");
        snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
        snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

#define BAD(err, param, ...) fail((err), 400, (param), "invalid_request", __VA_ARGS__)

static const cJSON *field(const cJSON *obj, const char *name) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
        return f && !cJSON_IsNull(f) ? f : NULL;
}

/* An optional number: 0 and *ret_set false when absent or null. */
static int opt_number(const cJSON *obj, const char *name, double *ret, bool *ret_set, struct lmp_http_error *err) {
        const cJSON *f = field(obj, name);
        *ret_set = false;
        if (!f)
                return 0;
        if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble))
                return BAD(err, name, "'%s' must be a number", name);
        *ret = f->valuedouble;
        *ret_set = true;
        return 0;
}

static int opt_integer(const cJSON *obj, const char *name, double lo, double hi, long long *ret, bool *ret_set,
                       struct lmp_http_error *err) {
        double v = 0.0; /* read only when *ret_set; GCC 12's -O2 cannot see that */
        int rc = opt_number(obj, name, &v, ret_set, err);
        if (rc < 0 || !*ret_set)
                return rc;
        if (v != floor(v) || fabs(v) > JSON_INT_MAX)
                return BAD(err, name, "'%s' must be an integer", name);
        if (v < lo || v > hi)
                return BAD(err, name, "'%s' must be between %.0f and %.0f", name, lo, hi);
        *ret = (long long)v;
        return 0;
}

static int opt_bool(const cJSON *obj, const char *name, bool *ret, struct lmp_http_error *err) {
        const cJSON *f = field(obj, name);
        if (!f)
                return 0;
        if (!cJSON_IsBool(f))
                return BAD(err, name, "'%s' must be true or false", name);
        *ret = cJSON_IsTrue(f);
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

/* Whether the body holds a \u0000 escape (a backslash preceded by an even
 * number of backslashes) or a NUL byte: C strings cannot carry U+0000, and
 * the protocol refuses it, so we refuse it before cJSON would cut the
 * string short. */
static bool has_nul(const char *s, size_t n) {
        if (memchr(s, '\0', n))
                return true;
        for (size_t i = 0; i + 6 <= n; i++) {
                if (s[i] != '\\')
                        continue;
                size_t run = 1;
                while (i + run < n && s[i + run] == '\\')
                        run++;
                if (run % 2 == 1 && i + run + 5 <= n && memcmp(s + i + run, "u0000", 5) == 0)
                        return true;
                i += run - 1;
        }
        return false;
}

/* stop: a string or an array of strings (OpenAI); an array (Ollama). */
static int get_stop(const cJSON *obj, const char *name, bool array_only, struct lmp_request *r,
                    struct lmp_http_error *err) {
        const cJSON *f = field(obj, name), *e;
        if (!f)
                return 0;
        if (cJSON_IsString(f) && !array_only) {
                if (!(r->stop[0] = dup_n(f->valuestring, strlen(f->valuestring))))
                        return -ENOMEM;
                r->stop_len[0] = strlen(f->valuestring);
                r->n_stop = 1;
                return 0;
        }
        if (!cJSON_IsArray(f))
                return BAD(err, name, array_only ? "'%s' must be an array of strings"
                                                 : "'%s' must be a string or an array of strings", name);
        cJSON_ArrayForEach(e, f) {
                if (!cJSON_IsString(e))
                        return BAD(err, name, "'%s' must hold only strings", name);
                if (r->n_stop == LMP_PROTO_STOP_MAX)
                        return BAD(err, name, "'%s' has more than %d strings", name, LMP_PROTO_STOP_MAX);
                size_t n = strlen(e->valuestring);
                if (!(r->stop[r->n_stop] = dup_n(e->valuestring, n)))
                        return -ENOMEM;
                r->stop_len[r->n_stop++] = n;
        }
        return 0;
}

/* An image into r (lmp_proto_add_image), its error as a 400. */
static int add_image(struct lmp_request *r, const char *text, bool data_url, const char *what,
                     struct lmp_http_error *err) {
        struct lmp_proto_error perr = { 0 };
        int rc = lmp_proto_add_image(r, text, data_url, what, &perr);
        if (rc == -EINVAL)
                return BAD(err, "messages", "%s", perr.message);
        return rc;
}

/* A message's content: a string, null (an assistant turn that only called
 * tools) or OpenAI's array of parts: text, and image_url parts with data
 * URLs, each leaving the protocol's marker where it was. */
static int get_content(const cJSON *m, size_t i, struct lmp_request *r, struct lmp_message *out,
                       struct lmp_http_error *err) {
        const cJSON *c = field(m, "content"), *part;
        char **ret = &out->content;
        size_t *ret_len = &out->content_len;
        size_t len = 0, k = 0;
        char *s;
        int rc;

        if (!c || cJSON_IsString(c)) {
                const char *t = c ? c->valuestring : "";
                if (!(*ret = dup_n(t, strlen(t))))
                        return -ENOMEM;
                *ret_len = strlen(t);
                return 0;
        }
        if (!cJSON_IsArray(c))
                return BAD(err, "messages", "messages[%zu].content must be a string or an array of parts", i);
        cJSON_ArrayForEach(part, c) {
                const cJSON *type = field(part, "type"), *text = field(part, "text");
                if (cJSON_IsString(type) && strcmp(type->valuestring, "image_url") == 0 && out->role == LMP_ROLE_USER) {
                        len += strlen(LMP_PROTO_MEDIA_MARKER);
                        continue;
                }
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0)
                        return BAD(err, "messages", "messages[%zu].content: only parts of type 'text' (and "
                                   "'image_url' in a user message) are supported", i);
                if (!cJSON_IsString(text))
                        return BAD(err, "messages", "messages[%zu].content: a text part needs a string 'text'", i);
                len += strlen(text->valuestring);
                if (len > LMP_PROTO_FRAME_MAX)
                        return fail(err, 413, "messages", "request_too_large",
                                    "messages[%zu].content is over the protocol's frame (%u bytes)", i,
                                    LMP_PROTO_FRAME_MAX);
        }
        if (!(s = malloc(len + 1)))
                return -ENOMEM;
        len = 0;
        cJSON_ArrayForEach(part, c) {
                const cJSON *type = field(part, "type");
                const char *t = LMP_PROTO_MEDIA_MARKER;
                if (strcmp(type->valuestring, "image_url") == 0) {
                        const cJSON *u = field(part, "image_url");
                        char what[96];
                        if (cJSON_IsObject(u))
                                u = field(u, "url");
                        snprintf(what, sizeof(what), "messages[%zu].content[%zu].image_url.url", i, k);
                        if (!cJSON_IsString(u))
                                rc = BAD(err, "messages", "%s must be a string", what);
                        else
                                rc = add_image(r, u->valuestring, true, what, err);
                        if (rc < 0) {
                                free(s);
                                return rc;
                        }
                        out->n_images++;
                } else {
                        t = field(part, "text")->valuestring;
                }
                size_t n = strlen(t);
                memcpy(s + len, t, n);
                len += n;
                k++;
        }
        s[len] = '\0';
        *ret = s;
        *ret_len = len;
        return 0;
}

/* Ollama's "images": base64 strings, for the message out. */
static int get_images(const cJSON *arr, const char *where, struct lmp_request *r, struct lmp_message *out,
                      struct lmp_http_error *err) {
        const cJSON *e;
        size_t k = 0;
        int rc;
        if (!arr || cJSON_IsNull(arr))
                return 0;
        if (!cJSON_IsArray(arr))
                return BAD(err, "images", "%simages must be an array of base64 strings", where);
        cJSON_ArrayForEach(e, arr) {
                char what[64];
                snprintf(what, sizeof(what), "%simages[%zu]", where, k++);
                if (!cJSON_IsString(e))
                        return BAD(err, "images", "%s must be a base64 string", what);
                if ((rc = add_image(r, e->valuestring, false, what, err)) < 0)
                        return rc;
                out->n_images++;
        }
        return 0;
}

static int get_messages(const cJSON *root, bool ollama, struct lmp_request *r, struct lmp_http_error *err) {
        const cJSON *msgs = field(root, "messages"), *m;
        size_t n, i = 0;
        int rc;

        if (!msgs)
                return BAD(err, "messages", "'messages' is required");
        if (!cJSON_IsArray(msgs) || (n = (size_t)cJSON_GetArraySize(msgs)) == 0)
                return BAD(err, "messages", "'messages' must be a non-empty array");
        if (!(r->messages = calloc(n, sizeof(*r->messages))))
                return -ENOMEM;
        cJSON_ArrayForEach(m, msgs) {
                const cJSON *role = field(m, "role");
                struct lmp_message *out = &r->messages[i];
                if (!cJSON_IsObject(m) || !cJSON_IsString(role))
                        return BAD(err, "messages", "messages[%zu] must be an object with a string 'role'", i);
                const char *rs = role->valuestring;
                if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0)
                        out->role = LMP_ROLE_SYSTEM;
                else if (strcmp(rs, "user") == 0)
                        out->role = LMP_ROLE_USER;
                else if (strcmp(rs, "assistant") == 0)
                        out->role = LMP_ROLE_ASSISTANT;
                else if (strcmp(rs, "tool") == 0)
                        out->role = LMP_ROLE_TOOL;
                else
                        return BAD(err, "messages",
                                   "messages[%zu].role '%.64s' is not supported (system, developer, user, assistant, "
                                   "tool)", i, rs);
                if (field(m, "function_call"))
                        return BAD(err, "messages", "messages[%zu]: 'function_call' is not supported; use 'tool_calls'",
                                   i);
                /* The protocol's parser checks the calls and the ids
                 * (check_request); here they are only carried. */
                const cJSON *tc = field(m, "tool_calls"), *tid = field(m, "tool_call_id");
                const cJSON *tname = field(m, ollama ? "tool_name" : "name");
                if (tc && cJSON_IsArray(tc) && cJSON_GetArraySize(tc) == 0)
                        tc = NULL;
                if (tc && out->role == LMP_ROLE_ASSISTANT && !(out->tool_calls = cJSON_PrintUnformatted(tc)))
                        return -ENOMEM;
                if (out->role == LMP_ROLE_TOOL) {
                        if (tid && (!cJSON_IsString(tid) || strlen(tid->valuestring) > LMP_PROTO_ID_MAX))
                                return BAD(err, "messages", "messages[%zu].tool_call_id must be a string of at most %d "
                                           "bytes", i, LMP_PROTO_ID_MAX);
                        if (tid && !(out->tool_call_id = dup_n(tid->valuestring, strlen(tid->valuestring))))
                                return -ENOMEM;
                        if (tname && cJSON_IsString(tname) && strlen(tname->valuestring) <= LMP_PROTO_TOOL_NAME_MAX &&
                            !(out->name = dup_n(tname->valuestring, strlen(tname->valuestring))))
                                return -ENOMEM;
                }
                r->n_messages = ++i;
                if ((rc = get_content(m, i - 1, r, out, err)) < 0)
                        return rc;
                if (ollama && out->role == LMP_ROLE_USER) {
                        char where[48];
                        snprintf(where, sizeof(where), "messages[%zu].", i - 1);
                        if ((rc = get_images(field(m, "images"), where, r, out, err)) < 0)
                                return rc;
                }
        }
        return 0;
}

/* Fields we do not serve: present with anything but their neutral value
 * is a 400 naming them. */
static int refuse_unsupported(const cJSON *root, bool ollama, struct lmp_http_error *err) {
        const cJSON *f;
        if ((f = field(root, "functions")))
                return BAD(err, "functions", "'functions' is not supported; use 'tools'");
        if (ollama) {
                if ((f = field(root, "suffix")) && !(cJSON_IsString(f) && f->valuestring[0] == '\0'))
                        return BAD(err, "suffix", "'suffix' is not supported");
                if ((f = field(root, "template")) && !(cJSON_IsString(f) && f->valuestring[0] == '\0'))
                        return BAD(err, "template", "'template' is not supported: the model's chat template is used");
                if ((f = field(root, "context")) && !(cJSON_IsArray(f) && cJSON_GetArraySize(f) == 0))
                        return BAD(err, "context", "'context' (token continuation) is not supported");
                return 0;
        }
        if ((f = field(root, "n")) && !(cJSON_IsNumber(f) && f->valuedouble == 1))
                return BAD(err, "n", "'n' must be 1: one choice per request");
        if ((f = field(root, "best_of")) && !(cJSON_IsNumber(f) && f->valuedouble == 1))
                return BAD(err, "best_of", "'best_of' must be 1");
        if ((f = field(root, "logprobs")) && !cJSON_IsFalse(f) && !(cJSON_IsNumber(f) && f->valuedouble == 0))
                return BAD(err, "logprobs", "'logprobs' is not supported");
        if ((f = field(root, "top_logprobs")) && !(cJSON_IsNumber(f) && f->valuedouble == 0))
                return BAD(err, "top_logprobs", "'top_logprobs' is not supported");
        if ((f = field(root, "echo")) && !cJSON_IsFalse(f))
                return BAD(err, "echo", "'echo' is not supported");
        if ((f = field(root, "suffix")) && !(cJSON_IsString(f) && f->valuestring[0] == '\0'))
                return BAD(err, "suffix", "'suffix' is not supported");
        if ((f = field(root, "logit_bias")) && !(cJSON_IsObject(f) && !f->child))
                return BAD(err, "logit_bias", "'logit_bias' is not supported");
        return 0;
}

/* tools and tool_choice (both APIs) -> the protocol's fields,
 * which its parser then checks (check_request): the tools' shape, count,
 * size and depth, and a forced choice's schemas. */
static int get_tools(const cJSON *root, struct lmp_request *r, struct lmp_http_error *err) {
        /* tool_choice is OpenAI's; on /api/chat it is lmpool's extension */
        const cJSON *t = field(root, "tools"), *c = field(root, "tool_choice");
        if (t && !cJSON_IsArray(t))
                return BAD(err, "tools", "'tools' must be an array");
        if (t && cJSON_GetArraySize(t) > LMP_PROTO_TOOLS_MAX)
                return BAD(err, "tools", "'tools' holds at most %d functions", LMP_PROTO_TOOLS_MAX);
        if (t && t->child && !(r->tools = cJSON_PrintUnformatted(t)))
                return -ENOMEM;
        if (r->tools) {
                r->tools_len = strlen(r->tools);
                if (r->tools_len > LMP_PROTO_TOOLS_BYTES_MAX)
                        return BAD(err, "tools", "'tools' is %zu bytes as JSON, over the limit of %u", r->tools_len,
                                   LMP_PROTO_TOOLS_BYTES_MAX);
        }
        if (!c)
                return 0;
        if (cJSON_IsString(c)) {
                if (!strcmp(c->valuestring, "auto"))
                        r->tool_choice = LMP_TOOL_CHOICE_AUTO;
                else if (!strcmp(c->valuestring, "none"))
                        r->tool_choice = LMP_TOOL_CHOICE_NONE;
                else if (!strcmp(c->valuestring, "required"))
                        r->tool_choice = LMP_TOOL_CHOICE_REQUIRED;
                else
                        return BAD(err, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or a "
                                   "function");
                if (!r->tools && r->tool_choice == LMP_TOOL_CHOICE_NONE)
                        r->tool_choice = LMP_TOOL_CHOICE_AUTO; /* nothing to choose from: as if absent */
                return 0;
        }
        const cJSON *fn = field(c, "function"), *name = field(fn, "name"), *type = field(c, "type");
        if (!cJSON_IsObject(c) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
            !cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > LMP_PROTO_TOOL_NAME_MAX)
                return BAD(err, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                           "{\"type\": \"function\", \"function\": {\"name\": ...}}");
        r->tool_choice = LMP_TOOL_CHOICE_FUNCTION;
        memcpy(r->tool_name, name->valuestring, strlen(name->valuestring) + 1);
        return 0;
}

/* Constrained output -> the protocol's format: Ollama's "format" ("json",
 * "" for none, or a JSON schema) and OpenAI's "response_format" ({"type":
 * "text"}, {"type": "json_object"}, or {"type": "json_schema",
 * "json_schema": {"name": ..., "schema": {...}, "strict": ...}}). The
 * schema is compiled here too, so that a refusal names the client's field. */
static int get_format(const cJSON *root, bool ollama, struct lmp_request *r, struct lmp_http_error *err) {
        const char *param = ollama ? "format" : "response_format";
        const cJSON *f = field(root, param), *schema = NULL;
        if (!f)
                return 0;
        if (ollama) {
                if (cJSON_IsString(f) && !f->valuestring[0])
                        return 0;
                if (cJSON_IsString(f) && !strcmp(f->valuestring, "json"))
                        schema = NULL;
                else if (cJSON_IsObject(f))
                        schema = f;
                else
                        return BAD(err, param, "'format' must be \"json\" or a JSON schema object");
        } else {
                const cJSON *t = field(f, "type");
                if (!cJSON_IsObject(f) || !cJSON_IsString(t))
                        return BAD(err, param, "'response_format' must be an object with a string 'type'");
                if (!strcmp(t->valuestring, "text"))
                        return 0;
                if (!strcmp(t->valuestring, "json_schema")) {
                        const cJSON *js = field(f, "json_schema");
                        if (!cJSON_IsObject(js) || !cJSON_IsObject(schema = field(js, "schema")))
                                return BAD(err, param, "'response_format.json_schema.schema' must be a JSON schema "
                                                       "object");
                } else if (strcmp(t->valuestring, "json_object")) {
                        return BAD(err, param, "'response_format.type' must be \"text\", \"json_object\" or "
                                               "\"json_schema\"");
                }
        }
        char *text = schema ? cJSON_PrintUnformatted(schema) : NULL;
        if (schema && !text)
                return -ENOMEM;
        if (text) {
                struct lmp_json_grammar *g = NULL;
                struct lmp_error e = { 0 };
                int rc = lmp_json_grammar_new_schema(text, strlen(text), &g, &e);
                lmp_json_grammar_unref(g);
                if (rc < 0) {
                        free(text);
                        return rc == -ENOMEM ? rc : BAD(err, param, "'%s': %s", param, e.msg);
                }
        } else if (!(text = dup_n("\"json\"", 6))) {
                return -ENOMEM;
        }
        r->format = text;
        r->format_len = strlen(text);
        return 0;
}

/* Sampling fields; OpenAI's at the top level, Ollama's under "options". */
static int get_sampling(const cJSON *o, bool ollama, struct lmp_request *r, struct lmp_http_error *err) {
        struct lmp_sampling *s = &r->sampling;
        long long iv;
        double dv;
        bool set;
        int rc;

#define NUM(name, bit, dst)                                                  \
        do {                                                                 \
                if ((rc = opt_number(o, name, &dv, &set, err)) < 0)          \
                        return rc;                                           \
                if (set)                                                     \
                        s->dst = dv, s->set |= (bit);                        \
        } while (0)
        NUM("temperature", LMP_SET_TEMPERATURE, temperature);
        NUM("top_p", LMP_SET_TOP_P, top_p);
        NUM("min_p", LMP_SET_MIN_P, min_p);
        NUM("repeat_penalty", LMP_SET_REPEAT_PENALTY, repeat_penalty);
        NUM("presence_penalty", LMP_SET_PRESENCE_PENALTY, presence_penalty);
        NUM("frequency_penalty", LMP_SET_FREQUENCY_PENALTY, frequency_penalty);
#undef NUM
        if ((rc = opt_integer(o, "top_k", 0, LMP_PROTO_TOP_K_MAX, &iv, &set, err)) < 0)
                return rc;
        if (set)
                s->top_k = (int32_t)iv, s->set |= LMP_SET_TOP_K;
        /* Ollama's default seed is -1 (random), as ours is when absent. */
        if ((rc = opt_integer(o, "seed", ollama ? -1 : 0, (double)LMP_PROTO_SEED_MAX, &iv, &set, err)) < 0)
                return rc;
        if (set && iv >= 0)
                s->seed = (uint64_t)iv, s->set |= LMP_SET_SEED;
        if (ollama) {
                /* num_predict: -1 is "until the end", -2 "until the context is full". */
                if ((rc = opt_integer(o, "num_predict", -2, LMP_PROTO_MAX_TOKENS_MAX, &iv, &set, err)) < 0)
                        return rc;
                if (set && iv == 0)
                        return BAD(err, "num_predict", "'num_predict' must not be 0");
                if (set && iv > 0)
                        s->max_tokens = (int32_t)iv, s->set |= LMP_SET_MAX_TOKENS;
                return get_stop(o, "stop", true, r, err);
        }
        const char *mt = field(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        if ((rc = opt_integer(o, mt, 1, LMP_PROTO_MAX_TOKENS_MAX, &iv, &set, err)) < 0)
                return rc;
        if (set)
                s->max_tokens = (int32_t)iv, s->set |= LMP_SET_MAX_TOKENS;
        return get_stop(o, "stop", false, r, err);
}

static int get_model(const cJSON *root, struct lmp_request *r, struct lmp_http_error *err) {
        const cJSON *m = field(root, "model");
        if (!m)
                return BAD(err, "model", "'model' is required");
        if (!cJSON_IsString(m))
                return BAD(err, "model", "'model' must be a string");
        size_t n = strlen(m->valuestring);
        if (n == 0 || n > LMP_PROTO_MODEL_MAX)
                return BAD(err, "model", "'model' must be 1 to %d bytes", LMP_PROTO_MODEL_MAX);
        memcpy(r->model, m->valuestring, n + 1);
        return 0;
}

/* The protocol's prompt from /v1/completions: a string, or an array of
 * exactly one string. */
static int get_prompt(const cJSON *root, bool required, struct lmp_request *r, bool *ret_present,
                      struct lmp_http_error *err) {
        const cJSON *p = field(root, "prompt");
        *ret_present = false;
        if (!p)
                return required ? BAD(err, "prompt", "'prompt' is required") : 0;
        if (cJSON_IsArray(p) && !required)
                return BAD(err, "prompt", "'prompt' must be a string");
        if (cJSON_IsArray(p)) {
                if (cJSON_GetArraySize(p) != 1 || !cJSON_IsString(p->child))
                        return BAD(err, "prompt", "'prompt' must be a string or an array of one string (one choice "
                                                  "per request; token arrays are not supported)");
                p = p->child;
        }
        if (!cJSON_IsString(p))
                return BAD(err, "prompt", "'prompt' must be a string");
        size_t n = strlen(p->valuestring);
        if (!(r->prompt = dup_n(p->valuestring, n)))
                return -ENOMEM;
        r->prompt_len = n;
        *ret_present = n > 0;
        return 0;
}

/* Ollama's /api/generate without raw: the prompt as a user turn, after the
 * optional system text, rendered with the model's chat template (what
 * Ollama does with its own template). */
static int prompt_to_chat(const cJSON *root, struct lmp_request *r, struct lmp_http_error *err) {
        const cJSON *sys = field(root, "system");
        bool has_sys = cJSON_IsString(sys) && sys->valuestring[0];
        size_t n = has_sys ? 2 : 1, i = 0;
        if (!(r->messages = calloc(n, sizeof(*r->messages))))
                return -ENOMEM;
        if (has_sys) {
                r->messages[0].role = LMP_ROLE_SYSTEM;
                r->messages[0].content_len = strlen(sys->valuestring);
                if (!(r->messages[0].content = dup_n(sys->valuestring, r->messages[0].content_len)))
                        return -ENOMEM;
                r->n_messages = ++i;
        }
        r->messages[i].role = LMP_ROLE_USER;
        r->messages[i].content = r->prompt;
        r->messages[i].content_len = r->prompt_len;
        r->n_messages = i + 1;
        r->prompt = NULL;
        r->prompt_len = 0;
        r->type = LMP_REQ_CHAT;
        return get_images(field(root, "images"), "", r, &r->messages[i], err);
}

/* The protocol's own check: formats the request as the daemon will read
 * it and parses it back with the daemon's parser. */
static int check_request(struct lmp_request *r, struct lmp_http_error *err) {
        struct lmp_proto_buf b = { 0 };
        struct lmp_request back;
        struct lmp_proto_error perr = { 0 };
        int rc;

        memcpy(r->id, "check", 6);
        rc = lmp_proto_format_request(&b, r);
        if (rc == 0 && b.len > LMP_PROTO_FRAME_MAX)
                rc = fail(err, 413, "", "request_too_large",
                          "the request is %zu bytes as the daemon reads it, over the protocol's frame (%u bytes)",
                          b.len, LMP_PROTO_FRAME_MAX);
        else if (rc == 0 && (rc = lmp_proto_parse_request(b.data, b.len, &back, &perr)) == 0)
                lmp_request_clear(&back);
        else if (rc == -EINVAL || rc == -EMSGSIZE)
                rc = BAD(err, perr.field, "%s", perr.message);
        r->id[0] = '\0';
        lmp_proto_buf_free(&b);
        return rc;
}

/* /v1/embeddings and /api/embed -> an embed request: "input" a string or
 * an array of strings (OpenAI's token-id arrays are refused: the protocol
 * takes text); vectors normalized, as both APIs return them. OpenAI's
 * encoding_format is "float" or "base64"; "dimensions" (shortened vectors)
 * is refused. Ollama truncates an over-long input unless "truncate":
 * false; OpenAI refuses it. Ollama's options and keep_alive change
 * nothing here and are ignored. */
static int translate_embed(const cJSON *root, bool ollama, struct lmp_http_call *c, struct lmp_http_error *err) {
        struct lmp_request *r = &c->req;
        const cJSON *in, *f;
        enum lmp_proto_input_fault fault;
        size_t k;
        int rc;

        r->type = LMP_REQ_EMBED;
        r->normalize = true;
        r->truncate = ollama;
        if ((rc = get_model(root, r, err)) < 0)
                return rc;
        if ((f = field(root, "dimensions")))
                return BAD(err, "dimensions", "'dimensions' (shortened vectors) is not supported");
        if (ollama && (rc = opt_bool(root, "truncate", &r->truncate, err)) < 0)
                return rc;
        if (!ollama && (f = field(root, "encoding_format"))) {
                if (!cJSON_IsString(f) || (strcmp(f->valuestring, "float") != 0 && strcmp(f->valuestring, "base64") != 0))
                        return BAD(err, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
                c->base64 = strcmp(f->valuestring, "base64") == 0;
        }
        if (!(in = field(root, "input")))
                return BAD(err, "input", "'input' is required");
        if ((rc = lmp_proto_embed_inputs(in, r, &fault, &k)) == -EINVAL) {
                if (fault == LMP_INPUT_ITEM)
                        return BAD(err, "input", "input[%zu] must be a string (token arrays are not supported)", k);
                if (fault == LMP_INPUT_COUNT)
                        return BAD(err, "input", "'input' must hold 1 to %d strings", LMP_PROTO_EMBED_INPUTS_MAX);
                return BAD(err, "input", "'input' must be a string or an array of strings");
        }
        return rc;
}

int lmp_http_translate(enum lmp_http_api api, const char *body, size_t len, struct lmp_http_call *ret,
                       struct lmp_http_error *err) {
        bool ollama = api == LMP_HTTP_OLLAMA_CHAT || api == LMP_HTTP_OLLAMA_GENERATE;
        struct lmp_http_call c = { .req = { .stream = true } };
        const cJSON *opts = NULL, *so;
        cJSON *root = NULL;
        bool present = false, raw = false;
        int rc;

        if (has_nul(body, len))
                return BAD(err, "", "the body holds U+0000, which no field may contain");
        if (!lmp_proto_utf8_valid(body, len))
                return BAD(err, "", "the body is not valid UTF-8");
        root = cJSON_ParseWithLength(body, len);
        if (!root)
                return BAD(err, "", "the body is not valid JSON");
        if (!cJSON_IsObject(root)) {
                rc = BAD(err, "", "the body must be a JSON object");
                goto out;
        }
        if (api == LMP_HTTP_OPENAI_EMBEDDINGS || api == LMP_HTTP_OLLAMA_EMBED) {
                /* One answer, never streamed. */
                if ((rc = translate_embed(root, api == LMP_HTTP_OLLAMA_EMBED, &c, err)) < 0 ||
                    (rc = check_request(&c.req, err)) < 0)
                        goto out;
                *ret = c;
                c = (struct lmp_http_call){ 0 };
                goto out;
        }
        c.stream = ollama; /* Ollama streams unless told not to; OpenAI only when told to */
        if ((rc = get_model(root, &c.req, err)) < 0 || (rc = opt_bool(root, "stream", &c.stream, err)) < 0 ||
            (rc = refuse_unsupported(root, ollama, err)) < 0)
                goto out;
        if (ollama) {
                opts = field(root, "options");
                if (opts && !cJSON_IsObject(opts)) {
                        rc = BAD(err, "options", "'options' must be an object");
                        goto out;
                }
        } else {
                opts = root;
                if ((so = field(root, "stream_options"))) {
                        if (!cJSON_IsObject(so)) {
                                rc = BAD(err, "stream_options", "'stream_options' must be an object");
                                goto out;
                        }
                        if ((rc = opt_bool(so, "include_usage", &c.include_usage, err)) < 0)
                                goto out;
                }
        }
        if (opts && (rc = get_sampling(opts, ollama, &c.req, err)) < 0)
                goto out;
        if ((rc = get_format(root, ollama, &c.req, err)) < 0)
                goto out;
        /* lmpool's (and llama.cpp server's): generate past end-of-generation tokens */
        if ((rc = opt_bool(root, "ignore_eos", &c.req.ignore_eos, err)) < 0 ||
            (ollama && opts && (rc = opt_bool(opts, "ignore_eos", &c.req.ignore_eos, err)) < 0))
                goto out;
        /* lmpool's conversation name (the router's worker affinity); the
         * gateway also takes it from an X-Session-Id header */
        const cJSON *sess = field(root, "session");
        if (sess) {
                if (!cJSON_IsString(sess) || !sess->valuestring[0] || strlen(sess->valuestring) > LMP_PROTO_SESSION_MAX) {
                        rc = BAD(err, "session", "'session' must be a string of 1 to %d bytes", LMP_PROTO_SESSION_MAX);
                        goto out;
                }
                memcpy(c.req.session, sess->valuestring, strlen(sess->valuestring) + 1);
        }
        switch (api) {
        case LMP_HTTP_OPENAI_CHAT:
        case LMP_HTTP_OLLAMA_CHAT:
                if (field(root, "prompt")) {
                        rc = BAD(err, "prompt", "'prompt' belongs to completions; a chat takes 'messages'");
                        goto out;
                }
                c.req.type = LMP_REQ_CHAT;
                if ((rc = get_messages(root, ollama, &c.req, err)) == 0)
                        rc = get_tools(root, &c.req, err);
                break;
        case LMP_HTTP_OPENAI_COMPLETION:
                c.req.type = LMP_REQ_GENERATE;
                rc = get_prompt(root, true, &c.req, &present, err);
                break;
        case LMP_HTTP_OLLAMA_GENERATE:
                c.req.type = LMP_REQ_GENERATE;
                if ((rc = get_prompt(root, false, &c.req, &present, err)) < 0 ||
                    (rc = opt_bool(root, "raw", &raw, err)) < 0)
                        break;
                if (!present) {
                        /* Ollama's way of loading a model: no generation. */
                        c.load_only = true;
                        free(c.req.prompt);
                        c.req.prompt = NULL;
                        c.req.prompt_len = 0;
                        break;
                }
                if (!raw) {
                        rc = prompt_to_chat(root, &c.req, err);
                } else {
                        struct lmp_message counted = { 0 };  /* a generate's images are the request's */
                        rc = get_images(field(root, "images"), "", &c.req, &counted, err);
                }
                break;
        default:
                rc = BAD(err, "", "unknown API");
                break;
        }
        if (rc < 0)
                goto out;
        if (!c.load_only && (rc = check_request(&c.req, err)) < 0)
                goto out;
        *ret = c;
        c = (struct lmp_http_call){ 0 };
out:
        if (rc == -ENOMEM)
                fail(err, 500, "", "internal", "out of memory");
        lmp_http_call_clear(&c);
        cJSON_Delete(root);
        return rc;
}

void lmp_http_call_clear(struct lmp_http_call *c) {
        if (!c)
                return;
        lmp_request_clear(&c->req);
        memset(c, 0, sizeof(*c));
}

void lmp_http_error_from_code(enum lmp_proto_code code, int *ret_status, const char **ret_type,
                              const char **ret_code) {
        static const struct {
                int status;
                const char *type, *code;
        } map[LMP_PROTO_CODE_COUNT] = {
                [LMP_PROTO_OK] = { 200, "", "" },
                [LMP_PROTO_BAD_REQUEST] = { 400, "invalid_request_error", "invalid_request" },
                [LMP_PROTO_UNKNOWN_MODEL] = { 404, "invalid_request_error", "model_not_found" },
                [LMP_PROTO_BUSY] = { 429, "rate_limit_error", "server_busy" },
                [LMP_PROTO_TOO_LONG] = { 400, "invalid_request_error", "context_length_exceeded" },
                [LMP_PROTO_TIMEOUT] = { 504, "server_error", "timeout" },
                [LMP_PROTO_WORKER_LOST] = { 502, "server_error", "worker_lost" },
                [LMP_PROTO_CANCELLED] = { 499, "server_error", "cancelled" },
                [LMP_PROTO_INTERNAL] = { 500, "server_error", "internal" },
                [LMP_PROTO_SLOW_CONSUMER] = { 503, "server_error", "slow_consumer" },
                [LMP_PROTO_MODEL_FAILED] = { 503, "server_error", "model_failed" },
        };
        unsigned i = (unsigned)code < LMP_PROTO_CODE_COUNT ? (unsigned)code : LMP_PROTO_INTERNAL;
        *ret_status = map[i].status;
        *ret_type = map[i].type;
        *ret_code = map[i].code;
}

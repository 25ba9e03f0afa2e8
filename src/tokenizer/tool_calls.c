/* Tool calls in a model's output (tool_calls.h): syntax detection from a
 * template, extraction from a finished answer, and the streamable prefix of
 * an answer in progress. Mistral writes calls in two forms: a JSON array
 * after [TOOL_CALLS] (v3, Nemo), or, in the newer templates (Magistral,
 * Devstral, Mistral Small 3.2), one [TOOL_CALLS]name[ARGS]{...} per call,
 * with an optional [CALL_ID]id before [ARGS]. */
#include "tokenizer/tool_calls.h"

#include <stdio.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static const struct {
        const char *name, *marker, *prefix, *args_key, *suffix;
} syntaxes[LMP_TOOL_SYNTAX_COUNT] = {
        [LMP_TOOL_HERMES] = { "hermes", "<tool_call>", "<tool_call>\n", "arguments", "\n</tool_call>" },
        [LMP_TOOL_LLAMA3] = { "llama3", NULL, "", "parameters", "" },
        [LMP_TOOL_MISTRAL] = { "mistral", "[TOOL_CALLS]", "[TOOL_CALLS][", "arguments", "]" },
};

#define PYTHON_TAG "<|python_tag|>"

const char *lmp_tool_syntax_name(enum lmp_tool_syntax s) {
        return (unsigned)s < LMP_TOOL_SYNTAX_COUNT ? syntaxes[s].name : NULL;
}

const char *lmp_tool_syntax_prefix(enum lmp_tool_syntax s) {
        return syntaxes[s].prefix;
}

const char *lmp_tool_syntax_args_key(enum lmp_tool_syntax s) {
        return syntaxes[s].args_key;
}

const char *lmp_tool_syntax_suffix(enum lmp_tool_syntax s) {
        return syntaxes[s].suffix;
}

enum lmp_tool_syntax lmp_tool_syntax_detect(const char *t) {
        if (!t)
                return LMP_TOOL_HERMES;
        if (strstr(t, "[TOOL_CALLS]"))
                return LMP_TOOL_MISTRAL;
        if (strstr(t, "<tool_call>"))
                return LMP_TOOL_HERMES;
        /* Llama 3.1-3.3: headers, and calls written as "parameters". */
        if (strstr(t, "<|start_header_id|>") && (strstr(t, PYTHON_TAG) || strstr(t, "\"parameters\"")))
                return LMP_TOOL_LLAMA3;
        return LMP_TOOL_HERMES;
}

static bool is_ws(char c) {
        return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *find(const char *s, size_t n, const char *needle) {
        size_t k = strlen(needle);
        for (size_t i = 0; k <= n && i <= n - k; i++)
                if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0)
                        return s + i;
        return NULL;
}

size_t lmp_tool_streamable(enum lmp_tool_syntax s, const char *text, size_t n) {
        if (s == LMP_TOOL_LLAMA3) {
                size_t i = 0, k = strlen(PYTHON_TAG);
                while (i < n && is_ws(text[i]))
                        i++;
                if (i == n || text[i] == '{')
                        return 0;
                if (memcmp(text + i, PYTHON_TAG, n - i < k ? n - i : k) == 0)
                        return 0;
                return n;
        }
        const char *m = syntaxes[s].marker, *hit = find(text, n, m);
        if (hit)
                return (size_t)(hit - text);
        size_t k = strlen(m);
        for (size_t t = k - 1 < n ? k - 1 : n; t > 0; t--)
                if (memcmp(text + n - t, m, t) == 0)
                        return n - t;
        return n;
}

/* ---- extraction ---- */

struct out {
        char *calls;            /* "[{...},{...}" so far */
        size_t calls_len;
        int n_calls;
        char *content;
        size_t len;
        unsigned long long seed;
};

static int append(char **buf, size_t *len, const char *s, size_t n) {
        char *p = realloc(*buf, *len + n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p + *len, s, n);
        *len += n;
        p[*len] = '\0';
        *buf = p;
        return 0;
}

static int add_content(struct out *o, const char *s, size_t n) {
        return append(&o->content, &o->len, s, n);
}

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* Whitespace as cJSON skips it around values: every byte up to the space. */
static size_t skip_ws(const char *s, size_t n, size_t i) {
        while (i < n && (unsigned char)s[i] <= ' ')
                i++;
        return i;
}

/* Appends the arguments' text without its whitespace, its strings valid
 * UTF-8 without raw control characters (a model may write anything). */
static int put_args(struct out *o, const char *s, size_t n) {
        char *m = malloc(n ? 6 * n : 1);
        if (!m)
                return -ENOMEM;
        size_t k = lmp_json_minify(m, s, n);
        int r = append(&o->calls, &o->calls_len, m, k);
        free(m);
        return r;
}

/* The call object whose text is obj (n bytes, a JSON object) -> appended
 * to o->calls. -EINVAL when it is not a call. */
static int add_call(struct out *o, const char *obj, size_t n) {
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        cJSON *c = cJSON_ParseWithLength(obj, n);
        const char *key = "arguments";
        int r = -EINVAL;
        if (!cJSON_IsObject(c) || o->n_calls >= LMP_TOOL_CALLS_MAX)
                goto out;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(c, key);
        if (!args)
                args = cJSON_GetObjectItemCaseSensitive(c, key = "parameters");
        if (!cJSON_IsString(name) || !name->valuestring[0])
                goto out;
        const char *at = "{}";
        size_t at_len = 2, off = 0;
        cJSON *inner = NULL;
        if (cJSON_IsObject(args)) {
                if (!lmp_json_member(obj, n, key, &off, &at_len))
                        goto out;
                at = obj + off;
        } else if (cJSON_IsString(args)) {
                /* Some models write the arguments as a JSON string. */
                inner = cJSON_ParseWithOpts(args->valuestring, NULL, true);
                bool ok = cJSON_IsObject(inner);
                cJSON_Delete(inner);
                if (!ok)
                        goto out;
                at = args->valuestring;
                at_len = strlen(at);
        } else if (args) {
                goto out;
        }
        char id[LMP_TOOL_CALL_ID_LEN + 1];
        uint64_t x = o->seed + (uint64_t)o->n_calls * 0x100000001b3ull;
        uint64_t v = splitmix64(&x);
        for (int i = 0; i < LMP_TOOL_CALL_ID_LEN; i++, v /= 62)
                id[i] = alnum[v % 62];
        id[LMP_TOOL_CALL_ID_LEN] = '\0';
        size_t nl = strlen(name->valuestring), esc_max = lmp_json_escaped_max(nl);
        char *esc = esc_max ? malloc(esc_max) : NULL;
        char head[64];
        r = -ENOMEM;
        if (!esc)
                goto out;
        size_t el = lmp_json_escape(esc, name->valuestring, nl, true);
        int hl = snprintf(head, sizeof(head), "%s{\"id\":\"%s\",\"name\":", o->n_calls ? "," : "[", id);
        if ((r = append(&o->calls, &o->calls_len, head, (size_t)hl)) < 0 ||
            (r = append(&o->calls, &o->calls_len, esc, el)) < 0 ||
            (r = append(&o->calls, &o->calls_len, ",\"arguments\":", 13)) < 0 || (r = put_args(o, at, at_len)) < 0 ||
            (r = append(&o->calls, &o->calls_len, "}", 1)) < 0) {
                free(esc);
                goto out;
        }
        free(esc);
        o->n_calls++;
        r = 0;
out:
        cJSON_Delete(c);
        return r;
}

/* The one JSON value of s (n bytes) with only whitespace around it:
 * *ret_off and *ret_len its bytes; false when there is none. */
static bool only_value(const char *s, size_t n, size_t *ret_off, size_t *ret_len) {
        size_t i = skip_ws(s, n, 0), e = n;
        while (e > i && (unsigned char)s[e - 1] <= ' ')
                e--;
        if (i == e || s[i] != '{')
                return false;
        cJSON *v = cJSON_ParseWithLength(s + i, e - i);
        bool ok = v != NULL;
        cJSON_Delete(v);
        *ret_off = i;
        *ret_len = e - i;
        return ok && lmp_json_value_len(s + i, e - i) == e - i;
}

static int extract_hermes(struct out *o, const char *text, size_t n) {
        static const char open[] = "<tool_call>", close[] = "</tool_call>";
        const char *p = text, *end = text + n;
        int r;
        for (;;) {
                const char *hit = find(p, (size_t)(end - p), open);
                if (!hit)
                        return add_content(o, p, (size_t)(end - p));
                if ((r = add_content(o, p, (size_t)(hit - p))) < 0)
                        return r;
                const char *body = hit + strlen(open);
                const char *stop = find(body, (size_t)(end - body), close);
                const char *body_end = stop ? stop : end;
                size_t off, len;
                if (!only_value(body, (size_t)(body_end - body), &off, &len))
                        return -EINVAL;
                if ((r = add_call(o, body + off, len)) < 0)
                        return r;
                p = stop ? stop + strlen(close) : end;
        }
}

static int extract_llama3(struct out *o, const char *text, size_t n) {
        size_t i = skip_ws(text, n, 0), k = strlen(PYTHON_TAG), off, len;
        if (n - i >= k && memcmp(text + i, PYTHON_TAG, k) == 0)
                i += k;
        if (!only_value(text + i, n - i, &off, &len))
                return -EINVAL;
        int r = add_call(o, text + i + off, len);
        return r < 0 ? r : add_content(o, "", 0);
}

/* Whether c may be in a function's name in Mistral's newer form. */
static bool name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-' || c == '.';
}

/* The newer form from p (just after the first [TOOL_CALLS]): each call is
 * name, an optional [CALL_ID]id, [ARGS] and one JSON object, and the
 * calls follow each other, each after its own [TOOL_CALLS]. Only
 * whitespace may follow the last. */
static int extract_mistral_args(struct out *o, const char *p, const char *end) {
        static const char marker[] = "[TOOL_CALLS]", call_id[] = "[CALL_ID]", args[] = "[ARGS]";
        int r;
        for (;;) {
                const char *name = p;
                while (p < end && name_char(*p))
                        p++;
                size_t name_len = (size_t)(p - name);
                if (!name_len)
                        return -EINVAL;
                if ((size_t)(end - p) >= strlen(call_id) && memcmp(p, call_id, strlen(call_id)) == 0) {
                        p += strlen(call_id);
                        while (p < end && name_char(*p))
                                p++;
                }
                if ((size_t)(end - p) < strlen(args) || memcmp(p, args, strlen(args)) != 0)
                        return -EINVAL;
                p += strlen(args);
                size_t m = (size_t)(end - p), i = skip_ws(p, m, 0);
                size_t len = i < m && p[i] == '{' ? lmp_json_value_len(p + i, m - i) : 0;
                if (!len)
                        return -EINVAL;
                /* {"name": "<name>", "arguments": <object>}, for add_call. */
                size_t cap = name_len + len + 32;
                char *obj = malloc(cap);
                if (!obj)
                        return -ENOMEM;
                int k = snprintf(obj, cap, "{\"name\":\"%.*s\",\"arguments\":%.*s}", (int)name_len, name, (int)len,
                                 p + i);
                r = k > 0 && (size_t)k < cap ? add_call(o, obj, (size_t)k) : -EINVAL;
                free(obj);
                if (r < 0)
                        return r;
                p += i + len;
                size_t w = skip_ws(p, (size_t)(end - p), 0);
                if (p + w == end)
                        return add_content(o, "", 0);
                if ((size_t)(end - p - w) < strlen(marker) || memcmp(p + w, marker, strlen(marker)) != 0)
                        return -EINVAL;
                p += w + strlen(marker);
        }
}

static int extract_mistral(struct out *o, const char *text, size_t n) {
        static const char marker[] = "[TOOL_CALLS]";
        const char *hit = find(text, n, marker);
        int r;
        if (!hit)
                return -EINVAL;
        if ((r = add_content(o, text, (size_t)(hit - text))) < 0)
                return r;
        const char *p = hit + strlen(marker);
        size_t m = (size_t)(text + n - p), i = skip_ws(p, m, 0);
        if (i < m && p[i] != '[')
                return extract_mistral_args(o, p + i, text + n);
        size_t len = i < m && p[i] == '[' ? lmp_json_value_len(p + i, m - i) : 0;
        cJSON *v = len ? cJSON_ParseWithLength(p + i, len) : NULL;
        bool ok = cJSON_IsArray(v) && v->child;
        cJSON_Delete(v);
        if (!ok)
                return -EINVAL;
        const char *arr = p + i;
        size_t e = len - 1; /* the closing bracket */
        for (size_t k = skip_ws(arr, e, 1); k < e;) {
                size_t el = lmp_json_value_len(arr + k, e - k);
                if (!el || arr[k] != '{')
                        return -EINVAL;
                if ((r = add_call(o, arr + k, el)) < 0)
                        return r;
                k = skip_ws(arr, e, k + el);
                if (k < e && arr[k] == ',')
                        k = skip_ws(arr, e, k + 1);
        }
        return add_content(o, p + i + len, m - i - len);
}

int lmp_tool_calls_extract(enum lmp_tool_syntax s, const char *text, size_t n, unsigned long long seed,
                           char **ret_calls, char **ret_content) {
        struct out o = { .seed = seed };
        int r;
        switch (s) {
        case LMP_TOOL_HERMES: r = extract_hermes(&o, text, n); break;
        case LMP_TOOL_LLAMA3: r = extract_llama3(&o, text, n); break;
        case LMP_TOOL_MISTRAL: r = extract_mistral(&o, text, n); break;
        default: r = -EINVAL; break;
        }
        if (r == 0 && o.n_calls > 0 && o.content)
                r = append(&o.calls, &o.calls_len, "]", 1);
        /* The calls go out as JSON: an answer that our scanner and cJSON
         * read differently (NUL bytes inside a string before a broken
         * escape, found by fuzz_tool_calls) is no call at all, its text
         * stays content. */
        if (r == 0 && o.n_calls > 0 && o.content) {
                /* as a C string, as every reader takes it */
                cJSON *check = strlen(o.calls) == o.calls_len ? cJSON_Parse(o.calls) : NULL;
                if (!cJSON_IsArray(check) || cJSON_GetArraySize(check) != o.n_calls)
                        r = -EINVAL;
                cJSON_Delete(check);
        }
        if (r < 0 || o.n_calls == 0 || !o.content) {
                free(o.calls);
                free(o.content);
                return r == -ENOMEM ? -ENOMEM : 0;
        }
        while (o.len && is_ws(o.content[o.len - 1]))
                o.content[--o.len] = '\0';
        *ret_calls = o.calls;
        *ret_content = o.content;
        return o.n_calls;
}

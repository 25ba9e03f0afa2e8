/* Tool calls in a model's output (tool_calls.h): syntax detection from a
 * template, extraction from a finished answer, and the streamable prefix of
 * an answer in progress. Known limit: Mistral's newer
 * [TOOL_CALLS]name[ARGS]{...} form (Magistral, Devstral 2507 in tool mode)
 * is not parsed; its answers stay content. */
#include "tokenizer/tool_calls.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
        cJSON *calls;
        char *content;
        size_t len;
        unsigned long long seed;
};

static int add_content(struct out *o, const char *s, size_t n) {
        char *p = realloc(o->content, o->len + n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p + o->len, s, n);
        o->len += n;
        p[o->len] = '\0';
        o->content = p;
        return 0;
}

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* A call object -> {"id", "name", "arguments"} appended to o->calls.
 * -EINVAL when it is not a call. */
static int add_call(struct out *o, const cJSON *c) {
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        if (!cJSON_IsObject(c) || cJSON_GetArraySize(o->calls) >= LMP_TOOL_CALLS_MAX)
                return -EINVAL;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(c, "arguments");
        if (!args)
                args = cJSON_GetObjectItemCaseSensitive(c, "parameters");
        if (!cJSON_IsString(name) || !name->valuestring[0])
                return -EINVAL;
        cJSON *a = NULL;
        if (!args)
                a = cJSON_CreateObject();
        else if (cJSON_IsObject(args))
                a = cJSON_Duplicate(args, true);
        else if (cJSON_IsString(args)) {
                /* Some models write the arguments as a JSON string. */
                a = cJSON_Parse(args->valuestring);
                if (a && !cJSON_IsObject(a)) {
                        cJSON_Delete(a);
                        return -EINVAL;
                }
                if (!a)
                        return -EINVAL;
        } else
                return -EINVAL;
        if (!a)
                return -ENOMEM;
        char id[LMP_TOOL_CALL_ID_LEN + 1];
        uint64_t x = o->seed + (uint64_t)cJSON_GetArraySize(o->calls) * 0x100000001b3ull;
        uint64_t r = splitmix64(&x);
        for (int i = 0; i < LMP_TOOL_CALL_ID_LEN; i++, r /= 62)
                id[i] = alnum[r % 62];
        id[LMP_TOOL_CALL_ID_LEN] = '\0';
        cJSON *call = cJSON_CreateObject();
        if (!call || !cJSON_AddStringToObject(call, "id", id) ||
            !cJSON_AddStringToObject(call, "name", name->valuestring)) {
                cJSON_Delete(call);
                cJSON_Delete(a);
                return -ENOMEM;
        }
        cJSON_AddItemToObject(call, "arguments", a);
        cJSON_AddItemToArray(o->calls, call);
        return 0;
}

/* Parses one JSON value from s (n bytes) with only whitespace around it
 * (rest NULL), or the first value with the bytes after it in *rest. */
static cJSON *parse_value(const char *s, size_t n, const char **rest) {
        while (n && is_ws(*s))
                s++, n--;
        if (!n)
                return NULL;
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, false);
        if (!v)
                return NULL;
        if (rest) {
                *rest = end;
                return v;
        }
        for (; end < s + n; end++)
                if (!is_ws(*end)) {
                        cJSON_Delete(v);
                        return NULL;
                }
        return v;
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
                cJSON *v = parse_value(body, (size_t)(body_end - body), NULL);
                if (!v)
                        return -EINVAL;
                r = add_call(o, v);
                cJSON_Delete(v);
                if (r < 0)
                        return r;
                p = stop ? stop + strlen(close) : end;
        }
}

static int extract_llama3(struct out *o, const char *text, size_t n) {
        const char *p = text, *end = text + n;
        while (p < end && is_ws(*p))
                p++;
        if ((size_t)(end - p) >= strlen(PYTHON_TAG) && memcmp(p, PYTHON_TAG, strlen(PYTHON_TAG)) == 0)
                p += strlen(PYTHON_TAG);
        cJSON *v = parse_value(p, (size_t)(end - p), NULL);
        if (!v)
                return -EINVAL;
        int r = add_call(o, v);
        cJSON_Delete(v);
        return r < 0 ? r : add_content(o, "", 0);
}

static int extract_mistral(struct out *o, const char *text, size_t n) {
        static const char marker[] = "[TOOL_CALLS]";
        const char *end = text + n, *hit = find(text, n, marker), *rest = NULL;
        int r;
        if (!hit)
                return -EINVAL;
        if ((r = add_content(o, text, (size_t)(hit - text))) < 0)
                return r;
        const char *p = hit + strlen(marker);
        cJSON *v = parse_value(p, (size_t)(end - p), &rest);
        if (!v)
                return -EINVAL;
        if (!cJSON_IsArray(v) || !v->child) {
                cJSON_Delete(v);
                return -EINVAL;
        }
        for (const cJSON *c = v->child; c; c = c->next)
                if ((r = add_call(o, c)) < 0) {
                        cJSON_Delete(v);
                        return r;
                }
        cJSON_Delete(v);
        return add_content(o, rest, (size_t)(end - rest));
}

int lmp_tool_calls_extract(enum lmp_tool_syntax s, const char *text, size_t n, unsigned long long seed,
                           cJSON **ret_calls, char **ret_content) {
        struct out o = { .calls = cJSON_CreateArray(), .seed = seed };
        int r = -ENOMEM;
        if (!o.calls)
                return -ENOMEM;
        switch (s) {
        case LMP_TOOL_HERMES: r = extract_hermes(&o, text, n); break;
        case LMP_TOOL_LLAMA3: r = extract_llama3(&o, text, n); break;
        case LMP_TOOL_MISTRAL: r = extract_mistral(&o, text, n); break;
        default: r = -EINVAL; break;
        }
        int found = r == 0 ? cJSON_GetArraySize(o.calls) : 0;
        if (found == 0 || !o.content) {
                cJSON_Delete(o.calls);
                free(o.content);
                return r == -ENOMEM ? -ENOMEM : 0;
        }
        while (o.len && is_ws(o.content[o.len - 1]))
                o.content[--o.len] = '\0';
        *ret_calls = o.calls;
        *ret_content = o.content;
        return found;
}

/* The forced tool call's mask (sampler/tool_grammar.h) over a small made-up
 * vocabulary: single bytes and tokens that span its parts ("}}" closes the
 * arguments and the call, a head in one token). Random walks over the
 * allowed tokens never reach a dead end, never allow an end token, and
 * always end in a call of one of the functions whose arguments match its
 * schema; feeding checks the literal parts byte for byte. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/tool_grammar.h"
#include "../check.h"

static const char *const multi[] = {
        "{\"name\": \"", "get_weather", "add", "\", \"arguments\": ", "}}", "\"}}", "\"c\"}", "{\"", "city",
        "unit", "\": \"", "\": ", "{\"name\": \"add\", \"arguments\": {\"a\": 1", ", \"b\": 2}}", "}} ", "\n",
};

static struct lmp_json_tokens *make_tokens(void) {
        struct lmp_json_tokens *t = calloc(1, sizeof(*t));
        size_t n_multi = sizeof(multi) / sizeof(multi[0]);
        t->n = (uint32_t)(95 + n_multi + 1);
        t->off = calloc(t->n + 1, sizeof(*t->off));
        t->bytes = calloc(4096, 1);
        t->eog = calloc(t->n, 1);
        uint32_t k = 0, at = 0;
        for (int c = 0x20; c < 0x7f; c++, k++) {
                t->off[k] = at;
                t->bytes[at++] = (char)c;
        }
        for (size_t i = 0; i < n_multi; i++, k++) {
                t->off[k] = at;
                memcpy(t->bytes + at, multi[i], strlen(multi[i]));
                at += (uint32_t)strlen(multi[i]);
        }
        t->off[k] = at; /* the end token: no bytes */
        t->eog[k++] = 1;
        t->off[k] = at;
        return t;
}

static struct lmp_json_grammar *schema(const char *text) {
        struct lmp_json_grammar *g = NULL;
        struct lmp_error err = { 0 };
        CHECK(lmp_json_grammar_new_schema(text, strlen(text), &g, &err) == 0, "schema: %s", err.msg);
        return g;
}

/* Code points, as maxLength counts them. */
static size_t chars(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += ((unsigned char)*s & 0xc0) != 0x80;
        return n;
}

static bool valid_call(const char *text) {
        cJSON *v = cJSON_Parse(text);
        bool ok = false;
        const cJSON *name = cJSON_GetObjectItem(v, "name"), *a = cJSON_GetObjectItem(v, "arguments");
        if (cJSON_IsString(name) && cJSON_IsObject(a) && cJSON_GetArraySize(v) == 2) {
                if (!strcmp(name->valuestring, "get_weather")) {
                        const cJSON *city = cJSON_GetObjectItem(a, "city"), *unit = cJSON_GetObjectItem(a, "unit");
                        ok = cJSON_IsString(city) && chars(city->valuestring) <= 8 && cJSON_IsString(unit) &&
                             (!strcmp(unit->valuestring, "c") || !strcmp(unit->valuestring, "f"));
                        for (const cJSON *p = a->child; p; p = p->next)
                                ok = ok && (!strcmp(p->string, "city") || !strcmp(p->string, "unit"));
                } else if (!strcmp(name->valuestring, "add")) {
                        const cJSON *x = cJSON_GetObjectItem(a, "a"), *y = cJSON_GetObjectItem(a, "b");
                        ok = cJSON_IsNumber(x) && cJSON_IsNumber(y) && cJSON_GetArraySize(a) == 2;
                }
        }
        cJSON_Delete(v);
        return ok;
}

int main(void) {
        struct lmp_json_tokens *t = make_tokens();
        struct lmp_json_grammar *weather = schema(
                "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":8},"
                "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\",\"unit\"],\"additionalProperties\":false}");
        struct lmp_json_grammar *add = schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                                              "\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"],"
                                              "\"additionalProperties\":false}");
        struct lmp_tool_grammar *tg = NULL;
        struct lmp_error err = { 0 };
        CHECK(lmp_tool_grammar_new(2, "arguments", &tg, &err) == 0, "new: %s", err.msg);
        CHECK(lmp_tool_grammar_add(tg, "get_weather", weather, &err) == 0, "add: %s", err.msg);
        CHECK(lmp_tool_grammar_add(tg, "add", add, &err) == 0, "add: %s", err.msg);
        CHECK(lmp_tool_grammar_add(tg, "third", add, &err) < 0, "a third function in a grammar of two");
        lmp_json_grammar_unref(weather);
        lmp_json_grammar_unref(add);

        /* Feeding: the literal parts byte for byte. */
        static const struct {
                const char *text;
                bool ok, done;
        } feeds[] = {
                { "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": -2}}", true, true },
                { "{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"f\", \"city\": \"Oslo\"}}", true, true },
                { "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}", true, false },
                { "{\"name\": \"sub\"", false, false },
                { "{\"name\":\"add\"", false, false },
                { "{\"name\": \"add\", \"arguments\": {\"a\": 1}}", false, false },
                { "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}} ", false, false },
                { "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2, \"c\": 3}}", false, false },
        };
        struct lmp_tool_allow *a = malloc(sizeof(*a));
        for (size_t i = 0; i < sizeof(feeds) / sizeof(feeds[0]); i++) {
                lmp_tool_allow_init(a, t, tg);
                bool ok = lmp_tool_allow_feed(a, feeds[i].text, strlen(feeds[i].text));
                CHECK(ok == feeds[i].ok, "feed %s: %d", feeds[i].text, ok);
                if (ok)
                        CHECK(lmp_tool_allow_done(a) == feeds[i].done, "feed %s: done %d", feeds[i].text,
                              lmp_tool_allow_done(a));
        }

        /* Random walks over the allowed tokens. */
        int32_t *allowed = malloc(t->n * sizeof(*allowed));
        char out[4096];
        int done = 0, spans = 0;
        srand(1);
        for (int walk = 0; walk < 300; walk++) {
                size_t len = 0;
                lmp_tool_allow_init(a, t, tg);
                for (int step = 0; step < 300 && !lmp_tool_allow_done(a); step++) {
                        uint32_t n = 0;
                        for (uint32_t k = 0; k < t->n; k++)
                                if (lmp_tool_allow(a, (int32_t)k)) {
                                        CHECK(!t->eog[k], "walk %d: an end token allowed", walk);
                                        allowed[n++] = (int32_t)k;
                                }
                        if (n == 0) {
                                out[len] = '\0';
                                CHECK(0, "walk %d: dead end after '%s'", walk, out);
                                break;
                        }
                        /* Prefer the multi-byte tokens half the time, so that spans are tried. */
                        int32_t tok = allowed[(size_t)rand() % n];
                        for (uint32_t k = 0; k < n && rand() % 2; k++)
                                if (allowed[k] >= 95)
                                        tok = allowed[k];
                        uint32_t o = t->off[tok], tl = t->off[tok + 1] - o;
                        spans += tok >= 95 && memchr(t->bytes + o, '}', tl) != NULL;
                        CHECK(lmp_tool_allow_advance(a, tok) == 0, "walk %d: advance refused an allowed token", walk);
                        if (len + tl < sizeof(out)) {
                                memcpy(out + len, t->bytes + o, tl);
                                len += tl;
                        }
                }
                out[len] = '\0';
                if (lmp_tool_allow_done(a)) {
                        done++;
                        CHECK(valid_call(out), "walk %d: '%s' is not a valid call", walk, out);
                }
        }
        CHECK(done >= 250, "only %d of 300 walks ended in a call", done);
        CHECK(spans > 0, "no token spanning the arguments' end was taken");
        printf("tool grammar: %d of 300 walks complete, %d spanning tokens taken\n", done, spans);
        free(allowed);
        free(a);
        lmp_tool_grammar_free(tg);
        lmp_json_tokens_free(t);
        return failures ? 1 : 0;
}

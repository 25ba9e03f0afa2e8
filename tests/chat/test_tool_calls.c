/* Tool calls in a model's output (tokenizer/tool_calls.h): the syntax each
 * real template teaches, extraction in each syntax (one call, several,
 * text around them, and malformed calls that must stay content), and the
 * streamable prefix of an answer in progress. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tool_calls.h"
#include "../check.h"

static char *read_template(const char *name) {
        const char *dir = getenv("LMPOOL_FIXTURES");
        char path[1024];
        snprintf(path, sizeof(path), "%s/templates-real/%s.jinja", dir ? dir : "../shared/fixtures", name);
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
}

static void test_detect(void) {
        static const struct {
                const char *name;
                enum lmp_tool_syntax want;
        } cases[] = {
                { "Qwen-Qwen2.5-7B-Instruct", LMP_TOOL_HERMES },
                { "Qwen-Qwen3-0.6B", LMP_TOOL_HERMES },
                { "NousResearch-Hermes-3-Llama-3.1-8B-tool_use", LMP_TOOL_HERMES },
                { "meta-llama-Llama-3.1-8B-Instruct", LMP_TOOL_LLAMA3 },
                { "meta-llama-Llama-3.3-70B-Instruct", LMP_TOOL_LLAMA3 },
                { "mistralai-Mistral-Nemo-Instruct-2407", LMP_TOOL_MISTRAL },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *t = read_template(cases[i].name);
                if (!t) {
                        printf("fixture %s missing: not checked\n", cases[i].name);
                        continue;
                }
                enum lmp_tool_syntax s = lmp_tool_syntax_detect(t);
                CHECK(s == cases[i].want, "%s: %s", cases[i].name, lmp_tool_syntax_name(s));
        }
        CHECK(lmp_tool_syntax_detect(NULL) == LMP_TOOL_HERMES, "no template");
        CHECK(lmp_tool_syntax_detect("{{ messages }}") == LMP_TOOL_HERMES, "a template without tools");
}

/* Extracts and compares: want_calls a JSON array of [name, arguments]
 * pairs (NULL: no calls) and want_content. */
static void expect(enum lmp_tool_syntax s, const char *text, const char *want_calls, const char *want_content) {
        char *calls_text = NULL, *content = NULL;
        int n = lmp_tool_calls_extract(s, text, strlen(text), 7, &calls_text, &content);
        if (!want_calls) {
                CHECK(n == 0 && !calls_text && !content, "%s: %s: %d calls, not none", lmp_tool_syntax_name(s), text, n);
                free(calls_text);
                free(content);
                return;
        }
        cJSON *calls = calls_text ? cJSON_Parse(calls_text) : NULL;
        CHECK(!calls_text || calls, "%s: calls are not JSON: %s", text, calls_text);
        free(calls_text);
        cJSON *want = cJSON_Parse(want_calls);
        CHECK(want && n == cJSON_GetArraySize(want), "%s: %s: %d calls", lmp_tool_syntax_name(s), text, n);
        if (n > 0 && want && n == cJSON_GetArraySize(want)) {
                const cJSON *c = calls->child, *w = want->child;
                for (; c && w; c = c->next, w = w->next) {
                        const cJSON *id = cJSON_GetObjectItem(c, "id");
                        CHECK(cJSON_IsString(id) && strlen(id->valuestring) == LMP_TOOL_CALL_ID_LEN, "%s: id", text);
                        CHECK(!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, cJSON_GetArrayItem(w, 0)->valuestring),
                              "%s: name", text);
                        CHECK(cJSON_Compare(cJSON_GetObjectItem(c, "arguments"), cJSON_GetArrayItem(w, 1), true),
                              "%s: arguments", text);
                }
                if (n >= 2)
                        CHECK(strcmp(cJSON_GetObjectItem(calls->child, "id")->valuestring,
                                     cJSON_GetObjectItem(calls->child->next, "id")->valuestring),
                              "%s: ids repeat", text);
                CHECK(content && !strcmp(content, want_content), "%s: content '%s', not '%s'", text,
                      content ? content : "(null)", want_content);
        }
        cJSON_Delete(want);
        cJSON_Delete(calls);
        free(content);
}

static void test_extract(void) {
        /* hermes */
        expect(LMP_TOOL_HERMES, "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
               "[[\"get\", {\"city\": \"Paris\"}]]", "");
        expect(LMP_TOOL_HERMES,
               "Let me look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
               "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n",
               "[[\"a\", {}], [\"b\", {\"x\": [1, 2]}]]", "Let me look.");
        expect(LMP_TOOL_HERMES, "<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"k\\\": 1}\"}", /* no close tag */
               "[[\"a\", {\"k\": 1}]]", "");
        expect(LMP_TOOL_HERMES, "no calls here", NULL, NULL);
        expect(LMP_TOOL_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\n</tool_call>", NULL, NULL);
        expect(LMP_TOOL_HERMES, "<tool_call>\n{\"arguments\": {}}\n</tool_call>", NULL, NULL);
        expect(LMP_TOOL_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": [1]}\n</tool_call>", NULL, NULL);
        expect(LMP_TOOL_HERMES,
               "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call><tool_call>oops</tool_call>", NULL, NULL);
        expect(LMP_TOOL_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}} trailing\n</tool_call>", NULL, NULL);
        /* llama3 */
        expect(LMP_TOOL_LLAMA3, " {\"name\": \"get\", \"parameters\": {\"city\": \"Rome\"}}",
               "[[\"get\", {\"city\": \"Rome\"}]]", "");
        expect(LMP_TOOL_LLAMA3, "<|python_tag|>{\"name\": \"get\", \"parameters\": {}}", "[[\"get\", {}]]", "");
        expect(LMP_TOOL_LLAMA3, "{\"name\": \"get\", \"arguments\": {\"a\": 1}}", "[[\"get\", {\"a\": 1}]]", "");
        expect(LMP_TOOL_LLAMA3, "The answer is {\"name\": \"get\"}", NULL, NULL);
        expect(LMP_TOOL_LLAMA3, "{\"name\": \"get\", \"parameters\": {}} and more", NULL, NULL);
        expect(LMP_TOOL_LLAMA3, "{\"title\": \"not a call\"}", NULL, NULL);
        /* mistral */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS][{\"name\": \"get\", \"arguments\": {\"city\": \"Oslo\"}}]",
               "[[\"get\", {\"city\": \"Oslo\"}]]", "");
        expect(LMP_TOOL_MISTRAL,
               "Sure. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"n\": 2}}]",
               "[[\"a\", {}], [\"b\", {\"n\": 2}]]", "Sure.");
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS][]", NULL, NULL);
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]{\"name\": \"a\"}", NULL, NULL);
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}", NULL, NULL);
        expect(LMP_TOOL_MISTRAL, "plain text", NULL, NULL);
        /* mistral, the newer form: name[ARGS]{...} per call */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}",
               "[[\"get_weather\", {\"city\": \"Oslo\"}]]", "");
        expect(LMP_TOOL_MISTRAL, "Looking. [TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b.c[CALL_ID]x9Kq2[ARGS] {\"n\": [1, 2]}\n",
               "[[\"a\", {}], [\"b.c\", {\"n\": [1, 2]}]]", "Looking.");
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]a[ARGS]{\"n\": 1", NULL, NULL);         /* cut short */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]a[ARGS]{} and more", NULL, NULL);       /* text after it */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]a{}", NULL, NULL);                      /* no [ARGS] */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS][ARGS]{}", NULL, NULL);                 /* no name */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]a b[ARGS]{}", NULL, NULL);              /* not a name */
        expect(LMP_TOOL_MISTRAL, "[TOOL_CALLS]a[ARGS][1]", NULL, NULL);               /* not an object */

        /* Ids: the same for the same seed. */
        char *a = NULL, *b = NULL, *ca = NULL, *cb = NULL;
        const char *t = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>";
        CHECK(lmp_tool_calls_extract(LMP_TOOL_HERMES, t, strlen(t), 1, &a, &ca) == 1 &&
                      lmp_tool_calls_extract(LMP_TOOL_HERMES, t, strlen(t), 1, &b, &cb) == 1,
              "extract twice");
        CHECK(a && b && !strcmp(a, b), "ids differ for one seed: %s %s", a, b);
        free(a);
        free(b);
        free(ca);
        free(cb);
        /* The arguments as written: numbers keep their digits, whitespace
         * outside strings goes, the first of two same keys is taken as
         * cJSON takes it, escaped names stay JSON. */
        static const struct {
                const char *text, *want;
        } raw[] = {
                { "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"id\": 12345678901234567890123, \"x\": 1e999,"
                  " \"s\": \"a  b\"}}\n</tool_call>",
                  "[{\"id\":\"*\",\"name\":\"f\",\"arguments\":{\"id\":12345678901234567890123,\"x\":1e999,\"s\":\"a  b\"}}]" },
                { "<tool_call>{\"arguments\" : { \"a\" : [ 1 , 2 ] }, \"arguments\": {\"b\": 0}, \"name\": \"g\\\"\"}"
                  "</tool_call>",
                  "[{\"id\":\"*\",\"name\":\"g\\\"\",\"arguments\":{\"a\":[1,2]}}]" },
                { "<tool_call>{\"name\": \"h\", \"arguments\": \"{\\\"n\\\": 10000000000000000000001}\"}</tool_call>",
                  "[{\"id\":\"*\",\"name\":\"h\",\"arguments\":{\"n\":10000000000000000000001}}]" },
                /* a raw newline and a byte that is not UTF-8 in a string, a
                 * control byte between values (cJSON skips it) */
                { "<tool_call>{\"name\": \"c\", \"arguments\": {\"s\": \"a\nb\xff\",\x01\"t\": \"\\u0000\"}}</tool_call>",
                  "[{\"id\":\"*\",\"name\":\"c\",\"arguments\":{\"s\":\"a\\u000ab\xef\xbf\xbd\",\"t\":\"\\ufffd\"}}]" },
        };
        for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
                char *calls = NULL, *content = NULL;
                int n = lmp_tool_calls_extract(LMP_TOOL_HERMES, raw[i].text, strlen(raw[i].text), 3, &calls, &content);
                CHECK(n == 1, "raw %zu: %d calls", i, n);
                if (n == 1) {
                        /* the id aside: {"id":"XXXXXXXXX" */
                        CHECK(strlen(calls) == strlen(raw[i].want) + LMP_TOOL_CALL_ID_LEN - 1 &&
                                      !strncmp(calls, raw[i].want, 8) &&
                                      !strcmp(calls + 8 + LMP_TOOL_CALL_ID_LEN, raw[i].want + 9),
                              "raw %zu: %s, not %s", i, calls, raw[i].want);
                }
                free(calls);
                free(content);
        }
}

static void test_streamable(void) {
        static const struct {
                enum lmp_tool_syntax s;
                const char *text;
                size_t want;
        } cases[] = {
                { LMP_TOOL_HERMES, "Hello there", 11 },
                { LMP_TOOL_HERMES, "Hello <tool", 6 },
                { LMP_TOOL_HERMES, "Hello <tool_call>{\"na", 6 },
                { LMP_TOOL_HERMES, "a < b", 5 },
                { LMP_TOOL_HERMES, "<", 0 },
                { LMP_TOOL_LLAMA3, "  ", 0 },
                { LMP_TOOL_LLAMA3, " {\"name\"", 0 },
                { LMP_TOOL_LLAMA3, "<|python", 0 },
                { LMP_TOOL_LLAMA3, "<|python_tag|>{", 0 },
                { LMP_TOOL_LLAMA3, " Hi {", 5 },
                { LMP_TOOL_LLAMA3, "<b>", 3 },
                { LMP_TOOL_MISTRAL, "ok [TOOL", 3 },
                { LMP_TOOL_MISTRAL, "ok [TOOL_CALLS][", 3 },
                { LMP_TOOL_MISTRAL, "[1, 2]", 6 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t got = lmp_tool_streamable(cases[i].s, cases[i].text, strlen(cases[i].text));
                CHECK(got == cases[i].want, "%s '%s': %zu, not %zu", lmp_tool_syntax_name(cases[i].s), cases[i].text,
                      got, cases[i].want);
        }
        /* Never smaller for a longer text with the same beginning. */
        const char *long_text = "Hi <tool_x> then <tool_call>\n{\"name\": \"a\"}\n</tool_call> tail";
        for (int s = 0; s < LMP_TOOL_SYNTAX_COUNT; s++) {
                size_t prev = 0;
                for (size_t n = 0; n <= strlen(long_text); n++) {
                        size_t k = lmp_tool_streamable((enum lmp_tool_syntax)s, long_text, n);
                        CHECK(k >= prev && k <= n, "%s: prefix %zu: %zu after %zu", lmp_tool_syntax_name(s), n, k, prev);
                        prev = k;
                }
        }
}

int main(void) {
        test_detect();
        test_extract();
        test_streamable();
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("tool calls: ok\n");
        return 0;
}

/* Unit tests of the gateway's pure parts: the key file, the token bucket
 * and the concurrency limit (keys.c), and the translation of OpenAI and
 * Ollama bodies into protocol requests with the HTTP status of each
 * refusal (translate.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/keys.h"
#include "http/translate.h"
#include "../check.h"

static char *write_tmp(const char *text) {
        static char path[64];
        snprintf(path, sizeof(path), "/tmp/lmp-keys-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
                abort();
        close(fd);
        return path;
}

static void test_keys(void) {
        struct lmp_http_keys *k = NULL;
        char msg[256] = "";
        char *p = write_tmp("# comment\n\nsk-aaaaaaaaaaaaaaaa alice # the first\n  sk-bbbbbbbbbbbbbbbb\n");
        CHECK(lmp_http_keys_load(p, 1.0, 2, 1, &k, msg, sizeof(msg)) == 0, "load: %s", msg);
        unlink(p);
        if (!k)
                return;
        CHECK(k->n == 2, "keys: %zu", k->n);
        CHECK(strcmp(k->v[0].name, "alice") == 0, "name %s", k->v[0].name);
        CHECK(strcmp(k->v[1].name, "key2") == 0, "default name %s", k->v[1].name);
        CHECK(strcmp(k->v[lmp_http_keys_loopback(k)].name, "loopback") == 0, "loopback entry");
        CHECK(lmp_http_keys_find(k, "sk-aaaaaaaaaaaaaaaa", 19) == 0, "find alice");
        CHECK(lmp_http_keys_find(k, "sk-bbbbbbbbbbbbbbbb", 19) == 1, "find key2");
        CHECK(lmp_http_keys_find(k, "sk-aaaaaaaaaaaaaaab", 19) == -1, "a near miss");
        CHECK(lmp_http_keys_find(k, "sk-aaaaaaaaaaaaaaaaa", 20) == -1, "a longer key");
        CHECK(lmp_http_keys_find(k, "sk-aaaaaaaaaaaaaaa", 18) == -1, "a prefix");

        /* burst 2, 1 per second, 1 in flight */
        int retry = 0;
        CHECK(lmp_http_keys_admit(k, 0, 100.0, &retry) == 0, "first");
        CHECK(lmp_http_keys_admit(k, 0, 100.0, &retry) == -EBUSY && retry == 1, "concurrency");
        lmp_http_keys_release(k, 0);
        CHECK(lmp_http_keys_admit(k, 0, 100.0, &retry) == 0, "second (burst)");
        lmp_http_keys_release(k, 0);
        CHECK(lmp_http_keys_admit(k, 0, 100.25, &retry) == -EAGAIN && retry == 1, "rate: retry %d", retry);
        CHECK(lmp_http_keys_admit(k, 0, 101.3, &retry) == 0, "refilled");
        lmp_http_keys_release(k, 0);
        CHECK(lmp_http_keys_admit(k, 1, 100.0, &retry) == 0, "another key's own bucket");
        CHECK(k->v[0].rate_limited == 1 && k->v[0].concurrency_limited == 1 && k->v[0].requests == 3, "counters");
        lmp_http_keys_free(k);
        lmp_http_keys_free(NULL);

        static const struct {
                const char *text, *want;
        } bad[] = {
                { "short\n", ":1: a key must be" },
                { "sk-aaaaaaaaaaaaaaaa\nsk-aaaaaaaaaaaaaaaa\n", ":2: this key is already" },
                { "sk-aaaaaaaaaaaaaaaa loopback\n", "not 'loopback'" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                k = NULL;
                p = write_tmp(bad[i].text);
                CHECK(lmp_http_keys_load(p, 1, 1, 1, &k, msg, sizeof(msg)) < 0 && !k && strstr(msg, bad[i].want),
                      "bad file %zu: %s", i, msg);
                unlink(p);
        }
        CHECK(lmp_http_keys_load("/nonexistent/keys", 1, 1, 1, &k, msg, sizeof(msg)) == -ENOENT, "missing file");
}

static void ok(enum lmp_http_api api, const char *body, struct lmp_http_call *c) {
        struct lmp_http_error err = { 0 };
        memset(c, 0, sizeof(*c));
        CHECK(lmp_http_translate(api, body, strlen(body), c, &err) == 0, "refused %s: %d %s", body, err.status,
              err.message);
}

static void refused(enum lmp_http_api api, const char *body, int status, const char *param) {
        struct lmp_http_call c;
        struct lmp_http_error err = { 0 };
        CHECK(lmp_http_translate(api, body, strlen(body), &c, &err) == -EINVAL, "accepted %s", body);
        CHECK(err.status == status, "%s: status %d, not %d (%s)", body, err.status, status, err.message);
        CHECK(err.message[0], "%s: no message", body);
        if (param)
                CHECK(strcmp(err.param, param) == 0, "%s: param '%s', not '%s'", body, err.param, param);
}

static void test_translate(void) {
        struct lmp_http_call c;

        ok(LMP_HTTP_OPENAI_CHAT,
           "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
           "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
           "{\"role\":\"assistant\",\"content\":null}],"
           "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"seed\":3,"
           "\"stop\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
           "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"user\":\"ignored\",\"logprobs\":false}",
           &c);
        CHECK(c.req.type == LMP_REQ_CHAT && strcmp(c.req.model, "m") == 0, "chat type/model");
        CHECK(c.req.n_messages == 3 && c.req.messages[0].role == LMP_ROLE_SYSTEM &&
                      strcmp(c.req.messages[1].content, "ab") == 0 && c.req.messages[2].content_len == 0,
              "messages");
        CHECK(c.req.sampling.max_tokens == 7, "max_completion_tokens wins: %d", c.req.sampling.max_tokens);
        CHECK(c.req.sampling.temperature == 0.5 && c.req.sampling.top_p == 0.9 && c.req.sampling.seed == 3 &&
                      c.req.sampling.presence_penalty == 0.5 && c.req.sampling.frequency_penalty == -0.5,
              "sampling");
        CHECK(c.req.n_stop == 1 && strcmp(c.req.stop[0], "x") == 0, "stop string");
        CHECK(c.stream && c.include_usage, "stream flags");
        lmp_http_call_clear(&c);

        ok(LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"session\":\"conv-7\"}", &c);
        CHECK(strcmp(c.req.session, "conv-7") == 0, "session");
        lmp_http_call_clear(&c);
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"session\":\"\"}", 400,
                "session");
        ok(LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"p\"],\"stop\":[\"a\",\"b\"],\"max_tokens\":null,\"ignore_eos\":true}",
           &c);
        CHECK(c.req.type == LMP_REQ_GENERATE && strcmp(c.req.prompt, "p") == 0 && c.req.n_stop == 2 && !c.stream &&
                      c.req.ignore_eos &&
                      !(c.req.sampling.set & LMP_SET_MAX_TOKENS),
              "completion");
        lmp_http_call_clear(&c);

        ok(LMP_HTTP_OLLAMA_GENERATE,
           "{\"model\":\"m\",\"prompt\":\"why\",\"system\":\"s\",\"options\":{\"num_predict\":-1,\"seed\":-1,"
           "\"top_k\":5,\"stop\":[\"z\"],\"num_ctx\":4096},\"keep_alive\":\"5m\"}",
           &c);
        CHECK(c.req.type == LMP_REQ_CHAT && c.req.n_messages == 2 && c.req.messages[0].role == LMP_ROLE_SYSTEM &&
                      strcmp(c.req.messages[1].content, "why") == 0 && c.stream,
              "ollama generate as a chat");
        CHECK(!(c.req.sampling.set & (LMP_SET_MAX_TOKENS | LMP_SET_SEED)) && c.req.sampling.top_k == 5 &&
                      c.req.n_stop == 1,
              "ollama options");
        lmp_http_call_clear(&c);
        ok(LMP_HTTP_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"why\",\"raw\":true,\"stream\":false,\"options\":{\"ignore_eos\":true}}", &c);
        CHECK(c.req.type == LMP_REQ_GENERATE && !c.stream && c.req.ignore_eos, "raw generate");
        lmp_http_call_clear(&c);
        ok(LMP_HTTP_OLLAMA_GENERATE, "{\"model\":\"m\"}", &c);
        CHECK(c.load_only, "load only");
        lmp_http_call_clear(&c);
        ok(LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &c);
        CHECK(c.req.type == LMP_REQ_CHAT && c.stream, "ollama chat streams by default");
        lmp_http_call_clear(&c);

        refused(LMP_HTTP_OPENAI_CHAT, "", 400, "");
        refused(LMP_HTTP_OPENAI_CHAT, "{", 400, "");
        refused(LMP_HTTP_OPENAI_CHAT, "[]", 400, "");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"messages\":[]}", 400, "model");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":7,\"messages\":[]}", 400, "model");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "messages");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":7}]}", 400,
                "messages");
        /* tools: OpenAI's calls (arguments a JSON string) and results in
         * messages, the tools list, tool_choice; Ollama's arguments object */
        ok(LMP_HTTP_OPENAI_CHAT,
           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
           "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"abcdefghi\",\"type\":\"function\","
           "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
           "{\"role\":\"tool\",\"tool_call_id\":\"abcdefghi\",\"content\":\"20C\"}],"
           "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":\"object\","
           "\"properties\":{\"city\":{\"type\":\"string\"}}}}}],"
           "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}}}",
           &c);
        CHECK(c.req.n_messages == 3 && c.req.messages[1].tool_calls && strstr(c.req.messages[1].tool_calls, "Paris") &&
                      c.req.messages[2].role == LMP_ROLE_TOOL && strcmp(c.req.messages[2].tool_call_id, "abcdefghi") == 0,
              "tool messages");
        CHECK(c.req.tools && c.req.tool_choice == LMP_TOOL_CHOICE_FUNCTION && strcmp(c.req.tool_name, "get") == 0,
              "tools, tool_choice");
        lmp_http_call_clear(&c);
        ok(LMP_HTTP_OLLAMA_CHAT,
           "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":"
           "{\"name\":\"get\",\"arguments\":{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"content\":\"20C\","
           "\"tool_name\":\"get\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\"}}]}",
           &c);
        CHECK(c.req.messages[1].name && strcmp(c.req.messages[1].name, "get") == 0 && c.req.tools, "ollama tools");
        lmp_http_call_clear(&c);
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
                "[{\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}}]}]}", 400, "messages");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"tool_choice\":\"required\"}", 400, "tool_choice");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}", 400, "tools");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"functions\":[]}", 400, "functions");
        refused(LMP_HTTP_OPENAI_CHAT,
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
                "messages");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000\"}]}",
                400, "");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"n\":2}", 400, "n");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1.5}", 400,
                "max_tokens");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"temperature\":11}", 400,
                "temperature");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"top_p\":0}", 400,
                "top_p");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"seed\":-1}", 400, "seed");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stop\":[\"\"]}", 400,
                "stop");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":1}", 400,
                "stream");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"logprobs\":true}", 400,
                "logprobs");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"prompt\":\"x\"}", 400,
                "prompt");
        refused(LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"m\"}", 400, "prompt");
        refused(LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"\xd7\",\"prompt\":\"a\"}", 400, "");
        refused(LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
        refused(LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"echo\":true}", 400, "echo");
        refused(LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"format\":\"xml\"}", 400,
                "format");
        refused(LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"format\":"
                "{\"type\":\"string\",\"pattern\":\"a\"}}", 400, "format");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"response_format\":"
                "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"oneOf\":[]}}}}", 400,
                "response_format");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"response_format\":"
                "{\"type\":\"json_schema\"}}", 400, "response_format");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"response_format\":"
                "{\"type\":\"yaml\"}}", 400, "response_format");
        refused(LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"response_format\":"
                "{\"type\":\"json_object\"},\"stop\":[\"}\"]}", 400, "stop");
        {
                static const struct {
                        enum lmp_http_api api;
                        const char *body, *format;
                } formats[] = {
                        { LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
                          "\"response_format\":{\"type\":\"json_object\"}}", "\"json\"" },
                        { LMP_HTTP_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
                          "\"response_format\":{\"type\":\"text\"}}", NULL },
                        { LMP_HTTP_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"response_format\":"
                          "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"strict\":true,\"schema\":"
                          "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}}}}",
                          "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}" },
                        { LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],"
                          "\"format\":\"json\"}", "\"json\"" },
                        { LMP_HTTP_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"a\",\"format\":\"\"}", NULL },
                        { LMP_HTTP_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"a\",\"format\":{\"enum\":[1]}}",
                          "{\"enum\":[1]}" },
                };
                for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
                        struct lmp_http_call fc;
                        ok(formats[i].api, formats[i].body, &fc);
                        CHECK(formats[i].format ? fc.req.format && !strcmp(fc.req.format, formats[i].format)
                                                : !fc.req.format,
                              "format %zu: got %s", i, fc.req.format ? fc.req.format : "none");
                        lmp_http_call_clear(&fc);
                }
        }
        refused(LMP_HTTP_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"options\":[]}", 400,
                "options");
        refused(LMP_HTTP_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"a\",\"options\":{\"num_predict\":0}}", 400,
                "num_predict");

        /* a body whose request does not fit one protocol frame: 413 */
        size_t n = (1u << 20) + 100;
        char *big = malloc(n + 64);
        int len = snprintf(big, 64, "{\"model\":\"m\",\"prompt\":\"");
        memset(big + len, 'a', n);
        memcpy(big + len + n, "\"}", 3);
        refused(LMP_HTTP_OPENAI_COMPLETION, big, 413, "");
        free(big);

        int status;
        const char *type, *code;
        lmp_http_error_from_code(LMP_PROTO_BUSY, &status, &type, &code);
        CHECK(status == 429, "busy: %d", status);
        lmp_http_error_from_code(LMP_PROTO_TOO_LONG, &status, &type, &code);
        CHECK(status == 400 && strcmp(code, "context_length_exceeded") == 0, "too_long");
        lmp_http_error_from_code(LMP_PROTO_TIMEOUT, &status, &type, &code);
        CHECK(status == 504, "timeout");
        lmp_http_error_from_code(LMP_PROTO_UNKNOWN_MODEL, &status, &type, &code);
        CHECK(status == 404, "unknown_model");
        lmp_http_error_from_code(LMP_PROTO_WORKER_LOST, &status, &type, &code);
        CHECK(status == 502, "worker_lost");
        lmp_http_error_from_code(LMP_PROTO_MODEL_FAILED, &status, &type, &code);
        CHECK(status == 503, "model_failed");
        lmp_http_error_from_code((enum lmp_proto_code)99, &status, &type, &code);
        CHECK(status == 500, "out of range");
}

int main(void) {
        test_keys();
        test_translate();
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("http units: ok\n");
        return 0;
}

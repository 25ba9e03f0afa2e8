/* Unit tests of src/proto: every field's validation (missing, wrong type,
 * out of range, duplicates), frames that are not JSON, not UTF-8 or too
 * large, the recovery of the id for error events, the canonical request
 * round trip, and the validity of every event's JSON whatever bytes the
 * text holds. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "proto/proto.h"
#include "../check.h"

static int parse(const char *json, struct lmp_request *r, struct lmp_proto_error *e) {
        return lmp_proto_parse_request(json, strlen(json), r, e);
}

/* A frame that must be refused: code, field and whether the id survives. */
struct bad {
        const char *json;
        const char *field;      /* expected err.field */
        const char *id;         /* expected recovered id, NULL: none */
        const char *words;      /* a substring of the message */
};

#define GEN(extra) "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"p\"" extra "}"
#define CHAT(extra) "{\"id\":\"r1\",\"type\":\"chat\",\"model\":\"m\"" extra "}"

#define EMB(extra) "{\"id\":\"r1\",\"type\":\"embed\",\"model\":\"m\"" extra "}"

#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
#define TOOL_F(name, params) "{\"type\":\"function\",\"function\":{\"name\":\"" name "\"" params "}}"

#define IMG_MSG(extra) "{\"role\":\"user\",\"content\":\"x\"" extra "}"
#define PART_URL(url) "{\"type\":\"image_url\",\"image_url\":{\"url\":\"" url "\"}}"

static const struct bad bad_frames[] = {
        /* images */
        { GEN(",\"images\":\"QUJD\""), "images", "r1", "images must be an array of base64 strings" },
        { GEN(",\"images\":[1]"), "images", "r1", "images[0] must be a base64 string" },
        { GEN(",\"images\":[\"QUJD\",\"ab$d\"]"), "images", "r1", "images[1] is not valid base64 (at character 2)" },
        { GEN(",\"images\":[\"QUJDR\"]"), "images", "r1", "images[0] is not valid base64" },
        { GEN(",\"images\":[\"QQ=\"]"), "images", "r1", "is not valid base64" },
        { GEN(",\"images\":[\"QR==\"]"), "images", "r1", "is not valid base64" },
        { GEN(",\"images\":[\"QU JD\"]"), "images", "r1", "is not valid base64 (at character 2)" },
        { GEN(",\"images\":[\"QUJD===\"]"), "images", "r1", "is not valid base64" },
        { GEN(",\"images\":[\"\"]"), "images", "r1", "images[0]: the image is empty" },
        { GEN(",\"images\":[\"QQ\",\"QQ\",\"QQ\",\"QQ\",\"QQ\",\"QQ\",\"QQ\",\"QQ\",\"QQ\"]"), "images", "r1",
          "images[8]: a request carries at most 8 images" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"<__media__>a<__media__>\","
          "\"images\":[\"QQ\"]}", "images", "r1", "prompt marks 2 images (<__media__>) but carries 1" },
        { CHAT("," USER ",\"images\":[\"QQ\"]"), "images", "r1", "belongs to generate requests" },
        { CHAT(",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\",\"images\":[\"QQ\"]}]"), "messages",
          "r1", "messages[0]: images belong to user messages" },
        { CHAT(",\"messages\":[" IMG_MSG(",\"images\":[\"Q\"]") "]"), "messages", "r1",
          "messages[0].images[0] is not valid base64" },
        { CHAT(",\"messages\":[" IMG_MSG(",\"images\":{}") "]"), "messages", "r1",
          "messages[0].images must be an array" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[" PART_URL("http://x/a.png") "]}]"), "messages",
          "r1", "messages[0].content[0].image_url.url must be a data URL" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[" PART_URL("data:text/plain;base64,QQ") "]}]"),
          "messages", "r1", "must be a data URL" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[" PART_URL("data:image/png;base64,%%") "]}]"),
          "messages", "r1", "messages[0].content[0].image_url.url is not valid base64 (at character 0)" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]"),
          "messages", "r1", "image_url.url must be a string" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]"), "messages",
          "r1", "messages[0].content[0].type must be text or image_url" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]"), "messages",
          "r1", "messages[0].content[0].text must be a string" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[7]}]"), "messages", "r1",
          "must be a string or an array of objects" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[" PART_URL("data:image/png;base64,QQ") "],"
               "\"images\":[\"QQ\"]}]"), "messages", "r1", "either in 'images' or in the content's parts" },
        { CHAT(",\"messages\":[{\"role\":\"system\",\"content\":[" PART_URL("data:image/png;base64,QQ") "]}]"),
          "messages", "r1", "images belong to user messages" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"<__media__>\"}," IMG_MSG(",\"images\":[\"QQ\"]")
               "]"), "messages", "r1", "messages[0].content has <__media__> but no image" },
        /* tools */
        { GEN(",\"tools\":[" TOOL_F("f", "") "]"), "tools", "r1", "belongs to chat requests" },
        { CHAT("," USER ",\"tools\":{}"), "tools", "r1", "must be an array" },
        { CHAT("," USER ",\"tools\":[{\"type\":\"function\"}]"), "tools", "r1", "tools[0] must be" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("a b", "") "]"), "tools", "r1", "tools[0].function.name must be" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", "") "," TOOL_F("f", "") "]"), "tools", "r1",
          "is also tools[0]'s" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", ",\"parameters\":[]") "]"), "tools", "r1",
          "parameters must be a JSON schema object" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", ",\"parameters\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
               "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}") "]"), "tools", "r1", "nest at most 32 deep" },
        { CHAT("," USER ",\"tool_choice\":\"required\""), "tool_choice", "r1", "needs 'tools'" },
        { CHAT("," USER ",\"tool_choice\":\"always\""), "tool_choice", "r1", "must be \"auto\"" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", "") "],\"tool_choice\":{\"type\":\"function\",\"function\":"
               "{\"name\":\"g\"}}"), "tool_choice", "r1", "'tools' does not hold" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", ",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":"
               "{\"type\":\"string\",\"pattern\":\"x\"}}}") "],\"tool_choice\":\"required\""), "tools", "r1",
          "tools[0].function.parameters: schema /properties/a: unsupported keyword \"pattern\"" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", ",\"parameters\":{\"type\":\"string\"}") "],"
               "\"tool_choice\":\"required\""), "tools", "r1", "\"type\": \"object\" for a forced" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", "") "],\"tool_choice\":\"required\",\"format\":\"json\""),
          "format", "r1", "cannot be used with a forced 'tool_choice'" },
        { CHAT("," USER ",\"tools\":[" TOOL_F("f", "") "],\"tool_choice\":\"required\",\"stop\":[\"a\"]"),
          "stop", "r1", "cannot be used with a forced 'tool_choice'" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]"), "messages", "r1",
          "tool_calls belongs to assistant messages" },
        { CHAT(",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
               "\"arguments\":\"[1]\"}}]}]"), "messages", "r1", "tool_calls[0].function.arguments must be a JSON object" },
        { CHAT(",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\"}]}]"), "messages",
          "r1", "tool_calls[0] must be an object with an object 'function'" },
        { CHAT(",\"messages\":[{\"role\":\"tool\"}]"), "messages", "r1", "messages[0].content must be a string" },
        /* format: constrained output */
        { GEN(",\"format\":\"xml\""), "format", "r1", "must be \"json\" or a JSON schema object" },
        { GEN(",\"format\":7"), "format", "r1", "must be \"json\" or a JSON schema object" },
        { GEN(",\"format\":{\"type\":\"string\",\"pattern\":\"a+\"}"), "format", "r1",
          "unsupported keyword \"pattern\"" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"format\":{\"properties\":"
               "{\"a\":{\"oneOf\":[]}}}"), "format", "r1", "/properties/a: unsupported keyword \"oneOf\"" },
        { GEN(",\"format\":{\"enum\":[]}"), "format", "r1", "enum is empty" },
        { GEN(",\"format\":\"json\",\"stop\":[\"}\"]"), "stop", "r1", "cannot be used with 'format'" },
        { GEN(",\"format\":\"json\",\"ignore_eos\":true"), "ignore_eos", "r1", "cannot be used with 'format'" },
        { EMB(",\"input\":\"a\",\"format\":\"json\""), "format", "r1", "not embed" },
        /* embed */
        { EMB(""), "input", "r1", "missing field 'input'" },
        { EMB(",\"input\":7"), "input", "r1", "a string or an array" },
        { EMB(",\"input\":[]"), "input", "r1", "1 to 256 texts" },
        { EMB(",\"input\":[\"a\",7]"), "input", "r1", "input[1] must be a string" },
        { EMB(",\"input\":\"a\",\"normalize\":1"), "normalize", "r1", "true or false" },
        { EMB(",\"input\":\"a\",\"truncate\":\"yes\""), "truncate", "r1", "true or false" },
        { EMB(",\"input\":\"a\",\"prompt\":\"p\""), "prompt", "r1", "not embed" },
        { EMB(",\"input\":\"a\",\"temperature\":0"), "temperature", "r1", "not embed" },
        { "{\"id\":\"r1\",\"type\":\"embed\",\"input\":\"a\"}", "model", "r1", "missing field 'model'" },
        /* syntax and shape */
        { "", "", NULL, "malformed JSON" },
        { "{", "", NULL, "malformed JSON" },
        { "{\"id\":\"r1\",}", "", NULL, "malformed JSON" },
        { "[1,2]", "", NULL, "JSON object" },
        { "\"generate\"", "", NULL, "JSON object" },
        { GEN("") " trailing", "", NULL, "malformed JSON" },
        { "null", "", NULL, "JSON object" },
        /* id */
        { "{\"type\":\"models\"}", "id", NULL, "missing field 'id'" },
        { "{\"id\":7,\"type\":\"models\"}", "id", NULL, "must be a string" },
        { "{\"id\":\"\",\"type\":\"models\"}", "id", NULL, "1 to 128 bytes" },
        { "{\"id\":null,\"type\":\"models\"}", "id", NULL, "must be a string" },
        { "{\"id\":\"a\",\"id\":\"b\",\"type\":\"models\"}", "id", NULL, "duplicate field 'id'" },
        /* v */
        { "{\"v\":2,\"id\":\"r1\",\"type\":\"models\"}", "v", "r1", "unsupported protocol version 2" },
        { "{\"v\":\"1\",\"id\":\"r1\",\"type\":\"models\"}", "v", "r1", "integer" },
        { "{\"v\":1.5,\"id\":\"r1\",\"type\":\"models\"}", "v", "r1", "integer" },
        /* type */
        { "{\"id\":\"r1\"}", "type", "r1", "missing field 'type'" },
        { "{\"id\":\"r1\",\"type\":\"summon\"}", "type", "r1", "unknown type" },
        { "{\"id\":\"r1\",\"type\":\"Generate\"}", "type", "r1", "unknown type" },
        { "{\"id\":\"r1\",\"type\":3}", "type", "r1", "must be a string" },
        { "{\"id\":\"r1\",\"type\":\"models\",\"type\":\"stats\"}", "type", "r1", "duplicate field 'type'" },
        /* model, prompt, messages */
        { "{\"id\":\"r1\",\"type\":\"generate\",\"prompt\":\"p\"}", "model", "r1", "missing field 'model'" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"\",\"prompt\":\"p\"}", "model", "r1", "1 to 128" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":[],\"prompt\":\"p\"}", "model", "r1", "string" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\"}", "prompt", "r1", "missing field 'prompt'" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":5}", "prompt", "r1", "string" },
        { GEN(",\"messages\":[]"), "messages", "r1", "belongs to chat" },
        { GEN(",\"prompt\":\"q\""), "prompt", "r1", "duplicate field 'prompt'" },
        { CHAT(""), "messages", "r1", "missing field 'messages'" },
        { CHAT(",\"messages\":[]"), "messages", "r1", "must not be empty" },
        { CHAT(",\"messages\":{}"), "messages", "r1", "array" },
        { CHAT(",\"messages\":[\"hi\"]"), "messages", "r1", "messages[0] must be an object" },
        { CHAT(",\"messages\":[{\"role\":\"user\"}]"), "messages", "r1", "messages[0].content" },
        { CHAT(",\"messages\":[{\"content\":\"x\"}]"), "messages", "r1", "messages[0].role" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"god\",\"content\":\"x\"}]"),
          "messages", "r1", "messages[1].role must be" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"content\":1}]"), "messages", "r1", "messages[0].content" },
        { CHAT(",\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]"), "messages", "r1",
          "duplicate field 'role'" },
        { CHAT(",\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"), "prompt", "r1",
          "belongs to generate" },
        /* sampling */
        { GEN(",\"max_tokens\":0"), "max_tokens", "r1", "must be 1 to" },
        { GEN(",\"max_tokens\":-5"), "max_tokens", "r1", "must be 1 to" },
        { GEN(",\"max_tokens\":1.5"), "max_tokens", "r1", "integer" },
        { GEN(",\"max_tokens\":\"10\""), "max_tokens", "r1", "integer" },
        { GEN(",\"max_tokens\":1e300"), "max_tokens", "r1", "must be 1 to" },
        { GEN(",\"max_tokens\":16777217"), "max_tokens", "r1", "must be 1 to" },
        { GEN(",\"temperature\":-0.1"), "temperature", "r1", "[0, 10]" },
        { GEN(",\"temperature\":10.5"), "temperature", "r1", "[0, 10]" },
        { GEN(",\"temperature\":true"), "temperature", "r1", "number" },
        { GEN(",\"top_k\":-1"), "top_k", "r1", "must be 0 to" },
        { GEN(",\"top_k\":2.5"), "top_k", "r1", "integer" },
        { GEN(",\"top_p\":0"), "top_p", "r1", "(0, 1]" },
        { GEN(",\"top_p\":1.01"), "top_p", "r1", "(0, 1]" },
        { GEN(",\"min_p\":-0.01"), "min_p", "r1", "[0, 1]" },
        { GEN(",\"min_p\":2"), "min_p", "r1", "[0, 1]" },
        { GEN(",\"repeat_penalty\":0"), "repeat_penalty", "r1", "(0, 10]" },
        { GEN(",\"repeat_penalty\":11"), "repeat_penalty", "r1", "(0, 10]" },
        { GEN(",\"presence_penalty\":-10.5"), "presence_penalty", "r1", "[-10, 10]" },
        { GEN(",\"frequency_penalty\":10.5"), "frequency_penalty", "r1", "[-10, 10]" },
        { GEN(",\"frequency_penalty\":null"), "frequency_penalty", "r1", "number" },
        { GEN(",\"seed\":-1"), "seed", "r1", "must be 0 to" },
        { GEN(",\"seed\":9007199254740992"), "seed", "r1", "must be 0 to" },
        { GEN(",\"seed\":0.5"), "seed", "r1", "integer" },
        { GEN(",\"stop\":\"x\""), "stop", "r1", "array of strings" },
        { GEN(",\"stop\":[1]"), "stop", "r1", "stop[0] must be a string" },
        { GEN(",\"stop\":[\"a\",\"\"]"), "stop", "r1", "stop[1] must be 1 to 256" },
        { GEN(",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]"), "stop", "r1", "at most 8" },
        { GEN(",\"ignore_eos\":1"), "ignore_eos", "r1", "true or false" },
        { GEN(",\"stream\":\"false\""), "stream", "r1", "true or false" },
        { GEN(",\"return_ids\":null"), "return_ids", "r1", "true or false" },
        { GEN(",\"cache\":0"), "cache", "r1", "true or false" },
        { GEN(",\"timeout_ms\":0"), "timeout_ms", "r1", "must be 1 to" },
        { GEN(",\"timeout_ms\":86400001"), "timeout_ms", "r1", "must be 1 to" },
        { GEN(",\"seed\":1,\"seed\":2"), "seed", "r1", "duplicate field 'seed'" },
        { GEN(",\"session\":\"\""), "session", "r1", "1 to 128" },
        { GEN(",\"session\":7"), "session", "r1", "string" },
        { GEN(",\"session\":\"" "0123456789012345678901234567890123456789012345678901234567890123"
              "01234567890123456789012345678901234567890123456789012345678901234\""), "session", "r1", "1 to 128" },
        /* cancel */
        { "{\"id\":\"c1\",\"type\":\"cancel\"}", "target", "c1", "missing field 'target'" },
        { "{\"id\":\"c1\",\"type\":\"cancel\",\"target\":\"\"}", "target", "c1", "1 to 128" },
        { "{\"id\":\"c1\",\"type\":\"cancel\",\"target\":7}", "target", "c1", "string" },
        /* bytes */
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"\xff\"}", "", "r1", "invalid UTF-8" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"\xc0\xaf\"}", "", "r1", "invalid UTF-8" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"\xed\xa0\x80\"}", "", "r1",
          "invalid UTF-8" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"\xf4\x90\x80\x80\"}", "", "r1",
          "invalid UTF-8" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"a\\u0000b\"}", "", "r1", "\\u0000" },
        { "{\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"\\ud800\"}", "", NULL, "malformed" },
};

static void test_bad_frames(void) {
        for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
                const struct bad *b = &bad_frames[i];
                struct lmp_request r;
                memset(&r, 0xa5, sizeof(r));
                struct lmp_request before = r;
                struct lmp_proto_error e;
                int rc = parse(b->json, &r, &e);
                CHECK(rc == -EINVAL, "frame %zu %s: rc %d", i, b->json, rc);
                CHECK(memcmp(&r, &before, sizeof(r)) == 0, "frame %zu: *ret touched on failure", i);
                CHECK(e.code == LMP_PROTO_BAD_REQUEST, "frame %zu: code %d", i, e.code);
                CHECK(strcmp(e.field, b->field) == 0, "frame %zu %s: field '%s', expected '%s' (%s)", i, b->json,
                      e.field, b->field, e.message);
                CHECK(strstr(e.message, b->words) != NULL, "frame %zu %s: message '%s' lacks '%s'", i, b->json,
                      e.message, b->words);
                if (b->id)
                        CHECK(e.has_id && strcmp(e.id, b->id) == 0, "frame %zu: id not recovered", i);
                else
                        CHECK(!e.has_id, "frame %zu: unexpected id '%s'", i, e.id);
        }
}

static void test_bytes_with_nul_and_size(void) {
        struct lmp_request r;
        struct lmp_proto_error e;
        static const char with_nul[] = "{\"id\":\"r1\",\"type\":\"models\",\"x\":\"a\0b\"}";
        int rc = lmp_proto_parse_request(with_nul, sizeof(with_nul) - 1, &r, &e);
        CHECK(rc == -EINVAL && e.code == LMP_PROTO_BAD_REQUEST, "NUL byte accepted (rc %d)", rc);

        /* Exactly at the limit is parsed; one byte more is refused unread. */
        size_t n = LMP_PROTO_FRAME_MAX;
        char *big = malloc(n + 2);
        const char *head = "{\"id\":\"big\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"";
        size_t hl = strlen(head);
        memcpy(big, head, hl);
        memset(big + hl, 'a', n - hl - 2);
        memcpy(big + n - 2, "\"}", 2);
        rc = lmp_proto_parse_request(big, n, &r, &e);
        CHECK(rc == 0, "1 MiB frame refused: %s", e.message);
        if (rc == 0) {
                CHECK(r.prompt_len == n - hl - 2, "prompt length %zu", r.prompt_len);
                lmp_request_clear(&r);
        }
        big[n - 1] = ' ';
        big[n] = '}';
        big[n - 2] = '"';
        rc = lmp_proto_parse_request(big, n + 1, &r, &e);
        CHECK(rc == -EMSGSIZE && e.code == LMP_PROTO_BAD_REQUEST && strstr(e.message, "over the limit"),
              "oversized frame: rc %d %s", rc, e.message);
        CHECK(!e.has_id, "oversized frame carries an id");
        free(big);
}

/* The canonical form of a frame within the limit always parses as a job:
 * control characters come back as 6-byte escapes, 6x the frame. */
static void test_job_bound(void) {
        struct lmp_request r, back;
        struct lmp_proto_error e;
        struct lmp_proto_buf out = { 0 };
        size_t n = LMP_PROTO_FRAME_MAX;
        char *big = malloc(n);
        const char *head = "{\"id\":\"cc\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"";
        size_t hl = strlen(head);
        memcpy(big, head, hl);
        for (size_t i = hl; i < n - 2; i++)
                big[i] = (char)(1 + i % 7); /* \u0001 .. \u0007: raw, as cJSON takes them */
        memcpy(big + n - 2, "\"}", 2);
        int rc = lmp_proto_parse_request(big, n, &r, &e);
        CHECK(rc == 0, "control characters refused: %s", e.message);
        if (rc == 0) {
                CHECK(lmp_proto_format_request(&out, &r) == 0, "format");
                CHECK(out.len > LMP_PROTO_FRAME_MAX && out.len <= LMP_PROTO_JOB_MAX, "job of %zu bytes", out.len);
                CHECK(lmp_proto_parse_request(out.data, out.len, &back, &e) == -EMSGSIZE, "a frame that large");
                rc = lmp_proto_parse_job(out.data, out.len, &back, &e);
                CHECK(rc == 0, "job refused: %s", e.message);
                if (rc == 0) {
                        CHECK(back.prompt_len == r.prompt_len && memcmp(back.prompt, r.prompt, r.prompt_len) == 0,
                              "the job's prompt");
                        lmp_request_clear(&back);
                }
                lmp_request_clear(&r);
        }
        lmp_proto_buf_free(&out);
        free(big);
        enum lmp_proto_code code;
        CHECK(lmp_proto_code_from_name("slow_consumer", &code) == 0 && code == LMP_PROTO_SLOW_CONSUMER &&
                      strcmp(lmp_proto_code_name(LMP_PROTO_SLOW_CONSUMER), "slow_consumer") == 0,
              "slow_consumer code");
}

static void test_good_requests(void) {
        struct lmp_request r;
        struct lmp_proto_error e;

        CHECK(parse(GEN(""), &r, &e) == 0, "minimal generate: %s", e.message);
        CHECK(r.type == LMP_REQ_GENERATE && strcmp(r.id, "r1") == 0 && strcmp(r.model, "m") == 0, "fields");
        CHECK(strcmp(r.prompt, "p") == 0 && r.prompt_len == 1, "prompt");
        CHECK(r.sampling.set == 0 && r.stream && !r.ignore_eos && !r.return_ids && r.n_stop == 0, "defaults");
        CHECK(!r.no_cache, "cached by default");
        lmp_request_clear(&r);
        CHECK(parse(GEN(",\"cache\":false"), &r, &e) == 0 && r.no_cache, "cache false: %s", e.message);
        lmp_request_clear(&r);
        CHECK(parse(GEN(",\"cache\":true"), &r, &e) == 0 && !r.no_cache, "cache true: %s", e.message);
        lmp_request_clear(&r);

        const char *full = "{\"v\":1,\"id\":\"x-7\",\"type\":\"generate\",\"model\":\"tiny\",\"prompt\":\"Hello \\u00e9\\n\","
                           "\"max_tokens\":16777216,\"temperature\":0,\"top_k\":0,\"top_p\":1,\"min_p\":0,"
                           "\"repeat_penalty\":10,\"presence_penalty\":-10,\"frequency_penalty\":10,"
                           "\"seed\":9007199254740991,\"stop\":[\"\\n\\n\",\"END\"],\"ignore_eos\":true,"
                           "\"stream\":false,\"return_ids\":true,\"timeout_ms\":86400000,\"future\":{\"x\":[1]},"
                           "\"session\":\"user-42\"}";
        CHECK(parse(full, &r, &e) == 0, "full generate: %s", e.message);
        CHECK(strcmp(r.prompt, "Hello \xc3\xa9\n") == 0, "escaped prompt '%s'", r.prompt);
        CHECK(r.sampling.set == 0x3ff, "set bits %x", r.sampling.set);
        CHECK(r.sampling.max_tokens == 16777216 && r.sampling.temperature == 0 && r.sampling.top_k == 0 &&
                      r.sampling.top_p == 1 && r.sampling.min_p == 0 && r.sampling.repeat_penalty == 10 &&
                      r.sampling.presence_penalty == -10 && r.sampling.frequency_penalty == 10 &&
                      r.sampling.seed == 9007199254740991ull && r.timeout_ms == 86400000,
              "sampling values");
        CHECK(r.n_stop == 2 && strcmp(r.stop[0], "\n\n") == 0 && r.stop_len[1] == 3, "stop");
        CHECK(r.ignore_eos && !r.stream && r.return_ids, "flags");
        CHECK(strcmp(r.session, "user-42") == 0, "session '%s'", r.session);
        lmp_request_clear(&r);

        CHECK(parse(CHAT(",\"messages\":[{\"role\":\"system\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"hi\","
                         "\"name\":\"ignored\"},{\"role\":\"assistant\",\"content\":\"yo\"}]"),
                    &r, &e) == 0,
              "chat: %s", e.message);
        CHECK(r.type == LMP_REQ_CHAT && r.n_messages == 3 && r.messages[0].role == LMP_ROLE_SYSTEM &&
                      r.messages[0].content_len == 0 && r.messages[1].role == LMP_ROLE_USER &&
                      strcmp(r.messages[2].content, "yo") == 0 && !r.prompt,
              "chat fields");
        lmp_request_clear(&r);

        CHECK(parse("{\"id\":\"c1\",\"type\":\"cancel\",\"target\":\"r7\"}", &r, &e) == 0, "cancel: %s", e.message);
        CHECK(r.type == LMP_REQ_CANCEL && strcmp(r.target, "r7") == 0, "cancel target");
        lmp_request_clear(&r);
        static const char *const simple[] = { "models", "stats", "health" };
        for (int i = 0; i < 3; i++) {
                char buf[128];
                snprintf(buf, sizeof(buf), "{\"id\":\"q\",\"type\":\"%s\",\"model\":5}", simple[i]);
                CHECK(parse(buf, &r, &e) == 0 && r.type == (enum lmp_request_type)(LMP_REQ_MODELS + i),
                      "%s: %s", simple[i], e.message);
                lmp_request_clear(&r);
        }
        /* 128-byte id is fine, and whitespace around the object too */
        char buf[300];
        snprintf(buf, sizeof(buf), " \n{\"id\":\"%0128d\",\"type\":\"health\"}\n ", 0);
        CHECK(parse(buf, &r, &e) == 0 && strlen(r.id) == 128, "128-byte id: %s", e.message);
        lmp_request_clear(&r);
        snprintf(buf, sizeof(buf), "{\"id\":\"%0129d\",\"type\":\"health\"}", 0);
        CHECK(parse(buf, &r, &e) == -EINVAL && !e.has_id && strcmp(e.field, "id") == 0, "129-byte id accepted");
        lmp_request_clear(NULL);
}

static bool same_request(const struct lmp_request *a, const struct lmp_request *b) {
        if (a->type != b->type || strcmp(a->id, b->id) || strcmp(a->model, b->model) || strcmp(a->target, b->target))
                return false;
        if ((a->prompt == NULL) != (b->prompt == NULL) || a->prompt_len != b->prompt_len ||
            (a->prompt && memcmp(a->prompt, b->prompt, a->prompt_len)))
                return false;
        if (a->n_messages != b->n_messages)
                return false;
        if (a->n_images != b->n_images)
                return false;
        for (size_t i = 0; i < a->n_images; i++)
                if (a->images[i].len != b->images[i].len || memcmp(a->images[i].data, b->images[i].data, a->images[i].len))
                        return false;
        for (size_t i = 0; i < a->n_messages; i++)
                if (a->messages[i].role != b->messages[i].role || strcmp(a->messages[i].content, b->messages[i].content) ||
                    a->messages[i].n_images != b->messages[i].n_images ||
                    !a->messages[i].tool_calls != !b->messages[i].tool_calls ||
                    (a->messages[i].tool_calls && strcmp(a->messages[i].tool_calls, b->messages[i].tool_calls)) ||
                    !a->messages[i].tool_call_id != !b->messages[i].tool_call_id ||
                    (a->messages[i].tool_call_id && strcmp(a->messages[i].tool_call_id, b->messages[i].tool_call_id)))
                        return false;
        if (!a->tools != !b->tools || (a->tools && strcmp(a->tools, b->tools)) || a->tool_choice != b->tool_choice ||
            strcmp(a->tool_name, b->tool_name))
                return false;
        if (memcmp(&a->sampling, &b->sampling, sizeof(a->sampling)) || a->n_stop != b->n_stop)
                return false;
        for (size_t i = 0; i < a->n_stop; i++)
                if (strcmp(a->stop[i], b->stop[i]))
                        return false;
        if (!a->format != !b->format || a->format_len != b->format_len ||
            (a->format && memcmp(a->format, b->format, a->format_len)))
                return false;
        return a->ignore_eos == b->ignore_eos && a->stream == b->stream && a->return_ids == b->return_ids &&
               a->no_cache == b->no_cache && a->timeout_ms == b->timeout_ms;
}

static void test_round_trip(void) {
        static const char *const frames[] = {
                GEN(""),
                GEN(",\"temperature\":0.7,\"top_p\":0.1,\"min_p\":0.05,\"repeat_penalty\":1.1,\"seed\":42,"
                    "\"presence_penalty\":-0.3,\"frequency_penalty\":1e-7,\"max_tokens\":7,\"top_k\":40,"
                    "\"stop\":[\"\\u2028\",\"\\\"q\\\"\"],\"stream\":false,\"timeout_ms\":5"),
                "{\"id\":\"\\u00fc\\ud83d\\ude00\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"tab\\tnl\\n\\u0001\\u007f\"}",
                CHAT(",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"\\\\\"}],"
                     "\"ignore_eos\":true,\"return_ids\":true"),
                GEN(",\"cache\":false,\"seed\":3"),
                GEN(",\"format\":\"json\""),
                GEN(",\"format\":\"\""),
                CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"format\":{\"type\":\"object\","
                     "\"properties\":{\"a\":{\"enum\":[1,\"b\"]},\"c\":{\"type\":\"array\",\"items\":"
                     "{\"type\":\"string\",\"maxLength\":3}}},\"required\":[\"a\"],\"additionalProperties\":false}"),
                CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":null,"
                     "\"tool_calls\":[{\"id\":\"abcdefghi\",\"type\":\"function\",\"function\":{\"name\":\"get\","
                     "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},{\"function\":{\"name\":\"now\"}}]},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"abcdefghi\",\"name\":\"get\",\"content\":\"20C\"}],"
                     "\"tools\":[" TOOL_F("get", ",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}") "],"
                     "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}}"),
                CHAT("," USER ",\"tools\":[" TOOL_F("a", "") "," TOOL_F("b.c-d_e", "") "],\"tool_choice\":\"none\""),
                CHAT("," USER ",\"tools\":[" TOOL_F("a", "") "],\"tool_choice\":\"required\""),
                "{\"id\":\"c\",\"type\":\"cancel\",\"target\":\"t\"}",
                "{\"id\":\"h\",\"type\":\"health\"}",
                GEN(",\"images\":[\"QUJD\",\"/+8=\",\"AA\"]"),
                CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}," IMG_MSG(",\"images\":[\"QUJD\"]") ","
                     "{\"role\":\"assistant\",\"content\":\"b\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                     "\"text\":\"c\"}," PART_URL("data:image/jpeg;base64,/9j/") "," PART_URL("data:image/png;base64,QQ==") "]}]"),
        };
        for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
                struct lmp_request a, b;
                struct lmp_proto_error e;
                struct lmp_proto_buf out = { 0 }, out2 = { 0 };
                if (parse(frames[i], &a, &e) != 0) {
                        CHECK(0, "round trip %zu: %s", i, e.message);
                        continue;
                }
                CHECK(lmp_proto_format_request(&out, &a) == 0, "format %zu", i);
                CHECK(lmp_proto_parse_request(out.data, out.len, &b, &e) == 0, "reparse %zu: %s (%s)", i, e.message,
                      out.data);
                CHECK(same_request(&a, &b), "round trip %zu differs: %s", i, out.data);
                CHECK(lmp_proto_format_request(&out2, &b) == 0 && out2.len == out.len &&
                              memcmp(out.data, out2.data, out.len) == 0,
                      "canonical form %zu not stable", i);
                lmp_request_clear(&a);
                lmp_request_clear(&b);
                lmp_proto_buf_free(&out);
                lmp_proto_buf_free(&out2);
        }
}

/* Parses s with cJSON, which must succeed; returns the tree. */
static cJSON *must_json(const char *s, const char *what) {
        cJSON *j = cJSON_Parse(s);
        CHECK(j != NULL, "%s: invalid JSON: %s", what, s);
        CHECK(s && strchr(s, '\n') == NULL, "%s: raw newline in a frame", what);
        return j;
}

/* A plain structural check, independent of the code under test. */
static bool valid_utf8(const char *s) {
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
                if (!n)
                        return false;
                for (int i = 1; i < n; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                p += n;
        }
        return true;
}

static void test_events(void) {
        struct lmp_proto_buf b = { 0 };
        struct lmp_event ev;
        /* Bytes a model may produce: quotes, controls, invalid and cut UTF-8. */
        static const char nasty[] = "a\"b\\c\n\t\x01\x7f \xff \xc3 \xe2\x82 \xed\xa0\x80 ok\xc3\xa9 \xf0\x9f\x98\x80";
        static const char repaired[] = "a\"b\\c\n\t\x01\x7f \xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd ok\xc3\xa9 \xf0\x9f\x98\x80";
        int32_t ids[] = { 15043, 0, -1, 2147483647 };

        CHECK(lmp_proto_format_token(&b, "r7", nasty, sizeof(nasty) - 1, ids, 4) == 0, "format token");
        cJSON *j = must_json(b.data, "token");
        CHECK(valid_utf8(b.data), "token event is not valid UTF-8");
        CHECK(j && strcmp(cJSON_GetObjectItem(j, "text")->valuestring, repaired) == 0, "repaired text");
        CHECK(j && cJSON_GetObjectItem(j, "v")->valuedouble == 1, "v");
        cJSON_Delete(j);
        CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0, "parse token event");
        CHECK(ev.type == LMP_EVENT_TOKEN && strcmp(ev.id, "r7") == 0 && strcmp(ev.text, repaired) == 0 &&
                      ev.n_ids == 4 && ev.ids[0] == 15043 && ev.ids[3] == 2147483647,
              "token event fields");
        lmp_event_clear(&ev);

        b.len = 0;
        CHECK(lmp_proto_format_token(&b, "r7", "", 0, NULL, 0) == 0, "empty token");
        CHECK(strcmp(b.data, "{\"v\":1,\"id\":\"r7\",\"event\":\"token\",\"text\":\"\"}") == 0, "empty token: %s", b.data);

        /* NUL inside text becomes U+FFFD too. */
        b.len = 0;
        CHECK(lmp_proto_format_token(&b, "r7", "a\0b", 3, NULL, 0) == 0, "NUL token");
        CHECK(strstr(b.data, "a\xef\xbf\xbd" "b") != NULL, "NUL not replaced: %s", b.data);

        struct lmp_done d = { .finish = LMP_FINISH_LENGTH, .text = "whole \xfe text", .text_len = 12,
                              .usage = { 12, 100 },
                              .timings = { 0.4, 35.0, 36.1, 1450.2, NAN },
                              .worker = "tinyllama/1" };
        b.len = 0;
        CHECK(lmp_proto_format_done(&b, "r7", &d) == 0, "format done");
        j = must_json(b.data, "done");
        CHECK(j && cJSON_GetObjectItem(cJSON_GetObjectItem(j, "timings"), "tokens_per_s")->valuedouble == 0,
              "NaN not written as 0");
        cJSON_Delete(j);
        CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0, "parse done");
        CHECK(ev.type == LMP_EVENT_DONE && ev.finish == LMP_FINISH_LENGTH && ev.usage.prompt_tokens == 12 &&
                      ev.usage.generated_tokens == 100 && ev.timings.ttft_ms == 36.1 &&
                      ev.timings.total_ms == 1450.2 && strcmp(ev.worker, "tinyllama/1") == 0 &&
                      strcmp(ev.text, "whole \xef\xbf\xbd text") == 0,
              "done fields: %s", b.data);
        CHECK(!ev.tool_calls, "done without calls has tool_calls");
        lmp_event_clear(&ev);
        static const char calls[] = "[{\"id\":\"abcdefghi\",\"name\":\"f\",\"arguments\":{\"a\":[1,\"\\u00fc\"]}}]";
        d.finish = LMP_FINISH_TOOL_CALLS;
        d.tool_calls = calls;
        d.tool_calls_len = strlen(calls);
        b.len = 0;
        CHECK(lmp_proto_format_done(&b, "r7", &d) == 0, "format done with calls");
        j = must_json(b.data, "done");
        CHECK(j && strcmp(cJSON_GetObjectItem(j, "finish")->valuestring, "tool_calls") == 0 &&
                      cJSON_IsArray(cJSON_GetObjectItem(j, "tool_calls")),
              "done with calls: %s", b.data);
        cJSON_Delete(j);
        CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0 && ev.finish == LMP_FINISH_TOOL_CALLS && ev.tool_calls &&
                      strstr(ev.tool_calls, "\"name\":\"f\"") && ev.tool_calls_len == strlen(ev.tool_calls),
              "parse done with calls: %s", b.data);
        lmp_event_clear(&ev);
        d.tool_calls = NULL;
        d.finish = LMP_FINISH_COUNT;
        CHECK(lmp_proto_format_done(&b, "r7", &d) == -EINVAL, "bad finish accepted");

        for (int code = LMP_PROTO_BAD_REQUEST; code < LMP_PROTO_CODE_COUNT; code++) {
                b.len = 0;
                CHECK(lmp_proto_format_error(&b, code == LMP_PROTO_BAD_REQUEST ? NULL : "r9", code,
                                             "field 'x' \"quoted\" \x80") == 0,
                      "format error %d", code);
                j = must_json(b.data, "error");
                cJSON_Delete(j);
                CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0, "parse error %d", code);
                CHECK(ev.type == LMP_EVENT_ERROR && (int)ev.code == code &&
                              ev.has_id == (code != LMP_PROTO_BAD_REQUEST),
                      "error %d fields: %s", code, b.data);
                enum lmp_proto_code back;
                CHECK(lmp_proto_code_from_name(lmp_proto_code_name(code), &back) == 0 && (int)back == code,
                      "code name %d", code);
                lmp_event_clear(&ev);
        }
        CHECK(strcmp(lmp_proto_code_name(LMP_PROTO_WORKER_LOST), "worker_lost") == 0, "stable name");
        CHECK(lmp_proto_format_error(&b, "x", LMP_PROTO_OK, "no") == -EINVAL, "ok is not an error");

        b.len = 0;
        CHECK(lmp_proto_format_cancelled(&b, "c1", "r7", true) == 0, "cancelled");
        CHECK(strcmp(b.data, "{\"v\":1,\"id\":\"c1\",\"event\":\"cancelled\",\"target\":\"r7\",\"found\":true}") == 0,
              "cancelled: %s", b.data);
        CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0 && ev.found && strcmp(ev.target, "r7") == 0,
              "parse cancelled");
        lmp_event_clear(&ev);

        struct lmp_model_info m[2] = {
                { "tiny", "/m/tiny.gguf", "llama", 2048, 3, 2, 4, 123456789 },
                { "q\"2", "p", "qwen2", 512, 1, 0, 1, 0 },
        };
        b.len = 0;
        CHECK(lmp_proto_format_models(&b, "m1", m, 2) == 0, "models");
        j = must_json(b.data, "models");
        const cJSON *arr = cJSON_GetObjectItem(j, "models");
        CHECK(cJSON_GetArraySize(arr) == 2 &&
                      cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "store_bytes")->valuedouble == 123456789 &&
                      strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 1), "name")->valuestring, "q\"2") == 0,
              "models content: %s", b.data);
        cJSON_Delete(j);
        CHECK(lmp_proto_parse_event(b.data, b.len, &ev) == 0 && ev.type == LMP_EVENT_MODELS, "parse models");
        lmp_event_clear(&ev);

        struct lmp_worker_info w = { "tiny/0", "tiny", 4242, "busy", 2, 1, 1 << 20, 1 << 19, 17, 1 };
        struct lmp_stats s = { 12.5, 3, 64, 100, 90, 10, 4, 3, 1, &w, 1, .dropped = 2, .client_gone = 5,
                               .slow_consumer = 6, .events_dropped = 7, .clients = 8, .clients_limit = 1024,
                               .clients_refused = 9, .clients_overlong = 11,
                               .zap_refused = 13, .worker_frames_refused = 14, .retried = 15,
                               .affinity_hits = 16, .affinity_misses = 17, .affinity_new = 18 };
        b.len = 0;
        CHECK(lmp_proto_format_stats(&b, "s1", &s) == 0, "stats");
        j = must_json(b.data, "stats");
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "queue"), "limit")->valuedouble == 64 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "worker_lost")->valuedouble == 1 &&
                      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "workers"), 0), "pid")
                                      ->valuedouble == 4242,
              "stats content: %s", b.data);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "dropped")->valuedouble == 2 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "client_gone")->valuedouble == 5 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "slow_consumer")->valuedouble == 6 &&
                      cJSON_GetObjectItem(j, "events_dropped")->valuedouble == 7 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "clients"), "connected")->valuedouble == 8 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "clients"), "limit")->valuedouble == 1024 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "clients"), "refused")->valuedouble == 9 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "clients"), "overlong_closed")->valuedouble == 11 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "refused"), "connections")->valuedouble == 13 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "refused"), "worker_frames")->valuedouble == 14 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "requests"), "retried")->valuedouble == 15 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "affinity"), "hits")->valuedouble == 16 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "affinity"), "misses")->valuedouble == 17 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "affinity"), "new")->valuedouble == 18,
              "stats bounds content: %s", b.data);
        cJSON_Delete(j);

        struct lmp_health_model hm[2] = { { "tiny", 3, 3, NULL }, { "big", 0, 1, "tensor \"x\": missing" } };
        b.len = 0;
        CHECK(lmp_proto_format_health(&b, "h1", "degraded", hm, 2) == 0, "health");
        j = must_json(b.data, "health");
        cJSON *models = cJSON_GetObjectItem(j, "models");
        CHECK(strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "degraded") == 0 &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(models, "big"), "workers")->valuedouble == 1 &&
                      strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(models, "big"), "failed")->valuestring,
                             "tensor \"x\": missing") == 0 &&
                      !cJSON_GetObjectItem(cJSON_GetObjectItem(models, "tiny"), "failed"),
              "health content: %s", b.data);
        cJSON_Delete(j);
        lmp_proto_buf_free(&b);
        lmp_proto_buf_free(&b);

        /* Frames that are not events. */
        static const char *const not_events[] = {
                "", "[]", "{}", "{\"id\":\"x\",\"event\":7}", "{\"id\":\"x\",\"event\":\"token\"}",
                "{\"id\":\"x\",\"event\":\"token\",\"text\":\"a\",\"ids\":[1.5]}",
                "{\"id\":\"x\",\"event\":\"token\",\"text\":\"a\",\"ids\":[4294967296]}",
                "{\"id\":\"x\",\"event\":\"done\",\"finish\":\"tired\"}", "{\"id\":null,\"event\":\"token\",\"text\":\"\"}",
                "{\"id\":\"x\",\"event\":\"error\"}",
        };
        for (size_t i = 0; i < sizeof(not_events) / sizeof(not_events[0]); i++) {
                int rc = lmp_proto_parse_event(not_events[i], strlen(not_events[i]), &ev);
                CHECK(rc == -EINVAL, "not an event accepted: %s (rc %d)", not_events[i], rc);
        }
        /* A newer daemon's event is recognisably that, to be skipped. */
        const char *party = "{\"id\":\"x\",\"event\":\"party\"}";
        CHECK(lmp_proto_parse_event(party, strlen(party), &ev) == -ENOMSG, "unknown event");
        /* A newer daemon's unknown error code is still an error. */
        const char *future = "{\"id\":\"x\",\"event\":\"error\",\"code\":\"overheated\",\"message\":\"m\"}";
        CHECK(lmp_proto_parse_event(future, strlen(future), &ev) == 0 && ev.code == LMP_PROTO_INTERNAL, "future code");
        lmp_event_clear(&ev);
}

static void test_utf8_complete(void) {
        CHECK(lmp_proto_utf8_complete("abc", 3) == 3, "ascii");
        CHECK(lmp_proto_utf8_complete("a\xc3", 2) == 1, "cut 2-byte");
        CHECK(lmp_proto_utf8_complete("a\xc3\xa9", 3) == 3, "whole 2-byte");
        CHECK(lmp_proto_utf8_complete("a\xe2\x82", 3) == 1, "cut 3-byte");
        CHECK(lmp_proto_utf8_complete("a\xe0", 2) == 1, "cut e0");
        CHECK(lmp_proto_utf8_complete("a\xf0\x9f\x98", 4) == 1, "cut 4-byte");
        CHECK(lmp_proto_utf8_complete("a\xf0\x9f\x98\x80", 5) == 5, "whole 4-byte");
        CHECK(lmp_proto_utf8_complete("a\xff", 2) == 2, "invalid byte is not held back");
        CHECK(lmp_proto_utf8_complete("a\xed\xa0", 3) == 3, "surrogate prefix is not held back");
        CHECK(lmp_proto_utf8_complete("", 0) == 0, "empty");
        CHECK(lmp_proto_utf8_valid("h\xc3\xa9\xf0\x9f\x98\x80", 7), "valid");
        CHECK(!lmp_proto_utf8_valid("a\0b", 3), "NUL is not valid here");
        CHECK(!lmp_proto_utf8_valid("\xc3", 1), "cut sequence");
        CHECK(!lmp_proto_utf8_valid("\xe0\x80\x80", 3), "overlong");
}

/* embed: a request with one text and with many, their canonical form, and
 * the embedding event both ways. */
static void test_embed(void) {
        struct lmp_request r, back;
        struct lmp_proto_error e;
        struct lmp_proto_buf out = { 0 };

        CHECK(parse(EMB(",\"input\":\"hello\""), &r, &e) == 0, "one text: %s", e.message);
        CHECK(r.type == LMP_REQ_EMBED && r.n_inputs == 1 && !r.input_is_array && strcmp(r.inputs[0], "hello") == 0 &&
              r.normalize && !r.truncate && !r.return_ids, "one text: fields and defaults");
        lmp_request_clear(&r);

        char big[64 + 257 * 6];
        int n = snprintf(big, sizeof(big), "{\"id\":\"r1\",\"type\":\"embed\",\"model\":\"m\",\"input\":[");
        for (int i = 0; i < 257; i++)
                n += snprintf(big + n, sizeof(big) - (size_t)n, i ? ",\"x\"" : "\"x\"");
        snprintf(big + n, sizeof(big) - (size_t)n, "]}");
        CHECK(parse(big, &r, &e) == -EINVAL && strcmp(e.field, "input") == 0, "257 texts refused");

        CHECK(parse(EMB(",\"input\":[\"a\",\"\",\"\\u00e9\\n\"],\"normalize\":false,\"truncate\":true,"
                        "\"return_ids\":true,\"timeout_ms\":5000"), &r, &e) == 0, "many texts: %s", e.message);
        CHECK(r.n_inputs == 3 && r.input_is_array && r.input_len[1] == 0 && strcmp(r.inputs[2], "\xc3\xa9\n") == 0 &&
              !r.normalize && r.truncate && r.return_ids && r.timeout_ms == 5000, "many texts: fields");
        CHECK(lmp_proto_format_request(&out, &r) == 0, "format embed");
        CHECK(lmp_proto_parse_job(out.data, out.len, &back, &e) == 0, "parse back: %s", e.message);
        CHECK(back.type == LMP_REQ_EMBED && back.n_inputs == 3 && back.input_is_array && !back.normalize &&
              back.truncate && back.return_ids && back.timeout_ms == 5000 && strcmp(back.inputs[2], r.inputs[2]) == 0,
              "round trip");
        lmp_request_clear(&back);
        lmp_request_clear(&r);

        float vec[6] = { 0.25f, -1.5f, 3.0e-8f, 1.0f / 3.0f, 0, 2 };
        int32_t ids[5] = { 101, 7592, 102, 101, 102 };
        size_t off[3] = { 0, 3, 5 };
        struct lmp_embedding em = { .vectors = vec, .n = 2, .n_embd = 3, .ids = ids, .ids_off = off,
                                    .prompt_tokens = 5, .queued_ms = 1.5, .total_ms = 4, .worker = "bge/0" };
        out.len = 0;
        CHECK(lmp_proto_format_embedding(&out, "r1", &em) == 0, "format embedding");
        struct lmp_event ev;
        CHECK(lmp_proto_parse_event(out.data, out.len, &ev) == 0, "parse embedding: %s", out.data);
        CHECK(ev.type == LMP_EVENT_EMBEDDING && ev.n_vectors == 2 && ev.n_embd == 3 &&
              memcmp(ev.vectors, vec, sizeof(vec)) == 0, "vectors exact");
        CHECK(ev.ids && ev.n_ids == 5 && ev.ids_off[1] == 3 && ev.ids[3] == 101 && ev.usage.prompt_tokens == 5 &&
              ev.timings.total_ms == 4 && strcmp(ev.worker, "bge/0") == 0, "ids, usage, worker");
        lmp_event_clear(&ev);
        static const char *const bad_events[] = {
                "{\"v\":1,\"id\":\"r\",\"event\":\"embedding\"}",
                "{\"v\":1,\"id\":\"r\",\"event\":\"embedding\",\"embeddings\":[[1,2],[3]]}",
                "{\"v\":1,\"id\":\"r\",\"event\":\"embedding\",\"embeddings\":[[]]}",
                "{\"v\":1,\"id\":\"r\",\"event\":\"embedding\",\"embeddings\":[[1]],\"ids\":[[1],[2]]}",
                "{\"v\":1,\"id\":\"r\",\"event\":\"embedding\",\"embeddings\":[[\"x\"]]}",
        };
        for (size_t i = 0; i < sizeof(bad_events) / sizeof(bad_events[0]); i++)
                CHECK(lmp_proto_parse_event(bad_events[i], strlen(bad_events[i]), &ev) == -EINVAL, "bad event %zu", i);
        lmp_proto_buf_free(&out);
}

/* Base64 both ways on every length up to 64 and every byte value. */
static void test_base64(void) {
        uint8_t in[64], out[64 + 3];
        char text[100];
        for (size_t n = 0; n <= sizeof(in); n++) {
                for (size_t i = 0; i < n; i++)
                        in[i] = (uint8_t)(i * 37 + n * 11);
                lmp_base64_encode(in, n, text);
                CHECK(strlen(text) == lmp_base64_encoded_len(n), "base64 length %zu", n);
                size_t len = 0, at = 0;
                CHECK(lmp_base64_decode(text, strlen(text), out, &len, &at) == 0 && len == n &&
                      memcmp(in, out, n) == 0, "base64 round trip %zu", n);
                /* Without its padding it decodes the same. */
                size_t t = strlen(text);
                while (t && text[t - 1] == '=')
                        t--;
                CHECK(lmp_base64_decode(text, t, out, &len, &at) == 0 && len == n && memcmp(in, out, n) == 0,
                      "base64 unpadded %zu", n);
        }
        for (int c = 0; c < 256; c++) {
                char s[5] = { 'Q', 'U', 'J', (char)c, 0 };
                size_t len = 0, at = 9;
                bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                          c == '/';
                int rc = lmp_base64_decode(s, 4, out, &len, &at);
                CHECK(ok ? rc == 0 : (rc == -EINVAL && (at == 3 || c == '=')), "base64 byte %d: rc %d at %zu", c, rc, at);
        }
}

/* What images become: bytes in order, each message's count, markers. */
static void test_images(void) {
        struct lmp_request r;
        struct lmp_proto_error e;
        const char *gen = GEN(",\"images\":[\"QUJD\",\"QUI\"]");
        CHECK(parse(gen, &r, &e) == 0, "%s: %s", gen, e.message);
        CHECK(r.n_images == 2 && r.images[0].len == 3 && memcmp(r.images[0].data, "ABC", 3) == 0 &&
              r.images[1].len == 2 && memcmp(r.images[1].data, "AB", 2) == 0, "generate images");
        CHECK(strcmp(r.prompt, "<__media__><__media__>p") == 0, "markers first: %s", r.prompt);
        lmp_request_clear(&r);
        const char *chat = CHAT(",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                                PART_URL("data:image/png;base64,QUJD") ",{\"type\":\"text\",\"text\":\"b\"}]},"
                                "{\"role\":\"user\",\"content\":\"c <__media__> d\",\"images\":[\"QUI=\"]}]");
        CHECK(parse(chat, &r, &e) == 0, "%s: %s", chat, e.message);
        CHECK(r.n_images == 2 && r.messages[0].n_images == 1 && r.messages[1].n_images == 1, "chat images");
        CHECK(strcmp(r.messages[0].content, "a<__media__>b") == 0, "part's place: %s", r.messages[0].content);
        CHECK(strcmp(r.messages[1].content, "c <__media__> d") == 0, "marker kept: %s", r.messages[1].content);
        lmp_request_clear(&r);
        /* Without images a marker is just text. */
        const char *plain = CHAT(",\"messages\":[{\"role\":\"user\",\"content\":\"<__media__>\"}]");
        CHECK(parse(plain, &r, &e) == 0 && r.n_images == 0, "%s", plain);
        lmp_request_clear(&r);
}

int main(void) {
        test_base64();
        test_images();
        test_embed();
        test_bad_frames();
        test_bytes_with_nul_and_size();
        test_job_bound();
        test_good_requests();
        test_round_trip();
        test_events();
        test_utf8_complete();
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("proto: ok\n");
        return 0;
}

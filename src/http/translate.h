/* HTTP request bodies (OpenAI's and Ollama's JSON) -> wire protocol
 * requests. The one place where the gateway reads what an HTTP client sent
 * as JSON: each accepted field is mapped to its protocol field, each field
 * we cannot honour is refused with the HTTP status and the message the
 * client should see (docs/http.md lists them), and the result is checked
 * with the protocol's own parser, so that a request the daemon would refuse
 * is refused here with the same words. Pure: no I/O, no logging; the
 * libFuzzer target tests/fuzz/fuzz_http.c drives it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "proto/proto.h"

enum lmp_http_api {
        LMP_HTTP_OPENAI_CHAT,           /* POST /v1/chat/completions */
        LMP_HTTP_OPENAI_COMPLETION,     /* POST /v1/completions */
        LMP_HTTP_OLLAMA_CHAT,           /* POST /api/chat */
        LMP_HTTP_OLLAMA_GENERATE,       /* POST /api/generate */
        LMP_HTTP_OPENAI_EMBEDDINGS,     /* POST /v1/embeddings */
        LMP_HTTP_OLLAMA_EMBED,          /* POST /api/embed */
};

/* A translated request: the protocol request (id left empty, stream on:
 * the gateway always streams from the daemon) and how to answer. */
struct lmp_http_call {
        struct lmp_request req;
        bool stream;            /* the HTTP answer is streamed (SSE or NDJSON) */
        bool include_usage;     /* OpenAI stream_options.include_usage */
        bool load_only;         /* Ollama /api/generate without a prompt: answer "done" at once */
        bool base64;            /* OpenAI embeddings: encoding_format "base64" (little-endian f32) */
};

/* Why a body was refused: the HTTP status, OpenAI's error type and code,
 * the offending field ("" when none) and a message naming it. */
struct lmp_http_error {
        int status;
        char type[32];
        char code[48];
        char param[LMP_PROTO_FIELD_MAX];
        char message[LMP_PROTO_MESSAGE_MAX];
};

/* Parses body (len bytes, not NUL-terminated) for api. Returns 0 and fills
 * *ret (release with lmp_http_call_clear()), or -EINVAL (-ENOMEM) and
 * fills *err, leaving *ret untouched. */
int lmp_http_translate(enum lmp_http_api api, const char *body, size_t len, struct lmp_http_call *ret,
                       struct lmp_http_error *err);
void lmp_http_call_clear(struct lmp_http_call *call);

/* HTTP status, OpenAI error type and code for a protocol error code. */
void lmp_http_error_from_code(enum lmp_proto_code code, int *ret_status, const char **ret_type,
                              const char **ret_code);

/* libFuzzer target for the gateway's request translation (src/http/
 * translate.c): the first byte picks the API (OpenAI chat, completion or
 * embeddings, Ollama chat, generate or embed), the rest is the HTTP body. Any body must be
 * refused with an HTTP status in 400..599 and a message, or give a request
 * that the protocol's formatter writes and the daemon's parser accepts
 * within one frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct lmp_http_call call;
        struct lmp_http_error err;
        struct lmp_proto_buf b = { 0 };
        struct lmp_request back;
        struct lmp_proto_error perr;

        if (size < 1)
                return 0;
        enum lmp_http_api api = (enum lmp_http_api)(data[0] % 6);
        if (lmp_http_translate(api, (const char *)data + 1, size - 1, &call, &err) < 0) {
                if (err.status < 400 || err.status > 599 || err.message[0] == '\0')
                        abort(); /* every refusal has a status and says why */
                return 0;
        }
        if (!call.load_only) {
                memcpy(call.req.id, "f", 2);
                if (lmp_proto_format_request(&b, &call.req) < 0 || b.len > LMP_PROTO_FRAME_MAX ||
                    lmp_proto_parse_request(b.data, b.len, &back, &perr) < 0)
                        abort();
                if (back.type != call.req.type || strcmp(back.model, call.req.model) != 0)
                        abort();
                lmp_request_clear(&back);
        }
        lmp_proto_buf_free(&b);
        lmp_http_call_clear(&call);
        return 0;
}

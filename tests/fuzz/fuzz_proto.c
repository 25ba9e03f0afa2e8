/* libFuzzer target for the wire protocol: any frame must be either refused
 * with a code and a message, or parsed into a request whose canonical form
 * parses back to the same canonical form. The same bytes, read as an event
 * or written as token text, must not crash the event parser and must give
 * valid JSON (valid UTF-8 included) from the formatter. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct lmp_request r, back;
        struct lmp_proto_error err;
        struct lmp_proto_buf a = { 0 }, b = { 0 };
        struct lmp_event ev;

        if (lmp_proto_parse_request(data, size, &r, &err) < 0) {
                if (err.code == LMP_PROTO_OK || err.message[0] == '\0')
                        abort(); /* every refusal says why */
        } else {
                /* The canonical form must parse, as the worker reads it (a
                 * frame's escapes can make it longer than a frame). */
                if (lmp_proto_format_request(&a, &r) < 0 || lmp_proto_parse_job(a.data, a.len, &back, &err) < 0)
                        abort();
                if (lmp_proto_format_request(&b, &back) < 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
                        abort(); /* and be a fixed point */
                lmp_request_clear(&back);
                lmp_request_clear(&r);
        }
        if (lmp_proto_parse_event(data, size, &ev) == 0)
                lmp_event_clear(&ev);

        a.len = 0;
        if (lmp_proto_format_token(&a, "f", (const char *)data, size, NULL, 0) == 0) {
                if (!lmp_proto_utf8_valid(a.data, a.len))
                        abort();
                cJSON *j = cJSON_ParseWithLength(a.data, a.len);
                if (!j)
                        abort();
                cJSON_Delete(j);
        }
        if (lmp_proto_utf8_complete((const char *)data, size) > size)
                abort();
        lmp_proto_buf_free(&a);
        lmp_proto_buf_free(&b);
        return 0;
}

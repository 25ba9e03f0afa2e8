/* libFuzzer target for the Jinja interpreter: any byte string, as a
 * template rendered against a small chat context with tight bounds, must
 * give a string or an error with a message, never a crash, a hang or a
 * sanitizer report. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizer/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CTX[] =
        "{\"messages\": [{\"role\": \"system\", \"content\": \" S \"}, {\"role\": \"user\", \"content\": \"Hi\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\":"
        " {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, true]}}}]}, {\"role\": \"tool\", \"content\": \"r\"}],"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
        " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static cJSON *ctx;
        if (!ctx && !(ctx = cJSON_Parse(CTX)))
                abort();
        struct lmp_jinja_limits lim = {
                .max_depth = 64, .max_output = 1 << 16, .max_iterations = 20000, .max_memory = 16 << 20,
        };
        struct lmp_jinja_opts o = { .limits = &lim, .now = 1768435200, .trim_blocks = true, .lstrip_blocks = true };
        struct lmp_error err = { 0 };
        char *out = NULL;
        int r = lmp_jinja_render((const char *)data, size, ctx, &o, &out, &err);
        if (r == 0 && !out)
                abort();
        if (r < 0 && (out || err.msg[0] == '\0' || (r != -EINVAL && r != -E2BIG && r != -ENOMEM)))
                abort();
        free(out);
        return 0;
}

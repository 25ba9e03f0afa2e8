/* libFuzzer target for tool-call extraction (tokenizer/tool_calls.h): the
 * worker runs it on a model's output, which is untrusted text. The first
 * byte picks the syntax, the rest is the answer. Checks: extraction
 * returns calls only with content; the calls are a JSON array of objects
 * with a 9-character id, a name and an object of arguments; the content is
 * no longer than the answer; the streamable prefix never shrinks as the
 * answer grows and never passes its end. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tool_calls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        enum lmp_tool_syntax s = (enum lmp_tool_syntax)(data[0] % LMP_TOOL_SYNTAX_COUNT);
        const char *text = (const char *)data + 1;
        size_t n = size - 1;
        char *calls = NULL, *content = NULL;
        int r = lmp_tool_calls_extract(s, text, n, 42, &calls, &content);
        if (r < 0)
                return 0; /* out of memory */
        if (r == 0) {
                if (calls || content)
                        abort();
        } else {
                if (!calls || !content || strlen(content) > n)
                        abort();
                cJSON *v = cJSON_Parse(calls);
                if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != r)
                        abort();
                for (const cJSON *c = v->child; c; c = c->next) {
                        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
                        if (!cJSON_IsString(id) || strlen(id->valuestring) != LMP_TOOL_CALL_ID_LEN ||
                            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "name")) ||
                            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "arguments")))
                                abort();
                }
                cJSON_Delete(v);
        }
        free(calls);
        free(content);
        size_t prev = 0, step = n / 64 + 1;
        for (size_t k = 0; k <= n; k += step) {
                size_t m = lmp_tool_streamable(s, text, k);
                if (m < prev || m > k)
                        abort();
                prev = m;
        }
        return 0;
}

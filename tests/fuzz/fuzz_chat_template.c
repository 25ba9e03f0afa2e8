/* libFuzzer target for the chat templates: any byte string, read as a
 * family name and as a conversation (roles and contents separated by NUL
 * bytes) rendered with every family's built-in template, must give a string
 * or an error with a message, never a crash or a sanitizer report. (The
 * Jinja interpreter itself, on any template text, is fuzz_jinja's.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        (void)lmp_chat_family_from_name(text);

        /* The same bytes as NUL-separated role, content, role, ... */
        struct lmp_chat_msg msgs[MAX_MSGS];
        size_t n = 0;
        const char *p = text, *end = text + size;
        while (p < end && n < MAX_MSGS) {
                const char *role = p;
                p += strlen(p) + 1;
                if (p > end)
                        break;
                msgs[n].role = role;
                msgs[n].content = p;
                n++;
                p += strlen(p) + 1;
        }
        for (int f = LMP_CHAT_UNKNOWN; f < LMP_CHAT_FAMILY_COUNT; f++) {
                struct lmp_chat_opts o = { .bos = "<s>", .eos = "</s>", .date = "15 Jan 2026",
                                           .now = 1768435200, .add_generation_prompt = size & 1 };
                struct lmp_error err = { 0 };
                char *out = NULL;
                int r = lmp_chat_render((enum lmp_chat_family)f, msgs, n, &o, &out, &err);
                if (r == 0 ? out == NULL : (out != NULL || err.msg[0] == '\0' || err.code >= 0))
                        abort();
                free(out);
        }
        free(text);
        return 0;
}

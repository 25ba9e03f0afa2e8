/* Chat templates: every conversation is rendered by the Jinja interpreter,
 * with the model's own template or, for a named family, the family's
 * built-in one (chat_families.c). What is left here is the glue: the
 * variables a chat template expects (messages, tools, bos_token, ...) and
 * the families' names. */
#include "tokenizer/chat_template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/macros.h"
#include "tokenizer/jinja.h"

extern const char *const lmp_chat_family_templates[LMP_CHAT_FAMILY_COUNT];

/* ------------------------------------------------------------ family names */

static const struct {
        enum lmp_chat_family family;
        const char *names[4];
} NAMES[] = {
        { LMP_CHAT_CHATML, { "chatml" } },
        { LMP_CHAT_QWEN2, { "qwen2" } },
        { LMP_CHAT_QWEN25, { "qwen2.5", "qwen25" } },
        { LMP_CHAT_LLAMA3, { "llama3", "llama-3" } },
        { LMP_CHAT_LLAMA31, { "llama3.1", "llama-3.1", "llama3.2", "llama-3.2" } },
        { LMP_CHAT_PHI3, { "phi3.5", "phi-3.5", "phi3" } },
        { LMP_CHAT_PHI3_MINI, { "phi3-mini", "phi-3-mini" } },
        { LMP_CHAT_GEMMA, { "gemma", "gemma2", "gemma-2" } },
        { LMP_CHAT_MISTRAL_V1, { "mistral-v1", "mistral", "mistral-7b-v0.1" } },
        { LMP_CHAT_MISTRAL_V3, { "mistral-v3", "mistral-v0.3" } },
        { LMP_CHAT_MISTRAL_NEMO, { "mistral-nemo", "nemo" } },
        { LMP_CHAT_LLAMA2, { "llama2", "llama-2" } },
        { LMP_CHAT_ZEPHYR, { "zephyr", "tinyllama", "zephyr-tinyllama" } },
};

enum lmp_chat_family lmp_chat_family_from_name(const char *name) {
        if (!name)
                return LMP_CHAT_UNKNOWN;
        for (size_t i = 0; i < LMP_ARRAY_SIZE(NAMES); i++)
                for (size_t j = 0; j < LMP_ARRAY_SIZE(NAMES[i].names) && NAMES[i].names[j]; j++)
                        if (strcasecmp(name, NAMES[i].names[j]) == 0)
                                return NAMES[i].family;
        return LMP_CHAT_UNKNOWN;
}

const char *lmp_chat_family_name(enum lmp_chat_family f) {
        for (size_t i = 0; i < LMP_ARRAY_SIZE(NAMES); i++)
                if (NAMES[i].family == f)
                        return NAMES[i].names[0];
        return "unknown";
}

const char *lmp_chat_family_template(enum lmp_chat_family f) {
        return f > LMP_CHAT_UNKNOWN && f < LMP_CHAT_FAMILY_COUNT ? lmp_chat_family_templates[f] : NULL;
}

int lmp_chat_render(enum lmp_chat_family f, const struct lmp_chat_msg *msgs, size_t n,
                    const struct lmp_chat_opts *opts, char **ret_text, struct lmp_error *err) {
        struct lmp_chat_opts o = { .add_generation_prompt = true };
        if (opts)
                o = *opts;
        if (f <= LMP_CHAT_UNKNOWN || f >= LMP_CHAT_FAMILY_COUNT || !lmp_chat_family_templates[f])
                return lmp_error_set(err, -EINVAL, "unknown chat template family %d", (int)f);
        if (n == 0 || !msgs)
                return lmp_error_set(err, -EINVAL, "conversation is empty");
        for (size_t i = 0; i < n; i++)
                if (!msgs[i].role || !msgs[i].content)
                        return lmp_error_set(err, -EINVAL, "message %zu: missing %s", i,
                                             msgs[i].role ? "content" : "role");
        cJSON *mj = NULL;
        if (lmp_chat_messages_json(msgs, n, &mj) < 0)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        int r = lmp_chat_render_jinja(lmp_chat_family_templates[f], mj, &o, ret_text, err);
        cJSON_Delete(mj);
        return r;
}

/* ------------------------------------------------------------ Jinja templates */

int lmp_chat_messages_json(const struct lmp_chat_msg *msgs, size_t n, cJSON **ret_json) {
        cJSON *arr = cJSON_CreateArray();
        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                cJSON *m = cJSON_CreateObject();
                if (!m || !cJSON_AddItemToArray(arr, m) ||
                    !cJSON_AddStringToObject(m, "role", msgs[i].role ? msgs[i].role : "") ||
                    !cJSON_AddStringToObject(m, "content", msgs[i].content ? msgs[i].content : "")) {
                        if (m && !cJSON_IsArray(arr))
                                cJSON_Delete(m);
                        cJSON_Delete(arr);
                        return -ENOMEM;
                }
        }
        *ret_json = arr;
        return 0;
}

int lmp_chat_render_jinja(const char *template_text, const cJSON *messages, const struct lmp_chat_opts *o,
                          char **ret_text, struct lmp_error *err) {
        time_t now = o && o->now ? o->now : time(NULL);
        char today[32];
        struct tm tm;
        const char *date = o ? o->date : NULL;
        if (!date) {
                if (!gmtime_r(&now, &tm) || strftime(today, sizeof today, "%d %b %Y", &tm) == 0)
                        snprintf(today, sizeof today, "01 Jan 1970");
                date = today;
        }
        cJSON *vars = cJSON_CreateObject();
        if (!vars)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        /* The variables reference the caller's JSON (cJSON_CreateArrayReference
         * and friends): nothing is copied, and deleting vars leaves them. */
        bool ok = cJSON_AddItemToObject(vars, "messages",
                                        messages ? cJSON_CreateArrayReference(messages->child) : cJSON_CreateArray()) &&
                  cJSON_AddItemToObject(vars, "tools", o && o->tools ? cJSON_CreateArrayReference(o->tools->child)
                                                                     : cJSON_CreateNull()) &&
                  cJSON_AddStringToObject(vars, "bos_token", o && o->bos ? o->bos : "") &&
                  cJSON_AddStringToObject(vars, "eos_token", o && o->eos ? o->eos : "") &&
                  cJSON_AddBoolToObject(vars, "add_generation_prompt", o && o->add_generation_prompt) &&
                  cJSON_AddStringToObject(vars, "date_string", date);
        if (!ok) {
                cJSON_Delete(vars);
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        struct lmp_jinja_opts jo = { .now = now, .trim_blocks = true, .lstrip_blocks = true };
        int r = lmp_jinja_render(template_text, strlen(template_text), vars, &jo, ret_text, err);
        cJSON_Delete(vars);
        return r;
}

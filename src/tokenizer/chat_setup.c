/* One chat set-up for the CLI and the worker (chat_setup.h). */
#include "tokenizer/chat_setup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *token_text(const struct lmp_vocab *v, int32_t id) {
        size_t len = 0;
        const char *s = v && id >= 0 ? lmp_vocab_token_text(v, id, &len) : NULL;
        return strndup(s ? s : "", s ? len : 0);
}

static bool is_chatml(enum lmp_chat_family f) {
        return f == LMP_CHAT_CHATML || f == LMP_CHAT_QWEN2 || f == LMP_CHAT_QWEN25;
}

int lmp_chat_setup_init(struct lmp_chat_setup *cs, const struct lmp_gguf *g, const struct lmp_vocab *v,
                        const char *family_name, const char *template_text, struct lmp_error *err) {
        struct lmp_chat_setup s = { .family = LMP_CHAT_UNKNOWN };
        char *model_template = NULL;
        const char *tpl = template_text;
        struct lmp_gguf_str str;
        int r = -ENOMEM;

        *cs = (struct lmp_chat_setup){ .family = LMP_CHAT_UNKNOWN };
        if (!tpl && g && lmp_gguf_get_str(g, "tokenizer.chat_template", &str) == 0) {
                if (!(model_template = lmp_gguf_str_dup(str)))
                        goto fail;
                tpl = model_template;
        }
        if (family_name && *family_name) {
                s.family = lmp_chat_family_from_name(family_name);
                if (s.family == LMP_CHAT_UNKNOWN) {
                        r = lmp_error_set(err, -EINVAL, "unknown chat template family '%s'", family_name);
                        goto fail;
                }
        } else if (tpl) {
                s.family = lmp_chat_detect(tpl);
        }
        s.bos = token_text(v, v ? lmp_vocab_bos(v) : -1);
        s.eos = token_text(v, v ? lmp_vocab_eos(v) : -1);
        if (!s.bos || !s.eos)
                goto fail;
        /* The template's own default system prompt: Qwen2 builds vary in
         * it, so it is read from the text rather than taken from the family. */
        if (tpl && is_chatml(s.family) && lmp_chat_default_system(tpl, &s.default_system) == -ENOMEM)
                goto fail;
        free(model_template);
        *cs = s;
        return 0;
fail:
        if (r == -ENOMEM)
                lmp_error_set(err, -ENOMEM, "out of memory");
        free(model_template);
        lmp_chat_setup_clear(&s);
        return r;
}

void lmp_chat_setup_clear(struct lmp_chat_setup *cs) {
        free(cs->bos);
        free(cs->eos);
        free(cs->default_system);
        *cs = (struct lmp_chat_setup){ .family = LMP_CHAT_UNKNOWN };
}

int lmp_chat_setup_render(const struct lmp_chat_setup *cs, const struct lmp_chat_msg *msgs, size_t n,
                          const char *bos, const char *eos, const char *date, bool add_generation_prompt,
                          char **ret_text, struct lmp_error *err) {
        if (cs->family == LMP_CHAT_UNKNOWN)
                return lmp_error_set(err, -EINVAL, "no chat template lmpool knows");
        struct lmp_chat_opts opts = {
                .bos = bos ? bos : cs->bos,
                .eos = eos ? eos : cs->eos,
                .date = date,
                .default_system = cs->default_system,
                .add_generation_prompt = add_generation_prompt,
        };
        return lmp_chat_render(cs->family, msgs, n, &opts, ret_text, err);
}

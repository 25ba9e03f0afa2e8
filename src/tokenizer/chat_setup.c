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
        } else if (tpl && !(s.template_text = strdup(tpl))) {
                goto fail;
        }
        s.bos = token_text(v, v ? lmp_vocab_bos(v) : -1);
        s.eos = token_text(v, v ? lmp_vocab_eos(v) : -1);
        if (!s.bos || !s.eos)
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
        free(cs->template_text);
        *cs = (struct lmp_chat_setup){ .family = LMP_CHAT_UNKNOWN };
}

bool lmp_chat_setup_can_render(const struct lmp_chat_setup *cs) {
        return cs->family != LMP_CHAT_UNKNOWN || cs->template_text;
}

int lmp_chat_setup_render_json(const struct lmp_chat_setup *cs, const cJSON *messages, const cJSON *tools,
                               const char *bos, const char *eos, const char *date, time_t now,
                               bool add_generation_prompt, char **ret_text, struct lmp_error *err) {
        if (!lmp_chat_setup_can_render(cs))
                return lmp_error_set(err, -EINVAL, "no chat template");
        if (cs->family != LMP_CHAT_UNKNOWN && tools)
                return lmp_error_set(err, -EINVAL, "tools need the model's own template, not a named family");
        struct lmp_chat_opts opts = {
                .bos = bos ? bos : cs->bos,
                .eos = eos ? eos : cs->eos,
                .date = date,
                .add_generation_prompt = add_generation_prompt,
                .tools = tools,
                .now = now,
        };
        return lmp_chat_render_jinja(cs->family != LMP_CHAT_UNKNOWN ? lmp_chat_family_template(cs->family)
                                                                    : cs->template_text,
                                     messages, &opts, ret_text, err);
}

int lmp_chat_setup_render(const struct lmp_chat_setup *cs, const struct lmp_chat_msg *msgs, size_t n,
                          const char *bos, const char *eos, const char *date, bool add_generation_prompt,
                          char **ret_text, struct lmp_error *err) {
        if (!lmp_chat_setup_can_render(cs))
                return lmp_error_set(err, -EINVAL, "no chat template");
        if (cs->family != LMP_CHAT_UNKNOWN) {
                struct lmp_chat_opts opts = {
                        .bos = bos ? bos : cs->bos,
                        .eos = eos ? eos : cs->eos,
                        .date = date,
                        .add_generation_prompt = add_generation_prompt,
                };
                return lmp_chat_render(cs->family, msgs, n, &opts, ret_text, err);
        }
        cJSON *mj = NULL;
        if (lmp_chat_messages_json(msgs, n, &mj) < 0)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        int r = lmp_chat_setup_render_json(cs, mj, NULL, bos, eos, date, 0, add_generation_prompt, ret_text, err);
        cJSON_Delete(mj);
        return r;
}

/* How a model's conversations are rendered, read once from the model: the
 * chat template's family, the bos/eos token texts the template writes and
 * the template's own default system prompt. `lmpool chat-template` and the
 * worker both build it with lmp_chat_setup_init() and render through
 * lmp_chat_setup_render(), so a model renders the same in the server as in
 * the CLI. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "gguf/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

struct lmp_chat_setup {
        enum lmp_chat_family family;    /* LMP_CHAT_UNKNOWN: none lmpool knows */
        char *bos, *eos;                /* token texts; "" when there is no such token */
        char *default_system;           /* the template's own (ChatML families); NULL: none */
};

/* Fills *cs. The template is template_text when given, else the model's
 * tokenizer.chat_template (g may be NULL with template_text). The family
 * is family_name's when it is given and not empty (a configured
 * chat_template, or --family), else detected from the template; a model
 * without a template, or with one lmpool does not know, gets
 * LMP_CHAT_UNKNOWN and 0. The bos/eos texts are v's tokens' (v may be NULL:
 * ""). Returns 0, -EINVAL for an unknown family name, or -ENOMEM, with a
 * message in *err; *cs is then empty. lmp_chat_setup_clear() frees it. */
int lmp_chat_setup_init(struct lmp_chat_setup *cs, const struct lmp_gguf *g, const struct lmp_vocab *v,
                        const char *family_name, const char *template_text, struct lmp_error *err);
void lmp_chat_setup_clear(struct lmp_chat_setup *cs);

/* lmp_chat_render() with cs: its family, bos/eos texts (unless bos or eos is
 * given: the CLI's --bos/--eos) and default system prompt. date NULL is
 * today. Returns as lmp_chat_render() does; -EINVAL with a message when the
 * family is unknown. */
int lmp_chat_setup_render(const struct lmp_chat_setup *cs, const struct lmp_chat_msg *msgs, size_t n,
                          const char *bos, const char *eos, const char *date, bool add_generation_prompt,
                          char **ret_text, struct lmp_error *err);

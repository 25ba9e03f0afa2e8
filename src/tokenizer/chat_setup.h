/* How a model's conversations are rendered, read once from the model: its
 * own Jinja template (or a named family's built-in one) and the bos/eos
 * token texts the template writes. `lmpool chat-template` and the
 * worker both build it with lmp_chat_setup_init() and render through
 * lmp_chat_setup_render(), so a model renders the same in the server as in
 * the CLI. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "gguf/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

struct lmp_chat_setup {
        enum lmp_chat_family family;    /* a named family; LMP_CHAT_UNKNOWN: the template */
        char *template_text;            /* the model's own (or the given) Jinja template; NULL: none */
        char *bos, *eos;                /* token texts; "" when there is no such token */
};

/* Fills *cs. The template is template_text when given, else the model's
 * tokenizer.chat_template (g may be NULL with template_text). The family
 * is family_name's when it is given and not empty (a configured
 * chat_template, or --family), whose built-in template is then rendered;
 * else the template is rendered by the Jinja interpreter. A model with
 * neither cannot render chats (lmp_chat_setup_can_render()). The bos/eos texts are v's tokens' (v may be NULL:
 * ""). Returns 0, -EINVAL for an unknown family name, or -ENOMEM, with a
 * message in *err; *cs is then empty. lmp_chat_setup_clear() frees it. */
int lmp_chat_setup_init(struct lmp_chat_setup *cs, const struct lmp_gguf *g, const struct lmp_vocab *v,
                        const char *family_name, const char *template_text, struct lmp_error *err);
void lmp_chat_setup_clear(struct lmp_chat_setup *cs);

/* Whether cs has a template (its own or a family's) to render chats with. */
bool lmp_chat_setup_can_render(const struct lmp_chat_setup *cs);

/* Renders msgs with cs: its family's or its own template, its bos/eos texts
 * (unless bos or eos is given: the CLI's --bos/--eos). date NULL is today.
 * Returns as lmp_chat_render_jinja() does; -EINVAL with a message when there
 * is no template. */
int lmp_chat_setup_render(const struct lmp_chat_setup *cs, const struct lmp_chat_msg *msgs, size_t n,
                          const char *bos, const char *eos, const char *date, bool add_generation_prompt,
                          char **ret_text, struct lmp_error *err);

/* The same with the messages as JSON (any fields the template reads, e.g.
 * tool_calls), an OpenAI-style tools list (NULL: none; a named family
 * refuses tools) and the time strftime_now() sees (0: now). */
int lmp_chat_setup_render_json(const struct lmp_chat_setup *cs, const cJSON *messages, const cJSON *tools,
                               const char *bos, const char *eos, const char *date, time_t now,
                               bool add_generation_prompt, char **ret_text, struct lmp_error *err);

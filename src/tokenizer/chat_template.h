/* Chat templates: turning a conversation [{role, content}] into the exact
 * prompt text a model was trained on. A model's own template
 * (tokenizer.chat_template) is rendered by the Jinja interpreter
 * (tokenizer/jinja.h) with lmp_chat_render_jinja(), as Hugging Face renders
 * it. For a model without a template, a configuration names a family, whose
 * built-in Jinja template lmp_chat_render() renders the same way. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/error.h"

enum lmp_chat_family {
        LMP_CHAT_UNKNOWN = 0,
        LMP_CHAT_CHATML,        /* <|im_start|>role ... <|im_end|>, no default system prompt */
        LMP_CHAT_QWEN2,         /* ChatML, default system "You are a helpful assistant." */
        LMP_CHAT_QWEN25,        /* ChatML, default system "You are Qwen, created by Alibaba Cloud. ..." */
        LMP_CHAT_LLAMA3,        /* Llama 3.0 header tokens, no system preamble */
        LMP_CHAT_LLAMA31,       /* Llama 3.1 / 3.2: dated system preamble */
        LMP_CHAT_PHI3,          /* Phi-3.5: <|system|>, <|user|> ... <|end|> */
        LMP_CHAT_PHI3_MINI,     /* Phi-3 mini: bos, <|user|> ... <|end|> with <|assistant|> after each user turn */
        LMP_CHAT_GEMMA,         /* Gemma 2: <start_of_turn>, no system role */
        LMP_CHAT_MISTRAL_V1,    /* Mistral 7B v0.1: [INST] x [/INST], strict alternation */
        LMP_CHAT_MISTRAL_V3,    /* Mistral 7B v0.3, Mixtral 8x22B: [INST] x[/INST], system folded into
                                 * the last user turn */
        LMP_CHAT_MISTRAL_NEMO,  /* Mistral Nemo: [INST]x[/INST], system folded into the last user turn */
        LMP_CHAT_LLAMA2,        /* Llama 2: [INST] <<SYS>> ... <</SYS>> */
        LMP_CHAT_ZEPHYR,        /* Zephyr / TinyLlama chat: <|user|> ... eos */
        LMP_CHAT_FAMILY_COUNT,
};

struct lmp_chat_msg {
        const char *role;       /* "system", "user", "assistant", "tool", ... */
        const char *content;
};

struct lmp_chat_opts {
        const char *bos;        /* bos_token text; NULL means "" */
        const char *eos;        /* eos_token text; NULL means "" */
        const char *date;       /* date_string, e.g. "15 Jan 2026"; NULL means today */
        bool add_generation_prompt;
        const cJSON *tools;     /* lmp_chat_render_jinja: the OpenAI-style tools list, NULL for
                                 * none (the template sees tools = none) */
        time_t now;             /* lmp_chat_render_jinja: strftime_now()'s time and, without
                                 * date, date_string's; 0 means the current time */
};

/* The family of a configured name ("chatml", "qwen2.5", "llama3.1",
 * "gemma", "mistral-nemo", ...), LMP_CHAT_UNKNOWN for an unknown name. */
enum lmp_chat_family lmp_chat_family_from_name(const char *name);

/* The canonical name of a family ("unknown" for LMP_CHAT_UNKNOWN). */
const char *lmp_chat_family_name(enum lmp_chat_family f);

/* Renders the messages (a JSON array of message objects: role, content,
 * and whatever else the template reads, e.g. tool_calls) with the Jinja
 * template text, as Hugging Face's apply_chat_template does (trim_blocks,
 * lstrip_blocks; messages, tools, bos_token, eos_token,
 * add_generation_prompt and date_string as variables). On success *ret_text
 * is a malloc'd string the caller frees. Returns -EINVAL with a message in
 * *err when the template is not valid Jinja, refuses the conversation
 * (raise_exception: the message is the template's own) or fails, -E2BIG when
 * the render reaches a bound of tokenizer/jinja.h, -ENOMEM. */
int lmp_chat_render_jinja(const char *template_text, const cJSON *messages, const struct lmp_chat_opts *opts,
                          char **ret_text, struct lmp_error *err);

/* msgs[0..n) as the JSON array lmp_chat_render_jinja() takes, in *ret_json
 * (the caller cJSON_Delete()s it); -ENOMEM. */
int lmp_chat_messages_json(const struct lmp_chat_msg *msgs, size_t n, cJSON **ret_json);

/* The built-in Jinja template of family f, NULL for LMP_CHAT_UNKNOWN or an
 * unknown value. */
const char *lmp_chat_family_template(enum lmp_chat_family f);

/* Renders msgs[0..n) with the family's built-in template. On success *ret_text is
 * a malloc'd NUL-terminated string the caller frees. Returns -EINVAL with a
 * message in *err when the template refuses the conversation (the message is
 * the template's own), -ENOMEM on allocation failure. */
int lmp_chat_render(enum lmp_chat_family f, const struct lmp_chat_msg *msgs, size_t n,
                    const struct lmp_chat_opts *opts, char **ret_text, struct lmp_error *err);

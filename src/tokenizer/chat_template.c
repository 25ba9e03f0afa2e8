/* Per-family chat template renderers. Each render_* function follows its
 * family's Jinja template statement by statement (the templates are quoted
 * in the comments where their whitespace matters), including the checks the
 * template performs with raise_exception(), whose messages are reproduced
 * verbatim. Tool calls are not rendered: a conversation is a list of
 * (role, content) pairs, as the templates see it when no tools are given. */
#include "tokenizer/chat_template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/json.h"
#include "common/utf8.h"
#include "tokenizer/jinja.h"

/* ------------------------------------------------------------ string builder */

struct sbuf {
        char *p;
        size_t len, cap;
        bool oom;
};

/* Room for n more bytes and the NUL; false (and b->oom) when there is none. */
static bool sb_reserve(struct sbuf *b, size_t n) {
        if (b->oom)
                return false;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n + 1)
                        cap *= 2;
                char *p = realloc(b->p, cap);
                if (!p) {
                        b->oom = true;
                        return false;
                }
                b->p = p;
                b->cap = cap;
        }
        return true;
}

static void sb_addn(struct sbuf *b, const char *s, size_t n) {
        if (!sb_reserve(b, n))
                return;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void sb_add(struct sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Appends each string argument in turn; the list ends with NULL. */
static void sb_cat(struct sbuf *b, ...) {
        va_list ap;
        va_start(ap, b);
        for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
                sb_add(b, s);
        va_end(ap);
}

/* Length of the UTF-8 encoded whitespace character at s (as Python's
 * str.isspace() defines whitespace, which is what Jinja's trim filter and
 * str.strip() remove), or 0 when s does not start with one. */
static size_t space_len(const unsigned char *s, size_t n) {
        if (n >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x20)))
                return 1;
        if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
                return 2;
        uint32_t cp;
        if (lmp_utf8_decode(s, n, &cp) == 3) {
                if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
                    cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
                        return 3;
        }
        return 0;
}

/* Appends s without leading and trailing whitespace (Jinja's `trim`). */
static void sb_add_trimmed(struct sbuf *b, const char *s) {
        const unsigned char *p = (const unsigned char *)s;
        size_t n = strlen(s), k;
        while (n > 0 && (k = space_len(p, n)) > 0) {
                p += k;
                n -= k;
        }
        /* Trailing: step back over whole characters. A whitespace character
         * is 1 to 3 bytes; try each length ending at the end. */
        for (bool again = true; again && n > 0;) {
                again = false;
                for (size_t l = 1; l <= 3 && l <= n; l++) {
                        if (l > 1 && (p[n - l] & 0xc0) == 0x80)
                                continue;
                        if (space_len(p + n - l, l) == l) {
                                n -= l;
                                again = true;
                                break;
                        }
                }
        }
        sb_addn(b, (const char *)p, n);
}

/* Appends s as a JSON string the way Jinja's tojson filter writes it in
 * Hugging Face's environment (Python's json.dumps with ensure_ascii=False):
 * quotes, backslashes and control characters escaped, everything else
 * verbatim (DEL included). */
static void sb_add_json_string(struct sbuf *b, const char *s) {
        size_t n = strlen(s), worst = lmp_json_escaped_max(n);
        if (worst == 0 || !sb_reserve(b, worst)) {
                b->oom = true;
                return;
        }
        b->len += lmp_json_escape(b->p + b->len, s, n, false);
        b->p[b->len] = '\0';
}

/* ------------------------------------------------------------ helpers */

static bool is_role(const struct lmp_chat_msg *m, const char *role) {
        return strcmp(m->role, role) == 0;
}

static const char ALTERNATE[] = "Conversation roles must alternate user/assistant/user/assistant/...";

static int refuse(struct lmp_error *err, const char *msg) {
        return lmp_error_set(err, -EINVAL, "%s", msg);
}

/* ------------------------------------------------------------ families */

/* ChatML. Plain ChatML and Qwen2 render every message as
 * '<|im_start|>' + role + '\n' + content + '<|im_end|>\n', Qwen2 first adding
 * its default system turn when the conversation does not start with one.
 * Qwen2.5 without tools: the system turn (the first message's, else the
 * default), then user / non-first system / assistant turns, and runs of tool
 * messages grouped into one user turn of <tool_response> blocks; other roles
 * are dropped. */
static int render_chatml(const char *default_system, bool qwen25, const struct lmp_chat_msg *m,
                         size_t n, const struct lmp_chat_opts *o, struct sbuf *b) {
        if (default_system && !is_role(&m[0], "system"))
                sb_cat(b, "<|im_start|>system\n", default_system, "<|im_end|>\n", NULL);
        for (size_t i = 0; i < n; i++) {
                if (!qwen25) {
                        sb_cat(b, "<|im_start|>", m[i].role, "\n", m[i].content, "<|im_end|>\n", NULL);
                } else if (is_role(&m[i], "tool")) {
                        if (i == 0 || !is_role(&m[i - 1], "tool"))
                                sb_add(b, "<|im_start|>user");
                        sb_cat(b, "\n<tool_response>\n", m[i].content, "\n</tool_response>", NULL);
                        if (i + 1 == n || !is_role(&m[i + 1], "tool"))
                                sb_add(b, "<|im_end|>\n");
                } else if (is_role(&m[i], "user") || is_role(&m[i], "assistant") ||
                           is_role(&m[i], "system")) {
                        sb_cat(b, "<|im_start|>", m[i].role, "\n", m[i].content, "<|im_end|>\n", NULL);
                }
        }
        if (o->add_generation_prompt)
                sb_add(b, "<|im_start|>assistant\n");
        return 0;
}

static const char *const MONTHS[12] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Llama 3.1 / 3.2 without tools: bos, a system header with the knowledge
 * cutoff and today's date followed by the (trimmed) system message, then
 * each message as a header and its trimmed content; tool and ipython
 * messages go under an "ipython" header, their content through tojson (a
 * string "is iterable" in Jinja, so the template JSON-encodes it). */
static int render_llama31(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                          struct sbuf *b) {
        char today[32];
        const char *date = o->date;
        if (!date) {
                /* strftime_now("%d %b %Y"), with English month names
                 * whatever the locale. */
                time_t t = time(NULL);
                struct tm tm;
                localtime_r(&t, &tm);
                snprintf(today, sizeof(today), "%02d %s %04d", tm.tm_mday,
                         MONTHS[tm.tm_mon % 12], tm.tm_year + 1900);
                date = today;
        }
        size_t first = 0;
        sb_cat(b, o->bos, "<|start_header_id|>system<|end_header_id|>\n\n",
               "Cutting Knowledge Date: December 2023\n", "Today Date: ", date, "\n\n", NULL);
        if (is_role(&m[0], "system")) {
                sb_add_trimmed(b, m[0].content);
                first = 1;
        }
        sb_add(b, "<|eot_id|>");
        for (size_t i = first; i < n; i++) {
                if (is_role(&m[i], "ipython") || is_role(&m[i], "tool")) {
                        sb_add(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
                        sb_add_json_string(b, m[i].content);
                        sb_add(b, "<|eot_id|>");
                } else {
                        sb_cat(b, "<|start_header_id|>", m[i].role, "<|end_header_id|>\n\n", NULL);
                        sb_add_trimmed(b, m[i].content);
                        sb_add(b, "<|eot_id|>");
                }
        }
        if (o->add_generation_prompt)
                sb_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        return 0;
}

/* Llama 3.0: bos, then every message as a header and its trimmed content. */
static int render_llama3(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                         struct sbuf *b) {
        sb_add(b, o->bos);
        for (size_t i = 0; i < n; i++) {
                sb_cat(b, "<|start_header_id|>", m[i].role, "<|end_header_id|>\n\n", NULL);
                sb_add_trimmed(b, m[i].content);
                sb_add(b, "<|eot_id|>");
        }
        if (o->add_generation_prompt)
                sb_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        return 0;
}

/* Phi-3.5: '<|' + role + '|>\n' + content + '<|end|>\n' for system (when its
 * content is not empty), user and assistant; other roles are dropped. No
 * bos. Ends with the generation prompt, or with eos when there is none. */
static int render_phi3(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                       struct sbuf *b) {
        for (size_t i = 0; i < n; i++) {
                if ((is_role(&m[i], "system") && m[i].content[0]) || is_role(&m[i], "user") ||
                    is_role(&m[i], "assistant"))
                        sb_cat(b, "<|", m[i].role, "|>\n", m[i].content, "<|end|>\n", NULL);
        }
        sb_add(b, o->add_generation_prompt ? "<|assistant|>\n" : o->eos);
        return 0;
}

/* Phi-3 mini: bos; a user turn is '<|user|>\n' + content + '<|end|>\n'
 * followed by '<|assistant|>\n', an assistant turn content + '<|end|>\n';
 * system and other roles are dropped. The generation prompt is always there
 * after a user turn, whatever add_generation_prompt says. */
static int render_phi3_mini(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                            struct sbuf *b) {
        sb_add(b, o->bos);
        for (size_t i = 0; i < n; i++) {
                if (is_role(&m[i], "user"))
                        sb_cat(b, "<|user|>\n", m[i].content, "<|end|>\n<|assistant|>\n", NULL);
                else if (is_role(&m[i], "assistant"))
                        sb_cat(b, m[i].content, "<|end|>\n", NULL);
        }
        return 0;
}

/* Gemma 2: bos, no system role, strict user/assistant alternation starting
 * with user, the assistant called "model", contents trimmed. */
static int render_gemma(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                        struct sbuf *b, struct lmp_error *err) {
        if (is_role(&m[0], "system"))
                return refuse(err, "System role not supported");
        sb_add(b, o->bos);
        for (size_t i = 0; i < n; i++) {
                if (is_role(&m[i], "user") != (i % 2 == 0))
                        return refuse(err, ALTERNATE);
                const char *role = is_role(&m[i], "assistant") ? "model" : m[i].role;
                sb_cat(b, "<start_of_turn>", role, "\n", NULL);
                sb_add_trimmed(b, m[i].content);
                sb_add(b, "<end_of_turn>\n");
        }
        if (o->add_generation_prompt)
                sb_add(b, "<start_of_turn>model\n");
        return 0;
}

/* Mistral 7B v0.1: bos, strict alternation, '[INST] ' + content + ' [/INST]'
 * for users, content + eos for the assistant, nothing else allowed. The
 * template has no generation prompt: the prompt ends at [/INST]. */
static int render_mistral_v1(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                             struct sbuf *b, struct lmp_error *err) {
        sb_add(b, o->bos);
        for (size_t i = 0; i < n; i++) {
                if (is_role(&m[i], "user") != (i % 2 == 0))
                        return refuse(err, ALTERNATE);
                if (is_role(&m[i], "user"))
                        sb_cat(b, "[INST] ", m[i].content, " [/INST]", NULL);
                else if (is_role(&m[i], "assistant"))
                        sb_cat(b, m[i].content, o->eos, NULL);
                else
                        return refuse(err, "Only user and assistant roles are supported!");
        }
        return 0;
}

/* Mistral v0.3 and Nemo: an optional first system message, then
 * alternation (tool messages excepted) checked before anything is written;
 * the system message is folded into the last message when that one is a
 * user turn, and dropped otherwise. Nemo writes '[INST]' + content +
 * '[/INST]' and content + eos for the assistant; v0.3 writes '[INST] ' +
 * content + '[/INST]' and ' ' + trimmed content + eos. */
static int render_mistral_sys_last(bool v3, const struct lmp_chat_msg *m, size_t n,
                                   const struct lmp_chat_opts *o, struct sbuf *b,
                                   struct lmp_error *err) {
        const char *system = NULL, *inst = v3 ? "[INST] " : "[INST]";
        size_t first = 0, idx = 0;
        if (is_role(&m[0], "system")) {
                system = m[0].content;
                first = 1;
        }
        for (size_t i = first; i < n; i++) {
                if (is_role(&m[i], "tool") || is_role(&m[i], "tool_results"))
                        continue;
                if (is_role(&m[i], "user") != (idx % 2 == 0))
                        return refuse(err, "After the optional system message, conversation roles "
                                           "must alternate user/assistant/user/assistant/...");
                idx++;
        }
        sb_add(b, o->bos);
        for (size_t i = first; i < n; i++) {
                if (is_role(&m[i], "user")) {
                        if (i + 1 == n && system)
                                sb_cat(b, inst, system, "\n\n", m[i].content, "[/INST]", NULL);
                        else
                                sb_cat(b, inst, m[i].content, "[/INST]", NULL);
                } else if (is_role(&m[i], "assistant")) {
                        if (v3) {
                                sb_add(b, " ");
                                sb_add_trimmed(b, m[i].content);
                                sb_add(b, o->eos);
                        } else {
                                sb_cat(b, m[i].content, o->eos, NULL);
                        }
                } else if (is_role(&m[i], "tool") || is_role(&m[i], "tool_results")) {
                        /* A tool result needs the call id of the call it
                         * answers, which a (role, content) message lacks. */
                        return refuse(err, "Tool call IDs should be alphanumeric strings with length 9!");
                } else {
                        return refuse(err, "Only user and assistant roles are supported, with the "
                                           "exception of an initial optional system message!");
                }
        }
        return 0;
}

/* Llama 2: an optional first system message wrapped in <<SYS>> into the
 * first turn; strict alternation; each user turn is
 * bos + '[INST] ' + content.strip() + ' [/INST]' and each assistant turn
 * ' ' + content.strip() + ' ' + eos. No generation prompt. */
static int render_llama2(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                         struct sbuf *b, struct lmp_error *err) {
        const char *system = NULL;
        size_t first = 0;
        if (is_role(&m[0], "system")) {
                system = m[0].content;
                first = 1;
        }
        for (size_t i = first; i < n; i++) {
                size_t k = i - first;
                if (is_role(&m[i], "user") != (k % 2 == 0))
                        return refuse(err, ALTERNATE);
                struct sbuf content = { 0 };
                if (k == 0 && system)
                        sb_cat(&content, "<<SYS>>\n", system, "\n<</SYS>>\n\n", NULL);
                sb_add(&content, m[i].content);
                if (content.oom) {
                        free(content.p);
                        b->oom = true;
                        return 0;
                }
                if (is_role(&m[i], "user")) {
                        sb_cat(b, o->bos, "[INST] ", NULL);
                        sb_add_trimmed(b, content.p);
                        sb_add(b, " [/INST]");
                } else if (is_role(&m[i], "assistant")) {
                        sb_add(b, " ");
                        sb_add_trimmed(b, content.p);
                        sb_cat(b, " ", o->eos, NULL);
                }
                free(content.p);
        }
        return 0;
}

/* Zephyr / TinyLlama chat (trim_blocks + lstrip_blocks): each of user,
 * system and assistant renders as '<|' + role + '|>\n' + content + eos and
 * the newline that follows the expression; after the last message the
 * generation prompt is '<|assistant|>' and a newline. No bos. */
static int render_zephyr(const struct lmp_chat_msg *m, size_t n, const struct lmp_chat_opts *o,
                         struct sbuf *b) {
        for (size_t i = 0; i < n; i++) {
                if (is_role(&m[i], "user") || is_role(&m[i], "system") || is_role(&m[i], "assistant"))
                        sb_cat(b, "<|", m[i].role, "|>\n", m[i].content, o->eos, "\n", NULL);
                if (i + 1 == n && o->add_generation_prompt)
                        sb_add(b, "<|assistant|>\n");
        }
        return 0;
}

/* ------------------------------------------------------------ public API */

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

int lmp_chat_default_system(const char *t, char **ret_text) {
        static const char head[] = "<|im_start|>system";
        const char *p = t;

        while (p && (p = strstr(p, head)) != NULL) {
                p += sizeof(head) - 1;
                /* The newline, written as an escape or literally. */
                if (p[0] == '\\' && p[1] == 'n')
                        p += 2;
                else if (p[0] == '\n')
                        p += 1;
                else
                        continue;
                const char *end = strstr(p, "<|im_end|>");
                if (!end)
                        break;
                /* A literal contains no quote, operator or tag: otherwise it
                 * is an expression such as ' + messages[0]['content'] + '. */
                if (end == p || memchr(p, '\'', (size_t)(end - p)) || memchr(p, '"', (size_t)(end - p)) ||
                    memchr(p, '{', (size_t)(end - p)) || memchr(p, '\\', (size_t)(end - p)))
                        continue;
                char *s = strndup(p, (size_t)(end - p));
                if (!s)
                        return -ENOMEM;
                *ret_text = s;
                return 0;
        }
        return -ENOENT;
}

static bool has(const char *t, const char *marker) { return strstr(t, marker) != NULL; }

enum lmp_chat_family lmp_chat_detect(const char *t) {
        if (!t)
                return LMP_CHAT_UNKNOWN;
        if (has(t, "<|im_start|>")) {
                /* Qwen2.5 writes its system turn before the loop and renders
                 * tool results as <tool_response>; Qwen2 adds a default
                 * system turn inside the loop. */
                if (has(t, "<tool_response>") || has(t, "You are Qwen, created by Alibaba Cloud"))
                        return LMP_CHAT_QWEN25;
                char *sys = NULL;
                if (lmp_chat_default_system(t, &sys) == 0) {
                        free(sys);
                        return LMP_CHAT_QWEN2;
                }
                return LMP_CHAT_CHATML;
        }
        if (has(t, "<|start_header_id|>"))
                return has(t, "Cutting Knowledge Date") ? LMP_CHAT_LLAMA31 : LMP_CHAT_LLAMA3;
        if (has(t, "<start_of_turn>"))
                return LMP_CHAT_GEMMA;
        if (has(t, "<|user|>")) {
                if (!has(t, "<|end|>"))
                        return LMP_CHAT_ZEPHYR;
                return has(t, "<|system|>") ? LMP_CHAT_PHI3 : LMP_CHAT_PHI3_MINI;
        }
        if (has(t, "<<SYS>>"))
                return LMP_CHAT_LLAMA2;
        if (has(t, "[INST]")) {
                /* Nemo writes "[INST]" + content + "[/INST]"; v0.3
                 * "[INST] " + content + "[/INST]"; v0.1
                 * '[INST] ' + content + ' [/INST]'. */
                if (has(t, "\"[INST]\" +") || has(t, "'[INST]' +") || has(t, "\"[INST]\"+") ||
                    has(t, "'[INST]'+"))
                        return LMP_CHAT_MISTRAL_NEMO;
                if (has(t, " [/INST]"))
                        return LMP_CHAT_MISTRAL_V1;
                if (has(t, "[INST] "))
                        return LMP_CHAT_MISTRAL_V3;
        }
        return LMP_CHAT_UNKNOWN;
}

int lmp_chat_render(enum lmp_chat_family f, const struct lmp_chat_msg *msgs, size_t n,
                    const struct lmp_chat_opts *opts, char **ret_text, struct lmp_error *err) {
        struct lmp_chat_opts o = { .add_generation_prompt = true };
        struct sbuf b = { 0 };
        int r;

        if (opts)
                o = *opts;
        if (!o.bos)
                o.bos = "";
        if (!o.eos)
                o.eos = "";
        if (n == 0 || !msgs)
                return lmp_error_set(err, -EINVAL, "conversation is empty");
        for (size_t i = 0; i < n; i++)
                if (!msgs[i].role || !msgs[i].content)
                        return lmp_error_set(err, -EINVAL, "message %zu: missing %s", i,
                                             msgs[i].role ? "content" : "role");

        switch (f) {
        case LMP_CHAT_CHATML: r = render_chatml(o.default_system, false, msgs, n, &o, &b); break;
        case LMP_CHAT_QWEN2:
                r = render_chatml(o.default_system ? o.default_system : "You are a helpful assistant.",
                                  false, msgs, n, &o, &b);
                break;
        case LMP_CHAT_QWEN25:
                r = render_chatml(o.default_system ? o.default_system
                                                   : "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                                  true, msgs, n, &o, &b);
                break;
        case LMP_CHAT_LLAMA3: r = render_llama3(msgs, n, &o, &b); break;
        case LMP_CHAT_LLAMA31: r = render_llama31(msgs, n, &o, &b); break;
        case LMP_CHAT_PHI3: r = render_phi3(msgs, n, &o, &b); break;
        case LMP_CHAT_PHI3_MINI: r = render_phi3_mini(msgs, n, &o, &b); break;
        case LMP_CHAT_GEMMA: r = render_gemma(msgs, n, &o, &b, err); break;
        case LMP_CHAT_MISTRAL_V1: r = render_mistral_v1(msgs, n, &o, &b, err); break;
        case LMP_CHAT_MISTRAL_V3: r = render_mistral_sys_last(true, msgs, n, &o, &b, err); break;
        case LMP_CHAT_MISTRAL_NEMO: r = render_mistral_sys_last(false, msgs, n, &o, &b, err); break;
        case LMP_CHAT_LLAMA2: r = render_llama2(msgs, n, &o, &b, err); break;
        case LMP_CHAT_ZEPHYR: r = render_zephyr(msgs, n, &o, &b); break;
        default:
                return lmp_error_set(err, -EINVAL, "unknown chat template family %d", (int)f);
        }
        if (r == 0 && b.oom)
                r = lmp_error_set(err, -ENOMEM, "out of memory rendering the chat template");
        if (r < 0) {
                free(b.p);
                return r;
        }
        if (!b.p) {     /* an empty render: still a string */
                b.p = strdup("");
                if (!b.p)
                        return lmp_error_set(err, -ENOMEM, "out of memory rendering the chat template");
        }
        *ret_text = b.p;
        return 0;
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

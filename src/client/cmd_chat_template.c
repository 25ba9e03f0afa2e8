/* `lmpool chat-template`: renders a conversation (a JSON array of
 * {"role", "content", ...}) with a chat template and prints the prompt
 * exactly, with no added newline. The template comes from a model's GGUF
 * (`tokenizer.chat_template`, with its bos/eos token texts, set up as the
 * worker sets them up: chat_setup.h) or from a .jinja file with --bos/--eos
 * given, and is rendered by the Jinja interpreter; --family renders a named
 * family's built-in template instead. --tools passes an OpenAI-style tools
 * list to the template as `tools`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/commands.h"
#include "common/args.h"
#include "gguf/gguf.h"
#include "tokenizer/chat_setup.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: lmpool chat-template (MODEL | --template FILE.jinja [--bos S] [--eos S])\n"
                "                            --messages FILE.json [--family NAME] [--date \"15 Jan 2026\"]\n"
                "                            [--tools FILE.json] [--no-generation-prompt]\n"
                "Prints the prompt a conversation (a JSON array of {\"role\", \"content\"}) renders to.\n"
                "--tools gives the template an OpenAI-style tools list (a JSON array).\n"
                "--messages - reads standard input. --bos/--eos also override a model's token\n"
                "text; --date defaults to today.\n");
}

/* The whole of a file ("-": standard input), NUL-terminated. */
static char *read_file(const char *path, size_t *ret_len) {
        bool is_stdin = strcmp(path, "-") == 0;
        FILE *f = is_stdin ? stdin : fopen(path, "rb");
        char *buf = NULL;
        size_t len = 0, cap = 0, n;

        if (!f)
                return NULL;
        do {
                if (cap - len < 4096) {
                        char *p = realloc(buf, cap = cap ? cap * 2 : 8192);
                        if (!p) {
                                free(buf);
                                if (!is_stdin)
                                        fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        buf = p;
                }
                n = fread(buf + len, 1, cap - len - 1, f);
                len += n;
        } while (n > 0);
        bool failed = ferror(f);
        if (!is_stdin)
                fclose(f);
        if (failed) {
                free(buf);
                errno = EIO;
                return NULL;
        }
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        return buf;
}

/* Parses the messages file into msgs (pointing into *ret_json). */
static int parse_messages(const char *path, bool need_content, cJSON **ret_json, struct lmp_chat_msg **ret_msgs,
                          size_t *ret_n) {
        size_t len;
        char *text = read_file(path, &len);
        if (!text) {
                fprintf(stderr, "lmpool chat-template: %s: %s\n", path, strerror(errno));
                return -1;
        }
        cJSON *json = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cJSON_IsArray(json)) {
                fprintf(stderr, "lmpool chat-template: %s: not a JSON array of messages\n", path);
                cJSON_Delete(json);
                return -1;
        }
        size_t n = (size_t)cJSON_GetArraySize(json), i = 0;
        struct lmp_chat_msg *msgs = calloc(n ? n : 1, sizeof(*msgs));
        if (!msgs) {
                cJSON_Delete(json);
                fprintf(stderr, "lmpool chat-template: out of memory\n");
                return -1;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, json) {
                const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
                const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
                /* a model's template reads what it reads (an assistant turn of tool
                 * calls has no content); a family's needs the string */
                if (!cJSON_IsString(role) || (need_content && !cJSON_IsString(content))) {
                        fprintf(stderr, "lmpool chat-template: %s: message %zu needs a string "
                                        "\"role\"%s\n", path, i, need_content ? " and \"content\"" : "");
                        free(msgs);
                        cJSON_Delete(json);
                        return -1;
                }
                msgs[i].role = role->valuestring;
                msgs[i].content = cJSON_IsString(content) ? content->valuestring : "";
                i++;
        }
        *ret_json = json;
        *ret_msgs = msgs;
        *ret_n = n;
        return 0;
}

int lmp_cmd_chat_template(int argc, char **argv) {
        const char *model = NULL, *tpl_path = NULL, *msgs_path = NULL, *family_name = NULL;
        const char *bos_arg = NULL, *eos_arg = NULL, *date = NULL, *tools_path = NULL;
        cJSON *tools = NULL;
        bool no_gen_prompt = false;
        struct lmp_gguf *g = NULL;
        struct lmp_vocab *v = NULL;
        struct lmp_chat_setup cs = { .family = LMP_CHAT_UNKNOWN };
        struct lmp_error err = { 0 };
        char *tpl = NULL, *out = NULL;
        cJSON *json = NULL;
        struct lmp_chat_msg *msgs = NULL;
        size_t n = 0;
        int rc = 1;

        const struct lmp_opt opts[] = {
                { "template", 0, LMP_OPT_STRING, &tpl_path },
                { "messages", 0, LMP_OPT_STRING, &msgs_path },
                { "family", 0, LMP_OPT_STRING, &family_name },
                { "bos", 0, LMP_OPT_STRING, &bos_arg },
                { "eos", 0, LMP_OPT_STRING, &eos_arg },
                { "date", 0, LMP_OPT_STRING, &date },
                { "no-generation-prompt", 0, LMP_OPT_FLAG, &no_gen_prompt },
                { "tools", 0, LMP_OPT_STRING, &tools_path },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool chat-template", argc, argv, opts, usage, &model);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!msgs_path || (!model && !tpl_path && !family_name) || (model && tpl_path)) {
                usage(stderr);
                return 2;
        }

        /* The worker's own set-up (chat_setup.h): a model's template, token
         * texts and default system prompt, read the way lmpoold reads them. */
        if (model) {
                if (lmp_gguf_open(model, &g, &err) < 0 || lmp_vocab_load(g, &v, &err) < 0) {
                        fprintf(stderr, "lmpool chat-template: %s: %s\n", model, err.msg);
                        goto out;
                }
        } else if (tpl_path) {
                tpl = read_file(tpl_path, NULL);
                if (!tpl) {
                        fprintf(stderr, "lmpool chat-template: %s: %s\n", tpl_path, strerror(errno));
                        goto out;
                }
        }
        if (lmp_chat_setup_init(&cs, g, v, family_name, tpl, &err) < 0) {
                fprintf(stderr, "lmpool chat-template: %s\n", err.msg);
                goto out;
        }
        if (!lmp_chat_setup_can_render(&cs)) {
                fprintf(stderr, "lmpool chat-template: %s: no tokenizer.chat_template; "
                                "name the family with --family\n", model);
                goto out;
        }
        if (tools_path) {
                size_t len;
                char *text = read_file(tools_path, &len);
                if (!text) {
                        fprintf(stderr, "lmpool chat-template: %s: %s\n", tools_path, strerror(errno));
                        goto out;
                }
                tools = cJSON_ParseWithLength(text, len);
                free(text);
                if (!cJSON_IsArray(tools)) {
                        fprintf(stderr, "lmpool chat-template: %s: not a JSON array of tools\n", tools_path);
                        goto out;
                }
        }

        if (parse_messages(msgs_path, family_name != NULL, &json, &msgs, &n) < 0)
                goto out;
        /* --date is the date the template sees, in strftime_now() too */
        time_t now = 0;
        struct tm tm = { 0 };
        const char *end = date ? strptime(date, "%d %b %Y", &tm) : NULL;
        if (date && end && !*end)
                now = timegm(&tm);
        if (lmp_chat_setup_render_json(&cs, json, tools, bos_arg, eos_arg, date, now, !no_gen_prompt, &out, &err) < 0) {
                fprintf(stderr, "lmpool chat-template: %s\n", err.msg);
                goto out;
        }
        fputs(out, stdout);
        rc = fflush(stdout) == 0 ? 0 : 1;
out:
        free(out);
        free(msgs);
        cJSON_Delete(json);
        cJSON_Delete(tools);
        free(tpl);
        lmp_chat_setup_clear(&cs);
        lmp_vocab_free(v);
        lmp_gguf_free(g);
        return rc;
}

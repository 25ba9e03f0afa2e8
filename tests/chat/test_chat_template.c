/* The named families' built-in templates against the fixtures: for every
 * $LMPOOL_FIXTURES/templates/NAME.json, every conversation rendered with
 * the family of NAME must equal the model's Jinja template's render byte
 * for byte, or be refused with the template's own message. Then properties
 * the fixtures do not cover: whitespace trimming, family names, refusals of
 * malformed input. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/readfile.h"
#include "tokenizer/chat_template.h"
#include "../check.h"

static const struct {
        const char *file;
        enum lmp_chat_family family;
} EXPECTED_FAMILY[] = {
        { "qwen2.5.json", LMP_CHAT_QWEN25 },
        { "llama-3.1.json", LMP_CHAT_LLAMA31 },
        { "llama-3.2.json", LMP_CHAT_LLAMA31 },
        { "phi-3.5.json", LMP_CHAT_PHI3 },
        { "gemma-2.json", LMP_CHAT_GEMMA },
        { "mistral-nemo.json", LMP_CHAT_MISTRAL_NEMO },
        { "mistral-7b-v0.1.json", LMP_CHAT_MISTRAL_V1 },
        { "llama-2.json", LMP_CHAT_LLAMA2 },
        { "zephyr-tinyllama.json", LMP_CHAT_ZEPHYR },
};

static int renders, refusals;

static void check_fixture(const char *dir, const char *name) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                abort();
        char *text = NULL;
        lmp_read_file(path, &text, NULL);
        CHECK(text != NULL, "%s: cannot read", path);
        free(path);
        if (!text)
                return;
        cJSON *j = cJSON_Parse(text);
        free(text);
        CHECK(j != NULL, "%s: bad JSON", path);
        if (!j)
                return;

        const cJSON *tpl_name = cJSON_GetObjectItem(j, "template");
        if (asprintf(&path, "%s/%s", dir, tpl_name->valuestring) < 0)
                abort();
        char *tpl = NULL;
        lmp_read_file(path, &tpl, NULL);
        CHECK(tpl != NULL, "%s: cannot read", path);
        free(path);
        free(tpl);
        enum lmp_chat_family fam = LMP_CHAT_UNKNOWN;
        for (size_t i = 0; i < sizeof(EXPECTED_FAMILY) / sizeof(EXPECTED_FAMILY[0]); i++)
                if (strcmp(EXPECTED_FAMILY[i].file, name) == 0)
                        fam = EXPECTED_FAMILY[i].family;
        CHECK(fam != LMP_CHAT_UNKNOWN, "%s: no family renders this fixture", name);
        if (fam == LMP_CHAT_UNKNOWN) {
                cJSON_Delete(j);
                return;
        }

        struct lmp_chat_opts opts = {
                .bos = cJSON_GetObjectItem(j, "bos_token")->valuestring,
                .eos = cJSON_GetObjectItem(j, "eos_token")->valuestring,
                .date = "15 Jan 2026",
                .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(j, "add_generation_prompt")),
        };
        const cJSON *convs = cJSON_GetObjectItem(j, "conversations");
        const cJSON *expected = cJSON_GetObjectItem(j, "expected");
        const cJSON *conv;
        cJSON_ArrayForEach(conv, convs) {
                size_t n = (size_t)cJSON_GetArraySize(conv), i = 0;
                struct lmp_chat_msg msgs[16];
                const cJSON *m;
                cJSON_ArrayForEach(m, conv) {
                        if (i < 16) {
                                msgs[i].role = cJSON_GetObjectItem(m, "role")->valuestring;
                                msgs[i].content = cJSON_GetObjectItem(m, "content")->valuestring;
                        }
                        i++;
                }
                CHECK(n <= 16, "%s/%s: too many messages", name, conv->string);
                const cJSON *want = cJSON_GetObjectItem(expected, conv->string);
                char *out = NULL;
                struct lmp_error err = { 0 };
                int r = lmp_chat_render(fam, msgs, n, &opts, &out, &err);
                if (cJSON_IsString(want)) {
                        CHECK(r == 0, "%s/%s: refused: %s", name, conv->string, err.msg);
                        if (r == 0)
                                CHECK(strcmp(out, want->valuestring) == 0,
                                      "%s/%s:\n got: [%s]\nwant: [%s]", name, conv->string, out,
                                      want->valuestring);
                        renders++;
                } else {
                        const char *msg = cJSON_GetObjectItem(want, "error")->valuestring;
                        CHECK(r == -EINVAL, "%s/%s: not refused (r=%d)", name, conv->string, r);
                        CHECK(strcmp(err.msg, msg) == 0, "%s/%s: message [%s], want [%s]", name,
                              conv->string, err.msg, msg);
                        CHECK(out == NULL, "%s/%s: output on failure", name, conv->string);
                        refusals++;
                }
                free(out);
        }
        cJSON_Delete(j);
}

static char *render(enum lmp_chat_family f, const struct lmp_chat_msg *m, size_t n,
                    const struct lmp_chat_opts *o) {
        char *out = NULL;
        struct lmp_error err = { 0 };
        int r = lmp_chat_render(f, m, n, o, &out, &err);
        CHECK(r == 0, "render %s: %s", lmp_chat_family_name(f), err.msg);
        return out;
}

static void check_properties(void) {
        struct lmp_chat_opts o = { .bos = "<s>", .eos = "</s>", .date = "01 Feb 2030",
                                   .add_generation_prompt = true };
        struct lmp_error err = { 0 };
        char *out = NULL;

        /* Jinja's trim removes Unicode whitespace too (U+00A0, U+3000), but
         * not inner whitespace. */
        struct lmp_chat_msg sp[] = { { "user", " \t\xc2\xa0hi  there\xe3\x80\x80\n" } };
        out = render(LMP_CHAT_GEMMA, sp, 1, &o);
        CHECK(out && strcmp(out, "<s><start_of_turn>user\nhi  there<end_of_turn>\n<start_of_turn>model\n") == 0,
              "[%s]", out);
        free(out);
        /* A character ending in a continuation byte that is not whitespace
         * (U+00E9) is kept whole. */
        struct lmp_chat_msg acc[] = { { "user", "caf\xc3\xa9 " } };
        out = render(LMP_CHAT_LLAMA3, acc, 1, &o);
        CHECK(out && strcmp(out, "<s><|start_header_id|>user<|end_header_id|>\n\ncaf\xc3\xa9<|eot_id|>"
                                 "<|start_header_id|>assistant<|end_header_id|>\n\n") == 0, "[%s]", out);
        free(out);
        /* Whitespace-only content trims to nothing. */
        struct lmp_chat_msg blank[] = { { "user", " \n " } };
        out = render(LMP_CHAT_GEMMA, blank, 1, &o);
        CHECK(out && strcmp(out, "<s><start_of_turn>user\n<end_of_turn>\n<start_of_turn>model\n") == 0, "[%s]", out);
        free(out);

        /* The date is an input. */
        struct lmp_chat_msg hi[] = { { "user", "Hi" } };
        out = render(LMP_CHAT_LLAMA31, hi, 1, &o);
        CHECK(out && strstr(out, "Today Date: 01 Feb 2030\n\n<|eot_id|>") != NULL, "[%s]", out);
        free(out);
        o.date = NULL;          /* today: "DD Mon YYYY" */
        out = render(LMP_CHAT_LLAMA31, hi, 1, &o);
        const char *d = out ? strstr(out, "Today Date: ") : NULL;
        CHECK(d && strlen(d) > 23 && d[14] == ' ' && d[18] == ' ' && d[23] == '\n', "[%s]", out);
        free(out);

        /* A tool's output goes through tojson, as Python's
         * json.dumps(ensure_ascii=False) writes it: DEL and non-ASCII as
         * they are. */
        struct lmp_chat_msg tool[] = { { "user", "Hi" }, { "ipython", "a\"b\\c\n\t\x01\x7f \xc3\xa9" } };
        out = render(LMP_CHAT_LLAMA31, tool, 2, &o);
        CHECK(out && strstr(out, "<|start_header_id|>ipython<|end_header_id|>\n\n"
                                 "\"a\\\"b\\\\c\\n\\t\\u0001\x7f \xc3\xa9\"<|eot_id|>") != NULL, "[%s]", out);
        free(out);

        /* Without the generation prompt. */
        o.add_generation_prompt = false;
        out = render(LMP_CHAT_PHI3, hi, 1, &o);
        CHECK(out && strcmp(out, "<|user|>\nHi<|end|>\n</s>") == 0, "[%s]", out);
        free(out);
        out = render(LMP_CHAT_QWEN25, hi, 1, &o);
        CHECK(out && strstr(out, "<|im_start|>assistant") == NULL, "[%s]", out);
        free(out);
        o.add_generation_prompt = true;

        /* Plain ChatML renders every message and adds no system prompt;
         * Qwen2 has its own default. */
        struct lmp_chat_msg sys[] = { { "system", "S" }, { "user", "U" } };
        out = render(LMP_CHAT_CHATML, sys, 2, &o);
        CHECK(out && strcmp(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                                 "<|im_start|>assistant\n") == 0, "[%s]", out);
        free(out);
        out = render(LMP_CHAT_QWEN2, hi, 1, &o);
        CHECK(out && strncmp(out, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", 56) == 0,
              "[%s]", out);
        free(out);
        /* Qwen groups consecutive tool results into one user turn. */
        struct lmp_chat_msg tools[] = { { "user", "U" }, { "tool", "a" }, { "tool", "b" } };
        out = render(LMP_CHAT_QWEN25, tools, 3, &o);
        CHECK(out && strstr(out, "<|im_start|>user\n<tool_response>\na\n</tool_response>\n"
                                 "<tool_response>\nb\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
              "[%s]", out);
        free(out);

        /* Mistral Nemo drops the system message when the conversation ends
         * with the assistant, and refuses unknown roles. */
        struct lmp_chat_msg nemo[] = { { "system", "S" }, { "user", "U" }, { "assistant", "A" } };
        out = render(LMP_CHAT_MISTRAL_NEMO, nemo, 3, &o);
        CHECK(out && strcmp(out, "<s>[INST]U[/INST]A</s>") == 0, "[%s]", out);
        free(out);
        /* Mistral v0.3: a space after [INST], none before [/INST], the
         * assistant's content trimmed after a space. */
        struct lmp_chat_msg v3[] = { { "system", "S" }, { "user", "U1" }, { "assistant", " A " },
                                     { "user", "U2" } };
        out = render(LMP_CHAT_MISTRAL_V3, v3, 4, &o);
        CHECK(out && strcmp(out, "<s>[INST] U1[/INST] A</s>[INST] S\n\nU2[/INST]") == 0, "[%s]", out);
        free(out);
        struct lmp_chat_msg odd[] = { { "user", "U" }, { "narrator", "N" } };
        out = NULL;
        CHECK(lmp_chat_render(LMP_CHAT_MISTRAL_NEMO, odd, 2, &o, &out, &err) == -EINVAL && !out, "nemo role");
        CHECK(lmp_chat_render(LMP_CHAT_MISTRAL_V1, odd, 2, &o, &out, &err) == -EINVAL && !out, "v1 role");
        CHECK(strcmp(err.msg, "Only user and assistant roles are supported!") == 0, "[%s]", err.msg);
        struct lmp_chat_msg twice[] = { { "user", "U" }, { "user", "U" } };
        CHECK(lmp_chat_render(LMP_CHAT_MISTRAL_V1, twice, 2, &o, &out, &err) == -EINVAL && !out, "v1 twice");
        CHECK(strcmp(err.msg, "Conversation roles must alternate user/assistant/user/assistant/...") == 0,
              "[%s]", err.msg);
        /* Llama 2 and Gemma refuse a conversation starting with the assistant. */
        struct lmp_chat_msg asst[] = { { "assistant", "A" } };
        CHECK(lmp_chat_render(LMP_CHAT_LLAMA2, asst, 1, &o, &out, &err) == -EINVAL && !out, "llama2");
        CHECK(lmp_chat_render(LMP_CHAT_GEMMA, asst, 1, &o, &out, &err) == -EINVAL && !out, "gemma");

        /* Malformed input. */
        CHECK(lmp_chat_render(LMP_CHAT_CHATML, hi, 0, &o, &out, &err) == -EINVAL && !out, "empty");
        struct lmp_chat_msg nul[] = { { "user", NULL } };
        CHECK(lmp_chat_render(LMP_CHAT_CHATML, nul, 1, &o, &out, &err) == -EINVAL && !out, "null content");
        CHECK(lmp_chat_render(LMP_CHAT_UNKNOWN, hi, 1, &o, &out, &err) == -EINVAL && !out, "unknown family");
        CHECK(lmp_chat_render((enum lmp_chat_family)999, hi, 1, &o, &out, &err) == -EINVAL && !out, "bad family");
        /* NULL options: no bos/eos, generation prompt on. */
        out = render(LMP_CHAT_ZEPHYR, hi, 1, NULL);
        CHECK(out && strcmp(out, "<|user|>\nHi\n<|assistant|>\n") == 0, "[%s]", out);
        free(out);

        /* Names. */
        for (int f = LMP_CHAT_UNKNOWN + 1; f < LMP_CHAT_FAMILY_COUNT; f++)
                CHECK(lmp_chat_family_from_name(lmp_chat_family_name((enum lmp_chat_family)f)) == (enum lmp_chat_family)f,
                      "name round trip %d", f);
        CHECK(lmp_chat_family_from_name("Qwen2.5") == LMP_CHAT_QWEN25, "case");
        CHECK(lmp_chat_family_from_name("nope") == LMP_CHAT_UNKNOWN, "unknown name");
        CHECK(lmp_chat_family_from_name(NULL) == LMP_CHAT_UNKNOWN, "null name");
}

int main(void) {
        check_properties();

        const char *fx = getenv("LMPOOL_FIXTURES");
        char *dir = NULL;
        if (!fx) {
                printf("LMPOOL_FIXTURES not set: fixture renders skipped\n");
                return failures ? 1 : 77;
        }
        if (asprintf(&dir, "%s/templates", fx) < 0)
                abort();
        DIR *d = opendir(dir);
        if (!d) {
                printf("%s not found: fixture renders skipped\n", dir);
                free(dir);
                return failures ? 1 : 77;
        }
        int files = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
                size_t l = strlen(e->d_name);
                if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
                        check_fixture(dir, e->d_name);
                        files++;
                }
        }
        closedir(d);
        free(dir);
        CHECK(files >= 9, "only %d template fixtures", files);
        printf("%d template files: %d renders matched, %d refusals, %d failures\n", files, renders,
               refusals, failures);
        return failures ? 1 : 0;
}

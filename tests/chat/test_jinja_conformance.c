/* The Jinja engine against the real templates: for every
 * $LMPOOL_FIXTURES/templates-real/NAME.json (and templates/NAME.json), each
 * conversation rendered with NAME.jinja must equal the text jinja2 rendered,
 * byte for byte, or be refused where jinja2 raised. Prints one line per
 * failing conversation and "templates: N of M pass"; with
 * LMPOOL_JINJA_REPORT=1 it reports without failing (to measure progress). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/readfile.h"
#include "tokenizer/jinja.h"

/* 15 Jan 2026 00:00:00 UTC, the fixtures' strftime_now() time */
#define FIXTURE_NOW ((time_t)1768435200)

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void first_diff(const char *want, const char *got) {
        size_t i = 0;
        while (want[i] && want[i] == got[i])
                i++;
        size_t from = i > 30 ? i - 30 : 0;
        fprintf(stderr, "    at byte %zu:\n    want: %.80s\n    got:  %.80s\n", i, want + from, got + from);
}

/* 1 when every conversation of the fixture passes, 0 when one fails, -1 when the files cannot be read. */
static int check_fixture(const char *dir, const char *name, int *convs, int *conv_pass) {
        char *path = NULL, *text = NULL, *tmpl = NULL;
        size_t tmpl_len = 0;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                abort();
        if (lmp_read_file(path, &text, NULL) < 0) {
                fprintf(stderr, "%s: cannot read\n", path);
                free(path);
                return -1;
        }
        cJSON *j = cJSON_Parse(text);
        free(text);
        const cJSON *tname = cJSON_GetObjectItemCaseSensitive(j, "template");
        char *tpath = NULL;
        if (!j || !cJSON_IsString(tname) || asprintf(&tpath, "%s/%s", dir, tname->valuestring) < 0 ||
            lmp_read_file(tpath, &tmpl, &tmpl_len) < 0) {
                fprintf(stderr, "%s: bad fixture\n", path);
                cJSON_Delete(j);
                free(path);
                free(tpath);
                return -1;
        }
        const cJSON *convs_j = cJSON_GetObjectItemCaseSensitive(j, "conversations");
        const cJSON *expected = cJSON_GetObjectItemCaseSensitive(j, "expected");
        int ok = 1;
        for (const cJSON *conv = convs_j ? convs_j->child : NULL; conv; conv = conv->next) {
                const cJSON *want = cJSON_GetObjectItemCaseSensitive(expected, conv->string);
                cJSON *vars = cJSON_CreateObject();
                static const char *const copy[] = {"bos_token", "eos_token", "add_generation_prompt", "date_string"};
                for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
                        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, copy[i]);
                        if (v)
                                cJSON_AddItemToObject(vars, copy[i], cJSON_Duplicate(v, 1));
                }
                /* templates/: a conversation is the messages; templates-real/: {messages, tools} */
                if (!cJSON_HasObjectItem(vars, "date_string")) /* templates/: the README's date */
                        cJSON_AddStringToObject(vars, "date_string", "15 Jan 2026");
                const cJSON *msgs = cJSON_IsArray(conv) ? conv : cJSON_GetObjectItemCaseSensitive(conv, "messages");
                const cJSON *tools = cJSON_GetObjectItemCaseSensitive(conv, "tools");
                cJSON_AddItemToObject(vars, "messages", cJSON_Duplicate(msgs, 1));
                /* templates-real/ renders as Hugging Face does, with tools=None when there are none */
                if (tools)
                        cJSON_AddItemToObject(vars, "tools", cJSON_Duplicate(tools, 1));
                else if (!cJSON_IsArray(conv))
                        cJSON_AddNullToObject(vars, "tools");
                struct lmp_jinja_opts opts = {.now = FIXTURE_NOW, .trim_blocks = true, .lstrip_blocks = true};
                struct lmp_error err = {0};
                char *out = NULL;
                int r = lmp_jinja_render(tmpl, tmpl_len, vars, &opts, &out, &err);
                (*convs)++;
                bool want_err = cJSON_IsObject(want);
                if (want_err) {
                        if (r == 0) {
                                fprintf(stderr, "%s %s: rendered, but jinja2 refused: %s\n", name, conv->string,
                                        cJSON_GetObjectItemCaseSensitive(want, "error")->valuestring);
                                ok = 0;
                        } else
                                (*conv_pass)++;
                } else if (r < 0) {
                        fprintf(stderr, "%s %s: refused: %s\n", name, conv->string, err.msg);
                        ok = 0;
                } else if (!cJSON_IsString(want) || strcmp(out, want->valuestring) != 0) {
                        fprintf(stderr, "%s %s: differs\n", name, conv->string);
                        if (cJSON_IsString(want))
                                first_diff(want->valuestring, out);
                        ok = 0;
                } else
                        (*conv_pass)++;
                free(out);
                cJSON_Delete(vars);
        }
        cJSON_Delete(j);
        free(tmpl);
        free(tpath);
        free(path);
        return ok;
}

static int check_dir(const char *fixtures, const char *sub, int *pass, int *total, int *convs, int *conv_pass) {
        char *dir = NULL;
        if (asprintf(&dir, "%s/%s", fixtures, sub) < 0)
                abort();
        DIR *d = opendir(dir);
        if (!d) {
                free(dir);
                return -1;
        }
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
                size_t l = strlen(e->d_name);
                if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
                        names = realloc(names, (n + 1) * sizeof *names);
                        if (!names)
                                abort();
                        names[n++] = strdup(e->d_name);
                }
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_names);
        for (size_t i = 0; i < n; i++) {
                int r = check_fixture(dir, names[i], convs, conv_pass);
                (*total)++;
                if (r == 1)
                        (*pass)++;
                free(names[i]);
        }
        free(names);
        free(dir);
        return 0;
}

int main(void) {
        const char *fixtures = getenv("LMPOOL_FIXTURES");
        if (!fixtures) {
                fprintf(stderr, "LMPOOL_FIXTURES is not set\n");
                return 77;
        }
        const char *report = getenv("LMPOOL_JINJA_REPORT");
        int failed = 0;
        static const char *const subs[] = {"templates-real", "templates"};
        for (size_t i = 0; i < 2; i++) {
                int pass = 0, total = 0, convs = 0, conv_pass = 0;
                if (check_dir(fixtures, subs[i], &pass, &total, &convs, &conv_pass) < 0) {
                        fprintf(stderr, "%s/%s: missing\n", fixtures, subs[i]);
                        return 77;
                }
                printf("%s: %d of %d templates pass (%d of %d conversations)\n", subs[i], pass, total, conv_pass, convs);
                if (pass != total)
                        failed = 1;
        }
        return failed && !(report && *report == '1') ? 1 : 0;
}

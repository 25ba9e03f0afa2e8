/* Configuration loader tests: defaults, the bounds of every row of both
 * settings tables (generated from the tables themselves, so a new row is
 * covered unasked), unknown keys, wrong types, duplicate models, profiles,
 * environment overrides (from envp arrays, never the real environment),
 * the line and column of each error, every error reported in one run,
 * printing that loads back to the same values, the default endpoint, and
 * the example lmpool.yaml (its path is argv[1]) under each profile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/settings.h"
#include "../check.h"

static char *const no_env[] = { NULL };

static const char *const one_model = "models:\n  - name: m\n    path: /m.gguf\n";

static int load(const char *yaml, char *const *envp, struct lmp_config **ret, struct lmp_diag *d) {
        lmp_diag_clear(d);
        return lmp_config_load_buffer("t.yaml", yaml, strlen(yaml), envp ? envp : no_env, ret, d);
}

/* Is there an error at `line` (0: any) whose message contains `text`? */
static bool has_error(const struct lmp_diag *d, unsigned line, const char *text) {
        for (size_t i = 0; i < d->n; i++)
                if ((!line || d->entries[i].line == line) && strstr(d->entries[i].msg, text))
                        return true;
        return false;
}

static void dump(const struct lmp_diag *d) {
        lmp_diag_print(d, stderr);
}

/* Loads a document that must fail with an error at `line`:`col` (0: any)
 * containing `text`, and with exactly `count` errors (0: any number). */
static void expect_error(const char *yaml, char *const *envp, unsigned line, unsigned col, const char *text,
                         size_t count) {
        struct lmp_config *c = NULL;
        struct lmp_diag d = { 0 };
        int r = load(yaml, envp, &c, &d);
        CHECK(r == -EINVAL && c == NULL, "loaded though it should fail (%s):\n%s", text, yaml);
        bool found = false;
        for (size_t i = 0; i < d.n; i++)
                if ((!line || d.entries[i].line == line) && (!col || d.entries[i].column == col) &&
                    strstr(d.entries[i].msg, text))
                        found = true;
        CHECK(found, "no error %u:%u '%s' for:\n%s", line, col, text, yaml);
        CHECK(!count || d.n == count, "%zu errors, expected %zu, for:\n%s", d.n, count, yaml);
        if (!found || (count && d.n != count))
                dump(&d);
        lmp_config_free(c);
        lmp_diag_clear(&d);
}

static struct lmp_config *expect_ok(const char *yaml, char *const *envp) {
        struct lmp_config *c = NULL;
        struct lmp_diag d = { 0 };
        int r = load(yaml, envp, &c, &d);
        CHECK(r == 0 && c, "failed to load (%d):\n%s", r, yaml);
        if (r < 0)
                dump(&d);
        lmp_diag_clear(&d);
        return c;
}

static const char *origin(const struct lmp_config_origins *o, const struct lmp_setting *table, size_t n,
                          const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(table[i].key, key) == 0)
                        return o->v[i].text;
        return "?";
}

static void test_defaults(void) {
        char msg[256];
        struct lmp_config *c;

        /* Every default passes its own row's checks. */
        for (size_t i = 0; i < lmp_config_n_settings; i++) {
                const struct lmp_setting *s = &lmp_config_settings[i];
                struct lmp_config scratch = { 0 };
                if (s->def)
                        CHECK(lmp_setting_parse(s, &scratch, s->def, false, msg, sizeof(msg)) == 0, "%s: %s", s->key, msg);
        }
        for (size_t i = 0; i < lmp_model_n_settings; i++) {
                const struct lmp_setting *s = &lmp_model_settings[i];
                struct lmp_model_config scratch = { 0 };
                if (s->def)
                        CHECK(lmp_setting_parse(s, &scratch, s->def, false, msg, sizeof(msg)) == 0, "%s: %s", s->key, msg);
                CHECK(s->doc && s->doc[0], "%s has no description", s->key);
        }

        c = expect_ok(one_model, NULL);
        if (!c)
                return;
        CHECK(c->endpoint[0] == '\0' && c->tcp[0] == '\0', "endpoints");
        CHECK(c->heartbeat_ms == 500 && c->heartbeat_liveness == 3, "heartbeat");
        CHECK(c->queue_length == 64 && c->client_requests == 8 && c->request_timeout_ms == 300000, "limits");
        CHECK(c->max_prompt_tokens == 8192 && c->max_tokens == 4096 && c->drain_timeout_ms == 10000, "limits");
        CHECK(c->log_level == LMP_LOG_INFO && c->log_target == LMP_LOG_TARGET_AUTO, "log");
        CHECK(c->memory_interval_s == 30 && c->log_requests, "log");
        CHECK(c->respawn_min_ms == 100 && c->respawn_max_ms == 30000 && c->ready_timeout_ms == 120000, "workers");
        CHECK(c->load_attempts == 3, "workers.load_attempts");
        CHECK(c->n_models == 1, "models %zu", c->n_models);
        const struct lmp_model_config *m = lmp_config_find_model(c, "m");
        CHECK(m && m == &c->models[0], "find m");
        CHECK(!lmp_config_find_model(c, "x"), "find x");
        if (m) {
                CHECK(!strcmp(m->path, "/m.gguf"), "path %s", m->path);
                CHECK(m->workers == 1 && m->threads == 1 && m->slots == 1 && m->ctx == 2048 && m->batch == 512, "sizes");
                CHECK(m->chat_template[0] == '\0' && m->store == LMP_STORE_MEMFD && m->numa == LMP_NUMA_OFF, "kinds");
                CHECK(m->memory_max == 0, "memory_max");
                CHECK(m->defaults.max_tokens == 256 && m->defaults.temperature == 0.8 && m->defaults.top_k == 40,
                      "defaults");
                CHECK(m->defaults.top_p == 0.95 && m->defaults.min_p == 0.05 && m->defaults.repeat_penalty == 1.0,
                      "defaults");
                CHECK(m->defaults.repeat_last_n == 64 && m->defaults.seed == -1, "defaults");
                CHECK(!strcmp(origin(m->origins, lmp_model_settings, lmp_model_n_settings, "path"), "t.yaml:3"),
                      "path origin %s", origin(m->origins, lmp_model_settings, lmp_model_n_settings, "path"));
                CHECK(!strcmp(origin(m->origins, lmp_model_settings, lmp_model_n_settings, "ctx"), "default"), "ctx origin");
        }
        CHECK(c->profile[0] == '\0', "no profile");
        lmp_config_free(c);
        lmp_config_free(NULL);
}

/* A document setting row `s` (a model row when `model`) to `value`. */
static void doc_for(const struct lmp_setting *s, bool model, const char *value, char *buf, size_t size) {
        const char *dot = strchr(s->key, '.');
        int sl = dot ? (int)(dot - s->key) : 0;
        if (!model)
                snprintf(buf, size, "%.*s:\n  %s: %s\n%s", sl, s->key, dot + 1, value, one_model);
        else if (!strcmp(s->key, "name"))
                snprintf(buf, size, "models:\n  - path: /m\n    # filler\n    name: %s\n", value);
        else if (!strcmp(s->key, "path"))
                snprintf(buf, size, "models:\n  - name: m\n    # filler\n    path: %s\n", value);
        else if (dot)
                snprintf(buf, size, "models:\n  - name: m\n    path: /m\n    %.*s:\n      %s: %s\n", sl, s->key, dot + 1,
                         value);
        else
                snprintf(buf, size, "models:\n  - name: m\n    path: /m\n    %s: %s\n", s->key, value);
}

static void check_bounds(const struct lmp_setting *s, bool model) {
        char doc[1024], v[64];
        unsigned line = model ? (strchr(s->key, '.') ? 5 : 4) : 2;

        switch (s->type) {
        case LMP_SETTING_INT:
        case LMP_SETTING_SIZE:
                snprintf(v, sizeof(v), "%lld", (long long)s->imin - 1);
                doc_for(s, model, v, doc, sizeof(doc));
                /* A size has no sign: below a minimum of 0 is not a size. */
                expect_error(doc, NULL, line, 0,
                             s->type == LMP_SETTING_SIZE && s->imin == 0 ? "expected a size" : "is below the minimum",
                             1);
                snprintf(v, sizeof(v), "%lld", (long long)s->imin);
                doc_for(s, model, v, doc, sizeof(doc));
                {
                        struct lmp_config *c = NULL;
                        struct lmp_diag d = { 0 };
                        load(doc, NULL, &c, &d);
                        CHECK(!has_error(&d, 0, "minimum") && !has_error(&d, 0, "maximum"), "%s = min rejected", s->key);
                        lmp_config_free(c);
                        lmp_diag_clear(&d);
                }
                if (s->imax == INT64_MAX) {
                        doc_for(s, model, "9223372036854775808", doc, sizeof(doc));
                        expect_error(doc, NULL, line, 0, "is above the maximum", 1);
                        break;
                }
                snprintf(v, sizeof(v), "%lld", (long long)s->imax + 1);
                doc_for(s, model, v, doc, sizeof(doc));
                expect_error(doc, NULL, line, 0, "is above the maximum", 1);
                snprintf(v, sizeof(v), "%lld", (long long)s->imax);
                doc_for(s, model, v, doc, sizeof(doc));
                {
                        struct lmp_config *c = NULL;
                        struct lmp_diag d = { 0 };
                        load(doc, NULL, &c, &d);
                        CHECK(!has_error(&d, 0, "minimum") && !has_error(&d, 0, "maximum"), "%s = max rejected", s->key);
                        lmp_config_free(c);
                        lmp_diag_clear(&d);
                }
                break;
        case LMP_SETTING_DOUBLE:
                snprintf(v, sizeof(v), "%.17g", s->flags & LMP_SETTING_MIN_OPEN ? s->dmin : s->dmin - 1e-9);
                doc_for(s, model, v, doc, sizeof(doc));
                expect_error(doc, NULL, line, 0, "is below the minimum", 1);
                snprintf(v, sizeof(v), "%.17g", s->flags & LMP_SETTING_MAX_OPEN ? s->dmax : s->dmax + 1e-9);
                doc_for(s, model, v, doc, sizeof(doc));
                expect_error(doc, NULL, line, 0, "is above the maximum", 1);
                for (int end = 0; end < 2; end++) {
                        double x = end ? s->dmax : s->dmin;
                        if ((end ? s->flags & LMP_SETTING_MAX_OPEN : s->flags & LMP_SETTING_MIN_OPEN))
                                x = end ? x - 1e-9 : x + 1e-9;
                        snprintf(v, sizeof(v), "%.17g", x);
                        doc_for(s, model, v, doc, sizeof(doc));
                        struct lmp_config *c = expect_ok(doc, NULL);
                        lmp_config_free(c);
                }
                break;
        case LMP_SETTING_STRING: {
                char *big = malloc(s->size + 8);
                char *text = malloc(s->size + 64);
                if (!big || !text)
                        abort();
                memset(big, 'a', s->size);
                big[s->size] = '\0';
                snprintf(text, s->size + 64, "%s", big);
                char *d2 = malloc(s->size + 256);
                doc_for(s, model, text, d2, s->size + 256);
                expect_error(d2, NULL, line, 0, "bytes long, the maximum is", 0);
                free(big);
                free(text);
                free(d2);
                break;
        }
        case LMP_SETTING_ENUM:
                doc_for(s, model, "nonsense", doc, sizeof(doc));
                expect_error(doc, NULL, line, 0, "expected one of", 1);
                for (size_t i = 0; s->names[i]; i++) {
                        doc_for(s, model, s->names[i], doc, sizeof(doc));
                        lmp_config_free(expect_ok(doc, NULL));
                }
                break;
        case LMP_SETTING_BOOL:
                doc_for(s, model, "maybe", doc, sizeof(doc));
                expect_error(doc, NULL, line, 0, "expected a boolean", 1);
                break;
        }
}

static void test_bounds(void) {
        for (size_t i = 0; i < lmp_config_n_settings; i++)
                check_bounds(&lmp_config_settings[i], false);
        for (size_t i = 0; i < lmp_model_n_settings; i++)
                check_bounds(&lmp_model_settings[i], true);

        /* The message names the key, the value and the bound, at the value. */
        expect_error("limits:\n  queue_length: 0\nmodels: [{name: a, path: /a}]\n", NULL, 2, 17,
                     "key 'limits.queue_length': 0 is below the minimum 1", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    defaults:\n      top_p: 0\n", NULL, 5, 14,
                     "key 'models[0].defaults.top_p': 0 is below the minimum 0 (exclusive)", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    memory_max: 99999999999T\n", NULL, 4, 17,
                     "is above the maximum", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    memory_max: 1K\n", NULL, 4, 17,
                     "1K is below the minimum 1048576 bytes", 1);
}

static void test_values(void) {
        struct lmp_config *c = expect_ok(
                "router:\n  tcp: \"tcp://127.0.0.1:5555\"\n  endpoint: ipc:///run/x.sock\n"
                "log:\n  requests: off\n  level: warning\n"
                "models:\n  - name: A.b_c-9\n    path: /a\n    memory_max: 2G\n    chat_template: chatml\n"
                "    store: mmap\n    numa: interleave\n    defaults: {temperature: 1e-1, seed: 123456789012}\n"
                "  - name: two\n    path: /b\n    memory_max: 1536KiB\n    defaults:\n      seed: -1\n",
                NULL);
        if (!c)
                return;
        CHECK(!strcmp(c->tcp, "tcp://127.0.0.1:5555") && !strcmp(c->endpoint, "ipc:///run/x.sock"), "router");
        CHECK(!c->log_requests && c->log_level == LMP_LOG_WARNING, "log");
        CHECK(c->n_models == 2, "two models");
        if (c->n_models == 2) {
                CHECK(c->models[0].memory_max == 2ull << 30, "2G = %llu", (unsigned long long)c->models[0].memory_max);
                CHECK(c->models[1].memory_max == 1536ull << 10, "1536KiB");
                CHECK(!strcmp(c->models[0].chat_template, "chatml"), "template");
                CHECK(c->models[0].store == LMP_STORE_MMAP && c->models[0].numa == LMP_NUMA_INTERLEAVE, "enums");
                CHECK(c->models[0].defaults.temperature == 0.1 && c->models[0].defaults.seed == 123456789012LL, "defaults");
        }
        lmp_config_free(c);

        /* Endpoint checks. */
        const char *bad_tcp[] = { "tcp://", "tcp://:5", "tcp://h:0", "tcp://h:65536", "tcp://h:x", "udp://h:5",
                                  "tcp://h", "tcp://h:123456", "tcp://a b:5" };
        const char *good_tcp[] = { "tcp://127.0.0.1:5555", "tcp://127.255.3.4:1", "tcp://[::1]:65535" };
        /* well-formed, but reachable from the network (or not provably
         * loopback): they need CURVE */
        const char *network_tcp[] = { "tcp://*:1", "tcp://localhost:80", "tcp://0.0.0.0:5", "tcp://127.1:5",
                                      "tcp://10.0.0.1:5", "tcp://[::]:5", "tcp://eth0:5" };
        char doc[512];
        for (size_t i = 0; i < sizeof(bad_tcp) / sizeof(bad_tcp[0]); i++) {
                snprintf(doc, sizeof(doc), "router:\n  tcp: \"%s\"\n%s", bad_tcp[i], one_model);
                expect_error(doc, NULL, 2, 8, "must be tcp://HOST:PORT", 1);
        }
        for (size_t i = 0; i < sizeof(good_tcp) / sizeof(good_tcp[0]); i++) {
                snprintf(doc, sizeof(doc), "router:\n  tcp: \"%s\"\n%s", good_tcp[i], one_model);
                lmp_config_free(expect_ok(doc, NULL));
        }
        for (size_t i = 0; i < sizeof(network_tcp) / sizeof(network_tcp[0]); i++) {
                CHECK(!lmp_config_tcp_is_loopback(network_tcp[i]), "%s is not loopback", network_tcp[i]);
                snprintf(doc, sizeof(doc), "router:\n  tcp: \"%s\"\n%s", network_tcp[i], one_model);
                expect_error(doc, NULL, 2, 8, "is not a loopback address", 1);
                snprintf(doc, sizeof(doc), "router:\n  endpoint: \"%s\"\n%s", network_tcp[i], one_model);
                expect_error(doc, NULL, 2, 13, "is not a loopback address", 1);
                snprintf(doc, sizeof(doc), "router:\n  tcp: \"%s\"\n  curve_key: /k\n  curve_clients: /c\n%s",
                         network_tcp[i], one_model);
                lmp_config_free(expect_ok(doc, NULL));
        }
        snprintf(doc, sizeof(doc), "router:\n  curve_key: /k\n%s", one_model);
        expect_error(doc, NULL, 2, 14, "router.curve_clients is required", 1);
        snprintf(doc, sizeof(doc), "router:\n  curve_clients: /c\n%s", one_model);
        expect_error(doc, NULL, 2, 18, "router.curve_key is required", 1);
        snprintf(doc, sizeof(doc), "router:\n  group: \"-x\"\n%s", one_model);
        expect_error(doc, NULL, 2, 10, "must be a group name", 1);
        snprintf(doc, sizeof(doc), "router:\n  endpoint: /run/x.sock\n%s", one_model);
        expect_error(doc, NULL, 2, 13, "must be ipc://PATH or tcp://HOST:PORT", 1);
        snprintf(doc, sizeof(doc), "router:\n  endpoint: ipc:///%0120d\n%s", 0, one_model);
        expect_error(doc, NULL, 2, 13, "longer than 107 bytes", 1);
        expect_error("models:\n  - name: bad/name\n    path: /a\n", NULL, 2, 11, "must be 1 to 64 characters", 1);
        expect_error("models:\n  - name: \"a\\0b\"\n    path: /a\n", NULL, 2, 11, "NUL byte", 1);
        expect_error("models:\n  - name: a\n    path: \"/a\\nb\"\n", NULL, 3, 11, "control character", 1);
}

static void test_unknown_and_types(void) {
        expect_error("foo: 1\nmodels: [{name: a, path: /a}]\n", NULL, 1, 1, "unknown key 'foo'", 1);
        expect_error("limits:\n  queue: 3\nmodels: [{name: a, path: /a}]\n", NULL, 2, 3, "unknown key 'limits.queue'", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    wrkers: 2\n", NULL, 4, 5, "unknown key 'models[0].wrkers'", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    defaults:\n      temp: 1\n", NULL, 5, 7,
                     "unknown key 'models[0].defaults.temp'", 1);
        expect_error("limits:\n  queue_length: abc\nmodels: [{name: a, path: /a}]\n", NULL, 2, 17,
                     "expected an integer, got 'abc'", 1);
        expect_error("limits:\n  queue_length: 1.5\nmodels: [{name: a, path: /a}]\n", NULL, 2, 17, "expected an integer", 1);
        expect_error("limits:\n  queue_length: [1]\nmodels: [{name: a, path: /a}]\n", NULL, 2, 17,
                     "expected an integer, got a list", 1);
        expect_error("limits:\n  queue_length:\nmodels: [{name: a, path: /a}]\n", NULL, 0, 0,
                     "expected an integer, got null", 1);
        expect_error("log: 5\nmodels: [{name: a, path: /a}]\n", NULL, 1, 6, "key 'log': expected a mapping", 1);
        expect_error("models: 5\n", NULL, 1, 9, "key 'models': expected a list", 2);
        expect_error("models: [5]\n", NULL, 1, 10, "key 'models[0]': expected a mapping", 2);
        expect_error("models:\n  - name: a\n    path: /a\n    defaults:\n      temperature: hot\n", NULL, 5, 20,
                     "expected a number, got 'hot'", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    defaults:\n      temperature: nan\n", NULL, 5, 20,
                     "expected a number", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    memory_max: 12Q\n", NULL, 4, 17, "expected a size", 1);
        expect_error("models:\n  - name: a\n    path: /a\n    defaults: 3\n", NULL, 4, 15,
                     "key 'models[0].defaults': expected a mapping", 1);
        expect_error("[1, 2]\n", NULL, 1, 1, "the top level must be a mapping", 2);
        expect_error("? [a]\n: 1\nmodels: [{name: a, path: /a}]\n", NULL, 1, 3, "keys must be plain names", 1);
        expect_error("limits:\n  queue_length: 3\n  queue_length: 4\nmodels: [{name: a, path: /a}]\n", NULL, 3, 3,
                     "given twice (first at line 2)", 1);
        expect_error("models: [{name: a, path: /a}]\nmodels: [{name: b, path: /b}]\n", NULL, 2, 1,
                     "key 'models' is given twice", 1);
        expect_error("limits: {queue_length: 3\n", NULL, 0, 0, "YAML:", 1);
        expect_error("models: [{name: a, path: /a}]\n---\nlimits: {}\n", NULL, 3, 1, "second YAML document", 1);
        expect_error("", NULL, 0, 0, "at least one model is required", 1);
        expect_error("models:\n", NULL, 0, 0, "at least one model is required", 1);

        /* Deep flow nesting is refused before libyaml's scanner slows down on it. */
        char *deep = malloc(200016);
        if (!deep)
                abort();
        memcpy(deep, "limits: ", 8);
        memset(deep + 8, '[', 200000);
        deep[200008] = '\0';
        expect_error(deep, NULL, 1, 40, "nested deeper than 32 levels", 1);
        free(deep);

        /* Empty sections are fine. */
        lmp_config_free(expect_ok("router:\nlimits: {}\nmodels: [{name: a, path: /a}]\n", NULL));
}

static void test_models(void) {
        expect_error("models:\n  - name: a\n    path: /a\n  - name: b\n    path: /b\n  - name: a\n    path: /c\n", NULL, 6,
                     11, "duplicate model name 'a' (first at line 2)", 1);
        expect_error("models:\n  - name: a\n", NULL, 2, 5, "key 'models[0].path' is required", 1);
        expect_error("models:\n  - path: /a\n", NULL, 2, 5, "key 'models[0].name' is required", 1);
        expect_error("models:\n  - name: a\n    path: \"\"\n", NULL, 3, 11, "expected a string, got an empty string", 1);
        expect_error("workers:\n  respawn_min_ms: 5000\n  respawn_max_ms: 1000\nmodels: [{name: a, path: /a}]\n", NULL, 3, 19,
                     "1000 is below workers.respawn_min_ms 5000", 1);
        expect_error("limits: {max_tokens: 100}\nmodels:\n  - name: a\n    path: /a\n", NULL, 0, 0,
                     "256 is above limits.max_tokens 100", 1);

        /* 64 models load, 65 do not. */
        char *doc = malloc(65 * 64 + 16);
        if (!doc)
                abort();
        size_t n = (size_t)sprintf(doc, "models:\n");
        for (int i = 0; i < 64; i++)
                n += (size_t)sprintf(doc + n, "  - {name: m%d, path: /m}\n", i);
        struct lmp_config *c = expect_ok(doc, NULL);
        CHECK(c && c->n_models == 64, "64 models");
        lmp_config_free(c);
        sprintf(doc + n, "  - {name: m64, path: /m}\n");
        expect_error(doc, NULL, 66, 5, "more than 64 models", 1);
        free(doc);
}

static const char *const profiled =
        "limits:\n"                             /* 1 */
        "  queue_length: 10\n"                  /* 2 */
        "models:\n"                             /* 3 */
        "  - name: a\n"                         /* 4 */
        "    path: /a\n"                        /* 5 */
        "    workers: 2\n"                      /* 6 */
        "profiles:\n"                           /* 7 */
        "  testing:\n"                          /* 8 */
        "    limits: {queue_length: 2}\n"       /* 9 */
        "    models:\n"                         /* 10 */
        "      - name: a\n"                     /* 11 */
        "        defaults: {temperature: 0}\n"  /* 12 */
        "      - name: b\n"                     /* 13 */
        "        path: /b\n"                    /* 14 */
        "  production:\n"                       /* 15 */
        "    log: {level: error}\n"             /* 16 */
        "  empty:\n";                           /* 17 */

static void test_profiles(void) {
        char *const testing[] = { "LMPOOL_PROFILE=testing", NULL };
        char *const production[] = { "LMPOOL_PROFILE=production", NULL };
        char *const empty[] = { "LMPOOL_PROFILE=empty", NULL };
        char *const unknown[] = { "LMPOOL_PROFILE=staging", NULL };

        struct lmp_config *c = expect_ok(profiled, NULL);
        if (c) {
                CHECK(c->queue_length == 10 && c->n_models == 1 && c->log_level == LMP_LOG_INFO, "base only");
                lmp_config_free(c);
        }
        c = expect_ok(profiled, testing);
        if (c) {
                CHECK(c->queue_length == 2, "profile value %d", c->queue_length);
                CHECK(!strcmp(c->profile, "testing"), "profile name");
                CHECK(!strcmp(origin(c->origins, lmp_config_settings, lmp_config_n_settings, "limits.queue_length"),
                              "profile testing, t.yaml:9"),
                      "origin %s", origin(c->origins, lmp_config_settings, lmp_config_n_settings, "limits.queue_length"));
                CHECK(c->n_models == 2, "appended model: %zu", c->n_models);
                const struct lmp_model_config *a = lmp_config_find_model(c, "a"), *b = lmp_config_find_model(c, "b");
                CHECK(a && a->workers == 2 && a->defaults.temperature == 0 && !strcmp(a->path, "/a"), "overlay of a");
                CHECK(b && !strcmp(b->path, "/b") && b->workers == 1, "model b");
                lmp_config_free(c);
        }
        c = expect_ok(profiled, production);
        if (c) {
                CHECK(c->log_level == LMP_LOG_ERROR && c->queue_length == 10 && c->n_models == 1, "production");
                lmp_config_free(c);
        }
        lmp_config_free(expect_ok(profiled, empty));
        expect_error(profiled, unknown, 0, 0, "unknown profile 'staging' (the file defines: testing, production, empty)", 1);
        expect_error(one_model, testing, 0, 0, "unknown profile 'testing' (the file defines no profiles)", 1);

        /* A broken profile is an error even when another is active. */
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  production:\n    limits: {queue_length: 0}\n", testing,
                     4, 28, "0 is below the minimum 1", 2);
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  production:\n    limits: {queue_length: 0}\n", NULL, 4,
                     28, "0 is below the minimum 1", 1);
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  p:\n    profiles: {}\n", NULL, 4, 5,
                     "profiles cannot be nested", 1);
        expect_error("models: [{name: a, path: /a}]\nprofiles: [a]\n", NULL, 2, 11, "expected a mapping of profile names", 1);
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  p: 3\n", NULL, 3, 6, "profile 'p': expected a mapping", 1);
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  p/q: {}\n", NULL, 3, 3, "profile name 'p/q'", 1);
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  p: {}\n  p: {}\n", NULL, 4, 3, "defined twice", 1);
        /* A model new in the active profile needs a path. */
        char *const p_env[] = { "LMPOOL_PROFILE=p", NULL };
        expect_error("models: [{name: a, path: /a}]\nprofiles:\n  p:\n    models:\n      - name: b\n", p_env, 5, 9,
                     "key 'models[1].path' is required", 1);
}

static void test_env(void) {
        char *const env[] = {
                "PATH=/usr/bin",
                "LMPOOL_FIXTURES=/nowhere",          /* not a setting: ignored */
                "LMPOOL_CONFIG=/x.yaml",
                "LMPOOL_PROFILE=testing",
                "LMPOOL_LIMITS_QUEUE_LENGTH=4",
                "LMPOOL_ROUTER_TCP=tcp://127.0.0.1:5555",
                "LMPOOL_LOG_LEVEL=debug",
                "LMPOOL_LOG_REQUESTS=false",
                "LMPOOL_MODELS_0_WORKERS=3",
                "LMPOOL_MODELS_1_DEFAULTS_TEMPERATURE=0.25",
                "LMPOOL_MODELS_1_MEMORY_MAX=1G",
                NULL,
        };
        struct lmp_config *c = expect_ok(profiled, env);
        if (c) {
                CHECK(c->queue_length == 4, "env beats profile: %d", c->queue_length);
                CHECK(!strcmp(c->tcp, "tcp://127.0.0.1:5555"), "tcp");
                CHECK(c->log_level == LMP_LOG_DEBUG && !c->log_requests, "log");
                CHECK(c->n_models == 2 && c->models[0].workers == 3, "model 0 workers");
                CHECK(c->n_models == 2 && c->models[1].defaults.temperature == 0.25 && c->models[1].memory_max == 1ull << 30,
                      "model 1");
                CHECK(!strcmp(origin(c->origins, lmp_config_settings, lmp_config_n_settings, "limits.queue_length"),
                              "env LMPOOL_LIMITS_QUEUE_LENGTH"),
                      "origin");
                lmp_config_free(c);
        }
        char *const bad[] = {
                "LMPOOL_LIMITS_QUEUE_LENGTH=0",
                "LMPOOL_LIMITS_QUEUE=3",
                "LMPOOL_MODELS_0_WORKERS=lots",
                "LMPOOL_MODELS_7_WORKERS=2",
                "LMPOOL_MODELS_0_WRKERS=2",
                "LMPOOL_MODELS_X=2",
                "LMPOOL_ROUTER_TCP=tcp://h:0",
                "LMPOOL_LOG_LEVEL=",
                NULL,
        };
        struct lmp_config *none = NULL;
        struct lmp_diag d = { 0 };
        CHECK(load(one_model, bad, &none, &d) == -EINVAL && !none, "bad env loads");
        CHECK(d.n == 8, "%zu errors for 8 bad variables", d.n);
        const char *where[] = { "LMPOOL_LIMITS_QUEUE_LENGTH", "LMPOOL_LIMITS_QUEUE", "LMPOOL_MODELS_0_WORKERS",
                                "LMPOOL_MODELS_7_WORKERS", "LMPOOL_MODELS_0_WRKERS", "LMPOOL_MODELS_X",
                                "LMPOOL_ROUTER_TCP", "LMPOOL_LOG_LEVEL" };
        const char *what[] = { "key 'limits.queue_length': 0 is below the minimum 1", "not a setting",
                               "key 'models[0].workers': expected an integer", "there is no model 7 (1 configured)",
                               "not a setting", "not a setting", "must be tcp://HOST:PORT", "expected one of" };
        for (size_t i = 0; i < 8 && i < d.n; i++) {
                CHECK(!strcmp(d.entries[i].where, where[i]) && d.entries[i].line == 0, "error %zu at %s", i,
                      d.entries[i].where);
                CHECK(strstr(d.entries[i].msg, what[i]), "error %zu: %s", i, d.entries[i].msg);
        }
        char line[1024];
        if (d.n) {
                lmp_diag_format(&d.entries[0], line, sizeof(line));
                CHECK(!strcmp(line, "LMPOOL_LIMITS_QUEUE_LENGTH: key 'limits.queue_length': 0 is below the minimum 1"),
                      "format: %s", line);
        }
        lmp_diag_clear(&d);

        /* An empty value clears an optional setting. */
        char *const clear[] = { "LMPOOL_ROUTER_TCP=", "LMPOOL_MODELS_0_MEMORY_MAX=", NULL };
        c = expect_ok("router: {tcp: \"tcp://h:1\"}\nmodels: [{name: a, path: /a, memory_max: 1G}]\n", clear);
        CHECK(c && c->tcp[0] == '\0' && c->models[0].memory_max == 0, "cleared");
        lmp_config_free(c);

        /* Every row has its own variable name. */
        char a[128], b[128];
        for (size_t i = 0; i < lmp_config_n_settings; i++)
                for (size_t j = 0; j < i; j++) {
                        lmp_setting_env_name(&lmp_config_settings[i], a, sizeof(a));
                        lmp_setting_env_name(&lmp_config_settings[j], b, sizeof(b));
                        CHECK(strcmp(a, b) != 0, "%s twice", a);
                }
}

static void test_all_errors(void) {
        const char *doc =
                "router:\n"                                   /* 1 */
                "  heartbeat_ms: 10\n"                        /* 2: below */
                "  colour: red\n"                             /* 3: unknown */
                "limits:\n"                                   /* 4 */
                "  queue_length: 70000\n"                     /* 5: above */
                "log:\n"                                      /* 6 */
                "  level: loud\n"                             /* 7: enum */
                "models:\n"                                   /* 8 */
                "  - name: a\n"                               /* 9 */
                "    path: /a\n"                              /* 10 */
                "    workers: many\n"                         /* 11: type */
                "    defaults:\n"                             /* 12 */
                "      top_p: 1.5\n"                          /* 13: above */
                "  - name: a\n"                               /* 14: duplicate */
                "    path: /b\n";                             /* 15 */
        struct lmp_config *c = NULL;
        struct lmp_diag d = { 0 };
        CHECK(load(doc, NULL, &c, &d) == -EINVAL, "loads");
        const unsigned lines[] = { 2, 3, 5, 7, 11, 13, 14 };
        const unsigned cols[] = { 17, 3, 17, 10, 14, 14, 11 };
        CHECK(d.n == 7, "%zu errors, expected 7", d.n);
        for (size_t i = 0; i < 7 && i < d.n; i++)
                CHECK(d.entries[i].line == lines[i] && d.entries[i].column == cols[i] &&
                      !strcmp(d.entries[i].where, "t.yaml"),
                      "error %zu at %s:%u:%u (%s), expected line %u col %u", i, d.entries[i].where, d.entries[i].line,
                      d.entries[i].column, d.entries[i].msg, lines[i], cols[i]);
        char line[1024];
        if (d.n >= 3) {
                lmp_diag_format(&d.entries[2], line, sizeof(line));
                CHECK(!strcmp(line, "t.yaml:5:17: key 'limits.queue_length': 70000 is above the maximum 65536"), "%s", line);
        }
        if (d.n != 7)
                dump(&d);
        lmp_diag_clear(&d);

        /* Thousands of errors are counted, not all kept. */
        size_t size = 8 + 5000 * 16;
        char *big = malloc(size);
        if (!big)
                abort();
        size_t n = (size_t)sprintf(big, "limits:\n");
        for (int i = 0; i < 5000; i++)
                n += (size_t)sprintf(big + n, "  k%d: 1\n", i);
        CHECK(lmp_config_load_buffer("big.yaml", big, n, no_env, &c, &d) == -EINVAL, "big");
        CHECK(d.n + d.dropped == 5001, "%zu + %zu errors", d.n, d.dropped);
        lmp_diag_clear(&d);
        free(big);
}

/* Printing gives YAML that loads back to the same values. */
static void test_print_round_trip(void) {
        char *const env[] = { "LMPOOL_PROFILE=testing", "LMPOOL_MODELS_1_DEFAULTS_TEMPERATURE=0.3", NULL };
        struct lmp_config *c = expect_ok(profiled, env), *back = NULL;
        struct lmp_diag d = { 0 };
        char *text = NULL;
        size_t len = 0;
        if (!c)
                return;
        FILE *f = open_memstream(&text, &len);
        CHECK(f && lmp_config_print(c, f) == 0, "print");
        fclose(f);
        CHECK(strstr(text, "queue_length: 2  # profile testing, t.yaml:9\n"), "origin comment:\n%s", text);
        CHECK(strstr(text, "temperature: 0.3  # env LMPOOL_MODELS_1_DEFAULTS_TEMPERATURE\n"), "env comment");
        CHECK(strstr(text, "ctx: 2048  # default\n"), "default comment");
        CHECK(lmp_config_load_buffer("printed.yaml", text, len, no_env, &back, &d) == 0, "printed config loads");
        if (d.n) {
                dump(&d);
                fprintf(stderr, "%s", text);
        }
        if (back) {
                char x[LMP_CONFIG_PATH_MAX * 2], y[LMP_CONFIG_PATH_MAX * 2];
                for (size_t i = 0; i < lmp_config_n_settings; i++) {
                        lmp_setting_format(&lmp_config_settings[i], c, x, sizeof(x));
                        lmp_setting_format(&lmp_config_settings[i], back, y, sizeof(y));
                        CHECK(!strcmp(x, y), "%s: %s != %s", lmp_config_settings[i].key, x, y);
                }
                CHECK(back->n_models == c->n_models, "models");
                for (size_t m = 0; m < c->n_models && m < back->n_models; m++)
                        for (size_t i = 0; i < lmp_model_n_settings; i++) {
                                lmp_setting_format(&lmp_model_settings[i], &c->models[m], x, sizeof(x));
                                lmp_setting_format(&lmp_model_settings[i], &back->models[m], y, sizeof(y));
                                CHECK(!strcmp(x, y), "models[%zu].%s: %s != %s", m, lmp_model_settings[i].key, x, y);
                        }
        }
        lmp_config_free(back);
        lmp_config_free(c);
        lmp_diag_clear(&d);
        free(text);
}

/* Strings with quotes, backslashes and UTF-8 survive printing. */
static void test_print_quoting(void) {
        const char *doc = "models:\n  - name: q\n    path: \"/m/a \\\"b\\\" \\\\ \xc3\xbc # x.gguf\"\n";
        struct lmp_config *c = expect_ok(doc, NULL), *back = NULL;
        struct lmp_diag d = { 0 };
        char *text = NULL;
        size_t len = 0;
        if (!c)
                return;
        CHECK(!strcmp(c->models[0].path, "/m/a \"b\" \\ \xc3\xbc # x.gguf"), "parsed: %s", c->models[0].path);
        FILE *f = open_memstream(&text, &len);
        lmp_config_print(c, f);
        fclose(f);
        CHECK(lmp_config_load_buffer("p.yaml", text, len, no_env, &back, &d) == 0, "reload");
        CHECK(back && !strcmp(back->models[0].path, c->models[0].path), "path after printing: %s",
              back ? back->models[0].path : "-");
        lmp_config_free(back);
        lmp_config_free(c);
        lmp_diag_clear(&d);
        free(text);
}

static void test_endpoint(void) {
        char buf[256], want[64];
        char *const rt[] = { "XDG_RUNTIME_DIR=/run/user/5", "RUNTIME_DIRECTORY=/run/lmpool:/run/other", NULL };
        char *const xdg[] = { "XDG_RUNTIME_DIR=/run/user/5", "RUNTIME_DIRECTORY=", NULL };
        char long_dir[200];
        snprintf(long_dir, sizeof(long_dir), "RUNTIME_DIRECTORY=/%0150d", 0);
        char *const too_long[] = { long_dir, NULL };

        CHECK(lmp_config_default_endpoint(rt, buf, sizeof(buf)) == 0 && !strcmp(buf, "ipc:///run/lmpool/lmpool.sock"),
              "%s", buf);
        CHECK(lmp_config_default_endpoint(xdg, buf, sizeof(buf)) == 0 &&
                      !strcmp(buf, "ipc:///run/user/5/lmpool/lmpool.sock"),
              "%s", buf);
        snprintf(want, sizeof(want), "ipc:///tmp/lmpool-%u/lmpool.sock", (unsigned)getuid());
        CHECK(lmp_config_default_endpoint(no_env, buf, sizeof(buf)) == 0 && !strcmp(buf, want), "%s", buf);
        CHECK(lmp_config_default_endpoint(too_long, buf, sizeof(buf)) == -ENAMETOOLONG, "too long");
        CHECK(lmp_config_default_endpoint(rt, buf, 10) == -ENAMETOOLONG, "small buffer");

        struct lmp_config *c = expect_ok("router: {endpoint: \"tcp://127.0.0.1:7\"}\nmodels: [{name: a, path: /a}]\n", NULL);
        CHECK(c && lmp_config_endpoint(c, rt, buf, sizeof(buf)) == 0 && !strcmp(buf, "tcp://127.0.0.1:7"), "%s", buf);
        lmp_config_free(c);
        c = expect_ok(one_model, NULL);
        CHECK(c && lmp_config_endpoint(c, rt, buf, sizeof(buf)) == 0 && !strcmp(buf, "ipc:///run/lmpool/lmpool.sock"),
              "%s", buf);
        lmp_config_free(c);
}

/* The example spells out the defaults in its base part: they must be the
 * table's, apart from the model it describes and how that model is sized
 * (workers, threads, slots). */
static void check_example_defaults(const struct lmp_config *c) {
        struct lmp_config *d = expect_ok(one_model, NULL);
        char x[LMP_CONFIG_PATH_MAX * 2], y[LMP_CONFIG_PATH_MAX * 2];
        if (!d)
                return;
        for (size_t i = 0; i < lmp_config_n_settings; i++) {
                lmp_setting_format(&lmp_config_settings[i], c, x, sizeof(x));
                lmp_setting_format(&lmp_config_settings[i], d, y, sizeof(y));
                CHECK(!strcmp(x, y), "example %s: %s, default %s", lmp_config_settings[i].key, x, y);
        }
        for (size_t i = 0; i < lmp_model_n_settings; i++) {
                const char *k = lmp_model_settings[i].key;
                if (!strcmp(k, "name") || !strcmp(k, "path") || !strcmp(k, "workers") || !strcmp(k, "threads") ||
                    !strcmp(k, "slots"))
                        continue;
                lmp_setting_format(&lmp_model_settings[i], &c->models[0], x, sizeof(x));
                lmp_setting_format(&lmp_model_settings[i], &d->models[0], y, sizeof(y));
                CHECK(!strcmp(x, y), "example models[0].%s: %s, default %s", k, x, y);
        }
        lmp_config_free(d);
}

/* Files: relative model paths, a missing file, the example. */
static void test_files(const char *example) {
        char dir[] = "/tmp/lmp-config-XXXXXX", path[256], want[300];
        struct lmp_config *c = NULL;
        struct lmp_diag d = { 0 };

        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(path, sizeof(path), "%s/lmpool.yaml", dir);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL, "create");
        if (f) {
                fputs("models:\n  - {name: a, path: m.gguf}\n  - {name: b, path: /abs.gguf}\n", f);
                fclose(f);
        }
        CHECK(lmp_config_load(path, no_env, &c, &d) == 0, "load file");
        snprintf(want, sizeof(want), "%s/m.gguf", dir);
        CHECK(c && !strcmp(c->models[0].path, want) && !strcmp(c->models[1].path, "/abs.gguf"), "paths");
        CHECK(c && !strcmp(c->path, path), "path");
        lmp_config_free(c);
        c = NULL;
        unlink(path);
        CHECK(lmp_config_load(path, no_env, &c, &d) == -ENOENT && !c, "missing file");
        CHECK(d.n == 1 && strstr(d.entries[0].msg, "cannot open") && !strcmp(d.entries[0].where, path), "message");
        lmp_diag_clear(&d);
        CHECK(lmp_config_load(dir, no_env, &c, &d) < 0 && d.n == 1, "a directory");
        lmp_diag_clear(&d);
        rmdir(dir);

        if (!example)
                return;
        const char *profiles[] = { NULL, "LMPOOL_PROFILE=testing", "LMPOOL_PROFILE=development",
                                   "LMPOOL_PROFILE=production" };
        for (size_t i = 0; i < 4; i++) {
                char *env[] = { (char *)profiles[i], NULL };
                c = NULL;
                int r = lmp_config_load(example, env, &c, &d);
                CHECK(r == 0 && c, "example with %s", profiles[i] ? profiles[i] : "no profile");
                if (r < 0)
                        dump(&d);
                lmp_diag_clear(&d);
                if (!c)
                        continue;
                CHECK(c->n_models == 1 && !strcmp(c->models[0].name, "default"), "the example's model");
                if (i == 0)
                        check_example_defaults(c);
                if (i == 1)
                        CHECK(c->queue_length == 4 && c->models[0].defaults.temperature == 0, "testing");
                if (i == 2)
                        CHECK(!strcmp(c->tcp, "tcp://127.0.0.1:5555"), "development");
                if (i == 3)
                        CHECK(c->models[0].workers == 4 && c->models[0].numa == LMP_NUMA_INTERLEAVE &&
                                      c->models[0].memory_max == 3ull << 30,
                              "production");
                lmp_config_free(c);
        }
}

static bool keep_defaults(const char *key, bool model_row, void *userdata) {
        (*(int *)userdata)++;
        return model_row && strncmp(key, "defaults.", 9) == 0;
}

/* lmp_config_diff: what SIGHUP reports as applied or needing a restart. */
static void test_diff(void) {
        struct lmp_config *a = expect_ok("limits:\n  max_prompt_tokens: 8\nmodels:\n"
                                         "  - name: m\n    path: /m.gguf\n  - name: gone\n    path: /g.gguf\n", NULL);
        struct lmp_config *b = expect_ok("limits:\n  max_prompt_tokens: 64\nworkers:\n  load_attempts: 5\n"
                                         "models:\n  - name: m\n    path: /m.gguf\n    ctx: 1024\n"
                                         "    defaults:\n      top_k: 7\n  - name: new\n    path: /n.gguf\n", NULL);
        char buf[512];
        int calls = 0;
        if (!a || !b)
                goto out;
        CHECK(lmp_config_diff(a, a, NULL, NULL, buf, sizeof(buf)) == 0 && buf[0] == '\0', "no change: '%s'", buf);
        CHECK(lmp_config_diff(a, b, NULL, NULL, buf, sizeof(buf)) == 6, "all: '%s'", buf);
        CHECK(!strcmp(buf, "limits.max_prompt_tokens workers.load_attempts models[m].ctx models[m].defaults.top_k "
                           "models[gone] models[new]"), "all: '%s'", buf);
        CHECK(lmp_config_diff(a, b, keep_defaults, &calls, buf, sizeof(buf)) == 1 &&
                      !strcmp(buf, "models[m].defaults.top_k") && calls == 6, "kept: '%s' (%d calls)", buf, calls);
        /* Cut short, never overflowing. */
        CHECK(lmp_config_diff(a, b, NULL, NULL, buf, 40) == 6 && strlen(buf) < 40 && strstr(buf, "..."),
              "short: '%s'", buf);
out:
        lmp_config_free(a);
        lmp_config_free(b);
}

int main(int argc, char **argv) {
        test_defaults();
        test_diff();
        test_bounds();
        test_values();
        test_unknown_and_types();
        test_models();
        test_profiles();
        test_env();
        test_all_errors();
        test_print_round_trip();
        test_print_quoting();
        test_endpoint();
        test_files(argc > 1 ? argv[1] : NULL);
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("config: all checks passed\n");
        return 0;
}

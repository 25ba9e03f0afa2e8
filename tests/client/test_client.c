/* liblmpool against the protocol peer (peer.c) on a private ipc endpoint
 * in a fresh temporary directory: the answers of models/stats/health,
 * streamed and blocking generation, chat, ids, stop strings, max_tokens,
 * the daemon's error codes, local validation, cancel from the callback,
 * receive timeouts (a silent peer and no peer at all), events of an
 * abandoned request being skipped, one client per thread in parallel, and
 * the default endpoint's resolution. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmpool/client.h"
#include "peer.h"
#include "../check.h"

static char endpoint[256];
static volatile int peer_stop;
static struct peer_handle peer;

static void *peer_thread(void *arg) {
        (void)arg;
        peer_serve(&peer, 120000, &peer_stop);
        return NULL;
}

static long long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct collect {
        char text[4096];
        size_t len;
        int calls;
        int32_t ids[256];
        size_t n_ids;
        int cancel_after;       /* > 0: ask to stop after that many tokens */
};

static int on_token(void *userdata, const char *text, size_t len, const int32_t *ids, size_t n_ids) {
        struct collect *c = userdata;
        if (c->len + len < sizeof(c->text)) {
                memcpy(c->text + c->len, text, len);
                c->len += len;
                c->text[c->len] = '\0';
        }
        for (size_t i = 0; i < n_ids && c->n_ids < 256; i++)
                c->ids[c->n_ids++] = ids[i];
        c->calls++;
        return c->cancel_after > 0 && c->calls >= c->cancel_after;
}

static struct lmp_client *connect_peer(void) {
        struct lmp_client *c = NULL;
        int rc = lmp_client_new(endpoint, &c);
        CHECK(rc == 0, "connect: %d", rc);
        if (c)
                lmp_client_set_timeout(c, 5000);
        return c;
}

static void test_info(struct lmp_client *c) {
        struct lmp_client_result res;
        char *json = NULL;
        CHECK(lmp_client_models(c, &json, &res) == 0, "models: %s", res.message);
        CHECK(json && strstr(json, "\"event\":\"models\"") && strstr(json, "\"name\":\"tiny\""), "models: %s", json);
        free(json);
        json = NULL;
        CHECK(lmp_client_health(c, &json, &res) == 0, "health");
        CHECK(json && strstr(json, "\"status\":\"ok\""), "health: %s", json);
        free(json);
        json = NULL;
        CHECK(lmp_client_stats(c, &json, &res) == 0, "stats");
        CHECK(json && strstr(json, "\"uptime_s\"") && strstr(json, "\"pid\":4242"), "stats: %s", json);
        free(json);
        CHECK(lmp_client_models(c, &json, NULL) == 0, "models without result");
        free(json);
}

static void test_generate(struct lmp_client *c) {
        struct lmp_client_params p;
        struct lmp_client_result res;
        struct collect col = { 0 };
        const char *prompt = "h\xc3\xa9llo w\xf0\x9f\x98\x80rld";
        char want[128];
        snprintf(want, sizeof(want), "Echo: %s", prompt);

        lmp_client_params_init(&p);
        p.model = "tiny";
        int rc = lmp_client_generate(c, &p, prompt, on_token, &col, &res);
        CHECK(rc == 0, "generate: rc %d %s", rc, res.message);
        CHECK(strcmp(col.text, want) == 0, "streamed '%s'", col.text);
        CHECK(res.text && strcmp(res.text, want) == 0 && res.text_len == strlen(want), "result text '%s'", res.text);
        CHECK(strcmp(res.finish, "eos") == 0 && strcmp(res.worker, "tiny/0") == 0, "finish %s worker %s", res.finish,
              res.worker);
        CHECK(res.prompt_tokens == 3 && res.generated_tokens == col.calls && col.calls >= 5, "usage %lld/%lld, %d calls",
              res.prompt_tokens, res.generated_tokens, col.calls);
        CHECK(res.ttft_ms == 2.0 && res.tokens_per_s == 1000.0, "timings");
        CHECK(col.n_ids == 0, "ids without return_ids");
        CHECK(strcmp(lmp_client_last_id(c), "") != 0, "last id");
        lmp_client_result_clear(&res);

        /* blocking, no callback, ids, max_tokens */
        memset(&col, 0, sizeof(col));
        p.max_tokens = 2;
        p.return_ids = true;
        rc = lmp_client_generate(c, &p, "abcdefgh", on_token, &col, &res);
        CHECK(rc == 0 && strcmp(res.finish, "length") == 0 && strcmp(res.text, "Echo: ab") == 0,
              "max_tokens: %d %s '%s'", rc, res.finish, res.text);
        CHECK(col.n_ids == 2 && col.ids[0] == 100 && col.ids[1] == 101, "ids %zu", col.n_ids);
        lmp_client_result_clear(&res);

        /* stream false: one done event with the text, no callback */
        memset(&col, 0, sizeof(col));
        lmp_client_params_init(&p);
        p.model = "tiny";
        p.stream = false;
        rc = lmp_client_generate(c, &p, "whole", on_token, &col, &res);
        CHECK(rc == 0 && col.calls == 0 && strcmp(res.text, "Echo: whole") == 0, "no stream: %d %d '%s'", rc,
              col.calls, res.text);
        lmp_client_result_clear(&res);

        /* stop strings and every sampling field accepted */
        const char *stops[] = { "XX", "lo" };
        lmp_client_params_init(&p);
        p.model = "tiny";
        p.stop = stops;
        p.n_stop = 2;
        p.temperature = 0.7;
        p.top_k = 40;
        p.top_p = 0.9;
        p.min_p = 0.05;
        p.repeat_penalty = 1.1;
        p.seed = 42;
        p.ignore_eos = true;
        p.timeout_ms = 1000;
        rc = lmp_client_generate(c, &p, "hello", NULL, NULL, &res);
        CHECK(rc == 0 && strcmp(res.finish, "stop") == 0 && strcmp(res.text, "Echo: hel") == 0, "stop: %d %s '%s'",
              rc, res.finish, res.text);
        lmp_client_result_clear(&res);
}

static void test_chat(struct lmp_client *c) {
        struct lmp_client_params p;
        struct lmp_client_result res;
        struct lmp_client_message m[3] = {
                { "system", "be brief" }, { "user", "first" }, { "assistant", "ok" },
        };
        struct lmp_client_message m2[4] = { m[0], m[1], m[2], { "user", "second \"quoted\"\n" } };
        lmp_client_params_init(&p);
        p.model = "tiny";
        int rc = lmp_client_chat(c, &p, m2, 4, NULL, NULL, &res);
        CHECK(rc == 0 && strcmp(res.text, "Echo(4): second \"quoted\"\n") == 0, "chat: %d '%s'", rc, res.text);
        lmp_client_result_clear(&res);

        struct lmp_client_message bad = { "robot", "x" };
        rc = lmp_client_chat(c, &p, &bad, 1, NULL, NULL, &res);
        CHECK(rc == -EINVAL && res.code == LMP_CLIENT_BAD_REQUEST, "bad role: %d", rc);
        rc = lmp_client_chat(c, &p, m, 0, NULL, NULL, &res);
        CHECK(rc == -EINVAL, "no messages: %d", rc);
}

static void test_errors(struct lmp_client *c) {
        struct lmp_client_params p;
        struct lmp_client_result res;

        lmp_client_params_init(&p);
        p.model = "nope";
        int rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        CHECK(rc == -EPROTO && res.code == LMP_CLIENT_UNKNOWN_MODEL && strstr(res.message, "nope"),
              "unknown model: %d %d %s", rc, res.code, res.message);
        CHECK(strcmp(lmp_client_code_name(res.code), "unknown_model") == 0, "code name");
        lmp_client_result_clear(&res);

        p.model = "busy";
        rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        CHECK(rc == -EPROTO && res.code == LMP_CLIENT_BUSY, "busy: %d %d", rc, res.code);
        lmp_client_result_clear(&res);

        /* Refused here, with the daemon's message, before anything is sent. */
        p.model = "tiny";
        p.temperature = 11;
        rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        CHECK(rc == -EINVAL && res.code == LMP_CLIENT_BAD_REQUEST && strstr(res.message, "temperature"),
              "local validation: %d %s", rc, res.message);
        lmp_client_result_clear(&res);
        lmp_client_params_init(&p);
        rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        CHECK(rc == -EINVAL, "no model: %d", rc);
        p.model = "tiny";
        rc = lmp_client_generate(c, &p, "bad \xff utf-8", NULL, NULL, &res);
        CHECK(rc == -EINVAL && strstr(res.message, "UTF-8"), "bad UTF-8 prompt: %d %s", rc, res.message);
        lmp_client_result_clear(&res);

        bool found = true;
        rc = lmp_client_cancel(c, "never-sent", &found);
        CHECK(rc == 0 && !found, "cancel unknown: %d %d", rc, found);
}

static void test_cancel_and_timeouts(struct lmp_client *c) {
        struct lmp_client_params p;
        struct lmp_client_result res;
        struct collect col = { .cancel_after = 3 };

        lmp_client_params_init(&p);
        p.model = "slow";
        long long t0 = now_ms();
        int rc = lmp_client_generate(c, &p, "x", on_token, &col, &res);
        CHECK(rc == -ECANCELED && res.code == LMP_CLIENT_CANCELLED, "cancel: %d %d %s", rc, res.code, res.message);
        CHECK(col.calls == 3 && strcmp(res.text, "...") == 0, "tokens before cancel: %d '%s'", col.calls, res.text);
        CHECK(now_ms() - t0 < 3000, "cancel took %lld ms", now_ms() - t0);
        lmp_client_result_clear(&res);

        /* A peer that never answers: bounded by the receive timeout. */
        lmp_client_set_timeout(c, 300);
        p.model = "silent";
        t0 = now_ms();
        rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        long long took = now_ms() - t0;
        CHECK(rc == -ETIMEDOUT && res.code == LMP_CLIENT_TIMEOUT, "silent: %d", rc);
        CHECK(took >= 250 && took < 3000, "silent took %lld ms", took);
        lmp_client_result_clear(&res);

        /* A slow request given up on; its late events must not leak into
         * the next request's answer. */
        p.model = "slow";
        p.stream = false; /* nothing comes until done, 5 s away */
        rc = lmp_client_generate(c, &p, "x", NULL, NULL, &res);
        CHECK(rc == -ETIMEDOUT, "slow with 300 ms of patience: got %d", rc);
        p.stream = true;
        lmp_client_result_clear(&res);
        lmp_client_set_timeout(c, 5000);
        p.model = "tiny";
        rc = lmp_client_generate(c, &p, "after", NULL, NULL, &res);
        CHECK(rc == 0 && strcmp(res.text, "Echo: after") == 0, "after abandon: %d '%s'", rc, res.text);
        lmp_client_result_clear(&res);
}

static void *parallel_client(void *arg) {
        int k = (int)(long)arg;
        struct lmp_client *c = connect_peer();
        struct lmp_client_params p;
        struct lmp_client_result res;
        char prompt[32], want[64];
        long ok = 0;
        if (!c)
                return (void *)0;
        lmp_client_params_init(&p);
        p.model = "tiny";
        for (int i = 0; i < 20; i++) {
                snprintf(prompt, sizeof(prompt), "client %d request %d", k, i);
                snprintf(want, sizeof(want), "Echo: %s", prompt);
                if (lmp_client_generate(c, &p, prompt, NULL, NULL, &res) == 0 && strcmp(res.text, want) == 0)
                        ok++;
                lmp_client_result_clear(&res);
        }
        lmp_client_free(c);
        return (void *)ok;
}

static void test_parallel(void) {
        pthread_t t[4];
        for (long i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, parallel_client, (void *)i);
        for (int i = 0; i < 4; i++) {
                void *ok;
                pthread_join(t[i], &ok);
                CHECK((long)ok == 20, "client %d: %ld of 20 answers right", i, (long)ok);
        }
}

static void test_no_peer(const char *dir) {
        char ep[300];
        struct lmp_client *c;
        struct lmp_client_result res;
        char *json = NULL;
        snprintf(ep, sizeof(ep), "ipc://%s/nobody.sock", dir);
        CHECK(lmp_client_new(ep, &c) == 0, "connect to nobody");
        lmp_client_set_timeout(c, 200);
        long long t0 = now_ms();
        int rc = lmp_client_health(c, &json, &res);
        CHECK(rc == -ETIMEDOUT && json == NULL, "nobody: %d", rc);
        CHECK(now_ms() - t0 < 2000, "nobody took %lld ms", now_ms() - t0);
        lmp_client_free(c);
        lmp_client_free(NULL);
        CHECK(lmp_client_new("bogus://x", &c) < 0, "bad endpoint accepted");
}

static void test_default_endpoint(void) {
        char buf[512], want[128];
        unsetenv("LMPOOL_ENDPOINT");
        unsetenv("RUNTIME_DIRECTORY");
        unsetenv("XDG_RUNTIME_DIR");
        snprintf(want, sizeof(want), "ipc:///tmp/lmpool-%u/lmpool.sock", (unsigned)getuid());
        CHECK(lmp_client_default_endpoint(buf, sizeof(buf)) == 0 && strcmp(buf, want) == 0, "fallback: %s", buf);
        setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
        CHECK(lmp_client_default_endpoint(buf, sizeof(buf)) == 0 &&
                      strcmp(buf, "ipc:///run/user/7/lmpool/lmpool.sock") == 0,
              "xdg: %s", buf);
        setenv("RUNTIME_DIRECTORY", "/run/lmpool", 1);
        CHECK(lmp_client_default_endpoint(buf, sizeof(buf)) == 0 && strcmp(buf, "ipc:///run/lmpool/lmpool.sock") == 0,
              "runtime dir: %s", buf);
        setenv("LMPOOL_ENDPOINT", "tcp://127.0.0.1:5555", 1);
        CHECK(lmp_client_default_endpoint(buf, sizeof(buf)) == 0 && strcmp(buf, "tcp://127.0.0.1:5555") == 0,
              "env: %s", buf);
        CHECK(lmp_client_default_endpoint(buf, 8) == -ENAMETOOLONG, "short buffer");
        /* NULL endpoint means the default: here, the peer. */
        struct lmp_client *c;
        char *json = NULL;
        setenv("LMPOOL_ENDPOINT", endpoint, 1);
        CHECK(lmp_client_new(NULL, &c) == 0, "default connect");
        lmp_client_set_timeout(c, 5000);
        CHECK(lmp_client_health(c, &json, NULL) == 0 && json, "health via default endpoint");
        free(json);
        lmp_client_free(c);
}

int main(void) {
        const char *tmp = getenv("TMPDIR");
        char dir[200];
        pthread_t t;
        snprintf(dir, sizeof(dir), "%s/lmpool-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(endpoint, sizeof(endpoint), "ipc://%s/peer.sock", dir);
        int rc = peer_bind(&peer, endpoint);
        if (rc < 0) {
                fprintf(stderr, "peer: cannot bind %s: %s\n", endpoint, strerror(-rc));
                return 1;
        }
        pthread_create(&t, NULL, peer_thread, NULL);

        struct lmp_client *c = connect_peer();
        if (c) {
                test_info(c);
                test_generate(c);
                test_chat(c);
                test_errors(c);
                test_cancel_and_timeouts(c);
                lmp_client_free(c);
        }
        test_parallel();
        test_no_peer(dir);
        test_default_endpoint();

        peer_stop = 1;
        pthread_join(t, NULL);
        peer_close(&peer);
        char sock[300];
        snprintf(sock, sizeof(sock), "%s/peer.sock", dir);
        unlink(sock);
        rmdir(dir);
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("client: ok\n");
        return 0;
}

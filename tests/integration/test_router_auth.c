/* The router's side of worker authentication, with real ZeroMQ and the
 * real router and ZAP handler (src/router/router.h), driven by this
 * program's poll loop instead of the supervisor's, which is not linked in:
 * this program plays the supervisor (it sets the worker view's pid and
 * state), and its child processes play the workers, so that they can send
 * what a real worker never does.
 *
 *  1. An impostor child (not the pid the table holds) connects first with
 *     the worker's routing id and announces READY: the ZAP handler refuses
 *     the connection; the worker stays "starting".
 *  2. The worker child (the table's pid) connects and is READY; a client
 *     sends a request; the worker gets the job, then sends frames that do
 *     not fit its state: an event for a request id it is not running, a
 *     second READY, an unknown verb, an event with a bad header and one
 *     with too many frames. Each is dropped and counted; the client sees
 *     only the worker's real token and its `done`.
 *  3. A second request's `done` comes with a header cut short: the request
 *     still ends, once, with that event; the protocol error is counted
 *     (and logged), the frame is not counted refused. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/router.h"
#include "../check.h"

static void send_parts(void *s, int n, const char *const *parts) {
        for (int i = 0; i < n; i++)
                zmq_send(s, parts[i], strlen(parts[i]), i < n - 1 ? ZMQ_SNDMORE : 0);
}

/* Waits for a byte on fd: the parent's go. */
static void wait_go(int fd) {
        char c;
        while (read(fd, &c, 1) < 0 && errno == EINTR)
                ;
}

/* The impostor: the worker's routing id, another pid. */
static void impostor(const char *backend, int go) {
        wait_go(go);
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0, ivl = 50;
        char body[64];
        zmq_setsockopt(s, ZMQ_ROUTING_ID, "m/0", 3);
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
        zmq_connect(s, backend);
        snprintf(body, sizeof(body), "2 %d 2048", (int)getpid());
        for (int i = 0; i < 40; i++) {
                const char *ready[] = { "ready", body };
                if (zmq_send(s, ready[0], 5, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                        zmq_send(s, ready[1], strlen(ready[1]), 0);
                usleep(25000);
        }
        zmq_close(s);
        zmq_ctx_term(ctx);
        _exit(0);
}

/* The next job's rid: job, "<rid> <queued_ms>", request JSON (heartbeats
 * skipped). */
static uint64_t recv_job(void *s) {
        char frame[4][512];
        for (;;) {
                int n = 0, more = 1;
                while (more && n < 4) {
                        int len = zmq_recv(s, frame[n], sizeof(frame[n]) - 1, 0);
                        if (len < 0)
                                _exit(2);
                        frame[n][LMP_MIN(len, (int)sizeof(frame[n]) - 1)] = '\0';
                        size_t ms = sizeof(more);
                        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ms);
                        n++;
                }
                if (n == 3 && strcmp(frame[0], "job") == 0)
                        return strtoull(frame[1], NULL, 10);
        }
}

/* The worker: the table's pid; a real job, frames out of place, then the
 * real answer; a second job, answered with a done header cut short. */
static void worker(const char *backend, int go) {
        wait_go(go);
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        char body[64], head[64];
        zmq_setsockopt(s, ZMQ_ROUTING_ID, "m/0", 3);
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_connect(s, backend);
        snprintf(body, sizeof(body), "2 %d 2048", (int)getpid());
        send_parts(s, 2, (const char *const[]){ "ready", body });
        uint64_t rid = recv_job(s);
        char other[32];
        snprintf(other, sizeof(other), "%" PRIu64 " t", rid + 1000);
        send_parts(s, 3, (const char *const[]){ "ev", other, "{\"v\":1,\"id\":\"r1\",\"event\":\"token\",\"text\":\"FORGED\"}" });
        send_parts(s, 2, (const char *const[]){ "ready", body });
        send_parts(s, 2, (const char *const[]){ "xx", "yy" });
        send_parts(s, 3, (const char *const[]){ "ev", "junk", "{\"v\":1,\"id\":\"r1\",\"event\":\"token\",\"text\":\"FORGED\"}" });
        snprintf(head, sizeof(head), "%" PRIu64 " t", rid);
        send_parts(s, 4, (const char *const[]){ "ev", head, "{\"v\":1,\"id\":\"r1\",\"event\":\"token\",\"text\":\"FORGED\"}",
                                                 "extra" });
        send_parts(s, 3, (const char *const[]){ "ev", head, "{\"v\":1,\"id\":\"r1\",\"event\":\"token\",\"text\":\"OK\"}" });
        snprintf(head, sizeof(head), "%" PRIu64 " d 1 1 0 0 0 0 0 stop", rid);
        send_parts(s, 3, (const char *const[]){ "ev", head,
                                                 "{\"v\":1,\"id\":\"r1\",\"event\":\"done\",\"finish\":\"stop\"}" });
        rid = recv_job(s);
        snprintf(head, sizeof(head), "%" PRIu64 " d 3 1", rid);
        send_parts(s, 3, (const char *const[]){ "ev", head,
                                                 "{\"v\":1,\"id\":\"r2\",\"event\":\"done\",\"finish\":\"stop\"}" });
        /* stay connected until the parent is done */
        wait_go(go);
        zmq_close(s);
        zmq_ctx_term(ctx);
        _exit(0);
}

static void serve(struct lmp_router *d, long ms) {
        zmq_pollitem_t items[3] = {
                { .socket = d->back, .events = ZMQ_POLLIN },
                { .socket = d->front, .events = ZMQ_POLLIN },
                { .socket = d->zap, .events = ZMQ_POLLIN },
        };
        if (zmq_poll(items, 3, ms) <= 0)
                return;
        if (items[0].revents & ZMQ_POLLIN)
                lmp_router_on_worker(d);
        if (items[1].revents & ZMQ_POLLIN)
                lmp_router_on_client(d, d->front);
        if (items[2].revents & ZMQ_POLLIN)
                lmp_zap_on_request(d);
}

int main(void) {
        static const char yaml[] = "models:\n  - name: m\n    path: /nonexistent.gguf\n    slots: 2\n";
        char *const envp[] = { NULL };
        char dir[] = "/tmp/lmpool-router-auth-XXXXXX";
        struct lmp_router d;
        char frontend[sizeof(d.frontend)], backend[sizeof(d.backend)];
        struct lmp_diag diag = { 0 };
        int go_imp[2], go_w[2];
        pid_t imp, wp;

        signal(SIGPIPE, SIG_IGN);
        lmp_log_setup("test_router_auth", LMP_LOGTO_STDERR, LMP_PRI_INFO);
        if (!mkdtemp(dir) || pipe(go_imp) < 0 || pipe(go_w) < 0)
                return 1;
        snprintf(frontend, sizeof(frontend), "ipc://%s/c.sock", dir);
        snprintf(backend, sizeof(backend), "ipc://%s/w.sock", dir);
        /* The children first, before any ZeroMQ context exists here. */
        if ((imp = fork()) == 0)
                impostor(backend, go_imp[0]);
        if ((wp = fork()) == 0)
                worker(backend, go_w[0]);
        if (imp < 0 || wp < 0)
                return 1;

        struct lmp_config *cfg = NULL;
        if (lmp_config_load_buffer("t.yaml", yaml, sizeof(yaml) - 1, envp, &cfg, &diag) < 0) {
                lmp_diag_print(&diag, stderr);
                return 1;
        }
        if (lmp_router_init(&d, cfg) < 0)
                return 1;
        snprintf(d.frontend, sizeof(d.frontend), "%s", frontend);
        snprintf(d.backend, sizeof(d.backend), "%s", backend);
        d.models[0].loaded = true;
        /* what the supervisor does when it spawns the worker */
        struct lmp_router_worker *w = &d.models[0].workers[0];
        CHECK(strcmp(w->name, "m/0") == 0, "worker view named %s", w->name);
        w->state = LMP_WORKER_STARTING;
        w->pid = wp;
        w->last_seen_ms = lmp_clock_ms();
        d.front_dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d.start_ms = lmp_clock_ms();
        if (lmp_router_open(&d) < 0)
                return 1;

        /* 1. the impostor alone */
        if (write(go_imp[1], "g", 1) != 1)
                return 1;
        for (double end = lmp_clock_ms() + 1000; lmp_clock_ms() < end;)
                serve(&d, 50);
        CHECK(w->state == LMP_WORKER_STARTING, "the impostor's READY was taken");
        CHECK(d.auth.zap_refused >= 1, "the ZAP handler refused nothing (%" PRIu64 ")", d.auth.zap_refused);
        waitpid(imp, NULL, 0);

        /* 2. the worker, and a client's request */
        if (write(go_w[1], "g", 1) != 1)
                return 1;
        for (double end = lmp_clock_ms() + 10000; lmp_clock_ms() < end && w->state != LMP_WORKER_READY;)
                serve(&d, 50);
        CHECK(w->state == LMP_WORKER_READY, "the worker did not become ready");
        void *cctx = zmq_ctx_new(), *client = zmq_socket(cctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(client, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_connect(client, d.frontend);
        const char *req = "{\"v\":1,\"id\":\"r1\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"hi\"}";
        zmq_send(client, req, strlen(req), 0);
        char events[8][512];
        int n_events = 0;
        for (double end = lmp_clock_ms() + 10000; lmp_clock_ms() < end && n_events < 8;) {
                serve(&d, 20);
                zmq_pollitem_t it = { .socket = client, .events = ZMQ_POLLIN };
                while (zmq_poll(&it, 1, 0) > 0 && n_events < 8) {
                        int len = zmq_recv(client, events[n_events], sizeof(events[0]) - 1, 0);
                        if (len < 0)
                                break;
                        events[n_events][LMP_MIN(len, (int)sizeof(events[0]) - 1)] = '\0';
                        n_events++;
                }
                if (n_events && strstr(events[n_events - 1], "\"done\""))
                        break;
        }
        CHECK(n_events == 2, "the client got %d events", n_events);
        for (int i = 0; i < n_events; i++)
                CHECK(!strstr(events[i], "FORGED"), "a dropped frame reached the client: %s", events[i]);
        CHECK(n_events >= 1 && strstr(events[0], "\"OK\""), "the real token: %s", n_events ? events[0] : "");
        CHECK(n_events >= 2 && strstr(events[1], "\"done\""), "the real done: %s", n_events >= 2 ? events[1] : "");
        CHECK(d.auth.worker_frames_refused == 5, "worker frames refused: %" PRIu64 " (want 5)",
              d.auth.worker_frames_refused);
        CHECK(d.stats.ok == 1 && w->running.n == 0, "ok %" PRIu64 ", running %zu", d.stats.ok, w->running.n);

        /* 3. a done header cut short */
        req = "{\"v\":1,\"id\":\"r2\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"hi\"}";
        zmq_send(client, req, strlen(req), 0);
        n_events = 0;
        for (double end = lmp_clock_ms() + 3000; lmp_clock_ms() < end && n_events < 8;) {
                serve(&d, 20);
                zmq_pollitem_t it = { .socket = client, .events = ZMQ_POLLIN };
                while (zmq_poll(&it, 1, 0) > 0 && n_events < 8) {
                        int len = zmq_recv(client, events[n_events], sizeof(events[0]) - 1, 0);
                        if (len < 0)
                                break;
                        events[n_events][LMP_MIN(len, (int)sizeof(events[0]) - 1)] = '\0';
                        n_events++;
                }
        }
        CHECK(n_events == 1 && strstr(events[0], "\"r2\"") && strstr(events[0], "\"done\""),
              "r2: %d events, the first %s", n_events, n_events ? events[0] : "");
        CHECK(d.auth.worker_protocol_errors == 1, "protocol errors: %" PRIu64, d.auth.worker_protocol_errors);
        CHECK(d.auth.worker_frames_refused == 5, "worker frames refused: %" PRIu64, d.auth.worker_frames_refused);
        CHECK(d.stats.ok == 2 && d.stats.errors == 0 && w->running.n == 0, "ok %" PRIu64 ", errors %" PRIu64
              ", running %zu", d.stats.ok, d.stats.errors, w->running.n);

        zmq_close(client);
        zmq_ctx_term(cctx);
        if (write(go_w[1], "g", 1) != 1)
                failures++;
        waitpid(wp, NULL, 0);
        lmp_router_free(&d);
        close(d.front_dir_fd);
        lmp_config_free(cfg);
        rmdir(dir);
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        else
                printf("router auth: ok\n");
        return failures ? 1 : 0;
}

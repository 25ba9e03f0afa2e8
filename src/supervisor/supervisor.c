/* The supervisor: loads each model's weight store, one model after
 * another; keeps the process table of workers (spawn by fork+exec of
 * `lmpoold --worker` with the store's descriptor inherited, reap, respawn
 * with a doubling back-off); and runs the one poll loop that serves the
 * router's sockets, signals (signalfd) and timers. It tells systemd how it
 * is doing: READY=1 once every model's workers are ready, STATUS= lines,
 * WATCHDOG=1 while the loop turns, STOPPING=1 on the way out. */
#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "gguf/gguf.h"
#include "supervisor/daemon.h"

#define RUNTIME_OVERHEAD (48ull << 20) /* per worker: heap, stacks, zmq, tokenizer */

double lmp_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct lmp_worker_rt *lmp_supervisor_find_worker(struct lmp_daemon *d, const void *name, size_t len) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (strlen(w->name) == len && memcmp(w->name, name, len) == 0)
                                return w;
                }
        return NULL;
}

static void notify_status(struct lmp_daemon *d) {
        int ready = 0, total = 0;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        total++;
                        ready += d->models[i].workers[j].state == LMP_WORKER_READY;
                }
        sd_notifyf(0, "STATUS=%d/%d workers ready, %zu running, %zu queued, %" PRIu64 " served, %" PRIu64
                   " events dropped for slow clients", ready, total, lmp_router_running(d), d->queued, d->stats.ok,
                   d->stats.events_dropped);
}

void lmp_supervisor_worker_ready(struct lmp_daemon *d, struct lmp_worker_rt *w) {
        w->state = LMP_WORKER_READY;
        w->ready_ms = lmp_now_ms();
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", d->models[w->model].cfg->name),
                LMP_FSTR("LMPOOL_WORKER", w->name),
                LMP_FI64("LMPOOL_PID", w->pid),
                LMP_FU64("SLOTS", w->slots),
                LMP_FF64("START_MS", w->ready_ms - w->spawned_ms),
        };
        lmp_log_event(LMP_PRI_INFO, "worker_started", f, "worker %s (pid %d) ready in %.0f ms, %u slots", w->name,
                      (int)w->pid, w->ready_ms - w->spawned_ms, w->slots);
        if (d->ready_notified)
                return;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++)
                        if (d->models[i].workers[j].state != LMP_WORKER_READY)
                                return;
        d->ready_notified = true;
        sd_notify(0, "READY=1");
        notify_status(d);
        lmp_log(LMP_PRI_NOTICE, "ready", NULL, 0, "every model's workers are ready; serving on %s%s%s", d->frontend,
                d->front_tcp ? " and " : "", d->front_tcp ? d->cfg->tcp : "");
}

/* ------------------------------------------------------------- loading */

static void mem_fields(struct lmp_mem_usage *self, uint64_t *avail, uint64_t *limit, uint64_t *usage) {
        memset(self, 0, sizeof(*self));
        lmp_proc_mem(0, self);
        *avail = 0;
        lmp_mem_available(avail);
        *limit = LMP_MEM_UNLIMITED;
        *usage = 0;
        lmp_cgroup_memory(limit, usage);
}

/* Reads what the fit check needs from the file's metadata. */
static int estimate(struct lmp_model_rt *m, const struct lmp_gguf *g, struct lmp_error *err) {
        struct lmp_gguf_str arch;
        char key[96];
        uint32_t n_layer = 0, n_embd = 0, n_head = 0, n_kv = 0, n_ff = 0, n_ctx_train = 0;
        struct lmp_gguf_value tokens;

        if (lmp_gguf_get_str(g, "general.architecture", &arch) < 0 || arch.len >= sizeof(m->arch))
                return lmp_error_set(err, -EINVAL, "no general.architecture");
        snprintf(m->arch, sizeof(m->arch), "%.*s", (int)arch.len, arch.ptr);
#define GET(var, suffix)                                                                     \
        snprintf(key, sizeof(key), "%s." suffix, m->arch);                                  \
        if (lmp_gguf_get_u32(g, key, &var) < 0)                                             \
                return lmp_error_set(err, -EINVAL, "missing or invalid %s", key);
        GET(n_layer, "block_count");
        GET(n_embd, "embedding_length");
        GET(n_head, "attention.head_count");
        GET(n_ff, "feed_forward_length");
        GET(n_ctx_train, "context_length");
#undef GET
        snprintf(key, sizeof(key), "%s.attention.head_count_kv", m->arch);
        if (lmp_gguf_get_u32(g, key, &n_kv) < 0)
                n_kv = n_head;
        if (lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &tokens) < 0)
                return lmp_error_set(err, -EINVAL, "no tokenizer.ggml.tokens");
        if (n_head == 0)
                return lmp_error_set(err, -EINVAL, "head_count is 0");
        uint64_t head_dim = n_embd / n_head, slots = (uint64_t)m->cfg->slots, batch = (uint64_t)m->cfg->batch;
        m->n_ctx = m->cfg->ctx ? (uint32_t)m->cfg->ctx : n_ctx_train;
        /* f32 K and V for every layer, position and slot */
        m->kv_bytes = 2ull * n_layer * m->n_ctx * slots * n_kv * head_dim * sizeof(float);
        /* activations for one batch, attention scores, logits, staging */
        m->scratch_bytes = (batch * (6ull * n_embd + 3ull * n_ff) + batch * (uint64_t)m->n_ctx * n_head / 8 +
                            slots * tokens.n * 2) * sizeof(float) + RUNTIME_OVERHEAD;
        return 0;
}

static void refuse(struct lmp_model_rt *m, const char *fmt, ...) LMP_PRINTF(2, 3);
static void refuse(struct lmp_model_rt *m, const char *fmt, ...) {
        char msg[900];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FSTR("LMPOOL_PATH", m->cfg->path),
        };
        lmp_log_event(LMP_PRI_ERR, "model_refused", f, "model %s refused: %s", m->cfg->name, msg);
        m->loaded = false;
}

static void load_model(struct lmp_model_rt *m) {
        struct lmp_error err = { 0 };
        struct lmp_mem_usage before, after;
        uint64_t avail0, limit0, usage0, avail1, limit1, usage1, file_size;
        struct lmp_gguf *g = NULL;
        char b1[32], b2[32], b3[32], b4[32], b5[32];
        double t0 = lmp_now_ms();

        mem_fields(&before, &avail0, &limit0, &usage0);
        if (lmp_gguf_open(m->cfg->path, &g, &err) < 0) {
                refuse(m, "%s", err.msg);
                return;
        }
        file_size = g->size;
        if (estimate(m, g, &err) < 0) {
                lmp_gguf_free(g);
                refuse(m, "%s: %s", m->cfg->path, err.msg);
                return;
        }
        lmp_gguf_free(g);

        /* The fit check: one copy of the weights plus every worker's own KV
         * cache and scratch, against what the cgroup still allows, else
         * what the machine has available. */
        uint64_t per_worker = m->kv_bytes + m->scratch_bytes;
        uint64_t need = (m->cfg->store == LMP_STORE_MEMFD ? file_size : 0) + (uint64_t)m->cfg->workers * per_worker;
        uint64_t room = avail0;
        if (limit0 != LMP_MEM_UNLIMITED)
                room = LMP_MIN(room, limit0 > usage0 ? limit0 - usage0 : 0);
        if (need > room) {
                char b6[32], b7[32], b8[32];
                refuse(m, "needs %s (weights %s + %d workers × (KV cache %s + scratch %s)) but only %s is free "
                       "(cgroup limit %s, cgroup usage %s, MemAvailable %s)",
                       lmp_fmt_bytes(need, b1), lmp_fmt_bytes(file_size, b2), m->cfg->workers,
                       lmp_fmt_bytes(m->kv_bytes, b3), lmp_fmt_bytes(m->scratch_bytes, b4), lmp_fmt_bytes(room, b5),
                       lmp_fmt_bytes(limit0, b6), lmp_fmt_bytes(usage0, b7), lmp_fmt_bytes(avail0, b8));
                return;
        }
        enum lmp_store_mode mode = m->cfg->store == LMP_STORE_MMAP ? LMP_STORE_MODE_MMAP : LMP_STORE_MODE_MEMFD;
        enum lmp_store_numa numa = m->cfg->numa == LMP_NUMA_INTERLEAVE ? LMP_STORE_NUMA_INTERLEAVE :
                                   m->cfg->numa == LMP_NUMA_LOCAL ? LMP_STORE_NUMA_LOCAL : LMP_STORE_NUMA_OFF;
        if (lmp_store_create(m->cfg->name, m->cfg->path, mode, numa, &m->store, &err) < 0) {
                refuse(m, "%s", err.msg);
                return;
        }
        /* Give back what loading used before the next model loads. */
        malloc_trim(0);
        mem_fields(&after, &avail1, &limit1, &usage1);
        m->loaded = true;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FSTR("LMPOOL_PATH", m->cfg->path),
                LMP_FSTR("LMPOOL_STORE", lmp_store_mode_name(m->store->mode)),
                LMP_FU64("FILE_BYTES", file_size),
                LMP_FU64("STORE_BYTES", m->store->size),
                LMP_FU64("KV_BYTES_PER_WORKER", m->kv_bytes),
                LMP_FU64("SCRATCH_BYTES_PER_WORKER", m->scratch_bytes),
                LMP_FU64("RSS_BYTES_BEFORE", before.rss),
                LMP_FU64("RSS_BYTES", after.rss),
                LMP_FU64("PSS_BYTES_BEFORE", before.pss),
                LMP_FU64("PSS_BYTES", after.pss),
                LMP_FU64("MEM_AVAILABLE_BEFORE", avail0),
                LMP_FU64("MEM_AVAILABLE", avail1),
                LMP_FU64("CGROUP_USAGE_BEFORE", usage0),
                LMP_FU64("CGROUP_USAGE", usage1),
                LMP_FU64("CGROUP_LIMIT", limit1),
                LMP_FF64("LOAD_MS", lmp_now_ms() - t0),
        };
        lmp_log_event(LMP_PRI_INFO, "model_loaded", f,
                      "model %s loaded: %s (%s store) in %.0f ms; supervisor RSS %s -> %s, MemAvailable %s -> %s",
                      m->cfg->name, lmp_fmt_bytes(m->store->size, b1), lmp_store_mode_name(m->store->mode),
                      lmp_now_ms() - t0, lmp_fmt_bytes(before.rss, b2), lmp_fmt_bytes(after.rss, b3),
                      lmp_fmt_bytes(avail0, b4), lmp_fmt_bytes(avail1, b5));
}

/* ------------------------------------------------------------- workers */

static int spawn_worker(struct lmp_daemon *d, struct lmp_worker_rt *w) {
        struct lmp_model_rt *m = &d->models[w->model];
        char fd_s[16], threads[16], slots[16], ctx[16], batch[16], maxp[16], hb[16], live[16], lastn[16];
        pid_t pid;

        snprintf(fd_s, sizeof(fd_s), "%d", m->store->fd);
        snprintf(threads, sizeof(threads), "%d", m->cfg->threads);
        snprintf(slots, sizeof(slots), "%d", m->cfg->slots);
        snprintf(ctx, sizeof(ctx), "%u", m->n_ctx);
        snprintf(batch, sizeof(batch), "%d", m->cfg->batch);
        snprintf(maxp, sizeof(maxp), "%d", d->cfg->max_prompt_tokens);
        snprintf(hb, sizeof(hb), "%d", d->cfg->heartbeat_ms);
        snprintf(live, sizeof(live), "%d", d->cfg->heartbeat_liveness);
        snprintf(lastn, sizeof(lastn), "%d", m->cfg->defaults.repeat_last_n);
        char *argv[] = {
                d->exe, "--worker", "--name", w->name, "--store-fd", fd_s, "--backend", d->backend,
                "--threads", threads, "--slots", slots, "--ctx", ctx, "--batch", batch,
                "--max-prompt-tokens", maxp, "--heartbeat-ms", hb, "--liveness", live, "--repeat-last-n", lastn,
                m->cfg->chat_template[0] ? "--chat-template" : NULL, (char *)m->cfg->chat_template, NULL,
        };

        if (m->cfg->memory_max && !w->cgroup_procs[0]) {
                struct lmp_error err = { 0 };
                if (lmp_cgroups_prepare(&d->cgroups, &err) < 0 ||
                    lmp_cgroups_worker(&d->cgroups, w->name, m->cfg->memory_max, w->cgroup_procs,
                                       sizeof(w->cgroup_procs), &err) < 0) {
                        w->cgroup_procs[0] = '\0';
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: memory_max %" PRIu64 " not applied: %s", w->name,
                                    m->cfg->memory_max, err.msg);
                }
        }
        pid = fork();
        if (pid < 0) {
                lmp_log_msg(LMP_PRI_ERR, "fork for worker %s: %s", w->name, strerror(errno));
                return -errno;
        }
        if (pid == 0) {
                sigset_t all;
                sigfillset(&all);
                sigprocmask(SIG_UNBLOCK, &all, NULL);
                if (w->cgroup_procs[0] && lmp_cgroups_enter(w->cgroup_procs) < 0)
                        _exit(126);
                /* The store's descriptor is the one thing the worker inherits. */
                int flags = fcntl(m->store->fd, F_GETFD);
                if (flags >= 0)
                        fcntl(m->store->fd, F_SETFD, flags & ~FD_CLOEXEC);
                execv(d->exe, argv);
                _exit(127);
        }
        w->pid = pid;
        w->state = LMP_WORKER_STARTING;
        w->spawned_ms = lmp_now_ms();
        w->last_seen_ms = w->spawned_ms;
        w->slots = 0;
        return 0;
}

static void reap(struct lmp_daemon *d) {
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                struct lmp_worker_rt *w = NULL;
                for (size_t i = 0; i < d->n_models && !w; i++)
                        for (int j = 0; j < d->models[i].n_workers; j++)
                                if (d->models[i].workers[j].pid == pid)
                                        w = &d->models[i].workers[j];
                if (!w)
                        continue;
                double now = lmp_now_ms();
                char how[64];
                if (WIFSIGNALED(status))
                        snprintf(how, sizeof(how), "killed by signal %d (%s)", WTERMSIG(status),
                                 strsignal(WTERMSIG(status)));
                else
                        snprintf(how, sizeof(how), "exited with code %d", WEXITSTATUS(status));
                bool expected = w->state == LMP_WORKER_STOPPING || d->stopping;
                struct lmp_log_field f[] = {
                        LMP_FSTR("LMPOOL_MODEL", d->models[w->model].cfg->name),
                        LMP_FSTR("LMPOOL_WORKER", w->name),
                        LMP_FI64("LMPOOL_PID", pid),
                        LMP_FI64("EXIT_CODE", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
                        LMP_FI64("EXIT_SIGNAL", WIFSIGNALED(status) ? WTERMSIG(status) : 0),
                        LMP_FU64("IN_FLIGHT", w->running.n),
                };
                lmp_log_event(expected ? LMP_PRI_INFO : LMP_PRI_WARNING, "worker_exited", f,
                              "worker %s (pid %d) %s with %zu requests in flight", w->name, (int)pid, how,
                              w->running.n);
                char why[256];
                snprintf(why, sizeof(why), "worker %s %s", w->name, how);
                lmp_router_worker_lost(d, w, why);
                /* A worker that served for a while starts again at once; one
                 * that keeps dying waits longer each time. */
                if (w->state == LMP_WORKER_READY && now - w->ready_ms > 10000)
                        w->backoff_ms = d->cfg->respawn_min_ms;
                w->state = LMP_WORKER_EXITED;
                w->pid = 0;
                w->respawn_at_ms = now + w->backoff_ms;
                w->backoff_ms = LMP_MIN(w->backoff_ms * 2, d->cfg->respawn_max_ms);
                if (!expected)
                        w->restarts++;
                notify_status(d);
        }
}

static void check_workers(struct lmp_daemon *d, double now) {
        double dead_after = (double)d->cfg->heartbeat_ms * d->cfg->heartbeat_liveness;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->state == LMP_WORKER_EXITED) {
                                if (!d->stopping && now >= w->respawn_at_ms)
                                        spawn_worker(d, w);
                                continue;
                        }
                        bool silent = (w->state == LMP_WORKER_READY || w->state == LMP_WORKER_STOPPING) &&
                                      now - w->last_seen_ms > dead_after;
                        bool slow = w->state == LMP_WORKER_STARTING && now - w->spawned_ms > d->cfg->ready_timeout_ms;
                        if ((silent || slow) && w->pid > 0) {
                                lmp_log_msg(LMP_PRI_WARNING, "worker %s (pid %d) %s: killing it", w->name,
                                            (int)w->pid, silent ? "missed its heartbeats" : "did not become ready");
                                kill(w->pid, SIGKILL);
                                w->last_seen_ms = now; /* one kill per interval */
                        }
                }
}

static void log_memory(struct lmp_daemon *d) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        struct lmp_mem_usage mu = { 0 }, store = { 0 };
                        if (w->pid <= 0 || lmp_proc_mem(w->pid, &mu) < 0)
                                continue;
                        lmp_proc_region_mem(w->pid, d->models[i].store->name, &store);
                        w->rss = mu.rss;
                        w->pss = mu.pss;
                        struct lmp_log_field f[] = {
                                LMP_FSTR("LMPOOL_MODEL", d->models[i].cfg->name),
                                LMP_FSTR("LMPOOL_WORKER", w->name),
                                LMP_FI64("LMPOOL_PID", w->pid),
                                LMP_FU64("RSS_BYTES", mu.rss),
                                LMP_FU64("PSS_BYTES", mu.pss),
                                LMP_FU64("PRIVATE_BYTES", mu.private_),
                                LMP_FU64("STORE_RSS_BYTES", store.rss),
                                LMP_FU64("STORE_PRIVATE_BYTES", store.private_),
                                LMP_FU64("ACTIVE", w->running.n),
                        };
                        char b1[32], b2[32];
                        lmp_log_event(LMP_PRI_INFO, "memory", f, "worker %s: RSS %s, PSS %s", w->name,
                                      lmp_fmt_bytes(mu.rss, b1), lmp_fmt_bytes(mu.pss, b2));
                }
}

/* ---------------------------------------------------------------- loop */

static void begin_stop(struct lmp_daemon *d, const char *why) {
        if (d->stopping)
                return;
        d->stopping = true;
        d->stop_deadline_ms = lmp_now_ms() + d->cfg->drain_timeout_ms;
        sd_notify(0, "STOPPING=1");
        lmp_log(LMP_PRI_NOTICE, "stopping", NULL, 0, "%s: draining %zu requests (at most %d ms)", why,
                lmp_router_running(d), d->cfg->drain_timeout_ms);
        lmp_router_fail_queued(d, LMP_PROTO_BUSY, "the daemon is shutting down");
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->state == LMP_WORKER_READY || w->state == LMP_WORKER_STARTING) {
                                w->state = LMP_WORKER_STOPPING;
                                lmp_router_send_stop(d, w);
                        }
                }
}

static bool all_exited(struct lmp_daemon *d) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++)
                        if (d->models[i].workers[j].pid > 0)
                                return false;
        return true;
}

static void handle_signals(struct lmp_daemon *d) {
        struct signalfd_siginfo si;
        while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGCHLD:
                        reap(d);
                        break;
                case SIGTERM:
                case SIGINT:
                        begin_stop(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                        break;
                case SIGHUP:
                        lmp_supervisor_reload(d);
                        break;
                default:
                        break;
                }
        }
}

static double earliest_deadline(struct lmp_daemon *d) {
        double t = 1e300;
        for (size_t i = 0; i < d->n_models; i++) {
                for (struct lmp_request_rt *r = d->models[i].queue.head; r; r = r->next)
                        t = LMP_MIN(t, r->deadline_ms);
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        for (struct lmp_request_rt *r = w->running.head; r; r = r->next)
                                if (r->id[0])
                                        t = LMP_MIN(t, r->deadline_ms);
                        if (w->state == LMP_WORKER_EXITED)
                                t = LMP_MIN(t, w->respawn_at_ms);
                }
        }
        return t;
}

int lmp_supervisor_run(struct lmp_daemon *d) {
        int loaded = 0;

        for (size_t i = 0; i < d->n_models; i++) {
                load_model(&d->models[i]);
                loaded += d->models[i].loaded;
        }
        if (loaded == 0) {
                lmp_log_msg(LMP_PRI_ERR, "no model could be loaded: nothing to serve");
                return -ENOENT;
        }
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                if (!m->loaded) {
                        m->n_workers = 0;
                        continue;
                }
                for (int j = 0; j < m->n_workers; j++)
                        spawn_worker(d, &m->workers[j]);
        }
        sd_watchdog_enabled(0, &d->watchdog_usec);
        double now = lmp_now_ms();
        d->next_hb_ms = now + d->cfg->heartbeat_ms;
        d->next_mem_ms = now + d->cfg->memory_interval_s * 1000.0;
        d->next_watchdog_ms = now;
        d->next_status_ms = now + 5000;

        for (;;) {
                zmq_pollitem_t items[7] = {
                        { .socket = d->back, .events = ZMQ_POLLIN },
                        { .socket = NULL, .fd = d->sigfd, .events = ZMQ_POLLIN },
                        { .socket = d->monitor[0], .events = ZMQ_POLLIN },
                        { .socket = d->monitor[1], .events = ZMQ_POLLIN },
                        { .socket = d->front, .events = ZMQ_POLLIN },
                        { .socket = d->zap, .events = ZMQ_POLLIN },
                        { .socket = d->front_tcp, .events = ZMQ_POLLIN },
                };
                int n_items = d->front_tcp ? 7 : 6;
                if (!d->monitor[1])
                        items[3] = (zmq_pollitem_t){ .socket = NULL, .fd = -1 };
                now = lmp_now_ms();
                double next = LMP_MIN(d->next_hb_ms, earliest_deadline(d));
                next = LMP_MIN(next, lmp_router_tick(d, now));
                if (d->watchdog_usec)
                        next = LMP_MIN(next, d->next_watchdog_ms);
                if (d->stopping)
                        next = LMP_MIN(next, d->stop_deadline_ms);
                long timeout = next <= now ? 0 : (long)LMP_MIN(next - now + 1, 1000.0);

                if (zmq_poll(items, n_items, timeout) < 0 && errno != EINTR) {
                        lmp_log_msg(LMP_PRI_ERR, "poll: %s", zmq_strerror(errno));
                        return -errno;
                }
                if (items[1].revents & ZMQ_POLLIN)
                        handle_signals(d);
                if (items[0].revents & ZMQ_POLLIN)
                        lmp_router_on_worker(d);
                if (items[2].revents & ZMQ_POLLIN)
                        lmp_router_on_monitor(d, 0);
                if (items[3].revents & ZMQ_POLLIN)
                        lmp_router_on_monitor(d, 1);
                if (items[4].revents & ZMQ_POLLIN)
                        lmp_router_on_client(d, d->front);
                if (items[5].revents & ZMQ_POLLIN)
                        lmp_zap_on_request(d);
                if (n_items == 7 && (items[6].revents & ZMQ_POLLIN))
                        lmp_router_on_client(d, d->front_tcp);

                now = lmp_now_ms();
                lmp_router_expire(d, now);
                if (now >= d->next_hb_ms) {
                        lmp_router_heartbeat(d);
                        check_workers(d, now);
                        d->next_hb_ms = now + d->cfg->heartbeat_ms;
                }
                if (!d->stopping)
                        check_workers(d, now);
                if (d->watchdog_usec && now >= d->next_watchdog_ms) {
                        sd_notify(0, "WATCHDOG=1");
                        d->next_watchdog_ms = now + d->watchdog_usec / 2000.0;
                }
                if (now >= d->next_status_ms) {
                        notify_status(d);
                        d->next_status_ms = now + 5000;
                }
                if (d->cfg->memory_interval_s > 0 && now >= d->next_mem_ms) {
                        log_memory(d);
                        d->next_mem_ms = now + d->cfg->memory_interval_s * 1000.0;
                }
                if (d->stopping) {
                        if (all_exited(d))
                                break;
                        if (now >= d->stop_deadline_ms) {
                                for (size_t i = 0; i < d->n_models; i++)
                                        for (int j = 0; j < d->models[i].n_workers; j++)
                                                if (d->models[i].workers[j].pid > 0)
                                                        kill(d->models[i].workers[j].pid, SIGKILL);
                                d->stop_deadline_ms = now + 1000;
                        }
                }
        }
        lmp_log(LMP_PRI_NOTICE, "stopped", NULL, 0, "stopped after serving %" PRIu64 " requests", d->stats.ok);
        return 0;
}

/* SIGHUP: re-reads the configuration. Limits, timeouts and logging apply at
 * once; model changes (paths, worker counts) need a restart, which is said
 * in the log. */
void lmp_supervisor_reload(struct lmp_daemon *d) {
        struct lmp_diag diag = { 0 };
        struct lmp_config *c = NULL;

        if (lmp_config_load(d->config_path, NULL, &c, &diag) < 0) {
                char line[1200];
                for (size_t i = 0; i < diag.n; i++) {
                        lmp_diag_format(&diag.entries[i], line, sizeof(line));
                        lmp_log_msg(LMP_PRI_ERR, "reload: %s", line);
                }
                lmp_diag_clear(&diag);
                lmp_log_msg(LMP_PRI_ERR, "reload of %s failed: keeping the running configuration", d->config_path);
                return;
        }
        lmp_diag_clear(&diag);
        bool models_same = c->n_models == d->cfg->n_models;
        for (size_t i = 0; models_same && i < c->n_models; i++)
                models_same = strcmp(c->models[i].name, d->cfg->models[i].name) == 0 &&
                              strcmp(c->models[i].path, d->cfg->models[i].path) == 0 &&
                              c->models[i].workers == d->cfg->models[i].workers &&
                              c->models[i].slots == d->cfg->models[i].slots &&
                              c->models[i].ctx == d->cfg->models[i].ctx;
        d->cfg->queue_length = c->queue_length;
        d->cfg->client_requests = c->client_requests;
        d->cfg->request_timeout_ms = c->request_timeout_ms;
        d->cfg->max_prompt_tokens = c->max_prompt_tokens;
        d->cfg->max_tokens = c->max_tokens;
        d->cfg->drain_timeout_ms = c->drain_timeout_ms;
        d->cfg->memory_interval_s = c->memory_interval_s;
        d->cfg->log_requests = c->log_requests;
        for (size_t i = 0; models_same && i < c->n_models; i++)
                ((struct lmp_model_config *)d->models[i].cfg)->defaults = c->models[i].defaults;
        lmp_config_free(c);
        lmp_log(LMP_PRI_NOTICE, "reloaded", NULL, 0, "configuration reloaded from %s%s", d->config_path,
                models_same ? "" : "; model changes (names, paths, workers, slots, ctx) take effect at the next restart");
}

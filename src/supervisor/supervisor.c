/* The supervisor: loads each model's weight store, one model after
 * another; keeps the process table of workers (spawn by fork+exec of
 * `lmpoold --worker` with the store's descriptor inherited, reap, respawn
 * with a doubling back-off); and runs the one poll loop that serves the
 * router's sockets, signals (signalfd) and timers. It tells systemd how it
 * is doing: READY=1 once every model is ready or failed, STATUS= lines,
 * WATCHDOG=1 while the loop turns, STOPPING=1 on the way out.
 *
 * Models that cannot serve are failed fast: a worker that cannot load its
 * model exits with LMP_WORKER_EXIT_LOAD and says why on its report pipe;
 * after workers.load_attempts of those in a row the model is `failed`: not
 * respawned, its queued requests answered `model_failed` at once, named by
 * `health`. With `store: mmap` the file is watched (inotify on its
 * directory, and an fstat/stat on every heartbeat tick, before every spawn
 * and when a worker dies of SIGBUS): a file rewritten in place or truncated
 * stops the model's workers at once (their requests end with `worker_lost`),
 * a file replaced or removed lets them finish their requests first; then
 * the file is loaded again once it has not changed for SETTLE_MS, and the
 * model serves the new weights, or is failed with the reason, and is tried
 * again at the file's next change. */
#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "gguf/gguf.h"
#include "common/clock.h"
#include "model/arch.h"
#include "model/vision.h"
#include "quant/quant.h"
#include "supervisor/daemon.h"
#include "worker/worker.h"

#define RUNTIME_OVERHEAD (48ull << 20) /* per worker: heap, stacks, zmq, tokenizer */
#define SETTLE_MS 1000                  /* a changed model file is loaded again once quiet this long */

static void check_files(struct lmp_daemon *d, double now);

/* The router's view of a model follows its state here. */
static void publish_model(struct lmp_model_rt *m) {
        struct lmp_router_model *rm = m->rm;
        rm->loaded = m->loaded;
        rm->failed = m->state == LMP_MODEL_FAILED;
        snprintf(rm->why, sizeof(rm->why), "%s", m->failed);
        snprintf(rm->arch, sizeof(rm->arch), "%s", m->arch);
        rm->kind = m->kind;
        rm->n_ctx = m->n_ctx;
        rm->store_bytes = (m->store ? m->store->size : 0) + (m->mmproj_store ? m->mmproj_store->size : 0);
        rm->n_workers = m->n_workers;
}

static void set_model_state(struct lmp_model_rt *m, enum lmp_model_state state) {
        m->state = state;
        publish_model(m);
}

static void notify_status(struct lmp_daemon *d) {
        int ready = 0, total = 0;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        total++;
                        ready += d->models[i].workers[j].rw->state == LMP_WORKER_READY;
                }
        sd_notifyf(0, "STATUS=%d/%d workers ready, %zu running, %zu queued, %" PRIu64 " served, %" PRIu64
                   " events dropped for slow clients", ready, total, lmp_router_running(&d->router), d->router.queued,
                   d->router.stats.ok, d->router.stats.events_dropped);
}

/* READY=1 once every model that was loaded is ready (all its workers) or
 * failed. */
static void maybe_ready(struct lmp_daemon *d) {
        size_t failed = 0;
        if (d->ready_notified)
                return;
        for (size_t i = 0; i < d->n_models; i++) {
                const struct lmp_model_rt *m = &d->models[i];
                if (m->loaded && m->state == LMP_MODEL_FAILED) {
                        failed++;
                        continue;
                }
                for (int j = 0; j < m->n_workers; j++)
                        if (m->workers[j].rw->state != LMP_WORKER_READY)
                                return;
        }
        d->ready_notified = d->router.ready = true;
        sd_notify(0, "READY=1");
        notify_status(d);
        if (failed)
                lmp_log(LMP_PRI_NOTICE, "ready", NULL, 0, "every model is ready or failed (%zu failed); serving on %s%s%s",
                        failed, d->router.frontend, d->router.front_tcp ? " and " : "",
                        d->router.front_tcp ? d->cfg->tcp : "");
        else
                lmp_log(LMP_PRI_NOTICE, "ready", NULL, 0, "every model's workers are ready; serving on %s%s%s",
                        d->router.frontend, d->router.front_tcp ? " and " : "", d->router.front_tcp ? d->cfg->tcp : "");
}

/* The router has taken a worker's `ready` (it was starting): it is ready. */
void lmp_supervisor_worker_ready(struct lmp_router *rt, struct lmp_router_worker *rw, void *userdata) {
        struct lmp_daemon *d = userdata;
        struct lmp_worker_rt *w = &d->models[rw->model].workers[rw->index];
        (void)rt;
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", d->models[w->rw->model].cfg->name),
                LMP_FSTR("LMPOOL_WORKER", w->rw->name),
                LMP_FI64("LMPOOL_PID", w->rw->pid),
                LMP_FU64("SLOTS", w->rw->slots),
                LMP_FF64("START_MS", w->rw->ready_ms - w->spawned_ms),
        };
        lmp_log_event(LMP_PRI_INFO, "worker_started", f, "worker %s (pid %d) ready in %.0f ms, %u slots", w->rw->name,
                      (int)w->rw->pid, w->rw->ready_ms - w->spawned_ms, w->rw->slots);
        d->models[w->rw->model].faults = 0;
        /* A reload may have come while it was starting. */
        lmp_router_send_config(&d->router, w->rw);
        maybe_ready(d);
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
        m->n_embd = n_embd;
        uint64_t head_dim = n_embd / n_head, slots = (uint64_t)m->cfg->slots, batch = (uint64_t)m->cfg->batch;
        m->n_ctx = m->cfg->ctx ? (uint32_t)m->cfg->ctx : n_ctx_train;
        /* f32 K and V for every layer, position and slot */
        m->kv_bytes = 2ull * n_layer * m->n_ctx * slots * n_kv * head_dim * sizeof(float);
        /* An encoder (BERT) keeps no KV cache, and embeds rather than
         * generates: with a pooling_type other than none. */
        const struct lmp_arch *a = lmp_arch_find(m->arch);
        m->kind = LMP_MODEL_GENERATIVE;
        if (a && a->encoder) {
                uint32_t pooling = 0;
                snprintf(key, sizeof(key), "%s.pooling_type", m->arch);
                (void)lmp_gguf_get_u32(g, key, &pooling);
                m->kind = pooling != 0 ? LMP_MODEL_EMBEDDING : LMP_MODEL_NO_POOLING;
                m->kv_bytes = 0;
                if (m->n_ctx > n_ctx_train)
                        m->n_ctx = n_ctx_train;
        }
        /* activations for one batch, attention scores, logits, staging */
        m->scratch_bytes = (batch * (6ull * n_embd + 3ull * n_ff) + batch * (uint64_t)m->n_ctx * n_head / 8 +
                            slots * tokens.n * 2) * sizeof(float) + RUNTIME_OVERHEAD;
        return 0;
}

/* Why a model cannot be loaded, into m->failed; returns -EINVAL. */
static int refuse(struct lmp_model_rt *m, const char *fmt, ...) LMP_PRINTF(2, 3);
static int refuse(struct lmp_model_rt *m, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->failed, sizeof(m->failed), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void file_id(const char *path, struct lmp_file_id *id) {
        struct stat st;
        memset(id, 0, sizeof(*id));
        if (stat(path, &st) < 0)
                return;
        *id = (struct lmp_file_id){ .exists = true, .dev = (uint64_t)st.st_dev, .ino = (uint64_t)st.st_ino,
                                    .size = (uint64_t)st.st_size,
                                    .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec };
}

static bool file_id_eq(const struct lmp_file_id *a, const struct lmp_file_id *b) {
        return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
               a->mtime_ns == b->mtime_ns;
}

/* store: mmap: watch the file's directory (the file itself may be replaced
 * by a rename). Without inotify the heartbeat tick's checks still notice,
 * a little later. */
static void watch_file(struct lmp_daemon *d, const char *path) {
        char dir[LMP_CONFIG_PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash)
                snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
                dir[1] = '\0';
        else
                *slash = '\0';
        if (d->inotify_fd < 0)
                d->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (d->inotify_fd < 0 ||
            inotify_add_watch(d->inotify_fd, dir, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                                                  IN_CREATE | IN_DELETE) < 0)
                lmp_log_msg(LMP_PRI_WARNING, "cannot watch %s for changes (%s): changes to %s are noticed at the "
                            "next heartbeat tick only", dir, strerror(errno), path);
}

/* The model file's header is read through a mapping of the file: a file
 * truncated during that read (a store: mmap file may change at any time)
 * would kill the supervisor, and every worker with it, with SIGBUS. While
 * the header is read a SIGBUS jumps back to read_header() instead. A signal
 * handler gets no argument of ours, hence this one pointer, set only around
 * that read. */
static sigjmp_buf *header_jump;

static void on_sigbus(int sig) {
        if (header_jump)
                siglongjmp(*header_jump, 1);
        signal(sig, SIG_DFL);
        raise(sig);
}

/* The model's vision encoder (cfg->mmproj): loaded once here, as a worker
 * will load it, so that a file that is not one, or one for another model,
 * is refused with the model rather than by every worker. Its size goes in
 * m->mmproj_bytes. Read with plain I/O (lmp_gguf_open copies nothing but
 * the header's tables); the store is built from the file afterwards. */
static int read_mmproj(struct lmp_model_rt *m) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_vision *v = NULL;
        const struct lmp_arch *a = lmp_arch_find(m->arch);
        int r;

        if (!a || !a->mrope)
                return refuse(m, "mmproj %s: architecture %s takes no image input (a vision language model such "
                              "as qwen2vl does)", m->cfg->mmproj, m->arch);
        if ((r = lmp_gguf_open(m->cfg->mmproj, &g, &err)) < 0)
                return refuse(m, "mmproj %s: %s", m->cfg->mmproj, err.msg);
        r = lmp_vision_load(g, LMP_ISA_SCALAR, &v, &err);
        if (r == 0 && v->hp.proj_dim != m->n_embd)
                r = lmp_error_set(&err, -EINVAL, "projects to %u values, the model's width is %u", v->hp.proj_dim,
                                  m->n_embd);
        m->mmproj_bytes = g->size;
        lmp_vision_free(v);
        lmp_gguf_free(g);
        if (r < 0)
                return refuse(m, "mmproj %s: %s", m->cfg->mmproj, err.msg);
        return 0;
}

/* Opens the model's file and reads what the fit check needs. Returns 0 and
 * the file's size, or -EINVAL with the reason in m->failed. */
static int read_header(struct lmp_model_rt *m, uint64_t *ret_size) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct sigaction sa = { .sa_handler = on_sigbus }, old;
        sigjmp_buf jump;
        int r;

        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &old);
        if (sigsetjmp(jump, 1)) {
                /* What the reader had built is lost: a small leak, once per
                 * such (rare) event. */
                header_jump = NULL;
                sigaction(SIGBUS, &old, NULL);
                return refuse(m, "%s: the file was truncated while its header was read", m->cfg->path);
        }
        header_jump = &jump;
        r = lmp_gguf_open(m->cfg->path, &g, &err);
        bool opened = r == 0;
        if (opened) {
                *ret_size = g->size;
                r = estimate(m, g, &err);
                lmp_gguf_free(g);
        }
        header_jump = NULL;
        sigaction(SIGBUS, &old, NULL);
        if (r < 0)
                return opened ? refuse(m, "%s: %s", m->cfg->path, err.msg) : refuse(m, "%s", err.msg);
        return m->cfg->mmproj[0] ? read_mmproj(m) : 0;
}

/* Loads a model's weight store, after the fit check. Returns 0, or -EINVAL
 * with the reason in m->failed. */
static int load_model(struct lmp_daemon *d, struct lmp_model_rt *m) {
        struct lmp_error err = { 0 };
        struct lmp_mem_usage before, after;
        uint64_t avail0, limit0, usage0, avail1, limit1, usage1, file_size;
        char b1[32], b2[32], b3[32], b4[32], b5[32], bm[32];
        double t0 = lmp_clock_ms();

        mem_fields(&before, &avail0, &limit0, &usage0);
        if (read_header(m, &file_size) < 0)
                return -EINVAL;

        /* The fit check: one copy of the weights plus every worker's own KV
         * cache and scratch, against what the cgroup still allows, else
         * what the machine has available. */
        uint64_t per_worker = m->kv_bytes + m->scratch_bytes;
        uint64_t need = (m->cfg->store == LMP_STORE_MEMFD ? file_size : 0) + m->mmproj_bytes +
                        (uint64_t)m->cfg->workers * per_worker;
        uint64_t room = avail0;
        if (limit0 != LMP_MEM_UNLIMITED)
                room = LMP_MIN(room, limit0 > usage0 ? limit0 - usage0 : 0);
        if (need > room) {
                char b6[32], b7[32], b8[32];
                char b9[32];
                return refuse(m, "needs %s (weights %s + mmproj %s + %d workers × (KV cache %s + scratch %s)) but only "
                       "%s is free (cgroup limit %s, cgroup usage %s, MemAvailable %s)",
                       lmp_fmt_bytes(need, b1), lmp_fmt_bytes(file_size, b2), lmp_fmt_bytes(m->mmproj_bytes, b9),
                       m->cfg->workers,
                       lmp_fmt_bytes(m->kv_bytes, b3), lmp_fmt_bytes(m->scratch_bytes, b4), lmp_fmt_bytes(room, b5),
                       lmp_fmt_bytes(limit0, b6), lmp_fmt_bytes(usage0, b7), lmp_fmt_bytes(avail0, b8));
        }
        enum lmp_store_mode mode = m->cfg->store == LMP_STORE_MMAP ? LMP_STORE_MODE_MMAP : LMP_STORE_MODE_MEMFD;
        enum lmp_store_numa numa = m->cfg->numa == LMP_NUMA_INTERLEAVE ? LMP_STORE_NUMA_INTERLEAVE :
                                   m->cfg->numa == LMP_NUMA_LOCAL ? LMP_STORE_NUMA_LOCAL : LMP_STORE_NUMA_OFF;
        /* The repacked q4_K layout pays where its kernel is AVX-512's; at a
         * lower level (LMPOOL_ISA lowers it too) the file's layout is faster. */
        const bool repack = lmp_cpu_isa() >= LMP_ISA_AVX512;
        if (lmp_store_create(m->cfg->name, m->cfg->path, mode, numa, repack, &m->store, &err) < 0)
                return refuse(m, "%s", err.msg);
        /* The vision encoder's store is always a sealed memfd, whatever the
         * model's: it is small beside the model, and a file shared with
         * mmap could change under the workers unwatched. */
        if (m->cfg->mmproj[0]) {
                char name[LMP_CONFIG_NAME_MAX + 16];
                snprintf(name, sizeof(name), "%s.mmproj", m->cfg->name);
                if (lmp_store_create(name, m->cfg->mmproj, LMP_STORE_MODE_MEMFD, numa, false, &m->mmproj_store,
                                     &err) < 0) {
                        lmp_store_free(m->store);
                        m->store = NULL;
                        return refuse(m, "mmproj %s: %s", m->cfg->mmproj, err.msg);
                }
        }
        if (mode == LMP_STORE_MODE_MMAP) {
                file_id(m->cfg->path, &m->seen);
                watch_file(d, m->cfg->path);
        }
        m->failed[0] = '\0';
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
                LMP_FU64("REPACKED_MATRICES", m->store->n_repacked),
                LMP_FU64("REPACKED_BYTES", m->store->repacked_bytes),
                LMP_FF64("REPACK_MS", m->store->repack_ms),
                LMP_FSTR("LMPOOL_MMPROJ", m->cfg->mmproj),
                LMP_FU64("MMPROJ_STORE_BYTES", m->mmproj_store ? m->mmproj_store->size : 0),
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
                LMP_FF64("LOAD_MS", lmp_clock_ms() - t0),
        };
        lmp_log_event(LMP_PRI_INFO, "model_loaded", f,
                      "model %s loaded: %s (%s store, %u q4_K matrices repacked in %.0f ms)%s%s in %.0f ms; "
                      "supervisor RSS %s -> %s, MemAvailable %s -> %s",
                      m->cfg->name, lmp_fmt_bytes(m->store->size, b1), lmp_store_mode_name(m->store->mode),
                      m->store->n_repacked, m->store->repack_ms,
                      m->mmproj_store ? " + mmproj " : "",
                      m->mmproj_store ? lmp_fmt_bytes(m->mmproj_store->size, bm) : "", lmp_clock_ms() - t0, lmp_fmt_bytes(before.rss, b2), lmp_fmt_bytes(after.rss, b3),
                      lmp_fmt_bytes(avail0, b4), lmp_fmt_bytes(avail1, b5));
        return 0;
}

/* ------------------------------------------------------------- workers */

static int spawn_worker(struct lmp_daemon *d, struct lmp_worker_rt *w) {
        struct lmp_model_rt *m = &d->models[w->rw->model];
        char fd_s[16], threads[16], slots[16], ctx[16], batch[16], chunk[16], maxp[16], hb[16], live[16], lastn[16];
        char reuse[16];
        char report_s[16], level[16], sink[16];
        int report[2];
        pid_t pid;

        /* Never start a worker on a file that changed since it was loaded. */
        check_files(d, lmp_clock_ms());
        if (m->state != LMP_MODEL_SERVING)
                return -ESTALE;
        /* The worker says on this pipe why it could not load its model. */
        if (pipe2(report, O_CLOEXEC) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "pipe for worker %s: %s", w->rw->name, strerror(errno));
                return -errno;
        }
        fcntl(report[0], F_SETFL, O_NONBLOCK);
        snprintf(report_s, sizeof(report_s), "%d", report[1]);
        snprintf(level, sizeof(level), "%d", (int)lmp_log_priority_of(d->cfg->log_level));
        snprintf(sink, sizeof(sink), "%d", (int)lmp_log_sink_of(d->cfg->log_target));

        snprintf(fd_s, sizeof(fd_s), "%d", m->store->fd);
        char mmproj_fd[16];
        snprintf(mmproj_fd, sizeof(mmproj_fd), "%d", m->mmproj_store ? m->mmproj_store->fd : -1);
        snprintf(threads, sizeof(threads), "%d", m->cfg->threads);
        snprintf(slots, sizeof(slots), "%d", m->cfg->slots);
        snprintf(ctx, sizeof(ctx), "%u", m->n_ctx);
        snprintf(batch, sizeof(batch), "%d", m->cfg->batch);
        snprintf(chunk, sizeof(chunk), "%d", m->cfg->prompt_chunk);
        snprintf(maxp, sizeof(maxp), "%d", d->cfg->max_prompt_tokens);
        snprintf(hb, sizeof(hb), "%d", d->cfg->heartbeat_ms);
        snprintf(live, sizeof(live), "%d", d->cfg->heartbeat_liveness);
        snprintf(lastn, sizeof(lastn), "%d", m->cfg->defaults.repeat_last_n);
        snprintf(reuse, sizeof(reuse), "%d", m->cfg->cache_reuse);
        char *argv[] = {
                d->exe, "--worker", "--name", w->rw->name, "--store-fd", fd_s, "--backend", d->router.backend,
                "--threads", threads, "--slots", slots, "--ctx", ctx, "--batch", batch, "--prompt-chunk", chunk,
                "--max-prompt-tokens", maxp, "--heartbeat-ms", hb, "--liveness", live, "--repeat-last-n", lastn,
                "--cache-reuse", reuse,
                "--cache-reuse", reuse, "--report-fd", report_s, "--log-level", level, "--log-sink", sink,
                "--mmproj-fd", mmproj_fd,
                m->cfg->chat_template[0] ? "--chat-template" : NULL, (char *)m->cfg->chat_template, NULL,
        };

        if (m->cfg->memory_max && !w->cgroup[0]) {
                struct lmp_error err = { 0 };
                if (lmp_cgroups_prepare(&d->cgroups, &err) < 0 ||
                    lmp_cgroups_worker(&d->cgroups, w->rw->name, m->cfg->memory_max, w->cgroup, sizeof(w->cgroup),
                                       &err) < 0) {
                        w->cgroup[0] = '\0';
                        lmp_log_msg(LMP_PRI_WARNING, "worker %s: memory_max %" PRIu64 " not applied: %s", w->rw->name,
                                    m->cfg->memory_max, err.msg);
                }
        }
        pid = fork();
        if (pid < 0) {
                int e = errno;
                lmp_log_msg(LMP_PRI_ERR, "fork for worker %s: %s", w->rw->name, strerror(e));
                close(report[0]);
                close(report[1]);
                return -e;
        }
        if (pid == 0) {
                sigset_t all;
                sigfillset(&all);
                sigprocmask(SIG_UNBLOCK, &all, NULL);
                if (w->cgroup[0] && lmp_cgroups_enter(w->cgroup) < 0)
                        _exit(126);
                /* The stores' descriptors are the one thing the worker inherits. */
                int flags = fcntl(m->store->fd, F_GETFD);
                if (flags >= 0)
                        fcntl(m->store->fd, F_SETFD, flags & ~FD_CLOEXEC);
                if (m->mmproj_store && (flags = fcntl(m->mmproj_store->fd, F_GETFD)) >= 0)
                        fcntl(m->mmproj_store->fd, F_SETFD, flags & ~FD_CLOEXEC);
                fcntl(report[1], F_SETFD, 0);
                execv(d->exe, argv);
                _exit(127);
        }
        close(report[1]);
        if (w->report_fd >= 0)
                close(w->report_fd);
        w->report_fd = report[0];
        w->rw->pid = pid;
        w->rw->state = LMP_WORKER_STARTING;
        w->spawned_ms = lmp_clock_ms();
        w->rw->last_seen_ms = w->spawned_ms;
        w->rw->slots = 0;
        return 0;
}

/* ------------------------------------------------------- model states */

static size_t model_index(const struct lmp_daemon *d, const struct lmp_model_rt *m) {
        return (size_t)(m - d->models);
}

/* The model cannot serve: no respawn, its queue answered at once, health
 * names it. A store: mmap model is tried again when its file changes. */
static void model_fail(struct lmp_daemon *d, struct lmp_model_rt *m, const char *why) {
        char msg[700];
        snprintf(m->failed, sizeof(m->failed), "%s", why);
        set_model_state(m, LMP_MODEL_FAILED);
        if (m->cfg->store == LMP_STORE_MMAP)
                file_id(m->cfg->path, &m->seen);
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FSTR("LMPOOL_PATH", m->cfg->path),
                LMP_FSTR("REASON", m->failed),
        };
        lmp_log_event(LMP_PRI_ERR, "model_failed", f, "model %s failed: %s%s", m->cfg->name, m->failed,
                      m->cfg->store == LMP_STORE_MMAP ? " (tried again when its file changes)" : "");
        for (int j = 0; j < m->n_workers; j++) {
                struct lmp_worker_rt *w = &m->workers[j];
                if (w->rw->pid > 0) {
                        w->rw->state = LMP_WORKER_STOPPING;
                        kill(w->rw->pid, SIGKILL);
                }
        }
        snprintf(msg, sizeof(msg), "model '%s' cannot serve: %s", m->cfg->name, m->failed);
        lmp_router_fail_model_queue(&d->router, model_index(d, m), LMP_PROTO_MODEL_FAILED, msg);
        maybe_ready(d);
        notify_status(d);
}

/* store: mmap: the file changed under the model's workers. Rewritten in
 * place (or truncated), their weights are changing now: they are killed and
 * their requests end at once. Replaced or removed, their mapping still holds
 * the old file intact: they finish their requests and exit. */
static void model_changed(struct lmp_daemon *d, struct lmp_model_rt *m, const char *why, bool in_place,
                          double now) {
        char msg[LMP_CONFIG_PATH_MAX + 300];
        snprintf(msg, sizeof(msg), "the model file %s was %s", m->cfg->path, why);
        struct lmp_log_field f[] = {
                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                LMP_FSTR("LMPOOL_PATH", m->cfg->path),
                LMP_FSTR("REASON", why),
        };
        lmp_log_event(LMP_PRI_WARNING, "model_file_changed", f, "model %s: %s: %s its workers, loading it again",
                      m->cfg->name, msg, in_place ? "killing" : "stopping");
        set_model_state(m, LMP_MODEL_RELOADING);
        m->changed_ms = now;
        lmp_router_cache_drop_model(&d->router, (size_t)(m - d->models));
        file_id(m->cfg->path, &m->seen);
        for (int j = 0; j < m->n_workers; j++) {
                struct lmp_worker_rt *w = &m->workers[j];
                if (w->rw->pid <= 0)
                        continue;
                if (in_place || w->rw->state == LMP_WORKER_STARTING) {
                        lmp_router_worker_lost(&d->router, w->rw, msg);
                        kill(w->rw->pid, SIGKILL);
                } else if (w->rw->state != LMP_WORKER_STOPPING) {
                        lmp_router_send_stop(&d->router, w->rw);
                }
                w->rw->state = LMP_WORKER_STOPPING;
        }
        notify_status(d);
}

/* Loads a changed model file again, once its old workers are gone. */
static void model_reload(struct lmp_daemon *d, struct lmp_model_rt *m, double now) {
        lmp_store_free(m->store);
        m->store = NULL;
        lmp_store_free(m->mmproj_store);
        m->mmproj_store = NULL;
        if (load_model(d, m) < 0) {
                char why[600];
                snprintf(why, sizeof(why), "loading it again: %s", m->failed);
                model_fail(d, m, why);
                return;
        }
        set_model_state(m, LMP_MODEL_SERVING);
        m->faults = 0;
        for (int j = 0; j < m->n_workers; j++) {
                m->workers[j].respawn_at_ms = now;
                m->workers[j].backoff_ms = d->cfg->respawn_min_ms;
        }
}

/* store: mmap: has the served file changed? Rewritten in place or
 * truncated (the descriptor we share says so), or replaced or removed (the
 * path says so)? */
static bool store_changed(const struct lmp_model_rt *m, char *why, size_t size, bool *in_place) {
        struct stat st;
        *in_place = false;
        if (!m->store || m->store->mode != LMP_STORE_MODE_MMAP)
                return false;
        if (lmp_store_check(m->store, why, size) == -ESTALE) {
                *in_place = true;
                return true;
        }
        if (stat(m->cfg->path, &st) < 0) {
                snprintf(why, size, "removed (%s)", strerror(errno));
                return true;
        }
        if ((uint64_t)st.st_dev != m->store->dev || (uint64_t)st.st_ino != m->store->ino) {
                snprintf(why, size, "replaced by another file");
                return true;
        }
        return false;
}

static bool model_workers_gone(const struct lmp_model_rt *m) {
        for (int j = 0; j < m->n_workers; j++)
                if (m->workers[j].rw->pid > 0)
                        return false;
        return true;
}

/* The store: mmap files: changed ones stop their model, quiet ones are
 * loaded again, failed ones are tried again when they change. */
static void check_files(struct lmp_daemon *d, double now) {
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                struct lmp_file_id id;
                char why[256];
                bool in_place;
                if (!m->loaded || m->cfg->store != LMP_STORE_MMAP || d->stopping)
                        continue;
                switch (m->state) {
                case LMP_MODEL_SERVING:
                        if (store_changed(m, why, sizeof(why), &in_place))
                                model_changed(d, m, why, in_place, now);
                        break;
                case LMP_MODEL_RELOADING:
                        file_id(m->cfg->path, &id);
                        if (!file_id_eq(&id, &m->seen)) {
                                m->seen = id;
                                m->changed_ms = now;
                        } else if (now - m->changed_ms >= SETTLE_MS && model_workers_gone(m)) {
                                model_reload(d, m, now);
                        }
                        break;
                case LMP_MODEL_FAILED:
                        file_id(m->cfg->path, &id);
                        if (!file_id_eq(&id, &m->seen)) {
                                lmp_log_msg(LMP_PRI_NOTICE, "model %s: its file %s changed: loading it again",
                                            m->cfg->name, m->cfg->path);
                                set_model_state(m, LMP_MODEL_RELOADING);
                                m->seen = id;
                                m->changed_ms = now;
                        }
                        break;
                }
        }
}

static void handle_inotify(struct lmp_daemon *d) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        /* Which file it was does not matter: the checks look at them all. */
        while (read(d->inotify_fd, buf, sizeof(buf)) > 0)
                ;
        check_files(d, lmp_clock_ms());
}

/* What a dead worker wrote on its report pipe, one line. */
static void read_report(struct lmp_worker_rt *w, char *buf, size_t size) {
        ssize_t n = -1;
        buf[0] = '\0';
        if (w->report_fd >= 0) {
                n = read(w->report_fd, buf, size - 1);
                close(w->report_fd);
                w->report_fd = -1;
        }
        if (n <= 0)
                return;
        buf[n] = '\0';
        for (char *p = buf; *p; p++)
                if (*p == '\n' || (unsigned char)*p < 0x20)
                        *p = *p == '\n' && !p[1] ? '\0' : ' ';
}

static void reap(struct lmp_daemon *d) {
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                struct lmp_worker_rt *w = NULL;
                for (size_t i = 0; i < d->n_models && !w; i++)
                        for (int j = 0; j < d->models[i].n_workers; j++)
                                if (d->models[i].workers[j].rw->pid == pid)
                                        w = &d->models[i].workers[j];
                if (!w)
                        continue;
                struct lmp_model_rt *m = &d->models[w->rw->model];
                double now = lmp_clock_ms();
                char how[64 + LMP_WORKER_REPORT_MAX], report[LMP_WORKER_REPORT_MAX];
                bool load_failed = WIFEXITED(status) && WEXITSTATUS(status) == LMP_WORKER_EXIT_LOAD;
                bool bus = WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS;
                read_report(w, report, sizeof(report));
                if (load_failed)
                        snprintf(how, sizeof(how), "could not load its model: %s", report[0] ? report : "no reason given");
                else if (WIFSIGNALED(status))
                        snprintf(how, sizeof(how), "killed by signal %d (%s)%s%s", WTERMSIG(status),
                                 strsignal(WTERMSIG(status)), report[0] ? ": " : "", report);
                else
                        snprintf(how, sizeof(how), "exited with code %d", WEXITSTATUS(status));
                bool expected = w->rw->state == LMP_WORKER_STOPPING || d->stopping;
                bool unborn = w->rw->state == LMP_WORKER_STARTING;
                struct lmp_log_field f[] = {
                        LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                        LMP_FSTR("LMPOOL_WORKER", w->rw->name),
                        LMP_FI64("LMPOOL_PID", pid),
                        LMP_FI64("EXIT_CODE", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
                        LMP_FI64("EXIT_SIGNAL", WIFSIGNALED(status) ? WTERMSIG(status) : 0),
                        LMP_FU64("IN_FLIGHT", w->rw->running.n),
                        LMP_FSTR("REASON", report),
                };
                lmp_log_event(expected ? LMP_PRI_INFO : LMP_PRI_WARNING, "worker_exited", f,
                              "worker %s (pid %d) %s with %zu requests in flight", w->rw->name, (int)pid, how,
                              w->rw->running.n);
                char why[sizeof(how) + 128];
                snprintf(why, sizeof(why), "worker %s %s", w->rw->name, how);
                lmp_router_worker_lost(&d->router, w->rw, why);
                /* A worker that served for a while starts again at once; one
                 * that keeps dying waits longer each time. */
                if (w->rw->state == LMP_WORKER_READY && now - w->rw->ready_ms > 10000)
                        w->backoff_ms = d->cfg->respawn_min_ms;
                w->rw->state = LMP_WORKER_EXITED;
                w->rw->pid = 0;
                w->respawn_at_ms = now + w->backoff_ms;
                w->backoff_ms = LMP_MIN(w->backoff_ms * 2, d->cfg->respawn_max_ms);
                if (!expected)
                        w->rw->restarts++;
                /* Its requests that had sent nothing are queued again. */
                lmp_router_dispatch(&d->router);
                /* A worker that cannot load its model, that read a page of
                 * its weights that is no longer there, or that died before
                 * it was ready (killed by its cgroup's memory.max, say): the
                 * model's fault, not the worker's. A changed file is
                 * reloaded; anything else that repeats fails the model. */
                if ((load_failed || bus || unborn) && !expected && m->state == LMP_MODEL_SERVING) {
                        check_files(d, now);
                        if (m->state == LMP_MODEL_SERVING && ++m->faults >= d->cfg->load_attempts) {
                                char reason[sizeof(how) + 96];
                                if (load_failed)
                                        snprintf(reason, sizeof(reason), "%d workers in a row %s", m->faults, how);
                                else if (bus)
                                        snprintf(reason, sizeof(reason),
                                                 "%d workers in a row were killed by SIGBUS reading their weights",
                                                 m->faults);
                                else
                                        snprintf(reason, sizeof(reason),
                                                 "%d workers in a row died before they were ready (the last %s)",
                                                 m->faults, how);
                                model_fail(d, m, reason);
                        }
                }
                notify_status(d);
        }
}

static void check_workers(struct lmp_daemon *d, double now) {
        double dead_after = (double)d->cfg->heartbeat_ms * d->cfg->heartbeat_liveness;
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->rw->state == LMP_WORKER_EXITED) {
                                if (!d->stopping && d->models[i].state == LMP_MODEL_SERVING &&
                                    now >= w->respawn_at_ms)
                                        spawn_worker(d, w);
                                continue;
                        }
                        bool silent = (w->rw->state == LMP_WORKER_READY || w->rw->state == LMP_WORKER_STOPPING) &&
                                      now - w->rw->last_seen_ms > dead_after;
                        bool slow = w->rw->state == LMP_WORKER_STARTING &&
                                    now - w->spawned_ms > d->cfg->ready_timeout_ms;
                        if ((silent || slow) && w->rw->pid > 0) {
                                lmp_log_msg(LMP_PRI_WARNING, "worker %s (pid %d) %s: killing it", w->rw->name,
                                            (int)w->rw->pid, silent ? "missed its heartbeats" : "did not become ready");
                                kill(w->rw->pid, SIGKILL);
                                w->rw->last_seen_ms = now; /* one kill per interval */
                        }
                }
}

static void log_memory(struct lmp_daemon *d) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        struct lmp_mem_usage mu = { 0 }, store = { 0 };
                        if (w->rw->pid <= 0 || lmp_proc_mem(w->rw->pid, &mu) < 0)
                                continue;
                        lmp_proc_region_mem(w->rw->pid, d->models[i].store->name, &store);
                        w->rw->rss = mu.rss;
                        w->rw->pss = mu.pss;
                        struct lmp_log_field f[] = {
                                LMP_FSTR("LMPOOL_MODEL", d->models[i].cfg->name),
                                LMP_FSTR("LMPOOL_WORKER", w->rw->name),
                                LMP_FI64("LMPOOL_PID", w->rw->pid),
                                LMP_FU64("RSS_BYTES", mu.rss),
                                LMP_FU64("PSS_BYTES", mu.pss),
                                LMP_FU64("PRIVATE_BYTES", mu.private_),
                                LMP_FU64("STORE_RSS_BYTES", store.rss),
                                LMP_FU64("STORE_PRIVATE_BYTES", store.private_),
                                LMP_FU64("ACTIVE", w->rw->running.n),
                        };
                        char b1[32], b2[32];
                        lmp_log_event(LMP_PRI_INFO, "memory", f, "worker %s: RSS %s, PSS %s", w->rw->name,
                                      lmp_fmt_bytes(mu.rss, b1), lmp_fmt_bytes(mu.pss, b2));
                }
}

/* ---------------------------------------------------------------- loop */

static void begin_stop(struct lmp_daemon *d, const char *why) {
        if (d->stopping)
                return;
        d->stopping = d->router.stopping = true;
        d->stop_deadline_ms = lmp_clock_ms() + d->cfg->drain_timeout_ms;
        sd_notify(0, "STOPPING=1");
        lmp_log(LMP_PRI_NOTICE, "stopping", NULL, 0, "%s: draining %zu requests (at most %d ms)", why,
                lmp_router_running(&d->router), d->cfg->drain_timeout_ms);
        lmp_router_fail_queued(&d->router, LMP_PROTO_BUSY, "the daemon is shutting down");
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->rw->state == LMP_WORKER_READY || w->rw->state == LMP_WORKER_STARTING) {
                                w->rw->state = LMP_WORKER_STOPPING;
                                lmp_router_send_stop(&d->router, w->rw);
                        }
                }
}

static bool all_exited(struct lmp_daemon *d) {
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++)
                        if (d->models[i].workers[j].rw->pid > 0)
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

/* The next request deadline or respawn. */
static double earliest_deadline(struct lmp_daemon *d) {
        double t = lmp_router_next_deadline(&d->router);
        for (size_t i = 0; i < d->n_models; i++)
                for (int j = 0; j < d->models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d->models[i].workers[j];
                        if (w->rw->state == LMP_WORKER_EXITED && d->models[i].state == LMP_MODEL_SERVING)
                                t = LMP_MIN(t, w->respawn_at_ms);
                }
        return t;
}

int lmp_supervisor_run(struct lmp_daemon *d) {
        int loaded = 0;

        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                m->loaded = load_model(d, m) == 0;
                if (!m->loaded) {
                        struct lmp_log_field f[] = {
                                LMP_FSTR("LMPOOL_MODEL", m->cfg->name),
                                LMP_FSTR("LMPOOL_PATH", m->cfg->path),
                        };
                        lmp_log_event(LMP_PRI_ERR, "model_refused", f, "model %s refused: %s", m->cfg->name,
                                      m->failed);
                }
                loaded += m->loaded;
        }
        if (loaded == 0) {
                lmp_log_msg(LMP_PRI_ERR, "no model could be loaded: nothing to serve");
                return -ENOENT;
        }
        for (size_t i = 0; i < d->n_models; i++) {
                struct lmp_model_rt *m = &d->models[i];
                if (!m->loaded)
                        m->n_workers = 0;
                publish_model(m);
                for (int j = 0; j < m->n_workers && m->state == LMP_MODEL_SERVING; j++)
                        spawn_worker(d, &m->workers[j]);
        }
        sd_watchdog_enabled(0, &d->watchdog_usec);
        double now = lmp_clock_ms();
        d->next_hb_ms = now + d->cfg->heartbeat_ms;
        d->next_mem_ms = now + d->cfg->memory_interval_s * 1000.0;
        d->next_watchdog_ms = now;
        d->next_status_ms = now + 5000;

        for (;;) {
                zmq_pollitem_t items[8] = {
                        { .socket = d->router.back, .events = ZMQ_POLLIN },
                        { .socket = NULL, .fd = d->sigfd, .events = ZMQ_POLLIN },
                        { .socket = d->router.monitor[0], .events = ZMQ_POLLIN },
                        { .socket = d->router.monitor[1], .events = ZMQ_POLLIN },
                        { .socket = d->router.front, .events = ZMQ_POLLIN },
                        { .socket = d->router.zap, .events = ZMQ_POLLIN },
                };
                int n_items = 6, i_inotify = -1, i_tcp = -1;
                if (!d->router.monitor[1])
                        items[3] = (zmq_pollitem_t){ .socket = NULL, .fd = -1 };
                if (d->inotify_fd >= 0) {
                        i_inotify = n_items;
                        items[n_items++] = (zmq_pollitem_t){ .fd = d->inotify_fd, .events = ZMQ_POLLIN };
                }
                if (d->router.front_tcp) {
                        i_tcp = n_items;
                        items[n_items++] = (zmq_pollitem_t){ .socket = d->router.front_tcp, .events = ZMQ_POLLIN };
                }
                now = lmp_clock_ms();
                double next = LMP_MIN(d->next_hb_ms, earliest_deadline(d));
                next = LMP_MIN(next, lmp_router_tick(&d->router, now));
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
                        lmp_router_on_worker(&d->router);
                if (items[2].revents & ZMQ_POLLIN)
                        lmp_router_on_monitor(&d->router, 0);
                if (items[3].revents & ZMQ_POLLIN)
                        lmp_router_on_monitor(&d->router, 1);
                if (items[4].revents & ZMQ_POLLIN)
                        lmp_router_on_client(&d->router, d->router.front);
                if (items[5].revents & ZMQ_POLLIN)
                        lmp_zap_on_request(&d->router);
                if (i_inotify >= 0 && (items[i_inotify].revents & ZMQ_POLLIN))
                        handle_inotify(d);
                if (i_tcp >= 0 && (items[i_tcp].revents & ZMQ_POLLIN))
                        lmp_router_on_client(&d->router, d->router.front_tcp);

                now = lmp_clock_ms();
                lmp_router_expire(&d->router, now);
                if (now >= d->next_hb_ms) {
                        lmp_router_heartbeat(&d->router);
                        check_files(d, now);
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
                                                if (d->models[i].workers[j].rw->pid > 0)
                                                        kill(d->models[i].workers[j].rw->pid, SIGKILL);
                                d->stop_deadline_ms = now + 1000;
                        }
                }
        }
        lmp_log(LMP_PRI_NOTICE, "stopped", NULL, 0, "stopped after serving %" PRIu64 " requests", d->router.stats.ok);
        return 0;
}

/* Which settings a reload applies to the running daemon: limits, logging,
 * the worker timings the supervisor reads when it needs them, and the
 * models' sampling defaults (the router fills requests with them;
 * repeat_last_n, max_prompt_tokens, log.level and log.target reach running
 * workers in a config message). Everything else needs a restart. */
static bool reload_applies(const char *key, bool model_row, void *userdata) {
        static const char *const live[] = {
                "log.level", "log.target", "log.memory_interval_s", "log.requests", "workers.respawn_min_ms",
                "workers.respawn_max_ms", "workers.ready_timeout_ms", "workers.load_attempts",
        };
        (void)userdata;
        if (model_row)
                return strncmp(key, "defaults.", 9) == 0;
        /* The client sockets' event bound and the descriptor budget are set
         * when the sockets are made. */
        if (strcmp(key, "limits.max_clients") == 0 || strcmp(key, "limits.client_events") == 0)
                return false;
        if (strncmp(key, "limits.", 7) == 0 || strncmp(key, "cache.", 6) == 0)
                return true;
        for (size_t i = 0; i < LMP_ARRAY_SIZE(live); i++)
                if (strcmp(key, live[i]) == 0)
                        return true;
        return false;
}

/* The http section belongs to lmpool-http, which reads it itself. */
static bool reload_needs_restart(const char *key, bool model_row, void *userdata) {
        if (!model_row && strncmp(key, "http.", 5) == 0)
                return false;
        return !reload_applies(key, model_row, userdata);
}

/* SIGHUP: re-reads the configuration, applies what reload_applies() says
 * to the daemon and its workers, and logs which changed settings wait for a
 * restart. */
void lmp_supervisor_reload(struct lmp_daemon *d) {
        struct lmp_diag diag = { 0 };
        struct lmp_config *c = NULL;
        char applied[1024], restart[1024];

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
        size_t n_applied = lmp_config_diff(d->cfg, c, reload_applies, NULL, applied, sizeof(applied));
        size_t n_restart = lmp_config_diff(d->cfg, c, reload_needs_restart, NULL, restart, sizeof(restart));

        d->cfg->queue_length = c->queue_length;
        d->cfg->client_requests = c->client_requests;
        d->cfg->retries = c->retries;
        d->cfg->request_timeout_ms = c->request_timeout_ms;
        d->cfg->max_prompt_tokens = c->max_prompt_tokens;
        d->cfg->max_tokens = c->max_tokens;
        d->cfg->drain_timeout_ms = c->drain_timeout_ms;
        d->cfg->receive_memory = c->receive_memory;
        d->cfg->cache_bytes = c->cache_bytes;
        d->cfg->cache_ttl_s = c->cache_ttl_s;
        d->cfg->log_level = c->log_level;
        d->cfg->log_target = c->log_target;
        d->cfg->memory_interval_s = c->memory_interval_s;
        d->cfg->log_requests = c->log_requests;
        d->cfg->respawn_min_ms = c->respawn_min_ms;
        d->cfg->respawn_max_ms = c->respawn_max_ms;
        d->cfg->ready_timeout_ms = c->ready_timeout_ms;
        d->cfg->load_attempts = c->load_attempts;
        for (size_t i = 0; i < d->n_models; i++) {
                const struct lmp_model_config *mc = lmp_config_find_model(c, d->models[i].cfg->name);
                if (mc)
                        ((struct lmp_model_config *)d->models[i].cfg)->defaults = mc->defaults;
        }
        lmp_config_free(c);
        lmp_config_setup_logging(d->cfg, "lmpoold");
        /* The response cache's limits, and the workers' settings. */
        lmp_router_reload(&d->router);
        struct lmp_log_field f[] = {
                LMP_FSTR("APPLIED", applied),
                LMP_FSTR("NEEDS_RESTART", restart),
        };
        lmp_log_event(LMP_PRI_NOTICE, "reloaded", f, "configuration reloaded from %s: %s%s%s%s%s", d->config_path,
                      n_applied ? "applied " : "", applied, n_applied && n_restart ? "; " : "",
                      n_restart ? "these take effect at the next restart: " : "", n_restart ? restart : "");
        if (!n_applied && !n_restart)
                lmp_log_msg(LMP_PRI_NOTICE, "reload: nothing changed");
}

/* lmpoold: the daemon. main() is a flat list of checked steps: read the
 * configuration, set up logging, signals and the router's sockets, then hand
 * over to the supervisor, which loads the models one after another, starts
 * the workers and serves until SIGTERM. The same binary runs the workers
 * (`lmpoold --worker ...`, started by the supervisor) and checks a
 * configuration file (`lmpoold --check-config [FILE]`). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "supervisor/supervisor.h"
#include "worker/worker.h"

static void usage(FILE *f) {
        fprintf(f, "usage: lmpoold [--config FILE]\n"
                   "       lmpoold --check-config [FILE]\n"
                   "       lmpoold --version\n"
                   "Serves the models of the configuration (default: $LMPOOL_CONFIG, else %s)\n"
                   "to lmpool clients over ZeroMQ; see docs/operations.md.\n",
                LMP_CONFIG_DEFAULT_PATH);
}

/* The private endpoint workers connect to: beside the client socket's
 * runtime directory, named after our pid. */
static int backend_endpoint(char *buf, size_t size) {
        const char *rt = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");
        char dir[PATH_MAX];
        if (rt && *rt) {
                /* RuntimeDirectory= may list several, separated by ':' */
                snprintf(dir, sizeof(dir), "%s", rt);
                char *colon = strchr(dir, ':');
                if (colon)
                        *colon = '\0';
        } else if (xdg && *xdg) {
                snprintf(dir, sizeof(dir), "%s/lmpool", xdg);
        } else {
                snprintf(dir, sizeof(dir), "/tmp/lmpool-%u", (unsigned)getuid());
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        if ((size_t)snprintf(buf, size, "ipc://%s/workers-%d.sock", dir, (int)getpid()) >= size)
                return -ENAMETOOLONG;
        return 0;
}

int main(int argc, char **argv) {
        const char *config_path = getenv("LMPOOL_CONFIG");
        struct lmp_daemon d = { .sigfd = -1, .inotify_fd = -1 };
        struct lmp_diag diag = { 0 };
        sigset_t mask;
        ssize_t n;
        int r, status = 1;

        if (argc > 1 && strcmp(argv[1], "--worker") == 0)
                return lmp_worker_main(argc, argv);
        if (argc > 1 && strcmp(argv[1], "--check-config") == 0)
                return lmp_config_check_main(argc, argv);
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
                        config_path = argv[++i];
                } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(stdout);
                        return 0;
                } else if (strcmp(argv[i], "--version") == 0) {
                        printf("lmpoold %s\n", LMPOOL_VERSION);
                        return 0;
                } else {
                        fprintf(stderr, "lmpoold: unexpected argument '%s'\n", argv[i]);
                        usage(stderr);
                        return 2;
                }
        }
        if (!config_path || !*config_path)
                config_path = LMP_CONFIG_DEFAULT_PATH;

        /* 1. configuration */
        if (lmp_config_load(config_path, NULL, &d.cfg, &diag) < 0) {
                lmp_diag_print(&diag, stderr);
                lmp_diag_clear(&diag);
                fprintf(stderr, "lmpoold: %s: configuration refused\n", config_path);
                return 1;
        }
        lmp_diag_clear(&diag);
        d.config_path = config_path;

        /* 2. logging */
        lmp_log_setup("lmpoold",
                      d.cfg->log_target == LMP_LOG_TARGET_JOURNAL ? LMP_LOGTO_JOURNAL :
                      d.cfg->log_target == LMP_LOG_TARGET_STDERR ? LMP_LOGTO_STDERR : LMP_LOGTO_AUTO,
                      lmp_log_priority_of(d.cfg->log_level));

        /* 3. where workers come from and where they connect */
        n = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1);
        if (n <= 0) {
                lmp_log_msg(LMP_PRI_ERR, "cannot find our own executable: %s", strerror(errno));
                goto out;
        }
        d.exe[n] = '\0';
        if (lmp_config_endpoint(d.cfg, NULL, d.frontend, sizeof(d.frontend)) < 0 ||
            (r = backend_endpoint(d.backend, sizeof(d.backend))) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "cannot set up the runtime directory for the sockets");
                goto out;
        }

        /* 4. signals through a signalfd, in the poll loop */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        signal(SIGPIPE, SIG_IGN);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
            (d.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "signalfd: %s", strerror(errno));
                goto out;
        }

        /* 5. the process table, one row per worker */
        d.n_models = d.cfg->n_models;
        d.models = calloc(d.n_models, sizeof(*d.models));
        if (!d.models)
                goto out;
        for (size_t i = 0; i < d.n_models; i++) {
                struct lmp_model_rt *m = &d.models[i];
                m->cfg = &d.cfg->models[i];
                m->n_workers = m->cfg->workers;
                m->workers = calloc((size_t)m->n_workers, sizeof(*m->workers));
                if (!m->workers)
                        goto out;
                for (int j = 0; j < m->n_workers; j++) {
                        struct lmp_worker_rt *w = &m->workers[j];
                        snprintf(w->name, sizeof(w->name), "%s/%d", m->cfg->name, j);
                        w->model = i;
                        w->index = j;
                        w->state = LMP_WORKER_EXITED;
                        w->backoff_ms = d.cfg->respawn_min_ms;
                        w->report_fd = -1;
                }
        }

        /* 6. the router's sockets */
        d.start_ms = lmp_now_ms();
        if (lmp_router_open(&d) < 0)
                goto out;
        lmp_log(LMP_PRI_NOTICE, "starting", NULL, 0, "lmpoold %s: %zu models from %s%s%s, clients on %s",
                LMPOOL_VERSION, d.n_models, config_path, d.cfg->profile[0] ? ", profile " : "", d.cfg->profile,
                d.frontend);

        /* 7. load, spawn, serve */
        status = lmp_supervisor_run(&d) < 0 ? 1 : 0;
out:
        lmp_router_close(&d);
        for (size_t i = 0; d.models && i < d.n_models; i++) {
                lmp_store_free(d.models[i].store);
                for (int j = 0; d.models[i].workers && j < d.models[i].n_workers; j++) {
                        /* ".../worker-NAME/cgroup.procs" -> remove ".../worker-NAME" */
                        char *procs = d.models[i].workers[j].cgroup_procs, *slash = strrchr(procs, '/');
                        if (slash) {
                                *slash = '\0';
                                rmdir(procs);
                        }
                }
                for (int j = 0; d.models[i].workers && j < d.models[i].n_workers; j++)
                        if (d.models[i].workers[j].report_fd >= 0)
                                close(d.models[i].workers[j].report_fd);
                free(d.models[i].workers);
        }
        free(d.models);
        lmp_proto_buf_free(&d.out);
        if (d.sigfd >= 0)
                close(d.sigfd);
        if (d.inotify_fd >= 0)
                close(d.inotify_fd);
        lmp_config_free(d.cfg);
        return status;
}

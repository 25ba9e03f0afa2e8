/* lmpoold: the daemon. main() is a flat list of checked steps: read the
 * configuration, set up logging, signals and the router's sockets, then hand
 * over to the supervisor, which loads the models one after another, starts
 * the workers and serves until SIGTERM. The same binary runs the workers
 * (`lmpoold --worker ...`, started by the supervisor) and checks a
 * configuration file (`lmpoold --check-config [FILE]`). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/args.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rundir.h"
#include "config/config.h"
#include "supervisor/supervisor.h"
#include "worker/worker.h"

/* Test hook of the systemd suite's watchdog test (tests/systemd): with
 * LMPOOL_TEST_HANG_ON_SIGUSR2=1 in the daemon's environment, SIGUSR2 stops
 * the supervisor for good, as a deadlock in its loop would, so that the
 * test can see the watchdog kill and restart it. Only who sets the
 * daemon's environment (root, the unit) and may signal it (root, its own
 * user) can use it; nothing a client sends reaches it. Without the
 * variable SIGUSR2 keeps its default action. Workers are exec'd, which
 * resets the handler. */
static void hang_forever(int sig) {
        (void)sig;
        for (;;)
                pause();
}

static void usage(FILE *f) {
        fprintf(f, "usage: lmpoold [--config FILE]\n"
                   "       lmpoold --check-config [FILE]\n"
                   "       lmpoold --version\n"
                   "Serves the models of the configuration (default: $LMPOOL_CONFIG, else %s)\n"
                   "to lmpool clients over ZeroMQ; see docs/operations.md.\n",
                LMP_CONFIG_DEFAULT_PATH);
}

/* Step 3: the directories of the sockets (rundir.c), checked before
 * anything is bound: the runtime directory (ours, 0750, router.group), the
 * workers' private directory inside it (0700), and the client socket's
 * directory when router.endpoint puts it elsewhere. */
static int setup_runtime(struct lmp_daemon *d) {
        struct lmp_error err = { 0 };
        int r;

        if ((r = lmp_rundir_group(d->cfg->group, &d->router.group, &err)) < 0 ||
            (r = lmp_rundir_default_path(d->rundir, sizeof(d->rundir))) < 0 ||
            (r = lmp_rundir_open(d->rundir, true, true, d->router.group, &d->rundir_fd, NULL, &err)) < 0 ||
            (r = lmp_rundir_private(d->rundir, d->workers_dir, sizeof(d->workers_dir), &err)) < 0)
                goto fail;
        if ((size_t)snprintf(d->router.backend, sizeof(d->router.backend), "ipc://%s/workers.sock", d->workers_dir) >=
                    sizeof(d->router.backend) ||
            strlen(d->router.backend) - 6 > 107) {
                r = lmp_error_set(&err, -ENAMETOOLONG, "%s: the workers' socket path is too long for a Unix socket",
                                  d->workers_dir);
                goto fail;
        }
        if ((r = lmp_config_endpoint(d->cfg, NULL, d->router.frontend, sizeof(d->router.frontend))) < 0) {
                lmp_error_set(&err, r, "the client endpoint's path is too long");
                goto fail;
        }
        if (strncmp(d->router.frontend, "ipc://", 6) == 0) {
                char dir[sizeof(d->router.frontend)];
                snprintf(dir, sizeof(dir), "%s", d->router.frontend + 6);
                char *slash = strrchr(dir, '/');
                if (!slash || slash == dir || !slash[1]) {
                        r = lmp_error_set(&err, -EINVAL, "%s: an ipc endpoint needs an absolute path below a directory",
                                          d->router.frontend);
                        goto fail;
                }
                *slash = '\0';
                if (strcmp(dir, d->rundir) == 0)
                        d->router.front_dir_fd = fcntl(d->rundir_fd, F_DUPFD_CLOEXEC, 3);
                else if ((r = lmp_rundir_open(dir, true, false, d->router.group, &d->router.front_dir_fd, NULL,
                                              &err)) < 0)
                        goto fail;
                if (d->router.front_dir_fd < 0) {
                        r = lmp_error_set(&err, -errno, "%s: %s", dir, strerror(errno));
                        goto fail;
                }
        }
        return 0;
fail:
        lmp_log_msg(LMP_PRI_ERR, "%s", err.msg[0] ? err.msg : strerror(-r));
        return r;
}

/* Step 6: CURVE for TCP clients, when configured (the loader has refused a
 * non-loopback endpoint without it). */
static int load_curve(struct lmp_daemon *d) {
        struct lmp_error err = { 0 };
        if (!d->cfg->curve_key[0])
                return 0;
        if (lmp_curve_read_keypair(d->cfg->curve_key, &d->router.curve_public, &d->router.curve_secret, &err) < 0 ||
            lmp_curve_read_allowlist(d->cfg->curve_clients, &d->router.curve_clients, &d->router.n_curve_clients,
                                     &err) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "CURVE: %s", err.msg);
                return err.code;
        }
        d->router.curve = true;
        return 0;
}

/* --check-config: its own command, which reads argv again, FILE included. */
static int check_config(struct lmp_args *a, const struct lmp_opt *o) {
        *(bool *)o->ret = true;
        return lmp_config_check_main(a->argc, a->argv);
}

static int print_version(struct lmp_args *a, const struct lmp_opt *o) {
        (void)a;
        (void)o;
        printf("lmpoold %s\n", LMPOOL_VERSION);
        return 0;
}

int main(int argc, char **argv) {
        const char *config_path = NULL;
        struct lmp_daemon d = { .sigfd = -1, .rundir_fd = -1, .inotify_fd = -1,
                                .router = { .front_dir_fd = -1, .group = (gid_t)-1 } };
        sigset_t mask;
        ssize_t n;
        int r, status = 1;

        if (argc > 1 && strcmp(argv[1], "--worker") == 0)
                return lmp_worker_main(argc, argv);
        /* Whatever the unit or the shell says: files and sockets are
         * created private and opened up explicitly (rundir.c). */
        umask(0077);
        bool checked = false;
        const struct lmp_opt opts[] = {
                { "config", 0, LMP_OPT_STRING, &config_path },
                { "check-config", 0, LMP_OPT_CALL_NOARG, &checked, .call = check_config },
                { "version", 0, LMP_OPT_CALL_NOARG, .call = print_version },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpoold", argc, argv, opts, usage);
        if (parsed != LMP_ARGS_GO) {
                if (parsed == LMP_EXIT_USAGE && !checked)
                        usage(stderr);
                return parsed;
        }
        if (optind < argc) {
                lmp_args_unexpected(&a, argv[optind]);
                usage(stderr);
                return LMP_EXIT_USAGE;
        }

        /* 1. configuration */
        if (lmp_config_start("lmpoold", config_path, &d.cfg, &d.config_path) < 0)
                return 1;

        /* 2. logging */
        lmp_config_setup_logging(d.cfg, "lmpoold");

        /* The router's state and its views of the models and workers; it
         * tells the supervisor when a worker is ready. */
        if (lmp_router_init(&d.router, d.cfg) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "out of memory");
                goto out;
        }
        d.router.on_worker_ready = lmp_supervisor_worker_ready;
        d.router.userdata = &d;

        /* 3. where workers come from and where they connect */
        n = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1);
        if (n <= 0) {
                lmp_log_msg(LMP_PRI_ERR, "cannot find our own executable: %s", strerror(errno));
                goto out;
        }
        d.exe[n] = '\0';
        if ((r = setup_runtime(&d)) < 0 || (r = load_curve(&d)) < 0)
                goto out;

        /* 4. signals through a signalfd, in the poll loop */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        signal(SIGPIPE, SIG_IGN);
        if (getenv("LMPOOL_TEST_HANG_ON_SIGUSR2") && strcmp(getenv("LMPOOL_TEST_HANG_ON_SIGUSR2"), "1") == 0) {
                lmp_log_msg(LMP_PRI_WARNING, "test hook: SIGUSR2 hangs the supervisor (LMPOOL_TEST_HANG_ON_SIGUSR2=1)");
                signal(SIGUSR2, hang_forever);
        }
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
                m->rm = &d.router.models[i];
                for (int j = 0; j < m->n_workers; j++) {
                        struct lmp_worker_rt *w = &m->workers[j];
                        w->rw = &m->rm->workers[j];
                        w->backoff_ms = d.cfg->respawn_min_ms;
                        w->report_fd = -1;
                }
        }

        /* 6. the router's sockets, and descriptors for limits.max_clients */
        d.router.start_ms = lmp_clock_ms();
        if (lmp_router_reserve_fds(&d.router) < 0 || lmp_router_open(&d.router) < 0)
                goto out;
        const char *plain_tcp = d.router.curve ? NULL : d.cfg->tcp[0] ? d.cfg->tcp :
                                strncmp(d.router.frontend, "tcp://", 6) == 0 ? d.router.frontend : NULL;
        if (plain_tcp)
                lmp_log_msg(LMP_PRI_WARNING, "%s takes clients without authentication: any local user can "
                            "connect (it is a loopback address; see docs/security.md for CURVE)", plain_tcp);
        lmp_log(LMP_PRI_NOTICE, "starting", NULL, 0, "lmpoold %s: %zu models from %s%s%s, clients on %s",
                LMPOOL_VERSION, d.n_models, d.config_path, d.cfg->profile[0] ? ", profile " : "", d.cfg->profile,
                d.router.frontend);

        /* 7. load, spawn, serve */
        status = lmp_supervisor_run(&d) < 0 ? 1 : 0;
out:
        lmp_router_free(&d.router);
        if (d.workers_dir[0])
                rmdir(d.workers_dir);
        if (d.rundir_fd >= 0)
                close(d.rundir_fd);
        if (d.router.front_dir_fd >= 0)
                close(d.router.front_dir_fd);
        free(d.router.curve_clients);
        memset(&d.router.curve_secret, 0, sizeof(d.router.curve_secret));
        for (size_t i = 0; d.models && i < d.n_models; i++) {
                lmp_store_free(d.models[i].store);
                lmp_store_free(d.models[i].mmproj_store);
                for (int j = 0; d.models[i].workers && j < d.models[i].n_workers; j++) {
                        struct lmp_worker_rt *w = &d.models[i].workers[j];
                        if (w->cgroup[0] && (r = lmp_cgroups_remove(w->cgroup)) < 0)
                                lmp_log_msg(LMP_PRI_WARNING, "%s: cannot remove the worker's cgroup: %s", w->cgroup,
                                            strerror(-r));
                        if (w->report_fd >= 0)
                                close(w->report_fd);
                }
                free(d.models[i].workers);
        }
        free(d.models);
        if (d.sigfd >= 0)
                close(d.sigfd);
        if (d.inotify_fd >= 0)
                close(d.inotify_fd);
        lmp_config_free(d.cfg);
        return status;
}

/* lmpool-http: main(), a flat list of checked steps. The configuration is
 * lmpoold's own file (its http: section, log: and router: for where the
 * daemon listens); the flags override it. A separate process from the
 * daemon on purpose: whatever an HTTP client sends can at worst take down
 * this process, never the supervisor or its workers. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/args.h"
#include "common/log.h"
#include "config/config.h"
#include "http/gateway.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: lmpool-http [--config FILE] [--listen ADDR:PORT] [--endpoint ZMQ_ENDPOINT] [--api-keys FILE]\n"
                "Serves lmpoold's models over HTTP: the OpenAI API (/v1/...), the Ollama API (/api/...),\n"
                "/health and /metrics (docs/http.md).\n"
                "  --config FILE       lmpoold's configuration (default: $LMPOOL_CONFIG, else %s);\n"
                "                      its http: section configures the gateway\n"
                "  --listen ADDR:PORT  overrides http.listen (default 127.0.0.1:8080); port 0 picks one\n"
                "  --endpoint URL      the daemon's endpoint (default: $LMPOOL_ENDPOINT, else router.tcp when\n"
                "                      it is a loopback one, else router.endpoint or its default)\n"
                "  --api-keys FILE     overrides http.api_keys\n",
                LMP_CONFIG_DEFAULT_PATH);
}

static int print_version(struct lmp_args *a, const struct lmp_opt *o) {
        (void)a;
        (void)o;
        printf("lmpool-http %s\n", LMPOOL_VERSION);
        return 0;
}

int main(int argc, char **argv) {
        const char *config_path = NULL, *listen = NULL, *endpoint = NULL, *keys = NULL;
        struct lmp_config *cfg = NULL;
        struct lmp_gateway *gw = NULL;
        char ep[LMP_CONFIG_ENDPOINT_MAX], msg[1024];
        sigset_t mask;
        int sigfd = -1, rc, status = 1;

        const struct lmp_opt opts[] = {
                { "config", 0, LMP_OPT_STRING, &config_path },
                { "listen", 0, LMP_OPT_STRING, &listen },
                { "endpoint", 0, LMP_OPT_STRING, &endpoint },
                { "api-keys", 0, LMP_OPT_STRING, &keys },
                { "version", 0, LMP_OPT_CALL_NOARG, .call = print_version },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpool-http", argc, argv, opts, usage);
        if (parsed != LMP_ARGS_GO) {
                if (parsed == LMP_EXIT_USAGE)
                        usage(stderr);
                return parsed;
        }
        if (optind < argc) {
                lmp_args_unexpected(&a, argv[optind]);
                usage(stderr);
                return LMP_EXIT_USAGE;
        }

        /* 1. configuration */
        if (lmp_config_start("lmpool-http", config_path, &cfg, NULL) < 0)
                return 1;

        /* 2. logging, as lmpoold's */
        lmp_config_setup_logging(cfg, "lmpool-http");

        /* 3. where the daemon is */
        if (!endpoint && getenv("LMPOOL_ENDPOINT") && *getenv("LMPOOL_ENDPOINT"))
                endpoint = getenv("LMPOOL_ENDPOINT");
        if (!endpoint && cfg->tcp[0] && !cfg->curve_key[0] && lmp_config_tcp_is_loopback(cfg->tcp))
                endpoint = cfg->tcp;
        if (!endpoint) {
                if ((rc = lmp_config_endpoint(cfg, NULL, ep, sizeof(ep))) < 0) {
                        lmp_log_msg(LMP_PRI_ERR, "the daemon's endpoint: %s", strerror(-rc));
                        goto out;
                }
                endpoint = ep;
        }

        /* 4. signals through a signalfd, in the poll loop */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);       /* reloads the API key file */
        signal(SIGPIPE, SIG_IGN);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "signalfd: %s", strerror(errno));
                goto out;
        }

        /* 5. keys, the daemon's socket, the listening socket */
        struct lmp_gateway_options opt = {
                .cfg = cfg,
                .listen = listen ? listen : cfg->http_listen,
                .endpoint = endpoint,
                .api_keys = keys ? keys : cfg->http_api_keys,
        };
        if ((rc = lmp_gateway_new(&opt, &gw, msg, sizeof(msg))) < 0) {
                lmp_log_msg(LMP_PRI_ERR, "%s", msg);
                goto out;
        }
        struct lmp_log_field f[] = {
                LMP_FSTR("HTTP_LISTEN", opt.listen),
                LMP_FU64("HTTP_PORT", lmp_gateway_port(gw)),
                LMP_FSTR("LMPOOL_ENDPOINT", endpoint),
        };
        lmp_log_event(LMP_PRI_NOTICE, "http_listening", f, "listening on %s (port %u), daemon at %s", opt.listen,
                      (unsigned)lmp_gateway_port(gw), endpoint);
        sd_notify(0, "READY=1");

        /* 6. serve until SIGTERM or SIGINT; SIGHUP reloads the keys */
        lmp_gateway_run(gw, sigfd);
        sd_notify(0, "STOPPING=1");
        lmp_log_msg(LMP_PRI_NOTICE, "stopped");
        status = 0;
out:
        lmp_gateway_free(gw);
        if (sigfd >= 0)
                close(sigfd);
        lmp_config_free(cfg);
        return status;
}

/* Shared plumbing of the lmpool client subcommands: one getopt table for
 * the generation options of generate and chat, checked numbers, the
 * connection with its timeouts, and error lines of the form
 *   lmpool generate: unknown_model: no model named "x"
 * so that scripts can match the stable code. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/cli.h"
#include "common/args.h"
#include "common/curvekey.h"
#include "common/grow.h"

#define CONNECT_GRACE_MS 2000

volatile sig_atomic_t cli_interrupted;

static void on_sigint(int sig) {
        (void)sig;
        if (cli_interrupted) /* a second Ctrl-C: stop waiting for the daemon */
                _exit(CLI_EXIT_INTERRUPTED);
        cli_interrupted = 1;
}

void cli_catch_interrupt(void) {
        struct sigaction sa = { .sa_handler = on_sigint }; /* no SA_RESTART: a wait returns early */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
}

/* An option of generate's that chat does not take, or the reverse. */
static int not_for_this_command(struct lmp_args *a, const struct lmp_opt *o) {
        char name[64];
        (void)o;
        fprintf(stderr, "%s: option %s is not for this command\n", a->prog, lmp_args_name(a, name, sizeof(name)));
        return LMP_EXIT_USAGE;
}

/* top-p and the repeat penalty: 0 would make every token impossible. */
static int above_zero(struct lmp_args *a, const struct lmp_opt *o) {
        double v;
        if (lmp_args_double(a, 0, o->hi, &v) < 0)
                return LMP_EXIT_USAGE;
        if (v == 0)
                return lmp_args_bad_value(a, "expected a number above 0, up to %g", o->hi);
        *(double *)o->ret = v;
        return LMP_ARGS_GO;
}

static int stop_string(struct lmp_args *a, const struct lmp_opt *o) {
        struct cli_gen *g = o->ret;
        if (g->params.n_stop == CLI_STOP_MAX)
                return lmp_args_bad_value(a, "at most %d stop strings", CLI_STOP_MAX);
        if (!*optarg || strlen(optarg) > 256)
                return lmp_args_bad_value(a, "expected 1 to 256 bytes");
        g->stop[g->params.n_stop++] = optarg;
        return LMP_ARGS_GO;
}

int cli_parse_gen(int argc, char **argv, bool chat, struct cli_gen *g) {
        const char *cmd = argv[0];
        bool no_stream = false;
        int (*const not_here)(struct lmp_args *, const struct lmp_opt *) = not_for_this_command;

        memset(g, 0, sizeof(*g));
        lmp_client_params_init(&g->params);
        g->params.stop = g->stop;
        /* A row of the other command stays, so that it is refused by name
         * rather than as unknown. */
        const struct lmp_opt opts[] = {
                { "model", 'm', LMP_OPT_STRING, &g->params.model },
                chat ? (struct lmp_opt){ "prompt", 0, LMP_OPT_CALL, .call = not_here }
                     : (struct lmp_opt){ "prompt", 'p', LMP_OPT_STRING, &g->prompt },
                { "max-tokens", 'n', LMP_OPT_INT, &g->params.max_tokens, 1, 1 << 24 },
                { "temp", 0, LMP_OPT_DOUBLE, &g->params.temperature, 0, 10 },
                { "top-k", 0, LMP_OPT_INT, &g->params.top_k, 0, 1 << 24 },
                { "top-p", 0, LMP_OPT_CALL, &g->params.top_p, 0, 1, .call = above_zero },
                { "min-p", 0, LMP_OPT_DOUBLE, &g->params.min_p, 0, 1 },
                { "repeat-penalty", 0, LMP_OPT_CALL, &g->params.repeat_penalty, 0, 10, .call = above_zero },
                { "seed", 0, LMP_OPT_LONG, &g->params.seed, 0, 9007199254740991LL },
                { "stop", 0, LMP_OPT_CALL, g, .call = stop_string },
                { "ignore-eos", 0, LMP_OPT_FLAG, &g->params.ignore_eos },
                chat ? (struct lmp_opt){ "ids", 0, LMP_OPT_CALL_NOARG, .call = not_here }
                     : (struct lmp_opt){ "ids", 0, LMP_OPT_FLAG, &g->show_ids },
                { "no-stream", 0, LMP_OPT_FLAG, &no_stream },
                { "endpoint", 0, LMP_OPT_STRING, &g->endpoint },
                { "server-key", 0, LMP_OPT_STRING, &g->curve.server_key },
                { "key", 0, LMP_OPT_STRING, &g->curve.key },
                { "timeout-ms", 0, LMP_OPT_INT, &g->timeout_ms, 1, 86400000 },
                chat ? (struct lmp_opt){ "system", 0, LMP_OPT_STRING, &g->system }
                     : (struct lmp_opt){ "system", 0, LMP_OPT_CALL, .call = not_here },
                { "help", 'h', LMP_OPT_HELP, &g->help },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, chat ? "lmpool chat" : "lmpool generate", argc, argv, opts, NULL);
        if (parsed != LMP_ARGS_GO)
                return parsed; /* 0 after --help, which the caller prints */
        if (optind < argc)
                return lmp_args_unexpected(&a, argv[optind]);
        g->params.return_ids = g->show_ids;
        if (no_stream)
                g->params.stream = false;
        g->params.timeout_ms = g->timeout_ms;
        if (!g->params.model) {
                fprintf(stderr, "lmpool %s: --model is required\n", cmd);
                return 2;
        }
        return 0;
}

int cli_parse_info(int argc, char **argv, const char **ret_endpoint, struct cli_curve *ret_curve, bool *ret_json,
                   int *ret_timeout_ms) {
        bool help = false;
        char prog[64];
        struct lmp_args a;

        *ret_endpoint = NULL;
        ret_curve->server_key = ret_curve->key = NULL;
        *ret_json = false;
        *ret_timeout_ms = 0;
        const struct lmp_opt opts[] = {
                { "endpoint", 0, LMP_OPT_STRING, ret_endpoint },
                { "server-key", 0, LMP_OPT_STRING, &ret_curve->server_key },
                { "key", 0, LMP_OPT_STRING, &ret_curve->key },
                { "json", 0, LMP_OPT_FLAG, ret_json },
                { "timeout-ms", 0, LMP_OPT_INT, ret_timeout_ms, 1, 86400000 },
                { "help", 'h', LMP_OPT_HELP, &help },
                { 0 },
        };
        snprintf(prog, sizeof(prog), "lmpool %s", argv[0]);
        int parsed = lmp_args_parse(&a, prog, argc, argv, opts, NULL);
        if (parsed != LMP_ARGS_GO)
                return help ? -1 : parsed;
        if (optind < argc)
                return lmp_args_unexpected(&a, argv[optind]);
        return 0;
}

const char *cli_endpoint_name(const char *endpoint, char *buf, int cap) {
        if (endpoint)
                return endpoint;
        if (lmp_client_default_endpoint(buf, (size_t)cap) < 0)
                return "(default endpoint)";
        return buf;
}

/* The server's public key: 40 Z85 characters, or a file holding one. */
static int server_key(const char *cmd, const char *arg, char out[LMP_CURVE_Z85_LEN + 1]) {
        struct lmp_curve_key k;
        struct lmp_error err = { 0 };
        if (strlen(arg) == LMP_CURVE_Z85_LEN && lmp_curve_z85_decode(arg, &k) == 0) {
                memcpy(out, arg, LMP_CURVE_Z85_LEN + 1);
                return 0;
        }
        if (lmp_curve_read_public(arg, &k, &err) < 0) {
                fprintf(stderr, "lmpool %s: --server-key: %s\n", cmd, err.msg);
                return -1;
        }
        lmp_curve_z85_encode(&k, out);
        return 0;
}

static int connect_curve(const char *cmd, const char *endpoint, const struct cli_curve *curve,
                         struct lmp_client **ret_client) {
        const char *skey = curve && curve->server_key ? curve->server_key : getenv("LMPOOL_SERVER_KEY");
        const char *key = curve && curve->key ? curve->key : getenv("LMPOOL_KEY");
        char server_pub[LMP_CURVE_Z85_LEN + 1], pub[LMP_CURVE_Z85_LEN + 1], sec[LMP_CURVE_Z85_LEN + 1];
        struct lmp_curve_key kp, ks;
        struct lmp_error err = { 0 };
        int rc;

        if (skey && !*skey)
                skey = NULL;
        if (key && !*key)
                key = NULL;
        if (!skey && !key)
                return lmp_client_new(endpoint, ret_client);
        if (!skey || !key) {
                fprintf(stderr, "lmpool %s: CURVE needs both --server-key (or $LMPOOL_SERVER_KEY) and --key "
                        "(or $LMPOOL_KEY)\n", cmd);
                return -EINVAL;
        }
        if (server_key(cmd, skey, server_pub) < 0)
                return -EINVAL;
        if (lmp_curve_read_keypair(key, &kp, &ks, &err) < 0) {
                fprintf(stderr, "lmpool %s: --key: %s\n", cmd, err.msg);
                return -EINVAL;
        }
        lmp_curve_z85_encode(&kp, pub);
        lmp_curve_z85_encode(&ks, sec);
        struct lmp_client_curve c = { .server_public = server_pub, .public_key = pub, .secret_key = sec };
        rc = lmp_client_new_curve(endpoint, &c, ret_client);
        memset(sec, 0, sizeof(sec));
        memset(&ks, 0, sizeof(ks));
        return rc;
}

int cli_connect(const char *cmd, const char *endpoint, const struct cli_curve *curve, int timeout_ms,
                struct lmp_client **ret_client) {
        char buf[4096];
        int rc = connect_curve(cmd, endpoint, curve, ret_client);
        if (rc == -EINVAL)
                return 1; /* said why */
        if (rc < 0) {
                fprintf(stderr, "lmpool %s: cannot connect to %s: %s\n", cmd, cli_endpoint_name(endpoint, buf, sizeof(buf)),
                        strerror(-rc));
                return 1;
        }
        if (timeout_ms > 0)
                lmp_client_set_timeout(*ret_client, timeout_ms + CONNECT_GRACE_MS);
        return 0;
}

/* Why a daemon may not have answered: ZeroMQ connects to an ipc socket
 * that does not exist yet without complaint (and would retry until the
 * timeout), so a missing socket file is worth saying. */
static const char *timeout_hint(const char *endpoint) {
        struct stat st;
        if (strncmp(endpoint, "ipc://", 6) == 0 && stat(endpoint + 6, &st) < 0 && errno == ENOENT)
                return "no socket there: is lmpoold running?";
        return "is lmpoold running?";
}

static const int exit_statuses[] = {
        [LMP_CLIENT_BAD_REQUEST] = 3,
        [LMP_CLIENT_UNKNOWN_MODEL] = 4,
        [LMP_CLIENT_BUSY] = 5,
        [LMP_CLIENT_TOO_LONG] = 6,
        [LMP_CLIENT_TIMEOUT] = 7,
        [LMP_CLIENT_WORKER_LOST] = 8,
        [LMP_CLIENT_CANCELLED] = 9,
        [LMP_CLIENT_INTERNAL] = 10,
        [LMP_CLIENT_SLOW_CONSUMER] = 11,
        [LMP_CLIENT_MODEL_FAILED] = 12,
};

int cli_exit_status(enum lmp_client_code code) {
        if (code == LMP_CLIENT_OK)
                return 0;
        if ((size_t)code >= sizeof(exit_statuses) / sizeof(exit_statuses[0]) || !exit_statuses[code])
                return exit_statuses[LMP_CLIENT_INTERNAL]; /* a code this client does not know */
        return exit_statuses[code];
}

int cli_fail(const char *cmd, int rc, const struct lmp_client_result *res, const char *endpoint) {
        char buf[4096];
        if (rc == -EPROTO || (rc == -EINVAL && res && res->message[0])) {
                fprintf(stderr, "lmpool %s: %s: %s\n", cmd, lmp_client_code_name(res->code), res->message);
                return cli_exit_status(res->code);
        }
        if (rc == -ETIMEDOUT) {
                const char *name = cli_endpoint_name(endpoint, buf, sizeof(buf));
                fprintf(stderr, "lmpool %s: timeout: no answer from %s (%s)\n", cmd, name, timeout_hint(name));
                return cli_exit_status(LMP_CLIENT_TIMEOUT);
        }
        if (rc == -ECANCELED) {
                fprintf(stderr, "lmpool %s: cancelled\n", cmd);
                return CLI_EXIT_INTERRUPTED;
        }
        fprintf(stderr, "lmpool %s: internal: %s\n", cmd, strerror(-rc));
        return cli_exit_status(LMP_CLIENT_INTERNAL);
}

char *cli_read_stdin(size_t *ret_len) {
        size_t len = 0, cap = 0;
        char *buf = NULL;
        for (;;) {
                if (lmp_grow(&buf, &cap, len + 4096, 1, 4096) < 0) {
                        free(buf);
                        return NULL;
                }
                size_t n = fread(buf + len, 1, cap - len - 1, stdin);
                len += n;
                if (n == 0)
                        break;
        }
        if (ferror(stdin)) {
                free(buf);
                return NULL;
        }
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        return buf;
}

double cli_json_num(const cJSON *o, const char *k) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
        return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

const char *cli_json_str(const cJSON *o, const char *k) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
        return cJSON_IsString(it) ? it->valuestring : "-";
}

int cli_info_command(int argc, char **argv, const char *usage, cli_info_fn call, cli_print_fn print) {
        const char *endpoint, *cmd = argv[0];
        struct cli_curve curve;
        struct lmp_client *client;
        struct lmp_client_result res;
        char *json = NULL;
        bool raw;
        int timeout_ms, rc;

        rc = cli_parse_info(argc, argv, &endpoint, &curve, &raw, &timeout_ms);
        if (rc != 0) {
                fputs(usage, rc < 0 ? stdout : stderr);
                return rc < 0 ? 0 : rc;
        }
        if (cli_connect(cmd, endpoint, &curve, 0, &client) != 0)
                return 1;
        lmp_client_set_timeout(client, timeout_ms > 0 ? timeout_ms : CLI_INFO_TIMEOUT_MS);
        rc = call(client, &json, &res);
        lmp_client_free(client);
        if (rc < 0)
                return cli_fail(cmd, rc, &res, endpoint);
        if (raw)
                printf("%s\n", json); /* as it came; print() still decides the exit code */
        cJSON *doc = cJSON_Parse(json);
        free(json);
        if (!doc) {
                fprintf(stderr, "lmpool %s: internal: the answer is not JSON\n", cmd);
                return 1;
        }
        rc = print(doc, !raw);
        cJSON_Delete(doc);
        return rc;
}

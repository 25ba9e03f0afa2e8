/* What the client subcommands of the lmpool CLI (generate, chat, models,
 * stats, health) share: their option parsing, the connection to the
 * daemon, and reporting a failed call as one line on stderr with the
 * protocol's error code. */
#pragma once

#include <signal.h>
#include <stdbool.h>

#include "lmpool/client.h"

#define CLI_STOP_MAX 8

/* CURVE for a daemon's TCP endpoint (docs/security.md): --server-key (the
 * daemon's public key, as 40 Z85 characters or a file holding it; else
 * $LMPOOL_SERVER_KEY) and --key (this client's key pair file from `lmpool
 * keygen`; else $LMPOOL_KEY). Neither: a plain connection. */
struct cli_curve {
        const char *server_key;
        const char *key;
};

/* The options of generate and chat. */
struct cli_gen {
        struct lmp_client_params params;
        const char *stop[CLI_STOP_MAX];
        const char *endpoint;           /* NULL: the default endpoint */
        struct cli_curve curve;
        const char *prompt;             /* generate --prompt */
        const char *system;             /* chat --system */
        int timeout_ms;                 /* --timeout-ms, 0: not given */
        bool show_ids;                  /* --ids */
        bool help;
};

/* Parses argv for generate (chat false) or chat. Returns 0, or 2 after
 * printing a usage error. */
int cli_parse_gen(int argc, char **argv, bool chat, struct cli_gen *g);

/* Connects to endpoint (NULL: default). The receive timeout is timeout_ms
 * plus a grace period when given (so that the daemon's own timeout error
 * arrives first), else the library's default. Prints and returns 1 on
 * failure, 0 on success. */
int cli_connect(const char *cmd, const char *endpoint, const struct cli_curve *curve, int timeout_ms,
                struct lmp_client **ret_client);

/* Exit statuses of the client subcommands, the same as
 * docs/examples/client.py's: 0 ok; 1 a failure outside the protocol
 * (connecting, key files, reading stdin; for health, a status other than
 * "ok"); 2 a usage error; one status per protocol error code, from 3
 * (bad_request) to 12 (model_failed), in the order of enum
 * lmp_client_code, a daemon that does not answer in time counting as
 * "timeout" (7); 130 interrupted. README.md and lmpool(1) have the table. */
#define CLI_EXIT_FAILURE 1
int cli_exit_status(enum lmp_client_code code);

/* Prints why a call failed; returns the exit status: the error code's, or
 * CLI_EXIT_INTERRUPTED, or the one of "internal" for a local failure
 * during the call. */
int cli_fail(const char *cmd, int rc, const struct lmp_client_result *res, const char *endpoint);

/* Ctrl-C during a generation: cli_catch_interrupt() installs a SIGINT
 * handler that sets cli_interrupted, which the token callbacks return so
 * that the library cancels the request on the daemon (instead of the
 * daemon generating on for nobody). Exit status 130 then, as for a
 * process killed by SIGINT. */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_interrupt(void);
#define CLI_EXIT_INTERRUPTED 130

/* Reads all of stdin into a NUL-terminated string (*ret_len, if not NULL,
 * gets its length: the input may hold NUL bytes); NULL on failure. */
char *cli_read_stdin(size_t *ret_len);

/* Options of models, stats and health: --endpoint E, --json, --timeout-ms,
 * --server-key, --key. Returns 0, 2 (usage error printed) or -1 (--help
 * printed). */
/* Their receive timeout without --timeout-ms: the daemon's router answers
 * them itself, at once, so a probe need not wait as long as generate does
 * (the library's 60 s) to say that nothing answers. */
#define CLI_INFO_TIMEOUT_MS 3000
int cli_parse_info(int argc, char **argv, const char **ret_endpoint, struct cli_curve *ret_curve, bool *ret_json,
                   int *ret_timeout_ms);

/* The endpoint actually used, for messages. */
const char *cli_endpoint_name(const char *endpoint, char *buf, int cap);

/* Runs a models, stats or health request. With --json the daemon's JSON is
 * printed as it came; otherwise print() shows the parsed answer (show
 * true). print() returns the exit code either way. */
struct cJSON;
typedef int (*cli_print_fn)(const struct cJSON *answer, bool show);
typedef int (*cli_info_fn)(struct lmp_client *client, char **ret_json, struct lmp_client_result *result);
int cli_info_command(int argc, char **argv, const char *usage, cli_info_fn call, cli_print_fn print);
/* For print(): member k of object o as a number (0 when it is missing or
 * not a number) or as a string ("-" when missing or not a string). */
double cli_json_num(const struct cJSON *o, const char *k);
const char *cli_json_str(const struct cJSON *o, const char *k);

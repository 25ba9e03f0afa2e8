/* `lmpool generate --model M [--prompt T | stdin] ...`: one completion from
 * lmpoold. The text streams to stdout as it comes; the figures of the done
 * event (finish, tokens, timings, worker) go to stderr as one line, so
 * that stdout holds exactly the generated text. A prompt read from stdin
 * loses one trailing newline (what `echo` adds). Ctrl-C cancels the
 * request on the daemon (exit status 130). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/commands.h"

struct ids {
        int32_t *v;
        size_t n, cap;
        bool oom;
};

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool generate --model M [--prompt TEXT] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                   "                       [--min-p P] [--repeat-penalty R] [--seed S] [--stop S]... [--ignore-eos]\n"
                   "                       [--ids] [--no-stream] [--endpoint E] [--timeout-ms MS]\n"
                   "                       [--server-key KEY|FILE --key FILE]\n"
                   "Generates a continuation of TEXT (default: stdin) with lmpoold's model M.\n"
                   "The text goes to stdout, the figures to stderr; --ids adds the token ids there.\n"
                   "Endpoint: --endpoint, else $LMPOOL_ENDPOINT, else the daemon's default socket.\n"
                   "CURVE (a TCP endpoint with router.curve_key): --server-key, the daemon's public key\n"
                   "(or $LMPOOL_SERVER_KEY), and --key, this client's key pair file from `lmpool keygen`\n"
                   "(or $LMPOOL_KEY); see docs/security.md.\n"
                   "Exit status: 0 ok, 2 usage, 3-12 an error event by its CODE (\"lmpool generate: CODE: message\" on\n"
                   "stderr; the table is in lmpool(1)), 1 any other failure, 130 interrupted.\n");
}

static int on_token(void *userdata, const char *text, size_t len, const int32_t *ids, size_t n_ids) {
        struct ids *acc = userdata;
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (cli_interrupted)
                return 1; /* cancel */
        for (size_t i = 0; i < n_ids && !acc->oom; i++) {
                if (acc->n == acc->cap) {
                        size_t cap = acc->cap ? acc->cap * 2 : 64;
                        int32_t *p = realloc(acc->v, cap * sizeof(*p));
                        if (!p) {
                                acc->oom = true;
                                break;
                        }
                        acc->v = p;
                        acc->cap = cap;
                }
                acc->v[acc->n++] = ids[i];
        }
        return 0;
}

int lmp_cmd_generate(int argc, char **argv) {
        struct cli_gen g;
        struct lmp_client *client = NULL;
        struct lmp_client_result res;
        struct ids ids = { 0 };
        char *input = NULL;
        int rc, status;

        if ((rc = cli_parse_gen(argc, argv, false, &g)) != 0 || g.help) {
                usage(g.help ? stdout : stderr);
                return g.help ? 0 : rc;
        }
        if (!g.prompt) {
                if (!(input = cli_read_stdin(NULL))) {
                        fprintf(stderr, "lmpool generate: cannot read the prompt from stdin: %s\n", strerror(errno));
                        return 1;
                }
                size_t n = strlen(input);
                if (n && input[n - 1] == '\n')
                        input[n - 1] = '\0';
                g.prompt = input;
        }
        if (cli_connect("generate", g.endpoint, &g.curve, g.timeout_ms, &client) != 0) {
                free(input);
                return 1;
        }
        cli_catch_interrupt();
        rc = lmp_client_generate(client, &g.params, g.prompt, g.params.stream ? on_token : NULL, &ids, &res);
        if (rc == 0 && !g.params.stream)
                fwrite(res.text, 1, res.text_len, stdout);
        if (rc == 0 && res.text_len && res.text[res.text_len - 1] != '\n' && isatty(STDOUT_FILENO))
                putchar('\n');
        fflush(stdout);
        if (rc < 0) {
                status = cli_fail("generate", rc, &res, g.endpoint);
        } else {
                fprintf(stderr, "[finish=%s prompt_tokens=%lld generated_tokens=%lld queued_ms=%.1f ttft_ms=%.1f "
                                "total_ms=%.1f tokens_per_s=%.1f worker=%s]\n",
                        res.finish, res.prompt_tokens, res.generated_tokens, res.queued_ms, res.ttft_ms,
                        res.total_ms, res.tokens_per_s, res.worker);
                if (g.show_ids) {
                        fputs("ids:", stderr);
                        for (size_t i = 0; i < ids.n; i++)
                                fprintf(stderr, " %d", ids.v[i]);
                        fputs(ids.oom ? " (truncated: out of memory)\n" : "\n", stderr);
                }
                status = 0;
        }
        lmp_client_result_clear(&res);
        lmp_client_free(client);
        free(ids.v);
        free(input);
        return status;
}

/* `lmpool chat --model M [--system S]`: a conversation with lmpoold. When
 * stdin is a terminal it is a REPL: each line is a user turn, the reply
 * streams back, and the whole conversation is sent each turn (the daemon
 * keeps no state between requests); an empty line or end of input ends it.
 * Otherwise all of stdin is one user message and the reply is printed
 * once, which is what scripts want. Ctrl-C cancels the reply being
 * generated (in the REPL the conversation goes on without that turn). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/commands.h"

struct convo {
        struct lmp_client_message *m;
        char **owned;           /* the strings this file allocated, one per message */
        size_t n, cap;
};

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool chat --model M [--system TEXT] [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                   "                   [--min-p P] [--repeat-penalty R] [--seed S] [--stop S]... [--no-stream]\n"
                   "                   [--endpoint E] [--timeout-ms MS]\n"
                   "                   [--server-key KEY|FILE --key FILE]\n"
                   "Chats with lmpoold's model M: interactively when stdin is a terminal (an empty\n"
                   "line ends), else one exchange with all of stdin as the user's message.\n"
                   "Exit status: 0 ok, 2 usage, 3-12 an error event by its CODE (\"lmpool chat: CODE: message\" on\n"
                   "stderr; the table is in lmpool(1)), 1 any other failure, 130 interrupted.\n");
}

static int push(struct convo *c, const char *role, char *content) {
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 8;
                struct lmp_client_message *m = realloc(c->m, cap * sizeof(*m));
                if (!m)
                        return -ENOMEM;
                c->m = m;
                char **o = realloc(c->owned, cap * sizeof(*o));
                if (!o)
                        return -ENOMEM;
                c->owned = o;
                c->cap = cap;
        }
        c->m[c->n] = (struct lmp_client_message){ .role = role, .content = content };
        c->owned[c->n] = content;
        c->n++;
        return 0;
}

static void convo_free(struct convo *c) {
        for (size_t i = 0; i < c->n; i++)
                free(c->owned[i]);
        free(c->m);
        free(c->owned);
}

static int print_token(void *userdata, const char *text, size_t len, const int32_t *ids, size_t n_ids) {
        (void)userdata, (void)ids, (void)n_ids;
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        return cli_interrupted; /* non-zero: cancel */
}

/* One turn: sends the conversation, prints the reply, appends it. */
static int turn(struct lmp_client *client, const struct cli_gen *g, struct convo *c, int *ret_status) {
        struct lmp_client_result res;
        int rc = lmp_client_chat(client, &g->params, c->m, c->n, g->params.stream ? print_token : NULL, NULL, &res);
        if (rc < 0) {
                *ret_status = cli_fail("chat", rc, &res, g->endpoint);
                lmp_client_result_clear(&res);
                return rc;
        }
        if (!g->params.stream)
                fwrite(res.text, 1, res.text_len, stdout);
        if (res.text_len == 0 || res.text[res.text_len - 1] != '\n')
                putchar('\n');
        fflush(stdout);
        rc = push(c, "assistant", res.text);
        if (rc == 0)
                res.text = NULL; /* now owned by the conversation */
        lmp_client_result_clear(&res);
        return rc;
}

int lmp_cmd_chat(int argc, char **argv) {
        struct cli_gen g;
        struct lmp_client *client = NULL;
        struct convo c = { 0 };
        int rc, status = CLI_EXIT_FAILURE;

        if ((rc = cli_parse_gen(argc, argv, true, &g)) != 0 || g.help) {
                usage(g.help ? stdout : stderr);
                return g.help ? 0 : rc;
        }
        if (cli_connect("chat", g.endpoint, &g.curve, g.timeout_ms, &client) != 0)
                return 1;
        cli_catch_interrupt();
        if (g.system) {
                char *s = strdup(g.system);
                if (!s || push(&c, "system", s) < 0) {
                        free(s);
                        rc = -ENOMEM;
                        goto out;
                }
        }
        if (!isatty(STDIN_FILENO)) {
                char *input = cli_read_stdin(NULL);
                size_t n = input ? strlen(input) : 0;
                if (n && input[n - 1] == '\n')
                        input[n - 1] = '\0';
                if (!input || push(&c, "user", input) < 0) {
                        free(input);
                        rc = -ENOMEM;
                        goto out;
                }
                rc = turn(client, &g, &c, &status);
                goto out;
        }
        fprintf(stderr, "lmpool chat: model %s; an empty line ends the conversation.\n", g.params.model);
        for (;;) {
                char *line = NULL;
                size_t cap = 0;
                fputs("> ", stdout);
                fflush(stdout);
                ssize_t n = getline(&line, &cap, stdin);
                if (n <= 0 || (n == 1 && line[0] == '\n')) {
                        free(line);
                        rc = 0;
                        break;
                }
                if (line[n - 1] == '\n')
                        line[n - 1] = '\0';
                if (push(&c, "user", line) < 0) {
                        free(line);
                        rc = -ENOMEM;
                        break;
                }
                if ((rc = turn(client, &g, &c, &status)) < 0) {
                        /* Forget the unanswered turn and let the user go on;
                         * Ctrl-C stops a reply, not the conversation. */
                        free(c.owned[--c.n]);
                        if (rc != -EPROTO && rc != -ECANCELED)
                                break;
                        cli_interrupted = 0;
                        rc = 0;
                }
        }
out:
        if (rc == -ENOMEM)
                fprintf(stderr, "lmpool chat: internal: out of memory\n");
        lmp_client_free(client);
        convo_free(&c);
        if (rc == -ENOMEM)
                return cli_exit_status(LMP_CLIENT_INTERNAL);
        return rc < 0 ? status : 0;
}

/* `lmpool embed MODEL.gguf --text T ... [--no-normalize] [--truncate]`:
 * embeds texts with an embedding model file, in this process, and prints
 * one JSON line per text, in order:
 *   {"ids": [101, ..., 102], "embedding": [0.0123, ...]}
 * `lmpool embed --model NAME ...` asks lmpoold's model NAME instead and
 * prints the same lines. --text may repeat; without it, each line of stdin
 * is one text (its newline, and a carriage return before it, dropped).
 * The vectors are L2-normalized unless --no-normalize; a text longer than
 * the model's context fails (too_long, exit status 6) unless --truncate.
 * Floats are printed with 9 significant digits (exact for f32). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "client/commands.h"
#include "common/args.h"
#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "proto/proto.h"
#include "tokenizer/tokenizer.h"
#include "worker/embed.h"

#define CHUNK LMP_PROTO_EMBED_INPUTS_MAX        /* texts per run or request */

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool embed MODEL.gguf [--text T]... [--no-normalize] [--truncate] [--threads N]\n"
                   "       lmpool embed --model NAME [--text T]... [--no-normalize] [--truncate]\n"
                   "                    [--endpoint E] [--timeout-ms MS] [--server-key KEY|FILE --key FILE]\n"
                   "Embeds each text (each --text, else each line of stdin) with an embedding model: the\n"
                   "file MODEL.gguf in this process, or lmpoold's model NAME. Prints one JSON line per text:\n"
                   "{\"ids\": [...], \"embedding\": [...]}, the vector L2-normalized unless --no-normalize.\n"
                   "A text longer than the model's context is an error (too_long) unless --truncate.\n"
                   "Exit status: 0 ok, 2 usage, 3-12 a protocol error by its code (lmpool(1)), 1 other.\n");
}

struct texts {
        char **v;
        size_t n, cap;
};

static int texts_add(struct texts *t, char *s) {
        if (t->n == t->cap) {
                size_t cap = t->cap ? 2 * t->cap : 16;
                char **p = realloc(t->v, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                t->v = p;
                t->cap = cap;
        }
        t->v[t->n++] = s;
        return 0;
}

static void texts_free(struct texts *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i]);
        free(t->v);
}

static int read_lines(struct texts *t) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
                if (n && line[n - 1] == '\n')
                        line[--n] = '\0';
                if (n && line[n - 1] == '\r')
                        line[--n] = '\0';
                char *copy = strdup(line);
                if (!copy || texts_add(t, copy) < 0) {
                        free(copy);
                        free(line);
                        return -ENOMEM;
                }
        }
        free(line);
        return ferror(stdin) ? -EIO : 0;
}

static void print_line(const int32_t *ids, size_t n_ids, const float *v, size_t n_embd) {
        fputs("{\"ids\": [", stdout);
        for (size_t i = 0; i < n_ids; i++)
                printf(i ? ", %d" : "%d", ids[i]);
        fputs("], \"embedding\": [", stdout);
        for (size_t i = 0; i < n_embd; i++)
                printf(i ? ", %.9g" : "%.9g", (double)v[i]);
        fputs("]}\n", stdout);
}

/* The file, in this process. */
static int embed_local(const char *path, int threads, const struct texts *t, bool normalize, bool truncate) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_vocab *v = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_embedder *e = NULL;
        size_t *lens = NULL;
        int rc = 1, r;

        if ((r = lmp_gguf_open(path, &g, &err)) < 0 || (r = lmp_model_load(g, lmp_cpu_isa(), &m, &err)) < 0 ||
            (r = lmp_vocab_load(g, &v, &err)) < 0) {
                fprintf(stderr, "lmpool embed: %s: %s\n", path, err.msg);
                goto out;
        }
        if ((r = lmp_threadpool_new(threads, &pool)) < 0) {
                fprintf(stderr, "lmpool embed: cannot start %d threads: %s\n", threads, strerror(-r));
                goto out;
        }
        struct lmp_embedder_params p = { .model = m, .vocab = v, .pool = pool };
        if ((r = lmp_embedder_new(&p, &e, &err)) < 0) {
                fprintf(stderr, "lmpool embed: %s: %s\n", path, err.msg);
                rc = r == -EINVAL ? cli_exit_status(LMP_CLIENT_BAD_REQUEST) : 1;
                goto out;
        }
        if (!(lens = malloc((t->n ? t->n : 1) * sizeof(*lens))))
                goto out;
        for (size_t i = 0; i < t->n; i++)
                lens[i] = strlen(t->v[i]);
        for (size_t first = 0; first < t->n; first += CHUNK) {
                size_t n = LMP_MIN((size_t)CHUNK, t->n - first);
                if ((r = lmp_embedder_run(e, (const char *const *)t->v + first, lens + first, n, normalize, truncate,
                                          0, &err)) < 0) {
                        fprintf(stderr, "lmpool embed: %s: texts %zu to %zu: %s\n",
                                r == -E2BIG ? "too_long" : "internal", first, first + n - 1, err.msg);
                        rc = cli_exit_status(r == -E2BIG ? LMP_CLIENT_TOO_LONG : LMP_CLIENT_INTERNAL);
                        goto out;
                }
                for (size_t i = 0; i < n; i++) {
                        uint32_t n_ids;
                        const int32_t *ids = lmp_embedder_ids(e, i, &n_ids);
                        print_line(ids, n_ids, lmp_embedder_vector(e, i), lmp_embedder_n_embd(e));
                }
        }
        rc = fflush(stdout) == 0 ? 0 : 1;
out:
        free(lens);
        lmp_embedder_free(e);
        lmp_threadpool_free(pool);
        lmp_vocab_free(v);
        lmp_model_free(m);
        lmp_gguf_free(g);
        return rc;
}

/* lmpoold's model. */
static int embed_daemon(const char *model, const char *endpoint, const struct cli_curve *curve, int timeout_ms,
                        const struct texts *t, bool normalize, bool truncate) {
        struct lmp_client *client = NULL;
        struct lmp_client_embed_params p;
        int status = 0;

        if (cli_connect("embed", endpoint, curve, timeout_ms, &client) != 0)
                return 1;
        lmp_client_embed_params_init(&p);
        p.model = model;
        p.normalize = normalize;
        p.truncate = truncate;
        p.return_ids = true;
        p.timeout_ms = timeout_ms;
        for (size_t first = 0; first < t->n && status == 0; first += CHUNK) {
                size_t n = LMP_MIN((size_t)CHUNK, t->n - first);
                struct lmp_client_embeddings out = { 0 };
                struct lmp_client_result res;
                int rc = lmp_client_embed(client, &p, (const char *const *)t->v + first, n, &out, &res);
                if (rc < 0) {
                        status = cli_fail("embed", rc, &res, endpoint);
                } else {
                        for (size_t i = 0; i < out.n; i++)
                                print_line(out.ids ? out.ids + out.ids_off[i] : NULL,
                                           out.ids ? out.ids_off[i + 1] - out.ids_off[i] : 0,
                                           out.vectors + i * out.n_embd, out.n_embd);
                }
                lmp_client_embeddings_clear(&out);
                lmp_client_result_clear(&res);
        }
        lmp_client_free(client);
        if (status == 0 && fflush(stdout) != 0)
                status = 1;
        return status;
}

/* --text, once for each text. */
static int add_text(struct lmp_args *a, const struct lmp_opt *o) {
        char *s = strdup(optarg);
        if (!s || texts_add(o->ret, s) < 0) {
                free(s);
                fprintf(stderr, "%s: out of memory\n", a->prog);
                return 1;
        }
        return LMP_ARGS_GO;
}

int lmp_cmd_embed(int argc, char **argv) {
        struct texts t = { 0 };
        struct cli_curve curve = { 0 };
        const char *path = NULL, *model = NULL, *endpoint = NULL;
        bool no_normalize = false, truncate = false;
        int threads = 0, timeout_ms = 0, rc;
        const struct lmp_opt opts[] = {
                { "text", 0, LMP_OPT_CALL, &t, .call = add_text },
                { "model", 0, LMP_OPT_STRING, &model },
                { "no-normalize", 0, LMP_OPT_FLAG, &no_normalize },
                { "truncate", 0, LMP_OPT_FLAG, &truncate },
                { "threads", 0, LMP_OPT_INT, &threads, 0, LMP_THREADPOOL_MAX },
                { "endpoint", 0, LMP_OPT_STRING, &endpoint },
                { "timeout-ms", 0, LMP_OPT_INT, &timeout_ms, 1, LMP_PROTO_TIMEOUT_MS_MAX },
                { "server-key", 0, LMP_OPT_STRING, &curve.server_key },
                { "key", 0, LMP_OPT_STRING, &curve.key },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };

        rc = lmp_args_parse_operand("lmpool embed", argc, argv, opts, usage, &path);
        if (rc != LMP_ARGS_GO)
                goto out;
        rc = 2;
        if (!path == !model) {
                fprintf(stderr, "lmpool embed: give either a model file or --model NAME\n");
                usage(stderr);
                goto out;
        }
        if (path && (endpoint || timeout_ms || curve.server_key || curve.key)) {
                fprintf(stderr, "lmpool embed: --endpoint, --timeout-ms and the keys are for --model (the daemon)\n");
                goto out;
        }
        if (t.n == 0) {
                int r = read_lines(&t);
                if (r < 0) {
                        fprintf(stderr, "lmpool embed: reading stdin: %s\n", strerror(-r));
                        rc = 1;
                        goto out;
                }
                if (t.n == 0) {
                        fprintf(stderr, "lmpool embed: no text (give --text or lines on stdin)\n");
                        goto out;
                }
        }
        rc = path ? embed_local(path, threads, &t, !no_normalize, truncate)
                  : embed_daemon(model, endpoint, &curve, timeout_ms, &t, !no_normalize, truncate);
out:
        texts_free(&t);
        return rc;
}

/* `lmpool logits MODEL --ids "1 2 3" [--top K] [--threads T]`: evaluates the
 * ids as one batch (positions 0..n-1 of one sequence) and prints one JSON
 * line per position:
 *   {"pos": i, "logits": [... all n_vocab values ...]}
 * or, with --top K, the K largest in decreasing order:
 *   {"pos": i, "top_ids": [...], "top_logits": [...]}
 * This is the conformance entry point for outside tools: keep the format
 * stable. Floats are printed with 9 significant digits (exact for f32). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli_model.h"
#include "client/commands.h"
#include "common/args.h"

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool logits MODEL --ids \"1 2 3\" [--top K] [--threads T]\n"
                   "Evaluates the token ids as one batch and prints one JSON line per position.\n");
}

/* Indices of the k largest values, in decreasing order (ties: lower id first). */
static void top_k(const float *x, uint32_t n, uint32_t k, uint32_t *out) {
        uint32_t have = 0;
        if (k == 0)
                return;
        for (uint32_t i = 0; i < n; i++) {
                if (have == k && !(x[i] > x[out[k - 1]]))
                        continue;
                uint32_t j = have < k ? have++ : k - 1;
                while (j > 0 && x[i] > x[out[j - 1]]) {
                        out[j] = out[j - 1];
                        j--;
                }
                out[j] = i;
        }
}

int lmp_cmd_logits(int argc, char **argv) {
        const char *path = NULL, *ids_arg = NULL;
        long long top = -1, threads = 0;
        const struct lmp_opt opts[] = {
                { "ids", 0, LMP_OPT_STRING, &ids_arg },
                { "top", 0, LMP_OPT_LONG, &top, 0, 1 << 24 },
                { "threads", 0, LMP_OPT_LONG, &threads, 0, LMP_THREADPOOL_MAX },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool logits", argc, argv, opts, usage, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!path || !ids_arg) {
                usage(stderr);
                return 2;
        }
        int32_t *ids = NULL;
        int n = lmp_cli_parse_ids("logits", ids_arg, &ids);
        if (n < 0)
                return 2;

        int rc = 1;
        struct cli_model cm = { 0 };
        struct lmp_batch_entry *batch = NULL;
        float *logits = NULL;
        uint32_t *best = NULL;
        if (lmp_cli_model_open("logits", path, (int)threads, (uint32_t)n, (uint32_t)n, &cm) < 0)
                goto out;
        uint32_t n_vocab = cm.model->hp.n_vocab;
        uint32_t k = top < 0 ? 0 : (uint32_t)LMP_MIN((long)n_vocab, top);
        batch = calloc((size_t)n, sizeof(*batch));
        logits = malloc((size_t)n * n_vocab * sizeof(float));
        best = malloc(((size_t)k + 1) * sizeof(*best));
        if (!batch || !logits || !best) {
                fprintf(stderr, "lmpool logits: out of memory for %d positions\n", n);
                goto out;
        }
        for (int i = 0; i < n; i++)
                batch[i] = (struct lmp_batch_entry){ .token = ids[i], .pos = i, .seq = 0, .logits = true };
        struct lmp_error err = { 0 };
        if (lmp_ctx_decode(cm.ctx, batch, (uint32_t)n, logits, &err) < 0) {
                fprintf(stderr, "lmpool logits: %s: %s\n", path, err.msg);
                goto out;
        }
        for (int i = 0; i < n; i++) {
                const float *l = logits + (size_t)i * n_vocab;
                if (top < 0) {
                        printf("{\"pos\": %d, \"logits\": [", i);
                        for (uint32_t v = 0; v < n_vocab; v++)
                                printf(v ? ", %.9g" : "%.9g", l[v]);
                        printf("]}\n");
                        continue;
                }
                top_k(l, n_vocab, k, best);
                printf("{\"pos\": %d, \"top_ids\": [", i);
                for (uint32_t j = 0; j < k; j++)
                        printf(j ? ", %u" : "%u", best[j]);
                printf("], \"top_logits\": [");
                for (uint32_t j = 0; j < k; j++)
                        printf(j ? ", %.9g" : "%.9g", l[best[j]]);
                printf("]}\n");
        }
        rc = fflush(stdout) == 0 ? 0 : 1;
out:
        free(best);
        free(logits);
        free(batch);
        free(ids);
        lmp_cli_model_close(&cm);
        return rc;
}

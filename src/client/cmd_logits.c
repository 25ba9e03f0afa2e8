/* `lmpool logits MODEL --ids "1 2 3" [--top K] [--threads T]`: evaluates the
 * ids as one batch (positions 0..n-1 of one sequence) and prints one JSON
 * line per position:
 *   {"pos": i, "logits": [... all n_vocab values ...]}
 * or, with --top K, the K largest in decreasing order:
 *   {"pos": i, "top_ids": [...], "top_logits": [...]}
 * `lmpool logits MODEL --mmproj MMPROJ --image FILE --prompt TEXT` does the
 * same for a prompt with an image (client/cli_vision.h: <__media__> marks
 * its place, else it goes first): a line per text token and per image
 * token, each also with "token": id (text) or "image_token": k (the k-th of
 * the image's) and "rope_pos": [t, y, x], its rotary positions; --ids then
 * adds token ids after the prompt (a continuation fed back).
 * This is the conformance entry point for outside tools: keep the format
 * stable. Floats are printed with 9 significant digits (exact for f32). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli_model.h"
#include "client/cli_vision.h"
#include "client/commands.h"
#include "common/args.h"

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool logits MODEL (--ids \"1 2 3\" | --mmproj MMPROJ --image FILE --prompt TEXT)\n"
                   "                     [--ids \"...\"] [--top K] [--threads T]\n"
                   "Evaluates the token ids (or the prompt with its image) as one batch and prints\n"
                   "one JSON line per position. " LMP_MEDIA_MARKER " in the prompt marks the image's place;\n"
                   "with an image, --ids are fed after the prompt.\n");
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
        const char *path = NULL, *ids_arg = NULL, *mmproj = NULL, *image = NULL, *prompt = NULL;
        long long top = -1, threads = 0;
        const struct lmp_opt opts[] = {
                { "ids", 0, LMP_OPT_STRING, &ids_arg },
                { "mmproj", 0, LMP_OPT_STRING, &mmproj },
                { "image", 0, LMP_OPT_STRING, &image },
                { "prompt", 0, LMP_OPT_STRING, &prompt },
                { "top", 0, LMP_OPT_LONG, &top, 0, 1 << 24 },
                { "threads", 0, LMP_OPT_LONG, &threads, 0, LMP_THREADPOOL_MAX },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool logits", argc, argv, opts, usage, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        bool with_image = mmproj || image;
        if (!path || (with_image ? !(mmproj && image && prompt) : !ids_arg || prompt)) {
                usage(stderr);
                return 2;
        }
        int32_t *ids = NULL;
        int n = 0;
        if (ids_arg && (n = lmp_cli_parse_ids("logits", ids_arg, &ids)) < 0)
                return 2;

        int rc = 1;
        struct cli_model cm = { 0 };
        struct lmp_batch_entry *batch = NULL;
        float *logits = NULL;
        uint32_t *best = NULL;
        struct lmp_vocab *vocab = NULL;
        struct cli_mm_prompt mp = { 0 };
        struct lmp_error err = { 0 };
        if (with_image) {
                /* the context's size comes from the prompt: open, encode, reopen */
                if (lmp_cli_model_open("logits", path, (int)threads, 0, 1, &cm) < 0)
                        goto out;
                if (lmp_vocab_load(cm.gguf, &vocab, &err) < 0) {
                        fprintf(stderr, "lmpool logits: %s: %s\n", path, err.msg);
                        goto out;
                }
                if (lmp_cli_mm_prompt("logits", &cm, vocab, mmproj, image, prompt, &mp) < 0)
                        goto out;
                if (ids && lmp_cli_mm_append(&mp, ids, n) < 0) {
                        fprintf(stderr, "lmpool logits: out of memory\n");
                        goto out;
                }
                n = mp.n;
                lmp_ctx_free(cm.ctx);
                cm.ctx = NULL;
                struct lmp_ctx_params cp = { .n_ctx = (uint32_t)n, .n_seq = 1, .n_batch = (uint32_t)n };
                if (lmp_ctx_new(cm.model, &cp, cm.pool, &cm.ctx, &err) < 0) {
                        fprintf(stderr, "lmpool logits: %s: %s\n", path, err.msg);
                        goto out;
                }
        } else if (lmp_cli_model_open("logits", path, (int)threads, (uint32_t)n, (uint32_t)n, &cm) < 0) {
                goto out;
        }
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
                batch[i] = with_image ? lmp_cli_mm_entry(&mp, i, true)
                                      : (struct lmp_batch_entry){ .token = ids[i], .pos = i, .seq = 0,
                                                                  .logits = true };
        if (lmp_ctx_decode(cm.ctx, batch, (uint32_t)n, logits, &err) < 0) {
                fprintf(stderr, "lmpool logits: %s: %s\n", path, err.msg);
                goto out;
        }
        for (int i = 0; i < n; i++) {
                const float *l = logits + (size_t)i * n_vocab;
                printf("{\"pos\": %d, ", i);
                if (with_image && mp.ids[i] < 0)
                        printf("\"image_token\": %d, ", i - mp.image_first);
                else if (with_image)
                        printf("\"token\": %d, ", mp.ids[i]);
                if (with_image)
                        printf("\"rope_pos\": [%d, %d, %d], ", mp.rope_pos[i][0], mp.rope_pos[i][1],
                               mp.rope_pos[i][2]);
                if (top < 0) {
                        printf("\"logits\": [");
                        for (uint32_t v = 0; v < n_vocab; v++)
                                printf(v ? ", %.9g" : "%.9g", l[v]);
                        printf("]}\n");
                        continue;
                }
                top_k(l, n_vocab, k, best);
                printf("\"top_ids\": [");
                for (uint32_t j = 0; j < k; j++)
                        printf(j ? ", %u" : "%u", best[j]);
                printf("], \"top_logits\": [");
                for (uint32_t j = 0; j < k; j++)
                        printf(j ? ", %.9g" : "%.9g", l[best[j]]);
                printf("]}\n");
        }
        rc = fflush(stdout) == 0 ? 0 : 1;
out:
        lmp_cli_mm_prompt_free(&mp);
        lmp_vocab_free(vocab);
        free(best);
        free(logits);
        free(batch);
        free(ids);
        lmp_cli_model_close(&cm);
        return rc;
}

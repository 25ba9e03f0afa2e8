/* `lmpool run MODEL --ids "1 2 3" [-n N] [--temp T] [--top-k K] [--top-p P]
 * [--seed S] [--threads T] [--ctx N] [--ignore-eos] [--print-ids]`:
 * evaluates the prompt as batches, then generates up to N tokens one at a
 * time, streaming them to stdout as they come, and prints the prompt and
 * generation speeds (tokens/s) to stderr. Generation stops early at the
 * model's end-of-sequence token (unless --ignore-eos) or when the context is
 * full.
 *
 * Known limits, written where they live: output is token ids until the
 * tokenizer is wired in (then --print-ids keeps ids and --prompt TEXT is
 * accepted); only greedy decoding (--temp 0) is implemented until the
 * sampler is, so --temp > 0, --top-k, --top-p and --seed are refused rather
 * than silently ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/cli_model.h"
#include "client/commands.h"

#define PROMPT_BATCH 512

static void usage(FILE *f) {
        fprintf(f,
                "usage: lmpool run MODEL --ids \"1 2 3\" [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                "                  [--seed S] [--threads T] [--ctx N] [--ignore-eos] [--print-ids]\n"
                "Generates from a prompt of token ids; prints prompt and generation tokens/s.\n"
                "  -n N          tokens to generate (default 64)\n"
                "  --temp T      temperature; 0 (the default) is greedy\n"
                "  --threads T   worker threads (default: one per CPU)\n"
                "  --ctx N       context length (default: the model's)\n");
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t argmax(const float *x, uint32_t n) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
                if (x[i] > x[best])
                        best = i;
        return best;
}

int lmp_cmd_run(int argc, char **argv) {
        const char *path = NULL, *ids_arg = NULL;
        long n_gen = 64, threads = 0, n_ctx = 0;
        double temp = 0.0;
        bool ignore_eos = false, sampling_opt = false;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *next = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        usage(stdout);
                        return 0;
                } else if (strcmp(a, "--ids") == 0 && next) {
                        ids_arg = argv[++i];
                } else if (strcmp(a, "--prompt") == 0) {
                        fprintf(stderr, "lmpool run: --prompt needs the tokenizer; give --ids\n");
                        return 2;
                } else if (strcmp(a, "-n") == 0) {
                        if ((n_gen = lmp_cli_parse_long("run", a, next, 1 << 24)) < 0)
                                return 2;
                        i++;
                } else if (strcmp(a, "--threads") == 0) {
                        if ((threads = lmp_cli_parse_long("run", a, next, LMP_THREADPOOL_MAX)) < 0)
                                return 2;
                        i++;
                } else if (strcmp(a, "--ctx") == 0) {
                        if ((n_ctx = lmp_cli_parse_long("run", a, next, 1 << 24)) < 0)
                                return 2;
                        i++;
                } else if (strcmp(a, "--temp") == 0) {
                        char *end;
                        temp = next ? strtod(next, &end) : -1.0;
                        if (!next || *end || end == next || !(temp >= 0.0)) {
                                fprintf(stderr, "lmpool run: --temp: expected a number >= 0\n");
                                return 2;
                        }
                        i++;
                } else if ((strcmp(a, "--top-k") == 0 || strcmp(a, "--top-p") == 0 ||
                            strcmp(a, "--seed") == 0) && next) {
                        sampling_opt = true;
                        i++;
                } else if (strcmp(a, "--ignore-eos") == 0) {
                        ignore_eos = true;
                } else if (strcmp(a, "--print-ids") == 0) {
                        /* The only output form until the tokenizer is wired in. */
                } else if (a[0] == '-' || path) {
                        fprintf(stderr, "lmpool run: unexpected argument '%s'\n", a);
                        usage(stderr);
                        return 2;
                } else {
                        path = a;
                }
        }
        if (!path || !ids_arg) {
                usage(stderr);
                return 2;
        }
        if (temp > 0.0 || sampling_opt) {
                fprintf(stderr, "lmpool run: only greedy decoding (--temp 0) is available in this build\n");
                return 2;
        }
        int32_t *ids = NULL;
        int n_prompt = lmp_cli_parse_ids("run", ids_arg, &ids);
        if (n_prompt < 0)
                return 2;

        int rc = 1;
        struct cli_model cm = { 0 };
        struct lmp_batch_entry *batch = NULL;
        float *logits = NULL;
        if (lmp_cli_model_open("run", path, (int)threads, (uint32_t)n_ctx, PROMPT_BATCH, &cm) < 0)
                goto out;
        uint32_t n_vocab = cm.model->hp.n_vocab;
        uint32_t ctx_len = lmp_ctx_n_ctx(cm.ctx);
        uint32_t eos = UINT32_MAX;
        if (lmp_gguf_get_u32(cm.gguf, "tokenizer.ggml.eos_token_id", &eos) < 0)
                eos = UINT32_MAX;
        batch = calloc(PROMPT_BATCH, sizeof(*batch));
        logits = malloc((size_t)n_vocab * sizeof(float));
        if (!batch || !logits) {
                fprintf(stderr, "lmpool run: out of memory\n");
                goto out;
        }
        if ((uint32_t)n_prompt >= ctx_len) {
                fprintf(stderr, "lmpool run: prompt of %d tokens does not fit the context (%u)\n",
                        n_prompt, ctx_len);
                goto out;
        }

        struct lmp_error err = { 0 };
        double t0 = now_s();
        for (int p0 = 0; p0 < n_prompt; p0 += PROMPT_BATCH) {
                int nb = LMP_MIN(PROMPT_BATCH, n_prompt - p0);
                for (int i = 0; i < nb; i++)
                        batch[i] = (struct lmp_batch_entry){
                                .token = ids[p0 + i], .pos = p0 + i, .seq = 0,
                                .logits = p0 + i == n_prompt - 1,
                        };
                if (lmp_ctx_decode(cm.ctx, batch, (uint32_t)nb, logits, &err) < 0) {
                        fprintf(stderr, "lmpool run: %s: %s\n", path, err.msg);
                        goto out;
                }
        }
        double t1 = now_s();

        long n_done = 0;
        const char *stop = "length";
        for (int32_t pos = n_prompt; n_done < n_gen; pos++) {
                uint32_t tok = argmax(logits, n_vocab);
                printf(n_done ? " %u" : "%u", tok);
                fflush(stdout);
                n_done++;
                if (tok == eos && !ignore_eos) {
                        stop = "end of sequence";
                        break;
                }
                if (n_done == n_gen)
                        break;
                if ((uint32_t)pos >= ctx_len) {
                        stop = "context full";
                        break;
                }
                struct lmp_batch_entry e = { .token = (int32_t)tok, .pos = pos, .seq = 0, .logits = true };
                if (lmp_ctx_decode(cm.ctx, &e, 1, logits, &err) < 0) {
                        fprintf(stderr, "\nlmpool run: %s: %s\n", path, err.msg);
                        goto out;
                }
        }
        double t2 = now_s();
        printf("\n");
        /* The first generated token comes from the prompt's logits; each
         * later one costs one decode step. */
        double gen_s = t2 - t1;
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tokens/s)\n", n_prompt, t1 - t0,
                n_prompt / (t1 - t0));
        fprintf(stderr, "generation: %ld tokens in %.3f s (%.2f tokens/s), stopped by %s\n", n_done,
                gen_s, n_done > 1 ? (double)(n_done - 1) / gen_s : 0.0, stop);
        rc = 0;
out:
        free(logits);
        free(batch);
        free(ids);
        lmp_cli_model_close(&cm);
        return rc;
}

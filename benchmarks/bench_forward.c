/* Forward-pass throughput: for each model file given (default: the
 * fixture models llama-q4_k_m, llama-q8_0, llama-f32), the time to evaluate
 * a prompt of 128 tokens as one batch and to decode 64 tokens one at a
 * time, with the thread count of LMPOOL_THREADS (default 2). Prints one
 * JSON line per model and then a table. Figures, not assertions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_models.h"
#include "model/model.h"

#define N_PROMPT 128
#define N_GEN 64

struct result {
        char name[128];
        double prompt_tps, gen_tps;
};

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench(const char *path, int n_threads, struct result *res) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL;
        float *logits = NULL;
        int rc = -1;
        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_model_load(g, lmp_cpu_isa(), &m, &err) < 0 ||
            lmp_threadpool_new(n_threads, &pool) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        struct lmp_ctx_params p = { .n_ctx = N_PROMPT + N_GEN, .n_seq = 1, .n_batch = N_PROMPT };
        if (lmp_ctx_new(m, &p, pool, &c, &err) < 0 || !(logits = malloc(sizeof(float) * m->hp.n_vocab))) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        struct lmp_batch_entry batch[N_PROMPT];
        for (int i = 0; i < N_PROMPT; i++)
                batch[i] = (struct lmp_batch_entry){ .token = (i * 31 + 1) % (int)m->hp.n_vocab, .pos = i,
                                                     .logits = i == N_PROMPT - 1 };
        double t0 = now_s();
        if (lmp_ctx_decode(c, batch, N_PROMPT, logits, &err) < 0)
                goto fail;
        double t1 = now_s();
        for (int i = 0; i < N_GEN; i++) {
                struct lmp_batch_entry e = { .token = (i * 17 + 5) % (int)m->hp.n_vocab,
                                             .pos = N_PROMPT + i, .logits = true };
                if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0)
                        goto fail;
        }
        double t2 = now_s();
        res->prompt_tps = N_PROMPT / (t1 - t0);
        res->gen_tps = N_GEN / (t2 - t1);
        rc = 0;
        goto out;
fail:
        fprintf(stderr, "%s: %s\n", path, err.msg);
out:
        free(logits);
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        lmp_model_free(m);
        lmp_gguf_free(g);
        return rc;
}

int main(int argc, char **argv) {
        static const char *const defaults[] = { "llama-q4_k_m", "llama-q8_0", "llama-f32" };
        const char *thr = getenv("LMPOOL_THREADS");
        int n_threads = thr ? atoi(thr) : 2;
        int n = argc > 1 ? argc - 1 : 3;
        struct result *res = calloc((size_t)n, sizeof(*res));
        if (!res)
                return 1;
        int done = 0;
        for (int i = 0; i < n; i++) {
                char path[4096];
                if (!fixture_model(argc, argv, defaults, i, path, sizeof(path)))
                        continue;
                const char *base = strrchr(path, '/');
                snprintf(res[done].name, sizeof(res[done].name), "%.100s", base ? base + 1 : path);
                if (bench(path, n_threads, &res[done]) < 0)
                        continue;
                printf("{\"bench\": \"forward\", \"model\": \"%s\", \"threads\": %d, \"prompt_tokens\": %d, "
                       "\"prompt_tokens_per_s\": %.1f, \"gen_tokens\": %d, \"gen_tokens_per_s\": %.1f}\n",
                       res[done].name, n_threads, N_PROMPT, res[done].prompt_tps, N_GEN, res[done].gen_tps);
                done++;
        }
        if (done == 0) {
                printf("no models found: skipped\n");
                free(res);
                return 77;
        }
        printf("\n%-28s %14s %14s\n", "model", "prompt tok/s", "decode tok/s");
        for (int i = 0; i < done; i++)
                printf("%-28s %14.1f %14.1f\n", res[i].name, res[i].prompt_tps, res[i].gen_tps);
        free(res);
        return 0;
}

/* Embedding throughput: texts per second of an embedding model file
 * (lmpool mkmodel --shape bge-small, or a real one) through the embedder a
 * worker runs (src/worker/embed.c), for short texts one at a time (batch
 * 1) and 32 per run (batch 32, whole texts per forward pass).
 *
 *   bench_embed MODEL.gguf TEXTS.txt [--threads N] [--seconds S] [--batch 1|32]
 *
 * --batch runs that batch size alone (for a profile of one). Each batch
 * size runs for about S seconds (default 5) after one warm-up
 * run; prints one JSON line per batch size, then a table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "worker/embed.h"

#define TEXTS_MAX 32

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: bench_embed MODEL.gguf TEXTS.txt [--threads N] [--seconds S] [--batch 1|32]\n");
                return 2;
        }
        int threads = 2;
        double seconds = 5;
        int only = 0;
        for (int i = 3; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--threads") == 0)
                        threads = atoi(argv[i + 1]);
                else if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
                else if (strcmp(argv[i], "--batch") == 0)
                        only = atoi(argv[i + 1]);
        }
        char *texts[TEXTS_MAX];
        size_t lens[TEXTS_MAX], n = 0;
        FILE *f = fopen(argv[2], "r");
        if (!f) {
                perror(argv[2]);
                return 1;
        }
        char line[1024];
        while (n < TEXTS_MAX && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                texts[n] = strdup(line);
                lens[n] = strlen(line);
                n++;
        }
        fclose(f);
        if (n != TEXTS_MAX) {
                fprintf(stderr, "%s: %zu texts, %d needed\n", argv[2], n, TEXTS_MAX);
                return 1;
        }

        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_vocab *v = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_embedder *e = NULL;
        if (lmp_gguf_open(argv[1], &g, &err) < 0 || lmp_model_load(g, lmp_cpu_isa(), &m, &err) < 0 ||
            lmp_vocab_load(g, &v, &err) < 0) {
                fprintf(stderr, "%s: %s\n", argv[1], err.msg);
                return 1;
        }
        if (lmp_threadpool_new(threads, &pool) < 0)
                return 1;
        struct lmp_embedder_params p = { .model = m, .vocab = v, .pool = pool };
        if (lmp_embedder_new(&p, &e, &err) < 0) {
                fprintf(stderr, "%s: %s\n", argv[1], err.msg);
                return 1;
        }
        static const size_t batches[] = { 1, 32 };
        double rate[2] = { 0, 0 }, tok_per_text = 0;
        for (int b = 0; b < 2; b++) {
                size_t bs = batches[b], done = 0;
                if (only && (size_t)only != bs)
                        continue;
                uint64_t tokens = 0;
                /* warm-up */
                if (lmp_embedder_run(e, (const char *const *)texts, lens, bs, true, false, 0, &err) < 0) {
                        fprintf(stderr, "run: %s\n", err.msg);
                        return 1;
                }
                double t0 = now_s(), t;
                do {
                        for (size_t first = 0; first < TEXTS_MAX; first += bs) {
                                if (lmp_embedder_run(e, (const char *const *)texts + first, lens + first, bs, true,
                                                     false, 0, &err) < 0) {
                                        fprintf(stderr, "run: %s\n", err.msg);
                                        return 1;
                                }
                                tokens += lmp_embedder_tokens(e);
                                done += bs;
                        }
                        t = now_s() - t0;
                } while (t < seconds);
                rate[b] = done / t;
                tok_per_text = (double)tokens / done;
                printf("{\"bench\":\"embed\",\"model\":\"%s\",\"threads\":%d,\"batch\":%zu,\"texts\":%zu,"
                       "\"tokens_per_text\":%.1f,\"seconds\":%.2f,\"texts_per_s\":%.1f}\n",
                       argv[1], threads, bs, done, tok_per_text, t, rate[b]);
        }
        printf("\n%8s %8s %14s %12s\n", "batch", "threads", "tokens/text", "texts/s");
        for (int b = 0; b < 2; b++)
                if (!only || (size_t)only == batches[b])
                        printf("%8zu %8d %14.1f %12.1f\n", batches[b], threads, tok_per_text, rate[b]);
        lmp_embedder_free(e);
        lmp_threadpool_free(pool);
        lmp_vocab_free(v);
        lmp_model_free(m);
        lmp_gguf_free(g);
        for (size_t i = 0; i < n; i++)
                free(texts[i]);
        return 0;
}

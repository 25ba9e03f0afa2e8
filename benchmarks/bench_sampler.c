/* Sampler throughput: microseconds per sampled token for vocabulary sizes
 * of real models (Llama 2 32000, Llama 3 128256, Qwen2 151936) and the
 * usual parameter sets, over logits shaped like a model's (a broad noise
 * floor and a few strong candidates). Prints one JSON line per case, then a
 * table. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sampler/sampler.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t state = 0x2545f4914f6cdd1dull;
static double uniform(void) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return (double)(state >> 11) * 0x1.0p-53;
}

struct config {
        const char *name;
        float temperature, top_p, min_p, repeat;
        int32_t top_k, last_n;
};

int main(void) {
        static const int32_t vocabs[] = { 32000, 128256, 151936 };
        static const struct config configs[] = {
                { "greedy", 0.0f, 1.0f, 0.0f, 1.0f, 0, 0 },
                { "temp", 0.8f, 1.0f, 0.0f, 1.0f, 0, 0 },
                { "top-k40 top-p0.95", 0.8f, 0.95f, 0.0f, 1.0f, 40, 0 },
                { "top-p0.95", 0.8f, 0.95f, 0.0f, 1.0f, 0, 0 },
                { "min-p0.05", 0.8f, 1.0f, 0.05f, 1.0f, 0, 0 },
                { "full+penalties", 0.8f, 0.95f, 0.05f, 1.1f, 40, 64 },
        };
        enum { N_CFG = sizeof(configs) / sizeof(configs[0]), N_VOC = 3 };
        double us[N_VOC][N_CFG];

        for (int v = 0; v < N_VOC; v++) {
                int32_t n = vocabs[v];
                float *logits = malloc((size_t)n * sizeof(*logits));
                if (!logits)
                        return 1;
                for (int32_t i = 0; i < n; i++) {
                        /* Box-Muller noise around -2, plus 20 strong tokens. */
                        double u1 = uniform() + 1e-12, u2 = uniform();
                        logits[i] = (float)(-2.0 + 2.0 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
                }
                for (int k = 0; k < 20; k++)
                        logits[(int32_t)(uniform() * n)] = 10.0f + (float)k * 0.3f;

                for (int c = 0; c < N_CFG; c++) {
                        const struct config *cf = &configs[c];
                        struct lmp_sampler_params p;
                        struct lmp_sampler *s;
                        struct lmp_error err;
                        lmp_sampler_params_default(&p);
                        p.temperature = cf->temperature;
                        p.top_k = cf->top_k;
                        p.top_p = cf->top_p;
                        p.min_p = cf->min_p;
                        p.repeat_penalty = cf->repeat;
                        p.penalty_last_n = cf->last_n;
                        p.seed = 1;
                        if (lmp_sampler_new(n, &p, &s, &err) < 0) {
                                fprintf(stderr, "bench_sampler: %s\n", err.msg);
                                return 1;
                        }
                        int iters = 0;
                        double t0 = now(), t;
                        do {
                                int32_t tok = lmp_sampler_sample(s, logits);
                                lmp_sampler_accept(s, tok < 0 ? 0 : tok);
                                iters++;
                                t = now();
                        } while (t - t0 < 0.3 || iters < 20);
                        us[v][c] = (t - t0) / iters * 1e6;
                        printf("{\"bench\": \"sampler\", \"n_vocab\": %d, \"config\": \"%s\", "
                               "\"us_per_token\": %.2f, \"tokens_per_s\": %.0f}\n",
                               n, cf->name, us[v][c], 1e6 / us[v][c]);
                        lmp_sampler_free(s);
                }
                free(logits);
        }

        printf("\n%-20s", "us/token");
        for (int v = 0; v < N_VOC; v++)
                printf(" %10d", vocabs[v]);
        printf("\n");
        for (int c = 0; c < N_CFG; c++) {
                printf("%-20s", configs[c].name);
                for (int v = 0; v < N_VOC; v++)
                        printf(" %10.1f", us[v][c]);
                printf("\n");
        }
        return 0;
}

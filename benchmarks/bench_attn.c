/* A decode step's attention over the KV cache, alone: one token's query
 * heads against L cached positions in every layer, as TinyLlama-1.1B has
 * them (22 layers, 32 query heads in 4 groups sharing a KV head, heads of
 * 64 floats), with a cache larger than the CPU's caches, as a conversation
 * at that depth has it. For each way of computing it, the CPU time of one
 * step (best of PASSES, one thread) split into scores, softmax and
 * weighted sum, and the cache bytes read per CPU second:
 *
 *   sgemm, rows        OpenBLAS cblas_sgemm over the cache as it was laid
 *                      out before (each position's row holds every head)
 *   sgemm, heads       the same over the head-major layout forward.c uses
 *   attn LEVEL, rows   quant/attn.h's kernels at each ISA level
 *   attn LEVEL, heads
 *
 * One JSON line per way, then a table.
 * Usage: bench_attn [DEPTH, 16 to 65536 (default 1024)] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quant/attn.h"

#define LAYERS 22
#define N_KV 4
#define GROUP 8
#define HD 64
#define PASSES 10

static double cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct way {
        const char *name;
        const struct lmp_attn_kernels *ak;      /* NULL: sgemm */
        int heads;                              /* head-major cache */
};

/* One step: every layer, every KV head; t[0..2] += scores, softmax, wsum. */
static void step(const struct way *w, int L, const float *k, const float *v, const float *q, float *s, float *o,
                 double t[3]) {
        const struct lmp_attn_kernels *soft = lmp_attn_kernels(lmp_cpu_isa());
        const size_t per = (size_t)L * N_KV * HD;       /* floats of one layer's keys */
        for (int l = 0; l < LAYERS; l++)
                for (int h = 0; h < N_KV; h++) {
                        const size_t at = (size_t)l * per + (w->heads ? (size_t)h * L * HD : (size_t)h * HD);
                        const size_t ld = w->heads ? HD : N_KV * HD;
                        const float *qh = q + (size_t)h * GROUP * HD;
                        double t0 = cpu_s();
                        if (w->ak)
                                w->ak->scores(HD, GROUP, L, qh, HD, k + at, ld, s, (size_t)L);
                        else
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, GROUP, L, HD, 1.0f, qh, HD,
                                            k + at, (int)ld, 0.0f, s, L);
                        double t1 = cpu_s();
                        for (int i = 0; i < GROUP; i++)
                                (w->ak ? w->ak : soft)->softmax(s + (size_t)i * L, L, 0.125f);
                        double t2 = cpu_s();
                        if (w->ak)
                                w->ak->wsum(HD, GROUP, L, s, (size_t)L, v + at, ld, o + (size_t)h * GROUP * HD, HD);
                        else
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, GROUP, HD, L, 1.0f, s, L,
                                            v + at, (int)ld, 0.0f, o + (size_t)h * GROUP * HD, HD);
                        double t3 = cpu_s();
                        t[0] += t1 - t0;
                        t[1] += t2 - t1;
                        t[2] += t3 - t2;
                }
}

int main(int argc, char **argv) {
        int L = argc > 1 ? atoi(argv[1]) : 1024;
        if (L < 16 || L > 65536) {
                fprintf(stderr, "usage: bench_attn [DEPTH, 16 to 65536]\n");
                return 2;
        }
        openblas_set_num_threads(1);
        const size_t n = (size_t)LAYERS * L * N_KV * HD;
        float *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
        float *q = malloc(N_KV * GROUP * HD * sizeof(float)), *o = malloc(N_KV * GROUP * HD * sizeof(float));
        float *s = malloc((size_t)GROUP * L * sizeof(float));
        if (!k || !v || !q || !o || !s) {
                fprintf(stderr, "bench_attn: out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                k[i] = (float)((i * 7) % 13) * 0.01f - 0.06f;
                v[i] = (float)((i * 5) % 11) * 0.01f - 0.05f;
        }
        for (int i = 0; i < N_KV * GROUP * HD; i++)
                q[i] = (float)(i % 9) * 0.02f - 0.08f;

        struct way ways[2 + 2 * LMP_ISA_COUNT];
        int n_ways = 0;
        ways[n_ways++] = (struct way){ "sgemm, rows", NULL, 0 };
        ways[n_ways++] = (struct way){ "sgemm, heads", NULL, 1 };
        static char names[2 * LMP_ISA_COUNT][32];
        for (int isa = LMP_ISA_SCALAR; isa <= (int)lmp_cpu_isa(); isa++)
                for (int heads = 0; heads < 2; heads++) {
                        char *nm = names[2 * isa + heads];
                        snprintf(nm, sizeof(names[0]), "attn %s, %s", lmp_isa_name((enum lmp_isa)isa),
                                 heads ? "heads" : "rows");
                        ways[n_ways++] = (struct way){ nm, lmp_attn_kernels((enum lmp_isa)isa), heads };
                }
        double best[2 + 2 * LMP_ISA_COUNT][4];
        for (int w = 0; w < n_ways; w++) {
                best[w][3] = 1e30;
                for (int p = 0; p < PASSES; p++) {
                        double t[3] = { 0, 0, 0 };
                        step(&ways[w], L, k, v, q, s, o, t);
                        if (t[0] + t[1] + t[2] < best[w][3]) {
                                for (int i = 0; i < 3; i++)
                                        best[w][i] = t[i];
                                best[w][3] = t[0] + t[1] + t[2];
                        }
                }
                printf("{\"way\": \"%s\", \"depth\": %d, \"scores_ms\": %.3f, \"softmax_ms\": %.3f, \"wsum_ms\": %.3f, "
                       "\"step_ms\": %.3f, \"cache_gbs\": %.2f}\n", ways[w].name, L, 1e3 * best[w][0],
                       1e3 * best[w][1], 1e3 * best[w][2], 1e3 * best[w][3],
                       2.0 * (double)n * sizeof(float) / best[w][3] * 1e-9);
        }
        printf("\n%d positions x %d layers x %d KV heads (%d query heads each, %d floats), %.0f MiB of keys and "
               "values; one thread, best of %d:\n\n", L, LAYERS, N_KV, GROUP, HD,
               2.0 * (double)n * sizeof(float) / (1 << 20), PASSES);
        printf("| way | scores ms | softmax ms | weighted sum ms | step ms | cache GB/s |\n|---|---|---|---|---|---|\n");
        for (int w = 0; w < n_ways; w++)
                printf("| %s | %.2f | %.2f | %.2f | %.2f | %.1f |\n", ways[w].name, 1e3 * best[w][0],
                       1e3 * best[w][1], 1e3 * best[w][2], 1e3 * best[w][3],
                       2.0 * (double)n * sizeof(float) / best[w][3] * 1e-9);
        free(k);
        free(v);
        free(q);
        free(o);
        free(s);
        return 0;
}

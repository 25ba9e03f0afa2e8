/* The bf16 products (quant/bf16gemm.h) against OpenBLAS's sgemm on the
 * same shapes, one thread: out (n, m) += x (n, k) w^T for the shapes the
 * vision encoder (Qwen2-VL 2B: 1024 patches by 1280, 5120) and a small
 * language model's prompt (Qwen2.5-0.5B: 128 tokens by 896, 4864) multiply.
 * For each shape, GFLOP/s of CPU time (best of PASSES) of:
 *
 *   sgemm        cblas_sgemm on f32 weights and activations
 *   bf16         lmp_gemm_bf16() at the AVX-512 level (AVX512-BF16), on
 *                weights packed beforehand
 *   bf16+pack    the same, packing the weights from f16 rows on each pass
 *                (what a product does with the file's rows)
 *   bf16 scalar  the scalar twin, on the smallest shape only
 *
 * One JSON line per shape and way, then a table. Without AVX512-BF16
 * (or with LMPOOL_BF16=off) only sgemm and the scalar twin run.
 * Usage: bench_bf16 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/bf16gemm.h"
#include "quant/fp16.h"

#define PASSES 5

static double cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t n) {
        void *p = malloc(n);
        if (!p) {
                fprintf(stderr, "bench_bf16: out of memory\n");
                exit(1);
        }
        return p;
}

static float rnd(uint64_t *s) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        return (float)(int32_t)(*s >> 32) * 0x1p-31f;
}

struct shape {
        const char *what;
        int64_t m, k, n;        /* rows, inputs, tokens */
};

static const struct shape shapes[] = {
        { "ViT q/k/v/out (1280 x 1280, 1024 patches)", 1280, 1280, 1024 },
        { "ViT ffn_up (5120 x 1280, 1024 patches)", 5120, 1280, 1024 },
        { "ViT ffn_down (1280 x 5120, 1024 patches)", 1280, 5120, 1024 },
        { "LM q (896 x 896, 128 tokens)", 896, 896, 128 },
        { "LM ffn_down (896 x 4864, 128 tokens)", 896, 4864, 128 },
};

int main(void) {
        const bool bf16 = lmp_cpu_bf16();
        openblas_set_num_threads(1);
        printf("%-44s %10s %10s %10s %12s\n", "shape", "sgemm", "bf16", "bf16+pack", "bf16 scalar");
        for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
                const struct shape *sh = &shapes[si];
                const int64_t m = sh->m, k = sh->k, n = sh->n, kp = lmp_bf16_kp(k);
                float *w = xmalloc((size_t)(m * k) * sizeof(float)), *x = xmalloc((size_t)(n * k) * sizeof(float));
                float *out = xmalloc((size_t)(n * m) * sizeof(float));
                uint16_t *wh = xmalloc((size_t)(m * k) * sizeof(uint16_t));
                uint16_t *wp = xmalloc(lmp_bf16_packed_size(m, k) * sizeof(uint16_t));
                uint16_t *xb = xmalloc((size_t)(n * kp) * sizeof(uint16_t));
                uint64_t seed = 1;
                for (int64_t i = 0; i < m * k; i++) {
                        wh[i] = lmp_f32_to_fp16(lmp_bf16_to_f32(lmp_f32_to_bf16(0.05f * rnd(&seed))));
                        w[i] = lmp_fp16_to_f32(wh[i]);
                }
                for (int64_t i = 0; i < n * k; i++)
                        x[i] = rnd(&seed);
                for (int64_t t = 0; t < n; t++)
                        lmp_bf16_from_f32(bf16 ? LMP_ISA_AVX512 : LMP_ISA_SCALAR, x + t * k, k, xb + t * kp);
                lmp_bf16_pack(bf16 ? LMP_ISA_AVX512 : LMP_ISA_SCALAR, LMP_TYPE_F16, wh, m, k,
                              (size_t)k * sizeof(uint16_t), wp);
                const double flop = 2.0 * (double)m * (double)k * (double)n;
                double best[4] = { 0, 0, 0, 0 };
                for (int way = 0; way < 4; way++) {
                        if ((way == 1 || way == 2) && !bf16)
                                continue;
                        if (way == 3 && si != 0)
                                continue;
                        for (int pass = 0; pass < (way == 3 ? 1 : PASSES); pass++) {
                                memset(out, 0, (size_t)(n * m) * sizeof(float));
                                const double t0 = cpu_s();
                                if (way == 0)
                                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, (int)k,
                                                    1.0f, x, (int)k, w, (int)k, 1.0f, out, (int)m);
                                else if (way == 3)
                                        lmp_gemm_bf16(LMP_ISA_SCALAR, k, m, n, wp, xb, (size_t)kp, out, (size_t)m);
                                else {
                                        if (way == 2)
                                                lmp_bf16_pack(LMP_ISA_AVX512, LMP_TYPE_F16, wh, m, k,
                                                              (size_t)k * sizeof(uint16_t), wp);
                                        lmp_gemm_bf16(LMP_ISA_AVX512, k, m, n, wp, xb, (size_t)kp, out, (size_t)m);
                                }
                                const double dt = cpu_s() - t0;
                                if (dt > 0 && flop / dt / 1e9 > best[way])
                                        best[way] = flop / dt / 1e9;
                        }
                        static const char *const names[] = { "sgemm", "bf16", "bf16+pack", "bf16 scalar" };
                        fprintf(stderr, "{\"bench\":\"bf16\",\"m\":%lld,\"k\":%lld,\"n\":%lld,\"way\":\"%s\","
                                        "\"gflops\":%.1f}\n",
                                (long long)m, (long long)k, (long long)n, names[way], best[way]);
                }
                printf("%-44s %10.1f %10.1f %10.1f %12.1f\n", sh->what, best[0], best[1], best[2], best[3]);
                free(w), free(x), free(out), free(wh), free(wp), free(xb);
        }
        printf("(GFLOP/s of CPU time, one thread, best of %d; 0: not run)\n", PASSES);
        return 0;
}

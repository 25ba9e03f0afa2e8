/* The matrix product of a batched decode step, kernel by kernel: a weight
 * matrix larger than the caches (rows of n_embd = 2048 values, as in
 * TinyLlama's attention and gate/up matrices) times 1 to 8 activation
 * rows, through one vec_dot per (row, token) pair, the gemm (tile product
 * of prompts) and the gemm_few (decode steps of a few sequences), at the
 * best ISA level of this CPU, for the K-quants and the 32-value blocks
 * (q4_0, q5_0, q8_0: vec_dot and gemm only). For each it prints the CPU time of one pass
 * over the matrix (best of PASSES; CPU time so that other processes on a
 * shared machine do not inflate it), the weight bytes per CPU second, and
 * the cost of the pass relative to one token's vec_dots: a step of S
 * sequences can give at most S / that ratio times the single-sequence
 * rate. One JSON line per measurement, then a table.
 * Usage: bench_gemm_few [MiB, 16 to 4096 (default 256)] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/quant.h"
#include "quant/repack.h"

#define N_IN 2048
#define PASSES 5
#define MAX_TOK LMP_GEMM_FEW_MAX_TOK
#define GEMM_ROWS 64            /* rows per kernel call, as a thread-pool task gives */

enum how { BY_DOT, BY_GEMM, BY_FEW, BY_R16 };
static const char *const how_names[] = { "vec_dot", "gemm", "gemm_few", "gemm_r16" };

static double cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best CPU seconds of one pass over rows x nt products. */
static double pass(const struct lmp_quant_traits *tr, enum how how, const uint8_t *w, size_t rb, size_t rows,
                   const uint8_t *act, size_t ab, int nt, float *out) {
        double best = 1e30;
        for (int p = 0; p < PASSES; p++) {
                const double c0 = cpu_s();
                if (how == BY_DOT) {
                        for (int t = 0; t < nt; t++)
                                for (size_t r = 0; r < rows; r++)
                                        tr->vec_dot(N_IN, &out[(size_t)t * rows + r], w + r * rb, act + (size_t)t * ab);
                } else if (how == BY_R16) {
                        for (size_t r0 = 0; r0 < rows; r0 += GEMM_ROWS) {
                                const int nr = (int)(rows - r0 < GEMM_ROWS ? rows - r0 : GEMM_ROWS);
                                tr->gemm_r16(N_IN, nr / 16, nt, w + r0 * rb, act, ab, out + r0, rows);
                        }
                } else {
                        for (size_t r0 = 0; r0 < rows; r0 += GEMM_ROWS) {
                                const int nr = (int)(rows - r0 < GEMM_ROWS ? rows - r0 : GEMM_ROWS);
                                (how == BY_GEMM ? tr->gemm : tr->gemm_few)(N_IN, nr, nt, w + r0 * rb, rb, act, ab,
                                                                           out + r0, rows);
                        }
                }
                const double c = cpu_s() - c0;
                best = c < best ? c : best;
        }
        return best;
}

int main(int argc, char **argv) {
        long mib = 256;
        if (argc > 1) {
                char *end;
                mib = strtol(argv[1], &end, 10);
                if (*end || mib < 16 || mib > 4096) {
                        fprintf(stderr, "usage: %s [MiB, 16 to 4096]\n", argv[0]);
                        return 2;
                }
        }
        const enum lmp_type types[] = { LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K,
                                        LMP_TYPE_Q4_0, LMP_TYPE_Q5_0, LMP_TYPE_Q8_0 };
        const enum lmp_isa isa = lmp_cpu_isa();
        printf("# %s level, %ld MiB matrices of %d-value rows, best of %d passes (CPU time)\n",
               lmp_isa_name(isa), mib, N_IN, PASSES);
        char table[64][128];
        int nrows = 0;
        for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
                const struct lmp_quant_traits *tr = lmp_quant_traits(types[ti], isa);
                const struct lmp_quant_traits *at = lmp_quant_traits(tr->vec_dot_type, isa);
                const size_t rb = lmp_type_row_size(types[ti], N_IN), ab = lmp_type_row_size(tr->vec_dot_type, N_IN);
                const size_t rows = ((size_t)mib << 20) / rb / 16 * 16;
                uint8_t *w = malloc(rows * rb), *act = malloc(MAX_TOK * ab);
                float *xf = malloc(N_IN * sizeof(float)), *out = malloc(rows * MAX_TOK * sizeof(float));
                if (!w || !act || !xf || !out) {
                        fprintf(stderr, "out of memory\n");
                        return 1;
                }
                /* Random bytes with small values: valid blocks with finite scales. */
                uint64_t st = 0x9e3779b97f4a7c15ull;
                for (size_t i = 0; i < rows * rb; i++) {
                        st = st * 6364136223846793005ull + 1442695040888963407ull;
                        w[i] = (uint8_t)(st >> 56) & 0x3f;
                }
                for (int t = 0; t < MAX_TOK; t++) {
                        for (int i = 0; i < N_IN; i++) {
                                st = st * 6364136223846793005ull + 1442695040888963407ull;
                                xf[i] = (float)((int)(st >> 40) % 2001 - 1000) / 1000.0f;
                        }
                        at->from_float(xf, act + (size_t)t * ab, N_IN);
                }
                const double one = pass(tr, BY_DOT, w, rb, rows, act, ab, 1, out);
                uint8_t *wr = tr->gemm_r16 ? malloc(rows * rb) : NULL;
                for (size_t r = 0; wr && r < rows; r += 16)
                        lmp_repack_r16(types[ti], w + r * rb, rb, wr + r * rb, N_IN);
                const int nts[] = { 1, 2, 4, 8 };
                for (size_t k = 0; k < sizeof(nts) / sizeof(nts[0]); k++) {
                        for (int how = BY_DOT; how <= BY_R16; how++) {
                                if ((how == BY_GEMM && !tr->gemm) || (how == BY_FEW && (!tr->gemm_few || nts[k] < 2)) ||
                                    (how == BY_DOT && nts[k] > 1) || (how == BY_R16 && !wr))
                                        continue;
                                const double s = how == BY_DOT ? one : pass(tr, how, how == BY_R16 ? wr : w, rb, rows,
                                                                            act, ab, nts[k], out);
                                const double gbs = (double)rows * rb / s / 1e9;
                                printf("{\"bench\":\"gemm_few\",\"type\":\"%s\",\"isa\":\"%s\",\"kernel\":\"%s\","
                                       "\"tokens\":%d,\"ms\":%.3f,\"weight_gbs\":%.2f,\"cost_vs_1\":%.3f}\n",
                                       lmp_type_name(types[ti]), lmp_isa_name(isa), how_names[how], nts[k], s * 1e3,
                                       gbs, s / one);
                                if (nrows < 64)
                                        snprintf(table[nrows++], sizeof(table[0]), "%-5s %-9s %6d %9.2f %9.1f %9.2fx",
                                                 lmp_type_name(types[ti]), how_names[how], nts[k], s * 1e3, gbs, s / one);
                        }
                }
                free(w);
                free(wr);
                free(act);
                free(xf);
                free(out);
        }
        printf("\n%-5s %-9s %6s %9s %9s %10s\n", "type", "kernel", "tokens", "ms/pass", "GB/s", "vs 1 tok");
        for (int i = 0; i < nrows; i++)
                printf("%s\n", table[i]);
        return 0;
}

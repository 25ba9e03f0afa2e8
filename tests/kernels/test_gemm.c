/* Checks of the gemm (tile product) kernels: for every weight type and every
 * ISA level this CPU has whose traits name a gemm, the kernel is run on
 * random tiles (nr weight rows by nt activation rows, strides with padding,
 * an output leading dimension larger than nr) of random and extreme blocks,
 * and each result must agree with the scalar vec_dot of its (row, token)
 * pair within the bound test_kernels holds the SIMD vec_dots to. Output
 * cells outside the tile must be left alone, and the operands are allocated
 * to their exact extent so that the sanitizer build sees any read past
 * them. The gemm_few kernels (a decode step of a few sequences) are checked
 * the same way with 1 to LMP_GEMM_FEW_MAX_TOK tokens, and the q4_K_r16 and
 * q6_K_r16 kernels (16 rows interleaved, as a repacked store holds them)
 * against the scalar vec_dot of the rows they were made from, after a
 * check that the repacking round-trips byte for byte. Prints one line per
 * failure and a summary; exits 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/repack.h"

#include "kernel_inputs.h"
#include "../check.h"

static int checks;

#define TRIALS 24       /* random tiles per type and level */
#define MAX_NR 100       /* past several register tiles and row blocks */
#define MAX_NT 70

static const enum lmp_type weight_types[] = {
        LMP_TYPE_F32, LMP_TYPE_F16, LMP_TYPE_BF16, LMP_TYPE_Q4_0, LMP_TYPE_Q4_1,
        LMP_TYPE_Q5_0, LMP_TYPE_Q5_1, LMP_TYPE_Q8_0, LMP_TYPE_Q2_K, LMP_TYPE_Q3_K,
        LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K,
};

static int rnd_between(int lo, int hi) {  /* uniform in [lo, hi] */
        return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

/* One random tile of type t through the gemm of level isa, or with few
 * through its gemm_few (batched decode: 1 to LMP_GEMM_FEW_MAX_TOK tokens). */
static void check_tile(enum lmp_type t, enum lmp_isa isa, int trial, int few) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *a0 = lmp_quant_traits(w0->vec_dot_type, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *w = lmp_quant_traits(t, isa);
        const uint32_t blck = lmp_type_info(t)->blck_size;
        const int qk = blck > 1 ? (int)blck : 32;
        /* Mostly short rows; now and then a long one, and once in a while one
         * past the 4096 values that kernels may take in a pass. Float rows
         * get ragged tails. */
        const int nblocks = trial % 12 == 11 ? rnd_between(129, 300)
                          : trial % 6 == 5 ? rnd_between(9, 40) : rnd_between(1, 8);
        const int64_t n = (int64_t)qk * nblocks + (blck == 1 && (trial & 1) ? rnd_between(1, 31) : 0);
        /* Every twelfth tile takes more tokens than a 64-token panel. */
        const int nr = rnd_between(1, MAX_NR);
        const int nt = few ? rnd_between(1, LMP_GEMM_FEW_MAX_TOK)
                     : trial % 12 == 11 ? rnd_between(65, MAX_NT) : rnd_between(1, MAX_NT);
        const char *kname = few ? "gemm_few" : "gemm";
        const size_t xrow = lmp_type_row_size(t, (uint64_t)n);
        const size_t yrow = lmp_type_row_size(w0->vec_dot_type, (uint64_t)n);
        /* Padding in multiples of 4 bytes keeps float rows aligned to their elements. */
        const size_t bx = xrow + (trial % 3 ? 4 * (size_t)rnd_between(0, 40) : 0);
        const size_t by = yrow + (trial % 4 ? 4 * (size_t)rnd_between(0, 40) : 0);
        const size_t ld = (size_t)nr + (trial % 5 ? (size_t)rnd_between(1, 9) : 0);
        const enum scale_kind wk = (enum scale_kind)(trial % SC_COUNT);
        const enum scale_kind ak = (enum scale_kind)((trial / SC_COUNT + trial) % SC_COUNT);
        const int allmax = trial % 8 == 7;

        const size_t xbytes = (size_t)(nr - 1) * bx + xrow, ybytes = (size_t)(nt - 1) * by + yrow;
        uint8_t *x = malloc(xbytes), *y = malloc(ybytes);
        float *xf = malloc((size_t)n * nr * sizeof(float)), *xm = malloc((size_t)n * nr * sizeof(float));
        float *yf = malloc((size_t)n * sizeof(float)), *yd = malloc((size_t)n * nt * sizeof(float));
        float *s = malloc(ld * (size_t)nt * sizeof(float));
        if (!x || !y || !xf || !xm || !yf || !yd || !s) {
                FAIL("out of memory");
                goto out;
        }
        memset(x, 0xa5, xbytes);
        memset(y, 0x5a, ybytes);
        for (int r = 0; r < nr; r++) {
                /* Odd trials mix the scale patterns row by row within one tile. */
                const enum scale_kind k = trial & 1 ? (enum scale_kind)((wk + r) % SC_COUNT) : wk;
                uint8_t *row = x + (size_t)r * bx;
                fill_weights(t, row, n, k, allmax);
                w0->to_float(row, xf + (size_t)r * n, n);
                offset_part(t, row, xm + (size_t)r * n, n, xrow);
        }
        for (int j = 0; j < nt; j++) {
                if (allmax && j % 2 == 0)
                        for (int64_t i = 0; i < n; i++)
                                yf[i] = (i & 1) ? -1e3f : 1e3f;
                else
                        fill_floats(yf, n, trial & 2 ? (enum scale_kind)((ak + j) % SC_COUNT) : ak);
                a0->from_float(yf, y + (size_t)j * by, n);
                a0->to_float(y + (size_t)j * by, yd + (size_t)j * n, n);
        }
        for (size_t i = 0; i < ld * (size_t)nt; i++)
                s[i] = NAN;
        (few ? w->gemm_few : w->gemm)((int)n, nr, nt, x, bx, y, by, s, ld);

        int bad = 0;
        for (int j = 0; j < nt; j++) {
                for (size_t r = 0; r < ld; r++) {
                        const float got = s[(size_t)j * ld + r];
                        checks++;
                        if (r >= (size_t)nr) {
                                if (!isnan(got) && bad++ < 5)
                                        FAIL("%s %s %s: wrote %g outside the tile at token %d, column %zu "
                                             "(nr=%d nt=%d ld=%zu)", kname, lmp_type_name(t), lmp_isa_name(isa), got,
                                             j, r, nr, nt, ld);
                                continue;
                        }
                        float ref;
                        w0->vec_dot((int)n, &ref, x + r * bx, y + (size_t)j * by);
                        const double tol = 2e-5 * magnitude_rows(xf + r * n, xm + r * n, yd + (size_t)j * n, n)
                                           + 1e-30;
                        if (!(fabs((double)got - ref) <= tol) && bad++ < 5)
                                FAIL("%s %s %s: n=%lld nr=%d nt=%d bx=%zu by=%zu ld=%zu scales=%s/%s "
                                     "allmax=%d: row %zu token %d: %.9g, scalar vec_dot %.9g (tol %.3g)",
                                     kname, lmp_type_name(t), lmp_isa_name(isa), (long long)n, nr, nt, bx, by, ld,
                                     scale_names[wk], scale_names[ak], allmax, r, j, got, ref, tol);
                }
        }
        if (bad > 5)
                FAIL("%s %s %s: %d more wrong cells in that tile", kname, lmp_type_name(t), lmp_isa_name(isa),
                     bad - 5);
out:
        free(x);
        free(y);
        free(xf);
        free(xm);
        free(yf);
        free(yd);
        free(s);
}

/* One random tile of q4_K or q6_K rows, repacked into 16-row groups,
 * through the gemm_r16 of level isa. */
static void check_r16(enum lmp_type t, enum lmp_isa isa, int trial) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *a0 = lmp_quant_traits(w0->vec_dot_type, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *w = lmp_quant_traits(t, isa);
        const int nblocks = trial % 6 == 5 ? rnd_between(9, 40) : rnd_between(1, 8);
        const int64_t n = 256 * (int64_t)nblocks;
        const int ng = rnd_between(1, 5), nr = 16 * ng;
        const int nt = trial % 3 == 2 ? rnd_between(1, MAX_NT) : rnd_between(1, LMP_GEMM_FEW_MAX_TOK);
        const size_t xrow = lmp_type_row_size(t, (uint64_t)n), xbytes = xrow * (size_t)nr;
        const size_t by = lmp_type_row_size(w0->vec_dot_type, (uint64_t)n) + (trial % 4 ? 4 * (size_t)rnd_between(0, 40) : 0);
        const size_t ld = (size_t)nr + (trial % 5 ? (size_t)rnd_between(1, 9) : 0);
        const enum scale_kind wk = (enum scale_kind)(trial % SC_COUNT);
        const enum scale_kind ak = (enum scale_kind)((trial / SC_COUNT + trial) % SC_COUNT);
        const int allmax = trial % 8 == 7;
        uint8_t *x = malloc(xbytes), *xr = malloc(xbytes), *back = malloc(xbytes), *tmp = malloc(xbytes);
        uint8_t *y = malloc((size_t)(nt - 1) * by + lmp_type_row_size(w0->vec_dot_type, (uint64_t)n));
        float *xf = malloc((size_t)n * nr * sizeof(float)), *xm = malloc((size_t)n * nr * sizeof(float));
        float *yf = malloc((size_t)n * sizeof(float)), *yd = malloc((size_t)n * nt * sizeof(float));
        float *s = malloc(ld * (size_t)nt * sizeof(float));
        if (!x || !xr || !back || !tmp || !y || !xf || !xm || !yf || !yd || !s) {
                FAIL("out of memory");
                goto out;
        }
        for (int r = 0; r < nr; r++) {
                uint8_t *row = x + (size_t)r * xrow;
                fill_weights(t, row, n, trial & 1 ? (enum scale_kind)((wk + r) % SC_COUNT) : wk, allmax);
                w0->to_float(row, xf + (size_t)r * n, n);
                offset_part(t, row, xm + (size_t)r * n, n, xrow);
        }
        for (int g = 0; g < ng; g++)
                lmp_repack_r16(t, x + (size_t)g * 16 * xrow, xrow, xr + (size_t)g * 16 * xrow, n);
        for (int g = 0; g < ng; g++)
                lmp_unpack_r16(t, xr + (size_t)g * 16 * xrow, back + (size_t)g * 16 * xrow, xrow, n);
        checks++;
        if (memcmp(back, x, xbytes) != 0)
                FAIL("%s_r16: %d groups of %lld values do not unpack to the rows they were made from",
                     lmp_type_name(t), ng, (long long)n);
        memcpy(back, x, xbytes);
        lmp_repack_r16_inplace(t, back, n, nr, tmp);
        checks++;
        if (memcmp(back, xr, xbytes) != 0)
                FAIL("%s_r16: repacking in place differs from repacking into a copy (n=%lld)", lmp_type_name(t),
                     (long long)n);
        for (int j = 0; j < nt; j++) {
                if (allmax && j % 2 == 0)
                        for (int64_t i = 0; i < n; i++)
                                yf[i] = (i & 1) ? -1e3f : 1e3f;
                else
                        fill_floats(yf, n, trial & 2 ? (enum scale_kind)((ak + j) % SC_COUNT) : ak);
                a0->from_float(yf, y + (size_t)j * by, n);
                a0->to_float(y + (size_t)j * by, yd + (size_t)j * n, n);
        }
        for (size_t i = 0; i < ld * (size_t)nt; i++)
                s[i] = NAN;
        w->gemm_r16((int)n, ng, nt, xr, y, by, s, ld);
        int bad = 0;
        for (int j = 0; j < nt; j++) {
                for (size_t r = 0; r < ld; r++) {
                        const float got = s[(size_t)j * ld + r];
                        checks++;
                        if (r >= (size_t)nr) {
                                if (!isnan(got) && bad++ < 5)
                                        FAIL("gemm_r16 %s %s: wrote %g outside the tile at token %d, column %zu",
                                             lmp_type_name(t), lmp_isa_name(isa), got, j, r);
                                continue;
                        }
                        float ref;
                        w0->vec_dot((int)n, &ref, x + r * xrow, y + (size_t)j * by);
                        const double tol = 2e-5 * magnitude_rows(xf + r * n, xm + r * n, yd + (size_t)j * n, n)
                                           + 1e-30;
                        if (!(fabs((double)got - ref) <= tol) && bad++ < 5)
                                FAIL("gemm_r16 %s %s: n=%lld ng=%d nt=%d by=%zu ld=%zu scales=%s/%s allmax=%d: row %zu "
                                     "token %d: %.9g, scalar vec_dot %.9g (tol %.3g)", lmp_type_name(t), lmp_isa_name(isa),
                                     (long long)n, ng, nt, by, ld, scale_names[wk], scale_names[ak], allmax, r, j,
                                     got, ref, tol);
                }
        }
        if (bad > 5)
                FAIL("gemm_r16 %s %s: %d more wrong cells in that tile", lmp_type_name(t), lmp_isa_name(isa),
                     bad - 5);
out:
        free(x);
        free(xr);
        free(back);
        free(tmp);
        free(y);
        free(xf);
        free(xm);
        free(yf);
        free(yd);
        free(s);
}

int main(void) {
        const enum lmp_isa top = lmp_cpu_isa();
        int kernels = 0;
        for (size_t i = 0; i < sizeof(weight_types) / sizeof(weight_types[0]); i++) {
                for (int isa = LMP_ISA_SCALAR; isa <= (int)top; isa++) {
                        const struct lmp_quant_traits *w = lmp_quant_traits(weight_types[i], (enum lmp_isa)isa);
                        /* A level without its own gemm may name a lower level's:
                         * each distinct kernel is checked once. */
                        if (!w || !w->gemm || (isa > LMP_ISA_SCALAR &&
                                               w->gemm == lmp_quant_traits(weight_types[i], (enum lmp_isa)(isa - 1))->gemm))
                                continue;
                        kernels++;
                        const int before = failures;
                        for (int trial = 0; trial < TRIALS; trial++)
                                check_tile(weight_types[i], (enum lmp_isa)isa, trial, 0);
                        printf("gemm %-5s %-6s %s\n", lmp_type_name(weight_types[i]),
                               lmp_isa_name((enum lmp_isa)isa), failures == before ? "ok" : "FAILED");
                }
        }
        /* The batched-decode kernels, the same way. */
        for (size_t i = 0; i < sizeof(weight_types) / sizeof(weight_types[0]); i++) {
                for (int isa = LMP_ISA_SCALAR; isa <= (int)top; isa++) {
                        const struct lmp_quant_traits *w = lmp_quant_traits(weight_types[i], (enum lmp_isa)isa);
                        if (!w || !w->gemm_few ||
                            (isa > LMP_ISA_SCALAR &&
                             w->gemm_few == lmp_quant_traits(weight_types[i], (enum lmp_isa)(isa - 1))->gemm_few))
                                continue;
                        kernels++;
                        const int before = failures;
                        for (int trial = 0; trial < TRIALS; trial++)
                                check_tile(weight_types[i], (enum lmp_isa)isa, trial, 1);
                        printf("gemm_few %-5s %-6s %s\n", lmp_type_name(weight_types[i]),
                               lmp_isa_name((enum lmp_isa)isa), failures == before ? "ok" : "FAILED");
                }
        }
        /* The repacked layouts' kernels. */
        const enum lmp_type r16_types[] = { LMP_TYPE_Q4_K, LMP_TYPE_Q6_K };
        for (size_t i = 0; i < 2; i++) {
                for (int isa = LMP_ISA_SCALAR; isa <= (int)top; isa++) {
                        const struct lmp_quant_traits *w = lmp_quant_traits(r16_types[i], (enum lmp_isa)isa);
                        if (isa > LMP_ISA_SCALAR &&
                            w->gemm_r16 == lmp_quant_traits(r16_types[i], (enum lmp_isa)(isa - 1))->gemm_r16)
                                continue;
                        kernels++;
                        const int before = failures;
                        for (int trial = 0; trial < TRIALS; trial++)
                                check_r16(r16_types[i], (enum lmp_isa)isa, trial);
                        printf("gemm_r16 %-5s %-6s %s\n", lmp_type_name(r16_types[i]), lmp_isa_name((enum lmp_isa)isa),
                               failures == before ? "ok" : "FAILED");
                }
        }
        printf("gemm: CPU level %s, %d kernels, %d checks, %d failures\n", lmp_isa_name(top), kernels, checks,
               failures);
        return failures ? 1 : 0;
}

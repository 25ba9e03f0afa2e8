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
 * check that the repacking round-trips byte for byte, and through
 * lmp_gemm_r16_rows() over ranges that cut groups at either end. Prints one line per
 * failure and a summary; exits 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
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

/* A tile's inputs: nr weight rows of type t (bx bytes apart), their
 * floats xf and offset parts xm (offset_part), and nt activation rows (by
 * bytes apart) of floats in the scale pattern ak, quantized, with their
 * dequantized values yd. Odd trials mix the weight scale patterns row by
 * row within one tile, and trials with bit 1 the activation ones. */
struct tile {
        enum lmp_type t;
        int64_t n;
        int nr, nt, trial, allmax;
        enum scale_kind wk, ak;
        size_t xrow, bx, by, ld;
        uint8_t *x, *y;
        float *xf, *xm, *yf, *yd, *s;
};

static int tile_new(struct tile *tl) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(tl->t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *a0 = lmp_quant_traits(w0->vec_dot_type, LMP_ISA_SCALAR);
        const int64_t n = tl->n;
        const size_t yrow = lmp_type_row_size(w0->vec_dot_type, (uint64_t)n);
        const size_t xbytes = (size_t)(tl->nr - 1) * tl->bx + tl->xrow, ybytes = (size_t)(tl->nt - 1) * tl->by + yrow;
        tl->x = malloc(xbytes);
        tl->y = malloc(ybytes);
        tl->xf = malloc((size_t)n * tl->nr * sizeof(float));
        tl->xm = malloc((size_t)n * tl->nr * sizeof(float));
        tl->yf = malloc((size_t)n * sizeof(float));
        tl->yd = malloc((size_t)n * tl->nt * sizeof(float));
        tl->s = malloc(tl->ld * (size_t)tl->nt * sizeof(float));
        if (!tl->x || !tl->y || !tl->xf || !tl->xm || !tl->yf || !tl->yd || !tl->s) {
                FAIL("out of memory");
                return -1;
        }
        memset(tl->x, 0xa5, xbytes);
        memset(tl->y, 0x5a, ybytes);
        for (int r = 0; r < tl->nr; r++) {
                const enum scale_kind k = tl->trial & 1 ? (enum scale_kind)((tl->wk + r) % SC_COUNT) : tl->wk;
                uint8_t *row = tl->x + (size_t)r * tl->bx;
                fill_weights(tl->t, row, n, k, tl->allmax);
                w0->to_float(row, tl->xf + (size_t)r * n, n);
                offset_part(tl->t, row, tl->xm + (size_t)r * n, n, tl->xrow);
        }
        for (int j = 0; j < tl->nt; j++) {
                if (tl->allmax && j % 2 == 0)
                        for (int64_t i = 0; i < n; i++)
                                tl->yf[i] = (i & 1) ? -1e3f : 1e3f;
                else
                        fill_floats(tl->yf, n, tl->trial & 2 ? (enum scale_kind)((tl->ak + j) % SC_COUNT) : tl->ak);
                a0->from_float(tl->yf, tl->y + (size_t)j * tl->by, n);
                a0->to_float(tl->y + (size_t)j * tl->by, tl->yd + (size_t)j * n, n);
        }
        for (size_t i = 0; i < tl->ld * (size_t)tl->nt; i++)
                tl->s[i] = NAN;
        return 0;
}

static void tile_free(struct tile *tl) {
        free(tl->x);
        free(tl->y);
        free(tl->xf);
        free(tl->xm);
        free(tl->yf);
        free(tl->yd);
        free(tl->s);
}

/* Every cell of s against the scalar vec_dot of its (row, token) pair,
 * within the bound test_kernels holds the SIMD vec_dots to; cells outside
 * the tile must still be NaN. what names the kernel in messages. */
static void tile_check(const struct tile *tl, const char *what) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(tl->t, LMP_ISA_SCALAR);
        const int64_t n = tl->n;
        int bad = 0;
        for (int j = 0; j < tl->nt; j++) {
                for (size_t r = 0; r < tl->ld; r++) {
                        const float got = tl->s[(size_t)j * tl->ld + r];
                        checks++;
                        if (r >= (size_t)tl->nr) {
                                if (!isnan(got) && bad++ < 5)
                                        FAIL("%s: wrote %g outside the tile at token %d, column %zu (nr=%d nt=%d "
                                             "ld=%zu)", what, got, j, r, tl->nr, tl->nt, tl->ld);
                                continue;
                        }
                        float ref;
                        w0->vec_dot((int)n, &ref, tl->x + r * tl->bx, tl->y + (size_t)j * tl->by);
                        const double tol = 2e-5 * magnitude_rows(tl->xf + r * n, tl->xm + r * n,
                                                                 tl->yd + (size_t)j * n, n) + 1e-30;
                        if (!(fabs((double)got - ref) <= tol) && bad++ < 5)
                                FAIL("%s: n=%lld nr=%d nt=%d bx=%zu by=%zu ld=%zu scales=%s/%s allmax=%d: row %zu "
                                     "token %d: %.9g, scalar vec_dot %.9g (tol %.3g)", what, (long long)n, tl->nr,
                                     tl->nt, tl->bx, tl->by, tl->ld, scale_names[tl->wk], scale_names[tl->ak],
                                     tl->allmax, r, j, got, ref, tol);
                }
        }
        if (bad > 5)
                FAIL("%s: %d more wrong cells in that tile", what, bad - 5);
}

/* One random tile of type t through the gemm of level isa, or with few
 * through its gemm_few (batched decode: 1 to LMP_GEMM_FEW_MAX_TOK tokens). */
static void check_tile(enum lmp_type t, enum lmp_isa isa, int trial, int few) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *w = lmp_quant_traits(t, isa);
        const uint32_t blck = lmp_type_info(t)->blck_size;
        const int qk = blck > 1 ? (int)blck : 32;
        struct tile tl = { .t = t, .trial = trial, .allmax = trial % 8 == 7, .wk = (enum scale_kind)(trial % SC_COUNT),
                           .ak = (enum scale_kind)((trial / SC_COUNT + trial) % SC_COUNT) };
        /* Mostly short rows; now and then a long one, and once in a while one
         * past the 4096 values that kernels may take in a pass. Float rows
         * get ragged tails. */
        const int nblocks = trial % 12 == 11 ? rnd_between(129, 300)
                          : trial % 6 == 5 ? rnd_between(9, 40) : rnd_between(1, 8);
        tl.n = (int64_t)qk * nblocks + (blck == 1 && (trial & 1) ? rnd_between(1, 31) : 0);
        /* Every twelfth tile takes more tokens than a 64-token panel. */
        tl.nr = rnd_between(1, MAX_NR);
        tl.nt = few ? rnd_between(1, LMP_GEMM_FEW_MAX_TOK)
                    : trial % 12 == 11 ? rnd_between(65, MAX_NT) : rnd_between(1, MAX_NT);
        tl.xrow = lmp_type_row_size(t, (uint64_t)tl.n);
        /* Padding in multiples of 4 bytes keeps float rows aligned to their elements. */
        tl.bx = tl.xrow + (trial % 3 ? 4 * (size_t)rnd_between(0, 40) : 0);
        tl.by = lmp_type_row_size(w0->vec_dot_type, (uint64_t)tl.n) + (trial % 4 ? 4 * (size_t)rnd_between(0, 40) : 0);
        tl.ld = (size_t)tl.nr + (trial % 5 ? (size_t)rnd_between(1, 9) : 0);
        if (tile_new(&tl) == 0) {
                char what[64];
                snprintf(what, sizeof(what), "%s %s %s", few ? "gemm_few" : "gemm", lmp_type_name(t),
                         lmp_isa_name(isa));
                (few ? w->gemm_few : w->gemm)((int)tl.n, tl.nr, tl.nt, tl.x, tl.bx, tl.y, tl.by, tl.s, tl.ld);
                tile_check(&tl, what);
        }
        tile_free(&tl);
}

/* lmp_gemm_r16_rows() over the groups xr made from tl's rows: a part that
 * starts row0 rows into the groups, and a range [begin, end) of it, both
 * at random, so that groups are cut at either end (a fused matrix's part,
 * a thread's share). Columns [begin, end) must hold the scalar vec_dot of
 * rows begin + row0 .., every other column stay NaN. */
static void check_r16_rows(struct tile *tl, const struct lmp_quant_traits *w, const uint8_t *xr, const char *kernel) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(tl->t, LMP_ISA_SCALAR);
        const int64_t n = tl->n;
        for (int k = 0; k < 4; k++) {
                const int64_t row0 = rnd_between(0, LMP_R16_ROWS - 1);
                const int64_t part = tl->nr - row0;                     /* rows of the part */
                const int64_t begin = rnd_between(0, (int)part - 1), end = rnd_between((int)begin + 1, (int)part);
                for (size_t i = 0; i < tl->ld * (size_t)tl->nt; i++)
                        tl->s[i] = NAN;
                lmp_gemm_r16_rows(w, (int)n, xr, row0, begin, end, tl->nt, tl->y, tl->by, tl->s, tl->ld);
                int bad = 0;
                for (int j = 0; j < tl->nt; j++)
                        for (int64_t r = 0; r < (int64_t)tl->ld; r++) {
                                const float got = tl->s[(size_t)j * tl->ld + (size_t)r];
                                checks++;
                                if (r < begin || r >= end) {
                                        if (!isnan(got) && bad++ < 5)
                                                FAIL("%s rows: wrote %g outside [%lld, %lld) at token %d, column %lld "
                                                     "(row0 %lld)", kernel, got, (long long)begin, (long long)end, j,
                                                     (long long)r, (long long)row0);
                                        continue;
                                }
                                const int64_t x = r + row0;     /* the row it is made from */
                                float ref;
                                w0->vec_dot((int)n, &ref, tl->x + (size_t)x * tl->bx, tl->y + (size_t)j * tl->by);
                                const double tol = 2e-5 * magnitude_rows(tl->xf + x * n, tl->xm + x * n,
                                                                         tl->yd + (size_t)j * n, n) + 1e-30;
                                if (!(fabs((double)got - ref) <= tol) && bad++ < 5)
                                        FAIL("%s rows: row0 %lld [%lld, %lld) nt %d: column %lld token %d: %.9g, "
                                             "scalar vec_dot %.9g", kernel, (long long)row0, (long long)begin,
                                             (long long)end, tl->nt, (long long)r, j, got, ref);
                        }
                if (bad > 5)
                        FAIL("%s rows: %d more wrong cells", kernel, bad - 5);
        }
}

/* One random tile of q4_K, q6_K, q4_0 or q5_0 rows, repacked into 16-row groups,
 * through the gemm_r16 of level isa; first, the repacking must round-trip
 * byte for byte, and repacking in place must give the same groups. */
static void check_r16(enum lmp_type t, enum lmp_isa isa, int trial) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *w = lmp_quant_traits(t, isa);
        struct tile tl = { .t = t, .trial = trial, .allmax = trial % 8 == 7, .wk = (enum scale_kind)(trial % SC_COUNT),
                           .ak = (enum scale_kind)((trial / SC_COUNT + trial) % SC_COUNT) };
        /* q4_0 and q5_0: odd counts of blocks, and rows longer than the 32
         * blocks a prompt tile packs in one pass. */
        if (lmp_type_info(t)->blck_size == 32)
                tl.n = 32 * (int64_t)(trial % 6 == 5 ? rnd_between(33, 160) : rnd_between(1, 40));
        else
                tl.n = 256 * (int64_t)(trial % 6 == 5 ? rnd_between(9, 40) : rnd_between(1, 8));
        const int ng = rnd_between(1, 5);
        tl.nr = 16 * ng;
        tl.nt = trial % 3 == 2 ? rnd_between(1, MAX_NT) : rnd_between(1, LMP_GEMM_FEW_MAX_TOK);
        tl.xrow = tl.bx = lmp_type_row_size(t, (uint64_t)tl.n);
        tl.by = lmp_type_row_size(w0->vec_dot_type, (uint64_t)tl.n) + (trial % 4 ? 4 * (size_t)rnd_between(0, 40) : 0);
        tl.ld = (size_t)tl.nr + (trial % 5 ? (size_t)rnd_between(1, 9) : 0);
        const size_t xbytes = tl.xrow * (size_t)tl.nr;
        uint8_t *xr = malloc(xbytes), *back = malloc(xbytes), *tmp = malloc(xbytes);
        if (!xr || !back || !tmp)
                FAIL("out of memory");
        else if (tile_new(&tl) == 0) {
                const int64_t n = tl.n;
                for (int g = 0; g < ng; g++) {
                        lmp_repack_r16(t, tl.x + (size_t)g * 16 * tl.xrow, tl.xrow, xr + (size_t)g * 16 * tl.xrow, n);
                        lmp_unpack_r16(t, xr + (size_t)g * 16 * tl.xrow, back + (size_t)g * 16 * tl.xrow, tl.xrow, n);
                }
                checks++;
                if (memcmp(back, tl.x, xbytes) != 0)
                        FAIL("%s_r16: %d groups of %lld values do not unpack to the rows they were made from",
                             lmp_type_name(t), ng, (long long)n);
                memcpy(back, tl.x, xbytes);
                lmp_repack_r16_inplace(t, back, n, tl.nr, tmp);
                checks++;
                if (memcmp(back, xr, xbytes) != 0)
                        FAIL("%s_r16: repacking in place differs from repacking into a copy (n=%lld)",
                             lmp_type_name(t), (long long)n);
                /* One block of one row, read back out of its group. */
                const int64_t qk = lmp_type_info(t)->blck_size, rr = rnd_between(0, tl.nr - 1);
                const int64_t bi = rnd_between(0, (int)(n / qk) - 1);
                const size_t bsz = lmp_type_info(t)->type_size;
                uint8_t blk[256];
                lmp_unpack_r16_block(t, xr + (size_t)(rr / 16) * 16 * tl.xrow, (int)(rr % 16), bi, blk);
                checks++;
                if (memcmp(blk, tl.x + (size_t)rr * tl.xrow + (size_t)bi * bsz, bsz) != 0)
                        FAIL("%s_r16: block %lld of row %lld does not read back from its group", lmp_type_name(t),
                             (long long)bi, (long long)rr);
                char what[64];
                snprintf(what, sizeof(what), "gemm_r16 %s %s", lmp_type_name(t), lmp_isa_name(isa));
                w->gemm_r16((int)n, ng, tl.nt, xr, tl.y, tl.by, tl.s, tl.ld);
                tile_check(&tl, what);
                check_r16_rows(&tl, w, xr, what);
        }
        tile_free(&tl);
        free(xr);
        free(back);
        free(tmp);
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
        const enum lmp_type r16_types[] = { LMP_TYPE_Q4_K, LMP_TYPE_Q6_K, LMP_TYPE_Q4_0, LMP_TYPE_Q5_0 };
        for (size_t i = 0; i < sizeof(r16_types) / sizeof(r16_types[0]); i++) {
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

/* Kernel throughput: for every weight type's vec_dot and every ISA level this
 * CPU has, the GB/s of weight bytes streamed when multiplying a weight matrix
 * by one activation row (the decode-time matrix-vector product), on a matrix
 * larger than the caches (memory-bound) and on one that fits in L2
 * (compute-bound). Rates are per second of the thread's CPU time, so that
 * other processes on a shared machine do not deflate them (the wall-clock
 * rate is printed too). Prints one JSON line per measurement, then a table.
 * For the types whose traits have a gemm (tile product), it also times a
 * product of a cache-resident weight matrix with GEMM_TOK activation rows
 * (a prompt's token block) through the gemm and through one vec_dot per
 * (row, token) pair, in GOP/s (2 * n * rows * tokens per CPU second), and
 * the gemm with a single activation row (decode's product through the tile
 * kernel, in tasks of GEMV_ROWS rows) on both matrices, in GB/s. For the
 * types with a 16-row interleaved layout (q4_K, q6_K, q4_0, q5_0: what a
 * repacked store holds), the same three figures through gemm_r16, on the
 * same bytes read as groups of 16 rows.
 * Usage: bench_kernels [seconds-per-measurement [type...]] (default 0.2 s,
 * all types). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "quant/quant.h"

static double clock_s(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const enum lmp_type types[] = {
        LMP_TYPE_F32, LMP_TYPE_F16, LMP_TYPE_BF16, LMP_TYPE_Q8_0, LMP_TYPE_Q4_0,
        LMP_TYPE_Q4_1, LMP_TYPE_Q5_0, LMP_TYPE_Q5_1, LMP_TYPE_Q2_K, LMP_TYPE_Q3_K,
        LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K,
};

#define NCOLS 4096
#define BIG_BYTES (64u << 20)     /* weight bytes of the memory-bound matrix */
#define SMALL_BYTES (256u << 10)  /* ... and of the cache-resident one */

#define GEMM_TOK 64               /* activation rows of the gemm measurement */
#define GEMV_ROWS 64              /* weight rows per gemm call with one activation row */

struct result {
        enum lmp_type type;
        enum lmp_isa isa;
        double gbps[2];
        double gbps_wall[2];
        double gemv_gbps[2];            /* the gemm with one activation row; 0 without gemm */
        double gemm_gops, pairs_gops;   /* 0 where the level has no gemm */
        double r16_gbps[2], r16_gops;   /* gemm_r16: one row, GEMM_TOK rows; 0 without it */
};

/* Random bytes are valid blocks for every type, except that f16/bf16 scales
 * could be NaN or infinite; that does not change the speed of the kernels,
 * but the sums are printed to keep the work from being optimized away. */
static void fill(uint8_t *p, size_t n, uint64_t *state) {
        for (size_t i = 0; i < n; i++) {
                *state = *state * 6364136223846793005ull + 1442695040888963407ull;
                p[i] = (uint8_t)(*state >> 56) & 0x3f;   /* small exponents keep halves finite */
        }
}

enum path { VEC_DOT, GEMM, GEMM_R16 };

/* Returns GB/s per CPU second; *ret_wall gets GB/s per wall second. */
static double measure(const struct lmp_quant_traits *tr, enum path how, const uint8_t *w, size_t row_bytes,
                      size_t rows, const void *act, double seconds, float *out, float *sink, double *ret_wall) {
        size_t done = 0;
        const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        double c = c0;
        do {
                if (how == GEMM_R16) {
                        /* whole groups, GEMV_ROWS rows per call */
                        for (size_t r = 0; r + 16 <= rows; r += GEMV_ROWS) {
                                const size_t nr = (rows - r < GEMV_ROWS ? rows - r : GEMV_ROWS) / 16 * 16;
                                tr->gemm_r16(NCOLS, (int)(nr / 16), 1, w + r * row_bytes, act, 0, out, nr);
                                *sink += out[0];
                        }
                } else if (how == GEMM) {
                        /* in tasks of GEMV_ROWS rows, as the model splits a product */
                        for (size_t r = 0; r < rows; r += GEMV_ROWS) {
                                const size_t nr = rows - r < GEMV_ROWS ? rows - r : GEMV_ROWS;
                                tr->gemm(NCOLS, (int)nr, 1, w + r * row_bytes, row_bytes, act, 0, out, nr);
                                *sink += out[0];
                        }
                } else {
                        for (size_t r = 0; r < rows; r++) {
                                float s;
                                tr->vec_dot(NCOLS, &s, w + r * row_bytes, act);
                                *sink += s;
                        }
                }
                done += how == GEMM_R16 ? rows / 16 * 16 : rows;
                c = clock_s(CLOCK_THREAD_CPUTIME_ID);
        } while (c - c0 < seconds);
        const double bytes = (double)done * (double)row_bytes;
        *ret_wall = bytes / (clock_s(CLOCK_MONOTONIC) - w0) / 1e9;
        return bytes / (c - c0) / 1e9;
}

/* GOP/s per CPU second of rows x GEMM_TOK products, through the gemm
 * or gemm_r16 (how) or a vec_dot per pair. */
static double measure_gemm(const struct lmp_quant_traits *tr, enum path how, const uint8_t *w, size_t row_bytes,
                           size_t rows, const uint8_t *act, size_t act_bytes, double seconds, float *out,
                           float *sink) {
        size_t done = 0;
        const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        double c = c0;
        do {
                if (how == GEMM_R16)
                        tr->gemm_r16(NCOLS, (int)(rows / 16), GEMM_TOK, w, act, act_bytes, out, rows / 16 * 16);
                else if (how == GEMM)
                        tr->gemm(NCOLS, (int)rows, GEMM_TOK, w, row_bytes, act, act_bytes, out, rows);
                else
                        for (size_t r = 0; r < rows; r++)
                                for (int t = 0; t < GEMM_TOK; t++)
                                        tr->vec_dot(NCOLS, &out[(size_t)t * rows + r], w + r * row_bytes,
                                                    act + (size_t)t * act_bytes);
                *sink += out[rows - 1];
                done++;
                c = clock_s(CLOCK_THREAD_CPUTIME_ID);
        } while (c - c0 < seconds);
        if (how == GEMM_R16)
                rows = rows / 16 * 16;
        return 2.0 * NCOLS * (double)rows * GEMM_TOK * (double)done / (c - c0) / 1e9;
}

/* One JSON line of a streaming measurement (one activation row). */
static void print_stream(const char *bench, enum lmp_type type, const struct lmp_quant_traits *tr, int isa,
                         size_t rows, size_t row_bytes, double gbps, double wall) {
        printf("{\"bench\":\"%s\",\"type\":\"%s\",\"act\":\"%s\",\"isa\":\"%s\","
               "\"n\":%d,\"rows\":%zu,\"weight_bytes\":%zu,\"gbps\":%.3f,\"gbps_wall\":%.3f}\n",
               bench, lmp_type_name(type), lmp_type_name(tr->vec_dot_type), lmp_isa_name((enum lmp_isa)isa), NCOLS,
               rows, rows * row_bytes, gbps, wall);
}

int main(int argc, char **argv) {
        const double seconds = argc > 1 ? atof(argv[1]) : 0.2;
        if (!(seconds > 0.0) || seconds > 60.0) {
                fprintf(stderr, "usage: %s [seconds-per-measurement, 0 < s <= 60]\n", argv[0]);
                return 2;
        }
        const enum lmp_isa top = lmp_cpu_isa();
        uint8_t *w = malloc(BIG_BYTES);
        float *x = malloc(NCOLS * sizeof(float));
        uint8_t *act = malloc((size_t)NCOLS * 4 * GEMM_TOK);
        float *out = malloc(SMALL_BYTES / 16 * GEMM_TOK * sizeof(float));
        if (!w || !x || !act || !out) {
                fprintf(stderr, "out of memory\n");
                return 1;
        }
        uint64_t state = 42;
        fill(w, BIG_BYTES, &state);
        for (int i = 0; i < NCOLS; i++)
                x[i] = sinf((float)i * 0.37f);
        struct result res[sizeof(types) / sizeof(types[0]) * LMP_ISA_COUNT];
        size_t nres = 0;
        float sink = 0.0f;
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
                int wanted = argc <= 2;
                for (int a = 2; a < argc; a++)
                        wanted |= strcasecmp(argv[a], lmp_type_name(types[t])) == 0;
                if (!wanted)
                        continue;
                const size_t row_bytes = lmp_type_row_size(types[t], NCOLS);
                for (int isa = 0; isa <= (int)top; isa++) {
                        const struct lmp_quant_traits *tr = lmp_quant_traits(types[t], (enum lmp_isa)isa);
                        const struct lmp_quant_traits *at = lmp_quant_traits(tr->vec_dot_type, (enum lmp_isa)isa);
                        const size_t act_bytes = lmp_type_row_size(tr->vec_dot_type, NCOLS);
                        for (int tok = 0; tok < GEMM_TOK; tok++) {
                                for (int i = 0; i < NCOLS; i++)
                                        x[i] = sinf((float)(i + 7 * tok) * 0.37f);
                                at->from_float(x, act + (size_t)tok * act_bytes, NCOLS);
                        }
                        struct result *r = &res[nres++];
                        r->type = types[t];
                        r->isa = (enum lmp_isa)isa;
                        const size_t rows[2] = { BIG_BYTES / row_bytes, SMALL_BYTES / row_bytes };
                        for (int k = 0; k < 2; k++) {
                                r->gbps[k] = measure(tr, VEC_DOT, w, row_bytes, rows[k], act, seconds, out, &sink,
                                                     &r->gbps_wall[k]);
                                print_stream("vec_dot", types[t], tr, isa, rows[k], row_bytes, r->gbps[k],
                                             r->gbps_wall[k]);
                        }
                        r->gemm_gops = r->pairs_gops = 0.0;
                        r->gemv_gbps[0] = r->gemv_gbps[1] = 0.0;
                        for (int k = 0; tr->gemm && k < 2; k++) {
                                double wall;
                                r->gemv_gbps[k] = measure(tr, GEMM, w, row_bytes, rows[k], act, seconds, out, &sink, &wall);
                                print_stream("gemv", types[t], tr, isa, rows[k], row_bytes, r->gemv_gbps[k], wall);
                        }
                        if (tr->gemm) {
                                const size_t grows = SMALL_BYTES / row_bytes;
                                r->gemm_gops = measure_gemm(tr, GEMM, w, row_bytes, grows, act, act_bytes, seconds, out,
                                                            &sink);
                                r->pairs_gops = measure_gemm(tr, VEC_DOT, w, row_bytes, grows, act, act_bytes, seconds, out, &sink);
                                printf("{\"bench\":\"gemm\",\"type\":\"%s\",\"act\":\"%s\",\"isa\":\"%s\","
                                       "\"n\":%d,\"rows\":%zu,\"tokens\":%d,\"gemm_gops\":%.3f,\"vec_dot_gops\":%.3f}\n",
                                       lmp_type_name(types[t]), lmp_type_name(tr->vec_dot_type),
                                       lmp_isa_name((enum lmp_isa)isa), NCOLS, grows, GEMM_TOK, r->gemm_gops,
                                       r->pairs_gops);
                        }
                        r->r16_gbps[0] = r->r16_gbps[1] = r->r16_gops = 0.0;
                        for (int k = 0; tr->gemm_r16 && k < 2; k++) {
                                double wall;
                                r->r16_gbps[k] = measure(tr, GEMM_R16, w, row_bytes, rows[k], act, seconds, out, &sink,
                                                         &wall);
                                print_stream("gemv_r16", types[t], tr, isa, rows[k], row_bytes, r->r16_gbps[k], wall);
                        }
                        if (tr->gemm_r16) {
                                const size_t grows = SMALL_BYTES / row_bytes;
                                r->r16_gops = measure_gemm(tr, GEMM_R16, w, row_bytes, grows, act, act_bytes, seconds,
                                                           out, &sink);
                                printf("{\"bench\":\"gemm_r16\",\"type\":\"%s\",\"act\":\"%s\",\"isa\":\"%s\","
                                       "\"n\":%d,\"rows\":%zu,\"tokens\":%d,\"gops\":%.3f}\n",
                                       lmp_type_name(types[t]), lmp_type_name(tr->vec_dot_type),
                                       lmp_isa_name((enum lmp_isa)isa), NCOLS, grows / 16 * 16, GEMM_TOK, r->r16_gops);
                        }
                }
        }
        printf("\n%-6s %-6s %9s %9s %9s %9s   %10s %10s\n", "", "", "vec_dot", "vec_dot", "gemm nt=1",
               "gemm nt=1", "gemm", "vec_dot");
        printf("%-6s %-6s %9s %9s %9s %9s   %10s %10s   (GB/s of weights per CPU second; GOP/s, %d tokens)\n",
               "type", "isa", "64MiB", "256KiB", "64MiB", "256KiB", "gemm", "vec_dot", GEMM_TOK);
        for (size_t i = 0; i < nres; i++) {
                printf("%-6s %-6s %9.2f %9.2f", lmp_type_name(res[i].type), lmp_isa_name(res[i].isa),
                       res[i].gbps[0], res[i].gbps[1]);
                if (res[i].gemm_gops > 0.0)
                        printf(" %9.2f %9.2f   %10.1f %10.1f", res[i].gemv_gbps[0], res[i].gemv_gbps[1],
                               res[i].gemm_gops, res[i].pairs_gops);
                if (res[i].r16_gops > 0.0)
                        printf("   r16: nt=1 %.2f %.2f GB/s, %.1f GOP/s", res[i].r16_gbps[0], res[i].r16_gbps[1],
                               res[i].r16_gops);
                printf("\n");
        }
        printf("(checksum %g)\n", (double)sink);
        free(w);
        free(x);
        free(act);
        free(out);
        return 0;
}

/* Kernel throughput: for every weight type's vec_dot and every ISA level this
 * CPU has, the GB/s of weight bytes streamed when multiplying a weight matrix
 * by one activation row (the decode-time matrix-vector product), on a matrix
 * larger than the caches (memory-bound) and on one that fits in L2
 * (compute-bound). Rates are per second of the thread's CPU time, so that
 * other processes on a shared machine do not deflate them (the wall-clock
 * rate is printed too). Prints one JSON line per measurement, then a table.
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

struct result {
        enum lmp_type type;
        enum lmp_isa isa;
        double gbps[2];
        double gbps_wall[2];
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

/* Returns GB/s per CPU second; *ret_wall gets GB/s per wall second. */
static double measure(const struct lmp_quant_traits *tr, const uint8_t *w, size_t row_bytes, size_t rows,
                      const void *act, double seconds, float *sink, double *ret_wall) {
        size_t done = 0;
        const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        double c = c0;
        do {
                for (size_t r = 0; r < rows; r++) {
                        float s;
                        tr->vec_dot(NCOLS, &s, w + r * row_bytes, act);
                        *sink += s;
                }
                done += rows;
                c = clock_s(CLOCK_THREAD_CPUTIME_ID);
        } while (c - c0 < seconds);
        const double bytes = (double)done * (double)row_bytes;
        *ret_wall = bytes / (clock_s(CLOCK_MONOTONIC) - w0) / 1e9;
        return bytes / (c - c0) / 1e9;
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
        uint8_t *act = malloc(NCOLS * 4);
        if (!w || !x || !act) {
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
                        at->from_float(x, act, NCOLS);
                        struct result *r = &res[nres++];
                        r->type = types[t];
                        r->isa = (enum lmp_isa)isa;
                        const size_t rows[2] = { BIG_BYTES / row_bytes, SMALL_BYTES / row_bytes };
                        for (int k = 0; k < 2; k++) {
                                r->gbps[k] = measure(tr, w, row_bytes, rows[k], act, seconds, &sink, &r->gbps_wall[k]);
                                printf("{\"bench\":\"vec_dot\",\"type\":\"%s\",\"act\":\"%s\",\"isa\":\"%s\","
                                       "\"n\":%d,\"rows\":%zu,\"weight_bytes\":%zu,\"gbps\":%.3f,\"gbps_wall\":%.3f}\n",
                                       lmp_type_name(types[t]), lmp_type_name(tr->vec_dot_type),
                                       lmp_isa_name((enum lmp_isa)isa), NCOLS, rows[k], rows[k] * row_bytes,
                                       r->gbps[k], r->gbps_wall[k]);
                        }
                }
        }
        printf("\n%-6s %-6s %12s %12s   (GB/s of weights per CPU second)\n", "type", "isa", "64MiB", "256KiB");
        for (size_t i = 0; i < nres; i++)
                printf("%-6s %-6s %12.2f %12.2f\n", lmp_type_name(res[i].type), lmp_isa_name(res[i].isa),
                       res[i].gbps[0], res[i].gbps[1]);
        printf("(checksum %g)\n", (double)sink);
        free(w);
        free(x);
        free(act);
        return 0;
}

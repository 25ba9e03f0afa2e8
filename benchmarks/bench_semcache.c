/* The semantic cache's lookup (router/semcache.h): a full cache of N
 * entries of D dimensions, all with the same signature (the worst case:
 * every entry's vector is compared), queried with random unit vectors;
 * the median and 99th percentile of one lookup in microseconds, and the
 * cache's bytes. Prints one JSON line per shape, then a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/semcache.h"

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

struct row {
        size_t n, dims;
        double p50, p99;
        uint64_t bytes;
};

int main(void) {
        static const size_t ns[] = { 1000, 10000, 100000 };
        static const size_t dims_of[] = { 384, 768 };
        struct row rows[6];
        int nr = 0;
        enum { QUERIES = 200 };
        for (size_t di = 0; di < 2; di++)
                for (size_t ni = 0; ni < 3; ni++) {
                        size_t n = ns[ni], dims = dims_of[di];
                        struct lmp_semcache *c;
                        struct lmp_semcache_limits lim = { .max_entries = n, .max_bytes = (uint64_t)1 << 40,
                                                           .ttl_ms = 1e12, .threshold = 0.999f };
                        if (lmp_semcache_new(&lim, &c) < 0)
                                return 1;
                        float *v = malloc(dims * sizeof(float));
                        static const char answer[] = "{\"event\":\"done\",\"text\":\"an answer of a few dozen bytes\"}";
                        for (size_t i = 0; i < n; i++) {
                                for (size_t k = 0; k < dims; k++)
                                        v[k] = frand();
                                struct lmp_rcache_build b = { 0 };
                                lmp_rcache_build_append(&b, 1 << 20, answer, sizeof(answer) - 1);
                                if (lmp_semcache_put(c, v, dims, "sig", 3, &b, 0) < 0)
                                        return 1;
                        }
                        double t[QUERIES];
                        float sim;
                        size_t hits = 0;
                        for (int q = 0; q < QUERIES; q++) {
                                for (size_t k = 0; k < dims; k++)
                                        v[k] = frand();
                                double t0 = now_us();
                                hits += lmp_semcache_get(c, v, dims, "sig", 3, 1, &sim) != NULL;
                                t[q] = now_us() - t0;
                        }
                        qsort(t, QUERIES, sizeof(double), cmp);
                        rows[nr] = (struct row){ n, dims, t[QUERIES / 2], t[QUERIES * 99 / 100],
                                                 lmp_semcache_bytes(c) };
                        printf("{\"bench\":\"semcache_lookup\",\"entries\":%zu,\"dims\":%zu,\"p50_us\":%.1f,"
                               "\"p99_us\":%.1f,\"bytes\":%llu,\"hits\":%zu}\n", n, dims, rows[nr].p50, rows[nr].p99,
                               (unsigned long long)rows[nr].bytes, hits);
                        nr++;
                        free(v);
                        lmp_semcache_free(c);
                }
        printf("\n%8s %6s %10s %10s %10s\n", "entries", "dims", "p50 us", "p99 us", "MiB");
        for (int i = 0; i < nr; i++)
                printf("%8zu %6zu %10.1f %10.1f %10.1f\n", rows[i].n, rows[i].dims, rows[i].p50, rows[i].p99,
                       rows[i].bytes / 1048576.0);
        return 0;
}

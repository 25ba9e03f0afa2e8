/* What one parallel-for of the thread pool costs: for pools of 1 to 4
 * threads (or the counts given as arguments), the mean wall time of
 * back-to-back calls whose tasks do almost nothing (the call's own cost:
 * publish, wake, claim, barrier), and of calls whose 16 tasks each spin for
 * about 5 microseconds (a decode step's small products), in chunks of 1
 * and of 2.
 * Prints one JSON line per pool and then a table. Figures, not assertions;
 * on a shared machine they move with the load. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/threadpool.h"

#define CALLS 20000

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static atomic_uint sink;

static void nothing(void *arg, int64_t begin, int64_t end, int tid) {
        (void)arg;
        (void)tid;
        atomic_fetch_add_explicit(&sink, (unsigned)(end - begin), memory_order_relaxed);
}

/* About 5 us per index on a 2.5-3.5 GHz core. */
static void spin5us(void *arg, int64_t begin, int64_t end, int tid) {
        (void)arg;
        (void)tid;
        for (int64_t i = begin; i < end; i++)
                for (volatile int k = 0; k < 4000; k++)
                        ;
}

static double per_call_us(struct lmp_threadpool *p, int64_t n, int64_t grain, lmp_task_fn fn,
                          int calls) {
        double t0 = now_s();
        for (int i = 0; i < calls; i++)
                lmp_threadpool_run(p, n, grain, fn, NULL);
        return (now_s() - t0) / calls * 1e6;
}

int main(int argc, char **argv) {
        int counts[16], n_counts = 0;
        for (int i = 1; i < argc && n_counts < 16; i++)
                counts[n_counts++] = atoi(argv[i]);
        if (n_counts == 0)
                for (int t = 1; t <= 4; t++)
                        counts[n_counts++] = t;
        double res[16][3];
        for (int i = 0; i < n_counts; i++) {
                struct lmp_threadpool *p;
                if (lmp_threadpool_new(counts[i], &p) < 0) {
                        fprintf(stderr, "cannot start %d threads\n", counts[i]);
                        return 1;
                }
                per_call_us(p, 64, 1, nothing, 1000); /* warm up */
                res[i][0] = per_call_us(p, 2 * counts[i], 1, nothing, CALLS);
                res[i][1] = per_call_us(p, 16, 1, spin5us, CALLS / 10);
                res[i][2] = per_call_us(p, 16, 2, spin5us, CALLS / 10);
                lmp_threadpool_free(p);
                printf("{\"bench\": \"threadpool\", \"threads\": %d, \"empty_call_us\": %.2f, "
                       "\"call_16x5us_grain1_us\": %.1f, \"call_16x5us_grain2_us\": %.1f}\n",
                       counts[i], res[i][0], res[i][1], res[i][2]);
        }
        printf("\n%8s %14s %22s %22s\n", "threads", "empty call us", "16 x 5us, grain 1", "16 x 5us, grain 2");
        for (int i = 0; i < n_counts; i++)
                printf("%8d %14.2f %22.1f %22.1f\n", counts[i], res[i][0], res[i][1], res[i][2]);
        return 0;
}

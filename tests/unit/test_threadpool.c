/* Thread pool tests: every index of a parallel-for is visited exactly once,
 * for pools of 1 to 4 threads, ranges smaller and larger than the pool,
 * grains from 1 to past the range, and thousands of back-to-back calls (the
 * barrier must hold: each call's results are checked before the next). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/threadpool.h"

struct job {
        atomic_int *hits;
        atomic_int tids_seen;   /* bit per worker id */
        int n_threads;
        atomic_int bad_tid;
};

static void visit(void *arg, int64_t begin, int64_t end, int tid) {
        struct job *j = arg;
        if (tid < 0 || tid >= j->n_threads)
                atomic_fetch_add(&j->bad_tid, 1);
        else
                atomic_fetch_or(&j->tids_seen, 1 << tid);
        for (int64_t i = begin; i < end; i++)
                atomic_fetch_add(&j->hits[i], 1);
}

int main(void) {
        int failures = 0;
        enum { N_MAX = 5000 };
        atomic_int *hits = calloc(N_MAX, sizeof(*hits));
        if (!hits)
                return 1;

        for (int nth = 1; nth <= 4; nth++) {
                struct lmp_threadpool *p = NULL;
                if (lmp_threadpool_new(nth, &p) < 0 || lmp_threadpool_size(p) != nth) {
                        fprintf(stderr, "pool of %d: creation failed\n", nth);
                        return 1;
                }
                static const int64_t sizes[] = { 1, 2, 3, 7, 64, 100, 1000, N_MAX };
                static const int64_t grains[] = { 0, 1, 3, 16, 10000 };
                for (int rep = 0; rep < 200; rep++) {
                        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
                                int64_t n = sizes[si];
                                int64_t grain = grains[(size_t)rep % 5];
                                if (n == N_MAX && rep % 20 != 0)
                                        continue;
                                for (int64_t i = 0; i < n; i++)
                                        atomic_store(&hits[i], 0);
                                struct job j = { .hits = hits, .n_threads = nth };
                                lmp_threadpool_run(p, n, grain, visit, &j);
                                for (int64_t i = 0; i < n; i++)
                                        if (atomic_load(&hits[i]) != 1) {
                                                fprintf(stderr, "pool %d, n %lld, grain %lld: index %lld visited %d times\n",
                                                        nth, (long long)n, (long long)grain,
                                                        (long long)i, atomic_load(&hits[i]));
                                                failures++;
                                                break;
                                        }
                                if (atomic_load(&j.bad_tid) != 0) {
                                        fprintf(stderr, "pool %d: worker id out of range\n", nth);
                                        failures++;
                                }
                        }
                }
                /* An empty range calls nothing. */
                struct job j = { .hits = hits, .n_threads = nth };
                lmp_threadpool_run(p, 0, 1, visit, &j);
                if (atomic_load(&j.tids_seen) != 0) {
                        fprintf(stderr, "pool %d: empty range ran a task\n", nth);
                        failures++;
                }
                lmp_threadpool_free(p);
        }
        struct lmp_threadpool *p = NULL;
        if (lmp_threadpool_new(-1, &p) == 0 || lmp_threadpool_new(LMP_THREADPOOL_MAX + 1, &p) == 0) {
                fprintf(stderr, "bad sizes accepted\n");
                failures++;
        }
        lmp_threadpool_free(NULL);
        free(hits);
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        else
                printf("threadpool: ok\n");
        return failures ? 1 : 0;
}

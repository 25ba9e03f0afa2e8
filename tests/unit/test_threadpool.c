/* Thread pool tests: every index of a parallel-for is visited exactly once,
 * for pools of 1 to 4 threads, ranges smaller and larger than the pool,
 * grains from 1 to past the range, and thousands of back-to-back calls (the
 * barrier must hold: each call's results are checked before the next), in
 * fixed and in guided chunks.
 * Then a worker that stalls inside tasks: no index may be lost or repeated,
 * and no task may run for a call that has returned (a late worker must not
 * claim work of the next call with the previous call's job). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Jobs rotate through eight slots; a slot is live only while its call
 * runs, so a task that sees a dead slot ran late or with a stale job. */
struct stall_job {
        atomic_int live;
        atomic_int *hits;
        int64_t n;
};
static atomic_int stall_bad;

static void stall_visit(void *arg, int64_t begin, int64_t end, int tid) {
        struct stall_job *j = arg;
        if (!atomic_load(&j->live) || end > j->n)
                atomic_fetch_add(&stall_bad, 1);
        /* A few microseconds of work, so that every thread takes chunks. */
        for (volatile int spin = 0; spin < 2000; spin++)
                ;
        if (tid != 0 && begin % 5 == 0) {
                struct timespec ts = { 0, 50000 + (begin % 3) * 100000 };
                nanosleep(&ts, NULL);
        }
        for (int64_t i = begin; i < end; i++)
                atomic_fetch_add(&j->hits[i], 1);
        if (!atomic_load(&j->live))
                atomic_fetch_add(&stall_bad, 1);
}

static int stall_test(atomic_int *hits, int nth) {
        struct lmp_threadpool *p = NULL;
        static struct stall_job slots[8];
        int failures = 0;
        if (lmp_threadpool_new(nth, &p) < 0)
                return 1;
        uint32_t rng = 12345;
        int n_calls = nth > 3 ? 1000 : 3000;
        for (int call = 0; call < n_calls && !failures; call++) {
                struct stall_job *j = &slots[call & 7];
                rng = rng * 1103515245u + 12345u;
                j->n = 2 + (rng >> 8) % 300;
                j->hits = hits;
                for (int64_t i = 0; i < j->n; i++)
                        atomic_store(&hits[i], 0);
                atomic_store(&j->live, 1);
                if (call % 2)
                        lmp_threadpool_run_guided(p, j->n, 1 + (rng >> 20) % 4, 1 + (rng >> 24) % 32, stall_visit, j);
                else
                        lmp_threadpool_run(p, j->n, 1 + (rng >> 20) % 8, stall_visit, j);
                atomic_store(&j->live, 0);
                for (int64_t i = 0; i < j->n; i++)
                        if (atomic_load(&hits[i]) != 1) {
                                fprintf(stderr, "stall, pool %d, call %d: index %lld visited %d times\n", nth,
                                        call, (long long)i, atomic_load(&hits[i]));
                                failures++;
                                break;
                        }
        }
        /* Let a straggler finish its sleep: a task of a dead call would
         * still count. */
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
        if (atomic_load(&stall_bad)) {
                fprintf(stderr, "stall, pool %d: %d tasks ran outside their call\n", nth, atomic_load(&stall_bad));
                failures++;
        }
        lmp_threadpool_free(p);
        return failures;
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
                                if (rep % 3 == 1)       /* max below min, then above */
                                        lmp_threadpool_run_guided(p, n, grain, rep % 2 ? 2 : 64, visit, &j);
                                else
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
        failures += stall_test(hits, 2);
        failures += stall_test(hits, 3);
        failures += stall_test(hits, 6);  /* more threads than cores: preempted anywhere */
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

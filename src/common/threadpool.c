/* The thread pool behind every parallel matrix product. Each call publishes
 * a job (function, argument, range, grain) under the mutex and bumps a
 * generation counter; workers wake, take chunks from an atomic cursor until
 * the range is exhausted, and count themselves done. The caller works too
 * and then waits until every worker has checked in, which is the barrier.
 * A guided call hands out chunks that shrink as the range runs out (the
 * rest divided by twice the thread count, between a least and a largest
 * size), so that the threads end a long range close together.
 * A short spin before sleeping keeps per-call latency low in decode loops,
 * where a forward pass issues a few dozen calls of a few microseconds. */
#include "common/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/macros.h"

#define SPIN_ITERS 20000

struct worker {
        struct lmp_threadpool *pool;
        pthread_t thread;
        int tid;
};

struct lmp_threadpool {
        int n_threads;
        struct worker *workers;         /* n_threads - 1 of them */
        int n_started;

        pthread_mutex_t mu;
        pthread_cond_t wake;            /* a new generation, or stop */
        pthread_cond_t done_cv;         /* the last worker finished */

        /* The current job, written under mu before generation is bumped. */
        lmp_task_fn fn;
        void *arg;
        int64_t n;
        int64_t grain;
        int64_t max_grain;      /* guided: the largest chunk; 0: fixed chunks of grain */

        atomic_uint_fast64_t generation;
        atomic_int_fast64_t cursor;
        atomic_int n_done;              /* workers finished with this generation */
        bool stop;
};

static void work(struct lmp_threadpool *p, lmp_task_fn fn, void *arg, int64_t n,
                 int64_t grain, int64_t max_grain, int tid) {
        if (max_grain) {
                const int64_t div = 2 * (int64_t)p->n_threads;
                int64_t begin = atomic_load_explicit(&p->cursor, memory_order_relaxed);
                while (begin < n) {
                        int64_t size = LMP_MIN(LMP_MAX((n - begin) / div, grain), max_grain);
                        int64_t end = begin + size;
                        if (end > n)
                                end = n;
                        if (atomic_compare_exchange_weak_explicit(&p->cursor, &begin, end, memory_order_relaxed,
                                                                  memory_order_relaxed)) {
                                fn(arg, begin, end, tid);
                                begin = atomic_load_explicit(&p->cursor, memory_order_relaxed);
                        }
                }
                return;
        }
        for (;;) {
                int64_t begin = atomic_fetch_add_explicit(&p->cursor, grain,
                                                          memory_order_relaxed);
                if (begin >= n)
                        break;
                int64_t end = begin + grain < n ? begin + grain : n;
                fn(arg, begin, end, tid);
        }
}

static void *worker_main(void *opaque) {
        struct worker *w = opaque;
        struct lmp_threadpool *p = w->pool;
        uint_fast64_t seen = 0;

        for (;;) {
                /* Spin briefly for the next generation, then sleep. */
                uint_fast64_t g = 0;
                for (int i = 0; i < SPIN_ITERS; i++) {
                        g = atomic_load_explicit(&p->generation, memory_order_acquire);
                        if (g != seen)
                                break;
                }
                pthread_mutex_lock(&p->mu);
                while (!p->stop &&
                       (g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
                        pthread_cond_wait(&p->wake, &p->mu);
                if (p->stop) {
                        pthread_mutex_unlock(&p->mu);
                        return NULL;
                }
                lmp_task_fn fn = p->fn;
                void *arg = p->arg;
                int64_t n = p->n, grain = p->grain;
                int64_t max_grain = p->max_grain;
                pthread_mutex_unlock(&p->mu);
                seen = g;

                work(p, fn, arg, n, grain, max_grain, w->tid);

                if (atomic_fetch_add_explicit(&p->n_done, 1, memory_order_acq_rel) + 1 ==
                    p->n_threads - 1) {
                        pthread_mutex_lock(&p->mu);
                        pthread_cond_signal(&p->done_cv);
                        pthread_mutex_unlock(&p->mu);
                }
        }
}

int lmp_threadpool_new(int n_threads, struct lmp_threadpool **ret) {
        if (n_threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = n > 0 ? (int)LMP_MIN(n, (long)LMP_THREADPOOL_MAX) : 1;
        }
        if (n_threads < 1 || n_threads > LMP_THREADPOOL_MAX)
                return -EINVAL;

        struct lmp_threadpool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->n_threads = n_threads;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->wake, NULL);
        pthread_cond_init(&p->done_cv, NULL);
        atomic_init(&p->generation, 0);
        atomic_init(&p->cursor, 0);
        atomic_init(&p->n_done, 0);

        int r = 0;
        if (n_threads > 1) {
                p->workers = calloc((size_t)n_threads - 1, sizeof(*p->workers));
                if (!p->workers) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (int i = 0; i < n_threads - 1; i++) {
                        struct worker *w = &p->workers[i];
                        w->pool = p;
                        w->tid = i + 1;
                        int e = pthread_create(&w->thread, NULL, worker_main, w);
                        if (e != 0) {
                                r = -e;
                                goto fail;
                        }
                        p->n_started++;
                }
        }
        *ret = p;
        return 0;
fail:
        lmp_threadpool_free(p);
        return r;
}

void lmp_threadpool_free(struct lmp_threadpool *p) {
        if (!p)
                return;
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->n_started; i++)
                pthread_join(p->workers[i].thread, NULL);
        pthread_cond_destroy(&p->done_cv);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        free(p->workers);
        free(p);
}

int lmp_threadpool_size(const struct lmp_threadpool *p) {
        return p->n_threads;
}

static void run(struct lmp_threadpool *p, int64_t n, int64_t grain, int64_t max_grain,
                lmp_task_fn fn, void *arg) {
        if (n <= 0)
                return;
        if (grain < 1)
                grain = 1;
        if (max_grain && max_grain < grain)
                max_grain = grain;
        /* Not worth waking anyone for a single chunk. */
        if (p->n_threads == 1 || n <= grain) {
                fn(arg, 0, n, 0);
                return;
        }

        pthread_mutex_lock(&p->mu);
        p->fn = fn;
        p->arg = arg;
        p->n = n;
        p->grain = grain;
        p->max_grain = max_grain;
        atomic_store_explicit(&p->cursor, 0, memory_order_relaxed);
        atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);

        work(p, fn, arg, n, grain, max_grain, 0);

        /* Barrier: spin briefly, then sleep until the last worker signals. */
        for (int i = 0; i < SPIN_ITERS; i++)
                if (atomic_load_explicit(&p->n_done, memory_order_acquire) == p->n_threads - 1)
                        return;
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->n_done, memory_order_acquire) != p->n_threads - 1)
                pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
}

void lmp_threadpool_run(struct lmp_threadpool *p, int64_t n, int64_t grain,
                        lmp_task_fn fn, void *arg) {
        run(p, n, grain, 0, fn, arg);
}

void lmp_threadpool_run_guided(struct lmp_threadpool *p, int64_t n, int64_t min_grain,
                               int64_t max_grain, lmp_task_fn fn, void *arg) {
        run(p, n, min_grain, max_grain < 1 ? 1 : max_grain, fn, arg);
}

/* The thread pool behind every parallel matrix product. A decode step makes
 * a few hundred calls of tens to hundreds of microseconds each, so the cost
 * that matters is the call's own: publishing a job, waking the workers and
 * the barrier at its end. Here a call takes no lock and makes no system
 * call while the workers are spinning between calls, which they do for a
 * while before they sleep on a futex.
 *
 * Chunks are claimed from a 64-bit cursor that holds the call's generation
 * in its high half and the next index in its low half. The call's barrier
 * waits for every index to be *done*, not for every worker to check in: a
 * worker that the scheduler has put aside (two cores shared by several
 * processes is the normal case for lmpool, whose workers are processes)
 * does not hold the call up; when it comes back, its claims carry an old
 * generation and fail. The job's fields are plain atomics that a late
 * worker may read while the next call rewrites them: the caller first
 * retires the cursor (new generation, nothing left to claim), then
 * rewrites the fields after a release fence, and a worker reads the fields
 * before an acquire fence and only then the cursor, so a worker that saw a
 * field of the next job also sees the retired cursor and claims nothing
 * (the seqlock argument). */
#include "common/threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macros.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Pause loops before sleeping: about 0.3 ms on current x86 cores, several
 * decode steps' worth of gaps between calls. */
#define SPIN_ITERS 8192

#define NEXT_MASK UINT64_C(0xffffffff)
/* Largest range of one round: next + grain stays below 2^32. */
#define ROUND_MAX (INT64_C(1) << 30)

struct worker {
        struct lmp_threadpool *pool;
        pthread_t thread;
        int tid;
};

struct lmp_threadpool {
        int n_threads;
        struct worker *workers;         /* n_threads - 1 of them */
        int n_started;

        /* The current job: rewritten by the caller only while the cursor
         * is retired (see the opening comment). */
        _Atomic(lmp_task_fn) fn;
        _Atomic(void *) arg;
        atomic_int_fast64_t n;
        atomic_int_fast64_t grain;
        atomic_int_fast64_t unit;               /* guided: chunk multiple; 0: fixed grain */

        alignas(64) atomic_uint generation;     /* futex word of sleeping workers */
        atomic_int n_sleeping;
        atomic_bool stop;

        alignas(64) atomic_uint_fast64_t cursor; /* generation << 32 | next index */

        alignas(64) atomic_uint done;           /* indices done this call; caller's futex word */
        atomic_int caller_sleeping;
};

static long futex(atomic_uint *word, int op, unsigned val) {
        return syscall(SYS_futex, (unsigned *)word, op, val, NULL, NULL, 0);
}

static inline uint64_t tag_of(unsigned g) {
        return (uint64_t)g << 32;
}

/* Claims and runs chunks of generation g until none is left: grain indices
 * each, or with unit > 0 (guided) about a 2 * n_threads-th of what is left,
 * in multiples of unit. */
static void work(struct lmp_threadpool *p, unsigned g, lmp_task_fn fn, void *arg, int64_t n,
                 int64_t grain, int64_t unit, int tid) {
        uint64_t c = atomic_load_explicit(&p->cursor, memory_order_relaxed);
        for (;;) {
                int64_t begin = (int64_t)(c & NEXT_MASK);
                if ((c & ~NEXT_MASK) != tag_of(g) || begin >= n)
                        return;
                int64_t step = grain;
                if (unit > 0) {
                        step = (n - begin) / (2 * p->n_threads);
                        step = LMP_MAX(step - step % unit, unit);
                }
                if (!atomic_compare_exchange_weak_explicit(&p->cursor, &c, c + (uint64_t)step,
                                                           memory_order_acquire, memory_order_relaxed))
                        continue;
                int64_t end = LMP_MIN(begin + step, n);
                fn(arg, begin, end, tid);
                unsigned d = atomic_fetch_add_explicit(&p->done, (unsigned)(end - begin),
                                                       memory_order_seq_cst) + (unsigned)(end - begin);
                if ((int64_t)d == n && atomic_load_explicit(&p->caller_sleeping, memory_order_seq_cst))
                        futex(&p->done, FUTEX_WAKE_PRIVATE, 1);
                c = atomic_load_explicit(&p->cursor, memory_order_relaxed);
        }
}

static void *worker_main(void *opaque) {
        struct worker *w = opaque;
        struct lmp_threadpool *p = w->pool;
        unsigned seen = 0;

        for (;;) {
                unsigned g;
                int spins = 0;
                while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
                        if (++spins < SPIN_ITERS) {
                                cpu_relax();
                                continue;
                        }
                        atomic_fetch_add_explicit(&p->n_sleeping, 1, memory_order_seq_cst);
                        if (atomic_load_explicit(&p->generation, memory_order_seq_cst) == seen)
                                futex(&p->generation, FUTEX_WAIT_PRIVATE, seen);
                        atomic_fetch_sub_explicit(&p->n_sleeping, 1, memory_order_relaxed);
                        spins = 0;
                }
                seen = g;
                if (atomic_load_explicit(&p->stop, memory_order_acquire))
                        return NULL;
                lmp_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
                void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
                int64_t n = atomic_load_explicit(&p->n, memory_order_relaxed);
                int64_t grain = atomic_load_explicit(&p->grain, memory_order_relaxed);
                int64_t unit = atomic_load_explicit(&p->unit, memory_order_relaxed);
                atomic_thread_fence(memory_order_acquire);
                work(p, g, fn, arg, n, grain, unit, w->tid);
        }
}

int lmp_threadpool_new(int n_threads, struct lmp_threadpool **ret) {
        if (n_threads == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = n > 0 ? (int)LMP_MIN(n, (long)LMP_THREADPOOL_MAX) : 1;
        }
        if (n_threads < 1 || n_threads > LMP_THREADPOOL_MAX)
                return -EINVAL;

        struct lmp_threadpool *p = aligned_alloc(64, LMP_ALIGN_UP(sizeof(*p), 64));
        if (!p)
                return -ENOMEM;
        *p = (struct lmp_threadpool){ .n_threads = n_threads };
        atomic_init(&p->fn, NULL);
        atomic_init(&p->arg, NULL);
        atomic_init(&p->n, 0);
        atomic_init(&p->grain, 1);
        atomic_init(&p->unit, 0);
        atomic_init(&p->generation, 0);
        atomic_init(&p->n_sleeping, 0);
        atomic_init(&p->stop, false);
        atomic_init(&p->cursor, NEXT_MASK);     /* generation 0: nothing to claim */
        atomic_init(&p->done, 0);
        atomic_init(&p->caller_sleeping, 0);

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
        atomic_store_explicit(&p->stop, true, memory_order_seq_cst);
        atomic_fetch_add_explicit(&p->generation, 1, memory_order_seq_cst);
        futex(&p->generation, FUTEX_WAKE_PRIVATE, INT_MAX);
        for (int i = 0; i < p->n_started; i++)
                pthread_join(p->workers[i].thread, NULL);
        free(p->workers);
        free(p);
}

int lmp_threadpool_size(const struct lmp_threadpool *p) {
        return p->n_threads;
}

/* One call over [0, n), n <= ROUND_MAX. */
static void run_round(struct lmp_threadpool *p, int64_t n, int64_t grain, int64_t unit,
                      lmp_task_fn fn, void *arg) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
        if (g == 0)
                g = 1;  /* generation 0 is the pool's start, which workers have seen */

        /* Retire the cursor, then publish the job, then open the cursor. */
        atomic_store_explicit(&p->cursor, tag_of(g) | NEXT_MASK, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
        atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
        atomic_store_explicit(&p->n, n, memory_order_relaxed);
        atomic_store_explicit(&p->grain, grain, memory_order_relaxed);
        atomic_store_explicit(&p->unit, unit, memory_order_relaxed);
        atomic_store_explicit(&p->done, 0, memory_order_relaxed);
        atomic_store_explicit(&p->cursor, tag_of(g), memory_order_release);
        atomic_store_explicit(&p->generation, g, memory_order_seq_cst);
        if (atomic_load_explicit(&p->n_sleeping, memory_order_seq_cst) > 0)
                futex(&p->generation, FUTEX_WAKE_PRIVATE, INT_MAX);

        work(p, g, fn, arg, n, grain, unit, 0);

        /* Barrier: every index done (a chunk may still run on a worker). */
        unsigned d;
        for (int i = 0; i < SPIN_ITERS; i++) {
                if ((int64_t)atomic_load_explicit(&p->done, memory_order_acquire) == n)
                        return;
                cpu_relax();
        }
        atomic_store_explicit(&p->caller_sleeping, 1, memory_order_seq_cst);
        while ((int64_t)(d = atomic_load_explicit(&p->done, memory_order_seq_cst)) != n)
                futex(&p->done, FUTEX_WAIT_PRIVATE, d);
        atomic_store_explicit(&p->caller_sleeping, 0, memory_order_relaxed);
}

/* A range past ROUND_MAX indices (none in the tree) goes round by round,
 * each shifted by its base. */
struct offset_job {
        lmp_task_fn fn;
        void *arg;
        int64_t base;
};

static void offset_task(void *opaque, int64_t begin, int64_t end, int tid) {
        const struct offset_job *o = opaque;
        o->fn(o->arg, o->base + begin, o->base + end, tid);
}

void lmp_threadpool_run(struct lmp_threadpool *p, int64_t n, int64_t grain,
                        lmp_task_fn fn, void *arg) {
        if (n <= 0)
                return;
        if (grain < 1)
                grain = 1;
        /* Not worth waking anyone for a single chunk. */
        if (p->n_threads == 1 || n <= grain) {
                fn(arg, 0, n, 0);
                return;
        }
        if (n <= ROUND_MAX) {
                run_round(p, n, grain, 0, fn, arg);
                return;
        }
        for (int64_t base = 0; base < n; base += ROUND_MAX) {
                struct offset_job o = { .fn = fn, .arg = arg, .base = base };
                int64_t m = LMP_MIN(ROUND_MAX, n - base);
                run_round(p, m, LMP_MIN(grain, m), 0, offset_task, &o);
        }
}

void lmp_threadpool_run_guided(struct lmp_threadpool *p, int64_t n, int64_t unit,
                               lmp_task_fn fn, void *arg) {
        if (n <= 0)
                return;
        if (unit < 1)
                unit = 1;
        if (p->n_threads == 1 || n <= unit) {
                fn(arg, 0, n, 0);
                return;
        }
        if (n > ROUND_MAX) {    /* none in the tree: fixed chunks of unit */
                lmp_threadpool_run(p, n, unit, fn, arg);
                return;
        }
        run_round(p, n, unit, unit, fn, arg);
}

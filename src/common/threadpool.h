/* A persistent thread pool: one per process, sized by configuration, whose
 * only operation is a parallel-for over a range of task indices followed by
 * a barrier. The caller's thread takes part as worker 0, so a pool of one
 * thread starts no threads at all. Workers sleep on a condition variable
 * between calls; a call allocates nothing. Calls are not reentrant: one
 * parallel-for at a time per pool (the model context that owns the pool
 * serializes them), and a task function must not call back into the pool. */
#pragma once

#include <stdint.h>

struct lmp_threadpool;

/* fn is called with disjoint ranges [begin, end) that together cover
 * [0, n); tid is the calling worker's index in [0, size). */
typedef void (*lmp_task_fn)(void *arg, int64_t begin, int64_t end, int tid);

#define LMP_THREADPOOL_MAX 512

/* n_threads in [1, LMP_THREADPOOL_MAX]; 0 means one per online CPU. */
int lmp_threadpool_new(int n_threads, struct lmp_threadpool **ret);
void lmp_threadpool_free(struct lmp_threadpool *p);

int lmp_threadpool_size(const struct lmp_threadpool *p);

/* Runs fn over [0, n) in chunks of `grain` indices (at least 1), handed out
 * dynamically, and returns when every chunk is done. */
void lmp_threadpool_run(struct lmp_threadpool *p, int64_t n, int64_t grain,
                        lmp_task_fn fn, void *arg);

/* The same with chunks that shrink as the range runs out: each is what is
 * left divided by twice the pool's size, kept within [min_grain,
 * max_grain] (max_grain is raised to min_grain), so that the threads finish
 * close together at the end of a long range. */
void lmp_threadpool_run_guided(struct lmp_threadpool *p, int64_t n, int64_t min_grain,
                               int64_t max_grain, lmp_task_fn fn, void *arg);

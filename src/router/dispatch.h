/* The router's dispatch decisions, as pure functions of a narrow view of a
 * model's workers: which worker takes which queued request, where a
 * conversation runs, whether a request whose worker died runs again. No
 * socket, clock or process is involved: router.c fills the view from its
 * tables, applies the decisions and sends the jobs, and
 * tests/unit/test_dispatch.c checks every rule.
 *
 * The rules (docs/design.md, "The router"):
 *  - a request goes to a ready worker of its model with a free slot; of
 *    those, the least loaded (fewest running), ties to the one that has
 *    served fewest;
 *  - a conversation (affinity key) goes back to the worker that served it
 *    last while that one has a free slot (a hit); to another when its
 *    worker is not ready, or is saturated while another is idle (a miss:
 *    its history is computed again); otherwise it waits for its worker;
 *    a conversation never seen (or forgotten) goes anywhere (new);
 *  - the queue is served in order; a request waiting for its own worker
 *    lets the ones behind it take other workers' free slots; the pass
 *    ends when no worker has a free slot;
 *  - a request whose worker died runs again, at the head of its queue, if
 *    its client still waits, it has had no token, it has retries left,
 *    its deadline has not passed, its model can serve and the daemon is
 *    not stopping. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which worker served a conversation last: a direct-mapped table, so its
 * memory is fixed and a collision only forgets one. */
#define LMP_AFFINITY_SLOTS 4096
struct lmp_affinity {
        uint64_t key;                   /* 0: empty */
        uint32_t model;
        int32_t worker;                 /* index in the model's workers */
};

/* What dispatch sees of one worker. */
struct lmp_dispatch_worker {
        bool ready;                     /* takes jobs (not starting, stopping or gone) */
        uint32_t slots;                 /* sequences it runs at once */
        uint32_t active;                /* requests it holds (a cancelled one until it confirms) */
        uint64_t served;                /* requests it has finished */
};

enum lmp_placement {
        LMP_PLACE_WAIT,                 /* no worker now */
        LMP_PLACE_NEW,                  /* conversation not known: the least loaded worker */
        LMP_PLACE_HIT,                  /* the worker that served it last */
        LMP_PLACE_MISS,                 /* moved off its saturated or lost worker */
};

struct lmp_dispatch_counts {
        uint64_t hits, misses, new_;
};

/* The least-loaded ready worker with a free slot, -1 when none. */
int lmp_dispatch_least_loaded(const struct lmp_dispatch_worker *w, int n);

/* Where a request of the conversation last served by worker `last` (-1 or
 * out of range: not known) runs now; -1 (LMP_PLACE_WAIT) when it waits. */
int lmp_dispatch_place(const struct lmp_dispatch_worker *w, int n, int last, enum lmp_placement *ret_how);

/* The worker that served conversation key of model last, -1 if the table
 * does not hold it; and its update. table may be NULL (no affinity). */
int lmp_affinity_get(const struct lmp_affinity *table, uint64_t key, uint32_t model);
void lmp_affinity_set(struct lmp_affinity *table, uint64_t key, uint32_t model, int worker);

/* One pass over a model's queue of n requests, keys[i] the conversation
 * of the i-th in queue order: ret_assign[i] is the worker it goes to, or
 * -1 when it stays queued. Takes the slots it gives (w[].active), updates
 * the affinity table and counts hits, misses and new conversations.
 * Returns how many requests were placed. */
size_t lmp_dispatch_pass(struct lmp_dispatch_worker *w, int n_workers, uint32_t model, struct lmp_affinity *table,
                         const uint64_t *keys, size_t n, int *ret_assign, struct lmp_dispatch_counts *counts);

/* What decides whether a request whose worker died runs again. */
struct lmp_retry_facts {
        bool answered;                  /* its client has had its last event (cancel, timeout, ...) */
        bool streamed;                  /* its worker sent a token */
        unsigned retries, retries_max;  /* times it ran again; limits.retries */
        double now_ms, deadline_ms;
        bool model_failed;
        bool stopping;                  /* the daemon is shutting down */
};
bool lmp_dispatch_retry(const struct lmp_retry_facts *f);

/* Unit tests of the router's dispatch decisions (src/router/dispatch.h),
 * without a process or a socket: one test per rule, each written so that
 * breaking that rule fails it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/dispatch.h"
#include "../check.h"

#define W(ready, slots, active, served) { (ready), (slots), (active), (served) }

/* ------------------------------------------------------- least loaded */

static void test_least_loaded(void) {
        /* fewest running wins, whatever the order */
        struct lmp_dispatch_worker a[] = { W(1, 4, 2, 0), W(1, 4, 1, 9), W(1, 4, 3, 0) };
        CHECK(lmp_dispatch_least_loaded(a, 3) == 1, "fewest running");
        /* ties go to the one that has served fewest */
        struct lmp_dispatch_worker b[] = { W(1, 2, 1, 5), W(1, 2, 1, 3), W(1, 2, 1, 4) };
        CHECK(lmp_dispatch_least_loaded(b, 3) == 1, "ties by served");
        /* ... and then to the first */
        struct lmp_dispatch_worker c[] = { W(1, 2, 0, 3), W(1, 2, 0, 3) };
        CHECK(lmp_dispatch_least_loaded(c, 2) == 0, "equal: the first");
        /* not ready, or full: never, however idle they look */
        struct lmp_dispatch_worker d[] = { W(0, 4, 0, 0), W(1, 1, 1, 0), W(1, 3, 2, 100) };
        CHECK(lmp_dispatch_least_loaded(d, 3) == 2, "skips not ready and full");
        struct lmp_dispatch_worker e[] = { W(0, 4, 0, 0), W(1, 2, 2, 0), W(1, 0, 0, 0) };
        CHECK(lmp_dispatch_least_loaded(e, 3) == -1, "none has room");
        CHECK(lmp_dispatch_least_loaded(e, 0) == -1, "no workers");
}

/* ------------------------------------------------------------ placement */

static void test_place(void) {
        enum lmp_placement how;
        /* new: no last worker, or one out of range: the least loaded */
        struct lmp_dispatch_worker a[] = { W(1, 2, 1, 0), W(1, 2, 0, 0) };
        CHECK(lmp_dispatch_place(a, 2, -1, &how) == 1 && how == LMP_PLACE_NEW, "new");
        CHECK(lmp_dispatch_place(a, 2, 7, &how) == 1 && how == LMP_PLACE_NEW, "out of range is new");
        /* hit: its worker has a free slot, even if another is less loaded */
        CHECK(lmp_dispatch_place(a, 2, 0, &how) == 0 && how == LMP_PLACE_HIT, "hit on the busier worker");
        /* miss: its worker is saturated while another is idle */
        struct lmp_dispatch_worker b[] = { W(1, 1, 1, 0), W(1, 2, 0, 0) };
        CHECK(lmp_dispatch_place(b, 2, 0, &how) == 1 && how == LMP_PLACE_MISS, "saturated, another idle");
        /* wait: its worker is saturated and nobody is idle (the other has
         * a free slot but is busy) */
        struct lmp_dispatch_worker c[] = { W(1, 1, 1, 0), W(1, 2, 1, 0) };
        CHECK(lmp_dispatch_place(c, 2, 0, &how) == -1 && how == LMP_PLACE_WAIT, "saturated, none idle");
        /* miss: its worker is not ready (gone, stopping), even if the other is busy */
        struct lmp_dispatch_worker d[] = { W(0, 2, 0, 0), W(1, 2, 1, 0) };
        CHECK(lmp_dispatch_place(d, 2, 0, &how) == 1 && how == LMP_PLACE_MISS, "its worker not ready");
        /* wait: nobody has room */
        struct lmp_dispatch_worker e[] = { W(1, 1, 1, 0), W(1, 1, 1, 0) };
        CHECK(lmp_dispatch_place(e, 2, -1, &how) == -1 && how == LMP_PLACE_WAIT, "all full, new");
        CHECK(lmp_dispatch_place(e, 2, 1, &how) == -1 && how == LMP_PLACE_WAIT, "all full, known");
}

/* ------------------------------------------------------------- affinity */

static void test_affinity_table(void) {
        struct lmp_affinity *t = calloc(LMP_AFFINITY_SLOTS, sizeof(*t));
        CHECK(lmp_affinity_get(t, 42, 0) == -1, "empty");
        lmp_affinity_set(t, 42, 0, 3);
        CHECK(lmp_affinity_get(t, 42, 0) == 3, "set");
        CHECK(lmp_affinity_get(t, 42, 1) == -1, "another model's");
        /* a collision forgets the older conversation */
        lmp_affinity_set(t, 42 + LMP_AFFINITY_SLOTS, 0, 1);
        CHECK(lmp_affinity_get(t, 42, 0) == -1 && lmp_affinity_get(t, 42 + LMP_AFFINITY_SLOTS, 0) == 1, "collision");
        /* no table: every conversation is new */
        lmp_affinity_set(NULL, 5, 0, 1);
        CHECK(lmp_affinity_get(NULL, 5, 0) == -1, "no table");
        free(t);
}

/* ------------------------------------------------------------ the pass */

static void test_pass_order_and_affinity(void) {
        struct lmp_affinity *t = calloc(LMP_AFFINITY_SLOTS, sizeof(*t));
        struct lmp_dispatch_counts c = { 0 };
        int assign[8];

        /* Queue order: with two free slots and three new conversations,
         * the first two are placed, the third waits. */
        struct lmp_dispatch_worker a[] = { W(1, 1, 0, 0), W(1, 1, 0, 0) };
        uint64_t k1[] = { 11, 12, 13 };
        CHECK(lmp_dispatch_pass(a, 2, 0, t, k1, 3, assign, &c) == 2, "two placed");
        CHECK(assign[0] == 0 && assign[1] == 1 && assign[2] == -1, "in order: %d %d %d", assign[0], assign[1],
              assign[2]);
        CHECK(a[0].active == 1 && a[1].active == 1, "slots taken");
        CHECK(c.new_ == 2 && c.hits == 0 && c.misses == 0, "counted new %llu", (unsigned long long)c.new_);

        /* The affinity table now says 11 -> 0, 12 -> 1: their next turns go
         * back there (hits), even when the other worker is less loaded. */
        struct lmp_dispatch_worker b[] = { W(1, 4, 2, 0), W(1, 4, 0, 0) };
        uint64_t k2[] = { 11, 12 };
        memset(&c, 0, sizeof(c));
        CHECK(lmp_dispatch_pass(b, 2, 0, t, k2, 2, assign, &c) == 2 && assign[0] == 0 && assign[1] == 1,
              "hits: %d %d", assign[0], assign[1]);
        CHECK(c.hits == 2 && c.new_ == 0, "counted hits");

        /* A request waiting for its own busy worker lets the one behind it
         * take the other worker's free slot: 11's worker (0) is full,
         * worker 1 is busy (not idle), so 11 waits and 14 (new) goes to 1. */
        struct lmp_dispatch_worker d[] = { W(1, 1, 1, 0), W(1, 2, 1, 0) };
        uint64_t k3[] = { 11, 14 };
        memset(&c, 0, sizeof(c));
        CHECK(lmp_dispatch_pass(d, 2, 0, t, k3, 2, assign, &c) == 1, "one placed");
        CHECK(assign[0] == -1 && assign[1] == 1, "the waiting one is passed: %d %d", assign[0], assign[1]);
        CHECK(c.new_ == 1 && c.misses == 0 && c.hits == 0, "counted");

        /* Once no worker has room the rest stay queued, uncounted. */
        struct lmp_dispatch_worker e[] = { W(1, 1, 0, 0) };
        uint64_t k4[] = { 21, 22, 23 };
        memset(&c, 0, sizeof(c));
        CHECK(lmp_dispatch_pass(e, 1, 0, t, k4, 3, assign, &c) == 1 && assign[0] == 0 && assign[1] == -1 &&
              assign[2] == -1, "the rest stay queued");
        CHECK(c.new_ == 1, "nothing counted after the pass ended: %llu", (unsigned long long)c.new_);

        /* Two turns of one conversation in one pass: the second follows the
         * first (the table is updated as the pass goes). */
        struct lmp_dispatch_worker f[] = { W(1, 2, 0, 0), W(1, 2, 0, 1) };
        uint64_t k5[] = { 31, 31 };
        memset(&c, 0, sizeof(c));
        CHECK(lmp_dispatch_pass(f, 2, 0, t, k5, 2, assign, &c) == 2 && assign[0] == 0 && assign[1] == 0,
              "same conversation: %d %d", assign[0], assign[1]);
        CHECK(c.new_ == 1 && c.hits == 1, "new then hit");

        /* A miss moves the conversation: its next turn follows it. */
        struct lmp_dispatch_worker g[] = { W(1, 1, 1, 0), W(1, 1, 0, 0) };
        uint64_t k6[] = { 31 };
        memset(&c, 0, sizeof(c));
        CHECK(lmp_dispatch_pass(g, 2, 0, t, k6, 1, assign, &c) == 1 && assign[0] == 1 && c.misses == 1, "miss");
        CHECK(lmp_affinity_get(t, 31, 0) == 1, "moved to worker 1");

        /* Models do not share conversations. */
        CHECK(lmp_affinity_get(t, 31, 1) == -1, "model 1 does not know it");
        free(t);
}

/* A request put back at the head of the queue (its worker died) is the
 * first served when a slot frees, before those that were queued first. */
static void test_retry_at_head(void) {
        struct lmp_dispatch_worker w[] = { W(1, 1, 0, 0) };
        uint64_t keys[] = { 99 /* the retried one, at the head */, 1, 2 };
        int assign[3];
        struct lmp_dispatch_counts c = { 0 };
        CHECK(lmp_dispatch_pass(w, 1, 0, NULL, keys, 3, assign, &c) == 1 && assign[0] == 0 && assign[1] == -1,
              "head first");

        struct lmp_retry_facts ok = { .retries = 0, .retries_max = 1, .now_ms = 10, .deadline_ms = 20 };
        CHECK(lmp_dispatch_retry(&ok), "a request with nothing sent runs again");
        struct lmp_retry_facts f;
        f = ok, f.streamed = true;
        CHECK(!lmp_dispatch_retry(&f), "not after its first token");
        f = ok, f.answered = true;
        CHECK(!lmp_dispatch_retry(&f), "not once its client was answered");
        f = ok, f.retries = 1;
        CHECK(!lmp_dispatch_retry(&f), "not past limits.retries");
        f = ok, f.retries_max = 0;
        CHECK(!lmp_dispatch_retry(&f), "not with limits.retries 0");
        f = ok, f.retries = 1, f.retries_max = 2;
        CHECK(lmp_dispatch_retry(&f), "a second retry when allowed");
        f = ok, f.now_ms = 20;
        CHECK(!lmp_dispatch_retry(&f), "not at its deadline");
        f = ok, f.model_failed = true;
        CHECK(!lmp_dispatch_retry(&f), "not when its model failed");
        f = ok, f.stopping = true;
        CHECK(!lmp_dispatch_retry(&f), "not while stopping");
}

int main(void) {
        test_least_loaded();
        test_place();
        test_affinity_table();
        test_pass_order_and_affinity();
        test_retry_at_head();
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("dispatch: ok\n");
        return 0;
}

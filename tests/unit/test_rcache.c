/* The router's response cache: an answer stored under its key comes back
 * event by event; another key, another model or an expired entry is a
 * miss; the byte bound evicts the least recently used entry (a lookup
 * counts as a use); an answer larger than an eighth of the cache is never
 * stored; a model's entries can be dropped; new limits apply at once; and
 * thousands of entries in few buckets keep every answer with its key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/cache.h"
#include "../check.h"

/* An answer of n events "<tag>:<i>". */
static struct lmp_rcache_build answer(const struct lmp_rcache *c, const char *tag, int n) {
        struct lmp_rcache_build b = { 0 };
        char ev[64];
        for (int i = 0; i < n; i++) {
                int len = snprintf(ev, sizeof(ev), "%s:%d", tag, i);
                lmp_rcache_build_add(c, &b, ev, (size_t)len);
        }
        return b;
}

/* Whether e holds exactly the n events of answer(tag, n). */
static bool holds(const struct lmp_rcache_entry *e, const char *tag, int n) {
        size_t pos = 0, len;
        const uint8_t *ev;
        char want[64];
        int i = 0;
        if (!e)
                return false;
        while (lmp_rcache_next_event(e, &pos, &ev, &len)) {
                int wl = snprintf(want, sizeof(want), "%s:%d", tag, i++);
                if (len != (size_t)wl || memcmp(ev, want, len) != 0)
                        return false;
        }
        return i == n;
}

int main(void) {
        struct lmp_rcache *c;
        CHECK(lmp_rcache_new(64 << 10, 1000.0, &c) == 0, "new");
        if (failures)
                return 1;

        struct lmp_rcache_build b = answer(c, "a", 5);
        CHECK(lmp_rcache_put(c, 0, "key-a", 5, &b, 0.0) == 0, "put a");
        CHECK(b.data == NULL && b.len == 0, "put takes the builder's memory");
        CHECK(holds(lmp_rcache_get(c, 0, "key-a", 5, 10.0), "a", 5), "a comes back whole");
        CHECK(lmp_rcache_get(c, 1, "key-a", 5, 10.0) == NULL, "another model: miss");
        CHECK(lmp_rcache_get(c, 0, "key-b", 5, 10.0) == NULL, "another key: miss");
        CHECK(lmp_rcache_get(c, 0, "key-a", 4, 10.0) == NULL, "a prefix of the key: miss");
        CHECK(lmp_rcache_entries(c) == 1 && lmp_rcache_bytes(c) > 0, "one entry");

        /* the same key again replaces the entry */
        b = answer(c, "a2", 3);
        CHECK(lmp_rcache_put(c, 0, "key-a", 5, &b, 20.0) == 0, "replace a");
        CHECK(holds(lmp_rcache_get(c, 0, "key-a", 5, 30.0), "a2", 3), "the new answer");
        CHECK(lmp_rcache_entries(c) == 1, "still one entry");

        /* TTL: at 1000 ms after its creation the entry is gone */
        CHECK(lmp_rcache_get(c, 0, "key-a", 5, 1019.0) != NULL, "young enough");
        CHECK(lmp_rcache_get(c, 0, "key-a", 5, 1020.0) == NULL, "expired");
        CHECK(lmp_rcache_entries(c) == 0 && lmp_rcache_bytes(c) == 0, "an expired entry is freed");

        /* an answer over an eighth of the cache: refused */
        b = answer(c, "long", 2000);
        CHECK(b.invalid, "the builder turns invalid past an eighth of the cache");
        CHECK(lmp_rcache_put(c, 0, "k", 1, &b, 0.0) == -EINVAL, "an invalid builder is refused");
        lmp_rcache_build_clear(&b);
        struct lmp_rcache_build empty = { 0 };
        CHECK(lmp_rcache_put(c, 0, "k", 1, &empty, 0.0) == -EINVAL, "an empty answer is refused");

        /* the byte bound: fill, touch the first, add more: the untouched
         * oldest go first */
        char key[32];
        int stored = 0;
        for (int i = 0; i < 200; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                b = answer(c, key, 40);
                if (lmp_rcache_put(c, 0, key, strlen(key), &b, 0.0) == 0)
                        stored++;
                lmp_rcache_build_clear(&b);
                CHECK(lmp_rcache_bytes(c) <= 64 << 10, "bound held at %d", i);
                CHECK(lmp_rcache_get(c, 0, "k0", 2, 0.0) != NULL, "k0, used each time, stays (at %d)", i);
        }
        CHECK(stored == 200, "every answer was stored");
        CHECK(lmp_rcache_get(c, 0, "k1", 2, 0.0) == NULL, "k1, never used, went first");
        CHECK(holds(lmp_rcache_get(c, 0, "k199", 4, 0.0), "k199", 40), "the newest is there");
        size_t n = lmp_rcache_entries(c);
        CHECK(n > 10 && n < 200, "%zu entries under the bound", n);

        /* new limits: smaller, applied at once */
        lmp_rcache_set_limits(c, 16 << 10, 1000.0);
        CHECK(lmp_rcache_bytes(c) <= 16 << 10, "shrunk to the new bound");
        CHECK(lmp_rcache_get(c, 0, "k199", 4, 0.0) != NULL, "the most recent stays");

        /* drop a model */
        b = answer(c, "m1", 3);
        CHECK(lmp_rcache_put(c, 1, "k199", 4, &b, 0.0) == 0, "same key, model 1");
        lmp_rcache_drop_model(c, 0);
        CHECK(lmp_rcache_get(c, 0, "k199", 4, 0.0) == NULL, "model 0 dropped");
        CHECK(holds(lmp_rcache_get(c, 1, "k199", 4, 0.0), "m1", 3), "model 1 kept");
        lmp_rcache_free(c);

        /* a large cache with many entries: each key keeps its own answer */
        CHECK(lmp_rcache_new(8 << 20, 1e9, &c) == 0, "new large");
        for (int i = 0; i < 5000; i++) {
                snprintf(key, sizeof(key), "key%d", i);
                b = answer(c, key, 2);
                CHECK(lmp_rcache_put(c, (uint32_t)(i % 3), key, strlen(key), &b, 0.0) == 0, "put %d", i);
        }
        for (int i = 0; i < 5000; i += 7) {
                snprintf(key, sizeof(key), "key%d", i);
                CHECK(holds(lmp_rcache_get(c, (uint32_t)(i % 3), key, strlen(key), 0.0), key, 2), "get %d", i);
        }
        lmp_rcache_free(c);

        /* a cache of size 0 stores nothing */
        CHECK(lmp_rcache_new(0, 1000.0, &c) == 0, "new empty");
        b = answer(c, "x", 1);
        CHECK(b.invalid && lmp_rcache_put(c, 0, "x", 1, &b, 0.0) < 0, "nothing stored");
        lmp_rcache_build_clear(&b);
        lmp_rcache_free(c);

        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        else
                printf("response cache: ok\n");
        return failures ? 1 : 0;
}

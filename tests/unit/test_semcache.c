/* The router's semantic cache: a vector close enough (cosine at or above
 * the threshold, whatever its length) with the same signature gets the
 * stored answer and its similarity; a vector further off, another
 * signature or other dimensions is a miss; of two entries the closer one
 * answers; an entry past its TTL is dropped and counted; the entry bound
 * and the byte bound evict the least recently used (a hit counts as a
 * use) and count it; an answer over an eighth of the bytes is refused;
 * clearing lets other dimensions in. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/semcache.h"

static int failures;

#define CHECK(cond, ...)                                                    \
        do {                                                                \
                if (!(cond)) {                                              \
                        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);     \
                        fprintf(stderr, __VA_ARGS__);                       \
                        fputc('\n', stderr);                                \
                        failures++;                                         \
                }                                                           \
        } while (0)

#define DIMS 8

static struct lmp_rcache_build answer(const char *text) {
        struct lmp_rcache_build b = { 0 };
        lmp_rcache_build_append(&b, 1 << 20, text, strlen(text));
        return b;
}

/* Whether e's one event is text. */
static bool holds(const struct lmp_semcache_entry *e, const char *text) {
        const uint8_t *data, *ev;
        size_t len, pos = 0, ev_len;
        if (!e)
                return false;
        lmp_semcache_entry_events(e, &data, &len);
        return lmp_rcache_next_event_in(data, len, &pos, &ev, &ev_len) && ev_len == strlen(text) &&
               memcmp(ev, text, ev_len) == 0 && pos == len;
}

/* Unit vector i (a one at i). */
static void basis(float *v, int i) {
        memset(v, 0, DIMS * sizeof(float));
        v[i] = 1;
}

static int put(struct lmp_semcache *c, const float *v, const char *sig, const char *text, double now) {
        struct lmp_rcache_build b = answer(text);
        int rc = lmp_semcache_put(c, v, DIMS, sig, strlen(sig), &b, now);
        lmp_rcache_build_clear(&b);
        return rc;
}

static const struct lmp_semcache_entry *get(struct lmp_semcache *c, const float *v, const char *sig, double now,
                                            float *sim) {
        return lmp_semcache_get(c, v, DIMS, sig, strlen(sig), now, sim);
}

int main(void) {
        struct lmp_semcache *c;
        struct lmp_semcache_limits lim = { .max_entries = 3, .max_bytes = 64 << 10, .ttl_ms = 1000, .threshold = 0.9f };
        float v[DIMS], q[DIMS], sim = 0;

        CHECK(lmp_semcache_new(&(struct lmp_semcache_limits){ .max_entries = 0, .max_bytes = 1, .ttl_ms = 1,
                                                              .threshold = 0.5f }, &c) == -EINVAL, "no entries");
        CHECK(lmp_semcache_new(&lim, &c) == 0, "new");
        if (failures)
                return 1;

        basis(v, 0);
        CHECK(get(c, v, "s", 0, &sim) == NULL, "empty: a miss");
        CHECK(put(c, v, "s", "answer-0", 0) == 0, "put 0");
        /* Scaled: the same direction. */
        for (int i = 0; i < DIMS; i++)
                q[i] = 3 * v[i];
        CHECK(holds(get(c, q, "s", 1, &sim), "answer-0") && fabsf(sim - 1) < 1e-6f, "same direction: hit, %f", sim);
        /* cos = 0.95: within 0.9. */
        basis(q, 0);
        q[0] = 0.95f;
        q[1] = sqrtf(1 - 0.95f * 0.95f);
        CHECK(holds(get(c, q, "s", 2, &sim), "answer-0") && fabsf(sim - 0.95f) < 1e-5f, "0.95: hit, %f", sim);
        /* cos = 0.85: not. */
        q[0] = 0.85f;
        q[1] = sqrtf(1 - 0.85f * 0.85f);
        CHECK(get(c, q, "s", 3, &sim) == NULL, "0.85: a miss");
        CHECK(get(c, v, "other", 3, &sim) == NULL, "another signature: a miss");
        CHECK(lmp_semcache_get(c, v, DIMS - 1, "s", 1, 3, &sim) == NULL, "other dimensions: a miss");
        CHECK(put(c, v, "s", "x", 3) == 0 && lmp_semcache_entries(c) == 2, "the same vector again: a second entry");

        /* The closer of two answers. */
        lmp_semcache_clear(c);
        basis(v, 0);
        put(c, v, "s", "zero", 0);
        basis(v, 1);
        put(c, v, "s", "one", 0);
        q[0] = 0.6f;
        q[1] = 0.8f;
        for (int i = 2; i < DIMS; i++)
                q[i] = 0;
        lim.threshold = 0.5f;
        struct lmp_semcache *c2;
        CHECK(lmp_semcache_new(&lim, &c2) == 0, "new 2");
        basis(v, 0);
        put(c2, v, "s", "zero", 0);
        basis(v, 1);
        put(c2, v, "s", "one", 0);
        CHECK(holds(get(c2, q, "s", 1, &sim), "one") && fabsf(sim - 0.8f) < 1e-5f, "the closer: %f", sim);
        lmp_semcache_free(c2);

        /* TTL: dropped when met, and counted. */
        basis(v, 0);
        CHECK(get(c, v, "s", 999, &sim) != NULL, "younger than the TTL");
        CHECK(get(c, v, "s", 1000, &sim) == NULL, "at the TTL: gone");
        CHECK(lmp_semcache_entries(c) == 0 && lmp_semcache_expirations(c) == 2, "both expired: %zu, %llu",
              lmp_semcache_entries(c), (unsigned long long)lmp_semcache_expirations(c));

        /* The entry bound: the least recently used goes. */
        for (int i = 0; i < 3; i++) {
                char t[16];
                snprintf(t, sizeof(t), "e%d", i);
                basis(v, i);
                put(c, v, "s", t, 2000 + i);
        }
        basis(v, 0);
        CHECK(holds(get(c, v, "s", 2010, &sim), "e0"), "e0 used last");
        basis(v, 3);
        CHECK(put(c, v, "s", "e3", 2011) == 0, "put e3");
        CHECK(lmp_semcache_entries(c) == 3 && lmp_semcache_evictions(c) == 1, "bound of 3, one eviction");
        basis(v, 1);
        CHECK(get(c, v, "s", 2012, &sim) == NULL, "e1 (least recently used) evicted");
        basis(v, 0);
        CHECK(holds(get(c, v, "s", 2012, &sim), "e0"), "e0 kept");
        basis(v, 3);
        CHECK(holds(get(c, v, "s", 2012, &sim), "e3"), "e3 kept");
        lmp_semcache_free(c);

        /* The byte bound, and an answer over an eighth of it. */
        lim = (struct lmp_semcache_limits){ .max_entries = 1000, .max_bytes = 4096, .ttl_ms = 1e9, .threshold = 0.9f };
        CHECK(lmp_semcache_new(&lim, &c) == 0, "new 3");
        char big[600];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        basis(v, 0);
        CHECK(put(c, v, "s", big, 0) == -E2BIG, "over an eighth: refused");
        for (int i = 0; i < 100; i++) {
                basis(v, i % DIMS);
                v[(i + 1) % DIMS] = (float)i;
                CHECK(put(c, v, "s", "small answer", i) == 0, "put %d", i);
                CHECK(lmp_semcache_bytes(c) <= 4096, "bytes %llu", (unsigned long long)lmp_semcache_bytes(c));
        }
        CHECK(lmp_semcache_evictions(c) > 0 && lmp_semcache_entries(c) < 100, "evicted for bytes");
        /* A zero vector is refused; after a clear, other dimensions fit. */
        memset(v, 0, sizeof(v));
        CHECK(put(c, v, "s", "z", 0) == -EINVAL, "zero vector");
        basis(v, 0);
        struct lmp_rcache_build b = answer("four");
        CHECK(lmp_semcache_put(c, v, 4, "s", 1, &b, 0) == -EINVAL, "other dimensions refused");
        lmp_semcache_clear(c);
        CHECK(lmp_semcache_put(c, v, 4, "s", 1, &b, 0) == 0 && lmp_semcache_entries(c) == 1, "after a clear");
        lmp_rcache_build_clear(&b);
        lmp_semcache_free(c);
        lmp_semcache_free(NULL);

        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("semcache: all checks passed\n");
        return 0;
}

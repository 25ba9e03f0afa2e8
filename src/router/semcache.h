/* The router's semantic cache of one generative model: answers stored
 * under the vector of their request's key text (the last user message,
 * or the prompt) and a signature (the rest of the request that changes
 * the answer: model, sampling fields, the other messages), so that a
 * request whose key is close enough in meaning (cosine similarity at or
 * above a threshold) and whose signature is the same is answered again
 * without a worker. Bounded in entries and in bytes (the least recently
 * used entry goes first) and in age (an entry older than the TTL is
 * dropped when a lookup meets it).
 *
 * A lookup compares the key with every entry of the same signature:
 * brute force over one contiguous array of unit vectors, which at the
 * bounds this is meant for (a few thousand answers of a 384- or
 * 768-dimension model) costs microseconds (benchmarks/semcache_bench.c).
 * Pure data structure: no ZeroMQ, no clock of its own (callers pass now). */
#ifndef LMP_ROUTER_SEMCACHE_H
#define LMP_ROUTER_SEMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router/cache.h"

#define LMP_SEMCACHE_DIMS_MAX 8192

struct lmp_semcache;

struct lmp_semcache_limits {
        size_t max_entries;             /* >= 1 */
        uint64_t max_bytes;             /* an entry may take an eighth of it */
        double ttl_ms;                  /* > 0 */
        float threshold;                /* (0, 1] */
};

int lmp_semcache_new(const struct lmp_semcache_limits *lim, struct lmp_semcache **ret);
void lmp_semcache_free(struct lmp_semcache *c);
/* Forgets every entry (a reload, or the model's weights changed). */
void lmp_semcache_clear(struct lmp_semcache *c);

/* The entry whose vector is the most similar to vec (dims floats, any
 * length but 0) among those with signature sig younger than the TTL, if
 * that similarity reaches the threshold: made the most recently used, its
 * similarity in *ret_similarity. NULL otherwise (and for a vector of
 * other dimensions than the stored ones). Entries found too old on the
 * way are dropped. Valid until the next call that changes the cache. */
struct lmp_semcache_entry;
const struct lmp_semcache_entry *lmp_semcache_get(struct lmp_semcache *c, const float *vec, size_t dims,
                                                  const void *sig, size_t sig_len, double now_ms,
                                                  float *ret_similarity);
/* The stored events of an entry, as lmp_rcache_next_event_in() walks them. */
void lmp_semcache_entry_events(const struct lmp_semcache_entry *e, const uint8_t **ret_data, size_t *ret_len);

/* Stores b's events under (vec, sig); takes b's memory on success (b is
 * zeroed). Makes room first (least recently used out). 0, or -EINVAL for
 * an invalid or empty builder, a zero vector or dims other than the
 * stored entries' (0 or past LMP_SEMCACHE_DIMS_MAX), -E2BIG when the entry
 * is over an eighth of max_bytes, -ENOMEM. */
int lmp_semcache_put(struct lmp_semcache *c, const float *vec, size_t dims, const void *sig, size_t sig_len,
                     struct lmp_rcache_build *b, double now_ms);

/* The most one entry may take, for the builder of an answer. */
size_t lmp_semcache_entry_max(const struct lmp_semcache *c);

size_t lmp_semcache_entries(const struct lmp_semcache *c);
uint64_t lmp_semcache_bytes(const struct lmp_semcache *c);
uint64_t lmp_semcache_evictions(const struct lmp_semcache *c);
uint64_t lmp_semcache_expirations(const struct lmp_semcache *c);

#endif

/* The router's exact response cache: the events a worker sent for a
 * deterministic request (greedy, or with a seed), stored under the
 * request's canonical form without its id, so that the same request is
 * answered again without a worker. Bounded in bytes (least recently used
 * entries go first) and in age (an entry older than the TTL is a miss).
 * Pure data structure: no ZeroMQ, no clock of its own (callers pass now). */
#ifndef LMP_ROUTER_CACHE_H
#define LMP_ROUTER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lmp_rcache;

/* max_bytes 0: a cache that stores nothing. ttl_ms > 0. */
int lmp_rcache_new(uint64_t max_bytes, double ttl_ms, struct lmp_rcache **ret);
void lmp_rcache_free(struct lmp_rcache *c);
/* New bounds (a reload); entries past them are dropped at once. */
void lmp_rcache_set_limits(struct lmp_rcache *c, uint64_t max_bytes, double ttl_ms);

/* The events of one answer while it streams, each stored whole; a builder
 * that outgrows what one entry may take (an eighth of the cache) turns
 * invalid and is then refused by lmp_rcache_put. Zero it to start. */
struct lmp_rcache_build {
        uint8_t *data;          /* [uint32 length][bytes] per event */
        size_t len, cap;
        bool invalid;
};
/* Adds one event's bytes; returns how many bytes the builder grew by (its
 * memory, for the caller's accounting). */
size_t lmp_rcache_build_add(const struct lmp_rcache *c, struct lmp_rcache_build *b, const void *ev, size_t len);
/* The same with the bound on the builder's length given (the semantic
 * cache's builders use it too). */
size_t lmp_rcache_build_append(struct lmp_rcache_build *b, size_t limit, const void *ev, size_t len);
void lmp_rcache_build_clear(struct lmp_rcache_build *b);

/* Stores b's events under (model, key), replacing an entry with the same
 * key; takes b's memory on success (b is zeroed). 0, or -EINVAL for an
 * invalid builder, -E2BIG when it does not fit, -ENOMEM. */
int lmp_rcache_put(struct lmp_rcache *c, uint32_t model, const void *key, size_t key_len,
                   struct lmp_rcache_build *b, double now_ms);

/* The entry for (model, key) younger than the TTL, made the most recently
 * used, or NULL. Valid until the next call that changes the cache. */
struct lmp_rcache_entry;
const struct lmp_rcache_entry *lmp_rcache_get(struct lmp_rcache *c, uint32_t model, const void *key,
                                              size_t key_len, double now_ms);
/* Walks an entry's events: *pos starts at 0; returns false after the last. */
bool lmp_rcache_next_event(const struct lmp_rcache_entry *e, size_t *pos, const uint8_t **ev, size_t *len);
/* The same over events as a builder lays them out (data, len bytes). */
bool lmp_rcache_next_event_in(const uint8_t *data, size_t data_len, size_t *pos, const uint8_t **ev, size_t *len);
/* An entry's events (data, len bytes), for lmp_rcache_next_event_in(). */
void lmp_rcache_entry_events(const struct lmp_rcache_entry *e, const uint8_t **ret_data, size_t *ret_len);

/* Forgets every entry of a model (its weights changed). */
void lmp_rcache_drop_model(struct lmp_rcache *c, uint32_t model);

uint64_t lmp_rcache_bytes(const struct lmp_rcache *c);
size_t lmp_rcache_entries(const struct lmp_rcache *c);

#endif

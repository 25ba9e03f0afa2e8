/* The response cache (cache.h): a hash table of entries chained per
 * bucket, and one list of all entries from the most to the least recently
 * used, which is where room is made. An entry holds its key (the request's
 * canonical JSON without its id, compared whole, so a hash collision is a
 * miss, never a wrong answer) and the events of the answer as one block. */
#include "router/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

struct lmp_rcache_entry {
        struct lmp_rcache_entry *chain;         /* next in its bucket */
        struct lmp_rcache_entry *newer, *older; /* the use list */
        uint64_t hash;
        uint32_t model;
        double created_ms;
        size_t key_len;
        uint8_t *key;
        uint8_t *data;                          /* [uint32 length][bytes] per event */
        size_t len;
        size_t bytes;                           /* what it costs, counted in the bound */
};

struct lmp_rcache {
        uint64_t max_bytes, bytes;
        double ttl_ms;
        struct lmp_rcache_entry **buckets;
        size_t n_buckets;                       /* a power of two */
        struct lmp_rcache_entry *newest, *oldest;
        size_t n_entries;
};

static uint64_t hash_of(uint32_t model, const void *key, size_t len) {
        uint64_t h = 0xcbf29ce484222325ull;
        const uint8_t *p = key;
        for (int i = 0; i < 4; i++) {
                h ^= (model >> (8 * i)) & 0xff;
                h *= 0x100000001b3ull;
        }
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
        }
        return h;
}

int lmp_rcache_new(uint64_t max_bytes, double ttl_ms, struct lmp_rcache **ret) {
        struct lmp_rcache *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        /* About one bucket per 4 KiB of bound: short chains for answers of
         * a few hundred tokens, and a table of at most 8 MiB. */
        size_t want = (size_t)(max_bytes / 4096), n = 256;
        while (n < want && n < ((size_t)1 << 20))
                n <<= 1;
        c->buckets = calloc(n, sizeof(*c->buckets));
        if (!c->buckets) {
                free(c);
                return -ENOMEM;
        }
        c->n_buckets = n;
        c->max_bytes = max_bytes;
        c->ttl_ms = ttl_ms;
        *ret = c;
        return 0;
}

static void unlink_entry(struct lmp_rcache *c, struct lmp_rcache_entry *e) {
        struct lmp_rcache_entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];
        while (*pp != e)
                pp = &(*pp)->chain;
        *pp = e->chain;
        if (e->newer)
                e->newer->older = e->older;
        else
                c->newest = e->older;
        if (e->older)
                e->older->newer = e->newer;
        else
                c->oldest = e->newer;
        c->bytes -= e->bytes;
        c->n_entries--;
        free(e->key);
        free(e->data);
        free(e);
}

static void make_room(struct lmp_rcache *c, uint64_t need) {
        while (c->oldest && c->bytes + need > c->max_bytes)
                unlink_entry(c, c->oldest);
}

void lmp_rcache_free(struct lmp_rcache *c) {
        if (!c)
                return;
        while (c->oldest)
                unlink_entry(c, c->oldest);
        free(c->buckets);
        free(c);
}

void lmp_rcache_set_limits(struct lmp_rcache *c, uint64_t max_bytes, double ttl_ms) {
        c->max_bytes = max_bytes;
        c->ttl_ms = ttl_ms;
        make_room(c, 0);
}

size_t lmp_rcache_build_add(const struct lmp_rcache *c, struct lmp_rcache_build *b, const void *ev, size_t len) {
        return lmp_rcache_build_append(b, (size_t)(c->max_bytes / 8), ev, len);
}

size_t lmp_rcache_build_append(struct lmp_rcache_build *b, size_t limit, const void *ev, size_t len) {
        if (b->invalid)
                return 0;
        size_t need = b->len + 4 + len;
        if (len > UINT32_MAX || need > limit) {
                b->invalid = true;
                return 0;
        }
        size_t old = b->cap;
        if (lmp_grow(&b->data, &b->cap, need, 1, 1024) < 0) {
                b->invalid = true;
                return 0;
        }
        size_t grown = b->cap - old;
        uint32_t l = (uint32_t)len;
        memcpy(b->data + b->len, &l, 4);
        memcpy(b->data + b->len + 4, ev, len);
        b->len = need;
        return grown;
}

void lmp_rcache_build_clear(struct lmp_rcache_build *b) {
        free(b->data);
        memset(b, 0, sizeof(*b));
}

static struct lmp_rcache_entry *find(struct lmp_rcache *c, uint64_t h, uint32_t model, const void *key,
                                     size_t key_len) {
        struct lmp_rcache_entry *e = c->buckets[h & (c->n_buckets - 1)];
        for (; e; e = e->chain)
                if (e->hash == h && e->model == model && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
                        return e;
        return NULL;
}

static void push_newest(struct lmp_rcache *c, struct lmp_rcache_entry *e) {
        e->newer = NULL;
        e->older = c->newest;
        if (c->newest)
                c->newest->newer = e;
        else
                c->oldest = e;
        c->newest = e;
}

int lmp_rcache_put(struct lmp_rcache *c, uint32_t model, const void *key, size_t key_len,
                   struct lmp_rcache_build *b, double now_ms) {
        if (b->invalid || b->len == 0)
                return -EINVAL;
        uint64_t h = hash_of(model, key, key_len);
        struct lmp_rcache_entry *old = find(c, h, model, key, key_len);
        if (old)
                unlink_entry(c, old);
        size_t bytes = sizeof(struct lmp_rcache_entry) + key_len + b->len;
        if (bytes > c->max_bytes / 8)
                return -E2BIG;
        struct lmp_rcache_entry *e = calloc(1, sizeof(*e));
        uint8_t *k = malloc(key_len ? key_len : 1);
        uint8_t *data = realloc(b->data, b->len); /* give back the builder's slack */
        if (!e || !k || !data) {
                free(e);
                free(k);
                if (data)
                        b->data = data;
                return -ENOMEM;
        }
        make_room(c, bytes);
        memcpy(k, key, key_len);
        *e = (struct lmp_rcache_entry){ .hash = h, .model = model, .created_ms = now_ms, .key_len = key_len,
                                        .key = k, .data = data, .len = b->len, .bytes = bytes };
        e->chain = c->buckets[h & (c->n_buckets - 1)];
        c->buckets[h & (c->n_buckets - 1)] = e;
        push_newest(c, e);
        c->bytes += bytes;
        c->n_entries++;
        memset(b, 0, sizeof(*b));
        return 0;
}

const struct lmp_rcache_entry *lmp_rcache_get(struct lmp_rcache *c, uint32_t model, const void *key,
                                              size_t key_len, double now_ms) {
        struct lmp_rcache_entry *e = find(c, hash_of(model, key, key_len), model, key, key_len);
        if (!e)
                return NULL;
        if (now_ms - e->created_ms >= c->ttl_ms) {
                unlink_entry(c, e);
                return NULL;
        }
        if (c->newest != e) {
                /* out of the use list, then back in at its head */
                e->newer->older = e->older;
                if (e->older)
                        e->older->newer = e->newer;
                else
                        c->oldest = e->newer;
                push_newest(c, e);
        }
        return e;
}

bool lmp_rcache_next_event_in(const uint8_t *data, size_t data_len, size_t *pos, const uint8_t **ev, size_t *len) {
        uint32_t l;
        if (*pos + 4 > data_len)
                return false;
        memcpy(&l, data + *pos, 4);
        if (*pos + 4 + l > data_len)
                return false;
        *ev = data + *pos + 4;
        *len = l;
        *pos += 4 + (size_t)l;
        return true;
}

bool lmp_rcache_next_event(const struct lmp_rcache_entry *e, size_t *pos, const uint8_t **ev, size_t *len) {
        return lmp_rcache_next_event_in(e->data, e->len, pos, ev, len);
}

void lmp_rcache_entry_events(const struct lmp_rcache_entry *e, const uint8_t **ret_data, size_t *ret_len) {
        *ret_data = e->data;
        *ret_len = e->len;
}

void lmp_rcache_drop_model(struct lmp_rcache *c, uint32_t model) {
        struct lmp_rcache_entry *e = c->oldest;
        while (e) {
                struct lmp_rcache_entry *next = e->newer;
                if (e->model == model)
                        unlink_entry(c, e);
                e = next;
        }
}

uint64_t lmp_rcache_bytes(const struct lmp_rcache *c) {
        return c->bytes;
}

size_t lmp_rcache_entries(const struct lmp_rcache *c) {
        return c->n_entries;
}

/* The semantic cache (semcache.h): n entries in two parallel arrays, the
 * unit vectors one after the other (n x dims floats, so that a lookup
 * streams through memory) and each entry's signature, answer and times.
 * Removing an entry moves the last one into its place. Both arrays grow
 * by doubling up to max_entries; an entry's bytes count its own vector
 * and record, not the arrays' spare room (less than as much again). The
 * least recently used is found by a scan: a put that has to make room
 * costs what a lookup does. */
#include "router/semcache.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmp_semcache_entry {
        uint64_t sig_hash;
        char *sig;
        size_t sig_len;
        uint8_t *data;                  /* [uint32 length][bytes] per event */
        size_t len;
        size_t bytes;                   /* sig, data and the entry's vector */
        double created_ms, used_ms;
};

struct lmp_semcache {
        struct lmp_semcache_limits lim;
        size_t dims;                    /* of every stored vector; 0 while empty */
        float *vecs;                    /* (cap, dims) unit vectors */
        struct lmp_semcache_entry *e;   /* (cap) */
        size_t n, cap;
        uint64_t bytes;                 /* entries' own plus the arrays' spare room */
        uint64_t evictions, expirations;
};

static uint64_t sig_hash_of(const void *sig, size_t len) {
        uint64_t h = 0xcbf29ce484222325ull;
        const uint8_t *p = sig;
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
        }
        return h;
}

int lmp_semcache_new(const struct lmp_semcache_limits *lim, struct lmp_semcache **ret) {
        if (lim->max_entries == 0 || !(lim->ttl_ms > 0) || !(lim->threshold > 0) || lim->threshold > 1)
                return -EINVAL;
        struct lmp_semcache *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->lim = *lim;
        *ret = c;
        return 0;
}

static void remove_at(struct lmp_semcache *c, size_t i) {
        struct lmp_semcache_entry *e = &c->e[i];
        c->bytes -= e->bytes;
        free(e->sig);
        free(e->data);
        c->n--;
        if (i != c->n) {
                c->e[i] = c->e[c->n];
                memcpy(c->vecs + i * c->dims, c->vecs + c->n * c->dims, c->dims * sizeof(float));
        }
}

void lmp_semcache_clear(struct lmp_semcache *c) {
        while (c->n)
                remove_at(c, c->n - 1);
        free(c->vecs);
        free(c->e);
        c->vecs = NULL;
        c->e = NULL;
        c->cap = 0;
        c->dims = 0;
        c->bytes = 0;
}

void lmp_semcache_free(struct lmp_semcache *c) {
        if (!c)
                return;
        lmp_semcache_clear(c);
        free(c);
}

static double norm_of(const float *v, size_t dims) {
        double s = 0;
        for (size_t i = 0; i < dims; i++)
                s += (double)v[i] * v[i];
        return sqrt(s);
}

/* One dot product of a stored unit vector with the query: four
 * accumulators, which the compiler vectorizes. */
static float dot(const float *a, const float *b, size_t n) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
                s0 += a[i] * b[i];
                s1 += a[i + 1] * b[i + 1];
                s2 += a[i + 2] * b[i + 2];
                s3 += a[i + 3] * b[i + 3];
        }
        for (; i < n; i++)
                s0 += a[i] * b[i];
        return (s0 + s1) + (s2 + s3);
}

const struct lmp_semcache_entry *lmp_semcache_get(struct lmp_semcache *c, const float *vec, size_t dims,
                                                  const void *sig, size_t sig_len, double now_ms,
                                                  float *ret_similarity) {
        if (!c->n || dims != c->dims)
                return NULL;
        double norm = norm_of(vec, dims);
        if (!(norm > 0))
                return NULL;
        uint64_t h = sig_hash_of(sig, sig_len);
        float best = -2;
        size_t best_i = 0;
        for (size_t i = 0; i < c->n;) {
                struct lmp_semcache_entry *e = &c->e[i];
                if (now_ms - e->created_ms >= c->lim.ttl_ms) {
                        remove_at(c, i); /* the last one is now at i */
                        c->expirations++;
                        continue;
                }
                if (e->sig_hash == h && e->sig_len == sig_len && memcmp(e->sig, sig, sig_len) == 0) {
                        float s = dot(c->vecs + i * dims, vec, dims);
                        if (s > best) {
                                best = s;
                                best_i = i;
                        }
                }
                i++;
        }
        best = (float)(best / norm);
        if (best < c->lim.threshold)
                return NULL;
        c->e[best_i].used_ms = now_ms;
        *ret_similarity = best > 1 ? 1 : best;
        return &c->e[best_i];
}

void lmp_semcache_entry_events(const struct lmp_semcache_entry *e, const uint8_t **ret_data, size_t *ret_len) {
        *ret_data = e->data;
        *ret_len = e->len;
}

size_t lmp_semcache_entry_max(const struct lmp_semcache *c) {
        return (size_t)(c->lim.max_bytes / 8);
}

static void evict_lru(struct lmp_semcache *c) {
        size_t old = 0;
        for (size_t i = 1; i < c->n; i++)
                if (c->e[i].used_ms < c->e[old].used_ms)
                        old = i;
        remove_at(c, old);
        c->evictions++;
}

/* Room in the arrays for one more entry: doubles them up to max_entries. */
static int grow(struct lmp_semcache *c, size_t dims) {
        if (c->n < c->cap)
                return 0;
        size_t cap = c->cap ? c->cap * 2 : 16;
        if (cap > c->lim.max_entries)
                cap = c->lim.max_entries;
        float *v = realloc(c->vecs, cap * dims * sizeof(float));
        if (!v)
                return -ENOMEM;
        c->vecs = v;
        struct lmp_semcache_entry *e = realloc(c->e, cap * sizeof(*e));
        if (!e)
                return -ENOMEM;
        c->e = e;
        c->cap = cap;
        return 0;
}

int lmp_semcache_put(struct lmp_semcache *c, const float *vec, size_t dims, const void *sig, size_t sig_len,
                     struct lmp_rcache_build *b, double now_ms) {
        if (b->invalid || b->len == 0 || dims == 0 || dims > LMP_SEMCACHE_DIMS_MAX || (c->dims && dims != c->dims))
                return -EINVAL;
        double norm = norm_of(vec, dims);
        if (!(norm > 0) || !isfinite(norm))
                return -EINVAL;
        size_t bytes = sizeof(struct lmp_semcache_entry) + dims * sizeof(float) + sig_len + b->len;
        if (bytes > lmp_semcache_entry_max(c))
                return -E2BIG;
        while (c->n && (c->n >= c->lim.max_entries || c->bytes + bytes > c->lim.max_bytes))
                evict_lru(c);
        if (!c->n && dims != c->dims) {
                /* Empty: the arrays take other dimensions now. */
                free(c->vecs);
                free(c->e);
                c->vecs = NULL;
                c->e = NULL;
                c->cap = 0;
                c->dims = dims;
        }
        char *s = malloc(sig_len ? sig_len : 1);
        uint8_t *data = realloc(b->data, b->len); /* give back the builder's slack */
        if (!s || !data || grow(c, dims) < 0) {
                free(s);
                if (data)
                        b->data = data;
                return -ENOMEM;
        }
        memcpy(s, sig, sig_len);
        float *dst = c->vecs + c->n * dims;
        for (size_t i = 0; i < dims; i++)
                dst[i] = (float)(vec[i] / norm);
        c->e[c->n] = (struct lmp_semcache_entry){ .sig_hash = sig_hash_of(sig, sig_len), .sig = s,
                                                  .sig_len = sig_len, .data = data, .len = b->len,
                                                  .bytes = bytes, .created_ms = now_ms, .used_ms = now_ms };
        c->n++;
        c->bytes += bytes;
        memset(b, 0, sizeof(*b));
        return 0;
}

size_t lmp_semcache_entries(const struct lmp_semcache *c) {
        return c->n;
}

uint64_t lmp_semcache_bytes(const struct lmp_semcache *c) {
        return c->bytes;
}

uint64_t lmp_semcache_evictions(const struct lmp_semcache *c) {
        return c->evictions;
}

uint64_t lmp_semcache_expirations(const struct lmp_semcache *c) {
        return c->expirations;
}

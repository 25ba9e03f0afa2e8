/* GGUF reader: maps a file read-only, validates all of it once, and then
 * serves metadata and tensor views that point into the mapping.
 *
 * Validation is the point of this file. Users point lmpool at files from
 * anywhere: a truncated download or a hostile file must give a clear error
 * (code + message naming the key or tensor and the byte offset), never an
 * out-of-bounds read, a huge allocation or a hang. Every length and count is
 * checked against the bytes that remain before anything is allocated or
 * walked, every product and sum is checked for overflow, and the work done
 * is bounded by the file size. After lmp_gguf_open() succeeds, nothing in
 * the accessors can fail for lack of bytes. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limits beyond any real model, so that a forged count fails fast with a
 * clear message instead of an allocation the size of the count. */
#define MAX_KV          (1u << 20)
#define MAX_TENSORS     (1u << 20)
#define MAX_KEY_LEN     65535u
#define MAX_NAME_LEN    1024u
#define MAX_ARRAY_DEPTH 8
#define MAX_ALIGNMENT   (1u << 30)

/* Open-addressing hash of strings into indexes of kv[] or tensors[]. */
struct str_table {
        uint32_t *slots;        /* index + 1; 0 = empty */
        uint64_t mask;
};

struct lmp_gguf_index {
        struct str_table keys;
        struct str_table names;
};

struct cursor {
        const uint8_t *base;
        uint64_t size;
        uint64_t off;
        struct lmp_error *err;
};

static uint64_t hash_str(const char *p, uint64_t len) {
        uint64_t h = 1469598103934665603ull;    /* FNV-1a */
        for (uint64_t i = 0; i < len; i++) {
                h ^= (uint8_t)p[i];
                h *= 1099511628211ull;
        }
        return h;
}

static int table_init(struct str_table *t, uint64_t n) {
        uint64_t cap = 16;
        while (cap < 2 * n)
                cap *= 2;
        t->slots = calloc(cap, sizeof(*t->slots));
        if (!t->slots)
                return -ENOMEM;
        t->mask = cap - 1;
        return 0;
}

/* Finds s; returns its index, or -1 and the empty slot where it would go. */
static int64_t table_find(const struct str_table *t, const struct lmp_gguf_str *strs, size_t stride,
                          const char *p, uint64_t len, uint64_t *ret_slot) {
        uint64_t i = hash_str(p, len) & t->mask;
        for (;;) {
                uint32_t v = t->slots[i];
                if (v == 0) {
                        if (ret_slot)
                                *ret_slot = i;
                        return -1;
                }
                const struct lmp_gguf_str *s =
                        (const struct lmp_gguf_str *)((const uint8_t *)strs + (size_t)(v - 1) * stride);
                if (s->len == len && memcmp(s->ptr, p, len) == 0)
                        return v - 1;
                i = (i + 1) & t->mask;
        }
}

const char *lmp_gguf_vtype_name(uint32_t type) {
        static const char *const names[LMP_GGUF_VTYPE_COUNT] = {
                "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                "u64", "i64", "f64",
        };
        return type < LMP_GGUF_VTYPE_COUNT ? names[type] : "unknown";
}

size_t lmp_gguf_vtype_size(uint32_t type) {
        switch (type) {
        case LMP_GGUF_U8: case LMP_GGUF_I8: case LMP_GGUF_BOOL: return 1;
        case LMP_GGUF_U16: case LMP_GGUF_I16: return 2;
        case LMP_GGUF_U32: case LMP_GGUF_I32: case LMP_GGUF_F32: return 4;
        case LMP_GGUF_U64: case LMP_GGUF_I64: case LMP_GGUF_F64: return 8;
        default: return 0;
        }
}

static uint32_t load_u32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static uint64_t load_u64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static uint64_t remaining(const struct cursor *c) {
        return c->size - c->off;
}

static int need(struct cursor *c, uint64_t n, const char *what) {
        if (n > remaining(c))
                return lmp_error_set(c->err, -EBADMSG,
                                     "offset %" PRIu64 ": %s needs %" PRIu64 " bytes but the file has %" PRIu64
                                     " left (truncated file?)",
                                     c->off, what, n, remaining(c));
        return 0;
}

static int read_u32(struct cursor *c, const char *what, uint32_t *ret) {
        int r = need(c, 4, what);
        if (r < 0)
                return r;
        *ret = load_u32(c->base + c->off);
        c->off += 4;
        return 0;
}

static int read_u64(struct cursor *c, const char *what, uint64_t *ret) {
        int r = need(c, 8, what);
        if (r < 0)
                return r;
        *ret = load_u64(c->base + c->off);
        c->off += 8;
        return 0;
}

static int read_str(struct cursor *c, const char *what, uint64_t max_len, struct lmp_gguf_str *ret) {
        uint64_t at = c->off, len;
        int r = read_u64(c, what, &len);
        if (r < 0)
                return r;
        if (len > max_len)
                return lmp_error_set(c->err, -EBADMSG,
                                     "offset %" PRIu64 ": %s length %" PRIu64 " exceeds the limit of %" PRIu64,
                                     at, what, len, max_len);
        r = need(c, len, what);
        if (r < 0)
                return r;
        ret->ptr = (const char *)c->base + c->off;
        ret->len = len;
        c->off += len;
        return 0;
}

/* Prints a GGUF string for an error message: printable ASCII only, cut. */
static const char *printable(struct lmp_gguf_str s, char buf[static 80]) {
        uint64_t n = s.len < 64 ? s.len : 64;
        for (uint64_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s.ptr[i];
                buf[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
        if (s.len > 64) {
                memcpy(buf + n, "...", 4);
        } else {
                buf[n] = '\0';
        }
        return buf;
}

/* Validates one value of type `type` at the cursor and advances past it.
 * `depth` bounds array nesting; arrays get their element type and count. */
static int parse_value(struct cursor *c, uint32_t type, int depth, const char *key,
                       struct lmp_gguf_value *ret) {
        uint64_t start = c->off;
        size_t fixed = lmp_gguf_vtype_size(type);
        int r;

        memset(ret, 0, sizeof(*ret));
        ret->type = type;
        if (fixed) {
                r = need(c, fixed, "value");
                if (r < 0)
                        goto fail;
                if (type == LMP_GGUF_BOOL && c->base[c->off] > 1) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": bool value %u is not 0 or 1",
                                          c->off, c->base[c->off]);
                        goto fail;
                }
                c->off += fixed;
        } else if (type == LMP_GGUF_STRING) {
                struct lmp_gguf_str s;
                r = read_str(c, "string value", UINT64_MAX, &s);
                if (r < 0)
                        goto fail;
        } else if (type == LMP_GGUF_ARRAY) {
                uint32_t et;
                uint64_t n;

                if (depth >= MAX_ARRAY_DEPTH) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": arrays nested deeper than %d",
                                          c->off, MAX_ARRAY_DEPTH);
                        goto fail;
                }
                r = read_u32(c, "array element type", &et);
                if (r < 0)
                        goto fail;
                if (et >= LMP_GGUF_VTYPE_COUNT) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": unknown array element type %" PRIu32,
                                          c->off - 4, et);
                        goto fail;
                }
                r = read_u64(c, "array length", &n);
                if (r < 0)
                        goto fail;
                ret->elem_type = et;
                ret->n = n;
                /* Every element takes at least one byte (strings and arrays at
                 * least 8 and 12): a count the file cannot hold is an error
                 * before any element is walked. */
                size_t esz = lmp_gguf_vtype_size(et);
                uint64_t min_each = esz ? esz : (et == LMP_GGUF_STRING ? 8 : 12);
                uint64_t total;
                if (lmp_mul_overflow(n, min_each, &total) || total > remaining(c)) {
                        r = lmp_error_set(c->err, -EBADMSG,
                                          "offset %" PRIu64 ": array of %" PRIu64 " %s cannot fit in the %" PRIu64
                                          " bytes left",
                                          c->off - 8, n, lmp_gguf_vtype_name(et), remaining(c));
                        goto fail;
                }
                ret->data = c->base + c->off;
                if (esz) {
                        if (et == LMP_GGUF_BOOL) {
                                for (uint64_t i = 0; i < n; i++)
                                        if (c->base[c->off + i] > 1) {
                                                r = lmp_error_set(c->err, -EBADMSG,
                                                                  "offset %" PRIu64 ": bool value %u is not 0 or 1",
                                                                  c->off + i, c->base[c->off + i]);
                                                goto fail;
                                        }
                        }
                        c->off += total;
                } else {
                        for (uint64_t i = 0; i < n; i++) {
                                struct lmp_gguf_value sub;
                                r = parse_value(c, et, depth + 1, key, &sub);
                                if (r < 0)
                                        return r; /* already has context */
                        }
                }
                ret->size = (uint64_t)(c->base + c->off - ret->data); /* the elements only */
                return 0;
        } else {
                r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": unknown value type %" PRIu32, start, type);
                goto fail;
        }
        ret->data = c->base + start;
        if (type == LMP_GGUF_STRING)
                ret->data += 8;
        ret->size = c->off - start - (type == LMP_GGUF_STRING ? 8 : 0);
        return 0;
fail:
        lmp_error_prefix(c->err, "key '%s'", key);
        return r;
}

static int parse_kvs(struct lmp_gguf *g, struct cursor *c) {
        char buf[80];
        int r;

        r = table_init(&g->index->keys, g->n_kv);
        if (r < 0)
                return lmp_error_set(c->err, r, "out of memory for %" PRIu64 " keys", g->n_kv);
        for (uint64_t i = 0; i < g->n_kv; i++) {
                struct lmp_gguf_kv *kv = &g->kv[i];
                uint32_t type;
                uint64_t slot;
                const char *key;

                kv->offset = c->off;
                r = read_str(c, "key", MAX_KEY_LEN, &kv->key);
                if (r < 0) {
                        lmp_error_prefix(c->err, "metadata entry %" PRIu64, i);
                        return r;
                }
                key = printable(kv->key, buf);
                if (kv->key.len == 0)
                        return lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": metadata entry %" PRIu64
                                             " has an empty key", kv->offset, i);
                if (table_find(&g->index->keys, &g->kv[0].key, sizeof(*kv), kv->key.ptr, kv->key.len, &slot) >= 0)
                        return lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": duplicate key '%s'",
                                             kv->offset, key);
                g->index->keys.slots[slot] = (uint32_t)i + 1;
                r = read_u32(c, "value type", &type);
                if (r < 0) {
                        lmp_error_prefix(c->err, "key '%s'", key);
                        return r;
                }
                if (type >= LMP_GGUF_VTYPE_COUNT)
                        return lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": key '%s': unknown value type %"
                                             PRIu32, c->off - 4, key, type);
                r = parse_value(c, type, 0, key, &kv->value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_alignment(struct lmp_gguf *g, struct lmp_error *err) {
        const struct lmp_gguf_kv *kv = lmp_gguf_find(g, "general.alignment");
        uint32_t a;

        g->alignment = LMP_GGUF_DEFAULT_ALIGNMENT;
        if (!kv)
                return 0;
        if (kv->value.type != LMP_GGUF_U32)
                return lmp_error_set(err, -EBADMSG, "offset %" PRIu64 ": key 'general.alignment' has type %s, not u32",
                                     kv->offset, lmp_gguf_vtype_name(kv->value.type));
        a = load_u32(kv->value.data);
        if (a == 0 || (a & (a - 1)) || a > MAX_ALIGNMENT)
                return lmp_error_set(err, -EBADMSG,
                                     "offset %" PRIu64 ": general.alignment %" PRIu32 " is not a power of two up to %u",
                                     kv->offset, a, MAX_ALIGNMENT);
        g->alignment = a;
        return 0;
}

static int parse_tensor_infos(struct lmp_gguf *g, struct cursor *c) {
        char buf[80];
        int r;

        r = table_init(&g->index->names, g->n_tensors);
        if (r < 0)
                return lmp_error_set(c->err, r, "out of memory for %" PRIu64 " tensors", g->n_tensors);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                struct lmp_gguf_tensor *t = &g->tensors[i];
                const struct lmp_type_info *ti;
                uint64_t slot, nelem = 1;
                const char *name;

                t->info_offset = c->off;
                r = read_str(c, "tensor name", MAX_NAME_LEN, &t->name);
                if (r < 0) {
                        lmp_error_prefix(c->err, "tensor %" PRIu64, i);
                        return r;
                }
                name = printable(t->name, buf);
                if (t->name.len == 0)
                        return lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": tensor %" PRIu64 " has an empty name",
                                             t->info_offset, i);
                if (table_find(&g->index->names, &g->tensors[0].name, sizeof(*t), t->name.ptr, t->name.len,
                               &slot) >= 0)
                        return lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": duplicate tensor name '%s'",
                                             t->info_offset, name);
                g->index->names.slots[slot] = (uint32_t)i + 1;

                r = read_u32(c, "dimension count", &t->n_dims);
                if (r < 0)
                        goto fail;
                if (t->n_dims == 0 || t->n_dims > LMP_GGUF_MAX_DIMS) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": %" PRIu32
                                          " dimensions (must be 1 to %d)", c->off - 4, t->n_dims, LMP_GGUF_MAX_DIMS);
                        goto fail;
                }
                for (uint32_t d = 0; d < LMP_GGUF_MAX_DIMS; d++)
                        t->ne[d] = 1;
                for (uint32_t d = 0; d < t->n_dims; d++) {
                        r = read_u64(c, "dimension", &t->ne[d]);
                        if (r < 0)
                                goto fail;
                        if (t->ne[d] == 0 || t->ne[d] > INT64_MAX) {
                                r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": dimension %" PRIu32
                                                  " is %" PRIu64, c->off - 8, d, t->ne[d]);
                                goto fail;
                        }
                        if (lmp_mul_overflow(nelem, t->ne[d], &nelem) || nelem > INT64_MAX) {
                                r = lmp_error_set(c->err, -EOVERFLOW, "offset %" PRIu64 ": element count overflows",
                                                  c->off - 8);
                                goto fail;
                        }
                }
                r = read_u32(c, "tensor type", &t->type);
                if (r < 0)
                        goto fail;
                ti = lmp_type_info(t->type);
                if (lmp_type_r16_base(t->type) && !g->store) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": tensor type %s is lmpool's in-memory"
                                          " layout, never a file's", c->off - 4, ti->name);
                        goto fail;
                }
                if (lmp_type_r16_base(t->type) && (t->n_dims != 2 || t->ne[1] % 16)) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": a %s tensor must have 2 dimensions"
                                          " and rows in groups of 16", c->off - 4, ti->name);
                        goto fail;
                }
                if (!ti) {
                        r = lmp_error_set(c->err, -EBADMSG, "offset %" PRIu64 ": unknown tensor type id %" PRIu32,
                                          c->off - 4, t->type);
                        goto fail;
                }
                if (t->ne[0] % ti->blck_size) {
                        r = lmp_error_set(c->err, -EBADMSG,
                                          "offset %" PRIu64 ": row length %" PRIu64 " is not a multiple of %s's block"
                                          " size %" PRIu32, t->info_offset, t->ne[0], ti->name, ti->blck_size);
                        goto fail;
                }
                /* nelem <= INT64_MAX and type_size <= 292 with blck >= 1:
                 * the division first keeps the product in range for real
                 * files, and the check catches forged ones. */
                if (lmp_mul_overflow(nelem / ti->blck_size, (uint64_t)ti->type_size, &t->size)) {
                        r = lmp_error_set(c->err, -EOVERFLOW, "offset %" PRIu64 ": byte size overflows",
                                          t->info_offset);
                        goto fail;
                }
                r = read_u64(c, "tensor data offset", &t->offset);
                if (r < 0)
                        goto fail;
                if (t->offset % g->alignment) {
                        r = lmp_error_set(c->err, -EBADMSG,
                                          "offset %" PRIu64 ": data offset %" PRIu64 " is not a multiple of the"
                                          " alignment %" PRIu64, c->off - 8, t->offset, g->alignment);
                        goto fail;
                }
        }
        return 0;
fail:
        lmp_error_prefix(c->err, "tensor '%s'", buf);
        return r;
}

static int cmp_by_offset(const void *a, const void *b) {
        const struct lmp_gguf_tensor *x = *(const struct lmp_gguf_tensor *const *)a;
        const struct lmp_gguf_tensor *y = *(const struct lmp_gguf_tensor *const *)b;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places the data section and checks each tensor's bytes lie inside the file
 * and no two tensors overlap. */
static int check_tensor_data(struct lmp_gguf *g, uint64_t infos_end, struct lmp_error *err) {
        struct lmp_gguf_tensor **order = NULL;
        char buf[80], buf2[80];
        uint64_t data_offset;
        int r = 0;

        if (lmp_add_overflow(infos_end, g->alignment - 1, &data_offset))
                return lmp_error_set(err, -EOVERFLOW, "data section offset overflows");
        data_offset = data_offset / g->alignment * g->alignment;
        if (g->n_tensors > 0 && data_offset > g->size)
                return lmp_error_set(err, -EBADMSG, "offset %" PRIu64 ": data section starts past the end of the"
                                     " file (%" PRIu64 " bytes; truncated file?)", data_offset, g->size);
        g->data_offset = data_offset;
        g->data_size = 0;
        if (g->n_tensors == 0)
                return 0;

        for (uint64_t i = 0; i < g->n_tensors; i++) {
                struct lmp_gguf_tensor *t = &g->tensors[i];
                uint64_t end;
                if (lmp_add_overflow(t->offset, t->size, &end) || end > g->size - data_offset)
                        return lmp_error_set(err, -EBADMSG,
                                             "offset %" PRIu64 ": tensor '%s': data [%" PRIu64 ", +%" PRIu64
                                             ") lies outside the file (%" PRIu64 " bytes; truncated file?)",
                                             t->info_offset, printable(t->name, buf), data_offset + t->offset,
                                             t->size, g->size);
                t->data = g->base + data_offset + t->offset;
                if (end > g->data_size)
                        g->data_size = end;
        }

        order = malloc(g->n_tensors * sizeof(*order));
        if (!order)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        for (uint64_t i = 0; i < g->n_tensors; i++)
                order[i] = &g->tensors[i];
        qsort(order, g->n_tensors, sizeof(*order), cmp_by_offset);
        for (uint64_t i = 1; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *a = order[i - 1], *b = order[i];
                if (a->offset + a->size > b->offset) {
                        r = lmp_error_set(err, -EBADMSG,
                                          "offset %" PRIu64 ": tensor '%s' overlaps tensor '%s' (data offsets %" PRIu64
                                          "+%" PRIu64 " and %" PRIu64 ")",
                                          b->info_offset, printable(b->name, buf), printable(a->name, buf2),
                                          a->offset, a->size, b->offset);
                        break;
                }
        }
        free(order);
        return r;
}

static int parse(struct lmp_gguf *g, struct lmp_error *err) {
        struct cursor c = { .base = g->base, .size = g->size, .off = 0, .err = err };
        uint32_t magic;
        int r;

        r = read_u32(&c, "magic", &magic);
        if (r < 0)
                return r;
        if (magic != LMP_GGUF_MAGIC)
                return lmp_error_set(err, -EBADMSG, "offset 0: not a GGUF file (magic %08" PRIx32 ")", magic);
        r = read_u32(&c, "version", &g->version);
        if (r < 0)
                return r;
        if (g->version == 1)
                return lmp_error_set(err, -ENOTSUP, "offset 4: GGUF version 1 is not supported (convert the file"
                                     " to version 3)");
        if (g->version != 2 && g->version != 3) {
                if ((g->version & 0xffff) == 0)
                        return lmp_error_set(err, -ENOTSUP, "offset 4: big-endian GGUF files are not supported");
                return lmp_error_set(err, -ENOTSUP, "offset 4: unknown GGUF version %" PRIu32, g->version);
        }
        r = read_u64(&c, "tensor count", &g->n_tensors);
        if (r < 0)
                return r;
        r = read_u64(&c, "metadata count", &g->n_kv);
        if (r < 0)
                return r;
        /* A key takes at least 13 bytes (length, one byte, type), a tensor
         * info at least 32: counts the file cannot hold are errors before
         * anything is allocated. */
        if (g->n_tensors > MAX_TENSORS || g->n_tensors > remaining(&c) / 32)
                return lmp_error_set(err, -EBADMSG, "offset 8: tensor count %" PRIu64 " is impossible for a file"
                                     " of %" PRIu64 " bytes (limit %u)", g->n_tensors, g->size, MAX_TENSORS);
        if (g->n_kv > MAX_KV || g->n_kv > remaining(&c) / 13)
                return lmp_error_set(err, -EBADMSG, "offset 16: metadata count %" PRIu64 " is impossible for a"
                                     " file of %" PRIu64 " bytes (limit %u)", g->n_kv, g->size, MAX_KV);

        g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
        g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
        g->index = calloc(1, sizeof(*g->index));
        if (!g->kv || !g->tensors || !g->index)
                return lmp_error_set(err, -ENOMEM, "out of memory");

        r = parse_kvs(g, &c);
        if (r < 0)
                return r;
        r = parse_alignment(g, err);
        if (r < 0)
                return r;
        r = parse_tensor_infos(g, &c);
        if (r < 0)
                return r;
        return check_tensor_data(g, c.off, err);
}

static int new_gguf(struct lmp_gguf **ret) {
        struct lmp_gguf *g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->fd = -1;
        *ret = g;
        return 0;
}

static int open_mem(const void *buf, size_t size, bool store, struct lmp_gguf **ret, struct lmp_error *err) {
        struct lmp_gguf *g;
        int r;

        if (new_gguf(&g) < 0)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        g->store = store;
        g->base = buf;
        g->size = size;
        r = parse(g, err);
        if (r < 0) {
                lmp_gguf_free(g);
                return r;
        }
        *ret = g;
        return 0;
}

int lmp_gguf_open_mem(const void *buf, size_t size, struct lmp_gguf **ret, struct lmp_error *err) {
        return open_mem(buf, size, false, ret, err);
}

int lmp_gguf_open_store(const void *buf, size_t size, struct lmp_gguf **ret, struct lmp_error *err) {
        return open_mem(buf, size, true, ret, err);
}

int lmp_gguf_open(const char *path, struct lmp_gguf **ret, struct lmp_error *err) {
        struct lmp_gguf *g = NULL;
        struct stat st;
        void *map;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0) {
                r = lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
                goto fail;
        }
        if (S_ISDIR(st.st_mode)) {
                r = lmp_error_set(err, -EISDIR, "%s: is a directory", path);
                goto fail;
        }
        if (!S_ISREG(st.st_mode) || st.st_size < 24) {
                r = lmp_error_set(err, -EBADMSG, "%s: not a GGUF file (%lld bytes, a header takes 24)", path,
                                  (long long)st.st_size);
                goto fail;
        }
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
                r = lmp_error_set(err, -errno, "%s: mmap: %s", path, strerror(errno));
                goto fail;
        }
        if (new_gguf(&g) < 0) {
                munmap(map, (size_t)st.st_size);
                r = lmp_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        g->base = map;
        g->size = (uint64_t)st.st_size;
        g->owns_map = true;
        g->fd = fd;
        r = parse(g, err);
        if (r < 0) {
                lmp_error_prefix(err, "%s", path);
                lmp_gguf_free(g);
                return r;
        }
        *ret = g;
        return 0;
fail:
        close(fd);
        return r;
}

uint64_t lmp_gguf_tensor_type_offset(const struct lmp_gguf_tensor *t) {
        /* name (u64 length + bytes), dimension count (u32), dimensions (u64 each) */
        return t->info_offset + 8 + t->name.len + 4 + 8 * (uint64_t)t->n_dims;
}

void lmp_gguf_free(struct lmp_gguf *g) {
        if (!g)
                return;
        if (g->owns_map)
                munmap((void *)g->base, g->size);
        if (g->fd >= 0)
                close(g->fd);
        if (g->index) {
                free(g->index->keys.slots);
                free(g->index->names.slots);
                free(g->index);
        }
        free(g->kv);
        free(g->tensors);
        free(g);
}

const struct lmp_gguf_kv *lmp_gguf_find(const struct lmp_gguf *g, const char *key) {
        int64_t i;
        if (!g->n_kv)
                return NULL;
        i = table_find(&g->index->keys, &g->kv[0].key, sizeof(g->kv[0]), key, strlen(key), NULL);
        return i < 0 ? NULL : &g->kv[i];
}

const struct lmp_gguf_tensor *lmp_gguf_find_tensor(const struct lmp_gguf *g, const char *name) {
        int64_t i;
        if (!g->n_tensors)
                return NULL;
        i = table_find(&g->index->names, &g->tensors[0].name, sizeof(g->tensors[0]), name, strlen(name), NULL);
        return i < 0 ? NULL : &g->tensors[i];
}

/* ------------------------------------------------------------ conversions */

static bool is_signed_int(uint32_t t) {
        return t == LMP_GGUF_I8 || t == LMP_GGUF_I16 || t == LMP_GGUF_I32 || t == LMP_GGUF_I64;
}

static bool is_unsigned_int(uint32_t t) {
        return t == LMP_GGUF_U8 || t == LMP_GGUF_U16 || t == LMP_GGUF_U32 || t == LMP_GGUF_U64;
}

static int64_t load_signed(const uint8_t *p, uint32_t t) {
        switch (t) {
        case LMP_GGUF_I8: return (int8_t)p[0];
        case LMP_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
        case LMP_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
        default: { int64_t v; memcpy(&v, p, 8); return v; }
        }
}

static uint64_t load_unsigned(const uint8_t *p, uint32_t t) {
        switch (t) {
        case LMP_GGUF_U8: return p[0];
        case LMP_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
        case LMP_GGUF_U32: return load_u32(p);
        default: return load_u64(p);
        }
}

int lmp_gguf_value_u64(const struct lmp_gguf_value *v, uint64_t *ret) {
        if (is_unsigned_int(v->type)) {
                *ret = load_unsigned(v->data, v->type);
                return 0;
        }
        if (is_signed_int(v->type)) {
                int64_t s = load_signed(v->data, v->type);
                if (s < 0)
                        return -ERANGE;
                *ret = (uint64_t)s;
                return 0;
        }
        return -EINVAL;
}

int lmp_gguf_value_i64(const struct lmp_gguf_value *v, int64_t *ret) {
        if (is_signed_int(v->type)) {
                *ret = load_signed(v->data, v->type);
                return 0;
        }
        if (is_unsigned_int(v->type)) {
                uint64_t u = load_unsigned(v->data, v->type);
                if (u > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t)u;
                return 0;
        }
        return -EINVAL;
}

int lmp_gguf_value_f64(const struct lmp_gguf_value *v, double *ret) {
        if (v->type == LMP_GGUF_F32) {
                float f;
                memcpy(&f, v->data, 4);
                *ret = f;
                return 0;
        }
        if (v->type == LMP_GGUF_F64) {
                memcpy(ret, v->data, 8);
                return 0;
        }
        return -EINVAL;
}

int lmp_gguf_value_bool(const struct lmp_gguf_value *v, bool *ret) {
        if (v->type != LMP_GGUF_BOOL)
                return -EINVAL;
        *ret = v->data[0] != 0;
        return 0;
}

int lmp_gguf_value_str(const struct lmp_gguf_value *v, struct lmp_gguf_str *ret) {
        if (v->type != LMP_GGUF_STRING)
                return -EINVAL;
        ret->ptr = (const char *)v->data;
        ret->len = v->size;
        return 0;
}

static const struct lmp_gguf_value *find_value(const struct lmp_gguf *g, const char *key) {
        const struct lmp_gguf_kv *kv = lmp_gguf_find(g, key);
        return kv ? &kv->value : NULL;
}

int lmp_gguf_get_u64(const struct lmp_gguf *g, const char *key, uint64_t *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        return v ? lmp_gguf_value_u64(v, ret) : -ENOENT;
}

int lmp_gguf_get_u32(const struct lmp_gguf *g, const char *key, uint32_t *ret) {
        uint64_t u;
        int r = lmp_gguf_get_u64(g, key, &u);
        if (r < 0)
                return r;
        if (u > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)u;
        return 0;
}

int lmp_gguf_get_i64(const struct lmp_gguf *g, const char *key, int64_t *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        return v ? lmp_gguf_value_i64(v, ret) : -ENOENT;
}

int lmp_gguf_get_i32(const struct lmp_gguf *g, const char *key, int32_t *ret) {
        int64_t s;
        int r = lmp_gguf_get_i64(g, key, &s);
        if (r < 0)
                return r;
        if (s < INT32_MIN || s > INT32_MAX)
                return -ERANGE;
        *ret = (int32_t)s;
        return 0;
}

int lmp_gguf_get_f64(const struct lmp_gguf *g, const char *key, double *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        return v ? lmp_gguf_value_f64(v, ret) : -ENOENT;
}

int lmp_gguf_get_f32(const struct lmp_gguf *g, const char *key, float *ret) {
        double d;
        int r = lmp_gguf_get_f64(g, key, &d);
        if (r < 0)
                return r;
        if (isfinite(d) && fabs(d) > 3.4028234663852886e38)
                return -ERANGE;
        *ret = (float)d;
        return 0;
}

int lmp_gguf_get_bool(const struct lmp_gguf *g, const char *key, bool *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        return v ? lmp_gguf_value_bool(v, ret) : -ENOENT;
}

int lmp_gguf_get_str(const struct lmp_gguf *g, const char *key, struct lmp_gguf_str *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        return v ? lmp_gguf_value_str(v, ret) : -ENOENT;
}

int lmp_gguf_get_arr(const struct lmp_gguf *g, const char *key, int elem_type, struct lmp_gguf_value *ret) {
        const struct lmp_gguf_value *v = find_value(g, key);
        if (!v)
                return -ENOENT;
        if (v->type != LMP_GGUF_ARRAY || (elem_type >= 0 && v->elem_type != (uint32_t)elem_type))
                return -EINVAL;
        *ret = *v;
        return 0;
}

void lmp_gguf_iter_init(struct lmp_gguf_iter *it, const struct lmp_gguf_value *arr) {
        it->arr = arr;
        it->i = 0;
        it->p = arr->data;
}

bool lmp_gguf_iter_next(struct lmp_gguf_iter *it, struct lmp_gguf_value *ret) {
        const struct lmp_gguf_value *a = it->arr;
        uint32_t et = a->elem_type;
        size_t esz = lmp_gguf_vtype_size(et);

        if (a->type != LMP_GGUF_ARRAY || it->i >= a->n)
                return false;
        memset(ret, 0, sizeof(*ret));
        ret->type = et;
        if (esz) {
                ret->data = it->p;
                ret->size = esz;
                it->p += esz;
        } else if (et == LMP_GGUF_STRING) {
                ret->size = load_u64(it->p);
                ret->data = it->p + 8;
                it->p += 8 + ret->size;
        } else {
                /* A nested array: element type, count, then its elements,
                 * whose extent we learn by walking them (validated at open). */
                struct lmp_gguf_value sub = { .type = LMP_GGUF_ARRAY, .elem_type = load_u32(it->p),
                                              .n = load_u64(it->p + 4), .data = it->p + 12 };
                struct lmp_gguf_iter si;
                struct lmp_gguf_value e;
                lmp_gguf_iter_init(&si, &sub);
                while (lmp_gguf_iter_next(&si, &e))
                        ;
                sub.size = (uint64_t)(si.p - sub.data);
                *ret = sub;
                it->p = si.p;
        }
        it->i++;
        return true;
}

int lmp_gguf_arr_strs(const struct lmp_gguf_value *arr, struct lmp_gguf_str *out) {
        struct lmp_gguf_iter it;
        struct lmp_gguf_value e;
        uint64_t i = 0;

        if (arr->type != LMP_GGUF_ARRAY || arr->elem_type != LMP_GGUF_STRING)
                return -EINVAL;
        lmp_gguf_iter_init(&it, arr);
        while (lmp_gguf_iter_next(&it, &e))
                lmp_gguf_value_str(&e, &out[i++]);
        return 0;
}

int lmp_gguf_arr_f32(const struct lmp_gguf_value *arr, float *out) {
        if (arr->type != LMP_GGUF_ARRAY)
                return -EINVAL;
        if (arr->elem_type == LMP_GGUF_F32) {
                memcpy(out, arr->data, arr->n * 4);
                return 0;
        }
        if (arr->elem_type == LMP_GGUF_F64) {
                for (uint64_t i = 0; i < arr->n; i++) {
                        double d;
                        memcpy(&d, arr->data + i * 8, 8);
                        out[i] = (float)d;
                }
                return 0;
        }
        return -EINVAL;
}

int lmp_gguf_arr_i32(const struct lmp_gguf_value *arr, int32_t *out) {
        size_t esz;
        if (arr->type != LMP_GGUF_ARRAY || !(is_signed_int(arr->elem_type) || is_unsigned_int(arr->elem_type)))
                return -EINVAL;
        esz = lmp_gguf_vtype_size(arr->elem_type);
        for (uint64_t i = 0; i < arr->n; i++) {
                const uint8_t *p = arr->data + i * esz;
                if (is_signed_int(arr->elem_type)) {
                        int64_t s = load_signed(p, arr->elem_type);
                        if (s < INT32_MIN || s > INT32_MAX)
                                return -ERANGE;
                        out[i] = (int32_t)s;
                } else {
                        uint64_t u = load_unsigned(p, arr->elem_type);
                        if (u > INT32_MAX)
                                return -ERANGE;
                        out[i] = (int32_t)u;
                }
        }
        return 0;
}

bool lmp_gguf_str_eq(struct lmp_gguf_str s, const char *c) {
        size_t n = strlen(c);
        return s.len == n && memcmp(s.ptr, c, n) == 0;
}

char *lmp_gguf_str_dup(struct lmp_gguf_str s) {
        char *p;
        if (s.len >= SIZE_MAX)
                return NULL;
        p = malloc((size_t)s.len + 1);
        if (!p)
                return NULL;
        memcpy(p, s.ptr, (size_t)s.len);
        p[s.len] = '\0';
        return p;
}

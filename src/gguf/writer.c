/* GGUF writer (version 3): metadata of every type, tensor infos and aligned
 * tensor data. Metadata entries are serialized as they are set and kept in
 * insertion order; tensor offsets are assigned as tensors are declared, so
 * the file's layout (and size) is known before any data is written. Data
 * can be given up front or streamed one tensor at a time, which keeps the
 * quantizer's and the model generator's memory bounded by one tensor. */
#include "gguf/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"

struct wkv {
        char *key;
        uint8_t *bytes;         /* type (u32) + value, serialized */
        size_t len;
};

struct wtensor {
        char *name;
        uint32_t type;
        uint32_t n_dims;
        uint64_t ne[LMP_GGUF_MAX_DIMS];
        uint64_t size;
        uint64_t offset;        /* relative to the data section */
        const void *data;
};

struct lmp_gguf_writer {
        uint32_t alignment;
        struct wkv *kv;
        size_t n_kv, cap_kv;
        struct wtensor *tensors;
        size_t n_tensors, cap_tensors;
        uint64_t data_size;     /* data section bytes, padded */
        /* streaming state */
        FILE *f;
        uint64_t written;       /* bytes written to f so far */
        uint64_t data_offset;
        size_t next_tensor;
};

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static int buf_put(struct buf *b, const void *data, size_t n) {
        if (n == 0)
                return 0;
        if (lmp_grow(&b->p, &b->cap, b->len + n, 1, 64) < 0)
                return -ENOMEM;
        memcpy(b->p + b->len, data, n);
        b->len += n;
        return 0;
}

static int buf_u32(struct buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static int buf_u64(struct buf *b, uint64_t v) { return buf_put(b, &v, 8); }

static int buf_str(struct buf *b, const char *s, uint64_t len) {
        int r = buf_u64(b, len);
        return r < 0 ? r : buf_put(b, s, (size_t)len);
}

int lmp_gguf_writer_new(uint32_t alignment, struct lmp_gguf_writer **ret) {
        struct lmp_gguf_writer *w;

        if (alignment == 0)
                alignment = LMP_GGUF_DEFAULT_ALIGNMENT;
        if ((alignment & (alignment - 1)) || alignment > (1u << 20))
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->alignment = alignment;
        *ret = w;
        return 0;
}

void lmp_gguf_writer_free(struct lmp_gguf_writer *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n_kv; i++) {
                free(w->kv[i].key);
                free(w->kv[i].bytes);
        }
        for (size_t i = 0; i < w->n_tensors; i++)
                free(w->tensors[i].name);
        free(w->kv);
        free(w->tensors);
        free(w);
}

static ssize_t find_kv(const struct lmp_gguf_writer *w, const char *key) {
        for (size_t i = 0; i < w->n_kv; i++)
                if (strcmp(w->kv[i].key, key) == 0)
                        return (ssize_t)i;
        return -1;
}

/* Takes ownership of b's bytes. */
static int add_kv(struct lmp_gguf_writer *w, const char *key, struct buf *b) {
        char *k = NULL;

        if (!key || !*key || strlen(key) > 65535)
                goto invalid;
        if (find_kv(w, key) >= 0) {
                free(b->p);
                return -EEXIST;
        }
        if (w->n_kv == w->cap_kv) {
                size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
                struct wkv *kv = realloc(w->kv, cap * sizeof(*kv));
                if (!kv)
                        goto nomem;
                w->kv = kv;
                w->cap_kv = cap;
        }
        k = strdup(key);
        if (!k)
                goto nomem;
        w->kv[w->n_kv++] = (struct wkv){ .key = k, .bytes = b->p, .len = b->len };
        return 0;
invalid:
        free(b->p);
        return -EINVAL;
nomem:
        free(b->p);
        return -ENOMEM;
}

static int set_scalar(struct lmp_gguf_writer *w, const char *key, uint32_t type, const void *v) {
        struct buf b = { 0 };
        if (buf_u32(&b, type) < 0 || buf_put(&b, v, lmp_gguf_vtype_size(type)) < 0) {
                free(b.p);
                return -ENOMEM;
        }
        return add_kv(w, key, &b);
}

#define SETTER(name, ctype, vtype) \
        int lmp_gguf_writer_set_##name(struct lmp_gguf_writer *w, const char *key, ctype v) { \
                return set_scalar(w, key, vtype, &v); \
        }
SETTER(u8, uint8_t, LMP_GGUF_U8)
SETTER(i8, int8_t, LMP_GGUF_I8)
SETTER(u16, uint16_t, LMP_GGUF_U16)
SETTER(i16, int16_t, LMP_GGUF_I16)
SETTER(u32, uint32_t, LMP_GGUF_U32)
SETTER(i32, int32_t, LMP_GGUF_I32)
SETTER(u64, uint64_t, LMP_GGUF_U64)
SETTER(i64, int64_t, LMP_GGUF_I64)
SETTER(f32, float, LMP_GGUF_F32)
SETTER(f64, double, LMP_GGUF_F64)
#undef SETTER

int lmp_gguf_writer_set_bool(struct lmp_gguf_writer *w, const char *key, bool v) {
        uint8_t b = v ? 1 : 0;
        return set_scalar(w, key, LMP_GGUF_BOOL, &b);
}

int lmp_gguf_writer_set_strn(struct lmp_gguf_writer *w, const char *key, const char *v, uint64_t len) {
        struct buf b = { 0 };
        if (buf_u32(&b, LMP_GGUF_STRING) < 0 || buf_str(&b, v, len) < 0) {
                free(b.p);
                return -ENOMEM;
        }
        return add_kv(w, key, &b);
}

int lmp_gguf_writer_set_str(struct lmp_gguf_writer *w, const char *key, const char *v) {
        return lmp_gguf_writer_set_strn(w, key, v, strlen(v));
}

int lmp_gguf_writer_set_arr(struct lmp_gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                            uint64_t n) {
        size_t esz = lmp_gguf_vtype_size(elem_type);
        struct buf b = { 0 };
        uint64_t bytes;

        if (!esz || lmp_mul_overflow(n, (uint64_t)esz, &bytes) || bytes > SIZE_MAX)
                return -EINVAL;
        if (buf_u32(&b, LMP_GGUF_ARRAY) < 0 || buf_u32(&b, elem_type) < 0 || buf_u64(&b, n) < 0 ||
            buf_put(&b, data, (size_t)bytes) < 0) {
                free(b.p);
                return -ENOMEM;
        }
        return add_kv(w, key, &b);
}

int lmp_gguf_writer_set_arr_str(struct lmp_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
        struct buf b = { 0 };
        if (buf_u32(&b, LMP_GGUF_ARRAY) < 0 || buf_u32(&b, LMP_GGUF_STRING) < 0 || buf_u64(&b, n) < 0)
                goto nomem;
        for (uint64_t i = 0; i < n; i++)
                if (buf_str(&b, strs[i], strlen(strs[i])) < 0)
                        goto nomem;
        return add_kv(w, key, &b);
nomem:
        free(b.p);
        return -ENOMEM;
}

/* Serializes a value read by the reader (without its type tag for array
 * elements, which carry the type in the array header). */
static int put_value(struct buf *b, const struct lmp_gguf_value *v) {
        if (v->type == LMP_GGUF_STRING)
                return buf_str(b, (const char *)v->data, v->size);
        if (v->type == LMP_GGUF_ARRAY) {
                struct lmp_gguf_iter it;
                struct lmp_gguf_value e;
                int r;

                if ((r = buf_u32(b, v->elem_type)) < 0 || (r = buf_u64(b, v->n)) < 0)
                        return r;
                if (lmp_gguf_vtype_size(v->elem_type))
                        return buf_put(b, v->data, (size_t)(v->n * lmp_gguf_vtype_size(v->elem_type)));
                lmp_gguf_iter_init(&it, v);
                while (lmp_gguf_iter_next(&it, &e))
                        if ((r = put_value(b, &e)) < 0)
                                return r;
                return 0;
        }
        if (!lmp_gguf_vtype_size(v->type))
                return -EINVAL;
        return buf_put(b, v->data, lmp_gguf_vtype_size(v->type));
}

int lmp_gguf_writer_set_value(struct lmp_gguf_writer *w, struct lmp_gguf_str key, const struct lmp_gguf_value *v) {
        struct buf b = { 0 };
        char *k;
        int r;

        k = lmp_gguf_str_dup(key);
        if (!k)
                return -ENOMEM;
        r = buf_u32(&b, v->type);
        if (r >= 0)
                r = put_value(&b, v);
        if (r < 0) {
                free(b.p);
                free(k);
                return r;
        }
        r = add_kv(w, k, &b);
        free(k);
        return r;
}

void lmp_gguf_writer_remove(struct lmp_gguf_writer *w, const char *key) {
        ssize_t i = find_kv(w, key);
        if (i < 0)
                return;
        free(w->kv[i].key);
        free(w->kv[i].bytes);
        memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - (size_t)i - 1) * sizeof(*w->kv));
        w->n_kv--;
}

int lmp_gguf_writer_add_tensor(struct lmp_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                               const uint64_t *ne, const void *data) {
        const struct lmp_type_info *ti = lmp_type_info(type);
        struct wtensor t = { .type = type, .n_dims = n_dims, .data = data };
        uint64_t nelem = 1, end;

        if (!ti || !name || !*name || strlen(name) > 1024 || n_dims == 0 || n_dims > LMP_GGUF_MAX_DIMS)
                return -EINVAL;
        for (uint32_t d = 0; d < LMP_GGUF_MAX_DIMS; d++) {
                t.ne[d] = d < n_dims ? ne[d] : 1;
                if (t.ne[d] == 0 || t.ne[d] > INT64_MAX || lmp_mul_overflow(nelem, t.ne[d], &nelem) ||
                    nelem > INT64_MAX)
                        return -EINVAL;
        }
        if (t.ne[0] % ti->blck_size)
                return -EINVAL;
        if (lmp_mul_overflow(nelem / ti->blck_size, (uint64_t)ti->type_size, &t.size))
                return -EOVERFLOW;
        for (size_t i = 0; i < w->n_tensors; i++)
                if (strcmp(w->tensors[i].name, name) == 0)
                        return -EEXIST;
        t.offset = w->data_size;
        if (lmp_add_overflow(t.offset, t.size, &end) || lmp_add_overflow(end, (uint64_t)w->alignment, &end))
                return -EOVERFLOW;
        if (w->n_tensors == w->cap_tensors) {
                size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
                struct wtensor *ts = realloc(w->tensors, cap * sizeof(*ts));
                if (!ts)
                        return -ENOMEM;
                w->tensors = ts;
                w->cap_tensors = cap;
        }
        t.name = strdup(name);
        if (!t.name)
                return -ENOMEM;
        w->tensors[w->n_tensors++] = t;
        w->data_size = LMP_ALIGN_UP(t.offset + t.size, (uint64_t)w->alignment);
        return 0;
}

/* Header, metadata and tensor infos, serialized, not yet padded. */
static int build_head(struct lmp_gguf_writer *w, struct buf *b) {
        ssize_t ai = find_kv(w, "general.alignment");
        bool add_alignment = false;
        int r = 0;

        if (ai >= 0) {
                uint32_t type, a;
                memcpy(&type, w->kv[ai].bytes, 4);
                if (type != LMP_GGUF_U32)
                        return -EINVAL;
                memcpy(&a, w->kv[ai].bytes + 4, 4);
                if (a != w->alignment)
                        return -EINVAL;
        } else if (w->alignment != LMP_GGUF_DEFAULT_ALIGNMENT) {
                add_alignment = true;
        }
        if ((r = buf_u32(b, LMP_GGUF_MAGIC)) < 0 || (r = buf_u32(b, 3)) < 0 ||
            (r = buf_u64(b, w->n_tensors)) < 0 || (r = buf_u64(b, w->n_kv + add_alignment)) < 0)
                return r;
        for (size_t i = 0; i < w->n_kv; i++)
                if ((r = buf_str(b, w->kv[i].key, strlen(w->kv[i].key))) < 0 ||
                    (r = buf_put(b, w->kv[i].bytes, w->kv[i].len)) < 0)
                        return r;
        if (add_alignment) {
                const char *k = "general.alignment";
                if ((r = buf_str(b, k, strlen(k))) < 0 || (r = buf_u32(b, LMP_GGUF_U32)) < 0 ||
                    (r = buf_u32(b, w->alignment)) < 0)
                        return r;
        }
        for (size_t i = 0; i < w->n_tensors; i++) {
                const struct wtensor *t = &w->tensors[i];
                if ((r = buf_str(b, t->name, strlen(t->name))) < 0 || (r = buf_u32(b, t->n_dims)) < 0)
                        return r;
                for (uint32_t d = 0; d < t->n_dims; d++)
                        if ((r = buf_u64(b, t->ne[d])) < 0)
                                return r;
                if ((r = buf_u32(b, t->type)) < 0 || (r = buf_u64(b, t->offset)) < 0)
                        return r;
        }
        return 0;
}

uint64_t lmp_gguf_writer_file_size(const struct lmp_gguf_writer *w) {
        struct buf b = { 0 };
        uint64_t size = 0;
        if (build_head((struct lmp_gguf_writer *)w, &b) == 0)
                size = LMP_ALIGN_UP((uint64_t)b.len, (uint64_t)w->alignment) + w->data_size;
        free(b.p);
        return size;
}

static int put_zeros(struct lmp_gguf_writer *w, uint64_t n, struct lmp_error *err) {
        static const uint8_t zeros[256];
        while (n > 0) {
                size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
                if (fwrite(zeros, 1, k, w->f) != k)
                        return lmp_error_set(err, -EIO, "write failed at byte %" PRIu64, w->written);
                w->written += k;
                n -= k;
        }
        return 0;
}

int lmp_gguf_writer_begin(struct lmp_gguf_writer *w, FILE *f, struct lmp_error *err) {
        struct buf b = { 0 };
        int r;

        if (w->f)
                return lmp_error_set(err, -EINVAL, "writer already started");
        r = build_head(w, &b);
        if (r < 0) {
                free(b.p);
                return lmp_error_set(err, r, r == -EINVAL ? "general.alignment must be a u32 equal to the writer's"
                                     " alignment" : "out of memory");
        }
        w->f = f;
        w->written = 0;
        w->next_tensor = 0;
        if (fwrite(b.p, 1, b.len, f) != b.len) {
                free(b.p);
                return lmp_error_set(err, -EIO, "write failed in the header");
        }
        w->written = b.len;
        free(b.p);
        w->data_offset = LMP_ALIGN_UP(w->written, (uint64_t)w->alignment);
        return put_zeros(w, w->data_offset - w->written, err);
}

int lmp_gguf_writer_write_data(struct lmp_gguf_writer *w, const void *data, uint64_t size, struct lmp_error *err) {
        const struct wtensor *t;
        int r;

        if (!w->f)
                return lmp_error_set(err, -EINVAL, "writer not started");
        if (w->next_tensor >= w->n_tensors)
                return lmp_error_set(err, -EINVAL, "more tensor data than declared tensors");
        t = &w->tensors[w->next_tensor];
        if (size != t->size)
                return lmp_error_set(err, -EINVAL, "tensor '%s': %" PRIu64 " bytes given, %" PRIu64 " expected",
                                     t->name, size, t->size);
        r = put_zeros(w, w->data_offset + t->offset - w->written, err);
        if (r < 0)
                return r;
        if (size && fwrite(data, 1, (size_t)size, w->f) != size)
                return lmp_error_set(err, -EIO, "tensor '%s': write failed", t->name);
        w->written += size;
        w->next_tensor++;
        /* Pad every tensor, the last one too, so the file ends aligned. */
        return put_zeros(w, LMP_ALIGN_UP(w->written, (uint64_t)w->alignment) - w->written, err);
}

int lmp_gguf_writer_finish(struct lmp_gguf_writer *w, struct lmp_error *err) {
        if (!w->f)
                return lmp_error_set(err, -EINVAL, "writer not started");
        if (w->next_tensor != w->n_tensors)
                return lmp_error_set(err, -EINVAL, "%zu of %zu tensors written", w->next_tensor, w->n_tensors);
        if (fflush(w->f) != 0 || ferror(w->f))
                return lmp_error_set(err, -EIO, "write failed");
        w->f = NULL;
        return 0;
}

int lmp_gguf_writer_write_file(struct lmp_gguf_writer *w, const char *path, struct lmp_error *err) {
        FILE *f;
        int r;

        for (size_t i = 0; i < w->n_tensors; i++)
                if (!w->tensors[i].data && w->tensors[i].size)
                        return lmp_error_set(err, -EINVAL, "tensor '%s' has no data", w->tensors[i].name);
        f = fopen(path, "wbe");
        if (!f)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        r = lmp_gguf_writer_begin(w, f, err);
        for (size_t i = 0; r >= 0 && i < w->n_tensors; i++)
                r = lmp_gguf_writer_write_data(w, w->tensors[i].data, w->tensors[i].size, err);
        if (r >= 0)
                r = lmp_gguf_writer_finish(w, err);
        if (fclose(f) != 0 && r >= 0)
                r = lmp_error_set(err, -EIO, "%s: close failed", path);
        if (r < 0) {
                w->f = NULL;
                lmp_error_prefix(err, "%s", path);
                unlink(path);
        }
        return r;
}

/* GGUF reader and writer.
 *
 * The reader maps the file read-only and never copies tensor data: every
 * string and tensor it hands out points into the mapping, which lives as
 * long as the struct lmp_gguf. Everything is validated at open time (every
 * count, length, offset, dimension and product against the file size and
 * for overflow), so that after lmp_gguf_open() succeeds the accessors below
 * cannot read outside the file. Supports GGUF versions 2 and 3.
 *
 * The writer builds metadata and tensor infos in memory and then writes the
 * file, either all at once or streaming tensor data one tensor at a time
 * (bounded memory for multi-GB models). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "gguf/types.h"

#define LMP_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define LMP_GGUF_DEFAULT_ALIGNMENT 32
#define LMP_GGUF_MAX_DIMS 4

enum lmp_gguf_vtype {
        LMP_GGUF_U8 = 0,
        LMP_GGUF_I8 = 1,
        LMP_GGUF_U16 = 2,
        LMP_GGUF_I16 = 3,
        LMP_GGUF_U32 = 4,
        LMP_GGUF_I32 = 5,
        LMP_GGUF_F32 = 6,
        LMP_GGUF_BOOL = 7,
        LMP_GGUF_STRING = 8,
        LMP_GGUF_ARRAY = 9,
        LMP_GGUF_U64 = 10,
        LMP_GGUF_I64 = 11,
        LMP_GGUF_F64 = 12,
        LMP_GGUF_VTYPE_COUNT = 13,
};

/* A string inside the mapping: not NUL-terminated. */
struct lmp_gguf_str {
        const char *ptr;
        uint64_t len;
};

/* A metadata value. For arrays, data points at the first element and
 * elem_type/n describe them; nested arrays are arrays whose elem_type is
 * LMP_GGUF_ARRAY (walk them with lmp_gguf_iter). */
struct lmp_gguf_value {
        uint32_t type;          /* enum lmp_gguf_vtype */
        const uint8_t *data;    /* the value's bytes (possibly unaligned) */
        uint64_t size;          /* bytes taken by the value, validated */
        uint32_t elem_type;     /* arrays only */
        uint64_t n;             /* arrays only: element count */
};

struct lmp_gguf_kv {
        struct lmp_gguf_str key;
        struct lmp_gguf_value value;
        uint64_t offset;        /* file offset of the key's length field */
};

struct lmp_gguf_tensor {
        struct lmp_gguf_str name;
        uint32_t type;          /* enum lmp_type */
        uint32_t n_dims;
        uint64_t ne[LMP_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
        uint64_t offset;        /* relative to the data section */
        uint64_t size;          /* bytes */
        const void *data;       /* inside the mapping */
        uint64_t info_offset;   /* file offset of the tensor info */
};

struct lmp_gguf_index;

struct lmp_gguf {
        uint32_t version;
        uint64_t n_kv;
        struct lmp_gguf_kv *kv;
        uint64_t n_tensors;
        struct lmp_gguf_tensor *tensors;
        uint64_t alignment;
        uint64_t data_offset;   /* file offset of the data section */
        uint64_t data_size;     /* bytes from data_offset to the end of the last tensor */
        const uint8_t *base;    /* the whole file */
        uint64_t size;
        int fd;                 /* -1 when opened from memory */
        bool owns_map;
        bool store;             /* opened by lmp_gguf_open_store() */
        struct lmp_gguf_index *index;
};

/* Opens and validates a GGUF file. On failure returns a negative errno-style
 * code and fills *err with a message naming the key, tensor and byte offset. */
int lmp_gguf_open(const char *path, struct lmp_gguf **ret, struct lmp_error *err);

/* Same, over a buffer the caller keeps alive (not copied). Used by the fuzzer
 * and by tests. */
int lmp_gguf_open_mem(const void *buf, size_t size, struct lmp_gguf **ret, struct lmp_error *err);

/* Same, over a weight store's image (src/store/), which may hold tensors in
 * lmpool's repacked layouts (LMP_TYPE_Q4_K_R16, LMP_TYPE_Q6_K_R16) as well as the file's. */
int lmp_gguf_open_store(const void *buf, size_t size, struct lmp_gguf **ret, struct lmp_error *err);

/* The file offset of tensor t's type id (inside its tensor info). */
uint64_t lmp_gguf_tensor_type_offset(const struct lmp_gguf_tensor *t);

void lmp_gguf_free(struct lmp_gguf *g);

/* Lookups (hash tables built at open). NULL when absent. */
const struct lmp_gguf_kv *lmp_gguf_find(const struct lmp_gguf *g, const char *key);
const struct lmp_gguf_tensor *lmp_gguf_find_tensor(const struct lmp_gguf *g, const char *name);

/* Typed getters by key. Return 0, -ENOENT when the key is absent, -EINVAL
 * when its type does not convert, -ERANGE when the value does not fit.
 * Integer getters accept any integer type whose value fits; get_f32/get_f64
 * accept f32 and f64. *ret is untouched on failure. */
int lmp_gguf_get_u32(const struct lmp_gguf *g, const char *key, uint32_t *ret);
int lmp_gguf_get_u64(const struct lmp_gguf *g, const char *key, uint64_t *ret);
int lmp_gguf_get_i32(const struct lmp_gguf *g, const char *key, int32_t *ret);
int lmp_gguf_get_i64(const struct lmp_gguf *g, const char *key, int64_t *ret);
int lmp_gguf_get_f32(const struct lmp_gguf *g, const char *key, float *ret);
int lmp_gguf_get_f64(const struct lmp_gguf *g, const char *key, double *ret);
int lmp_gguf_get_bool(const struct lmp_gguf *g, const char *key, bool *ret);
int lmp_gguf_get_str(const struct lmp_gguf *g, const char *key, struct lmp_gguf_str *ret);
/* An array; elem_type may be -1 to accept any element type. */
int lmp_gguf_get_arr(const struct lmp_gguf *g, const char *key, int elem_type,
                     struct lmp_gguf_value *ret);

/* The same conversions on a value (e.g. an array element). */
int lmp_gguf_value_u64(const struct lmp_gguf_value *v, uint64_t *ret);
int lmp_gguf_value_i64(const struct lmp_gguf_value *v, int64_t *ret);
int lmp_gguf_value_f64(const struct lmp_gguf_value *v, double *ret);
int lmp_gguf_value_bool(const struct lmp_gguf_value *v, bool *ret);
int lmp_gguf_value_str(const struct lmp_gguf_value *v, struct lmp_gguf_str *ret);

/* Walks an array's elements in order (any element type, nested arrays too).
 * The array was validated at open, so iteration cannot fail. */
struct lmp_gguf_iter {
        const struct lmp_gguf_value *arr;
        uint64_t i;
        const uint8_t *p;
};
void lmp_gguf_iter_init(struct lmp_gguf_iter *it, const struct lmp_gguf_value *arr);
bool lmp_gguf_iter_next(struct lmp_gguf_iter *it, struct lmp_gguf_value *ret);

/* Bulk reads of a whole array into caller memory of arr->n elements.
 * -EINVAL when the element type does not convert. */
int lmp_gguf_arr_strs(const struct lmp_gguf_value *arr, struct lmp_gguf_str *out);
int lmp_gguf_arr_f32(const struct lmp_gguf_value *arr, float *out);
int lmp_gguf_arr_i32(const struct lmp_gguf_value *arr, int32_t *out);

/* Compares a GGUF string with a C string. */
bool lmp_gguf_str_eq(struct lmp_gguf_str s, const char *c);
/* Copies into a NUL-terminated malloc'd string (NULL on ENOMEM). */
char *lmp_gguf_str_dup(struct lmp_gguf_str s);

const char *lmp_gguf_vtype_name(uint32_t type);
/* Bytes of one fixed-size scalar of that type; 0 for string/array/unknown. */
size_t lmp_gguf_vtype_size(uint32_t type);

/* ------------------------------------------------------------------ writer */

struct lmp_gguf_writer;

/* alignment: 0 for the default (32); must be a power of two <= 1 MiB.
 * When it is not the default, general.alignment is written. */
int lmp_gguf_writer_new(uint32_t alignment, struct lmp_gguf_writer **ret);
void lmp_gguf_writer_free(struct lmp_gguf_writer *w);

/* Metadata, in insertion order. A duplicate key is -EEXIST. */
int lmp_gguf_writer_set_u8(struct lmp_gguf_writer *w, const char *key, uint8_t v);
int lmp_gguf_writer_set_i8(struct lmp_gguf_writer *w, const char *key, int8_t v);
int lmp_gguf_writer_set_u16(struct lmp_gguf_writer *w, const char *key, uint16_t v);
int lmp_gguf_writer_set_i16(struct lmp_gguf_writer *w, const char *key, int16_t v);
int lmp_gguf_writer_set_u32(struct lmp_gguf_writer *w, const char *key, uint32_t v);
int lmp_gguf_writer_set_i32(struct lmp_gguf_writer *w, const char *key, int32_t v);
int lmp_gguf_writer_set_u64(struct lmp_gguf_writer *w, const char *key, uint64_t v);
int lmp_gguf_writer_set_i64(struct lmp_gguf_writer *w, const char *key, int64_t v);
int lmp_gguf_writer_set_f32(struct lmp_gguf_writer *w, const char *key, float v);
int lmp_gguf_writer_set_f64(struct lmp_gguf_writer *w, const char *key, double v);
int lmp_gguf_writer_set_bool(struct lmp_gguf_writer *w, const char *key, bool v);
int lmp_gguf_writer_set_str(struct lmp_gguf_writer *w, const char *key, const char *v);
int lmp_gguf_writer_set_strn(struct lmp_gguf_writer *w, const char *key, const char *v, uint64_t len);
/* An array of n fixed-size scalars of elem_type, stored contiguously in data. */
int lmp_gguf_writer_set_arr(struct lmp_gguf_writer *w, const char *key, uint32_t elem_type,
                            const void *data, uint64_t n);
int lmp_gguf_writer_set_arr_str(struct lmp_gguf_writer *w, const char *key,
                                const char *const *strs, uint64_t n);
/* Copies a value read from another file (any type, nested arrays too). */
int lmp_gguf_writer_set_value(struct lmp_gguf_writer *w, struct lmp_gguf_str key,
                              const struct lmp_gguf_value *v);
/* Removes a key set earlier (no-op if absent), e.g. to replace general.file_type. */
void lmp_gguf_writer_remove(struct lmp_gguf_writer *w, const char *key);

/* Declares a tensor. data may be NULL when the data will be streamed with
 * lmp_gguf_writer_write_data(). ne[0] must be a multiple of the type's
 * block size. Duplicate names are -EEXIST. */
int lmp_gguf_writer_add_tensor(struct lmp_gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const uint64_t *ne, const void *data);

/* Writes the whole file (every tensor must have data). */
int lmp_gguf_writer_write_file(struct lmp_gguf_writer *w, const char *path, struct lmp_error *err);

/* Streaming: begin() writes the header, metadata and tensor infos; then
 * write_data() once per tensor in declaration order; then finish(). */
int lmp_gguf_writer_begin(struct lmp_gguf_writer *w, FILE *f, struct lmp_error *err);
int lmp_gguf_writer_write_data(struct lmp_gguf_writer *w, const void *data, uint64_t size,
                               struct lmp_error *err);
int lmp_gguf_writer_finish(struct lmp_gguf_writer *w, struct lmp_error *err);

/* Bytes the finished file will have (after all tensors are declared). */
uint64_t lmp_gguf_writer_file_size(const struct lmp_gguf_writer *w);

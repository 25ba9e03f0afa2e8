/* GGUF reader and writer tests: every fixture parses with shapes consistent
 * with its architecture metadata; the writer round-trips metadata of every
 * type (nested arrays too) and tensor bytes; typed getters check types and
 * ranges; and hostile inputs (truncation at every offset of the header and
 * metadata, thousands of bit flips, forged counts, lengths, dimensions,
 * types, offsets and alignments) give an error code and a message, never a
 * crash, a hang or a sanitizer report. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/readfile.h"
#include "gguf/gguf.h"
#include "../check.h"

/* ------------------------------------------------------------- fixtures */

static uint64_t meta_u64(const struct lmp_gguf *g, const char *arch, const char *suffix) {
        char key[128];
        uint64_t v = 0;
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        CHECK(lmp_gguf_get_u64(g, key, &v) == 0, "missing %s", key);
        return v;
}

static void check_shape(const struct lmp_gguf *g, const char *name, uint64_t ne0, uint64_t ne1, bool required) {
        const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, name);
        if (!t) {
                CHECK(!required, "tensor %s missing", name);
                return;
        }
        CHECK(t->ne[0] == ne0 && t->ne[1] == ne1, "%s: shape %" PRIu64 "x%" PRIu64 ", expected %" PRIu64 "x%" PRIu64,
              name, t->ne[0], t->ne[1], ne0, ne1);
}

static void check_model_shapes(const struct lmp_gguf *g, const char *path) {
        struct lmp_gguf_str arch_s;
        struct lmp_gguf_value tokens;
        char arch[32], name[96];

        if (lmp_gguf_get_str(g, "general.architecture", &arch_s) < 0 || g->n_tensors == 0)
                return; /* a vocabulary-only file */
        CHECK(arch_s.len < sizeof(arch), "%s: architecture name too long", path);
        snprintf(arch, sizeof(arch), "%.*s", (int)arch_s.len, arch_s.ptr);
        uint64_t n_embd = meta_u64(g, arch, "embedding_length");
        uint64_t n_ff = meta_u64(g, arch, "feed_forward_length");
        uint64_t n_layer = meta_u64(g, arch, "block_count");
        uint64_t n_head = meta_u64(g, arch, "attention.head_count");
        uint64_t n_kv = meta_u64(g, arch, "attention.head_count_kv");
        CHECK(n_head && n_embd % n_head == 0, "%s: bad head count", path);
        uint64_t head_dim = n_head ? n_embd / n_head : 0;
        CHECK(lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &tokens) == 0, "%s: no tokens", path);
        uint64_t n_vocab = tokens.n;

        check_shape(g, "token_embd.weight", n_embd, n_vocab, true);
        check_shape(g, "output.weight", n_embd, n_vocab, false);
        check_shape(g, "output_norm.weight", n_embd, 1, true);
        for (uint64_t l = 0; l < n_layer; l++) {
#define BLK(suffix, a, b) \
        snprintf(name, sizeof(name), "blk.%" PRIu64 ".%s", l, suffix); \
        check_shape(g, name, a, b, true)
                BLK("attn_norm.weight", n_embd, 1);
                BLK("attn_q.weight", n_embd, n_head * head_dim);
                BLK("attn_k.weight", n_embd, n_kv * head_dim);
                BLK("attn_v.weight", n_embd, n_kv * head_dim);
                BLK("attn_output.weight", n_head * head_dim, n_embd);
                BLK("ffn_norm.weight", n_embd, 1);
                BLK("ffn_gate.weight", n_embd, n_ff);
                BLK("ffn_up.weight", n_embd, n_ff);
                BLK("ffn_down.weight", n_ff, n_embd);
#undef BLK
        }
        /* Every tensor is accounted for by the architecture's layout. */
        uint64_t expected = 2 + 9 * n_layer + (lmp_gguf_find_tensor(g, "output.weight") ? 1 : 0);
        if (strcmp(arch, "qwen2") == 0)
                expected += 3 * n_layer; /* q/k/v biases */
        CHECK(g->n_tensors == expected, "%s: %" PRIu64 " tensors, expected %" PRIu64, path, g->n_tensors, expected);
}

static int test_fixtures(const char *fixtures) {
        static const char *const subdirs[] = { "models", "tokenizer" };
        int n_files = 0;

        for (size_t s = 0; s < 2; s++) {
                char dir[4096];
                DIR *d;
                struct dirent *e;

                snprintf(dir, sizeof(dir), "%s/%s", fixtures, subdirs[s]);
                d = opendir(dir);
                CHECK(d, "cannot open %s", dir);
                if (!d)
                        continue;
                while ((e = readdir(d))) {
                        char path[8192];
                        struct lmp_gguf *g;
                        struct lmp_error err = { 0 };
                        size_t len = strlen(e->d_name);

                        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") != 0)
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                        int r = lmp_gguf_open(path, &g, &err);
                        CHECK(r == 0, "%s: %s", path, err.msg);
                        if (r < 0)
                                continue;
                        n_files++;
                        CHECK(g->version == 3 || g->version == 2, "%s: version", path);
                        check_model_shapes(g, path);
                        lmp_gguf_free(g);
                }
                closedir(d);
        }
        CHECK(n_files >= 26, "only %d fixture files found", n_files);
        printf("fixtures: %d files parsed\n", n_files);
        return 0;
}

/* -------------------------------------------------------------- writer */

static bool values_equal(const struct lmp_gguf_value *a, const struct lmp_gguf_value *b) {
        if (a->type != b->type || a->size != b->size)
                return false;
        if (a->type == LMP_GGUF_ARRAY && (a->elem_type != b->elem_type || a->n != b->n))
                return false;
        return memcmp(a->data, b->data, (size_t)a->size) == 0;
}

/* Reads the file at path back and checks it equals the source file g in
 * metadata (same keys, order and bytes) and tensors (names, types, shapes,
 * bytes). */
static void check_same(const struct lmp_gguf *g, const char *path) {
        struct lmp_gguf *h;
        struct lmp_error err = { 0 };

        int r = lmp_gguf_open(path, &h, &err);
        CHECK(r == 0, "reading back %s: %s", path, err.msg);
        if (r < 0)
                return;
        CHECK(h->n_kv == g->n_kv, "kv count %" PRIu64 " vs %" PRIu64, h->n_kv, g->n_kv);
        for (uint64_t i = 0; i < g->n_kv && i < h->n_kv; i++) {
                CHECK(g->kv[i].key.len == h->kv[i].key.len &&
                      memcmp(g->kv[i].key.ptr, h->kv[i].key.ptr, g->kv[i].key.len) == 0, "key %" PRIu64, i);
                CHECK(values_equal(&g->kv[i].value, &h->kv[i].value), "value of key %.*s",
                      (int)g->kv[i].key.len, g->kv[i].key.ptr);
        }
        CHECK(h->n_tensors == g->n_tensors, "tensor count");
        for (uint64_t i = 0; i < g->n_tensors && i < h->n_tensors; i++) {
                const struct lmp_gguf_tensor *a = &g->tensors[i], *b = &h->tensors[i];
                CHECK(a->name.len == b->name.len && memcmp(a->name.ptr, b->name.ptr, a->name.len) == 0, "name");
                CHECK(a->type == b->type && a->n_dims == b->n_dims && memcmp(a->ne, b->ne, sizeof(a->ne)) == 0,
                      "tensor %.*s geometry", (int)a->name.len, a->name.ptr);
                CHECK(a->size == b->size && memcmp(a->data, b->data, (size_t)a->size) == 0, "tensor %.*s bytes",
                      (int)a->name.len, a->name.ptr);
        }
        lmp_gguf_free(h);
}

/* Copies a file through the writer (metadata values and tensors as read). */
static int copy_through_writer(const struct lmp_gguf *g, const char *out, uint32_t alignment, bool streaming) {
        struct lmp_gguf_writer *w;
        struct lmp_error err = { 0 };
        int r;

        CHECK(lmp_gguf_writer_new(alignment, &w) == 0, "writer_new");
        for (uint64_t i = 0; i < g->n_kv; i++) {
                if (lmp_gguf_str_eq(g->kv[i].key, "general.alignment"))
                        continue;
                r = lmp_gguf_writer_set_value(w, g->kv[i].key, &g->kv[i].value);
                CHECK(r == 0, "set_value: %d", r);
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                char *name = lmp_gguf_str_dup(t->name);
                r = lmp_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, streaming ? NULL : t->data);
                CHECK(r == 0, "add_tensor %s: %d", name, r);
                free(name);
        }
        if (streaming) {
                FILE *f = fopen(out, "wb");
                CHECK(f, "open %s", out);
                r = lmp_gguf_writer_begin(w, f, &err);
                for (uint64_t i = 0; r == 0 && i < g->n_tensors; i++)
                        r = lmp_gguf_writer_write_data(w, g->tensors[i].data, g->tensors[i].size, &err);
                if (r == 0)
                        r = lmp_gguf_writer_finish(w, &err);
                fclose(f);
        } else {
                r = lmp_gguf_writer_write_file(w, out, &err);
        }
        CHECK(r == 0, "write %s: %s", out, err.msg);
        struct stat st;
        CHECK(stat(out, &st) == 0 && (uint64_t)st.st_size == lmp_gguf_writer_file_size(w),
              "file size %lld vs predicted %" PRIu64, (long long)st.st_size, lmp_gguf_writer_file_size(w));
        lmp_gguf_writer_free(w);
        return r;
}

static void test_writer_every_type(const char *tmp) {
        struct lmp_gguf_writer *w;
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };
        char path[4096];
        uint8_t u8s[5] = { 0, 1, 2, 254, 255 };
        int16_t i16s[3] = { -32768, 0, 32767 };
        double f64s[2] = { 1.5, -2.25e300 };
        uint8_t bools[3] = { 1, 0, 1 };
        const char *strs[4] = { "", "a", "▁hello", "<0x0A>" };
        float t0[64];
        uint8_t t1[34 * 4];
        uint64_t ne0[2] = { 32, 2 }, ne1[1] = { 128 };

        snprintf(path, sizeof(path), "%s/every-type.gguf", tmp);
        for (int i = 0; i < 64; i++)
                t0[i] = (float)i * 0.5f - 3.0f;
        for (size_t i = 0; i < sizeof(t1); i++)
                t1[i] = (uint8_t)(i * 37 + 11);
        CHECK(lmp_gguf_writer_new(64, &w) == 0, "new");
        CHECK(lmp_gguf_writer_set_u8(w, "t.u8", 200) == 0, "u8");
        CHECK(lmp_gguf_writer_set_i8(w, "t.i8", -100) == 0, "i8");
        CHECK(lmp_gguf_writer_set_u16(w, "t.u16", 65000) == 0, "u16");
        CHECK(lmp_gguf_writer_set_i16(w, "t.i16", -30000) == 0, "i16");
        CHECK(lmp_gguf_writer_set_u32(w, "t.u32", 4000000000u) == 0, "u32");
        CHECK(lmp_gguf_writer_set_i32(w, "t.i32", -2000000000) == 0, "i32");
        CHECK(lmp_gguf_writer_set_u64(w, "t.u64", UINT64_MAX) == 0, "u64");
        CHECK(lmp_gguf_writer_set_i64(w, "t.i64", INT64_MIN) == 0, "i64");
        CHECK(lmp_gguf_writer_set_f32(w, "t.f32", 0.125f) == 0, "f32");
        CHECK(lmp_gguf_writer_set_f64(w, "t.f64", -1e-300) == 0, "f64");
        CHECK(lmp_gguf_writer_set_bool(w, "t.bool", true) == 0, "bool");
        CHECK(lmp_gguf_writer_set_str(w, "t.str", "héllo wörld") == 0, "str");
        CHECK(lmp_gguf_writer_set_arr(w, "t.arr_u8", LMP_GGUF_U8, u8s, 5) == 0, "arr u8");
        CHECK(lmp_gguf_writer_set_arr(w, "t.arr_i16", LMP_GGUF_I16, i16s, 3) == 0, "arr i16");
        CHECK(lmp_gguf_writer_set_arr(w, "t.arr_f64", LMP_GGUF_F64, f64s, 2) == 0, "arr f64");
        CHECK(lmp_gguf_writer_set_arr(w, "t.arr_bool", LMP_GGUF_BOOL, bools, 3) == 0, "arr bool");
        CHECK(lmp_gguf_writer_set_arr(w, "t.arr_empty", LMP_GGUF_U32, NULL, 0) == 0, "arr empty");
        CHECK(lmp_gguf_writer_set_arr_str(w, "t.arr_str", strs, 4) == 0, "arr str");
        CHECK(lmp_gguf_writer_set_u32(w, "t.u32", 1) == -EEXIST, "duplicate key refused");
        CHECK(lmp_gguf_writer_set_u32(w, "", 1) == -EINVAL, "empty key refused");
        CHECK(lmp_gguf_writer_set_u32(w, "t.removed", 7) == 0, "to remove");
        lmp_gguf_writer_remove(w, "t.removed");
        CHECK(lmp_gguf_writer_add_tensor(w, "t0", LMP_TYPE_F32, 2, ne0, t0) == 0, "tensor f32");
        CHECK(lmp_gguf_writer_add_tensor(w, "t1", LMP_TYPE_Q8_0, 1, ne1, t1) == 0, "tensor q8_0");
        CHECK(lmp_gguf_writer_add_tensor(w, "t1", LMP_TYPE_F32, 1, ne1, t0) == -EEXIST, "duplicate tensor refused");
        uint64_t bad_ne[1] = { 33 };
        CHECK(lmp_gguf_writer_add_tensor(w, "t2", LMP_TYPE_Q8_0, 1, bad_ne, t1) == -EINVAL, "bad row length");
        CHECK(lmp_gguf_writer_add_tensor(w, "t3", 99, 1, ne1, t1) == -EINVAL, "unknown type");
        CHECK(lmp_gguf_writer_write_file(w, path, &err) == 0, "write: %s", err.msg);
        lmp_gguf_writer_free(w);

        int r = lmp_gguf_open(path, &g, &err);
        CHECK(r == 0, "read back: %s", err.msg);
        if (r < 0)
                return;
        uint32_t u32;
        uint64_t u64;
        int32_t i32;
        int64_t i64;
        float f32;
        double f64;
        bool b;
        struct lmp_gguf_str s;
        struct lmp_gguf_value arr;
        CHECK(g->alignment == 64, "alignment %" PRIu64, g->alignment);
        CHECK(lmp_gguf_get_u32(g, "t.u8", &u32) == 0 && u32 == 200, "u8 as u32");
        CHECK(lmp_gguf_get_i32(g, "t.i8", &i32) == 0 && i32 == -100, "i8");
        CHECK(lmp_gguf_get_u32(g, "t.i8", &u32) == -ERANGE, "negative into u32 is ERANGE");
        CHECK(lmp_gguf_get_u32(g, "t.u16", &u32) == 0 && u32 == 65000, "u16");
        CHECK(lmp_gguf_get_i32(g, "t.i16", &i32) == 0 && i32 == -30000, "i16");
        CHECK(lmp_gguf_get_u32(g, "t.u32", &u32) == 0 && u32 == 4000000000u, "u32");
        CHECK(lmp_gguf_get_i32(g, "t.u32", &i32) == -ERANGE, "u32 into i32 is ERANGE");
        CHECK(lmp_gguf_get_i32(g, "t.i32", &i32) == 0 && i32 == -2000000000, "i32");
        CHECK(lmp_gguf_get_u64(g, "t.u64", &u64) == 0 && u64 == UINT64_MAX, "u64");
        CHECK(lmp_gguf_get_u32(g, "t.u64", &u32) == -ERANGE, "u64 into u32 is ERANGE");
        CHECK(lmp_gguf_get_i64(g, "t.i64", &i64) == 0 && i64 == INT64_MIN, "i64");
        CHECK(lmp_gguf_get_f32(g, "t.f32", &f32) == 0 && f32 == 0.125f, "f32");
        CHECK(lmp_gguf_get_f64(g, "t.f64", &f64) == 0 && f64 == -1e-300, "f64");
        CHECK(lmp_gguf_get_f32(g, "t.u32", &f32) == -EINVAL, "int is not a float");
        CHECK(lmp_gguf_get_bool(g, "t.bool", &b) == 0 && b, "bool");
        CHECK(lmp_gguf_get_bool(g, "t.u8", &b) == -EINVAL, "u8 is not a bool");
        CHECK(lmp_gguf_get_str(g, "t.str", &s) == 0 && lmp_gguf_str_eq(s, "héllo wörld"), "str");
        CHECK(lmp_gguf_get_str(g, "t.u8", &s) == -EINVAL, "u8 is not a string");
        CHECK(lmp_gguf_get_u32(g, "t.absent", &u32) == -ENOENT, "absent key");
        CHECK(lmp_gguf_find(g, "t.removed") == NULL, "removed key is gone");
        CHECK(lmp_gguf_get_arr(g, "t.arr_str", LMP_GGUF_STRING, &arr) == 0 && arr.n == 4, "arr str");
        CHECK(lmp_gguf_get_arr(g, "t.arr_str", LMP_GGUF_U8, &arr) == -EINVAL, "array elem type check");
        if (lmp_gguf_get_arr(g, "t.arr_str", LMP_GGUF_STRING, &arr) == 0) {
                struct lmp_gguf_str out[4];
                CHECK(lmp_gguf_arr_strs(&arr, out) == 0, "arr_strs");
                for (int i = 0; i < 4; i++)
                        CHECK(lmp_gguf_str_eq(out[i], strs[i]), "string %d", i);
        }
        if (lmp_gguf_get_arr(g, "t.arr_i16", -1, &arr) == 0) {
                int32_t out[3];
                CHECK(lmp_gguf_arr_i32(&arr, out) == 0 && out[0] == -32768 && out[2] == 32767, "arr_i32");
        }
        if (lmp_gguf_get_arr(g, "t.arr_f64", -1, &arr) == 0) {
                float out[2];
                CHECK(lmp_gguf_arr_f32(&arr, out) == 0 && out[0] == 1.5f, "arr_f32 from f64");
        }
        const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "t0");
        CHECK(t && t->type == LMP_TYPE_F32 && t->ne[0] == 32 && t->ne[1] == 2 && memcmp(t->data, t0, 256) == 0,
              "tensor t0");
        t = lmp_gguf_find_tensor(g, "t1");
        CHECK(t && t->type == LMP_TYPE_Q8_0 && t->size == sizeof(t1) && memcmp(t->data, t1, sizeof(t1)) == 0 &&
              ((uintptr_t)t->data - (uintptr_t)g->base) % 64 == 0, "tensor t1");

        /* Nested arrays: an array of arrays of strings, copied through
         * set_value, read back equal, walked by the iterator. */
        char path2[4096];
        snprintf(path2, sizeof(path2), "%s/nested.gguf", tmp);
        uint8_t nested[512];
        size_t n = 0;
        uint32_t et_arr = LMP_GGUF_ARRAY, et_str = LMP_GGUF_STRING, et_u16 = LMP_GGUF_U16;
        uint64_t two = 2, one = 1, len3 = 3;
        uint16_t v16 = 777;
#define PUT(x) (memcpy(nested + n, &(x), sizeof(x)), n += sizeof(x))
        PUT(et_arr); PUT(two);                        /* outer: 2 arrays */
        PUT(et_str); PUT(one); PUT(len3);             /* [ "abc" ] */
        memcpy(nested + n, "abc", 3); n += 3;
        PUT(et_u16); PUT(one); PUT(v16);              /* [ 777 ] */
#undef PUT
        struct lmp_gguf_value nv = { .type = LMP_GGUF_ARRAY, .elem_type = LMP_GGUF_ARRAY, .n = 2,
                                     .data = nested + 12, .size = n - 12 };
        CHECK(lmp_gguf_writer_new(0, &w) == 0, "new");
        struct lmp_gguf_str key = { "t.nested", 8 };
        CHECK(lmp_gguf_writer_set_value(w, key, &nv) == 0, "set nested");
        CHECK(lmp_gguf_writer_write_file(w, path2, &err) == 0, "write nested: %s", err.msg);
        lmp_gguf_writer_free(w);
        struct lmp_gguf *h;
        r = lmp_gguf_open(path2, &h, &err);
        CHECK(r == 0, "nested read: %s", err.msg);
        if (r == 0) {
                const struct lmp_gguf_kv *kv = lmp_gguf_find(h, "t.nested");
                CHECK(kv && kv->value.elem_type == LMP_GGUF_ARRAY && kv->value.n == 2, "nested kv");
                if (kv) {
                        struct lmp_gguf_iter it, it2;
                        struct lmp_gguf_value e, e2;
                        lmp_gguf_iter_init(&it, &kv->value);
                        CHECK(lmp_gguf_iter_next(&it, &e) && e.elem_type == LMP_GGUF_STRING && e.n == 1, "inner 0");
                        lmp_gguf_iter_init(&it2, &e);
                        CHECK(lmp_gguf_iter_next(&it2, &e2) && lmp_gguf_value_str(&e2, &s) == 0 &&
                              lmp_gguf_str_eq(s, "abc"), "inner string");
                        CHECK(lmp_gguf_iter_next(&it, &e) && e.elem_type == LMP_GGUF_U16 && e.n == 1, "inner 1");
                        lmp_gguf_iter_init(&it2, &e);
                        CHECK(lmp_gguf_iter_next(&it2, &e2) && lmp_gguf_value_u64(&e2, &u64) == 0 && u64 == 777,
                              "inner u16");
                        CHECK(!lmp_gguf_iter_next(&it, &e), "only two");
                        CHECK(values_equal(&kv->value, &nv), "nested bytes equal");
                }
                lmp_gguf_free(h);
        }
        lmp_gguf_free(g);
        unlink(path);
        unlink(path2);
}

static void test_roundtrip_fixture(const char *fixtures, const char *tmp, const char *name) {
        char in[4096], out[4096];
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };

        snprintf(in, sizeof(in), "%s/%s", fixtures, name);
        snprintf(out, sizeof(out), "%s/roundtrip.gguf", tmp);
        int r = lmp_gguf_open(in, &g, &err);
        CHECK(r == 0, "%s", err.msg);
        if (r < 0)
                return;
        for (int streaming = 0; streaming < 2; streaming++) {
                if (copy_through_writer(g, out, (uint32_t)g->alignment, streaming) == 0)
                        check_same(g, out);
                unlink(out);
        }
        lmp_gguf_free(g);
}

/* ------------------------------------------------------------- hostile */

static long n_errors_seen;

/* Parses buf and requires: success, or a negative code with a message. */
static int parse_expect_sane(const uint8_t *buf, size_t size, const char *what) {
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };
        int r = lmp_gguf_open_mem(buf, size, &g, &err);
        if (r < 0) {
                n_errors_seen++;
                CHECK(err.code == r && err.msg[0] != '\0', "%s: error %d without a message", what, r);
                return r;
        }
        /* Walk everything to let the sanitizers see any bad pointer. */
        volatile uint64_t sink = 0;
        for (uint64_t i = 0; i < g->n_kv; i++) {
                if (g->kv[i].value.type == LMP_GGUF_ARRAY) {
                        struct lmp_gguf_iter it;
                        struct lmp_gguf_value e;
                        lmp_gguf_iter_init(&it, &g->kv[i].value);
                        while (lmp_gguf_iter_next(&it, &e))
                                sink += e.size ? e.data[e.size - 1] : 0;
                }
        }
        for (uint64_t i = 0; i < g->n_tensors; i++)
                sink += ((const uint8_t *)g->tensors[i].data)[g->tensors[i].size - 1];
        (void)sink;
        lmp_gguf_free(g);
        return 0;
}

static void test_truncation(const uint8_t *buf, size_t size, uint64_t header_end) {
        long before = n_errors_seen;
        /* Every prefix up to the end of the tensor infos, then a sample of
         * prefixes inside the data section: all must be errors, since a
         * complete file's tensors reach its end. */
        for (size_t n = 0; n <= header_end + 64 && n < size; n++) {
                uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
                memcpy(copy, buf, n);
                int r = parse_expect_sane(copy, n, "truncated");
                CHECK(r < 0, "truncated at %zu parsed", n);
                free(copy);
        }
        for (size_t n = header_end; n < size; n += 997)
                CHECK(parse_expect_sane(buf, n, "truncated data") < 0, "truncated at %zu parsed", n);
        printf("truncation: %ld prefixes, all refused\n", n_errors_seen - before);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void test_bit_flips(uint8_t *buf, size_t size, uint64_t header_end, int n) {
        long errs = n_errors_seen;
        for (int i = 0; i < n; i++) {
                /* 1 to 4 flips in the header and metadata, where they matter. */
                size_t pos[4];
                uint8_t bit[4];
                int k = 1 + (int)(rnd() % 4);
                for (int j = 0; j < k; j++) {
                        pos[j] = (size_t)(rnd() % header_end);
                        bit[j] = (uint8_t)(1u << (rnd() % 8));
                        buf[pos[j]] ^= bit[j];
                }
                parse_expect_sane(buf, size, "bit flip");
                for (int j = k - 1; j >= 0; j--)
                        buf[pos[j]] ^= bit[j];
        }
        printf("bit flips: %d mutations, %ld refused, the rest parsed cleanly\n", n, n_errors_seen - errs);
}

/* A tiny hand-made file to forge fields in. */
struct forge {
        uint8_t b[1024];
        size_t n;
};

static void f_put(struct forge *f, const void *p, size_t n) {
        memcpy(f->b + f->n, p, n);
        f->n += n;
}
static void f_u32(struct forge *f, uint32_t v) { f_put(f, &v, 4); }
static void f_u64(struct forge *f, uint64_t v) { f_put(f, &v, 8); }
static void f_str(struct forge *f, const char *s) {
        f_u64(f, strlen(s));
        f_put(f, s, strlen(s));
}

enum { F_BASE, F_NTENS, F_NKV, F_KEYLEN, F_ARRN, F_NDIMS, F_DIM0, F_TYPE, F_REMOVED_TYPE, F_MISALIGNED,
       F_OVERLAP, F_OUTSIDE, F_DUPKEY, F_DUPNAME, F_ALIGN3, F_ALIGNTYPE, F_BOOL, F_DEPTH, F_V1, F_BE, F_MAGIC,
       F_VTYPE, F_ROWLEN, F_HUGEDIM, F_COUNT };

static void forge(int which, struct forge *f) {
        f->n = 0;
        f_u32(f, which == F_MAGIC ? 0x46554746 : LMP_GGUF_MAGIC);
        f_u32(f, which == F_V1 ? 1 : which == F_BE ? 0x03000000 : 3);
        f_u64(f, which == F_NTENS ? (1ull << 62) : 2);                  /* tensors */
        f_u64(f, which == F_NKV ? UINT64_MAX : 4);                      /* kvs */
        /* kv 0: general.alignment */
        f_str(f, "general.alignment");
        f_u32(f, which == F_ALIGNTYPE ? LMP_GGUF_U64 : LMP_GGUF_U32);
        if (which == F_ALIGNTYPE)
                f_u64(f, 32);
        else
                f_u32(f, which == F_ALIGN3 ? 3 : 32);
        /* kv 1: a string array */
        if (which == F_KEYLEN) {
                f_u64(f, 1ull << 60);
        } else {
                f_str(f, which == F_DUPKEY ? "general.alignment" : "tokenizer.ggml.tokens");
        }
        f_u32(f, LMP_GGUF_ARRAY);
        f_u32(f, LMP_GGUF_STRING);
        f_u64(f, which == F_ARRN ? (1ull << 40) : 2);
        f_str(f, "a");
        f_str(f, "bc");
        /* kv 2: bool */
        f_str(f, "t.bool");
        f_u32(f, which == F_VTYPE ? 13 : LMP_GGUF_BOOL);
        uint8_t bv = which == F_BOOL ? 2 : 1;
        f_put(f, &bv, 1);
        /* kv 3: nested array, depth 2 (or 9 when forging depth) */
        f_str(f, "t.nested");
        int depth = which == F_DEPTH ? 9 : 2;
        f_u32(f, LMP_GGUF_ARRAY);
        for (int d = 1; d < depth; d++) {
                f_u32(f, LMP_GGUF_ARRAY);
                f_u64(f, 1);
        }
        f_u32(f, LMP_GGUF_U8);
        f_u64(f, 1);
        uint8_t one = 1;
        f_put(f, &one, 1);
        /* tensor 0: f32 [8, 2] at 0; tensor 1: q8_0 [32] at 64 */
        f_str(f, "t.a");
        f_u32(f, which == F_NDIMS ? 5 : 2);
        f_u64(f, which == F_DIM0 ? 0 : which == F_HUGEDIM ? (1ull << 62) : 8);
        f_u64(f, which == F_HUGEDIM ? (1ull << 62) : 2);
        if (which == F_NDIMS) {
                f_u64(f, 1);
                f_u64(f, 1);
                f_u64(f, 1);
        }
        f_u32(f, which == F_TYPE ? 1234 : which == F_REMOVED_TYPE ? 4 : LMP_TYPE_F32);
        f_u64(f, which == F_MISALIGNED ? 4 : 0);
        f_str(f, which == F_DUPNAME ? "t.a" : "t.b");
        f_u32(f, 1);
        f_u64(f, which == F_ROWLEN ? 33 : 32);
        f_u32(f, LMP_TYPE_Q8_0);
        f_u64(f, which == F_OVERLAP ? 32 : which == F_OUTSIDE ? 4096 : 64);
        /* data: align to 32, then 64 + 34 bytes */
        while (f->n % 32)
                f->b[f->n++] = 0;
        memset(f->b + f->n, 0x11, 64 + 34);
        f->n += 64 + 34;
}

static void test_forged(void) {
        static const struct {
                int which;
                int code;
                const char *needle;
        } cases[] = {
                { F_NTENS, -EBADMSG, "tensor count" },
                { F_NKV, -EBADMSG, "metadata count" },
                { F_KEYLEN, -EBADMSG, "key length" },
                { F_ARRN, -EBADMSG, "cannot fit" },
                { F_NDIMS, -EBADMSG, "dimensions" },
                { F_DIM0, -EBADMSG, "dimension 0 is 0" },
                { F_HUGEDIM, -EOVERFLOW, "overflows" },
                { F_TYPE, -EBADMSG, "unknown tensor type id 1234" },
                { F_REMOVED_TYPE, -EBADMSG, "unknown tensor type id 4" },
                { F_MISALIGNED, -EBADMSG, "not a multiple of the alignment" },
                { F_OVERLAP, -EBADMSG, "overlaps" },
                { F_OUTSIDE, -EBADMSG, "outside the file" },
                { F_DUPKEY, -EBADMSG, "duplicate key 'general.alignment'" },
                { F_DUPNAME, -EBADMSG, "duplicate tensor name 't.a'" },
                { F_ALIGN3, -EBADMSG, "power of two" },
                { F_ALIGNTYPE, -EBADMSG, "not u32" },
                { F_BOOL, -EBADMSG, "bool value 2" },
                { F_DEPTH, -EBADMSG, "nested deeper" },
                { F_V1, -ENOTSUP, "version 1" },
                { F_BE, -ENOTSUP, "big-endian" },
                { F_MAGIC, -EBADMSG, "not a GGUF file" },
                { F_VTYPE, -EBADMSG, "unknown value type 13" },
                { F_ROWLEN, -EBADMSG, "block size" },
        };
        struct forge f;
        struct lmp_gguf *g;
        struct lmp_error err;

        forge(F_BASE, &f);
        int r = lmp_gguf_open_mem(f.b, f.n, &g, &err);
        CHECK(r == 0, "the unforged file parses: %s", err.msg);
        if (r == 0)
                lmp_gguf_free(g);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                memset(&err, 0, sizeof(err));
                forge(cases[i].which, &f);
                r = lmp_gguf_open_mem(f.b, f.n, &g, &err);
                CHECK(r == cases[i].code && strstr(err.msg, cases[i].needle) && strstr(err.msg, "offset"),
                      "forged case %d: got %d '%s', want %d '%s'", cases[i].which, r, err.msg, cases[i].code,
                      cases[i].needle);
                if (r == 0)
                        lmp_gguf_free(g);
        }
        printf("forged: %zu cases refused with their messages\n", sizeof(cases) / sizeof(cases[0]));
}

int main(void) {
        const char *fixtures = getenv("LMPOOL_FIXTURES");
        char tmp[] = "/tmp/lmpool-test-gguf-XXXXXX";
        char models[4096], path[8192];
        struct stat st;

        if (!mkdtemp(tmp)) {
                perror("mkdtemp");
                return 1;
        }
        test_writer_every_type(tmp);
        test_forged();
        if (!fixtures || stat(fixtures, &st) < 0) {
                rmdir(tmp);
                printf("fixtures not found (LMPOOL_FIXTURES): skipped the fixture tests\n");
                return failures ? 1 : 77;
        }
        test_fixtures(fixtures);
        snprintf(models, sizeof(models), "%s/models", fixtures);
        test_roundtrip_fixture(models, tmp, "llama-q4_k_m.gguf");
        test_roundtrip_fixture(models, tmp, "qwen2-f16.gguf");
        snprintf(path, sizeof(path), "%s/tokenizer", fixtures);
        test_roundtrip_fixture(path, tmp, "qwen2.gguf");

        snprintf(path, sizeof(path), "%s/llama-q4_k_m.gguf", models);
        size_t size;
        char *text = NULL;
        lmp_read_file(path, &text, &size);
        uint8_t *buf = (uint8_t *)text;
        CHECK(buf, "read %s", path);
        if (buf) {
                struct lmp_gguf *g;
                struct lmp_error err;
                uint64_t header_end = 0;
                if (lmp_gguf_open_mem(buf, size, &g, &err) == 0) {
                        header_end = g->data_offset;
                        lmp_gguf_free(g);
                }
                CHECK(header_end > 0, "header end");
                test_truncation(buf, size, header_end);
                test_bit_flips(buf, size, header_end, 20000);
                free(buf);
        }
        rmdir(tmp);
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("all gguf checks passed\n");
        return 0;
}

/* Tests of the random model generator on small shapes: the file opens with
 * the GGUF reader, has the shape's tensors, dimensions and hyperparameters,
 * follows the same tensor type mix as llama.cpp's fixture files of the
 * same geometry, carries a usable vocabulary and chat template (or the one
 * copied with --vocab), and is reproducible: the same seed gives the same
 * bytes whatever the thread count, another seed gives other weights. The
 * real shapes are checked by planning only (no multi-GB files): their
 * tensor data must have the sizes of the real downloads. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/readfile.h"
#include "gguf/gguf.h"
#include "tools/mkmodel.h"
#include "../check.h"

static int make(const char *shape, const char *type, uint64_t seed, int threads, const char *vocab,
                const char *out, struct lmp_error *err) {
        struct lmp_mkmodel_opts o = {
                .shape = lmp_shape_find(shape), .ft = lmp_ftype_find(type),
                .seed = seed, .nthreads = threads, .vocab_path = vocab,
        };
        if (!o.shape || !o.ft)
                return -EINVAL;
        return lmp_mkmodel(out, &o, NULL, err);
}

static void test_reproducible(const char *dir) {
        char a[4096], b[4096], c[4096];
        struct lmp_error err = { 0 };
        snprintf(a, sizeof(a), "%s/mk-a.gguf", dir);
        snprintf(b, sizeof(b), "%s/mk-b.gguf", dir);
        snprintf(c, sizeof(c), "%s/mk-c.gguf", dir);
        CHECK(make("test-llama", "q4_k_m", 7, 1, NULL, a, &err) == 0, "%s", err.msg);
        CHECK(make("test-llama", "q4_k_m", 7, 3, NULL, b, &err) == 0, "%s", err.msg);
        CHECK(make("test-llama", "q4_k_m", 8, 2, NULL, c, &err) == 0, "%s", err.msg);
        size_t na, nb, nc;
        char *pa = NULL, *pb = NULL, *pc = NULL;
        lmp_read_file(a, &pa, &na);
        lmp_read_file(b, &pb, &nb);
        lmp_read_file(c, &pc, &nc);
        CHECK(pa && pb && pc, "outputs readable");
        if (pa && pb && pc) {
                CHECK(na == nb && memcmp(pa, pb, na) == 0, "same seed, different thread counts: same bytes");
                CHECK(na == nc, "another seed: same size");
                CHECK(memcmp(pa, pc, na) != 0, "another seed: other bytes");
        }
        free(pa);
        free(pb);
        free(pc);
        unlink(a);
        unlink(b);
        unlink(c);
}

/* Every tensor of the fixture exists with the same type and row length
 * (the vocabulary dimension may differ). */
static void compare_with_fixture(const struct lmp_gguf *g, const char *fixture, uint32_t n_vocab) {
        struct lmp_gguf *ref = NULL;
        struct lmp_error err = { 0 };
        if (lmp_gguf_open(fixture, &ref, &err) < 0) {
                CHECK(0, "%s", err.msg);
                return;
        }
        CHECK(g->n_tensors == ref->n_tensors, "%s: %llu tensors, fixture %llu", fixture,
              (unsigned long long)g->n_tensors, (unsigned long long)ref->n_tensors);
        for (uint64_t i = 0; i < ref->n_tensors; i++) {
                const struct lmp_gguf_tensor *b = &ref->tensors[i];
                char name[256];
                snprintf(name, sizeof(name), "%.*s", (int)b->name.len, b->name.ptr);
                const struct lmp_gguf_tensor *a = lmp_gguf_find_tensor(g, name);
                if (!a) {
                        CHECK(0, "tensor %s missing", name);
                        continue;
                }
                CHECK(a->type == b->type, "tensor %s: %s, fixture %s", name, lmp_type_name(a->type),
                      lmp_type_name(b->type));
                CHECK(a->n_dims == b->n_dims && a->ne[0] == b->ne[0], "tensor %s: row length", name);
                bool vocab_dim = strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0;
                CHECK(a->ne[1] == (vocab_dim ? n_vocab : b->ne[1]), "tensor %s: rows %llu", name,
                      (unsigned long long)a->ne[1]);
        }
        lmp_gguf_free(ref);
}

static bool has_token(const struct lmp_gguf *g, uint32_t id, const char *piece) {
        struct lmp_gguf_value arr;
        if (lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &arr) < 0 || id >= arr.n)
                return false;
        struct lmp_gguf_iter it;
        struct lmp_gguf_value v;
        struct lmp_gguf_str s;
        lmp_gguf_iter_init(&it, &arr);
        for (uint32_t i = 0; lmp_gguf_iter_next(&it, &v); i++)
                if (i == id)
                        return lmp_gguf_value_str(&v, &s) == 0 && lmp_gguf_str_eq(s, piece);
        return false;
}

static void test_small_shapes(const char *dir, const char *fix) {
        char path[4096], fx[4096];
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        uint32_t u;

        /* test-llama: the llama fixture's geometry with a 1024-piece vocabulary. */
        snprintf(path, sizeof(path), "%s/mk-llama.gguf", dir);
        CHECK(make("test-llama", "q4_k_m", 1, 2, NULL, path, &err) == 0, "%s", err.msg);
        if (lmp_gguf_open(path, &g, &err) == 0) {
                struct lmp_gguf_str s;
                CHECK(lmp_gguf_get_str(g, "general.architecture", &s) == 0 && lmp_gguf_str_eq(s, "llama"), "arch");
                CHECK(lmp_gguf_get_u32(g, "llama.embedding_length", &u) == 0 && u == 256, "n_embd");
                CHECK(lmp_gguf_get_u32(g, "llama.block_count", &u) == 0 && u == 2, "n_layer");
                CHECK(lmp_gguf_get_u32(g, "llama.attention.head_count_kv", &u) == 0 && u == 2, "n_head_kv");
                CHECK(lmp_gguf_get_u32(g, "general.file_type", &u) == 0 && u == 15, "file type");
                CHECK(lmp_gguf_get_str(g, "tokenizer.chat_template", &s) == 0 && s.len > 0, "chat template");
                CHECK(lmp_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) == 0 && u == 1, "bos");
                CHECK(has_token(g, 1, "<s>") && has_token(g, 2, "</s>") && has_token(g, 3, "<0x00>") &&
                      has_token(g, 258, "<0xFF>"), "special and byte pieces");
                struct lmp_gguf_value arr;
                CHECK(lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &arr) == 0 && arr.n == 1024,
                      "1024 tokens");
                /* Norm weights are spread around 1. */
                const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "blk.0.attn_norm.weight");
                CHECK(t && t->type == LMP_TYPE_F32 && t->ne[0] == 256, "norm weights");
                if (t) {
                        double m = 0, v = 0;
                        for (int i = 0; i < 256; i++)
                                m += ((const float *)t->data)[i] / 256.;
                        for (int i = 0; i < 256; i++)
                                v += (((const float *)t->data)[i] - m) * (((const float *)t->data)[i] - m) / 256.;
                        CHECK(fabs(m - 1) < 0.03 && sqrt(v) > 0.07 && sqrt(v) < 0.13, "norm weights %g +- %g", m,
                              sqrt(v));
                }
                if (fix) {
                        snprintf(fx, sizeof(fx), "%s/models/llama-q4_k_m.gguf", fix);
                        compare_with_fixture(g, fx, 1024);
                }
                lmp_gguf_free(g);
        } else {
                CHECK(0, "%s", err.msg);
        }
        unlink(path);

        /* test-qwen2: tied output, q/k/v biases, ChatML specials at the end. */
        snprintf(path, sizeof(path), "%s/mk-qwen2.gguf", dir);
        CHECK(make("test-qwen2", "q4_k_m", 1, 2, NULL, path, &err) == 0, "%s", err.msg);
        if (lmp_gguf_open(path, &g, &err) == 0) {
                CHECK(!lmp_gguf_find_tensor(g, "output.weight"), "tied output");
                CHECK(lmp_gguf_find_tensor(g, "blk.1.attn_k.bias") != NULL, "k bias");
                CHECK(has_token(g, 2045, "<|endoftext|>") && has_token(g, 2046, "<|im_start|>") &&
                      has_token(g, 2047, "<|im_end|>"), "ChatML specials");
                CHECK(lmp_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u) == 0 && u == 2047, "eos");
                if (fix) {
                        snprintf(fx, sizeof(fx), "%s/models/qwen2-q4_k_m.gguf", fix);
                        compare_with_fixture(g, fx, 2048);
                }
                lmp_gguf_free(g);
        } else {
                CHECK(0, "%s", err.msg);
        }
        unlink(path);

        /* test-llama3: rope_freqs.weight with the Llama 3 factors, q8_0. */
        snprintf(path, sizeof(path), "%s/mk-llama3.gguf", dir);
        CHECK(make("test-llama3", "q8_0", 1, 2, NULL, path, &err) == 0, "%s", err.msg);
        if (lmp_gguf_open(path, &g, &err) == 0) {
                const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "rope_freqs.weight");
                CHECK(t && t->type == LMP_TYPE_F32 && t->ne[0] == 32, "rope_freqs");
                if (t) {
                        const float *f = t->data;
                        CHECK(f[0] == 1.f && f[31] == 32.f, "rope factors %g..%g", f[0], f[31]);
                }
                t = lmp_gguf_find_tensor(g, "token_embd.weight");
                CHECK(t && t->type == LMP_TYPE_Q8_0, "tied embedding in q8_0 stays q8_0");
                CHECK(has_token(g, 768, "<|begin_of_text|>") && has_token(g, 777, "<|eot_id|>"), "Llama 3 specials");
                lmp_gguf_free(g);
        } else {
                CHECK(0, "%s", err.msg);
        }
        unlink(path);

        /* A file type whose rows do not fit its blocks everywhere: f16 and q2_k. */
        snprintf(path, sizeof(path), "%s/mk-f16.gguf", dir);
        CHECK(make("test-qwen2", "f16", 3, 2, NULL, path, &err) == 0, "%s", err.msg);
        if (lmp_gguf_open(path, &g, &err) == 0) {
                const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "blk.0.ffn_down.weight");
                CHECK(t && t->type == LMP_TYPE_F16, "f16 matrices");
                lmp_gguf_free(g);
        }
        unlink(path);
}

static void test_vocab_copy(const char *dir, const char *fix) {
        char path[4096], voc[4096];
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL, *v = NULL;

        snprintf(voc, sizeof(voc), "%s/tokenizer/llama-spm.gguf", fix);
        snprintf(path, sizeof(path), "%s/mk-spm.gguf", dir);
        CHECK(make("test-spm32k", "q4_0", 1, 2, voc, path, &err) == 0, "%s", err.msg);
        if (lmp_gguf_open(path, &g, &err) == 0 && lmp_gguf_open(voc, &v, &err) == 0) {
                int copied = 0, total = 0;
                for (uint64_t i = 0; i < v->n_kv; i++) {
                        const struct lmp_gguf_kv *kv = &v->kv[i];
                        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0)
                                continue;
                        total++;
                        char key[256];
                        snprintf(key, sizeof(key), "%.*s", (int)kv->key.len, kv->key.ptr);
                        const struct lmp_gguf_kv *o = lmp_gguf_find(g, key);
                        copied += o && o->value.type == kv->value.type && o->value.size == kv->value.size &&
                                  memcmp(o->value.data, kv->value.data, kv->value.size) == 0;
                }
                CHECK(total > 5 && copied == total, "%d of %d tokenizer keys copied", copied, total);
                const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "token_embd.weight");
                CHECK(t && t->ne[1] == 32000 && t->type == LMP_TYPE_Q4_0, "embedding rows");
        } else {
                CHECK(0, "%s", err.msg);
        }
        lmp_gguf_free(g);
        lmp_gguf_free(v);
        unlink(path);

        /* A vocabulary of another size than the shape's is refused, naming both. */
        int r = make("test-llama", "q8_0", 1, 1, voc, path, &err);
        CHECK(r == -EINVAL && strstr(err.msg, "32000") && strstr(err.msg, "test-llama"), "too big: %s", err.msg);
        CHECK(access(path, F_OK) != 0, "nothing written");
}

/* The real shapes, planned only: tensor data as in the real downloads. */
static void test_real_sizes(void) {
        static const struct { const char *shape, *type; double mib; } want[] = {
                { "tinyllama-1.1b", "q4_k_m", 636.2 },
                { "qwen2.5-0.5b", "q4_k_m", 373.7 },
                { "qwen2.5-0.5b", "q8_0", 500.8 },
                { "qwen2.5-3b", "q4_k_m", 1.79 * 1024 },
                { "llama-3.2-1b", "q4_k_m", 762.8 },
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                struct lmp_mkmodel_opts o = {
                        .shape = lmp_shape_find(want[i].shape), .ft = lmp_ftype_find(want[i].type), .dry_run = true,
                };
                struct lmp_mkmodel_result res = { 0 };
                struct lmp_error err = { 0 };
                CHECK(lmp_mkmodel("unused.gguf", &o, &res, &err) == 0, "%s", err.msg);
                double mib = (double)res.tensor_bytes / (1 << 20);
                double tol = want[i].mib > 1024 ? 0.005 * 1024 : 1.0;
                CHECK(fabs(mib - want[i].mib) <= tol, "%s %s: %.1f MiB of tensors, want %.1f", want[i].shape,
                      want[i].type, mib, want[i].mib);
                CHECK(res.file_size > res.tensor_bytes && res.file_size - res.tensor_bytes < (4u << 20),
                      "%s: metadata %llu bytes", want[i].shape,
                      (unsigned long long)(res.file_size - res.tensor_bytes));
                printf("%-15s %-7s tensor data %8.1f MiB, file %8.1f MiB\n", want[i].shape, want[i].type, mib,
                       (double)res.file_size / (1 << 20));
        }
        CHECK(access("unused.gguf", F_OK) != 0 && access("unused.gguf.tmp", F_OK) != 0, "dry run writes nothing");

        /* The newer families: parameters as their model cards count them,
         * within 2% of the rounded figure (Gemma 3 4B: the 4.3B less its
         * 0.42B vision tower), counted from q8_0 sizes (34 bytes per 32
         * values; the f32 norms are a negligible part), since an f16
         * embedding of Gemma 3 4B is past the generator's tensor limit. */
        static const struct { const char *shape; double params; } cards[] = {
                { "qwen3-0.6b", 0.6e9 }, { "qwen3-1.7b", 1.7e9 }, { "qwen3-4b", 4.0e9 },
                { "phi-3.5-mini", 3.8e9 }, { "gemma-3-1b", 1.0e9 }, { "gemma-3-4b", 3.88e9 },
        };
        for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) {
                struct lmp_mkmodel_opts o = {
                        .shape = lmp_shape_find(cards[i].shape), .ft = lmp_ftype_find("q8_0"), .dry_run = true,
                };
                struct lmp_mkmodel_result res = { 0 };
                struct lmp_error err = { 0 };
                CHECK(o.shape && lmp_mkmodel("unused.gguf", &o, &res, &err) == 0, "%s: %s", cards[i].shape,
                      err.msg);
                double params = (double)res.tensor_bytes * 32 / 34;
                CHECK(fabs(params / cards[i].params - 1) < 0.02, "%s: %.3fB parameters, the card says %.2fB",
                      cards[i].shape, params / 1e9, cards[i].params / 1e9);
                printf("%-15s %.3fB parameters\n", cards[i].shape, params / 1e9);
        }

        /* f32 Qwen2.5-3B would hold a 1.2 GiB embedding: refused up front. */
        struct lmp_mkmodel_opts o = {
                .shape = lmp_shape_find("qwen2.5-3b"), .ft = lmp_ftype_find("f32"), .dry_run = true,
        };
        struct lmp_error err = { 0 };
        CHECK(lmp_mkmodel("unused.gguf", &o, NULL, &err) == -EFBIG && strstr(err.msg, "f16"), "%s", err.msg);
        o.ft = lmp_ftype_find("f16");
        CHECK(lmp_mkmodel("unused.gguf", &o, NULL, &err) == 0, "f16 Qwen2.5-3B fits: %s", err.msg);
}

/* The Qwen2-VL pair: the small shapes against the vision fixtures (every
 * tensor with the fixture's type and dimensions, the keys the loaders
 * read, the vision tokens at Qwen2-VL's ids), the 2B shapes by planning. */
static void test_vision_shapes(const char *dir, const char *fix) {
        char lm[4096], mm[4096], fx[4096];
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_gguf_str s;
        struct lmp_gguf_value arr;
        uint32_t u;
        snprintf(lm, sizeof(lm), "%s/qwen2vl.gguf", dir);
        snprintf(mm, sizeof(mm), "%s/mmproj.gguf", dir);
        CHECK(make("test-qwen2vl-mmproj", "f16", 5, 2, NULL, mm, &err) == 0, "%s", err.msg);
        CHECK(make("test-qwen2vl", "f16", 5, 2, NULL, lm, &err) == 0, "%s", err.msg);

        if (lmp_gguf_open(mm, &g, &err) == 0) {
                CHECK(lmp_gguf_get_str(g, "general.architecture", &s) == 0 && lmp_gguf_str_eq(s, "clip"), "clip");
                CHECK(lmp_gguf_get_str(g, "clip.projector_type", &s) == 0 && lmp_gguf_str_eq(s, "qwen2vl_merger"),
                      "projector");
                CHECK(lmp_gguf_get_u32(g, "clip.vision.block_count", &u) == 0 && u == 2, "blocks");
                CHECK(lmp_gguf_get_u32(g, "clip.vision.projection_dim", &u) == 0 && u == 64, "projection_dim");
                CHECK(lmp_gguf_get_arr(g, "clip.vision.image_mean", LMP_GGUF_F32, &arr) == 0 && arr.n == 3, "mean");
                CHECK(!lmp_gguf_find_tensor(g, "token_embd.weight") &&
                      lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &arr) < 0, "no vocabulary");
                struct lmp_gguf *ref = NULL;
                snprintf(fx, sizeof(fx), "%s/vision/mmproj-qwen2vl-f16.gguf", fix ? fix : "");
                if (fix && lmp_gguf_open(fx, &ref, &err) == 0) {
                        CHECK(g->n_tensors == ref->n_tensors, "mmproj: %llu tensors, fixture %llu",
                              (unsigned long long)g->n_tensors, (unsigned long long)ref->n_tensors);
                        for (uint64_t i = 0; i < ref->n_tensors && i < g->n_tensors; i++) {
                                const struct lmp_gguf_tensor *a = &g->tensors[i], *b = &ref->tensors[i];
                                CHECK(a->name.len == b->name.len && memcmp(a->name.ptr, b->name.ptr, a->name.len) == 0,
                                      "tensor %llu: %.*s, fixture %.*s", (unsigned long long)i, (int)a->name.len,
                                      a->name.ptr, (int)b->name.len, b->name.ptr);
                                CHECK(a->type == b->type && a->n_dims == b->n_dims &&
                                      memcmp(a->ne, b->ne, sizeof(a->ne)) == 0, "tensor %.*s: type or shape",
                                      (int)b->name.len, b->name.ptr);
                        }
                        lmp_gguf_free(ref);
                }
                lmp_gguf_free(g);
                g = NULL;
        } else {
                CHECK(0, "%s", err.msg);
        }

        if (lmp_gguf_open(lm, &g, &err) == 0) {
                int32_t sect[4] = { 0 };
                CHECK(lmp_gguf_get_arr(g, "qwen2vl.rope.dimension_sections", LMP_GGUF_I32, &arr) == 0 &&
                      arr.n == 4, "M-RoPE sections");
                if (arr.n == 4)
                        memcpy(sect, arr.data, sizeof(sect));
                CHECK(sect[0] == 2 && sect[1] == 3 && sect[2] == 3 && sect[3] == 0, "sections %d %d %d %d",
                      sect[0], sect[1], sect[2], sect[3]);
                CHECK(has_token(g, 151652, "<|vision_start|>") && has_token(g, 151653, "<|vision_end|>") &&
                      has_token(g, 151655, "<|image_pad|>"), "vision tokens at Qwen2-VL's ids");
                snprintf(fx, sizeof(fx), "%s/vision/qwen2vl-f16.gguf", fix ? fix : "");
                if (fix)
                        compare_with_fixture(g, fx, 151936);
                lmp_gguf_free(g);
        } else {
                CHECK(0, "%s", err.msg);
        }
        unlink(lm);
        unlink(mm);

        /* Qwen2-VL 2B: the f16 mmproj holds 32 blocks of 12 E^2 + 10 E
         * values (E = 1280), the kernels, the post-LN and the merger; the
         * language model about 1.54B parameters (Qwen2-1.5B's). */
        const double E = 1280, P = 14, M = 4 * E;
        const double mm_bytes = 32 * (12 * E * E * 2 + (9 * E + 4 * E) * 4) + 2 * (3 * P * P * E * 2) +
                                2 * E * 4 + M * M * 2 + M * 4 + M * 1536 * 2 + 1536 * 4;
        struct lmp_mkmodel_opts o = {
                .shape = lmp_shape_find("qwen2-vl-2b-mmproj"), .ft = lmp_ftype_find("f16"), .dry_run = true,
        };
        struct lmp_mkmodel_result res = { 0 };
        CHECK(o.shape && lmp_mkmodel("unused.gguf", &o, &res, &err) == 0, "%s", err.msg);
        CHECK((double)res.tensor_bytes == mm_bytes, "mmproj: %llu bytes of tensors, want %.0f",
              (unsigned long long)res.tensor_bytes, mm_bytes);
        o.shape = lmp_shape_find("qwen2-vl-2b");
        o.ft = lmp_ftype_find("q8_0");
        CHECK(o.shape && lmp_mkmodel("unused.gguf", &o, &res, &err) == 0, "%s", err.msg);
        double params = (double)res.tensor_bytes * 32 / 34;
        CHECK(fabs(params / 1.54e9 - 1) < 0.02, "qwen2-vl-2b: %.3fB parameters", params / 1e9);
        printf("qwen2-vl-2b     %.3fB parameters; mmproj f16 %.1f MiB\n", params / 1e9, mm_bytes / (1 << 20));
}

int main(void) {
        char dir[] = "/tmp/lmpool-mkmodel-XXXXXX";
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        const char *fix = getenv("LMPOOL_FIXTURES");
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/models/llama-q4_k_m.gguf", fix ? fix : "");
        if (!fix || access(probe, R_OK) != 0) {
                printf("fixtures not found (LMPOOL_FIXTURES): fixture comparisons left out\n");
                fix = NULL;
        }
        test_reproducible(dir);
        test_small_shapes(dir, fix);
        if (fix)
                test_vocab_copy(dir, fix);
        test_real_sizes();
        test_vision_shapes(dir, fix);
        rmdir(dir);
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        return failures ? 1 : 0;
}

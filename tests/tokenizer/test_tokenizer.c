/* Conformance of the tokenizers with llama.cpp on the fixture vocabularies
 * ($LMPOOL_FIXTURES/tokenizer/NAME.{gguf,json}): every case must give
 * exactly the reference ids, with and without added BOS/EOS; detokenizing
 * the ids must give the text back; streaming detokenization, token by
 * token, must equal whole detokenization and never split a UTF-8
 * character. Also: end-of-generation tokens, the -ENOSPC contract, and
 * input that is not valid UTF-8. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/readfile.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_internal.h" /* white-box: the chunked SentencePiece path */
#include "../check.h"

static void print_ids(const char *what, const int32_t *ids, size_t n) {
        fprintf(stderr, "  %s:", what);
        for (size_t i = 0; i < n && i < 40; i++)
                fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static bool utf8_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;
        while (i < n) {
                unsigned char c = p[i];
                size_t l = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                         : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
                if (!l || i + l > n)
                        return false;
                for (size_t k = 1; k < l; k++)
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                if ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] > 0x9f) ||
                    (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] > 0x8f))
                        return false;
                i += l;
        }
        return true;
}

/* Tokenizes into a fresh array (checking the -ENOSPC contract on the way). */
static int32_t *tokenize(const struct lmp_vocab *v, const char *text, size_t len, bool add_special,
                         size_t *ret_n) {
        size_t need = 0;
        int r = lmp_tokenize(v, text, len, add_special, true, NULL, 0, &need);
        CHECK(r == (need ? -ENOSPC : 0), "sizing call returned %d for %zu ids", r, need);
        int32_t *ids = malloc((need + 1) * sizeof(int32_t));
        size_t n = 0;
        if (need) {
                r = lmp_tokenize(v, text, len, add_special, true, ids, need - 1, &n);
                CHECK(r == -ENOSPC && n == need, "cap %zu: r=%d n=%zu, want -ENOSPC and %zu", need - 1, r, n, need);
        }
        r = lmp_tokenize(v, text, len, add_special, true, ids, need, &n);
        CHECK(r == 0 && n == need, "tokenize: r=%d n=%zu need=%zu", r, n, need);
        *ret_n = n;
        return ids;
}

static bool ids_equal(const cJSON *arr, const int32_t *ids, size_t n) {
        if ((size_t)cJSON_GetArraySize(arr) != n)
                return false;
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) {
                if (!cJSON_IsNumber(e) || (int32_t)e->valuedouble != ids[i++])
                        return false;
        }
        return true;
}

/* Whole and streaming detokenization of ids; returns the whole text. */
static char *detok_both(const struct lmp_vocab *v, const int32_t *ids, size_t n, unsigned flags, size_t *ret_len) {
        size_t need;
        int r = lmp_detokenize(v, ids, n, flags, NULL, 0, &need);
        CHECK(r == (need ? -ENOSPC : 0), "detokenize sizing: %d", r);
        char *whole = malloc(need + 1);
        r = lmp_detokenize(v, ids, n, flags, whole, need, ret_len);
        CHECK(r == 0 && *ret_len == need, "detokenize: %d", r);

        size_t cap = lmp_vocab_max_piece(v) + 4;
        char *chunk = malloc(cap);
        char *stream = malloc(need + 1);
        size_t got = 0;
        struct lmp_detok d;
        lmp_detok_init(&d, v, flags);
        bool whole_valid = utf8_valid(whole, need);
        for (size_t i = 0; i <= n; i++) {
                size_t k;
                r = i < n ? lmp_detok_push(&d, ids[i], chunk, cap, &k) : lmp_detok_flush(&d, chunk, cap, &k);
                CHECK(r == 0, "detok push/flush: %d", r);
                if (r < 0 || got + k > need) {
                        CHECK(0, "stream longer than whole text");
                        break;
                }
                if (whole_valid)
                        CHECK(utf8_valid(chunk, k), "token %zu: chunk splits a UTF-8 character", i);
                memcpy(stream + got, chunk, k);
                got += k;
        }
        CHECK(got == need && memcmp(stream, whole, need) == 0, "streaming (%zu bytes) != whole (%zu bytes)", got, need);
        free(chunk);
        free(stream);
        whole[need] = '\0';
        return whole;
}

static void run_cases(const char *dir, const char *name) {
        char path[4096];
        size_t jlen;
        struct lmp_gguf *g;
        struct lmp_vocab *v;
        struct lmp_error err = { 0 };

        snprintf(path, sizeof(path), "%s/tokenizer/%s.json", dir, name);
        char *json = NULL;
        lmp_read_file(path, &json, &jlen);
        CHECK(json, "cannot read %s", path);
        if (!json)
                return;
        cJSON *root = cJSON_Parse(json);
        free(json);
        CHECK(root, "%s: bad JSON", path);
        if (!root)
                return;

        snprintf(path, sizeof(path), "%s/tokenizer/%s.gguf", dir, name);
        int r = lmp_gguf_open(path, &g, &err);
        CHECK(r == 0, "%s: %s", path, err.msg);
        if (r < 0) {
                cJSON_Delete(root);
                return;
        }
        r = lmp_vocab_load(g, &v, &err);
        CHECK(r == 0, "%s: %s", path, err.msg);
        lmp_gguf_free(g);
        if (r < 0) {
                cJSON_Delete(root);
                return;
        }

        const cJSON *cases = cJSON_GetObjectItem(root, "cases");
        const cJSON *c;
        int n_cases = 0, before = failures;
        cJSON_ArrayForEach(c, cases) {
                const cJSON *jt = cJSON_GetObjectItem(c, "text");
                const cJSON *jids = cJSON_GetObjectItem(c, "ids");
                const cJSON *jsp = cJSON_GetObjectItem(c, "ids_add_special");
                if (!cJSON_IsString(jt) || !cJSON_IsArray(jids) || !cJSON_IsArray(jsp)) {
                        CHECK(0, "%s: malformed case %d", name, n_cases);
                        continue;
                }
                const char *text = jt->valuestring;
                size_t len = strlen(text), n, ns, tl;
                n_cases++;

                int32_t *ids = tokenize(v, text, len, false, &n);
                if (!ids_equal(jids, ids, n)) {
                        CHECK(0, "%s: ids differ for \"%.60s\"", name, text);
                        print_ids("got ", ids, n);
                }
                int32_t *sp = tokenize(v, text, len, true, &ns);
                if (!ids_equal(jsp, sp, ns)) {
                        CHECK(0, "%s: ids_add_special differ for \"%.60s\"", name, text);
                        print_ids("got ", sp, ns);
                }

                /* Round trip of the reference ids (dummy-prefix spaces
                 * dropped). WordPiece normalizes its input, so its ids
                 * alone are compared. */
                if (lmp_vocab_type(v) == LMP_VOCAB_WPM) {
                        free(detok_both(v, sp, ns, LMP_DETOK_SPECIAL, &tl));
                        free(ids);
                        free(sp);
                        continue;
                }
                int32_t *ref = malloc(((size_t)cJSON_GetArraySize(jids) + 1) * sizeof(int32_t));
                size_t nref = 0;
                const cJSON *e;
                cJSON_ArrayForEach(e, jids) ref[nref++] = (int32_t)e->valuedouble;
                char *back = detok_both(v, ref, nref, LMP_DETOK_SPECIAL | LMP_DETOK_STRIP_PREFIX, &tl);
                CHECK(tl == len && memcmp(back, text, len) == 0, "%s: round trip of \"%.60s\" gave \"%.60s\"",
                      name, text, back);
                free(back);
                /* Without special tokens and with BOS/EOS: streaming == whole still. */
                free(detok_both(v, sp, ns, 0, &tl));
                free(ref);
                free(ids);
                free(sp);
        }
        printf("%-10s %3d cases, %d failures\n", name, n_cases, failures - before);
        CHECK(n_cases > 0, "%s: no cases", name);
        cJSON_Delete(root);
        lmp_vocab_free(v);
}

static struct lmp_vocab *load(const char *dir, const char *name) {
        char path[4096];
        struct lmp_gguf *g;
        struct lmp_vocab *v = NULL;
        struct lmp_error err = { 0 };
        snprintf(path, sizeof(path), "%s/tokenizer/%s.gguf", dir, name);
        if (lmp_gguf_open(path, &g, &err) < 0) {
                CHECK(0, "%s: %s", path, err.msg);
                return NULL;
        }
        if (lmp_vocab_load(g, &v, &err) < 0)
                CHECK(0, "%s: %s", path, err.msg);
        lmp_gguf_free(g);
        return v;
}

static int32_t find(const struct lmp_vocab *v, const char *s) {
        return lmp_vocab_find(v, s, strlen(s));
}

static void test_eog(const char *dir) {
        static const struct {
                const char *vocab;
                const char *eog[3];
                const char *not_eog[2];
        } t[] = {
                { "llama-spm", { "</s>" }, { "<s>", "<unk>" } },
                { "phi-3", { "<|end|>", "<|endoftext|>" }, { "<|user|>", "<|assistant|>" } },
                { "llama-bpe", { "<|eot_id|>", "<|end_of_text|>" }, { "<|begin_of_text|>", "<|start_header_id|>" } },
                { "qwen2", { "<|im_end|>", "<|endoftext|>" }, { "<|im_start|>", "Hello" } },
                { "gpt-2", { "<|endoftext|>" }, { "Hello" } },
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct lmp_vocab *v = load(dir, t[i].vocab);
                if (!v)
                        continue;
                for (int k = 0; k < 3 && t[i].eog[k]; k++) {
                        int32_t id = find(v, t[i].eog[k]);
                        CHECK(id >= 0 && lmp_vocab_is_eog(v, id), "%s: %s should end generation", t[i].vocab, t[i].eog[k]);
                }
                for (int k = 0; k < 2 && t[i].not_eog[k]; k++) {
                        int32_t id = find(v, t[i].not_eog[k]);
                        CHECK(id >= 0 && !lmp_vocab_is_eog(v, id), "%s: %s should not end generation", t[i].vocab,
                              t[i].not_eog[k]);
                }
                CHECK(lmp_vocab_is_eog(v, lmp_vocab_eos(v)), "%s: EOS is not end of generation", t[i].vocab);
                CHECK(!lmp_vocab_is_eog(v, -1) && !lmp_vocab_is_eog(v, (int32_t)lmp_vocab_n_tokens(v)),
                      "%s: out-of-range ids", t[i].vocab);
                lmp_vocab_free(v);
        }
}

/* SentencePiece merging in chunks (cut at word starts) must give the same
 * ids as merging the whole text at once, also on damaged text. */
static void test_spm_chunks(const char *dir) {
        struct lmp_vocab *v = load(dir, "llama-spm");
        if (!v)
                return;
        CHECK(v->spm_chunks, "llama-spm: expected chunked merging to be allowed");
        char path[4096], *json;
        size_t jlen;
        snprintf(path, sizeof(path), "%s/tokenizer/llama-spm.json", dir);
        json = NULL;
        lmp_read_file(path, &json, &jlen);
        cJSON *root = json ? cJSON_Parse(json) : NULL;
        const cJSON *c;
        uint64_t rng = 12345;
        char buf[8192];
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
                const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
                for (int variant = 0; variant < 4; variant++) {
                        size_t n = 0;
                        for (const char *p = t; *p && n + 4 < sizeof(buf); p++) {
                                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                                if (variant && (rng >> 58) == 0)
                                        buf[n++] = (char)(0x80 + (rng >> 40) % 0x78); /* stray high byte */
                                buf[n++] = *p;
                        }
                        size_t n1, n2;
                        v->spm_chunks = true;
                        int32_t *a = tokenize(v, buf, n, true, &n1);
                        v->spm_chunks = false;
                        int32_t *b = tokenize(v, buf, n, true, &n2);
                        CHECK(n1 == n2 && memcmp(a, b, n1 * sizeof(int32_t)) == 0,
                              "chunked and whole merging differ on \"%.40s\" (variant %d)", t, variant);
                        free(a);
                        free(b);
                }
        }
        cJSON_Delete(root);
        free(json);
        lmp_vocab_free(v);
}

/* Phi-3's special tokens swallow the whitespace after them (llama.cpp sets
 * RSTRIP on them by model name); other vocabularies keep it. Control
 * tokens are only parsed when asked; user-defined ones always. */
static void test_special_attrs(const char *dir) {
        struct lmp_vocab *phi = load(dir, "phi-3"), *l3 = load(dir, "llama-bpe"), *qw = load(dir, "qwen2");
        size_t n, m;
        if (phi) {
                int32_t *a = tokenize(phi, "<|user|>\n  Hi", strlen("<|user|>\n  Hi"), false, &n);
                int32_t *b = tokenize(phi, "Hi", 2, false, &m);
                CHECK(n == m + 1 && a[0] == find(phi, "<|user|>") && memcmp(a + 1, b, m * sizeof(int32_t)) == 0,
                      "phi-3: whitespace after <|user|> is dropped");
                free(a);
                free(b);
                a = tokenize(phi, "<s>\nHi", strlen("<s>\nHi"), false, &n);
                CHECK(n >= 2 && a[0] == 1 && a[1] == find(phi, "\xe2\x96\x81"), "phi-3: <s> keeps what follows");
                free(a);
        }
        if (l3) {
                int32_t *a = tokenize(l3, "<|eot_id|>\n", strlen("<|eot_id|>\n"), false, &n);
                CHECK(n == 2 && a[0] == find(l3, "<|eot_id|>") && a[1] == find(l3, "\xc4\x8a"),
                      "llama-bpe: newline after <|eot_id|> is kept");
                free(a);
        }
        if (qw) {
                int32_t ids[64];
                CHECK(lmp_tokenize(qw, "<|im_end|>", 10, false, false, ids, 64, &n) == 0 && n > 1,
                      "qwen2: control token text is plain text without parse_special");
                CHECK(lmp_tokenize(qw, "[PAD151646]", 11, false, false, ids, 64, &n) == 0 && n == 1 &&
                      ids[0] == 151646, "qwen2: user-defined tokens are always parsed");
        }
        lmp_vocab_free(phi);
        lmp_vocab_free(l3);
        lmp_vocab_free(qw);
}

/* A character split over byte tokens comes out only when complete. */
static void test_stream_holdback(const char *dir) {
        struct lmp_vocab *v = load(dir, "llama-spm");
        if (!v)
                return;
        const char *llama = "\xf0\x9f\xa6\x99"; /* U+1F999, four byte-fallback tokens */
        size_t n;
        int32_t *ids = tokenize(v, llama, 4, false, &n);
        /* ▁ then the four bytes */
        CHECK(n == 5, "expected 5 ids, got %zu", n);
        struct lmp_detok d;
        char buf[64];
        size_t k;
        lmp_detok_init(&d, v, 0);
        for (size_t i = 0; i < n; i++) {
                CHECK(lmp_detok_push(&d, ids[i], buf, sizeof(buf), &k) == 0, "push");
                if (i == 0)
                        CHECK(k == 1 && buf[0] == ' ', "dummy prefix renders as a space");
                else if (i < 4)
                        CHECK(k == 0, "byte %zu of 4 must be held back, got %zu bytes", i, k);
                else
                        CHECK(k == 4 && memcmp(buf, llama, 4) == 0, "the complete character comes out at once");
        }
        /* A too-small buffer leaves the state alone. */
        lmp_detok_init(&d, v, LMP_DETOK_STRIP_PREFIX);
        for (size_t i = 0; i < 4; i++)
                lmp_detok_push(&d, ids[i], buf, sizeof(buf), &k);
        CHECK(lmp_detok_push(&d, ids[4], buf, 2, &k) == -ENOSPC && k == 4, "-ENOSPC with the size needed");
        CHECK(lmp_detok_push(&d, ids[4], buf, sizeof(buf), &k) == 0 && k == 4, "retry after -ENOSPC");
        /* An incomplete character at the end comes out on flush, as it is. */
        lmp_detok_init(&d, v, 0);
        lmp_detok_push(&d, ids[1], buf, sizeof(buf), &k);
        lmp_detok_push(&d, ids[2], buf, sizeof(buf), &k);
        CHECK(k == 0, "held back");
        CHECK(lmp_detok_flush(&d, buf, sizeof(buf), &k) == 0 && k == 2 && memcmp(buf, llama, 2) == 0, "flush");
        CHECK(lmp_detok_push(&d, -1, buf, sizeof(buf), &k) == -EINVAL, "bad id");
        free(ids);
        lmp_vocab_free(v);
}

/* Bytes that are not UTF-8: SentencePiece keeps them (byte fallback, so
 * they round-trip exactly); byte-level BPE reads each as U+FFFD, as
 * llama.cpp does. */
static void test_invalid_utf8(const char *dir) {
        static const char *const bad[] = {
                "\xff", "abc\200def", "\xe4\xb8", "x\xc0\xafy", "\xed\xa0\x80", "\xf4\x90\x80\x80 z",
                "tail \xf0\x9f\xa6",
        };
        const char *names[] = { "llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2" };
        for (size_t vi = 0; vi < 5; vi++) {
                struct lmp_vocab *v = load(dir, names[vi]);
                if (!v)
                        continue;
                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        size_t n, tl;
                        int32_t *ids = tokenize(v, bad[i], strlen(bad[i]), false, &n);
                        CHECK(n > 0, "%s: no ids for invalid input %zu", names[vi], i);
                        for (size_t k = 0; k < n; k++)
                                CHECK(ids[k] >= 0 && (uint32_t)ids[k] < lmp_vocab_n_tokens(v), "id in range");
                        char *back = detok_both(v, ids, n, LMP_DETOK_STRIP_PREFIX, &tl);
                        if (lmp_vocab_type(v) == LMP_VOCAB_SPM)
                                CHECK(tl == strlen(bad[i]) && memcmp(back, bad[i], tl) == 0,
                                      "%s: invalid input %zu does not round-trip", names[vi], i);
                        else
                                CHECK(utf8_valid(back, tl), "%s: byte-level BPE output is valid UTF-8", names[vi]);
                        free(back);
                        free(ids);
                }
                /* BPE: a lone invalid byte tokenizes as U+FFFD. */
                if (lmp_vocab_type(v) == LMP_VOCAB_BPE) {
                        size_t n1, n2;
                        int32_t *a = tokenize(v, "\xff", 1, false, &n1);
                        int32_t *b = tokenize(v, "\xef\xbf\xbd", 3, false, &n2);
                        CHECK(n1 == n2 && memcmp(a, b, n1 * sizeof(int32_t)) == 0, "%s: 0xff reads as U+FFFD", names[vi]);
                        free(a);
                        free(b);
                }
                lmp_vocab_free(v);
        }
}

/* A small vocabulary file built in memory, with one thing wrong. */
enum fault { OK, NO_MODEL, BAD_MODEL, WPM_NO_SEP, NO_TOKENS, DUP_TOKEN, BAD_BOS, NO_MERGES, BAD_PRE, BAD_MERGE, SHORT_SCORES };

static int load_built(enum fault fault, bool bpe, struct lmp_error *err) {
        struct lmp_gguf_writer *w;
        const char *toks[] = { "<unk>", "<s>", "</s>", "a", "b", "ab", "\xe2\x96\x81" };
        const char *dup[] = { "<unk>", "<s>", "a", "a" };
        const char *merges[] = { "a b" };
        const char *bad_merges[] = { "ab" };
        float scores[7] = { 0, 0, 0, -1, -2, -0.5f, -3 };
        int32_t types[7] = { 2, 3, 3, 1, 1, 1, 1 };
        int r = -1;

        if (lmp_gguf_writer_new(0, &w) < 0)
                return -ENOMEM;
        if (fault != NO_MODEL)
                lmp_gguf_writer_set_str(w, "tokenizer.ggml.model", fault == BAD_MODEL ? "t5" : fault == WPM_NO_SEP ? "bert" : bpe ? "gpt2" : "llama");
        if (bpe)
                lmp_gguf_writer_set_str(w, "tokenizer.ggml.pre", fault == BAD_PRE ? "no-such-pre" : "gpt-2");
        if (fault == DUP_TOKEN)
                lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", dup, 4);
        else if (fault != NO_TOKENS)
                lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 7);
        lmp_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LMP_GGUF_F32, scores, fault == SHORT_SCORES ? 3 : 7);
        lmp_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, types, fault == DUP_TOKEN ? 4 : 7);
        if (bpe && fault != NO_MERGES)
                lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", fault == BAD_MERGE ? bad_merges : merges, 1);
        lmp_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", fault == BAD_BOS ? 70000 : 1);

        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (f && lmp_gguf_writer_begin(w, f, err) == 0 && lmp_gguf_writer_finish(w, err) == 0) {
                fflush(f);
                struct lmp_gguf *g;
                if (lmp_gguf_open_mem(buf, size, &g, err) == 0) {
                        struct lmp_vocab *v;
                        r = lmp_vocab_load(g, &v, err);
                        if (r == 0) {
                                /* Sanity of the good file: "ab" merges; "ba" does not. */
                                int32_t ids[8];
                                size_t n;
                                CHECK(lmp_tokenize(v, "ab", 2, false, false, ids, 8, &n) == 0, "tokenize");
                                CHECK(n >= 1 && ids[n - 1] == 5, "\"ab\" ends with the merged token");
                                lmp_vocab_free(v);
                        }
                        lmp_gguf_free(g);
                }
        }
        if (f)
                fclose(f);
        free(buf);
        lmp_gguf_writer_free(w);
        return r;
}

static void test_malformed(void) {
        static const struct {
                enum fault fault;
                bool bpe;
                int code;
                const char *needle;
        } t[] = {
                { OK, false, 0, "" },
                { OK, true, 0, "" },
                { NO_MODEL, false, -EINVAL, "tokenizer.ggml.model" },
                { BAD_MODEL, false, -ENOTSUP, "t5" },
                { WPM_NO_SEP, false, -EINVAL, "[SEP]" },
                { NO_TOKENS, false, -EINVAL, "tokenizer.ggml.tokens" },
                { DUP_TOKEN, false, -EINVAL, "duplicate" },
                { BAD_BOS, false, -EINVAL, "bos_token_id" },
                { SHORT_SCORES, false, -EINVAL, "tokenizer.ggml.scores" },
                { NO_MERGES, true, -EINVAL, "tokenizer.ggml.merges" },
                { BAD_MERGE, true, -EINVAL, "tokenizer.ggml.merges" },
                { BAD_PRE, true, -ENOTSUP, "no-such-pre" },
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct lmp_error err = { 0 };
                int r = load_built(t[i].fault, t[i].bpe, &err);
                CHECK(r == t[i].code, "fault %d: got %d (%s), want %d", (int)t[i].fault, r, err.msg, t[i].code);
                if (t[i].code)
                        CHECK(strstr(err.msg, t[i].needle), "fault %d: message \"%s\" does not name %s",
                              (int)t[i].fault, err.msg, t[i].needle);
        }
}

/* The fixture chat templates' renders, tokenized with the matching
 * vocabulary: every special-token text in the prompt becomes that one
 * token, and the ids detokenize back to the prompt (except Phi-3, whose
 * special tokens swallow the newline after them, as in llama.cpp). */
static void test_template_renders(const char *dir) {
        static const struct {
                const char *tmpl, *vocab;
                bool round_trip;
        } t[] = {
                { "qwen2.5", "qwen2", true },        { "llama-3.1", "llama-bpe", true },
                { "llama-3.2", "llama-bpe", true },  { "llama-2", "llama-spm", true },
                { "mistral-7b-v0.1", "llama-spm", true }, { "zephyr-tinyllama", "llama-spm", true },
                { "phi-3.5", "phi-3", false },
        };
        static const char *const specials[] = {
                "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<s>", "</s>",
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                char path[4096];
                size_t jlen;
                snprintf(path, sizeof(path), "%s/templates/%s.json", dir, t[i].tmpl);
                char *json = NULL;
                lmp_read_file(path, &json, &jlen);
                cJSON *root = json ? cJSON_Parse(json) : NULL;
                struct lmp_vocab *v = root ? load(dir, t[i].vocab) : NULL;
                CHECK(v, "%s: cannot read the render fixture or vocabulary", t[i].tmpl);
                const cJSON *e, *expected = v ? cJSON_GetObjectItem(root, "expected") : NULL;
                int n_renders = 0;
                cJSON_ArrayForEach(e, expected) {
                        if (!cJSON_IsString(e))
                                continue; /* a refused conversation */
                        const char *text = e->valuestring;
                        size_t n, tl;
                        int32_t *ids = tokenize(v, text, strlen(text), false, &n);
                        n_renders++;
                        for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
                                int32_t id = find(v, specials[k]);
                                unsigned attr = lmp_vocab_token_attr(v, id);
                                if (id < 0 || !(attr & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED)))
                                        continue;
                                size_t in_text = 0, in_ids = 0;
                                for (const char *p = strstr(text, specials[k]); p; p = strstr(p + strlen(specials[k]), specials[k]))
                                        in_text++;
                                for (size_t j = 0; j < n; j++)
                                        in_ids += ids[j] == id;
                                CHECK(in_text == in_ids, "%s/%s: %s appears %zu times, %zu tokens", t[i].tmpl,
                                      e->string, specials[k], in_text, in_ids);
                        }
                        if (t[i].round_trip) {
                                char *back = detok_both(v, ids, n, LMP_DETOK_SPECIAL | LMP_DETOK_STRIP_PREFIX, &tl);
                                CHECK(tl == strlen(text) && memcmp(back, text, tl) == 0, "%s/%s: round trip",
                                      t[i].tmpl, e->string);
                                free(back);
                        }
                        free(ids);
                }
                CHECK(!v || n_renders > 0, "%s: no renders", t[i].tmpl);
                lmp_vocab_free(v);
                cJSON_Delete(root);
                free(json);
        }
}

/* Every pre-tokenizer name we accept: a byte-level vocabulary of the 256
 * byte tokens plus a few merges loads, and any text round-trips exactly
 * (every byte has a token, whatever the regexes split). */
static void test_pre_names(void) {
        static const char *const pres[] = {
                "default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "llama3", "llama-v3", "llama-bpe", "falcon3",
                "dbrx", "smaug-bpe", "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "starcoder", "refact",
                "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "tekken", "gpt-4o", "llama4",
        };
        /* GPT-2's byte -> printable code point map, and the tokens. */
        char store[256][3];
        const char *toks[260];
        int next_cp = 256;
        for (int b = 0; b < 256; b++) {
                bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
                int cp = printable ? b : next_cp++;
                if (cp < 0x80) {
                        store[b][0] = (char)cp;
                        store[b][1] = 0;
                } else {
                        store[b][0] = (char)(0xc0 | (cp >> 6));
                        store[b][1] = (char)(0x80 | (cp & 0x3f));
                        store[b][2] = 0;
                }
                toks[b] = store[b];
        }
        toks[256] = "\xc4\xa0t"; /* " t" */
        toks[257] = "he";
        toks[258] = "\xc4\xa0the";
        toks[259] = "<|endoftext|>";
        const char *merges[] = { "\xc4\xa0 t", "h e", "\xc4\xa0t he" };
        int32_t types[260];
        for (int i = 0; i < 260; i++)
                types[i] = i == 259 ? 3 : 1;
        const char *text = "Hello the world, THE\u00c9t\u00e9 caf\u00e9's 12345 \xf0\x9f\xa6\x99  \t\r\n x<|endoftext|>";

        for (size_t p = 0; p < sizeof(pres) / sizeof(pres[0]); p++) {
                struct lmp_gguf_writer *w;
                struct lmp_error err = { 0 };
                lmp_gguf_writer_new(0, &w);
                lmp_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
                lmp_gguf_writer_set_str(w, "tokenizer.ggml.pre", pres[p]);
                lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 260);
                lmp_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, types, 260);
                lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 3);
                lmp_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 259);
                lmp_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 259);
                char *buf = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&buf, &size);
                struct lmp_gguf *g = NULL;
                struct lmp_vocab *v = NULL;
                if (lmp_gguf_writer_begin(w, f, &err) == 0 && lmp_gguf_writer_finish(w, &err) == 0) {
                        fflush(f);
                        if (lmp_gguf_open_mem(buf, size, &g, &err) == 0)
                                CHECK(lmp_vocab_load(g, &v, &err) == 0, "pre %s: %s", pres[p], err.msg);
                }
                if (v) {
                        size_t n, tl;
                        int32_t *ids = tokenize(v, text, strlen(text), false, &n);
                        char *back = detok_both(v, ids, n, LMP_DETOK_SPECIAL, &tl);
                        CHECK(tl == strlen(text) && memcmp(back, text, tl) == 0, "pre %s: round trip", pres[p]);
                        bool the = false;
                        for (size_t i = 0; i < n; i++)
                                the |= ids[i] == 258;
                        CHECK(the, "pre %s: \" the\" is merged into one token", pres[p]);
                        CHECK(ids[n - 1] == 259, "pre %s: the special token is parsed", pres[p]);
                        free(back);
                        free(ids);
                        lmp_vocab_free(v);
                }
                lmp_gguf_free(g);
                fclose(f);
                free(buf);
                lmp_gguf_writer_free(w);
        }
}

/* WordPiece beyond the fixture's cases: [CLS]/[SEP] from the file, special
 * tokens written in the text, a word with no piece for some character, and
 * bytes that are not UTF-8 (dropped, never a crash). */
static void test_wordpiece(const char *dir) {
        struct lmp_vocab *v = load(dir, "bert-bge");
        if (!v)
                return;
        CHECK(lmp_vocab_type(v) == LMP_VOCAB_WPM, "bert-bge: WordPiece");
        CHECK(lmp_vocab_bos(v) == 101 && lmp_vocab_sep(v) == 102 && lmp_vocab_unk(v) == 100,
              "bert-bge: [CLS] 101, [SEP] 102, [UNK] 100");
        size_t n;
        int32_t *ids = tokenize(v, "[CLS] hi [SEP]", 14, false, &n);
        CHECK(n == 3 && ids[0] == 101 && ids[2] == 102, "bert-bge: [CLS] and [SEP] in the text");
        free(ids);
        static const char *const bad[] = { "\xff", "abc\200def", "\xe4\xb8", "x\xc0\xafy", "\xed\xa0\x80 z" };
        for (size_t i = 0; i < LMP_ARRAY_SIZE(bad); i++) {
                ids = tokenize(v, bad[i], strlen(bad[i]), true, &n);
                CHECK(n >= 2 && ids[0] == 101 && ids[n - 1] == 102, "bert-bge: invalid input %zu", i);
                for (size_t k = 0; k < n; k++)
                        CHECK(ids[k] >= 0 && (uint32_t)ids[k] < lmp_vocab_n_tokens(v), "id in range");
                free(ids);
        }
        ids = tokenize(v, "\xff", 1, false, &n);
        CHECK(n == 0, "bert-bge: a lone invalid byte is dropped");
        free(ids);
        lmp_vocab_free(v);
}

int main(void) {
        test_pre_names();
        test_malformed();
        const char *dir = getenv("LMPOOL_FIXTURES");
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/tokenizer/llama-spm.gguf", dir ? dir : "");
        FILE *f = dir ? fopen(probe, "rb") : NULL;
        if (!f) {
                if (failures)
                        return 1;
                printf("tokenizer fixtures not found (LMPOOL_FIXTURES): skipped\n");
                return 77;
        }
        fclose(f);

        const char *names[] = { "llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "bert-bge" };
        for (size_t i = 0; i < LMP_ARRAY_SIZE(names); i++)
                run_cases(dir, names[i]);
        test_wordpiece(dir);
        test_eog(dir);
        test_special_attrs(dir);
        test_spm_chunks(dir);
        test_template_renders(dir);
        test_stream_holdback(dir);
        test_invalid_utf8(dir);
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("all tokenizer checks passed\n");
        return 0;
}

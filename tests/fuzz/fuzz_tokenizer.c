/* libFuzzer target for the tokenizers. An input that starts with the GGUF
 * magic is loaded as a vocabulary file (it must load or fail with a
 * message, and a loaded one must tokenize); any other input is text (any
 * bytes, invalid UTF-8 included): its first byte picks one of the fixture
 * vocabularies ($LMPOOL_FIXTURES/tokenizer) and the flags, the rest goes
 * through tokenize -> detokenize, whole and streaming, which must agree. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = { "llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2" };
static struct lmp_vocab *vocabs[5];
static int n_vocabs;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        const char *dir = getenv("LMPOOL_FIXTURES");
        for (size_t i = 0; dir && i < 5; i++) {
                char path[4096];
                struct lmp_gguf *g;
                struct lmp_error err = { 0 };
                snprintf(path, sizeof(path), "%s/tokenizer/%s.gguf", dir, names[i]);
                if (lmp_gguf_open(path, &g, &err) < 0)
                        continue;
                if (lmp_vocab_load(g, &vocabs[n_vocabs], &err) == 0)
                        n_vocabs++;
                lmp_gguf_free(g);
        }
        return 0;
}

/* Tokenizes and detokenizes; aborts when an invariant breaks. */
static void check_round_trip(const struct lmp_vocab *v, const char *text, size_t len, bool add_special,
                             bool parse_special, unsigned flags) {
        size_t n = 0;
        int r = lmp_tokenize(v, text, len, add_special, parse_special, NULL, 0, &n);
        if (r < 0 && r != -ENOSPC)
                abort();
        int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
        size_t n2;
        if (!ids || lmp_tokenize(v, text, len, add_special, parse_special, ids, n, &n2) < 0 || n2 != n)
                abort();
        for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || (uint32_t)ids[i] >= lmp_vocab_n_tokens(v))
                        abort();

        size_t tl;
        r = lmp_detokenize(v, ids, n, flags, NULL, 0, &tl);
        char *whole = malloc(tl + 1);
        if (!whole || lmp_detokenize(v, ids, n, flags, whole, tl, &tl) < 0)
                abort();

        size_t cap = lmp_vocab_max_piece(v) + 4, got = 0;
        char *chunk = malloc(cap);
        struct lmp_detok d;
        lmp_detok_init(&d, v, flags);
        for (size_t i = 0; i <= n; i++) {
                size_t k;
                r = i < n ? lmp_detok_push(&d, ids[i], chunk, cap, &k) : lmp_detok_flush(&d, chunk, cap, &k);
                if (r < 0 || got + k > tl || memcmp(whole + got, chunk, k) != 0)
                        abort();
                got += k;
        }
        if (got != tl)
                abort();
        free(chunk);
        free(whole);
        free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
                struct lmp_gguf *g;
                struct lmp_vocab *v;
                struct lmp_error err = { 0 };
                if (lmp_gguf_open_mem(data, size, &g, &err) < 0)
                        return 0;
                err = (struct lmp_error){ 0 };
                if (lmp_vocab_load(g, &v, &err) == 0) {
                        check_round_trip(v, "Hello, world! <s> <|im_end|> 123", 32, true, true, LMP_DETOK_SPECIAL);
                        lmp_vocab_free(v);
                } else if (err.code >= 0 || err.msg[0] == '\0') {
                        abort(); /* every failure carries a code and a message */
                }
                lmp_gguf_free(g);
                return 0;
        }
        if (size < 1 || n_vocabs == 0)
                return 0;
        uint8_t sel = data[0];
        const struct lmp_vocab *v = vocabs[sel % n_vocabs];
        check_round_trip(v, (const char *)data + 1, size - 1, sel & 0x08, sel & 0x10, (sel >> 5) & 3);
        return 0;
}

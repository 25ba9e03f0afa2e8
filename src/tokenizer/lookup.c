/* The bottom of the tokenizer: what the loader (vocab.c) and both
 * tokenizers (spm.c, bpe.c) use and which uses none of them: the token
 * text -> id hash, built once by the loader and read by every lookup, and
 * the growth of a call's working buffers. Keeping these here, below the
 * loader, is what lets vocab.c call into bpe.c (the byte-level BPE set-up)
 * without bpe.c calling back up into vocab.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "tokenizer/vocab_internal.h"

static uint64_t hash_bytes(const char *s, size_t len) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t)s[i];
                h *= 0x100000001b3ull;
        }
        return h ^ (h >> 29);
}

int lmp_vocab_hash_build(struct lmp_vocab *v, uint32_t ret_dup[2]) {
        uint64_t size = 1;
        while (size < (uint64_t)v->n_tokens * 2)
                size <<= 1;
        uint32_t *hash = calloc(size, sizeof(*hash));
        if (!hash)
                return -ENOMEM;
        uint32_t mask = (uint32_t)(size - 1);
        for (uint32_t id = 0; id < v->n_tokens; id++) {
                const char *s = v->text + v->tok[id].off;
                size_t len = v->tok[id].len;
                uint64_t i = hash_bytes(s, len) & mask;
                while (hash[i]) {
                        const struct lmp_span *t = &v->tok[hash[i] - 1];
                        if (t->len == len && memcmp(v->text + t->off, s, len) == 0) {
                                ret_dup[0] = hash[i] - 1;
                                ret_dup[1] = id;
                                free(hash);
                                return -EEXIST;
                        }
                        i = (i + 1) & mask;
                }
                hash[i] = id + 1;
        }
        v->hash = hash;
        v->hash_mask = mask;
        return 0;
}

int32_t lmp_vocab_lookup(const struct lmp_vocab *v, const char *s, size_t len) {
        uint64_t i = hash_bytes(s, len) & v->hash_mask;
        for (;;) {
                uint32_t e = v->hash[i];
                if (e == 0)
                        return LMP_TOKEN_NONE;
                const struct lmp_span *t = &v->tok[e - 1];
                if (t->len == len && memcmp(v->text + t->off, s, len) == 0)
                        return (int32_t)(e - 1);
                i = (i + 1) & v->hash_mask;
        }
}

int lmp_ws_reserve(void **p, size_t *cap, size_t n, size_t sz) {
        if (n <= *cap)
                return 0;
        size_t want = *cap ? *cap : 64;
        while (want < n)
                want *= 2;
        size_t bytes;
        if (lmp_mul_overflow(want, sz, &bytes))
                return -ENOMEM;
        void *q = realloc(*p, bytes);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = want;
        return 0;
}

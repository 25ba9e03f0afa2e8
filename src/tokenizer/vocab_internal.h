/* The inside of struct lmp_vocab, shared by the files of the tokenizer
 * (loading, the two BPE variants, special-token splitting and
 * detokenization). Nothing outside src/tokenizer/ includes this. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* A binary min-heap over an array of TYPE ordered by BEFORE(a, b), as two
 * functions PREFIXpush(h, &n, x) and PREFIXpop(h, &n): the BPE and
 * SentencePiece merge queues differ only in their element and order. The
 * caller sizes the array. */
#define LMP_DEFINE_HEAP(storage, prefix, type, before)                          \
        storage void prefix##push(type *h, size_t *n, type c) {                 \
                size_t i = (*n)++;                                              \
                while (i > 0) {                                                 \
                        size_t p = (i - 1) / 2;                                 \
                        if (!before(&c, &h[p]))                                 \
                                break;                                          \
                        h[i] = h[p];                                            \
                        i = p;                                                  \
                }                                                               \
                h[i] = c;                                                       \
        }                                                                       \
        storage type prefix##pop(type *h, size_t *n) {                          \
                type top = h[0], last = h[--(*n)];                              \
                size_t i = 0;                                                   \
                for (;;) {                                                      \
                        size_t c = 2 * i + 1;                                   \
                        if (c >= *n)                                            \
                                break;                                          \
                        if (c + 1 < *n && before(&h[c + 1], &h[c]))             \
                                c++;                                            \
                        if (!before(&h[c], &last))                              \
                                break;                                          \
                        h[i] = h[c];                                            \
                        i = c;                                                  \
                }                                                               \
                if (*n)                                                         \
                        h[i] = last;                                            \
                return top;                                                     \
        }

#define LMP_PRE_MAX_REGEX 4

/* A byte range inside one of the vocabulary's arenas. */
struct lmp_span {
        uint32_t off;
        uint32_t len;
};

/* One ranked merge of byte-level BPE: the pair (left id, right id) merges
 * into result with priority rank (lower first). */
struct lmp_merge_slot {
        uint64_t key;           /* (left << 32) | right; UINT64_MAX when empty */
        uint32_t rank;
        int32_t result;
};

/* A node of the special-token trie: children are a sibling list. */
struct lmp_trie_node {
        uint32_t child;
        uint32_t sibling;
        int32_t special;        /* index into special[] ending here, or -1 */
        uint8_t byte;
};

struct lmp_vocab {
        enum lmp_vocab_type type;
        char pre[32];
        uint32_t n_tokens;

        /* Token texts as stored in the file, in one arena. */
        char *text;
        struct lmp_span *tok;
        float *score;
        uint16_t *attr;
        uint8_t *eog;           /* 1 when the token ends generation */

        /* What each token renders to (special tokens included), in one arena. */
        char *piece_text;
        struct lmp_span *piece;
        uint32_t max_piece;

        /* Open-addressing hash: token text -> id + 1 (0 = empty slot). */
        uint32_t *hash;
        uint32_t hash_mask;

        /* Byte-level BPE: merges, and the token of each byte's printable form. */
        struct lmp_merge_slot *merges;
        uint64_t merges_mask;
        char byte_enc[256][2];  /* UTF-8 of the code point a byte maps to */
        uint8_t byte_enc_len[256];
        int16_t byte_dec[324];  /* code point (< 324) -> byte, -1 when not a byte */

        /* Byte tokens: SentencePiece <0xNN> pieces, or byte-level BPE's
         * single-byte-character tokens. LMP_TOKEN_NONE when absent. */
        int32_t byte_tok[256];

        /* Special tokens (control, user-defined, unknown) longest first, and
         * a byte trie of their texts for the quick scan (node 0 is "none"). */
        int32_t *special;
        uint32_t n_special;
        struct lmp_trie_node *trie;
        uint32_t n_trie;
        uint32_t trie_root[256];

        int32_t bos, eos, eot, eom, unk, pad, sep;
        bool add_bos, add_eos, add_space_prefix, ignore_merges;
        bool add_sep;           /* WordPiece: [SEP] at the end with add_special */
        bool wpm_uncased;       /* WordPiece: lower-case and strip accents (no
                                 * normal piece has an upper-case letter) */
        uint32_t max_token_len; /* longest token text, in bytes */
        bool spm_chunks;        /* no piece has ▁ right after another character */

        /* Pre-tokenizer: regexes applied in turn, each splitting the pieces
         * the previous one produced. */
        pcre2_code *re[LMP_PRE_MAX_REGEX];
        int n_re;
};

/* Working memory of one lmp_tokenize() call. */
struct lmp_tok_ws {
        char *buf;              /* escaped/sanitized text */
        size_t buf_cap;
        char *buf2;             /* byte-level encoded word */
        size_t buf2_cap;
        void *sym;              /* symbols of the word being merged */
        size_t sym_cap;
        void *heap;             /* merge candidates */
        size_t heap_cap;
        pcre2_match_data *md;
};

/* Where ids go: counted always, stored while they fit. */
struct lmp_tok_sink {
        int32_t *out;
        size_t cap;
        size_t n;
};

static inline void lmp_sink_push(struct lmp_tok_sink *s, int32_t id) {
        if (s->n < s->cap)
                s->out[s->n] = id;
        s->n++;
}

/* The layers of the tokenizer, each calling only the ones below it:
 *   tokenize.c, detok.c    text <-> ids, over a loaded vocabulary
 *   vocab.c                loading (calls bpe.c's set-up)
 *   spm.c, bpe.c           the two tokenizers and BPE's set-up
 *   lookup.c               the text -> id hash and working buffers */

/* lookup.c: builds the text -> id hash of v's tokens (v->hash,
 * v->hash_mask). Returns 0, -ENOMEM, or -EEXIST with the ids of two tokens
 * of the same text in ret_dup (v is then left without a hash). */
int lmp_vocab_hash_build(struct lmp_vocab *v, uint32_t ret_dup[2]);

/* lookup.c: a token by its text: id or LMP_TOKEN_NONE. */
int32_t lmp_vocab_lookup(const struct lmp_vocab *v, const char *s, size_t len);

/* lookup.c: grows a buffer to hold at least n elements of size sz. 0 or
 * -ENOMEM. */
int lmp_ws_reserve(void **p, size_t *cap, size_t n, size_t sz);

/* Tokenizes one piece of text (no special tokens inside). */
int lmp_spm_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     bool add_prefix, struct lmp_tok_sink *sink);
int lmp_bpe_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     struct lmp_tok_sink *sink);
int lmp_wpm_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     struct lmp_tok_sink *sink);

/* Byte-level BPE setup: the byte <-> code point tables, the merges and the
 * pre-tokenizer regexes. */
int lmp_bpe_init(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err);
void lmp_bpe_free(struct lmp_vocab *v);

/* Length of a UTF-8 sequence from its first byte, as llama.cpp counts it
 * (continuation or invalid lead bytes count as 1). */
static inline size_t lmp_utf8_len(uint8_t c) {
        static const uint8_t len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
        return len[c >> 4];
}

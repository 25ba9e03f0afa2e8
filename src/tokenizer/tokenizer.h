/* Tokenizers: text to token ids and back, for the vocabularies stored in a
 * GGUF file. Three kinds are supported, as llama.cpp defines them:
 * SentencePiece-style BPE (`tokenizer.ggml.model = llama`: merges by piece
 * score, `▁` for spaces, a dummy leading space, byte fallback to <0xNN>),
 * byte-level BPE (`gpt2`: bytes mapped to printable code points, a
 * pre-tokenizer regex chosen by `tokenizer.ggml.pre`, ranked merges) and
 * WordPiece (`bert`: BERT's normalization and word splitting, greedy
 * longest pieces, [CLS] ... [SEP]).
 * Control and user-defined tokens written in the text are recognised and
 * emitted as themselves, so a rendered chat template tokenizes as the model
 * expects.
 *
 * A struct lmp_vocab is immutable after lmp_vocab_load() and owns copies of
 * everything it needs (the GGUF may be closed afterwards); any number of
 * threads may tokenize with one vocab at once. Detokenization is streaming:
 * a struct lmp_detok per output stream holds back an incomplete UTF-8
 * character until the token that completes it arrives. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct lmp_gguf;
struct lmp_vocab;

#define LMP_TOKEN_NONE (-1)

enum lmp_vocab_type {
        LMP_VOCAB_SPM = 1,      /* tokenizer.ggml.model = "llama" */
        LMP_VOCAB_BPE = 2,      /* tokenizer.ggml.model = "gpt2" */
        LMP_VOCAB_WPM = 3,      /* tokenizer.ggml.model = "bert" (WordPiece) */
};

/* Token attributes (bit set), from tokenizer.ggml.token_type plus the
 * adjustments llama.cpp makes by token text. */
enum {
        LMP_TOKEN_ATTR_UNDEFINED    = 0,
        LMP_TOKEN_ATTR_UNKNOWN      = 1 << 0,
        LMP_TOKEN_ATTR_UNUSED       = 1 << 1,
        LMP_TOKEN_ATTR_NORMAL       = 1 << 2,
        LMP_TOKEN_ATTR_CONTROL      = 1 << 3,
        LMP_TOKEN_ATTR_USER_DEFINED = 1 << 4,
        LMP_TOKEN_ATTR_BYTE         = 1 << 5,
        LMP_TOKEN_ATTR_LSTRIP       = 1 << 6, /* eats whitespace before it in the text */
        LMP_TOKEN_ATTR_RSTRIP       = 1 << 7, /* eats whitespace after it in the text */
};

/* Loads the vocabulary of a GGUF file (tokens, scores, token types, merges,
 * special token ids and flags) and builds the lookup tables. Missing or
 * malformed metadata is -EINVAL (-ENOTSUP for a tokenizer model or
 * pre-tokenizer we do not implement) with a message naming the key. */
int lmp_vocab_load(const struct lmp_gguf *g, struct lmp_vocab **ret, struct lmp_error *err);
void lmp_vocab_free(struct lmp_vocab *v);

enum lmp_vocab_type lmp_vocab_type(const struct lmp_vocab *v);
/* The pre-tokenizer name as given in the file ("default" for SentencePiece). */
const char *lmp_vocab_pre(const struct lmp_vocab *v);
uint32_t lmp_vocab_n_tokens(const struct lmp_vocab *v);

/* Special token ids; LMP_TOKEN_NONE when the vocabulary has none. */
int32_t lmp_vocab_bos(const struct lmp_vocab *v);
int32_t lmp_vocab_eos(const struct lmp_vocab *v);
int32_t lmp_vocab_eot(const struct lmp_vocab *v);
int32_t lmp_vocab_eom(const struct lmp_vocab *v);
int32_t lmp_vocab_unk(const struct lmp_vocab *v);
int32_t lmp_vocab_pad(const struct lmp_vocab *v);
/* WordPiece's [SEP], which add_special puts at the end (its [CLS] is the BOS). */
int32_t lmp_vocab_sep(const struct lmp_vocab *v);
bool lmp_vocab_add_bos(const struct lmp_vocab *v);
bool lmp_vocab_add_eos(const struct lmp_vocab *v);

/* End of generation: EOS, EOT, EOM and the tokens whose text marks the end
 * of a turn (<|im_end|>, <|eot_id|>, <|end|>, <end_of_turn>,
 * <|endoftext|>, ...). False for ids out of range. */
bool lmp_vocab_is_eog(const struct lmp_vocab *v, int32_t id);

/* The token's text as stored in the vocabulary (not NUL-terminated; for
 * byte-level BPE in its byte-to-unicode form). NULL when id is out of range. */
const char *lmp_vocab_token_text(const struct lmp_vocab *v, int32_t id, size_t *ret_len);
unsigned lmp_vocab_token_attr(const struct lmp_vocab *v, int32_t id);
/* The id of a token by its exact text, or LMP_TOKEN_NONE. */
int32_t lmp_vocab_find(const struct lmp_vocab *v, const char *text, size_t len);

/* Tokenizes len bytes of text (any bytes: invalid UTF-8 is tokenized, never
 * rejected). add_special adds BOS/EOS as the vocabulary's flags say;
 * (for WordPiece: [CLS] before and [SEP] after);
 * parse_special makes control tokens written in the text count as
 * themselves (user-defined tokens always do). Writes at most cap ids to
 * out and sets *ret_n to the number of ids; returns -ENOSPC when cap was
 * too small, with *ret_n set to the number needed. -ENOMEM on allocation
 * failure, -E2BIG for text over 512 MiB. Allocates working memory per
 * call (proportional to len), never per token. */
int lmp_tokenize(const struct lmp_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, size_t cap, size_t *ret_n);

/* Detokenization flags. */
enum {
        LMP_DETOK_SPECIAL      = 1 << 0, /* render control/unknown tokens' text */
        LMP_DETOK_STRIP_PREFIX = 1 << 1, /* drop the dummy-prefix space a SentencePiece
                                          * vocabulary puts at the start and after each
                                          * special token (the exact inverse of
                                          * lmp_tokenize) */
};

/* Longest text one token can produce; a buffer of lmp_vocab_max_piece() + 4
 * bytes is always enough for lmp_detok_push() and lmp_detok_flush(). */
size_t lmp_vocab_max_piece(const struct lmp_vocab *v);

/* The bytes of one token (no UTF-8 hold-back, no prefix stripping). Same
 * -ENOSPC convention as lmp_tokenize; -EINVAL for an id out of range. */
int lmp_token_to_piece(const struct lmp_vocab *v, int32_t id, unsigned flags, char *out,
                       size_t cap, size_t *ret_n);

/* Whole-sequence detokenization into out (not NUL-terminated). */
int lmp_detokenize(const struct lmp_vocab *v, const int32_t *ids, size_t n, unsigned flags,
                   char *out, size_t cap, size_t *ret_n);

/* Streaming detokenization. The state is a plain struct (no allocation):
 * lmp_detok_init() once per stream, lmp_detok_push() per token, which
 * writes only complete UTF-8 characters and holds back (at most 3 bytes of)
 * a character that the next token may complete; lmp_detok_flush() at the
 * end writes whatever is held back. Bytes that can never form a character
 * are passed through as they are, so the concatenated output equals
 * lmp_detokenize() of the same ids. On error the state is unchanged. */
struct lmp_detok {
        const struct lmp_vocab *v;
        unsigned flags;
        bool boundary;          /* at the start or after a special token */
        uint8_t n_pend;
        uint8_t pend[4];
};

void lmp_detok_init(struct lmp_detok *d, const struct lmp_vocab *v, unsigned flags);
int lmp_detok_push(struct lmp_detok *d, int32_t id, char *out, size_t cap, size_t *ret_n);
int lmp_detok_flush(struct lmp_detok *d, char *out, size_t cap, size_t *ret_n);

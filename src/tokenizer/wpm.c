/* WordPiece (`tokenizer.ggml.model = "bert"`), as llama.cpp runs it on the
 * vocabularies its converter writes: a word-starting piece is stored with
 * a leading ▁ (BERT's plain "hello"), a continuation piece without it
 * (BERT's "##llo"). The text is normalized and split into words first
 * (BERT's BasicTokenizer): whitespace separates words; control characters,
 * NUL and U+FFFD are dropped; every punctuation character, ASCII symbol
 * and CJK ideograph is a word of its own; for an uncased vocabulary each
 * character is lower-cased and reduced to the base of its NFD
 * decomposition, and combining marks are dropped (accent stripping).
 * Each word, with ▁ in front, is then cut greedily into the longest pieces
 * of the vocabulary from the left; a word that cannot be cut completely is
 * one [UNK].
 *
 * Known limits: bytes that are not UTF-8 are dropped like U+FFFD (llama.cpp
 * decodes overlong forms and surrogates laxly; we do not); the Unicode
 * tables are those of scripts/gen-unicode-tables.py's Python. */
#include <errno.h>
#include <string.h>

#include "common/utf8.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/vocab_internal.h"

enum { CLS_OTHER = 0, CLS_CONTROL = 1, CLS_MARK = 2, CLS_PUNCT = 3, CLS_SYMBOL = 4 };

static unsigned ucd_class_of(uint32_t cp) {
        size_t lo = 0, hi = LMP_ARRAY_SIZE(ucd_class);  /* last entry with first <= cp */
        while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                if (ucd_class[mid].first <= cp)
                        lo = mid;
                else
                        hi = mid;
        }
        return ucd_class[lo].cls;
}

static uint32_t nfd_base(uint32_t cp) {
        size_t lo = 0, hi = LMP_ARRAY_SIZE(ucd_nfd);
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (ucd_nfd[mid].last < cp)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < LMP_ARRAY_SIZE(ucd_nfd) && ucd_nfd[lo].first <= cp ? ucd_nfd[lo].base : cp;
}

static uint32_t to_lower(uint32_t cp) {
        if (cp < 0x80)
                return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        size_t lo = 0, hi = LMP_ARRAY_SIZE(ucd_lower);
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (ucd_lower[mid].cp < cp)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < LMP_ARRAY_SIZE(ucd_lower) && ucd_lower[lo].cp == cp ? ucd_lower[lo].lower : cp;
}

/* Unicode's White_Space property. */
static bool is_space(uint32_t cp) {
        return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
               (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
               cp == 0x205f || cp == 0x3000;
}

/* BERT's "Chinese character" blocks (CJK ideographs), with the upper bound
 * of Extension C as the Hugging Face tokenizer has it. */
static bool is_cjk(uint32_t cp) {
        return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
               (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
               (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
               (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

static size_t put_utf8(char *o, uint32_t cp) {
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | (cp >> 6));
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | (cp >> 12));
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

#define PHANTOM "\xe2\x96\x81"  /* ▁, the word-start mark of the vocabulary */
#define PHANTOM_LEN 3

/* Cuts one word (w[0..n), starting with ▁) into the longest pieces from
 * the left; the whole word is [UNK] when some position has no piece. */
static void cut_word(const struct lmp_vocab *v, const char *w, size_t n, struct lmp_tok_sink *sink) {
        size_t first = sink->n;
        for (size_t i = 0; i < n;) {
                size_t j = LMP_MIN(n, i + v->max_token_len);
                int32_t id = LMP_TOKEN_NONE;
                for (; j > i; j--)
                        if ((id = lmp_vocab_lookup(v, w + i, j - i)) != LMP_TOKEN_NONE)
                                break;
                if (id == LMP_TOKEN_NONE) {
                        sink->n = first;
                        break;
                }
                lmp_sink_push(sink, id);
                i = j;
        }
        if (sink->n == first && v->unk != LMP_TOKEN_NONE)
                lmp_sink_push(sink, v->unk);
}

int lmp_wpm_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     struct lmp_tok_sink *sink) {
        /* One word at a time in buf: ▁ and at most 4 bytes per input byte
         * (a 2-byte character may lower-case to 3 bytes). */
        size_t cap;
        if (lmp_mul_overflow(len, (size_t)4, &cap) || cap > SIZE_MAX - PHANTOM_LEN - 4)
                return -E2BIG;
        if (lmp_ws_reserve((void **)&ws->buf, &ws->buf_cap, cap + PHANTOM_LEN + 4, 1) < 0)
                return -ENOMEM;
        char *w = ws->buf;
        size_t n = 0;   /* bytes of the word after its ▁ */
        const uint8_t *s = (const uint8_t *)text;
        memcpy(w, PHANTOM, PHANTOM_LEN);

        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t l = lmp_utf8_decode(s + i, len - i, &cp);
                if (l == 0) {
                        cp = 0xfffd;
                        l = 1;
                }
                i += l;
                if (is_space(cp)) {
                        if (n)
                                cut_word(v, w, PHANTOM_LEN + n, sink);
                        n = 0;
                        continue;
                }
                if (v->wpm_uncased)
                        cp = nfd_base(cp);
                unsigned cls = ucd_class_of(cp);
                if (cp == 0 || cp == 0xfffd || cls == CLS_CONTROL || (v->wpm_uncased && cls == CLS_MARK))
                        continue;
                uint32_t out = v->wpm_uncased ? to_lower(cp) : cp;
                if (cls == CLS_PUNCT || (cp < 0x7f && cls == CLS_SYMBOL) || is_cjk(cp)) {
                        if (n)
                                cut_word(v, w, PHANTOM_LEN + n, sink);
                        n = put_utf8(w + PHANTOM_LEN, out);
                        cut_word(v, w, PHANTOM_LEN + n, sink);
                        n = 0;
                        continue;
                }
                n += put_utf8(w + PHANTOM_LEN + n, out);
        }
        if (n)
                cut_word(v, w, PHANTOM_LEN + n, sink);
        return 0;
}

/* UTF-8, strictly as RFC 3629 has it: no overlong forms, no surrogates,
 * nothing past U+10FFFF. One decoder for the protocol (what a frame may
 * hold, what an event may carry), the tokenizers (what the pre-tokenizer
 * regexes may see, where a SentencePiece chunk may end), the detokenizer
 * and the chat templates (whitespace).
 *
 * Header-only (static inline): the protocol code is linked into the
 * client library, which links nothing else of ours, and the tokenizers
 * call these once per character.
 *
 * Not here on purpose: the lax length-from-the-first-byte of
 * tokenizer/vocab_internal.h (lmp_utf8_len), which counts as llama.cpp
 * does so that token boundaries match its own. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the character at s (at most n bytes): its length (1..4) and, when
 * ret_cp is not NULL, its code point; 0 when s does not start with a
 * well-formed character (n == 0, a continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, or cut short by n). */
static inline size_t lmp_utf8_decode(const uint8_t *s, size_t n, uint32_t *ret_cp) {
        if (n == 0)
                return 0;
        uint32_t c = s[0];
        if (c < 0x80) {
                if (ret_cp)
                        *ret_cp = c;
                return 1;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                if (c == 0xe0)
                        lo = 0xa0; /* overlong below */
                else if (c == 0xed)
                        hi = 0x9f; /* surrogates above */
                c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                if (c == 0xf0)
                        lo = 0x90; /* overlong below */
                else if (c == 0xf4)
                        hi = 0x8f; /* past U+10FFFF above */
                c &= 0x07;
        } else {
                return 0;
        }
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        c = (c << 6) | (s[1] & 0x3fu);
        for (size_t i = 2; i < len; i++) {
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
                c = (c << 6) | (s[i] & 0x3fu);
        }
        if (ret_cp)
                *ret_cp = c;
        return len;
}

/* The length of the well-formed character at s, or 0 (as above). */
static inline size_t lmp_utf8_char_len(const uint8_t *s, size_t n) {
        return lmp_utf8_decode(s, n, NULL);
}

/* How many bytes at the end of s[0..n) (0..3) begin a character that more
 * bytes could still complete: what a stream of text holds back until the
 * next piece comes. Bytes that can never become a character are not held. */
static inline size_t lmp_utf8_incomplete_tail(const uint8_t *s, size_t n) {
        for (size_t back = 1; back <= 3 && back <= n; back++) {
                uint8_t c = s[n - back];
                if ((c & 0xc0) == 0x80)
                        continue; /* a continuation byte: look further back */
                size_t need = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
                if (need <= back)
                        return 0; /* ASCII, invalid, or already complete */
                /* The second byte's range depends on the first. */
                if (back >= 2) {
                        uint8_t c2 = s[n - back + 1];
                        if ((c == 0xe0 && c2 < 0xa0) || (c == 0xed && c2 > 0x9f) || (c == 0xf0 && c2 < 0x90) ||
                            (c == 0xf4 && c2 > 0x8f))
                                return 0;
                }
                return back;
        }
        return 0;
}

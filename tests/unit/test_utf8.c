/* src/common/utf8.h against the definition: every code point's encoding,
 * built here from its bits, decodes back to it with its length; every
 * other sequence of one to three bytes is refused, and so is every one of
 * four bytes whose first three are any lead byte from 0xf0 with any two
 * bytes and whose last is at a boundary of the continuation range; the tail a
 * stream holds back is exactly the proper prefix of some character, for
 * every string of one to three bytes and for random longer ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "../check.h"

static size_t encode(uint32_t cp, uint8_t *o) {
        if (cp < 0x80) {
                o[0] = (uint8_t)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (uint8_t)(0xc0 | cp >> 6), o[1] = (uint8_t)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (uint8_t)(0xe0 | cp >> 12), o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                o[2] = (uint8_t)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (uint8_t)(0xf0 | cp >> 18), o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (uint8_t)(0x80 | (cp & 0x3f));
        return 4;
}

/* Bitmaps, indexed by the bytes big-endian: which 1-, 2- and 3-byte
 * strings are a whole character, and which a proper prefix of one. */
static uint8_t *whole[4], *prefix[4];
static const size_t map_bits[4] = { 0, 1u << 8, 1u << 16, 1u << 24 };

static void set(uint8_t *m, size_t i) { m[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static int get(const uint8_t *m, size_t i) { return m[i >> 3] >> (i & 7) & 1; }

static size_t index_of(const uint8_t *s, size_t n) {
        size_t i = 0;
        for (size_t k = 0; k < n; k++)
                i = i << 8 | s[k];
        return i;
}

int main(void) {
        for (int n = 1; n <= 3; n++)
                if (!(whole[n] = calloc(map_bits[n] / 8, 1)) || !(prefix[n] = calloc(map_bits[n] / 8, 1)))
                        return 1;

        /* Every scalar value decodes to itself. */
        for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
                if (cp >= 0xd800 && cp <= 0xdfff)
                        continue;
                uint8_t b[4], pad[8];
                size_t n = encode(cp, b), got_n;
                uint32_t got = 0xffffffff;
                memcpy(pad, b, n);
                memset(pad + n, 0x80, sizeof(pad) - n); /* more bytes after it change nothing */
                CHECK((got_n = lmp_utf8_decode(pad, sizeof(pad), &got)) == n && got == cp,
                      "U+%04X: length %zu code point %X", (unsigned)cp, got_n, (unsigned)got);
                CHECK(lmp_utf8_char_len(b, n - 1) == 0, "U+%04X cut short is not a character", (unsigned)cp);
                if (n < 4)
                        set(whole[n], index_of(b, n));
                for (size_t k = 1; k < n; k++)
                        set(prefix[k], index_of(b, k));
        }

        /* Nothing else is one: all strings of 1..3 bytes. */
        CHECK(lmp_utf8_char_len((const uint8_t *)"", 0) == 0, "empty");
        for (int n = 1; n <= 3; n++) {
                for (size_t i = 0; i < map_bits[n]; i++) {
                        uint8_t s[3];
                        size_t x = i;
                        for (int k = n - 1; k >= 0; k--, x >>= 8)
                                s[k] = (uint8_t)x;
                        size_t len = lmp_utf8_char_len(s, (size_t)n);
                        CHECK((len == (size_t)n) == get(whole[n], i), "%d bytes %02x%02x%02x: length %zu", n, s[0],
                              n > 1 ? s[1] : 0, n > 2 ? s[2] : 0, len);
                        /* The tail held back: the proper prefix a string ends with. */
                        size_t want = 0;
                        for (int k = n; k >= 1 && !want; k--)
                                if (get(prefix[k], index_of(s + n - k, (size_t)k)))
                                        want = (size_t)k;
                        size_t hold = lmp_utf8_incomplete_tail(s, (size_t)n);
                        CHECK(hold == want, "tail of %d bytes %02x%02x%02x: %zu, expected %zu", n, s[0],
                              n > 1 ? s[1] : 0, n > 2 ? s[2] : 0, hold, want);
                }
        }
        /* Four bytes: a character when the first three are a prefix of one
         * and the last a continuation byte. */
        static const uint8_t last[] = { 0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff };
        for (size_t i = (size_t)0xf0 << 16; i < (size_t)1 << 24; i++) {
                for (size_t k = 0; k < sizeof(last); k++) {
                        uint8_t s[4] = { (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, last[k] };
                        int want = get(prefix[3], i) && last[k] >= 0x80 && last[k] <= 0xbf;
                        size_t len = lmp_utf8_char_len(s, 4);
                        CHECK((len == 4) == want, "4 bytes %02x%02x%02x%02x: length %zu", s[0], s[1], s[2], s[3], len);
                }
        }

        /* Longer strings: only the last three bytes count. */
        uint64_t r = 0x9e3779b97f4a7c15ULL;
        for (int t = 0; t < 200000; t++) {
                uint8_t s[8];
                for (size_t k = 0; k < sizeof(s); k++) {
                        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                        s[k] = (uint8_t)(r & 0x100 ? 0x80 | (r & 0x3f) : r >> 24);
                }
                size_t want = 0;
                for (int k = 3; k >= 1 && !want; k--)
                        if (get(prefix[k], index_of(s + sizeof(s) - k, (size_t)k)))
                                want = (size_t)k;
                CHECK(lmp_utf8_incomplete_tail(s, sizeof(s)) == want, "random tail");
        }

        for (int n = 1; n <= 3; n++) {
                free(whole[n]);
                free(prefix[n]);
        }
        if (failures)
                return 1;
        printf("utf8: ok\n");
        return 0;
}

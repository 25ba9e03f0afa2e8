/* Base64 (RFC 4648, the standard alphabet) for images carried in JSON.
 * Decoding is strict: only the alphabet, '=' padding at the end (it may be
 * left out), no whitespace, no bits left over in the last character. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bytes that n characters of base64 decode to, at most. */
static inline size_t lmp_base64_decoded_max(size_t n) {
        return n / 4 * 3 + 3;
}
/* Characters (without the NUL) that n bytes encode to. */
static inline size_t lmp_base64_encoded_len(size_t n) {
        return (n + 2) / 3 * 4;
}

/* Decodes n characters of s into out (room for lmp_base64_decoded_max(n)
 * bytes); *ret_len gets the bytes written. Returns 0, or -EINVAL with
 * *ret_at the offset of the first character that cannot be there. */
int lmp_base64_decode(const char *s, size_t n, uint8_t *out, size_t *ret_len, size_t *ret_at);

/* Encodes n bytes into out (room for lmp_base64_encoded_len(n) + 1),
 * padded, NUL-terminated. */
void lmp_base64_encode(const uint8_t *in, size_t n, char *out);

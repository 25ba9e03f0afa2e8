/* Base64, strict on input (see base64.h). */
#include "common/base64.h"

#include <errno.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int value(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int lmp_base64_decode(const char *s, size_t n, uint8_t *out, size_t *ret_len, size_t *ret_at) {
        size_t end = n, len = 0;
        /* Up to two '=' at the end, and only to complete a group of four. */
        if (end > 0 && s[end - 1] == '=')
                end--;
        if (end > 0 && s[end - 1] == '=')
                end--;
        if (end != n && n % 4 != 0) {
                *ret_at = end;
                return -EINVAL;
        }
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < end; i++) {
                int v = value((unsigned char)s[i]);
                if (v < 0) {
                        *ret_at = i;
                        return -EINVAL;
                }
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[len++] = (uint8_t)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* One character alone cannot make a byte; leftover bits must be 0. */
        if (end % 4 == 1 || acc != 0) {
                *ret_at = end ? end - 1 : 0;
                return -EINVAL;
        }
        *ret_len = len;
        return 0;
}

void lmp_base64_encode(const uint8_t *in, size_t n, char *out) {
        size_t i = 0;
        for (; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                *out++ = alphabet[v >> 18];
                *out++ = alphabet[(v >> 12) & 63];
                *out++ = alphabet[(v >> 6) & 63];
                *out++ = alphabet[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
                *out++ = alphabet[v >> 18];
                *out++ = alphabet[(v >> 12) & 63];
                *out++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
                *out++ = '=';
        }
        *out = '\0';
}

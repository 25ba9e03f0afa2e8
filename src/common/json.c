/* The JSON string escaper (json.h). */
#include "common/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/macros.h"
#include "common/utf8.h"

size_t lmp_json_escaped_max(size_t n) {
        size_t worst;
        if (lmp_mul_overflow(n, (size_t)6, &worst) || lmp_add_overflow(worst, (size_t)2, &worst))
                return 0;
        return worst;
}

size_t lmp_json_escape(char *out, const char *s, size_t n, bool escape_del) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *p = (const uint8_t *)s;
        char *o = out;
        *o++ = '"';
        for (size_t i = 0; i < n;) {
                uint8_t c = p[i];
                if (c >= 0x80) {
                        size_t k = lmp_utf8_char_len(p + i, n - i);
                        if (k == 0) {
                                memcpy(o, "\xef\xbf\xbd", 3);
                                o += 3;
                                i++;
                        } else {
                                memcpy(o, p + i, k);
                                o += k;
                                i += k;
                        }
                        continue;
                }
                i++;
                if (c == '"' || c == '\\') {
                        *o++ = '\\';
                        *o++ = (char)c;
                } else if (c == 0) {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                } else if (c < 0x20 || (c == 0x7f && escape_del)) {
                        const char *short_esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r"
                                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
                        if (short_esc) {
                                memcpy(o, short_esc, 2);
                                o += 2;
                        } else {
                                memcpy(o, "\\u00", 4);
                                o[4] = hex[c >> 4];
                                o[5] = hex[c & 15];
                                o += 6;
                        }
                } else {
                        *o++ = (char)c;
                }
        }
        *o++ = '"';
        return (size_t)(o - out);
}

/* The end of the string whose opening quote is s[i], or n. */
static size_t string_end(const char *s, size_t n, size_t i) {
        for (i++; i < n; i++) {
                if (s[i] == '\\')
                        i++;
                else if (s[i] == '"')
                        return i + 1;
        }
        return n + 1;
}

size_t lmp_json_value_len(const char *s, size_t n) {
        size_t i = 0, depth = 0;
        if (n == 0)
                return 0;
        if (s[0] != '{' && s[0] != '[' && s[0] != '"') {
                /* a number or a literal: up to a delimiter */
                while (i < n && (unsigned char)s[i] > ' ' && !strchr(",]}:", s[i]))
                        i++;
                return i;
        }
        do {
                if (s[i] == '"') {
                        i = string_end(s, n, i);
                        if (i > n)
                                return 0;
                        continue;
                }
                if (s[i] == '{' || s[i] == '[')
                        depth++;
                else if (s[i] == '}' || s[i] == ']')
                        depth--;
                i++;
        } while (depth > 0 && i < n);
        return depth == 0 ? i : 0;
}

size_t lmp_json_minify(char *out, const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *)s;
        size_t k = 0;
        bool in_str = false;
        for (size_t i = 0; i < n;) {
                unsigned char c = p[i];
                if (!in_str) {
                        if (c == '"')
                                in_str = true;
                        if (c > ' ') /* what cJSON skips as whitespace */
                                out[k++] = (char)c;
                        i++;
                        continue;
                }
                if (c == '"') {
                        in_str = false;
                        out[k++] = '"';
                        i++;
                } else if (c == '\\' && i + 1 < n) {
                        if (p[i + 1] == 'u' && i + 6 <= n && memcmp(p + i + 2, "0000", 4) == 0) {
                                memcpy(out + k, "\\ufffd", 6); /* C strings cannot carry U+0000 */
                                k += 6;
                                i += 6;
                        } else {
                                out[k++] = '\\';
                                out[k++] = (char)p[i + 1];
                                i += 2;
                        }
                } else if (c < 0x20) {
                        k += (size_t)snprintf(out + k, 7, "\\u%04x", c);
                        i++;
                } else {
                        size_t m = lmp_utf8_char_len(p + i, n - i);
                        if (m == 0) {
                                memcpy(out + k, "\xef\xbf\xbd", 3);
                                k += 3;
                                i++;
                        } else {
                                memcpy(out + k, p + i, m);
                                k += m;
                                i += m;
                        }
                }
        }
        return k;
}

/* Whitespace as cJSON skips it: every byte up to the space. */
static bool is_ws(char c) {
        return (unsigned char)c <= ' ';
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
        while (i < n && is_ws(s[i]))
                i++;
        return i;
}

bool lmp_json_member(const char *obj, size_t n, const char *key, size_t *ret_off, size_t *ret_len) {
        size_t k = strlen(key), i = skip_ws(obj, n, 1);
        while (i < n && obj[i] == '"') {
                size_t kl = lmp_json_value_len(obj + i, n - i);
                if (!kl)
                        return false;
                bool match = kl == k + 2 && memcmp(obj + i + 1, key, k) == 0;
                i = skip_ws(obj, n, i + kl);
                if (i >= n || obj[i] != ':')
                        return false;
                i = skip_ws(obj, n, i + 1);
                size_t vl = lmp_json_value_len(obj + i, n - i);
                if (!vl)
                        return false;
                if (match) {
                        *ret_off = i;
                        *ret_len = vl;
                        return true;
                }
                i = skip_ws(obj, n, i + vl);
                if (i < n && obj[i] == ',')
                        i = skip_ws(obj, n, i + 1);
        }
        return false;
}


/* The JSON string escaper (json.h). */
#include "common/json.h"

#include <stdint.h>
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

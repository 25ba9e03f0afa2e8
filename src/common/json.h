/* Writing a JSON string: the one escaper of the wire protocol's messages
 * (src/proto) and of the chat templates' tojson filter
 * (src/tokenizer/chat_template.c), which differ only in DEL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The most bytes lmp_json_escape() writes for n bytes: each one as a
 * \u00XX escape, and the two quotes. 0 when that overflows a size_t. */
size_t lmp_json_escaped_max(size_t n);

/* Writes s (n bytes, any bytes) as a JSON string with its quotes into out
 * (lmp_json_escaped_max(n) bytes; no NUL is added) and returns the length
 * written. Quotes, backslashes and control characters are escaped, with
 * the short forms (\n, \t, ...) where JSON has them; each byte that is not
 * part of well-formed UTF-8, and NUL, becomes U+FFFD; everything else is
 * copied as it is, as Python's json.dumps(ensure_ascii=False) writes it.
 * escape_del also writes DEL (0x7f) as \u007f. */
size_t lmp_json_escape(char *out, const char *s, size_t n, bool escape_del);

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

/* The length of the one JSON value at the start of s (n bytes; no leading
 * whitespace), found by scanning strings and brackets; 0 when s does not
 * start with a value or it does not end within n bytes. For text a JSON
 * parser has accepted (it does not check the syntax inside): it lets a
 * caller keep a value's own bytes (a number as it was written, however
 * long) where a parser would round it. Nesting is counted, not recursed. */
size_t lmp_json_value_len(const char *s, size_t n);

/* Copies the JSON text s (n bytes, which a parser has accepted) to out
 * (6 * n bytes suffice) without the whitespace outside strings, and with
 * its strings made valid for any reader: control characters escaped,
 * bytes that are not UTF-8 and \u0000 written as U+FFFD (as
 * lmp_json_escape() does). Returns the length written. */
size_t lmp_json_minify(char *out, const char *s, size_t n);

/* The bytes of member key's value in the object text obj (n bytes, which a
 * parser has accepted): the first member of that name, as cJSON's look-up
 * takes it, found by its key's bytes (a key written with escapes is not
 * matched). false when there is none. */
bool lmp_json_member(const char *obj, size_t n, const char *key, size_t *ret_off, size_t *ret_len);

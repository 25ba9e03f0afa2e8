/* Helpers shared by the parser and the formatters of src/proto/, not part
 * of its interface. */
#pragma once

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 when the
 * bytes there are not one (overlong, surrogate, above U+10FFFF, cut). */
size_t lmp_proto_utf8_seq(const unsigned char *s, size_t n);

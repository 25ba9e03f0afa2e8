/* Reading a whole (small) file into memory: configuration, JSON test cases,
 * templates. Not for models: those are mapped, never read. */
#pragma once

#include <stddef.h>

/* Reads path into a malloc'd, NUL-terminated buffer (*ret, *ret_len bytes
 * before the NUL; ret_len may be NULL). Returns 0 or a negative errno:
 * -EFBIG for a file over 1 GiB. *ret is untouched on failure. */
int lmp_read_file(const char *path, char **ret, size_t *ret_len);

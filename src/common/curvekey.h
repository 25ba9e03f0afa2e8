/* CURVE keys as lmpool stores them: Z85 text (ZeroMQ's 40-character
 * encoding of a 32-byte key), in the files `lmpool keygen` writes:
 *
 *   a key pair file (mode 0600)         a public key / an allow-list
 *     # comment lines                     # comment lines
 *     public-key: <40 Z85 characters>     <40 Z85 characters> [name...]
 *     secret-key: <40 Z85 characters>     ...one key per line
 *
 * Pure parsing and encoding: no ZeroMQ, no logging. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define LMP_CURVE_KEY_BYTES 32
#define LMP_CURVE_Z85_LEN 40
#define LMP_CURVE_ALLOW_MAX 65536       /* keys in one allow-list file */
#define LMP_CURVE_FILE_MAX (4u << 20)   /* bytes of a key file */

struct lmp_curve_key {
        uint8_t b[LMP_CURVE_KEY_BYTES];
};

/* Decodes exactly 40 Z85 characters (text need not be NUL-terminated after
 * them). -EINVAL on a bad character. */
int lmp_curve_z85_decode(const char *text, struct lmp_curve_key *ret);
/* Writes 40 characters and a NUL into out (41 bytes). */
void lmp_curve_z85_encode(const struct lmp_curve_key *key, char out[LMP_CURVE_Z85_LEN + 1]);

/* Reads a key pair file. The file must not be readable or writable by
 * group or others (-EPERM with a message otherwise), as ssh insists for
 * its private keys. */
int lmp_curve_read_keypair(const char *path, struct lmp_curve_key *ret_public, struct lmp_curve_key *ret_secret,
                           struct lmp_error *err);
/* Reads one public key: a file holding one (a `.pub` file, or the first
 * key of an allow-list), or a key pair file (its public key). */
int lmp_curve_read_public(const char *path, struct lmp_curve_key *ret, struct lmp_error *err);
/* Reads an allow-list: *ret is a malloc'ed array of *ret_n keys (at least
 * one, at most LMP_CURVE_ALLOW_MAX). */
int lmp_curve_read_allowlist(const char *path, struct lmp_curve_key **ret, size_t *ret_n, struct lmp_error *err);

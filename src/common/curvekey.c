/* CURVE key files (curvekey.h): Z85 text in, 32-byte keys out. The files
 * are small and line-oriented; every problem is an error that names the
 * file and the line, never a silently skipped key. */
#include "common/curvekey.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int lmp_curve_z85_decode(const char *text, struct lmp_curve_key *ret) {
        struct lmp_curve_key k;
        for (int i = 0; i < LMP_CURVE_Z85_LEN; i += 5) {
                uint32_t v = 0;
                for (int j = 0; j < 5; j++) {
                        const char *p = text[i + j] ? strchr(z85_chars, text[i + j]) : NULL;
                        if (!p)
                                return -EINVAL;
                        uint64_t nv = (uint64_t)v * 85 + (uint64_t)(p - z85_chars);
                        if (nv > UINT32_MAX)
                                return -EINVAL;
                        v = (uint32_t)nv;
                }
                for (int j = 0; j < 4; j++)
                        k.b[i / 5 * 4 + j] = (uint8_t)(v >> (24 - 8 * j));
        }
        *ret = k;
        return 0;
}

void lmp_curve_z85_encode(const struct lmp_curve_key *key, char out[LMP_CURVE_Z85_LEN + 1]) {
        for (int i = 0; i < LMP_CURVE_KEY_BYTES; i += 4) {
                uint32_t v = (uint32_t)key->b[i] << 24 | (uint32_t)key->b[i + 1] << 16 | (uint32_t)key->b[i + 2] << 8 |
                             key->b[i + 3];
                for (int j = 4; j >= 0; j--) {
                        out[i / 4 * 5 + j] = z85_chars[v % 85];
                        v /= 85;
                }
        }
        out[LMP_CURVE_Z85_LEN] = '\0';
}

/* Reads a key file, refusing one that others may read when `private`. */
static int read_key_file(const char *path, bool private, char **ret, struct lmp_error *err) {
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0) {
                int e = errno;
                close(fd);
                return lmp_error_set(err, -e, "%s: %s", path, strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return lmp_error_set(err, -EINVAL, "%s: not a regular file", path);
        }
        if (private && (st.st_mode & 077)) {
                close(fd);
                return lmp_error_set(err, -EPERM, "%s: a secret key file must not be accessible by group or others "
                                     "(mode %04o; chmod 600 it)", path, (unsigned)(st.st_mode & 07777));
        }
        if (st.st_size > LMP_CURVE_FILE_MAX) {
                close(fd);
                return lmp_error_set(err, -EFBIG, "%s: larger than %u bytes", path, LMP_CURVE_FILE_MAX);
        }
        char *buf = malloc((size_t)st.st_size + 1);
        size_t len = 0;
        if (!buf) {
                close(fd);
                return lmp_error_set(err, -ENOMEM, "%s: out of memory", path);
        }
        while (len < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        buf[len] = '\0';
        if (strlen(buf) != len) {
                free(buf);
                return lmp_error_set(err, -EINVAL, "%s: holds a NUL byte", path);
        }
        *ret = buf;
        return 0;
}

/* The next line of *pos (NUL-terminated in place), its number in *line. */
static char *next_line(char **pos, unsigned *line) {
        char *s = *pos;
        if (!s || !*s)
                return NULL;
        char *nl = strchr(s, '\n');
        if (nl) {
                *nl = '\0';
                *pos = nl + 1;
        } else {
                *pos = s + strlen(s);
        }
        (*line)++;
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* A key at the start of s, followed by nothing or by white space. */
static int key_at(const char *s, struct lmp_curve_key *ret) {
        if (strlen(s) < LMP_CURVE_Z85_LEN || (s[LMP_CURVE_Z85_LEN] && !isspace((unsigned char)s[LMP_CURVE_Z85_LEN])))
                return -EINVAL;
        return lmp_curve_z85_decode(s, ret);
}

static int parse_keypair(const char *path, char *text, struct lmp_curve_key *pub, struct lmp_curve_key *sec,
                         bool *has_sec, struct lmp_error *err) {
        bool has_pub = false;
        unsigned line = 0;
        char *pos = text, *s;
        *has_sec = false;
        while ((s = next_line(&pos, &line))) {
                if (!*s || *s == '#')
                        continue;
                struct lmp_curve_key *k = NULL;
                bool *flag = NULL;
                if (strncmp(s, "public-key:", 11) == 0) {
                        k = pub, flag = &has_pub, s += 11;
                } else if (strncmp(s, "secret-key:", 11) == 0) {
                        k = sec, flag = has_sec, s += 11;
                } else {
                        return lmp_error_set(err, -EINVAL, "%s:%u: expected 'public-key: KEY' or 'secret-key: KEY'",
                                             path, line);
                }
                while (isspace((unsigned char)*s))
                        s++;
                if (*flag)
                        return lmp_error_set(err, -EINVAL, "%s:%u: key given twice", path, line);
                if (strlen(s) != LMP_CURVE_Z85_LEN || lmp_curve_z85_decode(s, k) < 0)
                        return lmp_error_set(err, -EINVAL, "%s:%u: not a key (40 Z85 characters)", path, line);
                *flag = true;
        }
        if (!has_pub)
                return lmp_error_set(err, -EINVAL, "%s: no 'public-key:' line (write key pairs with lmpool keygen)",
                                     path);
        return 0;
}

int lmp_curve_read_keypair(const char *path, struct lmp_curve_key *ret_public, struct lmp_curve_key *ret_secret,
                           struct lmp_error *err) {
        struct lmp_curve_key pub, sec;
        bool has_sec;
        char *text;
        int r = read_key_file(path, true, &text, err);
        if (r < 0)
                return r;
        r = parse_keypair(path, text, &pub, &sec, &has_sec, err);
        free(text);
        if (r < 0)
                return r;
        if (!has_sec)
                return lmp_error_set(err, -EINVAL, "%s: no 'secret-key:' line (a public key is not a key pair)", path);
        *ret_public = pub;
        *ret_secret = sec;
        memset(&sec, 0, sizeof(sec));
        return 0;
}

int lmp_curve_read_public(const char *path, struct lmp_curve_key *ret, struct lmp_error *err) {
        char *text;
        int r = read_key_file(path, false, &text, err);
        if (r < 0)
                return r;
        if (strstr(text, "public-key:")) {
                struct lmp_curve_key sec;
                bool has_sec;
                r = parse_keypair(path, text, ret, &sec, &has_sec, err);
                memset(&sec, 0, sizeof(sec));
                free(text);
                return r;
        }
        unsigned line = 0;
        char *pos = text, *s;
        while ((s = next_line(&pos, &line))) {
                if (!*s || *s == '#')
                        continue;
                r = key_at(s, ret) < 0 ? lmp_error_set(err, -EINVAL, "%s:%u: not a key (40 Z85 characters)", path, line)
                                       : 0;
                free(text);
                return r;
        }
        free(text);
        return lmp_error_set(err, -EINVAL, "%s: holds no key", path);
}

int lmp_curve_read_allowlist(const char *path, struct lmp_curve_key **ret, size_t *ret_n, struct lmp_error *err) {
        struct lmp_curve_key *keys = NULL;
        size_t n = 0, cap = 0;
        unsigned line = 0;
        char *text, *pos, *s;
        int r = read_key_file(path, false, &text, err);
        if (r < 0)
                return r;
        pos = text;
        while ((s = next_line(&pos, &line))) {
                if (!*s || *s == '#')
                        continue;
                if (n == LMP_CURVE_ALLOW_MAX) {
                        r = lmp_error_set(err, -E2BIG, "%s:%u: more than %d keys", path, line, LMP_CURVE_ALLOW_MAX);
                        goto fail;
                }
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        struct lmp_curve_key *p = realloc(keys, nc * sizeof(*keys));
                        if (!p) {
                                r = lmp_error_set(err, -ENOMEM, "%s: out of memory", path);
                                goto fail;
                        }
                        keys = p;
                        cap = nc;
                }
                if (key_at(s, &keys[n]) < 0) {
                        r = lmp_error_set(err, -EINVAL, "%s:%u: not a public key (40 Z85 characters, then an "
                                          "optional name)", path, line);
                        goto fail;
                }
                n++;
        }
        if (n == 0) {
                r = lmp_error_set(err, -EINVAL, "%s: holds no key: no client could connect", path);
                goto fail;
        }
        free(text);
        *ret = keys;
        *ret_n = n;
        return 0;
fail:
        free(text);
        free(keys);
        return r;
}

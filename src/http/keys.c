/* API keys: the file, the lookup and the per-key limits (keys.h). A key is
 * printable ASCII without spaces, 16 to 256 bytes; a line that is not one
 * is an error naming its line, never a key silently dropped. */
#include "http/keys.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_entry(struct lmp_http_keys *k, size_t *cap) {
        if (k->n + 1 >= *cap) {
                size_t ncap = *cap ? *cap * 2 : 16;
                struct lmp_http_key *v = realloc(k->v, ncap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                k->v = v;
                *cap = ncap;
        }
        memset(&k->v[k->n], 0, sizeof(k->v[k->n]));
        k->v[k->n].tokens = k->burst;
        return 0;
}

static int parse_line(struct lmp_http_keys *k, char *line, unsigned lineno, char *msg, size_t msg_size,
                      const char *path) {
        char *p = line, *key, *name = NULL;
        size_t n;

        while (isspace((unsigned char)*p))
                p++;
        if (!*p || *p == '#')
                return 0;
        key = p;
        while (*p && !isspace((unsigned char)*p))
                p++;
        n = (size_t)(p - key);
        if (*p) {
                *p++ = '\0';
                while (isspace((unsigned char)*p))
                        p++;
                if (*p && *p != '#') {
                        name = p;
                        while (*p && !isspace((unsigned char)*p) && *p != '#')
                                p++;
                        *p = '\0';
                }
        }
        if (n < LMP_HTTP_KEY_LEN_MIN || n > LMP_HTTP_KEY_LEN_MAX) {
                snprintf(msg, msg_size, "%s:%u: a key must be %d to %d bytes", path, lineno, LMP_HTTP_KEY_LEN_MIN,
                         LMP_HTTP_KEY_LEN_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
                if (!isgraph((unsigned char)key[i])) {
                        snprintf(msg, msg_size, "%s:%u: a key must be printable ASCII", path, lineno);
                        return -EINVAL;
                }
        if (name && (strlen(name) > LMP_HTTP_KEY_NAME_MAX || strcmp(name, "loopback") == 0)) {
                snprintf(msg, msg_size, "%s:%u: a key's name must be at most %d bytes and not 'loopback'", path,
                         lineno, LMP_HTTP_KEY_NAME_MAX);
                return -EINVAL;
        }
        if (k->n >= LMP_HTTP_KEYS_MAX) {
                snprintf(msg, msg_size, "%s:%u: more than %d keys", path, lineno, LMP_HTTP_KEYS_MAX);
                return -E2BIG;
        }
        for (size_t i = 0; i < k->n; i++)
                if (k->v[i].key_len == n && memcmp(k->v[i].key, key, n) == 0) {
                        snprintf(msg, msg_size, "%s:%u: this key is already given (as %s)", path, lineno,
                                 k->v[i].name);
                        return -EINVAL;
                }
        struct lmp_http_key *e = &k->v[k->n];
        memcpy(e->key, key, n);
        e->key_len = n;
        if (name)
                snprintf(e->name, sizeof(e->name), "%s", name);
        else
                snprintf(e->name, sizeof(e->name), "key%zu", k->n + 1);
        k->n++;
        return 0;
}

int lmp_http_keys_load(const char *path, double rate, int burst, int max_in_flight, struct lmp_http_keys **ret,
                       char *msg, size_t msg_size) {
        struct lmp_http_keys *k = calloc(1, sizeof(*k));
        size_t cap = 0;
        char line[1024];
        unsigned lineno = 0;
        FILE *f = NULL;
        int rc = 0;

        if (!k)
                return -ENOMEM;
        k->rate = rate;
        k->burst = burst;
        k->max_in_flight = max_in_flight;
        if ((rc = add_entry(k, &cap)) < 0)
                goto fail;
        if (path && *path) {
                if (!(f = fopen(path, "re"))) {
                        rc = -errno;
                        snprintf(msg, msg_size, "%s: %s", path, strerror(errno));
                        goto fail;
                }
                while (fgets(line, sizeof(line), f)) {
                        lineno++;
                        if (!strchr(line, '\n') && !feof(f)) {
                                snprintf(msg, msg_size, "%s:%u: a line is longer than %zu bytes", path, lineno,
                                         sizeof(line) - 2);
                                rc = -EINVAL;
                                goto fail;
                        }
                        if ((rc = add_entry(k, &cap)) < 0 ||
                            (rc = parse_line(k, line, lineno, msg, msg_size, path)) < 0)
                                goto fail;
                }
                if (ferror(f)) {
                        rc = -EIO;
                        snprintf(msg, msg_size, "%s: read error", path);
                        goto fail;
                }
                fclose(f);
                f = NULL;
        }
        /* the loopback entry, after the keys */
        memset(&k->v[k->n], 0, sizeof(k->v[k->n]));
        snprintf(k->v[k->n].name, sizeof(k->v[k->n].name), "loopback");
        k->v[k->n].tokens = burst;
        *ret = k;
        return 0;
fail:
        if (rc == -ENOMEM)
                snprintf(msg, msg_size, "out of memory");
        if (f)
                fclose(f);
        lmp_http_keys_free(k);
        return rc;
}

void lmp_http_keys_free(struct lmp_http_keys *k) {
        if (!k)
                return;
        explicit_bzero(k->v, (k->n + 1) * sizeof(*k->v));
        free(k->v);
        free(k);
}

int lmp_http_keys_find(const struct lmp_http_keys *k, const char *token, size_t len) {
        int found = -1;
        if (len < LMP_HTTP_KEY_LEN_MIN || len > LMP_HTTP_KEY_LEN_MAX)
                return -1;
        for (size_t i = 0; i < k->n; i++) {
                const struct lmp_http_key *e = &k->v[i];
                unsigned char diff = (unsigned char)(e->key_len != len);
                for (size_t j = 0; j < len; j++)
                        diff |= (unsigned char)(token[j] ^ e->key[j < e->key_len ? j : 0]);
                if (diff == 0)
                        found = (int)i;
        }
        return found;
}

int lmp_http_keys_loopback(const struct lmp_http_keys *k) {
        return (int)k->n;
}

int lmp_http_keys_admit(struct lmp_http_keys *k, int i, double now_s, int *ret_retry_s) {
        struct lmp_http_key *e = &k->v[i];
        if (e->last_s > 0 && now_s > e->last_s)
                e->tokens = fmin(k->burst, e->tokens + (now_s - e->last_s) * k->rate);
        e->last_s = now_s;
        if (e->in_flight >= k->max_in_flight) {
                e->concurrency_limited++;
                *ret_retry_s = 1;
                return -EBUSY;
        }
        if (e->tokens < 1) {
                e->rate_limited++;
                double wait = (1 - e->tokens) / k->rate;
                *ret_retry_s = wait < 1 ? 1 : wait > 86400 ? 86400 : (int)ceil(wait);
                return -EAGAIN;
        }
        e->tokens -= 1;
        e->in_flight++;
        e->requests++;
        return 0;
}

void lmp_http_keys_release(struct lmp_http_keys *k, int i) {
        if (k->v[i].in_flight > 0)
                k->v[i].in_flight--;
}

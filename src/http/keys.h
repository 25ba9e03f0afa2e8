/* The gateway's API keys and what each may do: a key file (one key per
 * line, an optional name after it, # comments), constant-time lookup of a
 * bearer token, and per key a token bucket (requests per second, burst)
 * and a count of requests in flight. The last entry is the anonymous
 * `loopback` caller that http.loopback_without_key lets in. Pure: the
 * caller passes the time; no I/O but reading the file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LMP_HTTP_KEYS_MAX 4096          /* keys in one file */
#define LMP_HTTP_KEY_LEN_MIN 16         /* bytes in a key: shorter ones are guessable */
#define LMP_HTTP_KEY_LEN_MAX 256
#define LMP_HTTP_KEY_NAME_MAX 64

struct lmp_http_key {
        char key[LMP_HTTP_KEY_LEN_MAX + 1];
        size_t key_len;
        char name[LMP_HTTP_KEY_NAME_MAX + 1];   /* "keyN" (its place in the file) when it has none */
        double tokens;                          /* the bucket's level */
        double last_s;                          /* when it was last filled */
        int in_flight;
        uint64_t requests, rate_limited, concurrency_limited;
};

struct lmp_http_keys {
        struct lmp_http_key *v;         /* n keys from the file, then the loopback entry */
        size_t n;
        double rate, burst;
        int max_in_flight;
};

/* Loads path ("" or NULL: no file, only the loopback entry). On failure
 * returns -errno and writes "FILE:LINE: what" into msg. */
int lmp_http_keys_load(const char *path, double rate, int burst, int max_in_flight, struct lmp_http_keys **ret,
                       char *msg, size_t msg_size);
void lmp_http_keys_free(struct lmp_http_keys *k);

/* The entry of a bearer token, or -1; every key is compared in full. */
int lmp_http_keys_find(const struct lmp_http_keys *k, const char *token, size_t len);
/* The loopback entry's index. */
int lmp_http_keys_loopback(const struct lmp_http_keys *k);

/* Admits one generation request of key i at now_s: 0 (the bucket paid,
 * in_flight counted), -EAGAIN with *ret_retry_s (whole seconds until a
 * token) when the rate is spent, -EBUSY when too many are in flight. */
int lmp_http_keys_admit(struct lmp_http_keys *k, int i, double now_s, int *ret_retry_s);
void lmp_http_keys_release(struct lmp_http_keys *k, int i);

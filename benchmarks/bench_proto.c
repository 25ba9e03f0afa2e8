/* Wire protocol costs: the router parses every client frame and the
 * workers format one token event per generated token, so both must stay
 * far below a token's time. Measures nanoseconds per operation (and MB/s
 * for the large frame) of parsing typical requests and a 1 MiB prompt,
 * and of formatting token, done and canonical request JSON into a reused
 * buffer. Prints one JSON line per case, then a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/proto.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct result {
        const char *name;
        double ns;
        double bytes;   /* input or output bytes per op */
};

static const char generate[] =
        "{\"v\":1,\"id\":\"r42\",\"type\":\"generate\",\"model\":\"tinyllama\",\"prompt\":\"Once upon a time, in a "
        "land far away, there lived a small dragon who wanted to learn to read.\",\"max_tokens\":128,"
        "\"temperature\":0.7,\"top_k\":40,\"top_p\":0.95,\"seed\":1234,\"stop\":[\"\\n\\n\"]}";

static char *chat_frame(void) {
        size_t cap = 8192, n = 0;
        char *s = malloc(cap);
        n += (size_t)snprintf(s + n, cap - n, "{\"v\":1,\"id\":\"c1\",\"type\":\"chat\",\"model\":\"qwen\",\"messages\":[");
        for (int i = 0; i < 8; i++)
                n += (size_t)snprintf(s + n, cap - n, "%s{\"role\":\"%s\",\"content\":\"Message %d: a sentence of "
                                                      "ordinary length with an \\u00e9 and a \\\"quote\\\".\"}",
                                      i ? "," : "", i % 2 ? "assistant" : "user", i);
        snprintf(s + n, cap - n, "],\"max_tokens\":256}");
        return s;
}

static char *big_frame(size_t *ret_len) {
        const char *head = "{\"id\":\"big\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"";
        size_t hl = strlen(head), n = LMP_PROTO_FRAME_MAX;
        char *s = malloc(n);
        memcpy(s, head, hl);
        for (size_t i = hl; i < n - 2; i++)
                s[i] = "abcdefgh ijklmnop\xc3\xa9"[i % 19];
        /* keep the 2-byte character whole at the end */
        if ((n - 2 - hl) % 19 == 18)
                s[n - 3] = 'x';
        memcpy(s + n - 2, "\"}", 2);
        *ret_len = n;
        return s;
}

static double time_parse(const char *frame, size_t len, int iters) {
        struct lmp_request r;
        struct lmp_proto_error e;
        double t0 = now();
        for (int i = 0; i < iters; i++) {
                if (lmp_proto_parse_request(frame, len, &r, &e) < 0) {
                        fprintf(stderr, "bench_proto: frame refused: %s\n", e.message);
                        exit(1);
                }
                lmp_request_clear(&r);
        }
        return (now() - t0) * 1e9 / iters;
}

int main(void) {
        struct result res[8];
        int n = 0, iters = 20000;
        struct lmp_proto_buf b = { 0 };
        struct lmp_request req;
        struct lmp_proto_error e;

        res[n++] = (struct result){ "parse generate", time_parse(generate, strlen(generate), iters),
                                    (double)strlen(generate) };
        char *chat = chat_frame();
        res[n++] = (struct result){ "parse chat (8 messages)", time_parse(chat, strlen(chat), iters / 4),
                                    (double)strlen(chat) };
        size_t big_len;
        char *big = big_frame(&big_len);
        res[n++] = (struct result){ "parse 1 MiB prompt", time_parse(big, big_len, 20), (double)big_len };

        int32_t ids[1] = { 15043 };
        double t0 = now();
        for (int i = 0; i < iters * 10; i++) {
                b.len = 0;
                lmp_proto_format_token(&b, "r42", " world", 6, NULL, 0);
        }
        res[n++] = (struct result){ "format token", (now() - t0) * 1e9 / (iters * 10), (double)b.len };
        t0 = now();
        for (int i = 0; i < iters * 10; i++) {
                b.len = 0;
                lmp_proto_format_token(&b, "r42", " w\xc3\xb6rld", 7, ids, 1);
        }
        res[n++] = (struct result){ "format token + ids", (now() - t0) * 1e9 / (iters * 10), (double)b.len };
        struct lmp_done d = { .finish = LMP_FINISH_LENGTH, .usage = { 12, 128 },
                              .timings = { 0.4, 35.0, 36.1, 1450.2, 70.8 }, .worker = "tinyllama/1" };
        t0 = now();
        for (int i = 0; i < iters; i++) {
                b.len = 0;
                lmp_proto_format_done(&b, "r42", &d);
        }
        res[n++] = (struct result){ "format done", (now() - t0) * 1e9 / iters, (double)b.len };
        if (lmp_proto_parse_request(chat, strlen(chat), &req, &e) < 0)
                return 1;
        t0 = now();
        for (int i = 0; i < iters; i++) {
                b.len = 0;
                lmp_proto_format_request(&b, &req);
        }
        res[n++] = (struct result){ "format request (chat)", (now() - t0) * 1e9 / iters, (double)b.len };
        lmp_request_clear(&req);

        for (int i = 0; i < n; i++)
                printf("{\"bench\":\"proto\",\"case\":\"%s\",\"ns_per_op\":%.1f,\"bytes\":%.0f,\"mb_per_s\":%.1f}\n",
                       res[i].name, res[i].ns, res[i].bytes, res[i].bytes / res[i].ns * 1e3);
        printf("\n%-26s %12s %10s %10s\n", "case", "ns/op", "bytes", "MB/s");
        for (int i = 0; i < n; i++)
                printf("%-26s %12.1f %10.0f %10.1f\n", res[i].name, res[i].ns, res[i].bytes,
                       res[i].bytes / res[i].ns * 1e3);
        lmp_proto_buf_free(&b);
        free(chat);
        free(big);
        return 0;
}

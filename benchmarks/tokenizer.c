/* Tokenizer throughput per fixture vocabulary: MB/s of text tokenized
 * (one long text of about 1 MB, and the short fixture texts one call
 * each) and MB/s of text produced by detokenization. The text is the
 * fixture cases' texts ($LMPOOL_FIXTURES/tokenizer/NAME.json: several
 * scripts, code, emoji, whitespace runs) concatenated. Prints one JSON
 * line per vocabulary, then a table.
 *   bench_tokenizer [SECONDS_PER_FIGURE]   (default 0.3) */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/readfile.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#define TARGET_BYTES (1u << 20)

struct result {
        const char *name;
        size_t bytes, tokens;
        double tok_long, tok_short, detok;
};

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench(const char *dir, const char *name, double secs, struct result *res) {
        char path[4096];
        struct lmp_gguf *g;
        struct lmp_vocab *v;
        struct lmp_error err = { 0 };

        snprintf(path, sizeof(path), "%s/tokenizer/%s.json", dir, name);
        char *json = NULL;
        lmp_read_file(path, &json, NULL);
        cJSON *root = json ? cJSON_Parse(json) : NULL;
        free(json);
        if (!root) {
                fprintf(stderr, "bench_tokenizer: cannot read %s\n", path);
                return -1;
        }
        snprintf(path, sizeof(path), "%s/tokenizer/%s.gguf", dir, name);
        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_vocab_load(g, &v, &err) < 0) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                cJSON_Delete(root);
                return -1;
        }
        lmp_gguf_free(g);

        /* The case texts, one after another, repeated to about 1 MB. */
        const cJSON *c, *cases = cJSON_GetObjectItem(root, "cases");
        size_t one = 0, n_cases = 0;
        cJSON_ArrayForEach(c, cases) {
                const cJSON *t = cJSON_GetObjectItem(c, "text");
                if (cJSON_IsString(t)) {
                        one += strlen(t->valuestring) + 1;
                        n_cases++;
                }
        }
        size_t reps = one ? TARGET_BYTES / one + 1 : 0;
        char *text = malloc(one * reps + 1);
        size_t len = 0;
        for (size_t r = 0; r < reps; r++) {
                cJSON_ArrayForEach(c, cases) {
                        const cJSON *t = cJSON_GetObjectItem(c, "text");
                        if (!cJSON_IsString(t))
                                continue;
                        size_t l = strlen(t->valuestring);
                        memcpy(text + len, t->valuestring, l);
                        len += l;
                        text[len++] = '\n';
                }
        }

        size_t n_ids = 0;
        lmp_tokenize(v, text, len, false, true, NULL, 0, &n_ids);
        int32_t *ids = malloc((n_ids + 1) * sizeof(int32_t));
        char *out = malloc(len + 1);
        size_t out_len, iters;
        double t0;

        /* Long text, one call. */
        iters = 0;
        t0 = now();
        do {
                lmp_tokenize(v, text, len, false, true, ids, n_ids, &n_ids);
                iters++;
        } while (now() - t0 < secs);
        res->tok_long = (double)len * (double)iters / (now() - t0) / 1e6;

        /* Short texts, one call each (the cost of a chat turn). */
        int32_t *small = malloc(65536 * sizeof(int32_t));
        size_t bytes = 0;
        iters = 0;
        t0 = now();
        do {
                cJSON_ArrayForEach(c, cases) {
                        const cJSON *t = cJSON_GetObjectItem(c, "text");
                        if (!cJSON_IsString(t))
                                continue;
                        size_t l = strlen(t->valuestring), k;
                        lmp_tokenize(v, t->valuestring, l, true, true, small, 65536, &k);
                        bytes += l;
                }
                iters++;
        } while (now() - t0 < secs);
        res->tok_short = (double)bytes / (now() - t0) / 1e6;

        /* Detokenization of the long text's ids. */
        iters = 0;
        t0 = now();
        do {
                lmp_detokenize(v, ids, n_ids, LMP_DETOK_SPECIAL, out, len + 1, &out_len);
                iters++;
        } while (now() - t0 < secs);
        res->detok = (double)out_len * (double)iters / (now() - t0) / 1e6;

        res->name = name;
        res->bytes = len;
        res->tokens = n_ids;
        free(small);
        free(out);
        free(ids);
        free(text);
        lmp_vocab_free(v);
        cJSON_Delete(root);
        (void)n_cases;
        return 0;
}

int main(int argc, char **argv) {
        const char *dir = getenv("LMPOOL_FIXTURES");
        const char *names[] = { "llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2" };
        struct result res[5];
        double secs = argc > 1 ? atof(argv[1]) : 0.3;
        int n = 0;

        if (!dir) {
                fprintf(stderr, "bench_tokenizer: LMPOOL_FIXTURES is not set\n");
                return 77;
        }
        for (int i = 0; i < 5; i++) {
                if (bench(dir, names[i], secs, &res[n]) < 0)
                        continue;
                printf("{\"bench\": \"tokenizer\", \"vocab\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, "
                       "\"bytes_per_token\": %.2f, \"tokenize_long_MBps\": %.2f, \"tokenize_short_MBps\": %.2f, "
                       "\"detokenize_MBps\": %.1f}\n",
                       res[n].name, res[n].bytes, res[n].tokens, (double)res[n].bytes / (double)res[n].tokens,
                       res[n].tok_long, res[n].tok_short, res[n].detok);
                n++;
        }
        printf("\n%-10s %9s %9s %9s %14s %15s %13s\n", "vocab", "bytes", "tokens", "B/token", "tokenize MB/s",
               "short-text MB/s", "detok MB/s");
        for (int i = 0; i < n; i++)
                printf("%-10s %9zu %9zu %9.2f %14.2f %15.2f %13.1f\n", res[i].name, res[i].bytes, res[i].tokens,
                       (double)res[i].bytes / (double)res[i].tokens, res[i].tok_long, res[i].tok_short, res[i].detok);
        return n == 5 ? 0 : 1;
}

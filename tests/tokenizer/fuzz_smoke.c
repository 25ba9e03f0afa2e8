/* A deterministic, bounded run of the tokenizer fuzz target
 * (tests/fuzz/fuzz_tokenizer.c) for the unit suite, which needs neither
 * clang nor libFuzzer: the fixture case texts with random damage (flipped
 * bits, stray continuation and lead bytes, truncated characters, special
 * token text spliced in) through every vocabulary and flag combination,
 * and the llama-spm vocabulary file with bytes of its metadata changed.
 * The target aborts on any broken invariant; the sanitizers catch the
 * rest when this runs in an ASan/UBSan build. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/readfile.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static const char *const splices[] = {
        "\x80", "\xbf", "\xc3", "\xe4\xb8", "\xf0\x9f", "\xf0\x9f\xa6", "\xff", "\xc0\xaf", "\xed\xa0\x80",
        "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "\xe2\x96\x81",
        "  ", "\r\n", "\t", "'s", "123456",
};

/* One damaged copy of text into buf (selector byte first); returns its size. */
static size_t damage(const char *text, size_t len, uint8_t *buf, size_t cap) {
        size_t n = 0;
        buf[n++] = (uint8_t)next();
        for (size_t i = 0; i < len && n + 16 < cap; i++) {
                uint64_t r = next() % 64;
                if (r == 0) {
                        const char *s = splices[next() % (sizeof(splices) / sizeof(splices[0]))];
                        size_t l = strlen(s);
                        memcpy(buf + n, s, l);
                        n += l;
                } else if (r == 1) {
                        buf[n++] = (uint8_t)(text[i] ^ (1u << (next() % 8)));
                        continue;
                } else if (r == 2) {
                        continue; /* drop a byte: truncates characters */
                }
                buf[n++] = (uint8_t)text[i];
        }
        return n;
}

int main(void) {
        const char *dir = getenv("LMPOOL_FIXTURES");
        char path[4096];
        size_t len;
        snprintf(path, sizeof(path), "%s/tokenizer/llama-spm.json", dir ? dir : "");
        char *json = NULL;
        if (dir)
                lmp_read_file(path, &json, &len);
        if (!json) {
                printf("tokenizer fixtures not found (LMPOOL_FIXTURES): skipped\n");
                return 77;
        }
        LLVMFuzzerInitialize(NULL, NULL);

        cJSON *root = cJSON_Parse(json);
        const cJSON *c, *cases = cJSON_GetObjectItem(root, "cases");
        uint8_t *buf = malloc(1 << 16);
        size_t runs = 0;
        for (int round = 0; round < 24; round++) {
                cJSON_ArrayForEach(c, cases) {
                        const cJSON *t = cJSON_GetObjectItem(c, "text");
                        if (!cJSON_IsString(t))
                                continue;
                        size_t n = damage(t->valuestring, strlen(t->valuestring), buf, 1 << 16);
                        /* Every vocabulary and flag combination sees every text. */
                        for (int sel = 0; sel < 5 * 4; sel++) {
                                buf[0] = (uint8_t)(sel % 5 + 5 * (next() % 51));
                                LLVMFuzzerTestOneInput(buf, n);
                                runs++;
                        }
                }
        }
        /* Pure noise. */
        for (int i = 0; i < 500; i++) {
                size_t n = 1 + next() % 512;
                for (size_t k = 0; k < n; k++)
                        buf[k] = (uint8_t)next();
                if (n >= 4 && !memcmp(buf, "GGUF", 4))
                        buf[0] = 0;
                LLVMFuzzerTestOneInput(buf, n);
                runs++;
        }
        free(buf);
        cJSON_Delete(root);
        free(json);

        /* The vocabulary file with some metadata bytes changed. */
        snprintf(path, sizeof(path), "%s/tokenizer/llama-spm.gguf", dir);
        char *gguf_text = NULL;
        lmp_read_file(path, &gguf_text, &len);
        uint8_t *gguf = (uint8_t *)gguf_text;
        if (gguf) {
                uint8_t *copy = malloc(len);
                for (int i = 0; i < 100; i++) {
                        memcpy(copy, gguf, len);
                        for (int k = 0; k < 4; k++) {
                                size_t at = 4 + next() % (len < 200000 ? len - 4 : 200000);
                                copy[at] = (uint8_t)next();
                        }
                        LLVMFuzzerTestOneInput(copy, len);
                        runs++;
                }
                free(copy);
                free(gguf);
        }
        printf("%zu inputs, no invariant broken\n", runs);
        return 0;
}

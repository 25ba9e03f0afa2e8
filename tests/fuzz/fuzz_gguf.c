/* libFuzzer target for the GGUF reader: any byte string must give either a
 * valid file whose every accessor stays in bounds, or an error with a
 * message, never a crash, a sanitizer report or a hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };
        volatile uint64_t sink = 0;

        if (lmp_gguf_open_mem(data, size, &g, &err) < 0) {
                if (err.msg[0] == '\0' || err.code >= 0)
                        abort(); /* every failure carries a code and a message */
                return 0;
        }
        /* Touch everything the reader hands out. */
        for (uint64_t i = 0; i < g->n_kv; i++) {
                const struct lmp_gguf_kv *kv = &g->kv[i];
                char key[64];
                size_t n = kv->key.len < sizeof(key) - 1 ? (size_t)kv->key.len : sizeof(key) - 1;
                memcpy(key, kv->key.ptr, n);
                key[n] = '\0';
                if (kv->value.type == LMP_GGUF_ARRAY) {
                        struct lmp_gguf_iter it;
                        struct lmp_gguf_value e;
                        lmp_gguf_iter_init(&it, &kv->value);
                        while (lmp_gguf_iter_next(&it, &e))
                                sink += e.size ? e.data[e.size - 1] : 0;
                } else if (kv->value.size) {
                        sink += kv->value.data[kv->value.size - 1];
                }
                uint64_t u;
                (void)lmp_gguf_get_u64(g, key, &u);
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                if (t->size)
                        sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->size - 1];
        }
        (void)sink;
        lmp_gguf_free(g);
        return 0;
}

/* libFuzzer target for model loading and the forward pass: any GGUF file
 * that the reader accepts must either be refused by lmp_model_load() with a
 * code and a message naming the problem, or load and evaluate a short
 * batch (a prompt of three tokens, then one decode step) without a crash,
 * a sanitizer report or a hang. Seeded with the small fixture models, so
 * mutations reach the metadata and tensor infos of real files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct lmp_threadpool *pool;
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_ctx *c = NULL;
        struct lmp_error err = { 0 };

        if (!pool && lmp_threadpool_new(2, &pool) < 0)
                abort();
        if (lmp_gguf_open_mem(data, size, &g, &err) < 0)
                return 0;
        int r = lmp_model_load(g, lmp_cpu_isa(), &m, &err);
        if (r < 0) {
                if (err.msg[0] == '\0' || err.code != r)
                        abort(); /* every refusal carries its code and a message */
                goto out;
        }
        struct lmp_ctx_params p = { .n_ctx = 8, .n_seq = 2, .n_batch = 4 };
        if (lmp_ctx_new(m, &p, pool, &c, &err) < 0)
                goto out;
        uint32_t V = m->hp.n_vocab;
        float *logits = malloc(sizeof(float) * 4 * V);
        if (!logits)
                goto out;
        struct lmp_batch_entry b[4] = {
                { .token = 1 % (int32_t)V, .pos = 0, .seq = 0, .logits = false },
                { .token = 2 % (int32_t)V, .pos = 1, .seq = 0, .logits = true },
                { .token = 3 % (int32_t)V, .pos = 0, .seq = 1, .logits = true },
                { .token = (int32_t)(V - 1), .pos = 2, .seq = 0, .logits = true },
        };
        if (lmp_ctx_decode(c, b, 4, logits, &err) == 0) {
                struct lmp_batch_entry e = { .token = 0, .pos = 3, .seq = 0, .logits = true };
                if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0)
                        abort(); /* a valid step after a valid batch cannot fail */
        }
        free(logits);
out:
        lmp_ctx_free(c);
        lmp_model_free(m);
        lmp_gguf_free(g);
        return 0;
}

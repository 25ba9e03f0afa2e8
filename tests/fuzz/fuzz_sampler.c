/* libFuzzer target for the sampler: parameters, bias, logits and history
 * taken from the input bytes. Any of them must either be refused at
 * creation with a message or sample a token inside the vocabulary (or
 * -ENOENT when every token is banned), never crash or trip a sanitizer. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/sampler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
        const uint8_t *p;
        size_t n;
};

static uint32_t take32(struct reader *r) {
        uint32_t v = 0;
        size_t k = r->n < 4 ? r->n : 4;
        memcpy(&v, r->p, k);
        r->p += k;
        r->n -= k;
        return v;
}

static float takef(struct reader *r) {
        uint32_t u = take32(r);
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct reader r = { data, size };
        struct lmp_sampler_params p;
        struct lmp_logit_bias bias[4];
        int32_t n_vocab = (int32_t)(take32(&r) % 300) - 2;

        lmp_sampler_params_default(&p);
        p.temperature = takef(&r);
        p.top_k = (int32_t)take32(&r);
        p.top_p = takef(&r);
        p.min_p = takef(&r);
        p.repeat_penalty = takef(&r);
        p.presence_penalty = takef(&r);
        p.frequency_penalty = takef(&r);
        p.penalty_last_n = (int32_t)(take32(&r) % 80) - 2;
        p.seed = take32(&r);
        p.n_bias = take32(&r) % 5;
        for (size_t i = 0; i < p.n_bias && i < 4; i++) {
                bias[i].token = (int32_t)(take32(&r) % 310) - 5;
                bias[i].bias = takef(&r);
        }
        p.bias = p.n_bias <= 4 ? bias : NULL;

        struct lmp_sampler *s = NULL;
        struct lmp_error err = { 0 };
        if (lmp_sampler_new(n_vocab, &p, &s, &err) < 0) {
                if (s || err.msg[0] == '\0')
                        abort();
                return 0;
        }
        float *logits = malloc((size_t)n_vocab * sizeof(*logits));
        if (!logits) {
                lmp_sampler_free(s);
                return 0;
        }
        for (int32_t i = 0; i < n_vocab; i++)
                logits[i] = r.n ? takef(&r) : (float)(i % 7);
        for (int step = 0; step < 8; step++) {
                int32_t t = lmp_sampler_sample(s, logits);
                if (t == -ENOENT)
                        break;
                if (t < 0 || t >= n_vocab)
                        abort();
                if (lmp_sampler_accept(s, t) < 0)
                        abort();
        }
        lmp_sampler_reset(s);
        free(logits);
        lmp_sampler_free(s);
        return 0;
}

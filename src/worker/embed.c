/* The embedder (embed.h): tokenization with bounds, packing of whole texts
 * into forward passes, pooling (in lmp_ctx_encode) and normalization. */
#include "worker/embed.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmp_embedder {
        const struct lmp_model *m;
        const struct lmp_vocab *v;
        struct lmp_ctx *ctx;
        uint32_t n_ctx, n_batch, n_embd;
        struct lmp_batch_entry *batch;  /* (n_batch) */

        /* Per request, grown to the largest seen. */
        size_t cap;                     /* texts the buffers hold */
        int32_t *ids;                   /* (cap, n_ctx) */
        uint32_t *n_ids;                /* (cap) */
        float *vecs;                    /* (cap, n_embd) */
        uint64_t tokens;
};

void lmp_embedder_free(struct lmp_embedder *e) {
        if (!e)
                return;
        lmp_ctx_free(e->ctx);
        free(e->batch);
        free(e->ids);
        free(e->n_ids);
        free(e->vecs);
        free(e);
}

int lmp_embedder_new(const struct lmp_embedder_params *p, struct lmp_embedder **ret, struct lmp_error *err) {
        const struct lmp_model *m = p->model;
        if (!lmp_model_pools(m))
                return lmp_error_set(err, -EINVAL, "%s",
                                     m->arch->encoder ? "the model's pooling_type is none: it has no "
                                                        "one-vector-per-text embedding"
                                                      : "not an embedding model (a generative one)");
        struct lmp_embedder *e = calloc(1, sizeof(*e));
        if (!e)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        e->m = m;
        e->v = p->vocab;
        e->n_embd = m->hp.n_embd;
        e->n_ctx = p->n_ctx && p->n_ctx < m->hp.n_ctx_train ? p->n_ctx : m->hp.n_ctx_train;
        e->n_batch = LMP_MAX(p->n_batch ? p->n_batch : 2048, e->n_ctx);
        struct lmp_ctx_params cp = { .n_ctx = e->n_ctx, .n_seq = LMP_EMBED_SEQ_MAX, .n_batch = e->n_batch };
        int r = lmp_ctx_new(m, &cp, p->pool, &e->ctx, err);
        if (r < 0) {
                lmp_embedder_free(e);
                return r;
        }
        e->batch = calloc(e->n_batch, sizeof(*e->batch));
        if (!e->batch) {
                lmp_embedder_free(e);
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = e;
        return 0;
}

uint32_t lmp_embedder_n_embd(const struct lmp_embedder *e) { return e->n_embd; }
uint32_t lmp_embedder_n_ctx(const struct lmp_embedder *e) { return e->n_ctx; }

static int reserve(struct lmp_embedder *e, size_t n) {
        if (n <= e->cap)
                return 0;
        size_t ids_n, vec_n;
        if (lmp_mul_overflow(n, (size_t)e->n_ctx, &ids_n) || lmp_mul_overflow(n, (size_t)e->n_embd, &vec_n))
                return -ENOMEM;
        int32_t *ids = realloc(e->ids, ids_n * sizeof(*ids));
        if (ids)
                e->ids = ids;
        uint32_t *n_ids = realloc(e->n_ids, n * sizeof(*n_ids));
        if (n_ids)
                e->n_ids = n_ids;
        float *vecs = realloc(e->vecs, vec_n * sizeof(*vecs));
        if (vecs)
                e->vecs = vecs;
        if (!ids || !n_ids || !vecs)
                return -ENOMEM;
        e->cap = n;
        return 0;
}

/* Text i's ids into its row, bounded by limit tokens. User text is text:
 * "[SEP]" written in it is not the special token. */
static int tokenize_one(struct lmp_embedder *e, size_t i, const char *text, size_t len, uint32_t limit,
                        bool truncate, struct lmp_error *err) {
        int32_t *row = e->ids + i * e->n_ctx;
        size_t n = 0;
        int r = lmp_tokenize(e->v, text, len, true, false, row, limit, &n);
        if (r == -ENOSPC && truncate) {
                /* The first limit - 1 tokens, then the text's last (the [SEP]
                 * that add_special put there) when the vocabulary has one. */
                if (lmp_vocab_sep(e->v) != LMP_TOKEN_NONE)
                        row[limit - 1] = lmp_vocab_sep(e->v);
                n = limit;
                r = 0;
        }
        if (r == -ENOSPC)
                return lmp_error_set(err, -E2BIG, "input %zu: %zu tokens, over the limit of %u", i, n, limit);
        if (r < 0)
                return lmp_error_set(err, r, "input %zu: tokenizer: %s", i, r == -ENOMEM ? "out of memory" : "failed");
        if (n == 0)
                return lmp_error_set(err, -EINVAL, "input %zu: no tokens", i);
        e->n_ids[i] = (uint32_t)n;
        return 0;
}

static void l2_normalize(float *x, uint32_t n) {
        double s = 0.0;
        for (uint32_t i = 0; i < n; i++)
                s += (double)x[i] * x[i];
        if (s <= 0.0)
                return;
        float inv = (float)(1.0 / sqrt(s));
        for (uint32_t i = 0; i < n; i++)
                x[i] *= inv;
}

int lmp_embedder_run(struct lmp_embedder *e, const char *const *texts, const size_t *lens, size_t n,
                     bool normalize, bool truncate, uint32_t max_tokens, struct lmp_error *err) {
        int r;
        if (n == 0)
                return lmp_error_set(err, -EINVAL, "no input");
        if ((r = reserve(e, n)) < 0)
                return lmp_error_set(err, r, "out of memory for %zu inputs", n);
        uint32_t limit = max_tokens && max_tokens < e->n_ctx ? max_tokens : e->n_ctx;
        e->tokens = 0;
        for (size_t i = 0; i < n; i++) {
                if ((r = tokenize_one(e, i, texts[i], lens[i], limit, truncate, err)) < 0)
                        return r;
                e->tokens += e->n_ids[i];
        }

        /* Whole texts, in order, as many per pass as fit. */
        for (size_t first = 0; first < n;) {
                uint32_t nb = 0;
                size_t last = first;
                while (last < n && last - first < LMP_EMBED_SEQ_MAX && nb + e->n_ids[last] <= e->n_batch) {
                        const int32_t *row = e->ids + last * e->n_ctx;
                        for (uint32_t t = 0; t < e->n_ids[last]; t++)
                                e->batch[nb++] = (struct lmp_batch_entry){
                                        .token = row[t], .pos = (int32_t)t, .seq = (int32_t)(last - first)
                                };
                        last++;
                }
                if ((r = lmp_ctx_encode(e->ctx, e->batch, nb, e->vecs + first * e->n_embd, err)) < 0)
                        return r;
                first = last;
        }
        if (normalize)
                for (size_t i = 0; i < n; i++)
                        l2_normalize(e->vecs + i * e->n_embd, e->n_embd);
        return 0;
}

const float *lmp_embedder_vector(const struct lmp_embedder *e, size_t i) {
        return e->vecs + i * e->n_embd;
}

const int32_t *lmp_embedder_ids(const struct lmp_embedder *e, size_t i, uint32_t *ret_n) {
        *ret_n = e->n_ids[i];
        return e->ids + i * e->n_ctx;
}

uint64_t lmp_embedder_tokens(const struct lmp_embedder *e) { return e->tokens; }

/* Embedding texts with an encoder model: tokenize each text ([CLS] ...
 * [SEP]), evaluate as many whole texts per forward pass as the batch
 * holds (each its own sequence, attending to itself only), pool as the
 * model says and L2-normalize when asked. Used by a worker of an
 * embedding model and by `lmpool embed MODEL.gguf`.
 *
 * The embedder owns a context sized once and per-request buffers that grow
 * to the largest request seen (texts x tokens per text); the forward
 * passes allocate nothing. Results stay valid until the next run. Never
 * logs: errors come back as values with a message naming the input. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/threadpool.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define LMP_EMBED_SEQ_MAX 64            /* texts in one forward pass */

struct lmp_embedder_params {
        const struct lmp_model *model;  /* an encoder with pooling (lmp_model_pools) */
        const struct lmp_vocab *vocab;
        uint32_t n_ctx;                 /* tokens per text; 0 or past the model's: the model's */
        uint32_t n_batch;               /* tokens per forward pass; raised to n_ctx; 0: 2048 */
        struct lmp_threadpool *pool;    /* borrowed */
};

struct lmp_embedder;

/* -EINVAL (message in err) when the model is not an encoder with pooling. */
int lmp_embedder_new(const struct lmp_embedder_params *p, struct lmp_embedder **ret, struct lmp_error *err);
void lmp_embedder_free(struct lmp_embedder *e);

uint32_t lmp_embedder_n_embd(const struct lmp_embedder *e);
uint32_t lmp_embedder_n_ctx(const struct lmp_embedder *e);

/* Embeds texts[0..n) (lens[i] bytes each; any bytes). A text of more than
 * n_ctx tokens (or max_tokens, when not 0 and lower) is -E2BIG with err
 * naming it, unless truncate: then its first tokens are kept and its last
 * ([SEP]) put back at the end. -ENOMEM, or the forward pass's error. */
int lmp_embedder_run(struct lmp_embedder *e, const char *const *texts, const size_t *lens, size_t n,
                     bool normalize, bool truncate, uint32_t max_tokens, struct lmp_error *err);

/* After a successful run: text i's vector (n_embd floats), its ids, and
 * the number of tokens of all texts (after truncation). */
const float *lmp_embedder_vector(const struct lmp_embedder *e, size_t i);
const int32_t *lmp_embedder_ids(const struct lmp_embedder *e, size_t i, uint32_t *ret_n);
uint64_t lmp_embedder_tokens(const struct lmp_embedder *e);

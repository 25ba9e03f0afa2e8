/* The sampler: picks the next token from a logit vector. One fixed chain,
 * in llama.cpp's default order: logit bias, repetition / frequency /
 * presence penalties over the last N accepted tokens, top-k, top-p, min-p,
 * temperature, then a draw from the remaining distribution with the
 * sampler's own seeded RNG (xoshiro256**), so the same seed and the same
 * logits give the same tokens. Temperature 0 is greedy: the argmax after
 * bias and penalties. Every buffer is sized for n_vocab at creation;
 * lmp_sampler_sample() and lmp_sampler_accept() allocate nothing. A sampler
 * is used by one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define LMP_SAMPLER_MAX_VOCAB (1 << 24)
#define LMP_SAMPLER_MAX_LAST_N (1 << 20)

struct lmp_logit_bias {
        int32_t token;
        float bias;             /* added to the logit; -INFINITY bans the token */
};

struct lmp_sampler_params {
        float temperature;      /* >= 0; 0: greedy */
        int32_t top_k;          /* >= 0; 0: off */
        float top_p;            /* [0, 1]; 1: off */
        float min_p;            /* [0, 1]; 0: off */
        float repeat_penalty;   /* > 0; 1: off. Positive logits divided, negative multiplied */
        float presence_penalty; /* subtracted once from tokens seen in the window; 0: off */
        float frequency_penalty;/* subtracted once per occurrence in the window; 0: off */
        int32_t penalty_last_n; /* [0, LMP_SAMPLER_MAX_LAST_N] tokens of history; 0: no penalties */
        uint64_t seed;
        const struct lmp_logit_bias *bias;      /* copied at creation */
        size_t n_bias;
};

/* Parameters that change nothing: temperature 1, no filters, no penalties. */
void lmp_sampler_params_default(struct lmp_sampler_params *p);

struct lmp_sampler;

/* Validates p (bounds, finite values, bias tokens within n_vocab) and
 * allocates every buffer. -EINVAL with a message naming the parameter,
 * -ENOMEM. */
int lmp_sampler_new(int32_t n_vocab, const struct lmp_sampler_params *p,
                    struct lmp_sampler **ret, struct lmp_error *err);
void lmp_sampler_free(struct lmp_sampler *s);

/* The next token for logits[0..n_vocab) (not modified). NaN logits count as
 * -inf. Returns a token id, or -ENOENT when no token has a finite or
 * +inf logit left (e.g. every token banned), -EINVAL for NULL arguments. */
int32_t lmp_sampler_sample(struct lmp_sampler *s, const float *logits);

/* Constrained sampling (e.g. JSON output): allow(ctx, token) says whether
 * a token may come next. It is asked about as few tokens as the draw
 * needs: greedy asks about the best, and when it is refused about each
 * token better than the best allowed so far; otherwise the chain (top-k,
 * top-p, min-p, temperature) picks its candidates as usual and a draw that refuses the tokens allow refuses is
 * a draw from the allowed ones in proportion to their probabilities; only
 * when the chain kept no allowed token is allow asked about the whole
 * vocabulary, before the chain runs again on what it allows. allow must
 * not allocate for the sampler to allocate nothing. Returns as
 * lmp_sampler_sample(), -ENOENT when no token is allowed, -EINVAL for a
 * NULL allow. */
typedef bool (*lmp_sampler_allow_fn)(void *ctx, int32_t token);
int32_t lmp_sampler_sample_allowed(struct lmp_sampler *s, const float *logits, lmp_sampler_allow_fn allow,
                                   void *ctx);

/* Records a token in the penalty history (the prompt's tokens too, if they
 * should count). 0, or -EINVAL for a token outside the vocabulary. */
int lmp_sampler_accept(struct lmp_sampler *s, int32_t token);

/* Forgets the history and restarts the RNG from the seed. */
void lmp_sampler_reset(struct lmp_sampler *s);

/* The vocabulary's side of constrained JSON output: each token's bytes,
 * decoded once per model, and whether it ends generation; and the
 * sampler's allow hook over a document in progress (lmp_json_allow), which
 * allocates nothing. An end-of-generation token is allowed only when the
 * document is complete; a token without bytes (a control token) never. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "sampler/json_grammar.h"

struct lmp_vocab;

struct lmp_json_tokens {
        uint32_t n;
        uint32_t *off;          /* n + 1: token i's bytes are bytes[off[i]..off[i+1]) */
        char *bytes;
        uint8_t *eog;           /* n */
};

/* -ENOMEM, or the tokenizer's error for a token it cannot render. */
int lmp_json_tokens_new(const struct lmp_vocab *v, struct lmp_json_tokens **ret, struct lmp_error *err);
void lmp_json_tokens_free(struct lmp_json_tokens *t);

/* The hook's context: a document in progress with the tokens' bytes. */
struct lmp_json_allow {
        const struct lmp_json_tokens *tokens;
        struct lmp_json_state state;
};

/* lmp_sampler_allow_fn over a struct lmp_json_allow. */
bool lmp_json_allow(void *ctx, int32_t token);

/* Advances the document by a token lmp_json_allow allowed: 0, or -EINVAL
 * for a token that cannot continue it (the state is then unchanged). */
int lmp_json_allow_advance(struct lmp_json_allow *a, int32_t token);

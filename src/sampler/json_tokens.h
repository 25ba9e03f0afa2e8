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

/* The hook's context: a document in progress with the tokens' bytes, and
 * which first bytes and first two bytes can come next, worked out at the
 * first question after each advance (a row of second bytes only when a
 * token with that first byte is asked about), so that most refusals are a
 * table look-up: in a state where few bytes can follow (after a value)
 * most of a large vocabulary is refused without running the grammar. */
struct lmp_json_allow {
        const struct lmp_json_tokens *tokens;
        struct lmp_json_state state;
        bool tables_ok;                 /* ok1 and row_done describe state */
        bool ok1[256];
        bool row_done[256];
        uint64_t ok2[256][4];           /* bit b2 of row b1: "b1 b2" can come next */
};

/* Starts a document: lmp_json_state_init and the tables reset. */
void lmp_json_allow_init(struct lmp_json_allow *a, const struct lmp_json_tokens *t,
                         const struct lmp_json_grammar *g);

/* lmp_sampler_allow_fn over a struct lmp_json_allow. */
bool lmp_json_allow(void *ctx, int32_t token);

/* Advances the document by a token lmp_json_allow allowed: 0, or -EINVAL
 * for a token that cannot continue it (the state is then unchanged). */
int lmp_json_allow_advance(struct lmp_json_allow *a, int32_t token);

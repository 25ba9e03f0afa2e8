/* Token bytes for the JSON grammar (json_tokens.h). The bytes are what
 * lmp_token_to_piece gives without flags: control tokens render as nothing
 * (and so are never allowed in a document), byte tokens as their byte. */
#include "sampler/json_tokens.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int lmp_json_tokens_new(const struct lmp_vocab *v, struct lmp_json_tokens **ret, struct lmp_error *err) {
        uint32_t n = lmp_vocab_n_tokens(v);
        size_t cap = lmp_vocab_max_piece(v) + 4, size = 0, used = 0;
        char *piece = malloc(cap);
        struct lmp_json_tokens *t = calloc(1, sizeof(*t));
        int r = -ENOMEM;
        if (!piece || !t)
                goto fail;
        t->n = n;
        t->off = malloc(((size_t)n + 1) * sizeof(*t->off));
        t->eog = calloc(n ? n : 1, 1);
        if (!t->off || !t->eog)
                goto fail;
        /* Two passes: the size, then the bytes. */
        for (int pass = 0; pass < 2; pass++) {
                used = 0;
                for (uint32_t i = 0; i < n; i++) {
                        size_t np = 0;
                        r = lmp_token_to_piece(v, (int32_t)i, 0, piece, cap, &np);
                        if (r < 0) {
                                lmp_error_set(err, r, "json: token %u cannot be rendered", i);
                                goto fail_set;
                        }
                        if (pass) {
                                t->off[i] = (uint32_t)used;
                                memcpy(t->bytes + used, piece, np);
                                t->eog[i] = lmp_vocab_is_eog(v, (int32_t)i);
                        }
                        used += np;
                        if (used > UINT32_MAX) {
                                r = -E2BIG;
                                lmp_error_set(err, r, "json: the vocabulary's text is over 4 GiB");
                                goto fail_set;
                        }
                }
                if (!pass) {
                        size = used;
                        if (!(t->bytes = malloc(size ? size : 1))) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
        }
        t->off[n] = (uint32_t)used;
        free(piece);
        *ret = t;
        return 0;
fail:
        lmp_error_set(err, r, "json: out of memory for the token table");
fail_set:
        free(piece);
        lmp_json_tokens_free(t);
        return r;
}

void lmp_json_tokens_free(struct lmp_json_tokens *t) {
        if (!t)
                return;
        free(t->off);
        free(t->bytes);
        free(t->eog);
        free(t);
}

void lmp_json_allow_init(struct lmp_json_allow *a, const struct lmp_json_tokens *t,
                         const struct lmp_json_grammar *g) {
        a->tokens = t;
        lmp_json_state_init(&a->state, g);
        a->tables_ok = false;
}

static void build_ok1(struct lmp_json_allow *a) {
        for (unsigned b = 0; b < 256; b++) {
                unsigned char c = (unsigned char)b;
                a->ok1[b] = lmp_json_state_accepts(&a->state, &c, 1);
        }
        memset(a->row_done, 0, sizeof(a->row_done));
        a->tables_ok = true;
}

static void build_row(struct lmp_json_allow *a, unsigned char b1) {
        struct lmp_json_state t = a->state;
        memset(a->ok2[b1], 0, sizeof(a->ok2[b1]));
        if (lmp_json_state_feed(&t, &b1, 1))
                for (unsigned b = 0; b < 256; b++) {
                        unsigned char c = (unsigned char)b;
                        if (lmp_json_state_accepts(&t, &c, 1))
                                a->ok2[b1][b >> 6] |= 1ull << (b & 63);
                }
        a->row_done[b1] = true;
}

bool lmp_json_allow(void *ctx, int32_t token) {
        struct lmp_json_allow *a = ctx;
        const struct lmp_json_tokens *t = a->tokens;
        if (token < 0 || (uint32_t)token >= t->n)
                return false;
        if (t->eog[token])
                return lmp_json_state_complete(&a->state);
        uint32_t o = t->off[token], len = t->off[token + 1] - o;
        const unsigned char *p = (const unsigned char *)t->bytes + o;
        if (len == 0)
                return false;
        if (!a->tables_ok)
                build_ok1(a);
        if (!a->ok1[p[0]])
                return false;
        if (len == 1)
                return true;
        if (!a->row_done[p[0]])
                build_row(a, p[0]);
        if (!(a->ok2[p[0]][p[1] >> 6] >> (p[1] & 63) & 1))
                return false;
        return len == 2 || lmp_json_state_accepts(&a->state, p, len);
}

int lmp_json_allow_advance(struct lmp_json_allow *a, int32_t token) {
        if (!lmp_json_allow(a, token))
                return -EINVAL;
        const struct lmp_json_tokens *t = a->tokens;
        if (!t->eog[token])
                lmp_json_state_feed(&a->state, t->bytes + t->off[token], t->off[token + 1] - t->off[token]);
        a->tables_ok = false;
        return 0;
}

/* Detokenization: token ids back to bytes. Each token's rendering was
 * computed at load time (▁ to space, byte-level code points to bytes,
 * <0xNN> to the byte); here we only choose whether special tokens show and
 * drop the dummy-prefix space, and, for streams, hold back the bytes of a
 * UTF-8 character that a later token will complete, so that a client never
 * receives half a character. */
#include <errno.h>
#include <string.h>

#include "common/utf8.h"
#include "tokenizer/vocab_internal.h"

/* The rendering of id under flags. boundary says whether the token starts
 * the output or follows a special token: that is where SentencePiece
 * tokenization put a dummy space, which LMP_DETOK_STRIP_PREFIX removes. */
static const char *piece_of(const struct lmp_vocab *v, int32_t id, unsigned flags, bool boundary,
                            size_t *ret_len) {
        if ((v->attr[id] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_UNKNOWN)) && !(flags & LMP_DETOK_SPECIAL)) {
                *ret_len = 0;
                return "";
        }
        const char *p = v->piece_text + v->piece[id].off;
        size_t n = v->piece[id].len;
        if (boundary && (flags & LMP_DETOK_STRIP_PREFIX) && v->add_space_prefix && n && p[0] == ' ') {
                p++;
                n--;
        }
        *ret_len = n;
        return p;
}

static bool valid_id(const struct lmp_vocab *v, int32_t id) {
        return id >= 0 && (uint32_t)id < v->n_tokens;
}

/* Tokens that the tokenizer matches in text as themselves. */
static bool is_special(const struct lmp_vocab *v, int32_t id) {
        return v->attr[id] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED | LMP_TOKEN_ATTR_UNKNOWN);
}

int lmp_token_to_piece(const struct lmp_vocab *v, int32_t id, unsigned flags, char *out, size_t cap,
                       size_t *ret_n) {
        size_t n;
        if (!valid_id(v, id))
                return -EINVAL;
        const char *p = piece_of(v, id, flags & ~(unsigned)LMP_DETOK_STRIP_PREFIX, false, &n);
        *ret_n = n;
        if (n > cap)
                return -ENOSPC;
        if (n)
                memcpy(out, p, n);
        return 0;
}

int lmp_detokenize(const struct lmp_vocab *v, const int32_t *ids, size_t n_ids, unsigned flags, char *out,
                   size_t cap, size_t *ret_n) {
        size_t total = 0;
        for (size_t i = 0; i < n_ids; i++)
                if (!valid_id(v, ids[i]))
                        return -EINVAL;
        for (size_t i = 0; i < n_ids; i++) {
                size_t n;
                const char *p = piece_of(v, ids[i], flags, i == 0 || is_special(v, ids[i - 1]), &n);
                if (n && total + n <= cap)
                        memcpy(out + total, p, n);
                total += n;
        }
        *ret_n = total;
        return total > cap ? -ENOSPC : 0;
}

void lmp_detok_init(struct lmp_detok *d, const struct lmp_vocab *v, unsigned flags) {
        memset(d, 0, sizeof(*d));
        d->v = v;
        d->flags = flags;
        d->boundary = true;
}

int lmp_detok_push(struct lmp_detok *d, int32_t id, char *out, size_t cap, size_t *ret_n) {
        const struct lmp_vocab *v = d->v;
        size_t n;
        if (!valid_id(v, id))
                return -EINVAL;
        const char *p = piece_of(v, id, d->flags, d->boundary, &n);

        /* The last few bytes of pending + piece decide what is held back. */
        size_t total = d->n_pend + n;
        uint8_t tail[4];
        size_t nt = LMP_MIN(total, sizeof(tail));
        for (size_t i = 0; i < nt; i++) {
                size_t k = total - nt + i;
                tail[i] = k < d->n_pend ? d->pend[k] : (uint8_t)p[k - d->n_pend];
        }
        size_t hold = lmp_utf8_incomplete_tail(tail, nt);
        size_t emit = total - hold;
        *ret_n = emit;
        if (emit > cap)
                return -ENOSPC;

        size_t from_pend = LMP_MIN((size_t)d->n_pend, emit);
        if (from_pend)
                memcpy(out, d->pend, from_pend);
        if (emit > from_pend)
                memcpy(out + from_pend, p, emit - from_pend);
        uint8_t keep[4];
        for (size_t i = 0; i < hold; i++) {
                size_t k = emit + i;
                keep[i] = k < d->n_pend ? d->pend[k] : (uint8_t)p[k - d->n_pend];
        }
        memcpy(d->pend, keep, hold);
        d->n_pend = (uint8_t)hold;
        d->boundary = is_special(v, id);
        return 0;
}

int lmp_detok_flush(struct lmp_detok *d, char *out, size_t cap, size_t *ret_n) {
        *ret_n = d->n_pend;
        if (d->n_pend > cap)
                return -ENOSPC;
        if (d->n_pend)
                memcpy(out, d->pend, d->n_pend);
        d->n_pend = 0;
        return 0;
}

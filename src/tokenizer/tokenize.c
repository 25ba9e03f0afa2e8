/* lmp_tokenize(): splits the input at the special tokens written in it,
 * then tokenizes the text between them with the vocabulary's BPE variant
 * and adds BOS/EOS. Special tokens are matched the way llama.cpp's
 * tokenizer_st_partition does it: one token at a time, longest first, each
 * cutting every remaining stretch of plain text at all its occurrences
 * (left to right), honouring the lstrip/rstrip attributes. A first pass
 * over the text with a trie of the special tokens' texts finds which occur
 * at all, so plain text costs one scan however many special tokens the
 * vocabulary has. */
#include <errno.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab_internal.h"

/* A stretch of input: plain text [off, off+len) or one special token. */
struct frag {
        size_t off, len;
        int32_t id;             /* LMP_TOKEN_NONE for text */
        uint32_t next;          /* index of the next fragment, UINT32_MAX at the end */
};

struct frags {
        struct frag *f;
        size_t n, cap;
};

static int frag_new(struct frags *fs, size_t off, size_t len, int32_t id, uint32_t next, uint32_t *ret) {
        if (fs->n >= UINT32_MAX - 1)
                return -E2BIG;
        if (lmp_ws_reserve((void **)&fs->f, &fs->cap, fs->n + 1, sizeof(struct frag)) < 0)
                return -ENOMEM;
        fs->f[fs->n] = (struct frag){ off, len, id, next };
        *ret = (uint32_t)fs->n++;
        return 0;
}

/* Which special tokens occur in the text (present[i] for special[i]):
 * one walk of the special-token trie from each position. */
static bool scan_specials(const struct lmp_vocab *v, const char *text, size_t len, bool parse_special,
                          uint8_t *present) {
        const uint8_t *t = (const uint8_t *)text;
        bool any = false;
        for (size_t i = 0; i < len; i++) {
                uint32_t node = v->trie_root[t[i]];
                size_t k = i;
                while (node) {
                        int32_t si = v->trie[node].special;
                        if (si >= 0 && !present[si] &&
                            (parse_special ||
                             !(v->attr[v->special[si]] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_UNKNOWN)))) {
                                present[si] = 1;
                                any = true;
                        }
                        if (++k >= len)
                                break;
                        uint32_t c = v->trie[node].child;
                        while (c && v->trie[c].byte != t[k])
                                c = v->trie[c].sibling;
                        node = c;
                }
        }
        return any;
}

static void set_next(struct frags *fs, uint32_t *head, uint32_t prev, uint32_t idx) {
        if (prev == UINT32_MAX)
                *head = idx;
        else
                fs->f[prev].next = idx;
}

/* Cuts every text fragment at the occurrences of one special token.
 * Fragments are linked by index (the array may move as it grows). */
static int cut(const struct lmp_vocab *v, struct frags *fs, uint32_t *head, const char *text, int32_t id) {
        const char *tok = v->text + v->tok[id].off;
        size_t tlen = v->tok[id].len;
        uint16_t attr = v->attr[id];
        uint32_t prev = UINT32_MAX;
        uint32_t cur = *head;
        int r;

        while (cur != UINT32_MAX) {
                struct frag f = fs->f[cur];
                const char *m = f.id == LMP_TOKEN_NONE ? memmem(text + f.off, f.len, tok, tlen) : NULL;
                if (!m) {
                        prev = cur;
                        cur = f.next;
                        continue;
                }
                /* Replace this fragment by the pieces around the matches. */
                size_t off = f.off, len = f.len;
                uint32_t idx;
                while (m) {
                        size_t mpos = (size_t)(m - text);
                        size_t left = mpos - off;
                        if (attr & LMP_TOKEN_ATTR_LSTRIP)
                                while (left > 0 && isspace((unsigned char)text[off + left - 1]))
                                        left--;
                        if (left > 0) {
                                if ((r = frag_new(fs, off, left, LMP_TOKEN_NONE, UINT32_MAX, &idx)) < 0)
                                        return r;
                                set_next(fs, head, prev, idx);
                                prev = idx;
                        }
                        if ((r = frag_new(fs, 0, 0, id, UINT32_MAX, &idx)) < 0)
                                return r;
                        set_next(fs, head, prev, idx);
                        prev = idx;
                        size_t roff = mpos + tlen, rlen = off + len - roff;
                        if (attr & LMP_TOKEN_ATTR_RSTRIP)
                                while (rlen > 0 && isspace((unsigned char)text[roff])) {
                                        roff++;
                                        rlen--;
                                }
                        off = roff;
                        len = rlen;
                        m = len ? memmem(text + off, len, tok, tlen) : NULL;
                }
                if (len > 0) {
                        if ((r = frag_new(fs, off, len, LMP_TOKEN_NONE, UINT32_MAX, &idx)) < 0)
                                return r;
                        set_next(fs, head, prev, idx);
                        prev = idx;
                }
                set_next(fs, head, prev, f.next);
                cur = f.next;
        }
        return 0;
}

static void ws_free(struct lmp_tok_ws *ws) {
        free(ws->buf);
        free(ws->buf2);
        free(ws->sym);
        free(ws->heap);
        pcre2_match_data_free(ws->md);
}

int lmp_tokenize(const struct lmp_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, size_t cap, size_t *ret_n) {
        struct lmp_tok_sink sink = { out, out ? cap : 0, 0 };
        struct lmp_tok_ws ws = { 0 };
        struct frags fs = { 0 };
        uint8_t *present = NULL;
        uint32_t head = UINT32_MAX;
        int r = 0;

        if (!text && len)
                return -EINVAL;
        /* Symbol indices and offsets inside the merges are 32-bit. */
        if (len > INT32_MAX / 4)
                return -E2BIG;

        if (len) {
                if ((r = frag_new(&fs, 0, len, LMP_TOKEN_NONE, UINT32_MAX, &head)) < 0)
                        goto out;
                if (v->n_special) {
                        present = calloc(v->n_special, 1);
                        if (!present) {
                                r = -ENOMEM;
                                goto out;
                        }
                        if (scan_specials(v, text, len, parse_special, present))
                                for (uint32_t i = 0; i < v->n_special; i++)
                                        if (present[i] && (r = cut(v, &fs, &head, text, v->special[i])) < 0)
                                                goto out;
                }
        }

        if (add_special && v->add_bos)
                lmp_sink_push(&sink, v->bos);

        /* SentencePiece: a dummy space before text at the start or after a
         * special token. */
        bool prev_special = true;
        for (uint32_t i = head; i != UINT32_MAX; i = fs.f[i].next) {
                const struct frag *f = &fs.f[i];
                if (f->id != LMP_TOKEN_NONE) {
                        lmp_sink_push(&sink, f->id);
                        prev_special = true;
                        continue;
                }
                if (v->type == LMP_VOCAB_SPM)
                        r = lmp_spm_tokenize(v, &ws, text + f->off, f->len, v->add_space_prefix && prev_special,
                                             &sink);
                else if (v->type == LMP_VOCAB_WPM)
                        r = lmp_wpm_tokenize(v, &ws, text + f->off, f->len, &sink);
                else
                        r = lmp_bpe_tokenize(v, &ws, text + f->off, f->len, &sink);
                if (r < 0)
                        goto out;
                prev_special = false;
        }

        if (add_special && v->add_eos)
                lmp_sink_push(&sink, v->eos);
        if (add_special && v->add_sep)
                lmp_sink_push(&sink, v->sep);

        *ret_n = sink.n;
        r = sink.n > sink.cap ? -ENOSPC : 0;
out:
        ws_free(&ws);
        free(fs.f);
        free(present);
        return r;
}

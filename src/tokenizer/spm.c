/* SentencePiece-style BPE (tokenizer.ggml.model = "llama"), as llama.cpp's
 * SentencePiece tokenizer (llama-vocab.cpp) does it: spaces become U+2581 (▁), a dummy
 * space is put in front of text that starts the input or follows a special
 * token, the text is cut into UTF-8 characters, and adjacent symbols are
 * merged while their concatenation is a piece of the vocabulary, highest
 * piece score first (leftmost on ties). Symbols that end up not being
 * pieces fall back to their bytes' <0xNN> tokens. Symbols live in a linked
 * list and candidates in a binary heap: O(n log n) for n characters, with
 * the text cut into independent chunks at word starts when the vocabulary
 * allows it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "tokenizer/vocab_internal.h"

struct sym {
        uint32_t start;         /* byte offset in the escaped text */
        uint32_t n;             /* bytes; 0 once merged into its left neighbour */
        int32_t prev, next;
};

struct cand {
        float score;
        int32_t left, right;
        uint32_t size;
        int32_t id;
};

static inline bool cand_before(const struct cand *a, const struct cand *b) {
        return a->score > b->score || (a->score == b->score && a->left < b->left);
}

LMP_DEFINE_HEAP(static, cand_, struct cand, cand_before)

static void try_pair(const struct lmp_vocab *v, const char *t, const struct sym *s, struct cand *h,
                     size_t *nh, int32_t l, int32_t r) {
        if (l < 0 || r < 0)
                return;
        uint32_t size = s[l].n + s[r].n;
        int32_t id = lmp_vocab_lookup(v, t + s[l].start, size);
        if (id == LMP_TOKEN_NONE)
                return;
        cand_push(h, nh, (struct cand){ v->score[id], l, r, size, id });
}

static bool is_space_sym(const char *t, const struct sym *s) {
        return s->n == 3 && memcmp(t + s->start, "\xe2\x96\x81", 3) == 0;
}

/* Emits the tokens of a merged chunk starting at symbol first. */
static int emit_chunk(const struct lmp_vocab *v, const char *t, const struct sym *s, int32_t first,
                      struct lmp_tok_sink *sink) {
        for (int32_t i = first; i >= 0; i = s[i].next) {
                int32_t id = lmp_vocab_lookup(v, t + s[i].start, s[i].n);
                if (id != LMP_TOKEN_NONE) {
                        lmp_sink_push(sink, id);
                        continue;
                }
                /* Byte fallback; the unknown token when the vocabulary has no
                 * piece for a byte. */
                for (uint32_t k = 0; k < s[i].n; k++) {
                        int32_t b = v->byte_tok[(uint8_t)t[s[i].start + k]];
                        if (b == LMP_TOKEN_NONE)
                                b = v->unk;
                        if (b != LMP_TOKEN_NONE)
                                lmp_sink_push(sink, b);
                }
        }
        return 0;
}

int lmp_spm_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     bool add_prefix, struct lmp_tok_sink *sink) {
        /* Escape: ' ' -> ▁ (3 bytes), with the dummy prefix. */
        size_t cap = (len + 1) * 3;
        if (cap > UINT32_MAX)
                return -E2BIG;
        if (lmp_ws_reserve((void **)&ws->buf, &ws->buf_cap, cap, 1) < 0)
                return -ENOMEM;
        char *t = ws->buf;
        size_t n = 0;
        if (add_prefix) {
                memcpy(t, "\xe2\x96\x81", 3);
                n = 3;
        }
        for (size_t i = 0; i < len; i++) {
                if (text[i] == ' ') {
                        memcpy(t + n, "\xe2\x96\x81", 3);
                        n += 3;
                } else {
                        t[n++] = text[i];
                }
        }
        if (n == 0)
                return 0;

        /* One symbol per character (a truncated sequence at the end is cut). */
        if (lmp_ws_reserve(&ws->sym, &ws->sym_cap, n, sizeof(struct sym)) < 0 ||
            lmp_ws_reserve(&ws->heap, &ws->heap_cap, 3 * n, sizeof(struct cand)) < 0)
                return -ENOMEM;
        struct sym *s = ws->sym;
        struct cand *h = ws->heap;
        size_t ns = 0, nh = 0;
        for (size_t off = 0; off < n;) {
                size_t l = LMP_MIN(lmp_utf8_len((uint8_t)t[off]), n - off);
                s[ns] = (struct sym){ (uint32_t)off, (uint32_t)l, (int32_t)ns - 1, -1 };
                if (ns)
                        s[ns - 1].next = (int32_t)ns;
                ns++;
                off += l;
        }
        /* Merge chunk by chunk: a chunk ends before a ▁ that follows a
         * complete character other than ▁, when no piece of the vocabulary
         * could span such a place (v->spm_chunks). Merges in different
         * chunks never interact, so the result is the same as merging the
         * whole text at once, with small heaps. */
        size_t a = 0;
        while (a < ns) {
                size_t b = a + 1;
                if (v->spm_chunks)
                        while (b < ns && !(is_space_sym(t, &s[b]) && !is_space_sym(t, &s[b - 1]) &&
                                           lmp_utf8_char_len((const uint8_t *)t + s[b - 1].start, s[b - 1].n) == s[b - 1].n))
                                b++;
                else
                        b = ns;
                s[a].prev = -1;
                s[b - 1].next = -1;
                for (size_t i = a + 1; i < b; i++)
                        try_pair(v, t, s, h, &nh, (int32_t)i - 1, (int32_t)i);
                while (nh) {
                        struct cand c = cand_pop(h, &nh);
                        struct sym *l = &s[c.left], *r = &s[c.right];
                        /* Stale: a side has merged since (sizes no longer add up). */
                        if (l->n == 0 || r->n == 0 || l->n + r->n != c.size)
                                continue;
                        l->n += r->n;
                        r->n = 0;
                        l->next = r->next;
                        if (r->next >= 0)
                                s[r->next].prev = c.left;
                        try_pair(v, t, s, h, &nh, l->prev, c.left);
                        try_pair(v, t, s, h, &nh, c.left, l->next);
                }
                int rc = emit_chunk(v, t, s, (int32_t)a, sink);
                if (rc < 0)
                        return rc;
                a = b;
        }
        return 0;
}

/* Byte-level BPE (GPT-2 style, tokenizer.ggml.model = "gpt2"). Text is
 * first cut into words by the pre-tokenizer's regexes (PCRE2 with Unicode
 * properties), each word's bytes are mapped to printable code points
 * (GPT-2's bytes_to_unicode), and the word is merged pair by pair, lowest
 * merge rank first, as llama.cpp's BPE tokenizer (llama-vocab.cpp) does.
 * Merges are done on token ids: each pair (left id, right id) is looked up
 * in a hash of the file's merges, candidates sit in a binary heap and the
 * symbols in a linked list, so a word of n bytes costs O(n log n). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "gguf/gguf.h"
#include "tokenizer/vocab_internal.h"

#define KEY_MERGES "tokenizer.ggml.merges"

enum pre_kind { PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_STARCODER, PRE_TEKKEN, PRE_GPT4O };

/* Pre-tokenizer regexes, as llama.cpp uses them (llama-vocab.cpp). */
static const char *const pre_regex[][LMP_PRE_MAX_REGEX] = {
        [PRE_DEFAULT] = {
                "[\\p{P}\\$\\+<=>\\^~\\|]+",
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
                "\\p{N}+",
                "[0-9][0-9][0-9]",
        },
        [PRE_GPT2] = {
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        },
        [PRE_LLAMA3] = {
                "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        [PRE_QWEN2] = {
                "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        [PRE_STARCODER] = {
                "\\p{N}",
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        },
        /* llama.cpp's forms of these two (upper/lower case by lookahead and
         * ASCII ranges) rather than the \p{Lu}... originals, to split as it does. */
        [PRE_TEKKEN] = {
                "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|"
                "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|"
                "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
        [PRE_GPT4O] = {
                "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
                "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
                "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
                "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
                "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        },
};

/* tokenizer.ggml.pre names and what they select. */
static const struct {
        const char *name;
        enum pre_kind kind;
        bool ignore_merges;     /* a word that is a whole token is not merged */
        bool add_bos;           /* default when add_bos_token is absent */
} pre_table[] = {
        { "default", PRE_DEFAULT, false, false },
        { "gpt-2", PRE_GPT2, false, false },
        { "phi-2", PRE_GPT2, false, false },
        { "mpt", PRE_GPT2, false, false },
        { "olmo", PRE_GPT2, false, false },
        { "jais", PRE_GPT2, false, false },
        { "llama3", PRE_LLAMA3, true, true },
        { "llama-v3", PRE_LLAMA3, true, true },
        { "llama-bpe", PRE_LLAMA3, true, true },
        { "falcon3", PRE_LLAMA3, true, true },
        { "dbrx", PRE_LLAMA3, false, false },
        { "smaug-bpe", PRE_LLAMA3, false, false },
        { "qwen2", PRE_QWEN2, false, false },
        { "deepseek-r1-qwen", PRE_QWEN2, false, false },
        { "stablelm2", PRE_QWEN2, false, false },
        { "megrez", PRE_QWEN2, false, false },
        { "starcoder", PRE_STARCODER, false, false },
        { "refact", PRE_STARCODER, false, false },
        { "command-r", PRE_STARCODER, false, false },
        { "smollm", PRE_STARCODER, false, false },
        { "codeshell", PRE_STARCODER, false, false },
        { "exaone", PRE_STARCODER, false, false },
        { "minerva-7b", PRE_STARCODER, false, false },
        { "tekken", PRE_TEKKEN, true, true },
        { "gpt-4o", PRE_GPT4O, false, false },
        { "llama4", PRE_GPT4O, false, false },
};

/* Unicode's White_Space includes U+0085 (NEXT LINE), which is what the
 * reference tokenizers' \s matches; PCRE2's \s does not include it. This
 * rewrites \s and \S so that they do. */
static int widen_space(const char *src, char *dst, size_t cap) {
        size_t n = 0;
        bool in_class = false;
        for (const char *p = src; *p; p++) {
                const char *add = NULL;
                char one[3] = { 0 };
                if (p[0] == '\\' && p[1]) {
                        if (p[1] == 's')
                                add = in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
                        else if (p[1] == 'S' && !in_class)
                                add = "[^\\s\\x{85}]";
                        else {
                                one[0] = p[0];
                                one[1] = p[1];
                                add = one;
                        }
                        p++;
                } else {
                        if (p[0] == '[' && !in_class)
                                in_class = true;
                        else if (p[0] == ']' && in_class)
                                in_class = false;
                        one[0] = p[0];
                        add = one;
                }
                size_t l = strlen(add);
                if (n + l + 1 > cap)
                        return -ENAMETOOLONG;
                memcpy(dst + n, add, l);
                n += l;
        }
        dst[n] = '\0';
        return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
 * the 68 others to U+0100 onwards in byte order. */
static void build_byte_maps(struct lmp_vocab *v) {
        int next = 256;
        for (size_t i = 0; i < LMP_ARRAY_SIZE(v->byte_dec); i++)
                v->byte_dec[i] = -1;
        for (int b = 0; b < 256; b++) {
                bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
                int cp = printable ? b : next++;
                v->byte_dec[cp] = (int16_t)b;
                if (cp < 0x80) {
                        v->byte_enc[b][0] = (char)cp;
                        v->byte_enc_len[b] = 1;
                } else {
                        v->byte_enc[b][0] = (char)(0xc0 | (cp >> 6));
                        v->byte_enc[b][1] = (char)(0x80 | (cp & 0x3f));
                        v->byte_enc_len[b] = 2;
                }
        }
}

static uint64_t merge_hash(uint64_t key) {
        key ^= key >> 33;
        key *= 0xff51afd7ed558ccdull;
        key ^= key >> 33;
        return key;
}

static const struct lmp_merge_slot *find_merge(const struct lmp_vocab *v, int32_t a, int32_t b) {
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        uint64_t i = merge_hash(key) & v->merges_mask;
        for (;;) {
                const struct lmp_merge_slot *s = &v->merges[i];
                if (s->key == key)
                        return s;
                if (s->key == UINT64_MAX)
                        return NULL;
                i = (i + 1) & v->merges_mask;
        }
}

/* Reads tokenizer.ggml.merges ("left right" per line, rank = position).
 * A merge whose parts or result are not tokens can never apply to token
 * ids and is skipped; the files written by the reference converter have
 * none. The first of duplicate merges keeps its rank. */
static int load_merges(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err) {
        struct lmp_gguf_value arr;
        int r = lmp_gguf_get_arr(g, KEY_MERGES, LMP_GGUF_STRING, &arr);
        if (r == -ENOENT)
                return lmp_error_set(err, -EINVAL, "%s: missing (needed by a gpt2 tokenizer)", KEY_MERGES);
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not an array of strings", KEY_MERGES);
        if (arr.n > UINT32_MAX / 4)
                return lmp_error_set(err, -EINVAL, "%s: %llu merges", KEY_MERGES, (unsigned long long)arr.n);

        uint64_t size = 16;
        while (size < arr.n * 2)
                size <<= 1;
        v->merges = malloc(size * sizeof(*v->merges));
        if (!v->merges)
                return -ENOMEM;
        for (uint64_t i = 0; i < size; i++)
                v->merges[i].key = UINT64_MAX;
        v->merges_mask = size - 1;

        struct lmp_gguf_iter it;
        struct lmp_gguf_value e;
        char *joined = NULL;
        size_t joined_cap = 0;
        uint32_t rank = 0;
        lmp_gguf_iter_init(&it, &arr);
        while (lmp_gguf_iter_next(&it, &e)) {
                struct lmp_gguf_str s;
                lmp_gguf_value_str(&e, &s);
                uint32_t this_rank = rank++;
                /* The separator is the first space after the first byte. */
                const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
                if (!sp) {
                        free(joined);
                        return lmp_error_set(err, -EINVAL, "%s[%u]: '%.*s' is not two tokens separated by a space",
                                             KEY_MERGES, this_rank, (int)LMP_MIN(s.len, 64), s.ptr);
                }
                size_t la = (size_t)(sp - s.ptr), lb = s.len - la - 1;
                int32_t a = lmp_vocab_lookup(v, s.ptr, la);
                int32_t b = lmp_vocab_lookup(v, sp + 1, lb);
                if (a == LMP_TOKEN_NONE || b == LMP_TOKEN_NONE)
                        continue;
                if (lmp_ws_reserve((void **)&joined, &joined_cap, la + lb, 1) < 0)
                        return -ENOMEM;
                memcpy(joined, s.ptr, la);
                memcpy(joined + la, sp + 1, lb);
                int32_t res = lmp_vocab_lookup(v, joined, la + lb);
                if (res == LMP_TOKEN_NONE)
                        continue;
                uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
                uint64_t i = merge_hash(key) & v->merges_mask;
                while (v->merges[i].key != UINT64_MAX && v->merges[i].key != key)
                        i = (i + 1) & v->merges_mask;
                if (v->merges[i].key == key)
                        continue;
                v->merges[i] = (struct lmp_merge_slot){ key, this_rank, res };
        }
        free(joined);
        return 0;
}

int lmp_bpe_init(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err) {
        size_t k;
        int r;

        for (k = 0; k < LMP_ARRAY_SIZE(pre_table); k++)
                if (strcmp(pre_table[k].name, v->pre) == 0)
                        break;
        if (k == LMP_ARRAY_SIZE(pre_table))
                return lmp_error_set(err, -ENOTSUP, "tokenizer.ggml.pre: unknown pre-tokenizer '%s'", v->pre);
        v->ignore_merges = pre_table[k].ignore_merges;
        v->add_bos = pre_table[k].add_bos;

        build_byte_maps(v);
        if ((r = load_merges(v, g, err)) < 0)
                return r;

        const char *const *res = pre_regex[pre_table[k].kind];
        for (int i = 0; i < LMP_PRE_MAX_REGEX && res[i]; i++) {
                char pat[1024];
                int ec;
                PCRE2_SIZE eo;
                if (widen_space(res[i], pat, sizeof(pat)) < 0)
                        return lmp_error_set(err, -EINVAL, "pre-tokenizer '%s': regex too long", v->pre);
                v->re[i] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                         &ec, &eo, NULL);
                if (!v->re[i]) {
                        PCRE2_UCHAR msg[256];
                        pcre2_get_error_message(ec, msg, sizeof(msg));
                        return lmp_error_set(err, -EINVAL, "pre-tokenizer '%s': regex %d at %zu: %s",
                                             v->pre, i, (size_t)eo, (const char *)msg);
                }
                /* JIT when the library has it; the interpreter otherwise. */
                (void)pcre2_jit_compile(v->re[i], PCRE2_JIT_COMPLETE);
                v->n_re = i + 1;
        }
        return 0;
}

void lmp_bpe_free(struct lmp_vocab *v) {
        for (int i = 0; i < v->n_re; i++)
                pcre2_code_free(v->re[i]);
        v->n_re = 0;
        free(v->merges);
        v->merges = NULL;
}

/* ------------------------------------------------------------- merging */

struct sym {
        int32_t id;             /* token id, LMP_TOKEN_NONE for an unknown byte */
        int32_t prev, next;
        uint32_t start;         /* first byte of the word it covers */
};

struct cand {
        uint32_t rank;
        int32_t left, right;
        int32_t lid, rid;
};

static inline bool cand_before(const struct cand *a, const struct cand *b) {
        return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

LMP_DEFINE_HEAP(static, cand_, struct cand, cand_before)

static void try_pair(const struct lmp_vocab *v, struct sym *s, struct cand *h, size_t *nh, int32_t l,
                     int32_t r) {
        if (l < 0 || r < 0 || s[l].id < 0 || s[r].id < 0)
                return;
        const struct lmp_merge_slot *m = find_merge(v, s[l].id, s[r].id);
        if (m)
                cand_push(h, nh, (struct cand){ m->rank, l, r, s[l].id, s[r].id });
}

/* Merges one word (raw bytes) and emits its tokens. */
static int bpe_word(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const uint8_t *w, size_t len,
                    struct lmp_tok_sink *sink) {
        if (len == 0)
                return 0;
        if (len == 1 && v->byte_tok[w[0]] != LMP_TOKEN_NONE) {
                lmp_sink_push(sink, v->byte_tok[w[0]]);
                return 0;
        }
        if (v->ignore_merges) {
                /* A word that is a token as a whole is taken as it is. */
                if (lmp_ws_reserve((void **)&ws->buf2, &ws->buf2_cap, len * 2, 1) < 0)
                        return -ENOMEM;
                size_t n = 0;
                for (size_t i = 0; i < len; i++) {
                        memcpy(ws->buf2 + n, v->byte_enc[w[i]], v->byte_enc_len[w[i]]);
                        n += v->byte_enc_len[w[i]];
                }
                int32_t id = lmp_vocab_lookup(v, ws->buf2, n);
                if (id != LMP_TOKEN_NONE) {
                        lmp_sink_push(sink, id);
                        return 0;
                }
        }

        if (lmp_ws_reserve(&ws->sym, &ws->sym_cap, len, sizeof(struct sym)) < 0 ||
            lmp_ws_reserve(&ws->heap, &ws->heap_cap, 3 * len, sizeof(struct cand)) < 0)
                return -ENOMEM;
        struct sym *s = ws->sym;
        struct cand *h = ws->heap;
        size_t nh = 0;

        for (size_t i = 0; i < len; i++)
                s[i] = (struct sym){ v->byte_tok[w[i]], (int32_t)i - 1,
                                     i + 1 < len ? (int32_t)i + 1 : -1, (uint32_t)i };
        for (size_t i = 1; i < len; i++)
                try_pair(v, s, h, &nh, (int32_t)i - 1, (int32_t)i);

        while (nh) {
                struct cand c = cand_pop(h, &nh);
                struct sym *l = &s[c.left], *r = &s[c.right];
                /* Stale: one side has merged since this pair was queued. */
                if (l->id != c.lid || r->id != c.rid || l->next != c.right)
                        continue;
                const struct lmp_merge_slot *m = find_merge(v, c.lid, c.rid);
                l->id = m->result;
                r->id = LMP_TOKEN_NONE - 1; /* dead */
                l->next = r->next;
                if (r->next >= 0)
                        s[r->next].prev = c.left;
                try_pair(v, s, h, &nh, l->prev, c.left);
                try_pair(v, s, h, &nh, c.left, l->next);
        }

        for (int32_t i = 0; i >= 0; i = s[i].next) {
                if (s[i].id >= 0) {
                        lmp_sink_push(sink, s[i].id);
                } else {
                        /* A byte whose printable form is not a token: as llama.cpp,
                         * emit the single-byte tokens of its encoded form, if any. */
                        uint8_t b = w[s[i].start];
                        for (int k = 0; k < v->byte_enc_len[b]; k++) {
                                int32_t id = lmp_vocab_lookup(v, &v->byte_enc[b][k], 1);
                                if (id != LMP_TOKEN_NONE)
                                        lmp_sink_push(sink, id);
                        }
                }
        }
        return 0;
}

/* ----------------------------------------------------- pre-tokenization */

/* Applies regex k (and the ones after it) to [off, off+len) of the
 * sanitized text; the words that come out of the last one are merged.
 * Like llama.cpp, the text between matches is kept as words too. */
static int split(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const uint8_t *t, size_t off, size_t len,
                 int k, struct lmp_tok_sink *sink) {
        /* n_re <= LMP_PRE_MAX_REGEX; the second test says so to the
         * compiler, which cannot see the bound through the recursion. */
        if (k >= v->n_re || k >= LMP_PRE_MAX_REGEX)
                return bpe_word(v, ws, t + off, len, sink);

        size_t pos = 0;
        size_t done = 0;
        int r;
        while (pos < len) {
                int rc = pcre2_match(v->re[k], t + off, len, pos, PCRE2_NO_UTF_CHECK, ws->md, NULL);
                if (rc < 0) {
                        if (rc == PCRE2_ERROR_NOMATCH)
                                break;
                        return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EIO;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ws->md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) {
                        /* An empty match: step over one character. */
                        pos = ms + lmp_utf8_char_len(t + off + ms, len - ms);
                        continue;
                }
                if (ms > done && (r = split(v, ws, t, off + done, ms - done, k + 1, sink)) < 0)
                        return r;
                if ((r = split(v, ws, t, off + ms, me - ms, k + 1, sink)) < 0)
                        return r;
                done = pos = me;
        }
        if (done < len && (r = split(v, ws, t, off + done, len - done, k + 1, sink)) < 0)
                return r;
        return 0;
}

int lmp_bpe_tokenize(const struct lmp_vocab *v, struct lmp_tok_ws *ws, const char *text, size_t len,
                     struct lmp_tok_sink *sink) {
        const uint8_t *t = (const uint8_t *)text;
        size_t n = len;

        /* The regexes need valid UTF-8: each byte that does not start a valid
         * sequence becomes U+FFFD, as llama.cpp's decoder does. */
        size_t i = 0;
        while (i < len) {
                size_t l = lmp_utf8_char_len(t + i, len - i);
                if (!l)
                        break;
                i += l;
        }
        if (i < len) {
                if (lmp_ws_reserve((void **)&ws->buf, &ws->buf_cap, len * 3, 1) < 0)
                        return -ENOMEM;
                memcpy(ws->buf, text, i);
                n = i;
                while (i < len) {
                        size_t l = lmp_utf8_char_len(t + i, len - i);
                        if (l) {
                                memcpy(ws->buf + n, t + i, l);
                                n += l;
                                i += l;
                        } else {
                                memcpy(ws->buf + n, "\xef\xbf\xbd", 3);
                                n += 3;
                                i++;
                        }
                }
                t = (const uint8_t *)ws->buf;
        }
        if (!ws->md) {
                ws->md = pcre2_match_data_create(1, NULL);
                if (!ws->md)
                        return -ENOMEM;
        }
        return split(v, ws, t, 0, n, 0, sink);
}

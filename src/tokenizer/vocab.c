/* Loading a vocabulary from GGUF metadata: token texts, scores and types,
 * the special token ids and flags, the text -> id hash, the end-of-generation
 * set and the list of special tokens matched in input text. The defaults
 * and the adjustments made by token text follow llama.cpp's loader
 * (llama-vocab.cpp), so that the same file tokenizes the same way. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/vocab_internal.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
        TYPE_UNDEFINED = 0,
        TYPE_NORMAL = 1,
        TYPE_UNKNOWN = 2,
        TYPE_CONTROL = 3,
        TYPE_USER_DEFINED = 4,
        TYPE_UNUSED = 5,
        TYPE_BYTE = 6,
};

/* Token texts that end a turn or the text (llama.cpp's list). */
static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
        "<|return|>", "<|call|>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
};

/* Texts that identify an EOT token when the file names none. */
static const char *const eot_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>",
};

/* Reads an optional token id key. A value of -1 (or absent key) leaves *id
 * alone; an id outside the vocabulary is an error. */
static int get_id(const struct lmp_gguf *g, const char *key, uint32_t n_tokens, int32_t *id,
                  struct lmp_error *err) {
        int64_t s;
        int r = lmp_gguf_get_i64(g, key, &s);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not an integer", key);
        if (s == -1)
                return 0;
        if (s < 0 || s >= n_tokens)
                return lmp_error_set(err, -EINVAL, "%s: token id %lld outside the vocabulary (%u tokens)",
                                     key, (long long)s, n_tokens);
        *id = (int32_t)s;
        return 0;
}

static int get_flag(const struct lmp_gguf *g, const char *key, bool *flag, struct lmp_error *err) {
        bool b;
        int r = lmp_gguf_get_bool(g, key, &b);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not a boolean", key);
        *flag = b;
        return 0;
}

static int load_tokens(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err) {
        struct lmp_gguf_value arr;
        int r = lmp_gguf_get_arr(g, KEY_TOKENS, LMP_GGUF_STRING, &arr);
        if (r == -ENOENT)
                return lmp_error_set(err, -EINVAL, "%s: missing", KEY_TOKENS);
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not an array of strings", KEY_TOKENS);
        if (arr.n == 0 || arr.n > INT32_MAX - 1)
                return lmp_error_set(err, -EINVAL, "%s: %llu tokens", KEY_TOKENS,
                                     (unsigned long long)arr.n);
        v->n_tokens = (uint32_t)arr.n;

        struct lmp_gguf_str *strs = calloc(arr.n, sizeof(*strs));
        if (!strs)
                return -ENOMEM;
        lmp_gguf_arr_strs(&arr, strs);

        /* Empty tokens get a placeholder text, as llama.cpp does. */
        uint64_t total = 0;
        for (uint32_t i = 0; i < v->n_tokens; i++)
                total += strs[i].len ? strs[i].len : 24;
        if (total > UINT32_MAX) {
                free(strs);
                return lmp_error_set(err, -EINVAL, "%s: %llu bytes of token text", KEY_TOKENS,
                                     (unsigned long long)total);
        }
        v->text = malloc(total ? total : 1);
        v->tok = calloc(v->n_tokens, sizeof(*v->tok));
        if (!v->text || !v->tok) {
                free(strs);
                return -ENOMEM;
        }
        uint32_t off = 0;
        for (uint32_t i = 0; i < v->n_tokens; i++) {
                uint32_t len;
                if (strs[i].len) {
                        len = (uint32_t)strs[i].len;
                        memcpy(v->text + off, strs[i].ptr, len);
                } else {
                        len = (uint32_t)snprintf(v->text + off, 24, "[EMPTY_%u]", i);
                }
                v->tok[i] = (struct lmp_span){ off, len };
                off += len;
        }
        free(strs);
        return 0;
}

static int build_hash(struct lmp_vocab *v, struct lmp_error *err) {
        uint32_t dup[2];
        int r = lmp_vocab_hash_build(v, dup);
        if (r == -EEXIST) {
                const struct lmp_span *t = &v->tok[dup[1]];
                return lmp_error_set(err, -EINVAL, "%s: duplicate token '%.*s' (ids %u and %u)", KEY_TOKENS,
                                     (int)LMP_MIN(t->len, 64), v->text + t->off, dup[0], dup[1]);
        }
        return r;
}

static int load_scores_and_types(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err) {
        struct lmp_gguf_value arr;
        int r;

        v->score = calloc(v->n_tokens, sizeof(*v->score));
        v->attr = calloc(v->n_tokens, sizeof(*v->attr));
        v->eog = calloc(v->n_tokens, 1);
        if (!v->score || !v->attr || !v->eog)
                return -ENOMEM;

        r = lmp_gguf_get_arr(g, KEY_SCORES, -1, &arr);
        if (r == 0) {
                if (arr.n < v->n_tokens)
                        return lmp_error_set(err, -EINVAL, "%s: %llu scores for %u tokens", KEY_SCORES,
                                             (unsigned long long)arr.n, v->n_tokens);
                float *tmp = malloc(arr.n * sizeof(float));
                if (!tmp)
                        return -ENOMEM;
                r = lmp_gguf_arr_f32(&arr, tmp);
                if (r < 0 && arr.elem_type == LMP_GGUF_I32) {
                        for (uint64_t i = 0; i < v->n_tokens; i++) {
                                int32_t s;
                                memcpy(&s, arr.data + i * 4, 4);
                                tmp[i] = (float)s;
                        }
                        r = 0;
                }
                if (r == 0)
                        memcpy(v->score, tmp, v->n_tokens * sizeof(float));
                free(tmp);
                if (r < 0)
                        return lmp_error_set(err, -EINVAL, "%s: not an array of f32 or i32", KEY_SCORES);
        } else if (r != -ENOENT) {
                return lmp_error_set(err, -EINVAL, "%s: not an array", KEY_SCORES);
        }

        r = lmp_gguf_get_arr(g, KEY_TYPES, -1, &arr);
        if (r == -ENOENT) {
                for (uint32_t i = 0; i < v->n_tokens; i++)
                        v->attr[i] = LMP_TOKEN_ATTR_NORMAL;
                return 0;
        }
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not an array", KEY_TYPES);
        if (arr.n < v->n_tokens)
                return lmp_error_set(err, -EINVAL, "%s: %llu types for %u tokens", KEY_TYPES,
                                     (unsigned long long)arr.n, v->n_tokens);
        int32_t *types = malloc(arr.n * sizeof(int32_t));
        if (!types)
                return -ENOMEM;
        r = lmp_gguf_arr_i32(&arr, types);
        if (r < 0) {
                free(types);
                return lmp_error_set(err, -EINVAL, "%s: not an array of integers", KEY_TYPES);
        }
        for (uint32_t i = 0; i < v->n_tokens; i++) {
                switch (types[i]) {
                case TYPE_NORMAL: v->attr[i] = LMP_TOKEN_ATTR_NORMAL; break;
                case TYPE_UNKNOWN: v->attr[i] = LMP_TOKEN_ATTR_UNKNOWN; break;
                case TYPE_CONTROL: v->attr[i] = LMP_TOKEN_ATTR_CONTROL; break;
                case TYPE_USER_DEFINED: v->attr[i] = LMP_TOKEN_ATTR_USER_DEFINED; break;
                case TYPE_UNUSED: v->attr[i] = LMP_TOKEN_ATTR_UNUSED; break;
                case TYPE_BYTE: v->attr[i] = LMP_TOKEN_ATTR_BYTE; break;
                default: v->attr[i] = LMP_TOKEN_ATTR_UNDEFINED; break;
                }
        }
        free(types);
        return 0;
}

static int load_special_ids(struct lmp_vocab *v, const struct lmp_gguf *g, struct lmp_error *err) {
        static const struct {
                const char *key;
                size_t field;
        } ids[] = {
                { "tokenizer.ggml.bos_token_id", offsetof(struct lmp_vocab, bos) },
                { "tokenizer.ggml.eos_token_id", offsetof(struct lmp_vocab, eos) },
                { "tokenizer.ggml.eot_token_id", offsetof(struct lmp_vocab, eot) },
                { "tokenizer.ggml.eom_token_id", offsetof(struct lmp_vocab, eom) },
                { "tokenizer.ggml.unknown_token_id", offsetof(struct lmp_vocab, unk) },
                { "tokenizer.ggml.padding_token_id", offsetof(struct lmp_vocab, pad) },
                /* WordPiece: [CLS] is the BOS; GGUF spells the key "seperator". */
                { "tokenizer.ggml.cls_token_id", offsetof(struct lmp_vocab, bos) },
                { "tokenizer.ggml.seperator_token_id", offsetof(struct lmp_vocab, sep) },
        };
        int r;

        /* Defaults by model, as llama.cpp has them; dropped when out of range. */
        v->eot = v->eom = v->pad = v->sep = LMP_TOKEN_NONE;
        if (v->type == LMP_VOCAB_SPM) {
                v->bos = 1;
                v->eos = 2;
                v->unk = 0;
        } else if (v->type == LMP_VOCAB_WPM) {
                v->bos = 101;   /* [CLS] */
                v->eos = LMP_TOKEN_NONE;
                v->unk = 100;
                v->sep = 102;
                v->pad = 0;
        } else {
                v->bos = v->eos = 11;
                v->unk = LMP_TOKEN_NONE;
        }
        int32_t *fields[] = { &v->bos, &v->eos, &v->unk, &v->sep, &v->pad };
        for (size_t i = 0; i < LMP_ARRAY_SIZE(fields); i++)
                if (*fields[i] >= (int32_t)v->n_tokens)
                        *fields[i] = LMP_TOKEN_NONE;

        for (size_t i = 0; i < LMP_ARRAY_SIZE(ids); i++) {
                r = get_id(g, ids[i].key, v->n_tokens, (int32_t *)((char *)v + ids[i].field), err);
                if (r < 0)
                        return r;
        }
        if ((r = get_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) < 0 ||
            (r = get_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) < 0 ||
            (r = get_flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)) < 0)
                return r;
        if (v->add_bos && v->bos == LMP_TOKEN_NONE)
                return lmp_error_set(err, -EINVAL, "tokenizer.ggml.add_bos_token is true but there is no BOS token");
        if (v->add_eos && v->eos == LMP_TOKEN_NONE)
                return lmp_error_set(err, -EINVAL, "tokenizer.ggml.add_eos_token is true but there is no EOS token");
        if (v->add_sep && v->sep == LMP_TOKEN_NONE)
                return lmp_error_set(err, -EINVAL, "tokenizer.ggml.seperator_token_id: a WordPiece vocabulary needs [SEP]");
        return 0;
}

/* Finds EOT/EOM by text when the file names none, marks end-of-generation
 * tokens (which become control tokens if they were not), and sets the
 * strip attributes llama.cpp gives Phi-3's special tokens. */
static int32_t find_text(const struct lmp_vocab *v, const char *s) {
        return lmp_vocab_lookup(v, s, strlen(s));
}

static void adjust_by_text(struct lmp_vocab *v, const struct lmp_gguf *g) {
        int32_t id;
        for (size_t k = 0; k < LMP_ARRAY_SIZE(eot_texts) && v->eot == LMP_TOKEN_NONE; k++) {
                if ((id = find_text(v, eot_texts[k])) != LMP_TOKEN_NONE) {
                        v->eot = id;
                        v->attr[id] |= LMP_TOKEN_ATTR_CONTROL;
                }
        }
        if (v->eom == LMP_TOKEN_NONE && (id = find_text(v, "<|eom_id|>")) != LMP_TOKEN_NONE) {
                v->eom = id;
                v->attr[id] |= LMP_TOKEN_ATTR_CONTROL;
        }
        for (size_t k = 0; k < LMP_ARRAY_SIZE(eog_texts); k++) {
                if ((id = find_text(v, eog_texts[k])) != LMP_TOKEN_NONE) {
                        v->eog[id] = 1;
                        v->attr[id] |= LMP_TOKEN_ATTR_CONTROL;
                }
        }
        int32_t always[] = { v->eos, v->eot, v->eom };
        for (size_t i = 0; i < LMP_ARRAY_SIZE(always); i++)
                if (always[i] != LMP_TOKEN_NONE)
                        v->eog[always[i]] = 1;

        /* Phi-3's special tokens swallow the whitespace after them. */
        struct lmp_gguf_str name;
        bool phi3 = false;
        if (lmp_gguf_get_str(g, "general.name", &name) == 0) {
                char low[128];
                size_t n = LMP_MIN(name.len, sizeof(low) - 1);
                for (size_t i = 0; i < n; i++)
                        low[i] = (char)tolower((unsigned char)name.ptr[i]);
                low[n] = '\0';
                phi3 = strstr(low, "phi-3") || strstr(low, "phi3");
        }
        if (phi3) {
                for (uint32_t i = 0; i < v->n_tokens; i++) {
                        if (v->attr[i] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED |
                                          LMP_TOKEN_ATTR_UNKNOWN))
                                v->attr[i] |= LMP_TOKEN_ATTR_RSTRIP;
                }
                if ((id = find_text(v, "</s>")) != LMP_TOKEN_NONE)
                        v->attr[id] |= LMP_TOKEN_ATTR_RSTRIP;
                const char *keep[] = { "<unk>", "<s>", "<|endoftext|>" };
                for (size_t k = 0; k < LMP_ARRAY_SIZE(keep); k++)
                        if ((id = find_text(v, keep[k])) != LMP_TOKEN_NONE)
                                v->attr[id] &= (uint16_t)~LMP_TOKEN_ATTR_RSTRIP;
        }
}

static int cmp_special(const void *a, const void *b, void *arg) {
        const struct lmp_vocab *v = arg;
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
        uint32_t lx = v->tok[x].len, ly = v->tok[y].len;
        if (lx != ly)
                return lx > ly ? -1 : 1;
        return x < y ? -1 : x > y;
}

/* Control, user-defined and unknown tokens are looked for in input text,
 * longest first. */
static int build_special(struct lmp_vocab *v) {
        uint32_t n = 0;
        for (uint32_t id = 0; id < v->n_tokens; id++)
                if (v->attr[id] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED | LMP_TOKEN_ATTR_UNKNOWN))
                        n++;
        v->special = malloc((n ? n : 1) * sizeof(int32_t));
        if (!v->special)
                return -ENOMEM;
        n = 0;
        uint64_t bytes = 0;
        for (uint32_t id = 0; id < v->n_tokens; id++) {
                if (v->attr[id] & (LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED | LMP_TOKEN_ATTR_UNKNOWN)) {
                        v->special[n++] = (int32_t)id;
                        bytes += v->tok[id].len;
                }
        }
        v->n_special = n;
        qsort_r(v->special, n, sizeof(int32_t), cmp_special, v);

        /* The trie: at most one node per byte of special text, plus node 0. */
        if (bytes + 1 > UINT32_MAX)
                return -E2BIG;
        v->trie = calloc(bytes + 1, sizeof(*v->trie));
        if (!v->trie)
                return -ENOMEM;
        v->n_trie = 1;
        for (uint32_t si = 0; si < n; si++) {
                const uint8_t *t = (const uint8_t *)v->text + v->tok[v->special[si]].off;
                uint32_t len = v->tok[v->special[si]].len;
                uint32_t *link = &v->trie_root[t[0]];
                uint32_t node = 0;
                for (uint32_t k = 0; k < len; k++) {
                        uint32_t c = *link;
                        while (c && v->trie[c].byte != t[k])
                                c = v->trie[c].sibling;
                        if (!c) {
                                c = v->n_trie++;
                                v->trie[c] = (struct lmp_trie_node){ 0, k ? *link : 0, -1, t[k] };
                                *link = c;
                        }
                        node = c;
                        link = &v->trie[node].child;
                }
                v->trie[node].special = (int32_t)si;
        }
        return 0;
}

/* Parses "<0xNN>"; -1 when the text is not a byte piece. */
static int parse_byte_piece(const char *s, size_t len) {
        if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !isxdigit((unsigned char)s[3]) ||
            !isxdigit((unsigned char)s[4]))
                return -1;
        char hex[3] = { s[3], s[4], 0 };
        return (int)strtol(hex, NULL, 16);
}

/* What each token renders to, computed once: SentencePiece pieces get
 * their ▁ turned into spaces, byte-level BPE tokens are mapped back from
 * printable code points to bytes, byte tokens become their byte, special
 * tokens keep their text (whether they are shown is decided at render
 * time). */
static int build_pieces(struct lmp_vocab *v) {
        uint64_t total = 0;
        for (uint32_t id = 0; id < v->n_tokens; id++)
                total += v->tok[id].len;
        /* Rendering never makes a token longer than its text. */
        v->piece_text = malloc(total ? total : 1);
        v->piece = calloc(v->n_tokens, sizeof(*v->piece));
        if (!v->piece_text || !v->piece)
                return -ENOMEM;
        uint32_t off = 0;
        v->max_piece = 0;
        for (uint32_t id = 0; id < v->n_tokens; id++) {
                const char *s = v->text + v->tok[id].off;
                size_t len = v->tok[id].len;
                uint16_t a = v->attr[id];
                char *o = v->piece_text + off;
                size_t n = 0;

                if (a & (LMP_TOKEN_ATTR_UNKNOWN | LMP_TOKEN_ATTR_CONTROL | LMP_TOKEN_ATTR_USER_DEFINED)) {
                        memcpy(o, s, len);
                        n = len;
                } else if (a & LMP_TOKEN_ATTR_NORMAL) {
                        if (v->type == LMP_VOCAB_SPM || v->type == LMP_VOCAB_WPM) {
                                for (size_t i = 0; i < len;) {
                                        if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                                                o[n++] = ' ';
                                                i += 3;
                                        } else {
                                                o[n++] = s[i++];
                                        }
                                }
                        } else {
                                /* Decode code points; ones outside the byte map are kept as they are. */
                                for (size_t i = 0; i < len;) {
                                        uint8_t c = (uint8_t)s[i];
                                        uint32_t cp = 0x110000;
                                        size_t l = 1;
                                        if (c < 0x80) {
                                                cp = c;
                                        } else if ((c & 0xe0) == 0xc0 && i + 1 < len &&
                                                   ((uint8_t)s[i + 1] & 0xc0) == 0x80) {
                                                cp = ((uint32_t)(c & 0x1f) << 6) | ((uint8_t)s[i + 1] & 0x3f);
                                                l = 2;
                                        }
                                        if (cp < LMP_ARRAY_SIZE(v->byte_dec) && v->byte_dec[cp] >= 0) {
                                                o[n++] = (char)v->byte_dec[cp];
                                                i += l;
                                        } else {
                                                l = LMP_MIN(lmp_utf8_len(c), len - i);
                                                memcpy(o + n, s + i, l);
                                                n += l;
                                                i += l;
                                        }
                                }
                        }
                } else if (a & LMP_TOKEN_ATTR_BYTE) {
                        int b = parse_byte_piece(s, len);
                        if (b >= 0) {
                                o[n++] = (char)b;
                        } else {
                                memcpy(o, s, len);
                                n = len;
                        }
                }
                v->piece[id] = (struct lmp_span){ off, (uint32_t)n };
                off += (uint32_t)n;
                if (n > v->max_piece)
                        v->max_piece = (uint32_t)n;
        }
        return 0;
}

static void find_byte_tokens(struct lmp_vocab *v) {
        for (int b = 0; b < 256; b++) {
                v->byte_tok[b] = LMP_TOKEN_NONE;
                if (v->type == LMP_VOCAB_SPM) {
                        char name[7];
                        snprintf(name, sizeof(name), "<0x%02X>", b);
                        v->byte_tok[b] = lmp_vocab_lookup(v, name, 6);
                        if (v->byte_tok[b] == LMP_TOKEN_NONE) {
                                char c = (char)b;
                                v->byte_tok[b] = lmp_vocab_lookup(v, &c, 1);
                        }
                } else {
                        v->byte_tok[b] = lmp_vocab_lookup(v, v->byte_enc[b], v->byte_enc_len[b]);
                }
        }
}

/* Whether some piece has ▁ right after a character other than ▁ (then
 * SentencePiece merges may cross word starts and the text cannot be
 * merged in chunks). */
static bool space_inside_piece(const struct lmp_vocab *v) {
        for (uint32_t id = 0; id < v->n_tokens; id++) {
                const char *s = v->text + v->tok[id].off;
                size_t len = v->tok[id].len;
                for (size_t k = 1; k + 3 <= len; k++) {
                        const char *p = memchr(s + k, '\xe2', len - k);
                        if (!p || (size_t)(p - s) + 3 > len)
                                break;
                        k = (size_t)(p - s);
                        if (memcmp(p, "\xe2\x96\x81", 3) == 0 && (k < 3 || memcmp(p - 3, "\xe2\x96\x81", 3) != 0))
                                return true;
                }
        }
        return false;
}

/* The longest token text (WordPiece's greedy match looks no further), and
 * whether the vocabulary is uncased: BERT's uncased models have no
 * upper-case letter in any normal piece, and lower-case and strip accents
 * from their input; cased ones keep both. */
static void note_lengths_and_case(struct lmp_vocab *v) {
        bool upper = false;
        v->max_token_len = 0;
        for (uint32_t id = 0; id < v->n_tokens; id++) {
                const char *s = v->text + v->tok[id].off;
                uint32_t len = v->tok[id].len;
                v->max_token_len = LMP_MAX(v->max_token_len, len);
                if (!upper && (v->attr[id] & LMP_TOKEN_ATTR_NORMAL))
                        for (uint32_t i = 0; i < len && !upper; i++)
                                upper = s[i] >= 'A' && s[i] <= 'Z';
        }
        v->wpm_uncased = v->type == LMP_VOCAB_WPM && !upper;
}

int lmp_vocab_load(const struct lmp_gguf *g, struct lmp_vocab **ret, struct lmp_error *err) {
        struct lmp_gguf_str model, pre;
        struct lmp_vocab *v;
        int r;

        r = lmp_gguf_get_str(g, KEY_MODEL, &model);
        if (r == -ENOENT)
                return lmp_error_set(err, -EINVAL, "%s: missing (not a model or vocabulary file?)", KEY_MODEL);
        if (r < 0)
                return lmp_error_set(err, -EINVAL, "%s: not a string", KEY_MODEL);

        v = calloc(1, sizeof(*v));
        if (!v)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        if (lmp_gguf_str_eq(model, "llama")) {
                v->type = LMP_VOCAB_SPM;
                v->add_space_prefix = true;
                v->add_bos = true;
                strcpy(v->pre, "default");
        } else if (lmp_gguf_str_eq(model, "gpt2")) {
                v->type = LMP_VOCAB_BPE;
                r = lmp_gguf_get_str(g, KEY_PRE, &pre);
                if (r == 0 && pre.len >= sizeof(v->pre)) {
                        r = lmp_error_set(err, -ENOTSUP, "%s: unknown pre-tokenizer '%.*s'", KEY_PRE,
                                          (int)LMP_MIN(pre.len, 64), pre.ptr);
                        goto fail;
                } else if (r == 0) {
                        memcpy(v->pre, pre.ptr, pre.len);
                } else if (r == -ENOENT) {
                        strcpy(v->pre, "default");
                } else {
                        r = lmp_error_set(err, -EINVAL, "%s: not a string", KEY_PRE);
                        goto fail;
                }
        } else if (lmp_gguf_str_eq(model, "bert")) {
                /* The pre-tokenizer name (bert-bge, ...) changes nothing:
                 * WordPiece's word splitting is fixed. */
                v->type = LMP_VOCAB_WPM;
                v->add_bos = true;
                v->add_sep = true;
                strcpy(v->pre, "default");
                r = lmp_gguf_get_str(g, KEY_PRE, &pre);
                if (r == 0 && pre.len < sizeof(v->pre)) {
                        memcpy(v->pre, pre.ptr, pre.len);
                        v->pre[pre.len] = '\0';
                }
        } else {
                r = lmp_error_set(err, -ENOTSUP, "%s: unsupported tokenizer '%.*s'", KEY_MODEL,
                                  (int)LMP_MIN(model.len, 64), model.ptr);
                goto fail;
        }

        if ((r = load_tokens(v, g, err)) < 0 || (r = build_hash(v, err)) < 0 ||
            (r = load_scores_and_types(v, g, err)) < 0)
                goto fail;
        if (v->type == LMP_VOCAB_BPE && (r = lmp_bpe_init(v, g, err)) < 0)
                goto fail;
        if ((r = load_special_ids(v, g, err)) < 0)
                goto fail;
        adjust_by_text(v, g);
        if ((r = build_special(v)) < 0 || (r = build_pieces(v)) < 0)
                goto fail;
        find_byte_tokens(v);
        note_lengths_and_case(v);
        v->spm_chunks = v->type == LMP_VOCAB_SPM && !space_inside_piece(v);
        *ret = v;
        return 0;
fail:
        if (r == -ENOMEM)
                lmp_error_set(err, -ENOMEM, "out of memory");
        lmp_vocab_free(v);
        return r;
}

void lmp_vocab_free(struct lmp_vocab *v) {
        if (!v)
                return;
        lmp_bpe_free(v);
        free(v->text);
        free(v->tok);
        free(v->score);
        free(v->attr);
        free(v->eog);
        free(v->piece_text);
        free(v->piece);
        free(v->hash);
        free(v->special);
        free(v->trie);
        free(v);
}

enum lmp_vocab_type lmp_vocab_type(const struct lmp_vocab *v) { return v->type; }
const char *lmp_vocab_pre(const struct lmp_vocab *v) { return v->pre; }
uint32_t lmp_vocab_n_tokens(const struct lmp_vocab *v) { return v->n_tokens; }
int32_t lmp_vocab_bos(const struct lmp_vocab *v) { return v->bos; }
int32_t lmp_vocab_eos(const struct lmp_vocab *v) { return v->eos; }
int32_t lmp_vocab_eot(const struct lmp_vocab *v) { return v->eot; }
int32_t lmp_vocab_eom(const struct lmp_vocab *v) { return v->eom; }
int32_t lmp_vocab_unk(const struct lmp_vocab *v) { return v->unk; }
int32_t lmp_vocab_pad(const struct lmp_vocab *v) { return v->pad; }
int32_t lmp_vocab_sep(const struct lmp_vocab *v) { return v->sep; }
bool lmp_vocab_add_bos(const struct lmp_vocab *v) { return v->add_bos; }
bool lmp_vocab_add_eos(const struct lmp_vocab *v) { return v->add_eos; }
size_t lmp_vocab_max_piece(const struct lmp_vocab *v) { return v->max_piece; }

bool lmp_vocab_is_eog(const struct lmp_vocab *v, int32_t id) {
        return id >= 0 && (uint32_t)id < v->n_tokens && v->eog[id];
}

const char *lmp_vocab_token_text(const struct lmp_vocab *v, int32_t id, size_t *ret_len) {
        if (id < 0 || (uint32_t)id >= v->n_tokens)
                return NULL;
        *ret_len = v->tok[id].len;
        return v->text + v->tok[id].off;
}

unsigned lmp_vocab_token_attr(const struct lmp_vocab *v, int32_t id) {
        if (id < 0 || (uint32_t)id >= v->n_tokens)
                return 0;
        return v->attr[id];
}

int32_t lmp_vocab_find(const struct lmp_vocab *v, const char *text, size_t len) {
        return lmp_vocab_lookup(v, text, len);
}

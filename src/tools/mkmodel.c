/* lmp_mkmodel (see mkmodel.h): the shapes table, the vocabulary and chat
 * template builders, the tensor plan and the seeded row generator.
 *
 * Weight scales are chosen so that a random model still behaves like a
 * model: the embedding, the output and every matrix have entries of
 * standard deviation 1.28/sqrt(n_embd) and norm weights are 1 +- 0.1 (the
 * scales of the conformance fixtures' random models). Logits then have a
 * standard deviation of about 1.3 and greedy continuations keep changing
 * token. Larger embeddings make a tied output predict the current token
 * again and again; unit-variance projections (1/sqrt(fan-in)) made short
 * loops of a few tokens more common. */
#include "tools/mkmodel.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/macros.h"
#include "gguf/gguf.h"
#include "gguf/types.h"
#include "quant/fp16.h"
#include "tools/encode.h"

enum chat {
        CHAT_ZEPHYR,    /* TinyLlama chat: <|user|> ... </s>; <s>=1, </s>=2 */
        CHAT_MISTRAL,   /* [INST] ... [/INST]; <s>=1, </s>=2 */
        CHAT_CHATML,    /* Qwen2.5: <|im_start|> ... <|im_end|> at the ids Qwen uses */
        CHAT_LLAMA3,    /* Llama 3.x header tokens at the ids Llama 3 uses */
        CHAT_QWEN3,     /* Qwen3: ChatML without a default system prompt, Qwen's ids */
        CHAT_PHI3,      /* Phi-3.5: <|user|> ... <|end|>, specials from 32000 */
        CHAT_GEMMA,     /* Gemma 3: <start_of_turn> ... <end_of_turn>; <eos>=1, <bos>=2 */
        CHAT_NONE,      /* an encoder (bert): its WordPiece vocabulary comes from --vocab */
};

/* The newer families, from each model's config.json. */
#define QWEN3(nm, title, E, F, NL, NH, NKV) \
        { .name = nm, .arch = "qwen3", .model_name = title " (random weights)", .n_vocab = 151936, \
          .n_embd = E, .n_ff = F, .n_layer = NL, .n_head = NH, .n_head_kv = NKV, .n_ctx = 40960, \
          .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true, .chat = CHAT_QWEN3, \
          .head_dim = 128 }
#define GEMMA3(nm, title, V, E, F, NL, NH, NKV, CTX, SWA, SCALE) \
        { .name = nm, .arch = "gemma3", .model_name = title " (random weights)", .n_vocab = V, \
          .n_embd = E, .n_ff = F, .n_layer = NL, .n_head = NH, .n_head_kv = NKV, .n_ctx = CTX, \
          .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true, .chat = CHAT_GEMMA, \
          .head_dim = 256, .n_swa = SWA, .rope_scale = SCALE }

static const struct lmp_shape shapes[] = {
        { "tinyllama-1.1b", "llama", "TinyLlama 1.1B Chat (random weights)",
          32000, 2048, 5632, 22, 32, 4, 2048, 10000.f, 1e-5f, false, false, false, CHAT_ZEPHYR },
        { "qwen2.5-0.5b", "qwen2", "Qwen2.5 0.5B Instruct (random weights)",
          151936, 896, 4864, 24, 14, 2, 32768, 1000000.f, 1e-6f, true, true, false, CHAT_CHATML },
        { "qwen2.5-3b", "qwen2", "Qwen2.5 3B Instruct (random weights)",
          151936, 2048, 11008, 36, 16, 2, 32768, 1000000.f, 1e-6f, true, true, false, CHAT_CHATML },
        { "llama-3.2-1b", "llama", "Llama 3.2 1B Instruct (random weights)",
          128256, 2048, 8192, 16, 32, 8, 131072, 500000.f, 1e-5f, true, false, true, CHAT_LLAMA3 },
        { "mistral-7b", "llama", "Mistral 7B Instruct v0.2 (random weights)",
          32000, 4096, 14336, 32, 32, 8, 32768, 1000000.f, 1e-5f, false, false, false, CHAT_MISTRAL },
        /* BAAI/bge-small-en-v1.5: an encoder (n_head_kv = n_head; rope_freq_base unused),
         * CLS pooling; its vocabulary is copied (--vocab, 30522 WordPiece tokens). */
        { "bge-small", "bert", "BGE small en v1.5 (random weights)",
          30522, 384, 1536, 12, 12, 12, 512, 0.f, 1e-12f, false, false, false, CHAT_NONE },
        /* Small shapes for tests: the fixtures' geometry, with each chat kind. */
        { "test-llama", "llama", "test llama (random weights)",
          1024, 256, 768, 2, 4, 2, 2048, 10000.f, 1e-5f, false, false, false, CHAT_ZEPHYR },
        { "test-qwen2", "qwen2", "test qwen2 (random weights)",
          2048, 256, 768, 2, 4, 2, 2048, 1000000.f, 1e-6f, true, true, false, CHAT_CHATML },
        { "test-spm32k", "llama", "test 32000-token vocabulary (random weights)",
          32000, 64, 128, 1, 4, 2, 2048, 10000.f, 1e-5f, false, false, false, CHAT_ZEPHYR },
        { "test-llama3", "llama", "test llama3 (random weights)",
          1024, 256, 512, 16, 4, 1, 4096, 500000.f, 1e-5f, true, false, true, CHAT_LLAMA3 },
        QWEN3("qwen3-0.6b", "Qwen3 0.6B", 1024, 3072, 28, 16, 8),
        QWEN3("qwen3-1.7b", "Qwen3 1.7B", 2048, 6144, 28, 16, 8),
        QWEN3("qwen3-4b", "Qwen3 4B", 2560, 9728, 36, 32, 8),
        { .name = "phi-3.5-mini", .arch = "phi3", .model_name = "Phi 3.5 Mini Instruct (random weights)",
          .n_vocab = 32064, .n_embd = 3072, .n_ff = 8192, .n_layer = 32, .n_head = 32, .n_head_kv = 32,
          .n_ctx = 131072, .rope_freq_base = 10000.f, .norm_eps = 1e-5f, .chat = CHAT_PHI3,
          .n_ctx_orig = 4096 },
        GEMMA3("gemma-3-1b", "Gemma 3 1B IT", 262144, 1152, 6912, 26, 4, 1, 32768, 512, 0.f),
        GEMMA3("gemma-3-4b", "Gemma 3 4B IT", 262208, 2560, 10240, 34, 8, 4, 131072, 1024, 8.f),
        /* Small ones for tests: the archs/ fixtures' geometry. */
        { .name = "test-qwen3", .arch = "qwen3", .model_name = "test qwen3 (random weights)", .n_vocab = 2048,
          .n_embd = 256, .n_ff = 768, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ctx = 4096,
          .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true, .chat = CHAT_QWEN3,
          .head_dim = 128 },
        { .name = "test-phi3", .arch = "phi3", .model_name = "test phi3 (random weights)", .n_vocab = 32064,
          .n_embd = 256, .n_ff = 768, .n_layer = 2, .n_head = 4, .n_head_kv = 4, .n_ctx = 131072,
          .rope_freq_base = 10000.f, .norm_eps = 1e-5f, .chat = CHAT_PHI3, .n_ctx_orig = 4096 },
        { .name = "test-gemma3", .arch = "gemma3", .model_name = "test gemma3 (random weights)", .n_vocab = 1024,
          .n_embd = 256, .n_ff = 768, .n_layer = 6, .n_head = 4, .n_head_kv = 2, .n_ctx = 4096,
          .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true, .chat = CHAT_GEMMA,
          .head_dim = 96, .n_swa = 16 },
        /* Qwen2-VL 2B Instruct: the language model (Qwen2 with M-RoPE) and its
         * vision encoder, an f16 mmproj as llama.cpp's converter writes it
         * from the bf16 checkpoint (so every value is a bf16 value). */
        { .name = "qwen2-vl-2b", .arch = "qwen2vl", .model_name = "Qwen2-VL 2B Instruct (random weights)",
          .n_vocab = 151936, .n_embd = 1536, .n_ff = 8960, .n_layer = 28, .n_head = 12, .n_head_kv = 2,
          .n_ctx = 32768, .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true,
          .qkv_bias = true, .chat = CHAT_CHATML, .mrope = { 16, 24, 24, 0 } },
        { .name = "qwen2-vl-2b-mmproj", .arch = "clip",
          .model_name = "Qwen2-VL 2B Instruct vision encoder (random weights)", .n_embd = 1280, .n_ff = 5120,
          .n_layer = 32, .n_head = 16, .n_head_kv = 16, .norm_eps = 1e-6f, .chat = CHAT_NONE,
          .patch_size = 14, .proj_dim = 1536, .bf16_values = true },
        /* Small ones for tests: the vision fixtures' geometry. */
        { .name = "test-qwen2vl", .arch = "qwen2vl", .model_name = "test qwen2vl (random weights)",
          .n_vocab = 151936, .n_embd = 64, .n_ff = 192, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
          .n_ctx = 4096, .rope_freq_base = 1000000.f, .norm_eps = 1e-6f, .tied_output = true,
          .qkv_bias = true, .chat = CHAT_CHATML, .mrope = { 2, 3, 3, 0 } },
        { .name = "test-qwen2vl-mmproj", .arch = "clip", .model_name = "test qwen2vl vision encoder (random weights)",
          .n_embd = 64, .n_ff = 128, .n_layer = 2, .n_head = 4, .n_head_kv = 4, .norm_eps = 1e-6f,
          .chat = CHAT_NONE, .patch_size = 14, .proj_dim = 64 },
};
#undef QWEN3
#undef GEMMA3

const struct lmp_shape *lmp_shape_find(const char *name) {
        for (size_t i = 0; i < LMP_ARRAY_SIZE(shapes); i++)
                if (strcasecmp(shapes[i].name, name) == 0)
                        return &shapes[i];
        return NULL;
}

const struct lmp_shape *lmp_shape_list(int *ret_n) {
        *ret_n = (int)LMP_ARRAY_SIZE(shapes);
        return shapes;
}

/* ------------------------------------------------------------ vocabulary */

enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_BYTE = 6 };

struct vocab {
        uint32_t n;
        char **tokens;          /* pointers into arena */
        float *scores;
        int32_t *types;
        char *arena;
        size_t arena_used, arena_size;
        uint32_t bos, eos, unk;
        bool add_bos;
        const char *template;
};

static const char tmpl_zephyr[] =
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token + '\n' }}"
        "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token + '\n' }}"
        "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}"
        "{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
        "{% endfor %}";

static const char tmpl_mistral[] =
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% endif %}{% endfor %}";

static const char tmpl_chatml[] =
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

static const char tmpl_llama3[] =
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

static const char tmpl_qwen3[] =
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/* Phi-3.5 mini's own template. */
static const char tmpl_phi3[] =
        "{% for message in messages %}"
        "{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/* Gemma 3's, text only: the system prompt opens the first user turn. */
static const char tmpl_gemma3[] =
        "{{ bos_token }}"
        "{% if messages[0]['role'] == 'system' %}"
        "{% set first_user_prefix = messages[0]['content'] | trim + '\n\n' %}{% set loop_messages = messages[1:] %}"
        "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
        "{% for message in loop_messages %}"
        "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\n' }}{% if loop.first %}{{ first_user_prefix }}{% endif %}"
        "{{ message['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

static void vocab_free(struct vocab *v) {
        free(v->tokens);
        free(v->scores);
        free(v->types);
        free(v->arena);
}

/* Stores a piece at id (which must be free); returns false when full. */
static bool vocab_put(struct vocab *v, uint32_t id, const char *piece, float score, int32_t type) {
        size_t len = strlen(piece) + 1;
        if (v->arena_used + len > v->arena_size)
                return false;
        v->tokens[id] = memcpy(v->arena + v->arena_used, piece, len);
        v->arena_used += len;
        v->scores[id] = score;
        v->types[id] = type;
        return true;
}

/* Word number k in bijective base 26: a, b, ..., z, aa, ab, ... */
static void word_of(uint64_t k, char *out) {
        char tmp[16];
        int n = 0;
        k++;
        while (k > 0 && n < 15) {
                k--;
                tmp[n++] = (char)('a' + k % 26);
                k /= 26;
        }
        for (int i = 0; i < n; i++)
                out[i] = tmp[n - 1 - i];
        out[n] = 0;
}

/* count control tokens from id first: named[i] where the list has a name,
 * else PREFIX<k>|> numbered from k0 (Phi-3's placeholders, Llama 3's
 * reserved tokens). */
static bool put_controls(struct vocab *v, uint32_t first, uint32_t count, const char *const *named, size_t n_named,
                         const char *prefix, int k0) {
        char buf[64];
        bool ok = true;
        for (uint32_t i = 0; ok && i < count; i++) {
                const char *p = i < n_named ? named[i] : NULL;
                if (!p) {
                        snprintf(buf, sizeof(buf), "%s%d|>", prefix, k0++);
                        p = buf;
                }
                ok = vocab_put(v, first + i, p, 0.f, TOK_CONTROL);
        }
        return ok;
}

static int vocab_build(struct vocab *v, const struct lmp_shape *s) {
        char buf[64];
        uint32_t n = s->n_vocab;

        memset(v, 0, sizeof(*v));
        v->n = n;
        v->arena_size = (size_t)n * 24 + 4096;
        v->tokens = calloc(n, sizeof(*v->tokens));
        v->scores = calloc(n, sizeof(*v->scores));
        v->types = calloc(n, sizeof(*v->types));
        v->arena = malloc(v->arena_size);
        if (!v->tokens || !v->scores || !v->types || !v->arena)
                return -ENOMEM;

        /* Special tokens first, at the ids the real vocabulary has them. */
        bool ok = s->chat == CHAT_GEMMA || vocab_put(v, 0, "<unk>", 0.f, TOK_UNKNOWN);
        v->unk = 0;
        switch (s->chat) {
        case CHAT_PHI3: {
                /* Llama 2's <s>, </s>, then Phi-3's 64 added tokens from 32000. */
                static const char *const named[] = {
                        "<|endoftext|>", "<|assistant|>", NULL, NULL, NULL, NULL, "<|system|>", "<|end|>",
                        NULL, NULL, "<|user|>",
                };
                ok = ok && n >= 32064 && vocab_put(v, 1, "<s>", 0.f, TOK_CONTROL) &&
                     vocab_put(v, 2, "</s>", 0.f, TOK_CONTROL) &&
                     put_controls(v, 32000, n - 32000, named, LMP_ARRAY_SIZE(named), "<|placeholder", 1);
                v->bos = 1;
                v->eos = 32000;
                v->add_bos = true;
                v->template = tmpl_phi3;
                break;
        }
        case CHAT_GEMMA:
                ok = vocab_put(v, 0, "<pad>", 0.f, TOK_CONTROL) && vocab_put(v, 1, "<eos>", 0.f, TOK_CONTROL) &&
                     vocab_put(v, 2, "<bos>", 0.f, TOK_CONTROL) && vocab_put(v, 3, "<unk>", 0.f, TOK_UNKNOWN) &&
                     n > 106 && vocab_put(v, 105, "<start_of_turn>", 0.f, TOK_CONTROL) &&
                     vocab_put(v, 106, "<end_of_turn>", 0.f, TOK_CONTROL);
                v->unk = 3;
                v->bos = 2;
                v->eos = 1;
                v->add_bos = true;
                v->template = tmpl_gemma3;
                break;
        case CHAT_ZEPHYR:
        case CHAT_MISTRAL:
                ok = ok && vocab_put(v, 1, "<s>", 0.f, TOK_CONTROL) && vocab_put(v, 2, "</s>", 0.f, TOK_CONTROL);
                v->bos = 1;
                v->eos = 2;
                v->add_bos = true;
                v->template = s->chat == CHAT_ZEPHYR ? tmpl_zephyr : tmpl_mistral;
                break;
        case CHAT_CHATML:
        case CHAT_QWEN3: {
                /* Qwen2.5 and Qwen3: 151643..151645, or the last three ids of a small vocabulary. */
                uint32_t b = n >= 151936 ? 151643 : n - 3;
                ok = ok && vocab_put(v, b, "<|endoftext|>", 0.f, TOK_CONTROL) &&
                     vocab_put(v, b + 1, "<|im_start|>", 0.f, TOK_CONTROL) &&
                     vocab_put(v, b + 2, "<|im_end|>", 0.f, TOK_CONTROL);
                if (strcmp(s->arch, "qwen2vl") == 0) {
                        /* Qwen2-VL's own tokens, after <|im_end|> as in its vocabulary */
                        static const char *const vl[] = {
                                "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
                                "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
                        };
                        ok = ok && n >= 151936 &&
                             put_controls(v, b + 3, LMP_ARRAY_SIZE(vl), vl, LMP_ARRAY_SIZE(vl), "", 0);
                }
                v->bos = b;
                v->eos = b + 2;
                v->add_bos = false;
                v->template = s->chat == CHAT_QWEN3 ? tmpl_qwen3 : tmpl_chatml;
                break;
        }
        case CHAT_LLAMA3: {
                /* Llama 3: 128000.. for the 128256-token vocabulary, else the last 256 ids. */
                uint32_t b = n >= 128256 ? 128000 : n - 256;
                static const char *const named[] = {
                        "<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, "<|finetune_right_pad_id|>", NULL,
                        "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                };
                ok = ok && put_controls(v, b, LMP_MIN(256u, n - b), named, LMP_ARRAY_SIZE(named),
                                        "<|reserved_special_token_", 0);
                v->bos = b;
                v->eos = b + 9;
                v->add_bos = true;
                v->template = tmpl_llama3;
                break;
        }
        default:
                return -EINVAL;
        }

        /* Then, in the free ids in order: the 256 byte pieces, single
         * characters, and word pieces with and without the word-start mark
         * (U+2581) as filler, scored so that earlier pieces win merges. */
        uint32_t id = 0;
        float score = 0.f;
#define NEXT_FREE() do { while (id < n && v->tokens[id]) id++; } while (0)
        for (int b = 0; ok && b < 256; b++) {
                NEXT_FREE();
                if (id >= n)
                        return -EINVAL;
                snprintf(buf, sizeof(buf), "<0x%02X>", b);
                ok = vocab_put(v, id, buf, 0.f, TOK_BYTE);
        }
        NEXT_FREE();
        if (ok && id < n)
                ok = vocab_put(v, id, "\xe2\x96\x81", score--, TOK_NORMAL);
        for (int c = 0x21; ok && c < 0x7f; c++) {
                NEXT_FREE();
                if (id >= n)
                        break;
                buf[0] = (char)c;
                buf[1] = 0;
                ok = vocab_put(v, id, buf, score--, TOK_NORMAL);
        }
        for (uint64_t k = 0; ok; k++) {
                char w[16];
                word_of(k / 2, w);
                if (k / 2 < 26 && k % 2)
                        continue;       /* single letters are already there */
                NEXT_FREE();
                if (id >= n)
                        break;
                if (k % 2 == 0)
                        snprintf(buf, sizeof(buf), "\xe2\x96\x81%s", w);
                else
                        snprintf(buf, sizeof(buf), "%s", w);
                ok = vocab_put(v, id, buf, score--, TOK_NORMAL);
        }
#undef NEXT_FREE
        return ok ? 0 : -ENOMEM;
}

static int set_vocab(struct lmp_gguf_writer *w, const struct vocab *v) {
        int r;
        if ((r = lmp_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
            (r = lmp_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default")) < 0 ||
            (r = lmp_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, v->n)) < 0 ||
            (r = lmp_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LMP_GGUF_F32, v->scores, v->n)) < 0 ||
            (r = lmp_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, v->types, v->n)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", v->bos)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", v->eos)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", v->unk)) < 0 ||
            (r = lmp_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos)) < 0 ||
            (r = lmp_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)) < 0 ||
            (r = lmp_gguf_writer_set_str(w, "tokenizer.chat_template", v->template)) < 0)
                return r;
        return 0;
}

/* Copies every tokenizer.* key of a vocabulary GGUF; its token count must
 * be the shape's vocabulary size, as llama.cpp requires of the embedding
 * (real vocabularies are padded to it, e.g. Qwen2.5's to 151936). */
static int copy_vocab(struct lmp_gguf_writer *w, const char *path, const struct lmp_shape *s,
                      struct lmp_error *err) {
        struct lmp_gguf *g;
        struct lmp_gguf_value toks;
        int r = lmp_gguf_open(path, &g, err);
        if (r < 0)
                return r;
        r = lmp_gguf_get_arr(g, "tokenizer.ggml.tokens", LMP_GGUF_STRING, &toks);
        if (r < 0) {
                r = lmp_error_set(err, r, "%s: no tokenizer.ggml.tokens string array", path);
                goto out;
        }
        if (toks.n != s->n_vocab) {
                r = lmp_error_set(err, -EINVAL, "%s: %" PRIu64 " tokens, but shape %s has %u", path,
                                  toks.n, s->name, s->n_vocab);
                goto out;
        }
        for (uint64_t i = 0; i < g->n_kv; i++) {
                const struct lmp_gguf_kv *kv = &g->kv[i];
                if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0)
                        continue;
                r = lmp_gguf_writer_set_value(w, kv->key, &kv->value);
                if (r < 0) {
                        r = lmp_error_set(err, r, "%s: cannot copy %.*s", path, (int)kv->key.len, kv->key.ptr);
                        goto out;
                }
        }
        r = 0;
out:
        lmp_gguf_free(g);
        return r;
}

/* ------------------------------------------------------------ tensors */

#define EMB_K 1.28f     /* embedding and output: EMB_K / sqrt(n_embd) */
#define MAT_K 1.28f     /* every other matrix: MAT_K / sqrt(n_embd) */
#define NORM_SD 0.1f    /* norm weights: 1 + NORM_SD * N(0, 1) */
#define BIAS_SD 0.02f   /* an encoder's biases: BIAS_SD * N(0, 1) */

enum gen {
        GEN_NORMAL,
        GEN_NORM,               /* 1 + scale * N(0, 1) */
        GEN_ROPE_FREQS,
        GEN_LONGROPE,           /* 1 + scale * (i / (n - 1))^2: LongRoPE-like divisors */
};

struct tensor_plan {
        char name[64];
        uint32_t n_dims;
        uint64_t ne[4];         /* ne[0] values a row; ne[1] * ne[2] * ne[3] rows */
        enum gen gen;
        float scale;
        uint32_t type;
};

struct plan {
        struct tensor_plan *t;
        int n, cap;
};

static int plan_add(struct plan *p, const char *name, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                    enum gen gen, float scale) {
        if (p->n == p->cap) {
                int cap = p->cap ? 2 * p->cap : 64;
                struct tensor_plan *t = realloc(p->t, (size_t)cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                p->t = t;
                p->cap = cap;
        }
        struct tensor_plan *t = &p->t[p->n++];
        snprintf(t->name, sizeof(t->name), "%s", name);
        t->n_dims = n_dims;
        t->ne[0] = ne0;
        t->ne[1] = ne1;
        t->ne[2] = t->ne[3] = 1;
        t->gen = gen;
        t->scale = scale;
        return 0;
}

static uint64_t rows_of(const struct tensor_plan *t) {
        return t->ne[1] * t->ne[2] * t->ne[3];
}

static uint32_t head_dim(const struct lmp_shape *s) {
        return s->head_dim ? s->head_dim : s->n_embd / s->n_head;
}

static bool is_arch(const struct lmp_shape *s, const char *arch) {
        return strcmp(s->arch, arch) == 0;
}

/* A BERT encoder as llama.cpp lays it out (the embeddings fixtures' files):
 * token, token-type and learned position embeddings with a LayerNorm, then
 * per layer biased q/k/v/output, a post-attention LayerNorm, a biased
 * up/down feed-forward (GELU, no gate) and a post-FFN LayerNorm. */
static int plan_build_bert(struct plan *p, const struct lmp_shape *s) {
        const uint64_t E = s->n_embd, F = s->n_ff;
        const float emb = EMB_K / sqrtf((float)E), mat = MAT_K / sqrtf((float)E);
        char nm[64];
        int r;

#define ADD(...) do { if ((r = plan_add(p, __VA_ARGS__)) < 0) return r; } while (0)
        ADD("token_embd.weight", 2, E, s->n_vocab, GEN_NORMAL, emb);
        ADD("token_types.weight", 2, E, 2, GEN_NORMAL, emb);
        ADD("position_embd.weight", 2, E, s->n_ctx, GEN_NORMAL, emb);
        ADD("token_embd_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
        ADD("token_embd_norm.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
        for (uint32_t l = 0; l < s->n_layer; l++) {
#define LAYER(suffix, ...) do { snprintf(nm, sizeof(nm), "blk.%u.%s", l, suffix); ADD(nm, __VA_ARGS__); } while (0)
                LAYER("attn_q.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_q.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_k.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_k.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_v.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_v.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_output.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_output.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_output_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("attn_output_norm.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ffn_up.weight", 2, E, F, GEN_NORMAL, mat);
                LAYER("ffn_up.bias", 1, F, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ffn_down.weight", 2, F, E, GEN_NORMAL, mat);
                LAYER("ffn_down.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("layer_output_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("layer_output_norm.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
#undef LAYER
        }
#undef ADD
        return 0;
}

/* A Qwen2-VL vision encoder as llama.cpp's converter writes its mmproj
 * (the vision fixtures' file): two patch convolution kernels (the temporal
 * halves), per block LayerNorms and biased q/k/v/out and up/down matrices,
 * a post LayerNorm, and the merger's mm.0 (4 n_embd square) and mm.2 (to
 * the language model's width). */
static int plan_build_clip(struct plan *p, const struct lmp_shape *s) {
        const uint64_t E = s->n_embd, F = s->n_ff, P = s->patch_size, M = 4 * E;
        const float mat = MAT_K / sqrtf((float)E), patch = MAT_K / sqrtf((float)(2 * 3 * P * P));
        const float merge = MAT_K / sqrtf((float)M);
        char nm[64];
        int r;

#define ADD(...) do { if ((r = plan_add(p, __VA_ARGS__)) < 0) return r; } while (0)
        for (int k = 0; k < 2; k++) {
                ADD(k ? "v.patch_embd.weight.1" : "v.patch_embd.weight", 4, P, P, GEN_NORMAL, patch);
                p->t[p->n - 1].ne[2] = 3;
                p->t[p->n - 1].ne[3] = E;
        }
        for (uint32_t l = 0; l < s->n_layer; l++) {
#define LAYER(suffix, ...) do { snprintf(nm, sizeof(nm), "v.blk.%u.%s", l, suffix); ADD(nm, __VA_ARGS__); } while (0)
                LAYER("attn_q.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_q.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_k.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_k.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_v.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_v.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("attn_out.weight", 2, E, E, GEN_NORMAL, mat);
                LAYER("attn_out.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ln1.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("ln1.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ln2.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("ln2.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ffn_up.weight", 2, E, F, GEN_NORMAL, mat);
                LAYER("ffn_up.bias", 1, F, 1, GEN_NORMAL, BIAS_SD);
                LAYER("ffn_down.weight", 2, F, E, GEN_NORMAL, MAT_K / sqrtf((float)F));
                LAYER("ffn_down.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
#undef LAYER
        }
        ADD("v.post_ln.weight", 1, E, 1, GEN_NORM, NORM_SD);
        ADD("v.post_ln.bias", 1, E, 1, GEN_NORMAL, BIAS_SD);
        ADD("mm.0.weight", 2, M, M, GEN_NORMAL, merge);
        ADD("mm.0.bias", 1, M, 1, GEN_NORMAL, BIAS_SD);
        ADD("mm.2.weight", 2, M, s->proj_dim, GEN_NORMAL, merge);
        ADD("mm.2.bias", 1, s->proj_dim, 1, GEN_NORMAL, BIAS_SD);
#undef ADD
        return 0;
}

static int plan_build(struct plan *p, const struct lmp_shape *s) {
        const uint64_t E = s->n_embd, hd = head_dim(s), q = hd * s->n_head, kv = hd * s->n_head_kv;
        const bool fused = is_arch(s, "phi3"), qk_norm = is_arch(s, "qwen3") || is_arch(s, "gemma3");
        const bool post_norms = is_arch(s, "gemma3");
        const float emb = EMB_K / sqrtf((float)E), mat = MAT_K / sqrtf((float)E);
        char nm[64];
        int r;

#define ADD(...) do { if ((r = plan_add(p, __VA_ARGS__)) < 0) return r; } while (0)
        if (strcmp(s->arch, "bert") == 0)
                return plan_build_bert(p, s);
        if (is_arch(s, "clip"))
                return plan_build_clip(p, s);
        ADD("token_embd.weight", 2, E, s->n_vocab, GEN_NORMAL, emb);
        if (s->llama3_rope)
                ADD("rope_freqs.weight", 1, hd / 2, 1, GEN_ROPE_FREQS, 1.f);
        if (s->n_ctx_orig) {
                ADD("rope_factors_long.weight", 1, hd / 2, 1, GEN_LONGROPE, 60.f);
                ADD("rope_factors_short.weight", 1, hd / 2, 1, GEN_LONGROPE, 1.5f);
        }
        for (uint32_t l = 0; l < s->n_layer; l++) {
#define LAYER(suffix, ...) do { snprintf(nm, sizeof(nm), "blk.%u.%s", l, suffix); ADD(nm, __VA_ARGS__); } while (0)
                LAYER("attn_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                if (fused) {    /* phi3: q, k, v rows in one matrix; gate and up rows in ffn_up */
                        LAYER("attn_qkv.weight", 2, E, q + 2 * kv, GEN_NORMAL, mat);
                        LAYER("attn_output.weight", 2, q, E, GEN_NORMAL, mat);
                        LAYER("ffn_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                        LAYER("ffn_up.weight", 2, E, 2 * (uint64_t)s->n_ff, GEN_NORMAL, mat);
                        LAYER("ffn_down.weight", 2, s->n_ff, E, GEN_NORMAL, mat);
                        continue;
                }
                LAYER("attn_q.weight", 2, E, q, GEN_NORMAL, mat);
                if (s->qkv_bias)
                        LAYER("attn_q.bias", 1, q, 1, GEN_NORMAL, 0.1f);
                LAYER("attn_k.weight", 2, E, kv, GEN_NORMAL, mat);
                if (s->qkv_bias)
                        LAYER("attn_k.bias", 1, kv, 1, GEN_NORMAL, 0.1f);
                LAYER("attn_v.weight", 2, E, kv, GEN_NORMAL, mat);
                if (s->qkv_bias)
                        LAYER("attn_v.bias", 1, kv, 1, GEN_NORMAL, 0.1f);
                if (qk_norm) {
                        LAYER("attn_q_norm.weight", 1, hd, 1, GEN_NORM, NORM_SD);
                        LAYER("attn_k_norm.weight", 1, hd, 1, GEN_NORM, NORM_SD);
                }
                LAYER("attn_output.weight", 2, q, E, GEN_NORMAL, mat);
                if (post_norms)
                        LAYER("post_attention_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("ffn_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
                LAYER("ffn_gate.weight", 2, E, s->n_ff, GEN_NORMAL, mat);
                LAYER("ffn_up.weight", 2, E, s->n_ff, GEN_NORMAL, mat);
                LAYER("ffn_down.weight", 2, s->n_ff, E, GEN_NORMAL, mat);
                if (post_norms)
                        LAYER("post_ffw_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
#undef LAYER
        }
        ADD("output_norm.weight", 1, E, 1, GEN_NORM, NORM_SD);
        if (!s->tied_output)
                ADD("output.weight", 2, E, s->n_vocab, GEN_NORMAL, emb);
#undef ADD
        return 0;
}

/* ------------------------------------------------------------ random rows */

static uint64_t splitmix64(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

struct gen_ctx {
        const struct tensor_plan *t;
        const struct lmp_shape *s;
        uint64_t seed;
        uint32_t tensor_index;
};

/* Llama 3.1 rope scaling (factor 32, low/high frequency factors 1 and 4,
 * original context 8192): the divisor of each rotary frequency. */
static float llama3_rope_factor(uint32_t i, uint32_t head_dim, float base) {
        const float factor = 32.f, low = 1.f, high = 4.f, orig = 8192.f;
        const float pi = 3.14159265358979f;
        float freq = powf(base, -(float)(2 * i) / (float)head_dim);
        float wavelen = 2 * pi / freq;
        if (wavelen < orig / high)
                return 1.f;
        if (wavelen > orig / low)
                return factor;
        float smooth = (orig / wavelen - low) / (high - low);
        return 1.f / ((1 - smooth) / factor + smooth);
}

/* Each row has its own random stream, derived from (seed, tensor, row), so
 * rows can be generated in any order and on any thread. Values are
 * approximately normal: the centred sum of four 16-bit uniforms, scaled
 * to unit variance. */
static int gen_row(void *ctx, int64_t row, float *out) {
        const struct gen_ctx *g = ctx;
        const struct tensor_plan *t = g->t;
        uint64_t n = t->ne[0];

        switch (t->gen) {
        case GEN_ROPE_FREQS:
                for (uint64_t i = 0; i < n; i++)
                        out[i] = llama3_rope_factor((uint32_t)i, (uint32_t)(2 * n), g->s->rope_freq_base);
                return 0;
        case GEN_LONGROPE:
                for (uint64_t i = 0; i < n; i++) {
                        float x = n > 1 ? (float)i / (float)(n - 1) : 0.f;
                        out[i] = 1.f + t->scale * x * x;
                }
                return 0;
        case GEN_NORMAL:
        case GEN_NORM:
                break;
        }
        uint64_t st = g->seed * 0x2545f4914f6cdd1dull ^ ((uint64_t)g->tensor_index << 40) ^ (uint64_t)row;
        splitmix64(&st);
        const float k = t->scale * 1.7320508f / 65536.f;   /* sqrt(3) per unit of 2^16 */
        for (uint64_t i = 0; i < n; i++) {
                uint64_t z = splitmix64(&st);
                int32_t sum = (int32_t)(z & 0xffff) + (int32_t)((z >> 16) & 0xffff) +
                              (int32_t)((z >> 32) & 0xffff) + (int32_t)(z >> 48) - 2 * 65535;
                out[i] = (float)sum * k + (t->gen == GEN_NORM ? 1.f : 0.f);
                if (g->s->bf16_values)
                        out[i] = lmp_bf16_to_f32(lmp_f32_to_bf16(out[i]));
        }
        return 0;
}

/* ------------------------------------------------------------ the model */

static int set_hparams(struct lmp_gguf_writer *w, const struct lmp_shape *s, const struct lmp_ftype *ft,
                       uint64_t seed) {
        char key[128];
        int r;
        const uint32_t hd = head_dim(s);
#define KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", s->arch, suffix), key)
        if (strcmp(s->arch, "clip") == 0) {
                /* the keys of llama.cpp's converter for a Qwen2-VL mmproj, CLIP's
                 * normalization, Qwen2-VL's default image size */
                static const float mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
                static const float std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };
                if ((r = lmp_gguf_writer_set_str(w, "general.architecture", "clip")) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.type", "mmproj")) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.name", s->model_name)) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.description", "random weights: produces noise, not meaning")) < 0 ||
                    (r = lmp_gguf_writer_set_u64(w, "general.seed", seed)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "general.file_type", ft->ftype)) < 0 ||
                    (r = lmp_gguf_writer_set_bool(w, "clip.has_vision_encoder", true)) < 0 ||
                    (r = lmp_gguf_writer_set_bool(w, "clip.has_text_encoder", false)) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "clip.projector_type", "qwen2vl_merger")) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.image_size", 560)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.patch_size", s->patch_size)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.embedding_length", s->n_embd)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.feed_forward_length", s->n_ff)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.block_count", s->n_layer)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.attention.head_count", s->n_head)) < 0 ||
                    (r = lmp_gguf_writer_set_f32(w, "clip.vision.attention.layer_norm_epsilon", s->norm_eps)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "clip.vision.projection_dim", s->proj_dim)) < 0 ||
                    (r = lmp_gguf_writer_set_arr(w, "clip.vision.image_mean", LMP_GGUF_F32, mean, 3)) < 0 ||
                    (r = lmp_gguf_writer_set_arr(w, "clip.vision.image_std", LMP_GGUF_F32, std, 3)) < 0 ||
                    (r = lmp_gguf_writer_set_bool(w, "clip.use_gelu", false)) < 0 ||
                    (r = lmp_gguf_writer_set_bool(w, "clip.use_silu", false)) < 0)
                        return r;
                return 0;
        }
        if (strcmp(s->arch, "bert") == 0) {
                /* llama.cpp's bert keys; pooling 2 is CLS (BGE's) */
                if ((r = lmp_gguf_writer_set_str(w, "general.architecture", s->arch)) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.type", "model")) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.name", s->model_name)) < 0 ||
                    (r = lmp_gguf_writer_set_str(w, "general.description", "random weights: produces noise, not meaning")) < 0 ||
                    (r = lmp_gguf_writer_set_u64(w, "general.seed", seed)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("block_count"), s->n_layer)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("context_length"), s->n_ctx)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("embedding_length"), s->n_embd)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("feed_forward_length"), s->n_ff)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("attention.head_count"), s->n_head)) < 0 ||
                    (r = lmp_gguf_writer_set_f32(w, KEY("attention.layer_norm_epsilon"), s->norm_eps)) < 0 ||
                    (r = lmp_gguf_writer_set_bool(w, KEY("attention.causal"), false)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, KEY("pooling_type"), 2)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "general.quantization_version", LMP_QUANTIZATION_VERSION)) < 0 ||
                    (r = lmp_gguf_writer_set_u32(w, "general.file_type", ft->ftype)) < 0)
                        return r;
                return 0;
        }
        if ((r = lmp_gguf_writer_set_str(w, "general.architecture", s->arch)) < 0 ||
            (r = lmp_gguf_writer_set_str(w, "general.type", "model")) < 0 ||
            (r = lmp_gguf_writer_set_str(w, "general.name", s->model_name)) < 0 ||
            (r = lmp_gguf_writer_set_str(w, "general.description", "random weights: produces noise, not text")) < 0 ||
            (r = lmp_gguf_writer_set_u64(w, "general.seed", seed)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("block_count"), s->n_layer)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("context_length"), s->n_ctx)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("embedding_length"), s->n_embd)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("feed_forward_length"), s->n_ff)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("attention.head_count"), s->n_head)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), s->n_head_kv)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("attention.key_length"), hd)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("attention.value_length"), hd)) < 0 ||
            (r = lmp_gguf_writer_set_f32(w, KEY("rope.freq_base"), s->rope_freq_base)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("rope.dimension_count"), hd)) < 0 ||
            (r = lmp_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->norm_eps)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, KEY("vocab_size"), s->n_vocab)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, "general.quantization_version", LMP_QUANTIZATION_VERSION)) < 0 ||
            (r = lmp_gguf_writer_set_u32(w, "general.file_type", ft->ftype)) < 0)
                return r;
        if (s->n_swa && (r = lmp_gguf_writer_set_u32(w, KEY("attention.sliding_window"), s->n_swa)) < 0)
                return r;
        if (s->mrope[0]) {
                const int32_t sect[4] = { (int32_t)s->mrope[0], (int32_t)s->mrope[1], (int32_t)s->mrope[2],
                                          (int32_t)s->mrope[3] };
                if ((r = lmp_gguf_writer_set_arr(w, KEY("rope.dimension_sections"), LMP_GGUF_I32, sect, 4)) < 0)
                        return r;
        }
        if (s->rope_scale != 0.f &&
            ((r = lmp_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear")) < 0 ||
             (r = lmp_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), s->rope_scale)) < 0))
                return r;
        if (s->n_ctx_orig) {
                /* LongRoPE's attention factor, as Phi-3's converter writes it:
                 * sqrt(1 + ln(scale) / ln(original context)). */
                float scale = (float)s->n_ctx / (float)s->n_ctx_orig;
                float af = sqrtf(1.f + logf(scale) / logf((float)s->n_ctx_orig));
                if ((r = lmp_gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"), s->n_ctx_orig)) < 0 ||
                    (r = lmp_gguf_writer_set_f32(w, KEY("rope.scaling.attn_factor"), af)) < 0)
                        return r;
        }
#undef KEY
        return 0;
}

/* One encoded tensor is held in memory while it is written. */
#define MAX_TENSOR_BYTES (768 << 20)

/* The tensors of a plan, generated one by one into the file. */
struct tensor_gen {
        const struct plan *p;
        const struct lmp_shape *s;
        const struct lmp_mkmodel_opts *opts;
};

static int gen_tensor(void *ctx, uint64_t i, void *buf, const void **ret_data, uint64_t *ret_size,
                      struct lmp_error *err) {
        const struct tensor_gen *tg = ctx;
        const struct tensor_plan *t = &tg->p->t[i];
        struct gen_ctx g = { t, tg->s, tg->opts->seed, (uint32_t)i };
        int r = lmp_encode_tensor(t->type, buf, (int64_t)rows_of(t), (int64_t)t->ne[0], gen_row, &g,
                                  tg->opts->nthreads);
        if (r < 0)
                return lmp_error_set(err, r, "tensor %s: cannot encode as %s", t->name, lmp_type_name(t->type));
        *ret_data = buf;
        *ret_size = rows_of(t) * lmp_type_row_size(t->type, t->ne[0]);
        return 0;
}

static void gen_written(void *ctx, uint64_t i, uint64_t size) {
        const struct tensor_gen *tg = ctx;
        if (tg->opts->progress)
                tg->opts->progress(tg->opts->progress_ctx, i + 1, (uint64_t)tg->p->n, tg->p->t[i].name,
                                   tg->p->t[i].type, size);
}

int lmp_mkmodel(const char *out_path, const struct lmp_mkmodel_opts *opts, struct lmp_mkmodel_result *ret,
                struct lmp_error *err) {
        const struct lmp_shape *s = opts->shape;
        struct plan p = { 0 };
        struct vocab v = { 0 };
        struct lmp_gguf_writer *w = NULL;
        const char **names = NULL;
        uint8_t *buf = NULL;
        int r;

        if ((!s->head_dim && s->n_embd % s->n_head) || s->n_head % s->n_head_kv)
                return lmp_error_set(err, -EINVAL, "shape %s: inconsistent heads", s->name);
        r = plan_build(&p, s);
        if (r < 0) {
                lmp_error_set(err, r, "out of memory");
                goto out;
        }
        r = lmp_gguf_writer_new(0, &w);
        if (r < 0) {
                lmp_error_set(err, r, "cannot create a writer");
                goto out;
        }
        r = set_hparams(w, s, opts->ft, opts->seed);
        if (r < 0) {
                lmp_error_set(err, r, "cannot set metadata");
                goto out;
        }
        if (is_arch(s, "clip")) {
                /* an mmproj has no vocabulary */
        } else if (opts->vocab_path) {
                r = copy_vocab(w, opts->vocab_path, s, err);
                if (r < 0)
                        goto out;
        } else if (s->chat == CHAT_NONE) {
                r = lmp_error_set(err, -EINVAL, "shape %s: its WordPiece vocabulary is not built here: give "
                                  "--vocab with a %u-token bert vocabulary (the embeddings fixtures' files)",
                                  s->name, s->n_vocab);
                goto out;
        } else {
                r = vocab_build(&v, s);
                if (r >= 0)
                        r = set_vocab(w, &v);
                vocab_free(&v);
                if (r < 0) {
                        lmp_error_set(err, r, "shape %s: cannot build the vocabulary", s->name);
                        goto out;
                }
        }

        names = calloc((size_t)p.n, sizeof(*names));
        if (!names) {
                r = lmp_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (int i = 0; i < p.n; i++)
                names[i] = p.t[i].name;
        struct lmp_mix mix;
        lmp_mix_init(&mix, opts->ft, names, p.n, (int)s->n_head, (int)s->n_head_kv);
        uint64_t max_size = 0, tensor_bytes = 0;
        for (int i = 0; i < p.n; i++) {
                struct tensor_plan *t = &p.t[i];
                t->type = lmp_mix_type(&mix, t->name, t->n_dims, t->ne[0], LMP_TYPE_F32);
                if (t->n_dims == 4)     /* convolution kernels: f16, as llama.cpp's converter keeps them */
                        t->type = LMP_TYPE_F16;
                uint64_t size = rows_of(t) * lmp_type_row_size(t->type, t->ne[0]);
                max_size = LMP_MAX(max_size, size);
                tensor_bytes += size;
                r = lmp_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL);
                if (r < 0) {
                        lmp_error_set(err, r, "tensor %s: cannot declare", t->name);
                        goto out;
                }
        }
        if (max_size > MAX_TENSOR_BYTES) {
                r = lmp_error_set(err, -EFBIG, "shape %s in %s: a %.0f MiB tensor, over the generator's %d MiB"
                                  " limit (its memory stays under 1 GiB); use a smaller type such as f16",
                                  s->name, opts->ft->name, (double)max_size / (1 << 20), MAX_TENSOR_BYTES >> 20);
                goto out;
        }
        if (ret) {
                ret->file_size = lmp_gguf_writer_file_size(w);
                ret->tensor_bytes = tensor_bytes;
        }
        if (opts->dry_run) {
                for (int i = 0; i < p.n && opts->progress; i++)
                        opts->progress(opts->progress_ctx, (uint64_t)i + 1, (uint64_t)p.n, p.t[i].name, p.t[i].type,
                                       rows_of(&p.t[i]) * lmp_type_row_size(p.t[i].type, p.t[i].ne[0]));
                r = 0;
                goto out;
        }

        buf = malloc(max_size ? max_size : 1);
        if (!buf) {
                r = lmp_error_set(err, -ENOMEM, "out of memory (%" PRIu64 " bytes for one tensor)", max_size);
                goto out;
        }
        struct tensor_gen tg = { &p, s, opts };
        struct lmp_tensor_stream ts = { .n = (uint64_t)p.n, .buf = buf, .data = gen_tensor, .written = gen_written,
                                        .ctx = &tg };
        r = lmp_write_model_file(w, out_path, &ts, err);
out:
        free(buf);
        free(names);
        free(p.t);
        lmp_gguf_writer_free(w);
        return r;
}

/* A loaded model and the contexts that evaluate it.
 *
 * struct lmp_model is the read-only part: hyperparameters from the GGUF
 * metadata and const views of every weight inside the mapped file (nothing
 * is copied), each paired with the kernels for its type. It borrows the
 * struct lmp_gguf, which must outlive it; any number of contexts, in any
 * number of processes sharing the mapping, can use one model.
 *
 * struct lmp_ctx is the mutable part: an f32 KV cache for a configured
 * number of sequences and context length, and scratch sized once for the
 * largest batch, so that evaluating a batch allocates nothing. One call,
 * lmp_ctx_decode(), evaluates a batch of (sequence, position, token)
 * entries that may mix sequences and whole prompts, and writes logits for
 * the entries that ask for them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/arch.h"
#include "quant/quant.h"

/* A weight matrix: n_out rows of n_in values, row-major in the file's own
 * type (GGML's ne[0] = n_in, ne[1] = n_out). */
struct lmp_weight {
        char name[64];                          /* the tensor's name, for messages */
        enum lmp_type type;
        const void *data;                       /* inside the mapping */
        int64_t n_in, n_out;
        size_t row_size;                        /* bytes per row */
        const struct lmp_quant_traits *traits;  /* kernels for type */
        /* Rows in the 16-row layout of a repacked store (q4_K_r16 or
         * q6_K_r16; type is then Q4_K or Q6_K, and data is the 16-row group holding row 0, which is that
         * group's row r16_row0): products go through traits->gemm_r16, and
         * no row can be read on its own. */
        bool r16;
        int r16_row0;
        /* Every value is a bf16 value, and bf16 products run here: a float
         * weight whose wide products may go through lmp_weight_rows_bf16()
         * and lose nothing of the weight. Set by the loaders that use it. */
        bool bf16;
};

/* Makes *w the view of tensor t (named name in messages) as n_out rows of
 * n_in values, after checking that its type has kernels for isa, that a
 * row is whole blocks of the activation type and that the data holds the
 * rows. The caller has checked the tensor's dimensions. */
struct lmp_gguf_tensor;
int lmp_weight_init(struct lmp_weight *w, const struct lmp_gguf_tensor *t, const char *name, uint64_t n_in,
                    uint64_t n_out, enum lmp_isa isa, struct lmp_error *err);

/* Row `row` of w as n_in floats, whatever its layout (a repacked one is
 * unpacked block by block). For embedding lookups: one row per token. */
void lmp_weight_row(const struct lmp_weight *w, int64_t row, float *out);

/* Rows [begin, end) of an encoder's product with a float weight (f32, f16,
 * bf16) through OpenBLAS's sgemm: out (n_tok, ld), columns begin to end,
 * <- y (n_tok, n_in) w^T + bias (NULL: none), added to out's values when
 * add is set, else in their place. w is n_parts weights of one type and
 * shape, stacked: rows [p n_out, (p + 1) n_out) are w[p]'s (so that the
 * products of one input, a block's queries, keys and values, are one sgemm
 * call, which packs the input once), and bias covers all n_parts n_out
 * rows. The rows are converted to f32 panel_floats at a time into panel (a
 * task's own, in cache; f32 rows of one part are used as they are), and
 * sgemm adds to an output that already holds the bias (and the residual),
 * beta 1; act, when not NULL, then runs on each token's columns of the
 * panel while they are in cache. */
void lmp_weight_rows_sgemm(const struct lmp_weight *w, int n_parts, const float *y, int64_t n_tok, float *out,
                           int64_t ld, const float *bias, bool add, float *panel, size_t panel_floats,
                           int64_t begin, int64_t end, void (*act)(const void *arg, float *x, int64_t n),
                           const void *act_arg);

/* The same product on bf16 operands (quant/bf16gemm.h): xb (n_tok rows of
 * stride xs) is y rounded to bf16 by lmp_bf16_from_f32(); each panel of the
 * rows is packed to bf16 (exactly, when w->bf16 says so) into panel, whose
 * panel_floats * 4 bytes also hold the f32 rows of the 16-row block being
 * packed. The rest as lmp_weight_rows_sgemm(). */
void lmp_weight_rows_bf16(const struct lmp_weight *w, int n_parts, const uint16_t *xb, size_t xs, int64_t n_tok,
                          float *out, int64_t ld, const float *bias, bool add, float *panel, size_t panel_floats,
                          int64_t begin, int64_t end, void (*act)(const void *arg, float *x, int64_t n),
                          const void *act_arg);

struct lmp_layer {
        const float *attn_norm;                 /* (n_embd) decoders: before attention */
        struct lmp_weight wq, wk, wv, wo;       /* (n_embd -> n_head*head_dim), ... */
        const float *bq, *bk, *bv, *bo;         /* optional biases (NULL when absent) */
        const float *ffn_norm;                  /* (n_embd) decoders: before the FFN */
        struct lmp_weight ffn_gate, ffn_up, ffn_down;   /* encoders: no gate */

        /* Encoders: LayerNorm (weight, bias) after each residual add, and
         * the feed-forward's biases. */
        const float *attn_out_norm, *attn_out_norm_b;   /* (n_embd) */
        const float *layer_out_norm, *layer_out_norm_b; /* (n_embd) */
        const float *b_up, *b_down;                     /* (n_ff), (n_embd) */

        /* Decoders beyond llama's shape (NULL when the family has none). */
        const float *attn_q_norm, *attn_k_norm;         /* (head_dim) qk_norm */
        const float *post_attn_norm, *post_ffw_norm;    /* (n_embd) post_norms */
        uint32_t n_swa;                                 /* window in positions; 0: global */
};

/* How an encoder turns a sequence's rows into its embedding
 * ({arch}.pooling_type, llama.cpp's numbering). */
enum lmp_pooling {
        LMP_POOLING_NONE = 0,   /* one vector per token */
        LMP_POOLING_MEAN = 1,
        LMP_POOLING_CLS = 2,    /* the first token's row */
        LMP_POOLING_LAST = 3,   /* the last token's row */
};

#define LMP_ROPE_SECTIONS 4
#define LMP_ROPE_AXES 3         /* positions of an M-RoPE token: time, row, column */

struct lmp_hparams {
        uint32_t n_vocab;
        uint32_t n_ctx_train;
        uint32_t n_embd;
        uint32_t n_layer;
        uint32_t n_ff;
        uint32_t n_head;
        uint32_t n_head_kv;
        uint32_t head_dim;              /* key/value length per head */
        uint32_t n_rot;                 /* rope.dimension_count (<= head_dim, even) */
        float rope_freq_base;
        float rope_freq_scale;          /* 1 / linear scaling factor */
        float norm_eps;
        enum lmp_pooling pooling;       /* encoders */

        float att_scale;                /* softmax scale of q.k: 1/sqrt(head_dim) but Gemma 3 27B */
        float rope_attn_factor;         /* cos/sin times this (LongRoPE); 1 otherwise */
        uint32_t n_ctx_orig;            /* rope.scaling.original_context_length (LongRoPE) */
        /* Windowed layers (arch swa_pattern): window and their own RoPE. */
        uint32_t n_swa;                 /* attention.sliding_window; 0: none */
        uint32_t swa_pattern;           /* every swa_pattern-th layer is global */
        float rope_freq_base_swa;
        float logit_softcap;            /* final_logit_softcapping; 0: none */
        /* M-RoPE: rotary pairs per axis (time, row, column, and a fourth
         * whose position is 0), repeating when they sum to less than
         * n_rot / 2, as GGML counts them. */
        uint32_t rope_sections[LMP_ROPE_SECTIONS];
};

struct lmp_model {
        const struct lmp_arch *arch;
        struct lmp_hparams hp;
        enum lmp_isa isa;
        bool bf16;                              /* bf16 products run here: bf16 weights are flagged */
        bool has_panels;                        /* some weight's wide products convert panels (f16, bf16) */
        const struct lmp_gguf *gguf;

        struct lmp_weight tok_embd;             /* (n_vocab rows of n_embd) */
        const float *output_norm;               /* (n_embd) */
        struct lmp_weight output;               /* tok_embd's view when tied */
        bool tied_output;
        const float *rope_freqs;                /* (n_rot/2) divisors, or NULL */
        /* LongRoPE's divisors: long when a sequence's context exceeds
         * n_ctx_orig, short otherwise (chosen per context, as llama.cpp). */
        const float *rope_factors_long, *rope_factors_short;   /* (n_rot/2) */
        struct lmp_layer *layers;               /* (n_layer) */

        /* Encoders: embeddings added to the token's, then a LayerNorm. */
        struct lmp_weight pos_embd;             /* (n_ctx_train rows of n_embd) */
        struct lmp_weight type_embd;            /* (token types rows of n_embd); row 0 is used */
        const float *embd_norm, *embd_norm_b;   /* (n_embd) */

        /* Activation types the matrix products need (bit i: type id i). */
        uint64_t act_types;
        uint32_t max_n_in;                      /* widest matrix row */
};

/* Whether the model is an encoder whose output is one vector per text
 * (pooling other than none): what an `embed` request needs. */
static inline bool lmp_model_pools(const struct lmp_model *m) {
        return m->arch->encoder && m->hp.pooling != LMP_POOLING_NONE;
}

/* Builds the model from an open GGUF file. Refuses, with a message naming
 * it, an unknown architecture, a missing key or tensor, a tensor of the wrong
 * shape, and a tensor type without kernels. isa: the kernels to use
 * (lmp_cpu_isa() for the best this CPU has). */
int lmp_model_load(const struct lmp_gguf *g, enum lmp_isa isa, struct lmp_model **ret,
                   struct lmp_error *err);
void lmp_model_free(struct lmp_model *m);

/* ------------------------------------------------------------ contexts */

struct lmp_ctx_params {
        uint32_t n_ctx;         /* positions per sequence; 0: the model's training length */
        uint32_t n_seq;         /* sequences (KV cache slots); 0: 1 */
        uint32_t n_batch;       /* most entries per decode call; 0: 512 */
        bool swa_full;          /* windowed layers keep every position, not a
                                 * ring of n_swa + n_batch (llama.cpp's
                                 * --swa-full); costs memory, lets a sequence
                                 * go on from any earlier position */
};

/* One entry of a batch. pos is where the entry goes in its sequence (its
 * KV cache row, and what the causal mask orders by); for most models it is
 * also its rotary position. Two optional inputs (NULL: none) let an entry
 * be more than a text token, e.g. an image token of a vision model:
 *   embd      n_embd values fed in place of token's embedding (token is
 *             then ignored); the caller keeps them alive during the call;
 *   rope_pos  LMP_ROPE_AXES rotary positions (time, row, column) for an
 *             M-RoPE model (arch mrope); NULL: pos on every axis. A model
 *             without M-RoPE refuses it. */
struct lmp_batch_entry {
        int32_t token;
        int32_t pos;            /* 0-based position in its sequence */
        int32_t seq;            /* sequence (KV cache slot) */
        bool logits;            /* write logits for this entry */
        const float *embd;      /* (n_embd) or NULL */
        const int32_t *rope_pos;        /* (LMP_ROPE_AXES) or NULL */
};

struct lmp_ctx;

/* The pool is borrowed (one per process, shared by its contexts; calls on
 * contexts sharing a pool must not overlap). */
int lmp_ctx_new(const struct lmp_model *m, const struct lmp_ctx_params *p,
                struct lmp_threadpool *pool, struct lmp_ctx **ret, struct lmp_error *err);
void lmp_ctx_free(struct lmp_ctx *c);

uint32_t lmp_ctx_n_ctx(const struct lmp_ctx *c);
uint32_t lmp_ctx_n_seq(const struct lmp_ctx *c);
uint32_t lmp_ctx_n_batch(const struct lmp_ctx *c);

/* Positions of seq currently held in the cache (the next position to feed). */
uint32_t lmp_ctx_seq_len(const struct lmp_ctx *c, int32_t seq);
/* Forgets positions >= pos of seq (0: the whole sequence) and returns the
 * length the sequence keeps: pos, or 0 when the ring of a windowed layer no
 * longer holds the positions that pos would look back on (the sequence
 * then starts again from 0); -EINVAL for an unknown sequence. */
int lmp_ctx_seq_truncate(struct lmp_ctx *c, int32_t seq, uint32_t pos);
/* Forgets positions [p0, p1) of seq and moves the later ones down to p0,
 * their keys rotated to their new positions (llama.cpp's KV shift), so that
 * a prompt which drops a stretch of what the cache holds (the oldest
 * messages of a conversation's window) reuses what follows it. The moved
 * positions keep what they computed while the dropped ones were before them:
 * the next tokens see a cache close to, not the same as, a fresh one.
 * Returns the length the sequence keeps; -EINVAL for an unknown sequence,
 * an encoder, or p0 > p1 or p1 past the length; -ENOTSUP when the
 * context keeps windowed layers in a ring, or the model has no rotary
 * positions or multi-axis ones (M-RoPE) (nothing changes then). */
int lmp_ctx_seq_cut(struct lmp_ctx *c, int32_t seq, uint32_t p0, uint32_t p1);
/* Whether lmp_ctx_seq_cut can move this context's sequences. */
bool lmp_ctx_can_cut(const struct lmp_ctx *c);
/* KV cache rows per sequence, over all layers (n_layer * n_ctx without
 * windowed layers). */
size_t lmp_ctx_kv_rows(const struct lmp_ctx *c);

/* Evaluates n entries (1 <= n <= n_batch) of a decoder (for an encoder:
 * -EINVAL, use lmp_ctx_encode). Within one sequence, positions
 * must be strictly increasing and follow on from what the cache holds (no
 * gaps; a position below the cached length rewrites from there). For the
 * k-th entry with .logits set, n_vocab logits are written at
 * ret_logits + k * n_vocab (ret_logits may be NULL when no entry asks).
 * Errors: -EINVAL for a bad token, sequence or order; -E2BIG for a position
 * at or past n_ctx. On error the cache is unchanged and err names the entry. */
int lmp_ctx_decode(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                   float *ret_logits, struct lmp_error *err);

/* Evaluates whole sequences with an encoder model (for a decoder: -EINVAL).
 * The n entries (1 <= n <= n_batch) hold each sequence once, as one
 * stretch of consecutive entries at positions 0, 1, ...; a sequence
 * attends to itself only, and nothing is kept between calls (no cache:
 * .seq only tells sequences apart, 0 <= seq < n_seq; .logits is ignored).
 * Writes n_embd values per sequence, in the order the sequences appear,
 * pooled as the model says, before any normalization; with
 * LMP_POOLING_NONE, n_embd values per entry. Errors as lmp_ctx_decode
 * (-E2BIG for a position at or past n_ctx). */
int lmp_ctx_encode(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                   float *ret_embd, struct lmp_error *err);

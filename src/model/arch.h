/* The architecture table: what distinguishes the model families we run.
 * One row per GGUF `general.architecture` value; everything else in the
 * forward pass is shared. Adding a family that differs only in these facts
 * is one row; a family that needs a new fact gets a new column here, not a
 * fork of the forward pass. */
#pragma once

#include <stdbool.h>

enum lmp_rope_style {
        LMP_ROPE_NONE,          /* no rotary positions (learned absolute ones) */
        LMP_ROPE_ADJACENT,      /* rotate pairs (2i, 2i+1): GGML's "normal" mode */
        LMP_ROPE_NEOX,          /* rotate pairs (i, i + n_rot/2) */
};

struct lmp_arch {
        const char *name;               /* general.architecture */
        enum lmp_rope_style rope;
        bool qkv_bias;                  /* attn_{q,k,v}.bias are required */
        /* An encoder (BERT): learned absolute positions and token types
         * added to the embeddings, LayerNorm with biases after each block
         * (post-norm), a GELU feed-forward with biases, attention over the
         * whole sequence (not causal), no KV cache; its output is one
         * pooled vector per sequence, not logits (lmp_ctx_encode). */
        bool encoder;

        /* Decoders beyond llama's shape. Each is a fact of the family's
         * definition in llama.cpp (llama-model.cpp), not of one file. */
        bool qk_norm;                   /* RMSNorm of each head's q and k before RoPE
                                         * (attn_q_norm, attn_k_norm: head_dim) */
        bool fused_qkv;                 /* attn_qkv: q rows, then k, then v */
        bool fused_gate_up;             /* ffn_up holds the gate rows, then the up rows */
        bool rope_factors_ls;           /* LongRoPE: rope_factors_long/_short, attn_factor */
        bool post_norms;                /* RMSNorm of the attention's and the FFN's
                                         * output before each residual add */
        bool ffn_gelu;                  /* GELU (tanh) gating instead of SiLU */
        bool embd_scale;                /* embeddings times sqrt(n_embd) */
        /* Multi-axis rotary positions (M-RoPE, Qwen2-VL): the pairs are
         * split into sections (rope.dimension_sections) that turn with a
         * token's time, row and column positions (struct lmp_batch_entry's
         * rope_pos); a text token has the same position on every axis. */
        bool mrope;
        /* Sliding-window attention: every swa_pattern-th layer is global,
         * the others see the last attention.sliding_window positions, with
         * RoPE base rope.freq_base_swa (default 10000) and no position
         * scaling. The pattern comes from attention.sliding_window_pattern
         * when the file has it; 0: no windowed layers. */
        unsigned swa_pattern;
};

/* NULL when the architecture is not one we implement. */
const struct lmp_arch *lmp_arch_find(const char *name);

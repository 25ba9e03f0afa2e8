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
};

/* NULL when the architecture is not one we implement. */
const struct lmp_arch *lmp_arch_find(const char *name);

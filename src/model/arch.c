/* Rows of the architecture table. llama covers Llama 2/3.x, Mistral,
 * TinyLlama and SmolLM (optional biases and rope_freqs.weight are picked up
 * when a file has them); qwen2 covers Qwen2 and Qwen2.5; qwen2vl is
 * Qwen2-VL's language model (Qwen2 with M-RoPE); qwen3 covers the dense
 * Qwen3 models; phi3 covers Phi-3 and Phi-3.5 mini; gemma3 covers the text
 * part of Gemma 3; bert covers the BERT-family embedding models (BGE,
 * MiniLM, e5, ...). */
#include "model/arch.h"

#include <string.h>

#include "common/macros.h"

static const struct lmp_arch archs[] = {
        { .name = "llama", .rope = LMP_ROPE_ADJACENT, .qkv_bias = false },
        { .name = "qwen2", .rope = LMP_ROPE_NEOX, .qkv_bias = true },
        { .name = "qwen2vl", .rope = LMP_ROPE_NEOX, .qkv_bias = true, .mrope = true },
        { .name = "qwen3", .rope = LMP_ROPE_NEOX, .qk_norm = true },
        { .name = "phi3", .rope = LMP_ROPE_NEOX, .fused_qkv = true, .fused_gate_up = true,
          .rope_factors_ls = true },
        { .name = "gemma3", .rope = LMP_ROPE_NEOX, .qk_norm = true, .post_norms = true,
          .ffn_gelu = true, .embd_scale = true, .swa_pattern = 6 },
        { .name = "bert", .rope = LMP_ROPE_NONE, .qkv_bias = true, .encoder = true },
};

const struct lmp_arch *lmp_arch_find(const char *name) {
        for (size_t i = 0; i < LMP_ARRAY_SIZE(archs); i++)
                if (strcmp(archs[i].name, name) == 0)
                        return &archs[i];
        return NULL;
}

/* File types and the tensor type mix. A file type ("q4_k_m") names a
 * default tensor type and llama.cpp's llama_tensor_get_type rules for the
 * tensors that deserve more bits: the output matrix (and the token
 * embedding when the output is tied to it) gets q6_K, attn_v and ffn_down
 * get more bits in some layers, and a tensor whose row length does not
 * divide into the type's blocks falls back to a type whose blocks fit. We
 * follow these rules because users compare our files' sizes and quality
 * with the ones they download. Only the file types listed in the table are
 * known; the rules for MoE, Falcon and importance-matrix types are left out. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct lmp_ftype {
        const char *name;       /* as the CLI spells it: "q4_k_m" */
        uint32_t ftype;         /* llama.cpp's general.file_type value */
        uint32_t type;          /* enum lmp_type: the default tensor type */
};

/* NULL when the name (case-insensitive) is not a known file type. */
const struct lmp_ftype *lmp_ftype_find(const char *name);
/* The table, for usage messages: *ret_n entries. */
const struct lmp_ftype *lmp_ftype_list(int *ret_n);

/* What the rules need to know about the whole model. */
struct lmp_mix {
        const struct lmp_ftype *ft;
        int n_head;             /* 0 when unknown (n_gqa taken as 1) */
        int n_head_kv;
        bool tied_output;       /* no output.weight: token_embd is the output */
        int n_attention_wv;     /* tensors in the attn_v category */
        int n_ffn_down;
        int i_attention_wv;     /* counters, advanced by lmp_mix_type() */
        int i_ffn_down;
};

/* Sets up *mix for ft from the model's tensor names (in file order) and
 * head counts. */
void lmp_mix_init(struct lmp_mix *mix, const struct lmp_ftype *ft, const char *const *names,
                  int n_tensors, int n_head, int n_head_kv);

/* True when the tensor is a weight matrix that the file type converts;
 * false for norms, biases and other 1-D tensors, which keep their type. */
bool lmp_mix_converts(const char *name, uint32_t n_dims);

/* The type a tensor gets. Call it once per tensor, in file order (the
 * layer counters advance as in llama.cpp). src_type is returned for
 * tensors that are not converted. */
uint32_t lmp_mix_type(struct lmp_mix *mix, const char *name, uint32_t n_dims, uint64_t ne0,
                      uint32_t src_type);

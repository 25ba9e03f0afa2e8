/* The file type table and the per-tensor type rules (see mix.h). The rules
 * are written as a sequence of cases in the same order as llama.cpp's
 * llama_tensor_get_type_impl and tensor_type_fallback, restricted to the
 * file types of the table. */
#include "tools/mix.h"

#include <string.h>
#include <strings.h>

#include "common/macros.h"
#include "gguf/types.h"

static const struct lmp_ftype ftypes[] = {
        { "f32",    0,  LMP_TYPE_F32 },
        { "f16",    1,  LMP_TYPE_F16 },
        { "bf16",   32, LMP_TYPE_BF16 },
        { "q8_0",   7,  LMP_TYPE_Q8_0 },
        { "q4_0",   2,  LMP_TYPE_Q4_0 },
        { "q4_1",   3,  LMP_TYPE_Q4_1 },
        { "q5_0",   8,  LMP_TYPE_Q5_0 },
        { "q5_1",   9,  LMP_TYPE_Q5_1 },
        { "q2_k",   10, LMP_TYPE_Q2_K },
        { "q3_k_m", 12, LMP_TYPE_Q3_K },
        { "q4_k_m", 15, LMP_TYPE_Q4_K },
        { "q5_k_m", 17, LMP_TYPE_Q5_K },
        { "q6_k",   18, LMP_TYPE_Q6_K },
};

enum { FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q4_K_M = 15, FT_Q5_K_M = 17 };

const struct lmp_ftype *lmp_ftype_find(const char *name) {
        for (size_t i = 0; i < LMP_ARRAY_SIZE(ftypes); i++)
                if (strcasecmp(ftypes[i].name, name) == 0)
                        return &ftypes[i];
        return NULL;
}

const struct lmp_ftype *lmp_ftype_list(int *ret_n) {
        *ret_n = (int)LMP_ARRAY_SIZE(ftypes);
        return ftypes;
}

enum category {
        CAT_OTHER,
        CAT_TOKEN_EMBD,
        CAT_OUTPUT,
        CAT_ATTN_V,     /* attn_v, attn_qkv, attn_kv_b */
        CAT_ATTN_OUTPUT,
        CAT_FFN_DOWN,
};

static bool contains(const char *s, const char *sub) {
        return strstr(s, sub) != NULL;
}

static enum category category_of(const char *name) {
        if (strcmp(name, "output.weight") == 0)
                return CAT_OUTPUT;
        if (strcmp(name, "token_embd.weight") == 0)
                return CAT_TOKEN_EMBD;
        if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") ||
            contains(name, "attn_v.weight"))
                return CAT_ATTN_V;
        if (contains(name, "attn_k.weight") || contains(name, "attn_q.weight"))
                return CAT_OTHER;
        if (contains(name, "attn_output.weight"))
                return CAT_ATTN_OUTPUT;
        if (contains(name, "ffn_up") || contains(name, "ffn_gate"))
                return CAT_OTHER;
        if (contains(name, "ffn_down"))
                return CAT_FFN_DOWN;
        return CAT_OTHER;
}

bool lmp_mix_converts(const char *name, uint32_t n_dims) {
        size_t len = strlen(name);
        if (n_dims < 2)
                return false;
        if (len < 6 || strcmp(name + len - 6, "weight") != 0)
                return false;
        return !contains(name, "_norm.weight") && !contains(name, "ffn_gate_inp.weight") &&
               strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
}

void lmp_mix_init(struct lmp_mix *mix, const struct lmp_ftype *ft, const char *const *names,
                  int n_tensors, int n_head, int n_head_kv) {
        memset(mix, 0, sizeof(*mix));
        mix->ft = ft;
        mix->n_head = n_head;
        mix->n_head_kv = n_head_kv;
        mix->tied_output = true;
        for (int i = 0; i < n_tensors; i++) {
                enum category c = category_of(names[i]);
                if (c == CAT_OUTPUT)
                        mix->tied_output = false;
                else if (c == CAT_ATTN_V)
                        mix->n_attention_wv++;
                else if (c == CAT_FFN_DOWN)
                        mix->n_ffn_down++;
        }
}

/* The layers that get more bits in the *_K_M mixes: the first and last
 * eighth, and every third layer in between. */
static bool use_more_bits(int i_layer, int n_layers) {
        return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

static bool is_quantized(uint32_t t) {
        return t != LMP_TYPE_F32 && t != LMP_TYPE_F16 && t != LMP_TYPE_BF16;
}

/* A row length that does not divide into the type's blocks. */
static uint32_t fallback(uint32_t t, uint64_t ne0) {
        const struct lmp_type_info *ti = lmp_type_info(t);
        if (ne0 % ti->blck_size == 0)
                return t;
        switch (t) {
        case LMP_TYPE_Q2_K:
        case LMP_TYPE_Q3_K: t = LMP_TYPE_Q4_0; break;
        case LMP_TYPE_Q4_K: t = LMP_TYPE_Q5_0; break;
        case LMP_TYPE_Q5_K: t = LMP_TYPE_Q5_1; break;
        case LMP_TYPE_Q6_K: t = LMP_TYPE_Q8_0; break;
        default: break;
        }
        if (ne0 % lmp_type_info(t)->blck_size != 0)
                t = LMP_TYPE_F16;
        return t;
}

uint32_t lmp_mix_type(struct lmp_mix *mix, const char *name, uint32_t n_dims, uint64_t ne0,
                      uint32_t src_type) {
        if (!lmp_mix_converts(name, n_dims))
                return src_type;
        uint32_t t = mix->ft->type;
        if (!is_quantized(t))
                return t;

        const uint32_t ft = mix->ft->ftype;
        const int n_gqa = mix->n_head_kv > 0 ? mix->n_head / mix->n_head_kv : 1;
        enum category c = category_of(name);

        if (c == CAT_OUTPUT || (mix->tied_output && c == CAT_TOKEN_EMBD)) {
                if (ne0 % lmp_type_info(t)->blck_size != 0)
                        t = LMP_TYPE_Q8_0;
                else if (t != LMP_TYPE_Q8_0)
                        t = LMP_TYPE_Q6_K;
        } else if (c == CAT_TOKEN_EMBD) {
                /* the default type */
        } else if (c == CAT_ATTN_V) {
                if (ft == FT_Q2_K)
                        t = n_gqa >= 4 ? LMP_TYPE_Q4_K : LMP_TYPE_Q3_K;
                else if (ft == FT_Q3_K_M)
                        t = mix->i_attention_wv < 2 ? LMP_TYPE_Q5_K : LMP_TYPE_Q4_K;
                else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) &&
                         use_more_bits(mix->i_attention_wv, mix->n_attention_wv))
                        t = LMP_TYPE_Q6_K;
                mix->i_attention_wv++;
        } else if (c == CAT_FFN_DOWN) {
                int i = mix->i_ffn_down, n = mix->n_ffn_down;
                if (ft == FT_Q2_K)
                        t = LMP_TYPE_Q3_K;
                else if (ft == FT_Q3_K_M)
                        t = i < n / 16 ? LMP_TYPE_Q5_K : LMP_TYPE_Q4_K;
                else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(i, n))
                        t = LMP_TYPE_Q6_K;
                mix->i_ffn_down++;
        } else if (c == CAT_ATTN_OUTPUT) {
                if (ft == FT_Q2_K)
                        t = LMP_TYPE_Q3_K;
                else if (ft == FT_Q3_K_M)
                        t = LMP_TYPE_Q4_K;
        }
        return fallback(t, ne0);
}

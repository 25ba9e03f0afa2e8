/* Loading a model: hyperparameters from the GGUF metadata, then a const
 * view of every tensor the forward pass needs, each checked against those
 * hyperparameters (shape and type) so that the forward pass can trust them.
 * Key names follow GGUF's convention `{arch}.<name>`; tensor names follow
 * GGML's (`blk.N.attn_q.weight`, ...). Nothing here copies tensor data. */
#include "model/model.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bf16gemm.h"
#include "quant/blocks.h"
#include "quant/repack.h"

#define NAME_MAX_LEN 96

/* What reading key gave (r): 0 when it was there, or is missing and
 * optional; else the error, saying the key and what it should be. */
static int key_read(int r, const char *key, bool required, const char *want, struct lmp_error *err) {
        if (r == -ENOENT && !required)
                return 0;
        if (r < 0)
                return lmp_error_set(err, r, "metadata %s: %s", key, r == -ENOENT ? "missing" : want);
        return 0;
}

static int get_u32_key(const struct lmp_gguf *g, const char *arch, const char *suffix,
                       bool required, uint32_t *ret, struct lmp_error *err) {
        char key[NAME_MAX_LEN];
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        return key_read(lmp_gguf_get_u32(g, key, ret), key, required, "not a 32-bit unsigned integer", err);
}

static int get_f32_key(const struct lmp_gguf *g, const char *arch, const char *suffix,
                       bool required, float *ret, struct lmp_error *err) {
        char key[NAME_MAX_LEN];
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        return key_read(lmp_gguf_get_f32(g, key, ret), key, required, "not a float", err);
}

/* An encoder's: LayerNorm epsilon, pooling, and attention that must not be
 * causal. No rotary positions. */
static int load_encoder_hparams(const struct lmp_gguf *g, const char *arch, struct lmp_hparams *hp,
                                struct lmp_error *err) {
        int r;
        if ((r = get_f32_key(g, arch, "attention.layer_norm_epsilon", true, &hp->norm_eps, err)) < 0)
                return r;
        uint32_t pooling = LMP_POOLING_NONE;
        if ((r = get_u32_key(g, arch, "pooling_type", false, &pooling, err)) < 0)
                return r;
        if (pooling > LMP_POOLING_LAST)
                return lmp_error_set(err, -ENOTSUP, "metadata %s.pooling_type: %u not supported "
                                     "(0 none, 1 mean, 2 cls, 3 last)", arch, pooling);
        hp->pooling = (enum lmp_pooling)pooling;
        char key[NAME_MAX_LEN];
        bool causal = false;
        snprintf(key, sizeof(key), "%s.attention.causal", arch);
        r = lmp_gguf_get_bool(g, key, &causal);
        if (r < 0 && r != -ENOENT)
                return lmp_error_set(err, r, "metadata %s: not a boolean", key);
        if (causal)
                return lmp_error_set(err, -ENOTSUP, "metadata %s: causal attention in an encoder", key);
        hp->n_rot = 0;
        return 0;
}

/* What the newer decoder families add: LongRoPE's attention factor and
 * original context, the sliding window and its pattern and RoPE base, the
 * final logit softcap, and the attention scale. */
static int load_decoder_extras(const struct lmp_gguf *g, const struct lmp_arch *a,
                               struct lmp_hparams *hp, struct lmp_error *err) {
        const char *arch = a->name;
        int r;
        hp->att_scale = 1.0f / sqrtf((float)hp->head_dim);
        /* Gemma 3 27B (62 layers) scales by its query_pre_attn_scalar,
         * n_embd / n_head, not by its head size: llama.cpp tells it by its
         * layer count, and so do we. */
        if (a->embd_scale && hp->n_layer == 62)
                hp->att_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));

        hp->rope_attn_factor = 1.0f;
        hp->n_ctx_orig = hp->n_ctx_train;
        if (a->rope_factors_ls) {
                if ((r = get_f32_key(g, arch, "rope.scaling.attn_factor", false,
                                     &hp->rope_attn_factor, err)) < 0 ||
                    (r = get_u32_key(g, arch, "rope.scaling.original_context_length", false,
                                     &hp->n_ctx_orig, err)) < 0)
                        return r;
                if (!(hp->rope_attn_factor > 0.0f && hp->rope_attn_factor < 16.0f))
                        return lmp_error_set(err, -EINVAL,
                                             "metadata %s.rope.scaling.attn_factor: out of range", arch);
        }

        hp->n_swa = 0;
        hp->swa_pattern = a->swa_pattern;
        hp->rope_freq_base_swa = 10000.0f;
        if (a->swa_pattern) {
                if ((r = get_u32_key(g, arch, "attention.sliding_window", true, &hp->n_swa, err)) < 0 ||
                    (r = get_u32_key(g, arch, "attention.sliding_window_pattern", false,
                                     &hp->swa_pattern, err)) < 0 ||
                    (r = get_f32_key(g, arch, "rope.freq_base_swa", false, &hp->rope_freq_base_swa,
                                     err)) < 0)
                        return r;
                if (hp->n_swa == 0 || hp->swa_pattern == 0 || !(hp->rope_freq_base_swa > 0.0f))
                        return lmp_error_set(err, -EINVAL,
                                             "metadata %s: sliding window %u, pattern %u, base %g",
                                             arch, hp->n_swa, hp->swa_pattern,
                                             (double)hp->rope_freq_base_swa);
        }

        hp->logit_softcap = 0.0f;
        if ((r = get_f32_key(g, arch, "final_logit_softcapping", false, &hp->logit_softcap, err)) < 0)
                return r;
        if (hp->logit_softcap < 0.0f)
                return lmp_error_set(err, -EINVAL, "metadata %s.final_logit_softcapping: negative",
                                     arch);
        return 0;
}

/* M-RoPE's sections ({arch}.rope.dimension_sections: 4 pair counts, at
 * least one not zero, summing to at most n_rot / 2). */
static int load_rope_sections(const struct lmp_gguf *g, const char *arch, struct lmp_hparams *hp,
                              struct lmp_error *err) {
        char key[NAME_MAX_LEN];
        snprintf(key, sizeof(key), "%s.rope.dimension_sections", arch);
        struct lmp_gguf_value arr;
        int32_t s[LMP_ROPE_SECTIONS];
        int r = lmp_gguf_get_arr(g, key, -1, &arr);
        if (r < 0)
                return lmp_error_set(err, r, "metadata %s: %s", key, r == -ENOENT ? "missing" : "not an array");
        if (arr.n != LMP_ROPE_SECTIONS || lmp_gguf_arr_i32(&arr, s) < 0)
                return lmp_error_set(err, -EINVAL, "metadata %s: not %d integers", key, LMP_ROPE_SECTIONS);
        int64_t sum = 0;
        for (int i = 0; i < LMP_ROPE_SECTIONS; i++) {
                if (s[i] < 0)
                        return lmp_error_set(err, -EINVAL, "metadata %s: negative section", key);
                hp->rope_sections[i] = (uint32_t)s[i];
                sum += s[i];
        }
        if (sum == 0 || sum > hp->n_rot / 2)
                return lmp_error_set(err, -EINVAL, "metadata %s: sections sum to %lld, not 1 to %u", key,
                                     (long long)sum, hp->n_rot / 2);
        return 0;
}

static int load_hparams(const struct lmp_gguf *g, const struct lmp_arch *a, struct lmp_hparams *hp,
                        struct lmp_error *err) {
        const char *arch = a->name;
        int r;
        if ((r = get_u32_key(g, arch, "context_length", true, &hp->n_ctx_train, err)) < 0 ||
            (r = get_u32_key(g, arch, "embedding_length", true, &hp->n_embd, err)) < 0 ||
            (r = get_u32_key(g, arch, "block_count", true, &hp->n_layer, err)) < 0 ||
            (r = get_u32_key(g, arch, "feed_forward_length", true, &hp->n_ff, err)) < 0 ||
            (r = get_u32_key(g, arch, "attention.head_count", true, &hp->n_head, err)) < 0)
                return r;
        hp->n_head_kv = hp->n_head;
        if ((r = get_u32_key(g, arch, "attention.head_count_kv", false, &hp->n_head_kv, err)) < 0)
                return r;

        if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_ff == 0 || hp->n_head == 0 ||
            hp->n_head_kv == 0 || hp->n_ctx_train == 0)
                return lmp_error_set(err, -EINVAL, "metadata %s: a zero dimension", arch);
        if (hp->n_head % hp->n_head_kv != 0)
                return lmp_error_set(err, -EINVAL,
                                     "metadata %s: head_count %u not a multiple of head_count_kv %u",
                                     arch, hp->n_head, hp->n_head_kv);
        if (hp->n_layer > 4096 || hp->n_embd > (1u << 20) || hp->n_ff > (1u << 22) ||
            hp->n_head > 4096)
                return lmp_error_set(err, -EINVAL, "metadata %s: implausible dimensions", arch);

        hp->head_dim = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
        if ((r = get_u32_key(g, arch, "attention.key_length", false, &hp->head_dim, err)) < 0)
                return r;
        uint32_t v_len = hp->head_dim;
        if ((r = get_u32_key(g, arch, "attention.value_length", false, &v_len, err)) < 0)
                return r;
        if (hp->head_dim == 0 || hp->head_dim > 4096 || v_len != hp->head_dim)
                return lmp_error_set(err, -EINVAL,
                                     "metadata %s: unsupported head size (key %u, value %u)",
                                     arch, hp->head_dim, v_len);
        if (a->encoder)
                return load_encoder_hparams(g, arch, hp, err);
        if ((r = get_f32_key(g, arch, "attention.layer_norm_rms_epsilon", true, &hp->norm_eps,
                             err)) < 0)
                return r;

        hp->n_rot = hp->head_dim;
        if ((r = get_u32_key(g, arch, "rope.dimension_count", false, &hp->n_rot, err)) < 0)
                return r;
        if (hp->n_rot == 0 || hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim)
                return lmp_error_set(err, -EINVAL,
                                     "metadata %s.rope.dimension_count: %u (head size %u)", arch,
                                     hp->n_rot, hp->head_dim);

        if (a->mrope && (r = load_rope_sections(g, arch, hp, err)) < 0)
                return r;

        hp->rope_freq_base = 10000.0f;
        if ((r = get_f32_key(g, arch, "rope.freq_base", false, &hp->rope_freq_base, err)) < 0)
                return r;
        if (!(hp->rope_freq_base > 0.0f))
                return lmp_error_set(err, -EINVAL, "metadata %s.rope.freq_base: not positive",
                                     arch);

        /* Linear position scaling (older fine-tunes); YaRN and friends are
         * refused rather than run wrongly. */
        hp->rope_freq_scale = 1.0f;
        char key[NAME_MAX_LEN];
        struct lmp_gguf_str scaling;
        snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
        float factor = 0.0f;
        if (lmp_gguf_get_str(g, key, &scaling) == 0 && !lmp_gguf_str_eq(scaling, "none")) {
                if (!lmp_gguf_str_eq(scaling, "linear"))
                        return lmp_error_set(err, -ENOTSUP, "metadata %s: scaling '%.*s' not supported",
                                             key, (int)LMP_MIN(scaling.len, 32u), scaling.ptr);
                if ((r = get_f32_key(g, arch, "rope.scaling.factor", true, &factor, err)) < 0)
                        return r;
        } else if ((r = get_f32_key(g, arch, "rope.scale_linear", false, &factor, err)) < 0) {
                return r;
        }
        if (factor != 0.0f && factor != 1.0f) {
                if (!(factor > 0.0f))
                        return lmp_error_set(err, -EINVAL, "metadata %s: bad rope scaling factor",
                                             arch);
                hp->rope_freq_scale = 1.0f / factor;
        }
        return load_decoder_extras(g, a, hp, err);
}

static const struct lmp_gguf_tensor *find_tensor(const struct lmp_gguf *g, const char *name,
                                                 bool required, struct lmp_error *err, int *ret_r) {
        const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, name);
        *ret_r = 0;
        if (!t && required)
                *ret_r = lmp_error_set(err, -ENOENT, "tensor %s: missing", name);
        return t;
}

static int check_dims(const struct lmp_gguf_tensor *t, const char *name, uint64_t ne0,
                      uint64_t ne1, struct lmp_error *err) {
        bool ok = t->ne[0] == ne0 && t->ne[1] == ne1;
        for (uint32_t d = 2; d < LMP_GGUF_MAX_DIMS; d++)
                ok = ok && t->ne[d] == 1;
        if (!ok)
                return lmp_error_set(err, -EINVAL,
                                     "tensor %s: shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                                     name, (unsigned long long)t->ne[0],
                                     (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                                     (unsigned long long)t->ne[3], (unsigned long long)ne0,
                                     (unsigned long long)ne1);
        return 0;
}

/* A 1-D f32 tensor of n values (norm weights, biases, rope factors). */
static int load_vec(const struct lmp_gguf *g, const char *name, uint64_t n, bool required,
                    const float **ret, struct lmp_error *err) {
        int r;
        const struct lmp_gguf_tensor *t = find_tensor(g, name, required, err, &r);
        if (!t)
                return r;
        if (t->type != LMP_TYPE_F32) {
                const char *tn = lmp_type_name(t->type);
                return lmp_error_set(err, -ENOTSUP, "tensor %s: type %s, expected f32", name,
                                     tn ? tn : "unknown");
        }
        if ((r = check_dims(t, name, n, 1, err)) < 0)
                return r;
        if ((uintptr_t)t->data % sizeof(float) != 0)
                return lmp_error_set(err, -EINVAL, "tensor %s: data not aligned", name);
        *ret = t->data;
        return 0;
}

int lmp_weight_init(struct lmp_weight *w, const struct lmp_gguf_tensor *t, const char *name, uint64_t n_in,
                    uint64_t n_out, enum lmp_isa isa, struct lmp_error *err) {
        const char *tn = lmp_type_name(t->type);
        /* A repacked store's q4_K, q6_K, q4_0 or q5_0 (gguf/types.h): that
         * type's kernels, its gemm_r16. */
        const bool r16 = lmp_type_r16_base(t->type) != 0;
        const uint32_t type = r16 ? lmp_type_r16_base(t->type) : t->type;
        const struct lmp_quant_traits *tr =
                type < LMP_TYPE_COUNT ? lmp_quant_traits((enum lmp_type)type, isa) : NULL;
        if (!tr || !tr->vec_dot || !tr->to_float)
                return lmp_error_set(err, -ENOTSUP, "tensor %s: type %s not supported", name,
                                     tn ? tn : "unknown");
        const struct lmp_quant_traits *at = lmp_quant_traits(tr->vec_dot_type, isa);
        const struct lmp_type_info *ai = lmp_type_info(tr->vec_dot_type);
        if (!at || !ai || (tr->vec_dot_type != LMP_TYPE_F32 && !at->from_float))
                return lmp_error_set(err, -ENOTSUP, "tensor %s: type %s has no activation kernels",
                                     name, tn ? tn : "unknown");
        if (n_in % ai->blck_size != 0)
                return lmp_error_set(err, -EINVAL,
                                     "tensor %s: row length %llu not a multiple of %s blocks (%u)",
                                     name, (unsigned long long)n_in, ai->name, ai->blck_size);
        if (r16 && (!tr->gemm_r16 || n_out % LMP_R16_ROWS || t->ne[0] != n_in))
                return lmp_error_set(err, -EINVAL, "tensor %s: a %s matrix needs rows in groups of %d, whole", name,
                                     tn, LMP_R16_ROWS);
        uint64_t rs = lmp_type_row_size(type, n_in);
        if (rs == 0 || t->size < rs * n_out)
                return lmp_error_set(err, -EINVAL, "tensor %s: size %llu does not hold %llu rows",
                                     name, (unsigned long long)t->size,
                                     (unsigned long long)n_out);
        if (t->type == LMP_TYPE_F32 && (uintptr_t)t->data % sizeof(float) != 0)
                return lmp_error_set(err, -EINVAL, "tensor %s: data not aligned", name);
        snprintf(w->name, sizeof(w->name), "%s", name);
        w->type = (enum lmp_type)type;
        w->r16 = r16;
        w->r16_row0 = 0;
        w->data = t->data;
        w->n_in = (int64_t)n_in;
        w->n_out = (int64_t)n_out;
        w->row_size = rs;
        w->traits = tr;
        return 0;
}

void lmp_weight_row(const struct lmp_weight *w, int64_t row, float *out) {
        if (!w->r16) {
                w->traits->to_float((const uint8_t *)w->data + (size_t)row * w->row_size, out, w->n_in);
                return;
        }
        const int64_t abs = w->r16_row0 + row;
        const uint8_t *group = (const uint8_t *)w->data + (size_t)(abs / LMP_R16_ROWS * LMP_R16_ROWS) * w->row_size;
        union {
                struct lmp_block_q4_K q4;
                struct lmp_block_q6_K q6;
                struct lmp_block_q4_0 q40;
                struct lmp_block_q5_0 q50;
        } b;
        const int64_t qk = lmp_type_info(w->type)->blck_size;
        for (int64_t i = 0; i < w->n_in / qk; i++) {
                lmp_unpack_r16_block(w->type, group, (int)(abs % LMP_R16_ROWS), i, &b);
                w->traits->to_float(&b, out + i * qk, qk);
        }
}

/* out's rows [r0, r0 + nr) of every token <- bias (added when add) or 0,
 * or left alone (add without a bias), before a product adds to them. */
static void prefill_out(float *out, int64_t ld, int64_t n_tok, const float *bias, bool add, int64_t r0,
                        int64_t nr) {
        for (int64_t t = 0; t < n_tok; t++) {
                float *o = out + t * ld + r0;
                if (add && bias)
                        for (int64_t r = 0; r < nr; r++)
                                o[r] += bias[r0 + r];
                else if (!add && bias)
                        memcpy(o, bias + r0, (size_t)nr * sizeof(float));
                else if (!add)
                        memset(o, 0, (size_t)nr * sizeof(float));
        }
}

/* Row r of n_parts stacked weights, as f32. */
static void stacked_row(const struct lmp_weight *w, int64_t r, float *dst) {
        const int64_t p = r / w->n_out;
        w[p].traits->to_float((const uint8_t *)w[p].data + (size_t)(r - p * w->n_out) * w[p].row_size, dst,
                              w->n_in);
}

void lmp_weight_rows_sgemm(const struct lmp_weight *w, int n_parts, const float *y, int64_t n_tok, float *out,
                           int64_t ld, const float *bias, bool add, float *panel, size_t panel_floats,
                           int64_t begin, int64_t end, void (*act)(const void *arg, float *x, int64_t n),
                           const void *act_arg) {
        const int64_t n_in = w->n_in, part_rows = w->n_out;
        const int64_t rows = LMP_MAX((int64_t)1, (int64_t)panel_floats / n_in);
        end = LMP_MIN(end, n_parts * part_rows);
        for (int64_t r0 = begin; r0 < end; r0 += rows) {
                int64_t nr = LMP_MIN(rows, end - r0);
                prefill_out(out, ld, n_tok, bias, add, r0, nr);
                /* f32 rows of one part are used in place; anything else is
                 * converted (or gathered from its parts) into the panel */
                const int64_t p0 = r0 / part_rows;
                const float *wf = (const float *)w[p0].data + (r0 - p0 * part_rows) * n_in;
                if (w->type != LMP_TYPE_F32 || (r0 + nr - 1) / part_rows != p0) {
                        for (int64_t r = 0; r < nr; r++)
                                stacked_row(w, r0 + r, panel + r * n_in);
                        wf = panel;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok, (int)nr, (int)n_in, 1.0f, y,
                            (int)n_in, wf, (int)n_in, 1.0f, out + r0, (int)ld);
                if (act)
                        for (int64_t t = 0; t < n_tok; t++)
                                act(act_arg, out + t * ld + r0, nr);
        }
}

void lmp_weight_rows_bf16(const struct lmp_weight *w, int n_parts, const uint16_t *xb, size_t xs, int64_t n_tok,
                          float *out, int64_t ld, const float *bias, bool add, float *panel, size_t panel_floats,
                          int64_t begin, int64_t end, void (*act)(const void *arg, float *x, int64_t n),
                          const void *act_arg) {
        const int64_t n_in = w->n_in, kp = lmp_bf16_kp(n_in);
        /* the panel: packed rows, then one 16-row block of f32 rows */
        const int64_t room = (int64_t)panel_floats * 4 - 16 * n_in * 4;
        /* at most 256 KiB of packed rows, which stay in L2 from their
         * packing to the kernel's pass over them */
        const int64_t fit = LMP_MAX((int64_t)16, room / (kp * 2) / 16 * 16);
        const int64_t rows = LMP_MIN(fit, LMP_MAX((int64_t)16, ((int64_t)256 << 10) / (kp * 2) / 16 * 16));
        uint16_t *packed = (uint16_t *)panel;
        float *f32 = panel + (size_t)rows * (size_t)kp / 2;
        end = LMP_MIN(end, n_parts * w->n_out);
        for (int64_t r0 = begin; r0 < end; r0 += rows) {
                const int64_t nr = LMP_MIN(rows, end - r0);
                prefill_out(out, ld, n_tok, bias, add, r0, nr);
                for (int64_t b = 0; b < nr; b += 16) {
                        const int64_t nb = LMP_MIN((int64_t)16, nr - b), first = r0 + b;
                        const int64_t p = first / w->n_out;
                        uint16_t *dst = packed + (size_t)b * (size_t)kp;
                        if ((first + nb - 1) / w->n_out == p && !w[p].r16 &&
                            (w[p].type == LMP_TYPE_F32 || w[p].type == LMP_TYPE_F16 || w[p].type == LMP_TYPE_BF16)) {
                                /* from the rows as they are */
                                lmp_bf16_pack(LMP_ISA_AVX512, w[p].type,
                                              (const uint8_t *)w[p].data + (size_t)(first - p * w->n_out) * w[p].row_size,
                                              nb, n_in, w[p].row_size, dst);
                                continue;
                        }
                        for (int64_t r = 0; r < nb; r++)
                                stacked_row(w, first + r, f32 + r * n_in);
                        lmp_bf16_pack(LMP_ISA_AVX512, LMP_TYPE_F32, f32, nb, n_in, (size_t)n_in * sizeof(float), dst);
                }
                /* w->bf16: the AVX512-BF16 kernel runs here */
                lmp_gemm_bf16(LMP_ISA_AVX512, n_in, nr, n_tok, packed, xb, xs, out + r0, (size_t)ld);
                if (act)
                        for (int64_t t = 0; t < n_tok; t++)
                                act(act_arg, out + t * ld + r0, nr);
        }
}

static int load_weight(struct lmp_model *m, const char *name, uint64_t n_in,
                       uint64_t n_out, bool required, struct lmp_weight *w,
                       struct lmp_error *err) {
        int r;
        const struct lmp_gguf_tensor *t = find_tensor(m->gguf, name, required, err, &r);
        if (!t)
                return r;
        if ((r = check_dims(t, name, n_in, n_out, err)) < 0)
                return r;
        if ((r = lmp_weight_init(w, t, name, n_in, n_out, m->isa, err)) < 0)
                return r;
        /* a bf16 matrix's products of many tokens run on bf16 operands, its
         * activations rounded to bf16 as its vec_dot's are */
        w->bf16 = m->bf16 && w->type == LMP_TYPE_BF16 && n_in % 2 == 0;
        m->has_panels |= w->type == LMP_TYPE_F16 || w->type == LMP_TYPE_BF16;
        return 1;
}

/* Rows [r0, r0 + n) of a fused matrix, as a weight of its own: each row is
 * whole (whole blocks), so the view is the same data at an offset. */
static struct lmp_weight weight_rows(const struct lmp_weight *w, int64_t r0, int64_t n,
                                     const char *part) {
        struct lmp_weight v = *w;
        snprintf(v.name, sizeof(v.name), "%.48s[%s]", w->name, part);
        if (w->r16) {
                /* the group that holds row r0, and r0's place in it */
                const int64_t abs = w->r16_row0 + r0;
                v.data = (const uint8_t *)w->data + (size_t)(abs / LMP_R16_ROWS * LMP_R16_ROWS) * w->row_size;
                v.r16_row0 = (int)(abs % LMP_R16_ROWS);
        } else {
                v.data = (const uint8_t *)w->data + (size_t)r0 * w->row_size;
        }
        v.n_out = n;
        return v;
}

static void note_weight(struct lmp_model *m, const struct lmp_weight *w) {
        m->act_types |= UINT64_C(1) << w->traits->vec_dot_type;
        if ((uint64_t)w->n_in > m->max_n_in)
                m->max_n_in = (uint32_t)w->n_in;
}

/* An encoder's tensors after token_embd (llama.cpp's names for BERT):
 * position and token-type embeddings and their LayerNorm, then per layer
 * Q/K/V/output with biases, the LayerNorm after attention, the GELU
 * feed-forward with biases and the LayerNorm after it. No output head. */
static int load_encoder(struct lmp_model *m, struct lmp_error *err) {
        const struct lmp_gguf *g = m->gguf;
        const struct lmp_hparams *hp = &m->hp;
        uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
        uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
        int r;

        const struct lmp_gguf_tensor *tt = find_tensor(g, "token_types.weight", true, err, &r);
        if (!tt)
                return r;
        if (tt->ne[1] == 0 || tt->ne[1] > 64)
                return lmp_error_set(err, -EINVAL, "tensor token_types.weight: %llu token types",
                                     (unsigned long long)tt->ne[1]);
        if ((r = load_weight(m, "position_embd.weight", hp->n_embd, hp->n_ctx_train, true, &m->pos_embd,
                             err)) < 0 ||
            (r = load_weight(m, "token_types.weight", hp->n_embd, tt->ne[1], true, &m->type_embd, err)) < 0 ||
            (r = load_vec(g, "token_embd_norm.weight", hp->n_embd, true, &m->embd_norm, err)) < 0 ||
            (r = load_vec(g, "token_embd_norm.bias", hp->n_embd, true, &m->embd_norm_b, err)) < 0)
                return r;

        m->layers = calloc(hp->n_layer, sizeof(*m->layers));
        if (!m->layers)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        for (uint32_t i = 0; i < hp->n_layer; i++) {
                struct lmp_layer *L = &m->layers[i];
                char n[NAME_MAX_LEN];
#define NAME(s) (snprintf(n, sizeof(n), "blk.%u.%s", i, s), n)
                if ((r = load_weight(m, NAME("attn_q.weight"), hp->n_embd, q_dim, true, &L->wq,
                                     err)) < 0 ||
                    (r = load_weight(m, NAME("attn_k.weight"), hp->n_embd, kv_dim, true, &L->wk,
                                     err)) < 0 ||
                    (r = load_weight(m, NAME("attn_v.weight"), hp->n_embd, kv_dim, true, &L->wv,
                                     err)) < 0 ||
                    (r = load_weight(m, NAME("attn_output.weight"), q_dim, hp->n_embd, true,
                                     &L->wo, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_q.bias"), q_dim, true, &L->bq, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_k.bias"), kv_dim, true, &L->bk, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_v.bias"), kv_dim, true, &L->bv, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_output.bias"), hp->n_embd, true, &L->bo, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_output_norm.weight"), hp->n_embd, true,
                                  &L->attn_out_norm, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_output_norm.bias"), hp->n_embd, true,
                                  &L->attn_out_norm_b, err)) < 0 ||
                    (r = load_weight(m, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, true,
                                     &L->ffn_up, err)) < 0 ||
                    (r = load_vec(g, NAME("ffn_up.bias"), hp->n_ff, true, &L->b_up, err)) < 0 ||
                    (r = load_weight(m, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, true,
                                     &L->ffn_down, err)) < 0 ||
                    (r = load_vec(g, NAME("ffn_down.bias"), hp->n_embd, true, &L->b_down, err)) < 0 ||
                    (r = load_vec(g, NAME("layer_output_norm.weight"), hp->n_embd, true,
                                  &L->layer_out_norm, err)) < 0 ||
                    (r = load_vec(g, NAME("layer_output_norm.bias"), hp->n_embd, true,
                                  &L->layer_out_norm_b, err)) < 0)
                        return r;
#undef NAME
                note_weight(m, &L->wq);
                note_weight(m, &L->wk);
                note_weight(m, &L->wv);
                note_weight(m, &L->wo);
                note_weight(m, &L->ffn_up);
                note_weight(m, &L->ffn_down);
        }
        return 0;
}

/* Q, K and V: three matrices, or one (attn_qkv: q rows, then k, then v)
 * viewed as three. */
static int load_qkv(struct lmp_model *m, uint32_t i, struct lmp_layer *L, struct lmp_error *err) {
        const struct lmp_hparams *hp = &m->hp;
        uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
        uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
        char n[NAME_MAX_LEN];
        int r;
#define NAME(s) (snprintf(n, sizeof(n), "blk.%u.%s", i, s), n)
        if (m->arch->fused_qkv) {
                struct lmp_weight qkv;
                if ((r = load_weight(m, NAME("attn_qkv.weight"), hp->n_embd, q_dim + 2 * kv_dim, true,
                                     &qkv, err)) < 0)
                        return r;
                L->wq = weight_rows(&qkv, 0, (int64_t)q_dim, "q");
                L->wk = weight_rows(&qkv, (int64_t)q_dim, (int64_t)kv_dim, "k");
                L->wv = weight_rows(&qkv, (int64_t)(q_dim + kv_dim), (int64_t)kv_dim, "v");
                return 0;
        }
        if ((r = load_weight(m, NAME("attn_q.weight"), hp->n_embd, q_dim, true, &L->wq, err)) < 0 ||
            (r = load_weight(m, NAME("attn_k.weight"), hp->n_embd, kv_dim, true, &L->wk, err)) < 0 ||
            (r = load_weight(m, NAME("attn_v.weight"), hp->n_embd, kv_dim, true, &L->wv, err)) < 0)
                return r;
#undef NAME
        return 0;
}

/* The FFN's gate and up: two matrices, or one ffn_up of 2 * n_ff rows
 * (gate rows, then up rows) viewed as two. */
static int load_gate_up(struct lmp_model *m, uint32_t i, struct lmp_layer *L,
                        struct lmp_error *err) {
        const struct lmp_hparams *hp = &m->hp;
        char n[NAME_MAX_LEN];
        int r;
#define NAME(s) (snprintf(n, sizeof(n), "blk.%u.%s", i, s), n)
        if (m->arch->fused_gate_up) {
                struct lmp_weight gu;
                if ((r = load_weight(m, NAME("ffn_up.weight"), hp->n_embd, 2 * (uint64_t)hp->n_ff,
                                     true, &gu, err)) < 0)
                        return r;
                L->ffn_gate = weight_rows(&gu, 0, hp->n_ff, "gate");
                L->ffn_up = weight_rows(&gu, hp->n_ff, hp->n_ff, "up");
                return 0;
        }
        if ((r = load_weight(m, NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, true, &L->ffn_gate,
                             err)) < 0 ||
            (r = load_weight(m, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, true, &L->ffn_up,
                             err)) < 0)
                return r;
#undef NAME
        return 0;
}

int lmp_model_load(const struct lmp_gguf *g, enum lmp_isa isa, struct lmp_model **ret,
                   struct lmp_error *err) {
        struct lmp_gguf_str arch_s;
        int r = lmp_gguf_get_str(g, "general.architecture", &arch_s);
        if (r < 0)
                return lmp_error_set(err, r, "metadata general.architecture: %s",
                                     r == -ENOENT ? "missing" : "not a string");
        char arch_name[64];
        snprintf(arch_name, sizeof(arch_name), "%.*s", (int)LMP_MIN(arch_s.len, 63u), arch_s.ptr);
        const struct lmp_arch *arch = lmp_arch_find(arch_name);
        if (!arch || arch_s.len != strlen(arch_name))
                return lmp_error_set(err, -ENOTSUP, "architecture '%s' not supported", arch_name);
        if ((unsigned)isa >= LMP_ISA_COUNT)
                return lmp_error_set(err, -EINVAL, "unknown instruction set %d", (int)isa);

        struct lmp_model *m = calloc(1, sizeof(*m));
        if (!m)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        m->arch = arch;
        m->isa = isa;
        m->bf16 = isa == LMP_ISA_AVX512 && lmp_cpu_bf16();
        m->gguf = g;
        if ((r = load_hparams(g, arch, &m->hp, err)) < 0)
                goto fail;
        struct lmp_hparams *hp = &m->hp;
        uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
        uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;

        const struct lmp_gguf_tensor *te = find_tensor(g, "token_embd.weight", true, err, &r);
        if (!te)
                goto fail;
        if (te->ne[1] == 0 || te->ne[1] > INT32_MAX) {
                r = lmp_error_set(err, -EINVAL, "tensor token_embd.weight: bad vocabulary size");
                goto fail;
        }
        hp->n_vocab = (uint32_t)te->ne[1];
        if ((r = load_weight(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err)) < 0)
                goto fail;
        if (arch->encoder) {
                if ((r = load_encoder(m, err)) < 0)
                        goto fail;
                *ret = m;
                return 0;
        }
        if ((r = load_vec(g, "output_norm.weight", hp->n_embd, true, &m->output_norm, err)) < 0)
                goto fail;
        if ((r = load_weight(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output,
                             err)) < 0)
                goto fail;
        if (r == 0) {
                m->output = m->tok_embd;
                m->tied_output = true;
        }
        note_weight(m, &m->output);
        if ((r = load_vec(g, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs, err)) < 0)
                goto fail;
        if (arch->rope_factors_ls) {
                /* Optional, as in llama.cpp (Phi-3 mini 4k has none), but in pairs. */
                if ((r = load_vec(g, "rope_factors_long.weight", hp->n_rot / 2, false,
                                  &m->rope_factors_long, err)) < 0 ||
                    (r = load_vec(g, "rope_factors_short.weight", hp->n_rot / 2,
                                  m->rope_factors_long != NULL, &m->rope_factors_short, err)) < 0)
                        goto fail;
                if (m->rope_factors_short && !m->rope_factors_long) {
                        r = lmp_error_set(err, -ENOENT, "tensor rope_factors_long.weight: missing");
                        goto fail;
                }
        }

        m->layers = calloc(hp->n_layer, sizeof(*m->layers));
        if (!m->layers) {
                r = lmp_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        for (uint32_t i = 0; i < hp->n_layer; i++) {
                struct lmp_layer *L = &m->layers[i];
                char n[NAME_MAX_LEN];
#define NAME(s) (snprintf(n, sizeof(n), "blk.%u.%s", i, s), n)
                if ((r = load_vec(g, NAME("attn_norm.weight"), hp->n_embd, true, &L->attn_norm,
                                  err)) < 0 ||
                    (r = load_qkv(m, i, L, err)) < 0 ||
                    (r = load_weight(m, NAME("attn_output.weight"), q_dim, hp->n_embd, true,
                                     &L->wo, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_q.bias"), q_dim, arch->qkv_bias, &L->bq, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_k.bias"), kv_dim, arch->qkv_bias, &L->bk, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_v.bias"), kv_dim, arch->qkv_bias, &L->bv, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_output.bias"), hp->n_embd, false, &L->bo, err)) < 0 ||
                    (r = load_vec(g, NAME("ffn_norm.weight"), hp->n_embd, true, &L->ffn_norm,
                                  err)) < 0 ||
                    (r = load_gate_up(m, i, L, err)) < 0 ||
                    (r = load_weight(m, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, true,
                                     &L->ffn_down, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_q_norm.weight"), hp->head_dim, arch->qk_norm,
                                  &L->attn_q_norm, err)) < 0 ||
                    (r = load_vec(g, NAME("attn_k_norm.weight"), hp->head_dim, arch->qk_norm,
                                  &L->attn_k_norm, err)) < 0 ||
                    (r = load_vec(g, NAME("post_attention_norm.weight"), hp->n_embd,
                                  arch->post_norms, &L->post_attn_norm, err)) < 0 ||
                    (r = load_vec(g, NAME("post_ffw_norm.weight"), hp->n_embd, arch->post_norms,
                                  &L->post_ffw_norm, err)) < 0)
                        goto fail;
#undef NAME
                if ((L->attn_q_norm == NULL) != (L->attn_k_norm == NULL) ||
                    (L->post_attn_norm == NULL) != (L->post_ffw_norm == NULL)) {
                        r = lmp_error_set(err, -EINVAL, "layer %u: one of a pair of norms missing", i);
                        goto fail;
                }
                /* Gemma 3: every swa_pattern-th layer global, the others windowed. */
                if (hp->n_swa && i % hp->swa_pattern < hp->swa_pattern - 1)
                        L->n_swa = hp->n_swa;
                note_weight(m, &L->wq);
                note_weight(m, &L->wk);
                note_weight(m, &L->wv);
                note_weight(m, &L->wo);
                note_weight(m, &L->ffn_gate);
                note_weight(m, &L->ffn_up);
                note_weight(m, &L->ffn_down);
        }
        *ret = m;
        return 0;
fail:
        lmp_model_free(m);
        return r;
}

void lmp_model_free(struct lmp_model *m) {
        if (!m)
                return;
        free(m->layers);
        free(m);
}

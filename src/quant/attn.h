/* The two products of a decode step's attention over an f32 KV cache, for
 * a few query rows at a time (the heads of one token that share a KV head,
 * or a handful of a short run's tokens), and the softmax between them:
 *
 *   scores:  s[i][p] = q_i . k_p           i < m, p < L
 *   softmax: s_i <- softmax(scale * s_i)   one row
 *   wsum:    o_i     = sum_p s[i][p] v_p
 *
 * Rows are hd floats; q, k, s, v and o rows are ld* floats apart (the cache
 * holds every KV head of a position in one row, so ldk = ldv = kv_dim).
 * OpenBLAS's sgemm packs K and V into its own panels on every call, which
 * for a few query rows costs more than the products: these kernels read the
 * cache in place, once per call, and keep the query rows (scores) or the
 * output rows (wsum) in registers. Prompts' tiles of many rows still go
 * through sgemm, where the packing pays for itself.
 *
 * Every ISA level has all three; the SIMD ones fall back to the scalar for a
 * head size their vectors do not divide (AVX2: 8, AVX-512: 16). The
 * softmax's scalar twin is vecmath.h's softmax_scaled(), four lanes of
 * generic vectors; the SIMD levels take 8 or 16 lanes with the same exp
 * polynomial. Results
 * differ from the scalar twins only in the order of float additions. */
#pragma once

#include <stddef.h>

#include "quant/quant.h"

typedef void lmp_attn_scores_fn(int hd, int m, int L, const float *restrict q, size_t ldq,
                                const float *restrict k, size_t ldk, float *restrict s, size_t lds);
typedef void lmp_attn_softmax_fn(float *row, int n, float scale);
typedef void lmp_attn_wsum_fn(int hd, int m, int L, const float *restrict s, size_t lds,
                              const float *restrict v, size_t ldv, float *restrict o, size_t ldo);

struct lmp_attn_kernels {
        lmp_attn_scores_fn *scores;
        lmp_attn_softmax_fn *softmax;   /* the sum of the exponentials in double, as GGML's */
        lmp_attn_wsum_fn *wsum;
};

/* The kernels of level isa (NULL for an invalid level); the caller must not
 * ask for a level above lmp_cpu_isa(). */
const struct lmp_attn_kernels *lmp_attn_kernels(enum lmp_isa isa);

lmp_attn_scores_fn lmp_attn_scores_ref, lmp_attn_scores_avx2;     /* AVX-512 takes AVX2's */
lmp_attn_softmax_fn lmp_attn_softmax_ref, lmp_attn_softmax_avx2, lmp_attn_softmax_avx512;
lmp_attn_wsum_fn lmp_attn_wsum_ref, lmp_attn_wsum_avx2, lmp_attn_wsum_avx512;

/* Declarations of every kernel, by type pair and ISA level, for the traits
 * table, the kernel checks and the benchmark. Names say both operands and
 * the level: lmp_vec_dot_q4_K_q8_K_avx2 has the scalar twin _ref. The model
 * should go through lmp_quant_traits() instead of naming these. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define LMP_KDECL_DOT(w, a, isa) \
        void lmp_vec_dot_##w##_##a##_##isa(int n, float *restrict s, const void *restrict x, const void *restrict y);
#define LMP_KDECL_TOF(t, isa) \
        void lmp_to_float_##t##_##isa(const void *restrict x, float *restrict y, int64_t n);
#define LMP_KDECL_GEMM(w, a, isa) \
        void lmp_gemm_##w##_##a##_##isa(int n, int nr, int nt, const void *restrict x, size_t bx, \
                                        const void *restrict y, size_t by, float *restrict s, size_t ld);
#define LMP_KDECL_GEMM_FEW(w, a, isa) \
        void lmp_gemm_few_##w##_##a##_##isa(int n, int nr, int nt, const void *restrict x, size_t bx, \
                                            const void *restrict y, size_t by, float *restrict s, size_t ld);
/* The products over q4_K_r16, q6_K_r16, q4_0_r16 and q5_0_r16 groups
 * (repack.h): ng groups of 16 rows, contiguous at x, by nt activation rows;
 * s[t * ld + 16 g + r]. */
#define LMP_KDECL_GEMM_R16_1(w, a, isa) \
        void lmp_gemm_##w##_r16_##a##_##isa(int n, int ng, int nt, const void *restrict x, const void *restrict y, \
                                            size_t by, float *restrict s, size_t ld);
#define LMP_KDECL_GEMM_R16(isa) \
        LMP_KDECL_GEMM_R16_1(q4_K, q8_K, isa) LMP_KDECL_GEMM_R16_1(q6_K, q8_K, isa) \
        LMP_KDECL_GEMM_R16_1(q4_0, q8_0, isa) LMP_KDECL_GEMM_R16_1(q5_0, q8_0, isa)
#define LMP_KDECL_FROMF(t, isa) \
        void lmp_from_float_##t##_##isa(const float *restrict x, void *restrict y, int64_t n);

/* X(weight, activation) for every vec_dot pairing. */
#define LMP_FOREACH_DOT(X) \
        X(f32, f32) X(f16, f16) X(bf16, bf16) \
        X(q4_0, q8_0) X(q4_1, q8_1) X(q5_0, q8_0) X(q5_1, q8_1) X(q8_0, q8_0) \
        X(q2_K, q8_K) X(q3_K, q8_K) X(q4_K, q8_K) X(q5_K, q8_K) X(q6_K, q8_K)

/* X(weight, activation) for every gemm (tile product) pairing; each has a
 * scalar _ref and a version at each SIMD level. The first list (f16 and the
 * 32-value blocks paired with q8_0) have one reference dot per pair as
 * their _ref. */
#define LMP_FOREACH_GEMM_32(X) X(f16, f16) X(q4_0, q8_0) X(q5_0, q8_0) X(q8_0, q8_0)
#define LMP_FOREACH_GEMM(X) LMP_FOREACH_GEMM_32(X) X(q4_K, q8_K) X(q5_K, q8_K) X(q6_K, q8_K)

/* X(weight, activation) for every gemm_few (batched decode) pairing: a
 * scalar _ref and an AVX-512 version (AVX2 uses its gemm). */
#define LMP_FOREACH_GEMM_FEW(X) X(q4_K, q8_K) X(q5_K, q8_K) X(q6_K, q8_K)

#define LMP_FOREACH_TOF(X) \
        X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) \
        X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) X(q8_K)

#define LMP_FOREACH_FROMF(X) X(f32) X(f16) X(bf16) X(q8_0) X(q8_1) X(q8_K)

/* Scalar references: every kernel. */
#define LMP_KDECL_DOT_REF(w, a) LMP_KDECL_DOT(w, a, ref)
#define LMP_KDECL_TOF_REF(t) LMP_KDECL_TOF(t, ref)
#define LMP_KDECL_FROMF_REF(t) LMP_KDECL_FROMF(t, ref)
#define LMP_KDECL_GEMM_REF(w, a) LMP_KDECL_GEMM(w, a, ref)
#define LMP_KDECL_GEMM_FEW_REF(w, a) LMP_KDECL_GEMM_FEW(w, a, ref)
LMP_FOREACH_DOT(LMP_KDECL_DOT_REF)
LMP_FOREACH_GEMM(LMP_KDECL_GEMM_REF)
LMP_FOREACH_GEMM_FEW(LMP_KDECL_GEMM_FEW_REF)
LMP_FOREACH_TOF(LMP_KDECL_TOF_REF)
LMP_FOREACH_FROMF(LMP_KDECL_FROMF_REF)
LMP_KDECL_GEMM_R16(ref)
/* q8_1 is only ever an activation; its to_float exists for tests. */
LMP_KDECL_TOF(q8_1, ref)

/* The SIMD levels (x86/avx2.c, x86/avx512.c) have every vec_dot and every
 * activation quantizer, and to_float for the float types; the quantized
 * weight types' to_float (used off the hot path, e.g. one embedding row per
 * token) stays scalar at every level. */
#define LMP_FOREACH_TOF_SIMD(X) X(f32) X(f16) X(bf16)
#define LMP_KDECL_DOT_AVX2(w, a) LMP_KDECL_DOT(w, a, avx2)
#define LMP_KDECL_TOF_AVX2(t) LMP_KDECL_TOF(t, avx2)
#define LMP_KDECL_FROMF_AVX2(t) LMP_KDECL_FROMF(t, avx2)
#define LMP_KDECL_DOT_AVX512(w, a) LMP_KDECL_DOT(w, a, avx512)
#define LMP_KDECL_TOF_AVX512(t) LMP_KDECL_TOF(t, avx512)
#define LMP_KDECL_FROMF_AVX512(t) LMP_KDECL_FROMF(t, avx512)
#define LMP_KDECL_GEMM_AVX2(w, a) LMP_KDECL_GEMM(w, a, avx2)
#define LMP_KDECL_GEMM_AVX512(w, a) LMP_KDECL_GEMM(w, a, avx512)
#define LMP_KDECL_GEMM_FEW_AVX512(w, a) LMP_KDECL_GEMM_FEW(w, a, avx512)
LMP_FOREACH_DOT(LMP_KDECL_DOT_AVX2)
LMP_FOREACH_TOF_SIMD(LMP_KDECL_TOF_AVX2)
LMP_FOREACH_FROMF(LMP_KDECL_FROMF_AVX2)
LMP_FOREACH_GEMM(LMP_KDECL_GEMM_AVX2)
LMP_FOREACH_DOT(LMP_KDECL_DOT_AVX512)
LMP_FOREACH_TOF_SIMD(LMP_KDECL_TOF_AVX512)
LMP_FOREACH_FROMF(LMP_KDECL_FROMF_AVX512)
LMP_FOREACH_GEMM(LMP_KDECL_GEMM_AVX512)
LMP_FOREACH_GEMM_FEW(LMP_KDECL_GEMM_FEW_AVX512)
LMP_KDECL_GEMM_R16(avx512)

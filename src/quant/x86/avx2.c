/* AVX2 + FMA + F16C kernels: every vec_dot, the activation quantizers, the
 * f16/bf16 conversions, and the gemm tiles of prompts (see their sections).
 * Compiled on its own with -mavx2 -mfma -mf16c and only called when cpu.c
 * has seen those features. The integer part of each dot is exact, so
 * results differ from the scalar twins only in the order of float
 * additions. The 8-bit products use the unsigned*signed multiply-add
 * (vpmaddubsw), which assumes activation quants in [-127, 127], as the
 * quantizers produce. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/x86/common.h"

static inline int hsum_i32x8(__m256i a) {
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        return _mm_cvtsi128_si32(s);
}

/* Sum of products of unsigned bytes u and signed bytes s, in 8 int32 lanes. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The same for two signed operands: move x's sign onto y. */
static inline __m256i dot_s8s8(__m256i x, __m256i y) {
        return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 32 bits -> 32 bytes, 0xff where the bit is set. */
static inline __m256i bits32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                               0x0101010101010101, 0x0000000000000000);
        __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
        b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* A byte shuffle that broadcasts int16 element a to the low 128-bit lane and
 * element b to the high lane (used with a scale vector loaded in both lanes). */
static inline __m256i pick16(int a, int b) {
        return _mm256_set_m128i(_mm_set1_epi16((short)(((2 * b + 1) << 8) | (2 * b))),
                                _mm_set1_epi16((short)(((2 * a + 1) << 8) | (2 * a))));
}

/* ---- floats ------------------------------------------------------------ */

void lmp_vec_dot_f32_f32_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const float *x = vx, *y = vy;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 32 <= n; i += 32) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
        }
        float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++)
                sum += x[i] * y[i];
        *s = sum;
}

static inline __m256 load_f16x8(const lmp_fp16 *p) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const lmp_bf16 *p) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

void lmp_vec_dot_f16_f16_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_fp16 *x = vx, *y = vy;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 32 <= n; i += 32) {
                a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
                a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
                a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
                a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
        }
        float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++)
                sum += h2f(x[i]) * h2f(y[i]);
        *s = sum;
}

void lmp_vec_dot_bf16_bf16_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_bf16 *x = vx, *y = vy;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 32 <= n; i += 32) {
                a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
                a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
                a2 = _mm256_fmadd_ps(load_bf16x8(x + i + 16), load_bf16x8(y + i + 16), a2);
                a3 = _mm256_fmadd_ps(load_bf16x8(x + i + 24), load_bf16x8(y + i + 24), a3);
        }
        float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++)
                sum += lmp_bf16_to_f32(x[i]) * lmp_bf16_to_f32(y[i]);
        *s = sum;
}

void lmp_to_float_f16_avx2(const void *restrict vx, float *restrict y, int64_t n) {
        const lmp_fp16 *x = vx;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, load_f16x8(x + i));
        for (; i < n; i++)
                y[i] = h2f(x[i]);
}

void lmp_from_float_f16_avx2(const float *restrict x, void *restrict vy, int64_t n) {
        lmp_fp16 *y = vy;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++)
                y[i] = lmp_f32_to_fp16(x[i]);
}

void lmp_to_float_bf16_avx2(const void *restrict vx, float *restrict y, int64_t n) {
        const lmp_bf16 *x = vx;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, load_bf16x8(x + i));
        for (; i < n; i++)
                y[i] = lmp_bf16_to_f32(x[i]);
}

/* Round to nearest even on bit 16; NaNs are kept quiet, as in fp16.h. */
static inline __m256i bf16_round(__m256 v) {
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                               _mm256_set1_epi32(0x7f800000));
        return _mm256_blendv_epi8(r, q, nan);
}

void lmp_from_float_bf16_avx2(const float *restrict x, void *restrict vy, int64_t n) {
        lmp_bf16 *y = vy;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
                const __m256i a = bf16_round(_mm256_loadu_ps(x + i));
                const __m256i b = bf16_round(_mm256_loadu_ps(x + i + 8));
                const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
                _mm256_storeu_si256((__m256i *)(y + i), p);
        }
        for (; i < n; i++)
                y[i] = lmp_f32_to_bf16(x[i]);
}

void lmp_from_float_f32_avx2(const float *restrict x, void *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

void lmp_to_float_f32_avx2(const void *restrict x, float *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

/* ---- activation quantizers ------------------------------------------------ */

static inline float hmax_f32x8(__m256 v) {
        __m128 m = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
}

/* Four int32 vectors (values in [-128, 127]) -> 32 bytes in order. */
static inline __m256i pack_i32x32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
        const __m256i a = _mm256_packs_epi32(i0, i1);
        const __m256i b = _mm256_packs_epi32(i2, i3);
        return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One 32-value block the way llama.cpp's AVX2 quantizer does it: multiply by
 * 127/amax (not by the reciprocal of amax/127) and round half to even. Quants
 * can differ by one from the scalar reference; see tests/kernels. */
static inline __m256i q8_block(const float *x, float *ret_d, int *ret_sum) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (int k = 0; k < 4; k++) {
                v[k] = _mm256_loadu_ps(x + 8 * k);
                amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
        }
        const float max = hmax_f32x8(amax);
        *ret_d = max / 127.0f;
        const __m256 mul = _mm256_set1_ps(max != 0.0f ? 127.0f / max : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        *ret_sum = hsum_i32x8(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        return pack_i32x32(q[0], q[1], q[2], q[3]);
}

void lmp_from_float_q8_0_avx2(const float *restrict x, void *restrict vy, int64_t n) {
        from_float_q8_0(x, vy, n, q8_block);
}

void lmp_from_float_q8_1_avx2(const float *restrict x, void *restrict vy, int64_t n) {
        from_float_q8_1(x, vy, n, q8_block);
}

/* llama.cpp quantizes Q8_K with its scalar code on x86, so this must match
 * ref.c bit for bit: scale from the first value of largest magnitude, with
 * its sign; round half to even; clip at 127; d = 1 / scale. */
void lmp_from_float_q8_K_avx2(const float *restrict x, void *restrict vy, int64_t n) {
        struct lmp_block_q8_K *y = vy;
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (int64_t i = 0; i < n / LMP_QK_K; i++, x += LMP_QK_K) {
                __m256 am = _mm256_setzero_ps();
                for (int j = 0; j < LMP_QK_K; j += 8)
                        am = _mm256_max_ps(am, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
                const float amax = hmax_f32x8(am);
                if (amax == 0.0f) {
                        memset(&y[i], 0, sizeof(y[i]));
                        continue;
                }
                float max = 0.0f;
                for (int j = 0; j < LMP_QK_K; j++)
                        if (fabsf(x[j]) == amax) {
                                max = x[j];
                                break;
                        }
                const float iscale = -127.0f / max;
                const __m256 mul = _mm256_set1_ps(iscale);
                const __m256i top = _mm256_set1_epi32(127);
                for (int j = 0; j < LMP_QK_K; j += 32) {
                        __m256i q[4];
                        for (int k = 0; k < 4; k++)
                                q[k] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_round_ps(
                                        _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), mul),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
                        _mm256_storeu_si256((__m256i *)(y[i].qs + j), pack_i32x32(q[0], q[1], q[2], q[3]));
                }
                for (int j = 0; j < LMP_QK_K / 16; j++) {
                        const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(y[i].qs + 16 * j)));
                        y[i].bsums[j] = (int16_t)hsum_i32x8(_mm256_madd_epi16(w, _mm256_set1_epi16(1)));
                }
                y[i].d = 1.0f / iscale;
        }
}

/* ---- 32-value blocks ------------------------------------------------------ */

void lmp_vec_dot_q4_0_q8_0_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK8_0; i++) {
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
                const __m256i qx = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8s8(qx, qy)), acc);
        }
        *s = hsum_f32x8(acc);
}

void lmp_vec_dot_q4_1_q8_1_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_1 *x = vx;
        const struct lmp_block_q8_1 *y = vy;
        __m256 acc = _mm256_setzero_ps();
        float summs = 0.0f;
        for (int i = 0; i < n / LMP_QK8_1; i++) {
                summs += h2f(x[i].m) * h2f(y[i].s);
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8s8(nibbles32(x[i].qs), qy)), acc);
        }
        *s = hsum_f32x8(acc) + summs;
}

void lmp_vec_dot_q5_0_q8_0_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK8_0; i++) {
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
                /* (q | h<<4) - 16: a clear high bit leaves 0xf0 (-16) in the high nibble. */
                const __m256i hi = _mm256_andnot_si256(bits32(x[i].qh), _mm256_set1_epi8((char)0xf0));
                const __m256i qx = _mm256_or_si256(nibbles32(x[i].qs), hi);
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8s8(qx, qy)), acc);
        }
        *s = hsum_f32x8(acc);
}

void lmp_vec_dot_q5_1_q8_1_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_1 *x = vx;
        const struct lmp_block_q8_1 *y = vy;
        __m256 acc = _mm256_setzero_ps();
        float summs = 0.0f;
        for (int i = 0; i < n / LMP_QK8_1; i++) {
                summs += h2f(x[i].m) * h2f(y[i].s);
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
                const __m256i hi = _mm256_and_si256(bits32(x[i].qh), _mm256_set1_epi8(0x10));
                const __m256i qx = _mm256_or_si256(nibbles32(x[i].qs), hi);
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8s8(qx, qy)), acc);
        }
        *s = hsum_f32x8(acc) + summs;
}

/* Four blocks a step into two sums (one sum's FMA latency bound the loop
 * at a block per 4 cycles); short rows prefetched, as the AVX-512 kernel
 * does (common.h, Q8_PF_MAX_BLOCKS). */
void lmp_vec_dot_q8_0_q8_0_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q8_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        const int nb = n / LMP_QK8_0;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int i = 0;
        const int pf = nb <= Q8_PF_MAX_BLOCKS;
        for (; i + 3 < nb; i += 4) {
                if (pf) {
                        _mm_prefetch((const char *)&x[i] + 4096, _MM_HINT_T0);
                        _mm_prefetch((const char *)&x[i] + 4096 + 64, _MM_HINT_T0);
                }
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                        const __m256 d = _mm256_set1_ps(h2f(x[i + k].d) * h2f(y[i + k].d));
                        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i + k].qs);
                        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i + k].qs);
                        const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(qx, qy));
                        if (k & 1)
                                acc1 = _mm256_fmadd_ps(d, p, acc1);
                        else
                                acc0 = _mm256_fmadd_ps(d, p, acc0);
                }
        }
        for (; i < nb; i++) {
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
                const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8s8(qx, qy)), acc0);
        }
        *s = hsum_f32x8(_mm256_add_ps(acc0, acc1));
}

/* ---- K-quants ---------------------------------------------------------- */

/* Q4_K/Q5_K scales: 8 scales then 8 mins as 16 int16. */
static inline __m256i scales_mins_k4(const uint8_t *q) {
        uint32_t u[4];
        memcpy(u, q, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
        const uint32_t m = u[1] & 0x3f3f3f3f;
        u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
        u[2] = m;
        u[0] &= 0x3f3f3f3f;
        return _mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
}

/* Q3_K scales: 16 values, offset by -32, as int16 in both halves. */
static inline __m256i scales_q3_K(const uint8_t *q) {
        uint32_t a[4];
        memcpy(a, q, 12);
        const uint32_t t = a[2];
        a[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
        a[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
        a[0] = (a[0] & 0x0f0f0f0f) | (((t >> 0) & 0x03030303) << 4);
        a[1] = (a[1] & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
        const __m128i s8 = _mm_sub_epi8(_mm_set_epi32((int)a[3], (int)a[2], (int)a[1], (int)a[0]), _mm_set1_epi8(32));
        return _mm256_cvtepi8_epi16(s8);
}

/* The min term of Q4_K/Q5_K: sum over sub-blocks of mins[j/2] * bsums[j]. */
static inline __m128i mins_dot_bsums(__m256i mins_and_scales, const void *bsums) {
        const __m256i q8sums = _mm256_loadu_si256((const __m256i *)bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(q8sums), _mm256_extracti128_si256(q8sums, 1));
        return _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
}

void lmp_vec_dot_q2_K_q8_K_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q2_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m256i m3 = _mm256_set1_epi8(3);
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const float dmin = -y[i].d * h2f(x[i].dmin);
                const __m128i ms = _mm_loadu_si128((const __m128i *)x[i].scales);
                const __m128i sc8 = _mm_and_si128(ms, _mm_set1_epi8(0x0f));
                const __m128i mn8 = _mm_and_si128(_mm_srli_epi16(ms, 4), _mm_set1_epi8(0x0f));
                const __m256i prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mn8),
                                                       _mm256_loadu_si256((const __m256i *)y[i].bsums));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
                const __m256i all = _mm256_cvtepi8_epi16(sc8);
                const __m256i sc[2] = {
                        _mm256_broadcastsi128_si256(_mm256_castsi256_si128(all)),
                        _mm256_broadcastsi128_si256(_mm256_extracti128_si256(all, 1)),
                };
                const uint8_t *q2 = x[i].qs;
                const int8_t *q8 = y[i].qs;
                __m256i sumi = _mm256_setzero_si256();
                for (int j = 0; j < 2; j++, q2 += 32) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)q2);
                        for (int k = 0; k < 4; k++, q8 += 32) {
                                const __m256i q2k = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                                const __m256i qy = _mm256_loadu_si256((const __m256i *)q8);
                                __m256i p = _mm256_maddubs_epi16(q2k, qy);
                                p = _mm256_madd_epi16(_mm256_shuffle_epi8(sc[j], pick16(2 * k, 2 * k + 1)), p);
                                sumi = _mm256_add_epi32(sumi, p);
                        }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        *s = hsum_f32x8(acc);
}

void lmp_vec_dot_q3_K_q8_K_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q3_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m256i m3 = _mm256_set1_epi8(3);
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const __m256i all = scales_q3_K(x[i].scales);
                const __m256i sc[2] = {
                        _mm256_broadcastsi128_si256(_mm256_castsi256_si128(all)),
                        _mm256_broadcastsi128_si256(_mm256_extracti128_si256(all, 1)),
                };
                /* 4 where the high bit is clear, to subtract. */
                __m256i hbits = _mm256_andnot_si256(_mm256_loadu_si256((const __m256i *)x[i].hmask), _mm256_set1_epi8(-1));
                const uint8_t *q3 = x[i].qs;
                const int8_t *q8 = y[i].qs;
                __m256i sumi = _mm256_setzero_si256();
                for (int j = 0; j < 2; j++, q3 += 32) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)q3);
                        for (int k = 0; k < 4; k++, q8 += 32) {
                                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                                const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(hbits, _mm256_set1_epi8(1)), 2);
                                hbits = _mm256_srli_epi16(hbits, 1);
                                const __m256i qy = _mm256_loadu_si256((const __m256i *)q8);
                                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(lo, qy), _mm256_maddubs_epi16(hi, qy));
                                p = _mm256_madd_epi16(_mm256_shuffle_epi8(sc[j], pick16(2 * k, 2 * k + 1)), p);
                                sumi = _mm256_add_epi32(sumi, p);
                        }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        *s = hsum_f32x8(acc);
}

void lmp_vec_dot_q4_K_q8_K_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        __m256 acc = _mm256_setzero_ps();
        __m128 acc_m = _mm_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const float dmin = -y[i].d * h2f(x[i].dmin);
                const __m256i ms = scales_mins_k4(x[i].scales);
                acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins_dot_bsums(ms, (const uint8_t *)&y[i] + offsetof(struct lmp_block_q8_K, bsums))), acc_m);
                const __m256i sc = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms));
                const uint8_t *q4 = x[i].qs;
                const int8_t *q8 = y[i].qs;
                __m256i sumi = _mm256_setzero_si256();
                for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
                        const __m256i lo = _mm256_and_si256(bits, m4);
                        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                        __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
                        __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
                        pl = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, pick16(2 * j, 2 * j)), pl);
                        ph = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, pick16(2 * j + 1, 2 * j + 1)), ph);
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
        *s = hsum_f32x8(acc) + _mm_cvtss_f32(acc_m);
}

void lmp_vec_dot_q5_K_q8_K_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const __m256i m1 = _mm256_set1_epi8(1);
        __m256 acc = _mm256_setzero_ps();
        __m128 acc_m = _mm_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const float dmin = -y[i].d * h2f(x[i].dmin);
                const __m256i ms = scales_mins_k4(x[i].scales);
                acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins_dot_bsums(ms, (const uint8_t *)&y[i] + offsetof(struct lmp_block_q8_K, bsums))), acc_m);
                const __m256i sc = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms));
                __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
                const uint8_t *q5 = x[i].qs;
                const int8_t *q8 = y[i].qs;
                __m256i sumi = _mm256_setzero_si256();
                for (int j = 0; j < 4; j++, q5 += 32, q8 += 64) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)q5);
                        const __m256i hl = _mm256_slli_epi16(_mm256_and_si256(hbits, m1), 4);
                        const __m256i hh = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), m1), 4);
                        hbits = _mm256_srli_epi16(hbits, 2);
                        const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), hl);
                        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), hh);
                        __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
                        __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
                        pl = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, pick16(2 * j, 2 * j)), pl);
                        ph = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, pick16(2 * j + 1, 2 * j + 1)), ph);
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
        *s = hsum_f32x8(acc) + _mm_cvtss_f32(acc_m);
}

void lmp_vec_dot_q6_K_q8_K_avx2(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q6_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const __m256i m2 = _mm256_set1_epi8(3);
        const __m256i m32 = _mm256_set1_epi8(32);
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const __m256i all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
                const __m256i sc[2] = {
                        _mm256_broadcastsi128_si256(_mm256_castsi256_si128(all)),
                        _mm256_broadcastsi128_si256(_mm256_extracti128_si256(all, 1)),
                };
                const uint8_t *ql = x[i].ql, *qh = x[i].qh;
                const int8_t *q8 = y[i].qs;
                __m256i sumi = _mm256_setzero_si256();
                for (int j = 0; j < 2; j++, ql += 64, qh += 32) {
                        const __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
                        const __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                        const __m256i bh = _mm256_loadu_si256((const __m256i *)qh);
                        __m256i q[4];
                        q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4));
                        q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4));
                        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4));
                        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4));
                        for (int k = 0; k < 4; k++, q8 += 32) {
                                const __m256i qy = _mm256_loadu_si256((const __m256i *)q8);
                                /* (q - 32) . y as q . y - 32 . y */
                                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], qy), _mm256_maddubs_epi16(m32, qy));
                                p = _mm256_madd_epi16(_mm256_shuffle_epi8(sc[j], pick16(2 * k, 2 * k + 1)), p);
                                sumi = _mm256_add_epi32(sumi, p);
                        }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        *s = hsum_f32x8(acc);
}

/* ---- gemm: 32-value blocks times q8_0 activations ----------------------- */

/* As in avx512.c: a register tile is 8 weight rows, one per int32 lane, by
 * up to GEMM_TOKS activation rows. The blocks of 8 rows are transposed,
 * GEMM_KC blocks at a time, into a packed copy where register c of a block
 * holds bytes 4c..4c+3 of every row, multiplied by those four bytes of one
 * token, broadcast; a packed copy serves up to GEMM_TGROUP tokens. Without
 * vpdpbusd the bytes go through vpmaddubsw (unsigned x signed into int16
 * pairs) and vpmaddwd. q4_0 and q5_0 are unsigned with a bias (8, 16)
 * removed through the activation block sums; their int16 pairs are summed
 * over 8 (q4_0) or 4 (q5_0) groups of four bytes before widening, which
 * cannot saturate for activations in [-127, 127]. q8_0 keeps the weights'
 * magnitudes and signs, and moves the signs onto the activation bytes, per
 * token, as vec_dot does. */
#define GEMM_ROWS 8
#define GEMM_TOKS 8
/* GEMM_TGROUP, GEMM_KC, enum w32 and struct ytab: x86/common.h. */

struct wpack {
        __m256i a[GEMM_KC][8];   /* q4_0, q5_0: value + bias; q8_0: |value| */
        __m256i sgn[GEMM_KC][8]; /* q8_0: the signed values */
        __m256 d[GEMM_KC];       /* the 8 rows' scales */
};

/* 16 bytes at offset off of each of 8 rows, as 4 registers: dword lane r
 * of v[c] is bytes 4c..4c+3 of row r. */
static inline __attribute__((always_inline)) void transpose8x16(const uint8_t *const rows[GEMM_ROWS], size_t off,
                                                                __m256i v[4]) {
        __m256i z[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
                z[g] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(rows[g] + off))),
                                               _mm_loadu_si128((const __m128i *)(rows[g + 4] + off)), 1);
        /* 128-bit lane k of z[g] is row 4k + g */
        const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
        v[0] = _mm256_unpacklo_epi64(t0, t2);
        v[1] = _mm256_unpackhi_epi64(t0, t2);
        v[2] = _mm256_unpacklo_epi64(t1, t3);
        v[3] = _mm256_unpackhi_epi64(t1, t3);
}

static inline int w32_bias(enum w32 k) {
        return k == W_Q4_0 ? 8 : k == W_Q5_0 ? 16 : 0;
}

/* Block i of the 8 rows as 8 registers (q4_0, q5_0: value + bias; q8_0: the
 * signed values) and the rows' scales. */
static inline __attribute__((always_inline)) void unpack8(enum w32 kind, const uint8_t *const rows[GEMM_ROWS], int i,
                                                          __m256i a[8], __m256 *dx) {
        const size_t off = (size_t)i * w32_size(kind);
        *dx = _mm256_cvtph_ps(_mm_set_epi16((short)load_u16(rows[7] + off), (short)load_u16(rows[6] + off),
                                            (short)load_u16(rows[5] + off), (short)load_u16(rows[4] + off),
                                            (short)load_u16(rows[3] + off), (short)load_u16(rows[2] + off),
                                            (short)load_u16(rows[1] + off), (short)load_u16(rows[0] + off)));
        if (kind == W_Q8_0) {
                transpose8x16(rows, off + offsetof(struct lmp_block_q8_0, qs), a);
                transpose8x16(rows, off + offsetof(struct lmp_block_q8_0, qs) + 16, a + 4);
                return;
        }
        const size_t qs = kind == W_Q4_0 ? offsetof(struct lmp_block_q4_0, qs) : offsetof(struct lmp_block_q5_0, qs);
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        __m256i p[4];
        transpose8x16(rows, off + qs, p);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
                a[c] = _mm256_and_si256(p[c], m4);
                a[c + 4] = _mm256_and_si256(_mm256_srli_epi16(p[c], 4), m4);
        }
        if (kind == W_Q5_0) {
                /* Value 4c + j takes bit 4 from bit 4c + j of qh: byte c / 2
                 * of the row's qh, spread over the lane, tested bit by bit. */
                const size_t oh = off + offsetof(struct lmp_block_q5_0, qh);
                const __m256i qh = _mm256_set_epi32(load_i32(rows[7] + oh), load_i32(rows[6] + oh), load_i32(rows[5] + oh),
                                                    load_i32(rows[4] + oh), load_i32(rows[3] + oh), load_i32(rows[2] + oh),
                                                    load_i32(rows[1] + oh), load_i32(rows[0] + oh));
                const __m256i sixteen = _mm256_set1_epi8(0x10);
                const __m256i lane = _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0c0c0c0c,
                                                       0, 0x04040404, 0x08080808, 0x0c0c0c0c);
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++) {
                        const __m256i pick = _mm256_add_epi32(lane, _mm256_set1_epi32(0x01010101 * (c >> 1)));
                        const __m256i sel = _mm256_set1_epi32((int)(0x08040201u << (4 * (c & 1))));
                        const __m256i bit = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, pick), sel), sel);
                        a[c] = _mm256_or_si256(a[c], _mm256_and_si256(bit, sixteen));
                }
        }
}

/* A packed tile (nbk blocks) by NT tokens (their blocks from k0, their
 * table rows from tab_t), stored (first pass) or added into s, nv rows. */
static inline __attribute__((always_inline)) void tile32(enum w32 kind, const int NT, const struct wpack *wp, int k0,
                                                         int nbk, const uint8_t *y, size_t by, const struct ytab *tab,
                                                         int tab_t, float *s, size_t ld, int nv, int add) {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256 acc[GEMM_TOKS];
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
                acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nbk; b++) {
                const __m256 dx = wp->d[b];
#pragma GCC unroll 16
                for (int t = 0; t < NT; t++) {
                        const int8_t *q = ((const struct lmp_block_q8_0 *)(y + (size_t)t * by))[k0 + b].qs;
                        __m256i p;
                        if (kind == W_Q8_0) {
                                p = _mm256_setzero_si256();
#pragma GCC unroll 8
                                for (int c = 0; c < 8; c++) {
                                        const __m256i qy = _mm256_sign_epi8(_mm256_set1_epi32(load_i32(q + 4 * c)),
                                                                            _mm256_load_si256(&wp->sgn[b][c]));
                                        p = _mm256_add_epi32(p, _mm256_madd_epi16(
                                                _mm256_maddubs_epi16(_mm256_load_si256(&wp->a[b][c]), qy), ones));
                                }
                        } else {
                                /* int16 pair sums over groups of 8 (q4_0) or 4 (q5_0) chunks */
                                const int per = kind == W_Q4_0 ? 8 : 4;
                                p = _mm256_set1_epi32(tab->corr[tab_t + t][b]);
                                __m256i p16 = _mm256_setzero_si256();
#pragma GCC unroll 8
                                for (int c = 0; c < 8; c++) {
                                        p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(_mm256_load_si256(&wp->a[b][c]),
                                                                                         _mm256_set1_epi32(load_i32(q + 4 * c))));
                                        if (c % per == per - 1) {
                                                p = _mm256_add_epi32(p, _mm256_madd_epi16(p16, ones));
                                                p16 = _mm256_setzero_si256();
                                        }
                                }
                        }
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                                 _mm256_mul_ps(dx, _mm256_set1_ps(tab->d[tab_t + t][b])), acc[t]);
                }
        }
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
                float *o = s + (size_t)t * ld;
                if (nv == GEMM_ROWS) {
                        if (add)
                                acc[t] = _mm256_add_ps(acc[t], _mm256_loadu_ps(o));
                        _mm256_storeu_ps(o, acc[t]);
                } else {
                        float v[GEMM_ROWS];
                        _mm256_storeu_ps(v, acc[t]);
                        for (int r = 0; r < nv; r++)
                                o[r] = add ? o[r] + v[r] : v[r];
                }
        }
}

static inline __attribute__((always_inline)) void gemm32(enum w32 kind, int n, int nr, int nt, const void *restrict vx,
                                                         size_t bx, const void *restrict vy, size_t by,
                                                         float *restrict s, size_t ld) {
        const uint8_t *x = vx, *y = vy;
        const int nb = n / 32;
        const int bias = w32_bias(kind);
        struct ytab tab;
        struct wpack wp;
        for (int g0 = 0; g0 < nt; g0 += GEMM_TGROUP) {
                const int ng = nt - g0 < GEMM_TGROUP ? nt - g0 : GEMM_TGROUP;
                const uint8_t *yg = y + (size_t)g0 * by;
                int k0 = 0;
                do {
                        const int nbk = nb - k0 < GEMM_KC ? nb - k0 : GEMM_KC;
                        for (int t = 0; t < ng; t++) {
                                const struct lmp_block_q8_0 *yb = (const struct lmp_block_q8_0 *)(yg + (size_t)t * by) + k0;
                                for (int b = 0; b < nbk; b++) {
                                        tab.d[t][b] = h2f(yb[b].d);
                                        if (bias) {
                                                const __m256i q = _mm256_loadu_si256((const __m256i *)yb[b].qs);
                                                tab.corr[t][b] = -bias * hsum_i32x8(dot_u8s8(_mm256_set1_epi8(1), q));
                                        }
                                }
                        }
                        for (int r0 = 0; r0 < nr; r0 += GEMM_ROWS) {
                                const uint8_t *rows[GEMM_ROWS];
                                /* rows past the end repeat the last; their lanes are not stored */
                                for (int r = 0; r < GEMM_ROWS; r++)
                                        rows[r] = x + (size_t)(r0 + r < nr ? r0 + r : nr - 1) * bx;
                                for (int b = 0; b < nbk; b++) {
                                        unpack8(kind, rows, k0 + b, wp.a[b], &wp.d[b]);
                                        if (kind == W_Q8_0)
#pragma GCC unroll 8
                                                for (int c = 0; c < 8; c++) {
                                                        wp.sgn[b][c] = wp.a[b][c];
                                                        wp.a[b][c] = _mm256_sign_epi8(wp.a[b][c], wp.a[b][c]);
                                                }
                                }
                                const int nv = nr - r0 < GEMM_ROWS ? nr - r0 : GEMM_ROWS;
                                for (int t0 = 0; t0 < ng; t0 += GEMM_TOKS) {
                                        const int ntt = ng - t0 < GEMM_TOKS ? ng - t0 : GEMM_TOKS;
                                        const uint8_t *yt = yg + (size_t)t0 * by;
                                        float *o = s + (size_t)(g0 + t0) * ld + (size_t)r0;
                                        switch (ntt) {
#define TILE_CASE(N) case N: tile32(kind, N, &wp, k0, nbk, yt, by, &tab, t0, o, ld, nv, k0 > 0); break;
                                        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4)
                                        TILE_CASE(5) TILE_CASE(6) TILE_CASE(7) TILE_CASE(8)
#undef TILE_CASE
                                        }
                                }
                        }
                        k0 += nbk;
                } while (k0 < nb);
        }
}

void lmp_gemm_q4_0_q8_0_avx2(int n, int nr, int nt, const void *restrict x, size_t bx,
                             const void *restrict y, size_t by, float *restrict s, size_t ld) {
        gemm32(W_Q4_0, n, nr, nt, x, bx, y, by, s, ld);
}

void lmp_gemm_q5_0_q8_0_avx2(int n, int nr, int nt, const void *restrict x, size_t bx,
                             const void *restrict y, size_t by, float *restrict s, size_t ld) {
        gemm32(W_Q5_0, n, nr, nt, x, bx, y, by, s, ld);
}

void lmp_gemm_q8_0_q8_0_avx2(int n, int nr, int nt, const void *restrict x, size_t bx,
                             const void *restrict y, size_t by, float *restrict s, size_t ld) {
        gemm32(W_Q8_0, n, nr, nt, x, bx, y, by, s, ld);
}

/* ---- gemm: f16 ---------------------------------------------------------- */

/* As in avx512.c, with 8 lanes: a tile is 3 weight rows by 4 activation
 * rows (12 accumulators of the 16 registers), the tile's activation rows
 * converted to f32 once per pass of GEMM_F16_KC values, passes outermost.
 * A ragged end of the row is done in scalar, in the same float arithmetic. */
#define GEMM_F16_ROWS 3
#define GEMM_F16_TOKS 4
#define GEMM_F16_KC 1024
#define GEMM_F16_RB (16 * GEMM_F16_ROWS)

static void gemm_f16_rows(int n, int nr, int nt, const uint8_t *restrict x, size_t bx,
                          const uint8_t *restrict y, size_t by, float *restrict s, size_t ld) {
        float yf[GEMM_F16_TOKS][GEMM_F16_KC] __attribute__((aligned(32)));
        int k0 = 0;
        do {
                const int kc = n - k0 < GEMM_F16_KC ? n - k0 : GEMM_F16_KC;
                const int kv = kc & ~7;
                for (int t0 = 0; t0 < nt; t0 += GEMM_F16_TOKS) {
                        const int ntt = nt - t0 < GEMM_F16_TOKS ? nt - t0 : GEMM_F16_TOKS;
                        for (int t = 0; t < GEMM_F16_TOKS; t++) {
                                const lmp_fp16 *yr = (const lmp_fp16 *)(y + (size_t)(t0 + (t < ntt ? t : ntt - 1)) * by) + k0;
                                int k = 0;
                                for (; k < kv; k += 8)
                                        _mm256_store_ps(&yf[t][k], load_f16x8(yr + k));
                                for (; k < kc; k++)
                                        yf[t][k] = h2f(yr[k]);
                        }
                        for (int r0 = 0; r0 < nr; r0 += GEMM_F16_ROWS) {
                                const lmp_fp16 *xr[GEMM_F16_ROWS];
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
                                        xr[r] = (const lmp_fp16 *)(x + (size_t)(r0 + r < nr ? r0 + r : nr - 1) * bx) + k0;
                                __m256 acc[GEMM_F16_ROWS][GEMM_F16_TOKS];
#pragma GCC unroll 8
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
#pragma GCC unroll 8
                                        for (int t = 0; t < GEMM_F16_TOKS; t++)
                                                acc[r][t] = _mm256_setzero_ps();
                                for (int k = 0; k < kv; k += 8) {
#pragma GCC unroll 8
                                        for (int r = 0; r < GEMM_F16_ROWS; r++) {
                                                const __m256 w = load_f16x8(xr[r] + k);
#pragma GCC unroll 8
                                                for (int t = 0; t < GEMM_F16_TOKS; t++)
                                                        acc[r][t] = _mm256_fmadd_ps(w, _mm256_load_ps(&yf[t][k]), acc[r][t]);
                                        }
                                }
                                float sum[GEMM_F16_TOKS][GEMM_F16_ROWS];
#pragma GCC unroll 8
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
#pragma GCC unroll 8
                                        for (int t = 0; t < GEMM_F16_TOKS; t++) {
                                                sum[t][r] = hsum_f32x8(acc[r][t]);
                                                for (int k = kv; k < kc; k++)
                                                        sum[t][r] += h2f(xr[r][k]) * yf[t][k];
                                        }
                                for (int t = 0; t < ntt; t++)
                                        for (int r = 0; r < GEMM_F16_ROWS && r0 + r < nr; r++) {
                                                float *o = s + (size_t)(t0 + t) * ld + (size_t)(r0 + r);
                                                *o = k0 ? *o + sum[t][r] : sum[t][r];
                                        }
                        }
                }
                k0 += kc;
        } while (k0 < n);
}

/* Blocks of GEMM_F16_RB rows at a time, so that the rows' part of a pass
 * (GEMM_F16_RB * GEMM_F16_KC halves) stays in cache for every token tile. */
void lmp_gemm_f16_f16_avx2(int n, int nr, int nt, const void *restrict x, size_t bx,
                           const void *restrict y, size_t by, float *restrict s, size_t ld) {
        for (int r0 = 0; r0 < nr; r0 += GEMM_F16_RB)
                gemm_f16_rows(n, nr - r0 < GEMM_F16_RB ? nr - r0 : GEMM_F16_RB, nt, (const uint8_t *)x + (size_t)r0 * bx,
                              bx, y, by, s + r0, ld);
}

/* ---- K-quant gemms ------------------------------------------------------ */

/* One weight row by up to GA_MAXT tokens: each weight block is unpacked once,
 * 32 values at a time, into unsigned bytes lined up with the activation's
 * qs[32k .. 32k + 31] and an int16 vector of the scales of those values'
 * sub-blocks; vpmaddubsw and vpmaddwd then give each token's scaled int32
 * sums. The q4_K/q5_K mins and the q6_K offset of 32 come from the
 * activation's block sums. */

#define GA_MAXT 4

enum ga_kind { GA_Q4_K, GA_Q5_K, GA_Q6_K };

/* Values 32k .. 32k + 31 of a K-quant block as unsigned bytes, and their scales. */
static inline __m256i ga_values(enum ga_kind kind, const void *blk, int k, __m256i sc_lo, __m256i sc_hi,
                                __m256i *sc) {
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        if (kind == GA_Q6_K) {
                const struct lmp_block_q6_K *x = blk;
                const int h = k / 4, q = k % 4;
                const __m256i l = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32 * (q & 1)));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                const __m256i lo = q < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * q), _mm256_set1_epi8(3));
                *sc = _mm256_shuffle_epi8(h ? sc_hi : sc_lo, pick16(2 * q, 2 * q + 1));
                return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
        }
        /* q4_K and q5_K share the nibble layout */
        const uint8_t *qs = kind == GA_Q4_K ? ((const struct lmp_block_q4_K *)blk)->qs
                                            : ((const struct lmp_block_q5_K *)blk)->qs;
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * (k / 2)));
        __m256i v = k & 1 ? _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4) : _mm256_and_si256(bits, m4);
        if (kind == GA_Q5_K) {
                const __m256i hb = _mm256_loadu_si256((const __m256i *)((const struct lmp_block_q5_K *)blk)->qh);
                const __m256i h = _mm256_and_si256(_mm256_srli_epi16(hb, k), _mm256_set1_epi8(1));
                v = _mm256_or_si256(v, _mm256_slli_epi16(h, 4));
        }
        (void)sc_hi;
        *sc = _mm256_shuffle_epi8(sc_lo, pick16(k, k));
        return v;
}

static inline __attribute__((always_inline)) void
gemm_row_avx2(enum ga_kind kind, int T, int nb, const uint8_t *x, const uint8_t *y, size_t by, float *s, size_t ld) {
        const size_t bsz = kind == GA_Q4_K ? sizeof(struct lmp_block_q4_K)
                         : kind == GA_Q5_K ? sizeof(struct lmp_block_q5_K) : sizeof(struct lmp_block_q6_K);
        __m256 acc[GA_MAXT];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                acc[t] = _mm256_setzero_ps();
        for (int i = 0; i < nb; i++) {
                const void *blk = x + (size_t)i * bsz;
                const struct lmp_block_q8_K *yb[GA_MAXT];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                        yb[t] = (const struct lmp_block_q8_K *)(y + (size_t)t * by) + i;
                __m256i sc_lo, sc_hi, corr;     /* corr: mins by sub-block of 16, or -32 * scales */
                float d, dmin = 0.0f;
                if (kind == GA_Q6_K) {
                        const struct lmp_block_q6_K *b = blk;
                        const __m256i all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
                        sc_lo = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(all));
                        sc_hi = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(all, 1));
                        corr = _mm256_mullo_epi16(all, _mm256_set1_epi16(-32));
                        d = h2f(b->d);
                } else {
                        const struct lmp_block_q4_K *b = blk;   /* q5_K starts with the same fields */
                        const __m256i ms = scales_mins_k4(b->scales);
                        sc_lo = sc_hi = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms));
                        const __m256i mins = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(ms, 1));
                        corr = _mm256_shuffle_epi8(mins, _mm256_set_epi8(15, 14, 15, 14, 13, 12, 13, 12, 11, 10, 11, 10,
                                                                        9, 8, 9, 8, 7, 6, 7, 6, 5, 4, 5, 4, 3, 2, 3, 2,
                                                                        1, 0, 1, 0));
                        d = h2f(b->d);
                        dmin = h2f(b->dmin);
                }
                __m256i sumi[GA_MAXT];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                        sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                        __m256i sc;
                        const __m256i v = ga_values(kind, blk, k, sc_lo, sc_hi, &sc);
#pragma GCC unroll 4
                        for (int t = 0; t < T; t++) {
                                const __m256i p = _mm256_maddubs_epi16(v, _mm256_loadu_si256((const __m256i *)(yb[t]->qs + 32 * k)));
                                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, sc));
                        }
                }
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        const __m256i bs = _mm256_loadu_si256((const __m256i *)yb[t]->bsums);
                        if (kind == GA_Q6_K)
                                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(corr, bs));
                        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * yb[t]->d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                        if (kind != GA_Q6_K)
                                acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * yb[t]->d),
                                                          _mm256_cvtepi32_ps(_mm256_madd_epi16(corr, bs)), acc[t]);
                }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                s[(size_t)t * ld] = hsum_f32x8(acc[t]);
}

#define GA_GEMM(name, kind, block_t)                                                                             \
void lmp_gemm_##name##_avx2(int n, int nr, int nt, const void *restrict vx, size_t bx,                          \
                            const void *restrict vy, size_t by, float *restrict s, size_t ld) {                 \
        const uint8_t *x = vx, *y = vy;                                                                          \
        const int nb = n / LMP_QK_K;                                                                             \
        for (int r = 0; r < nr; r++) {                                                                           \
                const uint8_t *xr = x + (size_t)r * bx;                                                          \
                for (int t0 = 0; t0 < nt; t0 += GA_MAXT) {                                                       \
                        const uint8_t *yt = y + (size_t)t0 * by;                                                 \
                        float *st = s + (size_t)t0 * ld + (size_t)r;                                             \
                        switch (nt - t0 < GA_MAXT ? nt - t0 : GA_MAXT) {                                         \
                        case 1: gemm_row_avx2(kind, 1, nb, xr, yt, by, st, ld); break;                          \
                        case 2: gemm_row_avx2(kind, 2, nb, xr, yt, by, st, ld); break;                          \
                        case 3: gemm_row_avx2(kind, 3, nb, xr, yt, by, st, ld); break;                          \
                        default: gemm_row_avx2(kind, 4, nb, xr, yt, by, st, ld); break;                         \
                        }                                                                                        \
                }                                                                                                \
        }                                                                                                        \
}

GA_GEMM(q4_K_q8_K, GA_Q4_K, struct lmp_block_q4_K)
GA_GEMM(q5_K_q8_K, GA_Q5_K, struct lmp_block_q5_K)
GA_GEMM(q6_K_q8_K, GA_Q6_K, struct lmp_block_q6_K)

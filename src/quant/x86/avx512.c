/* AVX-512 kernels (F, BW, VL and VNNI): every vec_dot, the activation
 * quantizers, the f16/bf16 conversions, and the gemm tiles of prompts (their
 * own sections below say how they are laid out). Compiled on its own with the
 * matching -m flags and only called when cpu.c has seen those features.
 * 32-value blocks are taken two at a time in one 512-bit register and
 * multiplied with vpdpbusd (unsigned weight bytes times signed activation
 * bytes, summed into int32, so no 16-bit saturation); signed weights are
 * made unsigned by a bias that is subtracted as bias * sum(y). K-quants
 * multiply bytes into int16 pairs (vpmaddubsw, which cannot saturate for
 * weights of at most 6 bits) and apply the sub-block scales with vpdpwssd;
 * their constant offsets (Q3_K's 4, Q6_K's 32) are removed through the
 * activation's block sums. Integer parts are exact; results differ from the
 * scalar twins only in the order of float additions. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/x86/common.h"

static inline __m512i join256(__m256i lo, __m256i hi) {
        return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __m512 halves_ps(float lo, float hi) {
        return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(lo), _mm512_set1_ps(hi));
}

/* Bit 4 of each of 32 five-bit values, from the 32-bit qh field. */
static inline __m256i high_bits32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return _mm256_maskz_set1_epi8((__mmask32)v, 0x10);
}

/* ---- floats ------------------------------------------------------------ */

static inline __m512 load_f16x16(const lmp_fp16 *p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16x16(const lmp_bf16 *p) {
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

void lmp_vec_dot_f32_f32_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const float *x = vx, *y = vy;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 64 <= n; i += 64) {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
        }
        for (; i + 16 <= n; i += 16)
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        if (i < n) {
                const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
        }
        *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* 256-bit conversions: on the AMD cores we measured, vcvtph2ps on a full
 * 512-bit register costs twice its two halves, and the 512-bit loop ran at
 * 32 GB/s in cache against 44 for this one. */
void lmp_vec_dot_f16_f16_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_fp16 *x = vx, *y = vy;
        __m256 a[8];
        for (int k = 0; k < 8; k++)
                a[k] = _mm256_setzero_ps();
        int i = 0;
        for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                        a[k] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8 * k))),
                                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8 * k))), a[k]);
        }
        for (; i + 8 <= n; i += 8)
                a[0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                       _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i))), a[0]);
        for (int k = 0; k < 4; k++)
                a[k] = _mm256_add_ps(a[k], a[k + 4]);
        float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
        for (; i < n; i++)
                sum += h2f(x[i]) * h2f(y[i]);
        *s = sum;
}

void lmp_vec_dot_bf16_bf16_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_bf16 *x = vx, *y = vy;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 64 <= n; i += 64) {
                a0 = _mm512_fmadd_ps(load_bf16x16(x + i), load_bf16x16(y + i), a0);
                a1 = _mm512_fmadd_ps(load_bf16x16(x + i + 16), load_bf16x16(y + i + 16), a1);
                a2 = _mm512_fmadd_ps(load_bf16x16(x + i + 32), load_bf16x16(y + i + 32), a2);
                a3 = _mm512_fmadd_ps(load_bf16x16(x + i + 48), load_bf16x16(y + i + 48), a3);
        }
        for (; i + 16 <= n; i += 16)
                a0 = _mm512_fmadd_ps(load_bf16x16(x + i), load_bf16x16(y + i), a0);
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (; i < n; i++)
                sum += lmp_bf16_to_f32(x[i]) * lmp_bf16_to_f32(y[i]);
        *s = sum;
}

void lmp_to_float_f32_avx512(const void *restrict x, float *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

void lmp_from_float_f32_avx512(const float *restrict x, void *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

void lmp_to_float_f16_avx512(const void *restrict vx, float *restrict y, int64_t n) {
        const lmp_fp16 *x = vx;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
                _mm512_storeu_ps(y + i, load_f16x16(x + i));
        for (; i < n; i++)
                y[i] = h2f(x[i]);
}

void lmp_from_float_f16_avx512(const float *restrict x, void *restrict vy, int64_t n) {
        lmp_fp16 *y = vy;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
                _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++)
                y[i] = lmp_f32_to_fp16(x[i]);
}

void lmp_to_float_bf16_avx512(const void *restrict vx, float *restrict y, int64_t n) {
        const lmp_bf16 *x = vx;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
                _mm512_storeu_ps(y + i, load_bf16x16(x + i));
        for (; i < n; i++)
                y[i] = lmp_bf16_to_f32(x[i]);
}

/* Round to nearest even on bit 16; NaNs kept quiet, as in fp16.h. (Not
 * vcvtneps2bf16, which flushes subnormal inputs to zero.) */
void lmp_from_float_bf16_avx512(const float *restrict x, void *restrict vy, int64_t n) {
        lmp_bf16 *y = vy;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
                const __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + i));
                const __m512i hi = _mm512_srli_epi32(u, 16);
                const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
                __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
                const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                              _mm512_set1_epi32(0x7f800000));
                r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(64));
                _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(r));
        }
        for (; i < n; i++)
                y[i] = lmp_f32_to_bf16(x[i]);
}

/* ---- activation quantizers ------------------------------------------------ */

/* One 32-value block exactly as the AVX2 quantizer (and llama.cpp's): scale
 * 127/amax, round half to even. */
static inline __m256i q8_block(const float *x, float *ret_d, int *ret_sum) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        *ret_d = max / 127.0f;
        const __m512 mul = _mm512_set1_ps(max != 0.0f ? 127.0f / max : 0.0f);
        const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        *ret_sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        return _mm256_set_m128i(_mm512_cvtsepi32_epi8(q1), _mm512_cvtsepi32_epi8(q0));
}

void lmp_from_float_q8_0_avx512(const float *restrict x, void *restrict vy, int64_t n) {
        from_float_q8_0(x, vy, n, q8_block);
}

void lmp_from_float_q8_1_avx512(const float *restrict x, void *restrict vy, int64_t n) {
        from_float_q8_1(x, vy, n, q8_block);
}

/* Bit for bit the scalar Q8_K quantizer (see ref.c and avx2.c). */
void lmp_from_float_q8_K_avx512(const float *restrict x, void *restrict vy, int64_t n) {
        struct lmp_block_q8_K *y = vy;
        for (int64_t i = 0; i < n / LMP_QK_K; i++, x += LMP_QK_K) {
                __m512 am = _mm512_setzero_ps();
                for (int j = 0; j < LMP_QK_K; j += 16)
                        am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
                const float amax = _mm512_reduce_max_ps(am);
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
                const __m512 mul = _mm512_set1_ps(iscale);
                int16_t bsums[LMP_QK_K / 16];
                for (int j = 0; j < LMP_QK_K; j += 16) {
                        __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), mul),
                                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                        q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
                        bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
                        _mm_storeu_si128((__m128i *)(y[i].qs + j), _mm512_cvtsepi32_epi8(q));
                }
                memcpy((uint8_t *)&y[i] + offsetof(struct lmp_block_q8_K, bsums), bsums, sizeof(bsums));
                y[i].d = 1.0f / iscale;
        }
}

/* ---- 32-value blocks ------------------------------------------------------ */

/* Each weight block as 32 unsigned bytes; the dot subtracts BIAS * sum(y). */
#define UNPACK_Q4_0(b) nibbles32((b)->qs)
#define UNPACK_Q4_1(b) nibbles32((b)->qs)
#define UNPACK_Q5_0(b) _mm256_or_si256(nibbles32((b)->qs), high_bits32((b)->qh))
#define UNPACK_Q5_1(b) _mm256_or_si256(nibbles32((b)->qs), high_bits32((b)->qh))
#define UNPACK_Q8_0(b) _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b)->qs), _mm256_set1_epi8((char)0x80))
/* Adds the offset term of Q4_1/Q5_1 (m * s per block) to summs. For the
 * others it is no statement at all: adding 0.0f cannot be optimized away
 * (-0 + 0 is +0) and would put a float add latency chain in the loop. */
#define MS_NONE(xb, yb) ((void)0)
#define MS_Q8_1(xb, yb) (summs += h2f((xb)->m) * h2f((yb)->s))

#define DOT32(name, xtype, ytype, UNPACK, BIAS, MS)                                                           \
void lmp_vec_dot_##name##_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) { \
        const struct xtype *x = vx;                                                                            \
        const struct ytype *y = vy;                                                                            \
        const int nb = n / 32;                                                                                 \
        __m512 acc = _mm512_setzero_ps();                                                                      \
        float summs = 0.0f;                                                                                    \
        int i = 0;                                                                                             \
        __m512 acc1 = _mm512_setzero_ps();                                                                     \
        const __m512i lo2 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);                  \
        const __m512i hi2 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);                  \
        for (; i + 3 < nb; i += 4) {                                                                           \
                const __m512i qx0 = join256(UNPACK(&x[i]), UNPACK(&x[i + 1]));                                 \
                const __m512i qx1 = join256(UNPACK(&x[i + 2]), UNPACK(&x[i + 3]));                             \
                const __m512i qy0 = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),                      \
                                            _mm256_loadu_si256((const __m256i *)y[i + 1].qs));                 \
                const __m512i qy1 = join256(_mm256_loadu_si256((const __m256i *)y[i + 2].qs),                  \
                                            _mm256_loadu_si256((const __m256i *)y[i + 3].qs));                 \
                __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx0, qy0);                            \
                __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx1, qy1);                            \
                if (BIAS) {                                                                                    \
                        p0 = _mm512_sub_epi32(p0, _mm512_dpbusd_epi32(_mm512_setzero_si512(),                  \
                                                                      _mm512_set1_epi8((char)(BIAS)), qy0));   \
                        p1 = _mm512_sub_epi32(p1, _mm512_dpbusd_epi32(_mm512_setzero_si512(),                  \
                                                                      _mm512_set1_epi8((char)(BIAS)), qy1));   \
                }                                                                                              \
                /* the four blocks' scale products, converted together */                                     \
                const __m128i xd = _mm_setr_epi16((short)x[i].d, (short)x[i + 1].d, (short)x[i + 2].d,         \
                                                  (short)x[i + 3].d, 0, 0, 0, 0);                              \
                const __m128i yd = _mm_setr_epi16((short)y[i].d, (short)y[i + 1].d, (short)y[i + 2].d,         \
                                                  (short)y[i + 3].d, 0, 0, 0, 0);                              \
                const __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(xd), _mm_cvtph_ps(yd)));      \
                acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo2, d4), _mm512_cvtepi32_ps(p0), acc);            \
                acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi2, d4), _mm512_cvtepi32_ps(p1), acc1);          \
                for (int k = 0; k < 4; k++)                                                                    \
                        MS(&x[i + k], &y[i + k]);                                                     \
        }                                                                                                      \
        acc = _mm512_add_ps(acc, acc1);                                                                        \
        for (; i + 1 < nb; i += 2) {                                                                           \
                const __m512i qx = join256(UNPACK(&x[i]), UNPACK(&x[i + 1]));                                  \
                const __m512i qy = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),                       \
                                           _mm256_loadu_si256((const __m256i *)y[i + 1].qs));                  \
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, qy);                               \
                if (BIAS)                                                                                      \
                        p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(),                    \
                                                                    _mm512_set1_epi8((char)(BIAS)), qy));      \
                const __m512 d = halves_ps(h2f(x[i].d) * h2f(y[i].d),                  \
                                           h2f(x[i + 1].d) * h2f(y[i + 1].d));         \
                acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);                                          \
                MS(&x[i], &y[i]);                                                                     \
                MS(&x[i + 1], &y[i + 1]);                                                             \
        }                                                                                                      \
        __m256 acc8 = _mm256_setzero_ps();                                                                     \
        for (; i < nb; i++) {                                                                                  \
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);                               \
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), UNPACK(&x[i]), qy);                    \
                if (BIAS)                                                                                      \
                        p = _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(),                    \
                                                                    _mm256_set1_epi8((char)(BIAS)), qy));      \
                const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));           \
                acc8 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc8);                                        \
                MS(&x[i], &y[i]);                                                                     \
        }                                                                                                      \
        *s = _mm512_reduce_add_ps(acc) + hsum_f32x8(acc8) + summs;                                            \
}

DOT32(q4_0_q8_0, lmp_block_q4_0, lmp_block_q8_0, UNPACK_Q4_0, 8, MS_NONE)
DOT32(q4_1_q8_1, lmp_block_q4_1, lmp_block_q8_1, UNPACK_Q4_1, 0, MS_Q8_1)
DOT32(q5_0_q8_0, lmp_block_q5_0, lmp_block_q8_0, UNPACK_Q5_0, 16, MS_NONE)
DOT32(q5_1_q8_1, lmp_block_q5_1, lmp_block_q8_1, UNPACK_Q5_1, 0, MS_Q8_1)

/* q8_0 by q8_0: DOT32's loop, with each operand's four scales gathered as
 * one 64-bit integer (four 16-bit loads, shifts and ors in the integer
 * units) where a 16-bit vector insert per block and operand did. Short
 * rows prefetched (common.h, Q8_PF_MAX_BLOCKS). */
static inline __m128i scales4(const struct lmp_block_q8_0 *b) {
        uint64_t v = (uint64_t)b[0].d | (uint64_t)b[1].d << 16 | (uint64_t)b[2].d << 32 | (uint64_t)b[3].d << 48;
        return _mm_cvtsi64_si128((long long)v);
}

void lmp_vec_dot_q8_0_q8_0_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q8_0 *x = vx, *y = vy;
        const int nb = n / 32;
        const __m512i lo2 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m512i hi2 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        __m512 acc = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int i = 0;
        const int pf = nb <= Q8_PF_MAX_BLOCKS;
        for (; i + 3 < nb; i += 4) {
                if (pf) {
                        _mm_prefetch((const char *)&x[i] + 4096, _MM_HINT_T0);
                        _mm_prefetch((const char *)&x[i] + 4096 + 64, _MM_HINT_T0);
                }
                const __m512i qx0 = join256(UNPACK_Q8_0(&x[i]), UNPACK_Q8_0(&x[i + 1]));
                const __m512i qx1 = join256(UNPACK_Q8_0(&x[i + 2]), UNPACK_Q8_0(&x[i + 3]));
                const __m512i qy0 = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),
                                            _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
                const __m512i qy1 = join256(_mm256_loadu_si256((const __m256i *)y[i + 2].qs),
                                            _mm256_loadu_si256((const __m256i *)y[i + 3].qs));
                __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx0, qy0);
                __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx1, qy1);
                p0 = _mm512_sub_epi32(p0, _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, qy0));
                p1 = _mm512_sub_epi32(p1, _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, qy1));
                const __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(scales4(&x[i])),
                                                                    _mm_cvtph_ps(scales4(&y[i]))));
                acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo2, d4), _mm512_cvtepi32_ps(p0), acc);
                acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi2, d4), _mm512_cvtepi32_ps(p1), acc1);
        }
        acc = _mm512_add_ps(acc, acc1);
        __m256 acc8 = _mm256_setzero_ps();
        for (; i < nb; i++) {
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), UNPACK_Q8_0(&x[i]), qy);
                p = _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), qy));
                acc8 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc8);
        }
        *s = _mm512_reduce_add_ps(acc) + hsum_f32x8(acc8);
}

/* ---- K-quants ---------------------------------------------------------- */

static inline __m256i load_bsums(const struct lmp_block_q8_K *y) {
        return _mm256_loadu_si256((const __m256i *)((const uint8_t *)y + offsetof(struct lmp_block_q8_K, bsums)));
}

/* sc16[j] * bsums[j] summed in pairs of sub-blocks: 8 int32 lanes whose
 * total is the scale-weighted sum of the activation's block sums. Kept as a
 * vector so that no horizontal sum is needed per super-block. */
static inline __m256i scaled_bsums(__m256i sc16, const struct lmp_block_q8_K *y) {
        return _mm256_madd_epi16(sc16, load_bsums(y));
}

/* Index vectors for vpermw: int16 lane l of a 64-value register takes the
 * scale of sub-block base + l / 8 (16-value sub-blocks) ... */
static inline __m512i idx_by8(int base) {
        return _mm512_add_epi16(_mm512_set1_epi16((short)base),
                                _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                                   15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3));
}

/* ... or of sub-block base + l / 16 (32-value sub-blocks). */
static inline __m512i idx_by16(int base) {
        return _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16((short)base), _mm512_set1_epi16((short)(base + 1)));
}

/* Adds scale-weighted products of 64 unsigned weight bytes and 64 activation
 * bytes into 16 int32 lanes. */
static inline __m512i dot64(__m512i acc, __m512i qx, const int8_t *q8, __m512i scales16) {
        const __m512i p16 = _mm512_maddubs_epi16(qx, _mm512_loadu_si512((const void *)q8));
        return _mm512_dpwssd_epi32(acc, p16, scales16);
}

/* Q4_K/Q5_K scales: 8 scales then 8 mins as 16 int16. The 12 packed bytes
 * are unpacked in two 64-bit registers (scales 0-3 and mins 0-3 are the low
 * 6 bits of bytes 0-7; scales and mins 4-7 take their low 4 bits from bytes
 * 8-11 and their high 2 from the top bits of bytes 0-7), with no round trip
 * through memory. */
static inline __m256i scales_mins_k4(const uint8_t *q) {
        uint64_t a;
        uint32_t c;
        memcpy(&a, q, 8);
        memcpy(&c, q + 8, 4);
        const uint64_t lo = a & 0x3f3f3f3f3f3f3f3full;                         /* s0-3, m0-3 */
        const uint64_t c2 = (uint64_t)c | ((uint64_t)(c >> 4) << 32);
        const uint64_t hi = (c2 & 0x0f0f0f0f0f0f0f0full) | ((a >> 2) & 0x3030303030303030ull); /* s4-7, m4-7 */
        const __m128i v = _mm_set_epi64x((long long)hi, (long long)lo);
        return _mm256_cvtepu8_epi16(_mm_shuffle_epi32(v, _MM_SHUFFLE(3, 1, 2, 0)));
}

/* mins[j / 2] for the 16 sub-blocks of 16, from scales_mins_k4's vector. */
static inline __m256i mins_by16(__m256i ms) {
        const __m256i idx = _mm256_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
        return _mm256_permutexvar_epi16(idx, ms);
}

/* The scaled int32 sums of one q4_K block against its activation block:
 * each 32 weight bytes are broadcast to both halves of a register, the high
 * half shifted so that one mask gives the low nibbles (sub-block 2k) then
 * the high ones (2k + 1), matching 64 consecutive activation bytes. Two
 * independent dpwssd chains halve the latency of the sum. */
static inline __m512i q4_K_sumi(const struct lmp_block_q4_K *x, const int8_t *q8, __m512i sc, const __m512i idx[4]) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        __m512i p[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
                const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * k)));
                const __m512i w = _mm512_and_si512(_mm512_mask_srli_epi16(b, 0xffff0000u, b, 4), m4);
                p[k] = _mm512_maddubs_epi16(w, _mm512_loadu_si512((const void *)(q8 + 64 * k)));
        }
        const __m512i a = _mm512_dpwssd_epi32(_mm512_madd_epi16(p[0], _mm512_permutexvar_epi16(idx[0], sc)), p[1],
                                              _mm512_permutexvar_epi16(idx[1], sc));
        const __m512i b = _mm512_dpwssd_epi32(_mm512_madd_epi16(p[2], _mm512_permutexvar_epi16(idx[2], sc)), p[3],
                                              _mm512_permutexvar_epi16(idx[3], sc));
        return _mm512_add_epi32(a, b);
}

/* Decode's hot kernel: two blocks per step with their own accumulators, the
 * scale indexes hoisted, the mins applied as a vector per block and summed
 * across lanes once at the end. */
void lmp_vec_dot_q4_K_q8_K_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const int nb = n / LMP_QK_K;
        const __m512i idx[4] = { idx_by16(0), idx_by16(2), idx_by16(4), idx_by16(6) };
        __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };
        __m256 acc_m[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
        int i = 0;
        for (; i + 1 < nb; i += 2) {
#pragma GCC unroll 2
                for (int u = 0; u < 2; u++) {
                        const struct lmp_block_q4_K *xb = &x[i + u];
                        const struct lmp_block_q8_K *yb = &y[i + u];
                        const __m256i ms = scales_mins_k4(xb->scales);
                        const __m512i sumi = q4_K_sumi(xb, yb->qs, _mm512_castsi256_si512(ms), idx);
                        acc_m[u] = _mm256_fmadd_ps(_mm256_set1_ps(yb->d * h2f(xb->dmin)),
                                                   _mm256_cvtepi32_ps(scaled_bsums(mins_by16(ms), yb)), acc_m[u]);
                        acc[u] = _mm512_fmadd_ps(_mm512_set1_ps(yb->d * h2f(xb->d)), _mm512_cvtepi32_ps(sumi), acc[u]);
                }
        }
        if (i < nb) {
                const __m256i ms = scales_mins_k4(x[i].scales);
                const __m512i sumi = q4_K_sumi(&x[i], y[i].qs, _mm512_castsi256_si512(ms), idx);
                acc_m[0] = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].dmin)),
                                           _mm256_cvtepi32_ps(scaled_bsums(mins_by16(ms), &y[i])), acc_m[0]);
                acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * h2f(x[i].d)), _mm512_cvtepi32_ps(sumi), acc[0]);
        }
        const __m512 t = _mm512_sub_ps(_mm512_add_ps(acc[0], acc[1]),
                                       _mm512_zextps256_ps512(_mm256_add_ps(acc_m[0], acc_m[1])));
        *s = _mm512_reduce_add_ps(t);
}

void lmp_vec_dot_q5_K_q8_K_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i m1 = _mm512_set1_epi8(1);
        __m512 acc = _mm512_setzero_ps();
        __m256 acc_m = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const float dmin = y[i].d * h2f(x[i].dmin);
                const __m256i ms = scales_mins_k4(x[i].scales);
                acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(scaled_bsums(mins_by16(ms), &y[i])), acc_m);
                const __m512i sc = _mm512_castsi256_si512(ms);
                const __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].qh);
                /* bit 2j of qh -> the low-nibble half, bit 2j+1 -> the high half */
                __m512i h = join256(hb, _mm256_srli_epi16(hb, 1));
                __m512i sumi = _mm512_setzero_si512();
                for (int j = 0; j < 4; j++) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
                        const __m512i b = _mm512_and_si512(join256(bits, _mm256_srli_epi16(bits, 4)), m4);
                        const __m512i q = _mm512_or_si512(b, _mm512_slli_epi16(_mm512_and_si512(h, m1), 4));
                        h = _mm512_srli_epi16(h, 2);
                        sumi = dot64(sumi, q, y[i].qs + 64 * j, _mm512_permutexvar_epi16(idx_by16(2 * j), sc));
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
        }
        *s = _mm512_reduce_add_ps(acc) - hsum_f32x8(acc_m);
}

/* The scaled int32 sums of one q6_K block against its activation block,
 * without the offset of 32. Each 64 bytes of ql give the low nibbles of
 * values 128j .. 128j + 63 and the high nibbles of the next 64; the 32
 * bytes of qh, broadcast to both halves with the high half shifted right by
 * 2, give bits 4-5 of the first (qh << 4 & 0x30) and of the second (qh &
 * 0x30). One vpternlogd merges each pair. */
static inline __m512i q6_K_sumi(const struct lmp_block_q6_K *x, const int8_t *q8, __m512i sc, const __m512i idx[4]) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i m30 = _mm512_set1_epi8(0x30);
        __m512i p[4];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
                const __m512i l = _mm512_loadu_si512((const void *)(x->ql + 64 * j));
                const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * j)));
                const __m512i h = _mm512_mask_srli_epi16(hb, 0xffff0000u, hb, 2);
                /* A | (B & C) */
                const __m512i q01 = _mm512_ternarylogic_epi32(_mm512_and_si512(l, m4), _mm512_slli_epi16(h, 4), m30, 0xf8);
                const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), h, m30, 0xf8);
                p[2 * j] = _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)(q8 + 128 * j)));
                p[2 * j + 1] = _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(q8 + 128 * j + 64)));
        }
        const __m512i a = _mm512_dpwssd_epi32(_mm512_madd_epi16(p[0], _mm512_permutexvar_epi16(idx[0], sc)), p[1],
                                              _mm512_permutexvar_epi16(idx[1], sc));
        const __m512i b = _mm512_dpwssd_epi32(_mm512_madd_epi16(p[2], _mm512_permutexvar_epi16(idx[2], sc)), p[3],
                                              _mm512_permutexvar_epi16(idx[3], sc));
        return _mm512_add_epi32(a, b);
}

/* Two blocks per step with their own accumulators; the offset of 32 comes
 * in as -32 * (scales . block sums of 16) in the low half of each block's
 * integer sum. */
void lmp_vec_dot_q6_K_q8_K_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q6_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const int nb = n / LMP_QK_K;
        const __m512i idx[4] = { idx_by8(0), idx_by8(4), idx_by8(8), idx_by8(12) };
        __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };
        int i = 0;
        for (; i < nb; i += 2) {
                const int nu = i + 1 < nb ? 2 : 1;
#pragma GCC unroll 2
                for (int u = 0; u < nu; u++) {
                        const struct lmp_block_q6_K *xb = &x[i + u];
                        const struct lmp_block_q8_K *yb = &y[i + u];
                        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)xb->scales));
                        const __m512i off = _mm512_zextsi256_si512(_mm256_slli_epi32(scaled_bsums(sc16, yb), 5));
                        const __m512i sumi = _mm512_sub_epi32(q6_K_sumi(xb, yb->qs, _mm512_castsi256_si512(sc16), idx), off);
                        acc[u] = _mm512_fmadd_ps(_mm512_set1_ps(yb->d * h2f(xb->d)), _mm512_cvtepi32_ps(sumi), acc[u]);
                }
        }
        *s = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

void lmp_vec_dot_q2_K_q8_K_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q2_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m512i m3 = _mm512_set1_epi8(3);
        __m512 acc = _mm512_setzero_ps();
        __m256 acc_m = _mm256_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                const float dmin = y[i].d * h2f(x[i].dmin);
                const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
                const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f)));
                const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
                acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(scaled_bsums(mn16, &y[i])), acc_m);
                const __m512i sc = _mm512_castsi256_si512(sc16);
                __m512i sumi = _mm512_setzero_si512();
                for (int j = 0; j < 2; j++) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
                        const __m512i b = join256(bits, _mm256_srli_epi16(bits, 2));
                        const int8_t *q8 = y[i].qs + 128 * j;
                        sumi = dot64(sumi, _mm512_and_si512(b, m3), q8, _mm512_permutexvar_epi16(idx_by8(8 * j), sc));
                        sumi = dot64(sumi, _mm512_and_si512(_mm512_srli_epi16(b, 4), m3), q8 + 64,
                                     _mm512_permutexvar_epi16(idx_by8(8 * j + 4), sc));
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
        }
        *s = _mm512_reduce_add_ps(acc) - hsum_f32x8(acc_m);
}

void lmp_vec_dot_q3_K_q8_K_avx512(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q3_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        const __m512i m3 = _mm512_set1_epi8(3);
        const __m512i m4 = _mm512_set1_epi8(4);
        __m512 acc = _mm512_setzero_ps();
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const float d = y[i].d * h2f(x[i].d);
                uint32_t a[4];
                memcpy(a, x[i].scales, 12);
                const uint32_t t = a[2];
                a[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
                a[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
                a[0] = (a[0] & 0x0f0f0f0f) | (((t >> 0) & 0x03030303) << 4);
                a[1] = (a[1] & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
                const __m256i sc16 = _mm256_cvtepi8_epi16(
                        _mm_sub_epi8(_mm_set_epi32((int)a[3], (int)a[2], (int)a[1], (int)a[0]), _mm_set1_epi8(32)));
                const __m512i sc = _mm512_castsi256_si512(sc16);
                /* weights are (low 2 bits | high bit << 2) - 4 */
                __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(),
                                                                       _mm256_slli_epi32(scaled_bsums(sc16, &y[i]), 2)));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)x[i].hmask);
                __m512i h = join256(hb, _mm256_srli_epi16(hb, 1));
                for (int j = 0; j < 2; j++) {
                        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
                        const __m512i b = join256(bits, _mm256_srli_epi16(bits, 2));
                        const int8_t *q8 = y[i].qs + 128 * j;
                        __m512i q = _mm512_or_si512(_mm512_and_si512(b, m3), _mm512_and_si512(_mm512_slli_epi16(h, 2), m4));
                        h = _mm512_srli_epi16(h, 2);
                        sumi = dot64(sumi, q, q8, _mm512_permutexvar_epi16(idx_by8(8 * j), sc));
                        q = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(b, 4), m3),
                                            _mm512_and_si512(_mm512_slli_epi16(h, 2), m4));
                        h = _mm512_srli_epi16(h, 2);
                        sumi = dot64(sumi, q, q8 + 64, _mm512_permutexvar_epi16(idx_by8(8 * j + 4), sc));
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
        }
        *s = _mm512_reduce_add_ps(acc);
}

/* ---- gemm: 32-value blocks times q8_0 activations ----------------------- */

/* A register tile is 16 weight rows, one per int32 lane, by up to
 * GEMM_TOKS activation rows, one float accumulator each. The blocks of 16
 * rows are transposed, GEMM_KC blocks at a time, into a packed copy where
 * register c of a block holds bytes 4c..4c+3 of every row; vpdpbusd
 * multiplies it by those four activation bytes of one token, broadcast
 * from memory, and the eight products of a block land in the row's own
 * lane: no horizontal sums, and the block's float work (convert, scale,
 * accumulate) is three instructions for 16 rows. A packed copy serves up to
 * GEMM_TGROUP tokens. The weights are made unsigned by a bias (q8_0: +128,
 * q4_0: +8, q5_0: +16) taken out again through each activation block's
 * sum, which, with the activation scales, is tabled once per call for a
 * group of tokens and a pass of blocks. */
#define GEMM_ROWS 16
#define GEMM_TOKS 16
/* GEMM_TGROUP, GEMM_KC, enum w32 and struct ytab: x86/common.h. */

struct wpack {
        __m512i a[GEMM_KC][8];   /* value + bias, transposed */
        __m512 d[GEMM_KC];       /* the 16 rows' scales */
};

/* 16 bytes at offset off of each of 16 rows, as 4 registers: dword lane r
 * of v[c] is bytes 4c..4c+3 of row r. */
static inline __attribute__((always_inline)) void transpose16x16(const uint8_t *const rows[GEMM_ROWS], size_t off,
                                                                 __m512i v[4]) {
        __m512i z[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
                z[g] = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[g] + off)));
                z[g] = _mm512_inserti32x4(z[g], _mm_loadu_si128((const __m128i *)(rows[g + 4] + off)), 1);
                z[g] = _mm512_inserti32x4(z[g], _mm_loadu_si128((const __m128i *)(rows[g + 8] + off)), 2);
                z[g] = _mm512_inserti32x4(z[g], _mm_loadu_si128((const __m128i *)(rows[g + 12] + off)), 3);
        }
        /* 128-bit lane k of z[g] is row 4k + g: a 4x4 dword transpose in
         * each lane puts row 4k + g at dword lane 4k + g. */
        const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
        const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
        v[0] = _mm512_unpacklo_epi64(t0, t2);
        v[1] = _mm512_unpackhi_epi64(t0, t2);
        v[2] = _mm512_unpacklo_epi64(t1, t3);
        v[3] = _mm512_unpackhi_epi64(t1, t3);
}

static inline int w32_bias(enum w32 k) {
        return k == W_Q4_0 ? 8 : k == W_Q5_0 ? 16 : 128;
}

/* Block i of the 16 rows as 8 registers of unsigned bytes (value + bias),
 * and the rows' scales. idx: each row's byte offset from rows[0]; a row's
 * blocks are bstride bytes apart (one block in a file's rows, 16 in a
 * q4_0_r16 or q5_0_r16 group). */
static inline __attribute__((always_inline)) void unpack16(enum w32 kind, const uint8_t *const rows[GEMM_ROWS],
                                                           __m512i idx, int i, size_t bstride, __m512i a[8],
                                                           __m512 *dx) {
        const size_t off = (size_t)i * bstride;
        const __m512i h = _mm512_i32gather_epi32(idx, rows[0] + off, 1);
        *dx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
        if (kind == W_Q8_0) {
                const __m512i flip = _mm512_set1_epi8((char)0x80);
                transpose16x16(rows, off + offsetof(struct lmp_block_q8_0, qs), a);
                transpose16x16(rows, off + offsetof(struct lmp_block_q8_0, qs) + 16, a + 4);
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++)
                        a[c] = _mm512_xor_si512(a[c], flip);
                return;
        }
        const size_t qs = kind == W_Q4_0 ? offsetof(struct lmp_block_q4_0, qs) : offsetof(struct lmp_block_q5_0, qs);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        __m512i p[4];
        transpose16x16(rows, off + qs, p);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
                a[c] = _mm512_and_si512(p[c], m4);
                a[c + 4] = _mm512_and_si512(_mm512_srli_epi16(p[c], 4), m4);
        }
        if (kind == W_Q5_0) {
                /* Value 4c + j takes bit 4 from bit 4c + j of qh: byte c / 2
                 * of the row's qh, spread over the lane, tested bit by bit. */
                const __m512i qh = _mm512_i32gather_epi32(idx, rows[0] + off + offsetof(struct lmp_block_q5_0, qh), 1);
                const __m512i sixteen = _mm512_set1_epi8(0x10);
                const __m512i lane = _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0);
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++) {
                        /* every byte of dword l (of 4 in a 128-bit lane) <- byte 4l + c / 2 */
                        const __m512i pick = _mm512_add_epi32(lane, _mm512_set1_epi32(0x01010101 * (c >> 1)));
                        const __m512i sel = _mm512_set1_epi32((int)(0x08040201u << (4 * (c & 1))));
                        const __mmask64 k = _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, pick), sel);
                        a[c] = _mm512_mask_add_epi8(a[c], k, a[c], sixteen);
                }
        }
}

/* The table entries of nv <= 16 consecutive activation blocks: scales, and
 * -bias times the sums of their quants. The sums come from vpdpbusd with
 * ones, two blocks per register, reduced across registers so that lane j
 * ends up with block j; blocks past nv are neither read nor stored. */
static inline void ytab16(const struct lmp_block_q8_0 *yb, int nv, int bias, float *d, int32_t *corr) {
        const __mmask16 m = (__mmask16)((1u << nv) - 1);
        const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                  _mm512_set1_epi32((int)sizeof(*yb)));
        const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, stride, yb, 1);
        _mm512_mask_storeu_ps(d, m, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)));
        const __m512i ones = _mm512_set1_epi8(1);
        __m512i r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
                const __mmask32 m0 = 2 * i < nv ? ~(__mmask32)0 : 0, m1 = 2 * i + 1 < nv ? ~(__mmask32)0 : 0;
                const __m512i q = join256(_mm256_maskz_loadu_epi8(m0, yb[2 * i].qs), _mm256_maskz_loadu_epi8(m1, yb[2 * i + 1].qs));
                r[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
        }
        /* 128-bit lane k of v[g] holds the sums of lane k of r[4g..4g+3] */
        __m512i v[2];
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
                const __m512i *rg = r + 4 * g;
                const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi32(rg[0], rg[1]), _mm512_unpackhi_epi32(rg[0], rg[1]));
                const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi32(rg[2], rg[3]), _mm512_unpackhi_epi32(rg[2], rg[3]));
                v[g] = _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
        }
        /* lanes 0,1 of r[i] are block 2i, lanes 2,3 block 2i+1: add the
         * halves, giving blocks 0 2 4 6 | 1 3 5 7 | 8 10 12 14 | 9 11 13 15 */
        const __m512i sum = _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                             _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
        const __m512i order = _mm512_set_epi32(15, 11, 14, 10, 13, 9, 12, 8, 7, 3, 6, 2, 5, 1, 4, 0);
        _mm512_mask_storeu_epi32(corr, m, _mm512_mullo_epi32(_mm512_permutexvar_epi32(order, sum), _mm512_set1_epi32(-bias)));
}

/* A packed tile (nbk blocks) by NT tokens (their blocks from k0, their
 * table rows from tab_t), stored (first pass) or added into s, lanes m. */
static inline __attribute__((always_inline)) void tile32(const int NT, const struct wpack *wp, int k0, int nbk,
                                                         const uint8_t *y, size_t by, const struct ytab *tab, int tab_t,
                                                         float *s, size_t ld, __mmask16 m, int add) {
        __m512 acc[GEMM_TOKS];
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
                acc[t] = _mm512_setzero_ps();
        for (int b = 0; b < nbk; b++) {
                __m512i a[8];
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++)
                        a[c] = _mm512_load_si512(&wp->a[b][c]);
                const __m512 dx = wp->d[b];
#pragma GCC unroll 16
                for (int t = 0; t < NT; t++) {
                        const int8_t *q = ((const struct lmp_block_q8_0 *)(y + (size_t)t * by))[k0 + b].qs;
                        /* two chains of four: half the latency of one of eight */
                        __m512i p = _mm512_set1_epi32(tab->corr[tab_t + t][b]), p1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                        for (int c = 0; c < 4; c++) {
                                p = _mm512_dpbusd_epi32(p, a[c], _mm512_set1_epi32(load_i32(q + 4 * c)));
                                p1 = _mm512_dpbusd_epi32(p1, a[c + 4], _mm512_set1_epi32(load_i32(q + 4 * c + 16)));
                        }
                        p = _mm512_add_epi32(p, p1);
                        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                                 _mm512_mul_ps(dx, _mm512_set1_ps(tab->d[tab_t + t][b])), acc[t]);
                }
        }
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
                float *o = s + (size_t)t * ld;
                if (add)
                        acc[t] = _mm512_add_ps(acc[t], _mm512_maskz_loadu_ps(m, o));
                _mm512_mask_storeu_ps(o, m, acc[t]);
        }
}

/* Row r of the weights starts at vx + (r / 16) gstride + (r % 16) bx, and
 * its blocks are bstride bytes apart: a file's rows (gstride 16 bx, bstride
 * the block size) or 16-row groups of whole blocks side by side (bx the
 * block size, bstride 16 of them, gstride the group's size). */
static inline __attribute__((always_inline)) void gemm32(enum w32 kind, int n, int nr, int nt, const void *restrict vx,
                                                         size_t bx, const void *restrict vy, size_t by,
                                                         float *restrict s, size_t ld, size_t gstride,
                                                         size_t bstride) {
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
                                for (int b = 0; b < nbk; b += 16)
                                        ytab16(yb + b, nbk - b < 16 ? nbk - b : 16, bias, &tab.d[t][b], &tab.corr[t][b]);
                        }
                        for (int r0 = 0; r0 < nr; r0 += GEMM_ROWS) {
                                const uint8_t *rows[GEMM_ROWS];
                                int32_t off[GEMM_ROWS];
                                for (int r = 0; r < GEMM_ROWS; r++) {
                                        /* rows past the end repeat the last; their lanes are not stored */
                                        const int rr = r0 + r < nr ? r : nr - 1 - r0;
                                        rows[r] = x + (size_t)(r0 / GEMM_ROWS) * gstride + (size_t)rr * bx;
                                        off[r] = (int32_t)((size_t)rr * bx);
                                }
                                const __m512i idx = _mm512_loadu_si512(off);
                                for (int b = 0; b < nbk; b++)
                                        unpack16(kind, rows, idx, k0 + b, bstride, wp.a[b], &wp.d[b]);
                                const __mmask16 m = nr - r0 >= GEMM_ROWS ? (__mmask16)0xffff
                                                                           : (__mmask16)((1u << (nr - r0)) - 1);
                                for (int t0 = 0; t0 < ng; t0 += GEMM_TOKS) {
                                        const int ntt = ng - t0 < GEMM_TOKS ? ng - t0 : GEMM_TOKS;
                                        const uint8_t *yt = yg + (size_t)t0 * by;
                                        float *o = s + (size_t)(g0 + t0) * ld + (size_t)r0;
                                        switch (ntt) {
#define TILE_CASE(N) case N: tile32(N, &wp, k0, nbk, yt, by, &tab, t0, o, ld, m, k0 > 0); break;
                                        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4)
                                        TILE_CASE(5) TILE_CASE(6) TILE_CASE(7) TILE_CASE(8)
                                        TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12)
                                        TILE_CASE(13) TILE_CASE(14) TILE_CASE(15) TILE_CASE(16)
#undef TILE_CASE
                                        }
                                }
                        }
                        k0 += nbk;
                } while (k0 < nb);
        }
}

/* The gather of the rows' scale fields takes int32 offsets: rows further
 * apart than that (n in the hundreds of millions) go pair by pair. */
#define GEMM32(name, kind)                                                                                  \
void lmp_gemm_##name##_avx512(int n, int nr, int nt, const void *restrict x, size_t bx,                    \
                              const void *restrict y, size_t by, float *restrict s, size_t ld) {           \
        if (bx > (size_t)INT32_MAX / GEMM_ROWS) {                                                          \
                for (int t = 0; t < nt; t++)                                                               \
                        for (int r = 0; r < nr; r++)                                                       \
                                lmp_vec_dot_##name##_avx512(n, &s[(size_t)t * ld + (size_t)r],             \
                                                            (const uint8_t *)x + (size_t)r * bx,           \
                                                            (const uint8_t *)y + (size_t)t * by);          \
                return;                                                                                    \
        }                                                                                                  \
        gemm32(kind, n, nr, nt, x, bx, y, by, s, ld, GEMM_ROWS * bx, w32_size(kind));                     \
}

GEMM32(q4_0_q8_0, W_Q4_0)
GEMM32(q5_0_q8_0, W_Q5_0)
GEMM32(q8_0_q8_0, W_Q8_0)

/* ---- gemm: f16 ---------------------------------------------------------- */

/* A tile is 6 weight rows by 4 activation rows, 16 values of each pair per
 * FMA. The tile's activation rows are converted to f32 once per pass of
 * GEMM_F16_KC values into a table, so that the FMAs read them from memory
 * and only the weights are converted in the loop; each (row, token) sum is
 * reduced horizontally once per pass. Rows and tokens past the end of the
 * tile repeat the last one; their results are not stored. */
#define GEMM_F16_ROWS 6
#define GEMM_F16_TOKS 4
#define GEMM_F16_KC 1024
#define GEMM_F16_RB (8 * GEMM_F16_ROWS)

static void gemm_f16_rows(int n, int nr, int nt, const uint8_t *restrict x, size_t bx,
                          const uint8_t *restrict y, size_t by, float *restrict s, size_t ld) {
        float yf[GEMM_F16_TOKS][GEMM_F16_KC] __attribute__((aligned(64)));
        /* Passes over the values outermost: the rows' part of one pass stays
         * in cache while every token tile goes over it. */
        int k0 = 0;
        do {
                const int kc = n - k0 < GEMM_F16_KC ? n - k0 : GEMM_F16_KC;
                const int kv = (kc + 15) & ~15;   /* padded with zeros to whole vectors */
                for (int t0 = 0; t0 < nt; t0 += GEMM_F16_TOKS) {
                        const int ntt = nt - t0 < GEMM_F16_TOKS ? nt - t0 : GEMM_F16_TOKS;
                        for (int t = 0; t < GEMM_F16_TOKS; t++) {
                                const lmp_fp16 *yr = (const lmp_fp16 *)(y + (size_t)(t0 + (t < ntt ? t : ntt - 1)) * by) + k0;
                                for (int k = 0; k < kv; k += 16) {
                                        const __mmask16 m = kc - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kc - k)) - 1);
                                        _mm512_store_ps(&yf[t][k], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, yr + k)));
                                }
                        }
                        for (int r0 = 0; r0 < nr; r0 += GEMM_F16_ROWS) {
                                const lmp_fp16 *xr[GEMM_F16_ROWS];
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
                                        xr[r] = (const lmp_fp16 *)(x + (size_t)(r0 + r < nr ? r0 + r : nr - 1) * bx) + k0;
                                __m512 acc[GEMM_F16_ROWS][GEMM_F16_TOKS];
#pragma GCC unroll 8
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
#pragma GCC unroll 8
                                        for (int t = 0; t < GEMM_F16_TOKS; t++)
                                                acc[r][t] = _mm512_setzero_ps();
                                for (int k = 0; k < kv; k += 16) {
                                        /* all lanes but in the last vector of a ragged row */
                                        const __mmask16 m = kc - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kc - k)) - 1);
#pragma GCC unroll 8
                                        for (int r = 0; r < GEMM_F16_ROWS; r++) {
                                                const __m512 w = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, xr[r] + k));
#pragma GCC unroll 8
                                                for (int t = 0; t < GEMM_F16_TOKS; t++)
                                                        acc[r][t] = _mm512_fmadd_ps(w, _mm512_load_ps(&yf[t][k]), acc[r][t]);
                                        }
                                }
                                float sum[GEMM_F16_TOKS][GEMM_F16_ROWS];
#pragma GCC unroll 8
                                for (int r = 0; r < GEMM_F16_ROWS; r++)
#pragma GCC unroll 8
                                        for (int t = 0; t < GEMM_F16_TOKS; t++)
                                                sum[t][r] = _mm512_reduce_add_ps(acc[r][t]);
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
void lmp_gemm_f16_f16_avx512(int n, int nr, int nt, const void *restrict x, size_t bx,
                             const void *restrict y, size_t by, float *restrict s, size_t ld) {
        for (int r0 = 0; r0 < nr; r0 += GEMM_F16_RB)
                gemm_f16_rows(n, nr - r0 < GEMM_F16_RB ? nr - r0 : GEMM_F16_RB, nt, (const uint8_t *)x + (size_t)r0 * bx,
                              bx, y, by, s + r0, ld);
}

/* ---- K-quant gemms ------------------------------------------------------ */

/* Weight rows by tokens (activation rows) over the whole row length: each
 * weight block is unpacked once into four vectors of 64 unsigned bytes that
 * line up with the activation's qs[64k .. 64k + 63], plus four int16 vectors
 * holding, in each 128-bit chunk, the scale of the sub-block that chunk of
 * bytes belongs to. Tokens go in pairs: vpdpbusd sums four byte products per
 * int32 lane for each token (at most 4 * 63 * 128 < 2^15), vpackssdw packs
 * the two tokens' lanes into int16 side by side within each chunk (exactly,
 * no saturation), and one vpdpwssd applies the sub-block scales to both
 * tokens at once. The int32 sums of a pair then hold token t in lanes 0-1
 * and token t + 1 in lanes 2-3 of each chunk, and are scaled by d_x * d_y
 * into float accumulators of the same layout; the q4_K/q5_K mins come in as
 * a float product of the per-row dmin * min and the per-token d * (block
 * sums of 32), and the q6_K offset of 32 as an int16 product of -32 * scales
 * and the block sums of 16, laid out the same. */

static inline __m512 pair_dy(const struct lmp_block_q8_K *a, const struct lmp_block_q8_K *b) {
        return _mm512_broadcast_f32x4(_mm_set_ps(b->d, b->d, a->d, a->d));
}

/* d * the sums of the 8 sub-blocks of 32 for tokens a and b, in the pair layout. */
static inline __m512 pair_sums32(const struct lmp_block_q8_K *a, const struct lmp_block_q8_K *b) {
        const __m512i bs = join256(load_bsums(a), load_bsums(b));
        const __m512 f = _mm512_cvtepi32_ps(_mm512_madd_epi16(bs, _mm512_set1_epi16(1)));
        const __m512 d = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a->d), _mm512_set1_ps(b->d));
        const __m512i idx = _mm512_set_epi32(15, 14, 7, 6, 13, 12, 5, 4, 11, 10, 3, 2, 9, 8, 1, 0);
        return _mm512_permutexvar_ps(idx, _mm512_mul_ps(f, d));
}

/* The 16 block sums of 16 of tokens a and b: a's sums 4c..4c+3 then b's in chunk c. */
static inline __m512i pair_sums16(const struct lmp_block_q8_K *a, const struct lmp_block_q8_K *b) {
        const __m512i idx = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
        return _mm512_permutex2var_epi64(_mm512_castsi256_si512(load_bsums(a)), idx,
                                         _mm512_castsi256_si512(load_bsums(b)));
}

/* One weight block, unpacked. */
struct gt_row {
        __m512i w[4];   /* values 64k .. 64k + 63 as unsigned bytes */
        __m512i sc[4];  /* int16 scale of each chunk's sub-block */
        __m512i off;    /* q6_K: -32 * scales, in the layout of pair_sums16 */
        __m512 fm;      /* q4_K/q5_K: dmin * mins, in the layout of pair_sums32 */
        float d;
};

/* 32 bytes at p in both halves, the high half shifted right by `shift` bits
 * within 16-bit lanes: a broadcast load and one masked shift. */
static inline __m512i halves_shifted(const uint8_t *p, int shift) {
        const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
        return _mm512_mask_srli_epi16(b, 0xffff0000u, b, (unsigned)shift);
}

static inline void row_mins(struct gt_row *r, __m256i ms, float dmin) {
        const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(ms, 1)));
        const __m512i idx = _mm512_set_epi32(7, 6, 7, 6, 5, 4, 5, 4, 3, 2, 3, 2, 1, 0, 1, 0);
        r->fm = _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(_mm256_mul_ps(m, _mm256_set1_ps(dmin))));
}

static inline void unpack_row_q4_K(struct gt_row *r, const struct lmp_block_q4_K *x) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m256i ms = scales_mins_k4(x->scales);
        const __m512i sc = _mm512_castsi256_si512(ms);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
                r->w[k] = _mm512_and_si512(halves_shifted(x->qs + 32 * k, 4), m4);
                r->sc[k] = _mm512_permutexvar_epi16(idx_by16(2 * k), sc);
        }
        r->d = h2f(x->d);
        row_mins(r, ms, h2f(x->dmin));
}

static inline void unpack_row_q5_K(struct gt_row *r, const struct lmp_block_q5_K *x) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i m1 = _mm512_set1_epi8(1);
        const __m256i ms = scales_mins_k4(x->scales);
        const __m512i sc = _mm512_castsi256_si512(ms);
        __m512i h = halves_shifted(x->qh, 1);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
                const __m512i b = _mm512_and_si512(halves_shifted(x->qs + 32 * k, 4), m4);
                r->w[k] = _mm512_or_si512(b, _mm512_slli_epi16(_mm512_and_si512(h, m1), 4));
                h = _mm512_srli_epi16(h, 2);
                r->sc[k] = _mm512_permutexvar_epi16(idx_by16(2 * k), sc);
        }
        r->d = h2f(x->d);
        row_mins(r, ms, h2f(x->dmin));
}

static inline void unpack_row_q6_K(struct gt_row *r, const struct lmp_block_q6_K *x) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i m3 = _mm512_set1_epi8(3);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
        const __m512i sc = _mm512_castsi256_si512(sc16);
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
                const __m512i l = _mm512_loadu_si512((const void *)(x->ql + 64 * j));
                const __m512i h = halves_shifted(x->qh + 32 * j, 2);
                r->w[2 * j] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(_mm512_and_si512(h, m3), 4));
                r->w[2 * j + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                  _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 4), m3), 4));
                r->sc[2 * j] = _mm512_permutexvar_epi16(idx_by8(8 * j), sc);
                r->sc[2 * j + 1] = _mm512_permutexvar_epi16(idx_by8(8 * j + 4), sc);
        }
        const __m512i idx = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
        r->off = _mm512_permutexvar_epi64(idx, _mm512_castsi256_si512(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32))));
        r->d = h2f(x->d);
}

/* Adds the scaled int32 sums of values 64k .. 64k + 63 of one weight block
 * against a token pair to sumi. */
static inline __m512i pair_dot_k(const struct gt_row *r, int k, __m512i sumi, const int8_t *qa, const int8_t *qb) {
        const __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), r->w[k],
                                              _mm512_loadu_si512((const void *)(qa + 64 * k)));
        const __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), r->w[k],
                                              _mm512_loadu_si512((const void *)(qb + 64 * k)));
        return _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(a, b), r->sc[k]);
}

/* Token t of a pair accumulator: lanes 0-1 (half = 0) or 2-3 (half = 1) of each chunk. */
static inline float pair_total(__m512 acc, int half) {
        const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
        const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(acc), hi);
        const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
        return half ? _mm_cvtss_f32(_mm_add_ss(_mm_movehl_ps(a4, a4), _mm_shuffle_ps(a4, a4, 3)))
                    : _mm_cvtss_f32(_mm_add_ss(a4, _mm_movehdup_ps(a4)));
}

enum gt_kind { GT_Q4_K, GT_Q5_K, GT_Q6_K };

/* What a register tile keeps of one token pair's activation block. */
struct gt_pair {
        __m512 dy;      /* d of token t in lanes 0-1 of each chunk, of t + 1 in lanes 2-3 */
        __m512 fb;      /* q4_K/q5_K: pair_sums32 */
        __m512i bs;     /* q6_K: pair_sums16 */
};

/* Few tokens (batched decode): register tiles of up to GT_MAXR rows by
 * GT_MAXT tokens, each block unpacked into registers and used at once, with
 * nothing stored. */
#define GT_MAXR 4
#define GT_MAXT 6

/* R rows by T tokens (T even; tokens at and past tv repeat the last valid
 * one and are not stored). R, T and kind are constants at every call. */
static inline __attribute__((always_inline)) void
gemm_tile(enum gt_kind kind, int R, int T, int nb, const uint8_t *x, size_t bx, const uint8_t *y, size_t by,
          int tv, float *s, size_t ld) {
        const struct lmp_block_q8_K *yt[GT_MAXT];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
                yt[t] = (const struct lmp_block_q8_K *)(y + (size_t)(t < tv ? t : tv - 1) * by);
        __m512 acc[GT_MAXR][GT_MAXT / 2];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
                for (int p = 0; p < T / 2; p++)
                        acc[r][p] = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
                struct gt_pair pr[GT_MAXT / 2];
#pragma GCC unroll 8
                for (int p = 0; p < T / 2; p++) {
                        const struct lmp_block_q8_K *a = &yt[2 * p][i], *b = &yt[2 * p + 1][i];
                        pr[p].dy = pair_dy(a, b);
                        if (kind == GT_Q6_K)
                                pr[p].bs = pair_sums16(a, b);
                        else
                                pr[p].fb = pair_sums32(a, b);
                }
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                        struct gt_row w;
                        const uint8_t *xr = x + (size_t)r * bx;
                        if (kind == GT_Q4_K)
                                unpack_row_q4_K(&w, (const struct lmp_block_q4_K *)xr + i);
                        else if (kind == GT_Q5_K)
                                unpack_row_q5_K(&w, (const struct lmp_block_q5_K *)xr + i);
                        else
                                unpack_row_q6_K(&w, (const struct lmp_block_q6_K *)xr + i);
                        const __m512 dx = _mm512_set1_ps(w.d);
                        __m512i sumi[GT_MAXT / 2];
#pragma GCC unroll 8
                        for (int p = 0; p < T / 2; p++)
                                sumi[p] = kind == GT_Q6_K ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), w.off, pr[p].bs)
                                                          : _mm512_setzero_si512();
#pragma GCC unroll 4
                        for (int k = 0; k < 4; k++)
#pragma GCC unroll 8
                                for (int p = 0; p < T / 2; p++)
                                        sumi[p] = pair_dot_k(&w, k, sumi[p], yt[2 * p][i].qs, yt[2 * p + 1][i].qs);
#pragma GCC unroll 8
                        for (int p = 0; p < T / 2; p++) {
                                acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[p]), _mm512_mul_ps(dx, pr[p].dy),
                                                            acc[r][p]);
                                if (kind != GT_Q6_K)
                                        acc[r][p] = _mm512_fnmadd_ps(w.fm, pr[p].fb, acc[r][p]);
                        }
                }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
                for (int t = 0; t < T; t++)
                        if (t < tv)
                                s[(size_t)t * ld + (size_t)r] = pair_total(acc[r][t / 2], t & 1);
}

/* Block-outer order: for a panel of up to GB_ROWS rows and GB_TOK tokens,
 * each weight block of the panel's rows is unpacked once (to a small buffer
 * on the stack) for all of the panel's tokens, and the float accumulators
 * of every (row, token pair) live in a stack buffer that each block updates.
 * The unpacking is thus shared by up to GB_TOK tokens instead of one
 * register tile's worth, and each token pair's block sums by GB_ROWS rows. */
#define GB_ROWS 8
#define GB_TOK 64

static inline __attribute__((always_inline)) void
gemm_panel(enum gt_kind kind, int R, int tn, int nb, const uint8_t *x, size_t bx, const uint8_t *y, size_t by,
           float *s, size_t ld) {
        const int np = (tn + 1) / 2;
        __m512 acc[GB_ROWS][GB_TOK / 2];
        struct gt_row rows[GB_ROWS];
        for (int r = 0; r < R; r++)
                for (int p = 0; p < np; p++)
                        acc[r][p] = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
                for (int r = 0; r < R; r++) {
                        const uint8_t *xr = x + (size_t)r * bx;
                        if (kind == GT_Q4_K)
                                unpack_row_q4_K(&rows[r], (const struct lmp_block_q4_K *)xr + i);
                        else if (kind == GT_Q5_K)
                                unpack_row_q5_K(&rows[r], (const struct lmp_block_q5_K *)xr + i);
                        else
                                unpack_row_q6_K(&rows[r], (const struct lmp_block_q6_K *)xr + i);
                }
                for (int p = 0; p < np; p++) {
                        const int tb = 2 * p + 1 < tn ? 2 * p + 1 : 2 * p;
                        const struct lmp_block_q8_K *ya = (const struct lmp_block_q8_K *)(y + (size_t)(2 * p) * by) + i;
                        const struct lmp_block_q8_K *yb = (const struct lmp_block_q8_K *)(y + (size_t)tb * by) + i;
                        const __m512 dy = pair_dy(ya, yb);
                        const __m512 fb = kind == GT_Q6_K ? _mm512_setzero_ps() : pair_sums32(ya, yb);
                        const __m512i bs = kind == GT_Q6_K ? pair_sums16(ya, yb) : _mm512_setzero_si512();
                        for (int r = 0; r < R; r++) {
                                const struct gt_row *w = &rows[r];
                                __m512i sumi = kind == GT_Q6_K ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), w->off, bs)
                                                               : _mm512_setzero_si512();
#pragma GCC unroll 4
                                for (int k = 0; k < 4; k++)
                                        sumi = pair_dot_k(w, k, sumi, ya->qs, yb->qs);
                                __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi),
                                                           _mm512_mul_ps(_mm512_set1_ps(w->d), dy), acc[r][p]);
                                if (kind != GT_Q6_K)
                                        a = _mm512_fnmadd_ps(w->fm, fb, a);
                                acc[r][p] = a;
                        }
                }
        }
        for (int r = 0; r < R; r++)
                for (int t = 0; t < tn; t++)
                        s[(size_t)t * ld + (size_t)r] = pair_total(acc[r][t / 2], t & 1);
}

#define GT_CASE(kind, R, T) case (R) * 16 + (T): gemm_tile(kind, R, T, nb, xr, bx, y, by, tv, sr, ld); break;
#define GT_CASES_R(kind, T) GT_CASE(kind, 1, T) GT_CASE(kind, 2, T) GT_CASE(kind, 3, T) GT_CASE(kind, 4, T)

#define GT_TILES(name, kind)                                                                                    \
void lmp_gemm_##name##_avx512(int n, int nr, int nt, const void *restrict vx, size_t bx,                       \
                              const void *restrict vy, size_t by, float *restrict s, size_t ld) {              \
        const uint8_t *x = vx, *y = vy;                                                                         \
        const int nb = n / LMP_QK_K;                                                                            \
        if (nt <= GT_MAXT) {                                                                                    \
                const int tv = nt, T = (nt + 1) & ~1;                                                           \
                for (int r0 = 0; r0 < nr; r0 += GT_MAXR) {                                                      \
                        const int R = nr - r0 < GT_MAXR ? nr - r0 : GT_MAXR;                                    \
                        const uint8_t *xr = x + (size_t)r0 * bx;                                                \
                        float *sr = s + (size_t)r0;                                                             \
                        switch (R * 16 + T) {                                                                   \
                        GT_CASES_R(kind, 2) GT_CASES_R(kind, 4) GT_CASES_R(kind, 6)                             \
                        default: break;                                                                         \
                        }                                                                                       \
                }                                                                                               \
                return;                                                                                         \
        }                                                                                                       \
        for (int r0 = 0; r0 < nr; r0 += GB_ROWS) {                                                              \
                const int R = nr - r0 < GB_ROWS ? nr - r0 : GB_ROWS;                                            \
                for (int t0 = 0; t0 < nt; t0 += GB_TOK) {                                                       \
                        const int tn = nt - t0 < GB_TOK ? nt - t0 : GB_TOK;                                     \
                        gemm_panel(kind, R, tn, nb, x + (size_t)r0 * bx, bx, y + (size_t)t0 * by,              \
                                   by, s + (size_t)t0 * ld + (size_t)r0, ld);                                   \
                }                                                                                               \
        }                                                                                                       \
}

GT_TILES(q4_K_q8_K, GT_Q4_K)
GT_TILES(q5_K_q8_K, GT_Q5_K)
GT_TILES(q6_K_q8_K, GT_Q6_K)

/* ---- gemm_few: batched decode ------------------------------------------- */

/* A decode step of a few sequences (gemm_few, nt <= LMP_GEMM_FEW_MAX_TOK):
 * every weight comes from memory and serves only those few tokens, so the
 * product is as fast as the memory stream and the arithmetic overlap. The
 * register tiles above read GT_MAXR rows side by side; with rows of a few
 * KiB (n_embd 2048 in q4_K: 1152 bytes), each row is a stream too short for
 * the hardware prefetcher to train on, and the tile waits for memory at
 * every block: on TinyLlama's matrices 4 tokens took 3x the time of one
 * token's vec_dots, against 1.3x for their arithmetic alone. These tiles
 * (GF_ROWS rows by 2 or 4 tokens, the same arithmetic as gemm_tile) prefetch
 * the rows GF_PF_DIST bytes ahead of the ones they read, which lands in the
 * next tile's rows when rows are short, and take more than 4 tokens in
 * groups while the tile's rows are in L1 (only the first group prefetches). */
#define GF_ROWS 4
#define GF_TOK 4
#define GF_PF_DIST 4096        /* of 1 to 8 KiB, 2 did not reach far enough; the rest measured alike */

/* Lines [p, p + len) towards L1. */
static inline void prefetch_span(const uint8_t *p, size_t len) {
        const uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + len;
        for (uintptr_t q = a; q < end; q += 64)
                _mm_prefetch((const char *)q, _MM_HINT_T0);
}

static inline __attribute__((always_inline)) void
few_tile(enum gt_kind kind, int R, int T, int nb, const uint8_t *x, size_t bx, const uint8_t *y, size_t by,
         int tv, float *s, size_t ld, int prefetch) {
        const size_t bsz = kind == GT_Q4_K ? sizeof(struct lmp_block_q4_K)
                         : kind == GT_Q5_K ? sizeof(struct lmp_block_q5_K) : sizeof(struct lmp_block_q6_K);
        const struct lmp_block_q8_K *yt[GF_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                yt[t] = (const struct lmp_block_q8_K *)(y + (size_t)(t < tv ? t : tv - 1) * by);
        __m512 acc[GF_ROWS][GF_TOK / 2];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 2
                for (int p = 0; p < T / 2; p++)
                        acc[r][p] = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
                struct gt_pair pr[GF_TOK / 2];
#pragma GCC unroll 2
                for (int p = 0; p < T / 2; p++) {
                        const struct lmp_block_q8_K *a = &yt[2 * p][i], *b = &yt[2 * p + 1][i];
                        pr[p].dy = pair_dy(a, b);
                        if (kind == GT_Q6_K)
                                pr[p].bs = pair_sums16(a, b);
                        else
                                pr[p].fb = pair_sums32(a, b);
                }
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                        struct gt_row w;
                        const uint8_t *xr = x + (size_t)r * bx;
                        if (prefetch)
                                prefetch_span(xr + (size_t)i * bsz + GF_PF_DIST, bsz);
                        if (kind == GT_Q4_K)
                                unpack_row_q4_K(&w, (const struct lmp_block_q4_K *)xr + i);
                        else if (kind == GT_Q5_K)
                                unpack_row_q5_K(&w, (const struct lmp_block_q5_K *)xr + i);
                        else
                                unpack_row_q6_K(&w, (const struct lmp_block_q6_K *)xr + i);
                        const __m512 dx = _mm512_set1_ps(w.d);
                        __m512i sumi[GF_TOK / 2];
#pragma GCC unroll 2
                        for (int p = 0; p < T / 2; p++)
                                sumi[p] = kind == GT_Q6_K ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), w.off, pr[p].bs)
                                                          : _mm512_setzero_si512();
#pragma GCC unroll 4
                        for (int k = 0; k < 4; k++)
#pragma GCC unroll 2
                                for (int p = 0; p < T / 2; p++)
                                        sumi[p] = pair_dot_k(&w, k, sumi[p], yt[2 * p][i].qs, yt[2 * p + 1][i].qs);
#pragma GCC unroll 2
                        for (int p = 0; p < T / 2; p++) {
                                acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[p]), _mm512_mul_ps(dx, pr[p].dy),
                                                            acc[r][p]);
                                if (kind != GT_Q6_K)
                                        acc[r][p] = _mm512_fnmadd_ps(w.fm, pr[p].fb, acc[r][p]);
                        }
                }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                        if (t < tv)
                                s[(size_t)t * ld + (size_t)r] = pair_total(acc[r][t / 2], t & 1);
}

#define GF_CASE(kind, R, T) \
        case (R) * 16 + (T): few_tile(kind, R, T, nb, xr, bx, y + (size_t)t0 * by, by, tv, sr, ld, t0 == 0); break;
#define GF_CASES_T(kind, T) GF_CASE(kind, 1, T) GF_CASE(kind, 2, T) GF_CASE(kind, 3, T) GF_CASE(kind, 4, T)

#define GF_GEMM(name, kind)                                                                                     \
void lmp_gemm_few_##name##_avx512(int n, int nr, int nt, const void *restrict vx, size_t bx,                   \
                                  const void *restrict vy, size_t by, float *restrict s, size_t ld) {          \
        const uint8_t *x = vx, *y = vy;                                                                         \
        const int nb = n / LMP_QK_K;                                                                            \
        for (int r0 = 0; r0 < nr; r0 += GF_ROWS) {                                                              \
                const int R = nr - r0 < GF_ROWS ? nr - r0 : GF_ROWS;                                            \
                const uint8_t *xr = x + (size_t)r0 * bx;                                                        \
                for (int t0 = 0; t0 < nt; t0 += GF_TOK) {                                                       \
                        const int tv = nt - t0 < GF_TOK ? nt - t0 : GF_TOK, T = tv <= 2 ? 2 : 4;                \
                        float *sr = s + (size_t)t0 * ld + (size_t)r0;                                           \
                        switch (R * 16 + T) {                                                                   \
                        GF_CASES_T(kind, 2) GF_CASES_T(kind, 4)                                                 \
                        default: break;                                                                         \
                        }                                                                                       \
                }                                                                                               \
        }                                                                                                       \
}

GF_GEMM(q4_K_q8_K, GT_Q4_K)
GF_GEMM(q5_K_q8_K, GT_Q5_K)
GF_GEMM(q6_K_q8_K, GT_Q6_K)

/* ---- q4_K_r16: 16 interleaved rows, one per lane ------------------------ */

/* Sub-block j's scales (sc) and mins (mn) of the 16 rows, and those of
 * sub-block j + 4, as int32 lanes (j < 4), from the byte-major packed
 * scales: the low 6 bits of bytes j and j + 4; for j + 4 the nibbles of
 * byte j + 8 with the top 2 bits of bytes j and j + 4 above them. */
static inline void r16_scales(const struct lmp_block_q4_Kx16 *b, int j, __m512i *sc, __m512i *mn, __m512i *sc4,
                              __m512i *mn4) {
        const __m512i m6 = _mm512_set1_epi32(0x3f), m4 = _mm512_set1_epi32(0x0f), top = _mm512_set1_epi32(0x30);
        const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->scales[j]));
        const __m512i m = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->scales[j + 4]));
        const __m512i h = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->scales[j + 8]));
        *sc = _mm512_and_si512(s, m6);
        *mn = _mm512_and_si512(m, m6);
        *sc4 = _mm512_or_si512(_mm512_and_si512(h, m4), _mm512_and_si512(_mm512_srli_epi32(s, 2), top));
        *mn4 = _mm512_or_si512(_mm512_srli_epi32(h, 4), _mm512_and_si512(_mm512_srli_epi32(m, 2), top));
}

/* Quarter q (0 to 3) of the block of size bytes at next, into L1. With 2
 * or more tokens a tile spends long enough on a block that the hardware
 * prefetcher alone leaves the next one in memory, and the tile waits for
 * it: one block ahead, the batched decode of 4 sequences (TinyLlama, one
 * thread) went from 91 to 111 tokens/s. A single token streams faster
 * without it. (With a size_t loop here GCC 12 dropped the prefetches.) */
static inline __attribute__((always_inline)) void r16_prefetch(const void *next, int q, int size) {
        const char *p = (const char *)next + q * (size / 4);
        for (int l = 0; l < size / 4; l += 64)
                _mm_prefetch(p + l, _MM_HINT_T0);
}

static inline __m512i bcast32(const int8_t *p) {
        int32_t v;
        memcpy(&v, p, 4);
        return _mm512_set1_epi32(v);
}

/* One sub-block (32 values, its 4 chunks) of T tokens: isum += sc x
 * (weights . activations), msum += mn x (the activations' sum). One token
 * alone splits its dot product over two chains (low and high nibbles) so
 * that the vpdpbusd latency is not the bound. */
static inline __attribute__((always_inline)) void r16_sub(const struct lmp_block_q4_Kx16 *b, int j,
                                                          const struct lmp_block_q8_K *const yb[4], int T,
                                                          __m512i sc, __m512i mn, __m512i isum[4],
                                                          __m512i msum[4]) {
        /* each lane's min in both 16-bit halves, against the sub-block's two
         * 16-value sums of the activations: one vpdpwssd per token */
        const __m512i mn2 = _mm512_or_si512(mn, _mm512_slli_epi32(mn, 16));
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        __m512i lo_acc[4], hi_acc[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                lo_acc[t] = hi_acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int cc = 0; cc < 4; cc++) {
                const __m512i w = _mm512_loadu_si512((const void *)b->qs[lmp_q4_Kx16_chunk(j, cc)]);
                const __m512i lo = _mm512_and_si512(w, m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        const int8_t *a = yb[t]->qs + 32 * j + 8 * cc;
                        lo_acc[t] = _mm512_dpbusd_epi32(lo_acc[t], lo, bcast32(a));
                        if (T == 1)
                                hi_acc[t] = _mm512_dpbusd_epi32(hi_acc[t], hi, bcast32(a + 4));
                        else
                                lo_acc[t] = _mm512_dpbusd_epi32(lo_acc[t], hi, bcast32(a + 4));
                }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
                const __m512i dot = T == 1 ? _mm512_add_epi32(lo_acc[t], hi_acc[t]) : lo_acc[t];
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dot, sc));
                msum[t] = _mm512_dpwssd_epi32(msum[t], mn2, bcast32((const int8_t *)(yb[t]->bsums + 2 * j)));
        }
}

/* Sub-blocks j and j + 4 (j < 4), which share their scale bytes. */
static inline __attribute__((always_inline)) void r16_pair(const struct lmp_block_q4_Kx16 *b, int j,
                                                           const struct lmp_block_q8_K *const yb[4], int T,
                                                           __m512i isum[4], __m512i msum[4]) {
        __m512i sc, mn, sc4, mn4;
        r16_scales(b, j, &sc, &mn, &sc4, &mn4);
        r16_sub(b, j, yb, T, sc, mn, isum, msum);
        r16_sub(b, j + 4, yb, T, sc4, mn4, isum, msum);
}

/* One group of 16 rows by T (1 to 4) tokens over all nb super-blocks. It
 * reads the group's bytes in order, one stream that the hardware
 * prefetcher follows; software prefetches ahead of it only slowed it
 * (measured), as did the chunks' first order, which alternated between the
 * two halves of each block. */
static inline __attribute__((always_inline)) void r16_tile(int nb, const struct lmp_block_q4_Kx16 *x,
                                                           const uint8_t *y, size_t by, int T, int pf, float *s,
                                                           size_t ld) {
        __m512 acc[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                acc[t] = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
                const struct lmp_block_q4_Kx16 *b = &x[i];
                const struct lmp_block_q8_K *yb[4];
                __m512i isum[4], msum[4];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        yb[t] = (const struct lmp_block_q8_K *)(y + (size_t)t * by) + i;
                        isum[t] = msum[t] = _mm512_setzero_si512();
                }
                /* One token: the block unrolled whole, so that its loads go
                 * out early (a stream from memory, 20-25% faster than the
                 * loop below). More: a loop, or the sums spill. */
                if (T == 1) {
#pragma GCC unroll 4
                        for (int j = 0; j < 4; j++)
                                r16_pair(b, j, yb, T, isum, msum);
                } else {
#pragma GCC unroll 1
                        for (int j = 0; j < 4; j++) {
                                if (pf)
                                        r16_prefetch(b + 1, j, (int)sizeof(*b));
                                r16_pair(b, j, yb, T, isum, msum);
                        }
                }
                const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d));
                const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->dmin));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        const __m512 yd = _mm512_set1_ps(yb[t]->d);
                        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, yd), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                        acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, yd), _mm512_cvtepi32_ps(msum[t]), acc[t]);
                }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                _mm512_storeu_ps(s + (size_t)t * ld, acc[t]);
}

/* Tiles of 4 tokens (each group's weights stay in cache across them: at
 * most 16 x 210 bytes per 256 values), then the 1 to 3 left. The first
 * tile of 2 or more tokens prefetches the weights (pf). */
#define R16_GEMM(name, block, tile)                                                                            \
void lmp_gemm_##name##_r16_q8_K_avx512(int n, int ng, int nt, const void *restrict vx, const void *restrict vy, \
                                       size_t by, float *restrict s, size_t ld) {                               \
        const int nb = n / LMP_QK_K;                                                                            \
        const uint8_t *y = vy;                                                                                  \
        for (int g = 0; g < ng; g++) {                                                                          \
                const block *x = (const block *)vx + (size_t)g * nb;                                            \
                float *sg = s + (size_t)g * LMP_R16_ROWS;                                                       \
                int t = 0;                                                                                      \
                for (; t + 4 <= nt; t += 4)                                                                     \
                        tile(nb, x, y + (size_t)t * by, by, 4, t == 0, sg + (size_t)t * ld, ld);                \
                if (nt - t == 3)                                                                                \
                        tile(nb, x, y + (size_t)t * by, by, 3, t == 0, sg + (size_t)t * ld, ld);                \
                else if (nt - t == 2)                                                                           \
                        tile(nb, x, y + (size_t)t * by, by, 2, t == 0, sg + (size_t)t * ld, ld);                \
                else if (nt - t == 1)                                                                           \
                        tile(nb, x, y + (size_t)t * by, by, 1, 0, sg + (size_t)t * ld, ld);                     \
        }                                                                                                       \
}

R16_GEMM(q4_K, struct lmp_block_q4_Kx16, r16_tile)

/* ---- q6_K_r16 ----------------------------------------------------------- */

/* Sub-block p (16 values) of a q6_K_r16 block for T tokens: three loads
 * give the four 4-value slices of every row's 6-bit values (a nibble from
 * ql, two bits from qh), each summed against 4 broadcast activation bytes;
 * isum += sc x that sum, msum += sc x the activations' sum over the
 * sub-block (the offset of 32, taken off per block). bsums[p] meets the
 * scale in a broadcast of the pair that holds it: in the low 16 bits of
 * each lane for an even p, the high 16 for an odd one. */
static inline __attribute__((always_inline)) void r16q6_sub(const struct lmp_block_q6_Kx16 *b, int p, int odd,
                                                            const struct lmp_block_q8_K *const yb[4], int T,
                                                            __m512i isum[4], __m512i msum[4]) {
        const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales[p]));
        const __m512i scw = odd ? _mm512_slli_epi32(sc, 16) : _mm512_and_si512(sc, _mm512_set1_epi32(0xffff));
        const __m512i l0 = _mm512_loadu_si512((const void *)b->sub[p].ql[0]);
        const __m512i l1 = _mm512_loadu_si512((const void *)b->sub[p].ql[1]);
        const __m512i h = _mm512_loadu_si512((const void *)b->sub[p].qh);
        const __m512i q0 = _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_and_si512(_mm512_slli_epi16(h, 4), m30));
        const __m512i q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4), _mm512_and_si512(h, m30));
        const __m512i q2 = _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_and_si512(_mm512_slli_epi16(h, 2), m30));
        const __m512i q3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                           _mm512_and_si512(_mm512_srli_epi16(h, 2), m30));
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
                const int8_t *a = yb[t]->qs + 16 * p;
                __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, bcast32(a));
                __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, bcast32(a + 4));
                d0 = _mm512_dpbusd_epi32(d0, q2, bcast32(a + 8));
                d1 = _mm512_dpbusd_epi32(d1, q3, bcast32(a + 12));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(d0, d1), sc));
                msum[t] = _mm512_dpwssd_epi32(msum[t], scw, bcast32((const int8_t *)(yb[t]->bsums + (p & ~1))));
        }
}

/* One group of 16 rows by T (1 to 4) tokens over all nb blocks, two
 * sub-blocks at a time. */
static inline __attribute__((always_inline)) void r16q6_tile(int nb, const struct lmp_block_q6_Kx16 *x,
                                                             const uint8_t *y, size_t by, int T, int pf, float *s,
                                                             size_t ld) {
        __m512 acc[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                acc[t] = _mm512_setzero_ps();
        for (int i = 0; i < nb; i++) {
                const struct lmp_block_q6_Kx16 *b = &x[i];
                const struct lmp_block_q8_K *yb[4];
                __m512i isum[4], msum[4];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        yb[t] = (const struct lmp_block_q8_K *)(y + (size_t)t * by) + i;
                        isum[t] = msum[t] = _mm512_setzero_si512();
                }
                if (T == 1) {   /* as in r16_tile */
#pragma GCC unroll 8
                        for (int p = 0; p < LMP_QK_K / 16; p += 2) {
                                r16q6_sub(b, p, 0, yb, T, isum, msum);
                                r16q6_sub(b, p + 1, 1, yb, T, isum, msum);
                        }
                } else {
#pragma GCC unroll 1
                        for (int p = 0; p < LMP_QK_K / 16; p += 2) {
                                if (pf && p % 4 == 0)
                                        r16_prefetch(b + 1, p / 4, (int)sizeof(*b));
                                r16q6_sub(b, p, 0, yb, T, isum, msum);
                                r16q6_sub(b, p + 1, 1, yb, T, isum, msum);
                        }
                }
                const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b->d));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                        const __m512i q = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(msum[t], 5));
                        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(yb[t]->d)), _mm512_cvtepi32_ps(q),
                                                 acc[t]);
                }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
                _mm512_storeu_ps(s + (size_t)t * ld, acc[t]);
}

R16_GEMM(q6_K, struct lmp_block_q6_Kx16, r16q6_tile)

/* ---- gemm_r16: q4_0 and q5_0 --------------------------------------------- */

/* Groups of 16 rows whose block i sits side by side for the 16 (repack.c).
 * One token (a decode step) streams the group once: for each pair of
 * blocks, the activation's bytes, its bias term (BIAS times their sum, as
 * in DOT32, here the starting value of each row's dpbusd) and its scales
 * are loaded once for the 16 rows, and each row's unpacked pair is one
 * dpbusd. Read row by row, these matrices (Qwen2.5-0.5B's, rows of 896
 * values) went at the vec_dot's pace, bound by its arithmetic; two tokens
 * take the stream in turn, the group then in cache. More tokens go through
 * the type's gemm tiles (gemm32), whose 16-row tiles are these groups. */

#define R16B(name, xtype, UNPACK, BIAS, KIND)                                                                         \
static void r16b_one_##name(int nb, const struct xtype *restrict x, const struct lmp_block_q8_0 *restrict y,    \
                            float *restrict s) {                                                                \
        __m512 acc[LMP_R16_ROWS];                                                                               \
        __m256 acc8[LMP_R16_ROWS];                                                                              \
        _Pragma("GCC unroll 16") for (int r = 0; r < LMP_R16_ROWS; r++) {                                       \
                acc[r] = _mm512_setzero_ps();                                                                   \
                acc8[r] = _mm256_setzero_ps();                                                                  \
        }                                                                                                       \
        int i = 0;                                                                                              \
        for (; i + 1 < nb; i += 2) {                                                                            \
                const __m512i qy = join256(_mm256_loadu_si256((const __m256i *)y[i].qs),                        \
                                           _mm256_loadu_si256((const __m256i *)y[i + 1].qs));                   \
                const __m512i base = _mm512_sub_epi32(_mm512_setzero_si512(),                                   \
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)(BIAS)), qy));       \
                const float y0 = h2f(y[i].d), y1 = h2f(y[i + 1].d);                                             \
                const struct xtype *b0 = x + (size_t)i * LMP_R16_ROWS, *b1 = b0 + LMP_R16_ROWS;                 \
                _Pragma("GCC unroll 16") for (int r = 0; r < LMP_R16_ROWS; r++) {                               \
                        const __m512i p = _mm512_dpbusd_epi32(base, join256(UNPACK(&b0[r]), UNPACK(&b1[r])), qy); \
                        const __m512 d = halves_ps(h2f(b0[r].d) * y0, h2f(b1[r].d) * y1);                       \
                        acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc[r]);                             \
                }                                                                                               \
        }                                                                                                       \
        if (i < nb) {                                                                                           \
                const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);                                \
                const __m256i base = _mm256_sub_epi32(_mm256_setzero_si256(),                                   \
                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)(BIAS)), qy));       \
                const float y0 = h2f(y[i].d);                                                                   \
                const struct xtype *b0 = x + (size_t)i * LMP_R16_ROWS;                                          \
                _Pragma("GCC unroll 16") for (int r = 0; r < LMP_R16_ROWS; r++) {                               \
                        const __m256i p = _mm256_dpbusd_epi32(base, UNPACK(&b0[r]), qy);                        \
                        acc8[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b0[r].d) * y0), _mm256_cvtepi32_ps(p),     \
                                                  acc8[r]);                                                     \
                }                                                                                               \
        }                                                                                                       \
        _Pragma("GCC unroll 16") for (int r = 0; r < LMP_R16_ROWS; r++)                                         \
                s[r] = _mm512_reduce_add_ps(acc[r]) + hsum_f32x8(acc8[r]);                                      \
}                                                                                                               \
                                                                                                                \
void lmp_gemm_##name##_r16_q8_0_avx512(int n, int ng, int nt, const void *restrict vx, const void *restrict vy, \
                                       size_t by, float *restrict s, size_t ld) {                              \
        const int nb = n / 32;                                                                                  \
        const size_t bs = sizeof(struct xtype);                                                                 \
        if (nt > 2) {                                                                                           \
                gemm32(KIND, n, ng * LMP_R16_ROWS, nt, vx, bs, vy, by, s, ld, (size_t)nb * LMP_R16_ROWS * bs,   \
                       LMP_R16_ROWS * bs);                                                                      \
                return;                                                                                         \
        }                                                                                                       \
        for (int g = 0; g < ng; g++) {                                                                          \
                const struct xtype *x = (const struct xtype *)vx + (size_t)g * nb * LMP_R16_ROWS;               \
                for (int t = 0; t < nt; t++)                                                                    \
                        r16b_one_##name(nb, x,                                                                  \
                                        (const struct lmp_block_q8_0 *)((const uint8_t *)vy + (size_t)t * by),  \
                                        s + (size_t)t * ld + (size_t)g * LMP_R16_ROWS);                         \
        }                                                                                                       \
}

R16B(q4_0, lmp_block_q4_0, UNPACK_Q4_0, 8, W_Q4_0)
R16B(q5_0, lmp_block_q5_0, UNPACK_Q5_0, 16, W_Q5_0)

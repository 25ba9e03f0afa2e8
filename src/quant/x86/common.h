/* What the AVX2 and AVX-512 kernels share word for word: scalar loads,
 * the F16C scale conversion, 256-bit horizontal sums and nibble unpacking
 * (the AVX-512 kernels use 256-bit halves too), the Q8_0/Q8_1 activation
 * block loops around each ISA's own 32-value quantizer, and the layout of
 * the 32-value-block gemm's activation table. Everything is static inline:
 * each kernel file is compiled on its own with its own -m flags
 * (src/quant/meson.build), and includes this after <immintrin.h>. What
 * differs between the two ISAs beyond the register width stays in their
 * files. */
#pragma once

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/fp16.h"

/* The q8_0 vec_dots prefetch rows of this many blocks or fewer 4 KiB
 * ahead, into the rows after them: a small model's many short matrices
 * then read faster from memory; within long rows the hardware prefetcher
 * does better alone (bench_kernels, 4096-value rows from memory on
 * AVX-512: 24.4-24.8 GB/s without, 20.2-21.6 with). */
#define Q8_PF_MAX_BLOCKS 32

static inline int32_t load_i32(const void *p) {
        int32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint16_t load_u16(const void *p) {
        uint16_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

/* The scale fields: F16C converts one half exactly, without branches. */
static inline float h2f(lmp_fp16 h) {
        return _cvtsh_ss(h);
}

static inline float hsum_f32x8(__m256 x) {
        __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        return _mm_cvtss_f32(r);
}

/* 16 packed nibbles -> 32 bytes: low nibbles first, then high nibbles. */
static inline __m256i nibbles32(const uint8_t *p) {
        const __m128i t = _mm_loadu_si128((const __m128i *)p);
        const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
        return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* ---- activation quantizers ------------------------------------------------ */

/* An ISA's quantizer of one 32-value block: the quants, the scale d and the
 * sum of the quants. */
typedef __m256i (*q8_block_fn)(const float *x, float *ret_d, int *ret_sum);

/* Q8_0 and Q8_1 rows, block by block. Inlined into each ISA's
 * lmp_from_float_q8_*, where block is a constant. */
static inline __attribute__((always_inline)) void from_float_q8_0(const float *restrict x, void *restrict vy,
                                                                  int64_t n, q8_block_fn block) {
        struct lmp_block_q8_0 *y = vy;
        for (int64_t i = 0; i < n / LMP_QK8_0; i++, x += LMP_QK8_0) {
                float d;
                int sum;
                const __m256i q = block(x, &d, &sum);
                y[i].d = lmp_f32_to_fp16(d);
                _mm256_storeu_si256((__m256i *)y[i].qs, q);
        }
}

static inline __attribute__((always_inline)) void from_float_q8_1(const float *restrict x, void *restrict vy,
                                                                  int64_t n, q8_block_fn block) {
        struct lmp_block_q8_1 *y = vy;
        for (int64_t i = 0; i < n / LMP_QK8_1; i++, x += LMP_QK8_1) {
                float d;
                int sum;
                const __m256i q = block(x, &d, &sum);
                y[i].d = lmp_f32_to_fp16(d);
                y[i].s = lmp_f32_to_fp16(d * (float)sum);
                _mm256_storeu_si256((__m256i *)y[i].qs, q);
        }
}

/* ---- gemm of 32-value blocks times q8_0 activations ------------------------ */

/* A packed copy of weights serves up to GEMM_TGROUP tokens; GEMM_KC blocks
 * are packed at a time. */
#define GEMM_TGROUP 64
#define GEMM_KC 32

enum w32 { W_Q4_0, W_Q5_0, W_Q8_0 };

/* The activation side, tabled once per group of tokens and pass of blocks. */
struct ytab {
        float d[GEMM_TGROUP][GEMM_KC];
        int32_t corr[GEMM_TGROUP][GEMM_KC];   /* -bias * sum of the block's quants */
};

static inline size_t w32_size(enum w32 k) {
        return k == W_Q4_0 ? sizeof(struct lmp_block_q4_0)
             : k == W_Q5_0 ? sizeof(struct lmp_block_q5_0) : sizeof(struct lmp_block_q8_0);
}

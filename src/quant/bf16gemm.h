/* Matrix products on bf16 operands with f32 sums: out (n, ld) += x (n, k)
 * w^T, w (m, k). AVX512-BF16's VDPBF16PS multiplies 32 pairs of bf16 values
 * and adds them to 16 f32 sums in one instruction, twice the products an
 * f32 FMA makes in the same time, so a product whose weights are bf16 values
 * (bf16 tensors, and f16 or f32 tensors whose every value is one: weights
 * trained in bf16 and stored as f16 lose nothing) runs up to twice as fast
 * as f32 sgemm, at the cost of rounding its activations to bf16.
 *
 * Layouts:
 *   weights  packed by lmp_bf16_pack(): blocks of 16 rows; in a block, for
 *            each pair of inputs (2p, 2p + 1), the 16 rows' two values side
 *            by side (16 x 2 bf16, 64 bytes). Rows past m and the input past
 *            an odd k are zero.
 *   x        n rows of lmp_bf16_kp(k) bf16 values (k rounded up to even,
 *            the pad zero), from lmp_bf16_from_f32().
 *
 * The instruction treats bf16 subnormals as zero and its conversion
 * flushes them, and the scalar twins do the same, so the levels agree to
 * the order of the sums. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Values per packed row of k inputs (k rounded up to even). */
static inline int64_t lmp_bf16_kp(int64_t k) {
        return (k + 1) & ~(int64_t)1;
}

/* bf16 values a packed panel of m rows of k inputs takes. */
static inline size_t lmp_bf16_packed_size(int64_t m, int64_t k) {
        return (size_t)((m + 15) / 16 * 16) * (size_t)lmp_bf16_kp(k);
}

/* Whether bf16 products run here: the CPU has AVX512-BF16 (with the
 * AVX-512 level lmp_cpu_isa() allows) and LMPOOL_BF16 is not "off". */
bool lmp_cpu_bf16(void);

/* Packs m rows of k values of type type (f32, f16 or bf16; row_bytes
 * from one row to the next) into dst (lmp_bf16_packed_size(m, k) values):
 * f32 and f16 values rounded as lmp_bf16_from_f32() rounds (exactly, for
 * those that are bf16 values), bf16 values copied. */
void lmp_bf16_pack(enum lmp_isa isa, enum lmp_type type, const void *w, int64_t m, int64_t k, size_t row_bytes,
                   uint16_t *dst);

/* dst (lmp_bf16_kp(k) values) <- x (k values) rounded to bf16, nearest,
 * ties to even, subnormals flushed to zero; the pad zero. */
void lmp_bf16_from_f32(enum lmp_isa isa, const float *x, int64_t k, uint16_t *dst);

/* out[t ld + r] += sum_i w[r][i] x[t][i], for rows r < m and tokens t < n:
 * w packed (m rows of k inputs), x (n rows, stride xs values). isa picks
 * the kernel: LMP_ISA_AVX512 the VDPBF16PS one (only where
 * lmp_cpu_bf16()), anything else the scalar twin. */
void lmp_gemm_bf16(enum lmp_isa isa, int64_t k, int64_t m, int64_t n, const uint16_t *w, const uint16_t *x,
                   size_t xs, float *out, size_t ld);

/* Whether every value of n f16 (or f32) values is a bf16 value. */
bool lmp_f16_is_bf16(enum lmp_isa isa, const uint16_t *h, size_t n);
bool lmp_f32_is_bf16(const float *f, size_t n);

/* The AVX512-BF16 kernels (src/quant/x86/bf16_avx512.c), which the
 * dispatchers above call. */
void lmp_gemm_bf16_avx512(int64_t k, int64_t m, int64_t n, const uint16_t *w, const uint16_t *x, size_t xs,
                          float *out, size_t ld);
void lmp_bf16_from_f32_avx512(const float *x, int64_t k, uint16_t *dst);
void lmp_bf16_pack_avx512(enum lmp_type type, const void *w, int64_t m, int64_t k, size_t row_bytes,
                          uint16_t *dst);
bool lmp_f16_is_bf16_avx512(const uint16_t *h, size_t n);

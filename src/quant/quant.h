/* The kernel API the model computes with: for each tensor type, how to turn
 * a row into floats, how to quantize an activation row, and the dot product
 * of a weight row with an activation row of its paired type. Kernels come in
 * ISA levels (scalar reference, AVX2, AVX-512); lmp_cpu_isa() says which the
 * running CPU supports and lmp_quant_traits() returns the table for a level.
 * The pairings (weight type -> activation type) are those of llama.cpp's CPU
 * backend, so that activation rounding matches it block for block. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "gguf/types.h"

enum lmp_isa { LMP_ISA_SCALAR, LMP_ISA_AVX2, LMP_ISA_AVX512, LMP_ISA_COUNT };

struct lmp_quant_traits {
        enum lmp_type type;
        enum lmp_type vec_dot_type;  /* the activation type this weight type pairs with */
        /* n % block size == 0 for all three */
        void (*to_float)(const void *restrict x, float *restrict y, int64_t n);
        /* Set only for activation types: F32 (copy), F16, BF16, Q8_0, Q8_1, Q8_K. */
        void (*from_float)(const float *restrict x, void *restrict y, int64_t n);
        /* x: a row of `type`, y: a row of `vec_dot_type`; *s = the dot product.
         * NULL for Q8_1 and Q8_K, which are activation types only: a weight
         * tensor of those types must be refused at load. */
        void (*vec_dot)(int n, float *restrict s, const void *restrict x, const void *restrict y);
        /* The tile product behind prompts and batched decode: for r < nr and
         * t < nt, s[t * ld + r] = vec_dot(n, x + r * bx, y + t * by), computed
         * so that each weight block is loaded and unpacked once for all nt
         * activation rows (and each activation block once for several weight
         * rows). Any nr, nt >= 1. NULL where the level has none: the caller
         * then calls vec_dot per (row, token) pair. Results agree with
         * vec_dot within the same bound as the SIMD vec_dots with theirs. */
        void (*gemm)(int n, int nr, int nt, const void *restrict x, size_t bx,
                     const void *restrict y, size_t by, float *restrict s, size_t ld);
        /* The same product for a decode step of a few sequences, 1 <= nt <=
         * LMP_GEMM_FEW_MAX_TOK: weights streamed from memory, each used for
         * those few tokens only, so these kernels prefetch the weight rows
         * ahead of their tiles. Same arguments, results and bound as gemm.
         * NULL where the level has none: the caller then uses gemm. */
        void (*gemm_few)(int n, int nr, int nt, const void *restrict x, size_t bx,
                         const void *restrict y, size_t by, float *restrict s, size_t ld);
        /* Q4_K, Q6_K, Q4_0 and Q5_0: the same product over their 16-row layouts (repack.h),
         * rows in groups of 16 (ng groups, contiguous at x), any nt >= 1:
         * s[t * ld + 16 g + r]. Every level has one (AVX2 the scalar's), so
         * that a repacked store works whatever level a worker runs at. */
        void (*gemm_r16)(int n, int ng, int nt, const void *restrict x, const void *restrict y, size_t by,
                         float *restrict s, size_t ld);
};

#define LMP_GEMM_FEW_MAX_TOK 8

/* The best level this CPU supports (AVX2 needs FMA and F16C; AVX-512 needs
 * F, BW, VL and VNNI), lowered, never raised, by the environment variable
 * LMPOOL_ISA=scalar|avx2|avx512. */
enum lmp_isa lmp_cpu_isa(void);

/* "scalar", "avx2", "avx512"; NULL for an invalid value. */
const char *lmp_isa_name(enum lmp_isa isa);

/* The kernels for type t at level isa (a kernel without a version at that
 * level is the next lower level's). NULL when there are no kernels for t or
 * isa is invalid. The caller must not ask for a level above lmp_cpu_isa(). */
const struct lmp_quant_traits *lmp_quant_traits(enum lmp_type t, enum lmp_isa isa);

/* The traits table: for each tensor type and ISA level, its activation type
 * and kernels. One designated-initializer table per level; a level names the
 * lower level's kernel where it has none of its own, so each table is
 * complete and the model never checks for holes. */
#include <stddef.h>

#include "quant/kernels.h"
#include "quant/quant.h"

#define ROW(T, A, tof, fromf, dot, mm) \
        [LMP_TYPE_##T] = { .type = LMP_TYPE_##T, .vec_dot_type = LMP_TYPE_##A, \
                           .to_float = tof, .from_float = fromf, .vec_dot = dot, .gemm = mm }
/* q4_K, with its kernel over the repacked layout too. */
#define ROWR(T, A, tof, fromf, dot, mm, few, r16) \
        [LMP_TYPE_##T] = { .type = LMP_TYPE_##T, .vec_dot_type = LMP_TYPE_##A, .to_float = tof, \
                           .from_float = fromf, .vec_dot = dot, .gemm = mm, .gemm_few = few, .gemm_r16 = r16 }
/* A row with a gemm_few (batched decode) kernel too. */
#define ROWF(T, A, tof, fromf, dot, mm, few) \
        [LMP_TYPE_##T] = { .type = LMP_TYPE_##T, .vec_dot_type = LMP_TYPE_##A, \
                           .to_float = tof, .from_float = fromf, .vec_dot = dot, .gemm = mm, .gemm_few = few }

static const struct lmp_quant_traits traits_scalar[LMP_TYPE_COUNT] = {
        ROW(F32,  F32,  lmp_to_float_f32_ref,  lmp_from_float_f32_ref,  lmp_vec_dot_f32_f32_ref, NULL),
        ROW(F16,  F16,  lmp_to_float_f16_ref,  lmp_from_float_f16_ref,  lmp_vec_dot_f16_f16_ref,
            lmp_gemm_f16_f16_ref),
        ROW(BF16, BF16, lmp_to_float_bf16_ref, lmp_from_float_bf16_ref, lmp_vec_dot_bf16_bf16_ref, NULL),
        ROWR(Q4_0, Q8_0, lmp_to_float_q4_0_ref, NULL, lmp_vec_dot_q4_0_q8_0_ref, lmp_gemm_q4_0_q8_0_ref, NULL,
             lmp_gemm_q4_0_r16_q8_0_ref),
        ROW(Q4_1, Q8_1, lmp_to_float_q4_1_ref, NULL, lmp_vec_dot_q4_1_q8_1_ref, NULL),
        ROWR(Q5_0, Q8_0, lmp_to_float_q5_0_ref, NULL, lmp_vec_dot_q5_0_q8_0_ref, lmp_gemm_q5_0_q8_0_ref, NULL,
             lmp_gemm_q5_0_r16_q8_0_ref),
        ROW(Q5_1, Q8_1, lmp_to_float_q5_1_ref, NULL, lmp_vec_dot_q5_1_q8_1_ref, NULL),
        ROW(Q8_0, Q8_0, lmp_to_float_q8_0_ref, lmp_from_float_q8_0_ref, lmp_vec_dot_q8_0_q8_0_ref,
            lmp_gemm_q8_0_q8_0_ref),
        ROW(Q8_1, Q8_1, lmp_to_float_q8_1_ref, lmp_from_float_q8_1_ref, NULL, NULL),
        ROW(Q2_K, Q8_K, lmp_to_float_q2_K_ref, NULL, lmp_vec_dot_q2_K_q8_K_ref, NULL),
        ROW(Q3_K, Q8_K, lmp_to_float_q3_K_ref, NULL, lmp_vec_dot_q3_K_q8_K_ref, NULL),
        ROWR(Q4_K, Q8_K, lmp_to_float_q4_K_ref, NULL, lmp_vec_dot_q4_K_q8_K_ref, lmp_gemm_q4_K_q8_K_ref,
             lmp_gemm_few_q4_K_q8_K_ref, lmp_gemm_q4_K_r16_q8_K_ref),
        ROWF(Q5_K, Q8_K, lmp_to_float_q5_K_ref, NULL, lmp_vec_dot_q5_K_q8_K_ref, lmp_gemm_q5_K_q8_K_ref,
             lmp_gemm_few_q5_K_q8_K_ref),
        ROWR(Q6_K, Q8_K, lmp_to_float_q6_K_ref, NULL, lmp_vec_dot_q6_K_q8_K_ref, lmp_gemm_q6_K_q8_K_ref,
             lmp_gemm_few_q6_K_q8_K_ref, lmp_gemm_q6_K_r16_q8_K_ref),
        ROW(Q8_K, Q8_K, lmp_to_float_q8_K_ref, lmp_from_float_q8_K_ref, NULL, NULL),
};

#if LMP_HAVE_X86_KERNELS
static const struct lmp_quant_traits traits_avx2[LMP_TYPE_COUNT] = {
        ROW(F32,  F32,  lmp_to_float_f32_avx2,  lmp_from_float_f32_avx2,  lmp_vec_dot_f32_f32_avx2, NULL),
        ROW(F16,  F16,  lmp_to_float_f16_avx2,  lmp_from_float_f16_avx2,  lmp_vec_dot_f16_f16_avx2,
            lmp_gemm_f16_f16_avx2),
        ROW(BF16, BF16, lmp_to_float_bf16_avx2, lmp_from_float_bf16_avx2, lmp_vec_dot_bf16_bf16_avx2, NULL),
        ROWR(Q4_0, Q8_0, lmp_to_float_q4_0_ref, NULL, lmp_vec_dot_q4_0_q8_0_avx2, lmp_gemm_q4_0_q8_0_avx2, NULL,
             lmp_gemm_q4_0_r16_q8_0_ref),
        ROW(Q4_1, Q8_1, lmp_to_float_q4_1_ref, NULL, lmp_vec_dot_q4_1_q8_1_avx2, NULL),
        ROWR(Q5_0, Q8_0, lmp_to_float_q5_0_ref, NULL, lmp_vec_dot_q5_0_q8_0_avx2, lmp_gemm_q5_0_q8_0_avx2, NULL,
             lmp_gemm_q5_0_r16_q8_0_ref),
        ROW(Q5_1, Q8_1, lmp_to_float_q5_1_ref, NULL, lmp_vec_dot_q5_1_q8_1_avx2, NULL),
        ROW(Q8_0, Q8_0, lmp_to_float_q8_0_ref, lmp_from_float_q8_0_avx2, lmp_vec_dot_q8_0_q8_0_avx2,
            lmp_gemm_q8_0_q8_0_avx2),
        ROW(Q8_1, Q8_1, lmp_to_float_q8_1_ref, lmp_from_float_q8_1_avx2, NULL, NULL),
        ROW(Q2_K, Q8_K, lmp_to_float_q2_K_ref, NULL, lmp_vec_dot_q2_K_q8_K_avx2, NULL),
        ROW(Q3_K, Q8_K, lmp_to_float_q3_K_ref, NULL, lmp_vec_dot_q3_K_q8_K_avx2, NULL),
        ROWR(Q4_K, Q8_K, lmp_to_float_q4_K_ref, NULL, lmp_vec_dot_q4_K_q8_K_avx2, lmp_gemm_q4_K_q8_K_avx2, NULL,
             lmp_gemm_q4_K_r16_q8_K_ref),
        ROW(Q5_K, Q8_K, lmp_to_float_q5_K_ref, NULL, lmp_vec_dot_q5_K_q8_K_avx2, lmp_gemm_q5_K_q8_K_avx2),
        ROWR(Q6_K, Q8_K, lmp_to_float_q6_K_ref, NULL, lmp_vec_dot_q6_K_q8_K_avx2, lmp_gemm_q6_K_q8_K_avx2, NULL,
             lmp_gemm_q6_K_r16_q8_K_ref),
        ROW(Q8_K, Q8_K, lmp_to_float_q8_K_ref, lmp_from_float_q8_K_avx2, NULL, NULL),
};

static const struct lmp_quant_traits traits_avx512[LMP_TYPE_COUNT] = {
        ROW(F32,  F32,  lmp_to_float_f32_avx512,  lmp_from_float_f32_avx512,  lmp_vec_dot_f32_f32_avx512, NULL),
        ROW(F16,  F16,  lmp_to_float_f16_avx512,  lmp_from_float_f16_avx512,  lmp_vec_dot_f16_f16_avx512,
            lmp_gemm_f16_f16_avx512),
        ROW(BF16, BF16, lmp_to_float_bf16_avx512, lmp_from_float_bf16_avx512, lmp_vec_dot_bf16_bf16_avx512, NULL),
        ROWR(Q4_0, Q8_0, lmp_to_float_q4_0_ref, NULL, lmp_vec_dot_q4_0_q8_0_avx512, lmp_gemm_q4_0_q8_0_avx512, NULL,
             lmp_gemm_q4_0_r16_q8_0_avx512),
        ROW(Q4_1, Q8_1, lmp_to_float_q4_1_ref, NULL, lmp_vec_dot_q4_1_q8_1_avx512, NULL),
        ROWR(Q5_0, Q8_0, lmp_to_float_q5_0_ref, NULL, lmp_vec_dot_q5_0_q8_0_avx512, lmp_gemm_q5_0_q8_0_avx512, NULL,
             lmp_gemm_q5_0_r16_q8_0_avx512),
        ROW(Q5_1, Q8_1, lmp_to_float_q5_1_ref, NULL, lmp_vec_dot_q5_1_q8_1_avx512, NULL),
        ROW(Q8_0, Q8_0, lmp_to_float_q8_0_ref, lmp_from_float_q8_0_avx512, lmp_vec_dot_q8_0_q8_0_avx512,
            lmp_gemm_q8_0_q8_0_avx512),
        ROW(Q8_1, Q8_1, lmp_to_float_q8_1_ref, lmp_from_float_q8_1_avx512, NULL, NULL),
        ROW(Q2_K, Q8_K, lmp_to_float_q2_K_ref, NULL, lmp_vec_dot_q2_K_q8_K_avx512, NULL),
        ROW(Q3_K, Q8_K, lmp_to_float_q3_K_ref, NULL, lmp_vec_dot_q3_K_q8_K_avx512, NULL),
        ROWR(Q4_K, Q8_K, lmp_to_float_q4_K_ref, NULL, lmp_vec_dot_q4_K_q8_K_avx512, lmp_gemm_q4_K_q8_K_avx512,
             lmp_gemm_few_q4_K_q8_K_avx512, lmp_gemm_q4_K_r16_q8_K_avx512),
        ROWF(Q5_K, Q8_K, lmp_to_float_q5_K_ref, NULL, lmp_vec_dot_q5_K_q8_K_avx512, lmp_gemm_q5_K_q8_K_avx512,
             lmp_gemm_few_q5_K_q8_K_avx512),
        ROWR(Q6_K, Q8_K, lmp_to_float_q6_K_ref, NULL, lmp_vec_dot_q6_K_q8_K_avx512, lmp_gemm_q6_K_q8_K_avx512,
             lmp_gemm_few_q6_K_q8_K_avx512, lmp_gemm_q6_K_r16_q8_K_avx512),
        ROW(Q8_K, Q8_K, lmp_to_float_q8_K_ref, lmp_from_float_q8_K_avx512, NULL, NULL),
};
#define TRAITS_AVX2 traits_avx2
#define TRAITS_AVX512 traits_avx512
#else
#define TRAITS_AVX2 traits_scalar
#define TRAITS_AVX512 traits_scalar
#endif

static const struct lmp_quant_traits *const tables[LMP_ISA_COUNT] = {
        [LMP_ISA_SCALAR] = traits_scalar,
        [LMP_ISA_AVX2] = TRAITS_AVX2,
        [LMP_ISA_AVX512] = TRAITS_AVX512,
};

const struct lmp_quant_traits *lmp_quant_traits(enum lmp_type t, enum lmp_isa isa) {
        if ((unsigned)t >= LMP_TYPE_COUNT || (unsigned)isa >= LMP_ISA_COUNT)
                return NULL;
        const struct lmp_quant_traits *tr = &tables[isa][t];
        return tr->to_float ? tr : NULL;
}

/* The GGML tensor type ids that GGUF files use, with the two facts the file
 * format needs about each: how many values a block holds and how many bytes
 * it takes. The numeric ids are part of the file format and never change.
 * Kernels for the types we compute with live in src/quant/ (its traits table
 * is indexed by the same ids); a type listed here without kernels is still
 * named, so that a file using it is reported by name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lmp_type {
        LMP_TYPE_F32 = 0,
        LMP_TYPE_F16 = 1,
        LMP_TYPE_Q4_0 = 2,
        LMP_TYPE_Q4_1 = 3,
        /* 4, 5: Q4_2, Q4_3, removed from GGML */
        LMP_TYPE_Q5_0 = 6,
        LMP_TYPE_Q5_1 = 7,
        LMP_TYPE_Q8_0 = 8,
        LMP_TYPE_Q8_1 = 9,
        LMP_TYPE_Q2_K = 10,
        LMP_TYPE_Q3_K = 11,
        LMP_TYPE_Q4_K = 12,
        LMP_TYPE_Q5_K = 13,
        LMP_TYPE_Q6_K = 14,
        LMP_TYPE_Q8_K = 15,
        LMP_TYPE_IQ2_XXS = 16,
        LMP_TYPE_IQ2_XS = 17,
        LMP_TYPE_IQ3_XXS = 18,
        LMP_TYPE_IQ1_S = 19,
        LMP_TYPE_IQ4_NL = 20,
        LMP_TYPE_IQ3_S = 21,
        LMP_TYPE_IQ2_S = 22,
        LMP_TYPE_IQ4_XS = 23,
        LMP_TYPE_I8 = 24,
        LMP_TYPE_I16 = 25,
        LMP_TYPE_I32 = 26,
        LMP_TYPE_I64 = 27,
        LMP_TYPE_F64 = 28,
        LMP_TYPE_IQ1_M = 29,
        LMP_TYPE_BF16 = 30,
        /* 31..33: Q4_0_4_4, Q4_0_4_8, Q4_0_8_8, removed from GGUF files */
        LMP_TYPE_TQ1_0 = 34,
        LMP_TYPE_TQ2_0 = 35,
        /* 36..38: IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8, removed */
        LMP_TYPE_MXFP4 = 39,
        LMP_TYPE_COUNT = 40,
};

/* Not file types: lmpool's own in-memory layouts of q4_K, q6_K, q4_0 and
 * q5_0 matrices, 16 rows interleaved (struct lmp_block_q4_Kx16 and
 * _q6_Kx16; q4_0 and q5_0 blocks whole, block i of the 16 rows side by
 * side: src/quant/repack.c), which the supervisor writes into a model's
 * weight store in place of the file's layout, tensor type id and all. Same
 * bytes per row as the type they come from. The reader takes them only from a
 * store (lmp_gguf_open_store()); in a file they are unknown types. The ids
 * are far above GGML's, so that GGML can never give them another meaning. */
#define LMP_TYPE_Q4_K_R16 0x4c501604u
#define LMP_TYPE_Q6_K_R16 0x4c501606u
#define LMP_TYPE_Q4_0_R16 0x4c501640u
#define LMP_TYPE_Q5_0_R16 0x4c501650u

/* The file type a repacked type was made from; 0 (f32, never repacked)
 * for any other id. */
static inline uint32_t lmp_type_r16_base(uint32_t type) {
        return type == LMP_TYPE_Q4_K_R16 ? 12u /* Q4_K */
             : type == LMP_TYPE_Q6_K_R16 ? 14u /* Q6_K */
             : type == LMP_TYPE_Q4_0_R16 ? 2u  /* Q4_0 */
             : type == LMP_TYPE_Q5_0_R16 ? 6u  /* Q5_0 */
                                         : 0u;
}

/* The repacked type the store makes of a file type; 0 for a type it
 * leaves as it is. The inverse of lmp_type_r16_base(). */
static inline uint32_t lmp_type_r16_of(uint32_t type) {
        return type == 12u /* Q4_K */ ? LMP_TYPE_Q4_K_R16
             : type == 14u /* Q6_K */ ? LMP_TYPE_Q6_K_R16
             : type == 2u  /* Q4_0 */ ? LMP_TYPE_Q4_0_R16
             : type == 6u  /* Q5_0 */ ? LMP_TYPE_Q5_0_R16
                                      : 0u;
}

struct lmp_type_info {
        const char *name;     /* GGML's name: "f32", "q4_K", ... (NULL: unused id) */
        uint32_t blck_size;   /* values per block */
        uint32_t type_size;   /* bytes per block */
};

/* NULL for an id that is not a known GGML type. */
const struct lmp_type_info *lmp_type_info(uint32_t type);

/* The type's name, or NULL for an unknown id. */
const char *lmp_type_name(uint32_t type);

/* Looks a type up by its GGML name (case-insensitive); -1 if none. */
int lmp_type_from_name(const char *name);

/* Bytes taken by one row of n values; 0 when n is not a multiple of the
 * block size or the type is unknown. */
uint64_t lmp_type_row_size(uint32_t type, uint64_t n);

/* Weight quantizers: f32 rows into the GGML block formats that GGUF files
 * store (f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K,
 * q6_K). These are the reference algorithms that llama.cpp's quantizer
 * applies when it has no importance matrix, reproduced so that a file we
 * write is as good as the one llama-quantize writes from the same source.
 * They are offline code (quantize, mkmodel), written for clarity and
 * determinism rather than speed: the same input always gives the same bytes.
 * (Half and bfloat16 conversions are in quant/fp16.h.) */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "gguf/types.h"

/* True when lmp_quantize_row() can produce type t. */
bool lmp_quantize_supported(uint32_t t);

/* Quantizes n values of x into y (lmp_type_row_size(t, n) bytes). n must be
 * a multiple of the type's block size (-EINVAL otherwise); an unsupported
 * type is -ENOTSUP; a NaN or infinite input value is -EDOM for the block
 * types (f16 and bf16 store them as they are). y is unspecified on failure. */
int lmp_quantize_row(uint32_t t, const float *x, void *y, int64_t n);

/* nrows rows of n_per_row values each, rows contiguous in x and in y. */
int lmp_quantize(uint32_t t, const float *x, void *y, int64_t nrows, int64_t n_per_row);

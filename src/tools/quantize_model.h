/* Model quantization: reads a GGUF model and writes it again with its
 * weight matrices converted to a file type's tensor mix (tools/mix.h),
 * tensor by tensor, so that memory stays bounded by the largest output
 * tensor plus one f32 row per thread. Metadata is copied, with
 * general.file_type set to the new file type. Inputs are normally f32, f16
 * or bf16; a matrix in a block type (q4_K, ...) is decoded and quantized
 * again, which adds the new type's error to the old one's (llama.cpp asks
 * for --allow-requantize for that). A type without a decoder is an error
 * naming the tensor. */
#pragma once

#include <stdint.h>

#include "common/error.h"
#include "tools/mix.h"

/* general.quantization_version of the files we write. */
#define LMP_QUANTIZATION_VERSION 2

/* Called after each tensor (i counts from 1 to n). */
typedef void (*lmp_progress_fn)(void *ctx, uint64_t i, uint64_t n, const char *name,
                                uint32_t type, uint64_t bytes);

struct lmp_quantize_opts {
        int nthreads;                   /* < 1: 1 */
        lmp_progress_fn progress;       /* may be NULL */
        void *progress_ctx;
};

int lmp_quantize_model(const char *in_path, const char *out_path, const struct lmp_ftype *ft,
                       const struct lmp_quantize_opts *opts, struct lmp_error *err);

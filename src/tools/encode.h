/* Encoding one tensor, row by row, into a GGML type on several threads.
 * The rows come from a callback (the rows of an input tensor converted to
 * f32, or rows of random numbers), so that no f32 copy of a whole tensor is
 * ever held: each thread owns one row buffer. Rows are split into
 * contiguous ranges per thread and every row is encoded independently, so
 * the output does not depend on the thread count. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "gguf/gguf.h"

/* Fills out[0..n_per_row) with row `row`. Returns 0 or a negative errno
 * code. Called concurrently from several threads for different rows. */
typedef int (*lmp_row_source_fn)(void *ctx, int64_t row, float *out);

/* dst holds nrows * lmp_type_row_size(type, n_per_row) bytes. nthreads < 1
 * counts as 1. Returns the first error of the source or the quantizer. */
int lmp_encode_tensor(uint32_t type, void *dst, int64_t nrows, int64_t n_per_row,
                      lmp_row_source_fn src, void *ctx, int nthreads);

/* Converts n values of a row of a weight type (f32, f16, bf16 and the block
 * types the kernels decode) to f32; -ENOTSUP for other types. */
int lmp_row_to_f32(uint32_t type, const void *src, float *out, int64_t n);
bool lmp_row_to_f32_supported(uint32_t type);

/* The tensors' data of a model file being written, in the writer's order:
 * data() gives tensor i's bytes, encoded into buf (which the caller sized
 * for its largest tensor) or its own (a tensor copied as it is); it fills
 * err when it fails. written(), which may be NULL, is told of each tensor
 * once its bytes are in the file. */
struct lmp_tensor_stream {
        uint64_t n;
        void *buf;
        int (*data)(void *ctx, uint64_t i, void *buf, const void **ret_data, uint64_t *ret_size,
                    struct lmp_error *err);
        void (*written)(void *ctx, uint64_t i, uint64_t size);
        void *ctx;
};

/* Writes out_path atomically (a temporary file renamed over it only when
 * everything is written): w's header and metadata, then each tensor's
 * data from s. Returns 0 or a negative errno code with err filled. */
int lmp_write_model_file(struct lmp_gguf_writer *w, const char *out_path, const struct lmp_tensor_stream *s,
                         struct lmp_error *err);

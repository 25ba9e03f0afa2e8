/* Weight layouts of our own, made from a file's layout once, when the
 * supervisor builds a model's weight store, and read by kernels that want
 * them: today q4_K_r16 (struct lmp_block_q4_Kx16), 16 rows of q4_K
 * interleaved block by block. Conversions both ways are exact (no value
 * changes, only its place), and a matrix keeps its size, so a store can be
 * repacked in place. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bytes of one 16-row group of q4_K rows of n values (n % 256 == 0). */
size_t lmp_q4_K_r16_group_size(int64_t n);

/* 16 q4_K rows of n values, row_size bytes apart at rows, into one group at
 * dst (lmp_q4_K_r16_group_size(n) bytes, not overlapping rows). */
void lmp_repack_q4_K_r16(const void *restrict rows, size_t row_size, void *restrict dst, int64_t n);

/* The inverse: a group back into 16 q4_K rows. */
void lmp_unpack_q4_K_r16(const void *restrict src, void *restrict rows, size_t row_size, int64_t n);

/* Rewrites n_rows (a multiple of 16) contiguous q4_K rows of n values at
 * data as groups, in place; tmp holds lmp_q4_K_r16_group_size(n) bytes. */
void lmp_repack_q4_K_r16_inplace(void *data, int64_t n, int64_t n_rows, void *tmp);

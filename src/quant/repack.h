/* Weight layouts of our own, made from a file's layout once, when the
 * supervisor builds a model's weight store, and read by kernels that want
 * them: q4_K_r16 and q6_K_r16 (struct lmp_block_q4_Kx16 and _q6_Kx16 in
 * blocks.h), 16 rows of q4_K or q6_K interleaved block by block, and
 * q4_0_r16 and q5_0_r16, whose groups hold block i of their 16 rows side
 * by side, each block as the file has it.
 * Conversions both ways are exact (no value changes, only its place), and
 * a matrix keeps its size, so a store can be repacked in place. `type` is
 * the file's type (LMP_TYPE_Q4_K, Q6_K, Q4_0 or Q5_0) and n a multiple of
 * its block (256 or 32 values). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bytes of one 16-row group of rows of n values. */
size_t lmp_r16_group_size(uint32_t type, int64_t n);

/* 16 rows of n values, row_size bytes apart at rows, into one group at
 * dst (lmp_r16_group_size() bytes, not overlapping rows). */
void lmp_repack_r16(uint32_t type, const void *restrict rows, size_t row_size, void *restrict dst, int64_t n);

/* The inverse: a group back into 16 rows. */
void lmp_unpack_r16(uint32_t type, const void *restrict src, void *restrict rows, size_t row_size, int64_t n);

/* Row r (0..15) of a group, block by block: block i of it into *block
 * (144 bytes for q4_K, 210 for q6_K, 18 for q4_0, 22 for q5_0), in the
 * file's layout. */
void lmp_unpack_r16_block(uint32_t type, const void *restrict group, int r, int64_t i, void *restrict block);

struct lmp_quant_traits;

/* Rows [begin, end) of a repacked matrix part times nt activation rows (y,
 * by bytes apart), through tr->gemm_r16: part row r is row r + row0 of the
 * groups at data (a fused matrix's part, or a thread's share of rows, may
 * start or end inside a group), and its product with token t lands in
 * out[t * ld + r]. Whole groups go straight to the kernel; a group cut at
 * either end goes through a small buffer, of which only the range's rows
 * are kept, so nothing outside [begin, end) is written. */
void lmp_gemm_r16_rows(const struct lmp_quant_traits *tr, int n, const void *data, int64_t row0, int64_t begin,
                       int64_t end, int nt, const void *y, size_t by, float *out, size_t ld);

/* Rewrites n_rows (a multiple of 16) contiguous rows of n values at data
 * as groups, in place; tmp holds lmp_r16_group_size() bytes. */
void lmp_repack_r16_inplace(uint32_t type, void *data, int64_t n, int64_t n_rows, void *tmp);

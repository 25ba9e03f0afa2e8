/* The quantized block layouts of GGUF files, byte for byte as ggml defines
 * them (ggml-common.h). A row of a quantized tensor is an array of these
 * blocks; the model reads them in place from the mapped file, so the structs
 * are packed and their sizes are checked against the type table. Activation
 * blocks (Q8_0, Q8_1, Q8_K) use the same layouts. */
#pragma once

#include <assert.h>
#include <stdint.h>

#include "quant/fp16.h"

#define LMP_QK4_0 32
#define LMP_QK4_1 32
#define LMP_QK5_0 32
#define LMP_QK5_1 32
#define LMP_QK8_0 32
#define LMP_QK8_1 32
#define LMP_QK_K 256
#define LMP_K_SCALE_SIZE 12

/* 4-bit, x = d * (q - 8); low nibbles hold values 0..15, high 16..31. */
struct __attribute__((packed)) lmp_block_q4_0 {
        lmp_fp16 d;
        uint8_t qs[LMP_QK4_0 / 2];
};

/* 4-bit with offset, x = d * q + m. */
struct __attribute__((packed)) lmp_block_q4_1 {
        lmp_fp16 d;
        lmp_fp16 m;
        uint8_t qs[LMP_QK4_1 / 2];
};

/* 5-bit, x = d * (q - 16); bit 4 of value j is bit j of qh. */
struct __attribute__((packed)) lmp_block_q5_0 {
        lmp_fp16 d;
        uint8_t qh[4];
        uint8_t qs[LMP_QK5_0 / 2];
};

/* 5-bit with offset, x = d * q + m. */
struct __attribute__((packed)) lmp_block_q5_1 {
        lmp_fp16 d;
        lmp_fp16 m;
        uint8_t qh[4];
        uint8_t qs[LMP_QK5_1 / 2];
};

/* 8-bit, x = d * q. */
struct __attribute__((packed)) lmp_block_q8_0 {
        lmp_fp16 d;
        int8_t qs[LMP_QK8_0];
};

/* 8-bit activations paired with Q4_1/Q5_1; s = d * sum(qs). */
struct __attribute__((packed)) lmp_block_q8_1 {
        lmp_fp16 d;
        lmp_fp16 s;
        int8_t qs[LMP_QK8_1];
};

/* 2-bit super-block: 16 sub-blocks of 16, each with a 4-bit scale (low
 * nibble) and 4-bit min (high nibble); x = d * sc * q - dmin * m. */
struct __attribute__((packed)) lmp_block_q2_K {
        uint8_t scales[LMP_QK_K / 16];
        uint8_t qs[LMP_QK_K / 4];
        lmp_fp16 d;
        lmp_fp16 dmin;
};

/* 3-bit super-block: low 2 bits in qs, the high bit in hmask (a clear bit
 * subtracts 4), 16 six-bit scales packed in 12 bytes, offset by 32. */
struct __attribute__((packed)) lmp_block_q3_K {
        uint8_t hmask[LMP_QK_K / 8];
        uint8_t qs[LMP_QK_K / 4];
        uint8_t scales[12];
        lmp_fp16 d;
};

/* 4-bit super-block: 8 sub-blocks of 32 with 6-bit scales and mins packed
 * in 12 bytes; x = d * sc * q - dmin * m. */
struct __attribute__((packed)) lmp_block_q4_K {
        lmp_fp16 d;
        lmp_fp16 dmin;
        uint8_t scales[LMP_K_SCALE_SIZE];
        uint8_t qs[LMP_QK_K / 2];
};

/* 5-bit super-block: as Q4_K plus one high bit per value in qh. */
struct __attribute__((packed)) lmp_block_q5_K {
        lmp_fp16 d;
        lmp_fp16 dmin;
        uint8_t scales[LMP_K_SCALE_SIZE];
        uint8_t qh[LMP_QK_K / 8];
        uint8_t qs[LMP_QK_K / 2];
};

/* 6-bit super-block: low 4 bits in ql, high 2 in qh, 16 signed 8-bit
 * scales; x = d * sc * (q - 32). */
struct __attribute__((packed)) lmp_block_q6_K {
        uint8_t ql[LMP_QK_K / 2];
        uint8_t qh[LMP_QK_K / 4];
        int8_t scales[LMP_QK_K / 16];
        lmp_fp16 d;
};

/* 8-bit activations for the K types: float scale, and the sums of each
 * group of 16 quants (used for the min terms). */
struct __attribute__((packed)) lmp_block_q8_K {
        float d;
        int8_t qs[LMP_QK_K];
        int16_t bsums[LMP_QK_K / 16];
};

/* lmpool's repacked q4_K (LMP_TYPE_Q4_K_R16, made by src/quant/repack.c):
 * the super-blocks of 16 consecutive rows at one column range, interleaved
 * so that a kernel reads one stream for 16 rows and keeps one row per
 * 32-bit lane, summing with no reduction across lanes. The same 2304 bytes
 * as the 16 q4_K blocks it replaces. */
#define LMP_R16_ROWS 16
struct __attribute__((packed)) lmp_block_q4_Kx16 {
        lmp_fp16 d[LMP_R16_ROWS];
        lmp_fp16 dmin[LMP_R16_ROWS];
        /* byte i of row r's 12 packed scale bytes at scales[i][r] */
        uint8_t scales[LMP_K_SCALE_SIZE][LMP_R16_ROWS];
        /* 8 values of each row per chunk: chunk s holds values v .. v + 7
         * (v = lmp_q4_Kx16_first(s)) of row r in qs[s][r], byte i with
         * value v + i in its low nibble and v + 4 + i in its high one. The
         * chunks of sub-blocks j and j + 4 (which share their scale bytes)
         * come together, in the order a kernel reads them: 0, 4, 1, 5, ... */
        uint8_t qs[LMP_QK_K / 8][LMP_R16_ROWS][4];
};

/* Chunk cc (0..3) of 32-value sub-block j (0..7) is chunk number ... */
static inline int lmp_q4_Kx16_chunk(int j, int cc) {
        return 8 * (j & 3) + 4 * (j >> 2) + cc;
}
/* ... and chunk s starts at value: */
static inline int lmp_q4_Kx16_first(int s) {
        return 32 * (s / 8 + 4 * ((s / 4) & 1)) + 8 * (s % 4);
}

/* lmpool's repacked q6_K (LMP_TYPE_Q6_K_R16), as q4_Kx16: per 16-value
 * sub-block (one scale each), the low 4 bits of its values as two 8-value
 * chunks laid out as q4_Kx16's, then their high 2 bits: byte i of row r's
 * 4 bytes holds, from bit 0 up, those of values 16p + i, 16p + 8 + i,
 * 16p + 4 + i and 16p + 12 + i. Values are stored as in q6_K, 0..63,
 * standing for -32..31. The same 3360 bytes as 16 q6_K blocks. */
struct __attribute__((packed)) lmp_block_q6_Kx16 {
        lmp_fp16 d[LMP_R16_ROWS];
        int8_t scales[LMP_QK_K / 16][LMP_R16_ROWS];     /* sub-block p of row r at [p][r] */
        struct __attribute__((packed)) {
                uint8_t ql[2][LMP_R16_ROWS][4];
                uint8_t qh[LMP_R16_ROWS][4];
        } sub[LMP_QK_K / 16];
};

static_assert(sizeof(struct lmp_block_q4_Kx16) == LMP_R16_ROWS * 144, "q4_Kx16 block size");
static_assert(sizeof(struct lmp_block_q6_Kx16) == LMP_R16_ROWS * 210, "q6_Kx16 block size");
static_assert(sizeof(struct lmp_block_q4_0) == 18, "q4_0 block size");
static_assert(sizeof(struct lmp_block_q4_1) == 20, "q4_1 block size");
static_assert(sizeof(struct lmp_block_q5_0) == 22, "q5_0 block size");
static_assert(sizeof(struct lmp_block_q5_1) == 24, "q5_1 block size");
static_assert(sizeof(struct lmp_block_q8_0) == 34, "q8_0 block size");
static_assert(sizeof(struct lmp_block_q8_1) == 36, "q8_1 block size");
static_assert(sizeof(struct lmp_block_q2_K) == 84, "q2_K block size");
static_assert(sizeof(struct lmp_block_q3_K) == 110, "q3_K block size");
static_assert(sizeof(struct lmp_block_q4_K) == 144, "q4_K block size");
static_assert(sizeof(struct lmp_block_q5_K) == 176, "q5_K block size");
static_assert(sizeof(struct lmp_block_q6_K) == 210, "q6_K block size");
static_assert(sizeof(struct lmp_block_q8_K) == 292, "q8_K block size");

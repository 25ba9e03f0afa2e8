/* Conversions between q4_K / q6_K rows and their 16-row layouts (see
 * blocks.h and repack.h). Each q4_K block stores value 64l + i in the low
 * nibble of qs[32l + i] and 64l + 32 + i in its high nibble (l < 4,
 * i < 32); q6_K splits each 6-bit value into a nibble of ql and two bits of
 * qh in a similar pattern (values_q6_K below). The groups store 8 values
 * v .. v + 7 of a row as four bytes (low nibble v + i, high nibble
 * v + 4 + i), so that four consecutive activation bytes pair with each
 * nibble half of a 32-bit lane.
 *
 * q4_0 and q5_0 groups keep their blocks whole: block i of row r is block
 * 16 i + r of the group, so that a decode step reads one stream, block i of
 * all 16 rows, where row by row it read 16 rows of a few hundred bytes
 * each; the kernel shares each activation block among the 16. */
#include "quant/repack.h"

#include <string.h>

#include "gguf/types.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* The block size of a type whose groups keep whole blocks; 0 for q4_K and q6_K. */
static size_t whole_block(uint32_t type) {
        return type == LMP_TYPE_Q4_0 ? sizeof(struct lmp_block_q4_0)
             : type == LMP_TYPE_Q5_0 ? sizeof(struct lmp_block_q5_0) : 0;
}

size_t lmp_r16_group_size(uint32_t type, int64_t n) {
        const size_t w = whole_block(type);
        if (w)
                return (size_t)(n / 32) * LMP_R16_ROWS * w;
        const size_t b = type == LMP_TYPE_Q6_K ? sizeof(struct lmp_block_q6_Kx16) : sizeof(struct lmp_block_q4_Kx16);
        return (size_t)(n / LMP_QK_K) * b;
}

static void repack_whole(size_t bs, const void *restrict rows, size_t row_size, void *restrict dst, int64_t n) {
        for (int64_t i = 0; i < n / 32; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++)
                        memcpy((uint8_t *)dst + ((size_t)i * LMP_R16_ROWS + (size_t)r) * bs,
                               (const uint8_t *)rows + (size_t)r * row_size + (size_t)i * bs, bs);
}

static void unpack_whole(size_t bs, const void *restrict src, void *restrict rows, size_t row_size, int64_t n) {
        for (int64_t i = 0; i < n / 32; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++)
                        memcpy((uint8_t *)rows + (size_t)r * row_size + (size_t)i * bs,
                               (const uint8_t *)src + ((size_t)i * LMP_R16_ROWS + (size_t)r) * bs, bs);
}

/* A block's 256 values in order (q6_K's as stored, 0..63). */
static void values_q4_K(const struct lmp_block_q4_K *b, uint8_t v[LMP_QK_K]) {
        for (int l = 0; l < LMP_QK_K / 64; l++)
                for (int i = 0; i < 32; i++) {
                        v[64 * l + i] = b->qs[32 * l + i] & 0x0f;
                        v[64 * l + 32 + i] = b->qs[32 * l + i] >> 4;
                }
}

static void values_q6_K(const struct lmp_block_q6_K *b, uint8_t v[LMP_QK_K]) {
        for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
                uint8_t *a = v + 128 * h;
                for (int l = 0; l < 32; l++) {
                        a[l] = (uint8_t)((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4);
                        a[l + 32] = (uint8_t)((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4);
                        a[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
                        a[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
                }
        }
}

static void store_q6_K(struct lmp_block_q6_K *b, const uint8_t v[LMP_QK_K]) {
        memset(b->ql, 0, sizeof(b->ql));
        memset(b->qh, 0, sizeof(b->qh));
        for (int h = 0; h < 2; h++) {
                uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
                const uint8_t *a = v + 128 * h;
                for (int l = 0; l < 32; l++) {
                        ql[l] = (uint8_t)((a[l] & 0x0f) | (a[l + 64] & 0x0f) << 4);
                        ql[l + 32] = (uint8_t)((a[l + 32] & 0x0f) | (a[l + 96] & 0x0f) << 4);
                        qh[l] = (uint8_t)((a[l] >> 4) | (a[l + 32] >> 4) << 2 | (a[l + 64] >> 4) << 4 |
                                          (a[l + 96] >> 4) << 6);
                }
        }
}

/* 8 values v .. v + 7 (their low nibbles) as a lane's 4 bytes. */
static void put_chunk(uint8_t out[4], const uint8_t *v) {
        for (int i = 0; i < 4; i++)
                out[i] = (uint8_t)((v[i] & 0x0f) | (v[4 + i] & 0x0f) << 4);
}

static void repack_q4_K(const void *restrict rows, size_t row_size, void *restrict dst, int64_t n) {
        struct lmp_block_q4_Kx16 *g = dst;
        uint8_t v[LMP_QK_K];
        for (int64_t i = 0; i < n / LMP_QK_K; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++) {
                        const struct lmp_block_q4_K *b =
                                (const struct lmp_block_q4_K *)((const uint8_t *)rows + (size_t)r * row_size) + i;
                        g[i].d[r] = b->d;
                        g[i].dmin[r] = b->dmin;
                        for (int k = 0; k < LMP_K_SCALE_SIZE; k++)
                                g[i].scales[k][r] = b->scales[k];
                        values_q4_K(b, v);
                        for (int c = 0; c < LMP_QK_K / 8; c++)
                                put_chunk(g[i].qs[c][r], v + lmp_q4_Kx16_first(c));
                }
}

static void unpack_block_q4_K(const struct lmp_block_q4_Kx16 *g, int r, struct lmp_block_q4_K *b) {
        uint8_t v[LMP_QK_K];
        b->d = g->d[r];
        b->dmin = g->dmin[r];
        for (int k = 0; k < LMP_K_SCALE_SIZE; k++)
                b->scales[k] = g->scales[k][r];
        for (int c = 0; c < LMP_QK_K / 8; c++)
                for (int j = 0; j < 4; j++) {
                        v[lmp_q4_Kx16_first(c) + j] = g->qs[c][r][j] & 0x0f;
                        v[lmp_q4_Kx16_first(c) + 4 + j] = g->qs[c][r][j] >> 4;
                }
        for (int l = 0; l < LMP_QK_K / 64; l++)
                for (int k = 0; k < 32; k++)
                        b->qs[32 * l + k] = (uint8_t)(v[64 * l + k] | v[64 * l + 32 + k] << 4);
}

static void unpack_q4_K(const void *restrict src, void *restrict rows, size_t row_size, int64_t n) {
        const struct lmp_block_q4_Kx16 *g = src;
        for (int64_t i = 0; i < n / LMP_QK_K; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++)
                        unpack_block_q4_K(&g[i], r,
                                          (struct lmp_block_q4_K *)((uint8_t *)rows + (size_t)r * row_size) + i);
}

static void repack_q6_K(const void *restrict rows, size_t row_size, void *restrict dst, int64_t n) {
        struct lmp_block_q6_Kx16 *g = dst;
        uint8_t v[LMP_QK_K];
        for (int64_t i = 0; i < n / LMP_QK_K; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++) {
                        const struct lmp_block_q6_K *b =
                                (const struct lmp_block_q6_K *)((const uint8_t *)rows + (size_t)r * row_size) + i;
                        g[i].d[r] = b->d;
                        values_q6_K(b, v);
                        for (int p = 0; p < LMP_QK_K / 16; p++) {
                                const uint8_t *a = v + 16 * p;
                                g[i].scales[p][r] = b->scales[p];
                                put_chunk(g[i].sub[p].ql[0][r], a);
                                put_chunk(g[i].sub[p].ql[1][r], a + 8);
                                for (int k = 0; k < 4; k++)
                                        g[i].sub[p].qh[r][k] = (uint8_t)((a[k] >> 4) | (a[8 + k] >> 4) << 2 |
                                                                         (a[4 + k] >> 4) << 4 | (a[12 + k] >> 4) << 6);
                        }
                }
}

static void unpack_block_q6_K(const struct lmp_block_q6_Kx16 *g, int r, struct lmp_block_q6_K *b) {
        uint8_t v[LMP_QK_K];
        b->d = g->d[r];
        for (int p = 0; p < LMP_QK_K / 16; p++) {
                uint8_t *a = v + 16 * p;
                b->scales[p] = g->scales[p][r];
                for (int k = 0; k < 4; k++) {
                        const uint8_t h = g->sub[p].qh[r][k];
                        const uint8_t l0 = g->sub[p].ql[0][r][k], l1 = g->sub[p].ql[1][r][k];
                        a[k] = (uint8_t)((l0 & 0x0f) | (h & 3) << 4);
                        a[4 + k] = (uint8_t)((l0 >> 4) | ((h >> 4) & 3) << 4);
                        a[8 + k] = (uint8_t)((l1 & 0x0f) | ((h >> 2) & 3) << 4);
                        a[12 + k] = (uint8_t)((l1 >> 4) | ((h >> 6) & 3) << 4);
                }
        }
        store_q6_K(b, v);
}

static void unpack_q6_K(const void *restrict src, void *restrict rows, size_t row_size, int64_t n) {
        const struct lmp_block_q6_Kx16 *g = src;
        for (int64_t i = 0; i < n / LMP_QK_K; i++)
                for (int r = 0; r < LMP_R16_ROWS; r++)
                        unpack_block_q6_K(&g[i], r,
                                          (struct lmp_block_q6_K *)((uint8_t *)rows + (size_t)r * row_size) + i);
}

void lmp_unpack_r16_block(uint32_t type, const void *restrict group, int r, int64_t i, void *restrict block) {
        const size_t w = whole_block(type);
        if (w)
                memcpy(block, (const uint8_t *)group + ((size_t)i * LMP_R16_ROWS + (size_t)r) * w, w);
        else if (type == LMP_TYPE_Q6_K)
                unpack_block_q6_K((const struct lmp_block_q6_Kx16 *)group + i, r, block);
        else
                unpack_block_q4_K((const struct lmp_block_q4_Kx16 *)group + i, r, block);
}

void lmp_repack_r16(uint32_t type, const void *restrict rows, size_t row_size, void *restrict dst, int64_t n) {
        const size_t w = whole_block(type);
        if (w)
                repack_whole(w, rows, row_size, dst, n);
        else
                (type == LMP_TYPE_Q6_K ? repack_q6_K : repack_q4_K)(rows, row_size, dst, n);
}

void lmp_unpack_r16(uint32_t type, const void *restrict src, void *restrict rows, size_t row_size, int64_t n) {
        const size_t w = whole_block(type);
        if (w)
                unpack_whole(w, src, rows, row_size, n);
        else
                (type == LMP_TYPE_Q6_K ? unpack_q6_K : unpack_q4_K)(src, rows, row_size, n);
}

void lmp_repack_r16_inplace(uint32_t type, void *data, int64_t n, int64_t n_rows, void *tmp) {
        const size_t gsz = lmp_r16_group_size(type, n), row_size = gsz / LMP_R16_ROWS;
        for (int64_t r = 0; r + LMP_R16_ROWS <= n_rows; r += LMP_R16_ROWS) {
                uint8_t *p = (uint8_t *)data + (size_t)r * row_size;
                memcpy(tmp, p, gsz);
                lmp_repack_r16(type, tmp, row_size, p, n);
        }
}

#define R16_TOK_BLOCK 64        /* tokens per call of the kernel */

void lmp_gemm_r16_rows(const struct lmp_quant_traits *tr, int n, const void *data, int64_t row0, int64_t begin,
                       int64_t end, int nt, const void *y, size_t by, float *out, size_t ld) {
        const int64_t G = LMP_R16_ROWS;
        const size_t gsz = lmp_r16_group_size(tr->type, n);
        const int64_t a = begin + row0, b = end + row0;        /* rows of the grouped data */
        const int64_t f0 = (a + G - 1) / G, f1 = b / G;         /* its whole groups [f0, f1) */
        const uint8_t *wd = data, *yb = y;
        float tmp[LMP_R16_ROWS * R16_TOK_BLOCK];
        for (int t0 = 0; t0 < nt; t0 += R16_TOK_BLOCK) {
                const int ntb = nt - t0 < R16_TOK_BLOCK ? nt - t0 : R16_TOK_BLOCK;
                const uint8_t *yt = yb + (size_t)t0 * by;
                float *o = out + (size_t)t0 * ld;               /* column c is grouped row c + row0 */
                if (f0 < f1)
                        tr->gemm_r16(n, (int)(f1 - f0), ntb, wd + (size_t)f0 * gsz, yt, by, o + (f0 * G - row0), ld);
                for (int64_t g = a / G; g * G < b; g++) {
                        if (g >= f0 && g < f1)
                                continue;
                        tr->gemm_r16(n, 1, ntb, wd + (size_t)g * gsz, yt, by, tmp, (size_t)G);
                        const int64_t r_lo = a > g * G ? a : g * G, r_hi = b < g * G + G ? b : g * G + G;
                        for (int t = 0; t < ntb; t++)
                                for (int64_t r = r_lo; r < r_hi; r++)
                                        o[(size_t)t * ld + (size_t)(r - row0)] = tmp[t * G + (r - g * G)];
                        if (g < f0 && f0 < f1)
                                g = f1 - 1;     /* on to the cut group after the whole ones */
                }
        }
}

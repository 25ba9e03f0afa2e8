/* Conversions between q4_K rows and the q4_K_r16 layout (see blocks.h and
 * repack.h). Each q4_K block stores value 64l + i in the low nibble of
 * qs[32l + i] and 64l + 32 + i in its high nibble (l < 4, i < 32); the
 * group stores 8 values v .. v + 7 of a row as four bytes (low nibble
 * v + i, high nibble v + 4 + i), so that four consecutive activation bytes
 * pair with each nibble half of a 32-bit lane. */
#include "quant/repack.h"

#include <string.h>

#include "quant/blocks.h"

size_t lmp_q4_K_r16_group_size(int64_t n) {
        return (size_t)(n / LMP_QK_K) * sizeof(struct lmp_block_q4_Kx16);
}

/* A q4_K block's 256 values in order. */
static void q4_K_values(const struct lmp_block_q4_K *b, uint8_t v[LMP_QK_K]) {
        for (int l = 0; l < LMP_QK_K / 64; l++)
                for (int i = 0; i < 32; i++) {
                        v[64 * l + i] = b->qs[32 * l + i] & 0x0f;
                        v[64 * l + 32 + i] = b->qs[32 * l + i] >> 4;
                }
}

void lmp_repack_q4_K_r16(const void *restrict rows, size_t row_size, void *restrict dst, int64_t n) {
        struct lmp_block_q4_Kx16 *g = dst;
        uint8_t v[LMP_QK_K];
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                for (int r = 0; r < LMP_R16_ROWS; r++) {
                        const struct lmp_block_q4_K *b =
                                (const struct lmp_block_q4_K *)((const uint8_t *)rows + (size_t)r * row_size) + i;
                        g[i].d[r] = b->d;
                        g[i].dmin[r] = b->dmin;
                        for (int k = 0; k < LMP_K_SCALE_SIZE; k++)
                                g[i].scales[k][r] = b->scales[k];
                        q4_K_values(b, v);
                        for (int c = 0; c < LMP_QK_K / 8; c++) {
                                const int f = lmp_q4_Kx16_first(c);
                                for (int j = 0; j < 4; j++)
                                        g[i].qs[c][r][j] = (uint8_t)(v[f + j] | v[f + 4 + j] << 4);
                        }
                }
        }
}

void lmp_unpack_q4_K_r16(const void *restrict src, void *restrict rows, size_t row_size, int64_t n) {
        const struct lmp_block_q4_Kx16 *g = src;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                for (int r = 0; r < LMP_R16_ROWS; r++) {
                        struct lmp_block_q4_K *b = (struct lmp_block_q4_K *)((uint8_t *)rows + (size_t)r * row_size) + i;
                        b->d = g[i].d[r];
                        b->dmin = g[i].dmin[r];
                        for (int k = 0; k < LMP_K_SCALE_SIZE; k++)
                                b->scales[k] = g[i].scales[k][r];
                        memset(b->qs, 0, sizeof(b->qs));
                        for (int c = 0; c < LMP_QK_K / 8; c++)
                                for (int h = 0; h < 2; h++)
                                        for (int j = 0; j < 4; j++) {
                                                const int k = lmp_q4_Kx16_first(c) + 4 * h + j;
                                                const uint8_t v = (uint8_t)((g[i].qs[c][r][j] >> (4 * h)) & 0x0f);
                                                b->qs[32 * (k / 64) + k % 32] |= (k % 64) < 32 ? v : (uint8_t)(v << 4);
                                        }
                }
        }
}

void lmp_repack_q4_K_r16_inplace(void *data, int64_t n, int64_t n_rows, void *tmp) {
        const size_t gsz = lmp_q4_K_r16_group_size(n), row_size = gsz / LMP_R16_ROWS;
        for (int64_t r = 0; r + LMP_R16_ROWS <= n_rows; r += LMP_R16_ROWS) {
                uint8_t *p = (uint8_t *)data + (size_t)r * row_size;
                memcpy(tmp, p, gsz);
                lmp_repack_q4_K_r16(tmp, row_size, p, n);
        }
}

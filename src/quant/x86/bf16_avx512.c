/* The AVX512-BF16 products (bf16gemm.h): VDPBF16PS on a tile of 32 rows
 * (two 16-row blocks of the packed weights, one register each per pair of
 * inputs) by 12 tokens (each token's pair of inputs broadcast from its bf16
 * row): 24 sums in registers, 24 instructions per pair of inputs against 2
 * loads of weights and 12 broadcasts. The inputs go in blocks of KC_PAIRS
 * pairs (a tile's 32 x 256 weights, 16 KiB, stay in L1 while every token
 * passes; the tokens' 512-byte slices of the block stay in L2 from one
 * tile of rows to the next), the sums to out after each block. */
#include <immintrin.h>

#include "quant/bf16gemm.h"
#include "quant/x86/common.h"

#define KC_PAIRS 128    /* the scalar twin's, bf16gemm.c */
#define NT 12           /* tokens per tile */

static inline __attribute__((always_inline)) void tile(const int mb, const int nt, int64_t np,
                                                       const uint16_t *w, size_t wblk, const uint16_t *x,
                                                       size_t xs, float *out, size_t ld, __mmask16 m0,
                                                       __mmask16 m1) {
        __m512 acc0[NT], acc1[NT];
#pragma GCC unroll 12
        for (int j = 0; j < nt; j++) {
                acc0[j] = _mm512_maskz_loadu_ps(m0, out + (size_t)j * ld);
                if (mb == 2)
                        acc1[j] = _mm512_maskz_loadu_ps(m1, out + (size_t)j * ld + 16);
        }
        for (int64_t p = 0; p < np; p++) {
                const __m512bh a0 = (__m512bh)_mm512_loadu_si512(w + p * 32);
                __m512bh a1 = a0;
                if (mb == 2)
                        a1 = (__m512bh)_mm512_loadu_si512(w + wblk + p * 32);
        #pragma GCC unroll 12
        for (int j = 0; j < nt; j++) {
                        const __m512bh b = (__m512bh)_mm512_set1_epi32(load_i32(x + (size_t)j * xs + 2 * p));
                        acc0[j] = _mm512_dpbf16_ps(acc0[j], a0, b);
                        if (mb == 2)
                                acc1[j] = _mm512_dpbf16_ps(acc1[j], a1, b);
                }
        }
#pragma GCC unroll 12
        for (int j = 0; j < nt; j++) {
                _mm512_mask_storeu_ps(out + (size_t)j * ld, m0, acc0[j]);
                if (mb == 2)
                        _mm512_mask_storeu_ps(out + (size_t)j * ld + 16, m1, acc1[j]);
        }
}

typedef void tile_fn(int64_t np, const uint16_t *w, size_t wblk, const uint16_t *x, size_t xs, float *out,
                     size_t ld, __mmask16 m0, __mmask16 m1);

#define TILE(MB, N)                                                                                   \
        static void tile_##MB##_##N(int64_t np, const uint16_t *w, size_t wblk, const uint16_t *x,    \
                                    size_t xs, float *out, size_t ld, __mmask16 m0, __mmask16 m1) {   \
                tile(MB, N, np, w, wblk, x, xs, out, ld, m0, m1);                                     \
        }
#define TILES(MB) TILE(MB, 1) TILE(MB, 2) TILE(MB, 3) TILE(MB, 4) TILE(MB, 5) TILE(MB, 6) TILE(MB, 7) \
        TILE(MB, 8) TILE(MB, 9) TILE(MB, 10) TILE(MB, 11) TILE(MB, 12)
TILES(1)
TILES(2)

static tile_fn *const tiles[2][NT + 1] = {
        { NULL, tile_1_1, tile_1_2, tile_1_3, tile_1_4, tile_1_5, tile_1_6, tile_1_7, tile_1_8, tile_1_9,
          tile_1_10, tile_1_11, tile_1_12 },
        { NULL, tile_2_1, tile_2_2, tile_2_3, tile_2_4, tile_2_5, tile_2_6, tile_2_7, tile_2_8, tile_2_9,
          tile_2_10, tile_2_11, tile_2_12 },
};

static inline __mmask16 rows_mask(int64_t rows) {
        return rows >= 16 ? (__mmask16)0xffff : rows <= 0 ? 0 : (__mmask16)((1u << rows) - 1);
}

void lmp_gemm_bf16_avx512(int64_t k, int64_t m, int64_t n, const uint16_t *w, const uint16_t *x, size_t xs,
                          float *out, size_t ld) {
        const int64_t kp = lmp_bf16_kp(k), np_all = kp / 2;
        const size_t wblk = 16 * (size_t)kp;
        for (int64_t p0 = 0; p0 < np_all; p0 += KC_PAIRS) {
                const int64_t np = np_all - p0 < KC_PAIRS ? np_all - p0 : KC_PAIRS;
                for (int64_t r0 = 0; r0 < m; r0 += 32) {
                        const int mb = m - r0 > 16 ? 2 : 1;
                        const __mmask16 m0 = rows_mask(m - r0), m1 = rows_mask(m - r0 - 16);
                        const uint16_t *wt = w + (size_t)(r0 / 16) * wblk + (size_t)p0 * 32;
                        for (int64_t t0 = 0; t0 < n; t0 += NT) {
                                const int nt = (int)(n - t0 < NT ? n - t0 : NT);
                                tiles[mb - 1][nt](np, wt, wblk, x + (size_t)t0 * xs + 2 * (size_t)p0, xs,
                                                  out + (size_t)t0 * ld + (size_t)r0, ld, m0, m1);
                        }
                }
        }
}

void lmp_bf16_from_f32_avx512(const float *x, int64_t k, uint16_t *dst) {
        int64_t i = 0;
        for (; i + 32 <= k; i += 32) {
                const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
                _mm512_storeu_si512(dst + i, (__m512i)v);
        }
        const int64_t rest = lmp_bf16_kp(k) - i;       /* the tail and the pad */
        if (rest > 0) {
                const int64_t r = k - i;
                const __mmask16 lo = rows_mask(r), hi = rows_mask(r - 16);
                const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + i + 16),
                                                       _mm512_maskz_loadu_ps(lo, x + i));
                _mm512_mask_storeu_epi16(dst + i, (__mmask32)((1ull << rest) - 1), (__m512i)v);
        }
}

/* 16 rows of 16 dwords (each a pair of bf16 values) to 16 columns: the
 * unpacks within 128-bit lanes gather each column's 4-row pieces, the lane
 * shuffles put the pieces in row order. */
static inline void transpose16(__m512i r[16]) {
        __m512i t[16], u[16];
        for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
        }
        for (int g = 0; g < 4; g++) {   /* u[4 g + c]: lane L holds column 4 L + c of rows 4 g to 4 g + 3 */
                u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
                u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
                u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
                u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
        }
        for (int c = 0; c < 4; c++) {
                const __m512i a = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
                const __m512i b = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
                const __m512i cc = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
                const __m512i d = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
                r[c] = _mm512_shuffle_i32x4(a, cc, 0x88);
                r[8 + c] = _mm512_shuffle_i32x4(a, cc, 0xdd);
                r[4 + c] = _mm512_shuffle_i32x4(b, d, 0x88);
                r[12 + c] = _mm512_shuffle_i32x4(b, d, 0xdd);
        }
}

/* Values [i, i + 32) of a row (left of them valid, the rest read as
 * zero) as 32 bf16. */
static inline __m512i load32(enum lmp_type type, const uint8_t *row, int64_t i, int64_t left) {
        const __mmask16 lo = rows_mask(left), hi = rows_mask(left - 16);
        switch (type) {
        case LMP_TYPE_BF16:
                return _mm512_maskz_loadu_epi16((__mmask32)lo | (__mmask32)hi << 16, row + 2 * i);
        case LMP_TYPE_F16:
                return (__m512i)_mm512_cvtne2ps_pbh(
                        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(hi, row + 2 * (i + 16))),
                        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lo, row + 2 * i)));
        default:
                return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, row + 4 * (i + 16)),
                                                    _mm512_maskz_loadu_ps(lo, row + 4 * i));
        }
}

void lmp_bf16_pack_avx512(enum lmp_type type, const void *w, int64_t m, int64_t k, size_t row_bytes,
                          uint16_t *dst) {
        const int64_t kp = lmp_bf16_kp(k), np = kp / 2;
        for (int64_t r0 = 0; r0 < m; r0 += 16) {
                uint16_t *blk = dst + (size_t)r0 * (size_t)kp;
                const int64_t nr = m - r0 < 16 ? m - r0 : 16;
                for (int64_t p0 = 0; p0 < np; p0 += 16) {
                        const int64_t i0 = 2 * p0;
                        __m512i r[16];
                        for (int64_t i = 0; i < 16; i++)
                                r[i] = i < nr ? load32(type, (const uint8_t *)w + (size_t)(r0 + i) * row_bytes, i0,
                                                       k - i0)
                                              : _mm512_setzero_si512();
                        transpose16(r);
                        const int64_t nc = np - p0 < 16 ? np - p0 : 16;
                        for (int64_t c = 0; c < nc; c++)
                                _mm512_storeu_si512(blk + (size_t)(p0 + c) * 32, r[c]);
                }
        }
}

/* An f16 value is a bf16 value when its f32 value's low 16 bits are zero. */
bool lmp_f16_is_bf16_avx512(const uint16_t *h, size_t n) {
        const __m512i low = _mm512_set1_epi32(0xffff);
        size_t i = 0;
        for (size_t i0 = 0; i0 < n; i0 = i) {
                const size_t i1 = n - i0 > 65536 ? i0 + 65536 : n;
                __m512i bad = _mm512_setzero_si512();
                for (; i + 16 <= i1; i += 16)
                        bad = _mm512_or_si512(bad, _mm512_castps_si512(_mm512_cvtph_ps(
                                                           _mm256_loadu_si256((const __m256i *)(h + i)))));
                if (i < i1) {
                        const __mmask16 mk = rows_mask((int64_t)(i1 - i));
                        bad = _mm512_or_si512(bad, _mm512_castps_si512(_mm512_cvtph_ps(
                                                           _mm256_maskz_loadu_epi16(mk, h + i))));
                        i = i1;
                }
                if (_mm512_test_epi32_mask(bad, low))
                        return false;
        }
        return true;
}

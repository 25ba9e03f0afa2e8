/* AVX-512 attention kernels (attn.h). Compiled with the AVX-512 level's
 * flags and only called when cpu.c has seen those features.
 *
 * The scores are the AVX2 level's (attn_avx2.c): with 16 positions per
 * block, the 16 accumulators' reduction costs more than their hd / 16
 * products each, and on this level's CPUs the 256-bit version measured
 * faster (a decode step's keys at 1024 positions: 2.4 against 3.0 ms).
 * wsum: the output rows in slices of 32 floats, up to 8 rows at a time: 16
 * accumulators; each position's value slice is loaded once and multiplied
 * by each row's weight.
 * softmax: vecmath.h's, 16 lanes at a time, the tail under a mask. */
#include <immintrin.h>
#include <math.h>

#include "quant/attn.h"

#define WROWS 8         /* output rows per pass of wsum */

/* vecmath.h's exp_vf4() on 16 lanes: 2^k exp(r), k = round(x / ln2). */
static inline __m512 exp16(__m512 x) {
        x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-86.0f)), _mm512_set1_ps(86.0f));
        const __m512 shift = _mm512_set1_ps(12582912.0f);
        __m512 kf = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), shift);
        __m512i k = _mm512_sub_epi32(_mm512_castps_si512(kf), _mm512_set1_epi32(0x4b400000));
        kf = _mm512_sub_ps(kf, shift);
        __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(0.693359375f)));
        r = _mm512_sub_ps(r, _mm512_mul_ps(kf, _mm512_set1_ps(-2.12194440e-4f)));
        __m512 p = _mm512_set1_ps(1.9875691500e-4f);
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
        p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
        return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(k, 23)));
}

static inline __m512d sum_pd(__m512d acc, __m512 v) {
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

void lmp_attn_softmax_avx512(float *row, int n, float scale) {
        const __m512 vs = _mm512_set1_ps(scale);
        __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
        int nb = n - n % 16;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int i = 0; i < nb; i += 16) {
                __m512 v = _mm512_mul_ps(_mm512_loadu_ps(row + i), vs);
                _mm512_storeu_ps(row + i, v);
                mx = _mm512_max_ps(mx, v);
        }
        if (tail) {
                __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + nb), vs);
                _mm512_mask_storeu_ps(row + nb, tail, v);
                mx = _mm512_mask_max_ps(mx, tail, mx, v);
        }
        const __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512d sum = _mm512_setzero_pd();
        for (int i = 0; i < nb; i += 16) {
                __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + i), vm));
                _mm512_storeu_ps(row + i, e);
                sum = sum_pd(sum, e);
        }
        if (tail) {
                __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + nb), vm)));
                _mm512_mask_storeu_ps(row + nb, tail, e);
                sum = sum_pd(sum, e);
        }
        const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(sum)));
        for (int i = 0; i < nb; i += 16)
                _mm512_storeu_ps(row + i, _mm512_mul_ps(_mm512_loadu_ps(row + i), inv));
        if (tail)
                _mm512_mask_storeu_ps(row + nb, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + nb), inv));
}

/* Rows i0 .. i0 + mr (mr <= WROWS) of o, floats d .. d + 16 nv (nv 1 or 2). */
static inline __attribute__((always_inline)) void wsum_slice(int nv, int mr, int L, const float *restrict s,
                                                             size_t lds, const float *restrict v, size_t ldv,
                                                             float *restrict o, size_t ldo) {
        __m512 acc[WROWS][2];
#pragma GCC unroll 8
        for (int i = 0; i < WROWS; i++)
                acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        for (int p = 0; p < L; p++) {
                const float *vp = v + (size_t)p * ldv;
                __m512 v0 = _mm512_loadu_ps(vp);
                __m512 v1 = nv == 2 ? _mm512_loadu_ps(vp + 16) : v0;
#pragma GCC unroll 8
                for (int i = 0; i < WROWS; i++) {
                        if (i >= mr)
                                break;
                        __m512 w = _mm512_set1_ps(s[(size_t)i * lds + (size_t)p]);
                        acc[i][0] = _mm512_fmadd_ps(w, v0, acc[i][0]);
                        if (nv == 2)
                                acc[i][1] = _mm512_fmadd_ps(w, v1, acc[i][1]);
                }
        }
        for (int i = 0; i < mr; i++) {
                _mm512_storeu_ps(o + (size_t)i * ldo, acc[i][0]);
                if (nv == 2)
                        _mm512_storeu_ps(o + (size_t)i * ldo + 16, acc[i][1]);
        }
}

void lmp_attn_wsum_avx512(int hd, int m, int L, const float *restrict s, size_t lds,
                          const float *restrict v, size_t ldv, float *restrict o, size_t ldo) {
        if (hd % 16) {
                lmp_attn_wsum_ref(hd, m, L, s, lds, v, ldv, o, ldo);
                return;
        }
        for (int i0 = 0; i0 < m; i0 += WROWS) {
                int mr = m - i0 < WROWS ? m - i0 : WROWS;
                const float *si = s + (size_t)i0 * lds;
                float *oi = o + (size_t)i0 * ldo;
                int d = 0;
                for (; d + 32 <= hd; d += 32) {
                        if (mr == WROWS)
                                wsum_slice(2, WROWS, L, si, lds, v + d, ldv, oi + d, ldo);
                        else
                                wsum_slice(2, mr, L, si, lds, v + d, ldv, oi + d, ldo);
                }
                if (d < hd)
                        wsum_slice(1, mr, L, si, lds, v + d, ldv, oi + d, ldo);
        }
}

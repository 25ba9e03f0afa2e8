/* AVX2 attention kernels (attn.h), the AVX-512 ones (attn_avx512.c) at half
 * the width: scores in blocks of 8 positions, 8 accumulators reduced by a
 * transposing sum; wsum in slices of 16 floats, up to 4 rows at a time (8
 * accumulators of the 16 registers). Compiled with the AVX2 level's flags
 * and only called when cpu.c has seen AVX2 and FMA. The softmax: vecmath.h's
 * on 8 lanes, the tail under a mask. */
#include <immintrin.h>
#include <math.h>

#include "quant/attn.h"
#include "quant/x86/common.h"

#define KBLK 8          /* positions per block of scores */
#define WROWS 4         /* output rows per pass of wsum */

/* (sum of a[0]'s lanes, ..., sum of a[7]'s lanes) */
static inline __m256 sum8x8(const __m256 *a) {
        __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
        __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
        __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
        return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

void lmp_attn_scores_avx2(int hd, int m, int L, const float *restrict q, size_t ldq,
                          const float *restrict k, size_t ldk, float *restrict s, size_t lds) {
        if (hd % 8) {
                lmp_attn_scores_ref(hd, m, L, q, ldq, k, ldk, s, lds);
                return;
        }
        int p = 0;
        for (; p + KBLK <= L; p += KBLK) {
                const float *kb = k + (size_t)p * ldk;
                for (int i = 0; i < m; i++) {
                        const float *qi = q + (size_t)i * ldq;
                        __m256 acc[KBLK];
#pragma GCC unroll 8
                        for (int j = 0; j < KBLK; j++)
                                acc[j] = _mm256_setzero_ps();
                        for (int d = 0; d < hd; d += 8) {
                                __m256 qv = _mm256_loadu_ps(qi + d);
#pragma GCC unroll 8
                                for (int j = 0; j < KBLK; j++)
                                        acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kb + (size_t)j * ldk + d),
                                                                 acc[j]);
                        }
                        _mm256_storeu_ps(s + (size_t)i * lds + (size_t)p, sum8x8(acc));
                }
        }
        for (; p < L; p++) {
                const float *kp = k + (size_t)p * ldk;
                for (int i = 0; i < m; i++) {
                        const float *qi = q + (size_t)i * ldq;
                        __m256 acc = _mm256_setzero_ps();
                        for (int d = 0; d < hd; d += 8)
                                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qi + d), _mm256_loadu_ps(kp + d), acc);
                        s[(size_t)i * lds + (size_t)p] = hsum_f32x8(acc);
                }
        }
}

/* vecmath.h's exp_vf4() on 8 lanes: 2^k exp(r), k = round(x / ln2). */
static inline __m256 exp8(__m256 x) {
        x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-86.0f)), _mm256_set1_ps(86.0f));
        const __m256 shift = _mm256_set1_ps(12582912.0f);
        __m256 kf = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), shift);
        __m256i k = _mm256_sub_epi32(_mm256_castps_si256(kf), _mm256_set1_epi32(0x4b400000));
        kf = _mm256_sub_ps(kf, shift);
        __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(0.693359375f)));
        r = _mm256_sub_ps(r, _mm256_mul_ps(kf, _mm256_set1_ps(-2.12194440e-4f)));
        __m256 p = _mm256_set1_ps(1.9875691500e-4f);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
        p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
        return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(k, 23)));
}

static inline __m256d sum_pd(__m256d acc, __m256 v) {
        acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

void lmp_attn_softmax_avx2(float *row, int n, float scale) {
        const __m256 vs = _mm256_set1_ps(scale);
        int nb = n - n % 8, nt = n % 8;
        /* the tail's lanes: all ones below nt */
        const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(nt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int i = 0; i < nb; i += 8) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + i), vs);
                _mm256_storeu_ps(row + i, v);
                mx = _mm256_max_ps(mx, v);
        }
        if (nt) {
                __m256 v = _mm256_mul_ps(_mm256_maskload_ps(row + nb, tail), vs);
                _mm256_maskstore_ps(row + nb, tail, v);
                mx = _mm256_blendv_ps(mx, _mm256_max_ps(mx, v), _mm256_castsi256_ps(tail));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const __m256 vm = _mm256_set1_ps(_mm_cvtss_f32(m4));
        __m256d sum = _mm256_setzero_pd();
        for (int i = 0; i < nb; i += 8) {
                __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + i), vm));
                _mm256_storeu_ps(row + i, e);
                sum = sum_pd(sum, e);
        }
        if (nt) {
                __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(row + nb, tail), vm)),
                                         _mm256_castsi256_ps(tail));
                _mm256_maskstore_ps(row + nb, tail, e);
                sum = sum_pd(sum, e);
        }
        __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(sum), _mm256_extractf128_pd(sum, 1));
        s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
        const __m256 inv = _mm256_set1_ps((float)(1.0 / _mm_cvtsd_f64(s2)));
        for (int i = 0; i < nb; i += 8)
                _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), inv));
        if (nt)
                _mm256_maskstore_ps(row + nb, tail, _mm256_mul_ps(_mm256_maskload_ps(row + nb, tail), inv));
}

/* Rows 0 .. mr (mr <= WROWS) of o, floats 0 .. 8 nv (nv 1 or 2). */
static inline __attribute__((always_inline)) void wsum_slice(int nv, int mr, int L, const float *restrict s,
                                                             size_t lds, const float *restrict v, size_t ldv,
                                                             float *restrict o, size_t ldo) {
        __m256 acc[WROWS][2];
#pragma GCC unroll 4
        for (int i = 0; i < WROWS; i++)
                acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int p = 0; p < L; p++) {
                const float *vp = v + (size_t)p * ldv;
                __m256 v0 = _mm256_loadu_ps(vp);
                __m256 v1 = nv == 2 ? _mm256_loadu_ps(vp + 8) : v0;
#pragma GCC unroll 4
                for (int i = 0; i < WROWS; i++) {
                        if (i >= mr)
                                break;
                        __m256 w = _mm256_broadcast_ss(s + (size_t)i * lds + (size_t)p);
                        acc[i][0] = _mm256_fmadd_ps(w, v0, acc[i][0]);
                        if (nv == 2)
                                acc[i][1] = _mm256_fmadd_ps(w, v1, acc[i][1]);
                }
        }
        for (int i = 0; i < mr; i++) {
                _mm256_storeu_ps(o + (size_t)i * ldo, acc[i][0]);
                if (nv == 2)
                        _mm256_storeu_ps(o + (size_t)i * ldo + 8, acc[i][1]);
        }
}

void lmp_attn_wsum_avx2(int hd, int m, int L, const float *restrict s, size_t lds,
                        const float *restrict v, size_t ldv, float *restrict o, size_t ldo) {
        if (hd % 8) {
                lmp_attn_wsum_ref(hd, m, L, s, lds, v, ldv, o, ldo);
                return;
        }
        for (int i0 = 0; i0 < m; i0 += WROWS) {
                int mr = m - i0 < WROWS ? m - i0 : WROWS;
                const float *si = s + (size_t)i0 * lds;
                float *oi = o + (size_t)i0 * ldo;
                int d = 0;
                for (; d + 16 <= hd; d += 16) {
                        if (mr == WROWS)
                                wsum_slice(2, WROWS, L, si, lds, v + d, ldv, oi + d, ldo);
                        else
                                wsum_slice(2, mr, L, si, lds, v + d, ldv, oi + d, ldo);
                }
                if (d < hd)
                        wsum_slice(1, mr, L, si, lds, v + d, ldv, oi + d, ldo);
        }
}

/* Reference quantizers from f32 into the GGML block formats (the packed
 * structs of quant/blocks.h). The algorithms follow llama.cpp's
 * quantize_row_*_ref, which is what llama-quantize uses for every type
 * here when no importance matrix is given: the legacy types
 * take a per-block absolute max (q4_0, q5_0, q8_0) or min/max (q4_1, q5_1);
 * the K-quants search each sub-block's scale (and min) to minimise a
 * weighted squared or absolute error, then quantize the sub-block scales
 * themselves to 4, 6 or 8 bits and re-round every value against the final
 * scales. The arithmetic (float, same operation order, the same
 * round-to-nearest trick) is kept identical so that the bytes match. */
#include "quant/quantize.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "common/macros.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

#define QK 32           /* values per legacy block */
#define QK_K LMP_QK_K   /* values per K-quant super-block */
#define GROUP_MAX_EPS 1e-15f

/* Rounds to nearest (ties to even) the way ggml does: add 1.5 * 2^23 and
 * read the mantissa. Exact for |fval| < 2^22; beyond that (only reachable
 * with extreme inputs whose fp16 scales overflow) it returns a wrong value
 * that the callers clamp into range, never undefined behaviour. */
static int nearest_int(float fval) {
        float val = fval + 12582912.f;
        int32_t i;
        memcpy(&i, &val, sizeof(i));
        return (i & 0x007fffff) - 0x00400000;
}

/* Truncation of a value already known to lie in [lo, hi] (in float), so the
 * conversion never overflows even for inputs that would be out of range. */
static int trunc_clamp(float v, int lo, int hi) {
        if (!(v >= (float)lo))
                return lo;
        if (v >= (float)hi)
                return hi;
        return (int)v;
}

/* ------------------------------------------------------------ legacy types */

/* The value of largest magnitude, with its sign (the first of equal
 * magnitudes). */
static float signed_max(const float *x, int n) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < n; j++) {
                if (amax < fabsf(x[j])) {
                        amax = fabsf(x[j]);
                        max = x[j];
                }
        }
        return max;
}

static void min_max(const float *x, float *ret_min, float *ret_max) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
                if (x[j] < min) min = x[j];
                if (x[j] > max) max = x[j];
        }
        *ret_min = min;
        *ret_max = max;
}

/* Value j in the low nibble of byte j, value j+16 in the high nibble; the
 * fifth bits, for a 5-bit type, in qh (bit j = value j, little-endian). */
static void pack_nibbles(const int *q, uint8_t *qs, uint8_t *qh) {
        uint32_t bits = 0;
        for (int j = 0; j < QK / 2; j++) {
                int q0 = q[j], q1 = q[j + QK / 2];
                qs[j] = (uint8_t)((q0 & 0xf) | ((q1 & 0xf) << 4));
                bits |= (uint32_t)((q0 >> 4) & 1) << j;
                bits |= (uint32_t)((q1 >> 4) & 1) << (j + QK / 2);
        }
        for (int b = 0; qh && b < 4; b++)
                qh[b] = (uint8_t)(bits >> (8 * b));
}

/* q4_0: fp16 d; 16 bytes of nibbles. x = d * (q - 8), d = -max/8 where max
 * is the value of largest magnitude (with its sign). */
static void quantize_q4_0(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q4_0 *y = vy;
        int q[QK];
        for (int64_t i = 0; i < nb; i++, x += QK, y++) {
                const float d = signed_max(x, QK) / -8;
                const float id = d ? 1.0f / d : 0.0f;
                y->d = lmp_f32_to_fp16(d);
                for (int j = 0; j < QK; j++)
                        q[j] = LMP_MIN(15, trunc_clamp(x[j] * id + 8.5f, 0, 127));
                pack_nibbles(q, y->qs, NULL);
        }
}

/* q4_1: fp16 d, fp16 m; 16 bytes of nibbles. x = d * q + m. */
static void quantize_q4_1(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q4_1 *y = vy;
        int q[QK];
        float min, max;
        for (int64_t i = 0; i < nb; i++, x += QK, y++) {
                min_max(x, &min, &max);
                const float d = (max - min) / 15;
                const float id = d ? 1.0f / d : 0.0f;
                y->d = lmp_f32_to_fp16(d);
                y->m = lmp_f32_to_fp16(min);
                for (int j = 0; j < QK; j++)
                        q[j] = LMP_MIN(15, trunc_clamp((x[j] - min) * id + 0.5f, 0, 127));
                pack_nibbles(q, y->qs, NULL);
        }
}

/* q5_0: fp16 d; 4 bytes qh (bit j = fifth bit of value j); 16 bytes of
 * low nibbles. x = d * (q - 16), d = -max/16. */
static void quantize_q5_0(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q5_0 *y = vy;
        int q[QK];
        for (int64_t i = 0; i < nb; i++, x += QK, y++) {
                const float d = signed_max(x, QK) / -16;
                const float id = d ? 1.0f / d : 0.0f;
                y->d = lmp_f32_to_fp16(d);
                for (int j = 0; j < QK; j++)
                        q[j] = LMP_MIN(31, trunc_clamp(x[j] * id + 16.5f, 0, 127));
                pack_nibbles(q, y->qs, y->qh);
        }
}

/* q5_1: fp16 d, fp16 m; 4 bytes qh; 16 bytes of low nibbles. */
static void quantize_q5_1(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q5_1 *y = vy;
        int q[QK];
        float min, max;
        for (int64_t i = 0; i < nb; i++, x += QK, y++) {
                min_max(x, &min, &max);
                const float d = (max - min) / 31;
                const float id = d ? 1.0f / d : 0.0f;
                y->d = lmp_f32_to_fp16(d);
                y->m = lmp_f32_to_fp16(min);
                for (int j = 0; j < QK; j++)
                        q[j] = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
                pack_nibbles(q, y->qs, y->qh);
        }
}

/* q8_0: fp16 d; 32 signed bytes. d = amax/127. */
static void quantize_q8_0(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q8_0 *y = vy;
        for (int64_t i = 0; i < nb; i++, x += QK, y++) {
                float amax = 0.0f;
                for (int j = 0; j < QK; j++)
                        amax = LMP_MAX(amax, fabsf(x[j]));
                const float d = amax / 127;
                const float id = d ? 1.0f / d : 0.0f;
                y->d = lmp_f32_to_fp16(d);
                for (int j = 0; j < QK; j++) {
                        float r = roundf(x[j] * id);
                        y->qs[j] = (int8_t)(r > 127.f ? 127 : r < -128.f ? -128 : (int)r);
                }
        }
}

/* ------------------------------------------------------------ K-quant helpers */

/* Symmetric quantization of n values to [-nmax, nmax-1], L holding q+nmax.
 * rmse_type 1 weights each value by x^2 and tries 18 scales around
 * -nmax/max, keeping the least-squares optimal one. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
        const float max = signed_max(x, n);
        if (fabsf(max) < GROUP_MAX_EPS) {
                memset(L, 0, (size_t)n);
                return 0.f;
        }
        float iscale = -nmax / max;
        if (rmse_type == 0) {
                for (int i = 0; i < n; i++) {
                        int l = nearest_int(iscale * x[i]);
                        L[i] = (int8_t)(nmax + LMP_MAX(-nmax, LMP_MIN(nmax - 1, l)));
                }
                return 1 / iscale;
        }
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                l = LMP_MAX(-nmax, LMP_MIN(nmax - 1, l));
                L[i] = (int8_t)(l + nmax);
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
        }
        float scale = suml2 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int is = -9; is <= 9; is++) {
                if (is == 0)
                        continue;
                iscale = -(nmax + 0.1f * is) / max;
                sumlx = suml2 = 0;
                for (int i = 0; i < n; i++) {
                        int l = nearest_int(iscale * x[i]);
                        l = LMP_MAX(-nmax, LMP_MIN(nmax - 1, l));
                        float w = x[i] * x[i];
                        sumlx += w * x[i] * l;
                        suml2 += w * l * l;
                }
                if (suml2 > 0 && sumlx * sumlx > best * suml2) {
                        for (int i = 0; i < n; i++) {
                                int l = nearest_int(iscale * x[i]);
                                L[i] = (int8_t)(nmax + LMP_MAX(-nmax, LMP_MIN(nmax - 1, l)));
                        }
                        scale = sumlx / suml2;
                        best = scale * sumlx;
                }
        }
        return scale;
}

/* Symmetric 3-bit quantization (L in [0, 2*nmax)), refined by moving single
 * values while the x^2-weighted fit improves (at most 5 passes). */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
        const float max = signed_max(x, n);
        if (fabsf(max) < GROUP_MAX_EPS) {
                memset(L, 0, (size_t)n);
                return 0.f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                l = LMP_MAX(-nmax, LMP_MIN(nmax - 1, l));
                L[i] = (int8_t)l;
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; itry++) {
                int n_changed = 0;
                for (int i = 0; i < n; i++) {
                        float w = x[i] * x[i];
                        float slx = sumlx - w * x[i] * L[i];
                        if (slx > 0) {
                                float sl2 = suml2 - w * L[i] * L[i];
                                int new_l = nearest_int(x[i] * sl2 / slx);
                                new_l = LMP_MAX(-nmax, LMP_MIN(nmax - 1, new_l));
                                if (new_l != L[i]) {
                                        slx += w * x[i] * new_l;
                                        sl2 += w * new_l * new_l;
                                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                                                L[i] = (int8_t)new_l;
                                                sumlx = slx;
                                                suml2 = sl2;
                                                n_changed++;
                                        }
                                }
                        }
                }
                if (!n_changed)
                        break;
        }
        for (int i = 0; i < n; i++)
                L[i] = (int8_t)(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric quantization x ~ scale * L - min with L in [0, nmax]: starts
 * from the min/max fit, then tries nstep+1 scales (rmin + rdelta*is + nmax
 * steps across the range) and solves the weighted least-squares scale and
 * min for each rounding, keeping the one with the lowest weighted error
 * (absolute when use_mad, squared otherwise). *the_min gets -min >= 0. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights,
                              uint8_t *L, float *the_min, uint8_t *Laux,
                              float rmin, float rdelta, int nstep, bool use_mad) {
        float min = x[0], max = x[0];
        float sum_w = weights[0];
        float sum_x = sum_w * x[0];
        for (int i = 1; i < n; i++) {
                if (x[i] < min) min = x[i];
                if (x[i] > max) max = x[i];
                float w = weights[i];
                sum_w += w;
                sum_x += w * x[i];
        }
        if (min > 0)
                min = 0;
        if (max == min) {
                memset(L, 0, (size_t)n);
                *the_min = -min;
                return 0.f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float best_error = 0;
        for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * (x[i] - min));
                L[i] = (uint8_t)LMP_MAX(0, LMP_MIN(nmax, l));
                float diff = scale * L[i] + min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                best_error += weights[i] * diff;
        }
        if (nstep < 1) {
                *the_min = -min;
                return scale;
        }
        for (int is = 0; is <= nstep; is++) {
                iscale = (rmin + rdelta * is + nmax) / (max - min);
                float sum_l = 0, sum_l2 = 0, sum_xl = 0;
                for (int i = 0; i < n; i++) {
                        int l = nearest_int(iscale * (x[i] - min));
                        l = LMP_MAX(0, LMP_MIN(nmax, l));
                        Laux[i] = (uint8_t)l;
                        float w = weights[i];
                        sum_l += w * l;
                        sum_l2 += w * l * l;
                        sum_xl += w * l * x[i];
                }
                float D = sum_w * sum_l2 - sum_l * sum_l;
                if (D > 0) {
                        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
                        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
                        if (this_min > 0) {
                                this_min = 0;
                                this_scale = sum_xl / sum_l2;
                        }
                        float cur_error = 0;
                        for (int i = 0; i < n; i++) {
                                float diff = this_scale * Laux[i] + this_min - x[i];
                                diff = use_mad ? fabsf(diff) : diff * diff;
                                cur_error += weights[i] * diff;
                        }
                        if (cur_error < best_error) {
                                memcpy(L, Laux, (size_t)n);
                                best_error = cur_error;
                                scale = this_scale;
                                min = this_min;
                        }
                }
        }
        *the_min = -min;
        return scale;
}

/* The 12-byte scales of q4_K and q5_K: eight 6-bit scales and eight 6-bit
 * mins. Sub-blocks 0..3 use the low 6 bits of bytes 0..3 (scale) and 4..7
 * (min); sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and their top
 * 2 bits in the top bits of bytes 0..7. */
static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
        if (j < 4) {
                *d = q[j] & 63;
                *m = q[j + 4] & 63;
        } else {
                *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
                *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
}

static void pack_scale_min_k4(uint8_t *scales, const float *sc, const float *mn,
                              float inv_scale, float inv_min) {
        memset(scales, 0, 12);
        for (int j = 0; j < QK_K / 32; j++) {
                uint8_t ls = (uint8_t)nearest_int(inv_scale * sc[j]);
                uint8_t lm = (uint8_t)nearest_int(inv_min * mn[j]);
                ls = LMP_MIN(63, ls);
                lm = LMP_MIN(63, lm);
                if (j < 4) {
                        scales[j] = ls;
                        scales[j + 4] = lm;
                } else {
                        scales[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
                        scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                        scales[j] |= (uint8_t)((lm >> 4) << 6);
                }
        }
}

/* ------------------------------------------------------------ K-quants */

/* q2_K (84 bytes): scales[16] (low nibble scale, high nibble min of each
 * 16-value sub-block), qs[64] (2-bit values, 4 per byte), fp16 d, fp16 dmin.
 * x = d * sc * q - dmin * m. */
static void quantize_q2_K(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q2_K *y = vy;
        uint8_t L[QK_K], Laux[16];
        float weights[16], mins[QK_K / 16], scales[QK_K / 16];
        const float q4scale = 15.f;

        for (int64_t i = 0; i < nb; i++, x += QK_K, y++) {
                uint8_t *ysc = y->scales, *qs = y->qs;
                float max_scale = 0, max_min = 0;
                for (int j = 0; j < QK_K / 16; j++) {
                        for (int l = 0; l < 16; l++)
                                weights[l] = fabsf(x[16 * j + l]);
                        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                                     Laux, -0.5f, 0.1f, 15, true);
                        if (scales[j] > max_scale) max_scale = scales[j];
                        if (mins[j] > max_min) max_min = mins[j];
                }
                if (max_scale > 0) {
                        float iscale = q4scale / max_scale;
                        for (int j = 0; j < QK_K / 16; j++)
                                ysc[j] = (uint8_t)nearest_int(iscale * scales[j]);
                        y->d = lmp_f32_to_fp16(max_scale / q4scale);
                } else {
                        memset(ysc, 0, 16);
                        y->d = lmp_f32_to_fp16(0.f);
                }
                if (max_min > 0) {
                        float iscale = q4scale / max_min;
                        for (int j = 0; j < QK_K / 16; j++)
                                ysc[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
                        y->dmin = lmp_f32_to_fp16(max_min / q4scale);
                } else {
                        y->dmin = lmp_f32_to_fp16(0.f);
                }
                const float yd = lmp_fp16_to_f32(y->d), ydmin = lmp_fp16_to_f32(y->dmin);
                for (int j = 0; j < QK_K / 16; j++) {
                        const float d = yd * (ysc[j] & 0xf);
                        if (!d)
                                continue;
                        const float dm = ydmin * (ysc[j] >> 4);
                        for (int ii = 0; ii < 16; ii++) {
                                int l = nearest_int((x[16 * j + ii] + dm) / d);
                                L[16 * j + ii] = (uint8_t)LMP_MAX(0, LMP_MIN(3, l));
                        }
                }
                for (int j = 0; j < QK_K; j += 128)
                        for (int l = 0; l < 32; l++)
                                qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                                          (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        }
}

/* q3_K (110 bytes): hmask[32] (third bit of each value), qs[64] (low two
 * bits), scales[12] (sixteen 6-bit signed scales, biased by 32), fp16 d.
 * x = d * (sc - 32) * (q - 4). */
static void quantize_q3_K(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q3_K *y = vy;
        int8_t L[QK_K];
        float scales[QK_K / 16];

        for (int64_t i = 0; i < nb; i++, x += QK_K, y++) {
                uint8_t *hmask = y->hmask, *qs = y->qs, *ysc = y->scales;
                float max_scale = 0, amax = 0;
                for (int j = 0; j < QK_K / 16; j++) {
                        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
                        float scale = fabsf(scales[j]);
                        if (scale > amax) {
                                amax = scale;
                                max_scale = scales[j];
                        }
                }
                memset(ysc, 0, 12);
                if (max_scale) {
                        float iscale = -32.f / max_scale;
                        for (int j = 0; j < QK_K / 16; j++) {
                                int l = (int8_t)nearest_int(iscale * scales[j]);
                                l = LMP_MAX(-32, LMP_MIN(31, l)) + 32;
                                if (j < 8)
                                        ysc[j] = (uint8_t)(l & 0xf);
                                else
                                        ysc[j - 8] |= (uint8_t)((l & 0xf) << 4);
                                l >>= 4;
                                ysc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
                        }
                        y->d = lmp_f32_to_fp16(1 / iscale);
                } else {
                        y->d = lmp_f32_to_fp16(0.f);
                }
                const float yd = lmp_fp16_to_f32(y->d);
                for (int j = 0; j < QK_K / 16; j++) {
                        int sc = j < 8 ? ysc[j] & 0xf : ysc[j - 8] >> 4;
                        sc = (sc | (((ysc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
                        float d = yd * sc;
                        if (!d)
                                continue;
                        for (int ii = 0; ii < 16; ii++) {
                                int l = nearest_int(x[16 * j + ii] / d);
                                L[16 * j + ii] = (int8_t)(LMP_MAX(-4, LMP_MIN(3, l)) + 4);
                        }
                }
                memset(hmask, 0, QK_K / 8);
                int m = 0;
                uint8_t hm = 1;
                for (int j = 0; j < QK_K; j++) {
                        if (L[j] > 3) {
                                hmask[m] |= hm;
                                L[j] = (int8_t)(L[j] - 4);
                        }
                        if (++m == QK_K / 8) {
                                m = 0;
                                hm = (uint8_t)(hm << 1);
                        }
                }
                for (int j = 0; j < QK_K; j += 128)
                        for (int l = 0; l < 32; l++)
                                qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                                          (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        }
}

/* The shared first half of q4_K and q5_K: per 32-value sub-block scale and
 * min with weights av_x + |x|, then 6-bit scales and mins under fp16 d and
 * dmin (bytes 0..3), scales at bytes 4..15, and the final values in L. */
static void quantize_k4_scales(const float *x, lmp_fp16 *ret_d, lmp_fp16 *ret_dmin, uint8_t *yscales,
                               uint8_t *L, int nmax, float rmin, float rdelta, int nstep) {
        uint8_t Laux[32];
        float weights[32], mins[QK_K / 32], scales[QK_K / 32];
        float max_scale = 0, max_min = 0;

        for (int j = 0; j < QK_K / 32; j++) {
                float sum_x2 = 0;
                for (int l = 0; l < 32; l++)
                        sum_x2 += x[32 * j + l] * x[32 * j + l];
                float av_x = sqrtf(sum_x2 / 32);
                for (int l = 0; l < 32; l++)
                        weights[l] = av_x + fabsf(x[32 * j + l]);
                scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j],
                                             Laux, rmin, rdelta, nstep, false);
                if (scales[j] > max_scale) max_scale = scales[j];
                if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        pack_scale_min_k4(yscales, scales, mins, inv_scale, inv_min);
        *ret_d = lmp_f32_to_fp16(max_scale / 63.f);
        *ret_dmin = lmp_f32_to_fp16(max_min / 63.f);

        const float yd = lmp_fp16_to_f32(*ret_d), ydmin = lmp_fp16_to_f32(*ret_dmin);
        for (int j = 0; j < QK_K / 32; j++) {
                uint8_t sc, m;
                get_scale_min_k4(j, yscales, &sc, &m);
                const float d = yd * sc;
                if (!d)
                        continue;
                const float dm = ydmin * m;
                for (int ii = 0; ii < 32; ii++) {
                        int l = nearest_int((x[32 * j + ii] + dm) / d);
                        L[32 * j + ii] = (uint8_t)LMP_MAX(0, LMP_MIN(nmax, l));
                }
        }
}

/* q4_K (144 bytes): fp16 d, fp16 dmin, scales[12], qs[128] (each 64-value
 * chunk: values 0..31 in low nibbles, 32..63 in high nibbles). */
static void quantize_q4_K(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q4_K *y = vy;
        uint8_t L[QK_K];
        for (int64_t i = 0; i < nb; i++, x += QK_K, y++) {
                lmp_fp16 d, dmin;
                quantize_k4_scales(x, &d, &dmin, y->scales, L, 15, -1.f, 0.1f, 20);
                y->d = d;
                y->dmin = dmin;
                uint8_t *q = y->qs;
                for (int j = 0; j < QK_K; j += 64, q += 32)
                        for (int l = 0; l < 32; l++)
                                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
}

/* q5_K (176 bytes): fp16 d, fp16 dmin, scales[12], qh[32] (fifth bits: two
 * bits per 64-value chunk), qs[128] as in q4_K. */
static void quantize_q5_K(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q5_K *y = vy;
        uint8_t L[QK_K];
        for (int64_t i = 0; i < nb; i++, x += QK_K, y++) {
                lmp_fp16 d, dmin;
                quantize_k4_scales(x, &d, &dmin, y->scales, L, 31, -0.5f, 0.1f, 15);
                y->d = d;
                y->dmin = dmin;
                uint8_t *qh = y->qh, *ql = y->qs;
                memset(qh, 0, QK_K / 8);
                uint8_t m1 = 1, m2 = 2;
                for (int n = 0; n < QK_K; n += 64, ql += 32) {
                        for (int j = 0; j < 32; j++) {
                                int l1 = L[n + j], l2 = L[n + j + 32];
                                if (l1 > 15) {
                                        l1 -= 16;
                                        qh[j] |= m1;
                                }
                                if (l2 > 15) {
                                        l2 -= 16;
                                        qh[j] |= m2;
                                }
                                ql[j] = (uint8_t)(l1 | (l2 << 4));
                        }
                        m1 = (uint8_t)(m1 << 2);
                        m2 = (uint8_t)(m2 << 2);
                }
        }
}

/* q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), int8
 * scales[16], fp16 d. x = d * sc * (q - 32). */
static void quantize_q6_K(const float *x, void *vy, int64_t nb) {
        struct lmp_block_q6_K *y = vy;
        int8_t L[QK_K];
        float scales[QK_K / 16];

        for (int64_t i = 0; i < nb; i++, x += QK_K, y++) {
                uint8_t *ql = y->ql, *qh = y->qh;
                int8_t *ysc = y->scales;
                float max_scale = 0, max_abs_scale = 0;
                for (int ib = 0; ib < QK_K / 16; ib++) {
                        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
                        scales[ib] = scale;
                        if (fabsf(scale) > max_abs_scale) {
                                max_abs_scale = fabsf(scale);
                                max_scale = scale;
                        }
                }
                if (max_abs_scale < GROUP_MAX_EPS) {
                        memset(y, 0, sizeof(*y));
                        continue;
                }
                float iscale = -128.f / max_scale;
                y->d = lmp_f32_to_fp16(1 / iscale);
                for (int ib = 0; ib < QK_K / 16; ib++)
                        ysc[ib] = (int8_t)LMP_MIN(127, nearest_int(iscale * scales[ib]));
                const float yd = lmp_fp16_to_f32(y->d);
                for (int j = 0; j < QK_K / 16; j++) {
                        float d = yd * ysc[j];
                        if (!d)
                                continue;
                        for (int ii = 0; ii < 16; ii++) {
                                int l = nearest_int(x[16 * j + ii] / d);
                                L[16 * j + ii] = (int8_t)(LMP_MAX(-32, LMP_MIN(31, l)) + 32);
                        }
                }
                for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
                        for (int l = 0; l < 32; l++) {
                                const uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf;
                                const uint8_t q3 = L[j + l + 64] & 0xf, q4 = L[j + l + 96] & 0xf;
                                ql[l] = (uint8_t)(q1 | (q3 << 4));
                                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                        }
                }
        }
}

/* ------------------------------------------------------------ dispatch */

typedef void (*block_quantizer)(const float *x, void *y, int64_t nb);

static const block_quantizer quantizers[LMP_TYPE_COUNT] = {
        [LMP_TYPE_Q4_0] = quantize_q4_0,
        [LMP_TYPE_Q4_1] = quantize_q4_1,
        [LMP_TYPE_Q5_0] = quantize_q5_0,
        [LMP_TYPE_Q5_1] = quantize_q5_1,
        [LMP_TYPE_Q8_0] = quantize_q8_0,
        [LMP_TYPE_Q2_K] = quantize_q2_K,
        [LMP_TYPE_Q3_K] = quantize_q3_K,
        [LMP_TYPE_Q4_K] = quantize_q4_K,
        [LMP_TYPE_Q5_K] = quantize_q5_K,
        [LMP_TYPE_Q6_K] = quantize_q6_K,
};

bool lmp_quantize_supported(uint32_t t) {
        if (t == LMP_TYPE_F32 || t == LMP_TYPE_F16 || t == LMP_TYPE_BF16)
                return true;
        return t < LMP_TYPE_COUNT && quantizers[t] != NULL;
}

int lmp_quantize_row(uint32_t t, const float *x, void *y, int64_t n) {
        if (!lmp_quantize_supported(t))
                return -ENOTSUP;
        const struct lmp_type_info *ti = lmp_type_info(t);
        if (n < 0 || n % ti->blck_size)
                return -EINVAL;
        switch (t) {
        case LMP_TYPE_F32:
                memcpy(y, x, (size_t)n * sizeof(float));
                return 0;
        case LMP_TYPE_F16:
                for (int64_t i = 0; i < n; i++)
                        ((lmp_fp16 *)y)[i] = lmp_f32_to_fp16(x[i]);
                return 0;
        case LMP_TYPE_BF16:
                for (int64_t i = 0; i < n; i++)
                        ((lmp_bf16 *)y)[i] = lmp_f32_to_bf16(x[i]);
                return 0;
        default:
                break;
        }
        for (int64_t i = 0; i < n; i++)
                if (!isfinite(x[i]))
                        return -EDOM;
        quantizers[t](x, y, n / ti->blck_size);
        return 0;
}

int lmp_quantize(uint32_t t, const float *x, void *y, int64_t nrows, int64_t n_per_row) {
        if (nrows < 0)
                return -EINVAL;
        uint64_t row_size = lmp_type_row_size(t, (uint64_t)n_per_row);
        for (int64_t r = 0; r < nrows; r++) {
                int ret = lmp_quantize_row(t, x + r * n_per_row, (uint8_t *)y + r * row_size, n_per_row);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

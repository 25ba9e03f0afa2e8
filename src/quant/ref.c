/* Scalar reference kernels: every to_float, activation quantizer and vec_dot,
 * written to follow the arithmetic of ggml's generic C kernels (the same
 * integer sums per sub-block, the same order of float accumulation), because
 * the conformance references were computed by llama.cpp and the SIMD kernels
 * are checked against these. Plain C11, no intrinsics. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"

/* Round to nearest, ties to even, for |f| < 2^22 (ggml's nearest_int). */
static inline int nearest_int(float f) {
        float v = f + 12582912.f;
        int32_t i;
        memcpy(&i, &v, sizeof(i));
        return (i & 0x007fffff) - 0x00400000;
}

/* ---- floats ---------------------------------------------------------- */

void lmp_to_float_f32_ref(const void *restrict x, float *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

void lmp_from_float_f32_ref(const float *restrict x, void *restrict y, int64_t n) {
        memcpy(y, x, (size_t)n * sizeof(float));
}

void lmp_to_float_f16_ref(const void *restrict x, float *restrict y, int64_t n) {
        const lmp_fp16 *h = x;
        for (int64_t i = 0; i < n; i++)
                y[i] = lmp_fp16_to_f32(h[i]);
}

void lmp_from_float_f16_ref(const float *restrict x, void *restrict y, int64_t n) {
        lmp_fp16 *h = y;
        for (int64_t i = 0; i < n; i++)
                h[i] = lmp_f32_to_fp16(x[i]);
}

void lmp_to_float_bf16_ref(const void *restrict x, float *restrict y, int64_t n) {
        const lmp_bf16 *h = x;
        for (int64_t i = 0; i < n; i++)
                y[i] = lmp_bf16_to_f32(h[i]);
}

void lmp_from_float_bf16_ref(const float *restrict x, void *restrict y, int64_t n) {
        lmp_bf16 *h = y;
        for (int64_t i = 0; i < n; i++)
                h[i] = lmp_f32_to_bf16(x[i]);
}

/* ggml's scalar float dots accumulate in double. */
void lmp_vec_dot_f32_f32_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const float *x = vx, *y = vy;
        double sum = 0.0;
        for (int i = 0; i < n; i++)
                sum += (double)(x[i] * y[i]);
        *s = (float)sum;
}

void lmp_vec_dot_f16_f16_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_fp16 *x = vx, *y = vy;
        double sum = 0.0;
        for (int i = 0; i < n; i++)
                sum += (double)(lmp_fp16_to_f32(x[i]) * lmp_fp16_to_f32(y[i]));
        *s = (float)sum;
}

void lmp_vec_dot_bf16_bf16_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const lmp_bf16 *x = vx, *y = vy;
        double sum = 0.0;
        for (int i = 0; i < n; i++)
                sum += (double)(lmp_bf16_to_f32(x[i]) * lmp_bf16_to_f32(y[i]));
        *s = (float)sum;
}

/* ---- 32-value blocks: to_float ---------------------------------------- */

void lmp_to_float_q4_0_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q4_0 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK4_0; i++, y += LMP_QK4_0) {
                const float d = lmp_fp16_to_f32(x[i].d);
                for (int j = 0; j < LMP_QK4_0 / 2; j++) {
                        y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
                        y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
                }
        }
}

void lmp_to_float_q4_1_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q4_1 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK4_1; i++, y += LMP_QK4_1) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const float m = lmp_fp16_to_f32(x[i].m);
                for (int j = 0; j < LMP_QK4_1 / 2; j++) {
                        y[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
                        y[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
                }
        }
}

void lmp_to_float_q5_0_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q5_0 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK5_0; i++, y += LMP_QK5_0) {
                const float d = lmp_fp16_to_f32(x[i].d);
                uint32_t qh;
                memcpy(&qh, x[i].qh, sizeof(qh));
                for (int j = 0; j < LMP_QK5_0 / 2; j++) {
                        const uint8_t h0 = ((qh >> j) << 4) & 0x10;
                        const uint8_t h1 = (qh >> (j + 12)) & 0x10;
                        y[j] = (float)(((x[i].qs[j] & 0x0f) | h0) - 16) * d;
                        y[j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
                }
        }
}

void lmp_to_float_q5_1_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q5_1 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK5_1; i++, y += LMP_QK5_1) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const float m = lmp_fp16_to_f32(x[i].m);
                uint32_t qh;
                memcpy(&qh, x[i].qh, sizeof(qh));
                for (int j = 0; j < LMP_QK5_1 / 2; j++) {
                        const uint8_t h0 = ((qh >> j) << 4) & 0x10;
                        const uint8_t h1 = (qh >> (j + 12)) & 0x10;
                        y[j] = (float)((x[i].qs[j] & 0x0f) | h0) * d + m;
                        y[j + 16] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
                }
        }
}

void lmp_to_float_q8_0_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q8_0 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK8_0; i++, y += LMP_QK8_0) {
                const float d = lmp_fp16_to_f32(x[i].d);
                for (int j = 0; j < LMP_QK8_0; j++)
                        y[j] = (float)x[i].qs[j] * d;
        }
}

void lmp_to_float_q8_1_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q8_1 *x = vx;
        for (int64_t i = 0; i < n / LMP_QK8_1; i++, y += LMP_QK8_1) {
                const float d = lmp_fp16_to_f32(x[i].d);
                for (int j = 0; j < LMP_QK8_1; j++)
                        y[j] = (float)x[i].qs[j] * d;
        }
}

/* ---- activation quantizers (ggml's quantize_row_*_ref) ----------------- */

void lmp_from_float_q8_0_ref(const float *restrict x, void *restrict vy, int64_t n) {
        struct lmp_block_q8_0 *y = vy;
        for (int64_t i = 0; i < n / LMP_QK8_0; i++, x += LMP_QK8_0) {
                float amax = 0.0f;
                for (int j = 0; j < LMP_QK8_0; j++)
                        amax = fmaxf(amax, fabsf(x[j]));
                const float d = amax / 127.0f;
                const float id = d != 0.0f ? 1.0f / d : 0.0f;
                y[i].d = lmp_f32_to_fp16(d);
                for (int j = 0; j < LMP_QK8_0; j++)
                        y[i].qs[j] = (int8_t)roundf(x[j] * id);
        }
}

void lmp_from_float_q8_1_ref(const float *restrict x, void *restrict vy, int64_t n) {
        struct lmp_block_q8_1 *y = vy;
        for (int64_t i = 0; i < n / LMP_QK8_1; i++, x += LMP_QK8_1) {
                float amax = 0.0f;
                for (int j = 0; j < LMP_QK8_1; j++)
                        amax = fmaxf(amax, fabsf(x[j]));
                const float d = amax / 127.0f;
                const float id = d != 0.0f ? 1.0f / d : 0.0f;
                y[i].d = lmp_f32_to_fp16(d);
                int sum = 0;
                for (int j = 0; j < LMP_QK8_1 / 2; j++) {
                        y[i].qs[j] = (int8_t)roundf(x[j] * id);
                        y[i].qs[j + 16] = (int8_t)roundf(x[j + 16] * id);
                        sum += y[i].qs[j] + y[i].qs[j + 16];
                }
                y[i].s = lmp_f32_to_fp16((float)sum * d);
        }
}

/* The scale comes from the signed value of largest magnitude, so that value
 * maps to -127 exactly and the opposite extreme may reach 128, clipped to
 * 127. d is stored as the reciprocal of that scale, in f32. */
void lmp_from_float_q8_K_ref(const float *restrict x, void *restrict vy, int64_t n) {
        struct lmp_block_q8_K *y = vy;
        for (int64_t i = 0; i < n / LMP_QK_K; i++, x += LMP_QK_K) {
                float max = 0.0f, amax = 0.0f;
                for (int j = 0; j < LMP_QK_K; j++) {
                        const float ax = fabsf(x[j]);
                        if (ax > amax) {
                                amax = ax;
                                max = x[j];
                        }
                }
                if (amax == 0.0f) {
                        y[i].d = 0.0f;
                        memset(y[i].qs, 0, sizeof(y[i].qs));
                        memset(y[i].bsums, 0, sizeof(y[i].bsums));
                        continue;
                }
                const float iscale = -127.0f / max;
                for (int j = 0; j < LMP_QK_K; j++) {
                        const int v = nearest_int(iscale * x[j]);
                        y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
                }
                for (int j = 0; j < LMP_QK_K / 16; j++) {
                        int sum = 0;
                        for (int l = 0; l < 16; l++)
                                sum += y[i].qs[j * 16 + l];
                        y[i].bsums[j] = (int16_t)sum;
                }
                y[i].d = 1.0f / iscale;
        }
}

void lmp_to_float_q8_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q8_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++, y += LMP_QK_K)
                for (int j = 0; j < LMP_QK_K; j++)
                        y[j] = x[i].d * (float)x[i].qs[j];
}

/* ---- 32-value blocks: vec_dot ------------------------------------------ */

void lmp_vec_dot_q4_0_q8_0_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK8_0; i++) {
                int sumi0 = 0, sumi1 = 0;
                for (int j = 0; j < LMP_QK8_0 / 2; j++) {
                        const int v0 = (x[i].qs[j] & 0x0f) - 8;
                        const int v1 = (x[i].qs[j] >> 4) - 8;
                        sumi0 += v0 * y[i].qs[j];
                        sumi1 += v1 * y[i].qs[j + 16];
                }
                const int sumi = sumi0 + sumi1;
                sumf += (float)sumi * (lmp_fp16_to_f32(x[i].d) * lmp_fp16_to_f32(y[i].d));
        }
        *s = sumf;
}

void lmp_vec_dot_q4_1_q8_1_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_1 *x = vx;
        const struct lmp_block_q8_1 *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK8_1; i++) {
                int sumi0 = 0, sumi1 = 0;
                for (int j = 0; j < LMP_QK8_1 / 2; j++) {
                        sumi0 += (x[i].qs[j] & 0x0f) * y[i].qs[j];
                        sumi1 += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
                }
                const int sumi = sumi0 + sumi1;
                sumf += (lmp_fp16_to_f32(x[i].d) * lmp_fp16_to_f32(y[i].d)) * (float)sumi
                        + lmp_fp16_to_f32(x[i].m) * lmp_fp16_to_f32(y[i].s);
        }
        *s = sumf;
}

void lmp_vec_dot_q5_0_q8_0_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK8_0; i++) {
                uint32_t qh;
                memcpy(&qh, x[i].qh, sizeof(qh));
                int sumi0 = 0, sumi1 = 0;
                for (int j = 0; j < LMP_QK8_0 / 2; j++) {
                        const uint8_t h0 = ((qh >> j) << 4) & 0x10;
                        const uint8_t h1 = (qh >> (j + 12)) & 0x10;
                        const int v0 = ((x[i].qs[j] & 0x0f) | h0) - 16;
                        const int v1 = ((x[i].qs[j] >> 4) | h1) - 16;
                        sumi0 += v0 * y[i].qs[j];
                        sumi1 += v1 * y[i].qs[j + 16];
                }
                const int sumi = sumi0 + sumi1;
                sumf += (lmp_fp16_to_f32(x[i].d) * lmp_fp16_to_f32(y[i].d)) * (float)sumi;
        }
        *s = sumf;
}

void lmp_vec_dot_q5_1_q8_1_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_1 *x = vx;
        const struct lmp_block_q8_1 *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK8_1; i++) {
                uint32_t qh;
                memcpy(&qh, x[i].qh, sizeof(qh));
                int sumi0 = 0, sumi1 = 0;
                for (int j = 0; j < LMP_QK8_1 / 2; j++) {
                        const uint8_t h0 = ((qh >> j) << 4) & 0x10;
                        const uint8_t h1 = (qh >> (j + 12)) & 0x10;
                        sumi0 += ((x[i].qs[j] & 0x0f) | h0) * y[i].qs[j];
                        sumi1 += ((x[i].qs[j] >> 4) | h1) * y[i].qs[j + 16];
                }
                const int sumi = sumi0 + sumi1;
                sumf += (lmp_fp16_to_f32(x[i].d) * lmp_fp16_to_f32(y[i].d)) * (float)sumi
                        + lmp_fp16_to_f32(x[i].m) * lmp_fp16_to_f32(y[i].s);
        }
        *s = sumf;
}

void lmp_vec_dot_q8_0_q8_0_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q8_0 *x = vx;
        const struct lmp_block_q8_0 *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK8_0; i++) {
                int sumi = 0;
                for (int j = 0; j < LMP_QK8_0; j++)
                        sumi += x[i].qs[j] * y[i].qs[j];
                sumf += (float)sumi * (lmp_fp16_to_f32(x[i].d) * lmp_fp16_to_f32(y[i].d));
        }
        *s = sumf;
}

/* ---- K-quants: scale unpacking ----------------------------------------- */

/* Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes. */
static inline void scale_min_k4(int j, const uint8_t *restrict q, uint8_t *restrict d, uint8_t *restrict m) {
        if (j < 4) {
                *d = q[j] & 63;
                *m = q[j + 4] & 63;
        } else {
                *d = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
                *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
}

/* Q3_K: 16 six-bit scales in 12 bytes (low nibbles in bytes 0..7, high
 * pairs in 8..11), returned offset by -32. */
static inline void scales_q3_K(const uint8_t *restrict in, int8_t out[16]) {
        for (int j = 0; j < 16; j++) {
                const int lo = j < 8 ? in[j] & 0x0f : in[j - 8] >> 4;
                const int hi = (in[8 + (j % 4)] >> (2 * (j / 4))) & 3;
                out[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
}

/* ---- K-quants: to_float ------------------------------------------------ */

void lmp_to_float_q2_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q2_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const float min = lmp_fp16_to_f32(x[i].dmin);
                const uint8_t *q = x[i].qs;
                int is = 0;
                for (int k = 0; k < LMP_QK_K; k += 128, q += 32) {
                        for (int shift = 0; shift < 8; shift += 2) {
                                for (int half = 0; half < 2; half++) {
                                        const uint8_t sc = x[i].scales[is++];
                                        const float dl = d * (float)(sc & 0x0f);
                                        const float ml = min * (float)(sc >> 4);
                                        for (int l = 0; l < 16; l++)
                                                *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                                }
                        }
                }
        }
}

void lmp_to_float_q3_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q3_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                const float d_all = lmp_fp16_to_f32(x[i].d);
                int8_t scales[16];
                scales_q3_K(x[i].scales, scales);
                const uint8_t *q = x[i].qs;
                const uint8_t *hm = x[i].hmask;
                uint8_t m = 1;
                int is = 0;
                for (int k = 0; k < LMP_QK_K; k += 128, q += 32) {
                        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                                for (int half = 0; half < 2; half++) {
                                        const float dl = d_all * (float)scales[is++];
                                        for (int l = 16 * half; l < 16 * half + 16; l++) {
                                                const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                                                *y++ = dl * (float)v;
                                        }
                                }
                        }
                }
        }
}

void lmp_to_float_q4_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q4_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const float min = lmp_fp16_to_f32(x[i].dmin);
                const uint8_t *q = x[i].qs;
                for (int j = 0, is = 0; j < LMP_QK_K; j += 64, is += 2, q += 32) {
                        uint8_t sc, m;
                        scale_min_k4(is, x[i].scales, &sc, &m);
                        const float d1 = d * (float)sc, m1 = min * (float)m;
                        scale_min_k4(is + 1, x[i].scales, &sc, &m);
                        const float d2 = d * (float)sc, m2 = min * (float)m;
                        for (int l = 0; l < 32; l++)
                                *y++ = d1 * (float)(q[l] & 0x0f) - m1;
                        for (int l = 0; l < 32; l++)
                                *y++ = d2 * (float)(q[l] >> 4) - m2;
                }
        }
}

void lmp_to_float_q5_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q5_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const float min = lmp_fp16_to_f32(x[i].dmin);
                const uint8_t *ql = x[i].qs;
                const uint8_t *qh = x[i].qh;
                uint8_t u1 = 1, u2 = 2;
                for (int j = 0, is = 0; j < LMP_QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
                        uint8_t sc, m;
                        scale_min_k4(is, x[i].scales, &sc, &m);
                        const float d1 = d * (float)sc, m1 = min * (float)m;
                        scale_min_k4(is + 1, x[i].scales, &sc, &m);
                        const float d2 = d * (float)sc, m2 = min * (float)m;
                        for (int l = 0; l < 32; l++)
                                *y++ = d1 * (float)((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
                        for (int l = 0; l < 32; l++)
                                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
                }
        }
}

void lmp_to_float_q6_K_ref(const void *restrict vx, float *restrict y, int64_t n) {
        const struct lmp_block_q6_K *x = vx;
        for (int64_t i = 0; i < n / LMP_QK_K; i++) {
                const float d = lmp_fp16_to_f32(x[i].d);
                const uint8_t *ql = x[i].ql;
                const uint8_t *qh = x[i].qh;
                const int8_t *sc = x[i].scales;
                for (int k = 0; k < LMP_QK_K; k += 128, y += 128, ql += 64, qh += 32, sc += 8) {
                        for (int l = 0; l < 32; l++) {
                                const int is = l / 16;
                                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                                y[l] = d * (float)sc[is + 0] * (float)q1;
                                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
                        }
                }
        }
}

/* ---- K-quants: vec_dot ------------------------------------------------- */
/* Like ggml's generic kernels, the 6-bit types expand the weights to int8,
 * sum products into eight int32 lanes per super-block, and scale the lanes
 * into eight float accumulators that are added at the end. */

static float sum8(const float sums[8]) {
        float s = 0.0f;
        for (int l = 0; l < 8; l++)
                s += sums[l];
        return s;
}

/* Adds sc * (a . q8) over 16 values into the eight lanes. */
static inline void lanes16(int32_t aux32[8], const int8_t *restrict a, const int8_t *restrict q8, int sc) {
        for (int h = 0; h < 16; h += 8)
                for (int l = 0; l < 8; l++)
                        aux32[l] += sc * (int16_t)(q8[h + l] * a[h + l]);
}

void lmp_vec_dot_q2_K_q8_K_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q2_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        float sumf = 0.0f;
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const uint8_t *q2 = x[i].qs;
                const int8_t *q8 = y[i].qs;
                const uint8_t *sc = x[i].scales;
                int summs = 0;
                for (int j = 0; j < 16; j++)
                        summs += y[i].bsums[j] * (sc[j] >> 4);
                const float dall = y[i].d * lmp_fp16_to_f32(x[i].d);
                const float dmin = y[i].d * lmp_fp16_to_f32(x[i].dmin);
                int isum = 0, is = 0;
                for (int k = 0; k < LMP_QK_K / 128; k++, q2 += 32) {
                        for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                                int d = sc[is++] & 0x0f;
                                int isuml = 0;
                                for (int l = 0; l < 16; l++)
                                        isuml += q8[l] * ((q2[l] >> shift) & 3);
                                isum += d * isuml;
                                d = sc[is++] & 0x0f;
                                isuml = 0;
                                for (int l = 16; l < 32; l++)
                                        isuml += q8[l] * ((q2[l] >> shift) & 3);
                                isum += d * isuml;
                        }
                }
                sumf += dall * (float)isum - dmin * (float)summs;
        }
        *s = sumf;
}

void lmp_vec_dot_q3_K_q8_K_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q3_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        float sums[8] = { 0 };
        int8_t aux8[LMP_QK_K];
        for (int i = 0; i < n / LMP_QK_K; i++) {
                const uint8_t *q3 = x[i].qs;
                const uint8_t *hm = x[i].hmask;
                int8_t *a = aux8;
                uint8_t m = 1;
                for (int j = 0; j < LMP_QK_K; j += 128, q3 += 32)
                        for (int shift = 0; shift < 8; shift += 2, m <<= 1, a += 32)
                                for (int l = 0; l < 32; l++)
                                        a[l] = (int8_t)(((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                int8_t scales[16];
                scales_q3_K(x[i].scales, scales);
                int32_t aux32[8] = { 0 };
                for (int j = 0; j < 16; j++)
                        lanes16(aux32, aux8 + 16 * j, y[i].qs + 16 * j, scales[j]);
                const float d = lmp_fp16_to_f32(x[i].d) * y[i].d;
                for (int l = 0; l < 8; l++)
                        sums[l] += d * (float)aux32[l];
        }
        *s = sum8(sums);
}

/* What the q4_K and q5_K dot products share once a block's values are
 * unpacked to aux8: 8 sub-blocks with 6-bit scales and mins, the scaled
 * sums added to sums[8] lane by lane as ggml does, and the min term
 * (dmin times the mins against the activation's block sums) returned. */
static float dot_k4_block(const int8_t *aux8, const uint8_t *packed_scales, lmp_fp16 d16, lmp_fp16 dmin16,
                          const struct lmp_block_q8_K *y, float sums[8]) {
        uint8_t scales[8], mins[8];
        for (int j = 0; j < 8; j++)
                scale_min_k4(j, packed_scales, &scales[j], &mins[j]);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
                sumi += y->bsums[j] * mins[j / 2];
        int32_t aux32[8] = { 0 };
        for (int j = 0; j < 16; j++)
                lanes16(aux32, aux8 + 16 * j, y->qs + 16 * j, scales[j / 2]);
        const float d = lmp_fp16_to_f32(d16) * y->d;
        for (int l = 0; l < 8; l++)
                sums[l] += d * (float)aux32[l];
        return lmp_fp16_to_f32(dmin16) * y->d * (float)sumi;
}

/* Each K-quant weight block expanded to 256 int8 values, as the dot
 * products below and the gemms use them. */
static void unpack_q4_K(const struct lmp_block_q4_K *x, int8_t aux8[LMP_QK_K]) {
        const uint8_t *q4 = x->qs;
        for (int j = 0; j < LMP_QK_K / 64; j++, q4 += 32)
                for (int l = 0; l < 32; l++) {
                        aux8[64 * j + l] = (int8_t)(q4[l] & 0x0f);
                        aux8[64 * j + 32 + l] = (int8_t)(q4[l] >> 4);
                }
}

static void unpack_q5_K(const struct lmp_block_q5_K *x, int8_t aux8[LMP_QK_K]) {
        const uint8_t *q4 = x->qs;
        const uint8_t *hm = x->qh;
        uint8_t m = 1;
        for (int j = 0; j < LMP_QK_K / 64; j++, q4 += 32) {
                for (int l = 0; l < 32; l++)
                        aux8[64 * j + l] = (int8_t)((q4[l] & 0x0f) + (hm[l] & m ? 16 : 0));
                m <<= 1;
                for (int l = 0; l < 32; l++)
                        aux8[64 * j + 32 + l] = (int8_t)((q4[l] >> 4) + (hm[l] & m ? 16 : 0));
                m <<= 1;
        }
}

static void unpack_q6_K(const struct lmp_block_q6_K *x, int8_t aux8[LMP_QK_K]) {
        const uint8_t *ql = x->ql;
        const uint8_t *qh = x->qh;
        int8_t *a = aux8;
        for (int j = 0; j < LMP_QK_K; j += 128, a += 128, ql += 64, qh += 32)
                for (int l = 0; l < 32; l++) {
                        a[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
                        a[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
                        a[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                        a[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
}

/* One q6_K block's scaled sums into sums[8], lane by lane as ggml does. */
static void dot_q6_K_block(const int8_t *aux8, const struct lmp_block_q6_K *x, const struct lmp_block_q8_K *y,
                           float sums[8]) {
        int32_t aux32[8] = { 0 };
        for (int j = 0; j < 16; j++)
                lanes16(aux32, aux8 + 16 * j, y->qs + 16 * j, x->scales[j]);
        const float d = lmp_fp16_to_f32(x->d) * y->d;
        for (int l = 0; l < 8; l++)
                sums[l] += d * (float)aux32[l];
}

void lmp_vec_dot_q4_K_q8_K_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q4_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        float sums[8] = { 0 };
        float sumf = 0.0f;
        int8_t aux8[LMP_QK_K];
        for (int i = 0; i < n / LMP_QK_K; i++) {
                unpack_q4_K(&x[i], aux8);
                sumf -= dot_k4_block(aux8, x[i].scales, x[i].d, x[i].dmin, &y[i], sums);
        }
        *s = sumf + sum8(sums);
}

void lmp_vec_dot_q5_K_q8_K_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q5_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        float sums[8] = { 0 };
        float sumf = 0.0f;
        int8_t aux8[LMP_QK_K];
        for (int i = 0; i < n / LMP_QK_K; i++) {
                unpack_q5_K(&x[i], aux8);
                sumf -= dot_k4_block(aux8, x[i].scales, x[i].d, x[i].dmin, &y[i], sums);
        }
        *s = sumf + sum8(sums);
}

void lmp_vec_dot_q6_K_q8_K_ref(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
        const struct lmp_block_q6_K *x = vx;
        const struct lmp_block_q8_K *y = vy;
        float sums[8] = { 0 };
        int8_t aux8[LMP_QK_K];
        for (int i = 0; i < n / LMP_QK_K; i++) {
                unpack_q6_K(&x[i], aux8);
                dot_q6_K_block(aux8, &x[i], &y[i], sums);
        }
        *s = sum8(sums);
}

/* ---- gemm: tiles of weight rows by activation rows -------------------- */

/* The definition of the tile product: one reference dot product per (row,
 * token) pair. The SIMD levels compute the same sums with each weight block
 * unpacked once per tile. */
#define GEMM_BY_DOT_REF(w, a)                                                                                 \
void lmp_gemm_##w##_##a##_ref(int n, int nr, int nt, const void *restrict x, size_t bx,                       \
                              const void *restrict y, size_t by, float *restrict s, size_t ld) {              \
        for (int t = 0; t < nt; t++)                                                                          \
                for (int r = 0; r < nr; r++)                                                                  \
                        lmp_vec_dot_##w##_##a##_ref(n, &s[(size_t)t * ld + (size_t)r],                        \
                                                    (const uint8_t *)x + (size_t)r * bx,                      \
                                                    (const uint8_t *)y + (size_t)t * by);                     \
}
LMP_FOREACH_GEMM_32(GEMM_BY_DOT_REF)

/* ---- K-quant gemms ------------------------------------------------------ */

/* The scalar tile products unpack each weight block once for up to
 * GEMM_REF_TOK tokens and then run the vec_dot arithmetic above for each of
 * them, in the same order, so that they agree with the vec_dots exactly. */
#define GEMM_REF_TOK 8

#define GEMM_K_REF(name, block_t, UNPACK, DOT)                                                                  \
void lmp_gemm_##name##_ref(int n, int nr, int nt, const void *restrict vx, size_t bx, const void *restrict vy,  \
                           size_t by, float *restrict s, size_t ld) {                                           \
        int8_t aux8[LMP_QK_K];                                                                                  \
        for (int r = 0; r < nr; r++) {                                                                          \
                const block_t *x = (const block_t *)((const uint8_t *)vx + (size_t)r * bx);                     \
                for (int t0 = 0; t0 < nt; t0 += GEMM_REF_TOK) {                                                 \
                        const int tn = nt - t0 < GEMM_REF_TOK ? nt - t0 : GEMM_REF_TOK;                         \
                        float sums[GEMM_REF_TOK][8] = { { 0 } };                                                \
                        float sumf[GEMM_REF_TOK] = { 0 };                                                       \
                        for (int i = 0; i < n / LMP_QK_K; i++) {                                                \
                                UNPACK(&x[i], aux8);                                                            \
                                for (int t = 0; t < tn; t++) {                                                  \
                                        const struct lmp_block_q8_K *y = (const struct lmp_block_q8_K *)        \
                                                ((const uint8_t *)vy + (size_t)(t0 + t) * by);                  \
                                        DOT(aux8, &x[i], &y[i], sums[t], sumf[t]);                              \
                                }                                                                               \
                        }                                                                                       \
                        for (int t = 0; t < tn; t++)                                                            \
                                s[(size_t)(t0 + t) * ld + (size_t)r] = sumf[t] + sum8(sums[t]);                 \
                }                                                                                               \
        }                                                                                                       \
}

#define DOT_K4(aux8, xb, yb, sums, sumf) (sumf) -= dot_k4_block(aux8, (xb)->scales, (xb)->d, (xb)->dmin, yb, sums)
#define DOT_Q6(aux8, xb, yb, sums, sumf) dot_q6_K_block(aux8, xb, yb, sums)

GEMM_K_REF(q4_K_q8_K, struct lmp_block_q4_K, unpack_q4_K, DOT_K4)
GEMM_K_REF(q5_K_q8_K, struct lmp_block_q5_K, unpack_q5_K, DOT_K4)
GEMM_K_REF(q6_K_q8_K, struct lmp_block_q6_K, unpack_q6_K, DOT_Q6)

/* gemm_few (batched decode) computes the same sums as gemm; the scalar
 * level has no memory stream to prefetch, so its twin is the gemm. */
#define GEMM_FEW_REF(w, a)                                                                                    \
void lmp_gemm_few_##w##_##a##_ref(int n, int nr, int nt, const void *restrict x, size_t bx,                   \
                                  const void *restrict y, size_t by, float *restrict s, size_t ld) {          \
        lmp_gemm_##w##_##a##_ref(n, nr, nt, x, bx, y, by, s, ld);                                             \
}
LMP_FOREACH_GEMM_FEW(GEMM_FEW_REF)

/* ---- q4_K_r16: groups of 16 interleaved q4_K rows ------------------------ */

/* The definition the SIMD twins follow lane for lane: per row and
 * super-block, the integer sums of scale x (weight . activation) and of
 * min x (activation sum) over the 8 sub-blocks, then
 * d * d_y * sum - dmin * d_y * msum in float. */
void lmp_gemm_q4_K_r16_q8_K_ref(int n, int ng, int nt, const void *restrict vx, const void *restrict vy,
                                size_t by, float *restrict s, size_t ld) {
        const int nb = n / LMP_QK_K;
        for (int g = 0; g < ng; g++) {
                const struct lmp_block_q4_Kx16 *x = (const struct lmp_block_q4_Kx16 *)vx + (size_t)g * nb;
                for (int t = 0; t < nt; t++) {
                        const struct lmp_block_q8_K *y =
                                (const struct lmp_block_q8_K *)((const uint8_t *)vy + (size_t)t * by);
                        float acc[LMP_R16_ROWS] = { 0 };
                        for (int i = 0; i < nb; i++) {
                                const float yd = y[i].d;
                                for (int r = 0; r < LMP_R16_ROWS; r++) {
                                        uint8_t packed[LMP_K_SCALE_SIZE];
                                        int32_t isum = 0, msum = 0;
                                        for (int k = 0; k < LMP_K_SCALE_SIZE; k++)
                                                packed[k] = x[i].scales[k][r];
                                        for (int j = 0; j < 8; j++) {
                                                uint8_t sc, mn;
                                                int32_t dot = 0;
                                                scale_min_k4(j, packed, &sc, &mn);
                                                for (int cc = 0; cc < 4; cc++) {
                                                        const int c = lmp_q4_Kx16_chunk(j, cc);
                                                        const int8_t *a = y[i].qs + 32 * j + 8 * cc;
                                                        for (int b = 0; b < 4; b++) {
                                                                const uint8_t q = x[i].qs[c][r][b];
                                                                dot += (q & 0x0f) * a[b] + (q >> 4) * a[4 + b];
                                                        }
                                                }
                                                isum += sc * dot;
                                                msum += mn * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
                                        }
                                        acc[r] += lmp_fp16_to_f32(x[i].d[r]) * yd * (float)isum;
                                        acc[r] -= lmp_fp16_to_f32(x[i].dmin[r]) * yd * (float)msum;
                                }
                        }
                        for (int r = 0; r < LMP_R16_ROWS; r++)
                                s[(size_t)t * ld + (size_t)g * LMP_R16_ROWS + (size_t)r] = acc[r];
                }
        }
}

/* The same over q6_K_r16 groups: per row and block, the integer sums of
 * scale x (weight . activation) over the 16 sub-blocks, less 32 x scale x
 * (the activation's sub-block sum) for the values' offset, then d x d_y in
 * float. */
void lmp_gemm_q6_K_r16_q8_K_ref(int n, int ng, int nt, const void *restrict vx, const void *restrict vy,
                                size_t by, float *restrict s, size_t ld) {
        const int nb = n / LMP_QK_K;
        for (int g = 0; g < ng; g++) {
                const struct lmp_block_q6_Kx16 *x = (const struct lmp_block_q6_Kx16 *)vx + (size_t)g * nb;
                for (int t = 0; t < nt; t++) {
                        const struct lmp_block_q8_K *y =
                                (const struct lmp_block_q8_K *)((const uint8_t *)vy + (size_t)t * by);
                        float acc[LMP_R16_ROWS] = { 0 };
                        for (int i = 0; i < nb; i++) {
                                for (int r = 0; r < LMP_R16_ROWS; r++) {
                                        int32_t isum = 0, msum = 0;
                                        for (int p = 0; p < LMP_QK_K / 16; p++) {
                                                const int8_t *a = y[i].qs + 16 * p;
                                                int32_t dot = 0;
                                                for (int k = 0; k < 4; k++) {
                                                        const uint8_t h = x[i].sub[p].qh[r][k];
                                                        const uint8_t l0 = x[i].sub[p].ql[0][r][k];
                                                        const uint8_t l1 = x[i].sub[p].ql[1][r][k];
                                                        dot += ((l0 & 0x0f) | (h & 3) << 4) * a[k];
                                                        dot += ((l0 >> 4) | ((h >> 4) & 3) << 4) * a[4 + k];
                                                        dot += ((l1 & 0x0f) | ((h >> 2) & 3) << 4) * a[8 + k];
                                                        dot += ((l1 >> 4) | ((h >> 6) & 3) << 4) * a[12 + k];
                                                }
                                                isum += x[i].scales[p][r] * dot;
                                                msum += x[i].scales[p][r] * y[i].bsums[p];
                                        }
                                        acc[r] += lmp_fp16_to_f32(x[i].d[r]) * y[i].d * (float)(isum - 32 * msum);
                                }
                        }
                        for (int r = 0; r < LMP_R16_ROWS; r++)
                                s[(size_t)t * ld + (size_t)g * LMP_R16_ROWS + (size_t)r] = acc[r];
                }
        }
}

/* ---- q4_0_r16 and q5_0_r16: 16 rows' blocks side by side ----------------- */

/* Block i of row r is block 16 i + r of its group; each row's sum takes its
 * blocks' products in the order the row's vec_dot takes them, so that the
 * results are the vec_dot's to the bit. */
#define GEMM_R16_32_REF(w, xtype)                                                                              \
void lmp_gemm_##w##_r16_q8_0_ref(int n, int ng, int nt, const void *restrict vx, const void *restrict vy,     \
                                 size_t by, float *restrict s, size_t ld) {                                   \
        const int nb = n / LMP_QK8_0;                                                                         \
        for (int g = 0; g < ng; g++) {                                                                        \
                const struct xtype *x = (const struct xtype *)vx + (size_t)g * nb * LMP_R16_ROWS;             \
                for (int t = 0; t < nt; t++) {                                                                \
                        const struct lmp_block_q8_0 *y =                                                      \
                                (const struct lmp_block_q8_0 *)((const uint8_t *)vy + (size_t)t * by);        \
                        for (int r = 0; r < LMP_R16_ROWS; r++) {                                              \
                                float sum = 0.0f;                                                             \
                                for (int i = 0; i < nb; i++) {                                                \
                                        float v;                                                              \
                                        lmp_vec_dot_##w##_q8_0_ref(LMP_QK8_0, &v,                             \
                                                                   &x[(size_t)i * LMP_R16_ROWS + (size_t)r],  \
                                                                   &y[i]);                                    \
                                        sum += v;                                                             \
                                }                                                                             \
                                s[(size_t)t * ld + (size_t)g * LMP_R16_ROWS + (size_t)r] = sum;               \
                        }                                                                                     \
                }                                                                                             \
        }                                                                                                     \
}
GEMM_R16_32_REF(q4_0, lmp_block_q4_0)
GEMM_R16_32_REF(q5_0, lmp_block_q5_0)

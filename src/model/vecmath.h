/* Elementwise math on GCC's (and clang's) generic vectors of 4 floats,
 * which compile to whatever vector registers the target has without ISA
 * flags: exp and the activations and softmax built on it, and LayerNorm,
 * shared by the decoder (forward.c) and the vision encoder (vision.c). Written without
 * branches (the compiler turns a scalar clamp into jumps). */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

/* GELU, tanh approximation (GGML's gelu), as x * sigmoid(2u) = x / (1 +
 * exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): 0.5 (1 + tanh(u)) is that
 * sigmoid. libm's tanhf is a call per value (a quarter of a BGE-small
 * forward pass on one thread went there). This exp is written on GCC's
 * (and clang's) generic vectors of 4 floats, which compile to whatever
 * vector registers the target has without ISA flags, and written without a
 * branch (the compiler turns a scalar clamp into jumps). Its error is a few
 * float ulps (Cephes' expf polynomial on [-ln2/2, ln2/2]); GGML itself
 * rounds GELU's input and output to f16. */
typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));

static inline vf4 vf4_set(float v) { return (vf4){ v, v, v, v }; }

static inline vf4 vf4_select(vi4 mask, vf4 a, vf4 b) {
        return (vf4)((mask & (vi4)a) | (~mask & (vi4)b));
}

static inline vf4 exp_vf4(vf4 x) {
        /* exp(x) = 2^k exp(r), k = round(x / ln2), |r| <= ln2 / 2; x within
         * +-86, where 2^k exp(r) is a normal float */
        x = vf4_select(x > vf4_set(-86.0f), x, vf4_set(-86.0f));
        x = vf4_select(x < vf4_set(86.0f), x, vf4_set(86.0f));
        const vf4 shift = vf4_set(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
        vf4 kf = x * 1.44269504088896341f + shift;
        vi4 k = (vi4)kf - 0x4b400000;           /* kf's low mantissa bits are k */
        kf -= shift;
        vf4 r = x - kf * 0.693359375f;          /* ln2, high bits: the product is exact */
        r -= kf * -2.12194440e-4f;              /* ln2, the rest */
        vf4 p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                  4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
        p = p * (r * r) + r + 1.0f;
        return (vf4)((vi4)p + (k << 23));
}

static inline vf4 gelu_vf4(vf4 v) {
        const float a = 0.044715f, s = 0.79788456080286535587989211986876f; /* sqrt(2/pi) */
        return v / (1.0f + exp_vf4((-2.0f * s) * v * (1.0f + a * v * v)));
}

/* row (n) <- softmax(scale * row), four lanes at a time (exp_vf4(): a few
 * float ulps from expf, no call per value); the sum of the exponentials in
 * double, as GGML's softmax. */
static inline void softmax_scaled(float *row, int n, float scale) {
        vf4 mx4 = vf4_set(-INFINITY), v;
        int i = 0;
        for (; i + 4 <= n; i += 4) {
                memcpy(&v, row + i, sizeof(v));
                v *= scale;
                memcpy(row + i, &v, sizeof(v));
                mx4 = vf4_select(v > mx4, v, mx4);
        }
        float mx = fmaxf(fmaxf(mx4[0], mx4[1]), fmaxf(mx4[2], mx4[3]));
        for (; i < n; i++) {
                row[i] *= scale;
                mx = fmaxf(mx, row[i]);
        }
        double sum = 0.0;
        for (i = 0; i + 4 <= n; i += 4) {
                memcpy(&v, row + i, sizeof(v));
                v = exp_vf4(v - mx);
                memcpy(row + i, &v, sizeof(v));
                sum += (double)((v[0] + v[1]) + (v[2] + v[3]));
        }
        for (; i < n; i++) {
                row[i] = expf(row[i] - mx);
                sum += (double)row[i];
        }
        const float inv = (float)(1.0 / sum);
        for (i = 0; i < n; i++)
                row[i] *= inv;
}

/* The sum of x[0, n) in double, in 8 interleaved partial sums: the double
 * additions' latency, not their count, bounds one running sum, and the
 * partial sums round differently from GGML's one running sum only far
 * below a float's precision. */
static inline double sum_f64(const float *x, int64_t n) {
        double p[8] = { 0 };
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                for (int k = 0; k < 8; k++)
                        p[k] += (double)x[i + k];
        for (; i < n; i++)
                p[0] += (double)x[i];
        return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

/* The sum of (x - mean)^2, each square in float as GGML's norm takes it,
 * summed as sum_f64() does. */
static inline double sum_sq_centred_f64(const float *x, int64_t n, float mean) {
        double p[8] = { 0 };
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                for (int k = 0; k < 8; k++) {
                        float d = x[i + k] - mean;
                        p[k] += (double)(d * d);
                }
        for (; i < n; i++) {
                float d = x[i] - mean;
                p[0] += (double)(d * d);
        }
        return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

/* out = (x - mean) / sqrt(var + eps) * weight + bias, per row; sums in
 * double, the variance over the centred values, as GGML's norm does. */
static inline void layernorm(float *out, const float *x, const float *weight, const float *bias,
                             int64_t n_tok, int64_t n, float eps) {
        for (int64_t t = 0; t < n_tok; t++) {
                const float *xr = x + t * n;
                float *o = out + t * n;
                float mean = (float)(sum_f64(xr, n) / (double)n);
                float scale = 1.0f / sqrtf((float)(sum_sq_centred_f64(xr, n, mean) / (double)n) + eps);
                for (int64_t i = 0; i < n; i++)
                        o[i] = (xr[i] - mean) * scale * weight[i] + bias[i];
        }
}

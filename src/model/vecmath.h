/* Elementwise math on GCC's (and clang's) generic vectors of 4 floats,
 * which compile to whatever vector registers the target has without ISA
 * flags: exp and the activations built on it, shared by the decoder's
 * encoders (forward.c) and the vision encoder (vision.c). Written without
 * branches (the compiler turns a scalar clamp into jumps). */
#pragma once

#include <stdint.h>

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


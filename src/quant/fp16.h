/* Half-precision (IEEE binary16) and bfloat16 conversions, exact and in plain
 * C so that every module (GGUF tools, model, kernels, tests) can use them.
 * f32 -> f16 and f32 -> bf16 round to nearest, ties to even, like ggml and
 * like the F16C instruction with rounding mode 0; NaN stays NaN (quiet). The
 * SIMD kernels use the hardware instructions, which give identical results. */
#pragma once

#include <stdint.h>
#include <string.h>

typedef uint16_t lmp_fp16;
typedef uint16_t lmp_bf16;

static inline uint32_t lmp_f32_bits(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

static inline float lmp_f32_from_bits(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

static inline float lmp_fp16_to_f32(lmp_fp16 h) {
        uint32_t sign = (uint32_t)(h & 0x8000) << 16;
        uint32_t exp = (h >> 10) & 0x1f;
        uint32_t man = h & 0x3ff;
        if (exp == 0x1f)        /* inf or NaN */
                return lmp_f32_from_bits(sign | 0x7f800000u | (man << 13));
        if (exp == 0) {
                if (man == 0)
                        return lmp_f32_from_bits(sign);
                /* subnormal: man * 2^-24, exact in f32 */
                float v = (float)man * 0x1p-24f;
                return sign ? -v : v;
        }
        return lmp_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline lmp_fp16 lmp_f32_to_fp16(float f) {
        uint32_t u = lmp_f32_bits(f);
        uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
        uint32_t a = u & 0x7fffffffu;
        if (a > 0x7f800000u)    /* NaN: keep the top mantissa bits, force quiet */
                return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
        if (a >= 0x477ff000u)   /* rounds to >= 65536: infinity */
                return (uint16_t)(sign | 0x7c00);
        if (a < 0x38800000u) {  /* below 2^-14: subnormal half or zero */
                /* The float adder rounds to nearest even at 2^-24 granularity. */
                float v = lmp_f32_from_bits(a) + 0.5f;
                return (uint16_t)(sign | (lmp_f32_bits(v) - 0x3f000000u));
        }
        uint32_t odd = (a >> 13) & 1;
        a += 0xfffu + odd;      /* round to nearest even on bit 13 */
        return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

static inline float lmp_bf16_to_f32(lmp_bf16 h) {
        return lmp_f32_from_bits((uint32_t)h << 16);
}

static inline lmp_bf16 lmp_f32_to_bf16(float f) {
        uint32_t u = lmp_f32_bits(f);
        if ((u & 0x7fffffffu) > 0x7f800000u)    /* NaN: force quiet */
                return (uint16_t)((u >> 16) | 64);
        return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

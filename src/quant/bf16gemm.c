/* bf16 products: the scalar twins, the packing, the dispatch and the
 * checks of whether a tensor's values are bf16 values (bf16gemm.h). */
#include "quant/bf16gemm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "common/macros.h"
#include "quant/fp16.h"

/* Pairs of inputs per block of the products: the kernel's sums go to out
 * after each, and the scalar twin keeps the same order. */
#define KC_PAIRS 128

bool lmp_cpu_bf16(void) {
#if LMP_HAVE_X86_KERNELS
        if (lmp_cpu_isa() != LMP_ISA_AVX512)
                return false;
        const char *env = getenv("LMPOOL_BF16");
        if (env && strcmp(env, "off") == 0)
                return false;
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 1, &a, &b, &c, &d))
                return false;
        return a & (1u << 5);   /* AVX512_BF16 */
#else
        return false;
#endif
}

static uint16_t to_bf16(float f) {
        const uint32_t u = lmp_f32_bits(f);
        return (u & 0x7f800000u) ? lmp_f32_to_bf16(f) : (uint16_t)((u >> 16) & 0x8000);
}

static uint16_t value_to_bf16(enum lmp_type type, const uint8_t *row, int64_t i) {
        uint16_t h;
        switch (type) {
        case LMP_TYPE_F16:
                memcpy(&h, row + 2 * i, 2);
                return to_bf16(lmp_fp16_to_f32(h));
        case LMP_TYPE_BF16:
                memcpy(&h, row + 2 * i, 2);
                return h;
        default: {
                float f;
                memcpy(&f, row + 4 * i, 4);
                return to_bf16(f);
        }
        }
}

static void bf16_pack_ref(enum lmp_type type, const void *w, int64_t m, int64_t k, size_t row_bytes,
                          uint16_t *dst) {
        const int64_t kp = lmp_bf16_kp(k);
        for (int64_t r0 = 0; r0 < m; r0 += 16) {
                uint16_t *blk = dst + (size_t)r0 * (size_t)kp;
                for (int64_t r = 0; r < 16; r++) {
                        const uint8_t *row = r0 + r < m ? (const uint8_t *)w + (size_t)(r0 + r) * row_bytes : NULL;
                        for (int64_t i = 0; i < kp; i++)
                                blk[(i / 2) * 32 + r * 2 + (i & 1)] = row && i < k ? value_to_bf16(type, row, i) : 0;
                }
        }
}

/* bf16 as the instruction reads it: subnormals are zero */
static inline float bf16_daz(uint16_t h) {
        return (h & 0x7f80) ? lmp_bf16_to_f32(h) : lmp_f32_from_bits((uint32_t)(h & 0x8000) << 16);
}

static inline float ftz(float v) {
        return fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v;
}

static void bf16_from_f32_ref(const float *x, int64_t k, uint16_t *dst) {
        for (int64_t i = 0; i < k; i++)
                dst[i] = to_bf16(x[i]);
        if (k & 1)
                dst[k] = 0;
}

static void gemm_bf16_ref(int64_t k, int64_t m, int64_t n, const uint16_t *w, const uint16_t *x, size_t xs,
                          float *out, size_t ld) {
        const int64_t kp = lmp_bf16_kp(k), np = kp / 2;
        for (int64_t p0 = 0; p0 < np; p0 += KC_PAIRS) {
                const int64_t pe = LMP_MIN(np, p0 + KC_PAIRS);
                for (int64_t r = 0; r < m; r++) {
                        const uint16_t *blk = w + (size_t)(r / 16 * 16) * (size_t)kp + (r % 16) * 2;
                        for (int64_t t = 0; t < n; t++) {
                                const uint16_t *xr = x + (size_t)t * xs;
                                float acc = out[(size_t)t * ld + (size_t)r];
                                for (int64_t p = p0; p < pe; p++) {
                                        /* the instruction's order: the odd product, then the even */
                                        acc = ftz(acc + bf16_daz(blk[p * 32 + 1]) * bf16_daz(xr[2 * p + 1]));
                                        acc = ftz(acc + bf16_daz(blk[p * 32]) * bf16_daz(xr[2 * p]));
                                }
                                out[(size_t)t * ld + (size_t)r] = acc;
                        }
                }
        }
}

void lmp_bf16_pack(enum lmp_isa isa, enum lmp_type type, const void *w, int64_t m, int64_t k, size_t row_bytes,
                   uint16_t *dst) {
#if LMP_HAVE_X86_KERNELS
        if (isa == LMP_ISA_AVX512) {
                lmp_bf16_pack_avx512(type, w, m, k, row_bytes, dst);
                return;
        }
#endif
        (void)isa;
        bf16_pack_ref(type, w, m, k, row_bytes, dst);
}

void lmp_bf16_from_f32(enum lmp_isa isa, const float *x, int64_t k, uint16_t *dst) {
#if LMP_HAVE_X86_KERNELS
        if (isa == LMP_ISA_AVX512) {
                lmp_bf16_from_f32_avx512(x, k, dst);
                return;
        }
#endif
        (void)isa;
        bf16_from_f32_ref(x, k, dst);
}

void lmp_gemm_bf16(enum lmp_isa isa, int64_t k, int64_t m, int64_t n, const uint16_t *w, const uint16_t *x,
                   size_t xs, float *out, size_t ld) {
#if LMP_HAVE_X86_KERNELS
        if (isa == LMP_ISA_AVX512) {
                lmp_gemm_bf16_avx512(k, m, n, w, x, xs, out, ld);
                return;
        }
#endif
        (void)isa;
        gemm_bf16_ref(k, m, n, w, x, xs, out, ld);
}

/* An f16 value is a bf16 value when its significand has 8 bits or fewer:
 * the low 3 of a normal one's 10 stored bits are zero; a subnormal (m
 * 2^-24, m < 1024) has m's bits past its 8th highest zero. Infinities
 * and NaNs count as bf16 by the same rule. */
bool lmp_f16_is_bf16(enum lmp_isa isa, const uint16_t *h, size_t n) {
#if LMP_HAVE_X86_KERNELS
        if (isa == LMP_ISA_AVX512)
                return lmp_f16_is_bf16_avx512(h, n);
#endif
        (void)isa;
        for (size_t i0 = 0; i0 < n; i0 += 4096) {
                const size_t i1 = LMP_MIN(n, i0 + 4096);
                unsigned bad = 0;
                for (size_t i = i0; i < i1; i++) {
                        const unsigned e = (h[i] >> 10) & 31, m = h[i] & 1023;
                        const unsigned low = e ? 7u : m >= 512 ? 3u : m >= 256 ? 1u : 0u;
                        bad |= m & low;
                }
                if (bad)
                        return false;
        }
        return true;
}

bool lmp_f32_is_bf16(const float *f, size_t n) {
        for (size_t i0 = 0; i0 < n; i0 += 4096) {
                const size_t i1 = LMP_MIN(n, i0 + 4096);
                uint32_t bad = 0;
                for (size_t i = i0; i < i1; i++)
                        bad |= lmp_f32_bits(f[i]) & 0xffffu;
                if (bad)
                        return false;
        }
        return true;
}

/* Checks of the bf16 products (quant/bf16gemm.h): the scalar twin against
 * the product in double of the same bf16 values, the AVX512-BF16 kernel
 * (where the CPU has it) against the scalar twin, the f32 -> bf16
 * conversions against each other bit for bit (subnormals, NaN, infinities
 * and ties among the inputs), and the "every value is a bf16 value" checks
 * of f16 and f32 tensors against the conversion. Shapes cover row counts
 * across the 16- and 32-row blocks, token counts across the 12-token
 * tiles, and input counts across the 256-value blocks, odd ones among them;
 * rows and outputs sit in padded strides whose padding no kernel may
 * change. Exits 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bf16gemm.h"
#include "quant/fp16.h"

#include "kernel_inputs.h"
#include "../check.h"

#define GUARD 12345.0f

static void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p) {
                fprintf(stderr, "out of memory\n");
                exit(1);
        }
        return p;
}

static const int64_t ms[] = { 1, 5, 16, 17, 31, 32, 33, 48, 70 };
static const int64_t ns[] = { 1, 2, 5, 11, 12, 13, 24, 25, 40 };
static const int64_t ks[] = { 1, 2, 3, 30, 255, 256, 257, 600 };

static void check_products(bool simd) {
        int cases = 0;
        for (size_t a = 0; a < sizeof(ms) / sizeof(ms[0]); a++)
                for (size_t b = 0; b < sizeof(ns) / sizeof(ns[0]); b++)
                        for (size_t c = 0; c < sizeof(ks) / sizeof(ks[0]); c++) {
                                const int64_t m = ms[a], n = ns[b], k = ks[c], kp = lmp_bf16_kp(k);
                                const size_t xs = (size_t)kp + 6, ld = (size_t)m + 3, wld = (size_t)k + 1;
                                float *wf = xmalloc((size_t)m * wld * sizeof(float));
                                float *xf = xmalloc((size_t)n * (size_t)k * sizeof(float));
                                uint16_t *wp = xmalloc(lmp_bf16_packed_size(m, k) * sizeof(uint16_t));
                                uint16_t *xb = xmalloc((size_t)n * xs * sizeof(uint16_t));
                                float *o1 = xmalloc((size_t)n * ld * sizeof(float));
                                float *o2 = xmalloc((size_t)n * ld * sizeof(float));
                                for (size_t i = 0; i < (size_t)m * wld; i++)
                                        wf[i] = rndf();
                                for (size_t i = 0; i < (size_t)n * (size_t)k; i++)
                                        xf[i] = 4.0f * rndf();
                                lmp_bf16_pack(LMP_ISA_SCALAR, LMP_TYPE_F32, wf, m, k, wld * sizeof(float), wp);
                                if (simd) {
                                        uint16_t *wq = xmalloc(lmp_bf16_packed_size(m, k) * sizeof(uint16_t));
                                        lmp_bf16_pack(LMP_ISA_AVX512, LMP_TYPE_F32, wf, m, k, wld * sizeof(float), wq);
                                        if (memcmp(wp, wq, lmp_bf16_packed_size(m, k) * sizeof(uint16_t)))
                                                FAIL("bf16_pack avx512 m %lld k %lld: not the scalar twin's layout",
                                                     (long long)m, (long long)k);
                                        free(wq);
                                }
                                for (int64_t t = 0; t < n; t++)
                                        lmp_bf16_from_f32(LMP_ISA_SCALAR, xf + t * k, k, xb + (size_t)t * xs);
                                for (int64_t t = 0; t < n; t++)
                                        for (size_t r = 0; r < ld; r++)
                                                o1[(size_t)t * ld + r] = o2[(size_t)t * ld + r] =
                                                        r < (size_t)m ? rndf() : GUARD;
                                lmp_gemm_bf16(LMP_ISA_SCALAR, k, m, n, wp, xb, xs, o1, ld);
                                if (simd) {
                                        lmp_gemm_bf16(LMP_ISA_AVX512, k, m, n, wp, xb, xs, o2, ld);
                                }
                                for (int64_t t = 0; t < n; t++)
                                        for (int64_t r = 0; r < m; r++) {
                                                /* the scalar twin against the same bf16 values in double */
                                                double want = 0, mag = 0;
                                                for (int64_t i = 0; i < k; i++) {
                                                        double p = (double)lmp_bf16_to_f32(lmp_f32_to_bf16(
                                                                           wf[(size_t)r * wld + (size_t)i])) *
                                                                   lmp_bf16_to_f32(xb[(size_t)t * xs + (size_t)i]);
                                                        want += p;
                                                        mag += fabs(p);
                                                }
                                                const size_t at = (size_t)t * ld + (size_t)r;
                                                if (simd) {
                                                        if (fabs((double)o2[at] - o1[at]) > 1e-6 * (mag + 1))
                                                                FAIL("gemm_bf16 avx512 m %lld n %lld k %lld [%lld][%lld]: "
                                                                     "%.9g, scalar %.9g",
                                                                     (long long)m, (long long)n, (long long)k,
                                                                     (long long)t, (long long)r, o2[at], o1[at]);
                                                        continue;
                                                }
                                                /* o2 still holds the starting value */
                                                want += o2[at];
                                                if (fabs(o1[at] - want) > 1e-5 * (mag + 1))
                                                        FAIL("gemm_bf16 scalar m %lld n %lld k %lld [%lld][%lld]: "
                                                             "%.9g, want %.9g",
                                                             (long long)m, (long long)n, (long long)k, (long long)t,
                                                             (long long)r, o1[at], want);
                                        }
                                for (int64_t t = 0; t < n; t++)
                                        for (size_t r = (size_t)m; r < ld; r++)
                                                if (o1[(size_t)t * ld + r] != GUARD ||
                                                    o2[(size_t)t * ld + r] != GUARD)
                                                        FAIL("gemm_bf16 m %lld n %lld k %lld: padding changed",
                                                             (long long)m, (long long)n, (long long)k);
                                free(wf), free(xf), free(wp), free(xb), free(o1), free(o2);
                                cases++;
                        }
        printf("gemm_bf16 %s: %d shapes\n",
               simd ? "and bf16_pack, avx512 against the scalar twins" : "scalar against double",
               cases);
}

/* f32 values the conversion must get right: ties, subnormals, the
 * largest finite values, infinities and NaNs, and random ones */
static float special(int i) {
        static const uint32_t bits[] = {
                0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, 0x3f808000, 0x3f818000,
                0x3f80ffff, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00001, 0xffa00000,
                0x7f7f8000, 0x3f7fffff,
        };
        if (i < (int)(sizeof(bits) / sizeof(bits[0])))
                return lmp_f32_from_bits(bits[i]);
        return lmp_f32_from_bits((uint32_t)rnd());
}

static void check_conversion(bool simd) {
        for (int64_t k = 1; k <= 80; k++) {
                float *x = xmalloc((size_t)k * sizeof(float));
                const int64_t kp = lmp_bf16_kp(k);
                uint16_t *a = xmalloc((size_t)(kp + 1) * sizeof(uint16_t));
                uint16_t *b = xmalloc((size_t)(kp + 1) * sizeof(uint16_t));
                for (int64_t i = 0; i < k; i++)
                        x[i] = special((int)((i * 7 + k) % 24));
                a[kp] = b[kp] = 0xabcd;
                lmp_bf16_from_f32(LMP_ISA_SCALAR, x, k, a);
                for (int64_t i = 0; i < k; i++) {
                        const uint32_t u = lmp_f32_bits(x[i]);
                        const uint16_t want = (u & 0x7f800000u) ? lmp_f32_to_bf16(x[i]) : (uint16_t)(u >> 16 & 0x8000);
                        CHECK(a[i] == want, "k %lld [%lld]: %04x for %08x, want %04x", (long long)k, (long long)i,
                              a[i], u, want);
                }
                CHECK(kp == k || a[k] == 0, "k %lld: pad %04x", (long long)k, a[k]);
                CHECK(a[kp] == 0xabcd, "k %lld: wrote past the row", (long long)k);
                if (simd) {
                        lmp_bf16_from_f32(LMP_ISA_AVX512, x, k, b);
                        for (int64_t i = 0; i < kp; i++)
                                CHECK(a[i] == b[i], "k %lld [%lld]: avx512 %04x, scalar %04x for %08x", (long long)k,
                                      (long long)i, b[i], a[i], i < k ? lmp_f32_bits(x[i]) : 0);
                        CHECK(b[kp] == 0xabcd, "k %lld: avx512 wrote past the row", (long long)k);
                }
                free(x), free(a), free(b);
        }
        printf("bf16 conversion%s: rows of 1 to 80 values\n", simd ? " (scalar and avx512, bit for bit)" : "");
}

/* Packing from f16 and bf16 rows (any 16-bit pattern: subnormals, NaNs
 * and infinities among them): the scalar twin against the f32 rows of the
 * same values, and the AVX-512 packing against the scalar twin. */
static void check_pack_types(bool simd) {
        int cases = 0;
        for (size_t a = 0; a < sizeof(ms) / sizeof(ms[0]); a++)
                for (size_t c = 0; c < sizeof(ks) / sizeof(ks[0]); c++) {
                        const int64_t m = ms[a], k = ks[c];
                        const size_t ld = (size_t)k + 3, size = lmp_bf16_packed_size(m, k);
                        uint16_t *h = xmalloc((size_t)m * ld * sizeof(uint16_t));
                        float *f = xmalloc((size_t)m * ld * sizeof(float));
                        uint16_t *p1 = xmalloc(size * sizeof(uint16_t)), *p2 = xmalloc(size * sizeof(uint16_t));
                        for (size_t i = 0; i < (size_t)m * ld; i++)
                                h[i] = (uint16_t)rnd();
                        for (int t = 0; t < 2; t++) {
                                const enum lmp_type type = t ? LMP_TYPE_BF16 : LMP_TYPE_F16;
                                for (size_t i = 0; i < (size_t)m * ld; i++)
                                        f[i] = t ? lmp_bf16_to_f32(h[i]) : lmp_fp16_to_f32(h[i]);
                                lmp_bf16_pack(LMP_ISA_SCALAR, type, h, m, k, ld * sizeof(uint16_t), p1);
                                if (t == 0) {   /* f16: as the f32 values would be */
                                        lmp_bf16_pack(LMP_ISA_SCALAR, LMP_TYPE_F32, f, m, k, ld * sizeof(float), p2);
                                        if (memcmp(p1, p2, size * sizeof(uint16_t)))
                                                FAIL("bf16_pack scalar from f16 m %lld k %lld: not as from f32",
                                                     (long long)m, (long long)k);
                                } else {        /* bf16: copied */
                                        for (int64_t r = 0; r < m; r++)
                                                for (int64_t i = 0; i < k; i++)
                                                        if (p1[(size_t)(r / 16 * 16) * (size_t)lmp_bf16_kp(k) +
                                                               (size_t)(i / 2 * 32 + r % 16 * 2 + i % 2)] !=
                                                            h[(size_t)r * ld + (size_t)i])
                                                                FAIL("bf16_pack scalar from bf16 m %lld k %lld: "
                                                                     "[%lld][%lld] not copied",
                                                                     (long long)m, (long long)k, (long long)r,
                                                                     (long long)i);
                                }
                                if (simd) {
                                        lmp_bf16_pack(LMP_ISA_AVX512, type, h, m, k, ld * sizeof(uint16_t), p2);
                                        if (memcmp(p1, p2, size * sizeof(uint16_t)))
                                                FAIL("bf16_pack avx512 from %s m %lld k %lld: not the scalar twin's",
                                                     t ? "bf16" : "f16", (long long)m, (long long)k);
                                }
                                cases++;
                        }
                        free(h), free(f), free(p1), free(p2);
                }
        printf("bf16_pack from f16 and bf16 rows%s: %d shapes\n", simd ? " (scalar and avx512)" : "", cases);
}

static void check_exactness(enum lmp_isa isa) {
        int exact = 0;
        for (uint32_t h = 0; h < 65536; h++) {
                const uint16_t v = (uint16_t)h;
                const bool want = (lmp_f32_bits(lmp_fp16_to_f32(v)) & 0xffffu) == 0;
                exact += want;
                CHECK(lmp_f16_is_bf16(isa, &v, 1) == want, "%s f16 %04x: %d", lmp_isa_name(isa), v, !want);
        }
        /* one value that is not, among many that are, anywhere in a long row */
        const size_t n = 10000;
        uint16_t *h = xmalloc(n * sizeof(uint16_t));
        float *f = xmalloc(n * sizeof(float));
        for (size_t at = 0; at < n; at += 997) {
                for (size_t i = 0; i < n; i++) {
                        h[i] = (uint16_t)(0x3c00 + 8 * (i % 100));
                        f[i] = lmp_bf16_to_f32((uint16_t)(0x3f80 + i % 100));
                }
                for (size_t len = at + 1; len <= n; len += n - at - 1 ? n - at - 1 : 1) {
                        CHECK(lmp_f16_is_bf16(isa, h, len) && lmp_f32_is_bf16(f, len), "row of bf16 values refused");
                        h[at] |= 1;
                        f[at] = nextafterf(f[at], 2.0f);
                        CHECK(!lmp_f16_is_bf16(isa, h, len) && !lmp_f32_is_bf16(f, len), "%s: value %zu of %zu not seen",
                              lmp_isa_name(isa), at, len);
                        h[at] &= (uint16_t)~1u;
                        f[at] = lmp_bf16_to_f32((uint16_t)(0x3f80 + at % 100));
                }
        }
        free(h), free(f);
        printf("bf16 exactness (%s): %d of the 65536 f16 values are bf16 values\n", lmp_isa_name(isa), exact);
}

int main(void) {
        const bool simd = lmp_cpu_bf16();
        check_conversion(false);
        check_exactness(LMP_ISA_SCALAR);
        check_products(false);
        check_pack_types(simd);
        if (simd) {
                check_exactness(LMP_ISA_AVX512);
                check_conversion(true);
                check_products(true);
        } else {
                printf("no AVX512-BF16 here (or LMPOOL_BF16=off): the scalar twin only\n");
        }
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        return 0;
}

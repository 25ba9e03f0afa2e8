/* Kernel checks in the style of dav1d's checkasm: for every type and every
 * ISA level this CPU has, the SIMD kernels are run on the same random and
 * extreme inputs as their scalar twins and must agree: activation quantizers
 * byte for byte (or, for Q8_0/Q8_1, where ggml's SIMD quantizer rounds
 * differently from its scalar one, exactly like a model of that rounding and
 * within one step of the scalar result), to_float exactly, vec_dot within a
 * tight bound relative to the sum of the magnitudes of its terms. It also
 * checks the scalar vec_dots against the dot product of the dequantized rows,
 * and the quantize/dequantize round trip of each activation type. Prints one
 * line per failure and a summary; exits 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/quant.h"

#include "kernel_inputs.h"
#include "../check.h"

static int checks;

/* ---- vec_dot ---------------------------------------------------------- */

static double dequant_dot(const struct lmp_quant_traits *w, const struct lmp_quant_traits *a,
                          const uint8_t *x, const uint8_t *y, int64_t n) {
        float *xf = malloc((size_t)n * sizeof(float));
        float *yf = malloc((size_t)n * sizeof(float));
        w->to_float(x, xf, n);
        a->to_float(y, yf, n);
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
                s += (double)xf[i] * yf[i];
        free(xf);
        free(yf);
        return s;
}

/* Q4_1/Q5_1 dots use the activation's stored s, which is d * sum(q) rounded
 * to f16 (from the unrounded d), not the sum of the dequantized values: the
 * dot differs from the dequantized one by m * (s - d16 * sum(q)) per block. */
static double q8_1_s_error(enum lmp_type t, const uint8_t *x, const uint8_t *y, int64_t n) {
        if (t != LMP_TYPE_Q4_1 && t != LMP_TYPE_Q5_1)
                return 0.0;
        const size_t xs = lmp_type_info(t)->type_size;
        double e = 0.0;
        for (int64_t b = 0; b < n / 32; b++) {
                lmp_fp16 m, d, s;
                memcpy(&m, x + b * xs + 2, 2);
                memcpy(&d, y + b * 36, 2);
                memcpy(&s, y + b * 36 + 2, 2);
                int sum = 0;
                for (int j = 0; j < 32; j++)
                        sum += (int8_t)y[b * 36 + 4 + j];
                e += fabs((double)lmp_fp16_to_f32(m)) *
                     fabs((double)lmp_fp16_to_f32(s) - (double)lmp_fp16_to_f32(d) * sum);
        }
        return e * 1.0001;
}

static const enum lmp_type weight_types[] = {
        LMP_TYPE_F32, LMP_TYPE_F16, LMP_TYPE_BF16, LMP_TYPE_Q4_0, LMP_TYPE_Q4_1,
        LMP_TYPE_Q5_0, LMP_TYPE_Q5_1, LMP_TYPE_Q8_0, LMP_TYPE_Q2_K, LMP_TYPE_Q3_K,
        LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K,
};

/* Checks the scalar dot against the dequantized rows (once), and each SIMD
 * level's dot against the scalar one, for one weight type. */
static void check_vec_dot(enum lmp_type t, enum lmp_isa top) {
        const struct lmp_quant_traits *w0 = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const struct lmp_quant_traits *a0 = lmp_quant_traits(w0->vec_dot_type, LMP_ISA_SCALAR);
        const uint32_t blck = lmp_type_info(t)->blck_size;
        const uint32_t qk = blck > 1 ? blck : 32;
        /* One block, odd and even counts (the SIMD kernels take two or four
         * blocks, or 64 floats, at a time), and float rows with ragged tails. */
        const int nblocks[] = { 1, 2, 3, 7, 8, 17, 64 };
        for (size_t li = 0; li < sizeof(nblocks) / sizeof(nblocks[0]); li++) {
                const int64_t n = (int64_t)qk * nblocks[li] + (blck == 1 && (li & 1) ? 7 : 0);
                const size_t xbytes = lmp_type_row_size(t, (uint64_t)n);
                const size_t ybytes = lmp_type_row_size(w0->vec_dot_type, (uint64_t)n);
                uint8_t *x = malloc(xbytes), *y = malloc(ybytes);
                float *yf = malloc((size_t)n * sizeof(float));
                for (int k = 0; k < SC_COUNT; k++) {
                        for (int allmax = 0; allmax < 2; allmax++) {
                                fill_weights(t, x, n, (enum scale_kind)k, allmax);
                                fill_floats(yf, n, (enum scale_kind)((k + allmax) % SC_COUNT));
                                if (allmax)
                                        for (int64_t i = 0; i < n; i++)
                                                yf[i] = (i & 1) ? -1e3f : 1e3f;
                                a0->from_float(yf, y, n);
                                float ref;
                                w0->vec_dot((int)n, &ref, x, y);
                                const double mag = magnitude(w0, a0, x, y, n, xbytes);
                                const double tol = 2e-5 * mag + 1e-30;
                                const double dq = dequant_dot(w0, a0, x, y, n);
                                checks++;
                                if (!(fabs(dq - ref) <= tol + q8_1_s_error(t, x, y, n)))
                                        FAIL("%s ref vs dequantized: n=%lld scales=%s allmax=%d: %.9g vs %.9g (tol %.3g)",
                                             lmp_type_name(t), (long long)n, scale_names[k], allmax, ref, dq, tol);
                                for (int isa = LMP_ISA_AVX2; isa <= (int)top; isa++) {
                                        const struct lmp_quant_traits *w = lmp_quant_traits(t, (enum lmp_isa)isa);
                                        float got = NAN;
                                        w->vec_dot((int)n, &got, x, y);
                                        checks++;
                                        if (!(fabs((double)got - ref) <= tol))
                                                FAIL("vec_dot %s %s: n=%lld scales=%s allmax=%d: %.9g, scalar %.9g (tol %.3g)",
                                                     lmp_type_name(t), lmp_isa_name((enum lmp_isa)isa), (long long)n,
                                                     scale_names[k], allmax, got, ref, tol);
                                }
                        }
                }
                free(x);
                free(y);
                free(yf);
        }
}

/* ---- activation quantizers and to_float -------------------------------- */

/* ggml's SIMD Q8_0/Q8_1 quantizers multiply by 127/amax and round half to
 * even, where the scalar ones multiply by 1/(amax/127) and round half away
 * from zero; quants can therefore differ by one. This is that SIMD
 * arithmetic in scalar form, which the SIMD kernels must match exactly. */
static void model_simd_q8(const float *x, int8_t *q, float *dsum, int len) {
        float amax = 0.0f;
        for (int j = 0; j < len; j++)
                amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < len; j++) {
                q[j] = (int8_t)nearbyintf(x[j] * id);
                sum += q[j];
        }
        *dsum = (amax / 127.0f) * (float)sum;
}

static void check_quantizer(enum lmp_type t, enum lmp_isa top) {
        const struct lmp_quant_traits *r = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const uint32_t blck = lmp_type_info(t)->blck_size;
        const int64_t n = (blck > 1 ? blck : 32) * 9;
        const size_t bytes = lmp_type_row_size(t, (uint64_t)n);
        float *x = malloc((size_t)n * sizeof(float));
        float *back = malloc((size_t)n * sizeof(float));
        uint8_t *want = malloc(bytes), *got = malloc(bytes);
        for (int k = 0; k < SC_COUNT + 2; k++) {
                if (k < SC_COUNT)
                        fill_floats(x, n, (enum scale_kind)k);
                else    /* ties: multiples of half a step, and one dominant value */
                        for (int64_t i = 0; i < n; i++)
                                x[i] = k == SC_COUNT ? (float)((int)(rnd() % 255) - 127) * 0.5f
                                                     : (i % 37 == 0 ? -100.0f : rndf());
                r->from_float(x, want, n);
                /* Round trip: every value comes back within half a step. */
                r->to_float(want, back, n);
                for (int64_t i = 0; i < n; i++) {
                        double step;
                        if (t == LMP_TYPE_F32)
                                step = 0.0;
                        else if (t == LMP_TYPE_F16)
                                step = fmax(fabs(x[i]) * 0x1p-10, 0x1p-24);
                        else if (t == LMP_TYPE_BF16)
                                step = fabs(x[i]) * 0x1p-7;
                        else {
                                /* Half a step of the stored d, plus what rounding d
                                 * itself (to f16 for Q8_0/Q8_1) moved the largest quant. */
                                const int64_t b = i / blck;
                                float amax = 0.0f;
                                for (int64_t j = b * blck; j < (b + 1) * (int64_t)blck; j++)
                                        amax = fmaxf(amax, fabsf(x[j]));
                                double d;
                                if (t == LMP_TYPE_Q8_K) {
                                        float dk;
                                        memcpy(&dk, want + b * sizeof(struct lmp_block_q8_K), sizeof(dk));
                                        d = dk;
                                } else {
                                        lmp_fp16 h;
                                        memcpy(&h, want + b * (t == LMP_TYPE_Q8_0 ? 34 : 36), sizeof(h));
                                        d = lmp_fp16_to_f32(h);
                                }
                                step = fabs(d) + 2.0 * 127.0 * fabs(fabs(d) - amax / 127.0) + 1e-6 * fabs(d);
                        }
                        checks++;
                        if (!(fabs((double)back[i] - x[i]) <= step * 0.5 + 1e-30)) {
                                FAIL("%s round trip: x[%lld]=%.9g came back %.9g", lmp_type_name(t),
                                     (long long)i, x[i], back[i]);
                                break;
                        }
                }
                for (int isa = LMP_ISA_AVX2; isa <= (int)top; isa++) {
                        const struct lmp_quant_traits *s = lmp_quant_traits(t, (enum lmp_isa)isa);
                        memset(got, 0x55, bytes);
                        s->from_float(x, got, n);
                        checks++;
                        if (t != LMP_TYPE_Q8_0 && t != LMP_TYPE_Q8_1) {
                                if (memcmp(got, want, bytes))
                                        FAIL("from_float %s %s: bytes differ (case %d)", lmp_type_name(t),
                                             lmp_isa_name((enum lmp_isa)isa), k);
                        } else {
                                const size_t bs = t == LMP_TYPE_Q8_0 ? 34 : 36;
                                for (int64_t b = 0; b < n / 32; b++) {
                                        const uint8_t *g = got + b * bs, *w = want + b * bs;
                                        const int8_t *gq = (const int8_t *)(g + bs - 32);
                                        const int8_t *wq = (const int8_t *)(w + bs - 32);
                                        int8_t mq[32];
                                        float dsum;
                                        model_simd_q8(x + b * 32, mq, &dsum, 32);
                                        int bad = memcmp(g, w, 2) != 0 || memcmp(gq, mq, 32) != 0;
                                        for (int j = 0; j < 32; j++)
                                                bad |= abs(gq[j] - wq[j]) > 1;
                                        if (t == LMP_TYPE_Q8_1) {
                                                lmp_fp16 hs;
                                                memcpy(&hs, g + 2, 2);
                                                bad |= hs != lmp_f32_to_fp16(dsum);
                                        }
                                        if (bad) {
                                                FAIL("from_float %s %s: block %lld differs (case %d)", lmp_type_name(t),
                                                     lmp_isa_name((enum lmp_isa)isa), (long long)b, k);
                                                break;
                                        }
                                }
                        }
                        /* to_float of activation types: exact. */
                        float *sb = malloc((size_t)n * sizeof(float));
                        s->to_float(want, sb, n);
                        checks++;
                        if (memcmp(sb, back, (size_t)n * sizeof(float)))
                                FAIL("to_float %s %s differs", lmp_type_name(t), lmp_isa_name((enum lmp_isa)isa));
                        free(sb);
                }
        }
        free(x);
        free(back);
        free(want);
        free(got);
}

/* to_float of weight types at each level against the scalar one: exact. */
static void check_to_float(enum lmp_type t, enum lmp_isa top) {
        const struct lmp_quant_traits *r = lmp_quant_traits(t, LMP_ISA_SCALAR);
        const uint32_t blck = lmp_type_info(t)->blck_size;
        const int64_t n = (blck > 1 ? blck : 32) * 5;
        uint8_t *x = malloc(lmp_type_row_size(t, (uint64_t)n));
        float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        for (int k = 0; k < SC_COUNT; k++) {
                fill_weights(t, x, n, (enum scale_kind)k, 0);
                r->to_float(x, want, n);
                for (int isa = LMP_ISA_AVX2; isa <= (int)top; isa++) {
                        lmp_quant_traits(t, (enum lmp_isa)isa)->to_float(x, got, n);
                        checks++;
                        if (memcmp(got, want, (size_t)n * sizeof(float)))
                                FAIL("to_float %s %s differs (scales %s)", lmp_type_name(t),
                                     lmp_isa_name((enum lmp_isa)isa), scale_names[k]);
                }
        }
        free(x);
        free(want);
        free(got);
}

/* Exhaustive f16 conversions: every half survives f16 -> f32 -> f16, and
 * f32 -> f16 rounds to the nearest half, ties to even. */
static void check_fp16(void) {
        for (uint32_t h = 0; h < 0x10000; h++) {
                const float f = lmp_fp16_to_f32((lmp_fp16)h);
                checks++;
                if (isnan(f) ? (lmp_f32_to_fp16(f) & 0x7e00) != 0x7e00 : lmp_f32_to_fp16(f) != h)
                        FAIL("fp16 %#06x does not round trip", h);
                /* Halfway to the next half up (in magnitude) must round to the even one. */
                if ((h & 0x7fff) < 0x7bff) {
                        const float g = lmp_fp16_to_f32((lmp_fp16)(h + 1));
                        const float mid = f + (g - f) * 0.5f;
                        const lmp_fp16 even = (h & 1) ? (lmp_fp16)(h + 1) : (lmp_fp16)h;
                        checks++;
                        if (lmp_f32_to_fp16(mid) != even)
                                FAIL("fp16 tie between %#06x and %#06x rounds to %#06x", h, h + 1,
                                     lmp_f32_to_fp16(mid));
                }
        }
        checks++;
        if (lmp_f32_to_fp16(65520.0f) != 0x7c00 || lmp_f32_to_fp16(65519.0f) != 0x7bff ||
            lmp_f32_to_bf16(1.00390625f) != 0x3f80 || lmp_f32_to_bf16(1.01171875f) != 0x3f82)
                FAIL("fp16/bf16 rounding at overflow or ties");
}

/* The traits table: llama.cpp's pairings, complete rows at every level,
 * NULL for types without kernels; LMPOOL_ISA only ever lowers the level. */
static void check_traits(void) {
        static const struct { enum lmp_type w, a; } pairs[] = {
                { LMP_TYPE_F32, LMP_TYPE_F32 }, { LMP_TYPE_F16, LMP_TYPE_F16 }, { LMP_TYPE_BF16, LMP_TYPE_BF16 },
                { LMP_TYPE_Q4_0, LMP_TYPE_Q8_0 }, { LMP_TYPE_Q4_1, LMP_TYPE_Q8_1 }, { LMP_TYPE_Q5_0, LMP_TYPE_Q8_0 },
                { LMP_TYPE_Q5_1, LMP_TYPE_Q8_1 }, { LMP_TYPE_Q8_0, LMP_TYPE_Q8_0 }, { LMP_TYPE_Q2_K, LMP_TYPE_Q8_K },
                { LMP_TYPE_Q3_K, LMP_TYPE_Q8_K }, { LMP_TYPE_Q4_K, LMP_TYPE_Q8_K }, { LMP_TYPE_Q5_K, LMP_TYPE_Q8_K },
                { LMP_TYPE_Q6_K, LMP_TYPE_Q8_K },
        };
        for (int isa = 0; isa < LMP_ISA_COUNT; isa++) {
                for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
                        const struct lmp_quant_traits *t = lmp_quant_traits(pairs[i].w, (enum lmp_isa)isa);
                        const struct lmp_quant_traits *a = lmp_quant_traits(pairs[i].a, (enum lmp_isa)isa);
                        checks++;
                        if (!t || !a || t->type != pairs[i].w || t->vec_dot_type != pairs[i].a || !t->to_float ||
                            !t->vec_dot || !a->from_float || !a->to_float)
                                FAIL("traits %s at %s incomplete or mispaired", lmp_type_name(pairs[i].w),
                                     lmp_isa_name((enum lmp_isa)isa));
                }
                checks++;
                if (lmp_quant_traits(LMP_TYPE_IQ2_XXS, (enum lmp_isa)isa) ||
                    lmp_quant_traits(LMP_TYPE_I32, (enum lmp_isa)isa) ||
                    lmp_quant_traits((enum lmp_type)4, (enum lmp_isa)isa) ||
                    lmp_quant_traits(LMP_TYPE_COUNT, (enum lmp_isa)isa))
                        FAIL("traits for a type without kernels at %s", lmp_isa_name((enum lmp_isa)isa));
        }
        checks++;
        if (lmp_quant_traits(LMP_TYPE_F32, LMP_ISA_COUNT) || lmp_isa_name(LMP_ISA_COUNT))
                FAIL("an invalid ISA level was accepted");
        char *saved = getenv("LMPOOL_ISA") ? strdup(getenv("LMPOOL_ISA")) : NULL;
        unsetenv("LMPOOL_ISA");
        const enum lmp_isa hw = lmp_cpu_isa();
        setenv("LMPOOL_ISA", "scalar", 1);
        checks++;
        if (lmp_cpu_isa() != LMP_ISA_SCALAR)
                FAIL("LMPOOL_ISA=scalar not honoured");
        setenv("LMPOOL_ISA", "avx2", 1);
        checks++;
        if (lmp_cpu_isa() != (hw < LMP_ISA_AVX2 ? hw : LMP_ISA_AVX2))
                FAIL("LMPOOL_ISA=avx2 not honoured");
        setenv("LMPOOL_ISA", "avx512", 1);
        checks++;
        if (lmp_cpu_isa() != hw)
                FAIL("LMPOOL_ISA=avx512 raised or lowered the level");
        setenv("LMPOOL_ISA", "sse9", 1);
        checks++;
        if (lmp_cpu_isa() != hw)
                FAIL("an unknown LMPOOL_ISA changed the level");
        if (saved)
                setenv("LMPOOL_ISA", saved, 1);
        else
                unsetenv("LMPOOL_ISA");
        free(saved);
}

int main(void) {
        check_traits();
        const enum lmp_isa top = lmp_cpu_isa();
        printf("kernels: CPU level %s\n", lmp_isa_name(top));
        check_fp16();
        for (size_t i = 0; i < sizeof(weight_types) / sizeof(weight_types[0]); i++) {
                check_vec_dot(weight_types[i], top);
                check_to_float(weight_types[i], top);
        }
        const enum lmp_type acts[] = { LMP_TYPE_F32, LMP_TYPE_F16, LMP_TYPE_BF16,
                                       LMP_TYPE_Q8_0, LMP_TYPE_Q8_1, LMP_TYPE_Q8_K };
        for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
                check_quantizer(acts[i], top);
        printf("kernels: %d checks, %d failures\n", checks, failures);
        return failures ? 1 : 0;
}

/* Inputs for the kernel checks, shared by test_kernels and test_gemm: a
 * deterministic generator, weight rows of random blocks with chosen scale
 * patterns (normal, tiny, huge, zero, negative, mixed), activation rows, and
 * the magnitude bound that vec_dot results are compared within. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/fp16.h"

#include "kernel_inputs.h"

/* xorshift64*: the tests' own deterministic generator. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

uint64_t rnd(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dull;
}

float rndf(void) {  /* uniform in [-1, 1) */
        return (float)((double)(rnd() >> 11) * 0x1p-52 - 1.0);
}

const char *const scale_names[SC_COUNT] = { "normal", "tiny", "huge", "zero", "negative", "mixed" };

float pick_scale(enum scale_kind k) {
        switch (k) {
        case SC_NORMAL: return 0.001f + 0.05f * fabsf(rndf());
        case SC_TINY: return 3e-7f;                    /* a subnormal half */
        case SC_HUGE: return 30000.0f + 30000.0f * fabsf(rndf());
        case SC_ZERO: return 0.0f;
        case SC_NEG: return -(0.001f + 0.05f * fabsf(rndf()));
        default: break;
        }
        static const float mix[] = { 0.02f, -0.03f, 0.0f, 3e-7f, 1000.0f, -7.5e-5f };
        return mix[rnd() % 6];
}

/* Offsets of the fp16 d and dmin/m fields in each weight block (-1: none). */
struct wlayout {
        enum lmp_type type;
        int d_off, m_off;
};

static const struct wlayout wlayouts[] = {
        { LMP_TYPE_Q4_0, 0, -1 }, { LMP_TYPE_Q4_1, 0, 2 }, { LMP_TYPE_Q5_0, 0, -1 },
        { LMP_TYPE_Q5_1, 0, 2 }, { LMP_TYPE_Q8_0, 0, -1 }, { LMP_TYPE_Q2_K, 80, 82 },
        { LMP_TYPE_Q3_K, 108, -1 }, { LMP_TYPE_Q4_K, 0, 2 }, { LMP_TYPE_Q5_K, 0, 2 },
        { LMP_TYPE_Q6_K, 208, -1 },
};

static void put_half(uint8_t *p, float v) {
        lmp_fp16 h = lmp_f32_to_fp16(v);
        memcpy(p, &h, sizeof(h));
}

/* Fills a weight row of n values: random bytes, then scales of kind k; with
 * allmax, every quant bit set. q8_0 quants stay within [-127, 127], as
 * ggml's quantizer produces. */
void fill_weights(enum lmp_type t, uint8_t *buf, int64_t n, enum scale_kind k, int allmax) {
        const struct lmp_type_info *ti = lmp_type_info(t);
        const int64_t nb = n / ti->blck_size;
        if (t == LMP_TYPE_F32 || t == LMP_TYPE_F16 || t == LMP_TYPE_BF16) {
                float s = k == SC_ZERO ? 0.0f : fabsf(pick_scale(k == SC_MIXED ? SC_NORMAL : k));
                if (k == SC_HUGE)
                        s = 200.0f;
                for (int64_t i = 0; i < n; i++) {
                        float v = allmax ? s : rndf() * s * 50.0f;
                        if (k == SC_NEG)
                                v = -fabsf(v);
                        if (t == LMP_TYPE_F32)
                                memcpy(buf + 4 * i, &v, 4);
                        else if (t == LMP_TYPE_F16)
                                put_half(buf + 2 * i, v);
                        else {
                                lmp_bf16 b = lmp_f32_to_bf16(v);
                                memcpy(buf + 2 * i, &b, 2);
                        }
                }
                return;
        }
        const struct wlayout *wl = NULL;
        for (size_t j = 0; j < sizeof(wlayouts) / sizeof(wlayouts[0]); j++)
                if (wlayouts[j].type == t)
                        wl = &wlayouts[j];
        for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = buf + b * ti->type_size;
                for (uint32_t j = 0; j < ti->type_size; j++)
                        blk[j] = allmax ? 0xff : (uint8_t)rnd();
                if (t == LMP_TYPE_Q8_0)
                        for (int j = 2; j < 34; j++)
                                blk[j] = allmax ? 127 : (uint8_t)(int8_t)((int)(rnd() % 255) - 127);
                put_half(blk + wl->d_off, pick_scale(k));
                if (wl->m_off >= 0)
                        put_half(blk + wl->m_off, pick_scale(k) * 0.5f);
        }
}

/* Zeroes the d field of every block, leaving only the min/offset part. */
void zero_d(enum lmp_type t, uint8_t *buf, int64_t n) {
        const struct lmp_type_info *ti = lmp_type_info(t);
        for (size_t j = 0; j < sizeof(wlayouts) / sizeof(wlayouts[0]); j++)
                if (wlayouts[j].type == t)
                        for (int64_t b = 0; b < (int64_t)(n / ti->blck_size); b++)
                                put_half(buf + b * ti->type_size + wlayouts[j].d_off, 0.0f);
}

void fill_floats(float *x, int64_t n, enum scale_kind k) {
        for (int64_t i = 0; i < n; i += 32) {
                /* Large, but small enough that Q8_1's f16 s = d * sum(q) stays finite. */
                float s = pick_scale(k);
                if (fabsf(s) > 50.0f)
                        s = 50.0f;
                for (int64_t j = i; j < i + 32 && j < n; j++)
                        x[j] = rndf() * s * 20.0f;
        }
}

double magnitude_rows(const float *xf, const float *xm, const float *yf, int64_t n) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
                s += fabs((double)(xf[i] - xm[i]) * yf[i]) + fabs((double)xm[i] * yf[i]);
        return s;
}

void offset_part(enum lmp_type t, const uint8_t *x, float *xm, int64_t n, size_t xbytes) {
        uint8_t *x0 = malloc(xbytes);
        memcpy(x0, x, xbytes);
        zero_d(t, x0, n);
        lmp_quant_traits(t, LMP_ISA_SCALAR)->to_float(x0, xm, n);
        free(x0);
}

double magnitude(const struct lmp_quant_traits *w, const struct lmp_quant_traits *a,
                 const uint8_t *x, const uint8_t *y, int64_t n, size_t xbytes) {
        float *xf = malloc((size_t)n * sizeof(float));
        float *xm = malloc((size_t)n * sizeof(float));
        float *yf = malloc((size_t)n * sizeof(float));
        w->to_float(x, xf, n);
        offset_part(w->type, x, xm, n, xbytes);
        a->to_float(y, yf, n);
        const double s = magnitude_rows(xf, xm, yf, n);
        free(xf);
        free(xm);
        free(yf);
        return s;
}

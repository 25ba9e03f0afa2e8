/* Tests of the quantizers and of model quantization against llama.cpp's
 * fixture files: quantizing llama-f32.gguf (and qwen2-f32.gguf) to each
 * fixture type must give every tensor the fixture's type, and each
 * tensor's error against the f32 source (RMSE) must be no worse than 1.05
 * times the fixture's. It also checks the quantizers' error codes,
 * re-quantization of a quantized model and the refusal of an input type
 * that has no decoder.
 *
 * The decoders below are the test's own, written from the block layouts,
 * so that the check does not rely on the code under test. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "tools/mix.h"
#include "tools/quantize_model.h"
#include "../check.h"

/* ------------------------------------------------------------ decoders */

static float h2f(const uint8_t *p) {
        return lmp_fp16_to_f32((lmp_fp16)(p[0] | (p[1] << 8)));
}

static void k4_scale_min(int j, const uint8_t *q, int *d, int *m) {
        if (j < 4) {
                *d = q[j] & 63;
                *m = q[j + 4] & 63;
        } else {
                *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
                *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
}

/* Decodes one block of type t at p into y; returns values per block. */
static int decode_block(uint32_t t, const uint8_t *p, float *y) {
        switch (t) {
        case LMP_TYPE_F32:
                memcpy(y, p, 4);
                return 1;
        case LMP_TYPE_F16:
                y[0] = h2f(p);
                return 1;
        case LMP_TYPE_BF16:
                y[0] = lmp_bf16_to_f32((lmp_bf16)(p[0] | (p[1] << 8)));
                return 1;
        case LMP_TYPE_Q4_0:
                for (int j = 0; j < 16; j++) {
                        y[j] = h2f(p) * ((p[2 + j] & 0xf) - 8);
                        y[j + 16] = h2f(p) * ((p[2 + j] >> 4) - 8);
                }
                return 32;
        case LMP_TYPE_Q4_1:
                for (int j = 0; j < 16; j++) {
                        y[j] = h2f(p) * (p[4 + j] & 0xf) + h2f(p + 2);
                        y[j + 16] = h2f(p) * (p[4 + j] >> 4) + h2f(p + 2);
                }
                return 32;
        case LMP_TYPE_Q5_0:
        case LMP_TYPE_Q5_1: {
                bool one = t == LMP_TYPE_Q5_1;
                const uint8_t *qh = p + (one ? 4 : 2), *qs = qh + 4;
                uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
                for (int j = 0; j < 16; j++) {
                        int a = (qs[j] & 0xf) | (int)(((h >> j) & 1) << 4);
                        int b = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
                        y[j] = one ? h2f(p) * a + h2f(p + 2) : h2f(p) * (a - 16);
                        y[j + 16] = one ? h2f(p) * b + h2f(p + 2) : h2f(p) * (b - 16);
                }
                return 32;
        }
        case LMP_TYPE_Q8_0:
                for (int j = 0; j < 32; j++)
                        y[j] = h2f(p) * (int8_t)p[2 + j];
                return 32;
        case LMP_TYPE_Q2_K: {
                const uint8_t *sc = p, *qs = p + 16;
                float d = h2f(p + 80), dmin = h2f(p + 82);
                for (int i = 0; i < 256; i++) {
                        int half = i / 128, r = i % 128, shift = (r / 32) * 2, l = r % 32;
                        int q = (qs[half * 32 + l] >> shift) & 3;
                        int s = sc[i / 16];
                        y[i] = d * (s & 0xf) * q - dmin * (s >> 4);
                }
                return 256;
        }
        case LMP_TYPE_Q3_K: {
                const uint8_t *hm = p, *qs = p + 32, *sc = p + 96;
                float d = h2f(p + 108);
                for (int i = 0; i < 256; i++) {
                        int half = i / 128, r = i % 128, shift = (r / 32) * 2, l = r % 32;
                        int q = (qs[half * 32 + l] >> shift) & 3;
                        int hbit = (hm[i % 32] >> (i / 32)) & 1;
                        int j = i / 16;
                        int s = (j < 8 ? sc[j] & 0xf : sc[j - 8] >> 4) | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
                        y[i] = d * (s - 32) * (q + 4 * hbit - 4);
                }
                return 256;
        }
        case LMP_TYPE_Q4_K:
        case LMP_TYPE_Q5_K: {
                bool five = t == LMP_TYPE_Q5_K;
                const uint8_t *sc = p + 4, *qh = p + 16, *qs = p + (five ? 48 : 16);
                float d = h2f(p), dmin = h2f(p + 2);
                for (int i = 0; i < 256; i++) {
                        int chunk = i / 64, r = i % 64, l = r % 32;
                        int q = r < 32 ? qs[chunk * 32 + l] & 0xf : qs[chunk * 32 + l] >> 4;
                        if (five)
                                q |= ((qh[l] >> (i / 32)) & 1) << 4;
                        int s, m;
                        k4_scale_min(i / 32, sc, &s, &m);
                        y[i] = d * s * q - dmin * m;
                }
                return 256;
        }
        case LMP_TYPE_Q6_K: {
                const uint8_t *ql = p, *qh = p + 128;
                const int8_t *sc = (const int8_t *)(p + 192);
                float d = h2f(p + 208);
                for (int i = 0; i < 256; i++) {
                        int half = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
                        int lo = ql[half * 64 + (quarter & 1) * 32 + l];
                        lo = quarter < 2 ? lo & 0xf : lo >> 4;
                        int hi = (qh[half * 32 + l] >> (2 * quarter)) & 3;
                        y[i] = d * sc[i / 16] * ((lo | (hi << 4)) - 32);
                }
                return 256;
        }
        default:
                return -1;
        }
}

static int decode_tensor(const struct lmp_gguf_tensor *t, float *out, uint64_t n) {
        const struct lmp_type_info *ti = lmp_type_info(t->type);
        const uint8_t *p = t->data;
        for (uint64_t i = 0; i < n; p += ti->type_size) {
                int k = decode_block(t->type, p, out + i);
                if (k < 0)
                        return -1;
                i += (uint64_t)k;
        }
        return 0;
}

static uint64_t nelements(const struct lmp_gguf_tensor *t) {
        return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

static double rmse_against(const struct lmp_gguf_tensor *t, const float *ref, float *tmp) {
        uint64_t n = nelements(t);
        if (decode_tensor(t, tmp, n) < 0)
                return NAN;
        double s = 0;
        for (uint64_t i = 0; i < n; i++)
                s += ((double)tmp[i] - ref[i]) * ((double)tmp[i] - ref[i]);
        return sqrt(s / (double)n);
}

/* ------------------------------------------------------------ tests */

static void test_errors(void) {
        float x[256] = { 0 };
        uint8_t y[1024];
        CHECK(lmp_quantize_row(LMP_TYPE_Q4_K, x, y, 128) == -EINVAL, "row not a multiple of 256");
        CHECK(lmp_quantize_row(LMP_TYPE_IQ2_XXS, x, y, 256) == -ENOTSUP, "unsupported type");
        x[7] = NAN;
        CHECK(lmp_quantize_row(LMP_TYPE_Q8_0, x, y, 32) == -EDOM, "NaN input");
        x[7] = INFINITY;
        CHECK(lmp_quantize_row(LMP_TYPE_Q6_K, x, y, 256) == -EDOM, "inf input");
        /* Extreme but finite values: no type crashes or trips the sanitizers. */
        static const float extreme[] = { 3e38f, -3e38f, 1e-40f, -1e-45f, 0.f, 1.f, 65504.f, 1e-8f };
        static const uint32_t all[] = { LMP_TYPE_F16, LMP_TYPE_BF16, LMP_TYPE_Q4_0, LMP_TYPE_Q4_1, LMP_TYPE_Q5_0,
                LMP_TYPE_Q5_1, LMP_TYPE_Q8_0, LMP_TYPE_Q2_K, LMP_TYPE_Q3_K, LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K };
        for (int pattern = 0; pattern < 8; pattern++) {
                for (int j = 0; j < 256; j++)
                        x[j] = extreme[(j * (pattern + 1) + pattern) % 8] * (j % 3 ? 1.f : -0.5f);
                for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                        CHECK(lmp_quantize_row(all[i], x, y, 256) == 0, "%s: extreme values",
                              lmp_type_name(all[i]));
        }
        /* lmp_quantize over rows is the rows one by one. */
        {
                float rows[2 * 512];
                static uint8_t a[2 * 420], b[2 * 420];
                for (int j = 0; j < 1024; j++)
                        rows[j] = sinf((float)j * 0.37f) * (1 + j % 7);
                CHECK(lmp_quantize(LMP_TYPE_Q6_K, rows, a, 2, 512) == 0, "lmp_quantize");
                CHECK(lmp_quantize_row(LMP_TYPE_Q6_K, rows, b, 512) == 0 &&
                      lmp_quantize_row(LMP_TYPE_Q6_K, rows + 512, b + 420, 512) == 0, "rows");
                CHECK(memcmp(a, b, sizeof(a)) == 0, "lmp_quantize equals row by row");
                CHECK(lmp_quantize(LMP_TYPE_Q6_K, rows, a, 2, 500) == -EINVAL, "bad row length");
        }
        /* All zero: every type decodes back to zeros. */
        static const uint32_t types[] = { LMP_TYPE_Q4_0, LMP_TYPE_Q4_1, LMP_TYPE_Q5_0, LMP_TYPE_Q5_1,
                LMP_TYPE_Q8_0, LMP_TYPE_Q2_K, LMP_TYPE_Q3_K, LMP_TYPE_Q4_K, LMP_TYPE_Q5_K, LMP_TYPE_Q6_K };
        memset(x, 0, sizeof(x));
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                float out[256];
                CHECK(lmp_quantize_row(types[i], x, y, 256) == 0, "%s zeros", lmp_type_name(types[i]));
                const struct lmp_type_info *ti = lmp_type_info(types[i]);
                float mx = 0;
                for (uint32_t b = 0; b < 256 / ti->blck_size; b++) {
                        decode_block(types[i], y + b * ti->type_size, out + b * ti->blck_size);
                }
                for (int j = 0; j < 256; j++)
                        mx = fmaxf(mx, fabsf(out[j]));
                CHECK(mx == 0, "%s: zeros decode to %g", lmp_type_name(types[i]), mx);
        }
}

/* Quantizes FIX/<model>-f32.gguf to each type and compares with FIX/<model>-<type>.gguf. */
static void test_against_fixtures(const char *fix, const char *model, const char *const *types, int n_types) {
        char src_path[4096], fix_path[4096], out_path[4096];
        struct lmp_error err = { 0 };
        struct lmp_gguf *src = NULL;

        snprintf(src_path, sizeof(src_path), "%s/models/%s-f32.gguf", fix, model);
        if (lmp_gguf_open(src_path, &src, &err) < 0) {
                CHECK(0, "%s", err.msg);
                return;
        }
        uint64_t max_n = 0;
        for (uint64_t i = 0; i < src->n_tensors; i++)
                if (nelements(&src->tensors[i]) > max_n)
                        max_n = nelements(&src->tensors[i]);
        float *tmp = malloc(max_n * sizeof(float));

        for (int k = 0; k < n_types; k++) {
                struct lmp_gguf *ours = NULL, *ref = NULL;
                snprintf(fix_path, sizeof(fix_path), "%s/models/%s-%s.gguf", fix, model, types[k]);
                snprintf(out_path, sizeof(out_path), "test-tools-%s-%s-%d.gguf", model, types[k], (int)getpid());
                struct lmp_quantize_opts o = { .nthreads = 2 };
                int r = lmp_quantize_model(src_path, out_path, lmp_ftype_find(types[k]), &o, &err);
                CHECK(r == 0, "quantize %s to %s: %s", model, types[k], err.msg);
                if (r < 0)
                        continue;
                if (lmp_gguf_open(out_path, &ours, &err) < 0 || lmp_gguf_open(fix_path, &ref, &err) < 0) {
                        CHECK(0, "%s", err.msg);
                        lmp_gguf_free(ours);
                        unlink(out_path);
                        continue;
                }
                uint32_t ft = 0;
                CHECK(lmp_gguf_get_u32(ours, "general.file_type", &ft) == 0 &&
                      ft == lmp_ftype_find(types[k])->ftype, "%s: general.file_type %u", types[k], ft);
                CHECK(ours->n_tensors == ref->n_tensors, "%s: tensor count", types[k]);
                int identical = 0;
                double worst = 0;
                for (uint64_t i = 0; i < src->n_tensors; i++) {
                        const struct lmp_gguf_tensor *s = &src->tensors[i];
                        char name[256];
                        snprintf(name, sizeof(name), "%.*s", (int)s->name.len, s->name.ptr);
                        const struct lmp_gguf_tensor *a = lmp_gguf_find_tensor(ours, name);
                        const struct lmp_gguf_tensor *b = lmp_gguf_find_tensor(ref, name);
                        if (!a || !b) {
                                CHECK(0, "%s: tensor %s missing", types[k], name);
                                continue;
                        }
                        CHECK(a->type == b->type, "%s: tensor %s is %s, fixture has %s", types[k], name,
                              lmp_type_name(a->type), lmp_type_name(b->type));
                        CHECK(memcmp(a->ne, b->ne, sizeof(a->ne)) == 0, "%s: tensor %s shape", types[k], name);
                        if (a->type != b->type || a->size != b->size)
                                continue;
                        identical += memcmp(a->data, b->data, a->size) == 0;
                        double ea = rmse_against(a, s->data, tmp), eb = rmse_against(b, s->data, tmp);
                        CHECK(!isnan(ea) && !isnan(eb), "%s: %s cannot be decoded", types[k], name);
                        CHECK(ea <= 1.05 * eb + 1e-12, "%s: tensor %s RMSE %.6g > 1.05 x fixture's %.6g", types[k],
                              name, ea, eb);
                        /* The decoders make sense: errors are small next to the values. */
                        double rms = 0;
                        for (uint64_t j = 0; j < nelements(s); j++)
                                rms += (double)((const float *)s->data)[j] * ((const float *)s->data)[j];
                        rms = sqrt(rms / (double)nelements(s));
                        double bound = a->type == LMP_TYPE_F16 || a->type == LMP_TYPE_BF16 || a->type == LMP_TYPE_Q8_0
                                ? 0.01 : a->type == LMP_TYPE_F32 ? 0 : 0.6;
                        CHECK(ea <= bound * rms, "%s: tensor %s (%s) RMSE %.4g vs rms %.4g", types[k], name,
                              lmp_type_name(a->type), ea, rms);
                        if (eb > 0 && ea / eb > worst)
                                worst = ea / eb;
                }
                printf("%s %-7s: %d/%d tensors bit-identical to llama.cpp's, worst RMSE ratio %.4f\n", model,
                       types[k], identical, (int)src->n_tensors, worst);
                lmp_gguf_free(ours);
                lmp_gguf_free(ref);
                unlink(out_path);
        }
        free(tmp);
        lmp_gguf_free(src);
}

/* A quantized input is decoded and quantized again; a type without a
 * decoder is refused, naming the tensor, and leaves no file behind. */
static void test_requantize_and_refusal(const char *fix) {
        char in[4096];
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        snprintf(in, sizeof(in), "%s/models/llama-q4_k_m.gguf", fix);
        int r = lmp_quantize_model(in, "test-tools-req.gguf", lmp_ftype_find("q8_0"), NULL, &err);
        CHECK(r == 0, "re-quantizing q4_k_m to q8_0: %s", err.msg);
        if (r == 0 && lmp_gguf_open("test-tools-req.gguf", &g, &err) == 0) {
                const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(g, "blk.0.ffn_up.weight");
                CHECK(t && t->type == LMP_TYPE_Q8_0, "re-quantized type");
                lmp_gguf_free(g);
        }
        unlink("test-tools-req.gguf");

        /* A model whose matrix is iq2_xxs (zeros: the content does not matter). */
        struct lmp_gguf_writer *w = NULL;
        static uint8_t zeros[66 * 2];
        uint64_t ne[2] = { 256, 2 };
        CHECK(lmp_gguf_writer_new(0, &w) == 0, "writer");
        CHECK(lmp_gguf_writer_set_str(w, "general.architecture", "llama") == 0, "arch");
        CHECK(lmp_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LMP_TYPE_IQ2_XXS, 2, ne, zeros) == 0, "tensor");
        CHECK(lmp_gguf_writer_write_file(w, "test-tools-iq.gguf", &err) == 0, "%s", err.msg);
        lmp_gguf_writer_free(w);
        r = lmp_quantize_model("test-tools-iq.gguf", "test-tools-bad.gguf", lmp_ftype_find("q8_0"), NULL, &err);
        CHECK(r == -ENOTSUP, "quantizing an iq2_xxs input: %d", r);
        CHECK(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "iq2_xxs"), "message: %s", err.msg);
        CHECK(access("test-tools-bad.gguf", F_OK) != 0, "no output left behind");
        CHECK(access("test-tools-bad.gguf.tmp", F_OK) != 0, "no temporary left behind");
        unlink("test-tools-iq.gguf");
}

int main(void) {
        test_errors();

        const char *fix = getenv("LMPOOL_FIXTURES");
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/models/llama-f32.gguf", fix ? fix : "");
        if (!fix || access(probe, R_OK) != 0) {
                printf("fixtures not found (LMPOOL_FIXTURES): fixture comparisons skipped\n");
                return failures ? 1 : 77;
        }
        static const char *const llama_types[] = { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                                   "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k" };
        static const char *const qwen2_types[] = { "f16", "q8_0", "q4_k_m", "q6_k" };
        test_against_fixtures(fix, "llama", llama_types, 12);
        test_against_fixtures(fix, "qwen2", qwen2_types, 4);
        static const char *const deep_types[] = { "q8_0", "q4_k_m" };
        test_against_fixtures(fix, "llama-deep", deep_types, 2);
        test_requantize_and_refusal(fix);
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        return failures ? 1 : 0;
}

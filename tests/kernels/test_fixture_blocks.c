/* The block layouts against real files: the fixture models in every type
 * were all quantized by llama.cpp from the same weights as their f32 file,
 * so each tensor dequantized by our to_float must be close to the f32
 * tensor (a misread layout, e.g. a swapped nibble order or scale packing,
 * gives errors of the order of the weights themselves). On the same real
 * blocks, every SIMD vec_dot must agree with its scalar twin. Exits 77 when
 * the fixtures are absent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "../check.h"

static int tensors_checked, dots_checked;

/* Largest relative RMS error ||deq - f32|| / ||f32|| accepted per type. The
 * fixtures' weights are random, where llama.cpp's quantizers reach about
 * 0.5x these values; a misread layout gives about 1 or more. */
static double max_rel_rms(uint32_t t) {
        switch (t) {
        case LMP_TYPE_F16: return 1e-3;
        case LMP_TYPE_BF16: return 5e-3;
        case LMP_TYPE_Q8_0: return 0.012;
        case LMP_TYPE_Q6_K: return 0.04;
        case LMP_TYPE_Q5_0: case LMP_TYPE_Q5_1: case LMP_TYPE_Q5_K: return 0.09;
        case LMP_TYPE_Q4_0: case LMP_TYPE_Q4_1: case LMP_TYPE_Q4_K: return 0.18;
        case LMP_TYPE_Q3_K: return 0.3;
        case LMP_TYPE_Q2_K: return 0.6;
        default: return 0.0;
        }
}

static void check_file(const char *dir, const char *name, const char *refname) {
        char path[4096], refpath[4096];
        snprintf(path, sizeof(path), "%s/models/%s", dir, name);
        snprintf(refpath, sizeof(refpath), "%s/models/%s", dir, refname);
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL, *r = NULL;
        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_gguf_open(refpath, &r, &err) < 0) {
                FAIL("%s: %s", name, err.msg);
                lmp_gguf_free(g);
                return;
        }
        const enum lmp_isa top = lmp_cpu_isa();
        double worst[LMP_TYPE_COUNT] = { 0 };
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                char tname[256];
                snprintf(tname, sizeof(tname), "%.*s", (int)t->name.len, t->name.ptr);
                const struct lmp_gguf_tensor *rt = lmp_gguf_find_tensor(r, tname);
                const struct lmp_quant_traits *tr = lmp_quant_traits(t->type, LMP_ISA_SCALAR);
                if (t->type == LMP_TYPE_F32 || !rt || rt->type != LMP_TYPE_F32 || !tr)
                        continue;
                const int64_t ncols = (int64_t)t->ne[0];
                const int64_t nrows = (int64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
                const size_t row_bytes = lmp_type_row_size(t->type, (uint64_t)ncols);
                float *row = malloc((size_t)ncols * sizeof(float));
                const struct lmp_quant_traits *at = lmp_quant_traits(tr->vec_dot_type, LMP_ISA_SCALAR);
                void *act = malloc(lmp_type_row_size(tr->vec_dot_type, (uint64_t)ncols));
                float *x = malloc((size_t)ncols * sizeof(float));
                for (int64_t j = 0; j < ncols; j++)
                        x[j] = sinf((float)j * 0.731f) * (1.0f + (float)(j % 7));
                at->from_float(x, act, ncols);
                double err2 = 0.0, ref2 = 0.0;
                for (int64_t rr = 0; rr < nrows; rr++) {
                        const uint8_t *q = (const uint8_t *)t->data + rr * row_bytes;
                        const float *ref = (const float *)rt->data + rr * ncols;
                        tr->to_float(q, row, ncols);
                        double mag = 0.0;
                        for (int64_t j = 0; j < ncols; j++) {
                                err2 += ((double)row[j] - ref[j]) * ((double)row[j] - ref[j]);
                                ref2 += (double)ref[j] * ref[j];
                                mag += fabs((double)row[j] * x[j]);
                        }
                        if (rr % 16)
                                continue;   /* dots on every 16th row keep this quick */
                        float want;
                        tr->vec_dot((int)ncols, &want, q, act);
                        for (int isa = LMP_ISA_AVX2; isa <= (int)top; isa++) {
                                float got;
                                lmp_quant_traits(t->type, (enum lmp_isa)isa)->vec_dot((int)ncols, &got, q, act);
                                dots_checked++;
                                if (!(fabs((double)got - want) <= 1e-4 * mag + 1e-6)) {
                                        FAIL("%s %s row %lld: vec_dot %s %.9g, scalar %.9g", name, tname,
                                             (long long)rr, lmp_isa_name((enum lmp_isa)isa), got, want);
                                }
                        }
                }
                const double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1.0));
                tensors_checked++;
                if (rel > worst[t->type])
                        worst[t->type] = rel;
                if (!(rel <= max_rel_rms(t->type))) {
                        FAIL("%s %s (%s): dequantized differs from f32 by %.4f relative RMS (limit %.4f)", name,
                             tname, lmp_type_name(t->type), rel, max_rel_rms(t->type));
                }
                free(row);
                free(act);
                free(x);
        }
        for (int k = 0; k < LMP_TYPE_COUNT; k++)
                if (worst[k] > 0.0)
                        printf("%s: %s tensors within %.4f relative RMS of f32\n", name, lmp_type_name((uint32_t)k), worst[k]);
        lmp_gguf_free(g);
        lmp_gguf_free(r);
}

int main(void) {
        const char *dir = getenv("LMPOOL_FIXTURES");
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/models/llama-f32.gguf", dir ? dir : "");
        FILE *f = dir ? fopen(probe, "rb") : NULL;
        if (!f) {
                printf("skipped: fixture models not found (LMPOOL_FIXTURES)\n");
                return 77;
        }
        fclose(f);
        static const char *const llama[] = { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                             "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k" };
        char name[64];
        for (size_t i = 0; i < sizeof(llama) / sizeof(llama[0]); i++) {
                snprintf(name, sizeof(name), "llama-%s.gguf", llama[i]);
                check_file(dir, name, "llama-f32.gguf");
        }
        static const char *const qwen2[] = { "f16", "q8_0", "q4_k_m", "q6_k" };
        for (size_t i = 0; i < sizeof(qwen2) / sizeof(qwen2[0]); i++) {
                snprintf(name, sizeof(name), "qwen2-%s.gguf", qwen2[i]);
                check_file(dir, name, "qwen2-f32.gguf");
        }
        check_file(dir, "llama-deep-q8_0.gguf", "llama-deep-f32.gguf");
        check_file(dir, "llama-deep-q4_k_m.gguf", "llama-deep-f32.gguf");
        printf("fixture blocks: %d tensors, %d dots, %d failures\n", tensors_checked, dots_checked, failures);
        return failures ? 1 : 0;
}

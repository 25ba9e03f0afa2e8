/* Checks of the attention kernels (quant/attn.h) at every ISA level this
 * CPU has: the scores and the weighted sum against a double-precision
 * product, the softmax against the scalar twin (vecmath.h's) and against
 * the definition in double. Shapes cover head sizes the vectors divide and
 * those they do not (the scalar fallback), row counts across the kernels'
 * row blocks, and key counts across their position blocks and tails. The
 * operands sit in rows with padding (as a KV head in the cache's rows), and
 * every cell of an output's padding must be left alone; buffers are
 * allocated to their exact extent so that the sanitizer build sees any read
 * past them. Prints one line per kernel and level; exits 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/attn.h"

#include "kernel_inputs.h"
#include "../check.h"

#define GUARD 12345.0f  /* the padding's value, which no kernel may change */

static int checks;

static const int hds[] = { 8, 16, 40, 64, 80, 96, 128, 256 };
static const int ms[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16 };
static const int Ls[] = { 1, 7, 8, 15, 16, 17, 33, 100, 257 };

static float *filled(size_t n, float scale) {
        float *p = malloc(n * sizeof(float));
        if (!p) {
                fprintf(stderr, "out of memory\n");
                exit(1);
        }
        for (size_t i = 0; i < n; i++)
                p[i] = scale * rndf();
        return p;
}

static float *guarded(size_t n) {
        float *p = filled(n, 0.0f);
        for (size_t i = 0; i < n; i++)
                p[i] = GUARD;
        return p;
}

/* Every cell of the rows x ld matrix p outside columns [0, w) still GUARD. */
static int padding_intact(const float *p, int rows, int w, size_t ld) {
        for (int i = 0; i < rows; i++)
                for (size_t c = (size_t)w; c < ld; c++)
                        if (p[(size_t)i * ld + c] != GUARD)
                                return 0;
        return 1;
}

static void check_scores(const struct lmp_attn_kernels *ak, const char *isa, int hd, int m, int L) {
        size_t ldq = (size_t)hd + 3, ldk = (size_t)hd * 2 + 5, lds = (size_t)L + 2;
        float *q = filled((size_t)(m - 1) * ldq + (size_t)hd, 1.0f);
        float *k = filled((size_t)(L - 1) * ldk + (size_t)hd, 1.0f);
        float *s = guarded((size_t)m * lds);
        ak->scores(hd, m, L, q, ldq, k, ldk, s, lds);
        for (int i = 0; i < m; i++)
                for (int p = 0; p < L; p++) {
                        double ref = 0.0, mag = 0.0;
                        for (int d = 0; d < hd; d++) {
                                double x = (double)q[(size_t)i * ldq + (size_t)d] * k[(size_t)p * ldk + (size_t)d];
                                ref += x;
                                mag += fabs(x);
                        }
                        double got = s[(size_t)i * lds + (size_t)p];
                        checks++;
                        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-6))
                                FAIL("scores %s hd %d m %d L %d: s[%d][%d] = %.9g, expected %.9g", isa, hd, m, L, i,
                                     p, got, ref);
                }
        checks++;
        if (!padding_intact(s, m, L, lds))
                FAIL("scores %s hd %d m %d L %d: wrote outside the scores", isa, hd, m, L);
        free(q);
        free(k);
        free(s);
}

static void check_wsum(const struct lmp_attn_kernels *ak, const char *isa, int hd, int m, int L) {
        size_t lds = (size_t)L + 1, ldv = (size_t)hd * 3 + 1, ldo = (size_t)hd + 7;
        float *s = filled((size_t)(m - 1) * lds + (size_t)L, 1.0f);
        float *v = filled((size_t)(L - 1) * ldv + (size_t)hd, 2.0f);
        float *o = guarded((size_t)m * ldo);
        for (size_t i = 0; i < (size_t)(m - 1) * lds + (size_t)L; i++)
                s[i] = fabsf(s[i]);     /* weights, as after a softmax (scaled) */
        ak->wsum(hd, m, L, s, lds, v, ldv, o, ldo);
        for (int i = 0; i < m; i++)
                for (int d = 0; d < hd; d++) {
                        double ref = 0.0, mag = 0.0;
                        for (int p = 0; p < L; p++) {
                                double x = (double)s[(size_t)i * lds + (size_t)p] * v[(size_t)p * ldv + (size_t)d];
                                ref += x;
                                mag += fabs(x);
                        }
                        double got = o[(size_t)i * ldo + (size_t)d];
                        checks++;
                        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-6))
                                FAIL("wsum %s hd %d m %d L %d: o[%d][%d] = %.9g, expected %.9g", isa, hd, m, L, i, d,
                                     got, ref);
                }
        checks++;
        if (!padding_intact(o, m, hd, ldo))
                FAIL("wsum %s hd %d m %d L %d: wrote outside the output", isa, hd, m, L);
        free(s);
        free(v);
        free(o);
}

/* A row of n scores of magnitude up to mag, through the level's softmax and
 * the scalar twin; each must match the definition in double, and the level
 * the twin within a few float ulps. */
static void check_softmax(const struct lmp_attn_kernels *ak, const char *isa, int n, float mag, float scale) {
        float *x = filled((size_t)n, mag);
        float *got = malloc((size_t)n * sizeof(float)), *twin = malloc((size_t)n * sizeof(float));
        if (!got || !twin) {
                fprintf(stderr, "out of memory\n");
                exit(1);
        }
        memcpy(got, x, (size_t)n * sizeof(float));
        memcpy(twin, x, (size_t)n * sizeof(float));
        ak->softmax(got, n, scale);
        lmp_attn_softmax_ref(twin, n, scale);
        double mx = -INFINITY, sum = 0.0;
        for (int i = 0; i < n; i++)
                mx = fmax(mx, (double)scale * x[i]);
        for (int i = 0; i < n; i++)
                sum += exp((double)scale * x[i] - mx);
        for (int i = 0; i < n; i++) {
                double ref = exp((double)scale * x[i] - mx) / sum;
                checks++;
                if (!(fabs(got[i] - ref) <= 1e-5 * ref + 1e-12))
                        FAIL("softmax %s n %d mag %g: [%d] = %.9g, expected %.9g", isa, n, mag, i, got[i], ref);
                checks++;
                if (!(fabsf(got[i] - twin[i]) <= 4e-7f * twin[i] + 1e-30f))
                        FAIL("softmax %s n %d mag %g: [%d] = %.9g, the scalar twin %.9g", isa, n, mag, i, got[i],
                             twin[i]);
        }
        free(x);
        free(got);
        free(twin);
}

int main(void) {
        const enum lmp_isa top = lmp_cpu_isa();
        for (int isa = LMP_ISA_SCALAR; isa <= (int)top; isa++) {
                const struct lmp_attn_kernels *ak = lmp_attn_kernels((enum lmp_isa)isa);
                const char *name = lmp_isa_name((enum lmp_isa)isa);
                int before = failures;
                for (size_t h = 0; h < sizeof(hds) / sizeof(hds[0]); h++)
                        for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
                                for (size_t l = 0; l < sizeof(Ls) / sizeof(Ls[0]); l++)
                                        check_scores(ak, name, hds[h], ms[i], Ls[l]);
                printf("attn scores  %-6s %s\n", name, failures == before ? "ok" : "FAILED");
                before = failures;
                for (size_t h = 0; h < sizeof(hds) / sizeof(hds[0]); h++)
                        for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
                                for (size_t l = 0; l < sizeof(Ls) / sizeof(Ls[0]); l++)
                                        check_wsum(ak, name, hds[h], ms[i], Ls[l]);
                printf("attn wsum    %-6s %s\n", name, failures == before ? "ok" : "FAILED");
                before = failures;
                for (int n = 1; n <= 48; n++)
                        check_softmax(ak, name, n, 4.0f, 0.125f);
                check_softmax(ak, name, 1000, 30.0f, 1.0f);     /* a wide range: most terms tiny */
                check_softmax(ak, name, 4099, 8.0f, 0.0883883f);
                printf("attn softmax %-6s %s\n", name, failures == before ? "ok" : "FAILED");
        }
        printf("attn: CPU level %s, %d checks, %d failures\n", lmp_isa_name(top), checks, failures);
        return failures ? 1 : 0;
}

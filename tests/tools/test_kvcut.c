/* lmp_ctx_seq_cut, the KV shift, on random-weight models that the model
 * generator writes.
 *
 * With one layer, a position's key and value depend on its token and its
 * position only, so a cache that held A + D + S and then gave up D holds
 * exactly what a fresh cache of A + S holds, up to the rounding of one more
 * rotation: the next token's logits must match a cold run's. That checks
 * the moved rows, the rotation of each rotary kind (adjacent pairs, NeoX
 * halves, Llama 3 frequency factors, LongRoPE's long factors, a windowed
 * layer's own base) and the new length. With more layers the moved
 * positions keep what they computed with D before them, so only the
 * bookkeeping is checked there: the refusals, and a cut of the tail, which
 * is a truncation and must match a cold run exactly. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tools/mkmodel.h"
#include "../check.h"

#define N_A 9
#define N_D 13
#define N_S 20

struct fixture {
        struct lmp_gguf *g;
        struct lmp_model *m;
};

static bool make(const char *dir, const char *shape, uint32_t n_layer, struct fixture *f) {
        char path[4096];
        struct lmp_error err = { 0 };
        struct lmp_shape s = *lmp_shape_find(shape);
        s.n_layer = n_layer;
        if (s.n_swa && n_layer == 1)
                s.n_swa = 64;   /* the window sees A, D and S */
        struct lmp_mkmodel_opts o = { .shape = &s, .ft = lmp_ftype_find("f32"), .seed = 11, .nthreads = 2 };
        snprintf(path, sizeof(path), "%s/%s-%u.gguf", dir, shape, n_layer);
        if (lmp_mkmodel(path, &o, NULL, &err) < 0 || lmp_gguf_open(path, &f->g, &err) < 0 ||
            lmp_model_load(f->g, lmp_cpu_isa(), &f->m, &err) < 0) {
                CHECK(0, "%s: %s", path, err.msg);
                return false;
        }
        return true;
}

static void drop(struct fixture *f) {
        lmp_model_free(f->m);
        lmp_gguf_free(f->g);
}

/* Feeds toks[0..n) to seq at positions from..from+n, the last one's logits
 * into logits (may be NULL). */
static int feed(struct lmp_ctx *c, int32_t seq, const int32_t *toks, uint32_t n, uint32_t from, float *logits) {
        struct lmp_batch_entry b[64];
        struct lmp_error err = { 0 };
        for (uint32_t i = 0; i < n; i++)
                b[i] = (struct lmp_batch_entry){ .token = toks[i], .pos = (int32_t)(from + i), .seq = seq,
                                                 .logits = logits && i == n - 1 };
        int r = lmp_ctx_decode(c, b, n, logits, &err);
        CHECK(r == 0, "decode: %s", err.msg);
        return r;
}

static double rel_diff(const float *a, const float *b, size_t n) {
        double d = 0, s = 0;
        for (size_t i = 0; i < n; i++) {
                d = fmax(d, fabs((double)a[i] - b[i]));
                s = fmax(s, fabs((double)b[i]));
        }
        return s > 0 ? d / s : d;
}

static void tokens(const struct lmp_model *m, int32_t *t, uint32_t n, uint32_t seed) {
        for (uint32_t i = 0; i < n; i++)
                t[i] = (int32_t)((seed + i * 7919u) % m->hp.n_vocab);
}

/* One layer: A + D + S, cut D, one more token, against A + S + that token. */
static void test_exact(const char *dir, const char *shape, uint32_t n_ctx, bool swa_full) {
        struct fixture f;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL;
        struct lmp_error err = { 0 };
        int32_t a[N_A], d[N_D], s[N_S + 1];
        if (!make(dir, shape, 1, &f))
                return;
        CHECK(lmp_threadpool_new(2, &pool) == 0, "pool");
        struct lmp_ctx_params p = { .n_ctx = n_ctx, .n_seq = 2, .n_batch = 64, .swa_full = swa_full };
        if (lmp_ctx_new(f.m, &p, pool, &c, &err) < 0) {
                CHECK(0, "%s: %s", shape, err.msg);
                goto out;
        }
        size_t nv = f.m->hp.n_vocab;
        float *shifted = malloc(nv * sizeof(float)), *cold = malloc(nv * sizeof(float)),
              *unrotated = malloc(nv * sizeof(float));
        tokens(f.m, a, N_A, 3);
        tokens(f.m, d, N_D, 501);
        tokens(f.m, s, N_S + 1, 977);

        feed(c, 0, a, N_A, 0, NULL);
        feed(c, 0, d, N_D, N_A, NULL);
        feed(c, 0, s, N_S, N_A + N_D, NULL);
        /* Without the cut, the same token after S (a negative control:
         * the comparison must be able to fail). */
        CHECK(lmp_ctx_seq_truncate(c, 1, 0) == 0, "seq 1 empty");
        feed(c, 1, a, N_A, 0, NULL);
        feed(c, 1, d, N_D, N_A, NULL);
        feed(c, 1, s, N_S + 1, N_A + N_D, unrotated);
        CHECK(lmp_ctx_seq_truncate(c, 1, 0) == 0, "seq 1 reset");

        int r = lmp_ctx_seq_cut(c, 0, N_A, N_A + N_D);
        CHECK(r == N_A + N_S, "%s: cut keeps %d positions", shape, r);
        CHECK(lmp_ctx_seq_len(c, 0) == N_A + N_S, "%s: length after the cut", shape);
        feed(c, 0, s + N_S, 1, N_A + N_S, shifted);

        feed(c, 1, a, N_A, 0, NULL);
        feed(c, 1, s, N_S + 1, N_A, cold);
        double e = rel_diff(shifted, cold, nv), e_ctl = rel_diff(unrotated, cold, nv);
        printf("%-12s%s: cut vs cold %.2e (without the cut %.2e)\n", shape, swa_full ? " swa_full" : "", e, e_ctl);
        CHECK(e < 2e-5, "%s: logits after the cut differ from a cold run's by %.3g", shape, e);
        CHECK(e_ctl > 100 * e && e_ctl > 1e-3, "%s: the control differs by %.3g only", shape, e_ctl);
        free(shifted);
        free(cold);
        free(unrotated);
out:
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        drop(&f);
}

/* Two layers: refusals, and cutting the tail. */
static void test_bookkeeping(const char *dir) {
        struct fixture f, g3;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL, *cg = NULL;
        struct lmp_error err = { 0 };
        int32_t a[N_A], d[N_D + 1];
        if (!make(dir, "test-llama", 2, &f))
                return;
        CHECK(lmp_threadpool_new(1, &pool) == 0, "pool");
        struct lmp_ctx_params p = { .n_ctx = 128, .n_seq = 2, .n_batch = 32 };
        CHECK(lmp_ctx_new(f.m, &p, pool, &c, &err) == 0, "%s", err.msg);
        size_t nv = f.m->hp.n_vocab;
        float *l1 = malloc(nv * sizeof(float)), *l2 = malloc(nv * sizeof(float));
        tokens(f.m, a, N_A, 5);
        tokens(f.m, d, N_D + 1, 77);
        feed(c, 0, a, N_A, 0, NULL);
        feed(c, 0, d, N_D, N_A, NULL);

        CHECK(lmp_ctx_seq_cut(c, 0, 5, 4) == -EINVAL, "p0 > p1");
        CHECK(lmp_ctx_seq_cut(c, 0, 5, N_A + N_D + 1) == -EINVAL, "p1 past the length");
        CHECK(lmp_ctx_seq_cut(c, 2, 0, 1) == -EINVAL, "unknown sequence");
        CHECK(lmp_ctx_seq_cut(c, -1, 0, 1) == -EINVAL, "negative sequence");
        CHECK(lmp_ctx_seq_cut(c, 0, 4, 4) == N_A + N_D, "an empty cut keeps everything");
        CHECK(lmp_ctx_seq_len(c, 0) == N_A + N_D, "refusals change nothing");

        /* The tail: [N_A, N_A + N_D) goes, nothing moves. */
        CHECK(lmp_ctx_seq_cut(c, 0, N_A, N_A + N_D) == N_A, "cut of the tail");
        feed(c, 0, d + N_D, 1, N_A, l1);
        feed(c, 1, a, N_A, 0, NULL);
        feed(c, 1, d + N_D, 1, N_A, l2);
        CHECK(rel_diff(l1, l2, nv) == 0, "a cut of the tail is a truncation");
        free(l1);
        free(l2);

        /* A ring cannot give up positions in its middle. */
        if (make(dir, "test-gemma3", 6, &g3)) {
                struct lmp_ctx_params pg = { .n_ctx = 256, .n_seq = 1, .n_batch = 16 };
                int32_t t[40];
                CHECK(lmp_ctx_new(g3.m, &pg, pool, &cg, &err) == 0, "%s", err.msg);
                if (cg) {
                        tokens(g3.m, t, 40, 9);
                        feed(cg, 0, t, 16, 0, NULL);
                        feed(cg, 0, t + 16, 16, 16, NULL);
                        CHECK(lmp_ctx_seq_cut(cg, 0, 2, 10) == -ENOTSUP, "ring: refused");
                        CHECK(lmp_ctx_seq_len(cg, 0) == 32, "ring: unchanged");
                }
                lmp_ctx_free(cg);
                drop(&g3);
        }
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        drop(&f);
}

int main(void) {
        char dir[] = "/tmp/lmpool-kvcut-XXXXXX";
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        test_exact(dir, "test-llama", 256, false);      /* adjacent pairs */
        test_exact(dir, "test-qwen2", 256, false);      /* NeoX halves, biases */
        test_exact(dir, "test-llama3", 256, false);     /* frequency factors */
        test_exact(dir, "test-qwen3", 256, false);      /* q/k norms before the rotation */
        test_exact(dir, "test-phi3", 8192, false);      /* LongRoPE's long factors */
        test_exact(dir, "test-gemma3", 256, true);      /* a windowed layer's own base */
        test_bookkeeping(dir);
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("ok\n");
        return 0;
}

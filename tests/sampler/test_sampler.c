/* Sampler tests. Exact properties (greedy is the argmax, top-k 1 and a tiny
 * top-p are greedy, a -inf bias bans a token, each penalty moves the choice
 * as llama.cpp's formulas say, the window forgets), seeded determinism,
 * statistics over many seeded draws (frequencies match the softmax at the
 * given temperature, filters never let an excluded token through), parameter
 * validation, and no allocation in sample()/accept(): malloc, calloc,
 * realloc, aligned_alloc and posix_memalign are wrapped at link time and
 * counted. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/sampler.h"
#include "../check.h"

/* ------------------------------------------------------------ allocation count */

/* volatile: the compiler assumes malloc() touches no global of ours. */
static volatile long n_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);

void *__wrap_malloc(size_t n) { n_allocs++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { n_allocs++; return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { n_allocs++; return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { n_allocs++; return __real_aligned_alloc(a, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) { n_allocs++; return __real_posix_memalign(p, a, n); }

/* ------------------------------------------------------------ harness */

static struct lmp_sampler *make(int32_t n_vocab, const struct lmp_sampler_params *p) {
        struct lmp_sampler *s = NULL;
        struct lmp_error err = { 0 };
        int r = lmp_sampler_new(n_vocab, p, &s, &err);
        if (r < 0) {
                fprintf(stderr, "lmp_sampler_new: %s\n", err.msg);
                exit(1);
        }
        return s;
}

/* A small generator for test data, separate from the sampler's. */
static uint64_t lcg = 12345;
static float frand(void) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        return (float)((lcg >> 40) & 0xffffff) / 16777216.0f;
}

static int32_t argmax(const float *l, int32_t n) {
        int32_t b = 0;
        for (int32_t i = 1; i < n; i++)
                if (l[i] > l[b])
                        b = i;
        return b;
}

/* Draws `draws` tokens (no history) and counts them into hist[n]. */
static void histogram(struct lmp_sampler *s, const float *l, int32_t n, int draws, int *hist) {
        memset(hist, 0, (size_t)n * sizeof(*hist));
        for (int i = 0; i < draws; i++) {
                int32_t t = lmp_sampler_sample(s, l);
                if (t < 0 || t >= n) {
                        CHECK(0, "sample returned %d", t);
                        return;
                }
                hist[t]++;
        }
}

/* ------------------------------------------------------------ tests */

static void test_greedy(void) {
        struct lmp_sampler_params p;
        lmp_sampler_params_default(&p);
        p.temperature = 0;
        p.top_k = 5;
        p.top_p = 0.3f;
        p.min_p = 0.2f;
        enum { N = 1000 };
        static float l[N];
        struct lmp_sampler *s = make(N, &p);
        for (int trial = 0; trial < 50; trial++) {
                for (int i = 0; i < N; i++)
                        l[i] = frand() * 20 - 10;
                CHECK(lmp_sampler_sample(s, l) == argmax(l, N), "trial %d", trial);
        }
        /* Ties go to the lower id. */
        for (int i = 0; i < N; i++)
                l[i] = 1.0f;
        CHECK(lmp_sampler_sample(s, l) == 0, "tie");
        lmp_sampler_free(s);

        /* top-k 1, a tiny top-p, a min-p of 1, and a tiny temperature all
         * give the argmax at temperature 1. */
        for (int variant = 0; variant < 4; variant++) {
                lmp_sampler_params_default(&p);
                p.seed = (uint64_t)variant;
                if (variant == 0)
                        p.top_k = 1;
                else if (variant == 1)
                        p.top_p = 1e-6f;
                else if (variant == 2)
                        p.min_p = 1.0f;
                else
                        p.temperature = 1e-3f;
                s = make(N, &p);
                for (int trial = 0; trial < 200; trial++) {
                        /* Distinct logits, gaps of at least 0.05. */
                        for (int i = 0; i < N; i++)
                                l[i] = (float)((i * 7919) % N) * 0.05f - 25.0f + frand() * 0.01f;
                        int32_t want = argmax(l, N);
                        int32_t got = lmp_sampler_sample(s, l);
                        CHECK(got == want, "variant %d trial %d: %d != %d", variant, trial, got, want);
                }
                lmp_sampler_free(s);
        }
}

static void test_determinism(void) {
        struct lmp_sampler_params p;
        lmp_sampler_params_default(&p);
        p.seed = 42;
        p.top_k = 40;
        p.top_p = 0.9f;
        p.repeat_penalty = 1.1f;
        p.penalty_last_n = 16;
        enum { N = 500, T = 300 };
        static float l[N];
        for (int i = 0; i < N; i++)
                l[i] = frand() * 4;
        struct lmp_sampler *a = make(N, &p), *b = make(N, &p);
        p.seed = 43;
        struct lmp_sampler *c = make(N, &p);
        static int32_t seq[T];
        int differ = 0;
        for (int i = 0; i < T; i++) {
                int32_t x = lmp_sampler_sample(a, l), y = lmp_sampler_sample(b, l), z = lmp_sampler_sample(c, l);
                CHECK(x == y, "step %d: %d != %d", i, x, y);
                differ += x != z;
                seq[i] = x;
                lmp_sampler_accept(a, x);
                lmp_sampler_accept(b, y);
                lmp_sampler_accept(c, z);
        }
        CHECK(differ > T / 4, "another seed gave %d different tokens of %d", differ, T);
        /* reset: the same sequence again. */
        lmp_sampler_reset(a);
        for (int i = 0; i < T; i++) {
                int32_t x = lmp_sampler_sample(a, l);
                CHECK(x == seq[i], "after reset, step %d: %d != %d", i, x, seq[i]);
                lmp_sampler_accept(a, x);
        }
        lmp_sampler_free(a);
        lmp_sampler_free(b);
        lmp_sampler_free(c);
}

/* Frequencies of `draws` samples against softmax(l / t) restricted to
 * `allowed` (NULL: all), within tol. */
static void check_distribution(const char *what, struct lmp_sampler *s, const float *l, int32_t n,
                               float t, const int *allowed, int draws, double tol) {
        int hist[16];
        double w[16], z = 0;
        histogram(s, l, n, draws, hist);
        for (int i = 0; i < n; i++) {
                w[i] = (!allowed || allowed[i]) ? exp(l[i] / t) : 0;
                z += w[i];
        }
        for (int i = 0; i < n; i++) {
                double f = (double)hist[i] / draws, e = w[i] / z;
                if (e == 0)
                        CHECK(hist[i] == 0, "%s: excluded token %d drawn %d times", what, i, hist[i]);
                else
                        CHECK(fabs(f - e) < tol, "%s: token %d frequency %.4f, expected %.4f", what, i, f, e);
        }
}

static void test_statistics(void) {
        struct lmp_sampler_params p;
        const float l[5] = { logf(0.4f), logf(0.25f), logf(0.2f), logf(0.1f), logf(0.05f) };
        enum { D = 40000 };
        const double tol = 0.012;

        lmp_sampler_params_default(&p);
        p.seed = 7;
        struct lmp_sampler *s = make(5, &p);
        check_distribution("t=1", s, l, 5, 1.0f, NULL, D, tol);
        lmp_sampler_free(s);

        p.temperature = 2.0f;
        s = make(5, &p);
        check_distribution("t=2", s, l, 5, 2.0f, NULL, D, tol);
        lmp_sampler_free(s);

        p.temperature = 0.5f;
        s = make(5, &p);
        check_distribution("t=0.5", s, l, 5, 0.5f, NULL, D, tol);
        lmp_sampler_free(s);

        /* top-k 2: the two best, renormalised. */
        lmp_sampler_params_default(&p);
        p.seed = 8;
        p.top_k = 2;
        s = make(5, &p);
        check_distribution("top-k 2", s, l, 5, 1.0f, (const int[]){ 1, 1, 0, 0, 0 }, D, tol);
        lmp_sampler_free(s);

        /* top-p 0.6: 0.4 < 0.6 <= 0.65, so the first two. top-p 0.65 as
         * well (the mass reaches p exactly at the second); 0.66 takes three. */
        lmp_sampler_params_default(&p);
        p.seed = 9;
        p.top_p = 0.6f;
        s = make(5, &p);
        check_distribution("top-p 0.6", s, l, 5, 1.0f, (const int[]){ 1, 1, 0, 0, 0 }, D, tol);
        lmp_sampler_free(s);
        p.top_p = 0.66f;
        s = make(5, &p);
        check_distribution("top-p 0.66", s, l, 5, 1.0f, (const int[]){ 1, 1, 1, 0, 0 }, D, tol);
        lmp_sampler_free(s);

        /* min-p 0.5: p >= 0.2 (0.4 * 0.5) kept, so three tokens. */
        lmp_sampler_params_default(&p);
        p.seed = 10;
        p.min_p = 0.5f;
        s = make(5, &p);
        check_distribution("min-p 0.5", s, l, 5, 1.0f, (const int[]){ 1, 1, 1, 0, 0 }, D, tol);
        lmp_sampler_free(s);

        /* Filters apply before temperature (llama.cpp's order): top-p 0.6
         * keeps two tokens whatever the temperature. */
        lmp_sampler_params_default(&p);
        p.seed = 11;
        p.top_p = 0.6f;
        p.temperature = 3.0f;
        s = make(5, &p);
        check_distribution("top-p 0.6 t=3", s, l, 5, 3.0f, (const int[]){ 1, 1, 0, 0, 0 }, D, tol);
        lmp_sampler_free(s);

        /* top-p wider than the first selection (64): 5000 equal logits,
         * top-p 0.4999 keeps the 2500 lowest ids (ties go to the lower id;
         * 0.4999 rather than 0.5 so that rounding of the running sum cannot
         * decide). */
        enum { N = 5000 };
        static float flat[N];
        static int hist[N];
        for (int i = 0; i < N; i++)
                flat[i] = 0.5f;
        lmp_sampler_params_default(&p);
        p.seed = 12;
        p.top_p = 0.4999f;
        s = make(N, &p);
        histogram(s, flat, N, 4000, hist);
        int above = 0, seen_high = 0;
        for (int i = 0; i < N; i++) {
                if (i >= 2500)
                        above += hist[i];
                else if (i >= 2000 && hist[i])
                        seen_high = 1;
        }
        CHECK(above == 0, "top-p 0.5 over 5000 equal logits: %d draws past id 2500", above);
        CHECK(seen_high, "top-p 0.5 over 5000 equal logits: nothing drawn in [2000, 2500)");
        lmp_sampler_free(s);
}

static int32_t greedy_after(const float *l, int32_t n, const struct lmp_sampler_params *base,
                            const int32_t *hist, int nh) {
        struct lmp_sampler_params p = *base;
        p.temperature = 0;
        struct lmp_sampler *s = make(n, &p);
        for (int i = 0; i < nh; i++)
                lmp_sampler_accept(s, hist[i]);
        int32_t t = lmp_sampler_sample(s, l);
        lmp_sampler_free(s);
        return t;
}

static void test_penalties(void) {
        struct lmp_sampler_params p;
        lmp_sampler_params_default(&p);
        p.penalty_last_n = 64;

        /* Repetition: positive logits divided (2.0 / 1.1 < 1.9), negative
         * multiplied (-1.0 * 1.1 < -1.05). */
        p.repeat_penalty = 1.1f;
        CHECK(greedy_after((const float[]){ 2.0f, 1.9f }, 2, &p, (const int32_t[]){ 0 }, 1) == 1, "repeat +");
        CHECK(greedy_after((const float[]){ 2.0f, 1.7f }, 2, &p, (const int32_t[]){ 0 }, 1) == 0, "repeat + small");
        CHECK(greedy_after((const float[]){ -1.0f, -1.05f }, 2, &p, (const int32_t[]){ 0 }, 1) == 1, "repeat -");
        /* Applied once per distinct token, not once per occurrence. */
        CHECK(greedy_after((const float[]){ 2.0f, 1.7f }, 2, &p, (const int32_t[]){ 0, 0, 0, 0 }, 4) == 0,
              "repeat once");

        /* Frequency: count * 0.2 subtracted. */
        lmp_sampler_params_default(&p);
        p.penalty_last_n = 64;
        p.frequency_penalty = 0.2f;
        CHECK(greedy_after((const float[]){ 1.0f, 0.5f }, 2, &p, (const int32_t[]){ 0, 0 }, 2) == 0, "freq 2");
        CHECK(greedy_after((const float[]){ 1.0f, 0.5f }, 2, &p, (const int32_t[]){ 0, 0, 0 }, 3) == 1, "freq 3");

        /* Presence: subtracted once whatever the count. */
        lmp_sampler_params_default(&p);
        p.penalty_last_n = 64;
        p.presence_penalty = 0.6f;
        CHECK(greedy_after((const float[]){ 1.0f, 0.5f }, 2, &p, (const int32_t[]){ 0 }, 1) == 1, "presence");
        p.presence_penalty = 0.4f;
        CHECK(greedy_after((const float[]){ 1.0f, 0.5f }, 2, &p, (const int32_t[]){ 0, 0, 0, 0, 0 }, 5) == 0,
              "presence once");
        /* Negative values encourage repetition. */
        p.presence_penalty = -0.6f;
        CHECK(greedy_after((const float[]){ 0.5f, 1.0f }, 2, &p, (const int32_t[]){ 0 }, 1) == 0, "presence <0");

        /* All three: (2.0 / 2) - 2 * 0.1 - 0.3 = 0.5 < 0.6. */
        lmp_sampler_params_default(&p);
        p.penalty_last_n = 64;
        p.repeat_penalty = 2.0f;
        p.frequency_penalty = 0.1f;
        p.presence_penalty = 0.3f;
        CHECK(greedy_after((const float[]){ 2.0f, 0.6f }, 2, &p, (const int32_t[]){ 0, 0 }, 2) == 1, "all");
        CHECK(greedy_after((const float[]){ 2.0f, 0.4f }, 2, &p, (const int32_t[]){ 0, 0 }, 2) == 0, "all small");

        /* The window: with last_n 2, token 0 falls out after two others. */
        lmp_sampler_params_default(&p);
        p.penalty_last_n = 2;
        p.presence_penalty = 1.0f;
        const float l3[3] = { 1.0f, 0.5f, -5.0f };
        CHECK(greedy_after(l3, 3, &p, (const int32_t[]){ 0, 2 }, 2) == 1, "in window");
        CHECK(greedy_after(l3, 3, &p, (const int32_t[]){ 0, 2, 2 }, 3) == 0, "out of window");
        /* penalty_last_n 0: no penalties. */
        p.penalty_last_n = 0;
        CHECK(greedy_after(l3, 3, &p, (const int32_t[]){ 0, 0 }, 2) == 0, "last_n 0");

        /* reset forgets the history; accept refuses bad tokens. */
        p.penalty_last_n = 8;
        p.temperature = 0;
        struct lmp_sampler *s = make(3, &p);
        CHECK(lmp_sampler_accept(s, 0) == 0, "accept");
        CHECK(lmp_sampler_sample(s, l3) == 1, "penalised");
        lmp_sampler_reset(s);
        CHECK(lmp_sampler_sample(s, l3) == 0, "after reset");
        CHECK(lmp_sampler_accept(s, 3) == -EINVAL, "accept 3");
        CHECK(lmp_sampler_accept(s, -1) == -EINVAL, "accept -1");
        lmp_sampler_free(s);
}

static void test_bias(void) {
        struct lmp_sampler_params p;
        const float l[4] = { 3.0f, 2.0f, 1.0f, 0.0f };
        struct lmp_logit_bias ban[] = { { 0, -INFINITY } };

        /* A banned token is never drawn, greedy or not. */
        lmp_sampler_params_default(&p);
        p.bias = ban;
        p.n_bias = 1;
        p.seed = 3;
        struct lmp_sampler *s = make(4, &p);
        int hist[4];
        histogram(s, l, 4, 5000, hist);
        CHECK(hist[0] == 0 && hist[1] > 0 && hist[3] > 0, "ban: %d %d %d %d", hist[0], hist[1], hist[2], hist[3]);
        lmp_sampler_free(s);
        p.temperature = 0;
        s = make(4, &p);
        CHECK(lmp_sampler_sample(s, l) == 1, "ban greedy");
        lmp_sampler_free(s);

        /* A positive bias wins; biases on one token add up. */
        struct lmp_logit_bias up[] = { { 3, 2.0f }, { 3, 1.5f } };
        p.bias = up;
        p.n_bias = 2;
        s = make(4, &p);
        CHECK(lmp_sampler_sample(s, l) == 3, "bias up");
        lmp_sampler_free(s);

        /* +inf with a -inf bias is NaN: banned, greedy or not. */
        struct lmp_logit_bias ban0[] = { { 0, -INFINITY } };
        p.bias = ban0;
        p.n_bias = 1;
        for (int t = 0; t < 2; t++) {
                p.temperature = (float)t;
                s = make(2, &p);
                CHECK(lmp_sampler_sample(s, (const float[]){ INFINITY, 1.0f }) == 1, "inf - inf, t=%d", t);
                lmp_sampler_free(s);
        }

        /* Everything banned: nothing to sample. */
        struct lmp_logit_bias all[] = { { 0, -INFINITY }, { 1, -INFINITY }, { 2, -INFINITY }, { 3, -INFINITY } };
        p.bias = all;
        p.n_bias = 4;
        for (int t = 0; t < 2; t++) {
                p.temperature = (float)t;
                s = make(4, &p);
                CHECK(lmp_sampler_sample(s, l) == -ENOENT, "all banned");
                lmp_sampler_free(s);
        }

        /* NaN logits count as -inf; +inf wins. sample() leaves logits alone. */
        lmp_sampler_params_default(&p);
        p.top_p = 0.9f;
        s = make(4, &p);
        float odd[4] = { NAN, 1.0f, NAN, 0.5f }, copy[4];
        memcpy(copy, odd, sizeof(odd));
        for (int i = 0; i < 200; i++) {
                int32_t t = lmp_sampler_sample(s, odd);
                CHECK(t == 1 || t == 3, "NaN drawn: %d", t);
        }
        CHECK(memcmp(copy, odd, sizeof(odd)) == 0, "logits modified");
        float inf[4] = { 1.0f, INFINITY, 2.0f, 0.0f };
        CHECK(lmp_sampler_sample(s, inf) == 1, "+inf");
        CHECK(lmp_sampler_sample(s, NULL) == -EINVAL, "NULL logits");
        CHECK(lmp_sampler_sample(NULL, inf) == -EINVAL, "NULL sampler");
        lmp_sampler_free(s);
}

static void test_params(void) {
        struct lmp_sampler_params p;
        struct lmp_sampler *s = NULL;
        struct lmp_error err;
        struct lmp_logit_bias bad_tok[] = { { 10, 1.0f } }, bad_nan[] = { { 1, NAN } },
                              bad_inf[] = { { 1, INFINITY } }, neg[] = { { -1, 0.0f } };
        static const struct {
                const char *field;
                void (*set)(struct lmp_sampler_params *);
        } *unused;
        (void)unused;
#define REFUSE(n_vocab, stmt, word) do {                                               \
        lmp_sampler_params_default(&p);                                                \
        stmt;                                                                          \
        memset(&err, 0, sizeof(err));                                                  \
        s = NULL;                                                                      \
        int r_ = lmp_sampler_new(n_vocab, &p, &s, &err);                               \
        CHECK(r_ == -EINVAL && s == NULL, "%s: accepted", #stmt);                     \
        CHECK(strstr(err.msg, word) != NULL, "%s: message '%s' lacks '%s'", #stmt, err.msg, word); \
        lmp_sampler_free(s);                                                           \
} while (0)
        REFUSE(0, (void)0, "n_vocab");
        REFUSE(-5, (void)0, "n_vocab");
        REFUSE(LMP_SAMPLER_MAX_VOCAB + 1, (void)0, "n_vocab");
        REFUSE(8, p.temperature = -0.1f, "temperature");
        REFUSE(8, p.temperature = NAN, "temperature");
        REFUSE(8, p.temperature = INFINITY, "temperature");
        REFUSE(8, p.top_k = -1, "top_k");
        REFUSE(8, p.top_p = 1.5f, "top_p");
        REFUSE(8, p.top_p = -0.1f, "top_p");
        REFUSE(8, p.top_p = NAN, "top_p");
        REFUSE(8, p.min_p = 1.01f, "min_p");
        REFUSE(8, p.min_p = NAN, "min_p");
        REFUSE(8, p.repeat_penalty = 0, "repeat_penalty");
        REFUSE(8, p.repeat_penalty = -1, "repeat_penalty");
        REFUSE(8, p.repeat_penalty = INFINITY, "repeat_penalty");
        REFUSE(8, p.presence_penalty = NAN, "presence_penalty");
        REFUSE(8, p.frequency_penalty = -INFINITY, "frequency_penalty");
        REFUSE(8, p.penalty_last_n = -1, "penalty_last_n");
        REFUSE(8, p.penalty_last_n = LMP_SAMPLER_MAX_LAST_N + 1, "penalty_last_n");
        REFUSE(8, (p.bias = bad_tok, p.n_bias = 1), "token 10");
        REFUSE(8, (p.bias = neg, p.n_bias = 1), "token -1");
        REFUSE(8, (p.bias = bad_nan, p.n_bias = 1), "bias 0");
        REFUSE(8, (p.bias = bad_inf, p.n_bias = 1), "bias 0");
        REFUSE(8, (p.bias = NULL, p.n_bias = 2), "biases");
#undef REFUSE
        CHECK(lmp_sampler_new(8, NULL, &s, &err) == -EINVAL, "NULL params");
        lmp_sampler_free(NULL);
        lmp_sampler_reset(NULL);

        /* The bias array is copied: the caller's may go away. */
        struct lmp_logit_bias *b = malloc(sizeof(*b));
        b->token = 0;
        b->bias = -INFINITY;
        lmp_sampler_params_default(&p);
        p.temperature = 0;
        p.bias = b;
        p.n_bias = 1;
        s = make(2, &p);
        b->token = 1;
        free(b);
        CHECK(lmp_sampler_sample(s, (const float[]){ 5.0f, 1.0f }) == 1, "bias copied");
        lmp_sampler_free(s);
}

static void test_no_allocation(void) {
        struct lmp_sampler_params p;
        lmp_sampler_params_default(&p);
        p.seed = 99;
        p.top_k = 0;
        p.top_p = 0.95f;
        p.min_p = 0.02f;
        p.temperature = 0.8f;
        p.repeat_penalty = 1.1f;
        p.frequency_penalty = 0.1f;
        p.presence_penalty = 0.1f;
        p.penalty_last_n = 64;
        struct lmp_logit_bias b[] = { { 5, -INFINITY }, { 7, 1.0f } };
        p.bias = b;
        p.n_bias = 2;
        enum { N = 32000 };
        float *l = malloc(N * sizeof(*l));
        for (int i = 0; i < N; i++)
                l[i] = frand() * 10;
        for (int variant = 0; variant < 3; variant++) {
                p.top_k = variant == 1 ? 40 : 0;
                p.temperature = variant == 2 ? 0.0f : 0.8f;
                struct lmp_sampler *s = make(N, &p);
                long before = n_allocs;
                for (int i = 0; i < 100; i++) {
                        int32_t t = lmp_sampler_sample(s, l);
                        CHECK(t >= 0 && t < N && t != 5, "variant %d: token %d", variant, t);
                        lmp_sampler_accept(s, t);
                }
                lmp_sampler_reset(s);
                CHECK(n_allocs == before, "variant %d: %ld allocations in sample/accept/reset", variant,
                      n_allocs - before);
                lmp_sampler_free(s);
        }
        /* The counter itself works, and sees the library's allocations. */
        long before = n_allocs;
        lmp_sampler_free(make(N, &p));
        CHECK(n_allocs > before, "lmp_sampler_new allocated nothing that was counted");
        before = n_allocs;
        void *volatile q = malloc(16);
        free(q);
        CHECK(n_allocs == before + 1, "allocation counter broken");
        free(l);
}


/* ------------------------------------------------------------ allow (constrained sampling) */

struct allow_set {
        const int *ok;          /* ok[token] */
        int32_t n;
        long asked;
};

static bool allow_fn(void *ctx, int32_t t) {
        struct allow_set *a = ctx;
        a->asked++;
        return t >= 0 && t < a->n && a->ok[t];
}

static void test_allowed(void) {
        struct lmp_sampler_params p;
        lmp_sampler_params_default(&p);
        p.temperature = 0;
        enum { N = 1000 };
        static float l[N];
        static int ok[N];
        for (int i = 0; i < N; i++)
                l[i] = (float)i / N;    /* the best is the highest id */
        struct allow_set a = { .ok = ok, .n = N };
        struct lmp_sampler *s = make(N, &p);
        CHECK(lmp_sampler_sample_allowed(s, l, NULL, NULL) == -EINVAL, "a NULL allow accepted");
        CHECK(lmp_sampler_sample_allowed(s, l, allow_fn, &a) == -ENOENT, "nothing allowed, yet a token");
        ok[3] = ok[500] = 1;
        a.asked = 0;
        CHECK(lmp_sampler_sample_allowed(s, l, allow_fn, &a) == 500, "greedy: not the best allowed");
        CHECK(a.asked <= N + 1, "greedy: asked about %ld tokens", a.asked);
        ok[N - 1] = 1;
        a.asked = 0;
        CHECK(lmp_sampler_sample_allowed(s, l, allow_fn, &a) == N - 1, "greedy: not the best");
        CHECK(a.asked == 1, "greedy: asked about %ld tokens for an allowed best", a.asked);
        lmp_sampler_free(s);

        /* Draws: only allowed tokens, in proportion to their probabilities,
         * with and without the chain's filters keeping an allowed one. */
        const float l5[5] = { logf(0.4f), logf(0.25f), logf(0.2f), logf(0.1f), logf(0.05f) };
        const int ok5[5] = { 0, 1, 0, 1, 1 };
        struct allow_set a5 = { .ok = ok5, .n = 5 };
        for (int variant = 0; variant < 2; variant++) {
                lmp_sampler_params_default(&p);
                p.seed = 11;
                if (variant)
                        p.top_k = 1;    /* keeps token 0 only: refused, so the whole vocabulary is masked */
                s = make(5, &p);
                enum { D = 40000 };
                int hist[5] = { 0 };
                for (int i = 0; i < D; i++) {
                        int32_t t = lmp_sampler_sample_allowed(s, l5, allow_fn, &a5);
                        if (t < 0 || t >= 5) {
                                CHECK(0, "sample_allowed returned %d", t);
                                break;
                        }
                        hist[t]++;
                }
                /* With top_k 1 after the mask, only the best allowed. */
                double z = 0.25 + 0.1 + 0.05;
                for (int i = 0; i < 5; i++) {
                        double e = !ok5[i] ? 0 : variant ? (i == 1) : (i == 1 ? 0.25 : i == 3 ? 0.1 : 0.05) / z;
                        CHECK(fabs((double)hist[i] / D - e) < 0.012, "variant %d: token %d frequency %.4f, "
                              "expected %.4f", variant, i, (double)hist[i] / D, e);
                }
                long before = n_allocs;
                for (int i = 0; i < 100; i++)
                        lmp_sampler_sample_allowed(s, l5, allow_fn, &a5);
                CHECK(n_allocs == before, "%ld allocations in sample_allowed", n_allocs - before);
                lmp_sampler_free(s);
        }
}

int main(void) {
        test_greedy();
        test_determinism();
        test_statistics();
        test_penalties();
        test_bias();
        test_params();
        test_no_allocation();
        test_allowed();
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        else
                printf("sampler: all checks passed\n");
        return failures ? 1 : 0;
}

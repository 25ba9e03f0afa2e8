/* The sampling chain of sampler.h. Candidates live in one array of
 * (logit, id) pairs allocated for n_vocab at creation; filters shrink its
 * used length in place. Top-k and top-p select the best tokens with a
 * bounded min-heap (O(n log k)) instead of sorting the whole vocabulary:
 * top-p without top-k selects the best 64, then doubles the selection
 * (choosing among the rest only) until the kept mass reaches p. Ties between equal logits go to the lower token id, so that
 * results do not depend on the order of operations. */
#include "sampler/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cand {
        float logit;
        int32_t id;
};

struct lmp_sampler {
        int32_t n_vocab;
        struct lmp_sampler_params p;
        struct lmp_logit_bias *bias;    /* p.bias points here */
        struct cand *cand;              /* n_vocab */
        float *w;                       /* n_vocab: unnormalised probabilities of the draw */
        /* Penalty history: a ring of the last penalty_last_n tokens and the
         * count of each token in it. */
        int32_t *ring;                  /* penalty_last_n */
        int32_t ring_len, ring_head;
        int32_t *count;                 /* n_vocab */
        uint64_t rng[4];                /* xoshiro256** */
};

/* ------------------------------------------------------------ RNG */

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
        for (int i = 0; i < 4; i++)
                s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------ parameters */

void lmp_sampler_params_default(struct lmp_sampler_params *p) {
        *p = (struct lmp_sampler_params){
                .temperature = 1.0f,
                .top_k = 0,
                .top_p = 1.0f,
                .min_p = 0.0f,
                .repeat_penalty = 1.0f,
                .penalty_last_n = 0,
        };
}

static int check_params(int32_t n_vocab, const struct lmp_sampler_params *p, struct lmp_error *err) {
        if (n_vocab <= 0 || n_vocab > LMP_SAMPLER_MAX_VOCAB)
                return lmp_error_set(err, -EINVAL, "sampler: n_vocab %d is not in [1, %d]", n_vocab,
                                     LMP_SAMPLER_MAX_VOCAB);
        if (!isfinite(p->temperature) || p->temperature < 0)
                return lmp_error_set(err, -EINVAL, "sampler: temperature %g must be finite and >= 0",
                                     (double)p->temperature);
        if (p->top_k < 0)
                return lmp_error_set(err, -EINVAL, "sampler: top_k %d must be >= 0 (0: off)", p->top_k);
        if (!(p->top_p >= 0 && p->top_p <= 1))
                return lmp_error_set(err, -EINVAL, "sampler: top_p %g is not in [0, 1]", (double)p->top_p);
        if (!(p->min_p >= 0 && p->min_p <= 1))
                return lmp_error_set(err, -EINVAL, "sampler: min_p %g is not in [0, 1]", (double)p->min_p);
        if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0)
                return lmp_error_set(err, -EINVAL, "sampler: repeat_penalty %g must be finite and > 0 (1: off)",
                                     (double)p->repeat_penalty);
        if (!isfinite(p->presence_penalty))
                return lmp_error_set(err, -EINVAL, "sampler: presence_penalty must be finite");
        if (!isfinite(p->frequency_penalty))
                return lmp_error_set(err, -EINVAL, "sampler: frequency_penalty must be finite");
        if (p->penalty_last_n < 0 || p->penalty_last_n > LMP_SAMPLER_MAX_LAST_N)
                return lmp_error_set(err, -EINVAL, "sampler: penalty_last_n %d is not in [0, %d]",
                                     p->penalty_last_n, LMP_SAMPLER_MAX_LAST_N);
        if (p->n_bias > 0 && !p->bias)
                return lmp_error_set(err, -EINVAL, "sampler: %zu logit biases but no array", p->n_bias);
        if (p->n_bias > (size_t)n_vocab * 4)
                return lmp_error_set(err, -EINVAL, "sampler: %zu logit biases for %d tokens", p->n_bias,
                                     n_vocab);
        for (size_t i = 0; i < p->n_bias; i++) {
                const struct lmp_logit_bias *b = &p->bias[i];
                if (b->token < 0 || b->token >= n_vocab)
                        return lmp_error_set(err, -EINVAL, "sampler: logit bias %zu: token %d is not in [0, %d)",
                                             i, b->token, n_vocab);
                if (isnan(b->bias) || b->bias == INFINITY)
                        return lmp_error_set(err, -EINVAL, "sampler: logit bias %zu (token %d): %g is not "
                                             "finite or -inf", i, b->token, (double)b->bias);
        }
        return 0;
}

int lmp_sampler_new(int32_t n_vocab, const struct lmp_sampler_params *p, struct lmp_sampler **ret,
                    struct lmp_error *err) {
        struct lmp_sampler *s;
        int r;

        if (!p || !ret)
                return lmp_error_set(err, -EINVAL, "sampler: no parameters");
        r = check_params(n_vocab, p, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                goto oom;
        s->n_vocab = n_vocab;
        s->p = *p;
        s->cand = malloc((size_t)n_vocab * sizeof(*s->cand));
        s->w = malloc((size_t)n_vocab * sizeof(*s->w));
        if (!s->cand || !s->w)
                goto oom;
        if (p->n_bias) {
                s->bias = malloc(p->n_bias * sizeof(*s->bias));
                if (!s->bias)
                        goto oom;
                memcpy(s->bias, p->bias, p->n_bias * sizeof(*s->bias));
        }
        s->p.bias = s->bias;
        if (p->penalty_last_n > 0) {
                s->ring = malloc((size_t)p->penalty_last_n * sizeof(*s->ring));
                s->count = calloc((size_t)n_vocab, sizeof(*s->count));
                if (!s->ring || !s->count)
                        goto oom;
        }
        rng_seed(s->rng, p->seed);
        *ret = s;
        return 0;
oom:
        lmp_sampler_free(s);
        return lmp_error_set(err, -ENOMEM, "sampler: out of memory for %d tokens", n_vocab);
}

void lmp_sampler_free(struct lmp_sampler *s) {
        if (!s)
                return;
        free(s->cand);
        free(s->w);
        free(s->bias);
        free(s->ring);
        free(s->count);
        free(s);
}

void lmp_sampler_reset(struct lmp_sampler *s) {
        if (!s)
                return;
        if (s->count)
                for (int32_t i = 0; i < s->ring_len; i++)
                        s->count[s->ring[(s->ring_head + i) % s->p.penalty_last_n]] = 0;
        s->ring_len = s->ring_head = 0;
        rng_seed(s->rng, s->p.seed);
}

int lmp_sampler_accept(struct lmp_sampler *s, int32_t token) {
        if (!s || token < 0 || token >= s->n_vocab)
                return -EINVAL;
        int32_t n = s->p.penalty_last_n;
        if (n == 0)
                return 0;
        if (s->ring_len == n) {         /* drop the oldest */
                s->count[s->ring[s->ring_head]]--;
                s->ring[s->ring_head] = token;
                s->ring_head = (s->ring_head + 1) % n;
        } else {
                s->ring[(s->ring_head + s->ring_len) % n] = token;
                s->ring_len++;
        }
        s->count[token]++;
        return 0;
}

/* ------------------------------------------------------------ selection */

/* a ranks before b: higher logit, then lower id. */
static inline bool better(const struct cand *a, const struct cand *b) {
        return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Min-heap on `better` (the root is the worst kept candidate). */
static void sift_down(struct cand *h, size_t n, size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, w = i;
                if (l < n && better(&h[w], &h[l]))
                        w = l;
                if (r < n && better(&h[w], &h[r]))
                        w = r;
                if (w == i)
                        return;
                struct cand t = h[i];
                h[i] = h[w];
                h[w] = t;
                i = w;
        }
}

/* Moves the best k of c[0..n) to c[0..k), sorted best first; the rest stay
 * in c[k..n) in some order. */
static void select_top(struct cand *c, size_t n, size_t k) {
        if (k > n)
                k = n;
        for (size_t i = k / 2; i-- > 0;)
                sift_down(c, k, i);
        for (size_t i = k; i < n; i++) {
                if (better(&c[i], &c[0])) {
                        struct cand t = c[0];
                        c[0] = c[i];
                        c[i] = t;
                        sift_down(c, k, 0);
                }
        }
        /* Heap sort: repeatedly move the worst to the end. */
        for (size_t m = k; m > 1; m--) {
                struct cand t = c[0];
                c[0] = c[m - 1];
                c[m - 1] = t;
                sift_down(c, m - 1, 0);
        }
}

/* ------------------------------------------------------------ the chain */

static void apply_penalties(struct lmp_sampler *s) {
        const struct lmp_sampler_params *p = &s->p;
        if (s->ring_len == 0 || (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f &&
                                 p->presence_penalty == 0.0f))
                return;
        /* Each distinct token once: the count is negated while visited and
         * restored in a second pass. cand[] is still indexed by token id. */
        for (int32_t i = 0; i < s->ring_len; i++) {
                int32_t t = s->ring[(s->ring_head + i) % p->penalty_last_n];
                int32_t c = s->count[t];
                if (c <= 0)
                        continue;
                float *l = &s->cand[t].logit;
                if (*l <= 0)
                        *l *= p->repeat_penalty;
                else
                        *l /= p->repeat_penalty;
                *l -= (float)c * p->frequency_penalty + p->presence_penalty;
                s->count[t] = -c;
        }
        for (int32_t i = 0; i < s->ring_len; i++) {
                int32_t t = s->ring[(s->ring_head + i) % p->penalty_last_n];
                if (s->count[t] < 0)
                        s->count[t] = -s->count[t];
        }
}

/* Fills the candidates from the logits, with biases and penalties. */
static void prepare(struct lmp_sampler *s, const float *logits) {
        const struct lmp_sampler_params *p = &s->p;
        struct cand *c = s->cand;
        size_t n = (size_t)s->n_vocab;
        for (size_t i = 0; i < n; i++) {
                c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
                c[i].id = (int32_t)i;
        }
        for (size_t i = 0; i < p->n_bias; i++)
                c[p->bias[i].token].logit += p->bias[i].bias;
        apply_penalties(s);
}

/* Drops banned tokens (and NaNs a bias or penalty may have made) and, with
 * allow, the tokens it refuses; runs top-k, top-p and min-p, then weighs
 * the rest with the temperature into w[]. Returns the candidates left in
 * c[0..n) (0: none), their total weight in *ret_z; *ret_inf is set to the
 * index of a +inf logit (which wins alone) or n when there is none. */
static size_t filter(struct lmp_sampler *s, lmp_sampler_allow_fn allow, void *ctx, double *ret_z,
                     size_t *ret_inf) {
        const struct lmp_sampler_params *p = &s->p;
        struct cand *c = s->cand;
        size_t n = (size_t)s->n_vocab;
        size_t m = 0, best = 0;
        for (size_t i = 0; i < n; i++) {
                if (!(c[i].logit > -INFINITY))
                        continue;
                if (allow && !allow(ctx, c[i].id))
                        continue;
                c[m] = c[i];
                if (c[m].logit > c[best].logit)
                        best = m;
                m++;
        }
        n = m;
        *ret_inf = SIZE_MAX;
        if (n == 0)
                return 0;
        if (c[best].logit == INFINITY) {
                *ret_inf = best;
                return n;
        }
        float max = c[best].logit;

        bool sorted = false;
        if (p->top_k > 0 && (size_t)p->top_k < n) {
                select_top(c, n, (size_t)p->top_k);
                n = (size_t)p->top_k;
                sorted = true;
        }

        if (p->top_p < 1.0f) {
                double z = 0, cum = 0;
                for (size_t i = 0; i < n; i++)
                        z += expf(c[i].logit - max);
                /* c[0..done) holds the best tokens, sorted; widen it until
                 * their mass reaches top_p. Each widening selects from the
                 * remainder only. */
                size_t done = sorted ? n : 0, keep = 0, i = 0;
                for (;;) {
                        for (; i < done; i++) {
                                cum += expf(c[i].logit - max) / z;
                                if (cum >= p->top_p) {
                                        keep = i + 1;
                                        break;
                                }
                        }
                        /* Rounding can leave the full sum a hair under p. */
                        if (keep || done == n)
                                break;
                        size_t more = LMP_MIN(n - done, LMP_MAX(done, (size_t)64));
                        select_top(c + done, n - done, more);
                        done += more;
                }
                n = keep ? keep : n;
                sorted = true;
        }

        if (p->min_p > 0.0f) {
                float thr = max + logf(p->min_p);
                size_t kept = 0;
                for (size_t i = 0; i < n; i++)
                        if (c[i].logit >= thr)
                                c[kept++] = c[i];
                n = kept;       /* the best always passes */
        }

        float inv_t = 1.0f / p->temperature;
        double z = 0;
        for (size_t i = 0; i < n; i++) {
                s->w[i] = expf((c[i].logit - max) * inv_t);
                z += s->w[i];
        }
        *ret_z = z;
        return n;
}

/* A draw among c[0..n) by the weights w[], of total z: an index. */
static size_t draw(struct lmp_sampler *s, size_t n, double z) {
        const float *w = s->w;
        double u = rng_uniform(s->rng) * z, cum = 0;
        for (size_t i = 0; i < n; i++) {
                cum += w[i];
                if (u < cum && w[i] > 0)
                        return i;
        }
        /* u landed past the last partial sum by rounding: the last token
         * with any mass. */
        for (size_t i = n; i-- > 0;)
                if (w[i] > 0)
                        return i;
        return 0;
}

/* Greedy: the best finite candidate; with allow, the best it allows,
 * asking first about the best, then, if it is refused, about each token
 * better than the best allowed so far in one pass. */
static int32_t greedy(struct lmp_sampler *s, lmp_sampler_allow_fn allow, void *ctx) {
        struct cand *c = s->cand;
        size_t n = (size_t)s->n_vocab;
        /* NaN (e.g. +inf logit with a -inf bias) counts as -inf. */
        size_t best = n;
        for (size_t i = 0; i < n; i++)
                if (c[i].logit > -INFINITY && (best == n || c[i].logit > c[best].logit))
                        best = i;
        if (best == n)
                return -ENOENT;
        if (!allow || allow(ctx, c[best].id))
                return c[best].id;
        /* One pass, asking only about tokens better than the best allowed
         * so far (ties to the lower id, as above). */
        best = n;
        for (size_t i = 0; i < n; i++)
                if (c[i].logit > -INFINITY && (best == n || c[i].logit > c[best].logit) && allow(ctx, c[i].id))
                        best = i;
        return best == n ? -ENOENT : c[best].id;
}

/* Draws this many times among the chain's candidates, without putting back
 * a refused one, before checking them all. */
#define ALLOW_DRAWS 8

static int32_t sample(struct lmp_sampler *s, const float *logits, lmp_sampler_allow_fn allow, void *ctx) {
        if (!s || !logits)
                return -EINVAL;
        prepare(s, logits);
        if (s->p.temperature == 0.0f)
                return greedy(s, allow, ctx);

        double z;
        size_t inf, n = filter(s, NULL, NULL, &z, &inf);
        if (n == 0)
                return -ENOENT;
        if (!allow)
                return inf != SIZE_MAX ? s->cand[inf].id : s->cand[draw(s, n, z)].id;

        /* Constrained: the chain picks its candidates from the whole
         * vocabulary as usual and the grammar refuses among them. A draw
         * that refuses the tokens it drew (taking each out of the
         * distribution) is a draw from the allowed candidates, in
         * proportion to their weights; after a few refusals, every
         * remaining candidate is checked instead. */
        if (inf == SIZE_MAX) {
                for (int k = 0; k < ALLOW_DRAWS && z > 0; k++) {
                        size_t i = draw(s, n, z);
                        if (allow(ctx, s->cand[i].id))
                                return s->cand[i].id;
                        z -= s->w[i];
                        s->w[i] = 0;
                }
                z = 0;
                for (size_t i = 0; i < n; i++) {
                        if (s->w[i] > 0 && !allow(ctx, s->cand[i].id))
                                s->w[i] = 0;
                        z += s->w[i];
                }
                if (z > 0)
                        return s->cand[draw(s, n, z)].id;
        } else if (allow(ctx, s->cand[inf].id)) {
                return s->cand[inf].id;
        }
        /* None of the chain's candidates is allowed: the grammar masks the
         * whole vocabulary first, and the chain runs on what is left. */
        prepare(s, logits);
        n = filter(s, allow, ctx, &z, &inf);
        if (n == 0)
                return -ENOENT;
        return inf != SIZE_MAX ? s->cand[inf].id : s->cand[draw(s, n, z)].id;
}

int32_t lmp_sampler_sample(struct lmp_sampler *s, const float *logits) {
        return sample(s, logits, NULL, NULL);
}

int32_t lmp_sampler_sample_allowed(struct lmp_sampler *s, const float *logits, lmp_sampler_allow_fn allow,
                                   void *ctx) {
        if (!allow)
                return -EINVAL;
        return sample(s, logits, allow, ctx);
}

/* The forward pass of the llama family over a batch, and the context that
 * holds its state: an f32 KV cache per sequence and scratch buffers sized
 * once, at lmp_ctx_new(), for the largest batch. lmp_ctx_decode() reads top
 * to bottom like the model's definition: embed, then per layer RMSNorm ->
 * Q/K/V -> RoPE -> causal attention over the sequence's cache -> output
 * projection -> residual -> RMSNorm -> SwiGLU feed-forward -> residual, then
 * a final RMSNorm and the vocabulary projection for the entries that want
 * logits. The newer families add steps at fixed places, each behind a fact
 * of the architecture table: per-head q/k RMSNorm before RoPE (Qwen3,
 * Gemma 3), RMSNorm of each block's output before its residual add, GELU
 * gating, embeddings scaled by sqrt(n_embd) and a final logit softcap
 * (Gemma), LongRoPE factors and attention factor in the RoPE tables (Phi-3),
 * and windowed layers with their own RoPE table (Gemma 3). Fused weights
 * (Phi-3's qkv and gate|up) are split into views at load, so they cost
 * nothing here.
 *
 * A known limit: a windowed layer's attention reads only its window, but
 * its KV cache rows are laid out like a global layer's (n_ctx per
 * sequence). A ring of window + n_batch rows would do, but rewriting from
 * an earlier position (lmp_ctx_seq_truncate, prompt-cache reuse) then needs
 * keys the ring has overwritten. The cache's pages are touched only as
 * positions advance, so the cost is the memory of the positions used.
 *
 * Encoders (BERT) have their own top-to-bottom function over the same
 * products and attention, lmp_ctx_encode(): token + token type + position
 * embeddings -> LayerNorm, then per layer Q/K/V -> attention within each
 * whole sequence -> output projection -> residual -> LayerNorm -> GELU
 * feed-forward -> residual -> LayerNorm, then pooling per sequence. They
 * keep no KV cache.
 *
 * Matrix products are weight (n_out x n_in) times the batch's activations
 * (n_tok x n_in), split across the thread pool by weight rows. As in
 * llama.cpp, each product's input is converted once to the activation type
 * the weight's kernels pair with (q8_0, q8_K, f16, ...) and then every
 * (row, token) pair is one vec_dot; inputs shared by several products (Q, K
 * and V; gate and up) are converted once. F32 weights on a batch of at least
 * BLAS_MIN_BATCH tokens, and the attention of tiles of many query rows
 * (always f32), go through OpenBLAS; so do f16 weights on such a batch
 * (and bf16 ones where bf16 products do not run), their rows converted to
 * an f32 panel at a time (lmp_weight_rows_sgemm(): twice the rate of the
 * f16 kernels, and the activations stay f32). Where the CPU has
 * AVX512-BF16, bf16 weights on BF16_MIN_BATCH tokens or more run on bf16
 * operands instead (lmp_weight_rows_bf16(): each task packs its rows, the
 * activations are the bf16 ones their vec_dot reads too, as in
 * llama.cpp). A decode step's attention (a few rows:
 * the heads of one token that share a KV head) reads the cache in place
 * with quant/attn.h's kernels.
 * An encoder's batch of WIDE_MIN_BATCH tokens or more (a few short texts)
 * takes its float weights (f32, f16, bf16) through OpenBLAS as well, a
 * cache-sized f32 panel of rows at a time (matmul_rows_wide()), with the
 * bias, the residual add and GELU folded into the product's pass.
 * Nothing in this file allocates after lmp_ctx_new(). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/model.h"
#include "model/vecmath.h"
#include "quant/attn.h"
#include "quant/blocks.h"
#include "quant/repack.h"

#define BLAS_MIN_BATCH 16       /* smaller f32 products use our own kernels */
#define BF16_MIN_BATCH 16       /* bf16 weights: from this many tokens, bf16 products on packed panels */
#define ATT_TILE 32             /* query rows per attention task */
#define ATT_STACK_FLOATS (1u << 20) /* per thread: scores of a prompt tile's stacked heads, at most */
#define ATT_OWN_ROWS 16         /* tasks of at most this many rows use attn.h's kernels, not sgemm */
#define MM_TOK_TILE 8           /* tokens per inner block of a matrix product */
#define MM_GEMM_TOK_BLOCK 64    /* tokens per call of a gemm kernel */
#define MM_GEMM_ROW_ALIGN 8     /* gemm tasks start on a multiple of this many rows */
#define MM_GEMM_TASKS 16        /* gemm tasks per thread and product */
#define MM_TASKS 4              /* other tasks per thread and product */
#define MM_TASK_BYTES (512 << 10)      /* weights per task of a one-token product, at most */
#define MM_TASK_MIN_BYTES (64 << 10)   /* ... and at least, as its range runs out */
#define WIDE_MIN_BATCH 32       /* an encoder's batch from which matmul_rows_wide() is used */
#define WIDE_PANEL_FLOATS (128 * 1536)  /* f32 weights converted at a time by matmul_rows_wide() */
/* A decoder's f16 weights on a prompt: f32 rows converted at a time (4 MiB
 * a thread). sgemm packs the activations (the prompt's tokens by n_in)
 * again on every call, so a task's rows should be one call, not a few
 * panels (a 4864-input ffn_down took 40 rows at a time in
 * WIDE_PANEL_FLOATS). */
#define DEC_PANEL_FLOATS ((size_t)1 << 20)

/* Consecutive batch entries of one sequence at consecutive positions. */
struct run {
        int32_t first;          /* batch index */
        int32_t n;
        int32_t seq;
        int32_t pos0;
};

/* A tile of query rows of one run, for one head, or, for a single-row tile
 * (a decode step), for all the query heads that share one KV head: their
 * queries are adjacent in memory and see the same keys, so one product
 * reads the keys and values once for the whole group. */
struct att_task {
        int32_t run;
        int32_t row0, n_rows;   /* within the run */
        int32_t head;           /* first query head */
        int32_t n_heads;        /* 1, or the group size */
};

/* A matrix product's input, with its conversions to activation types. */
struct act {
        const float *x;         /* (n_tok, n_in) */
        int64_t n_tok, n_in;
        uint64_t ready;         /* bit t: qbuf[t] holds x converted to type t */
};

struct lmp_ctx {
        const struct lmp_model *m;
        struct lmp_threadpool *pool;
        uint32_t n_ctx, n_seq, n_batch;
        uint32_t q_dim, kv_dim;

        size_t cache_bytes;     /* of each of k_cache and v_cache */
        float *k_cache;         /* (n_seq, seq_rows, kv_dim), each layer head-major (cache_at()) */
        float *v_cache;         /* (n_seq, seq_rows, kv_dim), the same */
        size_t seq_rows;        /* cache rows of one sequence, all layers */
        size_t *layer_row;      /* (n_layer) first row of each layer in a sequence's */
        uint32_t ring;          /* windowed layers: rows of their ring, 0: n_ctx rows */
        uint32_t *seq_len;      /* (n_seq) */
        int32_t *seq_last;      /* (n_seq) last position seen in the batch being checked */

        /* Scratch, (n_batch, ...) each. */
        float *x;               /* (n_batch, n_embd) residual stream */
        float *xb;              /* (n_batch, n_embd) normalized / projected */
        float *q;               /* (n_batch, q_dim) */
        float *k;               /* (n_batch, kv_dim) */
        float *v;               /* (n_batch, kv_dim) */
        float *att;             /* (n_batch, q_dim) */
        float *hb;              /* (n_batch, n_ff) */
        float *hb2;             /* (n_batch, n_ff) */
        float *rope;            /* (n_batch, n_rot) cos, sin pairs */
        float *rope_swa;        /* (n_batch, n_rot) the windowed layers' own, or NULL */
        const float *rope_ff;   /* (n_rot/2) frequency divisors for this context, or NULL */
        void *qbuf[LMP_TYPE_COUNT];     /* (n_batch, row_size(type, max_n_in)) */
        size_t qrow[LMP_TYPE_COUNT];    /* bytes per converted row */
        struct run *runs;       /* (n_batch) */
        struct att_task *tasks;
        float *scores;          /* (n_threads, att_rows, n_ctx) */
        uint32_t att_rows;      /* rows of one attention product: ATT_TILE, or more for stacked heads */
        uint32_t att_stack;     /* a prompt tile's tokens when its group's heads are stacked; 0: never */
        float *att_pack;        /* (n_threads, 2, att_rows, head_dim) stacked queries and outputs */
        float *wpanel;          /* encoder: (n_threads, wpanel_floats) f32 weight rows */
        size_t wpanel_floats;   /* encoders: WIDE_PANEL_FLOATS, or 16 rows of the widest; decoders: DEC_PANEL_FLOATS, or 32 */
};

/* The KV cache of a global layer holds every position of a sequence, at
 * row pos. A layer's rows are stored head-major: each KV head's rows of
 * head_dim floats, all positions, one after the other, so that the
 * attention of one head reads its keys and values as one sequential stream
 * (rows of all heads would give each head a strided read of a quarter or
 * less of every cache line pair the prefetchers fetch). A windowed layer (n_swa > 0) only ever looks n_swa - 1
 * positions back, so unless that is most of the context it keeps a ring of
 * `ring` rows: position pos at row pos % ring, and the first RING_MIRROR
 * rows copied again after the ring so that every span attention reads (at
 * most n_swa + ATT_TILE - 1 positions) is contiguous in memory. A batch
 * writes up to n_batch positions of a sequence before it attends, and its
 * first row looks n_swa - 1 back, so ring = n_swa + n_batch rows never
 * overwrite a position that the batch still reads. */
#define RING_MIRROR(n_swa) ((size_t)(n_swa) + ATT_TILE)     /* a tile has at most ATT_TILE tokens */

static inline bool layer_ring(const struct lmp_ctx *c, uint32_t layer) {
        return c->ring && c->m->layers[layer].n_swa;
}

static inline size_t layer_rows(const struct lmp_ctx *c, uint32_t layer) {
        return layer_ring(c, layer) ? c->ring + RING_MIRROR(c->m->hp.n_swa) : c->n_ctx;
}

/* Head kvh's row of position pos (head_dim floats; the next position's
 * follows it). */
static inline float *cache_at(const struct lmp_ctx *c, float *base, int32_t seq, uint32_t layer,
                              uint32_t kvh, int32_t pos) {
        size_t row = layer_ring(c, layer) ? (size_t)pos % c->ring : (size_t)pos;
        return base + ((size_t)seq * c->seq_rows + c->layer_row[layer]) * c->kv_dim +
               ((size_t)kvh * layer_rows(c, layer) + row) * c->m->hp.head_dim;
}

/* Stores one position's k and v (kv_dim floats each, head after head) in a
 * layer's cache, and in the ring's mirror rows. */
static void cache_store(struct lmp_ctx *c, int32_t seq, uint32_t layer, int32_t pos, const float *k,
                        const float *v) {
        const size_t hd = c->m->hp.head_dim, bytes = hd * sizeof(float);
        bool mirror = layer_ring(c, layer) && (size_t)pos % c->ring < RING_MIRROR(c->m->hp.n_swa);
        for (uint32_t h = 0; h < c->m->hp.n_head_kv; h++) {
                float *kc = cache_at(c, c->k_cache, seq, layer, h, pos);
                float *vc = cache_at(c, c->v_cache, seq, layer, h, pos);
                memcpy(kc, k + h * hd, bytes);
                memcpy(vc, v + h * hd, bytes);
                if (mirror) {
                        memcpy(kc + (size_t)c->ring * hd, k + h * hd, bytes);
                        memcpy(vc + (size_t)c->ring * hd, v + h * hd, bytes);
                }
        }
}

/* Whether a sequence holding len positions can go on from pos <= len:
 * the windowed layers' rings must still hold the n_swa - 1 positions
 * before it (they hold the last `ring`). */
static bool can_resume(const struct lmp_ctx *c, uint32_t len, uint32_t pos) {
        if (!c->ring || pos == 0 || pos >= len)
                return true;
        return (uint64_t)pos + c->ring >= (uint64_t)len + c->m->hp.n_swa - 1;
}

/* ------------------------------------------------------- context setup */

void lmp_ctx_free(struct lmp_ctx *c) {
        if (!c)
                return;
        if (c->k_cache)
                munmap(c->k_cache, c->cache_bytes);
        if (c->v_cache)
                munmap(c->v_cache, c->cache_bytes);
        free(c->layer_row);
        free(c->seq_len);
        free(c->seq_last);
        free(c->x);
        free(c->xb);
        free(c->q);
        free(c->k);
        free(c->v);
        free(c->att);
        free(c->hb);
        free(c->hb2);
        free(c->rope);
        free(c->rope_swa);
        for (int t = 0; t < LMP_TYPE_COUNT; t++)
                free(c->qbuf[t]);
        free(c->runs);
        free(c->tasks);
        free(c->scores);
        free(c->att_pack);
        free(c->wpanel);
        free(c);
}

/* calloc of a*b*elem bytes, 64-byte aligned, NULL on overflow. */
static void *alloc_array(size_t a, size_t b, size_t elem) {
        size_t n;
        if (lmp_mul_overflow(a, b, &n) || lmp_mul_overflow(n, elem, &n))
                return NULL;
        n = LMP_ALIGN_UP(n ? n : 1, 64);
        void *p = aligned_alloc(64, n);
        if (p)
                memset(p, 0, n);
        return p;
}

/* The KV cache: anonymous pages, zero on first touch, so that a worker's
 * memory grows with the positions its sequences use, not with n_ctx. */
static float *alloc_cache(size_t rows, size_t dim, size_t *ret_bytes) {
        size_t n;
        if (lmp_mul_overflow(rows, dim, &n) || lmp_mul_overflow(n, sizeof(float), &n))
                return NULL;
        void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        *ret_bytes = n ? n : 1;
        return p;
}

static size_t n_att_tasks_max(uint32_t n_batch, uint32_t n_head) {
        /* Each run of T entries makes ceil(T / ATT_TILE) tiles per head, or
         * (stacked heads) ceil(T / s) tiles per KV head with s >= 2 and at
         * least 2 query heads per KV head: at most T * n_head / 2 + n_head. */
        return ((size_t)n_batch + n_batch / ATT_TILE + 1) * n_head;
}

int lmp_ctx_new(const struct lmp_model *m, const struct lmp_ctx_params *p,
                struct lmp_threadpool *pool, struct lmp_ctx **ret, struct lmp_error *err) {
        const struct lmp_hparams *hp = &m->hp;
        uint32_t n_ctx = p && p->n_ctx ? p->n_ctx : hp->n_ctx_train;
        uint32_t n_seq = p && p->n_seq ? p->n_seq : 1;
        uint32_t n_batch = p && p->n_batch ? p->n_batch : 512;
        if (n_ctx > (1u << 24) || n_seq > 65536 || n_batch > (1u << 20))
                return lmp_error_set(err, -EINVAL, "context: n_ctx %u, n_seq %u or n_batch %u too large",
                                     n_ctx, n_seq, n_batch);
        /* An encoder has a learned embedding for each position up to its
         * training length, and none past it. */
        if (m->arch->encoder && n_ctx > hp->n_ctx_train)
                return lmp_error_set(err, -EINVAL, "context: n_ctx %u past the model's %u positions",
                                     n_ctx, hp->n_ctx_train);

        struct lmp_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        c->m = m;
        c->pool = pool;
        c->n_ctx = n_ctx;
        c->n_seq = n_seq;
        c->n_batch = n_batch;
        c->q_dim = hp->n_head * hp->head_dim;
        c->kv_dim = hp->n_head_kv * hp->head_dim;

        bool enc = m->arch->encoder;
        c->layer_row = alloc_array(hp->n_layer, 1, sizeof(size_t));
        if (!enc && c->layer_row) {
                if (hp->n_swa && !(p && p->swa_full) &&
                    (uint64_t)hp->n_swa + n_batch + RING_MIRROR(hp->n_swa) < n_ctx)
                        c->ring = hp->n_swa + n_batch;
                for (uint32_t l = 0; l < hp->n_layer; l++) {
                        c->layer_row[l] = c->seq_rows;
                        c->seq_rows += layer_ring(c, l) ? c->ring + RING_MIRROR(hp->n_swa) : n_ctx;
                }
                size_t cache_rows;
                if (!lmp_mul_overflow((size_t)n_seq, c->seq_rows, &cache_rows)) {
                        c->k_cache = alloc_cache(cache_rows, c->kv_dim, &c->cache_bytes);
                        c->v_cache = alloc_cache(cache_rows, c->kv_dim, &c->cache_bytes);
                }
        }
        c->seq_len = alloc_array(n_seq, 1, sizeof(uint32_t));
        c->seq_last = alloc_array(n_seq, 1, sizeof(int32_t));
        c->x = alloc_array(n_batch, hp->n_embd, sizeof(float));
        c->xb = alloc_array(n_batch, LMP_MAX(hp->n_embd, c->q_dim), sizeof(float));
        c->q = alloc_array(n_batch, c->q_dim, sizeof(float));
        c->k = alloc_array(n_batch, c->kv_dim, sizeof(float));
        c->v = alloc_array(n_batch, c->kv_dim, sizeof(float));
        c->att = alloc_array(n_batch, c->q_dim, sizeof(float));
        c->hb = alloc_array(n_batch, hp->n_ff, sizeof(float));
        c->hb2 = alloc_array(n_batch, hp->n_ff, sizeof(float));
        c->rope = alloc_array(n_batch, hp->n_rot, sizeof(float));
        if (hp->n_swa)
                c->rope_swa = alloc_array(n_batch, hp->n_rot, sizeof(float));
        /* LongRoPE picks its factors by the context a sequence can reach, as
         * llama.cpp does by n_ctx per sequence (each of ours has n_ctx). */
        c->rope_ff = m->rope_freqs;
        if (m->rope_factors_long)
                c->rope_ff = n_ctx > hp->n_ctx_orig ? m->rope_factors_long : m->rope_factors_short;
        c->runs = alloc_array(n_batch, 1, sizeof(*c->runs));
        c->tasks = alloc_array(n_att_tasks_max(n_batch, hp->n_head), 1, sizeof(*c->tasks));
        /* A causal tile of several tokens takes all the query heads that
         * share a KV head in one product (att_stack tokens by the group),
         * so that OpenBLAS packs each of its keys and values once for the
         * group instead of once per head; as many tokens as a scores
         * buffer of ATT_STACK_FLOATS allows at this context, up to
         * ATT_TILE (the windowed layers' ring mirrors ATT_TILE rows). */
        uint32_t group = hp->n_head_kv ? hp->n_head / hp->n_head_kv : 1;
        c->att_rows = ATT_TILE;
        if (!enc && group > 1) {
                uint32_t tok = LMP_MIN((uint32_t)ATT_TILE, ATT_STACK_FLOATS / n_ctx / group);
                /* Only where a product has twice the rows of a head's tile:
                 * fewer, and the keys would be packed as often as before. */
                if (tok * group >= 2 * ATT_TILE) {
                        c->att_stack = tok;
                        c->att_rows = LMP_MAX((uint32_t)ATT_TILE, tok * group);
                }
        }
        c->scores = alloc_array((size_t)lmp_threadpool_size(pool) * c->att_rows, n_ctx, sizeof(float));
        if (c->att_stack)
                c->att_pack = alloc_array((size_t)lmp_threadpool_size(pool) * 2 * c->att_rows, hp->head_dim,
                                          sizeof(float));
        if (enc || m->has_panels) {
                /* bf16 panels: 16 f32 rows and at least 16 packed ones */
                c->wpanel_floats = enc ? LMP_MAX((size_t)WIDE_PANEL_FLOATS, (size_t)16 * m->max_n_in)
                                       : LMP_MAX(DEC_PANEL_FLOATS, (size_t)32 * m->max_n_in);
                c->wpanel = alloc_array((size_t)lmp_threadpool_size(pool), c->wpanel_floats, sizeof(float));
        }
        bool ok = c->layer_row && (enc ? c->wpanel != NULL : c->k_cache && c->v_cache) &&
                  (!m->has_panels || c->wpanel) && c->seq_len &&
                  c->seq_last && c->x && c->xb &&
                  c->q && c->k && c->v && c->att && c->hb && c->hb2 && c->rope && c->runs &&
                  (!hp->n_swa || c->rope_swa) &&
                  c->tasks && c->scores && (!c->att_stack || c->att_pack);
        for (int t = 0; ok && t < LMP_TYPE_COUNT; t++) {
                if (t == LMP_TYPE_F32 || !(m->act_types & (UINT64_C(1) << t)))
                        continue;
                c->qrow[t] = lmp_type_row_size((uint32_t)t, m->max_n_in);
                /* Narrower inputs are converted into the same buffer with the
                 * same row stride; the weight check guarantees each width is a
                 * whole number of blocks. */
                c->qbuf[t] = alloc_array(n_batch, c->qrow[t], 1);
                ok = c->qbuf[t] != NULL;
        }
        if (!ok) {
                lmp_ctx_free(c);
                return lmp_error_set(err, -ENOMEM,
                                     "context: out of memory (n_ctx %u, n_seq %u, n_batch %u)", n_ctx,
                                     n_seq, n_batch);
        }
        /* Our pool does the threading; OpenBLAS runs in the calling thread. */
        openblas_set_num_threads(1);
        *ret = c;
        return 0;
}

uint32_t lmp_ctx_n_ctx(const struct lmp_ctx *c) { return c->n_ctx; }
uint32_t lmp_ctx_n_seq(const struct lmp_ctx *c) { return c->n_seq; }
uint32_t lmp_ctx_n_batch(const struct lmp_ctx *c) { return c->n_batch; }

uint32_t lmp_ctx_seq_len(const struct lmp_ctx *c, int32_t seq) {
        if (seq < 0 || (uint32_t)seq >= c->n_seq)
                return 0;
        return c->seq_len[seq];
}

int lmp_ctx_seq_truncate(struct lmp_ctx *c, int32_t seq, uint32_t pos) {
        if (seq < 0 || (uint32_t)seq >= c->n_seq)
                return -EINVAL;
        if (pos < c->seq_len[seq])
                c->seq_len[seq] = can_resume(c, c->seq_len[seq], pos) ? pos : 0;
        return (int)c->seq_len[seq];
}

size_t lmp_ctx_kv_rows(const struct lmp_ctx *c) {
        return c->seq_rows;
}

/* ------------------------------------------------------ matrix products */

struct convert_job {
        const struct lmp_quant_traits *at;
        const float *x;
        int64_t n_in;
        uint8_t *out;
        size_t out_stride;
};

static void convert_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct convert_job *j = arg;
        for (int64_t t = begin; t < end; t++)
                j->at->from_float(j->x + t * j->n_in, j->out + (size_t)t * j->out_stride, j->n_in);
}

/* One weight of a product: its rows go to out (n_tok, ld), columns [0,
 * n_out). */
struct matmul_part {
        const struct lmp_weight *w;
        const void *y;          /* activations in the vec_dot type, or f32 */
        size_t y_stride;        /* bytes per activation row */
        float *out;
        int64_t ld;
        bool blas;              /* an f32 weight on a long batch: OpenBLAS */
        bool bf16;              /* a bf16 weight on a long batch: bf16 products on packed panels */
        bool wide;              /* another f16 or bf16 one: OpenBLAS on f32 panels */
        float *panel;           /* bf16, wide: (n_threads, panel_floats) */
        size_t panel_floats;
};

/* Up to MM_PARTS_MAX weights on one input in one pool run, so that a step
 * pays one barrier for Q, K and V, and one for gate and up: their rows are
 * concatenated (part p owns rows first[p] .. first[p + 1]), or with glu the
 * two parts are the gate and up of a gated FFN over the same rows, and each
 * task applies the gate to the columns it computed. */
#define MM_PARTS_MAX 3

struct matmul_job {
        struct matmul_part part[MM_PARTS_MAX];
        int64_t first[MM_PARTS_MAX + 1];
        int64_t rows;           /* first[n_parts], or the FFN's with glu */
        int unit;               /* the pool splits in units of this many rows */
        int n_parts;
        int64_t n_tok;
        bool glu;
        bool gelu;              /* glu: GELU instead of SiLU */
};

/* Rows [begin, end) of a weight in a 16-row layout (q4_K_r16 or q6_K_r16):
 * lmp_gemm_r16_rows() (quant/repack.h) takes the groups a task's range or
 * a fused matrix's part cuts. */
static void part_rows_r16(const struct matmul_part *p, int64_t n_tok, int64_t begin, int64_t end) {
        const struct lmp_weight *w = p->w;
        lmp_gemm_r16_rows(w->traits, (int)w->n_in, w->data, w->r16_row0, begin, end, (int)n_tok, p->y, p->y_stride,
                          p->out, (size_t)p->ld);
}

static void part_rows(const struct matmul_part *p, int64_t n_tok, int64_t begin, int64_t end, int tid) {
        const struct lmp_weight *w = p->w;
        if (w->r16) {
                part_rows_r16(p, n_tok, begin, end);
                return;
        }
        if (p->wide) {
                lmp_weight_rows_sgemm(w, 1, p->y, n_tok, p->out, p->ld, NULL, false,
                                      p->panel + (size_t)tid * p->panel_floats, p->panel_floats, begin, end, NULL,
                                      NULL);
                return;
        }
        if (p->bf16) {
                lmp_weight_rows_bf16(w, 1, p->y, p->y_stride / sizeof(uint16_t), n_tok, p->out, p->ld, NULL, false,
                                     p->panel + (size_t)tid * p->panel_floats, p->panel_floats, begin, end, NULL,
                                     NULL);
                return;
        }
        if (p->blas) {
                const float *wd = (const float *)w->data + begin * w->n_in;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok, (int)(end - begin),
                            (int)w->n_in, 1.0f, p->y, (int)w->n_in, wd, (int)w->n_in, 0.0f,
                            p->out + begin, (int)p->ld);
                return;
        }
        const uint8_t *wd = w->data;
        const uint8_t *y = p->y;
        int n = (int)w->n_in;
        if (w->traits->gemm_few && n_tok > 1 && n_tok <= LMP_GEMM_FEW_MAX_TOK) {
                /* A decode step of a few sequences: one pass over the rows,
                 * streamed from memory, for all of the step's tokens. */
                w->traits->gemm_few(n, (int)(end - begin), (int)n_tok, wd + (size_t)begin * w->row_size,
                                    w->row_size, y, p->y_stride, p->out + begin, (size_t)p->ld);
                return;
        }
        if (w->traits->gemm && n_tok > 1) {
                /* Tokens in blocks that stay in cache while every row of
                 * the range passes over them. */
                for (int64_t t0 = 0; t0 < n_tok; t0 += MM_GEMM_TOK_BLOCK) {
                        int nt = (int)LMP_MIN((int64_t)MM_GEMM_TOK_BLOCK, n_tok - t0);
                        w->traits->gemm(n, (int)(end - begin), nt, wd + (size_t)begin * w->row_size,
                                        w->row_size, y + (size_t)t0 * p->y_stride, p->y_stride,
                                        p->out + t0 * p->ld + begin, (size_t)p->ld);
                }
                return;
        }
        for (int64_t t0 = 0; t0 < n_tok; t0 += MM_TOK_TILE) {
                int64_t t1 = LMP_MIN(t0 + MM_TOK_TILE, n_tok);
                for (int64_t r = begin; r < end; r++) {
                        const void *row = wd + (size_t)r * w->row_size;
                        for (int64_t t = t0; t < t1; t++)
                                w->traits->vec_dot(n, &p->out[t * p->ld + r], row, y + (size_t)t * p->y_stride);
                }
        }
}

/* The gates, defined with the elementwise ops below. */
static void swiglu(float *g, const float *u, int64_t count);
static void geglu(float *g, const float *u, int64_t count);

static void matmul_rows(void *arg, int64_t begin, int64_t end, int tid) {
        const struct matmul_job *j = arg;
        begin *= j->unit;
        end = LMP_MIN(end * j->unit, j->rows);
        if (j->glu) {
                part_rows(&j->part[0], j->n_tok, begin, end, tid);
                part_rows(&j->part[1], j->n_tok, begin, end, tid);
                for (int64_t t = 0; t < j->n_tok; t++) {
                        float *g = j->part[0].out + t * j->part[0].ld + begin;
                        const float *u = j->part[1].out + t * j->part[1].ld + begin;
                        if (j->gelu)
                                geglu(g, u, end - begin);
                        else
                                swiglu(g, u, end - begin);
                }
                return;
        }
        for (int p = 0; p < j->n_parts; p++) {
                int64_t b = LMP_MAX(begin, j->first[p]), e = LMP_MIN(end, j->first[p + 1]);
                if (b < e)
                        part_rows(&j->part[p], j->n_tok, b - j->first[p], e - j->first[p], tid);
        }
}

/* Converts in to the activation type that w's kernels pair with (once per
 * input and type) and fills p. */
static void matmul_prepare(struct lmp_ctx *c, const struct lmp_weight *w, struct act *in, float *out,
                           int64_t ld, struct matmul_part *p) {
        *p = (struct matmul_part){ .w = w, .out = out, .ld = ld };
        if (w->type == LMP_TYPE_F32 && in->n_tok >= BLAS_MIN_BATCH) {
                p->y = in->x;
                p->blas = true;
                return;
        }
        if ((w->type == LMP_TYPE_F16 || (w->type == LMP_TYPE_BF16 && !w->bf16)) && in->n_tok >= BLAS_MIN_BATCH) {
                /* rows converted to f32 a panel at a time, through sgemm:
                 * twice the f16 kernels' rate, and the activations stay f32 */
                p->y = in->x;
                p->wide = true;
                p->panel = c->wpanel;
                p->panel_floats = c->wpanel_floats;
                return;
        }
        enum lmp_type vt = w->traits->vec_dot_type;
        if (vt == LMP_TYPE_F32) {
                p->y = in->x;
                p->y_stride = (size_t)in->n_in * sizeof(float);
                return;
        }
        if (!(in->ready & (UINT64_C(1) << vt))) {
                int nth = lmp_threadpool_size(c->pool);
                struct convert_job cj = {
                        .at = lmp_quant_traits(vt, c->m->isa),
                        .x = in->x,
                        .n_in = in->n_in,
                        .out = c->qbuf[vt],
                        .out_stride = c->qrow[vt],
                };
                lmp_threadpool_run(c->pool, in->n_tok, 1 + in->n_tok / (4 * nth), convert_rows, &cj);
                in->ready |= UINT64_C(1) << vt;
        }
        p->y = c->qbuf[vt];
        p->y_stride = c->qrow[vt];
        if (w->bf16 && in->n_tok >= BF16_MIN_BATCH) {
                p->bf16 = true;
                p->panel = c->wpanel;
                p->panel_floats = c->wpanel_floats;
        }
}

static void matmul_run(struct lmp_ctx *c, struct matmul_job *j) {
        int nth = lmp_threadpool_size(c->pool);
        int64_t rows = j->glu ? j->first[1] : j->first[j->n_parts];
        bool gemm = false, blas = false, r16 = false, bf16 = false;
        for (int p = 0; p < j->n_parts; p++) {
                const bool panels = j->part[p].blas || j->part[p].wide || j->part[p].bf16;
                gemm |= j->part[p].w->traits->gemm != NULL && j->n_tok > 1 && !panels;
                blas |= j->part[p].blas || j->part[p].wide;
                bf16 |= j->part[p].bf16;
                r16 |= j->part[p].w->r16;
        }
        /* Weights in 16-row groups take tasks of whole groups (parts of
         * other layouts do not mind): the pool splits units of 16 rows. */
        j->rows = rows;
        j->unit = r16 ? LMP_R16_ROWS : 1;
        const int64_t units = (rows + j->unit - 1) / j->unit;
        /* A product of one row of activations (a decode step) takes guided
         * chunks of MM_TASK_MIN_BYTES to MM_TASK_BYTES of weights: the
         * vocabulary projection of Llama-3.2-1B (215 MB of q6_K) went out in
         * fixed tasks of a quarter of a thread's share, 27 MB, and whichever
         * thread started later or was slowed left the other waiting at the
         * barrier for up to one of them. */
        if (j->n_tok == 1) {
                int64_t bytes = 0;
                for (int p = 0; p < j->n_parts; p++)
                        bytes += (int64_t)j->part[p].w->row_size *
                                 (j->glu ? rows : j->first[p + 1] - j->first[p]);
                double per_unit = (double)LMP_MAX(bytes, (int64_t)1) / (double)units;
                int64_t lo = LMP_MAX((int64_t)1, (int64_t)(MM_TASK_MIN_BYTES / per_unit));
                int64_t hi = LMP_MAX((int64_t)1, (int64_t)(MM_TASK_BYTES / per_unit));
                lmp_threadpool_run_guided(c->pool, units, lo, hi, matmul_rows, j);
                return;
        }
        if (r16) {
                lmp_threadpool_run(c->pool, units, LMP_MAX((int64_t)1, units / (MM_GEMM_TASKS * nth)), matmul_rows,
                                   j);
                return;
        }
        /* Rows per task: enough tasks to balance, few enough to amortize. */
        int64_t grain = LMP_MAX((int64_t)1, rows / (MM_TASKS * nth));
        if (blas)
                grain = LMP_MAX(grain, (int64_t)16);
        /* bf16: the activations are shared, so small tasks cost nothing
         * more and balance the threads; whole 16-row blocks */
        if (bf16)
                grain = (LMP_MAX((int64_t)16, rows / (MM_GEMM_TASKS * nth)) + 15) / 16 * 16;
        /* The gemm kernels read the whole token block once per panel of a
         * few rows whatever the task size, so smaller tasks cost little and
         * even out the end of each product across threads; tasks of whole
         * panels (up to 8 rows) keep a partial one out of every task. */
        if (gemm) {
                grain = LMP_MAX((int64_t)MM_GEMM_ROW_ALIGN, rows / (MM_GEMM_TASKS * nth));
                grain = (grain + MM_GEMM_ROW_ALIGN - 1) / MM_GEMM_ROW_ALIGN * MM_GEMM_ROW_ALIGN;
        }
        lmp_threadpool_run(c->pool, rows, grain, matmul_rows, j);
}

/* out (n_tok, ld) <- in (n_tok, n_in) x w^T, columns [0, n_out). */
static void matmul(struct lmp_ctx *c, const struct lmp_weight *w, struct act *in, float *out,
                   int64_t ld) {
        struct matmul_job j = { .n_parts = 1, .n_tok = in->n_tok, .first = { 0, w->n_out } };
        matmul_prepare(c, w, in, out, ld, &j.part[0]);
        matmul_run(c, &j);
}

/* Q, K and V of one input in one run. */
static void matmul_qkv(struct lmp_ctx *c, const struct lmp_layer *L, struct act *in) {
        struct matmul_job j = { .n_parts = 3, .n_tok = in->n_tok };
        const struct lmp_weight *w[3] = { &L->wq, &L->wk, &L->wv };
        float *out[3] = { c->q, c->k, c->v };
        int64_t ld[3] = { c->q_dim, c->kv_dim, c->kv_dim };
        for (int p = 0; p < 3; p++) {
                matmul_prepare(c, w[p], in, out[p], ld[p], &j.part[p]);
                j.first[p + 1] = j.first[p] + w[p]->n_out;
        }
        matmul_run(c, &j);
}

/* hb <- act(in x gate^T) * (in x up^T), both (n_tok, n_ff), in one run. */
static void matmul_glu(struct lmp_ctx *c, const struct lmp_layer *L, struct act *in) {
        int64_t n_ff = c->m->hp.n_ff;
        struct matmul_job j = { .n_parts = 2, .n_tok = in->n_tok, .first = { 0, n_ff },
                                .glu = true, .gelu = c->m->arch->ffn_gelu };
        matmul_prepare(c, &L->ffn_gate, in, c->hb, n_ff, &j.part[0]);
        matmul_prepare(c, &L->ffn_up, in, c->hb2, n_ff, &j.part[1]);
        matmul_run(c, &j);
}

/* ------------------------------------------------------ elementwise ops */

/* out = x / rms(x) * weight, per row; the sum of squares in double as GGML
 * does. */
static void rmsnorm(float *out, const float *x, const float *weight, int64_t n_tok, int64_t n,
                    float eps) {
        for (int64_t t = 0; t < n_tok; t++) {
                const float *xr = x + t * n;
                float *o = out + t * n;
                double sum = 0.0;
                for (int64_t i = 0; i < n; i++)
                        sum += (double)(xr[i] * xr[i]);
                float mean = (float)(sum / (double)n);
                float scale = 1.0f / sqrtf(mean + eps);
                for (int64_t i = 0; i < n; i++)
                        o[i] = xr[i] * scale * weight[i];
        }
}

static void add_bias(float *x, const float *b, int64_t n_tok, int64_t n) {
        if (!b)
                return;
        for (int64_t t = 0; t < n_tok; t++)
                for (int64_t i = 0; i < n; i++)
                        x[t * n + i] += b[i];
}

static void add_into(float *x, const float *y, int64_t count) {
        for (int64_t i = 0; i < count; i++)
                x[i] += y[i];
}

static void scale_into(float *x, int64_t count, float s) {
        for (int64_t i = 0; i < count; i++)
                x[i] *= s;
}

/* M-RoPE (GGML's multi-section rope, not the vision kind): pair i turns
 * with the position of the axis its sector (i modulo the sections' sum)
 * falls in, every axis's angle advancing by theta_scale at every pair. The
 * fourth axis's position is 0, as llama.cpp gives it. */
static void mrope_row(const struct lmp_hparams *hp, const struct lmp_batch_entry *b, float *tab,
                      float theta_scale, float freq_scale, float mscale, const float *ff) {
        const uint32_t *sec = hp->rope_sections;
        const uint32_t s0 = sec[0], s1 = s0 + sec[1], s2 = s1 + sec[2], sect = s2 + sec[3];
        float th[LMP_ROPE_SECTIONS] = { (float)b->pos, (float)b->pos, (float)b->pos, 0.0f };
        if (b->rope_pos)
                for (int a = 0; a < LMP_ROPE_AXES; a++)
                        th[a] = (float)b->rope_pos[a];
        for (uint32_t i = 0; i < hp->n_rot / 2; i++) {
                uint32_t s = i % sect;
                float t = th[s < s0 ? 0 : s < s1 ? 1 : s < s2 ? 2 : 3];
                float x = freq_scale * (ff ? t / ff[i] : t);
                tab[2 * i] = cosf(x) * mscale;
                tab[2 * i + 1] = sinf(x) * mscale;
                for (int a = 0; a < LMP_ROPE_SECTIONS; a++)
                        th[a] *= theta_scale;
        }
}

/* cos/sin for each entry's position, pair by pair, computed the way GGML
 * does (theta multiplied by base^(-2/n_rot) step by step in float, divided
 * by the frequency factor, times the position scale; cos and sin times the
 * attention factor). */
static void rope_row(const struct lmp_ctx *c, float pos, float *tab, float base, float freq_scale,
                     float mscale) {
        const struct lmp_hparams *hp = &c->m->hp;
        const float *ff = c->rope_ff;
        float theta_scale = powf(base, -2.0f / (float)hp->n_rot);
        float theta = pos;
        for (uint32_t i = 0; i < hp->n_rot / 2; i++) {
                float th = freq_scale * (ff ? theta / ff[i] : theta);
                tab[2 * i] = cosf(th) * mscale;
                tab[2 * i + 1] = sinf(th) * mscale;
                theta *= theta_scale;
        }
}

static void rope_tables(const struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                        float *rope, float base, float freq_scale) {
        const struct lmp_hparams *hp = &c->m->hp;
        float theta_scale = powf(base, -2.0f / (float)hp->n_rot);
        for (uint32_t e = 0; e < n; e++) {
                float *tab = rope + (size_t)e * hp->n_rot;
                if (c->m->arch->mrope)
                        mrope_row(hp, &batch[e], tab, theta_scale, freq_scale, hp->rope_attn_factor, c->rope_ff);
                else
                        rope_row(c, (float)batch[e].pos, tab, base, freq_scale, hp->rope_attn_factor);
        }
}

/* Rotates n rows of n_heads heads (row stride `stride` floats) by the
 * table at rope + e * tab_stride for row e (tab_stride 0: one table for
 * every row). */
static void rope_apply(const struct lmp_ctx *c, const float *rope, size_t tab_stride, float *x, uint32_t n,
                       uint32_t n_heads, size_t stride) {
        const struct lmp_hparams *hp = &c->m->hp;
        uint32_t half = hp->n_rot / 2;
        for (uint32_t e = 0; e < n; e++) {
                const float *tab = rope + (size_t)e * tab_stride;
                for (uint32_t h = 0; h < n_heads; h++) {
                        float *v = x + (size_t)e * stride + (size_t)h * hp->head_dim;
                        for (uint32_t i = 0; i < half; i++) {
                                float cs = tab[2 * i], sn = tab[2 * i + 1];
                                uint32_t a, b;
                                if (c->m->arch->rope == LMP_ROPE_NEOX) {
                                        a = i;
                                        b = i + half;
                                } else {
                                        a = 2 * i;
                                        b = 2 * i + 1;
                                }
                                float x0 = v[a], x1 = v[b];
                                v[a] = x0 * cs - x1 * sn;
                                v[b] = x0 * sn + x1 * cs;
                        }
                }
        }
}

/* ------------------------------------------------ moving a sequence */

struct cut_job {
        struct lmp_ctx *c;
        int32_t seq;
        uint32_t p0, d, n;      /* positions [p0 + d, p0 + d + n) move to p0 */
        const float *tab, *tab_swa; /* rotation by -d, pure (no attention factor) */
};

static void cut_layers(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct cut_job *j = arg;
        struct lmp_ctx *c = j->c;
        const size_t hd = c->m->hp.head_dim, bytes = (size_t)j->n * hd * sizeof(float);
        for (int64_t l = begin; l < end; l++) {
                for (uint32_t h = 0; h < c->m->hp.n_head_kv; h++) {
                        float *k = cache_at(c, c->k_cache, j->seq, (uint32_t)l, h, (int32_t)j->p0);
                        float *v = cache_at(c, c->v_cache, j->seq, (uint32_t)l, h, (int32_t)j->p0);
                        memmove(k, k + (size_t)j->d * hd, bytes);
                        memmove(v, v + (size_t)j->d * hd, bytes);
                        rope_apply(c, c->m->layers[l].n_swa ? j->tab_swa : j->tab, 0, k, j->n, 1, hd);
                }
        }
}

/* M-RoPE is left out: an image's row and column axes would need their own
 * rotations, and its unused fourth axis none. */
bool lmp_ctx_can_cut(const struct lmp_ctx *c) {
        return !c->m->arch->encoder && !c->ring && c->m->arch->rope != LMP_ROPE_NONE && !c->m->arch->mrope;
}

int lmp_ctx_seq_cut(struct lmp_ctx *c, int32_t seq, uint32_t p0, uint32_t p1) {
        const struct lmp_hparams *hp = &c->m->hp;
        if (seq < 0 || (uint32_t)seq >= c->n_seq || c->m->arch->encoder || p0 > p1 ||
            p1 > c->seq_len[seq])
                return -EINVAL;
        if (p0 == p1)
                return (int)c->seq_len[seq];
        /* A ring cannot give up positions in the middle, and positions
         * without rotation cannot be moved by rotating them. */
        if (!lmp_ctx_can_cut(c))
                return -ENOTSUP;
        /* The decode scratch holds the tables (calls on a context do not
         * overlap). */
        struct cut_job j = { .c = c, .seq = seq, .p0 = p0, .d = p1 - p0, .n = c->seq_len[seq] - p1,
                             .tab = c->rope, .tab_swa = c->rope_swa };
        /* The rotation by -d, composed with the one each key has, gives the
         * rotation of its new position: the keys' angles differ only by d. */
        rope_row(c, -(float)j.d, c->rope, hp->rope_freq_base, hp->rope_freq_scale, 1.0f);
        if (c->rope_swa)
                rope_row(c, -(float)j.d, c->rope_swa, hp->rope_freq_base_swa, 1.0f, 1.0f);
        if (j.n)
                lmp_threadpool_run(c->pool, hp->n_layer, 1, cut_layers, &j);
        c->seq_len[seq] -= j.d;
        return (int)c->seq_len[seq];
}

/* SiLU of the gate times up, four lanes at a time with vecmath.h's
 * exp_vf4() (libm's expf is a call per value: 3% of a decode step went
 * there). */
static void swiglu(float *g, const float *u, int64_t count) {
        int64_t i = 0;
        for (; i + 4 <= count; i += 4) {
                vf4 x, y;
                memcpy(&x, g + i, sizeof(x));
                memcpy(&y, u + i, sizeof(y));
                x = x / (1.0f + exp_vf4(-x)) * y;
                memcpy(g + i, &x, sizeof(x));
        }
        for (; i < count; i++)
                g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* GELU (tanh approximation) of the gate times up: Gemma's gated FFN,
 * with vecmath.h's gelu_vf4() (x sigmoid(2u), which is 0.5 x (1 +
 * tanh(u))). */
static void geglu(float *g, const float *u, int64_t count) {
        const float a = 0.044715f, s = 0.79788456080286535587989211986876f; /* sqrt(2/pi) */
        int64_t i = 0;
        for (; i + 4 <= count; i += 4) {
                vf4 x, y;
                memcpy(&x, g + i, sizeof(x));
                memcpy(&y, u + i, sizeof(y));
                x = gelu_vf4(x) * y;
                memcpy(g + i, &x, sizeof(x));
        }
        for (; i < count; i++) {
                float v = g[i];
                g[i] = 0.5f * v * (1.0f + tanhf(s * v * (1.0f + a * v * v))) * u[i];
        }
}

/* cap * tanh(x / cap): Gemma's final logit softcapping. */
static void softcap(float *x, int64_t count, float cap) {
        for (int64_t i = 0; i < count; i++)
                x[i] = cap * tanhf(x[i] / cap);
}

/* The row-wise ops above, split across the pool (rmsnorm by token rows: a
 * single row runs in the calling thread). */
struct rows_job {
        float *out;
        const float *x;
        const float *w;         /* rmsnorm weight */
        int64_t n;              /* row length */
        float eps;
};

static void rmsnorm_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct rows_job *j = arg;
        rmsnorm(j->out + begin * j->n, j->x + begin * j->n, j->w, end - begin, j->n, j->eps);
}

static int64_t row_grain(const struct lmp_ctx *c, int64_t n_rows) {
        return LMP_MAX((int64_t)1, n_rows / (2 * lmp_threadpool_size(c->pool)));
}

static void rmsnorm_par(struct lmp_ctx *c, float *out, const float *x, const float *w,
                        int64_t n_tok, int64_t n) {
        struct rows_job j = { .out = out, .x = x, .w = w, .n = n, .eps = c->m->hp.norm_eps };
        lmp_threadpool_run(c->pool, n_tok, row_grain(c, n_tok), rmsnorm_rows, &j);
}

/* ------------------------------------------------------------- attention */

struct att_job {
        struct lmp_ctx *c;
        uint32_t layer;
        float scale;
        bool causal;            /* over the KV cache; else within the batch's run */
        uint32_t n_swa;         /* causal: a row sees its last n_swa positions; 0: all */
};

/* n rows of len floats, from src (ld_src floats apart) to dst (ld_dst). */
static void copy_rows(float *dst, size_t ld_dst, const float *src, size_t ld_src, int n, size_t len) {
        for (int i = 0; i < n; i++)
                memcpy(dst + (size_t)i * ld_dst, src + (size_t)i * ld_src, len * sizeof(float));
}

static void attend(void *arg, int64_t begin, int64_t end, int tid) {
        const struct att_job *j = arg;
        struct lmp_ctx *c = j->c;
        const struct lmp_hparams *hp = &c->m->hp;
        int hd = (int)hp->head_dim;
        uint32_t group = hp->n_head / hp->n_head_kv;
        float *s = c->scores + (size_t)tid * c->att_rows * c->n_ctx;
        float *qp = c->att_stack ? c->att_pack + (size_t)tid * 2 * c->att_rows * hd : NULL;
        float *op = qp ? qp + (size_t)c->att_rows * hd : NULL;
        const struct lmp_attn_kernels *ak = lmp_attn_kernels(c->m->isa);

        for (int64_t ti = begin; ti < end; ti++) {
                const struct att_task *t = &c->tasks[ti];
                const struct run *r = &c->runs[t->run];
                int32_t e0 = r->first + t->row0;        /* first batch entry of the tile */
                int32_t p0 = r->pos0 + t->row0;         /* its position */
                uint32_t kvh = (uint32_t)t->head / group;
                const float *q = c->q + (size_t)e0 * c->q_dim + (size_t)t->head * hd;
                int L;                                  /* keys the tile's last row sees */
                int k0 = 0;                             /* position of the first of them */
                const float *k, *v;
                size_t ldkv;                            /* floats from one key (value) to the next */
                if (j->causal) {        /* the sequence's cache up to the tile's last row */
                        /* from the first row's window on, when windowed */
                        if (j->n_swa && p0 >= (int)j->n_swa)
                                k0 = p0 - (int)j->n_swa + 1;
                        L = p0 + t->n_rows - k0;
                        k = cache_at(c, c->k_cache, r->seq, j->layer, kvh, k0);
                        v = cache_at(c, c->v_cache, r->seq, j->layer, kvh, k0);
                        ldkv = (size_t)hd;
                } else {                /* the whole sequence, which is the run itself */
                        L = r->n;
                        k = c->k + (size_t)r->first * c->kv_dim + (size_t)kvh * hd;
                        v = c->v + (size_t)r->first * c->kv_dim + (size_t)kvh * hd;
                        ldkv = c->kv_dim;
                }
                float *o = c->att + (size_t)e0 * c->q_dim + (size_t)t->head * hd;
                /* Rows of the product: tokens of one head, the heads of one
                 * token (adjacent in q and att), or the heads of several
                 * tokens, row token * n_heads + head, copied together. */
                int nh = t->n_heads;
                int m = t->n_rows * nh;
                int ld = nh > 1 ? hd : (int)c->q_dim;
                bool stacked = nh > 1 && t->n_rows > 1;
                float *out = o;
                if (stacked) {
                        copy_rows(qp, (size_t)nh * hd, q, c->q_dim, t->n_rows, (size_t)nh * hd);
                        q = qp;
                        out = op;
                }

                /* s (m, L) = q (m, hd) k^T (hd, L); a few rows (a decode step)
                 * read the cache in place, more pay for sgemm's packing */
                bool own = m <= ATT_OWN_ROWS;
                if (own)
                        ak->scores(hd, m, L, q, (size_t)ld, k, ldkv, s, (size_t)L);
                else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, L, hd, 1.0f, q, ld, k,
                                    (int)ldkv, 0.0f, s, L);
                for (int i = 0; i < m; i++) {
                        float *row = s + (size_t)i * L;
                        /* causal: keys [pos - n_swa + 1 or 0, pos]; else all of them */
                        int pos = p0 + i / nh;
                        int valid = j->causal ? pos + 1 - k0 : L;
                        int lo = 0;
                        if (j->causal && j->n_swa && pos >= (int)j->n_swa)
                                lo = pos - (int)j->n_swa + 1 - k0;
                        for (int kk = 0; kk < lo; kk++)
                                row[kk] = 0.0f;
                        ak->softmax(row + lo, valid - lo, j->scale);
                        for (int kk = valid; kk < L; kk++)
                                row[kk] = 0.0f;
                }
                /* o (m, hd) = s (m, L) v (L, hd) */
                if (own)
                        ak->wsum(hd, m, L, s, (size_t)L, v, ldkv, out, (size_t)ld);
                else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, L, 1.0f, s, L, v,
                                    (int)ldkv, 0.0f, out, ld);
                if (stacked)
                        copy_rows(o, c->q_dim, op, (size_t)nh * hd, t->n_rows, (size_t)nh * hd);
        }
}

/* ----------------------------------------------------------------- batch */

/* What every batch must hold, a decoder's or an encoder's: 1 to n_batch
 * entries, each with a token of the vocabulary, a sequence of the context
 * and a position within it. Clears seq_last of the batch's sequences. */
static int check_entries(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                         struct lmp_error *err) {
        if (n == 0 || n > c->n_batch)
                return lmp_error_set(err, -EINVAL, "batch of %u entries (1 to %u allowed)", n,
                                     c->n_batch);
        for (uint32_t e = 0; e < n; e++)
                if (batch[e].seq >= 0 && (uint32_t)batch[e].seq < c->n_seq)
                        c->seq_last[batch[e].seq] = -1;
        const struct lmp_arch *a = c->m->arch;
        for (uint32_t e = 0; e < n; e++) {
                const struct lmp_batch_entry *b = &batch[e];
                if (b->embd && a->encoder)
                        return lmp_error_set(err, -EINVAL, "batch entry %u: an encoder takes tokens only", e);
                if (b->rope_pos && !a->mrope)
                        return lmp_error_set(err, -EINVAL, "batch entry %u: per-axis positions for a "
                                             "model without M-RoPE (%s)", e, a->name);
                if (!b->embd && (b->token < 0 || (uint32_t)b->token >= c->m->hp.n_vocab))
                        return lmp_error_set(err, -EINVAL, "batch entry %u: token %d outside the vocabulary (%u)",
                                             e, b->token, c->m->hp.n_vocab);
                if (b->seq < 0 || (uint32_t)b->seq >= c->n_seq)
                        return lmp_error_set(err, -EINVAL, "batch entry %u: sequence %d outside [0, %u)",
                                             e, b->seq, c->n_seq);
                if (b->pos < 0)
                        return lmp_error_set(err, -EINVAL, "batch entry %u: negative position %d",
                                             e, b->pos);
                if ((uint32_t)b->pos >= c->n_ctx)
                        return lmp_error_set(err, -E2BIG,
                                             "batch entry %u: position %d past the context length %u",
                                             e, b->pos, c->n_ctx);
        }
        return 0;
}

/* A decoder's batch also continues each sequence where it stands. */
static int check_batch(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                       float *ret_logits, struct lmp_error *err) {
        int r = check_entries(c, batch, n, err);
        if (r < 0)
                return r;
        for (uint32_t e = 0; e < n; e++) {
                const struct lmp_batch_entry *b = &batch[e];
                int32_t last = c->seq_last[b->seq];
                if (last < 0 ? (uint32_t)b->pos > c->seq_len[b->seq] : b->pos != last + 1)
                        return lmp_error_set(err, -EINVAL,
                                             "batch entry %u: sequence %d position %d does not follow %d",
                                             e, b->seq, b->pos,
                                             last < 0 ? (int)c->seq_len[b->seq] - 1 : last);
                if (last < 0 && !can_resume(c, c->seq_len[b->seq], (uint32_t)b->pos))
                        return lmp_error_set(err, -EINVAL,
                                             "batch entry %u: sequence %d cannot go on from position %d: "
                                             "its windowed layers hold only the last %u of %u positions "
                                             "(truncate it to 0)", e, b->seq, b->pos, c->ring,
                                             c->seq_len[b->seq]);
                c->seq_last[b->seq] = b->pos;
                if (b->logits && !ret_logits)
                        return lmp_error_set(err, -EINVAL, "batch entry %u wants logits but there is no buffer", e);
        }
        return 0;
}

/* Splits the batch into runs and the runs into attention tasks. */
static uint32_t plan_attention(struct lmp_ctx *c, const struct lmp_batch_entry *batch,
                               uint32_t n, uint32_t *ret_n_tasks) {
        uint32_t n_runs = 0;
        for (uint32_t e = 0; e < n; e++) {
                struct run *prev = n_runs ? &c->runs[n_runs - 1] : NULL;
                if (prev && prev->seq == batch[e].seq && prev->pos0 + prev->n == batch[e].pos) {
                        prev->n++;
                        continue;
                }
                c->runs[n_runs++] = (struct run){
                        .first = (int32_t)e, .n = 1, .seq = batch[e].seq, .pos0 = batch[e].pos
                };
        }
        const struct lmp_hparams *hp = &c->m->hp;
        uint32_t group = hp->n_head / hp->n_head_kv;
        uint32_t n_tasks = 0;
        for (uint32_t r = 0; r < n_runs; r++) {
                if (c->runs[r].n == 1 && group > 1 && group <= ATT_TILE) {
                        for (uint32_t h = 0; h < hp->n_head; h += group)
                                c->tasks[n_tasks++] = (struct att_task){
                                        .run = (int32_t)r, .row0 = 0, .n_rows = 1,
                                        .head = (int32_t)h, .n_heads = (int32_t)group,
                                };
                        continue;
                }
                if (c->att_stack && c->runs[r].n > 1) {
                        /* Tiles of fewer tokens while there are fewer tasks
                         * than threads, down to a head tile's rows. */
                        uint32_t st = c->att_stack;
                        uint32_t nth = (uint32_t)lmp_threadpool_size(c->pool);
                        while (st / 2 * group >= ATT_TILE && ((uint32_t)c->runs[r].n + st - 1) / st * hp->n_head_kv < nth)
                                st /= 2;
                        for (int32_t row0 = 0; row0 < c->runs[r].n; row0 += (int32_t)st)
                                for (uint32_t h = 0; h < hp->n_head; h += group)
                                        c->tasks[n_tasks++] = (struct att_task){
                                                .run = (int32_t)r,
                                                .row0 = row0,
                                                .n_rows = LMP_MIN((int32_t)st, c->runs[r].n - row0),
                                                .head = (int32_t)h,
                                                .n_heads = (int32_t)group,
                                        };
                        continue;
                }
                for (int32_t row0 = 0; row0 < c->runs[r].n; row0 += ATT_TILE)
                        for (uint32_t h = 0; h < hp->n_head; h++)
                                c->tasks[n_tasks++] = (struct att_task){
                                        .run = (int32_t)r,
                                        .row0 = row0,
                                        .n_rows = LMP_MIN(ATT_TILE, c->runs[r].n - row0),
                                        .head = (int32_t)h,
                                        .n_heads = 1,
                                };
        }
        *ret_n_tasks = n_tasks;
        return n_runs;
}

int lmp_ctx_decode(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                   float *ret_logits, struct lmp_error *err) {
        if (c->m->arch->encoder)
                return lmp_error_set(err, -EINVAL, "an encoder model has no logits (lmp_ctx_encode)");
        int r = check_batch(c, batch, n, ret_logits, err);
        if (r < 0)
                return r;
        const struct lmp_model *m = c->m;
        const struct lmp_hparams *hp = &m->hp;
        const int64_t E = hp->n_embd;
        int64_t T = n;          /* rows in flight: all entries, then those wanting logits */
        int64_t n_out = 0;
        for (uint32_t e = 0; e < n; e++)
                n_out += batch[e].logits;
        uint32_t n_tasks;
        plan_attention(c, batch, n, &n_tasks);
        rope_tables(c, batch, n, c->rope, hp->rope_freq_base, hp->rope_freq_scale);
        if (c->rope_swa)        /* windowed layers: their own base, no position scaling */
                rope_tables(c, batch, n, c->rope_swa, hp->rope_freq_base_swa, 1.0f);

        /* x (T, n_embd) = token embeddings, or the entry's own (an image
         * token's); Gemma: times sqrt(n_embd) */
        const struct lmp_weight *te = &m->tok_embd;
        for (uint32_t e = 0; e < n; e++) {
                if (batch[e].embd)
                        memcpy(c->x + e * E, batch[e].embd, (size_t)E * sizeof(float));
                else
                        lmp_weight_row(te, batch[e].token, c->x + e * E);
        }
        if (m->arch->embd_scale)
                scale_into(c->x, T * E, sqrtf((float)E));

        for (uint32_t l = 0; l < hp->n_layer; l++) {
                const struct lmp_layer *L = &m->layers[l];

                /* attention block */
                rmsnorm_par(c, c->xb, c->x, L->attn_norm, T, E);
                struct act in = { .x = c->xb, .n_tok = T, .n_in = E };
                matmul_qkv(c, L, &in);          /* q (T, q_dim), k and v (T, kv_dim) */
                add_bias(c->q, L->bq, T, c->q_dim);
                add_bias(c->k, L->bk, T, c->kv_dim);
                add_bias(c->v, L->bv, T, c->kv_dim);
                if (L->attn_q_norm) {   /* each head's q and k: (T * n_head[_kv], head_dim) */
                        rmsnorm_par(c, c->q, c->q, L->attn_q_norm, T * hp->n_head, hp->head_dim);
                        rmsnorm_par(c, c->k, c->k, L->attn_k_norm, T * hp->n_head_kv, hp->head_dim);
                }
                const float *rope = L->n_swa ? c->rope_swa : c->rope;
                rope_apply(c, rope, hp->n_rot, c->q, n, hp->n_head, c->q_dim);
                rope_apply(c, rope, hp->n_rot, c->k, n, hp->n_head_kv, c->kv_dim);
                for (uint32_t e = 0; e < n; e++)
                        cache_store(c, batch[e].seq, l, batch[e].pos, c->k + (size_t)e * c->kv_dim,
                                    c->v + (size_t)e * c->kv_dim);
                struct att_job aj = { .c = c, .layer = l, .scale = hp->att_scale, .causal = true,
                                      .n_swa = L->n_swa };
                lmp_threadpool_run(c->pool, n_tasks, 1, attend, &aj);      /* att (T, q_dim) */
                if (l == hp->n_layer - 1 && n_out < T) {
                        /* Past the last attention, only the rows that want
                         * logits matter: move them to the front, in order. */
                        int64_t k = 0;
                        for (uint32_t e = 0; e < n; e++) {
                                if (!batch[e].logits)
                                        continue;
                                if (k != e) {
                                        memcpy(c->att + k * c->q_dim, c->att + e * (int64_t)c->q_dim,
                                               c->q_dim * sizeof(float));
                                        memcpy(c->x + k * E, c->x + e * E, (size_t)E * sizeof(float));
                                }
                                k++;
                        }
                        T = n_out;
                        if (T == 0)
                                break;
                }
                struct act ain = { .x = c->att, .n_tok = T, .n_in = c->q_dim };
                matmul(c, &L->wo, &ain, c->xb, E);              /* (T, n_embd) */
                add_bias(c->xb, L->bo, T, E);
                if (L->post_attn_norm)
                        rmsnorm_par(c, c->xb, c->xb, L->post_attn_norm, T, E);
                add_into(c->x, c->xb, T * E);

                /* feed-forward block */
                rmsnorm_par(c, c->xb, c->x, L->ffn_norm, T, E);
                struct act fin = { .x = c->xb, .n_tok = T, .n_in = E };
                matmul_glu(c, L, &fin);         /* hb (T, n_ff): SiLU or GELU gate */
                struct act hin = { .x = c->hb, .n_tok = T, .n_in = hp->n_ff };
                matmul(c, &L->ffn_down, &hin, c->xb, E);        /* (T, n_embd) */
                if (L->post_ffw_norm)
                        rmsnorm_par(c, c->xb, c->xb, L->post_ffw_norm, T, E);
                add_into(c->x, c->xb, T * E);
        }

        /* Logits for the entries that want them (now the first n_out rows). */
        if (n_out > 0) {
                rmsnorm_par(c, c->xb, c->x, m->output_norm, n_out, E);
                struct act oin = { .x = c->xb, .n_tok = n_out, .n_in = E };
                matmul(c, &m->output, &oin, ret_logits, hp->n_vocab);   /* (n_out, n_vocab) */
                if (hp->logit_softcap > 0.0f)
                        softcap(ret_logits, n_out * hp->n_vocab, hp->logit_softcap);
        }

        for (uint32_t e = 0; e < n; e++)
                c->seq_len[batch[e].seq] = (uint32_t)batch[e].pos + 1;
        return 0;
}

/* ------------------------------------------------------------- encoders */

/* The batch of an encoder: each sequence whole, once, from position 0. */
static int check_encode_batch(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                              const float *ret_embd, struct lmp_error *err) {
        if (!ret_embd)
                return lmp_error_set(err, -EINVAL, "no buffer for the embeddings");
        int r = check_entries(c, batch, n, err);
        if (r < 0)
                return r;
        for (uint32_t e = 0; e < n; e++) {
                const struct lmp_batch_entry *b = &batch[e];
                bool starts = e == 0 || batch[e - 1].seq != b->seq;
                if (starts && c->seq_last[b->seq] != -1)
                        return lmp_error_set(err, -EINVAL, "batch entry %u: sequence %d appears twice",
                                             e, b->seq);
                if (starts ? b->pos != 0 : b->pos != batch[e - 1].pos + 1)
                        return lmp_error_set(err, -EINVAL,
                                             "batch entry %u: sequence %d position %d (a sequence is "
                                             "whole, from 0)", e, b->seq, b->pos);
                c->seq_last[b->seq] = b->pos;
        }
        return 0;
}

/* GELU, tanh approximation: gelu_vf4() (model/vecmath.h). */
static void gelu(float *x, int64_t count) {
        vf4 v;
        int64_t i = 0;
        for (; i + 4 <= count; i += 4) {
                memcpy(&v, x + i, sizeof(v));
                v = gelu_vf4(v);
                memcpy(x + i, &v, sizeof(v));
        }
        if (i < count) {
                size_t rest = (size_t)(count - i) * sizeof(float);
                v = vf4_set(0.0f);
                memcpy(&v, x + i, rest);
                v = gelu_vf4(v);
                memcpy(x + i, &v, rest);
        }
}

struct norm_job {
        float *x;               /* in place, (n_tok, n) */
        const float *w, *b;
        int64_t n;
        float eps;
};

static void layernorm_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct norm_job *j = arg;
        layernorm(j->x + begin * j->n, j->x + begin * j->n, j->w, j->b, end - begin, j->n, j->eps);
}

static void layernorm_par(struct lmp_ctx *c, float *x, const float *w, const float *b, int64_t n_tok,
                          int64_t n) {
        struct norm_job j = { .x = x, .w = w, .b = b, .n = n, .eps = c->m->hp.norm_eps };
        lmp_threadpool_run(c->pool, n_tok, row_grain(c, n_tok), layernorm_rows, &j);
}

static void gelu_elems(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        gelu((float *)arg + begin, end - begin);
}

/* Elementwise, so split by elements, not rows. */
#define GELU_MIN_GRAIN 2048

static void gelu_par(struct lmp_ctx *c, float *x, int64_t count) {
        int64_t grain = LMP_MAX((int64_t)GELU_MIN_GRAIN, count / (4 * lmp_threadpool_size(c->pool)));
        lmp_threadpool_run(c->pool, count, grain, gelu_elems, x);
}

/* An encoder's products: out (T, ld) <- in (T, n_in) x w^T + bias (NULL:
 * none), in place of out's values (ENC_SET), added to them (ENC_ADD: the
 * residual stream), or in place of them and then through GELU (ENC_GELU:
 * the feed-forward's up projection); ld is w's n_out.
 *
 * On a wide batch (a few short texts already make hundreds of tokens, from
 * WIDE_MIN_BATCH on) a float weight (wide_type()) goes through OpenBLAS's
 * sgemm: each thread converts rows of its range to f32, WIDE_PANEL_FLOATS
 * at a time (a panel that stays in cache; f32 rows are used as they are), and
 * multiplies the batch's f32 activations by them, into an output that
 * already holds the bias (and the residual), so that sgemm adds to it
 * (beta 1) and no pass of its own zeroes it or adds the bias; GELU follows
 * on the panel's outputs while they are in cache. The conversion is one
 * pass over the rows, which the batch's tokens share; sgemm runs at about
 * two thirds of the FMA units' peak, where the f16 gemm kernel reaches a
 * third of it (it converts the weights in its inner loop). The activations stay f32, as on the f32
 * weights' path. The weights are read, not copied beyond the panel. */
enum enc_out { ENC_SET, ENC_ADD, ENC_GELU };

struct wide_job {
        const struct lmp_ctx *c;        /* the panels */
        const struct lmp_weight *w;
        const float *y;                 /* (n_tok, n_in) f32 activations */
        int64_t n_tok;
        float *out;                     /* (n_tok, ld) */
        int64_t ld;
        const float *bias;              /* (n_out), or NULL */
        enum enc_out how;
};

static void gelu_act(const void *arg, float *x, int64_t n) {
        (void)arg;
        gelu(x, n);
}

static void matmul_rows_wide(void *arg, int64_t begin, int64_t end, int tid) {
        const struct wide_job *j = arg;
        const struct lmp_ctx *c = j->c;
        lmp_weight_rows_sgemm(j->w, 1, j->y, j->n_tok, j->out, j->ld, j->bias, j->how == ENC_ADD,
                              c->wpanel + (size_t)tid * c->wpanel_floats, c->wpanel_floats, begin, end,
                              j->how == ENC_GELU ? gelu_act : NULL, NULL);
}

/* Float weights: their own gemm kernels convert every weight in the inner
 * loop. The block-quantized types' integer kernels are faster on wide
 * batches than their f32 panels through sgemm (measured on q8_0). */
static bool wide_type(enum lmp_type t) {
        return t == LMP_TYPE_F32 || t == LMP_TYPE_F16 || t == LMP_TYPE_BF16;
}

static void matmul_enc(struct lmp_ctx *c, const struct lmp_weight *w, struct act *in, const float *bias,
                       float *out, int64_t ld, enum enc_out how) {
        const int64_t T = in->n_tok;
        if (T < WIDE_MIN_BATCH || !wide_type(w->type)) {
                /* the weight type's own kernels; the scratch xb for a sum */
                float *dst = how == ENC_ADD ? c->xb : out;
                matmul(c, w, in, dst, ld);
                add_bias(dst, bias, T, w->n_out);
                if (how == ENC_ADD)
                        add_into(out, dst, T * ld);
                else if (how == ENC_GELU)
                        gelu_par(c, out, T * ld);
                return;
        }
        int nth = lmp_threadpool_size(c->pool);
        struct wide_job j = {
                .c = c, .w = w, .y = in->x, .n_tok = T, .out = out, .ld = ld, .bias = bias, .how = how
        };
        /* two tasks per thread, of whole 16-row blocks */
        int64_t grain = (w->n_out + 2 * nth - 1) / (2 * nth);
        grain = LMP_MAX((int64_t)16, (grain + 15) / 16 * 16);
        lmp_threadpool_run(c->pool, w->n_out, grain, matmul_rows_wide, &j);
}

/* x (T, E) <- row `row` of w (any type) added to each of x's rows at the
 * batch's entries; tmp holds one converted row per entry. */
static void add_embedding_rows(const struct lmp_weight *w, const struct lmp_batch_entry *batch,
                               uint32_t n, bool by_pos, float *x, float *tmp, int64_t E) {
        for (uint32_t e = 0; e < n; e++) {
                size_t row = by_pos ? (size_t)batch[e].pos : 0;
                lmp_weight_row(w, (int64_t)row, tmp + e * E);
        }
        add_into(x, tmp, (int64_t)n * E);
}

/* One vector per run (sequence) from the rows of x, or every row. */
static void pool(const struct lmp_ctx *c, const float *x, uint32_t n, uint32_t n_runs, float *out) {
        const int64_t E = c->m->hp.n_embd;
        enum lmp_pooling p = c->m->hp.pooling;
        if (p == LMP_POOLING_NONE) {
                memcpy(out, x, (size_t)n * (size_t)E * sizeof(float));
                return;
        }
        for (uint32_t k = 0; k < n_runs; k++) {
                const struct run *r = &c->runs[k];
                float *o = out + (size_t)k * E;
                if (p == LMP_POOLING_CLS || p == LMP_POOLING_LAST) {
                        int32_t row = r->first + (p == LMP_POOLING_LAST ? r->n - 1 : 0);
                        memcpy(o, x + (size_t)row * E, (size_t)E * sizeof(float));
                        continue;
                }
                float inv = 1.0f / (float)r->n;
                for (int64_t i = 0; i < E; i++) {
                        float s = 0.0f;
                        for (int32_t t = 0; t < r->n; t++)
                                s += x[(size_t)(r->first + t) * E + i] * inv;
                        o[i] = s;
                }
        }
}

int lmp_ctx_encode(struct lmp_ctx *c, const struct lmp_batch_entry *batch, uint32_t n,
                   float *ret_embd, struct lmp_error *err) {
        const struct lmp_model *m = c->m;
        if (!m->arch->encoder)
                return lmp_error_set(err, -EINVAL, "a decoder model has no embeddings (lmp_ctx_decode)");
        int r = check_encode_batch(c, batch, n, ret_embd, err);
        if (r < 0)
                return r;
        const struct lmp_hparams *hp = &m->hp;
        const int64_t E = hp->n_embd, T = n;
        uint32_t n_tasks;
        uint32_t n_runs = plan_attention(c, batch, n, &n_tasks);

        /* x (T, n_embd) = token + token type 0 + position embeddings, normalized */
        const struct lmp_weight *te = &m->tok_embd;
        for (uint32_t e = 0; e < n; e++)
                lmp_weight_row(te, batch[e].token, c->x + e * E);
        add_embedding_rows(&m->type_embd, batch, n, false, c->x, c->xb, E);
        add_embedding_rows(&m->pos_embd, batch, n, true, c->x, c->xb, E);
        layernorm_par(c, c->x, m->embd_norm, m->embd_norm_b, T, E);

        for (uint32_t l = 0; l < hp->n_layer; l++) {
                const struct lmp_layer *L = &m->layers[l];

                /* attention block: within each sequence, then residual and LayerNorm */
                struct act in = { .x = c->x, .n_tok = T, .n_in = E };
                matmul_enc(c, &L->wq, &in, L->bq, c->q, c->q_dim, ENC_SET);             /* (T, q_dim) */
                matmul_enc(c, &L->wk, &in, L->bk, c->k, c->kv_dim, ENC_SET);            /* (T, kv_dim) */
                matmul_enc(c, &L->wv, &in, L->bv, c->v, c->kv_dim, ENC_SET);            /* (T, kv_dim) */
                struct att_job aj = { .c = c, .layer = l, .scale = 1.0f / sqrtf((float)hp->head_dim),
                                      .causal = false };
                lmp_threadpool_run(c->pool, n_tasks, 1, attend, &aj);      /* att (T, q_dim) */
                struct act ain = { .x = c->att, .n_tok = T, .n_in = c->q_dim };
                matmul_enc(c, &L->wo, &ain, L->bo, c->x, E, ENC_ADD);                   /* x (T, n_embd) += */
                layernorm_par(c, c->x, L->attn_out_norm, L->attn_out_norm_b, T, E);

                /* feed-forward block: GELU, then residual and LayerNorm */
                struct act fin = { .x = c->x, .n_tok = T, .n_in = E };
                matmul_enc(c, &L->ffn_up, &fin, L->b_up, c->hb, hp->n_ff, ENC_GELU);    /* (T, n_ff) */
                struct act hin = { .x = c->hb, .n_tok = T, .n_in = hp->n_ff };
                matmul_enc(c, &L->ffn_down, &hin, L->b_down, c->x, E, ENC_ADD);         /* x (T, n_embd) += */
                layernorm_par(c, c->x, L->layer_out_norm, L->layer_out_norm_b, T, E);
        }

        pool(c, c->x, n, n_runs, ret_embd);     /* (n_runs or T, n_embd) */
        return 0;
}

/* `lmpool bench MODEL... [-p 128,512] [-n 64] [-d 0,1024] [-b 1,4] [-r 3]
 * [-t 1,2] [--json] [--probe-mib N]`: the engine's speed in llama-bench's terms, so
 * that the two tables can be read side by side. For each model, thread
 * count and test it prints one row of llama-bench's markdown table (model,
 * size, params, threads, test, t/s as mean ± sample standard deviation over
 * the repetitions), or with --json one JSON line per row.
 *
 * Tests, as llama-bench runs them: ppP evaluates a prompt of P random
 * tokens as one batch (in batches of 512 when longer) from an empty cache;
 * tgN decodes N tokens one at a time from an empty cache, each with its
 * logits. With -d D (D > 0) each single-sequence test first fills the
 * cache with D random tokens, unmeasured, and then runs at positions D on
 * (rows "ppP @ dD" and "tgN @ dD", llama-bench's -d): what a conversation's
 * later turns cost, whose tokens attend to all that came before. With
 * -b S (S > 1) a row is batched: S sequences each prefill a prompt of
 * their own of the first -p size (row "ppP xS", all prompts
 * packed into 512-entry batches), then N steps each decode one token of
 * every sequence in ONE lmp_ctx_decode call (row "tgN xS"); t/s is the
 * aggregate over the sequences. Every test runs once unmeasured first (a
 * short prompt or one step: pages in the weights and wakes the threads).
 * Generation rows' JSON also gives the fastest single step (step_ms_min):
 * on a shared machine the mean moves with the other processes, the
 * fastest step much less, so A/B comparisons there read it first.
 *
 * Before the models, a memory-bandwidth probe (common/membw.h) measures
 * the streaming read rate with each thread count; each generation row then
 * reports the weight traffic it implies (steps/s x bytes of weights a step
 * reads) and its share of that ceiling. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "client/commands.h"
#include "common/args.h"
#include "common/clock.h"
#include "common/macros.h"
#include "common/membw.h"
#include "model/model.h"
#include "store/store.h"

#define MAX_MODELS 64
#define MAX_LIST 16
#define MAX_TOKENS 16384        /* -p and -n values */
#define MAX_SEQS 128            /* -b values */
#define MAX_REPS 100
#define PROMPT_BATCH 512        /* entries per decode call of a prompt */
#define WARMUP_PROMPT 32
#define PROBE_PASSES 5

struct list {
        int v[MAX_LIST];
        int n;
};

struct opts {
        const char *models[MAX_MODELS];
        int n_models;
        struct list pp, tg, depth, seqs, threads;
        int reps;
        int probe_mib;          /* 0: no probe */
        bool json;
        const char *layout;     /* "store" (as lmpoold serves it) or "file" */
};

struct row_stats {
        double mean, sd;
        double step_min;        /* generation rows: the fastest decode step, seconds */
        double samples[MAX_REPS];
        int n;
};

/* What the bench of one model needs besides its context. */
struct bench_model {
        const char *path;
        char name[128];
        uint64_t size;          /* bytes of tensor data */
        uint64_t n_params;
        uint64_t step_bytes;    /* weight bytes one decode step reads */
        struct lmp_store *store;        /* --layout store */
        struct lmp_gguf *gguf;
        struct lmp_model *model;
};

static void usage(FILE *f) {
        fprintf(f,
                "usage: lmpool bench MODEL... [-p LIST] [-n LIST] [-d LIST] [-b LIST] [-r N] [-t LIST]\n"
                "                    [--json] [--probe-mib N] [--layout store|file]\n"
                "Measures prompt processing and generation speed, as llama-bench does.\n"
                "LIST is comma-separated (e.g. -p 128,512); --opt=value works too.\n"
                "  -p, --n-prompt LIST    prompt sizes, 0 to %d; 0 skips (default 128,512)\n"
                "  -n, --n-gen LIST       tokens to generate, 0 to %d; 0 skips (default 64)\n"
                "  -d, --n-depth LIST     tokens already in the cache before each single-sequence\n"
                "                         test, 0 to %d, filled unmeasured (default 0)\n"
                "  -b, --seqs LIST        sequences decoded together in each step, 1 to %d (default 1);\n"
                "                         S > 1 prefills S prompts of the first -p size, then decodes\n"
                "                         one token of every sequence per call; t/s is the aggregate\n"
                "  -r, --repetitions N    runs per test, 1 to %d (default 3)\n"
                "  -t, --threads LIST     thread counts, 1 to %d (default: one per CPU)\n"
                "  --json                 one JSON line per row instead of the table\n"
                "  --probe-mib N          bandwidth probe buffer in MiB, 64 to 65536, or 0 for no\n"
                "                         probe (default 1024)\n"
                "  --layout store|file    the weights as lmpoold serves them, copied into a memfd\n"
                "                         store with q4_K matrices repacked where the CPU has\n"
                "                         AVX-512 (default), or mapped as the file lays them out\n"
                "lmpool bench --server --model NAME ... measures a running server under a chat\n"
                "load instead (lmpool bench --server --help).\n",
                MAX_TOKENS, MAX_TOKENS, MAX_TOKENS, MAX_SEQS, MAX_REPS, LMP_THREADPOOL_MAX);
}

static int parse_int(const char *s, int lo, int hi, int *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return -EINVAL;
        *ret = (int)v;
        return 0;
}

/* optarg "128,512" -> {128, 512}; every element in [lo, hi]. */
static int parse_list(const struct lmp_args *a, int lo, int hi, struct list *ret) {
        struct list l = { .n = 0 };
        const char *p = optarg;
        for (;;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                char buf[32];
                if (l.n == MAX_LIST) {
                        lmp_args_bad_value(a, "at most %d values", MAX_LIST);
                        return -EINVAL;
                }
                if (len == 0 || len >= sizeof(buf))
                        goto bad;
                memcpy(buf, p, len);
                buf[len] = '\0';
                if (parse_int(buf, lo, hi, &l.v[l.n]) < 0)
                        goto bad;
                l.n++;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = l;
        return 0;
bad:
        lmp_args_bad_value(a, "expected a comma-separated list of integers from %d to %d", lo, hi);
        return -EINVAL;
}

static int list_opt(struct lmp_args *a, const struct lmp_opt *o) {
        if (parse_list(a, (int)o->lo, (int)o->hi, o->ret) < 0)
                return LMP_EXIT_USAGE;
        return LMP_ARGS_GO;
}

/* The memory bandwidth probe's size: 0 turns it off; below 64 MiB the
 * caches would answer. */
static int probe_mib(struct lmp_args *a, const struct lmp_opt *o) {
        int mib;
        if (parse_int(optarg, 0, 65536, &mib) < 0 || (mib > 0 && mib < 64))
                return lmp_args_bad_value(a, "expected 0 or an integer from 64 to 65536");
        *(int *)o->ret = mib;
        return LMP_ARGS_GO;
}

static int layout_opt(struct lmp_args *a, const struct lmp_opt *o) {
        if (strcmp(optarg, "store") != 0 && strcmp(optarg, "file") != 0)
                return lmp_args_bad_value(a, "expected store or file");
        *(const char **)o->ret = strcmp(optarg, "store") == 0 ? "store" : "file";
        return LMP_ARGS_GO;
}

static int list_max(const struct list *l) {
        int m = 0;
        for (int i = 0; i < l->n; i++)
                m = LMP_MAX(m, l->v[i]);
        return m;
}

static int parse_args(int argc, char **argv, struct opts *o) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        *o = (struct opts){
                .pp = { .v = { 128, 512 }, .n = 2 },
                .tg = { .v = { 64 }, .n = 1 },
                .depth = { .v = { 0 }, .n = 1 },
                .seqs = { .v = { 1 }, .n = 1 },
                .threads = { .v = { (int)LMP_MIN(LMP_MAX(ncpu, 1L), (long)LMP_THREADPOOL_MAX) }, .n = 1 },
                .reps = 3,
                .probe_mib = 1024,
                .layout = "store",
        };
        const struct lmp_opt opts[] = {
                { "n-prompt", 'p', LMP_OPT_CALL, &o->pp, 0, MAX_TOKENS, .call = list_opt },
                { "n-gen", 'n', LMP_OPT_CALL, &o->tg, 0, MAX_TOKENS, .call = list_opt },
                { "n-depth", 'd', LMP_OPT_CALL, &o->depth, 0, MAX_TOKENS, .call = list_opt },
                { "seqs", 'b', LMP_OPT_CALL, &o->seqs, 1, MAX_SEQS, .call = list_opt },
                { "repetitions", 'r', LMP_OPT_INT, &o->reps, 1, MAX_REPS },
                { "threads", 't', LMP_OPT_CALL, &o->threads, 1, LMP_THREADPOOL_MAX, .call = list_opt },
                { "json", 0, LMP_OPT_FLAG, &o->json },
                { "probe-mib", 0, LMP_OPT_CALL, &o->probe_mib, .call = probe_mib },
                { "layout", 0, LMP_OPT_CALL, &o->layout, .call = layout_opt },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpool bench", argc, argv, opts, usage);
        if (parsed != LMP_ARGS_GO)
                return parsed == 0 ? -1 : parsed; /* -1: --help */
        for (int i = optind; i < argc; i++) {
                if (o->n_models == MAX_MODELS) {
                        fprintf(stderr, "lmpool bench: at most %d models\n", MAX_MODELS);
                        return LMP_EXIT_USAGE;
                }
                o->models[o->n_models++] = argv[i];
        }
        if (o->n_models == 0) {
                fprintf(stderr, "lmpool bench: no model given\n");
                usage(stderr);
                return LMP_EXIT_USAGE;
        }
        if (list_max(&o->pp) == 0 && list_max(&o->tg) == 0) {
                fprintf(stderr, "lmpool bench: nothing to measure: every -p and -n value is 0\n");
                return LMP_EXIT_USAGE;
        }
        if (list_max(&o->depth) > 0 && list_max(&o->seqs) > 1) {
                fprintf(stderr, "lmpool bench: -d applies to single-sequence rows; a batched row "
                        "(-b above 1) decodes after its own -p prompt\n");
                return LMP_EXIT_USAGE;
        }
        return 0;
}

/* ------------------------------------------------------------ the model */

static uint64_t weight_bytes(const struct lmp_weight *w) {
        return (uint64_t)w->n_out * w->row_size;
}

/* Bytes of weights one decode step reads: every matrix, the norm vectors
 * and biases, the output matrix, and one row of the embeddings. */
static uint64_t step_bytes(const struct lmp_model *m) {
        const struct lmp_hparams *hp = &m->hp;
        uint64_t b = 0, e = (uint64_t)hp->n_embd * sizeof(float);
        for (uint32_t l = 0; l < hp->n_layer; l++) {
                const struct lmp_layer *L = &m->layers[l];
                b += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv) +
                     weight_bytes(&L->wo) + weight_bytes(&L->ffn_gate) + weight_bytes(&L->ffn_up) +
                     weight_bytes(&L->ffn_down) + 2 * e;
                if (L->bq)
                        b += (uint64_t)L->wq.n_out * sizeof(float);
                if (L->bk)
                        b += (uint64_t)L->wk.n_out * sizeof(float);
                if (L->bv)
                        b += (uint64_t)L->wv.n_out * sizeof(float);
                if (L->bo)
                        b += (uint64_t)L->wo.n_out * sizeof(float);
        }
        return b + weight_bytes(&m->output) + e + m->tok_embd.row_size;
}

static int model_open(const char *path, bool store, struct bench_model *bm) {
        struct lmp_error err = { 0 };
        int r;
        *bm = (struct bench_model){ .path = path };
        /* As lmpoold's supervisor builds it (supervisor.c). */
        if (store) {
                r = lmp_store_create("bench", path, LMP_STORE_MODE_MEMFD, LMP_STORE_NUMA_OFF,
                                     lmp_cpu_isa() >= LMP_ISA_AVX512, &bm->store, &err);
                if (r == 0)
                        r = lmp_gguf_open_store(bm->store->base, bm->store->size, &bm->gguf, &err);
        } else {
                r = lmp_gguf_open(path, &bm->gguf, &err);
        }
        if (r < 0 || lmp_model_load(bm->gguf, lmp_cpu_isa(), &bm->model, &err) < 0) {
                fprintf(stderr, "lmpool bench: %s: %s\n", path, err.msg);
                lmp_gguf_free(bm->gguf);
                lmp_store_free(bm->store);
                bm->gguf = NULL;
                bm->store = NULL;
                return -1;
        }
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t len = strlen(base);
        if (len > 5 && strcmp(base + len - 5, ".gguf") == 0)
                len -= 5;
        snprintf(bm->name, sizeof(bm->name), "%.*s", (int)LMP_MIN(len, sizeof(bm->name) - 1), base);
        for (uint64_t i = 0; i < bm->gguf->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &bm->gguf->tensors[i];
                uint64_t ne = 1;
                for (uint32_t d = 0; d < t->n_dims; d++)
                        ne *= t->ne[d];
                bm->size += t->size;
                bm->n_params += ne;
        }
        bm->step_bytes = step_bytes(bm->model);
        return 0;
}

static void model_close(struct bench_model *bm) {
        lmp_model_free(bm->model);
        lmp_gguf_free(bm->gguf);
        lmp_store_free(bm->store);
        bm->model = NULL;
        bm->gguf = NULL;
        bm->store = NULL;
}

/* ------------------------------------------------------------ the tests */

struct runner {
        const struct bench_model *bm;
        struct lmp_ctx *ctx;
        struct lmp_batch_entry *batch;  /* (PROMPT_BATCH) */
        float *logits;                  /* (max seqs, n_vocab) */
        uint64_t rng;
        double step_min;                /* fastest step of generate() since the last reset */
};

static int32_t random_token(struct runner *r) {
        r->rng = r->rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return (int32_t)((r->rng >> 33) % r->bm->model->hp.n_vocab);
}

static int decode(struct runner *r, uint32_t n) {
        struct lmp_error err = { 0 };
        if (lmp_ctx_decode(r->ctx, r->batch, n, r->logits, &err) < 0) {
                fprintf(stderr, "lmpool bench: %s: %s\n", r->bm->path, err.msg);
                return -1;
        }
        return 0;
}

static void reset(struct runner *r, int n_seqs) {
        for (int s = 0; s < n_seqs; s++)
                lmp_ctx_seq_truncate(r->ctx, s, 0);
}

/* Prefills n_seqs prompts of n_prompt tokens at positions pos0 on, packed
 * into batches; the last token of each asks for logits. */
static int prefill(struct runner *r, int n_seqs, int pos0, int n_prompt) {
        uint32_t nb = 0;
        for (int s = 0; s < n_seqs; s++) {
                for (int i = 0; i < n_prompt; i++) {
                        r->batch[nb++] = (struct lmp_batch_entry){
                                .token = random_token(r), .pos = pos0 + i, .seq = s,
                                .logits = i == n_prompt - 1,
                        };
                        if (nb == PROMPT_BATCH) {
                                if (decode(r, nb) < 0)
                                        return -1;
                                nb = 0;
                        }
                }
        }
        return nb ? decode(r, nb) : 0;
}

/* n_steps calls, each one token of each of n_seqs sequences that hold
 * pos0 positions already. */
static int generate(struct runner *r, int n_seqs, int pos0, int n_steps) {
        for (int i = 0; i < n_steps; i++) {
                for (int s = 0; s < n_seqs; s++)
                        r->batch[s] = (struct lmp_batch_entry){
                                .token = random_token(r), .pos = pos0 + i, .seq = s, .logits = true,
                        };
                double t0 = lmp_clock_s();
                if (decode(r, (uint32_t)n_seqs) < 0)
                        return -1;
                double dt = lmp_clock_s() - t0;
                if (r->step_min <= 0.0 || dt < r->step_min)
                        r->step_min = dt;
        }
        return 0;
}

static void finish_stats(struct row_stats *st) {
        double sum = 0.0, ss = 0.0;
        for (int i = 0; i < st->n; i++)
                sum += st->samples[i];
        st->mean = sum / st->n;
        for (int i = 0; i < st->n; i++)
                ss += (st->samples[i] - st->mean) * (st->samples[i] - st->mean);
        st->sd = st->n > 1 ? sqrt(ss / (st->n - 1)) : 0.0;
}

/* The cache of sequence 0 emptied, then filled with depth tokens. */
static int fill(struct runner *r, int depth) {
        reset(r, 1);
        return depth > 0 ? prefill(r, 1, 0, depth) : 0;
}

/* ppP [@ dD] (n_seqs 1): the prompt after depth tokens. */
static int run_pp(struct runner *r, int depth, int n_prompt, int reps, struct row_stats *st) {
        reset(r, 1);
        if (prefill(r, 1, 0, LMP_MIN(n_prompt, WARMUP_PROMPT)) < 0)
                return -1;
        for (int k = 0; k < reps; k++) {
                if (fill(r, depth) < 0)
                        return -1;
                double t0 = lmp_clock_s();
                if (prefill(r, 1, depth, n_prompt) < 0)
                        return -1;
                st->samples[st->n++] = n_prompt / (lmp_clock_s() - t0);
        }
        finish_stats(st);
        return 0;
}

/* tgN [@ dD] (n_seqs 1): N single-token steps after depth tokens. */
static int run_tg(struct runner *r, int depth, int n_gen, int reps, struct row_stats *st) {
        reset(r, 1);
        if (generate(r, 1, 0, 1) < 0)
                return -1;
        r->step_min = 0.0;
        for (int k = 0; k < reps; k++) {
                if (fill(r, depth) < 0)
                        return -1;
                double t0 = lmp_clock_s();
                if (generate(r, 1, depth, n_gen) < 0)
                        return -1;
                st->samples[st->n++] = n_gen / (lmp_clock_s() - t0);
        }
        st->step_min = r->step_min;
        finish_stats(st);
        return 0;
}

/* ppP xS and tgN xS: S prompts, then N steps of S tokens. pp may be NULL
 * (the prompt's figures are already taken) and n_prompt 0. */
static int run_batched(struct runner *r, int n_seqs, int n_prompt, int n_gen, int reps,
                       struct row_stats *pp, struct row_stats *tg) {
        reset(r, n_seqs);
        if (prefill(r, n_seqs, 0, LMP_MIN(n_prompt, WARMUP_PROMPT)) < 0 ||
            generate(r, n_seqs, LMP_MIN(n_prompt, WARMUP_PROMPT), 1) < 0)
                return -1;
        r->step_min = 0.0;
        for (int k = 0; k < reps; k++) {
                reset(r, n_seqs);
                double t0 = lmp_clock_s();
                if (prefill(r, n_seqs, 0, n_prompt) < 0)
                        return -1;
                double t1 = lmp_clock_s();
                if (generate(r, n_seqs, n_prompt, n_gen) < 0)
                        return -1;
                double t2 = lmp_clock_s();
                if (pp && n_prompt > 0)
                        pp->samples[pp->n++] = (double)n_seqs * n_prompt / (t1 - t0);
                if (n_gen > 0)
                        tg->samples[tg->n++] = (double)n_seqs * n_gen / (t2 - t1);
        }
        if (pp && pp->n)
                finish_stats(pp);
        tg->step_min = r->step_min;
        if (tg->n)
                finish_stats(tg);
        return 0;
}

/* ------------------------------------------------------------ the output */

static void format_size(char *buf, size_t cap, uint64_t bytes) {
        if (bytes >= (1ull << 30))
                snprintf(buf, cap, "%.2f GiB", (double)bytes / (1ull << 30));
        else
                snprintf(buf, cap, "%.2f MiB", (double)bytes / (1ull << 20));
}

static void format_params(char *buf, size_t cap, uint64_t n) {
        if (n >= 1000000000ull)
                snprintf(buf, cap, "%.2f B", (double)n / 1e9);
        else if (n >= 1000000ull)
                snprintf(buf, cap, "%.2f M", (double)n / 1e6);
        else
                snprintf(buf, cap, "%.2f K", (double)n / 1e3);
}

/* A file name as a JSON string: quotes and backslashes escaped, control
 * bytes as \u00XX (other bytes pass as they are). */
static void print_json_string(const char *str) {
        putchar('"');
        for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p < 0x20)
                        printf("\\u%04x", *p);
                else
                        putchar(*p);
        }
        putchar('"');
}

static void print_header(void) {
        printf("| %-30s | %10s | %10s | %7s | %15s | %20s | %8s | %8s |\n", "model", "size", "params",
               "threads", "test", "t/s", "GB/s", "ceiling");
        printf("| %s | %s: | %s: | %s: | %s: | %s: | %s: | %s: |\n", "------------------------------",
               "---------", "---------", "------", "--------------", "-------------------", "-------",
               "-------");
}

/* One row. n_gen > 0: a generation row, with the weight traffic of its
 * steps (t/s / n_seqs steps per second) against the probe's figure. */
static void print_row(const struct opts *o, const struct bench_model *bm, int threads, int depth,
                      int n_prompt, int n_gen, int n_seqs, const struct row_stats *st,
                      double probe_gbs) {
        char test[32], ts[48], size[32], params[32], gbs_s[16] = "", share_s[16] = "";
        int len = n_gen > 0 ? snprintf(test, sizeof(test), "tg%d", n_gen)
                            : snprintf(test, sizeof(test), "pp%d", n_prompt);
        if (n_seqs > 1)
                snprintf(test + len, sizeof(test) - (size_t)len, " x%d", n_seqs);
        else if (depth > 0)
                snprintf(test + len, sizeof(test) - (size_t)len, " @ d%d", depth);
        double gbs = n_gen > 0 ? st->mean / n_seqs * (double)bm->step_bytes * 1e-9 : 0.0;
        double share = n_gen > 0 && probe_gbs > 0 ? gbs / probe_gbs : 0.0;
        if (o->json) {
                printf("{\"model\": ");
                print_json_string(bm->name);
                printf(", \"model_filename\": ");
                print_json_string(bm->path);
                printf(", \"model_size\": %llu, \"model_n_params\": %llu, \"n_threads\": %d, "
                       "\"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, "
                       "\"n_seqs\": %d, \"repetitions\": %d, \"avg_ts\": %.3f, \"stddev_ts\": %.3f, "
                       "\"samples_ts\": [",
                       (unsigned long long)bm->size, (unsigned long long)bm->n_params, threads, test,
                       n_prompt, n_gen, depth, n_seqs, st->n, st->mean, st->sd);
                for (int i = 0; i < st->n; i++)
                        printf(i ? ", %.3f" : "%.3f", st->samples[i]);
                printf("], \"step_weight_bytes\": %llu, \"repacked_matrices\": %u",
                       (unsigned long long)bm->step_bytes, bm->store ? bm->store->n_repacked : 0u);
                if (probe_gbs > 0)
                        printf(", \"probe_gbs\": %.2f", probe_gbs);
                else
                        printf(", \"probe_gbs\": null");
                if (n_gen > 0)
                        printf(", \"step_ms_min\": %.3f, \"weight_gbs\": %.2f", st->step_min * 1e3, gbs);
                else
                        printf(", \"step_ms_min\": null, \"weight_gbs\": null");
                if (n_gen > 0 && probe_gbs > 0)
                        printf(", \"ceiling_share\": %.3f}\n", share);
                else
                        printf(", \"ceiling_share\": null}\n");
                fflush(stdout);
                return;
        }
        format_size(size, sizeof(size), bm->size);
        format_params(params, sizeof(params), bm->n_params);
        snprintf(ts, sizeof(ts), "%.2f ± %.2f", st->mean, st->sd);
        if (n_gen > 0) {
                snprintf(gbs_s, sizeof(gbs_s), "%.1f", gbs);
                if (probe_gbs > 0)
                        snprintf(share_s, sizeof(share_s), "%.0f%%", 100.0 * share);
        }
        /* "±" is two bytes and one column: pad by hand. */
        printf("| %-30.30s | %10s | %10s | %7d | %15s | %21s | %8s | %8s |\n", bm->name, size, params,
               threads, test, ts, gbs_s, share_s);
        fflush(stdout);
}

/* ------------------------------------------------------------ the run */

/* The largest context one (model, threads) pass needs, per sequence. */
static int positions_needed(const struct opts *o) {
        int need = list_max(&o->depth) + LMP_MAX(list_max(&o->pp), list_max(&o->tg));
        if (list_max(&o->seqs) > 1)
                need = LMP_MAX(need, o->pp.v[0] + list_max(&o->tg));
        return need;
}

static int bench_threads(const struct opts *o, const struct bench_model *bm, int threads,
                         double probe_gbs) {
        struct lmp_threadpool *pool = NULL;
        struct lmp_error err = { 0 };
        struct runner r = { .bm = bm, .rng = 0x9e3779b97f4a7c15ULL };
        int rc = -1, max_seqs = list_max(&o->seqs);
        int r_pool = lmp_threadpool_new(threads, &pool);
        if (r_pool < 0) {
                fprintf(stderr, "lmpool bench: cannot start %d threads: %s\n", threads, strerror(-r_pool));
                return -1;
        }
        struct lmp_ctx_params p = {
                .n_ctx = (uint32_t)positions_needed(o),
                .n_seq = (uint32_t)max_seqs,
                .n_batch = (uint32_t)LMP_MAX(PROMPT_BATCH, max_seqs),
        };
        if (lmp_ctx_new(bm->model, &p, pool, &r.ctx, &err) < 0) {
                fprintf(stderr, "lmpool bench: %s: %s\n", bm->path, err.msg);
                goto out;
        }
        r.batch = calloc(p.n_batch, sizeof(*r.batch));
        r.logits = calloc((size_t)max_seqs * bm->model->hp.n_vocab, sizeof(float));
        if (!r.batch || !r.logits) {
                fprintf(stderr, "lmpool bench: out of memory\n");
                goto out;
        }
        for (int si = 0; si < o->seqs.n; si++) {
                int S = o->seqs.v[si];
                if (S == 1) {
                        for (int di = 0; di < o->depth.n; di++) {
                                int D = o->depth.v[di];
                                for (int i = 0; i < o->pp.n; i++) {
                                        struct row_stats st = { 0 };
                                        if (o->pp.v[i] == 0)
                                                continue;
                                        if (run_pp(&r, D, o->pp.v[i], o->reps, &st) < 0)
                                                goto out;
                                        print_row(o, bm, threads, D, o->pp.v[i], 0, 1, &st, probe_gbs);
                                }
                                for (int i = 0; i < o->tg.n; i++) {
                                        struct row_stats st = { 0 };
                                        if (o->tg.v[i] == 0)
                                                continue;
                                        if (run_tg(&r, D, o->tg.v[i], o->reps, &st) < 0)
                                                goto out;
                                        print_row(o, bm, threads, D, 0, o->tg.v[i], 1, &st, probe_gbs);
                                }
                        }
                        continue;
                }
                /* The prompt row comes from the first batched pass. */
                int P = o->pp.v[0];
                bool pp_row = P > 0, any_tg = false;
                for (int i = 0; i < o->tg.n; i++) {
                        struct row_stats pst = { 0 }, tst = { 0 };
                        if (o->tg.v[i] == 0)
                                continue;
                        any_tg = true;
                        if (run_batched(&r, S, P, o->tg.v[i], o->reps, pp_row ? &pst : NULL, &tst) < 0)
                                goto out;
                        if (pp_row)
                                print_row(o, bm, threads, 0, P, 0, S, &pst, probe_gbs);
                        pp_row = false;
                        print_row(o, bm, threads, 0, P, o->tg.v[i], S, &tst, probe_gbs);
                }
                if (!any_tg && pp_row) {
                        struct row_stats pst = { 0 }, tst = { 0 };
                        if (run_batched(&r, S, P, 0, o->reps, &pst, &tst) < 0)
                                goto out;
                        print_row(o, bm, threads, 0, P, 0, S, &pst, probe_gbs);
                }
        }
        rc = 0;
out:
        free(r.logits);
        free(r.batch);
        lmp_ctx_free(r.ctx);
        lmp_threadpool_free(pool);
        return rc;
}

/* The probe with each thread count, over a buffer of probe_mib MiB. */
static int probe_all(const struct opts *o, double *gbs) {
        size_t n = (size_t)o->probe_mib << 20;
        void *buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
                fprintf(stderr, "lmpool bench: cannot map %d MiB for the bandwidth probe\n", o->probe_mib);
                return -1;
        }
        /* Distinct non-zero pages: no shared zero page, nothing to compress. */
        for (size_t i = 0; i < n; i += 64)
                ((uint64_t *)buf)[i / 8] = i * 0x9e3779b97f4a7c15ULL + 1;
        int rc = 0;
        for (int i = 0; i < o->threads.n && rc == 0; i++) {
                struct lmp_threadpool *pool;
                rc = lmp_threadpool_new(o->threads.v[i], &pool);
                if (rc < 0) {
                        fprintf(stderr, "lmpool bench: cannot start %d threads: %s\n", o->threads.v[i],
                                strerror(-rc));
                        break;
                }
                rc = lmp_membw_probe(pool, buf, n, PROBE_PASSES, &gbs[i]);
                lmp_threadpool_free(pool);
        }
        munmap(buf, n);
        return rc < 0 ? -1 : 0;
}

int lmp_cmd_bench(int argc, char **argv) {
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strcmp(argv[i], "--server") == 0)
                        return lmp_cmd_bench_server(argc, argv);
        struct opts o;
        int rc = parse_args(argc, argv, &o);
        if (rc != 0)
                return rc < 0 ? 0 : rc;

        double probe[MAX_LIST] = { 0 };
        if (o.probe_mib > 0) {
                if (probe_all(&o, probe) < 0)
                        return 1;
                FILE *f = o.json ? stderr : stdout;
                fprintf(f, "memory bandwidth probe (streaming read of %d MiB, 8 AVX2 accumulators per "
                        "thread, best of %d):", o.probe_mib, PROBE_PASSES);
                for (int i = 0; i < o.threads.n; i++)
                        fprintf(f, "%s %d thread%s %.1f GB/s", i ? "," : "", o.threads.v[i],
                                o.threads.v[i] > 1 ? "s" : "", probe[i]);
                fprintf(f, "\n\n");
        }
        if (!o.json)
                print_header();
        for (int mi = 0; mi < o.n_models; mi++) {
                struct bench_model bm;
                if (model_open(o.models[mi], strcmp(o.layout, "store") == 0, &bm) < 0)
                        return 1;
                int need = positions_needed(&o);
                if ((uint32_t)need > bm.model->hp.n_ctx_train) {
                        fprintf(stderr, "lmpool bench: %s: the tests need %d positions per sequence, "
                                "the model has %u\n", bm.path, need, bm.model->hp.n_ctx_train);
                        model_close(&bm);
                        return 1;
                }
                for (int ti = 0; ti < o.threads.n; ti++) {
                        if (bench_threads(&o, &bm, o.threads.v[ti], probe[ti]) < 0) {
                                model_close(&bm);
                                return 1;
                        }
                }
                model_close(&bm);
        }
        return 0;
}

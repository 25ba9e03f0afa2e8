/* The cost of constrained JSON output per generated token, against the
 * forward pass. For each model file given (default: the fixture models
 * llama-q8_0 and qwen2-q8_0), generates GEN tokens under a grammar (--json's
 * any object, then a schema with nested objects, arrays, enums and required
 * fields) at temperature 1 and at 0 (greedy), with the real forward pass;
 * at each step it times the decode, an unconstrained draw on the same
 * logits, and the constrained draw plus the grammar's advance. The cost of
 * the grammar is the constrained time minus the unconstrained one, shown
 * as a share of the decode time. Also the one-off cost of the token table
 * and of compiling the schema. A document that completes starts over (same
 * context, positions going on) so that every step counts. Threads:
 * LMPOOL_THREADS (default 2). Prints one JSON line per run, then a table.
 * Figures, not assertions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_models.h"
#include "model/model.h"
#include "sampler/json_tokens.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define GEN 256

static const char SCHEMA[] =
        "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
        "\"color\":{\"enum\":[\"red\",\"green\",\"blue\"]},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},\"maxItems\":4},"
        "\"owner\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
        "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"ok\"],\"additionalProperties\":false}},"
        "\"required\":[\"id\",\"color\",\"owner\"],\"additionalProperties\":false}";

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct row {
        char model[64];
        const char *grammar;
        float temp;
        double decode_ms, plain_ms, json_ms;    /* per token */
        int docs;
};

static int run(const struct lmp_model *m, struct lmp_threadpool *pool, const struct lmp_json_tokens *jt,
               struct lmp_json_grammar *g, float temp, struct row *r) {
        struct lmp_error err = { 0 };
        struct lmp_ctx *c = NULL;
        struct lmp_sampler *plain = NULL, *smp = NULL;
        float *logits = malloc(sizeof(float) * m->hp.n_vocab);
        int rc = -1;
        struct lmp_ctx_params p = { .n_ctx = GEN + 8, .n_seq = 1, .n_batch = 8 };
        struct lmp_sampler_params sp;
        lmp_sampler_params_default(&sp);
        sp.temperature = temp;
        sp.seed = 42;
        if (!logits || lmp_ctx_new(m, &p, pool, &c, &err) < 0 ||
            lmp_sampler_new((int32_t)m->hp.n_vocab, &sp, &plain, &err) < 0 ||
            lmp_sampler_new((int32_t)m->hp.n_vocab, &sp, &smp, &err) < 0) {
                fprintf(stderr, "bench_json: %s\n", err.msg);
                goto out;
        }
        static struct lmp_json_allow a; /* 10 KiB of tables: not on the stack */
        lmp_json_allow_init(&a, jt, g);
        double t_dec = 0, t_plain = 0, t_json = 0;
        struct lmp_batch_entry e = { .token = 1, .pos = 0, .logits = true };
        double t0 = now_s();
        if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0)
                goto fail;
        t_dec += now_s() - t0;
        r->docs = 0;
        for (int i = 1; i < GEN; i++) {
                double t1 = now_s();
                int32_t u = lmp_sampler_sample(plain, logits);
                double t2 = now_s();
                int32_t tok = lmp_sampler_sample_allowed(smp, logits, lmp_json_allow, &a);
                if (tok >= 0)
                        lmp_json_allow_advance(&a, tok);
                double t3 = now_s();
                (void)u;
                t_plain += t2 - t1;
                t_json += t3 - t2;
                if (tok < 0 || jt->eog[tok] || lmp_json_state_closed(&a.state)) {
                        r->docs += tok >= 0;
                        lmp_json_allow_init(&a, jt, g);
                        tok = tok >= 0 && !jt->eog[tok] ? tok : 1;
                }
                e = (struct lmp_batch_entry){ .token = tok, .pos = i, .logits = true };
                double t4 = now_s();
                if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0)
                        goto fail;
                t_dec += now_s() - t4;
        }
        r->decode_ms = t_dec / GEN * 1e3;
        r->plain_ms = t_plain / (GEN - 1) * 1e3;
        r->json_ms = t_json / (GEN - 1) * 1e3;
        r->temp = temp;
        rc = 0;
        goto out;
fail:
        fprintf(stderr, "bench_json: %s\n", err.msg);
out:
        lmp_sampler_free(plain);
        lmp_sampler_free(smp);
        lmp_ctx_free(c);
        free(logits);
        return rc;
}

int main(int argc, char **argv) {
        static const char *const defaults[] = { "llama-q8_0", "qwen2-q8_0" };
        const char *thr = getenv("LMPOOL_THREADS");
        int n_threads = thr ? atoi(thr) : 2;
        int n = argc > 1 ? argc - 1 : 2;
        struct row rows[64];
        int done = 0;
        for (int i = 0; i < n && done + 4 <= 64; i++) {
                char path[4096];
                if (!fixture_model(argc, argv, defaults, i, path, sizeof(path)))
                        continue;
                const char *base = strrchr(path, '/');
                base = base ? base + 1 : path;
                struct lmp_error err = { 0 };
                struct lmp_gguf *gg = NULL;
                struct lmp_model *m = NULL;
                struct lmp_threadpool *pool = NULL;
                struct lmp_vocab *v = NULL;
                struct lmp_json_tokens *jt = NULL;
                struct lmp_json_grammar *gobj = NULL, *gsch = NULL;
                double t0 = now_s(), t_table = 0, t_compile = 0;
                if (lmp_gguf_open(path, &gg, &err) < 0 || lmp_model_load(gg, lmp_cpu_isa(), &m, &err) < 0 ||
                    lmp_threadpool_new(n_threads, &pool) < 0 || lmp_vocab_load(gg, &v, &err) < 0) {
                        fprintf(stderr, "%s: %s\n", path, err.msg);
                        goto next;
                }
                t0 = now_s();
                if (lmp_json_tokens_new(v, &jt, &err) < 0)
                        goto fail;
                t_table = now_s() - t0;
                t0 = now_s();
                if (lmp_json_grammar_new_schema(SCHEMA, strlen(SCHEMA), &gsch, &err) < 0 ||
                    lmp_json_grammar_new_object(&gobj, &err) < 0)
                        goto fail;
                t_compile = now_s() - t0;
                for (int k = 0; k < 4; k++) {
                        struct row *r = &rows[done];
                        snprintf(r->model, sizeof(r->model), "%.60s", base);
                        r->grammar = k / 2 ? "schema" : "json";
                        if (run(m, pool, jt, k / 2 ? gsch : gobj, k % 2 ? 0.0f : 1.0f, r) < 0)
                                continue;
                        printf("{\"bench\": \"json\", \"model\": \"%s\", \"grammar\": \"%s\", \"temperature\": %g, "
                               "\"threads\": %d, \"tokens\": %d, \"documents\": %d, \"decode_ms\": %.4f, "
                               "\"sample_ms\": %.4f, \"json_sample_ms\": %.4f, \"json_cost_ms\": %.4f, "
                               "\"json_cost_share\": %.4f, \"token_table_ms\": %.2f, \"compile_ms\": %.3f}\n",
                               r->model, r->grammar, (double)r->temp, n_threads, GEN, r->docs, r->decode_ms,
                               r->plain_ms, r->json_ms, r->json_ms - r->plain_ms,
                               (r->json_ms - r->plain_ms) / r->decode_ms, t_table * 1e3, t_compile * 1e3);
                        done++;
                }
                goto next;
fail:
                fprintf(stderr, "%s: %s\n", path, err.msg);
next:
                lmp_json_grammar_unref(gobj);
                lmp_json_grammar_unref(gsch);
                lmp_json_tokens_free(jt);
                lmp_vocab_free(v);
                lmp_threadpool_free(pool);
                lmp_model_free(m);
                lmp_gguf_free(gg);
        }
        if (done == 0) {
                printf("no models found: skipped\n");
                return 77;
        }
        printf("\n%-30s %-7s %5s %5s %10s %10s %10s %8s\n", "model", "grammar", "temp", "docs", "decode ms",
               "sample ms", "json ms", "json/dec");
        for (int i = 0; i < done; i++) {
                struct row *r = &rows[i];
                printf("%-30s %-7s %5.1f %5d %10.3f %10.3f %10.3f %7.1f%%\n", r->model, r->grammar,
                       (double)r->temp, r->docs, r->decode_ms, r->plain_ms, r->json_ms - r->plain_ms,
                       100.0 * (r->json_ms - r->plain_ms) / r->decode_ms);
        }
        return 0;
}

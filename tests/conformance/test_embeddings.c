/* Conformance of the encoder (BERT) forward pass and of WordPiece with
 * llama.cpp on one embeddings fixture (argument: the file's name without
 * .gguf, e.g. "bert-mean-q8_0"). For every case of NAME.refs.json: the
 * text's ids with [CLS] and [SEP] must equal llama.cpp's exactly, and the
 * pooled embedding (before normalization) must be within the README's
 * limits by cosine similarity and by the largest absolute difference. Each
 * case is checked twice: all cases as one batch of many sequences (each
 * attends to itself only), and each case alone. The instruction set comes
 * from LMPOOL_ISA, so the suite also runs with the scalar kernels. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/readfile.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define MAX_IDS 512

/* The fixtures README's limits, by weight type. */
static const struct {
        const char *suffix;
        double min_cos, max_abs;
} limits[] = {
        { "-f32", 0.99999, 0.002 },
        { "-f16", 0.99999, 0.004 },
        { "-q8_0", 0.9999, 0.03 },
};

struct check {
        double min_cos, max_abs;        /* worst seen */
};

static void compare(const float *got, const cJSON *ref, int n_embd, struct check *ck, double *ret_cos,
                    double *ret_abs) {
        double dot = 0, ng = 0, nr = 0, mx = 0;
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ref) {
                if (i >= n_embd)
                        break;
                double r = it->valuedouble, g = got[i++];
                dot += r * g;
                ng += g * g;
                nr += r * r;
                mx = fmax(mx, fabs(r - g));
        }
        double cos = ng > 0 && nr > 0 ? dot / sqrt(ng * nr) : 0.0;
        ck->min_cos = fmin(ck->min_cos, cos);
        ck->max_abs = fmax(ck->max_abs, mx);
        *ret_cos = cos;
        *ret_abs = mx;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s MODEL (e.g. bert-mean-f32)\n", argv[0]);
                return 2;
        }
        const char *name = argv[1];
        const char *fx = getenv("LMPOOL_FIXTURES");
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/embeddings/%s.gguf", fx ? fx : "", name);
        if (!fx || stat(path, &st) != 0) {
                printf("embeddings fixture %s not found (LMPOOL_FIXTURES): skipped\n", name);
                return 77;
        }
        double min_cos = 0, max_abs = 0;
        for (size_t i = 0; i < LMP_ARRAY_SIZE(limits); i++) {
                size_t ls = strlen(limits[i].suffix), ln = strlen(name);
                if (ln > ls && strcmp(name + ln - ls, limits[i].suffix) == 0) {
                        min_cos = limits[i].min_cos;
                        max_abs = limits[i].max_abs;
                }
        }
        if (min_cos == 0) {
                fprintf(stderr, "%s: no limits for this weight type\n", name);
                return 1;
        }

        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_vocab *v = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL;
        cJSON *refs = NULL;
        char *text = NULL;
        size_t tlen;
        int32_t *ids = NULL;
        int *n_ids = NULL;
        struct lmp_batch_entry *batch = NULL;
        float *out = NULL;
        int rc = 1, failures = 0;

        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_model_load(g, lmp_cpu_isa(), &m, &err) < 0 ||
            lmp_vocab_load(g, &v, &err) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        snprintf(path, sizeof(path), "%s/embeddings/%s.refs.json", fx, name);
        if (lmp_read_file(path, &text, &tlen) < 0 || !(refs = cJSON_Parse(text))) {
                fprintf(stderr, "%s: cannot read or parse\n", path);
                goto out;
        }
        const cJSON *cases = cJSON_GetObjectItemCaseSensitive(refs, "cases");
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(refs, "n_embd");
        const cJSON *jp = cJSON_GetObjectItemCaseSensitive(refs, "pooling");
        int n_cases = cJSON_GetArraySize(cases);
        if (!cJSON_IsArray(cases) || n_cases < 1 || !cJSON_IsNumber(jn) || !cJSON_IsNumber(jp)) {
                fprintf(stderr, "%s: malformed references\n", name);
                goto out;
        }
        int E = (int)m->hp.n_embd;
        if (jn->valueint != E || jp->valueint != (int)m->hp.pooling) {
                fprintf(stderr, "%s: model n_embd %d pooling %d, references %d and %d\n", name, E,
                        (int)m->hp.pooling, jn->valueint, jp->valueint);
                goto out;
        }

        ids = malloc((size_t)n_cases * MAX_IDS * sizeof(*ids));
        n_ids = calloc((size_t)n_cases, sizeof(*n_ids));
        batch = malloc((size_t)n_cases * MAX_IDS * sizeof(*batch));
        out = malloc((size_t)n_cases * E * sizeof(float));
        if (!ids || !n_ids || !batch || !out)
                goto out;

        /* The ids, exactly. */
        int total = 0, k = 0;
        const cJSON *cs;
        cJSON_ArrayForEach(cs, cases) {
                const cJSON *jt = cJSON_GetObjectItemCaseSensitive(cs, "text");
                const cJSON *jids = cJSON_GetObjectItemCaseSensitive(cs, "ids");
                size_t n = 0;
                int r = cJSON_IsString(jt) ? lmp_tokenize(v, jt->valuestring, strlen(jt->valuestring), true,
                                                          true, ids + (size_t)k * MAX_IDS, MAX_IDS, &n)
                                           : -1;
                bool same = r == 0 && cJSON_GetArraySize(jids) == (int)n;
                for (size_t i = 0; same && i < n; i++)
                        same = cJSON_GetArrayItem(jids, (int)i)->valueint == ids[(size_t)k * MAX_IDS + i];
                if (!same) {
                        fprintf(stderr, "%s case %d: ids differ from llama.cpp's (%zu ids, r=%d)\n", name, k, n, r);
                        failures++;
                }
                n_ids[k] = (int)n;
                total += (int)n;
                k++;
        }

        const char *thr = getenv("LMPOOL_THREADS");
        if (lmp_threadpool_new(thr ? atoi(thr) : 2, &pool) < 0) {
                fprintf(stderr, "cannot start threads\n");
                goto out;
        }
        struct lmp_ctx_params cp = { .n_ctx = MAX_IDS, .n_seq = (uint32_t)n_cases,
                                     .n_batch = (uint32_t)total };
        if (lmp_ctx_new(m, &cp, pool, &c, &err) < 0) {
                fprintf(stderr, "%s: %s\n", name, err.msg);
                goto out;
        }

        /* All cases in one batch, then each alone. */
        for (int pass = 0; pass < 2; pass++) {
                struct check ck = { 1.0, 0.0 };
                for (int first = 0; first < n_cases; first += pass == 0 ? n_cases : 1) {
                        int last = pass == 0 ? n_cases : first + 1;
                        uint32_t n = 0;
                        for (int q = first; q < last; q++)
                                for (int i = 0; i < n_ids[q]; i++)
                                        batch[n++] = (struct lmp_batch_entry){
                                                .token = ids[(size_t)q * MAX_IDS + i], .pos = i, .seq = q - first
                                        };
                        if (lmp_ctx_encode(c, batch, n, out, &err) < 0) {
                                fprintf(stderr, "%s: encode: %s\n", name, err.msg);
                                goto out;
                        }
                        for (int q = first; q < last; q++) {
                                double cos, mx;
                                const cJSON *jc = cJSON_GetArrayItem(cases, q);
                                compare(out + (size_t)(q - first) * E,
                                        cJSON_GetObjectItemCaseSensitive(jc, "embedding"), E, &ck, &cos, &mx);
                                if (cos < min_cos || mx > max_abs) {
                                        fprintf(stderr, "%s %s case %d: cosine %.7f (>= %g), max |d| %.5f (<= %g)\n",
                                                name, pass ? "alone" : "batch", q, cos, min_cos, mx, max_abs);
                                        failures++;
                                }
                        }
                }
                printf("%s %-5s %2d cases: min cosine %.7f, max |d| %.5f\n", name, pass ? "alone" : "batch",
                       n_cases, ck.min_cos, ck.max_abs);
        }
        rc = failures ? 1 : 0;
        if (failures)
                fprintf(stderr, "%s: %d failures\n", name, failures);
out:
        free(out);
        free(batch);
        free(n_ids);
        free(ids);
        free(text);
        cJSON_Delete(refs);
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        lmp_vocab_free(v);
        lmp_model_free(m);
        lmp_gguf_free(g);
        return rc;
}

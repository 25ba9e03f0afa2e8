/* Conformance of the forward pass with llama.cpp on one fixture model
 * (argument: the file's name without .gguf, e.g. "llama-q4_k_m").
 *
 * For every prompt of MODEL.refs.json: the prompt is evaluated as batches of
 * up to 512 entries with logits at every position, then the 32 reference
 * greedy tokens are fed back one at a time (teacher forcing). The criteria
 * are those of the fixtures' README, with the file's tolerances.json row:
 * |Δlogit| on the reference's top-8 ids <= max_abs_logit_diff at every
 * position (prompt_top and greedy_top), Pearson correlation of the last
 * prompt position's full logits with last_logits >= the minimum, and equal
 * argmax wherever the reference's top-1 margin exceeds twice the tolerance.
 * The instruction set comes from LMPOOL_ISA like everywhere else, so the
 * suite also runs with the scalar kernels forced. `--max-prompt N` skips
 * (and says so) prompts longer than N tokens: the sanitizer build uses it
 * for the scalar pass over the deep models, whose 3000-token prompt takes
 * minutes there; every other run checks every prompt. `--batch N` evaluates
 * prompts in batches of N (1 to 512) instead: on a model with windowed
 * layers, a batch short beside the context gives those layers a ring of
 * n_swa + N rows that the long prompts go round many times, and the test
 * then also checks that the ring is in use. `--store` loads the model as
 * lmpoold's workers do, from a memfd weight store with its q4_K matrices
 * repacked (q4_K_r16, whatever the instruction set, so that the scalar
 * pass checks the scalar kernel), and fails if nothing was repacked. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "store/store.h"

#define TOP_K 8
#define CHUNK_MAX 512

static char *slurp(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        struct stat st;
        char *buf = NULL;
        if (fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1))) {
                if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
                        free(buf);
                        buf = NULL;
                } else {
                        buf[st.st_size] = '\0';
                }
        }
        fclose(f);
        return buf;
}

static int read_ints(const cJSON *arr, int32_t *out, int max) {
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
                if (n >= max || !cJSON_IsNumber(it))
                        return -1;
                out[n++] = (int32_t)it->valuedouble;
        }
        return n;
}

struct stats {
        double max_diff;
        int positions;
        int argmax_checked;
        int failures;
};

/* Compares our logits with one {"ids", "logits"} reference entry. */
static void compare_top(const char *what, int prompt, int pos, const float *logits,
                        uint32_t n_vocab, const cJSON *ref, double tol, struct stats *st) {
        int32_t ids[TOP_K];
        double ref_l[TOP_K];
        const cJSON *jl = cJSON_GetObjectItemCaseSensitive(ref, "logits");
        int n = read_ints(cJSON_GetObjectItemCaseSensitive(ref, "ids"), ids, TOP_K);
        int nl = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, jl) {
                if (nl < TOP_K && cJSON_IsNumber(it))
                        ref_l[nl++] = it->valuedouble;
        }
        if (n < 2 || nl != n) {
                fprintf(stderr, "prompt %d %s %d: malformed reference\n", prompt, what, pos);
                st->failures++;
                return;
        }
        st->positions++;
        for (int k = 0; k < n; k++) {
                if (ids[k] < 0 || (uint32_t)ids[k] >= n_vocab) {
                        fprintf(stderr, "prompt %d %s %d: reference id %d outside the vocabulary\n",
                                prompt, what, pos, ids[k]);
                        st->failures++;
                        return;
                }
                double d = fabs((double)logits[ids[k]] - ref_l[k]);
                if (d > st->max_diff)
                        st->max_diff = d;
                if (!(d <= tol)) {
                        if (st->failures < 20)
                                fprintf(stderr,
                                        "prompt %d %s %d: id %d logit %.5f, reference %.5f (|diff| %.5f > %.5f)\n",
                                        prompt, what, pos, ids[k], logits[ids[k]], ref_l[k], d, tol);
                        st->failures++;
                }
        }
        if (ref_l[0] - ref_l[1] > 2.0 * tol) {
                uint32_t best = 0;
                for (uint32_t v = 1; v < n_vocab; v++)
                        if (logits[v] > logits[best])
                                best = v;
                st->argmax_checked++;
                if ((int32_t)best != ids[0]) {
                        fprintf(stderr, "prompt %d %s %d: argmax %u, reference %d (margin %.4f)\n",
                                prompt, what, pos, best, ids[0], ref_l[0] - ref_l[1]);
                        st->failures++;
                }
        }
}

static double pearson(const float *a, const cJSON *ref, uint32_t n, int *ret_n) {
        double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
        uint32_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ref) {
                if (i >= n || !cJSON_IsNumber(it))
                        break;
                double x = a[i], y = it->valuedouble;
                sa += x;
                sb += y;
                saa += x * x;
                sbb += y * y;
                sab += x * y;
                i++;
        }
        *ret_n = (int)i;
        double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
        return cov / sqrt(va * vb);
}

int main(int argc, char **argv) {
        int max_prompt = INT32_MAX, chunk = CHUNK_MAX;
        bool ring = false, use_store = false;
        for (int i = 2; i < argc; i += 2) {
                if (strcmp(argv[i], "--store") == 0) {
                        use_store = true;
                        i--;
                } else if (i + 1 < argc && strcmp(argv[i], "--max-prompt") == 0) {
                        max_prompt = atoi(argv[i + 1]);
                } else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) {
                        chunk = atoi(argv[i + 1]);
                        ring = true;
                        if (chunk < 1 || chunk > CHUNK_MAX)
                                argc = 0;
                } else {
                        argc = 0;
                }
        }
        if (argc < 2) {
                fprintf(stderr, "usage: %s MODEL-NAME [--max-prompt N] [--batch 1..%d] [--store]\n", argv[0],
                        CHUNK_MAX);
                return 2;
        }
        /* "NAME" is models/NAME; "DIR/NAME" is DIR/NAME (archs/qwen3-f32),
         * with DIR's own tolerances.json. */
        const char *arg = argv[1];
        const char *slash = strrchr(arg, '/');
        const char *name = slash ? slash + 1 : arg;
        char dir[256];
        snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - arg) : 6, slash ? arg : "models");
        const char *fx = getenv("LMPOOL_FIXTURES");
        char path[4096];
        struct stat st;
        if (!fx || snprintf(path, sizeof(path), "%s/%s/%s.gguf", fx, dir, name) >= (int)sizeof(path) ||
            stat(path, &st) != 0) {
                printf("fixture model %s not found: skipped\n", name);
                return 77;
        }

        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_store *store = NULL;
        struct lmp_model *m = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL;
        float *logits = NULL;
        cJSON *refs = NULL, *tols = NULL;
        char *text = NULL;
        int32_t *tokens = NULL;
        struct lmp_batch_entry *batch = NULL;
        int rc = 1;

        if (use_store) {
                if (lmp_store_create(name, path, LMP_STORE_MODE_MEMFD, LMP_STORE_NUMA_OFF, true, &store, &err) < 0 ||
                    lmp_gguf_open_store(store->base, store->size, &g, &err) < 0) {
                        fprintf(stderr, "%s: %s\n", path, err.msg);
                        goto out;
                }
                printf("%s: %u matrices repacked (%llu bytes) in the store\n", name, store->n_repacked,
                       (unsigned long long)store->repacked_bytes);
                if (store->n_repacked == 0) {
                        fprintf(stderr, "%s: --store, but no matrix was repacked\n", name);
                        goto out;
                }
        } else if (lmp_gguf_open(path, &g, &err) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        if (lmp_model_load(g, lmp_cpu_isa(), &m, &err) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        snprintf(path, sizeof(path), "%s/%s/%s.refs.json", fx, dir, name);
        if (!(text = slurp(path)) || !(refs = cJSON_Parse(text))) {
                fprintf(stderr, "%s: cannot read or parse\n", path);
                goto out;
        }
        free(text);
        snprintf(path, sizeof(path), "%s/%s/tolerances.json", fx, dir);
        if (!(text = slurp(path)) || !(tols = cJSON_Parse(text))) {
                fprintf(stderr, "%s: cannot read or parse\n", path);
                goto out;
        }
        const cJSON *tol = cJSON_GetObjectItemCaseSensitive(tols, name);
        const cJSON *jmax = cJSON_GetObjectItemCaseSensitive(tol, "max_abs_logit_diff");
        const cJSON *jcorr = cJSON_GetObjectItemCaseSensitive(tol, "min_last_logits_correlation");
        const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(refs, "prompts");
        const cJSON *jvocab = cJSON_GetObjectItemCaseSensitive(refs, "n_vocab");
        if (!cJSON_IsNumber(jmax) || !cJSON_IsNumber(jcorr) || !cJSON_IsArray(prompts) ||
            !cJSON_IsNumber(jvocab)) {
                fprintf(stderr, "%s: no tolerances or malformed references\n", name);
                goto out;
        }
        double max_diff = jmax->valuedouble, min_corr = jcorr->valuedouble;
        uint32_t n_vocab = m->hp.n_vocab;
        if ((uint32_t)jvocab->valueint != n_vocab) {
                fprintf(stderr, "%s: model has %u tokens, references %d\n", name, n_vocab,
                        jvocab->valueint);
                goto out;
        }

        /* The context: one sequence, as long as the longest prompt needs. */
        int max_tokens = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, prompts) {
                int nt = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "tokens"));
                int ng = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "greedy"));
                max_tokens = LMP_MAX(max_tokens, nt + ng);
        }
        const char *thr = getenv("LMPOOL_THREADS");
        if (lmp_threadpool_new(thr ? atoi(thr) : 2, &pool) < 0) {
                fprintf(stderr, "cannot start threads\n");
                goto out;
        }
        struct lmp_ctx_params cp = { .n_ctx = (uint32_t)max_tokens, .n_seq = 1, .n_batch = (uint32_t)chunk };
        if (lmp_ctx_new(m, &cp, pool, &c, &err) < 0) {
                fprintf(stderr, "%s: %s\n", name, err.msg);
                goto out;
        }
        if (ring) {
                uint64_t flat = (uint64_t)m->hp.n_layer * (uint64_t)max_tokens;
                printf("%s: batches of %d, KV cache rows per sequence %zu (%llu without a ring)\n", name,
                       chunk, lmp_ctx_kv_rows(c), (unsigned long long)flat);
                if (m->hp.n_swa && lmp_ctx_kv_rows(c) >= flat) {
                        fprintf(stderr, "%s: the windowed layers did not get a ring\n", name);
                        goto out;
                }
        }
        logits = malloc((size_t)chunk * n_vocab * sizeof(float));
        tokens = malloc((size_t)max_tokens * sizeof(int32_t));
        batch = malloc((size_t)chunk * sizeof(*batch));
        if (!logits || !tokens || !batch)
                goto out;

        int failures = 0, pi = 0;
        cJSON_ArrayForEach(p, prompts) {
                struct stats s = { 0 };
                const cJSON *jtok = cJSON_GetObjectItemCaseSensitive(p, "tokens");
                const cJSON *ptop = cJSON_GetObjectItemCaseSensitive(p, "prompt_top");
                const cJSON *gtop = cJSON_GetObjectItemCaseSensitive(p, "greedy_top");
                const cJSON *greedy = cJSON_GetObjectItemCaseSensitive(p, "greedy");
                const cJSON *last = cJSON_GetObjectItemCaseSensitive(p, "last_logits");
                int n_prompt = read_ints(jtok, tokens, max_tokens);
                int n_greedy = n_prompt < 0 ? -1 : read_ints(greedy, tokens + n_prompt,
                                                             max_tokens - n_prompt);
                if (n_prompt < 1 || n_greedy < 0 || cJSON_GetArraySize(ptop) != n_prompt ||
                    cJSON_GetArraySize(gtop) != n_greedy) {
                        fprintf(stderr, "prompt %d: malformed reference\n", pi);
                        failures++;
                        pi++;
                        continue;
                }
                if (n_prompt > max_prompt) {
                        printf("%s prompt %d: %d tokens, skipped (--max-prompt %d)\n", name, pi, n_prompt,
                               max_prompt);
                        pi++;
                        continue;
                }
                lmp_ctx_seq_truncate(c, 0, 0);

                /* The prompt, in batches, logits everywhere. */
                double corr = 0.0;
                for (int p0 = 0; p0 < n_prompt; p0 += chunk) {
                        int nb = LMP_MIN(chunk, n_prompt - p0);
                        for (int i = 0; i < nb; i++)
                                batch[i] = (struct lmp_batch_entry){
                                        .token = tokens[p0 + i], .pos = p0 + i, .seq = 0, .logits = true
                                };
                        int r = lmp_ctx_decode(c, batch, (uint32_t)nb, logits, &err);
                        if (r < 0) {
                                fprintf(stderr, "prompt %d: decode: %s\n", pi, err.msg);
                                goto out;
                        }
                        for (int i = 0; i < nb; i++)
                                compare_top("prompt position", pi, p0 + i, logits + (size_t)i * n_vocab,
                                            n_vocab, cJSON_GetArrayItem(ptop, p0 + i), max_diff, &s);
                        if (p0 + nb == n_prompt) {
                                int nc = 0;
                                corr = pearson(logits + (size_t)(nb - 1) * n_vocab, last, n_vocab, &nc);
                                if (nc != (int)n_vocab) {
                                        fprintf(stderr, "prompt %d: last_logits has %d values\n", pi, nc);
                                        s.failures++;
                                }
                        }
                }
                /* tolerances.json states correlations to 6 decimals (an f32
                 * file's 1.0 is llama.cpp's own 0.9999996 rounded), so they
                 * are compared at that precision. */
                if (!(corr >= min_corr - 5e-7)) {
                        fprintf(stderr, "prompt %d: last-position correlation %.7f < %.7f\n", pi, corr,
                                min_corr);
                        s.failures++;
                }

                /* The greedy continuation, one token at a time. */
                for (int gi = 0; gi < n_greedy; gi++) {
                        struct lmp_batch_entry e = {
                                .token = tokens[n_prompt + gi], .pos = n_prompt + gi, .seq = 0, .logits = true
                        };
                        if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0) {
                                fprintf(stderr, "prompt %d: decode: %s\n", pi, err.msg);
                                goto out;
                        }
                        compare_top("greedy step", pi, gi, logits, n_vocab,
                                    cJSON_GetArrayItem(gtop, gi), max_diff, &s);
                }
                printf("%s prompt %d: %d tokens, %d positions compared, max |diff| %.5f (limit %.4f), "
                       "argmax checked %d, last-logits correlation %.7f (min %.6f): %s\n",
                       name, pi, n_prompt, s.positions, s.max_diff, max_diff, s.argmax_checked, corr,
                       min_corr, s.failures ? "FAIL" : "ok");
                failures += s.failures;
                pi++;
        }
        rc = failures ? 1 : 0;
out:
        free(batch);
        free(tokens);
        free(logits);
        free(text);
        cJSON_Delete(refs);
        cJSON_Delete(tols);
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        lmp_model_free(m);
        lmp_gguf_free(g);
        lmp_store_free(store);
        return rc;
}

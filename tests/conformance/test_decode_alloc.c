/* The decode loop allocates nothing. This program is linked with
 * -Wl,--wrap=malloc,... so that every allocation made by our code (the
 * model, the kernels, the thread pool and its workers) goes through the
 * counting wrappers below; counting is armed only around decode steps.
 * For each fixture model given as an argument: a prompt is evaluated
 * (unarmed: the first call may touch lazily initialized library state),
 * then 24 single-token decode steps with logits and a batch mixing two
 * sequences are evaluated armed, and the count must stay zero. An encoder
 * (a name with a directory, e.g. embeddings/bert-mean-q8_0) is checked the
 * same way on lmp_ctx_encode(): batches of several whole texts, armed. For
 * an M-RoPE model (vision/qwen2vl-f16) the mixed batch's prompt also has
 * entries with their own embedding and rotary positions (image tokens).
 * Allocations inside shared libraries (OpenBLAS, libc) are not seen by
 * --wrap; OpenBLAS keeps its own preallocated buffers. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);

static atomic_bool armed;
static atomic_long n_allocs;

static void note(void) {
        if (atomic_load_explicit(&armed, memory_order_relaxed))
                atomic_fetch_add(&n_allocs, 1);
}

void *__wrap_malloc(size_t n) { note(); return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { note(); return __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { note(); return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { note(); return __real_aligned_alloc(align, n); }
int __wrap_posix_memalign(void **p, size_t align, size_t n) { note(); return __real_posix_memalign(p, align, n); }

/* Three armed encode calls of several whole sequences each. */
static long encode_armed(struct lmp_ctx *c, uint32_t V, float *out, struct lmp_error *err) {
        struct lmp_batch_entry batch[64];
        for (int call = 0; call < 3; call++) {
                uint32_t n = 0;
                for (int s = 0; s < 2 + call; s++)
                        for (int i = 0; i < 5 + 3 * s; i++)
                                batch[n++] = (struct lmp_batch_entry){ .token = (i * 31 + s + 1) % (int)V, .pos = i,
                                                                       .seq = s };
                if (call == 0 && lmp_ctx_encode(c, batch, n, out, err) < 0) /* unarmed: warms up */
                        return -1;
                atomic_store(&armed, true);
                int r = lmp_ctx_encode(c, batch, n, out, err);
                atomic_store(&armed, false);
                if (r < 0)
                        return -1;
        }
        return atomic_exchange(&n_allocs, 0);
}

static int check_model(const char *fx, const char *name) {
        char path[4096];
        snprintf(path, sizeof(path), strchr(name, '/') ? "%s/%s.gguf" : "%s/models/%s.gguf", fx, name);
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_model *m = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_ctx *c = NULL;
        float *logits = NULL;
        float *image = NULL;
        int rc = 1;

        /* The wrappers must see allocations at all, or the test proves nothing. */
        atomic_store(&armed, true);
        void *volatile probe = malloc(16);
        atomic_store(&armed, false);
        free(probe);
        if (atomic_exchange(&n_allocs, 0) != 1) {
                fprintf(stderr, "the allocation wrappers are not linked in\n");
                return 1;
        }

        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_model_load(g, lmp_cpu_isa(), &m, &err) < 0 ||
            lmp_threadpool_new(2, &pool) < 0) {
                fprintf(stderr, "%s: %s\n", name, err.msg);
                goto out;
        }
        struct lmp_ctx_params p = { .n_ctx = 128, .n_seq = 4, .n_batch = 64 };
        if (lmp_ctx_new(m, &p, pool, &c, &err) < 0 ||
            !(logits = malloc(sizeof(float) * 64 * m->hp.n_vocab))) {
                fprintf(stderr, "%s: %s\n", name, err.msg);
                goto out;
        }
        uint32_t V = m->hp.n_vocab;
        if (m->arch->encoder) {
                long n = encode_armed(c, V, logits, &err);
                if (n < 0)
                        fprintf(stderr, "%s: encode: %s\n", name, err.msg);
                else
                        printf("%s: %ld allocations in 3 armed encode calls\n", name, n);
                rc = n == 0 ? 0 : 1;
                goto out;
        }
        struct lmp_batch_entry batch[64];
        for (int i = 0; i < 40; i++)
                batch[i] = (struct lmp_batch_entry){ .token = (i * 31 + 1) % (int)V, .pos = i, .seq = 0,
                                                     .logits = i == 39 };
        if (lmp_ctx_decode(c, batch, 40, logits, &err) < 0) {
                fprintf(stderr, "%s: prompt: %s\n", name, err.msg);
                goto out;
        }

        /* six image tokens' embeddings, made before counting starts */
        if (!(image = malloc(sizeof(float) * 6 * m->hp.n_embd)))
                goto out;
        for (size_t i = 0; i < 6 * (size_t)m->hp.n_embd; i++)
                image[i] = (float)((int)(i * 37 % 101) - 50) / 50.0f;

        int32_t pos = 40;
        atomic_store(&armed, true);
        for (int step = 0; step < 24; step++, pos++) {
                uint32_t best = 0;
                for (uint32_t v = 1; v < V; v++)
                        if (logits[v] > logits[best])
                                best = v;
                struct lmp_batch_entry e = { .token = (int32_t)best, .pos = pos, .seq = 0, .logits = true };
                if (lmp_ctx_decode(c, &e, 1, logits, &err) < 0)
                        break;
        }
        /* A batch mixing a prompt of sequence 1 with a step of sequence 0. */
        int32_t rope_pos[20][LMP_ROPE_AXES];
        for (int i = 0; i < 20; i++) {
                batch[i] = (struct lmp_batch_entry){ .token = (i * 7 + 3) % (int)V, .pos = i, .seq = 1,
                                                     .logits = true };
                if (m->arch->mrope && i >= 4 && i < 10) {       /* image tokens: a 2 x 3 grid at 4 */
                        batch[i].embd = image + (size_t)(i - 4) * m->hp.n_embd;
                        rope_pos[i][0] = 4;
                        rope_pos[i][1] = 4 + (i - 4) / 3;
                        rope_pos[i][2] = 4 + (i - 4) % 3;
                        batch[i].rope_pos = rope_pos[i];
                } else if (m->arch->mrope && i >= 10) {
                        rope_pos[i][0] = rope_pos[i][1] = rope_pos[i][2] = i - 3;
                        batch[i].rope_pos = rope_pos[i];
                }
        }
        batch[20] = (struct lmp_batch_entry){ .token = 9, .pos = pos, .seq = 0, .logits = true };
        int r = lmp_ctx_decode(c, batch, 21, logits, &err);
        atomic_store(&armed, false);
        long n = atomic_exchange(&n_allocs, 0);
        if (r < 0) {
                fprintf(stderr, "%s: decode: %s\n", name, err.msg);
                goto out;
        }
        printf("%s: %ld allocations in 25 armed decode calls\n", name, n);
        rc = n == 0 ? 0 : 1;
out:
        free(image);
        free(logits);
        lmp_ctx_free(c);
        lmp_threadpool_free(pool);
        lmp_model_free(m);
        lmp_gguf_free(g);
        return rc;
}

int main(int argc, char **argv) {
        const char *fx = getenv("LMPOOL_FIXTURES");
        char probe[4096];
        struct stat st;
        if (argc < 2) {
                fprintf(stderr, "usage: %s MODEL-NAME...\n", argv[0]);
                return 2;
        }
        if (!fx || (snprintf(probe, sizeof(probe), "%s/models/%s.gguf", fx, argv[1]), stat(probe, &st)) != 0) {
                printf("fixtures not found: skipped\n");
                return 77;
        }
        int rc = 0;
        for (int i = 1; i < argc; i++)
                rc |= check_model(fx, argv[i]);
        return rc;
}

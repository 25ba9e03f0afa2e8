/* lmp_quantize_model (see quantize_model.h): plan every tensor's type with
 * the mix rules, declare the output's metadata and tensors, then stream the
 * tensors one at a time through the threaded encoder. The output is
 * written next to its final name and renamed into place when complete, so
 * that a failed run never leaves a truncated model behind. */
#include "tools/quantize_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/quantize.h"
#include "tools/encode.h"

struct tensor_src {
        const struct lmp_gguf_tensor *t;
        uint64_t src_row_size;
};

static int read_row(void *ctx, int64_t row, float *out) {
        const struct tensor_src *s = ctx;
        const uint8_t *p = (const uint8_t *)s->t->data + (uint64_t)row * s->src_row_size;
        return lmp_row_to_f32(s->t->type, p, out, (int64_t)s->t->ne[0]);
}

/* Done with a tensor's input: let its pages of the read-only mapping go, so
 * that resident memory does not grow with the input file (they are read
 * again from the file if anything touches them). */
static void drop_pages(const struct lmp_gguf *g, const struct lmp_gguf_tensor *t) {
        long page = sysconf(_SC_PAGESIZE);
        if (g->fd < 0 || page <= 0 || t->size == 0)
                return;
        uintptr_t a = (uintptr_t)t->data & ~((uintptr_t)page - 1);
        uintptr_t b = (uintptr_t)t->data + t->size;
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The input's tensors, converted where the mix changes their type and
 * copied as they are otherwise, one by one into the file. */
struct conversion {
        const struct lmp_gguf *g;
        const char *const *names;
        const uint32_t *types;
        const struct lmp_quantize_opts *opts;
};

static int convert_tensor(void *ctx, uint64_t i, void *buf, const void **ret_data, uint64_t *ret_size,
                          struct lmp_error *err) {
        const struct conversion *cv = ctx;
        const struct lmp_gguf_tensor *t = &cv->g->tensors[i];
        uint32_t type = cv->types[i];
        if (type == t->type) {
                *ret_data = t->data;
                *ret_size = t->size;
                return 0;
        }
        uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        struct tensor_src src = { t, lmp_type_row_size(t->type, t->ne[0]) };
        int r = lmp_encode_tensor(type, buf, (int64_t)rows, (int64_t)t->ne[0], read_row, &src,
                                  cv->opts ? cv->opts->nthreads : 1);
        if (r < 0)
                return lmp_error_set(err, r, "tensor %s: cannot convert %s to %s%s", cv->names[i],
                                     lmp_type_name(t->type), lmp_type_name(type),
                                     r == -EDOM ? " (NaN or infinite values)" : "");
        *ret_data = buf;
        *ret_size = rows * lmp_type_row_size(type, t->ne[0]);
        return 0;
}

static void converted(void *ctx, uint64_t i, uint64_t size) {
        const struct conversion *cv = ctx;
        drop_pages(cv->g, &cv->g->tensors[i]);
        if (cv->opts && cv->opts->progress)
                cv->opts->progress(cv->opts->progress_ctx, i + 1, cv->g->n_tensors, cv->names[i], cv->types[i], size);
}

static int arch_u32(const struct lmp_gguf *g, const char *arch, const char *suffix, uint32_t *ret) {
        char key[256];
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        return lmp_gguf_get_u32(g, key, ret);
}

int lmp_quantize_model(const char *in_path, const char *out_path, const struct lmp_ftype *ft,
                       const struct lmp_quantize_opts *opts, struct lmp_error *err) {
        struct lmp_gguf *g = NULL;
        struct lmp_gguf_writer *w = NULL;
        const char **names = NULL;
        char **cnames = NULL;
        uint32_t *types = NULL;
        uint8_t *buf = NULL;
        int r;

        r = lmp_gguf_open(in_path, &g, err);
        if (r < 0)
                return r;
        uint64_t n = g->n_tensors;
        names = calloc(n ? n : 1, sizeof(*names));
        cnames = calloc(n ? n : 1, sizeof(*cnames));
        types = calloc(n ? n : 1, sizeof(*types));
        if (!names || !cnames || !types) {
                r = lmp_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (uint64_t i = 0; i < n; i++) {
                cnames[i] = lmp_gguf_str_dup(g->tensors[i].name);
                if (!cnames[i]) {
                        r = lmp_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
                names[i] = cnames[i];
        }

        /* Heads, for the n_gqa rule (absent keys leave n_gqa at 1). */
        uint32_t n_head = 0, n_head_kv = 0;
        struct lmp_gguf_str arch_s;
        if (lmp_gguf_get_str(g, "general.architecture", &arch_s) == 0) {
                char *arch = lmp_gguf_str_dup(arch_s);
                if (arch) {
                        arch_u32(g, arch, "attention.head_count", &n_head);
                        if (arch_u32(g, arch, "attention.head_count_kv", &n_head_kv) < 0)
                                n_head_kv = n_head;
                        free(arch);
                }
        }
        struct lmp_mix mix;
        lmp_mix_init(&mix, ft, names, (int)n, (int)n_head, (int)n_head_kv);

        r = lmp_gguf_writer_new((uint32_t)g->alignment, &w);
        if (r < 0) {
                lmp_error_set(err, r, "cannot create a writer");
                goto out;
        }
        for (uint64_t i = 0; i < g->n_kv; i++) {
                const struct lmp_gguf_kv *kv = &g->kv[i];
                if (lmp_gguf_str_eq(kv->key, "general.file_type") ||
                    lmp_gguf_str_eq(kv->key, "general.quantization_version"))
                        continue;
                r = lmp_gguf_writer_set_value(w, kv->key, &kv->value);
                if (r < 0) {
                        lmp_error_set(err, r, "metadata key %.*s: cannot copy", (int)kv->key.len, kv->key.ptr);
                        goto out;
                }
        }
        /* As llama.cpp writes them: the version of the block formats (2 since
         * the q4_0/q4_1/q8_0 layout change of 2023) and the file type. */
        r = lmp_gguf_writer_set_u32(w, "general.quantization_version", LMP_QUANTIZATION_VERSION);
        if (r >= 0)
                r = lmp_gguf_writer_set_u32(w, "general.file_type", ft->ftype);
        if (r < 0) {
                lmp_error_set(err, r, "cannot set general.file_type");
                goto out;
        }

        uint64_t max_size = 0;
        for (uint64_t i = 0; i < n; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                uint32_t ty = lmp_mix_type(&mix, names[i], t->n_dims, t->ne[0], t->type);
                if (ty != t->type && !lmp_row_to_f32_supported(t->type)) {
                        r = lmp_error_set(err, -ENOTSUP, "tensor %s: type %s cannot be converted (no decoder)",
                                          names[i], lmp_type_name(t->type) ? lmp_type_name(t->type) : "unknown");
                        goto out;
                }
                types[i] = ty;
                r = lmp_gguf_writer_add_tensor(w, names[i], ty, t->n_dims, t->ne, NULL);
                if (r < 0) {
                        lmp_error_set(err, r, "tensor %s: cannot declare as %s", names[i], lmp_type_name(ty));
                        goto out;
                }
                uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
                uint64_t size = rows * lmp_type_row_size(ty, t->ne[0]);
                if (ty != t->type && size > max_size)
                        max_size = size;
        }
        buf = malloc(max_size ? max_size : 1);
        if (!buf) {
                r = lmp_error_set(err, -ENOMEM, "out of memory (%" PRIu64 " bytes for one tensor)", max_size);
                goto out;
        }

        struct conversion cv = { g, names, types, opts };
        struct lmp_tensor_stream ts = { .n = n, .buf = buf, .data = convert_tensor, .written = converted,
                                        .ctx = &cv };
        r = lmp_write_model_file(w, out_path, &ts, err);
out:
        free(buf);
        free(types);
        if (cnames)
                for (uint64_t i = 0; i < n; i++)
                        free(cnames[i]);
        free(cnames);
        free(names);
        lmp_gguf_writer_free(w);
        lmp_gguf_free(g);
        return r;
}

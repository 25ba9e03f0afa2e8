/* Threaded row encoder (see encode.h). */
#include "tools/encode.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomicfile.h"
#include "common/macros.h"
#include "gguf/types.h"
#include "quant/quant.h"
#include "quant/quantize.h"

#define MAX_THREADS 64

struct job {
        uint32_t type;
        uint8_t *dst;
        int64_t row0, row1, n_per_row;
        uint64_t row_size;
        lmp_row_source_fn src;
        void *ctx;
        int ret;
};

static void *run_job(void *arg) {
        struct job *j = arg;
        float *row = malloc((size_t)j->n_per_row * sizeof(float));
        if (!row) {
                j->ret = -ENOMEM;
                return NULL;
        }
        j->ret = 0;
        for (int64_t r = j->row0; r < j->row1 && j->ret == 0; r++) {
                j->ret = j->src(j->ctx, r, row);
                if (j->ret == 0)
                        j->ret = lmp_quantize_row(j->type, row, j->dst + (uint64_t)r * j->row_size,
                                                  j->n_per_row);
        }
        free(row);
        return NULL;
}

int lmp_encode_tensor(uint32_t type, void *dst, int64_t nrows, int64_t n_per_row,
                      lmp_row_source_fn src, void *ctx, int nthreads) {
        struct job jobs[MAX_THREADS];
        pthread_t tids[MAX_THREADS];
        uint64_t row_size = lmp_type_row_size(type, (uint64_t)n_per_row);

        if (!lmp_quantize_supported(type))
                return -ENOTSUP;
        if (nrows < 0 || n_per_row <= 0 || row_size == 0)
                return -EINVAL;
        nthreads = LMP_MAX(1, LMP_MIN(nthreads, MAX_THREADS));
        if (nthreads > nrows)
                nthreads = (int)LMP_MAX(1, nrows);

        bool running[MAX_THREADS] = { false };
        for (int t = 0; t < nthreads; t++)
                jobs[t] = (struct job){
                        .type = type, .dst = dst, .n_per_row = n_per_row, .row_size = row_size,
                        .src = src, .ctx = ctx,
                        .row0 = nrows * t / nthreads, .row1 = nrows * (t + 1) / nthreads,
                };
        /* Thread 0's share runs on the calling thread; a share whose thread
         * cannot be created runs there too. */
        for (int t = 1; t < nthreads; t++)
                running[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
        run_job(&jobs[0]);
        for (int t = 1; t < nthreads; t++) {
                if (running[t])
                        pthread_join(tids[t], NULL);
                else
                        run_job(&jobs[t]);
        }
        for (int t = 0; t < nthreads; t++)
                if (jobs[t].ret < 0)
                        return jobs[t].ret;
        return 0;
}

int lmp_row_to_f32(uint32_t type, const void *src, float *out, int64_t n) {
        const struct lmp_quant_traits *tr = lmp_row_to_f32_supported(type)
                ? lmp_quant_traits((enum lmp_type)type, LMP_ISA_SCALAR) : NULL;
        const struct lmp_type_info *ti = lmp_type_info(type);
        if (!tr)
                return -ENOTSUP;
        if (n % ti->blck_size)
                return -EINVAL;
        tr->to_float(src, out, n);
        return 0;
}

bool lmp_row_to_f32_supported(uint32_t type) {
        return type < LMP_TYPE_COUNT && type != LMP_TYPE_Q8_1 && type != LMP_TYPE_Q8_K &&
               lmp_quant_traits((enum lmp_type)type, LMP_ISA_SCALAR) != NULL;
}

int lmp_write_model_file(struct lmp_gguf_writer *w, const char *out_path, const struct lmp_tensor_stream *s,
                         struct lmp_error *err) {
        struct lmp_atomic_file out = { 0 };
        int r = lmp_atomic_open(out_path, &out, err);
        if (r >= 0)
                r = lmp_gguf_writer_begin(w, out.f, err);
        for (uint64_t i = 0; r >= 0 && i < s->n; i++) {
                const void *data;
                uint64_t size;
                r = s->data(s->ctx, i, s->buf, &data, &size, err);
                if (r >= 0)
                        r = lmp_gguf_writer_write_data(w, data, size, err);
                if (r >= 0 && s->written)
                        s->written(s->ctx, i, size);
        }
        if (r >= 0)
                r = lmp_gguf_writer_finish(w, err);
        return lmp_atomic_close(&out, r, err);
}

/* Shared plumbing of the model-running subcommands: id lists and opening a
 * model into a context, with one clear message per failure. */
#include "client/cli_model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

int lmp_cli_parse_ids(const char *cmd, const char *s, int32_t **ret) {
        size_t cap = 0, n = 0;
        int32_t *ids = NULL;
        const char *p = s;
        for (;;) {
                while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
                        p++;
                if (!*p)
                        break;
                char *end;
                errno = 0;
                long v = strtol(p, &end, 10);
                if (end == p || errno || v < 0 || v > INT32_MAX ||
                    (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
                        fprintf(stderr, "lmpool %s: --ids: '%.20s' is not a token id\n", cmd, p);
                        free(ids);
                        return -1;
                }
                if (lmp_grow(&ids, &cap, n + 1, sizeof(*ids), 16) < 0) {
                        free(ids);
                        return -1;
                }
                ids[n++] = (int32_t)v;
                p = end;
        }
        if (n == 0 || n > INT32_MAX) {
                fprintf(stderr, "lmpool %s: --ids: no token ids given\n", cmd);
                free(ids);
                return -1;
        }
        *ret = ids;
        return (int)n;
}

int lmp_cli_model_open(const char *cmd, const char *path, int n_threads, uint32_t n_ctx,
                       uint32_t n_batch, struct cli_model *ret) {
        struct cli_model cm = { 0 };
        struct lmp_error err = { 0 };
        int r;
        if ((r = lmp_gguf_open(path, &cm.gguf, &err)) < 0 ||
            (r = lmp_model_load(cm.gguf, lmp_cpu_isa(), &cm.model, &err)) < 0)
                goto fail;
        if ((r = lmp_threadpool_new(n_threads, &cm.pool)) < 0) {
                lmp_error_set(&err, r, "cannot start %d threads", n_threads);
                goto fail;
        }
        /* Never more positions than the model was trained for: past them a
         * decode call reports -E2BIG. */
        if (n_ctx == 0 || n_ctx > cm.model->hp.n_ctx_train)
                n_ctx = cm.model->hp.n_ctx_train;
        struct lmp_ctx_params p = { .n_ctx = n_ctx, .n_seq = 1, .n_batch = n_batch };
        if ((r = lmp_ctx_new(cm.model, &p, cm.pool, &cm.ctx, &err)) < 0)
                goto fail;
        *ret = cm;
        return 0;
fail:
        fprintf(stderr, "lmpool %s: %s: %s\n", cmd, path, err.msg);
        lmp_cli_model_close(&cm);
        return r;
}

void lmp_cli_model_close(struct cli_model *cm) {
        lmp_ctx_free(cm->ctx);
        lmp_threadpool_free(cm->pool);
        lmp_model_free(cm->model);
        lmp_gguf_free(cm->gguf);
        *cm = (struct cli_model){ 0 };
}

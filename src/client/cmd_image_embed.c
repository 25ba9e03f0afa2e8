/* `lmpool image-embed MMPROJ --image FILE [--threads T]`: decodes the
 * image, preprocesses it as the vision encoder wants and encodes it; prints
 * one JSON line
 *   {"n_tokens": N, "n_pos": P, "grid": [rows, cols], "embeddings": [...]}
 * with the N x n_embd embeddings row-major (9 significant digits: exact
 * for f32). The conformance entry point for the encoder: keep it stable. */
#include <stdio.h>
#include <stdlib.h>

#include "client/commands.h"
#include "common/args.h"
#include "common/clock.h"
#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "image/image.h"
#include "model/vision.h"

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool image-embed MMPROJ --image FILE [--threads T]\n"
                   "Encodes an image (PNG, JPEG or WebP) with a vision encoder and prints its\n"
                   "embeddings as one JSON line.\n");
}

int lmp_cmd_image_embed(int argc, char **argv) {
        const char *path = NULL, *image = NULL;
        long long threads = 0;
        const struct lmp_opt opts[] = {
                { "image", 0, LMP_OPT_STRING, &image },
                { "threads", 0, LMP_OPT_LONG, &threads, 0, LMP_THREADPOOL_MAX },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool image-embed", argc, argv, opts, usage, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!path || !image) {
                usage(stderr);
                return 2;
        }
        int rc = 1;
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_vision *v = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_image img = { 0 };
        struct lmp_vision_image pre = { 0 };
        struct lmp_image_embd e = { 0 };
        const char *what = path;
        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_vision_load(g, lmp_cpu_isa(), &v, &err) < 0)
                goto fail;
        what = image;
        if (lmp_image_load(image, NULL, &img, &err) < 0 ||
            lmp_vision_preprocess(v, img.rgb, img.width, img.height, &pre, &err) < 0)
                goto fail;
        if (lmp_threadpool_new((int)threads, &pool) < 0) {
                fprintf(stderr, "lmpool image-embed: cannot start %lld threads\n", threads);
                goto out;
        }
        double t0 = lmp_clock_s();
        if (lmp_vision_encode(v, pool, &pre, &e, &err) < 0)
                goto fail;
        fprintf(stderr, "image: %ux%u, %u tokens encoded in %.3f s; %u of %u matrices on bf16 products\n",
                pre.width, pre.height, e.n_tokens, lmp_clock_s() - t0, v->n_bf16, v->n_mat);
        printf("{\"n_tokens\": %u, \"n_pos\": %u, \"grid\": [%u, %u], \"embeddings\": [", e.n_tokens,
               e.n_pos, e.grid_rows, e.grid_cols);
        size_t n = (size_t)e.n_tokens * e.n_embd;
        for (size_t i = 0; i < n; i++)
                printf(i ? ", %.9g" : "%.9g", e.data[i]);
        printf("]}\n");
        rc = fflush(stdout) == 0 ? 0 : 1;
        goto out;
fail:
        fprintf(stderr, "lmpool image-embed: %s: %s\n", what, err.msg);
out:
        lmp_image_embd_clear(&e);
        lmp_vision_image_clear(&pre);
        lmp_image_clear(&img);
        lmp_threadpool_free(pool);
        lmp_vision_free(v);
        lmp_gguf_free(g);
        return rc;
}

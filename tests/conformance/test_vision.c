/* Conformance of the vision encoder with llama.cpp's libmtmd on the
 * vision fixtures (argument: the image's name, e.g. "img2"). The PNG is
 * decoded and must give exactly the pixels of the raw .rgb file; the image
 * is preprocessed (img2 is resized) and encoded; the token count, n_pos and
 * the grid (from the references' decoder positions) must be exact, and
 * every embedding value within the README's limit (max |d| <= 0.005). The
 * instruction set comes from LMPOOL_ISA, so the suite also runs with the
 * scalar kernels. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/readfile.h"
#include "image/image.h"
#include "model/vision.h"

#define MAX_ABS 0.005

static const cJSON *image_chunk(const cJSON *refs) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(refs, "chunks")) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
                if (cJSON_IsString(t) && strcmp(t->valuestring, "image") == 0)
                        return c;
        }
        return NULL;
}

static int ref_int(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? v->valueint : -1;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s IMAGE (e.g. img2)\n", argv[0]);
                return 2;
        }
        const char *name = argv[1];
        const char *fx = getenv("LMPOOL_FIXTURES");
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/vision/mmproj-qwen2vl-f16.gguf", fx ? fx : "");
        if (!fx || stat(path, &st) != 0) {
                printf("vision fixtures not found (LMPOOL_FIXTURES): skipped\n");
                return 77;
        }
        int rc = 1;
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_vision *v = NULL;
        struct lmp_threadpool *pool = NULL;
        struct lmp_image img = { 0 };
        struct lmp_vision_image pre = { 0 };
        struct lmp_image_embd e = { 0 };
        char *text = NULL, *raw = NULL;
        size_t tlen, rawlen;
        cJSON *refs = NULL;

        if (lmp_gguf_open(path, &g, &err) < 0 || lmp_vision_load(g, lmp_cpu_isa(), &v, &err) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg);
                goto out;
        }
        snprintf(path, sizeof(path), "%s/vision/%s.refs.json", fx, name);
        if (lmp_read_file(path, &text, &tlen) < 0 || !(refs = cJSON_Parse(text))) {
                fprintf(stderr, "%s: cannot read or parse\n", path);
                goto out;
        }
        const cJSON *chunk = image_chunk(refs);
        const cJSON *jimg = cJSON_GetObjectItemCaseSensitive(refs, "image");
        const cJSON *ref_embd = cJSON_GetObjectItemCaseSensitive(chunk, "embeddings");
        const cJSON *ref_pos = cJSON_GetObjectItemCaseSensitive(chunk, "decoder_pos");
        if (!chunk || !cJSON_IsArray(ref_embd) || !cJSON_IsArray(ref_pos)) {
                fprintf(stderr, "%s: no image chunk with embeddings and positions\n", path);
                goto out;
        }

        /* the PNG decodes to the raw file's pixels */
        snprintf(path, sizeof(path), "%s/vision/%s.png", fx, name);
        if (lmp_image_load(path, NULL, &img, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                goto out;
        }
        snprintf(path, sizeof(path), "%s/vision/%s.rgb", fx, name);
        if (lmp_read_file(path, &raw, &rawlen) < 0) {
                fprintf(stderr, "%s: cannot read\n", path);
                goto out;
        }
        if ((int)img.width != ref_int(jimg, "w") || (int)img.height != ref_int(jimg, "h") ||
            rawlen != (size_t)img.width * img.height * 3 || memcmp(raw, img.rgb, rawlen) != 0) {
                fprintf(stderr, "%s: PNG decoded to %ux%u, not the raw file's pixels (%dx%d)\n", name,
                        img.width, img.height, ref_int(jimg, "w"), ref_int(jimg, "h"));
                goto out;
        }

        if (lmp_threadpool_new(2, &pool) < 0) {
                fprintf(stderr, "cannot start threads\n");
                goto out;
        }
        if (lmp_vision_preprocess(v, img.rgb, img.width, img.height, &pre, &err) < 0 ||
            lmp_vision_encode(v, pool, &pre, &e, &err) < 0) {
                fprintf(stderr, "%s: %s\n", name, err.msg);
                goto out;
        }

        /* counts and grid: exact */
        int rows = 0, cols = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, ref_pos) {
                rows = (int)fmax(rows, cJSON_GetArrayItem(p, 1)->valueint + 1);
                cols = (int)fmax(cols, cJSON_GetArrayItem(p, 2)->valueint + 1);
        }
        int n_tokens = ref_int(chunk, "n_tokens"), n_pos = ref_int(chunk, "n_pos");
        if ((int)e.n_tokens != n_tokens || (int)e.n_pos != n_pos || (int)e.grid_rows != rows ||
            (int)e.grid_cols != cols || cJSON_GetArraySize(ref_pos) != n_tokens) {
                fprintf(stderr, "%s: %u tokens, n_pos %u, grid %ux%u; references: %d, %d, %dx%d\n", name,
                        e.n_tokens, e.n_pos, e.grid_rows, e.grid_cols, n_tokens, n_pos, rows, cols);
                goto out;
        }
        size_t n = (size_t)e.n_tokens * e.n_embd;
        if ((size_t)cJSON_GetArraySize(ref_embd) != n) {
                fprintf(stderr, "%s: %zu embedding values, references %d\n", name, n,
                        cJSON_GetArraySize(ref_embd));
                goto out;
        }
        double mx = 0;
        size_t at = 0, i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ref_embd) {
                double d = fabs(it->valuedouble - (double)e.data[i]);
                if (!(d <= mx)) {       /* NaN counts as the worst */
                        mx = isnan(d) ? INFINITY : d;
                        at = i;
                }
                i++;
        }
        printf("%s (%s): %ux%u -> %ux%u, %u tokens, grid %ux%u, n_pos %u, max |d| %.6f at %zu "
               "(limit %.3f)\n", name, lmp_isa_name(lmp_cpu_isa()), img.width, img.height, pre.width,
               pre.height, e.n_tokens, e.grid_rows, e.grid_cols, e.n_pos, mx, at, MAX_ABS);
        rc = mx <= MAX_ABS ? 0 : 1;
out:
        cJSON_Delete(refs);
        free(text);
        free(raw);
        lmp_image_embd_clear(&e);
        lmp_vision_image_clear(&pre);
        lmp_image_clear(&img);
        lmp_threadpool_free(pool);
        lmp_vision_free(v);
        lmp_gguf_free(g);
        return rc;
}

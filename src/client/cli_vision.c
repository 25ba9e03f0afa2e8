/* The image prompt of `lmpool logits` and `lmpool run`: text before the
 * marker + "<|vision_start|>", the image's tokens, "<|vision_end|>" + the
 * text after it. Positions follow llama.cpp's libmtmd for Qwen2-VL: text
 * tokens have the same rotary position on every axis, one more per token;
 * the image's tokens all have time position t (the text's next position),
 * row t + r and column t + c; the text after the image goes on from t +
 * n_pos (n_pos = max(rows, columns)). KV positions simply count entries. */
#include "client/cli_vision.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/grow.h"
#include "image/image.h"

static int tokenize(const struct lmp_vocab *vocab, const char *text, size_t len, bool first,
                    int32_t **ids, size_t *cap, size_t *n) {
        size_t need = 0;
        int r = lmp_tokenize(vocab, text, len, first, true, NULL, 0, &need);
        if (r < 0 && r != -ENOSPC)
                return r;
        if (lmp_grow(ids, cap, *n + need + 1, sizeof(**ids), 64) < 0)
                return -ENOMEM;
        if ((r = lmp_tokenize(vocab, text, len, first, true, *ids + *n, need, &need)) < 0)
                return r;
        *n += need;
        return 0;
}

static int build_text(const char *cmd, const struct lmp_vocab *vocab, const char *prompt,
                      int32_t **ret_ids, int *ret_n0, int *ret_n) {
        const char *mark = strstr(prompt, LMP_MEDIA_MARKER);
        const char *before = mark ? prompt : "", *after = mark ? mark + strlen(LMP_MEDIA_MARKER) : prompt;
        size_t before_len = mark ? (size_t)(mark - prompt) : 0;
        if (strstr(after, LMP_MEDIA_MARKER)) {
                fprintf(stderr, "lmpool %s: the prompt marks more than one image (%s)\n", cmd,
                        LMP_MEDIA_MARKER);
                return -EINVAL;
        }
        char *a = malloc(before_len + 32), *b = malloc(strlen(after) + 32);
        int32_t *ids = NULL;
        size_t cap = 0, n = 0, n0;
        int r = -ENOMEM;
        if (!a || !b)
                goto out;
        memcpy(a, before, before_len);
        strcpy(a + before_len, "<|vision_start|>");
        strcpy(b, "<|vision_end|>");
        strcat(b, after);
        if ((r = tokenize(vocab, a, strlen(a), true, &ids, &cap, &n)) < 0)
                goto out;
        n0 = n;
        if ((r = tokenize(vocab, b, strlen(b), false, &ids, &cap, &n)) < 0)
                goto out;
        if (n > INT32_MAX / 2) {
                r = -E2BIG;
                goto out;
        }
        *ret_ids = ids;
        ids = NULL;
        *ret_n0 = (int)n0;
        *ret_n = (int)n;
        r = 0;
out:
        if (r < 0)
                fprintf(stderr, "lmpool %s: cannot tokenize the prompt (%s)\n", cmd, lmp_strerror_name(r));
        free(ids);
        free(a);
        free(b);
        return r;
}

int lmp_cli_mm_prompt(const char *cmd, const struct cli_model *cm, const struct lmp_vocab *vocab,
                      const char *mmproj_path, const char *image_path, const char *prompt,
                      struct cli_mm_prompt *ret) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_vision *v = NULL;
        struct lmp_image img = { 0 };
        struct lmp_vision_image pre = { 0 };
        struct cli_mm_prompt p = { 0 };
        int32_t *text = NULL;
        int n0 = 0, nt = 0, r;
        const char *what = mmproj_path;
        if (!cm->model->arch->mrope) {
                fprintf(stderr, "lmpool %s: model %s has no image input (architecture %s)\n", cmd,
                        cm->model->arch->name, cm->model->arch->name);
                return -ENOTSUP;
        }
        if ((r = lmp_gguf_open(mmproj_path, &g, &err)) < 0 ||
            (r = lmp_vision_load(g, cm->model->isa, &v, &err)) < 0)
                goto fail;
        if (v->hp.proj_dim != cm->model->hp.n_embd) {
                r = lmp_error_set(&err, -EINVAL, "projects to %u values, the model's width is %u",
                                  v->hp.proj_dim, cm->model->hp.n_embd);
                goto fail;
        }
        what = image_path;
        if ((r = lmp_image_load(image_path, NULL, &img, &err)) < 0 ||
            (r = lmp_vision_preprocess(v, img.rgb, img.width, img.height, &pre, &err)) < 0)
                goto fail;
        double t0 = lmp_clock_s();
        if ((r = lmp_vision_encode(v, cm->pool, &pre, &p.embd, &err)) < 0)
                goto fail;
        p.encode_s = lmp_clock_s() - t0;
        if ((r = build_text(cmd, vocab, prompt, &text, &n0, &nt)) < 0)
                goto out;
        p.n = nt + (int)p.embd.n_tokens;
        p.image_first = n0;
        p.ids = malloc((size_t)p.n * sizeof(*p.ids));
        p.rope_pos = malloc((size_t)p.n * sizeof(*p.rope_pos));
        if (!p.ids || !p.rope_pos) {
                fprintf(stderr, "lmpool %s: out of memory\n", cmd);
                r = -ENOMEM;
                goto out;
        }
        int32_t t = 0;
        int i = 0;
        for (; i < n0; i++, t++) {
                p.ids[i] = text[i];
                p.rope_pos[i][0] = p.rope_pos[i][1] = p.rope_pos[i][2] = t;
        }
        for (uint32_t k = 0; k < p.embd.n_tokens; k++, i++) {
                p.ids[i] = -1;
                p.rope_pos[i][0] = t;
                p.rope_pos[i][1] = t + (int32_t)(k / p.embd.grid_cols);
                p.rope_pos[i][2] = t + (int32_t)(k % p.embd.grid_cols);
        }
        t += (int32_t)p.embd.n_pos;
        for (int j = n0; j < nt; j++, i++, t++) {
                p.ids[i] = text[j];
                p.rope_pos[i][0] = p.rope_pos[i][1] = p.rope_pos[i][2] = t;
        }
        p.next_pos = t;
        *ret = p;
        p = (struct cli_mm_prompt){ 0 };
        r = 0;
        goto out;
fail:
        fprintf(stderr, "lmpool %s: %s: %s\n", cmd, what, err.msg);
out:
        lmp_cli_mm_prompt_free(&p);
        free(text);
        lmp_vision_image_clear(&pre);
        lmp_image_clear(&img);
        lmp_vision_free(v);
        lmp_gguf_free(g);
        return r;
}

void lmp_cli_mm_prompt_free(struct cli_mm_prompt *p) {
        free(p->ids);
        free(p->rope_pos);
        lmp_image_embd_clear(&p->embd);
        *p = (struct cli_mm_prompt){ 0 };
}

int lmp_cli_mm_append(struct cli_mm_prompt *p, const int32_t *ids, int n) {
        if (n < 0 || n > INT32_MAX / 2 - p->n)
                return -E2BIG;
        int32_t *ni = realloc(p->ids, (size_t)(p->n + n) * sizeof(*ni));
        if (!ni)
                return -ENOMEM;
        p->ids = ni;
        int32_t(*nr)[LMP_ROPE_AXES] = realloc(p->rope_pos, (size_t)(p->n + n) * sizeof(*nr));
        if (!nr)
                return -ENOMEM;
        p->rope_pos = nr;
        for (int i = 0; i < n; i++, p->n++, p->next_pos++) {
                p->ids[p->n] = ids[i];
                p->rope_pos[p->n][0] = p->rope_pos[p->n][1] = p->rope_pos[p->n][2] = p->next_pos;
        }
        return 0;
}

struct lmp_batch_entry lmp_cli_mm_entry(const struct cli_mm_prompt *p, int i, bool logits) {
        struct lmp_batch_entry e = {
                .token = p->ids[i], .pos = i, .seq = 0, .logits = logits, .rope_pos = p->rope_pos[i],
        };
        if (p->ids[i] < 0) {
                e.token = 0;
                e.embd = p->embd.data + (size_t)(i - p->image_first) * p->embd.n_embd;
        }
        return e;
}

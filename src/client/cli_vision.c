/* The image prompt of `lmpool logits` and `lmpool run`: laid out by
 * tokenizer/media.h (text before the marker + "<|vision_start|>", the
 * image's tokens, "<|vision_end|>" + the text after it) with the M-RoPE
 * positions of lmp_vision_positions(), as the worker lays out a request's.
 * KV positions simply count entries. */
#include "client/cli_vision.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "image/image.h"

int lmp_cli_mm_prompt(const char *cmd, const struct cli_model *cm, const struct lmp_vocab *vocab,
                      const char *mmproj_path, const char *image_path, const char *prompt,
                      struct cli_mm_prompt *ret) {
        struct lmp_error err = { 0 };
        struct lmp_gguf *g = NULL;
        struct lmp_vision *v = NULL;
        struct lmp_image img = { 0 };
        struct lmp_vision_image pre = { 0 };
        struct cli_mm_prompt p = { 0 };
        char *text = NULL;
        int r;
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
        /* One image: at its marker, or first. */
        size_t marks = lmp_media_markers(prompt), need = 0;
        if (marks > 1) {
                fprintf(stderr, "lmpool %s: the prompt marks more than one image (%s)\n", cmd, LMP_MEDIA_MARKER);
                r = -EINVAL;
                goto out;
        }
        if (!(text = malloc(strlen(LMP_MEDIA_MARKER) + strlen(prompt) + 1))) {
                r = -ENOMEM;
                goto oom;
        }
        strcpy(text, marks ? "" : LMP_MEDIA_MARKER);
        strcat(text, prompt);
        r = lmp_tokenize_media(vocab, text, strlen(text), &p.embd.n_tokens, 1, NULL, 0, &need);
        if (r == 0 || r == -ENOSPC) {
                r = -ENOMEM;
                if (need > INT32_MAX / 2) {
                        r = -E2BIG;
                } else if ((p.ids = malloc((need ? need : 1) * sizeof(*p.ids))) &&
                           (p.rope_pos = malloc((need ? need : 1) * sizeof(*p.rope_pos)))) {
                        r = lmp_tokenize_media(vocab, text, strlen(text), &p.embd.n_tokens, 1, p.ids, need, &need);
                }
        }
        if (r == -ENOMEM)
                goto oom;
        if (r < 0) {
                fprintf(stderr, "lmpool %s: cannot tokenize the prompt (%s)\n", cmd, lmp_strerror_name(r));
                goto out;
        }
        p.n = (int)need;
        while (p.image_first < p.n && p.ids[p.image_first] >= 0)
                p.image_first++;
        const struct lmp_image_embd *embd = &p.embd;
        int64_t t = lmp_vision_positions(p.ids, need, &embd, 1, 0, p.rope_pos);
        if (t < 0) {
                r = (int)t;
                fprintf(stderr, "lmpool %s: the prompt's image entries do not match the image\n", cmd);
                goto out;
        }
        p.next_pos = (int32_t)t;
        *ret = p;
        p = (struct cli_mm_prompt){ 0 };
        r = 0;
        goto out;
oom:
        fprintf(stderr, "lmpool %s: out of memory\n", cmd);
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

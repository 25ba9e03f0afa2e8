/* Prompts with images (media.h): the text between markers tokenized with
 * the vision delimiters glued on, as llama.cpp's libmtmd tokenizes it. */
#include "tokenizer/media.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define START "<|vision_start|>"
#define END "<|vision_end|>"

size_t lmp_media_markers(const char *text) {
        size_t n = 0;
        for (const char *p = text; (p = strstr(p, LMP_MEDIA_MARKER)); p += strlen(LMP_MEDIA_MARKER))
                n++;
        return n;
}

/* Appends the tokens of [pre] + text + [post] at out + *n, or counts them
 * past cap. */
static int piece(const struct lmp_vocab *v, const char *text, size_t len, bool pre, bool post, bool first,
                 int32_t *out, size_t cap, size_t *n) {
        size_t a = pre ? strlen(END) : 0, b = post ? strlen(START) : 0, got = 0;
        char *s = malloc(a + len + b + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, END, a);
        memcpy(s + a, text, len);
        memcpy(s + a + len, START, b);
        s[a + len + b] = '\0';
        size_t room = *n < cap ? cap - *n : 0;
        int r = lmp_tokenize(v, s, a + len + b, first, true, room ? out + *n : NULL, room, &got);
        free(s);
        if (r < 0 && r != -ENOSPC)
                return r;
        *n += got;
        return 0;
}

int lmp_tokenize_media(const struct lmp_vocab *v, const char *text, size_t len, const uint32_t *n_tokens,
                       uint32_t n_images, int32_t *out, size_t cap, size_t *ret_n) {
        const size_t m = strlen(LMP_MEDIA_MARKER);
        const char *p = text, *end = text + len;
        size_t n = 0;
        int r;

        for (uint32_t k = 0; k <= n_images; k++) {
                const char *mark = k < n_images ? memmem(p, (size_t)(end - p), LMP_MEDIA_MARKER, m) : NULL;
                if (k < n_images && !mark)
                        return -EINVAL;
                if (k == n_images && memmem(p, (size_t)(end - p), LMP_MEDIA_MARKER, m))
                        return -EINVAL;
                const char *stop = mark ? mark : end;
                if ((r = piece(v, p, (size_t)(stop - p), k > 0, k < n_images, k == 0, out, cap, &n)) < 0)
                        return r;
                if (k == n_images)
                        break;
                for (uint32_t j = 0; j < n_tokens[k]; j++, n++)
                        if (n < cap)
                                out[n] = LMP_MEDIA_ID(k);
                p = mark + m;
        }
        *ret_n = n;
        return n > cap ? -ENOSPC : 0;
}

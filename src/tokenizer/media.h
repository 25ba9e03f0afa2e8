/* Prompts with images: the text is split where each image goes (a
 * marker), tokenized, and each image's place left as a run of entries its
 * encoder output fills. One layout for `lmpool run` and for the worker:
 * llama.cpp's libmtmd for Qwen2-VL, "<|vision_start|>" before an image and
 * "<|vision_end|>" after it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* Where an image goes in a prompt. */
#define LMP_MEDIA_MARKER "<__media__>"

/* The id an entry of image k's run has in the output. */
#define LMP_MEDIA_ID(k) (-1 - (int32_t)(k))

/* Tokenizes text (len bytes), whose markers stand for n_images images, in
 * order: the text before the first image with add_special (BOS), the
 * others without. Image k's place is n_tokens[k] entries of
 * LMP_MEDIA_ID(k). Writes at most cap ids; -ENOSPC when they do not fit
 * (*ret_n: how many were needed), -EINVAL when the text does not have
 * n_images markers, -ENOMEM. */
int lmp_tokenize_media(const struct lmp_vocab *v, const char *text, size_t len, const uint32_t *n_tokens,
                       uint32_t n_images, int32_t *out, size_t cap, size_t *ret_n);

/* Counts the markers in text (NUL-terminated). */
size_t lmp_media_markers(const char *text);

/* A prompt with an image for `lmpool logits` and `lmpool run`: the text
 * split at the image's marker, tokenized, and the image encoded, laid out
 * as the batch entries of one sequence the way llama.cpp's libmtmd lays it
 * out for Qwen2-VL. Messages go to stderr here, at the CLI boundary. */
#pragma once

#include <stdint.h>

#include "client/cli_model.h"
#include "model/vision.h"
#include "tokenizer/media.h"
#include "tokenizer/tokenizer.h"

/* Entry i of the prompt: token ids[i] (or, for image_first <= i <
 * image_first + embd.n_tokens, image token i - image_first), KV position
 * i, rotary positions rope_pos[i] (time, row, column). */
struct cli_mm_prompt {
        int n;                  /* entries */
        int32_t *ids;           /* (n) -1 for an image token */
        int32_t (*rope_pos)[LMP_ROPE_AXES];     /* (n) */
        int image_first;
        struct lmp_image_embd embd;
        int32_t next_pos;       /* the rotary position after the prompt */
        double encode_s;        /* seconds in lmp_vision_encode() */
};

/* Loads the mmproj at mmproj_path (its width must be the model's), decodes
 * and encodes the image with cm's threads, and tokenizes the prompt with
 * "<|vision_start|>" before the image and "<|vision_end|>" after it; the
 * image goes where LMP_MEDIA_MARKER is, or first. The model must have
 * M-RoPE. */
int lmp_cli_mm_prompt(const char *cmd, const struct cli_model *cm, const struct lmp_vocab *vocab,
                      const char *mmproj_path, const char *image_path, const char *prompt,
                      struct cli_mm_prompt *ret);
void lmp_cli_mm_prompt_free(struct cli_mm_prompt *p);

/* Appends text token ids after the prompt (a continuation fed back). */
int lmp_cli_mm_append(struct cli_mm_prompt *p, const int32_t *ids, int n);

/* Batch entry i of the prompt. */
struct lmp_batch_entry lmp_cli_mm_entry(const struct cli_mm_prompt *p, int i, bool logits);

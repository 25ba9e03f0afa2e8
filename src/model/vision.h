/* A vision encoder loaded from an mmproj GGUF file (general.architecture
 * `clip`), and what it turns an image into: one embedding of the language
 * model's width per image token, to be fed to the decoder in place of
 * token embeddings.
 *
 * struct lmp_vision is read-only like struct lmp_model: hyperparameters
 * from the metadata and const views of the weights inside the mapping
 * (nothing is copied), each with the kernels of its type. It borrows the
 * struct lmp_gguf. Projector supported: `qwen2vl_merger` (Qwen2-VL).
 *
 * Encoding an image is two steps: lmp_vision_preprocess() resizes RGB bytes
 * to the size the model wants and normalizes them, lmp_vision_encode() runs
 * the encoder on that. Both allocate what they need per image (an image is
 * hundreds of tokens at once, not a decode step). */
#pragma once

#include <stdint.h>

#include "common/error.h"
#include "common/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/quant.h"

enum lmp_projector {
        LMP_PROJECTOR_QWEN2VL_MERGER,   /* 2x2 patches concatenated -> mm.0 -> GELU -> mm.2 */
};

struct lmp_vision_layer {
        const float *ln1, *ln1_b;               /* (n_embd) before attention */
        struct lmp_weight wq, wk, wv, wo;       /* (n_embd -> n_embd) */
        const float *bq, *bk, *bv, *bo;         /* (n_embd) */
        const float *ln2, *ln2_b;               /* (n_embd) before the feed-forward */
        struct lmp_weight ffn_up, ffn_down;     /* (n_embd -> n_ff), (n_ff -> n_embd) */
        const float *b_up, *b_down;             /* (n_ff), (n_embd) */
};

struct lmp_vision_hparams {
        uint32_t image_size;            /* clip.vision.image_size (informational) */
        uint32_t patch_size;            /* pixels per patch side */
        uint32_t n_embd;
        uint32_t n_ff;
        uint32_t n_layer;
        uint32_t n_head;
        uint32_t head_dim;
        uint32_t n_merge;               /* patches merged per side into one token */
        uint32_t proj_dim;              /* output width: the language model's n_embd */
        float eps;
        float rope_base;                /* 2-D rotary base */
        float mean[3], std[3];          /* image normalization per channel */
        uint32_t min_pixels, max_pixels;        /* resize limits */
};

struct lmp_vision {
        enum lmp_projector proj;
        struct lmp_vision_hparams hp;
        enum lmp_isa isa;
        bool bf16;              /* bf16 products run here (lmp_cpu_bf16() at the AVX-512 level) */
        uint32_t n_mat, n_bf16; /* matrices, and those whose wide products run on bf16 */
        const struct lmp_gguf *gguf;

        /* Patch embedding: a convolution kernel of patch x patch x 3 per
         * output channel, as rows of (channel, row, column); Qwen2-VL has
         * two (temporal halves), summed for a still image. */
        struct lmp_weight patch[2];
        struct lmp_vision_layer *layers;        /* (n_layer) */
        const float *post_ln, *post_ln_b;       /* (n_embd) */
        struct lmp_weight mm0, mm2;             /* (4 n_embd -> 4 n_embd), (4 n_embd -> proj_dim) */
        const float *mm0_b, *mm2_b;
};

/* An image ready for the encoder: width x height (multiples of patch *
 * n_merge) normalized values, planar (channel, row, column). */
struct lmp_vision_image {
        uint32_t width, height;
        float *data;            /* (3, height, width) */
};

/* The encoder's output. */
struct lmp_image_embd {
        uint32_t n_tokens;      /* grid_rows * grid_cols */
        uint32_t grid_rows, grid_cols;  /* tokens per column and per row */
        uint32_t n_pos;         /* positions the image advances the text by: max(rows, cols) */
        uint32_t n_embd;        /* proj_dim */
        float *data;            /* (n_tokens, n_embd), row-major in reading order */
};

/* Refuses, naming the key or tensor, a file that is not a clip vision
 * encoder with a supported projector, or whose tensors have the wrong shape
 * or a type without kernels. */
int lmp_vision_load(const struct lmp_gguf *g, enum lmp_isa isa, struct lmp_vision **ret,
                    struct lmp_error *err);
void lmp_vision_free(struct lmp_vision *v);

/* The size an image of width x height is resized to: the nearest multiples
 * of patch * n_merge that keep the aspect ratio, within the pixel limits
 * (Qwen2-VL's "smart resize"). -EINVAL for an empty image. */
int lmp_vision_target_size(const struct lmp_vision *v, uint32_t width, uint32_t height,
                           uint32_t *ret_width, uint32_t *ret_height, struct lmp_error *err);

/* rgb: width x height pixels of 3 bytes, row-major. Resizes (Pillow's
 * bicubic, as llama.cpp's preprocessing does) to lmp_vision_target_size() and
 * normalizes with the model's mean and std. */
int lmp_vision_preprocess(const struct lmp_vision *v, const uint8_t *rgb, uint32_t width,
                          uint32_t height, struct lmp_vision_image *ret, struct lmp_error *err);
void lmp_vision_image_clear(struct lmp_vision_image *img);

/* Runs the encoder on a preprocessed image with the pool's threads (the
 * pool must not be running anything else). */
int lmp_vision_encode(const struct lmp_vision *v, struct lmp_threadpool *pool,
                      const struct lmp_vision_image *img, struct lmp_image_embd *ret,
                      struct lmp_error *err);
void lmp_image_embd_clear(struct lmp_image_embd *e);

/* The rotary positions (time, row, column) of a prompt's n entries, from
 * position t: a text entry (ids[i] >= 0) has t on every axis and advances
 * it by one; image k's run (ids LMP_MEDIA_ID(k) = -1 - k, embd[k]'s
 * n_tokens entries in reading order) has time t, row t + r, column t + c,
 * and advances t by embd[k]->n_pos (Qwen2-VL's M-RoPE, as llama.cpp lays
 * it out). Returns the position after the prompt, or -EINVAL when a run
 * does not match its image. */
int64_t lmp_vision_positions(const int32_t *ids, size_t n, const struct lmp_image_embd *const *embd, size_t n_embd,
                             int32_t t, int32_t (*rope)[LMP_ROPE_AXES]);

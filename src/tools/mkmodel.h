/* The random model generator: a seeded, reproducible model with random
 * weights in the exact shape (tensor names, dimensions, hyperparameters,
 * vocabulary size, tied output) of a real model, in any file type of the
 * quantizer's table. It exists because nobody downloads models on the
 * machines lmpool is built and tested on: benchmarks, tests and the first
 * run need real-sized models, and speed does not depend on weight values.
 * A random model produces noise, never text.
 *
 * The vocabulary is either copied from a vocabulary GGUF (every tokenizer.*
 * key) or built here: a SentencePiece-style ("llama") vocabulary with all
 * 256 byte pieces, the special tokens of the shape's chat template at the
 * ids the real model uses, single characters and filler word pieces up to
 * the real vocabulary size, and a chat template in the model's format.
 *
 * Weights are generated row by row and encoded tensor by tensor while the
 * file is written, so memory stays bounded by the largest encoded tensor. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "tools/mix.h"
#include "tools/quantize_model.h"

struct lmp_shape {
        const char *name;       /* "tinyllama-1.1b" */
        const char *arch;       /* "llama", "qwen2", "qwen2vl", "qwen3", "phi3", "gemma3", "bert" or "clip" */
        const char *model_name; /* general.name */
        uint32_t n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, n_ctx;
        float rope_freq_base, norm_eps;
        bool tied_output;       /* no output.weight */
        bool qkv_bias;          /* q/k/v biases (qwen2) */
        bool llama3_rope;       /* rope_freqs.weight with Llama 3.1 scaling factors */
        int chat;               /* which vocabulary and chat template (mkmodel.c) */
        /* The newer families (zero for llama and qwen2 shapes): */
        uint32_t head_dim;      /* 0: n_embd / n_head */
        uint32_t n_swa;         /* gemma3: attention.sliding_window */
        float rope_scale;       /* linear RoPE scaling factor (Gemma 3 4B: 8); 0: none */
        uint32_t n_ctx_orig;    /* phi3: LongRoPE's original context (rope_factors_*) */
        uint32_t mrope[4];      /* qwen2vl: rope.dimension_sections (time, row, column, unused) */
        /* A vision encoder (arch "clip", an mmproj file, projector qwen2vl_merger):
         * n_embd, n_ff, n_layer, n_head are the ViT's; no vocabulary. */
        uint32_t patch_size;    /* pixels per patch side */
        uint32_t proj_dim;      /* the projector's output: the language model's n_embd */
        /* Random values drawn as bf16 values, as a model trained in bf16
         * holds them (its f16 and f32 files keep them exactly). */
        bool bf16_values;
};

/* NULL when unknown. */
const struct lmp_shape *lmp_shape_find(const char *name);
const struct lmp_shape *lmp_shape_list(int *ret_n);

struct lmp_mkmodel_opts {
        const struct lmp_shape *shape;
        const struct lmp_ftype *ft;
        const char *vocab_path;         /* NULL: build a vocabulary */
        uint64_t seed;
        int nthreads;
        bool dry_run;                   /* plan only: report the size, write nothing */
        lmp_progress_fn progress;
        void *progress_ctx;
};

struct lmp_mkmodel_result {
        uint64_t file_size;     /* bytes of the whole file */
        uint64_t tensor_bytes;  /* bytes of tensor data, padding excluded */
};

/* Writes the model to out_path (through out_path.tmp, renamed when complete).
 * *ret (may be NULL) gets the sizes, also for a dry run. */
int lmp_mkmodel(const char *out_path, const struct lmp_mkmodel_opts *opts, struct lmp_mkmodel_result *ret,
                struct lmp_error *err);

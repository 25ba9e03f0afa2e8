/* What the model-running subcommands (logits, run) share: parsing a list
 * of token ids and opening a model file into a ready context. Messages go
 * to stderr here, at the CLI boundary, prefixed with the file's name. */
#pragma once

#include <stdint.h>

#include "model/model.h"

struct cli_model {
        struct lmp_gguf *gguf;
        struct lmp_model *model;
        struct lmp_threadpool *pool;
        struct lmp_ctx *ctx;
};

/* Parses ids separated by spaces or commas. Returns the count (>= 1) and a
 * malloc'd array in *ret, or -1 after printing what is wrong. */
int lmp_cli_parse_ids(const char *cmd, const char *s, int32_t **ret);

/* Opens path, loads the model with the CPU's kernels (LMPOOL_ISA honoured),
 * starts n_threads threads (0: one per CPU) and creates a context of one
 * sequence with n_ctx positions (0 or more than the model's training
 * length: that length) and batches of n_batch. */
int lmp_cli_model_open(const char *cmd, const char *path, int n_threads, uint32_t n_ctx,
                       uint32_t n_batch, struct cli_model *ret);
void lmp_cli_model_close(struct cli_model *cm);

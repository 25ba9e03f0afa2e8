/* A Jinja interpreter for the subset of Jinja that models' chat templates
 * use, rendering a template the way Hugging Face's tokenizer does with
 * Python's jinja2: an immutable sandbox with trim_blocks and lstrip_blocks,
 * the loop controls, tojson as json.dumps(ensure_ascii=False),
 * raise_exception(msg) and strftime_now(fmt). The template text is lexed and
 * parsed into a tree, then evaluated over a small value type against a
 * context given as a JSON object (messages, tools, bos_token, ...).
 *
 * Every render is bounded: nesting and call depth, output bytes, loop
 * iterations and the memory the render allocates each have a limit, and
 * reaching one is an error that names it. Any input text gives a string or
 * an error, never a crash. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/error.h"

struct lmp_jinja_limits {
        size_t max_depth;       /* nesting of statements, expressions and macro calls */
        size_t max_output;      /* bytes of rendered text */
        size_t max_iterations;  /* loop iterations and macro calls, in all */
        size_t max_memory;      /* bytes the render may allocate */
};

/* The limits used when a caller passes none: depth 200, 4 MiB of output,
 * 1,000,000 iterations, 256 MiB of memory. */
extern const struct lmp_jinja_limits lmp_jinja_default_limits;

struct lmp_jinja_opts {
        const struct lmp_jinja_limits *limits;  /* NULL: lmp_jinja_default_limits */
        time_t now;             /* strftime_now()'s time, UTC */
        bool trim_blocks;       /* Hugging Face: true */
        bool lstrip_blocks;     /* Hugging Face: true */
};

/* Renders template text src (len bytes) with the variables of the JSON
 * object ctx (may be NULL). On success *ret_text is a malloc'd
 * NUL-terminated string the caller frees. Returns -EINVAL with a message in
 * *err for a syntax error, an error raised by the template
 * (raise_exception, a type error, an undefined value used) or a bound
 * reached (-E2BIG for output, iterations, depth or memory), -ENOMEM. */
int lmp_jinja_render(const char *src, size_t len, const cJSON *ctx, const struct lmp_jinja_opts *opts,
                     char **ret_text, struct lmp_error *err);

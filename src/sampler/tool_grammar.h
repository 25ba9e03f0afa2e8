/* A forced tool call (tool_choice "required" or a named function): the
 * sampler's mask for one call in a template's syntax whose arguments match
 * the function's parameters schema. A call is three parts, over bytes:
 *
 *   head       {"name": "NAME", "KEY":         one literal per allowed
 *                                              function; the bytes choose it
 *   arguments  a JSON document of that function's compiled schema
 *              (json_grammar.h), which must be an object
 *   tail       }
 *
 * The syntax's own prefix (<tool_call>\n, [TOOL_CALLS][) goes at the end of
 * the prompt and its suffix is implied, so the model writes only the JSON
 * object. A token may span parts ("}" closing the arguments and the call
 * at once). The grammar (struct lmp_tool_grammar) is built per request from
 * grammars the caller's cache holds; the state (struct lmp_tool_allow)
 * lives in the slot and allocates nothing per token: in the arguments a
 * token is checked by the JSON hook's tables, and only a token holding a
 * '}' that the hook refuses is fed byte by byte to a copy of the state. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "sampler/json_grammar.h"
#include "sampler/json_tokens.h"

#define LMP_TOOL_GRAMMAR_MAX 64         /* functions one grammar chooses from */
#define LMP_TOOL_NAME_MAX 64            /* bytes of a function's name */

struct lmp_tool_grammar;

/* An empty grammar for n_max functions whose arguments are written under
 * args_key ("arguments", "parameters"). -EINVAL, -ENOMEM. */
int lmp_tool_grammar_new(uint32_t n_max, const char *args_key, struct lmp_tool_grammar **ret,
                         struct lmp_error *err);
void lmp_tool_grammar_free(struct lmp_tool_grammar *tg);
/* Adds a function: its name (letters, digits, '_', '-', '.') and the
 * grammar of its arguments (a reference is taken). */
int lmp_tool_grammar_add(struct lmp_tool_grammar *tg, const char *name, struct lmp_json_grammar *args,
                         struct lmp_error *err);
/* The name of function i. */
const char *lmp_tool_grammar_name(const struct lmp_tool_grammar *tg, uint32_t i);

enum { LMP_TOOL_HEAD, LMP_TOOL_ARGS, LMP_TOOL_TAIL, LMP_TOOL_DONE };

struct lmp_tool_allow {
        const struct lmp_tool_grammar *tg;
        uint32_t phase;         /* LMP_TOOL_* */
        uint64_t cand;          /* head: the functions whose literal the bytes so far begin */
        uint32_t pos;           /* head, tail: bytes matched */
        uint32_t tool;          /* args, tail, done: the chosen function */
        struct lmp_json_allow json; /* args: the document and the hook's tables */
};

/* Starts a call. tg and t must outlive the state. */
void lmp_tool_allow_init(struct lmp_tool_allow *a, const struct lmp_json_tokens *t,
                         const struct lmp_tool_grammar *tg);
/* lmp_sampler_allow_fn over a struct lmp_tool_allow. */
bool lmp_tool_allow(void *ctx, int32_t token);
/* Advances by an allowed token: 0, or -EINVAL (state unspecified). */
int lmp_tool_allow_advance(struct lmp_tool_allow *a, int32_t token);
/* Feeds bytes (tests, the fuzz target): false when they cannot continue. */
bool lmp_tool_allow_feed(struct lmp_tool_allow *a, const void *bytes, size_t n);
/* Whether the call is complete. */
bool lmp_tool_allow_done(const struct lmp_tool_allow *a);

/* Tool calls in a model's output: which syntax a chat template teaches its
 * model, the calls found in a finished answer, and how much of an answer in
 * progress may be streamed before it could turn out to be a call. Three
 * syntaxes cover the templates of templates-real/:
 *
 *   hermes   Qwen 2.5/3, Hermes, SmolLM3...: one or more
 *            <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
 *            anywhere in the answer (text around them is content);
 *   llama3   Llama 3.x: the whole answer is {"name": N, "parameters": {...}}
 *            (optionally after <|python_tag|>);
 *   mistral  Mistral, Devstral: [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]
 *            after any content.
 *
 * The syntax is chosen from the template's text (lmp_tool_syntax_detect),
 * so any model whose template writes one of them gets its calls parsed.
 * Extraction is all or nothing: an answer whose calls do not all parse (a
 * missing name, arguments that are not a JSON object, a block that is not
 * JSON) has no calls, and its whole text stays content. Pure functions:
 * the worker runs them on the model's output (untrusted; fuzzed by
 * tests/fuzz/fuzz_tool_calls.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

enum lmp_tool_syntax {
        LMP_TOOL_HERMES,
        LMP_TOOL_LLAMA3,
        LMP_TOOL_MISTRAL,
        LMP_TOOL_SYNTAX_COUNT,
};

#define LMP_TOOL_CALLS_MAX 64           /* calls taken from one answer */
#define LMP_TOOL_CALL_ID_LEN 9          /* Mistral's templates insist on 9 characters */

const char *lmp_tool_syntax_name(enum lmp_tool_syntax s);

/* The syntax a template's text teaches (hermes when it names none). */
enum lmp_tool_syntax lmp_tool_syntax_detect(const char *template_text);

/* What a constrained call looks like in syntax s: the bytes before the
 * call's JSON object (put at the end of the prompt), the key of its
 * arguments, and the bytes after it. */
const char *lmp_tool_syntax_prefix(enum lmp_tool_syntax s);
const char *lmp_tool_syntax_args_key(enum lmp_tool_syntax s);
const char *lmp_tool_syntax_suffix(enum lmp_tool_syntax s);

/* How many leading bytes of an answer in progress (text, n bytes) cannot
 * belong to a tool call, so that they may be streamed: everything before
 * the first call marker or before a tail that could still become one (for
 * llama3, 0 while the answer is blank or starts like a JSON object). Never
 * smaller for a longer text with the same beginning. */
size_t lmp_tool_streamable(enum lmp_tool_syntax s, const char *text, size_t n);

/* Finds the calls in a finished answer. Returns the number found (0: none,
 * *ret_calls and *ret_content untouched) or -ENOMEM. On success *ret_calls
 * is a new NUL-terminated compact JSON array of {"id", "name",
 * "arguments": {...}} objects (ids from seed and each call's position: 9
 * letters and digits; the arguments as the model wrote them, whitespace
 * outside strings dropped, so that a long number keeps its digits) and
 * *ret_content a new NUL-terminated string of the text outside the calls
 * (trailing whitespace dropped; "" when only whitespace is left). */
int lmp_tool_calls_extract(enum lmp_tool_syntax s, const char *text, size_t n, unsigned long long seed,
                           char **ret_calls, char **ret_content);

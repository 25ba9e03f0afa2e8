/* Constrained JSON output: a grammar over bytes that says whether a token's
 * bytes can continue a valid JSON document, so that the sampler can mask
 * every token that cannot. A grammar is compiled once from a JSON schema (or
 * is "any JSON object" for format "json") into an immutable node table
 * (struct lmp_json_grammar, reference-counted so that a cache and the slots
 * using it can share it). A document in progress is a struct lmp_json_state:
 * a fixed-size stack of frames, at most LMP_JSON_MAX_DEPTH nested objects
 * and arrays; feeding bytes and checking a token allocate nothing.
 *
 * The schema subset: type (one name or a list of names) object, array,
 * string, number, integer, boolean, null; properties, required,
 * additionalProperties (false or true), items, enum, const, minItems,
 * maxItems, minLength, maxLength, anyOf; the annotations title,
 * description, default, examples, $schema, $id and $comment are ignored.
 * Any other keyword is refused with an error naming it.
 *
 * What the grammar generates is a subset of what the schema accepts:
 *  - an object with properties gets only those properties (each at most
 *    once, in any order; required names the properties do not define are
 *    added with any value unless additionalProperties is false);
 *  - enum and const values are written in compact form (as cJSON prints them);
 *  - strings never contain \u escapes of surrogates (so that minLength and
 *    maxLength count code points exactly);
 *  - numbers have at most LMP_JSON_MAX_DIGITS digits in each part;
 *  - the alternatives of anyOf (and of a list of types) must begin with
 *    different bytes (an object and a string, not two objects), since the
 *    grammar chooses the alternative at a value's first byte;
 *  - whitespace: at most LMP_JSON_MAX_WS consecutive bytes between tokens,
 *    none after the document, so that a model cannot loop in whitespace;
 *  - format "json" (lmp_json_grammar_new_object) is any JSON object, as
 *    Ollama's json format and OpenAI's json_object are. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define LMP_JSON_MAX_DEPTH 32           /* nested objects and arrays in a document */
#define LMP_JSON_MAX_WS 4               /* consecutive whitespace bytes */
#define LMP_JSON_MAX_DIGITS 20          /* digits of a number's integer, fraction and exponent parts */
#define LMP_JSON_MAX_NODES 1024         /* nodes of a compiled schema */
#define LMP_JSON_MAX_ALTS 64            /* properties of an object, values of an enum, alternatives of anyOf */
#define LMP_JSON_MAX_LITERAL 1024       /* bytes of one enum or const value, or of a property name */
#define LMP_JSON_SCHEMA_MAX (64u << 10) /* bytes of a schema's text */

struct lmp_json_grammar;

/* Format "json": any JSON object. -ENOMEM. */
int lmp_json_grammar_new_object(struct lmp_json_grammar **ret, struct lmp_error *err);

/* Compiles the schema text (JSON, at most LMP_JSON_SCHEMA_MAX bytes).
 * -EINVAL with a message naming the keyword and where it is
 * ("schema /properties/a: unsupported keyword \"pattern\""), -ENOMEM. */
int lmp_json_grammar_new_schema(const char *text, size_t len, struct lmp_json_grammar **ret,
                                struct lmp_error *err);

/* Reference counting: _new gives one reference; lmp_json_grammar_unref(NULL)
 * is a no-op. Not thread-safe: a grammar is shared within one thread. */
struct lmp_json_grammar *lmp_json_grammar_ref(struct lmp_json_grammar *g);
void lmp_json_grammar_unref(struct lmp_json_grammar *g);

struct lmp_json_frame {
        uint64_t bits;          /* object: properties seen; literal: candidates left */
        uint32_t count;         /* array: items; string: characters; number: integer digits */
        uint16_t node;
        uint16_t pos;           /* literal: bytes matched; string: UTF-8 bytes to come; number: fraction digits */
        uint16_t aux;           /* object: current property; string: bounds of the next byte; number: exponent digits */
        uint8_t kind;
        uint8_t st;
};

struct lmp_json_state {
        const struct lmp_json_grammar *g;
        uint32_t depth;         /* frames in use, >= 1 (frame 0: the document) */
        uint32_t ws;            /* consecutive whitespace bytes just fed */
        struct lmp_json_frame f[LMP_JSON_MAX_DEPTH + 3];
};

/* The state before the document's first byte. g must outlive the state. */
void lmp_json_state_init(struct lmp_json_state *s, const struct lmp_json_grammar *g);

/* Feeds bytes: true when every byte continues a valid document (s has
 * advanced), false when one cannot (s is then unspecified: feed a copy, or
 * check first with lmp_json_state_accepts). */
bool lmp_json_state_feed(struct lmp_json_state *s, const void *bytes, size_t n);

/* Whether the bytes can continue the document; s is not changed. n == 0 is
 * refused: a token without text would let a model loop forever. */
bool lmp_json_state_accepts(const struct lmp_json_state *s, const void *bytes, size_t n);

/* Whether the document is complete, so that generation may end here. */
bool lmp_json_state_complete(const struct lmp_json_state *s);

/* Whether the document is complete and nothing can follow it (the state
 * takes no more bytes): generation can stop without an end token. A
 * complete top-level number (12, which 123 could continue) is not closed. */
bool lmp_json_state_closed(const struct lmp_json_state *s);

/* A bounded cache of compiled schemas keyed by their text, least recently
 * used out. The caller owns the cache; a grammar it returns is a new
 * reference (unref it when done), so eviction never frees one in use. */
#define LMP_JSON_CACHE_MAX 64
struct lmp_json_cache;
int lmp_json_cache_new(uint32_t capacity, struct lmp_json_cache **ret, struct lmp_error *err);
void lmp_json_cache_free(struct lmp_json_cache *c);
/* The grammar of a format: "json" (the text `"json"`, with quotes, as the
 * request carried it) or a schema object's text. Errors as
 * lmp_json_grammar_new_schema. */
int lmp_json_cache_get(struct lmp_json_cache *c, const char *text, size_t len,
                       struct lmp_json_grammar **ret, struct lmp_error *err);

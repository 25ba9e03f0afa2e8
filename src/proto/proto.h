/* The wire protocol (docs/protocol.md) as C structs: the one place that
 * turns client frames into validated requests and daemon events into JSON
 * text, and back. The router parses and validates every client frame with
 * lmp_proto_parse_request() (a malformed request never reaches a worker),
 * re-serializes it canonically with lmp_proto_format_request() for the
 * worker, which parses it back with the same function. Events are written
 * into a growable struct lmp_proto_buf that the caller keeps and reuses, so
 * that streaming tokens allocates nothing once the buffer is warm. Every
 * string written is valid JSON whatever bytes it came from: invalid UTF-8
 * becomes U+FFFD. The client library reads events with
 * lmp_proto_parse_event(). Functions return 0 or a negative errno-style
 * code and never print. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

#define LMP_PROTO_VERSION 1
#define LMP_PROTO_FRAME_MAX (1u << 20)       /* bytes in one client frame */
#define LMP_PROTO_EVENT_MAX (64u << 20)      /* bytes in one event the client accepts */
/* Bytes in the canonical request JSON the router sends a worker: each
 * string byte of a frame may come back as a 6-byte \u00XX escape, and the
 * defaults add a few short fields. */
#define LMP_PROTO_JOB_MAX (6u * LMP_PROTO_FRAME_MAX + (64u << 10))
#define LMP_PROTO_ID_MAX 128                 /* bytes in a request id */
#define LMP_PROTO_MODEL_MAX 128              /* bytes in a model name */
#define LMP_PROTO_SESSION_MAX 128            /* bytes in a session name */
#define LMP_PROTO_STOP_MAX 8                 /* stop strings per request */
#define LMP_PROTO_STOP_LEN_MAX 256           /* bytes in one stop string */
#define LMP_PROTO_MAX_TOKENS_MAX (1 << 24)   /* the model's context bounds it further */
#define LMP_PROTO_TOP_K_MAX (1 << 24)        /* the vocabulary bounds it further */
#define LMP_PROTO_SEED_MAX 9007199254740991ull /* 2^53 - 1: exact in a JSON number */
#define LMP_PROTO_TIMEOUT_MS_MAX 86400000    /* one day; the config bounds it further */
#define LMP_PROTO_EMBED_INPUTS_MAX 256     /* texts in one embed request */
#define LMP_PROTO_FIELD_MAX 48
#define LMP_PROTO_MESSAGE_MAX 256
#define LMP_PROTO_TOOLS_MAX 64               /* functions in "tools" */
#define LMP_PROTO_TOOLS_BYTES_MAX (256u << 10) /* bytes of "tools" as compact JSON */
#define LMP_PROTO_TOOLS_DEPTH_MAX 32         /* nesting of a tool's parameters, of a call's arguments */
#define LMP_PROTO_TOOL_NAME_MAX 64           /* bytes in a function's name */
#define LMP_PROTO_TOOL_CALLS_MAX 64          /* calls in one assistant message */
#define LMP_PROTO_IMAGES_MAX 8               /* images in one request (their bytes: the frame bounds them) */
/* Where an image goes in a prompt or a message's content. */
#define LMP_PROTO_MEDIA_MARKER "<__media__>"

/* Stable error codes; their names are the protocol's. */
enum lmp_proto_code {
        LMP_PROTO_OK = 0,
        LMP_PROTO_BAD_REQUEST,
        LMP_PROTO_UNKNOWN_MODEL,
        LMP_PROTO_BUSY,
        LMP_PROTO_TOO_LONG,
        LMP_PROTO_TIMEOUT,
        LMP_PROTO_WORKER_LOST,
        LMP_PROTO_CANCELLED,
        LMP_PROTO_INTERNAL,
        LMP_PROTO_SLOW_CONSUMER,
        LMP_PROTO_MODEL_FAILED,         /* the model cannot serve (its workers cannot load it) */
        LMP_PROTO_CODE_COUNT,
};

/* "bad_request", ...; "ok" for LMP_PROTO_OK; NULL when out of range. */
const char *lmp_proto_code_name(enum lmp_proto_code code);
/* The code of a name; -EINVAL when it is none of them. */
int lmp_proto_code_from_name(const char *name, enum lmp_proto_code *ret_code);

enum lmp_request_type {
        LMP_REQ_GENERATE,
        LMP_REQ_CHAT,
        LMP_REQ_CANCEL,
        LMP_REQ_MODELS,
        LMP_REQ_STATS,
        LMP_REQ_HEALTH,
        LMP_REQ_EMBED,
        LMP_REQ_TYPE_COUNT,
};
const char *lmp_request_type_name(enum lmp_request_type type);

enum lmp_role {
        LMP_ROLE_SYSTEM,
        LMP_ROLE_USER,
        LMP_ROLE_ASSISTANT,
        LMP_ROLE_TOOL,          /* a tool's result, answering an assistant's call */
        LMP_ROLE_COUNT,
};
const char *lmp_role_name(enum lmp_role role);

struct lmp_message {
        enum lmp_role role;
        char *content;          /* NUL-terminated, contains no NUL */
        size_t content_len;
        /* assistant: NULL, or its calls as canonical JSON, an array of
         * {"id"?, "type": "function", "function": {"name", "arguments": {...}}} */
        char *tool_calls;
        char *tool_call_id;     /* tool: NULL, or the id of the call it answers */
        char *name;             /* tool: NULL, or the function's name */
        /* The request's images that this message's content marks (one
         * LMP_PROTO_MEDIA_MARKER each, in order), following those of the
         * messages before it. */
        uint32_t n_images;
};

/* An image file's bytes (PNG, JPEG, WebP: the worker decodes them). */
struct lmp_proto_image {
        uint8_t *data;
        size_t len;
};

/* Which calls the model may or must make (OpenAI's tool_choice). */
enum lmp_tool_choice {
        LMP_TOOL_CHOICE_AUTO,           /* default: the model decides; calls found in its answer are parsed */
        LMP_TOOL_CHOICE_NONE,           /* tools are shown to the template, nothing is parsed */
        LMP_TOOL_CHOICE_REQUIRED,       /* the answer is one call of one of the tools (constrained) */
        LMP_TOOL_CHOICE_FUNCTION,       /* the answer is one call of tool_name (constrained) */
        LMP_TOOL_CHOICE_COUNT,
};

/* One bit per sampling field: set when the request gave it, so that the
 * model's defaults fill the others. */
enum {
        LMP_SET_MAX_TOKENS        = 1u << 0,
        LMP_SET_TEMPERATURE       = 1u << 1,
        LMP_SET_TOP_K             = 1u << 2,
        LMP_SET_TOP_P             = 1u << 3,
        LMP_SET_MIN_P             = 1u << 4,
        LMP_SET_REPEAT_PENALTY    = 1u << 5,
        LMP_SET_PRESENCE_PENALTY  = 1u << 6,
        LMP_SET_FREQUENCY_PENALTY = 1u << 7,
        LMP_SET_SEED              = 1u << 8,
        LMP_SET_TIMEOUT_MS        = 1u << 9,
};

struct lmp_sampling {
        uint32_t set;                   /* LMP_SET_* bits */
        int32_t max_tokens;             /* [1, LMP_PROTO_MAX_TOKENS_MAX] */
        double temperature;             /* [0, 10] */
        int32_t top_k;                  /* [0, LMP_PROTO_TOP_K_MAX] */
        double top_p;                   /* (0, 1] */
        double min_p;                   /* [0, 1] */
        double repeat_penalty;          /* (0, 10] */
        double presence_penalty;        /* [-10, 10], 0 when not set */
        double frequency_penalty;       /* [-10, 10], 0 when not set */
        uint64_t seed;                  /* [0, LMP_PROTO_SEED_MAX] */
};

/* A validated request. Owns its strings: release with lmp_request_clear(). */
struct lmp_request {
        enum lmp_request_type type;
        char id[LMP_PROTO_ID_MAX + 1];
        /* generate and chat */
        char model[LMP_PROTO_MODEL_MAX + 1];
        char *prompt;                   /* generate: NUL-terminated, no NUL inside */
        size_t prompt_len;
        struct lmp_message *messages;   /* chat: at least one */
        size_t n_messages;
        /* generate and chat: the images, decoded from base64, in the order
         * of their markers in the prompt or the messages' contents (the
         * parser puts a marker first for each image given without one) */
        struct lmp_proto_image *images;
        size_t n_images;
        struct lmp_sampling sampling;
        char *stop[LMP_PROTO_STOP_MAX];
        size_t stop_len[LMP_PROTO_STOP_MAX];
        size_t n_stop;
        bool ignore_eos;                /* default false */
        /* Constrained output: NULL, or the canonical JSON text of "format":
         * the string "json" (with its quotes: any JSON object) or a schema
         * object (compact), compiled once at parse time to check it. */
        char *format;
        size_t format_len;
        /* chat: NULL, or "tools" as compact JSON (an array of 1 to
         * LMP_PROTO_TOOLS_MAX {"type": "function", "function": {"name",
         * "description"?, "parameters"?}}), and what the model may do with them */
        char *tools;
        size_t tools_len;
        enum lmp_tool_choice tool_choice;
        char tool_name[LMP_PROTO_TOOL_NAME_MAX + 1]; /* LMP_TOOL_CHOICE_FUNCTION */
        bool stream;                    /* default true */
        bool return_ids;                /* default false */
        bool no_cache;                  /* "cache": false: neither cache answers it or keeps its answer */
        uint32_t timeout_ms;            /* valid when sampling.set has LMP_SET_TIMEOUT_MS */
        char session[LMP_PROTO_SESSION_MAX + 1]; /* "" when not given: the router's affinity key */
        /* cancel */
        char target[LMP_PROTO_ID_MAX + 1];
        /* embed (model, timeout_ms and return_ids as above) */
        char **inputs;                  /* (n_inputs) NUL-terminated, no NUL inside */
        size_t *input_len;
        size_t n_inputs;                /* 1 .. LMP_PROTO_EMBED_INPUTS_MAX */
        bool input_is_array;            /* "input" was an array (echoed as such) */
        bool normalize;                 /* default true: unit-length vectors */
        bool truncate;                  /* default false: too_long for an over-long input */
};

/* Why a frame was refused. id is recovered whenever the frame had a valid
 * one, so that the error event can carry it (has_id false: "id": null). */
struct lmp_proto_error {
        enum lmp_proto_code code;
        bool has_id;
        char id[LMP_PROTO_ID_MAX + 1];
        char field[LMP_PROTO_FIELD_MAX];        /* the offending field, "" if none */
        char message[LMP_PROTO_MESSAGE_MAX];    /* names the field */
};

/* Parses and validates one client frame. On success fills *ret (which the
 * caller releases with lmp_request_clear()) and returns 0; on failure
 * leaves *ret untouched, fills *err (may be NULL) and returns -EINVAL
 * (-EMSGSIZE for a frame over LMP_PROTO_FRAME_MAX, -ENOMEM). */
int lmp_proto_parse_request(const void *buf, size_t len, struct lmp_request *ret,
                            struct lmp_proto_error *err);
/* Frees what a request owns and zeroes it; a zeroed struct is a no-op. */
void lmp_request_clear(struct lmp_request *r);
/* The same for the canonical JSON the router sends a worker, which may be
 * up to LMP_PROTO_JOB_MAX bytes (escapes make it longer than the frame it
 * came from). */
int lmp_proto_parse_job(const void *buf, size_t len, struct lmp_request *ret, struct lmp_proto_error *err);

/* Decodes an image into r's next image, as the parser reads one: text is
 * base64, or with data_url a data:image/...;base64,... URL. what names it
 * in err's message ("messages[0].images[1]"). 0, -ENOMEM, or -EINVAL
 * (bad base64, not such a URL, more than LMP_PROTO_IMAGES_MAX images). */
int lmp_proto_add_image(struct lmp_request *r, const char *text, bool data_url, const char *what,
                        struct lmp_proto_error *err);

/* What is wrong with an embed request's "input". */
enum lmp_proto_input_fault {
        LMP_INPUT_NOT_TEXT,     /* neither a string nor an array */
        LMP_INPUT_COUNT,        /* an array of 0 or more than LMP_PROTO_EMBED_INPUTS_MAX: *ret_n is its size */
        LMP_INPUT_ITEM,         /* element *ret_n is not a string */
};
struct cJSON;
/* Copies an embed request's "input" (a string, or an array of 1 to
 * LMP_PROTO_EMBED_INPUTS_MAX strings) into r's inputs, the way both the
 * protocol and the HTTP gateway read it. Returns 0, -ENOMEM, or -EINVAL
 * with *ret_fault (and *ret_n) saying what is wrong, for the caller's own
 * wording. What it copied before a failure is r's, freed with it. */
int lmp_proto_embed_inputs(const struct cJSON *in, struct lmp_request *r, enum lmp_proto_input_fault *ret_fault,
                           size_t *ret_n);

/* A growable output buffer, always NUL-terminated after a successful call.
 * Formatters append; set len = 0 to reuse. */
struct lmp_proto_buf {
        char *data;
        size_t len;
        size_t cap;
};
void lmp_proto_buf_free(struct lmp_proto_buf *b);
/* Appends n bytes as they are; 0 or -ENOMEM. */
int lmp_proto_buf_append(struct lmp_proto_buf *b, const void *s, size_t n);
/* Appends the string s; 0 or -ENOMEM. */
int lmp_proto_buf_puts(struct lmp_proto_buf *b, const char *s);
/* Appends what printf() would print, however long; 0, -ENOMEM or -EINVAL. */
int lmp_proto_buf_printf(struct lmp_proto_buf *b, const char *fmt, ...) LMP_PRINTF(2, 3);

/* Appends s (n bytes, any bytes) as a JSON string with its quotes: escapes
 * what JSON needs, replaces each invalid UTF-8 sequence (and NUL) with
 * U+FFFD. */
int lmp_proto_append_json_string(struct lmp_proto_buf *b, const char *s, size_t n);

/* Whether s (n bytes) is valid UTF-8 without NUL: what a frame's strings
 * must be. */
bool lmp_proto_utf8_valid(const char *s, size_t n);

/* The length of the longest prefix of s that does not end inside a UTF-8
 * sequence that later bytes could still complete: a worker sends that much
 * of its decoded text and holds the rest back for the next token. */
size_t lmp_proto_utf8_complete(const char *s, size_t n);

/* The canonical JSON of a request: every field that was set, in a fixed
 * order. Parsing it back gives an equal request. */
int lmp_proto_format_request(struct lmp_proto_buf *b, const struct lmp_request *r);

/* The embedding event: n vectors of n_embd floats (row-major), with each
 * text's token ids when ids is not NULL (ids_off: n + 1 offsets into it). */
struct lmp_embedding {
        const float *vectors;
        size_t n, n_embd;
        const int32_t *ids;
        const size_t *ids_off;
        int64_t prompt_tokens;
        double queued_ms, total_ms;
        const char *worker;
};
int lmp_proto_format_embedding(struct lmp_proto_buf *b, const char *id, const struct lmp_embedding *e);

/* Events. id may be NULL only for error events ("id": null). */
int lmp_proto_format_token(struct lmp_proto_buf *b, const char *id, const char *text, size_t text_len,
                           const int32_t *ids, size_t n_ids);

enum lmp_finish {
        LMP_FINISH_STOP,
        LMP_FINISH_LENGTH,
        LMP_FINISH_EOS,
        LMP_FINISH_TOOL_CALLS,          /* the answer is tool calls (done's tool_calls) */
        LMP_FINISH_COUNT,
};
const char *lmp_finish_name(enum lmp_finish finish);

struct lmp_usage {
        int64_t prompt_tokens;
        int64_t generated_tokens;
        int64_t cached_tokens;  /* prompt tokens whose KV came from the slot's cache */
        int64_t images;         /* images in the prompt (written when > 0) */
        int64_t images_cached;  /* of them, those the worker had encoded already */
};

struct lmp_timings {
        double queued_ms;
        double prompt_ms;
        double ttft_ms;
        double total_ms;
        double tokens_per_s;
};

struct lmp_done {
        enum lmp_finish finish;
        const char *text;       /* NULL: no "text" field (streamed request) */
        size_t text_len;
        /* NULL, or the calls as a compact JSON array of {"id", "name",
         * "arguments": {...}} (finish LMP_FINISH_TOOL_CALLS) */
        const char *tool_calls;
        size_t tool_calls_len;
        struct lmp_usage usage;
        struct lmp_timings timings;
        const char *worker;     /* e.g. "tinyllama/1" */
};
int lmp_proto_format_done(struct lmp_proto_buf *b, const char *id, const struct lmp_done *d);
int lmp_proto_format_error(struct lmp_proto_buf *b, const char *id, enum lmp_proto_code code,
                           const char *message);
int lmp_proto_format_cancelled(struct lmp_proto_buf *b, const char *id, const char *target, bool found);

struct lmp_model_info {
        const char *name;
        const char *path;
        const char *arch;
        int64_t ctx;
        int64_t workers;
        int64_t ready;
        int64_t slots;
        int64_t store_bytes;
        const char *kind;               /* "generative" or "embedding" (after arch); NULL: not written */
};
int lmp_proto_format_models(struct lmp_proto_buf *b, const char *id, const struct lmp_model_info *models,
                            size_t n);

struct lmp_worker_info {
        const char *name;
        const char *model;
        int64_t pid;
        const char *state;
        int64_t slots;
        int64_t active;
        int64_t rss_bytes;
        int64_t pss_bytes;
        int64_t served;
        int64_t restarts;
};

struct lmp_stats {
        double uptime_s;
        int64_t queue_length, queue_limit;
        int64_t total, ok, errors, busy, timeouts, worker_lost;
        const struct lmp_worker_info *workers;
        size_t n_workers;
        /* requests whose terminal event could not be delivered (never
         * counted ok), requests cancelled because their client went away,
         * requests ended with slow_consumer, token events not delivered */
        int64_t dropped, client_gone, slow_consumer, events_dropped;
        /* client connections: open now, the limit, refused at the limit,
         * closed while sending an over-long message */
        int64_t clients, clients_limit, clients_refused, clients_overlong;
        /* kept off the workers' socket: connections the ZAP handler refused
         * (and CURVE clients without an allowed key), worker frames dropped */
        int64_t zap_refused, worker_frames_refused;
        int64_t retried;        /* run again: their worker died before their first token */
        /* conversations sent to the worker that served them last, moved
         * because it was saturated while another was idle, seen first */
        int64_t affinity_hits, affinity_misses, affinity_new;
        /* the response cache: answered from it, deterministic requests not
         * found in it, answers it holds and their memory */
        int64_t cache_hits, cache_misses, cache_entries, cache_bytes;
        /* the semantic caches, over all models: answered from one (hits),
         * looked up and not found (misses), gone uncached because the
         * embedding model could not give the key's vector in time
         * (unavailable), entries made room for (evictions) or found too
         * old (expirations), answers held and their memory */
        int64_t semantic_hits, semantic_misses, semantic_unavailable, semantic_evictions, semantic_expirations,
                semantic_entries, semantic_bytes;
};
int lmp_proto_format_stats(struct lmp_proto_buf *b, const char *id, const struct lmp_stats *s);

struct lmp_health_model {
        const char *name;
        int64_t ready;
        int64_t workers;
        const char *failed;             /* why the model cannot serve; NULL when it can */
};
/* status: "ok", "starting" or "degraded". */
int lmp_proto_format_health(struct lmp_proto_buf *b, const char *id, const char *status,
                            const struct lmp_health_model *models, size_t n);

/* An event as the client reads it. Strings point into the struct's own
 * storage; release with lmp_event_clear(). For models, stats and health the
 * client keeps the frame's text itself. */
enum lmp_event_type {
        LMP_EVENT_TOKEN,
        LMP_EVENT_DONE,
        LMP_EVENT_ERROR,
        LMP_EVENT_CANCELLED,
        LMP_EVENT_MODELS,
        LMP_EVENT_STATS,
        LMP_EVENT_HEALTH,
        LMP_EVENT_EMBEDDING,
        LMP_EVENT_TYPE_COUNT,
};
const char *lmp_event_type_name(enum lmp_event_type type);

struct lmp_event {
        enum lmp_event_type type;
        bool has_id;
        char id[LMP_PROTO_ID_MAX + 1];
        char *text;             /* token; done when present (else NULL) */
        size_t text_len;
        int32_t *ids;           /* token with return_ids */
        size_t n_ids;
        enum lmp_finish finish; /* done */
        char *tool_calls;       /* done: NULL, or its "tool_calls" array (the bytes the daemon sent) */
        size_t tool_calls_len;
        struct lmp_usage usage;
        struct lmp_timings timings;
        char worker[64];
        enum lmp_proto_code code;               /* error */
        char message[LMP_PROTO_MESSAGE_MAX];    /* error */
        char target[LMP_PROTO_ID_MAX + 1];      /* cancelled */
        bool found;                             /* cancelled */
        /* embedding: n_vectors x n_embd floats; ids as in the token event,
         * each vector's from ids_off[i] to ids_off[i + 1] (NULL: none);
         * usage.prompt_tokens, timings.queued_ms / total_ms and worker */
        float *vectors;
        size_t n_vectors, n_embd;
        size_t *ids_off;
};

/* Parses one daemon frame. -EINVAL (-EMSGSIZE, -ENOMEM) when it is not a
 * well-formed event, -ENOMSG for an object whose "event" this version does
 * not know (a later protocol addition, to be skipped); *ret untouched on
 * failure. */
int lmp_proto_parse_event(const void *buf, size_t len, struct lmp_event *ret);
void lmp_event_clear(struct lmp_event *e);

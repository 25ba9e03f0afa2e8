/* A worker's engine: the model, its KV cache slots, and the jobs running in
 * them. Each step evaluates one batch that mixes every running job: one
 * token for each job that is generating, and chunks of prompt for jobs still
 * reading theirs (so a long prompt never stalls the others for more than a
 * step), then samples, detokenizes and checks the stop conditions of each.
 *
 * A job that starts in a slot keeps the longest prefix of the slot's cached
 * tokens it shares (the previous turn of a conversation, a shared system
 * prompt): only the rest of the prompt is evaluated. With cache_reuse, it
 * also keeps the later stretches of the cache that the prompt goes on with
 * after dropping a part (a conversation whose window lost its oldest
 * messages), moved down by lmp_ctx_seq_cut.
 *
 * A job with images (a vision model with its encoder) has each image
 * decoded and encoded once: the engine keeps the last IMAGE_CACHE encoded
 * images (engine.c), keyed by their bytes, so another question about the
 * same image skips the encoder. Image tokens are batch entries with their
 * embedding and M-RoPE positions; each cached position carries a tag (0
 * for text, the encoded image's number and the token's index in it for
 * an image token), so that a slot's cache is reused only for the same
 * image in the same place.
 *
 * The engine knows nothing of ZeroMQ or JSON: jobs come in as structs and
 * results leave through a callback. Nothing allocates per token: every
 * buffer is sized at creation for slots × context. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "model/model.h"
#include "model/vision.h"
#include "proto/proto.h"
#include "sampler/sampler.h"
#include "tokenizer/chat_setup.h"
#include "tokenizer/tokenizer.h"

/* A job: a validated client request (the router has applied the model's
 * defaults, so every sampling field is set) and its bookkeeping. */
struct lmp_job {
        uint64_t rid;                   /* the router's number for the request */
        struct lmp_request req;
        struct lmp_sampler_params sampling;
        double queued_ms;               /* time spent in the router's queue */
        double arrival_ms;              /* when the worker received it (monotonic ms) */
};

void lmp_job_free(struct lmp_job *j);

enum lmp_engine_event_kind { LMP_EV_TOKEN, LMP_EV_DONE, LMP_EV_ERROR };

struct lmp_engine_event {
        enum lmp_engine_event_kind kind;
        uint64_t rid;
        const char *id;
        /* token */
        const char *text;               /* UTF-8 delta (not NUL-terminated) */
        size_t text_len;
        const int32_t *ids;
        size_t n_ids;
        bool return_ids;
        /* done */
        const char *finish;             /* "eos", "stop", "length", "tool_calls" */
        const char *full_text;          /* when the job does not stream (the content beside tool calls) */
        size_t full_text_len;
        const char *tool_calls;         /* NULL, or the calls as a compact JSON array */
        size_t tool_calls_len;
        uint32_t prompt_tokens, generated_tokens, cached_tokens;
        uint32_t images, images_cached; /* the job's images, and those the encoder cache had */
        double queued_ms, prompt_ms, ttft_ms, total_ms, tokens_per_s;
        /* error */
        const char *code;               /* protocol error code */
        const char *message;
};

typedef void (*lmp_engine_sink_fn)(void *userdata, const struct lmp_engine_event *ev);

struct lmp_engine_params {
        const struct lmp_model *model;
        const struct lmp_vocab *vocab;
        const struct lmp_chat_setup *chat; /* how chat requests render (family LMP_CHAT_UNKNOWN: refused) */
        uint32_t slots;
        uint32_t n_ctx;
        uint32_t n_batch;
        /* Most prompt tokens in a step that also decodes generating slots
         * (0: n_batch); a step with no one generating takes n_batch. */
        uint32_t prompt_chunk;
        uint32_t max_prompt_tokens;
        /* Shortest stretch of a slot's cached tokens that a prompt reuses
         * after a part of the cache it dropped (the KV shift: the stretch
         * moves down, its keys rotated); 0: only the common prefix. Reused
         * positions keep what they computed with the dropped part before
         * them, so answers differ slightly from a cold run's. */
        uint32_t cache_reuse;
        struct lmp_threadpool *pool;
        /* The vision encoder for jobs with images (NULL: they are refused). */
        const struct lmp_vision *vision;
        lmp_engine_sink_fn sink;
        void *sink_userdata;
};

struct lmp_engine;

int lmp_engine_new(const struct lmp_engine_params *p, struct lmp_engine **ret, struct lmp_error *err);
void lmp_engine_free(struct lmp_engine *e);

/* Starts a job in a free slot (the engine takes ownership of *job whatever
 * the outcome). A job refused here (too long, no slot, bad template) gets an
 * error event through the sink and 0 is returned; a negative value means the
 * engine itself failed. */
int lmp_engine_submit(struct lmp_engine *e, struct lmp_job *job);

/* Ends a running job with a `cancelled` error; false when rid is not running. */
bool lmp_engine_cancel(struct lmp_engine *e, uint64_t rid);

/* Evaluates one batch over the running jobs and emits their events. Returns
 * the number of jobs still running, or a negative code when the forward
 * pass failed (the jobs of that batch get `internal` errors). */
int lmp_engine_step(struct lmp_engine *e);

uint32_t lmp_engine_active(const struct lmp_engine *e);
/* SIGHUP: a new limits.max_prompt_tokens for the jobs that start from now
 * (0: only the context bounds them). */
void lmp_engine_set_max_prompt_tokens(struct lmp_engine *e, uint32_t n);
uint32_t lmp_engine_slots(const struct lmp_engine *e);

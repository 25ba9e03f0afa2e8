/* The worker's engine (see engine.h): slots, batching, sampling and stop
 * conditions over one model context. A job with a format (constrained JSON
 * output) gets its grammar from the engine's bounded cache of compiled
 * schemas and a document state in its slot, advanced with each accepted
 * token; the vocabulary's token bytes are decoded once, at the first such
 * job. The job ends "stop" when its document is closed, "eos" at an end
 * token (allowed only once the document is complete), and "length" when
 * max_tokens or the context cut it short.
 *
 * A chat with tools renders them through the model's own template, and its
 * answer is searched for calls in the template's syntax (tool_calls.h) when
 * it ends: found calls go in the done event with finish "tool_calls". While
 * it streams, text that may be the start of a call is held back (tokens
 * events carry the text before it); what is left of the content when the
 * calls are taken out, or the held text when none parse, is sent in one
 * token event before done. A forced call (tool_choice "required" or a named
 * function) puts the syntax's prefix at the end of the prompt and samples
 * under a tool grammar (tool_grammar.h); it streams nothing until done. */
#include "worker/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/clock.h"
#include "common/utf8.h"
#include "sampler/json_tokens.h"
#include "image/image.h"
#include "sampler/tool_grammar.h"
#include "tokenizer/media.h"
#include "tokenizer/tool_calls.h"

#define JSON_CACHE 16           /* compiled schemas kept per engine */
#define IMAGE_CACHE 8           /* encoded images kept per engine (more while running jobs hold them) */
/* A cached position's tag: 0 for text, else the image's number and the
 * token's index in it. */
#define TAG_INDEX_BITS 20       /* image tokens per image: the encoder's limit is far below */
#define IMAGE_TAG(id, j) ((id) << TAG_INDEX_BITS | (uint64_t)(j))

/* An encoded image. id is unique over the engine's life: an image encoded
 * again after it left the cache gets a new one, so a tag never stands for
 * two different images. */
struct image_entry {
        uint64_t id;                    /* 0: free */
        uint64_t hash;                  /* of bytes (to find it; bytes are compared) */
        uint8_t *bytes;
        size_t len;
        struct lmp_image_embd embd;
        uint32_t refs;                  /* jobs using it: not evicted while > 0 */
        uint64_t used;                  /* the engine's clock when last asked for */
};

#define PIECE_MAX 256           /* bytes one token's text can add (longest piece + held bytes) */
#define STOP_MAX 256

/* Answers of a conversation as the model sampled them: span k's tokens
 * are cache[pos, pos + len) of its slot (the last answer's last token,
 * never evaluated, stored at cache[n_cache] when tail is set), its text
 * text[off, off + text_len). Bounded: ANSWERS_MAX spans, text_cap bytes. */
#define ANSWERS_MAX 64
struct answer_span {
        uint32_t pos, len;
        size_t off, text_len;
};
struct answers {
        struct answer_span span[ANSWERS_MAX];
        uint32_t n;
        char *text;
        size_t n_text;
        bool tail;
};

struct slot {
        struct lmp_job *job;            /* NULL when free */
        int32_t *cache;                 /* (n_ctx) tokens whose K/V the sequence holds */
        uint64_t *cache_tag;            /* (n_ctx) their tags (IMAGE_TAG; 0: text) */
        uint32_t n_cache;
        int32_t *prompt;                /* (n_ctx) the running job's prompt */
        uint64_t *prompt_tag;           /* (n_ctx) its tags */
        int32_t (*prompt_rope)[LMP_ROPE_AXES]; /* (n_ctx) its M-RoPE positions (when n_img) */
        uint32_t n_prompt;
        struct image_entry *img[LMP_PROTO_IMAGES_MAX]; /* the running job's images (held) */
        uint32_t n_img, n_img_cached;
        int32_t rope_shift;             /* KV position - rotary position after the prompt's images */
        uint32_t n_eval;                /* prompt tokens evaluated (or reused) */
        uint32_t n_reused;
        int32_t last;                   /* sampled, not yet evaluated */
        bool generating;
        uint32_t n_gen;
        uint32_t max_gen;
        struct lmp_sampler *sampler;
        struct lmp_detok detok;
        struct lmp_json_grammar *grammar; /* NULL: no format */
        struct lmp_json_allow json;     /* the document so far (when grammar) */
        char pending[STOP_MAX + PIECE_MAX]; /* text held back while it may start a stop string */
        size_t n_pending;
        char *text;                     /* (text_cap) whole output, for non-streaming jobs and tools */
        size_t n_text, text_cap;
        bool tools_on;                  /* the answer is searched for tool calls */
        size_t n_streamed;              /* tools_on: bytes of text sent in token events */
        struct lmp_tool_grammar *tool_grammar; /* a forced call; NULL: none */
        struct lmp_tool_allow *tool_allow; /* its state, allocated at the slot's first forced call */
        /* The answers whose sampled tokens the cache holds (cache_reuse),
         * in order: a prompt that sends their text back gets these tokens
         * for it (struct answers). */
        struct answers ans;
        double t_arrival, t_first, t_prompt_done;
        uint64_t used;                  /* when a job last took it (the engine's count) */
        uint64_t step;                  /* the last step that took prompt tokens of it */
};

struct lmp_engine {
        struct lmp_engine_params p;
        struct lmp_ctx *ctx;
        uint32_t n_vocab;
        struct slot *slots;
        struct lmp_batch_entry *batch;  /* (n_batch) */
        int32_t *batch_slot;            /* (n_batch) slot of each entry */
        float *logits;                  /* (slots, n_vocab) */
        uint32_t active;
        uint64_t jobs;                  /* jobs taken so far: the slots' clock */
        uint64_t steps;                 /* steps so far */
        struct lmp_json_tokens *json_tokens; /* NULL until a job has a format */
        struct lmp_json_cache *json_cache;
        enum lmp_tool_syntax tool_syntax; /* the chat template's */
        bool can_cut;                   /* the context can move a sequence (cache_reuse) */
        struct answers next;            /* the answers spliced into the prompt being prepared */
        struct image_entry *images;     /* (n_images_cap) the encoded images */
        uint32_t n_images_cap;
        uint64_t image_ids;             /* numbers given so far */
        int32_t (*batch_rope)[LMP_ROPE_AXES]; /* (n_batch) rotary positions of generating entries */
        uint64_t *batch_tag;            /* (n_batch) the tag of each entry */
        /* The prompt being prepared: its images (held) and rope shift. */
        struct image_entry *next_img[LMP_PROTO_IMAGES_MAX];
        uint32_t n_next_img, n_next_cached;
        int32_t next_shift;
        uint64_t image_clock;
};

void lmp_job_free(struct lmp_job *j) {
        if (!j)
                return;
        lmp_request_clear(&j->req);
        free(j);
}

int lmp_engine_new(const struct lmp_engine_params *p, struct lmp_engine **ret, struct lmp_error *err) {
        struct lmp_ctx_params cp = { .n_ctx = p->n_ctx, .n_seq = p->slots, .n_batch = p->n_batch };
        struct lmp_engine *e;
        int r;

        if (p->slots == 0 || p->n_batch < p->slots)
                return lmp_error_set(err, -EINVAL, "batch (%u) must be at least slots (%u)", p->n_batch, p->slots);
        e = calloc(1, sizeof(*e));
        if (!e)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        e->p = *p;
        r = lmp_ctx_new(p->model, &cp, p->pool, &e->ctx, err);
        if (r < 0)
                goto fail;
        e->p.n_ctx = lmp_ctx_n_ctx(e->ctx);
        e->can_cut = lmp_ctx_can_cut(e->ctx);
        e->tool_syntax = lmp_tool_syntax_detect(p->chat ? p->chat->template_text : NULL);
        e->n_vocab = p->model->hp.n_vocab;
        e->slots = calloc(p->slots, sizeof(*e->slots));
        e->batch = calloc(p->n_batch, sizeof(*e->batch));
        e->batch_slot = calloc(p->n_batch, sizeof(*e->batch_slot));
        e->logits = malloc((size_t)p->slots * e->n_vocab * sizeof(float));
        e->batch_rope = calloc(p->n_batch, sizeof(*e->batch_rope));
        e->batch_tag = calloc(p->n_batch, sizeof(*e->batch_tag));
        if (!e->slots || !e->batch || !e->batch_slot || !e->logits || !e->batch_rope || !e->batch_tag)
                goto nomem;
        if (p->vision) {
                e->n_images_cap = IMAGE_CACHE + p->slots * LMP_PROTO_IMAGES_MAX;
                if (!(e->images = calloc(e->n_images_cap, sizeof(*e->images))))
                        goto nomem;
        }
        for (uint32_t s = 0; s < p->slots; s++) {
                struct slot *sl = &e->slots[s];
                sl->cache = malloc((size_t)e->p.n_ctx * sizeof(int32_t));
                sl->prompt = malloc(((size_t)e->p.n_ctx + 1) * sizeof(int32_t));
                sl->cache_tag = calloc((size_t)e->p.n_ctx + 1, sizeof(uint64_t));
                sl->prompt_tag = calloc((size_t)e->p.n_ctx + 1, sizeof(uint64_t));
                sl->prompt_rope = p->vision ? calloc((size_t)e->p.n_ctx + 1, sizeof(*sl->prompt_rope)) : NULL;
                if (!sl->cache_tag || !sl->prompt_tag || (p->vision && !sl->prompt_rope))
                        goto nomem;
                sl->text_cap = (size_t)e->p.n_ctx * 16 + PIECE_MAX;
                sl->text = malloc(sl->text_cap);
                sl->ans.text = e->p.cache_reuse ? malloc(sl->text_cap) : NULL;
                if (!sl->cache || !sl->prompt || !sl->text || (e->p.cache_reuse && !sl->ans.text))
                        goto nomem;
        }
        e->next.text = e->p.cache_reuse ? malloc((size_t)e->p.n_ctx * 16 + PIECE_MAX) : NULL;
        if (e->p.cache_reuse && !e->next.text)
                goto nomem;
        *ret = e;
        return 0;
nomem:
        r = lmp_error_set(err, -ENOMEM, "out of memory for %u slots of %u positions", p->slots, e->p.n_ctx);
fail:
        lmp_engine_free(e);
        return r;
}

void lmp_engine_free(struct lmp_engine *e) {
        if (!e)
                return;
        for (uint32_t s = 0; e->slots && s < e->p.slots; s++) {
                lmp_job_free(e->slots[s].job);
                lmp_sampler_free(e->slots[s].sampler);
                lmp_json_grammar_unref(e->slots[s].grammar);
                lmp_tool_grammar_free(e->slots[s].tool_grammar);
                free(e->slots[s].tool_allow);
                free(e->slots[s].cache);
                free(e->slots[s].prompt);
                free(e->slots[s].cache_tag);
                free(e->slots[s].prompt_tag);
                free(e->slots[s].prompt_rope);
                free(e->slots[s].text);
                free(e->slots[s].ans.text);
        }
        free(e->next.text);
        free(e->slots);
        free(e->batch);
        free(e->batch_slot);
        free(e->logits);
        free(e->batch_rope);
        free(e->batch_tag);
        for (uint32_t i = 0; e->images && i < e->n_images_cap; i++) {
                free(e->images[i].bytes);
                lmp_image_embd_clear(&e->images[i].embd);
        }
        free(e->images);
        lmp_json_tokens_free(e->json_tokens);
        lmp_json_cache_free(e->json_cache);
        lmp_ctx_free(e->ctx);
        free(e);
}

uint32_t lmp_engine_active(const struct lmp_engine *e) {
        return e->active;
}

void lmp_engine_set_max_prompt_tokens(struct lmp_engine *e, uint32_t n) {
        e->p.max_prompt_tokens = n;
}

uint32_t lmp_engine_slots(const struct lmp_engine *e) {
        return e->p.slots;
}

static void emit_error(struct lmp_engine *e, const struct lmp_job *j, const char *code, const char *message) {
        struct lmp_engine_event ev = { .kind = LMP_EV_ERROR, .rid = j->rid, .id = j->req.id, .code = code,
                                       .message = message };
        e->p.sink(e->p.sink_userdata, &ev);
}

static void unhold_images(struct slot *sl) {
        for (uint32_t k = 0; k < sl->n_img; k++)
                sl->img[k]->refs--;
        sl->n_img = 0;
}

static void release(struct lmp_engine *e, struct slot *sl) {
        unhold_images(sl);
        lmp_job_free(sl->job);
        sl->job = NULL;
        lmp_sampler_free(sl->sampler);
        sl->sampler = NULL;
        lmp_json_grammar_unref(sl->grammar);
        sl->grammar = NULL;
        lmp_tool_grammar_free(sl->tool_grammar);
        sl->tool_grammar = NULL;
        e->active--;
}

static void emit_text(struct lmp_engine *e, const struct lmp_job *j, const char *text, size_t n) {
        struct lmp_engine_event ev = { .kind = LMP_EV_TOKEN, .rid = j->rid, .id = j->req.id, .text = text,
                                       .text_len = n, .return_ids = j->req.return_ids };
        e->p.sink(e->p.sink_userdata, &ev);
}

/* The calls in a finished answer (tools_on): *ret_calls (compact JSON) and
 * *ret_content (the text outside them), both NULL when there are none. A
 * forced call is wrapped in its syntax's prefix and suffix first. Sends
 * what the stream held back. Allocates once per job, not per token. */
static void take_tool_calls(struct lmp_engine *e, struct slot *sl, bool complete, char **ret_calls,
                            char **ret_content) {
        const struct lmp_job *j = sl->job;
        const char *text = sl->text;
        size_t n = sl->n_text;
        char *wrapped = NULL, *content = NULL, *calls = NULL;
        uint64_t seed = 1469598103934665603ull ^ j->rid;

        *ret_calls = *ret_content = NULL;
        for (const char *p = j->req.id; *p; p++)
                seed = (seed ^ (unsigned char)*p) * 1099511628211ull;
        if (sl->tool_grammar) {
                const char *pre = lmp_tool_syntax_prefix(e->tool_syntax), *suf = lmp_tool_syntax_suffix(e->tool_syntax);
                size_t a = strlen(pre), b = strlen(suf);
                if (complete && (wrapped = malloc(a + n + b + 1))) {
                        memcpy(wrapped, pre, a);
                        memcpy(wrapped + a, text, n);
                        memcpy(wrapped + a + n, suf, b);
                        wrapped[a + n + b] = '\0';
                        text = wrapped;
                        n += a + b;
                }
        }
        int found = (!sl->tool_grammar || wrapped) ? lmp_tool_calls_extract(e->tool_syntax, text, n, seed, &calls,
                                                                            &content) : 0;
        free(wrapped);
        if (found > 0) {
                *ret_calls = calls;
                *ret_content = content;
        }
        if (j->req.stream) {
                const char *rest = found > 0 ? content : sl->text;
                size_t len = found > 0 ? strlen(content) : sl->n_text;
                if (len > sl->n_streamed)
                        emit_text(e, j, rest + sl->n_streamed, len - sl->n_streamed);
        }
}

/* Adds a finished answer to its slot's answers (cache_reuse) when its text
 * is all its tokens say: an end token or the length ended it, with no stop
 * string, grammar or tool calls. Its tokens are the evaluated ones after
 * the prompt and, for "length", the last one sampled, which only its text
 * has seen (kept past the cache's end). */
static void keep_answer(struct lmp_engine *e, struct slot *sl, const char *why) {
        struct answers *a = &sl->ans;
        bool eos = strcmp(why, "eos") == 0;
        if (!e->p.cache_reuse || (!eos && strcmp(why, "length") != 0) || sl->grammar || sl->tool_grammar ||
            sl->tools_on || sl->job->req.n_stop || sl->n_text >= sl->text_cap || sl->n_cache <= sl->n_prompt ||
            (!eos && sl->n_cache >= e->p.n_ctx) || a->n == ANSWERS_MAX)
                return;
        /* The text as the client got it: bytes that are not UTF-8, and NUL,
         * became U+FFFD (lmp_json_escape). */
        const uint8_t *t = (const uint8_t *)sl->text;
        char *o = a->text + a->n_text, *end = a->text + sl->text_cap;
        for (size_t i = 0; i < sl->n_text;) {
                size_t k = t[i] >= 0x80 ? lmp_utf8_char_len(t + i, sl->n_text - i) : t[i] ? 1 : 0;
                if ((size_t)(end - o) < (k ? k : 3))
                        return;
                if (k) {
                        memcpy(o, t + i, k);
                        o += k;
                        i += k;
                } else {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        i++;
                }
        }
        struct answer_span *sp = &a->span[a->n++];
        *sp = (struct answer_span){ .pos = sl->n_prompt, .len = sl->n_cache - sl->n_prompt, .off = a->n_text,
                                    .text_len = (size_t)(o - (a->text + a->n_text)) };
        a->n_text += sp->text_len;
        if (!eos) {
                sl->cache[sl->n_cache] = sl->last;
                sl->cache_tag[sl->n_cache] = 0;
                sp->len++;
                a->tail = true;
        }
}

static void finish(struct lmp_engine *e, struct slot *sl, const char *why) {
        const struct lmp_job *j = sl->job;
        double t_end = lmp_clock_ms();
        char *calls = NULL, *content = NULL;
        if (sl->tools_on) {
                bool complete = !sl->tool_grammar || lmp_tool_allow_done(sl->tool_allow);
                take_tool_calls(e, sl, complete, &calls, &content);
                if (calls)
                        why = "tool_calls";
        }
        struct lmp_engine_event ev = {
                .kind = LMP_EV_DONE, .rid = j->rid, .id = j->req.id, .finish = why,
                .full_text = j->req.stream ? NULL : content ? content : sl->text,
                .full_text_len = j->req.stream ? 0 : content ? strlen(content) : sl->n_text,
                .tool_calls = calls, .tool_calls_len = calls ? strlen(calls) : 0,
                .prompt_tokens = sl->n_prompt, .generated_tokens = sl->n_gen, .cached_tokens = sl->n_reused,
                .images = sl->n_img, .images_cached = sl->n_img_cached,
                .queued_ms = j->queued_ms,
                .prompt_ms = sl->t_prompt_done > 0 ? sl->t_prompt_done - sl->t_arrival : 0,
                .ttft_ms = j->queued_ms + (sl->t_first > 0 ? sl->t_first - sl->t_arrival : t_end - sl->t_arrival),
                .total_ms = j->queued_ms + (t_end - sl->t_arrival),
        };
        if (sl->n_gen > 1 && t_end > sl->t_first)
                ev.tokens_per_s = (sl->n_gen - 1) / ((t_end - sl->t_first) / 1e3);
        e->p.sink(e->p.sink_userdata, &ev);
        free(calls);
        free(content);
        keep_answer(e, sl, why);
        release(e, sl);
}

/* Whether a chat needs the template's JSON form: tools, tool results or
 * calls in its messages. */
static bool chat_has_tools(const struct lmp_request *r) {
        if (r->tools)
                return true;
        for (size_t i = 0; i < r->n_messages; i++)
                if (r->messages[i].role == LMP_ROLE_TOOL || r->messages[i].tool_calls)
                        return true;
        return false;
}

/* Renders a chat with tools: its messages as the JSON a template reads
 * (tool_calls, tool_call_id, name) and the tools list; a forced call's
 * prefix is appended. */
static int render_tools_chat(const struct lmp_engine *e, const struct lmp_request *r, char **ret,
                             struct lmp_error *err) {
        cJSON *msgs = cJSON_CreateArray(), *tools = r->tools ? cJSON_Parse(r->tools) : NULL;
        int rc = -ENOMEM;
        if (!msgs || (r->tools && !tools))
                goto out;
        for (size_t i = 0; i < r->n_messages; i++) {
                const struct lmp_message *m = &r->messages[i];
                cJSON *o = cJSON_CreateObject(), *tc = m->tool_calls ? cJSON_Parse(m->tool_calls) : NULL;
                if (!o || (m->tool_calls && !tc)) {
                        cJSON_Delete(o);
                        cJSON_Delete(tc);
                        goto out;
                }
                cJSON_AddItemToArray(msgs, o);
                if (!cJSON_AddStringToObject(o, "role", lmp_role_name(m->role)) ||
                    !cJSON_AddStringToObject(o, "content", m->content) ||
                    (m->tool_call_id && !cJSON_AddStringToObject(o, "tool_call_id", m->tool_call_id)) ||
                    (m->name && !cJSON_AddStringToObject(o, "name", m->name))) {
                        cJSON_Delete(tc);
                        goto out;
                }
                if (tc)
                        cJSON_AddItemToObject(o, "tool_calls", tc);
        }
        char *text = NULL;
        rc = lmp_chat_setup_render_json(e->p.chat, msgs, tools, NULL, NULL, NULL, 0, true, &text, err);
        if (rc < 0)
                goto out;
        if (r->tool_choice == LMP_TOOL_CHOICE_REQUIRED || r->tool_choice == LMP_TOOL_CHOICE_FUNCTION) {
                const char *pre = lmp_tool_syntax_prefix(e->tool_syntax);
                size_t a = strlen(text), b = strlen(pre);
                char *t = realloc(text, a + b + 1);
                if (!t) {
                        free(text);
                        rc = -ENOMEM;
                        goto out;
                }
                memcpy(t + a, pre, b + 1);
                text = t;
        }
        *ret = text;
        rc = 0;
out:
        if (rc == -ENOMEM)
                lmp_error_set(err, -ENOMEM, "out of memory");
        cJSON_Delete(msgs);
        cJSON_Delete(tools);
        return rc;
}

/* ------------------------------------------------------------- images */

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ull;
        return h;
}

static void unhold_next(struct lmp_engine *e) {
        for (uint32_t k = 0; k < e->n_next_img; k++)
                e->next_img[k]->refs--;
        e->n_next_img = 0;
}

/* The encoded image of im's bytes, held: from the cache, or decoded,
 * resized and encoded, and cached in place of the least recently asked
 * for image no job holds. */
static int get_image(struct lmp_engine *e, const struct lmp_proto_image *im, struct image_entry **ret,
                     bool *ret_cached, struct lmp_error *err) {
        uint64_t h = hash_bytes(im->data, im->len);
        struct image_entry *slot = NULL, *lru = NULL;
        uint32_t live = 0;
        for (uint32_t i = 0; i < e->n_images_cap; i++) {
                struct image_entry *x = &e->images[i];
                if (!x->id) {
                        if (!slot)
                                slot = x;
                        continue;
                }
                live++;
                if (x->hash == h && x->len == im->len && memcmp(x->bytes, im->data, im->len) == 0) {
                        x->refs++;
                        x->used = ++e->image_clock;
                        *ret = x;
                        *ret_cached = true;
                        return 0;
                }
                if (!x->refs && (!lru || x->used < lru->used))
                        lru = x;
        }
        struct lmp_image img = { 0 };
        struct lmp_vision_image pre = { 0 };
        struct lmp_image_embd embd = { 0 };
        uint8_t *copy = NULL;
        int r;
        if ((r = lmp_image_decode(im->data, im->len, NULL, &img, err)) < 0 ||
            (r = lmp_vision_preprocess(e->p.vision, img.rgb, img.width, img.height, &pre, err)) < 0 ||
            (r = lmp_vision_encode(e->p.vision, e->p.pool, &pre, &embd, err)) < 0)
                goto out;
        if (embd.n_tokens >= 1u << TAG_INDEX_BITS) {
                r = lmp_error_set(err, -E2BIG, "the image makes %u tokens", embd.n_tokens);
                goto out;
        }
        if (live >= IMAGE_CACHE && lru) {
                free(lru->bytes);
                lmp_image_embd_clear(&lru->embd);
                *lru = (struct image_entry){ 0 };
                slot = lru;
        }
        if (!slot || !(copy = malloc(im->len))) {
                r = lmp_error_set(err, -ENOMEM, "out of memory for the image cache");
                goto out;
        }
        memcpy(copy, im->data, im->len);
        *slot = (struct image_entry){ .id = ++e->image_ids, .hash = h, .bytes = copy, .len = im->len, .embd = embd,
                                      .refs = 1, .used = ++e->image_clock };
        embd = (struct lmp_image_embd){ 0 };
        *ret = slot;
        *ret_cached = false;
        r = 0;
out:
        lmp_image_embd_clear(&embd);
        lmp_vision_image_clear(&pre);
        lmp_image_clear(&img);
        return r;
}

/* The job's images into e->next_img (held). */
static int job_images(struct lmp_engine *e, const struct lmp_job *j, const char **code, char *msg, size_t msg_size) {
        struct lmp_error err = { 0 };
        e->n_next_img = 0;
        e->n_next_cached = 0;
        if (!j->req.n_images)
                return 0;
        if (!e->p.vision) {
                *code = "bad_request";
                snprintf(msg, msg_size, "this model takes no images (set mmproj in its configuration)");
                return -EINVAL;
        }
        for (size_t k = 0; k < j->req.n_images; k++) {
                bool cached = false;
                int r = get_image(e, &j->req.images[k], &e->next_img[e->n_next_img], &cached, &err);
                if (r < 0) {
                        *code = r == -ENOMEM ? "internal" : "bad_request";
                        snprintf(msg, msg_size, "image %zu: %s", k, err.msg);
                        return r;
                }
                e->n_next_img++;
                e->n_next_cached += cached;
        }
        return 0;
}

/* The prompt's image entries: rotary positions, tags, and a placeholder
 * token (the embedding replaces it). */
static int lay_out_images(struct lmp_engine *e, struct slot *sl, uint32_t n) {
        const struct lmp_image_embd *embd[LMP_PROTO_IMAGES_MAX];
        memset(sl->prompt_tag, 0, n * sizeof(uint64_t));
        e->next_shift = 0;
        if (!e->n_next_img)
                return 0;
        for (uint32_t k = 0; k < e->n_next_img; k++)
                embd[k] = &e->next_img[k]->embd;
        int64_t t = lmp_vision_positions(sl->prompt, n, embd, e->n_next_img, 0, sl->prompt_rope);
        if (t < 0)
                return (int)t;
        e->next_shift = (int32_t)((int64_t)n - t);
        int32_t pad = lmp_vocab_find(e->p.vocab, "<|image_pad|>", strlen("<|image_pad|>"));
        int32_t prev = 0;
        uint32_t j = 0;
        for (uint32_t i = 0; i < n; i++) {
                int32_t id = sl->prompt[i];
                if (id >= 0) {
                        prev = id;
                        continue;
                }
                j = id == prev ? j + 1 : 0;
                prev = id;
                uint32_t k = (uint32_t)(-1 - (int64_t)id);
                sl->prompt_tag[i] = IMAGE_TAG(e->next_img[k]->id, j);
                sl->prompt[i] = pad >= 0 ? pad : 0;
        }
        return 0;
}

/* The embedding of an image entry of sl's prompt. */
static const float *image_row(const struct slot *sl, uint64_t tag) {
        uint64_t id = tag >> TAG_INDEX_BITS, j = tag & ((1u << TAG_INDEX_BITS) - 1);
        for (uint32_t k = 0; k < sl->n_img; k++)
                if (sl->img[k]->id == id)
                        return sl->img[k]->embd.data + j * sl->img[k]->embd.n_embd;
        return NULL;
}

/* Tokenizes the job's prompt (rendering the chat template first) into
 * sl->prompt. Returns 0, or fills code/message for the error event. */
/* Shortest answer text worth looking for in a prompt. */
#define ANSWER_MIN_BYTES 16

/* The answers of sl that text sends back, in order and each after the
 * last: their count, *ret_bytes their text's length. at[k]: where the k-th
 * found is, span[k] which it is. */
static uint32_t find_answers(const struct slot *sl, const char *text, size_t len, size_t *at, uint32_t *which,
                             size_t *ret_bytes) {
        const struct answers *a = &sl->ans;
        size_t from = 0, bytes = 0;
        uint32_t n = 0;
        for (uint32_t k = 0; k < a->n; k++) {
                const struct answer_span *sp = &a->span[k];
                if (sp->text_len < ANSWER_MIN_BYTES || sp->pos + sp->len > sl->n_cache + (a->tail && k == a->n - 1))
                        continue;
                const char *hit = memmem(text + from, len - from, a->text + sp->off, sp->text_len);
                if (!hit)
                        continue;
                at[n] = (size_t)(hit - text);
                which[n++] = k;
                from = at[n - 1] + sp->text_len;
                bytes += sp->text_len;
        }
        *ret_bytes = bytes;
        return n;
}

/* The prompt's tokens. With cache_reuse, the answers of a free slot that
 * the prompt sends back (a chat's history) keep the tokens they were
 * sampled as, rather than those their text tokenizes to: a sampled answer
 * seldom tokenizes back to the same tokens, and the slot's cache then goes
 * on past them. The text between them is tokenized as the whole prompt
 * would be: BOS first, and with a SentencePiece vocabulary (which prefixes
 * a text with a space) each stretch after an answer must start with a
 * control token, else the prompt is tokenized whole. e->next gets the
 * answers spliced in, at their positions in the prompt. */
static int tokenize_prompt(struct lmp_engine *e, const char *text, int32_t *out, size_t cap, size_t *ret_n) {
        const struct lmp_vocab *v = e->p.vocab;
        size_t len = strlen(text), at[ANSWERS_MAX], best_at[ANSWERS_MAX], best_bytes = 0, n = 0;
        uint32_t which[ANSWERS_MAX], best_which[ANSWERS_MAX], n_best = 0;
        const struct slot *best = NULL;
        int r;

        e->next.n = 0;
        e->next.n_text = 0;
        e->next.tail = false;
        for (uint32_t s = 0; e->p.cache_reuse && s < e->p.slots; s++) {
                const struct slot *sl = &e->slots[s];
                size_t bytes;
                if (sl->job || !sl->ans.n)
                        continue;
                uint32_t found = find_answers(sl, text, len, at, which, &bytes);
                if (found && bytes > best_bytes) {
                        best = sl;
                        best_bytes = bytes;
                        n_best = found;
                        memcpy(best_at, at, found * sizeof(*at));
                        memcpy(best_which, which, found * sizeof(*which));
                }
        }
        if (!best)
                return lmp_tokenize(v, text, len, true, true, out, cap, ret_n);
        if (lmp_vocab_add_bos(v))
                out[n++] = lmp_vocab_bos(v);
        size_t from = 0;
        for (uint32_t k = 0; k <= n_best; k++) {
                size_t end = k < n_best ? best_at[k] : len, got = 0;
                r = lmp_tokenize(v, text + from, end - from, false, true, out + n, cap - n, &got);
                if (r < 0)
                        return r;
                if (k && got && lmp_vocab_type(v) == LMP_VOCAB_SPM &&
                    !(lmp_vocab_token_attr(v, out[n]) & LMP_TOKEN_ATTR_CONTROL)) {
                        e->next.n = 0;
                        e->next.n_text = 0;
                        return lmp_tokenize(v, text, len, true, true, out, cap, ret_n);
                }
                n += got;
                if (k == n_best)
                        break;
                const struct answer_span *sp = &best->ans.span[best_which[k]];
                if (sp->len >= cap - n)
                        return -ENOSPC;
                memcpy(out + n, best->cache + sp->pos, sp->len * sizeof(int32_t));
                e->next.span[e->next.n++] = (struct answer_span){ .pos = (uint32_t)n, .len = sp->len,
                                                                  .off = e->next.n_text, .text_len = sp->text_len };
                memcpy(e->next.text + e->next.n_text, best->ans.text + sp->off, sp->text_len);
                e->next.n_text += sp->text_len;
                n += sp->len;
                from = best_at[k] + sp->text_len;
        }
        if (lmp_vocab_add_eos(v)) {
                if (n >= cap)
                        return -ENOSPC;
                out[n++] = lmp_vocab_eos(v);
        }
        *ret_n = n;
        return 0;
}

static int prepare_prompt(struct lmp_engine *e, struct slot *sl, const struct lmp_job *j, const char **code,
                          char *msg, size_t msg_size) {
        const char *text = j->req.prompt;
        char *rendered = NULL;
        size_t n = 0;
        struct lmp_error err = { 0 };
        int r;

        if ((r = job_images(e, j, code, msg, msg_size)) < 0)
                return r;
        if (j->req.type == LMP_REQ_CHAT) {
                if (!lmp_chat_setup_can_render(e->p.chat)) {
                        *code = "bad_request";
                        snprintf(msg, msg_size, "this model has no chat template; set chat_template in"
                                 " the model's configuration, or use a generate request");
                        return -EINVAL;
                }
                if (chat_has_tools(&j->req)) {
                        r = render_tools_chat(e, &j->req, &rendered, &err);
                } else {
                        struct lmp_chat_msg *msgs = calloc(j->req.n_messages, sizeof(*msgs));
                        if (!msgs) {
                                *code = "internal";
                                snprintf(msg, msg_size, "out of memory");
                                return -ENOMEM;
                        }
                        for (size_t i = 0; i < j->req.n_messages; i++)
                                msgs[i] = (struct lmp_chat_msg){ .role = lmp_role_name(j->req.messages[i].role),
                                                                 .content = j->req.messages[i].content };
                        r = lmp_chat_setup_render(e->p.chat, msgs, j->req.n_messages, NULL, NULL, NULL, true,
                                                  &rendered, &err);
                        free(msgs);
                }
                if (r < 0) {
                        *code = r == -ENOMEM ? "internal" : "bad_request";
                        snprintf(msg, msg_size, "chat template: %s", err.msg);
                        return r;
                }
                text = rendered;
        }
        if (e->n_next_img) {
                /* Answers are not spliced into a prompt with images. */
                uint32_t n_tok[LMP_PROTO_IMAGES_MAX];
                for (uint32_t k = 0; k < e->n_next_img; k++)
                        n_tok[k] = e->next_img[k]->embd.n_tokens;
                e->next.n = 0;
                e->next.n_text = 0;
                e->next.tail = false;
                r = lmp_tokenize_media(e->p.vocab, text, strlen(text), n_tok, e->n_next_img, sl->prompt,
                                       e->p.n_ctx + 1, &n);
                if (r == -EINVAL) {
                        free(rendered);
                        *code = "bad_request";
                        snprintf(msg, msg_size, "the prompt has %zu image markers (%s) for %u images", 
                                 lmp_media_markers(text), LMP_MEDIA_MARKER, e->n_next_img);
                        return r;
                }
        } else {
                r = tokenize_prompt(e, text, sl->prompt, e->p.n_ctx + 1, &n);
        }
        free(rendered);
        if (r == -ENOSPC || (r == 0 && n >= e->p.n_ctx)) {
                *code = "too_long";
                snprintf(msg, msg_size, "the prompt does not fit the context of %u tokens", e->p.n_ctx);
                return -E2BIG;
        }
        if (r < 0) {
                *code = "internal";
                snprintf(msg, msg_size, "tokenizer: error %d", r);
                return r;
        }
        /* A template that writes the BOS text and a vocabulary that adds BOS
         * would start with two: keep one. */
        int32_t bos = lmp_vocab_bos(e->p.vocab);
        if (n >= 2 && sl->prompt[0] == bos && sl->prompt[1] == bos) {
                memmove(sl->prompt, sl->prompt + 1, (n - 1) * sizeof(int32_t));
                n--;
        }
        if (n == 0) {
                *code = "bad_request";
                snprintf(msg, msg_size, "the prompt is empty");
                return -EINVAL;
        }
        if (e->p.max_prompt_tokens && n > e->p.max_prompt_tokens) {
                *code = "too_long";
                snprintf(msg, msg_size, "the prompt has %zu tokens, the limit is %u", n, e->p.max_prompt_tokens);
                return -E2BIG;
        }
        if ((r = lay_out_images(e, sl, (uint32_t)n)) < 0) {
                *code = "internal";
                snprintf(msg, msg_size, "the prompt's image entries do not match its images");
                return r;
        }
        sl->n_prompt = (uint32_t)n;
        return 0;
}

/* The grammar of a forced call: one head per function the choice allows,
 * each with its parameters' grammar from the engine's cache ({} when a
 * function has none). The parser checked every schema. */
static int forced_tool_grammar(struct lmp_engine *e, const struct lmp_request *r, struct lmp_tool_grammar **ret,
                               struct lmp_error *err) {
        cJSON *tools = cJSON_Parse(r->tools);
        struct lmp_tool_grammar *tg = NULL;
        int rc;
        if (!tools)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        rc = lmp_tool_grammar_new((uint32_t)cJSON_GetArraySize(tools), lmp_tool_syntax_args_key(e->tool_syntax), &tg,
                                  err);
        for (const cJSON *t = tools->child; rc == 0 && t; t = t->next) {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
                const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
                const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
                if (r->tool_choice == LMP_TOOL_CHOICE_FUNCTION && strcmp(name, r->tool_name))
                        continue;
                char *text = params ? cJSON_PrintUnformatted(params) : NULL;
                struct lmp_json_grammar *g = NULL;
                if (params && !text) {
                        rc = lmp_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                /* A function without parameters takes none, as OpenAI reads it. */
                static const char none[] = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";
                rc = lmp_json_cache_get(e->json_cache, text ? text : none, text ? strlen(text) : strlen(none), &g, err);
                free(text);
                if (rc == 0)
                        rc = lmp_tool_grammar_add(tg, name, g, err);
                lmp_json_grammar_unref(g);
        }
        cJSON_Delete(tools);
        if (rc < 0) {
                lmp_tool_grammar_free(tg);
                return rc;
        }
        *ret = tg;
        return 0;
}

/* How many tokens of a prompt a slot's cache can give: the common prefix,
 * then, with cache_reuse, each later stretch of at least cache_reuse cached
 * tokens that the prompt goes on with, skipping what the prompt dropped
 * (the oldest messages of a conversation's window), found greedily as
 * llama.cpp's server does. With cut, the skipped positions leave the cache
 * (lmp_ctx_seq_cut) and the kept ones move down to where the prompt has
 * them; without, nothing changes. *ret_prefix: the common prefix. */
static uint32_t reuse(struct lmp_engine *e, struct slot *sl, const int32_t *prompt, const uint64_t *tag, uint32_t n,
                      bool cut, uint32_t *ret_prefix) {
        uint32_t hp = 0, hc;

        while (hp < sl->n_cache && hp < n && sl->cache[hp] == prompt[hp] && sl->cache_tag[hp] == tag[hp])
                hp++;
        *ret_prefix = hp;
        if (!e->p.cache_reuse || !e->can_cut)
                return hp;
        /* A stretch moved down keeps its keys' rotation by one position
         * count: not M-RoPE positions after an image. Images: the prefix only. */
        for (uint32_t i = 0; i < n; i++)
                if (tag[i])
                        return hp;
        for (uint32_t i = 0; i < sl->n_cache; i++)
                if (sl->cache_tag[i])
                        return hp;
        hc = hp;
        while (hc < sl->n_cache && hp < n) {
                uint32_t m = 0;
                while (hc + m < sl->n_cache && hp + m < n && sl->cache[hc + m] == prompt[hp + m])
                        m++;
                if (m < e->p.cache_reuse) {
                        hc++;
                        continue;
                }
                if (cut && hc > hp) {
                        int32_t seq = (int32_t)(sl - e->slots);
                        if (lmp_ctx_seq_cut(e->ctx, seq, hp, hc) < 0)
                                break;  /* cannot happen on a context that can cut; keep what is in place */
                        memmove(sl->cache + hp, sl->cache + hc, (sl->n_cache - hc) * sizeof(int32_t));
                        sl->n_cache -= hc - hp;
                        hc = hp;
                }
                hp += m;
                hc += m;
        }
        return hp;
}

/* The free slot for a prompt. A slot's cache is worth taking over when
 * the prompt reuses more of it than it throws away (2 * reused > cached:
 * the same conversation's next turn, or a long shared opening such as a
 * RAG system prompt); the best such slot wins. Otherwise the least
 * recently used free slot (an empty one first) is taken, so that one
 * conversation does not evict another that merely shares its template's
 * first tokens. */
static struct slot *pick_slot(struct lmp_engine *e, const int32_t *prompt, const uint64_t *tag, uint32_t n) {
        struct slot *best = NULL, *lru = NULL;
        int64_t best_score = 0;

        for (uint32_t s = 0; s < e->p.slots; s++) {
                struct slot *sl = &e->slots[s];
                uint32_t prefix;
                if (sl->job)
                        continue;
                int64_t score = 2 * (int64_t)reuse(e, sl, prompt, tag, n, false, &prefix) - (int64_t)sl->n_cache;
                if (score > best_score || (best && score == best_score && sl->used < best->used)) {
                        best = sl;
                        best_score = score;
                }
                if (!lru || sl->used < lru->used)
                        lru = sl;
        }
        return best ? best : lru;
}

int lmp_engine_submit(struct lmp_engine *e, struct lmp_job *job) {
        struct slot *sl;
        struct lmp_error err = { 0 };
        const char *code = NULL;
        char msg[640];
        uint32_t common;
        int r;

        if (e->active == e->p.slots) {
                emit_error(e, job, "busy", "every slot of this worker is busy");
                lmp_job_free(job);
                return 0;
        }
        /* Tokenize into a spare slot's prompt buffer: any free slot's will do,
         * and the chosen slot then copies it if it differs. */
        sl = NULL;
        for (uint32_t s = 0; s < e->p.slots && !sl; s++)
                if (!e->slots[s].job)
                        sl = &e->slots[s];
        r = prepare_prompt(e, sl, job, &code, msg, sizeof(msg));
        if (r < 0) {
                unhold_next(e);
                emit_error(e, job, code, msg);
                lmp_job_free(job);
                return 0;
        }
        struct slot *chosen = pick_slot(e, sl->prompt, sl->prompt_tag, sl->n_prompt);
        if (chosen != sl) {
                memcpy(chosen->prompt, sl->prompt, sl->n_prompt * sizeof(int32_t));
                memcpy(chosen->prompt_tag, sl->prompt_tag, sl->n_prompt * sizeof(uint64_t));
                if (e->n_next_img)
                        memcpy(chosen->prompt_rope, sl->prompt_rope, sl->n_prompt * sizeof(*sl->prompt_rope));
                chosen->n_prompt = sl->n_prompt;
        }
        sl = chosen;
        /* The slot holds the job's images from here (release() lets go). */
        memcpy(sl->img, e->next_img, e->n_next_img * sizeof(*sl->img));
        sl->n_img = e->n_next_img;
        sl->n_img_cached = e->n_next_cached;
        sl->rope_shift = e->next_shift;
        e->n_next_img = 0;
        sl->used = ++e->jobs;
        /* The slot's cache becomes the prompt's: so do its answers. */
        if (e->p.cache_reuse) {
                struct answers *a = &sl->ans;
                a->n = e->next.n;
                a->tail = false;
                a->n_text = e->next.n_text;
                memcpy(a->span, e->next.span, e->next.n * sizeof(*a->span));
                memcpy(a->text, e->next.text, e->next.n_text);
        }
        uint32_t prefix;
        common = reuse(e, sl, sl->prompt, sl->prompt_tag, sl->n_prompt, true, &prefix);
        /* Evaluate at least the last prompt token, to get its logits. */
        if (common >= sl->n_prompt)
                common = sl->n_prompt - 1;
        r = lmp_ctx_seq_truncate(e->ctx, (int32_t)(sl - e->slots), common);
        if (r < 0) {
                emit_error(e, job, "internal", "could not reset the slot's cache");
                unhold_images(sl);
                lmp_job_free(job);
                return 0;
        }
        common = (uint32_t)r;   /* 0 when a windowed layer's ring has moved past it */
        struct lmp_json_grammar *grammar = NULL;
        struct lmp_tool_grammar *tool_grammar = NULL;
        bool forced = job->req.tools && (job->req.tool_choice == LMP_TOOL_CHOICE_REQUIRED ||
                                         job->req.tool_choice == LMP_TOOL_CHOICE_FUNCTION);
        if (job->req.format || forced) {
                /* The parser checked the schema; what fails here is memory
                 * or a vocabulary that cannot be rendered. */
                if (!e->json_tokens && lmp_json_tokens_new(e->p.vocab, &e->json_tokens, &err) < 0) {
                        emit_error(e, job, "internal", err.msg);
                        unhold_images(sl);
                        lmp_job_free(job);
                        return 0;
                }
                if ((!e->json_cache && lmp_json_cache_new(JSON_CACHE, &e->json_cache, &err) < 0) ||
                    (job->req.format &&
                     lmp_json_cache_get(e->json_cache, job->req.format, job->req.format_len, &grammar, &err) < 0) ||
                    (forced && forced_tool_grammar(e, &job->req, &tool_grammar, &err) < 0) ||
                    (forced && !sl->tool_allow && !(sl->tool_allow = malloc(sizeof(*sl->tool_allow))))) {
                        if (forced && tool_grammar && !sl->tool_allow)
                                lmp_error_set(&err, -ENOMEM, "out of memory");
                        lmp_json_grammar_unref(grammar);
                        lmp_tool_grammar_free(tool_grammar);
                        emit_error(e, job, err.code == -ENOMEM ? "internal" : "bad_request", err.msg);
                        unhold_images(sl);
                        lmp_job_free(job);
                        return 0;
                }
        }
        r = lmp_sampler_new((int32_t)e->n_vocab, &job->sampling, &sl->sampler, &err);
        if (r < 0) {
                lmp_json_grammar_unref(grammar);
                lmp_tool_grammar_free(tool_grammar);
                emit_error(e, job, "bad_request", err.msg);
                unhold_images(sl);
                lmp_job_free(job);
                return 0;
        }
        sl->grammar = grammar;
        if (grammar) {
                lmp_json_allow_init(&sl->json, e->json_tokens, grammar);
        }
        sl->tool_grammar = tool_grammar;
        if (tool_grammar)
                lmp_tool_allow_init(sl->tool_allow, e->json_tokens, tool_grammar);
        sl->tools_on = job->req.tools && job->req.tool_choice != LMP_TOOL_CHOICE_NONE;
        sl->n_streamed = 0;
        sl->job = job;
        sl->n_cache = common;
        sl->n_eval = common;
        sl->n_reused = common;
        sl->generating = false;
        sl->n_gen = 0;
        sl->max_gen = (uint32_t)job->req.sampling.max_tokens;
        if (sl->max_gen > e->p.n_ctx - sl->n_prompt)
                sl->max_gen = e->p.n_ctx - sl->n_prompt;
        sl->n_pending = 0;
        sl->n_text = 0;
        sl->t_arrival = job->arrival_ms > 0 ? job->arrival_ms : lmp_clock_ms();
        sl->t_first = 0;
        sl->t_prompt_done = 0;
        lmp_detok_init(&sl->detok, e->p.vocab, 0);
        for (uint32_t i = 0; i < sl->n_prompt; i++)
                if (!sl->prompt_tag[i])
                        lmp_sampler_accept(sl->sampler, sl->prompt[i]);
        e->active++;
        return 0;
}

bool lmp_engine_cancel(struct lmp_engine *e, uint64_t rid) {
        for (uint32_t s = 0; s < e->p.slots; s++) {
                struct slot *sl = &e->slots[s];
                if (sl->job && sl->job->rid == rid) {
                        emit_error(e, sl->job, "cancelled", "cancelled");
                        release(e, sl);
                        return true;
                }
        }
        return false;
}

/* Sends text that can no longer be part of a stop string; returns true when
 * a stop string was found (the text before it is sent). */
static bool flush_text(struct lmp_engine *e, struct slot *sl, int32_t token, bool final) {
        const struct lmp_job *j = sl->job;
        size_t send = sl->n_pending, keep = 0;
        bool stopped = false;

        for (size_t k = 0; k < j->req.n_stop; k++) {
                const char *hit = memmem(sl->pending, sl->n_pending, j->req.stop[k], strlen(j->req.stop[k]));
                if (hit && (size_t)(hit - sl->pending) < send) {
                        send = (size_t)(hit - sl->pending);
                        stopped = true;
                }
        }
        if (!stopped && !final) {
                /* Hold back the longest tail that is a prefix of a stop string. */
                for (size_t k = 0; k < j->req.n_stop; k++) {
                        size_t sn = strlen(j->req.stop[k]);
                        for (size_t t = LMP_MIN(sn - 1, sl->n_pending); t > keep; t--)
                                if (memcmp(sl->pending + sl->n_pending - t, j->req.stop[k], t) == 0) {
                                        keep = t;
                                        break;
                                }
                }
                send = sl->n_pending - keep;
        }
        if (!j->req.stream || sl->tools_on || e->p.cache_reuse) {
                size_t room = sl->text_cap - sl->n_text;
                size_t n = LMP_MIN(send, room);
                memcpy(sl->text + sl->n_text, sl->pending, n);
                sl->n_text += n;
        }
        if (j->req.stream && (send > 0 || token >= 0)) {
                const char *out = sl->pending;
                size_t out_len = send;
                if (sl->tools_on) {
                        /* Only what cannot be part of a call: from where the
                         * last look stopped (a marker found stays found). */
                        size_t lim = 0;
                        if (sl->tool_grammar)
                                lim = 0;
                        else if (e->tool_syntax == LMP_TOOL_LLAMA3)
                                lim = sl->n_streamed ? sl->n_text : lmp_tool_streamable(e->tool_syntax, sl->text,
                                                                                         sl->n_text);
                        else
                                lim = sl->n_streamed + lmp_tool_streamable(e->tool_syntax, sl->text + sl->n_streamed,
                                                                            sl->n_text - sl->n_streamed);
                        if (lim < sl->n_streamed)
                                lim = sl->n_streamed;
                        out = sl->text + sl->n_streamed;
                        out_len = lim - sl->n_streamed;
                        sl->n_streamed = lim;
                }
                struct lmp_engine_event ev = { .kind = LMP_EV_TOKEN, .rid = j->rid, .id = j->req.id,
                                               .text = out, .text_len = out_len,
                                               .ids = token >= 0 ? &token : NULL, .n_ids = token >= 0,
                                               .return_ids = j->req.return_ids };
                e->p.sink(e->p.sink_userdata, &ev);
        }
        memmove(sl->pending, sl->pending + send, sl->n_pending - send);
        sl->n_pending -= send;
        if (stopped)
                sl->n_pending = 0;
        return stopped;
}

/* Handles a freshly sampled token; returns true when the job is over. */
static bool accept_token(struct lmp_engine *e, struct slot *sl, int32_t tok) {
        const struct lmp_job *j = sl->job;
        size_t n = 0;

        sl->n_gen++;
        if (sl->n_gen == 1)
                sl->t_first = lmp_clock_ms();
        if (!j->req.ignore_eos && lmp_vocab_is_eog(e->p.vocab, tok)) {
                if (lmp_detok_flush(&sl->detok, sl->pending + sl->n_pending, PIECE_MAX, &n) == 0)
                        sl->n_pending += n;
                flush_text(e, sl, -1, true);
                finish(e, sl, "eos");
                return true;
        }
        lmp_sampler_accept(sl->sampler, tok);
        sl->last = tok;
        if (sl->grammar)
                lmp_json_allow_advance(&sl->json, tok); /* the sampler allowed it: cannot fail */
        if (sl->tool_grammar)
                lmp_tool_allow_advance(sl->tool_allow, tok);
        if (lmp_detok_push(&sl->detok, tok, sl->pending + sl->n_pending, PIECE_MAX, &n) == 0)
                sl->n_pending += n;
        /* A closed document ends the job: nothing may follow it. */
        bool closed = (sl->grammar && lmp_json_state_closed(&sl->json.state)) ||
                      (sl->tool_grammar && lmp_tool_allow_done(sl->tool_allow));
        bool last = closed || sl->n_gen >= sl->max_gen;
        if (last && lmp_detok_flush(&sl->detok, sl->pending + sl->n_pending, PIECE_MAX, &n) == 0)
                sl->n_pending += n;
        if (flush_text(e, sl, tok, last)) {
                finish(e, sl, "stop");
                return true;
        }
        if (last) {
                finish(e, sl, closed ? "stop" : "length");
                return true;
        }
        sl->last = tok;
        sl->generating = true;
        return false;
}

int lmp_engine_step(struct lmp_engine *e) {
        struct lmp_error err = { 0 };
        uint32_t n = 0, budget = e->p.n_batch;
        int r;

        if (e->active == 0)
                return 0;
        /* One token for every generating job first: decode latency stays flat
         * while prompts stream in behind. */
        for (uint32_t s = 0; s < e->p.slots; s++) {
                struct slot *sl = &e->slots[s];
                if (!sl->job || !sl->generating)
                        continue;
                e->batch[n] = (struct lmp_batch_entry){ .token = sl->last, .pos = (int32_t)sl->n_cache,
                                                        .seq = (int32_t)s, .logits = true };
                if (sl->rope_shift) {
                        int32_t t = (int32_t)sl->n_cache - sl->rope_shift;
                        e->batch_rope[n][0] = e->batch_rope[n][1] = e->batch_rope[n][2] = t;
                        e->batch[n].rope_pos = e->batch_rope[n];
                }
                e->batch_tag[n] = 0;
                e->batch_slot[n++] = (int32_t)s;
                budget--;
        }
        /* Then prompt chunks in the room that is left: while others are
         * generating, at most prompt_chunk tokens, since each of their next
         * tokens waits for this step. Oldest job first. */
        if (n > 0 && e->p.prompt_chunk > 0)
                budget = LMP_MIN(budget, e->p.prompt_chunk);
        e->steps++;
        while (budget > 0) {
                struct slot *sl = NULL;
                uint32_t s = 0;
                for (uint32_t k = 0; k < e->p.slots; k++) {
                        struct slot *c = &e->slots[k];
                        if (c->job && !c->generating && c->step != e->steps && c->n_eval < c->n_prompt &&
                            (!sl || c->used < sl->used)) {
                                sl = c;
                                s = k;
                        }
                }
                if (!sl)
                        break;
                sl->step = e->steps;
                uint32_t k = LMP_MIN(sl->n_prompt - sl->n_eval, budget);
                for (uint32_t i = 0; i < k; i++) {
                        uint32_t at = sl->n_eval + i;
                        e->batch[n] = (struct lmp_batch_entry){ .token = sl->prompt[at], .pos = (int32_t)at,
                                                                .seq = (int32_t)s,
                                                                .logits = at == sl->n_prompt - 1 };
                        e->batch_tag[n] = sl->prompt_tag[at];
                        if (sl->n_img) {
                                e->batch[n].rope_pos = sl->prompt_rope[at];
                                if (sl->prompt_tag[at])
                                        e->batch[n].embd = image_row(sl, sl->prompt_tag[at]);
                        }
                        e->batch_slot[n++] = (int32_t)s;
                }
                budget -= k;
        }
        if (n == 0)
                return (int)e->active;

        r = lmp_ctx_decode(e->ctx, e->batch, n, e->logits, &err);
        if (r < 0) {
                char msg[600];
                snprintf(msg, sizeof(msg), "forward pass: %s", err.msg);
                for (uint32_t s = 0; s < e->p.slots; s++)
                        if (e->slots[s].job) {
                                emit_error(e, e->slots[s].job, "internal", msg);
                                release(e, &e->slots[s]);
                        }
                return r;
        }

        uint32_t li = 0;
        for (uint32_t i = 0; i < n; i++) {
                struct slot *sl = &e->slots[e->batch_slot[i]];
                const struct lmp_batch_entry *b = &e->batch[i];
                sl->cache[b->pos] = b->token;
                sl->cache_tag[b->pos] = e->batch_tag[i];
                sl->n_cache = (uint32_t)b->pos + 1;
                if (!sl->generating)
                        sl->n_eval = sl->n_cache;
                if (!b->logits)
                        continue;
                const float *logits = e->logits + (size_t)li++ * e->n_vocab;
                if (!sl->generating)
                        sl->t_prompt_done = lmp_clock_ms();
                int32_t tok = sl->grammar ? lmp_sampler_sample_allowed(sl->sampler, logits, lmp_json_allow, &sl->json)
                              : sl->tool_grammar ? lmp_sampler_sample_allowed(sl->sampler, logits, lmp_tool_allow,
                                                                              sl->tool_allow)
                                                 : lmp_sampler_sample(sl->sampler, logits);
                if (tok < 0 && sl->tool_grammar) {
                        emit_error(e, sl->job, "bad_request", "no token of the model's vocabulary can continue "
                                   "the tool call");
                        release(e, sl);
                        continue;
                }
                if (tok < 0 && sl->grammar) {
                        emit_error(e, sl->job, "bad_request", "no token of the model's vocabulary can continue "
                                   "the JSON document");
                        release(e, sl);
                        continue;
                }
                if (tok < 0) {
                        emit_error(e, sl->job, "bad_request", "the sampling parameters leave no token to choose");
                        release(e, sl);
                        continue;
                }
                if (accept_token(e, sl, tok))
                        continue;
                if (sl->n_cache >= e->p.n_ctx)
                        finish(e, sl, "length");
        }
        return (int)e->active;
}

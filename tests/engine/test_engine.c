/* The worker's engine (src/worker/engine.c) on a real fixture model, with
 * greedy sampling so that every run is reproducible:
 *
 *   - non-streamed text: a job's done event carries the same text as the
 *     token events of the same job streamed, and that text is the
 *     detokenized ids;
 *   - stop strings: the text before the first stop string is sent and
 *     nothing of the string itself, even when it spans tokens (flush_text
 *     holds back a tail that may start one); a held-back tail that never
 *     becomes a stop string is sent at the end; the same with stream off;
 *   - slots: jobs run side by side up to the slot count, one more is
 *     answered busy, a cancelled job frees its slot;
 *   - prefix reuse: the same prompt again reuses the slot's cache (all but
 *     the last token, whose logits are needed), an unrelated prompt takes
 *     the least recently used slot and leaves the first one's cache alone;
 *   - prompt_chunk: while a job generates, a step takes at most that many
 *     prompt tokens, oldest job first;
 *   - chunked prompts: a prompt longer than the batch is read in chunks of
 *     the batch's size, while a job already generating gets one token in
 *     every step;
 *   - constrained output: jobs with a format, two slots side by side, at
 *     temperature 1 over many seeds: each job that ends "stop" or "eos"
 *     sent text that parses (and has the schema's required fields and
 *     enum values); one cut by max_tokens ends "length";
 *   - the chat set-up: a chat job renders with the model's own template and
 *     default system prompt exactly as `lmpool chat-template MODEL` prints
 *     it (the same tokens).
 *
 * Exits 77 when the fixtures are absent. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/threadpool.h"
#include "common/json.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "proto/proto.h"
#include "tokenizer/chat_setup.h"
#include "tokenizer/tokenizer.h"
#include "worker/engine.h"
#include "../check.h"

#define MAX_EVENTS 4096
#define TEXT_MAX 65536

/* What the sink saw, copied (the event's pointers live for the call only). */
struct event {
        enum lmp_engine_event_kind kind;
        char id[64];
        char text[512];
        size_t text_len;
        int32_t token;                  /* -1: none */
        char finish[16];
        char code[32];
        uint32_t prompt_tokens, generated_tokens, cached_tokens;
        char *full_text;                /* done, not streamed */
        size_t full_text_len;
        int step;                       /* the step it came in */
};

static struct event events[MAX_EVENTS];
static int n_events, cur_step;

static void sink(void *userdata, const struct lmp_engine_event *ev) {
        (void)userdata;
        if (n_events == MAX_EVENTS) {
                FAIL("more than %d events", MAX_EVENTS);
                return;
        }
        struct event *e = &events[n_events++];
        *e = (struct event){ .kind = ev->kind, .token = -1, .step = cur_step };
        snprintf(e->id, sizeof(e->id), "%s", ev->id ? ev->id : "");
        if (ev->kind == LMP_EV_TOKEN) {
                CHECK(ev->text_len < sizeof(e->text), "token text of %zu bytes", ev->text_len);
                e->text_len = ev->text_len < sizeof(e->text) ? ev->text_len : sizeof(e->text) - 1;
                memcpy(e->text, ev->text, e->text_len);
                if (ev->n_ids == 1)
                        e->token = ev->ids[0];
        } else if (ev->kind == LMP_EV_DONE) {
                snprintf(e->finish, sizeof(e->finish), "%s", ev->finish);
                e->prompt_tokens = ev->prompt_tokens;
                e->generated_tokens = ev->generated_tokens;
                e->cached_tokens = ev->cached_tokens;
                if (ev->full_text) {
                        e->full_text = malloc(ev->full_text_len + 1);
                        if (!e->full_text)
                                abort();
                        memcpy(e->full_text, ev->full_text, ev->full_text_len);
                        e->full_text[ev->full_text_len] = '\0';
                        e->full_text_len = ev->full_text_len;
                }
        } else {
                snprintf(e->code, sizeof(e->code), "%s", ev->code);
        }
}

static void clear_events(void) {
        for (int i = 0; i < n_events; i++)
                free(events[i].full_text);
        n_events = 0;
}

/* The model and what the engine needs besides. */
struct fixture {
        struct lmp_gguf *g;
        struct lmp_model *model;
        struct lmp_vocab *vocab;
        struct lmp_threadpool *pool;
        struct lmp_chat_setup chat;
};

static int fixture_open(struct fixture *f, const char *path) {
        struct lmp_error err = { 0 };
        *f = (struct fixture){ .chat = { .family = LMP_CHAT_UNKNOWN } };
        if (lmp_gguf_open(path, &f->g, &err) < 0 || lmp_model_load(f->g, lmp_cpu_isa(), &f->model, &err) < 0 ||
            lmp_vocab_load(f->g, &f->vocab, &err) < 0 || lmp_threadpool_new(1, &f->pool) < 0 ||
            lmp_chat_setup_init(&f->chat, f->g, f->vocab, NULL, NULL, &err) < 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg[0] ? err.msg : "thread pool");
                return -1;
        }
        return 0;
}

static void fixture_close(struct fixture *f) {
        lmp_chat_setup_clear(&f->chat);
        lmp_threadpool_free(f->pool);
        lmp_vocab_free(f->vocab);
        lmp_model_free(f->model);
        lmp_gguf_free(f->g);
}

static struct lmp_engine *engine_reuse(const struct fixture *f, uint32_t slots, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t cache_reuse) {
        struct lmp_error err = { 0 };
        struct lmp_engine *e = NULL;
        struct lmp_engine_params p = {
                .model = f->model, .vocab = f->vocab, .chat = &f->chat, .slots = slots, .n_ctx = n_ctx,
                .n_batch = n_batch, .cache_reuse = cache_reuse, .pool = f->pool, .sink = sink,
        };
        if (lmp_engine_new(&p, &e, &err) < 0) {
                fprintf(stderr, "lmp_engine_new: %s\n", err.msg);
                exit(1);
        }
        return e;
}

static struct lmp_engine *engine(const struct fixture *f, uint32_t slots, uint32_t n_ctx, uint32_t n_batch) {
        return engine_reuse(f, slots, n_ctx, n_batch, 0);
}

/* A job from a client frame (what the router would send), sampled greedily. */
static struct lmp_job *job(uint64_t rid, const char *json) {
        struct lmp_proto_error perr = { 0 };
        struct lmp_job *j = calloc(1, sizeof(*j));
        if (!j)
                abort();
        if (lmp_proto_parse_request(json, strlen(json), &j->req, &perr) < 0) {
                fprintf(stderr, "bad test request %s: %s\n", json, perr.message);
                exit(1);
        }
        lmp_sampler_params_default(&j->sampling);
        j->sampling.temperature = 0;
        j->rid = rid;
        return j;
}

static void submit(struct lmp_engine *e, uint64_t rid, const char *json) {
        CHECK(lmp_engine_submit(e, job(rid, json)) == 0, "submit %s", json);
}

/* Steps until no job is running (bounded: a stuck engine fails). */
static void run(struct lmp_engine *e) {
        for (int i = 0; i < 10000; i++) {
                cur_step++;
                int r = lmp_engine_step(e);
                CHECK(r >= 0, "step: %d", r);
                if (r <= 0)
                        return;
        }
        FAIL("the engine did not finish its jobs in 10000 steps");
}

static const struct event *done_of(const char *id) {
        for (int i = 0; i < n_events; i++)
                if (events[i].kind != LMP_EV_TOKEN && strcmp(events[i].id, id) == 0)
                        return &events[i];
        return NULL;
}

/* The streamed text of one job, and its token ids. */
static size_t streamed(const char *id, char *text, size_t cap, int32_t *ids, size_t *n_ids) {
        size_t n = 0, k = 0;
        for (int i = 0; i < n_events; i++) {
                const struct event *ev = &events[i];
                if (ev->kind != LMP_EV_TOKEN || strcmp(ev->id, id) != 0)
                        continue;
                if (n + ev->text_len < cap) {
                        memcpy(text + n, ev->text, ev->text_len);
                        n += ev->text_len;
                }
                if (ids && ev->token >= 0)
                        ids[k++] = ev->token;
        }
        text[n] = '\0';
        if (n_ids)
                *n_ids = k;
        return n;
}

#define PROMPT "The quick brown fox jumps over the lazy dog. Once upon a time"

/* ------------------------------------------------------------ text */

static char greedy_text[TEXT_MAX];      /* 24 tokens after PROMPT, streamed */
static size_t greedy_len;
static size_t greedy_end[24];           /* greedy_text's length after each token */

static void test_text(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 1, 512, 64);
        static char text[TEXT_MAX], detok[TEXT_MAX];
        int32_t ids[64];
        size_t n_ids = 0, n;

        clear_events();
        submit(e, 1, "{\"id\":\"s\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"" PROMPT "\","
                     "\"max_tokens\":24,\"ignore_eos\":true}");
        run(e);
        const struct event *d = done_of("s");
        CHECK(d && d->kind == LMP_EV_DONE && strcmp(d->finish, "length") == 0 && d->generated_tokens == 24,
              "streamed job: %s", d ? d->finish : "no end");
        CHECK(d && !d->full_text, "a streamed job's done event carries no text");
        greedy_len = streamed("s", greedy_text, sizeof(greedy_text), ids, &n_ids);
        CHECK(n_ids == 24, "one token event per token: %zu", n_ids);
        for (int i = 0, k = 0; i < n_events && k < 24; i++)
                if (events[i].kind == LMP_EV_TOKEN)
                        greedy_end[k] = (k ? greedy_end[k - 1] : 0) + events[i].text_len, k++;
        CHECK(lmp_detokenize(f->vocab, ids, n_ids, 0, detok, sizeof(detok), &n) == 0 && n == greedy_len &&
                      memcmp(detok, greedy_text, n) == 0,
              "the streamed text is the detokenized ids: '%s' / '%.*s'", greedy_text, (int)n, detok);

        clear_events();
        submit(e, 2, "{\"id\":\"n\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"" PROMPT "\","
                     "\"max_tokens\":24,\"ignore_eos\":true,\"stream\":false}");
        run(e);
        d = done_of("n");
        n = streamed("n", text, sizeof(text), NULL, NULL);
        CHECK(n == 0, "a job that does not stream sends no token text (%zu bytes)", n);
        CHECK(d && d->full_text && d->full_text_len == greedy_len && memcmp(d->full_text, greedy_text, greedy_len) == 0,
              "non-streamed text '%s', streamed '%s'", d && d->full_text ? d->full_text : "(none)", greedy_text);
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ stop strings */

/* A JSON string literal of s (the greedy text is random pieces: quotes,
 * backslashes and control bytes are escaped). */
static void json_str(const char *s, size_t len, char *out, size_t cap) {
        size_t o = 0;
        out[o++] = '"';
        for (size_t i = 0; i < len && o + 8 < cap; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\')
                        o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
                else if (c < 0x20)
                        o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
                else
                        out[o++] = (char)c;
        }
        out[o++] = '"';
        out[o] = '\0';
}

static void test_stop(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 1, 512, 64);
        static char text[TEXT_MAX];
        char req[2048], stop[256];

        if (greedy_len < 12) {
                FAIL("the greedy text is too short for the stop tests: '%s'", greedy_text);
                lmp_engine_free(e);
                return;
        }
        /* A stop string from the middle of the text, four bytes long: with
         * pieces of one to a few bytes it spans a token boundary. The text
         * before its first occurrence is what a client gets. A random
         * model's text has stray bytes, which a stop string (UTF-8) cannot
         * hold: the four are plain ASCII. */
        size_t at = greedy_len / 2, len = 4, ascii = 0;
        for (; at < greedy_len && ascii < len; at++)
                ascii = greedy_text[at] > ' ' && greedy_text[at] < 0x7f ? ascii + 1 : 0;
        if (ascii < len) {
                FAIL("no four ASCII bytes in the second half of '%s'", greedy_text);
                lmp_engine_free(e);
                return;
        }
        at -= len;
        const char *first = memmem(greedy_text, greedy_len, greedy_text + at, len);
        size_t want = (size_t)(first - greedy_text);
        json_str(greedy_text + at, len, stop, sizeof(stop));
        for (int stream = 1; stream >= 0; stream--) {
                clear_events();
                snprintf(req, sizeof(req), "{\"id\":\"t\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"" PROMPT
                         "\",\"max_tokens\":24,\"ignore_eos\":true,\"stop\":[%s],\"stream\":%s}", stop,
                         stream ? "true" : "false");
                submit(e, 3, req);
                run(e);
                const struct event *d = done_of("t");
                CHECK(d && strcmp(d->finish, "stop") == 0, "stop string %s: finish %s", stop, d ? d->finish : "-");
                const char *got = text;
                size_t n = streamed("t", text, sizeof(text), NULL, NULL);
                if (!stream) {
                        got = d && d->full_text ? d->full_text : "";
                        n = d ? d->full_text_len : 0;
                }
                CHECK(n == want && memcmp(got, greedy_text, want) == 0,
                      "stop %s (stream %d): got '%.*s', want '%.*s'", stop, stream, (int)n, got, (int)want,
                      greedy_text);
        }
        /* (The last run did not stream: nothing was sent before its end.) */
        size_t sent = 0;
        for (int i = 0; i < n_events; i++)
                if (events[i].kind == LMP_EV_TOKEN && strcmp(events[i].id, "t") == 0)
                        sent += events[i].text_len;
        CHECK(sent == 0, "stream false sends no token text");

        /* A stop string that begins with the last byte of token m's text
         * but never completes: that byte is held back at token m (it may
         * start the stop string) and sent with token m + 1, and the whole
         * text arrives. Token m's text ends in ASCII (as above), so that no
         * stray byte is held by the detokenizer instead. */
        int m = 22;
        while (m >= 0 && !(greedy_end[m] > (m ? greedy_end[m - 1] : 0) && greedy_end[m + 1] > greedy_end[m] &&
                           greedy_text[greedy_end[m] - 1] > ' ' && greedy_text[greedy_end[m] - 1] < 0x7f))
                m--;
        if (m < 0) {
                FAIL("no token of '%s' ends in ASCII", greedy_text);
                lmp_engine_free(e);
                return;
        }
        char tail[4] = { greedy_text[greedy_end[m] - 1], '\x01', '\x02', 0 };
        json_str(tail, 3, stop, sizeof(stop));
        clear_events();
        snprintf(req, sizeof(req), "{\"id\":\"h\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"" PROMPT
                 "\",\"max_tokens\":24,\"ignore_eos\":true,\"stop\":[%s]}", stop);
        submit(e, 4, req);
        run(e);
        const struct event *d = done_of("h");
        size_t n = streamed("h", text, sizeof(text), NULL, NULL);
        CHECK(d && strcmp(d->finish, "length") == 0, "no stop: finish %s", d ? d->finish : "-");
        CHECK(n == greedy_len && memcmp(text, greedy_text, n) == 0, "the whole text: '%s' / '%s'", text,
              greedy_text);
        const struct event *tok[24] = { 0 };
        for (int i = 0, k = 0; i < n_events && k < 24; i++)
                if (events[i].kind == LMP_EV_TOKEN)
                        tok[k++] = &events[i];
        size_t own = greedy_end[m] - (m ? greedy_end[m - 1] : 0);
        CHECK(tok[m] && tok[m + 1] && tok[m]->text_len + 1 <= own && tok[m + 1]->text_len >= 1 &&
                      tok[m + 1]->text[0] == tail[0],
              "token %d holds back '%c' (sends %zu of its %zu bytes) and token %d sends it", m, tail[0],
              tok[m] ? tok[m]->text_len : 0, own, m + 1);
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ slots */

static void test_slots(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 2, 256, 64);
        clear_events();
        submit(e, 1, "{\"id\":\"a\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"one\",\"max_tokens\":8,"
                     "\"ignore_eos\":true}");
        submit(e, 2, "{\"id\":\"b\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"two\",\"max_tokens\":8,"
                     "\"ignore_eos\":true}");
        CHECK(lmp_engine_active(e) == 2, "two jobs in two slots: %u", lmp_engine_active(e));
        submit(e, 3, "{\"id\":\"c\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"three\",\"max_tokens\":8}");
        const struct event *c = done_of("c");
        CHECK(c && c->kind == LMP_EV_ERROR && strcmp(c->code, "busy") == 0, "a third job: %s", c ? c->code : "-");
        /* Both advance together: each step gives each generating job a token. */
        cur_step++;
        CHECK(lmp_engine_step(e) == 2, "both still running");
        int a = 0, b = 0;
        for (int i = 0; i < n_events; i++)
                if (events[i].kind == LMP_EV_TOKEN && events[i].step == cur_step) {
                        a += strcmp(events[i].id, "a") == 0;
                        b += strcmp(events[i].id, "b") == 0;
                }
        CHECK(a == 1 && b == 1, "one step, one token each: a %d, b %d", a, b);
        CHECK(lmp_engine_cancel(e, 2), "cancel b");
        CHECK(!lmp_engine_cancel(e, 2), "b is gone");
        const struct event *bd = done_of("b");
        CHECK(bd && bd->kind == LMP_EV_ERROR && strcmp(bd->code, "cancelled") == 0, "b cancelled");
        CHECK(lmp_engine_active(e) == 1, "its slot is free");
        submit(e, 4, "{\"id\":\"d\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"four\",\"max_tokens\":8,"
                     "\"ignore_eos\":true}");
        CHECK(lmp_engine_active(e) == 2, "the freed slot takes a new job");
        run(e);
        const struct event *ad = done_of("a"), *dd = done_of("d");
        CHECK(ad && ad->kind == LMP_EV_DONE && ad->generated_tokens == 8, "a done");
        CHECK(dd && dd->kind == LMP_EV_DONE && dd->generated_tokens == 8, "d done");
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ prefix reuse */

static void test_prefix(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 2, 512, 64);
        char req[512];
#define PREFIX_REQ "{\"id\":\"%s\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":4}"

        clear_events();
        snprintf(req, sizeof(req), PREFIX_REQ, "p1", PROMPT);
        submit(e, 1, req);
        run(e);
        const struct event *d1 = done_of("p1");
        CHECK(d1 && d1->kind == LMP_EV_DONE && d1->cached_tokens == 0, "a fresh engine caches nothing");
        uint32_t n_prompt = d1 ? d1->prompt_tokens : 0;

        /* An unrelated prompt takes the other (least recently used) slot. */
        snprintf(req, sizeof(req), PREFIX_REQ, "q", "Zebras eat grass in the savanna");
        submit(e, 2, req);
        run(e);
        const struct event *dq = done_of("q");
        CHECK(dq && dq->kind == LMP_EV_DONE && dq->cached_tokens <= 1, "unrelated: %u cached",
              dq ? dq->cached_tokens : 0);

        /* The first prompt again: its slot still holds it. */
        snprintf(req, sizeof(req), PREFIX_REQ, "p2", PROMPT);
        submit(e, 3, req);
        run(e);
        const struct event *d2 = done_of("p2");
        CHECK(d2 && d2->kind == LMP_EV_DONE && d2->prompt_tokens == n_prompt && d2->cached_tokens == n_prompt - 1,
              "the same prompt again: %u of %u cached", d2 ? d2->cached_tokens : 0, n_prompt);

        /* A longer prompt that starts with it reuses the whole first prompt
         * (the prompt's own tokens: the generated ones differ). */
        snprintf(req, sizeof(req), PREFIX_REQ, "p3", PROMPT " there lived a king");
        submit(e, 4, req);
        run(e);
        const struct event *d3 = done_of("p3");
        CHECK(d3 && d3->kind == LMP_EV_DONE && d3->cached_tokens + 2 >= n_prompt && d3->cached_tokens <= n_prompt + 4,
              "an extended prompt: %u cached, the first had %u", d3 ? d3->cached_tokens : 0, n_prompt);
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ cache reuse */

#define OPENING "Once upon a time, in a land far away,"
#define MSG1 " the first message talks about apples and pears that grow in the old garden."
#define MSG2 " The second message is about the river that runs past the mill and the bridge."
#define MSG3 " A third one tells of the baker who rises early to light the ovens every day."
#define MSG4 " The fourth asks what the children did when the snow came."

/* The prompt tokens (with BOS) of a text, from a fresh engine's done event. */
static uint32_t n_tokens(const struct fixture *f, const char *text) {
        char req[1024];
        struct lmp_engine *e = engine(f, 1, 512, 64);
        clear_events();
        snprintf(req, sizeof(req), PREFIX_REQ, "n", text);
        submit(e, 1, req);
        run(e);
        const struct event *d = done_of("n");
        uint32_t n = d && d->kind == LMP_EV_DONE ? d->prompt_tokens : 0;
        clear_events();
        lmp_engine_free(e);
        return n;
}

/* A conversation's window drops its oldest message: with cache_reuse the
 * next turn evaluates only what is new, and keeps the other slot's
 * conversation; without, it reuses the opening only. */
static void test_reuse(const struct fixture *f) {
        char req[1024];
        uint32_t kept = n_tokens(f, OPENING MSG2 MSG3), opening = n_tokens(f, OPENING);

        for (int on = 0; on < 2; on++) {
                struct lmp_engine *e = engine_reuse(f, 2, 512, 64, on ? 16 : 0);
                clear_events();
                snprintf(req, sizeof(req), PREFIX_REQ, "t1", OPENING MSG1 MSG2 MSG3);
                submit(e, 1, req);
                run(e);
                snprintf(req, sizeof(req), PREFIX_REQ, "other", "Zebras eat grass in the savanna");
                submit(e, 2, req);
                run(e);
                snprintf(req, sizeof(req), PREFIX_REQ, "t2", OPENING MSG2 MSG3 MSG4);
                submit(e, 3, req);
                run(e);
                const struct event *d = done_of("t2");
                CHECK(d && d->kind == LMP_EV_DONE && d->generated_tokens == 4, "reuse %d: turn 2 answers", on);
                uint32_t cached = d ? d->cached_tokens : 0;
                if (on)
                        CHECK(cached + 2 >= kept && cached <= kept + 2,
                              "reuse: %u cached, the opening and the two kept messages are %u", cached, kept);
                else
                        CHECK(cached <= opening + 2, "no reuse: %u cached, the opening is %u", cached, opening);
                /* The same turn again: all of it is a prefix now. */
                snprintf(req, sizeof(req), PREFIX_REQ, "t3", OPENING MSG2 MSG3 MSG4);
                submit(e, 4, req);
                run(e);
                const struct event *d3 = done_of("t3");
                CHECK(d3 && d3->kind == LMP_EV_DONE && d3->cached_tokens + 1 == d3->prompt_tokens,
                      "reuse %d: the repeated turn is cached whole", on);
                clear_events();
                lmp_engine_free(e);
        }
}

/* A generate request for prompt (any bytes: written as a client would,
 * through the JSON escaper, which repairs what is not UTF-8). */
static struct lmp_job *job_prompt(uint64_t rid, const char *id, const char *prompt, int max_tokens, uint64_t seed) {
        static char req[65536];
        size_t n = strlen(prompt);
        CHECK(lmp_json_escaped_max(n) + 256 < sizeof(req), "prompt of %zu bytes", n);
        int k = snprintf(req, sizeof(req), "{\"id\":\"%s\",\"type\":\"generate\",\"model\":\"m\",\"max_tokens\":%d,"
                         "\"ignore_eos\":true,\"stream\":false,\"prompt\":", id, max_tokens);
        k += (int)lmp_json_escape(req + k, prompt, n, false);
        snprintf(req + k, sizeof(req) - (size_t)k, "}");
        struct lmp_job *j = job(rid, req);
        if (seed) {
                j->sampling.temperature = 0.9f;
                j->sampling.seed = seed;
        }
        return j;
}

/* A prompt that sends answers back: with cache_reuse they get the tokens
 * they were sampled as, so the slot's cache covers the prompt up to the
 * last answer's last token (the one never evaluated). */
static void test_answer_tokens(const struct fixture *f) {
        static char prompt[16384];
        uint32_t n_first = 0;
        uint32_t cached[2] = { 0, 0 };

        for (int on = 0; on < 2; on++) {
                struct lmp_engine *e = engine_reuse(f, 1, 512, 64, on ? 16 : 0);
                clear_events();
                CHECK(lmp_engine_submit(e, job_prompt(1, "a1", OPENING MSG1, 24, 5)) == 0, "submit");
                run(e);
                const struct event *d = done_of("a1");
                CHECK(d && d->kind == LMP_EV_DONE && d->full_text && d->generated_tokens == 24, "turn 1 answers");
                if (!d || !d->full_text) {
                        lmp_engine_free(e);
                        return;
                }
                n_first = d->prompt_tokens;
                snprintf(prompt, sizeof(prompt), "%s%s</s>%s", OPENING MSG1, d->full_text, MSG2);
                CHECK(lmp_engine_submit(e, job_prompt(2, "a2", prompt, 12, 6)) == 0, "submit");
                run(e);
                const struct event *d2 = done_of("a2");
                CHECK(d2 && d2->kind == LMP_EV_DONE && d2->full_text, "turn 2 answers");
                cached[on] = d2 ? d2->cached_tokens : 0;
                /* Turn 3 sends both answers back: the first keeps the tokens
                 * it was sampled as, or the cache would end there. */
                if (on && d2 && d2->full_text) {
                        size_t l = strlen(prompt);
                        snprintf(prompt + l, sizeof(prompt) - l, "%s</s>%s", d2->full_text, MSG3);
                        uint32_t n2 = d2->prompt_tokens;
                        CHECK(lmp_engine_submit(e, job_prompt(3, "a3", prompt, 2, 0)) == 0, "submit");
                        run(e);
                        const struct event *d3 = done_of("a3");
                        CHECK(d3 && d3->kind == LMP_EV_DONE && d3->cached_tokens == n2 + 11,
                              "turn 3: %u cached, turn 2's prompt and answer are %u", d3 ? d3->cached_tokens : 0,
                              n2 + 11);
                }
                clear_events();
                lmp_engine_free(e);
        }
        printf("answer sent back: %u cached without cache_reuse, %u with; the first prompt had %u\n", cached[0],
               cached[1], n_first);
        CHECK(cached[1] == n_first + 23, "with cache_reuse: %u cached, the first prompt and the answer's evaluated "
              "tokens are %u", cached[1], n_first + 23);
        CHECK(cached[0] <= cached[1], "without: %u cached", cached[0]);
}

/* ------------------------------------------------------------ chunked prompts */

static void test_chunks(const struct fixture *f) {
        const uint32_t batch = 8;
        struct lmp_engine *e = engine(f, 2, 512, batch);
        char req[4096], prompt[2048] = "";

        for (int i = 0; i < 12; i++)
                strcat(prompt, "The quick brown fox jumps over the lazy dog. ");
        clear_events();
        submit(e, 1, "{\"id\":\"g\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":200,"
                     "\"ignore_eos\":true}");
        /* Until g generates. */
        while (!n_events && lmp_engine_active(e)) {
                cur_step++;
                lmp_engine_step(e);
        }
        snprintf(req, sizeof(req), "{\"id\":\"long\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"%s\","
                                   "\"max_tokens\":2,\"ignore_eos\":true}", prompt);
        submit(e, 2, req);
        int first_step = cur_step + 1, long_first = 0;
        while (lmp_engine_active(e) == 2 && !long_first) {
                cur_step++;
                lmp_engine_step(e);
                int g = 0;
                for (int i = 0; i < n_events; i++) {
                        if (events[i].step != cur_step || events[i].kind != LMP_EV_TOKEN)
                                continue;
                        g += strcmp(events[i].id, "g") == 0;
                        if (strcmp(events[i].id, "long") == 0)
                                long_first = cur_step;
                }
                CHECK(g == 1, "step %d: the generating job got %d tokens while the prompt was read", cur_step, g);
        }
        lmp_engine_cancel(e, 1);
        run(e);
        const struct event *d = done_of("long");
        CHECK(d && d->kind == LMP_EV_DONE, "the long prompt's job ends");
        /* Each step reads batch - 1 prompt tokens (one entry is g's). */
        uint32_t n = d ? d->prompt_tokens : 0;
        int want = (int)((n + batch - 2) / (batch - 1));
        CHECK(n > 4 * batch && long_first - first_step + 1 == want,
              "a prompt of %u tokens in batches of %u: first token after %d steps, want %d", n, batch,
              long_first - first_step + 1, want);
        clear_events();
        lmp_engine_free(e);
}

/* While a job generates, a step takes at most prompt_chunk prompt tokens
 * (however large the batch), oldest job first; with no one generating a
 * prompt goes in whole batches. */
static void test_prompt_chunk(const struct fixture *f) {
        const uint32_t chunk = 5;
        struct lmp_error err = { 0 };
        struct lmp_engine *e = NULL;
        struct lmp_engine_params p = {
                .model = f->model, .vocab = f->vocab, .chat = &f->chat, .slots = 3, .n_ctx = 512,
                .n_batch = 256, .prompt_chunk = chunk, .pool = f->pool, .sink = sink,
        };
        char req[4096], prompt[2048] = "";

        if (lmp_engine_new(&p, &e, &err) < 0) {
                FAIL("lmp_engine_new: %s", err.msg);
                return;
        }
        for (int i = 0; i < 6; i++)
                strcat(prompt, "The quick brown fox jumps over the lazy dog. ");
        clear_events();
        /* Alone, a prompt goes in one step of the whole batch. */
        snprintf(req, sizeof(req), "{\"id\":\"g\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"%s\","
                                   "\"max_tokens\":400,\"ignore_eos\":true}", prompt);
        submit(e, 1, req);
        int first = cur_step + 1;
        while (!n_events && lmp_engine_active(e)) {
                cur_step++;
                lmp_engine_step(e);
        }
        CHECK(cur_step == first, "a lone prompt took %d steps, want 1", cur_step - first + 1);
        snprintf(req, sizeof(req), "{\"id\":\"a\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"A %s\","
                                   "\"max_tokens\":1,\"ignore_eos\":true}", prompt);
        submit(e, 2, req);
        snprintf(req, sizeof(req), "{\"id\":\"b\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"B %s\","
                                   "\"max_tokens\":1,\"ignore_eos\":true}", prompt);
        submit(e, 3, req);
        first = cur_step + 1;
        int a_first = 0, b_first = 0;
        while (lmp_engine_active(e) > 1 && cur_step < first + 1000) {
                cur_step++;
                lmp_engine_step(e);
                int g = 0;
                for (int i = 0; i < n_events; i++) {
                        if (events[i].step != cur_step || events[i].kind != LMP_EV_TOKEN)
                                continue;
                        g += strcmp(events[i].id, "g") == 0;
                        if (!a_first && strcmp(events[i].id, "a") == 0)
                                a_first = cur_step - first + 1;
                        if (!b_first && strcmp(events[i].id, "b") == 0)
                                b_first = cur_step - first + 1;
                }
                CHECK(g == 1, "step %d: the generating job got %d tokens", cur_step, g);
        }
        lmp_engine_cancel(e, 1);
        run(e);
        const struct event *da = done_of("a"), *db = done_of("b");
        uint32_t na = da ? da->prompt_tokens : 0, nb = db ? db->prompt_tokens : 0;
        CHECK(na > 8 * chunk && nb > 8 * chunk, "prompts of %u and %u tokens", na, nb);
        CHECK(a_first == (int)((na + chunk - 1) / chunk), "a (%u tokens, the older) first token after %d steps, want %u",
              na, a_first, (na + chunk - 1) / chunk);
        CHECK(b_first == (int)((na + nb + chunk - 1) / chunk), "b (%u tokens) first token after %d steps, want %u", nb,
              b_first, (na + nb + chunk - 1) / chunk);
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ errors */

static void test_refusals(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 1, 64, 64);
        char req[4096], prompt[2048] = "";
        for (int i = 0; i < 40; i++)
                strcat(prompt, "a long prompt ");
        clear_events();
        snprintf(req, sizeof(req), "{\"id\":\"l\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"%s\"}", prompt);
        submit(e, 1, req);
        const struct event *d = done_of("l");
        CHECK(d && d->kind == LMP_EV_ERROR && strcmp(d->code, "too_long") == 0, "longer than the context: %s",
              d ? d->code : "-");
        CHECK(lmp_engine_active(e) == 0, "a refused job takes no slot");
        clear_events();
        lmp_engine_free(e);
}

/* ------------------------------------------------------------ the chat set-up */

#define DEFAULT_SYSTEM "You are the fixture of the engine test."

/* A copy of the model with a ChatML template of its own default system
 * prompt (unlike any family's built-in one). */
static int write_chat_model(const struct fixture *f, const char *path) {
        static const char tmpl[] =
                "{% for message in messages %}"
                "{% if loop.first and message['role'] != 'system' %}"
                "{{ '<|im_start|>system\\n" DEFAULT_SYSTEM "<|im_end|>\\n' }}{% endif %}"
                "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
                "{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        struct lmp_gguf_writer *w = NULL;
        struct lmp_error err = { 0 };
        int r = lmp_gguf_writer_new(0, &w);
        for (uint64_t i = 0; r == 0 && i < f->g->n_kv; i++)
                if (!lmp_gguf_str_eq(f->g->kv[i].key, "tokenizer.chat_template") &&
                    !lmp_gguf_str_eq(f->g->kv[i].key, "general.alignment"))
                        r = lmp_gguf_writer_set_value(w, f->g->kv[i].key, &f->g->kv[i].value);
        if (r == 0)
                r = lmp_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
        for (uint64_t i = 0; r == 0 && i < f->g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &f->g->tensors[i];
                char *name = lmp_gguf_str_dup(t->name);
                r = name ? lmp_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) : -ENOMEM;
                free(name);
        }
        if (r == 0)
                r = lmp_gguf_writer_write_file(w, path, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, err.msg[0] ? err.msg : strerror(-r));
        lmp_gguf_writer_free(w);
        return r;
}

/* What `lmpool chat-template MODEL --messages FILE` prints. */
static size_t cli_render(const char *model, const char *messages, char *out, size_t cap) {
        const char *bin = getenv("LMPOOL_BIN");
        char cmd[4096];
        size_t n = 0;
        if (!bin) {
                FAIL("LMPOOL_BIN is not set");
                return 0;
        }
        snprintf(cmd, sizeof(cmd), "'%s' chat-template '%s' --messages '%s'", bin, model, messages);
        FILE *p = popen(cmd, "r");
        if (!p) {
                FAIL("%s: %s", cmd, strerror(errno));
                return 0;
        }
        n = fread(out, 1, cap - 1, p);
        out[n] = '\0';
        int st = pclose(p);
        CHECK(st == 0, "%s: status %d", cmd, st);
        return n;
}

static void test_chat(const char *dir) {
        char model[256], messages[256], rendered[TEXT_MAX];
        struct fixture src, f;
        snprintf(model, sizeof(model), "%s/chat.gguf", dir);
        snprintf(messages, sizeof(messages), "%s/messages.json", dir);
        if (fixture_open(&src, getenv("ENGINE_MODEL")) < 0) {
                FAIL("cannot open the model");
                return;
        }
        int r = write_chat_model(&src, model);
        fixture_close(&src);
        if (r < 0) {
                FAIL("cannot write %s", model);
                return;
        }
        const char *conv = "[{\"role\": \"user\", \"content\": \"Hello there\"}]";
        FILE *m = fopen(messages, "w");
        if (!m || fputs(conv, m) < 0 || fclose(m) != 0) {
                FAIL("%s: %s", messages, strerror(errno));
                return;
        }
        if (fixture_open(&f, model) < 0) {
                FAIL("cannot open %s", model);
                return;
        }
        /* the model's own template, rendered by the Jinja interpreter */
        CHECK(f.chat.family == LMP_CHAT_UNKNOWN && f.chat.template_text && strstr(f.chat.template_text, DEFAULT_SYSTEM),
              "the model's own template: %s", f.chat.template_text ? f.chat.template_text : "none");

        /* The CLI's rendering, tokenized as the engine tokenizes a prompt. */
        size_t len = cli_render(model, messages, rendered, sizeof(rendered));
        CHECK(strstr(rendered, DEFAULT_SYSTEM) != NULL, "the CLI renders the default system prompt: '%s'", rendered);
        int32_t ids[4096];
        size_t n_ids = 0;
        CHECK(lmp_tokenize(f.vocab, rendered, len, true, true, ids, 4096, &n_ids) == 0, "tokenize");
        if (n_ids >= 2 && ids[0] == lmp_vocab_bos(f.vocab) && ids[1] == ids[0])
                n_ids--;

        /* The worker's path: the engine renders the same conversation. The
         * same prompt twice: the second reuses all but the last token of
         * the first, which shows the tokens themselves are the same. */
        struct lmp_engine *e = engine(&f, 1, 1024, 256);
        char req[512];
        clear_events();
        snprintf(req, sizeof(req), "{\"id\":\"c\",\"type\":\"chat\",\"model\":\"m\",\"messages\":%s,\"max_tokens\":1}",
                 conv);
        submit(e, 1, req);
        run(e);
        const struct event *d = done_of("c");
        CHECK(d && d->kind == LMP_EV_DONE && d->prompt_tokens == n_ids,
              "the worker's prompt has %u tokens, the CLI's rendering %zu", d ? d->prompt_tokens : 0, n_ids);
        clear_events();
        /* A generate request with the CLI's text: the slot holds the chat
         * job's prompt, which must be this one's, token for token. */
        char text_json[TEXT_MAX];
        static char req2[TEXT_MAX + 256];
        json_str(rendered, len, text_json, sizeof(text_json));
        snprintf(req2, sizeof(req2), "{\"id\":\"g\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":%s,"
                                     "\"max_tokens\":1}", text_json);
        submit(e, 2, req2);
        run(e);
        d = done_of("g");
        CHECK(d && d->kind == LMP_EV_DONE && d->prompt_tokens == n_ids && d->cached_tokens == n_ids - 1,
              "the CLI's text as a prompt reuses the chat job's tokens: %u of %u", d ? d->cached_tokens : 0,
              d ? d->prompt_tokens : 0);
        clear_events();
        lmp_engine_free(e);
        fixture_close(&f);
        unlink(model);
        unlink(messages);
}

/* ------------------------------------------------------------ format */

static void test_json(const struct fixture *f) {
        struct lmp_engine *e = engine(f, 2, 1024, 64);
        static char text[TEXT_MAX];
        static const char *const formats[] = {
                "\"json\"",
                "{\"type\":\"object\",\"properties\":{\"color\":{\"enum\":[\"red\",\"blue\"]},"
                "\"n\":{\"type\":\"integer\"},\"sub\":{\"type\":\"object\",\"properties\":{\"ok\":"
                "{\"type\":\"boolean\"}},\"required\":[\"ok\"]}},\"required\":[\"color\",\"n\",\"sub\"],"
                "\"additionalProperties\":false}",
        };
        int complete = 0, cut = 0;
        for (int k = 0; k < 2; k++) {
                for (int seed = 1; seed <= 20; seed += 2) {
                        clear_events();
                        char req[1024];
                        for (int i = 0; i < 2; i++) {
                                snprintf(req, sizeof(req), "{\"id\":\"j%d\",\"type\":\"generate\",\"model\":\"m\","
                                         "\"prompt\":\"JSON:\",\"max_tokens\":300,\"format\":%s}", i, formats[k]);
                                struct lmp_job *j = job((uint64_t)(seed + i), req);
                                j->sampling.temperature = 1;
                                j->sampling.seed = (uint64_t)(seed + i);
                                CHECK(lmp_engine_submit(e, j) == 0, "submit");
                        }
                        run(e);
                        for (int i = 0; i < 2; i++) {
                                char id[8];
                                snprintf(id, sizeof(id), "j%d", i);
                                const struct event *d = done_of(id);
                                if (!d || d->kind != LMP_EV_DONE) {
                                        FAIL("format %d seed %d job %d: no done event (%s)", k, seed, i,
                                             d ? d->code : "none");
                                        continue;
                                }
                                streamed(id, text, sizeof(text), NULL, NULL);
                                if (!strcmp(d->finish, "length")) {
                                        cut++;
                                        continue;
                                }
                                CHECK(!strcmp(d->finish, "stop") || !strcmp(d->finish, "eos"), "finish %s",
                                      d->finish);
                                cJSON *v = cJSON_Parse(text);
                                CHECK(cJSON_IsObject(v), "format %d seed %d: not an object: %s", k, seed, text);
                                if (k == 1 && v) {
                                        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "color");
                                        const cJSON *n = cJSON_GetObjectItemCaseSensitive(v, "n");
                                        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(v, "sub");
                                        CHECK(cJSON_IsString(c) && (!strcmp(c->valuestring, "red") ||
                                                                    !strcmp(c->valuestring, "blue")),
                                              "color: %s", text);
                                        CHECK(cJSON_IsNumber(n) && n->valuedouble == (double)(long long)n->valuedouble,
                                              "n: %s", text);
                                        CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(sub, "ok")), "sub: %s",
                                              text);
                                }
                                cJSON_Delete(v);
                                complete++;
                        }
                }
        }
        printf("format: %d complete documents, %d cut short by max_tokens\n", complete, cut);
        CHECK(complete >= 10, "only %d complete documents (%d cut short)", complete, cut);
        /* Cut short by max_tokens: "length", never "stop". */
        clear_events();
        submit(e, 99, "{\"id\":\"short\",\"type\":\"generate\",\"model\":\"m\",\"prompt\":\"x\","
                      "\"max_tokens\":2,\"format\":{\"type\":\"array\",\"minItems\":5}}");
        run(e);
        const struct event *d = done_of("short");
        CHECK(d && d->kind == LMP_EV_DONE && !strcmp(d->finish, "length"), "a cut document: %s",
              d ? d->finish : "no event");
        clear_events();
        lmp_engine_free(e);
}

int main(void) {
        const char *fixtures = getenv("LMPOOL_FIXTURES");
        static char path[1024];
        struct fixture f;

        snprintf(path, sizeof(path), "%s/models/llama-q8_0.gguf", fixtures ? fixtures : "");
        if (!fixtures || access(path, R_OK) != 0) {
                printf("fixtures not found: skipped\n");
                return 77;
        }
        setenv("ENGINE_MODEL", path, 1);
        if (fixture_open(&f, path) < 0)
                return 1;
        test_text(&f);
        test_stop(&f);
        test_slots(&f);
        test_prefix(&f);
        test_reuse(&f);
        test_answer_tokens(&f);
        test_chunks(&f);
        test_prompt_chunk(&f);
        test_refusals(&f);
        test_json(&f);
        fixture_close(&f);

        char dir[] = "/tmp/lmp-engine-XXXXXX";
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        test_chat(dir);
        rmdir(dir);
        clear_events();
        printf("engine: %d failures\n", failures);
        return failures ? 1 : 0;
}

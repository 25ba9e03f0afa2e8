/* Unit tests of the router <-> worker headers (src/proto/wire.h): every
 * header round-trips through its formatter and parser, every malformed
 * header is refused with a message that names what is wrong, and the
 * verbs are told apart by direction and frame count. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proto/wire.h"
#include "../check.h"

/* ------------------------------------------------------------ round trips */

static bool done_eq(const struct lmp_wire_done *a, const struct lmp_wire_done *b) {
        return a->prompt_tokens == b->prompt_tokens && a->generated_tokens == b->generated_tokens &&
               a->cached_tokens == b->cached_tokens && a->queued_ms == b->queued_ms && a->ttft_ms == b->ttft_ms &&
               a->total_ms == b->total_ms && a->tokens_per_s == b->tokens_per_s && a->finish == b->finish;
}

static void test_round_trips(void) {
        char buf[LMP_WIRE_HEADER_MAX];
        struct lmp_error err = { 0 };
        int n;

        const struct lmp_wire_job jobs[] = { { 1, 0 }, { 42, 12.5 }, { UINT64_MAX, LMP_WIRE_MS_MAX } };
        for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
                struct lmp_wire_job back = { 0 };
                n = lmp_wire_format_job(&jobs[i], buf, sizeof(buf));
                CHECK(n > 0 && (size_t)n == strlen(buf), "job %zu: %d", i, n);
                CHECK(lmp_wire_parse_job(buf, (size_t)n, &back, &err) == 0, "job '%s': %s", buf, err.msg);
                CHECK(back.rid == jobs[i].rid && back.queued_ms == jobs[i].queued_ms, "job '%s'", buf);
        }

        struct lmp_wire_cancel cancel = { 18446744073709551615u }, cback = { 0 };
        n = lmp_wire_format_cancel(&cancel, buf, sizeof(buf));
        CHECK(n > 0 && lmp_wire_parse_cancel(buf, (size_t)n, &cback, &err) == 0 && cback.rid == cancel.rid,
              "cancel '%s': %s", buf, err.msg);

        const struct lmp_wire_config configs[] = { { 1, 0, 3, 0 }, { 8192, 64, 6, 1 },
                                                     { UINT32_MAX, UINT32_MAX, 7, 2 } };
        for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
                struct lmp_wire_config back = { 0 };
                n = lmp_wire_format_config(&configs[i], buf, sizeof(buf));
                CHECK(n > 0 && lmp_wire_parse_config(buf, (size_t)n, &back, &err) == 0, "config '%s': %s", buf,
                      err.msg);
                CHECK(memcmp(&back, &configs[i], sizeof(back)) == 0, "config '%s'", buf);
        }

        const struct lmp_wire_ready readies[] = { { 1, 1, 1 }, { 4, 12345, 2048 },
                                                   { LMP_WIRE_SLOTS_MAX, INT32_MAX, UINT32_MAX } };
        for (size_t i = 0; i < sizeof(readies) / sizeof(readies[0]); i++) {
                struct lmp_wire_ready back = { 0 };
                n = lmp_wire_format_ready(&readies[i], buf, sizeof(buf));
                CHECK(n > 0 && lmp_wire_parse_ready(buf, (size_t)n, &back, &err) == 0, "ready '%s': %s", buf,
                      err.msg);
                CHECK(memcmp(&back, &readies[i], sizeof(back)) == 0, "ready '%s'", buf);
        }

        const struct lmp_wire_heartbeat hbs[] = { { 0, 0, 0, 0 }, { 3, 1u << 30, 123456789, 4096 },
                                                   { LMP_WIRE_SLOTS_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX } };
        for (size_t i = 0; i < sizeof(hbs) / sizeof(hbs[0]); i++) {
                struct lmp_wire_heartbeat back = { 0 };
                n = lmp_wire_format_heartbeat(&hbs[i], buf, sizeof(buf));
                CHECK(n > 0 && lmp_wire_parse_heartbeat(buf, (size_t)n, &back, &err) == 0, "hb '%s': %s", buf,
                      err.msg);
                CHECK(back.active == hbs[i].active && back.rss == hbs[i].rss && back.pss == hbs[i].pss &&
                      back.store_private == hbs[i].store_private, "hb '%s'", buf);
        }

        /* Events: every kind, every finish, every error code but ok; the
         * longest done header fits LMP_WIRE_HEADER_MAX. */
        for (int f = 0; f < LMP_FINISH_COUNT; f++) {
                struct lmp_wire_event ev = {
                        .rid = f == 0 ? UINT64_MAX : 7, .kind = LMP_WIRE_DONE,
                        .done = { .prompt_tokens = f == 0 ? UINT32_MAX : 12, .generated_tokens = f == 0 ? UINT32_MAX : 5,
                                  .cached_tokens = f == 0 ? UINT32_MAX : 0,
                                  .queued_ms = f == 0 ? LMP_WIRE_MS_MAX : 1.25, .ttft_ms = f == 0 ? LMP_WIRE_MS_MAX : 30,
                                  .total_ms = f == 0 ? LMP_WIRE_MS_MAX : 99.875,
                                  .tokens_per_s = f == 0 ? LMP_WIRE_RATE_MAX : 41.5, .finish = (enum lmp_finish)f },
                }, back;
                memset(&back, 0xff, sizeof(back));
                n = lmp_wire_format_event(&ev, buf, sizeof(buf));
                CHECK(n > 0, "done %d: %d", f, n);
                CHECK(lmp_wire_parse_event(buf, (size_t)n, &back, &err) == 0, "done '%s': %s", buf, err.msg);
                CHECK(back.rid == ev.rid && back.kind == LMP_WIRE_DONE &&
                      done_eq(&back.done, &ev.done), "done '%s'", buf);
        }
        for (int code = 1; code < LMP_PROTO_CODE_COUNT; code++) {
                struct lmp_wire_event ev = { .rid = 9, .kind = LMP_WIRE_ERROR, .code = (enum lmp_proto_code)code }, back;
                n = lmp_wire_format_event(&ev, buf, sizeof(buf));
                CHECK(n > 0 && lmp_wire_parse_event(buf, (size_t)n, &back, &err) == 0, "error '%s': %s", buf, err.msg);
                CHECK(back.kind == LMP_WIRE_ERROR && back.code == ev.code && back.rid == 9, "error '%s'", buf);
        }
        struct lmp_wire_event tok = { .rid = 5, .kind = LMP_WIRE_TOKEN }, tback;
        n = lmp_wire_format_event(&tok, buf, sizeof(buf));
        CHECK(n == 3 && strcmp(buf, "5 t") == 0, "token '%s'", buf);
        CHECK(lmp_wire_parse_event(buf, (size_t)n, &tback, &err) == 0 && tback.rid == 5 && tback.kind == LMP_WIRE_TOKEN,
              "token: %s", err.msg);
}

/* Measurements are written within bounds, whatever they were. */
static void test_format_clamps(void) {
        char buf[LMP_WIRE_HEADER_MAX];
        struct lmp_error err = { 0 };
        struct lmp_wire_event ev = { .rid = 3, .kind = LMP_WIRE_DONE,
                                     .done = { .queued_ms = -1, .ttft_ms = NAN, .total_ms = INFINITY,
                                               .tokens_per_s = 1e300, .finish = LMP_FINISH_EOS } }, back;
        int n = lmp_wire_format_event(&ev, buf, sizeof(buf));
        CHECK(n > 0 && lmp_wire_parse_event(buf, (size_t)n, &back, &err) == 0, "'%s': %s", buf, err.msg);
        CHECK(back.done.queued_ms == 0 && back.done.ttft_ms == 0 && back.done.total_ms == 0 &&
              back.done.tokens_per_s == LMP_WIRE_RATE_MAX, "'%s'", buf);
        struct lmp_wire_job job = { 1, -5 };
        n = lmp_wire_format_job(&job, buf, sizeof(buf));
        CHECK(n > 0 && strcmp(buf, "1 0.000") == 0, "'%s'", buf);
}

/* What a formatter refuses to write. */
static void test_format_refuses(void) {
        char buf[LMP_WIRE_HEADER_MAX], small[4];
        CHECK(lmp_wire_format_job(&(struct lmp_wire_job){ 0, 1 }, buf, sizeof(buf)) == -EINVAL, "rid 0");
        CHECK(lmp_wire_format_cancel(&(struct lmp_wire_cancel){ 0 }, buf, sizeof(buf)) == -EINVAL, "rid 0");
        CHECK(lmp_wire_format_config(&(struct lmp_wire_config){ 0, 1, 6 }, buf, sizeof(buf)) == -EINVAL, "maxp 0");
        CHECK(lmp_wire_format_config(&(struct lmp_wire_config){ 1, 1, 8 }, buf, sizeof(buf)) == -EINVAL, "pri 8");
        CHECK(lmp_wire_format_config(&(struct lmp_wire_config){ 1, 1, 6, 3 }, buf, sizeof(buf)) == -EINVAL, "sink 3");
        CHECK(lmp_wire_format_ready(&(struct lmp_wire_ready){ 0, 1, 1 }, buf, sizeof(buf)) == -EINVAL, "slots 0");
        CHECK(lmp_wire_format_ready(&(struct lmp_wire_ready){ 1, -1, 1 }, buf, sizeof(buf)) == -EINVAL, "pid -1");
        CHECK(lmp_wire_format_event(&(struct lmp_wire_event){ .rid = 1, .kind = LMP_WIRE_ERROR,
                                                              .code = LMP_PROTO_OK }, buf, sizeof(buf)) == -EINVAL,
              "error ok");
        CHECK(lmp_wire_format_event(&(struct lmp_wire_event){ .rid = 1, .kind = LMP_WIRE_DONE,
                                                              .done = { .finish = LMP_FINISH_COUNT } },
                                    buf, sizeof(buf)) == -EINVAL, "finish count");
        CHECK(lmp_wire_format_cancel(&(struct lmp_wire_cancel){ 12345 }, small, sizeof(small)) == -ENOSPC, "small");
}

/* ------------------------------------------------------------- malformed */

enum which { JOB, CANCEL, CONFIG, READY, HB, EVENT };

struct bad {
        enum which which;
        const char *header;
        const char *words;      /* in the message */
};

#define DONE_OK "7 d 1 2 0 0.5 1.000 2 3.5 stop"

static const struct bad bad_headers[] = {
        /* shape, in every header */
        { JOB, "", "empty" },
        { JOB, " 1 2.0", "field 'rid' is empty" },
        { JOB, "1  2.0", "field 'queued_ms' is empty" },
        { JOB, "1 2.0 ", "after its last field" },
        { JOB, "1", "field 'queued_ms' is missing" },
        { JOB, "1 ", "field 'queued_ms' is missing" },
        { JOB, "1 2.0 3", "'3' after its last field" },
        { JOB, "1\t2.0", "not an unsigned decimal integer" },
        { CANCEL, "", "empty" },
        { CANCEL, "5 6", "after its last field" },
        { CANCEL, "5\n", "not an unsigned decimal integer" },
        { CONFIG, "", "empty" },
        { READY, "", "empty" },
        { HB, "", "empty" },
        { EVENT, "", "empty" },
        /* integers */
        { JOB, "0 1.0", "field 'rid' is 0, outside 1.." },
        { JOB, "-1 1.0", "not an unsigned decimal integer" },
        { JOB, "+1 1.0", "not an unsigned decimal integer" },
        { JOB, "01 1.0", "leading zero" },
        { JOB, "0x10 1.0", "not an unsigned decimal integer" },
        { JOB, "18446744073709551616 1.0", "overflows 64 bits" },
        { JOB, "99999999999999999999999 1.0", "overflows 64 bits" },
        { CANCEL, "0", "outside 1.." },
        { CANCEL, "abc", "not an unsigned decimal integer" },
        { CANCEL, "1e3", "not an unsigned decimal integer" },
        /* decimals */
        { JOB, "1 -0.5", "not a decimal number" },
        { JOB, "1 +0.5", "not a decimal number" },
        { JOB, "1 .5", "not a decimal number" },
        { JOB, "1 5.", "not a decimal number" },
        { JOB, "1 1e3", "not a decimal number" },
        { JOB, "1 nan", "not a decimal number" },
        { JOB, "1 inf", "not a decimal number" },
        { JOB, "1 0x1p3", "not a decimal number" },
        { JOB, "1 1.2.3", "not a decimal number" },
        { JOB, "1 1000000000001", "above" },
        { JOB, "1 123456789012345678901234567890123456789012345", "not a decimal number" },
        /* config */
        { CONFIG, "8192 64", "field 'log_priority' is missing" },
        { CONFIG, "8192 64 6", "field 'log_sink' is missing" },
        { CONFIG, "0 64 6 0", "field 'max_prompt_tokens' is 0" },
        { CONFIG, "8192 -1 6 0", "not an unsigned decimal integer" },
        { CONFIG, "8192 64 2 0", "field 'log_priority' is 2, outside 3..7" },
        { CONFIG, "8192 64 8 0", "field 'log_priority' is 8, outside 3..7" },
        { CONFIG, "8192 64 6 3", "field 'log_sink' is 3, outside 0..2" },
        { CONFIG, "4294967296 64 6 0", "outside 1..4294967295" },
        { CONFIG, "8192 64 6 1 0", "after its last field" },
        /* ready */
        { READY, "1 100", "field 'n_ctx' is missing" },
        { READY, "0 100 2048", "field 'slots' is 0" },
        { READY, "4097 100 2048", "field 'slots' is 4097" },
        { READY, "1 0 2048", "field 'pid' is 0" },
        { READY, "1 -5 2048", "not an unsigned decimal integer" },
        { READY, "1 2147483648 2048", "field 'pid' is 2147483648" },
        { READY, "1 100 0", "field 'n_ctx' is 0" },
        { READY, "1 100 2048 x", "after its last field" },
        /* heartbeat */
        { HB, "0 0 0", "field 'store_private' is missing" },
        { HB, "0 0 0 0 0", "after its last field" },
        { HB, "4097 0 0 0", "field 'active' is 4097" },
        { HB, "0 -1 0 0", "not an unsigned decimal integer" },
        { HB, "1 2 3 18446744073709551616", "overflows" },
        /* events */
        { EVENT, "7", "field 'kind' is missing" },
        { EVENT, "7 ", "field 'kind' is missing" },
        { EVENT, "0 t", "field 'rid' is 0" },
        { EVENT, "x t", "not an unsigned decimal integer" },
        { EVENT, "7 x", "kind 'x' is none of t, d, e" },
        { EVENT, "7 tt", "kind 'tt' is none of t, d, e" },
        { EVENT, "7 T", "none of t, d, e" },
        { EVENT, "7 t junk", "'junk' after its last field" },
        { EVENT, "7 t ", "after its last field" },
        { EVENT, "7 e", "field 'code' is missing" },
        { EVENT, "7 e nonsense", "field 'code' is 'nonsense', which is not a known one" },
        { EVENT, "7 e ok", "field 'code' is 'ok', which is not a known one" },
        { EVENT, "7 e internal more", "after its last field" },
        { EVENT, "7 d", "field 'prompt_tokens' is missing" },
        { EVENT, "7 d 1 1 0 0 0 0 0", "field 'finish' is missing" },
        { EVENT, "7 d 1 2 0 0.5 1.000 2 3.5", "field 'finish' is missing" },
        { EVENT, "7 d 1 2 0 0.5 1.000 2 3.5 nope", "field 'finish' is 'nope'" },
        { EVENT, "7 d 1 2 0 0.5 1.000 2 3.5 STOP", "field 'finish' is 'STOP'" },
        { EVENT, DONE_OK " x", "after its last field" },
        { EVENT, "7 d -1 2 0 0.5 1 2 3.5 stop", "field 'prompt_tokens'" },
        { EVENT, "7 d 1 4294967296 0 0.5 1 2 3.5 stop", "field 'generated_tokens' is 4294967296" },
        { EVENT, "7 d 1 2 x 0.5 1 2 3.5 stop", "field 'cached_tokens'" },
        { EVENT, "7 d 1 2 0 -0.5 1 2 3.5 stop", "field 'queued_ms'" },
        { EVENT, "7 d 1 2 0 0.5 nan 2 3.5 stop", "field 'ttft_ms'" },
        { EVENT, "7 d 1 2 0 0.5 1 1e9 3.5 stop", "field 'total_ms'" },
        { EVENT, "7 d 1 2 0 0.5 1 2 inf stop", "field 'tokens_per_s'" },
        { EVENT, "7 d 1 2 0 0.5 1 2 1000000000000.5 stop", "field 'tokens_per_s' is 1000000000000.5, above" },
        { EVENT, "7 d 1 2  0 0.5 1 2 3.5 stop", "field 'cached_tokens' is empty" },
};

static int parse(enum which w, const char *h, size_t len, struct lmp_error *err) {
        union {
                struct lmp_wire_job job;
                struct lmp_wire_cancel cancel;
                struct lmp_wire_config config;
                struct lmp_wire_ready ready;
                struct lmp_wire_heartbeat hb;
                struct lmp_wire_event ev;
        } out, before;
        memset(&out, 0x5a, sizeof(out));
        before = out;
        int r = w == JOB    ? lmp_wire_parse_job(h, len, &out.job, err) :
                w == CANCEL ? lmp_wire_parse_cancel(h, len, &out.cancel, err) :
                w == CONFIG ? lmp_wire_parse_config(h, len, &out.config, err) :
                w == READY  ? lmp_wire_parse_ready(h, len, &out.ready, err) :
                w == HB     ? lmp_wire_parse_heartbeat(h, len, &out.hb, err) :
                              lmp_wire_parse_event(h, len, &out.ev, err);
        if (r < 0)
                CHECK(memcmp(&out, &before, sizeof(out)) == 0, "'%s': output written on failure", h);
        return r;
}

static void test_malformed(void) {
        for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
                const struct bad *b = &bad_headers[i];
                struct lmp_error err = { 0 };
                int r = parse(b->which, b->header, strlen(b->header), &err);
                CHECK(r < 0, "'%s' was taken", b->header);
                CHECK(r >= 0 || (err.code == r && err.msg[0]), "'%s': no message", b->header);
                CHECK(r >= 0 || strstr(err.msg, b->words), "'%s': message '%s' does not say '%s'", b->header, err.msg,
                      b->words);
        }
        /* The valid header the events above are variations of. */
        struct lmp_error err = { 0 };
        CHECK(parse(EVENT, DONE_OK, strlen(DONE_OK), &err) == 0, "%s", err.msg);

        /* Bytes that a C string would hide: a NUL, and a header too long. */
        static const char nul[] = "7 t\0x";
        CHECK(parse(EVENT, nul, sizeof(nul) - 1, &err) < 0 && strstr(err.msg, "a NUL byte"), "NUL: %s", err.msg);
        char longh[LMP_WIRE_HEADER_MAX + 8];
        memset(longh, '1', sizeof(longh));
        longh[1] = ' ';
        CHECK(parse(CANCEL, longh, LMP_WIRE_HEADER_MAX, &err) < 0 && strstr(err.msg, "more than"), "long: %s",
              err.msg);
        /* Bytes that cannot be printed are not copied into the message. */
        static const char ctl[] = "7 \x1b[2J";
        CHECK(parse(EVENT, ctl, sizeof(ctl) - 1, &err) < 0 && !strchr(err.msg, '\x1b'), "control: %s", err.msg);
}

/* The rid and kind of a terminal event whose details are broken. */
static void test_event_rid(void) {
        uint64_t rid = 0;
        enum lmp_wire_event_kind kind = LMP_WIRE_TOKEN;
        static const char *const ok[] = { "7 d", "7 d 1 1", "7 d garbage here", "7 e" };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                rid = 0;
                CHECK(lmp_wire_parse_event_rid(ok[i], strlen(ok[i]), &rid, &kind) == 0 && rid == 7 &&
                      kind == (ok[i][2] == 'd' ? LMP_WIRE_DONE : LMP_WIRE_ERROR), "'%s'", ok[i]);
        }
        static const char *const bad[] = { "", "7", "7 x", "7 dd 1", "x d", "0 d", " 7 d", "7  d" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK(lmp_wire_parse_event_rid(bad[i], strlen(bad[i]), &rid, &kind) < 0, "'%s' was taken", bad[i]);
}

static void test_verbs(void) {
        struct lmp_error err = { 0 };
        enum lmp_wire_verb v;
        for (int i = 0; i < LMP_WIRE_VERB_COUNT; i++) {
                const char *name = lmp_wire_verb_name((enum lmp_wire_verb)i);
                bool to_worker = i <= LMP_WIRE_CONFIG;
                int frames = lmp_wire_verb_frames((enum lmp_wire_verb)i);
                CHECK(name && frames >= 1 && frames <= 3, "verb %d", i);
                CHECK(lmp_wire_parse_verb(to_worker, name, strlen(name), frames, &v, &err) == 0 && v == (enum lmp_wire_verb)i,
                      "%s: %s", name, err.msg);
                CHECK(lmp_wire_parse_verb(to_worker, name, strlen(name), frames + 1, &v, &err) < 0 &&
                      strstr(err.msg, "frames"), "%s with a frame more", name);
        }
        /* "hb" is one frame to a worker, two to the router. */
        CHECK(lmp_wire_parse_verb(true, "hb", 2, 1, &v, &err) == 0 && v == LMP_WIRE_PING, "ping");
        CHECK(lmp_wire_parse_verb(false, "hb", 2, 2, &v, &err) == 0 && v == LMP_WIRE_HEARTBEAT, "heartbeat");
        /* Verbs of the other direction, and unknown ones. */
        CHECK(lmp_wire_parse_verb(false, "job", 3, 3, &v, &err) < 0 && strstr(err.msg, "unknown verb 'job'"), "%s",
              err.msg);
        CHECK(lmp_wire_parse_verb(true, "ev", 2, 3, &v, &err) < 0, "ev to a worker");
        CHECK(lmp_wire_parse_verb(false, "xx", 2, 2, &v, &err) < 0 && strstr(err.msg, "unknown verb 'xx'"), "%s",
              err.msg);
        CHECK(lmp_wire_parse_verb(false, "ev\0", 3, 3, &v, &err) < 0, "ev with a NUL");
        CHECK(lmp_wire_parse_verb(false, "", 0, 1, &v, &err) < 0, "empty verb");
}

int main(void) {
        test_round_trips();
        test_format_clamps();
        test_format_refuses();
        test_malformed();
        test_event_rid();
        test_verbs();
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("wire: ok (%zu malformed headers)\n", sizeof(bad_headers) / sizeof(bad_headers[0]));
        return 0;
}

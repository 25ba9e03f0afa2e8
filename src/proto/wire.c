/* The router <-> worker headers (wire.h): written with snprintf, read by a
 * small cursor over the frame's bytes that takes one field at a time and
 * says which field was wrong and why. Numbers are read digit by digit, not
 * with sscanf or strtoul, which would take a sign, leading spaces, a hex
 * prefix or "nan" and wrap out-of-range values silently. */
#include "proto/wire.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"

static const struct {
        const char *name;
        bool to_worker;
        int frames;
} verbs[LMP_WIRE_VERB_COUNT] = {
        [LMP_WIRE_JOB] = { "job", true, 3 },
        [LMP_WIRE_CANCEL] = { "cancel", true, 2 },
        [LMP_WIRE_PING] = { "hb", true, 1 },
        [LMP_WIRE_STOP] = { "stop", true, 1 },
        [LMP_WIRE_CONFIG] = { "config", true, 2 },
        [LMP_WIRE_READY] = { "ready", false, 2 },
        [LMP_WIRE_HEARTBEAT] = { "hb", false, 2 },
        [LMP_WIRE_EVENT] = { "ev", false, 3 },
};

const char *lmp_wire_verb_name(enum lmp_wire_verb verb) {
        return (unsigned)verb < LMP_WIRE_VERB_COUNT ? verbs[verb].name : NULL;
}

int lmp_wire_verb_frames(enum lmp_wire_verb verb) {
        return (unsigned)verb < LMP_WIRE_VERB_COUNT ? verbs[verb].frames : 0;
}

/* At most 32 bytes of s for a message, non-printable bytes as '?'. */
static const char *shown(const void *s, size_t len, char out[40]) {
        const unsigned char *p = s;
        size_t n = LMP_MIN(len, (size_t)32), i;
        for (i = 0; i < n; i++)
                out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
        if (len > n) {
                memcpy(out + i, "...", 3);
                i += 3;
        }
        out[i] = '\0';
        return out;
}

int lmp_wire_parse_verb(bool to_worker, const void *buf, size_t len, int n_frames, enum lmp_wire_verb *ret_verb,
                        struct lmp_error *err) {
        char s[40];
        for (unsigned v = 0; v < LMP_WIRE_VERB_COUNT; v++) {
                if (verbs[v].to_worker != to_worker || strlen(verbs[v].name) != len ||
                    memcmp(verbs[v].name, buf, len) != 0)
                        continue;
                if (n_frames != verbs[v].frames)
                        return lmp_error_set(err, -EINVAL, "a '%s' message of %d frames (it has %d)", verbs[v].name,
                                             n_frames, verbs[v].frames);
                *ret_verb = (enum lmp_wire_verb)v;
                return 0;
        }
        return lmp_error_set(err, -EINVAL, "an unknown verb '%s' (a message of %d frames)", shown(buf, len, s),
                             n_frames);
}

/* ------------------------------------------------------------ formatting */

/* A duration or rate as written: finite, >= 0, at most max. */
static double measured(double v, double max) {
        if (!isfinite(v) || v < 0)
                return 0;
        return v > max ? max : v;
}

static int written(int n, size_t size) {
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= size)
                return -ENOSPC;
        return n;
}

int lmp_wire_format_job(const struct lmp_wire_job *h, char *buf, size_t size) {
        if (h->rid == 0)
                return -EINVAL;
        return written(snprintf(buf, size, "%" PRIu64 " %.3f", h->rid, measured(h->queued_ms, LMP_WIRE_MS_MAX)),
                       size);
}

int lmp_wire_format_cancel(const struct lmp_wire_cancel *h, char *buf, size_t size) {
        if (h->rid == 0)
                return -EINVAL;
        return written(snprintf(buf, size, "%" PRIu64, h->rid), size);
}

int lmp_wire_format_config(const struct lmp_wire_config *h, char *buf, size_t size) {
        if (h->max_prompt_tokens == 0 || h->log_priority < 3 || h->log_priority > 7 || h->log_sink < 0 ||
            h->log_sink > 2)
                return -EINVAL;
        return written(snprintf(buf, size, "%" PRIu32 " %" PRIu32 " %d %d", h->max_prompt_tokens, h->repeat_last_n,
                                h->log_priority, h->log_sink), size);
}

int lmp_wire_format_ready(const struct lmp_wire_ready *h, char *buf, size_t size) {
        if (h->slots == 0 || h->slots > LMP_WIRE_SLOTS_MAX || h->pid <= 0 || h->n_ctx == 0)
                return -EINVAL;
        return written(snprintf(buf, size, "%" PRIu32 " %" PRId32 " %" PRIu32, h->slots, h->pid, h->n_ctx), size);
}

int lmp_wire_format_heartbeat(const struct lmp_wire_heartbeat *h, char *buf, size_t size) {
        return written(snprintf(buf, size, "%" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64, h->active, h->rss, h->pss,
                                h->store_private), size);
}

int lmp_wire_format_event(const struct lmp_wire_event *h, char *buf, size_t size) {
        const struct lmp_wire_done *d = &h->done;
        const char *s;
        if (h->rid == 0)
                return -EINVAL;
        switch (h->kind) {
        case LMP_WIRE_TOKEN:
                return written(snprintf(buf, size, "%" PRIu64 " t", h->rid), size);
        case LMP_WIRE_DONE:
                if (!(s = lmp_finish_name(d->finish)))
                        return -EINVAL;
                return written(snprintf(buf, size, "%" PRIu64 " d %" PRIu32 " %" PRIu32 " %" PRIu32
                                        " %.3f %.3f %.3f %.3f %s", h->rid, d->prompt_tokens, d->generated_tokens,
                                        d->cached_tokens, measured(d->queued_ms, LMP_WIRE_MS_MAX),
                                        measured(d->ttft_ms, LMP_WIRE_MS_MAX), measured(d->total_ms, LMP_WIRE_MS_MAX),
                                        measured(d->tokens_per_s, LMP_WIRE_RATE_MAX), s), size);
        case LMP_WIRE_ERROR:
                if (h->code == LMP_PROTO_OK || !(s = lmp_proto_code_name(h->code)))
                        return -EINVAL;
                return written(snprintf(buf, size, "%" PRIu64 " e %s", h->rid, s), size);
        }
        return -EINVAL;
}

/* --------------------------------------------------------------- parsing */

/* One header being read: the fields so far, and what it is for messages. */
struct cursor {
        const char *p, *end;
        const char *what;               /* "job header" */
        int fields;                     /* taken so far */
        char full[40];                  /* the header as shown in messages */
};

static int cursor_init(struct cursor *c, const void *buf, size_t len, const char *what, struct lmp_error *err) {
        c->p = buf;
        c->end = c->p + len;
        c->what = what;
        c->fields = 0;
        shown(buf, len, c->full);
        if (len == 0)
                return lmp_error_set(err, -EINVAL, "%s: empty", what);
        if (len >= LMP_WIRE_HEADER_MAX)
                return lmp_error_set(err, -EINVAL, "%s '%s': %zu bytes, more than %d", what, c->full, len,
                                     LMP_WIRE_HEADER_MAX - 1);
        if (memchr(buf, '\0', len))
                return lmp_error_set(err, -EINVAL, "%s '%s': a NUL byte", what, c->full);
        return 0;
}

/* The next field, named name: after exactly one space (but the first),
 * up to the next space or the end, never empty. */
static int field(struct cursor *c, const char *name, const char **ret, size_t *ret_len, struct lmp_error *err) {
        if (c->fields > 0) {
                if (c->p == c->end)
                        return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is missing", c->what, c->full, name);
                c->p++; /* the space the previous field stopped at */
        }
        const char *s = c->p;
        while (c->p < c->end && *c->p != ' ')
                c->p++;
        if (c->p == s)
                return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is %s", c->what, c->full, name,
                                     c->fields == 0 || c->p < c->end ? "empty (two spaces, or one at an end)"
                                                                     : "missing (the header ends in a space)");
        c->fields++;
        *ret = s;
        *ret_len = (size_t)(c->p - s);
        return 0;
}

/* The header has no field after the last one read. */
static int finish(struct cursor *c, struct lmp_error *err) {
        char s[40];
        if (c->p == c->end)
                return 0;
        /* c->p is at the space that ended the last field. */
        return lmp_error_set(err, -EINVAL, "%s '%s': extra data '%s' after its last field", c->what, c->full,
                             shown(c->p + 1, (size_t)(c->end - c->p - 1), s));
}

/* A decimal integer as %u writes it: digits, no sign, no leading zero,
 * within [min, max]. */
static int uint_field(struct cursor *c, const char *name, uint64_t min, uint64_t max, uint64_t *ret,
                      struct lmp_error *err) {
        const char *s;
        size_t n;
        char t[40];
        uint64_t v = 0;
        int r = field(c, name, &s, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is '%s', not an unsigned decimal "
                                             "integer", c->what, c->full, name, shown(s, n, t));
                if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
                        return lmp_error_set(err, -ERANGE, "%s '%s': field '%s' overflows 64 bits", c->what, c->full,
                                             name);
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (n > 1 && s[0] == '0')
                return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is '%s', with a leading zero", c->what,
                                     c->full, name, shown(s, n, t));
        if (v < min || v > max)
                return lmp_error_set(err, -ERANGE, "%s '%s': field '%s' is %" PRIu64 ", outside %" PRIu64
                                     "..%" PRIu64, c->what, c->full, name, v, min, max);
        *ret = v;
        return 0;
}

/* A duration or rate: digits, optionally a point and digits; no sign,
 * exponent, "inf" or "nan"; at most max. */
static int decimal_field(struct cursor *c, const char *name, double max, double *ret, struct lmp_error *err) {
        const char *s;
        size_t n, i = 0, int_digits, frac_digits = 0;
        char t[40], copy[40];
        int r = field(c, name, &s, &n, err);
        if (r < 0)
                return r;
        while (i < n && s[i] >= '0' && s[i] <= '9')
                i++;
        int_digits = i;
        if (i < n && s[i] == '.') {
                i++;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                        i++;
                        frac_digits++;
                }
                if (frac_digits == 0)
                        int_digits = 0; /* "5.": refused below */
        }
        if (i != n || int_digits == 0 || n >= sizeof(copy))
                return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is '%s', not a decimal number like 12.345",
                                     c->what, c->full, name, shown(s, n, t));
        memcpy(copy, s, n);
        copy[n] = '\0';
        double v = strtod(copy, NULL);
        if (!(v <= max))
                return lmp_error_set(err, -ERANGE, "%s '%s': field '%s' is %s, above %g", c->what, c->full, name,
                                     copy, max);
        *ret = v;
        return 0;
}

int lmp_wire_parse_job(const void *buf, size_t len, struct lmp_wire_job *ret, struct lmp_error *err) {
        struct cursor c;
        struct lmp_wire_job h;
        int r;
        if ((r = cursor_init(&c, buf, len, "job header", err)) < 0 ||
            (r = uint_field(&c, "rid", 1, UINT64_MAX, &h.rid, err)) < 0 ||
            (r = decimal_field(&c, "queued_ms", LMP_WIRE_MS_MAX, &h.queued_ms, err)) < 0 || (r = finish(&c, err)) < 0)
                return r;
        *ret = h;
        return 0;
}

int lmp_wire_parse_cancel(const void *buf, size_t len, struct lmp_wire_cancel *ret, struct lmp_error *err) {
        struct cursor c;
        struct lmp_wire_cancel h;
        int r;
        if ((r = cursor_init(&c, buf, len, "cancel header", err)) < 0 ||
            (r = uint_field(&c, "rid", 1, UINT64_MAX, &h.rid, err)) < 0 || (r = finish(&c, err)) < 0)
                return r;
        *ret = h;
        return 0;
}

int lmp_wire_parse_config(const void *buf, size_t len, struct lmp_wire_config *ret, struct lmp_error *err) {
        struct cursor c;
        uint64_t maxp, last_n, pri, sink;
        int r;
        if ((r = cursor_init(&c, buf, len, "config header", err)) < 0 ||
            (r = uint_field(&c, "max_prompt_tokens", 1, UINT32_MAX, &maxp, err)) < 0 ||
            (r = uint_field(&c, "repeat_last_n", 0, UINT32_MAX, &last_n, err)) < 0 ||
            (r = uint_field(&c, "log_priority", 3, 7, &pri, err)) < 0 ||
            (r = uint_field(&c, "log_sink", 0, 2, &sink, err)) < 0 || (r = finish(&c, err)) < 0)
                return r;
        *ret = (struct lmp_wire_config){ .max_prompt_tokens = (uint32_t)maxp, .repeat_last_n = (uint32_t)last_n,
                                         .log_priority = (int)pri, .log_sink = (int)sink };
        return 0;
}

int lmp_wire_parse_ready(const void *buf, size_t len, struct lmp_wire_ready *ret, struct lmp_error *err) {
        struct cursor c;
        uint64_t slots, pid, n_ctx;
        int r;
        if ((r = cursor_init(&c, buf, len, "ready header", err)) < 0 ||
            (r = uint_field(&c, "slots", 1, LMP_WIRE_SLOTS_MAX, &slots, err)) < 0 ||
            (r = uint_field(&c, "pid", 1, INT32_MAX, &pid, err)) < 0 ||
            (r = uint_field(&c, "n_ctx", 1, UINT32_MAX, &n_ctx, err)) < 0 || (r = finish(&c, err)) < 0)
                return r;
        *ret = (struct lmp_wire_ready){ .slots = (uint32_t)slots, .pid = (int32_t)pid, .n_ctx = (uint32_t)n_ctx };
        return 0;
}

int lmp_wire_parse_heartbeat(const void *buf, size_t len, struct lmp_wire_heartbeat *ret, struct lmp_error *err) {
        struct cursor c;
        struct lmp_wire_heartbeat h;
        uint64_t active;
        int r;
        if ((r = cursor_init(&c, buf, len, "heartbeat header", err)) < 0 ||
            (r = uint_field(&c, "active", 0, LMP_WIRE_SLOTS_MAX, &active, err)) < 0 ||
            (r = uint_field(&c, "rss", 0, UINT64_MAX, &h.rss, err)) < 0 ||
            (r = uint_field(&c, "pss", 0, UINT64_MAX, &h.pss, err)) < 0 ||
            (r = uint_field(&c, "store_private", 0, UINT64_MAX, &h.store_private, err)) < 0 ||
            (r = finish(&c, err)) < 0)
                return r;
        h.active = (uint32_t)active;
        *ret = h;
        return 0;
}

/* The kind field: one letter. */
static int kind_field(struct cursor *c, enum lmp_wire_event_kind *ret, struct lmp_error *err) {
        const char *s = NULL;   /* set by field() whenever it succeeds */
        size_t n = 0;
        char t[40];
        int r = field(c, "kind", &s, &n, err);
        if (r < 0)
                return r;
        if (n == 1 && (s[0] == 't' || s[0] == 'd' || s[0] == 'e')) {
                *ret = s[0] == 't' ? LMP_WIRE_TOKEN : s[0] == 'd' ? LMP_WIRE_DONE : LMP_WIRE_ERROR;
                return 0;
        }
        return lmp_error_set(err, -EINVAL, "%s '%s': kind '%s' is none of t, d, e", c->what, c->full,
                             shown(s, n, t));
}

/* A word field that must be one of a table's names, as its index. */
static int name_field(struct cursor *c, const char *name, const char *(*name_of)(unsigned), unsigned count,
                      unsigned *ret, struct lmp_error *err) {
        const char *s;
        size_t n;
        char t[40];
        int r = field(c, name, &s, &n, err);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < count; i++) {
                const char *known = name_of(i);
                if (known && strlen(known) == n && memcmp(known, s, n) == 0) {
                        *ret = i;
                        return 0;
                }
        }
        return lmp_error_set(err, -EINVAL, "%s '%s': field '%s' is '%s', which is not a known one", c->what, c->full,
                             name, shown(s, n, t));
}

static const char *finish_name(unsigned i) {
        return lmp_finish_name((enum lmp_finish)i);
}

/* An error event's code: a protocol error code, not "ok". */
static const char *error_code_name(unsigned i) {
        return i == LMP_PROTO_OK ? NULL : lmp_proto_code_name((enum lmp_proto_code)i);
}

int lmp_wire_parse_event(const void *buf, size_t len, struct lmp_wire_event *ret, struct lmp_error *err) {
        struct cursor c;
        struct lmp_wire_event h = { 0 };
        uint64_t prompt, gen, cached;
        unsigned idx = 0;       /* set by name_field() whenever it succeeds */
        int r;
        if ((r = cursor_init(&c, buf, len, "event header", err)) < 0 ||
            (r = uint_field(&c, "rid", 1, UINT64_MAX, &h.rid, err)) < 0 || (r = kind_field(&c, &h.kind, err)) < 0)
                return r;
        switch (h.kind) {
        case LMP_WIRE_TOKEN:
                break;
        case LMP_WIRE_DONE:
                if ((r = uint_field(&c, "prompt_tokens", 0, UINT32_MAX, &prompt, err)) < 0 ||
                    (r = uint_field(&c, "generated_tokens", 0, UINT32_MAX, &gen, err)) < 0 ||
                    (r = uint_field(&c, "cached_tokens", 0, UINT32_MAX, &cached, err)) < 0 ||
                    (r = decimal_field(&c, "queued_ms", LMP_WIRE_MS_MAX, &h.done.queued_ms, err)) < 0 ||
                    (r = decimal_field(&c, "ttft_ms", LMP_WIRE_MS_MAX, &h.done.ttft_ms, err)) < 0 ||
                    (r = decimal_field(&c, "total_ms", LMP_WIRE_MS_MAX, &h.done.total_ms, err)) < 0 ||
                    (r = decimal_field(&c, "tokens_per_s", LMP_WIRE_RATE_MAX, &h.done.tokens_per_s, err)) < 0 ||
                    (r = name_field(&c, "finish", finish_name, LMP_FINISH_COUNT, &idx, err)) < 0)
                        return r;
                h.done.prompt_tokens = (uint32_t)prompt;
                h.done.generated_tokens = (uint32_t)gen;
                h.done.cached_tokens = (uint32_t)cached;
                h.done.finish = (enum lmp_finish)idx;
                break;
        case LMP_WIRE_ERROR:
                if ((r = name_field(&c, "code", error_code_name, LMP_PROTO_CODE_COUNT, &idx, err)) < 0)
                        return r;
                h.code = (enum lmp_proto_code)idx;
                break;
        }
        if ((r = finish(&c, err)) < 0)
                return r;
        *ret = h;
        return 0;
}

int lmp_wire_parse_event_rid(const void *buf, size_t len, uint64_t *ret_rid, enum lmp_wire_event_kind *ret_kind) {
        struct cursor c;
        uint64_t rid;
        enum lmp_wire_event_kind kind;
        int r;
        if ((r = cursor_init(&c, buf, len, "event header", NULL)) < 0 ||
            (r = uint_field(&c, "rid", 1, UINT64_MAX, &rid, NULL)) < 0 || (r = kind_field(&c, &kind, NULL)) < 0)
                return r;
        *ret_rid = rid;
        *ret_kind = kind;
        return 0;
}

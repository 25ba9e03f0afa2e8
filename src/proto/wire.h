/* The messages between the router and its workers (docs/design.md, "Router
 * <-> worker messages"), as C structs: the one place that writes and reads
 * them, used by both sides.
 *
 * A message is multipart: a verb frame, then for most verbs a short header
 * frame of fields separated by one space, then for `job` and `ev` a JSON
 * frame that this codec never reads (the request, or the client's event).
 * lmp_wire_format_*() writes a header; lmp_wire_parse_*() reads one back
 * and refuses, with a message in *err, anything the formatter would not
 * have written: a missing or extra field, two spaces, a sign, a leading
 * zero, an exponent, a number out of its bounds, an unknown event kind,
 * finish reason or error code, a NUL byte, a header longer than
 * LMP_WIRE_HEADER_MAX. The other side may be an older or broken binary:
 * nothing it sends is trusted.
 *
 * Functions return 0 (formatters: the header's length) or a negative
 * errno-style code; outputs are untouched on failure. Nothing here logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "proto/proto.h"

#define LMP_WIRE_HEADER_MAX 256         /* bytes in a header frame, and a buffer that holds any */
#define LMP_WIRE_MS_MAX 1e12            /* ~31 years: any duration a header carries */
#define LMP_WIRE_RATE_MAX 1e12          /* tokens/s */
#define LMP_WIRE_SLOTS_MAX 4096

enum lmp_wire_verb {
        /* router -> worker */
        LMP_WIRE_JOB,                   /* job, <rid> <queued_ms>, canonical request JSON */
        LMP_WIRE_CANCEL,                /* cancel, <rid> */
        LMP_WIRE_PING,                  /* hb */
        LMP_WIRE_STOP,                  /* stop: finish the running jobs, then exit */
        LMP_WIRE_CONFIG,                /* config, <max_prompt_tokens> <repeat_last_n> <log priority> <log sink> */
        /* worker -> router */
        LMP_WIRE_READY,                 /* ready, <slots> <pid> <n_ctx> */
        LMP_WIRE_HEARTBEAT,             /* hb, <active> <rss> <pss> <store_private> */
        LMP_WIRE_EVENT,                 /* ev, <rid> <t|d|e> ..., client event JSON */
        LMP_WIRE_VERB_COUNT,
};

/* The verb's first frame ("job", "hb", ...), and how many frames its
 * messages have in all (routing ids not counted). */
const char *lmp_wire_verb_name(enum lmp_wire_verb verb);
int lmp_wire_verb_frames(enum lmp_wire_verb verb);
/* Which verb a first frame is, among those sent to a worker (to_worker) or
 * to the router, and whether the message has that verb's number of frames
 * (n_frames, routing ids not counted). -EINVAL with a message otherwise. */
int lmp_wire_parse_verb(bool to_worker, const void *buf, size_t len, int n_frames, enum lmp_wire_verb *ret_verb,
                        struct lmp_error *err);

struct lmp_wire_job {
        uint64_t rid;                   /* the router's request number, >= 1 */
        double queued_ms;               /* time the request waited in the router */
};

struct lmp_wire_cancel {
        uint64_t rid;
};

/* The settings a reload changes in running workers. */
struct lmp_wire_config {
        uint32_t max_prompt_tokens;     /* >= 1 */
        uint32_t repeat_last_n;
        int log_priority;               /* LMP_PRI_ERR (3) .. LMP_PRI_DEBUG (7) */
        int log_sink;                   /* enum lmp_log_sink: 0 auto, 1 journal, 2 stderr */
};

struct lmp_wire_ready {
        uint32_t slots;                 /* 1 .. LMP_WIRE_SLOTS_MAX */
        int32_t pid;                    /* > 0 */
        uint32_t n_ctx;                 /* >= 1 */
};

struct lmp_wire_heartbeat {
        uint32_t active;                /* jobs running */
        uint64_t rss, pss, store_private; /* bytes */
};

enum lmp_wire_event_kind {
        LMP_WIRE_TOKEN,                 /* <rid> t */
        LMP_WIRE_DONE,                  /* <rid> d <prompt> <generated> <cached> <queued_ms> <ttft_ms> <total_ms> <tokens/s> <finish> */
        LMP_WIRE_ERROR,                 /* <rid> e <code> */
};

/* What the router logs of a finished request. */
struct lmp_wire_done {
        uint32_t prompt_tokens, generated_tokens, cached_tokens;
        double queued_ms, ttft_ms, total_ms, tokens_per_s;
        enum lmp_finish finish;
};

struct lmp_wire_event {
        uint64_t rid;
        enum lmp_wire_event_kind kind;
        struct lmp_wire_done done;      /* LMP_WIRE_DONE */
        enum lmp_proto_code code;       /* LMP_WIRE_ERROR: never LMP_PROTO_OK */
};

/* Formatters: write the header and a NUL into buf (size bytes; a buffer of
 * LMP_WIRE_HEADER_MAX always fits) and return its length; -EINVAL when a
 * field is out of its bounds, -ENOSPC when buf is too small. Durations and
 * rates are measurements: a negative or non-finite one is written as 0 and
 * one past its bound as the bound, so that a request's figures never cost
 * its log line. */
int lmp_wire_format_job(const struct lmp_wire_job *h, char *buf, size_t size);
int lmp_wire_format_cancel(const struct lmp_wire_cancel *h, char *buf, size_t size);
int lmp_wire_format_config(const struct lmp_wire_config *h, char *buf, size_t size);
int lmp_wire_format_ready(const struct lmp_wire_ready *h, char *buf, size_t size);
int lmp_wire_format_heartbeat(const struct lmp_wire_heartbeat *h, char *buf, size_t size);
int lmp_wire_format_event(const struct lmp_wire_event *h, char *buf, size_t size);

/* Parsers: buf is the header frame as received (len bytes, not
 * NUL-terminated). */
int lmp_wire_parse_job(const void *buf, size_t len, struct lmp_wire_job *ret, struct lmp_error *err);
int lmp_wire_parse_cancel(const void *buf, size_t len, struct lmp_wire_cancel *ret, struct lmp_error *err);
int lmp_wire_parse_config(const void *buf, size_t len, struct lmp_wire_config *ret, struct lmp_error *err);
int lmp_wire_parse_ready(const void *buf, size_t len, struct lmp_wire_ready *ret, struct lmp_error *err);
int lmp_wire_parse_heartbeat(const void *buf, size_t len, struct lmp_wire_heartbeat *ret, struct lmp_error *err);
int lmp_wire_parse_event(const void *buf, size_t len, struct lmp_wire_event *ret, struct lmp_error *err);
/* The request and kind an event header names, read from its first two
 * fields only: for a terminal event whose header lmp_wire_parse_event()
 * refused, so that the request still ends. */
int lmp_wire_parse_event_rid(const void *buf, size_t len, uint64_t *ret_rid, enum lmp_wire_event_kind *ret_kind);

/* The daemon's logging front. One call logs one event with structured
 * fields. When stderr is connected to the journal (JOURNAL_STREAM matches
 * it, as under systemd) the event goes to the journal as fields
 * (LMPOOL_EVENT=, MESSAGE_ID=, LMPOOL_MODEL=, RSS_BYTES=, ...) through
 * sd_journal_sendv;
 * otherwise it is one logfmt line on stderr
 * (`level=info event=model_loaded model=qwen rss_bytes=123 msg="..."`).
 * The same events and fields either way, so that `journalctl -u lmpoold
 * LMPOOL_EVENT=request_done` and a grep of the stderr log answer the same
 * questions. Only the daemon logs; library code returns errors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

/* syslog priorities, as the journal uses them */
enum lmp_log_priority {
        LMP_PRI_ERR = 3,
        LMP_PRI_WARNING = 4,
        LMP_PRI_NOTICE = 5,
        LMP_PRI_INFO = 6,
        LMP_PRI_DEBUG = 7,
};

enum lmp_log_sink {
        LMP_LOGTO_AUTO,           /* the journal when stderr is the journal, else stderr */
        LMP_LOGTO_JOURNAL,
        LMP_LOGTO_STDERR,
};

enum lmp_field_type { LMP_FIELD_STR, LMP_FIELD_I64, LMP_FIELD_U64, LMP_FIELD_F64 };

struct lmp_log_field {
        const char *key;        /* journal field name: upper case, e.g. "RSS_BYTES" */
        enum lmp_field_type type;
        union {
                const char *s;
                int64_t i;
                uint64_t u;
                double f;
        };
};

#define LMP_FSTR(k, v) ((struct lmp_log_field){ .key = (k), .type = LMP_FIELD_STR, .s = (v) })
#define LMP_FI64(k, v) ((struct lmp_log_field){ .key = (k), .type = LMP_FIELD_I64, .i = (v) })
#define LMP_FU64(k, v) ((struct lmp_log_field){ .key = (k), .type = LMP_FIELD_U64, .u = (v) })
#define LMP_FF64(k, v) ((struct lmp_log_field){ .key = (k), .type = LMP_FIELD_F64, .f = (v) })

/* ident: SYSLOG_IDENTIFIER ("lmpoold"); level: the most verbose level logged. */
void lmp_log_setup(const char *ident, enum lmp_log_sink target, enum lmp_log_priority level);
bool lmp_log_to_journal(void);

/* The event's MESSAGE_ID (32 hex digits) in the journal, or NULL for an
 * event without one. */
const char *lmp_log_message_id(const char *event);

/* Logs one event. event may be NULL for plain messages. */
void lmp_log(enum lmp_log_priority level, const char *event, const struct lmp_log_field *fields, size_t n_fields,
             const char *fmt, ...) LMP_PRINTF(5, 6);

#define lmp_log_msg(level, ...) lmp_log(level, NULL, NULL, 0, __VA_ARGS__)
#define lmp_log_event(level, event, fields, ...) \
        lmp_log(level, event, fields, LMP_ARRAY_SIZE(fields), __VA_ARGS__)

/* Structured logging to the journal or as logfmt lines (see log.h). The
 * state is set at start-up and again when a reload changes log.level or
 * log.target, which in a worker happens on its I/O thread while the engine
 * thread logs: each field is atomic (relaxed: a message logged during the
 * change may follow either setting, and nothing else depends on it). */
#include "common/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define MAX_FIELDS 24
#define LINE_MAX_BYTES 4096

static struct {
        _Atomic(const char *) ident;
        atomic_bool journal;
        atomic_int level;               /* enum lmp_log_priority */
} log_state = { "lmpool", false, LMP_PRI_INFO };

/* One fixed 128-bit MESSAGE_ID per event (journalctl MESSAGE_ID=...), so
 * that tools can select an event without parsing its text. Never change
 * an id; a new event gets a new one (`systemd-id128 new`), in this table
 * and in the table of docs/operations.md (tests/unit/test_message_ids.py
 * checks both against the events the daemon logs). */
static const struct {
        const char *event;
        const char *id;
} message_ids[] = {
        { "starting", "0ee6d59297e347dfa96ae25d5a2f0925" },
        { "ready", "747e0e0aa24f4a8294243f52899a317d" },
        { "reloaded", "cd777ceb0c6e4556a65fef0130b8fe43" },
        { "stopping", "0083e333ef8449d58bc3e5057175973e" },
        { "stopped", "ef729e15b2114e688eb7389d6d1c88b9" },
        { "model_loaded", "dc170f0b3a864045abf980830424dea8" },
        { "model_refused", "b2bdb80c819843cfae638117a76b5539" },
        { "model_failed", "c4de6c68b3644b9482b1bb21b169ab42" },
        { "model_file_changed", "b22d081740e94a6d8c00a5c00aecea7e" },
        { "worker_started", "218142a61bf74b0b9060ce43039bae2a" },
        { "worker_exited", "3d5434dff1ea465ca0ae139c48f96932" },
        { "memory", "caf1ac5bee534e1fae7cc014c82e2f37" },
        { "request_done", "457fdbca93b7408eb84ecf73338f9a82" },
        { "overload", "e60944a99a5840f3aea62f64805aced5" },
        { "refused", "a8956c5ed6d8409bb72c8154ca8f8b16" },
        { "clients_refused", "bd6478e1aa034d638757f9393cfd8cfc" },
        { "clients_overlong", "21f265e19db9464384534c9ced21e6f1" },
        { "http_listening", "c7b08e18715a4b28b50c3e5fa938b766" },
        { "http_request", "47b82014497a4f16be30dd17c451050f" },
        { "daemon_disconnected", "f416222310244125b8c74d069e95b720" },
        { "keys_reloaded", "057b9fb74bf84f68b64dd73b8af54ed2" },
        { "keys_reload_failed", "5f25232f9cd3460a92203cb3f25dc5fe" },
};

const char *lmp_log_message_id(const char *event) {
        if (!event)
                return NULL;
        for (size_t i = 0; i < LMP_ARRAY_SIZE(message_ids); i++)
                if (strcmp(message_ids[i].event, event) == 0)
                        return message_ids[i].id;
        return NULL;
}

/* systemd sets JOURNAL_STREAM=DEV:INODE for a stderr connected to the
 * journal; a stderr redirected elsewhere by the user no longer matches. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void lmp_log_setup(const char *ident, enum lmp_log_sink target, enum lmp_log_priority level) {
        bool journal = target == LMP_LOGTO_JOURNAL || (target == LMP_LOGTO_AUTO && stderr_is_journal());
        atomic_store_explicit(&log_state.ident, ident, memory_order_relaxed);
        atomic_store_explicit(&log_state.level, (int)level, memory_order_relaxed);
        atomic_store_explicit(&log_state.journal, journal, memory_order_relaxed);
}

bool lmp_log_to_journal(void) {
        return atomic_load_explicit(&log_state.journal, memory_order_relaxed);
}

static const char *level_name(enum lmp_log_priority l) {
        switch (l) {
        case LMP_PRI_ERR: return "error";
        case LMP_PRI_WARNING: return "warning";
        case LMP_PRI_NOTICE: return "notice";
        case LMP_PRI_INFO: return "info";
        default: return "debug";
        }
}

static int field_value(const struct lmp_log_field *f, char *buf, size_t size) {
        switch (f->type) {
        case LMP_FIELD_STR: return snprintf(buf, size, "%s", f->s ? f->s : "");
        case LMP_FIELD_I64: return snprintf(buf, size, "%" PRId64, f->i);
        case LMP_FIELD_U64: return snprintf(buf, size, "%" PRIu64, f->u);
        default: return snprintf(buf, size, "%.3f", f->f);
        }
}

/* logfmt: a value is quoted when it has spaces, quotes, '=' or is empty. */
static size_t put_logfmt_value(char *out, size_t size, const char *v) {
        bool quote = !*v || strpbrk(v, " \"=\t\n\\") != NULL;
        size_t n = 0;

        if (quote && n + 1 < size)
                out[n++] = '"';
        for (const char *p = v; *p && n + 3 < size; p++) {
                if (*p == '"' || *p == '\\') {
                        out[n++] = '\\';
                        out[n++] = *p;
                } else if (*p == '\n') {
                        out[n++] = '\\';
                        out[n++] = 'n';
                } else {
                        out[n++] = *p;
                }
        }
        if (quote && n + 1 < size)
                out[n++] = '"';
        out[n < size ? n : size - 1] = '\0';
        return n < size ? n : size - 1;
}

static void log_stderr(enum lmp_log_priority level, const char *event, const struct lmp_log_field *fields,
                       size_t n_fields, const char *msg) {
        char line[LINE_MAX_BYTES], val[512];
        size_t n = 0;

        n += (size_t)snprintf(line + n, sizeof(line) - n, "level=%s", level_name(level));
        if (event && n < sizeof(line))
                n += (size_t)snprintf(line + n, sizeof(line) - n, " event=%s", event);
        for (size_t i = 0; i < n_fields && n + 8 < sizeof(line); i++) {
                const char *k = fields[i].key;
                if (strncmp(k, "LMPOOL_", 7) == 0)
                        k += 7;
                line[n++] = ' ';
                for (; *k && n + 2 < sizeof(line); k++)
                        line[n++] = (*k >= 'A' && *k <= 'Z') ? (char)(*k - 'A' + 'a') : *k;
                line[n++] = '=';
                field_value(&fields[i], val, sizeof(val));
                n += put_logfmt_value(line + n, sizeof(line) - n, val);
        }
        if (n + 6 < sizeof(line)) {
                memcpy(line + n, " msg=", 5);
                n += 5;
                n += put_logfmt_value(line + n, sizeof(line) - n, msg);
        }
        if (n >= sizeof(line) - 1)
                n = sizeof(line) - 2;
        line[n++] = '\n';
        /* One write per line, so concurrent processes interleave whole lines. */
        (void)!write(STDERR_FILENO, line, n);
}

static void log_journal(enum lmp_log_priority level, const char *event, const struct lmp_log_field *fields,
                        size_t n_fields, const char *msg) {
        char bufs[MAX_FIELDS + 5][544];
        struct iovec iov[MAX_FIELDS + 5];
        size_t n = 0;

        snprintf(bufs[n], sizeof(bufs[n]), "MESSAGE=%s", msg);
        n++;
        snprintf(bufs[n], sizeof(bufs[n]), "PRIORITY=%d", (int)level);
        n++;
        snprintf(bufs[n], sizeof(bufs[n]), "SYSLOG_IDENTIFIER=%s",
                 atomic_load_explicit(&log_state.ident, memory_order_relaxed));
        n++;
        if (event) {
                const char *id = lmp_log_message_id(event);
                snprintf(bufs[n], sizeof(bufs[n]), "LMPOOL_EVENT=%s", event);
                n++;
                if (id) {
                        snprintf(bufs[n], sizeof(bufs[n]), "MESSAGE_ID=%s", id);
                        n++;
                }
        }
        for (size_t i = 0; i < n_fields && i < MAX_FIELDS; i++) {
                int k = snprintf(bufs[n], sizeof(bufs[n]), "%s=", fields[i].key);
                if (k > 0 && (size_t)k < sizeof(bufs[n]))
                        field_value(&fields[i], bufs[n] + k, sizeof(bufs[n]) - (size_t)k);
                n++;
        }
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = strlen(bufs[i]) };
        if (sd_journal_sendv(iov, (int)n) < 0)
                log_stderr(level, event, fields, n_fields, msg);
}

void lmp_log(enum lmp_log_priority level, const char *event, const struct lmp_log_field *fields, size_t n_fields,
             const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        if ((int)level > atomic_load_explicit(&log_state.level, memory_order_relaxed))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (atomic_load_explicit(&log_state.journal, memory_order_relaxed))
                log_journal(level, event, fields, n_fields, msg);
        else
                log_stderr(level, event, fields, n_fields, msg);
}

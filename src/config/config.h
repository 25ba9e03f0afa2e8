/* lmpoold's configuration: the plain structs the daemon reads, and the calls
 * that fill them from a YAML file, an optional profile overlaid on it
 * (LMPOOL_PROFILE) and LMPOOL_* environment overrides, in that order. Every
 * setting is a row of one table (src/config/settings.c); loading,
 * validation, the printed effective configuration, `lmpoold --check-config`
 * and docs/config.md all come from it. Loading never stops at the first
 * problem: every error is collected, with its file:line:column or the
 * environment variable that caused it, into a struct lmp_diag. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"

#define LMP_CONFIG_DEFAULT_PATH "/etc/lmpool/lmpool.yaml"
#define LMP_CONFIG_MAX_MODELS 64
#define LMP_CONFIG_MAX_WORKERS 256       /* per model: the bound of the "workers" setting */
#define LMP_CONFIG_NAME_MAX 64          /* model and profile names */
#define LMP_CONFIG_ENDPOINT_MAX 256
#define LMP_CONFIG_PATH_MAX 4096
#define LMP_CONFIG_ORIGIN_MAX 96

enum lmp_log_level {
        LMP_LOG_DEBUG,
        LMP_LOG_INFO,
        LMP_LOG_NOTICE,
        LMP_LOG_WARNING,
        LMP_LOG_ERROR,
};

enum lmp_log_target {
        LMP_LOG_TARGET_AUTO,            /* journal when JOURNAL_STREAM matches stderr */
        LMP_LOG_TARGET_JOURNAL,
        LMP_LOG_TARGET_STDERR,
};

enum lmp_store_kind {
        LMP_STORE_MEMFD,                /* a sealed memfd holding the prepared tensors */
        LMP_STORE_MMAP,                 /* the GGUF file itself, mapped shared */
};

enum lmp_numa_policy {
        LMP_NUMA_OFF,
        LMP_NUMA_INTERLEAVE,
        LMP_NUMA_LOCAL,
};

/* Per-model sampling defaults; a request may override each. */
struct lmp_sampling_defaults {
        int max_tokens;
        double temperature;
        int top_k;
        double top_p;
        double min_p;
        double repeat_penalty;
        double presence_penalty;
        double frequency_penalty;
        int repeat_last_n;
        int64_t seed;                   /* -1: random */
};

/* Where each value came from, one string per setting row ("default",
 * "lmpool.yaml:12", "profile testing, lmpool.yaml:40", "env VAR"). */
struct lmp_config_origins;

struct lmp_model_config {
        char name[LMP_CONFIG_NAME_MAX + 1];
        char path[LMP_CONFIG_PATH_MAX]; /* relative paths resolved against the file's directory */
        char mmproj[LMP_CONFIG_PATH_MAX]; /* "" = none; resolved like path */
        int workers;
        int threads;
        int slots;
        int cache_reuse;
        int ctx;
        int batch;
        int prompt_chunk;               /* prompt tokens per step while others generate */
        char chat_template[LMP_CONFIG_NAME_MAX + 1]; /* "" = detect from the model */
        enum lmp_store_kind store;
        enum lmp_numa_policy numa;
        uint64_t memory_max;            /* bytes per worker; 0 = no limit */
        struct lmp_sampling_defaults defaults;
        /* the router's semantic cache of this model's answers (router/semcache.h) */
        struct lmp_semantic_config {
                char model[LMP_CONFIG_NAME_MAX + 1]; /* the embedding model; "" = off */
                double threshold;       /* cosine similarity at which a cached answer is served */
                int ttl_s;
                int max_entries;
                uint64_t max_bytes;
                bool sampled;           /* cache sampled requests without a seed too */
                int embed_timeout_ms;   /* wait this long for the key's vector, then go uncached */
        } semantic;

        struct lmp_config_origins *origins; /* private to src/config */
};

struct lmp_config {
        /* router */
        char endpoint[LMP_CONFIG_ENDPOINT_MAX];   /* "" = lmp_config_default_endpoint() */
        char tcp[LMP_CONFIG_ENDPOINT_MAX];        /* "" = no TCP endpoint */
        char group[LMP_CONFIG_NAME_MAX + 1];      /* "" = the daemon's own group */
        char curve_key[LMP_CONFIG_PATH_MAX];      /* "" = no CURVE on router.tcp */
        char curve_clients[LMP_CONFIG_PATH_MAX];
        int heartbeat_ms;
        int heartbeat_liveness;
        /* limits */
        int queue_length;
        int client_requests;
        int retries;                    /* runs again before the first token */
        int request_timeout_ms;
        int max_prompt_tokens;
        int max_tokens;
        int drain_timeout_ms;
        int max_clients;                /* client connections open at once */
        int client_events;              /* events queued for one client connection */
        uint64_t receive_memory;        /* bytes of unfinished client messages tolerated */
        /* cache */
        uint64_t cache_bytes;           /* the response cache's bound; 0: off */
        int cache_ttl_s;
        /* log */
        enum lmp_log_level log_level;
        enum lmp_log_target log_target;
        int memory_interval_s;          /* 0 = off */
        bool log_requests;
        /* workers */
        int respawn_min_ms;
        int respawn_max_ms;
        int ready_timeout_ms;
        int load_attempts;              /* workers that fail to load a model before it is failed */
        /* http: the lmpool-http gateway (src/http), which reads the same file */
        char http_listen[LMP_CONFIG_ENDPOINT_MAX];      /* ADDR:PORT */
        char http_api_keys[LMP_CONFIG_PATH_MAX];        /* "" = no key file */
        bool http_loopback_without_key;
        double http_key_rate;           /* requests per second per key (token bucket refill) */
        int http_key_burst;             /* the bucket's size */
        int http_key_requests;          /* requests in flight per key */
        int http_max_requests;          /* requests in flight in the gateway */
        int http_max_connections;
        uint64_t http_max_body;
        uint64_t http_max_header;
        int http_idle_timeout_s;
        uint64_t http_stream_buffer;    /* bytes held for one slow HTTP client */
        int http_request_timeout_ms;

        struct lmp_model_config *models;
        size_t n_models;

        char profile[LMP_CONFIG_NAME_MAX + 1];    /* the active profile, "" if none */
        char path[LMP_CONFIG_PATH_MAX];           /* the file it was loaded from */
        struct lmp_config_origins *origins;       /* private to src/config */
};

/* One problem found while loading. `where` is the file name (line > 0) or
 * the environment variable; line and column are 1-based, 0 when unknown. */
struct lmp_diag_entry {
        char where[512];
        unsigned line, column;
        char msg[512];
};

/* A list of problems; zero-initialise it, lmp_diag_clear() it when done. */
struct lmp_diag {
        struct lmp_diag_entry *entries;
        size_t n, cap;
        size_t dropped;                 /* errors beyond the list's limit */
};

void lmp_diag_clear(struct lmp_diag *d);
/* Writes one line per entry: "FILE:LINE:COL: message" or "VAR: message". */
void lmp_diag_print(const struct lmp_diag *d, FILE *f);
/* Formats one entry the same way, without the newline. */
void lmp_diag_format(const struct lmp_diag_entry *e, char *buf, size_t size);

/* Loads `path` with `envp` (NULL: the process environment) supplying
 * LMPOOL_PROFILE and the overrides. Returns 0 and *ret, or a negative
 * errno-style code (-ENOENT, -EINVAL, -ENOMEM) with every problem appended
 * to *diag (which may be NULL); *ret is untouched on failure. */
int lmp_config_load(const char *path, char *const *envp, struct lmp_config **ret,
                    struct lmp_diag *diag);
/* The same from a buffer; `name` stands for the file in messages and
 * relative model paths are left as they are. */
int lmp_config_load_buffer(const char *name, const void *data, size_t size, char *const *envp,
                           struct lmp_config **ret, struct lmp_diag *diag);
void lmp_config_free(struct lmp_config *c);

const struct lmp_model_config *lmp_config_find_model(const struct lmp_config *c, const char *name);

/* Prints the effective configuration as YAML that loads back to the same
 * values, each value followed by a comment saying where it came from. */
int lmp_config_print(const struct lmp_config *c, FILE *f);

/* The router's client endpoint when router.endpoint is empty:
 * ipc://$RUNTIME_DIRECTORY/lmpool.sock, else
 * ipc://$XDG_RUNTIME_DIR/lmpool/lmpool.sock, else
 * ipc:///tmp/lmpool-$UID/lmpool.sock. The daemon creates the directory.
 * Returns 0, or -ENAMETOOLONG when the socket path would not fit. */
int lmp_config_default_endpoint(char *const *envp, char *buf, size_t size);
/* c->endpoint when set, else the default above. */
int lmp_config_endpoint(const struct lmp_config *c, char *const *envp, char *buf, size_t size);

/* Whether a tcp://HOST:PORT endpoint's HOST is a literal loopback address
 * (127.0.0.0/8, [::1], ::1). Names, `*` and every other address are not:
 * such an endpoint needs CURVE (router.curve_key, router.curve_clients). */
bool lmp_config_tcp_is_loopback(const char *endpoint);
/* The settings whose values differ between a and b, as their keys
 * ("limits.max_prompt_tokens", "models[qwen].ctx"; a model only one of
 * them has is "models[NAME]"), separated by spaces into buf (cut short with
 * "..." when it does not fit). keep(key, userdata), when given, picks which
 * keys are listed; model rows are passed without their "models[NAME]."
 * prefix. Returns how many keys were listed. */
size_t lmp_config_diff(const struct lmp_config *a, const struct lmp_config *b,
                       bool (*keep)(const char *key, bool model_row, void *userdata), void *userdata,
                       char *buf, size_t size);

/* The configuration file a program reads: `given` (its --config) when set
 * and not empty, else $LMPOOL_CONFIG when set and not empty, else
 * LMP_CONFIG_DEFAULT_PATH. */
const char *lmp_config_path(const char *given);

/* How lmpoold and lmpool-http start (src/config/start.c): loads the file
 * lmp_config_path(given) names into *ret (and its path into *ret_path,
 * which may be NULL), or prints every problem on stderr, then
 * "PROG: PATH: configuration refused", and returns the negative code. */
int lmp_config_start(const char *prog, const char *given, struct lmp_config **ret, const char **ret_path);

/* Sets up the logging front (common/log.h) as c's log: section says:
 * log.target and log.level, under SYSLOG_IDENTIFIER ident. At start-up and
 * again on reload. */
void lmp_config_setup_logging(const struct lmp_config *c, const char *ident);

/* `lmpoold --check-config [FILE]`: argv may be the daemon's whole argv
 * (argv[0] and the --check-config flag are skipped). FILE defaults to
 * $LMPOOL_CONFIG, then /etc/lmpool/lmpool.yaml. Prints the effective
 * configuration on stdout and returns 0, or prints each error on stderr
 * (a model file that does not exist is one) and returns 1; 2 on misuse. */
int lmp_config_check_main(int argc, char **argv);

/* Writes docs/config.md: every setting with its type, bounds, default,
 * environment variable and description, plus the profile and override
 * rules. */
int lmp_config_write_docs(FILE *f);

/* The name of an enum value as written in YAML ("info", "memfd", ...). */
const char *lmp_log_level_name(enum lmp_log_level v);
/* log.level's priority. */
static inline enum lmp_log_priority lmp_log_priority_of(enum lmp_log_level l) {
        switch (l) {
        case LMP_LOG_DEBUG: return LMP_PRI_DEBUG;
        case LMP_LOG_NOTICE: return LMP_PRI_NOTICE;
        case LMP_LOG_WARNING: return LMP_PRI_WARNING;
        case LMP_LOG_ERROR: return LMP_PRI_ERR;
        default: return LMP_PRI_INFO;
        }
}
const char *lmp_log_target_name(enum lmp_log_target v);
/* log.target's sink. */
static inline enum lmp_log_sink lmp_log_sink_of(enum lmp_log_target t) {
        switch (t) {
        case LMP_LOG_TARGET_JOURNAL: return LMP_LOGTO_JOURNAL;
        case LMP_LOG_TARGET_STDERR: return LMP_LOGTO_STDERR;
        default: return LMP_LOGTO_AUTO;
        }
}
const char *lmp_store_kind_name(enum lmp_store_kind v);
const char *lmp_numa_policy_name(enum lmp_numa_policy v);

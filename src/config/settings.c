/* The settings table: every lmpoold setting as one row, and the conversions
 * between a row's text form (YAML scalar, environment value, default) and
 * its field. Adding a setting means adding a field to config.h and a row
 * here; loading, validation, overrides, --check-config and docs/config.md
 * follow from the row. */
#include "config/settings.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/macros.h"

/* Enum fields are stored through an int pointer. */
static_assert(sizeof(enum lmp_log_level) == sizeof(int) && sizeof(enum lmp_log_target) == sizeof(int) &&
              sizeof(enum lmp_store_kind) == sizeof(int) && sizeof(enum lmp_numa_policy) == sizeof(int),
              "enums are ints");

static const char *const log_level_names[] = { "debug", "info", "notice", "warning", "error", NULL };
static const char *const log_target_names[] = { "auto", "journal", "stderr", NULL };
static const char *const store_names[] = { "memfd", "mmap", NULL };
static const char *const numa_names[] = { "off", "interleave", "local", NULL };

const char *lmp_log_level_name(enum lmp_log_level v) {
        return (unsigned)v < LMP_ARRAY_SIZE(log_level_names) - 1 ? log_level_names[v] : "?";
}
const char *lmp_log_target_name(enum lmp_log_target v) {
        return (unsigned)v < LMP_ARRAY_SIZE(log_target_names) - 1 ? log_target_names[v] : "?";
}
const char *lmp_store_kind_name(enum lmp_store_kind v) {
        return (unsigned)v < LMP_ARRAY_SIZE(store_names) - 1 ? store_names[v] : "?";
}
const char *lmp_numa_policy_name(enum lmp_numa_policy v) {
        return (unsigned)v < LMP_ARRAY_SIZE(numa_names) - 1 ? numa_names[v] : "?";
}

/* Names of models, profiles and chat template families: [A-Za-z0-9._-]{1,64}. */
static const char *check_name(const char *v) {
        size_t n = strlen(v);
        if (n == 0 || n > LMP_CONFIG_NAME_MAX)
                return "must be 1 to 64 characters from A-Z a-z 0-9 . _ -";
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
                        return "must be 1 to 64 characters from A-Z a-z 0-9 . _ -";
        return NULL;
}

/* tcp://HOST:PORT with a non-empty HOST (a name, an address, [v6] or *)
 * and a decimal PORT in 1..65535. */
static const char *check_tcp(const char *v) {
        static const char *const bad = "must be tcp://HOST:PORT with PORT in 1..65535";
        if (strncmp(v, "tcp://", 6) != 0)
                return bad;
        const char *host = v + 6, *colon = strrchr(host, ':');
        if (!colon || colon == host)
                return bad;
        if (host[0] == '[' && colon[-1] != ']')
                return bad;
        for (const char *p = host; p < colon; p++)
                if (isspace((unsigned char)*p) || *p == '/')
                        return bad;
        const char *port = colon + 1;
        if (!*port || strlen(port) > 5)
                return bad;
        long n = 0;
        for (const char *p = port; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return bad;
                n = n * 10 + (*p - '0');
        }
        if (n < 1 || n > 65535)
                return bad;
        return NULL;
}

/* A group name (as in /etc/group: letters, digits, . _ -, not starting
 * with -) or a numeric gid. Whether it exists is checked by the daemon and
 * --check-config. */
static const char *check_group(const char *v) {
        size_t n = strlen(v);
        if (n == 0 || n > 32 || v[0] == '-')
                return "must be a group name (1 to 32 of A-Z a-z 0-9 . _ -) or a numeric gid";
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
                        return "must be a group name (1 to 32 of A-Z a-z 0-9 . _ -) or a numeric gid";
        return NULL;
}

/* The client endpoint: ipc://PATH (PATH must fit a Unix socket address) or
 * tcp://HOST:PORT. */
static const char *check_endpoint(const char *v) {
        if (strncmp(v, "ipc://", 6) == 0) {
                size_t n = strlen(v + 6);
                if (n == 0)
                        return "ipc:// needs a socket path";
                if (n > 107)
                        return "the ipc socket path is longer than 107 bytes (sockaddr_un limit)";
                return NULL;
        }
        if (strncmp(v, "tcp://", 6) == 0)
                return check_tcp(v);
        return "must be ipc://PATH or tcp://HOST:PORT";
}

/* ADDR:PORT for the HTTP gateway: an IPv4 address, [IPv6] or `*`, and a
 * decimal PORT in 0..65535 (0: one the kernel picks, for tests). */
static const char *check_listen(const char *v) {
        static const char *const bad = "must be ADDR:PORT (an IPv4 address, [IPv6] or *) with PORT in 0..65535";
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || strlen(colon + 1) == 0 || strlen(colon + 1) > 5)
                return bad;
        if (v[0] == '[' ? colon[-1] != ']' : memchr(v, ':', (size_t)(colon - v)) != NULL)
                return bad;
        long n = 0;
        for (const char *p = colon + 1; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return bad;
                n = n * 10 + (*p - '0');
        }
        return n > 65535 ? bad : NULL;
}

#define FIELD(st, f) .offset = offsetof(st, f), .size = sizeof(((st *)0)->f)

#define G_INT(k, f, lo, hi, d, text) \
        { .key = k, .type = LMP_SETTING_INT, FIELD(struct lmp_config, f), .imin = lo, .imax = hi, .def = d, .doc = text }
#define G_BOOL(k, f, d, text) \
        { .key = k, .type = LMP_SETTING_BOOL, FIELD(struct lmp_config, f), .def = d, .doc = text }
#define G_ENUM(k, f, n, d, text) \
        { .key = k, .type = LMP_SETTING_ENUM, FIELD(struct lmp_config, f), .names = n, .def = d, .doc = text }
#define G_STR(k, f, chk, fl, d, text) \
        { .key = k, .type = LMP_SETTING_STRING, FIELD(struct lmp_config, f), .check = chk, .flags = fl, .def = d, .doc = text }

const struct lmp_setting lmp_config_settings[] = {
        G_STR("router.endpoint", endpoint, check_endpoint, LMP_SETTING_OPTIONAL, NULL,
              "Where clients connect (ipc://PATH or tcp://HOST:PORT). Empty: "
              "ipc://$RUNTIME_DIRECTORY/lmpool.sock, else ipc://$XDG_RUNTIME_DIR/lmpool/lmpool.sock, "
              "else ipc:///tmp/lmpool-$UID/lmpool.sock."),
        G_STR("router.tcp", tcp, check_tcp, LMP_SETTING_OPTIONAL, NULL,
              "An additional TCP endpoint for clients, e.g. tcp://127.0.0.1:5555. Empty: none. "
              "Any address but a literal loopback one (127.0.0.0/8, [::1]) needs router.curve_key "
              "and router.curve_clients (docs/security.md)."),
        G_STR("router.group", group, check_group, LMP_SETTING_OPTIONAL, NULL,
              "Group of the runtime directory (mode 0750) and of the ipc client socket (mode 0660): "
              "its members may connect. Empty: the daemon's own group. The daemon's user must be "
              "a member (SupplementaryGroups= under systemd)."),
        G_STR("router.curve_key", curve_key, NULL, LMP_SETTING_OPTIONAL | LMP_SETTING_PATH, NULL,
              "The server's CURVE key pair file (from `lmpool keygen`, mode 0600): router.tcp then "
              "speaks CURVE and takes only the clients of router.curve_clients. Empty: no CURVE."),
        G_STR("router.curve_clients", curve_clients, NULL, LMP_SETTING_OPTIONAL | LMP_SETTING_PATH, NULL,
              "File of the client public keys allowed on router.tcp, one Z85 key per line (an optional "
              "name may follow; # starts a comment). Required with router.curve_key."),
        G_INT("router.heartbeat_ms", heartbeat_ms, 50, 60000, "500",
              "Interval of heartbeats between the router and its workers, in milliseconds."),
        G_INT("router.heartbeat_liveness", heartbeat_liveness, 2, 20, "3",
              "Heartbeats a worker may miss before the router declares it dead."),

        G_INT("limits.queue_length", queue_length, 1, 65536, "64",
              "Requests waiting for a worker, over all models; beyond it clients get `busy`."),
        G_INT("limits.client_requests", client_requests, 1, 4096, "8",
              "Concurrent requests one client may have in flight; beyond it the client gets `busy`."),
        G_INT("limits.retries", retries, 0, 3, "1",
              "Times a request is run again on another worker when its worker dies before it sent the "
              "first token (the client sees nothing of it); after the first token it ends with "
              "`worker_lost`. 0 turns retrying off."),
        G_INT("limits.request_timeout_ms", request_timeout_ms, 100, 86400000, "300000",
              "Deadline of a request from its arrival, queueing included; then `timeout`."),
        G_INT("limits.max_prompt_tokens", max_prompt_tokens, 1, 1048576, "8192",
              "Longest prompt accepted, in tokens; longer ones get `too_long`."),
        G_INT("limits.max_tokens", max_tokens, 1, 1048576, "4096",
              "Most tokens one request may ask to generate."),
        G_INT("limits.drain_timeout_ms", drain_timeout_ms, 0, 600000, "10000",
              "On SIGTERM, how long requests in flight may finish before workers are killed."),
        G_INT("limits.max_clients", max_clients, 1, 262144, "1024",
              "Client connections open at once (ipc and TCP together); further connections are closed as "
              "they arrive, counted and logged. lmpoold raises its RLIMIT_NOFILE to fit and refuses to start "
              "when the hard limit (LimitNOFILE=) cannot. Read at start (a reload says it needs a restart)."),
        G_INT("limits.client_events", client_events, 16, 1000000, "1000",
              "Events queued for one client connection that is not reading; one more ends each of its "
              "running requests with `slow_consumer`. Read at start (a reload says it needs a restart)."),
        { .key = "limits.receive_memory", .type = LMP_SETTING_SIZE, FIELD(struct lmp_config, receive_memory),
          .imin = 16 << 20, .imax = INT64_MAX, .def = "256M",
          .doc = "Memory that unfinished client messages may take (ZeroMQ holds a multipart message whole "
                 "until its last frame); past it, connections sending a message that does not end are closed "
                 "(bytes; K, M, G, T suffixes). Applied on reload." },

        { .key = "cache.max_bytes", .type = LMP_SETTING_SIZE, FIELD(struct lmp_config, cache_bytes),
          .imin = 0, .imax = (int64_t)64 << 30, .def = "64M",
          .doc = "Memory of the router's exact response cache: answers to deterministic requests "
                 "(temperature 0, or a seed) stored under the whole request but its id, and served again "
                 "without a worker; least recently used answers go first, and none larger than an eighth of "
                 "it is kept; 0 turns the cache off (bytes; K, M, G, T suffixes)." },
        G_INT("cache.ttl_s", cache_ttl_s, 1, 604800, "600",
              "Age in seconds after which a cached answer is no longer served."),

        G_ENUM("log.level", log_level, log_level_names, "info", "Least severe event logged."),
        G_ENUM("log.target", log_target, log_target_names, "auto",
               "Where logs go: the journal (structured fields), stderr (logfmt lines), or auto "
               "(the journal when stderr is connected to it, per JOURNAL_STREAM)."),
        G_INT("log.memory_interval_s", memory_interval_s, 0, 86400, "30",
              "Period of the per-worker `memory` event, in seconds; 0 turns it off."),
        G_BOOL("log.requests", log_requests, "true",
               "Log a `request_done` event (tokens, timings, worker) for every request."),

        G_INT("workers.respawn_min_ms", respawn_min_ms, 10, 600000, "100",
              "First delay before respawning a worker that died; doubled on each further death."),
        G_INT("workers.respawn_max_ms", respawn_max_ms, 100, 3600000, "30000",
              "Ceiling of the respawn delay; must be at least workers.respawn_min_ms."),
        G_INT("workers.ready_timeout_ms", ready_timeout_ms, 100, 3600000, "120000",
              "How long a starting worker may take to announce READY before it is killed."),
        G_INT("workers.load_attempts", load_attempts, 1, 100, "3",
              "Workers of a model in a row that cannot load it (or die before they are ready) before the model is marked `failed`: "
              "it is then not respawned, its requests get `model_failed` and `health` names it."),

        G_STR("http.listen", http_listen, check_listen, 0, "127.0.0.1:8080",
              "Where lmpool-http (the HTTP gateway, docs/http.md) listens: ADDR:PORT, an IPv4 address, [IPv6] or * "
              "(every address); port 0 lets the kernel pick one (logged in the `http_listening` event). TLS is left to a reverse proxy (docs/operations.md)."),
        G_STR("http.api_keys", http_api_keys, NULL, LMP_SETTING_OPTIONAL | LMP_SETTING_PATH, NULL,
              "File of the gateway's API keys (bearer tokens), one per line, each optionally followed by a name "
              "for logs and metrics; # starts a comment. Empty: no keys (then http.loopback_without_key must be "
              "true)."),
        G_BOOL("http.loopback_without_key", http_loopback_without_key, "false",
               "Serve clients connecting from a loopback address without a key (their name in logs is "
               "`loopback`)."),
        { .key = "http.key_rate", .type = LMP_SETTING_DOUBLE, FIELD(struct lmp_config, http_key_rate),
          .dmin = 0, .dmax = 100000, .flags = LMP_SETTING_MIN_OPEN, .def = "5",
          .doc = "Generation requests per second one key may make on average (its token bucket's refill); "
                 "beyond it 429 with Retry-After." },
        G_INT("http.key_burst", http_key_burst, 1, 1000000, "20",
              "Generation requests one key may make at once before http.key_rate applies (the bucket's size)."),
        G_INT("http.key_requests", http_key_requests, 1, 4096, "4",
              "Generation requests one key may have in flight; beyond it 429 with Retry-After."),
        G_INT("http.max_requests", http_max_requests, 1, 65536, "64",
              "Requests in flight in the gateway over all keys; beyond it 503 with Retry-After. The daemon's "
              "limits.client_requests bounds them too: the gateway is one client of lmpoold."),
        G_INT("http.max_connections", http_max_connections, 1, 65536, "256",
              "HTTP connections open at once; further ones are closed as they arrive."),
        { .key = "http.max_body", .type = LMP_SETTING_SIZE, FIELD(struct lmp_config, http_max_body),
          .imin = 1 << 10, .imax = 16 << 20, .def = "1M",
          .doc = "Largest request body (bytes; K, M suffixes); a larger one gets 413." },
        { .key = "http.max_header", .type = LMP_SETTING_SIZE, FIELD(struct lmp_config, http_max_header),
          .imin = 8 << 10, .imax = 1 << 20, .def = "32K",
          .doc = "Memory for one connection's request line and headers (bytes); longer ones get 431 "
                 "(414 for the URI)." },
        G_INT("http.idle_timeout_s", http_idle_timeout_s, 1, 3600, "60",
              "An HTTP connection idle (nothing sent or received, no request running) this long is closed."),
        { .key = "http.stream_buffer", .type = LMP_SETTING_SIZE, FIELD(struct lmp_config, http_stream_buffer),
          .imin = 64 << 10, .imax = 256 << 20, .def = "4M",
          .doc = "Answer bytes the gateway holds for one HTTP client that reads slower than tokens come "
                 "(a whole answer is held in it too); past it the request is cancelled with an error." },
        G_INT("http.request_timeout_ms", http_request_timeout_ms, 100, 86400000, "300000",
              "Deadline of a generation request through the gateway (sent to the daemon as its timeout_ms, "
              "which lowers it to limits.request_timeout_ms); then 504."),
};
const size_t lmp_config_n_settings = LMP_ARRAY_SIZE(lmp_config_settings);
static_assert(LMP_ARRAY_SIZE(lmp_config_settings) <= LMP_SETTINGS_MAX, "the loader's per-row arrays");

#define M_INT(k, f, lo, hi, d, text) \
        { .key = k, .type = LMP_SETTING_INT, FIELD(struct lmp_model_config, f), .imin = lo, .imax = hi, .def = d, .doc = text }
#define M_DBL(k, f, lo, hi, fl, d, text) \
        { .key = k, .type = LMP_SETTING_DOUBLE, FIELD(struct lmp_model_config, f), .dmin = lo, .dmax = hi, .flags = fl, .def = d, .doc = text }
#define M_ENUM(k, f, n, d, text) \
        { .key = k, .type = LMP_SETTING_ENUM, FIELD(struct lmp_model_config, f), .names = n, .def = d, .doc = text }
#define M_STR(k, f, chk, fl, d, text) \
        { .key = k, .type = LMP_SETTING_STRING, FIELD(struct lmp_model_config, f), .check = chk, .flags = fl, .def = d, .doc = text }

const struct lmp_setting lmp_model_settings[] = {
        M_STR("name", name, check_name, LMP_SETTING_REQUIRED, NULL,
              "The model's name in requests: 1 to 64 of A-Z a-z 0-9 . _ -, unique."),
        M_STR("path", path, NULL, LMP_SETTING_REQUIRED | LMP_SETTING_PATH, NULL,
              "The GGUF file. A relative path given in the file is taken from the file's directory. "
              "Its existence is checked when the model loads (and by --check-config)."),
        M_STR("mmproj", mmproj, NULL, LMP_SETTING_OPTIONAL | LMP_SETTING_PATH, NULL,
              "A vision encoder for the model (an mmproj GGUF, llama.cpp's `clip` format): chat "
              "messages may then carry images. Only for a vision language model (qwen2vl). Loaded "
              "into the weight store like the model (one copy for all workers) and counted by the "
              "fit check; relative paths and the check of its existence as for `path`."),
        M_INT("workers", workers, 1, LMP_CONFIG_MAX_WORKERS, "1", "Worker processes serving this model."),
        M_INT("threads", threads, 1, 256, "1", "Compute threads in each worker."),
        M_INT("slots", slots, 1, 256, "1", "Sequences each worker runs at once (each has its own KV cache)."),
        M_INT("ctx", ctx, 16, 1048576, "2048", "Context length of each slot, in tokens."),
        M_INT("batch", batch, 1, 65536, "512", "Most tokens per forward pass (prompt processing)."),
        M_INT("prompt_chunk", prompt_chunk, 1, 65536, "32",
              "Most prompt tokens a worker evaluates in one step while other sequences of it are "
              "generating: each of their next tokens waits for that step, and so does a request that "
              "arrives during it (a worker takes new requests between steps). A smaller chunk keeps "
              "the streams smooth and the first tokens of a chat load's turns quick; a larger one "
              "evaluates a long prompt a little faster. With nothing generating a prompt goes in "
              "steps of `batch`."),
        M_INT("cache_reuse", cache_reuse, 0, 65536, "0",
              "Shortest stretch of a slot's cached tokens, after a part the new prompt dropped, that "
              "the prompt reuses instead of evaluating again (llama.cpp's --cache-reuse): the stretch "
              "moves down in the cache and its keys are rotated to their new positions. Also, an "
              "answer that the prompt sends back keeps the tokens it was sampled as (text seldom "
              "tokenizes back to them). A chat that resends its history, or only its recent messages, "
              "then evaluates only the new message. The moved positions keep what they computed with "
              "the dropped part before them, so answers differ slightly from a cold run's. 0: only the "
              "common prefix is reused. Models with windowed attention layers (Gemma 3) move nothing."),
        M_STR("chat_template", chat_template, check_name, LMP_SETTING_OPTIONAL, NULL,
              "Chat template family whose built-in template renders chats instead of the model's own tokenizer.chat_template (for a model that has none)."),
        M_ENUM("store", store, store_names, "memfd",
               "Weight store: a sealed memfd holding the tensors laid out for the kernels, or the "
               "GGUF file itself mapped shared (no copy; the file is watched, and a change to it stops "
               "the model's workers and loads it again: docs/operations.md)."),
        M_ENUM("numa", numa, numa_names, "off",
               "NUMA placement of the store's pages: none, interleaved over nodes, or local."),
        { .key = "memory_max", .type = LMP_SETTING_SIZE, FIELD(struct lmp_model_config, memory_max),
          .imin = 1 << 20, .imax = INT64_MAX, .flags = LMP_SETTING_OPTIONAL, .def = NULL,
          .doc = "Memory limit of each worker's cgroup (bytes; K, M, G, T suffixes). Empty: none." },
        M_INT("defaults.max_tokens", defaults.max_tokens, 1, 1048576, "256",
              "Tokens generated when a request does not say; at most limits.max_tokens."),
        M_DBL("defaults.temperature", defaults.temperature, 0, 10, 0, "0.8",
              "Sampling temperature; 0 is greedy."),
        M_INT("defaults.top_k", defaults.top_k, 0, 1000000, "40", "Keep the k most likely tokens; 0 keeps all."),
        M_DBL("defaults.top_p", defaults.top_p, 0, 1, LMP_SETTING_MIN_OPEN, "0.95",
              "Nucleus sampling: keep the most likely tokens up to this total probability."),
        M_DBL("defaults.min_p", defaults.min_p, 0, 1, 0, "0.05",
              "Drop tokens less likely than min_p times the most likely one; 0 turns it off."),
        M_DBL("defaults.repeat_penalty", defaults.repeat_penalty, 0, 10, LMP_SETTING_MIN_OPEN, "1.0",
              "Divide the logits of recently seen tokens by this; 1 turns it off."),
        M_DBL("defaults.presence_penalty", defaults.presence_penalty, -2, 2, 0, "0.0",
              "Subtracted once from the logit of each token seen recently; 0 turns it off."),
        M_DBL("defaults.frequency_penalty", defaults.frequency_penalty, -2, 2, 0, "0.0",
              "Subtracted from a token's logit once per recent occurrence; 0 turns it off."),
        M_INT("defaults.repeat_last_n", defaults.repeat_last_n, 0, 65536, "64",
              "How many recent tokens the repeat, presence and frequency penalties look at; 0: none."),
        { .key = "defaults.seed", .type = LMP_SETTING_INT, FIELD(struct lmp_model_config, defaults.seed),
          .imin = -1, .imax = INT64_MAX, .def = "-1", .doc = "Sampler seed; -1 draws a random one per request." },
        M_STR("semantic_cache.model", semantic.model, check_name, LMP_SETTING_OPTIONAL, NULL,
              "Turns on the router's semantic cache for this (generative) model: the name of an embedding "
              "model of the same pool that embeds each request's key text (the last user message, or the "
              "prompt). A request whose key is within semantic_cache.threshold of a cached one's, with the "
              "same model, sampling fields and other messages, is answered from the cache. Empty: off."),
        M_DBL("semantic_cache.threshold", semantic.threshold, 0, 1, LMP_SETTING_MIN_OPEN, "0.95",
              "Cosine similarity of two keys' vectors at or above which the cached answer is served."),
        M_INT("semantic_cache.ttl_s", semantic.ttl_s, 1, 604800, "600",
              "Age in seconds after which a semantically cached answer is no longer served."),
        M_INT("semantic_cache.max_entries", semantic.max_entries, 1, 100000, "1000",
              "Answers the model's semantic cache holds (each lookup compares the key with all of them); "
              "the least recently used goes first."),
        { .key = "semantic_cache.max_bytes", .type = LMP_SETTING_SIZE, FIELD(struct lmp_model_config, semantic.max_bytes),
          .imin = 4096, .imax = (int64_t)1 << 40, .def = "16M",
          .doc = "Memory of the model's semantic cache: vectors, keys and answers; an answer over an eighth "
                 "of it is not kept (bytes; K, M, G, T suffixes)." },
        { .key = "semantic_cache.sampled", .type = LMP_SETTING_BOOL, FIELD(struct lmp_model_config, semantic.sampled),
          .def = "false",
          .doc = "Also cache sampled requests (temperature > 0) that give no seed: a hit then repeats one "
                 "sample instead of drawing a new one." },
        M_INT("semantic_cache.embed_timeout_ms", semantic.embed_timeout_ms, 10, 60000, "2000",
              "How long a request waits for its key's vector; then (or at once when no worker of the "
              "embedding model has a free slot) it goes to its model uncached."),
};
const size_t lmp_model_n_settings = LMP_ARRAY_SIZE(lmp_model_settings);
static_assert(LMP_ARRAY_SIZE(lmp_model_settings) <= LMP_SETTINGS_MAX, "the loader's per-row arrays");

const char *lmp_setting_type_name(const struct lmp_setting *s) {
        switch (s->type) {
        case LMP_SETTING_BOOL: return "boolean";
        case LMP_SETTING_INT: return "integer";
        case LMP_SETTING_SIZE: return "size";
        case LMP_SETTING_DOUBLE: return "number";
        case LMP_SETTING_STRING: return "string";
        case LMP_SETTING_ENUM: return "enum";
        }
        return "?";
}

/* Quotes a value for a message, cut short if long. */
static void quote(const char *text, char *buf, size_t size) {
        size_t n = strlen(text);
        if (n > 40)
                snprintf(buf, size, "'%.40s...'", text);
        else
                snprintf(buf, size, "'%s'", text);
}

static int parse_int64(const char *t, int64_t *ret, bool *ret_overflow) {
        const char *p = t;
        if (*p == '+' || *p == '-')
                p++;
        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        for (const char *q = p; *q; q++)
                if (!isdigit((unsigned char)*q))
                        return -EINVAL;
        errno = 0;
        long long v = strtoll(t, NULL, 10);
        *ret_overflow = errno == ERANGE;
        *ret = v;
        return 0;
}

static int parse_size(const char *t, uint64_t *ret, bool *ret_overflow) {
        const char *p = t;
        uint64_t v = 0;
        bool over = false;

        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        for (; isdigit((unsigned char)*p); p++)
                over |= lmp_mul_overflow(v, (uint64_t)10, &v) || lmp_add_overflow(v, (uint64_t)(*p - '0'), &v);
        unsigned shift = 0;
        switch (toupper((unsigned char)*p)) {
        case '\0': break;
        case 'K': shift = 10; p++; break;
        case 'M': shift = 20; p++; break;
        case 'G': shift = 30; p++; break;
        case 'T': shift = 40; p++; break;
        default: return -EINVAL;
        }
        if (shift && (strcasecmp(p, "iB") == 0 || strcasecmp(p, "B") == 0))
                p += strlen(p);
        if (*p)
                return -EINVAL;
        if (shift) {
                over |= v > (UINT64_MAX >> shift);
                v <<= shift;
        }
        *ret = v;
        *ret_overflow = over;
        return 0;
}

static int parse_double(const char *t, double *ret) {
        if (!*t)
                return -EINVAL;
        for (const char *p = t; *p; p++)
                if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p))
                        return -EINVAL;
        char *end;
        errno = 0;
        double v = strtod(t, &end);
        if (*end || errno == ERANGE || !isfinite(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The shortest %g form that reads back as the same double. */
static void shortest_double(double v, char *buf, size_t size) {
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
}

/* The same, always looking like a number with a fraction ("1.0", not "1"),
 * so that the printed configuration shows the type. */
static void format_double(double v, char *buf, size_t size) {
        shortest_double(v, buf, size);
        if (!strpbrk(buf, ".eEn") && strlen(buf) + 2 < size)
                strcat(buf, ".0");
}

static void store_int(const struct lmp_setting *s, void *field, int64_t v) {
        if (s->size == sizeof(int64_t))
                *(int64_t *)field = v;
        else
                *(int *)field = (int)v;
}

int lmp_setting_parse(const struct lmp_setting *s, void *base, const char *text, bool is_null,
                      char *msg, size_t msg_size) {
        void *field = (char *)base + s->offset;
        char q[64];

        if ((is_null || !*text) && (s->flags & LMP_SETTING_OPTIONAL)) {
                memset(field, 0, s->size);
                return 0;
        }
        if (is_null || (!*text && s->type == LMP_SETTING_STRING)) {
                snprintf(msg, msg_size, "expected %s %s, got %s",
                         s->type == LMP_SETTING_INT || s->type == LMP_SETTING_ENUM ? "an" : "a",
                         lmp_setting_type_name(s), is_null ? "null" : "an empty string");
                return -EINVAL;
        }
        quote(text, q, sizeof(q));

        switch (s->type) {
        case LMP_SETTING_BOOL: {
                static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
                for (size_t i = 0; i < 3; i++) {
                        if (strcasecmp(text, yes[i]) == 0) {
                                *(bool *)field = true;
                                return 0;
                        }
                        if (strcasecmp(text, no[i]) == 0) {
                                *(bool *)field = false;
                                return 0;
                        }
                }
                snprintf(msg, msg_size, "expected a boolean (true or false), got %s", q);
                return -EINVAL;
        }
        case LMP_SETTING_INT: {
                int64_t v;
                bool over;
                if (parse_int64(text, &v, &over) < 0) {
                        snprintf(msg, msg_size, "expected an integer, got %s", q);
                        return -EINVAL;
                }
                if ((over && v < 0) || v < s->imin) {
                        snprintf(msg, msg_size, "%s is below the minimum %" PRId64, text, s->imin);
                        return -ERANGE;
                }
                if (over || v > s->imax) {
                        snprintf(msg, msg_size, "%s is above the maximum %" PRId64, text, s->imax);
                        return -ERANGE;
                }
                store_int(s, field, v);
                return 0;
        }
        case LMP_SETTING_SIZE: {
                uint64_t v;
                bool over;
                if (parse_size(text, &v, &over) < 0) {
                        snprintf(msg, msg_size, "expected a size (bytes, or a number with K, M, G or T), got %s", q);
                        return -EINVAL;
                }
                if (!over && v < (uint64_t)s->imin) {
                        snprintf(msg, msg_size, "%s is below the minimum %" PRId64 " bytes", text, s->imin);
                        return -ERANGE;
                }
                if (over || v > (uint64_t)s->imax) {
                        snprintf(msg, msg_size, "%s is above the maximum %" PRId64 " bytes", text, s->imax);
                        return -ERANGE;
                }
                *(uint64_t *)field = v;
                return 0;
        }
        case LMP_SETTING_DOUBLE: {
                double v;
                char lo[32], hi[32];
                if (parse_double(text, &v) < 0) {
                        snprintf(msg, msg_size, "expected a number, got %s", q);
                        return -EINVAL;
                }
                shortest_double(s->dmin, lo, sizeof(lo));
                shortest_double(s->dmax, hi, sizeof(hi));
                if (v < s->dmin || (v == s->dmin && (s->flags & LMP_SETTING_MIN_OPEN))) {
                        snprintf(msg, msg_size, "%s is below the minimum %s%s", text, lo,
                                 s->flags & LMP_SETTING_MIN_OPEN ? " (exclusive)" : "");
                        return -ERANGE;
                }
                if (v > s->dmax || (v == s->dmax && (s->flags & LMP_SETTING_MAX_OPEN))) {
                        snprintf(msg, msg_size, "%s is above the maximum %s%s", text, hi,
                                 s->flags & LMP_SETTING_MAX_OPEN ? " (exclusive)" : "");
                        return -ERANGE;
                }
                *(double *)field = v;
                return 0;
        }
        case LMP_SETTING_STRING: {
                size_t n = strlen(text);
                if (n >= s->size) {
                        snprintf(msg, msg_size, "%s is %zu bytes long, the maximum is %zu", q, n, s->size - 1);
                        return -ERANGE;
                }
                for (size_t i = 0; i < n; i++) {
                        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) {
                                snprintf(msg, msg_size, "contains a control character");
                                return -EINVAL;
                        }
                }
                const char *why = s->check ? s->check(text) : NULL;
                if (why) {
                        snprintf(msg, msg_size, "%s %s", q, why);
                        return -EINVAL;
                }
                memcpy(field, text, n + 1);
                return 0;
        }
        case LMP_SETTING_ENUM: {
                char list[128] = "";
                for (size_t i = 0; s->names[i]; i++) {
                        if (strcmp(text, s->names[i]) == 0) {
                                *(int *)field = (int)i;
                                return 0;
                        }
                        if (i)
                                strncat(list, ", ", sizeof(list) - strlen(list) - 1);
                        strncat(list, s->names[i], sizeof(list) - strlen(list) - 1);
                }
                snprintf(msg, msg_size, "expected one of %s, got %s", list, q);
                return -EINVAL;
        }
        }
        snprintf(msg, msg_size, "unknown setting type");
        return -EINVAL;
}

void lmp_setting_format(const struct lmp_setting *s, const void *base, char *buf, size_t size) {
        const void *field = (const char *)base + s->offset;

        switch (s->type) {
        case LMP_SETTING_BOOL:
                snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
                return;
        case LMP_SETTING_INT:
                if (s->size == sizeof(int64_t))
                        snprintf(buf, size, "%" PRId64, *(const int64_t *)field);
                else
                        snprintf(buf, size, "%d", *(const int *)field);
                return;
        case LMP_SETTING_SIZE: {
                uint64_t v = *(const uint64_t *)field;
                static const char suffix[] = "KMGT";
                int i = -1;
                while (i < 3 && v && (v & 1023) == 0) {
                        v >>= 10;
                        i++;
                }
                if (*(const uint64_t *)field == 0)
                        snprintf(buf, size, "null");
                else if (i >= 0)
                        snprintf(buf, size, "%" PRIu64 "%c", v, suffix[i]);
                else
                        snprintf(buf, size, "%" PRIu64, v);
                return;
        }
        case LMP_SETTING_DOUBLE:
                format_double(*(const double *)field, buf, size);
                return;
        case LMP_SETTING_STRING: {
                const char *p = field;
                size_t n = 0;
                if (size < 3) {
                        if (size)
                                buf[0] = '\0';
                        return;
                }
                buf[n++] = '"';
                for (; *p && n + 6 < size; p++) {
                        unsigned char c = (unsigned char)*p;
                        if (c == '"' || c == '\\') {
                                buf[n++] = '\\';
                                buf[n++] = (char)c;
                        } else if (c < 0x20 || c == 0x7f) {
                                n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
                        } else {
                                buf[n++] = (char)c;
                        }
                }
                buf[n++] = '"';
                buf[n] = '\0';
                return;
        }
        case LMP_SETTING_ENUM: {
                int v = *(const int *)field;
                size_t count = 0;
                while (s->names[count])
                        count++;
                snprintf(buf, size, "%s", v >= 0 && (size_t)v < count ? s->names[v] : "?");
                return;
        }
        }
        snprintf(buf, size, "?");
}

void lmp_setting_env_name(const struct lmp_setting *s, char *buf, size_t size) {
        size_t i = 0;
        for (; s->key[i] && i + 1 < size; i++)
                buf[i] = s->key[i] == '.' ? '_' : (char)toupper((unsigned char)s->key[i]);
        if (size)
                buf[i] = '\0';
}

void lmp_settings_set_defaults(const struct lmp_setting *table, size_t n, void *base) {
        char msg[256];
        for (size_t i = 0; i < n; i++) {
                const struct lmp_setting *s = &table[i];
                if (!s->def) {
                        memset((char *)base + s->offset, 0, s->size);
                        continue;
                }
                /* Defaults pass the same checks as user values; the unit
                 * tests assert that every one does. */
                if (lmp_setting_parse(s, base, s->def, false, msg, sizeof(msg)) < 0)
                        memset((char *)base + s->offset, 0, s->size);
        }
}

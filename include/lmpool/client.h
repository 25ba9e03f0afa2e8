/* liblmpool: the C client of lmpoold (wire protocol version 1, described in
 * docs/protocol.md). A client owns one ZeroMQ context and one DEALER socket
 * connected to the daemon; each call sends one request and reads that
 * request's events until it is over, so no call ever waits longer than the
 * client's receive timeout for the next event (a daemon that is gone gives
 * -ETIMEDOUT, never a hang).
 *
 * Thread safety: a struct lmp_client is used by one thread at a time (the
 * ZeroMQ socket inside is not thread-safe); give each thread its own client.
 * Different clients are independent.
 *
 * Errors: functions return 0 or a negative errno-style code:
 *   -EPROTO     the daemon answered with an error event: result->code holds
 *               its code (LMP_CLIENT_BAD_REQUEST, ...) and result->message
 *               its message
 *   -ECANCELED  the token callback asked to stop and the request ended
 *   -ETIMEDOUT  no event for longer than the receive timeout
 *   -EBADMSG    the daemon sent something that is not a version-1 event
 *   -EINVAL     bad arguments (message in result->message when there is one)
 *   -ENOMEM, or another errno from ZeroMQ
 * Link with `pkg-config --libs lmpool`. */
#ifndef LMPOOL_CLIENT_H
#define LMPOOL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_CLIENT_DEFAULT_TIMEOUT_MS 60000

/* The protocol's error codes, with their stable names. */
enum lmp_client_code {
        LMP_CLIENT_OK = 0,
        LMP_CLIENT_BAD_REQUEST,
        LMP_CLIENT_UNKNOWN_MODEL,
        LMP_CLIENT_BUSY,
        LMP_CLIENT_TOO_LONG,
        LMP_CLIENT_TIMEOUT,
        LMP_CLIENT_WORKER_LOST,
        LMP_CLIENT_CANCELLED,
        LMP_CLIENT_INTERNAL,
        LMP_CLIENT_SLOW_CONSUMER,       /* the client read its events too slowly: the request was stopped */
        LMP_CLIENT_MODEL_FAILED,
};
/* "bad_request", ... ("ok" for LMP_CLIENT_OK, "?" when out of range). */
const char *lmp_client_code_name(enum lmp_client_code code);

struct lmp_client;

/* Writes the default endpoint into buf: $LMPOOL_ENDPOINT when set, else
 * one's own daemon's socket, ipc://$RUNTIME_DIRECTORY/lmpool.sock,
 * ipc://$XDG_RUNTIME_DIR/lmpool/lmpool.sock or
 * ipc:///tmp/lmpool-$UID/lmpool.sock (the first whose variable is set),
 * unless that socket does not exist and the system daemon's,
 * /run/lmpool/lmpool.sock, does. -ENAMETOOLONG when cap is too small. */
int lmp_client_default_endpoint(char *buf, size_t cap);

/* Connects to endpoint (NULL: the default endpoint). ZeroMQ connects
 * lazily: a daemon that is not there shows up as -ETIMEDOUT on the first
 * call. */
int lmp_client_new(const char *endpoint, struct lmp_client **ret_client);
void lmp_client_free(struct lmp_client *client);

/* CURVE keys as Z85 text (40 characters, as `lmpool keygen` writes them). */
#define LMP_CLIENT_KEY_Z85_LEN 40
struct lmp_client_curve {
        const char *server_public;      /* the daemon's public key (its key pair's .pub file) */
        const char *public_key;         /* this client's key pair: its public key is on the */
        const char *secret_key;         /* daemon's router.curve_clients list */
};

/* As lmp_client_new(), over an encrypted and authenticated CURVE
 * connection to a daemon whose router.tcp has router.curve_key set
 * (docs/security.md). -EINVAL when a key is not 40 Z85 characters. A
 * daemon that does not know this client's key never answers: that shows
 * up as -ETIMEDOUT on the first call, like a daemon that is not there. */
int lmp_client_new_curve(const char *endpoint, const struct lmp_client_curve *curve,
                         struct lmp_client **ret_client);

/* The longest wait for the next event of a request, in ms (> 0). */
void lmp_client_set_timeout(struct lmp_client *client, int timeout_ms);

/* A generation's settings. lmp_client_params_init() fills the "not set"
 * values, which leave the choice to the model's defaults on the daemon. */
struct lmp_client_params {
        const char *model;              /* required */
        int max_tokens;                 /* 0: not set */
        double temperature;             /* < 0: not set; 0 is greedy */
        int top_k;                      /* < 0: not set; 0 is off */
        double top_p;                   /* <= 0: not set */
        double min_p;                   /* < 0: not set */
        double repeat_penalty;          /* <= 0: not set */
        long long seed;                 /* < 0: not set (random) */
        const char *const *stop;        /* up to 8 stop strings */
        size_t n_stop;
        bool ignore_eos;
        bool stream;                    /* true: token events (the default) */
        bool return_ids;                /* token ids in the callback */
        int timeout_ms;                 /* the request's deadline; 0: the daemon's */
        const char *session;            /* the conversation's name (1 to 128 bytes); NULL: none */
};
void lmp_client_params_init(struct lmp_client_params *params);

struct lmp_client_message {
        const char *role;               /* "system", "user" or "assistant" */
        const char *content;
};

/* How a request ended. Release with lmp_client_result_clear(). */
struct lmp_client_result {
        char *text;                     /* the generated text, NUL-terminated (after a cancel: what the callback was given) */
        size_t text_len;
        char finish[16];                /* "stop", "length" or "eos" */
        long long prompt_tokens;
        long long generated_tokens;
        double queued_ms, prompt_ms, ttft_ms, total_ms, tokens_per_s;
        char worker[64];
        enum lmp_client_code code;      /* with -EPROTO: the daemon's error code */
        char message[256];              /* with -EPROTO: the daemon's message */
        long long cached_tokens;        /* of prompt_tokens, those whose KV the worker had cached */
};
void lmp_client_result_clear(struct lmp_client_result *result);

/* Called for each token event with its text (possibly empty) and, with
 * return_ids, its token ids. Returning non-zero cancels the request: the
 * call then returns -ECANCELED after the daemon has confirmed. */
typedef int (*lmp_client_token_fn)(void *userdata, const char *text, size_t len, const int32_t *ids,
                                   size_t n_ids);

/* Generates from prompt. on_token may be NULL (blocking use: the text is in
 * result->text either way); with params->stream false it is never called.
 * result is always filled (zeroed first). Events of a type this library
 * does not know (later protocol additions) are skipped. */
int lmp_client_generate(struct lmp_client *client, const struct lmp_client_params *params, const char *prompt,
                        lmp_client_token_fn on_token, void *userdata, struct lmp_client_result *result);

/* The same for a conversation, rendered with the model's chat template. */
int lmp_client_chat(struct lmp_client *client, const struct lmp_client_params *params,
                    const struct lmp_client_message *messages, size_t n_messages, lmp_client_token_fn on_token,
                    void *userdata, struct lmp_client_result *result);

/* Embedding: texts in, one vector per text out. */
struct lmp_client_embed_params {
        const char *model;              /* required: an embedding model */
        bool normalize;                 /* unit-length vectors (the default) */
        bool truncate;                  /* cut an over-long text rather than fail with too_long */
        bool return_ids;                /* each text's token ids in the result */
        int timeout_ms;                 /* the request's deadline; 0: the daemon's */
};
void lmp_client_embed_params_init(struct lmp_client_embed_params *params);

/* An embed answer. Release with lmp_client_embeddings_clear(). */
struct lmp_client_embeddings {
        size_t n;                       /* vectors, one per text, in order */
        size_t n_embd;                  /* floats per vector */
        float *vectors;                 /* (n * n_embd), row-major */
        int32_t *ids;                   /* with return_ids: text i's ids are */
        size_t *ids_off;                /* ids[ids_off[i] .. ids_off[i + 1]) */
};
void lmp_client_embeddings_clear(struct lmp_client_embeddings *e);

/* Embeds texts[0..n) (1 to 256 UTF-8 texts) with an embedding model.
 * result is always filled (zeroed first): prompt_tokens (all texts'),
 * queued_ms, total_ms and worker on success, code and message on -EPROTO
 * (too_long names the text over the model's context; bad_request a model
 * that is not an embedding model). ret is filled only on success. */
int lmp_client_embed(struct lmp_client *client, const struct lmp_client_embed_params *params,
                     const char *const *texts, size_t n, struct lmp_client_embeddings *ret,
                     struct lmp_client_result *result);

/* Cancels this client's request target; *ret_found (may be NULL) tells
 * whether the daemon had it. */
int lmp_client_cancel(struct lmp_client *client, const char *target, bool *ret_found);

/* The models, stats and health answers as the daemon's JSON text
 * (malloc'd, NUL-terminated: free() it). On -EPROTO, result (may be NULL)
 * carries the code and message. */
int lmp_client_models(struct lmp_client *client, char **ret_json, struct lmp_client_result *result);
int lmp_client_stats(struct lmp_client *client, char **ret_json, struct lmp_client_result *result);
int lmp_client_health(struct lmp_client *client, char **ret_json, struct lmp_client_result *result);

/* The id of the last request this client sent ("" before the first). */
const char *lmp_client_last_id(const struct lmp_client *client);

#ifdef __cplusplus
}
#endif

#endif

/* The ZAP handler (ZeroMQ's authentication protocol, RFC 27): libzmq's I/O
 * thread asks it about every new connection to a socket with a ZAP domain,
 * and the connection completes only on a 200 answer. It runs in the poll
 * loop, like every other socket of the daemon.
 *
 * Workers (domain lmpool-workers, NULL mechanism over ipc). libzmq 4.3
 * puts the peer's SO_PEERCRED into the request's address frame,
 * "HOST:UID:GID:PID" (checked on Debian 12's 4.3.4). A connection passes
 * only when UID is ours and PID is one of our worker children that is
 * starting, ready or stopping (a reaped child's pid is forgotten at once,
 * and a zombie's pid cannot be reused). The answer's User-Id is that pid:
 * the router then reads it back from every message (zmq_msg_gets) and
 * takes a message as worker W's only if it names W's pid. The ipc
 * filters of the socket options (ZMQ_IPC_FILTER_PID) cannot do this: a
 * listener copies them at bind time, and our workers' pids change with
 * every respawn.
 *
 * Clients on TCP with CURVE (domain lmpool-clients): the handshake has
 * proved the client holds the secret key of the public key in the
 * credentials frame; it passes when that key is on router.curve_clients.
 * User-Id: the key in Z85. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"
#include "router/router.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 7    /* version, request id, domain, address, identity, mechanism, credentials */

void lmp_auth_refused(struct lmp_router *rt, uint64_t *counter, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        double now = lmp_clock_ms();

        (*counter)++;
        if (now - rt->auth.last_log_ms < 1000) {
                rt->auth.unlogged++;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        struct lmp_log_field f[] = {
                LMP_FU64("ZAP_REFUSED", rt->auth.zap_refused),
                LMP_FU64("WORKER_FRAMES_REFUSED", rt->auth.worker_frames_refused),
                LMP_FU64("UNLOGGED", rt->auth.unlogged),
        };
        lmp_log_event(LMP_PRI_WARNING, "refused", f, "%s (%" PRIu64 " connections and %" PRIu64
                      " worker frames refused in all; %" PRIu64 " not logged since the last report)", msg,
                      rt->auth.zap_refused, rt->auth.worker_frames_refused, rt->auth.unlogged);
        rt->auth.last_log_ms = now;
        rt->auth.unlogged = 0;
}

int lmp_zap_open(struct lmp_router *rt) {
        int zero = 0;
        rt->zap = zmq_socket(rt->zctx, ZMQ_REP);
        if (!rt->zap)
                return -errno;
        zmq_setsockopt(rt->zap, ZMQ_LINGER, &zero, sizeof(zero));
        if (zmq_bind(rt->zap, ZAP_ENDPOINT) < 0) {
                int e = errno;
                lmp_log_msg(LMP_PRI_ERR, "cannot bind the ZAP handler: %s", zmq_strerror(e));
                zmq_close(rt->zap);
                rt->zap = NULL;
                return -e;
        }
        return 0;
}

void lmp_zap_close(struct lmp_router *rt) {
        if (rt->zap)
                zmq_close(rt->zap);
        rt->zap = NULL;
}

static void frame_str(zmq_msg_t *m, char *buf, size_t size) {
        size_t n = LMP_MIN(zmq_msg_size(m), size - 1);
        memcpy(buf, zmq_msg_data(m), n);
        buf[n] = '\0';
        if (strlen(buf) != n)
                buf[0] = '\0'; /* a NUL inside: never a valid value */
}

/* "HOST:UID:GID:PID", parsed from the right (HOST may hold colons). */
static int parse_peer(const char *addr, unsigned long *uid, unsigned long *pid) {
        const char *c3 = strrchr(addr, ':');
        if (!c3)
                return -EINVAL;
        const char *c2 = c3 - 1;
        while (c2 > addr && *c2 != ':')
                c2--;
        const char *c1 = c2 - 1;
        while (c1 > addr && *c1 != ':')
                c1--;
        if (*c1 != ':' || *c2 != ':')
                return -EINVAL;
        char *end;
        errno = 0;
        *uid = strtoul(c1 + 1, &end, 10);
        if (end != c2 || errno)
                return -EINVAL;
        *pid = strtoul(c3 + 1, &end, 10);
        if (*end || errno || c3[1] == '\0' || *pid == 0)
                return -EINVAL;
        return 0;
}

static bool check_worker(struct lmp_router *rt, const char *addr, const char *mechanism, char *user_id, size_t size) {
        unsigned long uid, pid;
        if (strcmp(mechanism, "NULL") != 0 || parse_peer(addr, &uid, &pid) < 0) {
                lmp_auth_refused(rt, &rt->auth.zap_refused, "worker socket: refused a connection without peer "
                                 "credentials (address '%s', mechanism %s)", addr, mechanism);
                return false;
        }
        if (uid != (unsigned long)geteuid()) {
                lmp_auth_refused(rt, &rt->auth.zap_refused, "worker socket: refused a connection from uid %lu pid %lu: "
                                 "not our user", uid, pid);
                return false;
        }
        for (size_t i = 0; i < rt->n_models; i++)
                for (int j = 0; j < rt->models[i].n_workers; j++) {
                        const struct lmp_router_worker *w = &rt->models[i].workers[j];
                        if (w->pid > 0 && (unsigned long)w->pid == pid && w->state != LMP_WORKER_EXITED) {
                                snprintf(user_id, size, "%lu", pid);
                                return true;
                        }
                }
        lmp_auth_refused(rt, &rt->auth.zap_refused, "worker socket: refused a connection from pid %lu: not one of "
                         "our live workers", pid);
        return false;
}

static bool check_client(struct lmp_router *rt, const char *addr, const char *mechanism, zmq_msg_t *cred,
                         char *user_id, size_t size) {
        if (strcmp(mechanism, "CURVE") != 0 || !cred || zmq_msg_size(cred) != LMP_CURVE_KEY_BYTES) {
                lmp_auth_refused(rt, &rt->auth.zap_refused, "client from %s refused: mechanism %s, not CURVE", addr,
                                 mechanism);
                return false;
        }
        const uint8_t *key = zmq_msg_data(cred);
        char z85[LMP_CURVE_Z85_LEN + 1];
        struct lmp_curve_key k;
        memcpy(k.b, key, sizeof(k.b));
        lmp_curve_z85_encode(&k, z85);
        for (size_t i = 0; i < rt->n_curve_clients; i++)
                if (memcmp(rt->curve_clients[i].b, key, LMP_CURVE_KEY_BYTES) == 0) {
                        snprintf(user_id, size, "%s", z85);
                        return true;
                }
        lmp_auth_refused(rt, &rt->auth.zap_refused, "client from %s refused: key %s is not in router.curve_clients",
                         addr, z85);
        return false;
}

void lmp_zap_on_request(struct lmp_router *rt) {
        for (;;) {
                zmq_msg_t m[ZAP_FRAMES];
                int n = 0, more = 1;
                while (more) {
                        zmq_msg_t x;
                        zmq_msg_init(&x);
                        if (zmq_msg_recv(&x, rt->zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                                zmq_msg_close(&x);
                                for (int i = 0; i < n && i < ZAP_FRAMES; i++)
                                        zmq_msg_close(&m[i]);
                                return;
                        }
                        more = zmq_msg_more(&x);
                        if (n < ZAP_FRAMES)
                                m[n] = x;
                        else
                                zmq_msg_close(&x);
                        n++;
                }
                int kept = LMP_MIN(n, ZAP_FRAMES);
                char version[8] = "", domain[64] = "", addr[128] = "", mechanism[16] = "", user_id[64] = "";
                bool ok = false;
                if (kept >= 6) {
                        frame_str(&m[0], version, sizeof(version));
                        frame_str(&m[2], domain, sizeof(domain));
                        frame_str(&m[3], addr, sizeof(addr));
                        frame_str(&m[5], mechanism, sizeof(mechanism));
                        if (strcmp(version, "1.0") != 0)
                                ok = false;
                        else if (strcmp(domain, LMP_ZAP_WORKERS) == 0)
                                ok = check_worker(rt, addr, mechanism, user_id, sizeof(user_id));
                        else if (strcmp(domain, LMP_ZAP_CLIENTS) == 0 && rt->curve)
                                ok = check_client(rt, addr, mechanism, kept >= 7 ? &m[6] : NULL, user_id,
                                                  sizeof(user_id));
                        else
                                lmp_auth_refused(rt, &rt->auth.zap_refused, "ZAP: refused a connection in domain '%s'",
                                                 domain);
                }
                /* The reply: version, request id, status, text, user id, metadata. */
                const char *status = ok ? "200" : "400", *text = ok ? "OK" : "not authorized";
                zmq_send(rt->zap, "1.0", 3, ZMQ_SNDMORE);
                if (kept >= 2)
                        zmq_send(rt->zap, zmq_msg_data(&m[1]), zmq_msg_size(&m[1]), ZMQ_SNDMORE);
                else
                        zmq_send(rt->zap, "", 0, ZMQ_SNDMORE);
                zmq_send(rt->zap, status, 3, ZMQ_SNDMORE);
                zmq_send(rt->zap, text, strlen(text), ZMQ_SNDMORE);
                zmq_send(rt->zap, user_id, strlen(user_id), ZMQ_SNDMORE);
                zmq_send(rt->zap, "", 0, 0);
                for (int i = 0; i < kept; i++)
                        zmq_msg_close(&m[i]);
        }
}

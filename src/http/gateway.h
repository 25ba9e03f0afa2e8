/* lmpool-http's gateway: an HTTP/1.1 server (libmicrohttpd, driven from
 * our own poll loop) in front of one DEALER connection to lmpoold. One
 * thread does everything: MHD's epoll descriptor, the ZeroMQ socket, a
 * second epoll set watching the suspended connections for hang-ups, a
 * signalfd. Every HTTP request is a struct in this file's table; a request
 * to the daemon has a slot whose id ("h<slot>.<generation>") its events
 * carry back. Nothing here outlives a request but the counters of
 * /metrics, and every buffer has its bound (docs/http.md). */
#pragma once

#include <stdint.h>

#include "config/config.h"

struct lmp_gateway;

struct lmp_gateway_options {
        const struct lmp_config *cfg;   /* http.*, log.requests */
        const char *listen;             /* ADDR:PORT (the flag, or http.listen) */
        const char *endpoint;           /* the daemon's client endpoint */
        const char *api_keys;           /* the key file ("" none) */
};

/* Loads the keys, connects to the daemon and listens. -errno with the
 * reason in msg. */
int lmp_gateway_new(const struct lmp_gateway_options *opt, struct lmp_gateway **ret, char *msg, size_t msg_size);
/* Serves until SIGTERM or SIGINT arrives on sigfd, then ends the requests
 * in flight (cancelled in the pool) and returns 0. SIGHUP reloads the key
 * file. */
int lmp_gateway_run(struct lmp_gateway *gw, int sigfd);
void lmp_gateway_free(struct lmp_gateway *gw);
/* The port it listens on (for --listen 127.0.0.1:0). */
uint16_t lmp_gateway_port(const struct lmp_gateway *gw);

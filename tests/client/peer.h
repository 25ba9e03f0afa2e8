/* The protocol peer used by the client tests (see peer.c): bind, serve
 * for at most max_ms or until *stop becomes non-zero, close. */
#pragma once

struct peer_handle {
        void *ctx;
        void *sock;
};

int peer_bind(struct peer_handle *h, const char *endpoint);
int peer_serve(struct peer_handle *h, int max_ms, volatile int *stop);
void peer_close(struct peer_handle *h);

/* One multipart ZeroMQ message received whole: the first LMP_ZPARTS_MAX
 * parts are kept, the rest read and dropped (so that a peer sending more
 * parts than the protocol has cannot leave them queued), and counted. */
#pragma once

#include <zmq.h>

#define LMP_ZPARTS_MAX 5

struct lmp_zparts {
        zmq_msg_t m[LMP_ZPARTS_MAX];
        int n;          /* parts kept */
        int total;      /* parts received */
};

/* Receives the next message; flags apply to its first part (ZMQ_DONTWAIT
 * or 0), the others are already there. Returns the number of parts kept,
 * or -errno with nothing kept. */
int lmp_zparts_recv(void *sock, struct lmp_zparts *p, int flags);
void lmp_zparts_close(struct lmp_zparts *p);

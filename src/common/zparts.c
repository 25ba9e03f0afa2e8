#include "common/zparts.h"

#include <errno.h>

int lmp_zparts_recv(void *sock, struct lmp_zparts *p, int flags) {
        int more = 1;
        p->n = p->total = 0;
        while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, sock, p->total == 0 ? flags : 0) < 0) {
                        int e = errno;
                        zmq_msg_close(&m);
                        lmp_zparts_close(p);
                        return -e;
                }
                more = zmq_msg_more(&m);
                if (p->n < LMP_ZPARTS_MAX)
                        p->m[p->n++] = m;
                else
                        zmq_msg_close(&m);
                p->total++;
        }
        return p->n;
}

void lmp_zparts_close(struct lmp_zparts *p) {
        for (int i = 0; i < p->n; i++)
                zmq_msg_close(&p->m[i]);
        p->n = 0;
}

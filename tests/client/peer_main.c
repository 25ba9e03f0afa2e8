/* lmp-test-peer ENDPOINT [SECONDS]: runs the protocol peer of peer.c for
 * the CLI and Python tests, until SIGTERM/SIGINT or SECONDS (default 60)
 * have passed, so that a test that dies never leaves it behind for long.
 * Prints "ready" on stdout once bound. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

static volatile int stop;

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

int main(int argc, char **argv) {
        struct peer_handle h;
        struct sigaction sa = { .sa_handler = on_signal };
        if (argc < 2 || argc > 3) {
                fprintf(stderr, "usage: lmp-test-peer ENDPOINT [SECONDS]\n");
                return 2;
        }
        int seconds = argc == 3 ? atoi(argv[2]) : 60;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        int rc = peer_bind(&h, argv[1]);
        if (rc < 0) {
                fprintf(stderr, "lmp-test-peer: cannot bind %s: %s\n", argv[1], strerror(-rc));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        peer_serve(&h, seconds > 0 ? seconds * 1000 : 60000, &stop);
        peer_close(&h);
        return 0;
}

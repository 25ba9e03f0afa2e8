/* `lmpool keygen [-o FILE] [--force]`: a new CURVE key pair for lmpoold's
 * TCP endpoint (docs/security.md), from zmq_curve_keypair(). Without -o the
 * key pair goes to stdout. With -o, FILE gets the key pair (mode 0600,
 * never over an existing file unless --force) and FILE.pub the public key
 * followed by FILE's name, a line ready for the daemon's
 * router.curve_clients list; the public key is also printed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "client/commands.h"
#include "common/args.h"
#include "common/curvekey.h"

static const char usage[] =
        "usage: lmpool keygen [-o FILE] [--force]\n"
        "Writes a new CURVE key pair (Z85 text): to stdout, or to FILE (mode 0600) and\n"
        "its public key to FILE.pub. A server's FILE is lmpoold's router.curve_key and its\n"
        "FILE.pub what clients pass as --server-key; a client's FILE is its --key and its\n"
        "FILE.pub line goes into the server's router.curve_clients (docs/security.md).\n";

/* Writes text to path with mode, O_EXCL unless force. */
static int write_new(const char *path, const char *text, mode_t mode, bool force) {
        int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
        if (fd < 0)
                return -errno;
        /* An existing file (--force) keeps its mode otherwise. */
        if (fchmod(fd, mode) < 0) {
                int e = errno;
                close(fd);
                return -e;
        }
        size_t len = strlen(text), off = 0;
        while (off < len) {
                ssize_t n = write(fd, text + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
                off += (size_t)n;
        }
        return close(fd) < 0 ? -errno : 0;
}

int lmp_cmd_keygen(int argc, char **argv) {
        const char *out = NULL;
        bool force = false, help = false;
        char pub[LMP_CURVE_Z85_LEN + 1], sec[LMP_CURVE_Z85_LEN + 1], pair[256], pubpath[4096], publine[4200];
        const struct lmp_opt opts[] = {
                { "output", 'o', LMP_OPT_STRING, &out },
                { "force", 0, LMP_OPT_FLAG, &force },
                { "help", 'h', LMP_OPT_HELP, &help },
                { 0 },
        };
        struct lmp_args a;
        int r = lmp_args_parse(&a, "lmpool keygen", argc, argv, opts, NULL);
        if (r != LMP_ARGS_GO) {
                if (help)
                        fputs(usage, stdout);
                return r;
        }
        if (optind < argc)
                return lmp_args_unexpected(&a, argv[optind]);
        if (zmq_curve_keypair(pub, sec) < 0) {
                fprintf(stderr, "lmpool keygen: %s (is libzmq built with CURVE?)\n", zmq_strerror(errno));
                return 1;
        }
        snprintf(pair, sizeof(pair), "# lmpool CURVE key pair (lmpool keygen): keep it secret\npublic-key: %s\n"
                 "secret-key: %s\n", pub, sec);
        if (!out) {
                fputs(pair, stdout);
                r = fflush(stdout) == 0 ? 0 : 1;
        } else if ((size_t)snprintf(pubpath, sizeof(pubpath), "%s.pub", out) >= sizeof(pubpath)) {
                fprintf(stderr, "lmpool keygen: %s: path too long\n", out);
                r = 1;
        } else if ((r = write_new(out, pair, 0600, force)) < 0) {
                fprintf(stderr, "lmpool keygen: %s: %s%s\n", out, strerror(-r),
                        r == -EEXIST ? " (--force overwrites it)" : "");
                r = 1;
        } else {
                const char *base = strrchr(out, '/');
                snprintf(publine, sizeof(publine), "%s %s\n", pub, base ? base + 1 : out);
                if ((r = write_new(pubpath, publine, 0644, force)) < 0) {
                        fprintf(stderr, "lmpool keygen: %s: %s%s\n", pubpath, strerror(-r),
                                r == -EEXIST ? " (--force overwrites it)" : "");
                        r = 1;
                } else {
                        printf("%s\n", pub);
                        r = 0;
                }
        }
        memset(sec, 0, sizeof(sec));
        memset(pair, 0, sizeof(pair));
        return r;
}

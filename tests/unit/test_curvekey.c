/* CURVE key files (src/common/curvekey.c): our Z85 codec against
 * libzmq's own (zmq_z85_encode/decode) on random keys and on the RFC 32
 * test vector, then the key pair, public key and allow-list files as
 * `lmpool keygen` writes them, and the mistakes each must refuse with the
 * file and line: bad characters, a short key, a world-readable secret key,
 * an empty allow-list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/curvekey.h"
#include "../check.h"

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "w");
        if (!f) {
                perror(path);
                exit(1);
        }
        fputs(text, f);
        fclose(f);
        chmod(path, mode);
}

int main(void) {
        char dir[] = "/tmp/lmpool-curvekey-XXXXXX", path[256], text[512], z85[LMP_CURVE_Z85_LEN + 1];
        struct lmp_curve_key k, k2, pub, sec, *keys = NULL;
        struct lmp_error err = { 0 };
        size_t n = 0;

        /* RFC 32's test vector, then random keys both ways. */
        static const uint8_t vec[8] = { 0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B };
        memset(&k, 0, sizeof(k));
        memcpy(k.b, vec, sizeof(vec));
        lmp_curve_z85_encode(&k, z85);
        CHECK(strncmp(z85, "HelloWorld", 10) == 0, "test vector: %s", z85);
        srand(7);
        for (int i = 0; i < 1000; i++) {
                char theirs[LMP_CURVE_Z85_LEN + 1];
                for (int j = 0; j < LMP_CURVE_KEY_BYTES; j++)
                        k.b[j] = (uint8_t)(i < 2 ? (i ? 0xff : 0) : rand());
                lmp_curve_z85_encode(&k, z85);
                zmq_z85_encode(theirs, k.b, sizeof(k.b));
                CHECK(strcmp(z85, theirs) == 0, "key %d: %s != libzmq's %s", i, z85, theirs);
                CHECK(lmp_curve_z85_decode(theirs, &k2) == 0 && memcmp(k.b, k2.b, sizeof(k.b)) == 0, "key %d: decode",
                      i);
        }
        CHECK(lmp_curve_z85_decode("\"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", &k) == -EINVAL, "a bad character");
        CHECK(lmp_curve_z85_decode("#####0000000000000000000000000000000000", &k) == -EINVAL, "over 2^32 in a group");
        CHECK(lmp_curve_z85_decode("short", &k) == -EINVAL, "a short key");

        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        char p[41], s[41];
        zmq_curve_keypair(p, s);

        /* a key pair file */
        snprintf(path, sizeof(path), "%s/pair", dir);
        snprintf(text, sizeof(text), "# comment\npublic-key: %s\nsecret-key: %s\n", p, s);
        write_file(path, text, 0600);
        CHECK(lmp_curve_read_keypair(path, &pub, &sec, &err) == 0, "key pair: %s", err.msg);
        lmp_curve_z85_encode(&pub, z85);
        CHECK(strcmp(z85, p) == 0, "public key read back: %s", z85);
        lmp_curve_z85_encode(&sec, z85);
        CHECK(strcmp(z85, s) == 0, "secret key read back");
        CHECK(lmp_curve_read_public(path, &k, &err) == 0 && memcmp(k.b, pub.b, sizeof(k.b)) == 0,
              "the public key of a pair file");
        chmod(path, 0640);
        CHECK(lmp_curve_read_keypair(path, &pub, &sec, &err) == -EPERM && strstr(err.msg, "mode 0640"),
              "a secret key readable by the group: %s", err.msg);
        snprintf(text, sizeof(text), "public-key: %s\n", p);
        write_file(path, text, 0600);
        CHECK(lmp_curve_read_keypair(path, &pub, &sec, &err) == -EINVAL && strstr(err.msg, "secret-key"),
              "a pair without its secret key: %s", err.msg);
        snprintf(text, sizeof(text), "public-key: %s\nsecret-key: %.39s\n", p, s);
        write_file(path, text, 0600);
        CHECK(lmp_curve_read_keypair(path, &pub, &sec, &err) == -EINVAL && strstr(err.msg, ":2:"),
              "a short secret key names its line: %s", err.msg);

        /* an allow-list: comments, names after keys */
        snprintf(path, sizeof(path), "%s/clients", dir);
        snprintf(text, sizeof(text), "# allowed\n\n%s alice\n  %s\tbob laptop\n", p, s);
        write_file(path, text, 0644);
        CHECK(lmp_curve_read_allowlist(path, &keys, &n, &err) == 0 && n == 2, "allow-list: %s", err.msg);
        if (n == 2) {
                lmp_curve_z85_encode(&keys[1], z85);
                CHECK(strcmp(z85, s) == 0, "second key");
        }
        free(keys);
        keys = NULL;
        snprintf(text, sizeof(text), "%s\n%sX\n", p, p);
        write_file(path, text, 0644);
        CHECK(lmp_curve_read_allowlist(path, &keys, &n, &err) == -EINVAL && strstr(err.msg, ":2:"),
              "a key with a tail names its line: %s", err.msg);
        write_file(path, "# nobody\n", 0644);
        CHECK(lmp_curve_read_allowlist(path, &keys, &n, &err) == -EINVAL && strstr(err.msg, "no key"),
              "an empty allow-list: %s", err.msg);
        snprintf(path, sizeof(path), "%s/missing", dir);
        CHECK(lmp_curve_read_allowlist(path, &keys, &n, &err) == -ENOENT, "a missing file");

        snprintf(text, sizeof(text), "rm -rf '%s'", dir);
        if (system(text) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        else
                printf("curvekey: ok\n");
        return failures ? 1 : 0;
}

/* The bandwidth probe's read kernel: the AVX2 sum equals its scalar twin on
 * random buffers of every length from 0 to 1 KiB (whole 256-byte blocks and
 * the tail), at unaligned starts, and with extreme words (all ones, which
 * wrap); the probe itself returns a positive rate and refuses bad sizes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/membw.h"
#include "../check.h"

int main(void) {
        size_t cap = 4096 + 64;
        uint8_t *buf = malloc(cap);
        if (!buf)
                return 1;
        uint64_t s = 88172645463325252ULL;
        for (int fill = 0; fill < 3; fill++) {
                for (size_t i = 0; i < cap; i++) {
                        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                        buf[i] = fill == 0 ? (uint8_t)s : fill == 1 ? 0xff : (uint8_t)(s & 0x81);
                }
                for (size_t off = 0; off < 8; off++)
                        for (size_t n = 0; n <= 1024; n += 4) {
                                uint32_t a = lmp_membw_sum_ref(buf + off, n);
                                uint32_t b = __builtin_cpu_supports("avx2") ? lmp_membw_sum_avx2(buf + off, n) : a;
                                uint32_t c = lmp_membw_sum(buf + off, n);
                                CHECK(a == b && a == c, "fill %d off %zu n %zu: ref %u avx2 %u best %u", fill, off,
                                      n, a, b, c);
                        }
        }
        /* all ones: 1024 words of 0xffffffff sum to -1024 mod 2^32 */
        memset(buf, 0xff, 4096);
        CHECK(lmp_membw_sum(buf, 4096) == (uint32_t)-1024, "all-ones sum wrong");
        free(buf);

        struct lmp_threadpool *pool;
        if (lmp_threadpool_new(2, &pool) < 0)
                return 1;
        size_t n = 4 * LMP_MEMBW_CHUNK;
        uint8_t *big = calloc(1, n);
        double gbs = 0;
        CHECK(big && lmp_membw_probe(pool, big, n, 2, &gbs) == 0 && gbs > 0, "probe failed (%g GB/s)", gbs);
        CHECK(lmp_membw_probe(pool, big, n - 4, 1, &gbs) == -EINVAL &&
                      lmp_membw_probe(pool, big, n, 0, &gbs) == -EINVAL,
              "probe accepted a bad size or pass count");
        free(big);
        lmp_threadpool_free(pool);
        printf("membw: %s\n", failures ? "FAILED" : "ok");
        return failures ? 1 : 0;
}

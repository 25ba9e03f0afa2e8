/* The memory-bandwidth probe of membw.h. A pass is one parallel-for over
 * 1 MiB chunks of the buffer; its time is the wall time of that call, so
 * it includes the pool's wake-up and barrier, as generation's does (a few
 * microseconds against tens of milliseconds per pass). The sums are folded
 * into an atomic so that the compiler cannot drop the reads. */
#include "common/membw.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "common/clock.h"
#define HAVE_X86 1
#endif

uint32_t lmp_membw_sum_ref(const void *buf, size_t n) {
        const uint8_t *p = buf;
        uint32_t s = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
                uint32_t w;
                memcpy(&w, p + i, 4);
                s += w;
        }
        return s;
}

#ifdef HAVE_X86
__attribute__((target("avx2"))) uint32_t lmp_membw_sum_avx2(const void *buf, size_t n) {
        const uint8_t *p = buf;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        __m256i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        size_t i = 0;
        for (; i + 256 <= n; i += 256) {
                a0 = _mm256_add_epi32(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
                a1 = _mm256_add_epi32(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
                a2 = _mm256_add_epi32(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
                a3 = _mm256_add_epi32(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
                a4 = _mm256_add_epi32(a4, _mm256_loadu_si256((const __m256i *)(p + i + 128)));
                a5 = _mm256_add_epi32(a5, _mm256_loadu_si256((const __m256i *)(p + i + 160)));
                a6 = _mm256_add_epi32(a6, _mm256_loadu_si256((const __m256i *)(p + i + 192)));
                a7 = _mm256_add_epi32(a7, _mm256_loadu_si256((const __m256i *)(p + i + 224)));
        }
        a0 = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                              _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
        return (uint32_t)_mm_cvtsi128_si32(h) + lmp_membw_sum_ref(p + i, n - i);
}
#else
uint32_t lmp_membw_sum_avx2(const void *buf, size_t n) {
        return lmp_membw_sum_ref(buf, n);
}
#endif

uint32_t lmp_membw_sum(const void *buf, size_t n) {
#ifdef HAVE_X86
        if (__builtin_cpu_supports("avx2"))
                return lmp_membw_sum_avx2(buf, n);
#endif
        return lmp_membw_sum_ref(buf, n);
}

struct probe_job {
        const uint8_t *buf;
        atomic_uint sink;
};

static void probe_chunks(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        struct probe_job *j = arg;
        uint32_t s = lmp_membw_sum(j->buf + (size_t)begin * LMP_MEMBW_CHUNK,
                                   (size_t)(end - begin) * LMP_MEMBW_CHUNK);
        atomic_fetch_add_explicit(&j->sink, s, memory_order_relaxed);
}

int lmp_membw_probe(struct lmp_threadpool *pool, const void *buf, size_t n, int passes,
                    double *ret_gbs) {
        if (!pool || !buf || n == 0 || n % LMP_MEMBW_CHUNK || passes < 1)
                return -EINVAL;
        struct probe_job j = { .buf = buf };
        atomic_init(&j.sink, 0);
        int64_t n_chunks = (int64_t)(n / LMP_MEMBW_CHUNK);
        double best = 0.0;
        for (int i = 0; i < passes; i++) {
                double t0 = lmp_clock_s();
                lmp_threadpool_run(pool, n_chunks, 1, probe_chunks, &j);
                double dt = lmp_clock_s() - t0;
                if (dt > 0 && (double)n / dt > best)
                        best = (double)n / dt;
        }
        *ret_gbs = best * 1e-9;
        return 0;
}

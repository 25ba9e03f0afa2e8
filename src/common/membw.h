/* A memory-bandwidth probe: the streaming read rate of this machine with a
 * given thread pool, measured the way generation reads weights (every byte
 * once, front to back, no reuse), as the ceiling that `lmpool bench` sets
 * generation speed against. The read kernel sums the buffer as 32-bit
 * integers with eight independent AVX2 accumulators (so that neither the
 * add latency nor a single load stream bounds it); its scalar twin gives
 * the same sum and is what CPUs without AVX2 use. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/threadpool.h"

/* Sum of the n / 4 little-endian uint32 words of buf, modulo 2^32 (n: a
 * multiple of 4). The AVX2 version needs a CPU that has AVX2. */
uint32_t lmp_membw_sum_ref(const void *buf, size_t n);
uint32_t lmp_membw_sum_avx2(const void *buf, size_t n);
/* The fastest of the two that this CPU runs. */
uint32_t lmp_membw_sum(const void *buf, size_t n);

/* Reads buf (n bytes, a multiple of LMP_MEMBW_CHUNK) `passes` times with
 * every thread of pool, each thread taking chunks of LMP_MEMBW_CHUNK bytes
 * from a shared cursor, and stores the best pass's rate in GB/s (1e9 bytes
 * per second). buf must be much larger than the last-level cache for the
 * figure to be memory's and not the cache's. Returns 0, or -EINVAL. */
#define LMP_MEMBW_CHUNK (size_t)(1u << 20)
int lmp_membw_probe(struct lmp_threadpool *pool, const void *buf, size_t n, int passes,
                    double *ret_gbs);

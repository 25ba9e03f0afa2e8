/* Small macros shared by every module: sizes, cleanup attributes and checked
 * arithmetic. Nothing here allocates or has state. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define LMP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define LMP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LMP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LMP_ALIGN_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define LMP_LIKELY(x) __builtin_expect(!!(x), 1)
#define LMP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LMP_UNUSED __attribute__((unused))
#define LMP_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Checked arithmetic: true when the result overflowed. */
#define lmp_add_overflow(a, b, res) __builtin_add_overflow(a, b, res)
#define lmp_mul_overflow(a, b, res) __builtin_mul_overflow(a, b, res)

static inline void lmp_freep(void *p) { free(*(void **)p); }
#define _lmp_cleanup_free_ __attribute__((cleanup(lmp_freep)))

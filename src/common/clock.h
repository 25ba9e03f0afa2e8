/* The daemon's clock: milliseconds of CLOCK_MONOTONIC, for deadlines,
 * timers and durations (never for wall time). */
#pragma once

#include <time.h>

static inline double lmp_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

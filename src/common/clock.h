/* The monotonic clock, in the two units the code measures with:
 * milliseconds for deadlines and latencies, seconds for rates. Header-only
 * (static inline) so that the client library, which links nothing else of
 * ours, uses the same one. */
#pragma once

#include <time.h>

static inline double lmp_clock_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline double lmp_clock_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

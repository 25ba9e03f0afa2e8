/* Which model files a benchmark runs on: those named on its command line,
 * else its defaults among the fixture models; a missing one is skipped. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Model i into path: argv[i + 1] when models are named, else
 * $LMPOOL_FIXTURES/models/DEFAULTS[i].gguf. False when there is none or
 * the file does not exist. */
static inline bool fixture_model(int argc, char **argv, const char *const *defaults, int i, char *path, size_t cap) {
        const char *fx = getenv("LMPOOL_FIXTURES");
        struct stat st;
        if (argc > 1)
                snprintf(path, cap, "%s", argv[i + 1]);
        else if (fx)
                snprintf(path, cap, "%s/models/%s.gguf", fx, defaults[i]);
        else
                return false;
        return stat(path, &st) == 0;
}

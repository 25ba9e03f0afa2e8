/* `lmpool quantize IN.gguf OUT.gguf TYPE [--threads T]`: converts a model's
 * weight matrices to a file type's tensor mix (see src/tools/mix.h), with a
 * progress line per tensor on stderr for models over 64 MiB. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/commands.h"
#include "common/args.h"
#include "gguf/types.h"
#include "tools/quantize_model.h"

#define PROGRESS_MIN_BYTES (64ull << 20)

static void usage(FILE *f) {
        int n;
        const struct lmp_ftype *ft = lmp_ftype_list(&n);
        fprintf(f, "usage: lmpool quantize IN.gguf OUT.gguf TYPE [-t|--threads T]\n"
                   "Writes IN's weight matrices in TYPE's tensor mix; norms and biases stay as they are.\n"
                   "TYPE:");
        for (int i = 0; i < n; i++)
                fprintf(f, " %s", ft[i].name);
        fprintf(f, "\n");
}

static void progress(void *ctx, uint64_t i, uint64_t n, const char *name, uint32_t type, uint64_t bytes) {
        (void)ctx;
        fprintf(stderr, "[%4" PRIu64 "/%4" PRIu64 "] %-32s %-6s %8.2f MiB\n", i, n, name,
                lmp_type_name(type), (double)bytes / (1 << 20));
}

int lmp_cmd_quantize(int argc, char **argv) {
        const char *pos[3];
        int npos = 0, threads = 0;

        const struct lmp_opt table[] = {
                { "threads", 't', LMP_OPT_INT, &threads, 1, 64 },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpool quantize", argc, argv, table, usage);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        for (; optind < argc; optind++) {
                if (npos == 3)
                        return lmp_args_unexpected(&a, argv[optind]);
                pos[npos++] = argv[optind];
        }
        if (npos != 3) {
                usage(stderr);
                return 2;
        }
        const struct lmp_ftype *ft = lmp_ftype_find(pos[2]);
        if (!ft) {
                fprintf(stderr, "lmpool quantize: unknown type '%s'\n", pos[2]);
                usage(stderr);
                return 2;
        }
        if (threads == 0) {
                long nproc = sysconf(_SC_NPROCESSORS_ONLN);
                threads = nproc > 0 ? (int)(nproc < 64 ? nproc : 64) : 1;
        }
        struct stat st;
        struct lmp_quantize_opts opts = { .nthreads = threads };
        if (stat(pos[0], &st) == 0 && (uint64_t)st.st_size >= PROGRESS_MIN_BYTES)
                opts.progress = progress;

        struct lmp_error err = { 0 };
        int r = lmp_quantize_model(pos[0], pos[1], ft, &opts, &err);
        if (r < 0) {
                fprintf(stderr, "lmpool quantize: %s\n", err.msg[0] ? err.msg : lmp_strerror_name(r));
                return 1;
        }
        if (stat(pos[1], &st) == 0)
                fprintf(stderr, "wrote %s (%s): %lld bytes (%.1f MiB)\n", pos[1], ft->name, (long long)st.st_size,
                        (double)st.st_size / (1 << 20));
        return 0;
}

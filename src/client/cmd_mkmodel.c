/* `lmpool mkmodel --shape NAME --type TYPE [--vocab VOCAB.gguf] [--seed S]
 * [--threads T] [--dry-run] -o OUT`: writes a random-weight model in the
 * shape of a real one (see src/tools/mkmodel.h). Such a model produces
 * noise; it is for tests, benchmarks and trying lmpool out before pointing
 * it at a real GGUF file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/commands.h"
#include "gguf/types.h"
#include "tools/mkmodel.h"

static void usage(FILE *f) {
        int n;
        const struct lmp_shape *s = lmp_shape_list(&n);
        fprintf(f, "usage: lmpool mkmodel --shape NAME --type TYPE [--vocab VOCAB.gguf] [--seed S]\n"
                   "                      [--threads T] [--dry-run] -o OUT.gguf\n"
                   "Writes a random-weight model (it produces noise, not text) in a real model's shape.\n"
                   "--vocab copies the tokenizer of a GGUF file; --dry-run prints the tensor plan and size.\n"
                   "shapes:");
        for (int i = 0; i < n; i++)
                fprintf(f, " %s", s[i].name);
        const struct lmp_ftype *ft = lmp_ftype_list(&n);
        fprintf(f, "\ntypes:");
        for (int i = 0; i < n; i++)
                fprintf(f, " %s", ft[i].name);
        fprintf(f, "\n");
}

struct progress_state {
        bool verbose;
};

static void progress(void *ctx, uint64_t i, uint64_t n, const char *name, uint32_t type, uint64_t bytes) {
        const struct progress_state *ps = ctx;
        if (ps->verbose || i == n || bytes >= (16u << 20))
                fprintf(stderr, "[%4" PRIu64 "/%4" PRIu64 "] %-32s %-6s %8.2f MiB\n", i, n, name,
                        lmp_type_name(type), (double)bytes / (1 << 20));
}

static bool parse_u64(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || !*s || *end || *s == '-')
                return false;
        *ret = v;
        return true;
}

int lmp_cmd_mkmodel(int argc, char **argv) {
        struct lmp_mkmodel_opts o = { .seed = 42 };
        struct progress_state ps = { false };
        const char *out = NULL, *shape = NULL, *type = NULL;
        uint64_t v;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                bool has_arg = i + 1 < argc;
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        usage(stdout);
                        return 0;
                } else if (strcmp(a, "--dry-run") == 0) {
                        o.dry_run = true;
                } else if (!has_arg) {
                        fprintf(stderr, "lmpool mkmodel: '%s' needs a value\n", a);
                        usage(stderr);
                        return 2;
                } else if (strcmp(a, "--shape") == 0) {
                        shape = argv[++i];
                } else if (strcmp(a, "--type") == 0) {
                        type = argv[++i];
                } else if (strcmp(a, "--vocab") == 0) {
                        o.vocab_path = argv[++i];
                } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
                        out = argv[++i];
                } else if (strcmp(a, "--seed") == 0) {
                        if (!parse_u64(argv[++i], &o.seed)) {
                                fprintf(stderr, "lmpool mkmodel: bad seed '%s'\n", argv[i]);
                                return 2;
                        }
                } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
                        if (!parse_u64(argv[++i], &v) || v < 1 || v > 64) {
                                fprintf(stderr, "lmpool mkmodel: --threads wants 1..64, not '%s'\n", argv[i]);
                                return 2;
                        }
                        o.nthreads = (int)v;
                } else {
                        fprintf(stderr, "lmpool mkmodel: unknown argument '%s'\n", a);
                        usage(stderr);
                        return 2;
                }
        }
        if (!shape || !type || (!out && !o.dry_run)) {
                usage(stderr);
                return 2;
        }
        o.shape = lmp_shape_find(shape);
        if (!o.shape) {
                fprintf(stderr, "lmpool mkmodel: unknown shape '%s'\n", shape);
                usage(stderr);
                return 2;
        }
        o.ft = lmp_ftype_find(type);
        if (!o.ft) {
                fprintf(stderr, "lmpool mkmodel: unknown type '%s'\n", type);
                usage(stderr);
                return 2;
        }
        if (o.nthreads == 0) {
                long nproc = sysconf(_SC_NPROCESSORS_ONLN);
                o.nthreads = nproc > 0 ? (int)(nproc < 64 ? nproc : 64) : 1;
        }
        ps.verbose = o.dry_run;
        o.progress = progress;
        o.progress_ctx = &ps;

        struct lmp_error err = { 0 };
        struct lmp_mkmodel_result res = { 0 };
        int r = lmp_mkmodel(out, &o, &res, &err);
        if (r < 0) {
                fprintf(stderr, "lmpool mkmodel: %s\n", err.msg[0] ? err.msg : lmp_strerror_name(r));
                return 1;
        }
        fprintf(o.dry_run ? stdout : stderr,
                "%s %s %s: %" PRIu64 " bytes (%.1f MiB), of which tensor data %" PRIu64 " bytes (%.1f MiB)\n",
                o.dry_run ? "would write" : "wrote", o.shape->name, o.ft->name, res.file_size,
                (double)res.file_size / (1 << 20), res.tensor_bytes, (double)res.tensor_bytes / (1 << 20));
        return 0;
}

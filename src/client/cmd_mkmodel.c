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
#include "common/args.h"
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

int lmp_cmd_mkmodel(int argc, char **argv) {
        struct lmp_mkmodel_opts o = { .seed = 42 };
        struct progress_state ps = { false };
        const char *out = NULL, *shape = NULL, *type = NULL;
        const struct lmp_opt opts[] = {
                { "dry-run", 0, LMP_OPT_FLAG, &o.dry_run },
                { "shape", 0, LMP_OPT_STRING, &shape },
                { "type", 0, LMP_OPT_STRING, &type },
                { "vocab", 0, LMP_OPT_STRING, &o.vocab_path },
                { "output", 'o', LMP_OPT_STRING, &out },
                { "seed", 0, LMP_OPT_U64, &o.seed },
                { "threads", 't', LMP_OPT_INT, &o.nthreads, 1, 64 },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpool mkmodel", argc, argv, opts, usage);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (optind < argc)
                return lmp_args_unexpected(&a, argv[optind]);
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

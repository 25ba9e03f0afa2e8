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
        enum { O_DRY_RUN = 256, O_SHAPE, O_TYPE, O_VOCAB, O_SEED };
        static const struct option longopts[] = {
                { "dry-run", no_argument, NULL, O_DRY_RUN },
                { "shape", required_argument, NULL, O_SHAPE },
                { "type", required_argument, NULL, O_TYPE },
                { "vocab", required_argument, NULL, O_VOCAB },
                { "output", required_argument, NULL, 'o' },
                { "seed", required_argument, NULL, O_SEED },
                { "threads", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct lmp_args a;
        int c;
        lmp_args_init(&a, "lmpool mkmodel", argc, argv, "o:t:h", longopts);
        while ((c = lmp_args_next(&a)) != -1) {
                switch (c) {
                case 'h':
                        usage(stdout);
                        return 0;
                case O_DRY_RUN: o.dry_run = true; break;
                case O_SHAPE: shape = optarg; break;
                case O_TYPE: type = optarg; break;
                case O_VOCAB: o.vocab_path = optarg; break;
                case 'o': out = optarg; break;
                case O_SEED:
                        if (lmp_args_u64(&a, &o.seed) < 0)
                                return 2;
                        break;
                case 't':
                        if (lmp_args_int(&a, 1, 64, &o.nthreads) < 0)
                                return 2;
                        break;
                default:
                        return 2;
                }
        }
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

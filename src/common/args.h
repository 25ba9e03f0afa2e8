/* Command-line options, read the same way by every program of the project
 * (lmpool's subcommands, lmpoold, lmpool-http): getopt_long(), so that a
 * long option's value may be written `--name=value` or `--name value`,
 * options and operands may come in any order and `--` ends the options;
 * and one wording for what is wrong, on stderr:
 *
 *   PROG: unknown option '--x'
 *   PROG: ambiguous option '--x'
 *   PROG: option '--x' needs a value
 *   PROG: option '--x' takes no value
 *   PROG: bad value 'V' for --x: expected an integer from 0 to 64
 *   PROG: unexpected argument 'V'
 *
 * after which the program exits 2 (LMP_EXIT_USAGE). PROG is what the user
 * typed to get there: "lmpoold", "lmpool run". */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/macros.h"

#define LMP_EXIT_USAGE 2

/* What lmp_args_next() returns after it printed what is wrong. */
#define LMP_ARGS_ERROR '?'

struct lmp_args {
        const char *prog;
        int argc;
        char **argv;
        const struct option *longopts;
        char optstring[48];     /* ':' and the short options */
        bool started;
        int longindex;          /* of the option last returned; -1: a short one */
        int opt;                /* the option last returned */
};

/* shortopts as for getopt(), without a leading ':' or '+'. */
void lmp_args_init(struct lmp_args *a, const char *prog, int argc, char **argv, const char *shortopts,
                   const struct option *longopts);

/* The next option's value (the `val` of its struct option, or its short
 * character), with optarg set for one that takes a value; -1 when the
 * options are done (the operands are then argv[optind..argc-1]); or
 * LMP_ARGS_ERROR after printing one of the lines above. */
int lmp_args_next(struct lmp_args *a);

/* The option last returned as the user wrote it ("--threads" or "-t"),
 * into buf. */
const char *lmp_args_name(const struct lmp_args *a, char *buf, size_t cap);

/* Prints "PROG: bad value 'OPTARG' for --x: WHY". Returns LMP_EXIT_USAGE. */
int lmp_args_bad_value(const struct lmp_args *a, const char *why_fmt, ...) LMP_PRINTF(2, 3);

/* Prints "PROG: unexpected argument 'ARG'". Returns LMP_EXIT_USAGE. */
int lmp_args_unexpected(const struct lmp_args *a, const char *arg);

/* After the options, for a command of at most one operand: *ret gets it
 * (NULL when there is none). Returns 0, or LMP_EXIT_USAGE after printing
 * that a second one is unexpected. */
int lmp_args_operand(const struct lmp_args *a, const char **ret);

/* optarg as a decimal integer from lo to hi, or as a finite number from lo
 * to hi. On anything else they print a bad-value line and return -EINVAL,
 * leaving *ret untouched. */
int lmp_args_long(const struct lmp_args *a, long long lo, long long hi, long long *ret);
int lmp_args_int(const struct lmp_args *a, int lo, int hi, int *ret);
int lmp_args_u64(const struct lmp_args *a, uint64_t *ret);
int lmp_args_double(const struct lmp_args *a, double lo, double hi, double *ret);

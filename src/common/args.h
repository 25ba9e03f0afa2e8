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
 * typed to get there: "lmpoold", "lmpool run".
 *
 * A program describes its options as a table of struct lmp_opt rows (name,
 * short letter, kind, where the value goes, range) and reads them all with
 * lmp_args_parse(); lmp_args_init() and lmp_args_next() are the loop
 * underneath, for a program whose options are not a table's. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/macros.h"

#define LMP_EXIT_USAGE 2

/* What lmp_args_next() returns after it printed what is wrong. */
#define LMP_ARGS_ERROR '?'

#define LMP_ARGS_MAX_OPTS 32

struct lmp_args {
        const char *prog;
        int argc;
        char **argv;
        const struct option *longopts;
        char optstring[48];     /* ':' and the short options */
        bool started;
        int longindex;          /* of the option last returned; -1: a short one */
        int opt;                /* the option last returned */
        struct option table[LMP_ARGS_MAX_OPTS + 1]; /* built by lmp_args_parse() */
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

/* One option of a table read by lmp_args_parse(). */
enum lmp_opt_kind {
        LMP_OPT_FLAG,   /* bool *ret becomes true; takes no value */
        LMP_OPT_STRING, /* const char **ret gets the value */
        LMP_OPT_INT,    /* int *ret: an integer from lo to hi */
        LMP_OPT_LONG,   /* long long *ret: an integer from lo to hi */
        LMP_OPT_U64,    /* uint64_t *ret: any integer from 0 to UINT64_MAX */
        LMP_OPT_DOUBLE, /* double *ret: a finite number from lo to hi */
        LMP_OPT_CALL,   /* call(a, row) reads it (optarg set when it takes a value) */
        LMP_OPT_CALL_NOARG, /* the same, for an option that takes no value */
        LMP_OPT_HELP,   /* prints usage to stdout (bool *ret, if any, becomes true); stops with status 0 */
};

struct lmp_opt {
        const char *name;       /* the long name, without "--" */
        int letter;             /* the short option ('n' for -n), or 0 */
        enum lmp_opt_kind kind;
        void *ret;
        double lo, hi;          /* INT, LONG, DOUBLE (exact for integers up to 2^53) */
        bool *seen;             /* when not NULL: becomes true when the option is given */
        /* CALL: reads the option (this row: its ret, lo and hi), and
         * returns LMP_ARGS_GO to go on, or the status to exit with (after
         * printing why, e.g. with lmp_args_bad_value()). */
        int (*call)(struct lmp_args *a, const struct lmp_opt *o);
};

/* What lmp_args_parse() and an option's call return to go on. */
#define LMP_ARGS_GO (-1)

/* Reads the options of argv by the table opts (ended by a row with no
 * name), with usage() printing the program's usage for LMP_OPT_HELP.
 * Returns LMP_ARGS_GO when they are all read (the operands are then
 * argv[optind..argc-1]), or the status the program should exit with now:
 * 0 after --help, LMP_EXIT_USAGE after printing what is wrong, or what an
 * option's call returned. */
int lmp_args_parse(struct lmp_args *a, const char *prog, int argc, char **argv, const struct lmp_opt *opts,
                   void (*usage)(FILE *f));

/* lmp_args_parse() for a command of at most one operand, which *ret gets
 * (NULL when there is none); a second one is a mistake. */
int lmp_args_parse_operand(const char *prog, int argc, char **argv, const struct lmp_opt *opts,
                           void (*usage)(FILE *f), const char **ret);

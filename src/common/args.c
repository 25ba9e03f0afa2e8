/* Command-line options through getopt_long(), with the project's wording
 * for mistakes (args.h). getopt's own messages are turned off: they differ
 * between short and long options, follow the locale and name argv[0],
 * which for a subcommand is not what the user typed. */
#include "common/args.h"

#include <errno.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_args_init(struct lmp_args *a, const char *prog, int argc, char **argv, const char *shortopts,
                   const struct option *longopts) {
        *a = (struct lmp_args){ .prog = prog, .argc = argc, .argv = argv, .longopts = longopts, .longindex = -1 };
        /* Leading ':' : a missing value comes back as ':', not '?'. A
         * table longer than the buffer is a programming error that the
         * tests of every command would show at once. */
        snprintf(a->optstring, sizeof(a->optstring), ":%s", shortopts ? shortopts : "");
}

/* The long options that name (up to '=' or its end) is a prefix of. */
static int n_prefix_matches(const struct option *o, const char *name, size_t len, const struct option **ret) {
        int n = 0;
        for (; o && o->name; o++) {
                if (strncmp(o->name, name, len) != 0)
                        continue;
                if (strlen(o->name) == len) { /* exact: never ambiguous */
                        *ret = o;
                        return 1;
                }
                *ret = o;
                n++;
        }
        return n;
}

/* Was the option getopt just refused a long one? getopt advances optind
 * past a long option it refuses, so argv[optind - 1] is it. A short one is
 * refused by its character (optopt), at the end of its element or in the
 * middle of one ("-xq"), which is then argv[optind]. */
static bool refused_long(const struct lmp_args *a, const char **ret_name, size_t *ret_len) {
        if (optind < 1 || optind > a->argc)
                return false;
        const char *el = a->argv[optind - 1];
        if (strncmp(el, "--", 2) != 0 || !el[2])
                return false;
        const char *name = el + 2;
        size_t len = strcspn(name, "=");
        if (optopt != 0) {
                /* A known long option with a value problem: its val is optopt. */
                const struct option *o = NULL;
                if (n_prefix_matches(a->longopts, name, len, &o) != 1 || o->val != optopt)
                        return false;
        }
        *ret_name = name;
        *ret_len = len;
        return true;
}

static int refused(struct lmp_args *a, int c) {
        const char *name;
        size_t len;
        if (refused_long(a, &name, &len)) {
                const struct option *o = NULL;
                if (c == ':')
                        fprintf(stderr, "%s: option '--%.*s' needs a value\n", a->prog, (int)len, name);
                else if (optopt != 0)
                        fprintf(stderr, "%s: option '--%.*s' takes no value\n", a->prog, (int)len, name);
                else if (n_prefix_matches(a->longopts, name, len, &o) > 1)
                        fprintf(stderr, "%s: ambiguous option '--%.*s'\n", a->prog, (int)len, name);
                else
                        fprintf(stderr, "%s: unknown option '--%.*s'\n", a->prog, (int)len, name);
        } else if (c == ':') {
                fprintf(stderr, "%s: option '-%c' needs a value\n", a->prog, optopt);
        } else if (optopt > 32 && optopt < 127) {
                fprintf(stderr, "%s: unknown option '-%c'\n", a->prog, optopt);
        } else {
                fprintf(stderr, "%s: unknown option '%s'\n", a->prog, a->argv[optind - 1]);
        }
        return LMP_ARGS_ERROR;
}

int lmp_args_next(struct lmp_args *a) {
        if (!a->started) {
                optind = 0; /* glibc: start over, whatever an earlier parse left */
                opterr = 0;
                a->started = true;
        }
        a->longindex = -1;
        optopt = 0;
        int c = getopt_long(a->argc, a->argv, a->optstring, a->longopts, &a->longindex);
        if (c == '?' || c == ':')
                return refused(a, c);
        a->opt = c;
        return c;
}

const char *lmp_args_name(const struct lmp_args *a, char *buf, size_t cap) {
        if (a->longindex >= 0)
                snprintf(buf, cap, "--%s", a->longopts[a->longindex].name);
        else
                snprintf(buf, cap, "-%c", a->opt);
        return buf;
}

int lmp_args_bad_value(const struct lmp_args *a, const char *why_fmt, ...) {
        char name[64], why[256];
        va_list ap;
        va_start(ap, why_fmt);
        vsnprintf(why, sizeof(why), why_fmt, ap);
        va_end(ap);
        fprintf(stderr, "%s: bad value '%s' for %s: %s\n", a->prog, optarg ? optarg : "",
                lmp_args_name(a, name, sizeof(name)), why);
        return LMP_EXIT_USAGE;
}

int lmp_args_unexpected(const struct lmp_args *a, const char *arg) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", a->prog, arg);
        return LMP_EXIT_USAGE;
}

int lmp_args_operand(const struct lmp_args *a, const char **ret) {
        *ret = optind < a->argc ? a->argv[optind] : NULL;
        if (optind + 1 < a->argc)
                return lmp_args_unexpected(a, a->argv[optind + 1]);
        return 0;
}

int lmp_args_long(const struct lmp_args *a, long long lo, long long hi, long long *ret) {
        const char *s = optarg ? optarg : "";
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi) {
                lmp_args_bad_value(a, "expected an integer from %lld to %lld", lo, hi);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int lmp_args_int(const struct lmp_args *a, int lo, int hi, int *ret) {
        long long v;
        if (lmp_args_long(a, lo, hi, &v) < 0)
                return -EINVAL;
        *ret = (int)v;
        return 0;
}

int lmp_args_u64(const struct lmp_args *a, uint64_t *ret) {
        const char *s = optarg ? optarg : "";
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || !isdigit((unsigned char)*s)) {
                lmp_args_bad_value(a, "expected an integer from 0 to %llu", (unsigned long long)UINT64_MAX);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int lmp_args_double(const struct lmp_args *a, double lo, double hi, double *ret) {
        const char *s = optarg ? optarg : "";
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
                lmp_args_bad_value(a, "expected a number from %g to %g", lo, hi);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

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
        /* Field by field: a->table may hold longopts (lmp_args_parse()). */
        a->prog = prog;
        a->argc = argc;
        a->argv = argv;
        a->longopts = longopts;
        a->started = false;
        a->longindex = -1;
        a->opt = 0;
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

/* One option of the table, once getopt has returned it. */
static int take(struct lmp_args *a, const struct lmp_opt *o, void (*usage)(FILE *f)) {
        long long v;
        int r = LMP_ARGS_GO;
        switch (o->kind) {
        case LMP_OPT_FLAG:
                *(bool *)o->ret = true;
                break;
        case LMP_OPT_STRING:
                *(const char **)o->ret = optarg;
                break;
        case LMP_OPT_INT:
                if (lmp_args_long(a, (long long)o->lo, (long long)o->hi, &v) < 0)
                        return LMP_EXIT_USAGE;
                *(int *)o->ret = (int)v;
                break;
        case LMP_OPT_LONG:
                if (lmp_args_long(a, (long long)o->lo, (long long)o->hi, o->ret) < 0)
                        return LMP_EXIT_USAGE;
                break;
        case LMP_OPT_U64:
                if (lmp_args_u64(a, o->ret) < 0)
                        return LMP_EXIT_USAGE;
                break;
        case LMP_OPT_DOUBLE:
                if (lmp_args_double(a, o->lo, o->hi, o->ret) < 0)
                        return LMP_EXIT_USAGE;
                break;
        case LMP_OPT_CALL:
        case LMP_OPT_CALL_NOARG:
                r = o->call(a, o);
                break;
        case LMP_OPT_HELP:
                if (o->ret)
                        *(bool *)o->ret = true;
                if (usage)
                        usage(stdout);
                return 0;
        }
        if (r == LMP_ARGS_GO && o->seen)
                *o->seen = true;
        return r;
}

int lmp_args_parse(struct lmp_args *a, const char *prog, int argc, char **argv, const struct lmp_opt *opts,
                   void (*usage)(FILE *f)) {
        char shortopts[48] = "";
        size_t n = 0, len = 0;
        /* getopt's table from ours: a row's val is its index + 256, or its
         * letter when it has one. A table too long for the buffers is a
         * programming error that every test of the program would show. */
        for (; opts[n].name; n++) {
                const struct lmp_opt *o = &opts[n];
                bool value = !(o->kind == LMP_OPT_FLAG || o->kind == LMP_OPT_CALL_NOARG || o->kind == LMP_OPT_HELP);
                if (n == LMP_ARGS_MAX_OPTS)
                        abort();
                a->table[n] = (struct option){ o->name, value ? required_argument : no_argument, NULL,
                                               o->letter ? o->letter : 256 + (int)n };
                if (o->letter && len + 3 < sizeof(shortopts)) {
                        shortopts[len++] = (char)o->letter;
                        if (value)
                                shortopts[len++] = ':';
                        shortopts[len] = '\0';
                }
        }
        a->table[n] = (struct option){ 0 };
        lmp_args_init(a, prog, argc, argv, shortopts, a->table);
        int c;
        while ((c = lmp_args_next(a)) != -1) {
                if (c == LMP_ARGS_ERROR)
                        return LMP_EXIT_USAGE;
                const struct lmp_opt *o = NULL;
                if (c >= 256 && c < 256 + (int)n)
                        o = &opts[c - 256];
                for (size_t i = 0; !o && i < n; i++)
                        if (opts[i].letter == c)
                                o = &opts[i];
                if (!o)
                        return LMP_EXIT_USAGE;
                int r = take(a, o, usage);
                if (r != LMP_ARGS_GO)
                        return r;
        }
        return LMP_ARGS_GO;
}

int lmp_args_parse_operand(const char *prog, int argc, char **argv, const struct lmp_opt *opts,
                           void (*usage)(FILE *f), const char **ret) {
        struct lmp_args a;
        int r = lmp_args_parse(&a, prog, argc, argv, opts, usage);
        if (r != LMP_ARGS_GO)
                return r;
        if (lmp_args_operand(&a, ret) != 0)
                return LMP_EXIT_USAGE;
        return LMP_ARGS_GO;
}

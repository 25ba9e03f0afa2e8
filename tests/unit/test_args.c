/* src/common/args.h's option tables: every kind of row, a long option's
 * value after '=' or as the next argument, short options with and without
 * a value, --help, an option's own reader, the operands left after the
 * options, and the exit status of each kind of mistake. */
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "../check.h"

struct vals {
        bool flag, help, seen_u;
        const char *str, *operand;
        int i;
        long long l;
        uint64_t u;
        double d;
        int calls;
};

static int count_call(struct lmp_args *a, const struct lmp_opt *o) {
        struct vals *v = o->ret;
        (void)a;
        v->calls++;
        return strcmp(optarg, "stop") == 0 ? 5 : LMP_ARGS_GO;
}

static int helped;

static void usage(FILE *f) {
        (void)f;
        helped++;
}

/* Parses the words (at most 14) into a fresh v; returns what
 * lmp_args_parse_operand() did. */
static int parse(const char *words, struct vals *v) {
        static char buf[256]; /* the values point into it after the call */
        char *argv[16] = { "prog" };
        int argc = 1;
        snprintf(buf, sizeof(buf), "%s", words);
        for (char *w = strtok(buf, " "); w && argc < 15; w = strtok(NULL, " "))
                argv[argc++] = w;
        argv[argc] = NULL;
        *v = (struct vals){ 0 };
        const struct lmp_opt opts[] = {
                { "flag", 'f', LMP_OPT_FLAG, &v->flag },
                { "str", 's', LMP_OPT_STRING, &v->str },
                { "int", 0, LMP_OPT_INT, &v->i, -3, 7 },
                { "long", 'l', LMP_OPT_LONG, &v->l, 0, 9007199254740991LL },
                { "u64", 0, LMP_OPT_U64, &v->u, .seen = &v->seen_u },
                { "double", 0, LMP_OPT_DOUBLE, &v->d, 0, 1 },
                { "call", 0, LMP_OPT_CALL, v, .call = count_call },
                { "help", 'h', LMP_OPT_HELP, &v->help },
                { 0 },
        };
        return lmp_args_parse_operand("prog", argc, argv, opts, usage, &v->operand);
}

int main(void) {
        struct vals v;

        CHECK(parse("", &v) == LMP_ARGS_GO && !v.flag && !v.str && !v.operand, "nothing given");
        CHECK(parse("-f --str=a --int -3 --long=9007199254740991 --u64 18446744073709551615 --double=0.5 op", &v) ==
                      LMP_ARGS_GO, "every kind");
        CHECK(v.flag && strcmp(v.str, "a") == 0 && v.i == -3 && v.l == 9007199254740991LL && v.u == UINT64_MAX &&
                      v.seen_u && v.d == 0.5 && v.operand && strcmp(v.operand, "op") == 0,
              "the values: %d %s %d %lld %llu %d %g %s", v.flag, v.str, v.i, v.l, (unsigned long long)v.u, v.seen_u,
              v.d, v.operand);
        CHECK(parse("op -s b -l7 --str c", &v) == LMP_ARGS_GO && strcmp(v.str, "c") == 0 && v.l == 7 &&
                      strcmp(v.operand, "op") == 0, "operands first, short values, the last one wins");
        CHECK(parse("--fl --st=x", &v) == LMP_ARGS_GO && v.flag && strcmp(v.str, "x") == 0, "unambiguous prefixes");
        CHECK(parse("-- -f", &v) == LMP_ARGS_GO && !v.flag && strcmp(v.operand, "-f") == 0, "-- ends the options");
        CHECK(parse("--call=a --call b", &v) == LMP_ARGS_GO && v.calls == 2, "an option's own reader, twice");
        CHECK(parse("--call=stop --flag", &v) == 5 && v.calls == 1 && !v.flag, "a reader's status stops the parse");
        helped = 0;
        CHECK(parse("--flag -h --bogus", &v) == 0 && v.help && helped == 1, "--help: usage, status 0, at once");
        CHECK(!v.seen_u && parse("--u64=1", &v) == LMP_ARGS_GO && v.seen_u, "seen");

        static const char *const wrong[] = {
                "--bogus", "-x", "--int=8", "--int=-4", "--int=1x", "--int", "--flag=1", "--double=1.5",
                "--double=nan", "--u64=-1", "--long=-1", "a b", "--str",
        };
        for (size_t k = 0; k < sizeof(wrong) / sizeof(*wrong); k++)
                CHECK(parse(wrong[k], &v) == LMP_EXIT_USAGE, "'%s' is a mistake", wrong[k]);
        CHECK(v.i == 0, "a refused value is not stored");

        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        return failures ? 1 : 0;
}

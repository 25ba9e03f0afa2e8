/* `lmpool tokenize` and `lmpool detokenize`: the tokenizer of a model (or
 * of a vocabulary-only GGUF file) from the command line.
 *
 *   lmpool tokenize MODEL_OR_VOCAB [--no-special] [--text T]
 *       prints the ids of T (or of stdin) separated by spaces. Special-token
 *       text such as <|im_start|> is always parsed as the token;
 *       --no-special only leaves out the BOS/EOS the vocabulary adds.
 *   lmpool detokenize MODEL_OR_VOCAB --ids "1 2 3" [--special]
 *       prints the text of the ids (separated by spaces or commas) exactly,
 *       without a trailing newline: the inverse of tokenize, so the
 *       SentencePiece dummy-prefix space is dropped. --special also prints
 *       control tokens (BOS, <|im_end|>, ...). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "client/commands.h"
#include "common/args.h"
#include "common/grow.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

static int open_vocab(const char *cmd, const char *path, struct lmp_vocab **ret) {
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };
        if (lmp_gguf_open(path, &g, &err) < 0) {
                fprintf(stderr, "lmpool %s: %s\n", cmd, err.msg); /* names the file */
                return -1;
        }
        int r = lmp_vocab_load(g, ret, &err);
        lmp_gguf_free(g);
        if (r < 0) {
                fprintf(stderr, "lmpool %s: %s: %s\n", cmd, path, err.msg);
                return -1;
        }
        return 0;
}

static void usage_tokenize(FILE *f) {
        fprintf(f, "usage: lmpool tokenize MODEL_OR_VOCAB [--no-special] [--text T]\n"
                   "Prints the token ids of T (stdin when --text is not given), separated by spaces.\n"
                   "  --no-special   do not add the BOS/EOS tokens the vocabulary asks for\n"
                   "                 (special-token text in the input is parsed either way)\n");
}

int lmp_cmd_tokenize(int argc, char **argv) {
        const char *path = NULL, *text = NULL;
        bool no_special = false;
        const struct lmp_opt opts[] = {
                { "no-special", 0, LMP_OPT_FLAG, &no_special },
                { "text", 0, LMP_OPT_STRING, &text },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool tokenize", argc, argv, opts, usage_tokenize, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!path) {
                usage_tokenize(stderr);
                return 2;
        }

        struct lmp_vocab *v;
        if (open_vocab("tokenize", path, &v) < 0)
                return 1;
        char *owned = NULL;
        size_t len;
        if (text) {
                len = strlen(text);
        } else {
                owned = cli_read_stdin(&len);
                if (!owned) {
                        fprintf(stderr, "lmpool tokenize: reading stdin: %s\n", strerror(errno ? errno : ENOMEM));
                        lmp_vocab_free(v);
                        return 1;
                }
                text = owned;
        }

        size_t n = 0;
        int32_t *ids = NULL;
        int r = lmp_tokenize(v, text, len, !no_special, true, NULL, 0, &n);
        if (r == -ENOSPC) {
                ids = malloc(n * sizeof(*ids));
                r = ids ? lmp_tokenize(v, text, len, !no_special, true, ids, n, &n) : -ENOMEM;
        }
        if (r < 0) {
                fprintf(stderr, "lmpool tokenize: %s\n", strerror(-r));
        } else {
                for (size_t i = 0; i < n; i++)
                        printf(i ? " %d" : "%d", ids[i]);
                putchar('\n');
        }
        free(ids);
        free(owned);
        lmp_vocab_free(v);
        return r < 0 ? 1 : 0;
}

static void usage_detokenize(FILE *f) {
        fprintf(f, "usage: lmpool detokenize MODEL_OR_VOCAB --ids \"ID ID ...\" [--special]\n"
                   "Prints the text of the token ids (separated by spaces or commas), exactly.\n"
                   "  --special      also print control tokens such as BOS or <|im_end|>\n");
}

/* Parses "1 2 3", "1,2,3" or "[1, 2, 3]". */
static int parse_ids(const char *s, const struct lmp_vocab *v, int32_t **ret, size_t *ret_n) {
        size_t n = 0, cap = 0;
        int32_t *ids = NULL;
        for (const char *p = s; *p;) {
                if (strchr(" \t\n,[]", *p)) {
                        p++;
                        continue;
                }
                char *end;
                errno = 0;
                long long x = strtoll(p, &end, 10);
                if (end == p || errno || x < 0 || x >= (long long)lmp_vocab_n_tokens(v)) {
                        fprintf(stderr, "lmpool detokenize: bad token id at \"%.20s\" (the vocabulary has %u tokens)\n",
                                p, lmp_vocab_n_tokens(v));
                        free(ids);
                        return -EINVAL;
                }
                if (lmp_grow(&ids, &cap, n + 1, sizeof(*ids), 16) < 0) {
                        free(ids);
                        return -ENOMEM;
                }
                ids[n++] = (int32_t)x;
                p = end;
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

int lmp_cmd_detokenize(int argc, char **argv) {
        const char *path = NULL, *idstr = NULL;
        unsigned flags = LMP_DETOK_STRIP_PREFIX;
        bool special = false;
        const struct lmp_opt opts[] = {
                { "special", 0, LMP_OPT_FLAG, &special },
                { "ids", 0, LMP_OPT_STRING, &idstr },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool detokenize", argc, argv, opts, usage_detokenize, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (special)
                flags |= LMP_DETOK_SPECIAL;
        if (!path || !idstr) {
                usage_detokenize(stderr);
                return 2;
        }

        struct lmp_vocab *v;
        if (open_vocab("detokenize", path, &v) < 0)
                return 1;
        int32_t *ids = NULL;
        size_t n = 0, len = 0;
        char *text = NULL;
        int r = parse_ids(idstr, v, &ids, &n);
        if (r == 0) {
                r = lmp_detokenize(v, ids, n, flags, NULL, 0, &len);
                if (r == -ENOSPC) {
                        text = malloc(len);
                        r = text ? lmp_detokenize(v, ids, n, flags, text, len, &len) : -ENOMEM;
                }
                if (r == 0 && len && fwrite(text, 1, len, stdout) != len)
                        r = -EIO;
                if (r < 0)
                        fprintf(stderr, "lmpool detokenize: %s\n", strerror(-r));
        }
        free(text);
        free(ids);
        lmp_vocab_free(v);
        return r < 0 ? 1 : 0;
}

/* lmpool: the project's command-line tool. Each subcommand is one entry of
 * the table below; this file only dispatches. */
#include <stdio.h>
#include <string.h>

#include "client/commands.h"
#include "common/macros.h"

static const struct lmp_command commands[] = {
        { "gguf", lmp_cmd_gguf, "print a GGUF file's metadata and tensors" },
        { "quantize", lmp_cmd_quantize, "convert a model's weights to a quantized file type" },
        { "mkmodel", lmp_cmd_mkmodel, "write a random-weight model in a real model's shape" },
        { "tokenize", lmp_cmd_tokenize, "print the token ids of a text" },
        { "detokenize", lmp_cmd_detokenize, "print the text of token ids" },
        { "chat-template", lmp_cmd_chat_template, "render a conversation with a model's chat template" },
        { "logits", lmp_cmd_logits, "evaluate token ids as one batch and print logits as JSON lines" },
        { "run", lmp_cmd_run, "generate from a prompt and print tokens/s" },
        { "bench", lmp_cmd_bench, "measure prompt and generation speed (llama-bench's table)" },
        { "generate", lmp_cmd_generate, "generate text with lmpoold (streams to stdout)" },
        { "chat", lmp_cmd_chat, "chat with a model served by lmpoold" },
        { "embed", lmp_cmd_embed, "embed texts with an embedding model (a file, or lmpoold's)" },
        { "image-embed", lmp_cmd_image_embed, "encode an image with a vision encoder and print its embeddings" },
        { "models", lmp_cmd_models, "list lmpoold's models" },
        { "stats", lmp_cmd_stats, "show lmpoold's counters and workers" },
        { "health", lmp_cmd_health, "check that lmpoold is serving (exit 0 when ok)" },
        { "keygen", lmp_cmd_keygen, "write a CURVE key pair for lmpoold's TCP endpoint" },
};

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool COMMAND [ARGS...]\n\ncommands:\n");
        for (size_t i = 0; i < LMP_ARRAY_SIZE(commands); i++)
                fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\n'lmpool COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("lmpool %s\n", LMPOOL_VERSION);
                return 0;
        }
        for (size_t i = 0; i < LMP_ARRAY_SIZE(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "lmpool: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
}

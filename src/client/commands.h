/* The lmpool CLI's subcommands. Each lives in its own cmd_*.c file and has
 * the signature of main(): argv[0] is the subcommand's name. They return a
 * process exit code (0 ok, 1 failure, 2 usage error). */
#pragma once

struct lmp_command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};

int lmp_cmd_gguf(int argc, char **argv);
int lmp_cmd_quantize(int argc, char **argv);
int lmp_cmd_mkmodel(int argc, char **argv);
int lmp_cmd_tokenize(int argc, char **argv);
int lmp_cmd_detokenize(int argc, char **argv);
int lmp_cmd_chat_template(int argc, char **argv);
int lmp_cmd_logits(int argc, char **argv);
int lmp_cmd_run(int argc, char **argv);
int lmp_cmd_bench(int argc, char **argv);
int lmp_cmd_bench_server(int argc, char **argv); /* lmpool bench --server */
int lmp_cmd_generate(int argc, char **argv);
int lmp_cmd_chat(int argc, char **argv);
int lmp_cmd_models(int argc, char **argv);
int lmp_cmd_stats(int argc, char **argv);
int lmp_cmd_health(int argc, char **argv);
int lmp_cmd_keygen(int argc, char **argv);
int lmp_cmd_embed(int argc, char **argv);
int lmp_cmd_image_embed(int argc, char **argv);

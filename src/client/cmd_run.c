/* `lmpool run MODEL (--prompt TEXT | --ids "1 2 3") [-n N] [--temp T]
 * [--top-k K] [--top-p P] [--seed S] [--threads T] [--ctx N] [--ignore-eos]
 * [--print-ids] [--json | --json-schema FILE]`: evaluates the prompt as batches, then generates up to N
 * tokens one at a time, streaming them to stdout as they come (text through
 * the model's own vocabulary; ids with --print-ids, or when the file has no
 * vocabulary), and prints the prompt and generation speeds (tokens/s) to
 * stderr. A text prompt is tokenized with the vocabulary's BOS and special
 * tokens written in it parsed, as llama.cpp does. Temperature 0 (the
 * default) is greedy; otherwise the sampler draws with the given top-k /
 * top-p and seed (default seed: from the clock, printed so that a run can be
 * repeated). Generation stops early at an end-of-generation token (unless
 * --ignore-eos) or when the context is full. With --json (any JSON object)
 * or --json-schema FILE, the sampler may only pick tokens that continue a
 * valid document (sampler/json_grammar.h): stdout gets the document alone,
 * generation stops when it is complete, and a document that max-tokens or
 * the context cut short is reported on stderr with status 1, never passed
 * off as complete. With --mmproj MMPROJ --image FILE, the prompt carries
 * an image (client/cli_vision.h: <__media__> marks its place, else it goes
 * first), encoded by the vision encoder in MMPROJ before the prompt is
 * evaluated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/cli_model.h"
#include "client/cli_vision.h"
#include "client/commands.h"
#include "common/args.h"
#include "common/clock.h"
#include "common/readfile.h"
#include "sampler/json_tokens.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

#define PROMPT_BATCH 512

static void usage(FILE *f) {
        fprintf(f,
                "usage: lmpool run MODEL (--prompt TEXT | --ids \"1 2 3\") [-n N] [--temp T] [--top-k K] [--top-p P]\n"
                "                  [--seed S] [--threads T] [--ctx N] [--ignore-eos] [--print-ids]\n"
                "                  [--json | --json-schema FILE] [--mmproj MMPROJ --image FILE]\n"
                "Generates from a prompt; prints prompt and generation tokens/s.\n"
                "  --print-ids            print token ids instead of text\n"
                "  -n, --max-tokens N     tokens to generate (default 64)\n"
                "  --temp T               temperature; 0 (the default) is greedy\n"
                "  --top-k K              keep the K most likely tokens (0: all)\n"
                "  --top-p P              keep the smallest set with probability >= P (1: all)\n"
                "  --seed S               sampler seed (default: from the clock)\n"
                "  --threads T            worker threads (default: one per CPU)\n"
                "  --ctx N                context length (default: the model's)\n"
                "  --json                 generate one JSON object, and print only it\n"
                "  --json-schema FILE     generate one JSON document valid for the schema in FILE\n"
                "                         (the subset of docs/protocol.md), and print only it\n"
                "  --mmproj MMPROJ        the vision encoder for --image (a clip GGUF file)\n"
                "  --image FILE           a PNG, JPEG or WebP image for the prompt, where " LMP_MEDIA_MARKER "\n"
                "                         marks it (else first)\n");
}

int lmp_cmd_run(int argc, char **argv) {
        const char *path = NULL, *ids_arg = NULL, *prompt = NULL, *schema_path = NULL;
        const char *mmproj = NULL, *image = NULL;
        long long n_gen = 64, threads = 0, n_ctx = 0, top_k = 0;
        double temp = 0.0, top_p = 1.0;
        uint64_t seed = 0;
        bool ignore_eos = false, have_seed = false, print_ids = false, json = false;
        const struct lmp_opt opts[] = {
                { "prompt", 0, LMP_OPT_STRING, &prompt },
                { "ids", 0, LMP_OPT_STRING, &ids_arg },
                { "max-tokens", 'n', LMP_OPT_LONG, &n_gen, 0, 1 << 24 },
                { "threads", 0, LMP_OPT_LONG, &threads, 0, LMP_THREADPOOL_MAX },
                { "ctx", 0, LMP_OPT_LONG, &n_ctx, 0, 1 << 24 },
                { "temp", 0, LMP_OPT_DOUBLE, &temp, 0.0, 100.0 },
                { "top-p", 0, LMP_OPT_DOUBLE, &top_p, 0.0, 1.0 },
                { "top-k", 0, LMP_OPT_LONG, &top_k, 0, INT32_MAX },
                { "seed", 0, LMP_OPT_U64, &seed, .seen = &have_seed },
                { "ignore-eos", 0, LMP_OPT_FLAG, &ignore_eos },
                { "print-ids", 0, LMP_OPT_FLAG, &print_ids },
                { "json", 0, LMP_OPT_FLAG, &json },
                { "json-schema", 0, LMP_OPT_STRING, &schema_path },
                { "mmproj", 0, LMP_OPT_STRING, &mmproj },
                { "image", 0, LMP_OPT_STRING, &image },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool run", argc, argv, opts, usage, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!path || !ids_arg == !prompt) {
                if (path)
                        fprintf(stderr, "lmpool run: give one of --prompt and --ids\n");
                usage(stderr);
                return 2;
        }
        if (!mmproj != !image || (image && !prompt)) {
                fprintf(stderr, "lmpool run: an image needs --mmproj, --image and --prompt\n");
                return 2;
        }
        if (json && schema_path) {
                fprintf(stderr, "lmpool run: give one of --json and --json-schema\n");
                return 2;
        }
        if ((json || schema_path) && (print_ids || ignore_eos)) {
                fprintf(stderr, "lmpool run: --json and --json-schema print the document: not with --print-ids "
                        "or --ignore-eos\n");
                return 2;
        }
        int32_t *ids = NULL;
        int n_prompt = 0;
        if (ids_arg && (n_prompt = lmp_cli_parse_ids("run", ids_arg, &ids)) < 0)
                return 2;

        int rc = 1;
        struct cli_model cm = { 0 };
        struct lmp_batch_entry *batch = NULL;
        float *logits = NULL;
        struct lmp_sampler *smp = NULL;
        struct lmp_vocab *vocab = NULL;
        char *piece = NULL, *schema = NULL;
        struct lmp_error err = { 0 };
        struct lmp_json_grammar *grammar = NULL;
        struct lmp_json_tokens *jtokens = NULL;
        struct lmp_json_allow jallow = { 0 };
        struct cli_mm_prompt mp = { 0 };
        if (schema_path) {
                size_t len = 0;
                int r = lmp_read_file(schema_path, &schema, &len);
                if (r < 0) {
                        fprintf(stderr, "lmpool run: %s: %s\n", schema_path, lmp_strerror_name(r));
                        goto out;
                }
                if (lmp_json_grammar_new_schema(schema, len, &grammar, &err) < 0) {
                        fprintf(stderr, "lmpool run: %s: %s\n", schema_path, err.msg);
                        goto out;
                }
        } else if (json && lmp_json_grammar_new_object(&grammar, &err) < 0) {
                fprintf(stderr, "lmpool run: %s\n", err.msg);
                goto out;
        }
        if (lmp_cli_model_open("run", path, (int)threads, (uint32_t)n_ctx, PROMPT_BATCH, &cm) < 0)
                goto out;
        uint32_t n_vocab = cm.model->hp.n_vocab;
        uint32_t ctx_len = lmp_ctx_n_ctx(cm.ctx);

        /* The vocabulary: needed for a text prompt and for text output. */
        if (prompt || !print_ids) {
                if (lmp_vocab_load(cm.gguf, &vocab, &err) < 0) {
                        if (prompt) {
                                fprintf(stderr, "lmpool run: %s: %s\n", path, err.msg);
                                goto out;
                        }
                        fprintf(stderr, "lmpool run: %s: no usable vocabulary (%s): printing ids\n",
                                path, err.msg);
                        print_ids = true;
                } else if (lmp_vocab_n_tokens(vocab) != n_vocab) {
                        fprintf(stderr, "lmpool run: %s: vocabulary of %u tokens, model of %u\n", path,
                                lmp_vocab_n_tokens(vocab), n_vocab);
                        goto out;
                }
        }
        if (grammar) {
                if (!vocab) {
                        fprintf(stderr, "lmpool run: %s: JSON output needs the model's vocabulary\n", path);
                        goto out;
                }
                if (lmp_json_tokens_new(vocab, &jtokens, &err) < 0) {
                        fprintf(stderr, "lmpool run: %s: %s\n", path, err.msg);
                        goto out;
                }
                lmp_json_allow_init(&jallow, jtokens, grammar);
        }
        if (image) {
                if (lmp_cli_mm_prompt("run", &cm, vocab, mmproj, image, prompt, &mp) < 0)
                        goto out;
                n_prompt = mp.n;
        } else if (prompt) {
                size_t len = strlen(prompt), need = 0;
                int r = lmp_tokenize(vocab, prompt, len, true, true, NULL, 0, &need);
                if (r < 0 && r != -ENOSPC) {
                        fprintf(stderr, "lmpool run: cannot tokenize the prompt (%s)\n", lmp_strerror_name(r));
                        goto out;
                }
                if (need == 0 || need > INT32_MAX || !(ids = malloc(need * sizeof(*ids))) ||
                    lmp_tokenize(vocab, prompt, len, true, true, ids, need, &need) < 0) {
                        fprintf(stderr, "lmpool run: the prompt gives no tokens\n");
                        goto out;
                }
                n_prompt = (int)need;
        }
        uint32_t eos = UINT32_MAX;
        if (!vocab && lmp_gguf_get_u32(cm.gguf, "tokenizer.ggml.eos_token_id", &eos) < 0)
                eos = UINT32_MAX;
        struct lmp_detok detok;
        size_t piece_cap = 0;
        if (vocab) {
                lmp_detok_init(&detok, vocab, 0);
                piece_cap = lmp_vocab_max_piece(vocab) + 4;
                if (!(piece = malloc(piece_cap))) {
                        fprintf(stderr, "lmpool run: out of memory\n");
                        goto out;
                }
        }
        if (!have_seed) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                seed = (unsigned long long)ts.tv_sec * 1000000007ull + (unsigned long long)ts.tv_nsec;
        }
        struct lmp_sampler_params sp;
        lmp_sampler_params_default(&sp);
        sp.temperature = (float)temp;
        sp.top_k = (int32_t)top_k;
        sp.top_p = (float)top_p;
        sp.seed = seed;
        if (lmp_sampler_new((int32_t)n_vocab, &sp, &smp, &err) < 0) {
                fprintf(stderr, "lmpool run: sampler: %s\n", err.msg);
                goto out;
        }
        batch = calloc(PROMPT_BATCH, sizeof(*batch));
        logits = malloc((size_t)n_vocab * sizeof(float));
        if (!batch || !logits) {
                fprintf(stderr, "lmpool run: out of memory\n");
                goto out;
        }
        if ((uint32_t)n_prompt >= ctx_len) {
                fprintf(stderr, "lmpool run: prompt of %d tokens does not fit the context (%u)\n",
                        n_prompt, ctx_len);
                goto out;
        }

        const int32_t *prompt_ids = image ? mp.ids : ids;
        for (int i = 0; i < n_prompt; i++)
                if (prompt_ids[i] >= 0 && (uint32_t)prompt_ids[i] < n_vocab)
                        lmp_sampler_accept(smp, prompt_ids[i]);
        double t0 = lmp_clock_s();
        for (int p0 = 0; p0 < n_prompt; p0 += PROMPT_BATCH) {
                int nb = LMP_MIN(PROMPT_BATCH, n_prompt - p0);
                for (int i = 0; i < nb; i++)
                        batch[i] = image ? lmp_cli_mm_entry(&mp, p0 + i, p0 + i == n_prompt - 1)
                                         : (struct lmp_batch_entry){
                                                   .token = ids[p0 + i], .pos = p0 + i, .seq = 0,
                                                   .logits = p0 + i == n_prompt - 1,
                                           };
                if (lmp_ctx_decode(cm.ctx, batch, (uint32_t)nb, logits, &err) < 0) {
                        fprintf(stderr, "lmpool run: %s: %s\n", path, err.msg);
                        goto out;
                }
        }
        double t1 = lmp_clock_s();

        long n_done = 0;
        const char *stop = "length";
        for (int32_t pos = n_prompt; n_done < n_gen; pos++) {
                int32_t tok = grammar ? lmp_sampler_sample_allowed(smp, logits, lmp_json_allow, &jallow)
                                      : lmp_sampler_sample(smp, logits);
                if (tok < 0) {
                        fprintf(stderr, "\nlmpool run: no token can be sampled%s\n",
                                grammar ? " that continues the JSON document" : "");
                        goto out;
                }
                lmp_sampler_accept(smp, tok);
                bool end = vocab ? lmp_vocab_is_eog(vocab, tok) : (uint32_t)tok == eos;
                if (grammar) {
                        lmp_json_allow_advance(&jallow, tok);   /* allowed: cannot fail */
                        if (end) {
                                n_done++;
                                stop = "end of sequence";
                                break;          /* the end token's text is not part of the document */
                        }
                }
                size_t np = 0;
                if (print_ids)
                        printf(n_done ? " %d" : "%d", tok);
                else if (lmp_detok_push(&detok, tok, piece, piece_cap, &np) == 0)
                        fwrite(piece, 1, np, stdout);
                fflush(stdout);
                n_done++;
                if (end && !ignore_eos) {
                        stop = "end of sequence";
                        break;
                }
                if (grammar && lmp_json_state_closed(&jallow.state)) {
                        stop = "end of the JSON document";
                        break;
                }
                if (n_done == n_gen)
                        break;
                if ((uint32_t)pos >= ctx_len) {
                        stop = "context full";
                        break;
                }
                /* after an image, the rotary positions run behind the KV ones */
                int32_t t = image ? mp.next_pos + (pos - n_prompt) : pos;
                int32_t rope_pos[LMP_ROPE_AXES] = { t, t, t };
                struct lmp_batch_entry e = { .token = tok, .pos = pos, .seq = 0, .logits = true,
                                             .rope_pos = image ? rope_pos : NULL };
                if (lmp_ctx_decode(cm.ctx, &e, 1, logits, &err) < 0) {
                        fprintf(stderr, "\nlmpool run: %s: %s\n", path, err.msg);
                        goto out;
                }
        }
        double t2 = lmp_clock_s();
        size_t np = 0;
        if (!print_ids && lmp_detok_flush(&detok, piece, piece_cap, &np) == 0)
                fwrite(piece, 1, np, stdout);
        printf("\n");
        /* The first generated token comes from the prompt's logits; each
         * later one costs one decode step. */
        double gen_s = t2 - t1;
        if (temp > 0.0)
                fprintf(stderr, "seed: %llu\n", (unsigned long long)seed);
        if (image)
                fprintf(stderr, "image: %u tokens encoded in %.3f s; first token %.3f s after the encoder's "
                        "start\n", mp.embd.n_tokens, mp.encode_s, mp.encode_s + (t1 - t0));
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tokens/s)\n", n_prompt, t1 - t0,
                n_prompt / (t1 - t0));
        fprintf(stderr, "generation: %ld tokens in %.3f s (%.2f tokens/s), stopped by %s\n", n_done,
                gen_s, n_done > 1 ? (double)(n_done - 1) / gen_s : 0.0, stop);
        rc = 0;
        if (grammar && !lmp_json_state_complete(&jallow.state)) {
                fprintf(stderr, "lmpool run: the JSON document is incomplete: stopped by %s\n", stop);
                rc = 1;
        }
out:
        lmp_cli_mm_prompt_free(&mp);
        free(piece);
        free(schema);
        lmp_json_tokens_free(jtokens);
        lmp_json_grammar_unref(grammar);
        lmp_vocab_free(vocab);
        lmp_sampler_free(smp);
        free(logits);
        free(batch);
        free(ids);
        lmp_cli_model_close(&cm);
        return rc;
}

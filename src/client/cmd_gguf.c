/* `lmpool gguf FILE [--json]`: what is in a GGUF file. The text form is for
 * people (long arrays summarised as `[string × 32000]`, a tensor table and
 * totals per type); the --json form is one object with every value in full,
 * for scripts:
 *   {"version": 3, "alignment": 32, "data_offset": N,
 *    "metadata": {"key": value, ...},
 *    "tensors": [{"name", "type", "shape", "offset", "bytes"}, ...]}
 * where "type" is the GGML type name and "offset" the absolute byte offset
 * of the tensor's data in the file. Keep this format stable. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client/commands.h"
#include "common/args.h"
#include "gguf/gguf.h"

#define ARRAY_INLINE_MAX 8
#define STRING_SHOWN_MAX 120

static void usage(FILE *f) {
        fprintf(f, "usage: lmpool gguf FILE [--json]\n"
                   "Prints a GGUF file's metadata and tensor table (--json: one JSON object).\n");
}

static void print_str(struct lmp_gguf_str s, uint64_t max) {
        uint64_t n = s.len < max ? s.len : max;
        putchar('"');
        for (uint64_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s.ptr[i];
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c == '\n')
                        fputs("\\n", stdout);
                else if (c == '\t')
                        fputs("\\t", stdout);
                else if (c < 0x20 || c == 0x7f)
                        printf("\\x%02x", c);
                else
                        putchar(c);
        }
        putchar('"');
        if (s.len > max)
                printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_scalar(const struct lmp_gguf_value *v) {
        uint64_t u;
        int64_t i;
        double d;
        bool b;
        struct lmp_gguf_str s;

        if (lmp_gguf_value_str(v, &s) == 0)
                print_str(s, STRING_SHOWN_MAX);
        else if (lmp_gguf_value_bool(v, &b) == 0)
                fputs(b ? "true" : "false", stdout);
        else if (lmp_gguf_value_f64(v, &d) == 0)
                printf("%.9g", d);
        else if (lmp_gguf_value_u64(v, &u) == 0 && (v->type == LMP_GGUF_U8 || v->type == LMP_GGUF_U16 ||
                                                     v->type == LMP_GGUF_U32 || v->type == LMP_GGUF_U64))
                printf("%" PRIu64, u);
        else if (lmp_gguf_value_i64(v, &i) == 0)
                printf("%" PRId64, i);
}

static void print_value(const struct lmp_gguf_value *v) {
        struct lmp_gguf_iter it;
        struct lmp_gguf_value e;
        bool first = true;

        if (v->type != LMP_GGUF_ARRAY) {
                print_scalar(v);
                return;
        }
        if (v->n > ARRAY_INLINE_MAX) {
                printf("[%s × %" PRIu64 "]", lmp_gguf_vtype_name(v->elem_type), v->n);
                return;
        }
        putchar('[');
        lmp_gguf_iter_init(&it, v);
        while (lmp_gguf_iter_next(&it, &e)) {
                if (!first)
                        fputs(", ", stdout);
                first = false;
                print_value(&e);
        }
        putchar(']');
}

static void print_text(const struct lmp_gguf *g, const char *path) {
        uint64_t count[LMP_TYPE_COUNT] = { 0 }, bytes[LMP_TYPE_COUNT] = { 0 }, total = 0, params = 0;

        printf("%s: GGUF v%" PRIu32 ", %" PRIu64 " metadata keys, %" PRIu64 " tensors, alignment %" PRIu64
               ", %" PRIu64 " bytes\n\n",
               path, g->version, g->n_kv, g->n_tensors, g->alignment, g->size);
        printf("metadata:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
                printf("  %.*s: ", (int)g->kv[i].key.len, g->kv[i].key.ptr);
                print_value(&g->kv[i].value);
                putchar('\n');
        }
        printf("\ntensors (data section at offset %" PRIu64 "):\n", g->data_offset);
        printf("  %-40s %-8s %-26s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                char shape[128];
                int n = 0;
                uint64_t ne = 1;
                for (uint32_t d = 0; d < t->n_dims; d++) {
                        n += snprintf(shape + n, sizeof(shape) - (size_t)n, "%s%" PRIu64, d ? " x " : "", t->ne[d]);
                        ne *= t->ne[d];
                }
                printf("  %-40.*s %-8s %-26s %12" PRIu64 " %12" PRIu64 "\n", (int)t->name.len, t->name.ptr,
                       lmp_type_name(t->type), shape, g->data_offset + t->offset, t->size);
                count[t->type]++;
                bytes[t->type] += t->size;
                total += t->size;
                params += ne;
        }
        printf("\ntotals:\n");
        for (int t = 0; t < LMP_TYPE_COUNT; t++)
                if (count[t])
                        printf("  %-8s %6" PRIu64 " tensors %14" PRIu64 " bytes (%.1f MiB)\n", lmp_type_name((uint32_t)t),
                               count[t], bytes[t], bytes[t] / 1048576.0);
        printf("  %-8s %6" PRIu64 " tensors %14" PRIu64 " bytes (%.1f MiB), %" PRIu64 " parameters\n", "all",
               g->n_tensors, total, total / 1048576.0, params);
}

static cJSON *json_str(struct lmp_gguf_str s) {
        char *c = lmp_gguf_str_dup(s);
        cJSON *j = c ? cJSON_CreateString(c) : NULL;
        free(c);
        return j;
}

static cJSON *json_value(const struct lmp_gguf_value *v) {
        struct lmp_gguf_iter it;
        struct lmp_gguf_value e;
        struct lmp_gguf_str s;
        uint64_t u;
        int64_t i;
        double d;
        bool b;
        cJSON *arr;

        if (v->type == LMP_GGUF_ARRAY) {
                arr = cJSON_CreateArray();
                if (!arr)
                        return NULL;
                lmp_gguf_iter_init(&it, v);
                while (lmp_gguf_iter_next(&it, &e)) {
                        cJSON *x = json_value(&e);
                        if (!x || !cJSON_AddItemToArray(arr, x)) {
                                cJSON_Delete(x);
                                cJSON_Delete(arr);
                                return NULL;
                        }
                }
                return arr;
        }
        if (lmp_gguf_value_str(v, &s) == 0)
                return json_str(s);
        if (lmp_gguf_value_bool(v, &b) == 0)
                return cJSON_CreateBool(b);
        if (lmp_gguf_value_f64(v, &d) == 0)
                return cJSON_CreateNumber(d);
        if (lmp_gguf_value_i64(v, &i) == 0)
                return cJSON_CreateNumber((double)i);
        if (lmp_gguf_value_u64(v, &u) == 0)
                return cJSON_CreateNumber((double)u);
        return cJSON_CreateNull();
}

static int print_json(const struct lmp_gguf *g) {
        cJSON *root = cJSON_CreateObject(), *meta, *tensors;
        char *out;
        int r = -ENOMEM;

        if (!root)
                return -ENOMEM;
        if (!cJSON_AddNumberToObject(root, "version", g->version) ||
            !cJSON_AddNumberToObject(root, "alignment", (double)g->alignment) ||
            !cJSON_AddNumberToObject(root, "data_offset", (double)g->data_offset) ||
            !(meta = cJSON_AddObjectToObject(root, "metadata")) ||
            !(tensors = cJSON_AddArrayToObject(root, "tensors")))
                goto out;
        for (uint64_t i = 0; i < g->n_kv; i++) {
                char *key = lmp_gguf_str_dup(g->kv[i].key);
                cJSON *v = json_value(&g->kv[i].value);
                bool ok = key && v && cJSON_AddItemToObject(meta, key, v);
                free(key);
                if (!ok) {
                        cJSON_Delete(v);
                        goto out;
                }
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                cJSON *o = cJSON_CreateObject(), *shape;
                if (!o || !cJSON_AddItemToArray(tensors, o)) {
                        cJSON_Delete(o);
                        goto out;
                }
                if (!cJSON_AddItemToObject(o, "name", json_str(t->name)) ||
                    !cJSON_AddStringToObject(o, "type", lmp_type_name(t->type)) ||
                    !(shape = cJSON_AddArrayToObject(o, "shape")))
                        goto out;
                for (uint32_t d = 0; d < t->n_dims; d++)
                        if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d])))
                                goto out;
                if (!cJSON_AddNumberToObject(o, "offset", (double)(g->data_offset + t->offset)) ||
                    !cJSON_AddNumberToObject(o, "bytes", (double)t->size))
                        goto out;
        }
        out = cJSON_PrintUnformatted(root);
        if (out) {
                puts(out);
                free(out);
                r = 0;
        }
out:
        cJSON_Delete(root);
        return r;
}

int lmp_cmd_gguf(int argc, char **argv) {
        const char *path = NULL;
        bool json = false;
        struct lmp_gguf *g;
        struct lmp_error err = { 0 };
        int r;

        const struct lmp_opt opts[] = {
                { "json", 0, LMP_OPT_FLAG, &json },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        int parsed = lmp_args_parse_operand("lmpool gguf", argc, argv, opts, usage, &path);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (!path) {
                usage(stderr);
                return 2;
        }
        r = lmp_gguf_open(path, &g, &err);
        if (r < 0) {
                fprintf(stderr, "lmpool gguf: %s (%s)\n", err.msg, lmp_strerror_name(r));
                return 1;
        }
        if (json) {
                r = print_json(g);
        } else {
                print_text(g, path);
                r = 0;
        }
        lmp_gguf_free(g);
        if (r < 0 || fflush(stdout) != 0) {
                fprintf(stderr, "lmpool gguf: %s\n", r < 0 ? "out of memory" : "write error");
                return 1;
        }
        return 0;
}

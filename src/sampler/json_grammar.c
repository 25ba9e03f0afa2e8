/* The JSON grammar of json_grammar.h. A schema compiles to a table of
 * nodes (what a value may be); a document in progress is a stack of frames
 * (what is being matched: the document, an object, an array, a string, a
 * number, or a literal out of a set). Literals are the compact texts of
 * enum/const values, true/false/null, and an object's quoted property
 * names; a literal frame keeps the set of candidates still matching as a
 * 64-bit mask. A value's kind is decided at its first byte, which is why
 * anyOf alternatives must differ there (checked at compile time, so the
 * grammar never reaches a state with no way out: every state the stack can
 * be in has a continuation that completes the document). */
#include "sampler/json_grammar.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

enum node_kind {
        N_ANY,          /* any value */
        N_OBJECT,       /* props: alts[first..first+n) key literals, pnode[] value nodes */
        N_ARRAY,        /* items */
        N_STRING,
        N_NUMBER,
        N_INTEGER,
        N_LITERALS,     /* alts[first..first+n): literal indices */
        N_ANYOF,        /* alts[first..first+n): node ids */
};

struct node {
        uint8_t kind;
        bool generic;           /* object: any keys, any values */
        uint16_t first, n;
        uint16_t items;         /* array: node of its items */
        uint32_t min, max;      /* array: items; string: characters */
        uint64_t required;      /* object: bit i = property i */
};

/* Predefined nodes. */
enum { NODE_ANY, NODE_OBJECT, NODE_STRING, NODE_TFN, NODE_PREDEFINED };

struct lmp_json_grammar {
        uint32_t refs;
        uint16_t root;
        uint32_t n_nodes, n_alts, n_lits;
        struct node *nodes;     /* LMP_JSON_MAX_NODES */
        uint16_t *alts;         /* n_alts */
        uint16_t *pnode;        /* n_alts: for object properties, the value's node */
        uint32_t *lit_off, *lit_len;
        char *lit;              /* literal bytes */
        size_t lit_size, lit_cap;
        uint32_t alts_cap, lits_cap;
};

/* ------------------------------------------------------------ building */

static int add_node(struct lmp_json_grammar *g, struct node n) {
        if (g->n_nodes >= LMP_JSON_MAX_NODES)
                return -E2BIG;
        g->nodes[g->n_nodes] = n;
        return (int)g->n_nodes++;
}

/* lmp_grow() for the arrays counted in uint32_t (their bounds keep them far
 * below 2^32). */
static int grow(void *p, uint32_t *cap, uint32_t need, size_t elem) {
        size_t c = *cap;
        if (lmp_grow(p, &c, need, elem, 16) < 0)
                return -ENOMEM;
        *cap = (uint32_t)c;
        return 0;
}

/* Reserves n consecutive alternative slots; returns the first. */
static int add_alts(struct lmp_json_grammar *g, uint32_t n) {
        uint32_t cap = g->alts_cap;
        if (g->n_alts + n > UINT16_MAX)
                return -E2BIG;
        if (grow(&g->alts, &cap, g->n_alts + n, sizeof(*g->alts)) < 0)
                return -ENOMEM;
        cap = g->alts_cap;
        if (grow(&g->pnode, &cap, g->n_alts + n, sizeof(*g->pnode)) < 0)
                return -ENOMEM;
        g->alts_cap = cap;
        int first = (int)g->n_alts;
        memset(g->pnode + first, 0, n * sizeof(*g->pnode));
        g->n_alts += n;
        return first;
}

static int add_literal(struct lmp_json_grammar *g, const char *s, size_t len) {
        if (len == 0 || len > LMP_JSON_MAX_LITERAL)
                return -E2BIG;
        if (g->n_lits >= UINT16_MAX)
                return -E2BIG;
        uint32_t cap = g->lits_cap;
        if (grow(&g->lit_off, &cap, g->n_lits + 1, sizeof(*g->lit_off)) < 0)
                return -ENOMEM;
        cap = g->lits_cap;
        if (grow(&g->lit_len, &cap, g->n_lits + 1, sizeof(*g->lit_len)) < 0)
                return -ENOMEM;
        g->lits_cap = cap;
        if (lmp_grow(&g->lit, &g->lit_cap, g->lit_size + len, 1, 256) < 0)
                return -ENOMEM;
        memcpy(g->lit + g->lit_size, s, len);
        g->lit_off[g->n_lits] = (uint32_t)g->lit_size;
        g->lit_len[g->n_lits] = (uint32_t)len;
        g->lit_size += len;
        return (int)g->n_lits++;
}

static struct lmp_json_grammar *grammar_alloc(void) {
        struct lmp_json_grammar *g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        g->refs = 1;
        g->nodes = calloc(LMP_JSON_MAX_NODES, sizeof(*g->nodes));
        if (!g->nodes)
                goto fail;
        /* The predefined nodes: any value, any object, any string, and the
         * literals true/false/null that start a value of NODE_ANY. */
        add_node(g, (struct node){ .kind = N_ANY });
        add_node(g, (struct node){ .kind = N_OBJECT, .generic = true });
        add_node(g, (struct node){ .kind = N_STRING, .max = UINT32_MAX });
        int first = add_alts(g, 3);
        if (first < 0)
                goto fail;
        static const char *const tfn[] = { "true", "false", "null" };
        for (int i = 0; i < 3; i++) {
                int l = add_literal(g, tfn[i], strlen(tfn[i]));
                if (l < 0)
                        goto fail;
                g->alts[first + i] = (uint16_t)l;
        }
        add_node(g, (struct node){ .kind = N_LITERALS, .first = (uint16_t)first, .n = 3 });
        return g;
fail:
        lmp_json_grammar_unref(g);
        return NULL;
}

struct lmp_json_grammar *lmp_json_grammar_ref(struct lmp_json_grammar *g) {
        if (g)
                g->refs++;
        return g;
}

void lmp_json_grammar_unref(struct lmp_json_grammar *g) {
        if (!g || --g->refs > 0)
                return;
        free(g->nodes);
        free(g->alts);
        free(g->pnode);
        free(g->lit_off);
        free(g->lit_len);
        free(g->lit);
        free(g);
}

int lmp_json_grammar_new_object(struct lmp_json_grammar **ret, struct lmp_error *err) {
        struct lmp_json_grammar *g = grammar_alloc();
        if (!g)
                return lmp_error_set(err, -ENOMEM, "json grammar: out of memory");
        g->root = NODE_OBJECT;
        *ret = g;
        return 0;
}

/* ------------------------------------------------------------ the schema compiler */

struct compiler {
        struct lmp_json_grammar *g;
        struct lmp_error *err;
        char path[256];         /* JSON pointer of the schema being compiled */
};

static int cerr(struct compiler *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cerr(struct compiler *c, int code, const char *fmt, ...) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return lmp_error_set(c->err, code, "schema %s: %s", c->path[0] ? c->path : "/", msg);
}

/* Appends "/seg" to the path; returns the old length to restore. */
static size_t path_push(struct compiler *c, const char *seg) {
        size_t n = strlen(c->path);
        snprintf(c->path + n, sizeof(c->path) - n, "/%s", seg);
        return n;
}

static const char *const known_keywords[] = {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "minItems", "maxItems", "minLength", "maxLength", "anyOf",
        /* annotations: no effect on validation */
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
};
#define N_KEYWORDS (sizeof(known_keywords) / sizeof(known_keywords[0]))

static int compile(struct compiler *c, const cJSON *s, int depth);

/* The bytes a value of the node may begin with. */
static void first_bytes(const struct lmp_json_grammar *g, uint16_t id, bool set[256]) {
        const struct node *n = &g->nodes[id];
        switch (n->kind) {
        case N_ANY:
                first_bytes(g, NODE_OBJECT, set);
                set['['] = set['"'] = true;
                first_bytes(g, NODE_TFN, set);
                /* fall through */
        case N_NUMBER:
        case N_INTEGER:
                set['-'] = true;
                for (int b = '0'; b <= '9'; b++)
                        set[b] = true;
                break;
        case N_OBJECT:
                set['{'] = true;
                break;
        case N_ARRAY:
                set['['] = true;
                break;
        case N_STRING:
                set['"'] = true;
                break;
        case N_LITERALS:
                for (uint16_t i = 0; i < n->n; i++)
                        set[(unsigned char)g->lit[g->lit_off[g->alts[n->first + i]]]] = true;
                break;
        case N_ANYOF:
                for (uint16_t i = 0; i < n->n; i++)
                        first_bytes(g, g->alts[n->first + i], set);
                break;
        }
}

static int get_count(struct compiler *c, const cJSON *s, const char *key, uint32_t def, uint32_t *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 ||
            v->valuedouble != (double)(long long)v->valuedouble)
                return cerr(c, -EINVAL, "%s must be an integer in [0, 1000000000]", key);
        *ret = (uint32_t)v->valuedouble;
        return 0;
}

static int type_of_json(const cJSON *v, const char *type) {
        if (!strcmp(type, "object"))
                return cJSON_IsObject(v);
        if (!strcmp(type, "array"))
                return cJSON_IsArray(v);
        if (!strcmp(type, "string"))
                return cJSON_IsString(v);
        if (!strcmp(type, "number"))
                return cJSON_IsNumber(v);
        if (!strcmp(type, "integer"))
                /* Doubles from 2^62 up are all integers (and the cast
                 * below would be out of range). */
                return cJSON_IsNumber(v) && (fabs(v->valuedouble) >= 0x1p62 ||
                                             v->valuedouble == (double)(long long)v->valuedouble);
        if (!strcmp(type, "boolean"))
                return cJSON_IsBool(v);
        if (!strcmp(type, "null"))
                return cJSON_IsNull(v);
        return 0;
}

/* enum (an array) or const (one value): a literal set. */
static int compile_literals(struct compiler *c, const cJSON *s, const char *type) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(s, "enum");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(s, "const");
        if (e && k)
                return cerr(c, -EINVAL, "enum and const together are not supported");
        int n = 1;
        if (e) {
                if (!cJSON_IsArray(e))
                        return cerr(c, -EINVAL, "enum must be an array");
                n = cJSON_GetArraySize(e);
                if (n == 0)
                        return cerr(c, -EINVAL, "enum is empty: no value can match");
                if (n > LMP_JSON_MAX_ALTS)
                        return cerr(c, -EINVAL, "enum has more than %d values", LMP_JSON_MAX_ALTS);
        }
        int first = add_alts(c->g, (uint32_t)n);
        if (first < 0)
                return cerr(c, first, "too many alternatives in the schema");
        int i = 0;
        const cJSON *v;
        if (e) {
                cJSON_ArrayForEach(v, e) {
                        if (type && !type_of_json(v, type))
                                return cerr(c, -EINVAL, "enum value %d is not of type %s", i, type);
                        char *text = cJSON_PrintUnformatted(v);
                        if (!text)
                                return cerr(c, -ENOMEM, "out of memory");
                        int l = add_literal(c->g, text, strlen(text));
                        free(text);
                        if (l < 0)
                                return cerr(c, -EINVAL, "enum value %d is longer than %d bytes", i, LMP_JSON_MAX_LITERAL);
                        c->g->alts[first + i++] = (uint16_t)l;
                }
        } else {
                if (type && !type_of_json(k, type))
                        return cerr(c, -EINVAL, "const is not of type %s", type);
                char *text = cJSON_PrintUnformatted(k);
                if (!text)
                        return cerr(c, -ENOMEM, "out of memory");
                int l = add_literal(c->g, text, strlen(text));
                free(text);
                if (l < 0)
                        return cerr(c, -EINVAL, "const is longer than %d bytes", LMP_JSON_MAX_LITERAL);
                c->g->alts[first] = (uint16_t)l;
        }
        int id = add_node(c->g, (struct node){ .kind = N_LITERALS, .first = (uint16_t)first, .n = (uint16_t)n });
        return id < 0 ? cerr(c, id, "more than %d nodes", LMP_JSON_MAX_NODES) : id;
}

static int compile_object(struct compiler *c, const cJSON *s, int depth) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
        if (props && !cJSON_IsObject(props))
                return cerr(c, -EINVAL, "properties must be an object");
        if (req && !cJSON_IsArray(req))
                return cerr(c, -EINVAL, "required must be an array of names");
        if (add && !cJSON_IsBool(add))
                return cerr(c, -EINVAL, "additionalProperties: only false or true is supported");
        bool closed = add && cJSON_IsFalse(add);
        if (!props && !req && !closed)
                return NODE_OBJECT;     /* any object */

        /* The property names: properties', then required names not among
         * them (any value). */
        const char *names[LMP_JSON_MAX_ALTS];
        const cJSON *schemas[LMP_JSON_MAX_ALTS];
        int n = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, props) {
                if (n == LMP_JSON_MAX_ALTS)
                        return cerr(c, -EINVAL, "more than %d properties", LMP_JSON_MAX_ALTS);
                names[n] = p->string;
                schemas[n++] = p;
        }
        uint64_t required = 0;
        int ri = 0;
        cJSON_ArrayForEach(p, req) {
                if (!cJSON_IsString(p))
                        return cerr(c, -EINVAL, "required[%d] is not a string", ri);
                int j = 0;
                while (j < n && strcmp(names[j], p->valuestring))
                        j++;
                if (j == n) {
                        if (closed)
                                return cerr(c, -EINVAL, "required names \"%s\", which properties does not "
                                            "define, and additionalProperties is false", p->valuestring);
                        if (n == LMP_JSON_MAX_ALTS)
                                return cerr(c, -EINVAL, "more than %d properties", LMP_JSON_MAX_ALTS);
                        names[n] = p->valuestring;
                        schemas[n++] = NULL;
                }
                required |= 1ull << j;
                ri++;
        }
        int first = add_alts(c->g, (uint32_t)n);
        if (first < 0)
                return cerr(c, first, "too many alternatives in the schema");
        for (int i = 0; i < n; i++) {
                /* The key literal: the name as a JSON string. */
                cJSON *str = cJSON_CreateString(names[i]);
                char *text = str ? cJSON_PrintUnformatted(str) : NULL;
                cJSON_Delete(str);
                if (!text)
                        return cerr(c, -ENOMEM, "out of memory");
                int l = add_literal(c->g, text, strlen(text));
                free(text);
                if (l < 0)
                        return cerr(c, -EINVAL, "property name \"%.40s\" is longer than %d bytes", names[i], LMP_JSON_MAX_LITERAL);
                /* cJSON keeps duplicate keys: refuse them. */
                for (int j = 0; j < i; j++)
                        if (!strcmp(names[i], names[j]))
                                return cerr(c, -EINVAL, "property \"%.60s\" is defined twice", names[i]);
                c->g->alts[first + i] = (uint16_t)l;
                int v = NODE_ANY;
                if (schemas[i]) {
                        size_t old = path_push(c, "properties");
                        size_t old2 = path_push(c, names[i]);
                        v = compile(c, schemas[i], depth + 1);
                        c->path[old2] = 0;
                        c->path[old] = 0;
                        if (v < 0)
                                return v;
                }
                c->g->pnode[first + i] = (uint16_t)v;
        }
        int id = add_node(c->g, (struct node){ .kind = N_OBJECT, .first = (uint16_t)first, .n = (uint16_t)n,
                                               .required = required });
        return id < 0 ? cerr(c, id, "more than %d nodes", LMP_JSON_MAX_NODES) : id;
}

/* A schema whose type is the one name `type` (NULL: none given). */
static int compile_typed(struct compiler *c, const cJSON *s, const char *type, int depth) {
        if (cJSON_GetObjectItemCaseSensitive(s, "enum") || cJSON_GetObjectItemCaseSensitive(s, "const"))
                return compile_literals(c, s, type);
        if (!type) {
                if (cJSON_GetObjectItemCaseSensitive(s, "properties") ||
                    cJSON_GetObjectItemCaseSensitive(s, "required") ||
                    cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
                        type = "object";
                else if (cJSON_GetObjectItemCaseSensitive(s, "items") ||
                         cJSON_GetObjectItemCaseSensitive(s, "minItems") ||
                         cJSON_GetObjectItemCaseSensitive(s, "maxItems"))
                        type = "array";
                else if (cJSON_GetObjectItemCaseSensitive(s, "minLength") ||
                         cJSON_GetObjectItemCaseSensitive(s, "maxLength"))
                        type = "string";
                else
                        return NODE_ANY;
        }
        struct node n = { 0 };
        int r;
        if (!strcmp(type, "object")) {
                return compile_object(c, s, depth);
        } else if (!strcmp(type, "array")) {
                n.kind = N_ARRAY;
                n.items = NODE_ANY;
                if ((r = get_count(c, s, "minItems", 0, &n.min)) < 0 ||
                    (r = get_count(c, s, "maxItems", UINT32_MAX, &n.max)) < 0)
                        return r;
                if (n.min > n.max)
                        return cerr(c, -EINVAL, "minItems %u is greater than maxItems %u", n.min, n.max);
                const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
                if (items) {
                        size_t old = path_push(c, "items");
                        r = compile(c, items, depth + 1);
                        c->path[old] = 0;
                        if (r < 0)
                                return r;
                        n.items = (uint16_t)r;
                }
        } else if (!strcmp(type, "string")) {
                n.kind = N_STRING;
                if ((r = get_count(c, s, "minLength", 0, &n.min)) < 0 ||
                    (r = get_count(c, s, "maxLength", UINT32_MAX, &n.max)) < 0)
                        return r;
                if (n.min > n.max)
                        return cerr(c, -EINVAL, "minLength %u is greater than maxLength %u", n.min, n.max);
        } else if (!strcmp(type, "number")) {
                n.kind = N_NUMBER;
        } else if (!strcmp(type, "integer")) {
                n.kind = N_INTEGER;
        } else if (!strcmp(type, "boolean") || !strcmp(type, "null")) {
                int first = add_alts(c->g, type[0] == 'b' ? 2 : 1);
                if (first < 0)
                        return cerr(c, first, "too many alternatives in the schema");
                /* The predefined true/false/null literals. */
                const struct node *tfn = &c->g->nodes[NODE_TFN];
                if (type[0] == 'b') {
                        c->g->alts[first] = c->g->alts[tfn->first];
                        c->g->alts[first + 1] = c->g->alts[tfn->first + 1];
                        n = (struct node){ .kind = N_LITERALS, .first = (uint16_t)first, .n = 2 };
                } else {
                        c->g->alts[first] = c->g->alts[tfn->first + 2];
                        n = (struct node){ .kind = N_LITERALS, .first = (uint16_t)first, .n = 1 };
                }
        } else {
                return cerr(c, -EINVAL, "unknown type \"%.60s\"", type);
        }
        int id = add_node(c->g, n);
        return id < 0 ? cerr(c, id, "more than %d nodes", LMP_JSON_MAX_NODES) : id;
}

/* An anyOf node over alternatives already compiled into alts[first..+n);
 * refused when two may begin with the same byte. */
static int anyof_node(struct compiler *c, int first, int n, const char *what) {
        bool seen[256] = { 0 };
        for (int i = 0; i < n; i++) {
                bool set[256] = { 0 };
                first_bytes(c->g, c->g->alts[first + i], set);
                for (int b = 0; b < 256; b++) {
                        if (set[b] && seen[b])
                                return cerr(c, -EINVAL, "%s: alternative %d and an earlier one can both "
                                            "begin with '%c' (lmpool needs them to differ in type)", what, i,
                                            b >= 0x20 && b < 0x7f ? b : '?');
                        seen[b] |= set[b];
                }
        }
        int id = add_node(c->g, (struct node){ .kind = N_ANYOF, .first = (uint16_t)first, .n = (uint16_t)n });
        return id < 0 ? cerr(c, id, "more than %d nodes", LMP_JSON_MAX_NODES) : id;
}

static int compile(struct compiler *c, const cJSON *s, int depth) {
        if (depth > LMP_JSON_MAX_DEPTH - 2)
                return cerr(c, -EINVAL, "nests deeper than %d levels", LMP_JSON_MAX_DEPTH - 2);
        if (cJSON_IsTrue(s))
                return NODE_ANY;
        if (!cJSON_IsObject(s))
                return cerr(c, -EINVAL, "a schema must be an object or true");
        const cJSON *k;
        cJSON_ArrayForEach(k, s) {
                size_t i = 0;
                while (i < N_KEYWORDS && strcmp(k->string, known_keywords[i]))
                        i++;
                if (i == N_KEYWORDS)
                        return cerr(c, -EINVAL, "unsupported keyword \"%.60s\"", k->string);
        }
        const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
        if (any) {
                cJSON_ArrayForEach(k, s)
                        if (strcmp(k->string, "anyOf") && strcmp(k->string, "title") &&
                            strcmp(k->string, "description") && strcmp(k->string, "$schema") &&
                            strcmp(k->string, "$id") && strcmp(k->string, "$comment") &&
                            strcmp(k->string, "default") && strcmp(k->string, "examples"))
                                return cerr(c, -EINVAL, "\"%s\" beside anyOf is not supported (put it in "
                                            "each alternative)", k->string);
                int n = cJSON_IsArray(any) ? cJSON_GetArraySize(any) : 0;
                if (n == 0 || n > LMP_JSON_MAX_ALTS)
                        return cerr(c, -EINVAL, "anyOf must be an array of 1 to %d schemas", LMP_JSON_MAX_ALTS);
                int first = add_alts(c->g, (uint32_t)n), i = 0;
                if (first < 0)
                        return cerr(c, first, "too many alternatives in the schema");
                cJSON_ArrayForEach(k, any) {
                        char seg[32];
                        snprintf(seg, sizeof(seg), "anyOf/%d", i);
                        size_t old = path_push(c, seg);
                        int r = compile(c, k, depth);
                        c->path[old] = 0;
                        if (r < 0)
                                return r;
                        c->g->alts[first + i++] = (uint16_t)r;
                }
                return anyof_node(c, first, n, "anyOf");
        }
        if (!type)
                return compile_typed(c, s, NULL, depth);
        if (cJSON_IsString(type))
                return compile_typed(c, s, type->valuestring, depth);
        if (!cJSON_IsArray(type) || cJSON_GetArraySize(type) == 0 ||
            cJSON_GetArraySize(type) > 7)
                return cerr(c, -EINVAL, "type must be a name or a list of 1 to 7 names");
        int n = cJSON_GetArraySize(type), first = add_alts(c->g, (uint32_t)n), i = 0;
        if (first < 0)
                return cerr(c, first, "too many alternatives in the schema");
        cJSON_ArrayForEach(k, type) {
                if (!cJSON_IsString(k))
                        return cerr(c, -EINVAL, "type[%d] is not a name", i);
                int r = compile_typed(c, s, k->valuestring, depth);
                if (r < 0)
                        return r;
                c->g->alts[first + i++] = (uint16_t)r;
        }
        return n == 1 ? c->g->alts[first] : anyof_node(c, first, n, "type");
}

int lmp_json_grammar_new_schema(const char *text, size_t len, struct lmp_json_grammar **ret,
                                struct lmp_error *err) {
        if (!text || !ret)
                return lmp_error_set(err, -EINVAL, "schema: none given");
        if (len > LMP_JSON_SCHEMA_MAX)
                return lmp_error_set(err, -EINVAL, "schema: %zu bytes, more than %u", len, LMP_JSON_SCHEMA_MAX);
        cJSON *s = cJSON_ParseWithLength(text, len);
        if (!s)
                return lmp_error_set(err, -EINVAL, "schema: not valid JSON");
        struct compiler c = { .err = err };
        c.g = grammar_alloc();
        int r = -ENOMEM;
        if (!c.g) {
                lmp_error_set(err, r, "schema: out of memory");
                goto out;
        }
        r = compile(&c, s, 0);
        if (r < 0)
                goto out;
        c.g->root = (uint16_t)r;
        *ret = c.g;
        c.g = NULL;
        r = 0;
out:
        lmp_json_grammar_unref(c.g);
        cJSON_Delete(s);
        return r;
}

/* ------------------------------------------------------------ matching */

enum frame_kind { F_DOC, F_OBJECT, F_ARRAY, F_STRING, F_NUMBER, F_LITERAL };
enum { DOC_VALUE, DOC_DONE };
enum { O_OPEN, O_KEY, O_COLON, O_VALUE, O_AFTER, O_COMMA };
enum { A_OPEN, A_AFTER, A_COMMA };
enum { S_CHAR, S_ESC, S_U1, S_U2, S_U3, S_U4 };
enum { NUM_START, NUM_MINUS, NUM_ZERO, NUM_INT, NUM_DOT, NUM_FRAC, NUM_E, NUM_ESIGN, NUM_EXP };

/* Results of feeding a byte to the top frame. */
enum { REJECT, TAKEN, DONE_TAKEN, DONE_REFEED };

void lmp_json_state_init(struct lmp_json_state *s, const struct lmp_json_grammar *g) {
        s->g = g;
        s->depth = 1;
        s->ws = 0;
        s->f[0] = (struct lmp_json_frame){ .kind = F_DOC, .st = DOC_VALUE, .node = g->root };
}

static inline bool is_ws(unsigned b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }
static inline bool is_digit(unsigned b) { return b - '0' < 10; }
static inline bool is_hex(unsigned b) { return is_digit(b) || (b | 0x20) - 'a' < 6; }

static inline uint64_t mask_n(uint16_t n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

/* Pushes the frame of a value of `node` beginning with byte b, and feeds b. */
static int start_value(struct lmp_json_state *s, uint16_t node, unsigned b);

static int feed_top(struct lmp_json_state *s, unsigned b, uint16_t *ret_alt);
static void child_done(struct lmp_json_state *s, uint16_t alt);

static int start_value(struct lmp_json_state *s, uint16_t id, unsigned b) {
        const struct lmp_json_grammar *g = s->g;
        const struct node *n = &g->nodes[id];
        if (s->depth >= LMP_JSON_MAX_DEPTH + 2)
                return REJECT;
        struct lmp_json_frame *f = &s->f[s->depth];
        *f = (struct lmp_json_frame){ .node = id };
        switch (n->kind) {
        case N_ANYOF:
                for (uint16_t i = 0; i < n->n; i++) {
                        bool set[256] = { 0 };
                        /* Few alternatives, decided once per value: cheap
                         * enough without a precomputed table. */
                        first_bytes(g, g->alts[n->first + i], set);
                        if (set[b])
                                return start_value(s, g->alts[n->first + i], b);
                }
                return REJECT;
        case N_ANY:
                if (b == '{')
                        return start_value(s, NODE_OBJECT, b);
                if (b == '[') {
                        f->kind = F_ARRAY;
                        f->node = UINT16_MAX;   /* any items */
                        f->st = A_OPEN;
                        /* Containers count toward the depth bound. */
                        if (s->depth >= LMP_JSON_MAX_DEPTH)
                                return REJECT;
                        s->depth++;
                        return TAKEN;
                }
                if (b == '"')
                        return start_value(s, NODE_STRING, b);
                if (b == '-' || is_digit(b)) {
                        f->kind = F_NUMBER;
                        f->node = NODE_ANY;
                        break;
                }
                return start_value(s, NODE_TFN, b);
        case N_OBJECT:
                if (b != '{' || s->depth >= LMP_JSON_MAX_DEPTH)
                        return REJECT;
                f->kind = F_OBJECT;
                f->st = O_OPEN;
                s->depth++;
                return TAKEN;
        case N_ARRAY:
                if (b != '[' || s->depth >= LMP_JSON_MAX_DEPTH)
                        return REJECT;
                f->kind = F_ARRAY;
                f->st = A_OPEN;
                s->depth++;
                return TAKEN;
        case N_STRING:
                if (b != '"')
                        return REJECT;
                f->kind = F_STRING;
                f->st = S_CHAR;
                s->depth++;
                return TAKEN;
        case N_NUMBER:
        case N_INTEGER:
                if (b != '-' && !is_digit(b))
                        return REJECT;
                f->kind = F_NUMBER;
                break;
        case N_LITERALS:
                f->kind = F_LITERAL;
                f->bits = mask_n(n->n);
                break;
        }
        /* Numbers and literals: the frame takes b itself. */
        s->depth++;
        uint16_t alt;
        int r = feed_top(s, b, &alt);
        if (r == REJECT || r == DONE_REFEED)    /* a value's first byte never ends it */
                return REJECT;
        if (r == DONE_TAKEN) {                  /* a one-byte literal */
                s->depth--;
                child_done(s, alt);
        }
        return TAKEN;
}

/* A child value finished; the frame below it moves on. alt: the literal
 * that matched, for an object's key. */
static void child_done(struct lmp_json_state *s, uint16_t alt) {
        struct lmp_json_frame *p = &s->f[s->depth - 1];
        switch (p->kind) {
        case F_DOC:
                p->st = DOC_DONE;
                break;
        case F_OBJECT:
                if (p->st == O_KEY) {
                        p->aux = alt;
                        p->bits |= 1ull << alt;
                        p->st = O_COLON;
                } else {
                        p->st = O_AFTER;
                }
                break;
        case F_ARRAY:
                p->count++;
                p->st = A_AFTER;
                break;
        }
}

static int feed_string(const struct lmp_json_grammar *g, struct lmp_json_frame *f, unsigned b) {
        const struct node *n = &g->nodes[f->node];
        switch (f->st) {
        case S_CHAR:
                if (f->pos) {           /* a UTF-8 continuation byte */
                        unsigned lo = f->aux & 0xff, hi = f->aux >> 8;
                        if (b < lo || b > hi)
                                return REJECT;
                        f->pos--;
                        f->aux = 0x80 | 0xbf << 8;
                        return TAKEN;
                }
                if (b == '"')
                        return f->count >= n->min ? DONE_TAKEN : REJECT;
                if (f->count >= n->max || b < 0x20)
                        return REJECT;
                if (b == '\\') {
                        f->st = S_ESC;
                        return TAKEN;
                }
                if (b < 0x80) {
                        f->count++;
                        return TAKEN;
                }
                unsigned lo = 0x80, hi = 0xbf, more;
                if (b >= 0xc2 && b <= 0xdf)
                        more = 1;
                else if (b >= 0xe0 && b <= 0xef)
                        more = 2, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
                else if (b >= 0xf0 && b <= 0xf4)
                        more = 3, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
                else
                        return REJECT;
                f->count++;
                f->pos = (uint16_t)more;
                f->aux = (uint16_t)(lo | hi << 8);
                return TAKEN;
        case S_ESC:
                if (b == 'u') {
                        f->st = S_U1;
                        return TAKEN;
                }
                if (!strchr("\"\\/bfnrt", (int)b) || b == 0)
                        return REJECT;
                f->count++;
                f->st = S_CHAR;
                return TAKEN;
        case S_U1:
                if (!is_hex(b))
                        return REJECT;
                f->aux = (b | 0x20) == 'd';     /* a surrogate if the next digit is 8..f */
                f->st = S_U2;
                return TAKEN;
        case S_U2:
                if (!is_hex(b) || (f->aux && !is_digit(b)) || (f->aux && b >= '8'))
                        return REJECT;
                f->aux = 0;
                f->st = S_U3;
                return TAKEN;
        case S_U3:
                if (!is_hex(b))
                        return REJECT;
                f->st = S_U4;
                return TAKEN;
        default: /* S_U4 */
                if (!is_hex(b))
                        return REJECT;
                f->count++;
                f->st = S_CHAR;
                return TAKEN;
        }
}

static bool number_complete(const struct lmp_json_frame *f) {
        return f->st == NUM_ZERO || f->st == NUM_INT || f->st == NUM_FRAC || f->st == NUM_EXP;
}

static int feed_number(const struct lmp_json_grammar *g, struct lmp_json_frame *f, unsigned b) {
        bool integer = g->nodes[f->node].kind == N_INTEGER;
        switch (f->st) {
        case NUM_START:
                if (b == '-') {
                        f->st = NUM_MINUS;
                        return TAKEN;
                }
                /* fall through */
        case NUM_MINUS:
                if (!is_digit(b))
                        return REJECT;
                f->st = b == '0' ? NUM_ZERO : NUM_INT;
                f->count = 1;
                return TAKEN;
        case NUM_INT:
                if (is_digit(b)) {
                        if (f->count >= LMP_JSON_MAX_DIGITS)
                                return REJECT;
                        f->count++;
                        return TAKEN;
                }
                /* fall through */
        case NUM_ZERO:
                if (b == '.' && !integer) {
                        f->st = NUM_DOT;
                        return TAKEN;
                }
                if ((b == 'e' || b == 'E') && !integer) {
                        f->st = NUM_E;
                        return TAKEN;
                }
                return DONE_REFEED;
        case NUM_DOT:
        case NUM_FRAC:
                if (is_digit(b) && f->pos < LMP_JSON_MAX_DIGITS) {
                        f->pos++;
                        f->st = NUM_FRAC;
                        return TAKEN;
                }
                if (f->st == NUM_DOT)
                        return REJECT;
                if (b == 'e' || b == 'E') {
                        f->st = NUM_E;
                        return TAKEN;
                }
                return DONE_REFEED;
        case NUM_E:
                if (b == '+' || b == '-') {
                        f->st = NUM_ESIGN;
                        return TAKEN;
                }
                /* fall through */
        case NUM_ESIGN:
        case NUM_EXP:
                if (is_digit(b) && f->aux < 3) {        /* exponents of 3 digits: finite doubles */
                        f->aux++;
                        f->st = NUM_EXP;
                        return TAKEN;
                }
                return f->st == NUM_EXP ? DONE_REFEED : REJECT;
        }
        return REJECT;
}

static int feed_literal(const struct lmp_json_grammar *g, struct lmp_json_frame *f, unsigned b, uint16_t *ret_alt) {
        const struct node *n = &g->nodes[f->node];
        uint64_t keep = 0, ended = 0, longer = 0;
        for (uint64_t m = f->bits; m; m &= m - 1) {
                int i = __builtin_ctzll(m);
                uint32_t l = g->lit_len[g->alts[n->first + i]];
                const unsigned char *t = (const unsigned char *)g->lit + g->lit_off[g->alts[n->first + i]];
                if (l == f->pos)
                        ended |= 1ull << i;
                else if (t[f->pos] == b) {
                        keep |= 1ull << i;
                        if (l > f->pos + 1u)
                                longer |= 1ull << i;
                }
        }
        if (keep) {
                f->bits = keep;
                f->pos++;
                if (!longer) {          /* exactly matched; nothing can go on */
                        *ret_alt = (uint16_t)__builtin_ctzll(keep);
                        return DONE_TAKEN;
                }
                return TAKEN;
        }
        if (ended) {                    /* a value followed by its parent's byte */
                *ret_alt = (uint16_t)__builtin_ctzll(ended);
                return DONE_REFEED;
        }
        return REJECT;
}

/* The alternatives of an object's key literal still open: those not seen. */
static inline uint64_t unseen(const struct node *n, const struct lmp_json_frame *f) {
        return mask_n(n->n) & ~f->bits;
}

static int feed_object(struct lmp_json_state *s, struct lmp_json_frame *f, unsigned b) {
        const struct lmp_json_grammar *g = s->g;
        const struct node *n = &g->nodes[f->node];
        bool generic = n->generic;
        switch (f->st) {
        case O_OPEN:
        case O_COMMA:
                if (b == '}' && f->st == O_OPEN && (generic || n->required == 0))
                        return DONE_TAKEN;
                if (b != '"')
                        return REJECT;
                f->st = O_KEY;
                if (generic)
                        return start_value(s, NODE_STRING, b) == REJECT ? REJECT : TAKEN;
                if (!unseen(n, f) || s->depth >= LMP_JSON_MAX_DEPTH + 2)
                        return REJECT;
                s->f[s->depth++] = (struct lmp_json_frame){
                        .kind = F_LITERAL, .node = f->node, .bits = unseen(n, f), .pos = 1,
                };
                return TAKEN;
        case O_COLON:
                if (b != ':')
                        return REJECT;
                f->st = O_VALUE;
                return TAKEN;
        case O_VALUE: {
                uint16_t v = generic ? NODE_ANY : g->pnode[n->first + f->aux];
                return start_value(s, v, b) == REJECT ? REJECT : TAKEN;
        }
        case O_AFTER:
                if (b == '}' && (generic || (n->required & ~f->bits) == 0))
                        return DONE_TAKEN;
                if (b == ',' && (generic || unseen(n, f))) {
                        f->st = O_COMMA;
                        return TAKEN;
                }
                return REJECT;
        }
        return REJECT;
}

static int feed_array(struct lmp_json_state *s, struct lmp_json_frame *f, unsigned b) {
        const struct lmp_json_grammar *g = s->g;
        const struct node *n = f->node == UINT16_MAX ? NULL : &g->nodes[f->node];
        uint32_t min = n ? n->min : 0, max = n ? n->max : UINT32_MAX;
        uint16_t items = n ? n->items : NODE_ANY;
        switch (f->st) {
        case A_OPEN:
                if (b == ']')
                        return min == 0 ? DONE_TAKEN : REJECT;
                if (max == 0)
                        return REJECT;
                return start_value(s, items, b) == REJECT ? REJECT : TAKEN;
        case A_COMMA:
                return start_value(s, items, b) == REJECT ? REJECT : TAKEN;
        case A_AFTER:
                if (b == ']')
                        return f->count >= min ? DONE_TAKEN : REJECT;
                if (b == ',' && f->count < max) {
                        f->st = A_COMMA;
                        return TAKEN;
                }
                return REJECT;
        }
        return REJECT;
}

/* Whether the top frame allows whitespace before b. */
static bool ws_allowed(const struct lmp_json_frame *f) {
        switch (f->kind) {
        case F_DOC:
                return f->st == DOC_VALUE;
        case F_OBJECT:
                return f->st != O_KEY;
        case F_ARRAY:
                return true;
        default:
                return false;
        }
}

/* Feeds b to the top frame. A frame that finishes is popped and its parent
 * told; DONE_REFEED means b belongs to the parent and must be fed again. */
static int feed_top(struct lmp_json_state *s, unsigned b, uint16_t *ret_alt) {
        struct lmp_json_frame *f = &s->f[s->depth - 1];
        switch (f->kind) {
        case F_DOC:
                if (f->st != DOC_VALUE)
                        return REJECT;
                return start_value(s, f->node, b) == REJECT ? REJECT : TAKEN;
        case F_OBJECT:
                return feed_object(s, f, b);
        case F_ARRAY:
                return feed_array(s, f, b);
        case F_STRING:
                return feed_string(s->g, f, b);
        case F_NUMBER:
                return feed_number(s->g, f, b);
        case F_LITERAL:
                return feed_literal(s->g, f, b, ret_alt);
        }
        return REJECT;
}

static bool feed_byte(struct lmp_json_state *s, unsigned b) {
        for (;;) {
                struct lmp_json_frame *f = &s->f[s->depth - 1];
                if (is_ws(b) && (f->kind == F_DOC || f->kind == F_OBJECT || f->kind == F_ARRAY)) {
                        if (!ws_allowed(f) || s->ws >= LMP_JSON_MAX_WS)
                                return false;
                        s->ws++;
                        return true;
                }
                uint16_t alt = 0;
                int r = feed_top(s, b, &alt);
                if (r == REJECT)
                        return false;
                if (r == TAKEN) {
                        s->ws = 0;
                        return true;
                }
                /* The top frame is complete: pop it and tell its parent. */
                s->depth--;
                child_done(s, alt);
                if (r == DONE_TAKEN) {
                        s->ws = 0;
                        return true;
                }
                /* DONE_REFEED: b (a delimiter) belongs to the parent. */
        }
}

bool lmp_json_state_feed(struct lmp_json_state *s, const void *bytes, size_t n) {
        const unsigned char *p = bytes;
        for (size_t i = 0; i < n; i++)
                if (!feed_byte(s, p[i]))
                        return false;
        return true;
}

bool lmp_json_state_accepts(const struct lmp_json_state *s, const void *bytes, size_t n) {
        if (n == 0)
                return false;
        /* Copy the frames in use only: a few dozen bytes at usual depths. */
        struct lmp_json_state t;
        t.g = s->g;
        t.depth = s->depth;
        t.ws = s->ws;
        memcpy(t.f, s->f, s->depth * sizeof(s->f[0]));
        return lmp_json_state_feed(&t, bytes, n);
}

bool lmp_json_state_complete(const struct lmp_json_state *s) {
        if (s->depth == 1)
                return s->f[0].st == DOC_DONE;
        if (s->depth != 2)
                return false;
        /* A number or a literal at the top level ends with the document. */
        const struct lmp_json_frame *f = &s->f[1];
        if (f->kind == F_NUMBER)
                return number_complete(f);
        if (f->kind == F_LITERAL) {
                const struct node *n = &s->g->nodes[f->node];
                for (uint64_t m = f->bits; m; m &= m - 1)
                        if (s->g->lit_len[s->g->alts[n->first + __builtin_ctzll(m)]] == f->pos)
                                return true;
        }
        return false;
}

bool lmp_json_state_closed(const struct lmp_json_state *s) {
        return s->depth == 1 && s->f[0].st == DOC_DONE;
}

/* ------------------------------------------------------------ the cache */

struct cache_entry {
        char *text;
        size_t len;
        uint64_t hash, used;
        struct lmp_json_grammar *g;
};

struct lmp_json_cache {
        uint32_t cap, n;
        uint64_t clock;
        struct cache_entry *e;
};

int lmp_json_cache_new(uint32_t capacity, struct lmp_json_cache **ret, struct lmp_error *err) {
        if (capacity == 0 || capacity > LMP_JSON_CACHE_MAX)
                return lmp_error_set(err, -EINVAL, "json cache: capacity %u is not in [1, %d]", capacity,
                                     LMP_JSON_CACHE_MAX);
        struct lmp_json_cache *c = calloc(1, sizeof(*c));
        if (!c || !(c->e = calloc(capacity, sizeof(*c->e)))) {
                free(c);
                return lmp_error_set(err, -ENOMEM, "json cache: out of memory");
        }
        c->cap = capacity;
        *ret = c;
        return 0;
}

void lmp_json_cache_free(struct lmp_json_cache *c) {
        if (!c)
                return;
        for (uint32_t i = 0; i < c->n; i++) {
                free(c->e[i].text);
                lmp_json_grammar_unref(c->e[i].g);
        }
        free(c->e);
        free(c);
}

static uint64_t fnv1a(const char *s, size_t n) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
        return h;
}

int lmp_json_cache_get(struct lmp_json_cache *c, const char *text, size_t len,
                       struct lmp_json_grammar **ret, struct lmp_error *err) {
        uint64_t h = fnv1a(text, len);
        for (uint32_t i = 0; i < c->n; i++) {
                struct cache_entry *e = &c->e[i];
                if (e->hash == h && e->len == len && !memcmp(e->text, text, len)) {
                        e->used = ++c->clock;
                        *ret = lmp_json_grammar_ref(e->g);
                        return 0;
                }
        }
        struct lmp_json_grammar *g = NULL;
        int r = len == 6 && !memcmp(text, "\"json\"", 6) ? lmp_json_grammar_new_object(&g, err)
                                                          : lmp_json_grammar_new_schema(text, len, &g, err);
        if (r < 0)
                return r;
        char *copy = malloc(len ? len : 1);
        if (!copy) {
                lmp_json_grammar_unref(g);
                return lmp_error_set(err, -ENOMEM, "json cache: out of memory");
        }
        memcpy(copy, text, len);
        uint32_t slot = c->n;
        if (c->n == c->cap) {           /* evict the least recently used */
                slot = 0;
                for (uint32_t i = 1; i < c->n; i++)
                        if (c->e[i].used < c->e[slot].used)
                                slot = i;
                free(c->e[slot].text);
                lmp_json_grammar_unref(c->e[slot].g);
        } else {
                c->n++;
        }
        c->e[slot] = (struct cache_entry){ .text = copy, .len = len, .hash = h, .used = ++c->clock, .g = g };
        *ret = lmp_json_grammar_ref(g);
        return 0;
}

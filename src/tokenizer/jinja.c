/* The Jinja interpreter: lexer, parser to a tree, evaluator. All memory of a
 * render (tokens, tree, values) comes from one arena freed at the end, so
 * that an error anywhere can unwind with longjmp to lmp_jinja_render()
 * without leaking: errors stay values at the module's boundary, and the
 * hundreds of internal call sites do not each check and propagate a code.
 * Values are immutable once built, as in jinja2's immutable sandbox, except
 * a namespace's attributes and the scopes. Strings are UTF-8 bytes; length,
 * indexing and slicing count code points, as Python does. */
#include "tokenizer/jinja.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/json.h"

const struct lmp_jinja_limits lmp_jinja_default_limits = {
        .max_depth = 200,
        .max_output = 4u << 20,
        .max_iterations = 1000000,
        .max_memory = 256u << 20,
};

/* ------------------------------------------------------------------ arena */

struct chunk {
        struct chunk *next;
        size_t used, cap;
        max_align_t data[];
};

struct ctx;
static _Noreturn void fail(struct ctx *c, int code, const char *fmt, ...) LMP_PRINTF(3, 4);

/* ------------------------------------------------------------------ values */

enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_METHOD, V_MACRO };

struct list;
struct dict;
struct node;
struct scope;

struct val {
        enum vt t;
        union {
                bool b;
                long long i;
                double f;
                struct {
                        const char *p;
                        size_t n;
                } s;
                struct list *l;
                struct dict *d;         /* V_DICT, V_NS */
                int fn;                 /* V_FUNC */
                struct method *m;       /* V_METHOD */
                struct macro *mac;      /* V_MACRO */
        };
        const char *uname;              /* V_UNDEF: the name, for the error when it is used */
        bool gen;                       /* V_LIST: a generator (what select and map
                                         * return in jinja2): true, with no len() and
                                         * not serializable until |list */
        bool tuple;                     /* V_LIST: a tuple, for repr() */
        bool safe;                      /* V_STR: markup (the safe filter's result), which
                                         * HTML-escapes a plain string added to it, as
                                         * markupsafe's Markup.__add__ does */
};

/* depth: how deeply lists and dicts nest in this one (1: none), kept under
 * the depth bound as they are built, so that printing, comparing and
 * serializing values recurse within it. A namespace counts as 0: none of
 * those looks inside one. */
struct list {
        size_t n, cap;
        size_t depth;
        struct val *v;
};

struct dict {
        size_t n, cap;
        size_t depth;
        struct val *k, *v;
};

struct method {
        struct val self;
        const char *name;
};

struct macro {
        struct node *def;
        struct scope *closure;
        struct node *caller_body;       /* a call block's caller(): its body */
};

struct scope {
        struct scope *parent;
        struct dict vars;
};

enum { F_RAISE, F_STRFTIME, F_NAMESPACE, F_RANGE, F_DICT };

/* ------------------------------------------------------------------ tree */

enum nk {
        /* statements */
        N_BODY, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_BREAK,
        N_CONTINUE, N_FILTERBLOCK,
        /* expressions */
        N_LIT, N_NAME, N_LIST, N_TUPLE, N_DICT, N_GETATTR, N_GETITEM, N_SLICE, N_BIN, N_NEG, N_POS,
        N_NOT, N_AND, N_OR, N_CMP, N_COND, N_CALL, N_FILTER, N_TEST,
};

struct node {
        enum nk k;
        int line;
        int op;                 /* N_BIN, N_CMP: the operator token */
        bool neg;               /* N_TEST: is not */
        struct node *a, *b, *c, *d;
        struct node **kids;     /* bodies, args, list items */
        size_t n;
        const char **names;     /* N_FOR targets, N_MACRO params, N_CALL kwarg names (NULL: positional) */
        size_t nnames;
        const char *name;       /* N_NAME, N_GETATTR, N_FILTER, N_TEST, N_MACRO, N_SET attr */
        struct val lit;
};

/* ------------------------------------------------------------------ tokens */

enum tk {
        T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_INT, T_FLOAT,
        T_STR, T_OP,
};

/* Operators are their characters packed in an int: '+' or ('/' << 8 | '/'). */
#define OP2(a, b) (((a) << 8) | (b))

struct tok {
        enum tk t;
        int op;
        int line;
        const char *p;          /* T_TEXT, T_NAME, T_STR: the bytes (T_STR unescaped) */
        size_t n;
        long long i;
        double f;
};

struct ctx {
        jmp_buf jb;
        struct lmp_error *err;
        struct lmp_jinja_limits lim;
        time_t now;
        bool trim_blocks, lstrip_blocks;
        struct chunk *chunks;
        size_t mem;
        /* lexer / parser */
        const char *src;
        size_t len;
        struct tok *toks;
        size_t ntoks, captoks, pos;
        /* evaluator */
        char *out;
        size_t outlen, outcap;
        size_t depth, iterations;
        int ctl;                /* 0, or a pending break / continue */
        struct scope *globals;
        int line;
};

enum { CTL_BREAK = 1, CTL_CONTINUE = 2 };

static void fail(struct ctx *c, int code, const char *fmt, ...) {
        if (c->err) {
                char msg[LMP_ERROR_MSG_MAX];
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(msg, sizeof msg, fmt, ap);
                va_end(ap);
                if (c->line < 0) /* raise_exception(): the template's own words */
                        lmp_error_set(c->err, code, "%s", msg);
                else if (c->line > 0)
                        lmp_error_set(c->err, code, "template line %d: %s", c->line, msg);
                else
                        lmp_error_set(c->err, code, "template: %s", msg);
        }
        longjmp(c->jb, code);
}

static void *alloc(struct ctx *c, size_t n) {
        n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
        if (n == 0)
                n = sizeof(max_align_t);
        struct chunk *ch = c->chunks;
        if (!ch || ch->cap - ch->used < n) {
                size_t cap = n > 65536 ? n : 65536;
                if (c->mem + cap > c->lim.max_memory)
                        fail(c, -E2BIG, "the render needs more than %zu bytes of memory", c->lim.max_memory);
                ch = malloc(sizeof *ch + cap);
                if (!ch)
                        fail(c, -ENOMEM, "out of memory");
                c->mem += cap;
                ch->cap = cap;
                ch->used = 0;
                ch->next = c->chunks;
                c->chunks = ch;
        }
        void *p = (char *)ch->data + ch->used;
        ch->used += n;
        memset(p, 0, n);
        return p;
}

static char *sdup(struct ctx *c, const char *p, size_t n) {
        char *s = alloc(c, n + 1);
        if (n)
                memcpy(s, p, n);
        s[n] = '\0';
        return s;
}

/* A growable array in the arena: *pp holds *pn items of size sz, *pcap room. */
static void grow(struct ctx *c, void **pp, size_t *pcap, size_t n, size_t sz) {
        if (n < *pcap)
                return;
        size_t cap = *pcap ? *pcap * 2 : 8;
        if (cap > SIZE_MAX / sz / 2)
                fail(c, -E2BIG, "a list is too long");
        void *p = alloc(c, cap * sz);
        if (n)
                memcpy(p, *pp, n * sz);
        *pp = p;
        *pcap = cap;
}

/* ------------------------------------------------------------------ value helpers */

static struct val vundef(const char *name) { return (struct val){.t = V_UNDEF, .uname = name}; }
static struct val vnone(void) { return (struct val){.t = V_NONE}; }
static struct val vbool(bool b) { return (struct val){.t = V_BOOL, .b = b}; }
static struct val vint(long long i) { return (struct val){.t = V_INT, .i = i}; }
static struct val vfloat(double f) { return (struct val){.t = V_FLOAT, .f = f}; }
static struct val vstr(const char *p, size_t n) { return (struct val){.t = V_STR, .s = {p, n}}; }
static struct val vcstr(const char *p) { return vstr(p, strlen(p)); }

static struct val vlist(struct ctx *c) {
        struct val v = {.t = V_LIST};
        v.l = alloc(c, sizeof *v.l);
        return v;
}

static struct val vdict(struct ctx *c) {
        struct val v = {.t = V_DICT};
        v.d = alloc(c, sizeof *v.d);
        return v;
}

static size_t val_depth(const struct val *v) {
        return v->t == V_LIST ? v->l->depth : v->t == V_DICT ? v->d->depth : 0;
}

static void nest(struct ctx *c, size_t *depth, const struct val *v) {
        size_t d = val_depth(v) + 1;
        if (d > c->lim.max_depth)
                fail(c, -E2BIG, "values nested deeper than %zu", c->lim.max_depth);
        if (d > *depth)
                *depth = d;
}

static void list_push(struct ctx *c, struct list *l, struct val v) {
        nest(c, &l->depth, &v);
        grow(c, (void **)&l->v, &l->cap, l->n, sizeof *l->v);
        l->v[l->n++] = v;
}

static bool equal(const struct val *a, const struct val *b);

static struct val *dict_find(struct dict *d, const struct val *k) {
        for (size_t i = 0; i < d->n; i++)
                if (equal(&d->k[i], k))
                        return &d->v[i];
        return NULL;
}

static struct val *dict_findc(struct dict *d, const char *k, size_t n) {
        for (size_t i = 0; i < d->n; i++)
                if (d->k[i].t == V_STR && d->k[i].s.n == n && memcmp(d->k[i].s.p, k, n) == 0)
                        return &d->v[i];
        return NULL;
}

static void dict_set(struct ctx *c, struct dict *d, struct val k, struct val v) {
        nest(c, &d->depth, &k);
        nest(c, &d->depth, &v);
        struct val *slot = dict_find(d, &k);
        if (slot) {
                *slot = v;
                return;
        }
        size_t cap = d->cap;
        grow(c, (void **)&d->k, &cap, d->n, sizeof *d->k);
        if (cap != d->cap) {
                struct val *nv = alloc(c, cap * sizeof *nv);
                if (d->n)
                        memcpy(nv, d->v, d->n * sizeof *nv);
                d->v = nv;
                d->cap = cap;
        }
        d->k[d->n] = k;
        d->v[d->n] = v;
        d->n++;
}

static void dict_setc(struct ctx *c, struct dict *d, const char *k, struct val v) {
        dict_set(c, d, vcstr(k), v);
}

static bool is_num(const struct val *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static double num(const struct val *v) {
        return v->t == V_FLOAT ? v->f : v->t == V_INT ? (double)v->i : v->t == V_BOOL ? v->b : 0;
}

static bool equal(const struct val *a, const struct val *b) {
        if (is_num(a) && is_num(b)) {
                if (a->t != V_FLOAT && b->t != V_FLOAT)
                        return (a->t == V_INT ? a->i : a->b) == (b->t == V_INT ? b->i : b->b);
                return num(a) == num(b);
        }
        if (a->t != b->t)
                return false;
        switch (a->t) {
        case V_UNDEF:
        case V_NONE:
                return true;
        case V_STR:
                return a->s.n == b->s.n && memcmp(a->s.p, b->s.p, a->s.n) == 0;
        case V_LIST:
                if (a->l->n != b->l->n)
                        return false;
                for (size_t i = 0; i < a->l->n; i++)
                        if (!equal(&a->l->v[i], &b->l->v[i]))
                                return false;
                return true;
        case V_DICT:
                if (a->d->n != b->d->n)
                        return false;
                for (size_t i = 0; i < a->d->n; i++) {
                        struct val *o = dict_find(b->d, &a->d->k[i]);
                        if (!o || !equal(&a->d->v[i], o))
                                return false;
                }
                return true;
        case V_NS:
                return a->d == b->d;
        case V_FUNC:
                return a->fn == b->fn;
        default:
                return false;
        }
}

static bool truthy(const struct val *v) {
        switch (v->t) {
        case V_UNDEF:
        case V_NONE:
                return false;
        case V_BOOL:
                return v->b;
        case V_INT:
                return v->i != 0;
        case V_FLOAT:
                return v->f != 0;
        case V_STR:
                return v->s.n != 0;
        case V_LIST:
                return v->gen || v->l->n != 0;
        case V_DICT:
                return v->d->n != 0;
        default:
                return true;
        }
}

static const char *type_name(const struct val *v) {
        static const char *const names[] = {
                [V_UNDEF] = "Undefined", [V_NONE] = "NoneType", [V_BOOL] = "bool",
                [V_INT] = "int", [V_FLOAT] = "float", [V_STR] = "str", [V_LIST] = "list",
                [V_DICT] = "dict", [V_NS] = "Namespace", [V_FUNC] = "function",
                [V_METHOD] = "method", [V_MACRO] = "Macro",
        };
        return names[v->t];
}

/* --------------------------------------------------------- string building */

struct sb {
        struct ctx *c;
        char *p;
        size_t n, cap;
};

static void sb_addn(struct sb *b, const char *s, size_t n) {
        if (b->n + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                while (cap < b->n + n + 1) {
                        if (cap > SIZE_MAX / 4)
                                fail(b->c, -E2BIG, "a string is too long");
                        cap *= 2;
                }
                char *p = alloc(b->c, cap);
                if (b->n)
                        memcpy(p, b->p, b->n);
                b->p = p;
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n] = '\0';
}

static void sb_add(struct sb *b, const char *s) { sb_addn(b, s, strlen(s)); }
static void sb_ch(struct sb *b, char ch) { sb_addn(b, &ch, 1); }
static struct val sb_val(struct sb *b) { return b->n ? vstr(b->p, b->n) : vstr("", 0); }

static void fmt_float(char *buf, size_t size, double f) {
        if (isnan(f)) {
                snprintf(buf, size, "nan");
                return;
        }
        if (isinf(f)) {
                snprintf(buf, size, f < 0 ? "-inf" : "inf");
                return;
        }
        /* Python's repr: the shortest text that reads back the same, with
         * an exponent from 1e16 up and below 1e-4, and ".0" on integers. */
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, f);
                if (strtod(buf, NULL) == f)
                        break;
        }
        double a = fabs(f);
        if (a >= 1e16 || (a < 1e-4 && a != 0)) {
                /* %g chose the exponent form already; Python writes e+16, e-05 alike */
                return;
        }
        if (strchr(buf, 'e')) {
                char tmp[64];
                for (int prec = 0; prec <= 17; prec++) {
                        snprintf(tmp, sizeof tmp, "%.*f", prec, f);
                        if (strtod(tmp, NULL) == f)
                                break;
                }
                snprintf(buf, size, "%s", tmp);
        }
        if (!strchr(buf, '.') && !strchr(buf, 'e'))
                strncat(buf, ".0", size - strlen(buf) - 1);
}

static void repr(struct sb *b, const struct val *v);

/* Python's str() of a value. */
static void to_str(struct sb *b, const struct val *v) {
        char buf[64];
        switch (v->t) {
        case V_UNDEF:
                return;
        case V_NONE:
                sb_add(b, "None");
                return;
        case V_BOOL:
                sb_add(b, v->b ? "True" : "False");
                return;
        case V_INT:
                snprintf(buf, sizeof buf, "%lld", v->i);
                sb_add(b, buf);
                return;
        case V_FLOAT:
                fmt_float(buf, sizeof buf, v->f);
                sb_add(b, buf);
                return;
        case V_STR:
                sb_addn(b, v->s.p, v->s.n);
                return;
        case V_NS:
                sb_add(b, "<Namespace>");
                return;
        case V_FUNC:
        case V_METHOD:
        case V_MACRO:
                sb_add(b, "<function>");
                return;
        default:
                repr(b, v);
        }
}

static void repr(struct sb *b, const struct val *v) {
        switch (v->t) {
        case V_STR: {
                bool dq = memchr(v->s.p, '\'', v->s.n) && !memchr(v->s.p, '"', v->s.n);
                char q = dq ? '"' : '\'';
                sb_ch(b, q);
                for (size_t i = 0; i < v->s.n; i++) {
                        unsigned char ch = (unsigned char)v->s.p[i];
                        if (ch == '\\' || ch == (unsigned char)q) {
                                sb_ch(b, '\\');
                                sb_ch(b, (char)ch);
                        } else if (ch == '\n')
                                sb_add(b, "\\n");
                        else if (ch == '\t')
                                sb_add(b, "\\t");
                        else if (ch == '\r')
                                sb_add(b, "\\r");
                        else if (ch < 0x20 || ch == 0x7f) {
                                char e[8];
                                snprintf(e, sizeof e, "\\x%02x", ch);
                                sb_add(b, e);
                        } else
                                sb_ch(b, (char)ch);
                }
                sb_ch(b, q);
                return;
        }
        case V_LIST:
                sb_ch(b, v->tuple ? '(' : '[');
                for (size_t i = 0; i < v->l->n; i++) {
                        if (i)
                                sb_add(b, ", ");
                        repr(b, &v->l->v[i]);
                }
                if (v->tuple && v->l->n == 1)
                        sb_ch(b, ',');
                sb_ch(b, v->tuple ? ')' : ']');
                return;
        case V_DICT:
                sb_ch(b, '{');
                for (size_t i = 0; i < v->d->n; i++) {
                        if (i)
                                sb_add(b, ", ");
                        repr(b, &v->d->k[i]);
                        sb_add(b, ": ");
                        repr(b, &v->d->v[i]);
                }
                sb_ch(b, '}');
                return;
        default:
                to_str(b, v);
        }
}

static struct val str_of(struct ctx *c, const struct val *v) {
        if (v->t == V_STR)
                return *v;
        struct sb b = {.c = c};
        to_str(&b, v);
        return sb_val(&b);
}

/* json.dumps(v, ensure_ascii=False, indent=indent, separators=(item_sep,
 * key_sep), sort_keys=sort) */
struct jsonfmt {
        int indent;             /* -1: none */
        bool sort;
        const char *item_sep, *key_sep;
        size_t item_len, key_len;
};

static void to_json(struct ctx *c, struct sb *b, const struct val *v, const struct jsonfmt *jf, int level,
                    size_t depth) {
        int indent = jf->indent;
        if (depth > c->lim.max_depth)
                fail(c, -E2BIG, "tojson: nesting deeper than %zu", c->lim.max_depth);
        char buf[64];
        switch (v->t) {
        case V_NONE:
                sb_add(b, "null");
                return;
        case V_BOOL:
                sb_add(b, v->b ? "true" : "false");
                return;
        case V_INT:
        case V_FLOAT:
                if (v->t == V_FLOAT && isnan(v->f))
                        sb_add(b, "NaN");
                else if (v->t == V_FLOAT && isinf(v->f))
                        sb_add(b, v->f < 0 ? "-Infinity" : "Infinity");
                else
                        to_str(b, v);
                return;
        case V_STR: {
                size_t max = lmp_json_escaped_max(v->s.n);
                if (!max)
                        fail(c, -E2BIG, "a string is too long");
                char *tmp = alloc(c, max);
                size_t n = lmp_json_escape(tmp, v->s.p, v->s.n, false);
                sb_addn(b, tmp, n);
                return;
        }
        case V_LIST:
        case V_DICT: {
                bool isl = v->t == V_LIST;
                if (v->t == V_LIST && v->gen)
                        fail(c, -EINVAL, "Object of type generator is not JSON serializable");
                size_t n = isl ? v->l->n : v->d->n;
                sb_ch(b, isl ? '[' : '{');
                if (n == 0) {
                        sb_ch(b, isl ? ']' : '}');
                        return;
                }
                size_t *order = alloc(c, n * sizeof *order);
                for (size_t i = 0; i < n; i++)
                        order[i] = i;
                if (!isl && jf->sort) {
                        for (size_t i = 1; i < n; i++) /* insertion sort on string keys */
                                for (size_t j = i; j > 0; j--) {
                                        const struct val *x = &v->d->k[order[j - 1]], *y = &v->d->k[order[j]];
                                        if (x->t != V_STR || y->t != V_STR)
                                                break;
                                        size_t m = x->s.n < y->s.n ? x->s.n : y->s.n;
                                        int r = memcmp(x->s.p, y->s.p, m);
                                        if (r < 0 || (r == 0 && x->s.n <= y->s.n))
                                                break;
                                        size_t t = order[j];
                                        order[j] = order[j - 1];
                                        order[j - 1] = t;
                                }
                }
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                sb_addn(b, jf->item_sep, jf->item_len);
                        if (indent >= 0) {
                                sb_ch(b, '\n');
                                for (int s = 0; s < indent * (level + 1); s++)
                                        sb_ch(b, ' ');
                        }
                        if (isl) {
                                to_json(c, b, &v->l->v[order[i]], jf, level + 1, depth + 1);
                        } else {
                                const struct val *k = &v->d->k[order[i]];
                                if (k->t == V_STR)
                                        to_json(c, b, k, jf, level + 1, depth + 1);
                                else {
                                        struct val ks = str_of(c, k);
                                        if (k->t == V_BOOL)
                                                ks = vcstr(k->b ? "true" : "false");
                                        else if (k->t == V_NONE)
                                                ks = vcstr("null");
                                        to_json(c, b, &ks, jf, level + 1, depth + 1);
                                }
                                sb_addn(b, jf->key_sep, jf->key_len);
                                to_json(c, b, &v->d->v[order[i]], jf, level + 1, depth + 1);
                        }
                }
                if (indent >= 0) {
                        sb_ch(b, '\n');
                        for (int s = 0; s < indent * level; s++)
                                sb_ch(b, ' ');
                }
                sb_ch(b, isl ? ']' : '}');
                return;
        }
        case V_NS:
                fail(c, -EINVAL, "Object of type Namespace is not JSON serializable");
        case V_UNDEF:
                fail(c, -EINVAL, "Object of type Undefined is not JSON serializable");
        default:
                snprintf(buf, sizeof buf, "Object of type %s is not JSON serializable", type_name(v));
                fail(c, -EINVAL, "%s", buf);
        }
}

/* ------------------------------------------------------------------ UTF-8 */

static size_t cp_count(const char *p, size_t n) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (((unsigned char)p[i] & 0xc0) != 0x80)
                        k++;
        return k;
}

/* Byte offset of code point i (i <= count). */
static size_t cp_offset(const char *p, size_t n, size_t i) {
        size_t k = 0, j = 0;
        for (; j < n; j++) {
                if (((unsigned char)p[j] & 0xc0) != 0x80) {
                        if (k == i)
                                return j;
                        k++;
                }
        }
        return n;
}

static bool is_space(unsigned char ch) { return ch == ' ' || (ch >= 9 && ch <= 13) || ch == 0x1c || ch == 0x1d || ch == 0x1e || ch == 0x1f; }

/* ------------------------------------------------------------------ lexer */

static struct tok *push_tok(struct ctx *c, enum tk t, int line) {
        grow(c, (void **)&c->toks, &c->captoks, c->ntoks, sizeof *c->toks);
        struct tok *tk = &c->toks[c->ntoks++];
        memset(tk, 0, sizeof *tk);
        tk->t = t;
        tk->line = line;
        return tk;
}

static int count_lines(const char *p, size_t n) {
        int k = 0;
        for (size_t i = 0; i < n; i++)
                k += p[i] == '\n';
        return k;
}

/* Lexes the inside of a {{ }} or {% %} tag from *pi up to its end, which it
 * returns as the index just past the closing delimiter; *strip_after tells
 * whether the closing delimiter was written with '-', *plus with '+'. */
static size_t lex_tag(struct ctx *c, size_t i, char close, int *line, bool *strip_after, bool *plus) {
        const char *s = c->src;
        size_t n = c->len;
        for (;;) {
                while (i < n && is_space((unsigned char)s[i])) {
                        if (s[i] == '\n')
                                (*line)++;
                        i++;
                }
                if (i >= n) {
                        c->line = *line;
                        fail(c, -EINVAL, "unexpected end of template, expected '%c}'", close);
                }
                char ch = s[i];
                if ((ch == '-' || ch == '+') && i + 2 < n + 0 && s[i + 1] == close && s[i + 2] == '}') {
                        *strip_after = ch == '-';
                        *plus = ch == '+';
                        return i + 3;
                }
                if (ch == close && i + 1 < n && s[i + 1] == '}') {
                        *strip_after = false;
                        *plus = false;
                        return i + 2;
                }
                if (ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
                        size_t j = i;
                        while (j < n && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                                         (s[j] >= '0' && s[j] <= '9')))
                                j++;
                        struct tok *t = push_tok(c, T_NAME, *line);
                        t->p = s + i;
                        t->n = j - i;
                        i = j;
                        continue;
                }
                if (ch >= '0' && ch <= '9') {
                        size_t j = i;
                        bool fl = false;
                        while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_'))
                                j++;
                        if (j + 1 < n && s[j] == '.' && s[j + 1] >= '0' && s[j + 1] <= '9') {
                                fl = true;
                                j++;
                                while (j < n && s[j] >= '0' && s[j] <= '9')
                                        j++;
                        }
                        if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                                size_t k = j + 1;
                                if (k < n && (s[k] == '+' || s[k] == '-'))
                                        k++;
                                if (k < n && s[k] >= '0' && s[k] <= '9') {
                                        fl = true;
                                        j = k;
                                        while (j < n && s[j] >= '0' && s[j] <= '9')
                                                j++;
                                }
                        }
                        char buf[64];
                        size_t m = 0;
                        for (size_t k = i; k < j && m < sizeof buf - 1; k++)
                                if (s[k] != '_')
                                        buf[m++] = s[k];
                        buf[m] = '\0';
                        struct tok *t = push_tok(c, fl ? T_FLOAT : T_INT, *line);
                        if (fl)
                                t->f = strtod(buf, NULL);
                        else {
                                errno = 0;
                                t->i = strtoll(buf, NULL, 10);
                                if (errno) {
                                        c->line = *line;
                                        fail(c, -EINVAL, "integer literal out of range");
                                }
                        }
                        i = j;
                        continue;
                }
                if (ch == '"' || ch == '\'') {
                        struct sb b = {.c = c};
                        size_t j = i + 1;
                        int start_line = *line;
                        for (;;) {
                                if (j >= n) {
                                        c->line = start_line;
                                        fail(c, -EINVAL, "unterminated string");
                                }
                                char d = s[j];
                                if (d == ch)
                                        break;
                                if (d == '\n')
                                        (*line)++;
                                if (d == '\\' && j + 1 < n) {
                                        char e = s[j + 1];
                                        j += 2;
                                        switch (e) {
                                        case 'n': sb_ch(&b, '\n'); break;
                                        case 't': sb_ch(&b, '\t'); break;
                                        case 'r': sb_ch(&b, '\r'); break;
                                        case '0': sb_ch(&b, '\0'); break;
                                        case '\\': sb_ch(&b, '\\'); break;
                                        case '\'': sb_ch(&b, '\''); break;
                                        case '"': sb_ch(&b, '"'); break;
                                        case '\n': (*line)++; break;
                                        case 'x':
                                        case 'u':
                                        case 'U': {
                                                int w = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                                                uint32_t cp = 0;
                                                int k = 0;
                                                for (; k < w && j < n; k++, j++) {
                                                        char h = s[j];
                                                        int dv = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                                                        if (dv < 0)
                                                                break;
                                                        cp = cp * 16 + (uint32_t)dv;
                                                }
                                                if (k != w || cp > 0x10ffff) {
                                                        c->line = *line;
                                                        fail(c, -EINVAL, "bad \\%c escape in a string", e);
                                                }
                                                char u[4];
                                                int m;
                                                if (cp < 0x80) { u[0] = (char)cp; m = 1; }
                                                else if (cp < 0x800) { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3f)); m = 2; }
                                                else if (cp < 0x10000) { u[0] = (char)(0xe0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[2] = (char)(0x80 | (cp & 0x3f)); m = 3; }
                                                else { u[0] = (char)(0xf0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (char)(0x80 | (cp & 0x3f)); m = 4; }
                                                sb_addn(&b, u, (size_t)m);
                                                break;
                                        }
                                        default:
                                                sb_ch(&b, '\\');
                                                sb_ch(&b, e);
                                        }
                                        continue;
                                }
                                sb_ch(&b, d);
                                j++;
                        }
                        struct tok *t = push_tok(c, T_STR, start_line);
                        t->p = b.n ? b.p : "";
                        t->n = b.n;
                        i = j + 1;
                        continue;
                }
                static const char *const two[] = {"//", "**", "==", "!=", "<=", ">="};
                int op = 0;
                for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
                        if (i + 1 < n && s[i] == two[k][0] && s[i + 1] == two[k][1])
                                op = OP2(two[k][0], two[k][1]);
                if (op) {
                        push_tok(c, T_OP, *line)->op = op;
                        i += 2;
                        continue;
                }
                if (strchr("+-*/%~()[]{},.:|=<>", ch) && ch) {
                        push_tok(c, T_OP, *line)->op = ch;
                        i++;
                        continue;
                }
                c->line = *line;
                fail(c, -EINVAL, "unexpected character '%c' in a tag", ch);
        }
}

static void lex(struct ctx *c) {
        const char *s = c->src;
        size_t n = c->len, i = 0;
        int line = 1;
        bool strip_next = false;        /* the previous tag ended with '-' */
        while (i <= n) {
                /* the text up to the next tag */
                size_t text_start = i, j = i;
                int kind = 0;           /* '{', '%', '#' */
                while (j + 1 < n) {
                        if (s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')) {
                                kind = s[j + 1];
                                break;
                        }
                        j++;
                }
                if (!kind)
                        j = n;
                size_t te = j;
                size_t ts = text_start;
                if (strip_next)
                        while (ts < te && is_space((unsigned char)s[ts]))
                                ts++;
                char mod = kind && j + 2 < n ? s[j + 2] : 0;
                if (kind && mod == '-') {
                        while (te > ts && is_space((unsigned char)s[te - 1]))
                                te--;
                } else if (kind && kind != '{' && mod != '+' && c->lstrip_blocks) {
                        size_t k = te;
                        while (k > ts && (s[k - 1] == ' ' || s[k - 1] == '\t'))
                                k--;
                        bool line_start = k > text_start ? s[k - 1] == '\n'
                                                         : (text_start == 0 || s[text_start - 1] == '\n');
                        if (k == ts && k > text_start)
                                line_start = s[k - 1] == '\n';
                        if (line_start)
                                te = k;
                }
                if (te > ts) {
                        struct tok *t = push_tok(c, T_TEXT, line);
                        t->p = s + ts;
                        t->n = te - ts;
                }
                line += count_lines(s + text_start, j - text_start);
                if (!kind)
                        break;
                i = j + 2;
                if (mod == '-' || mod == '+')
                        i++;
                bool plus = false;
                if (kind == '#') {
                        size_t k = i;
                        while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}'))
                                k++;
                        if (k + 1 >= n) {
                                c->line = line;
                                fail(c, -EINVAL, "unterminated comment");
                        }
                        strip_next = k > i && s[k - 1] == '-';
                        plus = k > i && s[k - 1] == '+';
                        line += count_lines(s + i, k - i);
                        i = k + 2;
                } else if (kind == '{') {
                        push_tok(c, T_VAR_BEGIN, line);
                        i = lex_tag(c, i, '}', &line, &strip_next, &plus);
                        push_tok(c, T_VAR_END, line);
                        continue;
                } else {
                        size_t first = c->ntoks;
                        push_tok(c, T_BLOCK_BEGIN, line);
                        i = lex_tag(c, i, '%', &line, &strip_next, &plus);
                        push_tok(c, T_BLOCK_END, line);
                        /* {% raw %} ... {% endraw %}: the text between is data */
                        if (c->ntoks == first + 3 && c->toks[first + 1].t == T_NAME && c->toks[first + 1].n == 3 &&
                            memcmp(c->toks[first + 1].p, "raw", 3) == 0) {
                                c->ntoks = first;
                                size_t k = i;
                                const char *end = NULL;
                                for (; k + 1 < n; k++) {
                                        if (s[k] == '{' && s[k + 1] == '%') {
                                                size_t m = k + 2;
                                                if (m < n && s[m] == '-')
                                                        m++;
                                                while (m < n && is_space((unsigned char)s[m]))
                                                        m++;
                                                if (n - m >= 6 && memcmp(s + m, "endraw", 6) == 0) {
                                                        end = s + k;
                                                        break;
                                                }
                                        }
                                }
                                if (!end) {
                                        c->line = line;
                                        fail(c, -EINVAL, "missing endraw");
                                }
                                if (c->trim_blocks && !strip_next && !plus && i < n && s[i] == '\n')
                                        i++;
                                size_t a = i, b = (size_t)(end - s);
                                if (strip_next)
                                        while (a < b && is_space((unsigned char)s[a]))
                                                a++;
                                if (b > a) {
                                        struct tok *t = push_tok(c, T_TEXT, line);
                                        t->p = s + a;
                                        t->n = b - a;
                                }
                                line += count_lines(s + i, b - i);
                                size_t m = b + 2;
                                if (m < n && s[m] == '-') {
                                        while (c->ntoks > 0 && c->toks[c->ntoks - 1].t == T_TEXT) {
                                                struct tok *t = &c->toks[c->ntoks - 1];
                                                while (t->n && is_space((unsigned char)t->p[t->n - 1]))
                                                        t->n--;
                                                break;
                                        }
                                }
                                while (m + 1 < n && !(s[m] == '%' && s[m + 1] == '}'))
                                        m++;
                                strip_next = m > 0 && s[m - 1] == '-';
                                plus = m > 0 && s[m - 1] == '+';
                                i = m + 2 > n ? n : m + 2;
                        }
                }
                if (c->trim_blocks && !strip_next && !plus && i < n && s[i] == '\n') {
                        i++;
                        line++;
                }
        }
        push_tok(c, T_EOF, line);
}

/* ------------------------------------------------------------------ parser */

static struct tok *peek(struct ctx *c) { return &c->toks[c->pos]; }
static struct tok *peek2(struct ctx *c) { return &c->toks[c->pos + 1 < c->ntoks ? c->pos + 1 : c->pos]; }
static struct tok *next(struct ctx *c) {
        struct tok *t = &c->toks[c->pos];
        if (c->pos + 1 < c->ntoks)
                c->pos++;
        return t;
}

static bool is_name(const struct tok *t, const char *w) {
        return t->t == T_NAME && t->n == strlen(w) && memcmp(t->p, w, t->n) == 0;
}
static bool is_op(const struct tok *t, int op) { return t->t == T_OP && t->op == op; }

static _Noreturn void syntax(struct ctx *c, const char *what) {
        struct tok *t = peek(c);
        c->line = t->line;
        if (t->t == T_NAME || t->t == T_STR)
                fail(c, -EINVAL, "syntax error: expected %s, got '%.*s'", what, (int)(t->n > 40 ? 40 : t->n), t->p);
        if (t->t == T_OP)
                fail(c, -EINVAL, "syntax error: expected %s, got '%c%c'", what,
                     t->op > 255 ? t->op >> 8 : t->op, t->op > 255 ? t->op & 0xff : ' ');
        fail(c, -EINVAL, "syntax error: expected %s", what);
}

static void expect_op(struct ctx *c, int op, const char *what) {
        if (!is_op(peek(c), op))
                syntax(c, what);
        next(c);
}

static const char *expect_name(struct ctx *c) {
        if (peek(c)->t != T_NAME)
                syntax(c, "a name");
        struct tok *t = next(c);
        return sdup(c, t->p, t->n);
}

static struct node *mk(struct ctx *c, enum nk k, int line) {
        struct node *nd = alloc(c, sizeof *nd);
        nd->k = k;
        nd->line = line;
        return nd;
}

struct nodes {
        struct node **v;
        size_t n, cap;
};

static void nodes_push(struct ctx *c, struct nodes *ns, struct node *nd) {
        grow(c, (void **)&ns->v, &ns->cap, ns->n, sizeof *ns->v);
        ns->v[ns->n++] = nd;
}

static struct node *parse_expr(struct ctx *c);
static struct node *parse_or(struct ctx *c);
static struct node *parse_unary(struct ctx *c);

static void enter(struct ctx *c) {
        if (++c->depth > c->lim.max_depth) {
                c->line = peek(c)->line;
                fail(c, -E2BIG, "nesting deeper than %zu", c->lim.max_depth);
        }
}

/* Call arguments after '(' up to ')': positional, then name=value. */
static void parse_args(struct ctx *c, struct node *call) {
        struct nodes args = {0};
        const char **names = NULL;
        size_t capn = 0, nn = 0;
        while (!is_op(peek(c), ')')) {
                const char *kw = NULL;
                if (peek(c)->t == T_NAME && is_op(peek2(c), '=')) {
                        kw = expect_name(c);
                        next(c);
                }
                nodes_push(c, &args, parse_expr(c));
                grow(c, (void **)&names, &capn, nn, sizeof *names);
                names[nn++] = kw;
                if (!is_op(peek(c), ','))
                        break;
                next(c);
        }
        expect_op(c, ')', "')'");
        call->kids = args.v;
        call->n = args.n;
        call->names = names;
        call->nnames = nn;
}

static struct node *parse_primary(struct ctx *c) {
        struct tok *t = peek(c);
        int line = t->line;
        struct node *nd;
        if (t->t == T_INT || t->t == T_FLOAT || t->t == T_STR) {
                next(c);
                nd = mk(c, N_LIT, line);
                if (t->t == T_INT)
                        nd->lit = vint(t->i);
                else if (t->t == T_FLOAT)
                        nd->lit = vfloat(t->f);
                else {
                        /* adjacent string literals concatenate */
                        struct sb b = {.c = c};
                        sb_addn(&b, t->p, t->n);
                        while (peek(c)->t == T_STR) {
                                struct tok *u = next(c);
                                sb_addn(&b, u->p, u->n);
                        }
                        nd->lit = sb_val(&b);
                }
                return nd;
        }
        if (t->t == T_NAME) {
                next(c);
                nd = mk(c, N_LIT, line);
                if (is_name(t, "true") || is_name(t, "True"))
                        nd->lit = vbool(true);
                else if (is_name(t, "false") || is_name(t, "False"))
                        nd->lit = vbool(false);
                else if (is_name(t, "none") || is_name(t, "None"))
                        nd->lit = vnone();
                else {
                        nd->k = N_NAME;
                        nd->name = sdup(c, t->p, t->n);
                }
                return nd;
        }
        if (is_op(t, '(')) {
                next(c);
                if (is_op(peek(c), ')')) {
                        next(c);
                        return mk(c, N_TUPLE, line);
                }
                struct node *e = parse_expr(c);
                if (is_op(peek(c), ',')) {
                        struct nodes items = {0};
                        nodes_push(c, &items, e);
                        while (is_op(peek(c), ',')) {
                                next(c);
                                if (is_op(peek(c), ')'))
                                        break;
                                nodes_push(c, &items, parse_expr(c));
                        }
                        e = mk(c, N_TUPLE, line);
                        e->kids = items.v;
                        e->n = items.n;
                }
                expect_op(c, ')', "')'");
                return e;
        }
        if (is_op(t, '[')) {
                next(c);
                struct nodes items = {0};
                while (!is_op(peek(c), ']')) {
                        nodes_push(c, &items, parse_expr(c));
                        if (!is_op(peek(c), ','))
                                break;
                        next(c);
                }
                expect_op(c, ']', "']'");
                nd = mk(c, N_LIST, line);
                nd->kids = items.v;
                nd->n = items.n;
                return nd;
        }
        if (is_op(t, '{')) {
                next(c);
                struct nodes items = {0};
                while (!is_op(peek(c), '}')) {
                        nodes_push(c, &items, parse_expr(c));
                        expect_op(c, ':', "':'");
                        nodes_push(c, &items, parse_expr(c));
                        if (!is_op(peek(c), ','))
                                break;
                        next(c);
                }
                expect_op(c, '}', "'}'");
                nd = mk(c, N_DICT, line);
                nd->kids = items.v;
                nd->n = items.n;
                return nd;
        }
        syntax(c, "an expression");
}

static struct node *parse_postfix(struct ctx *c, struct node *e) {
        for (;;) {
                struct tok *t = peek(c);
                if (is_op(t, '.')) {
                        next(c);
                        struct node *g = mk(c, N_GETATTR, t->line);
                        g->a = e;
                        if (peek(c)->t == T_INT) {
                                g->k = N_GETITEM;
                                g->b = mk(c, N_LIT, t->line);
                                g->b->lit = vint(next(c)->i);
                        } else
                                g->name = expect_name(c);
                        e = g;
                } else if (is_op(t, '[')) {
                        next(c);
                        struct node *parts[3] = {0};
                        int np = 0;
                        bool slice = false;
                        for (;;) {
                                if (!is_op(peek(c), ':') && !is_op(peek(c), ']'))
                                        parts[np] = parse_expr(c);
                                if (is_op(peek(c), ':') && np < 2) {
                                        next(c);
                                        slice = true;
                                        np++;
                                        continue;
                                }
                                break;
                        }
                        expect_op(c, ']', "']'");
                        struct node *g = mk(c, slice ? N_SLICE : N_GETITEM, t->line);
                        g->a = e;
                        g->b = parts[0];
                        g->c = parts[1];
                        g->d = parts[2];
                        if (!slice && !parts[0])
                                syntax(c, "a subscript");
                        e = g;
                } else if (is_op(t, '(')) {
                        next(c);
                        struct node *call = mk(c, N_CALL, t->line);
                        call->a = e;
                        parse_args(c, call);
                        e = call;
                } else
                        return e;
        }
}

/* filters and tests after a unary operand: x | f(args) | g, x is t */
static struct node *parse_filters(struct ctx *c, struct node *e) {
        while (is_op(peek(c), '|')) {
                int line = next(c)->line;
                struct node *f = mk(c, N_FILTER, line);
                f->a = e;
                f->name = expect_name(c);
                if (is_op(peek(c), '(')) {
                        next(c);
                        parse_args(c, f);
                }
                e = f;
        }
        return e;
}

/* As jinja2 parses them, filters apply to the negated operand: -3 | abs is 3. */
static struct node *parse_unary_f(struct ctx *c, bool with_filter) {
        enter(c);
        struct tok *t = peek(c);
        struct node *e;
        if (is_op(t, '-') || is_op(t, '+')) {
                next(c);
                e = mk(c, t->op == '-' ? N_NEG : N_POS, t->line);
                e->a = parse_unary_f(c, false);
        } else {
                e = parse_postfix(c, parse_primary(c));
        }
        if (with_filter)
                e = parse_filters(c, e);
        c->depth--;
        return e;
}

static struct node *parse_unary(struct ctx *c) { return parse_unary_f(c, true); }

/* One level of left-associative binary operators, operand (op operand)*,
 * ops ending with 0: the levels below differ only in their operators and
 * in the level they are made of. */
static struct node *parse_binary(struct ctx *c, struct node *(*operand)(struct ctx *c), const int *ops) {
        struct node *e = operand(c);
        for (;;) {
                struct tok *t = peek(c);
                const int *op = ops;
                while (*op && !is_op(t, *op))
                        op++;
                if (!*op)
                        return e;
                next(c);
                struct node *b = mk(c, N_BIN, t->line);
                b->op = t->op;
                b->a = e;
                b->b = operand(c);
                e = b;
        }
}

static struct node *parse_pow(struct ctx *c) {
        return parse_binary(c, parse_unary, (const int[]){ OP2('*', '*'), 0 });
}

static struct node *parse_mul(struct ctx *c) {
        return parse_binary(c, parse_pow, (const int[]){ '*', '/', OP2('/', '/'), '%', 0 });
}

static struct node *parse_add(struct ctx *c) {
        return parse_binary(c, parse_mul, (const int[]){ '+', '-', 0 });
}

static struct node *parse_concat(struct ctx *c) {
        return parse_binary(c, parse_add, (const int[]){ '~', 0 });
}

enum { OP_IN = 1000, OP_NOTIN };

static struct node *parse_cmp(struct ctx *c) {
        struct node *e = parse_concat(c);
        for (;;) {
                struct tok *t = peek(c);
                int op = 0;
                if (t->t == T_OP && (t->op == OP2('=', '=') || t->op == OP2('!', '=') || t->op == '<' ||
                                     t->op == '>' || t->op == OP2('<', '=') || t->op == OP2('>', '=')))
                        op = t->op;
                else if (is_name(t, "in"))
                        op = OP_IN;
                else if (is_name(t, "not") && is_name(peek2(c), "in")) {
                        next(c);
                        op = OP_NOTIN;
                } else if (is_name(t, "is")) {
                        next(c);
                        struct node *tst = mk(c, N_TEST, t->line);
                        if (is_name(peek(c), "not")) {
                                next(c);
                                tst->neg = true;
                        }
                        tst->a = e;
                        struct tok *nt = peek(c);
                        if (is_name(nt, "none") || is_name(nt, "true") || is_name(nt, "false")) {
                                next(c);
                                tst->name = sdup(c, nt->p, nt->n);
                        } else
                                tst->name = expect_name(c);
                        if (is_op(peek(c), '(')) {
                                next(c);
                                parse_args(c, tst);
                        } else {
                                /* a test with one argument without parentheses: x is divisibleby 3 */
                                struct tok *u = peek(c);
                                if (u->t == T_INT || u->t == T_FLOAT || u->t == T_STR ||
                                    (u->t == T_NAME && !is_name(u, "and") && !is_name(u, "or") && !is_name(u, "else") &&
                                     !is_name(u, "if") && !is_name(u, "in") && !is_name(u, "is") && !is_name(u, "not") &&
                                     !is_name(u, "recursive"))) {
                                        struct nodes a = {0};
                                        nodes_push(c, &a, parse_concat(c));
                                        tst->kids = a.v;
                                        tst->n = 1;
                                        tst->names = alloc(c, sizeof *tst->names);
                                        tst->nnames = 1;
                                }
                        }
                        e = tst;
                        continue;
                }
                if (!op)
                        return e;
                next(c);
                struct node *b = mk(c, N_CMP, t->line);
                b->op = op;
                b->a = e;
                b->b = parse_concat(c);
                e = b;
        }
}

static struct node *parse_not(struct ctx *c) {
        if (is_name(peek(c), "not")) {
                enter(c);
                struct node *e = mk(c, N_NOT, next(c)->line);
                e->a = parse_not(c);
                c->depth--;
                return e;
        }
        return parse_cmp(c);
}

/* and, or: left-associative too, by keyword. */
static struct node *parse_logic(struct ctx *c, struct node *(*operand)(struct ctx *c), const char *word, enum nk k) {
        struct node *e = operand(c);
        while (is_name(peek(c), word)) {
                struct node *b = mk(c, k, next(c)->line);
                b->a = e;
                b->b = operand(c);
                e = b;
        }
        return e;
}

static struct node *parse_and(struct ctx *c) {
        return parse_logic(c, parse_not, "and", N_AND);
}

static struct node *parse_or(struct ctx *c) {
        return parse_logic(c, parse_and, "or", N_OR);
}

static struct node *parse_expr(struct ctx *c) {
        enter(c);
        struct node *e = parse_or(c);
        while (is_name(peek(c), "if")) {
                struct node *ce = mk(c, N_COND, next(c)->line);
                ce->a = parse_or(c);
                ce->b = e;
                if (is_name(peek(c), "else")) {
                        next(c);
                        ce->c = parse_expr(c);
                }
                e = ce;
        }
        c->depth--;
        return e;
}

static void expect_block_end(struct ctx *c) {
        if (peek(c)->t != T_BLOCK_END)
                syntax(c, "'%}'");
        next(c);
}

/* Parses statements until a block tag whose name is one of stops (NULL
 * terminated); leaves the parser on that name (after {%). */
static struct node *parse_body(struct ctx *c, const char *const *stops);

static struct node *parse_block_tag(struct ctx *c, int line) {
        struct tok *t = peek(c);
        if (t->t != T_NAME)
                syntax(c, "a statement");
        const char *const stop_if[] = {"elif", "else", "endif", NULL};
        if (is_name(t, "if")) {
                next(c);
                struct node *nd = mk(c, N_IF, line);
                nd->a = parse_expr(c);
                expect_block_end(c);
                nd->b = parse_body(c, stop_if);
                struct node *cur = nd;
                for (;;) {
                        struct tok *u = next(c);
                        if (is_name(u, "elif")) {
                                struct node *e = mk(c, N_IF, u->line);
                                e->a = parse_expr(c);
                                expect_block_end(c);
                                e->b = parse_body(c, stop_if);
                                cur->c = e;
                                cur = e;
                        } else if (is_name(u, "else")) {
                                expect_block_end(c);
                                const char *const stop_end[] = {"endif", NULL};
                                cur->c = parse_body(c, stop_end);
                                next(c);
                                expect_block_end(c);
                                break;
                        } else {
                                expect_block_end(c);
                                break;
                        }
                }
                return nd;
        }
        if (is_name(t, "for")) {
                next(c);
                struct node *nd = mk(c, N_FOR, line);
                const char **names = NULL;
                size_t cap = 0, nn = 0;
                bool paren = is_op(peek(c), '(');
                if (paren)
                        next(c);
                for (;;) {
                        grow(c, (void **)&names, &cap, nn, sizeof *names);
                        names[nn++] = expect_name(c);
                        if (!is_op(peek(c), ','))
                                break;
                        next(c);
                }
                if (paren)
                        expect_op(c, ')', "')'");
                nd->names = names;
                nd->nnames = nn;
                if (!is_name(peek(c), "in"))
                        syntax(c, "'in'");
                next(c);
                nd->a = parse_or(c);
                if (is_name(peek(c), "if")) {
                        next(c);
                        nd->d = parse_or(c);
                }
                if (is_name(peek(c), "recursive"))
                        syntax(c, "'%}' (recursive loops are not supported)");
                expect_block_end(c);
                const char *const stops[] = {"else", "endfor", NULL};
                nd->b = parse_body(c, stops);
                if (is_name(next(c), "else")) {
                        expect_block_end(c);
                        const char *const stop_end[] = {"endfor", NULL};
                        nd->c = parse_body(c, stop_end);
                        next(c);
                }
                expect_block_end(c);
                return nd;
        }
        if (is_name(t, "set")) {
                next(c);
                const char *name = expect_name(c);
                if (is_op(peek(c), '.')) {
                        next(c);
                        struct node *nd = mk(c, N_SET, line);
                        nd->a = mk(c, N_NAME, line);
                        nd->a->name = name;
                        nd->name = expect_name(c);
                        expect_op(c, '=', "'='");
                        nd->b = parse_expr(c);
                        expect_block_end(c);
                        return nd;
                }
                const char **names = NULL;
                size_t cap = 0, nn = 0;
                grow(c, (void **)&names, &cap, nn, sizeof *names);
                names[nn++] = name;
                while (is_op(peek(c), ',')) {
                        next(c);
                        grow(c, (void **)&names, &cap, nn, sizeof *names);
                        names[nn++] = expect_name(c);
                }
                if (peek(c)->t == T_BLOCK_END || is_op(peek(c), '|')) {
                        if (nn != 1)
                                syntax(c, "'='");
                        struct node *nd = mk(c, N_SETBLOCK, line);
                        nd->name = name;
                        struct node *filt = NULL;
                        if (is_op(peek(c), '|')) {
                                /* {% set x | filter %}: the filters apply to the captured text */
                                filt = parse_filters(c, mk(c, N_LIT, line));
                        }
                        expect_block_end(c);
                        const char *const stops[] = {"endset", NULL};
                        nd->b = parse_body(c, stops);
                        next(c);
                        expect_block_end(c);
                        nd->a = filt;
                        return nd;
                }
                expect_op(c, '=', "'='");
                struct node *nd = mk(c, N_SET, line);
                nd->names = names;
                nd->nnames = nn;
                nd->b = parse_expr(c);
                if (is_op(peek(c), ',')) { /* set a, b = x, y */
                        struct nodes items = {0};
                        nodes_push(c, &items, nd->b);
                        while (is_op(peek(c), ',')) {
                                next(c);
                                nodes_push(c, &items, parse_expr(c));
                        }
                        nd->b = mk(c, N_TUPLE, line);
                        nd->b->kids = items.v;
                        nd->b->n = items.n;
                }
                expect_block_end(c);
                return nd;
        }
        if (is_name(t, "macro") || is_name(t, "call")) {
                bool is_call = is_name(t, "call");
                next(c);
                struct node *nd = mk(c, is_call ? N_CALLBLOCK : N_MACRO, line);
                struct node *params = mk(c, N_CALL, line); /* names and defaults */
                if (is_call && is_op(peek(c), '(')) {
                        next(c);
                        parse_args(c, params);
                } else if (!is_call) {
                        nd->name = expect_name(c);
                        expect_op(c, '(', "'('");
                        parse_args(c, params);
                }
                /* params: each is N_NAME (no default) or name=default */
                const char **names = alloc(c, (params->n + 1) * sizeof *names);
                struct node **defs = alloc(c, (params->n + 1) * sizeof *defs);
                for (size_t i = 0; i < params->n; i++) {
                        if (params->names[i]) {
                                names[i] = params->names[i];
                                defs[i] = params->kids[i];
                        } else if (params->kids[i]->k == N_NAME) {
                                names[i] = params->kids[i]->name;
                                defs[i] = NULL;
                        } else {
                                c->line = line;
                                fail(c, -EINVAL, "syntax error: a macro parameter must be a name");
                        }
                }
                nd->names = names;
                nd->nnames = params->n;
                nd->kids = defs;
                nd->n = params->n;
                if (is_call)
                        nd->a = parse_expr(c);
                expect_block_end(c);
                const char *const stops_m[] = {"endmacro", NULL};
                const char *const stops_c[] = {"endcall", NULL};
                nd->b = parse_body(c, is_call ? stops_c : stops_m);
                next(c);
                if (peek(c)->t == T_NAME && !is_call)
                        next(c); /* {% endmacro name %} */
                expect_block_end(c);
                return nd;
        }
        if (is_name(t, "filter")) {
                next(c);
                struct node *nd = mk(c, N_FILTERBLOCK, line);
                struct node *f = mk(c, N_FILTER, line); /* {% filter name(args) | more %} */
                f->a = mk(c, N_LIT, line);
                f->name = expect_name(c);
                if (is_op(peek(c), '(')) {
                        next(c);
                        parse_args(c, f);
                }
                nd->a = parse_filters(c, f);
                expect_block_end(c);
                const char *const stops[] = {"endfilter", NULL};
                nd->b = parse_body(c, stops);
                next(c);
                expect_block_end(c);
                return nd;
        }
        if (is_name(t, "break") || is_name(t, "continue")) {
                struct node *nd = mk(c, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
                next(c);
                expect_block_end(c);
                return nd;
        }
        if (is_name(t, "do")) {
                next(c);
                struct node *nd = mk(c, N_SET, line); /* evaluated, discarded */
                nd->b = parse_expr(c);
                expect_block_end(c);
                return nd;
        }
        c->line = line;
        fail(c, -EINVAL, "syntax error: unknown statement '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
}

static struct node *parse_body(struct ctx *c, const char *const *stops) {
        enter(c);
        struct nodes body = {0};
        int line = peek(c)->line;
        for (;;) {
                struct tok *t = peek(c);
                if (t->t == T_EOF) {
                        if (stops) {
                                c->line = t->line;
                                fail(c, -EINVAL, "syntax error: unexpected end of template, expected '%s'", stops[0]);
                        }
                        break;
                }
                if (t->t == T_TEXT) {
                        next(c);
                        struct node *nd = mk(c, N_TEXT, t->line);
                        nd->lit = vstr(t->p, t->n);
                        nodes_push(c, &body, nd);
                        continue;
                }
                if (t->t == T_VAR_BEGIN) {
                        next(c);
                        struct node *nd = mk(c, N_OUTPUT, t->line);
                        nd->a = parse_expr(c);
                        if (peek(c)->t != T_VAR_END)
                                syntax(c, "'}}'");
                        next(c);
                        nodes_push(c, &body, nd);
                        continue;
                }
                if (t->t == T_BLOCK_BEGIN) {
                        next(c);
                        struct tok *u = peek(c);
                        bool stop = false;
                        for (size_t i = 0; stops && stops[i]; i++)
                                if (is_name(u, stops[i]))
                                        stop = true;
                        if (stop)
                                break;
                        nodes_push(c, &body, parse_block_tag(c, t->line));
                        continue;
                }
                syntax(c, "text or a tag");
        }
        struct node *nd = mk(c, N_BODY, line);
        nd->kids = body.v;
        nd->n = body.n;
        c->depth--;
        return nd;
}

/* ------------------------------------------------------------------ evaluator */

static struct val eval(struct ctx *c, struct node *e, struct scope *sc);
static void exec(struct ctx *c, struct node *s, struct scope *sc);

static struct scope *scope_new(struct ctx *c, struct scope *parent) {
        struct scope *s = alloc(c, sizeof *s);
        s->parent = parent;
        return s;
}

static struct val lookup(struct scope *sc, const char *name) {
        size_t n = strlen(name);
        for (; sc; sc = sc->parent) {
                struct val *v = dict_findc(&sc->vars, name, n);
                if (v)
                        return *v;
        }
        return vundef(name);
}

static void out_add(struct ctx *c, const char *p, size_t n) {
        if (c->outlen + n > c->lim.max_output)
                fail(c, -E2BIG, "the rendered text is longer than %zu bytes", c->lim.max_output);
        if (lmp_grow(&c->out, &c->outcap, c->outlen + n + 1, 1, 4096) < 0)
                fail(c, -ENOMEM, "out of memory");
        memcpy(c->out + c->outlen, p, n);
        c->outlen += n;
        c->out[c->outlen] = '\0';
}

static void tick(struct ctx *c) {
        if (++c->iterations > c->lim.max_iterations)
                fail(c, -E2BIG, "more than %zu loop iterations and calls", c->lim.max_iterations);
}

static _Noreturn void undefined_error(struct ctx *c, const struct val *v) {
        if (v->uname)
                fail(c, -EINVAL, "'%s' is undefined", v->uname);
        fail(c, -EINVAL, "a value is undefined");
}

static struct val getattr_str(struct ctx *c, struct val obj, const char *name);

static bool is_str_method(const char *n) {
        static const char *const m[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
                                        "upper", "lower", "replace", "title", "capitalize", "format", "join",
                                        "find", "rfind", "count", "splitlines", "isdigit", "isalpha", "isspace",
                                        "index", NULL};
        for (size_t i = 0; m[i]; i++)
                if (strcmp(m[i], n) == 0)
                        return true;
        return false;
}

static struct val method(struct ctx *c, struct val self, const char *name) {
        struct val v = {.t = V_METHOD};
        v.m = alloc(c, sizeof *v.m);
        v.m->self = self;
        v.m->name = name;
        return v;
}

/* obj.name: an attribute first (methods of str and dict), then an item, as
 * jinja2's getattr does. */
static struct val getattr_str(struct ctx *c, struct val obj, const char *name) {
        switch (obj.t) {
        case V_UNDEF:
                undefined_error(c, &obj);
        case V_STR:
                if (is_str_method(name))
                        return method(c, obj, name);
                break;
        case V_DICT:
                if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values") || !strcmp(name, "get"))
                        return method(c, obj, name);
                {
                        struct val *v = dict_findc(obj.d, name, strlen(name));
                        if (v)
                                return *v;
                }
                break;
        case V_NS: {
                struct val *v = dict_findc(obj.d, name, strlen(name));
                if (v)
                        return *v;
                break;
        }
        case V_LIST:
                if (!strcmp(name, "append") || !strcmp(name, "pop") || !strcmp(name, "insert") ||
                    !strcmp(name, "extend") || !strcmp(name, "remove") || !strcmp(name, "clear"))
                        fail(c, -EINVAL, "access to attribute '%s' of 'list' object is unsafe", name);
                if (!strcmp(name, "index") || !strcmp(name, "count"))
                        return method(c, obj, name);
                break;
        default:
                break;
        }
        return vundef(name);
}

static long long to_index(struct ctx *c, const struct val *v) {
        if (v->t == V_INT)
                return v->i;
        if (v->t == V_BOOL)
                return v->b;
        fail(c, -EINVAL, "indices must be integers, not %s", type_name(v));
}

static struct val getitem(struct ctx *c, struct val obj, struct val key) {
        switch (obj.t) {
        case V_UNDEF:
                undefined_error(c, &obj);
        case V_DICT: {
                struct val *v = dict_find(obj.d, &key);
                if (v)
                        return *v;
                if (key.t == V_STR)
                        return getattr_str(c, obj, sdup(c, key.s.p, key.s.n));
                return vundef(NULL);
        }
        case V_LIST: {
                if (obj.gen)
                        fail(c, -EINVAL, "'generator' object is not subscriptable");
                if (key.t != V_INT && key.t != V_BOOL)
                        return key.t == V_STR ? getattr_str(c, obj, sdup(c, key.s.p, key.s.n)) : vundef(NULL);
                long long i = to_index(c, &key), n = (long long)obj.l->n;
                if (i < 0)
                        i += n;
                if (i < 0 || i >= n)
                        return vundef(NULL);
                return obj.l->v[i];
        }
        case V_STR: {
                if (key.t != V_INT && key.t != V_BOOL)
                        return key.t == V_STR ? getattr_str(c, obj, sdup(c, key.s.p, key.s.n)) : vundef(NULL);
                long long i = to_index(c, &key), n = (long long)cp_count(obj.s.p, obj.s.n);
                if (i < 0)
                        i += n;
                if (i < 0 || i >= n)
                        return vundef(NULL);
                size_t a = cp_offset(obj.s.p, obj.s.n, (size_t)i), b = cp_offset(obj.s.p, obj.s.n, (size_t)i + 1);
                return vstr(obj.s.p + a, b - a);
        }
        case V_NS:
                if (key.t == V_STR)
                        return getattr_str(c, obj, sdup(c, key.s.p, key.s.n));
                return vundef(NULL);
        default:
                return vundef(NULL);
        }
}

static long long slice_bound(long long v, long long n) {
        if (v < 0) {
                v += n;
                if (v < 0)
                        v = 0;
        }
        if (v > n)
                v = n;
        return v;
}

static struct val do_slice(struct ctx *c, struct val obj, struct val *pa, struct val *pb, struct val *ps) {
        long long step = ps && ps->t != V_NONE ? to_index(c, ps) : 1;
        if (step == 0)
                fail(c, -EINVAL, "slice step cannot be zero");
        long long n;
        if (obj.t == V_LIST)
                n = (long long)obj.l->n;
        else if (obj.t == V_STR)
                n = (long long)cp_count(obj.s.p, obj.s.n);
        else if (obj.t == V_UNDEF)
                undefined_error(c, &obj);
        else
                fail(c, -EINVAL, "'%s' object is not subscriptable", type_name(&obj));
        long long a, b;
        if (step > 0) {
                a = pa && pa->t != V_NONE ? slice_bound(to_index(c, pa), n) : 0;
                b = pb && pb->t != V_NONE ? slice_bound(to_index(c, pb), n) : n;
        } else {
                a = n - 1;
                b = -1;
                if (pa && pa->t != V_NONE) {
                        a = to_index(c, pa);
                        if (a < 0)
                                a += n;
                        if (a < -1)
                                a = -1;
                        if (a >= n)
                                a = n - 1;
                }
                if (pb && pb->t != V_NONE) {
                        b = to_index(c, pb);
                        if (b < 0)
                                b += n;
                        if (b < -1)
                                b = -1;
                        if (b >= n)
                                b = n - 1;
                }
        }
        if (obj.t == V_LIST) {
                struct val r = vlist(c);
                for (long long i = a; step > 0 ? i < b : i > b; i += step)
                        list_push(c, r.l, obj.l->v[i]);
                return r;
        }
        if (step == 1) {
                if (b <= a)
                        return vstr("", 0);
                size_t x = cp_offset(obj.s.p, obj.s.n, (size_t)a), y = cp_offset(obj.s.p, obj.s.n, (size_t)b);
                return vstr(obj.s.p + x, y - x);
        }
        struct sb sbuf = {.c = c};
        for (long long i = a; step > 0 ? i < b : i > b; i += step) {
                size_t x = cp_offset(obj.s.p, obj.s.n, (size_t)i), y = cp_offset(obj.s.p, obj.s.n, (size_t)i + 1);
                sb_addn(&sbuf, obj.s.p + x, y - x);
        }
        return sb_val(&sbuf);
}

/* Iterating a value: a list's items, a dict's keys, a string's characters. */
static struct val iter_list(struct ctx *c, struct val v) {
        switch (v.t) {
        case V_LIST:
                return v;
        case V_UNDEF:
                return vlist(c);
        case V_DICT: {
                struct val r = vlist(c);
                for (size_t i = 0; i < v.d->n; i++)
                        list_push(c, r.l, v.d->k[i]);
                return r;
        }
        case V_STR: {
                struct val r = vlist(c);
                for (size_t i = 0; i < v.s.n;) {
                        size_t j = i + 1;
                        while (j < v.s.n && ((unsigned char)v.s.p[j] & 0xc0) == 0x80)
                                j++;
                        list_push(c, r.l, vstr(v.s.p + i, j - i));
                        i = j;
                }
                return r;
        }
        default:
                fail(c, -EINVAL, "'%s' object is not iterable", type_name(&v));
        }
}

static int compare(struct ctx *c, const struct val *a, const struct val *b, const char *op) {
        if (is_num(a) && is_num(b)) {
                double x = num(a), y = num(b);
                if (a->t != V_FLOAT && b->t != V_FLOAT) {
                        long long i = a->t == V_INT ? a->i : a->b, j = b->t == V_INT ? b->i : b->b;
                        return i < j ? -1 : i > j;
                }
                return x < y ? -1 : x > y;
        }
        if (a->t == V_STR && b->t == V_STR) {
                size_t m = a->s.n < b->s.n ? a->s.n : b->s.n;
                int r = memcmp(a->s.p, b->s.p, m);
                if (r)
                        return r < 0 ? -1 : 1;
                return a->s.n < b->s.n ? -1 : a->s.n > b->s.n;
        }
        if (a->t == V_LIST && b->t == V_LIST) {
                for (size_t i = 0; i < a->l->n && i < b->l->n; i++) {
                        if (!equal(&a->l->v[i], &b->l->v[i]))
                                return compare(c, &a->l->v[i], &b->l->v[i], op);
                }
                return a->l->n < b->l->n ? -1 : a->l->n > b->l->n;
        }
        if (a->t == V_UNDEF)
                undefined_error(c, a);
        if (b->t == V_UNDEF)
                undefined_error(c, b);
        fail(c, -EINVAL, "'%s' not supported between instances of '%s' and '%s'", op, type_name(a), type_name(b));
}

static bool contains(struct ctx *c, const struct val *hay, const struct val *needle) {
        switch (hay->t) {
        case V_STR:
                if (needle->t != V_STR)
                        fail(c, -EINVAL, "'in <string>' requires string as left operand, not %s", type_name(needle));
                if (needle->s.n == 0)
                        return true;
                for (size_t i = 0; i + needle->s.n <= hay->s.n; i++)
                        if (memcmp(hay->s.p + i, needle->s.p, needle->s.n) == 0)
                                return true;
                return false;
        case V_LIST:
                for (size_t i = 0; i < hay->l->n; i++)
                        if (equal(&hay->l->v[i], needle))
                                return true;
                return false;
        case V_DICT:
        case V_NS:
                return dict_find(hay->d, needle) != NULL;
        case V_UNDEF: /* Undefined iterates as empty */
                return false;
        default:
                fail(c, -EINVAL, "argument of type '%s' is not iterable", type_name(hay));
        }
}

/* Appends v; when the result is markup and v is not, HTML-escaped. */
static void add_maybe_escaped(struct sb *b, const struct val *v, bool safe) {
        if (!safe || v->safe) {
                sb_addn(b, v->s.p, v->s.n);
                return;
        }
        for (size_t i = 0; i < v->s.n; i++) {
                char ch = v->s.p[i];
                switch (ch) {
                case '&': sb_add(b, "&amp;"); break;
                case '<': sb_add(b, "&lt;"); break;
                case '>': sb_add(b, "&gt;"); break;
                case '"': sb_add(b, "&#34;"); break;
                case '\'': sb_add(b, "&#39;"); break;
                default: sb_ch(b, ch);
                }
        }
}

static struct val binop(struct ctx *c, int op, struct val a, struct val b) {
        if (op == '~') {
                struct sb s = {.c = c};
                to_str(&s, &a);
                to_str(&s, &b);
                return sb_val(&s);
        }
        if (a.t == V_UNDEF)
                undefined_error(c, &a);
        if (b.t == V_UNDEF)
                undefined_error(c, &b);
        if (op == '+' && a.t == V_STR && b.t == V_STR) {
                struct sb s = {.c = c};
                bool safe = a.safe || b.safe;
                add_maybe_escaped(&s, &a, safe);
                add_maybe_escaped(&s, &b, safe);
                struct val r = sb_val(&s);
                r.safe = safe;
                return r;
        }
        if (op == '+' && a.t == V_LIST && b.t == V_LIST) {
                struct val r = vlist(c);
                for (size_t i = 0; i < a.l->n; i++)
                        list_push(c, r.l, a.l->v[i]);
                for (size_t i = 0; i < b.l->n; i++)
                        list_push(c, r.l, b.l->v[i]);
                return r;
        }
        if (op == '*' && ((a.t == V_STR && (b.t == V_INT || b.t == V_BOOL)) || (b.t == V_STR && (a.t == V_INT || a.t == V_BOOL)))) {
                struct val s = a.t == V_STR ? a : b;
                long long k = a.t == V_STR ? to_index(c, &b) : to_index(c, &a);
                struct sb r = {.c = c};
                for (long long i = 0; i < k; i++) {
                        if (r.n + s.s.n > c->lim.max_output)
                                fail(c, -E2BIG, "a string is longer than %zu bytes", c->lim.max_output);
                        sb_addn(&r, s.s.p, s.s.n);
                }
                return sb_val(&r);
        }
        if (op == '%' && a.t == V_STR)
                fail(c, -EINVAL, "printf-style string formatting is not supported");
        if (!is_num(&a) || !is_num(&b))
                fail(c, -EINVAL, "unsupported operand type(s) for %c: '%s' and '%s'", op > 255 ? op >> 8 : op,
                     type_name(&a), type_name(&b));
        bool ints = a.t != V_FLOAT && b.t != V_FLOAT;
        /* the integer values, read only when both are int or bool */
        long long x = a.t == V_INT ? a.i : a.t == V_BOOL ? a.b : 0, y = b.t == V_INT ? b.i : b.t == V_BOOL ? b.b : 0;
        double fx = num(&a), fy = num(&b);
        switch (op) {
        case '+':
                if (ints) {
                        long long r;
                        if (__builtin_add_overflow(x, y, &r))
                                fail(c, -E2BIG, "integer overflow");
                        return vint(r);
                }
                return vfloat(fx + fy);
        case '-':
                if (ints) {
                        long long r;
                        if (__builtin_sub_overflow(x, y, &r))
                                fail(c, -E2BIG, "integer overflow");
                        return vint(r);
                }
                return vfloat(fx - fy);
        case '*':
                if (ints) {
                        long long r;
                        if (__builtin_mul_overflow(x, y, &r))
                                fail(c, -E2BIG, "integer overflow");
                        return vint(r);
                }
                return vfloat(fx * fy);
        case '/':
                if (fy == 0)
                        fail(c, -EINVAL, "division by zero");
                return vfloat(fx / fy);
        case OP2('/', '/'):
        case '%':
                if (ints) {
                        if (y == 0)
                                fail(c, -EINVAL, "integer division or modulo by zero");
                        if (x == LLONG_MIN && y == -1)
                                fail(c, -E2BIG, "integer overflow");
                        long long q = x / y, r = x % y;
                        if (r != 0 && ((r < 0) != (y < 0))) {
                                q--;
                                r += y;
                        }
                        return op == '%' ? vint(r) : vint(q);
                }
                if (fy == 0)
                        fail(c, -EINVAL, "float division by zero");
                if (op == '%') {
                        double r = fmod(fx, fy);
                        if (r != 0 && ((r < 0) != (fy < 0)))
                                r += fy;
                        return vfloat(r);
                }
                return vfloat(floor(fx / fy));
        case OP2('*', '*'):
                if (ints && y >= 0) {
                        if (x == 0 || x == 1)
                                return vint(y == 0 ? 1 : x);
                        if (x == -1)
                                return vint((y & 1) ? -1 : 1);
                        long long r = 1;
                        for (long long i = 0; i < y; i++) /* overflows within 64 steps */
                                if (__builtin_mul_overflow(r, x, &r))
                                        fail(c, -E2BIG, "integer overflow");
                        return vint(r);
                }
                return vfloat(pow(fx, fy));
        }
        fail(c, -EINVAL, "unknown operator");
}

/* ------------------------------------------------------------------ calls */

struct args {
        struct val *pos;
        size_t npos;
        const char **kwn;
        struct val *kwv;
        size_t nkw;
};

static struct val *kwarg(struct args *a, const char *name) {
        for (size_t i = 0; i < a->nkw; i++)
                if (!strcmp(a->kwn[i], name))
                        return &a->kwv[i];
        return NULL;
}

/* Argument i by position or by name, NULL when not given. */
static struct val *arg(struct args *a, size_t i, const char *name) {
        if (i < a->npos)
                return &a->pos[i];
        return name ? kwarg(a, name) : NULL;
}

static void eval_args(struct ctx *c, struct node *call, struct scope *sc, struct args *a) {
        a->pos = alloc(c, (call->n + 1) * sizeof *a->pos);
        a->kwv = alloc(c, (call->n + 1) * sizeof *a->kwv);
        a->kwn = alloc(c, (call->n + 1) * sizeof *a->kwn);
        a->npos = a->nkw = 0;
        for (size_t i = 0; i < call->n; i++) {
                struct val v = eval(c, call->kids[i], sc);
                if (call->names && call->names[i]) {
                        a->kwn[a->nkw] = call->names[i];
                        a->kwv[a->nkw++] = v;
                } else
                        a->pos[a->npos++] = v;
        }
}

static struct val want_str(struct ctx *c, struct val *v, const char *what) {
        if (!v || v->t != V_STR)
                fail(c, -EINVAL, "%s: expected a string, got %s", what, v ? type_name(v) : "nothing");
        return *v;
}

/* Length of the Unicode whitespace character at s (Python's str.isspace()),
 * 0 when s does not start with one. */
static size_t uspace_len(const char *p, size_t n) {
        const unsigned char *s = (const unsigned char *)p;
        if (n >= 1 && is_space(s[0]))
                return 1;
        if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
                return 2;
        if (n >= 3 && s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)
                return 3;
        if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
                return 3;
        if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)
                return 3;
        if (n >= 3 && s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)
                return 3;
        return 0;
}

static size_t uspace_back(const char *p, size_t n) {
        for (size_t k = 1; k <= 3 && k <= n; k++)
                if (uspace_len(p + n - k, k) == k)
                        return k;
        return 0;
}

static bool in_chars(const struct val *chars, const char *p, size_t n, size_t *len) {
        /* one code point at p in chars? */
        size_t k = 1;
        while (k < n && ((unsigned char)p[k] & 0xc0) == 0x80)
                k++;
        for (size_t i = 0; i + k <= chars->s.n; i++)
                if (memcmp(chars->s.p + i, p, k) == 0 && ((i == 0) || ((unsigned char)chars->s.p[i] & 0xc0) != 0x80)) {
                        *len = k;
                        return true;
                }
        return false;
}

static struct val do_strip(struct ctx *c, struct val s, struct val *chars, bool left, bool right) {
        if (chars && chars->t == V_NONE)
                chars = NULL;
        if (chars)
                want_str(c, chars, "strip");
        const char *p = s.s.p;
        size_t n = s.s.n;
        if (left)
                for (;;) {
                        size_t k = 0;
                        if (chars ? !in_chars(chars, p, n, &k) : !(k = uspace_len(p, n)))
                                break;
                        p += k;
                        n -= k;
                }
        if (right)
                for (;;) {
                        size_t k = 0;
                        if (chars) {
                                size_t b = n;
                                while (b > 0 && ((unsigned char)p[b - 1] & 0xc0) == 0x80)
                                        b--;
                                if (b == 0 || !in_chars(chars, p + b - 1, n - b + 1, &k))
                                        break;
                        } else if (!(k = uspace_back(p, n)))
                                break;
                        n -= k;
                }
        return vstr(p, n);
}

static bool mem_at(const char *p, size_t n, size_t i, const struct val *needle) {
        return i + needle->s.n <= n && memcmp(p + i, needle->s.p, needle->s.n) == 0;
}

static struct val do_split(struct ctx *c, struct val s, struct val *sep, struct val *maxv, bool from_right) {
        long long max = maxv && maxv->t != V_NONE ? to_index(c, maxv) : -1;
        struct val r = vlist(c);
        const char *p = s.s.p;
        size_t n = s.s.n;
        if (!sep || sep->t == V_NONE) {
                /* runs of whitespace; no empty strings */
                size_t i = 0;
                long long k = 0;
                while (i < n) {
                        size_t w;
                        while (i < n && (w = uspace_len(p + i, n - i)))
                                i += w;
                        if (i >= n)
                                break;
                        if (max >= 0 && k >= max) {
                                struct val rest = do_strip(c, vstr(p + i, n - i), NULL, false, true);
                                list_push(c, r.l, rest);
                                break;
                        }
                        size_t j = i;
                        while (j < n && !uspace_len(p + j, n - j))
                                j++;
                        list_push(c, r.l, vstr(p + i, j - i));
                        k++;
                        i = j;
                }
                (void)from_right;
                return r;
        }
        want_str(c, sep, "split");
        if (sep->s.n == 0)
                fail(c, -EINVAL, "empty separator");
        if (from_right && max >= 0) {
                /* rsplit with a limit: cut from the end */
                struct val tmp = vlist(c);
                size_t end = n;
                long long k = 0;
                size_t i = n;
                while (i >= sep->s.n && k < max) {
                        size_t at = i - sep->s.n;
                        if (mem_at(p, n, at, sep)) {
                                list_push(c, tmp.l, vstr(p + i, end - i));
                                end = at;
                                i = at;
                                k++;
                        } else
                                i--;
                }
                list_push(c, r.l, vstr(p, end));
                for (size_t j = tmp.l->n; j > 0; j--)
                        list_push(c, r.l, tmp.l->v[j - 1]);
                return r;
        }
        size_t start = 0;
        long long k = 0;
        for (size_t i = 0; i + sep->s.n <= n;) {
                if ((max < 0 || k < max) && mem_at(p, n, i, sep)) {
                        list_push(c, r.l, vstr(p + start, i - start));
                        i += sep->s.n;
                        start = i;
                        k++;
                } else
                        i++;
        }
        list_push(c, r.l, vstr(p + start, n - start));
        return r;
}

static struct val do_replace(struct ctx *c, struct val s, struct val *oldv, struct val *newv, struct val *countv) {
        struct val o = want_str(c, oldv, "replace"), nw = str_of(c, newv ? newv : &(struct val){.t = V_UNDEF});
        long long count = countv && countv->t != V_NONE ? to_index(c, countv) : -1;
        struct sb b = {.c = c};
        long long k = 0;
        if (o.s.n == 0) {
                /* Python inserts new between every character */
                for (size_t i = 0; i <= s.s.n;) {
                        if (count < 0 || k < count) {
                                sb_addn(&b, nw.s.p, nw.s.n);
                                k++;
                        }
                        if (i == s.s.n)
                                break;
                        size_t j = i + 1;
                        while (j < s.s.n && ((unsigned char)s.s.p[j] & 0xc0) == 0x80)
                                j++;
                        sb_addn(&b, s.s.p + i, j - i);
                        i = j;
                }
                return sb_val(&b);
        }
        for (size_t i = 0; i < s.s.n;) {
                if ((count < 0 || k < count) && mem_at(s.s.p, s.s.n, i, &o)) {
                        sb_addn(&b, nw.s.p, nw.s.n);
                        i += o.s.n;
                        k++;
                } else
                        sb_ch(&b, s.s.p[i++]);
        }
        return sb_val(&b);
}

static struct val do_case(struct ctx *c, struct val s, int mode) {
        /* mode 0 lower, 1 upper, 2 title, 3 capitalize. ASCII letters only:
         * model templates change the case of role names and keywords. */
        char *p = alloc(c, s.s.n + 1);
        bool prev_letter = false;
        for (size_t i = 0; i < s.s.n; i++) {
                char ch = s.s.p[i];
                bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ((unsigned char)ch >= 0x80);
                bool up = mode == 1 || (mode == 2 && !prev_letter) || (mode == 3 && i == 0);
                if (up && ch >= 'a' && ch <= 'z')
                        ch = (char)(ch - 32);
                else if (!up && ch >= 'A' && ch <= 'Z')
                        ch = (char)(ch + 32);
                p[i] = ch;
                prev_letter = letter;
        }
        return vstr(p, s.s.n);
}

static struct val do_format(struct ctx *c, struct val f, struct args *a) {
        struct sb b = {.c = c};
        size_t auto_i = 0;
        for (size_t i = 0; i < f.s.n; i++) {
                char ch = f.s.p[i];
                if (ch == '{' && i + 1 < f.s.n && f.s.p[i + 1] == '{') {
                        sb_ch(&b, '{');
                        i++;
                        continue;
                }
                if (ch == '}' && i + 1 < f.s.n && f.s.p[i + 1] == '}') {
                        sb_ch(&b, '}');
                        i++;
                        continue;
                }
                if (ch != '{') {
                        sb_ch(&b, ch);
                        continue;
                }
                size_t j = i + 1;
                while (j < f.s.n && f.s.p[j] != '}')
                        j++;
                if (j >= f.s.n)
                        fail(c, -EINVAL, "format: single '{' encountered in format string");
                const char *fld = f.s.p + i + 1;
                size_t fl = j - i - 1;
                if (memchr(fld, ':', fl) || memchr(fld, '!', fl))
                        fail(c, -EINVAL, "format: format specifications are not supported");
                struct val *v = NULL;
                if (fl == 0) {
                        v = arg(a, auto_i++, NULL);
                } else if (fld[0] >= '0' && fld[0] <= '9') {
                        v = arg(a, (size_t)strtoul(fld, NULL, 10), NULL);
                } else {
                        char *nm = sdup(c, fld, fl);
                        v = kwarg(a, nm);
                }
                if (!v)
                        fail(c, -EINVAL, "format: missing argument for '{%.*s}'", (int)fl, fld);
                to_str(&b, v);
                i = j;
        }
        return sb_val(&b);
}

static struct val join_vals(struct ctx *c, struct val seq, struct val sep, const char *attr) {
        struct val l = iter_list(c, seq);
        struct sb b = {.c = c};
        for (size_t i = 0; i < l.l->n; i++) {
                if (i)
                        sb_addn(&b, sep.s.p, sep.s.n);
                struct val v = l.l->v[i];
                if (attr)
                        v = getitem(c, v, vcstr(attr));
                to_str(&b, &v);
        }
        return sb_val(&b);
}

static struct val call_method(struct ctx *c, struct method *m, struct args *a) {
        struct val s = m->self;
        const char *n = m->name;
        if (s.t == V_DICT) {
                if (!strcmp(n, "get")) {
                        struct val *k = arg(a, 0, "key");
                        if (!k)
                                fail(c, -EINVAL, "get expected at least 1 argument");
                        struct val *v = dict_find(s.d, k);
                        if (v)
                                return *v;
                        struct val *d = arg(a, 1, "default");
                        return d ? *d : vnone();
                }
                struct val r = vlist(c);
                for (size_t i = 0; i < s.d->n; i++) {
                        if (!strcmp(n, "keys"))
                                list_push(c, r.l, s.d->k[i]);
                        else if (!strcmp(n, "values"))
                                list_push(c, r.l, s.d->v[i]);
                        else {
                                struct val pair = vlist(c);
                                pair.tuple = true;
                                list_push(c, pair.l, s.d->k[i]);
                                list_push(c, pair.l, s.d->v[i]);
                                list_push(c, r.l, pair);
                        }
                }
                return r;
        }
        if (s.t == V_LIST) {
                struct val *x = arg(a, 0, NULL);
                if (!x)
                        fail(c, -EINVAL, "%s expected an argument", n);
                long long k = 0;
                for (size_t i = 0; i < s.l->n; i++)
                        if (equal(&s.l->v[i], x)) {
                                if (!strcmp(n, "index"))
                                        return vint((long long)i);
                                k++;
                        }
                if (!strcmp(n, "index"))
                        fail(c, -EINVAL, "value is not in list");
                return vint(k);
        }
        /* strings */
        if (!strcmp(n, "strip"))
                return do_strip(c, s, arg(a, 0, "chars"), true, true);
        if (!strcmp(n, "lstrip"))
                return do_strip(c, s, arg(a, 0, "chars"), true, false);
        if (!strcmp(n, "rstrip"))
                return do_strip(c, s, arg(a, 0, "chars"), false, true);
        if (!strcmp(n, "split") || !strcmp(n, "rsplit"))
                return do_split(c, s, arg(a, 0, "sep"), arg(a, 1, "maxsplit"), n[0] == 'r');
        if (!strcmp(n, "splitlines")) {
                struct val r = vlist(c);
                size_t st = 0;
                for (size_t i = 0; i < s.s.n; i++) {
                        if (s.s.p[i] == '\n' || s.s.p[i] == '\r') {
                                list_push(c, r.l, vstr(s.s.p + st, i - st));
                                if (s.s.p[i] == '\r' && i + 1 < s.s.n && s.s.p[i + 1] == '\n')
                                        i++;
                                st = i + 1;
                        }
                }
                if (st < s.s.n)
                        list_push(c, r.l, vstr(s.s.p + st, s.s.n - st));
                return r;
        }
        if (!strcmp(n, "startswith") || !strcmp(n, "endswith")) {
                struct val *x = arg(a, 0, NULL);
                if (!x)
                        fail(c, -EINVAL, "%s expected an argument", n);
                struct val one = vlist(c);
                if (x->t == V_LIST)
                        one = *x;
                else
                        list_push(c, one.l, *x);
                for (size_t i = 0; i < one.l->n; i++) {
                        struct val p = want_str(c, &one.l->v[i], n);
                        if (p.s.n <= s.s.n &&
                            memcmp(n[0] == 's' ? s.s.p : s.s.p + s.s.n - p.s.n, p.s.p, p.s.n) == 0)
                                return vbool(true);
                }
                return vbool(false);
        }
        if (!strcmp(n, "upper"))
                return do_case(c, s, 1);
        if (!strcmp(n, "lower"))
                return do_case(c, s, 0);
        if (!strcmp(n, "title"))
                return do_case(c, s, 2);
        if (!strcmp(n, "capitalize"))
                return do_case(c, s, 3);
        if (!strcmp(n, "replace"))
                return do_replace(c, s, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, "count"));
        if (!strcmp(n, "format"))
                return do_format(c, s, a);
        if (!strcmp(n, "join")) {
                struct val *x = arg(a, 0, NULL);
                if (!x)
                        fail(c, -EINVAL, "join expected an argument");
                return join_vals(c, *x, s, NULL);
        }
        if (!strcmp(n, "find") || !strcmp(n, "rfind") || !strcmp(n, "index") || !strcmp(n, "count")) {
                struct val x = want_str(c, arg(a, 0, NULL), n);
                long long k = 0, found = -1;
                for (size_t i = 0; i + x.s.n <= s.s.n; i++)
                        if (mem_at(s.s.p, s.s.n, i, &x)) {
                                if (found < 0 || n[0] == 'r')
                                        found = (long long)cp_count(s.s.p, i);
                                k++;
                                if (!strcmp(n, "count") && x.s.n)
                                        i += x.s.n - 1;
                        }
                if (!strcmp(n, "count"))
                        return vint(x.s.n ? k : (long long)cp_count(s.s.p, s.s.n) + 1);
                if (found < 0 && !strcmp(n, "index"))
                        fail(c, -EINVAL, "substring not found");
                return vint(found);
        }
        if (!strcmp(n, "isdigit") || !strcmp(n, "isalpha") || !strcmp(n, "isspace")) {
                if (s.s.n == 0)
                        return vbool(false);
                for (size_t i = 0; i < s.s.n; i++) {
                        char ch = s.s.p[i];
                        bool ok = n[2] == 'd' ? (ch >= '0' && ch <= '9')
                                 : n[2] == 'a' ? ((ch | 32) >= 'a' && (ch | 32) <= 'z')
                                 : is_space((unsigned char)ch);
                        if (!ok)
                                return vbool(false);
                }
                return vbool(true);
        }
        fail(c, -EINVAL, "'str' object has no attribute '%s'", n);
}

static struct val call_macro(struct ctx *c, struct macro *m, struct args *a);

static struct val call_func(struct ctx *c, int fn, struct args *a) {
        switch (fn) {
        case F_RAISE: {
                struct val *m = arg(a, 0, NULL);
                struct val s = m ? str_of(c, m) : vcstr("");
                c->line = -1;
                fail(c, -EINVAL, "%.*s", (int)(s.s.n > 400 ? 400 : s.s.n), s.s.p);
        }
        case F_STRFTIME: {
                struct val f = want_str(c, arg(a, 0, NULL), "strftime_now");
                struct tm tm;
                if (!gmtime_r(&c->now, &tm))
                        fail(c, -EINVAL, "strftime_now: bad time");
                char *fmt = sdup(c, f.s.p, f.s.n > 200 ? 200 : f.s.n);
                char buf[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                size_t n = strftime(buf, sizeof buf, fmt, &tm); /* the template's own format */
#pragma GCC diagnostic pop
                return vstr(sdup(c, buf, n), n);
        }
        case F_NAMESPACE:
        case F_DICT: {
                struct val v = vdict(c);
                if (fn == F_NAMESPACE)
                        v.t = V_NS;
                for (size_t i = 0; i < a->npos; i++) {
                        if (a->pos[i].t != V_DICT && a->pos[i].t != V_NS)
                                fail(c, -EINVAL, "%s: expected a mapping", fn == F_DICT ? "dict" : "namespace");
                        for (size_t j = 0; j < a->pos[i].d->n; j++)
                                dict_set(c, v.d, a->pos[i].d->k[j], a->pos[i].d->v[j]);
                }
                for (size_t i = 0; i < a->nkw; i++)
                        dict_setc(c, v.d, a->kwn[i], a->kwv[i]);
                return v;
        }
        case F_RANGE: {
                long long start = 0, stop, step = 1;
                if (a->npos == 1)
                        stop = to_index(c, &a->pos[0]);
                else if (a->npos >= 2) {
                        start = to_index(c, &a->pos[0]);
                        stop = to_index(c, &a->pos[1]);
                        if (a->npos >= 3)
                                step = to_index(c, &a->pos[2]);
                } else
                        fail(c, -EINVAL, "range expected at least 1 argument");
                if (step == 0)
                        fail(c, -EINVAL, "range() arg 3 must not be zero");
                struct val r = vlist(c);
                for (long long i = start; step > 0 ? i < stop : i > stop; i += step) {
                        tick(c);
                        list_push(c, r.l, vint(i));
                }
                return r;
        }
        }
        fail(c, -EINVAL, "unknown function");
}

static struct val call_value(struct ctx *c, struct val f, struct args *a) {
        switch (f.t) {
        case V_FUNC:
                return call_func(c, f.fn, a);
        case V_METHOD:
                return call_method(c, f.m, a);
        case V_MACRO:
                return call_macro(c, f.mac, a);
        case V_UNDEF:
                undefined_error(c, &f);
        default:
                fail(c, -EINVAL, "'%s' object is not callable", type_name(&f));
        }
}

/* Runs body in scope sc and returns what it wrote, as a string. */
static struct val capture(struct ctx *c, struct node *body, struct scope *sc) {
        size_t start = c->outlen;
        exec(c, body, sc);
        struct val v = vstr(sdup(c, c->out ? c->out + start : "", c->outlen - start), c->outlen - start);
        c->outlen = start;
        if (c->out)
                c->out[start] = '\0';
        return v;
}

static struct val call_macro(struct ctx *c, struct macro *m, struct args *a) {
        tick(c);
        if (++c->depth > c->lim.max_depth)
                fail(c, -E2BIG, "macro calls nested deeper than %zu", c->lim.max_depth);
        struct node *def = m->def;
        struct scope *sc = scope_new(c, m->closure);
        if (a->npos > def->nnames)
                fail(c, -EINVAL, "macro '%s' takes not more than %zu argument(s)", def->name ? def->name : "caller",
                     def->nnames);
        for (size_t i = 0; i < def->nnames; i++) {
                struct val *v = i < a->npos ? &a->pos[i] : kwarg(a, def->names[i]);
                struct val x = v ? *v : def->kids[i] ? eval(c, def->kids[i], sc) : vundef(def->names[i]);
                dict_setc(c, &sc->vars, def->names[i], x);
        }
        for (size_t i = 0; i < a->nkw; i++) {
                bool known = !strcmp(a->kwn[i], "caller");
                for (size_t j = 0; j < def->nnames; j++)
                        known = known || !strcmp(def->names[j], a->kwn[i]);
                if (!known)
                        fail(c, -EINVAL, "macro '%s' takes no keyword argument '%s'", def->name ? def->name : "caller",
                             a->kwn[i]);
        }
        struct val *caller = kwarg(a, "caller");
        if (caller)
                dict_setc(c, &sc->vars, "caller", *caller);
        int saved = c->ctl;
        struct val r = capture(c, def->b, sc);
        c->ctl = saved;
        c->depth--;
        return r;
}

/* ------------------------------------------------------------------ tests and filters */

static bool run_test(struct ctx *c, const char *name, struct val v, struct args *a) {
        struct val *x = arg(a, 0, NULL);
        if (!strcmp(name, "defined"))
                return v.t != V_UNDEF;
        if (!strcmp(name, "undefined"))
                return v.t == V_UNDEF;
        if (!strcmp(name, "none"))
                return v.t == V_NONE;
        if (!strcmp(name, "string"))
                return v.t == V_STR;
        if (!strcmp(name, "mapping"))
                return v.t == V_DICT;
        if (!strcmp(name, "iterable"))
                return v.t == V_LIST || v.t == V_DICT || v.t == V_STR;
        if (!strcmp(name, "sequence"))
                return v.t == V_LIST || v.t == V_DICT || v.t == V_STR;
        if (!strcmp(name, "number"))
                return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL;
        if (!strcmp(name, "integer"))
                return v.t == V_INT;
        if (!strcmp(name, "float"))
                return v.t == V_FLOAT;
        if (!strcmp(name, "boolean"))
                return v.t == V_BOOL;
        if (!strcmp(name, "true"))
                return v.t == V_BOOL && v.b;
        if (!strcmp(name, "false"))
                return v.t == V_BOOL && !v.b;
        if (!strcmp(name, "callable"))
                return v.t == V_FUNC || v.t == V_METHOD || v.t == V_MACRO;
        if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
                if (v.t != V_STR)
                        return false;
                struct val o = do_case(c, v, name[0] == 'u');
                return memcmp(o.s.p, v.s.p, v.s.n) == 0;
        }
        if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
                long long i = to_index(c, &v);
                if (name[0] == 'o')
                        return i % 2 != 0;
                if (name[0] == 'e')
                        return i % 2 == 0;
                long long d = x ? to_index(c, x) : 0;
                if (d == 0)
                        fail(c, -EINVAL, "integer division or modulo by zero");
                return i % d == 0;
        }
        if (!x)
                fail(c, -EINVAL, "no test named '%s'", name);
        if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") || !strcmp(name, "sameas"))
                return equal(&v, x);
        if (!strcmp(name, "ne") || !strcmp(name, "!="))
                return !equal(&v, x);
        if (!strcmp(name, "in"))
                return contains(c, x, &v);
        if (!strcmp(name, "lt") || !strcmp(name, "lessthan"))
                return compare(c, &v, x, "<") < 0;
        if (!strcmp(name, "le"))
                return compare(c, &v, x, "<=") <= 0;
        if (!strcmp(name, "gt") || !strcmp(name, "greaterthan"))
                return compare(c, &v, x, ">") > 0;
        if (!strcmp(name, "ge"))
                return compare(c, &v, x, ">=") >= 0;
        fail(c, -EINVAL, "no test named '%s'", name);
}

/* Python's sorted() order for the sort and dictsort filters. */
struct sortctx {
        struct ctx *c;
        bool case_sensitive;
};

static int sort_cmp(struct sortctx *s, const struct val *a, const struct val *b) {
        if (!s->case_sensitive && a->t == V_STR && b->t == V_STR) {
                struct val x = do_case(s->c, *a, 0), y = do_case(s->c, *b, 0);
                return compare(s->c, &x, &y, "<");
        }
        return compare(s->c, a, b, "<");
}

/* A stable merge-free insertion sort: lists in templates are short. */
static void sort_vals(struct sortctx *s, struct val *keys, struct val *items, size_t n, bool reverse) {
        for (size_t i = 1; i < n; i++) {
                tick(s->c);
                for (size_t j = i; j > 0; j--) {
                        int r = sort_cmp(s, &keys[j - 1], &keys[j]);
                        if (reverse ? r >= 0 : r <= 0)
                                break;
                        struct val t = keys[j];
                        keys[j] = keys[j - 1];
                        keys[j - 1] = t;
                        t = items[j];
                        items[j] = items[j - 1];
                        items[j - 1] = t;
                }
        }
}

static struct val attr_path(struct ctx *c, struct val v, struct val attr) {
        if (attr.t == V_INT)
                return getitem(c, v, attr);
        struct val a = want_str(c, &attr, "attribute");
        size_t st = 0;
        for (size_t i = 0; i <= a.s.n; i++)
                if (i == a.s.n || a.s.p[i] == '.') {
                        struct val key = vstr(a.s.p + st, i - st);
                        v = v.t == V_UNDEF ? v : getitem(c, v, key);
                        st = i + 1;
                }
        return v;
}

static struct val apply_filter(struct ctx *c, const char *name, struct val v, struct args *a);

/* selectattr / rejectattr / select / reject */
static struct val select_items(struct ctx *c, struct val seq, struct args *a, bool by_attr, bool keep) {
        if (!truthy(&seq)) { /* jinja2: `if value:` before iterating, so none selects nothing */
                struct val r = vlist(c);
                r.gen = true;
                return r;
        }
        struct val l = iter_list(c, seq);
        struct val r = vlist(c);
        size_t first = by_attr ? 1 : 0;
        struct val *attr = by_attr ? arg(a, 0, NULL) : NULL;
        if (by_attr && !attr)
                fail(c, -EINVAL, "selectattr: missing attribute");
        struct val *test = arg(a, first, NULL);
        struct args ta = {.pos = a->npos > first + 1 ? a->pos + first + 1 : NULL,
                          .npos = a->npos > first + 1 ? a->npos - first - 1 : 0};
        for (size_t i = 0; i < l.l->n; i++) {
                tick(c);
                struct val x = by_attr ? attr_path(c, l.l->v[i], *attr) : l.l->v[i];
                bool ok;
                if (test) {
                        struct val tn = want_str(c, test, "select test");
                        ok = run_test(c, sdup(c, tn.s.p, tn.s.n), x, &ta);
                } else
                        ok = truthy(&x);
                if (ok == keep)
                        list_push(c, r.l, l.l->v[i]);
        }
        r.gen = true;
        return r;
}

static struct val apply_filter(struct ctx *c, const char *name, struct val v, struct args *a) {
        if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape"))
        {
                struct val r = str_of(c, &v);
                if (name[0] == 's') {
                        r.safe = true;
                        return r;
                }
                if (v.safe)
                        return r;
                struct sb b = {.c = c};
                add_maybe_escaped(&b, &r, true);
                r = sb_val(&b);
                r.safe = true;
                return r;
        }
        if (!strcmp(name, "default") || !strcmp(name, "d")) {
                struct val *dv = arg(a, 0, "default_value");
                struct val *bo = arg(a, 1, "boolean");
                bool use = v.t == V_UNDEF || (bo && truthy(bo) && !truthy(&v));
                return use ? (dv ? *dv : vstr("", 0)) : v;
        }
        if (!strcmp(name, "length") || !strcmp(name, "count")) {
                switch (v.t) {
                case V_STR: return vint((long long)cp_count(v.s.p, v.s.n));
                case V_LIST:
                        if (v.gen)
                                fail(c, -EINVAL, "object of type 'generator' has no len()");
                        return vint((long long)v.l->n);
                case V_DICT: case V_NS: return vint((long long)v.d->n);
                case V_UNDEF: return vint(0);
                default: fail(c, -EINVAL, "object of type '%s' has no len()", type_name(&v));
                }
        }
        if (!strcmp(name, "tojson")) {
                /* Hugging Face's: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
                struct val *ea = arg(a, 0, "ensure_ascii");
                struct val *ind = arg(a, 1, "indent");
                struct val *seps = arg(a, 2, "separators");
                struct val *sk = arg(a, 3, "sort_keys");
                struct jsonfmt jf = {.indent = -1, .sort = sk && truthy(sk)};
                if (ind && ind->t != V_NONE) {
                        long long k = to_index(c, ind);
                        jf.indent = k < 0 ? 0 : k > 64 ? 64 : (int)k;
                }
                jf.item_sep = jf.indent >= 0 ? "," : ", ";
                jf.key_sep = ": ";
                if (seps && seps->t != V_NONE) {
                        if (seps->t != V_LIST || seps->l->n != 2 || seps->l->v[0].t != V_STR || seps->l->v[1].t != V_STR)
                                fail(c, -EINVAL, "tojson: separators must be two strings");
                        jf.item_sep = sdup(c, seps->l->v[0].s.p, seps->l->v[0].s.n);
                        jf.key_sep = sdup(c, seps->l->v[1].s.p, seps->l->v[1].s.n);
                }
                jf.item_len = strlen(jf.item_sep);
                jf.key_len = strlen(jf.key_sep);
                struct sb b = {.c = c};
                to_json(c, &b, &v, &jf, 0, 0);
                if (!(ea && truthy(ea)))
                        return sb_val(&b);
                /* ensure_ascii: every code point past ASCII as \uXXXX, in surrogate pairs past the BMP */
                struct sb o = {.c = c};
                for (size_t i = 0; i < b.n;) {
                        unsigned char ch = (unsigned char)b.p[i];
                        if (ch < 0x80) {
                                sb_ch(&o, (char)ch);
                                i++;
                                continue;
                        }
                        int len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 1;
                        uint32_t cp = len == 4 ? ch & 0x07 : len == 3 ? ch & 0x0f : len == 2 ? ch & 0x1f : 0xfffd;
                        for (int k = 1; k < len && i + (size_t)k < b.n; k++)
                                cp = cp << 6 | ((unsigned char)b.p[i + (size_t)k] & 0x3f);
                        i += (size_t)len;
                        char e[16];
                        if (cp >= 0x10000 && cp <= 0x10ffff) {
                                cp -= 0x10000;
                                snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
                        } else
                                snprintf(e, sizeof e, "\\u%04x", cp & 0xffff);
                        sb_add(&o, e);
                }
                return sb_val(&o);
        }
        if (!strcmp(name, "string"))
                return str_of(c, &v);
        if (v.t == V_UNDEF && (!strcmp(name, "trim") || !strcmp(name, "upper") || !strcmp(name, "lower")))
                return vstr("", 0);
        if (!strcmp(name, "trim")) {
                struct val s = str_of(c, &v);
                return do_strip(c, s, arg(a, 0, "chars"), true, true);
        }
        if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
                struct val s = str_of(c, &v);
                return do_case(c, s, name[0] == 'u' ? 1 : name[0] == 'l' ? 0 : name[0] == 't' ? 2 : 3);
        }
        if (!strcmp(name, "replace")) {
                struct val s = str_of(c, &v);
                return do_replace(c, s, arg(a, 0, "old"), arg(a, 1, "new"), arg(a, 2, "count"));
        }
        if (!strcmp(name, "join")) {
                struct val *sep = arg(a, 0, "d");
                struct val *attr = arg(a, 1, "attribute");
                struct val sv = sep ? str_of(c, sep) : vstr("", 0);
                const char *at = attr ? sdup(c, want_str(c, attr, "join").s.p, attr->s.n) : NULL;
                return join_vals(c, v, sv, at);
        }
        if (!strcmp(name, "items")) {
                if (v.t == V_UNDEF)
                        return vlist(c);
                if (v.t != V_DICT)
                        fail(c, -EINVAL, "items: expected a mapping, got %s", type_name(&v));
                struct method m = {.self = v, .name = "items"};
                struct args none = {0};
                return call_method(c, &m, &none);
        }
        if (!strcmp(name, "dictsort")) {
                if (v.t != V_DICT)
                        fail(c, -EINVAL, "dictsort: expected a mapping, got %s", type_name(&v));
                struct val *cs = arg(a, 0, "case_sensitive");
                struct val *by = arg(a, 1, "by");
                struct val *rev = arg(a, 2, "reverse");
                bool by_value = by && by->t == V_STR && by->s.n == 5 && !memcmp(by->s.p, "value", 5);
                size_t n = v.d->n;
                struct val *keys = alloc(c, (n + 1) * sizeof *keys), *items = alloc(c, (n + 1) * sizeof *items);
                for (size_t i = 0; i < n; i++) {
                        keys[i] = by_value ? v.d->v[i] : v.d->k[i];
                        items[i] = vlist(c);
                        items[i].tuple = true;
                        list_push(c, items[i].l, v.d->k[i]);
                        list_push(c, items[i].l, v.d->v[i]);
                }
                struct sortctx s = {c, cs && truthy(cs)};
                sort_vals(&s, keys, items, n, rev && truthy(rev));
                struct val r = vlist(c);
                for (size_t i = 0; i < n; i++)
                        list_push(c, r.l, items[i]);
                return r;
        }
        if (!strcmp(name, "sort")) {
                struct val l = iter_list(c, v);
                struct val *rev = arg(a, 0, "reverse");
                struct val *cs = arg(a, 1, "case_sensitive");
                struct val *attr = arg(a, 2, "attribute");
                size_t n = l.l->n;
                struct val *keys = alloc(c, (n + 1) * sizeof *keys), *items = alloc(c, (n + 1) * sizeof *items);
                for (size_t i = 0; i < n; i++) {
                        items[i] = l.l->v[i];
                        keys[i] = attr ? attr_path(c, items[i], *attr) : items[i];
                }
                struct sortctx s = {c, cs && truthy(cs)};
                sort_vals(&s, keys, items, n, rev && truthy(rev));
                struct val r = vlist(c);
                for (size_t i = 0; i < n; i++)
                        list_push(c, r.l, items[i]);
                return r;
        }
        if (!strcmp(name, "list")) {
                struct val r = iter_list(c, v);
                r.gen = false;
                return r;
        }
        if (!strcmp(name, "first") || !strcmp(name, "last")) {
                struct val l = iter_list(c, v);
                if (l.l->n == 0)
                        return vundef(NULL);
                return l.l->v[name[0] == 'f' ? 0 : l.l->n - 1];
        }
        if (!strcmp(name, "reverse")) {
                if (v.t == V_STR) {
                        struct val m1 = vint(-1);
                        return do_slice(c, v, NULL, NULL, &m1);
                }
                struct val l = iter_list(c, v), r = vlist(c);
                for (size_t i = l.l->n; i > 0; i--)
                        list_push(c, r.l, l.l->v[i - 1]);
                return r;
        }
        if (!strcmp(name, "unique")) {
                struct val l = iter_list(c, v), r = vlist(c);
                for (size_t i = 0; i < l.l->n; i++) {
                        tick(c);
                        if (!contains(c, &r, &l.l->v[i]))
                                list_push(c, r.l, l.l->v[i]);
                }
                return r;
        }
        if (!strcmp(name, "min") || !strcmp(name, "max")) {
                struct val l = iter_list(c, v);
                if (l.l->n == 0)
                        return vundef(NULL);
                struct val best = l.l->v[0];
                for (size_t i = 1; i < l.l->n; i++) {
                        int r = compare(c, &l.l->v[i], &best, "<");
                        if (name[1] == 'i' ? r < 0 : r > 0)
                                best = l.l->v[i];
                }
                return best;
        }
        if (!strcmp(name, "sum")) {
                struct val l = iter_list(c, v), s = vint(0);
                for (size_t i = 0; i < l.l->n; i++)
                        s = binop(c, '+', s, l.l->v[i]);
                return s;
        }
        if (!strcmp(name, "int")) {
                struct val *dv = arg(a, 0, "default");
                if (v.t == V_INT)
                        return v;
                if (v.t == V_BOOL)
                        return vint(v.b);
                if (v.t == V_FLOAT && isfinite(v.f) && fabs(v.f) < 9.2e18)
                        return vint((long long)v.f);
                if (v.t == V_STR) {
                        char *s = sdup(c, v.s.p, v.s.n), *end;
                        errno = 0;
                        long long i = strtoll(s, &end, 10);
                        while (*end && is_space((unsigned char)*end))
                                end++;
                        if (!errno && end != s && !*end)
                                return vint(i);
                        double f = strtod(s, &end);
                        while (*end && is_space((unsigned char)*end))
                                end++;
                        if (end != s && !*end && isfinite(f) && fabs(f) < 9.2e18)
                                return vint((long long)f);
                }
                return dv ? *dv : vint(0);
        }
        if (!strcmp(name, "float")) {
                struct val *dv = arg(a, 0, "default");
                if (is_num(&v))
                        return vfloat(num(&v));
                if (v.t == V_STR) {
                        char *s = sdup(c, v.s.p, v.s.n), *end;
                        double f = strtod(s, &end);
                        if (end != s && !*end)
                                return vfloat(f);
                }
                return dv ? *dv : vfloat(0);
        }
        if (!strcmp(name, "abs")) {
                if (v.t == V_INT)
                        return vint(v.i < 0 && v.i != LLONG_MIN ? -v.i : v.i);
                if (v.t == V_FLOAT)
                        return vfloat(fabs(v.f));
                fail(c, -EINVAL, "bad operand type for abs(): '%s'", type_name(&v));
        }
        if (!strcmp(name, "round")) {
                struct val *pr = arg(a, 0, "precision");
                long long p = pr ? to_index(c, pr) : 0;
                double f = num(&v), m = pow(10, (double)(p > 15 ? 15 : p < -15 ? -15 : p));
                return vfloat(round(f * m) / m);
        }
        if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
                return select_items(c, v, a, true, name[0] == 's');
        if (!strcmp(name, "select") || !strcmp(name, "reject"))
                return select_items(c, v, a, false, name[0] == 's');
        if (!strcmp(name, "map")) {
                if (!truthy(&v)) {
                        struct val r = vlist(c);
                        r.gen = true;
                        return r;
                }
                struct val l = iter_list(c, v), r = vlist(c);
                struct val *attr = kwarg(a, "attribute");
                struct val *dflt = kwarg(a, "default");
                for (size_t i = 0; i < l.l->n; i++) {
                        tick(c);
                        struct val x;
                        if (attr) {
                                x = attr_path(c, l.l->v[i], *attr);
                                if (x.t == V_UNDEF && dflt)
                                        x = *dflt;
                        } else {
                                struct val fn = want_str(c, arg(a, 0, NULL), "map");
                                struct args rest = {.pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn,
                                                    .kwv = a->kwv, .nkw = a->nkw};
                                x = apply_filter(c, sdup(c, fn.s.p, fn.s.n), l.l->v[i], &rest);
                        }
                        list_push(c, r.l, x);
                }
                r.gen = true;
                return r;
        }
        if (!strcmp(name, "indent")) {
                struct val s = str_of(c, &v);
                struct val *w = arg(a, 0, "width");
                struct val *first = arg(a, 1, "first");
                struct val *blank = arg(a, 2, "blank");
                struct val pad;
                if (w && w->t == V_STR)
                        pad = *w;
                else {
                        long long k = w ? to_index(c, w) : 4;
                        if (k < 0 || k > 1024)
                                fail(c, -EINVAL, "indent: width out of range");
                        char *p = alloc(c, (size_t)k + 1);
                        memset(p, ' ', (size_t)k);
                        pad = vstr(p, (size_t)k);
                }
                struct sb b = {.c = c};
                bool at_start = true;
                bool first_line = true;
                for (size_t i = 0; i < s.s.n; i++) {
                        if (at_start) {
                                /* is this line blank? */
                                size_t j = i;
                                while (j < s.s.n && s.s.p[j] != '\n')
                                        j++;
                                bool is_blank = true;
                                for (size_t k = i; k < j; k++)
                                        if (!is_space((unsigned char)s.s.p[k]))
                                                is_blank = false;
                                if ((!first_line || (first && truthy(first))) && (!is_blank || (blank && truthy(blank))))
                                        sb_addn(&b, pad.s.p, pad.s.n);
                                at_start = false;
                        }
                        sb_ch(&b, s.s.p[i]);
                        if (s.s.p[i] == '\n') {
                                at_start = true;
                                first_line = false;
                        }
                }
                if (s.s.n == 0 && first && truthy(first) && blank && truthy(blank))
                        sb_addn(&b, pad.s.p, pad.s.n);
                return sb_val(&b);
        }
        if (!strcmp(name, "wordcount")) {
                struct val w = do_split(c, str_of(c, &v), NULL, NULL, false);
                return vint((long long)w.l->n);
        }
        if (!strcmp(name, "batch")) {
                long long k = to_index(c, arg(a, 0, "linecount") ? arg(a, 0, "linecount") : &(struct val){.t = V_INT, .i = 1});
                if (k <= 0)
                        fail(c, -EINVAL, "batch: size must be positive");
                struct val l = iter_list(c, v), r = vlist(c), cur = vlist(c);
                for (size_t i = 0; i < l.l->n; i++) {
                        list_push(c, cur.l, l.l->v[i]);
                        if ((long long)cur.l->n == k) {
                                list_push(c, r.l, cur);
                                cur = vlist(c);
                        }
                }
                if (cur.l->n)
                        list_push(c, r.l, cur);
                return r;
        }
        fail(c, -EINVAL, "no filter named '%s'", name);
}

/* ------------------------------------------------------------------ eval / exec */

/* Applies a chain of filters whose innermost operand is a placeholder
 * (N_LIT) standing for input: {% filter f | g %} and {% set x | f %}. */
static struct val filter_chain(struct ctx *c, struct node *f, struct val input, struct scope *sc) {
        if (!f || f->k != N_FILTER)
                return input;
        struct val v = filter_chain(c, f->a, input, sc);
        struct args a;
        eval_args(c, f, sc, &a);
        return apply_filter(c, f->name, v, &a);
}

static struct val eval_inner(struct ctx *c, struct node *e, struct scope *sc) {
        c->line = e->line;
        switch (e->k) {
        case N_LIT:
                return e->lit;
        case N_NAME:
                return lookup(sc, e->name);
        case N_LIST:
        case N_TUPLE: {
                struct val r = vlist(c);
                r.tuple = e->k == N_TUPLE;
                for (size_t i = 0; i < e->n; i++)
                        list_push(c, r.l, eval(c, e->kids[i], sc));
                return r;
        }
        case N_DICT: {
                struct val r = vdict(c);
                for (size_t i = 0; i + 1 < e->n; i += 2) {
                        struct val k = eval(c, e->kids[i], sc);
                        if (k.t == V_LIST || k.t == V_DICT || k.t == V_UNDEF)
                                fail(c, -EINVAL, "unhashable type: '%s'", type_name(&k));
                        dict_set(c, r.d, k, eval(c, e->kids[i + 1], sc));
                }
                return r;
        }
        case N_GETATTR: {
                struct val o = eval(c, e->a, sc);
                c->line = e->line;
                return getattr_str(c, o, e->name);
        }
        case N_GETITEM: {
                struct val o = eval(c, e->a, sc);
                struct val k = eval(c, e->b, sc);
                c->line = e->line;
                return getitem(c, o, k);
        }
        case N_SLICE: {
                struct val o = eval(c, e->a, sc);
                struct val x, y, z;
                if (e->b)
                        x = eval(c, e->b, sc);
                if (e->c)
                        y = eval(c, e->c, sc);
                if (e->d)
                        z = eval(c, e->d, sc);
                c->line = e->line;
                return do_slice(c, o, e->b ? &x : NULL, e->c ? &y : NULL, e->d ? &z : NULL);
        }
        case N_BIN: {
                struct val a = eval(c, e->a, sc);
                struct val b = eval(c, e->b, sc);
                c->line = e->line;
                return binop(c, e->op, a, b);
        }
        case N_NEG:
        case N_POS: {
                struct val a = eval(c, e->a, sc);
                c->line = e->line;
                if (!is_num(&a))
                        fail(c, -EINVAL, "bad operand type for unary %c: '%s'", e->k == N_NEG ? '-' : '+', type_name(&a));
                if (e->k == N_POS)
                        return a.t == V_BOOL ? vint(a.b) : a;
                if (a.t == V_FLOAT)
                        return vfloat(-a.f);
                long long i = a.t == V_INT ? a.i : a.b;
                if (i == LLONG_MIN)
                        fail(c, -E2BIG, "integer overflow");
                return vint(-i);
        }
        case N_NOT: {
                struct val a = eval(c, e->a, sc);
                return vbool(!truthy(&a));
        }
        case N_AND: {
                struct val a = eval(c, e->a, sc);
                return truthy(&a) ? eval(c, e->b, sc) : a;
        }
        case N_OR: {
                struct val a = eval(c, e->a, sc);
                return truthy(&a) ? a : eval(c, e->b, sc);
        }
        case N_CMP: {
                struct val a = eval(c, e->a, sc);
                struct val b = eval(c, e->b, sc);
                c->line = e->line;
                switch (e->op) {
                case OP2('=', '='): return vbool(equal(&a, &b));
                case OP2('!', '='): return vbool(!equal(&a, &b));
                case '<': return vbool(compare(c, &a, &b, "<") < 0);
                case '>': return vbool(compare(c, &a, &b, ">") > 0);
                case OP2('<', '='): return vbool(compare(c, &a, &b, "<=") <= 0);
                case OP2('>', '='): return vbool(compare(c, &a, &b, ">=") >= 0);
                case OP_IN: return vbool(contains(c, &b, &a));
                case OP_NOTIN: return vbool(!contains(c, &b, &a));
                }
                fail(c, -EINVAL, "unknown comparison");
        }
        case N_COND: {
                struct val cond = eval(c, e->a, sc);
                if (truthy(&cond))
                        return eval(c, e->b, sc);
                return e->c ? eval(c, e->c, sc) : vundef(NULL);
        }
        case N_CALL: {
                struct val f = eval(c, e->a, sc);
                struct args a;
                eval_args(c, e, sc, &a);
                c->line = e->line;
                return call_value(c, f, &a);
        }
        case N_FILTER: {
                struct val v = eval(c, e->a, sc);
                struct args a;
                eval_args(c, e, sc, &a);
                c->line = e->line;
                return apply_filter(c, e->name, v, &a);
        }
        case N_TEST: {
                struct val v = eval(c, e->a, sc);
                struct args a;
                eval_args(c, e, sc, &a);
                c->line = e->line;
                return vbool(run_test(c, e->name, v, &a) != e->neg);
        }
        default:
                fail(c, -EINVAL, "not an expression");
        }
}

static struct val eval(struct ctx *c, struct node *e, struct scope *sc) {
        if (++c->depth > c->lim.max_depth)
                fail(c, -E2BIG, "expressions nested deeper than %zu", c->lim.max_depth);
        struct val v = eval_inner(c, e, sc);
        c->depth--;
        return v;
}

static void output(struct ctx *c, const struct val *v) {
        if (v->t == V_STR) {
                out_add(c, v->s.p, v->s.n);
                return;
        }
        struct sb b = {.c = c};
        to_str(&b, v);
        out_add(c, b.p ? b.p : "", b.n);
}

static void bind_targets(struct ctx *c, struct scope *sc, const char **names, size_t n, struct val v) {
        if (n == 1) {
                dict_setc(c, &sc->vars, names[0], v);
                return;
        }
        struct val l = iter_list(c, v);
        if (l.l->n != n)
                fail(c, -EINVAL, "cannot unpack %zu values into %zu names", l.l->n, n);
        for (size_t i = 0; i < n; i++)
                dict_setc(c, &sc->vars, names[i], l.l->v[i]);
}

static void exec_for(struct ctx *c, struct node *s, struct scope *sc) {
        struct val seq = eval(c, s->a, sc);
        if (seq.t == V_NONE)
                fail(c, -EINVAL, "'NoneType' object is not iterable");
        struct val items = iter_list(c, seq);
        if (s->d) { /* for x in xs if cond: filter first, loop.* counts what is kept */
                struct val kept = vlist(c);
                for (size_t i = 0; i < items.l->n; i++) {
                        tick(c);
                        struct scope *t = scope_new(c, sc);
                        bind_targets(c, t, s->names, s->nnames, items.l->v[i]);
                        struct val cond = eval(c, s->d, t);
                        if (truthy(&cond))
                                list_push(c, kept.l, items.l->v[i]);
                }
                items = kept;
        }
        size_t n = items.l->n;
        for (size_t i = 0; i < n; i++) {
                tick(c);
                struct scope *body = scope_new(c, sc);
                bind_targets(c, body, s->names, s->nnames, items.l->v[i]);
                struct val loop = vdict(c);
                dict_setc(c, loop.d, "index", vint((long long)i + 1));
                dict_setc(c, loop.d, "index0", vint((long long)i));
                dict_setc(c, loop.d, "revindex", vint((long long)(n - i)));
                dict_setc(c, loop.d, "revindex0", vint((long long)(n - i - 1)));
                dict_setc(c, loop.d, "first", vbool(i == 0));
                dict_setc(c, loop.d, "last", vbool(i + 1 == n));
                dict_setc(c, loop.d, "length", vint((long long)n));
                dict_setc(c, loop.d, "depth", vint(1));
                dict_setc(c, loop.d, "depth0", vint(0));
                dict_setc(c, loop.d, "previtem", i > 0 ? items.l->v[i - 1] : vundef("previtem"));
                dict_setc(c, loop.d, "nextitem", i + 1 < n ? items.l->v[i + 1] : vundef("nextitem"));
                dict_setc(c, &body->vars, "loop", loop);
                exec(c, s->b, body);
                if (c->ctl == CTL_BREAK) {
                        c->ctl = 0;
                        break;
                }
                c->ctl = 0;
        }
        if (n == 0 && s->c)
                exec(c, s->c, sc);
}

static void exec(struct ctx *c, struct node *s, struct scope *sc) {
        if (++c->depth > c->lim.max_depth)
                fail(c, -E2BIG, "statements nested deeper than %zu", c->lim.max_depth);
        c->line = s->line;
        switch (s->k) {
        case N_BODY:
                for (size_t i = 0; i < s->n && !c->ctl; i++)
                        exec(c, s->kids[i], sc);
                break;
        case N_TEXT:
                out_add(c, s->lit.s.p, s->lit.s.n);
                break;
        case N_OUTPUT: {
                struct val v = eval(c, s->a, sc);
                output(c, &v);
                break;
        }
        case N_IF:
                for (struct node *b = s; b;) {
                        if (b->k != N_IF) {
                                exec(c, b, sc);
                                break;
                        }
                        struct val cond = eval(c, b->a, sc);
                        if (truthy(&cond)) {
                                exec(c, b->b, sc);
                                break;
                        }
                        b = b->c;
                }
                break;
        case N_FOR:
                exec_for(c, s, sc);
                break;
        case N_SET: {
                struct val v = eval(c, s->b, sc);
                if (s->name) { /* ns.attr = v */
                        struct val ns = eval(c, s->a, sc);
                        if (ns.t != V_NS)
                                fail(c, -EINVAL, "cannot assign attribute on non-namespace object");
                        dict_setc(c, ns.d, s->name, v);
                } else if (s->nnames)
                        bind_targets(c, sc, s->names, s->nnames, v);
                break;
        }
        case N_SETBLOCK: {
                struct val v = capture(c, s->b, sc);
                v = filter_chain(c, s->a, v, sc);
                dict_setc(c, &sc->vars, s->name, v);
                break;
        }
        case N_FILTERBLOCK: {
                struct val v = capture(c, s->b, sc);
                v = filter_chain(c, s->a, v, sc);
                output(c, &v);
                break;
        }
        case N_MACRO: {
                struct val m = {.t = V_MACRO};
                m.mac = alloc(c, sizeof *m.mac);
                m.mac->def = s;
                m.mac->closure = sc;
                dict_setc(c, &sc->vars, s->name, m);
                break;
        }
        case N_CALLBLOCK: {
                /* the body becomes caller(), a macro with the block's parameters */
                struct val caller = {.t = V_MACRO};
                caller.mac = alloc(c, sizeof *caller.mac);
                caller.mac->def = s;
                caller.mac->closure = sc;
                struct node *call = s->a;
                if (call->k != N_CALL)
                        fail(c, -EINVAL, "{%% call %%} needs a macro call");
                struct val f = eval(c, call->a, sc);
                struct args a;
                eval_args(c, call, sc, &a);
                const char **kwn = alloc(c, (a.nkw + 1) * sizeof *kwn);
                struct val *kwv = alloc(c, (a.nkw + 1) * sizeof *kwv);
                memcpy(kwn, a.kwn, a.nkw * sizeof *kwn);
                memcpy(kwv, a.kwv, a.nkw * sizeof *kwv);
                kwn[a.nkw] = "caller";
                kwv[a.nkw] = caller;
                a.kwn = kwn;
                a.kwv = kwv;
                a.nkw++;
                c->line = s->line;
                struct val r = call_value(c, f, &a);
                output(c, &r);
                break;
        }
        case N_BREAK:
                c->ctl = CTL_BREAK;
                break;
        case N_CONTINUE:
                c->ctl = CTL_CONTINUE;
                break;
        default:
                fail(c, -EINVAL, "not a statement");
        }
        c->depth--;
}

/* ------------------------------------------------------------------ context */

static struct val from_json(struct ctx *c, const cJSON *j, size_t depth) {
        if (depth > c->lim.max_depth)
                fail(c, -E2BIG, "the context is nested deeper than %zu", c->lim.max_depth);
        if (!j || cJSON_IsNull(j))
                return vnone();
        if (cJSON_IsBool(j))
                return vbool(cJSON_IsTrue(j));
        if (cJSON_IsNumber(j)) {
                double d = j->valuedouble;
                if (d == floor(d) && fabs(d) < 9.007199254740992e15)
                        return vint((long long)d);
                return vfloat(d);
        }
        if (cJSON_IsString(j))
                return vcstr(j->valuestring ? j->valuestring : "");
        if (cJSON_IsArray(j)) {
                struct val r = vlist(c);
                for (const cJSON *e = j->child; e; e = e->next)
                        list_push(c, r.l, from_json(c, e, depth + 1));
                return r;
        }
        if (cJSON_IsObject(j)) {
                struct val r = vdict(c);
                for (const cJSON *e = j->child; e; e = e->next)
                        dict_setc(c, r.d, e->string ? e->string : "", from_json(c, e, depth + 1));
                return r;
        }
        return vnone();
}

static void free_ctx(struct ctx *c) {
        for (struct chunk *ch = c->chunks, *nx; ch; ch = nx) {
                nx = ch->next;
                free(ch);
        }
        c->chunks = NULL;
        free(c->out);
        c->out = NULL;
}

static int render(struct ctx *c, const cJSON *vars, char **ret_text) {
        /* As jinja2 reads a source: \r\n and \r become \n, and one
         * trailing newline is dropped (keep_trailing_newline is off). */
        char *src = alloc(c, c->len + 1);
        size_t n = 0;
        for (size_t i = 0; i < c->len; i++) {
                if (c->src[i] == '\r') {
                        src[n++] = '\n';
                        if (i + 1 < c->len && c->src[i + 1] == '\n')
                                i++;
                } else
                        src[n++] = c->src[i];
        }
        if (n > 0 && src[n - 1] == '\n')
                n--;
        src[n] = '\0';
        c->src = src;
        c->len = n;
        lex(c);
        c->pos = 0;
        c->depth = 0;
        struct node *root = parse_body(c, NULL);
        c->depth = 0;

        c->globals = scope_new(c, NULL);
        struct { const char *name; int fn; } const funcs[] = {
                {"raise_exception", F_RAISE}, {"strftime_now", F_STRFTIME}, {"namespace", F_NAMESPACE},
                {"range", F_RANGE}, {"dict", F_DICT},
        };
        for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
                dict_setc(c, &c->globals->vars, funcs[i].name, (struct val){.t = V_FUNC, .fn = funcs[i].fn});
        if (vars && cJSON_IsObject(vars))
                for (const cJSON *e = vars->child; e; e = e->next)
                        dict_setc(c, &c->globals->vars, e->string ? e->string : "", from_json(c, e, 0));
        struct scope *top = scope_new(c, c->globals);
        c->line = 0;
        exec(c, root, top);
        char *text = c->out;
        if (!text) {
                text = strdup("");
                if (!text)
                        fail(c, -ENOMEM, "out of memory");
        }
        c->out = NULL;
        *ret_text = text;
        return 0;
}

int lmp_jinja_render(const char *src, size_t len, const cJSON *vars, const struct lmp_jinja_opts *opts,
                     char **ret_text, struct lmp_error *err) {
        struct ctx *c = calloc(1, sizeof *c);
        if (!c)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        c->err = err;
        c->lim = opts && opts->limits ? *opts->limits : lmp_jinja_default_limits;
        c->now = opts ? opts->now : 0;
        c->trim_blocks = opts ? opts->trim_blocks : true;
        c->lstrip_blocks = opts ? opts->lstrip_blocks : true;
        c->src = src ? src : "";
        c->len = src ? len : 0;
        int r;
        /* Nothing local changes between setjmp and longjmp (c is only
         * written through), so no local needs to be volatile. */
        if ((r = setjmp(c->jb)) != 0) {
                free_ctx(c);
                free(c);
                return r;
        }
        char *text = NULL;
        render(c, vars, &text);
        free_ctx(c);
        free(c);
        *ret_text = text;
        return 0;
}

/* A forced tool call's mask (tool_grammar.h). */
#include "sampler/tool_grammar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAIL "}"

struct lmp_tool_grammar {
        uint32_t n, n_max;
        char key[16];
        char **head;                    /* (n) {"name": "NAME", "KEY": */
        uint32_t *head_len;
        char **name;
        struct lmp_json_grammar **args;
};

int lmp_tool_grammar_new(uint32_t n_max, const char *args_key, struct lmp_tool_grammar **ret,
                         struct lmp_error *err) {
        if (n_max == 0 || n_max > LMP_TOOL_GRAMMAR_MAX || strlen(args_key) >= sizeof(((struct lmp_tool_grammar *)0)->key))
                return lmp_error_set(err, -EINVAL, "tools: 1 to %d functions", LMP_TOOL_GRAMMAR_MAX);
        struct lmp_tool_grammar *tg = calloc(1, sizeof(*tg));
        if (!tg)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        tg->n_max = n_max;
        snprintf(tg->key, sizeof(tg->key), "%s", args_key);
        tg->head = calloc(n_max, sizeof(*tg->head));
        tg->head_len = calloc(n_max, sizeof(*tg->head_len));
        tg->name = calloc(n_max, sizeof(*tg->name));
        tg->args = calloc(n_max, sizeof(*tg->args));
        if (!tg->head || !tg->head_len || !tg->name || !tg->args) {
                lmp_tool_grammar_free(tg);
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = tg;
        return 0;
}

void lmp_tool_grammar_free(struct lmp_tool_grammar *tg) {
        if (!tg)
                return;
        for (uint32_t i = 0; i < tg->n; i++) {
                free(tg->head[i]);
                free(tg->name[i]);
                lmp_json_grammar_unref(tg->args[i]);
        }
        free(tg->head);
        free(tg->head_len);
        free(tg->name);
        free(tg->args);
        free(tg);
}

static bool name_ok(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > LMP_TOOL_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '_' || *s == '-' || *s == '.'))
                        return false;
        return true;
}

int lmp_tool_grammar_add(struct lmp_tool_grammar *tg, const char *name, struct lmp_json_grammar *args,
                         struct lmp_error *err) {
        if (tg->n == tg->n_max)
                return lmp_error_set(err, -EINVAL, "tools: more than %u functions", tg->n_max);
        if (!name_ok(name))
                return lmp_error_set(err, -EINVAL, "tools: bad function name");
        size_t cap = strlen(name) + strlen(tg->key) + 32;
        char *head = malloc(cap), *nm = strdup(name);
        if (!head || !nm) {
                free(head);
                free(nm);
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        int k = snprintf(head, cap, "{\"name\": \"%s\", \"%s\": ", name, tg->key);
        tg->head[tg->n] = head;
        tg->head_len[tg->n] = (uint32_t)k;
        tg->name[tg->n] = nm;
        tg->args[tg->n] = lmp_json_grammar_ref(args);
        tg->n++;
        return 0;
}

const char *lmp_tool_grammar_name(const struct lmp_tool_grammar *tg, uint32_t i) {
        return i < tg->n ? tg->name[i] : NULL;
}

void lmp_tool_allow_init(struct lmp_tool_allow *a, const struct lmp_json_tokens *t,
                         const struct lmp_tool_grammar *tg) {
        a->tg = tg;
        a->phase = LMP_TOOL_HEAD;
        a->cand = tg->n >= 64 ? ~0ull : (1ull << tg->n) - 1;
        a->pos = 0;
        a->tool = 0;
        a->json.tokens = t;
        a->json.tables_ok = false;
        if (tg->n) /* defined before a check copies it; the head's end sets it again */
                lmp_json_state_init(&a->json.state, tg->args[0]);
}

/* The position of the call: what feed() moves. The document itself is
 * passed beside it, so that a check can work on a copy of either. */
struct cursor {
        uint32_t phase, pos, tool;
        uint64_t cand;
};

static bool feed_bytes(const struct lmp_tool_grammar *tg, struct cursor *c, struct lmp_json_state *js,
                       const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char b = p[i];
                switch (c->phase) {
                case LMP_TOOL_HEAD: {
                        uint64_t keep = 0;
                        for (uint32_t k = 0; k < tg->n; k++)
                                if ((c->cand >> k & 1) && c->pos < tg->head_len[k] &&
                                    (unsigned char)tg->head[k][c->pos] == b)
                                        keep |= 1ull << k;
                        if (!keep)
                                return false;
                        c->cand = keep;
                        c->pos++;
                        /* Names hold no '"', so no head is a prefix of another. */
                        for (uint32_t k = 0; k < tg->n; k++)
                                if ((keep >> k & 1) && c->pos == tg->head_len[k]) {
                                        c->phase = LMP_TOOL_ARGS;
                                        c->tool = k;
                                        lmp_json_state_init(js, tg->args[k]);
                                        break;
                                }
                        break;
                }
                case LMP_TOOL_ARGS:
                        if (!lmp_json_state_feed(js, &b, 1))
                                return false;
                        if (lmp_json_state_closed(js)) {
                                c->phase = LMP_TOOL_TAIL;
                                c->pos = 0;
                        }
                        break;
                case LMP_TOOL_TAIL:
                        if (b != (unsigned char)TAIL[c->pos])
                                return false;
                        if (++c->pos == strlen(TAIL))
                                c->phase = LMP_TOOL_DONE;
                        break;
                default:
                        return false;
                }
        }
        return true;
}

static struct cursor cursor_of(const struct lmp_tool_allow *a) {
        return (struct cursor){ .phase = a->phase, .pos = a->pos, .tool = a->tool, .cand = a->cand };
}

static void set_cursor(struct lmp_tool_allow *a, const struct cursor *c) {
        a->phase = c->phase;
        a->pos = c->pos;
        a->tool = c->tool;
        a->cand = c->cand;
}

bool lmp_tool_allow(void *ctx, int32_t token) {
        struct lmp_tool_allow *a = ctx;
        const struct lmp_json_tokens *t = a->json.tokens;
        if (token < 0 || (uint32_t)token >= t->n || t->eog[token])
                return false; /* the engine ends the job when the call is done */
        uint32_t o = t->off[token], len = t->off[token + 1] - o;
        const unsigned char *p = (const unsigned char *)t->bytes + o;
        if (len == 0)
                return false;
        if (a->phase == LMP_TOOL_ARGS) {
                if (lmp_json_allow(&a->json, token))
                        return true;
                /* Refused by the document alone; it may close it and go on
                 * into the tail. */
                if (!memchr(p, '}', len))
                        return false;
        }
        struct cursor c = cursor_of(a);
        if (c.phase == LMP_TOOL_HEAD || c.phase == LMP_TOOL_TAIL) {
                /* Most tokens fail at the first byte: no copy of the document. */
                if (c.phase == LMP_TOOL_TAIL && p[0] != (unsigned char)TAIL[c.pos])
                        return false;
                if (c.phase == LMP_TOOL_HEAD) {
                        bool any = false;
                        for (uint32_t k = 0; k < a->tg->n && !any; k++)
                                any = (a->cand >> k & 1) && (unsigned char)a->tg->head[k][a->pos] == p[0];
                        if (!any)
                                return false;
                }
        }
        struct lmp_json_state js = a->json.state;
        return feed_bytes(a->tg, &c, &js, p, len);
}

bool lmp_tool_allow_feed(struct lmp_tool_allow *a, const void *bytes, size_t n) {
        struct cursor c = cursor_of(a);
        bool ok = feed_bytes(a->tg, &c, &a->json.state, bytes, n);
        set_cursor(a, &c);
        a->json.tables_ok = false;
        return ok;
}

int lmp_tool_allow_advance(struct lmp_tool_allow *a, int32_t token) {
        const struct lmp_json_tokens *t = a->json.tokens;
        if (!lmp_tool_allow(a, token))
                return -EINVAL;
        return lmp_tool_allow_feed(a, t->bytes + t->off[token], t->off[token + 1] - t->off[token]) ? 0 : -EINVAL;
}

bool lmp_tool_allow_done(const struct lmp_tool_allow *a) {
        return a->phase == LMP_TOOL_DONE;
}

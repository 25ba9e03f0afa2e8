/* Loading the configuration: defaults from the table, then the YAML file
 * (libyaml's document tree, so every value keeps its line and column), then
 * the profile named by LMPOOL_PROFILE, then LMPOOL_* environment
 * overrides, then the checks that span settings (required model fields,
 * unique names, respawn bounds). Nothing stops at the first error: each is
 * appended to the diagnostics list and loading goes on, so one run of
 * --check-config shows everything that is wrong. Profiles that are not
 * active are still checked, against a scratch copy. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common/macros.h"
#include "config/config.h"
#include "config/settings.h"

#define DIAG_MAX_ENTRIES 256
#define FILE_MAX_BYTES (16u << 20)
#define MAX_DEPTH 8     /* deeper than the schema: an error, and no runaway on alias cycles */
#define MAX_YAML_NESTING 32

static const char *const env_prefix = "LMPOOL_";

struct loader {
        const char *name;               /* the file, in messages and origins */
        char dir[LMP_CONFIG_PATH_MAX];  /* for relative model paths; "" leaves them as they are */
        yaml_document_t *doc;
        struct lmp_diag *diag;
        size_t n_errors;
        struct lmp_config *c;
        const char *layer;              /* NULL for the base document, else the profile's name */
};

/* ---- diagnostics ---- */

void lmp_diag_clear(struct lmp_diag *d) {
        if (!d)
                return;
        free(d->entries);
        *d = (struct lmp_diag){ 0 };
}

void lmp_diag_format(const struct lmp_diag_entry *e, char *buf, size_t size) {
        if (e->line)
                snprintf(buf, size, "%s:%u:%u: %s", e->where, e->line, e->column, e->msg);
        else
                snprintf(buf, size, "%s: %s", e->where, e->msg);
}

void lmp_diag_print(const struct lmp_diag *d, FILE *f) {
        char line[sizeof(d->entries[0].where) + sizeof(d->entries[0].msg) + 32];
        for (size_t i = 0; i < d->n; i++) {
                lmp_diag_format(&d->entries[i], line, sizeof(line));
                fprintf(f, "%s\n", line);
        }
        if (d->dropped)
                fprintf(f, "... and %zu more errors\n", d->dropped);
}

LMP_PRINTF(5, 0) static void diag_vadd(struct loader *L, const char *where, unsigned line, unsigned column,
                      const char *fmt, va_list ap) {
        struct lmp_diag *d = L->diag;

        L->n_errors++;
        if (!d)
                return;
        if (d->n >= DIAG_MAX_ENTRIES) {
                d->dropped++;
                return;
        }
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 8;
                struct lmp_diag_entry *e = realloc(d->entries, cap * sizeof(*e));
                if (!e) {
                        d->dropped++;
                        return;
                }
                d->entries = e;
                d->cap = cap;
        }
        struct lmp_diag_entry *e = &d->entries[d->n++];
        snprintf(e->where, sizeof(e->where), "%s", where);
        e->line = line;
        e->column = column;
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

LMP_PRINTF(3, 4) static void error_at(struct loader *L, const yaml_node_t *node, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        diag_vadd(L, L->name, node ? (unsigned)node->start_mark.line + 1 : 0,
                  node ? (unsigned)node->start_mark.column + 1 : 0, fmt, ap);
        va_end(ap);
}

LMP_PRINTF(3, 4) static void error_where(struct loader *L, const char *where, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        diag_vadd(L, where, 0, 0, fmt, ap);
        va_end(ap);
}

/* An error about a value already set: located where that value came from. */
LMP_PRINTF(3, 4) static void error_origin(struct loader *L, const struct lmp_origin *o, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (o->kind == LMP_ORIGIN_ENV)
                diag_vadd(L, o->text + 4, 0, 0, fmt, ap); /* skip "env " */
        else
                diag_vadd(L, L->name, o->line, o->column, fmt, ap);
        va_end(ap);
}

/* ---- origins and models ---- */

static struct lmp_config_origins *origins_new(size_t n) {
        struct lmp_config_origins *o = calloc(1, sizeof(*o) + n * sizeof(o->v[0]));
        if (!o)
                return NULL;
        o->n = n;
        for (size_t i = 0; i < n; i++)
                snprintf(o->v[i].text, sizeof(o->v[i].text), "default");
        return o;
}

void lmp_config_free(struct lmp_config *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_models; i++)
                free(c->models[i].origins);
        free(c->models);
        free(c->origins);
        free(c);
}

static struct lmp_config *config_new(void) {
        struct lmp_config *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->origins = origins_new(lmp_config_n_settings);
        c->models = calloc(LMP_CONFIG_MAX_MODELS, sizeof(c->models[0]));
        if (!c->origins || !c->models) {
                lmp_config_free(c);
                return NULL;
        }
        lmp_settings_set_defaults(lmp_config_settings, lmp_config_n_settings, c);
        return c;
}

/* Appends a model with default values; NULL when the list is full or
 * memory ran out. */
static struct lmp_model_config *model_add(struct lmp_config *c, const yaml_node_t *at) {
        if (c->n_models >= LMP_CONFIG_MAX_MODELS)
                return NULL;
        struct lmp_model_config *m = &c->models[c->n_models];
        memset(m, 0, sizeof(*m));
        m->origins = origins_new(lmp_model_n_settings);
        if (!m->origins)
                return NULL;
        if (at) {
                m->origins->line = (unsigned)at->start_mark.line + 1;
                m->origins->column = (unsigned)at->start_mark.column + 1;
        }
        lmp_settings_set_defaults(lmp_model_settings, lmp_model_n_settings, m);
        c->n_models++;
        return m;
}

const struct lmp_model_config *lmp_config_find_model(const struct lmp_config *c, const char *name) {
        for (size_t i = 0; c && name && i < c->n_models; i++)
                if (strcmp(c->models[i].name, name) == 0)
                        return &c->models[i];
        return NULL;
}

/* ---- applying YAML nodes ---- */

static bool scalar_is(const yaml_node_t *n, const char *s) {
        return n && n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, s) == 0;
}

static bool scalar_is_null(const yaml_node_t *n) {
        if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        const char *v = (const char *)n->data.scalar.value;
        return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
        switch (n->type) {
        case YAML_MAPPING_NODE: return "a mapping";
        case YAML_SEQUENCE_NODE: return "a list";
        default: return "a scalar";
        }
}

/* Where a value set now comes from. */
static void set_origin(struct loader *L, struct lmp_origin *o, const yaml_node_t *at) {
        o->line = (unsigned)at->start_mark.line + 1;
        o->column = (unsigned)at->start_mark.column + 1;
        if (L->layer) {
                o->kind = LMP_ORIGIN_PROFILE;
                snprintf(o->text, sizeof(o->text), "profile %s, %s:%u", L->layer, L->name, o->line);
        } else {
                o->kind = LMP_ORIGIN_FILE;
                snprintf(o->text, sizeof(o->text), "%s:%u", L->name, o->line);
        }
}

/* Relative model paths are relative to the configuration file. */
static int resolve_path(struct loader *L, char *path, size_t size) {
        if (!L->dir[0] || !path[0] || path[0] == '/')
                return 0;
        char tmp[LMP_CONFIG_PATH_MAX];
        int n = snprintf(tmp, sizeof(tmp), "%s/%s", L->dir, path);
        if (n < 0 || (size_t)n >= size)
                return -ENAMETOOLONG;
        memcpy(path, tmp, (size_t)n + 1);
        return 0;
}

/* What one mapping applies to: a table, the struct its fields live in,
 * their origins, the first line each row was set at in this layer, and the
 * prefix of keys in messages ("" or "models[2]."). */
struct target {
        const struct lmp_setting *table;
        size_t n;
        void *base;
        struct lmp_config_origins *origins;
        unsigned *seen;
        const char *ctx;
};

static void apply_mapping(struct loader *L, const struct target *t, const yaml_node_t *map,
                          const char *prefix, int depth);

static const struct lmp_setting *find_row(const struct target *t, const char *key, bool *ret_section) {
        size_t kl = strlen(key);
        *ret_section = false;
        for (size_t i = 0; i < t->n; i++) {
                if (strcmp(t->table[i].key, key) == 0)
                        return &t->table[i];
                if (strncmp(t->table[i].key, key, kl) == 0 && t->table[i].key[kl] == '.')
                        *ret_section = true;
        }
        return NULL;
}

static void apply_value(struct loader *L, const struct target *t, const struct lmp_setting *s,
                        const yaml_node_t *key, const yaml_node_t *val) {
        size_t row = (size_t)(s - t->table);
        char msg[384];

        if (val->type != YAML_SCALAR_NODE)
                t->origins->v[row].invalid = true;
        if (t->seen[row]) {
                error_at(L, key, "key '%s%s' is given twice (first at line %u)", t->ctx, s->key, t->seen[row]);
                return;
        }
        t->seen[row] = (unsigned)key->start_mark.line + 1;
        if (val->type != YAML_SCALAR_NODE) {
                error_at(L, val, "key '%s%s': expected %s %s, got %s", t->ctx, s->key,
                         s->type == LMP_SETTING_INT || s->type == LMP_SETTING_ENUM ? "an" : "a",
                         lmp_setting_type_name(s), node_kind(val));
                return;
        }
        const char *text = (const char *)val->data.scalar.value;
        if (strlen(text) != val->data.scalar.length) {
                error_at(L, val, "key '%s%s': the value contains a NUL byte", t->ctx, s->key);
                t->origins->v[row].invalid = true;
                return;
        }
        if (lmp_setting_parse(s, t->base, text, scalar_is_null(val), msg, sizeof(msg)) < 0) {
                error_at(L, val, "key '%s%s': %s", t->ctx, s->key, msg);
                t->origins->v[row].invalid = true;
                return;
        }
        if (s->flags & LMP_SETTING_PATH) {
                char *field = (char *)t->base + s->offset;
                if (resolve_path(L, field, s->size) < 0) {
                        error_at(L, val, "key '%s%s': the path is too long once made relative to %s",
                                 t->ctx, s->key, L->dir);
                        field[0] = '\0';
                        return;
                }
        }
        set_origin(L, &t->origins->v[row], val);
}

static void apply_pair(struct loader *L, const struct target *t, const yaml_node_t *key,
                       const yaml_node_t *val, const char *prefix, int depth) {
        char full[256];
        bool section;

        if (key->type != YAML_SCALAR_NODE) {
                error_at(L, key, "keys must be plain names, not %s", node_kind(key));
                return;
        }
        snprintf(full, sizeof(full), "%s%s", prefix, (const char *)key->data.scalar.value);
        const struct lmp_setting *s = find_row(t, full, &section);
        if (s) {
                apply_value(L, t, s, key, val);
        } else if (section) {
                if (val->type != YAML_MAPPING_NODE) {
                        if (val->type == YAML_SCALAR_NODE && scalar_is_null(val))
                                return; /* an empty section */
                        error_at(L, val, "key '%s%s': expected a mapping, got %s", t->ctx, full, node_kind(val));
                        return;
                }
                size_t n = strlen(full);
                if (n + 2 > sizeof(full))
                        return;
                full[n] = '.';
                full[n + 1] = '\0';
                apply_mapping(L, t, val, full, depth + 1);
        } else {
                error_at(L, key, "unknown key '%s%s'", t->ctx, full);
        }
}

static void apply_mapping(struct loader *L, const struct target *t, const yaml_node_t *map,
                          const char *prefix, int depth) {
        if (depth > MAX_DEPTH) {
                error_at(L, map, "nested too deeply");
                return;
        }
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
                apply_pair(L, t, yaml_document_get_node(L->doc, p->key),
                           yaml_document_get_node(L->doc, p->value), prefix, depth);
}

static const yaml_node_t *mapping_get(struct loader *L, const yaml_node_t *map, const char *key) {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
                if (scalar_is(yaml_document_get_node(L->doc, p->key), key))
                        return yaml_document_get_node(L->doc, p->value);
        return NULL;
}

/* The `models` list of one layer. In a profile an entry whose name matches
 * a model overlays it; any other entry is a new model. */
static void apply_models(struct loader *L, struct lmp_config *c, const yaml_node_t *seq) {
        struct { const char *name; unsigned line; } seen[LMP_CONFIG_MAX_MODELS];
        size_t n_seen = 0, i = 0;

        if (seq->type != YAML_SEQUENCE_NODE) {
                if (seq->type == YAML_SCALAR_NODE && scalar_is_null(seq))
                        return;
                error_at(L, seq, "key 'models': expected a list, got %s", node_kind(seq));
                return;
        }
        for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++, i++) {
                const yaml_node_t *item = yaml_document_get_node(L->doc, *it);
                char ctx[32];
                snprintf(ctx, sizeof(ctx), "models[%zu].", i);
                if (item->type != YAML_MAPPING_NODE) {
                        error_at(L, item, "key 'models[%zu]': expected a mapping, got %s", i, node_kind(item));
                        continue;
                }
                const yaml_node_t *name = mapping_get(L, item, "name");
                const char *nm = name && name->type == YAML_SCALAR_NODE ? (const char *)name->data.scalar.value : NULL;
                bool dup = false;
                for (size_t k = 0; nm && k < n_seen; k++) {
                        if (strcmp(seen[k].name, nm) == 0) {
                                error_at(L, name, "key '%sname': duplicate model name '%s' (first at line %u)",
                                         ctx, nm, seen[k].line);
                                dup = true;
                                break;
                        }
                }
                if (dup)
                        continue;
                struct lmp_model_config *m = L->layer && nm ? (struct lmp_model_config *)lmp_config_find_model(c, nm) : NULL;
                if (!m && !(m = model_add(c, item))) {
                        error_at(L, item, "key 'models': more than %d models", LMP_CONFIG_MAX_MODELS);
                        return;
                }
                if (nm && n_seen < LMP_CONFIG_MAX_MODELS) {
                        seen[n_seen].name = nm;
                        seen[n_seen++].line = (unsigned)name->start_mark.line + 1;
                }
                unsigned rows_seen[LMP_SETTINGS_MAX] = { 0 };
                struct target t = { lmp_model_settings, lmp_model_n_settings, m, m->origins, rows_seen, ctx };
                apply_mapping(L, &t, item, "", 1);
        }
}

/* One layer: the base document or a profile's mapping. */
static void apply_layer(struct loader *L, struct lmp_config *c, const yaml_node_t *map) {
        unsigned rows_seen[LMP_SETTINGS_MAX] = { 0 };
        struct target t = { lmp_config_settings, lmp_config_n_settings, c, c->origins, rows_seen, "" };
        bool models_seen = false;

        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                const yaml_node_t *key = yaml_document_get_node(L->doc, p->key);
                const yaml_node_t *val = yaml_document_get_node(L->doc, p->value);
                if (scalar_is(key, "profiles")) {
                        if (L->layer)
                                error_at(L, key, "profiles cannot be nested (in profile '%s')", L->layer);
                        continue; /* the base's profiles are applied after it */
                }
                if (scalar_is(key, "models")) {
                        if (models_seen) {
                                error_at(L, key, "key 'models' is given twice");
                                continue;
                        }
                        models_seen = true;
                        apply_models(L, c, val);
                        continue;
                }
                apply_pair(L, &t, key, val, "", 1);
        }
}

static const char *env_get(char *const *envp, const char *name) {
        size_t n = strlen(name);
        for (size_t i = 0; envp && envp[i]; i++)
                if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
                        return envp[i] + n + 1;
        return NULL;
}

static void apply_profiles(struct loader *L, const yaml_node_t *root, const char *active) {
        const yaml_node_t *profiles = NULL;
        bool found = false;

        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                const yaml_node_t *key = yaml_document_get_node(L->doc, p->key);
                if (!scalar_is(key, "profiles"))
                        continue;
                if (profiles) {
                        error_at(L, key, "key 'profiles' is given twice");
                        continue;
                }
                profiles = yaml_document_get_node(L->doc, p->value);
        }
        if (profiles && profiles->type != YAML_MAPPING_NODE && !(profiles->type == YAML_SCALAR_NODE && scalar_is_null(profiles))) {
                error_at(L, profiles, "key 'profiles': expected a mapping of profile names, got %s", node_kind(profiles));
                profiles = NULL;
        }
        if (profiles && profiles->type == YAML_MAPPING_NODE) {
                for (yaml_node_pair_t *p = profiles->data.mapping.pairs.start; p < profiles->data.mapping.pairs.top; p++) {
                        const yaml_node_t *key = yaml_document_get_node(L->doc, p->key);
                        const yaml_node_t *val = yaml_document_get_node(L->doc, p->value);
                        if (key->type != YAML_SCALAR_NODE) {
                                error_at(L, key, "profile names must be plain names, not %s", node_kind(key));
                                continue;
                        }
                        const char *name = (const char *)key->data.scalar.value;
                        size_t nl = strlen(name);
                        bool name_ok = nl >= 1 && nl <= LMP_CONFIG_NAME_MAX;
                        for (size_t i = 0; i < nl; i++)
                                name_ok &= (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                                           (name[i] >= '0' && name[i] <= '9') || strchr("._-", name[i]) != NULL;
                        if (!name_ok) {
                                error_at(L, key, "profile name '%.64s' must be 1 to 64 characters from A-Z a-z 0-9 . _ -", name);
                                continue;
                        }
                        for (yaml_node_pair_t *q = profiles->data.mapping.pairs.start; q < p; q++) {
                                if (scalar_is(yaml_document_get_node(L->doc, q->key), name)) {
                                        error_at(L, key, "profile '%s' is defined twice", name);
                                        name_ok = false;
                                        break;
                                }
                        }
                        if (!name_ok)
                                continue;
                        if (val->type != YAML_MAPPING_NODE) {
                                if (val->type == YAML_SCALAR_NODE && scalar_is_null(val)) {
                                        found |= active && strcmp(active, name) == 0;
                                        continue;
                                }
                                error_at(L, val, "profile '%s': expected a mapping, got %s", name, node_kind(val));
                                continue;
                        }
                        L->layer = name;
                        if (active && strcmp(active, name) == 0) {
                                found = true;
                                apply_layer(L, L->c, val);
                        } else {
                                /* Checked all the same, against defaults that are then dropped. */
                                struct lmp_config *scratch = config_new();
                                if (scratch) {
                                        apply_layer(L, scratch, val);
                                        lmp_config_free(scratch);
                                }
                        }
                        L->layer = NULL;
                }
        }
        if (active && !found) {
                char names[256] = "";
                for (yaml_node_pair_t *p = profiles && profiles->type == YAML_MAPPING_NODE ? profiles->data.mapping.pairs.start : NULL;
                     p && p < profiles->data.mapping.pairs.top; p++) {
                        const yaml_node_t *key = yaml_document_get_node(L->doc, p->key);
                        if (key->type != YAML_SCALAR_NODE)
                                continue;
                        if (names[0])
                                strncat(names, ", ", sizeof(names) - strlen(names) - 1);
                        strncat(names, (const char *)key->data.scalar.value, sizeof(names) - strlen(names) - 1);
                }
                error_where(L, "LMPOOL_PROFILE", "unknown profile '%.64s' (%s%s)", active,
                            names[0] ? "the file defines: " : "the file defines no profiles", names);
        } else if (active) {
                snprintf(L->c->profile, sizeof(L->c->profile), "%s", active);
        }
}

/* ---- environment overrides ---- */

static void apply_env_value(struct loader *L, const struct lmp_setting *s, void *base, struct lmp_origin *o,
                            const char *var, size_t var_len, const char *value, const char *ctx) {
        char msg[384], name[128];
        snprintf(name, sizeof(name), "%.*s", (int)var_len, var);
        if (lmp_setting_parse(s, base, value, false, msg, sizeof(msg)) < 0) {
                error_where(L, name, "key '%s%s': %s", ctx, s->key, msg);
                o->invalid = true;
                return;
        }
        o->kind = LMP_ORIGIN_ENV;
        o->line = o->column = 0;
        snprintf(o->text, sizeof(o->text), "env %.90s", name);
}

static const struct lmp_setting *env_row(const struct lmp_setting *table, size_t n, const char *name, size_t len) {
        char env[128];
        for (size_t i = 0; i < n; i++) {
                lmp_setting_env_name(&table[i], env, sizeof(env));
                if (strlen(env) == len && strncmp(env, name, len) == 0)
                        return &table[i];
        }
        return NULL;
}

/* Does LMPOOL_<rest> name a section of the table (ROUTER_, LIMITS_, ...)? */
static bool env_in_section(const char *rest, size_t len) {
        char env[128];
        for (size_t i = 0; i < lmp_config_n_settings; i++) {
                lmp_setting_env_name(&lmp_config_settings[i], env, sizeof(env));
                char *us = strchr(env, '_');
                if (us && (size_t)(us - env + 1) <= len && strncmp(env, rest, (size_t)(us - env + 1)) == 0)
                        return true;
        }
        return len >= 7 && strncmp(rest, "MODELS_", 7) == 0;
}

static void apply_env(struct loader *L, char *const *envp) {
        struct lmp_config *c = L->c;

        for (size_t i = 0; envp && envp[i]; i++) {
                const char *var = envp[i], *eq = strchr(var, '=');
                size_t pl = strlen(env_prefix);
                if (!eq || strncmp(var, env_prefix, pl) != 0)
                        continue;
                const char *rest = var + pl, *value = eq + 1;
                size_t rl = (size_t)(eq - rest), var_len = (size_t)(eq - var);
                if (!env_in_section(rest, rl))
                        continue; /* LMPOOL_PROFILE, LMPOOL_CONFIG and others are not settings */
                const struct lmp_setting *s = env_row(lmp_config_settings, lmp_config_n_settings, rest, rl);
                if (s) {
                        apply_env_value(L, s, c, &c->origins->v[s - lmp_config_settings], var, var_len, value, "");
                        continue;
                }
                if (rl > 7 && strncmp(rest, "MODELS_", 7) == 0) {
                        const char *p = rest + 7;
                        size_t idx = 0, digits = 0;
                        while (p < eq && *p >= '0' && *p <= '9' && digits < 4) {
                                idx = idx * 10 + (size_t)(*p++ - '0');
                                digits++;
                        }
                        if (digits && p < eq && *p == '_') {
                                p++;
                                s = env_row(lmp_model_settings, lmp_model_n_settings, p, (size_t)(eq - p));
                                if (s && idx >= c->n_models) {
                                        char name[128];
                                        snprintf(name, sizeof(name), "%.*s", (int)var_len, var);
                                        error_where(L, name, "there is no model %zu (%zu configured)", idx, c->n_models);
                                        continue;
                                }
                                if (s) {
                                        struct lmp_model_config *m = &c->models[idx];
                                        char ctx[32];
                                        snprintf(ctx, sizeof(ctx), "models[%zu].", idx);
                                        apply_env_value(L, s, m, &m->origins->v[s - lmp_model_settings], var, var_len,
                                                        value, ctx);
                                        continue;
                                }
                        }
                }
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)var_len, var);
                error_where(L, name, "not a setting (see docs/config.md for the LMPOOL_* names)");
        }
}

/* ---- checks across settings ---- */

static size_t global_row(const char *key) {
        size_t row = 0;
        while (strcmp(lmp_config_settings[row].key, key) != 0)
                row++;
        return row;
}

bool lmp_config_tcp_is_loopback(const char *endpoint) {
        char host[LMP_CONFIG_ENDPOINT_MAX];
        struct in_addr a4;
        if (strncmp(endpoint, "tcp://", 6) != 0)
                return false;
        snprintf(host, sizeof(host), "%s", endpoint + 6);
        char *colon = strrchr(host, ':');
        if (!colon)
                return false;
        *colon = '\0';
        if (strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
                return true;
        /* inet_pton takes only the dotted quad, never "127.1" or a name */
        return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* A TCP endpoint that the network can reach must authenticate its clients:
 * CURVE with an allow-list, or no start. The key files themselves are read
 * by the daemon and by --check-config. */
static void check_tcp_security(struct loader *L) {
        struct lmp_config *c = L->c;
        const struct lmp_origin *go = c->origins->v;
        bool curve = c->curve_key[0] && c->curve_clients[0];

        if (c->curve_key[0] && !c->curve_clients[0])
                error_origin(L, &go[global_row("router.curve_key")], "key 'router.curve_key': router.curve_clients "
                             "is required with it (the public keys of the clients allowed)");
        if (c->curve_clients[0] && !c->curve_key[0])
                error_origin(L, &go[global_row("router.curve_clients")], "key 'router.curve_clients': "
                             "router.curve_key is required with it (the server's key pair)");
        if (c->tcp[0] && !curve && !lmp_config_tcp_is_loopback(c->tcp))
                error_origin(L, &go[global_row("router.tcp")], "key 'router.tcp': %s is not a loopback address: "
                             "clients from the network must be authenticated; set router.curve_key and "
                             "router.curve_clients (docs/security.md), or bind 127.0.0.1", c->tcp);
        if (strncmp(c->endpoint, "tcp://", 6) == 0 && !curve && !lmp_config_tcp_is_loopback(c->endpoint))
                error_origin(L, &go[global_row("router.endpoint")], "key 'router.endpoint': %s is not a loopback "
                             "address: clients from the network must be authenticated; set router.curve_key and "
                             "router.curve_clients (docs/security.md), or bind 127.0.0.1", c->endpoint);
}

static void check_config(struct loader *L) {
        struct lmp_config *c = L->c;
        const struct lmp_origin *go = c->origins->v;

        if (c->n_models < LMP_CONFIG_MIN_MODELS)
                error_where(L, L->name, "key 'models': at least one model is required");
        if (c->respawn_min_ms > c->respawn_max_ms) {
                size_t row = 0;
                while (strcmp(lmp_config_settings[row].key, "workers.respawn_max_ms") != 0)
                        row++;
                error_origin(L, &go[row], "key 'workers.respawn_max_ms': %d is below workers.respawn_min_ms %d",
                             c->respawn_max_ms, c->respawn_min_ms);
        }
        check_tcp_security(L);
        for (size_t i = 0; i < c->n_models; i++) {
                struct lmp_model_config *m = &c->models[i];
                struct lmp_origin entry = { .kind = LMP_ORIGIN_FILE, .line = m->origins->line, .column = m->origins->column };
                for (size_t r = 0; r < lmp_model_n_settings; r++) {
                        const struct lmp_setting *s = &lmp_model_settings[r];
                        if ((s->flags & LMP_SETTING_REQUIRED) && s->type == LMP_SETTING_STRING &&
                            !((char *)m + s->offset)[0] && !m->origins->v[r].invalid)
                                error_origin(L, &entry, "key 'models[%zu].%s' is required", i, s->key);
                        if (strcmp(s->key, "defaults.max_tokens") == 0 && m->defaults.max_tokens > c->max_tokens)
                                error_origin(L, &m->origins->v[r],
                                             "key 'models[%zu].defaults.max_tokens': %d is above limits.max_tokens %d",
                                             i, m->defaults.max_tokens, c->max_tokens);
                }
                if (m->semantic.model[0]) {
                        /* Its kind (an embedding model) is known only once it loads: the router
                         * then serves this model uncached (and says so in stats). */
                        size_t r = 0, k = 0;
                        while (strcmp(lmp_model_settings[r].key, "semantic_cache.model") != 0)
                                r++;
                        while (k < c->n_models && strcmp(c->models[k].name, m->semantic.model) != 0)
                                k++;
                        if (k == c->n_models)
                                error_origin(L, &m->origins->v[r],
                                             "key 'models[%zu].semantic_cache.model': no model named '%s' in the pool",
                                             i, m->semantic.model);
                        else if (k == i)
                                error_origin(L, &m->origins->v[r],
                                             "key 'models[%zu].semantic_cache.model': '%s' is this model itself "
                                             "(it must be an embedding model)", i, m->semantic.model);
                }
                for (size_t k = 0; k < i; k++) {
                        if (m->name[0] && strcmp(m->name, c->models[k].name) == 0) {
                                error_origin(L, &m->origins->v[0], "key 'models[%zu].name': duplicate model name '%s' (models[%zu])",
                                             i, m->name, k);
                                break;
                        }
                }
        }
}

/* ---- entry points ---- */

/* libyaml's scanner slows down quadratically with the nesting of flow
 * collections ("[[[[..."), so a first pass over the events refuses
 * documents nested far deeper than any configuration needs, before the
 * loader builds the tree. Syntax errors are left to the loader. */
static int check_nesting(struct loader *L, const void *data, size_t size) {
        yaml_parser_t parser;
        yaml_event_t ev;
        int depth = 0, r = 0;

        if (!yaml_parser_initialize(&parser)) {
                error_where(L, L->name, "out of memory");
                return -ENOMEM;
        }
        yaml_parser_set_input_string(&parser, data, size);
        for (;;) {
                if (!yaml_parser_parse(&parser, &ev))
                        break;
                yaml_event_type_t type = ev.type;
                if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
                        if (++depth > MAX_YAML_NESTING) {
                                yaml_node_t at = { .start_mark = ev.start_mark };
                                error_at(L, &at, "YAML: nested deeper than %d levels", MAX_YAML_NESTING);
                                r = -EINVAL;
                        }
                } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
                        depth--;
                }
                yaml_event_delete(&ev);
                if (r < 0 || type == YAML_STREAM_END_EVENT)
                        break;
        }
        yaml_parser_delete(&parser);
        return r;
}

static void yaml_error(struct loader *L, const yaml_parser_t *parser) {
        yaml_node_t at = { .start_mark = parser->problem_mark };
        const char *problem = parser->problem ? parser->problem : "cannot parse";
        if (parser->context)
                error_at(L, &at, "YAML: %s %s", problem, parser->context);
        else
                error_at(L, &at, "YAML: %s", problem);
}

static int load(const char *name, const char *dir, const void *data, size_t size, char *const *envp,
                struct lmp_config **ret, struct lmp_diag *diag) {
        extern char **environ;
        struct loader L = { .name = name, .diag = diag };
        yaml_parser_t parser;
        yaml_document_t doc, extra;
        int r;

        if (!envp)
                envp = environ;
        snprintf(L.dir, sizeof(L.dir), "%s", dir ? dir : "");
        L.c = config_new();
        if (!L.c) {
                error_where(&L, name, "out of memory");
                return -ENOMEM;
        }
        snprintf(L.c->path, sizeof(L.c->path), "%s", name);

        if ((r = check_nesting(&L, data, size)) < 0) {
                lmp_config_free(L.c);
                return r;
        }
        if (!yaml_parser_initialize(&parser)) {
                lmp_config_free(L.c);
                error_where(&L, name, "out of memory");
                return -ENOMEM;
        }
        yaml_parser_set_input_string(&parser, data, size);
        if (!yaml_parser_load(&parser, &doc)) {
                yaml_error(&L, &parser);
                yaml_parser_delete(&parser);
                lmp_config_free(L.c);
                return -EINVAL;
        }
        L.doc = &doc;
        /* One document only: a second one is most likely a mistake. */
        if (!yaml_parser_load(&parser, &extra)) {
                yaml_error(&L, &parser);
                yaml_parser_delete(&parser);
                yaml_document_delete(&doc);
                lmp_config_free(L.c);
                return -EINVAL;
        }
        if (yaml_document_get_root_node(&extra))
                error_at(&L, yaml_document_get_root_node(&extra), "a second YAML document; the file must hold one");
        yaml_document_delete(&extra);
        yaml_parser_delete(&parser);

        const yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type != YAML_MAPPING_NODE && !(root->type == YAML_SCALAR_NODE && scalar_is_null(root))) {
                error_at(&L, root, "the top level must be a mapping of sections, not %s", node_kind(root));
                root = NULL;
        }
        if (root && root->type == YAML_MAPPING_NODE) {
                apply_layer(&L, L.c, root);
                apply_profiles(&L, root, env_get(envp, "LMPOOL_PROFILE"));
        } else if (env_get(envp, "LMPOOL_PROFILE")) {
                error_where(&L, "LMPOOL_PROFILE", "unknown profile '%.64s' (the file defines no profiles)",
                            env_get(envp, "LMPOOL_PROFILE"));
        }
        apply_env(&L, envp);
        check_config(&L);
        yaml_document_delete(&doc);

        if (L.n_errors) {
                lmp_config_free(L.c);
                return -EINVAL;
        }
        *ret = L.c;
        return 0;
}

int lmp_config_load_buffer(const char *name, const void *data, size_t size, char *const *envp,
                           struct lmp_config **ret, struct lmp_diag *diag) {
        return load(name ? name : "<buffer>", NULL, data, size, envp, ret, diag);
}

const char *lmp_config_path(const char *given) {
        if (given && *given)
                return given;
        const char *env = getenv("LMPOOL_CONFIG");
        return env && *env ? env : LMP_CONFIG_DEFAULT_PATH;
}

int lmp_config_load(const char *path, char *const *envp, struct lmp_config **ret, struct lmp_diag *diag) {
        struct loader L = { .name = path, .diag = diag };
        char dir[LMP_CONFIG_PATH_MAX];
        struct stat st;
        FILE *f;
        int r;

        if (!path)
                return -EINVAL;
        f = fopen(path, "rb");
        if (!f) {
                r = -errno;
                error_where(&L, path, "cannot open: %s", strerror(-r));
                return r;
        }
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX_BYTES) {
                fclose(f);
                error_where(&L, path, "not a regular file of at most %u bytes", FILE_MAX_BYTES);
                return -EINVAL;
        }
        char *buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                fclose(f);
                error_where(&L, path, "out of memory");
                return -ENOMEM;
        }
        size_t n = fread(buf, 1, (size_t)st.st_size, f);
        bool failed = ferror(f);
        fclose(f);
        if (failed) {
                free(buf);
                error_where(&L, path, "read error");
                return -EIO;
        }
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash)
                dir[0] = '\0';
        else if (slash == dir)
                dir[1] = '\0';
        else
                *slash = '\0';
        r = load(path, dir, buf, n, envp, ret, diag);
        free(buf);
        return r;
}

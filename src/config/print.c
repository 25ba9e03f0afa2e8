/* The configuration shown back to people: the effective configuration as
 * YAML with each value's origin (what `lmpoold --check-config` prints), the
 * default client endpoint, and the --check-config entry point itself. All
 * of it walks the settings table, so a new row shows up here unasked. */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/args.h"
#include "common/curvekey.h"
#include "config/config.h"
#include "config/settings.h"

static const char *env_lookup(char *const *envp, const char *name) {
        size_t n = strlen(name);
        for (size_t i = 0; envp && envp[i]; i++)
                if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
                        return envp[i] + n + 1;
        return NULL;
}

int lmp_config_default_endpoint(char *const *envp, char *buf, size_t size) {
        extern char **environ;
        const char *rt, *xdg;
        int n;

        if (!envp)
                envp = environ;
        rt = env_lookup(envp, "RUNTIME_DIRECTORY");
        xdg = env_lookup(envp, "XDG_RUNTIME_DIR");
        if (rt && *rt) {
                /* systemd lists several directories separated by ':' when the
                 * unit asks for several; ours is the first. */
                size_t len = strcspn(rt, ":");
                n = snprintf(buf, size, "ipc://%.*s/lmpool.sock", (int)len, rt);
        } else if (xdg && *xdg) {
                n = snprintf(buf, size, "ipc://%s/lmpool/lmpool.sock", xdg);
        } else {
                n = snprintf(buf, size, "ipc:///tmp/lmpool-%u/lmpool.sock", (unsigned)getuid());
        }
        /* 107: the longest path a sockaddr_un holds. */
        if (n < 0 || (size_t)n >= size || (size_t)n - 6 > 107)
                return -ENAMETOOLONG;
        return 0;
}

int lmp_config_endpoint(const struct lmp_config *c, char *const *envp, char *buf, size_t size) {
        if (c->endpoint[0]) {
                int n = snprintf(buf, size, "%s", c->endpoint);
                return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
        }
        return lmp_config_default_endpoint(envp, buf, size);
}

/* Prints the rows of one table as YAML keys at `indent`, opening a
 * section each time the key's prefix changes (keys have at most one dot);
 * the first line starts with `first` instead of `indent` (a list item's
 * "- "). */
static void print_rows(FILE *f, const struct lmp_setting *table, size_t n, const void *base,
                       const struct lmp_config_origins *o, const char *indent, const char *first) {
        char section[128] = "", value[LMP_CONFIG_PATH_MAX * 4 + 8];

        for (size_t i = 0; i < n; i++) {
                const struct lmp_setting *s = &table[i];
                const char *dot = strchr(s->key, '.');
                size_t sl = dot ? (size_t)(dot - s->key) : 0;
                const char *lead = i == 0 ? first : indent;

                if (!sl) {
                        section[0] = '\0';
                } else if (strlen(section) != sl || strncmp(section, s->key, sl) != 0) {
                        snprintf(section, sizeof(section), "%.*s", (int)sl, s->key);
                        fprintf(f, "%s%s:\n", lead, section);
                        lead = indent;
                }
                lmp_setting_format(s, base, value, sizeof(value));
                fprintf(f, "%s%s%s: %s  # %s\n", lead, sl ? "  " : "", sl ? dot + 1 : s->key, value, o->v[i].text);
        }
}

int lmp_config_print(const struct lmp_config *c, FILE *f) {
        char ep[LMP_CONFIG_ENDPOINT_MAX + 32];

        fprintf(f, "# lmpool effective configuration, from %s%s%s\n", c->path,
                c->profile[0] ? " with profile " : "", c->profile);
        if (!c->endpoint[0] && lmp_config_default_endpoint(NULL, ep, sizeof(ep)) == 0)
                fprintf(f, "# router.endpoint is empty: clients connect to %s\n", ep);
        print_rows(f, lmp_config_settings, lmp_config_n_settings, c, c->origins, "", "");
        fprintf(f, "models:\n");
        for (size_t i = 0; i < c->n_models; i++)
                print_rows(f, lmp_model_settings, lmp_model_n_settings, &c->models[i], c->models[i].origins, "    ",
                           "  - ");
        return ferror(f) ? -EIO : 0;
}

/* What the daemon would refuse at start in the router's settings: a group
 * that does not exist, CURVE key files it cannot read or parse. */
static int check_security_files(const struct lmp_config *c) {
        struct lmp_error err = { 0 };
        int r = 0;
        if (c->group[0] && !getgrnam(c->group)) {
                char *end;
                errno = 0;
                unsigned long gid = strtoul(c->group, &end, 10);
                if (*end || errno || gid > 0x7fffffffUL) {
                        fprintf(stderr, "%s: key 'router.group': no group named '%s'\n", c->path, c->group);
                        r = -ENOENT;
                }
        }
        if (c->curve_key[0]) {
                struct lmp_curve_key pub, sec;
                if (lmp_curve_read_keypair(c->curve_key, &pub, &sec, &err) < 0) {
                        fprintf(stderr, "%s: key 'router.curve_key': %s\n", c->path, err.msg);
                        r = err.code;
                }
                memset(&sec, 0, sizeof(sec));
        }
        if (c->curve_clients[0]) {
                struct lmp_curve_key *keys = NULL;
                size_t n = 0;
                if (lmp_curve_read_allowlist(c->curve_clients, &keys, &n, &err) < 0) {
                        fprintf(stderr, "%s: key 'router.curve_clients': %s\n", c->path, err.msg);
                        r = err.code;
                }
                free(keys);
        }
        return r;
}

static void check_usage(FILE *f) {
        fprintf(f, "usage: lmpoold --check-config [FILE]\n");
}

int lmp_config_check_main(int argc, char **argv) {
        const char *path = NULL;
        struct lmp_config *c = NULL;
        struct lmp_diag diag = { 0 };
        int r, status = 0;

        bool check = false;
        const struct lmp_opt opts[] = {
                { "check-config", 0, LMP_OPT_FLAG, &check }, /* how we got here */
                { "config", 0, LMP_OPT_STRING, &path },
                { "help", 'h', LMP_OPT_HELP },
                { 0 },
        };
        struct lmp_args a;
        int parsed = lmp_args_parse(&a, "lmpoold", argc, argv, opts, check_usage);
        if (parsed != LMP_ARGS_GO)
                return parsed;
        if (optind < argc && !path)
                path = argv[optind++];
        if (optind < argc)
                return lmp_args_unexpected(&a, argv[optind]);
        path = lmp_config_path(path);

        r = lmp_config_load(path, NULL, &c, &diag);
        if (r < 0) {
                lmp_diag_print(&diag, stderr);
                if (!diag.n)
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                lmp_diag_clear(&diag);
                return 1;
        }
        lmp_diag_clear(&diag);

        /* The parser leaves files to the daemon; a check wants to know now. */
        for (size_t row = 0; row < lmp_model_n_settings; row++) {
                if (!(lmp_model_settings[row].flags & LMP_SETTING_PATH))
                        continue;
                const char *key = lmp_model_settings[row].key;
                for (size_t i = 0; i < c->n_models; i++) {
                        struct lmp_model_config *m = &c->models[i];
                        const char *file = (const char *)m + lmp_model_settings[row].offset;
                        const struct lmp_origin *o = &m->origins->v[row];
                        struct stat st;
                        const char *why = NULL;
                        if (!file[0])
                                continue;       /* an optional path not given */
                        if (stat(file, &st) < 0)
                                why = strerror(errno);
                        else if (!S_ISREG(st.st_mode))
                                why = "not a regular file";
                        if (!why)
                                continue;
                        if (o->kind == LMP_ORIGIN_ENV)
                                fprintf(stderr, "%s: key 'models[%zu].%s': %s: %s\n", o->text + 4, i, key, file, why);
                        else
                                fprintf(stderr, "%s:%u:%u: key 'models[%zu].%s': %s: %s\n", c->path, o->line, o->column,
                                        i, key, file, why);
                        status = 1;
                }
        }
        if (check_security_files(c) < 0)
                status = 1;
        if (status == 0 && lmp_config_print(c, stdout) < 0)
                status = 1;
        lmp_config_free(c);
        return status;
}

/* Appends " key" (or " prefix[name].key") to buf when it fits. */
static void diff_add(char *buf, size_t size, size_t *len, bool *cut, const char *prefix, const char *name,
                     const char *key) {
        char item[256];
        int n = name ? snprintf(item, sizeof(item), "%s%s[%s]%s%s", *len ? " " : "", prefix, name, key ? "." : "",
                                key ? key : "")
                     : snprintf(item, sizeof(item), "%s%s", *len ? " " : "", key);
        if (*cut || n < 0)
                return;
        if (*len + (size_t)n + 4 >= size) {
                if (*len + 4 < size) {
                        memcpy(buf + *len, " ...", 5);
                        *len += 4;
                }
                *cut = true;
                return;
        }
        memcpy(buf + *len, item, (size_t)n + 1);
        *len += (size_t)n;
}

size_t lmp_config_diff(const struct lmp_config *a, const struct lmp_config *b,
                       bool (*keep)(const char *key, bool model_row, void *userdata), void *userdata,
                       char *buf, size_t size) {
        char va[LMP_CONFIG_PATH_MAX + 16], vb[LMP_CONFIG_PATH_MAX + 16];
        size_t len = 0, count = 0;
        bool cut = false;

        if (size)
                buf[0] = '\0';
        if (size < 8)
                return 0;
        for (size_t i = 0; i < lmp_config_n_settings; i++) {
                const struct lmp_setting *s = &lmp_config_settings[i];
                lmp_setting_format(s, a, va, sizeof(va));
                lmp_setting_format(s, b, vb, sizeof(vb));
                if (strcmp(va, vb) != 0 && (!keep || keep(s->key, false, userdata))) {
                        diff_add(buf, size, &len, &cut, "", NULL, s->key);
                        count++;
                }
        }
        for (size_t m = 0; m < a->n_models; m++) {
                const struct lmp_model_config *ma = &a->models[m], *mb = lmp_config_find_model(b, ma->name);
                if (!mb) {
                        if (!keep || keep("", true, userdata)) {
                                diff_add(buf, size, &len, &cut, "models", ma->name, NULL);
                                count++;
                        }
                        continue;
                }
                for (size_t i = 0; i < lmp_model_n_settings; i++) {
                        const struct lmp_setting *s = &lmp_model_settings[i];
                        lmp_setting_format(s, ma, va, sizeof(va));
                        lmp_setting_format(s, mb, vb, sizeof(vb));
                        if (strcmp(va, vb) != 0 && (!keep || keep(s->key, true, userdata))) {
                                diff_add(buf, size, &len, &cut, "models", ma->name, s->key);
                                count++;
                        }
                }
        }
        for (size_t m = 0; m < b->n_models; m++)
                if (!lmp_config_find_model(a, b->models[m].name) && (!keep || keep("", true, userdata))) {
                        diff_add(buf, size, &len, &cut, "models", b->models[m].name, NULL);
                        count++;
                }
        return count;
}

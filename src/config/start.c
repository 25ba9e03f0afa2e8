/* What lmpoold and lmpool-http do with the configuration before anything
 * else, one way for both: find the file (--config, else $LMPOOL_CONFIG,
 * else /etc/lmpool/lmpool.yaml), load it with its profile and environment
 * overrides, report every problem on stderr (nothing else is set up yet to
 * log to), and set up logging as its log: section says. (Which file is
 * lmp_config_path(), in load.c: `lmpoold --check-config` reads the same.) The daemon sets
 * logging up again from the same function when SIGHUP reloads the file. */
#include <stdio.h>
#include <string.h>

#include "config/config.h"

int lmp_config_start(const char *prog, const char *given, struct lmp_config **ret, const char **ret_path) {
        const char *path = lmp_config_path(given);
        struct lmp_diag diag = { 0 };
        int r = lmp_config_load(path, NULL, ret, &diag);
        if (r < 0) {
                lmp_diag_print(&diag, stderr);
                if (!diag.n)
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                fprintf(stderr, "%s: %s: configuration refused\n", prog, path);
        }
        lmp_diag_clear(&diag);
        if (r >= 0 && ret_path)
                *ret_path = path;
        return r;
}

void lmp_config_setup_logging(const struct lmp_config *c, const char *ident) {
        lmp_log_setup(ident, lmp_log_sink_of(c->log_target), lmp_log_priority_of(c->log_level));
}

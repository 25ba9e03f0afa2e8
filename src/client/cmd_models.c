/* `lmpool models [--endpoint E] [--json]`: the daemon's configured models,
 * one row each (name, architecture, context, workers ready of configured,
 * slots, weight store size, file). */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "client/cli.h"
#include "client/commands.h"

static const char usage[] =
        "usage: lmpool models [--endpoint E] [--json] [--timeout-ms MS (default 3000)]\n"
        "       [--server-key KEY|FILE --key FILE]  (CURVE over TCP: docs/security.md)\n"
        "Lists lmpoold's models (--json: the daemon's answer as it is).\n";

static int print(const cJSON *a, bool show) {
        const cJSON *models = cJSON_GetObjectItemCaseSensitive(a, "models"), *m;
        if (!show)
                return 0;
        printf("%-20s %-10s %8s %9s %6s %10s  %s\n", "NAME", "ARCH", "CTX", "READY", "SLOTS", "STORE_MIB", "PATH");
        cJSON_ArrayForEach(m, models) {
                char ready[32];
                snprintf(ready, sizeof(ready), "%.0f/%.0f", cli_json_num(m, "ready"), cli_json_num(m, "workers"));
                printf("%-20s %-10s %8.0f %9s %6.0f %10.1f  %s\n", cli_json_str(m, "name"), cli_json_str(m, "arch"),
                       cli_json_num(m, "ctx"), ready, cli_json_num(m, "slots"),
                       cli_json_num(m, "store_bytes") / (1024.0 * 1024.0), cli_json_str(m, "path"));
        }
        return 0;
}

int lmp_cmd_models(int argc, char **argv) {
        return cli_info_command(argc, argv, usage, lmp_client_models, print);
}

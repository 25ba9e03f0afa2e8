/* `lmpool health [--endpoint E] [--json]`: is the daemon serving? Prints
 * the status and each model's ready workers; the exit status is 0 only
 * when the status is "ok" (1 for "starting" or "degraded" and for no
 * answer), so that it works as a probe in scripts and health checks. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "client/cli.h"
#include "client/commands.h"

static const char usage[] =
        "usage: lmpool health [--endpoint E] [--json] [--timeout-ms MS (default 3000)]\n"
        "       [--server-key KEY|FILE --key FILE]  (CURVE over TCP: docs/security.md)\n"
        "Shows lmpoold's health (--json: the daemon's answer as it is).\n"
        "Exit status: 0 when the status is ok, 1 when it is not (starting, degraded), 7 when no\n"
        "answer comes in time (timeout), 2 usage; the others are in lmpool(1).\n";

static int print(const cJSON *a, bool show) {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(a, "status");
        const cJSON *models = cJSON_GetObjectItemCaseSensitive(a, "models"), *m;
        const char *s = cJSON_IsString(status) ? status->valuestring : "?";
        if (show) {
                printf("status: %s\n", s);
                cJSON_ArrayForEach(m, models)
                        printf("  %s: %.0f of %.0f workers ready\n", m->string ? m->string : "?",
                               cli_json_num(m, "ready"), cli_json_num(m, "workers"));
        }
        return strcmp(s, "ok") == 0 ? 0 : 1;
}

int lmp_cmd_health(int argc, char **argv) {
        return cli_info_command(argc, argv, usage, lmp_client_health, print);
}

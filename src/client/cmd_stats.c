/* `lmpool stats [--endpoint E] [--json]`: the daemon's counters (uptime,
 * queue, requests by outcome) and a table of its workers with their
 * memory (RSS and PSS) and what they served. */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "client/cli.h"
#include "client/commands.h"

static const char usage[] =
        "usage: lmpool stats [--endpoint E] [--json] [--timeout-ms MS (default 3000)]\n"
        "       [--server-key KEY|FILE --key FILE]  (CURVE over TCP: docs/security.md)\n"
        "Shows lmpoold's counters and workers (--json: the daemon's answer as it is).\n";

static int print(const cJSON *a, bool show) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(a, "queue");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(a, "requests");
        const cJSON *workers = cJSON_GetObjectItemCaseSensitive(a, "workers"), *w;
        if (!show)
                return 0;
        printf("uptime %.0f s, queue %.0f/%.0f\n", cli_json_num(a, "uptime_s"), cli_json_num(q, "length"),
               cli_json_num(q, "limit"));
        printf("requests: %.0f total, %.0f ok, %.0f errors (%.0f busy, %.0f timeouts, %.0f worker_lost)\n",
               cli_json_num(r, "total"), cli_json_num(r, "ok"), cli_json_num(r, "errors"), cli_json_num(r, "busy"),
               cli_json_num(r, "timeouts"), cli_json_num(r, "worker_lost"));
        printf("%-20s %-16s %8s %-9s %8s %10s %10s %8s %8s\n", "WORKER", "MODEL", "PID", "STATE", "ACTIVE",
               "RSS_MIB", "PSS_MIB", "SERVED", "RESTARTS");
        cJSON_ArrayForEach(w, workers) {
                char active[32];
                snprintf(active, sizeof(active), "%.0f/%.0f", cli_json_num(w, "active"), cli_json_num(w, "slots"));
                printf("%-20s %-16s %8.0f %-9s %8s %10.1f %10.1f %8.0f %8.0f\n", cli_json_str(w, "name"),
                       cli_json_str(w, "model"), cli_json_num(w, "pid"), cli_json_str(w, "state"), active,
                       cli_json_num(w, "rss_bytes") / (1024.0 * 1024.0),
                       cli_json_num(w, "pss_bytes") / (1024.0 * 1024.0), cli_json_num(w, "served"),
                       cli_json_num(w, "restarts"));
        }
        return 0;
}

int lmp_cmd_stats(int argc, char **argv) {
        return cli_info_command(argc, argv, usage, lmp_client_stats, print);
}

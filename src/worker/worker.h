/* The worker process's entry point: `lmpoold --worker ...` (see worker.c),
 * and what the supervisor and a worker agree on besides the ZeroMQ
 * messages: the exit codes that say why a worker ended, and the report
 * descriptor (`--report-fd N`, the write end of a pipe the supervisor reads
 * when it reaps the worker) on which a worker writes, in one line, why it
 * could not load its model or what it found wrong with its weights. */
#pragma once

enum {
        LMP_WORKER_EXIT_OK = 0,
        LMP_WORKER_EXIT_FAILURE = 1,    /* lost the router, or a set-up step other than loading failed */
        LMP_WORKER_EXIT_USAGE = 2,      /* bad arguments: started by hand, or a supervisor of another version */
        LMP_WORKER_EXIT_LOAD = 3,       /* could not load its model: trying again will not help */
};

/* Longest report line a worker writes (the supervisor reads at most this). */
#define LMP_WORKER_REPORT_MAX 512

int lmp_worker_main(int argc, char **argv);

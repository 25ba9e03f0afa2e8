/* The supervisor's entry points (see supervisor.c). */
#pragma once

#include "supervisor/daemon.h"

/* Loads the models, spawns the workers and runs the poll loop until a
 * SIGTERM/SIGINT has drained everything. */
int lmp_supervisor_run(struct lmp_daemon *d);

/* SIGHUP: re-reads the configuration file. */
void lmp_supervisor_reload(struct lmp_daemon *d);

/* The worker process's entry point: `lmpoold --worker ...` (see worker.c). */
#pragma once

int lmp_worker_main(int argc, char **argv);

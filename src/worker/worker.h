/* worker.h — the worker process (`kiln worker --fn NAME`): loads its
 * function once, then claims and runs tasks until idle_timeout passes with
 * no work, and leaves (scale to zero). See worker.c. */
#ifndef KILN_WORKER_H
#define KILN_WORKER_H

#include <stdint.h>

#include "engine/config.h"

typedef struct kw_opts {
  const ke_config *cfg;
  const char *fn;
  int wake_fd;                  /* read end of a pipe from the server (a byte = work came); -1: poll */
  int64_t spawned_ms;           /* when the server started this process (cold start from here) */
  int idle_timeout_s;           /* < 0: the function's */
  int max_tasks;                /* > 0: leave after this many tasks */
} kw_opts;

/* Runs the worker until it is idle, told to stop (SIGTERM/SIGINT) or fails
 * to start. Returns 0, or a negative code with e filled (enter failed). */
int kw_main(const kw_opts *o, kiln_err *e);

#endif

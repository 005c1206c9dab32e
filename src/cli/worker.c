/* worker.c — `kiln worker --fn NAME`: one worker process (src/worker). The
 * server's autoscaler starts these itself; starting one by hand adds a warm
 * worker (it finds work by polling the queue). */
#include "cli/cli.h"
#include "util/log.h"
#include "worker/worker.h"
#include "worker/zygote.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE = "kiln worker --fn NAME [--config FILE] [--idle-timeout S] [--max-tasks N]";

int kc_worker(int argc, char **argv) {
  kiln_err e = {0};
  const char *fn = NULL, *config = NULL;
  long long spawned = 0;
  long wake = -1, idle = -1, max_tasks = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end = NULL;
    if (i + 1 >= argc) { kiln_fail(&e, KILN_EUSAGE, "%s needs a value", a); return kc_report(&e, USAGE); }
    const char *v = argv[++i];
    if (!strcmp(a, "--fn")) fn = v;
    else if (!strcmp(a, "--config")) config = v;
    else if (!strcmp(a, "--wake-fd")) wake = strtol(v, &end, 10);
    else if (!strcmp(a, "--spawned-at")) spawned = strtoll(v, &end, 10);
    else if (!strcmp(a, "--idle-timeout")) idle = strtol(v, &end, 10);
    else if (!strcmp(a, "--max-tasks")) max_tasks = strtol(v, &end, 10);
    else { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for worker", a); return kc_report(&e, USAGE); }
    if (end && (*end || end == v)) { kiln_fail(&e, KILN_EUSAGE, "%s needs a number, got '%s'", a, v); return kc_report(&e, USAGE); }
  }
  if (!fn) { kiln_fail(&e, KILN_EUSAGE, "which function? --fn NAME"); return kc_report(&e, USAGE); }
  ke_config cfg;
  if (ke_config_load(&cfg, config, &e) < 0) return kc_report(&e, USAGE);
  kw_opts o = {.cfg = &cfg, .fn = fn, .wake_fd = (int)wake, .spawned_ms = spawned, .idle_timeout_s = (int)idle,
               .max_tasks = (int)max_tasks};
  int r = kw_main(&o, &e);
  ke_config_release(&cfg);
  return r < 0 ? kc_report(&e, USAGE) : 0;
}

/* `kiln zygote [--config FILE]` (hidden): started by `kiln serve` with a
 * socket as fd 3; forks workers on request (worker/zygote.c). */
int kc_zygote(int argc, char **argv) {
  const char *config = NULL;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!strcmp(argv[i], "--config")) config = argv[i + 1];
  return kz_main(3, config);
}

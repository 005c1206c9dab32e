/* agent.c — `kiln agent`: a worker host. The autoscaler and zygote of
 * `kiln serve` for this machine's own slots, claiming tasks from the shared
 * queue, with no HTTP API (docs/operations.md, "Many machines"). The host
 * registers through its workers' rows, touched every second (a heartbeat);
 * a host that stops sending it loses its leases and its tasks run again
 * elsewhere. --exit-when-idle S leaves once the host has had no worker and
 * seen no runnable task for S seconds (a Kubernetes ScaledJob's pod, or a
 * machine that powers off when there is no work). */
#include "cli/cli.h"
#include "engine/engine.h"
#include "util/log.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE =
    "kiln agent [--queue URL] [--store URL] [--slots cpu=N,gpu=M] [--host NAME] [--config FILE] [--exit-when-idle S]";

/* "cpu=8,gpu=1" (either part may be left out). */
static int parse_slots(const char *v, ke_config *c, kiln_err *e) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(t, '='), *end;
    long n = eq ? strtol(eq + 1, &end, 10) : -1;
    if (!eq || *end || eq == t + strlen(t) - 1 || n < 0 || n > 4096)
      return kiln_fail(e, KILN_EUSAGE, "--slots wants cpu=N,gpu=M, got '%s'", KILN_CLIP(v, 60));
    *eq = 0;
    if (!strcmp(t, "cpu")) c->cpu_slots = (int)n;
    else if (!strcmp(t, "gpu")) c->gpu_slots = (int)n;
    else return kiln_fail(e, KILN_EUSAGE, "--slots: no slot class '%s' (cpu, gpu)", KILN_CLIP(t, 20));
  }
  return 0;
}

int kc_agent(int argc, char **argv) {
  kiln_err e = {0};
  const char *config = NULL, *slots = NULL;
  double idle_exit = -1;
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    else if (!strcmp(argv[i], "--queue") && i + 1 < argc) setenv("KILN_QUEUE", argv[++i], 1);   /* workers inherit it */
    else if (!strcmp(argv[i], "--store") && i + 1 < argc) setenv("KILN_STORE", argv[++i], 1);
    else if (!strcmp(argv[i], "--host") && i + 1 < argc) setenv("KILN_HOST", argv[++i], 1);
    else if (!strcmp(argv[i], "--slots") && i + 1 < argc) slots = argv[++i];
    else if (!strcmp(argv[i], "--exit-when-idle") && i + 1 < argc) {
      idle_exit = strtod(argv[++i], &end);
      if (*end || !(idle_exit >= 0 && idle_exit <= 86400)) {
        kiln_fail(&e, KILN_EUSAGE, "--exit-when-idle needs seconds (0 to 86400)");
        return kc_report(&e, USAGE);
      }
    } else {
      kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for agent", argv[i]);
      return kc_report(&e, USAGE);
    }
  }
  ke_config cfg;
  if (ke_config_load(&cfg, config, &e) < 0) return kc_report(&e, USAGE);
  if (slots && parse_slots(slots, &cfg, &e) < 0) { ke_config_release(&cfg); return kc_report(&e, USAGE); }
  kq *q = NULL;
  if (ke_open_queue(&cfg, 0, &q, &e) < 0) {       /* reachable, and the schema is there */
    ke_config_release(&cfg);
    return kc_report(&e, USAGE);
  }
  const char *qname = kq_backend_name(q);
  kq_close(q);
  ks_store *st = NULL;
  if (ke_open_store(&cfg, &st, &e) < 0) { ke_config_release(&cfg); return kc_report(&e, USAGE); }
  const char *sname = ks_backend_name(st);
  ks_close(st);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  ke_scaler *sc = NULL;
  if (ke_scaler_start(&sc, &cfg, exe, &e) < 0) { ke_config_release(&cfg); return kc_report(&e, USAGE); }
  char host[64];
  ke_host_name(host, sizeof host);
  klog(KLOG_INFO, "agent %s: serving the %s queue and the %s store with %d CPU and %d GPU slot(s)", host, qname, sname,
       cfg.cpu_slots, cfg.gpu_slots);
  int sig = 0;
  for (;;) {
    struct timespec ts = {0, 500 * 1000000L};
    sig = sigtimedwait(&set, NULL, &ts);
    if (sig > 0) { klog(KLOG_INFO, "agent %s: stopping (signal %d)", host, sig); break; }
    if (idle_exit >= 0 && ke_scaler_idle_ms(sc) >= (int64_t)(idle_exit * 1000)) {
      klog(KLOG_INFO, "agent %s: idle for %.0f s, leaving", host, idle_exit);
      break;
    }
  }
  ke_scaler_stop(sc);                             /* busy workers put their tasks back in the queue */
  ke_config_release(&cfg);
  return 0;
}

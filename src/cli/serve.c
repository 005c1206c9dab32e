/* serve.c — `kiln serve [--listen HOST:PORT] [--config FILE]`: the HTTP API,
 * the autoscaler that starts and stops workers, and webhook delivery, over
 * $KILN_HOME (queue.db, store/, tokens.json, secret, webhook.key; see
 * engine/config.c). Prints "kiln: listening on http://HOST:PORT" once ready
 * (port 0 picks a free one); SIGINT/SIGTERM stop it cleanly: workers put
 * their running tasks back in the queue. A restarted server carries on with
 * every job in the queue. */
#include "api/auth.h"
#include "api/server.h"
#include "engine/planner.h"
#include "cli/cli.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE = "kiln serve [--listen HOST:PORT] [--config FILE] [--max-upload BYTES] [--threads N] [--no-workers]";

int kc_serve(int argc, char **argv) {
  kiln_err e = {0};
  const char *listen = NULL, *config = NULL;
  long long max_upload = -1;
  long threads = -1;                              /* -1: the config's http.threads */
  int workers = 1;
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "--listen") && i + 1 < argc) listen = argv[++i];
    else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    else if (!strcmp(argv[i], "--no-workers")) workers = 0;
    else if (!strcmp(argv[i], "--max-upload") && i + 1 < argc) {
      max_upload = strtoll(argv[++i], &end, 10);
      if (*end || max_upload < 1) { kiln_fail(&e, KILN_EUSAGE, "--max-upload needs a number of bytes"); return kc_report(&e, USAGE); }
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = strtol(argv[++i], &end, 10);
      if (*end || threads < 1 || threads > 256) { kiln_fail(&e, KILN_EUSAGE, "--threads needs 1 to 256"); return kc_report(&e, USAGE); }
    } else { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for serve", argv[i]); return kc_report(&e, USAGE); }
  }
  ke_config cfg;
  if (ke_config_load(&cfg, config, &e) < 0) return kc_report(&e, USAGE);
  if (!listen) listen = cfg.listen;
  if (max_upload > 0) cfg.max_upload = max_upload;
  char host[256];
  const char *colon = strrchr(listen, ':');
  char *end;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || *end || port < 0 || port > 65535 || (size_t)(colon - listen) >= sizeof host) {
    kiln_fail(&e, KILN_EUSAGE, "--listen needs HOST:PORT, got '%s'", listen);
    ke_config_release(&cfg);
    return kc_report(&e, USAGE);
  }
  snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, !strcmp(host, "localhost") ? "127.0.0.1" : host, &sa.sin_addr) != 1) {
    kiln_fail(&e, KILN_EUSAGE, "--listen host must be an IPv4 address, got '%s'", host);
    ke_config_release(&cfg);
    return kc_report(&e, USAGE);
  }
  if (ka_token_file_check(cfg.home, &e) < 0) {   /* damaged: stop now, not 401 on every request */
    ke_config_release(&cfg);
    return kc_report(&e, USAGE);
  }
  kiln_server s;
  memset(&s, 0, sizeof s);
  snprintf(s.home, sizeof s.home, "%s", cfg.home);
  s.cfg = &cfg;
  s.max_upload = cfg.max_upload;
  s.inline_max = cfg.inline_max;
  int rc = 0;
  kq *q = NULL;
  if (ke_open_store(&cfg, &s.store, &e) < 0 || ke_open_queue(&cfg, 0, &q, &e) < 0) {   /* makes the schema once */
    if (s.store) ks_close(s.store);
    ke_config_release(&cfg);
    return kc_report(&e, USAGE);
  }
  kq_close(q);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);       /* threads inherit it; we sigwait below */
  signal(SIGPIPE, SIG_IGN);
  if (ke_submitter_start(&s.submitter, &cfg, &e) < 0) {
    rc = kc_report(&e, USAGE);
    goto out;
  }
  if (kiln_server_start(&s, (struct sockaddr *)&sa, (int)(threads > 0 ? threads : cfg.http_threads), &e) < 0) {
    kiln_err_prefix(&e, "%s", listen);
    rc = kc_report(&e, USAGE);
    goto out;
  }
  char base[300];
  if (cfg.public_url[0]) snprintf(base, sizeof base, "%s", cfg.public_url);
  else snprintf(base, sizeof base, "http://%s:%u", host, s.port);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  if ((workers && ke_scaler_start(&s.scaler, &cfg, exe, &e) < 0) || ke_hooks_start(&s.hooks, &cfg, base, &e) < 0 ||
      ke_planner_start(&s.planner, &cfg, s.store, s.scaler, &e) < 0) {
    rc = kc_report(&e, USAGE);
    goto out;
  }
  klog(KLOG_INFO, "listening on http://%s:%u (home %s%s%s)", host, s.port, cfg.home, cfg.path[0] ? ", config " : "",
       cfg.path);
  int sig = 0;
  sigwait(&set, &sig);
  klog(KLOG_INFO, "stopping (signal %d)", sig);
out:
  kiln_server_stop(&s);
  ke_submitter_stop(s.submitter);
  ke_planner_stop(s.planner);
  ke_scaler_stop(s.scaler);
  ke_hooks_stop(s.hooks);
  ks_close(s.store);
  ke_config_release(&cfg);
  return rc;
}

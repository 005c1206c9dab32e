/* serve.c — `kiln serve [--listen HOST:PORT] [--max-upload BYTES]`: the HTTP
 * server over $KILN_HOME (objects/, tokens.json, a signing secret made on
 * first run, mode 0600). Prints "kiln: listening on http://HOST:PORT" once
 * ready (port 0 picks a free one) and stops cleanly on SIGINT/SIGTERM. */
#include "api/server.h"
#include "cli/cli.h"
#include "util/home.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *USAGE = "kiln serve [--listen HOST:PORT] [--max-upload BYTES] [--threads N]";

static int load_secret(const char *home, uint8_t *buf, size_t n, kiln_err *e) {
  char p[4200];
  snprintf(p, sizeof p, "%s/secret", home);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t r = read(fd, buf, n);
    close(fd);
    if (r == (ssize_t)n) return 0;
    return kiln_fail(e, KILN_EIO, "signing secret '%s' is damaged; remove it to make a new one", p);
  }
  if (RAND_bytes(buf, (int)n) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for the signing secret");
  fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, buf, n) != (ssize_t)n) {
    if (fd >= 0) close(fd);
    return kiln_fail(e, KILN_EIO, "cannot write the signing secret '%s'", p);
  }
  close(fd);
  return 0;
}

int kc_serve(int argc, char **argv) {
  kiln_err e = {0};
  const char *listen = "127.0.0.1:8420";
  long long max_upload = 10LL << 30;
  long threads = 4;
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "--listen") && i + 1 < argc) listen = argv[++i];
    else if (!strcmp(argv[i], "--max-upload") && i + 1 < argc) {
      max_upload = strtoll(argv[++i], &end, 10);
      if (*end || max_upload < 1) { kiln_fail(&e, KILN_EUSAGE, "--max-upload needs a number of bytes"); return kc_report(&e, USAGE); }
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = strtol(argv[++i], &end, 10);
      if (*end || threads < 1 || threads > 256) { kiln_fail(&e, KILN_EUSAGE, "--threads needs 1 to 256"); return kc_report(&e, USAGE); }
    } else { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for serve", argv[i]); return kc_report(&e, USAGE); }
  }
  char host[256];
  const char *colon = strrchr(listen, ':');
  char *end;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || *end || port < 0 || port > 65535 || (size_t)(colon - listen) >= sizeof host) {
    kiln_fail(&e, KILN_EUSAGE, "--listen needs HOST:PORT, got '%s'", listen);
    return kc_report(&e, USAGE);
  }
  snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, !strcmp(host, "localhost") ? "127.0.0.1" : host, &sa.sin_addr) != 1) {
    kiln_fail(&e, KILN_EUSAGE, "--listen host must be an IPv4 address, got '%s'", host);
    return kc_report(&e, USAGE);
  }
  kiln_server s;
  memset(&s, 0, sizeof s);
  if (kiln_home(s.home, sizeof s.home, &e) < 0) return kc_report(&e, USAGE);
  uint8_t secret[32];
  if (load_secret(s.home, secret, sizeof secret, &e) < 0) return kc_report(&e, USAGE);
  char objdir[4200];
  snprintf(objdir, sizeof objdir, "%s/store", s.home);
  if (ks_open_local(&s.store, objdir, secret, sizeof secret, &e) < 0) return kc_report(&e, USAGE);
  s.max_upload = max_upload;

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);       /* server threads inherit it; we sigwait below */
  signal(SIGPIPE, SIG_IGN);
  if (kiln_server_start(&s, (struct sockaddr *)&sa, (int)threads, &e) < 0) {
    kiln_err_prefix(&e, "%s", listen);
    ks_close(s.store);
    return kc_report(&e, USAGE);
  }
  klog(KLOG_INFO, "listening on http://%s:%u", host, s.port);
  int sig = 0;
  sigwait(&set, &sig);
  klog(KLOG_INFO, "stopping (signal %d)", sig);
  kiln_server_stop(&s);
  ks_close(s.store);
  return 0;
}

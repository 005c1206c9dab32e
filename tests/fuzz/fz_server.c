/* fz_server.c — kiln's HTTP server (api/server.c, api/jobs.c) started in
 * the harness's own process on 127.0.0.1 (see fz.h): the same set-up as
 * `kiln serve --no-workers` (cli/serve.c) over a scratch KILN_HOME, so the
 * fuzzed requests go through libmicrohttpd, the router, auth, the store and
 * the queue exactly as a client's would. Jobs are queued and never run. */
#include "fz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/auth.h"
#include "api/server.h"
#include "engine/engine.h"

#define FZ_SWEEP_EVERY 2000

static ke_config cfg;
static kiln_server srv;
static char token[KA_TOKEN_LEN];
static char presigned[2][2400];
static char *answer;
static size_t answer_cap;

static void put_fixture(void) {
  static char obj[FZ_OBJ_SIZE];
  for (int i = 0; i < FZ_OBJ_SIZE; i++) obj[i] = (char)('a' + i % 26);
  kiln_err e = {0};
  ks_put *p = NULL;
  if (ks_put_begin(srv.store, "fuzz/a", &p, &e) < 0 || ks_put_write(p, obj, sizeof obj, &e) < 0 || ks_put_commit(p, &e) < 0)
    fz_fail("cannot store fuzz/a: %s", e.msg);
}

void fz_server_start(void) {
  if (srv.d) return;
  signal(SIGPIPE, SIG_IGN);
  char home[4200];
  snprintf(home, sizeof home, "%s/home", fz_scratch());
  mkdir(home, 0700);
  setenv("KILN_HOME", home, 1);
  setenv("KILN_LOG", "error", 1);
  kiln_err e = {0};
  if (ke_config_load(&cfg, NULL, &e) < 0) fz_fail("config: %s", e.msg);
  cfg.max_upload = 1 << 20;
  cfg.inline_max = 1 << 20;
  snprintf(srv.home, sizeof srv.home, "%s", cfg.home);
  srv.cfg = &cfg;
  srv.max_upload = cfg.max_upload;
  srv.inline_max = cfg.inline_max;
  kq *q = NULL;
  if (ke_open_store(&cfg, &srv.store, &e) < 0 || ke_open_queue(&cfg, 0, &q, &e) < 0) fz_fail("home: %s", e.msg);
  kq_close(q);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (kiln_server_start(&srv, (struct sockaddr *)&sa, 2, &e) < 0) fz_fail("server: %s", e.msg);
  if (ka_token_create(cfg.home, "fuzz", token, &e) < 0) fz_fail("token: %s", e.msg);
  put_fixture();
  const char *m[2] = {"GET", "PUT"};
  for (int i = 0; i < 2; i++) {
    char url[2400];
    if (ks_presign(srv.store, m[i], "fuzz/a", (int64_t)time(NULL) + 30 * 86400, url, sizeof url, &e) < 0) fz_fail("presign: %s", e.msg);
    snprintf(presigned[i], sizeof presigned[i], "%s", strchr(url, '?') + 1);
  }
}

const char *fz_token(void) { return token; }
const char *fz_presigned(const char *method) { return presigned[strcmp(method, "GET") != 0]; }

static int del_cb(void *arg, const char *key, const ks_stat *st) {
  (void)st;
  kiln_err e;
  if (strcmp(key, "fuzz/a")) ks_delete(arg, key, &e);
  return 0;
}

void fz_server_sweep(void) {
  static unsigned calls;
  if (++calls % FZ_SWEEP_EVERY) return;
  kiln_err e = {0};
  ks_list(srv.store, "", del_cb, srv.store, &e);
  put_fixture();
}

int fz_http(const char *req, size_t n, const char **body) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fz_fail("socket: %s", strerror(errno));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)srv.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* libFuzzer's -timeout ticks SIGALRM every second: every call here may be interrupted and is resumed */
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    if (errno != EINTR) fz_fail("connect: %s", strerror(errno));
    struct pollfd w = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    while (poll(&w, 1, 10000) < 0 && errno == EINTR) {}
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) fz_fail("connect: %s", strerror(err ? err : errno));
  }
  size_t off = 0, got = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    struct pollfd p = {fd, POLLIN | (off < n ? POLLOUT : 0), 0};
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = 10000 - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
    if (ms <= 0) fz_fail("the server did not answer within 10 s");
    int pr = poll(&p, 1, (int)ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) fz_fail("the server did not answer within 10 s");
    if ((p.revents & POLLOUT) && off < n) {
      ssize_t k = send(fd, req + off, n - off, MSG_NOSIGNAL);
      if (k > 0) off += (size_t)k;
      else if (errno != EINTR) off = n;           /* the server closed early (e.g. 413 before the body) */
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      if (got + 4097 > answer_cap) {
        answer_cap = (got + 4097) * 2;
        if (!(answer = realloc(answer, answer_cap))) abort();
      }
      ssize_t k = recv(fd, answer + got, answer_cap - got - 1, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) break;
      got += (size_t)k;
    }
  }
  close(fd);
  /* until the server has let the connection go: its frees then fall inside this input, and libFuzzer's count of
   * mallocs against frees (its leak check) is not thrown off by a request still being torn down */
  for (int i = 0; i < 100000; i++) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    if (!di || di->num_connections == 0) break;
    sched_yield();
  }
  if (!answer) { answer_cap = 4097; if (!(answer = malloc(answer_cap))) abort(); }
  answer[got] = 0;
  int status = 0;
  if (got > 12 && !strncmp(answer, "HTTP/1.", 7)) status = atoi(answer + 9);
  const char *b = strstr(answer, "\r\n\r\n");
  if (body) *body = b ? b + 4 : "";
  return status;
}

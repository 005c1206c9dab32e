/* zygote.c — starts workers in a few milliseconds instead of an exec.
 *
 * A worker's cold start used to be an exec of the kiln binary: the dynamic
 * loader maps ~180 libraries (FFmpeg's codecs pull in most of them) and
 * relocates them, which alone costs tens of milliseconds. The zygote is a
 * kiln process started once by the server (`kiln zygote`, hidden) that
 * has everything loaded and opens nothing: no database, no store, no
 * threads. For each worker the server sends it a request over a
 * SOCK_SEQPACKET socket, with the read end of the worker's wake pipe
 * attached (SCM_RIGHTS); the zygote forks, and the child becomes the
 * worker (kw_main) at once. The zygote answers "pid N", and later tells
 * the server "exit N STATUS" when that worker ends (it is the workers'
 * parent, so it reaps them). When the server goes away (EOF), the zygote
 * leaves; its workers finish what they hold and leave too.
 *
 * Messages (text, one per datagram):
 *   server -> zygote   "spawn FN SPAWNED_MS"   + fd
 *   zygote -> server   "pid N" | "error MESSAGE" | "exit N STATUS"   (STATUS as from waitpid) */
#include "worker/zygote.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/log.h"
#include "worker/worker.h"

int kz_send(int sock, const char *msg, int fd) {
  struct iovec iov = {(void *)msg, strlen(msg)};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do n = sendmsg(sock, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  return n == (ssize_t)strlen(msg) ? 0 : -1;
}

ssize_t kz_recv(int sock, char *buf, size_t n, int *fd, int flags) {
  struct iovec iov = {buf, n - 1};
  union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.b;
  mh.msg_controllen = sizeof u.b;
  if (fd) *fd = -1;
  ssize_t got;
  do got = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC); while (got < 0 && errno == EINTR);
  if (got < 0) return -1;
  buf[got] = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int f;
      memcpy(&f, CMSG_DATA(c), sizeof f);
      if (fd && *fd < 0) *fd = f;
      else close(f);
    }
  return got;
}

/* The child: becomes the worker. Never returns. */
static void run_worker(const char *config, const char *fn, long long spawned, int wake) {
  signal(SIGCHLD, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (wake != 3) {
    if (dup2(wake, 3) < 0) _exit(127);
    close(wake);
  }
  kiln_err e = {0};
  ke_config cfg;
  int r = ke_config_load(&cfg, config, &e);
  if (r == 0) {
    kw_opts o = {.cfg = &cfg, .fn = fn, .wake_fd = 3, .spawned_ms = spawned, .idle_timeout_s = -1};
    r = kw_main(&o, &e);
    ke_config_release(&cfg);
  }
  if (r < 0) klog(KLOG_ERROR, "worker %s: %s", fn, e.msg);
  exit(r < 0 ? 1 : 0);
}

static void on_chld(int sig) { (void)sig; }

int kz_main(int sock, const char *config) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, SIG_DFL);
  /* SIGCHLD is blocked except inside ppoll: a worker's exit wakes the loop at once, without a race */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sigaction(SIGCHLD, &sa, NULL);
  sigset_t chld, wait_mask;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &wait_mask);
  sigdelset(&wait_mask, SIGCHLD);
  for (;;) {
    struct pollfd p = {sock, POLLIN, 0};
    int n = ppoll(&p, 1, NULL, &wait_mask);
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
      char m[64];
      snprintf(m, sizeof m, "exit %d %d", (int)pid, st);
      kz_send(sock, m, -1);
    }
    if (n <= 0) continue;
    char buf[256];
    int fd = -1;
    ssize_t got = kz_recv(sock, buf, sizeof buf, &fd, 0);
    if (got <= 0) return 0;                      /* the server is gone */
    char fn[64];
    long long spawned = 0;
    if (sscanf(buf, "spawn %63s %lld", fn, &spawned) != 2 || fd < 0) {
      if (fd >= 0) close(fd);
      kz_send(sock, "error malformed request", -1);
      continue;
    }
    pid = fork();
    if (pid == 0) {
      close(sock);
      run_worker(config, fn, spawned, fd);
    }
    close(fd);
    char m[64];
    if (pid < 0) snprintf(m, sizeof m, "error fork failed: %s", strerror(errno));
    else snprintf(m, sizeof m, "pid %d", (int)pid);
    kz_send(sock, m, -1);
  }
}

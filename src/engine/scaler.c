/* scaler.c — the autoscaler, a thread of `kiln serve` (see engine.h).
 *
 * Every 100 ms, and at once when work arrives (ke_scaler_kick):
 *   reap    children that exited; one that died with a task has it failed
 *           as worker_lost (retried), or as out_of_memory when it exited
 *           KW_EXIT_OOM (it crashed after an allocation failed under its
 *           memory_mb: worker/memlimit.c); the row is marked exited; what a
 *           worker that died left in the store's tmp/ (its scratch folder,
 *           a partial output) is swept (ks_sweep)
 *   reclaim expired leases (once a second): workers on other machines, or
 *           that hung, lose their task to a retry
 *   timeout a running task past its function's timeout_s: SIGKILL its worker
 *           (when on this machine), fail the task as timeout
 *   scale   per function: runnable tasks n, workers live and idle; spawn
 *           max(n - idle, min_workers - live) more, within max_workers and
 *           the free slots (a worker takes `cpus` CPU slots, or one GPU
 *           slot; the join of a chunked job, brief and mostly I/O, takes
 *           none, so chunks never wait on it); when slots are full, an idle worker of another function
 *           above its min_workers is asked to leave (SIGTERM)
 *   budget  warn at 80% and 100% of budget_usd_month (once each per month;
 *           checked every second)
 * A run whose worker died or was killed is charged from its claim to then.
 *
 * Workers are forked by the zygote (worker/zygote.c), a kiln process
 * started once that has the binary loaded, so a cold start costs a fork,
 * not an exec; it reports their exits. Without it (it died), workers are
 * started by fork + exec. A worker gets the read end of a pipe as fd 3:
 * one byte = "work came".
 * The workers table in the queue is the truth about workers (a worker
 * writes its own row); the children list only knows pids and pipes. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/loop.h"
#include "worker/memlimit.h"
#include "worker/zygote.h"

#define MAX_KIDS 256
#define MAX_ROWS 512

typedef struct kid {
  pid_t pid;
  int wake_fd;
  char fn[64];
  char id[64];                  /* the worker id it will register as */
  int64_t spawned_ms;
  int timed_out;                /* killed for a timeout: its task is already failed */
  int registered;               /* its row was seen: when the row is gone from the live list, it is leaving */
  int unlisted;                 /* this tick: not in the tick's worker list and not registered before it (starting) */
} kid;

struct ke_scaler {
  const ke_config *c;
  char exe[4096];
  char host[64];
  kq *q;
  ks_store *store;              /* for ks_sweep after a worker's death; NULL if it would not open */
  kl_loop loop;
  pthread_mutex_t kmu;          /* kids: changed by the loop's thread, read by kicks from request threads */
  kid kids[MAX_KIDS];
  int nkids;
  int64_t last_reclaim, last_budget;
  int warned_month, warned_level;
  int zsock;                    /* to the zygote; -1: none */
  pid_t zpid;
  int64_t busy_ms;              /* last tick with a worker of this host or a runnable task */
  /* the watcher: kq_watch on a handle of its own kicks a tick when the queue changes (a submission
   * on another host or replica, a task released), so work is seen at once, not at the next tick */
  pthread_t watcher;
  int watcher_on, stopping;
  int64_t watch_kick_ms;        /* the watcher's last kick (its thread only) */
};

typedef struct rows { kq_worker w[MAX_ROWS]; int n; } rows;

static int row_cb(void *arg, const kq_worker *w) {
  rows *r = arg;
  if (r->n < MAX_ROWS) r->w[r->n++] = *w;
  return 0;
}

static kid *find_kid(ke_scaler *s, const char *id) {
  for (int i = 0; i < s->nkids; i++)
    if (!strcmp(s->kids[i].id, id)) return &s->kids[i];
  return NULL;
}

static void mark_exited(ke_scaler *s, const char *id) {
  rows *r = calloc(1, sizeof *r);
  kiln_err e = {0};
  if (!r) return;
  kq_worker_list(s->q, NULL, 1, row_cb, r, &e);
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->w[i].id, id)) {
      r->w[i].state = KQ_W_EXITED;
      r->w[i].last_ms = ke_now_ms();
      r->w[i].job[0] = 0;
      kq_worker_put(s->q, &r->w[i], &e);
    }
  free(r);
}

typedef struct held { const char *worker; kq_job job; int found; } held;
static int held_cb(void *arg, const kq_job *j) {
  held *h = arg;
  if (strcmp(j->worker, h->worker) != 0) return 0;
  memcpy(h->job.id, j->id, sizeof j->id);
  memcpy(h->job.fn, j->fn, sizeof j->fn);
  h->job.claimed_ms = j->claimed_ms;
  memcpy(h->job.parent, j->parent, sizeof j->parent);
  h->found = 1;
  return 1;
}

/* A chunk or join whose failure ended its chunked job: the job's stored
 * chunks go (ke_drop_chunks). parent: the task's split job, or "". */
static void drop_chunks_if_ended(ke_scaler *s, const char *parent) {
  if (!parent[0] || !s->store) return;
  kq_job p;
  kiln_err e = {0};
  if (kq_get(s->q, parent, &p, &e) < 0) return;
  if (p.state == KQ_FAILED || p.state == KQ_CANCELLED) {
    int n = ke_drop_chunks(s->store, parent);
    if (n) klog(KLOG_INFO, "autoscaler: job %s failed: removed %d chunk(s) of it from the store", parent, n);
  }
  kq_job_release(&p);
}

/* The run of a worker that died or was killed still used its resources:
 * charge them (claim to now) to its job before the job is failed. parent
 * (KQ_ID_LEN) gets the task's split job, or "". */
static void charge_lost_run(ke_scaler *s, const char *worker, int64_t now, char *parent) {
  held h;
  memset(&h, 0, sizeof h);
  parent[0] = 0;
  h.worker = worker;
  kiln_err e = {0};
  kq_running(s->q, held_cb, &h, &e);
  if (h.found) memcpy(parent, h.job.parent, KQ_ID_LEN);
  const ke_fnconf *fc = h.found ? ke_fn(s->c, h.job.fn) : NULL;
  if (!fc || h.job.claimed_ms <= 0 || now <= h.job.claimed_ms) return;
  int units = 1;
  double price = ke_price_per_s(s->c, &fc->res, &units);
  kq_cost c = {0, (now - h.job.claimed_ms) * units, (double)(now - h.job.claimed_ms) / 1000 * price};
  kq_account(s->q, h.job.id, &c, &e);
}

/* A worker that is gone: its task (if any) fails as cls (worker_lost; out_of_memory for one that
 * crashed after an allocation failed: KW_EXIT_OOM), its row is closed. */
static void worker_gone(ke_scaler *s, const char *id, const char *why, const char *cls) {
  kiln_err e = {0};
  int n = 0;
  char parent[KQ_ID_LEN];
  charge_lost_run(s, id, ke_now_ms(), parent);
  char msg[300];
  snprintf(msg, sizeof msg, "worker %s %s while running the task", id, why);
  if (kq_fail_worker(s->q, id, cls, msg, ke_now_ms(), &n, &e) < 0) klog(KLOG_WARN, "autoscaler: %s", e.msg);
  else if (n) drop_chunks_if_ended(s, parent);
  if (n) klog(KLOG_WARN, "autoscaler: worker %s %s; its task will be retried if it has retries left", id, why);
  mark_exited(s, id);
  if (s->store) ks_sweep(s->store);               /* its scratch folder, no longer locked */
}

/* A worker process ended with status st (as from waitpid). */
static void kid_exited(ke_scaler *s, pid_t pid, int st) {
  for (int i = 0; i < s->nkids; i++) {
    if (s->kids[i].pid != pid) continue;
    kid k = s->kids[i];
    pthread_mutex_lock(&s->kmu);                  /* out of the list before its pipe closes: a kick never writes */
    s->kids[i] = s->kids[--s->nkids];             /* to a descriptor number that is reused meanwhile */
    pthread_mutex_unlock(&s->kmu);
    close(k.wake_fd);
    char why[96];
    int oom = WIFEXITED(st) && WEXITSTATUS(st) == KW_EXIT_OOM;   /* it crashed after an allocation failed */
    if (WIFSIGNALED(st)) snprintf(why, sizeof why, "died (killed by signal %d)", WTERMSIG(st));
    else if (oom) snprintf(why, sizeof why, "ran out of memory (its function's memory_mb) and crashed");
    else snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
    if (!k.timed_out && (WIFSIGNALED(st) || WEXITSTATUS(st) != 0))
      worker_gone(s, k.id, why, oom ? "out_of_memory" : "worker_lost");
    else mark_exited(s, k.id);                    /* a clean exit wrote its row already; make sure */
    if (k.timed_out && s->store) ks_sweep(s->store);   /* killed for its timeout: its scratch folder too */
    return;
  }
}

/* Handles one message from the zygote; returns the pid of a "pid N" answer, else 0. */
static pid_t zygote_msg(ke_scaler *s, const char *m) {
  int pid = 0, st = 0;
  if (sscanf(m, "exit %d %d", &pid, &st) == 2) { kid_exited(s, pid, st); return 0; }
  if (sscanf(m, "pid %d", &pid) == 1) return pid;
  klog(KLOG_WARN, "autoscaler: the zygote says: %s", m);
  return -1;
}

static void zygote_lost(ke_scaler *s) {
  if (s->zsock < 0) return;
  klog(KLOG_WARN, "autoscaler: the zygote is gone; starting workers by exec from now on");
  close(s->zsock);
  s->zsock = -1;
}

static void reap(ke_scaler *s) {
  int st;
  pid_t pid;
  while (s->zsock >= 0) {
    char m[128];
    ssize_t n = kz_recv(s->zsock, m, sizeof m, NULL, MSG_DONTWAIT);
    if (n > 0) { zygote_msg(s, m); continue; }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) zygote_lost(s);
    break;
  }
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    if (pid == s->zpid) { s->zpid = 0; zygote_lost(s); continue; }
    kid_exited(s, pid, st);
  }
  if (s->zsock < 0)                                /* workers of a dead zygote: no one reports them */
    for (int i = 0; i < s->nkids; i++)
      if (kill(s->kids[i].pid, 0) != 0 && errno == ESRCH) kid_exited(s, s->kids[i].pid, 0x100 /* status 1 */);
}

static void worker_argv(ke_scaler *s, const char *cmd, const char *fn, const char *spawned, char *level,
                        const char *argv[16]) {
  static const char *const levels[] = {"debug", "info", "warn", "error", "quiet"};
  snprintf(level, 16, "%s", levels[klog_min_level() <= KLOG_QUIET ? klog_min_level() : KLOG_INFO]);
  int n = 0;
  argv[n++] = s->exe;
  argv[n++] = "--log-level";
  argv[n++] = level;
  argv[n++] = cmd;
  if (fn) {
    argv[n++] = "--fn";
    argv[n++] = fn;
    argv[n++] = "--wake-fd";
    argv[n++] = "3";
    argv[n++] = "--spawned-at";
    argv[n++] = spawned;
  }
  if (s->c->path[0]) { argv[n++] = "--config"; argv[n++] = s->c->path; }
  argv[n] = NULL;
}

/* fork + exec of `kiln ARGV` with fd as its fd 3. */
static pid_t fork_exec(const char *const argv[], int fd) {
  pid_t pid = fork();
  if (pid == 0) {                                /* async-signal-safe calls only until exec */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    if (fd == 3) fcntl(3, F_SETFD, 0);              /* dup2(3, 3) would keep close-on-exec */
    else if (dup2(fd, 3) < 0) _exit(127);
    close_range(4, ~0U, 0);                         /* nothing else of the server's leaks into workers */
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

static void zygote_start(ke_scaler *s) {
  int sv[2];
  s->zsock = -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
  char level[16];
  const char *argv[16];
  worker_argv(s, "zygote", NULL, NULL, level, argv);
  pid_t pid = fork_exec(argv, sv[1]);
  close(sv[1]);
  if (pid < 0) { close(sv[0]); return; }
  s->zsock = sv[0];
  s->zpid = pid;
}

/* Asks the zygote for a worker; returns its pid, or -1 (then exec). */
static pid_t zygote_spawn(ke_scaler *s, const char *fn, const char *spawned, int fd) {
  char m[128];
  snprintf(m, sizeof m, "spawn %s %s", fn, spawned);
  if (kz_send(s->zsock, m, fd) < 0) { zygote_lost(s); return -1; }
  for (;;) {
    struct pollfd p = {s->zsock, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) { zygote_lost(s); return -1; }
    ssize_t n = kz_recv(s->zsock, m, sizeof m, NULL, 0);
    if (n <= 0) { zygote_lost(s); return -1; }
    pid_t pid = zygote_msg(s, m);
    if (pid != 0) return pid;
  }
}

static int spawn(ke_scaler *s, const ke_fnconf *fc) {
  if (s->nkids >= MAX_KIDS) return -1;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  char spawned[32], level[16];
  int64_t now = ke_now_ms();
  snprintf(spawned, sizeof spawned, "%lld", (long long)now);
  pid_t pid = s->zsock >= 0 ? zygote_spawn(s, fc->fn->name, spawned, p[0]) : -1;
  if (pid < 0) {
    const char *argv[16];
    worker_argv(s, "worker", fc->fn->name, spawned, level, argv);
    pid = fork_exec(argv, p[0]);
  }
  close(p[0]);
  if (pid < 0) { close(p[1]); return -1; }
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  kid nk;
  memset(&nk, 0, sizeof nk);
  nk.pid = pid;
  nk.wake_fd = p[1];
  nk.spawned_ms = now;
  snprintf(nk.fn, sizeof nk.fn, "%s", fc->fn->name);
  ke_worker_id(fc->fn->name, (int)pid, nk.id, sizeof nk.id);
  pthread_mutex_lock(&s->kmu);
  kid *k = &s->kids[s->nkids++];
  *k = nk;
  pthread_mutex_unlock(&s->kmu);
  klog(KLOG_INFO, "autoscaler: started worker %s", k->id);
  return 0;
}

static void wake(ke_scaler *s, const char *fn) {
  for (int i = 0; i < s->nkids; i++)
    if (!fn || !strcmp(s->kids[i].fn, fn)) {
      ssize_t w = write(s->kids[i].wake_fd, "w", 1);   /* a full pipe already says "work" */
      (void)w;
    }
}

static int usd_sum(void *arg, const char *d, const char *f, int64_t jobs, double rs, double u) {
  *(double *)arg += u;
  (void)d; (void)f; (void)jobs; (void)rs;
  return 0;
}

static void check_budget(ke_scaler *s, int64_t now) {
  if (s->c->budget_usd_month <= 0 || now - s->last_budget < 1000) return;
  s->last_budget = now;
  time_t t = (time_t)(now / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  int month = (tm.tm_year + 1900) * 12 + tm.tm_mon;
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  int64_t since = (int64_t)timegm(&tm) * 1000;
  double usd = 0;
  kiln_err e = {0};
  kq_usage(s->q, since, usd_sum, &usd, &e);
  if (month != s->warned_month) { s->warned_month = month; s->warned_level = 0; }
  int level = usd >= s->c->budget_usd_month ? 100 : usd >= 0.8 * s->c->budget_usd_month ? 80 : 0;
  if (level > s->warned_level) {
    s->warned_level = level;
    klog(KLOG_WARN, "budget: this month's cost is $%.6g, %d%% of the monthly budget of $%.6g", usd,
         (int)(100 * usd / s->c->budget_usd_month), s->c->budget_usd_month);
  }
}

typedef struct running { kq_job *j; int n, cap; } running;
static int running_cb(void *arg, const kq_job *j) {
  running *r = arg;
  if (r->n == r->cap) {
    int cap = r->cap ? 2 * r->cap : 64;
    kq_job *nj = realloc(r->j, (size_t)cap * sizeof *nj);
    if (!nj) return 1;
    r->j = nj;
    r->cap = cap;
  }
  kq_job *d = &r->j[r->n++];
  memset(d, 0, sizeof *d);
  memcpy(d->id, j->id, sizeof j->id);
  memcpy(d->fn, j->fn, sizeof j->fn);
  memcpy(d->worker, j->worker, sizeof j->worker);
  d->claimed_ms = j->claimed_ms;
  return 0;
}

static void timeouts(ke_scaler *s, const rows *r, int64_t now) {
  running run = {0};
  kiln_err e = {0};
  kq_running(s->q, running_cb, &run, &e);          /* every running task, however many */
  for (int i = 0; i < run.n; i++) {
    const ke_fnconf *fc = ke_fn(s->c, run.j[i].fn);
    if (!fc || !run.j[i].worker[0] || now - run.j[i].claimed_ms <= (int64_t)fc->res.timeout_s * 1000) continue;
    for (int k = 0; k < r->n; k++) {
      const kq_worker *w = &r->w[k];
      if (strcmp(w->id, run.j[i].worker) != 0) continue;
      kid *kd = find_kid(s, w->id);
      if (kd) kd->timed_out = 1;
      if (!strcmp(w->host, s->host) && w->pid > 0) kill(w->pid, SIGKILL);
    }
    char msg[200];
    snprintf(msg, sizeof msg, "the task ran past %s's timeout of %d s; its worker was stopped", run.j[i].fn,
             fc->res.timeout_s);
    int n = 0;
    char parent[KQ_ID_LEN];
    charge_lost_run(s, run.j[i].worker, now, parent);
    if (kq_fail_worker(s->q, run.j[i].worker, "timeout", msg, now, &n, &e) == 0 && n) drop_chunks_if_ended(s, parent);
    klog(KLOG_WARN, "autoscaler: job %s: %s", run.j[i].id, msg);
  }
  free(run.j);
}

typedef struct runnable { const ke_config *c; int64_t *n; } runnable;   /* n: per c->fns[] */
static int runnable_cb(void *arg, const char *fn, int64_t n, int64_t next_ms) {
  runnable *rn = arg;
  (void)next_ms;
  for (int f = 0; f < rn->c->nfn; f++)
    if (!strcmp(rn->c->fns[f].fn->name, fn)) rn->n[f] = n;
  return 0;
}

static void tick(ke_scaler *s) {
  int64_t now = ke_now_ms();
  kiln_err e = {0};
  reap(s);
  if (now - s->last_reclaim >= 1000) {
    int n = 0;
    s->last_reclaim = now;
    if (kq_reclaim(s->q, now, &n, &e) < 0) klog(KLOG_WARN, "autoscaler: %s", e.msg);
    else if (n) klog(KLOG_WARN, "autoscaler: %d task(s) lost their worker (lease expired); retrying", n);
    /* this host's heartbeat, and the rows of hosts that stopped sending theirs */
    if (kq_worker_touch(s->q, s->host, now, &e) < 0) klog(KLOG_WARN, "autoscaler: %s", e.msg);
    int64_t stale = 3 * s->c->lease_ms > 15000 ? 3 * s->c->lease_ms : 15000;
    n = 0;
    if (kq_worker_expire(s->q, s->host, now - stale, &n, &e) == 0 && n)
      klog(KLOG_WARN, "autoscaler: %d worker(s) of other hosts silent for %lld s: counted gone", n, (long long)stale / 1000);
  }
  rows *r = calloc(1, sizeof *r);
  if (!r) return;
  kq_worker_list(s->q, NULL, 1, row_cb, r, &e);
  /* rows of this machine whose process is gone (a worker of a previous server that died) */
  for (int i = 0; i < r->n; i++) {
    kq_worker *w = &r->w[i];
    if (strcmp(w->host, s->host) != 0 || find_kid(s, w->id) || w->pid <= 0) continue;
    if (kill(w->pid, 0) != 0 && errno == ESRCH) {
      worker_gone(s, w->id, "is gone", "worker_lost");
      w->state = KQ_W_EXITED;
    }
  }
  timeouts(s, r, now);
  int cpu_used = 0, gpu_used = 0;
  for (int i = 0; i < r->n; i++) {                /* this host's slots: its own workers */
    const ke_fnconf *fc = ke_fn(s->c, r->w[i].fn);
    if (!fc || r->w[i].state == KQ_W_EXITED || strcmp(r->w[i].host, s->host)) continue;
    if (fc->fn->internal) continue;               /* joins: brief, mostly I/O; they take no slot */
    if (fc->res.gpu && s->c->gpu_slots > 0) gpu_used++;
    else cpu_used += fc->res.cpus;
  }
  for (int i = 0; i < s->nkids; i++) {            /* started, not registered yet */
    int seen = 0;
    for (int k = 0; k < r->n && !seen; k++) seen = !strcmp(r->w[k].id, s->kids[i].id);
    /* registered: a row seen once, or one already closed (a worker that lived less than a tick);
     * counted as starting this tick unless the list has its row or an earlier tick saw it: a row written
     * after the list was read is registered now, but the list does not count it, so this tick still must */
    s->kids[i].unlisted = !seen && !s->kids[i].registered;
    if (seen || (!s->kids[i].registered && kq_worker_known(s->q, s->kids[i].id, &e) == 1)) s->kids[i].registered = 1;
    const ke_fnconf *fc = ke_fn(s->c, s->kids[i].fn);
    if (s->kids[i].unlisted && fc) {
      if (fc->fn->internal) continue;
      if (fc->res.gpu && s->c->gpu_slots > 0) gpu_used++;
      else cpu_used += fc->res.cpus;
    }
  }
  runnable rn = {s->c, NULL};                     /* every function's runnable count, in one statement */
  if (!(rn.n = calloc((size_t)s->c->nfn + 1, sizeof *rn.n)) || kq_runnable_each(s->q, now, runnable_cb, &rn, &e) < 0) {
    if (rn.n) klog(KLOG_WARN, "autoscaler: %s", e.msg);
    free(rn.n);
    free(r);
    return;
  }
  for (int f = 0; f < s->c->nfn; f++) {
    const ke_fnconf *fc = &s->c->fns[f];
    const char *name = fc->fn->name;
    int64_t n = rn.n[f];
    /* live: this host's (max_workers and min_workers are per host); idle: any host's (an idle worker
     * anywhere claims the next task, so no host starts one for it) */
    int live = 0, idle = 0;
    for (int i = 0; i < r->n; i++)
      if (!strcmp(r->w[i].fn, name) && r->w[i].state != KQ_W_EXITED) {
        live += !strcmp(r->w[i].host, s->host);
        if (r->w[i].state != KQ_W_BUSY) idle++;
      }
    for (int i = 0; i < s->nkids; i++)
      if (s->kids[i].unlisted && !strcmp(s->kids[i].fn, name)) { live++; idle++; }
    if (n > 0) { wake(s, name); s->busy_ms = now; }
    int64_t want = n - idle;
    if (fc->res.min_workers - live > want) want = fc->res.min_workers - live;
    if (want > fc->res.max_workers - live) want = fc->res.max_workers - live;
    int gpu = fc->res.gpu && s->c->gpu_slots > 0;
    int need = gpu ? 1 : fc->res.cpus > s->c->cpu_slots ? s->c->cpu_slots : fc->res.cpus;
    for (; want > 0; want--) {
      int fits = fc->fn->internal || (gpu ? gpu_used + 1 <= s->c->gpu_slots : cpu_used + need <= s->c->cpu_slots);
      if (!fits) {
        /* make room: ask an idle worker of another function, above its minimum, to leave */
        for (int i = 0; i < r->n; i++) {
          const kq_worker *w = &r->w[i];
          const ke_fnconf *oc = ke_fn(s->c, w->fn);
          kid *kd = find_kid(s, w->id);
          if (!oc || !kd || !strcmp(w->fn, name) || w->state != KQ_W_IDLE) continue;
          int others = 0;
          for (int k = 0; k < r->n; k++)
            others += !strcmp(r->w[k].fn, w->fn) && r->w[k].state != KQ_W_EXITED && !strcmp(r->w[k].host, s->host);
          if (others <= oc->res.min_workers) continue;
          klog(KLOG_INFO, "autoscaler: asking idle worker %s to leave to make room for %s", w->id, name);
          kill(kd->pid, SIGTERM);
          r->w[i].state = KQ_W_EXITED;
          break;
        }
        break;
      }
      if (spawn(s, fc) < 0) { klog(KLOG_ERROR, "autoscaler: cannot start a %s worker: %s", name, strerror(errno)); break; }
      if (gpu) gpu_used++;
      else cpu_used += need;
    }
  }
  free(rn.n);
  free(r);
  if (s->nkids > 0) s->busy_ms = now;
  check_budget(s, now);
}

/* At most one kick per 20 ms from the watcher: under a burst every commit is
 * a change, and one tick covers them all (the 100 ms tick catches the rest). */
static void on_change(void *arg, const char *id) {
  ke_scaler *s = arg;
  (void)id;
  int64_t now = ke_now_ms();
  if (now - s->watch_kick_ms < 20) return;
  s->watch_kick_ms = now;
  kl_kick(&s->loop);
}

static void *watcher(void *arg) {
  ke_scaler *s = arg;
  kq *q = NULL;
  while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
    kiln_err e = {0};
    if (!q && ke_open_queue(s->c, 1, &q, &e) < 0) {
      q = NULL;
      struct timespec ts = {0, 500 * 1000000L};   /* the ticks go on meanwhile */
      nanosleep(&ts, NULL);
      continue;
    }
    kq_watch(q, 200, on_change, s, &e);
  }
  kq_close(q);
  return NULL;
}

int64_t ke_scaler_idle_ms(ke_scaler *s) {
  if (!s) return 0;
  return ke_now_ms() - __atomic_load_n(&s->busy_ms, __ATOMIC_RELAXED);
}

/* Ticks every 100 ms, and on a kick; kicks closer than 5 ms to the last
 * tick wait for the rest (under a burst of submissions the workers are
 * woken by the kick itself, and one tick covers the whole burst). */
static int scaler_tick(void *arg) {
  tick(arg);
  return 0;
}

int ke_scaler_start(ke_scaler **out, const ke_config *c, const char *exe, kiln_err *e) {
  ke_scaler *s = calloc(1, sizeof *s);
  if (!s) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  s->c = c;
  snprintf(s->exe, sizeof s->exe, "%s", exe);
  ke_host_name(s->host, sizeof s->host);
  int r = ke_open_queue(c, 0, &s->q, e);
  if (r < 0) { free(s); return r; }
  kq_worker_prune(s->q, ke_now_ms() - 86400000LL, e);
  kiln_err se = {0};
  if (ke_open_store(c, &s->store, &se) < 0) {     /* only the sweeps need it */
    klog(KLOG_WARN, "autoscaler: %s; dead workers' scratch files are swept only when a store opens", se.msg);
    s->store = NULL;
  }
  s->zsock = -1;
  const char *nz = getenv("KILN_NO_ZYGOTE");       /* start workers by exec (a baseline, or to debug) */
  if (!nz || !*nz || !strcmp(nz, "0")) zygote_start(s);
  pthread_mutex_init(&s->kmu, NULL);
  s->busy_ms = ke_now_ms();
  if (kl_start(&s->loop, 100, 5, scaler_tick, s) < 0) {
    kq_close(s->q);
    ks_close(s->store);
    pthread_mutex_destroy(&s->kmu);
    free(s);
    return kiln_fail(e, KILN_EINTERNAL, "cannot start the autoscaler thread");
  }
  /* on SQLite the server's own submissions kick in-process; the watcher is for queues other hosts share */
  if (strcmp(kq_backend_name(s->q), "sqlite") && pthread_create(&s->watcher, NULL, watcher, s) == 0) s->watcher_on = 1;
  *out = s;
  return 0;
}

void ke_scaler_kick(ke_scaler *s, const char *fn) {
  if (!s) return;
  if (fn) {                                       /* an idle worker claims it now */
    pthread_mutex_lock(&s->kmu);
    wake(s, fn);
    pthread_mutex_unlock(&s->kmu);
  }
  kl_kick(&s->loop);
}

void ke_scaler_stop(ke_scaler *s) {
  if (!s) return;
  __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
  if (s->watcher_on) pthread_join(s->watcher, NULL);   /* within one watch (200 ms) */
  kl_stop(&s->loop);
  for (int i = 0; i < s->nkids; i++) kill(s->kids[i].pid, SIGTERM);
  for (int waited = 0; s->nkids > 0 && waited < 150; waited++) {   /* up to 15 s, then SIGKILL */
    reap(s);
    if (s->nkids > 0) {
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  for (int i = 0; i < s->nkids; i++) {
    kill(s->kids[i].pid, SIGKILL);
    close(s->kids[i].wake_fd);
  }
  if (s->zsock >= 0) close(s->zsock);           /* the zygote leaves at EOF */
  if (s->zpid > 0) waitpid(s->zpid, NULL, 0);
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
  kq_close(s->q);
  ks_close(s->store);
  pthread_mutex_destroy(&s->kmu);
  free(s);
}

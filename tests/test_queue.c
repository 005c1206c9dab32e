/* test_queue.c — the SQLite queue's state machine with a test-controlled
 * clock: claim order, leases and heartbeats, completion, retries with
 * exponential backoff (bad_input never retried), lease expiry, cancel,
 * list filters, events, and that jobs survive closing and reopening. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/engine.h"
#include "queue/queue.h"
#include "t.h"
#include "tutil.h"

static kq *open_q(void) {
  kq *q = NULL;
  kiln_err e = {0};
  kq_policy pol = {1000, 4000};
  CHECK(kq_open_sqlite(&q, t_path("q.db"), &pol, &e) == 0, "%s", e.msg);
  return q;
}

static kq_state state_of(kq *q, const char *id) {
  kq_job j;
  kiln_err e = {0};
  if (kq_get(q, id, &j, &e) < 0) return (kq_state)-1;
  kq_job_release(&j);
  return j.state;
}

static void test_lifecycle(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char a[KQ_ID_LEN], b[KQ_ID_LEN], c[KQ_ID_LEN];
  CHECK(kq_submit(q, "reframe", "{\"input\":\"x\"}", 2, NULL, 100, a, &e) == 0, "%s", e.msg);
  CHECK(kq_submit(q, "reframe", "{}", 2, NULL, 200, b, &e) == 0 && kq_submit(q, "overlay", "{}", 0, NULL, 150, c, &e) == 0, "%s", e.msg);
  CHECK(strlen(a) == 32 && strcmp(a, b) != 0, "ids");
  kq_job j;
  CHECK(kq_claim(q, "reframe", "w1", 5000, 300, &j, &e) == 1 && !strcmp(j.id, a), "oldest first");
  CHECK(j.state == KQ_RUNNING && j.attempts == 1 && !strcmp(j.spec, "{\"input\":\"x\"}") && j.lease_until_ms == 5300, "claimed: state %d attempts %d spec %s lease %lld", j.state, j.attempts, j.spec, (long long)j.lease_until_ms);
  kq_job_release(&j);
  CHECK(kq_heartbeat(q, a, "w1", &(kq_progress){10, 100, -1, NULL}, 5000, 1000, &e) == 0, "%s", e.msg);
  CHECK(kq_heartbeat(q, a, "w2", &(kq_progress){10, 100, -1, NULL}, 5000, 1000, &e) == KILN_EINVAL && strstr(e.msg, "lease"), "wrong worker: %s", e.msg);
  CHECK(kq_get(q, a, &j, &e) == 0 && j.frames_done == 10 && j.frames_total == 100 && j.lease_until_ms == 6000, "progress");
  kq_job_release(&j);
  CHECK(kq_complete(q, a, "w1", "{\"outputs\":[]}", NULL, -1, 2000, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, a, &j, &e) == 0 && j.state == KQ_SUCCEEDED && !strcmp(j.result, "{\"outputs\":[]}") && j.finished_ms == 2000, "done");
  kq_job_release(&j);
  CHECK(kq_complete(q, a, "w1", "{}", NULL, -1, 2100, &e) == KILN_EINVAL, "complete twice refused");
  CHECK(kq_claim(q, "overlay", "w3", 1000, 2200, &j, &e) == 1 && !strcmp(j.id, c), "per-function claim");
  kq_job_release(&j);
  kq_close(q);
}

static void test_retries(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char id[KQ_ID_LEN];
  kq_submit(q, "upscale", "{}", 2, NULL, 0, id, &e);
  kq_job j;
  int retrying = -1;
  CHECK(kq_claim(q, "upscale", "w", 1000, 10, &j, &e) == 1, "claim 1");
  kq_job_release(&j);
  CHECK(kq_fail(q, id, "w", "internal", "boom", NULL, 20, &retrying, &e) == 0 && retrying == 1, "retry 1");
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_RETRYING && j.run_after_ms == 1020 && !strcmp(j.err_msg, "boom"), "delay 1 s");
  kq_job_release(&j);
  CHECK(kq_claim(q, "upscale", "w", 1000, 1019, &j, &e) == 0, "not before its delay");
  CHECK(kq_claim(q, "upscale", "w", 1000, 1020, &j, &e) == 1 && j.attempts == 2, "claim 2");
  kq_job_release(&j);
  CHECK(kq_fail(q, id, "w", "timeout", "slow", NULL, 1100, &retrying, &e) == 0 && retrying == 1, "retry 2");
  CHECK(kq_get(q, id, &j, &e) == 0 && j.run_after_ms == 1100 + 2000, "delay doubles: %lld", (long long)j.run_after_ms);
  kq_job_release(&j);
  CHECK(kq_claim(q, "upscale", "w", 1000, 5000, &j, &e) == 1 && j.attempts == 3, "claim 3");
  kq_job_release(&j);
  CHECK(kq_fail(q, id, "w", "internal", "again", NULL, 5100, &retrying, &e) == 0 && retrying == 0, "retries used up");
  CHECK(state_of(q, id) == KQ_FAILED, "failed");

  char bad[KQ_ID_LEN];
  kq_submit(q, "upscale", "{}", 5, NULL, 6000, bad, &e);
  kq_claim(q, "upscale", "w", 1000, 6001, &j, &e);
  kq_job_release(&j);
  CHECK(kq_fail(q, bad, "w", "bad_input", "crop outside the frame", NULL, 6002, &retrying, &e) == 0 && retrying == 0,
        "bad_input is never retried");
  CHECK(kq_get(q, bad, &j, &e) == 0 && j.state == KQ_FAILED && !strcmp(j.err_class, "bad_input"), "class kept");
  kq_job_release(&j);

  /* a message that is not UTF-8 is stored escaped: the job record, its events and webhooks stay encodable */
  char odd[KQ_ID_LEN];
  kq_submit(q, "upscale", "{}", 0, NULL, 7000, odd, &e);
  kq_claim(q, "upscale", "w", 1000, 7001, &j, &e);
  kq_job_release(&j);
  CHECK(kq_fail(q, odd, "w", "bad_input", "cannot open 'in/\xff\xfe.mp4' (\xc3", NULL, 7002, &retrying, &e) == 0, "fail");
  CHECK(kq_get(q, odd, &j, &e) == 0 && !strcmp(j.err_msg, "cannot open 'in/\\xFF\\xFE.mp4' (\\xC3"), "escaped: %s", j.err_msg);
  snprintf(j.err_msg, sizeof j.err_msg, "a row of an older kiln: \xff");   /* rows stored before: escaped when read */
  json_t *o = ke_job_json(&j, NULL, "http://x", 7003);
  char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
  CHECK(t && strstr(t, "older kiln: \\\\xFF"), "job record encodes: %s", t ? t : "(null)");
  free(t);
  json_decref(o);
  kq_job_release(&j);
  kq_close(q);
}

static void test_lease_expiry_and_cancel(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char id[KQ_ID_LEN], id2[KQ_ID_LEN];
  kq_submit(q, "overlay", "{}", 1, NULL, 0, id, &e);
  kq_job j;
  kq_claim(q, "overlay", "dead-worker", 1000, 0, &j, &e);
  kq_job_release(&j);
  int n = -1;
  CHECK(kq_reclaim(q, 999, &n, &e) == 0 && n == 0, "lease still valid");
  CHECK(kq_reclaim(q, 1001, &n, &e) == 0 && n == 1, "expired lease reclaimed");
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_RETRYING && !strcmp(j.err_class, "worker_lost") &&
            strstr(j.err_msg, "dead-worker"), "worker_lost: %s", j.err_msg);
  kq_job_release(&j);
  CHECK(kq_heartbeat(q, id, "dead-worker", &(kq_progress){1, 1, -1, NULL}, 1000, 1002, &e) == KILN_EINVAL, "a lost worker's heartbeat is refused");

  kq_submit(q, "overlay", "{}", 1, NULL, 10, id2, &e);
  CHECK(kq_claim(q, "overlay", "w", 1000, 20, &j, &e) == 1 && !strcmp(j.id, id2), "claim");
  kq_job_release(&j);
  CHECK(kq_cancel(q, id2, 30, &e) == 0, "%s", e.msg);
  CHECK(kq_heartbeat(q, id2, "w", &(kq_progress){5, 10, -1, NULL}, 1000, 40, &e) == KILN_ECANCELLED, "worker learns of the cancel");
  CHECK(kq_cancel(q, id2, 50, &e) == KILN_EINVAL && strstr(e.msg, "already cancelled"), "%s", e.msg);
  CHECK(kq_cancel(q, "0123", 50, &e) == KILN_ENOENT, "unknown job");
  CHECK(kq_cancel(q, id, 60, &e) == 0 && state_of(q, id) == KQ_CANCELLED, "cancel a retrying job");
  kq_close(q);
}

static int count_cb(void *arg, const kq_job *j) { (*(int *)arg)++; (void)j; return 0; }

typedef struct ev { int n; char kinds[1024]; } ev;
static int ev_cb(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts) {
  ev *v = arg;
  size_t l = strlen(v->kinds);
  snprintf(v->kinds + l, sizeof v->kinds - l, "%s%s:%s", v->n++ ? "," : "", kind, data ? data : "");
  (void)seq; (void)ts;
  return 0;
}

static void test_durable_list_events(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char id[KQ_ID_LEN];
  kq_submit(q, "durable", "{\"n\":1}", 0, NULL, 7000, id, &e);
  kq_job j;
  kq_claim(q, "durable", "w", 1000, 7001, &j, &e);
  kq_job_release(&j);
  kq_heartbeat(q, id, "w", &(kq_progress){3, 9, -1, NULL}, 1000, 7002, &e);
  kq_close(q);
  q = open_q();                                  /* a restarted server sees the same jobs */
  if (!q) return;
  CHECK(state_of(q, id) == KQ_RUNNING, "state survives a reopen");
  int n = 0;
  CHECK(kq_list(q, KQ_RUNNING, "durable", 10, count_cb, &n, &e) == 0 && n == 1, "list running durable: %d", n);
  n = 0;
  kq_list(q, -1, NULL, 1000, count_cb, &n, &e);
  CHECK(n >= 8, "list all: %d", n);
  ev v = {0};
  CHECK(kq_events(q, id, 0, ev_cb, &v, &e) == 0 && !strcmp(v.kinds, "state:{\"state\":\"queued\"},state:{\"state\":\"running\",\"phase\":\"starting\"},progress:{\"frames_done\":3,\"frames_total\":9,\"phase\":\"starting\",\"eta_ms\":-1}"), "events: %s",
        v.kinds);
  kq_close(q);
}

/* Cost adds up over runs; phases; usage per day; webhooks pending until
 * delivered; a dead worker's job fails as worker_lost at once. */
static int usage_cb(void *arg, const char *d, const char *fn, int64_t jobs, double rs, double usd) {
  struct { int rows; char day[16]; double rs, usd; } *u = arg;
  u->rows++;
  snprintf(u->day, sizeof u->day, "%s", d);
  u->rs = rs;
  u->usd = usd;
  (void)fn; (void)jobs;
  return 0;
}
static int wcount_cb(void *arg, const kq_worker *w) { (*(int *)arg)++; (void)w; return 0; }
static int wcopy_cb(void *arg, const kq_worker *w) { *(kq_worker *)arg = *w; return 0; }

static void test_cost_hooks_workers(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char id[KQ_ID_LEN], id2[KQ_ID_LEN];
  int64_t day = 1795392000000LL;                   /* 2026-11-23 00:00 UTC */
  CHECK(kq_submit(q, "noop", "{}", 1, "http://127.0.0.1:9/hook", day, id, &e) == 0, "%s", e.msg);
  kq_job j;
  kq_claim(q, "noop", "w1", 1000, day + 10, &j, &e);
  kq_job_release(&j);
  kq_cost c1 = {200, 1500, 0.01};
  CHECK(kq_fail(q, id, "w1", "internal", "boom", &c1, day + 20, NULL, &e) == 0, "%s", e.msg);
  int64_t n = -1, next = -1;
  CHECK(kq_runnable(q, "noop", day + 21, &n, &next, &e) == 0 && n == 0 && next == day + 1020, "retry waits: n %lld next %lld", (long long)n, (long long)next);
  CHECK(kq_runnable(q, "noop", day + 1020, &n, &next, &e) == 0 && n == 1 && next == 0, "retry due");
  kq_claim(q, "noop", "w2", 1000, day + 1100, &j, &e);
  CHECK(!strcmp(j.phase, "starting") && j.claimed_ms == day + 1100, "claim: phase %s", j.phase);
  kq_job_release(&j);
  CHECK(kq_heartbeat(q, id, "w2", &(kq_progress){5, 10, 700, "processing"}, 1000, day + 1200, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && !strcmp(j.phase, "processing") && j.eta_ms == 700, "phase %s", j.phase);
  kq_job_release(&j);
  int hooks = 0;
  CHECK(kq_hooks_due(q, day + 5000, 10, count_cb, &hooks, &e) == 0 && hooks == 0, "no webhook before the end");
  kq_cost c2 = {0, 2500, 0.02};
  CHECK(kq_complete(q, id, "w2", "{}", &c2, -1, day + 1300, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.resource_ms == 4000 && j.cold_start_ms == 200 && j.usd > 0.0299 && j.usd < 0.0301 &&
            !strcmp(j.phase, "done") && j.frames_done == 10 && j.hook_state == KQ_HOOK_PENDING && j.webhook &&
            !strcmp(j.webhook, "http://127.0.0.1:9/hook"), "cost adds up: %lld ms %f usd", (long long)j.resource_ms, j.usd);
  kq_job_release(&j);
  CHECK(kq_hooks_due(q, day + 1300, 10, count_cb, &hooks, &e) == 0 && hooks == 1, "webhook due");
  CHECK(kq_hook_result(q, id, 0, day + 3000, &e) == 0, "%s", e.msg);
  hooks = 0;
  kq_hooks_due(q, day + 2000, 10, count_cb, &hooks, &e);
  CHECK(hooks == 0, "webhook retry waits");
  kq_hook_result(q, id, 1, 0, &e);
  hooks = 0;
  kq_hooks_due(q, day + 9000, 10, count_cb, &hooks, &e);
  CHECK(hooks == 0 && kq_get(q, id, &j, &e) == 0 && j.hook_state == KQ_HOOK_DELIVERED && j.hook_attempts == 2, "delivered");
  kq_job_release(&j);

  struct { int rows; char day[16]; double rs, usd; } u = {0};
  CHECK(kq_usage(q, day, usage_cb, &u, &e) == 0 && u.rows == 1 && !strcmp(u.day, "2026-11-23") && u.rs > 3.99 && u.rs < 4.01,
        "usage: rows %d day %s rs %f", u.rows, u.day, u.rs);

  kq_worker w = {.id = "w9", .fn = "noop", .host = "h", .pid = 42, .state = KQ_W_IDLE, .started_ms = day, .ready_ms = day + 30};
  CHECK(kq_worker_put(q, &w, &e) == 0, "%s", e.msg);
  kq_submit(q, "noop", "{}", 0, NULL, day + 10000, id2, &e);
  kq_claim(q, "noop", "w9", 60000, day + 10001, &j, &e);
  kq_job_release(&j);
  kq_worker seen = {0};
  kq_worker_list(q, "noop", 1, wcopy_cb, &seen, &e);
  CHECK(seen.state == KQ_W_BUSY && !strcmp(seen.job, id2), "a worker holding a running job is listed busy with it: %s %s",
        kq_wstate_name(seen.state), seen.job);
  int nf = 0;
  CHECK(kq_fail_worker(q, "w9", "worker_lost", "worker w9 died (signal 9)", day + 10002, &nf, &e) == 0 && nf == 1, "fail worker");
  CHECK(kq_get(q, id2, &j, &e) == 0 && j.state == KQ_FAILED && !strcmp(j.err_class, "worker_lost") && strstr(j.err_msg, "signal 9"),
        "dead worker's job: %s %s", kq_state_name(j.state), j.err_msg);
  kq_job_release(&j);
  int nw = 0;
  kq_worker_list(q, "noop", 1, wcount_cb, &nw, &e);
  CHECK(nw == 1, "one live worker");
  w.state = KQ_W_EXITED;
  w.last_ms = day + 5;
  kq_worker_put(q, &w, &e);
  nw = 0;
  kq_worker_list(q, "noop", 1, wcount_cb, &nw, &e);
  CHECK(nw == 0, "exited is not live");
  CHECK(kq_worker_known(q, "w9", &e) == 1 && kq_worker_known(q, "w10", &e) == 0, "a closed row is still known");
  nw = 0;
  kq_worker_prune(q, day + 6, &e);
  kq_worker_list(q, NULL, 0, wcount_cb, &nw, &e);
  CHECK(nw == 0, "pruned");
  kq_close(q);
}

/* A task whose worker was stopped goes back to the queue without using an attempt. */
static void test_requeue(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char id[KQ_ID_LEN];
  kq_submit(q, "noop", "{}", 0, NULL, 100, id, &e);
  kq_job j;
  kq_claim(q, "noop", "w1", 1000, 110, &j, &e);
  kq_job_release(&j);
  CHECK(kq_requeue(q, id, "w2", 120, &e) == KILN_EINVAL, "only its worker puts it back");
  CHECK(kq_requeue(q, id, "w1", 120, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_QUEUED && j.attempts == 0 && !j.worker[0], "queued again: %s, %d",
        kq_state_name(j.state), j.attempts);
  kq_job_release(&j);
  CHECK(kq_claim(q, "noop", "w3", 1000, 130, &j, &e) == 1 && j.attempts == 1, "claimed again as a first attempt");
  kq_job_release(&j);
  kq_close(q);
}

int main(void) {
  T_RUN(test_requeue);
  T_RUN(test_cost_hooks_workers);
  T_RUN(test_lifecycle);
  T_RUN(test_retries);
  T_RUN(test_lease_expiry_and_cancel);
  T_RUN(test_durable_list_events);
  t_cleanup();
  return t_done();
}

/* test_queue.c — the SQLite queue's state machine with a test-controlled
 * clock: claim order, leases and heartbeats, completion, retries with
 * exponential backoff (bad_input never retried), lease expiry, cancel,
 * list filters, events, and that jobs survive closing and reopening; split
 * jobs (release, chunks, the join, a failed chunk, cancel), cost models,
 * that every state change in the event log is one of machine.c's
 * transitions, and concurrent claimers and chunk completions from threads.
 * The same suite runs on PostgreSQL: KILN_TEST_QUEUE=postgres://... (the
 * ctest `postgres` starts a server with tests/pgserver.py). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "engine/engine.h"
#include "queue/queue.h"
#include "t.h"
#include "tutil.h"

static kq *open_q(void) {
  kq *q = NULL;
  kiln_err e = {0};
  kq_policy pol = {1000, 4000};
  const char *url = getenv("KILN_TEST_QUEUE");   /* the same suite on PostgreSQL: tests/pgserver.py */
  CHECK(kq_open(&q, url && *url ? url : t_path("q.db"), &pol, &e) == 0, "%s", e.msg);
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
  CHECK(kq_hooks_due(q, day + 5000, 1, 10, count_cb, &hooks, &e) == 0 && hooks == 0, "no webhook before the end");
  kq_cost c2 = {0, 2500, 0.02};
  CHECK(kq_complete(q, id, "w2", "{}", &c2, -1, day + 1300, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.resource_ms == 4000 && j.cold_start_ms == 200 && j.usd > 0.0299 && j.usd < 0.0301 &&
            !strcmp(j.phase, "done") && j.frames_done == 10 && j.hook_state == KQ_HOOK_PENDING && j.webhook &&
            !strcmp(j.webhook, "http://127.0.0.1:9/hook"), "cost adds up: %lld ms %f usd", (long long)j.resource_ms, j.usd);
  kq_job_release(&j);
  CHECK(kq_hooks_due(q, day + 1300, 1, 10, count_cb, &hooks, &e) == 0 && hooks == 1, "webhook due");
  hooks = 0;
  CHECK(kq_hooks_due(q, day + 1300, 1, 10, count_cb, &hooks, &e) == 0 && hooks == 0, "claimed: a second sender skips it");
  CHECK(kq_hook_result(q, id, 0, day + 3000, &e) == 0, "%s", e.msg);
  hooks = 0;
  kq_hooks_due(q, day + 2000, 1, 10, count_cb, &hooks, &e);
  CHECK(hooks == 0, "webhook retry waits");
  kq_hook_result(q, id, 1, 0, &e);
  hooks = 0;
  kq_hooks_due(q, day + 9000, 1, 10, count_cb, &hooks, &e);
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

static const char *const *chunk_specs(void) {
  static const char *const specs[3] = {"{\"part\":0}", "{\"part\":1}", "{\"part\":2}"};
  return specs;
}

typedef struct kids { int n; kq_job j[8]; } kids;
static int kids_cb(void *arg, const kq_job *j) {
  kids *k = arg;
  if (k->n < 8) {
    k->j[k->n] = *j;
    k->j[k->n].spec = k->j[k->n].result = k->j[k->n].webhook = k->j[k->n].plan = NULL;
    k->n++;
  }
  return 0;
}

/* Held for the planner; run whole (release) or split into 3 chunks and a
 * join; progress adds up; the last chunk releases the join; the join's
 * success is the job's; a chunk failed for good fails the job and stops
 * its other tasks; cancelling a split job cancels its tasks. */
static void test_split_join(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  kq_submit_req rq[3] = {{"sj", "{\"v\":1}", 0, NULL, 1, ""}, {"sj", "{\"v\":2}", 1, NULL, 1, ""}, {"sj", "{\"v\":3}", 0, NULL, 1, ""}};
  CHECK(kq_submit_many(q, rq, 3, 5000, &e) == 0, "%s", e.msg);
  kq_job j;
  CHECK(kq_claim(q, "sj", "w", 1000, 5001, &j, &e) == 0, "a held job is not claimed");
  int n = 0;
  CHECK(kq_claim_unplanned(q, 2, 5001, 100, count_cb, &n, &e) == 0 && n == 2, "two of three claimed by a planner: %d", n);
  n = 0;
  CHECK(kq_claim_unplanned(q, 10, 5001, 100, count_cb, &n, &e) == 0 && n == 1, "another planner gets the third: %d", n);
  n = 0;
  CHECK(kq_claim_unplanned(q, 10, 5050, 100, count_cb, &n, &e) == 0 && n == 0, "none while leased: %d", n);
  n = 0;
  CHECK(kq_claim_unplanned(q, 10, 5102, 100, count_cb, &n, &e) == 0 && n == 3, "a dead planner's lease runs out: %d", n);
  n = 0;
  CHECK(kq_unlease_planning(q, &e) == 0 && kq_claim_unplanned(q, 10, 5103, 100, count_cb, &n, &e) == 0 && n == 3,
        "a starting planner drops the leases a killed server left: %d", n);
  CHECK(kq_release(q, rq[0].id, "{\"chunks\":1,\"predicted_ms\":50}", 30, 5002, &e) == 0, "%s", e.msg);
  CHECK(kq_release(q, rq[0].id, "{}", 30, 5002, &e) == 0 && kq_get(q, rq[0].id, &j, &e) == 0 && j.planned == 1 &&
            j.plan && strstr(j.plan, "predicted_ms"), "released once: %s", j.plan ? j.plan : "(null)");
  kq_job_release(&j);
  CHECK(kq_claim(q, "sj", "w", 1000, 5003, &j, &e) == 1 && !strcmp(j.id, rq[0].id) && j.frames_total == 30, "released, claimed");
  kq_job_release(&j);
  CHECK(kq_complete(q, rq[0].id, "w", "{}", NULL, 30, 5100, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, rq[0].id, &j, &e) == 0 && j.plan && strstr(j.plan, "\"actual_ms\":100"), "actual time kept with the plan: %s",
        j.plan ? j.plan : "(null)");
  kq_job_release(&j);

  /* split 1: succeeds */
  const char *id = rq[1].id;
  CHECK(kq_split(q, id, chunk_specs(), 3, "{\"join\":1}", "{\"chunks\":3}", 90, 6000, &e) == 0, "%s", e.msg);
  CHECK(kq_split(q, id, chunk_specs(), 3, "{}", "{}", 90, 6000, &e) == KILN_EINVAL, "split once");
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_RUNNING && j.kind == KQ_SPLIT && j.pending == 3 && !j.worker[0],
        "a running split job without a worker");
  kq_job_release(&j);
  kids k = {0};
  CHECK(kq_children(q, id, kids_cb, &k, &e) == 0 && k.n == 4 && k.j[0].kind == KQ_CHUNK && k.j[2].part == 2 &&
            k.j[3].kind == KQ_JOIN && !strcmp(k.j[3].fn, "join") && k.j[3].run_after_ms == KQ_HELD, "3 chunks and a held join");
  CHECK(kq_cancel(q, k.j[0].id, 6001, &e) == KILN_EINVAL && strstr(e.msg, "cancel that job"), "a task is not cancelled alone");
  char done[3][KQ_ID_LEN];
  for (int i = 0; i < 3; i++) {
    CHECK(kq_claim(q, "sj", "w", 1000, 6010 + i, &j, &e) == 1 && j.kind == KQ_CHUNK && j.part == i, "chunk %d in order", i);
    snprintf(done[i], sizeof done[i], "%s", j.id);
    kq_job_release(&j);
  }
  CHECK(kq_claim(q, "join", "w", 1000, 6020, &j, &e) == 0, "the join waits for its chunks");
  CHECK(kq_heartbeat(q, done[0], "w", &(kq_progress){10, 30, -1, "processing"}, 1000, 6030, &e) == 0, "%s", e.msg);
  CHECK(kq_heartbeat(q, done[1], "w", &(kq_progress){5, 30, -1, "processing"}, 1000, 6031, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.frames_done == 15, "progress adds up over chunks: %lld", (long long)j.frames_done);
  kq_job_release(&j);
  kq_cost c = {10, 100, 0.5};
  for (int i = 0; i < 3; i++) CHECK(kq_complete(q, done[i], "w", "{}", &c, 30, 6040 + i, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.pending == 0 && j.frames_done == 90, "pending %d frames %lld", j.pending, (long long)j.frames_done);
  kq_job_release(&j);
  CHECK(kq_claim(q, "join", "w", 1000, 6050, &j, &e) == 1 && j.kind == KQ_JOIN && !strcmp(j.parent, id), "the join is released");
  char join[KQ_ID_LEN];
  snprintf(join, sizeof join, "%s", j.id);
  kq_job_release(&j);
  CHECK(kq_complete(q, join, "w", "{\"outputs\":[\"o\"]}", &c, -1, 6060, &e) == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_SUCCEEDED && j.result && strstr(j.result, "outputs") &&
            j.resource_ms == 400 && j.cold_start_ms == 40 && j.usd > 1.99 && j.usd < 2.01 && j.plan &&
            strstr(j.plan, "\"actual_ms\":1060"), "the join's success is the job's, its cost the tasks' sum: %lld %f %s",
        (long long)j.resource_ms, j.usd, j.plan ? j.plan : "");
  kq_job_release(&j);
  n = 0;
  kq_list(q, -1, "join", 10, count_cb, &n, &e);
  CHECK(n == 0, "tasks are not listed as jobs");

  /* split 2: a chunk fails for good (bad_input) -> the job fails, the others are cancelled */
  id = rq[2].id;
  CHECK(kq_split(q, id, chunk_specs(), 3, "{}", NULL, 90, 7000, &e) == 0, "%s", e.msg);
  CHECK(kq_claim(q, "sj", "w", 1000, 7001, &j, &e) == 1 && j.part == 0, "chunk 0");
  char c0[KQ_ID_LEN];
  snprintf(c0, sizeof c0, "%s", j.id);
  kq_job_release(&j);
  CHECK(kq_claim(q, "sj", "w2", 1000, 7002, &j, &e) == 1 && j.part == 1, "chunk 1");
  char c1[KQ_ID_LEN];
  snprintf(c1, sizeof c1, "%s", j.id);
  kq_job_release(&j);
  int retrying = -1;
  CHECK(kq_fail(q, c0, "w", "bad_input", "frame 3 is corrupt", NULL, 7003, &retrying, &e) == 0 && retrying == 0, "%s", e.msg);
  CHECK(kq_get(q, id, &j, &e) == 0 && j.state == KQ_FAILED && !strcmp(j.err_class, "bad_input") &&
            strstr(j.err_msg, "chunk 0: frame 3"), "the job fails naming the chunk: %s", j.err_msg);
  kq_job_release(&j);
  CHECK(state_of(q, c1) == KQ_CANCELLED, "its running chunk is stopped");
  CHECK(kq_heartbeat(q, c1, "w2", &(kq_progress){1, 30, -1, NULL}, 1000, 7004, &e) == KILN_ECANCELLED, "and told so");
  kq_cost late = {0, 1000, 0.25};
  CHECK(kq_account(q, c1, &late, &e) == 0 && kq_get(q, id, &j, &e) == 0 && j.resource_ms == 1000,
        "a stopped task's cost still reaches its ended job: %lld", (long long)j.resource_ms);
  kq_job_release(&j);

  /* split 3: cancelled while its chunks run */
  char sid[KQ_ID_LEN];
  kq_submit_req one = {"sj", "{}", 0, NULL, 1, ""};
  kq_submit_many(q, &one, 1, 8000, &e);
  snprintf(sid, sizeof sid, "%s", one.id);
  CHECK(kq_split(q, sid, chunk_specs(), 2, "{}", NULL, 60, 8001, &e) == 0, "%s", e.msg);
  CHECK(kq_claim(q, "sj", "w", 1000, 8002, &j, &e) == 1, "a chunk runs");
  char rc[KQ_ID_LEN];
  snprintf(rc, sizeof rc, "%s", j.id);
  kq_job_release(&j);
  CHECK(kq_cancel(q, sid, 8003, &e) == 0, "%s", e.msg);
  k.n = 0;
  kq_children(q, sid, kids_cb, &k, &e);
  int cancelled = 0;
  for (int i = 0; i < k.n; i++) cancelled += k.j[i].state == KQ_CANCELLED;
  CHECK(k.n == 3 && cancelled == 3 && state_of(q, sid) == KQ_CANCELLED, "cancel stops every task: %d of %d", cancelled, k.n);
  CHECK(kq_complete(q, rc, "w", "{}", NULL, -1, 8004, &e) == KILN_ECANCELLED, "a cancelled chunk cannot complete");
  kq_close(q);
}

static char *edit_add(void *arg, const char *old) {
  int add = *(int *)arg;
  int v = old ? atoi(old + 5) : 0;                /* {"n":V} */
  char *o = malloc(32);
  if (o) snprintf(o, 32, "{\"n\":%d}", v + add);
  return o;
}
static char *edit_none(void *arg, const char *old) { (void)arg; (void)old; return NULL; }

static void test_models(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  char *js = (char *)"x";
  CHECK(kq_model_get(q, "m1", &js, &e) == 0 && js == NULL, "no model yet");
  int one = 1;
  CHECK(kq_model_update(q, "m1", edit_add, &one, 10, &e) == 0, "%s", e.msg);
  CHECK(kq_model_update(q, "m1", edit_add, &one, 11, &e) == 0 && kq_model_get(q, "m1", &js, &e) == 0 && js &&
            !strcmp(js, "{\"n\":2}"), "read-modify-write: %s", js ? js : "(null)");
  free(js);
  CHECK(kq_model_update(q, "m1", edit_none, NULL, 12, &e) == 0 && kq_model_get(q, "m1", &js, &e) == 0 && js &&
            !strcmp(js, "{\"n\":2}"), "an edit may leave it");
  free(js);
  CHECK(kq_model_put(q, "m1", "{\"n\":40}", 13, &e) == 0 && kq_model_get(q, "m1", &js, &e) == 0 && js && !strcmp(js, "{\"n\":40}"),
        "put replaces");
  free(js);
  kq_close(q);
}

/* Threads, each with its own handle (as processes would be): no task is
 * claimed twice and every one completes once; the model edits of all of
 * them add up (none lost); the chunks of one split job completed from
 * several threads release its join once and the job succeeds. */
typedef struct racer {
  const char *fn;
  pthread_mutex_t mu;
  int done, twice, nseen, failed;
  char seen[256][KQ_ID_LEN];
} racer;

static void *race(void *arg) {
  racer *r = arg;
  kq *q = open_q();
  if (!q) return NULL;
  kiln_err e = {0};
  char me[32];
  snprintf(me, sizeof me, "racer-%lx", (unsigned long)pthread_self());
  kq_job j;
  int k;
  while ((k = kq_claim(q, r->fn, me, 60000, 3000, &j, &e)) == 1) {
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->nseen; i++)
      if (!strcmp(r->seen[i], j.id)) r->twice++;
    if (r->nseen < 256) snprintf(r->seen[r->nseen++], KQ_ID_LEN, "%s", j.id);
    pthread_mutex_unlock(&r->mu);
    int one = 1;
    int ok = kq_complete(q, j.id, me, "{}", NULL, 10, 3001, &e) == 0 && kq_model_update(q, r->fn, edit_add, &one, 3002, &e) == 0;
    pthread_mutex_lock(&r->mu);
    if (ok) r->done++;
    else r->failed++;
    pthread_mutex_unlock(&r->mu);
    kq_job_release(&j);
  }
  if (k < 0) { pthread_mutex_lock(&r->mu); r->failed++; pthread_mutex_unlock(&r->mu); }
  kq_close(q);
  return NULL;
}

static void run_racers(racer *r, const char *fn) {
  memset(r, 0, sizeof *r);
  r->fn = fn;
  pthread_mutex_init(&r->mu, NULL);
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, race, r);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  pthread_mutex_destroy(&r->mu);
}

static void test_concurrent(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  enum { N = 120 };
  kq_submit_req rq[N];
  for (int i = 0; i < N; i++) rq[i] = (kq_submit_req){"race", "{}", 0, NULL, 0, ""};
  CHECK(kq_submit_many(q, rq, N, 2900, &e) == 0, "%s", e.msg);
  static racer r;
  run_racers(&r, "race");
  CHECK(r.done == N && r.twice == 0 && r.nseen == N && r.failed == 0, "%d done, %d claimed twice, %d claims, %d failed", r.done,
        r.twice, r.nseen, r.failed);
  int64_t counts[KQ_NSTATES];
  CHECK(kq_counts(q, "race", counts, &e) == 0 && counts[KQ_SUCCEEDED] == N, "all succeeded: %lld", (long long)counts[KQ_SUCCEEDED]);
  char *js = NULL;
  kq_model_get(q, "race", &js, &e);
  CHECK(js && atoi(js + 5) == N, "no model edit lost: %s", js ? js : "(null)");
  free(js);

  kq_submit_req one = {"crace", "{}", 0, NULL, 1, ""};
  CHECK(kq_submit_many(q, &one, 1, 2950, &e) == 0, "%s", e.msg);
  static const char *const specs[16] = {"{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}"};
  CHECK(kq_split(q, one.id, specs, 16, "{}", NULL, 160, 2960, &e) == 0, "%s", e.msg);
  run_racers(&r, "crace");
  CHECK(r.done == 16 && r.twice == 0 && r.failed == 0, "chunks: %d done, %d twice, %d failed", r.done, r.twice, r.failed);
  kq_job j;
  CHECK(kq_get(q, one.id, &j, &e) == 0 && j.pending == 0 && j.frames_done == 160, "the split job counted every chunk: pending %d,"
        " frames %lld", j.pending, (long long)j.frames_done);
  kq_job_release(&j);
  run_racers(&r, "join");
  CHECK(r.done == 1, "the join ran once: %d", r.done);
  CHECK(state_of(q, one.id) == KQ_SUCCEEDED, "the job succeeded: %s", kq_state_name(state_of(q, one.id)));
  kq_close(q);
}

/* Every state change any test made, job by job in the event log, is one of
 * machine.c's transitions. Runs last. */
typedef struct walk { kq_state prev; int bad, n; char what[200]; } walk;
static int walk_cb(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts) {
  walk *w = arg;
  (void)seq; (void)ts;
  if (strcmp(kind, "state") || !data) return 0;
  json_error_t je;
  json_t *o = json_loads(data, 0, &je);
  const char *st = json_string_value(json_object_get(o, "state"));
  kq_state to = (kq_state)-1;
  for (int s = 0; st && s < KQ_NSTATES; s++)
    if (!strcmp(st, kq_state_name((kq_state)s))) to = (kq_state)s;
  /* a job's log starts with its submission (queued); a task's (a chunk, a join) is made queued without one */
  if (w->n++ == 0 && to == KQ_QUEUED) {}
  else if (!kq_transition_ok(w->prev, to)) {
    w->bad++;
    snprintf(w->what, sizeof w->what, "%s -> %s", kq_state_name(w->prev), st ? st : "?");
  }
  w->prev = to;
  json_decref(o);
  return 0;
}
typedef struct idlist { int n; char id[1024][KQ_ID_LEN]; } idlist;
static int ids_cb(void *arg, const kq_job *j) {
  idlist *l = arg;
  if (l->n < 1024) snprintf(l->id[l->n++], KQ_ID_LEN, "%s", j->id);
  return 0;
}
static void test_transitions_in_log(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  static idlist l;
  l.n = 0;
  CHECK(kq_list(q, -1, NULL, 1000, ids_cb, &l, &e) == 0 && l.n > 20, "jobs: %d", l.n);
  int nl = l.n;
  for (int i = 0; i < nl; i++) kq_children(q, l.id[i], ids_cb, &l, &e);
  int bad = 0, walked = 0;
  for (int i = 0; i < l.n; i++) {
    walk w = {KQ_QUEUED, 0, 0, ""};
    kq_events(q, l.id[i], 0, walk_cb, &w, &e);
    walked += w.n;
    if (w.bad && !bad++) CHECK(0, "job %s: %s", l.id[i], w.what);
  }
  CHECK(bad == 0 && walked > 2 * l.n, "%d of %d jobs broke the table (%d state events)", bad, l.n, walked);
  CHECK(!kq_transition_ok(KQ_SUCCEEDED, KQ_RUNNING) && !kq_transition_ok(KQ_CANCELLED, KQ_QUEUED) &&
            kq_transition_ok(KQ_RETRYING, KQ_RUNNING), "the table itself");
  const char *url = getenv("KILN_TEST_QUEUE");
  CHECK(!strcmp(kq_backend_name(q), url && !strncmp(url, "postgres", 8) ? "postgres" : "sqlite"), "backend %s", kq_backend_name(q));
  kq_close(q);
}

/* SQLite: commits checkpoint the WAL (kiln's own hook, in place of
 * SQLite's automatic one): 3,000 jobs submitted, claimed and completed
 * leave a WAL far smaller than the ~40 MB they write (with no checkpoint
 * it would hold all of it). */
static void test_wal_checkpoints(void) {
  const char *url = getenv("KILN_TEST_QUEUE");
  if (url && *url) return;                        /* PostgreSQL has no WAL file of ours */
  kq *q = NULL;
  kiln_err e = {0};
  kq_policy pol = {1000, 4000, 1};
  CHECK(kq_open(&q, t_path("wal.db"), &pol, &e) == 0, "%s", e.msg);
  if (!q) return;
  char big[2048];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  char spec[2100];
  snprintf(spec, sizeof spec, "{\"pad\":\"%s\"}", big);
  int64_t now = 1000;
  int ok = 1;
  for (int i = 0; i < 3000 && ok; i++) {
    char id[KQ_ID_LEN];
    kq_job j;
    ok = kq_submit(q, "w", spec, 0, NULL, now, id, &e) == 0 && kq_claim(q, "w", "wk", 1000, now, &j, &e) == 1;
    if (ok) {
      ok = kq_complete(q, j.id, "wk", "{}", NULL, 0, now + 1, &e) == 0;
      kq_job_release(&j);
    }
    now += 2;
  }
  CHECK(ok, "3000 jobs through the queue: %s", e.msg);
  struct stat st;
  CHECK(stat(t_path("wal.db-wal"), &st) == 0 && st.st_size < 8 * 1024 * 1024, "the WAL holds %lld bytes",
        (long long)st.st_size);
  kq_close(q);
}

static int count_events(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts) {
  (void)seq, (void)kind, (void)data, (void)ts;
  ++*(int *)arg;
  return 0;
}

typedef struct counted { const char *fn; int64_t n; int calls; } counted;
static int runnable_cb(void *arg, const char *fn, int64_t n, int64_t next_ms) {
  counted *c = arg;
  (void)next_ms;
  if (!strcmp(fn, c->fn)) c->n = n, c->calls++;
  return 0;
}

/* A batch of 19 submissions (three multi-row INSERTs: 8, 8, 3) keeps its
 * order, its holds and webhooks and one queued event each; a warm worker's
 * kq_complete_claim records a success and claims the next in submission
 * order, returns 0 when none is left, and when the success cannot be
 * recorded (cancelled, or another worker's) claims nothing. */
static void test_batch_and_complete_claim(void) {
  kq *q = open_q();
  if (!q) return;
  kiln_err e = {0};
  enum { N = 19 };
  kq_submit_req rq[N];
  char specs[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(specs[i], sizeof specs[i], "{\"i\":%d}", i);
    rq[i] = (kq_submit_req){"cc", specs[i], i % 3, i == 5 ? "http://127.0.0.1:9/h" : NULL, i == 17, ""};
  }
  CHECK(kq_submit_many(q, rq, N, 9000, &e) == 0, "%s", e.msg);
  counted c = {"cc", 0, 0};
  CHECK(kq_runnable_each(q, 9001, runnable_cb, &c, &e) == 0 && c.calls == 1 && c.n == N - 1,
        "runnable of every function in one statement: %lld (%d calls)", (long long)c.n, c.calls);
  kq_job j;
  CHECK(kq_get(q, rq[5].id, &j, &e) == 0 && j.hook_state == KQ_HOOK_PENDING && !strcmp(j.webhook, "http://127.0.0.1:9/h") &&
        j.max_retries == 2 && !strcmp(j.spec, "{\"i\":5}"), "the sixth row of a batch kept its webhook and spec");
  kq_job_release(&j);
  CHECK(kq_get(q, rq[17].id, &j, &e) == 0 && j.planned == 0 && j.run_after_ms == KQ_HELD, "a held row of the last INSERT");
  kq_job_release(&j);
  for (int i = 0; i < N; i++) {
    int n = 0;
    kq_events(q, rq[i].id, 0, count_events, &n, &e);
    CHECK(n == 1, "job %d has %d events at submission", i, n);
  }
  CHECK(kq_claim(q, "cc", "w", 1000, 9002, &j, &e) == 1 && !strcmp(j.id, rq[0].id), "first claimed first");
  int k = 1;
  for (;;) {
    kq_job next;
    char done[KQ_ID_LEN];
    memcpy(done, j.id, sizeof done);
    kq_job_release(&j);
    int r = kq_complete_claim(q, done, "w", "{}", NULL, 3, 9003 + k, "cc", 1000, &next, &e);
    CHECK(state_of(q, done) == KQ_SUCCEEDED, "recorded: %s", e.msg);
    if (r != 1) {
      CHECK(r == 0 && k == N, "none left after %d (r %d: %s)", k, r, e.msg);
      break;
    }
    int want = k == 17 ? 18 : k;                  /* the held one is skipped */
    CHECK(!strcmp(next.id, rq[want].id) && next.state == KQ_RUNNING && !strcmp(next.worker, "w") && next.attempts == 1,
          "claimed next in order: %d", k);
    j = next;
    k = want + 1;
  }
  int n = 0;
  kq_events(q, rq[3].id, 0, count_events, &n, &e);
  CHECK(n == 4, "queued, running, the final progress, succeeded: %d events", n);

  char a[KQ_ID_LEN], b[KQ_ID_LEN];
  CHECK(kq_submit(q, "cc2", "{}", 0, NULL, 9100, a, &e) == 0 && kq_submit(q, "cc2", "{}", 0, NULL, 9101, b, &e) == 0, "%s", e.msg);
  CHECK(kq_claim(q, "cc2", "w", 1000, 9102, &j, &e) == 1 && !strcmp(j.id, a), "claim");
  kq_job_release(&j);
  kq_job next;
  CHECK(kq_complete_claim(q, a, "other", "{}", NULL, -1, 9103, "cc2", 1000, &next, &e) == KILN_EINVAL &&
        strstr(e.msg, "lease") && state_of(q, b) == KQ_QUEUED && state_of(q, a) == KQ_RUNNING,
        "another worker's job: not recorded, nothing claimed (%s)", e.msg);
  CHECK(kq_cancel(q, a, 9104, &e) == 0, "%s", e.msg);
  CHECK(kq_complete_claim(q, a, "w", "{}", NULL, -1, 9105, "cc2", 1000, &next, &e) == KILN_ECANCELLED &&
        state_of(q, b) == KQ_QUEUED && state_of(q, a) == KQ_CANCELLED, "cancelled meanwhile: nothing claimed (%s)", e.msg);
  CHECK(next.spec == NULL && next.id[0] == 0, "no job handed back");
  kq_close(q);
}

int main(void) {
  T_RUN(test_requeue);
  T_RUN(test_cost_hooks_workers);
  T_RUN(test_lifecycle);
  T_RUN(test_retries);
  T_RUN(test_lease_expiry_and_cancel);
  T_RUN(test_durable_list_events);
  T_RUN(test_split_join);
  T_RUN(test_models);
  T_RUN(test_concurrent);
  T_RUN(test_transitions_in_log);
  T_RUN(test_wal_checkpoints);
  T_RUN(test_batch_and_complete_claim);
  t_cleanup();
  return t_done();
}

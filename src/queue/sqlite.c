/* sqlite.c — the embedded queue: jobs in one SQLite database (WAL,
 * synchronous=FULL: a submitted job survives a crash of the server or the
 * machine). One connection per kq handle; a handle is used by one thread at
 * a time, other processes may share the file (busy timeout 5 s). Every
 * transition is one IMMEDIATE transaction that also appends an event.
 *
 * The job state machine (function behind each transition):
 *
 *                 kq_submit
 *                     |
 *                     v        kq_claim
 *                 +--------+ -----------> +---------+  kq_complete   +-----------+
 *                 | queued |              | running | -------------> | succeeded |
 *                 +--------+    +-------> +---------+                +-----------+
 *                     |         |kq_claim  |   |  sq_fail(bad_input, or retries
 *                     |         |(delay    |   |  used up: out_of_memory has
 *                     |         | passed)  |   |  one), kq_reclaim likewise
 *                     |         |          |   +-----------------------> +--------+
 *                     |    +----------+    |                             | failed |
 *                     |    | retrying | <--+ kq_fail (other class),      +--------+
 *                     |    +----------+      kq_reclaim (lease expired:
 *                     |         |             worker_lost)
 *                     v         v
 *         kq_cancel from queued, running or retrying -> +-----------+
 *                                                       | cancelled |
 *                                                       +-----------+
 *
 * Within running, the worker reports a phase with each kq_heartbeat:
 * starting (claimed; model load, probe) -> processing (frames) -> saving
 * (muxing, storing the output); every end state has phase done. kq_fail_worker
 * is kq_reclaim for one worker the server saw die (or killed for its
 * timeout). A job's cost adds up over its runs (kq_complete / kq_fail take
 * what the run cost); webhooks of ended jobs wait in hook_state until
 * delivered (kq_hooks_due, kq_hook_result). A second table, workers, holds
 * one row per worker process (kq_worker_put) for the autoscaler and stats.
 */
#include "queue/queue_int.h"
#include "util/fs.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prepared statements are kept per connection, keyed by their SQL text's
 * address (every statement is a string literal), and reset after use. */
#define KQ_STMT_CACHE 64
typedef struct sq {
  struct kq base;               /* first: a kq * is a sq * */
  sqlite3 *db;
  kq_policy pol;
  struct { const char *sql; sqlite3_stmt *st; } cache[KQ_STMT_CACHE];
  int ncache;
} sq;

static inline sq *SQ(kq *q) { return (sq *)q; }



static int dberr(kq *q, kiln_err *e, const char *what) {
  return kiln_fail(e, KILN_EIO, "queue database: %s failed: %s", what, sqlite3_errmsg(SQ(q)->db));
}

static int exec_script(kq *q, const char *sql, kiln_err *e) {
  char *msg = NULL;
  if (sqlite3_exec(SQ(q)->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "queue database: %s", msg ? msg : "error");
    sqlite3_free(msg);
    return r;
  }
  return 0;
}

/* Returns the cached statement for sql (or a new one; an uncached one when
 * the cached one is in use) with the arguments described by fmt bound:
 * 't' text, 'i' int64. Give it back with unprep(). */
static sqlite3_stmt *prep(kq *q, const char *sql, const char *fmt, ...) {
  sqlite3_stmt *st = NULL;
  int slot = -1;
  for (int i = 0; i < SQ(q)->ncache; i++)
    if (SQ(q)->cache[i].sql == sql) {
      if (!sqlite3_stmt_busy(SQ(q)->cache[i].st)) st = SQ(q)->cache[i].st;
      slot = i;
      break;
    }
  if (!st) {
    if (sqlite3_prepare_v3(SQ(q)->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) return NULL;
    if (slot < 0 && SQ(q)->ncache < KQ_STMT_CACHE) {
      SQ(q)->cache[SQ(q)->ncache].sql = sql;
      SQ(q)->cache[SQ(q)->ncache++].st = st;
    }
  }
  va_list ap;
  va_start(ap, fmt);
  for (int i = 0; fmt[i]; i++) {
    if (fmt[i] == 't') {
      const char *t = va_arg(ap, const char *);
      if (t) sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, i + 1);
    } else {
      sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    }
  }
  va_end(ap);
  return st;
}

static void unprep(kq *q, sqlite3_stmt *st) {
  if (!st) return;
  for (int i = 0; i < SQ(q)->ncache; i++)
    if (SQ(q)->cache[i].st == st) {
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      return;
    }
  sqlite3_finalize(st);                            /* not cached (the cache was full, or it was in use) */
}

/* One statement without results (BEGIN, COMMIT, ...), from the cache. */
static int exec(kq *q, const char *sql, kiln_err *e) {
  sqlite3_stmt *st = prep(q, sql, "");
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  unprep(q, st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return kiln_fail(e, KILN_EIO, "queue database: %s", sqlite3_errmsg(SQ(q)->db));
  return 0;
}

static int event(kq *q, const char *id, const char *kind, const char *data, int64_t now) {
  sqlite3_stmt *st = prep(q, "INSERT INTO events(job_id, kind, data, ts_ms) VALUES(?,?,?,?)", "ttti", id, kind, data, now);
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  unprep(q, st);
  return ok ? 0 : -1;
}

/* Another connection holds the write lock (for well under a millisecond:
 * one transition). SQLite's own busy timeout sleeps 1, 2, 5, 10 ... 100 ms
 * between tries, which under many writers turns a 0.3 ms wait into tens of
 * milliseconds; this waits 50 us, growing to 1 ms, and gives up after 5 s. */
static int busy_wait(void *arg, int count) {
  (void)arg;
  long us = count < 20 ? 50L * (count + 1) : 1000L;
  static const long total_us = 5000000L;
  /* tries so far have waited at most: sum of 50..1000 for the first 20, then 1000 each */
  long waited = count < 20 ? 25L * count * (count + 1) : 10500L + 1000L * (count - 20);
  if (waited >= total_us) return 0;
  struct timespec ts = {0, us * 1000L};
  nanosleep(&ts, NULL);
  return 1;
}

static const kq_backend sqlite_backend;
static void sq_close(kq *q);

int kq_open_sqlite(kq **out, const char *path, const kq_policy *policy, kiln_err *e) {
  sq *h = calloc(1, sizeof *h);
  if (!h) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  kq *q = &h->base;
  q->be = &sqlite_backend;
  SQ(q)->pol = policy ? *policy : (kq_policy){1000, 60000, 0};
  if (sqlite3_open_v2(path, &SQ(q)->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "cannot open queue database '%s': %s", path, SQ(q)->db ? sqlite3_errmsg(SQ(q)->db) : "out of memory");
    sq_close(q);
    return r;
  }
  sqlite3_busy_handler(SQ(q)->db, busy_wait, q);
  int r = exec_script(q, SQ(q)->pol.relaxed ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", e);
  if (r < 0) { kiln_err_prefix(e, "%s", path); sq_close(q); return r; }
  sqlite3_stmt *vs = prep(q, "PRAGMA user_version", "");
  int have = vs && sqlite3_step(vs) == SQLITE_ROW ? sqlite3_column_int(vs, 0) : -1;
  unprep(q, vs);
  if (have == 3) { *out = q; return 0; }        /* made before: WAL mode and tables persist */
  if (have == 2)                                  /* version 2 -> 3: chunked jobs and cost models */
    r = exec_script(q,
                    "BEGIN IMMEDIATE;"
                    "ALTER TABLE jobs ADD COLUMN parent TEXT;"
                    "ALTER TABLE jobs ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN part INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN plan TEXT;"
                    "ALTER TABLE jobs ADD COLUMN planned INTEGER NOT NULL DEFAULT 1;"
                    "PRAGMA user_version=3; COMMIT;", e);
  if (r < 0) { kiln_err_prefix(e, "%s", path); sq_close(q); return r; }
  r = exec_script(q,
               "PRAGMA journal_mode=WAL;"
               "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, fn TEXT NOT NULL, state INTEGER NOT NULL,"
               " spec TEXT NOT NULL, result TEXT, attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL,"
               " created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER,"
               " run_after_ms INTEGER NOT NULL DEFAULT 0, lease_until_ms INTEGER, worker TEXT,"
               " frames_done INTEGER NOT NULL DEFAULT 0, frames_total INTEGER NOT NULL DEFAULT 0,"
               " err_class TEXT, err_msg TEXT, claimed_ms INTEGER, phase TEXT NOT NULL DEFAULT 'queued',"
               " eta_ms INTEGER NOT NULL DEFAULT -1, cold_start_ms INTEGER NOT NULL DEFAULT 0,"
               " resource_ms INTEGER NOT NULL DEFAULT 0, usd REAL NOT NULL DEFAULT 0, webhook TEXT,"
               " hook_state INTEGER NOT NULL DEFAULT 0, hook_attempts INTEGER NOT NULL DEFAULT 0,"
               " hook_next_ms INTEGER NOT NULL DEFAULT 0, parent TEXT, kind INTEGER NOT NULL DEFAULT 0,"
               " part INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0, plan TEXT,"
               " planned INTEGER NOT NULL DEFAULT 1);"
               "CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs(fn, state, run_after_ms, created_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_fn ON jobs(fn, created_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_done ON jobs(fn, state, finished_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_ms) WHERE state>=3;"
               "CREATE INDEX IF NOT EXISTS jobs_hooks ON jobs(hook_state, hook_next_ms);"
               "CREATE INDEX IF NOT EXISTS jobs_worker ON jobs(worker) WHERE state=1;"
               "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent) WHERE parent IS NOT NULL;"
               "CREATE INDEX IF NOT EXISTS jobs_unplanned ON jobs(planned) WHERE planned=0;"
               "CREATE INDEX IF NOT EXISTS jobs_top ON jobs(created_ms) WHERE parent IS NULL;"
               "CREATE TABLE IF NOT EXISTS models(fn TEXT PRIMARY KEY, data TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
               "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
               " kind TEXT NOT NULL, data TEXT, ts_ms INTEGER NOT NULL);"
               "CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);"
               "CREATE TABLE IF NOT EXISTS workers(id TEXT PRIMARY KEY, fn TEXT NOT NULL, host TEXT, pid INTEGER,"
               " state INTEGER NOT NULL, job TEXT, started_ms INTEGER, ready_ms INTEGER, last_ms INTEGER,"
               " tasks INTEGER NOT NULL DEFAULT 0);",
               e);
  if (r == 0) {
    /* schema versions: 2 = jobs with progress, cost, webhooks; workers. 3 = chunked jobs (parent, kind,
     * part, pending, plan, planned) and cost models */
    sqlite3_stmt *st = prep(q, "PRAGMA user_version", "");
    int v = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    unprep(q, st);
    if (v == 0) r = exec(q, "PRAGMA user_version=3", e);
    else if (v != 3)
      r = kiln_fail(e, KILN_EIO, "queue database has schema version %d, this kiln needs 3; move it aside to start afresh", v);
  }
  if (r < 0) { kiln_err_prefix(e, "%s", path); sq_close(q); return r; }
  *out = q;
  return 0;
}

static void sq_close(kq *q) {
  if (!q) return;
  for (int i = 0; i < SQ(q)->ncache; i++) sqlite3_finalize(SQ(q)->cache[i].st);
  sqlite3_close(SQ(q)->db);
  free(q);
}

static char *dup_col(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? strdup((const char *)t) : NULL;
}

static void copy_col(sqlite3_stmt *st, int i, char *out, size_t n) {
  const unsigned char *t = sqlite3_column_text(st, i);
  snprintf(out, n, "%s", t ? (const char *)t : "");
}

#define JOB_COLS                                                                                            \
  "id, fn, state, attempts, max_retries, created_ms, IFNULL(started_ms,0), IFNULL(finished_ms,0), run_after_ms," \
  " IFNULL(lease_until_ms,0), worker, frames_done, frames_total, err_class, err_msg, spec, result,"             \
  " IFNULL(claimed_ms,0), phase, eta_ms, cold_start_ms, resource_ms, usd, webhook, hook_state, hook_attempts,"  \
  " hook_next_ms, IFNULL(parent,''), kind, part, pending, plan, planned"

static void row_to_job(sqlite3_stmt *st, kq_job *j) {
  memset(j, 0, sizeof *j);
  copy_col(st, 0, j->id, sizeof j->id);
  copy_col(st, 1, j->fn, sizeof j->fn);
  j->state = (kq_state)sqlite3_column_int(st, 2);
  j->attempts = sqlite3_column_int(st, 3);
  j->max_retries = sqlite3_column_int(st, 4);
  j->created_ms = sqlite3_column_int64(st, 5);
  j->started_ms = sqlite3_column_int64(st, 6);
  j->finished_ms = sqlite3_column_int64(st, 7);
  j->run_after_ms = sqlite3_column_int64(st, 8);
  j->lease_until_ms = sqlite3_column_int64(st, 9);
  copy_col(st, 10, j->worker, sizeof j->worker);
  j->frames_done = sqlite3_column_int64(st, 11);
  j->frames_total = sqlite3_column_int64(st, 12);
  copy_col(st, 13, j->err_class, sizeof j->err_class);
  copy_col(st, 14, j->err_msg, sizeof j->err_msg);
  j->spec = dup_col(st, 15);
  j->result = dup_col(st, 16);
  j->claimed_ms = sqlite3_column_int64(st, 17);
  copy_col(st, 18, j->phase, sizeof j->phase);
  j->eta_ms = sqlite3_column_int64(st, 19);
  j->cold_start_ms = sqlite3_column_int64(st, 20);
  j->resource_ms = sqlite3_column_int64(st, 21);
  j->usd = sqlite3_column_double(st, 22);
  j->webhook = dup_col(st, 23);
  j->hook_state = (kq_hook_state)sqlite3_column_int(st, 24);
  j->hook_attempts = sqlite3_column_int(st, 25);
  j->hook_next_ms = sqlite3_column_int64(st, 26);
  copy_col(st, 27, j->parent, sizeof j->parent);
  j->kind = (kq_kind)sqlite3_column_int(st, 28);
  j->part = sqlite3_column_int(st, 29);
  j->pending = sqlite3_column_int(st, 30);
  j->plan = dup_col(st, 31);
  j->planned = sqlite3_column_int(st, 32);
}

static int sq_submit_many(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e) {
  for (int i = 0; i < n; i++) {
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for a job id");
    kiln_hex(raw, sizeof raw, reqs[i].id);
  }
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  int ok = 1;
  for (int i = 0; i < n && ok; i++) {
    const kq_submit_req *q_ = &reqs[i];
    sqlite3_stmt *st = prep(q, "INSERT INTO jobs(id, fn, state, spec, max_retries, created_ms, webhook, hook_state,"
                               " run_after_ms, planned) VALUES(?,?,0,?,?,?,?,?,?,?)",
                            "tttiitiii", q_->id, q_->fn, q_->spec ? q_->spec : "{}", (int64_t)q_->max_retries, now,
                            q_->webhook, (int64_t)(q_->webhook ? KQ_HOOK_PENDING : KQ_HOOK_NONE),
                            (int64_t)(q_->hold ? KQ_HELD : 0), (int64_t)!q_->hold);
    ok = st && sqlite3_step(st) == SQLITE_DONE;
    unprep(q, st);
    if (ok) ok = event(q, q_->id, "state", "{\"state\":\"queued\"}", now) == 0;
  }
  if (!ok) { r = dberr(q, e, "submit"); exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}


static int sq_get(kq *q, const char *id, kq_job *job, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE id=?", "t", id);
  if (!st) return dberr(q, e, "get");
  int rc = sqlite3_step(st);
  int r = 0;
  if (rc == SQLITE_ROW) row_to_job(st, job);
  else r = rc == SQLITE_DONE ? kiln_fail(e, KILN_ENOENT, "no job '%s'", id) : dberr(q, e, "get");
  unprep(q, st);
  return r;
}

static int sq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e) {
  /* a read first: an idle worker looking for work does not take the write lock */
  sqlite3_stmt *chk = prep(q, "SELECT 1 FROM jobs INDEXED BY jobs_runnable WHERE fn=?1 AND state IN (0,2)"
                              " AND run_after_ms<=?2 LIMIT 1", "ti", fn, now);
  int any = chk && sqlite3_step(chk) == SQLITE_ROW;
  unprep(q, chk);
  if (!any) return 0;
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  /* one statement picks the oldest runnable job, takes it, and returns it */
  sqlite3_stmt *st = prep(q,
                          "UPDATE jobs SET state=1, attempts=attempts+1, worker=?3, lease_until_ms=?4, claimed_ms=?2,"
                          " started_ms=IFNULL(started_ms, ?2), phase='starting', frames_done=0, eta_ms=-1"
                          " WHERE id=(SELECT id FROM jobs INDEXED BY jobs_runnable WHERE fn=?1 AND state IN (0,2)"
                          " AND run_after_ms<=?2 ORDER BY created_ms, rowid LIMIT 1)"
                          " RETURNING " JOB_COLS,
                          "titi", fn, now, worker, now + lease_ms);
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  if (rc == SQLITE_ROW) {
    row_to_job(st, job);
    while (sqlite3_step(st) == SQLITE_ROW) {}
  }
  unprep(q, st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) { r = dberr(q, e, "claim"); exec(q, "ROLLBACK", NULL); return r; }
  if (rc == SQLITE_DONE) { exec(q, "COMMIT", NULL); return 0; }
  if (event(q, job->id, "state", "{\"state\":\"running\",\"phase\":\"starting\"}", now) < 0) {
    r = dberr(q, e, "claim");
    exec(q, "ROLLBACK", NULL);
    kq_job_release(job);
    return r;
  }
  if ((r = exec(q, "COMMIT", e)) < 0) { kq_job_release(job); return r; }
  return 1;
}

static int step_update(kq *q, sqlite3_stmt *st, const char *what, kiln_err *e) {
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  unprep(q, st);
  return ok ? 0 : dberr(q, e, what);
}

/* Within a transaction, after chunk/join `id` of split job `parent` changed:
 * progress adds up over the chunks; the last chunk releases the join; the
 * join's success is the job's; a chunk or join that failed for good fails
 * the job (its other tasks are cancelled). final_state < 0: progress only. */
static int parent_follow(kq *q, const char *parent, kq_kind kind, int final_state, const char *result,
                         const char *err_class, const char *msg, int part, int64_t now, kiln_err *e) {
  int r = step_update(q, prep(q, "UPDATE jobs SET frames_done=(SELECT IFNULL(SUM(frames_done),0) FROM jobs"
                                 " WHERE parent=?1 AND kind=1) WHERE id=?1 AND state=1", "t", parent), "follow", e);
  if (r < 0) return r;
  if (final_state < 0) {
    kq_job p;
    if ((r = sq_get(q, parent, &p, e)) < 0) return r;
    char data[200];
    int64_t el = now - p.claimed_ms;
    /* the model's prediction, while it has not run out; then the frames' rate */
    json_error_t je;
    json_t *pl = p.plan ? json_loads(p.plan, 0, &je) : NULL;
    double pred = json_number_value(json_object_get(pl, "predicted_ms"));
    json_decref(pl);
    kq_job_release(&p);
    int64_t eta = pred > 0 && p.created_ms + (int64_t)pred > now ? p.created_ms + (int64_t)pred - now
                  : p.frames_done > 0 && p.frames_total >= p.frames_done ? el * (p.frames_total - p.frames_done) / p.frames_done
                                                                        : -1;
    snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"processing\",\"eta_ms\":%lld}",
             (long long)p.frames_done, (long long)p.frames_total, (long long)eta);
    r = step_update(q, prep(q, "UPDATE jobs SET eta_ms=?2 WHERE id=?1", "ti", parent, eta), "follow", e);
    return r == 0 && event(q, parent, "progress", data, now) < 0 ? dberr(q, e, "follow") : r;
  }
  if (final_state == KQ_SUCCEEDED && kind == KQ_CHUNK) {
    r = step_update(q, prep(q, "UPDATE jobs SET pending=pending-1 WHERE id=?", "t", parent), "follow", e);
    if (r == 0)
      r = step_update(q, prep(q, "UPDATE jobs SET run_after_ms=0 WHERE parent=?1 AND kind=2 AND state=0 AND"
                                 " (SELECT pending FROM jobs WHERE id=?1)<=0", "t", parent), "follow", e);
    return r;
  }
  /* the job ends: its cost is its tasks' */
  r = step_update(q, prep(q, "UPDATE jobs SET cold_start_ms=(SELECT IFNULL(SUM(cold_start_ms),0) FROM jobs WHERE parent=?1),"
                             " resource_ms=(SELECT IFNULL(SUM(resource_ms),0) FROM jobs WHERE parent=?1),"
                             " usd=(SELECT IFNULL(SUM(usd),0) FROM jobs WHERE parent=?1) WHERE id=?1", "t", parent),
                  "follow", e);
  if (r < 0) return r;
  if (final_state == KQ_SUCCEEDED) {            /* the join */
    r = step_update(q, prep(q, "UPDATE jobs SET state=3, result=?2, finished_ms=?3, phase='done', eta_ms=0,"
                               " frames_done=frames_total, hook_next_ms=?3, plan=json_set(IFNULL(plan,'{}'),"
                               " '$.actual_ms', ?3 - created_ms) WHERE id=?1 AND state=1", "tti", parent, result, now),
                    "follow", e);
    if (r == 0 && event(q, parent, "state", "{\"state\":\"succeeded\",\"phase\":\"done\"}", now) < 0) r = dberr(q, e, "follow");
    return r;
  }
  /* failed or cancelled for good: the job fails (or is cancelled) and its other tasks stop */
  char m[700];
  if (kind == KQ_CHUNK) snprintf(m, sizeof m, "chunk %d: %s", part, msg ? msg : "");
  else snprintf(m, sizeof m, "join: %s", msg ? msg : "");
  int st = final_state == KQ_CANCELLED ? KQ_CANCELLED : KQ_FAILED;
  r = step_update(q, prep(q, "UPDATE jobs SET state=?2, finished_ms=?3, err_class=?4, err_msg=?5, phase='done', eta_ms=0,"
                             " hook_next_ms=?3 WHERE id=?1 AND state=1", "tiitt", parent, (int64_t)st, now,
                          err_class ? err_class : "internal", m), "follow", e);
  if (r == 0)
    r = step_update(q, prep(q, "UPDATE jobs SET state=5, finished_ms=?2, err_class='cancelled', err_msg='another task of"
                               " the job failed', lease_until_ms=NULL WHERE parent=?1 AND state IN (0,1,2)", "ti", parent, now),
                    "follow", e);
  if (r == 0) {
    json_t *o = json_pack("{s:s, s:s, s:s}", "state", kq_state_name((kq_state)st), "class", err_class ? err_class : "internal",
                          "message", m);
    char *d = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (event(q, parent, "state", d, now) < 0) r = dberr(q, e, "follow");
    free(d);
  }
  return r;
}

/* Within a transaction: the job's state and worker, checked against a run;
 * ri (may be NULL) gets what it is (kind, parent, part). */
typedef struct runinfo { kq_kind kind; char parent[KQ_ID_LEN]; int part; } runinfo;
static int check_run2(kq *q, const char *id, const char *worker, runinfo *ri, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT state, IFNULL(worker,''), kind, IFNULL(parent,''), part FROM jobs WHERE id=?", "t", id);
  if (!st) return dberr(q, e, "check");
  int rc = sqlite3_step(st);
  kq_state state = KQ_QUEUED;
  char holder[64] = "";
  if (rc == SQLITE_ROW) {
    state = (kq_state)sqlite3_column_int(st, 0);
    copy_col(st, 1, holder, sizeof holder);
    if (ri) {
      ri->kind = (kq_kind)sqlite3_column_int(st, 2);
      copy_col(st, 3, ri->parent, sizeof ri->parent);
      ri->part = sqlite3_column_int(st, 4);
    }
  }
  unprep(q, st);
  if (rc == SQLITE_DONE) return kiln_fail(e, KILN_ENOENT, "no job '%s'", id);
  if (rc != SQLITE_ROW) return dberr(q, e, "check");
  if (state == KQ_CANCELLED) return kiln_fail(e, KILN_ECANCELLED, "job %s was cancelled", id);
  if (state != KQ_RUNNING || (worker && strcmp(holder, worker) != 0))
    return kiln_fail(e, KILN_EINVAL, "job %s is %s and not leased to worker '%s' (lease lost)", id, kq_state_name(state),
                     worker ? worker : "");
  return 0;
}
static int check_run(kq *q, const char *id, const char *worker, kiln_err *e) { return check_run2(q, id, worker, NULL, e); }


/* Runs body (one of the transition helpers below) in an IMMEDIATE transaction. */
#define TXN(q, e, body)                            \
  do {                                             \
    int r_ = exec(q, "BEGIN IMMEDIATE", e);        \
    if (r_ < 0) return r_;                         \
    r_ = (body);                                   \
    if (r_ < 0) { exec(q, "ROLLBACK", NULL); return r_; } \
    r_ = exec(q, "COMMIT", e);                     \
    if (r_ < 0 && !sqlite3_get_autocommit(SQ(q)->db)) exec(q, "ROLLBACK", NULL); \
    return r_;                                     \
  } while (0)

static int heartbeat_locked(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms,
                            int64_t now, kiln_err *e) {
  runinfo ri = {0};
  int r = check_run2(q, id, worker, &ri, e);
  if (r < 0) return r;
  r = step_update(q, prep(q, "UPDATE jobs SET lease_until_ms=?, frames_done=?, frames_total=?, eta_ms=?,"
                             " phase=IFNULL(?, phase) WHERE id=?", "iiiitt",
                          now + lease_ms, p->frames_done, p->frames_total, p->eta_ms, p->phase, id), "heartbeat", e);
  if (r < 0) return r;
  kq_job j;
  if ((r = sq_get(q, id, &j, e)) < 0) return r;
  kq_job_release(&j);
  char data[192];
  snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"%s\",\"eta_ms\":%lld}",
           (long long)p->frames_done, (long long)p->frames_total, j.phase, (long long)p->eta_ms);
  if (event(q, id, "progress", data, now) < 0) return dberr(q, e, "heartbeat");
  return ri.kind == KQ_CHUNK ? parent_follow(q, ri.parent, ri.kind, -1, NULL, NULL, NULL, ri.part, now, e) : 0;
}

static int sq_heartbeat(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms, int64_t now,
                 kiln_err *e) {
  TXN(q, e, heartbeat_locked(q, id, worker, p, lease_ms, now, e));
}

/* Adds one run's cost to the job's totals (usd bound as a double). */
static int account(kq *q, const char *id, const kq_cost *c, kiln_err *e) {
  if (!c) return 0;
  /* the task, and its split job when that has ended already (its sum was taken then) */
  sqlite3_stmt *st = prep(q, "UPDATE jobs SET cold_start_ms=cold_start_ms+?1, resource_ms=resource_ms+?2, usd=usd+?4"
                             " WHERE id=?3 OR (id=(SELECT parent FROM jobs WHERE id=?3) AND state>=3)", "iit",
                          c->cold_start_ms, c->resource_ms, id);
  if (st) sqlite3_bind_double(st, 4, c->usd);
  return step_update(q, st, "cost", e);
}

static int sq_account(kq *q, const char *id, const kq_cost *cost, kiln_err *e) { return account(q, id, cost, e); }

static int requeue_locked(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e) {
  int r = check_run(q, id, worker, e);
  if (r == 0)
    r = step_update(q, prep(q, "UPDATE jobs SET state=0, attempts=MAX(attempts-1,0), worker=NULL, lease_until_ms=NULL,"
                               " run_after_ms=0, phase='queued', eta_ms=-1, frames_done=0 WHERE id=? AND state=1", "t", id),
                    "requeue", e);
  if (r == 0 && event(q, id, "state", "{\"state\":\"queued\",\"phase\":\"queued\"}", now) < 0) r = dberr(q, e, "requeue");
  return r;
}

static int sq_requeue(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e) {
  TXN(q, e, requeue_locked(q, id, worker, now, e));
}

static int complete_locked(kq *q, const char *id, const char *worker, const char *result, const kq_cost *c,
                           int64_t frames, int64_t now, kiln_err *e) {
  runinfo ri = {0};
  int r = check_run2(q, id, worker, &ri, e);
  kq_cost none = {0, 0, 0};
  if (!c) c = &none;
  if (r == 0) {
    sqlite3_stmt *st = prep(q, "UPDATE jobs SET state=3, result=?2, finished_ms=?3, lease_until_ms=NULL, phase='done',"
                               " eta_ms=0, frames_total=IIF(?4 >= 0, ?4, frames_total), frames_done=IIF(?4 >= 0, ?4,"
                               " frames_total), hook_next_ms=?3, cold_start_ms=cold_start_ms+?5,"
                               " resource_ms=resource_ms+?6, usd=usd+?7 WHERE id=?1",
                            "ttiiii", id, result, now, frames, c->cold_start_ms, c->resource_ms);
    if (st) sqlite3_bind_double(st, 7, c->usd);
    r = step_update(q, st, "complete", e);
  }
  if (r == 0 && frames >= 0) {                   /* the final count, also for runs too short for a heartbeat */
    char data[160];
    snprintf(data, sizeof data, "{\"frames_done\":%lld,\"frames_total\":%lld,\"phase\":\"done\",\"eta_ms\":0}",
             (long long)frames, (long long)frames);
    if (event(q, id, "progress", data, now) < 0) r = dberr(q, e, "complete");
  }
  if (r == 0 && event(q, id, "state", "{\"state\":\"succeeded\",\"phase\":\"done\"}", now) < 0) r = dberr(q, e, "complete");
  if (r == 0 && (ri.kind == KQ_CHUNK || ri.kind == KQ_JOIN)) {
    if (ri.kind == KQ_CHUNK)                     /* the chunk's final count into the job's progress first */
      r = parent_follow(q, ri.parent, ri.kind, -1, NULL, NULL, NULL, ri.part, now, e);
    if (r == 0) r = parent_follow(q, ri.parent, ri.kind, KQ_SUCCEEDED, result, NULL, NULL, ri.part, now, e);
  } else if (r == 0) {
    r = step_update(q, prep(q, "UPDATE jobs SET plan=json_set(plan, '$.actual_ms', ?2 - created_ms) WHERE id=?1 AND"
                               " plan IS NOT NULL", "ti", id, now), "complete", e);
  }
  return r;
}

static int sq_complete(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost, int64_t frames,
                int64_t now, kiln_err *e) {
  TXN(q, e, complete_locked(q, id, worker, result, cost, frames, now, e));
}

/* Within a transaction: the failure transition for a running job. */
static int fail_locked(kq *q, const char *id, const char *err_class, const char *msg, int64_t now, int *retrying,
                       kiln_err *e) {
  kq_job j;
  int r = sq_get(q, id, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.state != KQ_RUNNING) {                    /* ended meanwhile (cancelled with its job, ...): nothing to fail */
    if (retrying) *retrying = 0;
    return 0;
  }
  /* bad_input: never again; out_of_memory: once at most (see kq_fail) */
  int max_retries = !strcmp(err_class, "out_of_memory") && j.max_retries > 1 ? 1 : j.max_retries;
  int retry = strcmp(err_class, "bad_input") != 0 && j.attempts <= max_retries;
  if (retrying) *retrying = retry;
  if (retry) {
    int64_t delay = SQ(q)->pol.retry_delay_ms;
    for (int k = 1; k < j.attempts && delay < SQ(q)->pol.retry_max_delay_ms; k++) delay *= 2;
    if (delay > SQ(q)->pol.retry_max_delay_ms) delay = SQ(q)->pol.retry_max_delay_ms;
    r = step_update(q, prep(q, "UPDATE jobs SET state=2, run_after_ms=?, err_class=?, err_msg=?, worker=NULL,"
                               " lease_until_ms=NULL, phase='queued', eta_ms=-1 WHERE id=? AND state=1",
                            "ittt", now + delay, err_class, msg, id), "fail", e);
  } else {
    r = step_update(q, prep(q, "UPDATE jobs SET state=4, finished_ms=?, err_class=?, err_msg=?, lease_until_ms=NULL,"
                               " phase='done', eta_ms=0, hook_next_ms=? WHERE id=? AND state=1", "ittit", now, err_class, msg, now, id),
                    "fail", e);
  }
  if (r == 0 && !retry && (j.kind == KQ_CHUNK || j.kind == KQ_JOIN))
    r = parent_follow(q, j.parent, j.kind, KQ_FAILED, NULL, err_class, msg, j.part, now, e);
  if (r == 0) {
    json_t *o = json_pack("{s:s, s:s, s:s}", "state", retry ? "retrying" : "failed", "class", err_class, "message", msg);
    char *d = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (event(q, id, "state", d, now) < 0) r = dberr(q, e, "fail");
    free(d);
  }
  return r;
}

static int fail_run_locked(kq *q, const char *id, const char *worker, const char *err_class, const char *msg,
                           const kq_cost *c, int64_t now, int *retrying, kiln_err *e) {
  int r = check_run(q, id, worker, e);
  if (r == 0) r = account(q, id, c, e);
  if (r == 0) r = fail_locked(q, id, err_class, msg, now, retrying, e);
  return r;
}

static int sq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, const kq_cost *cost,
            int64_t now, int *retrying, kiln_err *e) {
  TXN(q, e, fail_run_locked(q, id, worker, err_class, msg, cost, now, retrying, e));
}

/* Within a transaction: fails every running job selected by sql (one text
 * or integer argument), as err_class with msg (NULL: a worker_lost message). */
static int fail_where(kq *q, const char *sql, const char *targ, int64_t iarg, const char *err_class,
                      const char *msg, int64_t now, int *n, kiln_err *e) {
  sqlite3_stmt *st = targ ? prep(q, sql, "t", targ) : prep(q, sql, "i", iarg);
  char ids[256][KQ_ID_LEN], workers[256][64];
  int k = 0, r = 0;
  while (st && k < 256 && sqlite3_step(st) == SQLITE_ROW) {
    copy_col(st, 0, ids[k], sizeof ids[k]);
    copy_col(st, 1, workers[k], sizeof workers[k]);
    k++;
  }
  unprep(q, st);
  for (int i = 0; i < k && r == 0; i++) {
    char m[600];
    if (msg) snprintf(m, sizeof m, "%s", msg);
    else snprintf(m, sizeof m, "worker '%s' stopped sending heartbeats; its lease expired", workers[i]);
    r = fail_locked(q, ids[i], err_class, m, now, NULL, e);
  }
  *n = r == 0 ? k : 0;
  return r;
}

static int sq_reclaim(kq *q, int64_t now, int *n, kiln_err *e) {
  *n = 0;
  TXN(q, e, fail_where(q, "SELECT id, IFNULL(worker,'') FROM jobs WHERE state=1 AND lease_until_ms < ?", NULL, now,
                       "worker_lost", NULL, now, n, e));
}

static int sq_fail_worker(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n,
                   kiln_err *e) {
  *n = 0;
  TXN(q, e, fail_where(q, "SELECT id, IFNULL(worker,'') FROM jobs WHERE state=1 AND worker=?", worker, 0, err_class,
                       msg, now, n, e));
}

static int cancel_locked(kq *q, const char *id, int64_t now, kiln_err *e) {
  kq_job j;
  int r = sq_get(q, id, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.kind == KQ_CHUNK || j.kind == KQ_JOIN)
    return kiln_fail(e, KILN_EINVAL, "%s is a task of job %s: cancel that job", id, j.parent);
  if (j.state >= KQ_SUCCEEDED)
    return kiln_fail(e, KILN_EINVAL, "job %s already %s; nothing to cancel", id, kq_state_name(j.state));
  r = step_update(q, prep(q, "UPDATE jobs SET state=5, finished_ms=?, err_class='cancelled',"
                             " err_msg='cancelled by request', lease_until_ms=NULL, phase='done', eta_ms=0,"
                             " hook_next_ms=? WHERE id=?", "iit", now, now, id),
                  "cancel", e);
  if (r == 0 && j.kind == KQ_SPLIT)               /* its chunks and join stop too */
    r = step_update(q, prep(q, "UPDATE jobs SET state=5, finished_ms=?2, err_class='cancelled', err_msg='the job was"
                               " cancelled', lease_until_ms=NULL WHERE parent=?1 AND state IN (0,1,2)", "ti", id, now),
                    "cancel", e);
  if (r == 0 && j.kind == KQ_SPLIT)               /* its cost so far is its tasks' (running ones add theirs later) */
    r = step_update(q, prep(q, "UPDATE jobs SET cold_start_ms=(SELECT IFNULL(SUM(cold_start_ms),0) FROM jobs WHERE parent=?1),"
                               " resource_ms=(SELECT IFNULL(SUM(resource_ms),0) FROM jobs WHERE parent=?1),"
                               " usd=(SELECT IFNULL(SUM(usd),0) FROM jobs WHERE parent=?1) WHERE id=?1", "t", id),
                    "cancel", e);
  if (r == 0 && event(q, id, "state", "{\"state\":\"cancelled\",\"phase\":\"done\"}", now) < 0) r = dberr(q, e, "cancel");
  return r;
}

static int sq_cancel(kq *q, const char *id, int64_t now, kiln_err *e) { TXN(q, e, cancel_locked(q, id, now, e)); }

/* Calls cb for each job row of st (a SELECT of JOB_COLS) until it returns non-zero. */
static int each_job(kq *q, sqlite3_stmt *st, kq_job_cb cb, void *arg, const char *what, kiln_err *e) {
  if (!st) return dberr(q, e, what);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    kq_job j;
    row_to_job(st, &j);
    int stop = cb(arg, &j);
    kq_job_release(&j);
    if (stop) break;
  }
  unprep(q, st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : dberr(q, e, what);
}

static int sq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  /* one statement per filter combination, so that each can use its index */
  static const char *const sql[4] = {
      "SELECT " JOB_COLS " FROM jobs WHERE ?1 < 0 AND ?2 IS NULL AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " JOB_COLS " FROM jobs WHERE state=?1 AND ?2 IS NULL AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " JOB_COLS " FROM jobs WHERE ?1 < 0 AND fn=?2 AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
      "SELECT " JOB_COLS " FROM jobs WHERE state=?1 AND fn=?2 AND parent IS NULL ORDER BY created_ms DESC, rowid DESC LIMIT ?3"};
  sqlite3_stmt *st = prep(q, sql[(state >= 0) + 2 * (fn != NULL)], "iti", (int64_t)state, fn,
                          (int64_t)(limit > 0 ? limit : 100));
  return each_job(q, st, cb, arg, "list", e);
}

static int sq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT seq, kind, data, ts_ms FROM events WHERE job_id=? AND seq>? ORDER BY seq", "ti", id,
                          after_seq);
  if (!st) return dberr(q, e, "events");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (cb(arg, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
           (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3)))
      break;
  }
  unprep(q, st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : dberr(q, e, "events");
}

static int sq_runnable(kq *q, const char *fn, int64_t now, int64_t *n, int64_t *next_ms, kiln_err *e) {
  sqlite3_stmt *st = prep(q,
                          "SELECT COUNT(*) FILTER (WHERE run_after_ms<=?2),"
                          " IFNULL(MIN(run_after_ms) FILTER (WHERE run_after_ms>?2 AND run_after_ms<?3), 0)"
                          " FROM jobs WHERE fn=?1 AND state IN (0,2)", "tii", fn, now, (int64_t)KQ_HELD);
  if (!st || sqlite3_step(st) != SQLITE_ROW) { unprep(q, st); return dberr(q, e, "runnable"); }
  *n = sqlite3_column_int64(st, 0);
  if (next_ms) *next_ms = sqlite3_column_int64(st, 1);
  unprep(q, st);
  return 0;
}

static int sq_counts(kq *q, const char *fn, int64_t counts[6], kiln_err *e) {
  memset(counts, 0, 6 * sizeof counts[0]);
  sqlite3_stmt *st = prep(q, "SELECT state, COUNT(*) FROM jobs WHERE (?1 IS NULL OR fn=?1) AND parent IS NULL GROUP BY state", "t", fn);
  if (!st) return dberr(q, e, "counts");
  while (sqlite3_step(st) == SQLITE_ROW) {
    int s = sqlite3_column_int(st, 0);
    if (s >= 0 && s < 6) counts[s] = sqlite3_column_int64(st, 1);
  }
  unprep(q, st);
  return 0;
}

static int sq_recent_runs(kq *q, const char *fn, int limit, kq_run_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT finished_ms - claimed_ms, frames_total FROM jobs WHERE fn=? AND state=3 AND parent IS NULL"
                             " ORDER BY finished_ms DESC LIMIT ?", "ti", fn, (int64_t)limit);
  if (!st) return dberr(q, e, "recent runs");
  while (sqlite3_step(st) == SQLITE_ROW)
    if (cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1))) break;
  unprep(q, st);
  return 0;
}

static int sq_usage(kq *q, int64_t since_ms, kq_usage_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q,
                          "SELECT date(finished_ms/1000, 'unixepoch') AS day, fn, COUNT(*), SUM(resource_ms)/1000.0,"
                          " SUM(usd) FROM jobs WHERE state>=3 AND finished_ms>=? AND parent IS NULL GROUP BY day, fn ORDER BY day, fn",
                          "i", since_ms);
  if (!st) return dberr(q, e, "usage");
  while (sqlite3_step(st) == SQLITE_ROW)
    if (cb(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3), sqlite3_column_double(st, 4)))
      break;
  unprep(q, st);
  return 0;
}

static int sq_hooks_due(kq *q, int64_t now, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE hook_state=1 AND state>=3 AND hook_next_ms<=?"
                             " ORDER BY hook_next_ms LIMIT ?", "ii", now, (int64_t)limit);
  return each_job(q, st, cb, arg, "webhooks", e);
}

static int sq_hook_result(kq *q, const char *id, int delivered, int64_t next_ms, kiln_err *e) {
  int64_t state = delivered ? KQ_HOOK_DELIVERED : next_ms < 0 ? KQ_HOOK_FAILED : KQ_HOOK_PENDING;
  return step_update(q, prep(q, "UPDATE jobs SET hook_state=?, hook_attempts=hook_attempts+1, hook_next_ms=? WHERE id=?",
                             "iit", state, next_ms < 0 ? 0 : next_ms, id), "webhook", e);
}


static int sq_worker_put(kq *q, const kq_worker *w, kiln_err *e) {
  return step_update(q, prep(q, "INSERT OR REPLACE INTO workers(id, fn, host, pid, state, job, started_ms, ready_ms,"
                                " last_ms, tasks) VALUES(?,?,?,?,?,?,?,?,?,?)", "tttiitiiii",
                             w->id, w->fn, w->host, (int64_t)w->pid,
                             (int64_t)(w->state == KQ_W_BUSY ? KQ_W_IDLE : w->state), (const char *)NULL,
                             w->started_ms, w->ready_ms, w->last_ms, w->tasks), "worker", e);
}

static int sq_worker_list(kq *q, const char *fn, int live_only, kq_worker_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT w.id, w.fn, IFNULL(w.host,''), w.pid,"
                             " CASE WHEN w.state=1 AND j.id IS NOT NULL THEN 2 ELSE w.state END, IFNULL(j.id,''),"
                             " w.started_ms, w.ready_ms, w.last_ms, w.tasks FROM workers w"
                             " LEFT JOIN jobs j ON j.state=1 AND j.worker=w.id"
                             " WHERE (?1 IS NULL OR w.fn=?1) AND (?2=0 OR w.state<3) GROUP BY w.id ORDER BY w.started_ms",
                          "ti", fn, (int64_t)live_only);
  if (!st) return dberr(q, e, "workers");
  while (sqlite3_step(st) == SQLITE_ROW) {
    kq_worker w;
    memset(&w, 0, sizeof w);
    copy_col(st, 0, w.id, sizeof w.id);
    copy_col(st, 1, w.fn, sizeof w.fn);
    copy_col(st, 2, w.host, sizeof w.host);
    w.pid = sqlite3_column_int(st, 3);
    w.state = (kq_wstate)sqlite3_column_int(st, 4);
    copy_col(st, 5, w.job, sizeof w.job);
    w.started_ms = sqlite3_column_int64(st, 6);
    w.ready_ms = sqlite3_column_int64(st, 7);
    w.last_ms = sqlite3_column_int64(st, 8);
    w.tasks = sqlite3_column_int64(st, 9);
    if (cb(arg, &w)) break;
  }
  unprep(q, st);
  return 0;
}

static int sq_worker_known(kq *q, const char *id, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT 1 FROM workers WHERE id=?", "t", id);
  if (!st) return dberr(q, e, "workers");
  int rc = sqlite3_step(st);
  unprep(q, st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : dberr(q, e, "workers");
}

static int sq_worker_prune(kq *q, int64_t before_ms, kiln_err *e) {
  return step_update(q, prep(q, "DELETE FROM workers WHERE state=3 AND last_ms<?", "i", before_ms), "workers", e);
}

/* ---- split jobs: chunks and a join ------------------------------------ */

static int sq_unplanned(kq *q, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE planned=0 AND state=0 ORDER BY created_ms LIMIT ?",
                          "i", (int64_t)limit);
  return each_job(q, st, cb, arg, "unplanned", e);
}

static int release_locked(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e) {
  (void)now;
  return step_update(q, prep(q, "UPDATE jobs SET planned=1, run_after_ms=0, plan=?2, frames_total=?3"
                                " WHERE id=?1 AND planned=0 AND state=0", "tti", id, plan, frames), "release", e);
}

static int sq_release(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e) {
  TXN(q, e, release_locked(q, id, plan, frames, now, e));
}

static int split_locked(kq *q, const char *id, const char *const *specs, int n, const char *join_spec, const char *plan,
                        int64_t frames, int64_t now, kiln_err *e) {
  kq_job j;
  int r = sq_get(q, id, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.state != KQ_QUEUED || j.planned)
    return kiln_fail(e, KILN_EINVAL, "job %s is %s and already planned; not split", id, kq_state_name(j.state));
  r = step_update(q, prep(q, "UPDATE jobs SET state=1, kind=3, planned=1, run_after_ms=0, plan=?2, pending=?3,"
                             " frames_total=?4, frames_done=0, phase='processing', started_ms=?5, claimed_ms=?5,"
                             " attempts=1 WHERE id=?1", "ttiii", id, plan, (int64_t)n, frames, now), "split", e);
  for (int k = 0; r == 0 && k <= n; k++) {
    unsigned char raw[16];
    char cid[KQ_ID_LEN];
    if (RAND_bytes(raw, sizeof raw) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for a task id");
    kiln_hex(raw, sizeof raw, cid);
    int join = k == n;
    r = step_update(q, prep(q, "INSERT INTO jobs(id, fn, state, spec, max_retries, created_ms, run_after_ms, parent, kind,"
                               " part, planned) VALUES(?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
                            "tttiiitii", cid, join ? "join" : j.fn, join ? join_spec : specs[k], (int64_t)j.max_retries,
                            now + k, (int64_t)(join ? KQ_HELD : 0), id, (int64_t)(join ? KQ_JOIN : KQ_CHUNK), (int64_t)k),
                    "split", e);
  }
  if (r == 0) {
    char data[96];
    snprintf(data, sizeof data, "{\"state\":\"running\",\"phase\":\"processing\",\"chunks\":%d}", n);
    if (event(q, id, "state", data, now) < 0) r = dberr(q, e, "split");
  }
  return r;
}

static int sq_split(kq *q, const char *id, const char *const *chunk_specs, int n, const char *join_spec, const char *plan,
             int64_t frames, int64_t now, kiln_err *e) {
  TXN(q, e, split_locked(q, id, chunk_specs, n, join_spec, plan, frames, now, e));
}

static int sq_running(kq *q, kq_job_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE state=1 AND kind<>3 ORDER BY created_ms", "");
  return each_job(q, st, cb, arg, "running", e);
}

static int sq_children(kq *q, const char *parent, kq_job_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE parent=? ORDER BY kind, part", "t", parent);
  return each_job(q, st, cb, arg, "children", e);
}

static int sq_model_get(kq *q, const char *fn, char **json, kiln_err *e) {
  *json = NULL;
  sqlite3_stmt *st = prep(q, "SELECT data FROM models WHERE fn=?", "t", fn);
  if (!st) return dberr(q, e, "model");
  if (sqlite3_step(st) == SQLITE_ROW) *json = dup_col(st, 0);
  unprep(q, st);
  return 0;
}

static int sq_model_put(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e) {
  return step_update(q, prep(q, "INSERT OR REPLACE INTO models(fn, data, updated_ms) VALUES(?,?,?)", "tti", fn, json, now),
                     "model", e);
}

static int model_update_locked(kq *q, const char *fn, char *(*edit)(void *, const char *), void *arg, int64_t now,
                               kiln_err *e) {
  char *old = NULL;
  int r = sq_model_get(q, fn, &old, e);
  if (r < 0) return r;
  char *nu = edit(arg, old);
  free(old);
  if (nu) r = sq_model_put(q, fn, nu, now, e);
  free(nu);
  return r;
}

static int sq_model_update(kq *q, const char *fn, char *(*edit)(void *arg, const char *old), void *arg, int64_t now, kiln_err *e) {
  TXN(q, e, model_update_locked(q, fn, edit, arg, now, e));
}



/* The SQLite backend (queue_int.h). */
static const kq_backend sqlite_backend = {
    .name = "sqlite",
    .close = sq_close,
    .submit_many = sq_submit_many,
    .claim = sq_claim,
    .heartbeat = sq_heartbeat,
    .complete = sq_complete,
    .fail = sq_fail,
    .requeue = sq_requeue,
    .account = sq_account,
    .fail_worker = sq_fail_worker,
    .reclaim = sq_reclaim,
    .cancel = sq_cancel,
    .get = sq_get,
    .unplanned = sq_unplanned,
    .release = sq_release,
    .split = sq_split,
    .running = sq_running,
    .children = sq_children,
    .model_get = sq_model_get,
    .model_put = sq_model_put,
    .model_update = sq_model_update,
    .list = sq_list,
    .events = sq_events,
    .runnable = sq_runnable,
    .counts = sq_counts,
    .recent_runs = sq_recent_runs,
    .usage = sq_usage,
    .hooks_due = sq_hooks_due,
    .hook_result = sq_hook_result,
    .worker_put = sq_worker_put,
    .worker_list = sq_worker_list,
    .worker_known = sq_worker_known,
    .worker_prune = sq_worker_prune,
};

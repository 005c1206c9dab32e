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
 *                     |         |kq_claim  |   |  kq_fail(bad_input, or retries
 *                     |         |(delay    |   |  used up), kq_reclaim likewise
 *                     |         | passed)  |   +-----------------------> +--------+
 *                     |    +----------+    |                             | failed |
 *                     |    | retrying | <--+ kq_fail (other class),      +--------+
 *                     |    +----------+      kq_reclaim (lease expired:
 *                     |         |             worker_lost)
 *                     v         v
 *         kq_cancel from queued, running or retrying -> +-----------+
 *                                                       | cancelled |
 *                                                       +-----------+
 */
#include "queue/queue.h"
#include "util/fs.h"

#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kq {
  sqlite3 *db;
  kq_policy pol;
};

static const char *const state_names[] = {"queued", "running", "retrying", "succeeded", "failed", "cancelled"};
const char *kq_state_name(kq_state s) { return (unsigned)s < 6 ? state_names[s] : "unknown"; }

void kq_job_release(kq_job *j) {
  if (!j) return;
  free(j->spec);
  free(j->result);
  j->spec = j->result = NULL;
}

static int dberr(kq *q, kiln_err *e, const char *what) {
  return kiln_fail(e, KILN_EIO, "queue database: %s failed: %s", what, sqlite3_errmsg(q->db));
}

static int exec(kq *q, const char *sql, kiln_err *e) {
  char *msg = NULL;
  if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "queue database: %s", msg ? msg : "error");
    sqlite3_free(msg);
    return r;
  }
  return 0;
}

/* Prepares sql and binds the arguments described by fmt: 't' text, 'i' int64. */
static sqlite3_stmt *prep(kq *q, const char *sql, const char *fmt, ...) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
  va_list ap;
  va_start(ap, fmt);
  for (int i = 0; fmt[i]; i++) {
    if (fmt[i] == 't') {
      const char *s = va_arg(ap, const char *);
      if (s) sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, i + 1);
    } else {
      sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    }
  }
  va_end(ap);
  return st;
}

static int event(kq *q, const char *id, const char *kind, const char *data, int64_t now) {
  sqlite3_stmt *st = prep(q, "INSERT INTO events(job_id, kind, data, ts_ms) VALUES(?,?,?,?)", "ttti", id, kind, data, now);
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  sqlite3_finalize(st);
  return ok ? 0 : -1;
}

int kq_open_sqlite(kq **out, const char *path, const kq_policy *policy, kiln_err *e) {
  kq *q = calloc(1, sizeof *q);
  if (!q) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  q->pol = policy ? *policy : (kq_policy){1000, 60000};
  if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "cannot open queue database '%s': %s", path, q->db ? sqlite3_errmsg(q->db) : "out of memory");
    kq_close(q);
    return r;
  }
  sqlite3_busy_timeout(q->db, 5000);
  int r = exec(q,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, fn TEXT NOT NULL, state INTEGER NOT NULL,"
               " spec TEXT NOT NULL, result TEXT, attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL,"
               " created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER,"
               " run_after_ms INTEGER NOT NULL DEFAULT 0, lease_until_ms INTEGER, worker TEXT,"
               " frames_done INTEGER NOT NULL DEFAULT 0, frames_total INTEGER NOT NULL DEFAULT 0,"
               " err_class TEXT, err_msg TEXT);"
               "CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs(fn, state, run_after_ms, created_ms);"
               "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
               " kind TEXT NOT NULL, data TEXT, ts_ms INTEGER NOT NULL);"
               "CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);",
               e);
  if (r < 0) { kiln_err_prefix(e, "%s", path); kq_close(q); return r; }
  *out = q;
  return 0;
}

void kq_close(kq *q) {
  if (!q) return;
  sqlite3_close(q->db);
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
  " IFNULL(lease_until_ms,0), worker, frames_done, frames_total, err_class, err_msg, spec, result"

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
}

int kq_submit(kq *q, const char *fn, const char *spec, int max_retries, int64_t now, char id[KQ_ID_LEN], kiln_err *e) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return kiln_fail(e, KILN_EINTERNAL, "no randomness for a job id");
  kiln_hex(raw, sizeof raw, id);
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  sqlite3_stmt *st = prep(q, "INSERT INTO jobs(id, fn, state, spec, max_retries, created_ms) VALUES(?,?,0,?,?,?)",
                          "tttii", id, fn, spec ? spec : "{}", (int64_t)max_retries, now);
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  sqlite3_finalize(st);
  if (ok) ok = event(q, id, "state", "queued", now) == 0;
  if (!ok) { r = dberr(q, e, "submit"); exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}

int kq_get(kq *q, const char *id, kq_job *job, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT " JOB_COLS " FROM jobs WHERE id=?", "t", id);
  if (!st) return dberr(q, e, "get");
  int rc = sqlite3_step(st);
  int r = 0;
  if (rc == SQLITE_ROW) row_to_job(st, job);
  else r = rc == SQLITE_DONE ? kiln_fail(e, KILN_ENOENT, "no job '%s'", id) : dberr(q, e, "get");
  sqlite3_finalize(st);
  return r;
}

int kq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e) {
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  sqlite3_stmt *st = prep(q,
                          "SELECT id FROM jobs WHERE fn=? AND (state=0 OR (state=2 AND run_after_ms<=?))"
                          " ORDER BY created_ms, rowid LIMIT 1",
                          "ti", fn, now);
  char id[KQ_ID_LEN] = "";
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  if (rc == SQLITE_ROW) copy_col(st, 0, id, sizeof id);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) { r = dberr(q, e, "claim"); exec(q, "ROLLBACK", NULL); return r; }
  if (!id[0]) { exec(q, "COMMIT", NULL); return 0; }
  st = prep(q,
            "UPDATE jobs SET state=1, attempts=attempts+1, worker=?, lease_until_ms=?,"
            " started_ms=IFNULL(started_ms, ?) WHERE id=?",
            "tiit", worker, now + lease_ms, now, id);
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  sqlite3_finalize(st);
  if (ok) ok = event(q, id, "state", "running", now) == 0;
  if (!ok) { r = dberr(q, e, "claim"); exec(q, "ROLLBACK", NULL); return r; }
  if ((r = exec(q, "COMMIT", e)) < 0) return r;
  if ((r = kq_get(q, id, job, e)) < 0) return r;
  return 1;
}

/* Within a transaction: the job's state and worker, checked against a run. */
static int check_run(kq *q, const char *id, const char *worker, kiln_err *e) {
  kq_job j;
  int r = kq_get(q, id, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  if (j.state == KQ_CANCELLED) return kiln_fail(e, KILN_ECANCELLED, "job %s was cancelled", id);
  if (j.state != KQ_RUNNING || (worker && strcmp(j.worker, worker) != 0))
    return kiln_fail(e, KILN_EINVAL, "job %s is %s and not leased to worker '%s' (lease lost)", id,
                     kq_state_name(j.state), worker ? worker : "");
  return 0;
}

static int step_update(kq *q, sqlite3_stmt *st, const char *what, kiln_err *e) {
  int ok = st && sqlite3_step(st) == SQLITE_DONE;
  sqlite3_finalize(st);
  return ok ? 0 : dberr(q, e, what);
}

int kq_heartbeat(kq *q, const char *id, const char *worker, int64_t frames_done, int64_t frames_total,
                 int64_t lease_ms, int64_t now, kiln_err *e) {
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  if ((r = check_run(q, id, worker, e)) == 0)
    r = step_update(q, prep(q, "UPDATE jobs SET lease_until_ms=?, frames_done=?, frames_total=? WHERE id=?", "iiit",
                            now + lease_ms, frames_done, frames_total, id), "heartbeat", e);
  if (r == 0) {
    char data[64];
    snprintf(data, sizeof data, "%lld/%lld", (long long)frames_done, (long long)frames_total);
    if (event(q, id, "progress", data, now) < 0) r = dberr(q, e, "heartbeat");
  }
  if (r < 0) { exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}

int kq_complete(kq *q, const char *id, const char *worker, const char *result, int64_t now, kiln_err *e) {
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  if ((r = check_run(q, id, worker, e)) == 0)
    r = step_update(q, prep(q, "UPDATE jobs SET state=3, result=?, finished_ms=?, lease_until_ms=NULL WHERE id=?", "tit",
                            result, now, id), "complete", e);
  if (r == 0 && event(q, id, "state", "succeeded", now) < 0) r = dberr(q, e, "complete");
  if (r < 0) { exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}

/* Within a transaction: the failure transition for a running job. */
static int fail_locked(kq *q, const char *id, const char *err_class, const char *msg, int64_t now, int *retrying,
                       kiln_err *e) {
  kq_job j;
  int r = kq_get(q, id, &j, e);
  if (r < 0) return r;
  kq_job_release(&j);
  int retry = strcmp(err_class, "bad_input") != 0 && j.attempts <= j.max_retries;
  if (retrying) *retrying = retry;
  if (retry) {
    int64_t delay = q->pol.retry_delay_ms;
    for (int k = 1; k < j.attempts && delay < q->pol.retry_max_delay_ms; k++) delay *= 2;
    if (delay > q->pol.retry_max_delay_ms) delay = q->pol.retry_max_delay_ms;
    r = step_update(q, prep(q, "UPDATE jobs SET state=2, run_after_ms=?, err_class=?, err_msg=?, worker=NULL,"
                               " lease_until_ms=NULL WHERE id=?", "ittt", now + delay, err_class, msg, id), "fail", e);
  } else {
    r = step_update(q, prep(q, "UPDATE jobs SET state=4, finished_ms=?, err_class=?, err_msg=?, lease_until_ms=NULL"
                               " WHERE id=?", "ittt", now, err_class, msg, id), "fail", e);
  }
  if (r == 0 && event(q, id, "state", retry ? "retrying" : "failed", now) < 0) r = dberr(q, e, "fail");
  return r;
}

int kq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, int64_t now,
            int *retrying, kiln_err *e) {
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  if ((r = check_run(q, id, worker, e)) == 0) r = fail_locked(q, id, err_class, msg, now, retrying, e);
  if (r < 0) { exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}

int kq_reclaim(kq *q, int64_t now, int *n, kiln_err *e) {
  *n = 0;
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  sqlite3_stmt *st = prep(q, "SELECT id, IFNULL(worker,'') FROM jobs WHERE state=1 AND lease_until_ms < ?", "i", now);
  char ids[256][KQ_ID_LEN], workers[256][64];
  int k = 0;
  while (st && k < 256 && sqlite3_step(st) == SQLITE_ROW) {
    copy_col(st, 0, ids[k], sizeof ids[k]);
    copy_col(st, 1, workers[k], sizeof workers[k]);
    k++;
  }
  sqlite3_finalize(st);
  for (int i = 0; i < k && r == 0; i++) {
    char msg[160];
    snprintf(msg, sizeof msg, "worker '%s' stopped sending heartbeats; its lease expired", workers[i]);
    r = fail_locked(q, ids[i], "worker_lost", msg, now, NULL, e);
  }
  if (r < 0) { exec(q, "ROLLBACK", NULL); return r; }
  *n = k;
  return exec(q, "COMMIT", e);
}

int kq_cancel(kq *q, const char *id, int64_t now, kiln_err *e) {
  int r = exec(q, "BEGIN IMMEDIATE", e);
  if (r < 0) return r;
  kq_job j;
  if ((r = kq_get(q, id, &j, e)) == 0) {
    kq_job_release(&j);
    if (j.state >= KQ_SUCCEEDED)
      r = kiln_fail(e, KILN_EINVAL, "job %s already %s; nothing to cancel", id, kq_state_name(j.state));
    else
      r = step_update(q, prep(q, "UPDATE jobs SET state=5, finished_ms=?, err_class='cancelled',"
                                 " err_msg='cancelled by request', lease_until_ms=NULL WHERE id=?", "it", now, id),
                      "cancel", e);
  }
  if (r == 0 && event(q, id, "state", "cancelled", now) < 0) r = dberr(q, e, "cancel");
  if (r < 0) { exec(q, "ROLLBACK", NULL); return r; }
  return exec(q, "COMMIT", e);
}

int kq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q,
                          "SELECT " JOB_COLS " FROM jobs WHERE (?1 < 0 OR state=?1) AND (?2 IS NULL OR fn=?2)"
                          " ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
                          "iti", (int64_t)state, fn, (int64_t)(limit > 0 ? limit : 100));
  if (!st) return dberr(q, e, "list");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    kq_job j;
    row_to_job(st, &j);
    int stop = cb(arg, &j);
    kq_job_release(&j);
    if (stop) break;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : dberr(q, e, "list");
}

int kq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e) {
  sqlite3_stmt *st = prep(q, "SELECT seq, kind, data, ts_ms FROM events WHERE job_id=? AND seq>? ORDER BY seq", "ti", id,
                          after_seq);
  if (!st) return dberr(q, e, "events");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (cb(arg, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
           (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3)))
      break;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : dberr(q, e, "events");
}

/* sqlite.c — the embedded queue backend: jobs in one SQLite database (WAL,
 * synchronous=FULL: a submitted job survives a crash of the server or the
 * machine). One connection per kq handle; a handle is used by one thread at
 * a time, other processes may share the file (the busy handler below). It
 * only stores and fetches (queue_int.h); the state machine is machine.c's.
 * A transaction is BEGIN IMMEDIATE: SQLite has one writer at a time, so a
 * transition never meets a conflict it would have to run again for.
 * Watchers (kq_watch) learn of other processes' commits from inotify on the
 * database's folder: every commit writes the -wal file. */
#include "queue/queue_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

/* Prepared statements are kept per connection, keyed by their (expanded)
 * SQL text's address, and reset after use. */
#define KQ_STMT_CACHE 96
typedef struct sq {
  struct kq base;               /* first: a kq * is a sq * */
  sqlite3 *db;
  struct { const char *sql; sqlite3_stmt *st; } cache[KQ_STMT_CACHE];
  int ncache;
  char path[PATH_MAX];
  int ino;                      /* inotify descriptor of kq_watch, -1 until then */
} sq;

static inline sq *SQ(kq *q) { return (sq *)q; }

static int dberr(kq *q, kiln_err *e) {
  int code = sqlite3_errcode(SQ(q)->db);
  return kiln_fail(e, code == SQLITE_FULL ? KILN_ENOSPACE : KILN_EIO, "queue database: %s", sqlite3_errmsg(SQ(q)->db));
}

static int exec_script(kq *q, const char *sql, kiln_err *e) {
  char *msg = NULL;
  if (sqlite3_exec(SQ(q)->db, kq_sql(sql), NULL, NULL, &msg) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "queue database: %s", msg ? msg : "error");
    sqlite3_free(msg);
    return r;
  }
  return 0;
}

/* The cached statement for sql (a new one when it is not cached, or an
 * uncached one while the cached one is in use), reset. */
static sqlite3_stmt *prep(kq *q, const char *sql) {
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

/* A cursor is the statement itself. */
static int sq_run(kq *q, const char *sql, const kq_arg *a, int n, kq_rows **rows, kiln_err *e) {
  sqlite3_stmt *st = prep(q, sql);
  if (!st) return dberr(q, e);
  for (int i = 0; i < n; i++) {
    if (a[i].type == 't') {
      if (a[i].t) sqlite3_bind_text(st, i + 1, a[i].t, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, i + 1);
    } else if (a[i].type == 'd') {
      sqlite3_bind_double(st, i + 1, a[i].d);
    } else {
      sqlite3_bind_int64(st, i + 1, a[i].i);
    }
  }
  if (rows) { *rows = (kq_rows *)st; return 0; }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
  int r = rc == SQLITE_DONE ? sqlite3_changes(SQ(q)->db) : dberr(q, e);
  unprep(q, st);
  return r;
}

static int sq_next(kq_rows *r) {
  int rc = sqlite3_step((sqlite3_stmt *)r);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
static const char *sq_text(kq_rows *r, int i) { return (const char *)sqlite3_column_text((sqlite3_stmt *)r, i); }
static int64_t sq_int64(kq_rows *r, int i) { return sqlite3_column_int64((sqlite3_stmt *)r, i); }
static double sq_real(kq_rows *r, int i) { return sqlite3_column_double((sqlite3_stmt *)r, i); }
static void sq_done(kq *q, kq_rows *r) { unprep(q, (sqlite3_stmt *)r); }

/* One statement without results (BEGIN, COMMIT, ...), from the cache. */
static int exec1(kq *q, const char *sql, kiln_err *e) {
  return sq_run(q, sql, NULL, 0, NULL, e) < 0 ? KILN_EIO : 0;
}

static int sq_begin(kq *q, kiln_err *e) { return exec1(q, "BEGIN IMMEDIATE", e); }
static int sq_commit(kq *q, kiln_err *e) { return exec1(q, "COMMIT", e); }
static void sq_rollback(kq *q) {
  if (!sqlite3_get_autocommit(SQ(q)->db)) exec1(q, "ROLLBACK", NULL);
}
static int sq_retryable(kq *q) { (void)q; return 0; }

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

/* The WAL's checkpoint. SQLite's own runs inside every commit once the WAL
 * holds 1000 pages, and under steady load the WAL never starts over (some
 * reader is always on it), so from then on every commit copied its pages
 * into the database and synced both files: the pread/pwrite storm and two
 * fsyncs per task that held a 2,000-job burst to ~450 jobs/s drained.
 * Here a commit checkpoints once per 1,000 pages the WAL grew since this
 * process's last checkpoint, PASSIVE (it never waits for readers: a commit
 * is never held up by one); the WAL starts over at the first commit after
 * a checkpoint that found no reader behind it, as with SQLite's own. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  (void)arg;
  /* the WAL's length at this process's last checkpoint: one for all the files a process opens (in practice
   * one queue; with more, a file may checkpoint early or late, but it does checkpoint) */
  static _Atomic int last;
  int was = atomic_load(&last), from = frames < was ? 0 : was;   /* shorter: it started over since */
  if (frames - from < 1000 || !atomic_compare_exchange_strong(&last, &was, frames)) return SQLITE_OK;
  sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  return SQLITE_OK;
}

/* Blocks until a process commits to this database (its -wal file, or the
 * file itself, is written) or timeout_ms passes. */
static int sq_watch(kq *q, int timeout_ms, kq_change_cb cb, void *arg, kiln_err *e) {
  sq *h = SQ(q);
  const char *slash = strrchr(h->path, '/');
  const char *base = slash ? slash + 1 : h->path;
  if (h->ino < 0) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - h->path) : 1, slash ? h->path : ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    h->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h->ino < 0 || inotify_add_watch(h->ino, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0) {
      int r = kiln_fail(e, KILN_EIO, "cannot watch the queue database's folder '%s': %s", dir, strerror(errno));
      if (h->ino >= 0) close(h->ino);
      h->ino = -1;
      return r;
    }
  }
  struct pollfd p = {h->ino, POLLIN, 0};
  int n = poll(&p, 1, timeout_ms);
  if (n <= 0) return n < 0 && errno != EINTR ? kiln_fail(e, KILN_EIO, "watching the queue: %s", strerror(errno)) : 0;
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  int changed = 0;
  ssize_t len;
  size_t bl = strlen(base);
  while ((len = read(h->ino, buf, sizeof buf)) > 0)
    for (char *ptr = buf; ptr < buf + len;) {
      const struct inotify_event *ev = (const struct inotify_event *)ptr;
      if (ev->len && !strncmp(ev->name, base, bl) && strcmp(ev->name + bl, "-shm")) changed = 1;   /* the file or its -wal */
      ptr += sizeof *ev + ev->len;
    }
  if (changed) cb(arg, NULL);
  return 0;
}

static const kq_backend sqlite_backend;
static void sq_close(kq *q);

/* The tables (version 4). Version 3 lacked the jobs_ready index (claims
 * walk only runnable rows, oldest first: no sort, however deep the queue),
 * version 2 the chunk columns; older ones are refused. */
static const char schema[] =
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
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(fn, created_ms) WHERE state IN ({queued},{retrying});"
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_fn ON jobs(fn, created_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_done ON jobs(fn, state, finished_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_ms) WHERE state>={succeeded};"
    "CREATE INDEX IF NOT EXISTS jobs_hooks ON jobs(hook_state, hook_next_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_worker ON jobs(worker) WHERE state={running};"
    "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent) WHERE parent IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS jobs_unplanned ON jobs(planned) WHERE planned=0;"
    "CREATE INDEX IF NOT EXISTS jobs_top ON jobs(created_ms) WHERE parent IS NULL;"
    "CREATE TABLE IF NOT EXISTS models(fn TEXT PRIMARY KEY, data TEXT NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, data TEXT, ts_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);"
    "CREATE TABLE IF NOT EXISTS workers(id TEXT PRIMARY KEY, fn TEXT NOT NULL, host TEXT, pid INTEGER,"
    " state INTEGER NOT NULL, job TEXT, started_ms INTEGER, ready_ms INTEGER, last_ms INTEGER,"
    " tasks INTEGER NOT NULL DEFAULT 0);";

static int user_version(kq *q) {
  sqlite3_stmt *st = prep(q, "PRAGMA user_version");
  int v = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  unprep(q, st);
  return v;
}

int kq_open_sqlite(kq **out, const char *path, const kq_policy *policy, kiln_err *e) {
  sq *h = calloc(1, sizeof *h);
  if (!h) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  kq *q = &h->base;
  q->be = &sqlite_backend;
  q->pol = policy ? *policy : (kq_policy){1000, 60000, 0};
  h->ino = -1;
  snprintf(h->path, sizeof h->path, "%s", path);
  if (sqlite3_open_v2(path, &SQ(q)->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
    int r = kiln_fail(e, KILN_EIO, "cannot open queue database '%s': %s", path, SQ(q)->db ? sqlite3_errmsg(SQ(q)->db) : "out of memory");
    sq_close(q);
    return r;
  }
  sqlite3_busy_handler(SQ(q)->db, busy_wait, q);
  sqlite3_wal_hook(SQ(q)->db, wal_hook, NULL);      /* instead of SQLite's automatic checkpoint */
  int r = exec_script(q, q->pol.relaxed ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", e);
  int have = r == 0 ? user_version(q) : -1;
  if (r == 0 && have == 4) { *out = q; return 0; }   /* made before: WAL mode and tables persist */
  if (r == 0 && have == 2)                             /* version 2 -> 3: chunked jobs and cost models */
    r = exec_script(q,
                    "BEGIN IMMEDIATE;"
                    "ALTER TABLE jobs ADD COLUMN parent TEXT;"
                    "ALTER TABLE jobs ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN part INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;"
                    "ALTER TABLE jobs ADD COLUMN plan TEXT;"
                    "ALTER TABLE jobs ADD COLUMN planned INTEGER NOT NULL DEFAULT 1;"
                    "PRAGMA user_version=3; COMMIT;", e);
  if (r == 0) r = exec_script(q, schema, e);
  if (r == 0) {
    int v = user_version(q);
    if (v == 0 || v == 3) r = exec_script(q, "PRAGMA user_version=4", e);   /* 3 -> 4: the jobs_ready index */
    else if (v != 4)
      r = kiln_fail(e, KILN_EIO, "queue database has schema version %d, this kiln needs 4; move it aside to start afresh", v);
  }
  if (r < 0) { kiln_err_prefix(e, "%s", path); sq_close(q); return r; }
  *out = q;
  return 0;
}

static void sq_close(kq *q) {
  if (!q) return;
  for (int i = 0; i < SQ(q)->ncache; i++) sqlite3_finalize(SQ(q)->cache[i].st);
  sqlite3_close(SQ(q)->db);
  if (SQ(q)->ino >= 0) close(SQ(q)->ino);
  free(q);
}

static const kq_backend sqlite_backend = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .retryable = sq_retryable,
    .run = sq_run,
    .next = sq_next,
    .text = sq_text,
    .int64 = sq_int64,
    .real = sq_real,
    .done = sq_done,
    .watch = sq_watch,
    /* the index hint: without statistics SQLite would walk jobs_state */
    .sql_claim = KQ_CLAIM_SQL("INDEXED BY jobs_ready", ""),
    .sql_usage = "SELECT date(finished_ms/1000, 'unixepoch') AS day, fn, COUNT(*), SUM(resource_ms)/1000.0, SUM(usd)"
                 " FROM jobs WHERE state>={succeeded} AND finished_ms>=?1 AND parent IS NULL GROUP BY day, fn"
                 " ORDER BY day, fn",
};

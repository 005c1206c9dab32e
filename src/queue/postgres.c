/* postgres.c — the queue backend for many machines: the same tables as
 * sqlite.c in a PostgreSQL database (libpq), so that several `kiln serve`
 * replicas and `kiln agent` hosts share one queue. One connection per kq
 * handle (a process keeps a pool of handles: the server's kh_q_get); every
 * statement is prepared once per connection. Transactions are READ
 * COMMITTED: a transition locks the rows it reads (machine.c's FOR UPDATE
 * markers), claims skip rows another claim holds (FOR UPDATE SKIP LOCKED),
 * and a transaction that meets a deadlock or a serialization failure is run
 * again (retryable). Appending an event sends NOTIFY kiln_jobs with
 * the job's id (a trigger on events); kq_watch LISTENs on its own handle. The schema's version
 * is kept in the database (kiln_schema), migrations run under an advisory
 * lock so that replicas starting together do not race. A connection that
 * drops is reset on the next statement outside a transaction; a
 * transaction that lost its connection before COMMIT was sent runs again,
 * one that lost it during COMMIT is reported (its outcome is unknown). */
#include "queue/queue_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_STMTS 128
#define PG_SCHEMA 1

typedef struct pg {
  struct kq base;               /* first: a kq * is a pg * */
  PGconn *c;
  struct { const char *sql; char name[12]; } stmts[PG_STMTS];
  int nstmts, serial;
  char sqlstate[6];             /* of the last failure; "" when the connection failed */
  int lost;                     /* the last failure was a lost connection */
  int committing;               /* COMMIT was sent when it failed */
  int listening;
  int in_txn;                   /* between BEGIN and COMMIT/ROLLBACK */
} pg;

struct kq_rows {
  PGresult *res;
  int row, nrows;
};

static inline pg *PG(kq *q) { return (pg *)q; }

/* libpq's message, on one line, without a password (libpq never puts one in). */
static int pgfail(kq *q, kiln_err *e, const PGresult *res, const char *what) {
  pg *h = PG(q);
  const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  snprintf(h->sqlstate, sizeof h->sqlstate, "%s", st ? st : "");
  h->lost = PQstatus(h->c) == CONNECTION_BAD || (st && (!strncmp(st, "08", 2) || !strcmp(st, "57P01")));
  char msg[400];
  snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(h->c));
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  size_t n = strlen(msg);
  while (n && msg[n - 1] == ' ') msg[--n] = 0;
  return kiln_fail(e, h->lost ? KILN_EUNAVAIL : KILN_EIO, "queue database (PostgreSQL): %s%s%s", what ? what : "",
                   what ? ": " : "", msg[0] ? msg : "the server closed the connection");
}

/* Rewrites machine.c's SQL for PostgreSQL: ?N -> $N (a bare ? takes the
 * next number), the comment markers FOR UPDATE [SKIP LOCKED] -> row locks. Quoted text is
 * copied as it is. */
static char *rewrite(const char *sql) {
  size_t n = strlen(sql);
  char *o = malloc(2 * n + 16), *w = o;
  if (!o) return NULL;
  int maxn = 0, quoted = 0;
  for (const char *p = sql; *p;) {
    if (*p == '\'') { quoted = !quoted; *w++ = *p++; continue; }
    if (!quoted && *p == '?') {
      p++;
      int k = 0;
      if (*p >= '0' && *p <= '9') while (*p >= '0' && *p <= '9') k = 10 * k + (*p++ - '0');
      else k = maxn + 1;
      if (k > maxn) maxn = k;
      w += sprintf(w, "$%d", k);
      continue;
    }
    if (!quoted && !strncmp(p, "/*FOR UPDATE SKIP LOCKED*/", 26)) {
      memcpy(w, "FOR UPDATE SKIP LOCKED", 22);
      w += 22;
      p += 26;
      continue;
    }
    if (!quoted && !strncmp(p, "/*FOR UPDATE*/", 14)) {
      memcpy(w, "FOR UPDATE", 10);
      w += 10;
      p += 14;
      continue;
    }
    *w++ = *p++;
  }
  *w = 0;
  return o;
}

static void forget_statements(pg *h) { h->nstmts = 0; }

/* Outside a transaction: a connection that dropped is made again (its
 * prepared statements are gone with it). */
static int ensure_conn(kq *q, kiln_err *e) {
  pg *h = PG(q);
  if (PQstatus(h->c) == CONNECTION_OK) return 0;
  PQreset(h->c);
  forget_statements(h);
  h->listening = 0;
  if (PQstatus(h->c) != CONNECTION_OK) {
    h->lost = 1;
    h->sqlstate[0] = 0;
    return pgfail(q, e, NULL, "reconnecting");
  }
  return 0;
}

/* The prepared statement's name for sql (preparing it on first use). */
static const char *statement(kq *q, const char *sql, const kq_arg *a, int n, kiln_err *e) {
  pg *h = PG(q);
  for (int i = 0; i < h->nstmts; i++)
    if (h->stmts[i].sql == sql) return h->stmts[i].name;
  if (h->nstmts == PG_STMTS) {                     /* more statements than kiln has: start over */
    PGresult *d = PQexec(h->c, "DEALLOCATE ALL");
    PQclear(d);
    h->nstmts = 0;
  }
  char *text = rewrite(sql);
  if (!text) { kiln_fail(e, KILN_ENOMEM, "out of memory"); return NULL; }
  Oid types[KQ_MAX_ARGS];
  for (int i = 0; i < n && i < KQ_MAX_ARGS; i++) types[i] = a[i].type == 't' ? 25 : a[i].type == 'd' ? 701 : 20;
  int slot = h->nstmts;
  snprintf(h->stmts[slot].name, sizeof h->stmts[slot].name, "k%d", ++h->serial);
  PGresult *res = PQprepare(h->c, h->stmts[slot].name, text, n, types);
  free(text);
  int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok) pgfail(q, e, res, "preparing a statement");
  PQclear(res);
  if (!ok) return NULL;
  h->stmts[slot].sql = sql;
  h->nstmts++;
  return h->stmts[slot].name;
}

static int run_once(kq *q, const char *sql, const kq_arg *a, int n, kq_rows **rows, kiln_err *e);

/* A statement outside a transaction that found its connection gone (the
 * server restarted since this handle's last use) runs again once on a new
 * one; inside a transaction the loss is the transaction's (pg_retryable). */
static int pg_run(kq *q, const char *sql, const kq_arg *a, int n, kq_rows **rows, kiln_err *e) {
  int r = run_once(q, sql, a, n, rows, e);
  if (r < 0 && PG(q)->lost && !PG(q)->in_txn) r = run_once(q, sql, a, n, rows, e);
  return r;
}

static int run_once(kq *q, const char *sql, const kq_arg *a, int n, kq_rows **rows, kiln_err *e) {
  pg *h = PG(q);
  if (!h->in_txn) {                               /* a dropped connection is made again only between transactions */
    int r = ensure_conn(q, e);
    if (r < 0) return r;
  }
  const char *name = statement(q, sql, a, n, e);
  if (!name) return e && e->code < 0 ? e->code : KILN_EIO;
  char nums[KQ_MAX_ARGS][32];
  const char *vals[KQ_MAX_ARGS];
  if (n > KQ_MAX_ARGS) return kiln_fail(e, KILN_EINVAL, "a statement with %d arguments (at most %d)", n, KQ_MAX_ARGS);
  for (int i = 0; i < n; i++) {
    if (a[i].type == 't') vals[i] = a[i].t;
    else if (a[i].type == 'd') { snprintf(nums[i], sizeof nums[i], "%.17g", a[i].d); vals[i] = nums[i]; }
    else { snprintf(nums[i], sizeof nums[i], "%lld", (long long)a[i].i); vals[i] = nums[i]; }
  }
  PGresult *res = PQexecPrepared(h->c, name, n, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    int r = pgfail(q, e, res, NULL);
    PQclear(res);
    return r;
  }
  if (rows) {
    kq_rows *c = malloc(sizeof *c);
    if (!c) { PQclear(res); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
    c->res = res;
    c->row = -1;
    c->nrows = PQntuples(res);
    *rows = c;
    return 0;
  }
  const char *t = PQcmdTuples(res);
  int changed = t && *t ? atoi(t) : 0;
  PQclear(res);
  return changed;
}

static int pg_next(kq_rows *r) { return ++r->row < r->nrows ? 1 : 0; }
static const char *pg_text(kq_rows *r, int i) {
  return PQgetisnull(r->res, r->row, i) ? NULL : PQgetvalue(r->res, r->row, i);
}
static int64_t pgq_int64(kq_rows *r, int i) {
  const char *t = pg_text(r, i);
  return t ? strtoll(t, NULL, 10) : 0;
}
static double pg_real(kq_rows *r, int i) {
  const char *t = pg_text(r, i);
  return t ? strtod(t, NULL) : 0;
}
static void pg_done(kq *q, kq_rows *r) {
  (void)q;
  if (!r) return;
  PQclear(r->res);
  free(r);
}

static int simple(kq *q, const char *sql, kiln_err *e) {
  PGresult *res = PQexec(PG(q)->c, sql);
  int r = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : pgfail(q, e, res, NULL);
  PQclear(res);
  return r;
}

static int pg_begin(kq *q, kiln_err *e) {
  pg *h = PG(q);
  h->committing = 0;
  int r = ensure_conn(q, e);
  if (r == 0) r = simple(q, "BEGIN", e);
  h->in_txn = r == 0;
  return r;
}

static int pg_commit(kq *q, kiln_err *e) {
  PG(q)->committing = 1;
  int r = simple(q, "COMMIT", e);
  PG(q)->in_txn = 0;
  if (r < 0 && PG(q)->lost)
    r = kiln_fail(e, KILN_EUNAVAIL, "queue database (PostgreSQL): the connection was lost while committing; the change may or"
                           " may not have been made");
  if (r == 0) PG(q)->committing = 0;
  return r;
}

static void pg_rollback(kq *q) {
  PG(q)->in_txn = 0;
  if (PQstatus(PG(q)->c) == CONNECTION_OK && PQtransactionStatus(PG(q)->c) != PQTRANS_IDLE) simple(q, "ROLLBACK", NULL);
}

/* Deadlocks and serialization failures run again at once; a lost
 * connection (a restart) after a pause, unless COMMIT had been sent. */
static int pg_retryable(kq *q) {
  pg *h = PG(q);
  if (!strcmp(h->sqlstate, "40001") || !strcmp(h->sqlstate, "40P01") || !strcmp(h->sqlstate, "55P03")) return 1;
  if (h->lost && !h->committing) {
    struct timespec ts = {0, 250 * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
  }
  return 0;
}

static int pg_watch(kq *q, int timeout_ms, kq_change_cb cb, void *arg, kiln_err *e) {
  pg *h = PG(q);
  if (PQstatus(h->c) != CONNECTION_OK || !h->listening) {
    int r = ensure_conn(q, e);
    if (r == 0) r = simple(q, "LISTEN kiln_jobs", e);
    if (r < 0) {
      struct timespec ts = {0, 200 * 1000000L};   /* the server is away: do not spin */
      nanosleep(&ts, NULL);
      return r;
    }
    if (h->listening == 0) cb(arg, NULL);         /* changes made while not listening: everyone looks again */
    h->listening = 1;
  }
  PGnotify *nt;
  int got = 0;
  while ((nt = PQnotifies(h->c))) { cb(arg, nt->extra); PQfreemem(nt); got = 1; }
  if (got) return 0;
  struct pollfd p = {PQsocket(h->c), POLLIN, 0};
  int n = poll(&p, 1, timeout_ms);
  if (n < 0 && errno != EINTR) return kiln_fail(e, KILN_EIO, "watching the queue: %s", strerror(errno));
  if (n > 0 && !PQconsumeInput(h->c)) { h->listening = 0; return pgfail(q, e, NULL, "listening"); }
  while ((nt = PQnotifies(h->c))) { cb(arg, nt->extra); PQfreemem(nt); }
  return 0;
}

/* Version 1: the tables of sqlite.c's version 3, in PostgreSQL's types;
 * rowid keeps the insertion order that SQLite's rowid gives. */
static const char schema_v1[] =
    "CREATE TABLE jobs(id TEXT PRIMARY KEY, rowid BIGSERIAL, fn TEXT NOT NULL, state BIGINT NOT NULL,"
    " spec TEXT NOT NULL, result TEXT, attempts BIGINT NOT NULL DEFAULT 0, max_retries BIGINT NOT NULL,"
    " created_ms BIGINT NOT NULL, started_ms BIGINT, finished_ms BIGINT,"
    " run_after_ms BIGINT NOT NULL DEFAULT 0, lease_until_ms BIGINT, worker TEXT,"
    " frames_done BIGINT NOT NULL DEFAULT 0, frames_total BIGINT NOT NULL DEFAULT 0,"
    " err_class TEXT, err_msg TEXT, claimed_ms BIGINT, phase TEXT NOT NULL DEFAULT 'queued',"
    " eta_ms BIGINT NOT NULL DEFAULT -1, cold_start_ms BIGINT NOT NULL DEFAULT 0,"
    " resource_ms BIGINT NOT NULL DEFAULT 0, usd DOUBLE PRECISION NOT NULL DEFAULT 0, webhook TEXT,"
    " hook_state BIGINT NOT NULL DEFAULT 0, hook_attempts BIGINT NOT NULL DEFAULT 0,"
    " hook_next_ms BIGINT NOT NULL DEFAULT 0, parent TEXT, kind BIGINT NOT NULL DEFAULT 0,"
    " part BIGINT NOT NULL DEFAULT 0, pending BIGINT NOT NULL DEFAULT 0, plan TEXT,"
    " planned BIGINT NOT NULL DEFAULT 1);"
    "CREATE INDEX jobs_runnable ON jobs(fn, state, run_after_ms, created_ms);"
    "CREATE INDEX jobs_ready ON jobs(fn, created_ms, rowid) WHERE state IN ({queued},{retrying});"
    "CREATE INDEX jobs_created ON jobs(created_ms);"
    "CREATE INDEX jobs_state ON jobs(state, created_ms);"
    "CREATE INDEX jobs_fn ON jobs(fn, created_ms);"
    "CREATE INDEX jobs_done ON jobs(fn, state, finished_ms);"
    "CREATE INDEX jobs_finished ON jobs(finished_ms) WHERE state>={succeeded};"
    "CREATE INDEX jobs_hooks ON jobs(hook_state, hook_next_ms);"
    "CREATE INDEX jobs_worker ON jobs(worker) WHERE state={running};"
    "CREATE INDEX jobs_parent ON jobs(parent) WHERE parent IS NOT NULL;"
    "CREATE INDEX jobs_unplanned ON jobs(planned) WHERE planned=0;"
    "CREATE INDEX jobs_top ON jobs(created_ms) WHERE parent IS NULL;"
    "CREATE TABLE models(fn TEXT PRIMARY KEY, data TEXT NOT NULL, updated_ms BIGINT NOT NULL);"
    "CREATE TABLE events(seq BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT,"
    " ts_ms BIGINT NOT NULL);"
    "CREATE INDEX events_job ON events(job_id, seq);"
    /* every event tells the listeners (kq_watch) once its transaction commits, from the server itself: no round trip */
    "CREATE FUNCTION kiln_event_notify() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN PERFORM pg_notify('kiln_jobs', NEW.job_id); RETURN NULL; END$$;"
    "CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION kiln_event_notify();"
    "CREATE TABLE workers(id TEXT PRIMARY KEY, fn TEXT NOT NULL, host TEXT, pid BIGINT, state BIGINT NOT NULL,"
    " job TEXT, started_ms BIGINT, ready_ms BIGINT, last_ms BIGINT, tasks BIGINT NOT NULL DEFAULT 0);";

/* Brings the schema to PG_SCHEMA under an advisory lock (several replicas
 * may start at once), in one transaction. */
static int migrate(kq *q, kiln_err *e) {
  int r = simple(q, "BEGIN", e);
  if (r == 0) r = simple(q, "SELECT pg_advisory_xact_lock(7306244171)", e);
  if (r == 0) r = simple(q, "CREATE TABLE IF NOT EXISTS kiln_schema(version BIGINT NOT NULL)", e);
  int have = -1;
  if (r == 0) {
    PGresult *res = PQexec(PG(q)->c, "SELECT COALESCE(MAX(version), 0) FROM kiln_schema");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) have = atoi(PQgetvalue(res, 0, 0));
    else r = pgfail(q, e, res, "reading the schema version");
    PQclear(res);
  }
  if (r == 0 && have > PG_SCHEMA)
    r = kiln_fail(e, KILN_EIO, "queue database has schema version %d, this kiln knows up to %d: upgrade kiln", have,
                  PG_SCHEMA);
  if (r == 0 && have < 1) {
    r = simple(q, kq_sql(schema_v1), e);
    if (r == 0) r = simple(q, "INSERT INTO kiln_schema(version) VALUES(1)", e);
  }
  if (r == 0) return simple(q, "COMMIT", e);
  pg_rollback(q);
  return r;
}

static const kq_backend postgres_backend;

static void pg_close(kq *q) {
  if (!q) return;
  PQfinish(PG(q)->c);
  free(q);
}

int kq_open_postgres(kq **out, const char *conninfo, const kq_policy *policy, kiln_err *e) {
  *out = NULL;
  pg *h = calloc(1, sizeof *h);
  if (!h) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  kq *q = &h->base;
  q->be = &postgres_backend;
  q->pol = policy ? *policy : (kq_policy){1000, 60000, 0};
  /* defaults a URL may override: a database host that vanishes must not hang a call (keepalives, a
   * bound on unacknowledged sends), nor a connect */
  const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                              "keepalives_count", "tcp_user_timeout", "application_name", "dbname", NULL};
  const char *const vals[] = {"10", "1", "10", "5", "3", "20000", "kiln", conninfo, NULL};
  h->c = PQconnectdbParams(keys, vals, 1);
  if (!h->c || PQstatus(h->c) != CONNECTION_OK) {
    int unreachable = h->c != NULL;
    char msg[300];
    snprintf(msg, sizeof msg, "%s", h->c ? PQerrorMessage(h->c) : "out of memory");
    for (char *p = msg; *p; p++)
      if (*p == '\n') *p = ' ';
    pg_close(q);
    /* the URL may hold a password: only its host part is named (libpq's message names host and port) */
    return kiln_fail(e, unreachable ? KILN_EUNAVAIL : KILN_ENOMEM, "cannot connect to the queue database (PostgreSQL): %s", msg);
  }
  /* a client that died inside a transaction (power, network) holds row locks until the server notices:
   * sessions idle in a transaction are ended after 10 s (kiln's take milliseconds), dead peers are found
   * by keepalives after about 25 s, and a lock wait gives up after 20 s (the transaction runs again) */
  int r = simple(q, "SET client_min_messages TO warning; SET idle_in_transaction_session_timeout = '10s';"
                    " SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3;"
                    " SET lock_timeout = '20s'", e);
  /* workers' commits: a lost commit only makes a task run again (queue.h's kq_policy) */
  if (r == 0 && q->pol.relaxed) r = simple(q, "SET synchronous_commit TO off", e);
  if (r == 0) r = migrate(q, e);
  if (r < 0) { pg_close(q); return r; }
  *out = q;
  return 0;
}

static const kq_backend postgres_backend = {
    .name = "postgres",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .retryable = pg_retryable,
    .run = pg_run,
    .next = pg_next,
    .text = pg_text,
    .int64 = pgq_int64,
    .real = pg_real,
    .done = pg_done,
    .watch = pg_watch,
    .sql_claim = KQ_CLAIM_SQL("", "FOR UPDATE SKIP LOCKED"),
    .sql_usage = "SELECT to_char(to_timestamp(finished_ms/1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, fn, COUNT(*),"
                 " SUM(resource_ms)/1000.0, SUM(usd) FROM jobs WHERE state>={succeeded} AND finished_ms>=?1"
                 " AND parent IS NULL GROUP BY day, fn ORDER BY day, fn",
};

/* queue_int.h — the narrow backend table under the queue's state machine
 * (machine.c), like SQLite's sqlite3_vfs: a backend only stores and
 * fetches. It runs statements of shared SQL, begins and ends
 * transactions, says which failures are worth running a transaction
 * again for, tells other processes that a job changed, and waits for such
 * news. Every rule of the job state machine (transitions, retries, the
 * bad_input rule, split/join bookkeeping, cost roll-up, event payloads)
 * lives in machine.c, once.
 *
 * The SQL machine.c hands a backend is already expanded: {queued},
 * {chunk}, ... became their numbers (queue.h's X-macro lists). It is SQL
 * that both SQLite and PostgreSQL accept, with ?N placeholders; a backend
 * may rewrite it for its dialect (postgres.c: ?N -> $N, the comment
 * FOR-UPDATE markers -> row locks). The few statements whose dialects
 * differ come from the backend table (sql_claim, sql_usage). The returned
 * text of an expanded statement has a stable address: backends cache
 * prepared statements by it. A handle starts with struct kq. */
#ifndef KILN_QUEUE_INT_H
#define KILN_QUEUE_INT_H

#include "queue/queue.h"

/* The most arguments one statement binds (a batch of submissions: machine.c). */
#define KQ_MAX_ARGS 80

/* One bound argument: 't' text (NULL: SQL NULL), 'i' int64, 'd' double. */
typedef struct kq_arg {
  char type;
  const char *t;
  int64_t i;
  double d;
} kq_arg;

typedef struct kq_rows kq_rows;   /* a backend's cursor */

typedef struct kq_backend {
  const char *name;
  void (*close)(kq *q);
  int (*begin)(kq *q, kiln_err *e);                 /* a write transaction (SQLite: IMMEDIATE) */
  int (*commit)(kq *q, kiln_err *e);
  void (*rollback)(kq *q);
  /* 1 when the last failure was a deadlock or a serialization failure:
   * the whole transaction may run again */
  int (*retryable)(kq *q);
  /* Runs one statement. rows NULL: returns the rows it changed (>= 0).
   * rows given: *rows is a cursor over its results, read with next/text/
   * int64/real and given back with done. < 0 with e set on failure. */
  int (*run)(kq *q, const char *sql, const kq_arg *args, int n, kq_rows **rows, kiln_err *e);
  int (*next)(kq_rows *r);                          /* 1 a row, 0 no more, < 0 failed */
  const char *(*text)(kq_rows *r, int col);         /* NULL for SQL NULL; valid until next/done */
  int64_t (*int64)(kq_rows *r, int col);
  double (*real)(kq_rows *r, int col);
  void (*done)(kq *q, kq_rows *r);
  /* Blocks until another connection commits a change (an event: the
   * backend announces events itself, a trigger's NOTIFY on PostgreSQL, the
   * WAL file's inotify on SQLite) or timeout_ms passes. */
  int (*watch)(kq *q, int timeout_ms, kq_change_cb cb, void *arg, kiln_err *e);
  /* the dialect's statements, written with the same {names} and ?N:
   * claim: ?1 fn, ?2 now, ?3 worker, ?4 lease end -> the job's row;
   * usage: ?1 since -> day, fn, jobs, resource_s, usd */
  const char *sql_claim;
  const char *sql_usage;
} kq_backend;

/* sql with its {names} expanded, at a stable address (machine.c). */
const char *kq_sql(const char *sql);

struct kq {
  const kq_backend *be;
  kq_policy pol;
};

/* The columns of a job row as machine.c reads them (in this order), for a
 * backend's claim statement's RETURNING. */
#define KQ_JOB_COLS                                                                                              \
  "id, fn, state, attempts, max_retries, created_ms, COALESCE(started_ms,0), COALESCE(finished_ms,0),"           \
  " run_after_ms, COALESCE(lease_until_ms,0), worker, frames_done, frames_total, err_class, err_msg, spec,"      \
  " result, COALESCE(claimed_ms,0), phase, eta_ms, cold_start_ms, resource_ms, usd, webhook, hook_state,"        \
  " hook_attempts, hook_next_ms, COALESCE(parent,''), kind, part, pending, plan, planned"

/* The claim: one statement picks the oldest runnable task of ?1 (fn) at
 * ?2 (now), leases it to ?3 until ?4 and returns it. A backend adds its
 * dialect's index hint (HINT) or row lock (LOCK). */
#define KQ_CLAIM_SQL(HINT, LOCK)                                                                               \
  "UPDATE jobs SET state={running}, attempts=attempts+1, worker=?3, lease_until_ms=?4, claimed_ms=?2,"          \
  " started_ms=COALESCE(started_ms, ?2), phase='starting', frames_done=0, eta_ms=-1"                            \
  " WHERE id=(SELECT id FROM jobs " HINT " WHERE fn=?1 AND state IN ({queued},{retrying}) AND run_after_ms<=?2" \
  " ORDER BY created_ms, rowid LIMIT 1 " LOCK ") RETURNING " KQ_JOB_COLS

#endif

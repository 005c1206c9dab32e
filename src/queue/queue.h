/* queue.h — durable job state (DESIGN.md, "Queue backend"): submit, claim
 * with a lease, heartbeat with progress, complete, fail with an error class
 * (retries with exponential backoff; bad_input never retried, out_of_memory
 * once at most), reclaim
 * expired leases, cancel, get, list, events. One interface, dispatched
 * in one backend-independent state machine (machine.c) over a narrow
 * backend table (queue_int.h): sqlite.c, the embedded default, and
 * postgres.c for many machines.
 *
 * The queue knows nothing of video: a job is a function name, an opaque
 * JSON spec, a state, progress counters, a result or an error. Times are
 * passed in (milliseconds) so that tests control the clock. Exactly-once
 * effect comes from idempotent task outputs, not from the queue: a job may
 * run again after its worker is lost. */
#ifndef KILN_QUEUE_H
#define KILN_QUEUE_H

#include <stdint.h>

#include "util/err.h"

/* The job states, in the one order their numbers (stored in the database)
 * follow; machine.c draws how a job moves between them. SQL names them as
 * {queued}, {running}, ... (machine.c expands the names). */
#define KQ_STATES(X) X(QUEUED, queued) X(RUNNING, running) X(RETRYING, retrying) \
  X(SUCCEEDED, succeeded) X(FAILED, failed) X(CANCELLED, cancelled)
#define KQ_ENUM_(N, n) KQ_##N,
typedef enum { KQ_STATES(KQ_ENUM_) KQ_NSTATES } kq_state;

const char *kq_state_name(kq_state s);
/* 1 when a job may go from state `from` to `to` (machine.c's table). */
int kq_transition_ok(kq_state from, kq_state to);

#define KQ_ID_LEN 33            /* 32 hex characters + NUL */

/* Webhook delivery of a finished job. */
#define KQ_HOOK_STATES(X) X(HOOK_NONE, hook_none) X(HOOK_PENDING, hook_pending) X(HOOK_DELIVERED, hook_delivered) \
  X(HOOK_FAILED, hook_failed)
typedef enum { KQ_HOOK_STATES(KQ_ENUM_) KQ_NHOOK_STATES } kq_hook_state;

/* What a row is: a job run whole, one chunk of a split job (output frames
 * of a range), the join of a split job, or a split job itself (a parent:
 * never claimed; it ends with its join, or with a chunk that fails). */
#define KQ_KINDS(X) X(WHOLE, whole) X(CHUNK, chunk) X(JOIN, join) X(SPLIT, split)
typedef enum { KQ_KINDS(KQ_ENUM_) KQ_NKINDS } kq_kind;

/* run_after_ms of a job that no worker may claim yet: waiting for the
 * planner (planned = 0), or a join waiting for its chunks. */
#define KQ_HELD INT64_MAX

typedef struct kq_job {
  char id[KQ_ID_LEN];
  char fn[64];
  kq_state state;
  int attempts;                 /* runs started */
  int max_retries;
  int64_t created_ms, started_ms, finished_ms, run_after_ms, lease_until_ms;
  int64_t claimed_ms;           /* start of the latest run */
  char worker[64];
  int64_t frames_done, frames_total, eta_ms;  /* eta_ms < 0: unknown */
  char phase[16];               /* queued, starting, processing, saving, done */
  int64_t cold_start_ms;        /* the cold start charged to this job (its worker's first task) */
  int64_t resource_ms;          /* resource-milliseconds over every run */
  double usd;
  char err_class[16];
  char err_msg[512];
  char *spec;                   /* JSON, owned: kq_job_release() */
  char *result;                 /* JSON or NULL, owned */
  char *webhook;                /* URL or NULL, owned */
  kq_hook_state hook_state;
  int hook_attempts;
  int64_t hook_next_ms;
  char parent[KQ_ID_LEN];       /* a chunk's or join's split job, else "" */
  kq_kind kind;
  int part;                     /* a chunk's index */
  int pending;                  /* a split job's chunks not yet succeeded */
  char *plan;                   /* the planner's JSON (owned), or NULL */
  int planned;                  /* 0: held for the planner */
} kq_job;

/* What a heartbeat reports. phase may be NULL (unchanged). */
typedef struct kq_progress {
  int64_t frames_done, frames_total;
  int64_t eta_ms;               /* < 0: unknown */
  const char *phase;
} kq_progress;

/* What one run cost; added to the job's totals by kq_complete / kq_fail. */
typedef struct kq_cost {
  int64_t cold_start_ms;
  int64_t resource_ms;
  double usd;
} kq_cost;

void kq_job_release(kq_job *j);

typedef struct kq_policy {
  int64_t retry_delay_ms;       /* first retry after this; doubles each time */
  int64_t retry_max_delay_ms;   /* cap */
  /* 0: every commit is fsynced (what the API writes: a submitted job
   * survives a power cut). 1: commits survive a crash of any process but
   * not a power cut (workers: a lost claim or completion only makes the
   * task run again, and task outputs are idempotent). */
  int relaxed;
} kq_policy;

typedef struct kq kq;

/* Opens the queue at url, creating its tables if needed:
 *   postgres://user:pass@host:port/db (or postgresql://, or a libpq
 *   "key=value" string after postgres:) — PostgreSQL (postgres.c);
 *   sqlite:PATH, or a plain PATH — the embedded SQLite file (sqlite.c). */
int kq_open(kq **out, const char *url, const kq_policy *policy, kiln_err *e);
/* Opens (creating if needed) the SQLite database at path, in WAL mode. */
int kq_open_sqlite(kq **out, const char *path, const kq_policy *policy, kiln_err *e);
int kq_open_postgres(kq **out, const char *conninfo, const kq_policy *policy, kiln_err *e);
void kq_close(kq *q);
/* "sqlite" or "postgres". */
const char *kq_backend_name(const kq *q);

/* Blocks until jobs change (an event is appended by any process or
 * replica) or timeout_ms passes, then calls cb for each changed job: id
 * NULL when the backend cannot tell which (SQLite: the file changed). Give
 * it a handle of its own (PostgreSQL: the handle LISTENs). Returns 0, or
 * < 0 when the queue cannot be watched. */
typedef void (*kq_change_cb)(void *arg, const char *id);
int kq_watch(kq *q, int timeout_ms, kq_change_cb cb, void *arg, kiln_err *e);

/* webhook: URL to POST the job to when it ends, or NULL. */
int kq_submit(kq *q, const char *fn, const char *spec, int max_retries, const char *webhook, int64_t now,
              char id[KQ_ID_LEN], kiln_err *e);
/* Several submissions in one transaction (one fsync: group commit); all
 * or none. Each request's id is filled. */
typedef struct kq_submit_req {
  const char *fn, *spec;
  int max_retries;
  const char *webhook;
  int hold;                     /* held for the planner (kq_release or kq_split decide) */
  char id[KQ_ID_LEN];
} kq_submit_req;
int kq_submit_many(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e);
/* Claims the oldest runnable job of fn (queued, or retrying whose delay has
 * passed) for `worker` until now + lease_ms. Returns 1 with *job filled, 0
 * when there is none. */
int kq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e);
/* Extends the lease and records progress. KILN_ECANCELLED if the job was
 * cancelled (the worker must stop), KILN_EINVAL if the lease is not this
 * worker's any more. */
int kq_heartbeat(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms, int64_t now,
                 kiln_err *e);
/* cost may be NULL; frames >= 0 sets the final frames done and total. */
int kq_complete(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost, int64_t frames,
                int64_t now, kiln_err *e);
/* kq_complete, then kq_claim of the next runnable job of fn for the same
 * worker, in one transaction: a warm worker's one commit per task instead
 * of two. Returns 1 with *next filled, 0 when the job was recorded and none
 * was runnable; < 0 (nothing recorded, nothing claimed) as kq_complete. */
int kq_complete_claim(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost,
                      int64_t frames, int64_t now, const char *fn, int64_t lease_ms, kq_job *next, kiln_err *e);
/* Fails the run with err_class ("bad_input", "timeout", "worker_lost",
 * "out_of_memory", "internal"): retried after delay·2^(n-1) (capped) while
 * attempts remain, except bad_input, which fails the job at once, and
 * out_of_memory, retried once at most (the worker that ran out leaves, so
 * the retry has a fresh process; the same input under the same memory_mb
 * fails the same way again). *retrying tells which. */
int kq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, const kq_cost *cost,
            int64_t now, int *retrying, kiln_err *e);
/* Puts a running task back in the queue without counting the run: its
 * worker was stopped (a server shutdown), not failed. */
int kq_requeue(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e);
/* Adds a run's cost to a job whatever its state (a run that ended because
 * the job was cancelled still used its resources). */
int kq_account(kq *q, const char *id, const kq_cost *cost, kiln_err *e);
/* Fails whatever job `worker` holds (it died: class worker_lost, or
 * timeout when the server killed it) with msg. *n = jobs failed (0 or 1). */
int kq_fail_worker(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n,
                   kiln_err *e);
/* Running jobs whose lease ran out are failed as worker_lost (and so
 * retried or failed). *n = how many. */
int kq_reclaim(kq *q, int64_t now, int *n, kiln_err *e);
int kq_cancel(kq *q, const char *id, int64_t now, kiln_err *e);
int kq_get(kq *q, const char *id, kq_job *job, kiln_err *e);

typedef int (*kq_job_cb)(void *arg, const kq_job *job);

/* Claims jobs held for the planner, oldest first, until now + lease_ms
 * (another planner, a replica's, skips them meanwhile; a planner that died
 * leaves them to the next after the lease), and calls cb for each. */
int kq_claim_unplanned(kq *q, int limit, int64_t now, int64_t lease_ms, kq_job_cb cb, void *arg, kiln_err *e);
/* The planner's decisions on a held job: run it whole, or split it into n
 * chunks (each spec a JSON with its output frame range; the chunks inherit
 * fn and retries) and a join (fn "join", join_spec), held until every chunk
 * has succeeded. plan: JSON kept with the job. frames: its output frames. */
/* Drops every planner lease (a server that died while planning left its
 * jobs leased): called when a planner starts. Safe with replicas: release
 * and split change a job only while it is queued and unplanned, so a job
 * two planners probe is still planned once. */
int kq_unlease_planning(kq *q, kiln_err *e);
int kq_release(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e);
int kq_split(kq *q, const char *id, const char *const *chunk_specs, int n, const char *join_spec, const char *plan,
             int64_t frames, int64_t now, kiln_err *e);
/* Running tasks (chunks and joins included; split jobs excluded), for the
 * autoscaler's timeouts. */
int kq_running(kq *q, kq_job_cb cb, void *arg, kiln_err *e);
/* Chunks and join of a split job, in order (chunks by part, then the join). */
int kq_children(kq *q, const char *parent, kq_job_cb cb, void *arg, kiln_err *e);
/* Cost-model state per function (JSON owned by the engine's planner). */
int kq_model_get(kq *q, const char *fn, char **json, kiln_err *e);   /* *json NULL when none */
int kq_model_put(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e);
/* Read-modify-write of a model in one transaction (concurrent workers do
 * not lose each other's updates): edit gets the stored JSON (or NULL) and
 * returns the new JSON (malloc'd; NULL: leave it). */
int kq_model_update(kq *q, const char *fn, char *(*edit)(void *arg, const char *old), void *arg, int64_t now, kiln_err *e);

/* Top-level jobs (not chunks or joins), newest first, filtered by state (< 0: any) and fn (NULL: any). */
int kq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e);

/* Every state change and progress report is an event with a growing seq;
 * data is JSON: {"state":...} or {"frames_done","frames_total","phase","eta_ms"}. */
typedef int (*kq_event_cb)(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts_ms);
int kq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e);

/* Jobs of fn that a worker could claim now (*n), and the earliest time a
 * retrying one becomes claimable (*next_ms, 0 if none waits). */
int kq_runnable(kq *q, const char *fn, int64_t now, int64_t *n, int64_t *next_ms, kiln_err *e);
/* kq_runnable of every function with queued or retrying jobs, in one
 * statement: cb(arg, fn, n, next_ms) per function, until it returns
 * non-zero. A function not called back has none. */
typedef int (*kq_runnable_cb)(void *arg, const char *fn, int64_t n, int64_t next_ms);
int kq_runnable_each(kq *q, int64_t now, kq_runnable_cb cb, void *arg, kiln_err *e);

/* Jobs per state for fn (NULL: all). counts[KQ_CANCELLED + 1]. */
int kq_counts(kq *q, const char *fn, int64_t counts[KQ_NSTATES], kiln_err *e);

/* Recent succeeded runs of fn (newest first, at most limit): run time
 * (finished - claimed) and frames. For p50 run times and ms per frame. */
typedef int (*kq_run_cb)(void *arg, int64_t run_ms, int64_t frames);
int kq_recent_runs(kq *q, const char *fn, int limit, kq_run_cb cb, void *arg, kiln_err *e);

/* Cost of finished jobs since since_ms, per UTC day and function. */
typedef int (*kq_usage_cb)(void *arg, const char *day, const char *fn, int64_t jobs, double resource_s, double usd);
int kq_usage(kq *q, int64_t since_ms, kq_usage_cb cb, void *arg, kiln_err *e);

/* Webhooks: claims finished jobs whose delivery is pending and due, oldest
 * first, for one attempt (until now + lease_ms no other sender takes them),
 * and calls cb for each; then the outcome of the attempt (delivered, or next
 * try at next_ms, or given up when next_ms < 0). */
int kq_hooks_due(kq *q, int64_t now, int64_t lease_ms, int limit, kq_job_cb cb, void *arg, kiln_err *e);
int kq_hook_result(kq *q, const char *id, int delivered, int64_t next_ms, kiln_err *e);

/* Workers register themselves so the server (and GET /v1/functions) can
 * see them: one row each, replaced on every change. */
#define KQ_WSTATES(X) X(W_STARTING, w_starting) X(W_IDLE, w_idle) X(W_BUSY, w_busy) X(W_EXITED, w_exited)
typedef enum { KQ_WSTATES(KQ_ENUM_) KQ_NWSTATES } kq_wstate;
const char *kq_wstate_name(kq_wstate s);
typedef struct kq_worker {
  char id[64];
  char fn[64];
  char host[64];
  int pid;
  kq_wstate state;              /* as listed, busy when it holds a running job */
  char job[KQ_ID_LEN];          /* the job it runs, when busy (listed from the jobs table) */
  int64_t started_ms;           /* process start */
  int64_t ready_ms;             /* enter done (cold start = ready - started); 0 while starting */
  int64_t last_ms;              /* last change or heartbeat */
  int64_t tasks;
} kq_worker;
/* Writes the row (state starting, idle or exited; busy is not stored:
 * kq_worker_list derives it from the running job a worker holds). */
int kq_worker_put(kq *q, const kq_worker *w, kiln_err *e);
/* Workers of fn (NULL: all); live_only skips exited ones. */
typedef int (*kq_worker_cb)(void *arg, const kq_worker *w);
int kq_worker_list(kq *q, const char *fn, int live_only, kq_worker_cb cb, void *arg, kiln_err *e);
/* 1 if a row for worker id exists (live or exited), 0 if not. */
int kq_worker_known(kq *q, const char *id, kiln_err *e);
/* A host's heartbeat: its live workers' rows get last_ms = now. */
int kq_worker_touch(kq *q, const char *host, int64_t now, kiln_err *e);
/* Live rows of hosts other than `host` not touched since before_ms (the
 * host vanished: power, network) are marked exited. *n = how many. Their
 * tasks are not failed here: their leases run out (kq_reclaim). */
int kq_worker_expire(kq *q, const char *host, int64_t before_ms, int *n, kiln_err *e);
/* Removes exited workers whose last change is older than before_ms. */
int kq_worker_prune(kq *q, int64_t before_ms, kiln_err *e);

#endif

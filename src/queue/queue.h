/* queue.h — durable job state (DESIGN.md, "Queue backend"): submit, claim
 * with a lease, heartbeat with progress, complete, fail with an error class
 * (retries with exponential backoff; bad_input never retried), reclaim
 * expired leases, cancel, get, list, events. One interface; sqlite.c is the
 * embedded backend (a Redis Streams backend comes later).
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

typedef enum { KQ_QUEUED = 0, KQ_RUNNING, KQ_RETRYING, KQ_SUCCEEDED, KQ_FAILED, KQ_CANCELLED } kq_state;

const char *kq_state_name(kq_state s);

#define KQ_ID_LEN 33            /* 32 hex characters + NUL */

typedef struct kq_job {
  char id[KQ_ID_LEN];
  char fn[64];
  kq_state state;
  int attempts;                 /* runs started */
  int max_retries;
  int64_t created_ms, started_ms, finished_ms, run_after_ms, lease_until_ms;
  char worker[64];
  int64_t frames_done, frames_total;
  char err_class[16];
  char err_msg[512];
  char *spec;                   /* JSON, owned: kq_job_release() */
  char *result;                 /* JSON or NULL, owned */
} kq_job;

void kq_job_release(kq_job *j);

typedef struct kq_policy {
  int64_t retry_delay_ms;       /* first retry after this; doubles each time */
  int64_t retry_max_delay_ms;   /* cap */
} kq_policy;

typedef struct kq kq;

/* Opens (creating if needed) the SQLite database at path, in WAL mode. */
int kq_open_sqlite(kq **out, const char *path, const kq_policy *policy, kiln_err *e);
void kq_close(kq *q);

int kq_submit(kq *q, const char *fn, const char *spec, int max_retries, int64_t now, char id[KQ_ID_LEN], kiln_err *e);
/* Claims the oldest runnable job of fn (queued, or retrying whose delay has
 * passed) for `worker` until now + lease_ms. Returns 1 with *job filled, 0
 * when there is none. */
int kq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e);
/* Extends the lease and records progress. KILN_ECANCELLED if the job was
 * cancelled (the worker must stop), KILN_EINVAL if the lease is not this
 * worker's any more. */
int kq_heartbeat(kq *q, const char *id, const char *worker, int64_t frames_done, int64_t frames_total,
                 int64_t lease_ms, int64_t now, kiln_err *e);
int kq_complete(kq *q, const char *id, const char *worker, const char *result, int64_t now, kiln_err *e);
/* Fails the run with err_class ("bad_input", "timeout", "worker_lost",
 * "internal"): retried after delay·2^(n-1) (capped) while attempts remain,
 * except bad_input, which fails the job at once. *retrying tells which. */
int kq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, int64_t now,
            int *retrying, kiln_err *e);
/* Running jobs whose lease ran out are failed as worker_lost (and so
 * retried or failed). *n = how many. */
int kq_reclaim(kq *q, int64_t now, int *n, kiln_err *e);
int kq_cancel(kq *q, const char *id, int64_t now, kiln_err *e);
int kq_get(kq *q, const char *id, kq_job *job, kiln_err *e);

/* Jobs, newest first, filtered by state (< 0: any) and fn (NULL: any). */
typedef int (*kq_job_cb)(void *arg, const kq_job *job);
int kq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e);

/* Every state change and progress report is an event with a growing seq. */
typedef int (*kq_event_cb)(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts_ms);
int kq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e);

#endif

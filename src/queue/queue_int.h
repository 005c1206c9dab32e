/* queue_int.h — the backend vtable behind queue.h (like SQLite's
 * sqlite3_vfs, or the store's ks_backend): one table per backend (sqlite.c
 * now; a Redis Streams backend later), one dispatcher per operation in
 * queue.c. A backend's handle starts with struct kq. */
#ifndef KILN_QUEUE_INT_H
#define KILN_QUEUE_INT_H

#include "queue/queue.h"

typedef struct kq_backend {
  const char *name;
  void (*close)(kq *q);
  int (*submit_many)(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e);
  int (*claim)(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e);
  int (*heartbeat)(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms, int64_t now, kiln_err *e);
  int (*complete)(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost, int64_t frames, int64_t now, kiln_err *e);
  int (*fail)(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, const kq_cost *cost, int64_t now, int *retrying, kiln_err *e);
  int (*requeue)(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e);
  int (*account)(kq *q, const char *id, const kq_cost *cost, kiln_err *e);
  int (*fail_worker)(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n, kiln_err *e);
  int (*reclaim)(kq *q, int64_t now, int *n, kiln_err *e);
  int (*cancel)(kq *q, const char *id, int64_t now, kiln_err *e);
  int (*get)(kq *q, const char *id, kq_job *job, kiln_err *e);
  int (*unplanned)(kq *q, int limit, kq_job_cb cb, void *arg, kiln_err *e);
  int (*release)(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e);
  int (*split)(kq *q, const char *id, const char *const *chunk_specs, int n, const char *join_spec, const char *plan, int64_t frames, int64_t now, kiln_err *e);
  int (*running)(kq *q, kq_job_cb cb, void *arg, kiln_err *e);
  int (*children)(kq *q, const char *parent, kq_job_cb cb, void *arg, kiln_err *e);
  int (*model_get)(kq *q, const char *fn, char **json, kiln_err *e);
  int (*model_put)(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e);
  int (*model_update)(kq *q, const char *fn, char *(*edit)(void *arg, const char *old), void *arg, int64_t now, kiln_err *e);
  int (*list)(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e);
  int (*events)(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e);
  int (*runnable)(kq *q, const char *fn, int64_t now, int64_t *n, int64_t *next_ms, kiln_err *e);
  int (*counts)(kq *q, const char *fn, int64_t counts[6], kiln_err *e);
  int (*recent_runs)(kq *q, const char *fn, int limit, kq_run_cb cb, void *arg, kiln_err *e);
  int (*usage)(kq *q, int64_t since_ms, kq_usage_cb cb, void *arg, kiln_err *e);
  int (*hooks_due)(kq *q, int64_t now, int limit, kq_job_cb cb, void *arg, kiln_err *e);
  int (*hook_result)(kq *q, const char *id, int delivered, int64_t next_ms, kiln_err *e);
  int (*worker_put)(kq *q, const kq_worker *w, kiln_err *e);
  int (*worker_list)(kq *q, const char *fn, int live_only, kq_worker_cb cb, void *arg, kiln_err *e);
  int (*worker_known)(kq *q, const char *id, kiln_err *e);
  int (*worker_prune)(kq *q, int64_t before_ms, kiln_err *e);
} kq_backend;

struct kq {
  const kq_backend *be;
};

#endif

/* queue.c — the queue's operations, dispatched to the backend of the
 * handle (queue_int.h), and the backend-independent helpers. */
#include "queue/queue_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"queued", "running", "retrying", "succeeded", "failed", "cancelled"};
const char *kq_state_name(kq_state s) { return (unsigned)s < 6 ? state_names[s] : "unknown"; }

static const char *const wstate_names[] = {"starting", "idle", "busy", "exited"};
const char *kq_wstate_name(kq_wstate s) { return (unsigned)s < 4 ? wstate_names[s] : "unknown"; }

void kq_job_release(kq_job *j) {
  if (!j) return;
  free(j->spec);
  free(j->result);
  free(j->webhook);
  free(j->plan);
  j->spec = j->result = j->webhook = j->plan = NULL;
}

int kq_submit(kq *q, const char *fn, const char *spec, int max_retries, const char *webhook, int64_t now,
              char id[KQ_ID_LEN], kiln_err *e) {
  kq_submit_req rq = {fn, spec, max_retries, webhook, 0, ""};
  int r = kq_submit_many(q, &rq, 1, now, e);
  if (r == 0) memcpy(id, rq.id, KQ_ID_LEN);
  return r;
}


void kq_close(kq *q) {
  if (q) q->be->close(q);
}

int kq_submit_many(kq *q, kq_submit_req *reqs, int n, int64_t now, kiln_err *e) {
  return q->be->submit_many(q, reqs, n, now, e);
}

int kq_claim(kq *q, const char *fn, const char *worker, int64_t lease_ms, int64_t now, kq_job *job, kiln_err *e) {
  return q->be->claim(q, fn, worker, lease_ms, now, job, e);
}

int kq_heartbeat(kq *q, const char *id, const char *worker, const kq_progress *p, int64_t lease_ms, int64_t now,
                 kiln_err *e) {
  return q->be->heartbeat(q, id, worker, p, lease_ms, now, e);
}

int kq_complete(kq *q, const char *id, const char *worker, const char *result, const kq_cost *cost, int64_t frames,
                int64_t now, kiln_err *e) {
  return q->be->complete(q, id, worker, result, cost, frames, now, e);
}

int kq_fail(kq *q, const char *id, const char *worker, const char *err_class, const char *msg, const kq_cost *cost,
            int64_t now, int *retrying, kiln_err *e) {
  char m[2048];                                   /* stored, then put in JSON (events, job records, webhooks): valid UTF-8 */
  return q->be->fail(q, id, worker, err_class, kiln_utf8_sanitize(msg ? msg : "", m, sizeof m), cost, now, retrying, e);
}

int kq_account(kq *q, const char *id, const kq_cost *cost, kiln_err *e) {
  return q->be->account(q, id, cost, e);
}

int kq_fail_worker(kq *q, const char *worker, const char *err_class, const char *msg, int64_t now, int *n,
                   kiln_err *e) {
  char m[2048];
  return q->be->fail_worker(q, worker, err_class, kiln_utf8_sanitize(msg ? msg : "", m, sizeof m), now, n, e);
}

int kq_reclaim(kq *q, int64_t now, int *n, kiln_err *e) {
  return q->be->reclaim(q, now, n, e);
}

int kq_cancel(kq *q, const char *id, int64_t now, kiln_err *e) {
  return q->be->cancel(q, id, now, e);
}

int kq_get(kq *q, const char *id, kq_job *job, kiln_err *e) {
  return q->be->get(q, id, job, e);
}

int kq_unplanned(kq *q, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  return q->be->unplanned(q, limit, cb, arg, e);
}

int kq_release(kq *q, const char *id, const char *plan, int64_t frames, int64_t now, kiln_err *e) {
  return q->be->release(q, id, plan, frames, now, e);
}

int kq_split(kq *q, const char *id, const char *const *chunk_specs, int n, const char *join_spec, const char *plan,
             int64_t frames, int64_t now, kiln_err *e) {
  return q->be->split(q, id, chunk_specs, n, join_spec, plan, frames, now, e);
}

int kq_running(kq *q, kq_job_cb cb, void *arg, kiln_err *e) {
  return q->be->running(q, cb, arg, e);
}

int kq_children(kq *q, const char *parent, kq_job_cb cb, void *arg, kiln_err *e) {
  return q->be->children(q, parent, cb, arg, e);
}

int kq_model_get(kq *q, const char *fn, char **json, kiln_err *e) {
  return q->be->model_get(q, fn, json, e);
}

int kq_model_put(kq *q, const char *fn, const char *json, int64_t now, kiln_err *e) {
  return q->be->model_put(q, fn, json, now, e);
}

int kq_model_update(kq *q, const char *fn, char *(*edit)(void *arg, const char *old), void *arg, int64_t now, kiln_err *e) {
  return q->be->model_update(q, fn, edit, arg, now, e);
}

int kq_list(kq *q, int state, const char *fn, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  return q->be->list(q, state, fn, limit, cb, arg, e);
}

int kq_events(kq *q, const char *id, int64_t after_seq, kq_event_cb cb, void *arg, kiln_err *e) {
  return q->be->events(q, id, after_seq, cb, arg, e);
}

int kq_runnable(kq *q, const char *fn, int64_t now, int64_t *n, int64_t *next_ms, kiln_err *e) {
  return q->be->runnable(q, fn, now, n, next_ms, e);
}

int kq_counts(kq *q, const char *fn, int64_t counts[6], kiln_err *e) {
  return q->be->counts(q, fn, counts, e);
}

int kq_recent_runs(kq *q, const char *fn, int limit, kq_run_cb cb, void *arg, kiln_err *e) {
  return q->be->recent_runs(q, fn, limit, cb, arg, e);
}

int kq_usage(kq *q, int64_t since_ms, kq_usage_cb cb, void *arg, kiln_err *e) {
  return q->be->usage(q, since_ms, cb, arg, e);
}

int kq_hooks_due(kq *q, int64_t now, int limit, kq_job_cb cb, void *arg, kiln_err *e) {
  return q->be->hooks_due(q, now, limit, cb, arg, e);
}

int kq_hook_result(kq *q, const char *id, int delivered, int64_t next_ms, kiln_err *e) {
  return q->be->hook_result(q, id, delivered, next_ms, e);
}

int kq_worker_put(kq *q, const kq_worker *w, kiln_err *e) {
  return q->be->worker_put(q, w, e);
}

int kq_worker_list(kq *q, const char *fn, int live_only, kq_worker_cb cb, void *arg, kiln_err *e) {
  return q->be->worker_list(q, fn, live_only, cb, arg, e);
}

int kq_worker_known(kq *q, const char *id, kiln_err *e) {
  return q->be->worker_known(q, id, e);
}

int kq_worker_prune(kq *q, int64_t before_ms, kiln_err *e) {
  return q->be->worker_prune(q, before_ms, e);
}

int kq_requeue(kq *q, const char *id, const char *worker, int64_t now, kiln_err *e) {
  return q->be->requeue(q, id, worker, now, e);
}

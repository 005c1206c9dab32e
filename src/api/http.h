/* http.h — what the route files of the server share: the per-request
 * state, JSON replies and errors, auth, and queue connections. */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include <jansson.h>
#include <microhttpd.h>

#include "api/server.h"

/* A connection parked until due_ms (ke_now_ms clock), or until job id
 * changes; lives in the request's own state, which MHD keeps while the
 * connection is suspended. */
typedef struct kh_wait {
  struct MHD_Connection *c;
  int64_t due_ms;
  char id[40];                  /* the job it waits on ("" none) */
  uint64_t gen;                 /* kh_changes(id) before the handler looked at the queue */
  struct kh_wait *next;
} kh_wait;

/* The count of changes seen so far for job id (by the server's watcher:
 * kq_watch). Read it before looking at the queue; kh_suspend then resumes
 * at once if a change came in between. */
uint64_t kh_changes(kiln_server *s, const char *id);

/* Suspends c (from its access handler or content reader only) and has the
 * ticker resume it when job w->id changes (w->gen: kh_changes before the
 * look), or after delay_ms at the latest: MHD then calls the handler, or the
 * reader, again. 0, or -1 when the server is stopping (answer now). */
int kh_suspend(kiln_server *s, struct MHD_Connection *c, kh_wait *w, int64_t delay_ms);

typedef struct req {
  int started;
  ks_put *put;
  int64_t received;
  int status;                   /* set when the request failed while its body came in */
  char code[32], msg[600];
  char *body;                   /* JSON request bodies */
  size_t body_len, body_cap;
  /* a spawn or call whose job is being committed (jobs.c: suspended
   * until the submitter's batch is in, then answered by kh_submitted) */
  int submitting;               /* 1 parked for the commit, 2 committed */
  ke_submission sub;
  kiln_server *srv;
  struct MHD_Connection *conn;
  char *sub_spec, *sub_hook;    /* owned: sub.req points at them */
  char sub_inline[KS_KEY_MAX + 1];   /* an inline input stored for the job: removed if it is not queued */
  int sub_call;                 /* a `call`: wait for the job once it is queued */
  double sub_wait_s;
  /* a `call` waiting for its job to end (jobs.c) */
  int waiting, flat;
  char wait_id[40];
  int64_t deadline_ms;
  kh_wait w;
} req;

/* {"error":{"code","message"}} with msg sanitized (valid UTF-8 always). */
json_t *kh_error_body(const char *code, const char *msg);
enum MHD_Result kh_json(kiln_server *s, struct MHD_Connection *c, unsigned status, json_t *o);
enum MHD_Result kh_error(kiln_server *s, struct MHD_Connection *c, unsigned status, const char *code, const char *fmt,
                         ...) __attribute__((format(printf, 5, 6)));
/* 0 if the request carries a valid bearer token; else fills status and msg. */
int kh_token_ok(kiln_server *s, struct MHD_Connection *c, unsigned *status, char *msg, size_t n);
/* "http://HOST" of this request, for URLs handed back. */
void kh_base_url(kiln_server *s, struct MHD_Connection *c, char *out, size_t n);

struct kq *kh_q_get(kiln_server *s, kiln_err *e);
void kh_q_put(kiln_server *s, struct kq *q);

/* The one way a JSON answer leaves the server (o taken; NULL gives a fixed
 * 500 body). hname/hval: one extra header, or NULL. */
enum MHD_Result kh_respond(kiln_server *s, struct MHD_Connection *c, unsigned status, json_t *o, const char *hname,
                           const char *hval);

/* jobs.c: a submission resumed once committed (rq->submitting). */
enum MHD_Result kh_submitted(kiln_server *s, struct MHD_Connection *c, req *rq);

/* jobs.c: a `call` resumed while it waits for its job (rq->waiting). */
enum MHD_Result kh_call_poll(kiln_server *s, struct MHD_Connection *c, req *rq);

/* jobs.c: the routes under /v1/functions, /v1/jobs, /v1/usage and /metrics.
 * Returns MHD_YES/NO having answered, or -1 when the URL is not theirs. */
int kh_jobs_route(kiln_server *s, struct MHD_Connection *c, const char *url, const char *method, req *rq);

#endif

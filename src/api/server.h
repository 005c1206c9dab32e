/* server.h — the HTTP server of `kiln serve` (routes: server.c for the
 * core and objects, jobs.c for functions, jobs, events, usage, metrics). */
#ifndef KILN_SERVER_H
#define KILN_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/engine.h"
#include "store/store.h"
#include "util/err.h"

struct MHD_Daemon;

typedef struct kiln_server {
  char home[4096];              /* $KILN_HOME: tokens */
  const ke_config *cfg;         /* borrowed */
  ks_store *store;              /* borrowed */
  ke_scaler *scaler;            /* borrowed; NULL: no workers are started */
  ke_hooks *hooks;              /* borrowed; may be NULL */
  ke_submitter *submitter;      /* borrowed; NULL: submit on the request's own connection */
  struct ke_planner *planner;   /* borrowed; NULL: jobs run whole */
  int64_t max_upload;           /* bytes */
  int64_t inline_max;           /* decoded bytes of base64 input */
  struct MHD_Daemon *d;
  unsigned port;                /* the port actually bound (for :0) */
  /* queue connections for request threads (one thread uses one at a time) */
  pthread_mutex_t qmu;
  struct kq *qfree[64];
  int nqfree;
  /* connections waiting without a thread (a `call` for its job, an event
   * stream for its next event): suspended in MHD, resumed by the ticker when
   * due (kh_suspend) */
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  struct kh_wait *waiting;      /* singly linked through kh_wait.next */
  int stopping;                 /* set by kiln_server_stop: nothing suspends any more */
  int submitting;               /* connections suspended until their job is committed (kh_submit_park) */
  int ticker_on;
  pthread_t ticker;
  /* the watcher: kq_watch on a queue handle of its own; each job change
   * bumps its id's bucket (all buckets when the backend cannot tell which
   * job) and resumes the connections parked on it */
  uint64_t changes[64];
  int watch_ok;                 /* 0: no watcher (parked connections look again every 50 ms) */
  int watcher_on;
  pthread_t watcher;
  /* counters for /metrics */
  uint64_t requests[6];         /* by status class: 1xx..5xx, [0] other */
} kiln_server;

/* Listens on addr with `threads` event-loop threads (epoll each); limits and
 * timeouts from s->cfg's http section. */
int kiln_server_start(kiln_server *s, const struct sockaddr *addr, int threads, kiln_err *e);
void kiln_server_stop(kiln_server *s);

#endif

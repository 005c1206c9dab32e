/* submit.c — group commit for job submissions (see engine.h).
 *
 * Every accepted job is fsynced before its 202 goes out. One fsync per job
 * holds SQLite's write lock ~0.3 ms each, and under a burst the request
 * threads queue up behind one another and the workers behind them all. So
 * callers hand their submission to one committer thread; it writes
 * everything waiting in one transaction (one fsync) and tells each (done).
 * The HTTP server's event loops do not wait (ke_submit_async: the
 * connection is suspended until its done resumes it), so a batch holds
 * every submission that arrived during the last commit, however few loop
 * threads there are. Alone, a submission waits only for the hand-off. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define BATCH 256

struct ke_submitter {
  kq *q;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  ke_submission *head, *tail;
  int stop;
};

static void *committer(void *arg) {
  ke_submitter *s = arg;
  ke_submission *batch[BATCH];
  kq_submit_req reqs[BATCH];
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->head && !s->stop) pthread_cond_wait(&s->work, &s->mu);
    if (!s->head) break;                         /* stopping, nothing left */
    int n = 0;
    while (s->head && n < BATCH) {
      batch[n] = s->head;
      reqs[n] = s->head->req;
      s->head = s->head->next;
      n++;
    }
    if (!s->head) s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    kiln_err e = {0};
    int rc = kq_submit_many(s->q, reqs, n, ke_now_ms(), &e);
    for (int i = 0; i < n; i++) {                 /* done may free its submission: nothing touches it after */
      batch[i]->rc = rc;
      if (rc < 0) batch[i]->err = e;
      else memcpy(batch[i]->req.id, reqs[i].id, KQ_ID_LEN);
      batch[i]->done(batch[i]);
    }
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int ke_submitter_start(ke_submitter **out, const ke_config *c, kiln_err *e) {
  ke_submitter *s = calloc(1, sizeof *s);
  if (!s) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = ke_open_queue(c, 0, &s->q, e);
  if (r < 0) { free(s); return r; }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->work, NULL);
  pthread_cond_init(&s->done, NULL);
  if (pthread_create(&s->th, NULL, committer, s) != 0) {
    kq_close(s->q);
    free(s);
    return kiln_fail(e, KILN_EINTERNAL, "cannot start the submission thread");
  }
  *out = s;
  return 0;
}

int ke_submit_async(ke_submitter *s, ke_submission *sb, kiln_err *e) {
  sb->next = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->stop) {
    pthread_mutex_unlock(&s->mu);
    return kiln_fail(e, KILN_EIO, "the server is stopping");
  }
  if (s->tail) s->tail->next = sb;
  else s->head = sb;
  s->tail = sb;
  pthread_cond_signal(&s->work);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

typedef struct sync_wait {
  ke_submission sb;
  ke_submitter *s;
  int finished;
} sync_wait;

static void sync_done(ke_submission *sb) {
  sync_wait *w = sb->arg;
  pthread_mutex_lock(&w->s->mu);
  w->finished = 1;
  pthread_cond_broadcast(&w->s->done);
  pthread_mutex_unlock(&w->s->mu);
}

int ke_submit(ke_submitter *s, const char *fn, const char *spec, int retries, const char *webhook, int hold,
              char id[KQ_ID_LEN], kiln_err *e) {
  sync_wait w;
  memset(&w, 0, sizeof w);
  w.s = s;
  w.sb.req = (kq_submit_req){.fn = fn, .spec = spec, .max_retries = retries, .webhook = webhook, .hold = hold};
  w.sb.done = sync_done;
  w.sb.arg = &w;
  int r = ke_submit_async(s, &w.sb, e);
  if (r < 0) return r;
  pthread_mutex_lock(&s->mu);
  while (!w.finished) pthread_cond_wait(&s->done, &s->mu);
  pthread_mutex_unlock(&s->mu);
  if (w.sb.rc < 0) {
    *e = w.sb.err;
    return w.sb.rc;
  }
  memcpy(id, w.sb.req.id, KQ_ID_LEN);
  return 0;
}

void ke_submitter_stop(ke_submitter *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->work);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->th, NULL);
  kq_close(s->q);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work);
  pthread_cond_destroy(&s->done);
  free(s);
}

/* engine.h — the engine's services above its base (config.h: the
 * configuration, $KILN_HOME, prices, which workers use too): the job as
 * JSON (job.c), durable submission (submit.c), the autoscaler (scaler.c)
 * and webhook delivery (webhook.c); the cost model is cost.h. The engine
 * knows jobs and workers; it knows nothing of HTTP (api/) or of pixels
 * (fn/, media/). */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "fn/fn.h"
#include "queue/queue.h"
#include "store/store.h"
#include "util/err.h"

#include "engine/config.h"

/* A job as the HTTP API shows it (see docs/http.md). Output URLs are
 * presigned GET URLs under base_url, valid for a day. */
json_t *ke_job_json(const kq_job *j, ks_store *s, const char *base_url, int64_t now_ms);
/* Durable submission with group commit (submit.c): a submission is
 * answered once its job is fsynced, sharing one transaction with every
 * submission waiting at the same time. */
typedef struct ke_submitter ke_submitter;
int ke_submitter_start(ke_submitter **out, const ke_config *c, kiln_err *e);
/* Blocks until the job is committed; its id into id. */
int ke_submit(ke_submitter *s, const char *fn, const char *spec, int retries, const char *webhook, int hold,
              char id[KQ_ID_LEN], kiln_err *e);
/* Without blocking (an event-loop thread): the caller fills req (its
 * strings must live until done runs) and owns sb; once the batch holding it
 * is committed, done(sb) runs on the committer thread with sb->rc (0, or a
 * KILN_E* code with sb->err) and sb->req.id set. 0 when done will run;
 * < 0 (nothing queued, done never runs) when the submitter is stopping. */
typedef struct ke_submission {
  kq_submit_req req;
  int rc;
  kiln_err err;
  void (*done)(struct ke_submission *sb);
  void *arg;
  struct ke_submission *next;   /* the submitter's */
} ke_submission;
int ke_submit_async(ke_submitter *s, ke_submission *sb, kiln_err *e);
/* After the HTTP server has stopped (no caller may be waiting). */
void ke_submitter_stop(ke_submitter *s);

/* The autoscaler: a thread of `kiln serve` that reclaims expired leases,
 * spawns `kiln worker` processes while tasks wait (within max_workers and
 * the slots), keeps min_workers warm, wakes idle workers when work comes,
 * reaps workers that died (their task is retried), kills a worker whose
 * task ran past its timeout, and warns at 80% and 100% of the monthly
 * budget. */
typedef struct ke_scaler ke_scaler;
int ke_scaler_start(ke_scaler **out, const ke_config *c, const char *exe, kiln_err *e);
/* Work arrived for fn (NULL: anything): wake a worker or spawn one now. */
void ke_scaler_kick(ke_scaler *s, const char *fn);
/* Stops the thread and every worker it started (SIGTERM: a busy worker
 * puts its task back in the queue). */
void ke_scaler_stop(ke_scaler *s);
/* Milliseconds since this host last had a worker or saw a runnable task
 * (`kiln agent --exit-when-idle`). */
int64_t ke_scaler_idle_ms(ke_scaler *s);

/* Webhooks: a thread that POSTs each ended job with a webhook to its URL,
 * signed (X-Kiln-Signature: t=UNIX,v1=HEX of HMAC-SHA256(key, "t.body")),
 * retried with exponential backoff until webhook_attempts. */
typedef struct ke_hooks ke_hooks;
/* 0 if url is one a webhook can be sent to: http:// or https://, a host,
 * an optional port, at most 2000 bytes, no space or control character;
 * else a message naming what is wrong (libcurl's URL parser decides). */
int ke_webhook_url_check(const char *url, kiln_err *e);
int ke_hooks_start(ke_hooks **out, const ke_config *c, const char *base_url, kiln_err *e);
void ke_hooks_kick(ke_hooks *h);
void ke_hooks_stop(ke_hooks *h);

#endif

/* config.h — the engine's base, which workers use too: the configuration
 * (config.c), the state under $KILN_HOME (queue database, object store,
 * signing secrets), the price table, the clock and host names, and the
 * store's layout of a chunked job's outputs (job.c). It knows nothing of
 * the services above it (engine.h: the submitter, the autoscaler, the
 * planner, webhooks), so worker/ includes this and not engine.h: the
 * autoscaler starts workers, workers only read their configuration. */
#ifndef KILN_ENGINE_CONFIG_H
#define KILN_ENGINE_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "fn/fn.h"
#include "queue/queue.h"
#include "store/store.h"
#include "util/err.h"

#define KE_MAX_FNS 32

typedef struct ke_fnconf {
  const kf_desc *fn;
  kf_resources res;             /* the descriptor's, with the config file's overrides */
  char gpu[32];                 /* storage for res.gpu when overridden */
  int64_t max_pixels, max_out_pixels;   /* the pixel budget of its workers (limits.*, or functions.NAME.*); 0: none */
  char max_pixels_key[96], max_out_pixels_key[96];   /* the config key each came from, for messages */
} ke_fnconf;

typedef struct ke_config {
  char home[4096];
  char path[4200];              /* the config file read, or "" for none */
  char listen[128];             /* HOST:PORT */
  char public_url[256];         /* base of URLs handed out (webhooks); "" = from the listen address */
  char queue_url[1200];         /* "" = SQLite in $KILN_HOME/queue.db; postgres://... (config 'queue', env KILN_QUEUE) */
  char store_url[1200];         /* "" = the local folder $KILN_HOME/store; s3://BUCKET/PREFIX (config 'store', env KILN_STORE) */
  char store_endpoint[300];     /* S3: scheme://host[:port]; "" = AWS */
  char store_region[64];
  char store_addressing[16];    /* S3: path | virtual | "" (by endpoint) */
  int64_t store_cache_mb;       /* S3: the fetch cache's bound */
  int64_t max_upload;           /* bytes, PUT /v1/objects */
  int64_t inline_max;           /* bytes of decoded base64 input in a JSON body */
  int64_t lease_ms;             /* a worker's lease; heartbeats every third of it */
  /* the HTTP server (`http:` in the config file) */
  int http_threads;             /* event-loop threads (a pool, each an epoll loop) */
  int http_max_conns;           /* open connections in all */
  int http_max_conns_per_ip;    /* open connections from one client address */
  int http_idle_timeout_s;      /* a connection with no request under way (headers not complete, or keep-alive) */
  int http_request_timeout_s;   /* silence allowed once a request's headers are in (slow uploads, slow readers) */
  int64_t retry_delay_ms, retry_max_delay_ms;
  int cpu_slots, gpu_slots;     /* what workers may use at once (default: the CPU cores; the NVIDIA GPUs found) */
  double budget_usd_month;      /* 0: none */
  int webhook_attempts;
  int webhook_block_private;    /* refuse webhook URLs that resolve to loopback, private or link-local addresses */
  int64_t webhook_delay_ms;     /* first retry; doubles */
  json_t *prices;               /* resource class -> USD per second (owned) */
  int nfn;
  ke_fnconf fns[KE_MAX_FNS];
} ke_config;

/* Defaults, then `path` (or $KILN_HOME/config.yaml when path is NULL and it
 * exists). Unknown keys and ill-typed values are errors naming them. */
int ke_config_load(ke_config *c, const char *path, kiln_err *e);
void ke_config_release(ke_config *c);
const ke_fnconf *ke_fn(const ke_config *c, const char *name);
/* Puts this process under the pixel budget (km_limits_set) of function fn
 * (a worker), or with fn NULL or internal (the join) the largest of every
 * function's (the server: its probes decode nothing a worker would refuse
 * to; the join opens sources and chunks of any function). */
void ke_apply_limits(const ke_config *c, const char *fn);

/* USD per second for one worker of a function: its GPU class's price, or
 * cpus x the CPU core price. *units: resource units it holds (GPUs or cores). */
double ke_price_per_s(const ke_config *c, const kf_resources *r, int *units);

/* The state under $KILN_HOME: queue.db, store/, secret (signs presigned
 * URLs) and webhook.key (signs webhooks), made on first use (0600). */
/* relaxed: for workers, commits not fsynced (see kq_policy). */
int ke_open_queue(const ke_config *c, int relaxed, kq **q, kiln_err *e);
int ke_open_store(const ke_config *c, ks_store **s, kiln_err *e);
int ke_webhook_key(const ke_config *c, char hex[65], kiln_err *e);

/* Wall-clock milliseconds since the epoch. */
int64_t ke_now_ms(void);
/* This host's name in the queue (worker rows, whose host owns a process):
 * $KILN_HOST, else the hostname. */
void ke_host_name(char *out, size_t n);
/* The id a worker registers as: FN-PID@HOST (the autoscaler predicts it). */
void ke_worker_id(const char *fn, int pid, char *out, size_t n);

/* Removes the chunk outputs (jobs/ID/chunk-*) of chunked job ID, for a job
 * that ended failed or cancelled (a join removes them itself). Chunks still
 * running remove their own output when they find the job cancelled. Returns
 * how many were removed. */
int ke_drop_chunks(ks_store *s, const char *job_id);

#endif

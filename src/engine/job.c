/* job.c — a job as the HTTP API, the CLI and webhooks show it (the shape is
 * documented in docs/http.md): state, progress with percent and ETA,
 * result with presigned output URLs, cost, timings, error. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void iso_time(int64_t ms, char out[32]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* The result with a fresh presigned URL for each output. */
static json_t *result_json(const kq_job *j, ks_store *s, const char *base, int64_t now) {
  json_error_t je;
  json_t *r = j->result ? json_loads(j->result, 0, &je) : NULL;
  if (!r) return json_null();
  json_t *outs = json_object_get(r, "outputs");
  size_t i;
  json_t *o;
  json_array_foreach(outs, i, o) {
    const char *key = json_string_value(json_object_get(o, "key"));
    char url[2400];
    kiln_err e = {0};
    if (key && s && ks_presign(s, "GET", key, now / 1000 + 86400, url, sizeof url, &e) == 0) {
      char full[2700];
      snprintf(full, sizeof full, "%s%s", base && url[0] == '/' ? base : "", url);   /* an S3 store's URL is absolute */
      json_object_set_new(o, "url", json_string(full));
    }
  }
  return r;
}

json_t *ke_job_json(const kq_job *j, ks_store *s, const char *base_url, int64_t now) {
  char created[32];
  iso_time(j->created_ms, created);
  json_error_t je;
  json_t *spec = j->spec ? json_loads(j->spec, 0, &je) : NULL;
  double pct = j->frames_total > 0 ? 100.0 * (double)j->frames_done / (double)j->frames_total : 0;
  if (j->state == KQ_SUCCEEDED) pct = 100;
  if (pct > 100) pct = 100;
  json_t *progress = json_pack("{s:I, s:I, s:f, s:s}", "frames_done", (json_int_t)j->frames_done, "frames_total",
                               (json_int_t)j->frames_total, "percent", (double)(int64_t)(pct * 10 + 0.5) / 10,
                               "phase", j->phase[0] ? j->phase : "queued");
  json_object_set_new(progress, "eta_s", j->eta_ms >= 0 ? json_real((double)j->eta_ms / 1000) : json_null());
  int64_t end = j->finished_ms ? j->finished_ms : now;
  json_t *timings = json_pack("{s:I, s:I, s:I}", "queued_ms",
                              (json_int_t)((j->started_ms ? j->started_ms : end) - j->created_ms), "cold_start_ms",
                              (json_int_t)j->cold_start_ms, "run_ms",
                              (json_int_t)(j->claimed_ms && j->state != KQ_QUEUED && j->state != KQ_RETRYING
                                               ? end - j->claimed_ms
                                               : 0));
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:{s:f, s:f}, s:o}", "job_id", j->id, "fn", j->fn,
                        "state", kq_state_name(j->state), "created", created, "attempts", j->attempts, "progress",
                        progress, "result", j->state == KQ_SUCCEEDED ? result_json(j, s, base_url, now) : json_null(),
                        "cost", "resource_seconds", (double)j->resource_ms / 1000, "usd", j->usd, "timings", timings);
  if (spec) {
    json_object_set(o, "input", json_object_get(spec, "input") ? json_object_get(spec, "input") : json_null());
    json_t *pp = json_object_get(spec, "params");
    json_object_set_new(o, "params", pp ? json_incref(pp) : json_object());
    json_decref(spec);
  }
  json_object_set_new(o, "worker", j->worker[0] && j->state == KQ_RUNNING ? json_string(j->worker) : json_null());
  json_t *plan = j->plan ? json_loads(j->plan, 0, &je) : NULL;
  if (plan) json_object_del(plan, "rows");         /* the whole table: GET .../plan or `kiln plan` */
  json_object_set_new(o, "plan", plan ? plan : json_null());
  if (j->err_class[0] && j->state != KQ_SUCCEEDED) {  /* sanitized again: rows written by older versions */
    char cls[64], msg[sizeof j->err_msg * 4 + 1];
    json_object_set_new(o, "error", json_pack("{s:s, s:s}", "class", kiln_utf8_sanitize(j->err_class, cls, sizeof cls), "message",
                                              kiln_utf8_sanitize(j->err_msg, msg, sizeof msg)));
  }
  else json_object_set_new(o, "error", json_null());
  if (j->webhook) {
    static const char *const hs[] = {"none", "pending", "delivered", "failed"};
    json_object_set_new(o, "webhook", json_pack("{s:s, s:s, s:i}", "url", j->webhook, "state",
                                                hs[(unsigned)j->hook_state < 4 ? j->hook_state : 0], "attempts",
                                                j->hook_attempts));
  }
  return o;
}

typedef struct chunk_keys { char k[64][300]; int n; } chunk_keys;

static int chunk_cb(void *arg, const char *key, const ks_stat *st) {
  (void)st;
  chunk_keys *c = arg;
  const char *slash = strrchr(key, '/');
  if (slash && !strncmp(slash + 1, "chunk-", 6) && c->n < 64) snprintf(c->k[c->n++], sizeof c->k[0], "%s", key);
  return 0;
}

int ke_drop_chunks(ks_store *s, const char *job_id) {
  char prefix[96];
  snprintf(prefix, sizeof prefix, "jobs/%s/", job_id);
  int total = 0;
  for (int round = 0; round < 64; round++) {      /* 64 keys a round: any number of chunks */
    chunk_keys *c = calloc(1, sizeof *c);
    if (!c) return total;
    kiln_err e = {0};
    if (ks_list(s, prefix, chunk_cb, c, &e) < 0) c->n = 0;
    int n = c->n, gone = 0;
    for (int i = 0; i < n; i++) gone += ks_delete(s, c->k[i], &e) == 0;
    free(c);
    total += gone;
    if (n < 64 || gone == 0) break;
  }
  return total;
}

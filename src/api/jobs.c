/* jobs.c — the engine's routes (docs/http.md has the shapes):
 *   GET    /v1/functions                 contracts, resources, live stats
 *   GET    /v1/functions/{name}
 *   POST   /v1/functions/{name}/spawn    202 {"job_id"}
 *   POST   /v1/functions/{name}/call     200 the ended job, or 303 to it after ?wait=S (default 150)
 *   GET    /v1/jobs?state=&fn=&limit=
 *   GET    /v1/jobs/{id}
 *   DELETE /v1/jobs/{id}                 cancel
 *   GET    /v1/jobs/{id}/events          Server-Sent Events until the end
 *   GET    /v1/usage?since=YYYY-MM-DD    cost per function per day
 *   GET    /metrics                      Prometheus text
 * A job body is {"input": KEY | {"base64": ...}, "params": {...},
 * "webhook": URL}; everything in it is checked before anything is queued,
 * and every refusal names what is wrong. The flat form hosted platforms'
 * clients send, {"video_bytes": BASE64, PARAM: VALUE, ...}, is the same job
 * (the other members are its params); its call answers {"video_bytes":
 * BASE64 of the output, "stats": {...}, "cost": {...}, "job_id": ...}. */
#include "api/http.h"
#include "engine/planner.h"

#include <stdarg.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/b64.h"
#include "util/fs.h"
#include "util/log.h"

static int64_t p50(int64_t *v, int n) {
  if (n <= 0) return -1;
  for (int i = 1; i < n; i++)                    /* n <= 100: insertion sort */
    for (int k = i; k > 0 && v[k - 1] > v[k]; k--) { int64_t t = v[k]; v[k] = v[k - 1]; v[k - 1] = t; }
  return v[n / 2];
}

typedef struct runs { int64_t ms[100], mspf[100]; int n, nf; } runs;
static int runs_cb(void *arg, int64_t run_ms, int64_t frames) {
  runs *r = arg;
  if (r->n < 100) r->ms[r->n++] = run_ms;
  if (frames > 0 && r->nf < 100) r->mspf[r->nf++] = run_ms * 1000 / frames;   /* microseconds per frame */
  return 0;
}

typedef struct wstats { int starting, idle, busy, cold; int64_t cold_ms[100]; int ncold; } wstats;
static int wstats_cb(void *arg, const kq_worker *w) {
  wstats *s = arg;
  if (w->state == KQ_W_STARTING) s->starting++;
  else if (w->state == KQ_W_IDLE) s->idle++;
  else if (w->state == KQ_W_BUSY) s->busy++;
  if (w->ready_ms > 0) {
    s->cold++;
    if (s->ncold < 100) s->cold_ms[s->ncold++] = w->ready_ms - w->started_ms;
  }
  return 0;
}

static json_t *fn_json(kiln_server *s, kq *q, const ke_fnconf *fc) {
  json_t *o = kf_describe(fc->fn);
  json_object_set_new(o, "resources", kf_resources_json(&fc->res));
  if (fc->fn->chunkable) {                         /* the planner's cost model: parameters and recent error */
    ke_model m;
    kiln_err me = {0};
    ke_model_load(q, fc, &m, &me);
    json_object_set_new(o, "model", ke_model_json(&m));
  }
  int units = 1;
  json_object_set_new(o, "usd_per_second", json_real(ke_price_per_s(s->cfg, &fc->res, &units)));
  kiln_err e = {0};
  runs r;
  memset(&r, 0, sizeof r);
  kq_recent_runs(q, fc->fn->name, 100, runs_cb, &r, &e);
  wstats w;
  memset(&w, 0, sizeof w);
  kq_worker_list(q, fc->fn->name, 0, wstats_cb, &w, &e);
  int64_t counts[6];
  kq_counts(q, fc->fn->name, counts, &e);
  int64_t run50 = p50(r.ms, r.n), mspf = p50(r.mspf, r.nf), cold50 = p50(w.cold_ms, w.ncold);
  json_t *jobs = json_object();
  for (int i = 0; i < 6; i++) json_object_set_new(jobs, kq_state_name((kq_state)i), json_integer(counts[i]));
  json_object_set_new(o, "stats",
                      json_pack("{s:{s:i, s:i, s:i}, s:i, s:o, s:o, s:o, s:o}", "workers", "starting", w.starting,
                                "warm", w.idle, "busy", w.busy, "cold_starts", w.cold, "cold_start_ms_p50",
                                cold50 >= 0 ? json_integer(cold50) : json_null(), "run_ms_p50",
                                run50 >= 0 ? json_integer(run50) : json_null(), "ms_per_frame",
                                mspf >= 0 ? json_real((double)mspf / 1000) : json_null(), "jobs", jobs));
  return o;
}

/* {"job_id","state","url"} with a Location header: 202 after a spawn, 303 from a call. */
static enum MHD_Result job_ref(kiln_server *s, struct MHD_Connection *c, unsigned status, const char *id,
                               const char *state, const char *loc) {
  return kh_respond(s, c, status, json_pack("{s:s, s:s, s:s}", "job_id", id, "state", state, "url", loc), "Location", loc);
}

/* The flat contract's answer for an ended job o (taken): {"video_bytes"
 * (the output, base64), "stats", "cost", "job_id", "state"}; a failed job
 * is its error with 400 (bad input) or 500. */
static enum MHD_Result flat_answer(kiln_server *s, struct MHD_Connection *c, json_t *o) {
  const char *state = json_string_value(json_object_get(o, "state"));
  if (!state || strcmp(state, "succeeded")) {
    const json_t *er = json_object_get(o, "error");
    const char *cls = json_string_value(json_object_get(er, "class"));
    const char *msg = json_string_value(json_object_get(er, "message"));
    json_t *a = json_pack("{s:s, s:s, s:{s:s, s:s}}", "job_id", json_string_value(json_object_get(o, "job_id")), "state",
                          state ? state : "failed", "error", "code", cls ? cls : "failed", "message",
                          msg ? msg : "the job did not succeed");
    unsigned status = cls && !strcmp(cls, "bad_input") ? 400 : cls && !strcmp(cls, "cancelled") ? 409 : 500;
    json_decref(o);
    return kh_json(s, c, status, a);
  }
  const json_t *res = json_object_get(o, "result");
  const char *key = json_string_value(json_object_get(json_array_get(json_object_get(res, "outputs"), 0), "key"));
  kiln_err e = {0};
  unsigned char *raw = NULL;
  char *b64 = NULL;
  enum MHD_Result ret;
  ks_stat st;
  ks_get *g = NULL;
  size_t n = 0;
  int ok = key && ks_stat_key(s->store, key, &st, &e) == 0 && (raw = malloc(st.size > 0 ? (size_t)st.size : 1)) &&
           (st.size == 0 || ks_get_open(s->store, key, 0, -1, &g, &e) == 0);
  while (ok && g && n < (size_t)st.size) {       /* the output from the store, whichever backend holds it */
    ssize_t k = ks_get_read(g, raw + n, (size_t)st.size - n, &e);
    if (k <= 0) ok = 0;
    else n += (size_t)k;
  }
  ks_get_close(g);
  if (!ok || !(b64 = ku_b64_encode(raw, n))) {
    ret = kh_error(s, c, 500, "internal", "the output of job %s cannot be read", json_string_value(json_object_get(o, "job_id")));
    goto out;
  }
  json_t *a = json_pack("{s:s, s:O, s:O, s:O, s:O}", "video_bytes", b64, "stats", json_object_get(res, "stats"), "cost",
                        json_object_get(o, "cost"), "job_id", json_object_get(o, "job_id"), "state", json_object_get(o, "state"));
  ret = kh_json(s, c, 200, a);
out:
  free(raw);
  free(b64);
  json_decref(o);
  return ret;
}

/* A failed queue operation: 503 while the database cannot be reached (the
 * client may try again), else 500; the message names the database. */
static enum MHD_Result queue_error(kiln_server *s, struct MHD_Connection *c, int code, const kiln_err *e) {
  if (code == KILN_EUNAVAIL) return kh_error(s, c, 503, "unavailable", "%s", e->msg);
  return kh_error(s, c, 500, "internal", "%s", e->msg);
}

/* A `call` whose job has not ended: answered with the job once it ends,
 * 303 to it at the deadline (or when the server stops); else parked until
 * the job changes (the server's watcher), no thread held. */
enum MHD_Result kh_call_poll(kiln_server *s, struct MHD_Connection *c, req *rq) {
  kiln_err e = {0};
  snprintf(rq->w.id, sizeof rq->w.id, "%s", rq->wait_id);
  rq->w.gen = kh_changes(s, rq->wait_id);         /* before the look: a change after it resumes the wait at once */
  kq *q = kh_q_get(s, &e);
  if (q) {
    kq_job j;
    int r = kq_get(q, rq->wait_id, &j, &e);
    if (r == 0 && j.state >= KQ_SUCCEEDED) {
      char base[300];
      kh_base_url(s, c, base, sizeof base);
      json_t *o = ke_job_json(&j, s->store, base, ke_now_ms());
      kq_job_release(&j);
      kh_q_put(s, q);
      rq->waiting = 0;
      return rq->flat ? flat_answer(s, c, o) : kh_json(s, c, 200, o);
    }
    if (r == 0) kq_job_release(&j);
    kh_q_put(s, q);
  }
  int64_t left = rq->deadline_ms - ke_now_ms();
  if (left > 0 && kh_suspend(s, c, &rq->w, left) == 0) return MHD_YES;
  rq->waiting = 0;
  char loc[64];
  snprintf(loc, sizeof loc, "/v1/jobs/%s", rq->wait_id);
  return job_ref(s, c, 303, rq->wait_id, "running", loc);
}

/* The committer's done (another thread): the connection's answer is ready. */
static void submission_done(ke_submission *sb) {
  req *rq = sb->arg;
  kiln_server *s = rq->srv;
  rq->submitting = 2;
  MHD_resume_connection(rq->conn);                /* rq may be gone once resumed: nothing reads it after */
  pthread_mutex_lock(&s->wmu);
  s->submitting--;
  pthread_cond_broadcast(&s->wcv);
  pthread_mutex_unlock(&s->wmu);
}

/* Parks the connection until the submitter has committed rq->sub (an
 * event-loop thread never waits on an fsync). -1 when the server is
 * stopping: the caller submits itself. */
static int park_submission(kiln_server *s, struct MHD_Connection *c, req *rq) {
  pthread_mutex_lock(&s->wmu);
  if (s->stopping) { pthread_mutex_unlock(&s->wmu); return -1; }
  s->submitting++;
  pthread_mutex_unlock(&s->wmu);
  rq->sub.done = submission_done;
  rq->sub.arg = rq;
  rq->submitting = 1;
  MHD_suspend_connection(c);                      /* before the hand-off: done may resume it at once */
  int r = ke_submit_async(s->submitter, &rq->sub, &rq->sub.err);
  if (r < 0) {
    rq->sub.rc = r;
    submission_done(&rq->sub);                    /* answered from the handler's next call */
  }
  return 0;
}

/* The answer to a submission, once committed (or not): 503 naming why (and
 * the inline input it stored removed), a `call`'s wait for its job, or 202. */
enum MHD_Result kh_submitted(kiln_server *s, struct MHD_Connection *c, req *rq) {
  rq->submitting = 0;
  if (rq->sub.rc < 0) {
    kiln_err e = {0};
    if (rq->sub_inline[0]) ks_delete(s->store, rq->sub_inline, &e);
    return kh_error(s, c, 503, "unavailable", "the job could not be queued: %s", rq->sub.err.msg);
  }
  const char *id = rq->sub.req.id;
  if (rq->sub.req.hold) ke_planner_kick(s->planner);
  else ke_scaler_kick(s->scaler, rq->sub.req.fn);
  if (rq->sub_call) {
    rq->waiting = 1;                               /* the worker is another process: watch the job's row */
    rq->deadline_ms = ke_now_ms() + (int64_t)(rq->sub_wait_s * 1000);
    snprintf(rq->wait_id, sizeof rq->wait_id, "%s", id);
    return kh_call_poll(s, c, rq);
  }
  char loc[64];
  snprintf(loc, sizeof loc, "/v1/jobs/%s", id);
  return job_ref(s, c, 202, id, "queued", loc);
}

/* Checks a job body and submits it. Returns MHD result having answered. */
static enum MHD_Result submit(kiln_server *s, struct MHD_Connection *c, kq *q, const ke_fnconf *fc, req *rq,
                              int call) {
  const kf_desc *fn = fc->fn;
  json_error_t je;
  json_t *b = rq->body_len ? json_loadb(rq->body, rq->body_len, 0, &je) : json_object();
  if (!b)
    return kh_error(s, c, 400, "bad_json", "request body is not valid JSON at line %d, column %d (byte %d): %s",
                    je.line, je.column, je.position, je.text);
  enum MHD_Result ret;
  json_t *params = NULL;
  char *spec_s = NULL;
  char in_key[KS_KEY_MAX + 1] = "";
  int stored_inline = 0;
  kiln_err e = {0};
  if (!json_is_object(b)) { ret = kh_error(s, c, 400, "bad_json", "request body must be a JSON object"); goto out; }
  int flat = json_object_get(b, "video_bytes") != NULL;
  if (flat) {                                      /* {"video_bytes": B64, params...} -> {"input": {"base64"}, "params"} */
    json_t *vb = json_object_get(b, "video_bytes");
    if (!json_is_string(vb)) { ret = kh_error(s, c, 400, "bad_request", "\"video_bytes\" must be a base64 string"); goto out; }
    json_t *nb = json_pack("{s:{s:O}, s:o}", "input", "base64", vb, "params", json_object());
    const char *fk;
    json_t *fv;
    json_object_foreach(b, fk, fv) {
      if (!strcmp(fk, "video_bytes")) continue;
      if (!strcmp(fk, "webhook") || !strcmp(fk, "plan")) json_object_set(nb, fk, fv);
      else json_object_set(json_object_get(nb, "params"), fk, fv);
    }
    json_decref(b);
    b = nb;
  }
  const char *b64name = flat ? "video_bytes" : "input.base64";
  const char *k;
  json_t *v;
  json_object_foreach(b, k, v) {
    if (strcmp(k, "input") && strcmp(k, "params") && strcmp(k, "webhook") && strcmp(k, "plan")) {
      ret = kh_error(s, c, 400, "bad_request",
                     "unknown member '%s' in the request body (known: input, params, webhook, plan)", k);
      goto out;
    }
  }
  json_t *plan = json_object_get(b, "plan");
  if (plan && !json_is_null(plan)) {
    json_t *ob = json_object_get(plan, "objective"), *ch = json_object_get(plan, "chunks");
    const char *pk;
    json_t *pv_;
    int bad = !json_is_object(plan);
    json_object_foreach(plan, pk, pv_) bad |= strcmp(pk, "objective") && strcmp(pk, "chunks");
    if (bad) {
      ret = kh_error(s, c, 400, "bad_param", "\"plan\" must be {\"objective\": \"...\", \"chunks\": N} (both optional)");
      goto out;
    }
    if (ob && (!json_is_string(ob) || ke_objective_check(json_string_value(ob), &e) < 0)) {
      ret = kh_error(s, c, 400, "bad_param", "plan.%s", json_is_string(ob) ? e.msg : "objective must be a string");
      goto out;
    }
    if (ch && (!json_is_integer(ch) || json_integer_value(ch) < 1 || json_integer_value(ch) > KE_PLAN_MAX ||
               (json_integer_value(ch) > 1 && !fn->chunkable))) {
      ret = kh_error(s, c, 400, "bad_param", "plan.chunks must be an integer from 1 to %d%s", KE_PLAN_MAX,
                     fn->chunkable ? "" : " (and 1 for a function that cannot be split)");
      goto out;
    }
  }
  json_t *in = json_object_get(b, "input");
  if (fn->no_input && in && !json_is_null(in)) {
    ret = kh_error(s, c, 400, "bad_request", "%s takes no input; leave \"input\" out", fn->name);
    goto out;
  }
  if (!fn->no_input && (!in || json_is_null(in))) {
    ret = kh_error(s, c, 400, "bad_request",
                   "\"input\" is required: the key of an uploaded object (PUT /v1/objects/{key}) or {\"base64\": \"...\"}");
    goto out;
  }
  const char *hook = NULL;
  json_t *hv = json_object_get(b, "webhook");
  if (hv && !json_is_null(hv)) {
    hook = json_string_value(hv);
    if (!hook || ke_webhook_url_check(hook, &e) < 0) {
      ret = kh_error(s, c, 400, "bad_request", "\"webhook\": %s", hook ? e.msg : "must be a string, an http:// or https:// URL");
      goto out;
    }
  }
  json_t *pv = json_object_get(b, "params");
  if (pv && !json_is_object(pv) && !json_is_null(pv)) {
    ret = kh_error(s, c, 400, "bad_param", "\"params\" must be a JSON object");
    goto out;
  }
  if (kf_validate(fn, json_is_object(pv) ? pv : NULL, &params, &e) < 0 || kf_check_remote(fn, params, &e) < 0) {
    ret = kh_error(s, c, 400, "bad_param", "%s", e.msg);
    goto out;
  }
  if (json_is_string(in)) {
    ks_stat st;
    if (ks_key_check(json_string_value(in), &e) < 0) { ret = kh_error(s, c, 400, "bad_key", "\"input\": %s", e.msg); goto out; }
    snprintf(in_key, sizeof in_key, "%s", json_string_value(in));
    if (ks_stat_key(s->store, in_key, &st, &e) < 0) {
      ret = kh_error(s, c, 400, "bad_input", "input object '%s' does not exist; upload it first with PUT /v1/objects/%s",
                     in_key, in_key);
      goto out;
    }
  } else if (json_is_object(in)) {
    const char *b64 = json_string_value(json_object_get(in, "base64"));
    if (!b64 || json_object_size(in) != 1) {
      ret = kh_error(s, c, 400, "bad_request", "\"input\" as an object must be {\"base64\": \"...\"}");
      goto out;
    }
    size_t n = strlen(b64);
    if ((long long)(n / 4 * 3) > s->inline_max) {
      ret = kh_error(s, c, 413, "too_large",
                     "inline base64 %s of about %zu bytes is over the limit of %lld bytes; upload the file with"
                     " PUT /v1/objects/{key} and pass its key as \"input\"", flat ? "video_bytes" : "input", n / 4 * 3,
                     (long long)s->inline_max);
      goto out;
    }
    uint8_t *raw = NULL;
    size_t rawn = 0;
    if (ku_b64_decode(b64, n, &raw, &rawn) < 0) {
      ret = kh_error(s, c, 400, "bad_request", "\"%s\" is not valid base64", b64name);
      goto out;
    }
    unsigned char rnd[8];
    char hex[17];
    RAND_bytes(rnd, sizeof rnd);
    kiln_hex(rnd, sizeof rnd, hex);
    snprintf(in_key, sizeof in_key, "uploads/%s/input", hex);
    ks_put *p = NULL;
    int r = ks_put_begin(s->store, in_key, &p, &e);
    if (r == 0) r = ks_put_write(p, raw, rawn, &e);
    if (r == 0) { r = ks_put_commit(p, &e); p = NULL; }
    if (p) ks_put_abort(p);
    free(raw);
    if (r < 0) { ret = kh_error(s, c, 500, "internal", "storing the inline input failed: %s", e.msg); goto out; }
    stored_inline = 1;
  } else if (in && !json_is_null(in)) {
    ret = kh_error(s, c, 400, "bad_request", "\"input\" must be an object key (a string) or {\"base64\": \"...\"}");
    goto out;
  }
  json_t *spec = json_pack("{s:o, s:O}", "input", in_key[0] ? json_string(in_key) : json_null(), "params", params);
  if (plan && json_is_object(plan)) json_object_set(spec, "plan", plan);
  /* the planner decides chunkable jobs; a function configured never to split goes straight to the queue */
  int hold = fn->chunkable && fn->shape && s->planner != NULL && fc->res.max_chunks != 1;
  spec_s = json_dumps(spec, JSON_COMPACT);
  json_decref(spec);
  double wait = 150;
  if (call) {                                     /* checked before anything is queued */
    const char *w = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "wait");
    char *end = NULL;
    if (w) wait = strtod(w, &end);
    if (w && (!*w || *end || !(wait >= 0 && wait <= 3600))) {   /* NaN fails both comparisons */
      if (stored_inline) ks_delete(s->store, in_key, &e);
      ret = kh_error(s, c, 400, "bad_param", "'wait' must be a number of seconds from 0 to 3600, got '%s'", KILN_CLIP(w, 40));
      goto out;
    }
  }
  rq->sub_spec = spec_s;
  spec_s = NULL;
  rq->sub_hook = hook ? strdup(hook) : NULL;
  rq->sub.req = (kq_submit_req){.fn = fn->name, .spec = rq->sub_spec, .max_retries = fc->res.retries,
                                .webhook = rq->sub_hook, .hold = hold};
  snprintf(rq->sub_inline, sizeof rq->sub_inline, "%s", stored_inline ? in_key : "");
  rq->sub_call = call;
  rq->sub_wait_s = wait;
  rq->flat = flat;
  rq->srv = s;
  rq->conn = c;
  if (s->submitter && park_submission(s, c, rq) == 0) { ret = MHD_YES; goto out; }
  rq->sub.rc = kq_submit_many(q, &rq->sub.req, 1, ke_now_ms(), &rq->sub.err);   /* no submitter, or stopping */
  ret = kh_submitted(s, c, rq);
out:
  free(spec_s);
  json_decref(params);
  json_decref(b);
  return ret;
}

/* ---- Server-Sent Events ---- */

typedef struct sse {
  kiln_server *s;
  struct MHD_Connection *c;
  kh_wait w;                    /* parked between looks at the queue */
  int64_t last_ms;              /* when bytes last went out: a keep-alive after 15 s of nothing */
  char id[KQ_ID_LEN];
  char base[300];
  int64_t seq;
  char *buf;                    /* pending bytes */
  size_t len, off;
  int ended;                    /* the end event is in buf */
} sse;

static void sse_append(sse *x, const char *t) {
  size_t n = strlen(t);
  char *nb = realloc(x->buf, x->len + n + 1);
  if (!nb) return;
  x->buf = nb;
  memcpy(x->buf + x->len, t, n + 1);
  x->len += n;
}

static int sse_event_cb(void *arg, int64_t seq, const char *kind, const char *data, int64_t ts) {
  sse *x = arg;
  json_error_t je;
  json_t *d = data ? json_loads(data, 0, &je) : NULL;
  if (!d) d = json_object();
  json_object_set_new(d, "job_id", json_string(x->id));
  json_t *eta = json_object_get(d, "eta_ms");
  if (eta) {
    json_int_t v = json_integer_value(eta);
    json_object_set_new(d, "eta_s", v >= 0 ? json_real((double)v / 1000) : json_null());
    json_object_del(d, "eta_ms");
  }
  json_int_t done = json_integer_value(json_object_get(d, "frames_done"));
  json_int_t total = json_integer_value(json_object_get(d, "frames_total"));
  if (json_object_get(d, "frames_total"))
    json_object_set_new(d, "percent", json_real(total > 0 ? (double)(int64_t)(1000.0 * (double)done / (double)total) / 10 : 0));
  char *t = json_dumps(d, JSON_COMPACT | JSON_REAL_PRECISION(10));
  json_decref(d);
  char head[128];
  snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)seq, kind);
  sse_append(x, head);
  sse_append(x, t ? t : "{}");
  sse_append(x, "\n\n");
  free(t);
  x->seq = seq;
  (void)ts;
  return 0;
}

/* The stream's content reader: what is pending, else one look at the queue
 * (state first, then events: no end is missed); with nothing new, the
 * connection is parked until the job changes (the watcher: workers are
 * other processes, other replicas may hold the job) or a keep-alive is due,
 * and 0 is returned: MHD calls again once the ticker resumes it. */
static ssize_t sse_reader(void *cls, uint64_t pos, char *out, size_t max) {
  sse *x = cls;
  (void)pos;
  if (x->off >= x->len) {
    if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    free(x->buf);
    x->buf = NULL;
    x->len = x->off = 0;
    kiln_err e = {0};
    snprintf(x->w.id, sizeof x->w.id, "%s", x->id);
    x->w.gen = kh_changes(x->s, x->id);           /* before the look (kh_suspend) */
    kq *q = kh_q_get(x->s, &e);
    if (!q) return MHD_CONTENT_READER_END_WITH_ERROR;
    kq_job j;
    int have = kq_get(q, x->id, &j, &e) == 0;
    int r = kq_events(q, x->id, x->seq, sse_event_cb, x, &e);
    kh_q_put(x->s, q);
    if (r < 0) {
      if (have) kq_job_release(&j);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (have && j.state >= KQ_SUCCEEDED) {
      json_t *o = ke_job_json(&j, x->s->store, x->base, ke_now_ms());
      char *t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
      json_decref(o);
      sse_append(x, "event: end\ndata: ");
      sse_append(x, t ? t : "{}");
      sse_append(x, "\n\n");
      free(t);
      x->ended = 1;
    }
    if (have) kq_job_release(&j);
    if (x->len == 0) {
      if (ke_now_ms() - x->last_ms >= 15000) sse_append(x, ": keep-alive\n\n");
      else if (kh_suspend(x->s, x->c, &x->w, 15000 - (ke_now_ms() - x->last_ms)) == 0) return 0;
      else return MHD_CONTENT_READER_END_OF_STREAM;   /* the server is stopping */
    }
  }
  size_t n = x->len - x->off;
  if (n > max) n = max;
  memcpy(out, x->buf + x->off, n);
  x->off += n;
  x->last_ms = ke_now_ms();
  return (ssize_t)n;
}

static void sse_free(void *cls) {
  sse *x = cls;
  free(x->buf);
  free(x);
}

static enum MHD_Result events(kiln_server *s, struct MHD_Connection *c, const char *id, kq *q_probe) {
  kq_job j;
  kiln_err e = {0};
  if (kq_get(q_probe, id, &j, &e) < 0) return kh_error(s, c, 404, "not_found", "no job '%s'", KILN_CLIP(id, 40));
  kq_job_release(&j);
  sse *x = calloc(1, sizeof *x);
  if (!x) return kh_error(s, c, 500, "internal", "out of memory");
  x->s = s;
  snprintf(x->id, sizeof x->id, "%s", id);
  kh_base_url(s, c, x->base, sizeof x->base);
  const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
  if (last) x->seq = strtoll(last, NULL, 10);
  x->c = c;
  x->last_ms = ke_now_ms();
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, x, sse_free);
  if (!r) { free(x); return MHD_NO; }
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  __atomic_fetch_add(&s->requests[2], 1, __ATOMIC_RELAXED);
  return ret;
}

/* ---- lists, usage, metrics ---- */

typedef struct listctx { json_t *arr; kiln_server *s; const char *base; } listctx;
static int list_cb(void *arg, const kq_job *j) {
  listctx *l = arg;
  json_array_append_new(l->arr, ke_job_json(j, l->s->store, l->base, ke_now_ms()));
  return 0;
}

typedef struct usage { json_t *rows; double rs, usd; int64_t jobs; } usage;
static int usage_cb(void *arg, const char *day, const char *fn, int64_t jobs, double rs, double usd) {
  usage *u = arg;
  json_array_append_new(u->rows, json_pack("{s:s, s:s, s:I, s:f, s:f}", "day", day, "fn", fn, "jobs", (json_int_t)jobs,
                                           "resource_seconds", rs, "usd", usd));
  u->rs += rs;
  u->usd += usd;
  u->jobs += jobs;
  return 0;
}

static int64_t month_start_ms(int64_t now) {
  time_t t = (time_t)(now / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return (int64_t)timegm(&tm) * 1000;
}

static enum MHD_Result do_usage(kiln_server *s, struct MHD_Connection *c, kq *q) {
  const char *since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
  int64_t now = ke_now_ms(), from = month_start_ms(now);
  if (since) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(since, "%Y-%m-%d", &tm);
    if (!end || *end) return kh_error(s, c, 400, "bad_param", "'since' must be a date YYYY-MM-DD, got '%s'", KILN_CLIP(since, 40));
    from = (int64_t)timegm(&tm) * 1000;
  }
  char day[16];
  time_t ft = (time_t)(from / 1000);
  struct tm ftm;
  gmtime_r(&ft, &ftm);
  strftime(day, sizeof day, "%Y-%m-%d", &ftm);
  usage u = {json_array(), 0, 0, 0};
  kiln_err e = {0};
  if (kq_usage(q, from, usage_cb, &u, &e) < 0) { json_decref(u.rows); return queue_error(s, c, e.code, &e); }
  usage m = {json_array(), 0, 0, 0};
  kq_usage(q, month_start_ms(now), usage_cb, &m, &e);
  json_decref(m.rows);
  json_t *o = json_pack("{s:s, s:o, s:{s:I, s:f, s:f}, s:f}", "since", day, "usage", u.rows, "total", "jobs",
                        (json_int_t)u.jobs, "resource_seconds", u.rs, "usd", u.usd, "month_usd", m.usd);
  json_object_set_new(o, "budget_usd_month", s->cfg->budget_usd_month > 0 ? json_real(s->cfg->budget_usd_month) : json_null());
  return kh_json(s, c, 200, o);
}

typedef struct mbuf { char *p; size_t n, cap; } mbuf;
static void mprintf(mbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mprintf(mbuf *m, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int w = vsnprintf(m->p ? m->p + m->n : NULL, m->p ? m->cap - m->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    if (m->p && m->n + (size_t)w < m->cap) { m->n += (size_t)w; return; }
    size_t cap = (m->cap + (size_t)w + 1) * 2;
    char *np = realloc(m->p, cap);
    if (!np) return;
    m->p = np;
    m->cap = cap;
  }
}

static enum MHD_Result do_metrics(kiln_server *s, struct MHD_Connection *c, kq *q) {
  mbuf m = {0};
  kiln_err e = {0};
  mprintf(&m, "# HELP kiln_up The server answers.\n# TYPE kiln_up gauge\nkiln_up 1\n");
  mprintf(&m, "# HELP kiln_jobs Jobs in the queue by function and state.\n# TYPE kiln_jobs gauge\n");
  for (int f = 0; f < s->cfg->nfn; f++) {
    int64_t counts[6];
    kq_counts(q, s->cfg->fns[f].fn->name, counts, &e);
    for (int i = 0; i < 6; i++)
      mprintf(&m, "kiln_jobs{fn=\"%s\",state=\"%s\"} %lld\n", s->cfg->fns[f].fn->name, kq_state_name((kq_state)i),
              (long long)counts[i]);
  }
  mprintf(&m, "# HELP kiln_workers Worker processes by function and state.\n# TYPE kiln_workers gauge\n");
  mprintf(&m, "# HELP kiln_cold_starts Workers started (model loaded) in the last day.\n# TYPE kiln_cold_starts gauge\n");
  for (int f = 0; f < s->cfg->nfn; f++) {
    wstats w;
    memset(&w, 0, sizeof w);
    const char *name = s->cfg->fns[f].fn->name;
    kq_worker_list(q, name, 0, wstats_cb, &w, &e);
    mprintf(&m, "kiln_workers{fn=\"%s\",state=\"starting\"} %d\nkiln_workers{fn=\"%s\",state=\"warm\"} %d\n"
                "kiln_workers{fn=\"%s\",state=\"busy\"} %d\nkiln_cold_starts{fn=\"%s\"} %d\n",
            name, w.starting, name, w.idle, name, w.busy, name, w.cold);
  }
  usage u = {json_array(), 0, 0, 0};
  kq_usage(q, 0, usage_cb, &u, &e);
  mprintf(&m, "# HELP kiln_cost_usd_total Cost of ended jobs.\n# TYPE kiln_cost_usd_total counter\n");
  json_t *sum = json_object();
  size_t i;
  json_t *row;
  json_array_foreach(u.rows, i, row) {
    const char *fn = json_string_value(json_object_get(row, "fn"));
    json_t *acc = json_object_get(sum, fn);
    if (!acc) { acc = json_pack("[f, f]", 0.0, 0.0); json_object_set_new(sum, fn, acc); }
    json_array_set_new(acc, 0, json_real(json_real_value(json_array_get(acc, 0)) + json_number_value(json_object_get(row, "usd"))));
    json_array_set_new(acc, 1, json_real(json_real_value(json_array_get(acc, 1)) +
                                         json_number_value(json_object_get(row, "resource_seconds"))));
  }
  const char *fn;
  json_t *acc;
  json_object_foreach(sum, fn, acc) mprintf(&m, "kiln_cost_usd_total{fn=\"%s\"} %.9f\n", fn, json_real_value(json_array_get(acc, 0)));
  mprintf(&m, "# HELP kiln_resource_seconds_total Resource-seconds of ended jobs.\n# TYPE kiln_resource_seconds_total counter\n");
  json_object_foreach(sum, fn, acc)
    mprintf(&m, "kiln_resource_seconds_total{fn=\"%s\"} %.3f\n", fn, json_real_value(json_array_get(acc, 1)));
  json_decref(sum);
  json_decref(u.rows);
  mprintf(&m, "# HELP kiln_http_responses_total Responses by status class.\n# TYPE kiln_http_responses_total counter\n");
  for (int k = 1; k < 6; k++)
    mprintf(&m, "kiln_http_responses_total{code=\"%dxx\"} %llu\n", k,
            (unsigned long long)__atomic_load_n(&s->requests[k], __ATOMIC_RELAXED));
  struct MHD_Response *r = MHD_create_response_from_buffer(m.n, m.p ? m.p : (char *)"", m.p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) { free(m.p); return MHD_NO; }
  MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  __atomic_fetch_add(&s->requests[2], 1, __ATOMIC_RELAXED);
  return ret;
}

static int task_cb(void *arg, const kq_job *j) {
  json_t *t = json_pack("{s:s, s:s, s:i, s:s, s:I, s:I, s:i, s:f}", "id", j->id, "kind", j->kind == KQ_JOIN ? "join" : "chunk", "part",
                        j->part, "state", kq_state_name(j->state), "frames_done", (json_int_t)j->frames_done,
                        "frames_total", (json_int_t)j->frames_total, "attempts", j->attempts, "usd", j->usd);
  /* the worker that runs it, or ran it last (FN-PID@HOST: which host did which chunk) */
  json_object_set_new(t, "worker", j->worker[0] ? json_string(j->worker) : json_null());
  if (j->err_class[0] && j->state != KQ_SUCCEEDED)
    json_object_set_new(t, "error", json_pack("{s:s, s:s}", "class", j->err_class, "message", j->err_msg));
  json_array_append_new(arg, t);
  return 0;
}

static int valid_id(const char *id) {
  if (strlen(id) != 32) return 0;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

static enum MHD_Result route(kiln_server *s, struct MHD_Connection *c, const char *url, const char *method, req *rq,
                             kq *q) {
  char base[300];
  kh_base_url(s, c, base, sizeof base);
  int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
  kiln_err e = {0};
  if (!strcmp(url, "/metrics")) {
    if (!get) return kh_error(s, c, 405, "method_not_allowed", "/metrics takes GET");
    return do_metrics(s, c, q);
  }
  if (!strcmp(url, "/v1/usage")) {
    if (!get) return kh_error(s, c, 405, "method_not_allowed", "/v1/usage takes GET");
    return do_usage(s, c, q);
  }
  if (!strcmp(url, "/v1/functions")) {
    if (!get) return kh_error(s, c, 405, "method_not_allowed", "/v1/functions takes GET");
    json_t *arr = json_array();
    for (int i = 0; i < s->cfg->nfn; i++)
      if (!s->cfg->fns[i].fn->internal) json_array_append_new(arr, fn_json(s, q, &s->cfg->fns[i]));
    return kh_json(s, c, 200, json_pack("{s:o}", "functions", arr));
  }
  if (!strncmp(url, "/v1/functions/", 14)) {
    char name[96];
    const char *rest = url + 14, *slash = strchr(rest, '/');
    snprintf(name, sizeof name, "%.*s", (int)(slash ? (size_t)(slash - rest) : strlen(rest)), rest);
    const ke_fnconf *fc = ke_fn(s->cfg, name);
    if (fc && fc->fn->internal) fc = NULL;
    if (!fc) {
      char list[256] = "";
      for (int i = 0, k = 0; i < s->cfg->nfn; i++) {
        if (s->cfg->fns[i].fn->internal) continue;
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", k++ ? ", " : "", s->cfg->fns[i].fn->name);
      }
      return kh_error(s, c, 404, "unknown_function", "no function '%s' (known: %s)", KILN_CLIP(name, 60), list);
    }
    if (!slash) {
      if (!get) return kh_error(s, c, 405, "method_not_allowed", "GET /v1/functions/%s, or POST .../spawn or .../call", name);
      return kh_json(s, c, 200, fn_json(s, q, fc));
    }
    int call = !strcmp(slash, "/call");
    if (!call && strcmp(slash, "/spawn") != 0)
      return kh_error(s, c, 404, "not_found", "no route %s %s (POST .../spawn or .../call)", KILN_CLIP(method, 20), KILN_CLIP(url, 200));
    if (!post) return kh_error(s, c, 405, "method_not_allowed", "%s takes POST", url);
    return submit(s, c, q, fc, rq, call);
  }
  if (!strcmp(url, "/v1/jobs")) {
    if (!get) return kh_error(s, c, 405, "method_not_allowed", "/v1/jobs takes GET");
    const char *st = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
    const char *fn = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fn");
    const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    int state = -1;
    if (st && *st) {
      for (int i = 0; i < 6; i++)
        if (!strcmp(st, kq_state_name((kq_state)i))) state = i;
      if (state < 0)
        return kh_error(s, c, 400, "bad_param",
                        "'state' must be queued, running, retrying, succeeded, failed or cancelled, got '%s'", KILN_CLIP(st, 40));
    }
    char *end = NULL;
    long limit = lim ? strtol(lim, &end, 10) : 100;
    if (lim && (*end || limit < 1 || limit > 1000)) return kh_error(s, c, 400, "bad_param", "'limit' must be 1 to 1000");
    listctx l = {json_array(), s, base};
    if (kq_list(q, state, fn && *fn ? fn : NULL, (int)limit, list_cb, &l, &e) < 0) {
      json_decref(l.arr);
      return queue_error(s, c, e.code, &e);
    }
    return kh_json(s, c, 200, json_pack("{s:o}", "jobs", l.arr));
  }
  if (!strncmp(url, "/v1/jobs/", 9)) {
    char id[64];
    const char *rest = url + 9, *slash = strchr(rest, '/');
    snprintf(id, sizeof id, "%.*s", (int)(slash ? (size_t)(slash - rest) : strlen(rest)), rest);
    if (!valid_id(id)) return kh_error(s, c, 404, "not_found", "no job '%s' (job ids are 32 hex characters)", KILN_CLIP(id, 40));
    if (slash) {
      if (strcmp(slash, "/events") != 0) return kh_error(s, c, 404, "not_found", "no route %s %s", KILN_CLIP(method, 20), KILN_CLIP(url, 200));
      if (!get) return kh_error(s, c, 405, "method_not_allowed", "%s takes GET", url);
      return events(s, c, id, q);
    }
    if (del) {
      int r = kq_cancel(q, id, ke_now_ms(), &e);
      if (r == KILN_ENOENT) return kh_error(s, c, 404, "not_found", "no job '%s'", id);
      if (r == KILN_EINVAL) return kh_error(s, c, 409, "conflict", "%s", e.msg);
      if (r < 0) return queue_error(s, c, r, &e);
      ke_drop_chunks(s->store, id);                /* a chunked job's finished chunks; running ones remove their own */
      ke_hooks_kick(s->hooks);
    } else if (!get) {
      return kh_error(s, c, 405, "method_not_allowed", "/v1/jobs/{id} takes GET or DELETE");
    }
    kq_job j;
    int r = kq_get(q, id, &j, &e);
    if (r == KILN_ENOENT) return kh_error(s, c, 404, "not_found", "no job '%s'", id);
    if (r < 0) return queue_error(s, c, r, &e);
    json_t *o = ke_job_json(&j, s->store, base, ke_now_ms());
    if (j.kind == KQ_SPLIT) {                      /* its chunks and join */
      json_t *tasks = json_array();
      kq_children(q, j.id, task_cb, tasks, &e);
      json_object_set_new(o, "tasks", tasks);
    }
    kq_job_release(&j);
    return kh_json(s, c, 200, o);
  }
  return (enum MHD_Result)-1;
}

int kh_jobs_route(kiln_server *s, struct MHD_Connection *c, const char *url, const char *method, req *rq) {
  if (strcmp(url, "/metrics") && strncmp(url, "/v1/functions", 13) && strncmp(url, "/v1/jobs", 8) &&
      strcmp(url, "/v1/usage"))
    return -1;
  kiln_err e = {0};
  kq *q = kh_q_get(s, &e);
  if (!q) return kh_error(s, c, 503, "unavailable", "the queue database cannot be opened: %s", e.msg);
  int r = (int)route(s, c, url, method, rq, q);
  kh_q_put(s, q);
  return r;
}

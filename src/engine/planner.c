/* planner.c — the chunk planner (see planner.h), over the cost model of
 * cost.c.
 *
 * Prediction for N chunks when W workers can run at once (max_workers,
 * within the slots that other functions' live workers leave free; `warm`
 * of them already running):
 *   N = 1:  wall = cold + task(F)
 *   N > 1:  wall = orchestration + cold + ceil(N / W) x task(F / N) + join(F)
 *   resource-seconds = units x (N x task(F/N) + cold x min(N, W)) + join(F) on one core
 * where cold counts only when fewer than min(N, W) workers are warm. More
 * chunks than W only queue: the waves term makes them slower, not faster.
 *
 * Objectives: time (fastest; within 2% the fewer chunks), cost (cheapest),
 * deadline=S (cheapest predicted to finish within S seconds, else the
 * fastest), budget=USD (fastest within USD, else the cheapest), and the
 * default, balanced: the cheapest plan within 10% of the fastest. */
#include "engine/planner.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "util/log.h"
#include "util/loop.h"

int ke_chunk_ranges(int64_t frames, int64_t gop, int n, int64_t *starts) {
  if (gop < 1) gop = 1;
  int k = 0;
  starts[k++] = 0;
  for (int i = 1; i < n; i++) {
    int64_t b = llround((double)frames * i / n / (double)gop) * gop;
    if (b > starts[k - 1] && b < frames) starts[k++] = b;
  }
  starts[k] = frames;
  return k;
}

int ke_objective_check(const char *o, kiln_err *e) {
  if (!o || !*o || !strcmp(o, "balanced") || !strcmp(o, "time") || !strcmp(o, "cost")) return 0;
  char *end;
  if (!strncmp(o, "deadline=", 9) && strtod(o + 9, &end) > 0 && !*end) return 0;
  if (!strncmp(o, "budget=", 7) && strtod(o + 7, &end) > 0 && !*end) return 0;
  return kiln_fail(e, KILN_EPARAM,
                   "objective '%s' is not one of balanced, time, cost, deadline=SECONDS, budget=USD", o);
}


int ke_plan_make(const ke_config *c, const ke_fnconf *fc, const ke_model *m, int64_t frames, double mpix, int runnable,
                 int warm, const char *objective, int force_n, ke_plan *p, kiln_err *e) {
  int r = ke_objective_check(objective, e);
  if (r < 0) return r;
  int64_t keep_gop = p->gop, keep_overlap = p->overlap;   /* set by the caller, or 0 */
  memset(p, 0, sizeof *p);
  p->gop = keep_gop;
  p->overlap = keep_overlap;
  snprintf(p->fn, sizeof p->fn, "%s", fc->fn->name);
  snprintf(p->objective, sizeof p->objective, "%s", objective && *objective ? objective : "balanced");
  p->frames = frames;
  p->mpix = mpix;
  p->runnable = runnable > 0 ? runnable : 1;
  p->warm = warm;
  int units = 1;
  double price = ke_price_per_s(c, &fc->res, &units);
  json_t *cpu = json_object_get(c->prices, "cpu");
  double core_price = cpu ? json_number_value(cpu) : 0;
  int maxn = !fc->fn->chunkable ? 1 : fc->res.max_chunks > 0 ? fc->res.max_chunks : fc->res.max_workers;
  if (force_n > maxn && fc->fn->chunkable) maxn = force_n;
  if (maxn > KE_PLAN_MAX) maxn = KE_PLAN_MAX;
  int64_t gop = p->gop > 1 ? p->gop : 1;            /* no more chunks than keyframe intervals */
  int64_t intervals = (frames + gop - 1) / gop;
  if (intervals < maxn) maxn = intervals > 0 ? (int)intervals : 1;
  for (int n = 1; n <= maxn; n++) {
    ke_plan_row *row = &p->rows[p->nrows++];
    int w = n < p->runnable ? n : p->runnable;
    double cold = warm >= w ? 0 : m->cold_ms;
    double chunk = ke_model_task_ms(m, (double)frames / n + (n > 1 ? (double)p->overlap : 0), mpix);
    double waves = ceil((double)n / p->runnable);
    double mb = mpix > 0 ? (double)frames * m->mb_per_frame * (m->frame_mpix > 0 ? mpix / m->frame_mpix : 1) : 0;
    double join = n > 1 ? m->join_ms + m->join_ms_per_mb * mb : 0;
    row->n = n;
    row->wall_ms = n == 1 ? cold + chunk : m->orchestration_ms + cold + waves * chunk + join;
    double unit_s = (n * chunk + cold * w) / 1000;
    row->resource_s = unit_s * units + join / 1000;
    row->usd = unit_s * price + join / 1000 * core_price;
  }
  for (int i = 0; i < p->nrows; i++) p->rows[i].speedup = p->rows[0].wall_ms / p->rows[i].wall_ms;
  int fastest = 0, cheapest = 0;
  for (int i = 1; i < p->nrows; i++) {
    if (p->rows[i].wall_ms < p->rows[fastest].wall_ms * 0.98) fastest = i;
    if (p->rows[i].usd < p->rows[cheapest].usd) cheapest = i;
  }
  const char *o = p->objective;
  int pick = fastest;
  if (force_n > 0) {
    pick = force_n <= p->nrows ? force_n - 1 : p->nrows - 1;
    snprintf(p->why, sizeof p->why, "%d chunk%s asked for", p->rows[pick].n, p->rows[pick].n > 1 ? "s" : "");
  } else if (!strcmp(o, "time")) {
    snprintf(p->why, sizeof p->why, "fastest predicted (more chunks gain less than 2%%)");
  } else if (!strcmp(o, "cost")) {
    pick = cheapest;
    snprintf(p->why, sizeof p->why, "cheapest predicted");
  } else if (!strncmp(o, "deadline=", 9)) {
    double limit = strtod(o + 9, NULL) * 1000;
    int best = -1;
    for (int i = 0; i < p->nrows; i++)
      if (p->rows[i].wall_ms <= limit && (best < 0 || p->rows[i].usd < p->rows[best].usd)) best = i;
    if (best >= 0) { pick = best; snprintf(p->why, sizeof p->why, "cheapest predicted to finish within %g s", limit / 1000); }
    else snprintf(p->why, sizeof p->why, "no plan finishes within %g s: the fastest", limit / 1000);
  } else if (!strncmp(o, "budget=", 7)) {
    double budget = strtod(o + 7, NULL);
    int best = -1;
    for (int i = 0; i < p->nrows; i++)
      if (p->rows[i].usd <= budget && (best < 0 || p->rows[i].wall_ms < p->rows[best].wall_ms * 0.98)) best = i;
    if (best >= 0) { pick = best; snprintf(p->why, sizeof p->why, "fastest predicted within $%g", budget); }
    else { pick = cheapest; snprintf(p->why, sizeof p->why, "no plan costs $%g or less: the cheapest", budget); }
  } else {                                        /* balanced */
    int best = fastest;
    for (int i = 0; i < p->nrows; i++)
      if (p->rows[i].wall_ms <= p->rows[fastest].wall_ms * 1.10 && p->rows[i].usd < p->rows[best].usd) best = i;
    pick = best;
    snprintf(p->why, sizeof p->why, "the cheapest within 10%% of the fastest (balanced, the default)");
  }
  p->chosen = pick;
  return 0;
}

json_t *ke_plan_json(const ke_plan *p) {
  json_t *rows = json_array();
  for (int i = 0; i < p->nrows; i++)
    json_array_append_new(rows, json_pack("{s:i, s:f, s:f, s:f, s:f}", "n", p->rows[i].n, "wall_ms", p->rows[i].wall_ms,
                                          "speedup", p->rows[i].speedup, "resource_seconds", p->rows[i].resource_s,
                                          "usd", p->rows[i].usd));
  const ke_plan_row *c = &p->rows[p->chosen];
  return json_pack("{s:i, s:f, s:f, s:f, s:s, s:s, s:I, s:f, s:I, s:I, s:i, s:o}", "chunks", c->n, "predicted_ms",
                   c->wall_ms, "predicted_usd", c->usd, "speedup", c->speedup, "objective", p->objective, "why", p->why,
                   "frames", (json_int_t)p->frames, "mpix", p->mpix, "gop", (json_int_t)p->gop, "overlap",
                   (json_int_t)p->overlap, "runnable", p->runnable, "rows", rows);
}

void ke_plan_print(const ke_plan *p, FILE *f) {
  fprintf(f, "%s: %lld output frames of %.2f Mpixel; %d worker%s can run at once (%d warm); objective %s\n\n", p->fn,
          (long long)p->frames, p->mpix, p->runnable, p->runnable == 1 ? "" : "s", p->warm, p->objective);
  fprintf(f, "%6s  %12s  %8s  %18s  %12s\n", "chunks", "wall (s)", "speedup", "resource-seconds", "cost (USD)");
  for (int i = 0; i < p->nrows; i++) {
    const ke_plan_row *r = &p->rows[i];
    fprintf(f, "%6d  %12.2f  %7.2fx  %18.2f  %12.7f%s\n", r->n, r->wall_ms / 1000, r->speedup, r->resource_s, r->usd,
            i == p->chosen ? "  <- chosen" : "");
  }
  fprintf(f, "\nchosen: %d chunk%s — %s\n", p->rows[p->chosen].n, p->rows[p->chosen].n == 1 ? "" : "s", p->why);
}

static int count_warm(void *arg, const kq_worker *w) {
  if (w->state == KQ_W_IDLE || w->state == KQ_W_STARTING) (*(int *)arg)++;
  return 0;
}

typedef struct slot_use { const ke_config *c; const char *self; int gpu; int used; } slot_use;
/* Slots held by live workers of other functions (the same kind of slot). */
static int count_slots(void *arg, const kq_worker *w) {
  slot_use *u = arg;
  const ke_fnconf *o = ke_fn(u->c, w->fn);
  if (!o || o->fn->internal || !strcmp(w->fn, u->self)) return 0;
  int ogpu = o->res.gpu && u->c->gpu_slots > 0;
  if (ogpu == u->gpu) u->used += ogpu ? 1 : (o->res.cpus > 0 ? o->res.cpus : 1);
  return 0;
}

int ke_plan_job(const ke_config *c, kq *q, const ke_fnconf *fc, const json_t *params, const char *input,
                const char *objective, int force_n, ke_plan *p, kf_shape *sh, kiln_err *e) {
  km_probe pr;
  int r = kf_shape_of(fc->fn, params, input, sh, &pr, e);
  if (r < 0) return r;
  ke_model m;
  if (q) ke_model_load(q, fc, &m, e);
  else ke_model_defaults(fc->fn, &m);
  double mpix = (double)sh->width * sh->height / 1e6;
  if (sh->frame_ms > 0) {                         /* the params fix the per-frame time */
    m.frame_ms = sh->frame_ms;
    m.frame_mpix = mpix;
  }
  /* workers that can run now: max_workers, within the slots other functions' workers leave free */
  int gpu = fc->res.gpu && c->gpu_slots > 0;
  int per = gpu ? 1 : fc->res.cpus > 0 ? fc->res.cpus : 1;
  slot_use u = {c, fc->fn->name, gpu, 0};
  if (q) kq_worker_list(q, NULL, 1, count_slots, &u, e);
  int free_slots = (gpu ? c->gpu_slots : c->cpu_slots) - u.used;
  int slots = free_slots / per;
  int runnable = fc->res.max_workers < slots ? fc->res.max_workers : slots;
  if (runnable < 1) runnable = 1;
  int warm = 0;
  if (q) kq_worker_list(q, fc->fn->name, 1, count_warm, &warm, e);
  p->gop = sh->gop;
  p->overlap = sh->overlap;
  return ke_plan_make(c, fc, &m, sh->frames, mpix, runnable, warm, objective, force_n, p, e);
}

/* ---- the planner thread ------------------------------------------------ */

struct ke_planner {
  const ke_config *c;
  ks_store *store;
  ke_scaler *scaler;
  kq *q;
  kl_loop loop;
};

typedef struct held_list { kq_job jobs[32]; int n; } held_list;

static int held_cb(void *arg, const kq_job *j) {
  held_list *h = arg;
  if (h->n >= 32) return 1;
  kq_job *d = &h->jobs[h->n++];
  *d = *j;
  d->spec = j->spec ? strdup(j->spec) : NULL;
  d->result = d->webhook = d->plan = NULL;
  return 0;
}


/* Decides one held job. Problems with the input are left to the worker
 * (which fails the job naming the object): the job is released whole. */
static void plan_one(ke_planner *pl, const kq_job *j) {
  kiln_err e = {0};
  json_error_t je;
  json_t *spec = j->spec ? json_loads(j->spec, 0, &je) : NULL;
  const ke_fnconf *fc = ke_fn(pl->c, j->fn);
  const char *key = json_string_value(json_object_get(spec, "input"));
  const json_t *params = json_object_get(spec, "params");
  const json_t *want = json_object_get(spec, "plan");
  const char *objective = json_string_value(json_object_get(want, "objective"));
  int force = (int)json_integer_value(json_object_get(want, "chunks"));
  char path[4200] = "";
  kf_shape sh;
  ke_plan p;
  int64_t now = ke_now_ms();
  int ok = spec && fc && fc->fn->chunkable && fc->fn->shape;
  int linked = 0;                                 /* path is ks_fetch's link into the scratch folder: unlinked here */
  if (ok && key) ok = ks_fetch(pl->store, key, path, sizeof path, &linked, &e) == 0;
  if (ok) ok = ke_plan_job(pl->c, pl->q, fc, params, key ? path : NULL, objective, force, &p, &sh, &e) == 0 && sh.frames > 0;
  if (!ok) {
    if (linked) unlink(path);
    kq_release(pl->q, j->id, NULL, 0, now, &e);
    json_decref(spec);
    return;
  }
  json_t *pj = ke_plan_json(&p);
  {
    int64_t st[KE_PLAN_MAX + 1];                   /* the chunks it will really be: whole keyframe intervals */
    json_object_set_new(pj, "chunks", json_integer(ke_chunk_ranges(sh.frames, sh.gop, p.rows[p.chosen].n, st)));
  }
  char *plan = json_dumps(pj, JSON_COMPACT);
  json_decref(pj);
  int64_t starts[KE_PLAN_MAX + 1];
  int n = ke_chunk_ranges(sh.frames, sh.gop, p.rows[p.chosen].n, starts);
  int r;
  /* a function that must see the whole input once (remove_watermark's
   * detection) does it here; its answer goes into every chunk's params.
   * If it fails, the job runs whole and the worker reports the problem. */
  json_t *cparams = NULL;
  if (n > 1 && fc->fn->prepare) {
    json_t *add = NULL;
    kf_task pt = {.input = key ? path : NULL, .params = params, .start = 0, .end = -1, .threads = 1};
    kiln_err pe = {0};
    if (fc->fn->prepare(NULL, &pt, &add, &pe) == 0 && json_is_object(add)) {
      cparams = json_deep_copy(params);
      json_object_update(cparams, add);
    } else {
      klog(KLOG_INFO, "planner: job %s: prepare failed, running it whole: %s", j->id, pe.msg);
      n = 1;
    }
    json_decref(add);
  }
  if (cparams) params = cparams;
  if (n <= 1) {
    r = kq_release(pl->q, j->id, plan, sh.frames, now, &e);
  } else {
    const char *ext = fc->fn->out_ext ? fc->fn->out_ext : "mp4";
    char **specs = calloc((size_t)n, sizeof *specs);
    json_t *keys = json_array();
    for (int k = 0; specs && k < n; k++) {
      int64_t a = starts[k], b = starts[k + 1];
      json_t *cs = json_pack("{s:O, s:O, s:[I, I]}", "input", json_object_get(spec, "input"), "params", params, "range",
                             (json_int_t)a, (json_int_t)b);
      specs[k] = json_dumps(cs, JSON_COMPACT);
      json_decref(cs);
      char ck[256];
      snprintf(ck, sizeof ck, "jobs/%s/chunk-%d.%s", j->id, k, ext);
      json_array_append_new(keys, json_string(ck));
    }
    json_t *js = json_pack("{s:O, s:{s:s, s:O}, s:o, s:s}", "input", json_object_get(spec, "input"), "params", "fn",
                           fc->fn->name, "params", params, "chunks", keys, "ext", ext);
    char *join = json_dumps(js, JSON_COMPACT);
    json_decref(js);
    r = specs ? kq_split(pl->q, j->id, (const char *const *)specs, n, join, plan, sh.frames, now, &e) : KILN_ENOMEM;
    for (int k = 0; specs && k < n; k++) free(specs[k]);
    free(specs);
    free(join);
  }
  if (r < 0) klog(KLOG_WARN, "planner: job %s: %s", j->id, e.msg);
  else klog(KLOG_INFO, "planner: job %s: %d chunk(s), predicted %.0f ms (%s)", j->id, n, p.rows[p.chosen].wall_ms, p.why);
  if (linked) unlink(path);
  free(plan);
  json_decref(cparams);
  json_decref(spec);
}

static int planner_tick(void *arg) {
  ke_planner *pl = arg;
  held_list *h = calloc(1, sizeof *h);
  kiln_err e = {0};
  if (h && kq_claim_unplanned(pl->q, 32, ke_now_ms(), 20000, held_cb, h, &e) == 0) {
    for (int i = 0; i < h->n; i++) {
      plan_one(pl, &h->jobs[i]);
      free(h->jobs[i].spec);
    }
    if (h->n) ke_scaler_kick(pl->scaler, NULL);
  }
  int more = h && h->n == 32;
  free(h);
  return more;                                    /* held jobs left by a server that died are planned too */
}

int ke_planner_start(ke_planner **out, const ke_config *c, ks_store *store, ke_scaler *scaler, kiln_err *e) {
  ke_planner *pl = calloc(1, sizeof *pl);
  if (!pl) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  pl->c = c;
  pl->store = store;
  pl->scaler = scaler;
  ke_apply_limits(c, NULL);                       /* the server's probes decode nothing a worker would refuse */
  int r = ke_open_queue(c, 0, &pl->q, e);
  if (r < 0) { free(pl); return r; }
  kiln_err ue = {0};
  if (kq_unlease_planning(pl->q, &ue) < 0) klog(KLOG_WARN, "planner: %s", ue.msg);   /* a killed server's held jobs: now */
  if (kl_start(&pl->loop, 200, 0, planner_tick, pl) < 0) {
    kq_close(pl->q);
    free(pl);
    return kiln_fail(e, KILN_EINTERNAL, "cannot start the planner thread");
  }
  *out = pl;
  return 0;
}

void ke_planner_kick(ke_planner *pl) {
  if (pl) kl_kick(&pl->loop);
}

void ke_planner_stop(ke_planner *pl) {
  if (!pl) return;
  kl_stop(&pl->loop);
  kq_close(pl->q);
  free(pl);
}

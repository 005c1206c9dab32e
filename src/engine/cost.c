/* cost.c — the cost model of each function and resource class (cost.h).
 *
 * Model, per function and resource class (JSON in the queue's models table):
 *   task(frames)  = task_ms + frames x frame_ms x (mpix / frame_mpix)
 *   join(frames)  = join_ms + join_ms_per_mb x frames x mb_per_frame
 * task_ms and frame_ms come from a least-squares line through the finished
 * tasks' (frames, run time), each observation decayed by 0.9 per new one;
 * with too little spread in frame counts, frame_ms is re-estimated from the
 * last task with task_ms kept. Defaults, until there is data: frame_ms from
 * the descriptor's cost hint (ms per output megapixel), task_ms 100 ms,
 * join 50 ms + 5 ms/MB, 0.05 MB per frame-megapixel, cold start 50 ms,
 * orchestration 30 ms.
 *
 * Models live as JSON in the queue's models table, keyed "fn@class"; every
 * update is a read-modify-write in one transaction (kq_model_update), so
 * workers reporting together do not lose each other's observations. */
#include "engine/cost.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ke_model_defaults(const kf_desc *fn, ke_model *m) {
  memset(m, 0, sizeof *m);
  m->frame_mpix = 1.0;
  m->frame_ms = fn->cost_ms_per_mpixel > 0 ? fn->cost_ms_per_mpixel : 1.0;
  m->task_ms = 100;
  m->join_ms = 50;
  m->join_ms_per_mb = 5;
  m->mb_per_frame = 0.05;
  m->cold_ms = 50;
  m->orchestration_ms = 30;
  m->err = -1;
}

static const char *const fields[] = {"frame_ms", "frame_mpix", "task_ms", "join_ms", "join_ms_per_mb", "mb_per_frame",
                                     "cold_ms", "orchestration_ms", "err", "sw", "sx", "sy", "sxx", "sxy"};
static double *field(ke_model *m, int i) {
  double *f[] = {&m->frame_ms, &m->frame_mpix, &m->task_ms, &m->join_ms, &m->join_ms_per_mb, &m->mb_per_frame,
                 &m->cold_ms, &m->orchestration_ms, &m->err, &m->sw, &m->sx, &m->sy, &m->sxx, &m->sxy};
  return f[i];
}
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))

json_t *ke_model_json(const ke_model *m) {
  json_t *o = json_object();
  for (int i = 0; i < NFIELDS; i++)
    if (i < 9) json_object_set_new(o, fields[i], json_real(*field((ke_model *)m, i)));
  json_object_set_new(o, "tasks", json_integer(m->tasks));
  json_object_set_new(o, "joins", json_integer(m->joins));
  json_object_set_new(o, "errors", json_integer(m->errors));
  json_object_set_new(o, "source", json_string(m->tasks ? "measured" : "defaults"));
  return o;
}

static void model_parse(const kf_desc *fn, const char *js, ke_model *m) {
  ke_model_defaults(fn, m);
  json_error_t je;
  json_t *o = js ? json_loads(js, 0, &je) : NULL;
  if (!o) return;
  for (int i = 0; i < NFIELDS; i++) {
    json_t *v = json_object_get(o, fields[i]);
    if (json_is_number(v)) *field(m, i) = json_number_value(v);
  }
  m->tasks = (int)json_integer_value(json_object_get(o, "tasks"));
  m->joins = (int)json_integer_value(json_object_get(o, "joins"));
  m->errors = (int)json_integer_value(json_object_get(o, "errors"));
  json_decref(o);
}

static char *model_dump(const ke_model *m) {
  json_t *o = json_object();
  for (int i = 0; i < NFIELDS; i++) json_object_set_new(o, fields[i], json_real(*field((ke_model *)m, i)));
  json_object_set_new(o, "tasks", json_integer(m->tasks));
  json_object_set_new(o, "joins", json_integer(m->joins));
  json_object_set_new(o, "errors", json_integer(m->errors));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

void ke_model_key(const ke_fnconf *fc, char *out, size_t n) {
  if (fc->res.gpu) snprintf(out, n, "%s@%s", fc->fn->name, fc->res.gpu);
  else snprintf(out, n, "%s@cpu%d", fc->fn->name, fc->res.cpus > 0 ? fc->res.cpus : 1);
}

int ke_model_load(kq *q, const ke_fnconf *fc, ke_model *m, kiln_err *e) {
  char *js = NULL, key[128];
  ke_model_key(fc, key, sizeof key);
  int r = kq_model_get(q, key, &js, e);
  model_parse(fc->fn, r == 0 ? js : NULL, m);
  free(js);
  return r;
}

int ke_model_save(kq *q, const ke_fnconf *fc, const ke_model *m, kiln_err *e) {
  char *s = model_dump(m), key[128];
  ke_model_key(fc, key, sizeof key);
  int r = kq_model_put(q, key, s, ke_now_ms(), e);
  free(s);
  return r;
}

typedef struct apply_ctx { const kf_desc *fn; void (*f)(ke_model *, void *); void *arg; } apply_ctx;
static char *apply_edit(void *arg, const char *old) {
  apply_ctx *a = arg;
  ke_model m;
  model_parse(a->fn, old, &m);
  a->f(&m, a->arg);
  return model_dump(&m);
}

int ke_model_apply(kq *q, const ke_fnconf *fc, void (*f)(ke_model *m, void *arg), void *arg, kiln_err *e) {
  apply_ctx a = {fc->fn, f, arg};
  char key[128];
  ke_model_key(fc, key, sizeof key);
  return kq_model_update(q, key, apply_edit, &a, ke_now_ms(), e);
}

void ke_model_task(ke_model *m, int64_t frames, double mpix, double run_ms, int64_t bytes) {
  if (frames <= 0 || run_ms <= 0) return;
  /* frames at the model's size: a task of bigger frames counts as more frames */
  double scale = mpix > 0 && m->frame_mpix > 0 ? mpix / m->frame_mpix : 1;
  if (m->tasks == 0 && mpix > 0) { m->frame_mpix = mpix; scale = 1; }
  double x = (double)frames * scale, y = run_ms;
  m->sw = 0.9 * m->sw + 1;
  m->sx = 0.9 * m->sx + x;
  m->sy = 0.9 * m->sy + y;
  m->sxx = 0.9 * m->sxx + x * x;
  m->sxy = 0.9 * m->sxy + x * y;
  double var = m->sxx / m->sw - (m->sx / m->sw) * (m->sx / m->sw);
  double mx = m->sx / m->sw;
  if (m->tasks >= 1 && var > 0.01 * mx * mx) {  /* enough spread in frame counts for a line */
    double slope = (m->sxy / m->sw - mx * (m->sy / m->sw)) / var;
    double icpt = m->sy / m->sw - slope * mx;
    if (slope > 0) {
      m->frame_ms = slope;
      m->task_ms = icpt > 0 ? icpt : 0;
    }
  } else {                                        /* keep task_ms, fit frame_ms to this task */
    double f = (y - m->task_ms) / x;
    if (f <= 0) f = y / x / 2;
    m->frame_ms = m->tasks ? 0.7 * m->frame_ms + 0.3 * f : f;
  }
  if (bytes > 0 && frames > 0) {
    double mb = (double)bytes / 1e6 / ((double)frames * scale);
    m->mb_per_frame = m->tasks ? 0.7 * m->mb_per_frame + 0.3 * mb : mb;
  }
  m->tasks++;
}

void ke_model_join(ke_model *m, double mb, double run_ms) {
  if (run_ms <= 0) return;
  double per = mb > 0.5 ? (run_ms - m->join_ms) / mb : m->join_ms_per_mb;
  if (per < 0) per = 0;
  double fixed = run_ms - per * mb;
  m->join_ms = m->joins ? 0.7 * m->join_ms + 0.3 * fixed : fixed;
  m->join_ms_per_mb = m->joins ? 0.7 * m->join_ms_per_mb + 0.3 * per : per;
  m->joins++;
}

void ke_model_cold(ke_model *m, double ms) {
  if (ms < 0) return;
  m->cold_ms = m->tasks || m->joins ? 0.7 * m->cold_ms + 0.3 * ms : ms;
}

void ke_model_error(ke_model *m, double predicted_ms, double actual_ms) {
  if (predicted_ms <= 0 || actual_ms <= 0) return;
  double err = fabs(predicted_ms - actual_ms) / actual_ms;
  m->err = m->errors ? 0.7 * m->err + 0.3 * err : err;
  m->errors++;
}

double ke_model_task_ms(const ke_model *m, double frames, double mpix) {
  double scale = mpix > 0 && m->frame_mpix > 0 ? mpix / m->frame_mpix : 1;
  return m->task_ms + frames * m->frame_ms * scale;
}

typedef struct report {
  kq_kind kind;
  int64_t frames, bytes, run_ms;
  double mpix, predicted, actual;
} report;

static void fold_task(ke_model *m, void *arg) {
  const report *o = arg;
  if (o->kind == KQ_JOIN) ke_model_join(m, (double)o->bytes / 1e6, (double)o->run_ms);
  else ke_model_task(m, o->frames, o->mpix, (double)o->run_ms, o->bytes);
  if (o->predicted > 0) ke_model_error(m, o->predicted, o->actual);
}

int ke_cost_report_task(kq *q, const ke_config *c, const kq_job *j, int64_t frames, double mpix, int64_t run_ms,
                        int64_t bytes, kiln_err *e) {
  report o = {j->kind, frames, bytes, run_ms, mpix, 0, 0};
  if (j->kind != KQ_JOIN && frames <= 0 && !j->plan) return 0;
  kq_job top;                                      /* the job that ended: this one (if planned), or a join's */
  int have_top = (j->kind == KQ_JOIN || (j->kind == KQ_WHOLE && j->plan)) &&
                 kq_get(q, j->kind == KQ_WHOLE ? j->id : j->parent, &top, e) == 0;
  const ke_fnconf *fc = ke_fn(c, j->kind == KQ_JOIN && have_top ? top.fn : j->fn);
  if (have_top && top.plan && top.state == KQ_SUCCEEDED) {
    json_error_t je;
    json_t *pl = json_loads(top.plan, 0, &je);
    o.predicted = json_number_value(json_object_get(pl, "predicted_ms"));
    o.actual = json_number_value(json_object_get(pl, "actual_ms"));
    json_decref(pl);
  }
  if (have_top) kq_job_release(&top);
  if (!fc || fc->fn->internal) return 0;
  return ke_model_apply(q, fc, fold_task, &o, e);
}

static void fold_cold(ke_model *m, void *arg) { ke_model_cold(m, *(const double *)arg); }

int ke_cost_report_cold(kq *q, const ke_fnconf *fc, int64_t cold_ms, kiln_err *e) {
  if (fc->fn->internal) return 0;
  double ms = (double)cold_ms;
  return ke_model_apply(q, fc, fold_cold, &ms, e);
}

/* test_planner.c — the chunk planner on a given cost model: one chunk for
 * short inputs and more for long ones under `time`; keyframe-aligned ranges;
 * no more chunks than keyframe intervals or than workers can usefully run;
 * the objectives (cost, deadline, budget, balanced) pick what they say; the
 * model learns frame time and task overhead from observed tasks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/planner.h"
#include "t.h"
#include "tutil.h"

static ke_config cfg;

static const ke_fnconf *noop_conf(int max_workers) {
  static ke_fnconf fc;
  fc = *ke_fn(&cfg, "noop");
  fc.res.max_workers = max_workers;
  fc.res.max_chunks = 0;
  return &fc;
}

static void model(ke_model *m) {
  ke_model_defaults(kf_find("noop"), m);
  m->frame_ms = 20;                               /* 20 ms per frame, 100 ms per task, 50 ms cold, 50 ms join */
  m->frame_mpix = 0;
  m->task_ms = 100;
  m->cold_ms = 50;
  m->join_ms = 50;
  m->join_ms_per_mb = 0;
}

static int plan(int64_t frames, int workers, int runnable, const char *objective, ke_plan *p) {
  ke_model m;
  model(&m);
  kiln_err e = {0};
  memset(p, 0, sizeof *p);
  p->gop = 1;
  int r = ke_plan_make(&cfg, noop_conf(workers), &m, frames, 0, runnable, 0, objective, 0, p, &e);
  CHECK(r == 0, "%s", e.msg);
  return p->rows[p->chosen].n;
}

static void test_short_and_long(void) {
  ke_plan p;
  CHECK(plan(5, 8, 8, "time", &p) == 1, "5 frames (0.1 s of work, less than the overheads): one chunk, got %d",
        p.rows[p.chosen].n);
  int n = plan(2000, 8, 8, "time", &p);
  CHECK(n == 8, "2000 frames at 20 ms with 8 workers: 8 chunks under time, got %d", n);
  CHECK(fabs(p.rows[0].wall_ms - (50 + 100 + 2000 * 20)) < 1e-6, "N=1 predicted %f", p.rows[0].wall_ms);
  CHECK(p.rows[7].wall_ms < p.rows[3].wall_ms && p.rows[7].speedup > 7, "N=8 faster: %f x", p.rows[7].speedup);
  n = plan(2000, 16, 4, "time", &p);
  CHECK(n == 4, "only 4 can run at once: more chunks only queue, got %d", n);
  CHECK(p.rows[4].wall_ms > p.rows[3].wall_ms, "N=5 with 4 runnable is slower than N=4 (a second wave)");
  CHECK(plan(2000, 8, 8, "cost", &p) == 1, "cost: one chunk (no join, no extra task overheads)");
  n = plan(2000, 8, 8, "deadline=15", &p);
  CHECK(n >= 3 && p.rows[p.chosen].wall_ms <= 15000 && (n == 1 || p.rows[n - 2].wall_ms > 15000),
        "deadline=15 s: the fewest chunks that make it, got %d", n);
  n = plan(2000, 8, 8, "budget=0.0000001", &p);
  CHECK(n == 1 && strstr(p.why, "no plan costs"), "an impossible budget: the cheapest, said so: %s", p.why);
  n = plan(2000, 8, 8, NULL, &p);
  CHECK(n > 1 && p.rows[p.chosen].wall_ms <= 1.1 * p.rows[7].wall_ms, "balanced: within 10%% of the fastest, got %d", n);
  kiln_err e = {0};
  CHECK(ke_objective_check("fastest", &e) < 0 && strstr(e.msg, "'fastest'"), "a bad objective is named: %s", e.msg);
}

static void test_ranges(void) {
  int64_t st[9];
  int n = ke_chunk_ranges(1000, 60, 4, st);
  CHECK(n == 4 && st[0] == 0 && st[4] == 1000, "4 ranges over 1000 frames");
  for (int i = 1; i < n; i++) CHECK(st[i] % 60 == 0 && st[i] > st[i - 1], "boundary %d at %lld is a keyframe", i, (long long)st[i]);
  CHECK(ke_chunk_ranges(100, 60, 4, st) == 2 && st[1] == 60, "100 frames, keyframes every 60: two chunks");
  CHECK(ke_chunk_ranges(3, 1, 8, st) == 3, "3 frames: three chunks at most");
  ke_plan p;
  memset(&p, 0, sizeof p);
  p.gop = 60;
  ke_model m;
  model(&m);
  kiln_err e = {0};
  ke_plan_make(&cfg, noop_conf(8), &m, 100, 0, 8, 0, "time", 0, &p, &e);
  CHECK(p.nrows == 2, "no rows beyond the keyframe intervals: %d", p.nrows);
}

static void test_learning(void) {
  ke_model m;
  ke_model_defaults(kf_find("noop"), &m);
  for (int i = 0; i < 6; i++) ke_model_task(&m, 100 + 100 * (i % 3), 0, 30 + 20.0 * (100 + 100 * (i % 3)), 0);
  CHECK(fabs(m.frame_ms - 20) < 0.5 && fabs(m.task_ms - 30) < 5, "learned 20 ms/frame and 30 ms/task: %f, %f", m.frame_ms,
        m.task_ms);
  ke_model_error(&m, 1100, 1000);
  CHECK(fabs(m.err - 0.1) < 1e-9 && m.errors == 1, "error recorded: %f", m.err);
}

int main(void) {
  kiln_err e = {0};
  setenv("KILN_HOME", t_dir(), 1);                /* the defaults, not this machine's config */
  if (ke_config_load(&cfg, NULL, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
  cfg.cpu_slots = 64;
  T_RUN(test_short_and_long);
  T_RUN(test_ranges);
  T_RUN(test_learning);
  ke_config_release(&cfg);
  t_cleanup();
  return t_done();
}

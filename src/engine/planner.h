/* planner.h — how many chunks a job gets (planner.c): a cost model per
 * function, fed by measured tasks, predicts wall time and cost for each
 * chunk count; an objective picks one. */
#ifndef KILN_PLANNER_H
#define KILN_PLANNER_H

#include <stdio.h>

#include "engine/engine.h"

/* The model's parameters (milliseconds; smoothed over finished tasks). */
typedef struct ke_model {
  double frame_ms;              /* per output frame, at frame_mpix */
  double frame_mpix;            /* the output size frame_ms was measured at (0: not video) */
  double task_ms;               /* per task: start, probe, seek and decode to the range, encoder start */
  double join_ms;               /* per join: fixed part */
  double join_ms_per_mb;        /* per output megabyte joined */
  double mb_per_frame;          /* output megabytes per frame (at frame_mpix) */
  double cold_ms;               /* a worker's cold start */
  double orchestration_ms;      /* splitting, dispatching chunks and the join */
  double err;                   /* recent |predicted - actual| / actual, -1 when none */
  int tasks, joins, errors;     /* observations behind them (0: the defaults) */
  /* weighted least squares of task run time on frames, decayed */
  double sw, sx, sy, sxx, sxy;
} ke_model;

void ke_model_defaults(const kf_desc *fn, ke_model *m);
/* Models are kept per function and resource class ("reframe@cpu2",
 * "upscale@T4"): the same function on other hardware is another model. */
void ke_model_key(const ke_fnconf *fc, char *out, size_t n);
/* The stored model, or the defaults. */
int ke_model_load(kq *q, const ke_fnconf *fc, ke_model *m, kiln_err *e);
int ke_model_save(kq *q, const ke_fnconf *fc, const ke_model *m, kiln_err *e);
/* Loads, applies f and saves, in one transaction. */
int ke_model_apply(kq *q, const ke_fnconf *fc, void (*f)(ke_model *m, void *arg), void *arg, kiln_err *e);
/* A finished task (whole or chunk) of `frames` output frames of mpix megapixels took run_ms; bytes of output. */
void ke_model_task(ke_model *m, int64_t frames, double mpix, double run_ms, int64_t bytes);
void ke_model_join(ke_model *m, double mb, double run_ms);
void ke_model_cold(ke_model *m, double ms);
void ke_model_error(ke_model *m, double predicted_ms, double actual_ms);
json_t *ke_model_json(const ke_model *m);

#define KE_PLAN_MAX 64
typedef struct ke_plan_row {
  int n;
  double wall_ms, speedup, resource_s, usd;
} ke_plan_row;

typedef struct ke_plan {
  char fn[64];
  int64_t frames;
  double mpix;
  int64_t gop;                  /* chunks start at multiples of this (keyframes) */
  int64_t overlap;              /* frames a chunk encodes besides its own (encoder warm-up and lookahead) */
  int runnable;                 /* workers that can run at once */
  int warm;                     /* workers already warm */
  char objective[64];
  int nrows;
  ke_plan_row rows[KE_PLAN_MAX];
  int chosen;                   /* index into rows */
  char why[256];
} ke_plan;

/* Rows for N = 1 .. min(max_workers, frames, KE_PLAN_MAX); the objective
 * ("balanced" when NULL or "", "time", "cost", "deadline=S", "budget=USD")
 * picks one; force_n > 0 takes that N (its row is still predicted). */
int ke_plan_make(const ke_config *c, const ke_fnconf *fc, const ke_model *m, int64_t frames, double mpix, int runnable,
                 int warm, const char *objective, int force_n, ke_plan *p, kiln_err *e);
/* The output frame ranges of n chunks of frames, each starting at a
 * multiple of gop: starts[0..n], starts[n] = frames. Returns the number of
 * chunks (fewer than n when the frames do not hold n keyframe intervals). */
int ke_chunk_ranges(int64_t frames, int64_t gop, int n, int64_t *starts);
/* Plans fn for params on input (a local file, or NULL), with the stored
 * model (q may be NULL: defaults) and the workers that can run at once. */
int ke_plan_job(const ke_config *c, kq *q, const ke_fnconf *fc, const json_t *params, const char *input,
                const char *objective, int force_n, ke_plan *p, kf_shape *sh, kiln_err *e);
int ke_objective_check(const char *objective, kiln_err *e);
json_t *ke_plan_json(const ke_plan *p);
void ke_plan_print(const ke_plan *p, FILE *f);

/* The planner thread of `kiln serve`: decides each held job (whole, or N
 * chunks and a join), then kicks the autoscaler. */
typedef struct ke_planner ke_planner;
int ke_planner_start(ke_planner **out, const ke_config *c, ks_store *store, ke_scaler *scaler, kiln_err *e);
void ke_planner_kick(ke_planner *p);
void ke_planner_stop(ke_planner *p);

#endif

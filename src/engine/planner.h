/* planner.h — how many chunks a job gets (planner.c): the function's cost
 * model (cost.h) predicts wall time and cost for each chunk count; an
 * objective picks one. */
#ifndef KILN_PLANNER_H
#define KILN_PLANNER_H

#include <stdio.h>

#include "engine/cost.h"
#include "engine/engine.h"

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

/* cost.h — a function's cost model (cost.c): what its tasks, joins and
 * cold starts take on one resource class, learned from what workers report.
 * Workers only report (ke_cost_report_*); the model folds each report in
 * one queue transaction; the planner (planner.h) reads it to predict. It
 * sits below the worker and the planner and knows neither. */
#ifndef KILN_COST_H
#define KILN_COST_H

#include "engine/config.h"

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
/* The predicted run time of one task of `frames` frames of mpix megapixels. */
double ke_model_task_ms(const ke_model *m, double frames, double mpix);
void ke_model_join(ke_model *m, double mb, double run_ms);
void ke_model_cold(ke_model *m, double ms);
void ke_model_error(ke_model *m, double predicted_ms, double actual_ms);
json_t *ke_model_json(const ke_model *m);

/* What a worker reports once a task of job j has run (whole, chunk or
 * join): frames written at mpix megapixels, run_ms, bytes of output. The
 * model of j's function (for a join: the chunked function's) learns from
 * it and, when the job that ended was planned, from the prediction's error.
 * A no-op run (no frames, no plan) teaches nothing. */
int ke_cost_report_task(kq *q, const ke_config *c, const kq_job *j, int64_t frames, double mpix, int64_t run_ms,
                        int64_t bytes, kiln_err *e);
/* A worker of fc became ready cold_ms after its process started. */
int ke_cost_report_cold(kq *q, const ke_fnconf *fc, int64_t cold_ms, kiln_err *e);

#endif

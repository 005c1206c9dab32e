/* noop.c — a synthetic function for tests, benchmarks and the planner's
 * calibration: no input, `frames` frames that each take `ms_per_frame` of
 * wall time (a sleep: it models a GPU worker without a GPU), progress per
 * frame, a small JSON output. `fail` makes a run fail the way a real
 * function can (bad_input, or an internal error); the environment variable
 * KILN_NOOP_ENTER_MS makes `enter` take that long (a model load). */
#include "fn/fn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const fail_modes[] = {"none", "bad_input", "internal", NULL};

static const kf_param noop_params[] = {
    {"frames", KF_INT, "10", 0, 1, 0, 1e7, NULL, NULL, "frames to process"},
    {"ms_per_frame", KF_NUM, "0", 0, 1, 0, 60000, NULL, NULL, "wall time each frame takes, milliseconds"},
    {"output", KF_BOOL, "true", 0, 0, 0, 0, NULL, NULL, "write the small JSON output object (false: the result's stats are all; measures dispatch without file-system work)"},
    {"fail", KF_STR, "\"none\"", 0, 0, 0, 0, fail_modes, NULL, "fail the run after the frames: as bad input or as an internal error"},
    {"fail_at", KF_INT, "-1", 0, 1, -1, 1e7, NULL, NULL, "with fail: only the task whose frames include this one fails (one chunk of a chunked job); -1: every task"},
    {NULL}};

static void sleep_ms(double ms) {
  if (ms <= 0) return;
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
  while (nanosleep(&ts, &ts) != 0) {}
}

static int noop_enter(void **state, kiln_err *e) {
  const char *s = getenv("KILN_NOOP_ENTER_MS");
  if (s) sleep_ms(strtod(s, NULL));
  *state = NULL;
  (void)e;
  return 0;
}

static int noop_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  (void)state;
  int64_t frames = (int64_t)json_integer_value(json_object_get(t->params, "frames"));
  double ms = json_number_value(json_object_get(t->params, "ms_per_frame"));
  const char *fail = json_string_value(json_object_get(t->params, "fail"));
  if (t->out_end > 0 && t->out_end < frames) frames = t->out_end;   /* a chunk: frames [out_start, out_end) */
  int64_t start = t->out_start > 0 ? t->out_start : 0;
  for (int64_t i = start; i < frames; i++) {
    if (t->cancel && *t->cancel) return kiln_fail(e, KILN_ECANCELLED, "cancelled");
    sleep_ms(ms);
    if (t->progress) t->progress(t->progress_arg, i + 1 - start, frames - start);
  }
  int64_t at = json_integer_value(json_object_get(t->params, "fail_at"));
  if (at >= 0 && (at < start || at >= frames)) fail = "none";   /* another task's frame */
  if (!strcmp(fail, "bad_input")) return kiln_fail(e, KILN_EPARAM, "noop was asked to fail as bad input");
  if (!strcmp(fail, "internal")) return kiln_fail(e, KILN_EINTERNAL, "noop was asked to fail with an internal error");
  res->stats.frames_in = res->stats.frames_out = frames - start;
  if (!json_is_true(json_object_get(t->params, "output"))) {
    res->no_output = 1;
    return 0;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.part", t->output);
  FILE *f = fopen(tmp, "w");
  if (!f) return kiln_fail(e, KILN_EIO, "cannot write '%s'", t->output);
  fprintf(f, "{\"frames\":%lld}\n", (long long)(frames - start));
  if (fclose(f) != 0 || rename(tmp, t->output) != 0) {
    remove(tmp);
    return kiln_fail(e, KILN_EIO, "cannot write '%s'", t->output);
  }
  res->stats.frames_in = res->stats.frames_out = frames - start;
  return 0;
}

static int noop_shape(const json_t *p, const km_probe *pr, kf_shape *s, kiln_err *e) {
  memset(s, 0, sizeof *s);
  km_timeline_identity(&s->tl);
  s->fps = (AVRational){25, 1};
  s->frames = (int64_t)json_integer_value(json_object_get(p, "frames"));
  s->frame_ms = json_number_value(json_object_get(p, "ms_per_frame"));
  (void)pr; (void)e;
  return 0;
}

const kf_desc kf_noop = {
    .name = "noop",
    .summary = "a synthetic function: frames that take a set time each, for tests, benchmarks and calibration",
    .doc = "Takes no input. Each of `frames` frames takes `ms_per_frame` of wall time and reports progress;\n"
           "the output is a small JSON object. It measures the engine itself (dispatch latency, cold starts,\n"
           "throughput) and stands in for a GPU function when planning chunks.",
    .params = noop_params,
    .res = {.gpu = NULL, .memory_mb = 64, .timeout_s = 600, .retries = 2, .idle_timeout_s = 60,
            .min_workers = 0, .max_workers = 8, .concurrency = 1, .cpus = 1},
    .enter = noop_enter,
    .run = noop_run,
    .chunkable = 1,
    .shape = noop_shape,
    .no_input = 1,
    .out_ext = "json",
    .cost_ms_per_mpixel = 0,
};

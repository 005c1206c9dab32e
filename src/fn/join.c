/* join.c — the engine's join of a chunked job, as an internal function
 * (not listed, not callable over HTTP): the chunk files (task inputs, in
 * order) become one output by stream copy, with the source's audio (task
 * input) cut and retimed by the chunked function's timeline and muxed once
 * (media/concat.c). Params: {"fn": the chunked function, "params": its
 * validated params}. A function whose output is not video (noop) has its
 * frames added up. It runs on a CPU worker and holds no GPU. */
#include "fn/fn.h"

#include <stdio.h>
#include <string.h>

static const kf_param join_params[] = {
    {"fn", KF_STR, NULL, 1, 0, 0, 0, NULL, NULL, "the function whose chunks these are"},
    {"params", KF_OBJ, "{}", 0, 0, 0, 0, NULL, NULL, "its validated parameters"},
    {NULL}};

static int join_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  (void)state;
  const char *name = json_string_value(json_object_get(t->params, "fn"));
  const kf_desc *fn = name ? kf_find(name) : NULL;
  if (!fn || !fn->shape) return kiln_fail(e, KILN_EINTERNAL, "join: '%s' is not a chunkable function", name ? name : "?");
  const json_t *inner = json_object_get(t->params, "params");
  kf_shape sh;
  km_probe pr;
  int r = kf_shape_of(fn, inner, fn->no_input ? NULL : t->input, &sh, &pr, e);
  if (r < 0) return r;
  if (sh.width == 0) {                           /* not video: the frame count is the result */
    res->stats.frames_in = res->stats.frames_out = sh.frames;
    if (t->ninputs == 0) { res->no_output = 1; return 0; }
    FILE *f = fopen(t->output, "w");
    if (!f) return kiln_fail(e, KILN_EIO, "cannot write the joined output");
    fprintf(f, "{\"frames\":%lld}\n", (long long)sh.frames);
    return fclose(f) == 0 ? 0 : kiln_fail(e, KILN_EIO, "cannot write the joined output");
  }
  if (t->ninputs < 1) return kiln_fail(e, KILN_EINTERNAL, "join: no chunks");
  km_audio_opts ao;
  memset(&ao, 0, sizeof ao);
  if (sh.audio) {
    ao.path = t->input;
    ao.tl = sh.tl;
    ao.video_start = pr.start_time;
  }
  km_concat_stats cs;
  if ((r = km_concat(t->inputs, t->ninputs, t->output, &ao, sh.fps, &cs, e)) < 0) return r;
  res->stats.frames_in = res->stats.frames_out = cs.frames;
  res->stats.out_w = sh.width;
  res->stats.out_h = sh.height;
  res->stats.out_fps = sh.fps;
  res->stats.out_duration = cs.duration;
  snprintf(res->stats.audio, sizeof res->stats.audio, "%s", cs.audio);
  if (fn->join_info) res->info = fn->join_info(inner, &pr);   /* e.g. remove_watermark's regions */
  return 0;
}

const kf_desc kf_join = {
    .name = "join",
    .summary = "the join of a chunked job (internal)",
    .params = join_params,
    .res = {.gpu = NULL, .memory_mb = 256, .timeout_s = 3600, .retries = 2, .idle_timeout_s = 60,
            .min_workers = 0, .max_workers = 2, .concurrency = 1, .cpus = 1},
    .run = join_run,
    .internal = 1,
};

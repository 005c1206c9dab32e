/* reframe.c — animated crop to a new frame (9:16 by default), with trim,
 * speed segments and output frame rate.
 *
 * Crop keyframes {frame | time, x, y, w, h} in source pixels are placed on
 * the source timeline (frame / fps for frame keys), interpolated linearly
 * with sub-pixel precision and held before the first and after the last.
 * Omitted w/h take the full source height at the output's aspect ratio. The
 * rectangle is resampled to the output size (img/resample.c). Trim and
 * speed are a km_timeline: the pipeline picks frames, and the audio follows
 * with its pitch kept (atempo). */
#include "fn/common.h"
#include "img/img.h"
#include "util/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const kf_param kf_crop_fields[] = {
    {"frame", KF_INT, NULL, 0, 1, 0, 1e9, NULL, NULL, "source frame number of this keyframe (or give time)"},
    {"time", KF_NUM, NULL, 0, 1, 0, 1e7, NULL, NULL, "source time in seconds of this keyframe (or give frame)"},
    {"x", KF_NUM, NULL, 1, 1, 0, 1e5, NULL, NULL, "left edge, source pixels"},
    {"y", KF_NUM, "0", 0, 1, 0, 1e5, NULL, NULL, "top edge, source pixels"},
    {"w", KF_NUM, NULL, 0, 1, 2, 1e5, NULL, NULL, "width, source pixels (default: height x output aspect)"},
    {"h", KF_NUM, NULL, 0, 1, 2, 1e5, NULL, NULL, "height, source pixels (default: the source height)"},
    {NULL}};

static const kf_param trim_fields[] = {
    {"start", KF_NUM, "0", 0, 1, 0, 1e7, NULL, NULL, "source second where the output starts"},
    {"end", KF_NUM, NULL, 0, 1, 0, 1e7, NULL, NULL, "source second where it stops (default: the end)"},
    {NULL}};

static const kf_param speed_fields[] = {
    {"start", KF_NUM, NULL, 1, 1, 0, 1e7, NULL, NULL, "source second where the segment starts"},
    {"end", KF_NUM, NULL, 1, 1, 0, 1e7, NULL, NULL, "source second where it ends"},
    {"speed", KF_NUM, NULL, 1, 1, 0.25, 4, NULL, NULL, "playback speed: 2 is twice as fast, 0.5 slow motion"},
    {NULL}};

static const kf_param reframe_params[] = {
    {"crop", KF_ARR, NULL, 0, 1, 1, 10000, NULL, kf_crop_fields,
     "crop keyframes; default: a centred full-height crop at the output's aspect"},
    {"width", KF_INT, "810", 0, 1, 2, 7680, NULL, NULL, "output width in pixels (even)"},
    {"height", KF_INT, "1440", 0, 1, 2, 7680, NULL, NULL, "output height in pixels (even)"},
    {"trim", KF_OBJ, NULL, 0, 0, 0, 0, NULL, trim_fields, "keep only this stretch of the source"},
    {"speed", KF_ARR, NULL, 0, 1, 1, KM_MAX_SEGMENTS, NULL, speed_fields,
     "speed segments in source seconds, in order, not overlapping"},
    {"fps", KF_NUM, NULL, 0, 1, 1, 240, NULL, NULL, "output frame rate (default: the source's)"},
    KF_VIDEO_PARAMS,
    {NULL}};

typedef struct reframe_ctx {
  int nkeys;
  kf_key *keys;                 /* t in source seconds; v = x, y, w, h */
} reframe_ctx;

static int reframe_kernel(const void *ctx, const km_kinfo *ki, const AVFrame *in, AVFrame *out, kiln_err *e) {
  const reframe_ctx *c = ctx;
  double r[KF_KEY_VALUES];
  kf_keys_at(c->keys, c->nkeys, ki->src.src_time, r);
  if (ki_crop_scale(in, r[0], r[1], r[2], r[3], out) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  return 0;
}

static int reframe_shape(const json_t *p, const km_probe *pr, kf_shape *s, kiln_err *e) {
  memset(s, 0, sizeof *s);
  km_timeline_identity(&s->tl);
  s->width = (int)kj_num(p, "width", 810);
  s->height = (int)kj_num(p, "height", 1440);
  if ((s->width & 1) || (s->height & 1))
    return kiln_fail(e, KILN_EPARAM, "reframe: width and height must be even for yuv420p, got %dx%d", s->width, s->height);
  int r = km_check_pixels(s->width, s->height, 1, e, "reframe: the output frame (width x height)");
  if (r < 0) return r;
  double fps = kj_num(p, "fps", 0);
  s->fps = fps > 0 ? av_d2q(fps, 100000) : pr->fps_q;
  const json_t *trim = json_object_get(p, "trim");
  if (trim) {
    s->tl.start = kj_num(trim, "start", 0);
    s->tl.end = kj_num(trim, "end", 0);
    if (json_object_get(trim, "end") && s->tl.end <= s->tl.start)
      return kiln_fail(e, KILN_EPARAM, "reframe: trim.end (%g s) must be after trim.start (%g s)", s->tl.end, s->tl.start);
  }
  const json_t *speed = json_object_get(p, "speed");
  for (size_t i = 0; speed && i < json_array_size(speed); i++) {
    const json_t *g = json_array_get(speed, i);
    s->tl.seg[s->tl.nseg++] = (km_speed_seg){kj_num(g, "start", 0), kj_num(g, "end", 0), kj_num(g, "speed", 1)};
  }
  r = km_timeline_check(&s->tl, e);
  if (r < 0) { kiln_err_prefix(e, "reframe"); return r; }
  s->frames = km_pipeline_expected_frames(pr, &s->tl, s->fps);
  s->audio = !json_is_false(json_object_get(p, "audio")) && pr->n_audio > 0;
  return 0;
}

static int reframe_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  const json_t *p = t->params;
  reframe_ctx c = {0};
  km_probe pr;
  kf_shape sh;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  if ((r = reframe_shape(p, &pr, &sh, e)) < 0) return r;
  if ((r = kf_crop_keys("reframe", p, &pr, sh.width, sh.height, &c.keys, &c.nkeys, e)) < 0) goto out;
  km_pipeline_cfg cfg;
  kf_pipeline_from_task(t, p, &cfg);
  cfg.out_w = sh.width;
  cfg.out_h = sh.height;
  if (kj_num(p, "fps", 0) > 0) cfg.out_fps = sh.fps;
  cfg.tl = sh.tl;
  cfg.probe = &pr;
  cfg.kernel = reframe_kernel;
  cfg.kctx = &c;
  r = km_pipeline_run(&cfg, &res->stats, e);
out:
  free(c.keys);
  return r;
}

const kf_desc kf_reframe = {
    .name = "reframe",
    .summary = "animated crop to a new frame (9:16 by default), with trim, speed segments and frame rate",
    .doc = "Crop keyframes are placed on the source timeline (`frame` / fps for frame keys), interpolated\n"
           "linearly with sub-pixel precision, and held before the first and after the last. A keyframe\n"
           "without `w`/`h` takes the full source height at the output's aspect ratio; with no `crop` at all\n"
           "the crop is centred. The rectangle is resampled to `width` x `height` (a triangle filter that\n"
           "interpolates when enlarging and averages when shrinking). `trim` and `speed` are in source\n"
           "seconds; output frame n shows the source frame on screen at the middle of its output interval,\n"
           "so frame counts are exact (`round(duration x fps)`), and the audio is cut and re-timed to match\n"
           "with its pitch kept.",
    .params = reframe_params,
    .res = {.gpu = NULL, .memory_mb = 768, .timeout_s = 3600, .retries = 2, .idle_timeout_s = 60,
            .min_workers = 0, .max_workers = 8, .concurrency = 1, .cpus = 2},
    .run = reframe_run,
    .chunkable = 1,
    .shape = reframe_shape,
    .cost_ms_per_mpixel = 2.0,
};

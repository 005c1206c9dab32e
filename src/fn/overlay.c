/* overlay.c — the highlight spotlight on a tracked player.
 *
 * Highlight keyframes {frame, x, y, rx, ry} (source frame numbers, source
 * pixels) are interpolated linearly between keyframes. Within the keyframed
 * span [first frame, last frame] each frame gets the spotlight (img/spot.c):
 * the ellipse as it was, the rest dimmed by `dim`, an anti-aliased ring of
 * ring_color / ring_width just outside it. Frames outside the span are
 * copied untouched. The frame size and timing do not change. */
#include "fn/common.h"
#include "img/img.h"
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

static const kf_param highlight_fields[] = {
    {"frame", KF_INT, NULL, 1, 1, 0, 1e9, NULL, NULL, "source frame number of this keyframe"},
    {"x", KF_NUM, NULL, 1, 1, -1e5, 1e5, NULL, NULL, "ellipse centre x, source pixels"},
    {"y", KF_NUM, NULL, 1, 1, -1e5, 1e5, NULL, NULL, "ellipse centre y, source pixels"},
    {"rx", KF_NUM, NULL, 1, 1, 1, 1e5, NULL, NULL, "horizontal radius, pixels"},
    {"ry", KF_NUM, NULL, 1, 1, 1, 1e5, NULL, NULL, "vertical radius, pixels"},
    {NULL}};

static const kf_param overlay_params[] = {
    {"highlights", KF_ARR, NULL, 1, 1, 1, 100000, NULL, highlight_fields,
     "spotlight keyframes; frames outside their span are left untouched"},
    {"dim", KF_NUM, "0.6", 0, 1, 0, 1, NULL, NULL, "how much to darken outside the ellipse: 0 none, 1 black"},
    {"ring_color", KF_COLOR, "\"#FFD400\"", 0, 0, 0, 0, NULL, NULL, "ring colour, \"#RRGGBB\" or a name"},
    {"ring_width", KF_NUM, "4", 0, 1, 0, 100, NULL, NULL, "ring width in pixels; 0 for no ring"},
    KF_VIDEO_PARAMS,
    {NULL}};

typedef struct overlay_ctx {
  int nkeys;
  kf_key *keys;                 /* t = source frame; v = x, y, rx, ry */
  ki_spot base;                 /* dim and ring; position filled per frame */
} overlay_ctx;

static int overlay_kernel(const void *ctx, const km_kinfo *ki, const AVFrame *in, AVFrame *out, kiln_err *e) {
  const overlay_ctx *c = ctx;
  double f = (double)ki->src.src_index;
  if (f < c->keys[0].t || f > c->keys[c->nkeys - 1].t) {
    if (av_frame_copy(out, in) < 0) return kiln_fail(e, KILN_EINTERNAL, "frame %lld: copy failed", (long long)ki->src.src_index);
    return 0;
  }
  double v[KF_KEY_VALUES];
  kf_keys_at(c->keys, c->nkeys, f, v);
  ki_spot s = c->base;
  s.cx = v[0]; s.cy = v[1]; s.rx = v[2]; s.ry = v[3];
  ki_spotlight(in, out, &s);
  return 0;
}

static int overlay_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  const json_t *p = t->params;
  km_probe pr;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  overlay_ctx c = {0};
  const json_t *hl = json_object_get(p, "highlights");
  c.nkeys = (int)json_array_size(hl);
  c.keys = calloc((size_t)c.nkeys, sizeof *c.keys);
  if (!c.keys) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  for (int i = 0; i < c.nkeys; i++) {
    const json_t *k = json_array_get(hl, (size_t)i);
    c.keys[i] = (kf_key){kj_num(k, "frame", 0), {kj_num(k, "x", 0), kj_num(k, "y", 0), kj_num(k, "rx", 1), kj_num(k, "ry", 1)}};
  }
  kf_keys_sort(c.keys, c.nkeys);
  c.base.dim = kj_num(p, "dim", 0.6);
  c.base.ring_width = kj_num(p, "ring_width", 4);
  uint8_t rgb[3] = {255, 212, 0};
  ki_parse_color(kj_str(p, "ring_color", "#FFD400"), rgb);
  ki_rgb_to_yuv(rgb, pr.height >= 720, c.base.ring_yuv);

  km_pipeline_cfg cfg;
  kf_pipeline_from_task(t, p, &cfg);
  cfg.probe = &pr;
  cfg.kernel = overlay_kernel;
  cfg.kctx = &c;
  r = km_pipeline_run(&cfg, &res->stats, e);
  free(c.keys);
  return r;
}

const kf_desc kf_overlay = {
    .name = "overlay",
    .summary = "highlight spotlight on a tracked player: dim around an ellipse, draw a ring",
    .doc = "Between its first and last keyframe each frame gets the spotlight: the ellipse as it was, the rest\n"
           "darkened towards black by `dim` (luma and chroma scaled by 1 - dim), and a ring of `ring_width`\n"
           "pixels just outside the ellipse's edge. Edges are anti-aliased over one pixel. Positions are\n"
           "interpolated linearly between keyframes; frames before the first keyframe and after the last\n"
           "are copied untouched. Size, frame rate and audio do not change.",
    .params = overlay_params,
    .res = {.gpu = NULL, .memory_mb = 1536, .timeout_s = 3600, .retries = 2, .idle_timeout_s = 60,
            .min_workers = 0, .max_workers = 8, .concurrency = 1, .cpus = 2},
    .run = overlay_run,
    .chunkable = 1,
    .shape = kf_shape_same,
    .cost_ms_per_mpixel = 1.0,
};

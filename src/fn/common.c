/* common.c — pieces every video function shares: keyframe interpolation and
 * the pipeline configuration that follows from a task. */
#include "fn/common.h"

#include <math.h>
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

static int key_cmp(const void *a, const void *b) {
  double x = ((const kf_key *)a)->t, y = ((const kf_key *)b)->t;
  return x < y ? -1 : x > y;
}

void kf_keys_sort(kf_key *k, int n) { qsort(k, (size_t)n, sizeof *k, key_cmp); }

void kf_keys_at(const kf_key *k, int n, double t, double out[KF_KEY_VALUES]) {
  if (t <= k[0].t || n == 1) { memcpy(out, k[0].v, sizeof k[0].v); return; }
  if (t >= k[n - 1].t) { memcpy(out, k[n - 1].v, sizeof k[0].v); return; }
  int i = 1;
  while (i < n - 1 && k[i].t <= t) i++;
  const kf_key *a = &k[i - 1], *b = &k[i];
  double u = b->t > a->t ? (t - a->t) / (b->t - a->t) : 1;
  for (int j = 0; j < KF_KEY_VALUES; j++) out[j] = a->v[j] + (b->v[j] - a->v[j]) * u;
}

int kf_probe_video(const kf_task *t, km_probe *pr, kiln_err *e) {
  int r = km_probe_file(t->input, pr, e);
  if (r < 0) return r;
  if (!pr->has_video) return kiln_fail(e, KILN_ENOFRAMES, "input '%s' has no video stream", t->input);
  return 0;
}

int kf_shape_same(const json_t *p, const km_probe *pr, kf_shape *s, kiln_err *e) {
  memset(s, 0, sizeof *s);
  km_timeline_identity(&s->tl);
  s->fps = pr->fps_q;
  s->width = pr->width & ~1;
  s->height = pr->height & ~1;
  s->frames = km_pipeline_expected_frames(pr, &s->tl, s->fps);
  s->audio = !json_is_false(json_object_get(p, "audio")) && pr->n_audio > 0;
  (void)e;
  return 0;
}

void kf_pipeline_from_task(const kf_task *t, const json_t *params, km_pipeline_cfg *c) {
  memset(c, 0, sizeof *c);
  c->input = t->input;
  c->output = t->output;
  c->start = t->start;
  c->end = t->end;
  c->out_start = t->out_start;
  c->out_end = t->out_end;
  km_timeline_identity(&c->tl);
  kf_enc_from_params(params, &c->enc);
  c->keep_audio = !json_is_false(json_object_get(params, "audio"));
  c->threads = t->threads;
  c->enc.threads = t->threads;
  c->progress = t->progress;
  c->progress_arg = t->progress_arg;
  c->cancel = t->cancel;
}

int kf_shape_of(const kf_desc *fn, const json_t *params, const char *input, kf_shape *s, km_probe *pr, kiln_err *e) {
  if (!fn->shape) return kiln_fail(e, KILN_EINVAL, "%s cannot be split into chunks", fn->name);
  memset(pr, 0, sizeof *pr);
  if (input) {
    int r = km_probe_file(input, pr, e);
    if (r < 0) return r;
    if (!pr->has_video) return kiln_fail(e, KILN_ENOFRAMES, "input '%s' has no video stream", input);
  }
  int r = fn->shape(params, input ? pr : NULL, s, e);
  if (r < 0) return r;
  s->gop = 1;
  double keyint = kj_num(params, "keyint", 0);
  if (s->width > 0 && keyint > 0 && s->fps.num > 0) s->gop = llround(keyint * av_q2d(s->fps));
  if (s->gop < 1) s->gop = 1;
  s->overlap = 0;                                 /* lossy chunks: see km_pipeline_cfg.out_start */
  if (s->width > 0 && s->gop > 1 && !json_is_true(json_object_get(params, "lossless")))
    s->overlap = KM_CHUNK_WARMUP + km_x264_lookahead(json_string_value(json_object_get(params, "preset"))) + 4;
  return 0;
}

/* Resolves crop keyframes against the probed source; names the bad one. */
int kf_crop_keys(const char *fn, const json_t *p, const km_probe *pr, int ow, int oh, kf_key **keys, int *nkeys, kiln_err *e) {
  const json_t *crop = json_object_get(p, "crop");
  int n = crop ? (int)json_array_size(crop) : 1;
  kf_key *k0 = calloc((size_t)n, sizeof *k0);
  if (!k0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  *keys = k0;
  *nkeys = n;
  double aspect = (double)ow / oh;
  for (int i = 0; i < n; i++) {
    const json_t *k = crop ? json_array_get(crop, (size_t)i) : NULL;
    double h = k ? kj_num(k, "h", pr->height) : pr->height;
    double w = k ? kj_num(k, "w", h * aspect) : h * aspect;
    if (w > pr->width && !(k && json_object_get(k, "w"))) { w = pr->width; if (!(k && json_object_get(k, "h"))) h = w / aspect; }
    double x = k ? kj_num(k, "x", 0) : (pr->width - w) / 2;
    double y = k ? kj_num(k, "y", 0) : (pr->height - h) / 2;
    double t = 0;
    if (k) {
      int hf = json_object_get(k, "frame") != NULL, ht = json_object_get(k, "time") != NULL;
      if (hf == ht)
        return kiln_fail(e, KILN_EPARAM, "%s: crop[%d] needs exactly one of 'frame' or 'time'", fn, i);
      t = hf ? kj_num(k, "frame", 0) / pr->fps : kj_num(k, "time", 0);
    }
    if (x + w > pr->width + 1e-6 || y + h > pr->height + 1e-6)
      return kiln_fail(e, KILN_EPARAM,
                       "%s: crop[%d] (x=%g, y=%g, w=%g, h=%g) extends outside the %dx%d source frame", fn, i, x, y,
                       w, h, pr->width, pr->height);
    k0[i] = (kf_key){t, {x, y, w, h}};
  }
  kf_keys_sort(k0, n);
  return 0;
}


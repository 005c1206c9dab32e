/* remove_watermark.c — find a watermark without a model and remove it.
 *
 * Two phases. Detection (wm_prepare, once per job: the engine calls it
 * before splitting a job and hands its result to every chunk as the
 * `detected` parameter; an unsplit run calls it itself): frames sampled
 * across the whole input (at most `samples`, luma at <= 640 px wide) go to
 * img/wm_detect.c, which returns each mark with the runs of samples it is
 * on; a mark is on from just after the last sample without it to just
 * before the next one without it, so it never flickers back between
 * samples. `boxes` replace detection. A second pass takes full-resolution
 * crops around each region from its own frames and estimates the blend
 * (alpha and colour) of a translucent mark (ki_wm_estimate). The result is
 * plain JSON (masks and blend maps base64), so it travels in a chunk's spec.
 *
 * Removal (wm_run): the pipeline's lookahead shows the kernel's state
 * (img/wmark.h) each frame as it is decoded, on the decode thread, 2 *
 * KI_WM_AHEAD frames before the kernel gets it; the state keeps the input
 * frames around each one and the global motion between them (a chunk's
 * encoder warm-up frames fill the history before its first frame). Given
 * that state a frame's removal reads only input frames, so the kernel runs
 * on several threads at once, each on its own frame. Mode `crop`
 * instead crops away the band that holds every mark and scales back to the
 * frame size. */
#include "fn/common.h"
#include "img/img.h"
#include "img/wmark.h"
#include "util/b64.h"
#include "util/json.h"
#include "util/pool.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const wm_modes[] = {"inpaint", "blur", "crop", NULL};
static const char *const wm_platforms[] = {"auto", "corners", "sora", "tiktok", "capcut", "veo", NULL};

static const kf_param box_fields[] = {
    {"x", KF_INT, NULL, 1, 1, 0, 1e5, NULL, NULL, "left edge, pixels"},
    {"y", KF_INT, NULL, 1, 1, 0, 1e5, NULL, NULL, "top edge, pixels"},
    {"w", KF_INT, NULL, 1, 1, 1, 1e5, NULL, NULL, "width, pixels"},
    {"h", KF_INT, NULL, 1, 1, 1, 1e5, NULL, NULL, "height, pixels"},
    {"start", KF_NUM, "0", 0, 1, 0, 1e7, NULL, NULL, "second the mark appears"},
    {"end", KF_NUM, NULL, 0, 1, 0, 1e7, NULL, NULL, "second it goes (default: the end)"},
    {NULL}};

static const kf_param wm_params[] = {
    {"mode", KF_STR, "\"inpaint\"", 0, 0, 0, 0, wm_modes, NULL,
     "inpaint (fill from other frames, then spatially), blur, or crop (cut away the band with the mark, rescale)"},
    {"platform", KF_STR, "\"auto\"", 0, 0, 0, 0, wm_platforms, NULL,
     "where to look: auto (anywhere), corners, or a platform's usual places, which detection then confirms"},
    {"boxes", KF_ARR, NULL, 0, 1, 1, 64, NULL, box_fields, "the marks' boxes instead of detection"},
    {"mask", KF_STR, NULL, 0, 0, 0, 0, NULL, NULL,
     "a mask image instead of detection: PNG or JPEG as base64, the frame's size, light pixels mark the watermark (whole video)"},
    {"sensitivity", KF_NUM, "1", 0, 1, 0.25, 4, NULL, NULL, "detection: above 1 finds fainter marks (and more false ones)"},
    {"samples", KF_INT, "160", 0, 1, 8, 2000, NULL, NULL, "detection: most frames sampled across the video"},
    {"margin", KF_INT, "2", 0, 1, 0, 32, NULL, NULL, "pixels added around each mask (anti-aliased edges, shadows)"},
    {"temporal", KF_BOOL, "true", 0, 0, 0, 0, NULL, NULL, "fill from other frames under global motion before filling spatially"},
    {"detected", KF_OBJ, NULL, 0, 0, 0, 0, NULL, NULL,
     "set by kiln: the job's detection result, given to every chunk (leave it out)"},
    KF_VIDEO_PARAMS,
    {NULL}};

/* ---- base64 of byte maps (the detection result travels as JSON) -------- */

static json_t *b64_json(const uint8_t *p, size_t n) {
  char *t = ku_b64_encode(p, n);
  json_t *s = t ? json_string(t) : NULL;
  free(t);
  return s;
}

/* Decodes exactly n bytes into a new buffer, or NULL. */
static uint8_t *b64_bytes(const json_t *s, size_t n) {
  const char *t = json_string_value(s);
  uint8_t *b = NULL;
  size_t bn = 0;
  if (!t || ku_b64_decode(t, strlen(t), &b, &bn) < 0) return NULL;
  if (bn != n) { free(b); return NULL; }
  return b;
}

/* ---- regions <-> JSON ---------------------------------------------------- */

typedef struct wm_set {
  ki_wm_region *r;
  int n, cap;
  int fw, fh;
  double fps;
  int64_t frames;
} wm_set;

static void set_release(wm_set *s) {
  for (int i = 0; i < s->n; i++) ki_wm_region_release(&s->r[i]);
  free(s->r);
  memset(s, 0, sizeof *s);
}

static ki_wm_region *set_add(wm_set *s) {
  if (s->n == s->cap) {
    int nc = s->cap ? 2 * s->cap : 8;
    ki_wm_region *nr = realloc(s->r, (size_t)nc * sizeof *nr);
    if (!nr) return NULL;
    s->r = nr;
    s->cap = nc;
  }
  ki_wm_region *r = &s->r[s->n++];
  memset(r, 0, sizeof *r);
  return r;
}

static json_t *set_json(const wm_set *s) {
  json_t *a = json_array();
  for (int i = 0; i < s->n; i++) {
    const ki_wm_region *r = &s->r[i];
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:I, s:I}", "x", r->x, "y", r->y, "w", r->w, "h", r->h, "start",
                          (json_int_t)r->start, "end", (json_int_t)r->end);
    json_object_set_new(o, "mask", b64_json(r->mask, (size_t)r->w * r->h));
    if (r->translucent) json_object_set_new(o, "translucent", json_true());
    if (r->alpha) {
      size_t n = (size_t)r->w * r->h, nc = (size_t)(r->w / 2) * (r->h / 2);
      uint8_t *q = malloc(n);
      if (q) {
        for (size_t k = 0; k < n; k++) q[k] = (uint8_t)lrintf(fminf(fmaxf(r->alpha[k], 0), 1) * 255);
        json_object_set_new(o, "alpha", b64_json(q, n));
        json_t *al = json_array();
        for (int p = 0; p < 3; p++) {
          size_t m = p ? nc : n;
          for (size_t k = 0; k < m; k++) q[k] = (uint8_t)lrintf(fminf(fmaxf(r->al[p][k], 0), 255));
          json_array_append_new(al, b64_json(q, m));
        }
        json_object_set_new(o, "al", al);
        free(q);
      }
    }
    json_array_append_new(a, o);
  }
  return json_pack("{s:i, s:o}", "version", 1, "regions", a);
}

static int set_from_json(const json_t *d, wm_set *s, kiln_err *e) {
  const json_t *a = json_object_get(d, "regions");
  if (!json_is_array(a)) return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'detected' is damaged (no regions)");
  for (size_t i = 0; i < json_array_size(a); i++) {
    const json_t *o = json_array_get(a, i);
    ki_wm_region *r = set_add(s);
    if (!r) return kiln_fail(e, KILN_ENOMEM, "out of memory");
    r->x = (int)kj_num(o, "x", -1); r->y = (int)kj_num(o, "y", -1);
    r->w = (int)kj_num(o, "w", 0); r->h = (int)kj_num(o, "h", 0);
    r->start = (int64_t)kj_num(o, "start", 0); r->end = (int64_t)kj_num(o, "end", 0);
    r->translucent = json_is_true(json_object_get(o, "translucent"));
    if (r->x < 0 || r->y < 0 || r->w < 2 || r->h < 2 || r->x + r->w > s->fw || r->y + r->h > s->fh || (r->w | r->h | r->x | r->y) & 1)
      return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'detected' region %zu is damaged or not for this video", i);
    size_t n = (size_t)r->w * r->h, nc = (size_t)(r->w / 2) * (r->h / 2);
    if (!(r->mask = b64_bytes(json_object_get(o, "mask"), n)))
      return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'detected' region %zu has a damaged mask", i);
    const json_t *al = json_object_get(o, "al");
    uint8_t *q = json_object_get(o, "alpha") ? b64_bytes(json_object_get(o, "alpha"), n) : NULL;
    if (q && json_array_size(al) == 3) {
      r->alpha = malloc(n * sizeof *r->alpha);
      for (int p = 0; p < 3; p++) r->al[p] = malloc((p ? nc : n) * sizeof(float));
      int ok = r->alpha && r->al[0] && r->al[1] && r->al[2];
      for (size_t k = 0; ok && k < n; k++) r->alpha[k] = q[k] / 255.0f;
      for (int p = 0; ok && p < 3; p++) {
        uint8_t *b = b64_bytes(json_array_get(al, (size_t)p), p ? nc : n);
        if (!b) { ok = 0; break; }
        for (size_t k = 0; k < (p ? nc : n); k++) r->al[p][k] = b[k];
        free(b);
      }
      if (!ok) {
        free(q);
        return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'detected' region %zu has a damaged blend map", i);
      }
    }
    free(q);
  }
  return 0;
}

/* ---- detection ----------------------------------------------------------- */

/* Likely places (fractions of the frame: x, y, w, h) per platform; NULL: anywhere. */
typedef struct preset { const char *name; int n; double r[4][4]; double sens; } preset;
static const preset presets[] = {
    {"corners", 4, {{0, 0, .4, .3}, {.6, 0, .4, .3}, {0, .7, .4, .3}, {.6, .7, .4, .3}}, 1.2},
    {"sora", 0, {{0}}, 1.2},                                      /* its mark moves around the frame */
    {"tiktok", 2, {{0, 0, .5, .35}, {.5, .6, .5, .4}}, 1.2},      /* logo and name, top left then bottom right */
    {"capcut", 2, {{.55, 0, .45, .3}, {.55, .7, .45, .3}}, 1.2},
    {"veo", 1, {{.6, .7, .4, .3}}, 1.2},
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Grows r's box by m pixels (dilating its mask) and aligns it to even
 * coordinates inside the frame. */
static int region_grow(ki_wm_region *r, int m, int fw, int fh) {
  int x0 = (r->x - m) & ~1, y0 = (r->y - m) & ~1;
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  int x1 = (r->x + r->w + m + 1) & ~1, y1 = (r->y + r->h + m + 1) & ~1;
  if (x1 > (fw & ~1)) x1 = fw & ~1;
  if (y1 > (fh & ~1)) y1 = fh & ~1;
  int w = x1 - x0, h = y1 - y0;
  if (w < 2 || h < 2) return KILN_EINVAL;
  uint8_t *nm = calloc((size_t)w * h, 1);
  if (!nm) return KILN_ENOMEM;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int v = 0;
      for (int j = -m; j <= m && !v; j++)
        for (int i = -m; i <= m && !v; i++) {
          int sx = x0 + x + i - r->x, sy = y0 + y + j - r->y;
          if (sx >= 0 && sy >= 0 && sx < r->w && sy < r->h) v = r->mask[(size_t)sy * r->w + sx];
        }
      nm[(size_t)y * w + x] = (uint8_t)v;
    }
  free(r->mask);
  r->mask = nm;
  r->x = x0; r->y = y0; r->w = w; r->h = h;
  return 0;
}

/* The second pass: full-resolution crops around each region from sampled
 * frames it is on, for the blend estimate. */
#define EST_MARGIN 8
#define EST_MAX 48
static int estimate_all(const kf_task *t, const km_probe *pr, wm_set *s, int64_t stride, AVFrame *const *kept,
                        const int64_t *kept_idx, int nkept, kiln_err *e) {
  int r = 0;
  km_decoder *dec = NULL;
  typedef struct { uint8_t *(*c)[3]; int n, cap; int64_t step; } crops;
  crops *cr = calloc((size_t)s->n, sizeof *cr);
  if (!cr) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  for (int i = 0; i < s->n; i++) {
    if (s->r[i].sure_end > s->r[i].end) s->r[i].sure_end = s->r[i].end;
    int64_t span = s->r[i].sure_end - s->r[i].sure_start;
    cr[i].step = span / EST_MAX > stride ? span / EST_MAX : stride;
    if (cr[i].step < 1) cr[i].step = 1;
    cr[i].cap = EST_MAX + 2;
    cr[i].c = calloc((size_t)cr[i].cap, sizeof *cr[i].c);
    if (!cr[i].c) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
  }
  /* the sampled frames detection kept, else a second decode */
  if (!kept && (r = km_decoder_open(&dec, t->input, pr, 0, -1, t->threads, e)) < 0) goto done;
  for (int ki = 0;; ki++) {
    AVFrame *f = NULL;
    km_frame_info fi;
    if (t->cancel && *t->cancel) { r = kiln_fail(e, KILN_ECANCELLED, "cancelled"); goto done; }
    if (kept) {
      if (ki >= nkept) { r = 0; break; }
      f = av_frame_clone(kept[ki]);
      if (!f) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
      fi.src_index = kept_idx[ki];
    } else {
      r = km_decoder_read(dec, &f, &fi, e);
      if (r <= 0) break;
    }
    for (int i = 0; i < s->n; i++) {
      ki_wm_region *g = &s->r[i];
      if (fi.src_index < g->sure_start || fi.src_index >= g->sure_end || cr[i].n >= cr[i].cap ||
          (!kept && (fi.src_index - g->sure_start) % cr[i].step) || (kept && ki % (int)(cr[i].step / stride) != 0))
        continue;
      int m = EST_MARGIN, cw = g->w + 2 * m, ch = g->h + 2 * m;
      uint8_t **c = cr[i].c[cr[i].n];
      for (int p = 0; p < 3; p++) {
        int sc = p ? 2 : 1, pw = cw / sc, ph = ch / sc, fw = f->width / sc, fh = f->height / sc;
        c[p] = malloc((size_t)pw * ph);
        if (!c[p]) { av_frame_free(&f); r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
        for (int y = 0; y < ph; y++)
          for (int x = 0; x < pw; x++) {
            int sx = (g->x - m) / sc + x, sy = (g->y - m) / sc + y;
            sx = sx < 0 ? 0 : sx >= fw ? fw - 1 : sx;
            sy = sy < 0 ? 0 : sy >= fh ? fh - 1 : sy;
            c[p][(size_t)y * pw + x] = f->data[p][(size_t)sy * f->linesize[p] + sx];
          }
      }
      cr[i].n++;
    }
    av_frame_free(&f);
  }
  if (r < 0) goto done;
  for (int i = 0; i < s->n; i++)
    if ((r = ki_wm_estimate(&s->r[i], (uint8_t *const(*)[3])cr[i].c, cr[i].n, EST_MARGIN)) < 0) {
      r = kiln_fail(e, KILN_ENOMEM, "out of memory");
      goto done;
    }
  r = 0;
done:
  km_decoder_free(dec);
  for (int i = 0; i < s->n; i++) {
    for (int k = 0; k < cr[i].n; k++)
      for (int p = 0; p < 3; p++) free(cr[i].c[k][p]);
    free(cr[i].c);
  }
  free(cr);
  return r;
}

/* The `mask` parameter: a base64 image of the frame's size; light pixels
 * (luma > 127) are the mark, on the whole video. */
static int mask_region(const char *b64, const km_probe *pr, wm_set *s, kiln_err *e) {
  uint8_t *raw = NULL;
  size_t n = 0;
  if (ku_b64_decode(b64, strlen(b64), &raw, &n) < 0 || n == 0) {
    free(raw);
    return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'mask' is not base64 of an image");
  }
  char tmp[] = "/tmp/kiln-mask-XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0 || write(fd, raw, n) != (ssize_t)n) {
    if (fd >= 0) { close(fd); unlink(tmp); }
    free(raw);
    return kiln_fail(e, KILN_EIO, "remove_watermark: cannot write the mask to a temporary file");
  }
  close(fd);
  free(raw);
  km_image im = {0};
  kiln_err ie = {0};
  int r = km_image_read(tmp, &im, &ie);
  unlink(tmp);
  if (r < 0) return kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'mask' is not an image FFmpeg can read");
  if (im.w != pr->width || im.h != pr->height) {
    r = kiln_fail(e, KILN_EPARAM, "remove_watermark: parameter 'mask' is %dx%d; it must be the %dx%d frame's size", im.w, im.h,
                  pr->width, pr->height);
    km_image_release(&im);
    return r;
  }
  int x0 = im.w, y0 = im.h, x1 = -1, y1 = -1;
  for (int y = 0; y < im.h; y++)
    for (int x = 0; x < im.w; x++) {
      const uint8_t *q = im.rgb + ((size_t)y * im.w + x) * 3;
      if (q[0] * 77 + q[1] * 150 + q[2] * 29 > 127 * 256) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  ki_wm_region *g = x1 >= 0 ? set_add(s) : NULL;
  if (x1 >= 0 && (!g || !(g->mask = malloc((size_t)(x1 - x0 + 1) * (y1 - y0 + 1))))) {
    km_image_release(&im);
    return kiln_fail(e, KILN_ENOMEM, "out of memory");
  }
  if (g) {
    g->x = x0; g->y = y0; g->w = x1 - x0 + 1; g->h = y1 - y0 + 1;
    for (int y = 0; y < g->h; y++)
      for (int x = 0; x < g->w; x++) {
        const uint8_t *q = im.rgb + ((size_t)(y0 + y) * im.w + x0 + x) * 3;
        g->mask[(size_t)y * g->w + x] = q[0] * 77 + q[1] * 150 + q[2] * 29 > 127 * 256;
      }
    g->start = g->sure_start = 0;
    g->end = g->sure_end = INT64_MAX;
  }
  km_image_release(&im);
  if (g && (r = region_grow(g, 0, s->fw, s->fh)) < 0) return kiln_fail(e, r, "remove_watermark: the mask is outside the frame");
  return 0;
}

/* The most of the frame any frame's marks cover, as a share. */
static double max_cover(const wm_set *s) {
  double best = 0;
  for (int i = 0; i < s->n; i++) {
    double a = 0;
    for (int k = 0; k < s->n; k++)
      if (s->r[k].start < s->r[i].end && s->r[i].start < s->r[k].end)
        for (size_t q = 0; q < (size_t)s->r[k].w * s->r[k].h; q++) a += s->r[k].mask[q];
    if (a > best) best = a;
  }
  return best / ((double)s->fw * s->fh);
}

/* Detection (or the boxes) for the whole input: fills s. */
static int wm_detect_all(const kf_task *t, const km_probe *pr, wm_set *s, kiln_err *e) {
  const json_t *p = t->params;
  int r = 0;
  int fw = pr->width & ~1, fh = pr->height & ~1;
  s->fw = fw; s->fh = fh;
  s->fps = pr->fps > 0 ? pr->fps : 25;
  ki_wm_samples smp = {0};
  ki_wm_found *found = NULL;
  int nfound = 0;
  km_decoder *dec = NULL;
  AVFrame **kept = NULL;
  int64_t *kept_idx = NULL;
  int nkept = 0, kept_cap = 0;
  int64_t total = pr->frames > 0 ? pr->frames : 1;
  int want = (int)kj_num(p, "samples", 160);
  /* about 6 samples a second (a detection window of 12 then spans 2 s: long enough for slow
   * content to move, short enough that a mark staying 3 s fills one), fewer on long videos */
  int64_t stride = llround((pr->fps > 0 ? pr->fps : 25) / 6);
  if (stride < 1) stride = 1;
  if (total / stride > want) stride = (total + want - 1) / want;
  int margin = (int)kj_num(p, "margin", 2);
  const json_t *boxes = json_object_get(p, "boxes");
  const char *mask64 = kj_str(p, "mask", NULL);
  if (mask64) {
    if ((r = mask_region(mask64, pr, s, e)) < 0) return r;
  } else if (boxes) {
    for (size_t i = 0; i < json_array_size(boxes); i++) {
      const json_t *b = json_array_get(boxes, i);
      int x = (int)kj_num(b, "x", 0), y = (int)kj_num(b, "y", 0), w = (int)kj_num(b, "w", 1), h = (int)kj_num(b, "h", 1);
      if (x + w > pr->width || y + h > pr->height)
        return kiln_fail(e, KILN_EPARAM, "remove_watermark: boxes[%zu] (x=%d, y=%d, w=%d, h=%d) extends outside the %dx%d frame",
                         i, x, y, w, h, pr->width, pr->height);
      ki_wm_region *g = set_add(s);
      if (!g || !(g->mask = malloc((size_t)w * h))) return kiln_fail(e, KILN_ENOMEM, "out of memory");
      memset(g->mask, 1, (size_t)w * h);
      g->x = x; g->y = y; g->w = w; g->h = h;
      g->start = (int64_t)floor(kj_num(b, "start", 0) * s->fps);
      const json_t *en = json_object_get(b, "end");
      g->end = en ? (int64_t)ceil(json_number_value(en) * s->fps) : INT64_MAX;
      g->sure_start = g->start;
      g->sure_end = g->end;
      if ((r = region_grow(g, 0, fw, fh)) < 0) return kiln_fail(e, r, "remove_watermark: boxes[%zu] is outside the frame", i);
    }
  } else {
    smp.scale = (pr->width + 639) / 640;          /* detection at <= 640 px wide (averaging also calms noise) */
    /* keep the sampled frames for the blend estimate when they fit in 192 MB (saves a decode) */
    if ((double)fw * fh * 1.5 * (double)(total / stride + 1) <= 192e6) {
      kept = calloc((size_t)(total / stride + 2), sizeof *kept);
      kept_idx = calloc((size_t)(total / stride + 2), sizeof *kept_idx);
      kept_cap = kept && kept_idx ? (int)(total / stride + 2) : 0;
    }
    if ((r = km_decoder_open(&dec, t->input, pr, 0, -1, t->threads, e)) < 0) goto done;
    int64_t last = -1;
    for (;;) {
      AVFrame *f = NULL;
      km_frame_info fi;
      if (t->cancel && *t->cancel) { r = kiln_fail(e, KILN_ECANCELLED, "cancelled"); goto done; }
      r = km_decoder_read(dec, &f, &fi, e);
      if (r <= 0) break;
      last = fi.src_index;
      if (fi.src_index % stride == 0 && ki_wm_samples_add(&smp, f->data[0], f->linesize[0], fw, fh, fi.src_index) < 0) {
        av_frame_free(&f);
        r = kiln_fail(e, KILN_ENOMEM, "out of memory");
        goto done;
      }
      if (fi.src_index % stride == 0 && nkept < kept_cap) {
        kept_idx[nkept] = fi.src_index;
        kept[nkept++] = f;
        f = NULL;
      }
      av_frame_free(&f);
    }
    if (r < 0) goto done;
    total = last + 1;
    ki_wm_hint hint = {0};
    int rects[4][4];
    const char *plat = kj_str(p, "platform", "auto");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
      if (!strcmp(plat, presets[i].name)) {
        for (int k = 0; k < presets[i].n; k++) {
          rects[k][0] = (int)(presets[i].r[k][0] * smp.w); rects[k][1] = (int)(presets[i].r[k][1] * smp.h);
          rects[k][2] = (int)ceil(presets[i].r[k][2] * smp.w); rects[k][3] = (int)ceil(presets[i].r[k][3] * smp.h);
        }
        hint.rects = presets[i].n ? (const int(*)[4])rects : NULL;
        hint.nrects = presets[i].n;
        hint.sensitivity = presets[i].sens;
      }
    hint.sensitivity = (hint.sensitivity > 0 ? hint.sensitivity : 1) * kj_num(p, "sensitivity", 1);
    if ((r = ki_wm_detect(&smp, &hint, &found, &nfound)) < 0) { r = kiln_fail(e, r, "out of memory"); goto done; }
    /* parts of one mark (a ring and what it holds) found apart: one region, their union */
    for (int i = 0; i < nfound; i++)
      for (int j = i + 1; j < nfound; j++) {
        ki_wm_found *a = &found[i], *b = &found[j];
        if (!b->mask || !a->mask) continue;
        int ov = a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h && b->y < a->y + a->h;
        int tov = a->first <= b->last && b->first <= a->last;
        if (!ov || !tov) continue;
        int x0 = a->x < b->x ? a->x : b->x, y0 = a->y < b->y ? a->y : b->y;
        int x1 = a->x + a->w > b->x + b->w ? a->x + a->w : b->x + b->w, y1 = a->y + a->h > b->y + b->h ? a->y + a->h : b->y + b->h;
        uint8_t *m = calloc((size_t)(x1 - x0) * (y1 - y0), 1);
        if (!m) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
        for (int k = 0; k < 2; k++) {
          const ki_wm_found *g = k ? b : a;
          for (int y = 0; y < g->h; y++)
            for (int x = 0; x < g->w; x++)
              if (g->mask[(size_t)y * g->w + x]) m[(size_t)(g->y - y0 + y) * (x1 - x0) + g->x - x0 + x] = 1;
        }
        free(a->mask);
        a->mask = m;
        a->x = x0; a->y = y0; a->w = x1 - x0; a->h = y1 - y0;
        if (b->first < a->first) a->first = b->first;
        if (b->last > a->last) a->last = b->last;
        free(b->mask);
        b->mask = NULL;
        j = i;                                   /* the union may now touch others: look again */
      }
    double min_s = total / s->fps >= 3 ? 1.0 : 0;   /* a mark stays a second or more; a blip is the scene */
    for (int i = 0; i < nfound; i++) {
      const ki_wm_found *f = &found[i];
      if (!f->mask) continue;
      if ((double)(smp.frame[f->last] - smp.frame[f->first] + stride) / s->fps < min_s) continue;
      ki_wm_region *g = set_add(s);
      int k = smp.scale;
      if (!g || !(g->mask = malloc((size_t)f->w * k * f->h * k))) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
      g->x = f->x * k; g->y = f->y * k; g->w = f->w * k; g->h = f->h * k;
      for (int y = 0; y < g->h; y++)
        for (int x = 0; x < g->w; x++) g->mask[(size_t)y * g->w + x] = f->mask[(size_t)(y / k) * f->w + x / k];
      g->sure_start = smp.frame[f->first];
      g->sure_end = smp.frame[f->last] + 1;
      g->start = f->first > 0 ? smp.frame[f->first - 1] + 1 : 0;
      g->end = f->last < smp.n - 1 ? smp.frame[f->last + 1] : INT64_MAX;
      if ((r = region_grow(g, margin, fw, fh)) < 0) { r = kiln_fail(e, r, "out of memory"); goto done; }
    }
  }
  for (int i = 0; i < s->n; i++)
    if (s->r[i].end > total || s->r[i].end == INT64_MAX) s->r[i].end = total;
  s->frames = total;
  /* before the blend estimate shrinks the masks to what it finds: the user's boxes are judged as given */
  double cover = max_cover(s);
  if (cover > 0.5) {
    r = kiln_fail(e, KILN_EPARAM, "remove_watermark: the watermark mask covers %.0f%% of the frame (at most 50%% can be "
                  "filled in); give smaller boxes", cover * 100);
    goto done;
  }
  if (s->n && strcmp(kj_str(p, "mode", "inpaint"), "crop") != 0)
    r = estimate_all(t, pr, s, stride, nkept && kept_cap ? kept : NULL, kept_idx, nkept, e);
  else r = 0;
done:
  for (int i = 0; i < nkept; i++) av_frame_free(&kept[i]);
  free(kept);
  free(kept_idx);
  km_decoder_free(dec);
  ki_wm_samples_release(&smp);
  ki_wm_found_free(found, nfound);
  return r;
}

static int wm_prepare(void *state, const kf_task *t, json_t **add, kiln_err *e) {
  km_probe pr;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  wm_set s = {0};
  double t0 = now_ms();
  if ((r = wm_detect_all(t, &pr, &s, e)) == 0) {
    json_t *d = set_json(&s);
    json_object_set_new(d, "detection_ms", json_real(now_ms() - t0));
    json_object_set_new(d, "frames", json_integer(s.frames));
    *add = json_pack("{s:o}", "detected", d);
  }
  set_release(&s);
  return r;
}

/* ---- removal -------------------------------------------------------------- */

typedef struct wm_ctx {
  wm_set *s;
  ki_wm_state *st;
  ki_wm_mode mode;
  int temporal;
  double cx, cy, cw, ch;        /* crop mode: the rectangle kept */
  ki_wm_frame_stats fs;
  pthread_mutex_t mu;           /* fs: the kernel threads add to it */
} wm_ctx;

static int regions_on(const wm_set *s, int64_t n, const ki_wm_region **on) {
  int k = 0;
  for (int i = 0; i < s->n && k < 16; i++)
    if (n >= s->r[i].start && n < s->r[i].end) on[k++] = &s->r[i];
  return k;
}

/* The pipeline's `see`: each source frame as it is decoded, 2*KI_WM_AHEAD
 * frames before the kernel gets it, goes into the kernel's state. */
static int wm_see(const void *ctx, const AVFrame *f, const km_frame_info *fi, kiln_err *e) {
  wm_ctx *c = (wm_ctx *)ctx;
  if (f->width < c->s->fw || f->height < c->s->fh) return 0;
  const ki_wm_region *on[16];
  int k = regions_on(c->s, fi->src_index, on);
  int r = ki_wm_push(c->st, f, fi->src_index, on, k);   /* the state lets one thread push while the kernel removes */
  return r < 0 ? kiln_fail(e, r, "out of memory") : 0;
}

static int wm_kernel(const void *ctx, const km_kinfo *ki, const AVFrame *in, AVFrame *out, kiln_err *e) {
  wm_ctx *c = (wm_ctx *)ctx;    /* the state is shared: see the file comment */
  if (c->mode == (ki_wm_mode)-1) {
    if (ki_crop_scale(in, c->cx, c->cy, c->cw, c->ch, out) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
    return 0;
  }
  const ki_wm_region *on[16];
  int n = regions_on(c->s, ki->src.src_index, on);
  ki_wm_frame_stats fs = {0};
  int r = ki_wm_frame(c->st, ki->src.src_index, in, out, on, n, c->mode, c->temporal, &fs);
  pthread_mutex_lock(&c->mu);
  c->fs.px_masked += fs.px_masked;
  c->fs.px_inverted += fs.px_inverted;
  c->fs.px_temporal += fs.px_temporal;
  c->fs.px_spatial += fs.px_spatial;
  pthread_mutex_unlock(&c->mu);
  if (r < 0) return kiln_fail(e, r, "frame %lld: removing the watermark failed", (long long)ki->src.src_index);
  return 0;
}

/* Crop mode: the largest rectangle of the frame's aspect that leaves out
 * every mark, cut from one side. */
static int crop_rect(const wm_set *s, wm_ctx *c, kiln_err *e) {
  int x0 = s->fw, y0 = s->fh, x1 = 0, y1 = 0;
  for (int i = 0; i < s->n; i++) {
    const ki_wm_region *g = &s->r[i];
    if (g->x < x0) x0 = g->x;
    if (g->y < y0) y0 = g->y;
    if (g->x + g->w > x1) x1 = g->x + g->w;
    if (g->y + g->h > y1) y1 = g->y + g->h;
  }
  double W = s->fw, H = s->fh, best = 0;
  /* k: keep the rows below the marks, above them, the columns right of them, left of them */
  for (int k = 0; k < 4; k++) {
    double h = k == 0 ? H - y1 : k == 1 ? y0 : k == 2 ? (W - x1) * H / W : x0 * H / W;
    double w = h * W / H;
    if (h < 16 || w < 16) continue;
    if (h * w > best) {
      best = h * w;
      c->cw = w; c->ch = h;
      c->cx = k == 2 ? x1 : k == 3 ? 0 : (W - w) / 2;
      c->cy = k == 0 ? y1 : k == 1 ? 0 : (H - h) / 2;
    }
  }
  if (best <= 0) return kiln_fail(e, KILN_EPARAM, "remove_watermark: mode crop cannot cut the marks away (they are on every side); use mode inpaint");
  return 0;
}

static json_t *regions_info(const wm_set *s, const char *source) {
  json_t *a = json_array();
  for (int i = 0; i < s->n; i++) {
    const ki_wm_region *g = &s->r[i];
    int64_t area = 0;
    for (size_t q = 0; q < (size_t)g->w * g->h; q++) area += g->mask[q];
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:f, s:f, s:s, s:s}", "x", g->x, "y", g->y, "w", g->w,
                          "h", g->h, "pixels", (json_int_t)area, "start_frame", (json_int_t)g->start, "end_frame",
                          (json_int_t)g->end, "start", g->start / s->fps, "end", g->end / s->fps, "kind",
                          g->translucent ? "translucent" : "opaque", "source", source);
    json_array_append_new(a, o);
  }
  return a;
}

static int wm_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  const json_t *p = t->params;
  km_probe pr;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  wm_set s = {0};
  wm_ctx c;
  memset(&c, 0, sizeof c);
  pthread_mutex_init(&c.mu, NULL);
  c.s = &s;
  double t0 = now_ms(), det_ms = 0;
  const json_t *det = json_object_get(p, "detected");
  s.fw = pr.width & ~1; s.fh = pr.height & ~1; s.fps = pr.fps > 0 ? pr.fps : 25;
  if (det) r = set_from_json(det, &s, e);
  else r = wm_detect_all(t, &pr, &s, e);
  if (r < 0) goto done;
  det_ms = det ? kj_num(det, "detection_ms", 0) : now_ms() - t0;
  const char *mode = kj_str(p, "mode", "inpaint");
  c.mode = !strcmp(mode, "blur") ? KI_WM_BLUR : KI_WM_INPAINT;
  c.temporal = !json_is_false(json_object_get(p, "temporal"));
  km_pipeline_cfg cfg;
  kf_pipeline_from_task(t, p, &cfg);
  cfg.probe = &pr;
  if (s.n > 0) {
    if (!strcmp(mode, "crop")) {
      if ((r = crop_rect(&s, &c, e)) < 0) goto done;
      c.mode = (ki_wm_mode)-1;
    } else if ((r = ki_wm_state_new(&c.st, s.fw, s.fh)) < 0) {
      r = kiln_fail(e, r, "out of memory");
      goto done;
    }
    cfg.kernel = wm_kernel;
    cfg.kctx = &c;
    /* frames are independent given the state (the sources are input frames), so
     * several kernel threads work on neighbouring frames; the pipeline's slots keep
     * them within 2 * threads + 8 frames of each other (KI_WM_SPAN) */
    int kt = t->threads > 0 ? t->threads : kp_ncpu();
    cfg.kernel_threads = kt > 8 ? 8 : kt;
    if (c.st && c.temporal && c.mode == KI_WM_INPAINT) {   /* the frames ahead, as they are decoded */
      cfg.see = wm_see;
      cfg.lookahead = 2 * KI_WM_AHEAD;
    }
  }
  r = km_pipeline_run(&cfg, &res->stats, e);
  if (r < 0) goto done;
  res->info = json_pack("{s:i, s:o, s:s, s:f, s:f}", "watermarks_found", s.n, "regions",
                        regions_info(&s, json_object_get(p, "boxes") ? "boxes" : json_object_get(p, "mask") ? "mask" : "detected"),
                        "mode", mode, "detection_ms", det_ms, "ms_per_frame",
                        res->stats.frames_out > 0 ? (now_ms() - t0) / (double)res->stats.frames_out : 0.0);
  if (c.st)
    json_object_set_new(res->info, "pixels", json_pack("{s:I, s:I, s:I, s:I}", "masked", (json_int_t)c.fs.px_masked,
                                                       "inverted", (json_int_t)c.fs.px_inverted, "temporal",
                                                       (json_int_t)c.fs.px_temporal, "spatial", (json_int_t)c.fs.px_spatial));
done:
  ki_wm_state_free(c.st);
  pthread_mutex_destroy(&c.mu);
  set_release(&s);
  return r;
}

/* A chunked job's stats: the regions detection found (in the join's params). */
static json_t *wm_join_info(const json_t *params, const km_probe *pr) {
  const json_t *det = json_object_get(params, "detected");
  if (!det) return NULL;
  wm_set s = {0};
  s.fw = pr->width & ~1; s.fh = pr->height & ~1; s.fps = pr->fps > 0 ? pr->fps : 25;
  kiln_err e = {0};
  json_t *info = NULL;
  if (set_from_json(det, &s, &e) == 0)
    info = json_pack("{s:i, s:o, s:s, s:f}", "watermarks_found", s.n, "regions",
                     regions_info(&s, json_object_get(params, "boxes") ? "boxes" : json_object_get(params, "mask") ? "mask" : "detected"),
                     "mode", kj_str(params, "mode", "inpaint"), "detection_ms", kj_num(det, "detection_ms", 0));
  set_release(&s);
  return info;
}

const kf_desc kf_remove_watermark = {
    .name = "remove_watermark",
    .summary = "find a watermark without a model and remove it: blend inversion, temporal then spatial fill",
    .doc = "Detection needs no model: frames sampled across the video show which edges stay put while the\n"
           "picture around them changes; each mark gets its own mask and time range (a mark that changes\n"
           "corner is two). `boxes` replace detection; `platform` limits it to a platform's usual places.\n"
           "A translucent mark's alpha and colour are estimated and the blend inverted; the rest is filled\n"
           "from frames before and after under global motion, then spatially (a harmonic fill), with the seam\n"
           "blended. `blur` blurs the mask instead; `crop` cuts away the band with the mark and scales back.\n"
           "Detection runs once per job; chunks get its result. Static scenes: a logo on a background that\n"
           "never changes cannot be told from the scene; pass `boxes`. See docs/watermark.md.",
    .params = wm_params,
    .res = {.gpu = NULL, .memory_mb = 1536, .timeout_s = 3600, .retries = 2, .idle_timeout_s = 60,
            .min_workers = 0, .max_workers = 8, .concurrency = 1, .cpus = 2},
    .run = wm_run,
    .chunkable = 1,
    .prepare = wm_prepare,
    .join_info = wm_join_info,
    .shape = kf_shape_same,
    .cost_ms_per_mpixel = 2.0,
};

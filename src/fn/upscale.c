/* upscale.c — super-resolution with Real-ESRGAN (issue #5).
 *
 * Videos, each frame: YUV 4:2:0 → RGB in [0,1] (swscale) → the model (src/nn:
 * the ncnn weights fetched by `kiln models fetch`, convolutions on oneDNN,
 * in overlapping tiles when a frame is too large for memory: nn/tile.h) →
 * YUV 4:2:0. Still images (PNG, JPEG: km_probe_is_image) take the same path
 * on RGB24 and are written as a PNG (media/image.c). `model` is a catalog
 * name (installed under $KILN_HOME/models) or a path to NAME.param/NAME.bin
 * without the extension.
 *
 * Sizes: with no width/height the output is the input times the model's
 * scale. With width/height and no crop, the input is resized to width/scale
 * x height/scale and the model's output is the output, never resampled: so
 * they must be whole multiples of the scale (an error names the field). With
 * `crop` (reframe's keyframes) the flow is crop, upscale, resize: each
 * frame's rectangle is resampled to the output size over the model's scale
 * (even, for 4:2:0), upscaled, and resized to width x height (810x1440 by
 * default, which an x4 model makes from 202x360). One frame runs through the
 * model at a time (oneDNN uses the cores inside each convolution). A worker
 * keeps its last model loaded from job to job (up_state; enter loads the
 * default one when it is installed). */
#include "fn/common.h"
#include "img/img.h"
#include "nn/models.h"
#include "nn/net.h"
#include "nn/tile.h"
#include "util/home.h"
#include "util/json.h"
#include "util/log.h"

#include <libswscale/swscale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <math.h>
#include <time.h>

static const kf_param upscale_params[] = {
    {"crop", KF_ARR, NULL, 0, 1, 1, 10000, NULL, kf_crop_fields,
     "crop keyframes as in reframe: crop first, upscale the crop, then resize to width x height (default 810x1440)"},
    {"model", KF_STR, "\"realesr-animevideov3-x4\"", 0, 0, 0, 0, NULL, NULL,
     "a model from `kiln models list` (fetched with `kiln models fetch NAME`); `kiln run` also takes a path to NAME.param/.bin", 1},
    {"width", KF_INT, NULL, 0, 1, 2, 16384, NULL, NULL,
     "output width (even for videos; without crop a whole multiple of the model's scale; default: 810 with crop, else the input's times the scale)"},
    {"height", KF_INT, NULL, 0, 1, 2, 16384, NULL, NULL,
     "output height (as width; default: 1440 with crop, else the input's times the scale)"},
    {"tile", KF_INT, "0", 0, 1, 0, 16384, NULL, NULL,
     "run the model on tiles of this many input pixels square, overlapping by its receptive field (no seams); 0: only when a frame would need more than half the worker's memory"},
    KF_VIDEO_PARAMS,
    {NULL}};

typedef struct up_ctx {
  kn_net *net;                  /* the worker's cached net (up_state) or own */
  kn_net own;
  struct up_state *shared;      /* non-NULL: net is the worker's, given back at the end */
  kf_key *keys;                 /* crop keyframes (source seconds), or NULL */
  int nkeys;
  int mid_w, mid_h;             /* with a crop: the model's input size (the output over the scale) */
  int scale;                    /* output pixels per input pixel, measured on the model */
  int in_w, in_h, out_w, out_h;
  int tile, overlap;            /* kn_net_run_tiled's; tile 0: whole frames */
  pthread_mutex_t mu;           /* one frame through the net at a time; guards the rest too */
  struct SwsContext *toRGB, *toYUV;   /* kept from frame to frame (the sizes do not change) */
} up_ctx;

/* The model's files for a catalog name or a path. */
static int model_files(const char *model, char *param, char *bin, size_t n, kiln_err *e) {
  if (strchr(model, '/')) {
    snprintf(param, n, "%s.param", model);
    snprintf(bin, n, "%s.bin", model);
    return 0;
  }
  char home[4096], dir[4300];
  int r = kiln_home(home, sizeof home, e);
  if (r == 0) r = kn_model_dir(home, model, dir, sizeof dir, e);
  if (r < 0) return r;
  snprintf(param, n, "%s/%s.param", dir, model);
  snprintf(bin, n, "%s/%s.bin", dir, model);
  return 0;
}

/* rgb (w x h x 3 bytes) → x in [0,1]; the model's output y → rgb bytes. */
static void bytes_to_tensor(const uint8_t *rgb, kn_tensor *x) {
  for (size_t i = 0; i < (size_t)x->w * x->h * 3; i++) x->d[i] = rgb[i] / 255.0f;
}

static void tensor_to_bytes(const kn_tensor *y, uint8_t *rgb) {
  for (size_t i = 0; i < (size_t)y->w * y->h * 3; i++) {
    float v = y->d[i] * 255.0f + 0.5f;
    rgb[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

/* The model on x, checked to make exactly scale times its size. */
static int run_model(up_ctx *c, const kn_tensor *x, kn_tensor *y, kiln_err *e) {
  int r = kn_net_run_tiled(c->net, x, c->tile, c->overlap, y, e);
  if (r == 0 && (y->h != x->h * c->scale || y->w != x->w * c->scale || y->c != 3))
    r = kiln_fail(e, KILN_EINTERNAL, "the model made %dx%dx%d from %dx%d", y->w, y->h, y->c, x->w, x->h);
  return r;
}

static int upscale_kernel(const void *ctxp, const km_kinfo *ki, const AVFrame *src, AVFrame *out, kiln_err *e) {
  up_ctx *c = (up_ctx *)ctxp;
  AVFrame *mid = NULL;
  const AVFrame *in = src;
  if (c->keys) {                                  /* crop first, at the model's input size */
    double v[KF_KEY_VALUES];
    kf_keys_at(c->keys, c->nkeys, ki->src.src_time, v);
    if (!(mid = km_frame_new(c->mid_w, c->mid_h)) || ki_crop_scale(src, v[0], v[1], v[2], v[3], mid) < 0) {
      av_frame_free(&mid);
      return kiln_fail(e, KILN_ENOMEM, "out of memory");
    }
    in = mid;
  }
  int w = c->mid_w, h = c->mid_h, sw = w * c->scale, sh = h * c->scale;
  kn_tensor x = {0}, y = {0};
  uint8_t *rgb = malloc((size_t)w * h * 3), *big = malloc((size_t)sw * sh * 3);
  pthread_mutex_lock(&c->mu);
  /* to RGB at the model's input size (a resize too when width/height set it) */
  c->toRGB = sws_getCachedContext(c->toRGB, in->width, in->height, in->format, w, h, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
  c->toYUV = sws_getCachedContext(c->toYUV, sw, sh, AV_PIX_FMT_RGB24, out->width, out->height, out->format,
                                  SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
  int r = 0;
  if (!rgb || !big || !c->toRGB || !c->toYUV || kn_tensor_alloc(&x, h, w, 3) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto out; }
  int ls = w * 3;
  sws_scale(c->toRGB, (const uint8_t *const *)in->data, in->linesize, 0, in->height, &rgb, &ls);
  bytes_to_tensor(rgb, &x);
  if ((r = run_model(c, &x, &y, e)) < 0) goto out;
  tensor_to_bytes(&y, big);
  int bls = sw * 3;
  sws_scale(c->toYUV, (const uint8_t *const *)&big, &bls, 0, sh, out->data, out->linesize);
out:
  pthread_mutex_unlock(&c->mu);
  kn_tensor_free(&x);
  kn_tensor_free(&y);
  free(rgb);
  free(big);
  av_frame_free(&mid);
  return r;
}

/* The model's scale, measured: a 16x16 input through it. */
static int measure_scale(kn_net *n, int *scale, kiln_err *e) {
  kn_tensor x = {0}, y = {0};
  if (kn_tensor_alloc(&x, 16, 16, 3) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = kn_net_run(n, &x, &y, e);
  if (r == 0 && (y.w % 16 || y.h % 16 || y.w / 16 != y.h / 16 || y.w < 16 || y.c != 3))
    r = kiln_fail(e, KILN_EINVAL, "the model turns 16x16 RGB into %dx%dx%d: not a whole-number upscaler of RGB", y.w, y.h, y.c);
  if (r == 0) *scale = y.w / 16;
  kn_tensor_free(&x);
  kn_tensor_free(&y);
  return r;
}

/* A worker's state (enter/exit): the last model it loaded, kept warm from
 * job to job (weights read and converted once, oneDNN primitives and
 * Winograd buffers reused). enter loads the default model when it is
 * installed, so a worker's cold start includes it; a job for another model
 * replaces it. One job uses it at a time; a concurrent one loads its own. */
typedef struct up_state {
  pthread_mutex_t mu;
  int busy, loaded;
  char param[4400];             /* the loaded net's .param path */
  kn_net net;
  int scale;
} up_state;

/* A catalog model's folder under $KILN_HOME is the server's business: in a
 * message about it, "DIR/" becomes "models/NAME/" (API clients see names). */
static void scrub_dir(kiln_err *e, const char *param) {
  char home[4096];
  kiln_err he = {0};
  if (kiln_home(home, sizeof home, &he) < 0) return;
  size_t dl = strlen(home);                       /* only a catalog model's path: $KILN_HOME/models/... */
  if (dl == 0 || strncmp(param, home, dl) != 0 || strncmp(param + dl, "/models/", 8) != 0) return;
  char out[sizeof e->msg];
  size_t o = 0;
  for (const char *m = e->msg; *m && o + 1 < sizeof out;) {
    if (!strncmp(m, param, dl) && !strncmp(m + dl, "/models/", 8)) { m += dl + 1; continue; }
    out[o++] = *m++;
  }
  out[o] = 0;
  snprintf(e->msg, sizeof e->msg, "%s", out);
}

/* Loads param/bin into n on kiln's default (fast) path and measures its scale. */
static int load_model(kn_net *n, const char *param, const char *bin, int *scale, kiln_err *e) {
  int r = kn_net_load(n, param, bin, e);
  if (r < 0) scrub_dir(e, param);
  if (r < 0) return r;
  if (kn_net_use_dnnl(n, 1) < 0) r = kiln_fail(e, KILN_EINTERNAL, "oneDNN cannot start");
  if (r == 0) r = measure_scale(n, scale, e);
  if (r < 0) kn_net_free(n);
  return r;
}

/* Points c->net at the worker's net for param (loading it if it holds
 * another), or at a net of its own when the worker's is in use. */
static int acquire_net(up_state *s, const char *param, const char *bin, up_ctx *c, kiln_err *e) {
  if (s) {
    pthread_mutex_lock(&s->mu);
    int mine = !s->busy;
    if (mine) s->busy = 1;
    pthread_mutex_unlock(&s->mu);
    if (mine) {
      int r = 0;
      if (!s->loaded || strcmp(s->param, param)) {
        if (s->loaded) kn_net_free(&s->net);
        s->loaded = 0;
        if ((r = load_model(&s->net, param, bin, &s->scale, e)) == 0) {
          s->loaded = 1;
          snprintf(s->param, sizeof s->param, "%s", param);
          klog(KLOG_DEBUG, "upscale: loaded %s into the worker", param);
        }
      } else {
        klog(KLOG_DEBUG, "upscale: %s is loaded already", param);
      }
      if (r < 0) {
        pthread_mutex_lock(&s->mu);
        s->busy = 0;
        pthread_mutex_unlock(&s->mu);
        return r;
      }
      c->net = &s->net;
      c->scale = s->scale;
      c->shared = s;
      return 0;
    }
  }
  int r = load_model(&c->own, param, bin, &c->scale, e);
  if (r == 0) c->net = &c->own;
  return r;
}

static void release_net(up_ctx *c) {
  if (c->shared) {
    pthread_mutex_lock(&c->shared->mu);
    c->shared->busy = 0;
    pthread_mutex_unlock(&c->shared->mu);
  } else if (c->net) {
    kn_net_free(&c->own);
  }
  c->net = NULL;
  c->shared = NULL;
}

static int upscale_enter(void **state, kiln_err *e) {
  up_state *s = calloc(1, sizeof *s);
  if (!s) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  pthread_mutex_init(&s->mu, NULL);
  char param[4400], bin[4400];
  kiln_err le = {0};
  if (model_files("realesr-animevideov3-x4", param, bin, sizeof param, &le) == 0 &&
      load_model(&s->net, param, bin, &s->scale, &le) == 0) {
    s->loaded = 1;
    snprintf(s->param, sizeof s->param, "%s", param);
  } else {
    klog(KLOG_DEBUG, "upscale: the default model is not loaded ahead: %s", le.msg);
  }
  *state = s;
  return 0;
}

static void upscale_exit(void *state) {
  up_state *s = state;
  if (!s) return;
  if (s->loaded) kn_net_free(&s->net);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

#define UP_MEMORY_MB 2048                         /* the worker's memory (res below); tiles keep a run under half */
/* With the default settings a 4K output fits (x4 of 960x540 video: 1.5 GB at its peak, most of it x264's
 * frames); an 8K one (x4 of 1080p) needs about 4.4 GB (docs/operations.md, "Limits and memory"). */

static int has_png_name(const char *path) {
  size_t n = strlen(path);
  return n > 4 && !strcasecmp(path + n - 4, ".png");
}

/* The output size and the model's input size, checked; names the field. */
static int sizes(up_ctx *c, const json_t *p, int in_w, int in_h, int even, int *ow, int *oh, kiln_err *e) {
  int crop = json_object_get(p, "crop") != NULL, gw = json_object_get(p, "width") != NULL,
      gh = json_object_get(p, "height") != NULL, s = c->scale;
  *ow = gw ? (int)kj_num(p, "width", 0) : crop ? 810 : in_w * s;
  *oh = gh ? (int)kj_num(p, "height", 0) : crop ? 1440 : in_h * s;
  if (crop) {                                     /* the crop at the output's size over the scale; resized after */
    c->mid_w = (*ow / s) & ~(even ? 1 : 0);
    c->mid_h = (*oh / s) & ~(even ? 1 : 0);
    if (c->mid_w < 2 || c->mid_h < 2)
      return kiln_fail(e, KILN_EPARAM, "upscale: a %dx%d output is too small for a x%d model", *ow, *oh, s);
  } else {                                        /* the model's output is the output */
    if (*ow % s) return kiln_fail(e, KILN_EPARAM, "upscale: width %d is not a whole multiple of the model's scale (x%d): the model makes the output from width/%d input pixels; use %d or %d",
                                  *ow, s, s, *ow / s * s > 0 ? *ow / s * s : s, (*ow / s + 1) * s);
    if (*oh % s) return kiln_fail(e, KILN_EPARAM, "upscale: height %d is not a whole multiple of the model's scale (x%d): the model makes the output from height/%d input pixels; use %d or %d",
                                  *oh, s, s, *oh / s * s > 0 ? *oh / s * s : s, (*oh / s + 1) * s);
    c->mid_w = *ow / s;
    c->mid_h = *oh / s;
  }
  if (even && ((*ow & 1) || (*oh & 1)))
    return kiln_fail(e, KILN_EPARAM, "upscale: width and height must be even for yuv420p, got %dx%d", *ow, *oh);
  return km_check_pixels(*ow, *oh, 1, e, "upscale: the output (%s)", gw || gh ? "width x height" : "the input times the model's scale");
}

/* The tile size for a model input of w x h: the `tile` param, or automatic. */
static void pick_tile(up_ctx *c, const kf_task *t, const json_t *p, int w, int h) {
  c->overlap = kn_net_radius(c->net);
  c->tile = (int)kj_num(p, "tile", 0);
  size_t mb = t->memory_mb > 0 ? (size_t)t->memory_mb : UP_MEMORY_MB;   /* the limit this worker runs under */
  if (c->tile <= 0) c->tile = kn_tile_auto(c->net, c->scale, c->overlap, w, h, mb / 2 << 20);
  if (c->tile > 0 && (c->tile < w || c->tile < h))
    klog(KLOG_DEBUG, "upscale: the model runs on %dx%d in %d-pixel tiles (overlap %d)", w, h, c->tile, c->overlap);
}

/* A still image: read, (crop,) resize to the model's input, upscale, resize
 * to the output, write a PNG (complete or not at all). */
static int upscale_image(up_ctx *c, const kf_task *t, const json_t *p, const km_probe *pr, kf_result *res, kiln_err *e) {
  km_image src = {0}, cut = {0}, mid = {0}, big = {0}, fin = {0};
  kn_tensor x = {0}, y = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int ow, oh, r = km_image_read(t->input, &src, e);    /* upright: its size may differ from the probe's */
  if (r < 0) goto done;
  if ((r = sizes(c, p, src.w, src.h, 0, &ow, &oh, e)) < 0) goto done;
  const km_image *in = &src;
  if (json_object_get(p, "crop")) {               /* the first keyframe's rectangle, to whole pixels */
    km_probe ip = *pr;
    ip.width = src.w;
    ip.height = src.h;
    if ((r = kf_crop_keys("upscale", p, &ip, ow, oh, &c->keys, &c->nkeys, e)) < 0) goto done;
    int x0 = (int)lround(c->keys[0].v[0]), y0 = (int)lround(c->keys[0].v[1]);
    int cw = (int)lround(c->keys[0].v[2]), ch = (int)lround(c->keys[0].v[3]);
    if (x0 + cw > src.w) cw = src.w - x0;
    if (y0 + ch > src.h) ch = src.h - y0;
    if (cw < 1 || ch < 1) { r = kiln_fail(e, KILN_EPARAM, "upscale: crop[0] is empty in the %dx%d image", src.w, src.h); goto done; }
    if (km_image_alloc(&cut, cw, ch) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
    for (int j = 0; j < ch; j++) memcpy(cut.rgb + (size_t)j * cw * 3, src.rgb + ((size_t)(y0 + j) * src.w + x0) * 3, (size_t)cw * 3);
    in = &cut;
  }
  if (in->w != c->mid_w || in->h != c->mid_h) {
    if ((r = km_image_resize(in, &mid, c->mid_w, c->mid_h, e)) < 0) goto done;
    in = &mid;
  }
  pick_tile(c, t, p, in->w, in->h);
  if (t->progress) t->progress(t->progress_arg, 0, 1);
  if (kn_tensor_alloc(&x, in->h, in->w, 3) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
  bytes_to_tensor(in->rgb, &x);
  if ((r = run_model(c, &x, &y, e)) < 0) goto done;
  if (km_image_alloc(&big, y.w, y.h) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
  tensor_to_bytes(&y, big.rgb);
  const km_image *o = &big;
  if (big.w != ow || big.h != oh) {
    if ((r = km_image_resize(&big, &fin, ow, oh, e)) < 0) goto done;
    o = &fin;
  }
  if (t->cancel && *t->cancel) { r = kiln_fail(e, KILN_ECANCELLED, "cancelled"); goto done; }
  if ((r = km_image_write_png(t->output, o, e)) < 0) goto done;
  if (t->progress) t->progress(t->progress_arg, 1, 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  km_pipeline_stats *st = &res->stats;
  st->frames_in = st->frames_out = 1;
  st->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  st->fps = st->seconds > 0 ? 1 / st->seconds : 0;
  st->out_w = ow;
  st->out_h = oh;
  st->out_fps = (AVRational){0, 1};
  snprintf(st->audio, sizeof st->audio, "none");
done:
  kn_tensor_free(&x);
  kn_tensor_free(&y);
  km_image_release(&src);
  km_image_release(&cut);
  km_image_release(&mid);
  km_image_release(&big);
  km_image_release(&fin);
  return r;
}

/* A still image's output is a PNG, also through kiln serve. */
static const char *upscale_out_ext(const char *input) {
  km_probe pr;
  kiln_err e = {0};
  if (km_probe_file(input, &pr, &e) < 0) return NULL;   /* the run names what is wrong */
  return km_probe_is_image(&pr) ? "png" : NULL;
}

static int upscale_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  const json_t *p = t->params;
  km_probe pr;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  int image = km_probe_is_image(&pr);
  if (image && !has_png_name(t->output))
    return kiln_fail(e, KILN_EPARAM,
                     "upscale: '%s' is a still image, so the output is a PNG: name it .png (got '%s')", t->input, t->output);
  if (!image && has_png_name(t->output))
    return kiln_fail(e, KILN_EPARAM, "upscale: a .png output is for a still image input, and '%s' is a video", t->input);
  char param[4400], bin[4400];
  if ((r = model_files(kj_str(p, "model", "realesr-animevideov3-x4"), param, bin, sizeof param, e)) < 0) return r;
  up_ctx *c = calloc(1, sizeof *c);
  if (!c) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  if ((r = acquire_net(state, param, bin, c, e)) < 0) goto out;
  if (kn_net_set_threads(c->net, t->threads) < 0) { r = kiln_fail(e, KILN_ENOMEM, "upscale: cannot start %d threads", t->threads); goto out; }
  if (image) { r = upscale_image(c, t, p, &pr, res, e); goto out; }
  km_pipeline_cfg cfg;
  kf_pipeline_from_task(t, p, &cfg);
  if ((r = sizes(c, p, pr.width & ~1, pr.height & ~1, 1, &cfg.out_w, &cfg.out_h, e)) < 0) goto out;
  if (json_object_get(p, "crop") &&
      (r = kf_crop_keys("upscale", p, &pr, cfg.out_w, cfg.out_h, &c->keys, &c->nkeys, e)) < 0) goto out;
  pick_tile(c, t, p, c->mid_w, c->mid_h);
  cfg.probe = &pr;
  cfg.kernel = upscale_kernel;
  cfg.kctx = c;
  cfg.kernel_threads = 1;
  r = km_pipeline_run(&cfg, &res->stats, e);
out:
  free(c->keys);
  sws_freeContext(c->toRGB);
  sws_freeContext(c->toYUV);
  release_net(c);
  pthread_mutex_destroy(&c->mu);
  free(c);
  return r;
}

static int upscale_shape(const json_t *p, const km_probe *pr, kf_shape *s, kiln_err *e) {
  memset(s, 0, sizeof *s);
  km_timeline_identity(&s->tl);
  s->fps = pr->fps_q;
  int scale = 4;                                  /* the catalog's default; a path's model is measured at run time */
  const char *m = kj_str(p, "model", "realesr-animevideov3-x4");
  size_t l = strlen(m);
  if (l > 3 && m[l - 3] == '-' && m[l - 2] == 'x' && m[l - 1] >= '2' && m[l - 1] <= '4') scale = m[l - 1] - '0';
  int crop = json_object_get(p, "crop") != NULL;
  s->width = json_object_get(p, "width") ? (int)kj_num(p, "width", 0) : crop ? 810 : (pr->width & ~1) * scale;
  s->height = json_object_get(p, "height") ? (int)kj_num(p, "height", 0) : crop ? 1440 : (pr->height & ~1) * scale;
  s->frames = km_pipeline_expected_frames(pr, &s->tl, s->fps);
  s->audio = !json_is_false(json_object_get(p, "audio")) && pr->n_audio > 0;
  return km_check_pixels(s->width, s->height, 1, e, "upscale: the output");
}

const kf_desc kf_upscale = {
    .name = "upscale",
    .summary = "super-resolution with Real-ESRGAN (x2/x3/x4), on oneDNN",
    .doc = "Every frame of a video, or a still image (PNG or JPEG in, PNG out: name the output `.png`), goes through\n"
           "the model (`kiln models fetch` gets the weights; the default is Real-ESRGAN's video model, x4). The output is\n"
           "the input size times the model's scale; `width` x `height` (whole multiples of the scale) resize the input to\n"
           "width/scale x height/scale first, so the model's output is the output. With `crop` (reframe's keyframes; on\n"
           "an image the first one, to whole pixels) each rectangle is cropped and resampled to the output size over the\n"
           "scale, upscaled, and resized to `width` x `height` (default 810x1440). Frames too large for memory run in\n"
           "overlapping tiles (`tile`) that stitch without seams.",
    .params = upscale_params,
    .res = {.gpu = "T4", .memory_mb = UP_MEMORY_MB, .timeout_s = 3600, .retries = 1, .idle_timeout_s = 300,
            .min_workers = 0, .max_workers = 4, .concurrency = 1, .cpus = 2},
    .enter = upscale_enter,
    .out_ext_for = upscale_out_ext,
    .exit = upscale_exit,
    .run = upscale_run,
    .chunkable = 1,
    .shape = upscale_shape,
    .cost_ms_per_mpixel = 700,   /* x4 video model, Winograd, one core: 664-680 ms per output megapixel (bench/README.md) */
};

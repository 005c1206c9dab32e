/* upscale.c — super-resolution with Real-ESRGAN (issue #5; a first form).
 *
 * Each frame: YUV 4:2:0 → RGB in [0,1] (swscale) → the model (src/nn: the
 * ncnn weights fetched by `kiln models fetch`, convolutions on oneDNN) →
 * resized to the output size when one is asked for (swscale, bicubic) →
 * YUV 4:2:0. The output is the input size times the model's scale unless
 * width/height say otherwise. `model` is a catalog name (installed under
 * $KILN_HOME/models) or a path to NAME.param/NAME.bin without the
 * extension. With `crop` (reframe's keyframes) the flow is crop, upscale,
 * resize: each frame's rectangle is resampled to the output size over the
 * model's scale, upscaled, and resized to width x height (810x1440 by
 * default). One frame runs through the model at a time (oneDNN uses the
 * cores inside each convolution). Not yet here: tiling for frames too large
 * for memory, still images, and PReLU fused into the convolutions. */
#include "fn/common.h"
#include "img/img.h"
#include "nn/models.h"
#include "nn/net.h"
#include "util/home.h"
#include "util/json.h"

#include <libswscale/swscale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kf_param upscale_params[] = {
    {"crop", KF_ARR, NULL, 0, 1, 1, 10000, NULL, kf_crop_fields,
     "crop keyframes as in reframe: crop first, upscale the crop, then resize to width x height (default 810x1440)"},
    {"model", KF_STR, "\"realesr-animevideov3-x4\"", 0, 0, 0, 0, NULL, NULL,
     "a model from `kiln models list` (fetched with `kiln models fetch NAME`), or a path to NAME.param/.bin"},
    {"width", KF_INT, NULL, 0, 1, 2, 16384, NULL, NULL,
     "output width (even; default: 810 with crop, else the input's times the model's scale)"},
    {"height", KF_INT, NULL, 0, 1, 2, 16384, NULL, NULL,
     "output height (even; default: 1440 with crop, else the input's times the model's scale)"},
    KF_VIDEO_PARAMS,
    {NULL}};

typedef struct up_ctx {
  kn_net net;
  kf_key *keys;                 /* crop keyframes (source seconds), or NULL */
  int nkeys;
  int mid_w, mid_h;             /* with a crop: the model's input size (the output over the scale) */
  int scale;                    /* output pixels per input pixel, measured on the model */
  int in_w, in_h, out_w, out_h;
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
  int w = in->width, h = in->height, sw = w * c->scale, sh = h * c->scale;
  kn_tensor x = {0}, y = {0};
  uint8_t *rgb = malloc((size_t)w * h * 3), *big = malloc((size_t)sw * sh * 3);
  pthread_mutex_lock(&c->mu);
  c->toRGB = sws_getCachedContext(c->toRGB, w, h, in->format, w, h, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND,
                                  NULL, NULL, NULL);
  c->toYUV = sws_getCachedContext(c->toYUV, sw, sh, AV_PIX_FMT_RGB24, out->width, out->height, out->format,
                                  SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
  int r = 0;
  if (!rgb || !big || !c->toRGB || !c->toYUV || kn_tensor_alloc(&x, h, w, 3) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto out; }
  int ls = w * 3;
  sws_scale(c->toRGB, (const uint8_t *const *)in->data, in->linesize, 0, h, &rgb, &ls);
  for (size_t i = 0; i < (size_t)w * h * 3; i++) x.d[i] = rgb[i] / 255.0f;
  if ((r = kn_net_run(&c->net, &x, &y, e)) < 0) goto out;
  if (y.h != sh || y.w != sw || y.c != 3) { r = kiln_fail(e, KILN_EINTERNAL, "the model made %dx%dx%d from %dx%d", y.w, y.h, y.c, w, h); goto out; }
  for (size_t i = 0; i < (size_t)sw * sh * 3; i++) {
    float v = y.d[i] * 255.0f + 0.5f;
    big[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
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

static int upscale_run(void *state, const kf_task *t, kf_result *res, kiln_err *e) {
  (void)state;
  const json_t *p = t->params;
  km_probe pr;
  int r = kf_probe_video(t, &pr, e);
  if (r < 0) return r;
  char param[4400], bin[4400];
  if ((r = model_files(kj_str(p, "model", "realesr-animevideov3-x4"), param, bin, sizeof param, e)) < 0) return r;
  up_ctx *c = calloc(1, sizeof *c);
  if (!c) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  if ((r = kn_net_load(&c->net, param, bin, e)) < 0) goto out;
  if (kn_net_use_dnnl(&c->net, 1) < 0) { r = kiln_fail(e, KILN_EINTERNAL, "oneDNN cannot start"); goto out; }
  if ((r = measure_scale(&c->net, &c->scale, e)) < 0) goto out;
  km_pipeline_cfg cfg;
  kf_pipeline_from_task(t, p, &cfg);
  int crop = json_object_get(p, "crop") != NULL;
  cfg.out_w = json_object_get(p, "width") ? (int)kj_num(p, "width", 0) : crop ? 810 : (pr.width & ~1) * c->scale;
  cfg.out_h = json_object_get(p, "height") ? (int)kj_num(p, "height", 0) : crop ? 1440 : (pr.height & ~1) * c->scale;
  if (crop) {
    if ((r = kf_crop_keys("upscale", p, &pr, cfg.out_w, cfg.out_h, &c->keys, &c->nkeys, e)) < 0) goto out;
    c->mid_w = (cfg.out_w / c->scale) & ~1;        /* the model sees the crop at the output's size over its scale */
    c->mid_h = (cfg.out_h / c->scale) & ~1;
    if (c->mid_w < 2 || c->mid_h < 2) {
      r = kiln_fail(e, KILN_EPARAM, "upscale: a %dx%d output is too small for a x%d model", cfg.out_w, cfg.out_h, c->scale);
      goto out;
    }
  }
  if ((cfg.out_w & 1) || (cfg.out_h & 1)) {
    r = kiln_fail(e, KILN_EPARAM, "upscale: width and height must be even for yuv420p, got %dx%d", cfg.out_w, cfg.out_h);
    goto out;
  }
  cfg.probe = &pr;
  cfg.kernel = upscale_kernel;
  cfg.kctx = c;
  cfg.kernel_threads = 1;
  r = km_pipeline_run(&cfg, &res->stats, e);
out:
  free(c->keys);
  sws_freeContext(c->toRGB);
  sws_freeContext(c->toYUV);
  kn_net_free(&c->net);
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
  (void)e;
  return 0;
}

const kf_desc kf_upscale = {
    .name = "upscale",
    .summary = "super-resolution with Real-ESRGAN (x2/x3/x4), on oneDNN",
    .doc = "Every frame goes through the model (`kiln models fetch` gets the weights; the default is Real-ESRGAN's\n"
           "video model, x4), then is resized to `width` x `height` when given. The output is the input size times\n"
           "the model's scale otherwise. With `crop` (reframe's keyframes), each frame's rectangle is cropped first\n"
           "and the output defaults to 810x1440: crop, upscale, resize. No tiling or still images yet (issue #5).",
    .params = upscale_params,
    .res = {.gpu = "T4", .memory_mb = 2048, .timeout_s = 3600, .retries = 1, .idle_timeout_s = 300,
            .min_workers = 0, .max_workers = 4, .concurrency = 1, .cpus = 2},
    .run = upscale_run,
    .chunkable = 1,
    .shape = upscale_shape,
    .cost_ms_per_mpixel = 2000,
};

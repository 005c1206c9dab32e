/* test_watermark.c — remove_watermark against synthetic ground truth.
 *
 * Each clip is watermarked here with known alpha (tests/wm_synth.c), so the
 * clean picture under the mark is known exactly: a panning scene with an
 * opaque logo, a 50% translucent logo and white text with a shadow; a mark
 * that changes corner every 3 s; a real clip (opencv-doc's Megamind.avi,
 * when scripts/samples has fetched it). Detection runs as the engine runs
 * it (prepare once, its result passed to the run as `detected`) and is
 * scored on the true mark: recall (share of the mark's pixels in the mask),
 * mask area over the mark's, and in-mask luma PSNR of the output against
 * the clean frames. Then: no watermark (found none, frames kept, audio
 * kept), bad inputs (a box outside the frame, a mask over most of it), a
 * one-frame and a 16x16 video, the blur and crop modes. */
#include "t.h"
#include "tutil.h"
#include "wm_synth.h"
#include "wm_cases.h"

#include "fn/fn.h"
#include "img/img.h"
#include "img/wmark.h"
#include "util/json.h"

#include <libavutil/log.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#define W 320
#define H 240

typedef struct clip {
  int w, h, frames;
  const t_video *src;           /* real clip frames (clean), or NULL: the panning scene */
  ws_layer *(*layers)(const struct clip *c, int n, int *nl);   /* the marks on frame n */
  ws_layer *L;                  /* layers, built by the test */
  int nl;
} clip;

static void clean_frame(const clip *c, AVFrame *f, int n) {
  if (c->src) av_frame_copy(f, c->src->f[n]);
  else ws_scene(f, n);
}

static int write_clip(const char *path, const clip *c, const char *audio_from, int marked) {
  kiln_err e = {0};
  km_enc_opts o = {.width = c->w, .height = c->h, .fps = {25, 1}, .lossless = 1, .preset = "ultrafast", .gop = 25};
  km_audio_opts ao = {.path = audio_from};
  km_writer *w = NULL;
  int r = km_writer_open(&w, path, path, &o, audio_from ? &ao : NULL, &e);
  if (r < 0) { fprintf(stderr, "  writer: %s\n", e.msg); return r; }
  AVFrame *f = km_frame_new(c->w, c->h);
  for (int n = 0; n < c->frames && r == 0; n++) {
    clean_frame(c, f, n);
    int nl = 0;
    ws_layer *ls = marked && c->layers ? c->layers(c, n, &nl) : NULL;
    for (int i = 0; i < nl; i++) ws_apply(&ls[i], f);
    r = km_writer_write(w, f, &e);
  }
  if (r == 0) r = km_writer_finish(w, &e);
  if (r < 0) fprintf(stderr, "  writer: %s\n", e.msg);
  av_frame_free(&f);
  km_writer_free(w);
  return r;
}

/* Runs remove_watermark as a job does: prepare, then the run with its result. */
static int wm_threads = 2;                        /* the task's threads (the kernel runs on as many) */

static int run_wm(const char *in, const char *out, const char *params, json_t **info, json_t **detected, kiln_err *e) {
  const kf_desc *fn = kf_find("remove_watermark");
  json_error_t je;
  json_t *raw = json_loads(params ? params : "{}", 0, &je), *p = NULL, *add = NULL;
  int r = kf_validate(fn, raw, &p, e);
  json_decref(raw);
  if (r < 0) return r;
  kf_task t = {.input = in, .output = out, .params = p, .start = 0, .end = -1, .threads = wm_threads};
  if ((r = fn->prepare(NULL, &t, &add, e)) < 0) { json_decref(p); return r; }
  json_object_update(p, add);
  if (detected) *detected = json_incref(json_object_get(add, "detected"));
  json_decref(add);
  kf_result res;
  memset(&res, 0, sizeof res);
  r = fn->run(NULL, &t, &res, e);
  if (info) *info = res.info;
  else json_decref(res.info);
  json_decref(p);
  return r;
}

/* Writes clip c, watermarked, to `in` (lossless) and removes the marks into
 * `out` (lossless) as the engine runs it; the result's info and detection. */
static int mark_and_remove(const clip *c, const char *in, const char *out, json_t **info, json_t **det, kiln_err *e) {
  CHECK(write_clip(in, c, NULL, 1) == 0, "write the clip");
  int r = run_wm(in, out, "{\"lossless\": true}", info, det, e);
  CHECK(r == 0, "remove_watermark: %s", e->msg);
  return r;
}

typedef struct score {
  double recall, area, psnr_out, psnr_in, worst_recall;
} score;

/* Scores layer k of every frame of `out` (detected with det) against the clean clip. */
static score score_layer(const clip *c, const char *in, const char *out, const json_t *det, int k) {
  score s = {0, 0, 0, 0, 1};
  t_video vo, vi;
  if (t_decode(out, 0, -1, &vo) < 0 || t_decode(in, 0, -1, &vi) < 0) return s;
  AVFrame *clean = km_frame_new(c->w, c->h);
  uint8_t *m = malloc((size_t)c->w * c->h);
  ws_err eo = {0}, ei = {0};
  double hit = 0, mark = 0, area = 0;
  for (int n = 0; n < vo.n && n < vi.n && n < c->frames; n++) {
    int nl = 0;
    ws_layer *ls = c->layers(c, n, &nl);
    if (k >= nl) continue;
    const ws_layer *L = &ls[k];
    double fm = 0;
    for (size_t p = 0; p < (size_t)c->w * c->h; p++) fm += L->a[p] > 0.05f;
    if (fm == 0) continue;
    clean_frame(c, clean, n);
    ws_err_add(&eo, L, vo.f[n], clean);
    ws_err_add(&ei, L, vi.f[n], clean);
    ws_mask_at(det, n, c->w, c->h, m);
    double rc, ar;
    ws_recall(L, m, &rc, &ar);
    /* area: the mask pixels near this mark (its box grown by 8) */
    int x0 = c->w, y0 = c->h, x1 = 0, y1 = 0;
    for (int y = 0; y < c->h; y++)
      for (int x = 0; x < c->w; x++)
        if (L->a[(size_t)y * c->w + x] > 0.05f) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
    double a = 0;
    for (int y = y0 - 8; y <= y1 + 8; y++)
      for (int x = x0 - 8; x <= x1 + 8; x++)
        if (x >= 0 && y >= 0 && x < c->w && y < c->h) a += m[(size_t)y * c->w + x];
    hit += rc * fm;
    mark += fm;
    area += a;
    if (rc < s.worst_recall) s.worst_recall = rc;
  }
  s.recall = mark > 0 ? hit / mark : 0;
  s.area = mark > 0 ? area / mark : 0;
  s.psnr_out = ws_err_psnr(&eo);
  s.psnr_in = ws_err_psnr(&ei);
  free(m);
  av_frame_free(&clean);
  t_video_free(&vo);
  t_video_free(&vi);
  return s;
}

/* ---- the three-mark clip ---- */

static ws_layer three[3];
static ws_layer *three_layers(const clip *c, int n, int *nl) { (void)c; (void)n; *nl = 3; return three; }

static void test_three_marks(void) {
  static const uint8_t orange[3] = {150, 60, 190}, white[3] = {235, 128, 128};
  for (int i = 0; i < 3; i++) ws_layer_init(&three[i], W, H);
  ws_opaque_logo(&three[0], W - 80, H - 46, 34, orange);
  ws_translucent_logo(&three[1], 14, 12, 44, 0.5, white);
  ws_text(&three[2], 12, H - 36, 3, "KILN", white, 1);
  clip c = {W, H, 100, NULL, three_layers, NULL, 0};
  const char *in = t_path("three.mp4"), *out = t_path("three_out.mp4");
  json_t *info = NULL, *det = NULL;
  kiln_err e = {0};
  int r = mark_and_remove(&c, in, out, &info, &det, &e);
  if (getenv("WM_DEBUG")) kj_print(info);
  if (r == 0) {
    CHECK(kj_num(info, "watermarks_found", 0) >= 3, "found %g regions, expected the 3 marks",
          kj_num(info, "watermarks_found", 0));
    const char *names[3] = {"opaque logo", "50% translucent logo", "text with shadow"};
    const double floor_db[3] = {35, 35, 38};     /* measured 38.2, 38.8, 42.6 dB */
    for (int k = 0; k < 3; k++) {
      score s = score_layer(&c, in, out, det, k);
      fprintf(stderr, "  %-22s recall %.4f (worst frame %.3f), mask %.2fx the mark, in-mask PSNR %.2f dB (input %.2f dB)\n",
              names[k], s.recall, s.worst_recall, s.area, s.psnr_out, s.psnr_in);
      CHECK(s.recall >= 0.98, "%s: recall %.4f < 0.98", names[k], s.recall);
      CHECK(s.area <= 3.0, "%s: mask %.2fx the mark's area > 3", names[k], s.area);
      CHECK(s.psnr_out >= floor_db[k], "%s: in-mask PSNR %.2f dB < %.0f dB", names[k], s.psnr_out, floor_db[k]);
      CHECK(s.psnr_out >= s.psnr_in + 10, "%s: %.2f dB is not 10 dB over the input's %.2f dB", names[k], s.psnr_out, s.psnr_in);
    }
    const json_t *regs = json_object_get(info, "regions");
    int translucent = 0;
    for (size_t i = 0; i < json_array_size(regs); i++)
      translucent += !strcmp(kj_str(json_array_get(regs, i), "kind", ""), "translucent");
    CHECK(translucent >= 1, "the 50%% logo is reported translucent (its blend inverted)");
    /* the kernel runs on several threads: one thread gives the same frames, bit for bit */
    wm_threads = 1;
    r = run_wm(in, t_path("three_out1.mp4"), "{\"lossless\": true}", NULL, NULL, &e);
    wm_threads = 3;
    int r3 = run_wm(in, t_path("three_out3.mp4"), "{\"lossless\": true}", NULL, NULL, &e);
    wm_threads = 2;
    t_video v1 = {0}, v2 = {0}, v3 = {0};
    CHECK(r == 0 && r3 == 0 && t_decode(out, 0, -1, &v2) == 0 && t_decode(t_path("three_out1.mp4"), 0, -1, &v1) == 0 &&
          t_decode(t_path("three_out3.mp4"), 0, -1, &v3) == 0, "runs on 1 and 3 threads: %s", e.msg);
    if (r == 0 && r3 == 0) {
      int diff = v1.n != v2.n || v3.n != v2.n;
      for (int n = 0; !diff && n < v2.n; n++)
        diff = ki_mse(v1.f[n]->data[0], v1.f[n]->linesize[0], v2.f[n]->data[0], v2.f[n]->linesize[0], W, H) != 0 ||
               ki_mse(v3.f[n]->data[0], v3.f[n]->linesize[0], v2.f[n]->data[0], v2.f[n]->linesize[0], W, H) != 0;
      CHECK(!diff, "1, 2 and 3 kernel threads give the same frames");
      t_video_free(&v1);
      t_video_free(&v2);
      t_video_free(&v3);
    }
    /* modes: blur and crop keep the size and change the marked pixels */
    json_t *bi = NULL;
    r = run_wm(in, t_path("three_blur.mp4"), "{\"mode\": \"blur\"}", &bi, NULL, &e);
    CHECK(r == 0 && !strcmp(kj_str(bi, "mode", ""), "blur"), "blur: %s", e.msg);
    json_decref(bi);
    r = run_wm(in, t_path("three_crop.mp4"), "{\"mode\": \"crop\", \"boxes\": [{\"x\": 220, \"y\": 190, \"w\": 90, \"h\": 44}]}",
               &bi, NULL, &e);
    CHECK(r == 0, "crop: %s", e.msg);
    km_probe pr;
    CHECK(r == 0 && km_probe_file(t_path("three_crop.mp4"), &pr, &e) == 0 && pr.width == W && pr.height == H,
          "crop keeps the frame size");
    json_decref(bi);
  }
  json_decref(info);
  json_decref(det);
  for (int i = 0; i < 3; i++) ws_layer_release(&three[i]);
}

/* ---- a mark that changes corner every 3 s ---- */

static ws_layer corner[3];
static ws_layer *corner_layers(const clip *c, int n, int *nl) {
  (void)c;
  *nl = 1;
  return &corner[(n / 75) % 3];
}

static void test_moving_mark(void) {
  static const uint8_t white[3] = {235, 128, 128};
  for (int i = 0; i < 3; i++) ws_layer_init(&corner[i], W, H);
  ws_text(&corner[0], 10, 10, 3, "WM", white, 1);
  ws_text(&corner[1], W - 50, H - 34, 3, "WM", white, 1);
  ws_text(&corner[2], W - 50, 10, 3, "WM", white, 1);
  clip c = {W, H, 225, NULL, corner_layers, NULL, 0};
  const char *in = t_path("corner.mp4"), *out = t_path("corner_out.mp4");
  json_t *info = NULL, *det = NULL;
  kiln_err e = {0};
  int r = mark_and_remove(&c, in, out, &info, &det, &e);
  if (getenv("WM_DEBUG")) kj_print(info);
  if (r == 0) {
    score s = score_layer(&c, in, out, det, 0);
    fprintf(stderr, "  moving mark: recall %.4f (worst frame %.3f), mask %.2fx, in-mask PSNR %.2f dB (input %.2f dB), %g regions\n",
            s.recall, s.worst_recall, s.area, s.psnr_out, s.psnr_in, kj_num(info, "watermarks_found", 0));
    CHECK(kj_num(info, "watermarks_found", 0) >= 3, "one region per corner");
    CHECK(s.recall >= 0.98, "recall %.4f < 0.98", s.recall);
    CHECK(s.worst_recall >= 0.9, "a frame where the mark came back: recall %.3f", s.worst_recall);
    CHECK(s.area <= 3.0, "mask %.2fx the mark's area > 3 (on the frames it is on)", s.area);
    CHECK(s.psnr_out >= 38, "in-mask PSNR %.2f dB < 38 dB", s.psnr_out);   /* measured 42.0 dB */
  }
  json_decref(info);
  json_decref(det);
  for (int i = 0; i < 3; i++) ws_layer_release(&corner[i]);
}

/* ---- a real clip ---- */

static ws_layer real[2];
static ws_layer *real_layers(const clip *c, int n, int *nl) { (void)c; (void)n; *nl = 2; return real; }

static void test_real_clip(void) {
  char path[1024];
  const char *dir = getenv("KILN_SAMPLES");
  const char *home = getenv("HOME");
  if (dir) snprintf(path, sizeof path, "%s/Megamind.avi", dir);
  else snprintf(path, sizeof path, "%s/.cache/kiln/samples/Megamind.avi", home ? home : "/");
  struct stat sb;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "  SKIPPED: %s is missing (run scripts/samples)\n", path);
    return;
  }
  t_video src;
  CHECK(t_decode(path, 0, 96, &src) == 0 && src.n == 96, "decode %s", path);
  if (src.n < 96) { t_video_free(&src); return; }
  static const uint8_t white[3] = {235, 128, 128}, blue[3] = {80, 200, 100};
  int w = src.w & ~1, h = src.h & ~1;
  for (int i = 0; i < 2; i++) ws_layer_init(&real[i], w, h);
  ws_opaque_logo(&real[0], w - 110, h - 60, 44, blue);
  ws_text(&real[1], w / 2 - 60, h * 7 / 10, 4, "KILN", white, 1);   /* over the moving character: the room behind is static */
  clip c = {w, h, 96, &src, real_layers, NULL, 0};
  const char *in = getenv("WM_REAL_IN") ? getenv("WM_REAL_IN") : t_path("real.mp4"), *out = t_path("real_out.mp4");
  json_t *info = NULL, *det = NULL;
  kiln_err e = {0};
  int r = mark_and_remove(&c, in, out, &info, &det, &e);
  if (r == 0) {
    const char *names[2] = {"opaque logo", "text with shadow"};
    for (int k = 0; k < 2; k++) {
      score s = score_layer(&c, in, out, det, k);
      fprintf(stderr, "  Megamind %-16s recall %.4f, mask %.2fx, in-mask PSNR %.2f dB (input %.2f dB)\n", names[k],
              s.recall, s.area, s.psnr_out, s.psnr_in);
      CHECK(s.recall >= 0.98, "%s: recall %.4f < 0.98", names[k], s.recall);
      /* 720 px wide: detection runs at half resolution; the blend estimate shrinks the mask at full resolution */
      CHECK(s.area <= 3.0, "%s: mask %.2fx > 3", names[k], s.area);
      /* measured 39.0, 27.6 dB: the room behind the text is still, so the text is inverted or filled
       * spatially; 31.1 before the clear test was made strict (CLEAR_OFFSET in src/img/wm_fill.c), which
       * the generated benchmark needs (faint marks over bright scenes were taken for clear) */
      const double floor_db[2] = {36, 26};
      CHECK(s.psnr_out >= floor_db[k], "%s: in-mask PSNR %.2f dB < %.0f dB", names[k], s.psnr_out, floor_db[k]);
      CHECK(s.psnr_out >= s.psnr_in + 8, "%s: %.2f dB is not 8 dB over the input's %.2f", names[k], s.psnr_out, s.psnr_in);
    }
  }
  json_decref(info);
  json_decref(det);
  for (int i = 0; i < 2; i++) ws_layer_release(&real[i]);
  t_video_free(&src);
}

/* ---- a fade from black and a still shot ---- */

static ws_layer fade_mark;
static ws_layer *fade_layers(const clip *c, int n, int *nl) { (void)c; (void)n; *nl = 1; return &fade_mark; }

/* The panning scene opening with a 1.6 s fade from black, still for 2 s in
 * the middle (every edge of the scene stays there, like a mark's), then
 * panning again; white text on it throughout. */
static void test_fade_still(void) {
  static const uint8_t white[3] = {235, 128, 128};
  const int N = 200;
  t_video v = {N, W, H, calloc(N, sizeof(AVFrame *)), NULL};
  for (int n = 0; n < N; n++) {
    AVFrame *f = v.f[n] = km_frame_new(W, H);
    ws_scene(f, n < 100 ? n : n < 150 ? 100 : n - 50);
    double g = n < 40 ? n / 40.0 : 1;
    for (int p = 0; p < 3 && g < 1; p++) {
      int pw = p ? W / 2 : W, ph = p ? H / 2 : H, z = p ? 128 : 0;
      for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
          uint8_t *q = &f->data[p][(size_t)y * f->linesize[p] + x];
          *q = (uint8_t)lrint(z + (*q - z) * g);
        }
    }
  }
  ws_layer_init(&fade_mark, W, H);
  ws_text(&fade_mark, 12, H - 36, 3, "KILN", white, 1);
  clip c = {W, H, N, &v, fade_layers, NULL, 0};
  const char *in = t_path("fade.mp4"), *out = t_path("fade_out.mp4");
  json_t *info = NULL, *det = NULL;
  kiln_err e = {0};
  int r = mark_and_remove(&c, in, out, &info, &det, &e);
  if (r == 0) {
    score sc = score_layer(&c, in, out, det, 0);
    fprintf(stderr, "  fade + still: recall %.4f (worst frame %.3f), mask %.2fx, in-mask PSNR %.2f dB (input %.2f dB), %g regions\n",
            sc.recall, sc.worst_recall, sc.area, sc.psnr_out, sc.psnr_in, kj_num(info, "watermarks_found", 0));
    CHECK(sc.recall >= 0.98, "recall %.4f < 0.98", sc.recall);
    CHECK(sc.area <= 3.0, "mask %.2fx the mark's area > 3", sc.area);
    CHECK(sc.psnr_out >= sc.psnr_in + 10, "%.2f dB is not 10 dB over the input's %.2f dB", sc.psnr_out, sc.psnr_in);
    /* nothing found but the mark: every region is on the text (its box grown by 8) */
    int x0 = W, y0 = H, x1 = 0, y1 = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        if (fade_mark.a[(size_t)y * W + x] > 0.05f) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
    const json_t *regs = json_object_get(info, "regions");
    CHECK(json_array_size(regs) >= 1, "the text is found");
    for (size_t i = 0; i < json_array_size(regs); i++) {
      const json_t *g = json_array_get(regs, i);
      int gx = (int)kj_num(g, "x", 0), gy = (int)kj_num(g, "y", 0), gw = (int)kj_num(g, "w", 0), gh = (int)kj_num(g, "h", 0);
      CHECK(gx >= x0 - 8 && gy >= y0 - 8 && gx + gw <= x1 + 9 && gy + gh <= y1 + 9,
            "region %zu (%d, %d, %dx%d) is not on the text (%d..%d, %d..%d): a false region", i, gx, gy, gw, gh, x0, x1, y0, y1);
    }
  }
  json_decref(info);
  json_decref(det);
  ws_layer_release(&fade_mark);
  t_video_free(&v);
}

/* ---- the temporal fill looks ahead ---- */

/* The first frame of a pan has no earlier frames: with the frames after it
 * pushed, the scene under an opaque logo comes from them instead of the
 * spatial fill; later frames mix both. */
static void test_lookahead(void) {
  static const uint8_t orange[3] = {150, 60, 190};
  const int N = 12;
  ws_layer L;
  ws_layer_init(&L, W, H);
  ws_opaque_logo(&L, 140, 100, 28, orange);
  int x0, y0, x1, y1;
  ws_bbox(&L, 0.05f, &x0, &y0, &x1, &y1);
  ki_wm_region R = {0};
  R.x = (x0 - 2) & ~1; R.y = (y0 - 2) & ~1;
  R.w = ((x1 + 4) & ~1) - R.x; R.h = ((y1 + 4) & ~1) - R.y;
  R.end = N;
  R.sure_end = N;
  R.mask = malloc((size_t)R.w * R.h);
  memset(R.mask, 1, (size_t)R.w * R.h);
  const ki_wm_region *rp = &R;
  AVFrame *clean[2 * KI_WM_AHEAD + N + 1], *marked[2 * KI_WM_AHEAD + N + 1];
  int NF = 2 * KI_WM_AHEAD + N + 1;
  for (int n = 0; n < NF; n++) {
    clean[n] = km_frame_new(W, H);
    marked[n] = km_frame_new(W, H);
    ws_scene(clean[n], n);
    ws_scene(marked[n], n);
    ws_apply(&L, marked[n]);
  }
  AVFrame *out = km_frame_new(W, H);
  double first[2] = {0}, all[2] = {0};
  ki_wm_frame_stats fs[2];
  for (int ahead = 0; ahead < 2; ahead++) {
    ki_wm_state *st = NULL;
    memset(&fs[ahead], 0, sizeof fs[ahead]);
    CHECK(ki_wm_state_new(&st, W, H) == 0, "state");
    if (!st) break;
    ws_err e0 = {0}, ea = {0};
    for (int n = 0; n < N; n++) {
      for (int k = n; ahead && k <= n + 2 * KI_WM_AHEAD && k < NF; k++)
        CHECK(ki_wm_push(st, marked[k], k, &rp, 1) == 0, "push frame %d", k);
      ki_wm_frame_stats f1 = {0};
      CHECK(ki_wm_frame(st, n, marked[n], out, &rp, 1, KI_WM_INPAINT, 1, &f1) == 0, "frame %d", n);
      if (n == 0) ws_err_add(&e0, &L, out, clean[0]);
      if (n == 0) fs[ahead] = f1;
      ws_err_add(&ea, &L, out, clean[n]);
    }
    first[ahead] = ws_err_psnr(&e0);
    all[ahead] = ws_err_psnr(&ea);
    ki_wm_state_free(st);
  }
  fprintf(stderr, "  lookahead: frame 0 %.2f dB (earlier frames only %.2f dB, %lld of %lld pixels temporal), frames 0-%d %.2f dB (%.2f dB)\n",
          first[1], first[0], (long long)fs[1].px_temporal, (long long)fs[1].px_masked, N - 1, all[1], all[0]);
  CHECK(fs[0].px_temporal == 0, "frame 0 alone has nothing earlier to fill from");
  CHECK(fs[1].px_temporal >= fs[1].px_masked / 3, "frame 0 filled from later frames: %lld of %lld pixels",
        (long long)fs[1].px_temporal, (long long)fs[1].px_masked);
  CHECK(first[1] >= first[0] + 2, "frame 0: %.2f dB with later frames is not 2 dB over %.2f dB", first[1], first[0]);
  CHECK(all[1] >= all[0] + 2, "frames 0-%d: %.2f dB is not 2 dB over %.2f dB", N - 1, all[1], all[0]);
  for (int n = 0; n < NF; n++) { av_frame_free(&clean[n]); av_frame_free(&marked[n]); }
  av_frame_free(&out);
  free(R.mask);
  ws_layer_release(&L);
}

/* ---- no watermark, audio, bad inputs ---- */

static void test_no_watermark(void) {
  kiln_err e = {0};
  km_testsrc ts = {.pattern = KM_PATTERN_BARS, .width = 64, .height = 64, .fps = {25, 1}, .frames = 60, .tone_hz = 440};
  const char *tone = t_path("tone.mkv");
  CHECK(km_testsrc_write(tone, &ts, &e) == 0, "tone: %s", e.msg);
  clip c = {W, H, 60, NULL, NULL, NULL, 0};
  const char *in = t_path("clean.mkv"), *out = t_path("clean_out.mp4");
  CHECK(write_clip(in, &c, tone, 0) == 0, "write the clip");
  json_t *info = NULL;
  int r = run_wm(in, out, NULL, &info, NULL, &e);
  CHECK(r == 0, "remove_watermark: %s", e.msg);
  if (r == 0) {
    CHECK(kj_num(info, "watermarks_found", -1) == 0, "found %g marks in a clip without any", kj_num(info, "watermarks_found", -1));
    t_video vo;
    double worst = 100;
    AVFrame *f = km_frame_new(W, H);
    CHECK(t_decode(out, 0, -1, &vo) == 0 && vo.n == 60, "60 frames out, got %d", vo.n);
    for (int n = 0; n < vo.n; n++) {
      ws_scene(f, n);
      double p = ki_psnr(ki_mse(vo.f[n]->data[0], vo.f[n]->linesize[0], f->data[0], f->linesize[0], W, H));
      if (p < worst) worst = p;
    }
    CHECK(worst >= 38, "frames kept within codec tolerance: worst PSNR %.2f dB", worst);
    av_frame_free(&f);
    t_video_free(&vo);
    km_probe pr;
    CHECK(km_probe_file(out, &pr, &e) == 0 && pr.n_audio == 1, "the audio is kept");
  }
  json_decref(info);
}

static void test_bad_inputs(void) {
  kiln_err e = {0};
  clip c = {W, H, 20, NULL, NULL, NULL, 0};
  char in[1024];                                  /* t_path's buffers rotate: keep our own copy */
  snprintf(in, sizeof in, "%s", t_path("short.mp4"));
  CHECK(write_clip(in, &c, NULL, 0) == 0, "write the clip");
  int r = run_wm(in, t_path("bad1.mp4"), "{\"boxes\": [{\"x\": 300, \"y\": 10, \"w\": 40, \"h\": 20}]}", NULL, NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "boxes[0]") && strstr(e.msg, "outside"), "a box outside the frame: %s", e.msg);
  r = run_wm(in, t_path("bad2.mp4"), "{\"boxes\": [{\"x\": 0, \"y\": 0, \"w\": 320, \"h\": 200}]}", NULL, NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "covers"), "a mask over most of the frame: %s", e.msg);
  CHECK(access(t_path("bad2.mp4"), F_OK) != 0, "no output left behind");
  r = run_wm(in, t_path("bad3.mp4"), "{\"mode\": \"sharpen\"}", NULL, NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "mode"), "unknown mode: %s", e.msg);
  /* a mask image instead of detection: the frame's size or a clear error */
  for (int k = 0; k < 2; k++) {
    km_image im = {0};
    int mw = k ? W + 80 : W, mh = k ? H + 60 : H;
    km_image_alloc(&im, mw, mh);
    memset(im.rgb, 0, (size_t)mw * mh * 3);
    for (int y = 180; y < 220; y++) memset(im.rgb + ((size_t)y * mw + 240) * 3, 255, 60 * 3);
    char *b64 = ws_png_b64(&im, t_path("mask.png"));
    km_image_release(&im);
    CHECK(b64 != NULL, "write the mask");
    json_t *pj = json_pack("{s:s}", "mask", b64);
    char *ps = json_dumps(pj, JSON_COMPACT);
    json_t *mi = NULL;
    r = run_wm(in, t_path("mask_out.mp4"), ps, &mi, NULL, &e);
    if (k) CHECK(r == KILN_EPARAM && strstr(e.msg, "'mask'") && strstr(e.msg, "400x300"), "a mask larger than the frame: %s", e.msg);
    else {
      const json_t *g0 = json_array_get(json_object_get(mi, "regions"), 0);
      CHECK(r == 0 && kj_num(mi, "watermarks_found", 0) == 1 && !strcmp(kj_str(g0, "source", ""), "mask") &&
                kj_num(g0, "x", 0) == 240 && kj_num(g0, "w", 0) == 60,
            "a mask image: %s", r ? e.msg : "wrong region");
    }
    json_decref(mi);
    free(ps);
    json_decref(pj);
    free(b64);
  }
  /* one frame and a 16x16 video: nothing to learn from, still a clean run */
  clip one = {W, H, 1, NULL, NULL, NULL, 0};
  CHECK(write_clip(t_path("one.mp4"), &one, NULL, 0) == 0, "write");
  json_t *info = NULL;
  r = run_wm(t_path("one.mp4"), t_path("one_out.mp4"), NULL, &info, NULL, &e);
  CHECK(r == 0 && kj_num(info, "watermarks_found", -1) == 0, "one frame: %s", r ? e.msg : "marks found");
  json_decref(info);
  info = NULL;
  clip tiny = {16, 16, 10, NULL, NULL, NULL, 0};
  CHECK(write_clip(t_path("tiny.mp4"), &tiny, NULL, 0) == 0, "write");
  r = run_wm(t_path("tiny.mp4"), t_path("tiny_out.mp4"), NULL, &info, NULL, &e);
  CHECK(r == 0, "16x16: %s", e.msg);
  json_decref(info);
  info = NULL;
  r = run_wm(t_path("tiny.mp4"), t_path("tiny_box.mp4"), "{\"boxes\": [{\"x\": 2, \"y\": 2, \"w\": 4, \"h\": 4}]}", &info, NULL, &e);
  CHECK(r == 0 && kj_num(info, "watermarks_found", 0) == 1, "16x16 with a box: %s", e.msg);
  json_decref(info);
}

/* The blend estimate on a coarse mask (a whole box around text with a
 * shadow): the background it holds — the holes of the letters, the box's
 * corners, where the scene moves less than around the box — must come out
 * clear (kept, and out of the shrunk mask), the letters opaque, the shadow
 * at its alpha, and the shrunk mask must still hold the whole mark. */
static void test_estimate_coarse(void) {
  enum { FW = 200, FH = 120, NF = 40, M = 8 };
  static const uint8_t white[3] = {235, 128, 128};
  ws_layer L;
  CHECK(ws_layer_init(&L, FW, FH) == 0, "layer");
  ws_text(&L, 60, 44, 4, "OHO", white, 1);
  int x0, y0, x1, y1;
  ws_bbox(&L, 0, &x0, &y0, &x1, &y1);
  ki_wm_region r = {0};
  r.x = (x0 - 6) & ~1; r.y = (y0 - 6) & ~1;
  r.w = ((x1 + 8) & ~1) - r.x; r.h = ((y1 + 8) & ~1) - r.y;
  r.mask = malloc((size_t)r.w * r.h);
  memset(r.mask, 1, (size_t)r.w * r.h);
  int cw = r.w + 2 * M, ch = r.h + 2 * M;
  uint8_t *(*crop)[3] = calloc(NF, sizeof *crop);
  AVFrame *f = km_frame_new(FW, FH);
  for (int n = 0; n < NF; n++) {
    /* a still texture, and waves moving through it: weaker over the text's middle than around the box */
    for (int y = 0; y < FH; y++)
      for (int x = 0; x < FW; x++) {
        double amp = fabs(y - (y0 + y1) / 2.0) < (y1 - y0) * 0.3 && x > x0 && x < x1 ? 10 : 30;
        double v = 120 + 25 * sin(0.21 * x + 0.13 * y) + amp * sin(0.17 * x - 0.11 * y + 0.9 * n) * cos(0.05 * y + 0.4 * n);
        f->data[0][(size_t)y * f->linesize[0] + x] = (uint8_t)lrint(v);
      }
    for (int y = 0; y < FH / 2; y++)
      for (int x = 0; x < FW / 2; x++) {
        f->data[1][(size_t)y * f->linesize[1] + x] = (uint8_t)(128 + 20 * sin(0.1 * x + 0.3 * n));
        f->data[2][(size_t)y * f->linesize[2] + x] = 128;
      }
    ws_apply(&L, f);
    for (int p = 0; p < 3; p++) {
      int sc = p ? 2 : 1, pw = cw / sc, ph = ch / sc;
      crop[n][p] = malloc((size_t)pw * ph);
      for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++)
          crop[n][p][(size_t)y * pw + x] = f->data[p][(size_t)((r.y - M) / sc + y) * f->linesize[p] + (r.x - M) / sc + x];
    }
  }
  CHECK(ki_wm_estimate(&r, (uint8_t *const(*)[3])crop, NF, M) == 0 && r.alpha, "an estimate");
  if (r.alpha) {
    long clear = 0, kept = 0, opaque = 0, opaque_ok = 0, mark = 0, in_mask = 0, mask_px = 0, shadow = 0;
    double shadow_err = 0;
    for (int y = 0; y < r.h; y++)
      for (int x = 0; x < r.w; x++) {
        size_t q = (size_t)y * r.w + x;
        float ta = L.a[(size_t)(r.y + y) * FW + r.x + x], ea = r.alpha[q];
        mask_px += r.mask[q];
        if (ta == 0) { clear++; kept += !r.mask[q] || ea < 0.04f; }
        if (ta > 0.05f) { mark++; in_mask += r.mask[q]; }
        if (ta > 0.99f) { opaque++; opaque_ok += r.mask[q] && ea >= 0.72f; }
        if (fabsf(ta - 0.6f) < 0.01f) { shadow++; shadow_err += fabsf(ea - 0.6f); }
      }
    fprintf(stderr, "  coarse box: %ld of %ld clear pixels kept, %ld of %ld opaque ones filled, shadow alpha off by %.3f, "
            "mask %.2fx the mark, recall %.4f\n", kept, clear, opaque_ok, opaque, shadow ? shadow_err / shadow : 1,
            (double)mask_px / mark, (double)in_mask / mark);
    /* a strict clear test (a faint mark's pixels must not pass for clear) keeps fewer of them: 72% */
    CHECK(kept >= clear * 0.65, "clear pixels kept: %ld of %ld", kept, clear);
    CHECK(opaque_ok >= opaque * 0.99, "opaque pixels filled: %ld of %ld", opaque_ok, opaque);
    CHECK(shadow > 0 && shadow_err / shadow < 0.2, "the shadow's alpha: mean error %.3f", shadow ? shadow_err / shadow : 1);
    CHECK(in_mask >= mark * 0.99, "the shrunk mask holds the mark: %ld of %ld", in_mask, mark);
    CHECK(mask_px <= mark * 3.0, "the mask shrank to the mark: %ld pixels for a mark of %ld", mask_px, mark);
  }
  for (int n = 0; n < NF; n++)
    for (int p = 0; p < 3; p++) free(crop[n][p]);
  free(crop);
  av_frame_free(&f);
  ki_wm_region_release(&r);
  ws_layer_release(&L);
}

/* Cases of the generated benchmark (tests/wm_cases.c, bench/watermark.c),
 * each run as the engine runs it and scored on the clean original: floors
 * a little under what the benchmark measured, the ghost (the mark-shaped
 * part of the residual) under the benchmark's threshold of 2 levels, and no
 * region found on clips without a mark. */
typedef struct gcase {
  int id;
  double psnr, recall, area;    /* floors: in-mask PSNR, recall; ceiling: mask/mark */
  const char *what;
} gcase;

static void test_generated(void) {
  static const gcase cs[] = {
      /* eval-set cases; measured 2026-12-07: 48.9 dB (removelogo given the truth 37.3), 45.5 dB (28.5) */
      {14, 44, 0.98, 2.5, "a faint outlined text over a bright pan"},
      {21, 40, 0.98, 2.5, "a logo with a shadow that jumps between two corners"},
      {1000, 0, 0, 0, "no mark: Megamind"},
      {1002, 0, 0, 0, "no mark"},
  };
  const char *sd = getenv("KILN_SAMPLES");
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    wc_case c;
    if (wc_make(cs[i].id, NULL, &c) < 0) {
      CHECK(!sd, "case %d: cannot build it from $KILN_SAMPLES", cs[i].id);
      if (!sd) fprintf(stderr, "  SKIPPED: case %d needs scripts/samples\n", cs[i].id);
      continue;
    }
    wc_keep(&c);
    char in[64], out[64];
    snprintf(in, sizeof in, "gen%d.mkv", cs[i].id);
    snprintf(out, sizeof out, "gen%d_out.mp4", cs[i].id);
    kiln_err e = {0};
    json_t *det = NULL;
    CHECK(wc_write(&c, t_path(in), 1) == 0, "case %d: write", cs[i].id);
    int r = run_wm(t_path(in), t_path(out), "{\"crf\": 18, \"preset\": \"veryfast\"}", NULL, &det, &e);
    CHECK(r == 0, "case %d: %s", cs[i].id, e.msg);
    wc_metrics m;
    if (r == 0 && wc_measure(&c, t_path(out), det, &m) == 0) {
      fprintf(stderr, "  case %d (%s): %s\n    in-mask PSNR %.2f dB, ghost %+.2f, recall %.4f, mask %.2fx, %d regions, %d false\n",
              cs[i].id, cs[i].what, c.name, m.psnr, m.ghost, m.recall, m.area, m.regions, m.false_regions);
      if (c.has_mark) {
        CHECK(m.psnr >= cs[i].psnr, "case %d: in-mask PSNR %.2f dB < %.1f", cs[i].id, m.psnr, cs[i].psnr);
        CHECK(m.recall >= cs[i].recall, "case %d: recall %.4f < %.2f", cs[i].id, m.recall, cs[i].recall);
        CHECK(m.area <= cs[i].area, "case %d: mask %.2fx the mark > %.1fx", cs[i].id, m.area, cs[i].area);
        CHECK(fabs(m.ghost) <= 2.0, "case %d: a visible trace of the mark, ghost %+.2f levels", cs[i].id, m.ghost);
        CHECK(m.false_regions == 0, "case %d: %d false regions", cs[i].id, m.false_regions);
      } else CHECK(m.regions == 0, "case %d (no mark): %d regions found", cs[i].id, m.regions);
    } else CHECK(0, "case %d: cannot score the output", cs[i].id);
    json_decref(det);
    wc_release(&c);
  }
}

int main(void) {
  av_log_set_level(AV_LOG_QUIET);
  T_RUN(test_estimate_coarse);
  T_RUN(test_three_marks);
  T_RUN(test_moving_mark);
  T_RUN(test_real_clip);
  T_RUN(test_fade_still);
  T_RUN(test_lookahead);
  T_RUN(test_no_watermark);
  T_RUN(test_bad_inputs);
  T_RUN(test_generated);
  t_cleanup();
  return t_done();
}

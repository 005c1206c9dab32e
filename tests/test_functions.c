/* test_functions.c — golden tests for reframe and overlay, run through the
 * function registry exactly as `kiln run` does.
 *
 * reframe: the coordinate-encoded pattern is cropped along animated
 * keyframes; each output frame is compared with the pattern evaluated where
 * the requested rectangle says its pixels came from (PSNR >= 40 dB), the
 * U/V ramps must read back the rectangle's centre, and a rectangle shifted
 * by 8 px must NOT match (so the check can fail). trim/speed: exact frame
 * counts, and each output frame is identified as the source frame the
 * timeline says it shows. overlay: untouched outside the keyframed span,
 * unchanged inside the ellipse, dimmed outside, ring on the edge. */
#include <libavutil/log.h>
#include <math.h>

#include "fn/fn.h"
#include "img/img.h"
#include "media/media.h"
#include "t.h"
#include "tutil.h"
#include "util/json.h"

static int run_fn_range(const char *name, const char *in, const char *out, const char *params_json, int64_t out_start,
                        int64_t out_end, km_pipeline_stats *st, kiln_err *e) {
  const kf_desc *fn = kf_find(name);
  json_t *raw = json_loads(params_json, 0, NULL), *p = NULL;
  int r = kf_validate(fn, raw, &p, e);
  json_decref(raw);
  if (r < 0) return r;
  kf_task t = {.input = in, .output = out, .params = p, .start = 0, .end = -1, .out_start = out_start,
               .out_end = out_end, .threads = 2};
  kf_result res = {0};
  r = fn->run(NULL, &t, &res, e);
  if (st) *st = res.stats;
  json_decref(p);
  return r;
}

static int run_fn(const char *name, const char *in, const char *out, const char *params_json, km_pipeline_stats *st,
                  kiln_err *e) {
  return run_fn_range(name, in, out, params_json, 0, 0, st, e);
}

typedef struct rect_ctx { double x, y, w, h; int ow, oh, sw, sh; int64_t n; } rect_ctx;

/* What output pixel (i, j) of plane p must hold if it came from the rect. */
static double expect_rect(void *arg, int p, int i, int j) {
  rect_ctx *c = arg;
  double li = p ? 2 * i + 0.5 : i, lj = p ? 2 * j + 0.5 : j;  /* output luma coords */
  double sx = c->x + (li + 0.5) * c->w / c->ow - 0.5, sy = c->y + (lj + 0.5) * c->h / c->oh - 0.5;
  return km_pattern_value(KM_PATTERN_COORDS, p, sx, sy, c->n, c->sw, c->sh);
}

static void lerp_rect(int64_t n, const double k0[5], const double k1[5], rect_ctx *c) {
  double u = (n - k0[0]) / (k1[0] - k0[0]);
  if (u < 0) u = 0;
  if (u > 1) u = 1;
  c->x = k0[1] + (k1[1] - k0[1]) * u;
  c->y = k0[2] + (k1[2] - k0[2]) * u;
  c->w = k0[3] + (k1[3] - k0[3]) * u;
  c->h = k0[4] + (k1[4] - k0[4]) * u;
}

static void test_reframe_golden(void) {
  km_testsrc t = {.pattern = KM_PATTERN_COORDS, .width = 640, .height = 360, .fps = {30, 1}, .frames = 40,
                  .lossless = 1, .gop = 15, .tone_hz = 500};
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("src.mp4"), &t, &e) == 0, "%s", e.msg);
  /* keyframes: frame 5 and frame 30; held before and after */
  const double k0[5] = {5, 40, 20, 162, 288}, k1[5] = {30, 430.5, 0, 202.5, 360};
  const char *params =
      "{\"crop\":[{\"frame\":30,\"x\":430.5,\"y\":0,\"w\":202.5,\"h\":360},"
      "{\"frame\":5,\"x\":40,\"y\":20,\"w\":162,\"h\":288}],"
      "\"width\":180,\"height\":320,\"lossless\":true}";
  km_pipeline_stats st;
  CHECK(run_fn("reframe", t_path("src.mp4"), t_path("reel.mp4"), params, &st, &e) == 0, "%s", e.msg);
  CHECK(st.frames_out == 40 && st.out_w == 180 && st.out_h == 320, "%lld frames %dx%d", (long long)st.frames_out, st.out_w,
        st.out_h);
  km_probe p;
  CHECK(km_probe_file(t_path("reel.mp4"), &p, &e) == 0 && !strcmp(p.pix_fmt, "yuv420p"), "yuv420p: %s", p.pix_fmt);
  CHECK(t_moov_first(t_path("reel.mp4")), "moov before mdat");
  CHECK(p.n_audio == 1 && fabs(p.audio[0].duration - p.duration) <= 1.0 / 30, "audio %g s vs %g s", p.audio[0].duration,
        p.duration);
  t_video v;
  CHECK(t_decode(t_path("reel.mp4"), 0, -1, &v) == 0 && v.n == 40, "decoded %d", v.n);
  double worst = 100, best_shifted = 0;
  for (int n = 0; n < v.n; n++) {
    rect_ctx c = {.ow = 180, .oh = 320, .sw = 640, .sh = 360, .n = n};
    lerp_rect(n, k0, k1, &c);
    double ps = t_psnr_plane(v.f[n], 0, expect_rect, &c);
    if (ps < worst) worst = ps;
    double pu = t_psnr_plane(v.f[n], 1, expect_rect, &c), pv = t_psnr_plane(v.f[n], 2, expect_rect, &c);
    CHECK(pu >= 40 && pv >= 40, "frame %d chroma PSNR %.1f / %.1f", n, pu, pv);
    /* read the source position back from the chroma ramps at the centre */
    const AVFrame *f = v.f[n];
    int U = f->data[1][80 * f->linesize[1] + 45], V = f->data[2][80 * f->linesize[2] + 45];
    double x_read = (U - 16) / 224.0 * 640 - 0.5, y_read = (V - 16) / 224.0 * 360 - 0.5;
    CHECK(fabs(x_read - (c.x + c.w / 2)) < 4 && fabs(y_read - (c.y + c.h / 2)) < 4,
          "frame %d: pixels came from (%.1f, %.1f), want (%.1f, %.1f)", n, x_read, y_read, c.x + c.w / 2, c.y + c.h / 2);
    c.x += 8;
    double shifted = t_psnr_plane(v.f[n], 0, expect_rect, &c);
    if (shifted > best_shifted) best_shifted = shifted;
  }
  CHECK(worst >= 40, "worst luma PSNR %.2f dB against the requested rectangles", worst);
  CHECK(best_shifted < 30, "a rectangle 8 px off must not match (best %.2f dB)", best_shifted);
  fprintf(stderr, "  reframe golden: worst PSNR %.2f dB, 8-px-shifted best %.2f dB\n", worst, best_shifted);
  t_video_free(&v);

  /* default crop: centred, full height, output aspect */
  CHECK(run_fn("reframe", t_path("src.mp4"), t_path("centre.mp4"), "{\"width\":90,\"height\":160,\"lossless\":true}",
               &st, &e) == 0, "%s", e.msg);
  CHECK(t_decode(t_path("centre.mp4"), 0, 1, &v) == 0 && v.n == 1, "decoded");
  if (v.n) {
    rect_ctx c = {.x = (640 - 202.5) / 2, .y = 0, .w = 202.5, .h = 360, .ow = 90, .oh = 160, .sw = 640, .sh = 360, .n = 0};
    double ps = t_psnr_plane(v.f[0], 0, expect_rect, &c);
    CHECK(ps >= 40, "centred default crop PSNR %.2f", ps);
  }
  t_video_free(&v);
}

/* Which source frame (0..n-1) does this decoded frame show? Best Y PSNR over
 * candidates near `guess`. */
static int identify(const AVFrame *f, int sw, int sh, int64_t guess, int nsrc) {
  int best = -1;
  double bp = 0;
  for (int64_t k = guess - 3; k <= guess + 3; k++) {
    if (k < 0 || k >= nsrc) continue;
    rect_ctx c = {.x = 0, .y = 0, .w = sw, .h = sh, .ow = f->width, .oh = f->height, .sw = sw, .sh = sh, .n = k};
    double ps = t_psnr_plane(f, 0, expect_rect, &c);
    if (ps > bp) { bp = ps; best = (int)k; }
  }
  return bp > 35 ? best : -1;
}

static void test_trim_speed(void) {
  km_testsrc t = {.pattern = KM_PATTERN_COORDS, .width = 160, .height = 96, .fps = {30, 1}, .frames = 120,
                  .lossless = 1, .gop = 30, .tone_hz = 700};
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("ts.mp4"), &t, &e) == 0, "%s", e.msg);
  struct {
    const char *params;
    int frames;
    int (*src_of)(int n);   /* which source frame output n shows */
  } cases[] = {
      {"{\"trim\":{\"start\":1,\"end\":3}}", 60, NULL},
      {"{\"trim\":{\"start\":1,\"end\":3},\"speed\":[{\"start\":1,\"end\":2,\"speed\":2}]}", 45, NULL},
      {"{\"speed\":[{\"start\":0,\"end\":1,\"speed\":0.5}]}", 150, NULL},
      {"{\"trim\":{\"start\":0.5},\"fps\":15}", 53, NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char params[512];
    snprintf(params, sizeof params, "%.*s,\"width\":160,\"height\":96,\"lossless\":true}",
             (int)strlen(cases[k].params) - 1, cases[k].params);
    km_pipeline_stats st;
    CHECK(run_fn("reframe", t_path("ts.mp4"), t_path("ts_out.mp4"), params, &st, &e) == 0, "%s: %s", params, e.msg);
    CHECK(st.frames_out == cases[k].frames, "%s: %lld frames, want %d", params, (long long)st.frames_out, cases[k].frames);
    km_probe p;
    km_probe_file(t_path("ts_out.mp4"), &p, &e);
    CHECK(p.frames == cases[k].frames, "probed %lld frames", (long long)p.frames);
    CHECK(p.n_audio == 1 && fabs(p.audio[0].duration - p.duration) <= 1.0 / av_q2d(st.out_fps),
          "%s: audio %.4f s vs video %.4f s", params, p.n_audio ? p.audio[0].duration : -1, p.duration);
    t_video v;
    t_decode(t_path("ts_out.mp4"), 0, -1, &v);
    km_timeline tl;
    km_timeline_identity(&tl);
    json_t *j = json_loads(cases[k].params, 0, NULL);
    json_t *tr = json_object_get(j, "trim"), *sp = json_object_get(j, "speed");
    if (tr) { tl.start = kj_num(tr, "start", 0); tl.end = kj_num(tr, "end", 0); }
    for (size_t i = 0; sp && i < json_array_size(sp); i++) {
      json_t *s = json_array_get(sp, i);
      tl.seg[tl.nseg++] = (km_speed_seg){kj_num(s, "start", 0), kj_num(s, "end", 0), kj_num(s, "speed", 1)};
    }
    double ofps = kj_num(j, "fps", 30);
    json_decref(j);
    int wrong = 0;
    for (int n = 0; n < v.n; n++) {
      int want = (int)floor(km_timeline_to_src(&tl, 4.0, (n + 0.5) / ofps) * 30 + 1e-9);
      if (want > 119) want = 119;   /* the last frame holds to the end */
      int got = identify(v.f[n], 160, 96, want, 120);
      if (got != want) { if (wrong < 3) fprintf(stderr, "  output %d shows source %d, want %d\n", n, got, want); wrong++; }
    }
    CHECK(wrong == 0, "%s: %d output frames show the wrong source frame", cases[k].params, wrong);
    t_video_free(&v);
  }
}

static void test_overlay(void) {
  km_testsrc t = {.pattern = KM_PATTERN_COORDS, .width = 320, .height = 180, .fps = {30, 1}, .frames = 30,
                  .lossless = 1, .gop = 10};
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("ov.mp4"), &t, &e) == 0, "%s", e.msg);
  const char *params =
      "{\"highlights\":[{\"frame\":10,\"x\":80,\"y\":90,\"rx\":30,\"ry\":40},{\"frame\":20,\"x\":240,\"y\":90,\"rx\":30,\"ry\":40}],"
      "\"dim\":0.5,\"ring_color\":\"#FFFFFF\",\"ring_width\":4,\"lossless\":true}";
  km_pipeline_stats st;
  CHECK(run_fn("overlay", t_path("ov.mp4"), t_path("ov_out.mp4"), params, &st, &e) == 0, "%s", e.msg);
  t_video a, b;
  CHECK(t_decode(t_path("ov.mp4"), 0, -1, &a) == 0 && t_decode(t_path("ov_out.mp4"), 0, -1, &b) == 0 && a.n == 30 &&
            b.n == 30, "decoded %d / %d", a.n, b.n);
  if (a.n != 30 || b.n != 30) return;
#define PX(v, n, x, y) ((v).f[n]->data[0][(y) * (v).f[n]->linesize[0] + (x)])
  for (int n = 0; n < 30; n++) {
    double mse = ki_mse(a.f[n]->data[0], a.f[n]->linesize[0], b.f[n]->data[0], b.f[n]->linesize[0], 320, 180);
    if (n < 10 || n > 20) CHECK(mse == 0, "frame %d outside the span must be untouched (mse %g)", n, mse);
    else CHECK(mse > 10, "frame %d inside the span must change (mse %g)", n, mse);
  }
  /* frame 15: centre interpolated to (160, 90) */
  CHECK(PX(a, 15, 160, 90) == PX(b, 15, 160, 90), "inside the ellipse unchanged: %d vs %d", PX(a, 15, 160, 90), PX(b, 15, 160, 90));
  int src = PX(a, 15, 10, 10), out = PX(b, 15, 10, 10);
  CHECK(abs(out - (int)lrint(16 + (src - 16) * 0.5)) <= 1, "outside dimmed by half: %d -> %d", src, out);
  int ring = PX(b, 15, 192, 90);   /* 2 px outside the right edge at x = 190 */
  CHECK(ring == 235, "white ring on the edge: %d", ring);
  /* the first keyframe's position is no longer lit at frame 15 */
  int was = PX(a, 15, 80, 90), now = PX(b, 15, 80, 90);
  CHECK(abs(now - (int)lrint(16 + (was - 16) * 0.5)) <= 1, "old position dimmed at frame 15: %d -> %d", was, now);
  t_video_free(&a);
  t_video_free(&b);
}

static void test_bad_params_at_run(void) {
  km_testsrc t = {.pattern = KM_PATTERN_BARS, .width = 160, .height = 96, .fps = {25, 1}, .frames = 10};
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("bad.mp4"), &t, &e) == 0, "%s", e.msg);
  int r = run_fn("reframe", t_path("bad.mp4"), t_path("bad_out.mp4"),
                 "{\"crop\":[{\"frame\":0,\"x\":100,\"y\":0,\"w\":90,\"h\":96}],\"width\":90,\"height\":96}", NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "crop[0]") && strstr(e.msg, "outside the 160x96"), "crop outside: %s", e.msg);
  r = run_fn("reframe", t_path("bad.mp4"), t_path("bad_out.mp4"), "{\"crop\":[{\"x\":0}],\"width\":90,\"height\":96}", NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "exactly one of 'frame' or 'time'"), "%s", e.msg);
  r = run_fn("reframe", t_path("bad.mp4"), t_path("bad_out.mp4"), "{\"width\":91}", NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "even"), "%s", e.msg);
  r = run_fn("reframe", t_path("bad.mp4"), t_path("bad_out.mp4"), "{\"trim\":{\"start\":5}}", NULL, &e);
  CHECK(r == KILN_EPARAM && strstr(e.msg, "past the end"), "trim past the end: %s", e.msg);
  /* a video stream that holds no frames */
  km_enc_opts o = {.width = 64, .height = 64, .fps = {25, 1}, .crf = 20, .preset = "veryfast"};
  km_writer *w = NULL;
  CHECK(km_writer_open(&w, t_path("empty.mp4"), t_path("empty.mp4"), &o, NULL, &e) == 0, "%s", e.msg);
  if (w) { km_writer_finish(w, &e); km_writer_free(w); }
  r = run_fn("overlay", t_path("empty.mp4"), t_path("bad_out.mp4"),
             "{\"highlights\":[{\"frame\":0,\"x\":1,\"y\":1,\"rx\":5,\"ry\":5}]}", NULL, &e);
  CHECK(r == KILN_ENOFRAMES && (strstr(e.msg, "no frames") || strstr(e.msg, "no video stream")), "zero frames: %s", e.msg);
  CHECK(t_count_files("bad_out") == 0, "no output or partial file left");
}

static int same_frame(const AVFrame *a, const AVFrame *b) {
  if (a->width != b->width || a->height != b->height) return 0;
  for (int p = 0; p < 3; p++) {
    int w = p ? a->width / 2 : a->width, h = p ? a->height / 2 : a->height;
    for (int y = 0; y < h; y++)
      if (memcmp(a->data[p] + y * a->linesize[p], b->data[p] + y * b->linesize[p], (size_t)w)) return 0;
  }
  return 1;
}

/* A chunk run (output frames [a, b) of the whole run) makes exactly those
 * frames of the whole run: losslessly encoded, the N chunks' frames in
 * order equal the sequential run's, for N = 2 and 4, with trim and speed. */
static void test_chunks(void) {
  km_testsrc t = {.pattern = KM_PATTERN_COORDS, .width = 160, .height = 96, .fps = {30, 1}, .frames = 120,
                  .lossless = 1, .gop = 30, .tone_hz = 700};
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("ck.mp4"), &t, &e) == 0, "%s", e.msg);
  struct { const char *fn, *params; } cases[] = {
      {"reframe", "{\"lossless\":true,\"width\":64,\"height\":96,\"crop\":[{\"frame\":0,\"x\":0},{\"frame\":119,\"x\":96}]}"},
      {"reframe", "{\"lossless\":true,\"width\":64,\"height\":96,\"trim\":{\"start\":0.5,\"end\":3.5},"
                  "\"speed\":[{\"start\":1,\"end\":2,\"speed\":0.5},{\"start\":2.5,\"end\":3.5,\"speed\":2}]}"},
      {"overlay", "{\"lossless\":true,\"highlights\":[{\"frame\":10,\"x\":40,\"y\":40,\"rx\":20,\"ry\":30},"
                  "{\"frame\":100,\"x\":120,\"y\":50,\"rx\":25,\"ry\":25}]}"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    km_pipeline_stats st;
    char seq[1024], src[1024], joined[1024];      /* t_path's buffer rotates */
    snprintf(seq, sizeof seq, "%s", t_path("ck-seq.mp4"));
    snprintf(src, sizeof src, "%s", t_path("ck.mp4"));
    snprintf(joined, sizeof joined, "%s", t_path("ck-joined.mp4"));
    if (!CHECKV(run_fn(cases[c].fn, t_path("ck.mp4"), seq, cases[c].params, &st, &e) == 0, "%s: %s", cases[c].fn, e.msg)) continue;
    t_video sv = {0};
    CHECK(t_decode(seq, 0, -1, &sv) == 0 && sv.n == st.frames_out, "sequential frames %d vs %lld", sv.n,
          (long long)st.frames_out);
    for (int n = 2; n <= 4; n += 2) {
      int at = 0, ok = 1;
      for (int k = 0; k < n && ok; k++) {
        int64_t a = (int64_t)sv.n * k / n, b = (int64_t)sv.n * (k + 1) / n;
        char name[32];
        snprintf(name, sizeof name, "ck-%d-%d.mp4", n, k);
        km_pipeline_stats cs;
        ok = CHECKV(run_fn_range(cases[c].fn, t_path("ck.mp4"), t_path(name), cases[c].params, a, b, &cs, &e) == 0,
                   "chunk %d/%d: %s", k, n, e.msg);
        t_video cv = {0};
        ok = ok && CHECKV(t_decode(t_path(name), 0, -1, &cv) == 0 && cv.n == b - a && !strcmp(cs.audio, "none"),
                         "case %zu chunk %d/%d has %d frames, expected %lld (audio %s)", c, k, n, cv.n,
                         (long long)(b - a), cs.audio);
        for (int i = 0; ok && i < cv.n; i++, at++)
          ok = CHECKV(same_frame(cv.f[i], sv.f[at]), "case %zu (%s) N=%d: output frame %d differs from the sequential run's",
                     c, cases[c].fn, n, at);
        t_video_free(&cv);
      }
      CHECK(!ok || at == sv.n, "case %zu N=%d: %d of %d frames", c, n, at, sv.n);
      /* the join: video packets, timestamps and audio as the sequential run's */
      const char *paths[4];
      char names[4][32];
      for (int k = 0; k < n; k++) {
        snprintf(names[k], sizeof names[k], "ck-%d-%d.mp4", n, k);
        paths[k] = strdup(t_path(names[k]));
      }
      json_t *inner = NULL, *raw = json_loads(cases[c].params, 0, NULL);
      kf_validate(kf_find(cases[c].fn), raw, &inner, &e);
      json_decref(raw);
      json_t *jp = json_pack("{s:s, s:O}", "fn", cases[c].fn, "params", inner);
      kf_task jt = {.input = src, .inputs = paths, .ninputs = n, .output = joined, .params = jp, .end = -1};
      kf_result jr = {0};
      const kf_desc *all_join = NULL;
      for (const kf_desc *const *r = kf_registry_all(); *r; r++)
        if (!strcmp((*r)->name, "join")) all_join = *r;
      if (CHECKV(all_join && all_join->run(NULL, &jt, &jr, &e) == 0, "join N=%d: %s", n, e.msg)) {
        t_packets sa, ja, svp, jvp;
        CHECK(t_packets_of(seq, AVMEDIA_TYPE_VIDEO, &svp) == 0 && t_packets_of(joined, AVMEDIA_TYPE_VIDEO, &jvp) == 0 &&
                  svp.n == jvp.n && svp.ts_hash == jvp.ts_hash,
              "case %zu N=%d: joined video timestamps differ (%lld vs %lld packets)", c, n, (long long)jvp.n, (long long)svp.n);
        CHECK(t_packets_of(seq, AVMEDIA_TYPE_AUDIO, &sa) == 0 && t_packets_of(joined, AVMEDIA_TYPE_AUDIO, &ja) == 0 &&
                  sa.n > 0 && sa.n == ja.n && sa.data_hash == ja.data_hash && sa.ts_hash == ja.ts_hash,
              "case %zu N=%d: joined audio differs from the sequential run's (%lld vs %lld packets)", c, n,
              (long long)ja.n, (long long)sa.n);
        t_video jv = {0};
        int same = t_decode(joined, 0, -1, &jv) == 0 && jv.n == sv.n;
        for (int i = 0; same && i < jv.n; i++) same = same_frame(jv.f[i], sv.f[i]);
        CHECK(same, "case %zu N=%d: the joined frames differ from the sequential run's", c, n);
        t_video_free(&jv);
      }
      json_decref(jp);
      json_decref(inner);
      for (int k = 0; k < n; k++) free((void *)paths[k]);
    }
    t_video_free(&sv);
  }
}

/* Issue 12's repros: a 16000x16000 PNG (tens of KB) took 3.1 GB in overlay
 * and 1.2 GB in reframe; upscale of a 64x64 PNG to width/height 16384
 * reached 6.6 GB. Each is bad_input now, naming the size and the limit,
 * and refused before its pixels are allocated (the peak RSS barely moves).
 * reframe's and upscale's output sizes are held to the output budget. */
static void test_pixel_budget(void) {
  kiln_err e = {0};
  char big[1024], small[1024], fx[1024];
  snprintf(big, sizeof big, "%s", t_path("big.png"));
  snprintf(small, sizeof small, "%s", t_path("small.png"));
  const char *slash = strrchr(__FILE__, '/');      /* the test model, tests/fixtures/nn/tiny (x2) */
  snprintf(fx, sizeof fx, "%.*s/fixtures/nn/tiny", slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
  CHECK(t_png_solid(big, 16000, 16000) == 0 && t_png_solid(small, 64, 64) == 0, "cannot make the PNGs");
  long hwm0 = t_vm_hwm_kb();
  int r = run_fn("overlay", big, t_path("ov_big.mp4"), "{\"highlights\":[{\"frame\":0,\"x\":10,\"y\":10,\"rx\":5,\"ry\":5}]}",
                 NULL, &e);
  CHECK(r == KILN_ETOOBIG && !strcmp(kiln_errclass(r), "bad_input") && strstr(e.msg, "16000x16000 (256.0 Mpixels)") &&
        strstr(e.msg, "the limit is 67.1 Mpixels"), "overlay: %d %s", r, e.msg);
  r = run_fn("reframe", big, t_path("rf_big.mp4"), "{}", NULL, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "16000x16000"), "reframe: %d %s", r, e.msg);
  char up[1400];
  snprintf(up, sizeof up, "{\"model\":\"%s\",\"width\":16384,\"height\":16384}", fx);
  r = run_fn("upscale", small, t_path("up_big.png"), up, NULL, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "upscale: the output (width x height) is 16384x16384 (268.4 Mpixels)") &&
        strstr(e.msg, "the limit is 67.1 Mpixels"), "upscale: %d %s", r, e.msg);
  long hwm1 = t_vm_hwm_kb();
  CHECK(hwm0 > 0 && hwm1 - hwm0 < 64 * 1024, "refusing them raised the peak RSS by %ld MB", (hwm1 - hwm0) / 1024);
  CHECK(!t_file_exists(t_path("ov_big.mp4")) && !t_file_exists(t_path("up_big.png")), "no output left behind");

  /* the planner's view (kf_shape_of) refuses the same */
  json_t *raw = json_loads(up, 0, NULL), *p = NULL;
  kf_shape sh;
  km_probe pr;
  CHECK(kf_validate(kf_find("upscale"), raw, &p, &e) == 0, "%s", e.msg);
  r = kf_shape_of(kf_find("upscale"), p, small, &sh, &pr, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "16384x16384"), "upscale's shape: %d %s", r, e.msg);
  json_decref(raw);
  json_decref(p);
  snprintf(up, sizeof up, "{\"model\":\"%s\"}", fx);   /* within it: the model's x2 */
  km_pipeline_stats st;
  CHECK(run_fn("upscale", small, t_path("up_small.png"), up, &st, &e) == 0 && st.out_w == 128, "upscale x2: %s", e.msg);

  /* a configured output limit, named */
  km_limits def = *km_limits_get(), l = def;
  l.max_out_pixels = 1920 * 1080;
  snprintf(l.out_name, sizeof l.out_name, "functions.reframe.max_output_pixels");
  km_limits_set(&l);
  km_testsrc t = {.pattern = KM_PATTERN_BARS, .width = 64, .height = 64, .fps = {25, 1}, .frames = 3, .gop = 10};
  CHECK(km_testsrc_write(t_path("pb.mp4"), &t, &e) == 0, "%s", e.msg);
  r = run_fn("reframe", t_path("pb.mp4"), t_path("pb_out.mp4"), "{\"width\":2160,\"height\":3840}", NULL, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "reframe: the output frame (width x height) is 2160x3840 (8.3 Mpixels); "
                                           "the limit is 2.1 Mpixels (functions.reframe.max_output_pixels)"), "%d %s", r, e.msg);
  CHECK(run_fn("reframe", t_path("pb.mp4"), t_path("pb_out.mp4"), "{\"width\":1080,\"height\":1920}", NULL, &e) == 0,
        "within it: %s", e.msg);
  km_limits_set(&def);
}

int main(void) {
  T_RUN(test_pixel_budget);
  T_RUN(test_chunks);
  av_log_set_level(AV_LOG_QUIET);
  T_RUN(test_reframe_golden);
  T_RUN(test_trim_speed);
  T_RUN(test_overlay);
  T_RUN(test_bad_params_at_run);
  t_cleanup();
  return t_done();
}

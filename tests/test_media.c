/* test_media.c — probe, frame-exact range decoding, rotation, encoding and
 * muxing with audio (copy and AAC), damaged inputs, and the pipeline's
 * lookahead. Every clip is made
 * here by km_testsrc_write. */
#include <libavutil/log.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include "img/img.h"
#include "media/media.h"
#include "t.h"
#include "tutil.h"

static km_testsrc coords(int w, int h, int frames) {
  return (km_testsrc){.pattern = KM_PATTERN_COORDS, .width = w, .height = h, .fps = {30, 1}, .frames = frames,
                      .lossless = 1, .gop = 10};
}

static void test_probe(void) {
  km_testsrc t = coords(320, 180, 45);
  t.tone_hz = 440;
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("p.mp4"), &t, &e) == 0, "%s", e.msg);
  km_probe p;
  CHECK(km_probe_file(t_path("p.mp4"), &p, &e) == 0, "%s", e.msg);
  CHECK(p.has_video && p.width == 320 && p.height == 180, "size %dx%d", p.width, p.height);
  CHECK(p.frames == 45 && p.frames_exact, "frames %lld exact %d", (long long)p.frames, p.frames_exact);
  CHECK(fabs(p.fps - 30) < 1e-6 && !p.vfr, "fps %g vfr %d", p.fps, p.vfr);
  CHECK(fabs(p.duration - 1.5) < 1e-6, "duration %g", p.duration);
  CHECK(!strcmp(p.pix_fmt, "yuv420p"), "pix_fmt %s", p.pix_fmt);
  CHECK(strstr(p.container, "mp4") != NULL, "container %s", p.container);
  CHECK(p.n_audio == 1 && !strcmp(p.audio[0].codec, "aac") && p.audio[0].sample_rate == 48000 && p.audio[0].channels == 2,
        "audio %d %s", p.n_audio, p.audio[0].codec);
  CHECK(fabs(p.audio[0].duration - p.duration) < 1.0 / 30, "audio %g s vs video %g s", p.audio[0].duration, p.duration);
  CHECK(t_moov_first(t_path("p.mp4")), "faststart: moov before mdat");

  /* a .mov keeps PCM audio as it is */
  CHECK(km_testsrc_write(t_path("p.mov"), &t, &e) == 0, "%s", e.msg);
  CHECK(km_probe_file(t_path("p.mov"), &p, &e) == 0 && !strcmp(p.audio[0].codec, "pcm_s16le"), "mov pcm: %s", p.audio[0].codec);

  /* errors name the file */
  CHECK(km_probe_file(t_path("missing.mp4"), &p, &e) == KILN_ENOENT && strstr(e.msg, "missing.mp4"), "%s", e.msg);
  FILE *f = fopen(t_path("text.mp4"), "w");
  fputs("this is not a video, just some words that FFmpeg cannot parse as any container at all\n", f);
  fclose(f);
  CHECK(km_probe_file(t_path("text.mp4"), &p, &e) == KILN_ENOTMEDIA && strstr(e.msg, "not a media file"), "%s", e.msg);
}

static uint64_t frame_hash(const AVFrame *f) {
  uint64_t h = 1469598103934665603ULL;
  for (int p = 0; p < 3; p++) {
    int w = p ? f->width / 2 : f->width, hh = p ? f->height / 2 : f->height;
    for (int y = 0; y < hh; y++)
      for (int x = 0; x < w; x++) h = (h ^ f->data[p][y * f->linesize[p] + x]) * 1099511628211ULL;
  }
  return h;
}

static void test_range_decode(void) {
  km_testsrc t = coords(192, 108, 60);
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("r.mp4"), &t, &e) == 0, "%s", e.msg);
  t_video all, part;
  CHECK(t_decode(t_path("r.mp4"), 0, -1, &all) == 0 && all.n == 60, "full decode %d frames", all.n);
  uint64_t hashes[60];
  for (int i = 0; i < all.n && i < 60; i++) {
    hashes[i] = frame_hash(all.f[i]);
    CHECK(all.info[i].src_index == i, "index %lld at %d", (long long)all.info[i].src_index, i);
  }
  CHECK(hashes[0] != hashes[1], "frames differ");
  /* ranges that start mid-GOP (keyframes every 10 frames) */
  int64_t ranges[][2] = {{23, 37}, {0, 5}, {10, 11}, {55, -1}, {59, 60}};
  for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
    int64_t s = ranges[k][0], en = ranges[k][1];
    int want = (int)((en < 0 ? 60 : en) - s);
    CHECK(t_decode(t_path("r.mp4"), s, en, &part) == 0, "range decode");
    CHECK(part.n == want, "range [%lld,%lld): %d frames, want %d", (long long)s, (long long)en, part.n, want);
    for (int i = 0; i < part.n && i < want; i++) {
      CHECK(part.info[i].src_index == s + i, "range frame %d has index %lld", i, (long long)part.info[i].src_index);
      CHECK(frame_hash(part.f[i]) == hashes[s + i], "range [%lld,..) frame %d differs from the full decode", (long long)s, i);
    }
    t_video_free(&part);
  }
  t_video_free(&all);
}

static void test_rotation(void) {
  /* stored 320x180 with a 90° display matrix: decoded upright 180x320.
   * U encodes stored x and V stored y: clockwise rotation puts stored
   * bottom-left at the displayed top-left. */
  km_testsrc t = coords(320, 180, 3);
  t.rotation_meta = 90;
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("rot.mp4"), &t, &e) == 0, "%s", e.msg);
  km_probe p;
  CHECK(km_probe_file(t_path("rot.mp4"), &p, &e) == 0 && p.rotation == 90 && p.width == 180 && p.height == 320,
        "probe rotation %d size %dx%d", p.rotation, p.width, p.height);
  t_video v;
  CHECK(t_decode(t_path("rot.mp4"), 0, -1, &v) == 0 && v.n == 3 && v.w == 180 && v.h == 320, "decoded %dx%d", v.w, v.h);
  if (v.n) {
    const AVFrame *f = v.f[0];
    int u_tl = f->data[1][0], v_tl = f->data[2][0];
    int u_br = f->data[1][(f->height / 2 - 1) * f->linesize[1] + f->width / 2 - 1];
    CHECK(u_tl < 40 && v_tl > 200, "top-left came from stored bottom-left (U %d, V %d)", u_tl, v_tl);
    CHECK(u_br > 200, "bottom-right came from stored right edge (U %d)", u_br);
  }
  t_video_free(&v);
}

static void test_zero_frames_and_damage(void) {
  kiln_err e = {0};
  /* a video stream with no frames */
  km_enc_opts o = {.width = 64, .height = 64, .fps = {25, 1}, .crf = 20, .preset = "veryfast"};
  km_writer *w = NULL;
  CHECK(km_writer_open(&w, t_path("zero.mp4"), t_path("zero.mp4"), &o, NULL, &e) == 0, "%s", e.msg);
  if (w) { km_writer_finish(w, &e); km_writer_free(w); }
  km_decoder *d = NULL;
  int r = km_decoder_open(&d, t_path("zero.mp4"), NULL, 0, -1, 0, &e);
  if (r == 0) {
    AVFrame *f = NULL;
    km_frame_info fi;
    r = km_decoder_read(d, &f, &fi, &e);
    CHECK(r == 0, "zero-frame stream yields no frame (r=%d)", r);
    av_frame_free(&f);
    km_decoder_free(d);
  } else {
    CHECK(r == KILN_ENOFRAMES || r == KILN_ENOTMEDIA, "zero frames: %s", e.msg);
  }

  /* truncated: the index promises more frames than the data holds */
  km_testsrc t = coords(320, 180, 60);
  t.lossless = 0;
  CHECK(km_testsrc_write(t_path("full.mp4"), &t, &e) == 0, "%s", e.msg);
  struct stat sb;
  stat(t_path("full.mp4"), &sb);
  CHECK(truncate(t_path("full.mp4"), sb.st_size * 6 / 10) == 0, "truncate");
  t_video v;
  r = t_decode(t_path("full.mp4"), 0, -1, &v);
  CHECK(r == KILN_ECORRUPT, "truncated file reported as corrupt (r=%d, %d frames)", r, v.n);
  t_video_free(&v);
}

static void test_audio_durations(void) {
  /* copy mode (AAC in MP4 -> MP4) and transcode (PCM in MOV -> MP4) both end
   * within one frame of the video */
  km_testsrc t = coords(160, 96, 75);
  t.tone_hz = 1000;
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("a.mov"), &t, &e) == 0, "%s", e.msg);
  const char *srcs[] = {"a.mov", "a_copy_src.mp4"};
  CHECK(km_testsrc_write(t_path("a_copy_src.mp4"), &t, &e) == 0, "%s", e.msg);
  const char *modes[] = {"aac", "copy"};
  for (int k = 0; k < 2; k++) {
    km_pipeline_cfg c = {0};
    c.input = t_path(srcs[k]);
    c.output = t_path("a_out.mp4");
    c.end = -1;
    c.keep_audio = 1;
    c.enc.crf = 23;
    c.enc.preset = "ultrafast";
    km_timeline_identity(&c.tl);
    km_pipeline_stats st;
    CHECK(km_pipeline_run(&c, &st, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(st.audio, modes[k]), "audio mode %s, want %s", st.audio, modes[k]);
    km_probe p;
    CHECK(km_probe_file(c.output, &p, &e) == 0 && p.n_audio == 1, "has audio");
    CHECK(p.frames == 75, "frames %lld", (long long)p.frames);
    CHECK(fabs(p.audio[0].duration - 2.5) <= 1.0 / 30, "%s audio %g s vs video 2.5 s", modes[k], p.audio[0].duration);
    CHECK(t_moov_first(c.output) && !strcmp(p.pix_fmt, "yuv420p"), "yuv420p + faststart");
  }
}

/* The pipeline's lookahead: `see` gets every source frame once, in order,
 * and the kernel gets frame n only after frames up to n + lookahead (or the
 * last) were seen, in a whole run and in a chunk; an error from `see`
 * fails the run and leaves no output. */
typedef struct la_ctx {
  pthread_mutex_t mu;
  int64_t last_seen, frames, fail_at;
  int lookahead, seen, out_of_order, too_early, kernels;
} la_ctx;

static int la_see(const void *ctx, const AVFrame *f, const km_frame_info *fi, kiln_err *e) {
  la_ctx *c = (la_ctx *)ctx;
  (void)f;
  pthread_mutex_lock(&c->mu);
  if (fi->src_index != c->last_seen + 1 && c->last_seen >= 0) c->out_of_order++;
  c->last_seen = fi->src_index;
  c->seen++;
  pthread_mutex_unlock(&c->mu);
  if (fi->src_index == c->fail_at) return kiln_fail(e, KILN_EINVAL, "see: refused frame %lld", (long long)fi->src_index);
  return 0;
}

static int la_kernel(const void *ctx, const km_kinfo *ki, const AVFrame *in, AVFrame *out, kiln_err *e) {
  la_ctx *c = (la_ctx *)ctx;
  pthread_mutex_lock(&c->mu);
  int64_t want = ki->src.src_index + c->lookahead < c->frames - 1 ? ki->src.src_index + c->lookahead : c->frames - 1;
  if (c->last_seen < want) c->too_early++;
  c->kernels++;
  pthread_mutex_unlock(&c->mu);
  if (av_frame_copy(out, in) < 0) return kiln_fail(e, KILN_EINTERNAL, "copy");
  return 0;
}

static void test_lookahead(void) {
  km_testsrc t = coords(64, 48, 40);
  kiln_err e = {0};
  CHECK(km_testsrc_write(t_path("la.mkv"), &t, &e) == 0, "%s", e.msg);
  for (int k = 0; k < 3; k++) {                  /* whole run, a chunk [10, 20), a failing see */
    la_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.last_seen = -1;
    c.frames = 40;
    c.lookahead = 8;
    c.fail_at = k == 2 ? 25 : -1;
    km_pipeline_cfg cfg = {0};
    cfg.input = t_path("la.mkv");
    cfg.output = t_path("la_out.mkv");
    cfg.end = -1;
    cfg.enc.lossless = 1;
    cfg.kernel = la_kernel;
    cfg.kernel_threads = 1;
    cfg.kctx = &c;
    cfg.see = la_see;
    cfg.lookahead = c.lookahead;
    if (k == 1) { cfg.out_start = 10; cfg.out_end = 20; }
    km_timeline_identity(&cfg.tl);
    km_pipeline_stats st;
    unlink(cfg.output);
    int r = km_pipeline_run(&cfg, &st, &e);
    if (k < 2) {
      CHECK(r == 0, "run %d: %s", k, e.msg);
      CHECK(st.frames_out == (k ? 10 : 40), "run %d: %lld frames out", k, (long long)st.frames_out);
      CHECK(c.out_of_order == 0, "run %d: %d frames seen out of order", k, c.out_of_order);
      CHECK(c.too_early == 0, "run %d: %d frames given to the kernel before the %d after them were seen", k, c.too_early,
            c.lookahead);
      CHECK(k ? c.last_seen >= 19 + c.lookahead : c.seen == 40, "run %d: %d seen, the last %lld", k, c.seen,
            (long long)c.last_seen);
    } else {
      CHECK(r < 0 && strstr(e.msg, "refused frame 25"), "a failing see fails the run: %d %s", r, e.msg);
      CHECK(access(cfg.output, F_OK) != 0, "no output left behind");
      CHECK(c.kernels <= 25, "the kernel stopped: %d frames", c.kernels);
    }
    pthread_mutex_destroy(&c.mu);
  }
}

/* The decoded-pixel budget (issue 12, "Memory"): a picture or a stream over
 * it is refused as KILN_ETOOBIG (bad_input), naming its size and the limit,
 * before anything is allocated for its pixels; a 30000x30000 PNG says that
 * (it was "truncated"); an mp4 whose sample description claims absurd
 * dimensions is bad input. Every input is made here. */
/* An input is one file (found probing arbitrary bytes for tests/fuzz/fuzz_probe): an uploaded HLS playlist naming
 * another file on the server was probed and decoded as that file (and a live one whose segment could not be opened
 * made FFmpeg wait forever), an ffconcat script as the file beside it, and a name with a %d pattern as the numbered
 * files beside it. Still pictures (image2 opens the file again per packet) still read. */
static void test_one_file_only(void) {
  kiln_err e = {0};
  km_testsrc t = coords(64, 48, 10);
  CHECK(km_testsrc_write(t_path("secret.mp4"), &t, &e) == 0, "%s", e.msg);
  char pl[8192];
  snprintf(pl, sizeof pl, "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n%s\n#EXT-X-ENDLIST\n", t_path("secret.mp4"));
  FILE *f = fopen(t_path("upload"), "w");
  fputs(pl, f);
  fclose(f);
  km_probe p;
  memset(&p, 0, sizeof p);
  int r = km_probe_file(t_path("upload"), &p, &e);
  CHECK(r == KILN_ENOTMEDIA && !p.has_video, "a playlist naming a local file was read as it (%d, %s, %dx%d)", r, p.container,
        p.width, p.height);
  km_decoder *d = NULL;
  r = km_decoder_open(&d, t_path("upload"), NULL, 0, -1, 0, &e);
  CHECK(r < 0, "the playlist decodes");
  if (r == 0) km_decoder_free(d);
  f = fopen(t_path("script"), "w");              /* concat opens what it names itself, past the demuxers' opener */
  fputs("ffconcat version 1.0\nfile secret.mp4\n", f);
  fclose(f);
  memset(&p, 0, sizeof p);
  r = km_probe_file(t_path("script"), &p, &e);
  CHECK(r == KILN_ENOTMEDIA && !p.has_video, "an ffconcat script naming a neighbour was read as it (%d, %s, %dx%d)", r,
        p.container, p.width, p.height);
  /* a live playlist (no #EXT-X-ENDLIST) whose segment cannot be opened: FFmpeg waited for new segments forever */
  f = fopen(t_path("live"), "w");
  fprintf(f, "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n%s\n", t_path("secret.mp4"));
  fclose(f);
  pid_t pid = fork();
  if (pid == 0) {
    kiln_err ce = {0};
    km_probe cp;
    _exit(km_probe_file(t_path("live"), &cp, &ce) == KILN_ENOTMEDIA ? 0 : 1);
  }
  int st = -1, waited = 0;
  while (pid > 0 && waitpid(pid, &st, WNOHANG) == 0 && waited < 300) { usleep(100000); waited++; }
  if (pid > 0 && waited >= 300) { kill(pid, SIGKILL); waitpid(pid, &st, 0); }
  CHECK(pid > 0 && waited < 300 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "a live playlist: %s",
        waited >= 300 ? "still waiting after 30 s" : "not refused as not media");
  km_image im;
  CHECK(km_image_alloc(&im, 8, 6) == 0, "alloc");
  memset(im.rgb, 128, 8 * 6 * 3);
  CHECK(km_image_write_png(t_path("img1.png"), &im, &e) == 0 && km_image_write_png(t_path("pic.png"), &im, &e) == 0, "%s", e.msg);
  km_image_release(&im);
  f = fopen(t_path("img%d.png"), "w");           /* the literal name exists (the store holds it); its numbered neighbours too */
  fputs("not a picture", f);
  fclose(f);
  memset(&p, 0, sizeof p);
  r = km_probe_file(t_path("img%d.png"), &p, &e);
  CHECK(r < 0 || p.width == 0, "a %%d name was read as its numbered neighbour (%s %dx%d)", p.container, p.width, p.height);
  CHECK(km_image_read(t_path("img%d.png"), &im, &e) < 0, "a %%d name was decoded as its numbered neighbour");
  km_image_release(&im);
  CHECK(km_image_read(t_path("pic.png"), &im, &e) == 0 && im.w == 8 && im.h == 6, "a still picture reads: %s", e.msg);
  km_image_release(&im);
}

static void test_pixel_budget(void) {
  kiln_err e = {0};
  km_probe p;
  km_image im = {0};
  km_decoder *d = NULL;
  const km_limits def = *km_limits_get();
  CHECK(def.max_pixels == KM_MAX_PIXELS_DEFAULT && def.max_out_pixels == KM_MAX_PIXELS_DEFAULT && KM_MAX_PIXELS_DEFAULT == 8192 * 8192,
        "defaults %lld %lld", (long long)def.max_pixels, (long long)def.max_out_pixels);

  /* a 16000x16000 PNG of one colour: tens of KB on disk, 768 MB as RGB */
  char big[1024];
  snprintf(big, sizeof big, "%s", t_path("big.png"));
  struct stat sb;
  CHECK(t_png_solid(big, 16000, 16000) == 0 && stat(big, &sb) == 0 && sb.st_size < 1 << 20, "cannot make big.png");
  long hwm0 = t_vm_hwm_kb();
  int r = km_probe_file(big, &p, &e);
  CHECK(r == KILN_ETOOBIG && !strcmp(kiln_errclass(r), "bad_input") && strstr(e.msg, "big.png") &&
        strstr(e.msg, "16000x16000 (256.0 Mpixels)") && strstr(e.msg, "the limit is 67.1 Mpixels"), "probe: %d %s", r, e.msg);
  r = km_image_read(big, &im, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "16000x16000") && !im.rgb, "image read: %d %s", r, e.msg);
  km_image_release(&im);
  r = km_decoder_open(&d, big, NULL, 0, -1, 0, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "16000x16000"), "decoder: %d %s", r, e.msg);
  km_decoder_free(d);
  d = NULL;
  long hwm1 = t_vm_hwm_kb();
  CHECK(hwm0 > 0 && hwm1 - hwm0 < 64 * 1024, "refusing it raised the peak RSS by %ld MB", (hwm1 - hwm0) / 1024);

  /* 30000x30000: over FFmpeg's own limit, so it cannot even describe it; the budget can */
  char huge[1024];
  snprintf(huge, sizeof huge, "%s", t_path("huge.png"));
  CHECK(t_png_solid(huge, 64, 64) == 0 && t_png_set_size(huge, 30000, 30000) == 0, "cannot make huge.png");
  r = km_probe_file(huge, &p, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "30000x30000 (900.0 Mpixels)") && !strstr(e.msg, "truncated"), "%d %s", r, e.msg);
  r = km_image_read(huge, &im, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "30000x30000"), "image read: %d %s", r, e.msg);
  km_image_release(&im);
  /* a JPEG's frame header is read the same way (EXIF and other segments skipped) */
  CHECK(t_jpeg_claiming(t_path("huge.jpg"), 20000, 10000) == 0, "cannot make huge.jpg");
  r = km_probe_file(t_path("huge.jpg"), &p, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "20000x10000 (200.0 Mpixels)"), "jpeg: %d %s", r, e.msg);
  CHECK(t_jpeg_claiming(t_path("small.jpg"), 64, 64) == 0 && km_probe_file(t_path("small.jpg"), &p, &e) == 0 &&
        p.width == 64 && km_image_read(t_path("small.jpg"), &im, &e) == 0 && im.w == 64, "a small JPEG: %s", e.msg);
  km_image_release(&im);

  /* an mp4 whose sample description claims 65535x65535 (its H.264 stream is 64x64) */
  km_testsrc t = coords(64, 64, 5);
  char tiny[1024], absurd[1024];
  snprintf(tiny, sizeof tiny, "%s", t_path("tiny.mp4"));
  snprintf(absurd, sizeof absurd, "%s", t_path("absurd.mp4"));
  CHECK(km_testsrc_write(tiny, &t, &e) == 0 && km_testsrc_write(absurd, &t, &e) == 0, "%s", e.msg);
  CHECK(t_mp4_set_size(absurd, 65535, 65535) == 0, "cannot patch absurd.mp4");
  r = km_probe_file(absurd, &p, &e);
  CHECK(r == KILN_ETOOBIG && !strcmp(kiln_errclass(r), "bad_input") && strstr(e.msg, "declares") &&
        strstr(e.msg, "65535x65535"), "probe: %d %s", r, e.msg);
  r = km_decoder_open(&d, absurd, NULL, 0, -1, 0, &e);
  CHECK(r == KILN_ETOOBIG, "decoder: %d %s", r, e.msg);
  km_decoder_free(d);
  d = NULL;
  CHECK(km_probe_file(tiny, &p, &e) == 0 && p.width == 64, "the unpatched clip: %s", e.msg);

  /* a configured limit is named; sizes within it pass */
  km_limits l = def;
  l.max_pixels = 100 * 100;
  snprintf(l.name, sizeof l.name, "limits.max_pixels");
  km_limits_set(&l);
  CHECK(km_probe_file(tiny, &p, &e) == 0, "64x64 within 100x100: %s", e.msg);
  km_probe wide;
  km_limits_set(&def);
  t = coords(320, 180, 3);
  CHECK(km_testsrc_write(t_path("wide.mp4"), &t, &e) == 0 && km_probe_file(t_path("wide.mp4"), &wide, &e) == 0, "%s", e.msg);
  km_limits_set(&l);
  r = km_probe_file(t_path("wide.mp4"), &p, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "320x180 (57600 pixels); the limit is 10000 pixels (limits.max_pixels)"), "%d %s", r, e.msg);
  r = km_decoder_open(&d, t_path("wide.mp4"), &wide, 0, -1, 0, &e);   /* an older probe does not let it through */
  CHECK(r == KILN_ETOOBIG, "decoder with a probe: %d %s", r, e.msg);
  km_decoder_free(d);

  /* the output budget: the pipeline refuses before its writer opens (nothing is written) */
  l = def;
  l.max_out_pixels = 64 * 64;
  snprintf(l.out_name, sizeof l.out_name, "limits.max_output_pixels");
  km_limits_set(&l);
  km_pipeline_cfg c = {.input = tiny, .output = t_path("out.mp4"), .end = -1, .out_w = 128, .out_h = 128, .threads = 1,
                       .enc = {.crf = 20, .preset = "veryfast"}};
  km_timeline_identity(&c.tl);
  km_pipeline_stats st;
  r = km_pipeline_run(&c, &st, &e);
  CHECK(r == KILN_ETOOBIG && strstr(e.msg, "128x128") && strstr(e.msg, "(limits.max_output_pixels)") &&
        !t_file_exists(t_path("out.mp4")), "%d %s", r, e.msg);
  c.out_w = c.out_h = 64;
  CHECK(km_pipeline_run(&c, &st, &e) == 0 && st.frames_out == 5, "64x64 within the limit: %s", e.msg);
  km_limits_set(&def);
  CHECK(km_parse_pixels("8192x8192") == 8192LL * 8192 && km_parse_pixels("1000") == 1000 && km_parse_pixels("0") == 0 &&
        km_parse_pixels("12x") < 0 && km_parse_pixels("-5") < 0 && km_parse_pixels("x5") < 0, "km_parse_pixels");
}

int main(void) {
  av_log_set_level(AV_LOG_QUIET);
  T_RUN(test_pixel_budget);
  T_RUN(test_one_file_only);
  T_RUN(test_probe);
  T_RUN(test_range_decode);
  T_RUN(test_rotation);
  T_RUN(test_zero_frames_and_damage);
  T_RUN(test_audio_durations);
  T_RUN(test_lookahead);
  t_cleanup();
  return t_done();
}

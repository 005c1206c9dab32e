/* test_media.c — probe, frame-exact range decoding, rotation, encoding and
 * muxing with audio (copy and AAC), and damaged inputs. Every clip is made
 * here by km_testsrc_write. */
#include <libavutil/log.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
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

int main(void) {
  av_log_set_level(AV_LOG_QUIET);
  T_RUN(test_probe);
  T_RUN(test_range_decode);
  T_RUN(test_rotation);
  T_RUN(test_zero_frames_and_damage);
  T_RUN(test_audio_durations);
  t_cleanup();
  return t_done();
}

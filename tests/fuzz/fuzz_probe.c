/* fuzz_probe.c — arbitrary bytes probed as media, as the planner and every
 * function probe an input (km_probe_file, media/probe.c: FFmpeg's
 * demuxers, then kiln's reading of sizes, rotation, frame rate, frame
 * counts). The first byte picks the file's extension (none, .mp4, .mkv,
 * .png: FFmpeg weighs it when it guesses the format), the rest is the file.
 * A probe that succeeds must describe something a planner can use: sizes
 * and counts not negative, a rotation of 0/90/180/270, a frame rate > 0
 * when there is video, at most KM_MAX_AUDIO audio streams, and never what
 * another file holds: "@CANARY@" in the input becomes the path of a 62x46
 * 7 fps clip made at start, which no probe may report (a playlist or script
 * that names it must not be read as it; seeds.c writes HLS, DASH and
 * ffconcat ones). Messages are valid UTF-8. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz.h"
#include "media/media.h"

extern void av_log_set_level(int);

static char canary[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  av_log_set_level(-8);                           /* AV_LOG_QUIET */
  snprintf(canary, sizeof canary, "%s/canary.mp4", fz_scratch());
  km_testsrc t = {.pattern = KM_PATTERN_BARS, .width = 62, .height = 46, .fps = {7, 1}, .frames = 3, .gop = 1};
  kiln_err e = {0};
  if (km_testsrc_write(canary, &t, &e) < 0) fz_fail("canary: %s", e.msg);
  return 0;
}

/* data with every "@CANARY@" replaced by the canary's path; free() it. */
static uint8_t *with_canary(const uint8_t *data, size_t n, size_t *out) {
  static const char mark[] = "@CANARY@";
  size_t ml = sizeof mark - 1, cl = strlen(canary), k = 0;
  uint8_t *b = malloc(n / ml * cl + n + 1);
  if (!b) abort();
  for (size_t i = 0; i < n;) {
    if (i + ml <= n && !memcmp(data + i, mark, ml)) { memcpy(b + k, canary, cl); k += cl; i += ml; }
    else b[k++] = data[i++];
  }
  *out = k;
  return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return -1;
  static const char *const ext[] = {"", ".mp4", ".mkv", ".png"};
  char path[4200];
  snprintf(path, sizeof path, "%s/in%s", fz_scratch(), ext[data[0] & 3]);
  size_t n;
  uint8_t *file = with_canary(data + 1, size - 1, &n);
  fz_write(path, file, n);
  free(file);
  km_probe p;
  kiln_err e = {0};
  int r = km_probe_file(path, &p, &e);
  fz_check_msg(r, &e, "km_probe_file");
  if (r == 0) {
    if (p.width < 0 || p.height < 0 || p.frames < 0 || p.n_audio < 0 || p.n_audio > KM_MAX_AUDIO)
      fz_fail("probe: %dx%d, %lld frames, %d audio streams", p.width, p.height, (long long)p.frames, p.n_audio);
    if (p.rotation != 0 && p.rotation != 90 && p.rotation != 180 && p.rotation != 270) fz_fail("probe: rotation %d", p.rotation);
    if (p.has_video && !(p.fps > 0 && isfinite(p.fps) && p.fps_q.num > 0 && p.fps_q.den > 0))
      fz_fail("probe: video at %g fps (%d/%d)", p.fps, p.fps_q.num, p.fps_q.den);
    if (!memchr(p.container, 0, sizeof p.container) || !memchr(p.vcodec, 0, sizeof p.vcodec)) fz_fail("probe: names not terminated");
    if (p.width == 62 && p.height == 46 && p.fps_q.num == 7 && p.fps_q.den == 1)
      fz_fail("probe: the input was read as another file (the canary, %s)", p.container);
    (void)km_probe_is_image(&p);
  }
  unlink(path);
  return 0;
}

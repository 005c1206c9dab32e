/* fuzz_probe.c — arbitrary bytes probed as media, as the planner and every
 * function probe an input (km_probe_file, media/probe.c: FFmpeg's
 * demuxers, then kiln's reading of sizes, rotation, frame rate, frame
 * counts). The first byte picks the file's extension (none, .mp4, .mkv,
 * .png: FFmpeg weighs it when it guesses the format), the rest is the file.
 * A probe that succeeds must describe something a planner can use: sizes
 * and counts not negative, a rotation of 0/90/180/270, a frame rate > 0
 * when there is video, at most KM_MAX_AUDIO audio streams. Messages are
 * valid UTF-8. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz.h"
#include "media/media.h"

extern void av_log_set_level(int);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  av_log_set_level(-8);                           /* AV_LOG_QUIET */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return -1;
  static const char *const ext[] = {"", ".mp4", ".mkv", ".png"};
  char path[4200];
  snprintf(path, sizeof path, "%s/in%s", fz_scratch(), ext[data[0] & 3]);
  fz_write(path, data + 1, size - 1);
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
    (void)km_probe_is_image(&p);
  }
  unlink(path);
  return 0;
}
